"""Invertible feature extractors built from Pyro ``TransformModule``s, each mapping data to latent."""

from .base import ActNorm, Flow, SequentialFlow, clear_transform_cache
from .glow import ConvConditioner, GlowFlow, InvertibleConv1x1, Split, glow
from .image import Dequantize, Squeeze, bits_per_dim
from .realnvp import InvertibleLinear, Reverse, StableConditioner, realnvp

__all__ = [
    "ActNorm",
    "ConvConditioner",
    "Dequantize",
    "Flow",
    "GlowFlow",
    "InvertibleConv1x1",
    "InvertibleLinear",
    "Reverse",
    "SequentialFlow",
    "Split",
    "Squeeze",
    "StableConditioner",
    "bits_per_dim",
    "clear_transform_cache",
    "glow",
    "realnvp",
]
