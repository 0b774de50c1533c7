"""``seqedit validate``: a valid folder passes; each malformed submission is refused with a
problem naming its file (and line and field where they apply)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core import settings
from benchmark.leaderboard.build import SOURCES
from benchmark.results import RECORDS_SCHEMA_VERSION
from benchmark.validate import check_valid, validate
from tests.leaderboard.conftest import current


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _edit_lines(path: Path, fn: Callable[[list[dict]], list[dict]]) -> None:
    _write(path, fn(_lines(path)))


def _first_provenance(d: Path) -> Path:
    return sorted((d / "provenance").glob("*.json"))[0]


def _edit_provenance(d: Path, fn: Callable[[dict], None]) -> Path:
    path = _first_provenance(d)
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


def _missing_field(d):
    _edit_provenance(d, lambda p: p["git"].pop("sha"))
    return "provenance/", None, "git.sha", "git commit"


def _missing_hparams_hash(d):
    _edit_provenance(d, lambda p: p.update(hparams_hash=None))
    return "provenance/", None, "hparams_hash", "hash of the editor hyperparameters"


def _unknown_schema(d):
    _edit_lines(d / "records.jsonl", lambda rs: [dict(rs[0], schema_version=99), *rs[1:]])
    return "records.jsonl", 1, "schema_version", "unsupported schema_version 99"


def _mixed_groups(d):
    _edit_lines(d / "records.jsonl", lambda rs: [*rs[:2], dict(rs[2], batch_size=7), *rs[3:]])
    return "records.jsonl", 3, "batch_size", "mixed groups"


def _mixed_weights(d):
    _edit_provenance(d, lambda p: p["model_identity"].update(config_sha256="0" * 64))
    return "provenance", None, "model_identity", "weight identities"


def _truncated(d):
    text = (d / "records.jsonl").read_text()
    (d / "records.jsonl").write_text(text[: len(text) * 2 // 3])  # cut inside a line
    return "records.jsonl", None, None, "truncated file"


def _dropped_metric(d):
    def drop(rs):
        i = next(i for i, r in enumerate(rs) if r["n_edits"] > 0 and r["kind"] == "general")
        return rs[:i] + rs[i + 1:]
    _edit_lines(d / "records.jsonl", drop)
    return "records.jsonl", None, None, "truncated records"


def _duplicate(d):
    _edit_lines(d / "records.jsonl", lambda rs: [*rs, rs[5]])
    return "records.jsonl", None, None, "duplicate record"


def _missing_checkpoint(d):
    _edit_lines(d / "records.jsonl", lambda rs: [r for r in rs if r["n_edits"] != 4])
    return "records.jsonl", None, None, "no records for checkpoint n=4"


def _bad_json(d):
    lines = (d / "records.jsonl").read_text().splitlines(keepends=True)
    lines[10] = lines[10].replace('"n_edits": ', '"n_edits" ')
    (d / "records.jsonl").write_text("".join(lines))
    return "records.jsonl", 11, None, "not valid JSON"


def _cell_hash_mismatch(d):
    _edit_lines(d / "cells.jsonl", lambda cs: [{**cs[0], "spec": {**cs[0]["spec"], "seed": 5}},
                                               *cs[1:]])
    return "cells.jsonl", 1, "cell", "hash mismatch"


def _provenance_hash_mismatch(d):
    _edit_provenance(d, lambda p: p.update(spec_hash="f" * 64))
    return "provenance/", None, "spec_hash", "hash mismatch"


def _sample_mismatch(d):
    def bump(rows):
        rows[0]["scores"] = [s + 1.0 for s in rows[0]["scores"]]
        return rows
    _edit_lines(d / "samples.jsonl", bump)
    return "samples.jsonl", 1, "scores", "hash mismatch"


def _missing_provenance(d):
    _first_provenance(d).unlink()
    return "provenance/", None, None, "has no provenance"


def _missing_samples(d):
    (d / "samples.jsonl").unlink()
    return "samples.jsonl", None, None, "need their per-item samples"


def _foreign_record(d):
    _edit_lines(d / "records.jsonl", lambda rs: [*rs, dict(rs[0], cell="0123456789ab")])
    return "records.jsonl", None, "cell", "does not list as completed"


def _mixed_protocol(d):
    if RECORDS_SCHEMA_VERSION < 2:
        pytest.skip("protocols come with schema 2")

    def change(rs):
        i = next(i for i, r in enumerate(rs) if r["n_edits"] > 0 and r["kind"] == "general")
        rs[i]["protocol"] = "another"
        return rs
    _edit_lines(d / "records.jsonl", change)
    return "records.jsonl", None, "protocol", "mixed groups"


def _missing_grid_yaml(d):
    (d / "grid.yaml").unlink()
    return "grid.yaml", None, None, "missing"


MALFORMED = [_missing_field, _missing_hparams_hash, _unknown_schema, _mixed_groups,
             _mixed_weights, _truncated, _dropped_metric, _duplicate, _missing_checkpoint,
             _bad_json, _cell_hash_mismatch, _provenance_hash_mismatch, _sample_mismatch,
             _missing_provenance, _missing_samples, _foreign_record, _mixed_protocol,
             _missing_grid_yaml]


def test_the_fixture_folder_is_valid(submission):
    assert validate(submission) == []
    check_valid(submission)


@pytest.mark.parametrize("mutate", MALFORMED, ids=lambda f: f.__name__.strip("_"))
def test_malformed_submission_is_refused_naming_file_line_and_field(submission, mutate, capsys):
    if mutate in (_sample_mismatch, _missing_samples) and RECORDS_SCHEMA_VERSION < 2:
        pytest.skip("samples.jsonl comes with schema 2")
    file, line, field, words = mutate(submission)
    problems = validate(submission)
    hits = [p for p in problems if file in p.file and words in p.message]
    assert hits, f"no problem in {file} saying {words!r}: {[str(p) for p in problems]}"
    if line is not None:
        assert any(p.line == line for p in hits), [str(p) for p in hits]
    if field is not None:
        assert any(p.field == field for p in hits), [str(p) for p in hits]
    assert main(["validate", str(submission)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and words in out


def test_every_problem_is_reported_not_only_the_first(submission):
    _duplicate(submission)
    _missing_field(submission)
    problems = validate(submission)
    assert {"duplicate record" in p.message for p in problems} == {True, False}
    assert any(p.field == "git.sha" for p in problems)


def test_cli_accepts_a_valid_folder(submission, capsys):
    assert main(["validate", str(submission)]) == 0
    assert "valid" in capsys.readouterr().out


def test_missing_folder_is_named(tmp_path):
    problems = validate(tmp_path / "nothing")
    assert len(problems) == 1 and "not a folder" in problems[0].message


@pytest.mark.parametrize("source", SOURCES)
def test_committed_results_validate(source):
    folder = settings.REPO_ROOT / source
    assert current(folder), f"{source} is not published in schema {RECORDS_SCHEMA_VERSION}"
    assert [str(p) for p in validate(folder)] == []


def test_folder_copy_helper_keeps_the_original(submission, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(submission, copy)
    _duplicate(copy)
    assert validate(submission) == [] and validate(copy) != []
