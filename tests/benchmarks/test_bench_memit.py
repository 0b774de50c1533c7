"""MEMIT on SmolLM2-135M: seconds per batch step at batch 1 and 10, fast path against the
reference path, a per-phase profile, and efficacy on the first 50 CounterFact facts
(pytest-benchmark; no timing is asserted). How to run and read them: docs/performance.md.

Groups:
- ``memit step smollm2``: one ``MEMIT.compute`` (target optimisation, layer sweep with
  keys, residuals and solves; temporary edits reverted) per round on the unedited model.
  Batch 1 cycles through the first 10 CounterFact edit facts (one per round), batch 10
  takes all 10 in every round, so mean(batch 1) / (mean(batch 10) / 10) is the per-fact
  speed-up of batching. ``target_engine="suffix"`` rows are the reference path; the last
  round's updates of the two engines are compared (``max_rel_update_diff_vs_reference``).
- ``memit phases smollm2``: target optimisation (steps, tokens per step, seconds per
  forward/backward in ``extra_info``), the keys/residual passes, the five solves, and
  apply + revert of the five-layer update, at batch 1 and 10.
- ``memit efficacy smollm2`` (one round each, long): the first 50 facts edited in
  batches of 1 or 10, each batch on the unedited model, scored right after its own edit
  (``counterfact_efficacy``); ``extra_info["efficacy"]`` over all 50. The fast and the
  reference engine must agree at batch 10.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.embedded, pytest.mark.slow, pytest.mark.bench]

N_FACTS = 10
ROUNDS = {(1, "fast"): 10, (1, "suffix"): 10, (10, "fast"): 2, (10, "suffix"): 1}
_EFFICACY: dict[tuple[int, str], float] = {}
_DELTAS: dict[tuple[int, str], object] = {}


@pytest.fixture(scope="module")
def memit_setup(smollm2):
    from benchmark.data import load_requests
    from editors import create_editor

    torch.set_num_threads(1)
    requests = load_requests("counterfact", "edit", limit=50)
    editors = {engine: create_editor("memit", smollm2, progress=False, target_engine=engine)
               for engine in ("suffix", "fast")}
    for editor in editors.values():
        editor.prepare(smollm2, requests, editor.init_state(smollm2))
    return requests, editors


def _batches(requests, size: int, rounds: int):
    facts = requests[:N_FACTS]
    if size == 1:
        return iter([[facts[i % N_FACTS]] for i in range(rounds)])
    return iter([facts] * rounds)


@pytest.mark.parametrize("engine", ["suffix", "fast"])
@pytest.mark.parametrize("size", [1, 10])
def test_memit_step(benchmark, smollm2, memit_setup, size, engine):
    requests, editors = memit_setup
    editor = editors[engine]
    rounds = ROUNDS[(size, engine)]
    batches = _batches(requests, size, rounds)
    state = editor.init_state(smollm2)
    benchmark.group = "memit step smollm2"
    delta = benchmark.pedantic(lambda: editor.compute(smollm2, next(batches), state),
                               rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(engine=engine, batch=size, layers=list(editor.hparams.layers),
                                facts_per_round=size)
    _DELTAS[(size, engine)] = delta  # the last round's (batch 1: fact 9; batch 10: all 10)
    if (size, "suffix") in _DELTAS and (size, "fast") in _DELTAS:
        ref, new = _DELTAS[(size, "suffix")], _DELTAS[(size, "fast")]
        diff = max(_rel_max(new.matrices[name].to_dense(), md.to_dense())
                   for name, md in ref.matrices.items())
        benchmark.extra_info["max_rel_update_diff_vs_reference"] = diff
        assert diff <= 1e-4


def _rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| (float64)."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("size", [1, 10])
def test_phase_targets(benchmark, smollm2, memit_setup, size):
    from editors.targets import StepLog, compute_targets
    from editors.templates import context_templates

    requests, editors = memit_setup
    hp = editors["fast"].hparams
    templates = context_templates(smollm2, hp.templates)
    logs = []
    benchmark.group = "memit phases smollm2"

    def run():
        logs.append(StepLog())
        return compute_targets(smollm2, requests[:size], hp.layers[-1], templates, hp.target,
                               "residual", log=logs[-1])

    res = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    log = logs[-1]
    benchmark.extra_info.update(
        batch=size, runner=log.runner, steps=[r.steps for r in res], tokens_per_step=log.tokens,
        setup_s=log.setup, forward_s=log.forward, backward_s=log.backward)


@pytest.mark.parametrize("size", [1, 10])
def test_phase_sweep_parts(benchmark, smollm2, memit_setup, size):
    """The layer sweep's parts without the edits between layers: key passes at the five
    layers and residual passes at the last one (replaying as in the sweep), and the five
    solves."""
    from editors import keys, solvers
    from editors.templates import context_templates

    requests, editors = memit_setup
    editor = editors["fast"]
    hp, reqs = editor.hparams, requests[:size]
    templates = context_templates(smollm2, hp.templates)
    c0 = editor._c0.get(smollm2, hp)
    z_point = (keys.point_module(smollm2, hp.layers[-1], "residual"), "output")
    benchmark.group = "memit phases smollm2"
    parts = {"passes": 0.0, "solves": 0.0}

    def run():
        import time

        t0 = time.perf_counter()
        key_passes = keys.SubjectPasses(smollm2, reqs, templates)
        out_passes = keys.SubjectPasses(smollm2, reqs, ("",))
        Ks = []
        for layer in hp.layers:
            down = smollm2.arch.down_name(layer)
            Ks.append(key_passes.collect([(down, "input")], record=layer)[down].T)
            H = out_passes.collect([z_point], record=layer)[z_point[0]].T
        t1 = time.perf_counter()
        for layer, K in zip(hp.layers, Ks):
            solvers.memit_solve(H, K, c0[layer], hp.mom2_update_weight)
        parts["passes"] += t1 - t0
        parts["solves"] += time.perf_counter() - t1

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(batch=size, passes_s=parts["passes"] / 3, solves_s=parts["solves"] / 3)


def test_phase_apply_revert(benchmark, smollm2, memit_setup):
    from editors.base import apply_delta

    requests, editors = memit_setup
    delta = editors["fast"].compute(smollm2, requests[:1], editors["fast"].init_state(smollm2))
    benchmark.group = "memit phases smollm2"
    benchmark.pedantic(lambda: apply_delta(smollm2.model, delta).revert(), rounds=20,
                       iterations=1, warmup_rounds=1)


@pytest.mark.parametrize(("size", "engine"), [(1, "fast"), (10, "fast"), (10, "suffix")])
def test_efficacy_first_50(benchmark, smollm2, memit_setup, size, engine):
    from benchmark.evaluation.editing import counterfact_efficacy
    from editors.base import apply_delta

    requests, editors = memit_setup
    editor = editors[engine]
    state = editor.init_state(smollm2)
    benchmark.group = "memit efficacy smollm2"

    def run():
        hits = 0.0
        for start in range(0, 50, size):
            batch = requests[start:start + size]
            undo = apply_delta(smollm2.model, editor.compute(smollm2, batch, state))
            try:
                hits += counterfact_efficacy(smollm2, batch).value * len(batch) / 100
            finally:
                undo.revert()
        return 100 * hits / 50

    efficacy = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    _EFFICACY[(size, engine)] = efficacy
    benchmark.extra_info.update(batch=size, engine=engine, facts=50, efficacy=efficacy)
    if (10, "fast") in _EFFICACY and (10, "suffix") in _EFFICACY:
        assert _EFFICACY[(10, "fast")] == _EFFICACY[(10, "suffix")]
