"""Uniform dequantisation of integer-valued tabular attributes, so a density model's log p(x) is a bound on log P(x)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["TabularDequantizer"]


class TabularDequantizer:
    """Spread each integer-valued attribute uniformly over its cell, as in image flows' pixel dequantisation.

    An integer attribute ``k`` (raw units) owns the cell ``[k - 1/2, k + 1/2)``; after standardising
    ``s = (k - mean) / std`` the cell has width ``w = 1 / std``. Dequantising draws ``v = s + w (u - 1/2)``
    with ``u ~ U(0, 1)`` on the discrete columns (continuous ones, width 0, pass unchanged). A density ``p``
    fitted to ``v`` then gives, for the discrete cell ``C(s)`` and by Jensen's inequality,

    .. math:: \\log P(C(s)) \\ge E_u[\\log p(v)] + \\sum_{i\\,\\mathrm{discrete}} \\log w_i,

    where the last term (:attr:`log_cell_volume`) is the log-determinant of ``u -> v``. Without
    dequantisation a flow can put unbounded density on the integer grid (and on atoms such as median-filled
    values) and its ``log p(x)`` rewards spikes; with it, ``E_u[log p(v)]`` is the log-density of the
    dequantised data, comparable across models, and adding :attr:`log_cell_volume` turns it into a lower
    bound on the log-probability of the discrete cells (continuous columns stay densities).

    Train on fresh draws each batch (:meth:`__call__`); evaluate with :meth:`expected_log_density`, a Monte
    Carlo average over ``num_samples`` draws (seed the generator so every model sees the same draws).

    Args:
        cell_widths: per column, the cell width in the units the model sees (``1 / std`` for a standardised
            integer attribute) or 0 for a continuous column.

    Example:
        >>> import torch
        >>> dq = TabularDequantizer.for_standardized([True, False], scale=[2.0, 5.0])
        >>> dq.cell_widths.tolist(), round(dq.log_cell_volume, 4)
        ([0.5, 0.0], -0.6931)
        >>> v = dq(torch.zeros(1000, 2), generator=torch.Generator().manual_seed(0))
        >>> bool(v[:, 0].abs().max() <= 0.25), bool((v[:, 1] == 0).all())
        (True, True)
    """

    def __init__(self, cell_widths: Sequence[float] | np.ndarray | torch.Tensor):
        widths = torch.as_tensor(np.asarray(cell_widths, dtype=np.float64))
        if widths.dim() != 1 or widths.numel() == 0:
            raise ValueError(f"cell_widths must be a non-empty 1-D sequence, got shape {tuple(widths.shape)}")
        if not bool(torch.isfinite(widths).all()) or bool((widths < 0).any()):
            raise ValueError(f"cell_widths must be finite and non-negative, got {widths.tolist()}")
        self.cell_widths = widths
        self.discrete = widths > 0

    @classmethod
    def for_standardized(cls, discrete: Sequence[bool], scale: Sequence[float], *,
                         unit: Sequence[float] | float = 1.0) -> TabularDequantizer:
        """For attributes standardised as ``(x - mean) / scale``: cell width ``unit / scale`` where ``discrete``.

        ``unit`` is the spacing of the raw values (1 for counts, minutes, miles, years).
        """
        discrete = np.asarray(discrete, dtype=bool)
        scale = np.asarray(scale, dtype=np.float64)
        unit = np.broadcast_to(np.asarray(unit, dtype=np.float64), scale.shape)
        if discrete.shape != scale.shape:
            raise ValueError(f"discrete and scale need the same length, got {discrete.shape} and {scale.shape}")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"scale must be finite and positive, got {scale.tolist()}")
        if not np.all(np.isfinite(unit)) or np.any(unit <= 0):
            raise ValueError(f"unit must be finite and positive, got {unit.tolist()}")
        return cls(np.where(discrete, unit / scale, 0.0))

    @property
    def log_cell_volume(self) -> float:
        """``sum log w_i`` over the discrete columns: add it to a dequantised log-density for log P(cell)."""
        return float(self.cell_widths[self.discrete].log().sum())

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.cell_widths.numel():
            raise ValueError(f"x must have shape (n, {self.cell_widths.numel()}), got {tuple(x.shape)}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One dequantised draw ``v = x + w (u - 1/2)`` of the rows of ``x`` (same dtype and device)."""
        x = torch.as_tensor(x)
        self._check(x)
        device = x.device if generator is None else generator.device  # a generator draws on its own device
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)
        return x + (u - 0.5) * self.cell_widths.to(dtype=x.dtype, device=x.device)

    @torch.no_grad()
    def expected_log_density(self, log_prob: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
                             num_samples: int = 4, batch_size: int = 8192,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Monte Carlo ``E_u[log p(v)]`` per row: the mean of ``log_prob(v)`` over ``num_samples`` draws.

        ``log_prob`` maps a batch ``(b, D)`` to ``(b,)`` (e.g. ``flow.log_prob``; put the flow in eval mode).
        Add :attr:`log_cell_volume` for the bound on ``log P(cell)``.
        """
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        x = torch.as_tensor(x)
        self._check(x)
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for _ in range(int(num_samples)):
            v = self(x, generator=generator)
            total += torch.cat([log_prob(chunk).double().cpu() for chunk in v.split(int(batch_size))])
        return total / int(num_samples)

    def log_cell_probability(self, log_prob: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
                             num_samples: int = 4, batch_size: int = 8192,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        r"""The dequantised estimate of ``log P(cell of x)`` per row, a lower bound on it (Jensen):

        .. math:: \hat\ell(x) = \frac1S \sum_{s=1}^S \log p\big(x + w \odot (u_s - \tfrac12)\big)
                  + \sum_{i\ \mathrm{discrete}} \log w_i,

        :meth:`expected_log_density` (``S = num_samples`` draws of ``u_s ~ U(0, 1)^D``) plus
        :attr:`log_cell_volume`; continuous columns stay densities. Float64, shape (n,).

        Examples
        --------
        >>> import math
        >>> dq = TabularDequantizer([0.5, 0.0])
        >>> uniform = lambda v: torch.zeros(v.shape[0])  # log density 0: unit density everywhere
        >>> dq.log_cell_probability(uniform, torch.zeros(2, 2)).tolist() == [math.log(0.5)] * 2
        True
        """
        return self.expected_log_density(log_prob, x, num_samples=num_samples, batch_size=batch_size,
                                         generator=generator) + self.log_cell_volume

    def __repr__(self) -> str:
        return f"TabularDequantizer(cell_widths={[round(float(w), 6) for w in self.cell_widths]})"
