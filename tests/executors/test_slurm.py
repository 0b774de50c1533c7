"""``--executor slurm``: submitit's SlurmExecutor against a fake ``sbatch`` (and ``srun``)
on PATH. The submitted script must carry the job array and the resources asked for, and
each array task's pickled submission must be the job of its cell."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest

from benchmark import SUITE_VERSION
from benchmark.cli import main
from benchmark.core import settings
from benchmark.executors import job_resources, run_fanout
from benchmark.executors.job import CellJob
from benchmark.grid import load_grid
from benchmark.spec import CellSpec

FAKE_SBATCH = """#!/bin/sh
cp "$1" "{log}/script-$(ls {log} | wc -l).sh"
echo "Submitted batch job 4242"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """A PATH with ``sbatch`` (copies the script it is given, answers job 4242) and ``srun``."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch-log"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in {"sbatch": FAKE_SBATCH.format(log=log), "srun": "#!/bin/sh\nexit 0\n"}.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _sbatch_options(script: str) -> dict[str, str]:
    out = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line.removeprefix("#SBATCH --").partition("=")
            out[key] = value
    return out


def test_cells_are_submitted_as_one_job_array_with_the_resources(fake_slurm, tmp_path):
    grid = load_grid("ci")
    resources = job_resources(grid, partition="gpu-long", gpus=2, cpus=6, mem_gb=48,
                              time_min=90, parallel=3)
    outcome = run_fanout(grid, executor="slurm", resources=resources, workdir=tmp_path / "wd",
                         out=tmp_path / "out", wait=False, progress=False)
    scripts = sorted(fake_slurm.iterdir())
    assert len(scripts) == 1  # one sbatch call: a job array
    opts = _sbatch_options(scripts[0].read_text())
    n = len(grid.cells)
    assert opts["array"] == f"0-{n - 1}%3"
    assert (opts["partition"], opts["gpus-per-node"], opts["cpus-per-task"]) == ("gpu-long", "2", "6")
    assert (opts["mem"], opts["time"], opts["job-name"]) == ("48GB", "90", "seqedit-ci")
    assert opts["signal"].startswith("USR2@")  # submitit's preemption/timeout signal
    assert sorted(outcome.jobs.values()) == sorted(f"4242_{i}" for i in range(n))

    # each array task's pickle runs the CellJob of its own cell
    folder = tmp_path / "wd" / SUITE_VERSION / "ci" / "submitit"
    for cell in grid.cells:
        job_id = outcome.jobs[cell.short_hash]
        with open(folder / job_id / f"{job_id}_submitted.pkl", "rb") as fh:
            submission = pickle.load(fh)
        assert isinstance(submission.function, CellJob)
        (task,) = submission.args
        assert CellSpec.model_validate_json(task.spec_json) == cell
        assert task.ctx.resume is False and task.threads == 1  # the grid's run.threads


def test_grid_defaults_give_one_gpu_to_a_gpu_grid():
    paper = load_grid("paper")
    r = job_resources(paper)
    assert (r.gpus, r.time_min, r.partition) == (1, 240, None)
    assert job_resources(load_grid("ci")).gpus == 0
    assert job_resources(paper, gpus=0, time_min=30).slurm_parameters("x")["time"] == 30


def test_a_requeued_job_resumes():
    """submitit requeues a preempted or timed-out job with what checkpoint() returns."""
    from benchmark.cell.context import RunContext
    from benchmark.executors.job import CellTask

    task = CellTask("{}", "/wd", RunContext(grid="g", resume=False), 2)
    job = CellJob()
    again = job.checkpoint(task)
    assert again.function is job
    assert again.args[0].ctx.resume is True
    assert again.args[0].spec_json == "{}" and again.args[0].threads == 2


def test_dry_run_prints_the_sbatch_script_of_the_paper_grid(capsys):
    assert main(["grid", "paper", "--executor", "slurm", "--partition", "a100", "--mem-gb", "80",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    n = len(load_grid("paper").cells)
    script = out[out.index("#!/bin/bash"):]
    opts = _sbatch_options(script)
    assert opts["array"] == f"0-{n - 1}%{n}"
    assert (opts["partition"], opts["mem"], opts["gpus-per-node"]) == ("a100", "80GB", "1")
    assert "submitit.core._submit" in script


def test_publish_only_publishes_what_the_cell_folders_hold(fake_slurm, tmp_path, capsys):
    """Jobs submitted and left (--no-wait); none has run: every cell is published as not
    completed, and the command says so with exit code 1."""
    grid = load_grid("ci")
    run_fanout(grid, executor="slurm", resources=job_resources(grid), workdir=tmp_path / "wd",
               out=tmp_path / "out", wait=False, progress=False)
    code = main(["grid", "ci", "--publish-only", "--workdir", str(tmp_path / "wd"),
                 "--out", str(tmp_path / "out")])
    assert code == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "cells.jsonl").read_text().splitlines()]
    assert sorted(r["cell"] for r in rows) == sorted(c.short_hash for c in grid.cells)
    assert {r["status"] for r in rows} == {"pending"}
    assert f"0 completed, {len(grid.cells)} not completed" in capsys.readouterr().out


def test_resources_come_from_the_grids_run_section(tmp_path):
    text = (settings.GRIDS_DIR / "ci.yaml").read_text(encoding="utf-8").replace(
        "run: {save_every: 3, threads: 1}",
        "run: {save_every: 3, threads: 1, resources: {partition: short, cpus: 4, mem_gb: 7.5, "
        "time_min: 30, parallel: 2, slurm: {account: proj}}}")
    assert "resources" in text
    (tmp_path / "ci.yaml").write_text(text, encoding="utf-8")
    grid = load_grid(tmp_path / "ci.yaml")
    r = job_resources(grid, time_min=45)  # a flag overrides the grid
    params = r.slurm_parameters("x")
    assert (params["partition"], params["cpus_per_task"], params["mem"]) == ("short", 4, "7680MB")
    assert (params["time"], params["array_parallelism"]) == (45, 2)
    assert params["additional_parameters"] == {"account": "proj"}
    assert r.gpus == 0 and r.local_parameters() == {"timeout_min": 45, "gpus_per_node": 0}
