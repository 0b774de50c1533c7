"""The grid files shipped in benchmark/grids validate against the real registries."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main
from benchmark.cost import plan
from benchmark.grid import grid_names, load_grid


def test_shipped_grids_present():
    assert {"ci", "smoke", "paper", "alphaedit"} <= set(grid_names())


@pytest.mark.parametrize("name", ["ci", "smoke", "paper", "alphaedit"])
def test_shipped_grid_validates(name):
    grid = load_grid(name)
    assert grid.cells
    assert len({c.folder for c in grid.cells}) == len(grid.cells)
    rows = plan(grid)
    assert all(r["total_s"] > 0 for r in rows)


def test_smoke_grid_meets_the_issue():
    grid = load_grid("smoke")
    assert {c.model for c in grid.cells} == {"smollm2-135m"}
    # issue 13: ROME with and without RECT, AlphaEdit, PRUNE as a variant, 100 one-fact edits
    assert {(c.editor, c.trajectory.label) for c in grid.cells} == {
        ("rome", "none"), ("rome", "rect-0.4"), ("alphaedit", "none")}
    for c in grid.cells:
        assert c.n_edits >= 100 and c.batch_size == 1 and c.dataset.name == "counterfact"
        assert len(c.checkpoints) >= 4
        assert [v.label for v in c.variants] == ["none", "prune-e"]
        assert c.evaluation.tasks and c.evaluation.spectrum
        # teacher-forced and generation-based success side by side
        assert {"efficacy", "gen_efficacy"} <= set(c.evaluation.editing_metrics)
    assert not grid.requires.network


def test_long_grid_reaches_500_edits():
    grid = load_grid("embedded-long")
    assert not grid.requires.network and not grid.requires.gpu
    for c in grid.cells:
        assert c.n_edits >= 500 and c.batch_size == 1
        assert [v.label for v in c.variants] == ["none", "prune-e"]


def test_smoke_grid_evaluates_the_headline_tasks_at_smoke_limits():
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS, SMOKE_LIMITS

    for c in load_grid("smoke").cells:
        assert {t.name: t.limit for t in c.evaluation.tasks} == \
            {name: SMOKE_LIMITS[name] for name in HEADLINE_TASKS}


def test_paper_and_alphaedit_need_network_and_gpu():
    for name in ("paper", "alphaedit"):
        grid = load_grid(name)
        assert grid.requires.network and grid.requires.gpu
    paper = load_grid("paper")
    assert {c.model for c in paper.cells} == {"gpt2-xl", "llama2-7b", "llama3-8b"}
    assert {c.dataset.name for c in paper.cells} == {"counterfact-rome", "zsre"}
    assert {t.name for c in paper.cells for t in c.evaluation.tasks} == {
        "prune_reasoning", "prune_summarization", "prune_qa", "prune_nli"}
    alpha = load_grid("alphaedit")
    assert {c.batch_size for c in alpha.cells} == {100}
    assert {c.n_edits for c in alpha.cells} == {2000}
    assert {c.evaluation.timing for c in alpha.cells} == {"final"}


def test_dry_run_lists_cells_and_cost(capsys):
    assert main(["grid", "--grid", "paper", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["grid"] == "paper" and len(out["cells"]) == len(load_grid("paper").cells)
    assert all(c["total_s"] > 0 for c in out["cells"])
    assert main(["grid", "--grid", "alphaedit", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "llama3-8b-instruct" in text and "hours" in text


def test_networked_grid_refuses_offline(capsys, monkeypatch):
    monkeypatch.setenv("SEQEDIT_OFFLINE", "1")
    assert main(["grid", "--grid", "paper", "--workdir", "/nonexistent-never-used"]) != 0
    assert "network" in capsys.readouterr().err


def test_unknown_grid_is_a_clear_error(capsys):
    assert main(["grid", "--grid", "smok", "--dry-run"]) == 2
    assert "smoke" in capsys.readouterr().err
