"""Frozen, hashable run specifications.

A :class:`CellSpec` fixes everything that decides a cell's results: model, editor and its
hyperparameter overrides, dataset slice, trajectory restraint, seed, batch size, dtype, the
checkpoints, the evaluation variants and the evaluation protocol. Its :meth:`CellSpec.spec_hash`
(sha256 of the canonical JSON of every field) names the cell's working and output folders, so
two cells share a folder exactly when they would produce the same records.

What does not change results (where checkpoints are saved, how often state is written, the
device) is a run option, not part of the spec (see :mod:`benchmark.runner`).

Restraints come in two roles (docs/methods.md, restraints):

- trajectory restraints change later edits: ``none``, ``rect`` (per edit, against the
  weight just before it) and ``prune`` with ``mode: online``;
- evaluation variants are applied to a checkpoint's accumulated update for evaluation only:
  ``none`` and ``prune`` with ``mode: posthoc``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from benchmark import SUITE_VERSION
from benchmark.core import io
from benchmark.core.modelref import model_slug

#: Version of the spec layout itself (bump when a field changes meaning).
SPEC_VERSION = 1

_FROZEN = ConfigDict(extra="forbid", frozen=True)

PruneAlpha = Literal["e", "2", "1.5", "1.2", "linear"]


class _Frozen(BaseModel):
    model_config = _FROZEN

    def canonical(self) -> dict[str, Any]:
        """JSON-able dict of every field (the input of the hash)."""
        return self.model_dump(mode="json")

    def __hash__(self) -> int:  # dict-valued fields make pydantic's default unhashable
        return hash(io.sha256_json(self.canonical()))


# --------------------------------------------------------------------------- restraints
class NoRestraint(_Frozen):
    kind: Literal["none"] = "none"

    @property
    def label(self) -> str:
        return "none"


class RectSpec(_Frozen):
    """RECT (docs/methods.md, RECT): keep the top ``keep`` fraction of relative changes per edit."""

    kind: Literal["rect"] = "rect"
    keep: float = Field(0.4, gt=0.0, le=1.0)
    eps: float = Field(1e-8, gt=0.0)

    @property
    def label(self) -> str:
        return f"rect-{self.keep:g}"


class PruneSpec(_Frozen):
    """PRUNE (docs/methods.md, PRUNE). ``variant``: ``standard`` gives W0 + F(ΔW); ``double_add``
    reproduces the AlphaEdit/NSE-repository baseline W0 + ΔW + F(ΔW) (never a default)."""

    kind: Literal["prune"] = "prune"
    alpha: PruneAlpha = "e"
    mode: Literal["posthoc", "online"] = "posthoc"
    variant: Literal["standard", "double_add"] = "standard"

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha_str(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"{v:g}"
        return v

    @property
    def label(self) -> str:
        label = f"prune-{self.alpha}"
        if self.mode == "online":
            label += "-online"
        if self.variant != "standard":
            label += f"-{self.variant}"
        return label


class PluginRestraint(_Frozen):
    """A restraint from an installed package (entry point group ``seqedit.restraints``,
    docs/extending.md): ``name`` is its entry point, ``params`` its keyword arguments. It is a
    trajectory restraint or an evaluation variant according to the methods it implements."""

    kind: Literal["plugin"] = "plugin"
    name: SafeName
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}-{io.sha256_json(self.params)[:8]}" if self.params else self.name


Restraint = Annotated[NoRestraint | RectSpec | PruneSpec | PluginRestraint,
                      Field(discriminator="kind")]


def _restraint_shorthand(v: Any) -> Any:
    """``"none"``, ``"rect"``, ``"prune"`` stand for ``{kind: ...}`` with defaults; any other
    name for a plugin restraint ``{kind: plugin, name: ...}``."""
    if isinstance(v, str):
        return {"kind": v} if v in ("none", "rect", "prune") else {"kind": "plugin", "name": v}
    return v


# --------------------------------------------------------------------------- parts
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _safe_name(name: str) -> str:
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a safe name: use letters, digits, '_', '.' and '-', "
                         "starting with a letter or digit (it names folders)")
    return name


#: A name that becomes part of a path (grid, data set, split): no separators, no leading dot.
SafeName = Annotated[str, AfterValidator(_safe_name)]


#: short names of the record formats a data file of one's own may have (``format:``)
FILE_FORMATS = {"counterfact": "counterfact-easyedit", "zsre": "zsre-mend", "mquake": "mquake"}


class DatasetSpec(_Frozen):
    """Which edit requests, in which order: records ``offset .. offset + n_edits`` of a split
    of a named data set (``tasks/datasets/``), or of a file of one's own (``path``, ``format``:
    a name of :data:`FILE_FORMATS` or a parser name, ``sha256`` of its content). A file's
    ``name`` defaults to its stem and its ``split`` to ``file``; ``path`` is absolute (a grid
    resolves it against the grid file's folder). The file fields are left out of the hash
    input when unset, so named data sets keep their cells' hashes.

    zsRE data (the ``zsre`` family, or a file of format ``zsre-mend``) carries its reading:
    ``zsre_target`` (``answers``: edit to ``answers[0]``, or ``alt``) and ``zsre_locality``
    (``loc?``: ``loc + "?"``, or ``loc``); unset, they take ROME's and MEMIT's released
    reading (``answers``, ``loc?``) and are recorded with the cell. Other data sets take
    neither (and their hashes do not change)."""

    name: SafeName
    split: SafeName = "edit"
    offset: int = Field(0, ge=0)
    path: str | None = None
    format: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    zsre_target: Literal["answers", "alt"] | None = None
    zsre_locality: Literal["loc?", "loc"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _zsre_defaults(cls, v: Any) -> Any:
        if isinstance(v, dict) and (v.get("name") == "zsre" or FILE_FORMATS.get(
                str(v.get("format")), v.get("format")) == "zsre-mend"):
            v = {**v, "zsre_target": v.get("zsre_target") or "answers",
                 "zsre_locality": v.get("zsre_locality") or "loc?"}
        return v

    @model_validator(mode="before")
    @classmethod
    def _file_defaults(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("path") is not None:
            v = dict(v)
            v.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(v["path"])).stem) or "file")
            v.setdefault("split", "file")
            fmt = v.get("format")
            v["format"] = FILE_FORMATS.get(fmt, fmt) if isinstance(fmt, str) else fmt
        return v

    @model_validator(mode="after")
    def _file_fields(self) -> DatasetSpec:
        if self.path is None and (self.format is not None or self.sha256 is not None):
            raise ValueError("format and sha256 describe a data file: give path too")
        if self.path is not None and self.format is None:
            raise ValueError(f"format: required with path (one of {', '.join(FILE_FORMATS)})")
        if (self.zsre_target or self.zsre_locality) and not (
                self.name == "zsre" or self.format == "zsre-mend"):
            raise ValueError("zsre_target and zsre_locality apply only to zsRE data (data set "
                             "zsre, or a file of format zsre)")
        return self

    def reading(self) -> dict[str, str]:
        """The reading options of the loaders (:func:`benchmark.data.loaders.load_records`)."""
        return {k: v for k, v in (("zsre_target", self.zsre_target),
                                  ("zsre_locality", self.zsre_locality)) if v is not None}

    @model_serializer(mode="wrap")
    def _drop_unset_file(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key in ("path", "format", "sha256", "zsre_target", "zsre_locality"):
            if data.get(key, 0) is None:
                del data[key]
        return data


class TaskSpec(_Frozen):
    """A general-ability task and how many of its items are evaluated (``None``: all)."""

    name: str
    limit: int | None = Field(None, gt=0)


EvalTiming = Literal["each", "first-n", "final"]


class GenerationSpec(_Frozen):
    """The rule of generation-based editing success (docs/methods.md): greedy continuation
    of the prompt, cut at the first ``stop`` string or after ``max_new_tokens`` tokens, a
    success when the normalised continuation begins with (``prefix``) or contains as whole
    words (``contains``) the normalised target."""

    max_new_tokens: int = Field(16, gt=0)
    stop: tuple[str, ...] = ("\n",)
    match: Literal["prefix", "contains"] = "prefix"


class FluencySpec(_Frozen):
    """How fluency scores a generation (docs/methods.md, fluency): the text scored
    (``prompt+continuation`` as ROME's released code, or the ``continuation`` alone) and
    whether words are lower-cased (ROME: no)."""

    scored: Literal["prompt+continuation", "continuation"] = "prompt+continuation"
    lowercase: bool = False

    def describe(self) -> str:
        return f"sampled;top-k5;100tok;{self.scored};{'lower' if self.lowercase else 'case'}"


class EvalSpec(_Frozen):
    """The evaluation protocol of a cell (docs/methods.md, protocols: evaluation timing).

    - ``first-n``: at checkpoint n, the first n edited facts on the model after n edits (PRUNE).
    - ``final``: editing metrics only at the last checkpoint, over every fact of the
      trajectory (AlphaEdit/NSE); general abilities at every checkpoint.
    - ``each``: every fact scored right after its own edit on the unrestrained trajectory;
      checkpoint n reports the mean over the first n facts.
    At checkpoint 0 the editing metrics score every fact of the trajectory on the unedited model.
    """

    timing: EvalTiming = "first-n"

    editing_metrics: tuple[str, ...] = ("efficacy", "generalization", "locality")
    tasks: tuple[TaskSpec, ...] = ()
    batch_size: int = Field(16, gt=0)
    spectrum: bool = True
    chat_template: bool = False
    generation: GenerationSpec = GenerationSpec()
    #: None: ROME's released form (FluencySpec()); left out of the hash input when None
    fluency: FluencySpec | None = None

    def fluency_form(self) -> FluencySpec:
        return self.fluency or FluencySpec()

    @model_serializer(mode="wrap")
    def _drop_unset_fluency(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("fluency", 0) is None:
            del data["fluency"]
        return data


Dtype = Literal["float32", "float64", "bfloat16", "float16"]


class CellSpec(_Frozen):
    """One trajectory: everything that decides its records."""

    spec_version: int = SPEC_VERSION
    suite_version: str = SUITE_VERSION
    model: str
    editor: str
    hparams: dict[str, Any] = Field(default_factory=dict)  # overrides of the editor's YAML
    dataset: DatasetSpec
    n_edits: int = Field(gt=0)
    batch_size: int = Field(1, gt=0)
    checkpoints: tuple[int, ...]
    trajectory: Restraint = NoRestraint()
    variants: tuple[Restraint, ...] = (NoRestraint(),)
    evaluation: EvalSpec = EvalSpec()
    seed: int = Field(0, ge=0)
    dtype: Dtype = "float32"

    @field_validator("trajectory", mode="before")
    @classmethod
    def _traj_short(cls, v: Any) -> Any:
        return _restraint_shorthand(v)

    @field_validator("variants", mode="before")
    @classmethod
    def _var_short(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [_restraint_shorthand(x) for x in v]
        return v

    @model_validator(mode="after")
    def _check(self) -> CellSpec:
        cps = self.checkpoints
        if not cps:
            raise ValueError("checkpoints: at least one checkpoint is needed")
        if list(cps) != sorted(set(cps)):
            raise ValueError(f"checkpoints: must be strictly increasing, got {list(cps)}")
        if cps[0] < 0:
            raise ValueError("checkpoints: must be >= 0")
        if cps[-1] != self.n_edits:
            raise ValueError(
                f"checkpoints: the last checkpoint ({cps[-1]}) must equal n_edits ({self.n_edits})")
        for c in cps:
            if c % self.batch_size and c != self.n_edits:
                raise ValueError(
                    f"checkpoints: {c} is not a multiple of batch_size {self.batch_size}")
        if isinstance(self.trajectory, PruneSpec) and self.trajectory.mode != "online":
            raise ValueError("trajectory: a PRUNE trajectory restraint must have mode 'online' "
                             "(posthoc PRUNE is an evaluation variant)")
        labels = [v.label for v in self.variants]
        if not labels:
            raise ValueError("variants: at least one evaluation variant is needed")
        if len(set(labels)) != len(labels):
            raise ValueError(f"variants: duplicate variants {labels}")
        for v in self.variants:
            if isinstance(v, RectSpec):
                raise ValueError("variants: RECT acts per edit and is a trajectory restraint, "
                                 "not an evaluation variant")
            if isinstance(v, PruneSpec) and v.mode != "posthoc":
                raise ValueError("variants: PRUNE evaluation variants must have mode 'posthoc'")
        if not isinstance(self.variants[0], NoRestraint):
            raise ValueError("variants: the first variant must be 'none' (the trajectory's own model)")
        for k, v in self.hparams.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"hparams.{k}: must be finite")
        return self

    # ----------------------------------------------------------------- identity
    def spec_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of every field."""
        return io.sha256_json(self.canonical())

    @property
    def short_hash(self) -> str:
        return self.spec_hash()[:12]

    @property
    def slug(self) -> str:
        return (f"{model_slug(self.model)}_{self.editor}_{self.dataset.name}_{self.trajectory.label}"
                f"_b{self.batch_size}_s{self.seed}")

    @property
    def folder(self) -> str:
        """The cell's folder name: a readable slug and the spec hash."""
        return f"{self.slug}-{self.short_hash}"

    def describe(self) -> dict[str, Any]:
        """The columns that identify a cell in records and tables."""
        return {
            "cell": self.short_hash,
            "model": self.model,
            "editor": self.editor,
            "dataset": f"{self.dataset.name}:{self.dataset.split}",
            "trajectory": self.trajectory.label,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "timing": self.evaluation.timing,
        }
