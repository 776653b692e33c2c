"""What a flow's inverse guarantees, and the warnings where it cannot (issue 18)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayes_diglm.flows import InverseAccuracyWarning, realnvp
from bayes_diglm.flows.image import Dequantize
from bayes_diglm.models import DIGLM, make_head
from bayes_diglm.training import train_module


def test_dequantize_inverse_stays_within_half_a_level_of_the_unit_interval():
    dq = Dequantize(0.05).eval()
    y = torch.tensor([-30.0, -5.0, -3.0, 0.0, 3.0, 5.0, 30.0])
    x = dq._inverse(y)
    assert float(x.min()) >= -0.5 / 255 - 1e-7 and float(x.max()) <= 1 + 0.5 / 255 + 1e-7
    assert float(dq._inverse(torch.tensor([-30.0]))) == pytest.approx(-0.5 / 255)
    pixels = torch.linspace(0, 1, 256)
    assert torch.allclose(dq._inverse(dq(pixels.reshape(1, 1, 16, 16))).reshape(-1), pixels, atol=1e-6)


def test_sampled_pixels_never_leave_the_unit_interval_by_more_than_half_a_level():
    from bayes_diglm.flows import glow

    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=2, steps=1, hidden_channels=8).eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))  # an untrained, badly scaled flow: latents far from data
        z = 3 * torch.randn(64, 64)
        x = flow.inverse(z)
    outside = ((x < -0.5 / 255) | (x > 1 + 0.5 / 255)).float().mean()
    assert float(outside) == 0.0


@pytest.fixture(scope="module")
def trained_flow():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1000, 4, generator=g)
    y = (X[:, 0] > 0).long()
    model = DIGLM(realnvp(4, num_layers=8, hidden_dims=(64, 64)), make_head("bernoulli", 4), px_weight=1.0)
    train_module(model, X, y, epochs=3, batch_size=100, quiet=True)
    return model.flow.eval(), X


def test_no_warning_on_the_training_data(trained_flow):
    flow, X = trained_flow
    with warnings.catch_warnings():
        warnings.simplefilter("error", InverseAccuracyWarning)
        z = flow.features(X, check=True)
        x = flow.inverse_checked(z.detach())
    np.testing.assert_allclose(x.detach().numpy(), X.numpy(), atol=1e-4)


def test_round_trip_far_from_the_data_warns_instead_of_passing_silently(trained_flow):
    flow, X = trained_flow
    far = X[:20] * 1e4
    with torch.no_grad():
        err = float(((flow.inverse(flow.features(far)) - far).abs() / (1 + far.abs())).max())
    if err <= 1e-3:
        pytest.skip(f"this flow happens to invert accurately at these inputs (error {err:.2g})")
    with pytest.warns(InverseAccuracyWarning, match="far from the data"):
        flow.features(far, check=True)
