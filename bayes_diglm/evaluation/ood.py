"""The computations behind the OOD scores: ``f(model, X) -> ndarray`` on a fitted estimator's public outputs.

Every function here is *higher for more unusual inputs* and reads only ``score_samples(X)`` (the flow's exact
``log p(x)``, nats), ``transform(X)`` (features ``z = f(x)``), ``predict_proba(X)`` and, for the epistemic term,
posterior draws of the head's weights ``sample(n)``. The scores of :mod:`bayes_diglm.evaluation.ood_methods`
wrap them in the fit-then-score protocol (:mod:`bayes_diglm.evaluation.ood_protocol`). To run the flow once per
input set for several scores, wrap the estimator in :class:`CachedOutputs`.
"""

from __future__ import annotations

import bz2
import io
import lzma
import math
import zlib
from collections.abc import Callable

import numpy as np

from .._validation import check_count
from ..models.sampling import class_probabilities
from .active import bald
from .metrics import predictive_entropy

__all__ = [
    "CachedOutputs",
    "HeadOnFeatures",
    "bits_per_dim_score",
    "class_probability_draws",
    "compressed_bits",
    "compressor_description",
    "fit_background",
    "input_complexity",
    "likelihood_ratio",
    "mutual_information",
    "mutual_information_from_draws",
    "neg_log_px",
    "perturb_pixels",
    "predictive_entropy_score",
]

_NUM_BINS = 256
_COMPRESSORS = ("auto", "png", "zlib", "bz2", "lzma")


# ------------------------------------------------------------------------------------------------------
# the estimator's outputs, validated (and optionally cached)
# ------------------------------------------------------------------------------------------------------


class CachedOutputs:
    """A fitted estimator whose ``score_samples``, ``transform`` and ``predict_proba`` are computed once per input.

    The cache is keyed by the identity of the input array (and holds a reference to it, so the key cannot be
    reused by another array): pass the same array object to several scores and the flow runs once.
    Everything else (``sample``, ``classes_``, ...) is read from the wrapped estimator.

    Example:
        >>> class Counting:
        ...     calls = 0
        ...     def score_samples(self, X):
        ...         Counting.calls += 1
        ...         return -0.5 * (np.asarray(X) ** 2).sum(1)
        >>> model, X = CachedOutputs(Counting()), np.zeros((3, 2))
        >>> _ = neg_log_px(model, X), bits_per_dim_score(model, X, num_bins=None)
        >>> Counting.calls
        1
    """

    _CACHED = ("score_samples", "transform", "predict_proba")

    def __init__(self, model):
        self.model = model
        self._cache: dict[tuple[str, int], tuple[object, np.ndarray]] = {}

    def store(self, name: str, X, values) -> CachedOutputs:
        """Put already computed ``values`` of method ``name`` at input ``X`` into the cache (e.g. the features and
        ``log p(x)`` of one ``flow_outputs`` pass), so the scores read them instead of running the flow again."""
        if name not in self._CACHED:
            raise ValueError(f"name must be one of {self._CACHED}, got {name!r}")
        values = np.asarray(values, dtype=np.float64)
        n = _n_rows(X)
        if values.shape[0] != n:
            raise ValueError(f"values of {name} have {values.shape[0]} rows for {n} inputs")
        self._cache[(name, id(X))] = (X, values)
        return self

    def __getattr__(self, name):
        if name.startswith("_") or name == "model":
            raise AttributeError(name)
        attr = getattr(self.model, name)
        if name not in self._CACHED:
            return attr

        def cached(X):
            key = (name, id(X))
            if key not in self._cache:
                self._cache[key] = (X, np.asarray(attr(X), dtype=np.float64))
            return self._cache[key][1]

        return cached

    def take(self, X, rows) -> np.ndarray:
        """``X[rows]``, with every output already cached for ``X`` carried over to it (the flow does not run again).

        Example:
            >>> class Model:
            ...     calls = 0
            ...     def score_samples(self, X):
            ...         Model.calls += 1
            ...         return -0.5 * (np.asarray(X) ** 2).sum(1)
            >>> model, X = CachedOutputs(Model()), np.arange(6.0).reshape(3, 2)
            >>> log_px = model.score_samples(X)
            >>> bool(np.array_equal(model.score_samples(model.take(X, [2, 0])), log_px[[2, 0]]))
            True
            >>> Model.calls
            1
        """
        subset = np.asarray(X)[rows]
        for (name, key), (_, values) in list(self._cache.items()):
            if key == id(X):
                self._cache[(name, id(subset))] = (subset, values[rows])
        return subset


