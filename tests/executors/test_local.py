"""``seqedit grid --executor local``: real submitit LocalExecutor jobs (one subprocess per
cell) give records byte-identical to the in-process runner's, and a job killed mid-cell
resumes from the cell's saved state when it is submitted again."""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from benchmark.cell.folder import CellFolder
from benchmark.core import io
from benchmark.executors import job_resources, run_fanout
from benchmark.grid import load_grid
from benchmark.runner import grid_workdir, run_grid

# Real subprocess jobs on the tiny models: a few minutes on two cores. Not in the default
# selection; `nox -s tests` runs this module separately (noxfile.py), so CI runs it.
pytestmark = pytest.mark.slow


def _records_by_cell(out: Path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in (out / "records.jsonl").read_text(encoding="utf-8").splitlines():
        rows.setdefault(json.loads(line)["cell"], []).append(line)
    return rows


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The `ci` grid run by the in-process runner (the reference)."""
    root = tmp_path_factory.mktemp("in-process")
    grid = load_grid("ci")
    outcome = run_grid(grid, workdir=root / "wd", out=root / "out", progress=False)
    assert not outcome.failed, [s.reason for s in outcome.failed]
    return grid, root / "out"


def test_local_jobs_give_the_in_process_records(in_process, tmp_path):
    grid, reference = in_process
    outcome = run_fanout(grid, executor="local", resources=job_resources(grid, parallel=2),
                         workdir=tmp_path / "wd", out=tmp_path / "out", progress=False, poll_s=0.2)
    assert not outcome.failed, [s.reason for s in outcome.failed]
    assert len(set(outcome.jobs.values())) == len(grid.cells)  # one job per cell
    submitit_dir = grid_workdir(grid, tmp_path / "wd") / "submitit"
    for cell, job_id in outcome.jobs.items():  # each job ran the cell it is listed for
        with open(submitit_dir / job_id / f"{job_id}_0_result.pkl", "rb") as fh:
            kind, status = pickle.load(fh)
        assert (kind, status["cell"], status["status"]) == ("success", cell, "completed")
    assert (tmp_path / "out" / "records.jsonl").read_bytes() == (reference / "records.jsonl").read_bytes()
    assert (tmp_path / "out" / "cells.jsonl").read_bytes() == (reference / "cells.jsonl").read_bytes()


def _events(progress: Path) -> list[dict]:
    if not progress.is_file():
        return []
    out = []
    for line in progress.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return out


def _wait_for_lock(lock: Path, deadline: float) -> None:
    """Until no process holds ``lock`` (the killed job's task has ended)."""
    while True:
        try:
            with io.file_lock(lock, blocking=False):
                return
        except io.LockBusy:
            assert time.monotonic() < deadline, "the killed job's task still holds the cell"
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_local_job_resumes_when_submitted_again(in_process, tmp_path):
    grid, reference = in_process
    cell = next(c for c in grid.cells if c.model == "tiny-llama" and c.editor == "rome"
                and c.trajectory.label == "none")
    wd = grid_workdir(grid, tmp_path / "wd")
    first = run_fanout(grid, executor="local", resources=job_resources(grid), only=[cell.short_hash],
                       workdir=tmp_path / "wd", out=tmp_path / "out", wait=False, progress=False)
    pid = int(first.jobs[cell.short_hash])  # the local job's controller process
    deadline = time.monotonic() + 300
    while not any(e["event"] == "state_saved" and e["cell"] == cell.short_hash
                  for e in _events(wd / "progress.jsonl")):
        assert time.monotonic() < deadline, "the job saved no state in time"
        assert _alive(pid), "the job ended before it could be killed"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # the controller; its task dies with it (PR_SET_PDEATHSIG)
    os.waitpid(pid, 0)  # reap it (it is a child of this process)
    _wait_for_lock(CellFolder.of(wd, cell).lock_file, deadline)
    assert not CellFolder.of(wd, cell).done.exists()

    again = run_fanout(grid, executor="local", resources=job_resources(grid), only=[cell.short_hash],
                       workdir=tmp_path / "wd", out=tmp_path / "out", resume=True, progress=False,
                       poll_s=0.2)
    assert [s.status for s in again.statuses] == ["completed"], [s.reason for s in again.statuses]
    events = [e for e in _events(wd / "progress.jsonl") if e["cell"] == cell.short_hash]
    assert any(e["event"] == "resumed" and e["cursor"] > 0 for e in events)
    assert _records_by_cell(tmp_path / "out")[cell.short_hash] == \
        _records_by_cell(reference)[cell.short_hash]
