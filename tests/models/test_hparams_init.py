"""``seqedit hparams init``: the documented rules, and a written file that the editors use."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmark.cli import main
from benchmark.studies import hparams_init as hi
from editors.hparams import parse_hparams
from tests.models.conftest import save_tiny


def test_lambda_scales_linearly_with_width():
    assert hi.scaled_lambda(4096) == 15000  # the 7B models' value
    assert hi.scaled_lambda(576) == 2100  # 15000 * 576 / 4096 = 2109.4 (SmolLM2's width)
    assert hi.scaled_lambda(1600) == 5900  # 5859.4
    assert hi.scaled_lambda(32) == 120  # 117.2


def test_layer_rules():
    assert hi.heuristic_layer(30) == 6  # SmolLM2's swept layer
    assert hi.heuristic_layer(2) == 0 and hi.heuristic_layer(1) == 0
    assert hi.sweep_candidates(30) == [3, 4, 6, 8, 9, 10]  # 10, 15, ..., 35% of 30
    assert hi.sweep_candidates(2) == [0, 1]
    assert hi.batch_window(6, 30) == [4, 5, 6, 7, 8]  # SmolLM2: ROME 6, MEMIT 4-8
    assert hi.batch_window(0, 30) == [0, 1, 2, 3, 4]
    assert hi.batch_window(29, 30) == [25, 26, 27, 28, 29]
    assert hi.batch_window(1, 2) == [0, 1]


def test_best_row_prefers_the_scores_then_the_margin():
    rows = [{"layer": 1, "efficacy": 1.0, "generalization": 0.5, "locality": 0.5, "rewrite_margin": 9.0},
            {"layer": 2, "efficacy": 1.0, "generalization": 1.0, "locality": 0.5, "rewrite_margin": 1.0},
            {"layer": 3, "efficacy": 1.0, "generalization": 1.0, "locality": 0.5, "rewrite_margin": 2.0}]
    assert hi.best_row(rows)["layer"] == 3


def test_init_with_sweep_writes_a_file_the_editors_read(tmp_path, monkeypatch, capsys):
    folder = save_tiny("qwen2", tmp_path / "qwen2")
    model = f"path:{folder}"
    monkeypatch.setenv("SEQEDIT_HPARAMS", str(tmp_path / "hparams"))
    monkeypatch.setenv("SEQEDIT_CACHE", str(tmp_path / "cache"))
    assert main(["hparams", "init", "--model", model, "--editor", "rome", "--sweep-n", "2",
                 "--stats-samples", "6", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = out["sweep"]
    assert [r["layer"] for r in rows] == [0, 1]
    total = {r["layer"]: r["efficacy"] + r["generalization"] + r["locality"] for r in rows}
    assert total[out["layer"]] == max(total.values())
    text = open(out["out"], encoding="utf-8").read()
    assert out["out"].startswith(str(tmp_path / "hparams" / "rome"))
    data = yaml.safe_load(text)
    assert data["layers"] == [out["layer"]] and data["stats"]["n_samples"] == 6
    assert "# ROME layer" in text and "sweep layer   0" in text
    parse_hparams("rome", data)
    # the editors find it by the model's name
    from benchmark import models
    from editors import create_editor

    editor = create_editor("rome", models.load(model))
    assert editor.hparams.layers == [out["layer"]]
    # a second init refuses to overwrite without --force
    assert main(["hparams", "init", "--model", model, "--editor", "rome", "--no-sweep"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("editor", ["memit", "memit-seq", "alphaedit", "nse"])
def test_init_without_sweep_for_batch_editors(editor, tmp_path, capsys):
    folder = save_tiny("gpt2", tmp_path / "gpt2")  # 2 layers, d = 32
    out = tmp_path / f"{editor}.yaml"
    assert main(["hparams", "init", "--model", f"path:{folder}", "--editor", editor,
                 "--no-sweep", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    hp = parse_hparams(editor, data)
    assert hp.layers == [0, 1]  # five layers around layer 0, cut to the model's two
    if editor != "alphaedit":
        assert data["mom2_update_weight"] == 120  # 15000 * 32 / 4096 = 117.2
        assert "15000 · 32/4096" in text
    assert "no sweep" in text


def test_init_refuses_other_editors_and_needs_a_destination(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SEQEDIT_HPARAMS", raising=False)
    assert main(["hparams", "init", "--model", "tiny-llama", "--editor", "mend", "--no-sweep"]) == 2
    assert "rome, memit" in capsys.readouterr().err
    assert main(["hparams", "init", "--model", "tiny-llama", "--editor", "rome", "--no-sweep"]) == 2
    assert "SEQEDIT_HPARAMS" in capsys.readouterr().err


@pytest.mark.parametrize(("model_type", "warned"), [("gemma2", True), ("llama", False)])
def test_init_warns_where_the_mlp_output_is_normalised(model_type, warned, tmp_path, capsys):
    folder = save_tiny(model_type, tmp_path / model_type)
    for editor, expect in (("memit", warned), ("rome", False)):  # ROME targets the MLP output
        out = tmp_path / f"{editor}.yaml"
        assert main(["hparams", "init", "--model", f"path:{folder}", "--editor", editor,
                     "--no-sweep", "--out", str(out)]) == 0
        assert ("normalises the MLP output" in out.read_text(encoding="utf-8")) == expect
