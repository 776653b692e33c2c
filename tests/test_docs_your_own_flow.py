"""docs/your_own_flow.md: its Python blocks run as written, one after another in one namespace."""

import re
from pathlib import Path

from bayes_diglm.flows import unregister_flow

PAGE = Path(__file__).resolve().parents[1] / "docs" / "your_own_flow.md"


def test_your_own_flow_page_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 4, "the page should show its examples as Python blocks"
    namespace = {"__name__": "__docs__"}
    try:
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), namespace)
    finally:
        for name in ("docs-coupling", "docs-nsf"):
            unregister_flow(name)
    assert "accuracy" in capsys.readouterr().out
