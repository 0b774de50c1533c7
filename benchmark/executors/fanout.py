"""Submit a grid's cells as jobs, wait for them, publish (``seqedit grid --executor``).

The submitting process readies the work folder as the in-process runner does (a fresh run
drops the cached unedited-model evaluations; ``--resume`` keeps everything) and holds it
while it waits, so no other runner starts on it. Each job runs one cell
(:mod:`benchmark.executors.job`) in ``<workdir>/<suite>/<grid>/``; submitit's files (the
pickled jobs, their logs and results) go to ``submitit/`` there, and the job ids to
``jobs.json``. Once every job has ended the results are published, all or nothing, as after
an in-process run; a job that died without a result (killed, out of memory, cancelled) is
recorded as its cell's failure and the others are published. With ``wait=False`` the jobs
are submitted and left to run; ``seqedit grid --publish-only`` publishes later.

Locally at most ``parallel`` jobs run at once (default: the grid's ``run.jobs``); on Slurm
the cells form one job array (``%parallel`` when given).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.cell.folder import CellFolder
from benchmark.core import io
from benchmark.executors.job import CellJob, CellTask
from benchmark.executors.resources import JobResources
from benchmark.grid import Grid
from benchmark.publish import check_target, publish
from benchmark.results import CellStatus
from benchmark.runner import (
    default_out,
    grid_workdir,
    own_workdir,
    run_context,
    select_cells,
    start_workdir,
)
from benchmark.spec import CellSpec

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm")


@dataclass
class FanoutOutcome:
    """The submitted jobs and, once published, the cells' statuses (as in cells.jsonl)."""

    jobs: dict[str, str]  # cell hash -> job id
    statuses: list[CellStatus]
    out: Path | None

    @property
    def failed(self) -> list[CellStatus]:
        return [s for s in self.statuses if s.status != "completed"]


def submitit_folder(wd: Path) -> Path:
    """Where submitit keeps each job's pickles and logs (``%j``: the job id)."""
    return wd / "submitit" / "%j"


