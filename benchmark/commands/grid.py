"""``seqedit grid GRID``: run a grid of editing trajectories (in this process, or fanned out
as one job per cell over local processes or Slurm) and publish its tables."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.commands.options import add_command, positive_int

DESCRIPTION = """\
Run every cell of a grid file (benchmark/grids/NAME.yaml, or a path to one), one
sequential editing trajectory per cell, then publish records, tables, provenance and
plots to results/<suite version>/<grid>/ (all or nothing).

By default the cells run in this process (--jobs N: N worker processes). With
--executor local|slurm each cell is one submitit job (a subprocess here, or one task of a
Slurm job array); a requeued or preempted job resumes from its cell's saved state. The
results are published once every job has ended, or later with --publish-only.
Job resources come from the grid's run.resources; the flags below override them."""

EXAMPLES = (
    "seqedit grid --list",
    "seqedit grid smoke --dry-run",
    "seqedit grid smoke --resume",
    "seqedit grid ci --executor local --parallel 2",
    "seqedit grid paper --executor slurm --partition gpu --time-min 720 --mem-gb 64 --dry-run",
    "seqedit grid paper --executor slurm --no-wait && seqedit grid paper --publish-only",
)


def register(sub) -> None:
    p = add_command(sub, "grid", summary="run a grid of editing trajectories and publish its tables",
                    description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("grid_name", nargs="?", metavar="GRID",
                   help="grid name (benchmark/grids/GRID.yaml) or a path to a grid file")
    p.add_argument("--grid", dest="grid_option", default=None, metavar="GRID",
                   help="the same as the positional GRID")
    p.add_argument("--list", action="store_true", help="list the grid files and exit")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: skip completed cells, resume partial ones")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the grid and list its cells with a rough cost (with "
                        "--executor slurm: also print the sbatch script); run nothing")
    p.add_argument("--workdir", type=Path, default=None,
                   help="working folder for state and checkpoints (default: $SEQEDIT_CACHE/runs)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to publish tables (default: results/<suite version>/<grid>)")
    p.add_argument("--device", default=None, help="torch device (default: the grid's run.device, cpu)")
    p.add_argument("--cells", default=None,
                   help="comma-separated cell hashes or slugs to run (others are left as they are)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: the grid's run.threads, else torch's; "
                        "jobs: else --cpus); use the same value when resuming")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="in this process: run this many cells at once in worker processes "
                        "(default: the grid's run.jobs, 1); each uses --threads threads (default 1)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, lm-eval's request bars included (sets TQDM_DISABLE=1 "
                        "for this run and its worker processes)")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    f = p.add_argument_group("fan-out over jobs (submitit)")
    f.add_argument("--executor", choices=("local", "slurm"), default=None,
                   help="one job per cell: local subprocesses or a Slurm job array "
                        "(default: run the cells in this process)")
    f.add_argument("--publish-only", action="store_true",
                   help="publish what the cells' folders hold now (after --no-wait jobs ended)")
    f.add_argument("--no-wait", action="store_true",
                   help="submit the jobs and exit; publish later with --publish-only")
    f.add_argument("--partition", default=None, help="Slurm partition (default: run.resources)")
    f.add_argument("--gpus", type=_whole, default=None,
                   help="GPUs per job (default: run.resources.gpus, else 1 if the grid requires a GPU)")
    f.add_argument("--cpus", type=positive_int, default=None,
                   help="CPUs per job (default: run.resources.cpus, else run.threads, else 1)")
    f.add_argument("--mem-gb", type=_positive_float, default=None,
                   help="memory per job in GB (default: run.resources.mem_gb, else the cluster's)")
    f.add_argument("--time-min", type=positive_int, default=None,
                   help="time limit per job attempt in minutes; a timed-out job is requeued and "
                        "resumes (default: run.resources.time_min, 240)")
    f.add_argument("--parallel", type=positive_int, default=None,
                   help="jobs running at once (default: run.resources.parallel; locally else "
                        "--jobs or run.jobs; on Slurm else all)")
    p.set_defaults(func=_run)


def _whole(text: str) -> int:
    from benchmark.commands.options import non_negative_int

    return non_negative_int(text)