class HeadOnFeatures:
    """A fitted flow estimator read with another head fitted on its features ``z = model.transform(X)``.

    ``score_samples`` and ``transform`` come from ``model``; ``predict_proba(X)`` and ``sample(n, generator=...)``
    from ``head`` (a PosteriorHead such as ``LaplaceClassifier`` fitted on the training features), so the scores
    here apply to a Bayesian head fitted after the flow, as the experiments do.
    """

    def __init__(self, model, head):
        self.model, self.head = model, head

    def score_samples(self, X):
        return self.model.score_samples(X)

    def transform(self, X):
        return self.model.transform(X)

    def predict_proba(self, X):
        return self.head.predict_proba(self.model.transform(X))

    @property
    def posterior(self):
        """The head's ``posterior`` setting (``"point"`` for a head without draws), when it has one."""
        return getattr(self.head, "posterior", None)

    @property
    def sample(self):
        """The head's ``sample(n, generator=...)``; absent (``AttributeError``) when the head has no draws."""
        sample = getattr(self.head, "sample", None)
        if not callable(sample):
            raise AttributeError(f"{type(self.head).__name__} has no posterior draws (sample)")
        return sample


def _n_rows(X) -> int:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"X must be an array of shape (n, ...) with at least two dimensions, got shape {shape}")
    if shape[0] == 0:
        raise ValueError("X is empty")
    return int(shape[0])


def _log_px(model, X) -> np.ndarray:
    """``model.score_samples(X)`` as float64 (n,), refusing non-finite values (a broken flow)."""
    n = _n_rows(X)
    if not callable(getattr(model, "score_samples", None)):
        raise TypeError(f"model must have score_samples(X) = log p(x) (a fitted DIGLM estimator), "
                        f"got {type(model).__name__}")
    log_px = np.asarray(model.score_samples(X), dtype=np.float64)
    if log_px.shape != (n,):
        raise ValueError(f"score_samples returned shape {log_px.shape} for {n} inputs")
    if not np.isfinite(log_px).all():
        raise ValueError("score_samples returned non-finite log p(x)")
    return log_px


def _dims(X) -> int:
    return int(np.prod(X.shape[1:]))


# ------------------------------------------------------------------------------------------------------
# likelihood scores
# ------------------------------------------------------------------------------------------------------


def neg_log_px(model, X) -> np.ndarray:
    r"""The raw density score :math:`s(x) = -\log p(x)` (nats), the flow's exact negative log density.

    Nalisnick et al. (2019, "Do deep generative models know what they don't know?") show that this fails for
    image flows: simple inputs (constant backgrounds, smooth strokes) get *higher* density than the training
    images. The corrections below (:func:`input_complexity`, :class:`TypicalityTest`, :func:`likelihood_ratio`)
    exist because of that.

    Example:
        >>> class Gauss:
        ...     def score_samples(self, X):
        ...         return -0.5 * (X ** 2).sum(1) - X.shape[1] * 0.5 * np.log(2 * np.pi)
        >>> neg_log_px(Gauss(), np.zeros((1, 2))).round(4)
        array([1.8379])
    """
    return -_log_px(model, X)


def bits_per_dim_score(model, X, *, num_bins: int | None = _NUM_BINS) -> np.ndarray:
    r"""Bits per dimension of each input: ``-log p(x)`` in bits, divided by ``D`` (same ranking as ``-log p(x)``).

    For 8-bit images (``num_bins=256``; the flow's density is that of the dequantised image on ``[0, 1]^D``):
    :math:`\mathrm{bpd}(x) = \frac{-\log p(x) + D \log 256}{D \ln 2}`, the code length of the discrete image
    under the model per pixel (:func:`bayes_diglm.flows.image.bits_per_dim`). ``num_bins=None`` for continuous
    inputs: :math:`-\log_2 p(x) / D`.
    """
    log_px = _log_px(model, X)
    D = _dims(X)
    offset = 0.0 if num_bins is None else D * math.log(_check_bins(num_bins))
    return (-log_px + offset) / (D * math.log(2.0))


def _check_bins(num_bins) -> int:
    if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins must be an integer of at least 2 (or None), got {num_bins!r}")
    return int(num_bins)


# ------------------------------------------------------------------------------------------------------
# input complexity (Serra et al., ICLR 2020)
# ------------------------------------------------------------------------------------------------------


def _pil():
    try:
        import PIL
        from PIL import Image
    except ImportError:
        return None, None
    return Image, PIL.__version__


def _resolve_compressor(compressor: str) -> str:
    if compressor not in _COMPRESSORS:
        raise ValueError(f"compressor must be one of {_COMPRESSORS}, got {compressor!r}")
    if compressor == "auto":
        return "png" if _pil()[0] is not None else "zlib"
    if compressor == "png" and _pil()[0] is None:
        raise ValueError("compressor='png' needs Pillow (pip install pillow); use 'zlib', 'bz2' or 'lzma'")
    return compressor


