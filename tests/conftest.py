"""Shared test configuration.

- No network: any connection, datagram or name lookup to a non-loopback address fails
  the test (tests/netguard.py).
- The data root is ../shared/data beside the checkout unless SEQEDIT_DATA is set.
- Caches go to a per-session temporary folder unless SEQEDIT_CACHE is set, except the
  converted embedded models, which are reused from the user cache (see embedded_cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import netguard

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SEQEDIT_DATA", str((REPO.parent / "shared" / "data").resolve()))
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ["SEQEDIT_OFFLINE"] = "1"


netguard.install()


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ["SEQEDIT_DATA"]).expanduser().resolve()  # as settings.data_root does
    if not root.is_dir():
        pytest.fail(f"data root {root} missing: put ../shared beside the checkout or set SEQEDIT_DATA")
    return root


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """Cache root for the session (honours SEQEDIT_CACHE so converted models are reused)."""
    if os.environ.get("SEQEDIT_CACHE"):
        return Path(os.environ["SEQEDIT_CACHE"])
    path = tmp_path_factory.mktemp("seqedit-cache")
    os.environ["SEQEDIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def smollm2(cache_root):
    from benchmark import models

    return models.load("smollm2-135m")
