"""SIGKILL during publish: a forked child publishes and kills itself at a step of the
publish (or at its k-th file); the published folder is then the old one or the new one,
byte for byte, never a mix. A kill between the two renames of the swap leaves no folder at
the published place; the next publish puts the old one back first."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from benchmark import SUITE_VERSION
from benchmark.core import io
from benchmark.publish import publish, recover
from tests.reliability.conftest import tree_hashes


def _publish_in_child(grid, wd, out, step_point: str | None = None, kth_write: int = 0) -> int:
    """Publish in a forked child that SIGKILLs itself at ``step_point`` or at its
    ``kth_write``-th file in the staging folder; returns the child's wait status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            real, seen = io.atomic_path, []

            def atomic_path(path):
                if str(path).startswith(str(out) + ".tmp-"):
                    seen.append(path)
                    if len(seen) == kth_write:
                        os.kill(os.getpid(), signal.SIGKILL)
                return real(path)

            io.atomic_path = atomic_path

            def step(point):
                if point == step_point:
                    os.kill(os.getpid(), signal.SIGKILL)

            publish(grid, wd, out, step=step)
        finally:
            os._exit(3)
    return os.waitpid(pid, 0)[1]


@pytest.fixture
def old_and_new(published, tmp_path):
    """``out`` holds an older publish (the second cell still pending); ``new`` is what a
    publish of the finished work folder gives (built elsewhere)."""
    partial = tmp_path / "partial"
    shutil.copytree(published.workdir, partial)
    (partial / SUITE_VERSION / "rgrid" / published.grid.cells[1].folder / "done.json").unlink()
    shutil.rmtree(published.out)
    publish(published.grid, partial / SUITE_VERSION / "rgrid", published.out)
    publish(published.grid, published.wd, tmp_path / "new")
    old, new = tree_hashes(published.out), tree_hashes(tmp_path / "new")
    assert old != new and "records.jsonl" in old
    return old, new


# (case id, step to kill at, k-th file to kill at, expected folder afterwards)
KILL_POINTS = [
    ("at-start", "publish_start", 0, "old"),
    ("first-file", None, 1, "old"),
    ("records-written", None, 2, "old"),
    ("among-tables", None, 7, "old"),
    ("last-plot", None, 14, "old"),
    ("staged", "publish_staged", 0, "old"),
    ("between-renames", "publish_swapping", 0, "missing"),
    ("after-swap", "published", 0, "new"),
]


@pytest.mark.parametrize("case,point,kth,expected", KILL_POINTS, ids=[c[0] for c in KILL_POINTS])
def test_sigkill_during_publish_leaves_old_or_new(published, old_and_new, case, point, kth,
                                                  expected):
    old, new = old_and_new
    status = _publish_in_child(published.grid, published.wd, published.out, point, kth)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    after = tree_hashes(published.out)
    if expected == "missing":
        assert after == {}
        recover(published.out)  # what the next publish does first
        after = tree_hashes(published.out)
        expected = "old"
    assert after == (old if expected == "old" else new)
    # the next publish cleans up what the killed one left and publishes the new folder
    publish(published.grid, published.wd, published.out)
    assert tree_hashes(published.out) == new
    assert [p.name for p in published.out.parent.iterdir()
            if p.name.startswith(published.out.name + ".")] == []
