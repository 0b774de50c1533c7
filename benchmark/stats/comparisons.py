"""The paired comparison table of a result folder (records + per-item samples).

Three kinds of comparison, each ``b`` against its reference ``a`` on the items both scored
(:func:`benchmark.stats.paired.align`; editing metrics under ``first-n`` timing thus
compare the first n facts):

- ``vs_unedited``: every checkpoint n > 0 and variant of a cell against the same cell's
  checkpoint 0, variant ``none`` (the unedited model);
- ``prune_vs_none``: a ``prune*`` evaluation variant against ``none`` at the same cell and
  checkpoint (any other non-``none`` variant: ``variant_vs_none``);
- ``rect_vs_none``: a ``rect*`` trajectory against trajectory ``none`` of the cell that
  differs only in its trajectory (same model, editor, dataset, batch size, seed and
  timing), at the same checkpoint, both with variant ``none``.

Records of different ``scorer`` or ``protocol`` are never compared; a record without
samples on either side has no row. ``identity`` marks a variant whose records and samples
at that checkpoint equal those of ``none`` (the restraint never acted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from benchmark.core.errors import DataError
from benchmark.evaluation import Items
from benchmark.results import Record, SampleRow
from benchmark.stats.paired import PAIRED_DEFAULTS, PairedSettings, align, compare_paired

CELL = ["model", "editor", "dataset", "trajectory", "batch_size", "seed", "timing", "cell"]
METRIC = ["kind", "task", "metric"]
#: Cells that differ only in trajectory share these.
TRAJECTORY_MATCH = ["model", "editor", "dataset", "batch_size", "seed", "timing"]
COLUMNS = (CELL + ["n_edits", "variant"] + METRIC
           + ["scorer", "comparison", "ref_cell", "ref_trajectory", "ref_n_edits", "ref_variant",
              "statistic", "value_ref", "value", "delta", "ci_low", "ci_high", "p_value",
              "method", "significant", "n_items", "confidence", "identity"])

SampleKey = tuple[str, int, str, str, str, str]


def sample_index(samples: Iterable[SampleRow]) -> dict[SampleKey, Items]:
    """(cell, n_edits, variant, kind, task, metric) -> the items (a later row wins)."""
    return {s.key(): Items(ids=tuple(s.ids), scores=tuple(s.scores),
                           weights=None if s.weights is None else tuple(s.weights),
                           statistic=s.statistic) for s in samples}


def _rkey(r: Record) -> SampleKey:
    return (r.cell, r.n_edits, r.variant, r.kind, r.task, r.metric)


def identity_variants(records: Sequence[Record],
                      index: dict[SampleKey, Items]) -> set[tuple[str, int, str]]:
    """(cell, n_edits, variant) of non-``none`` variants whose every record (spectrum
    included) and every sample equals that of ``none`` at the same cell and checkpoint."""
    by_state: dict[tuple[str, int, str], dict[tuple, tuple]] = {}
    for r in records:
        state = by_state.setdefault((r.cell, r.n_edits, r.variant), {})
        state[(r.kind, r.task, r.metric)] = (r.value, r.n, index.get(_rkey(r)))
    out = set()
    for (cell, n, variant), values in by_state.items():
        if variant != "none" and values == by_state.get((cell, n, "none")):
            out.add((cell, n, variant))
    return out


def restraint_name(variant: str) -> str:
    return "prune_vs_none" if variant.startswith("prune") else "variant_vs_none"


def _pairs(records: Sequence[Record]) -> Iterable[tuple[str, Record, Record]]:
    """(comparison, reference record, record) for every comparison the records allow."""
    by_key = {_rkey(r): r for r in records}
    cells: dict[str, Record] = {}
    for r in records:
        cells.setdefault(r.cell, r)
    # the trajectory-none twin of each rect cell
    twins: dict[tuple, str] = {}
    for cell, r in cells.items():
        if r.trajectory == "none":
            twins.setdefault(tuple(getattr(r, f) for f in TRAJECTORY_MATCH), cell)
    for r in records:
        if r.kind == "spectrum" or r.n_edits == 0:
            continue
        ref = by_key.get((r.cell, 0, "none", r.kind, r.task, r.metric))
        if ref is not None:
            yield "vs_unedited", ref, r
        if r.variant != "none":
            ref = by_key.get((r.cell, r.n_edits, "none", r.kind, r.task, r.metric))
            if ref is not None:
                yield restraint_name(r.variant), ref, r
        elif r.trajectory.startswith("rect"):
            twin = twins.get(tuple(getattr(r, f) for f in TRAJECTORY_MATCH))
            ref = by_key.get((twin, r.n_edits, "none", r.kind, r.task, r.metric))
            if ref is not None:
                yield "rect_vs_none", ref, r


def _row(comparison: str, ref: Record, rec: Record, a: Items, b: Items,
         settings: PairedSettings, identity: bool) -> dict:
    try:
        paired = align(a, b)
    except ValueError as exc:
        raise DataError("samples.jsonl", f"cannot pair with {ref.cell} n={ref.n_edits} "
                        f"{ref.variant}: {exc}", record=f"{rec.cell} n={rec.n_edits} {rec.variant}",
                        field=f"{rec.kind}/{rec.task}/{rec.metric}") from None
    c = compare_paired(paired, settings)
    value_ref = value = math.nan
    if paired.n:
        sub_a = Items(paired.ids, tuple(paired.a), None if paired.a_weights is None
                      else tuple(paired.a_weights), paired.statistic)
        sub_b = Items(paired.ids, tuple(paired.b), None if paired.b_weights is None
                      else tuple(paired.b_weights), paired.statistic)
        value_ref, value = sub_a.value(), sub_b.value()
    return {**{f: getattr(rec, f) for f in CELL + ["n_edits", "variant"] + METRIC},
            "scorer": rec.scorer, "comparison": comparison, "ref_cell": ref.cell,
            "ref_trajectory": ref.trajectory, "ref_n_edits": ref.n_edits,
            "ref_variant": ref.variant, "statistic": paired.statistic, "value_ref": value_ref,
            "value": value, "delta": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high,
            "p_value": c.p_value, "method": c.method, "significant": c.significant,
            "n_items": c.n_items, "confidence": c.confidence, "identity": identity}


def paired_table(records: Sequence[Record], samples: Iterable[SampleRow],
                 settings: PairedSettings = PAIRED_DEFAULTS) -> pd.DataFrame:
    """One row per comparison (:data:`COLUMNS`), in the order of the records."""
    index = sample_index(samples)
    identical = identity_variants(records, index)
    rows = []
    for comparison, ref, rec in _pairs(records):
        if (ref.scorer, ref.protocol) != (rec.scorer, rec.protocol):
            continue
        a, b = index.get(_rkey(ref)), index.get(_rkey(rec))
        if a is None or b is None:
            continue
        identity = (rec.cell, rec.n_edits, rec.variant) in identical
        rows.append(_row(comparison, ref, rec, a, b, settings, identity))
    return pd.DataFrame(rows, columns=COLUMNS)
