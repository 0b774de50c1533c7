"""Unedited-model baselines on every general-ability task, and the above-chance decision.

``python -m benchmark.evaluation.baselines run MODEL`` evaluates MODEL on every task at
:data:`BASELINE_LIMITS` and writes ``results/baselines/<model>.json`` (metrics, the
per-item scores the decision needs, task hashes, settings). ``... table`` reads those files
and writes ``results/baselines/baselines.{md,csv,json}``.

Decision rule (one-sided, alpha = 0.01), by task kind:
- choice: exact binomial test of the number correct against p0 = max(1/k, share of the
  majority class among the evaluated items) -- the better of guessing and always
  answering the majority label (known_facts: p0 = 1/2, its gold is always the first
  choice, which is not a label a model could learn to prefer). For the AlphaEdit sets the test uses accuracy (their
  headline metric is weighted F1, reported alongside).
- binary (0/1 generative scores: substring, exact match): exact binomial test against
  p0 = 0.02, a floor a broken model does not reach (random tiny models score 0).
- score (mean ROUGE): one-sided t-test of the per-item ROUGE mean against 0.05.
- perplexity: no chance level; always informative (the calibrated signal; docs/methods.md,
  general abilities).
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import scipy.stats

from benchmark.core import io, settings
from benchmark.evaluation.general import evaluate_tasks
from benchmark.evaluation.task_catalog import TASKS, TaskInfo

log = logging.getLogger(__name__)

ALPHA = 0.01
BINARY_FLOOR = 0.02
SCORE_FLOOR = 0.05
BASELINE_DIR = settings.RESULTS_DIR / "baselines"
BATCH_SIZE = 8

#: Documents per task for the committed baselines (2 shared CPU cores: modest on purpose).
BASELINE_LIMITS: dict[str, int] = {
    "prune_reasoning": 40, "prune_summarization": 20, "prune_qa": 40, "prune_nli": 60,
    "gsm8k_zeroshot": 10, "nq_closedbook": 40, "mmlu": 40, "boolq": 40, "piqa": 60,
    "glue_sst2": 60, "glue_mrpc": 40, "glue_cola": 60, "glue_rte": 40, "glue_nli": 40,
    "glue_sentiment_analysis": 60, "glue_mmlu": 40, "glue_dialogue": 30,
    "wikitext_heldout": 20, "known_facts": 80,
}


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (exact)."""
    return float(scipy.stats.binom.sf(k - 1, n, p))


def t_sf(t: float, df: int) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom (NaN for df < 1)."""
    if df <= 0:
        return math.nan
    return float(scipy.stats.t.sf(t, df))


def per_item(info: TaskInfo, samples: list[dict]) -> dict:
    """What the decision needs from the logged samples of one task."""
    if info.kind == "choice":
        correct = [int(s[info.correct_metric]) for s in samples]
        golds = [s["doc"][info.gold_field] for s in samples]
        majority = max(golds.count(g) for g in set(golds)) / len(golds)
        return {"correct": sum(correct), "n": len(correct), "majority_share": majority}
    if info.kind == "binary":
        vals = [int(s[info.primary_metric]) for s in samples]
        return {"correct": sum(vals), "n": len(vals)}
    if info.kind == "score":
        return {"scores": [float(s[info.primary_metric]) for s in samples]}
    return {"n": len(samples)}


def decide(info: TaskInfo, item: dict) -> dict:
    """{above_chance, p_value, reference, test} for one task's per-item summary."""
    if info.kind == "choice":
        p0 = 1 / (info.n_choices or 2)
        if info.majority_baseline:
            p0 = max(p0, item["majority_share"])
        p = binom_sf(item["correct"], item["n"], p0)
        return {"above_chance": p < ALPHA, "p_value": p, "reference": p0,
                "test": f"binomial vs max(1/k, majority) = {p0:.3f}"}
    if info.kind == "binary":
        p = binom_sf(item["correct"], item["n"], BINARY_FLOOR)
        return {"above_chance": p < ALPHA, "p_value": p, "reference": BINARY_FLOOR,
                "test": f"binomial vs floor {BINARY_FLOOR}"}
    if info.kind == "score":
        xs = item["scores"]
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        mean = statistics.fmean(xs)
        if sd == 0:
            p = 0.0 if mean > SCORE_FLOOR else 1.0
        else:
            p = t_sf((mean - SCORE_FLOOR) / (sd / math.sqrt(len(xs))), len(xs) - 1)
        return {"above_chance": p < ALPHA, "p_value": p, "reference": SCORE_FLOOR,
                "test": f"one-sided t-test vs floor {SCORE_FLOOR}"}
    return {"above_chance": True, "p_value": None, "reference": None,
            "test": "no chance level (perplexity)"}


def scaled_limit(name: str, scale: float) -> int:
    """BASELINE_LIMITS scaled (at least 10 documents; known_facts is cheap and kept whole)."""
    base = BASELINE_LIMITS[name]
    return base if name == "known_facts" else max(10, round(base * scale))


