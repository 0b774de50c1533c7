"""``seqedit grid --grid NAME [--resume] [--dry-run] [--workdir DIR] [--out DIR]``."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.commands.options import positive_int


def register(sub) -> None:
    p = sub.add_parser("grid", help="run a grid of editing trajectories and publish its tables")
    p.add_argument("--grid", required=False, help="grid name (benchmark/grids/NAME.yaml) or a path")
    p.add_argument("--list", action="store_true", help="list the grid files")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: skip completed cells, resume partial ones")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the grid and list its cells with a rough cost; run nothing")
    p.add_argument("--workdir", type=Path, default=None,
                   help="working folder for state and checkpoints (default: $SEQEDIT_CACHE/runs)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to publish tables (default: results/<suite version>/<grid>)")
    p.add_argument("--device", default=None, help="torch device (default: the grid's, cpu)")
    p.add_argument("--cells", default=None,
                   help="comma-separated cell hashes or slugs to run (others are left as they are)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: the grid's run.threads, else torch's); "
                        "use the same value when resuming")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="run this many cells at once in separate processes (default: the grid's "
                        "run.jobs, 1); each uses --threads threads (default 1)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, lm-eval's request bars included (sets TQDM_DISABLE=1 "
                        "for this run and its worker processes)")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from benchmark.cell.context import scoped_environ

    # tqdm reads TQDM_DISABLE when imported (spawned workers import afresh); lm-eval's
    # request bars get it through benchmark.evaluation.general.make_lm
    with scoped_environ({"TQDM_DISABLE": "1"} if args.no_progress else {}):
        return _run_grid(args)


def _run_grid(args) -> int:
    from benchmark.core.errors import SeqeditError
    from benchmark.cost import format_plan, plan
    from benchmark.grid import grid_names, load_grid
    from benchmark.runner import grid_workdir, run_grid

    if args.list or not args.grid:
        if not args.list:
            raise SeqeditError("give --grid NAME (or --list); grids: " + ", ".join(grid_names()))
        for name in grid_names():
            g = load_grid(name)
            print(f"{name:10} {len(g.cells):4} cells  {g.description.splitlines()[0] if g.description else ''}")
        return 0
    grid = load_grid(args.grid)
    device = args.device or grid.run.device
    if args.dry_run:
        rows = plan(grid, device)
        if args.json:
            print(json.dumps({"grid": grid.name, "cells": rows}, indent=1))
        else:
            print(format_plan(grid, rows, device))
            print(f"workdir: {grid_workdir(grid, args.workdir)}")
        return 0
    if grid.requires.network:
        from benchmark.core import settings

        if settings.offline():
            settings.require_network(f"grid {grid.name!r} (its models/data come from the hub)")
    only = [c.strip() for c in args.cells.split(",")] if args.cells else None
    outcome = run_grid(grid, workdir=args.workdir, out=args.out, resume=args.resume,
                       device=device, progress=not args.no_progress, only=only,
                       threads=args.threads, jobs=args.jobs)
    done = sum(s.status == "completed" for s in outcome.statuses)
    print(f"grid {grid.name}: {done} completed, {len(outcome.failed)} not completed; "
          f"results in {outcome.out}")
    for s in outcome.failed:
        print(f"  {s.status.upper()} {s.folder}: {s.reason or 'did not run'}")
    return 1 if outcome.failed else 0
