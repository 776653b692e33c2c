r"""Families with nuisance parameters: values checked against their constraints, cast to ``f``, some held fixed."""

from __future__ import annotations

import torch

from .base import Likelihood

__all__ = ["NuisanceFamily"]


def _plain(value):
    """A nuisance value as ``config()`` writes it: a float, a list, or what the user passed."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()
        return float(value) if value.dim() == 0 else value.tolist()
    return value


class NuisanceFamily(Likelihood):
    r"""A :class:`Likelihood` whose ``nuisance`` keywords are stored by :meth:`_set_nuisance`.

    A float (or a list, for shaped parameters such as ordinal cut-points) is checked against the parameter's
    constraint when the family is built, so ``StudentT(df=-1)`` fails at once, naming ``df``; a tensor (a learned
    parameter, one value per posterior draw) is kept as it is. ``fixed`` names parameters a point head must
    hold at their given value instead of learning them: they leave the instance's ``nuisance`` (what a head
    learns) but stay in :meth:`config`.
    """

    def _set_nuisance(self, fixed=(), **values) -> None:
        declared = type(self).nuisance
        if isinstance(fixed, str):
            fixed = (fixed,)
        fixed = tuple(fixed)
        unknown = [k for k in fixed if k not in declared]
        if unknown:
            raise ValueError(f"fixed names {unknown}, which are not nuisance parameters of a "
                             f"{type(self).__name__} likelihood ({list(declared)})")
        for key, value in values.items():
            setattr(self, key, self._checked(key, value))
        self.fixed = fixed
        self.nuisance = {k: v for k, v in declared.items() if k not in fixed}

    def _checked(self, key: str, value):
        if isinstance(value, torch.Tensor):
            return value
        spec = type(self).nuisance[key]
        try:
            arr = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{key} must be a number or a tensor, got {value!r}") from None
        if not (bool(torch.isfinite(arr).all()) and bool(spec.constraint.check(arr).all())):
            raise ValueError(f"{key} ({spec.doc}) must satisfy {spec.constraint} and be finite, got {value!r}")
        return float(arr) if arr.dim() == 0 else arr

    def _param(self, key: str, f: torch.Tensor) -> torch.Tensor:
        """The nuisance parameter ``key`` as a tensor of ``f``'s dtype and device."""
        value = getattr(self, key)
        if isinstance(value, torch.Tensor):
            return value.to(dtype=f.dtype, device=f.device)
        return torch.tensor(value, dtype=f.dtype, device=f.device)

    def config(self) -> dict:
        out = {key: _plain(getattr(self, key)) for key in type(self).nuisance}
        if self.fixed:
            out["fixed"] = list(self.fixed)
        return out