def run_model(model: str, tasks: list[str] | None = None, scale: float = 1.0,
              resume: bool = False) -> Path:
    from benchmark import models

    names = tasks or TASKS.names()
    lm = models.load(model)
    out = {"model": model, "identity": lm.identity, "tasks": {}}
    path = BASELINE_DIR / f"{model}.json"
    if path.exists():
        out = json.loads(path.read_text())
    for name in names:  # one task at a time so a partial run keeps what it finished
        info = TASKS.get(name)
        done = out["tasks"].get(name)
        if resume and done and done.get("limit_scale", 1.0) == scale:
            continue
        t0 = time.perf_counter()
        res = evaluate_tasks(lm, [name], limit=scaled_limit(name, scale), batch_size=BATCH_SIZE)
        out["tasks"][name] = {
            "metrics": {m: mv.to_dict() for m, mv in res[name].items()},
            "items": per_item(info, res.samples[name]),
            "task_hash": res.task_hashes[name],
            "settings": res.settings.to_dict(),
            "seconds": round(time.perf_counter() - t0, 1),
            "limit_scale": scale,
        }
        io.write_json(path, out)
        log.warning("%s %s done in %.0fs", model, name, time.perf_counter() - t0)
    return path


def build_table(models: list[str]) -> dict:
    rows = []
    for model in models:
        data = json.loads((BASELINE_DIR / f"{model}.json").read_text())
        for name in TASKS.names():
            if name not in data["tasks"]:
                continue
            info, t = TASKS.get(name), data["tasks"][name]
            d = decide(info, t["items"])
            prim = t["metrics"][info.primary_metric]
            rows.append({
                "model": model, "task": name, "family": info.family,
                "metric": info.primary_metric, "value": prim["value"], "n": prim["n"],
                "stderr": prim["stderr"], **d,
                "other_metrics": {m: v["value"] for m, v in t["metrics"].items()
                                  if m != info.primary_metric},
                "task_hash": t["task_hash"],
            })
    return {"rows": rows, "limits": BASELINE_LIMITS, "batch_size": BATCH_SIZE, "alpha": ALPHA,
            "headline": sorted({r["task"] for r in rows if r["above_chance"]} & set(
                _all_above(rows, models)))}


def _all_above(rows: list[dict], models: list[str]) -> set[str]:
    """Tasks above chance for every model in ``models``."""
    per: dict[str, set[str]] = {}
    for r in rows:
        if r["above_chance"]:
            per.setdefault(r["task"], set()).add(r["model"])
    return {t for t, ms in per.items() if ms >= set(models)}


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def write_table(models: list[str]) -> None:
    table = build_table(models)
    io.write_json(BASELINE_DIR / "baselines.json", table)
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["model", "task", "family", "metric", "value", "stderr", "n", "above_chance",
            "p_value", "reference", "test", "task_hash"]
    w.writerow(cols)
    for r in table["rows"]:
        w.writerow([r[c] for c in cols])
    io.write_text(BASELINE_DIR / "baselines.csv", buf.getvalue())
    lines = ["| task | family | metric | " + " | ".join(models) + " | test |",
             "|---|---|---|" + "---|" * len(models) + "---|"]
    by = {(r["model"], r["task"]): r for r in table["rows"]}
    for name in TASKS.names():
        cells = []
        ref = ""
        for m in models:
            r = by.get((m, name))
            if r is None:
                cells.append("-")
                continue
            mark = " **↑**" if r["above_chance"] else ""
            p = "" if r["p_value"] is None else f" (p={r['p_value']:.2g}"
            p += "" if r["reference"] is None else f", ref {r['reference']:.3g})"
            cells.append(f"{_fmt(r['value'])}{mark}{p}, n={r['n']}")
            ref = r["test"].split(" = ")[0].split(" vs floor")[0] + (
                " vs floor" if "floor" in r["test"] else "")
        info = TASKS.get(name)
        lines.append(f"| {name} | {info.family} | {info.primary_metric} | " + " | ".join(cells)
                     + f" | {ref} |")
    md = "\n".join(lines) + "\n"
    io.write_text(BASELINE_DIR / "table.md", md)
    sys.stdout.write(md)
    sys.stdout.write(f"headline (above chance for all of {models}): {table['headline']}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.evaluation.baselines")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("--tasks", default=None)
    r.add_argument("--scale", type=float, default=1.0, help="multiply BASELINE_LIMITS")
    r.add_argument("--resume", action="store_true", help="skip tasks already in the file")
    t = sub.add_parser("table")
    t.add_argument("models", nargs="+")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings.apply_offline_env()
    if args.cmd == "run":
        run_model(args.model, args.tasks.split(",") if args.tasks else None, args.scale,
                  args.resume)
    else:
        write_table(args.models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
