"""Checks of a grid block against the registries: model, editor, data set, task and metric
names (with did-you-mean), data set sizes, checkpoints and per-editor hparams overrides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import DataError
from benchmark.core.modelref import canonical, is_ref, parse
from benchmark.core.registry import UnknownName
from benchmark.grid_schema import Axes, GridError, field_path
from benchmark.spec import EvalSpec


def _known_models() -> list[str]:
    from benchmark.models import MODELS

    return MODELS.names()


def _known_editors() -> list[str]:
    from editors import EDITORS

    return EDITORS.names()


def _known_restraints() -> list[str]:
    """Plugin restraints (the built-in ones are kinds of the spec, checked by the schema)."""
    from benchmark.components import RESTRAINTS

    return RESTRAINTS.names()


def _known_datasets() -> list[str]:
    from benchmark.data import load_manifests
    from benchmark.data.loaders import FAMILIES, PARSERS

    return sorted(set(FAMILIES) | {n for n, m in load_manifests().items() if m.format in PARSERS})


def _known_tasks() -> list[str]:
    from benchmark.evaluation.task_catalog import task_names

    return task_names()


def _known_editing_metrics() -> list[str]:
    from benchmark.evaluation.editing import ALL_METRICS

    return list(ALL_METRICS)


def _dataset_size(name: str, split: str) -> int | None:
    """Usable records of a data set split from its manifest (None when unknown)."""
    from benchmark.data import get_manifest
    from benchmark.data.loaders import FAMILIES

    try:
        m = get_manifest(FAMILIES[name].get(split, name) if name in FAMILIES else name)
    except Exception:  # noqa: BLE001 - an unknown size is simply not checked here
        return None
    if m.records is None:
        return None
    return m.records - len(m.exclude_records)


@dataclass(frozen=True)
class NameCheckers:
    """Sources of valid names (injectable for tests). An empty list disables a check."""

    models: Callable[[], list[str]] = _known_models
    editors: Callable[[], list[str]] = _known_editors
    datasets: Callable[[], list[str]] = _known_datasets
    tasks: Callable[[], list[str]] = _known_tasks
    editing_metrics: Callable[[], list[str]] = _known_editing_metrics
    dataset_size: Callable[[str, str], int | None] = _dataset_size
    restraints: Callable[[], list[str]] = _known_restraints
    check_hparams: bool = True


def _check_name(path: Path, field: str, name: str, kind: str, known: list[str]) -> None:
    if known and name not in known:
        raise GridError(path, str(UnknownName(kind, name, known)), field=field)


def canonical_models(path: Path, axes: Axes, prefix: str) -> Axes:
    """``path:`` models with a relative folder, made absolute against the grid file's folder."""
    if not any(is_ref(m) for m in axes.models or []):
        return axes
    out = []
    for i, m in enumerate(axes.models or []):
        try:
            out.append(canonical(m, base=path.parent))
        except ValueError as exc:
            raise GridError(path, str(exc), field=field_path(("models", i), prefix)) from None
    return axes.model_copy(update={"models": out})


def _check_model_ref(path: Path, field: str, name: str) -> None:
    """An ``hf:``/``path:`` model: well formed, and a ``path:`` folder holds a config.json
    (the weights are hashed when the model is loaded; a hub model is looked up then)."""
    try:
        ref = parse(name, base=path.parent)
    except ValueError as exc:
        raise GridError(path, str(exc), field=field) from None
    if ref.kind == "path" and not (ref.path / "config.json").is_file():
        raise GridError(path, f"model folder {ref.path} has no config.json (a save_pretrained "
                              "folder is expected)", field=field)


def check_names(path: Path, axes: Axes, prefix: str, names: NameCheckers) -> None:
    """Raise GridError (file, field under ``prefix``) on the first name or size that is wrong."""
    known = names.models()
    for i, m in enumerate(axes.models or []):
        if is_ref(m):
            _check_model_ref(path, field_path(("models", i), prefix), m)
        else:
            _check_name(path, field_path(("models", i), prefix), m, "model", known)
    known = names.editors()
    for i, e in enumerate(axes.editors or []):
        _check_name(path, field_path(("editors", i), prefix), e, "editor", known)
    for e in (axes.hparams or {}):
        if e not in (axes.editors or []):
            raise GridError(path, f"overrides for editor {e!r}, which is not in editors",
                            field=field_path(("hparams", e), prefix))
    for axis in ("trajectories", "variants"):
        plugins = [(i, r) for i, r in enumerate(getattr(axes, axis) or []) if r.kind == "plugin"]
        for i, r in plugins:
            known = names.restraints()
            if r.name not in known:  # no plugin restraint installed is an error too
                raise GridError(path, str(UnknownName("restraint", r.name, known)),
                                field=field_path((axis, i, "name"), prefix))
    known = names.datasets()
    for i, d in enumerate(axes.datasets or []):
        if d.path is not None:  # a data file: checked when it was resolved (grid_data)
            continue
        _check_name(path, field_path(("datasets", i, "name"), prefix), d.name, "dataset", known)
        size = names.dataset_size(d.name, d.split)
        if size is not None and axes.n_edits and d.offset + axes.n_edits > size:
            raise GridError(path, f"{d.name}:{d.split} has {size} usable records; offset "
                            f"{d.offset} + n_edits {axes.n_edits} needs more",
                            field=field_path(("n_edits",), prefix))
    ev = axes.evaluation or EvalSpec()
    known = names.tasks()
    for i, t in enumerate(ev.tasks):
        _check_name(path, field_path(("evaluation", "tasks", i, "name"), prefix), t.name, "task",
                    known)
    known = names.editing_metrics()
    for i, m in enumerate(ev.editing_metrics):
        _check_name(path, field_path(("evaluation", "editing_metrics", i), prefix), m,
                    "editing metric", known)
    n = axes.n_edits or 0
    for i, c in enumerate(axes.checkpoints or []):
        if c > n:
            raise GridError(path, f"checkpoint {c} exceeds n_edits {n}",
                            field=field_path(("checkpoints", i), prefix))
    if names.check_hparams:
        _check_hparams(path, axes, prefix)


def _check_hparams(path: Path, axes: Axes, prefix: str) -> None:
    from editors.hparams import HPARAMS_SCHEMAS, load_hparams

    for e in axes.editors or []:
        if e not in HPARAMS_SCHEMAS:
            continue
        overrides = (axes.hparams or {}).get(e) or {}
        for m in axes.models or []:
            try:
                load_hparams(e, m, overrides)
            except DataError as exc:
                field = field_path(("hparams", e) + ((exc.field,) if exc.field else ()), prefix)
                raise GridError(path, f"editor {e!r} on model {m!r}: {exc}", field=field) from None
