"""A minimal unrestrained sequential editing trajectory and the efficacy score it reports.

Used by ``seqedit edit`` and the layer sweep (the full runner with checkpoints,
restraints and metrics lives in benchmark/). Efficacy follows METHODS.md §4: a fact
counts when the new target is more probable than the true one on the rewrite prompt,
probabilities being exp(−mean token NLL) from :func:`benchmark.core.scoring.score_targets`.

Public API:
- ``new_beats_true(lm, requests, prompts="rewrite"|"rephrase") -> list[bool]``
- ``run_sequence(lm, editor, requests, batch_size=1, progress=True) -> TrajectoryResult``
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from benchmark.core.arch import LoadedModel
from benchmark.core.requests import EditRequest
from benchmark.core.scoring import score_targets
from editors.base import apply_delta

log = logging.getLogger(__name__)


def new_beats_true(lm: LoadedModel, requests: Sequence[EditRequest],
                   prompts: Literal["rewrite", "rephrase"] = "rewrite") -> list[bool]:
    """Per request (rewrite) or per (request, rephrase prompt): P(new) > P(true)."""
    if prompts == "rewrite":
        ps = [r.prompt for r in requests]
        pairs = [(r.target_new, r.target_true) for r in requests]
    else:
        ps, pairs = [], []
        for r in requests:
            for p in r.rephrase_prompts:
                ps.append(p)
                pairs.append((r.target_new, r.target_true))
    if not ps:
        return []
    new = score_targets(lm.model, lm.tokenizer, ps, [a for a, _ in pairs])
    true = score_targets(lm.model, lm.tokenizer, ps, [b for _, b in pairs])
    return (new.mean_nll < true.mean_nll).tolist()


@dataclass
class TrajectoryResult:
    n: int
    batch_size: int
    efficacy_each: float
    efficacy_final: float
    generalization_final: float | None
    seconds_per_edit: float  # editing time (compute + apply) per edit step (one batch)
    seconds_per_fact: float
    seconds_prepare: float
    #: process CPU seconds per edit step (robust to other load on a shared machine)
    cpu_seconds_per_edit: float = float("nan")
    each: list[bool] = field(default_factory=list)
    final: list[bool] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sequence(lm: LoadedModel, editor, requests: Sequence[EditRequest], batch_size: int = 1,
                 progress: bool = True) -> TrajectoryResult:
    """Edit ``requests`` in order, ``batch_size`` facts per step, on ``lm`` in place
    (the model stays edited). Efficacy is scored right after each batch and at the end."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    state = editor.init_state(lm)
    t0 = time.perf_counter()
    editor.prepare(lm, requests, state)
    t_prep = time.perf_counter() - t0
    each: list[bool] = []
    infos: list[dict[str, Any]] = []
    edit_seconds = 0.0
    cpu_seconds = 0.0
    steps = 0
    batches = [requests[i:i + batch_size] for i in range(0, len(requests), batch_size)]
    for batch in tqdm(batches, desc=f"{editor.name} on {lm.entry.name}", disable=not progress,
                      unit="edit"):
        t, c = time.perf_counter(), time.process_time()
        delta = editor.compute(lm, batch, state)
        apply_delta(lm.model, delta)
        edit_seconds += time.perf_counter() - t
        cpu_seconds += time.process_time() - c
        steps += 1
        each.extend(new_beats_true(lm, batch))
        infos.append(delta.info)
    final = new_beats_true(lm, requests)
    gen = new_beats_true(lm, requests, "rephrase")
    n = len(requests)
    return TrajectoryResult(
        n=n, batch_size=batch_size,
        efficacy_each=sum(each) / n, efficacy_final=sum(final) / n,
        generalization_final=(sum(gen) / len(gen)) if gen else None,
        seconds_per_edit=edit_seconds / max(steps, 1), seconds_per_fact=edit_seconds / max(n, 1),
        seconds_prepare=t_prep, cpu_seconds_per_edit=cpu_seconds / max(steps, 1), each=each, final=final, infos=infos,
    )
