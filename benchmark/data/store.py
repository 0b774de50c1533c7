"""Resolving a data set name to a verified file under the data root, and fetching it.

``resolve(name)`` checks that the file exists and that its sha256 matches the manifest.
Verified hashes are cached by (path, expected sha256, and each file's size, mtime_ns and
inode): in memory, and in ``<cache root>/data-verified.json`` so later processes skip
re-hashing unchanged files (logged: "trusting cached hash of FILE (size, mtime, inode
unchanged)"). A cache root that cannot be written only costs re-hashing (one warning).
``seqedit data verify`` never trusts the cache: it always hashes the content.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from pathlib import Path

from benchmark.core import io as bio
from benchmark.core import settings
from benchmark.core.errors import DataError
from benchmark.data.manifest import DatasetManifest, get_manifest
from benchmark.data.plain_pickle import NotPlainData, plain_from_pickle

log = logging.getLogger(__name__)

#: (path, expected sha256, (member, size, mtime_ns, inode) of every file; member "" for a file)
Key = tuple[str, str, tuple[tuple[str, int, int, int], ...]]

_LOCK = threading.Lock()
_VERIFIED: set[Key] = set()
_DISK_CACHE_NAME = "data-verified.json"


class MissingData(DataError):
    """The file of a data set is not under the data root."""


class ChecksumMismatch(DataError):
    """A file's sha256 differs from its manifest."""


def tree_sha256(directory: Path, members: tuple[str, ...]) -> str:
    """Hash of a folder: sha256 over the lines ``"<sha256 of file>  <member>\\n"`` in
    sorted member order (the output of ``sha256sum`` over the sorted members)."""
    h = hashlib.sha256()
    for member in sorted(members):
        h.update(f"{bio.sha256_file(directory / member)}  {member}\n".encode())
    return h.hexdigest()


def _stat_key(path: Path, m: DatasetManifest) -> Key:
    files = [(name, path / name) for name in m.members] if m.is_dir else [("", path)]
    stats = tuple((name, st.st_size, st.st_mtime_ns, st.st_ino)
                  for name, st in ((name, file.stat()) for name, file in files))
    return (str(path), m.sha256 or "", stats)


def _as_key(row: object) -> Key | None:
    """A row of the on-disk cache as a key; None for a malformed (or older-format) row."""
    try:
        path, sha, files = row  # type: ignore[misc]
        return (str(path), str(sha), tuple((str(n), int(s), int(t), int(i)) for n, s, t, i in files))
    except (TypeError, ValueError):
        return None


def _disk_cache_file() -> Path:
    return settings.cache_root() / _DISK_CACHE_NAME


def _disk_cache_read() -> set[Key]:
    """The keys of the on-disk cache: none when it is missing, unreadable or corrupt."""
    try:
        rows = json.loads(_disk_cache_file().read_text())
    except (OSError, ValueError, settings.SettingError):
        return set()
    keys = {_as_key(r) for r in rows} if isinstance(rows, list) else set()
    return {k for k in keys if k is not None}


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def _disk_cache_add(key: Key) -> None:
    """Remember a verified file for later processes. A cache root that cannot be created or
    written only costs re-hashing: one warning, and the run goes on."""
    try:
        bio.write_json(_disk_cache_file(), sorted(_disk_cache_read() | {key}))
    except (OSError, settings.SettingError) as exc:
        _warn_once(f"data verification cache not written ({exc}); later runs hash the data again")


def expected_path(m: DatasetManifest, data_root: str | Path | None = None) -> Path:
    return settings.data_root(data_root) / m.path


def missing_message(m: DatasetManifest, path: Path) -> str:
    how = ("" if m.mirrored else
           " (not in the offline mirror; on a networked machine run "
           f"`SEQEDIT_OFFLINE=0 seqedit data fetch {m.name}`)")
    return (f"data set {m.name!r} not found at {path}; the data root comes from "
            f"{settings.DATA_ENV} (or --data-root). Canonical URL: {m.url}{how}")


