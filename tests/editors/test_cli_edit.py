"""``seqedit edit`` and ``seqedit stats`` end to end on a tiny random model."""

from __future__ import annotations

import json

from benchmark.cli import main


def _edit(capsys, stats_cache, *extra: str) -> dict:
    # CounterFact and the statistics text come from the real data root (4 short samples)
    rc = main(["edit", "--model", "tiny-gpt2", "--editor", "rome", "--dataset", "counterfact",
               "--n", "2", "--json", "--cache-root", str(stats_cache),
               "--set", "stats.n_samples=4", "--set", "target.v_num_grad_steps=3", *extra])
    assert rc == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_edit_json_on_tiny_model(capsys, stats_cache, data_root, tmp_path):
    """A one-cell run of the real trajectory: editing metrics (x100) on the final model."""
    out = _edit(capsys, stats_cache, "--workdir", str(tmp_path / "wd"))
    for key in ("efficacy_final", "generalization_final", "locality_final", "seconds_per_edit",
                "seconds_prepare", "hparams_sha256", "model_identity"):
        assert key in out
    for metric in ("efficacy", "generalization", "locality"):
        assert 0.0 <= out[f"{metric}_final"] <= 100.0
    assert out["n"] == 2 and out["timing"] == "first-n"
    assert out["hparams"]["target"]["v_num_grad_steps"] == 3
    # the cell folder is kept under --workdir, completed, with the spec the command built
    (cell,) = [p for p in (tmp_path / "wd").iterdir() if p.is_dir()]
    assert (cell / "done.json").is_file()
    spec = json.loads((cell / "spec.json").read_text())
    assert spec["checkpoints"] == [2] and spec["variants"] == [{"kind": "none"}]
    assert spec["evaluation"]["tasks"] == [] and spec["trajectory"] == {"kind": "none"}


def test_edit_each_timing_and_baseline(capsys, stats_cache, data_root):
    """``--timing each`` pools the scores taken right after each edit; ``--baseline`` adds
    the unedited model (checkpoint 0)."""
    out = _edit(capsys, stats_cache, "--timing", "each", "--baseline")
    for metric in ("efficacy", "generalization", "locality"):
        assert 0.0 <= out[f"{metric}_each"] <= 100.0
        assert 0.0 <= out[f"{metric}_unedited"] <= 100.0
        assert f"{metric}_final" not in out
    assert out["timing"] == "each"


def test_edit_bad_override_is_a_clean_error(capsys, stats_cache):
    rc = main(["edit", "--model", "tiny-gpt2", "--editor", "rome", "--n", "1",
               "--cache-root", str(stats_cache), "--set", "target.nope=1"])
    assert rc != 0
    assert "target.nope" in capsys.readouterr().err


def test_stats_command_computes_then_loads(capsys, corpus_root, stats_cache):
    args = ["stats", "--model", "tiny-llama", "--editor", "rome", "--layers", "1,2",
            "--n-samples", "3", "--data-root", str(corpus_root), "--cache-root", str(stats_cache),
            "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["computed"] == 2 and first["loaded"] == 0
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["computed"] == 0 and second["loaded"] == 2 and second["keys"] == first["keys"]
