"""The layer loop and state the batch editors share (MEMIT, sequential MEMIT, AlphaEdit,
NSE; docs/methods.md §2.3, MEMIT and sequential MEMIT).

For a batch of n facts edited at layers l1 < ... < L:

1. z*: the optimised residual-stream output of layer L at each subject's last token
   (:func:`residual_targets`, i.e. :func:`editors.targets.compute_targets` with
   ``point="residual"``), on the current model.
2. :func:`layer_sweep`: for each layer l in ascending order, on the model with the updates
   of the lower layers already applied: K_l = template-averaged keys (in x n), H_L =
   residual output of layer L for the bare prompts, R = (Z − H_L) / (number of layers
   left, l included), and the editor's solve gives the factors of ΔW_l. Keys are averaged
   over the templates as ``hparams.key_average`` says (:func:`key_groups`).
3. The per-layer updates are applied only temporarily (:class:`TemporaryEdits`: each
   layer's keys depend on the lower layers' updates) and reverted before ``compute``
   returns, so the model's weights stay bit for bit as they were; the Delta holds every
   layer's factors (A = R: out x n, B: in x n, rank <= n).

Sequential editors keep the accumulated ``Kp Kpᵀ`` of every previously edited key per
layer in a :class:`editors.common.TensorState` (``kpkpt.L<layer>``, float32 like the
released ``cache_c``; :func:`new_kpkpt_state`, :func:`check_kpkpt_state`,
:func:`accumulate_keys`). :class:`C0Cache` holds C0 per layer, once per model identity.
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
from editors.common import TensorState
from editors.hparams import BatchHparams
from editors.targets import Engine, compute_targets
from editors.templates import template_groups

log = logging.getLogger(__name__)

#: (layer index i within hparams.layers, layer, R: out x n, K: in x n) -> (A, B) factors
LayerSolve = Callable[[int, int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


#: why a batch editor's edits are unreliable on a model that normalises the MLP output
MLP_OUTPUT_NORM_CAVEAT = ("this architecture normalises the MLP output before the residual "
                          "stream; the batch editors' layer loop assumes it is added unchanged, "
                          "so their updates overshoot and edits are unreliable "
                          "(docs/batch-editors.md, Gemma-3-270M)")


def warn_if_mlp_output_normed(lm: LoadedModel, method: str) -> bool:
    """Log a warning (and return True) when the model normalises the MLP output before adding
    it to the residual stream (``ArchFacts.mlp_output_norm_template``: Gemma-2/3, OLMo-2).
    The layer loop of the batch editors spreads a residual-stream target over the edited
    matrices as if each matrix's output arrived in the residual stream unchanged; through the
    norm it arrives rescaled (41-234 times on Gemma-3-270M), so the updates overshoot and the
    edits are not the method's (docs/batch-editors.md, "Gemma-3-270M")."""
    norm = lm.arch.mlp_output_norm_template
    if norm is None:
        return False
    log.warning("%s on %s (norm %s): %s", method, lm.entry.name, norm.format(layer="L"),
                MLP_OUTPUT_NORM_CAVEAT)
    return True


def key_groups(hp: BatchHparams) -> tuple[int, ...] | None:
    """Template group sizes for the key average (``key_average: group_mean``, the released
    ``compute_ks``), or None for the uniform mean over templates."""
    return template_groups(hp.templates) if hp.key_average == "group_mean" else None


def residual_targets(lm: LoadedModel, requests: Sequence[EditRequest], hp: BatchHparams,
                     templates: Sequence[str], engine: Engine = "fast",
                     ) -> tuple[torch.Tensor, dict[str, Any]]:
    """z* (d_model x n, float32) at the residual output of the last edited layer, and
    diagnostics (target losses, δ norms). ``engine``: :data:`editors.targets.ENGINES`."""
    layer = hp.layers[-1]
    results = compute_targets(lm, requests, layer, templates, hp.target, point="residual",
                              engine=engine)
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
                edits: TemporaryEdits, groups: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """MEMIT's loop over ``layers`` (ascending): keys and residuals recomputed on the model
    with the lower layers' updates applied (through ``edits``); the passes skip the layers
    below the previous edited layer (:class:`editors.keys.SubjectPasses`, the same numbers).
    ``groups``: template groups of the key average (:func:`key_groups`). Returns per-layer info."""
    z_layer = layers[-1]
    infos = []
    # each pass replays the layers below the previous pass's layer (not edited since)
    key_passes = keys.SubjectPasses(lm, requests, templates, groups=groups)
    out_passes = keys.SubjectPasses(lm, requests, ("",))
    z_point = (keys.point_module(lm, z_layer, "residual"), "output")
    for i, layer in enumerate(layers):
        down = lm.arch.down_name(layer)
        K = key_passes.collect([(down, "input")], record=layer)[down].T  # in x n
        H = out_passes.collect([z_point], record=layer)[z_point[0]].T  # d_model x n
        R = (Z - H) / (len(layers) - i)
        A, B = solve(i, layer, R, K)
        W = down_weight(lm.model, lm.arch, layer)
        w_norm = float(to_out_in(W, lm.arch.layout).norm())  # before the update is added in place
        md = MatrixDelta(name=lm.arch.down_name(layer), layout=lm.arch.layout,
                         A=A.to(dtype=W.dtype, device="cpu"), B=B.to(dtype=W.dtype, device="cpu"))
        edits.apply(md)
        infos.append({
            "layer": layer,
            "residual_norm": float((Z - H).norm(dim=0).mean()),
            "update_norm": float(md.to_dense().norm()),
            "weight_norm": w_norm,
        })
        log.debug("%s layer %d: %s", lm.entry.name, layer, infos[-1])
    return infos


# --------------------------------------------------------------------------- Kp Kpᵀ state
def kpkpt_name(layer: int) -> str:
    return f"kpkpt.L{layer}"


def accumulate_keys(state: TensorState, lm: LoadedModel, requests: Sequence[EditRequest],
                    layers: Sequence[int], templates: Sequence[str],
                    groups: Sequence[int] | None = None) -> None:
    """Add the requests' keys (on the model as it is now; ``groups`` as in
    :func:`layer_sweep`) to ``state``'s Kp Kpᵀ per layer."""
    if not requests:
        return
    ks = keys.compute_keys(lm, requests, layers, templates, groups=groups)
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


# --------------------------------------------------------------------------- C0
class C0Cache:
    """C0 per layer, loaded from the on-disk statistics cache once per model identity."""

    def __init__(self, data_root: str | Path | None, cache_root: str | Path | None, progress: bool):
        self.data_root, self.cache_root, self.progress = data_root, cache_root, progress
        self._by_model: dict[str, dict[int, torch.Tensor]] = {}

    def get(self, lm: LoadedModel, hp: BatchHparams) -> dict[int, torch.Tensor]:
        key = str(sorted(lm.identity.items())) + hp.stats.model_dump_json()
        if key not in self._by_model:
            self._by_model[key] = stats.second_moments(
                lm, hp.layers, hp.stats, data_root=self.data_root, cache_root=self.cache_root,
                progress=self.progress)
        return self._by_model[key]
