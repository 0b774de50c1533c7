"""The edit loop of one cell: load, edit batch by batch, evaluate at checkpoints, finish.

Load the model, the requests and the editor; for each edit batch the editor computes a
Delta on the current model, which is restrained and applied (:mod:`benchmark.cell.edits`).
At each checkpoint n the state is saved (:mod:`benchmark.cell.state`), every evaluation
variant is evaluated (:mod:`benchmark.cell.variants`) and the checkpoint's records are
written atomically; that file is the checkpoint's completion marker. State is also saved
every ``save_every`` edits, so a killed run resumes (``ctx.resume``) with records identical
to an uninterrupted run's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.cell.context import RunContext
from benchmark.cell.edits import apply, compute
from benchmark.cell.evaluate import evaluate_each
from benchmark.cell.folder import CellFolder, settings_changed
from benchmark.cell.provenance import write_provenance
from benchmark.cell.rng import seed_everything
from benchmark.cell.state import CellRun, load_state, save_state, timed
from benchmark.cell.variants import evaluate_checkpoint
from benchmark.components import Components, Hooks
from benchmark.results import git_info
from benchmark.spec import CellSpec
from editors.base import Delta

log = logging.getLogger(__name__)


def run_cell(spec: CellSpec, cell_dir: Path, ctx: RunContext, comps: Components | None = None,
             hooks: Hooks | None = None) -> str:
    """Run (or resume) one cell; returns ``"completed"`` or ``"skipped"`` (already done).

    Raises :class:`~benchmark.cell.folder.CellBusy` when another process runs the cell,
    else whatever the cell raised (the caller records that as a failure).
    """
    folder = CellFolder(Path(cell_dir))
    comps = comps or Components()
    with folder.lock():
        git = git_info()  # now, not when the cell ends: the tree may change while it runs
        git_sha = git.get("sha")
        resume = ctx.resume
        if resume:
            done, corrupt = folder.completion(spec.checkpoints)
            if done is not None:
                if why := settings_changed("completed", folder.recorded_hparams_hash(),
                                           comps.hparams_hash(spec)):
                    raise RuntimeError(f"{folder.root}: {why}; run the cell without --resume "
                                       "to recompute it")
                if done.get("git_sha") != git_sha:
                    log.warning("%s: completed by code at git %s, now %s; kept (--resume). "
                                "Rerun without --resume to recompute it", folder.name,
                                done.get("git_sha"), git_sha)
                return "skipped"
            if corrupt is not None:  # the marker cannot be trusted: recompute the whole cell
                log.warning("%s; recomputing the cell", corrupt)
                ctx.event(spec.short_hash, "done_corrupt", reason=corrupt)
                resume = False
        folder.start(spec, resume)
        run = _start(spec, ctx, comps, hooks or Hooks(), folder, git)
        _trajectory(run)
        _finish(run)
        return "completed"


def _start(spec: CellSpec, ctx: RunContext, comps: Components, hooks: Hooks,
           folder: CellFolder, git: dict[str, Any]) -> CellRun:
    """Load model, requests and editor (``init_state`` and ``prepare`` on the unedited
    model), then restore the saved state when resuming."""
    cell = spec.short_hash
    wall: dict[str, float] = {}
    seed_everything(spec.seed)
    ctx.event(cell, "phase", phase="load")
    with timed(wall, "load"):
        loaded = comps.load_model(spec.model, ctx.device, spec.dtype)
        requests = list(comps.load_requests(spec.dataset, spec.n_edits))
    if len(requests) < spec.n_edits:
        raise ValueError(f"dataset {spec.dataset.name}:{spec.dataset.split} has only "
                         f"{len(requests)} requests from offset {spec.dataset.offset}; "
                         f"the cell needs {spec.n_edits}")
    ctx.event(cell, "phase", phase="statistics")
    with timed(wall, "statistics"):
        bundle = comps.create_editor(spec.editor, loaded, spec.hparams, progress=ctx.progress)
        editor_state = bundle.editor.init_state(loaded)
        bundle.editor.prepare(loaded, requests, editor_state)
    run = CellRun(spec=spec, ctx=ctx, comps=comps, hooks=hooks, folder=folder, loaded=loaded,
                  requests=requests, bundle=bundle, editor_state=editor_state,
                  traj=comps.restrainer(spec.trajectory), git=git, wall=wall)
    if ctx.resume and load_state(run):
        ctx.event(cell, "resumed", cursor=run.cursor)
    return run


def _edit_until(run: CellRun, n: int, pending: Delta | None, bar: tqdm) -> None:
    """Edit batch by batch up to ``n`` edits (``pending``: the first batch's Delta, computed
    already), saving state every ``save_every`` edits between checkpoints."""
    spec, save_every = run.spec, run.ctx.save_every
    while run.cursor < n:
        batch = run.requests[run.cursor:min(run.cursor + spec.batch_size, spec.n_edits)]
        delta = pending if pending is not None else compute(run, batch)
        pending = None
        apply(run, delta)
        run.cursor += len(batch)
        bar.update(len(batch))
        if spec.evaluation.timing == "each":
            evaluate_each(run, batch)
        if run.hooks.after_edit is not None:
            run.hooks.after_edit(run.cursor)
        crossed = run.cursor // save_every != (run.cursor - len(batch)) // save_every
        if crossed and run.cursor not in spec.checkpoints:
            save_state(run)


def _first_delta(run: CellRun) -> Delta:
    """The unedited spectrum needs the edited matrices' names: compute the first Delta now
    (computing never changes the model); it is applied after the evaluation."""
    spec = run.spec
    pending = compute(run, run.requests[0:min(spec.batch_size, spec.n_edits)])
    for name, md in pending.matrices.items():
        run.w0.setdefault(name, run.weight(name).detach().clone())
        run.layouts.setdefault(name, md.layout)
    return pending


def _trajectory(run: CellRun) -> None:
    spec, ctx, folder = run.spec, run.ctx, run.folder
    bar = tqdm(total=spec.n_edits, initial=run.cursor, desc=f"edits {spec.slug}", unit="edit",
               disable=not ctx.progress, leave=False)
    try:
        pending = None
        for n in spec.checkpoints:
            if n < run.cursor:
                if not folder.has_checkpoint(n):
                    raise RuntimeError(f"{folder.root}: state is past checkpoint {n} but its "
                                       "records are missing; delete the cell folder and rerun")
                continue
            _edit_until(run, n, pending, bar)
            pending = None
            if folder.has_checkpoint(n):
                continue
            if n > 0:
                save_state(run)
            elif spec.n_edits > 0 and spec.evaluation.spectrum:
                pending = _first_delta(run)
            ctx.event(spec.short_hash, "phase", phase="evaluation", n_edits=n)
            evaluated = evaluate_checkpoint(run, n)
            folder.write_checkpoint(n, evaluated.records, evaluated.samples)
            ctx.event(spec.short_hash, "checkpoint", n_edits=n, records=len(evaluated.records))
    finally:
        bar.close()


def _finish(run: CellRun) -> None:
    records = run.folder.records(run.spec.checkpoints)
    samples = run.folder.samples(run.spec.checkpoints)
    write_provenance(run)
    run.folder.complete(records, samples, run.git_sha)
    run.ctx.event(run.spec.short_hash, "completed", records=len(records))
