"""SIGKILL `seqedit grid --grid ci` at three points, resume each time: the final records
equal an uninterrupted run's (real ROME, RECT, PRUNE and evaluators on tiny models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import SUITE_VERSION

pytestmark = pytest.mark.slow


def _cmd(workdir: Path, out: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "benchmark", "grid", "--grid", "ci", "--workdir", str(workdir),
           "--out", str(out), "--no-progress"]
    return cmd + (["--resume"] if resume else [])


def _events(progress: Path) -> list[dict]:
    if not progress.is_file():
        return []
    rows = []
    for line in progress.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return rows


def _run_until(workdir: Path, out: Path, resume: bool, condition, timeout: float = 600) -> bool:
    """Start the grid, SIGKILL it once ``condition(new events)`` holds; True if killed."""
    progress = workdir / SUITE_VERSION / "ci" / "progress.jsonl"
    seen = len(_events(progress))
    env = dict(os.environ)
    proc = subprocess.Popen(_cmd(workdir, out, resume), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if condition(_events(progress)[seen:]):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.05)
        assert proc.poll() is not None, "grid run timed out"
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_three_times_then_resume_equals_uninterrupted(tmp_path):
    ref_out = tmp_path / "ref-out"
    subprocess.run(_cmd(tmp_path / "ref-wd", ref_out, False), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = (ref_out / "records.jsonl").read_text()
    assert reference

    wd, out = tmp_path / "wd", tmp_path / "out"
    kill_points = [
        # 1: in the first cell, right after its first state save (between checkpoints)
        lambda ev: any(e["event"] == "state_saved" for e in ev),
        # 2: during an evaluation phase, after a checkpoint's state was saved
        lambda ev: any(e["event"] == "phase" and e.get("phase") == "evaluation"
                       and e.get("n_edits", 0) > 0 for e in ev),
        # 3: after a further cell completed, in the middle of the next one's edits
        lambda ev: any(e["event"] == "completed" for e in ev)
        and any(e["event"] == "state_saved" for e in ev[[i for i, e in enumerate(ev)
                                                          if e["event"] == "completed"][0]:]),
    ]
    killed = [_run_until(wd, out, resume=(i > 0), condition=c) for i, c in enumerate(kill_points)]
    assert all(killed), f"the run finished before a kill point: {killed}"
    subprocess.run(_cmd(wd, out, True), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    assert (out / "records.jsonl").read_text() == reference
    events = _events(wd / SUITE_VERSION / "ci" / "progress.jsonl")
    assert sum(e["event"] == "resumed" for e in events) >= 2
    assert sum(e["event"] == "skipped_completed" for e in events) >= 1


def test_stopping_the_pool_cancels_queued_cells_and_ends_running_workers():
    """What Ctrl-C does to a parallel grid: queued cells never start, the running worker ends."""
    import multiprocessing as mp
    import time
    from concurrent.futures import ProcessPoolExecutor

    from benchmark.runner import _stop_pool

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(time.sleep, 30) for _ in range(4)]
        while not futures[0].running():
            time.sleep(0.05)
        processes = list(pool._processes.values())
        _stop_pool(pool)
    for proc in processes:
        proc.join(10)
        assert proc.exitcode is not None and proc.exitcode != 0  # terminated, not finished
    for f in futures:  # none ran to completion: cancelled, or failed with the broken pool
        assert f.cancelled() or f.exception(timeout=10) is not None
