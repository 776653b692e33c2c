"""Shared fixtures: seeded RNGs and float64 defaults where tests check math."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    # One thread: on a shared 2-core machine torch's thread pool oversubscribes and runs many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    np.random.seed(0)  # noqa: NPY002 - doctests and legacy code paths may use the global generator
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
