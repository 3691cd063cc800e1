"""One intra-op thread for the filter tests: small tensors on a shared 2-core machine, where a
second OpenMP thread mostly waits for a busy core (see tests/classify/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
