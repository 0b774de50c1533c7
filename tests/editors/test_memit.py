"""MEMIT and sequential MEMIT on tiny random models (Linear and GPT-2 Conv1D layouts).

Independent references: hidden states and keys are read with plain forward hooks at the
subject's last byte (the tiny models use a byte tokenizer), targets with the shared target
optimiser, linear algebra with numpy.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from benchmark.core.arch import get_module, to_out_in
from benchmark.core.errors import DataError
from benchmark.core.requests import EditRequest
from editors.base import apply_delta
from editors.hparams import parse_hparams
from editors.memit import MEMIT, SequentialMEMIT
from editors.targets import compute_targets

REQUESTS = [
    EditRequest("c1", "The capital of France is", "France", " Rome", " Paris"),
    EditRequest("c2", "Bob Dylan plays the", "Bob Dylan", " flute", " guitar"),
    EditRequest("c3", "Mount Fuji is in", "Mount Fuji", " Peru", " Japan"),
    EditRequest("c4", "Lionel Messi plays for", "Lionel Messi", " Chelsea", " Inter"),
]


def tiny_hparams(method: str, layers=(1, 2), lam: float = 5.0, templates=(), steps: int = 4, **extra):
    data = {
        "source": "test", "layers": list(layers), "mom2_update_weight": lam,
        "templates": {"lengths": [list(t) for t in templates]},
        "target": {"v_num_grad_steps": steps, "v_lr": 0.5, "clamp_norm_factor": 4.0},
        "stats": {"n_samples": 6, "context_cap": 64},
        **extra,
    }
    return parse_hparams(method, data)


@pytest.fixture(scope="module")
def stats_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("memit-stats")


def load(name: str):
    return models.load(name)


def subject_position(lm, prompt: str, subject: str) -> int:
    """Byte tokenizer: one token per byte, plus a BOS where the model adds one."""
    ids = lm.tokenizer(prompt)["input_ids"]
    offset = len(ids) - len(prompt.encode())
    return offset + prompt.rfind(subject) + len(subject) - 1


def read_at_subject(lm, request: EditRequest, module_name: str, kind: str) -> torch.Tensor:
    """The input (kind="input") or output of a module at the subject's last token."""
    got = {}
    mod = get_module(lm.model, module_name)
    if kind == "input":
        h = mod.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0]))
    else:
        h = mod.register_forward_hook(lambda m, a, o: got.setdefault("x", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            lm.model(input_ids=torch.tensor([lm.tokenizer(request.prompt)["input_ids"]]))
    finally:
        h.remove()
    return got["x"][0, subject_position(lm, request.prompt, request.subject)].double()


def weights(lm):
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_memit_delta_shapes_rank_and_model_untouched(name, stats_cache):
    lm = load(name)
    hp = tiny_hparams("memit", templates=[(3, 2)])
    editor = MEMIT(hp, cache_root=stats_cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:3], state)
    before = weights(lm)
    delta = editor.compute(lm, REQUESTS[:3], state)
    after = weights(lm)
    assert all(torch.equal(before[k], after[k]) for k in before), "compute changed the model"
    assert sorted(delta.matrices) == sorted(lm.arch.down_name(layer) for layer in hp.layers)
    for layer in hp.layers:
        md = delta.matrices[lm.arch.down_name(layer)]
        W = to_out_in(core_arch.down_weight(lm.model, lm.arch, layer), lm.arch.layout)
        assert md.layout == lm.arch.layout
        assert md.A.shape == (W.shape[0], 3) and md.B.shape == (W.shape[1], 3)
        dense = (md.A.double() @ md.B.double().T).numpy()
        assert np.isfinite(dense).all() and np.abs(dense).max() > 0
        assert md.rank_bound <= 3 and np.linalg.matrix_rank(dense) <= 3


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_memit_reaches_its_targets_when_the_prior_is_negligible(name, stats_cache):
    """With bare-prompt keys only and λ -> 0, each layer's update maps its keys exactly onto
    its share of the residual, so after the whole Delta the residual output of the last
    layer equals z* (read independently with a forward hook)."""
    lm = load(name)
    hp = tiny_hparams("memit", lam=1e-6)
    reqs = REQUESTS[:3]
    editor = MEMIT(hp, cache_root=stats_cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, reqs, state)
    z_layer = hp.layers[-1]
    targets = compute_targets(lm, reqs, z_layer, ("",), hp.target, point="residual")
    h0 = [read_at_subject(lm, r, lm.arch.layer_name(z_layer), "output") for r in reqs]
    delta = editor.compute(lm, reqs, state)
    undo = apply_delta(lm.model, delta)
    try:
        h1 = [read_at_subject(lm, r, lm.arch.layer_name(z_layer), "output") for r in reqs]
    finally:
        undo.revert()
    for t, a, b in zip(targets, h0, h1):
        z = t.target.double()
        assert (z - a).norm() > 1e-3  # there was something to do
        assert (z - b).norm() <= 1e-3 * (z - a).norm() + 1e-4


def test_sequential_memit_first_batch_equals_plain_and_accumulates_keys(stats_cache):
    lm = load("tiny-llama")
    plain = MEMIT(tiny_hparams("memit"), cache_root=stats_cache, progress=False)
    seq = SequentialMEMIT(tiny_hparams("memit-seq"), cache_root=stats_cache, progress=False)
    reqs = REQUESTS[:2]
    s_plain, s_seq = plain.init_state(lm), seq.init_state(lm)
    plain.prepare(lm, reqs, s_plain)
    seq.prepare(lm, reqs, s_seq)
    d_plain = plain.compute(lm, reqs, s_plain)
    d_seq = seq.compute(lm, reqs, s_seq)
    for name, md in d_plain.matrices.items():
        torch.testing.assert_close(d_seq.matrices[name].to_dense(), md.to_dense(), rtol=1e-5, atol=1e-6)
    # state: Σ k kᵀ of the batch's keys on the edited model (bare prompt: templates off)
    undo = apply_delta(lm.model, d_seq)
    try:
        for layer in seq.hparams.layers:
            K = np.stack([read_at_subject(lm, r, lm.arch.down_name(layer), "input").numpy() for r in reqs], 1)
            got = s_seq.tensors[f"kpkpt.L{layer}"].double().numpy()
            np.testing.assert_allclose(got, K @ K.T, rtol=1e-4, atol=1e-5)
    finally:
        undo.revert()
    assert s_seq.meta["n_keys"] == 2


@pytest.mark.parametrize("key_average", ["group_mean", "uniform"])
def test_sequential_memit_keys_follow_key_average(key_average, stats_cache):
    """With templates (bare + 2 prefixes), the accumulated Kp Kpᵀ holds keys averaged as
    ``key_average`` says: group_mean = (k_bare + mean(k_prefix1, k_prefix2)) / 2 (released
    compute_ks), uniform = mean of the three; keys read with plain hooks per template."""
    from editors.templates import context_templates

    lm = load("tiny-llama")
    hp = tiny_hparams("memit-seq", templates=[(3, 2)], key_average=key_average)
    seq = SequentialMEMIT(hp, cache_root=stats_cache, progress=False)
    reqs = REQUESTS[:2]
    state = seq.init_state(lm)
    seq.prepare(lm, reqs, state)
    delta = seq.compute(lm, reqs, state)
    templates = context_templates(lm, hp.templates)
    assert len(templates) == 3
    undo = apply_delta(lm.model, delta)
    try:
        for layer in hp.layers:
            cols = []
            for r in reqs:
                per = [read_at_subject(lm, EditRequest(r.case_id, t + r.prompt, r.subject, r.target_new,
                                                       r.target_true), lm.arch.down_name(layer),
                                       "input").numpy() for t in templates]
                cols.append((per[0] + (per[1] + per[2]) / 2) / 2 if key_average == "group_mean"
                            else np.mean(per, axis=0))
            K = np.stack(cols, 1)
            got = state.tensors[f"kpkpt.L{layer}"].double().numpy()
            np.testing.assert_allclose(got, K @ K.T, rtol=1e-4, atol=1e-5)
    finally:
        undo.revert()


def test_sequential_memit_second_batch_uses_the_accumulated_keys(stats_cache):
    lm = load("tiny-llama")
    seq = SequentialMEMIT(tiny_hparams("memit-seq"), cache_root=stats_cache, progress=False)
    plain = MEMIT(tiny_hparams("memit"), cache_root=stats_cache, progress=False)
    state = seq.init_state(lm)
    seq.prepare(lm, REQUESTS, state)
    undo = apply_delta(lm.model, seq.compute(lm, REQUESTS[:2], state))
    try:
        d_seq = seq.compute(lm, REQUESTS[2:], state)
        d_plain = plain.compute(lm, REQUESTS[2:], plain.init_state(lm))
    finally:
        undo.revert()
    name = lm.arch.down_name(seq.hparams.layers[0])
    # the first layer's system differs only by Kp Kpᵀ: the updates must differ
    assert not torch.allclose(d_seq.matrices[name].to_dense(), d_plain.matrices[name].to_dense(),
                              rtol=1e-3, atol=1e-6)
    assert state.meta["n_keys"] == 4


def test_sequential_memit_state_round_trips_through_a_checkpoint(stats_cache):
    lm = load("tiny-llama")
    seq = SequentialMEMIT(tiny_hparams("memit-seq"), cache_root=stats_cache, progress=False)
    state = seq.init_state(lm)
    seq.prepare(lm, REQUESTS, state)
    undo = apply_delta(lm.model, seq.compute(lm, REQUESTS[:2], state))
    try:
        buf = io.BytesIO()
        torch.save(state.state_dict(), buf)
        buf.seek(0)
        restored = seq.init_state(lm)
        restored.load_state_dict(torch.load(buf))
        for k, v in state.tensors.items():
            assert torch.equal(restored.tensors[k], v)
        assert restored.meta == state.meta
        d1 = seq.compute(lm, REQUESTS[2:], state)
        d2 = seq.compute(lm, REQUESTS[2:], restored)
    finally:
        undo.revert()
    for name, md in d1.matrices.items():
        assert torch.equal(md.to_dense(), d2.matrices[name].to_dense())


def test_memit_rejects_layers_outside_the_model(stats_cache):
    lm = load("tiny-llama")
    editor = MEMIT(tiny_hparams("memit", layers=(2, 9)), cache_root=stats_cache, progress=False)
    with pytest.raises(DataError, match=r"field 'layers': memit: layers \[9\] outside 0..3"):
        editor.prepare(lm, REQUESTS[:1], editor.init_state(lm))


@pytest.mark.parametrize(("name", "warned"), [("tiny-gemma", True), ("tiny-llama", False)])
def test_batch_editors_warn_where_the_mlp_output_is_normalised(name, warned, caplog, tmp_path):
    """Gemma-3 normalises the MLP output before the residual stream: MEMIT's prepare says so."""
    import logging

    from editors import create_editor

    lm = models.load(name)
    editor = create_editor("memit", lm, cache_root=tmp_path, progress=False)
    with caplog.at_level(logging.WARNING, logger="editors.batch"):
        editor.prepare(lm, REQUESTS[:1], editor.init_state(lm))
    hits = [r for r in caplog.records if "normalises the MLP output" in r.getMessage()]
    assert bool(hits) == warned
