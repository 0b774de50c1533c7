"""Publish a grid's results from its work folder, all or nothing.

``<out>/`` (``results/<SUITE_VERSION>/<grid>/`` by default) receives the files described
in :mod:`benchmark.results`: ``records.jsonl`` (every completed cell's records),
``cells.jsonl`` (one status per cell), ``provenance/``, ``grid.yaml``, tables and plots.

The whole folder is built beside the target (``<out>.tmp-<pid>``), read back and validated
(schema versions; every cell of the grid listed once; a completed cell has records for every
checkpoint × variant, each general task and the spectrum where the spec asks for them, else
it is published as failed with the reason), then swapped in with renames (old folder ->
``<out>.old-<pid>``, new -> ``<out>``, parent fsynced, old removed). Any failure before the
swap (a kill, a full disk, a bug) leaves the published folder as it was; a kill between the
two renames is repaired by the next publish, which puts the old folder back.

Cells not run by this invocation (``seqedit grid --cells``) keep their published rows,
records and provenance. ``seqedit report`` rebuilds tables and plots the same way
(:func:`regenerate`).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark import SUITE_VERSION, report
from benchmark.cell.folder import CellFolder, settings_changed, status_row
from benchmark.components import default_hparams_hash
from benchmark.core import io
from benchmark.core.errors import DataError, SeqeditError
from benchmark.grid import Grid
from benchmark.results import (
    CellStatus,
    Record,
    SampleRow,
    cells_to_jsonl,
    read_cells,
    read_records,
    read_samples,
    records_to_jsonl,
    samples_to_jsonl,
    sort_records,
    sort_samples,
)
from benchmark.spec import CellSpec
from benchmark.tables import write_tables

log = logging.getLogger(__name__)

#: publish steps announced to ``step`` (progress events; tests kill the process at one)
Step = Callable[[str], None]
_RESULT_MARKERS = ("records.jsonl", "cells.jsonl")


class PublishError(SeqeditError):
    """The folder built for publishing failed its checks; nothing was published."""


# --------------------------------------------------------------------------- swapping
def _alive(pid: int) -> bool:
    if pid == os.getpid():  # this process is not inside a swap of its own (it holds the lock)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _leftovers(out: Path, kind: str) -> list[tuple[Path, int]]:
    """Folders a publish of ``out`` made itself (``<out>.<kind>-<pid>``), nothing else."""
    pattern = re.compile(rf"{re.escape(out.name)}\.{kind}-(\d+)")
    found = []
    for p in sorted(out.parent.glob(f"{glob.escape(out.name)}.{kind}-*")):
        if (m := pattern.fullmatch(p.name)) and p.is_dir():
            found.append((p, int(m.group(1))))
    return found


def recover(out: Path) -> None:
    """Repair what a killed publish of ``out`` left: put back an old folder moved aside
    (when ``out`` is missing) and remove staging folders, of processes that are gone.
    Only names of the form ``<out>.old-<pid>`` / ``<out>.tmp-<pid>`` are touched."""
    for kind in ("old", "tmp"):
        for p, pid in _leftovers(out, kind):
            if _alive(pid):
                continue
            if kind == "old" and not out.exists():
                log.warning("%s: a publish was interrupted; restoring the previous folder from %s",
                            out, p.name)
                os.rename(p, out)
                io.fsync_dir(out.parent)
            else:
                shutil.rmtree(p, ignore_errors=True)


def publish_lock(out: Path) -> Path:
    """The lock every publish of ``out`` holds from repair to swap (one publisher at a time)."""
    return out.parent / f".{out.name}.publish.lock"


def check_target(out: Path) -> None:
    """Refuse a target that is a file, or a folder holding something other than results;
    create its parent (an OSError names what is in the way)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(out, "exists and is not a folder; give a folder for the results")
    if any(out.iterdir()) and not any((out / m).is_file() for m in _RESULT_MARKERS):
        raise DataError(out, "holds files but no published results (no records.jsonl or "
                             "cells.jsonl); refusing to replace it: choose a new or empty folder")


