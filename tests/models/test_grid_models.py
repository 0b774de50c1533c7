"""``hf:`` and ``path:`` models in grid files and on the command line."""

from __future__ import annotations

import hashlib

import pytest

from benchmark.core.modelref import model_slug
from benchmark.grid import load_grid
from benchmark.grid_schema import GridError
from tests.models.conftest import save_tiny

GRID = """\
schema_version: 1
name: local
models: [{model}]
editors: [rome]
datasets: [{{name: counterfact}}]
n_edits: 2
checkpoints: [0, 2]
"""

ROME = """\
source: test
layers: [1]
templates: {lengths: [[4, 1]]}
target: {v_num_grad_steps: 4}
stats: {n_samples: 4, context_cap: 64}
"""


@pytest.fixture
def local_model(tmp_path, monkeypatch):
    folder = save_tiny("mistral", tmp_path / "models" / "my-mistral")
    hp = tmp_path / "hparams"
    (hp / "rome").mkdir(parents=True)
    (hp / "rome" / f"{model_slug(f'path:{folder}')}.yaml").write_text(ROME)
    monkeypatch.setenv("SEQEDIT_HPARAMS", str(hp))
    return folder


def test_a_grid_takes_a_relative_path_model(local_model, tmp_path):
    grid = tmp_path / "local.yaml"
    grid.write_text(GRID.format(model="path:models/my-mistral"))  # relative to the grid file
    (cell,) = load_grid(grid).cells
    assert cell.model == f"path:{local_model}"
    assert cell.folder.startswith(model_slug(f"path:{local_model}") + "_rome_")
    assert "/" not in cell.folder


def test_grid_errors_name_the_model_field(tmp_path, monkeypatch):
    grid = tmp_path / "local.yaml"
    grid.write_text(GRID.format(model="path:models/none"))
    with pytest.raises(GridError, match="no config.json") as err:
        load_grid(grid)
    assert "models[0]" in str(err.value)
    grid.write_text(GRID.format(model="hf:gpt2"))
    with pytest.raises(GridError, match="hf:ORG/NAME@REVISION"):
        load_grid(grid)


def test_a_path_model_without_hparams_says_how_to_write_them(tmp_path, monkeypatch):
    save_tiny("qwen3", tmp_path / "m")
    monkeypatch.delenv("SEQEDIT_HPARAMS", raising=False)
    grid = tmp_path / "local.yaml"
    grid.write_text(GRID.format(model="path:m"))
    with pytest.raises(GridError, match="seqedit hparams init --model path:"):
        load_grid(grid)


def test_seqedit_edit_runs_on_a_path_model(local_model, capsys):
    import json

    from benchmark.cli import main

    assert main(["edit", "--model", f"path:{local_model}", "--editor", "rome", "--limit", "2",
                 "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == f"path:{local_model}"
    identity = out["model_identity"]  # provenance: the folder and the sha256 of its weights
    assert identity["source"] == "path" and identity["path"] == str(local_model)
    weights = local_model / "model.safetensors"
    assert identity["weights_sha256"] == {"model.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert out["hparams"]["layers"] == [1] and out["hparams"]["source"] == "test"
