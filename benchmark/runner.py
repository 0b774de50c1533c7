"""Run a grid: expand it into cells, run each trajectory (resumably), publish the results.

Working folder (never committed): ``<workdir>/<SUITE_VERSION>/<grid>/`` with one folder
per cell (``<slug>-<spec hash>``: state, per-checkpoint records, provenance, markers),
``baselines/`` (unedited-model evaluations shared by the cells) and ``progress.jsonl``.
The default workdir is ``<cache root>/runs`` (``$SEQEDIT_CACHE``).

Published results (committed): ``<out>/`` = ``results/<SUITE_VERSION>/<grid>/`` by default,
with the files described in :mod:`benchmark.results`. Publishing reads only the cell folders,
so it can be redone at any time (``seqedit report`` regenerates tables and plots).

A failing cell (an exception, non-finite weights, out of memory) is recorded as failed with
its reason (``failed.json`` in its folder, ``status: failed`` in ``cells.jsonl``) and the
grid goes on. ``KeyboardInterrupt`` and kills stop the run; ``--resume`` continues it.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark import SUITE_VERSION
from benchmark.components import Components, Hooks
from benchmark.core import io, settings
from benchmark.grid import Grid
from benchmark.results import (
    CellStatus,
    Record,
    read_records,
    sort_records,
    write_records,
    write_tables,
)
from benchmark.spec import CellSpec
from benchmark.trajectory import CellBusy, CellPaths, RunContext, record_failure, run_cell

log = logging.getLogger(__name__)


def default_workdir() -> Path:
    return settings.cache_root() / "runs"


def grid_workdir(grid: Grid, workdir: Path | None = None) -> Path:
    return Path(workdir or default_workdir()) / SUITE_VERSION / grid.name


def default_out(grid: Grid) -> Path:
    return settings.RESULTS_DIR / SUITE_VERSION / grid.name


@dataclass
class GridOutcome:
    statuses: list[CellStatus]
    out: Path | None

    @property
    def failed(self) -> list[CellStatus]:
        return [s for s in self.statuses if s.status == "failed"]


def run_grid(grid: Grid, *, workdir: Path | None = None, out: Path | None = None,
             resume: bool = False, device: str | None = None, progress: bool = True,
             components: Components | None = None, hooks: Hooks | None = None,
             publish_results: bool = True, only: list[str] | None = None,
             threads: int | None = None, jobs: int | None = None) -> GridOutcome:
    """Run every cell of ``grid`` (``only``: cell hashes or slugs to restrict to).

    ``jobs`` > 1 runs cells in that many spawned processes (``threads`` torch threads each,
    default 1); the records do not depend on it."""
    import torch

    threads_before = torch.get_num_threads()
    threads = threads or grid.run.threads
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_grid(grid, workdir=workdir, out=out, resume=resume, device=device,
                         progress=progress, components=components, hooks=hooks,
                         publish_results=publish_results, only=only,
                         jobs=jobs or grid.run.jobs, threads=threads)
    finally:
        torch.set_num_threads(threads_before)


def _run_grid(grid: Grid, *, workdir, out, resume, device, progress, components, hooks,
              publish_results, only, jobs, threads) -> GridOutcome:
    wd = grid_workdir(grid, workdir)
    wd.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(grid=grid.name, device=device or grid.run.device,
                     save_every=grid.run.save_every, resume=resume, progress=progress,
                     progress_log=wd / "progress.jsonl", baseline_dir=wd / "baselines")
    if not resume:
        # a fresh run must not reuse unedited-model evaluations of an older code version
        for p in sorted((wd / "baselines").glob("*.json")) if (wd / "baselines").is_dir() else []:
            p.unlink()
    io.write_text(wd / "grid.yaml", grid.source_text)
    cells = [c for c in grid.cells if not only or c.short_hash in only or c.slug in only]
    ctx.event("-", "grid_start", cells=len(cells), resume=resume)
    if jobs > 1 and len(cells) > 1:
        if components is not None or hooks is not None:
            raise ValueError("parallel cells (jobs > 1) run the default components only")
        statuses = _run_parallel(cells, wd, ctx, jobs, threads, progress)
    else:
        statuses = [_run_one(spec, wd, ctx, components, hooks) for spec in
                    tqdm(cells, desc=f"grid {grid.name}", unit="cell", disable=not progress)]
    ctx.event("-", "grid_end", failed=sum(s.status == "failed" for s in statuses))
    published = None
    if publish_results:
        published = publish(grid, wd, out or default_out(grid))
    return GridOutcome(statuses, published)


def _run_one(spec: CellSpec, wd: Path, ctx: RunContext, components: Components | None,
             hooks: Hooks | None) -> CellStatus:
    """Run one cell; any failure is recorded (failed.json, progress event) and returned."""
    try:
        outcome = run_cell(spec, wd / spec.folder, ctx, components, hooks)
        if outcome == "skipped":
            ctx.event(spec.short_hash, "skipped_completed")
        return _status(spec, "completed")
    except CellBusy as exc:  # another process owns the cell: write nothing into it
        log.error("%s", exc)
        ctx.event(spec.short_hash, "busy", reason=str(exc))
        return _status(spec, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - any cell failure is recorded, the grid goes on
        return _failed(spec, wd, ctx, exc)
    finally:
        gc.collect()


def _failed(spec: CellSpec, wd: Path, ctx: RunContext, exc: BaseException) -> CellStatus:
    """Record a cell's failure (failed.json, progress event, log) and return its status."""
    reason = record_failure(wd / spec.folder, exc)
    log.error("cell %s failed: %s", spec.folder, reason)
    ctx.event(spec.short_hash, "failed", reason=reason)
    return _status(spec, "failed", reason)


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the runner process dies, so a killed
    or interrupted run leaves no orphan cell writing into the work folder (the cell lock
    would refuse a resumed run on it until the orphan ended). No-op elsewhere."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable; workers may outlive the runner")


