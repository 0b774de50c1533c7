"""Every shipped paper-model hparams file against the table of released values in
docs/methods.md §2.6 (parsed from the Markdown), so the document and the files cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from editors import hparams as H

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
PAPER_MODELS = ("gpt2-xl", "gpt-j-6b", "llama2-7b", "llama3-8b", "llama3-8b-instruct")
#: the methods whose files copy a released configuration (MEND's are trained, not released)
METHODS = ("rome", "memit", "memit-seq", "alphaedit", "nse")
HEADER = "| file | layers | v_lr | steps | clamp | wd | wd form | templates | statistics | λ | key average | settings | release |"


def _table() -> dict[str, dict[str, str]]:
    """Rows of the released-values table, keyed by ``method/model``."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER)
    names = [c.strip() for c in HEADER.strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(names), line
        row = dict(zip(names, cells))
        assert row["file"] not in rows, f"duplicate row {row['file']}"
        rows[row["file"]] = row
    return rows


def _layers(text: str) -> list[int]:
    m = re.fullmatch(r"(\d+)–(\d+)", text)
    return list(range(int(m[1]), int(m[2]) + 1)) if m else [int(text)]


def _number_or_none(text: str) -> float | None:
    return None if text == "—" else float(text)


def _settings(text: str) -> dict[str, str]:
    if text == "—":
        return {}
    return dict(part.strip().split("=", 1) for part in text.split(","))


def _shipped() -> list[str]:
    return sorted(f"{p.parent.name}/{p.stem}" for p in H.HPARAMS_DIR.glob("*/*.yaml")
                  if p.stem in PAPER_MODELS and p.parent.name in METHODS)


def test_table_has_exactly_one_row_per_shipped_paper_model_file():
    assert sorted(_table()) == _shipped()


@pytest.mark.parametrize("name", _shipped())
def test_file_matches_its_released_row(name):
    row = _table()[name]
    method, model = name.split("/")
    raw = yaml.safe_load(H.hparams_path(method, model).read_text())
    hp = H.load_hparams(method, model)
    t = hp.target
    assert hp.layers == _layers(row["layers"])
    assert (t.v_lr, t.v_num_grad_steps, t.clamp_norm_factor, t.v_weight_decay) == (
        float(row["v_lr"]), int(row["steps"]), float(row["clamp"]), float(row["wd"]))
    assert raw["target"]["weight_decay_form"] == t.weight_decay_form == row["wd form"]
    assert [list(x) for x in hp.templates.lengths] == json.loads(row["templates"])
    corpus, n = row["statistics"].split()
    assert (hp.stats.corpus, hp.stats.n_samples) == (corpus, int(n))
    assert getattr(hp, "mom2_update_weight", None) == _number_or_none(row["λ"])
    if method == "rome":
        assert row["key average"] == "—"
    else:
        assert raw["key_average"] == hp.key_average == row["key average"]
    for field, value in _settings(row["settings"]).items():
        got = getattr(hp, field)
        assert (str(got) == value if isinstance(got, str) else float(got) == float(value)), field
    assert hp.source.startswith("NOT RELEASED") == row["release"].startswith("NOT RELEASED")