def _executor(kind: str, wd: Path, resources: JobResources, grid: Grid):
    import submitit

    if kind == "local":
        ex = submitit.LocalExecutor(folder=submitit_folder(wd))
        ex.update_parameters(**resources.local_parameters())
    elif kind == "slurm":
        ex = submitit.SlurmExecutor(folder=submitit_folder(wd))
        ex.update_parameters(**resources.slurm_parameters(f"seqedit-{grid.name}"))
    else:
        raise ValueError(f"executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    return ex


def _tasks(cells: list[CellSpec], wd: Path, ctx, threads: int | None) -> list[CellTask]:
    return [CellTask(spec.model_dump_json(), str(wd), ctx, threads) for spec in cells]


def _submit_slurm(ex, tasks: list[CellTask]) -> list:
    with ex.batch():  # one job array
        jobs = [ex.submit(CellJob(), task) for task in tasks]
    return jobs


def _run_local(ex, tasks: list[CellTask], parallel: int, poll_s: float, bar) -> list:
    """Start the local jobs, at most ``parallel`` at once; return them, ended, in task order."""
    jobs: list = []
    running: list = []
    while len(jobs) < len(tasks) or running:
        while len(jobs) < len(tasks) and len(running) < parallel:
            jobs.append(ex.submit(CellJob(), tasks[len(jobs)]))
            running.append(jobs[-1])
        time.sleep(poll_s)
        for job in [j for j in running if j.done()]:
            running.remove(job)
            bar.update(1)
    return jobs


def _wait(jobs: list, poll_s: float, bar) -> None:
    import submitit

    for _ in submitit.helpers.as_completed(jobs, poll_frequency=poll_s):
        bar.update(1)


def _collect(jobs: list, cells: list[CellSpec], wd: Path, ctx) -> None:
    """Record, in its cell's folder, each job that ended without a result."""
    for job, spec in zip(jobs, cells):
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - a dead job fails its cell, the grid goes on
            folder = CellFolder.of(wd, spec)
            if folder.status(spec).status != "completed":
                reason = folder.record_failure(RuntimeError(
                    f"job {job.job_id} ended without a result ({type(exc).__name__}: "
                    f"{str(exc).strip()[-500:]}); logs in {job.paths.folder}; run again with "
                    "--resume"))
                ctx.event(spec.short_hash, "failed", reason=reason, job=job.job_id)


def run_fanout(grid: Grid, *, executor: str, resources: JobResources, workdir: Path | None = None,
               out: Path | None = None, resume: bool = False, device: str | None = None,
               threads: int | None = None, only: list[str] | None = None, wait: bool = True,
               progress: bool = True, poll_s: float = 1.0) -> FanoutOutcome:
    """Submit one job per cell of ``grid`` (``only``: as ``--cells``), then, with ``wait``,
    wait for every job and publish to ``out`` (default: results/<suite>/<grid>)."""
    cells = select_cells(grid, only)
    target = Path(out) if out is not None else default_out(grid)
    check_target(target)
    wd = grid_workdir(grid, workdir)
    wd.mkdir(parents=True, exist_ok=True)
    ex = _executor(executor, wd, resources, grid)
    ctx = run_context(grid, wd, resume=resume, device=device, progress=False)
    tasks = _tasks(cells, wd, ctx, threads or grid.run.threads or resources.cpus)
    if not wait:  # the folder is held only while it is readied; the jobs are left to run
        with own_workdir(wd):
            start_workdir(grid, wd, ctx, len(cells))
        if executor == "local":
            jobs = [ex.submit(CellJob(), task) for task in tasks]
        else:
            jobs = _submit_slurm(ex, tasks)
        return FanoutOutcome(_record_jobs(wd, executor, cells, jobs), [], None)
    with own_workdir(wd):  # held until published: no other runner starts on this folder
        start_workdir(grid, wd, ctx, len(cells))
        with tqdm(total=len(cells), desc=f"grid {grid.name} ({executor} jobs)", unit="cell",
                  disable=not progress) as bar:
            if executor == "local":
                jobs = _run_local(ex, tasks, resources.parallel or grid.run.jobs, poll_s, bar)
            else:
                jobs = _submit_slurm(ex, tasks)
                _record_jobs(wd, executor, cells, jobs)
                _wait(jobs, max(poll_s, 10.0), bar)
        ids = _record_jobs(wd, executor, cells, jobs)
        _collect(jobs, cells, wd, ctx)
        ctx.event("-", "grid_end", executor=executor)
        published = publish(grid, wd, target, ran={c.short_hash for c in cells} if only else None,
                            step=lambda point: ctx.event("-", point))
    by_hash = {s.cell: s for s in published.statuses}
    return FanoutOutcome(ids, [by_hash[c.short_hash] for c in cells], published.out)


def _record_jobs(wd: Path, executor: str, cells: list[CellSpec], jobs: list) -> dict[str, str]:
    ids = {spec.short_hash: str(job.job_id) for spec, job in zip(cells, jobs)}
    io.write_json(wd / "jobs.json", {"executor": executor, "jobs": ids,
                                     "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return ids


def publish_only(grid: Grid, *, workdir: Path | None = None, out: Path | None = None) -> FanoutOutcome:
    """Publish what the jobs of an earlier ``--executor`` run left in the work folder (cells
    still running or not run are published as not completed)."""
    target = Path(out) if out is not None else default_out(grid)
    check_target(target)
    wd = grid_workdir(grid, workdir)
    if not wd.is_dir():
        from benchmark.core.errors import SeqeditError

        raise SeqeditError(f"{wd}: no work folder of grid {grid.name!r}; run the grid first "
                           "(--workdir must match that run's)")
    jobs: dict[str, Any] = {}
    if (wd / "jobs.json").is_file():
        jobs = json.loads((wd / "jobs.json").read_text(encoding="utf-8")).get("jobs", {})
    with own_workdir(wd):
        published = publish(grid, wd, target)
    return FanoutOutcome(jobs, published.statuses, published.out)
