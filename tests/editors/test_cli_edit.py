"""``seqedit edit`` and ``seqedit stats`` end to end on a tiny random model."""

from __future__ import annotations

import json

from benchmark.cli import main


def test_edit_json_on_tiny_model(capsys, stats_cache, data_root):
    # CounterFact and the statistics text come from the real data root (4 short samples)
    rc = main(["edit", "--model", "tiny-gpt2", "--editor", "rome", "--dataset", "counterfact",
               "--n", "2", "--json", "--cache-root", str(stats_cache),
               "--set", "stats.n_samples=4", "--set", "target.v_num_grad_steps=3"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("efficacy_each", "efficacy_final", "seconds_per_edit"):
        assert key in out
    assert 0.0 <= out["efficacy_each"] <= 1.0 and 0.0 <= out["efficacy_final"] <= 1.0
    assert out["n"] == 2 and out["hparams"]["target"]["v_num_grad_steps"] == 3


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
