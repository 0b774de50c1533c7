"""Tables of a published grid, derived from its records and per-item samples (pandas;
Markdown via tabulate).

- ``tables/records.csv`` -- the records flattened, one row per :class:`Record`;
- ``tables/pivot.csv`` -- value per metric (rows) against the number of edits (columns);
- ``tables/paired.csv`` -- every paired comparison (:mod:`benchmark.stats.comparisons`):
  each checkpoint against the unedited model, each restraint against the unrestrained run;
- ``tables/collapse.csv`` -- collapse points per cell × variant (:mod:`benchmark.stats.collapse`);
- ``tables/summary.md`` -- headline Markdown tables, one set per (model, dataset): values at
  the last checkpoint, their change from the unedited model with paired intervals, and the
  collapse points.

A missing or non-finite value is an empty CSV field. The files are written by
``seqedit grid`` when it publishes and rebuilt by ``seqedit report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tabulate import DataRow, TableFormat

from benchmark.core import io
from benchmark.results import Record, SampleRow, read_samples
from benchmark.stats import display
from benchmark.stats.analysis import IDENTITY_MARK, Analysis, records_frame
from benchmark.stats.collapse import COLLAPSE_DEFAULTS, CollapseSettings, lower_is_better
from benchmark.stats.paired import PAIRED_DEFAULTS, PairedSettings

__all__ = ["PIVOT_ROW", "caption", "headline_markdown", "pivot_csv", "pivot_frame", "records_csv",
           "records_frame", "write_tables"]

#: Row key of pivot.csv; its columns are the checkpoints (``n=<number of edits>``).
PIVOT_ROW = ["model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing",
             "variant", "kind", "task", "metric"]
#: What one row of a headline table stands for (a cell's editor, restraints and protocol).
_CELL = ["editor", "trajectory", "variant", "batch_size", "seed", "timing", "cell"]
_METRIC = ["kind", "task", "metric"]
#: Spectrum metrics in the headline tables: the largest over a cell's edited matrices.
_SPECTRUM_COLUMNS = {"kappa_w": "κ max (n=0 → n)", "sigma_max_w": "σ_max max (n=0 → n)"}
#: The same log-likelihoods per byte as word perplexity: left out of summary.md where the
#: task has word perplexity (they stay in every CSV).
_SAME_AS_WORD_PPL = ("byte_perplexity", "bits_per_byte")

#: Markdown table without padding to column width: ``| a | b |`` rows under ``|---|---|``.
_MARKDOWN = TableFormat(lineabove=None, linebelowheader=lambda widths, _: "|" + "---|" * len(widths),
                        linebetweenrows=None, linebelow=None, headerrow=DataRow("|", "|", "|"),
                        datarow=DataRow("|", "|", "|"), padding=1, with_header_hide=None)


def caption(paired: PairedSettings = PAIRED_DEFAULTS,
            collapse: CollapseSettings = COLLAPSE_DEFAULTS) -> str:
    """What the summary's numbers mean."""
    level = f"{paired.confidence:.0%}"
    return (
        f"Values are at each row's last checkpoint: value ± standard error of the mean over "
        f"items (perplexity-type values have no standard error). Δ is the change from the "
        f"unedited model (the same cell at 0 edits, variant none) on the same items, with its "
        f"{level} paired interval [low, high]: for binary scores the exact McNemar test with a "
        f"paired-bootstrap interval of the difference in rates, for other means the paired t "
        f"interval, for perplexity-type statistics the paired bootstrap ({paired.n_boot} "
        f"replicates, percentile interval, seed {paired.seed}); * marks an interval that "
        f"excludes 0 (and, where there is a test, p < {1 - paired.confidence:.2g}). A variant "
        f"marked{IDENTITY_MARK} never acted: its records equal those of variant none. Collapse "
        f"points: the first edit count at which efficacy falls below "
        f"{collapse.efficacy_threshold:g} or a general signal loses more than "
        f"{collapse.general_loss:.0%} of its unedited value"
        + (" with a significant paired change (first_crossing in collapse.csv: without that "
           "requirement)" if collapse.require_significant else "")
        + "; ≈ interpolated linearly between "
        "checkpoints, ≤ crossed at or before that checkpoint, > not reached by the "
        "last checkpoint. Rounding: rates on the 0-100 scale 1 decimal, on the 0-1 scale 3, "
        "perplexity 2, κ and σ 1.\n")


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


