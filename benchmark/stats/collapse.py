"""Collapse points: the first edit count at which a cell's variant fails a named threshold.

Per cell × variant (a records frame: one row per :class:`benchmark.results.Record`):

- **efficacy** -- each editing metric of :attr:`CollapseSettings.efficacy_metrics`
  (teacher-forced ``efficacy``, generation-based ``gen_efficacy``, and their zsRE
  counterparts) falls below
  :attr:`~CollapseSettings.efficacy_threshold` (on the 0-100 scale of those metrics);
- **general** -- each general-ability signal loses more than
  :attr:`~CollapseSettings.general_loss` of its unedited value (the cell's checkpoint 0,
  variant ``none``): a higher-is-better signal falls below ``u·(1 - loss)``, a
  perplexity-type one (:data:`benchmark.evaluation.LOWER_IS_BETTER`) rises above
  ``u·(1 + loss)``. Signals whose unedited value is not positive have no relative loss
  and get no row. With a paired table (:mod:`benchmark.stats.comparisons`) and
  :attr:`~CollapseSettings.require_significant` (the default), a checkpoint counts only where
  the signal's paired change from the unedited model is also significant in the worse
  direction (the direction of the row: a rise for perplexity-type signals); a 10% loss on
  12 items that its interval does not separate from noise is not a collapse. ``first_crossing`` keeps the ungated point.

The edit count is interpolated linearly between the last checkpoint that met the
threshold and the first that did not (``interpolated`` True); when the checkpoint before
had crossed the threshold without a significant change, the point is that checkpoint
(``interpolated`` False, shown ``≤n``), and so is a crossing that the straight line
would put before the first edit (a jump, e.g. perplexity from 71 unedited to 1e13 at the
first checkpoint, which interpolation cannot place). Efficacy is measured on edited
facts only from the first edited checkpoint on, so a cell already below the threshold there
reports that checkpoint, not interpolated. A threshold never crossed by the last checkpoint
is censored: ``edits`` empty, ``reached`` False, ``by`` the last checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from benchmark.evaluation import LOWER_IS_BETTER

#: Columns that identify one cell's variant (its curve over checkpoints).
CURVE = ["model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing", "cell",
         "variant"]
SIGNAL = ["kind", "task", "metric"]
COLUMNS = CURVE + SIGNAL + ["signal", "unedited", "threshold", "edits", "reached",
                            "interpolated", "by", "first_crossing"]


@dataclass(frozen=True)
class CollapseSettings:
    """Named thresholds of the collapse points."""

    efficacy_threshold: float = 50.0  #: efficacy below this (0-100 scale) has collapsed
    #: teacher-forced and generation-based efficacy, CounterFact and zsRE
    efficacy_metrics: tuple[str, ...] = ("efficacy", "gen_efficacy", "zsre_efficacy",
                                         "zsre_gen_efficacy")
    general_loss: float = 0.10  #: a loss of more than this fraction of the unedited value
    #: a general loss counts only at checkpoints where its paired change from the unedited
    #: model is significant and worse (when a paired table is given)
    require_significant: bool = True

    def __post_init__(self):
        if not 0 < self.general_loss < 1:
            raise ValueError(f"general_loss must lie in (0, 1), got {self.general_loss}")


#: The default thresholds (the suite's published tables use these).
COLLAPSE_DEFAULTS = CollapseSettings()


def lower_is_better(metric: str, statistic: str | None = None) -> bool:
    """Whether a larger value is worse: by the items' statistic when known, else by the
    metric's name being one of the perplexity-type statistics."""
    return (statistic or metric) in LOWER_IS_BETTER


def crossing(points: list[tuple[int, float]], threshold: float, falls: bool,
             counts: Callable[[int], bool] | None = None) -> tuple[float | None, bool, int]:
    """The first crossing of ``threshold`` along ``points`` (edits, value), increasing edits.

    ``falls``: crossing means value < threshold (else value > threshold). ``counts(n)``:
    whether a crossing at edit count n counts (default: every one). Returns
    ``(edits, interpolated, by)``: the edit count interpolated linearly from the previous
    point, or the point's own edits (not interpolated) when it is the first point, the
    previous point had already crossed without counting, or the interpolated count is under
    one edit (a jump from the unedited value so large that a straight line cannot place
    it, and nothing collapses before the first edit: shown as "at or before" the point);
    ``edits`` None when nothing counts (``by`` = the last point's edits)."""
    prev: tuple[int, float] | None = None
    prev_crossed = False
    for n, v in points:
        crossed = v < threshold if falls else v > threshold
        if crossed and (counts is None or counts(n)):
            if prev is None or prev_crossed:
                return float(n), False, n
            n0, v0 = prev
            edits = n0 + (v0 - threshold) / (v0 - v) * (n - n0)
            if edits < 1:  # nothing collapses before the first edit: a jump the line cannot place
                return float(n), False, n
            return edits, True, n
        prev, prev_crossed = (n, v), crossed
    return None, False, points[-1][0] if points else 0


