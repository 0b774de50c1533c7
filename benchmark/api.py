"""The Python API, for notebooks and scripts (docs/python-api.md).

::

    from benchmark import api

    grid = api.load_grid("ci")                 # a shipped grid by name, or a path
    api.cells(grid)                            # one row per cell (hash, model, editor, ...)
    result = api.run_cell(grid, "tiny-llama_rome_counterfact_none_b1_s0")
    result.records                             # that cell's records as a DataFrame
    outcome = api.run_grid(grid, out="my-results/ci")
    results = api.load_results("my-results/ci")
    results.records, results.samples, results.cells

Everything runs the same code as ``seqedit``: a cell run here has the records a grid run
gives it, in the same work folder (``$SEQEDIT_CACHE/runs`` unless ``workdir``), so a cell
already completed there is not run again (``resume=False`` recomputes it).
Editing rates are ×100 (0-100), as in every published table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.core.errors import DataError
from benchmark.grid import Grid
from benchmark.grid import load_grid as _load_grid
from benchmark.results import CellStatus, read_cells, read_records, read_samples
from benchmark.runner import GridOutcome

__all__ = ["CellResult", "Results", "cells", "load_grid", "load_records", "load_results",
           "load_samples", "run_cell", "run_grid"]


def load_grid(name_or_path: str | Path) -> Grid:
    """A grid by name (``benchmark/grids/NAME.yaml``) or path, validated and expanded into
    cells (errors name the file and the field)."""
    return _load_grid(name_or_path)


def cells(grid: Grid) -> pd.DataFrame:
    """One row per cell of ``grid``, in the grid's order: ``cell`` (short hash), ``slug``,
    ``folder`` and the columns that identify a cell in records."""
    rows = [{**spec.describe(), "slug": spec.slug, "folder": spec.folder,
             "n_edits": spec.n_edits, "checkpoints": list(spec.checkpoints)} for spec in grid.cells]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CellResult:
    """A cell run by :func:`run_cell`: its status, folder and (when completed) records."""

    status: CellStatus
    folder: Path
    records: pd.DataFrame


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cell(grid: Grid, cell: str, *, workdir: str | Path | None = None, resume: bool = True,
             device: str | None = None, threads: int | None = None,
             progress: bool = False) -> CellResult:
    """Run one cell of ``grid`` in this process. ``cell`` names it as ``seqedit grid --cells``
    does (short hash, a unique prefix of 4+ characters, slug or folder). With ``resume`` (the
    default) a completed cell is not run again and a partial one continues. A failing cell is
    recorded in its folder and returned with status ``failed`` (no records), as in a grid.
    Nothing is published; ``threads`` torch threads (default 1) during the run only."""
    from benchmark.cell.folder import CellFolder
    from benchmark.runner import grid_workdir, run_context, run_single_cell, select_cells
    from benchmark.tables import records_frame

    (spec,) = select_cells(grid, [cell])
    wd = grid_workdir(grid, Path(workdir) if workdir is not None else None)
    wd.mkdir(parents=True, exist_ok=True)
    ctx = run_context(grid, wd, resume=resume, device=device, progress=progress)
    with _torch_threads(threads):
        status = run_single_cell(spec, wd, ctx, threads or grid.run.threads)
    folder = CellFolder.of(wd, spec)
    records = folder.records(spec.checkpoints) if status.status == "completed" else []
    return CellResult(status, folder.root, records_frame(records))


def run_grid(grid: Grid, *, out: str | Path | None = None, workdir: str | Path | None = None,
             resume: bool = False, cells: list[str] | None = None, jobs: int | None = None,
             threads: int | None = None, device: str | None = None,
             progress: bool = False) -> GridOutcome:
    """Run ``grid`` (or the ``cells`` named) and publish to ``out`` (default:
    ``results/<suite version>/<grid>``), as ``seqedit grid`` does in process."""
    from benchmark.runner import run_grid as _run_grid

    return _run_grid(grid, workdir=Path(workdir) if workdir is not None else None,
                     out=Path(out) if out is not None else None, resume=resume, device=device,
                     progress=progress, only=cells, threads=threads, jobs=jobs)


# ------------------------------------------------------------------ published results
def _file(path: str | Path, name: str) -> Path:
    """``path`` itself when it is a file, else ``path/name``."""
    p = Path(path)
    return p if p.is_file() else p / name


def load_records(path: str | Path) -> pd.DataFrame:
    """The records of a published results folder (or of a ``records.jsonl``): one row per
    record, the columns of the records schema (docs/results-schema.md)."""
    from benchmark.tables import records_frame

    file = _file(path, "records.jsonl")
    if not file.is_file():
        raise DataError(file, "no records here: give a published results folder or a records.jsonl")
    return records_frame(read_records(file))


def load_samples(path: str | Path) -> pd.DataFrame | None:
    """The per-item outputs of a results folder (``samples.jsonl``), one row per item: the
    record's key (cell, n_edits, variant, kind, task, metric), ``statistic``, ``id``,
    ``score`` and ``weight`` (NaN when the statistic has none). None when the folder has no
    samples (results written before per-item outputs were kept)."""
    file = _file(path, "samples.jsonl")
    if not file.is_file():
        return None
    key = ["cell", "n_edits", "variant", "kind", "task", "metric", "statistic"]
    rows = []
    for s in read_samples(file):
        weights = s.weights if s.weights is not None else (None,) * len(s.ids)
        base = {k: getattr(s, k) for k in key}
        rows += [{**base, "id": i, "score": v, "weight": w}
                 for i, v, w in zip(s.ids, s.scores, weights)]
    return pd.DataFrame(rows, columns=[*key, "id", "score", "weight"])


@dataclass(frozen=True)
class Results:
    """A published results folder as DataFrames."""

    path: Path
    records: pd.DataFrame
    samples: pd.DataFrame | None
    cells: pd.DataFrame


def load_results(path: str | Path) -> Results:
    """Records, samples (when present) and cell statuses of a published results folder."""
    folder = Path(path)
    statuses = read_cells(folder / "cells.jsonl") if (folder / "cells.jsonl").is_file() else []
    cell_rows = pd.DataFrame([{"cell": s.cell, "folder": s.folder, "status": s.status,
                               "reason": s.reason} for s in statuses],
                             columns=["cell", "folder", "status", "reason"])
    return Results(folder, load_records(folder), load_samples(folder), cell_rows)

