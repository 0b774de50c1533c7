"""A cell's folder is named by its spec, which names the editor's hparams file but not its
content: a cell computed (or half computed) with other editor settings is never resumed,
skipped as done, or published."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmark import publish as publish_mod
from benchmark.components import EditorBundle, Hooks
from benchmark.runner import grid_workdir, run_grid
from tests.runner.conftest import make_components


class SimulatedKill(BaseException):
    pass


def _components(settings: dict):
    """Fake components whose editor settings hash is ``settings["hash"]`` at call time."""
    comps, editor = make_components()
    comps = dataclasses.replace(
        comps,
        create_editor=lambda m, lm, o, progress=True: EditorBundle(editor, {}, settings["hash"]),
        hparams_hash=lambda spec: settings["hash"])
    return comps, editor


def _run(grid, tmp_path, comps, *, resume, hooks=None, publish=False):
    return run_grid(grid, workdir=tmp_path / "wd", out=tmp_path / "out", resume=resume,
                    components=comps, hooks=hooks, progress=False, publish_results=publish)


def test_completed_cell_with_other_settings_is_not_skipped(tmp_path, grid_factory):
    grid = grid_factory(trajectories="[none]")
    settings = {"hash": "a" * 64}
    comps, editor = _components(settings)
    assert [s.status for s in _run(grid, tmp_path, comps, resume=True).statuses] == ["completed"]
    calls = editor.counter["calls"]
    # unchanged settings: --resume skips the completed cell
    _run(grid, tmp_path, comps, resume=True)
    assert editor.counter["calls"] == calls
    # the hparams file changed: --resume refuses to call the old records done
    settings["hash"] = "b" * 64
    (status,) = _run(grid, tmp_path, comps, resume=True).statuses
    assert status.status == "failed" and "other editor settings" in status.reason
    assert "aaaaaaaaaaaa" in status.reason and "bbbbbbbbbbbb" in status.reason
    assert editor.counter["calls"] == calls
    # without --resume the cell is recomputed with the new settings
    (status,) = _run(grid, tmp_path, comps, resume=False).statuses
    assert status.status == "completed" and editor.counter["calls"] == 2 * calls


def test_saved_state_with_other_settings_is_not_resumed(tmp_path, grid_factory):
    grid = grid_factory(trajectories="[none]", save_every=2)
    settings = {"hash": "a" * 64}
    comps, editor = _components(settings)

    def kill(cursor):
        if cursor == 3:
            raise SimulatedKill

    with pytest.raises(SimulatedKill):
        _run(grid, tmp_path, comps, resume=False, hooks=Hooks(after_edit=kill))
    settings["hash"] = "b" * 64
    (status,) = _run(grid, tmp_path, comps, resume=True).statuses
    assert status.status == "failed" and "saved state made with other editor settings" in status.reason


def test_publish_refuses_a_cell_computed_with_other_settings(tmp_path, grid_factory, monkeypatch):
    grid = grid_factory(trajectories="[none]")
    settings = {"hash": "a" * 64}
    comps, _ = _components(settings)
    _run(grid, tmp_path, comps, resume=False)
    wd = grid_workdir(grid, tmp_path / "wd")
    (prov,) = wd.glob("*/provenance.json")
    assert json.loads(prov.read_text())["hparams_hash"] == "a" * 64
    monkeypatch.setattr(publish_mod, "default_hparams_hash", lambda spec: "a" * 64)
    assert publish_mod._cell_from_workdir(grid.cells[0], wd, grid.name).status.status == "completed"
    monkeypatch.setattr(publish_mod, "default_hparams_hash", lambda spec: "c" * 64)
    result = publish_mod._cell_from_workdir(grid.cells[0], wd, grid.name)
    assert result.status.status == "failed" and not result.records
    assert "not published" in result.status.reason and "cccccccccccc" in result.status.reason


def test_default_hash_reads_the_shipped_file_with_the_overrides():
    """The default is the hash of the validated settings the editor would be built from."""
    from benchmark.components import default_hparams_hash
    from benchmark.spec import CellSpec
    from editors.hparams import hparams_hash, load_hparams

    spec = CellSpec.model_validate({"model": "tiny-gpt2", "editor": "rome",
                                    "dataset": {"name": "counterfact", "split": "edit"},
                                    "n_edits": 2, "checkpoints": [2],
                                    "hparams": {"target": {"v_num_grad_steps": 3}}})
    assert default_hparams_hash(spec) == hparams_hash(load_hparams("rome", "tiny-gpt2",
                                                                   {"target": {"v_num_grad_steps": 3}}))
    assert default_hparams_hash(spec) != hparams_hash(load_hparams("rome", "tiny-gpt2"))
    assert default_hparams_hash(spec.model_copy(update={"editor": "no-such-editor"})) is None
