"""The family contract, one test suite over every built-in GLM family: log-density, mean and variance against
scipy.stats; gradient and curvature against autograd; the predictive under a Gaussian over f against Monte Carlo
of ``sample``; target checks; ``type(lik)(**lik.config())``; nuisance parameters and their constraints; the Fisher
information against the exact sum over the support and Monte Carlo; the closed-form predictives and the
``Predictive`` object."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import transform_to

from bayes_diglm import likelihoods
from bayes_diglm.inference.base import Predictive
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
    multiclass_probit,
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


def test_mixture_cdf_in_row_blocks_equals_scipy_and_is_recomputed_for_new_targets():
    """A Student-t mixture's CDF over more rows than one block (base.py: 4,096 rows; 8,199 is not a multiple)
    equals scipy's weighted sum over all components; the kept last CDF is a copy and new targets are not served
    it."""
    from bayes_diglm.inference.base import Predictive

    rng = np.random.default_rng(11)
    n, k = 2 * 4096 + 7, 5
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


# ---- the Fisher information over the support (counts) and by the information identity -----------------------

F_FISHER = np.array([[-1.3], [0.0], [0.4], [2.1]])


@pytest.mark.parametrize("lik, context", [
    (likelihoods.Bernoulli(), {}),
    (likelihoods.Poisson(), {}),
    (NegativeBinomial(alpha=0.7), {}),
    (Binomial(), {"trials": np.array([7.0, 1.0, 12.0, 3.0])}),
    (Binomial(link="probit"), {"trials": np.array([7.0, 1.0, 12.0, 3.0])}),
    (Binomial(link="cloglog"), {"trials": np.array([7.0, 1.0, 12.0, 3.0])}),
    (likelihoods.ZeroInflatedPoisson(zero_prob=0.3), {}),
], ids=["bernoulli", "poisson", "negative_binomial", "binomial-logit", "binomial-probit", "binomial-cloglog",
        "zero_inflated_poisson"])
def test_fisher_is_the_expected_curvature_over_the_support(lik, context):
    top = 1.0 if lik.num_classes == 2 else 400.0
    expected = []
    for i in range(F_FISHER.shape[0]):
        ys = np.arange(min(top, context["trials"][i]) + 1 if context else top + 1)
        ctx = {k: np.full(ys.size, v[i]) for k, v in context.items()}
        f = np.repeat(F_FISHER[i:i + 1], ys.size, 0)
        probs = np.exp(lik.log_prob(f, ys, **ctx))
        assert probs.sum() == pytest.approx(1.0, abs=1e-10)
        expected.append(probs @ lik.curvature(f, ys, **ctx)[:, 0, 0])
    np.testing.assert_allclose(lik.fisher(F_FISHER, **context)[:, 0, 0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lik", [Gamma(shape=2.5), StudentT(df=3.5, scale=0.8), likelihoods.Beta(precision=6.0),
                                 likelihoods.Gaussian(noise_variance=0.3)], ids=["gamma", "student_t", "beta",
                                                                                "gaussian"])
def test_fisher_is_the_expected_curvature_by_monte_carlo(lik):
    gen = torch.Generator().manual_seed(0)
    f = np.repeat(F_FISHER, 200_000, axis=0)
    y = lik.sample(torch.from_numpy(f), gen).numpy()
    curv = lik.curvature(f, y)[:, 0, 0].reshape(F_FISHER.shape[0], -1)
    grad2 = lik.grad(f, y)[:, 0].reshape(F_FISHER.shape[0], -1) ** 2  # E[g^2] is the Fisher information too
    fisher = lik.fisher(F_FISHER)[:, 0, 0]
    np.testing.assert_allclose(curv.mean(1), fisher, rtol=0.02)
    np.testing.assert_allclose(grad2.mean(1), fisher, rtol=0.03)
    assert np.all(fisher > 0)


def test_student_t_fisher_is_positive_where_the_curvature_is_negative():
    lik = StudentT(df=3.0, scale=1.0)
    assert lik.curvature(np.zeros((1, 1)), np.array([10.0]))[0, 0, 0] < 0
    assert lik.fisher(np.zeros((1, 1)))[0, 0, 0] == pytest.approx(4.0 / 6.0)


def test_a_family_without_a_closed_form_gets_the_score_outer_product():
    """A user's family that overrides neither ``_fisher`` nor a y-free curvature gets the seeded Monte Carlo
    average of the score's outer product: it agrees with the exact sum over the support (negative binomial)."""

    class NoClosedForm(NegativeBinomial):
        _fisher = likelihoods.Likelihood._fisher

    exact = NegativeBinomial(alpha=0.7).fisher(F_FISHER)[:, 0, 0]
    np.testing.assert_allclose(NoClosedForm(alpha=0.7).fisher(F_FISHER)[:, 0, 0], exact, rtol=0.1)  # 4,096 draws


# ---- curvature without y, the torch distribution, the closed-form predictives and the Predictive object -----

