"""The point-estimate GLM head: ``f = B^T z + b_0`` and any registered likelihood family, its nuisance learned.

A :class:`GLMHead` is a small ``nn.Module`` that maps features ``z`` (batch, D) to the linear predictor ``f``
(batch, ``num_outputs``) of a family of :mod:`bayes_diglm.likelihoods` and hands it to that family: ``dist``,
``log_prob(z, y)`` (``log p(y | z)`` per row) and ``mean``. The family's nuisance parameters (noise variance,
degrees of freedom, dispersion ...) are ``nn.Parameter`` s on the unconstrained scale
(``torch.distributions.transform_to(constraint)``) trained with ``beta``; a nuisance named in ``fixed`` stays at
its starting value. These are the heads trained jointly with the flow; the Bayesian heads in
:mod:`bayes_diglm.inference` put posteriors on the same ``beta``. Nothing here knows a family by name: a
user's family registered with :func:`bayes_diglm.likelihoods.register` gets a head like the built-in ones.

Examples
--------
>>> import torch
>>> head = make_head("poisson", 3)
>>> head.log_prob(torch.zeros(2, 3), torch.tensor([0.0, 2.0])).shape
torch.Size([2])
>>> sorted(dict(head.named_parameters()))
['linear.bias', 'linear.weight']
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.distributions import Distribution, transform_to

from bayes_diglm import likelihoods

__all__ = [
    "GLMHead",
    "GaussianHead",
    "HeteroscedasticGaussianHead",
    "BernoulliHead",
    "CategoricalHead",
    "PoissonHead",
    "make_head",
    "HEADS",
]


def _constructor_keywords(cls: type) -> list[str]:
    """The keyword parameters of a family's ``__init__``, in order."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class GLMHead(nn.Module):
    """A linear predictor on ``z`` and a registered likelihood family, with the family's nuisance learned.

    Parameters
    ----------
    dim : int
        Width of the features ``z``.
    likelihood : str or Likelihood
        A registered family name (``likelihoods.names()``) or an instance; an instance's nuisance values are the
        starting values of the learned ones.
    fixed : iterable of str
        Nuisance parameters kept at their starting value instead of learned (e.g. Student-t degrees of freedom).
    **likelihood_kwargs
        Keyword arguments of the family's constructor (``num_classes=`` for the softmax, ``max_log_var=`` ...;
        a nuisance keyword sets its starting value).
    """

    def __init__(self, dim: int, likelihood, *, fixed=(), **likelihood_kwargs):
        super().__init__()
        if isinstance(dim, bool) or int(dim) != dim or int(dim) < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(likelihood, likelihoods.Likelihood):
            if likelihood_kwargs:
                raise TypeError(f"give a likelihood instance or keyword arguments for it, not both: "
                                f"{sorted(likelihood_kwargs)}")
            template = likelihood
        else:
            template = likelihoods.get(likelihood)(**likelihood_kwargs)
        fixed = tuple(fixed)
        unknown = sorted(set(fixed) - set(template.nuisance))
        if unknown:
            raise ValueError(f"fixed names {unknown}, which are not nuisance parameters of {template!r} "
                             f"(it has {sorted(template.nuisance)})")
        self.dim = int(dim)
        self.fixed = fixed
        self._family = type(template)
        self._static = {k: v for k, v in template.config().items() if k not in template.nuisance}
        self.linear = nn.Linear(self.dim, template.num_outputs)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.nuisance = nn.ParameterDict()
        self._fixed_nuisance = nn.ParameterDict()
        self._transforms = {key: transform_to(spec.constraint) for key, spec in template.nuisance.items()}
        for key, spec in template.nuisance.items():
            value = self._starting_value(template, key, spec)
            raw = self._transforms[key].inv(value).detach().clone()
            store = self._fixed_nuisance if key in fixed else self.nuisance
            store[key] = nn.Parameter(raw, requires_grad=key not in fixed)

    @staticmethod
    def _starting_value(template: likelihoods.Likelihood, key: str, spec: likelihoods.Nuisance) -> torch.Tensor:
        value = getattr(template, key, None)
        if value is None:
            value = spec.init(template) if callable(spec.init) else spec.init
        return torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().clone()

    # ---- what the head is --------------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """The registry name of the head's family."""
        return self._family.name

    @property
    def task(self) -> str:
        """``"regression"`` or ``"classification"``, as the family declares."""
        return self._family.task

    @property
    def num_classes(self) -> int | None:
        """The number of classes of a classification family (None for regression)."""
        return self.likelihood.num_classes

    def nuisance_values(self) -> dict[str, torch.Tensor]:
        """The nuisance parameters on their constrained scale (tensors, in the graph while training)."""
        out = {}
        for store in (self.nuisance, self._fixed_nuisance):
            for key, raw in store.items():
                out[key] = self._transforms[key](raw)
        return out

    @property
    def likelihood(self) -> likelihoods.Likelihood:
        """The family at the head's current nuisance values (learned tensors; rebuilt on every access)."""
        return self._family(**self._static, **self.nuisance_values())

    @property
    def noise_log_var(self):
        """The per-row noise log-variance ``z -> log sigma^2(z)``, for a family whose predictor carries one."""
        per_row = getattr(self.likelihood, "noise_log_var", None)
        if per_row is None:
            raise AttributeError(f"a {self.family} head has no per-row noise log-variance")
        return lambda z: per_row(self.predictor(z))

    # ---- the predictor and the family --------------------------------------------------------------------
    def predictor(self, z: torch.Tensor) -> torch.Tensor:
        """The linear predictor ``f`` (batch, likelihood.num_outputs) that the likelihood takes."""
        return self.linear(z)

    def dist(self, z: torch.Tensor, **context) -> Distribution:
        """``p(y | z)`` as a ``torch.distributions`` object (``context``: the family's per-row keywords)."""
        return self.likelihood.dist(self.predictor(z), **context)

    def log_prob(self, z: torch.Tensor, y: torch.Tensor, **context) -> torch.Tensor:
        """``log p(y | z)`` for each row."""
        return self.likelihood.log_prob(self.predictor(z), y, **context)

    def mean(self, z: torch.Tensor, **context) -> torch.Tensor:
        """``E[y | z]`` for regression, the class probabilities (batch, K) for classification."""
        lik = self.likelihood
        f = self.predictor(z)
        return lik.probs(f, **context) if self.task == "classification" else lik.mean(f, **context)

    def config(self) -> dict:
        """JSON-able keyword arguments of :func:`make_head` that rebuild this head (nuisance values live in
        the ``state_dict``)."""
        out = {"family": self.family, "dim": self.dim, **self._static}
        if self.fixed:
            out["fixed"] = list(self.fixed)
        return out

    def extra_repr(self) -> str:
        return f"family={self.family!r}, dim={self.dim}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _upgrade_legacy_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _upgrade_legacy_state(state: dict, prefix: str) -> None:
    """Rewrite, in place, the parameters that heads saved before the registry had: the Gaussian head's
    ``log_sigma`` (now the unconstrained noise variance ``log sigma^2``) and the heteroscedastic head's separate
    ``log_var`` layer (now the second row of ``linear``), so that checkpoints written then still load."""
    if prefix + "log_sigma" in state:
        state[prefix + "nuisance.noise_variance"] = 2.0 * state.pop(prefix + "log_sigma")
    if prefix + "log_var.weight" in state:
        for part in ("weight", "bias"):
            extra = state.pop(prefix + f"log_var.{part}")
            state[prefix + f"linear.{part}"] = torch.cat([state[prefix + f"linear.{part}"], extra], dim=0)


