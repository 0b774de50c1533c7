"""MEMIT and sequential MEMIT (docs/methods.md §2.3).

Both run the shared layer loop of :mod:`editors.batch` (z* at the last edited layer L,
then per layer, ascending: keys K_l on the model with the lower layers' updates applied,
R = (Z − H_L) / (layers left)) with the solve

    ΔW_l = R K_lᵀ (λ C0 + [Kp Kpᵀ] + K_l K_lᵀ)⁻¹        (float64, :func:`editors.solvers.memit_solve`)

Sequential MEMIT (the AlphaEdit/NSE repositories' baseline) keeps the accumulated
``Kp Kpᵀ`` of every previously edited key per layer in its state. After a batch it adds the
batch's keys recomputed on the edited model (as AlphaEdit's released code does).
State tensors are stored in float32 like the released ``cache_c``; solves are float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.core.arch import LoadedModel
from benchmark.core.requests import EditRequest
from editors import batch, solvers
from editors.base import Delta
from editors.common import EmptyState, TensorState, check_layers
from editors.hparams import MEMITHparams
from editors.targets import Engine
from editors.templates import context_templates


class MEMIT:
    """Plain MEMIT: ``ΔW_l = R K_lᵀ (λ C0 + K_l K_lᵀ)⁻¹``; no state across edits."""

    name = "memit"
    sequential = False

    def __init__(self, hparams: MEMITHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None, progress: bool = True,
                 target_engine: Engine = "fast"):
        self.target_engine = target_engine
        self.hparams = hparams
        self._c0 = batch.C0Cache(data_root, cache_root, progress)

    def init_state(self, model: LoadedModel) -> EmptyState | TensorState:
        return EmptyState()

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state) -> None:
        """Context templates and C0 from the unedited model."""
        check_layers(model, self.hparams.layers, self.name)
        batch.warn_if_mlp_output_normed(model, self.name)
        context_templates(model, self.hparams.templates)
        self._c0.get(model, self.hparams)

    def _prior(self, state, layer: int) -> torch.Tensor | None:
        return None

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest], state) -> Delta:
        hp, lm = self.hparams, model
        if not requests:
            raise ValueError(f"{self.name}: empty batch")
        check_layers(lm, hp.layers, self.name)
        if self.sequential:
            batch.check_kpkpt_state(state, lm, hp.layers)
        templates = context_templates(lm, hp.templates)
        c0 = self._c0.get(lm, hp)
        groups = batch.key_groups(hp)
        Z, tinfo = batch.residual_targets(lm, requests, hp, templates, self.target_engine)

        def solve(i: int, layer: int, R: torch.Tensor, K: torch.Tensor):
            return solvers.memit_solve(R, K, c0[layer], hp.mom2_update_weight, self._prior(state, layer))

        with batch.TemporaryEdits(lm.model) as edits:
            layer_info = batch.layer_sweep(lm, requests, hp.layers, templates, Z, solve, edits,
                                           groups)
            final_res = (Z - batch.current_outputs(lm, requests, hp.layers[-1])).norm(dim=0)
            if self.sequential:
                batch.accumulate_keys(state, lm, requests, hp.layers, templates, groups)
        info = {"method": self.name, "layers": list(hp.layers), "n_requests": len(requests),
                "layer_info": layer_info, "final_residual_norm": final_res.tolist(), **tinfo}
        return Delta(edits.matrices, info)


class SequentialMEMIT(MEMIT):
    """Sequential MEMIT: ``ΔW_l = R K_lᵀ (λ C0 + Kp Kpᵀ + K_l K_lᵀ)⁻¹`` with the accumulated
    ``Kp Kpᵀ`` of all previously edited keys (state)."""

    name = "memit-seq"
    sequential = True

    def init_state(self, model: LoadedModel) -> TensorState:
        check_layers(model, self.hparams.layers, self.name)
        return batch.new_kpkpt_state(model, self.hparams.layers)

    def _prior(self, state, layer: int) -> torch.Tensor | None:
        return state.tensors[batch.kpkpt_name(layer)]
