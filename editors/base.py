"""The editor contract: requests in, a Delta out; applying a Delta is separate.

An editor is configured by typed hyperparameters and, given the current model and a
batch of :class:`EditRequest`, returns a :class:`Delta` (per edited matrix, low-rank
factors ``A @ B.T`` where the method yields them, dense otherwise) together with its
new explicit state. It never mutates the model it is given (compute-then-apply): the
trajectory applies the Delta (after any restraint) with :func:`apply_delta`.

Orientation: every matrix in a Delta is ``out x in`` (the math orientation, ``y = W x``),
whatever the stored layout; :func:`apply_delta` transposes for GPT-2 Conv1D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from benchmark.core.arch import Layout, LoadedModel, from_out_in, get_module
from benchmark.core.requests import EditRequest


@dataclass
class MatrixDelta:
    """The update of one edited matrix, ``out x in``: ``A @ B.T`` or ``dense``."""

    name: str  # module name of the edited matrix (from the model registry templates)
    layout: Layout  # stored layout of that matrix
    A: torch.Tensor | None = None  # out x r
    B: torch.Tensor | None = None  # in x r
    dense: torch.Tensor | None = None  # out x in

    def __post_init__(self) -> None:
        if (self.dense is None) == (self.A is None or self.B is None):
            raise ValueError(f"{self.name}: give either factors (A, B) or dense, not both or neither")

    @property
    def is_factored(self) -> bool:
        return self.dense is None

    def to_dense(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        return self.A @ self.B.T

    @property
    def rank_bound(self) -> int:
        """Upper bound on the rank (number of factor columns, or min dim when dense)."""
        if self.dense is not None:
            return min(self.dense.shape)
        return self.A.shape[1]


@dataclass
class Delta:
    """A whole edit: one :class:`MatrixDelta` per edited matrix, plus diagnostics."""

    matrices: dict[str, MatrixDelta]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Undo:
    """Saved original weights of the matrices a Delta touched (restores bit for bit)."""

    saved: dict[str, torch.Tensor]
    model: torch.nn.Module

    def revert(self) -> None:
        with torch.no_grad():
            for name, original in self.saved.items():
                get_module(self.model, name).weight.copy_(original)


def apply_delta(model: torch.nn.Module, delta: Delta) -> Undo:
    """Add ``delta`` to the model's weights in place; return an :class:`Undo`."""
    saved: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, md in delta.matrices.items():
            weight = get_module(model, name).weight
            saved[name] = weight.detach().clone()
            update = from_out_in(md.to_dense(), md.layout).to(weight.dtype)
            if update.shape != weight.shape:
                raise ValueError(f"{name}: update shape {tuple(update.shape)} != weight {tuple(weight.shape)}")
            weight.add_(update.to(weight.device))
    return Undo(saved, model)


class EditorState(Protocol):
    """Explicit state carried across a sequence of edits; must round-trip through a checkpoint."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Editor(Protocol):
    """What every method in editors/ implements."""

    name: str

    def init_state(self, model: LoadedModel) -> EditorState:
        """Fresh state for a new trajectory on ``model`` (nothing edited yet)."""
        ...

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state: EditorState) -> None:
        """Called once before the first edit with every request of the trajectory
        (NSE computes its target values on the unedited model here). Default: nothing."""
        ...

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest],
                state: EditorState) -> Delta:
        """The Delta for one batch on the current model. Updates ``state`` for the
        batch as if the Delta were applied; does not change the model's weights."""
        ...
