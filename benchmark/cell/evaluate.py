"""Evaluation of the model as it is now, into result records.

Editing metrics follow the cell's evaluation timing (``first-n``: the first n facts at
checkpoint n; ``final``: every fact at the last checkpoint; ``each``: every batch right
after its own edit, pooled at the checkpoints); general abilities at every checkpoint;
spectrum figures of every edited matrix. Each evaluation runs under its own RNG seeded
from the cell seed, the checkpoint and the variant. Evaluations of the unedited model
(checkpoint 0) are shared by the cells of a grid through a small cache; an entry that does
not parse or whose key differs is named in a warning and recomputed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from benchmark.cell.rng import derived_seed, isolated_rng
from benchmark.cell.state import CellRun
from benchmark.core import io
from benchmark.core.arch import to_out_in
from benchmark.core.lower_layers import LowerLayerMemo, lowest_layer
from benchmark.core.requests import EditRequest
from benchmark.evaluation import MetricValue, as_metric_value, pooled
from benchmark.evaluation.generation import GENERATION_METRICS, GenerationRule
from benchmark.results import Record, SampleRow, finite_or_none
from prune.linalg import Update

log = logging.getLogger(__name__)

Metrics = Mapping[str, object]  # metric name -> MetricValue (or what as_metric_value reads)

#: editing metrics scored from sampled generations (fluency, consistency)
SAMPLED_METRICS = frozenset({"fluency", "consistency"})


@dataclass
class Evaluated:
    """What one evaluation produced: result records and the per-item outputs behind them."""

    records: list[Record] = field(default_factory=list)
    samples: list[SampleRow] = field(default_factory=list)

    def __iadd__(self, other: Evaluated) -> Evaluated:
        self.records += other.records
        self.samples += other.samples
        return self

    def relabelled(self, variant: str) -> Evaluated:
        """The same numbers under another variant label (a restraint that is the identity)."""
        return Evaluated([r.model_copy(update={"variant": variant}) for r in self.records],
                         [s.model_copy(update={"variant": variant}) for s in self.samples])


def _compact(d: Mapping) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def scorer(run: CellRun, kind: str, metric: str) -> str:
    """How each item of ``metric`` was scored (the records' ``scorer`` column)."""
    if kind == "spectrum":
        return "svd"
    if kind == "general":
        return "lm-eval"
    if metric in GENERATION_METRICS:
        return GenerationRule.from_dict(run.spec.evaluation.generation.canonical()).describe()
    if metric == "fluency":
        return run.spec.evaluation.fluency_form().describe()
    if metric in SAMPLED_METRICS:
        return "sampled;top-k5;100tok"
    return "teacher-forced"


def protocol(run: CellRun, kind: str, task: str) -> str:
    """The settings besides the record's columns that decide its number."""
    ev = run.spec.evaluation
    if kind == "editing":
        return _compact(run.spec.dataset.canonical())
    if kind == "general":
        limit = next((t.limit for t in ev.tasks if t.name == task), None)
        return _compact({"limit": limit, "chat_template": ev.chat_template})
    return ""


def records(run: CellRun, n: int, variant: str, kind: str, task: str,
            metrics: Metrics) -> Evaluated:
    d = run.spec.describe()
    out = Evaluated()
    for metric, raw in sorted(metrics.items()):
        mv = as_metric_value(raw)
        out.records.append(Record(grid=run.ctx.grid, cell=d["cell"], model=d["model"],
                                  editor=d["editor"], dataset=d["dataset"],
                                  trajectory=d["trajectory"], batch_size=d["batch_size"],
                                  seed=d["seed"], timing=d["timing"], n_edits=n, variant=variant,
                                  kind=kind, task=task, metric=metric,
                                  value=finite_or_none(mv.value), n=int(mv.n),
                                  stderr=finite_or_none(mv.stderr),
                                  scorer=scorer(run, kind, metric),
                                  protocol=protocol(run, kind, task)))
        if mv.items is not None:
            it = mv.items
            out.samples.append(SampleRow(cell=d["cell"], n_edits=n, variant=variant, kind=kind,
                                         task=task, metric=metric, statistic=it.statistic,
                                         ids=it.ids, scores=it.scores, weights=it.weights))
    return out


def evaluate_each(run: CellRun, batch: Sequence[EditRequest]) -> None:
    """``each`` timing: score the batch just edited (pooled later at the checkpoints)."""
    ev = run.spec.evaluation
    seed = derived_seed(run.spec.seed, "each", run.cursor)
    with run.phase("evaluation"), isolated_rng(seed):
        scores = run.comps.evaluate_editing(run.loaded, batch, ev.editing_metrics, ev.batch_size,
                                            generation=ev.generation.canonical(),
                                            fluency=ev.fluency_form().canonical())
    run.each.append({k: as_metric_value(v) for k, v in scores.items()})


#: baseline cache entries of an older layout (no per-item outputs) are not reused
_CACHE_FORMAT = 2


def _cached(run: CellRun, kind: str, key: dict, compute: Callable[[], dict]) -> dict:
    """Unedited-model evaluations are shared by every cell of a grid through a small cache
    (a file lock makes parallel cells wait for one computation instead of repeating it)."""
    if run.ctx.baseline_dir is None:
        return compute()
    path = run.ctx.baseline_dir / f"{kind}-{io.sha256_json(key)[:24]}.json"
    with io.file_lock(path.with_suffix(".lock")):
        if path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if raw["key"] != json.loads(json.dumps(key, default=str)):
                    raise ValueError("its key differs from this evaluation's")
                return _decode_metrics(raw)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("%s: unusable baseline cache entry (%s); recomputing it", path, exc)
                run.ctx.event(run.spec.short_hash, "baseline_corrupt", path=str(path),
                              reason=str(exc))
        out = compute()
        io.write_json(path, {"key": key, "metrics": _encode_metrics(out)})
        return out


def _encode_metrics(m: Mapping[str, object]) -> dict:
    return {k: (_encode_metrics(v) if isinstance(v, dict) else as_metric_value(v).to_dict())
            for k, v in m.items()}


def _decode_metrics(raw: dict) -> dict:
    def dec(d: dict) -> dict:
        return {k: (MetricValue.from_dict(v) if "value" in v and "n" in v else dec(v)) for k, v in d.items()}

    return dec(raw["metrics"])


def _editing_requests(run: CellRun, n: int) -> list[EditRequest] | None:
    timing = run.spec.evaluation.timing
    if n == 0:
        return run.requests  # pre-edit baseline of every fact of the trajectory
    if timing == "first-n":
        return run.requests[:n]
    if timing == "final":
        return run.requests if n == run.spec.n_edits else None
    return None  # "each": pooled separately


def _editing(run: CellRun, n: int, variant: str, seed: int) -> Evaluated:
    spec, ev = run.spec, run.spec.evaluation
    reqs = _editing_requests(run, n)
    if ev.editing_metrics and reqs is not None:
        def editing() -> dict:
            return run.comps.evaluate_editing(run.loaded, reqs, ev.editing_metrics, ev.batch_size,
                                              generation=ev.generation.canonical(),
                                            fluency=ev.fluency_form().canonical())

        if n == 0:
            key = {"model": run.loaded.identity or {}, "dtype": spec.dtype,
                   "device": run.ctx.device, "metrics": list(ev.editing_metrics),
                   "batch_size": ev.batch_size, "seed": seed,
                   "requests": [r.case_id for r in reqs], "dataset": spec.dataset.canonical(),
                   "generation": ev.generation.canonical(),
                   "fluency": ev.fluency_form().canonical(), "format": _CACHE_FORMAT}
            scores = _cached(run, "editing", key, editing)
        else:
            scores = editing()
        return records(run, n, variant, "editing", spec.dataset.name, scores)
    if ev.editing_metrics and ev.timing == "each" and variant == "none":
        batches = run.each[:math.ceil(n / spec.batch_size)]
        names = sorted({m for d in batches for m in d})
        return records(run, n, variant, "editing", spec.dataset.name,
                       {m: pooled([d[m] for d in batches if m in d]) for m in names})
    return Evaluated()


def _lower_layers_replayed(run: CellRun) -> contextlib.AbstractContextManager[None]:
    """The general tasks' teacher-forced passes replay the output of the decoder layers
    below the lowest edited one, recorded at the cell's first evaluation of them
    (:mod:`benchmark.core.lower_layers`; bit for bit what running them gives)."""
    if run.lower is None:
        n = lowest_layer(run.loaded, run.w0)
        if not n:
            return contextlib.nullcontext()
        run.lower = LowerLayerMemo(run.loaded, n)
    return run.lower.active()


def _general(run: CellRun, n: int, variant: str, seed: int) -> Evaluated:
    spec, ev = run.spec, run.spec.evaluation
    if not ev.tasks:
        return Evaluated()

    def general() -> dict:
        with _lower_layers_replayed(run):
            return run.comps.evaluate_tasks(run.loaded, ev.tasks, ev.batch_size, ev.chat_template)

    if n == 0:
        key = {"model": run.loaded.identity or {}, "dtype": spec.dtype, "device": run.ctx.device,
               "tasks": [t.canonical() for t in ev.tasks], "batch_size": ev.batch_size,
               "chat_template": ev.chat_template, "seed": seed, "format": _CACHE_FORMAT}
        results = _cached(run, "general", key, general)
    else:
        results = general()
    run.task_hashes.update(getattr(results, "task_hashes", {}) or {})
    out = Evaluated()
    for task, metrics in sorted(results.items()):
        out += records(run, n, variant, "general", task, metrics)
    return out


def _spectrum(run: CellRun, n: int, variant: str, deltas: Mapping[str, Update]) -> Evaluated:
    out = Evaluated()
    with run.phase("spectrum"):
        for name in sorted(run.w0):
            w = to_out_in(run.weight(name).detach(), run.layouts[name])
            figures = run.comps.spectrum(w, deltas.get(name) if n > 0 else None)
            out += records(run, n, variant, "spectrum", name,
                           {k: MetricValue(float("nan") if v is None else float(v), 1, None)
                            for k, v in figures.items()})
    return out


def evaluate_model(run: CellRun, n: int, variant: str, deltas: Mapping[str, Update]) -> Evaluated:
    """Records of the model as it is now (its weights set for ``variant``; ``deltas``: the
    variant's accumulated update per matrix, for the spectrum figures)."""
    seed = derived_seed(run.spec.seed, n, variant)
    with run.phase("evaluation"), isolated_rng(seed):
        recs = _editing(run, n, variant, seed)
        recs += _general(run, n, variant, seed)
    if run.spec.evaluation.spectrum:
        recs += _spectrum(run, n, variant, deltas)
    return recs