def _named_head(family: str, class_name: str, doc: str) -> type[GLMHead]:
    """A :class:`GLMHead` subclass bound to one family (the names heads had before the registry)."""

    def __init__(self, dim: int, *args, **kwargs):
        positional = _constructor_keywords(likelihoods.get(family))
        if len(args) > len(positional):
            raise TypeError(f"{class_name} takes at most {len(positional)} positional argument(s) after dim")
        kwargs.update(zip(positional[:len(args)], args, strict=True))
        GLMHead.__init__(self, dim, family, **kwargs)

    return type(class_name, (GLMHead,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


GaussianHead = _named_head("gaussian", "GaussianHead", "``GLMHead(dim, 'gaussian')``: one learned noise variance.")
HeteroscedasticGaussianHead = _named_head(
    "heteroscedastic", "HeteroscedasticGaussianHead",
    "``GLMHead(dim, 'heteroscedastic')``: the paper's head, mean and log-variance both linear in ``z``.")
BernoulliHead = _named_head("bernoulli", "BernoulliHead", "``GLMHead(dim, 'bernoulli')``: logit link.")
CategoricalHead = _named_head("categorical", "CategoricalHead",
                              "``GLMHead(dim, 'categorical', num_classes)``: softmax link.")
PoissonHead = _named_head("poisson", "PoissonHead", "``GLMHead(dim, 'poisson')``: log link, counts.")


class _RegistryHeads(Mapping):
    """``HEADS[name](dim, **kwargs)``: a head of every registered family, read from the registry each time."""

    def __getitem__(self, name: str):
        likelihoods.get(name)  # a ValueError naming the registered families for an unknown one

        def build(dim: int, **kwargs) -> GLMHead:
            return GLMHead(dim, name, **kwargs)

        return build

    def __iter__(self) -> Iterator[str]:
        return iter(likelihoods.names())

    def __len__(self) -> int:
        return len(likelihoods.names())

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in likelihoods.names()


#: every registered family's head by name (a live view of :func:`bayes_diglm.likelihoods.names`)
HEADS = _RegistryHeads()


def make_head(family, dim: int, **kwargs) -> GLMHead:
    """Build a head by family name (any registered one) or :class:`~bayes_diglm.likelihoods.Likelihood` instance;
    ``kwargs`` are :class:`GLMHead`'s (the family's constructor keywords, ``fixed``)."""
    if isinstance(family, str) and family not in HEADS:
        raise ValueError(f"unknown head family {family!r}; choose one of {sorted(HEADS)}")
    return GLMHead(dim, family, **kwargs)
