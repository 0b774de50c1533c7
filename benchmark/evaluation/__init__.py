"""Evaluation: editing metrics (editing.py) and general abilities through lm-eval (general.py).

Every metric returns :class:`MetricValue` (value, the number of items it averages over,
and its standard error), which the runner turns into result records.
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
