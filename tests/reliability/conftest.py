"""Fixtures of the reliability suite (malformed inputs and faults; see issue 11).

Every case asserts the exit code, that the message names the file/record/field (or path),
and that the previously published folder is byte-identical afterwards, hashed here with
hashlib (never with the code under test). Runs use the fast fakes of tests/runner/conftest.py
(a rank-1 random editor on tiny-llama, cheap evaluators) and plots are stub files written
through the same atomic writes (autouse ``_fast_plots``), so a case takes well under a second.

Fixtures and helpers other test files may use:

- ``tree_hashes(path) -> dict[str, str]``: relative path -> sha256 of every file under
  ``path`` (folders listed as ``<name>/`` so an added empty folder shows too); ``{}`` when
  ``path`` does not exist.
- ``published`` (function scope): a copy of a grid that was run and published once per
  session: ``.grid`` (the :class:`~benchmark.grid.Grid`, two cells), ``.grid_file`` (its YAML),
  ``.workdir`` (the ``--workdir`` root), ``.wd`` (the grid's work folder in it), ``.out``
  (the published folder), ``.comps`` (the session's ``fake_components``), ``.hashes()`` (``tree_hashes(out)``)
  and ``.argv(*extra)`` (``seqedit grid`` arguments for this grid, workdir and out).
- ``cli(monkeypatch, capsys)``: runs ``seqedit`` in-process with the fakes (grid files are
  parsed with tests.runner.conftest.FAKE_NAMES, cells use the fake components); call
  ``cli(*argv) -> Result(code, out, err)``; ``err`` also holds the log lines (warnings).
- ``fail_writes(monkeypatch)``: ``fail_writes(k, under, error)`` makes the k-th atomic
  write (benchmark.core.io.atomic_path) of a file under the folder ``under`` raise
  ``error`` (default ENOSPC), and returns a list that collects every such path.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from benchmark.components import Components
from benchmark.grid import Grid
from benchmark.runner import grid_workdir, run_grid
from tests.runner.conftest import FAKE_NAMES, make_components, make_grid


def tree_hashes(path: Path) -> dict[str, str]:
    path = Path(path)
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_dir():
            out[rel + "/"] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Published:
    grid: Grid
    grid_file: Path
    workdir: Path
    out: Path
    comps: Components

    @property
    def wd(self) -> Path:
        return grid_workdir(self.grid, self.workdir)

    def hashes(self) -> dict[str, str]:
        return tree_hashes(self.out)

    def argv(self, *extra: str) -> list[str]:
        return ["grid", "--grid", str(self.grid_file), "--workdir", str(self.workdir),
                "--out", str(self.out), "--no-progress", *extra]

    def cell_dir(self, i: int) -> Path:
        return self.wd / self.grid.cells[i].folder


def _stub_plot(path, title, ylabel, records, spectrum, **_):
    from benchmark.core import io

    with io.atomic_path(path) as tmp:
        tmp.write_text(f"plot stub: {title} ({len(records)} records)\n")


@pytest.fixture(autouse=True)
def _fast_plots(monkeypatch):
    """matplotlib takes ~0.3 s a plot: plots are written as small stub files through the
    same atomic write (same names, same number of writes), so every publish stays fast."""
    from benchmark import report

    monkeypatch.setattr(report, "_plot", _stub_plot)
    monkeypatch.setattr(report, "_views", lambda plots, records: [])  # the per-metric plots only


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fake_components() -> Components:
    """One set of fakes for the session: the tiny model is loaded once (each cell gets a copy)."""
    return make_components()[0]


@pytest.fixture(scope="session")
def _published_template(tmp_path_factory, fake_components):
    root = tmp_path_factory.mktemp("reliability-template")
    grid = make_grid(root, "rgrid", n_edits=4, checkpoints="[0, 2, 4]",
                     variants="[none, {kind: prune, alpha: e}]")
    comps = fake_components
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    from benchmark import report

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(report, "_plot", _stub_plot)
            mp.setattr(report, "_views", lambda plots, records: [])
            outcome = run_grid(grid, workdir=root / "work", out=root / "out", components=comps,
                               progress=False)
    finally:
        torch.set_num_threads(before)
    assert not outcome.failed
    return root, grid


@pytest.fixture
def published(_published_template, tmp_path, fake_components) -> Published:
    root, grid = _published_template
    for name in ("work", "out"):
        shutil.copytree(root / name, tmp_path / name, symlinks=True)
    return Published(grid, grid.path, tmp_path / "work", tmp_path / "out", fake_components)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch, capsys, caplog, fake_components):
    from benchmark import grid as grid_module
    from benchmark.cell import loop
    from benchmark.cli import main

    real_load = grid_module.load_grid
    monkeypatch.setattr(grid_module, "load_grid", lambda name, names=None: real_load(name, FAKE_NAMES))
    monkeypatch.setattr(loop, "Components", lambda: fake_components)
    caplog.set_level(logging.WARNING)

    def run(*argv: str) -> Result:
        caplog.clear()
        code = main(list(argv))
        captured = capsys.readouterr()
        logs = "\n".join(r.getMessage() for r in caplog.records)
        return Result(code, captured.out, captured.err + "\n" + logs)

    return run


@pytest.fixture
def fail_writes(monkeypatch):
    from benchmark.core import io

    real = io.atomic_path

    def arm(k: int, under: Path, error: OSError | None = None) -> list[Path]:
        seen: list[Path] = []
        prefix = os.path.abspath(under)

        def atomic_path(path):
            if os.path.abspath(path).startswith(prefix):
                seen.append(Path(path))
                if len(seen) == k:
                    exc = error or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    exc.filename = str(path)
                    raise exc
            return real(path)

        monkeypatch.setattr(io, "atomic_path", atomic_path)
        return seen

    return arm
