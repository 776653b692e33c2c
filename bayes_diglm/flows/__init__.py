"""Invertible feature extractors built from Pyro ``TransformModule`` objects, each mapping data to latent."""

from .base import ActNorm, Flow, InverseAccuracyWarning, SequentialFlow, clear_transform_cache
from .compile import compile_flow, is_compiled
from .coupling import BoundedAffineCoupling
from .dequantize import TabularDequantizer
from .glow import ConvConditioner, GlowFlow, InvertibleConv1x1, Split, glow
from .image import Dequantize, Squeeze, bits_per_dim
from .linear import ActNormLinear, InvertibleLinear
from .realnvp import Reverse, realnvp
from .spline import spline

__all__ = [
    "InverseAccuracyWarning",
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
    "TabularDequantizer",
    "bits_per_dim",
    "clear_transform_cache",
    "compile_flow",
    "is_compiled",
    "glow",
    "realnvp",
    "spline",
]
