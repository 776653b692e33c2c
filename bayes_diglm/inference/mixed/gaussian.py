"""Gaussian linear mixed model head: exact (RE)ML by lme4's profiled penalised least squares."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from scipy import linalg as sla
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from bayes_diglm.inference.linalg import JitterWarning
from bayes_diglm.likelihoods import Gaussian

from ..._validation import check_params
from ..base import ContextTags, Predictive, as_generator
from ._head import MixedHeadBase, PLSSystem
from .blocked import BlockedCholesky, fixed_effect_factor, psd_cholesky, relative_factors, theta_layout
from .design import MixedSufficientStats, block_pattern
from .optimise import minimise_variance_components, warn_if_singular

__all__ = ["MixedEffectsRegression", "profiled_deviance"]


def _pls(stats: MixedSufficientStats, lams: list[np.ndarray]):
    """Factor the PLS system at relative factors ``lams`` (block order); returns its pieces."""
    chol = BlockedCholesky(block_pattern(stats), lams)
    RZX = chol.solve_L(chol.scale(stats.ZX))
    cu = chol.solve_L(chol.scale(stats.Zy[:, None]))[:, 0]
    RX = fixed_effect_factor(stats.XX - RZX.T @ RZX, "the fixed-effect precision X^T V^-1 X")
    cb = sla.solve_triangular(RX, stats.Xy - RZX.T @ cu, lower=True, check_finite=False)
    r2 = max(stats.yy - cu @ cu - cb @ cb, 1e-300)
    return chol, RZX, RX, cu, cb, r2


def profiled_deviance(stats: MixedSufficientStats, lams: list[np.ndarray], *, reml: bool,
                      scale: float | None = None) -> tuple[float, dict]:
    r"""lme4's deviance ``-2 log L`` at relative factors ``lams`` with beta (and, unless ``scale`` is given, the
    residual variance) profiled out.

    ML: :math:`\log|L|^2 + n (1 + \log(2\pi r^2 / n))`; REML: :math:`\log|L|^2 + \log|R_X|^2 + (n - p)(1 +
    \log(2\pi r^2 / (n - p)))`, with :math:`r^2` the penalised residual sum of squares; minus
    :math:`\sum_i \log w_i` for precision weights. With a fixed ``scale`` the residual variance is not profiled.
    """
    chol, RZX, RX, cu, cb, r2 = _pls(stats, lams)
    n, p = stats.n, stats.XX.shape[0]
    dof = n - p if reml else n
    logdet = chol.logdet + (2.0 * np.log(np.diag(RX)).sum() if reml else 0.0)
    if scale is None:
        scale = r2 / dof
        dev = logdet + dof * (1.0 + math.log(2.0 * math.pi * scale))
    else:
        dev = logdet + dof * math.log(2.0 * math.pi * scale) + r2 / scale
    dev -= stats.sum_log_w
    return float(dev), {"chol": chol, "RZX": RZX, "RX": RX, "cu": cu, "cb": cb, "r2": r2, "scale": scale}


class MixedEffectsRegression(RegressorMixin, MixedHeadBase):
    r"""Gaussian linear mixed model on features, crossed or nested grouping factors, fitted by REML or ML.

    .. math:: y = X \beta + Z_r b + \varepsilon, \quad b = \Lambda_\theta u, \quad u \sim N(0, \sigma^2 I),
              \quad \varepsilon_i \sim N(0, \sigma^2 / w_i),

    with ``X = [Z, 1]`` and ``Z_r`` the sparse design of every factor's random effects
    (:class:`~bayes_diglm.inference.mixed.RandomEffect`: a random intercept and optional slopes per group, an
    unstructured or diagonal covariance ``Psi_k = sigma^2 L_k L_k^T``). As lme4's ``lmer``: the marginal
    likelihood is exact, beta and ``sigma^2`` are profiled out of the penalised least-squares system, and theta
    (the entries of each Cholesky factor ``L_k``, diagonals bounded below by 0) maximises the REML criterion
    (``reml=True``, the default of lme4 and statsmodels) or the likelihood, by L-BFGS-B over the squared
    diagonals, with the boundary probed (:func:`~bayes_diglm.inference.mixed.optimise.minimise_variance_components`).

    The system ``Lambda^T Z_r^T W Z_r Lambda + I`` is factorised blockwise
    (:class:`~bayes_diglm.inference.mixed.blocked.BlockedCholesky`): the largest factor's groups as a batch of
    small Cholesky factors, the other factors through a dense Schur complement, so rows cost O(n q^2) once (the
    fit runs on additive :class:`~bayes_diglm.inference.mixed.MixedSufficientStats`, which stream) and each
    likelihood evaluation costs O(G1 q1^3 + m^3) for the ``m`` effects of the smaller factors.

    Fitted: ``coef_``, ``intercept_``, ``bse_`` (standard errors, ``sigma^2 (X^T V^{-1} X)^{-1}``),
    ``sigma2_``, ``re_cov_`` (per factor ``Psi_k``), ``random_effects_`` (BLUPs, per factor (G, q)),
    ``random_effects_cov_`` (their conditional covariances given beta, lme4's ``condVar``),
    ``log_likelihood_`` (the maximised REML criterion or log-likelihood), ``theta_``, ``converged_`` (true only
    at a verified optimum, :mod:`~bayes_diglm.inference.mixed.optimise`), ``singular_`` (lme4's "boundary
    (singular) fit": a variance at 0 or a correlation at +-1, also announced by a
    :class:`~bayes_diglm.inference.mixed.SingularFitWarning`). Rows of weight 0 are dropped.

    Posterior draws (:meth:`sample`) treat beta under a flat prior and the random effects jointly with it
    (``N(mode, sigma^2 M^{-1})`` for the whole PLS system); the variance components are plug-in estimates,
    constant across draws (empirical Bayes).

    Parameters
    ----------
    random_effects : RandomEffect, list of RandomEffect, or None
        The random-effects specification; None gives a random intercept for every grouping column of ``groups``.
    reml : bool
        REML (default) or maximum likelihood.
    fit_intercept : bool
        Fixed intercept (a column of ones in ``X``).
    variance_components : mapping or None
        Fixed variance components instead of estimating them: ``{factor name: Psi_k (q x q) or a variance,
        "residual": sigma^2}``. Then fit is one solve of the PLS system (the conjugate Gaussian head with a
        grouped prior); it streams through :meth:`sufficient_stats` and :meth:`fit_stats`.
    tol, max_iter : float, int
        L-BFGS-B's projected-gradient tolerance and iteration cap for theta.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 15); Z = rng.normal(size=(300, 2))
    >>> y = Z @ [1.0, -2.0] + rng.normal(size=20)[groups] + 0.5 * rng.normal(size=300)
    >>> head = MixedEffectsRegression().fit(Z, y, groups=groups)
    >>> np.round(head.coef_, 1)
    array([ 1., -2.])
    >>> head.predict(Z[:2], groups=groups[:2]).shape
    (2,)
    """

    def __init__(self, *, random_effects=None, reml: bool = True, fit_intercept: bool = True,
                 variance_components: Mapping | None = None, tol: float = 1e-10, max_iter: int = 1000):
        self.random_effects = random_effects
        self.reml = reml
        self.fit_intercept = fit_intercept
        self.variance_components = variance_components
        self.tol = tol
        self.max_iter = max_iter

    # ---- fitting ---------------------------------------------------------------------------------------

    def fit(self, Z, y, *, groups, sample_weight=None) -> MixedEffectsRegression:
        """Fit on features ``Z`` (n, D), targets ``y`` (n,), ``groups`` (ids, 2-D ids, mapping or DataFrame)
        and optional precision weights ``sample_weight`` (``Var(eps_i) = sigma^2 / w_i``)."""
        with self._keep_state_on_error():
            check_params(self)
            Z, y = validate_data(self, Z, y, dtype=np.float64, y_numeric=True, reset=True, ensure_min_features=0)
            w = self._weights(sample_weight, Z.shape[0], allow_zero=True)
            factors, labels = self._build_factors(Z, groups)
            stats = self._stats(Z, y, w, factors, labels)
            self._fit_stats(stats)
        return self

    def sufficient_stats(self, Z, y, *, groups, levels: Mapping, sample_weight=None) -> MixedSufficientStats:
        """Additive cross-products of one chunk of rows, for :meth:`fit_stats` (streaming a large data set).

        ``levels`` maps every factor's name to all its levels (chunks must share them); rows whose level is
        not listed raise. Sum the chunks' statistics with ``+``.
        """
        Z = np.asarray(validate_data(self, Z, dtype=np.float64, reset=not hasattr(self, "n_features_in_"),
                                     ensure_min_features=0))
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape[0] != Z.shape[0] or not np.all(np.isfinite(y)):
            raise ValueError(f"y must hold {Z.shape[0]} finite values, got shape {y.shape}")
        w = self._weights(sample_weight, Z.shape[0], allow_zero=True)
        factors, labels = self._build_factors(Z, groups, levels=levels)
        return self._stats(Z, y, w, factors, labels)

    def fit_stats(self, stats: MixedSufficientStats) -> MixedEffectsRegression:
        """Fit from (summed) :meth:`sufficient_stats`: REML/ML on the cross-products, or the fixed components."""
        if not isinstance(stats, MixedSufficientStats) or stats.Zy is None:
            raise TypeError(f"stats must be MixedSufficientStats with targets, got {type(stats).__name__}")
        if stats.fit_intercept != bool(self.fit_intercept):
            raise ValueError("stats were built with another fit_intercept")
        with self._keep_state_on_error():
            self.n_features_in_ = stats.XX.shape[0] - int(stats.fit_intercept)
            self._fit_stats(stats)
        return self

    def _fixed_factors(self, stats) -> tuple[list[np.ndarray], float]:
        vc = dict(self.variance_components)
        if "residual" not in vc:
            raise ValueError("variance_components needs a 'residual' variance and one entry per factor")
        sigma2 = float(vc.pop("residual"))
        if not sigma2 > 0:
            raise ValueError(f"the residual variance must be positive, got {sigma2}")
        lams = []
        for k in stats.order:
            f = stats.factors[k]
            if f.name not in vc:
                raise ValueError(f"variance_components has no entry for factor {f.name!r} (has {sorted(vc)})")
            psi = np.atleast_2d(np.asarray(vc.pop(f.name), dtype=np.float64))
            if psi.shape == (1, 1) and f.q > 1:
                psi = psi[0, 0] * np.eye(f.q)
            if psi.shape != (f.q, f.q) or not np.allclose(psi, psi.T) or np.any(np.linalg.eigvalsh(psi) < 0):
                raise ValueError(f"variance_components[{f.name!r}] must be a symmetric PSD {f.q}x{f.q} matrix")
            lams.append(psd_cholesky(psi / sigma2))
        if vc:
            raise ValueError(f"variance_components names unknown factors: {sorted(vc)}")
        return lams, sigma2

    def _fit_stats(self, stats: MixedSufficientStats) -> None:
        factors, order = stats.factors, stats.order
        qs = [factors[k].q for k in order]
        covs = [factors[k].spec.covariance for k in order]
        p = stats.XX.shape[0]
        if self.reml and stats.n <= p:
            raise ValueError(f"REML needs more rows ({stats.n:.0f}) than fixed effects ({p})")
        if self.variance_components is not None:
            lams, sigma2 = self._fixed_factors(stats)
            theta, n_iter, converged = None, 0, True
        else:
            for f in factors:
                if f.levels.size < 2:
                    raise ValueError(f"factor {f.name!r} has a single level ({f.levels[0]!r}): its variance is "
                                     "not identifiable")
            start, _ = theta_layout(qs, covs)

            def objective(theta):
                return profiled_deviance(stats, relative_factors(theta, qs, covs), reml=self.reml)[0]

            with warnings.catch_warnings():  # the optimiser's trial points are not the fitted model
                warnings.simplefilter("ignore", JitterWarning)
                # finite-difference gradients stop L-BFGS-B's line search near the optimum ("ABNORMAL"): a
                # projected gradient below 1e-4 deviance units per unit of phi counts as stationary
                res = minimise_variance_components(objective, start, qs, covs, gtol=self.tol,
                                                   maxiter=self.max_iter, grad_tol=1e-4)
            theta, n_iter, converged = res.x, res.n_iter, res.converged
            lams, sigma2 = relative_factors(theta, qs, covs), None
        dev, pls = profiled_deviance(stats, lams, reml=self.reml, scale=sigma2)
        chol, RZX, RX = pls["chol"], pls["RZX"], pls["RX"]
        beta = sla.solve_triangular(RX, pls["cb"], lower=True, trans="T", check_finite=False)
        u = chol.solve_Lt((pls["cu"] - RZX @ beta)[:, None])[:, 0]
        self.factors_, self.order_ = factors, order
        self.system_ = PLSSystem(chol, RZX, RX, u, beta, pls["scale"])
        self.sigma2_ = float(pls["scale"])
        self.theta_ = theta
        self.log_likelihood_ = -0.5 * dev
        self.n_iter_, self.converged_ = n_iter, converged
        self._fixed_attributes(self.n_features_in_)
        self._set_random_effects(lams)
        if theta is None:  # fixed components are given, not estimated: nothing to flag
            self.singular_ = False
        else:
            warn_if_singular(self, lams, [factors[k].name for k in order])

    def _context_tags(self) -> ContextTags:
        """``sample_weight`` are known relative noise precisions (``Var(eps_i) = sigma^2 / w_i``) in fit and in
        every predictive method; ``groups`` names each row's levels."""
        return ContextTags(sample_weight="noise", groups=True)

    # ---- contract --------------------------------------------------------------------------------------

    def log_evidence(self) -> float:
        """The maximised REML criterion (``log`` of the likelihood with beta integrated under a flat prior)
        or the maximised log-likelihood (``reml=False``), at the estimated variance components."""
        check_is_fitted(self)
        return float(self.log_likelihood_)

    def predict(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """``x beta + sum_k a_k b_k[g]`` with the BLUPs; ``groups=None`` gives the population-level prediction.

        Levels not seen in ``fit`` raise a ValueError naming them, unless ``allow_unseen=True`` (then their
        random effects are 0, the prior mean).
        """
        Z = self._validate_Z(Z)
        return self._predictor_moments_grouped(Z, groups, allow_unseen, variance=False)[0]

    def predict_dist(self, Z, *, groups=None, allow_unseen: bool = False, sample_weight=None):
        """Normal predictive: variance ``sigma^2 / w`` plus that of the linear predictor under the joint posterior
        of (beta, random effects); unseen levels add their prior variance ``a^T Psi_k a``.

        ``sample_weight``: the known relative noise precisions ``w`` of the new rows, as in :meth:`fit`
        (``Var(eps_i) = sigma^2 / w_i``; default 1), e.g. a heteroscedastic DIGLM's
        :meth:`~bayes_diglm.models.DIGLMRegressor.noise_weights`.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> groups = np.repeat(np.arange(10), 20); Z = rng.normal(size=(200, 2))
        >>> y = Z @ [1.0, -1.0] + rng.normal(size=10)[groups] + rng.normal(size=200)
        >>> head = MixedEffectsRegression().fit(Z, y, groups=groups)
        >>> one = head.predict_dist(Z[:1], groups=groups[:1]).variance
        >>> four = head.predict_dist(Z[:1], groups=groups[:1], sample_weight=[4.0]).variance
        >>> bool(np.allclose(one - four, 0.75 * head.sigma2_))
        True
        """
        Z = self._validate_Z(Z)
        w = self._weights(sample_weight, Z.shape[0])
        mean, var = self._predictor_moments_grouped(Z, groups, allow_unseen)
        noise = self.sigma2_ if sample_weight is None else torch.from_numpy(self.sigma2_ / w)
        dist = Gaussian(noise_variance=noise).predictive(torch.from_numpy(mean[:, None]),
                                                         torch.from_numpy(var[:, None, None]))
        return Predictive(dist)

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Joint draws: ``beta``, ``intercept``, ``u_<factor>`` (n, G[, q]); plug-in ``sigma``, ``sd_<factor>``."""
        draws = self._draw_effects(n, rng)
        draws["sigma"] = np.full(n, math.sqrt(self.sigma2_))
        return draws

    def pointwise_log_likelihood(self, draws: dict, Z, y, *, groups=None, sample_weight=None) -> np.ndarray:
        """``log N(y_i | f_s(z_i, g_i), sigma_s^2 / w_i)``, shape (S, n)."""
        Z = self._validate_Z(Z)
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape[0] != Z.shape[0]:
            raise ValueError(f"mismatched lengths: Z has {Z.shape[0]} rows, y has {y.shape[0]}")
        w = self._weights(sample_weight, Z.shape[0])
        f = self._draw_predictor(draws, Z, groups)
        var = np.asarray(draws["sigma"])[:, None] ** 2 / w[None]
        return -0.5 * np.log(2 * np.pi * var) - 0.5 * (y[None] - f) ** 2 / var

    def sample_predictive(self, draws: dict, Z, *, groups=None, generator=None, sample_weight=None) -> np.ndarray:
        """One replicate per draw and row, shape (S, n)."""
        Z = self._validate_Z(Z)
        w = self._weights(sample_weight, Z.shape[0])
        f = self._draw_predictor(draws, Z, groups)
        sd = np.asarray(draws["sigma"])[:, None] / np.sqrt(w)[None]
        return f + sd * as_generator(generator).standard_normal(f.shape)

    def posterior_dims(self, feature_names=None):
        dims, coords = super().posterior_dims(feature_names)
        dims["sigma"] = []
        return dims, coords
