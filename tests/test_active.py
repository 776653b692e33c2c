"""Active learning: BALD and entropy against quadrature, and the acquisition loop's bookkeeping."""

import numpy as np
import pytest
from scipy.special import expit

from bayes_diglm.evaluation.active import (
    acquisition_scores,
    bald,
    labels_to_reach,
    predictive_entropy_of_draws,
    run_active_learning,
)
from bayes_diglm.inference.laplace import LaplaceClassifier


def _binary_entropy(p):
    p = np.clip(p, 1e-300, 1 - 1e-16)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


class _GaussianBetaHead:
    """A stand-in fitted binary head with the contract's ``sample``: beta ~ N(m, diag(s^2)), no intercept."""

    def __init__(self, m, s):
        self.m, self.s = np.asarray(m, float), np.asarray(s, float)

    def sample(self, n, *, generator=None):
        rng = np.random.default_rng(generator) if not isinstance(generator, np.random.Generator) else generator
        return {"beta": self.m + self.s * rng.standard_normal((n, self.m.size))}


def test_bald_and_entropy_match_gauss_hermite_for_a_gaussian_posterior():
    """I(y; beta | z) = H[E sigmoid(beta z)] - E H[sigmoid(beta z)] with beta z ~ N(m z, s^2 z^2)."""
    m, s = np.array([1.0, -0.5]), np.array([0.8, 0.3])
    Z = np.array([[0.1, 0.0], [1.0, 1.0], [3.0, -2.0], [-0.5, 2.0]])
    t, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / w.sum()
    loc, scale = Z @ m, np.sqrt((Z**2) @ (s**2))
    p = expit(loc[:, None] + scale[:, None] * t[None, :])
    exact_entropy = _binary_entropy(p @ w)
    exact_mi = exact_entropy - _binary_entropy(p) @ w
    head = _GaussianBetaHead(m, s)
    mi = acquisition_scores("bald", head, Z, n_draws=200_000, generator=0)
    ent = acquisition_scores("entropy", head, Z, n_draws=200_000, generator=0)
    np.testing.assert_allclose(mi, exact_mi, atol=3e-3)
    np.testing.assert_allclose(ent, exact_entropy, atol=3e-3)
    # BALD ranks the uncertain-weights row [3, -2] above the near-boundary row [0.1, 0] that entropy prefers
    assert np.argmax(ent) == 0 and np.argmax(mi) != 0


def test_bald_is_zero_when_the_draws_agree_and_never_exceeds_entropy():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=7)
    same = np.repeat(p[None], 10, axis=0)
    np.testing.assert_allclose(bald(same), 0.0, atol=1e-12)
    draws = rng.dirichlet(np.ones(4), size=(30, 7))
    assert np.all(bald(draws) >= 0) and np.all(bald(draws) <= predictive_entropy_of_draws(draws) + 1e-12)
    with pytest.raises(ValueError, match="draws, n, K"):
        bald(p)


def test_acquisition_scores_validate():
    head = _GaussianBetaHead([1.0], [1.0])
    with pytest.raises(ValueError, match="strategy"):
        acquisition_scores("margin", head, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="n_draws"):
        acquisition_scores("bald", head, np.zeros((3, 1)), n_draws=1)
    r = acquisition_scores("random", head, np.zeros((5, 1)), generator=3)
    assert r.shape == (5,) and np.array_equal(r, acquisition_scores("random", head, np.zeros((5, 1)), generator=3))


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centres[y] + rng.normal(size=(n, 2)), y




@pytest.mark.parametrize("strategy", ["bald", "entropy", "random"])
def test_loop_grows_the_labelled_set_without_repeats(strategy):
    Z, y = _blobs(300, 0)
    Zt, yt = _blobs(200, 1)
    head = LaplaceClassifier(prior_precision=1.0, classes=np.arange(3))
    curve = run_active_learning(head, Z, y, Zt, yt, strategy=strategy, n_initial=6, step=5, n_final=31,
                                n_draws=50, seed=2)
    assert curve.n_labels == [6, 11, 16, 21, 26, 31]
    assert len(curve.queried) == 31 == len(set(curve.queried))
    assert np.bincount(y[curve.queried[:6]], minlength=3).tolist() == [2, 2, 2]  # balanced start
    # the recorded error is the error of a head fitted on exactly the queried rows
    final = LaplaceClassifier(prior_precision=1.0, classes=np.arange(3)).fit(Z[curve.queried], y[curve.queried])
    assert curve.test_error[-1] == pytest.approx(np.mean(final.predict(Zt) != yt))
    assert curve.test_error[-1] < 0.2 and all(v > 0 for v in curve.test_nll)
    again = run_active_learning(head, Z, y, Zt, yt, strategy=strategy, n_initial=6, step=5, n_final=31,
                                n_draws=50, seed=2)
    assert again.queried == curve.queried


def test_density_gate_never_queries_outliers():
    Z, y = _blobs(300, 0)
    log_px = -np.sum(Z**2, axis=1)
    Zt, yt = _blobs(50, 1)
    curve = run_active_learning(LaplaceClassifier(classes=np.arange(3)), Z, y, Zt, yt, strategy="entropy",
                                n_initial=6, step=10, n_final=46, n_draws=20, log_px_pool=log_px,
                                density_quantile=0.5, seed=0)
    threshold = np.quantile(log_px, 0.5)
    assert np.all(log_px[curve.queried[6:]] >= threshold)
    assert labels_to_reach(curve, 0.0) == 6 and labels_to_reach(curve, 1.01) is None


def test_loop_validates_its_arguments():
    Z, y = _blobs(50, 0)
    head = LaplaceClassifier()
    with pytest.raises(ValueError, match="strategy"):
        run_active_learning(head, Z, y, Z, y, strategy="margin")
    with pytest.raises(ValueError, match="n_final"):
        run_active_learning(head, Z, y, Z, y, n_initial=10, n_final=5)
    with pytest.raises(ValueError, match="exceeds the pool"):
        run_active_learning(head, Z, y, Z, y, n_initial=10, n_final=60)
    with pytest.raises(ValueError, match="log_px_pool"):
        run_active_learning(head, Z, y, Z, y, n_initial=6, n_final=10, density_quantile=0.1)
    with pytest.raises(ValueError, match="Z_test"):
        run_active_learning(head, Z, y, Z[:, :1], y, n_initial=6, n_final=10)
