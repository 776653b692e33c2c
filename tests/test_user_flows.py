"""A user's own flow (Pyro transforms, a ComposeTransformModule, a zuko flow, a factory) wherever a built-in goes.

Each flow is read as its own library reads it (``log p(x)`` equals the user's Pyro ``TransformedDistribution`` or
zuko ``NormalizingFlow``); through the estimators it fits, predicts, scores ``log p(x)``, samples, saves and
loads (identical predictions; the architecture rebuilt from a registered factory, never from the file's code),
exports to ArviZ and feeds ``ood score``; a transform without an inverse or a log-det is refused at fit.
"""

from __future__ import annotations

import csv

import numpy as np
import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch
from pyro.distributions.torch_transform import TransformModule
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch.distributions import constraints

from bayes_diglm.arviz import to_inference_data
from bayes_diglm.cli import main
from bayes_diglm.flows import (
    SequentialFlow,
    as_flow,
    clear_transform_cache,
    flow_factory,
    register_flow,
    registered_flows,
    unregister_flow,
)
from bayes_diglm.flows.glow import glow
from bayes_diglm.models import DIGLM, DIGLMClassifier, DIGLMRegressor
from bayes_diglm.models.heads import make_head
from bayes_diglm.training import CheckpointError, load_checkpoint, save_checkpoint

zuko = pytest.importorskip("zuko")


# -- the flows a user brings, as factories ``factory(event_shape)`` (module level: importable by name) ------------
def spline_coupling_flow(event_shape):
    return [T.spline_coupling(event_shape[0], hidden_dims=[8], count_bins=4)]


def affine_coupling_permute_flow(event_shape):
    d = event_shape[0]
    return [T.affine_coupling(d, hidden_dims=[8]), T.Permute(torch.randperm(d)), T.affine_coupling(d, hidden_dims=[8])]


def affine_autoregressive_flow(event_shape):
    return [T.affine_autoregressive(event_shape[0], hidden_dims=[8])]


def compose_flow(event_shape):
    d = event_shape[0]
    return T.ComposeTransformModule([T.spline_coupling(d, hidden_dims=[8], count_bins=4),
                                     T.affine_coupling(d, hidden_dims=[8])])


def zuko_nsf_flow(event_shape):
    return zuko.flows.NSF(event_shape[0], transforms=2, hidden_features=(8,))


FACTORIES = {f.__name__: f for f in (spline_coupling_flow, affine_coupling_permute_flow, affine_autoregressive_flow,
                                     compose_flow, zuko_nsf_flow)}
PYRO = [name for name in FACTORIES if name != "zuko_nsf_flow"]


def _data(n=64, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ np.arange(1.0, d + 1) + 0.1 * rng.normal(size=n)


def _perturbed(obj):
    with torch.no_grad():
        for p in (obj.parameters() if isinstance(obj, torch.nn.Module) else
                  (p for t in obj if isinstance(t, torch.nn.Module) for p in t.parameters())):
            p.add_(0.2 * torch.randn_like(p))
    return obj


# -- direction: each library's object read as that library reads it ------------------------------------------------
@pytest.mark.parametrize("name", PYRO)
def test_pyro_transforms_give_the_log_density_of_their_transformed_distribution(name):
    transforms = _perturbed(FACTORIES[name]((3,)))
    x = torch.randn(20, 3)
    pyro_model = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), transforms)
    want = pyro_model.log_prob(x).detach()
    clear_transform_cache(transforms)
    torch.testing.assert_close(as_flow(transforms, (3,)).log_prob(x).detach(), want, atol=1e-4, rtol=1e-5)


def test_a_transform_given_as_its_inverse_is_read_the_same_way():
    maf = _perturbed(T.affine_autoregressive(3, hidden_dims=[8]))
    x = torch.randn(20, 3)
    want = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [maf.inv]).log_prob(x)
    clear_transform_cache(maf)
    torch.testing.assert_close(as_flow([maf.inv], (3,)).log_prob(x), want, atol=1e-5, rtol=1e-5)