@pytest.mark.parametrize("case", ["gaussian", "bernoulli", "categorical", "poisson"])
def test_canonical_curvature_does_not_need_y(case):
    lik = CASES[case]()
    f, y, _ = _data(lik)
    np.testing.assert_allclose(lik.curvature(f), lik.curvature(f, y))


def test_log_prob_of_the_torch_distribution_and_numpy_in_numpy_out():
    for name in ["gaussian", "heteroscedastic", "bernoulli", "categorical", "poisson"]:
        lik = CASES[name]()
        f, y, _ = _data(lik)
        out = lik.log_prob(f, y)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64, name
        dist = lik.dist(torch.from_numpy(f))
        np.testing.assert_allclose(out, dist.log_prob(torch.as_tensor(y)).numpy(), rtol=1e-10, err_msg=name)
        assert isinstance(lik.log_prob(torch.from_numpy(f), torch.as_tensor(y)), torch.Tensor)


def test_bad_predictor_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        Categorical(4).log_prob(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="num_classes"):
        Categorical(1)
    with pytest.raises(ValueError, match="noise_variance"):
        Gaussian(-1.0)


def _mc_predictive_moments(lik, mean, cov, num=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn((num,) + mean.shape, dtype=mean.dtype, generator=g)
    f = mean + torch.einsum("nkl,snl->snk", chol, eps)
    d = lik.dist(f)
    return d.mean.mean(0), (d.variance + d.mean**2).mean(0) - d.mean.mean(0) ** 2, f


def test_poisson_predictive_is_the_lognormal_mixture():
    m, v = torch.tensor([[0.3], [1.2]], dtype=torch.float64), torch.tensor([[[0.2]], [[0.5]]], dtype=torch.float64)
    pred = Poisson().predictive(m, v)
    rate_mean = torch.exp(m[:, 0] + v[:, 0, 0] / 2)
    rate_var = (torch.exp(v[:, 0, 0]) - 1) * torch.exp(2 * m[:, 0] + v[:, 0, 0])
    np.testing.assert_allclose(pred.mean.numpy(), rate_mean.numpy(), rtol=1e-8)
    np.testing.assert_allclose(pred.variance.numpy(), (rate_mean + rate_var).numpy(), rtol=1e-6)
    probs = torch.exp(pred.log_prob(torch.arange(200.0)[:, None].expand(200, 2))).sum(0)
    np.testing.assert_allclose(probs.numpy(), 1.0, atol=1e-10)


def test_bernoulli_probit_close_to_monte_carlo():
    rng = np.random.default_rng(4)
    mean = torch.from_numpy(rng.normal(scale=2.0, size=(40, 1)))
    cov = torch.from_numpy(rng.uniform(0.1, 6.0, size=(40, 1, 1)))
    probit = Bernoulli().predictive(mean, cov).probs
    mc, _, _ = _mc_predictive_moments(Bernoulli(), mean, cov)
    assert float((probit - mc).abs().max()) < 0.02  # MacKay's error is below 0.02 for these variances


def test_multiclass_probit_for_two_classes_is_a_probit_on_the_logit_difference():
    rng = np.random.default_rng(5)
    mean = torch.from_numpy(rng.normal(size=(10, 2)))
    A = rng.normal(size=(10, 2, 2))
    cov = torch.from_numpy(A @ np.swapaxes(A, 1, 2))
    d_var = cov[:, 0, 0] + cov[:, 1, 1] - 2 * cov[:, 0, 1]
    for scale in (np.pi / 8, 3 / np.pi**2):
        p = multiclass_probit(mean, cov, scale=scale)
        p1 = torch.sigmoid((mean[:, 1] - mean[:, 0]) / torch.sqrt(1 + scale * d_var))
        np.testing.assert_allclose(p[:, 1].numpy(), p1.numpy(), rtol=1e-10)
    # MacKay's constant is the Bernoulli family's predictive
    p_mackay = multiclass_probit(mean, cov, scale=np.pi / 8)[:, 1]
    p_bern = Bernoulli().predictive((mean[:, 1] - mean[:, 0])[:, None], d_var[:, None, None]).probs
    np.testing.assert_allclose(p_mackay.numpy(), p_bern.numpy(), rtol=1e-10)


def test_multiclass_probit_is_invariant_to_a_shared_logit_shift():
    rng = np.random.default_rng(6)
    mean = torch.from_numpy(rng.normal(size=(5, 4)))
    A = rng.normal(size=(5, 4, 4))
    cov = torch.from_numpy(A @ np.swapaxes(A, 1, 2))
    ones = torch.ones(4, dtype=torch.float64)
    shifted = cov + 50.0 * ones[:, None] * ones[None, :]  # a huge variance along (1, ..., 1)
    np.testing.assert_allclose(multiclass_probit(mean + 3.0, shifted).numpy(), multiclass_probit(mean, cov).numpy(),
                               rtol=1e-9)


# ---- the Predictive object -------------------------------------------------------------------------------


def test_predictive_student_t_interval_and_moments():
    d = torch.distributions.StudentT(torch.full((3,), 7.0, dtype=torch.float64),
                                     torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64),
                                     torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64))
    pred = Predictive(d)
    lo, hi = pred.interval(0.8)
    np.testing.assert_allclose(lo, scipy.stats.t.ppf(0.1, 7.0, [0.0, 1.0, -2.0], [1.0, 0.5, 2.0]))
    np.testing.assert_allclose(hi, scipy.stats.t.ppf(0.9, 7.0, [0.0, 1.0, -2.0], [1.0, 0.5, 2.0]))
    np.testing.assert_allclose(pred.variance, np.array([1.0, 0.25, 4.0]) * 7 / 5)
    s = pred.sample(20_000, generator=0)
    assert s.shape == (20_000, 3)
    np.testing.assert_allclose(s.mean(0), [0.0, 1.0, -2.0], atol=0.06)
    np.testing.assert_array_equal(s, pred.sample(20_000, generator=0))
    with pytest.raises(ValueError, match="prob"):
        pred.interval(1.5)


