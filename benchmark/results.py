"""Result records, provenance and tables (schema documented in docs/results-schema.md).

Layout of a published grid: ``results/<SUITE_VERSION>/<grid>/``

- ``records.jsonl`` -- the source of truth: one :class:`Record` per
  cell × checkpoint × variant × metric (spectrum figures included), sorted.
- ``cells.jsonl`` -- one :class:`CellStatus` per cell: its spec, status and failure reason.
- ``provenance/<cell folder>.json`` -- one :class:`Provenance` per cell.
- ``tables/records.csv`` (the records flattened), ``tables/pivot.csv`` (value per metric
  against the number of edits) and ``tables/summary.md`` (headline Markdown tables).
- ``plots/*.png`` (:mod:`benchmark.report`), ``grid.yaml`` (the grid file that ran).

Records hold only what the computation determines (no wall times), so the same grid and
seed give byte-identical records whether or not the run was interrupted and resumed.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import platform
import resource
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark import SUITE_VERSION
from benchmark.core import io, settings
from benchmark.core.errors import DataError

#: Version of the records/provenance layout (docs/results-schema.md). Bump on any change.
RECORDS_SCHEMA_VERSION = 1

RecordKind = Literal["editing", "general", "spectrum"]

#: Columns that identify what a value measures (everything but value/n/stderr).
KEY_FIELDS = ("grid", "model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing",
              "n_edits", "variant", "kind", "task", "metric")


class Record(BaseModel):
    """One measured value. ``task`` is the editing dataset (kind ``editing``), the
    general-ability task (``general``) or the edited matrix (``spectrum``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RECORDS_SCHEMA_VERSION
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


def read_records(path: Path) -> list[Record]:
    """Read a records JSONL; a bad line raises DataError naming file, line and field."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(path, f"cannot read records: {exc}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(Record.model_validate_json(line))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise DataError(path, err["msg"], record=f"line {i}", field=field) from None
    return out


# --------------------------------------------------------------------------- cells
CellStatusName = Literal["completed", "failed", "pending"]


class CellStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = RECORDS_SCHEMA_VERSION
    cell: str
    folder: str
    status: CellStatusName
    reason: str | None = None
    spec: dict[str, Any]


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


# --------------------------------------------------------------------------- tables
def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3) else f"{x:.{digits}f}"


def records_csv(records: Sequence[Record]) -> str:
    buf = _io.StringIO()
    fields = list(Record.model_fields)
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if v is None else v) for k, v in r.model_dump(mode="json").items()})
    return buf.getvalue()


_PIVOT_ROW = ("model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing",
              "variant", "kind", "task", "metric")


def pivot(records: Sequence[Record]) -> tuple[list[int], dict[tuple, dict[int, Record]]]:
    """Rows keyed by :data:`_PIVOT_ROW`, columns the checkpoints (number of edits)."""
    cols = sorted({r.n_edits for r in records})
    rows: dict[tuple, dict[int, Record]] = defaultdict(dict)
    for r in records:
        rows[tuple(getattr(r, f) for f in _PIVOT_ROW)][r.n_edits] = r
    return cols, dict(sorted(rows.items(), key=lambda kv: tuple(str(x) for x in kv[0])))


def pivot_csv(records: Sequence[Record]) -> str:
    cols, rows = pivot(records)
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(_PIVOT_ROW) + [f"n={c}" for c in cols])
    for key, by_n in rows.items():
        w.writerow(list(key) + ["" if (r := by_n.get(c)) is None or r.value is None else r.value
                                for c in cols])
    return buf.getvalue()


def headline_markdown(records: Sequence[Record], *, title: str = "") -> str:
    """Markdown tables per (model, dataset): one row per editor × trajectory × variant at
    the last checkpoint, one column per editing/general metric (value ± stderr), with
    the unedited model (n = 0) as the first row where it was evaluated."""
    out = [f"# {title}\n"] if title else []
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.kind != "spectrum":
            groups[(r.model, r.dataset)].append(r)
    spectrum = [r for r in records if r.kind == "spectrum"]
    for (model, dataset), recs in sorted(groups.items()):
        metrics = sorted({(r.kind, r.task, r.metric) for r in recs},
                         key=lambda m: (m[0] != "editing", m[1], m[2]))
        lines = [f"## {model} · {dataset}\n"]
        header = ["editor", "trajectory", "variant", "edits"] + [
            m[2] if m[0] == "editing" else f"{m[1]}/{m[2]}" for m in metrics]
        header += ["κ max (n=0 → n)", "σ_max max (n=0 → n)"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        rows: dict[tuple, dict[tuple, Record]] = defaultdict(dict)
        last: dict[tuple, int] = {}
        for r in recs:
            cellkey = (r.editor, r.trajectory, r.variant, r.batch_size, r.seed, r.timing)
            last[cellkey] = max(last.get(cellkey, 0), r.n_edits)
        base: dict[tuple, Record] = {}
        for r in recs:
            cellkey = (r.editor, r.trajectory, r.variant, r.batch_size, r.seed, r.timing)
            if r.n_edits == last[cellkey]:
                rows[cellkey][(r.kind, r.task, r.metric)] = r
            if r.n_edits == 0 and r.variant == "none":
                base.setdefault((r.kind, r.task, r.metric), r)
        spec_by = _spectrum_summary(spectrum, model)
        if base:
            cells = [_fmt_mv(base.get(m)) for m in metrics]
            # no spectrum here: each editor edits its own matrices, so their unedited
            # values are shown on the editor's rows (n=0 → n)
            lines.append("| " + " | ".join(["(unedited)", "", "", "0"] + cells + ["", ""]) + " |")
        for ck, vals in sorted(rows.items()):
            n = last[ck]
            cells = [_fmt_mv(vals.get(m)) for m in metrics]
            k, s = spec_by.get((ck[0], ck[1], ck[2], n), (None, None))
            k0, s0 = spec_by.get((ck[0], ck[1], ck[2], 0), (None, None))
            lines.append("| " + " | ".join([ck[0], ck[1], ck[2], str(n)] + cells
                                           + [_arrow(k0, k), _arrow(s0, s)]) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _arrow(before: float | None, after: float | None) -> str:
    if after is None:
        return ""
    return _fmt(after, 2) if before is None else f"{_fmt(before, 2)} → {_fmt(after, 2)}"


def _fmt_mv(r: Record | None) -> str:
    if r is None:
        return ""
    s = _fmt(r.value)
    if r.stderr is not None and r.value is not None:
        s += f" ± {_fmt(r.stderr, 2)}"
    return s


def _spectrum_summary(spectrum: Sequence[Record], model: str) -> dict[tuple, tuple]:
    """(editor, trajectory, variant, n) -> (max κ(W), max σ_max(W)) over the cell's edited
    matrices (n = 0: the same matrices unedited)."""
    acc: dict[tuple, list[float | None]] = {}
    for r in spectrum:
        if r.model != model or r.value is None:
            continue
        cur = acc.setdefault((r.editor, r.trajectory, r.variant, r.n_edits), [None, None])
        idx = {"kappa_w": 0, "sigma_max_w": 1}.get(r.metric)
        if idx is not None:
            cur[idx] = r.value if cur[idx] is None else max(cur[idx], r.value)
    return {k: tuple(v) for k, v in acc.items()}


def write_tables(directory: Path, records: Sequence[Record], *, title: str = "") -> list[Path]:
    tables = directory / "tables"
    paths = [tables / "records.csv", tables / "pivot.csv", tables / "summary.md"]
    io.write_text(paths[0], records_csv(records))
    io.write_text(paths[1], pivot_csv(records))
    io.write_text(paths[2], headline_markdown(records, title=title))
    return paths
