"""Typed hyperparameters for every editing method, one YAML per method x model.

Files live at ``editors/hparams/<method>/<model>.yaml`` (``method`` is the registry name:
``rome``, ``memit``, ``memit-seq``, ``alphaedit``, ``nse``). Unknown keys are rejected
(pydantic ``extra="forbid"``); a bad file raises :class:`benchmark.core.errors.DataError`
naming the file and the field.

Public API (stable; used by every editor):

- :class:`TemplateSpec`  -- context templates (bare prompt + generated prefixes)
- :class:`TargetSpec`    -- the target-vector optimisation (v_lr, steps, clamp, KL, decay)
- :class:`StatsSpec`     -- layer second-moment statistics (corpus, samples, dtype, caps)
- :class:`ROMEHparams`, :class:`BatchHparams` (the batch editors' common fields),
  :class:`MEMITHparams`, :class:`SequentialMEMITHparams`, :class:`AlphaEditHparams`,
  :class:`NSEHparams`

Every editor names its edited layers ``layers`` (a list; ROME's holds exactly one).
- :data:`HPARAMS_SCHEMAS` method -> schema class
- :func:`hparams_path(method, model_name)`
- :func:`load_hparams(method, model_name, overrides=None)` -> validated model
- :func:`parse_hparams(method, data, source="<dict>")` -> validated model
- :func:`hparams_hash(hp)` -> sha256 hex of the validated values (provenance)
- :func:`check_model_layers(method, model_entry, layers)`: every layer exists in the model

``overrides`` is a nested dict merged over the file (e.g. ``{"target": {"v_lr": 0.1}}``)
or dotted keys (``{"target.v_lr": 0.1}``); the result is validated like the file.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from benchmark.core import io
from benchmark.core.arch import ModelEntry
from benchmark.core.errors import DataError
from benchmark.core.modelref import model_slug
from benchmark.core.registry import Registry
from editors.mend.hparams import MENDHparams

HPARAMS_DIR = Path(__file__).resolve().parent / "hparams"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateSpec(_Strict):
    """Context templates: the bare prompt plus ``count`` generated prefixes of ``length``
    tokens for every ``[length, count]`` pair (ROME: ``[[5, 10], [10, 10]]``; MEMIT:
    ``[[10, 5]]``). Prefixes are sampled top-k from the model starting at ``starters``
    (round robin), with an explicit seed, once per model + settings (cached)."""

    lengths: list[tuple[int, int]] = Field(default_factory=lambda: [(5, 10), (10, 10)])
    starters: list[str] = Field(default_factory=lambda: ["The", "Therefore", "Because", "I", "You"])
    top_k: int = Field(5, ge=1)
    seed: int = 0


class TargetSpec(_Strict):
    """The target-vector optimisation (docs/methods.md §2.1): Adam on a vector delta added at the
    subject's last token; loss = mean NLL of the new target over templates
    + ``kl_factor``·KL on "{subject} is a" + ``v_weight_decay``·wd(δ), the weight-decay
    term named by ``weight_decay_form``; ‖δ‖ clamped to ``clamp_norm_factor``·‖h‖; stop
    early when loss < ``early_stop_loss``."""

    v_lr: float = Field(0.5, gt=0)
    v_num_grad_steps: int = Field(20, ge=1)
    clamp_norm_factor: float = Field(4.0, gt=0)
    v_weight_decay: float = Field(0.5, ge=0)
    kl_factor: float = Field(0.0625, ge=0)
    early_stop_loss: float = Field(0.05, ge=0)
    #: Weight-decay term: "released" = ‖δ‖/‖h‖², what the released ROME, MEMIT, AlphaEdit
    #: and NSE code computes (``compute_v`` / ``compute_z``; the default); "squared" =
    #: ‖δ‖²/‖h‖², the papers' wording (docs/methods.md §2.1).
    weight_decay_form: Literal["released", "squared"] = "released"
    kl_prompt: str = "{subject} is a"


class StatsSpec(_Strict):
    """Layer second moment C0 = E[k kᵀ] of down-projection inputs over a text corpus."""

    corpus: str = "wikitext"  # id in editors.stats.CORPORA
    n_samples: int = Field(200, ge=1)  # number of text chunks (each <= context_cap tokens)
    dtype: Literal["float32", "float64"] = "float32"  # accumulation dtype
    context_cap: int | None = Field(None, ge=8)  # None: the model's ArchFacts.stats_context_cap
    batch_tokens: int = Field(4096, ge=8)  # token cap per forward batch (not part of the key)


class _EditorHparams(_Strict):
    #: Where the layer/hyperparameter choice came from (paper config, docs/layer-choice.md, ...).
    source: str
    templates: TemplateSpec = Field(default_factory=TemplateSpec)
    target: TargetSpec = Field(default_factory=TargetSpec)
    stats: StatsSpec = Field(default_factory=StatsSpec)


class ROMEHparams(_EditorHparams):
    method: Literal["rome"] = "rome"
    #: The one edited layer, as a list like every editor's ``layers``.
    layers: list[Annotated[int, Field(ge=0)]]
    #: Which key the equality constraint uses: "bare" = the key of the bare prompt
    #: (released code; exact new value for the prompt itself), "average" = the
    #: template-averaged key (the formula of docs/methods.md §2.2 with a single k).
    constraint_key: Literal["bare", "average"] = "bare"

    @field_validator("layers")
    @classmethod
    def _one_layer(cls, layers: list[int]) -> list[int]:
        if len(layers) != 1:
            raise ValueError(f"ROME edits exactly one layer: give one index, e.g. [6], not {layers}")
        return layers


class BatchHparams(_EditorHparams):
    """What every batch editor (MEMIT, sequential MEMIT, AlphaEdit, NSE) shares."""

    layers: list[int] = Field(min_length=1)
    #: How a key is averaged over the context templates: "group_mean" = the mean of the
    #: group means, one group for the bare prompt and one per ``templates.lengths`` entry,
    #: e.g. (k_bare + mean(k_prefixed))/2 (the released MEMIT/AlphaEdit/NSE ``compute_ks``;
    #: the default); "uniform" = the plain mean over all templates (ROME's rule).
    key_average: Literal["group_mean", "uniform"] = "group_mean"

    @model_validator(mode="after")
    def _ascending(self):
        if sorted(set(self.layers)) != list(self.layers):
            raise ValueError("layers must be strictly ascending")
        return self


class MEMITHparams(BatchHparams):
    method: Literal["memit", "memit-seq"] = "memit"
    #: λ: weight of C0 in the bracket (λ C0 + K Kᵀ); scale it to the model
    #: (docs/methods.md §2.6, hyperparameters per model).
    mom2_update_weight: float = Field(gt=0)


class SequentialMEMITHparams(MEMITHparams):
    method: Literal["memit-seq"] = "memit-seq"


class AlphaEditHparams(BatchHparams):
    method: Literal["alphaedit"] = "alphaedit"
    #: eigenvalue threshold for the null space of C0 (released 2e-2, paper 1e-2)
    nullspace_threshold: float = Field(2e-2, gt=0)
    #: "absolute": eigenvalue < threshold; "relative": eigenvalue < threshold * max eigenvalue;
    #: "energy": the null space holds at most this share of the total eigenvalue energy
    #: (scale-free; never leaves P = 0, see editors.solvers.NullSpaceThreshold)
    nullspace_threshold_kind: Literal["absolute", "relative", "energy"] = "absolute"
    #: β in (K_p K_pᵀ P + K₁K₁ᵀ P + β I)⁻¹ (released 10, paper 1)
    L2: float = Field(10.0, ge=0)


class NSEHparams(MEMITHparams):
    method: Literal["nse"] = "nse"
    alpha: float = Field(gt=0)  # residual lower bound: requests with ‖z - h_L‖ <= alpha are done
    upper_bound: float = Field(gt=0)  # requests with residual >= upper_bound are outliers
    neuron_fraction: float = Field(1.0, gt=0, le=1)  # p: accumulated |activation| fraction
    max_iterations: int = Field(3, ge=1)


HPARAMS_SCHEMAS: dict[str, type[_EditorHparams]] = {
    "rome": ROMEHparams,
    "memit": MEMITHparams,
    "memit-seq": SequentialMEMITHparams,
    "alphaedit": AlphaEditHparams,
    "nse": NSEHparams,
    "mend": MENDHparams,
}

AnyHparams = ROMEHparams | MEMITHparams | SequentialMEMITHparams | AlphaEditHparams | NSEHparams


#: Folders (separated by os.pathsep) searched before the package's own for
#: ``<method>/<model>.yaml``; ``seqedit hparams init`` writes files for them.
HPARAMS_ENV = "SEQEDIT_HPARAMS"


def hparams_dirs(method: str) -> list[Path]:
    """Where ``<method>/<model>.yaml`` is looked for, first match wins: the folders of
    ``$SEQEDIT_HPARAMS``, a plugin editor's ``hparams_dir``, then ``editors/hparams``."""
    dirs = [Path(d).expanduser() for d in os.environ.get(HPARAMS_ENV, "").split(os.pathsep) if d]
    plugin_dir = getattr(_plugin_editor(method), "hparams_dir", None)
    if plugin_dir is not None:
        dirs.append(Path(plugin_dir))
    return dirs + [HPARAMS_DIR]