def _shown_metrics(recs: pd.DataFrame) -> list[tuple[str, str, str]]:
    metrics = set(recs[_METRIC].itertuples(index=False, name=None))
    word = {task for kind, task, metric in metrics if metric == "word_perplexity"}
    metrics = {m for m in metrics if not (m[2] in _SAME_AS_WORD_PPL and m[1] in word)}
    return sorted(metrics, key=lambda m: (m[0] != "editing", m[1], m[2]))


def _header(metrics: list[tuple[str, str, str]]) -> list[str]:
    return [m[2] if m[0] == "editing" else f"{m[1]}/{m[2]}" for m in metrics]


def _markdown(rows: list[list[str]], header: list[str]) -> str:
    return pd.DataFrame(rows, columns=header).to_markdown(
        index=False, tablefmt=_MARKDOWN, stralign=None, numalign=None, disable_numparse=True)


def _spectrum_peaks(spectrum: pd.DataFrame) -> dict[tuple, float]:
    """(cell, variant, n, metric) -> the largest κ(W) or σ_max(W) over the cell's edited
    matrices (n = 0: the same matrices unedited)."""
    rows = spectrum[spectrum["metric"].isin(list(_SPECTRUM_COLUMNS))].dropna(subset=["value"])
    peaks = rows.groupby(["cell", "variant", "n_edits", "metric"])["value"].max()
    return {key: float(v) for key, v in peaks.items()}


def _arrow(before: float | None, after: float | None) -> str:
    if after is None:
        return ""
    after_s = display.number(after, 1)
    return after_s if before is None else f"{display.number(before, 1)} → {after_s}"


def _last(recs: pd.DataFrame) -> pd.DataFrame:
    return recs[recs["n_edits"] == recs.groupby(_CELL)["n_edits"].transform("max")]


def _values_table(s: Analysis, recs: pd.DataFrame, peaks: dict[tuple, float]) -> str:
    """A row per cell × variant at its last checkpoint, a column per metric."""
    metrics = _shown_metrics(recs)
    text = [display.value_se(None if pd.isna(v) else v, None if pd.isna(e) else e, s.digits(m))
            for v, e, m in zip(recs["value"], recs["stderr"],
                               recs[_METRIC].itertuples(index=False, name=None))]
    recs = recs.assign(text=text)
    rows = []
    base = recs[(recs["n_edits"] == 0) & (recs["variant"] == "none")].drop_duplicates(_METRIC)
    if len(base):
        first = dict(zip(base[_METRIC].itertuples(index=False, name=None), base["text"]))
        # no spectrum here: each editor edits its own matrices, so their unedited
        # values are shown on the editor's rows (n=0 → n)
        rows.append(["(unedited)", "", "", "0"] + [first.get(m, "") for m in metrics] + ["", ""])
    at_last = (_last(recs).drop_duplicates(_CELL + _METRIC, keep="last")
               .pivot(index=_CELL + ["n_edits"], columns=_METRIC, values="text").fillna(""))
    for (editor, trajectory, variant, *_, cell, n), vals in at_last.iterrows():
        spectrum = [_arrow(peaks.get((cell, variant, 0, metric)), peaks.get((cell, variant, n, metric)))
                    for metric in _SPECTRUM_COLUMNS]
        rows.append([editor, trajectory, s.variant_label(cell, n, variant), str(n)]
                    + [vals.get(m, "") for m in metrics] + spectrum)
    header = ["editor", "trajectory", "variant", "edits"] + _header(metrics)
    return _markdown(rows, header + list(_SPECTRUM_COLUMNS.values()))


def _change_table(s: Analysis, recs: pd.DataFrame, paired: pd.DataFrame) -> str | None:
    """Δ from the unedited model at each row's last checkpoint, with its interval."""
    metrics = _shown_metrics(recs)
    last = _last(recs)[_CELL + ["n_edits"]].drop_duplicates()
    vs = paired[paired["comparison"] == "vs_unedited"].merge(last, on=_CELL + ["n_edits"])
    if not len(vs):
        return None
    rows = []
    for (editor, trajectory, variant, *_, cell, n), group in vs.groupby(_CELL + ["n_edits"], sort=True):
        by_metric = {(r.kind, r.task, r.metric): display.change(
            r.delta, r.ci_low, r.ci_high, bool(r.significant), s.digits((r.kind, r.task, r.metric)))
            for r in group.itertuples()}
        rows.append([editor, trajectory, s.variant_label(cell, n, variant), str(n)]
                    + [by_metric.get(m, "") for m in metrics])
    return _markdown(rows, ["editor", "trajectory", "variant", "edits"] + _header(metrics))


