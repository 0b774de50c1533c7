"""The default (fast) evaluation paths against the reference paths they replace and a direct
computation (docs/performance.md, checkpoint evaluation).

- benchmark.core.scoring: which rows are run (prefix sharing) and how they are batched,
  stated by hand; scores against one unpadded forward pass per sequence (no tokenizer, no
  batching); errors for a sequence with nothing to score.
- benchmark.evaluation.editing / general: ``reference=True`` keeps the original
  implementation callable; on the tiny models both give the same rates and counts and
  magnitudes / perplexities equal within float tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.core.requests import EditRequest
from benchmark.core.scoring import _rows, length_batches, score_continuations
from benchmark.evaluation.editing import COUNTERFACT_METRICS, ZSRE_METRICS, evaluate_editing
from benchmark.evaluation.general import evaluate_tasks

from .test_editing import REQUESTS as EDIT_REQUESTS

REL = 1e-5  # float32 forward passes of differently shaped batches


pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_share_prefixes():
    inputs = [(1, 2), (1, 2, 3), (4,), (1, 2), (1, 5), (4, 6, 7), (1,)]
    rows, owner = _rows(inputs)
    assert sorted(rows) == [(1, 2, 3), (1, 5), (4, 6, 7)]
    # (1,) is a prefix of two rows: it reads from its successor in sorted order, (1, 2) -> (1, 2, 3)
    assert [rows[o] for o in owner] == [(1, 2, 3), (1, 2, 3), (4, 6, 7), (1, 2, 3), (1, 5),
                                        (4, 6, 7), (1, 2, 3)]


@pytest.mark.parametrize(("lengths", "batch_size", "tokens", "expected"), [
    ([3, 9, 5, 9, 1], 2, 100, [[1, 3], [2, 0], [4]]),
    ([3, 9, 5, 9, 1], 8, 20, [[1, 3], [2, 0, 4]]),
    ([300, 200, 10], 8, 512, [[0], [1, 2]]),
    ([], 4, 512, []),
])
def test_length_batches(lengths, batch_size, tokens, expected):
    assert length_batches(lengths, batch_size, tokens) == expected


def test_scores_match_one_unpadded_pass_per_sequence(lm):
    gen = torch.Generator().manual_seed(0)
    vocab = lm.model.config.vocab_size
    base = torch.randint(0, vocab, (40,), generator=gen).tolist()
    seqs = [base[:12], base[:12], base[:9], base[:30], base[5:20], base[:2], base[:40], base[3:4] + base[:6]]
    starts = [10, 11, 5, 29, 3, 1, 20, 2]
    got = score_continuations(lm.model, seqs, starts, batch_size=3)
    assert got.n_tokens.tolist() == [len(s) - st for s, st in zip(seqs, starts)]
    for i, (s, st) in enumerate(zip(seqs, starts)):
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([s])).logits[0].double(), -1)
        rows = logp[st - 1:len(s) - 1]
        tgt = torch.tensor(s[st:])
        want = float(rows.gather(1, tgt[:, None]).sum())
        assert float(got.logprob_sum[i]) == pytest.approx(want, rel=REL, abs=1e-4)
        assert got.token_correct[i].tolist() == (rows.argmax(-1) == tgt).tolist()


@pytest.mark.parametrize(("seq", "start"), [([1, 2, 3], 0), ([1, 2, 3], 3), ([1], 1)])
def test_nothing_to_score_is_an_error(lm, seq, start):
    with pytest.raises(ValueError, match=f"sequence 1: nothing to score from {start} in {len(seq)} tokens"):
        score_continuations(lm.model, [[1, 2], seq], [1, start])


# an efficacy prompt reused as a locality prompt: one distinct pair scored once
REQUESTS = EDIT_REQUESTS + [
    EditRequest("d", "BBC One, by", "BBC One", "Sega", "BBC", rephrase_prompts=("BBC One is owned by",),
                locality=(("The mother tongue of Danielle Darrieux is", "French"),)),
]


def _assert_equal_within_tolerance(fast: dict, ref: dict) -> None:
    assert fast.keys() == ref.keys()
    for k in ref:
        assert fast[k].n == ref[k].n, k
        assert fast[k].value == pytest.approx(ref[k].value, rel=REL, abs=1e-9), k
        if ref[k].stderr is None:
            assert fast[k].stderr is None, k
        else:
            assert fast[k].stderr == pytest.approx(ref[k].stderr, rel=REL, abs=1e-9), k


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_editing_default_path_equals_reference(lm, batch_size):
    metrics = COUNTERFACT_METRICS + ZSRE_METRICS
    fast = evaluate_editing(lm, REQUESTS, metrics, batch_size=batch_size)
    ref = evaluate_editing(lm, REQUESTS, metrics, batch_size=batch_size, reference=True)
    assert set(ref) == set(metrics)
    _assert_equal_within_tolerance(fast, ref)


def test_tasks_default_path_equals_reference(lm):
    tasks = {"wikitext_heldout": 2, "known_facts": 6, "prune_reasoning": 3}
    fast = evaluate_tasks(lm, list(tasks), limit=tasks, batch_size=16)
    ref = evaluate_tasks(lm, list(tasks), limit=tasks, batch_size=16, reference=True)
    assert fast.task_hashes == ref.task_hashes
    for task in tasks:
        _assert_equal_within_tolerance(fast[task], ref[task])
    # generation: the same text per document
    by_doc = {t: {s["doc_id"]: s["filtered_resps"] for s in ref.samples[t]} for t in tasks}
    assert {s["doc_id"]: s["filtered_resps"] for s in fast.samples["prune_reasoning"]} == \
        by_doc["prune_reasoning"]
    word_ppl = fast["wikitext_heldout"]["word_perplexity"].value
    assert math.isfinite(word_ppl) and word_ppl > 1
