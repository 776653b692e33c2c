"""Write the API reference pages: every name of every ``__all__`` in bayes_diglm, documented where it is defined.

A package's ``__all__`` mostly re-exports names its modules define; documenting each object once, at the module
that defines it, keeps Sphinx free of duplicate descriptions, and each package page lists what it re-exports
with a link. :func:`public_names` is also what ``tests/test_docs.py`` checks the built reference against.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import shutil
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer

import bayes_diglm

__all__ = ["public_modules", "public_names", "home_module", "write_api_pages"]

# Modules run as programs, not imported for their names.
SKIPPED = {"bayes_diglm.__main__"}


def public_modules() -> list[str]:
    """Every importable module of bayes_diglm, sorted (private ``_x`` modules and ``__main__`` left out)."""
    names = ["bayes_diglm"]
    for info in pkgutil.walk_packages(bayes_diglm.__path__, "bayes_diglm."):
        if info.name in SKIPPED or any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def public_names() -> dict[str, list[str]]:
    """``{module: its __all__}`` for every public module that has one."""
    out = {}
    for name in public_modules():
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            out[name] = [n for n in module.__all__ if not n.startswith("__")]
    return out


def home_module(module: str, name: str, exported: dict[str, list[str]]) -> str:
    """The module whose page documents ``module.name``: where the object is defined.

    Classes and functions say so (``__module__``, followed into a private module to the public one that
    re-exports it); for other objects (constants), it is the deepest module whose ``__all__`` lists the name
    with the same object.
    """
    obj = getattr(importlib.import_module(module), name)
    defined = getattr(obj, "__module__", None) if inspect.isclass(obj) or inspect.isroutine(obj) else None
    if defined in exported and name in exported[defined]:
        return defined
    candidates = [m for m, names in exported.items()
                  if name in names and getattr(importlib.import_module(m), name) is obj
                  and (defined is None or defined.startswith(m + ".") or m == module)]
    return max(candidates, key=lambda m: (m.count("."), m)) if candidates else module


def _entry(module: str, name: str, obj, attr_docs: dict) -> list[str]:
    """The directive that documents ``module.name``.

    A constant without a ``#:`` comment gets a bare ``py:data`` with its type: ``autodata`` would show its
    type's docstring (``dict()``'s) as if it were the constant's.
    """
    if inspect.isclass(obj):
        return [f".. autoclass:: {module}.{name}", "   :members:"]
    if inspect.isroutine(obj):
        return [f".. autofunction:: {module}.{name}"]
    if ("", name) in attr_docs:
        return [f".. autodata:: {module}.{name}", "   :no-value:"]
    return [f".. py:data:: {name}", f"   :module: {module}", f"   :type: {type(obj).__name__}"]


def _page_of(module: str) -> str:
    """The page a module is documented on: its top-level package below bayes_diglm (or the root)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def write_api_pages(folder: Path) -> list[Path]:
    """Write ``folder/index.rst`` and one page per top-level package; return the pages written."""
    exported = public_names()
    documented: dict[str, list[str]] = {m: [] for m in exported}  # module -> names documented there
    reexports: dict[str, list[tuple[str, str]]] = {m: [] for m in exported}  # module -> (name, home)
    for module, names in exported.items():
        for name in names:
            home = home_module(module, name, exported)
            if home == module:
                documented[module].append(name)
            else:
                reexports[module].append((name, home))
    pages: dict[str, list[str]] = {}
    for module in sorted(exported):
        pages.setdefault(_page_of(module), []).append(module)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    written = []
    for page, modules in pages.items():
        lines = [f"``{page}``", "=" * (len(page) + 4), ""]
        for module in modules:
            mod = importlib.import_module(module)
            if module != page:
                lines += [f"``{module}``", "-" * (len(module) + 4), ""]
            lines += [f".. automodule:: {module}", "   :no-members:", ""]
            if reexports[module]:
                lines += ["Also importable from here: " + ", ".join(
                    f":py:obj:`{name} <{home}.{name}>`" for name, home in reexports[module]) + ".", ""]
            attr_docs = ModuleAnalyzer.for_module(module).find_attr_docs()
            for name in documented[module]:
                lines += _entry(module, name, getattr(mod, name), attr_docs) + [""]
        path = folder / f"{page}.rst"
        path.write_text("\n".join(lines))
        written.append(path)
    index = ["API reference", "=============", "",
             "Every public name (each module's ``__all__``), documented once at the module that defines it.", "",
             ".. toctree::", "   :maxdepth: 1", ""] + [f"   {p}" for p in pages]
    (folder / "index.rst").write_text("\n".join(index) + "\n")
    return written
