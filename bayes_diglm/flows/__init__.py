"""Invertible feature extractors built from Pyro ``TransformModule``s, each mapping data to latent."""

from .base import ActNorm, Flow, SequentialFlow, clear_transform_cache
from .realnvp import InvertibleLinear, StableConditioner, realnvp

__all__ = [
    "ActNorm",
    "Flow",
    "InvertibleLinear",
    "SequentialFlow",
    "StableConditioner",
    "clear_transform_cache",
    "realnvp",
]
