"""The MEND training loop: ``train_mend(lm, hp)`` trains (or resumes, or finds) the
editor network of a model and stores it in the cache (docs/methods.md, MEND).

- Examples: the training files of ``hp.train.data`` in a seeded order, one edit per step.
- Optimisation: the losses of ``accumulate`` edits are summed (each divided by
  ``accumulate``), the gradient norm is clipped to ``grad_clip``, then Adam (``lr``) steps
  the network and a second Adam (``lr_lr``) steps the per-matrix edit learning rates.
- Validation: every ``val_every`` edits on the first ``val_size`` examples of the named
  validation split (``hp.train.validation``), without updating the normalisation; the
  best network by ``cedit·L_edit + cloc·L_loc`` is kept; training stops after
  ``patience`` edits without a better one, or at ``max_steps``.
- Checkpoints every ``checkpoint_every`` edits in the network's cache folder; a new run
  with the same key resumes from the last one and ends with the same network.
- The result is the best network, saved as safetensors under the key of every input
  (:mod:`editors.mend.store`); the learning curve goes into ``network.json`` and
  ``curve.csv``.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmark.core import io
from benchmark.core.arch import LoadedModel
from benchmark.training import checkpoint
from benchmark.training.data import Example, combined, load_examples, training_order
from benchmark.training.steps import edit_step
from editors.mend import store
from editors.mend.hparams import MENDHparams
from editors.mend.network import MENDNetwork

log = logging.getLogger(__name__)


def validate(lm: LoadedModel, net: MENDNetwork, hp: MENDHparams, examples: list[Example]) -> dict[str, float]:
    """Mean losses and edit accuracy over ``examples`` (network in eval mode, no gradient)."""
    was = net.training
    net.eval()
    sums = {"loss": 0.0, "edit": 0.0, "loc": 0.0, "edit_acc": 0.0, "nll_before": 0.0}
    with torch.no_grad():
        for ex in examples:
            r = edit_step(lm, net, hp, ex)
            for k, v in (("loss", float(r.loss)), ("edit", r.edit), ("loc", r.loc), ("edit_acc", r.edit_acc),
                         ("nll_before", r.nll_before)):
                sums[k] += v
    net.train(was)
    return {k: v / len(examples) for k, v in sums.items()}


def _optimizers(net: MENDNetwork, hp: MENDHparams) -> dict[str, torch.optim.Optimizer]:
    return {"opt": torch.optim.Adam(net.network_parameters(), lr=hp.train.lr),
            "lr_opt": torch.optim.Adam([net.edit_lrs], lr=hp.train.lr_lr)}


def _curve_csv(curve: list[dict[str, Any]]) -> str:
    if not curve:
        return ""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(curve[0]))
    writer.writeheader()
    writer.writerows(curve)
    return buf.getvalue()


def _new_loop() -> dict[str, Any]:
    return {"step": 0, "best_loss": None, "best_step": None, "curve": [], "elapsed_s": 0.0,
            "train_sums": {"loss": 0.0, "edit": 0.0, "loc": 0.0, "edit_acc": 0.0, "n": 0}}


def train_mend(lm: LoadedModel, hp: MENDHparams, *, data_root: str | Path | None = None,
               cache_root: str | Path | None = None, progress: bool = True,
               after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train the network for ``lm``/``hp`` unless the cache holds it; returns its
    ``network.json`` (key, file sha256, summary with the learning curve)."""
    key = store.network_key(lm, hp, data_root)
    folder = store.network_dir(lm, key, cache_root)
    try:
        return {**store.load_network(lm, hp, data_root=data_root, cache_root=cache_root)[1], "folder": str(folder)}
    except store.MissingNetwork:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    with io.file_lock(folder / "train.lock"):
        return _train(lm, hp, key, folder, data_root, progress, after_step)


