r"""Student-t families for robust regression: a location head, and a heteroscedastic head (location and log-scale)."""

from __future__ import annotations

import math

import torch
from torch.distributions import StudentT as _TorchStudentT
from torch.distributions import constraints

from ._nuisance import NuisanceFamily
from .base import Nuisance, _like, _to_tensor, register

__all__ = ["HeteroscedasticStudentT", "StudentT"]

_DF = Nuisance(constraints.positive, 4.0, "the degrees of freedom nu")


def _score_terms(resid: torch.Tensor, df: torch.Tensor, var: torch.Tensor):
    r"""For :math:`r = y - \mu` and :math:`\nu\sigma^2`: :math:`\partial_\mu \log p` and :math:`-\partial^2_\mu \log p`.

    :math:`\partial_\mu = (\nu + 1) r / (\nu\sigma^2 + r^2)`,
    :math:`-\partial^2_\mu = (\nu + 1)(\nu\sigma^2 - r^2) / (\nu\sigma^2 + r^2)^2` (negative for outliers,
    :math:`r^2 > \nu\sigma^2`: the Student-t log-density is not concave in its location).
    """
    nu_var = df * var
    denom = nu_var + resid**2
    return (df + 1.0) * resid / denom, (df + 1.0) * (nu_var - resid**2) / denom**2


@register
class StudentT(NuisanceFamily):
    r"""Student-t regression with location :math:`f` (identity link), degrees of freedom and scale as nuisance.

    .. math:: p(y \mid f) = \frac{\Gamma(\frac{\nu + 1}{2})}{\Gamma(\frac{\nu}{2}) \sqrt{\nu\pi}\, \sigma}
              \Big(1 + \frac{(y - f)^2}{\nu \sigma^2}\Big)^{-\frac{\nu + 1}{2}},

    with :math:`E[y] = f` for :math:`\nu > 1` and :math:`\mathrm{Var}[y] = \sigma^2 \nu / (\nu - 2)` for
    :math:`\nu > 2` (infinite or undefined otherwise, as ``torch.distributions.StudentT`` reports).

    Parameters
    ----------
    df : float or torch.Tensor
        Degrees of freedom :math:`\nu > 0` (a point head learns it unless ``"df"`` is in ``fixed``).
    scale : float or torch.Tensor
        Scale :math:`\sigma > 0`.
    fixed : tuple of str
        Nuisance parameters held at their given value by a point head, e.g. ``("df",)``.

    Notes
    -----
    Gradient :math:`(\nu + 1) r / (\nu\sigma^2 + r^2)` with :math:`r = y - f`; curvature
    :math:`(\nu + 1)(\nu\sigma^2 - r^2) / (\nu\sigma^2 + r^2)^2`, which is negative for rows with
    :math:`r^2 > \nu\sigma^2` (a Laplace posterior needs a prior that keeps the total precision positive). The
    predictive under :math:`f \sim N(m, v)` is the Gauss-Hermite mixture, mean :math:`m` and variance
    :math:`v + \sigma^2\nu / (\nu - 2)`.

    Examples
    --------
    >>> import numpy as np
    >>> lik = StudentT(df=3.0, scale=2.0, fixed=("df",))
    >>> list(lik.nuisance)
    ['scale']
    >>> round(float(lik.log_prob(np.array([[0.0]]), np.array([0.0]))[0]), 4)  # -log(2 sqrt(3) B(1/2, 3/2))
    -1.694
    """

    name = "student_t"
    nuisance = {"df": _DF, "scale": Nuisance(constraints.positive, 1.0, "the scale sigma")}

    def __init__(self, df=4.0, scale=1.0, fixed: tuple[str, ...] = ()):
        self._set_nuisance(fixed, df=df, scale=scale)

    def _dist(self, f):
        loc = f[..., 0]
        return _TorchStudentT(self._param("df", f).expand_as(loc), loc, self._param("scale", f).expand_as(loc))

    def _grad(self, f, y):
        grad, _ = _score_terms(y - f[..., 0], self._param("df", f), self._param("scale", f) ** 2)
        return grad[..., None]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a StudentT likelihood depends on y; pass y")
        _, curv = _score_terms(y - f[..., 0], self._param("df", f), self._param("scale", f) ** 2)
        return curv[..., None, None]

    def _fisher(self, f):  # (nu + 1) / ((nu + 3) sigma^2), positive where the observed curvature is not
        df, scale = self._param("df", f), self._param("scale", f)
        return ((df + 1.0) / ((df + 3.0) * scale**2)).expand_as(f[..., 0])[..., None, None]


