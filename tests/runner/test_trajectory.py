"""Trajectories: editor-call accounting, resume after a kill, failures, variant wiring.

The fake editor (conftest) draws rank-1 updates from the global torch RNG, so the exact
weights of every checkpoint can be recomputed here independently with numpy; PRUNE and
RECT are checked against direct numpy statements of docs/methods.md (restraints: PRUNE, RECT).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from benchmark.components import Hooks
from benchmark.evaluation import MetricValue, pooled
from benchmark.grid import parse_grid
from benchmark.publish import collect_records
from benchmark.results import read_records, records_to_jsonl
from benchmark.runner import grid_workdir, run_grid
from tests.runner.conftest import FAKE_NAMES, FakeEditor, make_components


class SimulatedKill(BaseException):
    """Not an Exception: like SIGKILL, nothing in the runner may catch it."""


def _run(grid, tmp_path, comps=None, hooks=None, resume=False, publish=False):
    """Run a grid; records are read back from the work folder (publishing tables and
    plots is tested once, in test_publish_writes_results)."""
    comps = comps or make_components()[0]
    return run_grid(grid, workdir=tmp_path / "wd", out=tmp_path / "out", resume=resume,
                    components=comps, hooks=hooks, progress=False, publish_results=publish)


def _records(grid, tmp_path):
    return collect_records(grid, grid_workdir(grid, tmp_path / "wd"))


def _records_text(grid, tmp_path):
    return records_to_jsonl(_records(grid, tmp_path))


# --------------------------------------------------------------------------- editor calls
@pytest.mark.parametrize("checkpoints,variants,batch", [
    ("[0, 2, 4, 6]", "[none, {kind: prune, alpha: e}]", 1),
    ("[6]", "[none]", 1),
    ("[1, 2, 3, 4, 5, 6]", "[none, prune, {kind: prune, alpha: linear}]", 1),
    ("[0, 2, 4, 6]", "[none, prune]", 2),
    ("[0, 4, 6]", "[none, prune]", 4),
])
def test_editor_calls_are_sum_of_largest_edit_counts(tmp_path, grid_factory, checkpoints, variants,
                                                      batch):
    grid = grid_factory(checkpoints=checkpoints, variants=variants, batch_size=batch)
    calls = []
    comps, editor = make_components()
    hooks = Hooks(on_compute=lambda cell, b: calls.append((cell, len(b))))
    outcome = _run(grid, tmp_path, comps, hooks)
    assert all(s.status == "completed" for s in outcome.statuses)
    expected = sum(math.ceil(c.n_edits / c.batch_size) for c in grid.cells)  # batches
    assert editor.counter["calls"] == expected == len(calls)
    assert sum(n for _, n in calls) == sum(c.n_edits for c in grid.cells)  # facts
    # a second, resumed run of the completed grid computes nothing
    editor.counter.clear()
    _run(grid, tmp_path, comps, resume=True)
    assert editor.counter["calls"] == 0


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kill_at", [1, 3, 4, 6])
def test_resume_after_kill_gives_identical_records(tmp_path, grid_factory, kill_at):
    grid = grid_factory(save_every=3)
    ref_comps, _ = make_components()
    _run(grid, tmp_path / "ref", ref_comps)
    reference = _records_text(grid, tmp_path / "ref")

    comps, editor = make_components()
    first_cell = grid.cells[0].short_hash
    seen = {"killed": False}

    def after_edit(cursor):
        if cursor == kill_at and not seen["killed"]:
            seen["killed"] = True
            raise SimulatedKill

    with pytest.raises(SimulatedKill):
        _run(grid, tmp_path / "killed", comps, Hooks(after_edit=after_edit))
    calls_before = editor.counter["calls"]
    assert calls_before == kill_at  # killed inside the first cell
    wd = tmp_path / "killed" / "wd"
    cell_dir = next(p for p in wd.rglob("*") if p.is_dir() and p.name.endswith(first_cell))
    assert not (cell_dir / "done.json").exists()
    editor.counter.clear()
    _run(grid, tmp_path / "killed", comps, resume=True)
    assert _records_text(grid, tmp_path / "killed") == reference
    # it resumed from the last saved state (every 3 edits and at checkpoints 2, 4, 6)
    saved = max([c for c in (2, 3, 4, 6) if c < kill_at] or [0])
    assert editor.counter["calls"] == (6 - saved) + 6
    prov = json.loads((cell_dir / "provenance.json").read_text())
    assert prov["sessions"] == (2 if saved else 1)


def test_resumed_provenance_sums_the_seconds_of_every_session(tmp_path, grid_factory, monkeypatch):
    """wall_seconds is summed over sessions (docs/results-schema.md): the resumed session's
    own load and statistics count along with the saved session's. A clock that advances
    one second per reading makes each timed block last exactly one second."""
    import itertools

    from benchmark.cell import state

    ticks = itertools.count()
    monkeypatch.setattr(state, "_clock", lambda: float(next(ticks)))
    grid = grid_factory(save_every=3)
    seen = {"killed": False}

    def after_edit(cursor):
        if cursor == 4 and not seen["killed"]:
            seen["killed"] = True
            raise SimulatedKill

    with pytest.raises(SimulatedKill):
        _run(grid, tmp_path, hooks=Hooks(after_edit=after_edit))
    _run(grid, tmp_path, resume=True)
    first_cell = grid.cells[0].short_hash
    cell_dir = next(p for p in (tmp_path / "wd").rglob("*") if p.is_dir() and p.name.endswith(first_cell))
    prov = json.loads((cell_dir / "provenance.json").read_text())
    assert prov["sessions"] == 2
    # one load and one statistics block in each of the two sessions
    assert prov["wall_seconds"]["load"] == 2.0 and prov["wall_seconds"]["statistics"] == 2.0


def test_resume_after_two_kills(tmp_path, grid_factory):
    grid = grid_factory(save_every=2, checkpoints="[0, 3, 6]")
    _run(grid, tmp_path / "ref")
    reference = _records_text(grid, tmp_path / "ref")
    comps, _ = make_components()
    for kill_at in (2, 5):
        state = {"done": False}

        def after_edit(cursor, kill_at=kill_at, state=state):
            if cursor == kill_at and not state["done"]:
                state["done"] = True
                raise SimulatedKill

        with pytest.raises(SimulatedKill):
            _run(grid, tmp_path / "k", comps, Hooks(after_edit=after_edit), resume=True)
    _run(grid, tmp_path / "k", comps, resume=True)
    assert _records_text(grid, tmp_path / "k") == reference


def test_fresh_run_discards_old_state(tmp_path, grid_factory):
    grid = grid_factory()
    _run(grid, tmp_path)
    first = _records_text(grid, tmp_path)
    comps, editor = make_components()
    _run(grid, tmp_path, comps)  # no --resume: recomputed from scratch, same records
    assert editor.counter["calls"] == 12
    assert _records_text(grid, tmp_path) == first


# --------------------------------------------------------------------------- failures
def test_failing_cell_recorded_and_grid_goes_on(tmp_path):
    grid_text = """\
