"""Provenance names the code that ran a cell: the commit of each session, taken when the
session starts (a commit made while a cell runs is not its code)."""

from __future__ import annotations

import json

import pytest

from benchmark.components import Hooks
from tests.runner.conftest import make_components
from tests.runner.test_trajectory import SimulatedKill, _run


def test_provenance_names_the_code_of_every_session(tmp_path, grid_factory, monkeypatch):
    """A cell killed under one commit and resumed under another lists both, in order."""
    grid = grid_factory(save_every=2, checkpoints="[0, 3, 6]")
    comps, _ = make_components()
    first_cell = grid.cells[0].short_hash
    seen = {"killed": False}

    def after_edit(cursor):
        if cursor == 3 and not seen["killed"]:
            seen["killed"] = True
            raise SimulatedKill

    monkeypatch.setattr("benchmark.cell.loop.git_info", lambda: {"sha": "a" * 40})
    with pytest.raises(SimulatedKill):
        _run(grid, tmp_path, comps, Hooks(after_edit=after_edit))
    monkeypatch.setattr("benchmark.cell.loop.git_info", lambda: {"sha": "b" * 40})
    _run(grid, tmp_path, comps, resume=True)
    provs = {p.parent.name[-12:]: json.loads(p.read_text())
             for p in (tmp_path / "wd").rglob("provenance.json")}
    assert provs[first_cell]["code_versions"] == ["a" * 40, "b" * 40]
    assert provs[first_cell]["sessions"] == 2
    others = [v for k, v in provs.items() if k != first_cell]
    assert others and all(v["code_versions"] == ["b" * 40] for v in others)


def test_provenance_names_the_code_the_cell_started_with(tmp_path, grid_factory, monkeypatch):
    """A commit made while a cell runs is not the code that ran it: the provenance names
    the repository's state when the session started."""
    grid = grid_factory(checkpoints="[0, 3, 6]")
    now = {"sha": "a" * 40, "dirty": False}
    monkeypatch.setattr("benchmark.cell.loop.git_info", lambda: dict(now))
    monkeypatch.setattr("benchmark.results.git_info", lambda *a, **k: dict(now))

    def after_edit(cursor):  # someone commits (and leaves the tree dirty) mid-run
        now.update(sha="c" * 40, dirty=True)

    _run(grid, tmp_path, hooks=Hooks(after_edit=after_edit))
    provs = [json.loads(p.read_text()) for p in (tmp_path / "wd").rglob("provenance.json")]
    first = next(p for p in provs if p["cell"] == grid.cells[0].short_hash)
    assert first["git"] == {"sha": "a" * 40, "dirty": False}
    assert first["code_versions"] == ["a" * 40]
