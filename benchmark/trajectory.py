"""One cell = one sequential editing trajectory, with checkpoints, evaluation variants and resume.

Data flow (DESIGN.md): load model, requests and editor; for each edit batch the editor
computes a Delta on the current model; the trajectory restraint (RECT masks each matrix's
update against the weight just before it; PRUNE online restrains the accumulated update)
is applied, the update added, and ΔW accumulated per matrix (low-rank factors, concatenated,
while every update is factored; dense after RECT or once the rank passes half the matrix).

At each checkpoint n: the state is saved atomically (accumulated updates, current edited
weights, editor state, cursor, RNG states), then every evaluation variant is evaluated
without re-editing: the variant's weights are set (``none``: the trajectory's own model;
PRUNE posthoc: W0 + F(ΔW_n)), editing metrics (per the evaluation timing), general
abilities and spectrum figures are recorded, and the trajectory's weights restored. The
records of checkpoint n are written atomically to ``records/ckpt-<n>.jsonl``; that file is
the checkpoint's completion marker. State is also saved every ``save_every`` edits.

Resume: a fresh process loads the unedited model, the requests and the editor, runs
``init_state`` and ``prepare`` on the unedited model (as a fresh run does), then restores
the saved editor state, edited weights and RNG states and continues from the cursor.
Evaluation runs under its own RNG (seeded from the cell seed, the checkpoint and the
variant) so it never perturbs the trajectory; the records are therefore identical to an
uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.components import Components, Hooks, Restrainer, Update
from benchmark.core import io
from benchmark.core.arch import from_out_in, get_module, to_out_in
from benchmark.evaluation import MetricValue
from benchmark.results import Provenance, Record, finite_or_none, read_records
from benchmark.spec import CellSpec, NoRestraint

log = logging.getLogger(__name__)

STATE_FORMAT = 1


class NonFiniteWeights(RuntimeError):
    """An edit produced NaN or inf weights; the cell fails with this reason."""


# --------------------------------------------------------------------------- paths & context
@dataclass(frozen=True)
class CellPaths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.pt"

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def checkpoint_records(self, n: int) -> Path:
        return self.records_dir / f"ckpt-{n:07d}.jsonl"

    @property
    def done(self) -> Path:
        return self.root / "done.json"

    @property
    def failed(self) -> Path:
        return self.root / "failed.json"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"


@dataclass
class RunContext:
    """How a cell runs (nothing here changes its records)."""

    grid: str
    device: str = "cpu"
    save_every: int = 10
    resume: bool = False
    progress: bool = True
    progress_log: Path | None = None
    baseline_dir: Path | None = None  # shared cache of unedited-model evaluations

    def event(self, cell: str, event: str, **fields: Any) -> None:
        if self.progress_log is None:
            return
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "unix": round(time.time(), 3),
               "grid": self.grid, "cell": cell, "event": event, **fields}
        self.progress_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.progress_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")


# --------------------------------------------------------------------------- RNG
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def derived_seed(*parts: Any) -> int:
    return int(io.sha256_json(list(parts))[:8], 16)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block under ``seed`` and restore every RNG afterwards."""
    saved = rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        set_rng_state(saved)


# --------------------------------------------------------------------------- updates
def densify_if_wide(update: Update) -> Update:
    """Keep factors while their rank is below half the short side; dense beyond."""
    if isinstance(update, tuple):
        a, b = update
        if a.shape[1] > min(a.shape[0], b.shape[0]) // 2:
            return a @ b.T
    return update


def to_dense(update: Update) -> torch.Tensor:
    return update[0] @ update[1].T if isinstance(update, tuple) else update


def pooled(values: Sequence[MetricValue]) -> MetricValue:
    """Combine per-batch means into the mean over all items (exact pooled sample variance)."""
    values = [v for v in values if v.n > 0 and v.value is not None and math.isfinite(v.value)]
    total = sum(v.n for v in values)
    if total == 0:
        return MetricValue(float("nan"), 0, None)
    mean = sum(v.value * v.n for v in values) / total
    if total < 2 or any(v.n >= 2 and v.stderr is None for v in values):
        return MetricValue(mean, total, None)
    within = sum((v.n - 1) * (v.stderr ** 2) * v.n for v in values if v.n >= 2)
    between = sum(v.n * (v.value - mean) ** 2 for v in values)
    var = (within + between) / (total - 1)
    return MetricValue(mean, total, math.sqrt(var / total))


