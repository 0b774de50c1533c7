"""Small pieces shared by the editors: explicit editor state, layer checks and C0 solves.

- :class:`EmptyState`: the state of a method with nothing to carry (ROME, plain MEMIT).
- :class:`TensorState`: named tensors + JSON-able counters, for accumulated K·Kᵀ etc.
  ``state_dict()`` returns ``{"tensors": {...}, "meta": {...}}`` (clones), and
  ``load_state_dict`` restores it; both round-trip through a checkpoint.
- :func:`check_layers(lm, layers, method)`: every edited layer exists in the model (a
  DataError naming the hparams file and the field ``layers``).
- :func:`c0_inverse_applier(c0)`: a cached-factorisation solve ``x -> C0⁻¹ x`` in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmark.core.arch import LoadedModel
from editors.hparams import check_model_layers


@dataclass
class EmptyState:
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"this editor keeps no state, got keys {sorted(state)}")


@dataclass
class TensorState:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {"tensors": {k: v.detach().clone() for k, v in self.tensors.items()},
                "meta": dict(self.meta)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tensors = {k: v.detach().clone() for k, v in state.get("tensors", {}).items()}
        self.meta = dict(state.get("meta", {}))


def check_layers(lm: LoadedModel, layers: Sequence[int], method: str) -> None:
    check_model_layers(method, lm.entry, layers)


def c0_inverse_applier(c0: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> C0⁻¹ x`` (x: (d,) or (d, n)) via one Cholesky factorisation in float64
    (falls back to an LU solve when C0 is not numerically positive definite)."""
    c = c0.to(torch.float64)
    chol, info = torch.linalg.cholesky_ex(c)
    if int(info) == 0:
        def solve(x: torch.Tensor) -> torch.Tensor:
            x64 = x.to(torch.float64)
            col = x64[:, None] if x64.ndim == 1 else x64
            out = torch.cholesky_solve(col, chol)
            return out[:, 0] if x64.ndim == 1 else out
        return solve
    lu, piv = torch.linalg.lu_factor(c)

    def solve_lu(x: torch.Tensor) -> torch.Tensor:
        x64 = x.to(torch.float64)
        col = x64[:, None] if x64.ndim == 1 else x64
        out = torch.linalg.lu_solve(lu, piv, col)
        return out[:, 0] if x64.ndim == 1 else out
    return solve_lu
