"""Evaluation: editing metrics (editing.py) and general abilities through lm-eval (general.py).

Every metric returns :class:`MetricValue` (value, the number of items it averages over,
and its standard error), which the cell turns into result records; :func:`pooled`
combines per-batch means into the mean over all their items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MetricValue:
    value: float
    n: int
    stderr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def mean_of(cls, xs: Sequence[float]) -> MetricValue:
        """Mean with the standard error of the mean (sample std / sqrt(n))."""
        n = len(xs)
        if n == 0:
            return cls(float("nan"), 0, None)
        mean = sum(xs) / n
        if n < 2:
            return cls(mean, n, None)
        var = sum((x - mean) ** 2 for x in xs) / (n - 1)
        return cls(mean, n, math.sqrt(var / n))


def as_metric_value(x: object) -> MetricValue:
    """A :class:`MetricValue` from an evaluator's output: a MetricValue, a dict with ``value``
    (and ``n``, ``stderr``), an object with those attributes, or a bare number (n = 1)."""
    if isinstance(x, MetricValue):
        return x
    if isinstance(x, dict):
        return MetricValue(float(x["value"]), int(x.get("n", 1)), x.get("stderr"))
    if hasattr(x, "value"):
        return MetricValue(float(x.value), int(getattr(x, "n", 1)), getattr(x, "stderr", None))
    return MetricValue(float(x), 1, None)


def pooled(values: Sequence[MetricValue]) -> MetricValue:
    """Combine per-batch means into the mean over all items (exact pooled sample variance)."""
    values = [v for v in values if v.n > 0 and v.value is not None and math.isfinite(v.value)]
    total = sum(v.n for v in values)
    if total == 0:
        return MetricValue(float("nan"), 0, None)
    mean = sum(v.value * v.n for v in values) / total
    if total < 2 or any(v.n >= 2 and v.stderr is None for v in values):
        return MetricValue(mean, total, None)
    within = sum((v.n - 1) * (v.stderr ** 2) * v.n for v in values if v.n >= 2)
    between = sum(v.n * (v.value - mean) ** 2 for v in values)
    var = (within + between) / (total - 1)
    return MetricValue(mean, total, math.sqrt(var / total))
