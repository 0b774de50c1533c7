"""The lower-layer memo: a replayed pass gives exactly the logits of a plain pass of the
edited model without running the replayed layers; any change below the edited layers
drops the records; non-plain passes are never memoised."""

from __future__ import annotations

import pytest
import torch

from benchmark import models
from benchmark.core.arch import get_module
from benchmark.core.lower_layers import LowerLayerMemo, lowest_layer


@pytest.fixture
def lm():
    return models.load("tiny-llama")  # 4 layers, LLaMA layout


def _ids(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 250, (3, 11), generator=g)


def _logits(lm, ids, **kw) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(input_ids=ids, use_cache=False, **kw).logits


def _layer0_calls(lm) -> list[int]:
    """Counts calls of layer 0's attention (it runs only when layer 0 really runs)."""
    calls = []
    get_module(lm.model, lm.arch.layer_name(0) + ".self_attn").register_forward_hook(
        lambda *a: calls.append(1))
    return calls


def _perturb(lm, name: str) -> None:
    with torch.no_grad():
        w = get_module(lm.model, name).weight
        w.add_(0.05 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))


def test_replay_equals_a_plain_pass_of_the_edited_model(lm):
    memo = LowerLayerMemo(lm, 2)
    calls = _layer0_calls(lm)
    ids, keep = _ids(), torch.arange(4, 11)
    with memo.active():
        first = _logits(lm, ids, logits_to_keep=keep)
    assert len(calls) == 1 and len(memo.records) == 1
    _perturb(lm, lm.arch.down_name(2))  # an upper layer: the records stay valid
    with memo.active():
        replayed = _logits(lm, ids, logits_to_keep=keep)
    assert len(calls) == 1 and memo.replayed == 1  # layer 0 did not run
    plain = _logits(lm, ids, logits_to_keep=keep)
    assert len(calls) == 2
    assert torch.equal(replayed, plain) and not torch.equal(first, plain)


@pytest.mark.parametrize("changed", ["lower layer", "embedding", "replaced parameter"])
def test_a_change_below_the_edited_layers_drops_the_records(lm, changed):
    memo = LowerLayerMemo(lm, 2)
    ids = _ids()
    with memo.active():
        _logits(lm, ids)
    if changed == "lower layer":
        _perturb(lm, lm.arch.down_name(1))
    elif changed == "replaced parameter":  # a new Parameter object, not an in-place change
        mod = get_module(lm.model, lm.arch.down_name(0))
        mod.weight = torch.nn.Parameter(mod.weight.detach() * 1.5)
    else:
        with torch.no_grad():
            lm.model.get_input_embeddings().weight[ids[0, 0]] += 0.1
    calls = _layer0_calls(lm)
    with memo.active():
        again = _logits(lm, ids)
    assert len(calls) == 1 and memo.replayed == 0
    assert torch.equal(again, _logits(lm, ids))


def test_other_inputs_and_non_plain_passes_are_not_replayed(lm):
    memo = LowerLayerMemo(lm, 2)
    with memo.active():
        _logits(lm, _ids(0))
        other = _logits(lm, _ids(1))  # another input: recorded, not replayed
        with torch.no_grad():
            lm.model(input_ids=_ids(0))  # use_cache left on: a cache is built, not memoised
            lm.model(input_ids=_ids(0), use_cache=False, output_hidden_states=True)
    assert memo.replayed == 0 and len(memo.records) == 2
    assert torch.equal(other, _logits(lm, _ids(1)))


def test_scoring_under_the_memo_is_unchanged(lm):
    """Scoring reads the forward's signature (the head only on kept positions): the memo
    keeps it, and the scores are bit for bit those of a plain run."""
    import inspect

    from benchmark.core.scoring import score_continuations

    seqs = [[257, *range(5, 5 + k)] for k in (4, 7, 9)]
    starts = [3, 4, 8]
    plain = score_continuations(lm.model, seqs, starts)
    memo = LowerLayerMemo(lm, 1)
    for _ in range(2):  # record, then replay
        with memo.active():
            assert "logits_to_keep" in inspect.signature(lm.model.forward).parameters
            got = score_continuations(lm.model, seqs, starts)
        assert torch.equal(got.logprob_sum, plain.logprob_sum)
    assert memo.replayed > 0


def test_recording_stops_at_the_byte_limit(lm):
    memo = LowerLayerMemo(lm, 2, max_bytes=3 * 11 * 64 * 4)  # one record of (3, 11, 64) float32
    with memo.active():
        _logits(lm, _ids(0))
        _logits(lm, _ids(1))
    assert len(memo.records) == 1 and memo.recorded_bytes == 3 * 11 * 64 * 4


def test_lowest_layer_and_bounds(lm):
    name = lm.arch.layer_name
    assert lowest_layer(lm, [lm.arch.down_name(3), lm.arch.down_name(2)]) == 2
    assert lowest_layer(lm, ["lm_head"]) is None
    assert lowest_layer(lm, [name(1) + "0.mlp"]) is None  # "layers.10" is not inside "layers.1"
    with pytest.raises(ValueError, match="1..4"):
        LowerLayerMemo(lm, 0)