def compressor_description(compressor: str = "auto") -> str:
    """Which lossless compressor ``compressor`` resolves to here, e.g. ``"png (Pillow 11.0.0, level 9)"``."""
    name = _resolve_compressor(compressor)
    if name == "png":
        return f"png (Pillow {_pil()[1]}, compress_level 9)"
    return f"{name} (Python standard library, level 9)"


def _as_uint8_images(X) -> np.ndarray:
    """uint8 pixels (n, H, W) / (n, C, H, W), or floats ``pixel / 255`` in [0, 1] -> uint8 (n, C, H, W)."""
    a = np.asarray(X)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"input complexity needs images (n, H, W) or (n, C, H, W), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"images must be uint8 pixels or floats in [0, 1], got dtype {a.dtype}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError("float images must hold finite values in [0, 1] (pixel / 255)")
    return np.round(a * 255.0).astype(np.uint8)


def _png_bytes(image: np.ndarray, Image) -> int:
    c = image.shape[0]
    if c == 1:
        pil = Image.fromarray(image[0], mode="L")
    elif c == 3:
        pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), mode="RGB")
    else:
        raise ValueError(f"PNG compression needs 1 or 3 channels, got {c}; use compressor='zlib'")
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=9)
    return buffer.tell()


def compressed_bits(X, *, compressor: str = "auto") -> np.ndarray:
    r"""Code length :math:`L(x)` in bits of each 8-bit image under a lossless compressor.

    ``compressor``: ``"png"`` (Pillow, compression level 9, the whole file with its headers), ``"zlib"``,
    ``"bz2"`` or ``"lzma"`` (the standard library, on the raw pixel bytes), or ``"auto"`` (PNG when Pillow is
    installed, else zlib; :func:`compressor_description` says which). Float inputs are read as ``pixel / 255``.

    Example:
        >>> flat = np.zeros((1, 28, 28), dtype=np.uint8)
        >>> noise = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
        >>> bool(compressed_bits(noise, compressor="zlib")[0] > compressed_bits(flat, compressor="zlib")[0])
        True
    """
    name = _resolve_compressor(compressor)
    images = _as_uint8_images(X)
    if name == "png":
        Image = _pil()[0]
        sizes = [_png_bytes(image, Image) for image in images]
    else:
        compress: Callable[[bytes], bytes] = {
            "zlib": lambda b: zlib.compress(b, 9), "bz2": lambda b: bz2.compress(b, 9),
            "lzma": lambda b: lzma.compress(b, preset=9),
        }[name]
        sizes = [len(compress(np.ascontiguousarray(image).tobytes())) for image in images]
    return 8.0 * np.asarray(sizes, dtype=np.float64)


def input_complexity(model, X, *, compressor: str = "auto", num_bins: int = _NUM_BINS) -> np.ndarray:
    r"""Serra et al. (ICLR 2020) input-complexity score :math:`S(x) = -\log_2 P(x) - L(x)` (bits).

    :math:`-\log_2 P(x)` is the code length of the 8-bit image under the model,
    :math:`(-\log p(x) + D \log 256) / \ln 2` for a flow on dequantised pixels (``D`` times
    :func:`bits_per_dim_score`), and :math:`L(x)` the code length under a general-purpose lossless compressor
    (:func:`compressed_bits`). The compressor stands in for a universal model of images: subtracting it
    removes the part of the likelihood explained by how simple an image is, which is what makes raw
    likelihoods rank simple OOD images (digits on black, constant images) as most typical. ``X`` must be what
    the model takes (floats ``pixel / 255``), images (n, C, H, W).
    """
    bits_model = bits_per_dim_score(model, X, num_bins=num_bins) * _dims(X)
    return bits_model - compressed_bits(X, compressor=compressor)


# ------------------------------------------------------------------------------------------------------
# likelihood ratio against a background model (Ren et al. 2019)
# ------------------------------------------------------------------------------------------------------


