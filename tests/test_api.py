"""The Python API (benchmark.api): load a grid, run a cell, load results as DataFrames.
Records and samples are checked against the JSON Lines files parsed here by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark import SUITE_VERSION, api
from benchmark.core.errors import DataError

GRID = """schema_version: 1
name: apitest
models: [tiny-llama]
editors: [rome]
datasets: [{name: counterfact, split: edit}]
n_edits: 2
checkpoints: [0, 2]
trajectories: [none, {kind: rect, keep: 0.4}]
evaluation: {tasks: [], spectrum: false}
run: {threads: 1}
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    (root / "apitest.yaml").write_text(GRID, encoding="utf-8")
    grid = api.load_grid(root / "apitest.yaml")
    outcome = api.run_grid(grid, workdir=root / "wd", out=root / "out")
    assert not outcome.failed, [s.reason for s in outcome.failed]
    return grid, root


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cells_lists_the_grid(ran):
    grid, _ = ran
    table = api.cells(grid)
    assert list(table["cell"]) == [c.short_hash for c in grid.cells]
    assert list(table["trajectory"]) == ["none", "rect-0.4"]
    assert set(table["model"]) == {"tiny-llama"} and list(table["n_edits"]) == [2, 2]


def test_load_records_matches_the_file(ran):
    _, root = ran
    raw = _jsonl(root / "out" / "records.jsonl")
    frame = api.load_records(root / "out")
    assert len(frame) == len(raw)
    for row, rec in zip(frame.to_dict("records"), raw):
        for key in ("cell", "metric", "n_edits", "variant", "task"):
            assert row[key] == rec[key]
        assert (math.isnan(row["value"]) if rec["value"] is None
                else row["value"] == pytest.approx(rec["value"], rel=0, abs=0))
    assert api.load_records(root / "out" / "records.jsonl").equals(frame)


def test_load_samples_has_one_row_per_item(ran):
    _, root = ran
    raw = _jsonl(root / "out" / "samples.jsonl")
    samples = api.load_samples(root / "out")
    assert isinstance(samples, pd.DataFrame)
    assert len(samples) == sum(len(r["ids"]) for r in raw)
    first = raw[0]
    rows = samples[(samples.cell == first["cell"]) & (samples.metric == first["metric"])
                   & (samples.n_edits == first["n_edits"]) & (samples.variant == first["variant"])]
    assert list(rows["id"]) == first["ids"] and list(rows["score"]) == first["scores"]


def test_load_results_bundles_records_samples_and_cells(ran):
    grid, root = ran
    results = api.load_results(root / "out")
    assert list(results.cells["status"]) == ["completed", "completed"]
    assert set(results.records["cell"]) == {c.short_hash for c in grid.cells}
    assert results.samples is not None


def test_run_cell_gives_the_grids_records(ran):
    grid, root = ran
    cell = grid.cells[1]
    # a fresh work folder: the cell really runs here
    result = api.run_cell(grid, cell.slug, workdir=root / "wd-cell")
    assert result.status.status == "completed"
    assert result.folder == root / "wd-cell" / SUITE_VERSION / "apitest" / cell.folder
    key = ("n_edits", "variant", "kind", "task", "metric")
    published = {tuple(r[k] for k in key): r["value"]
                 for r in _jsonl(root / "out" / "records.jsonl") if r["cell"] == cell.short_hash}
    mine = {tuple(r[k] for k in key): None if pd.isna(r["value"]) else r["value"]
            for r in result.records.to_dict("records")}
    assert mine == published and len(result.records) == len(published)
    # run again: completed, not recomputed (same records)
    again = api.run_cell(grid, cell.short_hash, workdir=root / "wd-cell")
    assert again.records.equals(result.records)


def test_missing_results_are_named(tmp_path):
    with pytest.raises(DataError, match="no records here"):
        api.load_records(tmp_path)
    assert api.load_samples(tmp_path) is None
