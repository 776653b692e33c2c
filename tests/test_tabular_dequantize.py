"""Tabular dequantisation against closed forms: the bound on log P(cell) from a known density."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayes_diglm.flows import TabularDequantizer


def test_draws_stay_in_their_cells_and_continuous_columns_pass():
    dq = TabularDequantizer.for_standardized([True, True, False], scale=[2.0, 0.5, 3.0], unit=[1.0, 2.0, 1.0])
    torch.testing.assert_close(dq.cell_widths, torch.tensor([0.5, 4.0, 0.0], dtype=torch.float64))
    assert dq.log_cell_volume == pytest.approx(math.log(0.5) + math.log(4.0))
    x = torch.randn(5000, 3, dtype=torch.float64)
    v = dq(x, generator=torch.Generator().manual_seed(0))
    offset = (v - x) / torch.tensor([0.5, 4.0, 1.0], dtype=torch.float64)
    assert float(offset[:, :2].min()) >= -0.5 and float(offset[:, :2].max()) < 0.5
    assert abs(float(offset[:, :2].mean())) < 0.02  # uniform over the cell
    torch.testing.assert_close(v[:, 2], x[:, 2], atol=0, rtol=0)


def test_bound_on_log_probability_of_integer_cells_by_hand():
    """Integer data, density N(0, sd^2) on the standardised scale: E_u log p(v) + log w <= log P(cell), close
    when the density is flat over a cell, with P(cell) from the normal CDF."""
    sd = 4.0  # raw integers k, standardised by 1/sd: cells have width 1/sd on the model's scale
    dq = TabularDequantizer.for_standardized([True], scale=[sd])
    k = np.array([-3.0, 0.0, 5.0])
    s = torch.tensor(k / sd)[:, None]

    def log_prob(v):
        return torch.from_numpy(stats.norm.logpdf(v.numpy()[:, 0], scale=1.0))

    got = dq.expected_log_density(log_prob, s, num_samples=4000, generator=torch.Generator().manual_seed(1))
    got = got.numpy() + dq.log_cell_volume
    exact = np.log(stats.norm.cdf((k + 0.5) / sd) - stats.norm.cdf((k - 0.5) / sd))
    assert np.all(got <= exact + 1e-3)
    np.testing.assert_allclose(got, exact, atol=5e-3)


def test_uniform_density_on_the_cells_gives_probability_one_per_row():
    dq = TabularDequantizer([0.25, 0.25])
    log_density = -2 * math.log(0.25)  # the uniform density on one cell of area 1/16
    def log_prob(v):
        return torch.full((v.shape[0],), log_density, dtype=torch.float64)

    got = dq.expected_log_density(log_prob, torch.zeros(3, 2))
    np.testing.assert_allclose(got.numpy() + dq.log_cell_volume, 0.0, atol=1e-12)


@pytest.mark.parametrize("bad", [[], [-1.0], [float("nan")], [[1.0]]])
def test_rejects_bad_widths(bad):
    with pytest.raises(ValueError, match="cell_widths"):
        TabularDequantizer(bad)


def test_rejects_bad_shapes_and_scales():
    dq = TabularDequantizer([1.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        dq(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="num_samples"):
        dq.expected_log_density(lambda v: v.sum(1), torch.zeros(3, 2), num_samples=0)
    with pytest.raises(ValueError, match="scale"):
        TabularDequantizer.for_standardized([True], scale=[0.0])
    with pytest.raises(ValueError, match="same length"):
        TabularDequantizer.for_standardized([True, False], scale=[1.0])
