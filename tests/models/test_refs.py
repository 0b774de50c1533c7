"""Model names: parsing, slugs, errors, offline hub names, the architecture table."""

from __future__ import annotations

import json

import pytest

from benchmark import models
from benchmark.core.errors import DataError
from benchmark.core.modelref import canonical, is_ref, model_slug, parse
from benchmark.core.settings import NetworkRequired
from benchmark.models.archs import ARCHS

SHA = "607a30d783dfa663caf39e06633721c8d4cfcd7e"


def test_parse_the_three_forms(tmp_path):
    assert parse("gpt2-xl").kind == "registry"
    ref = parse(f"hf:openai-community/gpt2@{SHA}")
    assert (ref.kind, ref.repo, ref.revision) == ("hf", "openai-community/gpt2", SHA)
    assert parse("hf:org/name").revision is None
    assert parse("path:sub/dir", base=tmp_path).path == tmp_path / "sub" / "dir"
    assert canonical("path:sub/dir", base=tmp_path) == f"path:{tmp_path}/sub/dir"
    assert is_ref("hf:a/b") and is_ref("path:/x") and not is_ref("tiny-llama")


@pytest.mark.parametrize("bad", ["hf:gpt2", "hf:a/b/c", "hf:a/b@", "hf:/b", "path:"])
def test_malformed_names_say_the_right_form(bad):
    with pytest.raises(ValueError, match="hf:ORG/NAME@REVISION|nothing after|give a folder"):
        parse(bad)


def test_slugs_are_safe_distinct_and_registry_names_unchanged():
    names = [f"hf:openai-community/gpt2@{SHA}", "hf:openai-community/gpt2", "hf:a-b/c",
             "hf:a/b-c", "path:/m/x/model", "path:/m/y/model", "path:/m/a model"]
    slugs = [model_slug(n) for n in names]
    assert len(set(slugs)) == len(slugs)
    for slug in slugs:
        assert all(c.isalnum() or c in "_.-" for c in slug) and len(slug) <= 80, slug
    assert model_slug("smollm2-135m") == "smollm2-135m"
    assert model_slug(slugs[0]) == slugs[0]  # a slug is its own slug (a registry-like name)


def test_hub_name_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # empty hub cache
    with pytest.raises(NetworkRequired, match="offline") as err:
        models.get_entry(f"hf:openai-community/gpt2@{SHA}")
    assert "SEQEDIT_OFFLINE" in str(err.value)
    with pytest.raises(NetworkRequired, match="current commit"):
        models.load("hf:openai-community/gpt2")


def test_cli_names_a_hub_model_offline_in_one_line(monkeypatch, tmp_path, capsys):
    from benchmark.cli import main

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert main(["models", "check", f"hf:openai-community/gpt2@{SHA}"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline" in err


def test_path_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        models.get_entry(f"path:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no config.json"):
        models.get_entry(f"path:{tmp_path / 'empty'}")


def test_unknown_model_type_names_the_table(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    (folder / "model.safetensors").write_bytes(b"x")
    with pytest.raises(DataError) as err:
        models.get_entry(f"path:{folder}")
    msg = str(err.value)
    assert "config.json" in msg and "'t5'" in msg and "model_type" in msg and "llama" in msg


def test_table_covers_the_issue_types_and_registry_entries_use_it():
    required = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gemma3",
                "gpt2", "gptj", "gpt_neox", "phi3", "olmo2"}
    assert required <= set(ARCHS)
    for name in models.MODELS:
        arch = models.get_entry(name).arch
        rows = [r for r in ARCHS.values()
                if (r.layer, r.mlp, r.down, r.embed, r.layout)
                == (arch.layer_template, arch.mlp_template, arch.down_template,
                    arch.embed_template, arch.layout)]
        assert rows, name


#: The revisions issue 16 lists (Open LLM Leaderboard request files, June 2024).
ISSUE_PINS = {
    "gpt2-xl": ("openai-community/gpt2-xl", "15ea56dee5df4983c59b2538573817e1667135e2"),
    "gpt-j-6b": ("EleutherAI/gpt-j-6b", "47e169305d2e8376be1d31e765533382721b2cc1"),
    "llama2-7b": ("meta-llama/Llama-2-7b-hf", "01c7f73d771dfac7d292323805ebc428287df4f9"),
    "llama3-8b": ("meta-llama/Meta-Llama-3-8B", "62bd457b6fe961a42a631306577e622c83876cb6"),
    "llama3-8b-instruct": ("meta-llama/Meta-Llama-3-8B-Instruct",
                           "e1945c40cd546c78e41f1151f4db032b271faeaa"),
}


@pytest.mark.parametrize("name", sorted(ISSUE_PINS))
def test_paper_models_carry_the_issue_pins_and_say_where_they_come_from(name):
    source = models.get_entry(name).source
    assert (source.repo, source.revision) == ISSUE_PINS[name]
    assert "Open LLM Leaderboard" in source.pin_source and "networked run" in source.pin_source