def hparams_path(method: str, model_name: str) -> Path:
    """The hparams file of ``method`` for a model (a registry name or an ``hf:``/``path:``
    name, whose file is named by its slug): the first that exists along :func:`hparams_dirs`,
    else the package's path."""
    stem = model_slug(model_name)
    candidates = [d / method / f"{stem}.yaml" for d in hparams_dirs(method)]
    return next((c for c in candidates if c.is_file()), candidates[-1])


#: The editors that installed packages declare (entry point group ``seqedit.editors``), read
#: here for their ``hparams_schema`` and ``hparams_dir`` (``editors.EDITORS`` holds them too).
PLUGIN_EDITORS: Registry[Any] = Registry("editor", entry_points="seqedit.editors")


def _plugin_editor(method: str):
    """The editor class of a method without a built-in schema (a plugin), or None."""
    if method in HPARAMS_SCHEMAS or method not in PLUGIN_EDITORS:
        return None
    return PLUGIN_EDITORS.get(method)


def schema_for(method: str, source: str | Path = "<dict>") -> type[BaseModel]:
    """The hparams schema of ``method``: built in, or a plugin editor's ``hparams_schema``."""
    if method in HPARAMS_SCHEMAS:
        return HPARAMS_SCHEMAS[method]
    schema = getattr(_plugin_editor(method), "hparams_schema", None)
    if schema is None:
        known = sorted(set(HPARAMS_SCHEMAS) | set(PLUGIN_EDITORS.names()))
        hint = (f"plugin editor {method!r} ({PLUGIN_EDITORS.plugin_origin(method)}) has no "
                "hparams_schema" if method in PLUGIN_EDITORS else f"known: {known}")
        raise DataError(source, f"unknown editing method {method!r}; {hint}")
    return schema


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        parts = key.split(".") if isinstance(key, str) else [key]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = _merge(node[last], value)
        else:
            node[last] = value
    return out


