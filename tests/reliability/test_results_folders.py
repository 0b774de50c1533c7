"""Result folders, completion markers and caches: `seqedit report` and `compare` on bad
records, a corrupt ``done.json``, a damaged shared baselines cache.

Each case: the exit code, the message naming the file, record (line) and field, and the
published folder byte-identical afterwards (for a run that succeeds: everything but the
provenance files, whose wall times differ)."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmark.results import RECORDS_SCHEMA_VERSION
from tests.reliability.conftest import tree_hashes


def _set_line(path, i: int, **fields) -> None:
    """Set ``fields`` in the i-th line (1-based) of a JSONL file."""
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[i - 1])
    row.update(fields)
    lines[i - 1] = json.dumps(row, sort_keys=True) + "\n"
    path.write_text("".join(lines))


def _results_only(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if not k.startswith("provenance/")}


# ------------------------------------------------------------------------- report
def _empty(p):
    p.write_text("")


def _blank_lines(p):
    p.write_text("\n  \n\n")


def _missing(p):
    p.unlink()


def _schema_next(p):
    _set_line(p, 2, schema_version=RECORDS_SCHEMA_VERSION + 1)


def _truncated(p):
    p.write_bytes(p.read_bytes()[:-40])


def _extra_field(p):
    _set_line(p, 3, colour="blue")


def _value_text(p):
    _set_line(p, 4, value="high")


# (case id, damage, words in the message)
BAD_RECORDS = [
    ("empty", _empty, ["records.jsonl", "holds no records"]),
    ("blank-lines", _blank_lines, ["records.jsonl", "holds no records"]),
    ("missing", _missing, ["records.jsonl", "no records file"]),
    ("schema-version-next", _schema_next, ["records.jsonl", "record line 2",
                                           "field 'schema_version'",
                                           f"unsupported schema_version {RECORDS_SCHEMA_VERSION + 1}"]),
    ("truncated-line", _truncated, ["records.jsonl", "record line", "Invalid JSON"]),
    ("extra-field", _extra_field, ["records.jsonl", "record line 3", "field 'colour'"]),
    ("value-not-a-number", _value_text, ["records.jsonl", "record line 4", "field 'value'"]),
]


@pytest.mark.parametrize("case,damage,words", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_report_on_bad_records_is_an_error_and_deletes_nothing(published, cli, case, damage, words):
    damage(published.out / "records.jsonl")
    before = published.hashes()
    assert any(k.startswith("plots/") for k in before)
    res = cli("report", str(published.out))
    assert res.code == 2
    assert res.err.startswith("seqedit report: error: " + str(published.out / "records.jsonl"))
    for w in words:
        assert w in res.err, (w, res.err)
    assert published.hashes() == before


def test_report_on_a_missing_folder(cli, tmp_path):
    res = cli("report", str(tmp_path / "nowhere"))
    assert res.code == 2 and str(tmp_path / "nowhere" / "records.jsonl") in res.err
    assert not (tmp_path / "nowhere").exists()


# ------------------------------------------------------------------------- compare
@pytest.mark.parametrize("side", ["base", "new"])
@pytest.mark.parametrize("value", [RECORDS_SCHEMA_VERSION + 1, 0, "one"], ids=["next", "v0", "text"])
def test_compare_refuses_unknown_schema_version(published, cli, tmp_path, side, value):
    other = tmp_path / "other"
    shutil.copytree(published.out, other)
    _set_line(other / "records.jsonl", 5, schema_version=value)
    before, other_before = published.hashes(), tree_hashes(other)
    args = [str(other), str(published.out)] if side == "base" else [str(published.out), str(other)]
    res = cli("compare", *args)
    assert res.code == 2
    assert f"{other / 'records.jsonl'}, record line 5, field 'schema_version'" in res.err
    assert published.hashes() == before and tree_hashes(other) == other_before


# ------------------------------------------------------------------------- done.json
def _garbage(p):
    p.write_text("{not json")


def _half(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _done_empty(p):
    p.write_text("")


def _wrong_hash(p):
    d = json.loads(p.read_text())
    d["records_sha256"] = "0" * 64
    p.write_text(json.dumps(d))


def _wrong_count(p):
    d = json.loads(p.read_text())
    d["records"] += 1
    p.write_text(json.dumps(d))


def _a_list(p):
    p.write_text("[1, 2]")


BAD_DONE = [("garbage", _garbage, "corrupt completion marker"),
            ("truncated", _half, "corrupt completion marker"),
            ("empty", _done_empty, "corrupt completion marker"),
            ("wrong-records-sha256", _wrong_hash, "completion marker does not match the cell's records"),
            ("wrong-count", _wrong_count, "completion marker does not match the cell's records"),
            ("not-a-mapping", _a_list, "completion marker does not match the cell's records")]


@pytest.mark.parametrize("case,damage,words", BAD_DONE, ids=[c[0] for c in BAD_DONE])
def test_corrupt_done_json_is_named_and_recomputed(published, cli, case, damage, words):
    done = published.cell_dir(0) / "done.json"
    damage(done)
    before = _results_only(published.hashes())
    res = cli(*published.argv("--resume"))
    assert res.code == 0, res.err
    assert f"{done}: {words}" in res.err and "recomputing the cell" in res.err
    assert "2 completed, 0 not completed" in res.out
    assert _results_only(published.hashes()) == before  # same records, cells, tables, plots
    assert json.loads(done.read_text())["status"] == "completed"


@pytest.mark.parametrize("case,damage,words", BAD_DONE[:2] + BAD_DONE[3:4],
                         ids=[c[0] for c in BAD_DONE[:2] + BAD_DONE[3:4]])
def test_corrupt_done_json_of_a_cell_not_run_is_failed_everywhere(published, cli, tmp_path,
                                                                 case, damage, words):
    """Publishing into a new folder a cell this run did not run: its corrupt marker makes
    it failed in cells.jsonl (with the reason) and none of its records are published."""
    done = published.cell_dir(1) / "done.json"
    damage(done)
    out = tmp_path / "new-out"
    argv = published.argv("--resume", "--cells", published.grid.cells[0].short_hash)
    argv[argv.index("--out") + 1] = str(out)
    res = cli(*argv)
    assert res.code == 0, res.err
    rows = {r["cell"]: r for r in map(json.loads, (out / "cells.jsonl").read_text().splitlines())}
    bad = rows[published.grid.cells[1].short_hash]
    assert bad["status"] == "failed" and f"{done}: {words}" in bad["reason"]
    cells_with_records = {json.loads(line)["cell"]
                          for line in (out / "records.jsonl").read_text().splitlines()}
    assert cells_with_records == {published.grid.cells[0].short_hash}


# ------------------------------------------------------------------------- baselines cache
def _foreign_key(p):
    d = json.loads(p.read_text())
    d["key"] = {"model": "another"}
    p.write_text(json.dumps(d))


def _no_metrics(p):
    d = json.loads(p.read_text())
    del d["metrics"]
    p.write_text(json.dumps(d))


def _bad_metric(p):
    d = json.loads(p.read_text())
    d["metrics"] = {"efficacy": {"value": 1.0, "n": 2, "colour": "blue"}}
    p.write_text(json.dumps(d))


BAD_BASELINES = [("truncated", _half, "Expecting"), ("empty", _done_empty, "Expecting value"),
                 ("garbage", _garbage, "Expecting"), ("foreign-key", _foreign_key, "key differs"),
                 ("no-metrics", _no_metrics, "metrics"), ("bad-metric", _bad_metric, "colour")]


@pytest.mark.parametrize("case,damage,words", BAD_BASELINES, ids=[c[0] for c in BAD_BASELINES])
def test_damaged_baselines_cache_is_named_and_rebuilt(published, cli, case, damage, words):
    files = sorted((published.wd / "baselines").glob("*.json"))
    assert len(files) == 2  # editing and general evaluations of the unedited model
    for f in files:
        damage(f)
    shutil.rmtree(published.cell_dir(0))  # the cell recomputes checkpoint 0 from the cache
    before = _results_only(published.hashes())
    res = cli(*published.argv("--resume"))
    assert res.code == 0, res.err
    for f in files:
        assert f"{f}: unusable baseline cache entry" in res.err and words in res.err
        assert json.loads(f.read_text())["metrics"]  # rebuilt
    assert _results_only(published.hashes()) == before
