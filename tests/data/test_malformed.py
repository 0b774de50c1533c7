"""Malformed data: each case gives a DataError naming file, record and field, and a
non-zero exit from ``seqedit data verify``. All files are written into tmp_path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import DataError
from benchmark.data.loaders import load_records

from .conftest import GOOD_CF, GOOD_MQUAKE, GOOD_ROME, GOOD_ZSRE, copies


def _mut(record: dict, index: int, fn, n: int = 3) -> list[dict]:
    recs = copies(record, n)
    fn(recs[index])
    return recs


def _set(key, value):
    def fn(r):
        r[key] = value
    return fn


def _del(key):
    def fn(r):
        del r[key]
    return fn


def _truncated() -> str:
    text = json.dumps(copies(GOOD_CF))
    return text[: len(text) // 2]


# (id, format, content, expected record index or None, expected field or None, words in message)
CASES = [
    ("missing-field", "counterfact-easyedit", _mut(GOOD_CF, 1, _del("target_new")), 1, "target_new",
     ["missing field"]),
    ("wrong-type", "counterfact-easyedit", _mut(GOOD_CF, 2, _set("ground_truth", 5)), 2, "ground_truth",
     ["expected a string", "int"]),
    ("empty-target", "counterfact-easyedit", _mut(GOOD_CF, 0, _set("target_new", "  ")), 0, "target_new",
     ["empty"]),
    ("subject-not-in-prompt", "counterfact-easyedit", _mut(GOOD_CF, 1, _set("subject", "Edith Piaf")), 1,
     "subject", ["does not occur in the prompt"]),
    ("duplicate-id", "counterfact-easyedit", _mut(GOOD_CF, 2, _set("case_id", 0)), 2, "case_id",
     ["duplicate id '0'", "first at record 0"]),
    ("bad-id-type", "counterfact-easyedit", _mut(GOOD_CF, 1, _set("case_id", None)), 1, "case_id",
     ["integer or non-empty string id"]),
    ("record-not-object", "counterfact-easyedit", [GOOD_CF, "oops"], 1, None, ["expected an object"]),
    ("invalid-json", "counterfact-easyedit", '[{"case_id": 0, "prompt": }]', None, None, ["invalid JSON", "line 1"]),
    ("truncated-json", "counterfact-easyedit", _truncated(), None, None, ["invalid JSON", "truncated"]),
    ("empty-file", "counterfact-easyedit", "", None, None, ["file is empty"]),
    ("empty-list", "zsre-mend", [], None, None, ["no records"]),
    ("not-a-list", "zsre-mend", GOOD_ZSRE, None, None, ["expected a JSON list", "dict"]),
    ("zsre-empty-answers", "zsre-mend", _mut(GOOD_ZSRE, 1, _set("answers", [])), 1, "answers",
     ["at least 1"]),
    ("zsre-answer-wrong-type", "zsre-mend", _mut(GOOD_ZSRE, 0, _set("answers", ["a", 3])), 0, "answers[1]",
     ["non-empty string"]),
    ("zsre-empty-alt", "zsre-mend", _mut(GOOD_ZSRE, 2, _set("alt", "")), 2, "alt", ["empty string"]),
    ("mquake-no-placeholder", "mquake",
     _mut(GOOD_MQUAKE, 1, lambda r: r["requested_rewrite"][1].__setitem__("prompt", "Madonna is a citizen of")),
     1, "requested_rewrite[1].prompt", ["'{}' placeholder"]),
    ("mquake-nested-missing", "mquake",
     _mut(GOOD_MQUAKE, 0, lambda r: r["requested_rewrite"][0]["target_new"].pop("str")), 0,
     "requested_rewrite[0].target_new.str", ["missing field"]),
    ("mquake-duplicate-case", "mquake", _mut(GOOD_MQUAKE, 2, _set("case_id", 1)), 2, "case_id", ["duplicate id"]),
    ("mquake-no-questions", "mquake", _mut(GOOD_MQUAKE, 1, _set("questions", [])), 1, "questions",
     ["at least 1"]),
    ("rome-neighborhood-type", "counterfact-rome", _mut(GOOD_ROME, 1, _set("neighborhood_prompts", "x")), 1,
     "neighborhood_prompts", ["expected a list of strings"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_record_gives_clear_error_and_nonzero_exit(case, write_json, capsys):
    _, fmt, content, record, field, words = case
    path = write_json(content)
    with pytest.raises(DataError) as info:
        load_records(path=path, format=fmt)
    err = info.value
    msg = str(err)
    assert err.file == str(path) and msg.startswith(str(path))
    assert err.record == record
    assert err.field == field
    if record is not None:
        assert f"record {record}" in msg
    if field is not None:
        assert f"field {field!r}" in msg
    for w in words:
        assert w in msg
    rc = main(["data", "verify", "--path", str(path), "--format", fmt])
    assert rc != 0
    stderr = capsys.readouterr().err
    assert str(path) in stderr and "error" in stderr


def test_good_files_pass_every_format(write_json, capsys):
    for fmt, rec in [("counterfact-easyedit", GOOD_CF), ("zsre-mend", GOOD_ZSRE), ("mquake", GOOD_MQUAKE),
                     ("counterfact-rome", GOOD_ROME)]:
        path = write_json(copies(rec), name=f"{fmt}.json")
        assert len(load_records(path=path, format=fmt)) == 3
        assert main(["data", "verify", "--path", str(path), "--format", fmt]) == 0
    assert "3 records valid" in capsys.readouterr().out


def test_cli_entry_point_exits_nonzero(write_json):
    """The real entry point (python -m benchmark), as a user runs it."""
    path = write_json(_mut(GOOD_CF, 1, _del("prompt")))
    proc = subprocess.run([sys.executable, "-m", "benchmark", "data", "verify", "--path", str(path),
                           "--format", "counterfact-easyedit"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"{path}, record 1, field 'prompt': missing field" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- manifests + files
def _manifest(tmp: Path, file_name: str, **over) -> Path:
    name = file_name
    mdir = tmp / "manifests"
    mdir.mkdir(exist_ok=True)
    body = {"name": name, "description": "test data", "path": f"{name}.json",
            "url": f"https://example.org/{name}.json", "format": "counterfact-easyedit",
            "licence": "test", "mirrored": True, "sha256": "0" * 64}
    body.update(over)
    import yaml

    (mdir / f"{file_name}.yaml").write_text(yaml.safe_dump(body))
    return mdir


def _root_with(tmp: Path, name: str, records) -> tuple[Path, str]:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    blob = json.dumps(records).encode()
    (root / f"{name}.json").write_bytes(blob)
    return root, hashlib.sha256(blob).hexdigest()


def test_wrong_sha256(tmp_path, capsys):
    from benchmark.data import ChecksumMismatch, resolve

    root, _ = _root_with(tmp_path, "cf", copies(GOOD_CF))
    mdir = _manifest(tmp_path, "cf", sha256="a" * 64)
    with pytest.raises(ChecksumMismatch) as info:
        resolve("cf", data_root=root, manifest_dir=mdir)
    assert info.value.field == "sha256" and str(root / "cf.json") in str(info.value)
    assert "a" * 64 in str(info.value) and "https://example.org/cf.json" in str(info.value)
    rc = main(["data", "verify", "cf", "--data-root", str(root), "--manifests", str(mdir)])
    assert rc != 0 and "does not match the manifest" in capsys.readouterr().err


def test_wrong_size_is_reported_before_hashing(tmp_path):
    from benchmark.data import ChecksumMismatch, resolve

    root, sha = _root_with(tmp_path, "cf", copies(GOOD_CF))
    mdir = _manifest(tmp_path, "cf", sha256=sha, size=(root / "cf.json").stat().st_size + 10)
    with pytest.raises(ChecksumMismatch, match="truncated or a different version") as info:
        resolve("cf", data_root=root, manifest_dir=mdir)
    assert info.value.field == "size"


def test_missing_file_names_setting_path_and_url(tmp_path, capsys):
    from benchmark.data import MissingData, resolve

    root = tmp_path / "root"
    root.mkdir()
    mdir = _manifest(tmp_path, "cf")
    with pytest.raises(MissingData) as info:
        resolve("cf", data_root=root, manifest_dir=mdir)
    msg = str(info.value)
    assert "SEQEDIT_DATA" in msg and str(root / "cf.json") in msg and "https://example.org/cf.json" in msg
    rc = main(["data", "verify", "cf", "--data-root", str(root), "--manifests", str(mdir)])
    assert rc != 0 and "SEQEDIT_DATA" in capsys.readouterr().err


def test_verify_all_fails_when_a_mirrored_file_is_bad(tmp_path, capsys):
    root, sha = _root_with(tmp_path, "good", copies(GOOD_CF))
    (root / "bad.json").write_text(json.dumps(_mut(GOOD_CF, 1, _del("subject"))))
    _manifest(tmp_path, "good", sha256=sha)
    mdir = _manifest(tmp_path, "bad", sha256=hashlib.sha256((root / "bad.json").read_bytes()).hexdigest())
    _manifest(tmp_path, "netonly", mirrored=False, sha256=None)
    rc = main(["data", "verify", "--data-root", str(root), "--manifests", str(mdir)])
    out, err = capsys.readouterr()
    assert rc != 0
    assert "ok  good" in out and "BAD bad" in out and "record 1, field 'subject'" in out
    assert "--  netonly: absent (network only" in out
    assert "1 data set(s) failed" in err


@pytest.mark.parametrize("over, field, words", [
    ({"sha256_typo": "x"}, "sha256_typo", "unknown key"),
    ({"sha256": "xyz"}, "sha256", "pattern"),
    ({"format": "parquet"}, "format", "Input should be"),
    ({"path": "../outside.json"}, "path", "inside the data root"),
    ({"url": "ftp://example.org/x"}, "url", "pattern"),
    ({"name": "other"}, "name", "differs from the file name"),
    ({"mirrored": True, "sha256": None}, "(top level)", "must pin its sha256"),
    ({"records": -1}, "records", "greater than or equal"),
])
def test_bad_manifest_names_file_and_field(tmp_path, capsys, over, field, words):
    from benchmark.data import resolve

    root, _ = _root_with(tmp_path, "cf", copies(GOOD_CF))
    mdir = _manifest(tmp_path, "cf", **over)
    with pytest.raises(DataError) as info:
        resolve("cf", data_root=root, manifest_dir=mdir)
    assert info.value.file == str(mdir / "cf.yaml")
    assert info.value.field == field
    assert words in str(info.value)
    rc = main(["data", "list", "--data-root", str(root), "--manifests", str(mdir)])
    assert rc != 0 and str(mdir / "cf.yaml") in capsys.readouterr().err


def test_manifest_invalid_yaml(tmp_path):
    from benchmark.data.manifest import parse_manifest

    f = tmp_path / "x.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(DataError, match="invalid YAML") as info:
        parse_manifest(f)
    assert info.value.file == str(f)


def test_unknown_dataset_and_split(tmp_path):
    from benchmark.core.registry import UnknownName
    from benchmark.data import load_requests

    with pytest.raises(UnknownName, match="Did you mean 'counterfact-edit'"):
        load_requests("counterfact-edt")
    with pytest.raises(DataError, match="unknown split 'test'") as info:
        load_requests("counterfact", split="test")
    assert info.value.field == "split"
    with pytest.raises(DataError, match="holds no edit requests"):
        load_requests("gsm8k-test")
