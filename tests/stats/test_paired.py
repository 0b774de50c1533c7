"""benchmark.stats.paired against scipy and plain numpy / math statements of each formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.evaluation import Items, statistic_value
from benchmark.stats.paired import (
    Comparison,
    PairedSettings,
    align,
    choose_method,
    compare,
    mcnemar_exact,
    paired_bootstrap,
    paired_t,
)


def _items(scores, weights=None, statistic="mean", ids=None) -> Items:
    ids = ids if ids is not None else [f"i{k}" for k in range(len(scores))]
    return Items(ids=tuple(ids), scores=tuple(float(s) for s in scores),
                 weights=None if weights is None else tuple(float(w) for w in weights),
                 statistic=statistic)


def _resampled(x: Items, pick: list[int]) -> float:
    w = None if x.weights is None else [x.weights[i] for i in pick]
    return statistic_value(x.statistic, [x.scores[i] for i in pick], w)


def _loop_bootstrap(a: Items, b: Items, n_boot: int, seed: int, confidence: float):
    """The paired percentile bootstrap by a plain loop over replicates."""
    rng = np.random.Generator(np.random.PCG64(seed))
    n = len(a.scores)
    deltas = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        pick = [int(i) for i in idx]
        deltas.append(_resampled(b, pick) - _resampled(a, pick))
    tail = 100 * (1 - confidence) / 2
    return np.percentile(deltas, tail), np.percentile(deltas, 100 - tail)


def test_align_intersects_by_id_in_first_order():
    a = _items([1, 2, 3, 4], ids=["x", "y", "z", "w"])
    b = _items([30, 10, 50], ids=["z", "x", "q"])
    p = align(a, b)
    assert p.ids == ("x", "z")
    assert p.a.tolist() == [1.0, 3.0] and p.b.tolist() == [10.0, 30.0]


def test_align_refuses_mixed_statistics_and_repeated_ids():
    with pytest.raises(ValueError, match="cannot pair"):
        align(_items([1.0], [1.0], "word_perplexity"), _items([1.0]))
    with pytest.raises(ValueError, match="'x' appears twice in state b"):
        align(_items([1, 2], ids=["x", "y"]), _items([1, 2], ids=["x", "x"]))


@pytest.mark.parametrize("statistic", ["mean", "word_perplexity", "bits_per_byte"])
def test_bootstrap_equals_a_plain_loop(statistic):
    rng = np.random.default_rng(7)
    n = 23
    if statistic == "mean":
        sa, sb, w = rng.normal(5, 2, n), rng.normal(5.5, 2, n), None
    else:
        w = rng.integers(50, 300, n).astype(float)
        sa = -w * rng.uniform(3.5, 4.5, n)
        sb = sa - w * rng.uniform(0.0, 0.3, n)
    a, b = _items(sa, w, statistic), _items(sb, w, statistic)
    settings = PairedSettings(n_boot=400, seed=11, confidence=0.9)
    got = paired_bootstrap(align(a, b), settings)
    low, high = _loop_bootstrap(a, b, 400, 11, 0.9)
    assert got.ci_low == pytest.approx(low, rel=1e-12, abs=1e-12)
    assert got.ci_high == pytest.approx(high, rel=1e-12, abs=1e-12)
    assert got.delta == pytest.approx(b.value() - a.value(), rel=1e-12)
    assert got.p_value is None and got.method == "paired-bootstrap" and got.n_items == n


def test_bootstrap_agrees_with_scipy_paired_percentile_bootstrap():
    rng = np.random.default_rng(3)
    w = rng.integers(80, 200, 40).astype(float)
    sa = -w * rng.uniform(3.8, 4.2, 40)
    sb = sa - w * 0.05 + rng.normal(0, 3, 40)

    def delta(sa_, wa_, sb_, wb_, axis=-1):
        return (np.exp(-sb_.sum(axis) / wb_.sum(axis)) - np.exp(-sa_.sum(axis) / wa_.sum(axis)))

    ref = sps.bootstrap((sa, w, sb, w), delta, paired=True, vectorized=True, n_resamples=20000,
                        method="percentile", confidence_level=0.95, rng=np.random.default_rng(1))
    got = paired_bootstrap(align(_items(sa, w, "word_perplexity"), _items(sb, w, "word_perplexity")),
                           PairedSettings(n_boot=20000, seed=5))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    # two independent Monte Carlo runs of the same interval: agree to a few % of its width
    assert got.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert got.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)
    assert got.ci_low > 0 and got.significant


def test_paired_t_against_scipy_and_a_hand_interval():
    rng = np.random.default_rng(0)
    sa = rng.normal(70, 10, 30)
    sb = sa + rng.normal(-2, 4, 30)
    got = paired_t(align(_items(sa), _items(sb)))
    d = sb - sa
    n, mean, se = len(d), d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    q = sps.t.ppf(0.975, n - 1)
    assert got.delta == pytest.approx(mean, rel=1e-12)
    assert got.ci_low == pytest.approx(mean - q * se, rel=1e-10)
    assert got.ci_high == pytest.approx(mean + q * se, rel=1e-10)
    t = mean / se
    assert got.p_value == pytest.approx(2 * sps.t.sf(abs(t), n - 1), rel=1e-10)
    assert got.p_value == pytest.approx(sps.ttest_rel(sb, sa).pvalue, rel=1e-12)
    assert got.significant == (got.ci_high < 0 or got.ci_low > 0)


def test_paired_t_degenerate_differences():
    same = paired_t(align(_items([1.0, 2.0, 3.0]), _items([1.0, 2.0, 3.0])))
    assert (same.delta, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not same.significant
    shifted = paired_t(align(_items([1.0, 2.0, 3.0]), _items([1.5, 2.5, 3.5])))
    assert (shifted.ci_low, shifted.ci_high, shifted.p_value) == (0.5, 0.5, 0.0)
    assert shifted.significant
    single = paired_t(align(_items([1.0]), _items([2.0])))
    assert math.isnan(single.ci_low) and not single.significant


def _mcnemar_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar: twice the smaller binomial tail, capped at 1."""
    m = gained + lost
    k = min(gained, lost)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("high", [1.0, 100.0])
