"""Seconds per ROME edit on SmolLM2-135M (pytest-benchmark; not a timed assertion).

One CounterFact fact per round, computed on the unedited model (compute only: keys,
target optimisation and the closed form; second moments and templates are prepared
before timing)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.embedded, pytest.mark.slow, pytest.mark.bench]


def test_rome_seconds_per_edit(benchmark, smollm2):
    from benchmark.data import load_requests
    from editors import create_editor

    requests = load_requests("counterfact", "edit", limit=3)
    editor = create_editor("rome", smollm2, progress=False)
    state = editor.init_state(smollm2)
    editor.prepare(smollm2, requests, state)
    it = iter(requests * 10)

    def one_edit():
        return editor.compute(smollm2, [next(it)], state)

    delta = benchmark.pedantic(one_edit, rounds=3, iterations=1, warmup_rounds=0)
    (md,) = delta.matrices.values()
    assert md.A.shape[1] == 1
    benchmark.extra_info["editor"] = "rome"
    benchmark.extra_info["layer"] = editor.hparams.layers[0]
