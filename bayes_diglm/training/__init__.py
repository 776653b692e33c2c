"""Training by maximum likelihood: the one training loop, checkpoints, and torch.distributed helpers.

:func:`train_module` trains any module whose ``module(x, y)`` returns ``(objective, parts)`` (the DIGLM, the
MLP baselines, bandit networks); :mod:`.checkpoint` writes and reads checkpoints safely; :mod:`.distributed`
sets up process groups, shards batches and all-reduces conjugate statistics; :mod:`.stream` sums conjugate
statistics over a stream of chunks and resumes after a crash.
"""

from .checkpoint import DIGEST_KEY, CheckpointError, content_digest, load_checkpoint, save_checkpoint
from .loop import NonFiniteLossError, TrainHistory, WithReplacement, batched, evaluate_module, train_module
from .stream import accumulate_stats

__all__ = [
    "DIGEST_KEY",
    "CheckpointError",
    "NonFiniteLossError",
    "TrainHistory",
    "WithReplacement",
    "accumulate_stats",
    "batched",
    "content_digest",
    "evaluate_module",
    "load_checkpoint",
    "save_checkpoint",
    "train_module",
]
