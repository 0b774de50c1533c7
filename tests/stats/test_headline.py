"""The generated README headline: block replacement, and its numbers against the samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmark import SUITE_VERSION
from benchmark.cli import main
from benchmark.core.errors import DataError
from benchmark.stats.headline import BEGIN, END, readme_block, render, update_readme
from tests.stats import synthetic

README = f"# Project\n\nIntro.\n\n{BEGIN}\nhand-typed table\n{END}\n\n## Next\n\nMore.\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    directory = tmp_path_factory.mktemp("syn")
    synthetic.write_folder(directory)
    return directory


def _table(block: str, first_header: str) -> dict[tuple[str, str, str], dict[str, str]]:
    lines = block[block.index(first_header):].splitlines()
    lines = lines[:next((i for i, x in enumerate(lines) if not x.startswith("|")), len(lines))]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in x.strip("|").split("|")))) for x in lines[2:]]
    return {(r["editor"], r["trajectory"], r["variant"]): r for r in rows}


def test_readme_block_equals_the_generated_block(folder, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert update_readme(readme, [folder]) is True
    text = readme.read_text()
    assert readme_block(text, readme) == render([folder])
    assert text.startswith("# Project\n\nIntro.\n\n" + BEGIN + "\nLast checkpoint of each row.")
    assert f"\n#### syn ({SUITE_VERSION}) · m · cf:edit\n" in text
    assert text.endswith(END + "\n\n## Next\n\nMore.\n")
    assert update_readme(readme, [folder]) is False  # regenerating changes nothing
    assert readme.read_text() == text


def test_readme_without_markers_is_a_named_error(folder, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n")
    with pytest.raises(DataError, match=r"README.md: no headline block"):
        update_readme(readme, [folder])


def _sample(samples, cell, n, variant, metric):
    (row,) = [s for s in samples if (s.cell, s.n_edits, s.variant, s.metric) == (cell, n, variant, metric)]
    return row


def _ppl(row) -> float:
    return math.exp(-np.sum(row.scores) / np.sum(row.weights))


def test_headline_numbers(folder):
    records, samples = synthetic.build()
    block = render([folder])
    change = _table(block, "| editor | trajectory | variant | edits | efficacy, teacher-forced")
    assert set(change) == {(e, t, v + (" (= none)" if e == "memit" and v == "prune-e" else ""))
                           for e in synthetic.EDITORS for t in synthetic.TRAJECTORIES
                           for v in synthetic.VARIANTS}
    row = change[("rome", "none", "none")]
    value = {(r.cell, r.n_edits, r.variant, r.metric): r.value for r in records}
    assert row["edits"] == "20"
    assert row["efficacy, teacher-forced"] == f"{value[('rome-none', 20, 'none', 'efficacy')]:.1f}"
    assert row["efficacy, generation"] == f"{value[('rome-none', 20, 'none', 'gen_efficacy')]:.1f}"
    delta = (_ppl(_sample(samples, "rome-none", 20, "none", "word_perplexity"))
             - _ppl(_sample(samples, "rome-none", 0, "none", "word_perplexity")))
    assert row["Δ held-out word ppl"].startswith(f"{delta:+.2f} [")
    assert row["Δ reasoning"] == "—"  # no such task in this folder
    known = (np.mean(_sample(samples, "rome-none", 20, "none", "acc").scores)
             - np.mean(_sample(samples, "rome-none", 0, "none", "acc").scores))
    assert row["Δ known facts"].startswith(f"{known:+.3f} [")
    assert row["collapse: general"].endswith(")") and row["collapse: general"][0] in "≈≤"

    prune = _table(block, "| editor | trajectory | variant | edits | Δ efficacy |")
    assert set(prune) == {("rome", "none", "prune-e"), ("rome", "rect-0.4", "prune-e"),
                          ("memit", "none", "prune-e (= none)"),
                          ("memit", "rect-0.4", "prune-e (= none)")}
    pdelta = (_ppl(_sample(samples, "rome-none", 20, "prune-e", "word_perplexity"))
              - _ppl(_sample(samples, "rome-none", 20, "none", "word_perplexity")))
    assert prune[("rome", "none", "prune-e")]["Δ held-out word ppl"].startswith(f"{pdelta:+.2f} [")
    assert prune[("memit", "none", "prune-e (= none)")]["Δ held-out word ppl"] == "+0.00 [0.00, 0.00]"


def test_report_command_updates_the_readme(folder, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["report", str(folder), "--update-readme", str(readme), "--readme-only"]) == 0
    assert "headline updated" in capsys.readouterr().out
    assert readme_block(readme.read_text()) == render([folder])
    assert main(["report", str(folder), "--readme-only"]) == 2
    assert "--readme-only needs --update-readme" in capsys.readouterr().err


def test_signals_match_counterfact_and_zsre_names():
    from benchmark.stats.headline import EFFICACY, SIGNALS

    teacher, generation = EFFICACY
    assert teacher.matches("editing", "zsre", "zsre_efficacy") and teacher.matches("editing", "cf", "efficacy")
    assert generation.matches("editing", "zsre", "zsre_gen_efficacy")
    assert not teacher.matches("editing", "cf", "gen_efficacy")
    ppl = SIGNALS[1]
    assert ppl.matches("general", "wikitext_heldout", "word_perplexity")
    assert not ppl.matches("general", "other", "word_perplexity")


def test_named_folders(folder):
    from benchmark.stats.headline import named_folders

    block = render([folder, folder])
    assert named_folders(block, Path("results")) == [Path("results") / SUITE_VERSION / "syn"]


def test_committed_readme_block_is_generated():
    """README.md's headline block equals the block generated from the result folders it
    names (skipped while the README has no block)."""
    from benchmark.stats.headline import named_folders

    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text(encoding="utf-8")
    if BEGIN not in text:
        pytest.skip("README.md has no headline block yet")
    block = readme_block(text)
    folders = named_folders(block, root / "results")
    if not folders:
        pytest.skip("the README's headline block names no result folder yet")
    assert block == render(folders), ("README.md's headline block is out of date: run "
                                      "seqedit report " + " ".join(map(str, folders))
                                      + " --update-readme README.md --readme-only")
