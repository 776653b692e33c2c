"""Scale: streaming the flights-like stream through flow features and the exact posterior; DDP training."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..data.synthetic import flights_like
from ..inference.conjugate import ConjugateLinearRegression
from ..inference.streaming import stream_evaluate, stream_fit_conjugate
from ..models.diglm import DIGLM, build_diglm
from ..training.checkpoint import load_checkpoint, save_checkpoint
from .common import StageLog, add_common_arguments, count_arg, markdown_table, write_results

__all__ = ["prepare_flow", "stream_job", "measure_stream", "run_stream", "run_train", "register"]

#: The flow behind the scale runs: RealNVP on the 8 flights features, a Gaussian head, lambda = 1/D.
FLOW_CONFIG = {"kind": "realnvp", "dim": 8, "num_layers": 4, "hidden_dims": [64, 64]}
HEAD_CONFIG = {"family": "gaussian"}
PX_WEIGHT = 1.0 / 8
# One chunk is one block of the synthetic generator: no re-concatenation, and memory O(65,536 rows).
CHUNK_SIZE = 65_536
TEST_ROWS = 100_000


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _training_rows(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = zip(*flights_like(rows, seed=seed, chunk_size=rows), strict=True)
    return torch.from_numpy(X[0]), torch.from_numpy(y[0])


class _Standardized(torch.nn.Module):
    """``x -> (x - mean) / std`` in front of a DIGLM's features and ``log p(x)`` (the Jacobian is counted)."""

    def __init__(self, model: DIGLM, x_mean: torch.Tensor, x_std: torch.Tensor):
        super().__init__()
        self.model, self.x_mean, self.x_std = model, x_mean, x_std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features((x - self.x_mean) / self.x_std)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.log_px((x - self.x_mean) / self.x_std) - self.x_std.log().sum()


def prepare_flow(path: str | Path, *, train_rows: int = 50_000, epochs: int = 2, batch_size: int = 512,
                 seed: int = 0, quiet: bool | None = True) -> Path:
    """Train the scale runs' DIGLM briefly on the first ``train_rows`` rows and checkpoint it at ``path``.

    The checkpoint holds the model's ``state_dict``, its JSON config and the input standardisation, so
    fresh processes rebuild it with :func:`load_flow` (``torch.load(weights_only=True)``).
    """
    from ..training import train_module

    X, y = _training_rows(train_rows, seed)
    x_mean, x_std = X.mean(0), X.std(0)
    y_mean, y_std = float(y.mean()), float(y.std())
    torch.manual_seed(seed)
    model = build_diglm(FLOW_CONFIG, HEAD_CONFIG, PX_WEIGHT)
    train_module(model, (X - x_mean) / x_std, (y - y_mean) / y_std, epochs=epochs, batch_size=batch_size,
                lr=1e-3, seed=seed, quiet=quiet)
    config = {"flow": FLOW_CONFIG, "head": HEAD_CONFIG, "px_weight": PX_WEIGHT, "train_rows": train_rows}
    return save_checkpoint({"model": model.state_dict(), "config": config, "x_mean": x_mean, "x_std": x_std},
                           path)


def load_flow(path: str | Path) -> _Standardized:
    """Rebuild the standardised DIGLM written by :func:`prepare_flow`, in eval mode."""
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    model = build_diglm(cfg["flow"], cfg["head"], cfg["px_weight"])
    model.load_state_dict(ckpt["model"])
    return _Standardized(model, ckpt["x_mean"], ckpt["x_std"]).eval()


def stream_job(rows: int, flow_path: str | Path, *, chunk_size: int = CHUNK_SIZE, test_rows: int = TEST_ROWS,
               seed: int = 0, threads: int = 1) -> dict:
    """In this process: fit the conjugate head on ``rows`` streamed rows' flow features, then evaluate it and
    ``log p(x)`` on the next ``test_rows`` rows; report seconds and peak memory (MiB)."""
    torch.set_num_threads(threads)
    model = load_flow(flow_path)
    rss_ready = _peak_rss_mib()
    t0 = time.perf_counter()
    head = stream_fit_conjugate(ConjugateLinearRegression(prior_precision=1.0), model.features,
                                flights_like(rows, seed=seed, chunk_size=chunk_size))
    t_fit = time.perf_counter() - t0
    scores = stream_evaluate(head, model.features, flights_like(test_rows, seed=seed, chunk_size=chunk_size,
                                                                 start=rows), log_px_fn=model.log_px)
    return {"rows": rows, "chunk_size": chunk_size, "fit_seconds": t_fit,
            "eval_seconds": time.perf_counter() - t0 - t_fit, "rows_per_second": rows / t_fit,
            "peak_rss_mib": _peak_rss_mib(), "rss_before_stream_mib": rss_ready, "test": scores,
            "sigma_hat": float((head.posterior_.b / (head.posterior_.a - 1.0)) ** 0.5)}


