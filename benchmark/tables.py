"""Tables of a published grid, derived from its records (pandas; Markdown via tabulate).

- ``tables/records.csv`` -- the records flattened, one row per :class:`Record`;
- ``tables/pivot.csv`` -- value per metric (rows) against the number of edits (columns);
- ``tables/summary.md`` -- headline Markdown tables, one per (model, dataset).

A missing or non-finite value is an empty CSV field. The files are written by
``seqedit grid`` when it publishes and rebuilt by ``seqedit report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tabulate import DataRow, TableFormat

from benchmark.core import io
from benchmark.results import Record

#: Row key of pivot.csv; its columns are the checkpoints (``n=<number of edits>``).
PIVOT_ROW = ["model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing",
             "variant", "kind", "task", "metric"]
#: What one row of a headline table stands for (a cell's editor, restraints and protocol).
_CELL = ["editor", "trajectory", "variant", "batch_size", "seed", "timing"]
_METRIC = ["kind", "task", "metric"]
#: Spectrum metrics in the headline tables: the largest over a cell's edited matrices.
_SPECTRUM_COLUMNS = {"kappa_w": "κ max (n=0 → n)", "sigma_max_w": "σ_max max (n=0 → n)"}

#: Markdown table without padding to column width: ``| a | b |`` rows under ``|---|---|``.
_MARKDOWN = TableFormat(lineabove=None, linebelowheader=lambda widths, _: "|" + "---|" * len(widths),
                        linebetweenrows=None, linebelow=None, headerrow=DataRow("|", "|", "|"),
                        datarow=DataRow("|", "|", "|"), padding=1, with_header_hide=None)


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    """One row per record, the columns of :class:`Record` in order (None -> NaN)."""
    return pd.DataFrame([r.model_dump(mode="json") for r in records],
                        columns=list(Record.model_fields))


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def records_csv(records: Sequence[Record]) -> str:
    return _csv(records_frame(records))


def pivot_frame(records: Sequence[Record]) -> pd.DataFrame:
    """Rows keyed by :data:`PIVOT_ROW` (as text, sorted as text), one column per checkpoint;
    of two records with the same row and checkpoint the later one counts."""
    return _pivot(records_frame(records))


def _pivot(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[PIVOT_ROW].astype(str).assign(n_edits=df["n_edits"], value=df["value"])
    table = (rows.drop_duplicates(PIVOT_ROW + ["n_edits"], keep="last")
             .pivot(index=PIVOT_ROW, columns="n_edits", values="value")
             .sort_index())
    table.columns = [f"n={n}" for n in table.columns]
    return table.reset_index()


def pivot_csv(records: Sequence[Record]) -> str:
    return _csv(pivot_frame(records))


def _number(x: float | None) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3) else f"{x:.{digits}f}"


def _fmt_mv(value: float | None, stderr: float | None) -> str:
    s = _fmt(value)
    if stderr is not None and value is not None:
        s += f" ± {_fmt(stderr, 2)}"
    return s


def _arrow(before: float | None, after: float | None) -> str:
    if after is None:
        return ""
    return _fmt(after, 2) if before is None else f"{_fmt(before, 2)} → {_fmt(after, 2)}"


def _spectrum_peaks(spectrum: pd.DataFrame) -> dict[tuple, float]:
    """(editor, trajectory, variant, n, metric) -> the largest κ(W) or σ_max(W) over the
    cell's edited matrices (n = 0: the same matrices unedited)."""
    rows = spectrum[spectrum["metric"].isin(list(_SPECTRUM_COLUMNS))].dropna(subset=["value"])
    peaks = rows.groupby(["editor", "trajectory", "variant", "n_edits", "metric"])["value"].max()
    return {key: float(v) for key, v in peaks.items()}


def _headline_table(recs: pd.DataFrame, peaks: dict[tuple, float]) -> str:
    """One (model, dataset): a row per cell at its last checkpoint, a column per metric."""
    metrics = sorted(set(recs[_METRIC].itertuples(index=False, name=None)),
                     key=lambda m: (m[0] != "editing", m[1], m[2]))
    header = ["editor", "trajectory", "variant", "edits"]
    header += [m[2] if m[0] == "editing" else f"{m[1]}/{m[2]}" for m in metrics]
    header += list(_SPECTRUM_COLUMNS.values())
    recs = recs.assign(text=[_fmt_mv(_number(v), _number(s))
                             for v, s in zip(recs["value"], recs["stderr"])])
    last = recs[recs["n_edits"] == recs.groupby(_CELL)["n_edits"].transform("max")]
    at_last = (last.drop_duplicates(_CELL + _METRIC, keep="last")
               .pivot(index=_CELL + ["n_edits"], columns=_METRIC, values="text").fillna(""))
    rows = []
    base = recs[(recs["n_edits"] == 0) & (recs["variant"] == "none")].drop_duplicates(_METRIC)
    if len(base):
        text = dict(zip(base[_METRIC].itertuples(index=False, name=None), base["text"]))
        # no spectrum here: each editor edits its own matrices, so their unedited
        # values are shown on the editor's rows (n=0 → n)
        rows.append(["(unedited)", "", "", "0"] + [text.get(m, "") for m in metrics] + ["", ""])
    for (editor, trajectory, variant, *_, n), vals in at_last.iterrows():
        spectrum = [_arrow(peaks.get((editor, trajectory, variant, 0, metric)),
                           peaks.get((editor, trajectory, variant, n, metric)))
                    for metric in _SPECTRUM_COLUMNS]
        rows.append([editor, trajectory, variant, str(n)] + [vals.get(m, "") for m in metrics]
                    + spectrum)
    return pd.DataFrame(rows, columns=header).to_markdown(
        index=False, tablefmt=_MARKDOWN, stralign=None, numalign=None, disable_numparse=True)


def headline_markdown(records: Sequence[Record], *, title: str = "") -> str:
    """Markdown tables per (model, dataset): one row per editor × trajectory × variant at
    the last checkpoint, one column per editing/general metric (value ± stderr), with
    the unedited model (n = 0) as the first row where it was evaluated."""
    return _headline(records_frame(records), title)


def _headline(df: pd.DataFrame, title: str) -> str:
    spectrum = df[df["kind"] == "spectrum"]
    out = [f"# {title}\n"] if title else []
    for (model, dataset), recs in df[df["kind"] != "spectrum"].groupby(["model", "dataset"]):
        table = _headline_table(recs, _spectrum_peaks(spectrum[spectrum["model"] == model]))
        out.append(f"## {model} · {dataset}\n\n{table}\n")
    return "\n".join(out)


def write_tables(directory: Path, records: Sequence[Record], *, title: str = "") -> list[Path]:
    tables = directory / "tables"
    paths = [tables / "records.csv", tables / "pivot.csv", tables / "summary.md"]
    df = records_frame(records)  # built once for the three tables
    io.write_text(paths[0], _csv(df))
    io.write_text(paths[1], _csv(_pivot(df)))
    io.write_text(paths[2], _headline(df, title))
    return paths
