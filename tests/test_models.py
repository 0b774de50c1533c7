"""Model registry: templates resolve to real modules with the documented shape and layout."""

from __future__ import annotations

import json
import os

import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from benchmark.core.registry import UnknownName
from benchmark.models import loading

TINY = ["tiny-gpt2", "tiny-llama", "tiny-gemma"]


@pytest.mark.parametrize("name", TINY)
def test_templates_resolve_with_documented_shapes(name):
    lm = models.load(name)
    arch = lm.arch
    cfg = lm.model.config
    # Independent source of truth: the transformers config of the built model.
    n_layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    d_model = getattr(cfg, "hidden_size", None) or cfg.n_embd
    d_ffn = getattr(cfg, "intermediate_size", None) or (cfg.n_inner or 4 * cfg.n_embd)
    assert (arch.n_layers, arch.d_model, arch.d_ffn) == (n_layers, d_model, d_ffn)
    for layer in range(arch.n_layers):
        block = core_arch.get_module(lm.model, arch.layer_name(layer))
        mlp = core_arch.get_module(lm.model, arch.mlp_name(layer))
        assert any(m is mlp for m in block.modules()), "mlp must live inside its block"
        down = core_arch.get_module(lm.model, arch.down_name(layer))
        assert any(m is down for m in mlp.modules()), "edited matrix must live inside the mlp"
        stored = down.weight.shape
        expected_stored = (d_ffn, d_model) if arch.layout == "conv1d" else (d_model, d_ffn)
        assert tuple(stored) == expected_stored
        assert tuple(core_arch.to_out_in(down.weight, arch.layout).shape) == (d_model, d_ffn)
    emb = core_arch.get_module(lm.model, arch.embed_template)
    assert isinstance(emb, torch.nn.Embedding) and emb.weight.shape[1] == d_model


@pytest.mark.parametrize("name", TINY)
def test_down_projection_maps_ffn_to_model_dim(name):
    """The edited matrix's input is the key (ffn-dim) and output the residual (model-dim):
    check by running the module on a vector and comparing with W(out x in) @ k."""
    lm = models.load(name)
    arch = lm.arch
    down = core_arch.get_module(lm.model, arch.down_name(1))
    k = torch.randn(arch.d_ffn, generator=torch.Generator().manual_seed(1))
    y = down(k[None])[0]
    w = core_arch.to_out_in(down.weight, arch.layout)
    bias = getattr(down, "bias", None)
    expected = w @ k + (bias if bias is not None else 0)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,adds_bos", [("tiny-gpt2", False), ("tiny-llama", True), ("tiny-gemma", True)])
def test_bos_fact_matches_tokenizer(name, adds_bos):
    lm = models.load(name)
    ids = lm.tokenizer("Paris is")["input_ids"]
    assert (ids[0] == lm.tokenizer.bos_token_id) is adds_bos
    assert lm.arch.adds_bos is adds_bos
    assert lm.tokenizer.decode(ids, skip_special_tokens=True) == "Paris is"


