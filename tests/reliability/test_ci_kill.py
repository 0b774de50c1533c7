"""SIGKILL `seqedit grid --grid ci` at 5 random (seeded) points, two of them while it
publishes, resuming each time: the final records are byte-identical to an uninterrupted
run's, and a watcher polling the published place never sees a half-written folder (whenever
it exists, records.jsonl parses completely, cells.jsonl lists every cell and the records are
exactly those of the completed cells). The place starts with an older publish (one cell
completed), which the watcher must see until the final publish replaces it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from benchmark import SUITE_VERSION
from tests.runner.test_sigkill import _cmd, _events, _run_until

pytestmark = pytest.mark.slow

SEED = 20260101


def _read_at(dfd: int, name: str) -> str:
    with open(name, encoding="utf-8", opener=lambda path, flags: os.open(path, flags, dir_fd=dfd)) as fh:
        return fh.read()


class Watcher(threading.Thread):
    """Polls ``out``; records every moment it held something other than a whole publish.
    Both files are read through one open handle of the folder, so a swap between the two
    reads cannot pair files of two folders."""

    def __init__(self, out: Path, cells: set[str]):
        super().__init__(daemon=True)
        self.out, self.cells = out, cells
        self.stop, self.problems = threading.Event(), []
        self.versions: list[str] = []  # records.jsonl contents seen, in order, deduplicated

    def run(self) -> None:
        while not self.stop.wait(0.01):
            try:
                dfd = os.open(self.out, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:  # no folder there (yet, or between the swap's renames)
                continue
            try:
                records, cells = _read_at(dfd, "records.jsonl"), _read_at(dfd, "cells.jsonl")
            except FileNotFoundError:  # the old folder, being removed after a swap
                continue
            finally:
                os.close(dfd)
            self._check(records, cells)

    def _check(self, records: str, cells: str) -> None:
        try:
            with_records = {json.loads(line)["cell"] for line in records.splitlines()}
            rows = [json.loads(line) for line in cells.splitlines()]
        except ValueError as exc:
            self.problems.append(f"half-written file: {exc}")
            return
        completed = {r["cell"] for r in rows if r["status"] == "completed"}
        if {r["cell"] for r in rows} != self.cells or with_records != completed:
            self.problems.append(f"cells {rows!r:.200}; records of {sorted(with_records)}")
        if not self.versions or self.versions[-1] != records:
            self.versions.append(records)


def test_five_random_kills_then_resume_equal_uninterrupted(tmp_path):
    ref_out = tmp_path / "ref-out"
    subprocess.run(_cmd(tmp_path / "ref-wd", ref_out, False), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = (ref_out / "records.jsonl").read_text()
    cells = {json.loads(line)["cell"] for line in (ref_out / "cells.jsonl").read_text().splitlines()}
    assert reference and len(cells) == 9

    rng = random.Random(SEED)
    # three kills after a random number of new progress events (the ci run has ~120), then
    # two a random moment after publishing started (writing its 16 plots takes seconds)
    points = [rng.randint(5, 35) for _ in range(3)] + [rng.uniform(0.0, 1.5) for _ in range(2)]
    whens = [lambda ev, k=k: len(ev) >= k for k in points[:3]]
    whens += [lambda ev, d=d: any(e["event"] == "publish_start" and time.time() - e["unix"] >= d
                                  for e in ev) for d in points[3:]]

    # the previously published folder: the first cell completed, the others pending
    wd, out = tmp_path / "wd", tmp_path / "out"
    first = sorted(cells)[0]
    subprocess.run(_cmd(tmp_path / "first-wd", out, False) + ["--cells", first], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    old = (out / "records.jsonl").read_text()
    assert {json.loads(line)["cell"] for line in old.splitlines()} == {first}
    watcher = Watcher(out, cells)
    watcher.start()
    try:
        killed = [_run_until(wd, out, resume=i > 0, condition=w) for i, w in enumerate(whens)]
        assert all(killed), f"a run finished before its kill point {points}: {killed}"
        subprocess.run(_cmd(wd, out, True), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.problems == []
    assert watcher.versions[0] == old and watcher.versions[-1] == reference
    assert len(watcher.versions) == 2  # the old folder until the final publish swapped it
    assert (out / "records.jsonl").read_text() == reference
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out.")] == []
    events = _events(wd / SUITE_VERSION / "ci" / "progress.jsonl")
    assert sum(e["event"] == "publish_start" for e in events) >= 3  # 2 killed, 1 finished
    assert sum(e["event"] == "published" for e in events) >= 1
    assert os.path.isdir(out / "plots")
