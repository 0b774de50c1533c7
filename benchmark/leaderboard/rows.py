"""Leaderboard rows from one validated result folder: one row per cell × evaluation variant,
its figures at the cell's last checkpoint, its curves and its provenance.

Intervals are 95%: the paired interval of ``tables/paired.csv`` (comparison
``vs_unedited``) where the folder has one, otherwise value ± 1.96 standard errors (for a
change from the unedited model: ± 1.96·√(s.e.² + s.e.₀²), which ignores the pairing of
items and so is wider than a paired interval).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.leaderboard.groups import GroupKey, group_key
from benchmark.plotting import identity_states
from benchmark.results import CellStatus, Record, read_cells, read_records

Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
TEACHER_FORCED = ("efficacy", "zsre_efficacy")
GENERATION = ("gen_efficacy", "zsre_gen_efficacy")
LOCALITY = ("locality", "zsre_locality")
#: one perplexity-type number per text task: these two restate word perplexity
REDUNDANT = ("byte_perplexity", "bits_per_byte")
SPECTRUM = ("kappa_w", "sigma_max_w")


@dataclass(frozen=True)
class Figure:
    """A value with an optional 95% interval; ``how`` names where the interval comes from."""

    value: float | None
    low: float | None = None
    high: float | None = None
    how: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"v": self.value, "lo": self.low, "hi": self.high, "how": self.how}


NONE = Figure(None)


@dataclass
class Row:
    """One leaderboard row (plain data; ``as_json`` is what the page reads)."""

    id: str
    source: str
    cell: str
    folder: str
    variant: str
    trajectory: str
    model: str
    editor: str
    group: GroupKey
    n_edits: int
    checkpoints: list[int]
    identity_at: list[int]
    figures: dict[str, Figure]
    hardware: str
    curves: dict[str, list[list[float | None]]]
    provenance: dict[str, Any] = field(repr=False, default_factory=dict)
    rank: int = 0

    @property
    def restraint(self) -> str:
        parts = [p for p in (self.trajectory, self.variant) if p != "none"]
        return " + ".join(parts) if parts else "none"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "cell": self.cell, "folder": self.folder,
                "variant": self.variant, "trajectory": self.trajectory,
                "restraint": self.restraint, "model": self.model, "editor": self.editor,
                "group": self.group.slug(), "group_label": self.group.label(),
                "n_edits": self.n_edits, "checkpoints": self.checkpoints,
                "identity_at": self.identity_at, "rank": self.rank, "hardware": self.hardware,
                "figures": {k: f.as_json() for k, f in sorted(self.figures.items())},
                "curves": self.curves}


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


#: editing metrics that are rates on a 0-100 scale (their intervals are clipped to it)
RATES = TEACHER_FORCED + GENERATION + LOCALITY + ("generalization", "zsre_generalization",
                                                  "gen_generalization", "zsre_gen_generalization")


def band(value: float | None, stderr: float | None, rate: bool = False) -> Figure:
    """value ± 1.96 s.e. (no interval without a standard error); a rate's interval is
    clipped to [0, 100]."""
    if value is None:
        return NONE
    if stderr is None:
        return Figure(value)
    low, high = value - Z95 * stderr, value + Z95 * stderr
    if rate:
        low, high = max(low, 0.0), min(high, 100.0)
    return Figure(value, low, high, "±1.96 s.e.")


def unpaired_delta(rec: Record, base: Record) -> Figure:
    """rec − base with ± 1.96·√(s.e.² + s.e.₀²) where both have a standard error."""
    if rec.value is None or base.value is None:
        return NONE
    delta = rec.value - base.value
    if rec.stderr is None or base.stderr is None:
        return Figure(delta)
    half = Z95 * math.hypot(rec.stderr, base.stderr)
    return Figure(delta, delta - half, delta + half, "±1.96·√(s.e.²+s.e.₀²), unpaired")


def signal_key(r: Record) -> str:
    return f"{r.kind}/{r.task}/{r.metric}"


def is_general_signal(r: Record) -> bool:
    return r.kind == "general" and r.metric not in REDUNDANT


def _paired(directory: Path) -> dict[tuple, Figure]:
    """(cell, n_edits, variant, kind, task, metric) -> paired Δ from the unedited model."""
    from benchmark.tables import read_paired

    frame = read_paired(directory)
    if frame is None:
        return {}
    out = {}
    for r in frame.itertuples(index=False):
        key = (str(r.cell), int(r.n_edits), str(r.variant), str(r.kind), str(r.task), str(r.metric))
        out[key] = Figure(_finite(r.delta), _finite(r.ci_low), _finite(r.ci_high),
                          f"paired {r.method}")
    return out


def _collapse(directory: Path) -> dict[tuple[str, str], Figure]:
    """(cell, variant) -> the first edit count at which any signal collapsed, read from the
    folder's ``tables/collapse.csv`` (:mod:`benchmark.stats.collapse`; general losses count
    only where significant)."""
    from benchmark.tables import read_table

    frame = read_table(directory, "collapse.csv")
    if frame is None:
        return {}
    out: dict[tuple[str, str], Figure] = {}
    for (cell, variant), rows in frame.groupby(["cell", "variant"]):
        reached = rows[rows["reached"].astype(bool)]
        if len(reached):
            first = reached.loc[reached["edits"].idxmin()]
            out[(cell, variant)] = Figure(float(first["edits"]), how=f"{first['signal']}")
        else:
            out[(cell, variant)] = Figure(None, how=f"not reached by n={int(rows['by'].max())}")
    return out


def _peak(records: Sequence[Record], metric: str) -> float | None:
    vals = [r.value for r in records if r.kind == "spectrum" and r.metric == metric
            and r.value is not None]
    return max(vals) if vals else None


def curves(records: Sequence[Record]) -> dict[str, list[list[float | None]]]:
    """metric path -> [[n, value, low, high], ...] of one cell × variant (spectrum figures:
    the largest over the edited matrices, no interval)."""
    points: dict[str, dict[int, list]] = defaultdict(dict)
    for r in records:
        if r.value is None:
            continue
        if r.kind == "spectrum":
            if r.metric in SPECTRUM:
                key = f"spectrum/max/{r.metric}"
                old = points[key].get(r.n_edits)
                if old is None or r.value > old[1]:
                    points[key][r.n_edits] = [r.n_edits, r.value, None, None]
            continue
        if r.metric in REDUNDANT:
            continue
        f = band(r.value, r.stderr, r.kind == "editing" and r.metric in RATES)
        points[signal_key(r)][r.n_edits] = [r.n_edits, f.value, f.low, f.high]
    return {k: [v[n] for n in sorted(v)] for k, v in sorted(points.items())}


def hardware(prov: dict[str, Any]) -> str:
    hw = prov.get("hardware") or {}
    if hw.get("gpu"):
        return f"{hw['gpu']} (CUDA {hw.get('cuda', '?')})"
    return f"CPU × {hw.get('torch_threads', '?')} threads ({hw.get('machine', '?')})"


def _figures(recs: Sequence[Record], base: dict[str, Record], last: int, cell: str, variant: str,
             paired: dict[tuple, Figure], prov: dict[str, Any]) -> dict[str, Figure]:
    at_last = [r for r in recs if r.n_edits == last]
    by_metric = {r.metric: r for r in at_last if r.kind == "editing"}
    figs: dict[str, Figure] = {}
    for name, metrics in (("efficacy_tf", TEACHER_FORCED), ("efficacy_gen", GENERATION),
                          ("locality", LOCALITY)):
        rec = next((by_metric[m] for m in metrics if m in by_metric), None)
        figs[name] = band(rec.value, rec.stderr, rate=True) if rec else NONE
    for r in at_last:
        if is_general_signal(r) and (b := base.get(signal_key(r))) is not None:
            key = (cell, last, variant, r.kind, r.task, r.metric)
            figs[f"delta:{signal_key(r)}"] = paired.get(key) or unpaired_delta(r, b)
    spec0 = [r for r in base.values() if r.kind == "spectrum"]
    for metric, name in (("kappa_w", "kappa_growth"), ("sigma_max_w", "sigma_growth")):
        now, then = _peak(at_last, metric), _peak(spec0, metric)
        figs[name] = Figure(now / then) if now is not None and then else NONE
    edits = (prov.get("wall_seconds") or {}).get("edits")
    figs["sec_per_edit"] = Figure(edits / last) if edits is not None and last else NONE
    return figs


def rows_of(directory: Path, source: str) -> list[Row]:
    """Every row of a (validated) result folder; ``source`` names the folder on the page."""
    directory = Path(directory)
    records = read_records(directory / "records.jsonl")
    cells: list[CellStatus] = [c for c in read_cells(directory / "cells.jsonl")
                               if c.status == "completed"]
    paired, collapse = _paired(directory), _collapse(directory)
    identity = identity_states(records)
    by_cell: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_cell[r.cell].append(r)
    out = []
    for c in cells:
        prov = json.loads((directory / "provenance" / f"{c.folder}.json").read_text("utf-8"))
        recs = by_cell[c.cell]
        scorers = [getattr(r, "scorer", None) for r in recs if r.kind == "editing"]
        protocols = [(r.kind, r.task, getattr(r, "protocol", "")) for r in recs
                     if r.kind != "spectrum"]
        group = group_key(c.spec, prov.get("model_identity") or {}, scorers, protocols)
        last = int(c.spec["n_edits"])
        base = {signal_key(r): r for r in recs if r.n_edits == 0 and r.variant == "none"}
        for v in dict.fromkeys(r.variant for r in recs):
            mine = [r for r in recs if r.variant == v]
            figs = _figures(mine, base, last, c.cell, v, paired, prov)
            figs["collapse"] = collapse.get((c.cell, v), NONE)
            first = mine[0]
            out.append(Row(
                id=f"{source}/{c.cell}/{v}", source=source, cell=c.cell, folder=c.folder,
                variant=v, trajectory=first.trajectory, model=first.model, editor=first.editor,
                group=group, n_edits=last, checkpoints=sorted({r.n_edits for r in mine}),
                identity_at=sorted(n for (cell, n, var) in identity if cell == c.cell and var == v),
                figures=figs, hardware=hardware(prov), curves=curves(mine), provenance=prov))
    return out


def rank_key(row: Row, use_generation: bool) -> tuple:
    """Ranking within a group: efficacy at the last checkpoint (generation-based when every
    row of the group has it, else teacher-forced), higher first; ties by locality, then id."""
    eff = row.figures["efficacy_gen" if use_generation else "efficacy_tf"].value
    loc = row.figures["locality"].value
    return (-(eff if eff is not None else -math.inf), -(loc if loc is not None else -math.inf),
            row.id)


def rank(rows: list[Row]) -> list[Row]:
    """Rows ordered by group, then by :func:`rank_key`; ``rank`` counts from 1 in each group."""
    groups: dict[GroupKey, list[Row]] = defaultdict(list)
    for r in rows:
        groups[r.group].append(r)
    out = []
    for key in sorted(groups, key=lambda g: g.label()):
        members = groups[key]
        gen = all(r.figures["efficacy_gen"].value is not None for r in members)
        for i, r in enumerate(sorted(members, key=lambda r: rank_key(r, gen)), 1):
            r.rank = i
            out.append(r)
    return out
