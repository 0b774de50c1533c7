"""Fixtures: copies of the committed result folders (results/<suite version>/), which a
test may mutate into malformed submissions, and the site built from the committed folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark import SUITE_VERSION
from benchmark.core import settings
from benchmark.results import RECORDS_SCHEMA_VERSION

COMMITTED = settings.RESULTS_DIR / SUITE_VERSION


@pytest.fixture(scope="session")
def _ci_template(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("template") / "ci"
    shutil.copytree(COMMITTED / "ci", dst)
    return dst


@pytest.fixture()
def submission(_ci_template, tmp_path) -> Path:
    """A fresh, valid result folder (a copy of the committed ci grid)."""
    dst = tmp_path / "ci"
    shutil.copytree(_ci_template, dst)
    return dst


def current(folder: Path) -> bool:
    """Whether ``folder`` holds results of the schema this suite writes."""
    if not (folder / "records.jsonl").is_file():
        return False
    first = json.loads((folder / "records.jsonl").read_text().splitlines()[0])
    return first["schema_version"] == RECORDS_SCHEMA_VERSION


def site_sources(root: Path | None = None) -> list[Path]:
    """The committed result folders the project's site is built from."""
    from benchmark.leaderboard.build import SOURCES

    return [settings.REPO_ROOT / rel for rel in SOURCES]


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The site built from :func:`site_sources` (once per session)."""
    from benchmark.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("site")
    build_site(site_sources(), root / "site")
    return root / "site"
