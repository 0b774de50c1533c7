"""Editing metrics on tiny random models against a direct computation of the probabilities.

The direct computation never uses the tokenizer or benchmark.core.scoring: the tiny models use a
byte vocabulary (id = byte value, <bos> = 257), so the ids of a prompt are its UTF-8 bytes
(after <bos> for tiny-llama, whose tokenizer adds one; tiny-gpt2's does not) and the ids
of a target are the bytes of " " + target. One unpadded forward pass over the concatenated
ids, log_softmax, and the target tokens' log-probs give P = exp(mean log-prob).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core.requests import EditRequest
from benchmark.evaluation import editing
from benchmark.evaluation.editing import evaluate_editing

BOS = 257


pytestmark = pytest.mark.usefixtures("one_thread")


REQUESTS = [
    EditRequest("a", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English", "French",
                rephrase_prompts=("Danielle Darrieux speaks", "Where Danielle Darrieux lives, people speak"),
                locality=(("Michel Rocard is a native speaker of", "French"),)),
    EditRequest("b", "Toko Yasuda, the", "Toko Yasuda", "piano", "guitar",
                rephrase_prompts=("Toko Yasuda is incredible at",),
                locality=(("John Lennon performs on the", "guitar"), ("Jimi Hendrix plays the", "guitar"))),
    EditRequest("c", "BBC One, by", "BBC One", "Sega", "BBC",
                rephrase_prompts=("BBC One is owned by",),
                locality=(("BBC Radio, by", "BBC"),)),
]


def direct_ids(lm, prompt: str, target: str) -> tuple[list[int], list[int]]:
    ctx = ([BOS] if lm.arch.adds_bos else []) + list(prompt.encode())
    return ctx, list((" " + target).encode())


def direct_token_logprobs(lm, prompt: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    ctx, tgt = direct_ids(lm, prompt, target)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ctx + tgt])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1).numpy()
    rows = [len(ctx) - 1 + j for j in range(len(tgt))]
    lp = np.array([logp[r, t] for r, t in zip(rows, tgt)])
    hits = np.array([logp[r].argmax() == t for r, t in zip(rows, tgt)], dtype=float)
    return lp, hits


def direct_p(lm, prompt: str, target: str) -> float:
    lp, _ = direct_token_logprobs(lm, prompt, target)
    return math.exp(lp.mean())


def sem(xs) -> float:
    xs = np.asarray(xs, dtype=float)
    return float(xs.std(ddof=1) / math.sqrt(len(xs)))


def check(metric, values):
    values = np.asarray(values, dtype=float) * 100
    assert metric.n == len(values)
    assert metric.value == pytest.approx(values.mean(), rel=1e-4, abs=1e-6)
    assert metric.stderr == pytest.approx(sem(values), rel=1e-4, abs=1e-6)


def test_tokenizer_bos_convention(lm):
    ids = lm.tokenizer("Hi", add_special_tokens=True)["input_ids"]
    assert ids == ([BOS] if lm.arch.adds_bos else []) + list(b"Hi")
    assert lm.tokenizer(" x", add_special_tokens=False)["input_ids"] == list(b" x")


def test_counterfact_metrics_match_direct_probabilities(lm):
    got = evaluate_editing(lm, REQUESTS, editing.COUNTERFACT_METRICS, batch_size=2)
    eff = [(direct_p(lm, r.prompt, r.target_new), direct_p(lm, r.prompt, r.target_true)) for r in REQUESTS]
    check(got["efficacy"], [float(n > t) for n, t in eff])
    check(got["efficacy_magnitude"], [n - t for n, t in eff])
    gen_s, gen_m = [], []
    for r in REQUESTS:  # per case: mean over its rephrase prompts
        pairs = [(direct_p(lm, p, r.target_new), direct_p(lm, p, r.target_true)) for p in r.rephrase_prompts]
        gen_s.append(np.mean([float(n > t) for n, t in pairs]))
        gen_m.append(np.mean([n - t for n, t in pairs]))
    check(got["generalization"], gen_s)
    check(got["generalization_magnitude"], gen_m)
    loc_s, loc_m = [], []
    for r in REQUESTS:  # the locality prompt's own answer against the new target
        pairs = [(direct_p(lm, p, ans), direct_p(lm, p, r.target_new)) for p, ans in r.locality]
        loc_s.append(np.mean([float(a > n) for a, n in pairs]))
        loc_m.append(np.mean([a - n for a, n in pairs]))
    check(got["locality"], loc_s)
    check(got["locality_magnitude"], loc_m)
    # the single-metric functions agree with the runner entry point
    assert editing.counterfact_efficacy(lm, REQUESTS, batch_size=3).value == pytest.approx(got["efficacy"].value)


def test_bos_is_never_part_of_a_target(lm):
    """Scoring with a BOS glued to the target (the bug) differs from the metric for tiny-llama."""
    r = REQUESTS[0]
    got = editing.counterfact_efficacy_magnitude(lm, [r]).value
    ctx, tgt = direct_ids(lm, r.prompt, r.target_new)
    assert tgt[0] != BOS
    if lm.arch.adds_bos:
        def buggy_p(target):
            c = [BOS] + list(r.prompt.encode())
            t = [BOS] + list((" " + target).encode())
            with torch.no_grad():
                logp = torch.log_softmax(lm.model(input_ids=torch.tensor([c + t])).logits[0].double(), -1)
            return math.exp(np.mean([float(logp[len(c) - 1 + j, x]) for j, x in enumerate(t)]))
        buggy = 100 * (buggy_p(r.target_new) - buggy_p(r.target_true))
        right = 100 * (direct_p(lm, r.prompt, r.target_new) - direct_p(lm, r.prompt, r.target_true))
        assert got == pytest.approx(right, rel=1e-4, abs=1e-7)
        assert abs(buggy - right) > 1e-6


def test_results_do_not_depend_on_batch_size(lm):
    a = evaluate_editing(lm, REQUESTS, ("efficacy_magnitude", "locality_magnitude"), batch_size=1)
    b = evaluate_editing(lm, REQUESTS, ("efficacy_magnitude", "locality_magnitude"), batch_size=8)
    for k in a:
        assert a[k].value == pytest.approx(b[k].value, rel=1e-4, abs=1e-6)


def test_zsre_token_accuracy(lm):
    reqs = [
        EditRequest("0", "What is the product made by UniFirst?", "UniFirst", "unmanned aircraft", "uniform",
                    rephrase_prompts=("What will be the product of UniFirst?",),
                    locality=(("nq question: who plays the cat in the hat movie", "Mike Myers"),)),
        EditRequest("1", "Which sex is Ada?", "Ada", "male", "female", rephrase_prompts=("Ada's sex?",),
                    locality=(("nq question: who wrote hamlet", "Shakespeare"),)),
    ]
    got = evaluate_editing(lm, reqs, editing.ZSRE_METRICS)
    check(got["zsre_efficacy"], [direct_token_logprobs(lm, r.prompt, r.target_new)[1].mean() for r in reqs])
    check(got["zsre_generalization"],
          [direct_token_logprobs(lm, r.rephrase_prompts[0], r.target_new)[1].mean() for r in reqs])
    check(got["zsre_locality"],
          [direct_token_logprobs(lm, *r.locality[0])[1].mean() for r in reqs])


def test_mquake_multihop(lm):
    from benchmark.data.loaders import MquakeCase

    cases = [
        MquakeCase("1", (), ("Who is the head of state of France?", "Who leads France?"), "Macron",
                   ("Emmanuel Macron",), "Merkel", ("Angela Merkel", "A. Merkel")),
        MquakeCase("2", (), ("What is the capital of Italy?",), "Rome", (), "Duluth", ("Duluth, MN",)),
        MquakeCase("3", (), ("Which language is spoken in Peru?",), "Spanish", ("Castilian",), "English", ()),
    ]
    got = editing.mquake_multihop(lm, cases, batch_size=3)
    expect = []
    for c in cases:
        ok = []
        for q in c.questions:
            p = f"Q: {q} A:"
            new = max(direct_p(lm, p, a) for a in (c.new_answer, *c.new_answer_alias))
            old = max(direct_p(lm, p, a) for a in (c.answer, *c.answer_alias))
            ok.append(new > old)
        expect.append(float(any(ok)))
    check(got, expect)


# --------------------------------------------------------------------------- fluency / consistency
def test_ngram_entropy_formula():
    from benchmark.evaluation.fluency import fluency_score, ngram_entropy

    toks = "a b a b".split()
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))  # (a,b) twice, (b,a) once
    assert ngram_entropy(toks, 2) == pytest.approx(h2)
    assert ngram_entropy(toks, 3) == pytest.approx(1.0)  # (a,b,a), (b,a,b)
    # words a b , a b: 2-grams (a,b) x2, (b,","), (",",a); 3-grams all distinct (3)
    assert fluency_score("A b, a b") == pytest.approx(
        (2 / 3 * -sum(p * math.log2(p) for p in [0.5, 0.25, 0.25]) + 4 / 3 * math.log2(3)) / 2)
    assert fluency_score("same same same same") == 0.0


def test_sampling_is_seeded_and_batch_independent(lm):
    from benchmark.evaluation.fluency import sample_texts

    prompts = ["The capital of France is", "Hi", "Danielle Darrieux speaks"]
    a = sample_texts(lm.model, lm.tokenizer, prompts, max_new_tokens=12, seed=3, batch_size=3)
    b = sample_texts(lm.model, lm.tokenizer, prompts, max_new_tokens=12, seed=3, batch_size=1)
    c = sample_texts(lm.model, lm.tokenizer, prompts, max_new_tokens=12, seed=4, batch_size=3)
    assert a == b
    assert a != c


def test_top1_sampling_equals_direct_greedy_decoding(lm):
    from benchmark.evaluation.fluency import sample_texts

    prompts = ["The capital of France is", "Hi"]  # different lengths: left padding in the batch
    got = sample_texts(lm.model, lm.tokenizer, prompts, max_new_tokens=8, top_k=1, batch_size=2)
    for prompt, text in zip(prompts, got):
        ids = ([BOS] if lm.arch.adds_bos else []) + list(prompt.encode())
        new = []
        for _ in range(8):  # no cache, no padding
            with torch.no_grad():
                nxt = int(lm.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            new.append(nxt)
        assert text == lm.tokenizer.decode(new, skip_special_tokens=True)


def test_fluency_metric_uses_generation_prompts(lm):
    r = EditRequest("x", "Toko Yasuda, the", "Toko Yasuda", "piano", "guitar",
                    extra=(("generation_prompts", ("Toko Yasuda is", "Toko Yasuda plays")),))
    assert editing.generation_prompts(r) == ("Toko Yasuda is", "Toko Yasuda plays")
    assert editing.generation_prompts(REQUESTS[0]) == (REQUESTS[0].prompt,)
    from benchmark.evaluation.fluency import fluency_score, sample_texts

    m = editing.fluency(lm, [r, REQUESTS[1]], seed=0, max_new_tokens=10)
    texts = sample_texts(lm.model, lm.tokenizer, ["Toko Yasuda is", "Toko Yasuda plays", REQUESTS[1].prompt],
                         max_new_tokens=10, seed=0)
    prompts = ["Toko Yasuda is", "Toko Yasuda plays", REQUESTS[1].prompt]
    # ROME's form (the default): prompt + continuation, case kept
    rome = [fluency_score(p + t, lowercase=False) for p, t in zip(prompts, texts)]
    assert m.n == 2 and m.value == pytest.approx(np.mean([(rome[0] + rome[1]) / 2, rome[2]]))
    # the continuation alone, lower-cased (what the suite recorded before the setting existed)
    cont = editing.fluency(lm, [r, REQUESTS[1]], seed=0, max_new_tokens=10,
                           scored="continuation", lowercase=True)
    low = [fluency_score(t.lower(), lowercase=False) for t in texts]
    assert cont.value == pytest.approx(np.mean([(low[0] + low[1]) / 2, low[2]]))


def test_tfidf_cosine_matches_sklearn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from benchmark.evaluation.consistency import TfidfModel

    vocab = {"paris": 0, "france": 1, "capital": 2, "the": 3, "city": 4}
    idf = np.array([2.5, 1.7, 1.2, 0.1, 1.9])
    model = TfidfModel(vocab, idf)
    vec = TfidfVectorizer(vocabulary=vocab)
    vec.idf_ = idf
    a, b = "The capital of France is Paris, the city", "Paris is a city; France's capital city"
    ea, eb = vec.transform([a, b]).toarray()
    assert model.cosine(a, b) == pytest.approx(float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb)))
    assert model.cosine("nothing known", b) == 0.0


def test_consistency_is_skipped_with_a_note_without_the_tfidf_files(caplog):
    from benchmark.evaluation.consistency import unavailable_reason

    note = unavailable_reason()
    assert note is not None and "consistency skipped" in note and "rome-idf" in note
    lm = models.load("tiny-gpt2")
    with caplog.at_level(logging.WARNING):
        out = evaluate_editing(lm, REQUESTS[:1], ("efficacy", "consistency"))
    assert "consistency" not in out and "efficacy" in out
    assert "consistency skipped" in caplog.text


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown editing metric"):
        evaluate_editing(None, [], ("efficacy_typo",))


def test_mquake_from_flat_requests_in_runner_entry(tmp_path):
    import json

    from benchmark.data import load_mquake_cases, load_requests

    case = {"case_id": 1, "requested_rewrite": [
        {"prompt": "{} was performed by", "subject": "Hey Jude", "target_new": {"str": "Madonna"},
         "target_true": {"str": "The Beatles"}, "question": "Who performed Hey Jude?"}],
        "questions": ["Who performed Hey Jude?", "Hey Jude's performer?"], "answer": "The Beatles",
        "answer_alias": ["Beatles"], "new_answer": "Madonna", "new_answer_alias": []}
    path = tmp_path / "mq.json"
    path.write_text(json.dumps([case, {**case, "case_id": 2, "questions": ["Who sang Hey Jude?"]}]))
    lm = models.load("tiny-gpt2")
    got = evaluate_editing(lm, load_requests(path=path, format="mquake"), ("mquake_multihop",))
    want = editing.mquake_multihop(lm, load_mquake_cases(path=path))
    assert got["mquake_multihop"] == want and want.n == 2
