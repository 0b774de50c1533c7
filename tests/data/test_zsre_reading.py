"""The two zsRE readings (benchmark.data.loaders, DatasetSpec): ROME/MEMIT's released
``answers[0]`` + ``loc + "?"`` (default) and EasyEdit's ``alt`` + ``loc``, on hand-written
records."""

from __future__ import annotations

import json

import pytest

from benchmark.core.errors import DataError
from benchmark.data.loaders import ZSRE_DEFAULTS, load_records
from benchmark.spec import DatasetSpec

RECORDS = [
    {"subject": "Watts Humphrey", "src": "What university did Watts Humphrey attend?",
     "pred": "Trinity College", "rephrase": "Which university did Watts Humphrey go to?",
     "alt": "University of Michigan", "answers": ["Illinois Institute of Technology"],
     "loc": "nq question: who played desmond doss father in hacksaw ridge",
     "loc_ans": "Hugo Weaving", "cond": "x"},
]


@pytest.fixture
def zsre_file(tmp_path):
    path = tmp_path / "z.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path


def test_default_reading_is_rome_memit(zsre_file):
    assert ZSRE_DEFAULTS == {"zsre_target": "answers", "zsre_locality": "loc?"}
    (r,) = load_records(path=zsre_file, format="zsre-mend")
    assert r.target_new == "Illinois Institute of Technology" and r.target_true == "Trinity College"
    assert r.locality == (("nq question: who played desmond doss father in hacksaw ridge?", "Hugo Weaving"),)
    assert dict(r.extra)["zsre_target"] == "answers" and dict(r.extra)["zsre_locality"] == "loc?"


def test_easyedit_reading(zsre_file):
    (r,) = load_records(path=zsre_file, format="zsre-mend", zsre_target="alt", zsre_locality="loc")
    assert r.target_new == "University of Michigan" and r.target_true == "Illinois Institute of Technology"
    assert r.locality == (("nq question: who played desmond doss father in hacksaw ridge", "Hugo Weaving"),)
    assert r.prompt == RECORDS[0]["src"] and r.rephrase_prompts == (RECORDS[0]["rephrase"],)


def test_reading_options_are_refused_for_other_formats_and_bad_values(zsre_file, tmp_path):
    with pytest.raises(DataError, match="zsre_target"):
        load_records(path=zsre_file, format="zsre-mend", zsre_target="pred")
    cf = tmp_path / "cf.json"
    cf.write_text(json.dumps([{"case_id": 0, "prompt": "A is in", "subject": "A", "target_new": "x",
                               "ground_truth": "y", "rephrase_prompt": "A lies in",
                               "locality_prompt": "B is in", "locality_ground_truth": "z"}]))
    with pytest.raises(DataError, match="only apply to zsRE") as info:
        load_records(path=cf, format="counterfact-easyedit", zsre_locality="loc")
    assert info.value.field == "zsre_locality"
    assert len(load_records(path=cf, format="counterfact-easyedit")) == 1


def test_dataset_spec_records_the_reading_for_zsre_only():
    zs = DatasetSpec(name="zsre", split="eval")
    assert (zs.zsre_target, zs.zsre_locality) == ("answers", "loc?")
    assert zs.model_dump()["zsre_target"] == "answers" and zs.reading() == ZSRE_DEFAULTS
    alt = DatasetSpec(name="zsre", split="eval", zsre_target="alt", zsre_locality="loc")
    assert alt.model_dump() != zs.model_dump()  # the reading is part of the cell's identity
    assert DatasetSpec(path="/d/z.json", format="zsre").zsre_target == "answers"
    cf = DatasetSpec(name="counterfact", split="edit")
    assert "zsre_target" not in cf.model_dump() and cf.reading() == {}
    with pytest.raises(ValueError, match="only to zsRE"):
        DatasetSpec(name="counterfact", split="edit", zsre_target="alt")


def test_the_reading_changes_the_cell_hash():
    from benchmark.spec import CellSpec, EvalSpec, TaskSpec

    def cell(**reading):
        return CellSpec(model="tiny-llama", editor="rome", n_edits=4, checkpoints=(0, 4),
                        dataset=DatasetSpec(name="zsre", split="eval", **reading),
                        evaluation=EvalSpec(tasks=(TaskSpec(name="known_facts", limit=5),)))

    assert cell().spec_hash() == cell(zsre_target="answers", zsre_locality="loc?").spec_hash()
    assert len({cell().spec_hash(), cell(zsre_target="alt").spec_hash(),
                cell(zsre_locality="loc").spec_hash()}) == 3