def _mv(x: Any) -> MetricValue:
    if isinstance(x, MetricValue):
        return x
    if isinstance(x, dict):
        return MetricValue(float(x["value"]), int(x.get("n", 1)), x.get("stderr"))
    if hasattr(x, "value"):
        return MetricValue(float(x.value), int(getattr(x, "n", 1)), getattr(x, "stderr", None))
    return MetricValue(float(x), 1, None)


# --------------------------------------------------------------------------- the trajectory
@dataclass
class _Run:
    spec: CellSpec
    ctx: RunContext
    comps: Components
    hooks: Hooks
    paths: CellPaths
    loaded: Any = None
    requests: list = field(default_factory=list)
    editor: Any = None
    bundle: Any = None
    state: Any = None
    traj: Restrainer | None = None
    w0: dict[str, torch.Tensor] = field(default_factory=dict)  # stored layout
    layouts: dict[str, str] = field(default_factory=dict)
    acc: dict[str, Update] = field(default_factory=dict)  # out x in
    cursor: int = 0
    each: list[dict[str, MetricValue]] = field(default_factory=list)
    wall: dict[str, float] = field(default_factory=dict)
    sessions: int = 1
    task_hashes: dict[str, str] = field(default_factory=dict)  # general task -> items hash
    git_sha: str | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - t0

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    def weight(self, name: str) -> torch.nn.Parameter:
        return get_module(self.model, name).weight

    def w0_out_in(self, name: str) -> torch.Tensor:
        return to_out_in(self.w0[name], self.layouts[name])


def run_cell(spec: CellSpec, cell_dir: Path, ctx: RunContext, comps: Components | None = None,
             hooks: Hooks | None = None) -> str:
    """Run (or resume) one cell; returns ``"completed"`` or ``"skipped"`` (already done).

    Raises whatever the cell raised; :mod:`benchmark.runner` records that as a failure.
    """
    paths = CellPaths(Path(cell_dir))
    lock = paths.root.parent / f".{paths.root.name}.lock"
    try:
        with io.file_lock(lock, blocking=False):
            return _run_cell_locked(spec, paths, ctx, comps, hooks)
    except io.LockBusy:
        raise CellBusy(f"cell {paths.root.name} is being run by another seqedit process "
                       f"(it holds {lock}); wait for it to finish or stop it, then --resume") from None


class CellBusy(RuntimeError):
    """Another process is running this cell (its lock is held); nothing was touched."""


def _run_cell_locked(spec: CellSpec, paths: CellPaths, ctx: RunContext, comps: Components | None,
                     hooks: Hooks | None) -> str:
    if paths.done.is_file() and ctx.resume:
        from benchmark.results import git_info

        made_by, now = json.loads(paths.done.read_text()).get("git_sha"), git_info().get("sha")
        if made_by != now:
            log.warning("%s: completed by code at git %s, now %s; kept (--resume). Rerun "
                        "without --resume to recompute it", paths.root.name, made_by, now)
        return "skipped"
    if not ctx.resume and paths.root.exists():
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    if paths.failed.exists():
        paths.failed.unlink()
    io.write_json(paths.spec, spec.canonical())
    run = _Run(spec, ctx, comps or Components(), hooks or Hooks(), paths)
    from benchmark.results import git_info

    run.git_sha = git_info().get("sha")
    _start(run)
    _trajectory(run)
    _finish(run)
    return "completed"


