"""Saved run state on disk as plain data: tensors in safetensors, the rest as JSON.

A snapshot is a folder with three files, the manifest written last:

- ``tensors.safetensors`` -- every tensor of the state, under generated keys;
- ``state.json`` -- the state with each tensor replaced by ``{"__tensor__": key}`` and each
  tuple by ``{"__tuple__": [...]}`` (numbers, strings, lists and string-keyed dicts as is);
- ``manifest.json`` -- the format and the sha256 of the two files above.

:func:`read` checks the manifest and both hashes before decoding anything, so a truncated
or altered snapshot raises :class:`CorruptSnapshot` naming the file, and a snapshot whose
manifest is missing (its writer was killed) is never read. Loading a snapshot runs no code:
safetensors holds raw tensors, ``json`` plain data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from benchmark.core import io

SNAPSHOT_FORMAT = 1
TENSORS, DATA, MANIFEST = "tensors.safetensors", "state.json", "manifest.json"
_TENSOR, _TUPLE = "__tensor__", "__tuple__"


class CorruptSnapshot(ValueError):
    """A snapshot that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: Path, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}")


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: key}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(x, tensors, f"{where}[{i}]") for i, x in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(x, tensors, f"{where}[{i}]") for i, x in enumerate(obj)]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) and k not in (_TENSOR, _TUPLE) for k in obj):
            raise TypeError(f"state {where or '.'}: dict keys must be plain strings, got {list(obj)}")
        return {k: _encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"state {where or '.'}: cannot save a {type(obj).__name__} (tensors, "
                    "numbers, strings, lists, tuples and string-keyed dicts only)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(x, tensors) for x in obj[_TUPLE])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(x, tensors) for x in obj]
    return obj


def write(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state`` into ``directory`` (created); the manifest last, each file atomically."""
    tensors: dict[str, torch.Tensor] = {}
    data = json.dumps(_encode(state, tensors, ""), sort_keys=True).encode("utf-8")
    blob = save_tensors(tensors)
    io.write_bytes(directory / TENSORS, blob)
    io.write_bytes(directory / DATA, data)
    io.write_json(directory / MANIFEST, {"format": SNAPSHOT_FORMAT, "sha256": {
        TENSORS: hashlib.sha256(blob).hexdigest(), DATA: hashlib.sha256(data).hexdigest()}})


def _checked_bytes(directory: Path, name: str, manifest: dict) -> bytes:
    path = directory / name
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CorruptSnapshot(path, f"cannot read: {exc.strerror or exc}") from None
    expected = manifest.get("sha256", {}).get(name)
    if hashlib.sha256(blob).hexdigest() != expected:
        raise CorruptSnapshot(path, f"sha256 differs from {MANIFEST} (truncated or altered)")
    return blob


def read(directory: Path) -> dict[str, Any]:
    """The state saved in ``directory``; :class:`CorruptSnapshot` if any file is missing,
    does not parse or does not match its hash."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CorruptSnapshot(path, f"cannot read: {exc.strerror or exc} (an unfinished save)") \
            from None
    except ValueError as exc:
        raise CorruptSnapshot(path, f"does not parse: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SNAPSHOT_FORMAT:
        raise CorruptSnapshot(path, f"not a format-{SNAPSHOT_FORMAT} state manifest")
    blob = _checked_bytes(directory, TENSORS, manifest)
    data = _checked_bytes(directory, DATA, manifest)
    try:
        tensors = load_tensors(blob)
        return _decode(json.loads(data), tensors)
    except (SafetensorError, ValueError, KeyError) as exc:
        raise CorruptSnapshot(directory, f"does not decode: {exc}") from None
