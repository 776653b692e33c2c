r"""NUTS (Pyro) over the GLM weights of any registered family: a Pyro model with real ``obs=`` sites, real chains.

Each head here exposes its model as :meth:`pyro_model` (``pyro_model(Z, y=None, sample_weight=None, **context)``):
sample sites ``"beta"`` (shape ``(D,)`` for a one-output family, ``(k, D)`` otherwise), ``"intercept"``, one site
per nuisance parameter of the family (``"noise_variance"``, ``"df"``, ...) and the observation site ``"y"``
inside ``pyro.plate("data", n)``, so ``pyro.infer.Predictive``, AutoGuides and ``MCMC`` run on it as on any
Pyro model. :class:`NUTSRegressor` and :class:`NUTSClassifier` sample it with Pyro's NUTS, one chain after another
(each with its own seed), and keep the chains with their sampler statistics (divergences, energy, tree depth,
step size) for ArviZ.

Priors: ``beta ~ N(0, 1 / prior_precision)`` and ``intercept ~ N(0, 1 / intercept_prior_precision)`` by default;
``prior=`` takes any Pyro distribution over beta (event shape ``(D,)`` or ``(k, D)``) or a callable
``prior(**nuisance) -> distribution`` (the conjugate Normal-Inverse-Gamma prior, say, whose scale depends on the
noise variance). Each nuisance parameter gets ``N(u0, 2^2)`` on its unconstrained scale (``u0`` the family's
initial value mapped by ``transform_to(constraint).inv``) unless ``nuisance_priors[name]`` gives a Pyro
distribution, or a number that fixes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from scipy import optimize
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from torch.distributions import transform_to

from bayes_diglm import likelihoods
from bayes_diglm._validation import COUNT, FRACTION, POSITIVE, SEED, Interval, check_positive

from .base import PosteriorClassifierMixin, PosteriorHead, Predictive
from .pyro_model import _constant, check_prior, features, glm_model, normal_prior, prior_over_beta, weights_shape

__all__ = ["NUTSClassifier", "NUTSRegressor"]

_STATS = ("diverging", "energy", "tree_depth", "step_size")


class _TransitionRecorder(poutine.messenger.Messenger):
    """Collects the momentum draws and doubling directions that NUTS samples in one transition (the model's own
    sites, sampled each time the potential is evaluated, are ignored)."""

    def __init__(self):
        super().__init__()
        self.kinetic = 0.0
        self.depth = 0

    def _pyro_post_sample(self, msg):
        name = msg["name"]
        if name.startswith("r_t="):
            self.kinetic += 0.5 * float((msg["value"] ** 2).sum())
        elif name.startswith("direction_t="):
            self.depth += 1


class _RecordingNUTS(NUTS):
    """Pyro's NUTS, recording per transition what ArviZ's ``sample_stats`` hold.

    ``energy`` is the Hamiltonian at the start of each transition (after the momentum is drawn), the quantity
    whose transitions E-BFMI compares; ``tree_depth`` counts the trajectory doublings (Pyro draws one
    ``direction`` per doubling); ``diverging`` whether Pyro flagged the transition divergent.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats: dict[str, list] = {name: [] for name in _STATS}

    def sample(self, params):
        potential = self._potential_energy_last
        divergences = len(self._divergences)
        with _TransitionRecorder() as recorder:
            z = super().sample(params)
        self.stats["energy"].append(float(potential) + recorder.kinetic if potential is not None else math.nan)
        self.stats["tree_depth"].append(recorder.depth)
        self.stats["diverging"].append(len(self._divergences) > divergences)
        self.stats["step_size"].append(float(self.step_size))
        return z


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _NUTSHead:
    """The Pyro model and the sampler shared by :class:`NUTSRegressor` and :class:`NUTSClassifier`."""

    _arviz_attrs = {"inference": "NUTS (Pyro)", "draws": "Markov chains (r_hat and ess are meaningful)"}
    _parameter_constraints = {
        "likelihood": "no_validation", "prior_precision": POSITIVE, "intercept_prior_precision": [*POSITIVE, None],
        "prior": "no_validation", "nuisance_priors": [dict, None], "fit_intercept": ["boolean"],
        "num_chains": COUNT, "num_warmup": [Interval(Integral, 0, None, closed="left")], "num_samples": COUNT,
        "target_accept": FRACTION, "max_tree_depth": COUNT, "seed": SEED, "progress": ["boolean"],
        "classes": ["array-like", None],
    }

    def _check_params(self) -> None:
        check_positive(self.prior_precision, "prior_precision")
        if self.intercept_prior_precision is not None:
            check_positive(self.intercept_prior_precision, "intercept_prior_precision")
        _check_int(self.num_chains, "num_chains", 1)
        _check_int(self.num_warmup, "num_warmup", 0)
        _check_int(self.num_samples, "num_samples", 1)
        _check_int(self.max_tree_depth, "max_tree_depth", 1)
        _check_int(self.seed, "seed", 0)
        if not (isinstance(self.target_accept, (int, float)) and 0.0 < float(self.target_accept) < 1.0):
            raise ValueError(f"target_accept must be in (0, 1), got {self.target_accept!r}")
        check_prior(self.prior)
        if self.nuisance_priors is not None and not isinstance(self.nuisance_priors, dict):
            raise TypeError(f"nuisance_priors must be a dict, got {type(self.nuisance_priors).__name__}")

    # ---- the Pyro model ----------------------------------------------------------------------------------

    def _initial(self, spec: likelihoods.Nuisance) -> torch.Tensor:
        """A nuisance parameter's starting value (its family's ``init``), float64."""
        init = spec.init(self.likelihood_) if callable(spec.init) else spec.init
        return torch.as_tensor(init, dtype=torch.float64)

    def _likelihood_with(self, values: dict) -> likelihoods.Likelihood:
        """The fitted family with nuisance parameters ``values`` (tensors: sampled or per draw), the fixed ones
        of ``nuisance_priors`` filling the rest."""
        return type(self.likelihood_)(**{**self.likelihood_.config(), **self._fixed_nuisance(), **values})

    def _nuisance_sites(self) -> dict:
        """Each nuisance parameter's prior (a distribution: a site) or fixed value (a tensor)."""
        out = {}
        for name, spec in self.likelihood_.nuisance.items():
            given = (self.nuisance_priors or {}).get(name)
            fixed = given is not None and not isinstance(given, torch.distributions.Distribution)
            out[name] = (torch.as_tensor(float(given), dtype=torch.float64) if fixed
                         else self._nuisance_prior(name, spec))
        return out

    def _beta_prior(self, shape: tuple[int, ...], nuisance: dict):
        if self.prior is None:
            return normal_prior(np.full(shape, float(self.prior_precision)))
        return prior_over_beta(self.prior, shape, nuisance)

    def _intercept_prior(self, k: int):
        precision = float(self.intercept_prior_precision or self.prior_precision)
        return normal_prior(np.full(() if k == 1 else (k,), precision))

    def pyro_model(self, Z, y=None, sample_weight=None, **context):
        """The head's generative model as a Pyro model (see the module docstring for its sites).

        ``Z`` (n, D) are the features (float64 tensor or array), ``y`` the targets as the family reads them
        (class indices for a classifier; None to sample them), ``sample_weight`` scales each row's log-likelihood
        and ``context`` holds the family's per-row keywords (``trials=``...).
        """
        check_is_fitted(self, "likelihood_")
        k, D = self.likelihood_.num_outputs, self.n_features_in_
        intercept = self._intercept_prior(k) if self.fit_intercept else None
        return glm_model(features(Z, D), y, likelihood=self.likelihood_,
                         beta_prior=lambda values: self._beta_prior(weights_shape(k, D), values),
                         intercept_prior=None if intercept is None else _constant(intercept),
                         nuisance=self._nuisance_sites(), family=self._likelihood_with, sample_weight=sample_weight,
                         **context)

    # ---- sampling ----------------------------------------------------------------------------------------

    def _sites(self, D: int) -> dict[str, tuple[tuple[int, ...], object]]:
        """Every sampled site's shape and the transform from its unconstrained value (beta, intercept, nuisance)."""
        k = self.likelihood_.num_outputs
        sites = {"beta": ((D,) if k == 1 else (k, D), None)}
        if self.fit_intercept:
            sites["intercept"] = ((), None) if k == 1 else ((k,), None)
        for name, spec in self.likelihood_.nuisance.items():
            given = (self.nuisance_priors or {}).get(name)
            if given is None or isinstance(given, torch.distributions.Distribution):
                sites[name] = (tuple(self._initial(spec).shape), transform_to(spec.constraint))
        return sites

    def _potential(self, Z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, context: dict) -> Callable:
        """The model's negative log joint on the unconstrained scale, written directly (no Pyro trace per
        gradient: the model is traced only by users; a test checks that the two agree)."""
        k, D = self.likelihood_.num_outputs, Z.shape[1]
        sites = self._sites(D)
        fixed = self._fixed_nuisance()
        priors = {name: self._nuisance_prior(name, spec) for name, spec in self.likelihood_.nuisance.items()
                  if name in sites}
        intercept_prior = self._intercept_prior(k) if self.fit_intercept else None
        default_beta = self._beta_prior(sites["beta"][0], {}) if self.prior is None else None

        def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
            log_joint = torch.zeros((), dtype=torch.float64)
            nuisance = dict(fixed)  # a prior over beta may depend on a fixed nuisance value too
            for name, prior in priors.items():
                u = params[name]
                transform = sites[name][1]
                x = transform(u)
                log_joint = log_joint + prior.log_prob(x).sum() + transform.log_abs_det_jacobian(u, x).sum()
                nuisance[name] = x
            beta = params["beta"]
            beta_prior = default_beta if default_beta is not None else self._beta_prior(sites["beta"][0], nuisance)
            log_joint = log_joint + beta_prior.log_prob(beta)
            f = Z @ beta.reshape(k, D).T
            if "intercept" in params:
                b = params["intercept"]
                log_joint = log_joint + intercept_prior.log_prob(b)
                f = f + b.reshape(k)
            log_lik = self._likelihood_with(nuisance).log_prob(f, y, **context)
            return -(log_joint + (log_lik.sum() if w is None else (w * log_lik).sum()))

        return potential

    def _nuisance_prior(self, name: str, spec: likelihoods.Nuisance):
        given = (self.nuisance_priors or {}).get(name)
        if isinstance(given, torch.distributions.Distribution):
            return given
        loc = transform_to(spec.constraint).inv(self._initial(spec))
        base = dist.Normal(loc, torch.full_like(loc, 2.0)).to_event(loc.dim())
        return dist.TransformedDistribution(base, [transform_to(spec.constraint)])

    def _start(self, potential: Callable, D: int) -> dict[str, torch.Tensor]:
        """Chain starts: the posterior mode by L-BFGS on the unconstrained scale, jittered by U(-0.5, 0.5) per site
        and chain (dispersed enough for r_hat to compare chains, close enough for a short warm-up)."""
        sites = self._sites(D)
        start = {}
        for name, (shape, transform) in sites.items():
            start[name] = torch.zeros(shape, dtype=torch.float64)
            if transform is not None:
                start[name] = transform.inv(self._initial(self.likelihood_.nuisance[name])).reshape(shape)
        sizes = {name: v.numel() for name, v in start.items()}

        def unflatten(x: torch.Tensor) -> dict[str, torch.Tensor]:
            parts = torch.split(x, list(sizes.values()))
            return {name: part.reshape(start[name].shape) for name, part in zip(sizes, parts, strict=True)}

        def value_and_grad(x: np.ndarray):
            x_t = torch.from_numpy(x).requires_grad_(True)
            value = potential(unflatten(x_t))
            (grad,) = torch.autograd.grad(value, x_t)
            return float(value.detach()), grad.numpy()

        x0 = torch.cat([v.reshape(-1) for v in start.values()]).numpy()
        result = optimize.minimize(value_and_grad, x0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        x = result.x if np.all(np.isfinite(result.x)) else x0
        return unflatten(torch.from_numpy(x))

    def _run_chains(self, Z: np.ndarray, y: np.ndarray, w: np.ndarray | None, context: dict | None = None) -> None:
        Z_t = torch.from_numpy(np.ascontiguousarray(Z))
        y_t = torch.from_numpy(np.asarray(y, dtype=np.float64))
        if self.likelihood_.task == "classification" and self.likelihood_.num_outputs > 1:
            y_t = y_t.long()
        w_t = None if w is None else torch.from_numpy(w)
        potential = self._potential(Z_t, y_t, w_t, {k: torch.from_numpy(v) for k, v in (context or {}).items()})
        sites = self._sites(Z.shape[1])
        generator = torch.Generator().manual_seed(int(self.seed))
        mode = self._start(potential, Z.shape[1])
        chains: list[dict[str, np.ndarray]] = []
        stats: list[dict[str, np.ndarray]] = []
        for chain in range(self.num_chains):
            start = {name: v + (torch.rand(v.shape, dtype=v.dtype, generator=generator) - 0.5)
                     for name, v in mode.items()}
            kernel = _RecordingNUTS(potential_fn=potential, target_accept_prob=float(self.target_accept),
                                    max_tree_depth=self.max_tree_depth, full_mass=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seed) * 1_000_003 + chain)
                mcmc = MCMC(kernel, num_samples=self.num_samples, warmup_steps=self.num_warmup,
                            initial_params=start, disable_progbar=not self.progress)
                with pyro.validation_enabled(False):
                    mcmc.run()
            samples = mcmc.get_samples()
            draws = {}
            for name, (_, transform) in sites.items():
                value = samples[name].detach()
                draws[name] = (transform(value) if transform is not None else value).double().numpy()
            chains.append(draws)
            stats.append({name: np.asarray(v[self.num_warmup:]) for name, v in kernel.stats.items()})
        self.draws_ = {name: np.stack([c[name] for c in chains]) for name in chains[0]}
        self.sample_stats_ = {name: np.stack([s[name] for s in stats]) for name in _STATS}
        flat = self._flat_draws()
        self.coef_ = flat["beta"].mean(axis=0)
        self.intercept_ = flat["intercept"].mean(axis=0) if "intercept" in flat else 0.0
        self.posterior_ = flat
        self.n_divergent_ = int(self.sample_stats_["diverging"].sum())

    def _flat_draws(self) -> dict[str, np.ndarray]:
        return {name: v.reshape((-1,) + v.shape[2:]) for name, v in self.draws_.items()}

    def posterior_chains(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The chains as ``(draws, sample_stats)``: arrays of shape (chain, draw, ...) for ArviZ."""
        check_is_fitted(self)
        return dict(self.draws_), dict(self.sample_stats_)

    def _sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        flat = self._flat_draws()
        total = next(iter(flat.values())).shape[0]
        index = rng.integers(0, total, size=n)  # resampled from the chains: not independent of one another
        return {name: v[index] for name, v in flat.items()}

    def _draw_likelihood(self, draws: dict, n: int, sample_weight) -> likelihoods.Likelihood:
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}: sample_weight at prediction time is not supported")
        values = {name: torch.as_tensor(np.asarray(draws[name], dtype=np.float64))[:, None]
                  for name in self.likelihood_.nuisance if name in draws}
        return self._likelihood_with(values)

    def _fixed_nuisance(self) -> dict:
        return {name: float(v) for name, v in (self.nuisance_priors or {}).items()
                if not isinstance(v, torch.distributions.Distribution)}

    def _mixture_parts(self, Z: np.ndarray):
        """Linear predictors of every stored draw at ``Z`` (n, S, k) and the likelihood with per-draw nuisance."""
        flat = self._flat_draws()
        f = self._draw_predictor(flat, Z).transpose(1, 0, 2)  # (n, S, k)
        values = {name: torch.as_tensor(flat[name]) for name in self.likelihood_.nuisance if name in flat}
        return torch.from_numpy(np.ascontiguousarray(f)), self._likelihood_with(values)


class NUTSRegressor(_NUTSHead, RegressorMixin, PosteriorHead):
    r"""NUTS posterior over the weights of a GLM on features, for any registered regression family.

    Parameters
    ----------
    likelihood : str or Likelihood
        The family (``likelihoods.names()``); its nuisance parameters (noise variance, dispersion, ...) are
        sampled with beta unless fixed through ``nuisance_priors``.
    prior_precision, intercept_prior_precision : float
        Precisions of the default Gaussian priors on beta and the intercept (intercept default: beta's).
    prior : Pyro distribution or callable, optional
        A prior over beta replacing the default: a distribution of shape (D,) (or (k, D)), or
        ``prior(**nuisance) -> distribution``.
    nuisance_priors : dict, optional
        ``{name: Pyro distribution}`` for a nuisance parameter's prior, or ``{name: number}`` to fix it.
    fit_intercept : bool
    num_chains, num_warmup, num_samples : int
        Chains are run one after another, chain ``c`` seeded by ``seed`` and ``c``; each keeps ``num_samples``
        draws after ``num_warmup`` adaptation steps (step size and a diagonal mass matrix).
    target_accept : float
        NUTS's target acceptance probability for step-size adaptation.
    max_tree_depth : int
    seed : int
    progress : bool
        Pyro's progress bar per chain.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(100, 2)); y = Z @ [1.0, -0.5] + 0.3 * rng.normal(size=100)
    >>> head = NUTSRegressor(num_chains=2, num_warmup=100, num_samples=100, seed=0).fit(Z, y)
    >>> head.posterior_chains()[0]["beta"].shape
    (2, 100, 2)
    >>> bool(np.allclose(head.coef_, [1.0, -0.5], atol=0.1))
    True
    """

    def __init__(
        self,
        *,
        likelihood="gaussian",
        prior_precision: float = 1.0,
        intercept_prior_precision: float | None = None,
        prior: torch.distributions.Distribution | Callable | None = None,
        nuisance_priors: dict | None = None,
        fit_intercept: bool = True,
        num_chains: int = 4,
        num_warmup: int = 500,
        num_samples: int = 500,
        target_accept: float = 0.8,
        max_tree_depth: int = 10,
        seed: int = 0,
        progress: bool = False,
    ):
        self.likelihood = likelihood
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.prior = prior
        self.nuisance_priors = nuisance_priors
        self.fit_intercept = fit_intercept
        self.num_chains = num_chains
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.target_accept = target_accept
        self.max_tree_depth = max_tree_depth
        self.seed = seed
        self.progress = progress

    def _check_params(self) -> None:
        super()._check_params()
        likelihood = likelihoods.build(self.likelihood)
        if likelihood.task != "regression":
            raise ValueError(f"{likelihood.name!r} is a classification family: use NUTSClassifier")

    def _family_context(self) -> tuple[str, ...]:
        try:  # declared before fit (the family is a parameter); a bad one is refused by fit, not by the tags
            return tuple(likelihoods.build(self.likelihood).context)
        except (ValueError, TypeError):
            return ()

    def _fit(self, Z, y, w, **context) -> None:
        """Run the chains on features ``Z`` (n, D) and targets ``y`` (n,) (``context``: the family's per-row
        keywords, ``trials=`` ..., arrays of shape (n,))."""
        likelihood = likelihoods.build(self.likelihood)
        y = likelihood.check_target(y, **context)
        self.likelihood_ = likelihood
        self._run_chains(Z, y, w, context)

    def _predict_dist(self, Z: np.ndarray, **context) -> Predictive:
        """The posterior predictive: the family's ``p(y | f)`` averaged over every stored draw (``context``: the
        family's per-row keywords at the rows of ``Z``)."""
        f, lik = self._mixture_parts(Z)
        S = f.shape[1]
        mixing = torch.distributions.Categorical(probs=torch.full(f.shape[:2], 1.0 / S, dtype=torch.float64))
        context = {k: v[:, None] for k, v in context.items()}  # validated by predict_dist
        return Predictive(torch.distributions.MixtureSameFamily(mixing, lik.dist(f, **context)))

    def predict(self, Z, **context) -> np.ndarray:
        """The posterior predictive mean."""
        return self.predict_dist(Z, **context).mean


class NUTSClassifier(_NUTSHead, PosteriorClassifierMixin, ClassifierMixin, PosteriorHead):
    r"""NUTS posterior over the weights of a GLM classifier on features.

    ``likelihood=None`` takes the Bernoulli family for two classes and the softmax for more; any registered
    classification family (an ordinal one, say) may be named instead. Other parameters as
    :class:`NUTSRegressor`; ``classes`` fixes the label set.
    """

    def __init__(
        self,
        *,
        likelihood=None,
        prior_precision: float = 1.0,
        intercept_prior_precision: float | None = None,
        prior: torch.distributions.Distribution | Callable | None = None,
        nuisance_priors: dict | None = None,
        fit_intercept: bool = True,
        num_chains: int = 4,
        num_warmup: int = 500,
        num_samples: int = 500,
        target_accept: float = 0.8,
        max_tree_depth: int = 10,
        seed: int = 0,
        progress: bool = False,
        classes=None,
    ):
        self.likelihood = likelihood
        self.prior_precision = prior_precision
        self.intercept_prior_precision = intercept_prior_precision
        self.prior = prior
        self.nuisance_priors = nuisance_priors
        self.fit_intercept = fit_intercept
        self.num_chains = num_chains
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.target_accept = target_accept
        self.max_tree_depth = max_tree_depth
        self.seed = seed
        self.progress = progress
        self.classes = classes

    def _fit(self, Z, y, w) -> None:
        """Run the chains on features ``Z`` (n, D) and labels ``y`` (n,) of any sortable type."""
        classes, index = self._encode_train_labels(y)
        likelihood = likelihoods.for_classes(self.likelihood, int(classes.size))
        self.classes_ = classes
        self.likelihood_ = likelihood
        self._run_chains(Z, index.astype(np.float64), w)

    def _predict_dist(self, Z: np.ndarray) -> Predictive:
        """The posterior predictive over ``classes_``: class probabilities averaged over every stored draw."""
        f, lik = self._mixture_parts(Z)
        probs = lik.probs(f).mean(dim=1)
        return Predictive(torch.distributions.Categorical(probs=probs), classes=self.classes_)
