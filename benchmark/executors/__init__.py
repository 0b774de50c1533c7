"""Fan a grid out over jobs with submitit: one job per cell, on this machine
(``--executor local``: submitit's LocalExecutor, a subprocess per cell) or on a Slurm
cluster (``--executor slurm``: one job array).

- :mod:`benchmark.executors.resources`: what each job asks for (the grid's
  ``run.resources``, overridden by CLI flags) and the ``sbatch`` script of a dry run.
- :mod:`benchmark.executors.job`: the job itself, which runs one cell in its work folder
  and, when Slurm preempts or times it out, is requeued and resumes from the cell's saved state.
- :mod:`benchmark.executors.fanout`: submit the cells, wait for them, publish the results
  (or publish later, ``--publish-only``).

The in-process runner (:mod:`benchmark.runner`) stays the default; a cell's records do not
depend on which of them ran it.
"""

from benchmark.executors.fanout import FanoutOutcome, publish_only, run_fanout
from benchmark.executors.resources import JobResources, job_resources, sbatch_script

__all__ = ["FanoutOutcome", "JobResources", "job_resources", "publish_only", "run_fanout",
           "sbatch_script"]
