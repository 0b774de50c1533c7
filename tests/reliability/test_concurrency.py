"""Two runners on one work folder: the second, with or without ``--resume``, is refused at
once, names the folder and the live runner's pid, and touches nothing (work folder and
published folder byte-identical)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchmark.runner import own_workdir
from tests.reliability.conftest import tree_hashes

#: a stand-in for a live runner in another process: holds the work folder's lock the way
#: benchmark.runner.own_workdir does (flock on .runner.lock, pid and start time inside)
_HOLDER = textwrap.dedent("""\
    import fcntl, json, os, sys
    fh = open(sys.argv[1], "a")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(sys.argv[1], "w") as w:
        json.dump({"pid": os.getpid(), "started": "2026-01-01T00:00:00"}, w)
    print("ready", flush=True)
    sys.stdin.read()
""")


class _Holder:
    def __init__(self, where: str, lock):
        self.where, self.lock, self.proc, self.ctx = where, lock, None, None

    def __enter__(self) -> int:
        if self.where == "this-process":
            self.ctx = own_workdir(self.lock.parent)
            self.ctx.__enter__()
            return os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(self.lock)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self.proc.pid

    def __exit__(self, *exc) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(None, None, None)
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
@pytest.mark.parametrize("where", ["this-process", "child-process"])
def test_second_runner_is_refused(published, cli, where, resume):
    with _Holder(where, published.wd / ".runner.lock") as pid:
        work_before, out_before = tree_hashes(published.workdir), published.hashes()
        res = cli(*published.argv(*(["--resume"] if resume else [])))
        assert res.code == 2
        assert (f"work folder {published.wd} is in use by another seqedit run (pid {pid}, "
                "started ") in res.err
        assert tree_hashes(published.workdir) == work_before  # baselines and cells kept
        assert published.hashes() == out_before


@pytest.mark.parametrize("content", ["", "{not json", '{"started": "x"}'],
                         ids=["empty", "garbage", "no-pid"])
def test_holder_without_readable_owner_is_still_refused(published, cli, content):
    """A holder that has not written its pid yet: refused all the same, 'pid unknown'."""
    lock = published.wd / ".runner.lock"
    with _Holder("child-process", lock):
        lock.write_text(content)
        work_before, out_before = tree_hashes(published.workdir), published.hashes()
        res = cli(*published.argv("--resume"))
        assert res.code == 2
        assert f"work folder {published.wd} is in use" in res.err and "pid unknown" in res.err
        assert tree_hashes(published.workdir) == work_before
        assert published.hashes() == out_before


def test_runner_after_the_holder_ends_runs(published, cli):
    with _Holder("child-process", published.wd / ".runner.lock"):
        pass
    records = (published.out / "records.jsonl").read_bytes()
    res = cli(*published.argv("--resume"))
    assert res.code == 0, res.err
    assert (published.out / "records.jsonl").read_bytes() == records
    owner = json.loads((published.wd / ".runner.lock").read_text())
    assert owner["pid"] == os.getpid()