def test_a_zuko_flow_gives_its_own_log_density():
    nsf = _perturbed(zuko_nsf_flow((3,)))
    x = torch.randn(20, 3)
    torch.testing.assert_close(as_flow(nsf, (3,)).log_prob(x), nsf().log_prob(x), atol=1e-5, rtol=1e-5)


# -- the estimators, with each user flow given as an object -----------------------------------------------------
@pytest.mark.parametrize("name", FACTORIES)
def test_user_flow_fits_predicts_scores_samples_saves_loads_exports_and_scores_ood(name, tmp_path):
    X, y = _data()
    torch.manual_seed(1)
    obj = FACTORIES[name]((3,))
    before = [p.detach().clone() for p in as_flow(obj, (3,)).parameters()]
    reg = DIGLMRegressor(flow=obj, head="gaussian", posterior="conjugate", epochs=1, batch_size=32,
                         quiet=True).fit(X, y)
    after = list(as_flow(obj, (3,)).parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), "fit trained the user's object"
    assert not {id(p) for p in reg.model_.flow.parameters()} & {id(p) for p in after}
    mean = reg.predict_dist(X[:5]).mean
    log_px = reg.score_samples(X[:5])
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(log_px))
    xs, ys = reg.sample_joint(4, generator=0)
    assert xs.shape == (4, 3) and np.all(np.isfinite(xs)) and ys.shape == (4,)

    path = reg.save(tmp_path / "reg.pt", flow_factory=FACTORIES[name])
    loaded = DIGLMRegressor.load(path)
    np.testing.assert_array_equal(loaded.predict_dist(X).mean, reg.predict_dist(X).mean)
    np.testing.assert_array_equal(loaded.score_samples(X), reg.score_samples(X))
    assert loaded.flow == f"{__name__}:{name}"

    idata = to_inference_data(loaded, X=X[:10], y=y[:10], draws=20, chains=2)
    assert idata.posterior["beta"].shape[:2] == (2, 20)
    assert idata.log_likelihood["y"].shape == (2, 20, 10)

    (tmp_path / "rows.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, row)) for row in X[:4]))
    out = tmp_path / "scores.csv"
    assert main(["ood", "score", "--model", str(path), "--input", str(tmp_path / "rows.csv"), "--out", str(out)]) == 0
    with open(out) as f:
        written = [float(row["-log p(x)"]) for row in csv.DictReader(f)]
    np.testing.assert_allclose(written, -loaded.score_samples(X[:4].astype(np.float32)), rtol=1e-5)


def small_glow(event_shape):
    return glow(event_shape, levels=1, steps=1, hidden_channels=4)


def test_a_bayes_diglm_flow_object_on_images_fits_and_saves_with_a_factory(tmp_path):
    X = (np.random.default_rng(0).integers(0, 256, (32, 1, 8, 8)) / 255.0).astype(np.float32)
    labels = np.arange(32) % 2
    clf = DIGLMClassifier(flow=small_glow((1, 8, 8)), epochs=1, batch_size=16, quiet=True).fit(X, labels)
    loaded = DIGLMClassifier.load(clf.save(tmp_path / "glow.pt", flow_factory=small_glow))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), clf.score_samples(X))


def test_user_flow_in_a_classifier_through_laplace_save_and_load(tmp_path):
    X, _ = _data(n=80, d=2)
    labels = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = DIGLMClassifier(flow=zuko_nsf_flow((2,)), posterior="laplace", epochs=2, batch_size=40,
                          quiet=True).fit(X, labels)
    proba = clf.predict_proba(X)
    loaded = DIGLMClassifier.load(clf.save(tmp_path / "clf.pt", flow_factory=zuko_nsf_flow))
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    assert set(loaded.predict(X)) <= {"yes", "no"}


def test_a_factory_builds_a_fresh_flow_for_every_fit_clone_and_grid_search_candidate(tmp_path):
    X, y = _data()
    reg = DIGLMRegressor(flow=affine_coupling_permute_flow, head="gaussian", epochs=1, batch_size=32, quiet=True)
    first = reg.fit(X, y).model_.flow
    other = clone(reg).set_params(seed=1).fit(X, y).model_.flow
    assert not {id(p) for p in first.parameters()} & {id(p) for p in other.parameters()}
    assert not torch.equal(next(first.parameters()), next(other.parameters()))  # another seed, another start
    search = GridSearchCV(reg, {"px_weight": [0.0, 1.0]}, cv=2).fit(X, y)
    assert search.best_estimator_.flow is affine_coupling_permute_flow
    loaded = DIGLMRegressor.load(search.best_estimator_.save(tmp_path / "best.pt"))  # named at fit: no flow_factory
    np.testing.assert_array_equal(loaded.predict(X), search.best_estimator_.predict(X))


