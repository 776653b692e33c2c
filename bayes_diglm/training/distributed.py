"""torch.distributed helpers: process-group setup, DistributedSampler batches, all-reduced posteriors.

Launch with ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``), e.g. ``torchrun --nproc-per-node 2 -m bayes_diglm scale train --distributed``. The backend
is ``nccl`` when CUDA is available and ``gloo`` otherwise. Training uses
:func:`bayes_diglm.training.train_module` with ``distributed=True`` (DistributedDataParallel; the
global batch is split across ranks by :class:`~torch.utils.data.DistributedSampler`); the conjugate head is
fitted from per-rank sufficient statistics summed by ``all_reduce``, which gives the single-process
posterior on the union of the ranks' data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..inference.conjugate import ConjugateLinearRegression, SufficientStats

__all__ = [
    "DistributedContext",
    "default_backend",
    "init_distributed",
    "current_context",
    "shutdown_distributed",
    "is_main_process",
    "barrier",
    "shard_range",
    "distributed_batches",
    "all_reduce_sum",
    "wrap_ddp",
    "all_reduce_stats",
    "fit_conjugate_distributed",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the process group: ``rank`` of ``world_size``, its backend and device."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and results."""
        return self.rank == 0


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def current_context() -> DistributedContext | None:
    """The context of the initialised default process group, or ``None`` when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    backend = dist.get_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def init_distributed(backend: str | None = None, *, timeout_s: float = 600.0) -> DistributedContext:
    """Join the process group described by torchrun's environment variables; return this rank's context.

    Already initialised: returns the current context. With ``nccl`` the process uses ``cuda:LOCAL_RANK``.

    Raises:
        RuntimeError: when ``RANK``/``WORLD_SIZE`` are missing (not started by ``torchrun``).
        ValueError: for an unknown backend.
    """
    ctx = current_context()
    if ctx is not None:
        return ctx
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"distributed training needs {', '.join(missing)} in the environment: launch with torchrun, e.g. "
            "`torchrun --nproc-per-node 2 -m bayes_diglm scale train --distributed`"
        )
    backend = backend or default_backend()
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return current_context()


def shutdown_distributed() -> None:
    """Leave the process group (no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0, and in a process that is not part of a process group."""
    ctx = current_context()
    return ctx is None or ctx.is_main


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if current_context() is not None:
        dist.barrier()


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``: contiguous, sizes differing by at most one, covering ``0..n``.

    Examples
    --------
    >>> [shard_range(10, r, 3) for r in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got {rank!r} of {world_size!r}")
    return rank * n // world_size, (rank + 1) * n // world_size


def distributed_batches(n: int, batch_size: int, *, epoch: int, seed: int, rank: int,
                        world_size: int) -> list[torch.Tensor]:
    r"""This rank's minibatch indices for one epoch; ``batch_size`` is the global batch.

    A :class:`~torch.utils.data.DistributedSampler` (shuffled by ``torch.randperm`` seeded with
    ``seed + epoch``, padded to a multiple of ``world_size``) gives rank ``r`` the positions
    ``r, r + W, r + 2W, ...`` of the permutation; taking them ``batch_size / W`` at a time makes step ``k``'s
    global batch (the union over ranks) exactly positions ``kB .. (k+1)B - 1`` of the permutation. With the
    same seed, that is the single-process epoch's batch ``k``, and since DDP averages the ranks' gradients of
    per-rank means, a step equals the single-process step on the same global batch. This holds for every step
    when ``n`` is a multiple of ``world_size``; otherwise the sampler pads the permutation with its first rows,
    so the last global batch repeats a few rows and differs from the single-process one.

    Examples
    --------
    >>> b0 = distributed_batches(8, 4, epoch=0, seed=0, rank=0, world_size=2)
    >>> b1 = distributed_batches(8, 4, epoch=0, seed=0, rank=1, world_size=2)
    >>> perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(torch.cat([b0[0], b1[0]]).sort().values, perm[:4].sort().values)
    True
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} (the global batch) must be a multiple of the number of "
                         f"processes {world_size}")
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long).split(batch_size // world_size)


def wrap_ddp(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch_size: int,
             seed: int) -> torch.nn.parallel.DistributedDataParallel:
    """Wrap ``model`` in DistributedDataParallel after a data-dependent initialisation on the first global batch.

    ActNorm layers initialise from the first batch they see in training mode. Every rank first runs one
    no-gradient forward pass on the *global* first batch (``torch.randperm(n)`` seeded with ``seed``, the
    batch single-process training starts with), so the ranks, and a single-process run, start from the same
    parameters; DDP's constructor then broadcasts rank 0's parameters and buffers as a guard. A model that
    is already initialised (e.g. resumed from a checkpoint) is unchanged by that pass.
    """
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("wrap_ddp needs an initialised process group (init_distributed under torchrun)")
    first = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))[:batch_size]
    was_training = model.training
    model.train()
    with torch.no_grad():
        model(X[first].to(ctx.device), y[first].to(ctx.device))
    model.train(was_training)
    device_ids = [ctx.device] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(values: list[float], device: str | torch.device | None = None) -> list[float]:
    """Sum a few float64 numbers across ranks (returned unchanged without a process group).

    ``device`` defaults to the process group's device (a CUDA device under nccl).
    """
    ctx = current_context()
    if ctx is None:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device if device is not None else ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_reduce_stats(stats: SufficientStats, device: str | torch.device | None = None) -> SufficientStats:
    r"""Sum sufficient statistics over ranks with one ``all_reduce`` of the packed float64 tensor.

    Statistics are sums over rows, so the result is the statistics of every rank's rows together (up to
    float64 rounding in the order of summation). Without a process group, ``stats`` is returned.
    """
    if not isinstance(stats, SufficientStats):
        raise TypeError(f"stats must be a SufficientStats, got {type(stats).__name__}")
    ctx = current_context()
    if ctx is None:
        return stats
    flat = stats.as_tensor().to(device or ctx.device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return SufficientStats.from_tensor(flat, has_intercept=stats.has_intercept)


def fit_conjugate_distributed(head: ConjugateLinearRegression, feature_fn: Callable[[torch.Tensor], torch.Tensor],
                              chunks: Iterable, *,
                              dtype: torch.dtype | None = torch.float32) -> ConjugateLinearRegression:
    """Fit ``head`` on the union of every rank's ``chunks`` (each rank passes its own shard).

    Each rank streams its chunks into sufficient statistics, :func:`all_reduce_stats` sums them, and every
    rank computes the same exact posterior with :meth:`ConjugateLinearRegression.fit_stats`. Every rank
    needs at least one row. The statistics are :func:`bayes_diglm.training.accumulate_stats`'s with
    ``all_reduce=True``.
    """
    from ..inference.streaming import as_chunk_tensors
    from .stream import accumulate_stats

    intercept = bool(head.fit_intercept)

    def stats_of(chunk) -> SufficientStats:
        with torch.no_grad():
            features = feature_fn(chunk[0]).detach().cpu()
        return SufficientStats.from_data(features, chunk[1], fit_intercept=intercept)

    return head.fit_stats(accumulate_stats(stats_of, as_chunk_tensors(chunks, dtype), all_reduce=True))