def verify(m: DatasetManifest, data_root: str | Path | None = None, *, use_cache: bool = True) -> Path:
    """Check existence and sha256 of ``m``'s file; return its path.

    ``use_cache``: skip hashing a file verified before whose size, mtime and inode are
    unchanged (logged). Without it the content is always hashed (``seqedit data verify``)."""
    path = expected_path(m, data_root)
    if m.is_dir:
        if not path.is_dir():
            raise MissingData(path, missing_message(m, path), field="path")
        for member in m.members:
            if not (path / member).is_file():
                raise MissingData(path / member, f"member of data set {m.name!r} missing "
                                  f"(canonical URL: {m.url}{member})", field="members")
    elif not path.is_file():
        raise MissingData(path, missing_message(m, path), field="path")
    if m.sha256 is None:
        log.warning("data set %s has no pinned sha256; existence checked only", m.name)
        return path
    if m.size is not None and not m.is_dir and path.stat().st_size != m.size:
        raise ChecksumMismatch(
            path, f"size {path.stat().st_size} bytes differs from the manifest of {m.name!r} "
            f"({m.size} bytes): the file is truncated or a different version; re-fetch it from {m.url}",
            field="size")
    key = _stat_key(path, m)
    with _LOCK:
        if use_cache and key in _VERIFIED:
            return path
    if use_cache and key in _disk_cache_read():
        log.info("trusting cached hash of %s (size, mtime, inode unchanged)", path)
        with _LOCK:
            _VERIFIED.add(key)
        return path
    got = tree_sha256(path, m.members) if m.is_dir else bio.sha256_file(path)
    if got != m.sha256:
        raise ChecksumMismatch(
            path, f"sha256 {got} does not match the manifest of {m.name!r} ({m.sha256}); "
            f"the file is corrupt or a different version: re-fetch it from {m.url}", field="sha256")
    with _LOCK:
        _VERIFIED.add(key)
    if use_cache:
        _disk_cache_add(key)
    return path


def resolve(name: str, *, data_root: str | Path | None = None,
            manifest_dir: str | Path | None = None) -> Path:
    """Path of data set ``name`` under the data root, verified (existence + sha256)."""
    return verify(get_manifest(name, manifest_dir), data_root)


def clear_verification_cache() -> None:
    """Forget in-memory verifications (the on-disk cache is keyed by size, mtime and inode)."""
    with _LOCK:
        _VERIFIED.clear()


# --------------------------------------------------------------------------- fetching
def _transform(m: DatasetManifest, blob: bytes) -> bytes:
    if m.transform == "pickle-to-json":
        try:
            obj = plain_from_pickle(blob)
        except NotPlainData as exc:
            raise DataError(m.url, f"data set {m.name!r}: {exc}") from None
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return blob


def _download(url: str, timeout: float = 60.0) -> bytes:
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "seqedit-bench"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (https only, manifest URLs)
        return resp.read()


def fetch(name: str, *, data_root: str | Path | None = None, manifest_dir: str | Path | None = None,
          force: bool = False) -> Path:
    """Download data set ``name`` to the data root and verify it (networked machines only).

    Offline (the default) this fails at once with settings.require_network's message and
    opens no connection. A file already present and verified is left alone unless ``force``.
    """
    m = get_manifest(name, manifest_dir)
    settings.require_network(f"fetching data set {name!r} from {m.url}")
    root = settings.data_root(data_root)
    if not force:
        try:
            return verify(m, root)
        except MissingData:
            pass
        except ChecksumMismatch:
            log.warning("%s: present but its sha256 differs; downloading again", name)
    target = root / m.path
    if m.is_dir:
        for member in m.members:
            bio.write_bytes(target / member, _download(m.url + member))
    else:
        blob = _transform(m, _download(m.url))
        if m.sha256 is None:
            log.warning("%s: unpinned upstream file, got sha256 %s", name, hashlib.sha256(blob).hexdigest())
        elif hashlib.sha256(blob).hexdigest() != m.sha256:
            raise ChecksumMismatch(m.url, f"downloaded sha256 {hashlib.sha256(blob).hexdigest()} does not "
                                   f"match the manifest ({m.sha256}); nothing written", field="sha256")
        bio.write_bytes(target, blob)
    return verify(m, root, use_cache=False)


