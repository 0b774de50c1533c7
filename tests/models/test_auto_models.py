"""``path:DIR`` models of many architectures: facts from config.model_type through the one
table, templates that resolve to modules of the documented shapes, a ROME and a MEMIT edit
on each, and weight identity by sha256."""

from __future__ import annotations

import hashlib

import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from benchmark.core.requests import EditRequest
from editors.base import apply_delta
from editors.hparams import parse_hparams
from editors.memit import MEMIT
from editors.rome import ROME
from tests.models.conftest import TINY_CONFIGS, save_tiny

TYPES = sorted(TINY_CONFIGS)

REQUESTS = [
    EditRequest("c1", "The capital of France is", "France", " Rome", " Paris"),
    EditRequest("c2", "Mount Fuji is in", "Mount Fuji", " Peru", " Japan"),
]


def _shared_settings() -> dict:
    return {"source": "test", "templates": {"lengths": [[4, 1]]},
            "target": {"v_num_grad_steps": 6, "v_lr": 0.5, "clamp_norm_factor": 40.0,
                       "v_weight_decay": 0.0},
            "stats": {"n_samples": 4, "context_cap": 64, "dtype": "float64"}}


def _weights(lm) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


def _check_only_changed(before, after, changed: set[str]) -> None:
    for name, w in after.items():
        same = torch.equal(w, before[name])
        assert same != (name in changed), f"{name}: changed={not same}, expected {name in changed}"


def test_at_least_eight_types_including_the_required_ones():
    assert len(TYPES) >= 8
    assert {"gptj", "mistral", "qwen2", "gpt_neox", "phi3"} <= set(TYPES)


@pytest.mark.parametrize("model_type", TYPES)
def test_templates_resolve_to_modules_of_documented_shapes(model_type, tiny_folders):
    lm = models.load(f"path:{tiny_folders[model_type]}")
    arch, model = lm.arch, lm.model
    emb = core_arch.get_module(model, arch.embed_template)
    assert isinstance(emb, torch.nn.Embedding)
    assert emb.weight.shape[1] == arch.d_model  # the embedding's width is the residual width
    blocks = [core_arch.get_module(model, arch.layer_name(i)) for i in range(arch.n_layers)]
    kwargs = TINY_CONFIGS[model_type]
    kwargs = kwargs.get("text_config", kwargs)
    assert len(blocks) == kwargs.get("num_hidden_layers", kwargs.get("n_layer"))
    with pytest.raises(core_arch.ModuleNotFound):
        core_arch.get_module(model, arch.layer_name(arch.n_layers))
    for i, block in enumerate(blocks):
        mlp = core_arch.get_module(model, arch.mlp_name(i))
        down = core_arch.get_module(model, arch.down_name(i))
        assert any(m is mlp for m in block.modules()) and any(m is down for m in mlp.modules())
        if arch.layout == "linear":
            assert isinstance(down, torch.nn.Linear)
            assert (down.in_features, down.out_features) == (arch.d_ffn, arch.d_model)
        else:  # GPT-2 Conv1D stores in x out
            assert type(down).__name__ == "Conv1D"
            assert tuple(down.weight.shape) == (arch.d_ffn, arch.d_model)
        # the edited matrix maps a key (ffn) to the residual (d): y = W(out x in) k + b
        k = torch.randn(arch.d_ffn, generator=torch.Generator().manual_seed(i))
        w = core_arch.to_out_in(down.weight, arch.layout)
        bias = down.bias if getattr(down, "bias", None) is not None else 0
        torch.testing.assert_close(down(k[None])[0], w @ k + bias, rtol=1e-5, atol=1e-5)
    # the MLP's output is what the block adds to the residual stream: same width
    x = torch.randn(1, 3, arch.d_model)
    assert core_arch.get_module(model, arch.mlp_name(0))(x).shape == x.shape


