"""Every test, doctest and module fixture runs seeded and single-threaded."""

import os

import numpy as np
import pytest
import torch

# One thread, for the whole session and for the processes tests start (the CLI, the fault and resume scripts).
# A per-test setting is not enough: module fixtures are set up before any function fixture, so they trained at
# torch's default thread count, and on a loaded 2-core machine two threads per op ran one module fixture 50-100
# times slower (tests/test_family_registry.py's `trained`: 108 s in a loaded full run, 2.3 s alone).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def _seed():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - doctests and legacy code paths may use the global generator


@pytest.fixture(autouse=True, scope="module")
def _seeded_module():
    """Module fixtures start from the same random state whatever ran before them."""
    _seed()


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    _seed()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a test that changed it (an experiment's worker settings) does not leak it
    yield
    torch.set_num_threads(threads)
