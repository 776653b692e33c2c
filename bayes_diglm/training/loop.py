"""The one training loop: minibatch Adam on any module's objective (the DIGLM, MLP baselines, bandit networks).

A trainable module follows one protocol: ``module(x, y)`` returns ``(objective, parts)``, a scalar tensor to
*maximise* (a mean over the batch) and a dict of detached scalar tensors to record (means over the batch).
:class:`bayes_diglm.models.DIGLM` returns the hybrid objective with ``log_py``, ``log_px`` and
``nats_per_dim``; a baseline returns, e.g., its mean log-likelihood. The loop knows nothing else about it.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._validation import check_positive
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .fields import Fields

__all__ = ["train_module", "evaluate_module", "batched", "NonFiniteLossError", "TrainHistory",
           "semi_supervised_split", "WithReplacement"]


class NonFiniteLossError(FloatingPointError):
    """The training loss or its gradient became NaN/Inf; the model keeps its last good parameters."""


@dataclass
class TrainHistory:
    """Per-epoch records (``epochs``), the best validation epoch, and how training ended."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stopped: str = "completed"
    skipped_batches: int = 0

    def as_dict(self) -> dict:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "skipped_batches": self.skipped_batches,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainHistory:
        return cls(list(d["epochs"]), d["best_epoch"], d["stopped"], int(d.get("skipped_batches", 0)))