@pytest.mark.parametrize("model_type", TYPES)
def test_mlp_output_norm_fact_matches_the_block(model_type, tiny_folders):
    """A vector added to the edited matrix's output reaches the block's residual output
    unchanged exactly when the table names no norm in between (measured on the block)."""
    lm = models.load(f"path:{tiny_folders[model_type]}")
    arch = lm.arch
    ids = torch.tensor([[5, 70, 80, 90, 100]])
    v = torch.randn(arch.d_model, generator=torch.Generator().manual_seed(0)) * 1e-3
    got: dict[str, torch.Tensor] = {}

    def grab(mod, args, out):
        got["h"] = (out[0] if isinstance(out, tuple) else out)[0, 2].detach().double()

    def add(mod, args, out):
        out = out.clone()
        out[0, 2] += v.to(out.dtype)
        return out

    block = core_arch.get_module(lm.model, arch.layer_name(0))
    down = core_arch.get_module(lm.model, arch.down_name(0))
    handle = block.register_forward_hook(grab)
    try:
        with torch.no_grad():
            lm.model(input_ids=ids)
            base = got["h"]
            shift = down.register_forward_hook(add)
            try:
                lm.model(input_ids=ids)
            finally:
                shift.remove()
    finally:
        handle.remove()
    unchanged = torch.allclose(got["h"] - base, v.double(), rtol=1e-3, atol=1e-7)
    assert unchanged == (arch.mlp_output_norm_template is None), (model_type, got["h"] - base)
    if arch.mlp_output_norm_template is not None:
        norm = core_arch.get_module(lm.model, arch.mlp_output_norm_template.format(layer=0))
        assert any(m is norm for m in block.modules())


@pytest.mark.parametrize("model_type", TYPES)
def test_bos_fact_matches_the_saved_tokenizer(model_type, tiny_folders):
    lm = models.load(f"path:{tiny_folders[model_type]}")
    ids = lm.tokenizer("Paris")["input_ids"]
    assert (ids[0] == lm.tokenizer.bos_token_id) is lm.arch.adds_bos
    assert lm.arch.padding_side == lm.tokenizer.padding_side == "left"