def test_clones_of_an_estimator_given_an_object_do_not_share_parameters():
    X, y = _data()
    obj = spline_coupling_flow((3,))
    reg = DIGLMRegressor(flow=obj, head="gaussian", epochs=1, batch_size=32, quiet=True)
    a, b = reg.fit(X, y), clone(reg).fit(X, y)
    assert not {id(p) for p in a.model_.flow.parameters()} & {id(p) for p in b.model_.flow.parameters()}
    np.testing.assert_array_equal(a.predict(X), b.predict(X))  # same start, same seed: same fit


def test_a_flow_trained_the_pyro_way_is_where_the_estimator_starts():
    X, y = _data()
    transforms = _perturbed(spline_coupling_flow((3,)))
    x = torch.tensor(X)
    pyro_model = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), transforms)
    pyro_model.log_prob(x.float()).sum().backward()  # leaves the last batch's graph in Pyro's caches
    reg = DIGLMRegressor(flow=transforms, head="gaussian", epochs=1, lr=1e-12, batch_size=64, quiet=True).fit(X, y)
    clear_transform_cache(transforms)
    want = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1),
                                        [t.double() for t in transforms]).log_prob(x).detach().numpy()
    np.testing.assert_allclose(reg.score_samples(X), want, rtol=1e-6, atol=1e-6)


def test_diglm_takes_user_flows_and_factories_for_tabular_heads():
    head = make_head("bernoulli", 2)
    for flow in ([T.spline_coupling(2)], zuko_nsf_flow((2,)), spline_coupling_flow):
        model = DIGLM(flow, make_head("bernoulli", 2), px_weight=1.0)
        assert isinstance(model.flow, SequentialFlow) and model.flow.dim == 2
        value, parts = model.objective(torch.randn(8, 2), torch.randint(0, 2, (8,)).float())
        assert torch.isfinite(value) and set(parts) == {"log_py", "log_px", "nats_per_dim"}
    assert head.dim == 2


# -- refusals ----------------------------------------------------------------------------------------------------
class _NoLogDet(TransformModule):
    bijective = True
    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(2))

    def _call(self, x):
        return x + self.shift

    def _inverse(self, y):
        return y - self.shift


@pytest.mark.parametrize("flow, match", [
    ([T.planar(2)], "Planar has no inverse"),
    ([T.spline_coupling(2), _NoLogDet()], "_NoLogDet has no log-det"),
])
def test_a_transform_without_an_inverse_or_a_log_det_is_refused_at_fit_by_name(flow, match):
    X, y = _data(d=2)
    with pytest.raises(ValueError, match=match):
        DIGLMRegressor(flow=flow, epochs=1, quiet=True).fit(X, y)


@pytest.mark.parametrize("flow, kwargs, error, match", [
    ([T.spline_coupling(2), zuko.flows.MAF(2).transform.transforms[0]], None, TypeError, "cannot be mixed"),
    (torch.nn.Linear(2, 2), None, TypeError, "must be a Pyro/torch Transform"),
    ([], None, ValueError, "empty list"),
    ("no-such-flow", None, ValueError, "registered factory name"),
    ([T.spline_coupling(2)], {"count_bins": 4}, ValueError, "flow_kwargs"),
    ([T.spline_coupling(3)], None, ValueError, "flow step 0"),  # built for 3 features, data have 2
])
def test_bad_flow_arguments_are_refused_before_training(flow, kwargs, error, match):
    X, y = _data(d=2)
    with pytest.raises(error, match=match):
        DIGLMRegressor(flow=flow, flow_kwargs=kwargs, epochs=1, quiet=True).fit(X, y)


