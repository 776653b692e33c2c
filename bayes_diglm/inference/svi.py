"""Stochastic variational inference (Pyro) for the posterior over classification-head weights."""

from __future__ import annotations

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from torch.distributions import constraints
from torch.distributions.transforms import ReshapeTransform

from bayes_diglm._validation import check_positive

from .base import COVARIANCES, as_generator
from .laplace import _GaussianPosteriorClassifier, laplace_glm

__all__ = ["SVIClassifier"]

# the ELBO estimate behind log_evidence(): up to this many particles at the fitted guide (full data), fewer
# when particles * n * k would exceed _EVIDENCE_ELEMENTS logits
_EVIDENCE_PARTICLES = 256
_EVIDENCE_ELEMENTS = 4_000_000


class _GaussianFromGuide:
    r"""The guide's Gaussian ``N(mean, F F^T + diag(d^2))`` over the weights (``mean`` (k, D+1), class-major).

    ``factor`` is ``F`` (P, r) or None and ``diag`` the vector ``d`` (P,) or None: a full guide has the lower
    Cholesky factor as ``F``, a diagonal guide only ``d``, a low-rank guide both, a Kronecker guide
    ``F = L_class kron L_feature``. A large diagonal posterior never becomes a dense P x P matrix.
    """

    def __init__(self, mean: np.ndarray, factor: np.ndarray | None, diag: np.ndarray | None):
        self.mean = mean
        self.factor = factor
        self.diag = diag

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        P = self.mean.size
        out = np.zeros((num, P))
        if self.factor is not None:
            out += rng.standard_normal((num, self.factor.shape[1])) @ self.factor.T
        if self.diag is not None:
            out += rng.standard_normal((num, P)) * self.diag
        return self.mean[None] + out.reshape((num,) + self.mean.shape)

    def logit_cov(self, X: np.ndarray) -> np.ndarray:
        k_out, d = self.mean.shape
        cov = np.zeros((X.shape[0], k_out, k_out))
        if self.diag is not None:  # independent part: diagonal over classes
            var = (X**2) @ (self.diag.reshape(k_out, d) ** 2).T
            idx = np.arange(k_out)
            cov[:, idx, idx] = var
        if self.factor is not None:
            S = self.factor.reshape(k_out, d, -1)  # rows of F grouped by class
            proj = np.einsum("nd,kdp->nkp", X, S)  # J_n F for each input
            cov += np.einsum("nkp,nlp->nkl", proj, proj)
        return cov

    def marginal_variance(self) -> np.ndarray:
        var = np.zeros(self.mean.size)
        if self.factor is not None:
            var += (self.factor**2).sum(axis=1)
        if self.diag is not None:
            var += self.diag**2
        return var.reshape(self.mean.shape)


def _seed_from(generator: np.random.Generator) -> int:
    return int(generator.integers(0, 2**62))


