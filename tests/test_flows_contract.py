"""One contract for every transform and every whole flow of the package (zuko/Pyro-style), in float64.

Each case is checked for: exact inverse, log|det J| against ``slogdet`` of the autograd Jacobian (after
moving parameters away from their identity initialisation), gradients reaching every parameter, state_dict
save/load into a freshly built instance, finite samples of the right shape, and a working repr. The cases
include flows a user builds from Pyro's and zuko's transforms (``as_flow``), read as their libraries read them.
Last, what an inverse guarantees (dequantised pixels within half a level of [0, 1], the round trip on the training
data) and the ``InverseAccuracyWarning`` where it cannot.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro.distributions.transforms as T
import pytest
import torch
from pyro.distributions.transforms import GeneralizedChannelPermute
from torch import nn

from bayes_diglm.flows import InverseAccuracyWarning
from bayes_diglm.flows.base import ActNorm, Flow, SequentialFlow, call_and_log_det, clear_transform_cache
from bayes_diglm.flows.coupling import BoundedAffineCoupling
from bayes_diglm.flows.glow import InvertibleConv1x1, Split, glow
from bayes_diglm.flows.image import Dequantize, Squeeze
from bayes_diglm.flows.linear import ActNormLinear, InvertibleLinear
from bayes_diglm.flows.realnvp import Reverse, realnvp
from bayes_diglm.flows.spline import spline
from bayes_diglm.flows.user import as_flow
from bayes_diglm.models import DIGLM, make_head
from bayes_diglm.training import train_module

# Dequantize's log-det counts v -> y only; x -> v scales every coordinate by 255/256 (eval mode).
_DEQUANT_SCALE = math.log(255 / 256)


@dataclass
class Case:
    """How to build one object and feed it: ``build`` constructs it fresh (float64, unperturbed)."""

    build: Callable[[], object]
    shape: tuple[int, ...]
    unit_inputs: bool = False  # inputs in [0, 1] (pixels) instead of standard normal
    log_det_offset_per_dim: float = 0.0  # Jacobian terms the object leaves out on purpose


def _first(flow, cls):
    return next(t for t in flow.transforms if isinstance(t, cls))


def _glow_coupling():
    flow = glow((1, 8, 8), levels=1, steps=1, hidden_channels=8)
    return next(t for t in flow.levels[0] if isinstance(t, BoundedAffineCoupling))


def _zuko_nsf():
    zuko = pytest.importorskip("zuko")
    return as_flow(zuko.flows.NSF(3, transforms=2, hidden_features=(8,)), (3,))


def _pyro_compose():
    return T.ComposeTransformModule([T.spline_coupling(4, hidden_dims=[8], count_bins=4),
                                     T.affine_coupling(4, hidden_dims=[8])])


CASES = {
    "actnorm_tabular": Case(lambda: ActNorm(3, event_dim=1), (3,)),
    "actnorm_image": Case(lambda: ActNorm(2, event_dim=3), (2, 4, 4)),
    "invertible_linear": Case(lambda: InvertibleLinear(3), (3,)),
    "actnorm_linear_tabular": Case(lambda: ActNormLinear(3, event_dim=1), (3,)),
    "actnorm_linear_image": Case(lambda: ActNormLinear(3, event_dim=3), (3, 4, 4)),
    "reverse": Case(Reverse, (3,)),
    "coupling_tabular": Case(lambda: _first(realnvp(4, num_layers=1, hidden_dims=(8,)), BoundedAffineCoupling),
                             (4,)),
    "coupling_image": Case(_glow_coupling, (4, 4, 4)),
    "generalized_channel_permute": Case(lambda: GeneralizedChannelPermute(channels=3), (3, 4, 4)),
    "invertible_conv1x1": Case(lambda: InvertibleConv1x1(channels=3), (3, 4, 4)),
    "squeeze": Case(Squeeze, (2, 4, 4)),
    "dequantize": Case(lambda: Dequantize(alpha=0.05), (1, 4, 4), True, _DEQUANT_SCALE),
    "split": Case(lambda: Split(2), (3, 2, 2)),
    "realnvp_lu": Case(lambda: realnvp(4, num_layers=2, hidden_dims=(8,)), (4,)),
    "spline_quadratic": Case(lambda: spline(4, num_layers=2, hidden_dims=(8,)), (4,)),
    "spline_linear": Case(lambda: spline(3, num_layers=2, hidden_dims=(8,), count_bins=4, order="linear"), (3,)),
    "spline_coupling": Case(lambda: spline(4, num_layers=2, hidden_dims=(8,), structure="coupling"), (4,)),
    "spline_coupling_linear": Case(lambda: spline(3, num_layers=2, hidden_dims=(8,), count_bins=4, order="linear",
                                                  structure="coupling"), (3,)),
    "realnvp_permute": Case(lambda: realnvp(4, num_layers=2, hidden_dims=(8,), mixing="permute"), (4,)),
    "glow_gray": Case(lambda: glow((1, 8, 8), levels=2, steps=2, hidden_channels=8), (1, 8, 8), True,
                      _DEQUANT_SCALE),
    "glow_rgb": Case(lambda: glow((3, 4, 4), levels=2, steps=1, hidden_channels=4), (3, 4, 4), True,
                     _DEQUANT_SCALE),
    # a user's flows (flows/user.py): Pyro transforms read base to data, zuko's data to latent
    "user_pyro_spline_coupling": Case(lambda: as_flow([T.spline_coupling(4, hidden_dims=[8], count_bins=4)], (4,)),
                                      (4,)),
    "user_pyro_affine_coupling_permute": Case(
        lambda: as_flow([T.affine_coupling(4, hidden_dims=[8]), T.Permute(torch.randperm(4)),
                         T.affine_coupling(4, hidden_dims=[8])], (4,)), (4,)),
    "user_pyro_affine_autoregressive": Case(lambda: as_flow([T.affine_autoregressive(3, hidden_dims=[8])], (3,)),
                                            (3,)),
    "user_pyro_affine_autoregressive_inv": Case(
        lambda: as_flow([T.affine_autoregressive(3, hidden_dims=[8]).inv], (3,)), (3,)),
    "user_pyro_compose": Case(lambda: as_flow(_pyro_compose(), (4,)), (4,)),
    "user_zuko_nsf": Case(_zuko_nsf, (3,)),
    # a ComposeTransformModule inside our own SequentialFlow (data to latent): inverted through .inv
    "sequential_of_compose": Case(lambda: SequentialFlow([_pyro_compose()], event_shape=(4,)), (4,)),
}

PARAMS = list(CASES)


def _inputs(case: Case, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if case.unit_inputs:
        return torch.rand(n, *case.shape, generator=g, dtype=torch.float64)
    return torch.randn(n, *case.shape, generator=g, dtype=torch.float64)


def _forward(obj, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any case as ``x -> (y flattened, log|det J| per point)``."""
    if isinstance(obj, Flow):
        return obj(x)
    if isinstance(obj, Split):
        kept, out = obj(x)
        return torch.cat([kept.flatten(1), out.flatten(1)], dim=1), x.new_zeros(x.shape[0])
    y = obj(x)
    log_det = obj.log_abs_det_jacobian(x, y)
    clear_transform_cache(obj)
    return y.flatten(1), log_det.reshape(x.shape[0], -1).sum(-1)


