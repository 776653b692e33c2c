"""Every test and doctest runs seeded and single-threaded."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    torch.manual_seed(0)
    # One thread: on a shared 2-core machine torch's thread pool oversubscribes and runs many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    np.random.seed(0)  # noqa: NPY002 - doctests and legacy code paths may use the global generator
    yield
    torch.set_num_threads(threads)