def perturb_pixels(X, rate: float = 0.2, *, seed: int = 0):
    """Replace each pixel independently with probability ``rate`` by a uniform random 8-bit value (Ren et al.).

    ``X``: uint8 images or floats ``pixel / 255``; the result has the input's dtype and shape.

    Example:
        >>> X = np.zeros((2, 1, 28, 28), dtype=np.float32)
        >>> out = perturb_pixels(X, 0.2, seed=0)
        >>> out.dtype, 0.15 < float((out > 0).mean()) < 0.25
        (dtype('float32'), True)
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must lie in [0, 1], got {rate!r}")
    a = np.asarray(X)
    images = _as_uint8_images(a).reshape(a.shape)
    rng = np.random.default_rng(seed)
    replace = rng.random(a.shape) < rate
    out = np.where(replace, rng.integers(0, _NUM_BINS, a.shape, dtype=np.uint8), images)
    return out if a.dtype == np.uint8 else (out.astype(np.float64) / 255.0).astype(a.dtype)


def fit_background(model, X, y, *, rate: float = 0.2, seed: int = 0, **params):
    """A background model for :func:`likelihood_ratio`: a clone of ``model`` fitted on perturbed inputs.

    ``scikit-learn.base.clone(model)`` (same flow, same settings; ``params`` are passed to ``set_params``,
    e.g. a larger ``weight_decay``: Ren et al. also regularise the background model) is fitted on
    ``perturb_pixels(X, rate)`` with the same labels. The perturbation destroys the semantic content while
    keeping the population-level background statistics, which is what the ratio cancels. Costs one more
    training of the flow.
    """
    from sklearn.base import clone

    background = clone(model)
    if params:
        background.set_params(**params)
    return background.fit(perturb_pixels(X, rate, seed=seed), y)


def likelihood_ratio(model, X, *, background) -> np.ndarray:
    r"""Ren et al. (2019): :math:`s(x) = -\mathrm{LLR}(x) = \log p_{\theta_0}(x) - \log p_\theta(x)`.

    ``background`` (:math:`p_{\theta_0}`, see :func:`fit_background`) is a density model of perturbed training
    inputs; it captures background statistics shared by in- and out-of-distribution images, so the ratio
    keeps the semantic part of the likelihood.
    """
    return _log_px(background, X) - _log_px(model, X)


def _transform(model, X) -> np.ndarray:
    n = _n_rows(X)
    if not callable(getattr(model, "transform", None)):
        raise TypeError(f"model must have transform(X) = features z (a fitted DIGLM estimator), "
                        f"got {type(model).__name__}")
    Z = np.asarray(model.transform(X), dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] != n:
        raise ValueError(f"transform returned shape {Z.shape} for {n} inputs")
    return Z



# ------------------------------------------------------------------------------------------------------
# the head's predictive uncertainty: entropy and mutual information
# ------------------------------------------------------------------------------------------------------


def predictive_entropy_score(model, X) -> np.ndarray:
    r"""Total predictive uncertainty :math:`H[p(y \mid x)] = -\sum_k p_k \log p_k` (nats) of ``predict_proba``."""
    n = _n_rows(X)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != n:
        raise ValueError(f"predict_proba returned shape {proba.shape} for {n} inputs")
    return predictive_entropy(proba)


def class_probability_draws(model, X, *, n_draws: int = 100, seed: int = 0) -> np.ndarray:
    r"""Class probabilities :math:`p(y \mid z, \beta_s)` under ``n_draws`` posterior draws of the head, (S, n, K).

    Uses the estimator's public ``transform(X)`` (features ``z``) and ``sample(n, generator=...)`` (the
    head's named posterior draws: ``"beta"`` (S, D) binary or (S, K, D) softmax, ``"intercept"`` (S,) or
    (S, K) when fitted), then the GLM's link (:func:`bayes_diglm.models.sampling.class_probabilities`:
    ``sigmoid`` for a single weight vector, ``softmax`` otherwise).
    """
    n_draws = check_count(n_draws, "n_draws")
    if not callable(getattr(model, "sample", None)) or getattr(model, "posterior", None) == "point":
        name = type(model.model if isinstance(model, CachedOutputs) else model).__name__
        raise TypeError(f"{name} has no posterior draws (sample); mutual information needs a "
                        "Bayesian head (posterior='laplace' or 'svi')")
    return class_probabilities(model.sample(int(n_draws), generator=np.random.default_rng(seed)),
                               _transform(model, X))


def mutual_information_from_draws(probs) -> np.ndarray:
    r"""BALD's epistemic term from per-draw class probabilities ``probs`` (S, n, K):

    .. math:: I[y; \beta \mid x] = H\Big[\frac1S\sum_s p_s\Big] - \frac1S\sum_s H[p_s],

    the predictive entropy minus the expected entropy: zero when every draw agrees, up to ``log K`` when each
    draw is certain of a different class (Houlsby et al. 2011; Gal et al. 2017). The same quantity as the
    active-learning acquisition :func:`bayes_diglm.evaluation.active.bald`, which computes it.

    Example:
        >>> confident = np.eye(3)[:, None, :]  # three draws, each sure of another class
        >>> mutual_information_from_draws(confident).round(4), bool(np.log(3).round(4) == 1.0986)
        (array([1.0986]), True)
    """
    return bald(np.asarray(probs, dtype=np.float64))


def mutual_information(model, X, *, n_draws: int = 100, seed: int = 0) -> np.ndarray:
    """Mutual information between the label and the head's weights at each input (see
    :func:`mutual_information_from_draws`), by Monte Carlo over ``n_draws`` posterior draws (seeded)."""
    return mutual_information_from_draws(class_probability_draws(model, X, n_draws=n_draws, seed=seed))
