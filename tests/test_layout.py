"""The package's layers: imports point one way (likelihoods, flows -> inference -> training -> models -> ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayes_diglm"

# Lower layers never import higher ones; within a layer, a package imports only itself.
LAYERS = {
    "_validation": 0, "_fuzz": 0, "likelihoods": 0, "flows": 0, "data": 0,
    "inference": 1,
    "training": 2,
    "models": 3,
    "baselines": 4, "bandits": 4, "arviz": 4,
    "evaluation": 5, "plots": 5,
    "experiments": 6,
    "cli": 7, "__main__": 8,
}


def _unit(path: Path) -> str:
    """The top-level unit of the package a file belongs to (``inference``, ``arviz``, ...)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path) -> set[str]:
    """Every bayes_diglm unit a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PACKAGE)
    depth = len(rel.parts) - 1  # how many folders below bayes_diglm/
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "bayes_diglm":
                    continue
                rest = parts[1:]
            else:
                base = list(rel.parts[:-1])[: max(depth - (node.level - 1), 0)]
                rest = base + (node.module.split(".") if node.module else [])
            if rest:
                units.add(rest[0])
            else:  # ``from .. import x``: x are units (``__version__`` is the root's metadata)
                units.update(alias.name for alias in node.names if not alias.name.startswith("__"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "bayes_diglm" and len(parts) > 1:
                    units.add(parts[1])
    return units


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    unit = _unit(path)
    assert unit in LAYERS, f"{unit} has no layer: add it to LAYERS (and to DESIGN.md's order)"
    for other in _imported_units(path) - {unit}:
        assert other in LAYERS, f"{path.name} imports unknown unit {other}"
        assert LAYERS[other] < LAYERS[unit], (
            f"{path.relative_to(PACKAGE)} ({unit}, layer {LAYERS[unit]}) imports {other} (layer {LAYERS[other]})")
