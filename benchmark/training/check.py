"""Single-edit check of a trained editor network on facts it never saw.

``unseen_requests`` picks the first ``n`` CounterFact edit-split facts whose subject and
prompt occur in no training file; ``single_edit_check`` edits each of them alone into the
unedited model (then reverts), scores efficacy, generalization and locality
(:func:`benchmark.evaluation.editing.evaluate_editing`, x100) and the same metrics of the
unedited model on the same facts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.arch import LoadedModel
from benchmark.core.requests import EditRequest
from benchmark.data.loaders import load_requests
from benchmark.evaluation.editing import evaluate_editing
from benchmark.training.data import combined
from editors.base import apply_delta
from editors.mend.hparams import MENDHparams

log = logging.getLogger(__name__)
METRICS = ("efficacy", "generalization", "locality")


def unseen_requests(hp: MENDHparams, n: int, data_root: str | Path | None = None,
                    split: str = "edit") -> list[EditRequest]:
    seen = combined([*hp.train.data, hp.train.validation], data_root)
    subjects = {ex.request.subject for ex in seen}
    prompts = {ex.request.prompt for ex in seen}
    fresh = [r for r in load_requests("counterfact", split, data_root=data_root)
             if r.subject not in subjects and r.prompt not in prompts]
    if len(fresh) < n:
        raise ValueError(f"counterfact:{split} holds {len(fresh)} facts unseen in training, {n} asked for")
    return fresh[:n]


def _values(lm: LoadedModel, requests: Sequence[EditRequest]) -> dict[str, float]:
    return {k: v.value for k, v in evaluate_editing(lm, list(requests), metrics=METRICS).items()}


def single_edit_check(lm: LoadedModel, editor, requests: Sequence[EditRequest]) -> dict[str, Any]:
    """Mean metrics after each single edit, and of the unedited model, per metric."""
    unedited = _values(lm, requests)
    per_edit: dict[str, list[float]] = {k: [] for k in METRICS}
    state = editor.init_state(lm)
    editor.prepare(lm, list(requests), state)
    for r in requests:
        undo = apply_delta(lm.model, editor.compute(lm, [r], state))
        try:
            for k, v in _values(lm, [r]).items():
                per_edit[k].append(v)
        finally:
            undo.revert()
    edited = {k: float(np.mean(v)) for k, v in per_edit.items()}
    log.info("single edits on %d facts: edited %s, unedited %s", len(requests), edited, unedited)
    return {"n": len(requests), "case_ids": [r.case_id for r in requests], "edited": edited,
            "unedited": unedited}