def _inverse(obj, y_flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if isinstance(obj, Flow):
        return obj.inverse(y_flat)
    if isinstance(obj, Split):
        n_kept = obj.kept * math.prod(shape[1:])
        kept = y_flat[:, :n_kept].reshape(-1, obj.kept, *shape[1:])
        return obj.inverse(kept, y_flat[:, n_kept:].reshape(-1, shape[0] - obj.kept, *shape[1:]))
    out_shape = obj.forward_shape(torch.Size(shape)) if isinstance(obj, Squeeze) else shape
    x = obj._inverse(y_flat.reshape(-1, *out_shape))
    clear_transform_cache(obj)
    return x


def _prepared(name: str, seed: int = 0):
    """Build in float64, run data-dependent initialisation, then move every parameter off its start."""
    case = CASES[name]
    torch.manual_seed(seed)
    obj = case.build()
    if isinstance(obj, nn.Module):
        obj = obj.double().train()
        with torch.no_grad():
            _forward(obj, _inputs(case, 16, seed=seed + 100))  # ActNorm data-dependent init
            g = torch.Generator().manual_seed(seed + 200)
            for p in obj.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        obj.eval()
    return case, obj


@pytest.mark.parametrize("name", PARAMS)
def test_inverse_undoes_forward(name):
    case, obj = _prepared(name)
    x = _inputs(case, 5)
    y, _ = _forward(obj, x)
    torch.testing.assert_close(_inverse(obj, y, case.shape), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", PARAMS)
def test_log_det_matches_autograd_jacobian(name):
    case, obj = _prepared(name)
    x = _inputs(case, 1).flatten()

    def f(v):
        return _forward(obj, v.reshape(1, *case.shape))[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x)
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0
    expected = logabsdet - x.numel() * case.log_det_offset_per_dim
    log_det = _forward(obj, x.reshape(1, *case.shape))[1]
    assert log_det.shape == (1,)
    torch.testing.assert_close(log_det[0], expected, atol=1e-6, rtol=1e-8)


def _log_prob(obj, x):
    if isinstance(obj, Flow):
        return obj.log_prob(x)
    y, log_det = _forward(obj, x)
    return -0.5 * y.pow(2).sum(-1) + log_det


@pytest.mark.parametrize("name", PARAMS)
def test_every_parameter_gets_a_gradient(name):
    case, obj = _prepared(name)
    params = dict(obj.named_parameters()) if isinstance(obj, nn.Module) else {}
    if not params:
        pytest.skip("no parameters")
    _log_prob(obj, _inputs(case, 8)).sum().backward()
    for pname, p in params.items():
        assert p.grad is not None, f"{pname} got no gradient"
        assert float(p.grad.abs().sum()) > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", PARAMS)
def test_state_dict_round_trip(name, tmp_path):
    case, obj = _prepared(name)
    if not isinstance(obj, nn.Module):
        pytest.skip("a plain Pyro Transform holds no state")
    x = _inputs(case, 4)
    path = tmp_path / "state.pt"
    torch.save(obj.state_dict(), path)
    torch.manual_seed(12345)
    fresh = case.build().double().eval()
    if any(True for _ in obj.parameters()):
        assert not torch.allclose(_forward(fresh, x)[0], _forward(obj, x)[0]), "fresh build already agrees"
    fresh.load_state_dict(torch.load(path, weights_only=True))
    for got, want in zip(_forward(fresh, x), _forward(obj, x), strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", PARAMS)
def test_samples_are_finite_with_the_right_shape(name):
    case, obj = _prepared(name)
    if isinstance(obj, Flow):
        draws = obj.sample(6, generator=torch.Generator().manual_seed(0))
    else:
        y_flat = torch.randn(6, math.prod(case.shape), dtype=torch.float64)
        with torch.no_grad():
            draws = _inverse(obj, y_flat, case.shape)
    assert draws.shape == (6, *case.shape)
    assert bool(torch.isfinite(draws).all())


@pytest.mark.parametrize("name", PARAMS)
def test_repr(name):
    _, obj = _prepared(name)
    text = repr(obj)
    assert type(obj).__name__ in text


@pytest.mark.parametrize("name", [n for n in PARAMS if hasattr(CASES[n].build(), "call_and_log_det")])
def test_one_pass_matches_pyro_call_and_log_det(name):
    """``call_and_log_det`` (what flows use) agrees with Pyro's ``__call__`` + ``log_abs_det_jacobian``."""
    case, obj = _prepared(name)
    x = _inputs(case, 5)
    y, log_det = call_and_log_det(obj, x)
    y_pyro = obj(x)
    log_det_pyro = obj.log_abs_det_jacobian(x, y_pyro)
    clear_transform_cache(obj)
    torch.testing.assert_close(y, y_pyro, atol=1e-12, rtol=0)
    torch.testing.assert_close(log_det, log_det_pyro.reshape(5, -1).sum(-1), atol=1e-10, rtol=0)
    fresh = obj.log_abs_det_jacobian(x, y.clone())  # no cached pair: recomputed from x
    torch.testing.assert_close(fresh.reshape(5, -1).sum(-1), log_det, atol=1e-10, rtol=0)


@pytest.mark.parametrize("event_dim, shape", [(1, (3,)), (3, (3, 4, 4))])
def test_actnorm_linear_is_actnorm_then_lu_map(event_dim, shape):
    """The fused map equals ActNorm followed by W = P L U with the same parameters (brute force)."""
    torch.manual_seed(0)
    fused = ActNormLinear(3, event_dim=event_dim).double()
    x = torch.randn(6, *shape, dtype=torch.float64)
    with torch.no_grad():
        fused.log_scale.normal_()
        fused.bias.normal_()
        fused.LU.add_(0.1 * torch.randn(3, 3, dtype=torch.float64))
    fused.initialized.fill_(True)
    actnorm = ActNorm(3, event_dim=event_dim).double()
    actnorm.load_state_dict({"log_scale": fused.log_scale, "bias": fused.bias, "initialized": fused.initialized})
    lower = fused.LU.tril(-1) + torch.eye(3, dtype=torch.float64)
    weight = fused.permutation @ lower @ fused.LU.triu()
    u = actnorm(x)
    want = torch.einsum("ij,bj...->bi...", weight, u)
    y, log_det = call_and_log_det(fused, x)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=0)
    positions = math.prod(shape[1:])
    want_log_det = (fused.log_scale.sum() + torch.linalg.slogdet(weight)[1]) * positions
    torch.testing.assert_close(log_det, want_log_det.detach().expand(6), atol=1e-12, rtol=0)


def test_actnorm_linear_without_gradients_follows_every_parameter_change():
    """Without gradients ActNormLinear reuses its formed map until a parameter changes: its output always equals
    that of a fresh layer loaded with the same parameters, after an optimiser step, after an in-place change of
    each parameter, and in another dtype; with gradients the map is formed afresh and gradients flow."""
    torch.manual_seed(0)
    layer = ActNormLinear(3).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    layer(x)  # initialise
    layer.eval()

    def assert_as_fresh(dtype=torch.float64):
        fresh = ActNormLinear(3).to(dtype)
        fresh.load_state_dict(layer.state_dict())
        fresh.eval()
        with torch.no_grad():
            for _ in range(2):  # the second call takes the reused map
                got, want = call_and_log_det(layer, x.to(dtype)), call_and_log_det(fresh, x.to(dtype))
                torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
                torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)

    assert_as_fresh()
    optim = torch.optim.SGD(layer.parameters(), lr=0.1)
    call_and_log_det(layer, x)[0].square().sum().backward()
    optim.step()
    assert_as_fresh()
    for name in ("LU", "log_scale", "bias"):
        with torch.no_grad():
            getattr(layer, name).add_(0.05)
        assert_as_fresh()
    layer.float()
    assert_as_fresh(torch.float32)
    layer.double()
    y_grad, _ = call_and_log_det(layer, x)  # with gradients: formed afresh, gradients flow
    layer.zero_grad()
    y_grad.sum().backward()
    assert layer.LU.grad is not None and layer.LU.grad.abs().sum() > 0


@pytest.mark.parametrize("mixing, actnorm", [("lu", True), ("permute", False), ("permute", True), ("lu", False)])
def test_hand_written_backward_matches_autograd(mixing, actnorm):
    """The tabular layers' kernels (one autograd node per chain, ``flows/fused.py``) give autograd's values and
    gradients, for the whole flow, its log-density and each layer alone; second derivatives through them are
    refused by name."""
    from bayes_diglm.flows import fused

    torch.manual_seed(0)
    flow = realnvp(5, num_layers=3, hidden_dims=(7, 6), mixing=mixing, actnorm=actnorm).double()
    x = torch.randn(9, 5, dtype=torch.float64)
    flow(x)  # ActNorm's initialisation
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))  # away from the identity start (zero last layers)
    weights = torch.linspace(-1.0, 2.0, 9, dtype=torch.float64)

    def value_and_grads(module, step):
        xr = x.clone().requires_grad_(True)
        z, log_det = step(xr)
        loss = (z**3).sum() + (weights * log_det).sum()  # every output entry gets its own gradient
        return (z, log_det, *torch.autograd.grad(loss, [xr, *module.parameters()]))

    def compare(module, step):
        got = value_and_grads(module, step)
        with fused.autograd_only():
            want = value_and_grads(module, step)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=1e-11, rtol=1e-11)

    compare(flow, flow)
    compare(flow, lambda v: (v, flow.log_prob(v)))
    for t in flow.transforms:
        compare(t, lambda v, t=t: call_and_log_det(t, v))
    for f in (flow.log_prob, lambda v: flow(v)[1]):
        with pytest.raises(RuntimeError, match="second derivatives"):
            torch.autograd.grad(f(x.clone().requires_grad_(True)).sum(), flow.parameters(), create_graph=True)
    with fused.autograd_only():  # where they are needed
        torch.autograd.grad(flow.log_prob(x.clone().requires_grad_(True)).sum(), flow.parameters(),
                            create_graph=True)


