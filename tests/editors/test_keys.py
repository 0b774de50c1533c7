"""Subject location, context templates, keys and target optimisation on tiny models
(editors.keys, editors.templates, editors.targets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core.requests import EditRequest
from editors import keys
from editors.hparams import TargetSpec, TemplateSpec
from editors.targets import compute_target
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


# --------------------------------------------------------------------------- targets
@pytest.mark.parametrize("point", ["mlp_out", "residual"])
def test_target_optimisation_clamps_and_leaves_weights_alone(tiny, point):
    for p in tiny.model.parameters():
        p.requires_grad_(True)  # even if the caller left grads on, weights get none
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    spec = TargetSpec(v_lr=5.0, v_num_grad_steps=6, clamp_norm_factor=0.5, v_weight_decay=0.0)
    res = compute_target(tiny, REQ, 1, ("", "A b. "), spec, point=point)
    assert res.steps == 6 and len(res.losses) == 6
    assert float(res.delta.norm()) <= 0.5 * float(res.h_init.norm()) * (1 + 1e-5)
    assert float(res.delta.norm()) > 0
    for n, p in tiny.model.named_parameters():
        assert p.grad is None, n
        assert p.requires_grad, "requires_grad flags are restored"
        assert torch.equal(p.detach(), before[n])
    # h_init is the hook point's value for the bare prompt at the subject's last token
    expected = keys.compute_outputs(tiny, [REQ], 1, point)[0]
    torch.testing.assert_close(res.h_init, expected, rtol=1e-4, atol=1e-6)


def test_target_loss_decreases_and_early_stop():
    lm = models.load("tiny-gpt2")
    spec = TargetSpec(v_lr=1.0, v_num_grad_steps=8, clamp_norm_factor=1e6, v_weight_decay=0.0,
                      kl_factor=0.0)
    res = compute_target(lm, REQ, 2, ("",), spec, point="residual")
    assert res.losses[-1] < res.losses[0]
    stop = compute_target(lm, REQ, 2, ("",), spec.model_copy(update={"early_stop_loss": 1e9}),
                               point="residual")
    assert stop.steps == 1 and float(stop.delta.norm()) == 0.0


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma"])
@pytest.mark.parametrize("point", ["mlp_out", "residual"])
def test_prefix_reuse_gives_the_full_forward_result(name, point):
    lm = models.load(name)
    spec = TargetSpec(v_lr=0.5, v_num_grad_steps=4, clamp_norm_factor=1e3, v_weight_decay=0.1)
    # templates of different lengths (all prompts shorter than tiny-gemma's sliding window)
    templates = ("", "Long one. ", "Hi. ")
    for req in (REQ, REQ2, EditRequest("2", "Paris is the capital of", "Paris", "Italy", "France")):
        full = compute_target(lm, req, 1, templates, spec, point, reuse_prefix=False)
        fast = compute_target(lm, req, 1, templates, spec, point, reuse_prefix=True)
        np.testing.assert_allclose(fast.losses, full.losses, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast.delta, full.delta, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(fast.h_init, full.h_init, rtol=1e-4, atol=1e-6)