def test_a_zuko_flow_with_another_base_is_refused():
    nsf = zuko_nsf_flow((2,))
    shifted = zuko.flows.Flow(nsf.transform, zuko.lazy.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.ones(2), torch.ones(2), buffer=True))
    with pytest.raises(ValueError, match="standard normal"):
        as_flow(shifted, (2,))


# -- save / load: the architecture from a registered factory, never from the file ---------------------------------
def test_saving_an_object_flow_needs_a_factory_that_builds_its_architecture(tmp_path):
    X, y = _data()
    reg = DIGLMRegressor(flow=compose_flow((3,)), head="gaussian", epochs=1, batch_size=32, quiet=True).fit(X, y)
    with pytest.raises(ValueError, match="flow_factory"):
        reg.save(tmp_path / "a.pt")
    with pytest.raises(ValueError, match="another architecture"):
        reg.save(tmp_path / "a.pt", flow_factory=spline_coupling_flow)
    assert not (tmp_path / "a.pt").exists()


def test_a_nameless_factory_is_saved_once_registered_under_a_name(tmp_path):
    X, y = _data()
    factory = lambda shape: spline_coupling_flow(shape)  # noqa: E731 - a nameless factory on purpose
    reg = DIGLMRegressor(flow=factory, head="gaussian", epochs=1, batch_size=32, quiet=True).fit(X, y)
    with pytest.raises(ValueError, match="register_flow"):
        reg.save(tmp_path / "a.pt")
    register_flow(factory, name="test-nameless-spline")
    try:
        loaded = DIGLMRegressor.load(reg.save(tmp_path / "a.pt"))
        assert loaded.flow == "test-nameless-spline"
        np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    finally:
        unregister_flow("test-nameless-spline")


def test_a_file_naming_an_unregistered_factory_is_refused_before_any_import(tmp_path, monkeypatch):
    X, y = _data()
    reg = DIGLMRegressor(flow=spline_coupling_flow, head="gaussian", epochs=1, batch_size=32, quiet=True).fit(X, y)
    path = reg.save(tmp_path / "reg.pt")
    name = f"{__name__}:spline_coupling_flow"
    assert name in registered_flows()
    # a fresh process has not registered it: the file is refused, and loads once the user registers it
    unregister_flow(name)
    try:
        with pytest.raises(CheckpointError, match="not registered"):
            DIGLMRegressor.load(path)
    finally:
        register_flow(spline_coupling_flow)
    np.testing.assert_array_equal(DIGLMRegressor.load(path).predict(X), reg.predict(X))
    # a file altered to name other code (checksum recomputed): that module is never imported
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_flow_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                                  "def build(shape):\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = load_checkpoint(path)
    ckpt["config"]["flow_config"]["factory"] = "evil_flow_module:build"
    save_checkpoint(ckpt, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="'evil_flow_module:build' is not registered"):
        DIGLMRegressor.load(tmp_path / "evil.pt")
    assert not marker.exists()


def registry_probe_flow(event_shape):
    return spline_coupling_flow(event_shape)


def test_the_registry_names_factories_and_refuses_what_it_cannot_name_or_find():
    with pytest.raises(ValueError, match="dunder"):
        register_flow("bayes_diglm.__main__:main")
    with pytest.raises(ValueError, match="package's own"):
        register_flow(registry_probe_flow, name="realnvp")
    with pytest.raises(ValueError, match="no importable"):
        register_flow(lambda shape: None)
    name = register_flow(f"{__name__}:registry_probe_flow")  # a path, imported when first used
    try:
        assert flow_factory(name) is registry_probe_flow
        assert register_flow(registry_probe_flow) == name  # the function behind the path: the same factory
        with pytest.raises(ValueError, match="taken"):
            register_flow(spline_coupling_flow, name=name)
    finally:
        unregister_flow(name)
    register_flow("no_such_module_for_flows:build")
    try:
        with pytest.raises(ValueError, match="cannot be found"):
            flow_factory("no_such_module_for_flows:build")
    finally:
        unregister_flow("no_such_module_for_flows:build")
    with pytest.raises(ValueError, match="not registered"):
        flow_factory("no_such_module_for_flows:build")