def _worker(spec_json: str, wd: str, ctx: RunContext, threads: int | None) -> dict:
    """Entry point of a parallel cell (a fresh spawned process)."""
    import torch

    from benchmark.core.settings import apply_offline_env

    apply_offline_env()
    _die_with_parent()
    torch.set_num_threads(threads or 1)
    spec = CellSpec.model_validate_json(spec_json)
    return _run_one(spec, Path(wd), ctx, None, None).model_dump(mode="json")


def _run_parallel(cells: list[CellSpec], wd: Path, ctx: RunContext, jobs: int,
                  threads: int | None, progress: bool) -> list[CellStatus]:
    """Cells in ``jobs`` spawned processes (``threads`` torch threads each, default 1).
    Each cell's records do not depend on which process ran it."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    worker_ctx = replace(ctx, progress=False)
    results: dict[str, CellStatus] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_worker, spec.model_dump_json(), str(wd), worker_ctx, threads): spec
                   for spec in cells}
        bar = tqdm(total=len(cells), desc=f"cells ({jobs} processes)", unit="cell",
                   disable=not progress)
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                results[spec.short_hash] = CellStatus.model_validate(fut.result())
            except Exception as exc:  # noqa: BLE001 - a crashed worker (killed, OOM) fails its cell
                results[spec.short_hash] = _failed(spec, wd, ctx, exc)
            bar.update(1)
        bar.close()
    return [results[c.short_hash] for c in cells]


def _status(spec: CellSpec, status: str, reason: str | None = None) -> CellStatus:
    return CellStatus(cell=spec.short_hash, folder=spec.folder, status=status, reason=reason,
                      spec=spec.canonical())


def cell_status(spec: CellSpec, wd: Path) -> CellStatus:
    paths = CellPaths(wd / spec.folder)
    if paths.done.is_file():
        return _status(spec, "completed")
    if paths.failed.is_file():
        reason = json.loads(paths.failed.read_text()).get("reason")
        return _status(spec, "failed", reason)
    return _status(spec, "pending")


def collect_records(grid: Grid, wd: Path) -> list[Record]:
    """Records of every completed cell (checkpoint files of unfinished cells are left out)."""
    records: list[Record] = []
    for spec in grid.cells:
        paths = CellPaths(wd / spec.folder)
        if not paths.done.is_file():
            continue
        for n in spec.checkpoints:
            records += read_records(paths.checkpoint_records(n))
    return sort_records(records)


def publish(grid: Grid, wd: Path, out: Path) -> Path:
    """Write records, cell statuses, provenance, tables and plots into ``out``."""
    from benchmark import report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = collect_records(grid, wd)
    write_records(out / "records.jsonl", records)
    statuses = [cell_status(spec, wd) for spec in grid.cells]
    io.write_text(out / "cells.jsonl", "".join(
        json.dumps(s.model_dump(mode="json"), sort_keys=True) + "\n" for s in statuses))
    prov_dir = out / "provenance"
    keep = set()
    for spec in grid.cells:
        src = CellPaths(wd / spec.folder).provenance
        if src.is_file():
            io.write_text(prov_dir / f"{spec.folder}.json", src.read_text())
            keep.add(f"{spec.folder}.json")
    if prov_dir.is_dir():
        for stale in prov_dir.glob("*.json"):
            if stale.name not in keep:
                stale.unlink()
    io.write_text(out / "grid.yaml", grid.source_text)
    write_tables(out, records, title=f"{grid.name} ({SUITE_VERSION})")
    report.write_plots(out, records)
    return out


# --------------------------------------------------------------------------- planning
#: Cost model of the dry-run plan, calibrated on SmolLM2-135M (1.2e8 non-embedding
#: parameters) on one CPU core of this suite's 2-core machine: about 8 s per one-fact
#: ROME/MEMIT edit, 30 s for the smoke limits of the headline tasks (136 items), 8 s for
#: three CounterFact metrics on 50 facts. Costs scale with the parameter count; a GPU is
#: assumed 100x faster. An order-of-magnitude guide for planning, not a promise.
_S_PER_PARAM_EDIT = 8.0 / 1.2e8
_S_PER_PARAM_TASK_ITEM = 30.0 / (136 * 1.2e8)
_S_PER_PARAM_FACT_METRIC = 8.0 / (50 * 3 * 1.2e8)
_GPU_SPEEDUP = 100.0
_DEFAULT_TASK_ITEMS = 300  # a task evaluated without a limit


def model_params(name: str) -> int:
    """Rough parameter count from the architecture facts (embedding excluded)."""
    from benchmark.models import get_entry

    a = get_entry(name).arch
    return a.n_layers * (4 * a.d_model * a.d_model + 3 * a.d_model * a.d_ffn)


def estimate_cell(spec: CellSpec, device: str = "cpu") -> dict[str, float]:
    """Rough cost of one cell in seconds (see the constants above)."""
    p = model_params(spec.model)
    speed = _GPU_SPEEDUP if device.startswith("cuda") else 1.0
    # batch editors solve once per batch but optimise one target per fact
    edits = spec.n_edits * _S_PER_PARAM_EDIT * p
    ev = spec.evaluation
    edited = [n for n in spec.checkpoints if n > 0]
    n_evals = len(edited) * len(spec.variants) + (1 if 0 in spec.checkpoints else 0)
    if ev.timing == "final":
        facts = spec.n_edits * (len(spec.variants) + (1 if 0 in spec.checkpoints else 0))
    elif ev.timing == "each":
        facts = 2 * spec.n_edits
    else:
        facts = sum(edited) * len(spec.variants) + (spec.n_edits if 0 in spec.checkpoints else 0)
    editing = facts * max(1, len(ev.editing_metrics)) * _S_PER_PARAM_FACT_METRIC * p
    items = sum(t.limit or _DEFAULT_TASK_ITEMS for t in ev.tasks)
    general = n_evals * items * _S_PER_PARAM_TASK_ITEM * p
    return {"edits_s": edits / speed, "evaluation_s": (editing + general) / speed,
            "total_s": (edits + editing + general) / speed}


def plan(grid: Grid, device: str | None = None) -> list[dict[str, Any]]:
    device = device or grid.run.device
    rows = []
    for spec in grid.cells:
        est = estimate_cell(spec, device)
        rows.append({"cell": spec.short_hash, "folder": spec.folder, "model": spec.model,
                     "editor": spec.editor, "dataset": f"{spec.dataset.name}:{spec.dataset.split}",
                     "trajectory": spec.trajectory.label, "n_edits": spec.n_edits,
                     "batch_size": spec.batch_size, "checkpoints": len(spec.checkpoints),
                     "variants": ",".join(v.label for v in spec.variants),
                     "editor_calls": math.ceil(spec.n_edits / spec.batch_size), **est})
    return rows


def format_plan(grid: Grid, rows: list[dict[str, Any]], device: str) -> str:
    lines = [f"grid {grid.name}: {len(rows)} cells (requires network={grid.requires.network}, "
             f"gpu={grid.requires.gpu}); rough cost on {device}:"]
    lines.append(f"{'cell':12}  {'model':18} {'editor':10} {'dataset':18} {'trajectory':16} "
                 f"{'edits':>5} {'batch':>5} {'ckpts':>5} {'calls':>6} {'hours':>8}  variants")
    for r in rows:
        lines.append(f"{r['cell']:12}  {r['model']:18} {r['editor']:10} {r['dataset']:18} "
                     f"{r['trajectory']:16} {r['n_edits']:5} {r['batch_size']:5} "
                     f"{r['checkpoints']:5} {r['editor_calls']:6} {r['total_s'] / 3600:8.2f}  "
                     f"{r['variants']}")
    total = sum(r["total_s"] for r in rows)
    calls = sum(r["editor_calls"] for r in rows)
    lines.append(f"total: {calls} editor calls, about {total / 3600:.1f} hours on {device} "
                 "(order of magnitude, calibrated on SmolLM2 on one CPU core; see "
                 "benchmark/runner.py)")
    return "\n".join(lines)
