"""benchmark.tables against independent computations over hand-made records."""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pytest

from benchmark.results import Record
from benchmark.tables import headline_markdown, pivot_csv, records_csv

EDITORS = ("rome", "memit")
CHECKPOINTS = (0, 5, 10)
MATRICES = ("layer.1", "layer.2", "layer.3")


def _rec(**kw) -> Record:
    base = dict(grid="g", cell="c", model="m", editor="rome", dataset="cf", trajectory="none",
                batch_size=1, seed=0, timing="first-n", n_edits=0, variant="none",
                kind="editing", task="cf", metric="efficacy", value=1.0, n=8,
                scorer="teacher-forced", protocol="p")
    return Record(**{**base, **kw})


def _value(editor: str, n: int, metric: str, matrix: str = "") -> float:
    """Deterministic, distinct values (not sorted like their keys)."""
    h = sum(ord(c) * (i + 1) for i, c in enumerate(f"{editor}/{n}/{metric}/{matrix}"))
    return (h % 997) / 7.0 + 0.5


@pytest.fixture(scope="module")
def records() -> list[Record]:
    out = []
    for editor, n in itertools.product(EDITORS, CHECKPOINTS):
        cell = f"cell-{editor}"
        out.append(_rec(cell=cell, editor=editor, n_edits=n, value=_value(editor, n, "efficacy"),
                        stderr=0.3))
        out.append(_rec(cell=cell, editor=editor, n_edits=n, kind="general", task="wiki",
                        metric="ppl", value=_value(editor, n, "ppl")))
        for matrix, metric in itertools.product(MATRICES, ("kappa_w", "sigma_max_w")):
            out.append(_rec(cell=cell, editor=editor, n_edits=n, kind="spectrum", task=matrix,
                            metric=metric, value=_value(editor, n, metric, matrix)))
    # a value that could not be computed: an empty field / "—"
    out.append(_rec(cell="cell-rome", editor="rome", n_edits=10, metric="locality", value=None))
    return out


def test_records_csv_round_trips(records):
    rows = list(csv.DictReader(io.StringIO(records_csv(records))))
    assert len(rows) == len(records)
    for row, r in zip(rows, records):
        assert list(row) == list(Record.model_fields)
        assert row["value"] == ("" if r.value is None else repr(r.value))
        assert float(row["value"] or "nan") == pytest.approx(r.value or np.nan, nan_ok=True)
        assert row["stderr"] == ("" if r.stderr is None else repr(r.stderr))
        assert int(row["n_edits"]) == r.n_edits and row["editor"] == r.editor


def test_pivot_has_one_column_per_checkpoint(records):
    rows = list(csv.DictReader(io.StringIO(pivot_csv(records))))
    header = list(rows[0])
    assert header[-len(CHECKPOINTS):] == [f"n={n}" for n in CHECKPOINTS]
    assert len(rows) == len({(r.editor, r.kind, r.task, r.metric) for r in records})
    for row in rows:
        for n in CHECKPOINTS:
            want = [r.value for r in records if r.editor == row["editor"] and r.task == row["task"]
                    and r.metric == row["metric"] and r.n_edits == n]
            field = row[f"n={n}"]
            if not want or want[0] is None:
                assert field == ""
            else:
                assert float(field) == want[0]
    keys = [tuple(row[k] for k in ("editor", "kind", "task", "metric")) for row in rows]
    assert keys == sorted(keys)


def test_pivot_later_duplicate_wins():
    a = _rec(value=1.0)
    b = _rec(value=2.0, cell="other")
    assert pivot_csv([a, b]).splitlines()[1].endswith(",2.0")
    assert pivot_csv([b, a]).splitlines()[1].endswith(",1.0")


def _table_rows(md: str, section: str = "### Values") -> list[dict[str, str]]:
    """The rows of the first Markdown table after ``section``."""
    lines = []
    for line in md[md.index(section):].splitlines()[1:]:
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1]) <= {"|", "-"}
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_headline_last_checkpoint_and_spectrum_peaks(records):
    md = headline_markdown(records, title="t")
    assert md.startswith("# t\n\nValues are at each row's last checkpoint: value ± standard error")
    assert "## m · cf\n\n### Values\n\n| editor | trajectory | variant | edits | efficacy |" in md
    rows = _table_rows(md)
    assert [r["editor"] for r in rows] == ["(unedited)", "memit", "rome"]
    last = max(CHECKPOINTS)
    for row in rows[1:]:
        editor = row["editor"]
        assert row["edits"] == str(last)
        eff = _value(editor, last, "efficacy")
        assert row["efficacy"] == f"{eff:.1f} ± 0.3"  # values beyond 0-1: 1 decimal
        assert row["wiki/ppl"] == f"{_value(editor, last, 'ppl'):.1f}"
        assert row["locality"] == ("—" if editor == "rome" else "")
        for metric, column in (("kappa_w", "κ max (n=0 → n)"),
                               ("sigma_max_w", "σ_max max (n=0 → n)")):
            # the largest over the edited matrices, computed independently with numpy
            peak = {n: np.max([_value(editor, n, metric, m) for m in MATRICES]) for n in (0, last)}
            assert row[column] == f"{peak[0]:.1f} → {peak[last]:.1f}"
    unedited = rows[0]
    assert unedited["edits"] == "0"
    # the first n = 0 record of each metric (here the first editor's)
    assert unedited["efficacy"] == f"{_value('rome', 0, 'efficacy'):.1f} ± 0.3"
    assert unedited["κ max (n=0 → n)"] == ""
    assert "### Change from the unedited model" not in md  # no samples: no paired intervals


def test_headline_one_row_per_seed():
    """Each seed is its own row: the table shows values, it does not average them."""
    recs = [_rec(seed=s, cell=f"c{s}", n_edits=n, value=float(10 * s + n))
            for s, n in itertools.product((0, 1, 2), (0, 4))]
    rows = _table_rows(headline_markdown(recs))
    assert [r["efficacy"] for r in rows] == ["0.0", "4.0", "14.0", "24.0"]


def test_small_and_large_values_use_significant_digits():
    recs = [_rec(n_edits=0, value=1e-5), _rec(n_edits=0, metric="big", value=123456.0),
            _rec(n_edits=0, metric="zero", value=0.0)]
    (row,) = [r for r in _table_rows(headline_markdown(recs)) if r["editor"] == "rome"]
    assert (row["efficacy"], row["big"], row["zero"]) == ("1e-05", "1.23e+05", "0.0")  # editing rates: 1 decimal


def test_empty_records():
    assert headline_markdown([]) == ""
    assert pivot_csv([]).splitlines() == [
        "model,editor,dataset,trajectory,batch_size,seed,timing,variant,kind,task,metric"]
    assert records_csv([]).count("\n") == 1