def measure_stream(rows: int, flow_path: str | Path, *, timeout: float | None = None, **kwargs) -> dict:
    """Run :func:`stream_job` in a fresh Python process (so peak memory is that run's alone); its result."""
    args = json.dumps({"rows": int(rows), "flow_path": str(flow_path), **kwargs})
    code = "import sys; from bayes_diglm.experiments.scale import _worker_main; _worker_main(sys.argv[1])"
    env = {**os.environ, "OMP_NUM_THREADS": str(kwargs.get("threads", 1))}
    done = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"streaming worker for {rows} rows failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker_main(args_json: str) -> None:
    args = json.loads(args_json)
    print(json.dumps(stream_job(args.pop("rows"), args.pop("flow_path"), **args)))


def run_stream(out: str | Path = "results/scale", *, sizes: tuple[int, ...] = (500_000, 5_000_000),
               train_rows: int = 50_000, seed: int = 0, threads: int = 1, quiet: bool | None = None) -> dict:
    """Stream each size through feature extraction and the exact posterior, each in a fresh process.

    Reports time and peak memory per size and the ratio of the largest size's peak memory to the smallest's
    (the claim: within 1.10, since memory is O(chunk), not O(rows)).
    """
    out = Path(out)
    log = StageLog("scale stream", quiet=quiet)
    log(f"training the flow on {train_rows:,} rows (or loading {out / 'flow.pt'})")
    flow_path = prepare_flow(out / "flow.pt", train_rows=train_rows, seed=seed, quiet=quiet)
    runs = []
    for rows in sorted(sizes):
        log(f"streaming {rows:,} rows in a fresh process")
        runs.append(measure_stream(rows, flow_path, seed=seed, threads=threads))
    table_rows = [{
        "rows": f"{r['rows']:,}", "fit s": r["fit_seconds"], "rows/s": f"{r['rows_per_second']:,.0f}",
        "peak RSS MiB": r["peak_rss_mib"], "RSS before stream MiB": r["rss_before_stream_mib"],
        "test RMSE": r["test"]["rmse"], "test NLL": r["test"]["mean_nll"],
        "test 90% coverage": r["test"]["coverage"], "test log p(x)": r["test"]["mean_log_px"],
    } for r in runs]
    ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    table = markdown_table(table_rows, digits=3)
    metrics = {"experiment": "scale-stream", "seed": seed, "threads": threads, "chunk_size": CHUNK_SIZE,
               "train_rows": train_rows, "runs": runs, "peak_memory_ratio_largest_vs_smallest": ratio,
               "load_average": os.getloadavg()}
    write_results(out, metrics, table)
    return {"runs": runs, "table": table, "memory_ratio": ratio, "out": str(out)}


