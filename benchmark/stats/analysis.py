"""One result folder's statistics, computed once for every table drawn from them: the
records frame, the paired comparisons, the collapse points, the identity variants and the
decimals of each metric."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from benchmark.results import Record, SampleRow
from benchmark.stats import display
from benchmark.stats.collapse import COLLAPSE_DEFAULTS, CollapseSettings, collapse_points
from benchmark.stats.comparisons import identity_variants, paired_table, sample_index
from benchmark.stats.paired import PAIRED_DEFAULTS, PairedSettings

METRIC = ["kind", "task", "metric"]
#: Appended to a variant's label where it never acted (its records equal those of none).
IDENTITY_MARK = " (= none)"


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    """One row per record, the columns of :class:`Record` in order (None -> NaN)."""
    return pd.DataFrame([r.model_dump(mode="json") for r in records],
                        columns=list(Record.model_fields))


def sample_statistics(samples: Iterable[SampleRow]) -> dict[tuple[str, str, str], str]:
    """(kind, task, metric) -> the statistic its items form."""
    return {(s.kind, s.task, s.metric): s.statistic for s in samples}


def _number(x: float | None) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


class Analysis:
    """The frames of one set of records and samples (see the module docstring)."""

    def __init__(self, records: Sequence[Record], samples: Sequence[SampleRow],
                 paired: PairedSettings = PAIRED_DEFAULTS,
                 collapse: CollapseSettings = COLLAPSE_DEFAULTS):
        self.paired_settings, self.collapse_settings = paired, collapse
        self.frame = records_frame(records)
        self.statistics = sample_statistics(samples)
        self.paired = paired_table(records, samples, paired)
        self.collapse = collapse_points(self.frame, collapse, self.statistics, self.paired)
        self.identity = identity_variants(records, sample_index(samples))
        self._digits = {key: display.decimals(key[0], key[2], [_number(v) for v in rows["value"]],
                                              self.statistics.get(key))
                        for key, rows in self.frame.groupby(METRIC)}

    def digits(self, key: tuple[str, str, str]) -> int:
        """Decimals of metric ``(kind, task, metric)`` (:func:`display.decimals`)."""
        return self._digits.get(key, 1)

    def variant_label(self, cell: str, n: int, variant: str) -> str:
        """``variant``, marked where it never acted at checkpoint ``n`` of ``cell``."""
        return variant + (IDENTITY_MARK if (cell, n, variant) in self.identity else "")