def test_hooks_on_a_conditioner_layer_still_run():
    """A forward hook on a coupling's network layer sends that flow through plain autograd (the hand-written
    kernels would bypass it)."""
    flow = realnvp(4, num_layers=2, hidden_dims=(5,))
    calls = []
    flow.transforms[1].nn.layers[0].register_forward_hook(lambda *args: calls.append(1))
    flow.log_prob(torch.randn(3, 4)).sum().backward()
    flow(torch.randn(3, 4))
    assert len(calls) == 2


@pytest.mark.parametrize("order", ["quadratic", "linear"])
def test_autoregressive_spline_equals_pyros_spline(order):
    """The spline flow's bin softmax over a leading axis (``flows/spline.py``, for speed) gives Pyro's own
    ``ConditionalSpline``'s values and gradients, with the same ``state_dict`` keys."""
    from pyro.distributions.transforms.spline import ConditionalSpline

    torch.manual_seed(0)
    flow = spline(5, num_layers=2, hidden_dims=(9,), count_bins=6, order=order).double()
    x = torch.randn(17, 5, dtype=torch.float64)
    flow(x)  # ActNorm's initialisation
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pyros = copy.deepcopy(flow)
    for t in pyros.transforms:
        if isinstance(t, T.SplineAutoregressive):
            t.spline = ConditionalSpline(t.arn, 5, t.spline.count_bins, t.spline.bound, t.spline.order)
    weights = torch.linspace(-1.0, 2.0, 17, dtype=torch.float64)

    def value_and_grads(f):
        xr = x.clone().requires_grad_(True)
        z, log_det = f(xr)
        loss = (z**3).sum() + (weights * log_det).sum()
        return (z, log_det, *torch.autograd.grad(loss, [xr, *f.parameters()]))

    for got, want in zip(value_and_grads(flow), value_and_grads(pyros), strict=True):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-11)
    assert list(flow.state_dict()) == list(pyros.state_dict())


