"""The calibration study's selection rules (:mod:`benchmark.studies.calibration`):
pure functions of its measurements, fixed before any run.

- **λ** (``mom2_update_weight``; MEMIT, sequential MEMIT, NSE): the largest λ of the grid
  whose mean efficacy and mean generalization are each within :data:`LAMBDA_MARGIN` (one
  fact in 20) of those of the best λ (the largest efficacy + generalization): the smallest
  update that still edits.
- **AlphaEdit threshold** (``absolute``, as released): the released 2e-2 unless its null
  space is degenerate at some edited layer (dimension below :data:`DEGENERATE_LOW` or above
  :data:`DEGENERATE_HIGH` of d_ffn); then the grid threshold nearest 2e-2 (log scale) whose
  null space is not degenerate at any edited layer. β (``L2``) is not swept.
- **NSE band** at the chosen λ (the SmolLM2 rule): ``alpha`` = the lower quartile of the
  residuals left after one pass, rounded down to one significant digit (below the leftover
  residual of most one-pass edits, so they get a second pass); ``upper_bound`` = twice the
  largest fresh ‖δ‖, rounded up to one significant digit. ``neuron_fraction`` stays 1.0.
  The rule presumes that one pass brings most requests closer to their targets than any
  fresh request is (``alpha`` below the smallest fresh ‖δ‖); where it does not, no band
  is chosen (``chosen`` holds None) and the confirmation runs the hparams file's band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from editors import solvers

LAMBDAS = (500.0, 2000.0, 8000.0, 15000.0, 1e5, 1e6, 1e7)
THRESHOLDS = (1e-3, 1e-2, 2e-2, 5e-2, 1e-1)  # null-space dimensions only (cheap)
ALPHAEDIT_THRESHOLDS = (1e-2, 2e-2, 5e-2)  # also edited
RELEASED_THRESHOLD = 2e-2
LAMBDA_MARGIN = 0.05
DEGENERATE_LOW, DEGENERATE_HIGH = 0.05, 0.95
ALPHA_QUANTILE = 0.25
UPPER_FACTOR = 2.0

RULES = {
    "lambda": f"the largest λ whose mean efficacy and mean generalization are each within "
              f"{LAMBDA_MARGIN} of those of the best λ (largest efficacy + generalization)",
    "threshold": f"absolute {RELEASED_THRESHOLD} (released) unless its null space is below "
                 f"{DEGENERATE_LOW:.0%} or above {DEGENERATE_HIGH:.0%} of d_ffn at some edited "
                 "layer; then the grid value nearest it (log scale) that is not degenerate at any layer",
    "nse_band": f"alpha = the {ALPHA_QUANTILE} quantile of the one-pass residuals at the chosen λ, "
                f"rounded down to one significant digit; upper_bound = {UPPER_FACTOR} x the largest "
                "fresh ‖δ‖, rounded up to one significant digit; neuron_fraction 1.0; applies only "
                "if alpha is below the smallest fresh ‖δ‖ (otherwise no band is chosen)",
}




def mean_of(rows: Sequence[dict], key: str) -> float:
    vals = [r[key] for r in rows if key in r]
    return sum(vals) / len(vals) if vals else float("nan")


def choose_lambda(rows: Sequence[dict], margin: float = LAMBDA_MARGIN) -> float:
    """The largest ``lambda`` of ``rows`` whose efficacy and generalization are each within
    ``margin`` of the best row's (largest efficacy + generalization; ties: the smaller λ)."""
    best = max(rows, key=lambda r: (r["efficacy"] + r["generalization"], -r["lambda"]))
    tol = 1e-9
    return max(r["lambda"] for r in rows
               if r["efficacy"] >= best["efficacy"] - margin - tol
               and r["generalization"] >= best["generalization"] - margin - tol)


def null_space_dims(eigenvalues: torch.Tensor, thresholds: Sequence[float],
                    kind: str = "absolute") -> dict[float, int]:
    """Null-space dimension per threshold, selected as AlphaEdit's projection selects it."""
    return {t: int(solvers.null_space_mask(eigenvalues, solvers.NullSpaceThreshold(kind, t)).sum())
            for t in thresholds}


def degenerate(dim: int, d: int) -> bool:
    return dim < DEGENERATE_LOW * d or dim > DEGENERATE_HIGH * d


def choose_threshold(dims: dict[int, dict[float, int]], d: int,
                     released: float = RELEASED_THRESHOLD) -> float:
    """``dims``: layer -> threshold -> null-space dimension (d = d_ffn)."""
    thresholds = sorted({t for per in dims.values() for t in per})

    def fine(t: float) -> bool:
        return all(not degenerate(per[t], d) for per in dims.values())

    if released in thresholds and fine(released):
        return released
    ok = [t for t in thresholds if t > 0 and fine(t)]
    if not ok:
        raise ValueError("every threshold of the grid gives a degenerate null space")
    return min(ok, key=lambda t: abs(math.log(t / released)))


def _one_digit(x: float, rounding: Callable[[float], int]) -> float:
    if x <= 0:
        return 0.0
    exp = math.floor(math.log10(x))
    mantissa = round(x / 10 ** exp, 9)  # 0.3 / 0.1 = 2.9999999999999996 -> 3.0
    return float(f"{rounding(mantissa)}e{exp}")


def round_down_1sig(x: float) -> float:
    """``x`` rounded down to one significant digit (18 -> 10, 0.37 -> 0.3)."""
    return _one_digit(x, math.floor)


def round_up_1sig(x: float) -> float:
    """``x`` rounded up to one significant digit (286 -> 300, 200 -> 200)."""
    return _one_digit(x, math.ceil)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method)."""
    return float(np.quantile(np.asarray(values, dtype=float), q))


def nse_band(one_pass_residuals: Sequence[float], fresh_deltas: Sequence[float]) -> dict[str, Any]:
    """The band by the rule, and whether the rule's premise holds: one pass must leave most
    requests closer to their target than any fresh request is (``alpha`` below the smallest
    fresh ‖δ‖, so every fresh request is inside the band for the first pass)."""
    alpha = round_down_1sig(quantile(one_pass_residuals, ALPHA_QUANTILE))
    upper = round_up_1sig(UPPER_FACTOR * max(fresh_deltas))
    return {"alpha": alpha, "upper_bound": upper, "applies": alpha < min(fresh_deltas)}
