"""ROME on SmolLM2-135M with the shipped hparams: two CounterFact facts are written."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_rome_writes_counterfact_facts_on_smollm2(smollm2):
    from benchmark.data import load_requests
    from benchmark.evaluation.editing import counterfact_efficacy
    from editors import create_editor
    from editors.base import apply_delta

    requests = load_requests("counterfact", "edit", limit=2)
    editor = create_editor("rome", smollm2, progress=False)
    state = editor.init_state(smollm2)
    editor.prepare(smollm2, requests, state)
    undos = []
    try:
        for r in requests:  # one fact per edit, each efficacious right after its own edit
            undos.append(apply_delta(smollm2.model, editor.compute(smollm2, [r], state)))
            assert counterfact_efficacy(smollm2, [r]).value == 100.0
        assert counterfact_efficacy(smollm2, requests).value == 100.0  # both, at the end
    finally:
        for undo in reversed(undos):
            undo.revert()
