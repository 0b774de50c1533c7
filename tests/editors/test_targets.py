"""The target optimisation (editors.targets, editors.runners, editors.packed) on tiny models: clamp, early
stop, weights untouched, and the engines against each other: ``"fast"`` (one batched
forward per step, layers below the edit run once) is bit for bit ``"suffix"`` (the
reference) for one request and equal to float rounding for a batch; ``"suffix"`` (prefix
key/value cache) equals ``"full"``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core.requests import EditRequest
from editors import keys, targets
from editors.hparams import TargetSpec
from editors.targets import StepLog, compute_target, compute_targets

REQ = EditRequest("0", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English", "French")
REQ2 = EditRequest("1", "Toko Yasuda, the", "Toko Yasuda", "piano", "guitar")
REQ3 = EditRequest("2", "Paris is the capital of", "Paris", "Italy", "France")
TINY = ["tiny-gpt2", "tiny-llama", "tiny-gemma"]
POINTS = ["mlp_out", "residual"]
# templates of different lengths (all prompts shorter than tiny-gemma's sliding window)
TEMPLATES = ("", "Long one. ", "Hi. ")


@pytest.mark.parametrize("point", POINTS)
def test_target_optimisation_clamps_and_leaves_weights_alone(tiny, point):
    for p in tiny.model.parameters():
        p.requires_grad_(True)  # even if the caller left grads on, weights get none
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    spec = TargetSpec(v_lr=5.0, v_num_grad_steps=6, clamp_norm_factor=0.5, v_weight_decay=0.0)
    for res in compute_targets(tiny, [REQ, REQ2], 1, ("", "A b. "), spec, point=point):
        assert res.steps == 6 and len(res.losses) == 6
        assert float(res.delta.norm()) <= 0.5 * float(res.h_init.norm()) * (1 + 1e-5)
        assert float(res.delta.norm()) > 0
    for n, p in tiny.model.named_parameters():
        assert p.grad is None, n
        assert p.requires_grad, "requires_grad flags are restored"
        assert torch.equal(p.detach(), before[n])
        assert "forward" not in get_module_dict(tiny, n), "replayed layers are restored"
    # h_init is the hook point's value for the bare prompt at the subject's last token
    expected = keys.compute_outputs(tiny, [REQ, REQ2], 1, point)
    torch.testing.assert_close(torch.stack([res.h_init for res in compute_targets(
        tiny, [REQ, REQ2], 1, ("", "A b. "), spec, point=point)]), expected, rtol=1e-4, atol=1e-6)


def get_module_dict(lm, param_name: str) -> dict:
    module = lm.model.get_submodule(param_name.rsplit(".", 1)[0])
    return module.__dict__


def test_target_loss_decreases_and_early_stop():
    lm = models.load("tiny-gpt2")
    spec = TargetSpec(v_lr=1.0, v_num_grad_steps=8, clamp_norm_factor=1e6, v_weight_decay=0.0,
                      kl_factor=0.0)
    res = compute_target(lm, REQ, 2, ("",), spec, point="residual")
    assert res.losses[-1] < res.losses[0]
    stop = compute_target(lm, REQ, 2, ("",), spec.model_copy(update={"early_stop_loss": 1e9}),
                          point="residual")
    assert stop.steps == 1 and float(stop.delta.norm()) == 0.0


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("point", POINTS)
def test_prefix_reuse_gives_the_full_forward_result(name, point):
    lm = models.load(name)
    spec = TargetSpec(v_lr=0.5, v_num_grad_steps=4, clamp_norm_factor=1e3, v_weight_decay=0.1)
    for req in (REQ, REQ2, REQ3):
        full = compute_target(lm, req, 1, TEMPLATES, spec, point, engine="full")
        suffix = compute_target(lm, req, 1, TEMPLATES, spec, point, engine="suffix")
        np.testing.assert_allclose(suffix.losses, full.losses, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(suffix.delta, full.delta, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(suffix.h_init, full.h_init, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("point", POINTS)
def test_fast_engine_is_the_reference_bit_for_bit_for_one_request(name, point):
    lm = models.load(name)
    spec = TargetSpec(v_lr=0.5, v_num_grad_steps=5, clamp_norm_factor=1e3, v_weight_decay=0.1)
    for req in (REQ, REQ2, REQ3):
        ref = compute_target(lm, req, 1, TEMPLATES, spec, point, engine="suffix")
        log = StepLog()
        fast = compute_target(lm, req, 1, TEMPLATES, spec, point, log=log)
        assert torch.equal(fast.delta, ref.delta) and torch.equal(fast.h_init, ref.h_init)
        assert fast.losses == ref.losses and fast.steps == ref.steps == 5
        assert len(log.forward) == len(log.backward) == len(log.tokens) == 5 and log.setup > 0


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())


def _early_stop_spec(lm, requests, layer, point, templates):
    """Settings under which the requests stop at different steps (at least the second):
    the early-stop threshold is picked from the losses of a run that never stops (the
    losses up to a stop do not depend on the threshold)."""
    spec = TargetSpec(v_lr=2.0, v_num_grad_steps=8, clamp_norm_factor=1e3, v_weight_decay=0.0,
                      kl_factor=0.0, early_stop_loss=0.0)
    runs = [r.losses for r in compute_targets(lm, requests, layer, templates, spec, point,
                                              engine="suffix")]

    def steps(t: float) -> list[int]:
        return [next((k + 1 for k, x in enumerate(ls) if x < t), len(ls)) for ls in runs]

    values = sorted({x for ls in runs for x in ls})
    best = max(((a + b) / 2 for a, b in zip(values, values[1:])),
               key=lambda t: (min(steps(t)) > 1, len(set(steps(t)))))
    assert min(steps(best)) > 1 and len(set(steps(best))) > 1
    return spec.model_copy(update={"early_stop_loss": best})


@pytest.mark.parametrize(("name", "runner"), [
    ("tiny-gpt2", "PackedRunner"), ("tiny-llama", "PackedRunner"),
    ("tiny-llama", "SuffixRunner"),  # packing off (as for attention without 4D masks)
    ("tiny-gemma", "FullRunner"),  # the rows' cache span exceeds the 64-token window
])
@pytest.mark.parametrize("point", POINTS)
def test_fast_engine_batch_equals_one_request_at_a_time(name, runner, point, monkeypatch):
    """A batch in one forward, each request with its own δ, Adam state, clamp and early
    stop (a stopped request leaves the batch): the reference's results to float rounding,
    and the same number of steps per request."""
    lm = models.load(name)
    if runner == "SuffixRunner":
        monkeypatch.setattr(targets, "attention_kind", lambda model: None)
    reqs = [REQ, REQ2, REQ3]
    spec = _early_stop_spec(lm, reqs, 1, point, TEMPLATES)
    ref = compute_targets(lm, reqs, 1, TEMPLATES, spec, point, engine="suffix")
    log = StepLog()
    fast = compute_targets(lm, reqs, 1, TEMPLATES, spec, point, log=log)
    assert log.runner == runner
    assert log.tokens[-1] < log.tokens[0], "stopped requests leave the batch"
    assert len({r.steps for r in ref}) > 1, "the requests must stop at different steps"
    for a, b in zip(fast, ref):
        assert a.steps == b.steps
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5, atol=1e-6)
        assert _rel(a.delta, b.delta) <= 1e-5 and _rel(a.h_init, b.h_init) <= 1e-5


@pytest.mark.parametrize("point", POINTS)
def test_fast_engine_batch_on_rows_longer_than_the_sliding_window(point):
    """tiny-gemma's window is 64 tokens: a long template makes the fast engine run full
    rows (no prefix cache), still batched, still skipping the layers below the edit."""
    lm = models.load("tiny-gemma")
    templates = ("", "A rather long context sentence that pushes the prompt past the window. ")
    reqs = [REQ, REQ2, REQ3]
    spec = _early_stop_spec(lm, reqs, 1, point, templates)
    ref = compute_targets(lm, reqs, 1, templates, spec, point, engine="full")
    log = StepLog()
    fast = compute_targets(lm, reqs, 1, templates, spec, point, log=log)
    assert log.runner == "FullRunner"
    for a, b in zip(fast, ref):
        assert a.steps == b.steps
        assert _rel(a.delta, b.delta) <= 1e-5


def test_unknown_engine_is_rejected():
    lm = models.load("tiny-gpt2")
    with pytest.raises(ValueError, match="unknown target engine"):
        compute_target(lm, REQ, 1, ("",), TargetSpec(), "residual", engine="quick")