def test_mcnemar_against_binomial_pmf_sum(high):
    # 40 pairs: 20 both succeed, 5 both fail, 12 lost (a=1, b=0), 3 gained (a=0, b=1)
    a = [high] * 20 + [0] * 5 + [high] * 12 + [0] * 3
    b = [high] * 20 + [0] * 5 + [0] * 12 + [high] * 3
    p = align(_items(a), _items(b))
    assert choose_method(p) == "mcnemar-exact"
    got = mcnemar_exact(p, PairedSettings(n_boot=500, seed=2))
    assert got.p_value == pytest.approx(_mcnemar_p(3, 12), rel=1e-12)
    assert got.delta == pytest.approx(high * (3 - 12) / 40)
    boot = paired_bootstrap(p, PairedSettings(n_boot=500, seed=2))
    assert (got.ci_low, got.ci_high) == (boot.ci_low, boot.ci_high)
    assert got.method == "mcnemar-exact"


def test_mcnemar_no_discordant_pairs_and_refusal():
    got = mcnemar_exact(align(_items([1, 0, 1]), _items([1, 0, 1])))
    assert got.p_value == 1.0 and got.delta == 0 and not got.significant
    with pytest.raises(ValueError, match="binary"):
        mcnemar_exact(align(_items([1, 0.5]), _items([1, 0])))
    with pytest.raises(ValueError, match="binary"):  # mixed scales are not binary
        mcnemar_exact(align(_items([1, 100]), _items([0, 100])))


def test_method_rule():
    assert choose_method(align(_items([0, 1]), _items([1, 1]))) == "mcnemar-exact"
    assert choose_method(align(_items([0, 100]), _items([100, 100]))) == "mcnemar-exact"
    assert choose_method(align(_items([0.2, 1]), _items([1, 1]))) == "paired-t"
    assert choose_method(align(_items([-3.0], [2.0], "byte_perplexity"),
                               _items([-4.0], [2.0], "byte_perplexity"))) == "paired-bootstrap"
    c = compare(_items([0.2, 1, 3]), _items([1, 1, 4]), method="paired-bootstrap")
    assert c.method == "paired-bootstrap"


def test_significance_needs_both_interval_and_p():
    assert Comparison(1.0, 0.5, 1.5, 0.01, "paired-t", 10, 0.95).significant
    assert not Comparison(1.0, 0.5, 1.5, 0.2, "mcnemar-exact", 10, 0.95).significant
    assert not Comparison(1.0, -0.5, 1.5, 0.01, "mcnemar-exact", 10, 0.95).significant
    assert Comparison(-1.0, -1.5, -0.5, None, "paired-bootstrap", 10, 0.95).significant
    assert not Comparison(-1.0, math.nan, math.nan, None, "paired-bootstrap", 0, 0.95).significant


def test_settings_are_checked():
    with pytest.raises(ValueError, match="confidence"):
        PairedSettings(confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        PairedSettings(n_boot=0)


def test_bootstrap_in_chunks_draws_the_same_replicates(monkeypatch):
    from benchmark.stats import paired

    rng = np.random.default_rng(9)
    a, b = _items(rng.normal(0, 1, 50)), _items(rng.normal(0.3, 1, 50))
    whole = paired.bootstrap_deltas(align(a, b), PairedSettings(n_boot=101, seed=3))
    monkeypatch.setattr(paired, "_CHUNK", 7 * 50)  # 7 replicates per draw
    chunked = paired.bootstrap_deltas(align(a, b), PairedSettings(n_boot=101, seed=3))
    assert np.array_equal(whole, chunked)
