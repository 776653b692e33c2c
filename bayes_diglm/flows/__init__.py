"""Invertible feature extractors built from Pyro ``TransformModule``s, each mapping data to latent."""

from .base import ActNorm, Flow, SequentialFlow, clear_transform_cache
from .glow import ConvConditioner, GlowFlow, InvertibleConv1x1, Split, glow
from .image import Dequantize, Squeeze, bits_per_dim
from .coupling import BoundedAffineCoupling
from .linear import ActNormLinear, InvertibleLinear
from .realnvp import Reverse, realnvp

__all__ = [
    "ActNorm",
    "ActNormLinear",
    "BoundedAffineCoupling",
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
    "bits_per_dim",
    "clear_transform_cache",
    "glow",
    "realnvp",
]
