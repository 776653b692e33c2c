"""``TabularDequantizer.log_cell_probability``: the dequantised estimate of log P(cell), exact for a density that
is constant on every cell, a lower bound (Jensen) for a smooth one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from bayes_diglm.flows import TabularDequantizer


def test_exact_for_a_density_constant_on_each_cell():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(9))  # P(cell k) for k = 0..8, cells of width 0.5 centred on k / 2
    dq = TabularDequantizer([0.5])

    def log_density(v):
        k = torch.floor(v[:, 0] / 0.5 + 0.5).long().clamp(0, 8)
        return torch.log(torch.from_numpy(p)[k] / 0.5)

    x = torch.arange(9, dtype=torch.float64)[:, None] * 0.5
    got = dq.log_cell_probability(log_density, x, num_samples=3, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(got.numpy(), np.log(p), atol=1e-12)


def test_a_lower_bound_for_a_smooth_density_and_continuous_columns_stay_densities():
    dq = TabularDequantizer([1.0, 0.0])  # the second column is continuous
    x = torch.tensor([[0.0, 0.3], [2.0, -1.0]], dtype=torch.float64)
    log_density = lambda v: torch.from_numpy(scipy.stats.norm.logpdf(v.numpy()).sum(axis=1))  # noqa: E731
    got = dq.log_cell_probability(log_density, x, num_samples=500, generator=torch.Generator().manual_seed(0))
    cell = np.log(scipy.stats.norm.cdf(x[:, 0].numpy() + 0.5) - scipy.stats.norm.cdf(x[:, 0].numpy() - 0.5))
    exact = cell + scipy.stats.norm.logpdf(x[:, 1].numpy())
    # the Jensen gap of a unit cell of a standard normal is at most about 0.17 nats here (at x = 2)
    assert np.all(got.numpy() <= exact + 1e-2) and np.all(got.numpy() >= exact - 0.2)


def test_bad_draw_counts_and_shapes_are_refused():
    dq = TabularDequantizer([1.0])
    with pytest.raises(ValueError, match="num_samples"):
        dq.log_cell_probability(lambda v: v[:, 0], torch.zeros(2, 1), num_samples=0)
    with pytest.raises(ValueError, match="shape"):
        dq.log_cell_probability(lambda v: v[:, 0], torch.zeros(2, 3))
