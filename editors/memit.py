"""MEMIT and sequential MEMIT (METHODS.md §3), plus the layer loop the batch editors share.

For a batch of n facts edited at layers l1 < ... < L:

1. z*: the optimised residual-stream output of layer L at each subject's last token
   (:func:`editors.keys.compute_targets` with ``point="residual"``), on the current model.
2. For each layer l in ascending order, on the model with the updates of the lower
   layers already applied: K_l = template-averaged keys (in x n), H_L = residual output
   of layer L for the bare prompts, R = (Z − H_L) / (number of layers left, l included),
   ΔW_l = R K_lᵀ (λ C0 + [Kp Kpᵀ] + K_l K_lᵀ)⁻¹ (float64, :func:`editors.solvers.memit_solve`).
3. The per-layer updates are applied only temporarily (each layer's keys depend on the
   lower layers' updates) and reverted before returning, so ``compute`` leaves the model's
   weights bit for bit as it found them; the Delta holds every layer's factors
   (A = R: out x n, B: in x n, rank <= n).

Sequential MEMIT (the AlphaEdit/NSE repositories' baseline) keeps the accumulated
``Kp Kpᵀ`` of every previously edited key per layer in its state. After a batch it adds the
batch's keys recomputed on the edited model (as AlphaEdit's released code does).
State tensors are stored in float32 like the released ``cache_c``; solves are float64.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.core.arch import LoadedModel, down_weight, to_out_in
from benchmark.core.requests import EditRequest
from editors import keys, solvers, stats
from editors.base import Delta, MatrixDelta, Undo, apply_delta
from editors.common import EmptyState, TensorState
from editors.hparams import MEMITHparams

log = logging.getLogger(__name__)

#: (layer index i within hparams.layers, layer, R: out x n, K: in x n) -> (A, B) factors
LayerSolve = Callable[[int, int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------- shared pieces
def check_layers(lm: LoadedModel, layers: Sequence[int], method: str) -> None:
    bad = [layer for layer in layers if not 0 <= layer < lm.arch.n_layers]
    if bad:
        raise ValueError(f"{method}: layers {bad} outside 0..{lm.arch.n_layers - 1} of {lm.entry.name}")


@dataclass
class TemporaryEdits:
    """Apply per-matrix updates to a model for the duration of a ``with`` block, then
    revert them (bit for bit, in reverse order). Collects the total update per matrix as
    concatenated factors (several passes over one matrix add up: A = [A1 A2], B = [B1 B2])."""

    model: torch.nn.Module
    undos: list[Undo] = field(default_factory=list)
    matrices: dict[str, MatrixDelta] = field(default_factory=dict)

    def apply(self, md: MatrixDelta) -> None:
        self.undos.append(apply_delta(self.model, Delta({md.name: md})))
        prev = self.matrices.get(md.name)
        if prev is None:
            self.matrices[md.name] = md
        else:
            self.matrices[md.name] = MatrixDelta(
                name=md.name, layout=md.layout,
                A=torch.cat([prev.A, md.A], dim=1), B=torch.cat([prev.B, md.B], dim=1))

    def __enter__(self) -> TemporaryEdits:
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self.undos):
            undo.revert()
        self.undos.clear()


def residual_targets(lm: LoadedModel, requests: Sequence[EditRequest], hp: MEMITHparams,
                     templates: Sequence[str]) -> tuple[torch.Tensor, dict[str, Any]]:
    """z* (d_model x n, float32) at the residual output of the last edited layer, and
    diagnostics (target losses, δ norms)."""
    layer = hp.layers[-1]
    results = keys.compute_targets(lm, requests, layer, templates, hp.target, point="residual")
    Z = torch.stack([r.target for r in results], dim=1)
    info = {
        "target_loss": [r.losses[-1] for r in results],
        "target_nll": [r.nll for r in results],
        "delta_norm": [float(r.delta.norm()) for r in results],
        "h_norm": [float(r.h_init.norm()) for r in results],
    }
    return Z, info


def current_outputs(lm: LoadedModel, requests: Sequence[EditRequest], layer: int) -> torch.Tensor:
    """Residual output of ``layer`` at each subject's last token, bare prompts: d_model x n."""
    return keys.compute_outputs(lm, requests, layer, "residual").T


def layer_sweep(lm: LoadedModel, requests: Sequence[EditRequest], layers: Sequence[int],
                templates: Sequence[str], Z: torch.Tensor, solve: LayerSolve,
                edits: TemporaryEdits) -> list[dict[str, Any]]:
    """MEMIT's loop over ``layers`` (ascending): keys and residuals recomputed on the model
    with the lower layers' updates applied (through ``edits``). Returns per-layer info."""
    z_layer = layers[-1]
    infos = []
    for i, layer in enumerate(layers):
        K = keys.compute_keys(lm, requests, [layer], templates)[layer].T  # in x n
        H = current_outputs(lm, requests, z_layer)
        R = (Z - H) / (len(layers) - i)
        A, B = solve(i, layer, R, K)
        W = down_weight(lm.model, lm.arch, layer)
        md = MatrixDelta(name=lm.arch.down_name(layer), layout=lm.arch.layout,
                         A=A.to(dtype=W.dtype, device="cpu"), B=B.to(dtype=W.dtype, device="cpu"))
        edits.apply(md)
        infos.append({
            "layer": layer,
            "residual_norm": float((Z - H).norm(dim=0).mean()),
            "update_norm": float(md.to_dense().norm()),
            "weight_norm": float(to_out_in(W, lm.arch.layout).norm()),
        })
        log.debug("%s layer %d: %s", lm.entry.name, layer, infos[-1])
    return infos


