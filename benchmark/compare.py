"""Compare two results folders (or records files) metric by metric, with tolerances.

``seqedit compare BASE NEW [--tolerances FILE]`` matches records by their key (everything
but value, n and stderr, and the cell hash) and reports, per matched value, the change.
A tolerance rule (first match wins, from ``benchmark/grids/tolerances.yaml`` unless given)
says how far a value may move and in which direction moving is bad:

- ``direction: higher`` -- larger is better; a regression is ``new < base - tol``;
- ``direction: lower`` -- smaller is better; a regression is ``new > base + tol``;
- ``direction: either`` -- any change beyond ``tol`` is a regression (reproducibility checks),

with ``tol = max(abs, rel * |base|)``. A value present in BASE but missing (or not finite)
in NEW is a regression too. Exit status: 0 when nothing regressed, 1 otherwise.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark.core import settings
from benchmark.core.errors import DataError
from benchmark.results import KEY_FIELDS, Record, read_records

DEFAULT_TOLERANCES = settings.GRIDS_DIR / "tolerances.yaml"

Direction = Literal["higher", "lower", "either"]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    match: str  # fnmatch pattern over "kind/task/metric"
    abs: float = Field(0.0, ge=0)
    rel: float = Field(0.0, ge=0)
    direction: Direction = "either"
    headline: bool = False  # shown first in the diff


class Tolerances(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = 1
    rules: list[Rule]
    default: Rule = Rule(match="*", abs=1e-9, rel=1e-6, direction="either")

    def rule_for(self, metric_path: str) -> Rule:
        for r in self.rules:
            if fnmatch.fnmatchcase(metric_path, r.match):
                return r
        return self.default


def load_tolerances(path: Path | None = None) -> Tolerances:
    path = Path(path or DEFAULT_TOLERANCES)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(path, f"cannot read tolerances: {exc}") from None
    except yaml.YAMLError as exc:
        raise DataError(path, f"invalid YAML: {exc}") from None
    try:
        return Tolerances.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        raise DataError(path, err["msg"], field=loc or None) from None


@dataclass(frozen=True)
class Diff:
    key: tuple
    metric_path: str
    base: float | None
    new: float | None
    tol: float
    direction: str
    status: Literal["ok", "regression", "improved", "missing", "added"]
    headline: bool

    @property
    def delta(self) -> float | None:
        if self.base is None or self.new is None:
            return None
        return self.new - self.base

    def describe(self) -> str:
        k = dict(zip(_DIFF_KEY, self.key))
        where = (f"{k['model']} {k['editor']} {k['dataset']} traj={k['trajectory']} "
                 f"variant={k['variant']} n={k['n_edits']}")
        if self.status == "missing":
            return f"{self.metric_path} [{where}]: missing in NEW (base {self.base})"
        if self.status == "added":
            return f"{self.metric_path} [{where}]: only in NEW ({self.new})"
        d = self.delta
        ds = "n/a" if d is None else f"{d:+.6g}"
        return (f"{self.metric_path} [{where}]: {_f(self.base)} -> {_f(self.new)} (Δ {ds}, "
                f"tolerance {self.tol:.3g}, better={self.direction})")


def _f(x: float | None) -> str:
    return "None" if x is None else f"{x:.6g}"


_DIFF_KEY = tuple(f for f in KEY_FIELDS if f != "grid")


def _key(r: Record) -> tuple:
    return tuple(getattr(r, f) for f in _DIFF_KEY)


def _records_of(path: Path) -> list[Record]:
    path = Path(path)
    if path.is_dir():
        path = path / "records.jsonl"
    if not path.is_file():
        raise DataError(path, "no records file (give a results folder or a records.jsonl)")
    return read_records(path)


def compare_records(base: list[Record], new: list[Record], tol: Tolerances) -> list[Diff]:
    b = {_key(r): r for r in base}
    n = {_key(r): r for r in new}
    diffs: list[Diff] = []
    for key in sorted(b.keys() | n.keys(), key=lambda k: tuple(str(x) for x in k)):
        rb, rn = b.get(key), n.get(key)
        path = (rb or rn).metric_path
        rule = tol.rule_for(path)
        bv = rb.value if rb else None
        nv = rn.value if rn else None
        t = max(rule.abs, rule.rel * abs(bv)) if bv is not None else rule.abs
        if rb is None:
            status = "added"
        elif rn is None or (nv is None and bv is not None):
            status = "missing"
        elif bv is None and nv is None:
            status = "ok"
        elif bv is None:
            status = "improved"  # was not finite, now is
        else:
            d = nv - bv
            if rule.direction == "higher":
                status = "regression" if d < -t else ("improved" if d > t else "ok")
            elif rule.direction == "lower":
                status = "regression" if d > t else ("improved" if d < -t else "ok")
            else:
                status = "regression" if abs(d) > t else "ok"
        diffs.append(Diff(key, path, bv, nv, t, rule.direction, status, rule.headline))
    return diffs


def compare(base: Path, new: Path, tolerances: Path | None = None) -> tuple[list[Diff], str]:
    diffs = compare_records(_records_of(base), _records_of(new), load_tolerances(tolerances))
    return diffs, format_diffs(diffs, base, new)


def format_diffs(diffs: list[Diff], base: Path, new: Path, max_lines: int = 40) -> str:
    reg = [d for d in diffs if d.status in ("regression", "missing")]
    imp = [d for d in diffs if d.status == "improved"]
    add = [d for d in diffs if d.status == "added"]
    ok = [d for d in diffs if d.status == "ok"]
    lines = [f"compare BASE={base} NEW={new}",
             f"{len(diffs)} values: {len(ok)} within tolerance, {len(reg)} regressed, "
             f"{len(imp)} improved, {len(add)} only in NEW"]
    headline_changes = [d for d in diffs if d.headline and d.status != "ok"]
    if reg:
        lines.append("REGRESSIONS:")
        regressed_metrics = sorted({d.metric_path for d in reg})
        lines.append("  metrics: " + ", ".join(regressed_metrics))
        for d in sorted(reg, key=lambda d: not d.headline)[:max_lines]:
            lines.append("  " + d.describe())
        if len(reg) > max_lines:
            lines.append(f"  ... and {len(reg) - max_lines} more")
    if imp:
        lines.append("improved beyond tolerance:")
        lines += ["  " + d.describe() for d in imp[:max_lines]]
    if add:
        lines.append(f"only in NEW: {len(add)} values (e.g. {add[0].metric_path})")
    if not reg and not headline_changes:
        lines.append("no regression")
    return "\n".join(lines)


def has_regression(diffs: list[Diff]) -> bool:
    return any(d.status in ("regression", "missing") for d in diffs)
