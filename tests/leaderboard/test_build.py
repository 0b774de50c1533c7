"""``seqedit leaderboard build``: refuses invalid folders, writes a deterministic local site,
and its figures agree with plain computations over the records and provenance."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from scipy.stats import norm

from benchmark.cli import main
from benchmark.core import settings
from benchmark.leaderboard.build import SITE, SOURCES, build_site
from benchmark.leaderboard.groups import group_key
from benchmark.validate import InvalidResults
from tests.leaderboard.conftest import current, site_sources


def _records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _data(site: Path) -> dict:
    return json.loads((site / "data.json").read_text())


def test_build_refuses_an_invalid_folder_and_writes_nothing(submission, tmp_path, capsys):
    (submission / "grid.yaml").unlink()
    with pytest.raises(InvalidResults, match="grid.yaml"):
        build_site([submission], tmp_path / "site")
    assert not (tmp_path / "site").exists()
    assert main(["leaderboard", "build", str(submission), "--out", str(tmp_path / "site")]) == 2
    assert "grid.yaml: missing" in capsys.readouterr().err


def test_build_is_deterministic_and_local(submission, tmp_path):
    a = build_site([submission], tmp_path / "a")
    b = build_site([submission], tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert a.rows == b.rows > 0
    for name, content in _tree(tmp_path / "a").items():
        if name.endswith((".html", ".js", ".css")):  # nothing fetched from a network
            assert not re.search(rb"(src|href)=\"(https?:)?//", content), name
            assert b"http://" not in content.replace(b"http://www.w3.org/2000/svg", b""), name


def test_build_replaces_only_a_site(submission, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="no leaderboard site"):
        build_site([submission], other)
    assert (other / "notes.txt").read_text() == "mine"
    build_site([submission], tmp_path / "site")
    build_site([submission], tmp_path / "site")  # a site is rebuilt in place


def test_rows_are_cells_times_variants_grouped_by_comparable_setting(submission, tmp_path):
    build_site([submission], tmp_path / "site")
    data = _data(tmp_path / "site")
    cells = [json.loads(x) for x in (submission / "cells.jsonl").read_text().splitlines()]
    recs = _records(submission)
    expected = {}
    for c in cells:
        prov = json.loads((submission / "provenance" / f"{c['folder']}.json").read_text())
        protocols = [(r["kind"], r["task"], r.get("protocol", "")) for r in recs
                     if r["cell"] == c["cell"] and r["kind"] != "spectrum"]
        key = group_key(c["spec"], prov["model_identity"], ["teacher-forced"], protocols)
        expected[key.slug()] = expected.get(key.slug(), 0) + len(c["spec"]["variants"])
    got = {}
    for r in data["rows"]:
        got[r["group"]] = got.get(r["group"], 0) + 1
    assert got == expected
    assert len(expected) == 3  # tiny-gpt2; tiny-llama batch 1 first-n; tiny-llama batch 2 final


def test_figures_agree_with_the_records(submission, tmp_path):
    build_site([submission], tmp_path / "site")
    rows = {r["id"]: r for r in _data(tmp_path / "site")["rows"]}
    recs = _records(submission)
    z = norm.ppf(0.975)
    checked = 0
    for r in rows.values():
        last = r["n_edits"]
        mine = [x for x in recs if x["cell"] == r["cell"] and x["variant"] == r["variant"]]
        eff = next(x for x in mine if x["n_edits"] == last and x["metric"] == "efficacy")
        fig = r["figures"]["efficacy_tf"]
        assert fig["v"] == eff["value"]
        assert fig["lo"] == pytest.approx(max(0.0, eff["value"] - z * eff["stderr"]))
        assert fig["hi"] == pytest.approx(min(100.0, eff["value"] + z * eff["stderr"]))
        wp = next(x for x in mine if x["n_edits"] == last and x["metric"] == "word_perplexity")
        base = next(x for x in recs if x["cell"] == r["cell"] and x["n_edits"] == 0
                    and x["variant"] == "none" and x["metric"] == "word_perplexity")
        delta = r["figures"]["delta:general/wikitext_heldout/word_perplexity"]["v"]
        assert delta == pytest.approx(wp["value"] - base["value"])
        kappa = [x["value"] for x in mine if x["n_edits"] == last and x["metric"] == "kappa_w"]
        kappa0 = [x["value"] for x in recs if x["cell"] == r["cell"] and x["n_edits"] == 0
                  and x["variant"] == "none" and x["metric"] == "kappa_w"]
        assert r["figures"]["kappa_growth"]["v"] == pytest.approx(max(kappa) / max(kappa0))
        prov = json.loads((submission / "provenance" / f"{r['folder']}.json").read_text())
        assert r["figures"]["sec_per_edit"]["v"] == pytest.approx(prov["wall_seconds"]["edits"] / last)
        checked += 1
    assert checked == len(rows) == 19


def test_ranks_follow_efficacy_then_locality_within_each_group(submission, tmp_path):
    build_site([submission], tmp_path / "site")
    rows = _data(tmp_path / "site")["rows"]
    for group in {r["group"] for r in rows}:
        members = sorted((r for r in rows if r["group"] == group), key=lambda r: r["rank"])
        keys = [(-r["figures"]["efficacy_tf"]["v"], -r["figures"]["locality"]["v"]) for r in members]
        assert keys == sorted(keys)
        assert [r["rank"] for r in members] == list(range(1, len(members) + 1))


def _state(recs: list[dict], cell: str, n: int, variant: str) -> list[tuple]:
    return sorted((x["kind"], x["task"], x["metric"], x["value"], x["n"]) for x in recs
                  if x["cell"] == cell and x["n_edits"] == n and x["variant"] == variant)


def test_identity_variants_are_marked(submission, tmp_path):
    """A variant whose records equal none's at a checkpoint (the restraint did not act) lists
    that checkpoint; checkpoint 0 is always one."""
    build_site([submission], tmp_path / "site")
    recs = _records(submission)
    for r in _data(tmp_path / "site")["rows"]:
        if r["variant"] == "none":
            assert r["identity_at"] == []
            continue
        expected = [n for n in r["checkpoints"]
                    if _state(recs, r["cell"], n, r["variant"]) == _state(recs, r["cell"], n, "none")]
        assert r["identity_at"] == expected and expected[0] == 0


def test_curves_have_bands_from_the_standard_errors(submission, tmp_path):
    build_site([submission], tmp_path / "site")
    row = _data(tmp_path / "site")["rows"][0]
    recs = [x for x in _records(submission) if x["cell"] == row["cell"]
            and x["variant"] == row["variant"] and x["metric"] == "locality"]
    curve = row["curves"]["editing/counterfact/locality"]
    assert [p[0] for p in curve] == sorted(x["n_edits"] for x in recs)
    for (_, v, lo, hi), x in zip(curve, sorted(recs, key=lambda x: x["n_edits"])):
        assert v == x["value"] and not math.isnan(lo)
        assert hi - lo == pytest.approx(min(100, v + 1.96 * x["stderr"]) - max(0, v - 1.96 * x["stderr"]),
                                        abs=1e-2)


def test_committed_site_is_up_to_date(tmp_path):
    """site/ is what `nox -s leaderboard` builds from the committed results."""
    stale = [s for s in SOURCES if not current(settings.REPO_ROOT / s)]
    assert not stale, f"committed results {stale} are not in the current schema"
    committed = settings.REPO_ROOT / SITE
    assert committed.is_dir(), "no site/: run `nox -s leaderboard` and commit site/"
    build_site(site_sources(tmp_path / "sources"), tmp_path / "site")
    assert _tree(tmp_path / "site") == _tree(committed), \
        "site/ differs from a fresh build: run `nox -s leaderboard` and commit site/"


def test_a_paired_table_gives_the_delta_intervals(submission, tmp_path):
    """With tables/paired.csv (comparison vs_unedited) the Δ column takes its interval."""
    recs = _records(submission)
    r = next(x for x in recs if x["kind"] == "general" and x["n_edits"] == 8
             and x["variant"] == "none" and x["metric"] == "word_perplexity")
    header = "cell,n_edits,variant,kind,task,metric,comparison,delta,ci_low,ci_high,method\n"
    rows = [f"{r['cell']},8,none,general,{r['task']},{r['metric']},vs_unedited,1.5,0.5,2.5,"
            "paired-bootstrap",
            f"{r['cell']},8,none,general,{r['task']},{r['metric']},rect_vs_none,9,8,10,paired-t"]
    (submission / "tables" / "paired.csv").write_text(header + "\n".join(rows) + "\n")
    build_site([submission], tmp_path / "site")
    row = next(x for x in _data(tmp_path / "site")["rows"]
               if x["cell"] == r["cell"] and x["variant"] == "none")
    fig = row["figures"][f"delta:general/{r['task']}/{r['metric']}"]
    assert (fig["v"], fig["lo"], fig["hi"]) == (1.5, 0.5, 2.5) and "paired" in fig["how"]
    other = next(x for x in _data(tmp_path / "site")["rows"]
                 if x["cell"] != r["cell"] and x["variant"] == "none")
    assert "unpaired" in other["figures"][f"delta:general/{r['task']}/{r['metric']}"]["how"] \
        or other["figures"][f"delta:general/{r['task']}/{r['metric']}"]["lo"] is None


def test_committed_flag_takes_no_folders(capsys):
    with pytest.raises(SystemExit):
        main(["leaderboard", "build", "--committed", "--out", "x"])
    assert "--committed takes no RESULT_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["leaderboard", "build", "somewhere"])
    assert "--out SITE_DIR" in capsys.readouterr().err


def test_a_different_protocol_is_a_different_group(submission, tmp_path):
    """Two cells that differ only in an evaluation protocol (a task's limit) are not ranked
    together."""
    recs = _records(submission)
    cell = recs[0]["cell"]
    for r in recs:
        if r["cell"] == cell and r["kind"] == "general" and "protocol" in r:
            r["protocol"] = '{"limit":3}'
    if "protocol" not in recs[0]:
        pytest.skip("schema-1 records carry no protocol")
    (submission / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                                      for r in recs))
    build_site([submission], tmp_path / "site")
    rows = _data(tmp_path / "site")["rows"]
    first = next(r for r in rows if r["cell"] == cell)
    mine = {r["group"] for r in rows if r["cell"] == cell}
    peers = {r["group"] for r in rows if r["cell"] != cell and r["model"] == first["model"]
             and r["n_edits"] == first["n_edits"] and r["editor"] == first["editor"]}
    assert peers and len(mine) == 1 and not mine & peers
