"""NSE, Neuron-level Sequential Editing (docs/methods.md §2.5).

- Weights rewinding: the target values z* (residual output of the last edited layer) of
  ALL requests of the trajectory are computed on the UNEDITED model in :meth:`NSE.prepare`
  and kept in the editor state (so they survive checkpoints); later batches reuse them
  instead of optimising targets on the edited model. Each request's z* is also cached on
  disk under every input (:func:`target_key`, with the sha256 of the weights), so cells
  editing the same facts of the same model share them.
- Iterative editing: up to ``max_iterations`` checks (released: 3, so at most 2 editing
  passes). Each check measures the residual ‖z* − h_L‖ of every request of the batch on
  the current (temporarily edited) model; only requests with a residual in
  (``alpha``, ``upper_bound``) are edited in the next pass. Requests at or above
  ``upper_bound`` at the first check are outliers: skipped, counted in
  ``Delta.info["outliers_skipped"]`` and logged.
- Neuron selection: per layer and pass, the key coordinates (neurons) carrying a fraction
  ``neuron_fraction`` = p of the accumulated |key| over the edited requests
  (:func:`editors.solvers.select_neurons`; p = 1 selects every neuron), and the
  sequential-MEMIT system ``λ C0 + Kp Kpᵀ + K Kᵀ`` solved on those columns only
  (:func:`editors.solvers.nse_solve`).
- Accumulated keys: after the batch, the keys of every request of the batch, recomputed on
  the edited model, are added once to Kp Kpᵀ. (The released code adds the keys of the
  requests outside the band at every check, so some are counted several times and the
  ones still inside the band after the last pass never; counting each once is the
  choice made here.)
- Not reproduced: the spectral clustering of requests into ``n_clusters`` groups found in
  one version of the released code (docs/methods.md describes NSE without it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.core.arch import LoadedModel, down_weight, to_out_in
from benchmark.core.requests import EditRequest
from editors import batch, solvers, stats
from editors.base import Delta, MatrixDelta
from editors.common import TensorState, check_layers
from editors.hparams import NSEHparams
from editors.targets import Engine
from editors.templates import context_templates

log = logging.getLogger(__name__)

TARGETS = "targets"  # state tensor: (n_prepared, d_model) z* on the unedited model
TARGET_IDS = "target_case_ids"  # state meta: case ids, one per row of TARGETS
#: Bump when the target optimisation changes what it computes (part of every cache key).
TARGET_CACHE_VERSION = 1


def weights_sha256(lm: LoadedModel) -> str:
    """sha256 of every parameter's bytes (name order): the exact weights a target is
    computed on, whatever the model's name, dtype or edits."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(lm.model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def target_key(lm: LoadedModel, r: EditRequest, hp: NSEHparams, templates: Sequence[str],
               engine: Engine, weights: str) -> dict:
    """Every input of one request's z* (:func:`editors.batch.residual_targets`): the weights
    (``weights``: :func:`weights_sha256`), the model's identity (its tokenizer), the device
    type and thread count (float rounding), the request's text, the edited layer, the target
    settings, the context templates and the engine."""
    return {"kind": "nse_target", "version": TARGET_CACHE_VERSION, "model": lm.identity,
            "weights_sha256": weights, "device": torch.device(lm.device).type,
            "threads": torch.get_num_threads(),
            "request": {"prompt": r.prompt, "subject": r.subject, "target_new": r.target_new},
            "layer": hp.layers[-1], "target": hp.target.model_dump(mode="json"),
            "templates": list(templates), "engine": engine}


def stored_targets(state: TensorState, requests: Sequence[EditRequest]) -> torch.Tensor:
    """z* of ``requests`` from the state: d_model x n."""
    rows = {cid: i for i, cid in enumerate(state.meta.get(TARGET_IDS, []))}
    missing = [r.case_id for r in requests if r.case_id not in rows]
    if missing:
        raise ValueError(f"NSE has no stored target for case(s) {missing[:5]}: call prepare() with "
                         "every request of the trajectory on the unedited model first")
    idx = torch.tensor([rows[r.case_id] for r in requests], dtype=torch.long)
    return state.tensors[TARGETS][idx].T.contiguous()


def empty_update(lm: LoadedModel, layer: int) -> MatrixDelta:
    """A rank-0 update of the edited matrix at ``layer`` (a layer no pass touched)."""
    W = down_weight(lm.model, lm.arch, layer)
    out_in = to_out_in(W, lm.arch.layout).shape
    return MatrixDelta(name=lm.arch.down_name(layer), layout=lm.arch.layout,
                       A=torch.zeros(out_in[0], 0, dtype=W.dtype), B=torch.zeros(out_in[1], 0, dtype=W.dtype))


