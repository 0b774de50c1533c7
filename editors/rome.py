"""ROME: a rank-one update of one MLP output projection (docs/methods.md §2.2).

For one fact at the one layer of ``hparams.layers``: k = the template-averaged key at the
subject's last token, δ = the optimised shift of the MLP output at that layer (ROME form of
:func:`editors.targets.compute_target`),
u = C0⁻¹k. The update is

    ΔW = r uᵀ / (k_cᵀ u),   r = v* − W k_c,   v* = W k_bare + δ  (MLP output of the bare
                                                               prompt plus δ; a bias cancels)

so that (W + ΔW) k_c = v* exactly, where k_c is the bare prompt's key (``constraint_key:
bare``, the released code; then r = δ) or the averaged key (``average``: r = δ +
W (k_bare − k); then ΔW is exactly the minimiser of tr(ΔW C0 ΔWᵀ) subject to
(W + ΔW) k = v*, see :func:`rome_closed_form`).
The Delta holds the factors A = r (out×1), B = u/(k_cᵀu) (in×1). State is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.core.arch import LoadedModel, down_weight, to_out_in
from benchmark.core.requests import EditRequest
from editors import keys, stats
from editors.base import Delta, MatrixDelta
from editors.common import EmptyState, c0_inverse_applier, check_layers
from editors.hparams import ROMEHparams
from editors.targets import Engine, compute_target
from editors.templates import context_templates

log = logging.getLogger(__name__)


def rome_closed_form(W: torch.Tensor, c0: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (A, B) of ΔW = (v − W k)(C0⁻¹k)ᵀ / (kᵀC0⁻¹k), all in float64, ``W`` out×in."""
    W64, k64, v64 = W.to(torch.float64), k.to(torch.float64), v.to(torch.float64)
    u = torch.linalg.solve(c0.to(torch.float64), k64)
    return (v64 - W64 @ k64)[:, None], (u / (k64 @ u))[:, None]


def rome_factors(c0_inv_k: torch.Tensor, k_constraint: torch.Tensor, residual: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors for ΔW = residual · uᵀ/(k_cᵀu) with u = C0⁻¹k (already solved)."""
    u = c0_inv_k.to(torch.float64)
    denom = k_constraint.to(torch.float64) @ u
    return residual.to(torch.float64)[:, None], (u / denom)[:, None]


class ROME:
    """ROME editor (one fact per ``compute`` call)."""

    name = "rome"

    def __init__(self, hparams: ROMEHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None, progress: bool = True,
                 target_engine: Engine = "fast"):
        self.hparams, self.target_engine = hparams, target_engine
        self.data_root, self.cache_root, self.progress = data_root, cache_root, progress
        self._solvers: dict[tuple[str, int], object] = {}

    def init_state(self, model: LoadedModel) -> EmptyState:
        return EmptyState()

    def _solver(self, lm: LoadedModel):
        layer = self.hparams.layers[0]
        key = (str(sorted(lm.identity.items())), layer)
        if key not in self._solvers:
            c0 = stats.second_moment(lm, layer, self.hparams.stats, data_root=self.data_root,
                                     cache_root=self.cache_root, progress=self.progress)
            self._solvers[key] = c0_inverse_applier(c0)
        return self._solvers[key]

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state: EmptyState) -> None:
        """Generate the context templates on the unedited model and load C0."""
        context_templates(model, self.hparams.templates)
        self._solver(model)

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest], state: EmptyState) -> Delta:
        if len(requests) != 1:
            raise ValueError(f"ROME edits one fact per step, got a batch of {len(requests)}; "
                             "use batch size 1")
        hp, lm = self.hparams, model
        check_layers(lm, hp.layers, self.name)
        layer, request = hp.layers[0], requests[0]
        templates = context_templates(lm, hp.templates)
        solve = self._solver(lm)
        k_avg = keys.compute_keys(lm, [request], [layer], templates)[layer][0]
        k_bare = keys.compute_keys(lm, [request], [layer], ("",))[layer][0]
        res = compute_target(lm, request, layer, templates, hp.target, point="mlp_out",
                             engine=self.target_engine)
        W = to_out_in(down_weight(lm.model, lm.arch, layer), lm.arch.layout)
        if hp.constraint_key == "bare":
            k_con, residual = k_bare, res.delta
        else:  # v* − W k_avg with v* = W k_bare + δ
            k_con = k_avg
            shift = W.float() @ (k_bare - k_avg).to(device=W.device, dtype=torch.float32)
            residual = res.delta.double() + shift.double().cpu()
        A, B = rome_factors(solve(k_avg), k_con, residual)
        name = lm.arch.down_name(layer)
        md = MatrixDelta(name=name, layout=lm.arch.layout, A=A.to(W.dtype).cpu(), B=B.to(W.dtype).cpu())
        info = {"layer": layer, "target_steps": res.steps, "target_loss": res.losses[-1],
                "target_nll": res.nll, "delta_norm": float(res.delta.norm()),
                "h_norm": float(res.h_init.norm())}
        log.debug("ROME %s: %s", request.case_id, info)
        return Delta({name: md}, info)
