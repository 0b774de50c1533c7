"""ROME layer sweep: which MLP layer of a small model to edit (docs/layer-choice.md).

For each candidate layer, every one of the first ``n`` CounterFact (easyedit edit split)
requests is edited ALONE on the unedited model (apply, score, revert), with the model's
ROME hparams and only ``layers`` overridden. Recorded per layer: efficacy, generalization
and locality as the benchmark scores them (:mod:`benchmark.evaluation.editing`, here as
fractions in [0, 1] instead of x100), the mean log-probability margin
log P(new) − log P(true) on the rewrite prompt, and time. The second moments of every
candidate layer are collected in one pass first.

Run (writes JSON under results/layer_choice/ unless --out is given):

    python -m benchmark.studies.layer_choice --model smollm2-135m --layers 2,4,6,8,10,12,15 --n 8
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark import models
from benchmark.commands.options import positive_int
from benchmark.core import io, settings
from benchmark.core.requests import EditRequest
from benchmark.core.scoring import score_targets
from benchmark.evaluation.editing import evaluate_editing
from benchmark.studies import add_run_options, start_run
from editors import stats
from editors.base import apply_delta
from editors.hparams import ROMEHparams, hparams_hash, load_hparams
from editors.rome import ROME

log = logging.getLogger(__name__)

#: Per-case metrics of benchmark.evaluation.editing the sweep records (as fractions).
CASE_METRICS = ("efficacy", "generalization", "locality")
SUMMARY_KEYS = CASE_METRICS + ("rewrite_margin", "seconds", "cpu_seconds", "target_steps")


def rewrite_margin(lm, r: EditRequest) -> float:
    """Mean-token log P(new) − log P(true) on the rewrite prompt."""
    new = score_targets(lm.model, lm.tokenizer, [r.prompt], [r.target_new])
    true = score_targets(lm.model, lm.tokenizer, [r.prompt], [r.target_true])
    return float((true.mean_nll - new.mean_nll).float()[0])


def score_case(lm, r: EditRequest) -> dict[str, float]:
    """The rewrite margin and the case's metrics (benchmark value / 100; a metric the case
    has no prompts for is left out)."""
    scores = evaluate_editing(lm, [r], CASE_METRICS)
    out = {"rewrite_margin": rewrite_margin(lm, r)}
    out.update({k: m.value / 100.0 for k, m in scores.items() if m.n})
    return out


def edit_alone(lm, editor: ROME, r: EditRequest) -> dict:
    """Edit ``r`` on the current model, score it, revert (bit for bit)."""
    t, c = time.perf_counter(), time.process_time()
    delta = editor.compute(lm, [r], editor.init_state(lm))
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    undo = apply_delta(lm.model, delta)
    try:
        return {"case_id": r.case_id, **score_case(lm, r), "seconds": secs, "cpu_seconds": cpu,
                "target_steps": delta.info["target_steps"], "target_nll": delta.info["target_nll"]}
    finally:
        undo.revert()


def layer_row(lm, base: ROMEHparams, layer: int, requests: Sequence[EditRequest], *,
              data_root=None, cache_root=None, progress: bool = True) -> dict:
    """Every request edited alone with ROME at ``layer``: the cases and their means."""
    from tqdm.auto import tqdm

    hp = base.model_copy(update={"layers": [layer]})
    editor = ROME(hp, data_root=data_root, cache_root=cache_root, progress=progress)
    editor.prepare(lm, requests, editor.init_state(lm))
    cases = [edit_alone(lm, editor, r)
             for r in tqdm(requests, desc=f"ROME layer {layer}", disable=not progress)]
    summary = {k: sum(c[k] for c in cases if k in c) / max(1, sum(1 for c in cases if k in c))
               for k in SUMMARY_KEYS}
    log.info("layer %d: %s", layer, summary)
    return {"layer": layer, **summary, "cases": cases}


def sweep(model_name: str, layers: Sequence[int], n: int, *, data_root=None, cache_root=None,
          progress: bool = True) -> dict:
    from benchmark.data import load_requests

    lm = models.load(model_name, cache_dir=cache_root)
    base = load_hparams("rome", model_name)
    requests = load_requests("counterfact", "edit", limit=n, data_root=data_root)
    stats.second_moments(lm, list(layers), base.stats, data_root=data_root, cache_root=cache_root,
                         progress=progress)
    baseline = [score_case(lm, r) for r in requests]
    rows = [layer_row(lm, base, layer, requests, data_root=data_root, cache_root=cache_root,
                      progress=progress) for layer in layers]
    return {
        "what": "ROME layer sweep, each fact edited alone on the unedited model",
        "model": model_name, "model_identity": lm.identity, "dataset": "counterfact easyedit edit split",
        "n": n, "case_ids": [r.case_id for r in requests],
        "hparams_base": base.model_dump(mode="json"), "hparams_base_sha256": hparams_hash(base),
        "threads": torch.get_num_threads(),
        "unedited": {k: sum(b.get(k, 0.0) for b in baseline) / len(baseline)
                     for k in CASE_METRICS + ("rewrite_margin",)},
        "layers": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.studies.layer_choice",
                                description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--layers", required=True, help="comma-separated candidate layers")
    p.add_argument("--n", type=positive_int, default=8)
    add_run_options(p)
    args = p.parse_args(argv)
    start_run(args)
    layers = [int(x) for x in args.layers.split(",")]
    result = sweep(args.model, layers, args.n, data_root=args.data_root, cache_root=args.cache_root)
    out = Path(args.out) if args.out else settings.RESULTS_DIR / "layer_choice" / f"{args.model}-rome.json"
    io.write_json(out, result)
    for row in result["layers"]:
        print(f"layer {row['layer']:3d}: efficacy {row['efficacy']:.2f} generalization "
              f"{row['generalization']:.2f} locality {row['locality']:.2f} margin "
              f"{row['rewrite_margin']:.2f} {row['seconds']:.1f}s/edit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