def test_predictive_categorical_with_labels():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    pred = Predictive(torch.distributions.Categorical(probs=probs), classes=np.array(["a", "b", "c"]))
    np.testing.assert_allclose(pred.mean, probs.numpy())
    np.testing.assert_allclose(pred.log_prob(np.array(["a", "c"])), np.log([0.7, 0.8]))
    lo, hi = pred.interval(0.5)
    assert list(lo) == ["a", "c"] and list(hi) == ["b", "c"]
    assert set(np.unique(pred.sample(50, generator=1))) <= {"a", "b", "c"}
    with pytest.raises(ValueError, match="not seen"):
        pred.log_prob(np.array(["a", "z"]))


def test_predictive_count_interval_covers():
    pred = Predictive(Poisson().predictive(torch.tensor([[1.0]], dtype=torch.float64),
                                           torch.tensor([[[0.3]]], dtype=torch.float64)))
    lo, hi = pred.interval(0.9)
    draws = pred.sample(50_000, generator=2)[:, 0]
    inside = np.mean((draws >= lo[0]) & (draws <= hi[0]))
    assert inside >= 0.9 and np.mean(draws < lo[0]) <= 0.05 and np.mean(draws > hi[0]) <= 0.05


def test_bernoulli_log_prob_is_exact_at_extreme_logits_and_soft_targets():
    """The Bernoulli log-density (written out, fast on a loaded machine) against NumPy's logaddexp form,
    y log sigma(f) + (1 - y) log sigma(-f), for logits up to +-700 (and every 20 < |f| < 40, where softplus's
    threshold and BCE's cancellation lose the tiny values), hard and fractional targets, and broadcast draws;
    torch's binary_cross_entropy_with_logits agrees to its rounding."""
    import torch.nn.functional as F

    f = torch.cat([torch.linspace(-700, 700, 41), torch.linspace(-40, 40, 81),
                   torch.randn(59, generator=torch.Generator().manual_seed(0))]).double()[:, None]
    n = f.shape[0]
    for y in (torch.ones(n), torch.zeros(n), torch.rand(n, generator=torch.Generator().manual_seed(1))):
        y = y.double()
        fn, yn = f[:, 0].numpy(), y.numpy()
        exact = -(yn * np.logaddexp(0.0, -fn) + (1.0 - yn) * np.logaddexp(0.0, fn))
        ours = Bernoulli().log_prob(f, y).numpy()
        np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=1e-300 if y.max() == y.min() else 1e-12)
        torch_bce = -F.binary_cross_entropy_with_logits(f[:, 0], y, reduction="none").numpy()
        np.testing.assert_allclose(ours, torch_bce, rtol=1e-12, atol=1e-12)
    draws = f[None].expand(3, n, 1)
    assert Bernoulli().log_prob(draws, torch.ones(n, dtype=torch.float64)).shape == (3, n)


def test_bernoulli_distributions_log_prob_equals_torchs():
    """The Bernoulli likelihood's distribution and probit predictive are torch Bernoullis whose log_prob (written
    out) equals torch's own, from logits and from probabilities (to torch's rounding)."""

    g = torch.Generator().manual_seed(2)
    f = (30 * torch.randn(200, 1, generator=g)).double()
    y = (torch.rand(200, generator=g) > 0.5).double()
    dist = Bernoulli().dist(f)
    assert isinstance(dist, torch.distributions.Bernoulli)
    torch.testing.assert_close(dist.log_prob(y), torch.distributions.Bernoulli(logits=f[:, 0]).log_prob(y),
                               rtol=1e-12, atol=1e-12)
    pred = Bernoulli().predictive(f[:, :1] / 10, torch.ones(200, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(pred.log_prob(y), torch.distributions.Bernoulli(probs=pred.probs).log_prob(y),
                               rtol=1e-12, atol=1e-12)
