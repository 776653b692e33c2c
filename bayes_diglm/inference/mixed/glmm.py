"""GLMM heads for the registry's families by the Laplace approximation (lme4's glmer, nAGQ=1): any family with one
linear predictor and an expected information (binomial with trials, negative binomial, Poisson, Gamma, ...), and
the binary (logit) and Poisson heads built on it."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg as sla
from scipy import optimize as sopt
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from bayes_diglm.inference.linalg import JitterWarning

from ..._validation import check_params
from ..base import Predictive, as_generator
from ._head import MixedHeadBase, PLSSystem, drop_zero_weights
from .blocked import BlockedCholesky, BlockPattern, apply_lambda, fixed_effect_factor, relative_factors, theta_layout
from .design import RowPattern, _block_sums, block_order
from .family import FamilyParameters, glmm_family, row_context
from .optimise import minimise_variance_components, warn_if_singular
from .pyro_model import glmm_pyro_model

__all__ = ["MixedEffectsClassifier", "MixedEffectsGLM", "MixedEffectsPoisson"]

# PIRLS steps at the optimiser's trial points (the fitted point gets max_iter): warm-started near a mode it takes a
# few; a line search's trial far out (a dispersion at its bound, theta in the thousands) took 500 steps of 10 ms
# each, times the 2 x len(x) evaluations of each finite-difference gradient
_TRIAL_PIRLS = 100
_FAR_TRIAL = 10.0  # deviance units above the stage's best beyond which a trial point's mode is no warm start


class _Rows:
    """The rows of a GLMM fit in block order: fixed design, each factor's codes and covariates, targets, weights
    and the family's per-row context (``trials``)."""

    def __init__(self, X, codes, designs, factors, y, w, context):
        self.X, self.codes, self.designs, self.factors, self.y, self.w = X, codes, designs, factors, y, w
        self.context = context
        self.sizes = [f.size for f in factors]
        self.pattern = RowPattern(factors, codes, designs, X)

    def system(self, D: np.ndarray, lams):
        """Blocked Cholesky, ``RZX`` and ``RX`` of the PLS system with curvature weights ``D``."""
        C11, C21, C22, ZX, XX = self.pattern.blocks(D)
        facs = self.factors
        chol = BlockedCholesky(BlockPattern(C11, C21, C22, [f.q for f in facs], [f.levels.size for f in facs]), lams)
        RZX = chol.solve_L(chol.scale(ZX))
        RX = fixed_effect_factor(XX - RZX.T @ RZX, "the fixed-effect curvature X^T W X")
        return chol, RZX, RX

    def predictor(self, b: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``eta = X beta + Zr b`` for stacked random effects ``b`` (block order)."""
        eta = self.X @ beta
        off = 0
        for f, c, A in zip(self.factors, self.codes, self.designs, strict=True):
            eta += np.einsum("nq,nq->n", A, b[off:off + f.size].reshape(f.levels.size, f.q)[c])
            off += f.size
        return eta

    def zt(self, r: np.ndarray) -> np.ndarray:
        """``Zr^T r``, shape (q,)."""
        return np.concatenate([_block_sums(c, A, r[:, None], np.ones_like(r), f.levels.size).ravel()
                               for f, c, A in zip(self.factors, self.codes, self.designs, strict=True)])


class _LaplaceGLMM(MixedHeadBase):
    """Shared Laplace fit: penalised IRLS for the modes, L-BFGS-B over theta and the family's nuisance parameters
    (then theta, beta and those); the family comes from the registry (``likelihood_``, set by ``fit``)."""

    likelihood_: object

    def _mode(self, rows: _Rows, lik, lams, u, beta, *, joint: bool, max_iter: int):
        """Penalised IRLS for ``u`` (and ``beta`` when ``joint``): Fisher scoring with step halving on
        ``sum w log p(y | eta) - |u|^2 / 2``, weighted by the family's expected information (lme4's working
        weights; the observed curvature for the canonical links, positive where the observed one may not be).
        Returns the mode, the system at it and the Laplace deviance, whose log-determinant uses the same weights
        (as lme4's). At most ``max_iter`` scoring steps; stops early when no halved step improves."""
        y, w, ctx = rows.y, rows.w, rows.context
        Gs = [f.levels.size for f in rows.factors]

        def objective(u, beta):
            eta = rows.predictor(apply_lambda(lams, Gs, u), beta)
            return float(w @ lik.log_prob(eta[:, None], y, **ctx)) - 0.5 * u @ u, eta

        value, eta = objective(u, beta)
        for _ in range(max_iter):
            D = w * lik.fisher(eta[:, None], **ctx)[:, 0, 0]
            g = w * lik.grad(eta[:, None], y, **ctx)[:, 0]
            chol, RZX, RX = rows.system(D, lams)
            grad_u = chol.scale(rows.zt(g)[:, None])[:, 0] - u
            c_u = chol.solve_L(grad_u[:, None])[:, 0]
            if joint:
                c_b = sla.solve_triangular(RX, rows.X.T @ g - RZX.T @ c_u, lower=True, check_finite=False)
                d_beta = sla.solve_triangular(RX, c_b, lower=True, trans="T", check_finite=False)
                d_u = chol.solve_Lt((c_u - RZX @ d_beta)[:, None])[:, 0]
                decrement = c_u @ c_u + c_b @ c_b
            else:
                d_beta = np.zeros_like(beta)
                d_u = chol.solve_Lt(c_u[:, None])[:, 0]
                decrement = c_u @ c_u
            if decrement < 1e-20 * max(1.0, abs(value)) or decrement < 1e-14:
                break
            step = 1.0
            for _ in range(30):
                new_value, new_eta = objective(u + step * d_u, beta + step * d_beta)
                if new_value >= value - 1e-12 * abs(value):
                    break
                step *= 0.5
            else:
                # no step along the scoring direction keeps the objective: the mode is as close as float64
                # sees it (or the trial point is far out, where the rate cap flattens the objective); taking the
                # worse step and iterating on would cost max_iter x 30 evaluations for nothing
                break
            u, beta, value, eta = u + step * d_u, beta + step * d_beta, new_value, new_eta
        else:
            warnings.warn(f"penalised IRLS did not converge in {max_iter} iterations", RuntimeWarning,
                          stacklevel=4)
        # the system at the mode (weights re-evaluated there)
        D = w * lik.fisher(eta[:, None], **ctx)[:, 0, 0]
        chol, RZX, RX = rows.system(D, lams)
        deviance = -2.0 * value + chol.logdet
        return u, beta, deviance, PLSSystem(chol, RZX, RX, u, beta, 1.0)

    @staticmethod
    def _population_nuisance(mode, theta0: np.ndarray, family: FamilyParameters) -> np.ndarray:
        """The family's nuisance parameters of the fit without random effects (``theta0 = 0``, beta at its mode),
        the start of the variance-component search, as glmer.nb starts from glm.nb's dispersion: from the
        family's default start the first quasi-Newton steps of the joint search can leave for the box's edges,
        where the objective is nearly flat in the dispersion and the steps in theta grow without bound."""
        value = mode(theta0, family.start, None, True)[0]
        if not family.size:
            return family.start
        res = sopt.minimize(lambda nu: mode(theta0, nu, None, True)[0], family.start, method="L-BFGS-B",
                            bounds=family.bounds, options={"gtol": 1e-6, "ftol": 1e-12, "maxiter": 100})
        if not (np.isfinite(res.fun) and res.fun <= value):
            return family.start
        # a value on the box's edge (a negative binomial at its Poisson limit without random effects) is where the
        # objective is flat in it, and the joint search could not leave it (design 2057 stayed at alpha = 3e-7,
        # 0.07 nats short): that one starts from the family's start instead
        lower, upper = np.array(family.bounds, dtype=float).T
        at_edge = (res.x <= lower + 1e-3) | (res.x >= upper - 1e-3)
        return np.where(at_edge, family.start, res.x)

    def _fit_rows(self, Z, y, w, groups, context=None) -> None:
        factors, labels = self._build_factors(Z, groups)
        for f in factors:
            if f.levels.size < 2:
                raise ValueError(f"factor {f.name!r} has a single level ({f.levels[0]!r}): its variance is not "
                                 "identifiable")
        Z, y, w, labels, context = drop_zero_weights(w, Z, y, labels, context)
        order = block_order(factors)
        facs = [factors[k] for k in order]
        rows = _Rows(self._X(Z), [factors[k].codes(labels[k], allow_unseen=False) for k in order],
                     [factors[k].design(Z) for k in order], facs, y, w, context)
        qs, covs = [f.q for f in facs], [f.spec.covariance for f in facs]
        p = rows.X.shape[1]
        family = FamilyParameters(self.likelihood_)
        start, _ = theta_layout(qs, covs)
        nt, nn = start.size, family.size
        # warm start of PIRLS: the mode at the last trial point (the neighbours of a finite-difference gradient
        # then agree to the last digits), unless its deviance is _FAR_TRIAL above the stage's best (a line search's
        # trial far out left beta in the tens of thousands for the next, nearby point to walk back from)
        state = {"u": np.zeros(sum(f.size for f in facs)), "beta": np.zeros(p), "best": np.inf}

        def mode(theta, nu, beta, joint, *, final=False):
            beta = state["beta"] if beta is None else beta
            u, beta, dev, system = self._mode(rows, family.build(nu), relative_factors(theta, qs, covs), state["u"],
                                              beta, joint=joint,
                                              max_iter=self.max_iter if final else min(self.max_iter, _TRIAL_PIRLS))
            if final or dev <= state["best"] + _FAR_TRIAL:
                state.update(u=u, best=np.inf if final else min(dev, state["best"]))
                if joint:
                    state["beta"] = beta
            return dev, system

        with warnings.catch_warnings():  # trial points of the optimiser are not the fitted model
            warnings.simplefilter("ignore", JitterWarning)
            # a trial point far out (a Student-t's df near 0) can take PIRLS max_iter steps; the fitted point's
            # PIRLS below still warns
            warnings.filterwarnings("ignore", "penalised IRLS did not converge", RuntimeWarning)
            # population-level start for beta (theta = 0), then nAGQ = 0: theta and the family's nuisance
            # parameters with (u, beta) at their joint mode
            nu0 = self._population_nuisance(mode, np.zeros(nt), family)
            res0 = minimise_variance_components(lambda x: mode(x[:nt], x[nt:], state["beta"], True)[0],
                                                np.concatenate([start, nu0]), qs, covs, n_free=nn,
                                                gtol=1e-6, maxiter=200, grad_tol=1e-3, ftol=1e-12,
                                                free_bounds=family.bounds)
            mode(res0.x[:nt], res0.x[nt:], state["beta"], True, final=True)

            # nAGQ = 1: theta, beta and the nuisance parameters, u at its conditional mode (warm-started)
            def stage1(x):
                return mode(x[:nt], x[nt + p:], x[nt:nt + p], False)[0]

            res = minimise_variance_components(stage1, np.concatenate([res0.x[:nt], state["beta"], res0.x[nt:]]),
                                               qs, covs, n_free=p + nn, gtol=self.tol, maxiter=self.max_iter,
                                               grad_tol=1e-3, free_bounds=[(None, None)] * p + family.bounds)
        theta, beta, nu = res.x[:nt], res.x[nt:nt + p], res.x[nt + p:]
        lams = relative_factors(theta, qs, covs)
        dev, system = mode(theta, nu, beta, False, final=True)
        self.likelihood_ = family.build(nu)
        self.nuisance_ = family.values(nu)
        self.factors_, self.order_ = factors, order
        self.system_ = system
        self.theta_ = theta
        self.log_likelihood_ = -0.5 * dev
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self._fixed_attributes(Z.shape[1])
        self._set_random_effects(lams)
        warn_if_singular(self, lams, [f.name for f in facs])

    # ---- contract --------------------------------------------------------------------------------------

    def log_evidence(self) -> float:
        """Laplace approximation of ``log p(y | theta_hat, beta_hat)`` (random effects integrated out), maximised."""
        check_is_fitted(self)
        return float(self.log_likelihood_)

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draws from the joint Laplace posterior of (beta, random effects); plug-in ``sd_<factor>``."""
        return self._draw_effects(n, rng)

    def _predictive_dist(self, Z, groups, allow_unseen, context=None):
        Z = self._validate_Z(Z)
        ctx = row_context(self.likelihood_, context or {}, Z.shape[0])
        mean, var = self._predictor_moments_grouped(Z, groups, allow_unseen)
        return self.likelihood_.predictive(torch.from_numpy(mean[:, None]), torch.from_numpy(var[:, None, None]),
                                           **ctx)

    def _y_index(self, y) -> np.ndarray:
        return np.asarray(column_or_1d(y), dtype=np.float64)

    def pointwise_log_likelihood(self, draws: dict, Z, y, *, groups=None, sample_weight=None,
                                 **context) -> np.ndarray:
        """``w_i log p(y_i | f_s(z_i, g_i))``, shape (S, n); a row of weight 0 contributes 0. ``context``: the
        family's per-row keywords (``trials=`` for the binomial)."""
        Z = self._validate_Z(Z)
        y = self._y_index(y)
        if y.shape[0] != Z.shape[0]:
            raise ValueError(f"mismatched lengths: Z has {Z.shape[0]} rows, y has {y.shape[0]}")
        ctx = row_context(self.likelihood_, context, Z.shape[0])
        w = self._weights(sample_weight, Z.shape[0], allow_zero=True)
        f = self._draw_predictor(draws, Z, groups)
        return w[None] * self.likelihood_.log_prob(f[..., None], y[None], **ctx)

    def sample_predictive(self, draws: dict, Z, *, groups=None, generator=None, sample_weight=None,
                          **context) -> np.ndarray:
        """One replicate per draw and row, shape (S, n)."""
        Z = self._validate_Z(Z)
        ctx = row_context(self.likelihood_, context, Z.shape[0])
        f = self._draw_predictor(draws, Z, groups)
        g = torch.Generator().manual_seed(int(as_generator(generator).integers(0, 2**62)))
        out = self.likelihood_.sample(torch.from_numpy(f[..., None]), g, **ctx).numpy()
        return self._decode(out)

    def pyro_model(self, Z, y=None, *, groups, sample_weight=None, prior_scale=None, **context):
        """The fitted model as a Pyro model (sites ``beta``, ``intercept``, ``z_<factor>`` and the deterministic
        ``u_<factor>``, ``y`` with ``obs=`` per row; variance components and nuisance values plugged in): see
        :mod:`~bayes_diglm.inference.mixed.pyro_model`. ``y`` as ``fit`` takes it (None to sample), ``groups``
        with levels seen in fit, ``prior_scale`` None for the heads' flat prior on the fixed effects (NUTS from
        :meth:`pyro_mode`) or the sd of a Normal prior (proper: Pyro's ``Predictive`` can sample it),
        ``context`` the family's per-row keywords."""
        if prior_scale is not None and not (np.isfinite(prior_scale) and prior_scale > 0):
            raise ValueError(f"prior_scale must be None or a positive number, got {prior_scale!r}")
        Z = self._validate_Z(Z)
        ctx = row_context(self.likelihood_, context, Z.shape[0])
        codes = self._row_codes(Z, groups, allow_unseen=False)
        if y is not None:
            y = self._y_index(y)
            if y.shape[0] != Z.shape[0]:
                raise ValueError(f"mismatched lengths: Z has {Z.shape[0]} rows, y has {y.shape[0]}")
        w = None if sample_weight is None else self._weights(sample_weight, Z.shape[0], allow_zero=True)
        return glmm_pyro_model(self, Z, y, codes, w, ctx, prior_scale)

    def pyro_mode(self) -> dict[str, torch.Tensor]:
        """The fitted mode as values of :meth:`pyro_model`'s sample sites (``beta``, ``intercept``,
        ``z_<factor>``): a start for Pyro's samplers, ``NUTS(head.pyro_model,
        init_strategy=init_to_value(values=head.pyro_mode()), max_plate_nesting=1)`` (the flat priors cannot be
        sampled from, so neither the default start nor Pyro's guess of the plate nesting can run the model)."""
        check_is_fitted(self)
        values = {"beta": torch.from_numpy(self.coef_.copy())}
        if self.fit_intercept:
            values["intercept"] = torch.tensor(self.intercept_, dtype=torch.float64)
        offs = self._offsets()
        for k, f in enumerate(self.factors_):
            block = self.system_.u[offs[k]:offs[k] + f.size]
            values[f"z_{f.name}"] = torch.from_numpy(block.reshape(f.levels.size, f.q).copy())
        return values

    def _decode(self, y):
        return y


class MixedEffectsGLM(RegressorMixin, _LaplaceGLMM):
    r"""GLMM with crossed or nested random effects for any family of the registry with one linear predictor, by
    the Laplace approximation (lme4's ``glmer``, ``nAGQ=1``; ``glmer.nb`` and glmmTMB's ``nbinom2`` for the
    negative binomial).

    .. math:: y_i \sim p(y \mid \eta_i, \phi), \quad \eta_i = x_i^\top \beta + \textstyle\sum_k a_{ik}^\top
              b_{k, g_k(i)}, \quad b = \Lambda_\theta u, \quad u \sim N(0, I),

    with ``phi`` the family's nuisance parameters (the negative binomial's dispersion ``alpha = 1 / theta``, a
    Gamma's shape, a Student-t's scale and degrees of freedom, a Gaussian's noise variance), estimated jointly with
    theta and beta (as glmmTMB; glmer.nb profiles its theta by alternation, to the same maximum). The random
    effects are integrated out by the Laplace approximation at their conditional mode, found by penalised IRLS
    with the family's expected information as weights (lme4's working weights, equal to the observed curvature
    for canonical links and positive where the observed one is not); the log-determinant uses the same weights,
    as lme4's does, so ``log_likelihood_`` is lme4's ``logLik`` (with the family's full normalising constants, the
    binomial coefficient included).

    Parameters
    ----------
    likelihood : str or Likelihood
        A registered family name (``"binomial"``, ``"negative_binomial"``, ``"poisson"``, ``"bernoulli"``,
        ``"gamma"``, ``"student_t"``, ``"beta"``, ``"gaussian"``) or an instance; an instance's nuisance values
        are the optimiser's start and its ``fixed`` ones are held (``NegativeBinomial(alpha=0.5, fixed=("alpha",))``).
        Families with several linear predictors or without an expected information are refused.
    random_effects : RandomEffect, list of RandomEffect or None
        The random-effect terms (a random intercept per grouping column when None).
    fit_intercept : bool
        Add a fixed intercept.
    tol, max_iter : float, int
        The optimiser's gradient tolerance and iteration limits.

    Notes
    -----
    ``fit(Z, y, groups=..., sample_weight=None, **context)`` takes the family's per-row keywords
    (``trials=`` for the binomial: ``y`` successes out of ``trials``, lme4's ``cbind(successes, failures)``),
    carried through the rows as the weights are; the prediction methods take them too. Fitted: as
    :class:`MixedEffectsClassifier`, plus ``nuisance_`` (the fitted nuisance values) and ``likelihood_`` (the
    family at them).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(8), 10); Z = rng.normal(size=(80, 1))
    >>> trials = rng.integers(1, 20, size=80)
    >>> p = 1 / (1 + np.exp(-(0.5 * Z[:, 0] + 0.7 * rng.normal(size=8)[groups])))
    >>> y = rng.binomial(trials, p)
    >>> head = MixedEffectsGLM(likelihood="binomial").fit(Z, y, groups=groups, trials=trials)
    >>> head.predict(Z[:2], groups=groups[:2], trials=trials[:2]).shape
    (2,)
    """

    def __init__(self, *, likelihood="gaussian", random_effects=None, fit_intercept: bool = True, tol: float = 1e-5,
                 max_iter: int = 500):
        self.likelihood = likelihood
        self.random_effects = random_effects
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, Z, y, *, groups, sample_weight=None, **context) -> MixedEffectsGLM:
        """Laplace fit on features ``Z``, targets ``y`` (checked by the family), ``groups`` and the family's
        per-row keywords (``trials=``)."""
        with self._keep_state_on_error():
            lik = glmm_family(self.likelihood)
            Z, y = validate_data(self, Z, y, dtype=np.float64, y_numeric=True, reset=True, ensure_min_features=0)
            ctx = row_context(lik, context, Z.shape[0])
            y = lik.check_target(y, **ctx)
            self.likelihood_ = lik
            self._fit_rows(Z, y, self._weights(sample_weight, Z.shape[0], allow_zero=True), groups, ctx)
        return self

    def predict_dist(self, Z, *, groups=None, allow_unseen: bool = False, **context):
        """The family's predictive under the Gaussian of the linear predictor (joint Laplace posterior; unseen
        levels add their prior variance): Gauss-Hermite or closed form, as the family provides."""
        return Predictive(self._predictive_dist(Z, groups, allow_unseen, context), discrete=self.likelihood_.discrete)

    def predict(self, Z, *, groups=None, allow_unseen: bool = False, **context) -> np.ndarray:
        """The predictive mean of ``y`` at each row."""
        return np.asarray(self.predict_dist(Z, groups=groups, allow_unseen=allow_unseen, **context).mean)


