"""Shared test configuration.

- No network: every socket connection to a non-loopback address fails the test.
- The data root is ../shared/data beside the checkout unless SEQEDIT_DATA is set.
- Caches go to a per-session temporary folder unless SEQEDIT_CACHE is set, except the
  converted embedded models, which are reused from the user cache (see embedded_cache).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SEQEDIT_DATA", str((REPO.parent / "shared" / "data").resolve()))
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ["SEQEDIT_OFFLINE"] = "1"


class NetworkBlocked(RuntimeError):
    pass


_real_connect = socket.socket.connect
_real_create_connection = socket.create_connection


def _is_local(address) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, (str, bytes))  # AF_UNIX paths


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to open a network connection to {address!r}")
    return _real_connect(self, address)


def _guarded_create_connection(address, *args, **kwargs):
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to open a network connection to {address!r}")
    return _real_create_connection(address, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.create_connection = _guarded_create_connection


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
