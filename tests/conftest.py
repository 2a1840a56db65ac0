"""Fixtures shared by the test modules (helpers.py holds the plain functions)."""

from __future__ import annotations

import pytest
import torch

from helpers import simulate_tiny


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """The tiny simulated set (``helpers.simulate_tiny``), made once; tests only read it."""
    return simulate_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def one_thread():
    """Two shared cores: torch's thread pool oversubscribes them badly; use one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
