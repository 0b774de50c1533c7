"""Random number generators of a cell: seeding, saved states, derived seeds, isolation.

The trajectory runs on the global RNGs (python, numpy, torch, CUDA) seeded from the cell
seed; their states are saved with the cell state so a resumed run continues the same
stream. Evaluation runs under :func:`isolated_rng` with a seed derived from the cell seed,
the checkpoint and the variant, so it never perturbs the trajectory.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from benchmark.core import io


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def derived_seed(*parts: object) -> int:
    return int(io.sha256_json(list(parts))[:8], 16)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block under ``seed`` and restore every RNG afterwards."""
    saved = rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        set_rng_state(saved)
