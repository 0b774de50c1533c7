"""Saved run state: truncated, altered or unfinished snapshots are named and never used;
the cell resumes from the previous good snapshot, or restarts from its first edit, and its
records equal an uninterrupted run's. Nothing is ever unpickled."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from benchmark.cell.snapshot import DATA, MANIFEST, TENSORS
from benchmark.components import Hooks
from benchmark.core import settings
from benchmark.runner import run_grid


class SimulatedKill(BaseException):
    """Not an Exception: like SIGKILL, nothing in the runner catches it."""


def _kill_first_cell_at(published, cursor: int) -> Path:
    """Rerun the first cell from scratch and stop it after ``cursor`` edits; its folder."""
    shutil.rmtree(published.cell_dir(0))

    def after_edit(c):
        if c == cursor:
            raise SimulatedKill

    with pytest.raises(SimulatedKill):
        run_grid(published.grid, workdir=published.workdir, out=published.out, resume=True,
                 components=published.comps, hooks=Hooks(after_edit=after_edit), progress=False)
    return published.cell_dir(0)


def _truncate(d):
    p = d / TENSORS
    p.write_bytes(p.read_bytes()[:-100])


def _flip_byte(d):
    p = d / DATA
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x01
    p.write_bytes(bytes(b))


def _no_manifest(d):
    (d / MANIFEST).unlink()


def _manifest_garbage(d):
    (d / MANIFEST).write_text('{"format": 1, "sha')


def _manifest_format(d):
    m = json.loads((d / MANIFEST).read_text())
    m["format"] = 99
    (d / MANIFEST).write_text(json.dumps(m))


def _no_tensors(d):
    (d / TENSORS).unlink()


def _undecodable(d):
    """Garbage whose hash the manifest agrees with: caught when decoding."""
    (d / TENSORS).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    m = json.loads((d / MANIFEST).read_text())
    m["sha256"][TENSORS] = hashlib.sha256((d / TENSORS).read_bytes()).hexdigest()
    (d / MANIFEST).write_text(json.dumps(m))


# (case id, damage, damaged file, words)
BAD_STATES = [
    ("tensors-truncated", _truncate, TENSORS, "sha256 differs"),
    ("json-byte-flipped", _flip_byte, DATA, "sha256 differs"),
    ("manifest-missing", _no_manifest, MANIFEST, "an unfinished save"),
    ("manifest-garbage", _manifest_garbage, MANIFEST, "does not parse"),
    ("manifest-format", _manifest_format, MANIFEST, "not a format-1 state manifest"),
    ("tensors-missing", _no_tensors, TENSORS, "cannot read"),
    ("tensors-undecodable", _undecodable, None, "does not decode"),
]


def _events(published) -> list[dict]:
    return [json.loads(line) for line in (published.wd / "progress.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("older", [False, True], ids=["only-state", "older-state-kept"])
@pytest.mark.parametrize("case,damage,file,words", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_bad_state_is_named_and_not_used(published, cli, case, damage, file, words, older):
    results = {k: v for k, v in published.hashes().items() if not k.startswith("provenance/")}
    cell = _kill_first_cell_at(published, 4)  # saved: checkpoint 2, then edit 3 (save_every 3)
    states = sorted(p.name for p in cell.glob("state-*"))
    assert states == ["state-000001"]  # the older one was removed once this one was complete
    newest = cell / "state-000001"
    if older:  # a newer snapshot that goes bad: the previous one must still be used
        newest = cell / "state-000002"
        shutil.copytree(cell / "state-000001", newest)
    damage(newest)
    res = cli(*published.argv("--resume"))
    assert res.code == 0, res.err
    named = newest / file if file else newest
    assert re.search(re.escape(f"saved state unusable, trying an older one: {named}: ") + ".*"
                     + re.escape(words), res.err), res.err
    resumed = [e for e in _events(published) if e["event"] == "resumed"]
    if older:
        assert resumed and resumed[-1]["cursor"] == 3
    else:
        assert "no usable saved state; the cell restarts from its first edit" in res.err
        assert not resumed
    assert {k: v for k, v in published.hashes().items()
            if not k.startswith("provenance/")} == results
    assert not list(cell.glob("state-*"))  # a completed cell keeps no state


def test_state_files_hold_no_code(published):
    """The snapshot is safetensors + JSON, and the package never calls torch.load."""
    cell = _kill_first_cell_at(published, 4)
    files = sorted(p.name for p in (cell / "state-000001").iterdir())
    assert files == [MANIFEST, DATA, TENSORS]
    assert (cell / "state-000001" / TENSORS).read_bytes()[8:9] == b"{"  # safetensors header
    json.loads((cell / "state-000001" / DATA).read_text())
    offenders = []
    for pkg in ("benchmark", "editors", "prune"):
        for path in (settings.REPO_ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            if "torch.load(" in text or "weights_only=False" in text:
                offenders.append(str(path))
    assert offenders == []
