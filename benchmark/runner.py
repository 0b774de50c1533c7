"""Run a grid: expand it into cells, run each trajectory (resumably), publish the results.

Working folder (never committed): ``<workdir>/<SUITE_VERSION>/<grid>/`` with one folder
per cell (``<slug>-<spec hash>``: state, per-checkpoint records, provenance, markers),
``baselines/`` (unedited-model evaluations shared by the cells) and ``progress.jsonl``.
The default workdir is ``<cache root>/runs`` (``$SEQEDIT_CACHE``).

Published results (committed): ``<out>/`` = ``results/<SUITE_VERSION>/<grid>/`` by default,
written by :mod:`benchmark.publish` from the cell folders. The cost model of ``--dry-run``
is :mod:`benchmark.cost`. Cell folders are read and written only through
:class:`benchmark.cell.folder.CellFolder`.

A failing cell (an exception, non-finite weights, out of memory) is recorded as failed with
its reason (``failed.json`` in its folder, ``status: failed`` in ``cells.jsonl``) and the
grid goes on. ``KeyboardInterrupt`` and kills stop the run; ``--resume`` continues it.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from benchmark import SUITE_VERSION
from benchmark.cell.context import RunContext
from benchmark.cell.folder import CellBusy, CellFolder, status_row
from benchmark.cell.loop import run_cell
from benchmark.components import Components, Hooks
from benchmark.core import io, settings
from benchmark.grid import Grid
from benchmark.publish import publish
from benchmark.results import CellStatus
from benchmark.spec import CellSpec

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
        return status_row(spec, "completed")
    except CellBusy as exc:  # another process owns the cell: write nothing into it
        log.error("%s", exc)
        ctx.event(spec.short_hash, "busy", reason=str(exc))
        return status_row(spec, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - any cell failure is recorded, the grid goes on
        return _failed(spec, wd, ctx, exc)
    finally:
        gc.collect()


def _failed(spec: CellSpec, wd: Path, ctx: RunContext, exc: BaseException) -> CellStatus:
    """Record a cell's failure (failed.json, progress event, log) and return its status."""
    reason = CellFolder.of(wd, spec).record_failure(exc)
    log.error("cell %s failed: %s", spec.folder, reason)
    ctx.event(spec.short_hash, "failed", reason=reason)
    return status_row(spec, "failed", reason)


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
