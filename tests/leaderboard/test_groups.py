"""Comparable-group keys: what pins the weights, and one slug per group."""

from __future__ import annotations

import hashlib
import json

from benchmark.leaderboard.groups import group_key, weights_identity

SPEC = {"model": "m", "dataset": {"name": "counterfact", "split": "edit"}, "n_edits": 10,
        "batch_size": 1, "evaluation": {"timing": "first-n"}}


def test_weights_identity_by_source():
    assert weights_identity({"source": "hub", "revision": "abc"}) == "abc"
    assert weights_identity({"gguf_sha256": "f" * 64}) == "f" * 64
    files = {"b.safetensors": "2", "a.safetensors": "1"}
    assert weights_identity({"weights_sha256": files, "config_sha256": "c"}) == \
        hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    assert weights_identity({"config_sha256": "c", "seed": 3}) == "c-seed3"
    assert weights_identity({"source": "hub", "revision": None}) is None


def test_every_key_separates_groups_and_slugs():
    base = group_key(SPEC, {"revision": "r1"}, ["teacher-forced"], [("editing", "cf", "p")])
    variants = [
        group_key({**SPEC, "model": "m2"}, {"revision": "r1"}, ["teacher-forced"]),
        group_key(SPEC, {"revision": "r2"}, ["teacher-forced"], [("editing", "cf", "p")]),
        group_key({**SPEC, "n_edits": 20}, {"revision": "r1"}, ["teacher-forced"],
                  [("editing", "cf", "p")]),
        group_key({**SPEC, "batch_size": 2}, {"revision": "r1"}, ["teacher-forced"],
                  [("editing", "cf", "p")]),
        group_key({**SPEC, "evaluation": {"timing": "final"}}, {"revision": "r1"},
                  ["teacher-forced"], [("editing", "cf", "p")]),
        group_key(SPEC, {"revision": "r1"}, ["greedy"], [("editing", "cf", "p")]),
        group_key(SPEC, {"revision": "r1"}, ["teacher-forced"], [("editing", "cf", "q")]),
        group_key(SPEC, {"config_sha256": "c", "seed": 1}, ["teacher-forced"]),
        group_key(SPEC, {"config_sha256": "c", "seed": 2}, ["teacher-forced"]),
    ]
    keys = [base, *variants]
    assert len(set(keys)) == len(keys)
    assert len({k.slug() for k in keys}) == len(keys)
    assert base == group_key(SPEC, {"revision": "r1"}, ["teacher-forced", "teacher-forced"],
                             [("editing", "cf", "p"), ("editing", "cf", "p")])
