"""Comparison models for the experiments: the heteroscedastic MLP, deep ensembles, and their predictives."""

from .mlp import HeteroscedasticMLP, ensemble_predictive, train_ensemble, train_mlp
from .predictive import GaussianMixturePredictive

__all__ = [
    "GaussianMixturePredictive",
    "HeteroscedasticMLP",
    "ensemble_predictive",
    "train_ensemble",
    "train_mlp",
]
