"""General-ability evaluation cost for the smoke grid (issue 5).

The smoke grid evaluates its headline tasks (``benchmark.evaluation.task_catalog.HEADLINE_TASKS``)
at ``SMOKE_LIMITS`` about twenty times, so one such evaluation of SmolLM2-135M on this
machine should take at most a minute. The task objects are built before timing, as they
are after the grid's first evaluation (they are cached in-process). No timing is asserted:
read the figure from the pytest-benchmark table.

    SEQEDIT_CACHE=... pytest tests/benchmarks/test_bench_eval.py -m "embedded" --benchmark-enable
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.embedded, pytest.mark.slow]


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
