"""Figures (benchmark.report, benchmark.report_views) on small hand-written records: restraint
activity from the records of every metric, bands from the standard errors, ticks at the
checkpoints, a y-axis per editor, one perplexity plot, PNG + SVG + PDF, the views."""

from __future__ import annotations

import pytest

from benchmark import report
from benchmark.plotting import activity_note, identity_states
from benchmark.results import Record

PNG = b"\x89PNG\r\n\x1a\n"
CHECKPOINTS = (0, 2, 4)


def _rec(**kw) -> Record:
    base = dict(grid="g", cell="c-rome", model="m", editor="rome", dataset="d:edit", trajectory="none",
                batch_size=1, seed=0, timing="first-n", n_edits=0, variant="none", kind="editing",
                task="d", metric="efficacy", value=50.0, n=10, stderr=5.0)
    if "scorer" in Record.model_fields:
        base.update(scorer={"editing": "teacher-forced", "general": "lm-eval",
                            "spectrum": "svd"}[kw.get("kind", "editing")], protocol="p")
    base.update(kw)
    return Record(**base)


def _cell(editor: str, cell: str, scale: float, prune_acts_at: set[int]) -> list[Record]:
    """Efficacy, reasoning accuracy, three perplexity-type numbers and κ of two matrices, for
    variants none and prune-e; prune-e equals none everywhere except the spectrum at the
    checkpoints in ``prune_acts_at`` (its metric values stay equal to none's)."""
    out = []
    for n in CHECKPOINTS:
        for variant in ("none", "prune-e"):
            acts = variant == "prune-e" and n in prune_acts_at
            common = dict(editor=editor, cell=cell, n_edits=n, variant=variant)
            out += [_rec(**common, value=scale * (30 + 10 * n), stderr=scale * 2.0),
                    _rec(**common, kind="general", task="reason", metric="acc", value=0.5,
                         stderr=0.1, n=12)]
            out += [_rec(**common, kind="general", task="wiki", metric=m, value=v + n, stderr=None)
                    for m, v in (("word_perplexity", 60.0), ("byte_perplexity", 2.0),
                                 ("bits_per_byte", 1.0))]
            for layer in ("l1", "l2"):
                kappa = 10.0 + n * scale - (3.0 if acts else 0.0)
                out.append(_rec(**common, kind="spectrum", task=layer, metric="kappa_w",
                                value=kappa + (layer == "l2"), n=1, stderr=None))
    return out


@pytest.fixture()
def records() -> list[Record]:
    return _cell("rome", "c-rome", 1.0, {2, 4}) + _cell("memit", "c-memit", 0.01, set())


def test_identity_states_use_every_record_of_the_cell(records):
    states = identity_states(records)
    # memit's prune-e equals none everywhere; rome's only at n = 0 (its κ differs at 2 and 4)
    assert states == {("c-memit", n, "prune-e") for n in CHECKPOINTS} | {("c-rome", 0, "prune-e")}
    # the efficacy records alone cannot tell: their values are equal for both editors
    eff = [r for r in records if r.metric == "efficacy"]
    assert ("c-rome", 4, "prune-e") in identity_states(eff)


def test_activity_notes():
    assert activity_note("none", CHECKPOINTS, set()) == ""
    assert activity_note("prune-e", CHECKPOINTS, {0, 2, 4}) == "never acted (= none)"
    assert activity_note("prune-e", CHECKPOINTS, {0}) == "acted at every checkpoint"
    assert activity_note("prune-e", CHECKPOINTS, {0, 2}) == "acted at n = 4"


def _capture(monkeypatch) -> dict:
    """Figures handed to report.save, by file name (nothing is written)."""
    figs = {}

    def fake_save(fig, path):
        figs[path.name] = fig
        return [path]

    monkeypatch.setattr(report, "save", fake_save)
    return figs


def test_metric_plot_labels_bands_ticks_and_axes(records, monkeypatch, tmp_path):
    figs = _capture(monkeypatch)
    acc = [r for r in records if r.metric == "acc"]
    report._plot(tmp_path / "acc.png", "t", "accuracy", acc, False,
                 identity=identity_states(records))
    fig = figs["acc.png"]
    memit, rome = fig.axes
    assert (memit.get_title(), rome.get_title()) == ("memit", "rome")
    labels = {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()]
              for ax in fig.axes}
    assert "trajectory none, eval prune-e: acted at every checkpoint" in labels["rome"]
    assert "trajectory none, eval prune-e: never acted (= none)" in labels["memit"]
    for ax in fig.axes:
        assert list(ax.get_xticks()) == list(CHECKPOINTS)
        assert ax.get_legend().get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below
    # one band for rome (none and the acting prune-e: 2), for memit only none's
    assert len(rome.collections) == 2 and len(memit.collections) == 1
    band = rome.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.5 + 1.959964 * 0.1, rel=1e-4)


def test_each_editor_gets_its_own_y_axis(records, monkeypatch, tmp_path):
    figs = _capture(monkeypatch)
    eff = [r for r in records if r.metric == "efficacy"]
    report._plot(tmp_path / "e.png", "t", "efficacy", eff, False)
    memit, rome = figs["e.png"].axes
    assert memit.get_ylim()[1] < 1.0 < rome.get_ylim()[1]  # 0.3-0.7 vs 30-70


def test_write_plots_writes_png_svg_pdf_and_one_perplexity_plot(records, tmp_path):
    (tmp_path / "plots").mkdir()
    for stale in ("old.svg", "old.pdf", "old.png"):
        (tmp_path / "plots" / stale).write_text("stale")
    out = report.write_plots(tmp_path, records)
    names = {p.name for p in out}
    assert "m__d-edit__general__wiki__word_perplexity.png" in names
    assert not any("byte_perplexity" in n or "bits_per_byte" in n for n in names)
    assert "g__overview.png" in names
    for view in ("prune_minus_none", "kappa_vs_general", "tradeoff",
                 "editors_by_restraint__d__efficacy", "per_layer_kappa__rome"):
        assert f"m__d-edit__view__{view}.png" in names
    for png in out:
        assert png.read_bytes()[:8] == PNG
        assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    left = {p.name for p in (tmp_path / "plots").iterdir()}
    assert left == {p.with_suffix(f".{fmt}").name for p in out for fmt in ("png", "svg", "pdf")}


def test_paired_bounds_are_the_unedited_value_plus_the_change_interval(tmp_path):
    """Perplexity has no standard error: its band is the unedited value plus the 95% paired
    interval of the change (tables/paired.csv, comparison vs_unedited); other rows ignored."""
    from benchmark.report import paired_bounds

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "paired.csv").write_text(
        "cell,n_edits,variant,kind,task,metric,comparison,value_ref,delta,ci_low,ci_high\n"
        "abc,50,none,general,wikitext_heldout,word_perplexity,vs_unedited,70.0,5.0,3.5,7.25\n"
        "abc,50,prune-e,general,wikitext_heldout,word_perplexity,prune_vs_none,75.0,-2.0,-3.0,-1.0\n"
        "abc,50,none,general,known_facts,acc,vs_unedited,0.9,0.0,,\n")
    got = paired_bounds(tmp_path)
    assert got == {("abc", 50, "none", "general", "wikitext_heldout", "word_perplexity"):
                   (70.0 + 3.5, 70.0 + 7.25)}
    assert paired_bounds(tmp_path / "nothing") == {}
