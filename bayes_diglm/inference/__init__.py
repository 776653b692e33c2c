"""Training by maximum likelihood, checkpoints, and posteriors over the GLM weights."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .training import NonFiniteLossError, TrainHistory, batched, evaluate_diglm, train_diglm

__all__ = [
    "CheckpointError",
    "NonFiniteLossError",
    "TrainHistory",
    "batched",
    "evaluate_diglm",
    "load_checkpoint",
    "save_checkpoint",
    "train_diglm",
]
