"""The family contract, one test suite over every registered GLM family: log-density, mean and variance against
scipy.stats; gradient and curvature against autograd; the predictive under a Gaussian over f against Monte Carlo
of ``sample``; target checks; ``type(lik)(**lik.config())``; nuisance parameters and their constraints."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import transform_to

from bayes_diglm import likelihoods
from bayes_diglm.likelihoods import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    CumulativeLogit,
    Gamma,
    Gaussian,
    HeteroscedasticGaussian,
    HeteroscedasticStudentT,
    NegativeBinomial,
    Poisson,
    StudentT,
    ZeroInflatedPoisson,
)

#: one or more instances of every built-in family (the binomial under each of its links)
CASES = {
    "gaussian": lambda: Gaussian(noise_variance=0.7),
    "heteroscedastic": lambda: HeteroscedasticGaussian(max_log_var=5.0),
    "bernoulli": Bernoulli,
    "categorical": lambda: Categorical(4),
    "poisson": Poisson,
    "student_t": lambda: StudentT(df=7.0, scale=0.8),
    "heteroscedastic_t": lambda: HeteroscedasticStudentT(df=7.0, max_log_scale=3.0),
    "binomial": Binomial,
    "binomial-probit": lambda: Binomial(link="probit"),
    "binomial-cloglog": lambda: Binomial(link="cloglog"),
    "negative_binomial": lambda: NegativeBinomial(alpha=0.4),
    "gamma": lambda: Gamma(shape=2.5),
    "beta": lambda: Beta(precision=6.0),
    "zero_inflated_poisson": lambda: ZeroInflatedPoisson(zero_prob=0.3),
    "ordinal": lambda: CumulativeLogit(4, cutpoints=[-1.0, 0.2, 1.5]),
}

#: per-row keywords a family may declare, drawn for n rows
CONTEXT = {"trials": lambda rng, n: rng.integers(1, 12, n).astype(np.float64)}


def _context(lik, n, seed=0):
    rng = np.random.default_rng(seed + 100)
    return {key: CONTEXT[key](rng, n) for key in lik.context}


def _data(lik, n=40, seed=0, scale=0.8):
    rng = np.random.default_rng(seed)
    f = rng.normal(scale=scale, size=(n, lik.num_outputs))
    ctx = _context(lik, n, seed)
    y = lik.sample(f, torch.Generator().manual_seed(seed), **ctx)
    return f, y, ctx


def _binomial_p(link, f):
    return {"logit": scipy.special.expit, "probit": scipy.stats.norm.cdf,
            "cloglog": lambda x: -np.expm1(-np.exp(x))}[link](f)


def _ordinal_probs(lik, f):
    cdf = scipy.stats.logistic.cdf(np.asarray(lik.cutpoints)[None, :] - f[:, :1])
    return np.diff(np.concatenate([np.zeros((len(f), 1)), cdf, np.ones((len(f), 1))], axis=1), axis=1)


def _scipy_reference(lik, f, ctx):
    """scipy.stats' frozen distribution of ``y | f`` for ``lik`` (None where scipy has none)."""
    st, f0 = scipy.stats, f[:, 0]
    name = lik.name
    if name == "gaussian":
        return st.norm(f0, np.sqrt(lik.noise_variance))
    if name == "heteroscedastic":
        return st.norm(f0, np.exp(0.5 * lik.max_log_var * np.tanh(f[:, 1] / lik.max_log_var)))
    if name == "bernoulli":
        return st.bernoulli(scipy.special.expit(f0))
    if name == "poisson":
        return st.poisson(np.exp(f0))
    if name == "student_t":
        return st.t(lik.df, f0, lik.scale)
    if name == "heteroscedastic_t":
        return st.t(lik.df, f0, np.exp(lik.max_log_scale * np.tanh(f[:, 1] / lik.max_log_scale)))
    if name == "binomial":
        return st.binom(ctx["trials"], _binomial_p(lik.link, f0))
    if name == "negative_binomial":
        mu = np.exp(f0)
        return st.nbinom(1.0 / lik.alpha, 1.0 / (1.0 + lik.alpha * mu))
    if name == "gamma":
        return st.gamma(lik.shape, scale=np.exp(f0) / lik.shape)
    if name == "beta":
        mu = scipy.special.expit(f0)
        return st.beta(mu * lik.precision, (1.0 - mu) * lik.precision)
    return None


