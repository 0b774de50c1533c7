"""Greedy continuations on the tiny random models against transformers' own ``generate``,
one prompt at a time, decoded and cut at the stop string by plain string code."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.requests import EditRequest
from benchmark.evaluation.editing import evaluate_editing
from benchmark.evaluation.generation import GenerationRule, generation_metrics, greedy_continuations

pytestmark = pytest.mark.usefixtures("one_thread")

#: Several prompts of equal length, so that batches hold more than one row.
PROMPTS = ["The mother tongue of Danielle Darrieux is", "Toko Yasuda, the", "BBC One, by", "abc", "xyz",
           "def", "Hello world", "Paris is in", "Rome is in", "Bern is in"]


def reference(lm, prompt: str, max_new_tokens: int, stop: str | None) -> str:
    """transformers' greedy ``generate`` on the prompt alone; the text before ``stop``."""
    ids = torch.tensor([lm.tokenizer(prompt, add_special_tokens=True)["input_ids"]])
    with torch.no_grad():
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=max_new_tokens, pad_token_id=lm.tokenizer.pad_token_id)
    text = lm.tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
    return text.split(stop)[0] if stop else text


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_greedy_continuations_match_generate(lm, batch_size):
    got = greedy_continuations(lm.model, lm.tokenizer, PROMPTS, GenerationRule(stop=()), batch_size)
    assert got == [reference(lm, p, 16, None) for p in PROMPTS]


def test_stop_string_and_max_new_tokens(lm):
    texts = [reference(lm, p, 6, None) for p in PROMPTS]
    stop = next(t[2] for t in texts if len(t) > 3)  # a character the model does produce mid-text
    got = greedy_continuations(lm.model, lm.tokenizer, PROMPTS, GenerationRule(max_new_tokens=6, stop=(stop,)), 4)
    assert got == [t.split(stop)[0] for t in texts]
    assert any(g != t for g, t in zip(got, texts))


def test_efficacy_from_the_models_own_continuation(lm):
    """A case whose new target is the model's own continuation succeeds, one whose target
    the model does not say fails."""
    prompts = ["Paris is in", "Rome is in", "Bern is in"]
    said = [reference(lm, p, 16, "\n") for p in prompts]
    reqs = [EditRequest(str(i), p, p.split()[0], t if i != 1 else "zq zq", "x")
            for i, (p, t) in enumerate(zip(prompts, said))]
    assert not said[1].lower().lstrip().startswith("zq")
    got = evaluate_editing(lm, reqs, ("gen_efficacy",), batch_size=2)["gen_efficacy"]
    assert got.items.ids == ("0", "1", "2")
    assert got.items.scores == (100.0, 0.0, 100.0)


@pytest.mark.parametrize("match", ["prefix", "contains"])
def test_early_end_gives_the_values_of_full_continuations(lm, match):
    said = [reference(lm, p, 16, "\n") for p in PROMPTS]
    # even cases: the model's own continuation (said); odd ones: its first half (not said)
    reqs = [EditRequest(str(i), p, p.split()[0], t if i % 2 == 0 else t[:max(1, len(t) // 2)], "x",
                        rephrase_prompts=tuple(q for q in PROMPTS if q != p)[:2])
            for i, (p, t) in enumerate(zip(PROMPTS, said))]
    rule = GenerationRule(match=match)
    full = generation_metrics(lm, reqs, ["gen_efficacy", "gen_generalization"], rule, 4, texts={})
    early = generation_metrics(lm, reqs, ["gen_efficacy", "gen_generalization"], rule, 4)
    assert {k: v.items for k, v in full.items()} == {k: v.items for k, v in early.items()}
    assert set(full["gen_efficacy"].items.scores) == {0.0, 100.0}
