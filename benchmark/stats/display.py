"""How tables show numbers: decimals per kind of metric, value ± standard error, a change
with its interval, and a collapse point.

Rounding: spectrum figures (κ, σ) 1 decimal; perplexity-type statistics 2 decimals; means
on a 0-1 scale (every value within [-1, 1], e.g. accuracy) 3 decimals; other means (rates on
the 0-100 scale, magnitudes) 1 decimal. A non-zero value too small for its decimals, or of
magnitude 1e5 or more, is shown with 3 significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from benchmark.stats.collapse import lower_is_better

MISSING = "—"


def decimals(kind: str, metric: str, values: Iterable[float | None],
             statistic: str | None = None) -> int:
    """Decimals of one metric's numbers (the module's rounding rule)."""
    if kind == "spectrum":
        return 1
    if lower_is_better(metric, statistic):
        return 2
    if kind == "editing" and metric != "fluency":  # rates and magnitudes x100
        return 1
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return 3 if finite and max(finite) <= 1 else 1


def _missing(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def number(x: float | None, digits: int, sign: bool = False) -> str:
    if _missing(x):
        return MISSING
    plus = "+" if sign else ""
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 0.5 * 10 ** -digits):
        return f"{x:{plus}.3g}"
    return f"{x:{plus}.{digits}f}"


def widened(digits: int, *xs: float | None) -> int:
    """``digits``, or where the smallest non-zero of ``xs`` would show as 0, raised (by at
    most 3) until it shows two significant digits."""
    small = [abs(x) for x in xs if not _missing(x) and x != 0]
    if not small or min(small) >= 0.5 * 10 ** -digits:
        return digits
    need = 1 - math.floor(math.log10(min(small)))
    return min(max(digits, need), digits + 3)


def value_se(value: float | None, stderr: float | None, digits: int) -> str:
    """``value ± standard error`` (the error only where known), both to the same decimals."""
    digits = widened(digits, stderr)
    s = number(value, digits)
    if not _missing(value) and not _missing(stderr):
        s += f" ± {number(stderr, digits)}"
    return s


def change(delta: float | None, low: float | None, high: float | None, significant: bool,
           digits: int) -> str:
    """``+Δ [low, high]``, with ``*`` when significant."""
    if _missing(delta):
        return MISSING
    digits = widened(digits, low, high)
    s = number(delta, digits, sign=True)
    if not (_missing(low) or _missing(high)):
        s += f" [{number(low, digits)}, {number(high, digits)}]"
    return s + ("*" if significant else "")


def collapse_point(edits: float | None, reached: bool, interpolated: bool, by: int) -> str:
    """``≈37`` (interpolated), ``≤10`` (crossed at or before checkpoint 10: the first edited
    one, or one whose predecessor had crossed without a significant change),
    ``>50`` (not reached by the last checkpoint, 50)."""
    if not reached or _missing(edits):
        return f">{by}"
    return f"≈{edits:.0f}" if interpolated else f"≤{edits:.0f}"
