"""Paired comparison of two model states evaluated on the same items.

Two states ``a`` (the reference: the unedited model, or the unrestrained variant) and ``b``
are compared item by item after :func:`align` has matched their items by id. The change is
``delta = statistic(b) - statistic(a)`` with a two-sided interval at ``confidence``:

- ``paired-bootstrap``: item indices are resampled with replacement once per replicate and
  the statistic is applied to both states with the same indices (``numpy`` Generator
  PCG64(seed)); the interval is the percentile interval of the replicate deltas. It works
  for every statistic, the ratio ones (perplexity, bits per byte) included. No p-value.
- ``paired-t``: Student's paired t (:func:`scipy.stats.ttest_rel`) and the t interval of
  the mean difference, for ``mean`` statistics over non-binary scores.
- ``mcnemar-exact``: the exact McNemar test (a two-sided binomial test of the discordant
  pairs, :func:`scipy.stats.binomtest`) for ``mean`` statistics over binary scores (every
  score of both states in {0, 1} or in {0, 100}), with the paired-bootstrap interval of
  the difference in rates.

:func:`compare` chooses by that rule (:func:`choose_method`). A comparison is
``significant`` when its interval excludes 0 and, where a test gives a p-value, also
p < 1 - confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from benchmark.evaluation import STATISTICS, Items

#: Resampled indices drawn at once (bounds the bootstrap's memory on large tasks).
_CHUNK = 1 << 22

Method = Literal["paired-bootstrap", "paired-t", "mcnemar-exact"]
METHODS: tuple[Method, ...] = ("paired-bootstrap", "paired-t", "mcnemar-exact")


@dataclass(frozen=True)
class PairedSettings:
    """Named settings of every paired comparison."""

    confidence: float = 0.95  #: two-sided level of the intervals
    n_boot: int = 2000  #: bootstrap replicates
    seed: int = 0  #: seed of the bootstrap's PCG64 generator

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be positive, got {self.n_boot}")


#: The default settings (the suite's published tables use these).
PAIRED_DEFAULTS = PairedSettings()


@dataclass(frozen=True)
class Paired:
    """Two states' scores (and weights) on the same items, in the same order."""

    ids: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    a_weights: np.ndarray | None
    b_weights: np.ndarray | None
    statistic: str

    def __post_init__(self):
        n = len(self.ids)
        arrays = [self.a, self.b] + [w for w in (self.a_weights, self.b_weights) if w is not None]
        if any(len(x) != n for x in arrays):
            raise ValueError(f"paired arrays differ in length from the {n} item ids")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}")
        if self.statistic != "mean" and (self.a_weights is None or self.b_weights is None):
            raise ValueError(f"statistic {self.statistic!r} needs weights for both states")

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Comparison:
    """``delta = statistic(b) - statistic(a)`` with its interval ``[ci_low, ci_high]`` at
    ``confidence``; ``p_value`` is None for the bootstrap (no test)."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float | None
    method: Method
    n_items: int
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 and, where there is a p-value, p < 1 - confidence."""
        if not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            return False
        excludes = self.ci_low > 0 or self.ci_high < 0
        if self.p_value is None:
            return excludes
        return excludes and self.p_value < 1 - self.confidence


def _unique(ids: Sequence[str], which: str) -> dict[str, int]:
    pos: dict[str, int] = {}
    for i, x in enumerate(ids):
        if x in pos:
            raise ValueError(f"item id {x!r} appears twice in state {which}")
        pos[x] = i
    return pos


def align(a: Items, b: Items) -> Paired:
    """The items both states scored (matched by id, in ``a``'s order). Raises ValueError
    when the statistics differ or an id repeats within a state."""
    if a.statistic != b.statistic:
        raise ValueError(f"cannot pair statistic {a.statistic!r} with {b.statistic!r}")
    _unique(a.ids, "a")
    pos_b = _unique(b.ids, "b")
    ia = [i for i, x in enumerate(a.ids) if x in pos_b]
    ib = [pos_b[a.ids[i]] for i in ia]

    def take(values: Sequence[float] | None, idx: list[int]) -> np.ndarray | None:
        return None if values is None else np.asarray(values, dtype=float)[idx]

    return Paired(ids=tuple(a.ids[i] for i in ia), a=take(a.scores, ia), b=take(b.scores, ib),
                  a_weights=take(a.weights, ia), b_weights=take(b.weights, ib),
                  statistic=a.statistic)


