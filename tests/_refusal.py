"""What every contract asserts of a bad call: it is refused by name, and the fitted object is left as it was."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

__all__ = ["assert_refused", "assert_unchanged"]

ERRORS = (ValueError, TypeError)


def assert_refused(cases: dict[str, tuple[Callable[[], object], str]]) -> None:
    """Each ``label: (call, pattern)`` must raise ``ValueError`` or ``TypeError`` whose message matches ``pattern``
    (``re.search``, as ``pytest.raises(match=)``); every failing case is reported, not only the first."""
    failures = []
    for label, (call, pattern) in cases.items():
        try:
            call()
        except ERRORS as exc:
            if not re.search(pattern, str(exc)):
                failures.append(f"{label}: {type(exc).__name__}({str(exc)[:300]!r}) does not match {pattern!r}")
        except Exception as exc:  # any other error breaks the contract: reported by label
            failures.append(f"{label}: raised {type(exc).__name__}: {str(exc)[:300]}")
        else:
            failures.append(f"{label}: was accepted")
    assert not failures, "bad calls not refused by name:\n" + "\n".join(failures)


def assert_unchanged(before: list, after: list, what: str) -> None:
    """Snapshots of a fitted object's outputs (predictions, densities, draws) taken before and after ``what``
    must be bit-identical."""
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), f"{what} changed the fitted object's outputs"
