"""Grid names that would leave their folder, and ``--cells`` selections.

Each case: the exit code, the message naming the file and field (or the name), and the
published folder (and work folder) byte-identical afterwards."""

from __future__ import annotations

import dataclasses

import pytest

from benchmark import SUITE_VERSION
from benchmark.core.errors import SeqeditError
from benchmark.runner import run_grid
from tests.reliability.conftest import tree_hashes
from tests.runner.conftest import GRID_TEMPLATE

# (case id, file name, grid name, field the message names)
UNSAFE_GRID_FILES = [
    ("dots-name", "...yaml", "..", "name"),
    ("hidden-name", ".hidden.yaml", ".hidden", "name"),
    ("space-in-name", "a b.yaml", "a b", "name"),
    ("slash-in-name", "g.yaml", "a/b", "name"),
]


def _grid_text(name: str, dataset: str = "{name: synthetic}") -> str:
    text = GRID_TEMPLATE.format(name=name, save_every=3, n_edits=4, batch_size=1,
                                checkpoints="[0, 2, 4]", trajectories="[none]",
                                variants="[none]", timing="first-n")
    return text.replace("{name: synthetic}", dataset)


@pytest.mark.parametrize("case,filename,name,field", UNSAFE_GRID_FILES,
                         ids=[c[0] for c in UNSAFE_GRID_FILES])
def test_unsafe_grid_name_refused(published, cli, tmp_path, case, filename, name, field):
    path = tmp_path / "grids" / filename
    path.parent.mkdir()
    path.write_text(_grid_text(f"'{name}'"))
    before, work_before = published.hashes(), tree_hashes(published.workdir)
    res = cli("grid", "--grid", str(path), "--workdir", str(published.workdir), "--out",
              str(published.out), "--no-progress")
    assert res.code == 2
    assert str(path) in res.err and f"field {field!r}" in res.err and "not a safe name" in res.err
    assert published.hashes() == before
    assert tree_hashes(published.workdir) == work_before
    assert not (tmp_path / "grids" / "results").exists()


# (case id, dataset entry, field)
UNSAFE_DATASETS = [
    ("dataset-parent", "{name: '../x'}", "datasets[0].name"),
    ("dataset-slash", "{name: 'a/b'}", "datasets[0].name"),
    ("split-slash", "{name: synthetic, split: 'edit/../..'}", "datasets[0].split"),
]


@pytest.mark.parametrize("case,dataset,field", UNSAFE_DATASETS, ids=[c[0] for c in UNSAFE_DATASETS])
def test_unsafe_dataset_name_refused(published, cli, tmp_path, case, dataset, field):
    path = tmp_path / "g.yaml"
    path.write_text(_grid_text("g", dataset))
    before = published.hashes()
    res = cli("grid", "--grid", str(path), "--out", str(published.out), "--workdir",
              str(published.workdir), "--no-progress")
    assert res.code == 2
    assert str(path) in res.err and f"field {field!r}" in res.err and "not a safe name" in res.err
    assert published.hashes() == before


@pytest.mark.parametrize("root", ["results", "workdir"])
@pytest.mark.parametrize("name", ["..", ".", "../elsewhere", "v2/../../x"])
def test_grid_name_outside_its_root_refused(published, name, root):
    """A Grid built without the file schema: the runner still resolves the default results
    folder and the work folder inside their roots (``results``: no --out given)."""
    from benchmark.core import settings

    grid = dataclasses.replace(published.grid, name=name)
    before, work_before = published.hashes(), tree_hashes(published.workdir)
    results_before = tree_hashes(settings.RESULTS_DIR)
    out = published.out if root == "workdir" else None
    with pytest.raises(SeqeditError) as info:
        run_grid(grid, workdir=published.workdir, out=out, components=published.comps,
                 progress=False)
    base = published.workdir if root == "workdir" else settings.RESULTS_DIR
    assert f"resolves outside {base / SUITE_VERSION}" in str(info.value)
    assert published.hashes() == before
    assert tree_hashes(published.workdir) == work_before
    assert tree_hashes(settings.RESULTS_DIR) == results_before


# ------------------------------------------------------------------------- --cells
def _typo(published, kind: str) -> tuple[str, str]:
    """A mistyped name and the name the error should suggest."""
    cell = published.grid.cells[1]
    if kind == "hash":
        return cell.short_hash[:-1] + ("0" if cell.short_hash[-1] != "0" else "1"), cell.short_hash
    return cell.slug.replace("tiny-llama", "tiny-lama"), cell.slug


@pytest.mark.parametrize("kind", ["hash", "slug"])
def test_cells_typo_is_an_error_with_did_you_mean(published, cli, kind):
    name, suggestion = _typo(published, kind)
    before, work_before = published.hashes(), tree_hashes(published.workdir)
    res = cli(*published.argv("--cells", name))
    assert res.code == 2
    assert f"no cell of grid 'rgrid' is named {name!r}" in res.err
    assert f"Did you mean {suggestion!r}" in res.err
    assert published.hashes() == before
    assert tree_hashes(published.workdir) == work_before


def test_cells_one_good_one_typo_runs_nothing(published, cli):
    good = published.grid.cells[0].short_hash
    before, work_before = published.hashes(), tree_hashes(published.workdir)
    res = cli(*published.argv("--cells", f"{good},nosuchcell"))
    assert res.code == 2 and "'nosuchcell'" in res.err
    assert published.hashes() == before
    assert tree_hashes(published.workdir) == work_before


def test_cells_too_short_prefix_is_an_error(published, cli):
    name = published.grid.cells[0].short_hash[:3]
    before = published.hashes()
    res = cli(*published.argv("--cells", name))
    assert res.code == 2 and f"named {name!r}" in res.err
    assert published.hashes() == before


@pytest.mark.parametrize("fresh_workdir", [False, True], ids=["same-workdir", "fresh-workdir"])
def test_cells_prefix_runs_one_cell_and_keeps_the_others(published, cli, tmp_path, fresh_workdir):
    """An 8-character hash prefix selects its cell; the other cell's published rows stay,
    even from a fresh work folder that never ran it (committed results + new checkout)."""
    out = published.out
    records, cells = (out / "records.jsonl").read_bytes(), (out / "cells.jsonl").read_bytes()
    other = published.grid.cells[1]
    prov_other = (out / "provenance" / f"{other.folder}.json").read_bytes()
    workdir = tmp_path / "fresh" if fresh_workdir else published.workdir
    argv = published.argv("--cells", published.grid.cells[0].short_hash[:8])
    argv[argv.index("--workdir") + 1] = str(workdir)
    res = cli(*argv)
    assert res.code == 0, res.err
    assert "1 completed, 0 not completed" in res.out
    # the fakes are deterministic: the rerun cell gives the same records; the other is kept
    assert (out / "records.jsonl").read_bytes() == records
    assert (out / "cells.jsonl").read_bytes() == cells
    assert (out / "provenance" / f"{other.folder}.json").read_bytes() == prov_other
    assert (workdir / SUITE_VERSION / "rgrid" / other.folder).exists() != fresh_workdir
