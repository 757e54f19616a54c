"""Rollout tests run many tiny tensor operations: one intra-op thread avoids thread hand-off
stalls on small shared CPUs (the caller's setting is restored afterwards)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
