"""The README's headline table, generated from result folders (records + samples).

Per result folder and (model, dataset), one row per editor × trajectory × variant at the
cell's last checkpoint: teacher-forced and generation-based efficacy side by side, the
change of each headline signal (:data:`SIGNALS`) from the unedited model with its paired
interval, and the collapse points; then the PRUNE − none difference of each signal with its
interval. ``seqedit report DIR... --update-readme README.md`` writes the block between
:data:`BEGIN` and :data:`END`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.core import io
from benchmark.core.errors import DataError
from benchmark.results import Record, SampleRow, read_records, read_samples
from benchmark.stats import display
from benchmark.stats.analysis import IDENTITY_MARK, Analysis
from benchmark.stats.collapse import COLLAPSE_DEFAULTS, CollapseSettings
from benchmark.stats.paired import PAIRED_DEFAULTS, PairedSettings

BEGIN = "<!-- headline:begin -->"
END = "<!-- headline:end -->"


@dataclass(frozen=True)
class Signal:
    """A headline signal: ``kind`` and one of ``metrics`` (``task`` None: any task, i.e. the
    cell's editing dataset)."""

    label: str
    kind: str
    metrics: tuple[str, ...]
    task: str | None = None

    def matches(self, kind: str, task: str, metric: str) -> bool:
        return kind == self.kind and metric in self.metrics and self.task in (None, task)


#: The signals whose change the headline shows, in column order.
SIGNALS = (Signal("efficacy", "editing", ("efficacy", "zsre_efficacy")),
           Signal("held-out word ppl", "general", ("word_perplexity",), "wikitext_heldout"),
           Signal("known facts", "general", ("acc",), "known_facts"),
           Signal("reasoning", "general", ("acc",), "prune_reasoning"))
#: Efficacy by each scorer, side by side.
EFFICACY = (Signal("efficacy, teacher-forced", "editing", ("efficacy", "zsre_efficacy")),
            Signal("efficacy, generation", "editing", ("gen_efficacy", "zsre_gen_efficacy")))
_ROW = ["editor", "trajectory", "variant", "batch_size", "seed", "timing", "cell"]


@dataclass(frozen=True)
class Folder:
    """One result folder's inputs."""

    records: list[Record]
    samples: list[SampleRow]


def read_folder(directory: Path) -> Folder:
    """``records.jsonl`` and (when present) ``samples.jsonl`` of a result folder."""
    path = Path(directory) / "records.jsonl"
    if not path.is_file():
        raise DataError(path, "no records file here: give a results folder written by `seqedit grid`")
    samples = Path(directory) / "samples.jsonl"
    return Folder(read_records(path), read_samples(samples) if samples.is_file() else [])


def _find(rows: pd.DataFrame, signal: Signal) -> pd.DataFrame:
    hit = [signal.matches(k, t, m) for k, t, m in zip(rows["kind"], rows["task"], rows["metric"])]
    return rows[hit] if len(rows) else rows


def _one(rows: pd.DataFrame, signal: Signal) -> dict | None:
    found = _find(rows, signal)
    return None if found.empty else found.iloc[-1].to_dict()


def _digits(t: Analysis, signal: Signal) -> int:
    rows = _find(t.frame, signal)
    if rows.empty:
        return 1
    return t.digits((rows["kind"].iloc[0], rows["task"].iloc[0], rows["metric"].iloc[0]))


def _change(row: dict | None, digits: int) -> str:
    if row is None:
        return display.MISSING
    return display.change(row["delta"], row["ci_low"], row["ci_high"], bool(row["significant"]), digits)


def _collapse_text(rows: pd.DataFrame, signals: Sequence[Signal]) -> str:
    """The earliest collapse among ``signals`` (``≈n (label)``), else ``>last``."""
    found = [(row, s) for s in signals if (row := _one(rows, s)) is not None]
    if not found:
        return display.MISSING
    reached = [(row["edits"], row, s) for row, s in found if row["reached"]]
    if not reached:
        return display.collapse_point(None, False, False, max(int(r["by"]) for r, _ in found))
    _, row, signal = min(reached, key=lambda x: x[0])
    point = display.collapse_point(row["edits"], True, bool(row["interpolated"]), int(row["by"]))
    return point if len(signals) == 1 else f"{point} ({signal.label})"


def _rows(t: Analysis, recs: pd.DataFrame) -> tuple[list[list[str]], list[list[str]]]:
    """The change rows and the PRUNE − none rows of one (model, dataset)."""
    changes, restraint = [], []
    general = [s for s in SIGNALS if s.kind == "general"]
    for (editor, trajectory, variant, *_, cell), rows in recs.groupby(_ROW, sort=True):
        n = int(rows["n_edits"].max())
        at = rows[rows["n_edits"] == n]
        label = [editor, trajectory, t.variant_label(cell, n, variant), str(n)]
        mine = t.paired[(t.paired["cell"] == cell) & (t.paired["variant"] == variant)
                        & (t.paired["n_edits"] == n)]
        vs = mine[mine["comparison"] == "vs_unedited"]
        efficacy = [display.number(r["value"], _digits(t, s)) if (r := _one(at, s)) else display.MISSING
                    for s in EFFICACY]
        col = t.collapse[(t.collapse["cell"] == cell) & (t.collapse["variant"] == variant)]
        changes.append(label + efficacy + [_change(_one(vs, s), _digits(t, s)) for s in SIGNALS]
                       + [_collapse_text(col, [s]) for s in EFFICACY] + [_collapse_text(col, general)])
        prune = mine[mine["comparison"] == "prune_vs_none"]
        if not prune.empty:
            restraint.append(label + [_change(_one(prune, s), _digits(t, s)) for s in SIGNALS])
    return changes, restraint


def _markdown(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def legend(paired: PairedSettings = PAIRED_DEFAULTS,
           collapse: CollapseSettings = COLLAPSE_DEFAULTS) -> str:
    """What the headline tables' numbers mean."""
    return (f"Last checkpoint of each row. Δ: change from the unedited model on the same items "
            f"with its {paired.confidence:.0%} paired interval (exact McNemar with a "
            f"paired-bootstrap interval for binary scores, paired t for other means, paired "
            f"bootstrap of {paired.n_boot} replicates for perplexity); * the interval excludes 0 "
            f"(and p < {1 - paired.confidence:.2g} where there is a test). Collapse: first edit "
            f"count with efficacy below {collapse.efficacy_threshold:g}, or with a headline "
            f"general signal {collapse.general_loss:.0%} worse than unedited"
            + (" and its change significant" if collapse.require_significant else "")
            + f" (≈ interpolated, ≤ at or before that checkpoint, > not reached). "
            f"{IDENTITY_MARK.strip()}: the "
            f"restraint never acted.\n")


def folder_markdown(folder: Folder, paired: PairedSettings = PAIRED_DEFAULTS,
                    collapse: CollapseSettings = COLLAPSE_DEFAULTS) -> str:
    """The headline tables of one result folder (one section per model and dataset)."""
    t = Analysis(folder.records, folder.samples, paired, collapse)
    recs = t.frame[t.frame["kind"] != "spectrum"]
    out = []
    head = ["editor", "trajectory", "variant", "edits"]
    for (grid, suite, model, dataset), group in recs.groupby(
            ["grid", "suite_version", "model", "dataset"], sort=True):
        changes, restraint = _rows(t, group)
        out.append(f"#### {grid} ({suite}) · {model} · {dataset}\n")
        out.append(_markdown(changes, head + [s.label for s in EFFICACY]
                             + [f"Δ {s.label}" for s in SIGNALS]
                             + [f"collapse: {s.label}" for s in EFFICACY]
                             + ["collapse: general"]) + "\n")
        if restraint:
            out.append("PRUNE − none at the same checkpoint (Δ with its paired interval):\n")
            out.append(_markdown(restraint, head + [f"Δ {s.label}" for s in SIGNALS]) + "\n")
    return "\n".join(out)


def render(directories: Sequence[Path]) -> str:
    """The generated block (without the markers) for ``directories``, in order: the
    legend, then each folder's tables."""
    tables = [folder_markdown(read_folder(d)) for d in directories]
    return "\n".join([legend()] + tables).strip("\n")


def readme_block(text: str, path: Path | str = "README.md") -> str:
    """The text between the markers (stripped of the newlines next to them)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise DataError(path, f"no headline block: the file needs a line {BEGIN!r} and a later "
                              f"line {END!r}")
    return text[start + len(BEGIN):end].strip("\n")


_HEADING = re.compile(r"^#### (\S+) \((\S+)\) · ", re.MULTILINE)


def named_folders(block: str, results_root: Path) -> list[Path]:
    """The result folders a generated block was made from (``results_root/<suite>/<grid>``
    of its section headings, first appearance first)."""
    out: list[Path] = []
    for grid, suite in _HEADING.findall(block):
        path = Path(results_root) / suite / grid
        if path not in out:
            out.append(path)
    return out


def update_readme(readme: Path, directories: Sequence[Path]) -> bool:
    """Replace the headline block of ``readme`` with :func:`render`; True if it changed."""
    readme = Path(readme)
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(readme, f"cannot read: {exc.strerror or exc}") from None
    old = readme_block(text, readme)
    new = render(directories)
    if old == new:
        return False
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    io.write_text(readme, text[:start] + "\n" + new + "\n" + text[end:])
    return True