class SVIClassifier(_GaussianPosteriorClassifier):
    r"""Bayesian logistic (K=2) or softmax (K>2) regression on features by SVI with a Gaussian guide (Pyro).

    Model (float64): ``W ~ N(0, 1/prior_precision)`` on every weight and ``N(0, 1/intercept_prior_precision)`` on
    the bias (default: the weights' precision), ``y_i ~ Bernoulli(sigmoid(w^T [z_i; 1]))`` or
    ``Categorical(softmax(W [z_i; 1]))`` (the log-likelihood of :mod:`bayes_diglm.likelihoods`, entered by
    ``pyro.factor``) inside ``pyro.plate("data", n, subsample_size=batch_size)``. The guide is a Gaussian over
    the flattened weights with the covariance structure ``covariance``: ``"full"`` (lower Cholesky factor),
    ``"diag"`` (mean-field), ``"lowrank"`` (``rank`` factors plus a diagonal) or ``"kron"``
    (``L_class kron L_feature``, a matrix-normal guide).

    **Initialisation and convergence.** The guide starts at the Laplace approximation (MAP by Newton, covariance
    from the Hessian), so SVI only has to move from a nearby Gaussian to the ELBO optimum. ClippedAdam runs with a
    learning rate decaying to ``lr / 10`` over ``num_steps`` and ``num_particles`` vectorised particles. Every
    ``plateau_window`` steps the window averages of the guide's means and standard deviations are compared with
    the previous window's; training stops when no mean moved by more than ``plateau_tol`` posterior sds and no sd
    changed by more than a fraction ``plateau_tol`` (``plateau_tol=None`` always runs ``num_steps``). The final
    guide is the average of the parameters over the last window (Polyak averaging, which removes most of the
    step-to-step noise). ``converged_`` says whether the rule was met; when not, a ``ConvergenceWarning`` says so.

    Each instance keeps its parameters in its own Pyro parameter-store scope, restored around every call, so
    several heads never share or overwrite each other's parameters and the global store is left as it was.
    Random numbers come from a forked torch RNG seeded by ``seed`` (the global torch RNG is not touched).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(200, 2)); y = (Z @ [2.0, -1.0] + rng.logistic(size=200) > 0).astype(int)
    >>> clf = SVIClassifier(covariance="diag", num_steps=400, seed=0).fit(Z, y)
    >>> clf.predict_proba(Z[:2]).shape
    (2, 2)
    """

    _arviz_attrs = {"inference": "stochastic variational inference (Pyro, Gaussian guide)",
                    "draws": "i.i.d. from an approximate posterior"}

    def __init__(
        self,
        *,
        prior_precision: float = 1.0,
        intercept_prior_precision: float | None = None,
        fit_intercept: bool = True,
        covariance: str = "full",
        rank: int | None = None,
        num_steps: int = 5000,
        lr: float = 0.01,
        batch_size: int | None = None,
        num_particles: int = 4,
        plateau_window: int = 250,
        plateau_tol: float | None = 0.05,
        seed: int = 0,
        classes=None,
    ):
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.fit_intercept = fit_intercept
        self.covariance = covariance
        self.rank = rank
        self.num_steps = num_steps
        self.lr = lr
        self.batch_size = batch_size
        self.num_particles = num_particles
        self.plateau_window = plateau_window
        self.plateau_tol = plateau_tol
        self.seed = seed
        self.classes = classes

    # ---- checks ----------------------------------------------------------------------------------------

    def _check_params(self, n: int) -> None:
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        for name in ("num_steps", "num_particles", "plateau_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_positive(self.lr, "lr")
        if self.plateau_tol is not None:
            check_positive(self.plateau_tol, "plateau_tol")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer))
                                      or self.rank < 1):
            raise ValueError(f"rank must be a positive integer or None, got {self.rank!r}")
        if self.batch_size is not None and not (isinstance(self.batch_size, (int, np.integer))
                                                and 1 <= self.batch_size <= n):
            raise ValueError(f"batch_size must be in 1..{n} or None, got {self.batch_size!r}")

    def _prior(self, k_out: int, D_aug: int) -> np.ndarray:
        prior = np.full((k_out, D_aug), check_positive(self.prior_precision, "prior_precision"))
        if self.fit_intercept:
            b = self.prior_precision if self.intercept_prior_precision is None else self.intercept_prior_precision
            prior[:, -1] = check_positive(b, "intercept_prior_precision")
        return prior

    # ---- the Pyro program ------------------------------------------------------------------------------

    def _model_fn(self, prior_scale: torch.Tensor):
        lik = self.likelihood_
        k_out, d = prior_scale.shape

        def model(X: torch.Tensor, y: torch.Tensor, batch_size: int | None = None):
            W = pyro.sample("W", dist.Normal(torch.zeros_like(prior_scale), prior_scale).to_event(2))
            W = W.reshape((-1, k_out, d)) if W.dim() > 2 else W  # (particles, k, D) when vectorised
            with pyro.plate("data", X.shape[0], subsample_size=batch_size, dim=-1) as idx:
                f = torch.einsum("bd,...kd->...bk", X[idx], W)
                pyro.factor("y", lik.log_prob(f, y[idx]))

        return model

    def _init_guide(self, X: np.ndarray, y: np.ndarray, w, prior: np.ndarray) -> dict[str, torch.Tensor]:
        """Guide parameters at the Laplace approximation (full covariance when affordable, else diagonal)."""
        k_out, d = prior.shape
        P = k_out * d
        structure = "full" if P <= 2000 else "diag"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an unconverged MAP is still a fine start
            fit = laplace_glm(X, y, likelihood=self.likelihood_, prior_precision=prior, covariance=structure,
                              optimizer="newton" if structure == "full" else "lbfgs", sample_weight=w, tol=1e-6,
                              max_iter=50 if structure == "full" else 500)
        loc = torch.from_numpy(fit.mean.ravel().copy())
        var = fit.posterior.marginal_variance().ravel()
        if structure == "full":
            chol = fit.posterior.chol
            cov = np.linalg.solve(chol.T, np.linalg.solve(chol, np.eye(P)))  # small P only
        else:
            cov = np.diag(var)
        cov = 0.5 * (cov + cov.T)
        params = {"loc": loc}
        if self.covariance == "full":
            params["scale_tril"] = torch.from_numpy(np.linalg.cholesky(cov + 1e-12 * np.eye(P)))
        elif self.covariance == "diag":
            params["scale"] = torch.from_numpy(np.sqrt(var))
        elif self.covariance == "lowrank":
            r = min(self.rank if self.rank is not None else max(1, int(round(P**0.5))), P)
            s, u = np.linalg.eigh(cov)
            s, u = np.clip(s[::-1][:r], 0.0, None), u[:, ::-1][:, :r]
            low = (u * s) @ u.T
            params["cov_factor"] = torch.from_numpy(u * np.sqrt(s))
            params["cov_diag"] = torch.from_numpy(np.clip(np.diag(cov - low), 1e-3 * var, None))
        else:  # kron: identity over classes, the features' average Laplace variance
            params["class_tril"] = torch.eye(k_out, dtype=torch.float64)
            params["feature_tril"] = torch.diag(torch.from_numpy(np.sqrt(var.reshape(k_out, d).mean(axis=0))))
        return params

    def _guide_distribution(self, params: dict[str, torch.Tensor], shape: tuple[int, int]):
        loc = params["loc"]
        if self.covariance == "full":
            base = dist.MultivariateNormal(loc, scale_tril=params["scale_tril"])
        elif self.covariance == "diag":
            base = dist.Normal(loc, params["scale"]).to_event(1)
        elif self.covariance == "lowrank":
            base = dist.LowRankMultivariateNormal(loc, params["cov_factor"], params["cov_diag"])
        else:
            base = dist.MultivariateNormal(loc, scale_tril=torch.kron(params["class_tril"], params["feature_tril"]))
        return dist.TransformedDistribution(base, [ReshapeTransform((loc.numel(),), shape)])

    _CONSTRAINTS = {"scale_tril": constraints.lower_cholesky, "scale": constraints.positive,
                    "cov_diag": constraints.positive, "class_tril": constraints.lower_cholesky,
                    "feature_tril": constraints.lower_cholesky}

    def _guide_fn(self, init: dict[str, torch.Tensor], shape: tuple[int, int]):
        def guide(X, y, batch_size=None):
            params = {name: pyro.param(f"svi.{name}", value, constraint=self._CONSTRAINTS.get(name, constraints.real))
                      for name, value in init.items()}
            pyro.sample("W", self._guide_distribution(params, shape))

        return guide

    def _gaussian(self, params: dict[str, np.ndarray], shape) -> _GaussianFromGuide:
        mean = params["loc"].reshape(shape)
        if self.covariance == "full":
            return _GaussianFromGuide(mean, params["scale_tril"], None)
        if self.covariance == "diag":
            return _GaussianFromGuide(mean, None, params["scale"])
        if self.covariance == "lowrank":
            return _GaussianFromGuide(mean, params["cov_factor"], np.sqrt(params["cov_diag"]))
        return _GaussianFromGuide(mean, np.kron(params["class_tril"], params["feature_tril"]), None)

    # ---- fitting ---------------------------------------------------------------------------------------

    def fit(self, Z, y, *, sample_weight=None) -> SVIClassifier:
        """Maximise the ELBO from the Laplace start; see the class notes for the stopping rule.

        ``sample_weight`` weights each row's log-likelihood (an integer weight equals repeating the row). The
        negative loss per step (the ELBO, full-data scale) is kept in ``elbo_history_``.
        """
        with self._keep_state_on_error():
            Z, y, w = self._validate_train(Z, y, sample_weight, y_numeric=False)
            self._check_params(Z.shape[0])
            classes, index = self._encode_train_labels(y)
            self.classes_ = classes
            self.likelihood_ = self._likelihood_for(classes.size)
            self._run_svi(self._design(Z), index, w)
        return self

    def _run_svi(self, X: np.ndarray, y: np.ndarray, w) -> None:
        k_out = self.likelihood_.num_outputs
        shape = (k_out, X.shape[1])
        prior = self._prior(*shape)
        init = self._init_guide(X, y, w, prior)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        if w is not None:  # weights enter the log-likelihood: fold them into the factor via the targets' plate
            Xt, yt = self._weighted(Xt, yt, w)
        model = self._model_fn(torch.from_numpy(1.0 / np.sqrt(prior)))
        guide = self._guide_fn(init, shape)
        steps = int(self.num_steps)
        optim = pyro.optim.ClippedAdam({"lr": float(self.lr), "lrd": 0.1 ** (1.0 / steps)})
        particles = int(self.num_particles)
        loss = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
        window = int(self.plateau_window)
        history: list[float] = []
        store = pyro.get_param_store()
        with store.scope(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            svi = SVI(model, guide, optim, loss=loss)
            sums, previous, converged = None, None, False
            for step in range(steps):
                value = svi.step(Xt, yt, self.batch_size)
                if not np.isfinite(value):
                    raise FloatingPointError(f"the ELBO became {value} at step {step}; lower lr")
                history.append(-float(value))
                current = self._snapshot(store)
                sums = current if sums is None else {k: sums[k] + current[k] for k in sums}
                if (step + 1) % window == 0:
                    averaged = {k: v / window for k, v in sums.items()}
                    sums = None
                    if previous is not None and self.plateau_tol is not None:
                        converged = self._settled(previous, averaged, shape)
                    final, previous = averaged, averaged
                    if converged:
                        break
            if len(history) % window:  # a final partial window (num_steps not a multiple of the window)
                final = {k: v / (len(history) % window) for k, v in sums.items()}
            gaussian = self._gaussian(self._constrained(final), shape)
            evidence = self._elbo_estimate(model, final, shape, Xt, yt)
        if not converged and self.plateau_tol is not None:
            warnings.warn(f"SVIClassifier stopped at num_steps={steps} before its parameters settled (window "
                          f"averages still moved by more than plateau_tol={self.plateau_tol}); raise num_steps "
                          f"or lr", ConvergenceWarning, stacklevel=3)
        d = X.shape[1] - int(self.fit_intercept)
        self.posterior_ = gaussian
        self.coef_ = gaussian.mean[:, :d]
        self.intercept_ = gaussian.mean[:, -1] if self.fit_intercept else np.zeros(k_out)
        self.prior_precision_ = prior
        self.elbo_history_ = np.asarray(history)
        self.n_iter_ = len(history)
        self.converged_ = bool(converged)
        self.elbo_ = evidence

    @staticmethod
    def _weighted(Xt, yt, w):
        """Integer frequency weights repeat rows; other weights are refused (the factor has no per-row scale)."""
        if not np.allclose(w, np.round(w)):
            raise ValueError("SVIClassifier takes integer sample_weight (frequency weights) only")
        reps = torch.from_numpy(np.round(w).astype(np.int64))
        return torch.repeat_interleave(Xt, reps, dim=0), torch.repeat_interleave(yt, reps, dim=0)

    @staticmethod
    def _snapshot(store) -> dict[str, torch.Tensor]:
        return {name: store.get_param(name).detach().clone() for name in store.keys() if name.startswith("svi.")}

    def _constrained(self, params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {name.removeprefix("svi."): value.numpy().copy() for name, value in params.items()}

    def _settled(self, before: dict, after: dict, shape) -> bool:
        a = self._gaussian(self._constrained(before), shape)
        b = self._gaussian(self._constrained(after), shape)
        sd_a, sd_b = np.sqrt(a.marginal_variance()), np.sqrt(b.marginal_variance())
        tol = float(self.plateau_tol)
        return bool(np.all(np.abs(a.mean - b.mean) <= tol * sd_b) and np.all(np.abs(sd_a - sd_b) <= tol * sd_b))

    def _elbo_estimate(self, model, params: dict[str, torch.Tensor], shape, Xt, yt) -> float:
        fixed = {name.removeprefix("svi."): value for name, value in params.items()}

        def guide(X, y, batch_size=None):
            pyro.sample("W", self._guide_distribution(fixed, shape))

        num = int(max(8, min(_EVIDENCE_PARTICLES, _EVIDENCE_ELEMENTS // (Xt.shape[0] * shape[0]))))
        loss = Trace_ELBO(num_particles=num, vectorize_particles=True, max_plate_nesting=1)
        with torch.no_grad():
            return -float(loss.loss(model, guide, Xt, yt, None))

    def log_evidence(self) -> float:
        """The ELBO at the fitted guide: a lower bound on ``log p(y | Z)`` (up to 256 particles, full data)."""
        check_is_fitted(self)
        return self.elbo_

    def _sample_weights(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Posterior draws of the weights from the fitted guide, (n, k, D+1)."""
        return self.posterior_.sample(int(n), as_generator(rng))
