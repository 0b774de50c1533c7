"""Checks of a published result folder before it is ranked (``seqedit validate DIR``).

Every problem names the file, and where it applies the line and the field. The checks:

- layout: ``records.jsonl``, ``cells.jsonl``, ``grid.yaml`` and ``provenance/`` exist;
- schema: every line parses as JSON and as its row type of :mod:`benchmark.results`
  (a known ``schema_version`` included); schema-2 records need ``samples.jsonl``;
- completeness: every completed cell has records for each checkpoint × variant, its
  general tasks and spectrum (:func:`benchmark.publish.cell_problem`), the same metrics at
  every edited checkpoint, no duplicates, no records of cells not listed as completed;
- provenance: one file per completed cell with the fields a comparison needs (git sha,
  hparams hash, model identity, data sha256, package versions, hardware, wall times);
- hashes: a cell's id is the hash of its spec (``cells.jsonl`` and provenance), the
  provenance spec is the cell's spec, sample rows match their record's value;
- groups: records carry their cell's group columns, one model name has one weight identity,
  and within a cell each metric has one scorer and one protocol.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from benchmark import results
from benchmark.core.errors import DataError
from benchmark.evaluation import statistic_value
from benchmark.leaderboard.groups import WEIGHT_KEYS, weights_identity
from benchmark.publish import cell_problem
from benchmark.spec import CellSpec

#: provenance fields a ranked row needs: (path of keys, what it is)
PROVENANCE_FIELDS = (
    (("git", "sha"), "git commit of the code that ran"),
    (("hparams_hash",), "hash of the editor hyperparameters"),
    (("model_identity",), "model identity"),
    (("data", "sha256"), "sha256 of the edit requests' file"),
    (("packages",), "package versions"),
    (("hardware",), "hardware"),
    (("wall_seconds", "edits"), "seconds spent editing"),
)
#: record columns that must equal the cell's spec (``CellSpec.describe``)
GROUP_COLUMNS = ("model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing")
REQUIRED = ("records.jsonl", "cells.jsonl", "grid.yaml")


@dataclass(frozen=True)
class Problem:
    """One problem of a result folder: file, optional line and field, and what is wrong."""

    file: str
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.field is not None:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"


class InvalidResults(DataError):
    """A result folder failed validation; the message lists every problem."""

    def __init__(self, directory: Path, problems: list[Problem]):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(directory, f"{len(problems)} problem(s):\n  {shown}{more}")


def _rows(path: Path, model: type[BaseModel], out: list[Problem]) -> list[tuple[int, Any]]:
    """(line number, row) of every line of a JSONL that parses; problems for the rest."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.append(Problem(str(path), f"cannot read: {exc}"))
        return rows
    if text and not text.endswith("\n"):
        out.append(Problem(str(path), "does not end with a newline (truncated file?)",
                           line=text.count("\n") + 1))
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            out.append(Problem(str(path), "empty line", line=i))
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as exc:
            out.append(Problem(str(path), f"not valid JSON ({exc.msg}, column {exc.colno})", line=i))
            continue
        try:
            rows.append((i, model.model_validate_json(line)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or None
                out.append(Problem(str(path), err["msg"].removeprefix("Value error, "), line=i,
                                   field=field))
    return rows


def _lookup(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(data, dict) or k not in data:
            return None
        data = data[k]
    return data


def _check_cells(directory: Path, out: list[Problem]) -> dict[str, tuple[int, Any, CellSpec | None]]:
    path = directory / "cells.jsonl"
    cells: dict[str, tuple[int, Any, CellSpec | None]] = {}
    for line, row in _rows(path, results.CellStatus, out):
        if row.cell in cells:
            out.append(Problem(str(path), f"cell {row.cell} listed twice (first on line "
                                          f"{cells[row.cell][0]})", line=line, field="cell"))
            continue
        try:
            spec = CellSpec.model_validate(row.spec)
        except ValidationError as exc:
            err = exc.errors()[0]
            out.append(Problem(str(path), err["msg"], line=line,
                               field="spec." + ".".join(str(p) for p in err["loc"])))
            spec = None
        if spec is not None and spec.short_hash != row.cell:
            out.append(Problem(str(path), f"hash mismatch: the spec hashes to {spec.short_hash}, "
                                          f"the row says {row.cell}", line=line, field="cell"))
        if spec is not None and spec.folder != row.folder:
            out.append(Problem(str(path), f"folder {row.folder!r} is not the spec's "
                                          f"{spec.folder!r}", line=line, field="folder"))
        cells[row.cell] = (line, row, spec)
    return cells


def _check_records(directory: Path, cells: dict, out: list[Problem]) -> dict[str, list]:
    path = str(directory / "records.jsonl")
    by_cell: dict[str, list] = defaultdict(list)
    seen: dict[tuple, int] = {}
    for line, rec in _rows(directory / "records.jsonl", results.Record, out):
        key = rec.key() + (rec.cell,)
        if key in seen:
            out.append(Problem(path, f"duplicate record (same cell, checkpoint, variant and metric "
                                     f"as line {seen[key]})", line=line))
            continue
        seen[key] = line
        entry = cells.get(rec.cell)
        if entry is None or entry[1].status != "completed":
            out.append(Problem(path, f"record of cell {rec.cell}, which cells.jsonl does not list "
                                     "as completed", line=line, field="cell"))
            continue
        spec = entry[2]
        if spec is not None:
            wanted = spec.describe()
            for col in GROUP_COLUMNS:
                if getattr(rec, col) != wanted[col]:
                    out.append(Problem(path, f"mixed groups: {col} {getattr(rec, col)!r} but cell "
                                             f"{rec.cell} has {wanted[col]!r}", line=line, field=col))
        by_cell[rec.cell].append((line, rec))
    return by_cell


def _check_completeness(directory: Path, cells: dict, by_cell: dict, out: list[Problem]) -> None:
    path = str(directory / "records.jsonl")
    for cell, (_, row, spec) in cells.items():
        if row.status != "completed" or spec is None:
            continue
        recs = [r for _, r in by_cell.get(cell, [])]
        if problem := cell_problem(spec, recs):
            out.append(Problem(path, f"cell {cell} ({row.folder}): {problem}"))
            continue
        final = spec.evaluation.timing == "final"  # editing metrics at the last checkpoint only
        metrics: dict[tuple, set] = defaultdict(set)
        for r in recs:
            if r.n_edits > 0 and not (final and r.kind == "editing"):
                metrics[(r.n_edits, r.variant)].add((r.kind, r.task, r.metric))
        union = set().union(*metrics.values()) if metrics else set()
        for (n, variant), have in sorted(metrics.items()):
            if missing := union - have:
                shown = ", ".join("/".join(m) for m in sorted(missing)[:4])
                out.append(Problem(path, f"cell {cell}: n={n}, variant {variant} lacks "
                                         f"{len(missing)} metric(s) the other checkpoints have "
                                         f"({shown}) (truncated records?)"))


def _check_scoring(directory: Path, by_cell: dict, out: list[Problem]) -> None:
    """Within a cell, each metric is scored one way under one protocol (schema 2)."""
    path = str(directory / "records.jsonl")
    for cell, recs in by_cell.items():
        first: dict[tuple, tuple[int, tuple]] = {}
        for line, r in recs:
            how = (getattr(r, "scorer", None), getattr(r, "protocol", None))
            key = (r.kind, r.task, r.metric)
            if key not in first:
                first[key] = (line, how)
            elif first[key][1] != how:
                field = "scorer" if how[0] != first[key][1][0] else "protocol"
                out.append(Problem(path, f"mixed groups: {'/'.join(key)} of cell {cell} has "
                                         f"{field} {how[field == 'protocol']!r}, line "
                                         f"{first[key][0]} has {first[key][1][field == 'protocol']!r}",
                                   line=line, field=field))


def _check_provenance(directory: Path, cells: dict, out: list[Problem]) -> dict[str, dict]:
    folder = directory / "provenance"
    found: dict[str, dict] = {}
    for cell, (_, row, spec) in cells.items():
        if row.status != "completed":
            continue
        path = folder / f"{row.folder}.json"
        if not path.is_file():
            out.append(Problem(str(path), f"missing: completed cell {cell} has no provenance"))
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            prov = results.Provenance.model_validate(data)
        except json.JSONDecodeError as exc:
            out.append(Problem(str(path), f"not valid JSON ({exc.msg})", line=exc.lineno))
            continue
        except ValidationError as exc:
            for err in exc.errors():
                out.append(Problem(str(path), err["msg"],
                                   field=".".join(str(p) for p in err["loc"])))
            continue
        p = str(path)
        if prov.schema_version != results.RECORDS_SCHEMA_VERSION:
            out.append(Problem(p, f"unsupported schema_version {prov.schema_version}; this suite "
                                  f"reads version {results.RECORDS_SCHEMA_VERSION}",
                               field="schema_version"))
        for keys, what in PROVENANCE_FIELDS:
            value = _lookup(data, keys)
            if value is None or value == {} or value == "":
                out.append(Problem(p, f"missing {what}", field=".".join(keys)))
        if not prov.spec_hash.startswith(cell) or prov.cell != cell:
            out.append(Problem(p, f"hash mismatch: provenance of {prov.cell} ({prov.spec_hash[:12]}) "
                                  f"filed for cell {cell}", field="spec_hash"))
        elif spec is not None and prov.spec != row.spec:
            out.append(Problem(p, "spec differs from the cell's spec in cells.jsonl", field="spec"))
        elif spec is not None and spec.spec_hash() != prov.spec_hash:
            out.append(Problem(p, f"hash mismatch: the spec hashes to {spec.spec_hash()[:16]}...",
                               field="spec_hash"))
        if weights_identity(prov.model_identity) is None:
            out.append(Problem(p, f"model identity pins no weights (needs one of "
                                  f"{', '.join(WEIGHT_KEYS)})", field="model_identity"))
        found[cell] = data
    by_model: dict[str, dict[str, str]] = defaultdict(dict)
    for cell, data in found.items():
        ident = weights_identity(data.get("model_identity") or {})
        if ident:
            by_model[cells[cell][1].spec.get("model", "?")][ident] = cells[cell][1].folder
    for model, idents in sorted(by_model.items()):
        if len(idents) > 1:
            folders = ", ".join(sorted(idents.values()))
            out.append(Problem(str(folder), f"mixed groups: model {model} has {len(idents)} weight "
                                            f"identities ({folders})", field="model_identity"))
    return found


def _check_samples(directory: Path, by_cell: dict, out: list[Problem]) -> None:
    path = directory / "samples.jsonl"
    schema = {r.schema_version for recs in by_cell.values() for _, r in recs}
    if not path.is_file():
        if any(v >= 2 for v in schema):
            out.append(Problem(str(path), "missing: schema-2 records need their per-item samples"))
        return
    row_type = getattr(results, "SampleRow", None)
    if row_type is None:
        out.append(Problem(str(path), "this suite cannot read samples (no benchmark.results.SampleRow)"))
        return
    values = {(r.cell, r.n_edits, r.variant, r.kind, r.task, r.metric): r.value
              for recs in by_cell.values() for _, r in recs}
    for line, s in _rows(path, row_type, out):
        key = (s.cell, s.n_edits, s.variant, s.kind, s.task, s.metric)
        if key not in values:
            out.append(Problem(str(path), f"samples of no record ({'/'.join(map(str, key))})", line=line))
            continue
        if len(s.ids) != len(s.scores) or (s.weights is not None and len(s.weights) != len(s.scores)):
            out.append(Problem(str(path), "ids, scores and weights differ in length", line=line,
                               field="scores"))
            continue
        try:
            got = statistic_value(s.statistic, s.scores, s.weights)
        except ValueError as exc:
            out.append(Problem(str(path), str(exc), line=line, field="statistic"))
            continue
        value = values[key]
        if value is not None and got is not None and not math.isclose(value, got, rel_tol=1e-6,
                                                                       abs_tol=1e-9):
            out.append(Problem(str(path), f"hash mismatch: the items give {got!r}, the record "
                                          f"says {value!r}", line=line, field="scores"))


def validate(directory: Path) -> list[Problem]:
    """Every problem of the result folder ``directory`` (empty when it is valid)."""
    directory = Path(directory)
    out: list[Problem] = []
    if not directory.is_dir():
        return [Problem(str(directory), "not a folder")]
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    out += [Problem(str(directory / name), "missing") for name in missing]
    if not (directory / "provenance").is_dir():
        out.append(Problem(str(directory / "provenance"), "missing folder"))
    if "cells.jsonl" in missing or "records.jsonl" in missing:
        return out
    cells = _check_cells(directory, out)
    by_cell = _check_records(directory, cells, out)
    if not by_cell and not out:
        out.append(Problem(str(directory / "records.jsonl"), "holds no records"))
    _check_completeness(directory, cells, by_cell, out)
    _check_scoring(directory, by_cell, out)
    _check_provenance(directory, cells, out)
    _check_samples(directory, by_cell, out)
    return out


def check_valid(directory: Path) -> None:
    """Raise :class:`InvalidResults` listing every problem of ``directory``, if any."""
    if problems := validate(directory):
        raise InvalidResults(Path(directory), problems)