def _start(run: _Run) -> None:
    spec, ctx = run.spec, run.ctx
    cell = spec.short_hash
    seed_everything(spec.seed)
    ctx.event(cell, "phase", phase="load")
    with run.phase("load"):
        run.loaded = run.comps.load_model(spec.model, ctx.device, spec.dtype)
        run.requests = list(run.comps.load_requests(spec.dataset, spec.n_edits))
    if len(run.requests) < spec.n_edits:
        raise ValueError(f"dataset {spec.dataset.name}:{spec.dataset.split} has only "
                         f"{len(run.requests)} requests from offset {spec.dataset.offset}; "
                         f"the cell needs {spec.n_edits}")
    ctx.event(cell, "phase", phase="statistics")
    with run.phase("statistics"):
        run.bundle = run.comps.create_editor(spec.editor, run.loaded, spec.hparams,
                                             progress=ctx.progress)
        run.editor = run.bundle.editor
        run.state = run.editor.init_state(run.loaded)
        run.editor.prepare(run.loaded, run.requests, run.state)
    run.traj = run.comps.restrainer(spec.trajectory)
    if ctx.resume and run.paths.state.is_file():
        _load_state(run)
        ctx.event(cell, "resumed", cursor=run.cursor)


# --------------------------------------------------------------------------- state
def _save_state(run: _Run) -> None:
    with run.phase("save"):
        blob = {
            "format": STATE_FORMAT,
            "spec_hash": run.spec.spec_hash(),
            "cursor": run.cursor,
            "editor_state": run.state.state_dict() if run.state is not None else {},
            "acc": {k: (tuple(v) if isinstance(v, tuple) else v) for k, v in run.acc.items()},
            "weights": {k: run.weight(k).detach().clone() for k in run.w0},
            "layouts": dict(run.layouts),
            "rng": rng_state(),
            "each": [{k: v.to_dict() for k, v in d.items()} for d in run.each],
            "wall": dict(run.wall),
            "sessions": run.sessions,
            "torch_threads": torch.get_num_threads(),
            "git_sha": run.git_sha,
        }
        with io.atomic_path(run.paths.state) as tmp:
            torch.save(blob, tmp)
    run.ctx.event(run.spec.short_hash, "state_saved", cursor=run.cursor)


def _load_state(run: _Run) -> None:
    # our own file in our own work folder: full unpickling is needed for RNG and editor state
    blob = torch.load(run.paths.state, map_location="cpu", weights_only=False)
    if blob.get("format") != STATE_FORMAT or blob.get("spec_hash") != run.spec.spec_hash():
        raise RuntimeError(f"{run.paths.state}: saved state belongs to another spec or format; "
                           "delete the cell folder or run without --resume")
    if blob.get("git_sha") != run.git_sha:
        log.warning("%s was saved by code at git %s, resuming with %s: the records may mix "
                    "two code versions", run.paths.state, blob.get("git_sha"), run.git_sha)
    threads = blob.get("torch_threads")
    if threads is not None and threads != torch.get_num_threads():
        log.warning("%s was saved with %d torch threads, resuming with %d: float results may "
                    "differ from an uninterrupted run (pass --threads %d)", run.paths.state,
                    threads, torch.get_num_threads(), threads)
    run.state.load_state_dict(blob["editor_state"])
    run.layouts = dict(blob["layouts"])
    with torch.no_grad():
        for name, w in blob["weights"].items():
            param = run.weight(name)
            run.w0[name] = param.detach().clone()  # the freshly loaded model is unedited
            param.copy_(w.to(param.device))
    device = run.loaded.device
    run.acc = {k: (tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device))
               for k, v in blob["acc"].items()}
    run.cursor = int(blob["cursor"])
    run.each = [{k: MetricValue(**v) for k, v in d.items()} for d in blob["each"]]
    run.wall = {k: float(v) for k, v in blob["wall"].items()}
    run.sessions = int(blob["sessions"]) + 1
    set_rng_state(blob["rng"])


# --------------------------------------------------------------------------- editing
def _compute(run: _Run, batch: Sequence) -> Any:
    if run.hooks.on_compute is not None:
        run.hooks.on_compute(run.spec.short_hash, batch)
    with run.phase("edits"):
        return run.editor.compute(run.loaded, batch, run.state)


