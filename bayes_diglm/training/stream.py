"""The one accumulation of conjugate sufficient statistics over a stream of chunks: checkpoints to resume after a
crash and the sum over the ranks of a process group are options."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..inference.conjugate import SufficientStats
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .fields import Fields

__all__ = ["accumulate_stats"]

_KIND = "stream-stats"


def accumulate_stats(stats_fn: Callable[[tuple], SufficientStats], chunks: Iterable, *,
                     checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int = 1,
                     resume: bool = False, all_reduce: bool = False) -> SufficientStats:
    r"""Sum ``stats_fn(chunk)`` over ``chunks``, resumable after a crash from a checkpoint of the running sum.

    Every ``checkpoint_every`` chunks the running sum (float64, exact), the number of chunks and of rows done
    are written atomically to ``checkpoint_path`` (:func:`save_checkpoint`: a kill mid-write leaves the
    previous one, and an altered file is refused). With ``resume=True`` and a checkpoint on disk, the chunks it
    covers are read but not processed (pass the same stream again, e.g. ``split.chunks("train")``), their row
    count is checked against the checkpoint, and the sum goes on from the saved one. The additions happen in
    chunk order either way, so the result is bit-identical to one uninterrupted pass; ``stats_fn`` must be
    deterministic (the features of a fixed model in eval mode).

    Args:
        stats_fn: ``chunk -> SufficientStats`` (e.g. a trained DIGLM's features and noise weights of a chunk).
        chunks: iterable of tuples whose second item is the chunk's targets (its length counts the rows).
        checkpoint_path: where to keep the running sum (None: no checkpoints).
        checkpoint_every: chunks between checkpoints (a checkpoint always follows the last chunk).
        resume: continue from ``checkpoint_path`` when it exists.
        all_reduce: sum the result over the ranks of the initialised process group
            (:func:`bayes_diglm.training.distributed.all_reduce_stats`), each rank streaming its own shard; the
            checkpoints stay per rank (pass each rank its own ``checkpoint_path``).

    Raises:
        CheckpointError: the checkpoint is unreadable, altered, of another kind, or covers chunks this stream
            does not have.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> parts = [(rng.normal(size=(5, 2)), rng.normal(size=5)) for _ in range(3)]
    >>> accumulate_stats(lambda c: SufficientStats.from_data(*c, fit_intercept=True), parts).n
    15.0
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if not callable(stats_fn):
        raise TypeError(f"stats_fn must be callable, got {type(stats_fn).__name__}")
    total, done, rows = _restore(checkpoint_path) if resume else (None, 0, 0.0)
    iterator = iter(chunks)
    _skip(iterator, done, rows, checkpoint_path)
    for chunk in iterator:
        part = stats_fn(chunk)
        if not isinstance(part, SufficientStats):
            raise TypeError(f"stats_fn must return SufficientStats, got {type(part).__name__}")
        total = part if total is None else total + part
        done, rows = done + 1, rows + len(chunk[1])
        if checkpoint_path is not None and done % checkpoint_every == 0:
            _save(checkpoint_path, total, done, rows)
    if total is None:
        raise ValueError("chunks is empty: no rows to compute statistics from")
    if checkpoint_path is not None and done % checkpoint_every:
        _save(checkpoint_path, total, done, rows)
    if all_reduce:
        from .distributed import all_reduce_stats

        total = all_reduce_stats(total)
    return total


def _restore(path) -> tuple[SufficientStats | None, int, float]:
    if path is None or not Path(path).exists():
        return None, 0, 0.0
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != _KIND:
        raise CheckpointError(f"{str(path)!r} is not a checkpoint of a statistics stream")
    f = Fields(ckpt, path)
    f.values(f.get("stats", torch.Tensor), "stats", dtype=torch.float64)
    chunks = f.integer(f.get("chunks_done", int), "chunks_done", high=2**63 - 1)
    rows = f.number(f.get("rows_done", (int, float)), "rows_done", low=0)
    try:
        stats = SufficientStats.from_tensor(ckpt["stats"], has_intercept=f.get("has_intercept", bool))
    except (ValueError, TypeError, RuntimeError, IndexError) as err:
        raise f.error("stats", f"is not a statistics tensor: {err}") from err
    return stats, chunks, rows


def _skip(iterator, done: int, rows: float, path) -> None:
    """Consume the ``done`` chunks a checkpoint covers, checking that they hold its ``rows``."""
    seen = 0.0
    for i in range(done):
        chunk = next(iterator, None)
        if chunk is None:
            raise CheckpointError(f"{str(path)!r} covers {done} chunks but the stream has only {i}")
        seen += len(chunk[1])
    if seen != rows:
        raise CheckpointError(f"{str(path)!r} covers {rows:.0f} rows in its {done} chunks, but those chunks of this "
                              f"stream hold {seen:.0f}: it is not the stream the checkpoint was made from")


def _save(path, total: SufficientStats, done: int, rows: float) -> None:
    save_checkpoint({"kind": _KIND, "stats": total.as_tensor(), "has_intercept": total.has_intercept,
                     "chunks_done": done, "rows_done": rows}, path)
