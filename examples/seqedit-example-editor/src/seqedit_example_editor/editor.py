"""``example-rank-one``: a rank-one edit of one MLP output projection, without key statistics.

For one fact at the one layer of ``hparams.layers``: k = the template-averaged key at the
subject's last token, δ = the optimised shift of that MLP's output (the suite's shared
target optimisation, ROME form), and

    ΔW = δ kᵀ / (kᵀk),

so that (W + ΔW) k = W k + δ. ROME differs by weighting with the inverse second moment of
the keys, C0⁻¹ (it changes the outputs of other keys less).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from editors.base import Delta, MatrixDelta
from editors.common import EmptyState
from editors.hparams import ROMEHparams
from editors.keys import compute_keys
from editors.targets import compute_target
from editors.templates import context_templates


class RankOneHparams(ROMEHparams):
    """ROME's fields (one layer, templates, target optimisation); ``stats`` is unused."""

    method: Literal["example-rank-one"] = "example-rank-one"


class RankOneEditor:
    """The editor: seqedit-bench finds it through the entry point and constructs it with the
    validated hyperparameters of ``hparams_schema``, read from ``hparams_dir`` (or from a
    folder of ``$SEQEDIT_HPARAMS``)."""

    name = "example-rank-one"
    hparams_schema = RankOneHparams
    hparams_dir = Path(__file__).resolve().parent / "hparams"

    def __init__(self, hparams: RankOneHparams, *, data_root=None, cache_root=None,
                 progress: bool = True, target_engine: str = "fast"):
        self.hparams, self.target_engine = hparams, target_engine

    def init_state(self, model) -> EmptyState:
        return EmptyState()

    def prepare(self, model, requests: Sequence, state: EmptyState) -> None:
        """Generate the context templates on the unedited model (they are cached)."""
        context_templates(model, self.hparams.templates)

    def compute(self, model, requests: Sequence, state: EmptyState) -> Delta:
        if len(requests) != 1:
            raise ValueError(f"{self.name} edits one fact per step, got {len(requests)}")
        hp, request = self.hparams, requests[0]
        layer = hp.layers[0]
        templates = context_templates(model, hp.templates)
        k = compute_keys(model, [request], [layer], templates)[layer][0].to(torch.float64)
        res = compute_target(model, request, layer, templates, hp.target, point="mlp_out",
                             engine=self.target_engine)
        delta = res.delta.to(torch.float64)
        name = model.arch.down_name(layer)
        dtype = next(model.model.parameters()).dtype
        md = MatrixDelta(name=name, layout=model.arch.layout, A=delta[:, None].to(dtype).cpu(),
                         B=(k / (k @ k))[:, None].to(dtype).cpu())
        return Delta({name: md}, {"layer": layer, "target_steps": res.steps,
                                  "target_nll": res.nll, "delta_norm": float(delta.norm())})
