"""Flow training steps side by side with the libraries users would pick: RealNVP vs zuko, Glow vs normflows.

Also: the RealNVP step's FLOP utilisation against bare GEMMs on the step's own matrix shapes, and Glow's
speed-up from one to two threads. Every row is a ratio of two medians measured alternately in this run.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bayes_diglm.flows import glow, realnvp, spline

__all__ = ["run"]

DIM, LAYERS, HIDDEN, BATCH = 8, 4, (64, 64), 512
BINS = 8  # the density rows' spline bins (benchmarks/bench_density.py)
GLOW_SHAPE, GLOW_LEVELS, GLOW_STEPS, GLOW_HIDDEN = (1, 28, 28), 2, 4, 64


def _ours_realnvp(mixing: str, actnorm: bool):
    flow = realnvp(DIM, num_layers=LAYERS, hidden_dims=HIDDEN, mixing=mixing, actnorm=actnorm)
    return flow, flow.log_prob


def _zuko_realnvp():
    import zuko

    flow = zuko.flows.RealNVP(DIM, transforms=LAYERS, hidden_features=HIDDEN)
    return flow, lambda x: flow().log_prob(x)


def _ours_glow():
    flow = glow(GLOW_SHAPE, levels=GLOW_LEVELS, steps=GLOW_STEPS, hidden_channels=GLOW_HIDDEN)
    return flow, flow.log_prob


def _normflows_glow():
    """normflows' Glow with our architecture: per level squeeze, GLOW_STEPS GlowBlocks, split half off.

    normflows' flows map latent to data, so level 0 is the coarsest; ``Logit(0.05)`` is our dequantisation
    logit and the base densities are fixed standard normals, as ours.
    """
    import normflows as nf

    c, h, w = GLOW_SHAPE
    levels = GLOW_LEVELS
    q0, merges, flows = [], [], []
    for i in range(levels):
        blocks = [nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), GLOW_HIDDEN, split_mode="channel", scale=True)
                  for _ in range(GLOW_STEPS)]
        flows.append(blocks + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
        q0.append(nf.distributions.DiagGaussian(latent, trainable=False))
    model = nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(alpha=0.05), class_cond=False)
    return model, lambda x: model.log_prob(x, None)


def _step_fn(flow, log_prob, fused: bool = False) -> Callable[[torch.Tensor], None]:
    optim = torch.optim.Adam(flow.parameters(), lr=1e-4, fused=fused or None)

    def step(x):
        loss = -log_prob(x).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    return step


def alternating_step_times(steps: dict[str, Callable], x: torch.Tensor, repeats: int,
                           threads: dict[str, int] | None = None, reduce=statistics.median) -> dict[str, float]:
    """Median seconds per training step for each entry; the entries take turns (a shared machine's load hits
    all alike). ``threads`` sets torch's thread count per entry (default 1).

    When every entry runs on one thread they are timed by this thread's CPU time (``time.thread_time``): on
    a shared machine the wall clock also counts the time other people's processes hold the core, which CPU
    time leaves out. When any entry uses more threads, all are timed by the wall clock
    (``time.perf_counter``, what a user waits), so the ratio compares like with like.
    """
    threads = threads or {}
    clock = time.thread_time if all(threads.get(k, 1) == 1 for k in steps) else time.perf_counter
    times = {k: [] for k in steps}
    for r in range(repeats + 2):
        for name, step in steps.items():
            torch.set_num_threads(threads.get(name, 1))
            t0 = clock()
            step(x)
            if r >= 2:  # two warm-up rounds (ActNorm initialisation, allocator)
                times[name].append(clock() - t0)
    return {k: reduce(v) for k, v in times.items()}


class _RecordMatmuls(TorchDispatchMode):
    """Record the shape and strides of every matrix product (mm, addmm, bmm) run under this mode."""

    _OPS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self._OPS:
            a, b = (args[1], args[2]) if func is torch.ops.aten.addmm.default else (args[0], args[1])
            self.calls.append((func is torch.ops.aten.bmm.default, tuple(a.shape), a.stride(), tuple(b.shape),
                               b.stride()))
        return func(*args, **(kwargs or {}))


def _replay_seconds(calls, repeats: int) -> tuple[float, float]:
    """(median seconds of the recorded matrix products replayed as bare GEMMs, their FLOPs)."""
    gen = torch.Generator().manual_seed(0)
    operands = [(bmm, _strided(a_shape, a_stride, gen), _strided(b_shape, b_stride, gen))
                for bmm, a_shape, a_stride, b_shape, b_stride in calls]
    flops = sum(2.0 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if bmm else 1)
                for bmm, a, b in operands)

    def replay():
        for bmm, a, b in operands:
            torch.bmm(a, b) if bmm else torch.mm(a, b)

    replay()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        replay()
        times.append(time.thread_time() - t0)
    return statistics.median(times), flops


def _strided(shape, stride, gen) -> torch.Tensor:
    """A random tensor with this shape and these strides (a transposed view where the original was one)."""
    order = sorted(range(len(shape)), key=lambda i: -stride[i])
    base = torch.randn([shape[i] for i in order], generator=gen)
    inverse = [order.index(i) for i in range(len(shape))]
    return base.permute(inverse)


def _realnvp_rows(quick: bool) -> list[dict]:
    repeats = 5 if quick else 40
    torch.manual_seed(0)
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(0))
    steps = {"ours": _step_fn(*_ours_realnvp("permute", False)), "default": _step_fn(*_ours_realnvp("lu", True)),
             "zuko": _step_fn(*_zuko_realnvp()),
             "default, fused Adam": _step_fn(*_ours_realnvp("lu", True), fused=True),
             "zuko, fused Adam": _step_fn(*_zuko_realnvp(), fused=True)}
    t = alternating_step_times(steps, x, repeats)
    rows = []
    for key, label, ref in (("ours", "couplings + reverse", "zuko"), ("default", "default", "zuko"),
                            ("default, fused Adam", "default, both with fused Adam", "zuko, fused Adam")):
        rows.append({"name": f"RealNVP training step, zuko / ours ({label}), 8-D, 4 couplings, 64x64, "
                             f"batch {BATCH}",
                     "ratio": t[ref] / t[key],
                     "detail": f"{BATCH / t[key]:,.0f} vs zuko {BATCH / t[ref]:,.0f} samples/s "
                               f"(throughput ratio, aim >= 1.2)"})
    return rows


def _spline_row(quick: bool) -> dict:
    """Our default spline flow (autoregressive) against zuko's NSF, the pair of the density rows, per step."""
    import zuko

    repeats = 5 if quick else 40
    torch.manual_seed(0)
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(0))
    ours = spline(DIM, num_layers=LAYERS, hidden_dims=HIDDEN, count_bins=BINS)
    nsf = zuko.flows.NSF(DIM, transforms=LAYERS, hidden_features=HIDDEN, bins=BINS)
    t = alternating_step_times({"ours": _step_fn(ours, ours.log_prob),
                                "zuko": _step_fn(nsf, lambda v: nsf().log_prob(v))}, x, repeats)
    return {"name": f"spline training step, zuko NSF / ours spline, 8-D, 4 steps, 64x64, {BINS} bins, batch {BATCH}",
            "ratio": t["zuko"] / t["ours"],
            "detail": f"{BATCH / t['ours']:,.0f} vs zuko {BATCH / t['zuko']:,.0f} samples/s (throughput ratio, "
                      f"aim >= 1 at the density rows' equal or better test log-likelihood)"}


