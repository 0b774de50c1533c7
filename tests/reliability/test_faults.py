"""Full disk, read-only outputs and paths in the way: one line naming the path and what to
do, exit 2, and the published folder byte-identical (no half-published folder, no leftovers).

Read-only outputs are simulated by making os.replace / os.rename raise, not with chmod: the
tests run as root, and root writes into a 0555 folder regardless of its mode."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from benchmark import SUITE_VERSION
from tests.reliability.conftest import tree_hashes

#: files a publish of the test grid writes: records, samples, cells, 2 provenance, grid.yaml,
#: 5 tables and 6 plots (2 editing metrics, 2 general scores, 2 spectrum figures)
PUBLISH_WRITES = 17
REPORT_WRITES = 11  # 5 tables, 6 plots


def _staging(out: Path) -> str:
    return str(out) + ".tmp-"


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


def test_publish_writes_every_file_through_the_counted_path(published, cli, fail_writes):
    seen = fail_writes(0, _staging(published.out))
    res = cli(*published.argv("--resume"))
    assert res.code == 0, res.err
    assert len(seen) == PUBLISH_WRITES
    assert len({p.name for p in seen}) == PUBLISH_WRITES  # each file once


@pytest.mark.parametrize("k", range(1, PUBLISH_WRITES + 1))
def test_disk_full_at_kth_publish_write(published, cli, fail_writes, k):
    before = published.hashes()
    seen = fail_writes(k, _staging(published.out))
    res = cli(*published.argv("--resume"))
    assert res.code == 2
    assert (f"seqedit grid: cannot write {seen[-1]}: No space left on device (the disk is full: "
            "free space or choose another --out/--workdir)") in res.err
    assert published.hashes() == before
    assert _leftovers(published.out) == []


@pytest.mark.parametrize("k", [1, 4, REPORT_WRITES])
def test_disk_full_at_kth_report_write(published, cli, fail_writes, k):
    before = published.hashes()
    seen = fail_writes(k, _staging(published.out))
    res = cli("report", str(published.out))
    assert res.code == 2
    assert f"seqedit report: cannot write {seen[-1]}: No space left on device" in res.err
    assert published.hashes() == before
    assert _leftovers(published.out) == []


def _raise_for(monkeypatch, name: str, under: str, err: int, nth: int = 1):
    """Make the ``nth`` call of os.<name> whose source lies under ``under`` raise ``err``."""
    real = getattr(os, name)
    calls = []

    def fake(src, dst, *a, **kw):
        if str(src).startswith(under) or str(dst).startswith(under):
            calls.append(src)
            if len(calls) == nth:
                raise OSError(err, os.strerror(err), str(src), None, str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, name, fake)


@pytest.mark.parametrize("err,words", [(errno.EROFS, "the file system is read-only"),
                                       (errno.EACCES, "permission denied")],
                         ids=["read-only", "permission"])
def test_unwritable_out_at_first_file(published, cli, monkeypatch, err, words):
    before = published.hashes()
    _raise_for(monkeypatch, "replace", _staging(published.out), err)
    res = cli(*published.argv("--resume"))
    assert res.code == 2
    assert f"seqedit grid: cannot write {_staging(published.out)}" in res.err
    assert f"{os.strerror(err)} ({words}" in res.err
    assert published.hashes() == before and _leftovers(published.out) == []


@pytest.mark.parametrize("nth", [1, 2], ids=["old-aside", "new-in"])
def test_rename_refused_during_swap_restores_the_old_folder(published, cli, monkeypatch, nth):
    """nth=1: moving the published folder aside fails; nth=2: moving the new one in fails
    after the old one was moved aside (it is put back)."""
    before = published.hashes()
    _raise_for(monkeypatch, "rename", str(published.out), errno.EACCES, nth)
    res = cli(*published.argv("--resume"))
    assert res.code == 2
    assert f"seqedit grid: cannot write {published.out}" in res.err
    assert "Permission denied" in res.err
    assert published.hashes() == before and _leftovers(published.out) == []


def test_read_only_workdir(published, cli, monkeypatch):
    out_before, work_before = published.hashes(), tree_hashes(published.workdir)
    _raise_for(monkeypatch, "replace", str(published.wd), errno.EROFS)
    res = cli(*published.argv("--resume"))
    assert res.code == 2
    assert f"cannot write {published.wd}" in res.err and "Read-only file system" in res.err
    assert published.hashes() == out_before
    # the owner's pid is written in place into the lock file (no replace), so it changes
    lock = f"{SUITE_VERSION}/rgrid/.runner.lock"
    assert {k: v for k, v in tree_hashes(published.workdir).items() if k != lock} == \
        {k: v for k, v in work_before.items() if k != lock}


def _swap_args(argv: list[str], option: str, value: Path) -> list[str]:
    argv[argv.index(option) + 1] = str(value)
    return argv


@pytest.mark.parametrize("option", ["--out", "--workdir"])
@pytest.mark.parametrize("shape", ["is-a-file", "under-a-file"])
def test_output_path_blocked_by_a_file(published, cli, tmp_path, option, shape):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n")
    target = blocker if shape == "is-a-file" else blocker / "sub"
    out_before, work_before = published.hashes(), tree_hashes(published.workdir)
    res = cli(*_swap_args(published.argv("--resume"), option, target))
    assert res.code == 2
    if option == "--out" and shape == "is-a-file":
        assert f"{blocker}: exists and is not a folder" in res.err
    else:
        assert f"cannot write {blocker}" in res.err and "a file is in the way of a folder" in res.err
    assert blocker.read_text() == "keep me\n"
    assert published.hashes() == out_before
    if option == "--out":
        assert tree_hashes(published.workdir) == work_before


def test_out_holding_other_files_is_not_replaced(published, cli, tmp_path):
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    before, work_before = tree_hashes(mine), tree_hashes(published.workdir)
    res = cli(*_swap_args(published.argv("--resume"), "--out", mine))
    assert res.code == 2
    assert f"{mine}: holds files but no published results" in res.err
    assert tree_hashes(mine) == before and tree_hashes(published.workdir) == work_before
