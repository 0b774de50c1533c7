"""The pieces a trajectory is built from, behind small callables (injectable in tests).

The cell (:mod:`benchmark.cell`) never imports editors, restraints or
evaluators directly: it receives a :class:`Components` whose defaults adapt the real
modules (``editors``, ``prune``, ``benchmark.data``, ``benchmark.evaluation``). Tests
swap in fakes (a counting editor, cheap evaluators, a kill hook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.core.registry import Registry
from benchmark.evaluation import MetricValue
from benchmark.spec import DatasetSpec, NoRestraint, PluginRestraint, PruneSpec, RectSpec, TaskSpec
from editors.base import Editor
from prune.linalg import Update

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
           "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


@dataclass(frozen=True)
class EditorBundle:
    """An editor plus what provenance records about its configuration."""

    editor: Editor
    hparams: dict[str, Any]
    hparams_hash: str | None
    stats_keys: tuple[dict[str, Any], ...] = ()


# ------------------------------------------------------------------ default adapters
def default_load_model(name: str, device: str, dtype: str):
    from benchmark import models

    return models.load(name, device=device, dtype=torch_dtype(dtype))


def default_load_requests(dataset: DatasetSpec, n: int) -> list:
    from benchmark.data.loaders import first_requests

    if dataset.path is not None:
        from benchmark.grid_data import load_file_requests

        return load_file_requests(dataset, n)
    return first_requests(dataset.name, dataset.split, n, offset=dataset.offset, **dataset.reading())


def default_data_identity(dataset: DatasetSpec) -> dict[str, Any]:
    """The data file the requests come from and its sha256 (from the verified manifest)."""
    if dataset.path is not None:
        from benchmark.grid_data import file_identity

        return file_identity(dataset)
    try:
        from benchmark.data import loaders

        fam = getattr(loaders, "FAMILIES", {})
        name = fam.get(dataset.name, {}).get(dataset.split, dataset.name) if dataset.name in fam \
            else dataset.name
        from benchmark.data import get_manifest

        m = get_manifest(name)
        return {"dataset": dataset.name, "split": dataset.split, "manifest": name,
                "path": str(m.path), "sha256": m.sha256, "offset": dataset.offset}
    except Exception as exc:  # provenance must not fail the run; say what is missing
        return {"dataset": dataset.name, "split": dataset.split, "offset": dataset.offset,
                "sha256": None, "note": f"no manifest: {exc}"}


def default_create_editor(method: str, loaded, overrides: Mapping[str, Any], *,
                          progress: bool = True) -> EditorBundle:
    import editors
    from editors.hparams import hparams_hash, load_hparams

    hp = load_hparams(method, loaded.entry.name, dict(overrides) or None)
    editor = editors.create_editor(method, loaded, hp, progress=progress)
    return EditorBundle(editor, hp.model_dump(mode="json"), hparams_hash(hp),
                        _stats_keys(loaded, hp))


def default_hparams_hash(spec) -> str | None:
    """sha256 of the editor settings a cell of ``spec`` runs with (the model's hparams file
    with the spec's overrides, as :func:`default_create_editor` reads them), without loading
    the model; None where they cannot be read here (an unresolvable model reference, an
    editor without a file)."""
    from benchmark.core.errors import DataError
    from benchmark.core.modelref import is_ref
    from editors.hparams import hparams_hash, load_hparams

    try:
        if is_ref(spec.model):
            from benchmark.models.refs import resolve

            name = resolve(spec.model).name
        else:
            name = spec.model
        return hparams_hash(load_hparams(spec.editor, name, dict(spec.hparams) or None))
    except (DataError, KeyError, ValueError, OSError):
        return None


def _stats_keys(loaded, hp) -> tuple[dict[str, Any], ...]:
    """The layer-statistics cache keys (every input of each C0) the editor reads."""
    from benchmark.core import io
    from editors.stats import stats_key

    out = []
    for layer in (hp.layers if hasattr(hp, "stats") else ()):  # MEND reads no statistics
        key = stats_key(loaded, int(layer), hp.stats)
        out.append({"layer": int(layer), "sha256": io.sha256_json(key), "key": key})
    return tuple(out)


def default_evaluate_editing(loaded, requests: Sequence, metrics: Sequence[str], batch_size: int,
                             generation: dict | None = None,
                             fluency: dict | None = None) -> dict[str, MetricValue]:
    """``generation``, ``fluency``: the cell's generation rule and fluency form
    (``evaluation.generation`` and ``evaluation.fluency`` of the spec)."""
    from benchmark.evaluation.editing import evaluate_editing
    from benchmark.evaluation.generation import GenerationRule

    rule = GenerationRule.from_dict(generation) if generation is not None else None
    return evaluate_editing(loaded, list(requests), metrics=tuple(metrics), batch_size=batch_size,
                            generation=rule, fluency_form=fluency)


def default_evaluate_tasks(loaded, tasks: Sequence[TaskSpec], batch_size: int,
                           chat_template: bool = False) -> dict[str, dict[str, MetricValue]]:
    from benchmark.evaluation.general import evaluate_tasks

    limits = {t.name: t.limit for t in tasks if t.limit is not None}
    return evaluate_tasks(loaded, [t.name for t in tasks], limit=limits or None,
                          batch_size=batch_size, apply_chat_template=chat_template,
                          log_samples=False)


def default_spectrum(weight: torch.Tensor, delta: Update | None) -> dict[str, float | int | None]:
    """σ_max, σ_min, κ of ``weight`` and σ_max, rank, ‖·‖_F of ``delta`` (both ``out x in``)."""
    from prune import spectrum_record

    rec = spectrum_record(weight, delta)
    out = {"sigma_max_w": rec["sigma_max"], "sigma_min_w": rec["sigma_min"], "kappa_w": rec["kappa"]}
    if delta is not None:
        out.update(sigma_max_dw=rec["delta_sigma_max"], rank_dw=rec["delta_rank"],
                   fro_dw=rec["delta_fro"])
    return out


#: Restraints that installed packages declare under the entry point group
#: ``seqedit.restraints``: name -> class taking the grid's ``params`` as keyword arguments,
#: with ``mask_edit(w_prev, delta)`` (a trajectory restraint, per edit) and/or
#: ``for_evaluation(w0, acc, name)`` (an evaluation variant); see docs/extending.md.
RESTRAINTS: Registry[Any] = Registry("restraint", entry_points="seqedit.restraints")


class Restrainer:
    """Adapter from a restraint spec to the pure functions of :mod:`prune` (or a plugin's)."""

    def __init__(self, spec: NoRestraint | RectSpec | PruneSpec | PluginRestraint):
        self.spec = spec
        self._impl = None
        if isinstance(spec, PluginRestraint):
            self._impl = RESTRAINTS.get(spec.name)(**spec.params)
        elif isinstance(spec, RectSpec):
            from prune import RECT

            self._impl = RECT(keep=spec.keep, eps=spec.eps)
        elif isinstance(spec, PruneSpec):
            from prune import PRUNE

            alpha: Any = spec.alpha if spec.alpha in ("e", "linear") else float(spec.alpha)
            self._impl = PRUNE(alpha=alpha, mode=spec.mode, variant=spec.variant)

    # trajectory role ----------------------------------------------------------
    def mask_edit(self, w_prev: torch.Tensor, delta: Update) -> Update:
        """RECT: this edit's masked (dense) update; others: unchanged."""
        if isinstance(self.spec, RectSpec):
            return self._impl.restrain(w_prev, delta)
        if isinstance(self.spec, PluginRestraint) and hasattr(self._impl, "mask_edit"):
            return self._impl.mask_edit(w_prev, delta)
        return delta

    def after_edit(self, w0: torch.Tensor, acc: Update | None, delta: Update, name: str) -> Update:
        """The accumulated update after this edit (PRUNE online restrains it)."""
        if isinstance(self.spec, PruneSpec) and self.spec.mode == "online":
            return self._impl.after_edit(w0, acc, delta, name=name)
        from prune import add_updates

        return add_updates(acc, delta)

    @property
    def sets_weight_from_accumulated(self) -> bool:
        """True when the trajectory's weight is W0 + accumulated (PRUNE online), rather than
        the running sum W_prev + this edit's update."""
        return isinstance(self.spec, PruneSpec) and self.spec.mode == "online"

    # evaluation role ----------------------------------------------------------
    def for_evaluation(self, w0: torch.Tensor, acc: Update, name: str) -> Update:
        if isinstance(self.spec, PruneSpec):
            return self._impl.restrain(w0, acc, name=name)
        if isinstance(self.spec, PluginRestraint) and hasattr(self._impl, "for_evaluation"):
            return self._impl.for_evaluation(w0, acc, name)
        return acc


def default_restrainer(spec) -> Restrainer:
    return Restrainer(spec)


@dataclass(frozen=True)
class Components:
    load_model: Callable[..., Any] = default_load_model
    load_requests: Callable[..., list] = default_load_requests
    data_identity: Callable[..., dict] = default_data_identity
    create_editor: Callable[..., EditorBundle] = default_create_editor
    hparams_hash: Callable[..., str | None] = default_hparams_hash
    evaluate_editing: Callable[..., dict[str, MetricValue]] = default_evaluate_editing
    evaluate_tasks: Callable[..., dict[str, dict[str, MetricValue]]] = default_evaluate_tasks
    spectrum: Callable[..., dict] = default_spectrum
    restrainer: Callable[..., Restrainer] = default_restrainer


@dataclass
class Hooks:
    """Test hooks: ``after_edit(cursor)`` runs after each applied batch (a test raises from
    it to simulate a kill); ``on_compute(cell, batch)`` counts editor calls;
    ``on_publish(step)`` runs at each step of publishing (``publish_start``,
    ``publish_staged``, ``publish_swapping``, ``published``)."""

    after_edit: Callable[[int], None] | None = None
    on_compute: Callable[[str, Sequence], None] | None = None
    on_publish: Callable[[str], None] | None = None
