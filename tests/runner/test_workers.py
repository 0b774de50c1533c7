"""Parallel cell workers die with their runner (no orphan keeps writing a cell)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

PARENT = r"""
import multiprocessing as mp, os, sys, time

def child(path, die):
    if die:
        from benchmark.runner import _die_with_parent
        _die_with_parent()
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=child, args=(sys.argv[1], sys.argv[2] == "1"))
    p.start()
    while not os.path.exists(sys.argv[1]) or not open(sys.argv[1]).read():
        time.sleep(0.05)
    os._exit(0)  # the runner dies abruptly (no join, no cleanup)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie awaiting its reaper counts as dead
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("die", [True, False])
def test_worker_dies_with_its_runner(tmp_path, die):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    pid_file = tmp_path / "child.pid"
    subprocess.run([sys.executable, str(script), str(pid_file), "1" if die else "0"], check=True,
                   timeout=120, cwd=os.getcwd())
    pid = int(pid_file.read_text())
    try:
        deadline = time.monotonic() + (10 if die else 1.5)
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        # without the parent-death signal the orphan lives on (this is what the call prevents)
        assert _alive(pid) is (not die)
    finally:
        if _alive(pid):
            os.kill(pid, 9)