def _flop_row(quick: bool) -> dict:
    """The default step against bare GEMMs replaying exactly its matrix products."""
    repeats = 5 if quick else 40
    torch.manual_seed(0)
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(0))
    flow, log_prob = _ours_realnvp("lu", True)
    step = _step_fn(flow, log_prob)
    step(x)
    recorder = _RecordMatmuls()
    with recorder:
        step(x)
    gemm_s, flops = _replay_seconds(recorder.calls, repeats * 5)
    step_s = alternating_step_times({"default": step}, x, repeats)["default"]
    return {"name": f"RealNVP default step FLOP rate / bare GEMMs on the step's own {len(recorder.calls)} "
                    f"matrix shapes",
            "ratio": gemm_s / step_s,
            "detail": f"{flops / 1e6:.1f} MFLOP: step {step_s * 1e3:.2f} ms ({flops / step_s / 1e9:.2f} "
                      f"GFLOP/s), GEMMs alone {gemm_s * 1e3:.2f} ms ({flops / gemm_s / 1e9:.2f} GFLOP/s); "
                      f"aim >= 0.25"}


def _compile_row(quick: bool) -> dict:
    """Eager against compile_flow on the default RealNVP step (same initial parameters), with compile time."""
    from bayes_diglm.flows import compile_flow

    repeats = 5 if quick else 40
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    eager, _ = _ours_realnvp("lu", True)
    eager(x)  # ActNorm initialisation, so both copies start equal
    compiled = compile_flow(copy.deepcopy(eager))
    steps = {"eager": _step_fn(eager, eager.log_prob, fused=True),
             "compiled": _step_fn(compiled, compiled.log_prob, fused=True)}
    t0 = time.perf_counter()
    steps["compiled"](x)
    compile_s = time.perf_counter() - t0
    t = alternating_step_times(steps, x, repeats)
    return {"name": f"RealNVP default step, eager / compile_flow (inductor, fused Adam, batch {BATCH})",
            "ratio": t["eager"] / t["compiled"],
            "detail": f"{t['eager'] * 1e3:.2f} vs {t['compiled'] * 1e3:.2f} ms; compiling took {compile_s:.0f} s "
                      f"wall, repaid after {compile_s / max(t['eager'] - t['compiled'], 1e-9):,.0f} steps"}


