"""Model entries for ``hf:ID@REV`` and ``path:DIR`` names (see :mod:`benchmark.core.modelref`).

The architecture facts come from the model's ``config.json`` through the one table of
:mod:`benchmark.models.archs`. A ``path:`` folder is identified by the sha256 of each weight
file and of its config, so two different checkpoints written to one folder get different
cache keys and provenance. A ``hf:`` name records the commit it resolves to. Offline, a
``hf:`` model that is not in the local Hugging Face cache fails at once with
:class:`~benchmark.core.settings.NetworkRequired`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from benchmark.core import io, settings
from benchmark.core.arch import HubSource, LocalSource, ModelEntry
from benchmark.core.errors import DataError
from benchmark.core.modelref import ModelRef, canonical, model_slug, parse
from benchmark.models.archs import arch_from_config

log = logging.getLogger(__name__)

#: Files whose bytes are the weights (top level of the folder; shards included).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

#: sha256 of a weight file by (path, size, mtime_ns, inode), in memory and in
#: ``<cache root>/models/weights-sha256.json`` for later processes (as the data files'
#: verification cache): a checkpoint is hashed once, until a file changes size, mtime or inode.
_HASHES: dict[str, str] = {}
_DISK_MEMO = "weights-sha256.json"


def resolve(text: str) -> ModelEntry:
    """The :class:`ModelEntry` of a ``hf:`` or ``path:`` name."""
    try:
        ref = parse(text)
    except ValueError as exc:
        raise DataError("model name", str(exc), field="model") from None
    if ref.kind == "path":
        return _local_entry(ref)
    if ref.kind == "hf":
        return _hub_entry(ref)
    raise ValueError(f"{text!r} is a registry name, not an hf: or path: name")


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its size, mtime and inode are unchanged."""
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    if key not in _HASHES:
        memo = _memo_read()
        if key in memo:
            log.info("trusting cached hash of %s (size, mtime, inode unchanged)", path)
            _HASHES[key] = memo[key]
        else:
            log.info("hashing %s (%.1f MB)", path, st.st_size / 1e6)
            _HASHES[key] = io.sha256_file(path)
            _memo_write({**memo, key: _HASHES[key]})
    return _HASHES[key]


def _memo_file() -> Path:
    return settings.cache_root() / "models" / _DISK_MEMO


def _memo_read() -> dict[str, str]:
    try:
        data = json.loads(_memo_file().read_text())
    except (OSError, ValueError, settings.SettingError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _memo_write(memo: dict[str, str]) -> None:
    """Keep the hashes for later processes; failing to only costs hashing again."""
    try:
        io.write_json(_memo_file(), memo)
    except (OSError, settings.SettingError) as exc:
        log.warning("weight hash cache not written (%s); later runs hash the weights again", exc)


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a ``save_pretrained`` folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _local_entry(ref: ModelRef) -> ModelEntry:
    folder = ref.path
    assert folder is not None
    config_file = folder / "config.json"
    if not folder.is_dir():
        raise DataError(folder, f"model folder of {ref.text!r} does not exist", field="model")
    if not config_file.is_file():
        raise DataError(config_file, "no config.json: a path: model is a folder written by "
                                     "save_pretrained (config, weights, tokenizer)")
    weights = weight_files(folder)
    if not weights:
        raise DataError(folder, f"no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)})")
    config = _config(str(folder), source=config_file, local_files_only=True)
    source = LocalSource(path=str(folder),
                         weights_sha256=tuple((p.name, file_sha256(p)) for p in weights),
                         config_sha256=io.sha256_file(config_file))
    name = model_slug(canonical(ref.text))
    return ModelEntry(name=name, source=source, arch=arch_from_config(config, source=config_file),
                      notes=f"local folder {folder}")


def _hub_entry(ref: ModelRef) -> ModelEntry:
    offline = settings.offline()
    revision = ref.revision
    if revision is None or not _is_commit(revision):
        if offline:
            raise settings.NetworkRequired(
                f"model {ref.text!r} needs the hub to resolve "
                f"{'its current commit' if revision is None else f'revision {revision!r}'} and "
                f"this run is offline; give a full commit sha (hf:{ref.repo}@<40 hex digits>) "
                f"from the local Hugging Face cache, or set {settings.OFFLINE_ENV}=0 on a "
                "networked machine")
        revision = _resolve_commit(ref.repo, revision)
    config = _config(ref.repo, source=f"hf:{ref.repo}@{revision}", revision=revision,
                     local_files_only=offline)
    pin = (f"given as {ref.text!r}" if ref.revision == revision
           else f"resolved from {ref.text!r} on the hub")
    name = model_slug(f"hf:{ref.repo}@{revision}")
    return ModelEntry(name=name, source=HubSource(ref.repo, revision, pin_source=pin),
                      arch=arch_from_config(config, source=f"hf:{ref.repo}@{revision} config.json"),
                      notes=f"hub repository {ref.repo}")


def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def _resolve_commit(repo: str, revision: str | None) -> str:
    from huggingface_hub import model_info

    sha = model_info(repo, revision=revision).sha
    log.warning("model hf:%s%s resolved to commit %s (recorded in provenance); pin it as "
                "hf:%s@%s", repo, f"@{revision}" if revision else "", sha, repo, sha)
    return sha


def _config(where: str, *, source: Any, revision: str | None = None, local_files_only: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(where, revision=revision, local_files_only=local_files_only)
    except OSError as exc:
        if local_files_only and not os.path.isdir(where):
            raise settings.NetworkRequired(
                f"model hf:{where}@{revision} is not in the local Hugging Face cache and this run "
                f"is offline; set {settings.OFFLINE_ENV}=0 on a networked machine to download it"
            ) from exc
        raise DataError(source, f"cannot read the model config: {exc}") from exc
    except ValueError as exc:  # an unknown model_type, a malformed config
        raise DataError(source, f"cannot read the model config: {exc}") from exc
