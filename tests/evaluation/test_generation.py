"""Generation-based editing success: the text rules on hand-written cases, and the metrics on a
scripted model whose greedy continuation of each prompt is written in the test."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from benchmark.core.errors import DataError
from benchmark.core.requests import EditRequest
from benchmark.core.scoring import encode_pair
from benchmark.evaluation.editing import ALL_METRICS, evaluate_editing
from benchmark.evaluation.generation import (
    GENERATION_METRICS,
    GenerationRule,
    cut_at_stop,
    decided,
    generation_metrics,
    greedy_continuations,
    matches,
    normalise,
)
from benchmark.models.tokenizer import byte_tokenizer

EOS = 258


# --------------------------------------------------------------------------- text rules
@pytest.mark.parametrize(("text", "expected"), [
    (" English, and ...", "english and"),
    ("english.", "english"),
    ("ＥＮＧＬＩＳＨ", "english"),  # full-width letters: NFKC
    ("Côte d'Ivoire", "côte d ivoire"),
    ("a \t\n  b", "a b"),
    ("¿Qué?", "qué"),
    ("", ""),
    ("...", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(("continuation", "target", "prefix", "contains"), [
    (" English, and French", "English", True, True),
    ("english.", "English", True, True),
    (" Englishman", "English", False, False),
    (" French and English", "English", False, True),
    (" the English.", "English", False, True),
    ("", "English", False, False),
    (" New York City is large", "New York City", True, True),
    (" New Yorker", "New York", False, False),
    (" U.S. Army", "U.S.", True, True),
    (" Eng lish", "English", False, False),
    (" ENGLISH", "english", True, True),
    (" piano", "the piano", False, False),
])
def test_match_rules(continuation, target, prefix, contains):
    assert matches(continuation, target, "prefix") is prefix
    assert matches(continuation, target, "contains") is contains


def test_match_rejects_a_target_without_words_and_unknown_rules():
    with pytest.raises(ValueError, match="no words"):
        matches("anything", " ?! ")
    with pytest.raises(ValueError, match="unknown match"):
        matches("a", "a", "exact")


@pytest.mark.parametrize(("text", "stop", "expected"), [
    (" Paris\nLondon", ("\n",), " Paris"),
    (" Paris", ("\n",), " Paris"),
    ("\nParis", ("\n",), ""),
    (" x and y. z", (".", " and"), " x"),
    (" x. y and z", (".", " and"), " x"),
    (" a\nb", (), " a\nb"),
])
def test_cut_at_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected


def test_rule_describe_and_dict():
    assert GenerationRule().describe() == "greedy;max16;stop=\\n;prefix"
    rule = GenerationRule(max_new_tokens=8, stop=[".", "\n"], match="contains")
    assert rule.describe() == "greedy;max8;stop=.,\\n;contains"
    assert GenerationRule(stop=()).describe() == "greedy;max16;stop=none;prefix"
    d = rule.to_dict()
    assert d["stop"] == [".", "\n"] and d["max_new_tokens"] == 8 and d["match"] == "contains"
    assert json.loads(json.dumps(d)) == d
    assert GenerationRule.from_dict(d) == rule
    assert hash(rule) == hash(GenerationRule(8, (".", "\n"), "contains"))
    with pytest.raises(AttributeError):
        rule.match = "prefix"


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 0}, {"match": "exact"}, {"stop": ("",)}])
def test_rule_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match="generation rule"):
        GenerationRule(**kwargs)


@pytest.mark.parametrize(("text", "target", "match", "expected"), [
    ("", "English", "prefix", False),
    (" Eng", "English", "prefix", False),
    (" English", "English", "prefix", False),  # "Englishman" may follow
    (" English,", "English", "prefix", True),
    (" English and", "English", "prefix", True),
    (" French", "English", "prefix", False),  # the last word is never taken as final
    (" French ", "English", "prefix", True),
    (" New York", "New York City", "prefix", False),
    (" New Jersey ", "New York City", "prefix", True),
    (" New York City.", "New York City", "prefix", True),
    (" the pian", "piano", "contains", False),
    (" the piano.", "piano", "contains", True),
    (" French and many more words ", "piano", "contains", False),
])
def test_decided(text, target, match, expected):
    assert decided(text, target, match) is expected


# --------------------------------------------------------------------------- scripted model
class Scripted(torch.nn.Module):
    """Greedily "says" ``scripts[prompt]`` (bytes, then EOS) after each prompt. The KV cache is
    the token sequence so far; every first-step input (without its padding) is kept in
    ``seen``, the number of forward calls in ``calls``."""

    def __init__(self, tokenizer, scripts: dict[str, str]):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []
        self.calls = 0
        self.scripts = {tuple(tokenizer(p, add_special_tokens=True)["input_ids"]): list(s.encode()) + [EOS]
                        for p, s in scripts.items()}

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=True):
        self.calls += 1
        seq = input_ids if past_key_values is None else torch.cat([past_key_values, input_ids], dim=1)
        assert attention_mask.shape == seq.shape
        rows = [[t for t, m in zip(r, mr) if m] for r, mr in zip(seq.tolist(), attention_mask.tolist())]
        assert [len(r) - 1 for r in rows] == position_ids[:, -1].tolist()
        if past_key_values is None:
            self.seen.extend(rows)
        logits = torch.zeros(seq.shape[0], seq.shape[1], 260)
        for b, row in enumerate(rows):
            (prompt, script), = [(p, s) for p, s in self.scripts.items() if tuple(row[:len(p)]) == p]
            pos = len(row) - len(prompt)
            logits[b, -1, script[pos] if pos < len(script) else EOS] = 1.0
        return SimpleNamespace(logits=logits, past_key_values=seq)


def scripted_lm(scripts: dict[str, str]):
    tok = byte_tokenizer(adds_bos=True)
    return SimpleNamespace(model=Scripted(tok, scripts), tokenizer=tok)


CASES = [
    EditRequest("a", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English", "French",
                rephrase_prompts=("Danielle Darrieux speaks", "Where Danielle Darrieux lives, people speak")),
    EditRequest("b", "Toko Yasuda, the", "Toko Yasuda", "piano", "guitar",
                rephrase_prompts=("Toko Yasuda is incredible at",)),
    EditRequest("c", "BBC One, by", "BBC One", "Sega Sammy", "BBC", rephrase_prompts=()),
]
SCRIPTS = {
    "The mother tongue of Danielle Darrieux is": " English, and she also speaks",
    "Danielle Darrieux speaks": " French, English",  # contains only (16 byte tokens)
    "Where Danielle Darrieux lives, people speak": " Englishman",  # neither
    "Toko Yasuda, the": "\npiano",  # empty after the stop string
    "Toko Yasuda is incredible at": " the piano.",  # contains only
    "BBC One, by": " Sega\nSammy",  # the full target only past the stop string
}


@pytest.mark.parametrize("batch_size", [1, 4])
def test_metrics_on_scripted_continuations(batch_size):
    lm = scripted_lm(SCRIPTS)
    texts: dict[str, str] = {}
    got = generation_metrics(lm, CASES, GENERATION_METRICS, None, batch_size, texts=texts)
    assert texts["BBC One, by"] == " Sega" and texts["Toko Yasuda, the"] == ""
    assert texts["Danielle Darrieux speaks"] == " French, English"
    for name in ("gen_efficacy", "zsre_gen_efficacy"):
        assert got[name].items.ids == ("a", "b", "c")
        assert got[name].items.scores == (100.0, 0.0, 0.0)
        assert got[name].value == pytest.approx(100 / 3)
    for name in ("gen_generalization", "zsre_gen_generalization"):  # case c has no rephrase
        assert got[name].items.ids == ("a", "b")
        assert got[name].items.scores == (0.0, 0.0)

    contains = generation_metrics(lm, CASES, ["gen_efficacy", "gen_generalization"],
                                  GenerationRule(match="contains"), batch_size)
    assert contains["gen_efficacy"].items.scores == (100.0, 0.0, 0.0)
    assert contains["gen_generalization"].items.scores == (50.0, 100.0)
    assert contains["gen_generalization"].value == pytest.approx(75.0)

    no_stop = generation_metrics(lm, CASES, ["gen_efficacy"], GenerationRule(stop=()), batch_size)
    assert no_stop["gen_efficacy"].items.scores == (100.0, 100.0, 100.0)  # "\npiano", " Sega\nSammy"


def test_early_end_keeps_the_values_and_saves_steps():
    full_lm, early_lm = scripted_lm(SCRIPTS), scripted_lm(SCRIPTS)
    for rule in (GenerationRule(), GenerationRule(match="contains", stop=())):
        full = generation_metrics(full_lm, CASES, GENERATION_METRICS, rule, 1, texts={})
        early = generation_metrics(early_lm, CASES, GENERATION_METRICS, rule, 1)
        assert {k: v.items for k, v in full.items()} == {k: v.items for k, v in early.items()}
    assert early_lm.model.calls < full_lm.model.calls


def test_max_new_tokens_bounds_the_continuation():
    lm = scripted_lm(SCRIPTS)
    texts: dict[str, str] = {}
    rule = GenerationRule(max_new_tokens=5, stop=())
    got = generation_metrics(lm, CASES, ["gen_efficacy"], rule, texts=texts)
    assert texts["The mother tongue of Danielle Darrieux is"] == " Engl"  # 5 byte tokens
    assert texts["BBC One, by"] == " Sega"
    assert got["gen_efficacy"].items.scores == (0.0, 0.0, 0.0)


def test_prompt_is_encoded_as_the_teacher_forced_scorer_encodes_it():
    lm = scripted_lm(SCRIPTS)
    greedy_continuations(lm.model, lm.tokenizer, [c.prompt for c in CASES])
    expected = [encode_pair(lm.tokenizer, c.prompt, c.target_new)[0] for c in CASES]
    assert sorted(lm.model.seen) == sorted(expected)
    assert all(ids[0] == 257 for ids in lm.model.seen)  # the BOS of a BOS-adding tokenizer


def test_each_distinct_prompt_is_generated_once():
    lm = scripted_lm(SCRIPTS)
    out = greedy_continuations(lm.model, lm.tokenizer, ["BBC One, by", "Toko Yasuda, the", "BBC One, by"])
    assert out == [" Sega", "", " Sega"]
    assert len(lm.model.seen) == 2


def test_evaluate_editing_dispatches_generation_metrics():
    assert set(GENERATION_METRICS) <= set(ALL_METRICS)
    lm = scripted_lm(SCRIPTS)
    got = evaluate_editing(lm, CASES, ("gen_efficacy", "gen_generalization"), batch_size=2,
                           generation=GenerationRule(match="contains"))
    assert set(got) == {"gen_efficacy", "gen_generalization"}
    assert got["gen_generalization"].items.scores == (50.0, 100.0)
    default = evaluate_editing(lm, CASES, ("gen_efficacy",))
    assert default["gen_efficacy"].items.scores == (100.0, 0.0, 0.0)


def test_target_without_words_is_a_data_error():
    bad = [EditRequest("z", "BBC One, by", "BBC One", "?!", "BBC")]
    with pytest.raises(DataError, match="record z.*target_new"):
        generation_metrics(scripted_lm(SCRIPTS), bad, ["gen_efficacy"])


def test_unknown_generation_metric():
    with pytest.raises(ValueError, match="unknown generation metric"):
        generation_metrics(scripted_lm(SCRIPTS), CASES, ["gen_fluency"])