def statistic_rows(statistic: str, scores: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """:func:`benchmark.evaluation.statistic_value` along the last axis (one value per row)."""
    if statistic == "mean":
        return scores.mean(axis=-1)
    ratio = -scores.sum(axis=-1) / weights.sum(axis=-1)
    if statistic == "bits_per_byte":
        return ratio / math.log(2)
    return np.exp(ratio)


def _values(p: Paired, idx: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    def w(x):
        return None if x is None else x[idx]

    return (statistic_rows(p.statistic, p.a[idx], w(p.a_weights)),
            statistic_rows(p.statistic, p.b[idx], w(p.b_weights)))


def point_delta(p: Paired) -> float:
    a, b = _values(p)
    return float(b - a)


def bootstrap_deltas(p: Paired, settings: PairedSettings = PAIRED_DEFAULTS) -> np.ndarray:
    """``n_boot`` replicate deltas; replicate r uses the r-th row of
    ``Generator(PCG64(seed)).integers(0, n, size=(n_boot, n))`` for both states."""
    if p.n == 0:
        return np.full(settings.n_boot, np.nan)
    rng = np.random.Generator(np.random.PCG64(settings.seed))
    out = np.empty(settings.n_boot)
    rows = max(1, _CHUNK // p.n)  # replicates per draw: bounded memory, the same stream
    for start in range(0, settings.n_boot, rows):
        stop = min(start + rows, settings.n_boot)
        a, b = _values(p, rng.integers(0, p.n, size=(stop - start, p.n)))
        out[start:stop] = b - a
    return out


def _percentile_interval(deltas: np.ndarray, confidence: float) -> tuple[float, float]:
    if not np.isfinite(deltas).all():
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(p: Paired, settings: PairedSettings = PAIRED_DEFAULTS) -> Comparison:
    """Percentile interval of the paired bootstrap; any statistic."""
    low, high = _percentile_interval(bootstrap_deltas(p, settings), settings.confidence)
    delta = point_delta(p) if p.n else math.nan
    return Comparison(delta, low, high, None, "paired-bootstrap", p.n, settings.confidence)


def paired_t(p: Paired, settings: PairedSettings = PAIRED_DEFAULTS) -> Comparison:
    """Paired t test of ``b - a`` and the t interval of the mean difference (``mean`` only).
    Identical differences give the degenerate interval [d, d] with p = 1 if d = 0, else 0."""
    if p.statistic != "mean":
        raise ValueError(f"paired t applies to mean statistics, not {p.statistic!r}")
    diff = p.b - p.a
    level = settings.confidence
    if p.n < 2:
        d = float(diff.mean()) if p.n else math.nan
        return Comparison(d, math.nan, math.nan, math.nan, "paired-t", p.n, level)
    d = float(diff.mean())
    if np.all(diff == diff[0]):
        return Comparison(d, d, d, 1.0 if d == 0 else 0.0, "paired-t", p.n, level)
    res = sps.ttest_rel(p.b, p.a)
    ci = res.confidence_interval(confidence_level=level)
    return Comparison(d, float(ci.low), float(ci.high), float(res.pvalue), "paired-t", p.n, level)


def binary_scale(scores: np.ndarray) -> float | None:
    """The success value (1 or 100) when every score is 0 or that value, else None."""
    values = set(np.unique(scores).tolist())
    for high in (1.0, 100.0):
        if values <= {0.0, high}:
            return high
    return None


def mcnemar_exact(p: Paired, settings: PairedSettings = PAIRED_DEFAULTS) -> Comparison:
    """Exact McNemar p (binomial test of the discordant pairs, 0.5 each way) with the
    paired-bootstrap interval of the difference in rates (binary ``mean`` scores only)."""
    high = binary_scale(np.concatenate([p.a, p.b])) if p.statistic == "mean" else None
    if high is None:
        raise ValueError("exact McNemar needs binary scores (all in {0, 1} or all in {0, 100})")
    gained = int(np.sum((p.a == 0) & (p.b == high)))
    lost = int(np.sum((p.a == high) & (p.b == 0)))
    pvalue = sps.binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
    boot = paired_bootstrap(p, settings)
    return Comparison(boot.delta, boot.ci_low, boot.ci_high, float(pvalue), "mcnemar-exact",
                      p.n, settings.confidence)


def choose_method(p: Paired) -> Method:
    """The documented rule: ratio statistics -> paired bootstrap; means of binary scores ->
    exact McNemar; other means -> paired t."""
    if p.statistic != "mean":
        return "paired-bootstrap"
    if p.n and binary_scale(np.concatenate([p.a, p.b])) is not None:
        return "mcnemar-exact"
    return "paired-t"


_BY_METHOD = {"paired-bootstrap": paired_bootstrap, "paired-t": paired_t,
              "mcnemar-exact": mcnemar_exact}


def compare(a: Items, b: Items, settings: PairedSettings = PAIRED_DEFAULTS,
            method: Method | None = None) -> Comparison:
    """Align ``a`` and ``b`` by item id and compare them by ``method`` (default:
    :func:`choose_method`)."""
    return compare_paired(align(a, b), settings, method)


def compare_paired(p: Paired, settings: PairedSettings = PAIRED_DEFAULTS,
                   method: Method | None = None) -> Comparison:
    """Compare aligned states by ``method`` (default: :func:`choose_method`)."""
    return _BY_METHOD[method or choose_method(p)](p, settings)
