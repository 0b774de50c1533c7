"""Fixtures shared by the evaluation tests: one thread, the two tiny model layouts."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    # tiny models are ~15x faster on one thread when the 2 shared cores are busy
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def lm(request, one_thread):
    from benchmark import models

    return models.load(request.param)
