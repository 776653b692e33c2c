"""The documentation builds offline with warnings as errors, and its API reference covers every ``__all__``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    # What `make docs` runs, into a temporary folder; one thread keeps it quiet on a shared machine.
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
                             str(DOCS), str(out)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert result.returncode == 0, f"sphinx failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_docs_build_without_warnings(built):
    for page in ["index", "quickstart", "flights", "mixed", "api/index", "changelog"]:
        assert (built / f"{page}.html").is_file(), page


def test_reference_documents_every_public_name(built):
    from sphinx.util.inventory import InventoryFile

    sys.path.insert(0, str(DOCS))
    try:
        from _apigen import home_module, public_names
    finally:
        sys.path.remove(str(DOCS))
    with open(built / "objects.inv", "rb") as fh:
        inventory = InventoryFile.load(fh, "", os.path.join)
    data = getattr(inventory, "data", inventory)  # Sphinx 8 returns the dict itself, Sphinx 9 an object
    documented = {name for kind, entries in data.items() if kind.startswith("py:") for name in entries}
    exported = public_names()
    assert "bayes_diglm.models.estimators" in exported and "bayes_diglm.inference" in exported
    missing = [f"{module}.{name} (documented at {home_module(module, name, exported)})"
               for module, names in exported.items() for name in names
               if f"{home_module(module, name, exported)}.{name}" not in documented]
    assert not missing, f"public names without a reference entry: {missing}"
