"""Where a trained MEND network lives: its cache key and its safetensors file.

The key names every input of the training: the base model's identity
(``LoadedModel.identity``), the edited matrices, the network and training settings, the
seed, and every data file (path under the data root and sha256). The network is stored at
``<cache root>/mend/<model>/<key sha256[:16]>/network.safetensors`` with ``network.json``
beside it (the full key, the file's sha256, the training summary). A grid cell and
``seqedit train`` compute the same key, so every cell reuses the one trained network.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from benchmark.core import io, settings
from benchmark.core.arch import LoadedModel, get_module, to_out_in
from benchmark.core.errors import SeqeditError
from editors.mend.hparams import DataFile, MENDHparams
from editors.mend.network import MENDNetwork

#: Training settings that do not change the trained network (left out of the key).
_NOT_IN_KEY = ("checkpoint_every",)


class MissingNetwork(SeqeditError):
    """No trained MEND network for this model and these settings."""


def matrix_names(lm: LoadedModel, hp: MENDHparams) -> list[str]:
    return [f"{lm.arch.mlp_name(layer)}.{m}" for layer in hp.layers for m in hp.matrices]


def matrix_shapes(lm: LoadedModel, hp: MENDHparams) -> list[tuple[int, int]]:
    """``(d_in, d_out)`` of every edited matrix."""
    out = []
    for name in matrix_names(lm, hp):
        d_out, d_in = to_out_in(get_module(lm.model, name).weight, lm.arch.layout).shape
        out.append((int(d_in), int(d_out)))
    return out


def new_network(lm: LoadedModel, hp: MENDHparams) -> MENDNetwork:
    return MENDNetwork(matrix_names(lm, hp), matrix_shapes(lm, hp), hp.network)


def describe_file(data: DataFile, data_root: str | Path | None) -> dict[str, Any]:
    path = settings.data_root(data_root) / data.file
    if not path.is_file():
        raise MissingNetwork(f"{path}: data file of {data.dataset}:{data.split} missing "
                             "(needed for the MEND network's key)")
    return {**data.model_dump(), "sha256": io.sha256_file(path)}


def network_key(lm: LoadedModel, hp: MENDHparams, data_root: str | Path | None = None) -> dict[str, Any]:
    """Every input of the trained network (JSON-able)."""
    train = hp.train.model_dump(mode="json", exclude={"data", "validation", *_NOT_IN_KEY})
    return {"method": "mend", "model": lm.entry.name, "identity": lm.identity,
            "matrices": matrix_names(lm, hp), "network": hp.network.model_dump(mode="json"),
            "train": train, "data": [describe_file(d, data_root) for d in hp.train.data],
            "validation": describe_file(hp.train.validation, data_root)}


def network_dir(lm: LoadedModel, key: dict[str, Any], cache_root: str | Path | None = None) -> Path:
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", lm.entry.name)
    return settings.cache_root(cache_root) / "mend" / label / io.sha256_json(key)[:16]


def tensors_of(net: MENDNetwork) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}


def save_network(folder: Path, net: MENDNetwork, key: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Write ``network.safetensors`` and ``network.json`` (atomically)."""
    blob = st_save(tensors_of(net))
    path = folder / "network.safetensors"
    io.write_bytes(path, blob)
    io.write_json(folder / "network.json", {"key": key, "key_sha256": io.sha256_json(key),
                                            "file_sha256": hashlib.sha256(blob).hexdigest(),
                                            "summary": summary})
    return path


def how_to_train(lm: LoadedModel) -> str:
    return (f"train it first: seqedit train --editor mend --model {lm.entry.name} "
            "(with --set KEY=VALUE for each hparams override of the run)")


def load_network(lm: LoadedModel, hp: MENDHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None) -> tuple[MENDNetwork, dict[str, Any]]:
    """The trained network for ``lm`` and ``hp`` (eval mode) and its ``network.json``;
    :class:`MissingNetwork` says how to train it when there is none."""
    key = network_key(lm, hp, data_root)
    folder = network_dir(lm, key, cache_root)
    path, meta_path = folder / "network.safetensors", folder / "network.json"
    if not (path.is_file() and meta_path.is_file()):
        raise MissingNetwork(f"no trained MEND network for model {lm.entry.name} with these settings "
                             f"(looked in {folder}); {how_to_train(lm)}")
    meta = json.loads(meta_path.read_text())
    blob = path.read_bytes()
    if meta.get("key_sha256") != io.sha256_json(key) or hashlib.sha256(blob).hexdigest() != meta.get("file_sha256"):
        raise MissingNetwork(f"{path}: the stored network does not match its network.json (truncated or "
                             f"written by other settings); delete {folder} and {how_to_train(lm)}")
    net = new_network(lm, hp)
    net.load_state_dict(st_load(blob))
    net.eval()
    return net, meta