schema_version: 1
name: fails
models: [tiny-llama]
editors: [fake, memit]
datasets: [synthetic]
n_edits: 4
checkpoints: [0, 2, 4]
evaluation: {editing_metrics: [efficacy], tasks: []}
"""
    path = tmp_path / "fails.yaml"
    path.write_text(grid_text)
    grid = parse_grid(path, grid_text, FAKE_NAMES)
    good, bad = FakeEditor(), FakeEditor(nan_at=3)
    comps, _ = make_components(good)
    from dataclasses import replace

    from benchmark.components import EditorBundle

    comps = replace(comps, create_editor=lambda m, lm, o, progress=True: EditorBundle(
        bad if m == "memit" else good, {}, None))
    outcome = _run(grid, tmp_path, comps)
    status = {s.spec["editor"]: s for s in outcome.statuses}
    assert status["fake"].status == "completed"
    assert status["memit"].status == "failed"
    assert "non-finite" in status["memit"].reason
    _run(grid, tmp_path, comps, resume=True, publish=True)  # publishing after a failure works
    cells = [json.loads(line) for line in (tmp_path / "out" / "cells.jsonl").read_text().splitlines()]
    assert {c["status"] for c in cells} == {"completed", "failed"}
    assert "non-finite" in next(c["reason"] for c in cells if c["status"] == "failed")
    recs = read_records(tmp_path / "out" / "records.jsonl")
    assert {r.editor for r in recs} == {"fake"}  # failed cells publish no partial records
    # resume retries the failed cell (and fails again, recorded again)
    outcome = _run(grid, tmp_path, comps, resume=True)
    assert [s.status for s in outcome.statuses if s.spec["editor"] == "memit"] == ["failed"]


def test_cell_owned_by_another_process_is_left_alone(tmp_path, grid_factory):
    """A cell whose lock another process holds (a second runner on the same work folder,
    or an orphaned worker) is reported and not touched, even by a fresh (non-resume) run
    that would otherwise wipe the cell's folder."""
    import fcntl
    import subprocess
    import sys

    grid = grid_factory(trajectories="[none]")
    _run(grid, tmp_path)  # complete it once
    (cell,) = grid.cells
    wd = grid_workdir(grid, tmp_path / "wd")
    before = sorted(p.relative_to(wd).as_posix() for p in (wd / cell.folder).rglob("*"))
    lock = wd / f".{cell.folder}.lock"
    holder = subprocess.Popen(  # another process holds the lock (flock is per process here)
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        outcome = _run(grid, tmp_path)  # fresh run: would rmtree the cell if it could
        (status,) = outcome.statuses
        assert status.status == "failed" and "another seqedit process" in status.reason
        after = sorted(p.relative_to(wd).as_posix() for p in (wd / cell.folder).rglob("*"))
        assert after == before and not (wd / cell.folder / "failed.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with open(lock, "a") as fh:  # released with its holder
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


# --------------------------------------------------------------------------- variants
def test_variants_do_not_disturb_the_trajectory(tmp_path, grid_factory):
    with_prune = grid_factory(name="a", variants="[none, prune]")
    without = grid_factory(name="b", variants="[none]")
    _run(with_prune, tmp_path / "a")
    _run(without, tmp_path / "b")
    ra = [r for r in _records(with_prune, tmp_path / "a") if r.variant == "none"]
    rb = _records(without, tmp_path / "b")

    def strip(rs):
        return sorted((r.trajectory, r.n_edits, r.kind, r.task, r.metric, r.value) for r in rs)

    assert strip(ra) == strip(rb)


def test_unedited_checkpoint_identical_across_variants(tmp_path, grid_factory):
    grid = grid_factory()
    _run(grid, tmp_path)
    recs = _records(grid, tmp_path)
    at0 = {}
    for r in recs:
        if r.n_edits == 0:
            at0.setdefault((r.trajectory, r.kind, r.task, r.metric), {})[r.variant] = r.value
    assert at0 and all(v["none"] == v["prune-e"] for v in at0.values())


@pytest.mark.parametrize("scale,active", [(1e-4, False), (5.0, True)])
def test_inactive_prune_variant_reuses_unrestrained_records(tmp_path, grid_factory, scale, active):
    """PRUNE that leaves every singular value alone is the identity: the variant's model is
    the unrestrained one, so its records are copied instead of evaluated again. Whether
    PRUNE is active is decided here independently, with numpy (σ_max of the accumulated
    rank-1 updates against σ_max of W0)."""
    grid = grid_factory(trajectories="[none]", checkpoints="[0, 3, 6]")
    calls = []
    base_comps, _ = make_components(FakeEditor(scale=scale))

    def counting_tasks(loaded, tasks, batch_size, chat_template=False):
        calls.append(1)
        return base_comps.evaluate_tasks(loaded, tasks, batch_size, chat_template)

    comps = dataclasses.replace(base_comps, evaluate_tasks=counting_tasks)
    _run(grid, tmp_path, comps)
    recs = _records(grid, tmp_path)
    # PRUNE acts at a checkpoint iff σ_max(ΔW) ≥ m = σ_max(W0) (docs/methods.md, PRUNE); m here
    # from numpy on the unedited weight, σ_max(ΔW) from the "none" spectrum records
    from benchmark import models

    loaded = models.load("tiny-llama")
    w0 = loaded.model.get_submodule(loaded.arch.down_name(1)).weight.detach().double().numpy()
    m = np.linalg.svd(w0, compute_uv=False)[0]
    acts = [next(r.value for r in recs if r.n_edits == n and r.variant == "none"
                 and r.kind == "spectrum" and r.metric == "sigma_max_dw") >= m for n in (3, 6)]
    assert acts == [active, active]
    by = {}
    for r in recs:
        by.setdefault((r.n_edits, r.kind, r.task, r.metric), {})[r.variant] = r.value
    edited = {k: v for k, v in by.items() if k[0] > 0 and k[1] == "general"}
    assert edited
    if active:
        assert any(v["none"] != v["prune-e"] for v in edited.values())
        assert len(calls) == 1 + 2 * 2  # unedited once, then none and prune at 3 and 6
    else:
        assert all(v["none"] == v["prune-e"] for v in by.values())
        assert len(calls) == 1 + 2  # unedited once, then none only at 3 and 6


def _np_prune(w0: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """docs/methods.md, PRUNE, with alpha e: W0 + U F(Σ) Vᵀ, F(σ) = ln σ − ln m + m for σ ≥ m."""
    m = np.linalg.svd(w0, compute_uv=False)[0]
    u, s, vt = np.linalg.svd(dw, full_matrices=False)
    f = np.where(s >= m, np.log(np.maximum(s, m)) - np.log(m) + m, s)
    return w0 + (u * f) @ vt


def _np_rect_step(w_prev: np.ndarray, d: np.ndarray, keep: float) -> np.ndarray:
    """docs/methods.md, RECT: keep the ceil(keep·numel) largest |ΔW|/(|W|+ε) entries."""
    score = np.abs(d) / (np.abs(w_prev) + 1e-8)
    k = math.ceil(keep * d.size)
    thresh = np.sort(score.ravel())[::-1][k - 1]
    return np.where(score >= thresh, d, 0.0)


def test_spectrum_matches_independent_recomputation(tmp_path, grid_factory):
    """σ_max(W) of every (trajectory, variant, n) against numpy: the fake editor's
    updates replayed from the seed, RECT and PRUNE restated in numpy."""
    from benchmark import models

    grid = grid_factory(checkpoints="[0, 2, 4, 6]")
    _run(grid, tmp_path)
    recs = [r for r in _records(grid, tmp_path)
            if r.kind == "spectrum" and r.metric == "sigma_max_w"]
    lm = models.load("tiny-llama")
    w0 = lm.model.get_submodule(lm.arch.down_name(1)).weight.detach().double().numpy()
    torch.manual_seed(0)  # the cell seed
    updates = []
    for _ in range(6):
        a = (torch.randn(w0.shape[0], 1) * 0.5).double().numpy()
        b = torch.randn(w0.shape[1], 1).double().numpy()
        updates.append(a @ b.T)
    expected = {}
    w_plain, w_rect = w0.copy(), w0.copy()
    for n, d in enumerate(updates, 1):
        w_plain = w_plain + d
        w_rect = w_rect + _np_rect_step(w_rect, d, 0.5)
        if n in (2, 4, 6):
            for traj, w in (("none", w_plain), ("rect-0.5", w_rect)):
                expected[(traj, "none", n)] = np.linalg.svd(w, compute_uv=False)[0]
                expected[(traj, "prune-e", n)] = np.linalg.svd(_np_prune(w0, w - w0),
                                                               compute_uv=False)[0]
    got = {(r.trajectory, r.variant, r.n_edits): r.value for r in recs if r.n_edits > 0}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=2e-4), key
    # PRUNE is active here: it lowers σ_max
    assert expected[("none", "prune-e", 6)] < 0.5 * expected[("none", "none", 6)]


def test_prune_online_trajectory_matches_numpy(tmp_path, grid_factory):
    grid = grid_factory(trajectories="[{kind: prune, mode: online}]", variants="[none]",
                        checkpoints="[0, 3]", n_edits=3)
    _run(grid, tmp_path)
    from benchmark import models

    lm = models.load("tiny-llama")
    w0 = lm.model.get_submodule(lm.arch.down_name(1)).weight.detach().double().numpy()
    torch.manual_seed(0)
    acc = np.zeros_like(w0)
    for _ in range(3):
        a = (torch.randn(w0.shape[0], 1) * 0.5).double().numpy()
        b = torch.randn(w0.shape[1], 1).double().numpy()
        acc = _np_prune(w0, acc + a @ b.T) - w0  # ΔW̄_k = F(ΔW̄_{k-1} + δ_k)
    rec = [r for r in _records(grid, tmp_path)
           if r.kind == "spectrum" and r.metric == "sigma_max_w" and r.n_edits == 3]
    assert len(rec) == 1 and rec[0].trajectory == "prune-e-online"
    assert rec[0].value == pytest.approx(np.linalg.svd(w0 + acc, compute_uv=False)[0], rel=2e-4)


# --------------------------------------------------------------------------- timing
def test_final_timing_scores_editing_only_on_final_model(tmp_path, grid_factory):
    grid = grid_factory(timing="final", trajectories="[none]")
    _run(grid, tmp_path)
    recs = _records(grid, tmp_path)
    ns = {(r.n_edits, r.variant) for r in recs if r.kind == "editing"}
    assert ns == {(0, "none"), (0, "prune-e"), (6, "none"), (6, "prune-e")}
    assert all(r.n == 6 for r in recs if r.kind == "editing")  # every fact of the trajectory
    assert {r.n_edits for r in recs if r.kind == "general"} == {0, 2, 4, 6}


def test_each_timing_pools_per_edit_scores(tmp_path, grid_factory):
    grid = grid_factory(timing="each", trajectories="[none]", batch_size=2)
    _run(grid, tmp_path)
    recs = _records(grid, tmp_path)
    ed = {(r.n_edits, r.variant, r.metric): r for r in recs if r.kind == "editing"}
    assert ed[(4, "none", "efficacy")].n == 4 and ed[(6, "none", "efficacy")].n == 6
    assert (4, "prune-e", "efficacy") not in ed  # posthoc variants have no per-edit protocol


def test_pooled_equals_mean_of_all_items():
    rng = np.random.default_rng(0)
    groups = [list(rng.random(k)) for k in (1, 3, 4, 2)]
    pooled_mv = pooled([MetricValue.mean_of(g) for g in groups])
    direct = MetricValue.mean_of([x for g in groups for x in g])
    assert pooled_mv.n == direct.n == 10
    assert pooled_mv.value == pytest.approx(direct.value, rel=1e-12)
    assert pooled_mv.stderr == pytest.approx(direct.stderr, rel=1e-12)