def _positive_float(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _run(args) -> int:
    from benchmark.cell.context import scoped_environ

    # tqdm reads TQDM_DISABLE when imported (spawned workers import afresh); lm-eval's
    # request bars get it through benchmark.evaluation.general.make_lm
    with scoped_environ({"TQDM_DISABLE": "1"} if args.no_progress else {}):
        return _run_grid(args)


def _grid_name(args) -> str | None:
    from benchmark.core.errors import SeqeditError

    if args.grid_name and args.grid_option and args.grid_name != args.grid_option:
        raise SeqeditError(f"two grids given ({args.grid_name!r} and --grid {args.grid_option!r}); "
                           "give one")
    return args.grid_name or args.grid_option


def _run_grid(args) -> int:
    from benchmark.core.errors import SeqeditError
    from benchmark.grid import grid_names, load_grid

    name = _grid_name(args)
    if args.list or not name:
        if not args.list:
            raise SeqeditError("give a grid: seqedit grid NAME (or --list); grids: "
                               + ", ".join(grid_names()))
        for n in grid_names():
            g = load_grid(n)
            print(f"{n:10} {len(g.cells):4} cells  {g.description.splitlines()[0] if g.description else ''}")
        return 0
    grid = load_grid(name)
    device = args.device or grid.run.device
    if args.dry_run:
        return _dry_run(args, grid, device)
    if args.publish_only:
        from benchmark.executors import publish_only

        return _report(grid, publish_only(grid, workdir=args.workdir, out=args.out))
    if grid.requires.network:
        from benchmark.core import settings

        if settings.offline():
            settings.require_network(f"grid {grid.name!r} (its models/data come from the hub)")
    only = [c.strip() for c in args.cells.split(",")] if args.cells else None
    if args.executor:
        from benchmark.executors import run_fanout

        outcome = run_fanout(grid, executor=args.executor, resources=_resources(args, grid),
                             workdir=args.workdir, out=args.out, resume=args.resume, device=device,
                             threads=args.threads, only=only, wait=not args.no_wait,
                             progress=not args.no_progress)
        if args.no_wait:
            print(f"grid {grid.name}: {len(outcome.jobs)} {args.executor} jobs submitted "
                  f"({', '.join(sorted(set(outcome.jobs.values())))}); when they have ended: "
                  f"seqedit grid {name} --publish-only"
                  + (f" --workdir {args.workdir}" if args.workdir else ""))
            return 0
        return _report(grid, outcome)
    from benchmark.runner import run_grid

    outcome = run_grid(grid, workdir=args.workdir, out=args.out, resume=args.resume,
                       device=device, progress=not args.no_progress, only=only,
                       threads=args.threads, jobs=args.jobs)
    return _report(grid, outcome)


def _resources(args, grid):
    from benchmark.executors import job_resources

    parallel = args.parallel or (args.jobs if args.executor == "local" else None)
    return job_resources(grid, partition=args.partition, gpus=args.gpus, cpus=args.cpus,
                         mem_gb=args.mem_gb, time_min=args.time_min, parallel=parallel)


def _report(grid, outcome) -> int:
    done = sum(s.status == "completed" for s in outcome.statuses)
    print(f"grid {grid.name}: {done} completed, {len(outcome.failed)} not completed; "
          f"results in {outcome.out}")
    for s in outcome.failed:
        print(f"  {s.status.upper()} {s.folder}: {s.reason or 'did not run'}")
    return 1 if outcome.failed else 0


def _dry_run(args, grid, device: str) -> int:
    from benchmark.cost import format_plan, plan
    from benchmark.runner import grid_workdir

    rows = plan(grid, device)
    script = None
    if args.executor == "slurm":
        from benchmark.executors import sbatch_script
        from benchmark.executors.fanout import submitit_folder

        script = sbatch_script(grid, _resources(args, grid),
                               submitit_folder(grid_workdir(grid, args.workdir)), len(grid.cells))
    if args.json:
        print(json.dumps({"grid": grid.name, "cells": rows, "sbatch": script}, indent=1))
        return 0
    print(format_plan(grid, rows, device))
    print(f"workdir: {grid_workdir(grid, args.workdir)}")
    if script is not None:
        print(f"\nsbatch script of the job array ({len(grid.cells)} cells, one job each):\n")
        print(script)
    return 0
