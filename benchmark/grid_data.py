"""Data files of one's own in a grid: ``datasets: [{path: FILE, format: counterfact}]``.

A grid names a file relative to its own folder (or absolutely). When the grid is loaded each
file is found, hashed (sha256, which goes into every cell's spec and so its hash, and into
the provenance) and every record validated by the same parsers as the mirrored data sets
(:mod:`benchmark.data.loaders`), so a bad record fails the grid before any work starts with
the file, the record and the field named. A ``sha256`` written in the grid must match.
When a cell runs, the file is hashed again and must still match (:func:`load_file_requests`).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.core import io
from benchmark.core.errors import DataError
from benchmark.grid_schema import Axes, GridError, field_path
from benchmark.spec import FILE_FORMATS, DatasetSpec


def _requests(dataset: DatasetSpec) -> list:
    from benchmark.data.loaders import PARSERS, load_requests

    if dataset.format not in PARSERS:
        raise DataError(dataset.path, f"unknown format {dataset.format!r}; known: "
                        f"{', '.join([*FILE_FORMATS, *PARSERS])}", field="format")
    return load_requests(path=dataset.path, format=dataset.format, **dataset.reading())


def resolve_file(grid_path: Path, dataset: DatasetSpec, field: str, n_edits: int | None) -> DatasetSpec:
    """``dataset`` with its path made absolute (against the grid file's folder) and its
    sha256 filled in, after validating every record and the number of requests."""
    file = Path(dataset.path).expanduser()
    if not file.is_absolute():
        file = grid_path.parent / file
    file = file.resolve()
    if not file.is_file():
        raise GridError(grid_path, f"data file {file} not found (a relative path is read from "
                        "the grid file's folder)", field=f"{field}.path")
    digest = io.sha256_file(file)
    if dataset.sha256 is not None and dataset.sha256 != digest:
        raise GridError(grid_path, f"data file {file} has sha256 {digest}, the grid says "
                        f"{dataset.sha256}", field=f"{field}.sha256")
    resolved = dataset.model_copy(update={"path": str(file), "sha256": digest})
    requests = _requests(resolved)  # DataError: file, record, field
    if n_edits is not None and dataset.offset + n_edits > len(requests):
        raise GridError(grid_path, f"data file {file} holds {len(requests)} edit requests; "
                        f"offset {dataset.offset} + n_edits {n_edits} needs more", field=f"{field}.path")
    return resolved


def resolve_files(grid_path: Path, axes: Axes, prefix: str) -> Axes:
    """``axes`` with every data file resolved (:func:`resolve_file`); named sets unchanged."""
    if not axes.datasets or all(d.path is None for d in axes.datasets):
        return axes
    datasets = [d if d.path is None else
                resolve_file(grid_path, d, field_path(("datasets", i), prefix), axes.n_edits)
                for i, d in enumerate(axes.datasets)]
    return axes.model_copy(update={"datasets": datasets})


def load_file_requests(dataset: DatasetSpec, n: int) -> list:
    """Exactly ``n`` requests from ``dataset.offset`` of a cell's own data file, whose
    content must still have the sha256 the cell was planned with."""
    digest = io.sha256_file(dataset.path) if Path(dataset.path).is_file() else None
    if digest is None:
        raise DataError(dataset.path, "data file not found (it was there when the grid was loaded)")
    if dataset.sha256 is not None and digest != dataset.sha256:
        raise DataError(dataset.path, f"changed since the grid was loaded: sha256 {digest}, the "
                        f"cell was planned with {dataset.sha256}; load the grid again (its "
                        "cells then get new hashes)", field="sha256")
    requests = _requests(dataset)
    if dataset.offset + n > len(requests):
        raise DataError(dataset.path, f"holds {len(requests)} edit requests; {n} asked for from "
                        f"offset {dataset.offset}", field="n")
    return requests[dataset.offset:dataset.offset + n]


def file_identity(dataset: DatasetSpec) -> dict:
    """What the provenance records about a cell's own data file."""
    return {"dataset": dataset.name, "split": dataset.split, "path": dataset.path,
            "format": dataset.format, "sha256": dataset.sha256, "offset": dataset.offset}
