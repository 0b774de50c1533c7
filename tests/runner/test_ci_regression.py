"""What `nox -s regression` checks: a fresh run of the `ci` grid against the committed
results/<suite version>/ci, within the tolerances of benchmark/grids/tolerances.yaml."""

from __future__ import annotations

import pytest

from benchmark import SUITE_VERSION
from benchmark.compare import compare, has_regression
from benchmark.core import settings
from benchmark.grid import load_grid
from benchmark.runner import run_grid

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("jobs", [1, 2])
def test_ci_grid_reproduces_committed_results(tmp_path, jobs):
    """Serially and with cells in two processes (records must not depend on it)."""
    committed = settings.RESULTS_DIR / SUITE_VERSION / "ci"
    assert (committed / "records.jsonl").is_file()
    outcome = run_grid(load_grid("ci"), workdir=tmp_path / "wd", out=tmp_path / "ci",
                       progress=False, jobs=jobs)
    assert not outcome.failed, [s.reason for s in outcome.failed]
    diffs, text = compare(committed, tmp_path / "ci")
    assert not has_regression(diffs), text
    assert not [d for d in diffs if d.status == "added"], text
