"""Experiments summarise repeated numerical warnings once instead of printing each with its source line."""

import io
import warnings

import numpy as np
import pytest

from bayes_diglm.experiments.common import summarized_warnings


def test_runtime_warnings_are_counted_once_per_message_and_others_still_shown():
    buf = io.StringIO()
    with pytest.warns(UserWarning, match="not numerical"):
        with summarized_warnings("demo", stream=buf) as summary:
            for _ in range(3):
                with np.errstate(over="warn"):
                    np.exp(np.array([1000.0]))
            np.log(np.array([0.0]))
            warnings.warn("not numerical", UserWarning, stacklevel=1)
    messages = {d["message"]: d["count"] for d in summary}
    assert messages == {"overflow encountered in exp": 3, "divide by zero encountered in log": 1}
    text = buf.getvalue()
    assert text.startswith("demo: 4 RuntimeWarnings, 2 distinct:")
    assert "3 x RuntimeWarning: overflow encountered in exp" in text and text.count("\n") == 3


def test_nothing_printed_without_warnings():
    buf = io.StringIO()
    with summarized_warnings("quiet", stream=buf) as summary:
        np.exp(np.array([1.0]))
    assert summary == [] and buf.getvalue() == ""
