"""AlphaEdit: MEMIT's layer loop with the update projected onto the null space of the
preserved keys (docs/methods.md §2.4).

Per edited layer, once per base model: ``P = Û Ûᵀ`` with ``Û`` the eigenvectors of C0 whose
eigenvalue is below a threshold (``nullspace_threshold``; ``nullspace_threshold_kind``
``absolute`` as released, or scale-free ``relative``), cached on disk beside C0 under C0's
key extended by the threshold settings (:func:`editors.stats.derived_layer_artifact`).
Per batch and layer (keys recomputed after the lower layers' updates, as in MEMIT):

    ΔW = R K₁ᵀ P (Kp Kpᵀ P + K₁ K₁ᵀ P + β I)⁻¹        (β = ``L2``: released 10, paper 1)

with ``Kp Kpᵀ`` the accumulated keys of all previous batches (state, float32 like the
released ``cache_c``), to which the batch's keys, recomputed on the edited model, are
added afterwards (as the released code does). Every update annihilates keys in the
preserved subspace (``P k = 0`` ⇒ ``ΔW k = 0``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.core.arch import LoadedModel
from benchmark.core.requests import EditRequest
from editors import batch, solvers, stats
from editors.base import Delta
from editors.common import TensorState, check_layers
from editors.hparams import AlphaEditHparams
from editors.targets import Engine
from editors.templates import context_templates

log = logging.getLogger(__name__)

#: Bump when the way P is built from C0 changes (part of P's cache key).
PROJECTION_VERSION = 1


def threshold_of(hp: AlphaEditHparams) -> solvers.NullSpaceThreshold:
    return solvers.NullSpaceThreshold(hp.nullspace_threshold_kind, hp.nullspace_threshold)


class AlphaEdit:
    """AlphaEdit editor (batches of any size; state: accumulated Kp Kpᵀ per layer)."""

    name = "alphaedit"

    def __init__(self, hparams: AlphaEditHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None, progress: bool = True,
                 target_engine: Engine = "fast"):
        self.target_engine = target_engine
        self.hparams = hparams
        self.data_root, self.cache_root, self.progress = data_root, cache_root, progress
        self._projections: dict[str, dict[int, torch.Tensor]] = {}

    def projections(self, lm: LoadedModel) -> dict[int, torch.Tensor]:
        """P per edited layer (float32, d_ffn x d_ffn), from the disk cache or built from C0."""
        hp = self.hparams
        thr = threshold_of(hp)
        key = str(sorted(lm.identity.items())) + hp.stats.model_dump_json() + repr(thr)
        if key not in self._projections:
            params = {"mode": thr.mode, "value": thr.value, "version": PROJECTION_VERSION,
                      "dtype": "float32"}
            out = stats.derived_layer_artifacts(
                lm, hp.layers, hp.stats, "alphaedit-null-projection", params,
                lambda c0: solvers.null_space_projection(c0, thr).to(torch.float32),
                data_root=self.data_root, cache_root=self.cache_root, progress=self.progress)
            for layer in hp.layers:
                log.info("AlphaEdit %s layer %d: null space of dimension %.0f of %d",
                         lm.entry.name, layer, float(out[layer].trace()), out[layer].shape[0])
            self._projections[key] = out
        return self._projections[key]

    def init_state(self, model: LoadedModel) -> TensorState:
        check_layers(model, self.hparams.layers, self.name)
        return batch.new_kpkpt_state(model, self.hparams.layers)

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state: TensorState) -> None:
        """Context templates and the projections from the unedited model."""
        check_layers(model, self.hparams.layers, self.name)
        batch.warn_if_mlp_output_normed(model, self.name)
        context_templates(model, self.hparams.templates)
        self.projections(model)

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest], state: TensorState) -> Delta:
        hp, lm = self.hparams, model
        if not requests:
            raise ValueError(f"{self.name}: empty batch")
        check_layers(lm, hp.layers, self.name)
        batch.check_kpkpt_state(state, lm, hp.layers)
        templates = context_templates(lm, hp.templates)
        P = self.projections(lm)
        groups = batch.key_groups(hp)
        Z, tinfo = batch.residual_targets(lm, requests, hp, templates, self.target_engine)

        def solve(i: int, layer: int, R: torch.Tensor, K: torch.Tensor):
            return solvers.alphaedit_solve(R, K, P[layer], state.tensors[batch.kpkpt_name(layer)], hp.L2)

        with batch.TemporaryEdits(lm.model) as edits:
            layer_info = batch.layer_sweep(lm, requests, hp.layers, templates, Z, solve, edits,
                                           groups)
            final_res = (Z - batch.current_outputs(lm, requests, hp.layers[-1])).norm(dim=0)
            batch.accumulate_keys(state, lm, requests, hp.layers, templates, groups)
        info = {"method": self.name, "layers": list(hp.layers), "n_requests": len(requests),
                "null_space_dim": {layer: round(float(P[layer].trace())) for layer in hp.layers},
                "layer_info": layer_info, "final_residual_norm": final_res.tolist(), **tinfo}
        return Delta(edits.matrices, info)
