"""Evaluation: editing metrics (editing.py) and general abilities through lm-eval (general.py).

Every metric returns :class:`MetricValue` (value, the number of items it averages over,
its standard error, and its per-item outputs :class:`Items`), which the cell turns into
result records and per-item sample rows; :func:`pooled` combines per-batch means into the
mean over all their items.

Per-item outputs are what paired statistics are computed from: two model states evaluated
on the same item ids are compared item by item (``benchmark.stats``). An item has an id
(a fact's case id, a task document's id), a score and, for ratio statistics such as
perplexity, a weight; the metric's value is :func:`statistic_value` of its items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

#: How a value is formed from per-item scores s_i and weights w_i:
#: ``mean``: mean(s); ``word_perplexity`` / ``byte_perplexity``: exp(-Σs / Σw) (s: a
#: document's log-likelihood, w: its words or bytes, as lm-eval's weighted perplexity);
#: ``bits_per_byte``: -Σs / Σw / ln 2.
STATISTICS = ("mean", "word_perplexity", "byte_perplexity", "bits_per_byte")

#: Statistics for which a larger value is worse (perplexity-type signals).
LOWER_IS_BETTER = frozenset({"word_perplexity", "byte_perplexity", "bits_per_byte"})


def statistic_value(statistic: str, scores: Sequence[float],
                    weights: Sequence[float] | None = None) -> float:
    """The value of ``statistic`` (one of :data:`STATISTICS`) over items."""
    if statistic == "mean":
        return sum(scores) / len(scores) if len(scores) else float("nan")
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; known: {', '.join(STATISTICS)}")
    if weights is None or len(weights) != len(scores):
        raise ValueError(f"statistic {statistic!r} needs one weight per item")
    total = sum(weights)
    if total <= 0:
        return float("nan")
    ratio = -sum(scores) / total
    if statistic == "bits_per_byte":
        return ratio / math.log(2)
    return math.exp(ratio)


@dataclass(frozen=True)
class Items:
    """Per-item outputs of one metric: ``ids[i]`` scored ``scores[i]`` (weight ``weights[i]``
    for ratio statistics); the metric's value is ``statistic`` over them."""

    ids: tuple[str, ...]
    scores: tuple[float, ...]
    weights: tuple[float, ...] | None = None
    statistic: str = "mean"

    def __post_init__(self):
        if len(self.ids) != len(self.scores):
            raise ValueError(f"{len(self.ids)} item ids for {len(self.scores)} scores")
        if self.weights is not None and len(self.weights) != len(self.scores):
            raise ValueError(f"{len(self.weights)} weights for {len(self.scores)} scores")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}")

    def value(self) -> float:
        return statistic_value(self.statistic, self.scores, self.weights)

    def to_dict(self) -> dict:
        return {"ids": list(self.ids), "scores": list(self.scores),
                "weights": None if self.weights is None else list(self.weights),
                "statistic": self.statistic}

    @classmethod
    def from_dict(cls, d: dict) -> Items:
        w = d.get("weights")
        return cls(ids=tuple(str(i) for i in d["ids"]), scores=tuple(float(s) for s in d["scores"]),
                   weights=None if w is None else tuple(float(x) for x in w),
                   statistic=d.get("statistic", "mean"))


@dataclass(frozen=True)
class MetricValue:
    value: float
    n: int
    stderr: float | None = None
    items: Items | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["items"] = None if self.items is None else self.items.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MetricValue:
        """The inverse of :meth:`to_dict`; an unknown field is a TypeError naming it."""
        if unknown := set(d) - {"value", "n", "stderr", "items"}:
            raise TypeError(f"MetricValue has no field(s) {', '.join(sorted(unknown))}")
        items = d.get("items")
        return cls(float(d["value"]), int(d["n"]), d.get("stderr"),
                   None if items is None else Items.from_dict(items))

    @classmethod
    def mean_of(cls, xs: Sequence[float], ids: Sequence[object] | None = None) -> MetricValue:
        """Mean with the standard error of the mean (sample std / sqrt(n)); the items keep
        each x under its id (``ids``: default the positions 0..n-1)."""
        n = len(xs)
        if ids is not None and len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} values")
        items = Items(ids=tuple(str(i) for i in (range(n) if ids is None else ids)),
                      scores=tuple(float(x) for x in xs))
        if n == 0:
            return cls(float("nan"), 0, None, items)
        mean = sum(xs) / n
        if n < 2:
            return cls(mean, n, None, items)
        var = sum((x - mean) ** 2 for x in xs) / (n - 1)
        return cls(mean, n, math.sqrt(var / n), items)


def as_metric_value(x: object) -> MetricValue:
    """A :class:`MetricValue` from an evaluator's output: a MetricValue, a dict with ``value``
    (and ``n``, ``stderr``, ``items``), an object with those attributes, or a bare number (n = 1)."""
    if isinstance(x, MetricValue):
        return x
    if isinstance(x, dict):
        return MetricValue.from_dict({"n": 1, **x})
    if hasattr(x, "value"):
        return MetricValue(float(x.value), int(getattr(x, "n", 1)), getattr(x, "stderr", None),
                           getattr(x, "items", None))
    return MetricValue(float(x), 1, None)


def _pooled_items(values: Sequence[MetricValue]) -> Items | None:
    if not values or any(v.items is None for v in values):
        return None
    stats = {v.items.statistic for v in values}
    if len(stats) != 1:
        return None
    weighted = [v.items.weights is not None for v in values]
    if any(weighted) and not all(weighted):
        return None
    return Items(ids=tuple(i for v in values for i in v.items.ids),
                 scores=tuple(s for v in values for s in v.items.scores),
                 weights=tuple(w for v in values for w in v.items.weights) if all(weighted) else None,
                 statistic=stats.pop())


def pooled(values: Sequence[MetricValue]) -> MetricValue:
    """Combine per-batch means into the mean over all items (exact pooled sample variance);
    the items are concatenated."""
    values = [v for v in values if v.n > 0 and v.value is not None and math.isfinite(v.value)]
    total = sum(v.n for v in values)
    items = _pooled_items(values)
    if total == 0:
        return MetricValue(float("nan"), 0, None, items)
    mean = sum(v.value * v.n for v in values) / total
    if total < 2 or any(v.n >= 2 and v.stderr is None for v in values):
        return MetricValue(mean, total, None, items)
    within = sum((v.n - 1) * (v.stderr ** 2) * v.n for v in values if v.n >= 2)
    between = sum(v.n * (v.value - mean) ** 2 for v in values)
    var = (within + between) / (total - 1)
    return MetricValue(mean, total, math.sqrt(var / total), items)
