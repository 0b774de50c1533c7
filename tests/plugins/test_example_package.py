"""The out-of-tree example editor (examples/seqedit-example-editor), installed as a package
with pip into a folder on PYTHONPATH: ``seqedit`` lists it, and a grid runs it on a tiny model
through the command line in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "seqedit-example-editor"

GRID = """\
schema_version: 1
name: plugin-example
requires: {network: false, gpu: false}
run: {threads: 1}
models: [tiny-llama]
editors: [example-rank-one]
datasets: [{name: counterfact, split: edit}]
n_edits: 2
batch_size: 1
checkpoints: [0, 2]
trajectories: [none]
variants: [none]
evaluation: {timing: first-n, editing_metrics: [efficacy], tasks: [], spectrum: false}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """pip-install a copy of the example (no build artefacts in the checkout) into a
    target folder; the environment of a process that sees it."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        SEQEDIT_CACHE=str(root / "cache"), OMP_NUM_THREADS="1")
    return env


def _seqedit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_example_editor_is_listed(installed):
    done = _seqedit(installed, "hparams", "list")
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("example-rank-one"))
    assert "seqedit-example-editor" in line and "tiny-llama" in line


def test_example_editor_runs_in_a_grid(installed, tmp_path):
    grid = tmp_path / "plugin-example.yaml"
    grid.write_text(GRID)
    out = tmp_path / "out"
    done = _seqedit(installed, "grid", str(grid), "--workdir", str(tmp_path / "work"),
                    "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    mine = [r for r in records if r["editor"] == "example-rank-one" and r["metric"] == "efficacy"]
    assert sorted(r["n_edits"] for r in mine) == [0, 2]
    assert all(r["n"] == {0: 2, 2: 2}[r["n_edits"]] for r in mine)
    (prov,) = (out / "provenance").glob("*example-rank-one*.json")
    hparams = json.loads(prov.read_text())["hparams"]
    assert hparams["method"] == "example-rank-one" and hparams["source"].startswith("example package")