def test_compile_flow_matches_eager_and_falls_back_when_the_compiler_fails():
    from bayes_diglm.flows import compile_flow, is_compiled

    torch.manual_seed(0)
    x = torch.randn(16, 4)
    eager = realnvp(4, num_layers=2, hidden_dims=(8,))
    compiled = compile_flow(copy.deepcopy(eager), backend="eager")  # dynamo tracing, no inductor build
    want = eager.log_prob(x)  # both initialise ActNorm from the same batch, eagerly
    torch.testing.assert_close(compiled.log_prob(x), want)
    torch.testing.assert_close(compiled.log_prob(x), eager.log_prob(x))
    assert is_compiled(compiled) and set(compiled.state_dict()) == set(eager.state_dict())

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    flaky = compile_flow(copy.deepcopy(eager), backend=broken_backend)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        torch.testing.assert_close(flaky.log_prob(x), eager.log_prob(x))
    assert not is_compiled(flaky)
    with pytest.raises(ValueError, match="shape"):  # a bad input still raises as in eager mode
        compile_flow(copy.deepcopy(eager), backend="eager").log_prob(torch.randn(3, 5))
    with pytest.raises(TypeError, match="Flow"):
        compile_flow(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("bad, match", [({"structure": "masked"}, "structure"), ({"order": "cubic"}, "order"),
                                        ({"count_bins": 1}, "count_bins"), ({"bound": 0.0}, "bound"),
                                        ({"hidden_dims": ()}, "hidden_dims")])
def test_spline_builder_names_the_bad_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        spline(4, **bad)


def test_flow_sample_is_bounded_before_it_allocates():
    from bayes_diglm.flows import build_flow

    flow = build_flow({"kind": "realnvp", "dim": 3, "num_layers": 2})
    with pytest.raises(ValueError, match="would allocate"):
        flow.sample(10**12)
    assert flow.sample(4).shape == (4, 3)


def test_autoregressive_spline_orders_are_per_step_permutations_restored_by_the_state_dict():
    """The docstring's claim: each step's autoregressive order is a permutation drawn at build time, kept as a
    buffer, so a flow built under another seed and given the state_dict computes the same log p(x)."""
    torch.manual_seed(0)
    flow = spline(5, num_layers=3, hidden_dims=(16,))
    orders = [m.permutation.tolist() for m in flow.modules() if type(m).__name__ == "AutoRegressiveNN"]
    assert len(orders) == 3 and all(sorted(o) == list(range(5)) for o in orders)
    with torch.no_grad():  # move the splines off the identity start, so that the order matters
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    torch.manual_seed(1)
    other = spline(5, num_layers=3, hidden_dims=(16,))
    assert [m.permutation.tolist() for m in other.modules() if type(m).__name__ == "AutoRegressiveNN"] != orders
    other.load_state_dict(flow.state_dict())
    x = torch.randn(7, 5)
    torch.testing.assert_close(other.log_prob(x), flow.log_prob(x))


# ---- what an inverse guarantees, and the warning where it cannot -----------------------------------------


def test_dequantize_inverse_stays_within_half_a_level_of_the_unit_interval():
    dq = Dequantize(0.05).eval()
    y = torch.tensor([-30.0, -5.0, -3.0, 0.0, 3.0, 5.0, 30.0])
    x = dq._inverse(y)
    assert float(x.min()) >= -0.5 / 255 - 1e-7 and float(x.max()) <= 1 + 0.5 / 255 + 1e-7
    assert float(dq._inverse(torch.tensor([-30.0]))) == pytest.approx(-0.5 / 255)
    pixels = torch.linspace(0, 1, 256)
    assert torch.allclose(dq._inverse(dq(pixels.reshape(1, 1, 16, 16))).reshape(-1), pixels, atol=1e-6)


def test_sampled_pixels_never_leave_the_unit_interval_by_more_than_half_a_level():
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
