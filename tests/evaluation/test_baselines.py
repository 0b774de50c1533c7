"""The above-chance decision of results/baselines: the tails scipy computes agree with the
formulas written out in plain Python, and the per-task rules come from the task catalog."""

from __future__ import annotations

import math

import pytest

from benchmark.evaluation.baselines import binom_sf, decide, per_item, t_sf
from benchmark.evaluation.task_catalog import TASKS


def binom_tail(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p): the sum of the exact terms."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1))


def t_tail(t: float, df: int) -> float:
    """P(T > t) by the closed forms of Student's t for 1, 2 and 3 degrees of freedom."""
    if df == 1:
        return 0.5 - math.atan(t) / math.pi
    if df == 2:
        return 0.5 - t / (2 * math.sqrt(2 + t * t))
    if df == 3:
        u = t / math.sqrt(3)
        return 0.5 - (math.atan(u) + u / (1 + u * u)) / math.pi
    raise ValueError(df)


@pytest.mark.parametrize("n", [1, 10, 40, 80])
@pytest.mark.parametrize("p", [0.02, 0.25, 0.5, 0.9])
def test_binomial_tail_is_the_exact_sum(n, p):
    for k in range(-1, n + 2):
        assert binom_sf(k, n, p) == pytest.approx(binom_tail(k, n, p), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("df", [1, 2, 3])
def test_student_t_tail_matches_the_closed_forms(df):
    for t in (-6.0, -1.3, -0.1, 0.0, 0.4, 1.0, 2.5, 8.0):
        assert t_sf(t, df) == pytest.approx(t_tail(t, df), rel=1e-12)
    assert math.isnan(t_sf(1.0, 0))


def test_prune_nli_counts_acc_total_and_its_labels():
    """prune_nli's chance test counts acc_total (acc is over answered items only) and takes
    the majority share from the documents' labels."""
    info = TASKS.get("prune_nli")
    samples = [{"acc_total": c, "acc": (c, 1), "doc": {"label": lab}}
               for c, lab in [(1, "entailment"), (0, "not_entailment"), (1, "entailment"),
                              (1, "entailment")]]
    assert per_item(info, samples) == {"correct": 3, "n": 4, "majority_share": 0.75}
    d = decide(info, per_item(info, samples))
    assert d["reference"] == 0.75 and d["p_value"] == pytest.approx(binom_tail(3, 4, 0.75))
    mmlu = TASKS.get("mmlu")
    samples = [{"acc": c, "doc": {"gold": g}} for c, g in [(1, 0), (0, 1), (1, 2), (0, 3)]]
    assert per_item(mmlu, samples) == {"correct": 2, "n": 4, "majority_share": 0.25}


def test_score_kind_uses_a_one_sided_t_test():
    info = TASKS.get("prune_summarization")
    xs = [0.1, 0.2, 0.15]
    mean = sum(xs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / 2)
    d = decide(info, {"scores": xs})
    assert d["p_value"] == pytest.approx(t_tail((mean - 0.05) / (sd / math.sqrt(3)), 2), rel=1e-12)