class MixedEffectsClassifier(ClassifierMixin, _LaplaceGLMM):
    r"""Binary logistic GLMM with crossed or nested random effects, by the Laplace approximation (glmer nAGQ=1).

    .. math:: p(y_i = 1) = \sigma(x_i^\top \beta + \textstyle\sum_k a_{ik}^\top b_{k, g_k(i)}), \quad
              b = \Lambda_\theta u, \quad u \sim N(0, I).

    For each (theta, beta) the random effects are integrated out by the Laplace approximation at their
    conditional mode (penalised IRLS with the blocked Cholesky of the Gaussian head); theta and beta maximise it
    (L-BFGS-B, started from the nAGQ=0 fit where beta sits at the joint mode). The random-effect scales are
    estimated (the previous default fixed them). ``sample_weight`` are frequency weights (rows of weight 0 are
    dropped); binomial rows of ``k`` successes in ``m`` trials are ``MixedEffectsGLM(likelihood="binomial")`` with
    ``trials=m`` (the same fit as a 1-row of weight ``k`` and a 0-row of weight ``m - k`` here, up to the binomial
    coefficients in ``log_likelihood_``). The family is the registry's ``"bernoulli"``.

    Fitted: ``classes_``, ``coef_``, ``intercept_``, ``bse_`` (from the joint curvature at the mode),
    ``re_cov_``, ``random_effects_`` (conditional modes), ``random_effects_cov_`` (conditional covariances, lme4's
    ``condVar``), ``log_likelihood_`` (Laplace), ``theta_``, ``converged_`` and ``singular_`` (as
    :class:`MixedEffectsRegression`). :meth:`sample` draws (beta, b) from the joint
    Laplace posterior (flat prior on beta); the variance components are plug-ins.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(10), 40); Z = rng.normal(size=(400, 2))
    >>> logits = Z @ [1.5, -1.0] + rng.normal(size=10)[groups]
    >>> y = (rng.random(400) < 1 / (1 + np.exp(-logits))).astype(int)
    >>> clf = MixedEffectsClassifier().fit(Z, y, groups=groups)
    >>> clf.predict_proba(Z[:3], groups=groups[:3]).shape
    (3, 2)
    """

    _family = "bernoulli"

    def __init__(self, *, random_effects=None, fit_intercept: bool = True, tol: float = 1e-5,
                 max_iter: int = 500):
        self.random_effects = random_effects
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, Z, y, *, groups, sample_weight=None) -> MixedEffectsClassifier:
        """Laplace fit on features ``Z``, binary labels ``y`` (any two hashable labels) and ``groups``."""
        with self._keep_state_on_error():
            check_params(self)
            Z, y = validate_data(self, Z, y, dtype=None, reset=True, ensure_min_features=0)
            Z = np.asarray(Z, dtype=np.float64)
            check_classification_targets(y)
            classes, index = np.unique(y, return_inverse=True)
            if classes.size != 2:
                raise ValueError(f"MixedEffectsClassifier needs exactly 2 classes, got {classes.size}: "
                                 f"{classes[:5].tolist()}")
            self.classes_ = classes
            self.likelihood_ = glmm_family(self._family)
            self._fit_rows(Z, index.astype(np.float64), self._weights(sample_weight, Z.shape[0], allow_zero=True),
                           groups)
        return self

    def _y_index(self, y):
        y = column_or_1d(y)
        index = np.clip(np.searchsorted(self.classes_, y), 0, 1)
        if not np.all(self.classes_[index] == y):
            raise ValueError(f"y contains labels not seen in fit: {np.unique(y[self.classes_[index] != y])[:5]}")
        return index.astype(np.float64)

    def _decode(self, y):
        return self.classes_[y.astype(np.int64)]

    def predict_dist(self, Z, *, groups=None, allow_unseen: bool = False):
        """Bernoulli predictive over ``classes_`` (MacKay's probit on the Gaussian of the logit under the joint
        Laplace posterior; unseen levels add their prior variance)."""
        return Predictive(self._predictive_dist(Z, groups, allow_unseen), classes=self.classes_)

    def predict_proba(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """``p(y | z, g, data)``, shape (n, 2), columns in ``classes_`` order."""
        return self.predict_dist(Z, groups=groups, allow_unseen=allow_unseen).probs

    def predict(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """Most probable label under the predictive."""
        proba = self.predict_proba(Z, groups=groups, allow_unseen=allow_unseen)
        return self.classes_[np.argmax(proba, axis=1)]


class MixedEffectsPoisson(RegressorMixin, _LaplaceGLMM):
    r"""Poisson (log link) GLMM with crossed or nested random effects, by the Laplace approximation (glmer nAGQ=1).

    Same model and fit as :class:`MixedEffectsClassifier` with ``y_i ~ Poisson(exp(eta_i))``; ``predict`` gives
    the predictive mean ``E[y] = E[exp(eta)]`` (the Poisson-lognormal mean under the joint Laplace posterior).
    """

    _family = "poisson"

    def __init__(self, *, random_effects=None, fit_intercept: bool = True, tol: float = 1e-5,
                 max_iter: int = 500):
        self.random_effects = random_effects
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, Z, y, *, groups, sample_weight=None) -> MixedEffectsPoisson:
        """Laplace fit on features ``Z``, counts ``y`` (non-negative integers) and ``groups``."""
        with self._keep_state_on_error():
            check_params(self)
            Z, y = validate_data(self, Z, y, dtype=np.float64, y_numeric=True, reset=True, ensure_min_features=0)
            if np.any(y < 0) or np.any(y != np.round(y)):
                raise ValueError("y must hold non-negative integer counts")
            self.likelihood_ = glmm_family(self._family)
            self._fit_rows(Z, y, self._weights(sample_weight, Z.shape[0], allow_zero=True), groups)
        return self

    def predict_dist(self, Z, *, groups=None, allow_unseen: bool = False):
        """Poisson-lognormal predictive (Gauss-Hermite mixture over the Gaussian of the log rate)."""
        return Predictive(self._predictive_dist(Z, groups, allow_unseen))

    def predict(self, Z, *, groups=None, allow_unseen: bool = False) -> np.ndarray:
        """Predictive mean ``exp(m + v / 2)`` of the count at each row."""
        Z = self._validate_Z(Z)
        mean, var = self._predictor_moments_grouped(Z, groups, allow_unseen)
        return np.exp(mean + 0.5 * var)