@torch.no_grad()
def _apply(run: _Run, delta: Any) -> None:
    with run.phase("edits"):
        for name, md in delta.matrices.items():
            param = run.weight(name)
            if name not in run.w0:
                run.w0[name] = param.detach().clone()
                run.layouts[name] = md.layout
            dev, dt = param.device, param.dtype
            upd: Update = ((md.A.to(dev, dt), md.B.to(dev, dt)) if md.is_factored
                           else md.dense.to(dev, dt))
            layout = run.layouts[name]
            upd = run.traj.mask_edit(to_out_in(param, layout), upd)
            acc = run.traj.after_edit(run.w0_out_in(name), run.acc.get(name), upd, name)
            if run.traj.sets_weight_from_accumulated:
                param.copy_(from_out_in(run.w0_out_in(name) + to_dense(acc).to(dt), layout))
            else:
                param.add_(from_out_in(to_dense(upd).to(dt), layout))
            run.acc[name] = densify_if_wide(acc)
            if not torch.isfinite(param).all():
                raise NonFiniteWeights(f"non-finite weights in {name} after {run.cursor} edits "
                                       f"+ this batch")


def _trajectory(run: _Run) -> None:
    spec, ctx = run.spec, run.ctx
    cell = spec.short_hash
    bar = tqdm(total=spec.n_edits, initial=run.cursor, desc=f"edits {spec.slug}", unit="edit",
               disable=not ctx.progress, leave=False)
    try:
        pending = None
        for n in spec.checkpoints:
            if n < run.cursor:
                if not run.paths.checkpoint_records(n).is_file():
                    raise RuntimeError(f"{run.paths.root}: state is past checkpoint {n} but its "
                                       "records are missing; delete the cell folder and rerun")
                continue
            while run.cursor < n:
                batch = run.requests[run.cursor:min(run.cursor + spec.batch_size, spec.n_edits)]
                delta = pending if pending is not None else _compute(run, batch)
                pending = None
                _apply(run, delta)
                run.cursor += len(batch)
                bar.update(len(batch))
                if spec.evaluation.timing == "each":
                    _evaluate_each(run, batch)
                if run.hooks.after_edit is not None:
                    run.hooks.after_edit(run.cursor)
                crossed = run.cursor // ctx.save_every != (run.cursor - len(batch)) // ctx.save_every
                if crossed and run.cursor not in spec.checkpoints:
                    _save_state(run)
            if run.paths.checkpoint_records(n).is_file():
                continue
            if n > 0:
                _save_state(run)
            elif spec.n_edits > 0 and spec.evaluation.spectrum:
                # the unedited spectrum needs the edited matrices' names: compute the first
                # Delta now (computing never changes the model) and apply it after evaluating
                batch = run.requests[0:min(spec.batch_size, spec.n_edits)]
                pending = _compute(run, batch)
                for name, md in pending.matrices.items():
                    run.w0.setdefault(name, run.weight(name).detach().clone())
                    run.layouts.setdefault(name, md.layout)
            ctx.event(cell, "phase", phase="evaluation", n_edits=n)
            records = _evaluate_checkpoint(run, n)
            from benchmark.results import write_records

            write_records(run.paths.checkpoint_records(n), records)
            ctx.event(cell, "checkpoint", n_edits=n, records=len(records))
    finally:
        bar.close()


# --------------------------------------------------------------------------- evaluation
def _records(run: _Run, n: int, variant: str, kind: str, task: str,
             metrics: dict[str, Any]) -> list[Record]:
    d = run.spec.describe()
    out = []
    for metric, raw in sorted(metrics.items()):
        mv = _mv(raw)
        out.append(Record(grid=run.ctx.grid, cell=d["cell"], model=d["model"], editor=d["editor"],
                          dataset=d["dataset"], trajectory=d["trajectory"],
                          batch_size=d["batch_size"], seed=d["seed"], timing=d["timing"],
                          n_edits=n, variant=variant, kind=kind, task=task, metric=metric,
                          value=finite_or_none(mv.value), n=int(mv.n),
                          stderr=finite_or_none(mv.stderr)))
    return out


def _evaluate_each(run: _Run, batch: Sequence) -> None:
    ev = run.spec.evaluation
    seed = derived_seed(run.spec.seed, "each", run.cursor)
    with run.phase("evaluation"), isolated_rng(seed):
        scores = run.comps.evaluate_editing(run.loaded, batch, ev.editing_metrics, ev.batch_size)
    run.each.append({k: _mv(v) for k, v in scores.items()})