def _train(lm: LoadedModel, hp: MENDHparams, key: dict, folder: Path, data_root,
           progress: bool, after_step: Callable[[int], None] | None) -> dict[str, Any]:
    t = hp.train
    train_set = combined(t.data, data_root)
    val_set = load_examples(t.validation, data_root)[:t.val_size]
    order = training_order(len(train_set), t.seed, t.max_steps)
    torch.manual_seed(t.seed)
    net = store.new_network(lm, hp).to(lm.device).train()
    opts = _optimizers(net, hp)
    restored = checkpoint.load(folder, net, opts)
    best, loop = restored if restored is not None else (None, _new_loop())
    if restored is not None:
        log.info("resuming MEND training at edit %d from %s", loop["step"], folder)
    params = net.network_parameters() + [net.edit_lrs]
    bar = tqdm(total=t.max_steps, initial=loop["step"], desc=f"train mend {lm.entry.name}", unit="edit",
               disable=not progress)
    started = time.monotonic() - loop["elapsed_s"]
    while loop["step"] < t.max_steps:
        step = loop["step"]
        result = edit_step(lm, net, hp, train_set[order[step]])
        (result.loss / t.accumulate).backward()
        sums = loop["train_sums"]
        for k, v in (("loss", float(result.loss.detach())), ("edit", result.edit), ("loc", result.loc),
                     ("edit_acc", result.edit_acc)):
            sums[k] += v
        sums["n"] += 1
        loop["step"] = step = step + 1
        bar.update(1)
        if step % t.accumulate == 0:
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip, error_if_nonfinite=True)
            for opt in opts.values():
                opt.step()
                opt.zero_grad()
        if step % t.val_every == 0 or step == t.max_steps:
            best = _validate_point(lm, net, hp, val_set, loop, best, started)
            bar.set_postfix(val=f"{loop['curve'][-1]['val_loss']:.3f}", acc=f"{loop['curve'][-1]['val_edit_acc']:.2f}")
        stop = loop["best_step"] is not None and step - loop["best_step"] >= t.patience
        if step % t.checkpoint_every == 0 or stop or step == t.max_steps:
            loop["elapsed_s"] = time.monotonic() - started
            checkpoint.save(folder, net, opts, best, loop)
        if after_step is not None:
            after_step(step)
        if stop:
            log.info("no better validation loss for %d edits: stopping at edit %d", t.patience, step)
            break
    bar.close()
    return _finish(lm, hp, key, folder, net, best, loop)


def _validate_point(lm, net, hp, val_set, loop, best, started) -> dict[str, torch.Tensor] | None:
    val = validate(lm, net, hp, val_set)
    sums = loop["train_sums"]
    n = max(sums["n"], 1)
    point = {"step": loop["step"], "elapsed_s": round(time.monotonic() - started, 1),
             **{f"train_{k}": sums[k] / n for k in ("loss", "edit", "loc", "edit_acc")},
             **{f"val_{k}": v for k, v in val.items()}}
    loop["curve"].append(point)
    loop["train_sums"] = {"loss": 0.0, "edit": 0.0, "loc": 0.0, "edit_acc": 0.0, "n": 0}
    log.info("MEND step %d: %s", loop["step"], point)
    if loop["best_loss"] is None or val["loss"] < loop["best_loss"]:
        loop["best_loss"], loop["best_step"] = val["loss"], loop["step"]
        return store.tensors_of(net)
    return best


def _finish(lm, hp, key, folder: Path, net: MENDNetwork, best, loop) -> dict[str, Any]:
    if best is not None:
        net.load_state_dict(best)
    summary = {"steps": loop["step"], "best_step": loop["best_step"], "best_val_loss": loop["best_loss"],
               "validation": hp.train.validation.model_dump(), "train_seconds": round(loop["elapsed_s"], 1),
               "curve": loop["curve"]}
    io.write_text(folder / "curve.csv", _curve_csv(loop["curve"]))
    store.save_network(folder, net, key, summary)
    for name in (checkpoint.TENSORS, checkpoint.META):
        (folder / name).unlink(missing_ok=True)
    return {**json.loads((folder / "network.json").read_text()), "folder": str(folder)}
