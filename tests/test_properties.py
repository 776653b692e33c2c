"""Property-based tests (hypothesis) over the public API of the flows and the Bayesian heads."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_diglm.flows import glow, realnvp
from bayes_diglm.inference import ConjugateLinearRegression, LaplaceClassifier

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _perturb(module, scale, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@SETTINGS
@given(dim=st.integers(2, 6), layers=st.integers(1, 3), mixing=st.sampled_from(["lu", "permute"]),
       log10_scale=st.floats(-3, 3), batch=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_realnvp_inverts_and_log_det_matches_autograd(dim, layers, mixing, log10_scale, batch, seed):
    torch.manual_seed(seed)
    flow = realnvp(dim, num_layers=layers, hidden_dims=(8,), mixing=mixing).double()
    x = torch.randn(max(batch, 2), dim, dtype=torch.float64) * 10**log10_scale
    flow(x)  # ActNorm's data-dependent initialisation sees the data's scale
    _perturb(flow, 0.1, seed)
    z, log_det = flow(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    torch.testing.assert_close(flow.inverse(z), x, rtol=1e-6, atol=1e-6 * 10**log10_scale)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[0])
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jac)[1], rtol=1e-6, atol=1e-6)


@SETTINGS
@given(channels=st.integers(1, 3), size=st.sampled_from([4, 8]), steps=st.integers(1, 2), seed=st.integers(0, 999))
def test_glow_inverts_on_random_shapes(channels, size, steps, seed):
    torch.manual_seed(seed)
    flow = glow((channels, size, size), levels=2, steps=steps, hidden_channels=4).double().eval()
    x = torch.rand(2, channels, size, size, dtype=torch.float64)
    _perturb(flow, 0.05, seed)
    z, log_det = flow(x)
    assert z.shape == (2, channels * size * size) and torch.isfinite(log_det).all()
    # eval mode dequantises at the bin centre, and the inverse undoes exactly that map
    torch.testing.assert_close(flow.inverse(z), x, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(n=st.integers(1, 40), d=st.integers(1, 8), log10_scale=st.floats(-4, 4), seed=st.integers(0, 10_000))
def test_conjugate_posterior_stays_finite_and_positive_definite(n, d, log10_scale, seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d)) * 10**log10_scale
    y = rng.normal(size=n)
    head = ConjugateLinearRegression().fit(Z, y)
    L = head.posterior_.precision_cholesky
    assert np.isfinite(head.posterior_.mean).all() and np.isfinite(L).all()
    assert np.all(np.diag(L) > 0)
    assert head.posterior_.a > 0 and head.posterior_.b > 0
    mean, std = head.predict(Z, return_std=True)
    assert np.isfinite(mean).all() and np.all(std > 0)


@SETTINGS
@given(n=st.integers(4, 60), d=st.integers(1, 5), k=st.integers(2, 4), seed=st.integers(0, 10_000))
def test_laplace_posterior_stays_finite(n, d, k, seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d))
    y = np.arange(n) % k  # every class present
    rng.shuffle(y)
    head = LaplaceClassifier(prior_precision=1.0).fit(Z, y)
    proba = head.predict_proba(Z)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-8)


BAD_INPUTS = [
    ("nan", lambda Z, y: (np.where(np.arange(Z.size).reshape(Z.shape) == 3, np.nan, Z), y)),
    ("inf target", lambda Z, y: (Z, np.where(np.arange(y.size) == 2, np.inf, y))),
    ("short y", lambda Z, y: (Z, y[:-1])),
    ("1-D Z", lambda Z, y: (Z[:, 0], y)),
    ("empty", lambda Z, y: (Z[:0], y[:0])),
]


@pytest.mark.parametrize("name, corrupt", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_rejected_input_never_changes_the_conjugate_head(name, corrupt, method):
    rng = np.random.default_rng(0)
    Z, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    head = ConjugateLinearRegression().fit(Z, y)
    before = head.predict(Z, return_std=True)
    with pytest.raises((ValueError, TypeError)):
        getattr(head, method)(*corrupt(Z.copy(), y.copy()))
    after = head.predict(Z, return_std=True)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize("z, y", [([np.nan, 0.0, 1.0], 0.5), ([0.0, 1.0, 2.0], np.inf), ([0.0, 1.0], 0.5),
                                  ([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], 0.5)])
def test_rejected_update_never_changes_the_conjugate_head(z, y):
    rng = np.random.default_rng(0)
    Z, y_all = rng.normal(size=(30, 3)), rng.normal(size=30)
    head = ConjugateLinearRegression().fit(Z, y_all)
    before = head.predict(Z, return_std=True)
    with pytest.raises((ValueError, TypeError)):
        head.update(np.asarray(z), y)
    after = head.predict(Z, return_std=True)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize("bad_y, match", [([0, 1, 5], "label|class"), ([0, 0, 0], "class")])
def test_rejected_labels_never_change_the_laplace_head(bad_y, match):
    rng = np.random.default_rng(0)
    Z, y = rng.normal(size=(30, 2)), np.arange(30) % 3
    head = LaplaceClassifier(classes=[0, 1, 2]).fit(Z, y)
    before = head.predict_proba(Z)
    with pytest.raises(ValueError, match=match):
        head.fit(Z[:3], np.array(bad_y))
    np.testing.assert_array_equal(head.predict_proba(Z), before)


def test_conjugate_update_and_fit_on_features_refuse_ambiguous_input():
    from bayes_diglm.inference import fit_on_features

    head = ConjugateLinearRegression()
    with pytest.raises(ValueError, match="one observation"):
        head.update(np.ones((2, 3)), 1.0)
    assert getattr(head, "posterior_", None) is None
    fitted = ConjugateLinearRegression().fit(np.random.default_rng(0).normal(size=(20, 2)), np.arange(20.0))
    before = fitted.posterior_.mean.copy()
    with pytest.raises(ValueError, match="empty"):
        fit_on_features(fitted, lambda x: x, np.zeros((0, 2), "float32"), np.zeros(0))
    np.testing.assert_array_equal(fitted.posterior_.mean, before)
