"""Bad inputs get one named error line and a non-zero exit, and touch nothing published.

Cases: hyperparameters (layers beyond the model, wrong types, unknown fields), data files
(new malformations; tests/data/test_malformed.py covers truncated easyedit files, missing
fields, wrong types and duplicate ids of the other formats), manifests (bad sha256), CLI
numbers (0, negative, non-integer, beyond the data set or task), paths (a file where a
folder is wanted, read-only outputs and caches) and ``data verify`` after a byte changed
with the mtime restored. Every command runs in-process through ``benchmark.cli.main``.

The tests run as root, for whom ``chmod`` does not deny writes, so "read-only" is
simulated by making ``Path.mkdir`` and the writability probe's temporary file fail under
a folder, as a read-only mount would.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.data import store
from editors import hparams as hparams_mod
from tests.data.conftest import GOOD_CF, GOOD_MQUAKE, GOOD_ROME, GOOD_ZSRE, copies
from tests.reliability.conftest import tree_hashes

EDIT = ["edit", "--model", "tiny-gpt2", "--editor", "rome"]
STATS = ["stats", "--model", "tiny-gpt2", "--editor", "rome"]
EVAL = ["eval", "--model", "tiny-gpt2", "--tasks", "wikitext_heldout"]


def cli(argv: list, capsys) -> tuple[int, str]:
    """Exit code and stderr of ``seqedit ARGV`` (argparse refusals raise SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"seqedit {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def results(tmp_path) -> Path:
    """A published result folder (records, cells, a plot) that no refused command may change;
    hashed before and after each case with tests.reliability.conftest.tree_hashes."""
    root = tmp_path / "published"
    (root / "plots").mkdir(parents=True)
    (root / "records.jsonl").write_text('{"metric": "efficacy", "value": 91.5}\n')
    (root / "cells.jsonl").write_text('{"cell": "abc", "status": "completed"}\n')
    (root / "plots" / "a.png").write_bytes(bytes(range(256)))
    (root / "metrics.json").write_text("{}")
    return root


def deny_writes_under(monkeypatch, root: Path) -> None:
    """Make ``root`` and everything below it unwritable (see the module docstring)."""
    real_mkdir, real_tmp = Path.mkdir, tempfile.TemporaryFile

    def inside(p) -> bool:
        p = Path(p)
        return p == root or root in p.parents

    def mkdir(self, *args, **kwargs):
        if inside(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    def temporary_file(*args, dir=None, **kwargs):
        if dir is not None and inside(dir):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_tmp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)


# --------------------------------------------------------------------------- CLI numbers
NUMBERS = [
    (EDIT + ["--n", "0"], "--n", "≥ 1, got 0"),
    (EDIT + ["--n", "-3"], "--n", "≥ 1, got -3"),
    (EDIT + ["--n", "2.5"], "--n", "got '2.5'"),
    (EDIT + ["--n", "2", "--batch-size", "0"], "--batch-size", "≥ 1, got 0"),
    (EDIT + ["--n", "2", "--seed", "-1"], "--seed", "≥ 0, got -1"),
    (EDIT + ["--n", "2", "--limit", "0"], "--limit", "≥ 1, got 0"),
    (STATS + ["--n-samples", "0"], "--n-samples", "≥ 1, got 0"),
    (STATS + ["--threads", "0"], "--threads", "≥ 1, got 0"),
    (STATS + ["--layers", "1,-1"], "--layers", "≥ 0, got -1"),
    (STATS + ["--layers", "1,,2"], "--layers", "got '1,,2'"),
    (["grid", "--grid", "ci", "--jobs", "0"], "--jobs", "≥ 1, got 0"),
    (["grid", "--grid", "ci", "--threads", "two"], "--threads", "got 'two'"),
    (EVAL + ["--batch-size", "0"], "--batch-size", "≥ 1, got 0"),
    (EVAL + ["--max-length", "-8"], "--max-length", "≥ 1, got -8"),
]


@pytest.mark.parametrize("argv, option, words", NUMBERS, ids=[f"{a[0]} {' '.join(a[-2:])}" for a, _, _ in NUMBERS])
def test_bad_number_is_refused_when_parsed(argv, option, words, capsys):
    code, err = cli(argv, capsys)
    assert code == 2
    assert f"seqedit {argv[0]}: error: argument {option}: expected " in err and words in err
    assert "Traceback" not in err


def _hparams_file(monkeypatch, tmp_path, method: str, model: str, **changes) -> Path:
    """A copy of the hparams folder whose METHOD/MODEL.yaml has ``changes`` applied."""
    folder = tmp_path / "hparams"
    shutil.copytree(hparams_mod.HPARAMS_DIR / method, folder / method)
    path = folder / method / f"{model}.yaml"
    raw = changes.pop("_raw", None)
    path.write_text(raw or yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))
    monkeypatch.setattr(hparams_mod, "HPARAMS_DIR", folder)
    return path


