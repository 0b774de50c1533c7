"""The tables of a folder with samples: paired.csv, collapse.csv and summary.md, checked
against values computed here from the samples with numpy."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from benchmark.tables import write_tables
from tests.stats import synthetic
from tests.test_results_tables import _table_rows


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syn")
    records, samples = synthetic.write_folder(folder)
    paths = write_tables(folder, records, title="syn")  # samples read from samples.jsonl
    return folder, paths, records, samples


def _sample(samples, cell, n, variant, metric):
    (row,) = [s for s in samples if (s.cell, s.n_edits, s.variant, s.metric) == (cell, n, variant, metric)]
    return row


def test_files(written):
    folder, paths, *_ = written
    names = [p.name for p in paths]
    assert names == ["records.csv", "pivot.csv", "paired.csv", "collapse.csv", "summary.md"]
    assert all(p.is_file() and p.parent == folder / "tables" for p in paths)
    paired = list(csv.DictReader((folder / "tables" / "paired.csv").open()))
    assert len(paired) == 140  # 80 vs unedited, 40 PRUNE vs none, 20 RECT vs none
    collapse = list(csv.DictReader((folder / "tables" / "collapse.csv").open()))
    assert len(collapse) == 4 * 2 * 4  # cells × variants × (efficacy, gen_efficacy, acc, ppl)
    censored = [r for r in collapse if r["reached"] == "False"]
    assert censored and all(r["edits"] == "" for r in censored)


def test_summary_values_rounding_and_identity(written):
    folder, _, records, _ = written
    md = (folder / "tables" / "summary.md").read_text()
    assert "standard error" in md and "95% paired interval" in md and "exact McNemar" in md
    rows = {(r["editor"], r["trajectory"], r["variant"]): r for r in _table_rows(md)}
    assert ("memit", "none", "prune-e (= none)") in rows
    assert ("rome", "none", "prune-e") in rows  # ROME's PRUNE acted: no mark
    rec = {(r.cell, r.n_edits, r.variant, r.metric): r.value for r in records}
    row = rows[("rome", "none", "none")]
    assert row["known_facts/acc"] == f"{rec[('rome-none', 20, 'none', 'acc')]:.3f}"
    assert row["wikitext_heldout/word_perplexity"] == f"{rec[('rome-none', 20, 'none', 'word_perplexity')]:.2f}"
    assert row["efficacy"] == f"{rec[('rome-none', 20, 'none', 'efficacy')]:.1f}"
    assert row["κ max (n=0 → n)"] == "20.0 → 60.0"


def test_summary_change_column(written):
    folder, _, _, samples = written
    md = (folder / "tables" / "summary.md").read_text()
    rows = {(r["editor"], r["trajectory"], r["variant"]): r
            for r in _table_rows(md, "### Change from the unedited model")}
    a = _sample(samples, "rome-none", 0, "none", "word_perplexity")
    b = _sample(samples, "rome-none", 20, "none", "word_perplexity")
    assert a.ids == b.ids
    delta = (math.exp(-np.sum(b.scores) / np.sum(b.weights))
             - math.exp(-np.sum(a.scores) / np.sum(a.weights)))
    text = rows[("rome", "none", "none")]["wikitext_heldout/word_perplexity"]
    assert text.startswith(f"{delta:+.2f} [") and text.endswith("]*")
    low, high = (float(x) for x in text[text.index("[") + 1:-2].split(", "))
    assert 0 < low < delta < high
    # efficacy under first-n: the 20 edited facts against the same facts unedited
    a = _sample(samples, "rome-none", 0, "none", "efficacy")
    b = _sample(samples, "rome-none", 20, "none", "efficacy")
    want = np.mean(b.scores) - np.mean(a.scores[:20])
    assert rows[("rome", "none", "none")]["efficacy"].startswith(f"{want:+.1f} [")


def test_summary_collapse_table(written):
    folder, *_ = written
    md = (folder / "tables" / "summary.md").read_text()
    rows = {(r["editor"], r["trajectory"], r["variant"]): r
            for r in _table_rows(md, "### Collapse points")}
    row = rows[("rome", "none", "none")]
    assert set(row) >= {"efficacy < 50", "gen_efficacy < 50", "known_facts/acc −10%",
                        "wikitext_heldout/word_perplexity +10%"}
    assert all(v[0] in "≈≤>" for k, v in row.items() if k not in ("editor", "trajectory", "variant"))
    assert rows[("rome", "none", "prune-e")]["wikitext_heldout/word_perplexity +10%"] == ">20"