def _down_io(lm, layer: int, request: EditRequest) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output of the edited projection at the subject's last token of the bare
    prompt, read with a plain forward hook (byte tokenizer: one token per byte, plus BOS)."""
    ids = lm.tokenizer(request.prompt, return_tensors="pt")["input_ids"]
    pos = ids.shape[1] - len(request.prompt.encode()) + request.prompt.rfind(request.subject) \
        + len(request.subject) - 1
    seen = {}
    module = lm.model.get_submodule(lm.arch.down_name(layer))
    handle = module.register_forward_hook(lambda m, i, o: seen.update(k=i[0][0, pos], y=o[0, pos]))
    try:
        with torch.no_grad():
            lm.model(ids)
    finally:
        handle.remove()
    return seen["k"].double(), seen["y"].double()


@pytest.mark.parametrize("model_type", TYPES)
def test_rome_edit_through_path(model_type, tiny_folders, corpus_root, tmp_path):
    """ROME's constraint, checked with hooks: after the edit the projection's output for the
    bare prompt's key moved by exactly the optimised residual (the A factor), and only
    that matrix changed, by a rank-one matrix."""
    lm = models.load(f"path:{tiny_folders[model_type]}")
    hp = parse_hparams("rome", {**_shared_settings(), "layers": [1]})
    editor = ROME(hp, data_root=corpus_root, cache_root=tmp_path, progress=False)
    request = REQUESTS[0]
    before = _weights(lm)
    k0, y0 = _down_io(lm, 1, request)
    delta = editor.compute(lm, [request], editor.init_state(lm))
    apply_delta(lm.model, delta)
    down = lm.arch.down_name(1)
    _check_only_changed(before, _weights(lm), {f"{down}.weight"})
    change = core_arch.to_out_in(lm.model.get_submodule(down).weight - before[f"{down}.weight"],
                                 lm.arch.layout)
    s = torch.linalg.svdvals(change.double())
    assert s[0] > 0 and s[1] <= 1e-5 * s[0]
    k1, y1 = _down_io(lm, 1, request)
    torch.testing.assert_close(k1, k0)  # upstream of the edit: the key is unchanged
    residual = delta.matrices[down].A[:, 0].double()
    assert float(residual.norm()) == pytest.approx(delta.info["delta_norm"], rel=1e-4)
    torch.testing.assert_close(y1 - y0, residual, rtol=1e-3, atol=1e-5 * float(residual.norm()))


@pytest.mark.parametrize("model_type", TYPES)
def test_memit_edit_through_path(model_type, tiny_folders, corpus_root, tmp_path):
    """MEMIT on two facts: exactly the two edited projections change, each by a finite,
    nonzero update of rank at most two (ΔW = R Kᵀ(λC0 + KKᵀ)⁻¹ with two keys)."""
    lm = models.load(f"path:{tiny_folders[model_type]}")
    hp = parse_hparams("memit", {**_shared_settings(), "layers": [0, 1], "mom2_update_weight": 5.0})
    editor = MEMIT(hp, data_root=corpus_root, cache_root=tmp_path, progress=False)
    before = _weights(lm)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS, state)
    delta = editor.compute(lm, REQUESTS, state)
    apply_delta(lm.model, delta)
    names = {lm.arch.down_name(i) for i in (0, 1)}
    _check_only_changed(before, _weights(lm), {f"{n}.weight" for n in names})
    for name in names:
        change = (lm.model.get_submodule(name).weight - before[f"{name}.weight"]).double()
        assert torch.isfinite(change).all()
        s = torch.linalg.svdvals(change)
        assert s[0] > 0 and s[2] <= 1e-5 * s[0], (name, s[:3])


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_weight_files_at_one_path_get_different_identities(tmp_path, corpus_root):
    from editors.hparams import StatsSpec
    from editors.stats import stats_key

    folder = save_tiny("llama", tmp_path / "model", seed=0)
    first = models.load(f"path:{folder}")
    weights = folder / "model.safetensors"
    assert first.identity["weights_sha256"] == {"model.safetensors": _sha256(weights)}
    spec = StatsSpec(n_samples=4, context_cap=64)
    key_a = stats_key(first, 1, spec, corpus_root)
    save_tiny("llama", folder, seed=1)  # other weights, same path, same config
    second = models.load(f"path:{folder}")
    assert second.identity["weights_sha256"] == {"model.safetensors": _sha256(weights)}
    assert second.identity["weights_sha256"] != first.identity["weights_sha256"]
    assert second.identity["config_sha256"] == first.identity["config_sha256"]
    assert stats_key(second, 1, spec, corpus_root) != key_a
    assert second.entry.name == first.entry.name  # one path, one slug: only the identity differs


def test_weight_hashes_are_remembered_across_processes_until_a_file_changes(tmp_path, monkeypatch):
    from benchmark.core import io as core_io
    from benchmark.models import refs

    monkeypatch.setenv("SEQEDIT_CACHE", str(tmp_path / "cache"))
    folder = save_tiny("gpt2", tmp_path / "model")
    weights = folder / "model.safetensors"
    hashed: list[str] = []
    real = core_io.sha256_file
    monkeypatch.setattr(core_io, "sha256_file", lambda p, *a: hashed.append(str(p)) or real(p, *a))
    monkeypatch.setattr(refs, "_HASHES", {})
    first = models.get_entry(f"path:{folder}").source.weights_sha256
    assert first == (("model.safetensors", _sha256(weights)),) and str(weights) in hashed
    hashed.clear()
    monkeypatch.setattr(refs, "_HASHES", {})  # a new process: only the cache root remembers
    assert models.get_entry(f"path:{folder}").source.weights_sha256 == first
    assert str(weights) not in hashed
    save_tiny("gpt2", folder, seed=3)  # a new checkpoint in place: hashed again
    second = models.get_entry(f"path:{folder}").source.weights_sha256
    assert str(weights) in hashed and second == (("model.safetensors", _sha256(weights)),) != first