def batched(fn: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, batch_size: int = 1024,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """Apply ``fn`` to ``X`` in batches without gradients and concatenate the results on the CPU."""
    outs = []
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            outs.append(fn(X[start:start + batch_size].to(device)).cpu())
    return torch.cat(outs)


def evaluate_module(module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
                    device: str | torch.device = "cpu", *, context: dict | None = None) -> dict[str, float]:
    """The module's mean ``objective`` and mean ``parts`` over a data set, in eval mode, in batches.

    For a DIGLM: ``objective`` (mean log p(y|x) + px_weight * mean log p(x)), ``log_py``, ``log_px`` and
    ``nats_per_dim``. ``context``: per-row keywords of the objective beside ``y`` (see :func:`train_module`).
    """
    was_training = module.training
    module.eval()
    sums: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            xb, yb = X[rows].to(device), y[rows].to(device)
            value, parts = module(xb, yb, **_rows_of(context, rows, device))
            for key, v in {"objective": value, **parts}.items():
                sums[key] = sums.get(key, 0.0) + float(v) * xb.shape[0]
    module.train(was_training)
    n = X.shape[0]
    return {key: total / n for key, total in sums.items()}


def _rows_of(context: dict | None, rows, device=None) -> dict[str, torch.Tensor]:
    """The per-row context tensors at ``rows`` (an index tensor or a slice), on ``device``."""
    if not context:
        return {}
    return {key: value[rows] if device is None else value[rows].to(device) for key, value in context.items()}


def _epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterable[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return order.split(batch_size)


class WithReplacement:
    """A ``batch_sampler`` for :func:`train_module`: ``num_batches`` minibatches of ``batch_size`` rows drawn
    uniformly *with* replacement (the protocol of Riquelme et al.'s bandit networks).

    The rows come from ``rng`` (a NumPy Generator the caller keeps, so that draws continue its stream across
    calls, interleaved with the objective's own draws in order) or, with ``rng=None``, from the epoch's
    seeded torch generator. Draws are lazy: batch ``k`` is drawn when the loop asks for it.

    Examples
    --------
    >>> import numpy as np
    >>> sampler = WithReplacement(3, 4, rng=np.random.default_rng(0))
    >>> [tuple(b.shape) for b in sampler(10, None)]
    [(4,), (4,), (4,)]
    """

    def __init__(self, num_batches: int, batch_size: int, *, rng=None) -> None:
        if any(isinstance(v, bool) or int(v) != v or int(v) < 1 for v in (num_batches, batch_size)):
            raise ValueError(f"num_batches and batch_size must be positive integers, got {num_batches!r} and "
                             f"{batch_size!r}")
        self.num_batches, self.batch_size, self.rng = int(num_batches), int(batch_size), rng

    def __call__(self, n: int, generator: torch.Generator | None) -> Iterable[torch.Tensor]:
        for _ in range(self.num_batches):
            if self.rng is not None:
                yield torch.from_numpy(self.rng.integers(0, n, size=self.batch_size))
            else:
                yield torch.randint(0, n, (self.batch_size,), generator=generator)


def semi_supervised_split(batch_size: int, labeled_fraction: float) -> tuple[int, int]:
    """Labelled and unlabelled rows per minibatch: ``round(labeled_fraction * batch_size)``, at least one each."""
    if not 0.0 < float(labeled_fraction) < 1.0:
        raise ValueError(f"labeled_fraction must be in (0, 1), got {labeled_fraction!r}")
    if batch_size < 2:
        raise ValueError(f"semi-supervised training needs batch_size >= 2, got {batch_size!r}")
    n_lab = min(max(1, round(float(labeled_fraction) * batch_size)), batch_size - 1)
    return n_lab, batch_size - n_lab


def _cycled(n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``length`` indices from fresh permutations of ``range(n)``, one after another (each row once per pass)."""
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(math.ceil(length / n))])[:length]


def _semi_supervised_batches(n_lab: int, n_unl: int, per_batch: tuple[int, int],
                             generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(labelled rows, unlabelled rows)`` index pairs, a fixed number of each per batch.

    An epoch is one pass over the larger of the two sets (relative to its share of a batch); the other set is
    reshuffled and cycled, so every batch has the same composition.
    """
    b_lab, b_unl = per_batch
    steps = max(math.ceil(n_lab / b_lab), math.ceil(n_unl / b_unl))
    lab = _cycled(n_lab, steps * b_lab, generator).view(steps, b_lab)
    unl = _cycled(n_unl, steps * b_unl, generator).view(steps, b_unl)
    return list(zip(lab, unl, strict=True))


def _show_progress(quiet: bool | None) -> bool:
    if quiet is None:
        return sys.stderr.isatty()
    return not quiet


def train_module(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    X_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    clip_grad: float | None = 10.0,
    warmup_steps: int = 0,
    patience: int | None = None,
    seed: int = 0,
    quiet: bool | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    config: dict | None = None,
    device: str | torch.device = "cpu",
    on_nonfinite: str = "raise",
    distributed: bool = False,
    X_unlabeled: torch.Tensor | None = None,
    labeled_fraction: float = 0.5,
    optimizer: torch.optim.Optimizer | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    batch_sampler: Callable[[int, torch.Generator], Iterable[torch.Tensor]] | None = None,
    context: dict[str, torch.Tensor] | None = None,
    context_val: dict[str, torch.Tensor] | None = None,
) -> TrainHistory:
    """Train ``model`` by maximising its objective (``model(x, y) -> (objective, parts)``) with Adam (or the
    given optimiser).

    Each epoch shuffles with a generator seeded by ``(seed, epoch)`` and reseeds torch's global generator the
    same way (dequantisation noise), so a run resumed from an epoch's checkpoint continues exactly as an
    uninterrupted run would. With a validation set and ``patience``, training stops after ``patience`` epochs
    without a better validation objective and the best parameters are restored. Ctrl-C stops training cleanly
    (``history.stopped == "interrupted"``); the checkpoint of the last completed epoch stays on disk.

    Args:
        model: any module following the protocol above, e.g. a DIGLM (whose ``px_weight`` is the paper's lambda).
        X, y: training inputs (batch first) and targets, as tensors.
        X_val, y_val: optional validation data for early stopping and the history.
        epochs: maximum number of passes over the data.
        batch_size: minibatch size.
        lr, weight_decay: Adam's settings.
        clip_grad: clip the gradient's global norm to this value (None: no clipping).
        warmup_steps: linear learning-rate warm-up over this many steps.
        patience: epochs without validation improvement before stopping (None: never stop early).
        seed: makes a run reproducible.
        quiet: hide the progress bar (None: show it only on a terminal).
        checkpoint_path: write a checkpoint there after every epoch (atomically).
        resume: continue from ``checkpoint_path`` when it exists.
        config: JSON-able description stored in checkpoints (how to rebuild the model).
        device: ``"cpu"`` or ``"cuda"``.
        on_nonfinite: ``"raise"`` (stop with :class:`NonFiniteLossError`, keeping the last good parameters) or
            ``"skip"`` (skip that batch and count it in ``history.skipped_batches``).
        distributed: train with DistributedDataParallel in an initialised process group (see
            :mod:`bayes_diglm.training.distributed`; launch with ``torchrun``). Every rank passes the same
            ``X, y``; ``batch_size`` is the global batch (a multiple of the number of processes), split across
            ranks by a DistributedSampler so that each step matches the single-process step on the same
            global batch; only rank 0 writes checkpoints and every rank resumes from them.
        X_unlabeled: inputs without targets (semi-supervised training). Every minibatch then holds
            ``round(labeled_fraction * batch_size)`` labelled rows of ``X`` followed by unlabelled rows, and
            the module is called as ``module(x, y)`` with ``y`` shorter than ``x``: its first ``len(y)`` rows
            are labelled (a DIGLM then maximises ``mean_labelled log p(y|x) + px_weight * mean_all log p(x)``).
            An epoch is one pass over the larger set (for its share of the batch); the smaller set is
            reshuffled and cycled. Not combined with ``distributed``.
        labeled_fraction: the labelled share of each minibatch with ``X_unlabeled``.
        optimizer: an optimiser over ``model``'s parameters to step instead of a fresh Adam (``lr`` and
            ``weight_decay`` are then its own). Its state is kept, so a caller that trains the same module
            again and again (a bandit agent every ``train_every`` pulls) continues one optimiser run.
        lr_schedule: the learning rate at each optimiser step, ``lr_schedule(step)`` with ``step`` counted from
            0 in this run (a resumed run continues the count), e.g. TensorFlow's inverse-time decay
            ``lambda t: lr / (1 + decay * (t0 + t))``. Not combined with ``warmup_steps``.
        batch_sampler: an epoch's minibatches as row-index tensors, ``batch_sampler(n, generator)`` with the
            epoch's seeded generator; default a shuffled pass over the rows in batches of ``batch_size``.
            :class:`WithReplacement` draws a fixed number of minibatches with replacement. Not combined with
            ``X_unlabeled`` or ``distributed``.
        context, context_val: per-row keywords of the objective carried beside ``y`` (and ``y_val``), e.g.
            ``{"trials": n}`` for a binomial head: tensors of one value per row, sliced with ``y`` into every
            minibatch and passed as ``model(x, y, **context)``.

    Returns:
        TrainHistory with one record per epoch: ``loss`` (negative objective) and the means of the module's
        ``parts`` on the training batches (for a DIGLM ``log_py``, ``log_px``, ``nats_per_dim``), the same with a
        ``val_`` prefix on the validation set when given (``val_objective`` decides early stopping), and the
        epoch's seconds.
    """
    epochs, batch_size = int(epochs), int(batch_size)
    _check_training_arguments(X, y, X_val, y_val, epochs=epochs, batch_size=batch_size, lr=lr,
                              weight_decay=weight_decay, clip_grad=clip_grad, warmup_steps=warmup_steps,
                              patience=patience, on_nonfinite=on_nonfinite, resume=resume,
                              checkpoint_path=checkpoint_path)
    _check_context(context, y, "context")
    _check_context(context_val, y_val, "context_val")
    per_batch = None
    if X_unlabeled is not None:
        if distributed:
            raise ValueError("X_unlabeled (semi-supervised training) is not supported with distributed=True")
        if tuple(X_unlabeled.shape[1:]) != tuple(X.shape[1:]) or X_unlabeled.shape[0] == 0:
            raise ValueError(f"X_unlabeled must be non-empty with rows of shape {tuple(X.shape[1:])}, got "
                             f"{tuple(X_unlabeled.shape)}")
        per_batch = semi_supervised_split(batch_size, labeled_fraction)
    if lr_schedule is not None and int(warmup_steps) > 0:
        raise ValueError("give lr_schedule or warmup_steps, not both (a warm-up is one schedule)")
    if batch_sampler is not None and (X_unlabeled is not None or distributed):
        raise ValueError("batch_sampler is not combined with X_unlabeled or distributed=True (they draw their own "
                         "batches)")
    _check_custom_training(model, optimizer, lr_schedule, batch_sampler)
    ctx = _distributed_context(batch_size) if distributed else None
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    run = _TrainingRun(model, optimizer, lr=lr, warmup_steps=warmup_steps, clip_grad=clip_grad,
                       on_nonfinite=on_nonfinite, distributed=distributed, lr_schedule=lr_schedule)
    start_epoch = 0
    if resume and Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path, map_location=device)
        saved = ckpt.get("config") or {}
        if config and saved and _architecture(saved) != _architecture(config):
            raise CheckpointError(f"{str(checkpoint_path)!r} was written for another model "
                                  f"({_architecture(saved)}), not {_architecture(config)}: refusing to resume")
        Fields(ckpt, checkpoint_path).values(ckpt.get("model"), "model")  # finite float32/64 weights only
        try:
            start_epoch = run.restore(ckpt, epochs)
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise CheckpointError(f"cannot resume from {str(checkpoint_path)!r}: it does not match this model "
                                  f"({err})") from err

    n = X.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    if per_batch is not None:
        steps_per_epoch = max(math.ceil(n / per_batch[0]), math.ceil(X_unlabeled.shape[0] / per_batch[1]))
    if batch_sampler is not None:
        steps_per_epoch = int(getattr(batch_sampler, "num_batches", steps_per_epoch))
    net, main_process = model, True
    if ctx is not None:
        from .distributed import barrier, distributed_batches, wrap_ddp

        net = wrap_ddp(model, X, y, batch_size=batch_size, seed=seed * 1_000_003 + start_epoch)
        steps_per_epoch = math.ceil(math.ceil(n / ctx.world_size) / (batch_size // ctx.world_size))
        main_process = ctx.is_main
    bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc="training",
               disable=not _show_progress(quiet) or not main_process, unit="step", leave=False)
    # The epochs reseed torch's generator; fork it so that the caller's random stream is left as it was.
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            for epoch in range(start_epoch, epochs):
                t0 = time.perf_counter()
                model.train()
                # Everything random in an epoch derives from (seed, epoch): a resumed run repeats it exactly.
                generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                torch.manual_seed(seed * 1_000_003 + epoch)
                if per_batch is not None:
                    pairs = ((torch.cat([X[li], X_unlabeled[ui]]), y[li], _rows_of(context, li)) for li, ui in
                             _semi_supervised_batches(n, X_unlabeled.shape[0], per_batch, generator))
                else:
                    if ctx is not None:
                        batches = distributed_batches(n, batch_size, epoch=epoch, seed=seed * 1_000_003,
                                                      rank=ctx.rank, world_size=ctx.world_size)
                    elif batch_sampler is not None:
                        batches = batch_sampler(n, generator)
                    else:
                        batches = _epoch_batches(n, batch_size, generator)
                    pairs = ((X[idx], y[idx], _rows_of(context, idx)) for idx in batches)
                record = run.epoch(net, pairs, epoch=epoch, device=device, bar=bar, ctx=ctx)
                stop_early = run.validate(record, X_val, y_val, epoch=epoch, patience=patience,
                                          batch_size=max(batch_size, 1024), device=device, context=context_val)
                record["seconds"] = time.perf_counter() - t0
                if checkpoint_path is not None and main_process:
                    save_checkpoint(run.checkpoint(epoch, config), checkpoint_path)
                if checkpoint_path is not None and ctx is not None:
                    barrier()  # every rank sees the epoch's checkpoint before going on
                if stop_early:
                    break
        except KeyboardInterrupt:
            run.history.stopped = "interrupted"
        finally:
            bar.close()
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    return run.history


def _check_training_arguments(X, y, X_val, y_val, *, epochs, batch_size, lr, weight_decay, clip_grad,
                              warmup_steps, patience, on_nonfinite, resume, checkpoint_path) -> None:
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive integers, got {epochs!r} and {batch_size!r}")
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", allow_zero=True)
    if clip_grad is not None:
        check_positive(clip_grad, "clip_grad")  # a negative bound would turn clipping into gradient ascent
    if int(warmup_steps) < 0:
        raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps!r}")
    if patience is not None and int(patience) < 1:
        raise ValueError(f"patience must be a positive number of epochs (or None), got {patience!r}")
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    if X.shape[0] == 0:
        raise ValueError("X is empty: no rows to train on")
    if y.dim() != 1:
        raise ValueError(f"y must be one-dimensional (one target per row), got shape {tuple(y.shape)}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"mismatched lengths: X has {X.shape[0]} rows, y has {y.shape[0]}")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    if X_val is not None:
        if tuple(X_val.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError(f"X_val rows have shape {tuple(X_val.shape[1:])}, X rows {tuple(X.shape[1:])}")
        if y_val.dim() != 1 or X_val.shape[0] != y_val.shape[0]:
            raise ValueError(f"mismatched validation data: X_val has {X_val.shape[0]} rows, y_val has shape "
                             f"{tuple(y_val.shape)}")
    if patience is not None and X_val is None:
        raise ValueError("patience (early stopping) needs a validation set: pass X_val and y_val")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")


def _check_context(context, y, name: str) -> None:
    """Per-row context: a dict of tensors with one value per row of ``y``."""
    if context is None:
        return
    if not isinstance(context, dict) or not all(isinstance(v, torch.Tensor) for v in context.values()):
        raise TypeError(f"{name} must be a dict of tensors (one value per row), got {type(context).__name__}")
    if y is None and context:
        raise ValueError(f"{name} was given without its targets")
    for key, value in context.items():
        if value.dim() < 1 or value.shape[0] != y.shape[0]:
            raise ValueError(f"{name}[{key!r}] must have one value per row ({y.shape[0]}), got shape "
                             f"{tuple(value.shape)}")


def _architecture(config: dict) -> dict:
    """The parts of a checkpoint's config that fix the shapes of its parameters."""
    return {k: config.get(k) for k in ("flow_config", "head_config")}


def _distributed_context(batch_size: int):
    from .distributed import current_context

    ctx = current_context()
    if ctx is None:
        raise RuntimeError("distributed=True needs an initialised process group: call "
                           "bayes_diglm.training.distributed.init_distributed() under torchrun")
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} (the global batch) must be a multiple of the number of "
                         f"processes {ctx.world_size}")
    return ctx


def _check_custom_training(model, optimizer, lr_schedule, batch_sampler) -> None:
    """``optimizer`` must step ``model``'s own parameters (one over other tensors would train nothing);
    ``lr_schedule`` and ``batch_sampler`` must be callables."""
    if optimizer is not None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        own = {id(p) for p in model.parameters()}
        stepped = [p for group in optimizer.param_groups for p in group["params"]]
        if not stepped or any(id(p) not in own for p in stepped):
            raise ValueError("optimizer must be built over the model's own parameters (model.parameters()); "
                             "it holds tensors that are not the model's")
    for value, name in ((lr_schedule, "lr_schedule"), (batch_sampler, "batch_sampler")):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a callable, got {type(value).__name__}")


class _TrainingRun:
    """The mutable state of one training run (optimizer, step count, history, early stopping) and its steps."""

    def __init__(self, model: torch.nn.Module, optimizer, *, lr, warmup_steps, clip_grad, on_nonfinite, distributed,
                 lr_schedule=None):
        self.model, self.optimizer = model, optimizer
        self.lr, self.warmup_steps, self.clip_grad, self.lr_schedule = lr, warmup_steps, clip_grad, lr_schedule
        self.on_nonfinite, self.distributed = on_nonfinite, distributed
        self.history = TrainHistory()
        self.best_state, self.best_value, self.bad_epochs, self.step = None, -math.inf, 0, 0
        self.part_names: set[str] = set()  # the keys of the module's parts, recorded per epoch

    def restore(self, ckpt: dict, epochs: int) -> int:
        """Load a checkpoint's state; return the epoch to continue from."""
        self.model.load_state_dict(ckpt["model"])
        settings = [(g["lr"], g["weight_decay"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(ckpt["optimizer"])
        # Adam's moments come from the checkpoint; the learning rate and weight decay are this call's.
        for group, (lr, weight_decay) in zip(self.optimizer.param_groups, settings, strict=True):
            group["lr"], group["weight_decay"] = lr, weight_decay
        self.history = TrainHistory.from_dict(ckpt["history"])
        self.best_state, self.best_value = ckpt.get("best_state"), float(ckpt["best_value"])
        self.bad_epochs, self.step = int(ckpt["bad_epochs"]), int(ckpt["step"])
        return epochs if self.history.stopped == "early_stopping" else int(ckpt["epoch"]) + 1

    def checkpoint(self, epoch: int, config: dict | None) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
            "step": self.step, "history": self.history.as_dict(), "best_state": self.best_state,
            "best_value": self.best_value, "bad_epochs": self.bad_epochs, "config": config or {},
        }

    def _update(self, net, xb, yb, epoch: int, context: dict):
        """One optimizer step; returns the batch's parts, or None when a non-finite batch was skipped."""
        if self.lr_schedule is not None:
            lr = self.lr_schedule(self.step)
            if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr < 0:
                raise ValueError(f"lr_schedule({self.step}) must be a finite non-negative number, got {lr!r}")
            for group in self.optimizer.param_groups:
                group["lr"] = float(lr)
        elif self.warmup_steps > 0:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * min(1.0, (self.step + 1) / self.warmup_steps)
        value, parts = net(xb, yb, **context)
        self.part_names.update(parts)
        loss = -value
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        # Under DDP every rank must run backward (its all-reduce); the all-reduced gradient's norm, the same on
        # every rank, then decides for all.
        if finite or self.distributed:
            loss.backward()
            # clip_grad_norm_ with max_norm=inf only measures the norm.
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad or math.inf)
            finite = bool(torch.isfinite(norm))
        if not finite:
            if self.on_nonfinite == "skip":
                self.history.skipped_batches += 1
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                return None
            raise NonFiniteLossError(
                f"the training loss or its gradient became non-finite at epoch {epoch}, step {self.step} "
                f"(loss={float(loss.detach())}); the model keeps its parameters from before this step. "
                "Try a lower lr, gradient clipping, or on_nonfinite='skip'"
            )
        self.optimizer.step()
        self.step += 1
        return {**parts, "loss": loss.detach()}

    def epoch(self, net, pairs, *, epoch: int, device, bar, ctx) -> dict:
        """Train over the ``(x, y, context)`` minibatches ``pairs``; return the epoch's record (means over the rows
        actually trained on)."""
        sums: dict[str, float] = {}
        seen = 0
        for xb, yb, cb in pairs:
            parts = self._update(net, xb.to(device), yb.to(device), epoch, {k: v.to(device) for k, v in cb.items()})
            bar.update(1)
            if parts is None:
                continue
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value) * xb.shape[0]
            seen += xb.shape[0]
            bar.set_postfix(loss=f"{float(parts['loss']):.3f}")
        keys = ["loss", *sorted(k for k in self.part_names if k != "loss")]
        totals = [sums.get(k, math.nan) for k in keys]
        if ctx is not None:
            from .distributed import all_reduce_sum

            *totals, seen = all_reduce_sum([*totals, seen], device=ctx.device)
        if seen == 0:  # every batch was skipped: report that, not a perfect-looking zero
            totals, seen = [math.nan] * len(keys), 1
        return {"epoch": epoch, **{k: t / seen for k, t in zip(keys, totals, strict=True)}}

    def validate(self, record: dict, X_val, y_val, *, epoch: int, patience, batch_size: int, device,
                 context=None) -> bool:
        """Add validation figures to ``record``, track the best state, append the record; True to stop early."""
        if X_val is not None:
            val = evaluate_module(self.model, X_val, y_val, batch_size=batch_size, device=device, context=context)
            record.update({f"val_{k}": v for k, v in val.items()})
            if val["objective"] > self.best_value:
                self.best_value, self.bad_epochs, self.history.best_epoch = val["objective"], 0, epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
            else:
                self.bad_epochs += 1
        self.history.epochs.append(record)
        if patience is not None and self.bad_epochs >= patience:
            self.history.stopped = "early_stopping"
            return True
        return False