def _collapse_table(s: Analysis, collapse: pd.DataFrame) -> str | None:
    if not len(collapse):
        return None
    metrics = _shown_metrics(collapse)
    settings = s.collapse_settings
    header = []
    for kind, task, metric in metrics:
        if kind == "editing":
            header.append(f"{metric} < {settings.efficacy_threshold:g}")
        else:
            rise = lower_is_better(metric, s.statistics.get((kind, task, metric)))
            header.append(f"{task}/{metric} {'+' if rise else '−'}{settings.general_loss:.0%}")
    rows = []
    for (editor, trajectory, variant, *_, cell), group in collapse.groupby(_CELL, sort=True):
        points = {(r.kind, r.task, r.metric): display.collapse_point(
            r.edits, bool(r.reached), bool(r.interpolated), int(r.by)) for r in group.itertuples()}
        last = int(group["by"].max())
        rows.append([editor, trajectory, s.variant_label(cell, last, variant)]
                    + [points.get(m, "") for m in metrics])
    return _markdown(rows, ["editor", "trajectory", "variant"] + header)


def _summary_markdown(s: Analysis, title: str) -> str:
    df = s.frame
    if not len(df):
        return ""
    spectrum = df[df["kind"] == "spectrum"]
    out = [f"# {title}\n"] if title else []
    out.append(caption(s.paired_settings, s.collapse_settings))
    level = f"{s.paired_settings.confidence:.0%}"
    for (model, dataset), recs in df[df["kind"] != "spectrum"].groupby(["model", "dataset"]):
        peaks = _spectrum_peaks(spectrum[spectrum["model"] == model])
        out.append(f"## {model} · {dataset}\n\n### Values\n\n{_values_table(s, recs, peaks)}\n")
        mine = (s.paired["model"] == model) & (s.paired["dataset"] == dataset)
        if (change := _change_table(s, recs, s.paired[mine])) is not None:
            out.append(f"### Change from the unedited model (Δ [{level} paired interval])\n\n"
                       f"{change}\n")
        mine = (s.collapse["model"] == model) & (s.collapse["dataset"] == dataset)
        if (collapse := _collapse_table(s, s.collapse[mine])) is not None:
            out.append(f"### Collapse points (edits)\n\n{collapse}\n")
    return "\n".join(out)


def headline_markdown(records: Sequence[Record], *, title: str = "",
                      samples: Sequence[SampleRow] = ()) -> str:
    """Markdown tables per (model, dataset): one row per cell × variant at the last
    checkpoint, one column per editing/general metric (value ± stderr), the unedited model
    (n = 0) first; then the change from the unedited model with paired intervals (where
    there are samples) and the collapse points."""
    return _summary_markdown(Analysis(records, list(samples)), title)


def _samples_of(directory: Path) -> list[SampleRow]:
    path = directory / "samples.jsonl"
    return read_samples(path) if path.is_file() else []


def write_tables(directory: Path, records: Sequence[Record], *, title: str = "",
                 samples: Sequence[SampleRow] | None = None) -> list[Path]:
    """Write the tables under ``directory/tables``; ``samples`` default to the folder's
    ``samples.jsonl`` (none when it has no such file)."""
    samples = _samples_of(directory) if samples is None else list(samples)
    tables = directory / "tables"
    paths = [tables / name for name in
             ("records.csv", "pivot.csv", "paired.csv", "collapse.csv", "summary.md")]
    summary = Analysis(records, samples)
    io.write_text(paths[0], _csv(summary.frame))
    io.write_text(paths[1], _csv(_pivot(summary.frame)))
    io.write_text(paths[2], _csv(summary.paired))
    io.write_text(paths[3], _csv(summary.collapse))
    io.write_text(paths[4], _summary_markdown(summary, title))
    return paths


#: Columns of the published tables that hold identifiers (read as text: a hash of digits
#: or a numeric-looking task name must not become a number).
_TEXT_COLUMNS = {c: str for c in ("cell", "ref_cell", "variant", "ref_variant", "kind", "task",
                                  "metric")}


def read_table(directory: Path, name: str) -> pd.DataFrame | None:
    """A published table (``tables/<name>``) of a results folder, identifiers as text;
    None when the folder has no such table."""
    path = Path(directory) / "tables" / name
    return pd.read_csv(path, dtype=_TEXT_COLUMNS) if path.is_file() else None


def read_paired(directory: Path, comparison: str = "vs_unedited") -> pd.DataFrame | None:
    """The rows of one comparison in a results folder's ``tables/paired.csv``."""
    frame = read_table(directory, "paired.csv")
    return None if frame is None else frame[frame["comparison"] == comparison]
