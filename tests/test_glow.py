"""Glow, squeeze, dequantisation and bits/dim against hand computations, plus shapes, errors and training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pyro.distributions.transforms import GeneralizedChannelPermute
from scipy import stats
from scipy.special import logit

from bayes_diglm.flows.glow import InvertibleConv1x1, glow
from bayes_diglm.flows.image import Dequantize, Squeeze, bits_per_dim


def _pixels(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g).double() / 255


def test_bits_per_dim_formula_by_hand():
    # uniform density on [0, 1]^D: every 8-bit image has probability 256^-D, i.e. exactly 8 bits per dim
    assert float(bits_per_dim(torch.tensor(0.0), 10)) == pytest.approx(8.0, abs=1e-12)
    # density 2^D (uniform on half of every axis): 7 bits per dim
    assert float(bits_per_dim(torch.tensor(5 * math.log(2.0)), 5)) == pytest.approx(7.0, abs=1e-12)
    log_px = torch.tensor([-3.0, 12.5])
    nats_per_image = 784 * math.log(256)
    want = [(3.0 + nats_per_image) / (784 * math.log(2)), (-12.5 + nats_per_image) / (784 * math.log(2))]
    np.testing.assert_allclose(bits_per_dim(log_px, 784).numpy(), want, rtol=1e-6)
    assert float(bits_per_dim(torch.tensor(0.0), 4, num_bins=2)) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [{"dim": 0}, {"dim": 2.5}, {"dim": 3, "num_bins": 1}])
def test_bits_per_dim_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match="dim|num_bins"):
        bits_per_dim(torch.tensor(0.0), **bad)


def test_fresh_glow_density_is_logit_normal_by_hand():
    """At build time every coupling is the identity, ActNorm is uninitialised (identity in eval mode) and the
    1x1 convolutions are orthogonal, so z is a rotation of y = logit(alpha + (1 - 2 alpha) v) and
    log p(v) = sum_i [log N(y_i; 0, s^2) + log(1 - 2 alpha) - log(s_i (1 - s_i))], s_i = sigmoid(y_i)."""
    alpha, scale = 0.05, 1.7
    flow = glow((2, 8, 8), levels=2, steps=2, hidden_channels=8, alpha=alpha, base_scale=scale)
    flow = flow.double().eval()
    x = _pixels(4, (2, 8, 8))
    v = (255 * x.numpy() + 0.5) / 256
    s = alpha + (1 - 2 * alpha) * v
    y = logit(s)
    per_pixel = stats.norm.logpdf(y, scale=scale) + np.log(1 - 2 * alpha) - np.log(s * (1 - s))
    want = per_pixel.reshape(4, -1).sum(1)
    with torch.no_grad():
        got = flow.log_prob(x).numpy()
        bpd = flow.bits_per_dim(x).numpy()
    # the orthogonal 1x1 convolutions were LU-factorised in float32: |det| = 1 up to ~1e-7 per entry
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(bpd, (-want + 128 * np.log(256)) / (128 * np.log(2)), rtol=1e-5)


def test_squeeze_matches_brute_force_layout():
    x = torch.randn(2, 3, 4, 6)
    y = Squeeze()(x)
    assert y.shape == (2, 12, 2, 3)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(y[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="even height and width"):
        Squeeze()(torch.randn(1, 1, 3, 4))


def test_dequantize_noise_stays_inside_the_pixel_bin():
    x = _pixels(50, (1, 4, 4))
    dq = Dequantize(alpha=0.01).double()
    v = dq.train().dequantize(x)
    offset = 256 * v - 255 * x  # the noise u
    assert float(offset.min()) >= 0 and float(offset.max()) < 1
    assert float(offset.std()) > 0.2  # u ~ U(0, 1) has sd 0.289
    torch.testing.assert_close(dq.eval().dequantize(x), (255 * x + 0.5) / 256)
    with pytest.raises(ValueError, match="alpha"):
        Dequantize(alpha=0.1)


def test_conv1x1_matches_pyro_broadcast_implementation():
    torch.manual_seed(3)
    fast = InvertibleConv1x1(channels=5).double()
    with torch.no_grad():
        fast.LU.add_(0.1 * torch.randn_like(fast.LU))
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(fast._call(x), GeneralizedChannelPermute._call(fast, x), atol=1e-12, rtol=0)


def test_eval_mode_is_deterministic_and_training_mode_is_not():
    flow = glow((1, 8, 8), levels=2, steps=1, hidden_channels=8).double()
    x = _pixels(6, (1, 8, 8))
    flow.train()
    with torch.no_grad():
        flow(x)  # ActNorm initialisation
        a, b = flow.log_prob(x), flow.log_prob(x)
    assert not torch.allclose(a, b)
    flow.eval()
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), flow.log_prob(x), rtol=0, atol=0)


@pytest.mark.parametrize(("shape", "levels"), [((1, 8, 8), 2), ((3, 8, 8), 3), ((2, 4, 8), 1)])
def test_shapes(shape, levels):
    flow = glow(shape, levels=levels, steps=1, hidden_channels=4).eval()
    x = _pixels(3, shape).float()
    dim = math.prod(shape)
    z, log_det = flow(x)
    assert z.shape == (3, dim) and log_det.shape == (3,)
    assert flow.features(x).shape == (3, dim)
    assert flow.log_prob(x).shape == (3,) and flow.bits_per_dim(x).shape == (3,)
    draws = flow.sample(4)
    assert draws.shape == (4, *shape)
    assert float(draws.min()) >= 0 and float(draws.max()) <= 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (1, 28, 28), "levels": 3}, "divisible by 2\\*\\*levels"),
        ({"shape": (28, 28)}, "shape must be"),
        ({"shape": (0, 8, 8)}, "shape must be"),
        ({"levels": 0}, "levels"),
        ({"steps": 0}, "steps"),
        ({"hidden_channels": 1.5}, "hidden_channels"),
        ({"scale_bound": 0.0}, "scale_bound"),
        ({"base_scale": -1.0}, "base_scale"),
        ({"alpha": 0.0}, "alpha"),
    ],
)
def test_builder_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        glow(**{"shape": (1, 8, 8), "steps": 1, "hidden_channels": 4, **kwargs})


def test_flow_rejects_bad_inputs():
    flow = glow((1, 8, 8), levels=2, steps=1, hidden_channels=4).eval()
    with pytest.raises(ValueError, match="shape"):
        flow(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        flow(torch.rand(2, 1, 8, 8) * 255)
    with pytest.raises(ValueError, match="z must have shape"):
        flow.inverse(torch.randn(2, 63))
    with pytest.raises(ValueError, match="n must be"):
        flow.sample(0)


def test_short_training_lowers_bits_per_dim():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    # binary-ish images: a few fixed strokes, each pixel flipped with probability 0.05
    protos = (torch.rand(4, 1, 8, 8, generator=g) > 0.6).double()
    data = protos[torch.randint(0, 4, (64,), generator=g)]
    flips = torch.rand(data.shape, generator=g) < 0.05
    x = torch.where(flips, 1 - data, data)
    flow = glow((1, 8, 8), levels=2, steps=2, hidden_channels=16).double()
    flow.train()
    with torch.no_grad():
        flow(x)  # ActNorm initialisation on the data
    flow.eval()
    with torch.no_grad():
        before = float(flow.bits_per_dim(x).mean())
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    flow.train()
    for _ in range(40):
        optimizer.zero_grad()
        loss = flow.bits_per_dim(x).mean()
        loss.backward()
        optimizer.step()
    flow.eval()
    with torch.no_grad():
        after = float(flow.bits_per_dim(x).mean())
    assert math.isfinite(after)
    assert after < before - 0.5, (before, after)


def test_channels_last_is_a_memory_layout_only():
    torch.manual_seed(0)
    a = glow((1, 8, 8), levels=2, steps=2, hidden_channels=8, channels_last=True).double()
    torch.manual_seed(0)
    b = glow((1, 8, 8), levels=2, steps=2, hidden_channels=8, channels_last=False).double()
    x = _pixels(5, (1, 8, 8))
    a.train()(x)  # ActNorm initialisation (noise differs; what follows is compared in eval mode)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    za, la = a(x)
    zb, lb = b(x)
    torch.testing.assert_close(za, zb, atol=1e-10, rtol=0)
    torch.testing.assert_close(la, lb, atol=1e-9, rtol=0)
    torch.testing.assert_close(a.inverse(za), x, atol=1e-8, rtol=0)
    la.sum().backward()
    lb.sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-8, rtol=1e-8, msg=name)