@contextlib.contextmanager
def staged(out: Path, step: Step | None = None) -> Iterator[Path]:
    """Yield an empty folder beside ``out``; when the block succeeds, it replaces ``out``.
    On any error the staging folder is removed and ``out`` is left exactly as it was.
    Publishes of one ``out`` are serialised by :func:`publish_lock` (a second waits)."""
    step = step or (lambda point: None)
    out = Path(out)
    check_target(out)
    with io.file_lock(publish_lock(out)):
        recover(out)
        stage = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            yield stage
            step("publish_staged")
            _swap(stage, out, step)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _swap(stage: Path, out: Path, step: Step) -> None:
    backup = out.with_name(f"{out.name}.old-{os.getpid()}")
    moved = out.exists()
    if moved:
        os.rename(out, backup)
    try:
        step("publish_swapping")
        os.rename(stage, out)
    except BaseException:
        if moved:
            os.rename(backup, out)
        raise
    io.fsync_dir(out.parent)
    if moved:
        shutil.rmtree(backup, ignore_errors=True)


# --------------------------------------------------------------------------- checks
def cell_problem(spec: CellSpec, records: list[Record]) -> str | None:
    """Why a completed cell's records are incomplete or foreign (None if they are fine)."""
    if not records:
        return "no records"
    if foreign := {r.cell for r in records} - {spec.short_hash}:
        return f"records of other cells {sorted(foreign)} among its records"
    ev = spec.evaluation
    for n in spec.checkpoints:
        for v in spec.variants:
            recs = [r for r in records if r.n_edits == n and r.variant == v.label]
            if not recs:
                return f"no records for checkpoint n={n}, variant {v.label}"
            tasks = {r.task for r in recs if r.kind == "general"}
            if missing := {t.name for t in ev.tasks} - tasks:
                return f"general tasks {sorted(missing)} missing at n={n}, variant {v.label}"
            if ev.spectrum and not any(r.kind == "spectrum" for r in recs):
                return f"spectrum figures missing at n={n}, variant {v.label}"
    keys = [r.key() for r in records]
    if len(keys) != len(set(keys)):
        return "duplicate records (same checkpoint, variant and metric twice)"
    return None


def _validate(stage: Path, grid: Grid) -> None:
    """Read back the staged folder: every grid cell listed once, records only and always for
    completed cells, known schema versions (checked by the readers)."""
    statuses = read_cells(stage / "cells.jsonl")
    records = read_records(stage / "records.jsonl")
    listed = [s.cell for s in statuses]
    expected = [c.short_hash for c in grid.cells]
    if sorted(listed) != sorted(expected):
        raise PublishError(f"{stage / 'cells.jsonl'}: lists cells {listed}, the grid has "
                           f"{expected}; nothing published")
    completed = {s.cell for s in statuses if s.status == "completed"}
    with_records = {r.cell for r in records}
    if with_records != completed:
        raise PublishError(f"{stage / 'records.jsonl'}: records of cells {sorted(with_records)} "
                           f"but completed cells {sorted(completed)}; nothing published")


# --------------------------------------------------------------------------- publish
@dataclass(frozen=True)
class Published:
    out: Path
    statuses: list[CellStatus]  # one per grid cell, as in the published cells.jsonl


@dataclass(frozen=True)
class _Before:
    """What ``out`` held before this publish, by cell."""

    statuses: dict[str, CellStatus]
    records: dict[str, list[Record]]
    samples: dict[str, list[SampleRow]]


def _published_before(out: Path) -> _Before:
    before = _Before({}, {}, {})
    if (out / "cells.jsonl").is_file():
        before.statuses.update({s.cell: s for s in read_cells(out / "cells.jsonl")})
    if (out / "records.jsonl").is_file():
        for r in read_records(out / "records.jsonl"):
            before.records.setdefault(r.cell, []).append(r)
    if (out / "samples.jsonl").is_file():
        for s in read_samples(out / "samples.jsonl"):
            before.samples.setdefault(s.cell, []).append(s)
    return before


@dataclass(frozen=True)
class _CellResult:
    status: CellStatus
    records: list[Record]
    samples: list[SampleRow]
    provenance: str | None


