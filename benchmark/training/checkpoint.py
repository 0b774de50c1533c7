"""Resumable training checkpoints: the network, both Adam optimisers, the best network so
far and the loop's counters, as one safetensors file plus a JSON file (no pickles).

Written atomically every ``checkpoint_every`` edits (always at an optimiser-step
boundary, so no gradient is in flight); resuming from one reproduces the run that was
not interrupted bit for bit (same data order, same arithmetic).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from benchmark.core import io

TENSORS, META = "checkpoint.safetensors", "checkpoint.json"


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            tensors[f"{prefix}/{idx}/{k}"] = torch.as_tensor(v).detach().clone().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "/"):
            _head, idx, key = name.split("/", 2)
            state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save(folder: Path, net: torch.nn.Module, opts: dict[str, torch.optim.Optimizer],
         best: dict[str, torch.Tensor] | None, loop: dict[str, Any]) -> None:
    tensors = {f"net/{k}": v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    meta: dict[str, Any] = {"loop": loop, "optimizers": {}}
    for prefix, opt in opts.items():
        t, m = _flatten_optimizer(prefix, opt)
        tensors.update(t)
        meta["optimizers"][prefix] = m
    for k, v in (best or {}).items():
        tensors[f"best/{k}"] = v.contiguous()
    io.write_bytes(folder / TENSORS, st_save(tensors))
    io.write_json(folder / META, meta)


def load(folder: Path, net: torch.nn.Module, opts: dict[str, torch.optim.Optimizer],
         ) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]] | None:
    """Restore ``net`` and ``opts``; (best network tensors, loop counters), or None when
    there is no checkpoint."""
    tpath, mpath = folder / TENSORS, folder / META
    if not (tpath.is_file() and mpath.is_file()):
        return None
    tensors = st_load(tpath.read_bytes())
    meta = json.loads(mpath.read_text())
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net/")})
    for prefix, opt in opts.items():
        _restore_optimizer(prefix, opt, tensors, meta["optimizers"][prefix])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")} or None
    return best, meta["loop"]