class NSE:
    """NSE editor (batches; state: accumulated Kp Kpᵀ per layer and the rewound targets)."""

    name = "nse"

    def __init__(self, hparams: NSEHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None, progress: bool = True,
                 target_engine: Engine = "fast"):
        self.target_engine = target_engine
        if hparams.upper_bound <= hparams.alpha:
            raise ValueError(f"NSE upper_bound ({hparams.upper_bound}) must exceed alpha ({hparams.alpha})")
        self.hparams = hparams
        self.progress = progress
        self._c0 = batch.C0Cache(data_root, cache_root, progress)

    def init_state(self, model: LoadedModel) -> TensorState:
        check_layers(model, self.hparams.layers, self.name)
        state = batch.new_kpkpt_state(model, self.hparams.layers)
        state.tensors[TARGETS] = torch.zeros(0, model.arch.d_model, dtype=torch.float32)
        state.meta[TARGET_IDS] = []
        return state

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state: TensorState) -> None:
        """Templates, C0, and the targets of every request not yet in the state, computed on
        ``model``, which must be the unedited model (weights rewinding)."""
        from tqdm.auto import tqdm

        hp = self.hparams
        check_layers(model, hp.layers, self.name)
        batch.warn_if_mlp_output_normed(model, self.name)
        templates = context_templates(model, hp.templates)
        self._c0.get(model, hp)
        have = set(state.meta.get(TARGET_IDS, []))
        todo: list[EditRequest] = []
        for r in requests:
            if r.case_id not in have:
                todo.append(r)
                have.add(r.case_id)
        if not todo:
            return
        weights = weights_sha256(model)
        rows = []
        for r in tqdm(todo, desc=f"NSE targets on unedited {model.entry.name}",
                      disable=not self.progress, unit="request"):
            rows.append(self._target(model, r, templates, weights))
        state.tensors[TARGETS] = torch.cat([state.tensors[TARGETS], torch.stack(rows)], dim=0)
        state.meta[TARGET_IDS] = list(state.meta.get(TARGET_IDS, [])) + [r.case_id for r in todo]

    def _target(self, model: LoadedModel, r: EditRequest, templates: Sequence[str],
                weights: str) -> torch.Tensor:
        """z* of one request, cached on disk under :func:`target_key`: cells that edit the
        same facts of the same model (trajectories none and RECT) compute it once, and a
        killed ``prepare`` resumes where it stopped."""
        hp = self.hparams

        def build() -> dict[str, torch.Tensor]:
            Z, _ = batch.residual_targets(model, [r], hp, templates, self.target_engine)
            return {"z": Z[:, 0]}

        key = target_key(model, r, hp, templates, self.target_engine, weights)
        return stats.cached_tensors(key, build, cache_root=self._c0.cache_root,
                                    group=f"{model.entry.name}-nse-targets", label="z")["z"]

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest], state: TensorState) -> Delta:
        hp, lm = self.hparams, model
        if not requests:
            raise ValueError(f"{self.name}: empty batch")
        check_layers(lm, hp.layers, self.name)
        batch.check_kpkpt_state(state, lm, hp.layers)
        templates = context_templates(lm, hp.templates)
        c0 = self._c0.get(lm, hp)
        Z = stored_targets(state, requests)
        groups = batch.key_groups(hp)
        z_layer = hp.layers[-1]
        checks: list[list[float]] = []
        passes: list[dict] = []
        outliers: list[str] = []

        def solve(i: int, layer: int, R: torch.Tensor, K: torch.Tensor):
            cols = solvers.select_neurons(K, hp.neuron_fraction)
            passes[-1]["neurons"][layer] = int(cols.numel())
            return solvers.nse_solve(R, K, c0[layer], hp.mom2_update_weight,
                                     state.tensors[batch.kpkpt_name(layer)], cols)

        with batch.TemporaryEdits(lm.model) as edits:
            for m in range(hp.max_iterations):
                res = (Z - batch.current_outputs(lm, requests, z_layer)).norm(dim=0)
                checks.append(res.tolist())
                band = (res > hp.alpha) & (res < hp.upper_bound)
                if m == 0:
                    outliers = [r.case_id for r, x in zip(requests, res.tolist())
                                if x >= hp.upper_bound]
                if not bool(band.any()) or m == hp.max_iterations - 1:
                    break
                idx = torch.nonzero(band, as_tuple=True)[0]
                chosen = [requests[int(j)] for j in idx]
                passes.append({"edited": [r.case_id for r in chosen], "neurons": {}})
                batch.layer_sweep(lm, chosen, hp.layers, templates, Z[:, idx], solve, edits,
                                  groups)
            batch.accumulate_keys(state, lm, requests, hp.layers, templates, groups)
        matrices = {lm.arch.down_name(layer): empty_update(lm, layer) for layer in hp.layers}
        matrices.update(edits.matrices)
        if outliers:
            log.info("NSE skipped %d outlier request(s) with residual >= %g: %s",
                     len(outliers), hp.upper_bound, outliers)
        info = {"method": self.name, "layers": list(hp.layers), "n_requests": len(requests),
                "outliers_skipped": len(outliers), "outlier_case_ids": outliers,
                "passes": passes, "n_passes": len(passes), "residual_checks": checks}
        return Delta(matrices, info)
