"""Stochastic variational inference (Pyro) for the posterior over classification-head weights."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoMultivariateNormal, AutoNormal

from bayes_diglm._validation import check_positive
from bayes_diglm.inference.laplace import _PosteriorClassifier

__all__ = ["SVIClassifier"]

_GUIDES = {
    "meanfield": AutoNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "full": AutoMultivariateNormal,
}


class _GaussianFromGuide:
    """The guide's Gaussian ``N(mean, S S^T)`` over the weights (covariance form), for probit predictives.

    ``scale`` is the lower factor ``S`` (P, P), or for a mean-field guide the vector of standard deviations
    (P,), kept as a vector so that a large mean-field posterior never becomes a dense P x P matrix.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        self.mean = mean
        self.scale = scale

    def logit_cov(self, X: np.ndarray) -> np.ndarray:
        k_out, d = self.mean.shape
        if self.scale.ndim == 1:  # independent weights: the logits' covariance is diagonal
            var = (X**2) @ (self.scale.reshape(k_out, d) ** 2).T
            cov = np.zeros((X.shape[0], k_out, k_out))
            idx = np.arange(k_out)
            cov[:, idx, idx] = var
            return cov
        S = self.scale.reshape(k_out, d, -1)  # rows of S grouped by class
        proj = np.einsum("nd,kdp->nkp", X, S)  # J_n S for each input
        return np.einsum("nkp,nlp->nkl", proj, proj)


def _seed_from(generator: np.random.Generator) -> int:
    return int(generator.integers(0, 2**62))