# (id, argv, hparams file changes or None, words the one error line holds; "{file}": that file)
REFUSED = [
    ("edit --n beyond the data set", EDIT + ["--n", "20000"], None,
     ["data set counterfact (split edit), field 'n'", "holds 10000 edit requests", "20000"]),
    ("edit --n beyond the kept records", EDIT + ["--dataset", "zsre", "--split", "train-1k", "--n", "999"],
     None, ["data set zsre (split train-1k), field 'n'", "holds 998 edit requests"]),
    ("edit --limit beyond the task", EDIT + ["--n", "1", "--tasks", "wikitext_heldout", "--limit", "99999"],
     None, ["task wikitext_heldout, field 'limit'", "limit 99999 is more than its", "wikitext2-test"]),
    ("eval --limit beyond the task", EVAL + ["--limit", "99999"], None,
     ["task wikitext_heldout, field 'limit'", "limit 99999 is more than its", "wikitext2-test"]),
    ("eval --limit 0", EVAL + ["--limit", "0"], None, ["--limit must be at least 1, got 0"]),
    ("eval --limit not a number", EVAL + ["--limit", "ten"], None, ["--limit must be a positive integer"]),
    ("eval unknown model", ["eval", "--model", "gpt2"], None, ["unknown model 'gpt2'", "Did you mean"]),
    ("models check unknown model", ["models", "check", "NOPE"], None, ["unknown model 'NOPE'"]),
    ("stats --layers 99", STATS + ["--layers", "1,99"], None,
     ["--layers, field 'layers'", "layers [99] outside 0..3", "model tiny-gpt2 has 4 layers"]),
    ("edit --set layers=[99]", ["edit", "--model", "tiny-llama", "--editor", "memit", "--n", "2",
                                "--set", "layers=[2,99]"], None,
     ["--set layers, field 'layers'", "layers [99] outside 0..3", "model tiny-llama has 4 layers"]),
    ("edit --set wrong type", EDIT + ["--n", "2", "--set", "target.v_lr=fast"], None,
     ["{file}, field 'target.v_lr'", "valid number"]),
    ("edit --set unknown field", EDIT + ["--n", "2", "--set", "target.v_rl=0.1"], None,
     ["{file}, field 'target.v_rl'", "Extra inputs are not permitted"]),
    ("hparams file layers: [99] (stats)", STATS, {"layers": [99]},
     ["{file}, field 'layers'", "rome: layers [99] outside 0..3", "model tiny-gpt2 has 4 layers"]),
    ("hparams file layers: [99] (edit)", EDIT + ["--n", "1"], {"layers": [99]},
     ["{file}, field 'layers'", "model tiny-gpt2 has 4 layers"]),
    ("hparams file wrong type", STATS, {"layers": "six"}, ["{file}, field 'layers'", "valid list"]),
    ("hparams file unknown field", EDIT + ["--n", "1"], {"layer": 1},
     ["{file}, field 'layer'", "Extra inputs are not permitted"]),
    ("hparams file invalid YAML", STATS, {"_raw": "layers: [1\n"}, ["{file}: invalid YAML"]),
]


