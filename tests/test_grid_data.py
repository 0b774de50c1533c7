"""Data files of one's own in grid files (``datasets: [{path: FILE, format: F}]``): resolved
against the grid file's folder, hashed (sha256 by hashlib here) into the cell spec and the
provenance, validated record by record with the file, record and field named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmark.core.errors import DataError
from benchmark.grid import load_grid
from benchmark.grid_data import load_file_requests
from benchmark.grid_schema import GridError
from benchmark.spec import DatasetSpec
from tests.runner.conftest import FAKE_NAMES


def counterfact_record(i: int) -> dict:
    return {"case_id": i, "prompt": f"Person {i} speaks", "subject": f"Person {i}",
            "target_new": "French", "ground_truth": "English",
            "rephrase_prompt": f"The language of Person {i} is",
            "locality_prompt": "Paris is the capital of", "locality_ground_truth": "France"}


def zsre_record(i: int) -> dict:
    return {"subject": f"Thing {i}", "src": f"What is Thing {i} made of?", "alt": "wood",
            "answers": ["stone"], "pred": "stone", "rephrase": f"Thing {i} is made of what?",
            "loc": "nq question: who wrote hamlet", "loc_ans": "Shakespeare"}


def write_grid(folder: Path, dataset: str, n_edits: int = 4) -> Path:
    path = folder / "own.yaml"
    path.write_text(f"""schema_version: 1
name: own
models: [tiny-llama]
editors: [rome]
datasets: [{dataset}]
n_edits: {n_edits}
checkpoints: [0, {n_edits}]
""", encoding="utf-8")
    return path


def write_json(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_file_is_resolved_hashed_and_named(tmp_path):
    data = write_json(tmp_path / "data" / "my facts.json", [counterfact_record(i) for i in range(6)])
    grid = load_grid(write_grid(tmp_path, "{path: data/my facts.json, format: counterfact}"), FAKE_NAMES)
    (cell,) = grid.cells
    d = cell.dataset
    assert d.path == str(data.resolve())
    assert d.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (d.name, d.split, d.format) == ("my_facts", "file", "counterfact-easyedit")
    assert cell.canonical()["dataset"]["sha256"] == d.sha256


def test_changed_content_changes_the_cell_hash(tmp_path):
    data = write_json(tmp_path / "facts.json", [counterfact_record(i) for i in range(6)])
    grid_file = write_grid(tmp_path, "{path: facts.json, format: counterfact}")
    before = load_grid(grid_file, FAKE_NAMES).cells[0].short_hash
    write_json(data, [counterfact_record(i) for i in range(1, 7)])
    assert load_grid(grid_file, FAKE_NAMES).cells[0].short_hash != before


def test_named_sets_keep_their_hash_input():
    """Unset file fields are not part of the hash input (named sets' cells keep their hashes)."""
    assert DatasetSpec(name="counterfact").canonical() == {"name": "counterfact", "split": "edit",
                                                           "offset": 0}


def test_zsre_file_loads_and_a_cell_gets_its_requests(tmp_path):
    write_json(tmp_path / "z.json", [zsre_record(i) for i in range(5)])
    grid = load_grid(write_grid(tmp_path, "{path: z.json, format: zsre, offset: 1, zsre_target: alt}", 3), FAKE_NAMES)
    d = grid.cells[0].dataset
    assert d.format == "zsre-mend"
    reqs = load_file_requests(d, 3)
    assert [r.prompt for r in reqs] == [f"What is Thing {i} made of?" for i in (1, 2, 3)]
    assert [r.target_new for r in reqs] == ["wood"] * 3


def test_a_bad_record_names_file_record_and_field(tmp_path):
    records = [counterfact_record(i) for i in range(6)]
    del records[3]["target_new"]
    data = write_json(tmp_path / "facts.json", records)
    with pytest.raises(DataError) as info:
        load_grid(write_grid(tmp_path, "{path: facts.json, format: counterfact}"), FAKE_NAMES)
    assert str(data.resolve()) in str(info.value)
    assert "record 3" in str(info.value) and "target_new" in str(info.value)


@pytest.mark.parametrize("dataset, field, words", [
    ("{path: nowhere.json, format: counterfact}", "datasets[0].path", "not found"),
    ("{path: facts.json, format: counterfact, sha256: '" + "0" * 64 + "'}", "datasets[0].sha256",
     "the grid says"),
    ("{path: facts.json}", "datasets[0]", "format: required"),
    ("{path: facts.json, format: csv}", "format", "unknown format 'csv'"),
])
def test_unusable_entries_are_named(tmp_path, dataset, field, words):
    write_json(tmp_path / "facts.json", [counterfact_record(i) for i in range(6)])
    with pytest.raises(DataError) as info:
        load_grid(write_grid(tmp_path, dataset), FAKE_NAMES)
    assert field in str(info.value) and words in str(info.value)


def test_too_few_requests_is_a_grid_error(tmp_path):
    write_json(tmp_path / "facts.json", [counterfact_record(i) for i in range(3)])
    with pytest.raises(GridError, match=r"holds 3 edit requests; offset 0 \+ n_edits 4"):
        load_grid(write_grid(tmp_path, "{path: facts.json, format: counterfact}"), FAKE_NAMES)


def test_a_file_changed_after_planning_is_refused_when_the_cell_runs(tmp_path):
    data = write_json(tmp_path / "facts.json", [counterfact_record(i) for i in range(6)])
    d = load_grid(write_grid(tmp_path, "{path: facts.json, format: counterfact}"), FAKE_NAMES).cells[0].dataset
    write_json(data, [counterfact_record(i) for i in range(7)])
    with pytest.raises(DataError, match="changed since the grid was loaded"):
        load_file_requests(d, 4)
