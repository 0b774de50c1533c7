"""Fixtures for the data-layer tests: tiny malformed files live in tmp_path only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOOD_CF = {
    "case_id": 0, "prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux",
    "target_new": "English", "ground_truth": "French",
    "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
    "locality_prompt": "Michel Rocard is a native speaker of", "locality_ground_truth": "French",
}
GOOD_ZSRE = {
    "subject": "UniFirst", "src": "What is the product made by UniFirst?", "pred": "uniform",
    "rephrase": "What will be the product of UniFirst?", "alt": "unmanned aircraft", "answers": ["uniform"],
    "loc": "nq question: who plays the cat in the hat movie", "loc_ans": "Mike Myers",
}
GOOD_MQUAKE = {
    "case_id": 7, "requested_rewrite": [
        {"prompt": "{} was performed by", "subject": "Hey Jude", "target_new": {"str": "Madonna"},
         "target_true": {"str": "The Beatles"}, "question": "Who performed Hey Jude?"},
        {"prompt": "{} is a citizen of", "subject": "Madonna", "target_new": {"str": "Australia"},
         "target_true": {"str": "United States"}, "question": "What is Madonna's citizenship?"},
    ],
    "questions": ["What country is the performer of Hey Jude a citizen of?"],
    "answer": "United Kingdom", "answer_alias": ["UK"], "new_answer": "Australia", "new_answer_alias": ["AU"],
}
GOOD_ROME = {
    "case_id": 0, "requested_rewrite": {
        "prompt": "The mother tongue of {} is", "relation_id": "P103", "subject": "Danielle Darrieux",
        "target_new": {"str": "English", "id": "Q1860"}, "target_true": {"str": "French", "id": "Q150"}},
    "paraphrase_prompts": ["Danielle Darrieux speaks the language of"],
    "neighborhood_prompts": ["Michel Rocard is a native speaker of"],
    "generation_prompts": ["Danielle Darrieux's mother tongue is"],
}


def copies(record: dict, n: int = 3) -> list[dict]:
    out = []
    for i in range(n):
        r = json.loads(json.dumps(record))
        if "case_id" in r:
            r["case_id"] = i
        out.append(r)
    return out


@pytest.fixture
def write_json(tmp_path):
    def _write(obj, name: str = "data.json") -> Path:
        path = tmp_path / name
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
        return path

    return _write
