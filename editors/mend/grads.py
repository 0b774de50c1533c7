"""The gradient decomposition MEND starts from.

For a matrix ``y = W u`` applied at every token, the gradient of a loss is
``∇W = Σ_t δ_t u_tᵀ`` (``out x in``) with ``u_t`` the matrix's input and ``δ_t = ∂L/∂y_t``.
:func:`capture` runs a loss once and records, per edited module, the inputs ``u``
(T x in) and output gradients ``δ`` (T x out) of every token of the batch (padding
included; its δ is zero). The model's parameters are not touched and get no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from benchmark.core.arch import get_module


@contextmanager
def frozen(model: torch.nn.Module):
    """Parameters without gradients inside the block (restored after)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def _hooks(model: torch.nn.Module, names: Sequence[str], inputs: dict, deltas: dict):
    handles = []

    def make(name: str):
        def hook(module, args, output):
            inputs[name] = args[0].detach()
            out = output if output.requires_grad else output.detach().requires_grad_(True)

            def save(grad: torch.Tensor) -> None:
                deltas[name] = grad.detach()

            out.register_hook(save)
            return out
        return hook

    try:
        for name in names:
            handles.append(get_module(model, name).register_forward_hook(make(name)))
        yield
    finally:
        for h in handles:
            h.remove()


def capture(model: torch.nn.Module, names: Sequence[str], loss_fn: Callable[[torch.nn.Module], torch.Tensor],
            ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """Run ``loss_fn(model)`` and backpropagate it; per module name ``(u, δ)`` flattened to
    rows (tokens), and the loss value."""
    inputs: dict[str, torch.Tensor] = {}
    deltas: dict[str, torch.Tensor] = {}
    with torch.enable_grad(), frozen(model), _hooks(model, names, inputs, deltas):
        loss = loss_fn(model)
        loss.backward()
    out = {}
    for name in names:
        if name not in inputs or name not in deltas:
            raise RuntimeError(f"module {name} was not reached by the loss (no input or gradient recorded)")
        u, d = inputs[name], deltas[name]
        out[name] = (u.reshape(-1, u.shape[-1]), d.reshape(-1, d.shape[-1]))
    return out, float(loss.detach())


def outer_sum(u: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``Σ_t δ_t u_tᵀ`` (out x in) from rows u (T x in) and δ (T x out)."""
    return delta.T @ u
