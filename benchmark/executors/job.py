"""The job of one cell: what submitit runs in a subprocess or on a Slurm node.

:class:`CellJob` is a :class:`submitit.helpers.Checkpointable`: when Slurm preempts the job
or its time limit nears, submitit calls :meth:`CellJob.checkpoint` and requeues the same job
with ``resume=True``; the cell then continues from the state saved in its folder (every
``run.save_every`` edits and at each checkpoint), with records identical to an
uninterrupted run's. A job resubmitted after a kill resumes the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import submitit

from benchmark.cell.context import RunContext


@dataclass(frozen=True)
class CellTask:
    """Everything a job needs, as plain data: the cell's spec (JSON), the grid's work folder,
    how the cell runs and the torch threads."""

    spec_json: str
    workdir: str
    ctx: RunContext
    threads: int | None = None


class CellJob(submitit.helpers.Checkpointable):
    """Run one cell (:func:`benchmark.runner.run_single_cell`); returns its status row."""

    def __call__(self, task: CellTask) -> dict[str, Any]:
        from benchmark.core.settings import apply_offline_env
        from benchmark.runner import _die_with_parent, run_single_cell
        from benchmark.spec import CellSpec

        apply_offline_env()
        if os.environ.get("SUBMITIT_EXECUTOR") == "local":
            _die_with_parent()  # a killed local job leaves no orphan holding the cell's lock
        spec = CellSpec.model_validate_json(task.spec_json)
        status = run_single_cell(spec, Path(task.workdir), task.ctx, task.threads)
        return status.model_dump(mode="json")

    def checkpoint(self, task: CellTask) -> submitit.helpers.DelayedSubmission:
        """Requeue with ``resume``: the cell continues from its folder's saved state."""
        return submitit.helpers.DelayedSubmission(self, replace(task, ctx=replace(task.ctx, resume=True)))
