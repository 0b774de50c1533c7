"""Publish a grid's results from its work folder.

``<out>/`` (``results/<SUITE_VERSION>/<grid>/`` by default) receives the files described
in :mod:`benchmark.results`: ``records.jsonl`` (every completed cell's records),
``cells.jsonl`` (one status per cell), ``provenance/``, ``grid.yaml``, tables and plots.
Publishing reads only the cell folders (through :class:`~benchmark.cell.folder.CellFolder`),
so it can be redone at any time (``seqedit report`` regenerates tables and plots).
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark import SUITE_VERSION, report
from benchmark.cell.folder import CellFolder
from benchmark.core import io
from benchmark.grid import Grid
from benchmark.results import Record, sort_records, write_records
from benchmark.tables import write_tables


def collect_records(grid: Grid, wd: Path) -> list[Record]:
    """Records of every completed cell (checkpoint files of unfinished cells are left out)."""
    records: list[Record] = []
    for spec in grid.cells:
        folder = CellFolder.of(wd, spec)
        if folder.is_complete:
            records += folder.records(spec.checkpoints)
    return sort_records(records)


def _write_provenance(grid: Grid, wd: Path, prov_dir: Path) -> None:
    """One provenance file per completed cell; stale files of other cells are removed."""
    keep = set()
    for spec in grid.cells:
        text = CellFolder.of(wd, spec).provenance_text()
        if text is not None:
            io.write_text(prov_dir / f"{spec.folder}.json", text)
            keep.add(f"{spec.folder}.json")
    if prov_dir.is_dir():
        for stale in prov_dir.glob("*.json"):
            if stale.name not in keep:
                stale.unlink()


def publish(grid: Grid, wd: Path, out: Path) -> Path:
    """Write records, cell statuses, provenance, tables and plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = collect_records(grid, wd)
    write_records(out / "records.jsonl", records)
    statuses = [CellFolder.of(wd, spec).status(spec) for spec in grid.cells]
    io.write_text(out / "cells.jsonl", "".join(
        json.dumps(s.model_dump(mode="json"), sort_keys=True) + "\n" for s in statuses))
    _write_provenance(grid, wd, out / "provenance")
    io.write_text(out / "grid.yaml", grid.source_text)
    write_tables(out, records, title=f"{grid.name} ({SUITE_VERSION})")
    report.write_plots(out, records)
    return out
