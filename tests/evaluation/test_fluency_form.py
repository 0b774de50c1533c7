"""Fluency settings (benchmark.evaluation.fluency.generation_fluency): the scored text and
lower-casing, against a direct statement of ROME's n-gram entropy on hand-written words."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from benchmark.evaluation.fluency import generation_fluency


def _rome_entropy(tokens: list[str]) -> float:
    """ROME's compute_n_gram_entropy on given tokens: mean of (2/3)·H2 and (4/3)·H3 in bits."""
    out = []
    for n, w in ((2, 2 / 3), (3, 4 / 3)):
        grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        out.append(w * -sum(c / total * math.log2(c / total) for c in grams.values()))
    return sum(out) / 2


def test_default_scores_prompt_and_continuation_with_case_kept():
    # "The cat" + " the cat the" -> The cat the cat the (case kept: "The" != "the")
    got = generation_fluency("The cat", " the cat the")
    assert got == pytest.approx(_rome_entropy(["The", "cat", "the", "cat", "the"]))


def test_continuation_only_and_lowercase():
    assert generation_fluency("The cat", " the cat the", scored="continuation") == pytest.approx(
        _rome_entropy(["the", "cat", "the"]))
    assert generation_fluency("The cat", " the cat the", lowercase=True) == pytest.approx(
        _rome_entropy(["the", "cat", "the", "cat", "the"]))
    # lower-casing merges "The" and "the": fewer distinct n-grams, lower entropy
    assert generation_fluency("The cat", " the cat the", lowercase=True) < generation_fluency(
        "The cat", " the cat the")


def test_unknown_scored_text_is_refused():
    with pytest.raises(ValueError, match="scored"):
        generation_fluency("a", "b", scored="prompt")
