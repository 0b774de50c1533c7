"""Subject location, context templates and keys on tiny models (editors.keys,
editors.templates); the target optimisation is in test_targets.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core.arch import get_module
from benchmark.core.requests import EditRequest
from editors import keys
from editors.hparams import TemplateSpec
from editors.templates import clear_template_cache, context_templates

REQ = EditRequest("0", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English", "French")
REQ2 = EditRequest("1", "Toko Yasuda, the", "Toko Yasuda", "piano", "guitar")


# --------------------------------------------------------------------------- location
def test_subject_last_token_byte_tokenizer_with_and_without_bos():
    text = REQ.prompt
    end = text.index("Darrieux") + len("Darrieux")
    # byte tokenizer: one token per byte, so the last subject byte is at end - 1 (+1 for BOS)
    assert keys.subject_last_token(models.byte_tokenizer(adds_bos=False), text, end) == end - 1
    assert keys.subject_last_token(models.byte_tokenizer(adds_bos=True), text, end) == end


def test_subject_last_token_when_subject_merges_with_following_text():
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "The", "tongue", "of", "Danielle", "Darrieux's", "is"])}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    text = "The tongue of Danielle Darrieux's is"
    end = text.index("Darrieux") + len("Darrieux")  # inside the merged word "Darrieux's"
    assert keys.subject_last_token(fast, text, end) == 4


def test_subject_end_uses_last_occurrence():
    r = EditRequest("x", "Paris and Paris is in", "Paris", "a", "b")
    assert keys.subject_end(r) == len("Paris and Paris")


# --------------------------------------------------------------------------- templates
def test_templates_seeded_locally_and_cached():
    lm = models.load("tiny-llama")
    clear_template_cache()
    spec = TemplateSpec(lengths=[(8, 3)], seed=1)
    rng_before = torch.random.get_rng_state()
    t1 = context_templates(lm, spec)
    assert torch.equal(rng_before, torch.random.get_rng_state()), "global RNG must be untouched"
    assert t1[0] == "" and len(t1) == 4 and all(t.endswith(". ") for t in t1[1:])
    clear_template_cache()
    torch.manual_seed(12345)  # global seed must not matter
    assert context_templates(lm, spec) == t1
    other = context_templates(lm, TemplateSpec(lengths=[(8, 3)], seed=2))
    assert other != t1
    # cached: same object on a repeated call
    assert context_templates(lm, spec) is context_templates(lm, spec)


# --------------------------------------------------------------------------- keys
def _manual_down_inputs(lm, text: str, layer: int) -> torch.Tensor:
    """Down-projection inputs at every position of ``text`` computed WITHOUT hooks: the
    block input from output_hidden_states, then attention and MLP by hand. Also checks
    the manual block reproduces the next hidden state."""
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        hs = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
        h = hs[layer]
        if lm.arch.layout == "conv1d":
            block = lm.model.transformer.h[layer]
            h_mid = h + block.attn(block.ln_1(h))[0]
            k = block.mlp.act(block.mlp.c_fc(block.ln_2(h_mid)))
            out = h_mid + block.mlp.c_proj(k)
        else:
            block = lm.model.model.layers[layer]
            pos = torch.arange(ids.shape[1])[None]
            pe = lm.model.model.rotary_emb(h, pos)
            h_mid = h + block.self_attn(block.input_layernorm(h), position_embeddings=pe,
                                        attention_mask=None)[0]
            x = block.post_attention_layernorm(h_mid)
            k = block.mlp.act_fn(block.mlp.gate_proj(x)) * block.mlp.up_proj(x)
            out = h_mid + block.mlp.down_proj(k)
        if layer + 1 < len(hs) - 1:  # the last entry of hidden_states is after the final norm
            torch.testing.assert_close(out, hs[layer + 1], rtol=1e-4, atol=1e-5)
    return k[0]


def test_keys_equal_hook_free_average(tiny):
    layer = 1
    templates = ("", "Once upon a time. ", "X. ")
    got = keys.compute_keys(tiny, [REQ, REQ2], [layer, 2], templates, batch_size=4)
    assert got[layer].shape == (2, tiny.arch.d_ffn)
    for row, req in enumerate([REQ, REQ2]):
        per = []
        for t in templates:
            text = t + req.prompt
            # byte tokenizer: the last subject byte's index, +1 with BOS
            idx = len((t + req.prompt[: keys.subject_end(req)]).encode()) - 1 + int(tiny.arch.adds_bos)
            per.append(_manual_down_inputs(tiny, text, layer)[idx].numpy().astype(np.float64))
        np.testing.assert_allclose(got[layer][row].numpy(), np.mean(per, axis=0), rtol=1e-4, atol=1e-5)


def test_subject_passes_replay_is_bit_for_bit_a_fresh_pass(tiny):
    """MEMIT's layer loop: read keys at layer 1, edit layer 1, read keys at layer 2 and the
    block output of layer 2. The replaying passes (layers below the recorded layer not run)
    give exactly what fresh passes give on the edited model; records never decrease."""
    templates = ("", "Once upon a time. ", "X. ")
    reqs = [REQ, REQ2]
    passes = keys.SubjectPasses(tiny, reqs, templates, batch_size=4)  # two chunks
    outs = keys.SubjectPasses(tiny, reqs, ("",))
    down1, down2 = tiny.arch.down_name(1), tiny.arch.down_name(2)
    block2 = (tiny.arch.layer_name(2), "output")
    k1 = passes.collect([(down1, "input")], record=1)[down1]
    assert torch.equal(k1, keys.compute_keys(tiny, reqs, [1], templates, batch_size=4)[1])
    outs.collect([block2], record=1)
    k2_before = keys.compute_keys(tiny, reqs, [2], templates, batch_size=4)[2]
    weight = get_module(tiny.model, down1).weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    try:
        k2 = passes.collect([(down2, "input")], record=2)[down2]
        h2 = outs.collect([block2], record=2)[block2[0]]
        assert passes.start == 2 and outs.start == 2
        assert torch.equal(k2, keys.compute_keys(tiny, reqs, [2], templates, batch_size=4)[2])
        assert torch.equal(h2, keys.compute_outputs(tiny, reqs, 2, "residual"))
        assert not torch.equal(k2, k2_before)  # the edit below layer 2 reached the keys
        # a lower record than the last one runs every layer again
        k1_again = passes.collect([(down1, "input")], record=1)[down1]
        assert torch.equal(k1_again, keys.compute_keys(tiny, reqs, [1], templates, batch_size=4)[1])
    finally:
        with torch.no_grad():
            weight.copy_(saved)


# --------------------------------------------------------------------------- key averaging
def test_template_weights_hand_cases():
    np.testing.assert_allclose(keys.template_weights(4).numpy(), [0.25] * 4)
    # bare alone, then 3 prefixes: (k_bare + mean(k_1..k_3)) / 2
    np.testing.assert_allclose(keys.template_weights(4, (1, 3)).numpy(), [1 / 2, 1 / 6, 1 / 6, 1 / 6])
    # three groups (ROME-like [[5, 2], [10, 2]]): 1/3 for the bare prompt, 1/6 for each prefix
    np.testing.assert_allclose(keys.template_weights(5, (1, 2, 2)).numpy(), [1 / 3] + [1 / 6] * 4)
    with pytest.raises(ValueError, match="partition"):
        keys.template_weights(4, (1, 2))


def test_template_groups_follow_the_lengths():
    from editors.templates import template_groups

    assert template_groups(TemplateSpec(lengths=[(10, 5)])) == (1, 5)
    assert template_groups(TemplateSpec(lengths=[(5, 10), (10, 10)])) == (1, 10, 10)


def test_group_mean_keys_equal_the_released_compute_ks(tiny):
    """key_average group_mean: per request, the mean over template groups of each group's
    mean key (released compute_ks); stated directly from one-template keys in numpy."""
    layer = 1
    templates = ("", "Once upon a time. ", "X. ", "A b c. ", "Then. ")
    groups = (1, 3, 1)
    got = keys.compute_keys(tiny, [REQ, REQ2], [layer], templates, batch_size=4, groups=groups)[layer]
    for row, req in enumerate([REQ, REQ2]):
        per = np.stack([keys.compute_keys(tiny, [req], [layer], (t,))[layer][0].numpy().astype(np.float64)
                        for t in templates])
        expected = np.mean([per[0], per[1:4].mean(axis=0), per[4]], axis=0)
        np.testing.assert_allclose(got[row].numpy(), expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(per.mean(axis=0), expected, rtol=1e-3)  # differs from uniform
