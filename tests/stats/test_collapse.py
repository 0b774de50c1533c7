"""benchmark.stats.collapse on hand-written curves (expected points worked out by hand)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmark.results import Record
from benchmark.stats.collapse import COLUMNS, CollapseSettings, collapse_points, crossing
from benchmark.tables import records_frame


def test_crossing_interpolates_linearly():
    # falls below 50 between 10 (80) and 20 (40): 10 + 30/40 * 10
    assert crossing([(0, 100), (10, 80), (20, 40)], 50, falls=True) == (17.5, True, 20)
    # rises above 66 between 10 (63) and 20 (70): 10 + 3/7 * 10
    edits, interp, by = crossing([(0, 60), (10, 63), (20, 70)], 66, falls=False)
    assert edits == pytest.approx(10 + 30 / 7) and interp and by == 20


def test_crossing_first_point_and_censored():
    assert crossing([(10, 20), (20, 10)], 50, falls=True) == (10.0, False, 10)
    assert crossing([(0, 90), (10, 80), (25, 60)], 50, falls=True) == (None, False, 25)
    assert crossing([], 50, falls=True) == (None, False, 0)
    # equal to the threshold is not below it
    assert crossing([(0, 60), (10, 50), (20, 30)], 50, falls=True) == (10.0, True, 20)


def _rec(n: int, metric: str, value: float | None, *, variant: str = "none", kind: str = "general",
         task: str = "t", cell: str = "c") -> Record:
    return Record(grid="g", cell=cell, model="m", editor="rome", dataset="cf", trajectory="none",
                  batch_size=1, seed=0, timing="first-n", n_edits=n, variant=variant, kind=kind,
                  task=task, metric=metric, value=value, n=10, scorer="s", protocol="p")


def _curve(metric, values, **kw):
    return [_rec(n, metric, v, **kw) for n, v in zip((0, 10, 20, 40), values)]


@pytest.fixture()
def frame() -> pd.DataFrame:
    recs = []
    recs += _curve("efficacy", [30, 90, 60, 20], kind="editing", task="cf")
    recs += _curve("gen_efficacy", [10, 40, 30, 20], kind="editing", task="cf")
    recs += _curve("efficacy_magnitude", [0, 1, 1, 1], kind="editing", task="cf")  # not a signal
    recs += _curve("acc", [0.9, 0.85, 0.7, 0.6])
    recs += _curve("word_perplexity", [60, 63, 70, 90], task="wiki")
    recs += _curve("ppl", [60, 63, 70, 90], task="wiki")  # named freely: direction from samples
    recs += _curve("margin", [-1.0, -2.0, -3.0, -4.0])  # not positive: no relative loss
    recs += _curve("stable", [5.0, 5.0, None, 4.9])  # never loses 10%; a missing value skipped
    # PRUNE variant: its n = 0 records are those of none; general loss measured from none's n = 0
    recs += [_rec(n, "acc", v, variant="prune-e") for n, v in ((0, 0.9), (10, 0.88), (20, 0.8), (40, 0.78))]
    recs.append(_rec(0, "kappa_w", 20.0, kind="spectrum", task="layer"))
    return records_frame(recs)


def _point(df, metric, variant="none"):
    (row,) = df[(df["metric"] == metric) & (df["variant"] == variant)].to_dict("records")
    return row


def test_collapse_points_by_hand(frame):
    df = collapse_points(frame, statistics={("general", "wiki", "ppl"): "word_perplexity"})
    assert list(df.columns) == COLUMNS
    assert set(df["metric"]) == {"efficacy", "gen_efficacy", "acc", "word_perplexity", "ppl", "stable"}
    eff = _point(df, "efficacy")  # 60 at 20, 20 at 40: 20 + 10/40 * 20
    assert (eff["edits"], eff["reached"], eff["interpolated"], eff["by"]) == (25.0, True, True, 40)
    assert (eff["signal"], eff["threshold"], eff["unedited"]) == ("efficacy", 50.0, 30.0)
    gen = _point(df, "gen_efficacy")  # already below 50 at the first edited checkpoint
    assert (gen["edits"], gen["reached"], gen["interpolated"], gen["by"]) == (10.0, True, False, 10)
    acc = _point(df, "acc")  # threshold 0.81 between 0.85 (10) and 0.7 (20)
    assert acc["threshold"] == pytest.approx(0.81)
    assert acc["edits"] == pytest.approx(10 + (0.85 - 0.81) / (0.85 - 0.7) * 10)
    for metric in ("word_perplexity", "ppl"):  # rises above 66 between 63 (10) and 70 (20)
        ppl = _point(df, metric)
        assert ppl["threshold"] == pytest.approx(66.0)
        assert ppl["edits"] == pytest.approx(10 + 3 / 7 * 10)
    stable = _point(df, "stable")
    assert (stable["reached"], stable["interpolated"], stable["by"]) == (False, False, 40)
    assert math.isnan(stable["edits"])
    prune = _point(df, "acc", "prune-e")  # 0.81 between 0.88 (10) and 0.8 (20)
    assert prune["unedited"] == 0.9
    assert prune["edits"] == pytest.approx(10 + (0.88 - 0.81) / (0.88 - 0.8) * 10)


def test_unknown_direction_without_statistic(frame):
    """Without samples, ``ppl`` is not known to be perplexity: read as higher-is-better."""
    ppl = _point(collapse_points(frame), "ppl")
    assert ppl["threshold"] == pytest.approx(54.0) and not ppl["reached"]


def test_settings_change_the_thresholds(frame):
    df = collapse_points(frame, CollapseSettings(efficacy_threshold=70, general_loss=0.2,
                                                 efficacy_metrics=("efficacy",)))
    assert "gen_efficacy" not in set(df["metric"])
    eff = _point(df, "efficacy")  # 70 between 90 (10) and 60 (20): 10 + 20/30 * 10
    assert eff["edits"] == pytest.approx(10 + 20 / 30 * 10)
    acc = _point(df, "acc")  # 0.72 between 0.85 (10) and 0.7 (20)
    assert acc["edits"] == pytest.approx(10 + (0.85 - 0.72) / (0.85 - 0.7) * 10)
    with pytest.raises(ValueError, match="general_loss"):
        CollapseSettings(general_loss=1.5)


def test_no_records():
    assert collapse_points(records_frame([])).empty


def _paired_rows(rows):
    """A paired table with only the columns the gate reads: (cell, variant, n, metric,
    task, delta, significant) per row, all ``vs_unedited`` general comparisons."""
    return pd.DataFrame([{"cell": "c", "variant": v, "n_edits": n, "kind": "general", "task": task,
                          "metric": m, "statistic": "mean", "comparison": "vs_unedited",
                          "delta": d, "significant": sig} for v, n, task, m, d, sig in rows])


def test_general_losses_count_only_where_significant(frame):
    # acc (0.9 -> 0.85, 0.7, 0.6) crosses 0.81 between 10 and 20, significant only from 40
    # on: the point is 40 itself (20 had crossed already), not interpolated.
    # ppl (60 -> 63, 70, 90) crosses 66 between 10 and 20 and is significant at 20:
    # interpolated as without the gate. A significant *improvement* does not count
    # (word_perplexity, delta < 0), nor does an unknown checkpoint.
    paired = _paired_rows([
        ("none", 10, "t", "acc", -0.05, False), ("none", 20, "t", "acc", -0.2, False),
        ("none", 40, "t", "acc", -0.3, True),
        ("none", 20, "wiki", "ppl", 10.0, True), ("none", 40, "wiki", "ppl", 30.0, True),
        ("none", 20, "wiki", "word_perplexity", -10.0, True),
        ("none", 40, "wiki", "word_perplexity", -30.0, True),
    ])
    stats = {("general", "wiki", "ppl"): "word_perplexity"}
    df = collapse_points(frame, statistics=stats, paired=paired)
    acc = _point(df, "acc")
    assert (acc["edits"], acc["reached"], acc["interpolated"], acc["by"]) == (40.0, True, False, 40)
    assert acc["first_crossing"] == pytest.approx(10 + (0.85 - 0.81) / (0.85 - 0.7) * 10)
    ppl = _point(df, "ppl")
    assert ppl["edits"] == pytest.approx(10 + 3 / 7 * 10) and ppl["interpolated"]
    wpp = _point(df, "word_perplexity")
    assert (wpp["reached"], wpp["by"]) == (False, 40) and math.isnan(wpp["edits"])
    assert wpp["first_crossing"] == pytest.approx(10 + 3 / 7 * 10)
    prune = _point(df, "acc", "prune-e")  # no paired rows for it: never significant
    assert not prune["reached"]
    # efficacy is an absolute threshold on the edited facts: never gated
    assert _point(df, "efficacy")["edits"] == 25.0
    # the gate can be switched off: every crossing counts again
    off = collapse_points(frame, CollapseSettings(require_significant=False), stats, paired)
    assert _point(off, "acc")["edits"] == pytest.approx(acc["first_crossing"])


def test_crossing_with_a_gate():
    pts = [(0, 100), (10, 80), (20, 40), (30, 30)]
    # the crossing at 20 does not count, the one at 30 does: 20 had crossed, so 30 itself
    assert crossing(pts, 50, falls=True, counts=lambda n: n >= 30) == (30.0, False, 30)
    assert crossing(pts, 50, falls=True, counts=lambda n: n == 20) == (17.5, True, 20)
    assert crossing(pts, 50, falls=True, counts=lambda n: False) == (None, False, 30)


def test_a_jump_before_the_first_edit_is_not_interpolated():
    # perplexity 70 -> 3e13 between 0 and 50: the line crosses 77 at 50 * 7 / (3e13 - 70),
    # before the first edit, where nothing can collapse: "at or before 50"
    assert crossing([(0, 70.0), (50, 3e13)], 77.0, falls=False) == (50.0, False, 50)
    # one edit or more stays interpolated: 70 -> 84 crosses 77 half-way, 0 -> 770 crosses
    # 77 at exactly one edit of 10, and a later jump is placed by the line (100 + 5/1e9 * 100)
    assert crossing([(0, 70.0), (50, 84.0)], 77.0, falls=False) == (25.0, True, 50)
    assert crossing([(0, 0.0), (10, 770.0)], 77.0, falls=False) == (1.0, True, 10)
    edits, interp, by = crossing([(0, 70.0), (100, 72.0), (200, 1e9 + 72.0)], 77.0, falls=False)
    assert edits == pytest.approx(100 + 5 / 1e9 * 100) and interp and by == 200
