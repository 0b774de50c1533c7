"""Grid files: declarative, validated products of cells.

A grid file (``benchmark/grids/<name>.yaml``) names the axes of a product of cells and
the protocol they share. Top-level axis fields apply to every block; each entry of
``blocks`` overrides some of them and expands to its own product (a grid without
``blocks`` is a single block)::

    schema_version: 1
    name: smoke                     # must equal the file name
    description: ...
    requires: {network: false, gpu: false}
    run: {save_every: 10}           # run options: do not change results
    models: [smollm2-135m]          # registry names, hf:ORG/NAME@COMMIT or path:DIR
    editors: [rome, memit]
    hparams: {memit: {mom2_update_weight: 2000}}   # per editor, over editors/hparams YAML
    datasets: [{name: counterfact, split: edit}]   # or {path: FILE, format: counterfact|zsre|mquake}
    n_edits: 60
    batch_size: 1
    checkpoints: [0, 15, 30, 45, 60]
    seeds: [0]
    trajectories: [none, {kind: rect, keep: 0.4}]
    variants: [none, {kind: prune, alpha: e}]
    evaluation: {timing: first-n, tasks: [{name: ..., limit: 20}]}

Every error names the file and the field (pydantic ``extra="forbid"`` plus cross-field
checks: registry names with did-you-mean, checkpoints within the edit count, ...).

This module finds, reads and parses grid files; the schema is in
:mod:`benchmark.grid_schema`, the checks against the registries in
:mod:`benchmark.grid_checks` and the expansion into cells in :mod:`benchmark.grid_cells`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from benchmark.core import settings
from benchmark.core.registry import UnknownName
from benchmark.grid_cells import expand_cells
from benchmark.grid_checks import NameCheckers, canonical_models, check_names
from benchmark.grid_data import resolve_files
from benchmark.grid_schema import (
    REQUIRED_AXES,
    Axes,
    GridError,
    GridFile,
    Requirements,
    RunOptions,
    field_path,
)
from benchmark.spec import CellSpec


@dataclass(frozen=True)
class Grid:
    """A validated grid: its file, options and expanded cells (in a fixed order)."""

    name: str
    path: Path
    description: str
    requires: Requirements
    run: RunOptions
    cells: tuple[CellSpec, ...]
    source_text: str

    def by_hash(self) -> dict[str, CellSpec]:
        return {c.short_hash: c for c in self.cells}


def resolve_grid_path(name_or_path: str | Path) -> Path:
    """``smoke`` -> benchmark/grids/smoke.yaml; an existing path is taken as is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise GridError(p, "grid file not found")
        return p.resolve()
    candidate = settings.GRIDS_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = grid_names()
        err = UnknownName("grid", str(name_or_path), known)
        raise GridError(candidate, str(err))
    return candidate


def grid_names() -> list[str]:
    return sorted(p.stem for p in settings.GRIDS_DIR.glob("*.yaml") if p.stem != "tolerances")


def _raise_validation(path: Path, exc: ValidationError) -> None:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p in ("none", "rect", "prune")))
    field = field_path(loc) or None
    msg = first["msg"].removeprefix("Value error, ")
    if len(errors) > 1:
        others = "; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in errors[1:4])
        msg += f" (also: {others})"
    raise GridError(path, msg, field=field) from None


def parse_grid(path: Path, text: str, names: NameCheckers | None = None) -> Grid:
    names = names or NameCheckers()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GridError(path, f"invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise GridError(path, "a grid file must be a mapping at the top level")
    try:
        gf = GridFile.model_validate(raw)
    except ValidationError as exc:
        _raise_validation(path, exc)
    if gf.name != path.stem:
        raise GridError(path, f"name {gf.name!r} differs from the file name {path.stem!r}",
                        field="name")
    top = gf.model_dump(exclude_unset=True, include=set(Axes.model_fields))
    blocks = gf.blocks or [Axes()]
    cells: list[CellSpec] = []
    seen: dict[str, str] = {}
    for bi, block in enumerate(blocks):
        prefix = f"blocks[{bi}]" if gf.blocks else ""
        merged = {**top, **block.model_dump(exclude_unset=True)}
        for key in REQUIRED_AXES:
            if merged.get(key) is None:
                raise GridError(path, "required (at the top level or in the block)",
                                field=field_path((key,), prefix))
        axes = canonical_models(path, resolve_files(path, Axes.model_validate(merged), prefix),
                                prefix)
        check_names(path, axes, prefix, names)
        for cell, where in expand_cells(path, axes, prefix):
            h = cell.short_hash
            if h in seen:
                raise GridError(path, f"cell {cell.slug} appears twice (also at {seen[h]})",
                                field=where)
            seen[h] = where
            cells.append(cell)
    return Grid(gf.name, path, gf.description, gf.requires, gf.run, tuple(cells), text)


def load_grid(name_or_path: str | Path, names: NameCheckers | None = None) -> Grid:
    path = resolve_grid_path(name_or_path)
    return parse_grid(path, path.read_text(encoding="utf-8"), names)
