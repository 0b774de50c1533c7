"""Independent recomputation of PRUNE's four tasks, shared by the general-ability tests.

Prompts are rebuilt from the raw files, and SQuAD normalisation, span matching, the NLI
rule and ROUGE (a plain n-gram / LCS implementation) are written out directly, without
the suite's code.
"""

from __future__ import annotations

import csv
import json
import math
import re
import string
from collections import Counter
from pathlib import Path

import pytest

N = 20
PRUNE_TASKS = ["prune_reasoning", "prune_summarization", "prune_qa", "prune_nli"]
# ---------------------------------------------------------------- raw data, read directly
def raw_reasoning(root: Path, n: int) -> list[tuple[str, str]]:
    """(expected prompt, gold number) of the first n GSM8K problems."""
    out = []
    with open(root / "general/prune_tasks/test-reasoning.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            rationale, gold = rec["answer"].split("#### ")
            prompt = (f"Q: {rec['question']} A:Let's think step by step. {rationale} "
                      "Therefore, the answer (arabic numerals) is:")
            out.append((prompt, gold))
            if len(out) == n:
                break
    return out


def raw_summarization(root: Path, n: int) -> list[tuple[str, str]]:
    recs = json.loads((root / "general/prune_tasks/test-summarization.json").read_text(encoding="utf-8"))
    return [(r["dialogue"] + "\nTL;DR:", r["summary"]) for r in recs[:n]]


def raw_qa(root: Path, n: int) -> list[tuple[str, list[str]]]:
    out = []
    with open(root / "general/prune_tasks/test-OpenDomainQA.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            prompt = ("Refer to the passage below and answer the following question. "
                      f"Passage: {rec['output'][0]} Question: {rec['question']}. Answer:")
            out.append((prompt, rec["answer"]))
            if len(out) == n:
                break
    return out


def raw_nli(root: Path, n: int) -> list[tuple[str, str]]:
    with open(root / "general/prune_tasks/test-NLI.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))[1: n + 1]
    return [(f"{s1} entails the {s2}. True or False? answer:", label) for _, s1, s2, label in rows]


# ---------------------------------------------------------------- rules
def squad_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def any_span_match(output: str, answers: list[str]) -> int:
    pred = squad_normalize(output.split("Answer:")[-1].replace("\n", " "))
    words = pred.split(" ")
    golds = [squad_normalize(a) for a in answers]
    spans = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
    return int(any(g in spans for g in golds))


def nli_counts(outputs: list[str], labels: list[str]) -> tuple[int, int, int]:
    """(correct among answered, answered, total) under PRUNE's true/false substring rule."""
    correct = answered = 0
    for out, label in zip(outputs, labels):
        low = out.lower()
        said = "true" if "true" in low else "false" if "false" in low else None
        if said is None:
            continue
        answered += 1
        correct += int((said == "true") == (label == "entailment"))
    return correct, answered, len(outputs)


def _tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i: i + n]) for i in range(len(toks) - n + 1))


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_triplet(prediction: str, reference: str) -> tuple[float, float, float]:
    """ROUGE-1, ROUGE-2, ROUGE-L F1 (lower-cased alphanumeric tokens); <=1 char scores 0."""
    if len(prediction) <= 1:
        return 0.0, 0.0, 0.0
    p, r = _tokens(prediction), _tokens(reference)
    out = []
    for n in (1, 2):
        gp, gr = _ngrams(p, n), _ngrams(r, n)
        out.append(_f1(sum((gp & gr).values()), sum(gp.values()), sum(gr.values())))
    out.append(_f1(_lcs(p, r), len(p), len(r)))
    return out[0], out[1], out[2]


def output_of(sample: dict) -> str:
    resp = sample["filtered_resps"]
    return resp[0] if isinstance(resp, list) else resp


# ---------------------------------------------------------------- the check itself
def check_prune_results(result, root: Path, n: int) -> dict:
    """Assert lm-eval's numbers equal the plain recomputation; return the recomputed values."""
    by_id = {t: sorted(result.samples[t], key=lambda s: int(s["doc_id"])) for t in PRUNE_TASKS}
    for t in PRUNE_TASKS:
        assert len(by_id[t]) == n, t

    # reasoning: gold number is a substring of the output
    raw = raw_reasoning(root, n)
    for s, (prompt, _) in zip(by_id["prune_reasoning"], raw):
        assert s["arguments"][0][0] == prompt
    hits = [int(gold in output_of(s)) for s, (_, gold) in zip(by_id["prune_reasoning"], raw)]
    acc = sum(hits) / n
    assert result["prune_reasoning"]["acc"].value == pytest.approx(acc, abs=1e-12)
    assert result["prune_reasoning"]["acc"].n == n

    # summarization: mean of per-item (R1 + R2 + RL) / 3, and each mean
    raw_s = raw_summarization(root, n)
    triplets = []
    for s, (prompt, ref) in zip(by_id["prune_summarization"], raw_s):
        assert s["arguments"][0][0] == prompt
        triplets.append(rouge_triplet(output_of(s).split("DR:")[-1], ref))
    means = [sum(t[i] for t in triplets) / n for i in range(3)]
    got = result["prune_summarization"]
    assert got["rouge1"].value == pytest.approx(means[0], abs=1e-9)
    assert got["rouge2"].value == pytest.approx(means[1], abs=1e-9)
    assert got["rougeL"].value == pytest.approx(means[2], abs=1e-9)
    assert got["rouge_mean"].value == pytest.approx(sum(means) / 3, abs=1e-9)

    # open-domain QA: any-span exact match
    raw_q = raw_qa(root, n)
    for s, (prompt, _) in zip(by_id["prune_qa"], raw_q):
        assert s["arguments"][0][0] == prompt
    em = sum(any_span_match(output_of(s), ans) for s, (_, ans) in zip(by_id["prune_qa"], raw_q)) / n
    assert result["prune_qa"]["em"].value == pytest.approx(em, abs=1e-12)

    # NLI: accuracy over answered items, and over all items
    raw_n = raw_nli(root, n)
    for s, (prompt, _) in zip(by_id["prune_nli"], raw_n):
        assert s["arguments"][0][0] == prompt
    correct, answered, total = nli_counts([output_of(s) for s in by_id["prune_nli"]],
                                          [label for _, label in raw_n])
    got = result["prune_nli"]
    assert got["acc_total"].value == pytest.approx(correct / total, abs=1e-12)
    assert got["answered"].value == pytest.approx(answered / total, abs=1e-12)
    assert got["acc"].n == answered
    if answered:
        assert got["acc"].value == pytest.approx(correct / answered, abs=1e-12)
    else:
        assert math.isnan(got["acc"].value)
    return {"reasoning": acc, "rouge": means, "qa": em, "nli": (correct, answered, total)}
