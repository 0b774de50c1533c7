"""benchmark.stats.comparisons on the synthetic folder, each row recomputed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.core.errors import DataError
from benchmark.stats.comparisons import COLUMNS, paired_table
from benchmark.stats.paired import PairedSettings
from tests.stats import synthetic
from tests.stats.test_paired import _mcnemar_p

SETTINGS = PairedSettings(n_boot=300, seed=4)


@pytest.fixture(scope="module")
def folder():
    return synthetic.build()


@pytest.fixture(scope="module")
def table(folder):
    return paired_table(*folder, SETTINGS)


def _samples(samples, cell, n, variant, metric):
    (row,) = [s for s in samples if (s.cell, s.n_edits, s.variant, s.metric) == (cell, n, variant, metric)]
    return row


def _common(a, b):
    """Scores (and weights) of the ids both rows hold, in a's order, by a plain dict lookup."""
    pos = {x: i for i, x in enumerate(b.ids)}
    keep = [(i, pos[x]) for i, x in enumerate(a.ids) if x in pos]
    sa = np.array([a.scores[i] for i, _ in keep])
    sb = np.array([b.scores[j] for _, j in keep])
    wa = None if a.weights is None else np.array([a.weights[i] for i, _ in keep])
    wb = None if b.weights is None else np.array([b.weights[j] for _, j in keep])
    return sa, sb, wa, wb


def test_row_counts(table):
    cells, edited, metrics = 4, len(synthetic.CHECKPOINTS) - 1, 5
    counts = table["comparison"].value_counts().to_dict()
    assert counts == {"vs_unedited": cells * edited * 2 * metrics,
                      "prune_vs_none": cells * edited * metrics,
                      "rect_vs_none": 2 * edited * metrics}
    assert list(table.columns) == COLUMNS


def test_every_row_against_an_independent_computation(folder, table):
    _, samples = folder
    for row in table.to_dict("records"):
        ref = _samples(samples, row["ref_cell"], row["ref_n_edits"], row["ref_variant"], row["metric"])
        new = _samples(samples, row["cell"], row["n_edits"], row["variant"], row["metric"])
        sa, sb, wa, wb = _common(ref, new)
        assert row["n_items"] == len(sa)
        if row["metric"] == "word_perplexity":
            va, vb = math.exp(-sa.sum() / wa.sum()), math.exp(-sb.sum() / wb.sum())
            assert row["method"] == "paired-bootstrap" and row["p_value"] != row["p_value"]
        else:
            va, vb = sa.mean(), sb.mean()
        assert row["value_ref"] == pytest.approx(va) and row["value"] == pytest.approx(vb)
        assert row["delta"] == pytest.approx(vb - va, abs=1e-9)
        if row["metric"] in ("efficacy", "gen_efficacy", "acc"):
            high = 1.0 if row["metric"] == "acc" else 100.0
            gained = int(np.sum((sa == 0) & (sb == high)))
            lost = int(np.sum((sa == high) & (sb == 0)))
            assert row["method"] == "mcnemar-exact"
            want = _mcnemar_p(gained, lost) if gained + lost else 1.0
            assert row["p_value"] == pytest.approx(want, rel=1e-9)
        elif row["metric"] == "locality":
            assert row["method"] == "paired-t"
            if np.any(sb - sa != (sb - sa)[0]):
                assert row["p_value"] == pytest.approx(sps.ttest_rel(sb, sa).pvalue, rel=1e-9)


def test_first_n_editing_compares_the_first_n_facts(table):
    rows = table[(table["comparison"] == "vs_unedited") & (table["kind"] == "editing")]
    assert (rows["n_items"] == rows["n_edits"]).all()
    assert (rows["ref_n_edits"] == 0).all() and (rows["ref_variant"] == "none").all()


def test_rect_rows_pair_the_trajectory_none_twin(table):
    rect = table[table["comparison"] == "rect_vs_none"]
    assert set(rect["cell"]) == {"rome-rect-0.4", "memit-rect-0.4"}
    assert (rect["ref_cell"] == rect["editor"] + "-none").all()
    assert (rect["variant"] == "none").all() and (rect["ref_variant"] == "none").all()
    assert (rect["ref_n_edits"] == rect["n_edits"]).all()


def test_identity_variant(table):
    prune = table[table["comparison"] == "prune_vs_none"]
    memit, rome = prune[prune["editor"] == "memit"], prune[prune["editor"] == "rome"]
    assert memit["identity"].all() and not rome["identity"].any()
    assert (memit["delta"] == 0).all() and (memit["ci_low"] == 0).all() and (memit["ci_high"] == 0).all()
    assert not memit["significant"].any()
    # ROME's PRUNE lowers the perplexity rise: significantly, by the interval
    ppl = rome[(rome["metric"] == "word_perplexity") & (rome["trajectory"] == "none")]
    assert (ppl["ci_high"] < 0).all() and ppl["significant"].all()


def test_bootstrap_rows_by_a_plain_loop(folder, table):
    _, samples = folder
    (row,) = table[(table["comparison"] == "prune_vs_none") & (table["cell"] == "rome-none")
                   & (table["n_edits"] == 20) & (table["metric"] == "word_perplexity")].to_dict("records")
    sa, sb, wa, wb = _common(_samples(samples, "rome-none", 20, "none", "word_perplexity"),
                             _samples(samples, "rome-none", 20, "prune-e", "word_perplexity"))
    rng = np.random.Generator(np.random.PCG64(SETTINGS.seed))
    deltas = []
    for _ in range(SETTINGS.n_boot):
        i = rng.integers(0, len(sa), size=len(sa))
        deltas.append(math.exp(-sb[i].sum() / wb[i].sum()) - math.exp(-sa[i].sum() / wa[i].sum()))
    assert row["ci_low"] == pytest.approx(np.percentile(deltas, 2.5), rel=1e-12)
    assert row["ci_high"] == pytest.approx(np.percentile(deltas, 97.5), rel=1e-12)


def test_incomparable_or_unsampled_records_have_no_row(folder):
    records, samples = folder
    changed = [r.model_copy(update={"protocol": "p2"})
               if (r.cell, r.n_edits, r.variant, r.metric) == ("rome-none", 20, "none", "acc") else r
               for r in records]
    dropped = [s for s in samples if (s.cell, s.n_edits, s.variant, s.metric)
               != ("rome-none", 20, "prune-e", "locality")]
    table = paired_table(changed, dropped, SETTINGS)

    def n(cell, n_edits, variant, metric):
        return len(table[(table["cell"] == cell) & (table["n_edits"] == n_edits)
                         & (table["variant"] == variant) & (table["metric"] == metric)])

    assert n("rome-none", 20, "none", "acc") == 0  # protocol differs from its unedited record
    assert n("rome-none", 20, "prune-e", "acc") == 1  # vs_unedited stays; prune_vs_none goes
    assert n("rome-none", 20, "prune-e", "locality") == 0
    assert paired_table([], []).empty


def test_unpairable_samples_are_a_named_error(folder):
    records, samples = folder
    broken = [s.model_copy(update={"ids": ("case0", "case0") + s.ids[2:]})
              if (s.cell, s.n_edits, s.variant, s.metric) == ("rome-none", 10, "none", "locality") else s
              for s in samples]
    with pytest.raises(DataError, match=r"samples.jsonl, record rome-none n=10 none, field "
                                        r"'editing/cf/locality': .*'case0' appears twice"):
        paired_table(records, broken, SETTINGS)