@register
class HeteroscedasticStudentT(NuisanceFamily):
    r"""Student-t regression with location :math:`f_0` and log-scale :math:`f_1` both linear; ``df`` a nuisance.

    .. math:: y \sim t_\nu\big(f_0, \sigma = \exp(s(f_1))\big), \qquad s(r) = M \tanh(r / M),

    the robust counterpart of the paper's heteroscedastic Gaussian head: the log-scale is bounded smoothly to
    :math:`[-M, M]` (``max_log_scale``, 6 by default, the Gaussian head's bound of 12 on the log-variance).
    :math:`E[y] = f_0` for :math:`\nu > 1`, :math:`\mathrm{Var}[y] = \sigma^2\nu / (\nu - 2)` for :math:`\nu > 2`.

    Parameters
    ----------
    df : float or torch.Tensor
        Degrees of freedom :math:`\nu > 0`.
    max_log_scale : float
        The bound :math:`M` of the log-scale.
    fixed : tuple of str
        ``("df",)`` to hold the degrees of freedom at ``df`` in a point head.

    Notes
    -----
    Gradient and curvature in :math:`(f_0, f_1)` are closed forms (the curvature is not positive definite for
    outlying rows); the predictive under a Gaussian over ``f`` is the generic Monte Carlo mixture.
    """

    name = "heteroscedastic_t"
    num_outputs = 2
    link = "identity (location), bounded log (scale)"
    nuisance = {"df": _DF}

    def __init__(self, df=4.0, max_log_scale: float = 6.0, fixed: tuple[str, ...] = ()):
        max_log_scale = float(max_log_scale)
        if not (math.isfinite(max_log_scale) and max_log_scale > 0):
            raise ValueError(f"max_log_scale must be positive and finite, got {max_log_scale!r}")
        self.max_log_scale = max_log_scale
        self._set_nuisance(fixed, df=df)

    def config(self):
        return {**super().config(), "max_log_scale": self.max_log_scale}

    def noise_log_scale(self, f):
        """The bounded log-scale :math:`s(f_1)`, shape ``f.shape[:-1]``."""
        f_t = self._check_predictor(_to_tensor(f))
        return _like(self._log_scale(f_t), f)

    def _log_scale(self, f):
        return self.max_log_scale * torch.tanh(f[..., 1] / self.max_log_scale)

    def _dist(self, f):
        loc = f[..., 0]
        return _TorchStudentT(self._param("df", f).expand_as(loc), loc, torch.exp(self._log_scale(f)))

    def _derivatives(self, f, y):
        r"""Gradient (..., 2) and curvature (..., 2, 2) in :math:`(f_0, f_1)`.

        With :math:`u = r^2 / (\nu\sigma^2)`: :math:`\partial_s \log p = -1 + (\nu + 1) u / (1 + u)`,
        :math:`\partial^2_s = -2(\nu + 1) u / (1 + u)^2`, :math:`\partial_\mu\partial_s = -2\nu\sigma^2
        (\nu + 1) r / (\nu\sigma^2 + r^2)^2`; the chain rule through :math:`s(f_1)` adds
        :math:`s'' \partial_s` with :math:`s' = 1 - \tanh^2`, :math:`s'' = -2 s' \tanh / M`.
        """
        df = self._param("df", f)
        th = torch.tanh(f[..., 1] / self.max_log_scale)
        ds = 1.0 - th**2
        dds = -2.0 * ds * th / self.max_log_scale
        var = torch.exp(2.0 * self.max_log_scale * th)
        resid = y - f[..., 0]
        g_mu, c_mu = _score_terms(resid, df, var)
        u = resid**2 / (df * var)
        g_s = -1.0 + (df + 1.0) * u / (1.0 + u)
        h_ss = -2.0 * (df + 1.0) * u / (1.0 + u) ** 2
        h_ms = -2.0 * df * var * (df + 1.0) * resid / (df * var + resid**2) ** 2
        grad = torch.stack([g_mu, ds * g_s], dim=-1)
        c_01 = -ds * h_ms
        c_11 = -(ds**2 * h_ss + dds * g_s)
        curv = torch.stack([torch.stack([c_mu, c_01], -1), torch.stack([c_01, c_11], -1)], -2)
        return grad, curv

    def _grad(self, f, y):
        return self._derivatives(f, y)[0]

    def _curvature(self, f, y):
        if y is None:
            raise ValueError("the curvature of a HeteroscedasticStudentT likelihood depends on y; pass y")
        return self._derivatives(f, y)[1]
