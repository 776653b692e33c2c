"""Invertible feature extractors built from Pyro ``TransformModule`` objects, each mapping data to latent."""

from .adapters import PlainTransform, PyroStep, ZukoTransform
from .base import ActNorm, Flow, InverseAccuracyWarning, SequentialFlow, clear_transform_cache
from .compile import compile_flow, is_compiled
from .coupling import BoundedAffineCoupling
from .dequantize import TabularDequantizer
from .glow import ConvConditioner, GlowFlow, InvertibleConv1x1, Split, glow
from .image import Dequantize, Squeeze, bits_per_dim
from .linear import ActNormLinear, InvertibleLinear
from .realnvp import Reverse, realnvp
from .registry import factory_name, flow_factory, register_flow, registered_flows, unregister_flow
from .spec import FlowSpec, build_flow, make_flow, resolve_flow, saveable_flow_config
from .spline import spline
from .user import as_flow, check_flow

__all__ = [
    "InverseAccuracyWarning",
    "ActNorm",
    "ActNormLinear",
    "BoundedAffineCoupling",
    "ConvConditioner",
    "Dequantize",
    "Flow",
    "FlowSpec",
    "GlowFlow",
    "InvertibleConv1x1",
    "InvertibleLinear",
    "PlainTransform",
    "PyroStep",
    "Reverse",
    "SequentialFlow",
    "Split",
    "Squeeze",
    "TabularDequantizer",
    "ZukoTransform",
    "as_flow",
    "bits_per_dim",
    "build_flow",
    "check_flow",
    "clear_transform_cache",
    "compile_flow",
    "is_compiled",
    "factory_name",
    "flow_factory",
    "glow",
    "make_flow",
    "realnvp",
    "register_flow",
    "registered_flows",
    "resolve_flow",
    "saveable_flow_config",
    "spline",
    "unregister_flow",
]
