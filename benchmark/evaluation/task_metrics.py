"""Per-item scoring (``process_results``) and aggregations of the suite's lm-eval tasks.

The task YAMLs (tasks/lm_eval/*.yaml) name these through ``!function utils.<name>``; the
text rules (number extraction, SQuAD normalisation, ROUGE) are in
:mod:`benchmark.evaluation.text_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmark.evaluation import text_metrics as tm


# --------------------------------------------------------------------------- process_results
def results_prune_reasoning(doc: dict, results: list[str]) -> dict:
    return {"acc": int(tm.substring_match(doc["gold"], results[0]))}


def results_prune_summarization(doc: dict, results: list[str]) -> dict:
    prediction = results[0].split("DR:")[-1]
    scores = tm.rouge_f(prediction, doc["reference"])
    return {**scores, "rouge_mean": (scores["rouge1"] + scores["rouge2"] + scores["rougeL"]) / 3}


def results_prune_qa(doc: dict, results: list[str]) -> dict:
    prediction = results[0].split("Answer:")[-1].replace("\n", " ")
    return {"em": int(tm.any_span_exact_match(prediction, doc["answers"]))}


def results_prune_nli(doc: dict, results: list[str]) -> dict:
    said = tm.says_true_false(results[0].split("answer:")[-1])
    truth = 1 if doc["label"] == "entailment" else 0
    answered = said is not None
    correct = int(answered and said == truth)
    return {"acc": (correct, int(answered)), "acc_total": correct, "answered": int(answered)}


def results_gsm8k(doc: dict, results: list[str]) -> dict:
    return {"exact_match": int(tm.last_number(results[0]) == doc["gold"])}


def results_nq_closedbook(doc: dict, results: list[str]) -> dict:
    pred = tm.normalize_answer(results[0])
    return {"exact_match": int(any(pred == tm.normalize_answer(a) for a in doc["answers"]))}


def _argmax(lls: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(lls):
        if v > lls[best]:
            best = i
    return best


def results_glue(doc: dict, results: list[tuple[float, bool]]) -> dict:
    lls = [r[0] for r in results]
    pred, gold = _argmax(lls), int(doc["gold"])
    return {"acc": int(pred == gold), "f1": (gold, pred), "mcc": (gold, pred)}


def results_known_facts(doc: dict, results: list[tuple[float, bool]]) -> dict:
    ll_true, ll_false = results[0][0], results[1][0]
    return {"acc": int(ll_true > ll_false), "margin": ll_true - ll_false}


# --------------------------------------------------------------------------- aggregations
def agg_ratio(items: list[tuple[int, int]]) -> float:
    """sum(numerators) / sum(denominators); NaN when the denominator is 0."""
    num = sum(a for a, _ in items)
    den = sum(b for _, b in items)
    return num / den if den else math.nan


def agg_f1_weighted(items: list[tuple[int, int]]) -> float:
    """Support-weighted F1 over classes (sklearn ``average='weighted'``, AlphaEdit's f1)."""
    from sklearn.metrics import f1_score

    gold, pred = zip(*items)
    return float(f1_score(gold, pred, average="weighted", zero_division=0))


def agg_mcc(items: list[tuple[int, int]]) -> float:
    from sklearn.metrics import matthews_corrcoef

    gold, pred = zip(*items)
    return float(matthews_corrcoef(gold, pred))