def run_train(out: str | Path = "results/scale-train", *, rows: int = 20_000, epochs: int = 2,
              batch_size: int = 512, distributed: bool = False, resume: bool = False, seed: int = 0,
              quiet: bool | None = None) -> dict:
    """Train the flights-like DIGLM (under ``torchrun`` with ``distributed``), then fit the exact head.

    With ``distributed``: DistributedDataParallel training with a DistributedSampler shard per rank
    (``batch_size`` is the global batch), checkpoints by rank 0 (``out/checkpoint.pt``; ``resume`` continues
    from it on every rank), and the conjugate head from per-rank
    sufficient statistics of each rank's slice of the stream merged by ``all_reduce``.
    """
    from ..training import distributed as dist_tools
    from ..training import train_module

    ctx = dist_tools.init_distributed() if distributed else None
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    device = ctx.device if ctx else "cpu"
    log = StageLog("scale train", quiet=quiet or rank != 0)
    try:
        out = Path(out)
        X, y = _training_rows(rows, seed)
        x_mean, x_std = X.mean(0), X.std(0)
        y_mean, y_std = float(y.mean()), float(y.std())
        torch.manual_seed(seed)
        model = build_diglm(FLOW_CONFIG, HEAD_CONFIG, PX_WEIGHT)
        log(f"training on {rows:,} rows, {epochs} epochs, {world} process(es)")
        t0 = time.perf_counter()
        history = train_module(model, (X - x_mean) / x_std, (y - y_mean) / y_std, epochs=epochs,
                              batch_size=batch_size, seed=seed, quiet=quiet or rank != 0,
                              checkpoint_path=out / "checkpoint.pt", resume=resume, device=device,
                              distributed=distributed)
        t_train = time.perf_counter() - t0
        model.to("cpu")
        standardized = _Standardized(model, x_mean, x_std).eval()
        log("exact conjugate head (sufficient statistics all-reduced) and the test rows")
        lo, hi = dist_tools.shard_range(rows, rank, world)
        head = dist_tools.fit_conjugate_distributed(ConjugateLinearRegression(prior_precision=1.0),
                                                    standardized.features, flights_like(hi - lo, seed=seed, start=lo))
        scores = stream_evaluate(head, standardized.features, flights_like(TEST_ROWS, seed=seed, start=rows),
                                 log_px_fn=standardized.log_px)
        result = {"rows": rows, "world_size": world, "epochs": epochs, "global_batch": batch_size,
                  "train_seconds": t_train, "final_loss": history.epochs[-1]["loss"] if history.epochs else None,
                  "head_rows": head.stats_.n, "test": scores}
        if rank == 0:
            table = markdown_table([{"processes": world, "train s": t_train, "final loss": result["final_loss"],
                                     "test RMSE": scores["rmse"], "test NLL": scores["mean_nll"]}])
            write_results(out, {"experiment": "scale-train", **result}, table)
            result["table"] = table
        return result
    finally:
        if ctx:
            dist_tools.shutdown_distributed()


def _cli_stream(args) -> int:
    sizes = tuple(sorted({args.small, args.rows}))
    result = run_stream(args.out, sizes=sizes, train_rows=args.train_rows, seed=args.seed, threads=args.threads,
                        quiet=args.quiet or None)
    print(result["table"])
    print(f"\npeak memory, {sizes[-1]:,} rows / {sizes[0]:,} rows: {result['memory_ratio']:.3f}")
    print(f"wrote {result['out']}/ (metrics.json, table.md)")
    return 0


def _cli_train(args) -> int:
    result = run_train(args.out, rows=args.rows, epochs=args.epochs, batch_size=args.batch_size,
                       distributed=args.distributed, resume=args.resume, seed=args.seed, quiet=args.quiet or None)
    if "table" in result:
        print(result["table"])
        print(f"\nwrote {args.out}/ (metrics.json, table.md, checkpoint.pt)")
    return 0


def register(subparsers) -> None:
    """Add ``scale stream`` (larger-than-memory streaming) and ``scale train`` (``--distributed`` under torchrun)."""
    p = subparsers.add_parser("scale", help="streaming 5M rows; distributed training under torchrun",
                              description="Scale runs: streaming the exact posterior, DDP training.")
    sub = p.add_subparsers(dest="scale_command", metavar="SCALE_COMMAND", required=True)
    s = sub.add_parser("stream", help="stream rows through flow features and the exact posterior",
                       description="Fit the conjugate head on streamed flow features, each size in a fresh "
                                   "process; report time and peak memory.")
    add_common_arguments(s, "results/scale")
    s.add_argument("--rows", type=count_arg, default=5_000_000, help="largest size (default: 5,000,000)")
    s.add_argument("--small", type=count_arg, default=500_000, help="size to compare memory with (default: 500,000)")
    s.add_argument("--train-rows", type=count_arg, default=50_000, help="rows to train the flow on (default: 50,000)")
    s.add_argument("--threads", type=count_arg, default=1, help="torch threads per worker (default: 1)")
    s.set_defaults(func=_cli_stream)
    t = sub.add_parser("train", help="train the flights-like DIGLM; --distributed under torchrun",
                       description="Train, then fit the exact head. Distributed: torchrun --nproc-per-node 2 "
                                   "-m bayes_diglm scale train --distributed")
    add_common_arguments(t, "results/scale-train")
    t.add_argument("--rows", type=count_arg, default=20_000, help="training rows (default: 20,000)")
    t.add_argument("--epochs", type=count_arg, default=2, help="epochs (default: 2)")
    t.add_argument("--batch-size", type=count_arg, default=512, help="global batch size (default: 512)")
    t.add_argument("--distributed", action="store_true",
                   help="DistributedDataParallel (gloo on CPU, nccl on GPU); launch with torchrun")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.set_defaults(func=_cli_train)
