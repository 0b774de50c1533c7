"""Result records, cell statuses and provenance (schema documented in docs/results-schema.md).

Layout of a published grid: ``results/<SUITE_VERSION>/<grid>/``

- ``records.jsonl`` -- the source of truth: one :class:`Record` per
  cell × checkpoint × variant × metric (spectrum figures included), sorted.
- ``cells.jsonl`` -- one :class:`CellStatus` per cell: its spec, status and failure reason.
- ``provenance/<cell folder>.json`` -- one :class:`Provenance` per cell.
- ``tables/records.csv`` (the records flattened), ``tables/pivot.csv`` (value per metric
  against the number of edits) and ``tables/summary.md`` (headline Markdown tables), all
  derived from the records (:mod:`benchmark.tables`).
- ``plots/*.png`` (:mod:`benchmark.report`), ``grid.yaml`` (the grid file that ran).

Records hold only what the computation determines (no wall times), so the same grid and
seed give byte-identical records whether or not the run was interrupted and resumed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from benchmark import SUITE_VERSION
from benchmark.core import io, settings
from benchmark.core.errors import DataError

#: Version of the records/provenance layout (docs/results-schema.md). Bump on any change.
#: 2: records name their ``scorer`` and ``protocol``; per-item outputs in ``samples.jsonl``.
RECORDS_SCHEMA_VERSION = 2

RecordKind = Literal["editing", "general", "spectrum"]

#: Columns that identify what a value measures (everything but value/n/stderr).
KEY_FIELDS = ("grid", "model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing",
              "n_edits", "variant", "kind", "task", "metric")


def _known_schema(v: int) -> int:
    if v != RECORDS_SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {v}; this suite reads version "
                         f"{RECORDS_SCHEMA_VERSION} (a file of another suite release?)")
    return v


SchemaVersion = Annotated[int, AfterValidator(_known_schema)]


class Record(BaseModel):
    """One measured value. ``task`` is the editing dataset (kind ``editing``), the
    general-ability task (``general``) or the edited matrix (``spectrum``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: SchemaVersion = RECORDS_SCHEMA_VERSION
    suite_version: str = SUITE_VERSION
    grid: str
    cell: str
    model: str
    editor: str
    dataset: str
    trajectory: str
    batch_size: int
    seed: int
    timing: str
    n_edits: int
    variant: str
    kind: RecordKind
    task: str
    metric: str
    value: float | None  # None when the value is not finite (e.g. a mean over no items)
    n: int
    stderr: float | None = None
    #: how each item was scored: ``teacher-forced`` (probability comparisons),
    #: ``greedy;...`` (generation rule), ``lm-eval``, ``svd`` (spectrum figures)
    scorer: str
    #: the evaluation protocol's settings that decide the number besides the columns above
    #: (data-set format and forms, task limit and prompt format); equal strings = comparable
    protocol: str

    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    @property
    def metric_path(self) -> str:
        """``kind/task/metric``: what tolerance patterns and plots match against."""
        return f"{self.kind}/{self.task}/{self.metric}"


def finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def sort_records(records: Iterable[Record]) -> list[Record]:
    def k(r: Record):
        return (r.grid, r.model, r.editor, r.dataset, r.trajectory, r.batch_size, r.seed,
                r.timing, r.cell, r.n_edits, r.variant, r.kind, r.task, r.metric)

    return sorted(records, key=k)


def records_to_jsonl(records: Iterable[Record]) -> str:
    return "".join(json.dumps(r.model_dump(mode="json"), sort_keys=True) + "\n" for r in records)


def write_records(path: Path, records: Iterable[Record]) -> None:
    io.write_text(path, records_to_jsonl(records))


M = TypeVar("M", bound=BaseModel)


def _read_jsonl(path: Path, model: type[M], what: str) -> list[M]:
    """Read a JSONL of ``model`` rows; a bad line raises DataError naming file, line and field."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(path, f"cannot read {what}: {exc.strerror or exc}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(model.model_validate_json(line))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise DataError(path, err["msg"].removeprefix("Value error, "), record=f"line {i}",
                            field=field) from None
    return out


def read_records(path: Path) -> list[Record]:
    """Read a records JSONL; a bad line (an unknown ``schema_version`` included) raises
    DataError naming file, line and field."""
    return _read_jsonl(path, Record, "records")


# --------------------------------------------------------------------------- samples
class SampleRow(BaseModel):
    """Per-item outputs of one record's metric (``samples.jsonl``): item ``ids[i]`` scored
    ``scores[i]`` (weight ``weights[i]`` for ratio statistics); the record's value is
    ``statistic`` over them (:func:`benchmark.evaluation.statistic_value`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: SchemaVersion = RECORDS_SCHEMA_VERSION
    cell: str
    n_edits: int
    variant: str
    kind: RecordKind
    task: str
    metric: str
    statistic: str
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    weights: tuple[float, ...] | None = None

    def key(self) -> tuple:
        return (self.cell, self.n_edits, self.variant, self.kind, self.task, self.metric)


def sort_samples(rows: Iterable[SampleRow]) -> list[SampleRow]:
    return sorted(rows, key=SampleRow.key)


def samples_to_jsonl(rows: Iterable[SampleRow]) -> str:
    return "".join(json.dumps(r.model_dump(mode="json"), sort_keys=True) + "\n" for r in rows)


def write_samples(path: Path, rows: Iterable[SampleRow]) -> None:
    io.write_text(path, samples_to_jsonl(rows))


def read_samples(path: Path) -> list[SampleRow]:
    """Read a ``samples.jsonl``; errors name file, line and field like :func:`read_records`."""
    return _read_jsonl(path, SampleRow, "samples")


# --------------------------------------------------------------------------- cells
CellStatusName = Literal["completed", "failed", "pending"]


class CellStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: SchemaVersion = RECORDS_SCHEMA_VERSION
    cell: str
    folder: str
    status: CellStatusName
    reason: str | None = None
    spec: dict[str, Any]


def cells_to_jsonl(statuses: Iterable[CellStatus]) -> str:
    return "".join(json.dumps(s.model_dump(mode="json"), sort_keys=True) + "\n" for s in statuses)


def read_cells(path: Path) -> list[CellStatus]:
    """Read a ``cells.jsonl``; errors name file, line and field like :func:`read_records`."""
    return _read_jsonl(path, CellStatus, "cell statuses")


# --------------------------------------------------------------------------- provenance
class Provenance(BaseModel):
    """Where a cell's numbers came from. Everything needed to say whether two runs are
    comparable; wall times and memory are measurements, not inputs."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RECORDS_SCHEMA_VERSION
    suite_version: str = SUITE_VERSION
    cell: str
    spec_hash: str
    spec: dict[str, Any]
    git: dict[str, Any]
    lock_file: dict[str, Any]
    packages: dict[str, str]
    model_identity: dict[str, Any]
    data: dict[str, Any]
    stats_cache_keys: list[Any] = []
    hparams: dict[str, Any] = {}
    hparams_hash: str | None = None
    seeds: dict[str, int]
    hardware: dict[str, Any]
    wall_seconds: dict[str, float]
    peak_memory_bytes: dict[str, int]
    sessions: int = 1  # how many processes ran this cell (1 + number of resumes)
    # the git commit of each session, oldest first; more than one distinct entry means the
    # records were made by more than one code version (empty in files written before it)
    code_versions: list[str | None] = []
    device: str = "cpu"
    evaluation: dict[str, Any] = {}  # timing, lm-eval task hashes of the evaluated items


PACKAGES = ("torch", "transformers", "lm_eval", "numpy", "pydantic", "datasets", "safetensors",
            "tokenizers", "rouge_score", "gguf", "matplotlib", "seqedit-bench")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for n in names:
        try:
            out[n] = md.version(n.replace("_", "-"))
        except md.PackageNotFoundError:
            try:
                out[n] = md.version(n)
            except md.PackageNotFoundError:
                out[n] = "not installed"
    return out


def git_info(repo: Path = settings.REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                               timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def lock_file_info(profile: str = "cpu") -> dict[str, Any]:
    path = settings.REPO_ROOT / "constraints" / f"{profile}.txt"
    if not path.is_file():
        return {"profile": profile, "path": str(path.relative_to(settings.REPO_ROOT)), "sha256": None}
    return {"profile": profile, "path": str(path.relative_to(settings.REPO_ROOT)),
            "sha256": io.sha256_file(path)}


def hardware_info(device: str = "cpu") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def peak_memory(device: str = "cpu") -> dict[str, int]:
    """Peak resident memory of this process so far (bytes), and of the GPU if used."""
    out = {"process_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        out["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated(torch.device(device)))
    return out
