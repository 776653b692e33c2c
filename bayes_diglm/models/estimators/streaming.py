"""The posterior head of a fitted DIGLM regressor refitted on data streamed in chunks, the flow frozen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ...inference.base import keep_state_on_error
from ...inference.conjugate import fit_in_chunks
from ...inference.mixed import MixedEffectsRegression
from .inputs import _host
from .noise import _per_row_noise

__all__ = ["_StreamedPosterior"]


class _StreamedPosterior:
    """``fit_posterior`` over chunks and the noise weights it uses (regression)."""

    def fit_posterior(self, chunks):
        r"""Fit (or refit) the Bayesian head over beta on data streamed in chunks, the trained flow kept as is.

        ``chunks`` is any iterable of ``(X, y)`` pairs (for example a reader of a file too large for memory).
        Each chunk goes through the flow once (:meth:`flow_outputs`: features ``z = f(x)`` and, for the
        heteroscedastic head, the noise precisions) and is added to a fresh clone of the ``posterior`` head
        with its ``partial_fit``; memory is one chunk plus the head's statistics. The result equals
        ``fit``'s one-pass head on the same rows concatenated (the conjugate head's statistics add). A head
        without ``partial_fit`` (Laplace, SVI, NUTS) is fitted once on the features of every chunk, held in
        memory (the flow still runs one chunk at a time).

        Noise weights (``head="heteroscedastic"`` with the conjugate head): as in ``fit``, the known relative
        precisions are the point head's :math:`\exp(-\log\sigma^2(z))` divided by ``noise_normaliser_``, the
        mean precision over the rows of ``fit`` (so heads fitted in memory and streamed on the same flow share
        one scale, and :meth:`noise_weights` gives the same weights at new rows). An estimator fitted with
        ``posterior="point"`` has no normaliser yet: the first chunk's mean precision is used. The scale
        only sets the units of ``sigma^2``; it changes the predictive only through the weak prior.

        Why this spelling and not scikit-learn's ``partial_fit``: ``partial_fit`` continues fitting the whole
        estimator one batch at a time, while this refits only the head, with the flow frozen, and it replaces
        the head only after the last chunk was read. A chunk that is refused (wrong width, non-finite or
        non-numeric values, mismatched lengths) or a reader that fails part-way leaves the fitted state, the
        previous head included, exactly as it was, which a chunk-at-a-time method could not promise.

        Returns ``self``.

        Example:
            >>> import numpy as np
            >>> from bayes_diglm.models import DIGLMRegressor
            >>> rng = np.random.default_rng(0)
            >>> X = rng.normal(size=(300, 2)); y = X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=300)
            >>> reg = DIGLMRegressor(posterior="conjugate", epochs=2, flow_kwargs={"num_layers": 2},
            ...                      quiet=True).fit(X[:100], y[:100])
            >>> reg = reg.fit_posterior((X[i:i + 50], y[i:i + 50]) for i in range(0, 300, 50))
            >>> int(reg.posterior_.stats_.n)
            300
        """
        check_is_fitted(self)
        if isinstance(chunks, str | bytes) or not isinstance(chunks, Iterable):
            raise TypeError(f"chunks must be an iterable of (X, y) pairs (e.g. a generator), got "
                            f"{type(chunks).__name__}")
        with keep_state_on_error(self):
            head = self._posterior_template()
            if head is None:
                raise ValueError("fit_posterior needs a Bayesian head: this estimator has posterior='point' (set "
                                 "posterior='conjugate' or a head instance with set_params first)")
            self._set_known_noise(head)
            weighted = self._uses_noise_weights_for(head)
            normaliser = getattr(self, "noise_normaliser_", None)

            def features():
                nonlocal normaliser
                for k, chunk in enumerate(chunks):
                    X, y = self._check_chunk(chunk, k)
                    Z, _, precision = self._outputs(self._validate_X(X))
                    if weighted:
                        normaliser = float(precision.mean()) if normaliser is None else normaliser
                    yield Z, y, precision / normaliser if weighted else None

            if hasattr(head, "partial_fit"):
                self.posterior_ = fit_in_chunks(head, features())
            else:  # one fit on every chunk's features (memory grows with the rows; the flow runs chunk by chunk)
                held = list(features())
                if not held:
                    raise ValueError("chunks is empty: no rows to fit the head on")
                Z, y, w = (None if part[0] is None else np.concatenate(part) for part in zip(*held, strict=True))
                self.posterior_ = head.fit(Z, y, **({} if w is None else {"sample_weight": w}))
            if weighted:
                self.noise_normaliser_ = normaliser
        return self

    def fit_mixed_head(self, chunks, *, levels: Mapping, head: MixedEffectsRegression | None = None):
        """A mixed-effects head on the flow's features, fitted on data streamed in chunks; returned, not stored.

        ``chunks`` yield ``(X, y, groups)`` with ``groups`` a mapping from each random-intercept factor's name
        to the chunk's levels; ``levels`` maps each factor to all its levels (every chunk shares them). Each
        chunk goes through the flow once (:meth:`head_inputs`: features and, for the heteroscedastic head, the
        noise weights as known precisions), the head's additive sufficient statistics are summed, and the
        variance components are estimated on the sums (:meth:`MixedEffectsRegression.fit_stats
        <bayes_diglm.inference.mixed.MixedEffectsRegression.fit_stats>`): memory is one chunk plus the
        ``(G + D + 1)^2`` cross-products, and the result equals the head fitted on the rows concatenated.
        ``head`` (default ``MixedEffectsRegression()``, REML) is cloned; the estimator is left as it was.

        Examples
        --------
        >>> import numpy as np
        >>> from bayes_diglm.models import DIGLMRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2)); g = rng.integers(0, 4, size=200); y = X[:, 0] + 0.5 * g
        >>> reg = DIGLMRegressor(epochs=1, flow_kwargs={"num_layers": 2}, quiet=True).fit(X, y)
        >>> chunks = [(X[i:i + 100], y[i:i + 100], {"g": g[i:i + 100]}) for i in (0, 100)]
        >>> mixed = reg.fit_mixed_head(chunks, levels={"g": np.arange(4)})
        >>> whole = reg.fit_mixed_head([(X, y, {"g": g})], levels={"g": np.arange(4)})
        >>> sorted(mixed.re_cov_), bool(np.isclose(mixed.log_likelihood_, whole.log_likelihood_))
        (['g'], True)
        """
        check_is_fitted(self)
        if isinstance(chunks, str | bytes) or not isinstance(chunks, Iterable):
            raise TypeError(f"chunks must be an iterable of (X, y, groups) triples, got {type(chunks).__name__}")
        if not isinstance(levels, Mapping) or not levels:
            raise TypeError(f"levels must be a non-empty mapping from factor names to levels, got {levels!r}")
        if head is not None and not isinstance(head, MixedEffectsRegression):
            raise TypeError(f"head must be a MixedEffectsRegression, got {type(head).__name__}")
        work, stats = clone(MixedEffectsRegression() if head is None else head), None
        for k, chunk in enumerate(chunks):
            if not (isinstance(chunk, tuple | list) and len(chunk) == 3 and isinstance(chunk[2], Mapping)):
                raise TypeError(f"chunk {k} must be an (X, y, groups) triple with groups a mapping")
            X, y = self._check_chunk(chunk[:2], k)
            Z, noise = self.head_inputs(X)
            part = work.sufficient_stats(Z, y, levels=levels, groups=chunk[2], **noise)
            stats = part if stats is None else stats + part
        if stats is None:
            raise ValueError("chunks is empty: no rows to fit the head on")
        return work.fit_stats(stats)

    @staticmethod
    def _check_chunk(chunk, k: int) -> tuple[object, np.ndarray]:
        if not (isinstance(chunk, tuple | list) and len(chunk) == 2):
            raise TypeError(f"chunk {k} must be an (X, y) pair, got {type(chunk).__name__}"
                            + (f" of length {len(chunk)}" if isinstance(chunk, tuple | list) else ""))
        X, y = chunk
        y = column_or_1d(_host(y), warn=True)
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"chunk {k}: y must be numeric, got dtype {y.dtype}") from err
        if not np.all(np.isfinite(y)):
            raise ValueError(f"chunk {k}: y holds NaN or infinite values")
        if len(X) != y.shape[0]:
            raise ValueError(f"chunk {k}: X has {len(X)} rows, y {y.shape[0]}")
        return X, y

    def noise_weights(self, X) -> np.ndarray:
        r"""The known relative noise precisions :math:`w(x)` the conjugate head uses at the rows of ``X``.

        ``y ~ N(x^T beta, sigma^2 / w(x))`` with :math:`w(x) = \exp(-\log\sigma^2(z)) / c`: the heteroscedastic
        point head's precision at ``z = f(x)`` over ``noise_normaliser_`` ``c`` (the mean over the rows the head
        was fitted on). These are the weights :meth:`predict_dist` passes to the head; use them for other
        predictives of the same head (e.g. its prior predictive). Float64, shape (n,).
        """
        check_is_fitted(self)
        if not _per_row_noise(self._family()):
            raise ValueError(f"noise_weights exist for heads with per-row noise (head='heteroscedastic' only), "
                             f"not head={self.head!r}")
        if not hasattr(self, "noise_normaliser_"):
            raise ValueError("noise_weights need a conjugate posterior head (posterior='conjugate'), fitted by fit "
                             "or fit_posterior; this estimator has none")
        return self._outputs(self._validate_X(X))[2] / self.noise_normaliser_
