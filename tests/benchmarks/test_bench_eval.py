"""Checkpoint-evaluation cost on SmolLM2-135M (docs/performance.md, checkpoint evaluation).

``checkpoint evaluation smollm2`` (one group, so one run gives the ratio): what a smoke-grid
cell does at a checkpoint (benchmark/grids/smoke.yaml), one thread -- the editing metrics
efficacy, efficacy_magnitude, generalization and locality of the first 50 CounterFact facts
(benchmark.evaluation.editing.evaluate_editing) and the headline tasks at the smoke limits
(benchmark.evaluation.general.evaluate_tasks), batch size 16 -- on the default path and on
the reference path (``reference=True``: the implementation before the speed-up). Both sides
must give the same figures (rates and counts equal, the rest within 1e-6 relative).
Task objects are built before timing, as they are after a grid's first evaluation.

``test_headline_tasks_at_smoke_limits_smollm2``: the general tasks alone (issue 5's figure).
No timing is asserted: read the ratio of means from the pytest-benchmark table.

    SEQEDIT_CACHE=... pytest tests/benchmarks/test_bench_eval.py -m "embedded" --benchmark-enable \\
        --benchmark-group-by=group --benchmark-columns=min,mean,stddev,rounds
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.bench, pytest.mark.embedded, pytest.mark.slow]

SMOKE_METRICS = ("efficacy", "efficacy_magnitude", "generalization", "locality")
N_FACTS = 50
BATCH = 16
_FIGURES: dict[str, dict] = {}


def checkpoint_evaluation(lm, requests, *, reference: bool, memo=None) -> dict:
    """Figures of one smoke-grid checkpoint evaluation: {(kind, task, metric): MetricValue}.
    ``memo``: a LowerLayerMemo the general tasks run under (as in a cell)."""
    import contextlib

    from benchmark.evaluation.editing import evaluate_editing
    from benchmark.evaluation.general import evaluate_tasks
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS, SMOKE_LIMITS

    editing = evaluate_editing(lm, requests, SMOKE_METRICS, batch_size=BATCH, reference=reference)
    with memo.active() if memo is not None else contextlib.nullcontext():
        general = evaluate_tasks(lm, list(HEADLINE_TASKS), limit=dict(SMOKE_LIMITS),
                                 batch_size=BATCH, reference=reference)
    out = {("editing", "counterfact", m): v for m, v in editing.items()}
    out.update({("general", t, m): v for t, ms in general.items() for m, v in ms.items()})
    return out


@pytest.mark.parametrize("path", ["reference", "default", "default-replayed"])
def test_checkpoint_evaluation_smollm2(benchmark, smollm2, path):
    """``default-replayed``: the default path as a cell runs it after its first evaluation:
    the general tasks replay the output of layers 0-5 (ROME edits layer 6), recorded in the
    warm-up round."""
    from benchmark.core.lower_layers import LowerLayerMemo
    from benchmark.data import load_requests
    from benchmark.evaluation.general import load_task
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS

    benchmark.group = "checkpoint evaluation smollm2"
    requests = load_requests("counterfact", "edit", limit=N_FACTS)
    for task in HEADLINE_TASKS:
        load_task(task)
    memo = LowerLayerMemo(smollm2, 6) if path == "default-replayed" else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figures = benchmark.pedantic(checkpoint_evaluation, args=(smollm2, requests),
                                     kwargs={"reference": path == "reference", "memo": memo},
                                     rounds=3, iterations=1, warmup_rounds=1)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info.update(path=path, threads=1, facts=N_FACTS,
                                batch_size=BATCH)
    assert len(figures) == 4 + 6  # editing metrics + acc, acc/margin, three perplexity figures
    if memo is not None:
        assert memo.replayed > 0
    _FIGURES[path] = figures
    if len(_FIGURES) == 3:
        ref = _FIGURES["reference"]
        for other in ("default", "default-replayed"):
            new = _FIGURES[other]
            assert new.keys() == ref.keys()
            for key, r in ref.items():
                assert new[key].n == r.n, key
                assert new[key].value == pytest.approx(r.value, rel=1e-6), key
        assert _FIGURES["default-replayed"] == _FIGURES["default"]  # bit for bit


def test_headline_tasks_at_smoke_limits_smollm2(benchmark, smollm2):
    from benchmark.evaluation.general import evaluate_tasks, load_task
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS, SMOKE_LIMITS

    for task in HEADLINE_TASKS:
        load_task(task)
    result = benchmark.pedantic(
        evaluate_tasks, args=(smollm2, list(HEADLINE_TASKS)),
        kwargs={"limit": dict(SMOKE_LIMITS), "batch_size": 8}, rounds=1, iterations=1)
    benchmark.extra_info["documents"] = dict(result.settings.limits)
    assert set(result) == set(HEADLINE_TASKS)
    assert result.settings.limits == {t: SMOKE_LIMITS[t] for t in HEADLINE_TASKS}
