"""The grid file schema (pydantic models) and how its fields are named in errors.

:mod:`benchmark.grid` documents the file format and loads files;
:mod:`benchmark.grid_checks` checks names against the registries;
:mod:`benchmark.grid_cells` expands a block into cells.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from benchmark.core.errors import DataError
from benchmark.spec import (
    DatasetSpec,
    Dtype,
    EvalSpec,
    Restraint,
    SafeName,
    _restraint_shorthand,
)

GRID_SCHEMA_VERSION = 1


class GridError(DataError):
    """A grid file that cannot be used; names the file and the field."""


class Requirements(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    network: bool = False
    gpu: bool = False


class Resources(BaseModel):
    """What each job asks for when the grid is fanned out (``seqedit grid --executor``):
    one job per cell. The CLI flags of the same names override these."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    partition: str | None = None  # Slurm partition (None: the cluster's default)
    gpus: int | None = Field(None, ge=0)  # per job; None: 1 if requires.gpu, else 0
    cpus: int | None = Field(None, gt=0)  # per job; None: run.threads, else 1
    mem_gb: float | None = Field(None, gt=0)  # per job; None: the cluster's default
    time_min: int = Field(240, gt=0)  # per attempt; a timed-out job requeues and resumes
    parallel: int | None = Field(None, gt=0)  # jobs at once (None: run.jobs locally, all on Slurm)
    slurm: dict[str, str | int] = Field(default_factory=dict)  # more sbatch options (account, qos, ...)


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
    #: per job, when the grid is fanned out over local processes or Slurm
    resources: Resources = Resources()


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


#: Axes every block must have, from the top level or from the block itself.
REQUIRED_AXES = ("models", "editors", "datasets", "n_edits", "checkpoints")


class GridFile(Axes):
    schema_version: int
    name: SafeName
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


def field_path(loc: tuple, prefix: str = "") -> str:
    """``("datasets", 0, "name")`` under ``blocks[1]`` -> ``blocks[1].datasets[0].name``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