def _glow_input(quick: bool) -> tuple[torch.Tensor, int]:
    batch = 16 if quick else 64
    x = torch.randint(0, 256, (batch, *GLOW_SHAPE), generator=torch.Generator().manual_seed(0)) / 255.0
    return x, (3 if quick else 10)


def _glow_normflows_row(quick: bool) -> dict:
    x, repeats = _glow_input(quick)
    torch.manual_seed(0)
    ours, theirs = _step_fn(*_ours_glow()), _step_fn(*_normflows_glow())
    t = alternating_step_times({"ours": ours, "normflows": theirs}, x, repeats)
    return {"name": f"Glow training step, normflows / ours, 28x28x1, {GLOW_LEVELS} levels x {GLOW_STEPS} "
                    f"steps, {GLOW_HIDDEN} channels, batch {x.shape[0]}",
            "ratio": t["normflows"] / t["ours"],
            "detail": f"{t['ours'] * 1e3:.0f} ms vs normflows {t['normflows'] * 1e3:.0f} ms "
                      f"(throughput ratio, aim >= 1.2)"}


def _glow_threads_row(quick: bool) -> dict:
    """Wall time with 1 and 2 threads, alternating; the median ratio and the ratio of the fastest steps.

    On a shared machine a second thread waits whenever another process holds the other core, so the median
    mostly measures the load; the fastest step of each side is the nearest this run gets to an idle machine.
    """
    x, repeats = _glow_input(quick)
    torch.manual_seed(0)
    one, two = _step_fn(*_ours_glow()), _step_fn(*_ours_glow())
    load = os.getloadavg()[0]
    raw = alternating_step_times({"one": one, "two": two}, x, 2 * repeats, threads={"one": 1, "two": 2},
                                 reduce=list)
    med = {k: statistics.median(v) for k, v in raw.items()}
    best = {k: min(v) for k, v in raw.items()}
    return {"name": f"Glow training step, 1 thread / 2 threads (same model, batch {x.shape[0]})",
            "ratio": med["one"] / med["two"],
            "detail": f"medians {med['one'] * 1e3:.0f} vs {med['two'] * 1e3:.0f} ms (wall); fastest steps "
                      f"{best['one'] * 1e3:.0f} vs {best['two'] * 1e3:.0f} ms, ratio {best['one'] / best['two']:.2f}; "
                      f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} shared cores "
                      f"(aim >= 1.6, measurable only on an idle machine)"}


def _restoring_threads(fn: Callable[[bool], object], quick: bool) -> Callable[[], object]:
    def thunk():
        threads = torch.get_num_threads()
        try:
            return fn(quick)
        finally:
            torch.set_num_threads(threads)

    return thunk


def run(quick: bool = False):
    """``(label, thunk)`` per group of rows (benchmarks/run.py reports a failing one and goes on)."""
    yield "RealNVP zuko / ours", _restoring_threads(_realnvp_rows, quick)
    yield "RealNVP FLOP rate / bare GEMMs", _restoring_threads(_flop_row, quick)
    yield "spline zuko NSF / ours", _restoring_threads(_spline_row, quick)
    if not quick:
        yield "RealNVP eager / compile_flow", _restoring_threads(_compile_row, quick)
    yield "Glow normflows / ours", _restoring_threads(_glow_normflows_row, quick)
    yield "Glow 1 thread / 2 threads", _restoring_threads(_glow_threads_row, quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for _, thunk in run(quick):
        for row in (lambda r: [r] if isinstance(r, dict) else r)(thunk()):
            print(f"{row['ratio']:6.3f}  {row['name']}  ({row['detail']})")
