"""Sphinx configuration: the narrative pages (Markdown, via myst-parser) and an API reference from docstrings.

The reference is generated at build time by :mod:`_apigen` into ``docs/api/`` (not committed): one page per
package of ``bayes_diglm``, every name of every module's ``__all__`` documented once, where it is defined.
The build needs no network (no intersphinx).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _apigen import write_api_pages  # noqa: E402

import bayes_diglm  # noqa: E402

project = "bayes_diglm"
author = "bayes_diglm developers"
copyright = "2026, bayes_diglm developers"  # noqa: A001 (Sphinx's name)
release = version = bayes_diglm.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
html_theme = "alabaster"
html_static_path: list[str] = []

# Docstrings are NumPy style; napoleon reads them without the numpydoc section checks.
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
autodoc_inherit_docstrings = True

# The Markdown pages link to the repository's files outside docs/ (README, benchmarks/, experiments/); those
# links are kept as plain links, and headings may start at any level below the title.
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "myst.header"]

write_api_pages(HERE / "api")


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn's generated set_{fit,predict,...}_request methods: documented by scikit-learn, and their
    # docstrings cite its glossary, which this build does not have.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