def _curve(rows: pd.DataFrame) -> list[tuple[int, float]]:
    rows = rows.dropna(subset=["value"]).sort_values("n_edits")
    rows = rows.drop_duplicates("n_edits", keep="last")
    return [(int(n), float(v)) for n, v in zip(rows["n_edits"], rows["value"])]


def _efficacy_row(curve: list[tuple[int, float]], settings: CollapseSettings) -> dict | None:
    edited = [p for p in curve if p[0] > 0]
    if not edited:
        return None
    thr = settings.efficacy_threshold
    edits, interp, by = crossing(edited, thr, falls=True)
    unedited = next((v for n, v in curve if n == 0), math.nan)
    return {"signal": "efficacy", "unedited": unedited, "threshold": thr, "edits": edits,
            "interpolated": interp, "by": by, "first_crossing": edits}


def _general_row(curve: list[tuple[int, float]], unedited: float, lower: bool,
                 settings: CollapseSettings, counts: Callable[[int], bool] | None) -> dict | None:
    if not math.isfinite(unedited) or unedited <= 0:
        return None
    loss = settings.general_loss
    thr = unedited * (1 + loss) if lower else unedited * (1 - loss)
    points = [(0, unedited)] + [p for p in curve if p[0] > 0]
    if len(points) < 2:
        return None
    first, _, _ = crossing(points, thr, falls=not lower)
    edits, interp, by = crossing(points, thr, falls=not lower, counts=counts)
    return {"signal": "general", "unedited": unedited, "threshold": thr, "edits": edits,
            "interpolated": interp, "by": by, "first_crossing": first}


def significant_changes(paired: pd.DataFrame) -> dict[tuple, float]:
    """(cell, variant, n_edits, kind, task, metric) -> delta of every general signal's
    significant paired change from the unedited model."""
    rows = paired[(paired["comparison"] == "vs_unedited") & (paired["kind"] == "general")
                  & paired["significant"].astype(bool)]
    return {(str(r.cell), str(r.variant), int(r.n_edits), r.kind, r.task, r.metric): float(r.delta)
            for r in rows.itertuples(index=False)}


def _worse_and_significant(changes: dict[tuple, float], cell: str, variant: str,
                           signal: tuple[str, str, str], lower: bool) -> Callable[[int], bool]:
    def counts(n: int) -> bool:
        delta = changes.get((cell, variant, n, *signal))
        return delta is not None and (delta > 0 if lower else delta < 0)
    return counts


def collapse_points(records: pd.DataFrame, settings: CollapseSettings = COLLAPSE_DEFAULTS,
                    statistics: dict[tuple[str, str, str], str] | None = None,
                    paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell × variant × signal (:data:`COLUMNS`); ``statistics`` maps
    (kind, task, metric) to the items' statistic where samples are known; ``paired`` (the
    folder's paired table) gates general losses on significance (see the module docstring;
    without it, or with ``require_significant`` off, every crossing counts)."""
    statistics = statistics or {}
    gate = significant_changes(paired) if (
        paired is not None and settings.require_significant) else None
    df = records[records["kind"].isin(["editing", "general"])]
    df = df[(df["kind"] == "general") | df["metric"].isin(list(settings.efficacy_metrics))]
    unedited = (df[(df["n_edits"] == 0) & (df["variant"] == "none")].dropna(subset=["value"])
                .drop_duplicates(["cell"] + SIGNAL, keep="last")
                .set_index(["cell"] + SIGNAL)["value"])
    out = []
    for key, rows in df.groupby(CURVE + SIGNAL, sort=True):
        ident = dict(zip(CURVE + SIGNAL, key))
        curve = _curve(rows)
        signal_key = (ident["kind"], ident["task"], ident["metric"])
        if ident["kind"] == "editing":
            row = _efficacy_row(curve, settings)
        else:
            u = float(unedited.get((ident["cell"], *signal_key), math.nan))
            lower = lower_is_better(ident["metric"], statistics.get(signal_key))
            counts = None if gate is None else _worse_and_significant(
                gate, str(ident["cell"]), str(ident["variant"]), signal_key, lower)
            row = _general_row(curve, u, lower, settings, counts)
        if row is not None:
            out.append({**ident, **row, "reached": row["edits"] is not None})
    frame = pd.DataFrame(out, columns=COLUMNS)
    frame["edits"] = frame["edits"].astype(float)
    frame["first_crossing"] = frame["first_crossing"].astype(float)
    return frame