def test_random_models_are_deterministic_and_do_not_touch_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = models.load("tiny-llama")
    after = torch.rand(3)
    b = models.load("tiny-llama")
    assert torch.equal(before, after), "loading a random model must not consume the global RNG"
    for (na, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(pa, pb), na


def test_unknown_model_did_you_mean():
    with pytest.raises(UnknownName) as err:
        models.get_entry("smolm2-135m")
    assert "Did you mean 'smollm2-135m'" in str(err.value)


def test_cli_unknown_model_exits_nonzero(capsys):
    from benchmark.cli import main

    assert main(["models", "check", "tiny-lama", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'tiny-llama'" in err.lower()


def test_missing_module_names_path_and_model_class():
    lm = models.load("tiny-llama")
    with pytest.raises(core_arch.ModuleNotFound) as err:
        core_arch.get_module(lm.model, lm.arch.mlp_name(4))
    assert str(err.value).startswith("module 'model.layers.4.mlp' not found in LlamaForCausalLM: ")


def test_hub_model_offline_fails_fast_with_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # empty hub cache
    from benchmark.core.settings import NetworkRequired

    with pytest.raises(NetworkRequired) as err:
        models.load("gpt2-xl")
    assert "offline" in str(err.value) and "SEQEDIT_OFFLINE" in str(err.value)


def test_no_nvidia_packages_in_cpu_profile():
    if os.environ.get("SEQEDIT_PROFILE", "cpu") != "cpu":
        pytest.skip("not the cpu profile")
    from benchmark.envcheck import check, nvidia_packages

    assert nvidia_packages() == []
    assert check("cpu") == []


@pytest.mark.embedded
@pytest.mark.parametrize("name,minimum", [("smollm2-135m", 7), ("gemma3-270m", 8)])
def test_models_check_embedded(name, minimum, cache_root, capsys):
    from benchmark.cli import main

    assert main(["models", "check", name, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == name and result["facts"] == 10
    assert result["true_beats_false"] >= minimum
    # independent recount from the per-fact log-probs
    assert result["true_beats_false"] == sum(d["logprob_true"] > d["logprob_false"] for d in result["details"])


@pytest.mark.embedded
def test_converted_cache_corruption_is_detected_and_rebuilt(tmp_path, monkeypatch, caplog):
    """Corrupt the converted-model cache: the next load notices and rebuilds it."""
    monkeypatch.setenv("SEQEDIT_CACHE", str(tmp_path))
    entry = models.get_entry("smollm2-135m")
    first = models.load("smollm2-135m")
    target = models.converted_cache_dir(entry, first.identity["gguf_sha256"], tmp_path)
    weights = target / "model.safetensors"
    reference = {k: v.clone() for k, v in first.model.state_dict().items()}
    del first
    # flip bytes in the middle of the weights file (same size, so only a hash can tell)
    with open(weights, "r+b") as fh:
        fh.seek(weights.stat().st_size // 2)
        fh.write(b"\x00" * 4096)
    assert not loading._verify_converted(target)
    caplog.set_level("WARNING")
    again = models.load("smollm2-135m")
    assert "corrupt or partial" in caplog.text
    assert loading._verify_converted(target)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    # a partial cache (manifest missing, as after a kill mid-conversion) is rebuilt too
    (target / "seqedit-manifest.json").unlink()
    models.load("smollm2-135m")
    assert loading._verify_converted(target)


def _load_in_process(cache: str, log_path: str) -> str:
    """Worker of the parallel-load test (a spawned process): load SmolLM2 with a fresh
    cache, appending a line to ``log_path`` for every conversion it performs."""
    os.environ["SEQEDIT_CACHE"] = cache
    torch.set_num_threads(1)
    real = loading._convert_gguf

    def counting(*args, **kwargs):
        with open(log_path, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    loading._convert_gguf = counting
    lm = models.load("smollm2-135m")
    return lm.identity["gguf_sha256"]


@pytest.mark.embedded
def test_parallel_first_loads_convert_once(tmp_path):
    """Two cells starting at once on a fresh cache (the smoke grid's first minute): one
    converts the GGUF, the other waits and loads the finished conversion; both succeed."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    log = tmp_path / "conversions.log"
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        futs = [pool.submit(_load_in_process, str(tmp_path / "cache"), str(log)) for _ in range(2)]
        shas = [f.result(timeout=600) for f in futs]
    assert shas[0] == shas[1]
    assert len(log.read_text().split()) == 1
    target = models.converted_cache_dir(models.get_entry("smollm2-135m"), shas[0], tmp_path / "cache")
    assert loading._verify_converted(target)
    assert not list(target.parent.glob("*.partial*"))


def test_every_hub_entry_is_pinned_to_a_full_commit_with_its_source():
    import re

    from benchmark.core.arch import HubSource

    hub = [models.get_entry(n) for n in models.MODELS if isinstance(models.get_entry(n).source, HubSource)]
    assert {e.name for e in hub} >= {"gpt2-xl", "gpt-j-6b", "llama2-7b", "llama3-8b", "llama3-8b-instruct"}
    for e in hub:
        assert re.fullmatch(r"[0-9a-f]{40}", e.source.revision or ""), e.name
        assert e.source.pin_source, e.name


def test_a_pin_the_hub_refuses_is_named_with_its_source(monkeypatch):
    """Networked run, revision missing upstream: the error names repo@revision and the pin's source."""
    import transformers

    from benchmark.core.errors import DataError

    seen = {}

    def refuse(repo, revision=None, **kwargs):
        seen["revision"] = revision
        raise OSError(f"{repo} has no revision {revision}")

    monkeypatch.setenv("SEQEDIT_OFFLINE", "0")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(DataError) as err:
        models.load("gpt-j-6b")
    pin = models.get_entry("gpt-j-6b").source
    assert seen["revision"] == pin.revision
    assert f"EleutherAI/gpt-j-6b@{pin.revision}" in str(err.value)
    assert "Open LLM Leaderboard" in str(err.value)