def _cached(run: _Run, kind: str, key: dict, compute) -> dict:
    """Unedited-model evaluations are shared by every cell of a grid through a small cache
    (a file lock makes parallel cells wait for one computation instead of repeating it)."""
    if run.ctx.baseline_dir is None:
        return compute()
    path = run.ctx.baseline_dir / f"{kind}-{io.sha256_json(key)[:24]}.json"
    with io.file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return _decode_metrics(json.loads(path.read_text()))
        out = compute()
        io.write_json(path, {"key": key, "metrics": _encode_metrics(out)})
        return out


def _encode_metrics(m: dict) -> dict:
    return {k: (_encode_metrics(v) if isinstance(v, dict) else _mv(v).to_dict()) for k, v in m.items()}


def _decode_metrics(raw: dict) -> dict:
    def dec(d: dict) -> dict:
        return {k: (MetricValue(**v) if "value" in v and "n" in v else dec(v)) for k, v in d.items()}

    return dec(raw["metrics"])


def _editing_requests(run: _Run, n: int) -> list | None:
    timing = run.spec.evaluation.timing
    if n == 0:
        return run.requests  # pre-edit baseline of every fact of the trajectory
    if timing == "first-n":
        return run.requests[:n]
    if timing == "final":
        return run.requests if n == run.spec.n_edits else None
    return None  # "each": pooled separately


def _evaluate_model(run: _Run, n: int, variant_label: str, deltas: dict[str, Update]) -> list[Record]:
    """Evaluate the model as it is now (its weights set for this variant)."""
    spec, ev = run.spec, run.spec.evaluation
    recs: list[Record] = []
    seed = derived_seed(spec.seed, n, variant_label)
    identity = getattr(run.loaded, "identity", {}) or {}
    with run.phase("evaluation"), isolated_rng(seed):
        reqs = _editing_requests(run, n)
        if ev.editing_metrics and reqs is not None:
            def editing():
                return run.comps.evaluate_editing(run.loaded, reqs, ev.editing_metrics, ev.batch_size)

            if n == 0:
                key = {"model": identity, "dtype": spec.dtype, "device": run.ctx.device,
                       "metrics": list(ev.editing_metrics), "batch_size": ev.batch_size,
                       "seed": seed, "requests": [r.case_id for r in reqs],
                       "dataset": spec.dataset.canonical()}
                scores = _cached(run, "editing", key, editing)
            else:
                scores = editing()
            recs += _records(run, n, variant_label, "editing", spec.dataset.name, scores)
        elif ev.editing_metrics and ev.timing == "each" and variant_label == "none":
            k = math.ceil(n / spec.batch_size)
            batches = run.each[:k]
            names = sorted({m for d in batches for m in d})
            recs += _records(run, n, variant_label, "editing", spec.dataset.name,
                             {m: pooled([d[m] for d in batches if m in d]) for m in names})
        if ev.tasks:
            def general():
                return run.comps.evaluate_tasks(run.loaded, ev.tasks, ev.batch_size,
                                                ev.chat_template)

            if n == 0:
                key = {"model": identity, "dtype": spec.dtype, "device": run.ctx.device,
                       "tasks": [t.canonical() for t in ev.tasks], "batch_size": ev.batch_size,
                       "chat_template": ev.chat_template, "seed": seed}
                results = _cached(run, "general", key, general)
            else:
                results = general()
            run.task_hashes.update(getattr(results, "task_hashes", {}) or {})
            for task, metrics in sorted(results.items()):
                recs += _records(run, n, variant_label, "general", task, metrics)
    if ev.spectrum:
        with run.phase("spectrum"):
            for name in sorted(run.w0):
                w = to_out_in(run.weight(name).detach(), run.layouts[name])
                figures = run.comps.spectrum(w, deltas.get(name) if n > 0 else None)
                recs += _records(run, n, variant_label, "spectrum", name,
                                 {k: MetricValue(float("nan") if v is None else float(v), 1, None)
                                  for k, v in figures.items()})
    return recs