class SVIClassifier(_PosteriorClassifier):
    r"""Bayesian logistic (K=2) or softmax (K>2) regression on features by SVI with a Pyro autoguide.

    Model (float64): ``W ~ N(0, 1/prior_precision)`` on every weight including the bias (the bias gets
    the same prior), ``y_i ~ Bernoulli(sigmoid(w^T [z_i; 1]))`` or ``Categorical(softmax(W [z_i; 1]))``
    inside ``pyro.plate("data", n, subsample_size=batch_size)``.  The guide is chosen by name:
    ``"meanfield"`` (AutoNormal), ``"lowrank"`` (AutoLowRankMultivariateNormal, ``rank``) or ``"full"``
    (AutoMultivariateNormal).

    Each instance keeps its parameters in its own Pyro parameter-store scope (``ParamStoreDict.scope``),
    restored around every call, so several heads never share or overwrite each other's parameters and
    the global store is left as it was.  Random numbers come from a forked torch RNG seeded by ``seed``
    (the global torch RNG is not touched).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(200, 2)); y = (Z @ [2.0, -1.0] + rng.logistic(size=200) > 0).astype(int)
    >>> clf = SVIClassifier(guide="meanfield").fit(Z, y, num_steps=300, lr=0.05, seed=0)
    >>> clf.predict_proba(Z[:2]).shape
    (2, 2)
    """

    _arviz_attrs = {"inference": "stochastic variational inference (Pyro autoguide)"}

    def __init__(
        self,
        *,
        prior_precision: float = 1.0,
        fit_intercept: bool = True,
        guide: str = "full",
        rank: int | None = None,
        num_classes: int | None = None,
    ):
        self.prior_precision = prior_precision
        self.fit_intercept = fit_intercept
        self.guide = guide
        self.rank = rank
        self.num_classes = num_classes

    # ---- the Pyro program ------------------------------------------------------------------------------

    def _model_fn(self, k_out: int, d: int, scale: float):
        def model(X: torch.Tensor, y: torch.Tensor | None = None, batch_size: int | None = None):
            W = pyro.sample("W", dist.Normal(torch.zeros(k_out, d, dtype=X.dtype), scale).to_event(2))
            with pyro.plate("data", X.shape[0], subsample_size=batch_size) as idx:
                logits = X[idx] @ W.T
                obs = None if y is None else y[idx]
                if k_out == 1:
                    pyro.sample("y", dist.Bernoulli(logits=logits[:, 0]), obs=obs)
                else:
                    pyro.sample("y", dist.Categorical(logits=logits), obs=obs)

        return model

    def _make_guide(self, model):
        if self.guide == "lowrank":
            return AutoLowRankMultivariateNormal(model, rank=self.rank, init_scale=0.1)
        return _GUIDES[self.guide](model, init_scale=0.1)

    def fit(
        self,
        Z,
        y,
        *,
        num_steps: int = 3000,
        lr: float = 0.02,
        batch_size: int | None = None,
        seed: int = 0,
        num_particles: int = 1,
        plateau_window: int = 200,
        plateau_tol: float | None = 1e-4,
    ) -> SVIClassifier:
        """Maximise the ELBO with ClippedAdam (learning rate decaying to ``lr/10`` over ``num_steps``).

        Stopping rule: the loss is averaged over consecutive windows of ``plateau_window`` steps; training
        stops after the first window whose mean improves on the previous window's mean by less than
        ``plateau_tol * |previous mean|`` (``plateau_tol=None`` always runs ``num_steps``).  The loss per
        step (negative ELBO, full-data scale) is kept in ``elbo_history_`` as the ELBO.
        """
        if self.guide not in _GUIDES:
            raise ValueError(f"guide must be one of {tuple(_GUIDES)}, got {self.guide!r}")
        X = self._design(Z, fitted=False)
        y, K = self._labels(y, X.shape[0])
        scale = 1.0 / np.sqrt(check_positive(self.prior_precision, "prior_precision"))
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        lr = check_positive(lr, "lr")
        if batch_size is not None and not 1 <= int(batch_size) <= X.shape[0]:
            raise ValueError(f"batch_size must be in 1..{X.shape[0]} or None, got {batch_size!r}")
        k_out = 1 if K == 2 else K
        Xt = torch.as_tensor(X, dtype=torch.float64)
        yt = torch.as_tensor(y, dtype=torch.float64 if K == 2 else torch.long)
        model = self._model_fn(k_out, X.shape[1], float(scale))
        guide = self._make_guide(model)
        optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1.0 / int(num_steps))})
        history: list[float] = []
        store = pyro.get_param_store()
        with store.scope() as state, torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            svi = SVI(model, guide, optim, loss=Trace_ELBO(num_particles=int(num_particles)))
            window_means: list[float] = []
            for step in range(int(num_steps)):
                loss = svi.step(Xt, yt, batch_size)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"the ELBO became {loss} at step {step}; lower lr")
                history.append(-float(loss))
                if plateau_tol is not None and (step + 1) % plateau_window == 0:
                    window_means.append(float(np.mean(history[-plateau_window:])))
                    if len(window_means) >= 2:
                        prev, cur = window_means[-2], window_means[-1]
                        if cur - prev < plateau_tol * abs(prev):
                            break
            with torch.no_grad():
                mean, scale_tril = self._guide_gaussian(guide, k_out * X.shape[1])
        # assign the fitted state
        self.n_features_in_ = X.shape[1] - int(self.fit_intercept)
        self.classes_ = np.arange(K)
        self.n_classes_ = K
        self.elbo_history_ = np.asarray(history)
        self.n_iter_ = len(history)
        self.weights_ = mean.reshape(k_out, X.shape[1])
        self.coef_ = self.weights_[:, : self.n_features_in_]
        self.intercept_ = self.weights_[:, -1] if self.fit_intercept else np.zeros(k_out)
        self.posterior_ = _GaussianFromGuide(self.weights_, scale_tril)
        self.guide_ = guide
        self._param_state = state
        self._shape = (k_out, X.shape[1])
        return self

    def _guide_gaussian(self, guide, num_params: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and scale (lower Cholesky factor, or standard deviations for mean-field) of the guide."""
        if isinstance(guide, AutoNormal):
            mean = guide.locs.W.detach().reshape(-1)
            return mean.numpy().copy(), guide.scales.W.detach().reshape(-1).numpy().copy()
        posterior = guide.get_posterior()
        cov = posterior.covariance_matrix.detach().numpy()
        return posterior.mean.detach().numpy().copy(), np.linalg.cholesky(cov)

    def _sample_weights(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """Posterior draws of the weights via ``pyro.infer.Predictive`` on the guide, (num, k, D)."""
        shape = self._shape
        with pyro.get_param_store().scope(self._param_state), torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(rng))
            dummy = torch.zeros(1, shape[1], dtype=torch.float64)
            predictive = Predictive(self.guide_, num_samples=int(num), return_sites=["W"], parallel=True)
            with torch.no_grad():
                W = predictive(dummy)["W"]
        return W.detach().numpy().reshape((int(num),) + shape).astype(np.float64)
