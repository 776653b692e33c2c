"""Every test, doctest and module fixture runs seeded and single-threaded."""

import os

# One thread, for the whole session and for the processes tests start (the CLI, the fault and resume scripts), in
# torch and in the BLAS under NumPy and SciPy (set before they load; both OpenBLAS builds ran 2 threads in every
# test before). A per-test setting is not enough: module fixtures are set up before any function fixture, so they
# trained at torch's default thread count, and on a loaded 2-core machine two threads per op ran one module fixture
# 50-100 times slower (tests/test_family_registry.py's `trained`: 108 s in a loaded full run, 2.3 s alone).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402 - after the thread settings, which the BLAS reads when it loads
import pytest  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(1)  # in case a plugin loaded NumPy's BLAS before this file
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
