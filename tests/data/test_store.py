"""Manifests against the mirror, cached verification, and fetch without the network."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import yaml

from benchmark import data as bdata
from benchmark.core.errors import DataError
from benchmark.core.settings import NetworkRequired
from benchmark.data import store


def test_every_mirrored_manifest_verifies(data_root):
    manifests = bdata.load_manifests()
    assert len(manifests) >= 25
    for name, m in manifests.items():
        if m.mirrored:
            path = bdata.resolve(name, data_root=data_root)
            assert path == data_root / m.path and path.exists()


def test_manifest_hashes_recomputed_independently(data_root):
    # hashlib over the raw bytes, not benchmark.core.io; and sha256sum-style lines for folders
    for m in bdata.load_manifests().values():
        if not m.mirrored:
            continue
        target = data_root / m.path
        if m.is_dir:
            lines = "".join(f"{hashlib.sha256((target / f).read_bytes()).hexdigest()}  {f}\n"
                            for f in sorted(m.members))
            assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.csv")) == sorted(m.members)
            got = hashlib.sha256(lines.encode()).hexdigest()
        else:
            got = hashlib.sha256(target.read_bytes()).hexdigest()
            assert m.size == target.stat().st_size
        assert got == m.sha256, m.name


def test_manifest_record_counts(data_root):
    for m in bdata.load_manifests().values():
        if not m.mirrored or m.records is None:
            continue
        path = data_root / m.path
        if m.format in ("jsonl", "lines"):
            n = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        elif m.format == "tsv":
            n = len(path.read_text(encoding="utf-8").splitlines()) - 1
        elif m.format in ("json", "counterfact-easyedit", "zsre-mend", "mquake"):
            n = len(json.loads(path.read_text(encoding="utf-8")))
        else:
            continue
        assert n == m.records, m.name


def test_loaders_on_the_mirror(data_root):
    cf = bdata.load_requests("counterfact", "val")
    assert len(cf) == 1919 and all(r.subject in r.prompt for r in cf)
    assert cf[0].locality[0][1] and cf[0].rephrase_prompts[0]
    zs = bdata.load_requests("zsre", "train-1k")
    assert len(zs) == 998  # records 534 and 723 are excluded by the manifest (empty 'alt')
    assert {r.case_id for r in zs}.isdisjoint({"534", "723"})
    assert zs[0].locality[0][0].startswith("nq question: ")
    cases = bdata.load_mquake_cases(limit=5)
    assert len(cases) == 5 and all(len(c.requests) == 4 for c in cases)
    flat = bdata.load_requests("mquake", limit=5)
    assert [r.case_id for r in flat[:4]] == [f"{cases[0].case_id}/{j}" for j in range(4)]
    assert all("{}" not in r.prompt and r.subject in r.prompt for r in flat)
    assert len(bdata.load_requests("counterfact", limit=7)) == 7
    with pytest.raises(ValueError, match="positive integer"):
        bdata.load_requests("counterfact", limit=0)


def _one_file_setup(tmp_path, content: bytes, **over):
    root = tmp_path / "root"
    mdir = tmp_path / "manifests"
    root.mkdir()
    mdir.mkdir()
    (root / "f.json").write_bytes(content)
    body = {"name": "f", "description": "d", "path": "f.json", "url": "https://example.org/f.json",
            "format": "json", "licence": "l", "mirrored": True, "sha256": hashlib.sha256(content).hexdigest()}
    body.update(over)
    (mdir / "f.yaml").write_text(yaml.safe_dump(body))
    return root, mdir


def test_verification_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    root, mdir = _one_file_setup(tmp_path, b"[1, 2, 3]")
    calls = []
    real = store.bio.sha256_file
    monkeypatch.setattr(store.bio, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    bdata.resolve("f", data_root=root, manifest_dir=mdir)
    bdata.resolve("f", data_root=root, manifest_dir=mdir)
    assert len(calls) == 1
    store.clear_verification_cache()  # a new process: the on-disk cache answers
    bdata.resolve("f", data_root=root, manifest_dir=mdir)
    assert len(calls) == 1
    # same size, new content and mtime: re-hashed and rejected
    (root / "f.json").write_bytes(b"[1, 2, 4]")
    os.utime(root / "f.json", ns=(1, 1))
    with pytest.raises(bdata.ChecksumMismatch):
        bdata.resolve("f", data_root=root, manifest_dir=mdir)
    assert len(calls) == 2


def test_fetch_offline_fails_fast_without_network(tmp_path, monkeypatch):
    root, mdir = _one_file_setup(tmp_path, b"[]")
    monkeypatch.setenv("SEQEDIT_OFFLINE", "1")
    monkeypatch.setattr(store, "_download", lambda url, **kw: pytest.fail("tried to download"))
    with pytest.raises(NetworkRequired, match="SEQEDIT_OFFLINE"):
        bdata.fetch("f", data_root=root, manifest_dir=mdir)


def test_fetch_cli_offline_exits_nonzero(capsys, tmp_path, monkeypatch):
    """Offline, fetching a file the data root lacks fails fast, naming the network."""
    from benchmark.cli import main

    monkeypatch.setenv("SEQEDIT_DATA", str(tmp_path))  # an empty data root: the file is missing
    monkeypatch.setenv("SEQEDIT_OFFLINE", "1")
    assert main(["data", "fetch", "gsm8k-test"]) != 0
    assert "network" in capsys.readouterr().err


def test_fetch_pickle_transform_and_checksum(tmp_path, monkeypatch):
    obj = [{"sentence": "été", "label": 1}, {"sentence": "b", "label": 0}]
    expected = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    root, mdir = _one_file_setup(tmp_path, b"", transform="pickle-to-json",
                                 sha256=hashlib.sha256(expected).hexdigest())
    (root / "f.json").unlink()
    monkeypatch.setenv("SEQEDIT_OFFLINE", "0")
    monkeypatch.setattr(store, "_download", lambda url, **kw: pickle.dumps(obj))
    path = bdata.fetch("f", data_root=root, manifest_dir=mdir)
    assert path.read_bytes() == expected
    # a pickle that names a class is refused, naming the URL and the opcode
    monkeypatch.setattr(store, "_download", lambda url, **kw: pickle.dumps(store.MissingData("x", "y")))
    with pytest.raises(DataError, match=r"https://example\.org/f\.json: data set 'f': .*GLOBAL is not plain data"):
        bdata.fetch("f", data_root=root, manifest_dir=mdir, force=True)
    # a download with the wrong hash writes nothing
    (root / "f.json").unlink()
    monkeypatch.setattr(store, "_download", lambda url, **kw: pickle.dumps([1]))
    with pytest.raises(bdata.ChecksumMismatch):
        bdata.fetch("f", data_root=root, manifest_dir=mdir)
    assert not (root / "f.json").exists()


def test_mquake_cases_rebuilt_from_flat_requests(data_root):
    from benchmark.data.loaders import cases_from_requests

    cases = bdata.load_mquake_cases(limit=3)
    flat = bdata.load_requests("mquake", limit=3)
    rebuilt = cases_from_requests(flat)
    assert [(c.case_id, c.questions, c.answer, c.answer_alias, c.new_answer, c.new_answer_alias)
            for c in rebuilt] == [(c.case_id, c.questions, c.answer, c.answer_alias, c.new_answer,
                                   c.new_answer_alias) for c in cases]
    # a case with only some of its edits (first-n timing cut inside it) is left out
    assert [c.case_id for c in cases_from_requests(flat[:6])] == [cases[0].case_id]
