"""ROME on SmolLM2-135M: seconds per edit, fast path against the reference path, and a
per-phase profile (pytest-benchmark; no timing is asserted). How to run and read them:
docs/performance.md.

Groups:
- ``rome edit smollm2``: one edit (``ROME.compute``: keys, target optimisation, closed
  form) per round on the unedited model, the same CounterFact fact in round i of both rows;
  ``target_engine="suffix"`` (the reference: the procedure before the fast path) against
  the default ``"fast"``. The two updates are compared after timing (bit for bit equal).
  ``fast-2threads`` runs the fast engine with two intra-op threads (wall time), to show
  what the second core would give; its update is compared with the reference's too (it
  is not bit for bit equal: the products sum in another order).
- ``rome phases smollm2``: keys, the target optimisation of each engine (steps, tokens per
  step and seconds per forward/backward in ``extra_info``), the solve, apply + revert, and
  the restraints PRUNE and RECT on the update.

Second moments and templates are prepared before timing; one intra-op thread unless
the row says otherwise.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.embedded, pytest.mark.slow, pytest.mark.bench]

N_FACTS = 5
_DELTAS: dict[str, list] = {}


@pytest.fixture(scope="module")
def rome_setup(smollm2):
    from benchmark.data import load_requests
    from editors import create_editor

    torch.set_num_threads(1)
    requests = load_requests("counterfact", "edit", limit=N_FACTS)
    editors = {engine: create_editor("rome", smollm2, progress=False, target_engine=engine)
               for engine in ("suffix", "fast")}
    for editor in editors.values():
        editor.prepare(smollm2, requests, editor.init_state(smollm2))
    return requests, editors


@pytest.mark.parametrize("path", ["suffix", "fast", "fast-2threads"])
def test_rome_edit(benchmark, smollm2, rome_setup, path):
    requests, editors = rome_setup
    engine, threads = path.split("-")[0], (2 if path.endswith("2threads") else 1)
    editor = editors[engine]
    state = editor.init_state(smollm2)
    it = iter(requests)
    benchmark.group = "rome edit smollm2"
    deltas = _DELTAS.setdefault(path, [])

    def one_edit():
        deltas.append(editor.compute(smollm2, [next(it)], state))

    torch.set_num_threads(threads)
    try:
        benchmark.pedantic(one_edit, rounds=N_FACTS, iterations=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(1)
    benchmark.extra_info.update(engine=engine, threads=threads, layer=editor.hparams.layers[0],
                                facts=N_FACTS)
    if path != "suffix" and len(_DELTAS.get("suffix", ())) == len(deltas) == N_FACTS:
        diffs = []
        for ref, new in zip(_DELTAS["suffix"], deltas):
            (a,), (b,) = ref.matrices.values(), new.matrices.values()
            ua, ub = a.to_dense().double(), b.to_dense().double()
            diffs.append(float((ub - ua).abs().max() / ua.abs().max()))
        benchmark.extra_info["max_rel_update_diff_vs_reference"] = max(diffs)
        assert max(diffs) <= (1e-5 if threads == 1 else 1e-4)


@pytest.fixture(scope="module")
def phase_inputs(smollm2, rome_setup):
    """Everything one ROME edit computes for the first fact (fast engine)."""
    from benchmark.core.arch import down_weight, to_out_in
    from editors import keys
    from editors.templates import context_templates

    requests, editors = rome_setup
    editor = editors["fast"]
    hp, request = editor.hparams, requests[0]
    layer = hp.layers[0]
    templates = context_templates(smollm2, hp.templates)
    k_avg = keys.compute_keys(smollm2, [request], [layer], templates)[layer][0]
    k_bare = keys.compute_keys(smollm2, [request], [layer], ("",))[layer][0]
    delta = editor.compute(smollm2, [request], editor.init_state(smollm2))
    W = to_out_in(down_weight(smollm2.model, smollm2.arch, layer), smollm2.arch.layout)
    return {"editor": editor, "request": request, "layer": layer, "templates": templates,
            "k_avg": k_avg, "k_bare": k_bare, "delta": delta, "W": W}


def test_phase_keys(benchmark, smollm2, phase_inputs):
    from editors import keys

    p = phase_inputs
    benchmark.group = "rome phases smollm2"

    def run():
        keys.compute_keys(smollm2, [p["request"]], [p["layer"]], p["templates"])
        keys.compute_keys(smollm2, [p["request"]], [p["layer"]], ("",))

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("engine", ["suffix", "fast"])
def test_phase_target(benchmark, smollm2, phase_inputs, engine):
    from editors.targets import StepLog, compute_target

    p = phase_inputs
    hp = p["editor"].hparams
    benchmark.group = "rome phases smollm2"
    logs = []

    def run():
        logs.append(StepLog())
        return compute_target(smollm2, p["request"], p["layer"], p["templates"], hp.target,
                              "mlp_out", engine=engine, log=logs[-1])

    res = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    log = logs[-1]
    benchmark.extra_info.update(
        engine=engine, runner=log.runner, steps=res.steps, tokens_per_step=log.tokens[0],
        setup_s=log.setup, forward_s_per_step=sum(log.forward) / len(log.forward),
        backward_s_per_step=sum(log.backward[:-1]) / max(1, len(log.backward) - 1),
        templates=len(p["templates"]))


def test_phase_solve(benchmark, smollm2, phase_inputs):
    from editors.rome import rome_factors

    p = phase_inputs
    solve = p["editor"]._solver(smollm2)
    md = next(iter(p["delta"].matrices.values()))
    benchmark.group = "rome phases smollm2"
    benchmark.pedantic(lambda: rome_factors(solve(p["k_avg"]), p["k_bare"], md.A[:, 0]),
                       rounds=20, iterations=1, warmup_rounds=1)


def test_phase_apply_revert(benchmark, smollm2, phase_inputs):
    from editors.base import apply_delta

    benchmark.group = "rome phases smollm2"
    benchmark.pedantic(lambda: apply_delta(smollm2.model, phase_inputs["delta"]).revert(),
                       rounds=20, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("restraint", ["prune", "rect"])
def test_phase_restraint(benchmark, phase_inputs, restraint):
    from prune import PRUNE, RECT, sigma_max

    p = phase_inputs
    md = next(iter(p["delta"].matrices.values()))
    W = p["W"]
    benchmark.group = "rome phases smollm2"
    if restraint == "prune":
        m = sigma_max(W)
        benchmark.pedantic(PRUNE().restrain, args=(W, (md.A, md.B)), kwargs={"sigma_max_w0": m},
                           rounds=20, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(RECT().restrain, args=(W, (md.A, md.B)), rounds=20, iterations=1,
                           warmup_rounds=1)
