"""What each job of a fanned-out grid asks for, and the ``sbatch`` script Slurm receives.

The grid's ``run.resources`` (:class:`benchmark.grid_schema.Resources`) gives the defaults;
the CLI flags of the same names override them field by field. GPUs default to one per job
when the grid declares ``requires: {gpu: true}``, else none; CPUs to the grid's
``run.threads``, else one.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.grid import Grid


@dataclass(frozen=True)
class JobResources:
    """One job's request (one job runs one cell)."""

    partition: str | None = None
    gpus: int = 0
    cpus: int = 1
    mem_gb: float | None = None
    time_min: int = 240
    parallel: int | None = None  # jobs at once (None: every job of the array at once)
    slurm: dict[str, Any] = field(default_factory=dict)  # further sbatch options

    def local_parameters(self) -> dict[str, Any]:
        """submitit LocalExecutor parameters (partition, memory and sbatch options do not apply)."""
        return {"timeout_min": self.time_min, "gpus_per_node": self.gpus}

    def slurm_parameters(self, job_name: str) -> dict[str, Any]:
        """submitit SlurmExecutor parameters (the ``sbatch`` options of every job)."""
        params: dict[str, Any] = {"job_name": job_name, "time": self.time_min,
                                  "cpus_per_task": self.cpus, "nodes": 1, "ntasks_per_node": 1}
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.partition:
            params["partition"] = self.partition
        if self.mem_gb is not None:
            params["mem"] = (f"{int(self.mem_gb)}GB" if self.mem_gb == int(self.mem_gb)
                             else f"{int(self.mem_gb * 1024)}MB")
        if self.parallel is not None:
            params["array_parallelism"] = self.parallel
        if self.slurm:
            params["additional_parameters"] = dict(self.slurm)
        return params


def job_resources(grid: Grid, **overrides: Any) -> JobResources:
    """The grid's ``run.resources`` with its defaults filled in, then every override that is
    not None (the CLI flags ``--partition``, ``--gpus``, ``--cpus``, ``--mem-gb``,
    ``--time-min``, ``--parallel``)."""
    r = grid.run.resources
    base = JobResources(
        partition=r.partition,
        gpus=r.gpus if r.gpus is not None else (1 if grid.requires.gpu else 0),
        cpus=r.cpus or grid.run.threads or 1,
        mem_gb=r.mem_gb, time_min=r.time_min, parallel=r.parallel, slurm=dict(r.slurm))
    unknown = set(overrides) - set(JobResources.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown job resources: {', '.join(sorted(unknown))}")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def sbatch_script(grid: Grid, resources: JobResources, folder: Path, n_jobs: int) -> str:
    """The ``sbatch`` script of the job array of ``n_jobs`` cells (what ``--executor slurm``
    submits; ``--dry-run`` prints it). Made by submitit, so it is the script it would send."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = resources.slurm_parameters(f"seqedit-{grid.name}")
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                        shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_jobs, **params)
