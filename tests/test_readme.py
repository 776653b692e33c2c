"""The Python examples of README.md and of the docs pages run as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose blocks a test of their own runs, with checks (and clean-up) of its own: not run twice.
OWN_TESTS = {"your_own_flow.md": "test_docs_your_own_flow.py", "bandits.md": "test_bandits_api.py",
             "nuts.md": "test_nuts.py"}


def python_blocks(page: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_readme_shows_a_python_example():
    assert python_blocks(ROOT / "README.md"), "the README should show a Python example"


def test_pages_left_out_have_their_own_test():
    for page, test in OWN_TESTS.items():
        assert page in (ROOT / "tests" / test).read_text(), (page, test)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p) and p.name not in OWN_TESTS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, capsys):
    # One namespace per page, as a reader running the blocks top to bottom in one session would have.
    namespace = {"__name__": f"__{page.stem}__"}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)
    out = capsys.readouterr().out
    if page.name == "README.md":
        assert "accuracy" in out
