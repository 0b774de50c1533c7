"""Run a grid: expand it into cells, run each trajectory (resumably), publish the results.

Working folder (never committed): ``<workdir>/<SUITE_VERSION>/<grid>/`` with one folder
per cell (``<slug>-<spec hash>``: state, per-checkpoint records, provenance, markers),
``baselines/`` (unedited-model evaluations shared by the cells) and ``progress.jsonl``.
The default workdir is ``<cache root>/runs`` (``$SEQEDIT_CACHE``).

Published results (committed): ``<out>/`` = ``results/<SUITE_VERSION>/<grid>/`` by default,
written by :mod:`benchmark.publish` from the cell folders. The cost model of ``--dry-run``
is :mod:`benchmark.cost`. Cell folders are read and written only through
:class:`benchmark.cell.folder.CellFolder`.

A runner owns its work folder while it runs (a lock on ``.runner.lock`` naming its pid and
start time): a second runner on the same folder, with or without ``--resume``, is refused
before it deletes or writes anything. ``--cells`` names must each match a cell (else an
error with did-you-mean); cells not run keep their published rows.

A failing cell (an exception, non-finite weights, out of memory) is recorded as failed with
its reason (``failed.json`` in its folder, ``status: failed`` in ``cells.jsonl``) and the
grid goes on. ``KeyboardInterrupt`` and kills stop the run; ``--resume`` continues it. The
statuses the runner returns are those of the published ``cells.jsonl``.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from benchmark import SUITE_VERSION
from benchmark.cell.context import RunContext
from benchmark.cell.folder import CellBusy, CellFolder, status_row
from benchmark.cell.loop import run_cell
from benchmark.components import Components, Hooks
from benchmark.core import io, settings
from benchmark.core.errors import SeqeditError
from benchmark.grid import Grid
from benchmark.publish import check_target, publish
from benchmark.results import CellStatus
from benchmark.spec import CellSpec

log = logging.getLogger(__name__)


class WorkFolderBusy(SeqeditError):
    """Another live runner holds the work folder; nothing was touched."""


def default_workdir() -> Path:
    return settings.cache_root() / "runs"


def inside(root: Path, *parts: str) -> Path:
    """``root/parts...`` as an absolute path, refused unless it lies strictly inside ``root``."""
    base = Path(os.path.abspath(root))
    path = Path(os.path.abspath(base.joinpath(*parts)))
    if path == base or not path.is_relative_to(base):
        raise SeqeditError(f"{path}: resolves outside {base}; names of grids and cells may not "
                           "contain path separators or '..'")
    return path


def grid_workdir(grid: Grid, workdir: Path | None = None) -> Path:
    return inside(Path(workdir or default_workdir()) / SUITE_VERSION, grid.name)


def default_out(grid: Grid) -> Path:
    return inside(settings.RESULTS_DIR / SUITE_VERSION, grid.name)


def select_cells(grid: Grid, names: Sequence[str] | None) -> list[CellSpec]:
    """The cells named in ``names`` (all when empty): each name is a cell hash, a unique
    prefix of one (4 characters or more), a slug or a folder, and must match."""
    if not names:
        return list(grid.cells)
    chosen: set[str] = set()
    for name in names:
        hits = {c.short_hash for c in grid.cells if name in (c.short_hash, c.slug, c.folder)}
        if not hits and len(name) >= 4:
            hits = {c.short_hash for c in grid.cells if c.short_hash.startswith(name)}
            if len(hits) > 1:
                raise SeqeditError(f"--cells: {name!r} is a prefix of several cells of grid "
                                   f"{grid.name!r} ({', '.join(sorted(hits))}); give more characters")
        if not hits:
            known = [c.short_hash for c in grid.cells] + [c.slug for c in grid.cells]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise SeqeditError(f"--cells: no cell of grid {grid.name!r} is named {name!r}.{hint} "
                               "A cell is named by its hash (or a prefix of 4+ characters), slug "
                               f"or folder; `seqedit grid --grid {grid.name} --dry-run` lists them")
        chosen |= hits
    return [c for c in grid.cells if c.short_hash in chosen]


@contextlib.contextmanager
def own_workdir(wd: Path) -> Iterator[None]:
    """Hold the work folder (its cells and shared baselines) for this process: a second
    runner on it, with or without ``--resume``, is refused before it touches anything. The
    lock file names the owner (pid, start time); the lock dies with its process."""
    lock = wd / ".runner.lock"
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(io.file_lock(lock, blocking=False))
    except io.LockBusy:
        try:
            owner = json.loads(lock.read_text(encoding="utf-8"))
            who = f"pid {owner['pid']}, started {owner['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "pid unknown: it is starting"
        raise WorkFolderBusy(f"work folder {wd} is in use by another seqedit run ({who}); "
                             "wait for it to finish or stop it, then run again (--resume "
                             "continues its cells)") from None
    with stack:
        # written in place: the lock is held on this file, a rename would replace it
        with open(lock, "w", encoding="utf-8") as fh:
            json.dump({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, fh)
        yield


@dataclass
class GridOutcome:
    statuses: list[CellStatus]  # the cells this run ran, as published in cells.jsonl
    out: Path | None

    @property
    def failed(self) -> list[CellStatus]:
        """Cells of this run that did not complete (failed, or pending: never ran)."""
        return [s for s in self.statuses if s.status != "completed"]


def run_grid(grid: Grid, *, workdir: Path | None = None, out: Path | None = None,
             resume: bool = False, device: str | None = None, progress: bool = True,
             components: Components | None = None, hooks: Hooks | None = None,
             publish_results: bool = True, only: list[str] | None = None,
             threads: int | None = None, jobs: int | None = None) -> GridOutcome:
    """Run every cell of ``grid`` (``only``: cell names to restrict to, see
    :func:`select_cells`) and publish.

    ``jobs`` > 1 runs cells in that many spawned processes (``threads`` torch threads each,
    default 1); the records do not depend on it."""
    import torch

    cells = select_cells(grid, only)
    target = Path(out) if out is not None else default_out(grid)
    if publish_results:
        check_target(target)  # before hours of work, not after
    threads_before = torch.get_num_threads()
    threads = threads or grid.run.threads
    if threads:
        torch.set_num_threads(threads)
    try:
        wd = grid_workdir(grid, workdir)
        wd.mkdir(parents=True, exist_ok=True)
        with own_workdir(wd):
            return _run_grid(grid, cells, wd, out=target, resume=resume, device=device,
                             progress=progress, components=components, hooks=hooks,
                             publish_results=publish_results, jobs=jobs or grid.run.jobs,
                             threads=threads, selected=bool(only))
    finally:
        torch.set_num_threads(threads_before)


def run_context(grid: Grid, wd: Path, *, resume: bool, device: str | None,
                progress: bool) -> RunContext:
    """How the cells of ``grid`` run in the work folder ``wd``."""
    return RunContext(grid=grid.name, device=device or grid.run.device,
                      save_every=grid.run.save_every, resume=resume, progress=progress,
                      progress_log=wd / "progress.jsonl", baseline_dir=wd / "baselines")


def run_single_cell(spec: CellSpec, wd: Path, ctx: RunContext,
                    threads: int | None = None) -> CellStatus:
    """Run one cell in this process without holding the work folder (a job of a grid fanned
    out by :mod:`benchmark.executors`; the cell's own lock keeps a second process off it).
    Any failure is recorded in the cell's folder and returned as its status."""
    import torch

    torch.set_num_threads(threads or 1)
    return _run_one(spec, Path(wd), ctx, None, None)


def start_workdir(grid: Grid, wd: Path, ctx: RunContext, n_cells: int) -> None:
    """Ready the work folder for a run of ``n_cells`` cells (its owner calls this once)."""
    if not ctx.resume:
        # a fresh run must not reuse unedited-model evaluations of an older code version
        for p in sorted((wd / "baselines").glob("*.json")) if (wd / "baselines").is_dir() else []:
            p.unlink()
    io.write_text(wd / "grid.yaml", grid.source_text)
    ctx.event("-", "grid_start", cells=n_cells, resume=ctx.resume)


def _run_grid(grid: Grid, cells: list[CellSpec], wd: Path, *, out, resume, device, progress,
              components, hooks, publish_results, jobs, threads, selected) -> GridOutcome:
    ctx = run_context(grid, wd, resume=resume, device=device, progress=progress)
    start_workdir(grid, wd, ctx, len(cells))
    if jobs > 1 and len(cells) > 1:
        if components is not None or hooks is not None:
            raise ValueError("parallel cells (jobs > 1) run the default components only")
        statuses = _run_parallel(cells, wd, ctx, jobs, threads, progress)
    else:
        statuses = [_run_one(spec, wd, ctx, components, hooks) for spec in
                    tqdm(cells, desc=f"grid {grid.name}", unit="cell", disable=not progress)]
    ctx.event("-", "grid_end", failed=sum(s.status == "failed" for s in statuses))
    if not publish_results:
        return GridOutcome(statuses, None)
    on_publish = hooks.on_publish if hooks is not None else None

    def step(point: str) -> None:
        ctx.event("-", point)
        if on_publish is not None:
            on_publish(point)

    published = publish(grid, wd, out, step=step,
                        ran={c.short_hash for c in cells} if selected else None)
    by_hash = {s.cell: s for s in published.statuses}
    return GridOutcome([by_hash[c.short_hash] for c in cells], published.out)


def _run_one(spec: CellSpec, wd: Path, ctx: RunContext, components: Components | None,
             hooks: Hooks | None) -> CellStatus:
    """Run one cell; any failure is recorded (failed.json, progress event) and returned.
    Its status is read back from its folder (what publishing will read)."""
    loaded = True  # a cell that loaded a model leaves garbage worth collecting
    try:
        if run_cell(spec, wd / spec.folder, ctx, components, hooks) == "skipped":
            loaded = False
            ctx.event(spec.short_hash, "skipped_completed")
        return CellFolder.of(wd, spec).status(spec)
    except CellBusy as exc:  # another process owns the cell: write nothing into it
        loaded = False
        log.error("%s", exc)
        ctx.event(spec.short_hash, "busy", reason=str(exc))
        return status_row(spec, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - any cell failure is recorded, the grid goes on
        return _failed(spec, wd, ctx, exc)
    finally:
        if loaded:
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
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from dataclasses import replace

    worker_ctx = replace(ctx, progress=False)
    results: dict[str, CellStatus] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_worker, spec.model_dump_json(), str(wd), worker_ctx, threads): spec
                   for spec in cells}
        bar = tqdm(total=len(cells), desc=f"cells ({jobs} processes)", unit="cell",
                   disable=not progress)
        try:
            for fut in as_completed(futures):
                spec = futures[fut]
                try:
                    results[spec.short_hash] = CellStatus.model_validate(fut.result())
                except BrokenProcessPool as exc:
                    results[spec.short_hash] = _failed(spec, wd, ctx, RuntimeError(
                        "a worker process died (killed or out of memory) while this cell was "
                        f"running or waiting for one ({exc}); run the grid again with --resume"))
                except Exception as exc:  # noqa: BLE001 - an error in the cell fails that cell
                    results[spec.short_hash] = _failed(spec, wd, ctx, exc)
                bar.update(1)
        except BaseException:  # Ctrl-C or a bug here: stop now, do not start queued cells
            _stop_pool(pool)
            raise
        finally:
            bar.close()
    return [results[c.short_hash] for c in cells]


def _stop_pool(pool) -> None:
    """Cancel queued cells and end running workers (their cells resume with --resume)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown drops them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