@pytest.mark.parametrize("argv, changes, words", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_value_is_one_named_error(argv, changes, words, results, tmp_path, monkeypatch, capsys):
    file = (_hparams_file(monkeypatch, tmp_path, "rome", "tiny-gpt2", **changes) if changes
            else hparams_mod.hparams_path("rome", "tiny-gpt2"))
    out_args = {"edit": ["--workdir", results], "eval": ["--out", results / "metrics.json"]}
    before = tree_hashes(results)
    code, err = cli(argv + out_args.get(argv[0], []), capsys)
    assert code == 2
    line = assert_one_error_line(err, argv[0])
    for w in words:
        assert w.format(file=file) in line
    assert tree_hashes(results) == before


# --------------------------------------------------------------------------- paths
@pytest.mark.parametrize("argv, read_only, words", [
    (EDIT + ["--n", "1", "--workdir", "{pub}/records.jsonl"], False,
     ["--workdir {pub}/records.jsonl: is an existing file, not a folder"]),
    (EVAL + ["--limit", "1", "--out", "{pub}"], False, ["--out {pub}: is a folder; give a file name"]),
    (EDIT + ["--n", "1", "--workdir", "{pub}/work"], True,
     ["--workdir {pub}/work: cannot write to {pub}/work", "Permission denied"]),
    (EVAL + ["--limit", "1", "--out", "{pub}/metrics.json"], True,
     ["--out {pub}/metrics.json: cannot write to {pub}", "give a writable location"]),
    (EVAL + ["--limit", "1", "--out", "{pub}/new/m.json"], True, ["--out {pub}/new/m.json: cannot write"]),
], ids=["edit --workdir FILE", "eval --out FOLDER", "edit --workdir read-only",
        "eval --out read-only folder", "eval --out under a read-only folder"])
def test_unusable_output_path_is_named(argv, read_only, words, results, monkeypatch, capsys):
    before = tree_hashes(results)
    if read_only:
        deny_writes_under(monkeypatch, results)
    code, err = cli([str(a).format(pub=results) for a in argv], capsys)
    assert code == 2
    line = assert_one_error_line(err, argv[0])
    for w in words:
        assert w.format(pub=results) in line
    assert tree_hashes(results) == before


@pytest.mark.parametrize("origin", ["env", "option"])
def test_read_only_cache_root_is_one_named_error(origin, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "ro-cache"
    deny_writes_under(monkeypatch, cache)
    argv = STATS
    if origin == "env":
        monkeypatch.setenv("SEQEDIT_CACHE", str(cache))
    else:
        argv = STATS + ["--cache-root", cache]
    code, err = cli(argv, capsys)
    assert code == 2
    line = assert_one_error_line(err, "stats")
    assert f"cache root {cache} (from {'$SEQEDIT_CACHE' if origin == 'env' else '--cache-root'}) " \
           "cannot be created: Permission denied; set SEQEDIT_CACHE to a writable folder" in line
    assert not cache.exists()


def test_read_only_verification_cache_falls_back_to_hashing(tmp_path, monkeypatch, caplog):
    root, mdir, _ = _one_data_set(tmp_path)
    cache = tmp_path / "ro-cache"
    monkeypatch.setenv("SEQEDIT_CACHE", str(cache))
    deny_writes_under(monkeypatch, cache)
    store.clear_verification_cache()
    with caplog.at_level(logging.WARNING, logger="benchmark.data.store"):
        assert store.resolve("f", data_root=root, manifest_dir=mdir) == root / "f.json"
    assert [r.getMessage() for r in caplog.records] == [
        f"data verification cache not written (cache root {cache} (from $SEQEDIT_CACHE) cannot be "
        "created: Permission denied; set SEQEDIT_CACHE to a writable folder); later runs hash the "
        "data again"]


# --------------------------------------------------------------------------- data files
def _mutated(record: dict, index: int, fn) -> list[dict]:
    recs = copies(record)
    fn(recs[index])
    return recs


def _rw(key, value):
    return lambda r: r["requested_rewrite"].__setitem__(key, value)


# (id, format, content (records, or str/bytes as written), record, field, words)
DATA = [
    ("rome-target-new-not-object", "counterfact-rome", _mutated(GOOD_ROME, 1, _rw("target_new", "English")),
     1, "requested_rewrite.target_new", "expected an object, got str"),
    ("rome-two-placeholders", "counterfact-rome", _mutated(GOOD_ROME, 1, _rw("prompt", "{} of {}")),
     1, "requested_rewrite.prompt", "exactly one '{}' placeholder"),
    ("rome-duplicate-id", "counterfact-rome", _mutated(GOOD_ROME, 2, lambda r: r.update(case_id=0)),
     2, "case_id", "duplicate id '0' (first at record 0)"),
    ("rome-no-paraphrases", "counterfact-rome",
     _mutated(GOOD_ROME, 0, lambda r: r.update(paraphrase_prompts=[])), 0, "paraphrase_prompts",
     "at least 1 item"),
    ("zsre-rephrase-list", "zsre-mend", _mutated(GOOD_ZSRE, 1, lambda r: r.update(rephrase=["x"])),
     1, "rephrase", "expected a string, got list"),
    ("zsre-missing-loc-ans", "zsre-mend", _mutated(GOOD_ZSRE, 2, lambda r: r.pop("loc_ans")),
     2, "loc_ans", "missing field"),
    ("easyedit-missing-locality-answer", "counterfact-easyedit",
     _mutated(GOOD_CF, 0, lambda r: r.pop("locality_ground_truth")), 0, "locality_ground_truth",
     "missing field"),
    ("mquake-alias-wrong-type", "mquake", _mutated(GOOD_MQUAKE, 2, lambda r: r.update(new_answer_alias=[1])),
     2, "new_answer_alias[0]", "expected a non-empty string, got 1"),
    ("mquake-truncated", "mquake", json.dumps(copies(GOOD_MQUAKE))[:300], None, None,
     "invalid JSON at line 1 column 300"),
    ("easyedit-trailing-data", "counterfact-easyedit", json.dumps(copies(GOOD_CF)) + "]", None, None,
     "Extra data"),
    ("easyedit-not-utf8", "counterfact-easyedit", b"\xff\xfe[]", None, None, "not UTF-8 text"),
]


@pytest.mark.parametrize("fmt, content, record, field, words", [c[1:] for c in DATA], ids=[c[0] for c in DATA])
def test_malformed_data_file_is_named(fmt, content, record, field, words, tmp_path, capsys):
    path = tmp_path / "data" / "f.json"
    path.parent.mkdir()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    before = tree_hashes(path.parent)
    code, err = cli(["data", "verify", "--path", path, "--format", fmt], capsys)
    assert code == 2
    line = assert_one_error_line(err, "data")
    where = str(path) + (f", record {record}" if record is not None else "") + \
        (f", field '{field}'" if field else "")
    assert f"error: {where}: " in line and words in line
    assert tree_hashes(path.parent) == before


# --------------------------------------------------------------------------- manifests, integrity
def _one_data_set(tmp_path, *, folder: bool = False, **over) -> tuple[Path, Path, Path]:
    """A data root holding data set ``f`` (a file, or a csv-dir folder) and its manifest."""
    root, mdir = tmp_path / "root", tmp_path / "manifests"
    root.mkdir()
    mdir.mkdir()
    body = {"name": "f", "description": "d", "url": "https://example.org/f/", "licence": "l",
            "mirrored": True}
    if folder:
        (root / "f" / "dev").mkdir(parents=True)
        for member, text in [("dev/a.csv", "q,a\n1,2\n"), ("dev/b.csv", "q,a\n3,4\n")]:
            (root / "f" / member).write_text(text)
        lines = "".join(f"{hashlib.sha256((root / 'f' / m).read_bytes()).hexdigest()}  {m}\n"
                        for m in ("dev/a.csv", "dev/b.csv"))
        body.update(path="f", format="csv-dir", members=["dev/a.csv", "dev/b.csv"],
                    sha256=hashlib.sha256(lines.encode()).hexdigest())
        target = root / "f" / "dev" / "b.csv"
    else:
        target = root / "f.json"
        target.write_bytes(b"[1, 2, 3]")
        body.update(path="f.json", format="json", sha256=hashlib.sha256(b"[1, 2, 3]").hexdigest())
    body.update(over)
    (mdir / "f.yaml").write_text(yaml.safe_dump(body))
    return root, mdir, target


@pytest.mark.parametrize("folder, sha, file_words, field, words", [
    (False, str.upper, "{mdir}/f.yaml", "sha256", "String should match pattern"),
    (False, lambda s: s[:63], "{mdir}/f.yaml", "sha256", "String should match pattern"),
    (False, lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"), "{root}/f.json", "sha256",
     "does not match the manifest of 'f'"),
    (True, lambda s: s[::-1], "{root}/f", "sha256", "does not match the manifest of 'f'"),
], ids=["uppercase", "63 digits", "last digit changed", "csv-dir tree hash"])
def test_bad_manifest_sha256_is_named(folder, sha, file_words, field, words, tmp_path, capsys):
    root, mdir, _ = _one_data_set(tmp_path, folder=folder)
    good = yaml.safe_load((mdir / "f.yaml").read_text())["sha256"]
    (mdir / "f.yaml").write_text(yaml.safe_dump({**yaml.safe_load((mdir / "f.yaml").read_text()),
                                                 "sha256": sha(good)}))
    before = tree_hashes(root)
    code, err = cli(["data", "verify", "f", "--data-root", root, "--manifests", mdir], capsys)
    assert code == 2
    line = assert_one_error_line(err, "data")
    assert f"{file_words.format(mdir=mdir, root=root)}, field '{field}': " in line and words in line
    assert tree_hashes(root) == before


def _change_byte(path: Path, how: str) -> None:
    """Change one byte of ``path`` keeping its size; ``how`` decides mtime and inode."""
    st = path.stat()
    blob = bytearray(path.read_bytes())
    blob[-2] ^= 0x01
    if how == "replaced by rename":  # a new inode, as an editor or rsync would leave
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(bytes(blob))
        os.replace(tmp, path)
    else:  # the same inode, rewritten in place
        with path.open("r+b") as f:
            f.write(bytes(blob))
    if how != "mtime changed":
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert (path.stat().st_ino == st.st_ino) == (how != "replaced by rename")


@pytest.mark.parametrize("folder", [False, True], ids=["file", "csv-dir"])
@pytest.mark.parametrize("how, run_cache_trusts", [
    ("in place, mtime restored", True),
    ("replaced by rename", False),
    ("mtime changed", False),
])
def test_changed_byte_is_caught_by_data_verify(folder, how, run_cache_trusts, tmp_path, monkeypatch,
                                               capsys, caplog):
    monkeypatch.setenv("SEQEDIT_CACHE", str(tmp_path / "cache"))
    root, mdir, target = _one_data_set(tmp_path, folder=folder)
    name = root / "f" if folder else target
    store.clear_verification_cache()
    store.resolve("f", data_root=root, manifest_dir=mdir)  # a run verifies and caches it
    _change_byte(target, how)
    before = tree_hashes(root)
    code, err = cli(["data", "verify", "f", "--data-root", root, "--manifests", mdir], capsys)
    assert code == 2
    line = assert_one_error_line(err, "data")
    assert f"{name}, field 'sha256': sha256 " in line and "does not match the manifest of 'f'" in line
    assert tree_hashes(root) == before
    # a later run (a new process) skips hashing only if size, mtime and inode are unchanged,
    # and says so; that is the documented limit of the run cache, not of data verify
    store.clear_verification_cache()
    with caplog.at_level(logging.INFO, logger="benchmark.data.store"):
        if run_cache_trusts:
            store.resolve("f", data_root=root, manifest_dir=mdir)
        else:
            with pytest.raises(store.ChecksumMismatch):
                store.resolve("f", data_root=root, manifest_dir=mdir)
    trusted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trusting")]
    assert trusted == ([f"trusting cached hash of {name} (size, mtime, inode unchanged)"]
                       if run_cache_trusts else [])