def _reference_log_prob_mean_var(lik, f, y, ctx):
    """``(log p(y | f), E[y | f], Var[y | f])`` from scipy, or built from scipy's pieces where it has no family."""
    ref = _scipy_reference(lik, f, ctx)
    if ref is not None:
        logp = ref.logpmf(y) if lik.discrete else ref.logpdf(y)
        return logp, ref.mean(), ref.var()
    if lik.name == "zero_inflated_poisson":
        pois, pi = scipy.stats.poisson(np.exp(f[:, 0])), lik.zero_prob
        mean = (1 - pi) * pois.mean()
        return (np.log(pi * (y == 0) + (1 - pi) * pois.pmf(y)), mean,
                (1 - pi) * (pois.var() + pois.mean() ** 2) - mean**2)
    if lik.name == "ordinal":
        p = _ordinal_probs(lik, f)
        k = np.arange(lik.num_classes)
        mean = p @ k
        return np.log(p[np.arange(len(y)), y.astype(int)]), mean, p @ k**2 - mean**2
    if lik.name == "categorical":
        return scipy.special.log_softmax(f, axis=1)[np.arange(len(y)), y.astype(int)], None, None
    raise AssertionError(f"no reference for {lik.name}")


def test_every_builtin_family_has_a_case():
    builtin = {n for n in likelihoods.names() if likelihoods.get(n).__module__.startswith("bayes_diglm.")}
    assert builtin <= {CASES[c]().name for c in CASES}


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_prob_mean_and_variance_match_scipy(case):
    lik = CASES[case]()
    f, y, ctx = _data(lik, n=60)
    logp, mean, var = _reference_log_prob_mean_var(lik, f, y, ctx)
    np.testing.assert_allclose(lik.log_prob(f, y, **ctx), logp, rtol=1e-10, atol=1e-12)
    if mean is None:
        return
    np.testing.assert_allclose(lik.mean(f, **ctx), mean, rtol=1e-10, atol=1e-12)
    if lik.name == "ordinal":  # its distribution is a torch categorical, which has no moments of the class index
        np.testing.assert_allclose(lik.probs(f), _ordinal_probs(lik, f), rtol=1e-10, atol=1e-12)
        return
    np.testing.assert_allclose(lik.dist(f, **ctx).variance.numpy(), var, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grad_and_curvature_match_autograd(case):
    lik = CASES[case]()
    f, y, ctx = _data(lik, n=8, scale=1.5)
    grad, curv = lik.grad(f, y, **ctx), lik.curvature(f, y, **ctx)
    assert grad.shape == f.shape and curv.shape == f.shape + (lik.num_outputs,)
    ft = torch.from_numpy(f)
    for i in range(len(f)):
        row_ctx = {k: v[i : i + 1] for k, v in ctx.items()}

        def logp(fi, i=i, row_ctx=row_ctx):
            return lik.log_prob(fi[None], torch.as_tensor(y[i : i + 1]), **row_ctx)[0]

        g_ref = torch.autograd.functional.jacobian(logp, ft[i]).numpy()
        h_ref = torch.autograd.functional.hessian(logp, ft[i]).numpy()
        np.testing.assert_allclose(grad[i], g_ref, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(curv[i], -h_ref, rtol=1e-9, atol=1e-11)


#: families whose predictive is a closed-form approximation (MacKay's probit, the mean-field softmax) rather than
#: exact or quadrature: the absolute error in a class probability allowed on these predictors
APPROXIMATE = {"bernoulli": 0.03, "categorical": 0.05}


def _gaussian_over_f(k, rng, rows=3):
    mean = rng.normal(scale=0.5, size=(rows, k))
    root = rng.normal(scale=0.4, size=(rows, k, k))
    return mean, root @ np.swapaxes(root, -1, -2) + 0.05 * np.eye(k)


@pytest.mark.parametrize("case", sorted(CASES))
def test_predictive_matches_monte_carlo_of_sample(case):
    lik = CASES[case]()
    lik.predictive_samples = 20_000
    rng = np.random.default_rng(3)
    mean, cov = _gaussian_over_f(lik.num_outputs, rng)
    ctx = _context(lik, len(mean))
    pred = lik.predictive(mean, cov, generator=torch.Generator().manual_seed(1), **ctx)
    draws = 20_000
    for i in range(len(mean)):
        f = rng.multivariate_normal(mean[i], cov[i], size=draws)
        row_ctx = {k: np.full(draws, v[i]) for k, v in ctx.items()}
        y = lik.sample(f, torch.Generator().manual_seed(i), **row_ctx)
        if lik.task == "classification":
            freq = np.bincount(y.astype(int), minlength=lik.num_classes) / draws
            probs = pred.probs[i].numpy()
            if probs.ndim == 0:  # a Bernoulli's probs is p(y = 1)
                freq = freq[1:]
            tol = APPROXIMATE.get(lik.name, 5.0 * np.sqrt(freq * (1 - freq) / draws).max())
            np.testing.assert_allclose(probs, freq, rtol=0, atol=tol)
            continue
        m, v = y.mean(), y.var()
        # 5 standard errors of the Monte Carlo estimates (the generic predictive's own draws count as much)
        se_mean = np.sqrt(2.0 * v / draws)
        se_var = np.sqrt(2.0 * np.mean((y - m) ** 4) / draws)
        assert abs(float(pred.mean[i]) - m) < 5 * se_mean, (float(pred.mean[i]), m)
        assert abs(float(pred.variance[i]) - v) < 5 * se_var, (float(pred.variance[i]), v)


#: targets each family must refuse (with a ValueError), beside NaN which all refuse
BAD_TARGETS = {
    "bernoulli": [2.0, 0.5], "categorical": [4.0, -1.0, 1.5], "poisson": [-1.0, 0.5],
    "binomial": [-1.0, 1.5, 13.0], "negative_binomial": [-1.0, 2.5], "zero_inflated_poisson": [-2.0, 0.1],
    "gamma": [0.0, -1.0, np.inf], "beta": [0.0, 1.0, 1.2, -0.1], "ordinal": [-1.0, 4.0, 0.5],
    "gaussian": [np.inf], "heteroscedastic": [-np.inf], "student_t": [np.inf], "heteroscedastic_t": [np.inf],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_target_accepts_samples_and_refuses_bad_targets(case):
    lik = CASES[case]()
    _, y, ctx = _data(lik)
    np.testing.assert_array_equal(lik.check_target(y, **ctx), y)
    trials = {"trials": 12.0} if lik.context else {}
    for bad in [np.nan, *BAD_TARGETS[lik.name]]:
        with pytest.raises(ValueError):
            lik.check_target([1.0, bad], **trials)


def test_binomial_checks_its_trials():
    lik = Binomial()
    with pytest.raises(ValueError, match="trials"):
        lik.check_target([1.0, 2.0])
    for trials in ([-1.0, 3.0], [2.5, 3.0], [1.0, 1.0]):
        with pytest.raises(ValueError):
            lik.check_target([1.0, 2.0], trials=trials)
    with pytest.raises(ValueError, match="per-row"):
        lik.log_prob(np.zeros((2, 1)), [1.0, 2.0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_rebuilds_an_equal_likelihood(case):
    lik = CASES[case]()
    twin = type(lik)(**lik.config())
    assert twin.config() == lik.config() and repr(twin) == repr(lik)
    f, y, ctx = _data(lik, n=10)
    np.testing.assert_array_equal(twin.log_prob(f, y, **ctx), lik.log_prob(f, y, **ctx))


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c]().nuisance))
def test_nuisance_parameters_learn_through_their_constraint(case):
    """What a point head does: each nuisance parameter as transform_to(constraint)(raw) reaches log_prob's grad."""
    lik = CASES[case]()
    f, y, ctx = _data(lik, n=10)
    raw, values = {}, {}
    for key, spec in lik.nuisance.items():
        init = spec.init(lik) if callable(spec.init) else spec.init
        transform = transform_to(spec.constraint)
        raw[key] = transform.inv(torch.as_tensor(init, dtype=torch.float64)).clone().requires_grad_(True)
        values[key] = transform(raw[key])
        assert bool(spec.constraint.check(values[key]).all())
    learned = type(lik)(**{**lik.config(), **values})
    learned.log_prob(torch.from_numpy(f), torch.as_tensor(y), **ctx).sum().backward()
    for key, param in raw.items():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all()) and param.grad.abs().sum() > 0, key


@pytest.mark.parametrize("make", [
    lambda: StudentT(df=0.0), lambda: StudentT(scale=-1.0), lambda: StudentT(df=float("nan")),
    lambda: HeteroscedasticStudentT(df=-2.0), lambda: HeteroscedasticStudentT(max_log_scale=0.0),
    lambda: NegativeBinomial(alpha=0.0), lambda: Gamma(shape=-2.0), lambda: Beta(precision=0.0),
    lambda: ZeroInflatedPoisson(zero_prob=1.0), lambda: ZeroInflatedPoisson(zero_prob=-0.1),
    lambda: CumulativeLogit(3, cutpoints=[1.0, 0.0]), lambda: CumulativeLogit(3, cutpoints=[0.0, 1.0, 2.0]),
    lambda: CumulativeLogit(1), lambda: Binomial(link="log"), lambda: StudentT(fixed=("nu",)),
])
def test_constructors_refuse_bad_values(make):
    with pytest.raises(ValueError):
        make()


def test_fixed_nuisance_leaves_what_a_head_learns_but_stays_in_config():
    lik = StudentT(df=3.0, scale=2.0, fixed=("df",))
    assert list(lik.nuisance) == ["scale"] and list(StudentT.nuisance) == ["df", "scale"]
    assert lik.config() == {"df": 3.0, "scale": 2.0, "fixed": ["df"]}
    assert list(NegativeBinomial(fixed="alpha").nuisance) == []


def test_nuisance_tensors_broadcast_per_posterior_draw():
    """One dispersion per draw (S, 1) against a predictor (S, n, 1) gives (S, n) log-densities."""
    alpha = torch.tensor([[0.2], [1.0]], dtype=torch.float64)
    f = torch.zeros(2, 3, 1, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64)
    out = NegativeBinomial(alpha=alpha).log_prob(f, y)
    for s in range(2):
        ref = scipy.stats.nbinom(1.0 / float(alpha[s, 0]), 1.0 / (1.0 + float(alpha[s, 0]))).logpmf(y.numpy())
        np.testing.assert_allclose(out[s].numpy(), ref, rtol=1e-12)


def test_extreme_predictors_stay_finite():
    f = np.array([[-40.0], [40.0]])
    np.testing.assert_allclose(Beta(precision=5.0).log_prob(f, [1e-9, 1 - 1e-9]),
                               scipy.stats.beta(5.0 * scipy.special.expit(f[:, 0]),
                                                5.0 * scipy.special.expit(-f[:, 0])).logpdf([1e-9, 1 - 1e-9]))
    for link in ("logit", "probit", "cloglog"):
        assert np.all(np.isfinite(Binomial(link=link).log_prob(f, [3.0, 7.0], trials=[10.0, 10.0])))
        assert np.all(np.isfinite(Binomial(link=link).grad(f, [3.0, 7.0], trials=[10.0, 10.0])))
    lik = CumulativeLogit(3, cutpoints=[-1.0, 1.0])
    assert np.all(np.isfinite(lik.log_prob(f, [2, 0])))


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_predictors_give_float32_results_close_to_float64(case):
    """A point head trains in float32: nuisance floats and context follow the predictor's dtype."""
    lik = CASES[case]()
    f, y, ctx = _data(lik, n=20)
    f32, y32 = torch.tensor(f, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    log_p = lik.log_prob(f32, y32, **ctx)
    assert log_p.dtype == torch.float32 and lik.grad(f32, y32, **ctx).dtype == torch.float32
    np.testing.assert_allclose(log_p.numpy(), lik.log_prob(f, y, **ctx), rtol=1e-5, atol=1e-5)


def test_binomial_logit_curvature_does_not_need_y():
    f, y, ctx = _data(Binomial())
    np.testing.assert_allclose(Binomial().curvature(f, **ctx), Binomial().curvature(f, y, **ctx))
    with pytest.raises(ValueError, match="pass y"):
        Binomial(link="probit").curvature(f, **ctx)


def _expected_curvature(lik, f, ctx, draws=40_000, seed=5):
    """``E_y[curvature(f, y)]`` by Monte Carlo over ``y ~ p(y | f)``, with its standard error (independent of
    :meth:`fisher`, which uses closed forms or the score's outer product)."""
    f_rep = np.broadcast_to(f, (draws,) + f.shape).copy()
    ctx_rep = {k: np.broadcast_to(v, (draws,) + v.shape).copy() for k, v in ctx.items()}
    y = lik.sample(f_rep, torch.Generator().manual_seed(seed), **ctx_rep)
    curv = np.asarray(lik.curvature(f_rep, y, **ctx_rep))
    return curv.mean(0), curv.std(0) / np.sqrt(draws)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fisher_is_the_expected_curvature_and_positive_semidefinite(case):
    lik = CASES[case]()
    f, _, ctx = _data(lik, n=5, scale=1.2)
    fisher = np.asarray(lik.fisher(f, **ctx))
    assert fisher.shape == f.shape + (lik.num_outputs,)
    np.testing.assert_allclose(fisher, np.swapaxes(fisher, -1, -2), atol=1e-12)
    assert np.all(np.linalg.eigvalsh(fisher) >= -1e-12)
    mean, se = _expected_curvature(lik, f, ctx)
    assert np.all(np.abs(fisher - mean) <= 5.0 * se + 1e-9), (fisher, mean, se)


def test_generic_fisher_without_a_closed_form_agrees_with_the_closed_form():
    """A user's family that gives no ``_fisher`` gets the score's outer product over draws of ``y``."""

    class NoClosedForm(StudentT):
        _fisher = likelihoods.Likelihood._fisher

    f = np.random.default_rng(3).normal(size=(6, 1))
    closed = StudentT(df=5.0, scale=0.7).fisher(f)
    generic = NoClosedForm(df=5.0, scale=0.7).fisher(f)
    np.testing.assert_allclose(generic, closed, rtol=0.15)
    np.testing.assert_array_equal(generic, NoClosedForm(df=5.0, scale=0.7).fisher(f))  # seeded: repeatable


def test_mixture_cdf_in_row_blocks_equals_scipy_and_is_recomputed_for_new_targets(monkeypatch):
    """A Student-t mixture's CDF evaluated in blocks of rows (a block size that does not divide the rows) equals
    scipy's weighted sum over all components; the kept last CDF is a copy and new targets are not served it."""
    from bayes_diglm.inference import base
    from bayes_diglm.inference.base import Predictive

    monkeypatch.setattr(base, "_CDF_BLOCK_ROWS", 7)
    rng = np.random.default_rng(11)
    n, k = 23, 5
    df, loc, scale = rng.uniform(1.5, 6, (n, k)), rng.normal(size=(n, k)), rng.uniform(0.5, 2, (n, k))
    probs = rng.dirichlet(np.ones(k), size=n)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.as_tensor(probs)),
        torch.distributions.StudentT(torch.as_tensor(df), torch.as_tensor(loc), torch.as_tensor(scale)))
    pred = Predictive(mixture)
    y = rng.normal(size=n)
    expected = (probs * scipy.stats.t.cdf(y[:, None], df, loc=loc, scale=scale)).sum(1)
    first = pred.cdf(y)
    np.testing.assert_allclose(first, expected, rtol=1e-12, atol=1e-14)
    first[:] = -1.0  # the caller's copy: the kept CDF is untouched
    np.testing.assert_allclose(pred.cdf(y), expected, rtol=1e-12, atol=1e-14)
    y2 = y + 0.5
    np.testing.assert_allclose(pred.cdf(y2), (probs * scipy.stats.t.cdf(y2[:, None], df, loc=loc, scale=scale)).sum(1),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", sorted(c for c in CASES
                                         if CASES[c]().task == "regression" and not CASES[c]().discrete))
def test_predictive_cdf_matches_the_share_of_draws_below(case):
    """``Predictive.cdf`` of every continuous family's predictive (mixtures included, Student-t components by
    scipy) against the share of Monte Carlo draws of ``f`` then ``y`` below the point."""
    from bayes_diglm.inference.base import Predictive

    lik = CASES[case]()
    rng = np.random.default_rng(7)
    mean, cov = _gaussian_over_f(lik.num_outputs, rng)
    pred = Predictive(lik.predictive(mean, cov, generator=torch.Generator().manual_seed(1)))
    draws = 40_000
    points = np.array([float(pred.mean[i]) + (i - 1) * 0.5 * float(pred.stddev[i]) for i in range(len(mean))])
    if lik.name == "beta":
        points = np.clip(points, 0.05, 0.95)
    cdf = pred.cdf(points)
    for i in range(len(mean)):
        f = rng.multivariate_normal(mean[i], cov[i], size=draws)
        share = float(np.mean(lik.sample(f, torch.Generator().manual_seed(i)) <= points[i]))
        # the predictive's own 512 draws of f count as much as these
        assert abs(cdf[i] - share) < 5 * np.sqrt(share * (1 - share) * (1 / draws + 1 / 512)) + 1e-3, (cdf[i], share)