def _cell_from_workdir(spec: CellSpec, wd: Path, grid: str) -> _CellResult:
    """A work-folder cell as ``grid`` publishes it. A cell is named by its spec, so a cell that
    another grid with the same cell spec ran can be copied in; its records then carry the
    publishing grid's name (``Record.grid``), their values unchanged."""
    folder = CellFolder.of(wd, spec)
    status = folder.status(spec)
    if status.status != "completed":
        return _CellResult(status, [], [], None)
    if why := settings_changed("computed", folder.recorded_hparams_hash(), default_hparams_hash(spec)):
        return _CellResult(status_row(spec, "failed", f"{folder.root}: {why}; not published: rerun "
                                      "the cell without --resume"), [], [], None)
    records = [r if r.grid == grid else r.model_copy(update={"grid": grid})
               for r in folder.records(spec.checkpoints)]
    if problem := cell_problem(spec, records):
        return _CellResult(status_row(spec, "failed", f"{folder.root}: {problem}; not published"),
                           [], [], None)
    return _CellResult(status, records, folder.samples(spec.checkpoints), folder.provenance_text())


def collect_records(grid: Grid, wd: Path) -> list[Record]:
    """The records a publish of every cell of the work folder would publish."""
    return sort_records(r for spec in grid.cells for r in _cell_from_workdir(spec, wd, grid.name).records)


def publish(grid: Grid, wd: Path, out: Path, *, ran: Collection[str] | None = None,
            step: Step | None = None) -> Published:
    """Publish the grid's results into ``out`` (all or nothing). ``ran``: short hashes of the
    cells this invocation ran (None: all); the others keep their published rows."""
    step = step or (lambda point: None)
    out = Path(out)
    step("publish_start")
    with staged(out, step) as stage:
        before = _published_before(out) if ran is not None else _Before({}, {}, {})
        statuses: list[CellStatus] = []
        records: list[Record] = []
        samples: list[SampleRow] = []
        for spec in grid.cells:
            h = spec.short_hash
            if ran is not None and h not in ran and h in before.statuses:
                prov_path = out / "provenance" / f"{spec.folder}.json"
                cell = _CellResult(before.statuses[h], before.records.get(h, []),
                                   before.samples.get(h, []),
                                   prov_path.read_text(encoding="utf-8") if prov_path.is_file() else None)
                if cell.status.status == "completed" and (problem := cell_problem(spec, cell.records)):
                    cell = _CellResult(status_row(spec, "failed", f"{out}: published {problem}"),
                                       [], [], None)
            else:
                cell = _cell_from_workdir(spec, wd, grid.name)
            statuses.append(cell.status)
            records += cell.records
            samples += cell.samples
            if cell.provenance is not None:
                io.write_text(stage / "provenance" / f"{spec.folder}.json", cell.provenance)
        records = sort_records(records)
        io.write_text(stage / "records.jsonl", records_to_jsonl(records))
        io.write_text(stage / "samples.jsonl", samples_to_jsonl(sort_samples(samples)))
        io.write_text(stage / "cells.jsonl", cells_to_jsonl(statuses))
        io.write_text(stage / "grid.yaml", grid.source_text)
        write_tables(stage, records, title=f"{grid.name} ({SUITE_VERSION})")
        report.write_plots(stage, records)
        _validate(stage, grid)
    step("published")
    return Published(out, statuses)


def regenerate(directory: Path) -> dict[str, list[Path]]:
    """Rebuild tables and plots of a published results folder from its records.jsonl (the
    folder is replaced as a whole, like a publish; an empty records file is an error)."""
    directory = Path(directory)
    path = directory / "records.jsonl"
    if not path.is_file():
        raise DataError(path, "no records file here: give a results folder written by `seqedit grid`")
    records = read_records(path)
    if not records:
        raise DataError(path, "holds no records: nothing to report (publish the grid again "
                              "with `seqedit grid --resume`); the folder was left as it was")
    title = f"{directory.name} ({directory.parent.name})"
    with staged(directory) as stage:
        for item in directory.iterdir():
            if item.name in ("tables", "plots"):
                continue
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            copy(item, stage / item.name)
        tables = write_tables(stage, records, title=title)
        plots = report.write_plots(stage, records)
    return {"tables": [directory / p.relative_to(stage) for p in tables],
            "plots": [directory / p.relative_to(stage) for p in plots]}
