"""The built-in OOD scores on the fit-then-score protocol, registered in the order the table lists them.

Each wraps a computation of :mod:`bayes_diglm.evaluation.ood` (or fits a small model of the in-distribution
data) and is **higher for more unusual inputs**. The registry (:func:`~bayes_diglm.evaluation.score_names`) holds
``"-log p(x)"``, ``"bits/dim"``, ``"input complexity"``, ``"typicality of (-log2 P, L)"``,
``"min p-value (log p tails, complexity)"``, ``"likelihood ratio"``, ``"feature Gaussian"``, ``"entropy"``,
``"mutual information"`` and ``"typicality"`` (batches of ``M`` inputs).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..inference.linalg import robust_cholesky
from .class_gaussian import ClassConditionalGaussian
from .ood import (
    _NUM_BINS,
    _check_bins,
    _dims,
    _log_px,
    _resolve_compressor,
    _transform,
    bits_per_dim_score,
    compressed_bits,
    compressor_description,
    input_complexity,
    likelihood_ratio,
    mutual_information,
    neg_log_px,
    predictive_entropy_score,
)
from .ood_protocol import OODScore, register_score

__all__ = [
    "BitsPerDim",
    "ComplexityTypicality",
    "FeatureDensityScore",
    "InputComplexity",
    "LikelihoodRatio",
    "MinPValue",
    "MutualInformation",
    "NegLogPx",
    "Negated",
    "PredictiveEntropy",
    "TypicalityTest",
]


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------------------
# densities of the inputs
# ------------------------------------------------------------------------------------------------------


class NegLogPx(OODScore):
    """The raw density score ``-log p(x)`` (nats): :func:`~bayes_diglm.evaluation.neg_log_px`."""

    name = "-log p(x)"
    requires = ("log p(x)",)

    def _score(self, X):
        return neg_log_px(self.model_, X)


class BitsPerDim(OODScore):
    """Bits per dimension (:func:`~bayes_diglm.evaluation.bits_per_dim_score`), ranking like ``-log p(x)``.

    ``num_bins="auto"``: 256 (8-bit pixels) for images (n, C, H, W), ``None`` (continuous) for other inputs.
    """

    name = "bits/dim"
    requires = ("log p(x)",)

    def __init__(self, *, num_bins: int | None | str = "auto"):
        self.num_bins = num_bins

    def _check_params(self):
        if self.num_bins is not None and self.num_bins != "auto":
            _check_bins(self.num_bins)

    def _score(self, X):
        num_bins = (_NUM_BINS if np.ndim(X) == 4 else None) if self.num_bins == "auto" else self.num_bins
        return bits_per_dim_score(self.model_, X, num_bins=num_bins)


class InputComplexity(OODScore):
    """Serra et al. (2020): ``-log2 P(x) - L(x)`` bits, :func:`~bayes_diglm.evaluation.input_complexity`."""

    name = "input complexity"
    requires = ("log p(x)", "images")

    def __init__(self, *, compressor: str = "auto"):
        self.compressor = compressor

    def _check_params(self):
        _resolve_compressor(self.compressor)

    @property
    def label(self) -> str:
        return f"input complexity ({compressor_description(self.compressor).split()[0]})"

    @property
    def note(self) -> str:
        return f"input complexity: L(x) from {compressor_description(self.compressor)}"

    def _score(self, X):
        return input_complexity(self.model_, X, compressor=self.compressor)


class ComplexityTypicality(OODScore):
    r"""Typicality of the pair (model code length, compressor code length): a two-dimensional typicality test.

    Each input gets :math:`t(x) = \big(-\log_2 P(x),\ L(x)\big)`, the two code lengths whose difference is
    the input-complexity score :math:`S(x)` of Serra et al. (2020). In-distribution inputs lie along a band
    (complex images cost more bits under both codes); fitting a Gaussian to :math:`t` on held-out
    in-distribution inputs (``X_val``, else ``X``), the score is the squared Mahalanobis distance

    .. math:: s(x) = (t(x) - \bar t)^T \hat\Sigma^{-1} (t(x) - \bar t),

    which is large both off the band (:math:`S(x)` unusual, the complexity correction) and at either end of
    it (code lengths unusually long or short, the typicality test's two-sided view of the likelihood). Under
    a Gaussian :math:`t` it is :math:`\chi^2_2`-distributed in distribution.

    Args:
        compressor: as in :func:`~bayes_diglm.evaluation.compressed_bits`.
    """

    name = "typicality of (-log2 P, L)"
    requires = ("log p(x)", "images", "in-distribution inputs")
    needs = ("X_val",)

    def __init__(self, *, compressor: str = "auto"):
        self.compressor = compressor

    def _check_params(self):
        _resolve_compressor(self.compressor)

    def _pairs(self, model, X) -> np.ndarray:
        model_bits = bits_per_dim_score(model, X) * _dims(X)
        return np.stack([model_bits, compressed_bits(X, compressor=self.compressor)], axis=1)

    def _fit(self, model, X, y, X_val=None):
        t = self._pairs(model, X if X_val is None else X_val)
        if t.shape[0] < 3:
            raise ValueError(f"need at least 3 in-distribution images, got {t.shape[0]}")
        self.mean_ = t.mean(axis=0)
        self.cholesky_ = robust_cholesky(np.cov(t, rowvar=False), "the covariance of the code-length pairs")

    def _score(self, X):
        diff = self._pairs(self.model_, X) - self.mean_
        solved = scipy.linalg.solve_triangular(self.cholesky_, diff.T, lower=True, check_finite=False)
        return (solved**2).sum(axis=0)


class Negated(OODScore):
    """The opposite tail of another score: ``-score(x)`` (e.g. ``Negated(NegLogPx())`` flags inputs too likely)."""

    def __init__(self, score: OODScore):
        if not isinstance(score, OODScore):
            raise TypeError(f"score must be an OODScore, got {type(score).__name__}")
        self.score_of = score
        self.requires, self.needs = score.requires, score.needs

    @property
    def label(self) -> str:
        return f"-({self.score_of.label})"

    def _fit(self, model, X, y, **needs):
        self.score_of.fit(model, X, y, **needs)

    def _score(self, X):
        return -self.score_of.score(X)

    def __repr__(self) -> str:
        return f"Negated({self.score_of!r})"


class MinPValue(OODScore):
    r"""Several scores combined by their smallest empirical p-value under held-out in-distribution inputs.

    Each component score :math:`s_j` (fitted on ``X``) gets the upper-tail p-value
    :math:`p_j(x) = \big(1 + \#\{i : s_j(x_i^{\mathrm{val}}) \ge s_j(x)\}\big) / (n + 1)` against the ``n``
    held-out inputs ``X_val`` (``X`` when none are given), and the combined score is
    :math:`-\log \min_j p_j(x)`. Flagging when :math:`\min_j p_j \le \alpha / J` is the Bonferroni combination of
    the ``J`` tests (false-positive rate at most :math:`\alpha`); each component covers the OOD sets the others
    miss (the lower tail of ``-log p(x)`` flags inputs that are too likely, the input-complexity score flags simple
    inputs that the density does not).

    Args:
        components: name -> :class:`OODScore`; by default ``-log p(x)`` too high ("too unlikely"), too low
            ("too likely") and the input complexity too high ("complexity").
        compressor: the default components' compressor.

    Example:
        >>> class Gauss:
        ...     def score_samples(self, X):
        ...         return -0.5 * (X ** 2).sum(1)
        >>> rng = np.random.default_rng(0)
        >>> both = MinPValue(components={"-log p": NegLogPx(), "+log p": Negated(NegLogPx())})
        >>> both.fit(Gauss(), rng.normal(size=(999, 2))).score(np.array([[0.0, 0.0], [9.0, 9.0]])).round(2)
        array([6.91, 6.91])
    """

    name = "min p-value (log p tails, complexity)"
    requires = ("log p(x)", "images", "in-distribution inputs")
    needs = ("X_val", "background")

    def __init__(self, *, components: dict | None = None, compressor: str = "auto"):
        self.components = components
        self.compressor = compressor
        if isinstance(components, dict):  # what the components require (checked in full by fit)
            parts = [p for p in components.values() if isinstance(p, OODScore)]
            self.requires = tuple(dict.fromkeys(("in-distribution inputs", *(r for p in parts for r in p.requires))))
            self.needs = tuple(dict.fromkeys(("X_val", *(k for p in parts for k in p.needs))))

    def _parts(self) -> dict[str, OODScore]:
        if self.components is None:
            return {"too unlikely": NegLogPx(), "too likely": Negated(NegLogPx()),
                    "complexity": InputComplexity(compressor=self.compressor)}
        if not isinstance(self.components, dict) or not self.components:
            raise ValueError("components must be a non-empty dict of name -> OODScore")
        bad = [k for k, v in self.components.items() if not isinstance(v, OODScore)]
        if bad:
            raise TypeError(f"components {bad} are not OODScore instances")
        return self.components

    def _check_params(self):
        self._parts()
        _resolve_compressor(self.compressor)

    @property
    def label(self) -> str:
        return self.name if self.components is None else f"min p-value ({', '.join(self._parts())})"

    def _fit(self, model, X, y, X_val=None, **needs):
        self.parts_ = {k: part.fit(model, X, y, **{n: v for n, v in needs.items() if n in part.needs})
                       for k, part in self._parts().items()}
        reference = X if X_val is None else X_val
        self.reference_ = {k: np.sort(part.score(reference)) for k, part in self.parts_.items()}

    def p_values(self, X) -> dict[str, np.ndarray]:
        """The empirical upper-tail p-value of every component at each input."""
        if not hasattr(self, "reference_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("MinPValue is not fitted yet; call fit first")
        out = {}
        for k, part in self.parts_.items():
            ref, s = self.reference_[k], part.score(X)
            out[k] = (1.0 + ref.size - np.searchsorted(ref, s, side="left")) / (ref.size + 1.0)
        return out

    def _score(self, X):
        return -np.log(np.min(np.stack(list(self.p_values(X).values())), axis=0))


class LikelihoodRatio(OODScore):
    """Ren et al. (2019): ``log p_bg(x) - log p(x)`` against ``background=`` (see
    :func:`~bayes_diglm.evaluation.fit_background`), :func:`~bayes_diglm.evaluation.likelihood_ratio`."""

    name = "likelihood ratio"
    requires = ("log p(x)", "background")
    needs = ("background",)

    def _fit(self, model, X, y, background=None):
        self.background_ = background

    def _score(self, X):
        return likelihood_ratio(self.model_, X, background=self.background_)


# ------------------------------------------------------------------------------------------------------
# the features and the head
# ------------------------------------------------------------------------------------------------------


class FeatureDensityScore(OODScore):
    r"""DDU-style score (Mukhoti et al. 2021) on the DIGLM's features: :math:`s(x) = -\log q(f(x))`.

    :math:`q` is a :class:`~bayes_diglm.evaluation.ClassConditionalGaussian` fitted on the training features
    ``z = model.transform(X)`` with their labels. Where the flow's own density measures how likely the *input*
    is, this measures how far the features lie from every class cluster the linear head was trained on.
    """

    name = "feature Gaussian"
    requires = ("features", "labels", "in-distribution inputs")

    def __init__(self, *, covariance: str = "full", reg: float = 1e-4):
        self.covariance = covariance
        self.reg = reg

    def _check_params(self):
        if self.covariance not in ClassConditionalGaussian._KINDS:
            raise ValueError(f"covariance must be one of {ClassConditionalGaussian._KINDS}, got {self.covariance!r}")

    @property
    def label(self) -> str:
        return f"feature Gaussian ({self.covariance})"

    def _fit(self, model, X, y):
        self.gaussian_ = ClassConditionalGaussian(covariance=self.covariance, reg=self.reg).fit(
            _transform(model, X), y)

    def _score(self, X):
        return -self.gaussian_.score_samples(_transform(self.model_, X))


class PredictiveEntropy(OODScore):
    """The head's predictive entropy (nats), :func:`~bayes_diglm.evaluation.predictive_entropy_score`."""

    name = "entropy"
    requires = ("probabilities",)

    def _score(self, X):
        return predictive_entropy_score(self.model_, X)


class MutualInformation(OODScore):
    """The mutual information between label and head weights over ``n_draws`` posterior draws (seeded),
    :func:`~bayes_diglm.evaluation.mutual_information`."""

    name = "mutual information"
    requires = ("features", "probabilities", "posterior draws")

    def __init__(self, *, n_draws: int = 100, seed: int = 0):
        self.n_draws = n_draws
        self.seed = seed

    def _check_params(self):
        _check_positive_int(self.n_draws, "n_draws")

    def _score(self, X):
        return mutual_information(self.model_, X, n_draws=self.n_draws, seed=self.seed)


# ------------------------------------------------------------------------------------------------------
# typicality test (Nalisnick, Matsukawa, Teh, Lakshminarayanan 2019)
# ------------------------------------------------------------------------------------------------------


class TypicalityTest(OODScore):
    r"""The typicality test of Nalisnick, Matsukawa, Teh and Lakshminarayanan (2019) on batches of ``M`` inputs.

    A batch :math:`x_{1..M}` is flagged out-of-distribution when its mean negative log density is far from the
    model's entropy estimated on training data,

    .. math:: \epsilon(x_{1..M}) = \Big|\frac1M\sum_{m=1}^M -\log p(x_m) - \hat H\Big| > \epsilon_\alpha,
              \qquad \hat H = \frac1N\sum_{n=1}^N -\log p(x_n^{\mathrm{train}}),

    with :math:`\epsilon_\alpha` the :math:`1 - \alpha` quantile of :math:`\epsilon` over ``n_bootstrap``
    batches of ``M`` drawn with replacement from held-out in-distribution inputs (``X_val``; the training
    inputs ``X`` when none are given). The test is two-sided: a batch that is *too likely* (the digits that a
    Fashion-MNIST flow prefers) is as atypical as one that is too unlikely. :meth:`score` returns
    :math:`\epsilon` per batch of ``M`` consecutive inputs (higher = more unusual; a short remainder is left
    out), :meth:`predict` the decisions; the false-positive rate on in-distribution batches is ``alpha`` by
    construction.

    Args:
        batch_size: ``M``, inputs per tested batch (1 tests single inputs).
        alpha: nominal false-positive rate of :meth:`predict`.
        n_bootstrap: bootstrap batches for the threshold.
        seed: seeds the bootstrap.

    Example:
        >>> class Gauss:
        ...     def score_samples(self, X):
        ...         return -0.5 * (X ** 2).sum(1)
        >>> rng = np.random.default_rng(0)
        >>> test = TypicalityTest(batch_size=5).fit(Gauss(), rng.normal(size=(2000, 3)))
        >>> bool(test.predict(rng.normal(size=(500, 3))).mean() < 0.05)
        True
        >>> bool(test.predict(3 + rng.normal(size=(500, 3))).all())
        True
    """

    name = "typicality"
    requires = ("log p(x)", "in-distribution inputs")
    needs = ("X_val",)
    batched = True

    def __init__(self, *, batch_size: int = 1, alpha: float = 0.01, n_bootstrap: int = 5000, seed: int = 0):
        self.batch_size = batch_size
        self.alpha = alpha
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    @property
    def label(self) -> str:
        return f"typicality (M={self.batch_size})"

    def _check_params(self):
        _check_positive_int(self.batch_size, "batch_size")
        _check_positive_int(self.n_bootstrap, "n_bootstrap")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha!r}")

    def _fit(self, model, X, y, X_val=None):
        train = _log_px(model, X)
        val = train if X_val is None else _log_px(model, X_val)
        M = int(self.batch_size)
        self.entropy_ = float(-train.mean())
        idx = np.random.default_rng(self.seed).integers(0, val.size, size=(int(self.n_bootstrap), M))
        self.bootstrap_ = np.abs(-val[idx].mean(axis=1) - self.entropy_)
        self.threshold_ = float(np.quantile(self.bootstrap_, 1.0 - self.alpha))

    def _score(self, X):
        M = int(self.batch_size)
        values = _log_px(self.model_, X)
        n_batches = values.size // M
        if n_batches == 0:
            raise ValueError(f"{values.size} inputs do not fill one batch of batch_size={M}")
        return np.abs(-values[: n_batches * M].reshape(n_batches, M).mean(axis=1) - self.entropy_)

    def predict(self, X) -> np.ndarray:
        """``True`` for each batch the test flags as out-of-distribution."""
        return self.score(X) > self.threshold_


for _score_class in (NegLogPx, BitsPerDim, InputComplexity, ComplexityTypicality, MinPValue, LikelihoodRatio,
                     FeatureDensityScore, PredictiveEntropy, MutualInformation, TypicalityTest):
    register_score(_score_class)
