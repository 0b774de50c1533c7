"""ROME on SmolLM2-135M with the shipped hparams: two CounterFact facts are written."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_rome_writes_counterfact_facts_on_smollm2(smollm2):
    from benchmark.data import load_requests
    from editors import create_editor
    from editors.trajectory import run_sequence

    requests = load_requests("counterfact", "edit", limit=2)
    original = {n: p.detach().clone() for n, p in smollm2.model.named_parameters()}
    try:
        res = run_sequence(smollm2, create_editor("rome", smollm2, progress=False), requests,
                           progress=False)
        assert res.each == [True, True]
        assert res.final == [True, True]
    finally:
        import torch

        with torch.no_grad():
            for n, p in smollm2.model.named_parameters():
                p.copy_(original[n])
