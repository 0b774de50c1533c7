"""Batch-editor calibration of a small model: MEMIT's λ, AlphaEdit's null-space threshold,
NSE's residual band (docs/batch-editors.md, "Gemma-3-270M").

Data: the first ``n`` requests of the CounterFact easyedit edit split, in batches of
``batch_size``. Every setting edits every batch on the UNEDITED model (apply, score, revert;
the NSE confirmation alone runs its batches in sequence), with the model's hparams files and
only the swept value overridden. Per case: efficacy, generalization, locality as the
benchmark scores them (:mod:`benchmark.evaluation.editing`, fractions in [0, 1]) and the
rewrite margin (:func:`benchmark.studies.layer_choice.score_case`). Per batch: the editor's
``Delta.info`` diagnostics (‖h‖, ‖δ‖ = ‖z* − h‖, the residual ‖z* − h_L‖ left after the edit,
per-layer residual and update norms) and ‖ΔW_l‖ / ‖W_l‖ of the whole update per layer.
Per edited layer and case, on the unedited model: the gain from the edited matrix's output
to the layer's residual output (:func:`output_gain`), which the layer loop assumes to be 1.

The targets z* depend on neither λ nor the threshold (they are optimised on the unedited
model before any layer is solved), so each request's z* is computed once, batch by batch,
and reused by every MEMIT and AlphaEdit setting (:func:`shared_targets`); the seconds of a
setting are therefore the layer solves alone, the target seconds are recorded apart. The
NSE confirmation runs outside it: NSE's ``prepare`` computes its own rewound targets.

Selection rules, fixed before any run: :mod:`benchmark.studies.calibration_rules`.

Run (writes results/calibration/<model>.json unless --out is given):

    python -m benchmark.studies.calibration --model gemma3-270m --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmark import models
from benchmark.commands.options import positive_int
from benchmark.core import io, settings
from benchmark.core.arch import down_weight, to_out_in
from benchmark.core.requests import EditRequest
from benchmark.studies import add_run_options, start_run
from benchmark.studies.calibration_rules import (  # noqa: F401 (re-exported)
    ALPHA_QUANTILE,
    ALPHAEDIT_THRESHOLDS,
    DEGENERATE_HIGH,
    DEGENERATE_LOW,
    LAMBDA_MARGIN,
    LAMBDAS,
    RELEASED_THRESHOLD,
    RULES,
    THRESHOLDS,
    UPPER_FACTOR,
    _one_digit,
    choose_lambda,
    choose_threshold,
    degenerate,
    mean_of,
    nse_band,
    null_space_dims,
    quantile,
    round_down_1sig,
    round_up_1sig,
)
from benchmark.studies.layer_choice import CASE_METRICS, score_case
from editors import batch, solvers, stats
from editors.alphaedit import AlphaEdit
from editors.base import Delta, apply_delta
from editors.hparams import hparams_hash, load_hparams
from editors.memit import MEMIT
from editors.nse import NSE

log = logging.getLogger(__name__)

GAIN_STEPS = (1.0, 100.0)
MEAN_KEYS = CASE_METRICS + ("rewrite_margin",)

# --------------------------------------------------------------------------- measurements
@contextlib.contextmanager
def shared_targets(lm) -> Iterator[dict]:
    """Within the block, :func:`editors.batch.residual_targets` on ``lm`` optimises each
    request's z* once (per last layer, target settings, templates, engine) and reuses it:
    valid while every call sees the unedited model, as every call inside the block does.
    Yields the memo."""
    memo: dict[tuple, tuple[torch.Tensor, dict[str, Any]]] = {}
    original = batch.residual_targets

    def cached(model, requests, hp, templates, engine="fast"):
        if model is not lm:
            return original(model, requests, hp, templates, engine)
        key = (hp.layers[-1], hp.target.model_dump_json(), tuple(templates), engine)
        todo = [r for r in requests if (r.case_id, *key) not in memo]
        if todo:
            Z, info = original(model, todo, hp, templates, engine)
            for j, r in enumerate(todo):
                memo[(r.case_id, *key)] = (Z[:, j].clone(), {k: v[j] for k, v in info.items()})
        cols = [memo[(r.case_id, *key)] for r in requests]
        return (torch.stack([c[0] for c in cols], dim=1),
                {k: [c[1][k] for c in cols] for k in cols[0][1]})

    batch.residual_targets = cached
    try:
        yield memo
    finally:
        batch.residual_targets = original


def update_ratios(lm, delta: Delta) -> dict[int, float]:
    """‖ΔW_l‖ / ‖W_l‖ (Frobenius) per edited layer."""
    out = {}
    for layer in range(lm.arch.n_layers):
        md = delta.matrices.get(lm.arch.down_name(layer))
        if md is None:
            continue
        W = to_out_in(down_weight(lm.model, lm.arch, layer), lm.arch.layout)
        out[layer] = float(md.to_dense().float().norm() / W.float().norm())
    return out


def output_gain(lm, r: EditRequest, layer: int, steps: Sequence[float] = GAIN_STEPS,
                seed: int = 0) -> dict[float, float]:
    """‖change of the residual output of ``layer``‖ / ``step`` when ``step`` x a fixed random
    unit vector is added to the output of the edited matrix (``down_name``) at the subject's
    last token of the bare prompt. The batch editors' layer loop assumes 1 (the matrix's
    output is added to the residual stream unchanged, as in LLaMA and GPT-2); a norm between
    the two (Gemma-3's post-feedforward RMSNorm) makes it differ and depend on the step."""
    from benchmark.core.arch import get_module
    from editors.keys import subject_end, subject_last_token

    enc = lm.tokenizer(r.prompt, return_tensors="pt")
    pos = subject_last_token(lm.tokenizer, r.prompt, subject_end(r))
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(lm.arch.d_model, generator=g, dtype=torch.float64)
    v = v / v.norm()
    got: dict[str, torch.Tensor] = {}

    def grab(mod, args, out):
        got["h"] = (out[0] if isinstance(out, tuple) else out)[0, pos].detach().double()

    def residual(step: float) -> torch.Tensor:
        def shift(mod, args, out):
            out = out.clone()
            out[0, pos] += (step * v).to(out.dtype)
            return out

        hook = get_module(lm.model, lm.arch.down_name(layer)).register_forward_hook(shift) if step else None
        try:
            with torch.no_grad():
                lm.model(**enc)
        finally:
            if hook is not None:
                hook.remove()
        return got["h"]

    grab_hook = get_module(lm.model, lm.arch.layer_name(layer)).register_forward_hook(grab)
    try:
        base = residual(0.0)
        return {step: float((residual(step) - base).norm() / step) for step in steps}
    finally:
        grab_hook.remove()


def gain_table(lm, requests: Sequence[EditRequest], layers: Sequence[int]) -> dict[int, dict]:
    """Per layer and step: the :func:`output_gain` of every request."""
    return {layer: {step: [output_gain(lm, r, layer, (step,))[step] for r in requests]
                    for step in GAIN_STEPS} for layer in layers}


def batches(requests: Sequence[EditRequest], size: int) -> list[list[EditRequest]]:
    return [list(requests[i:i + size]) for i in range(0, len(requests), size)]


def batch_info(lm, delta: Delta) -> dict[str, Any]:
    """The diagnostics of ``delta.info`` worth keeping, plus the update ratios."""
    keep = ("delta_norm", "h_norm", "target_nll", "final_residual_norm", "layer_info",
            "null_space_dim", "n_passes", "passes", "residual_checks", "outliers_skipped",
            "outlier_case_ids")
    out = {k: delta.info[k] for k in keep if k in delta.info}
    out["update_ratio"] = update_ratios(lm, delta)
    return out


def edit_batch(lm, editor, requests: Sequence[EditRequest], state) -> dict[str, Any]:
    """Edit ``requests`` as one batch on the current model, score each, revert."""
    t, c = time.perf_counter(), time.process_time()
    delta = editor.compute(lm, requests, state)
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    undo = apply_delta(lm.model, delta)
    try:
        cases = [{"case_id": r.case_id, **score_case(lm, r)} for r in requests]
    finally:
        undo.revert()
    return {"case_ids": [r.case_id for r in requests], "seconds": secs, "cpu_seconds": cpu,
            **batch_info(lm, delta), "cases": cases}


def setting_row(lm, make_editor: Callable[[], Any], requests: Sequence[EditRequest],
                batch_size: int, label: dict[str, Any]) -> dict[str, Any]:
    """Every batch edited on the unedited model with a fresh state: means, batches, cases."""
    editor = make_editor()
    editor.prepare(lm, requests, editor.init_state(lm))
    done = [edit_batch(lm, editor, b, editor.init_state(lm)) for b in batches(requests, batch_size)]
    cases = [c for b in done for c in b["cases"]]
    row = {**label, **{k: mean_of(cases, k) for k in MEAN_KEYS},
           "seconds": sum(b["seconds"] for b in done),
           "cpu_seconds": sum(b["cpu_seconds"] for b in done), "batches": done}
    log.info("%s: %s", label, {k: round(row[k], 3) for k in MEAN_KEYS + ("seconds",)})
    return row


def lambda_sweep(lm, base, requests, batch_size, lambdas, *, data_root=None, cache_root=None):
    def make(lam):
        return lambda: MEMIT(base.model_copy(update={"mom2_update_weight": lam}),
                             data_root=data_root, cache_root=cache_root, progress=False)

    return [setting_row(lm, make(lam), requests, batch_size, {"lambda": lam}) for lam in lambdas]


def null_space_table(lm, hp, thresholds, *, data_root=None, cache_root=None) -> dict[str, Any]:
    """Per edited layer: C0's eigenvalue range and trace, and the null-space dimension at
    every threshold (``hp.nullspace_threshold_kind``)."""
    c0 = stats.second_moments(lm, hp.layers, hp.stats, data_root=data_root, cache_root=cache_root,
                              progress=False)
    layers = {}
    for layer in hp.layers:
        ev = solvers.c0_eigenvalues(c0[layer])
        layers[layer] = {"eig_min": float(ev[0]), "eig_max": float(ev[-1]), "trace": float(ev.sum()),
                         "dims": null_space_dims(ev, thresholds, hp.nullspace_threshold_kind)}
    return {"kind": hp.nullspace_threshold_kind, "thresholds": list(thresholds),
            "d_ffn": lm.arch.d_ffn, "layers": layers}


def alphaedit_rows(lm, base, requests, batch_size, thresholds, *, data_root=None, cache_root=None):
    def make(t):
        return lambda: AlphaEdit(base.model_copy(update={"nullspace_threshold": t}),
                                 data_root=data_root, cache_root=cache_root, progress=False)

    return [setting_row(lm, make(t), requests, batch_size, {"threshold": t}) for t in thresholds]


def nse_confirmation(lm, hp, requests, batch_size, *, data_root=None, cache_root=None) -> dict:
    """One NSE trajectory over ``requests`` (batches in sequence, rewound targets): each
    batch scored right after its edit (``cases_each``), all requests at the end
    (``cases_final``); the model is restored afterwards."""
    editor = NSE(hp, data_root=data_root, cache_root=cache_root, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, requests, state)
    undos, done = [], []
    try:
        for b in batches(requests, batch_size):
            t, c = time.perf_counter(), time.process_time()
            delta = editor.compute(lm, b, state)
            secs, cpu = time.perf_counter() - t, time.process_time() - c
            info = batch_info(lm, delta)  # ‖ΔW‖ / ‖W‖ of the weights the update is added to
            undos.append(apply_delta(lm.model, delta))
            done.append({"case_ids": [r.case_id for r in b], "seconds": secs, "cpu_seconds": cpu,
                         **info, "cases_each": [{"case_id": r.case_id, **score_case(lm, r)} for r in b]})
        final = [{"case_id": r.case_id, **score_case(lm, r)} for r in requests]
    finally:
        for undo in reversed(undos):
            undo.revert()
    each = [c for b in done for c in b["cases_each"]]
    return {"hparams": hp.model_dump(mode="json"),
            **{f"{k}_each": mean_of(each, k) for k in MEAN_KEYS},
            **{f"{k}_final": mean_of(final, k) for k in MEAN_KEYS},
            "n_passes": [b["n_passes"] for b in done],
            "outliers_skipped": sum(b["outliers_skipped"] for b in done),
            "seconds": sum(b["seconds"] for b in done), "batches": done, "cases_final": final}


def compute_all_targets(lm, hp, requests, batch_size) -> list[dict[str, Any]]:
    """z* of every request, batch by batch, through :func:`editors.batch.residual_targets`
    (inside :func:`shared_targets` this fills the memo); the seconds per batch."""
    from editors.templates import context_templates

    templates = context_templates(lm, hp.templates)
    out = []
    for b in batches(requests, batch_size):
        t, c = time.perf_counter(), time.process_time()
        _, info = batch.residual_targets(lm, b, hp, templates)
        out.append({"case_ids": [r.case_id for r in b], "seconds": time.perf_counter() - t,
                    "cpu_seconds": time.process_time() - c, **info})
    return out


# --------------------------------------------------------------------------- the study
def calibrate(model_name: str, *, n: int = 20, batch_size: int = 10, lambdas=LAMBDAS,
              thresholds=THRESHOLDS, alphaedit_thresholds=ALPHAEDIT_THRESHOLDS,
              data_root=None, cache_root=None, lm=None, command: str | None = None) -> dict:
    from benchmark.data import load_requests
    from benchmark.results import git_info

    t0, c0 = time.perf_counter(), time.process_time()
    lm = lm or models.load(model_name, cache_dir=cache_root)
    hp = {m: load_hparams(m, model_name) for m in ("memit", "alphaedit", "nse")}
    requests = load_requests("counterfact", "edit", limit=n, data_root=data_root)
    kw = {"data_root": data_root, "cache_root": cache_root}
    stats.second_moments(lm, hp["memit"].layers, hp["memit"].stats, progress=False, **kw)
    unedited = [{"case_id": r.case_id, **score_case(lm, r)} for r in requests]
    gains = gain_table(lm, requests, hp["memit"].layers)
    with shared_targets(lm):
        targets = compute_all_targets(lm, hp["memit"], requests, batch_size)
        lam_rows = lambda_sweep(lm, hp["memit"], requests, batch_size, lambdas, **kw)
        lam = choose_lambda(lam_rows)
        nulls = null_space_table(lm, hp["alphaedit"], thresholds, **kw)
        dims = {layer: row["dims"] for layer, row in nulls["layers"].items()}
        threshold = choose_threshold(dims, lm.arch.d_ffn)
        ae_rows = alphaedit_rows(lm, hp["alphaedit"], requests, batch_size, alphaedit_thresholds, **kw)
        chosen_row = next(r for r in lam_rows if r["lambda"] == lam)
        residuals = [x for b in chosen_row["batches"] for x in b["final_residual_norm"]]
        fresh = [x for b in targets for x in b["delta_norm"]]
    band = nse_band(residuals, fresh)
    # where the rule's premise fails, the confirmation runs the file's band (labelled)
    used = ({"alpha": band["alpha"], "upper_bound": band["upper_bound"]} if band["applies"]
            else {"alpha": hp["nse"].alpha, "upper_bound": hp["nse"].upper_bound})
    nse_hp = hp["nse"].model_copy(update={"mom2_update_weight": lam, **used, "neuron_fraction": 1.0})
    # outside shared_targets: NSE's prepare optimises (and caches) its own targets, as it does
    nse = {"band_source": "rule" if band["applies"] else "hparams file (rule does not apply)",
           **nse_confirmation(lm, nse_hp, requests, batch_size, **kw)}
    return {
        "what": "batch-editor calibration: MEMIT λ sweep, AlphaEdit null-space threshold, NSE band",
        "model": model_name, "model_identity": lm.identity,
        "dataset": "counterfact easyedit edit split", "n": n, "batch_size": batch_size,
        "case_ids": [r.case_id for r in requests],
        "command": command, "git": git_info(), "threads": torch.get_num_threads(),
        "rules": RULES, "lambda_margin": LAMBDA_MARGIN,
        "hparams_base": {m: h.model_dump(mode="json") for m, h in hp.items()},
        "hparams_base_sha256": {m: hparams_hash(h) for m, h in hp.items()},
        "unedited": {**{k: mean_of(unedited, k) for k in MEAN_KEYS}, "cases": unedited},
        "targets": targets,
        "output_gain": gains,
        "lambda_sweep": lam_rows,
        "null_space": nulls,
        "alphaedit": ae_rows,
        "nse_band_inputs": {"lambda": lam, "one_pass_residuals": residuals, "fresh_delta_norms": fresh},
        "nse_band_rule": band,
        "nse": nse,
        "chosen": {"mom2_update_weight": lam, "nullspace_threshold": threshold,
                   "nullspace_threshold_kind": hp["alphaedit"].nullspace_threshold_kind,
                   "alpha": band["alpha"] if band["applies"] else None,
                   "upper_bound": band["upper_bound"] if band["applies"] else None,
                   "neuron_fraction": 1.0},
        "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
    }


def summary_lines(result: dict) -> list[str]:
    lines = [f"lambda {r['lambda']:>8g}: efficacy {r['efficacy']:.2f} generalization "
             f"{r['generalization']:.2f} locality {r['locality']:.2f} {r['seconds']:.0f}s"
             for r in result["lambda_sweep"]]
    for layer, row in result["null_space"]["layers"].items():
        lines.append(f"layer {layer} null-space dims: " +
                     " ".join(f"{t:g}:{d}" for t, d in row["dims"].items()))
    lines += [f"alphaedit {r['threshold']:g}: efficacy {r['efficacy']:.2f} generalization "
              f"{r['generalization']:.2f} locality {r['locality']:.2f}" for r in result["alphaedit"]]
    nse = result["nse"]
    lines.append(f"nse: efficacy_each {nse['efficacy_each']:.2f} final {nse['efficacy_final']:.2f} "
                 f"generalization_final {nse['generalization_final']:.2f} locality_final "
                 f"{nse['locality_final']:.2f} passes {nse['n_passes']} outliers {nse['outliers_skipped']}")
    lines.append(f"chosen: {result['chosen']}")
    return lines


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.studies.calibration",
                                description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--n", type=positive_int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=10)
    p.add_argument("--lambdas", type=floats, default=LAMBDAS, help="comma-separated λ grid")
    p.add_argument("--thresholds", type=floats, default=THRESHOLDS,
                   help="null-space thresholds whose dimensions are counted")
    p.add_argument("--alphaedit-thresholds", type=floats, default=ALPHAEDIT_THRESHOLDS,
                   help="thresholds AlphaEdit edits with")
    add_run_options(p)
    args = p.parse_args(argv)
    start_run(args)
    command = shlex.join(["python", "-m", "benchmark.studies.calibration",
                          *(sys.argv[1:] if argv is None else argv)])
    result = calibrate(args.model, n=args.n, batch_size=args.batch_size, lambdas=args.lambdas,
                       thresholds=args.thresholds, alphaedit_thresholds=args.alphaedit_thresholds,
                       data_root=args.data_root, cache_root=args.cache_root, command=command)
    out = Path(args.out) if args.out else settings.RESULTS_DIR / "calibration" / f"{args.model}.json"
    io.write_json(out, result)
    print("\n".join(summary_lines(result)))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