def _evaluate_checkpoint(run: _Run, n: int) -> list[Record]:
    spec = run.spec
    current = {name: run.weight(name).detach().clone() for name in run.w0}
    records: list[Record] = []
    bar = tqdm(spec.variants, desc=f"eval n={n}", unit="variant", disable=not run.ctx.progress,
               leave=False)
    try:
        base: list[Record] = []
        for variant in bar:
            if isinstance(variant, NoRestraint):
                base = _evaluate_model(run, n, "none", dict(run.acc))
                records += base
                continue
            if n == 0:  # no update yet: every restraint is the identity, same model
                records += [r.model_copy(update={"variant": variant.label}) for r in base]
                continue
            restrainer = run.comps.restrainer(variant)
            with torch.no_grad():
                deltas = {name: restrainer.for_evaluation(run.w0_out_in(name), run.acc[name], name)
                          for name in run.w0 if name in run.acc}
            if base and all(deltas[name] is run.acc[name] for name in deltas):
                # The restraint is the identity here (PRUNE: no singular value of the
                # accumulated update reaches sigma_max(W0)), so this variant's model is the
                # unrestrained one: its records are those of "none", not a re-evaluation.
                run.ctx.event(run.spec.short_hash, "variant_identity", n_edits=n,
                              variant=variant.label)
                records += [r.model_copy(update={"variant": variant.label}) for r in base]
                continue
            try:
                with torch.no_grad():
                    for name, r in deltas.items():
                        param = run.weight(name)
                        param.copy_(from_out_in(run.w0_out_in(name) + to_dense(r).to(param.dtype),
                                                run.layouts[name]))
                records += _evaluate_model(run, n, variant.label, deltas)
            finally:
                with torch.no_grad():
                    for name, w in current.items():
                        run.weight(name).copy_(w)
    finally:
        bar.close()
    return records


# --------------------------------------------------------------------------- finish
def _stats_keys(run: _Run) -> list[Any]:
    if run.bundle is not None and run.bundle.stats_keys:
        return list(run.bundle.stats_keys)
    for attr in ("stats_cache_keys", "cache_keys", "stats_keys"):
        val = getattr(run.editor, attr, None)
        if callable(val):
            val = val()
        if val:
            return list(val)
    stats = run.bundle.hparams.get("stats") if run.bundle else None
    return [{"stats_spec": stats, "model": getattr(run.loaded, "identity", {})}] if stats else []


def _finish(run: _Run) -> None:
    from benchmark import results as res

    spec, ctx = run.spec, run.ctx
    records = []
    for n in spec.checkpoints:
        records += read_records(run.paths.checkpoint_records(n))
    prov = Provenance(
        cell=spec.short_hash, spec_hash=spec.spec_hash(), spec=spec.canonical(),
        git=res.git_info(), lock_file=res.lock_file_info(), packages=res.package_versions(),
        model_identity=dict(getattr(run.loaded, "identity", {}) or {}),
        data=run.comps.data_identity(spec.dataset),
        stats_cache_keys=_stats_keys(run), hparams=run.bundle.hparams,
        hparams_hash=run.bundle.hparams_hash,
        seeds={"cell": spec.seed, "evaluation_base": spec.seed},
        hardware=res.hardware_info(ctx.device),
        wall_seconds={k: round(v, 3) for k, v in sorted(run.wall.items())},
        peak_memory_bytes=res.peak_memory(ctx.device), sessions=run.sessions, device=ctx.device,
        evaluation={"timing": spec.evaluation.timing, "task_hashes": dict(sorted(run.task_hashes.items())),
                    "baseline_cache": "unedited-model evaluations shared across cells (same key)"},
    )
    io.write_json(run.paths.provenance, prov.model_dump(mode="json"))
    io.write_json(run.paths.done, {"status": "completed", "records": len(records),
                                   "git_sha": run.git_sha,
                                   "records_sha256": io.sha256_json([r.model_dump(mode="json")
                                                                     for r in records])})
    if run.paths.state.is_file():
        run.paths.state.unlink()  # a completed cell needs no state; its records are final
    ctx.event(spec.short_hash, "completed", records=len(records))


def record_failure(cell_dir: Path, exc: BaseException) -> str:
    """Write ``failed.json`` (reason and traceback); returns the one-line reason."""
    reason = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        reason = f"out of memory: {reason}"
    io.write_json(Path(cell_dir) / "failed.json", {
        "status": "failed", "reason": reason,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
    })
    return reason
