"""Fixtures for the tests (the root conftest.py seeds every test and runs it single-threaded)."""

import pytest
import torch


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
