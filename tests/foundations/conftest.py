"""Foundations tests run torch on one CPU thread: their nets are tiny, and on a shared machine extra
threads only spin against each other (a 20-30x slowdown under load)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
