"""Comparison models for the experiments: the heteroscedastic MLP, deep ensembles, and their predictives."""

from .mlp import HeteroscedasticMLP, ensemble_predictive, train_ensemble, train_mlp
from .predictive import GaussianMixturePredictive, GaussianPredictive, StudentTPredictive

__all__ = [
    "GaussianMixturePredictive",
    "GaussianPredictive",
    "HeteroscedasticMLP",
    "StudentTPredictive",
    "ensemble_predictive",
    "train_ensemble",
    "train_mlp",
]
