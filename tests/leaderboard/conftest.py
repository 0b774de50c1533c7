"""Fixtures: result folders of the current schema, built from a committed folder.

A committed folder of an older schema is upgraded as a submission of the current one
would look: records gain a ``scorer`` and ``protocol``; every editing and general record
gets a ``samples.jsonl`` row whose items give the record's value (scores equal to the
value, or, for a perplexity, log-likelihoods with unit weights)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from benchmark.core import settings
from benchmark.results import RECORDS_SCHEMA_VERSION
from benchmark.spec import CellSpec

COMMITTED = settings.RESULTS_DIR / "v1"
SCORERS = {"editing": "teacher-forced", "general": "lm-eval", "spectrum": "svd"}


def _sample(rec: dict) -> dict | None:
    if rec["kind"] == "spectrum" or rec["value"] is None:
        return None
    n = max(int(rec["n"]), 1)
    ids = [f"item-{i}" for i in range(n)]
    if rec["metric"] in ("word_perplexity", "byte_perplexity"):
        stat, scores, weights = rec["metric"], [-math.log(rec["value"])] * n, [1.0] * n
    elif rec["metric"] == "bits_per_byte":
        stat, scores, weights = "bits_per_byte", [-rec["value"] * math.log(2)] * n, [1.0] * n
    else:
        stat, scores, weights = "mean", [rec["value"]] * n, None
    return {"schema_version": RECORDS_SCHEMA_VERSION, "cell": rec["cell"], "n_edits": rec["n_edits"],
            "variant": rec["variant"], "kind": rec["kind"], "task": rec["task"],
            "metric": rec["metric"], "statistic": stat, "ids": ids, "scores": scores,
            "weights": weights}


def _dump(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def _rehash(dst: Path) -> dict[str, str]:
    """Renames cells to the hash the current spec code gives their spec (cells.jsonl and
    provenance); returns old id -> new id."""
    cells = [json.loads(x) for x in (dst / "cells.jsonl").read_text().splitlines()]
    ids = {}
    for c in cells:
        spec = CellSpec.model_validate(c["spec"])
        ids[c["cell"]] = spec.short_hash
        old = dst / "provenance" / f"{c['folder']}.json"
        c.update(schema_version=RECORDS_SCHEMA_VERSION, cell=spec.short_hash, folder=spec.folder)
        if old.is_file():
            data = json.loads(old.read_text())
            data.update(schema_version=RECORDS_SCHEMA_VERSION, cell=spec.short_hash,
                        spec_hash=spec.spec_hash())
            old.unlink()
            (dst / "provenance" / f"{spec.folder}.json").write_text(
                json.dumps(data, indent=2, sort_keys=True) + "\n")
    (dst / "cells.jsonl").write_text(_dump(cells))
    return ids


def upgraded_copy(src: Path, dst: Path) -> Path:
    """A copy of the result folder ``src`` at ``dst`` in the current schema (cells renamed
    to the hash the current spec code gives them)."""
    shutil.copytree(src, dst)
    if RECORDS_SCHEMA_VERSION < 2:
        return dst
    ids = _rehash(dst)
    records = [json.loads(x) for x in (dst / "records.jsonl").read_text().splitlines()]
    samples = []
    for r in records:
        r["cell"] = ids[r["cell"]]
        if r["schema_version"] < 2:
            r.update(schema_version=RECORDS_SCHEMA_VERSION, scorer=SCORERS[r["kind"]],
                     protocol=f"{r['task']}:default")
        if (s := _sample(r)) is not None:
            samples.append(s)
    (dst / "records.jsonl").write_text(_dump(records))
    if not (dst / "samples.jsonl").is_file():
        (dst / "samples.jsonl").write_text(_dump(samples))
    return dst


@pytest.fixture(scope="session")
def _ci_template(tmp_path_factory) -> Path:
    return upgraded_copy(COMMITTED / "ci", tmp_path_factory.mktemp("template") / "ci")


@pytest.fixture()
def submission(_ci_template, tmp_path) -> Path:
    """A fresh, valid result folder (the committed ci grid in the current schema)."""
    dst = tmp_path / "ci"
    shutil.copytree(_ci_template, dst)
    return dst


def current(folder: Path) -> bool:
    """Whether ``folder`` holds results of the schema this suite writes."""
    if not (folder / "records.jsonl").is_file():
        return False
    first = json.loads((folder / "records.jsonl").read_text().splitlines()[0])
    return first["schema_version"] == RECORDS_SCHEMA_VERSION


def site_sources(root: Path) -> list[Path]:
    """The result folders the project's site is built from: the committed folders, or,
    while they are not yet published in the current schema, upgraded copies (under
    ``root``) of the committed v1 folders of the same grids."""
    from benchmark.leaderboard.build import SOURCES

    out = []
    for rel in SOURCES:
        folder = settings.REPO_ROOT / rel
        if not current(folder):
            folder = upgraded_copy(COMMITTED / Path(rel).name, root / Path(rel).name)
        out.append(folder)
    return out


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The site built from :func:`site_sources` (once per session)."""
    from benchmark.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("site")
    build_site(site_sources(root / "sources"), root / "site")
    return root / "site"
