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
    models: [smollm2-135m]
    editors: [rome, memit]
    hparams: {memit: {mom2_update_weight: 2000}}   # per editor, over editors/hparams YAML
    datasets: [{name: counterfact, split: edit}]
    n_edits: 60
    batch_size: 1
    checkpoints: [0, 15, 30, 45, 60]
    seeds: [0]
    trajectories: [none, {kind: rect, keep: 0.4}]
    variants: [none, {kind: prune, alpha: e}]
    evaluation: {timing: first-n, tasks: [{name: ..., limit: 20}]}

Every error names the file and the field (pydantic ``extra="forbid"`` plus cross-field
checks: registry names with did-you-mean, checkpoints within the edit count, ...).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.core import settings
from benchmark.core.errors import DataError
from benchmark.core.registry import UnknownName
from benchmark.spec import (
    CellSpec,
    DatasetSpec,
    Dtype,
    EvalSpec,
    Restraint,
    _restraint_shorthand,
)

log = logging.getLogger(__name__)

GRID_SCHEMA_VERSION = 1


class GridError(DataError):
    """A grid file that cannot be used; names the file and the field."""


class Requirements(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    network: bool = False
    gpu: bool = False


class RunOptions(BaseModel):
    """Options that do not change results (not part of any cell's hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    save_every: int = Field(10, gt=0)  # also save state every K edits between checkpoints
    device: str = "cpu"
    #: torch intra-op threads (None: torch's default). Float results can depend on it, so a
    #: resumed run must use the same value; it is recorded in each cell's provenance.
    threads: int | None = Field(None, gt=0)
    #: cells run in this many processes at once (each with ``threads`` threads, default 1)
    jobs: int = Field(1, gt=0)


class Axes(BaseModel):
    """Axis fields; all optional here, required after merging a block over the top level."""

    model_config = ConfigDict(extra="forbid")
    models: list[str] | None = None
    editors: list[str] | None = None
    hparams: dict[str, dict[str, Any]] | None = None
    datasets: list[DatasetSpec] | None = None
    n_edits: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    checkpoints: list[int] | None = None
    seeds: list[Annotated[int, Field(ge=0)]] | None = None
    trajectories: list[Restraint] | None = None
    variants: list[Restraint] | None = None
    evaluation: EvalSpec | None = None
    dtype: Dtype | None = None

    @field_validator("trajectories", "variants", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [_restraint_shorthand(x) for x in v]
        return v

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_short(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("models", "editors", "datasets", "checkpoints", "seeds", "trajectories",
                     "variants")
    @classmethod
    def _nonempty(cls, v: Any) -> Any:
        if v is not None and len(v) == 0:
            raise ValueError("must not be empty")
        return v


_REQUIRED = ("models", "editors", "datasets", "n_edits", "checkpoints")


class GridFile(Axes):
    schema_version: int
    name: str
    description: str = ""
    requires: Requirements = Requirements()
    run: RunOptions = RunOptions()
    blocks: list[Axes] | None = None

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != GRID_SCHEMA_VERSION:
            raise ValueError(f"unsupported grid schema_version {v}; this suite reads {GRID_SCHEMA_VERSION}")
        return v

    @field_validator("blocks")
    @classmethod
    def _blocks_nonempty(cls, v: Any) -> Any:
        if v is not None and len(v) == 0:
            raise ValueError("must not be empty (leave it out for a single block)")
        return v


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


# --------------------------------------------------------------------------- names
def _known_models() -> list[str]:
    from benchmark.models import MODELS

    return MODELS.names()


def _known_editors() -> list[str]:
    try:
        import editors

        names = getattr(editors, "editor_names", None)
        if callable(names):
            return list(names())
        reg = getattr(editors, "EDITORS", None)
        if reg is not None:
            return list(reg.names())
        from editors.hparams import HPARAMS_SCHEMAS

        return sorted(HPARAMS_SCHEMAS)
    except ImportError:  # editors not installed yet: nothing to check against
        return []


def _known_datasets() -> list[str]:
    try:
        from benchmark.data import load_manifests, loaders

        names = set(getattr(loaders, "FAMILIES", {}))
        parsers = getattr(loaders, "PARSERS", {})
        names |= {n for n, m in load_manifests().items() if m.format in parsers}
        return sorted(names)
    except ImportError:
        return []


def _known_tasks() -> list[str]:
    try:
        from benchmark.evaluation import general

        fn = getattr(general, "task_names", None)
        if callable(fn):
            return list(fn())
        reg = getattr(general, "TASKS", None)
        if reg is not None:
            return list(reg.names() if hasattr(reg, "names") else reg)
    except ImportError:
        pass
    return []


def _known_editing_metrics() -> list[str]:
    try:
        from benchmark.evaluation import editing

        for attr in ("ALL_METRICS", "EDITING_METRICS", "METRICS", "metric_names"):
            val = getattr(editing, attr, None)
            if callable(val):
                return list(val())
            if val is not None:
                return list(val.names() if hasattr(val, "names") else val)
    except ImportError:
        pass
    return []


def _dataset_size(name: str, split: str) -> int | None:
    """Usable records of a data set split from its manifest (None when unknown)."""
    try:
        from benchmark.data import get_manifest, loaders

        fam = getattr(loaders, "FAMILIES", {})
        manifest = fam.get(name, {}).get(split, name) if name in fam else name
        m = get_manifest(manifest)
    except Exception:  # noqa: BLE001 - an unknown size is simply not checked here
        return None
    if m.records is None:
        return None
    return m.records - len(getattr(m, "exclude_records", ()) or ())


@dataclass(frozen=True)
class NameCheckers:
    """Sources of valid names (injectable for tests). An empty list disables a check."""

    models: Callable[[], list[str]] = _known_models
    editors: Callable[[], list[str]] = _known_editors
    datasets: Callable[[], list[str]] = _known_datasets
    tasks: Callable[[], list[str]] = _known_tasks
    editing_metrics: Callable[[], list[str]] = _known_editing_metrics
    dataset_size: Callable[[str, str], int | None] = _dataset_size
    check_hparams: bool = True


# --------------------------------------------------------------------------- loading
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


def _loc(loc: tuple, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _raise_validation(path: Path, exc: ValidationError, prefix: str = "") -> None:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p in ("none", "rect", "prune")))
    field = _loc(loc, prefix) or None
    msg = first["msg"].removeprefix("Value error, ")
    if len(errors) > 1:
        others = "; ".join(f"{_loc(e['loc'], prefix)}: {e['msg']}" for e in errors[1:4])
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
        for key in _REQUIRED:
            if merged.get(key) is None:
                raise GridError(path, "required (at the top level or in the block)",
                                field=_loc((key,), prefix))
        axes = Axes.model_validate(merged)
        _check_names(path, axes, prefix, names)
        for cell, where in _expand(path, axes, prefix):
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


def _check_name(path: Path, field: str, name: str, kind: str, known: list[str]) -> None:
    if known and name not in known:
        raise GridError(path, str(UnknownName(kind, name, known)), field=field)


def _check_names(path: Path, axes: Axes, prefix: str, names: NameCheckers) -> None:
    known = names.models()
    for i, m in enumerate(axes.models or []):
        _check_name(path, _loc(("models", i), prefix), m, "model", known)
    known = names.editors()
    for i, e in enumerate(axes.editors or []):
        _check_name(path, _loc(("editors", i), prefix), e, "editor", known)
    for e in (axes.hparams or {}):
        if e not in (axes.editors or []):
            raise GridError(path, f"overrides for editor {e!r}, which is not in editors",
                            field=_loc(("hparams", e), prefix))
    known = names.datasets()
    for i, d in enumerate(axes.datasets or []):
        _check_name(path, _loc(("datasets", i, "name"), prefix), d.name, "dataset", known)
        size = names.dataset_size(d.name, d.split)
        if size is not None and axes.n_edits and d.offset + axes.n_edits > size:
            raise GridError(path, f"{d.name}:{d.split} has {size} usable records; offset "
                            f"{d.offset} + n_edits {axes.n_edits} needs more",
                            field=_loc(("n_edits",), prefix))
    ev = axes.evaluation or EvalSpec()
    known = names.tasks()
    for i, t in enumerate(ev.tasks):
        _check_name(path, _loc(("evaluation", "tasks", i, "name"), prefix), t.name, "task", known)
    known = names.editing_metrics()
    for i, m in enumerate(ev.editing_metrics):
        _check_name(path, _loc(("evaluation", "editing_metrics", i), prefix), m,
                    "editing metric", known)
    n = axes.n_edits or 0
    for i, c in enumerate(axes.checkpoints or []):
        if c > n:
            raise GridError(path, f"checkpoint {c} exceeds n_edits {n}",
                            field=_loc(("checkpoints", i), prefix))
    if names.check_hparams:
        _check_hparams(path, axes, prefix)


def _check_hparams(path: Path, axes: Axes, prefix: str) -> None:
    try:
        from editors.hparams import HPARAMS_SCHEMAS, load_hparams
    except ImportError:
        return
    for e in axes.editors or []:
        if e not in HPARAMS_SCHEMAS:
            continue
        overrides = (axes.hparams or {}).get(e) or {}
        for m in axes.models or []:
            try:
                load_hparams(e, m, overrides)
            except DataError as exc:
                field = _loc(("hparams", e) + ((exc.field,) if exc.field else ()), prefix)
                raise GridError(path, f"editor {e!r} on model {m!r}: {exc}", field=field) from None


def _expand(path: Path, axes: Axes, prefix: str):
    ev = axes.evaluation or EvalSpec()
    trajectories = axes.trajectories or [_restraint_shorthand("none")]
    variants = axes.variants or ["none"]
    product = itertools.product(axes.models, axes.editors, axes.datasets, trajectories,
                                axes.seeds or [0])
    for idx, (model, editor, dataset, traj, seed) in enumerate(product):
        try:
            cell = CellSpec(
                model=model, editor=editor, hparams=(axes.hparams or {}).get(editor) or {},
                dataset=dataset, n_edits=axes.n_edits, batch_size=axes.batch_size or 1,
                checkpoints=tuple(axes.checkpoints), trajectory=traj, variants=tuple(variants),
                evaluation=ev, seed=seed, dtype=axes.dtype or "float32",
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                field = str(err["loc"][0])
            else:  # model-level check: its message starts with the field name
                field, _, rest = msg.partition(": ")
                msg = rest or msg
            field = {"trajectory": "trajectories", "seed": "seeds"}.get(field, field)
            raise GridError(path, f"{msg} (cell {model}/{editor}/{dataset.name})",
                            field=_loc((field,), prefix) if field else (prefix or None)) from None
        yield cell, f"{prefix or 'grid'} cell {idx}"
