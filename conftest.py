"""Doctest setup: every docstring example runs seeded and single-threaded."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_doctests():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - doctests and legacy code paths may use the global generator
    yield
