"""Published files: atomic, readable by others (0644 under umask 022), never half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from benchmark.core import io


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_published_file_mode_follows_umask(tmp_path: Path, umask, mask, expected):
    umask(mask)
    target = tmp_path / "records.jsonl"
    io.write_text(target, "x\n")
    assert stat.S_IMODE(target.stat().st_mode) == expected
    assert target.read_text() == "x\n"


def test_failed_write_leaves_old_file_and_no_temporaries(tmp_path: Path):
    target = tmp_path / "table.csv"
    io.write_text(target, "old\n")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_rename_is_followed_by_a_directory_fsync(tmp_path: Path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else "?")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    io.write_text(tmp_path / "a.json", "{}\n")
    assert str(tmp_path) in synced  # the folder, after the file itself
    assert synced.index(str(tmp_path)) == len(synced) - 1