def kpkpt_name(layer: int) -> str:
    return f"kpkpt.L{layer}"


def accumulate_keys(state: TensorState, lm: LoadedModel, requests: Sequence[EditRequest],
                    layers: Sequence[int], templates: Sequence[str]) -> None:
    """Add the requests' keys (on the model as it is now) to ``state``'s Kp Kpᵀ per layer."""
    if not requests:
        return
    ks = keys.compute_keys(lm, requests, layers, templates)
    for layer in layers:
        name = kpkpt_name(layer)
        inc = solvers.outer_sum(ks[layer].T).to(torch.float32)
        state.tensors[name] = state.tensors[name] + inc if name in state.tensors else inc
    state.meta["n_keys"] = int(state.meta.get("n_keys", 0)) + len(requests)


def new_kpkpt_state(lm: LoadedModel, layers: Sequence[int]) -> TensorState:
    d = lm.arch.d_ffn
    return TensorState(tensors={kpkpt_name(layer): torch.zeros(d, d, dtype=torch.float32)
                                for layer in layers},
                       meta={"n_keys": 0, "layers": list(layers)})


def check_kpkpt_state(state: TensorState, lm: LoadedModel, layers: Sequence[int]) -> None:
    d = lm.arch.d_ffn
    for layer in layers:
        t = state.tensors.get(kpkpt_name(layer))
        if t is None or tuple(t.shape) != (d, d):
            raise ValueError(f"editor state lacks a {d}x{d} {kpkpt_name(layer)!r}; was it made by "
                             f"init_state for this model and these layers?")


class _C0Cache:
    """C0 per layer, loaded from the on-disk statistics cache once per model identity."""

    def __init__(self, data_root: str | Path | None, cache_root: str | Path | None, progress: bool):
        self.data_root, self.cache_root, self.progress = data_root, cache_root, progress
        self._by_model: dict[str, dict[int, torch.Tensor]] = {}

    def get(self, lm: LoadedModel, hp: MEMITHparams) -> dict[int, torch.Tensor]:
        key = str(sorted(lm.identity.items())) + hp.stats.model_dump_json()
        if key not in self._by_model:
            self._by_model[key] = stats.second_moments(
                lm, hp.layers, hp.stats, data_root=self.data_root, cache_root=self.cache_root,
                progress=self.progress)
        return self._by_model[key]


# --------------------------------------------------------------------------- editors
class MEMIT:
    """Plain MEMIT: ``ΔW_l = R K_lᵀ (λ C0 + K_l K_lᵀ)⁻¹``; no state across edits."""

    name = "memit"
    sequential = False

    def __init__(self, hparams: MEMITHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None, progress: bool = True):
        self.hparams = hparams
        self._c0 = _C0Cache(data_root, cache_root, progress)

    def init_state(self, model: LoadedModel) -> EmptyState | TensorState:
        return EmptyState()

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state) -> None:
        """Context templates and C0 from the unedited model."""
        check_layers(model, self.hparams.layers, self.name)
        keys.context_templates(model, self.hparams.templates)
        self._c0.get(model, self.hparams)

    def _prior(self, state, layer: int) -> torch.Tensor | None:
        return None

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest], state) -> Delta:
        hp, lm = self.hparams, model
        if not requests:
            raise ValueError(f"{self.name}: empty batch")
        check_layers(lm, hp.layers, self.name)
        if self.sequential:
            check_kpkpt_state(state, lm, hp.layers)
        templates = keys.context_templates(lm, hp.templates)
        c0 = self._c0.get(lm, hp)
        Z, tinfo = residual_targets(lm, requests, hp, templates)

        def solve(i: int, layer: int, R: torch.Tensor, K: torch.Tensor):
            return solvers.memit_solve(R, K, c0[layer], hp.mom2_update_weight, self._prior(state, layer))

        with TemporaryEdits(lm.model) as edits:
            layer_info = layer_sweep(lm, requests, hp.layers, templates, Z, solve, edits)
            final_res = (Z - current_outputs(lm, requests, hp.layers[-1])).norm(dim=0)
            if self.sequential:
                accumulate_keys(state, lm, requests, hp.layers, templates)
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
        return new_kpkpt_state(model, self.hparams.layers)

    def _prior(self, state, layer: int) -> torch.Tensor | None:
        return state.tensors[kpkpt_name(layer)]