def parse_hparams(method: str, data: dict[str, Any], source: str | Path = "<dict>"):
    """Validate ``data`` against the schema of ``method``; DataError names source and field."""
    schema = schema_for(method, source)
    if not isinstance(data, dict):
        raise DataError(source, "expected a mapping at the top level")
    data = dict(data)
    data.setdefault("method", method)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise DataError(source, f"{err['msg']}{more}", field=field) from None


def load_hparams(method: str, model_name: str, overrides: dict[str, Any] | None = None):
    """Read ``<method>/<model>.yaml`` (:func:`hparams_path`), apply ``overrides``, validate."""
    schema_for(method, HPARAMS_DIR / method)
    path = hparams_path(method, model_name)
    if not path.is_file():
        have = sorted({p.stem for d in hparams_dirs(method) for p in (d / method).glob("*.yaml")})
        raise DataError(path, f"no {method} hyperparameters for model {model_name!r}; "
                              f"available: {', '.join(have) or 'none'}; write a starting file with "
                              f"`seqedit hparams init --model {model_name} --editor {method}`")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(path, f"invalid YAML: {exc}") from None
    if overrides:
        data = _merge(data, overrides)
    return parse_hparams(method, data, source=path)


def check_model_layers(method: str, model: ModelEntry, layers: Sequence[int], *,
                       source: str | Path | None = None) -> None:
    """Every index in ``layers`` is a layer of ``model``; else a DataError naming ``source``
    (default: the method's hparams file for the model), the field ``layers``, the model and
    its layer count."""
    n = model.arch.n_layers
    bad = [layer for layer in layers if not 0 <= layer < n]
    if bad:
        raise DataError(source or hparams_path(method, model.name),
                        f"{method}: layers {bad} outside 0..{n - 1}: model {model.name} has {n} layers",
                        field="layers")


def hparams_hash(hp: BaseModel) -> str:
    """sha256 of the validated values (defaults included), for provenance."""
    return io.sha256_json(hp.model_dump(mode="json"))
