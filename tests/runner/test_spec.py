"""CellSpec: frozen, hash stable and sensitive to every field."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from benchmark.spec import (
    CellSpec,
    DatasetSpec,
    EvalSpec,
    FluencySpec,
    GenerationSpec,
    PruneSpec,
    RectSpec,
    TaskSpec,
)


def base_spec(**kw) -> CellSpec:
    args = dict(model="tiny-llama", editor="rome", dataset=DatasetSpec(name="counterfact"),
                n_edits=8, checkpoints=(0, 4, 8), variants=("none", {"kind": "prune"}),
                evaluation=EvalSpec(tasks=(TaskSpec(name="known_facts", limit=5),)))
    args.update(kw)
    return CellSpec(**args)


def independent_hash(spec: CellSpec) -> str:
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def test_hash_is_sha256_of_canonical_json():
    s = base_spec()
    assert s.spec_hash() == independent_hash(s)
    assert s.folder.endswith(s.spec_hash()[:12])


def test_hash_stable_across_processes():
    code = ("from tests.runner.test_spec import base_spec; print(base_spec().spec_hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("benchmark.core.settings").core.settings.REPO_ROOT))
    assert out.stdout.strip() == base_spec().spec_hash()


def test_equal_specs_equal_hash_and_usable_in_sets():
    a, b = base_spec(), base_spec(variants=["none", "prune"])
    assert a == b and a.spec_hash() == b.spec_hash()
    assert len({a, b}) == 1


def test_frozen():
    s = base_spec()
    with pytest.raises(ValidationError):
        s.n_edits = 9


# one mutation per field (nested fields included); the coverage check below makes a new
# field without a mutation here fail the test
MUTATIONS = {
    "spec_version": dict(spec_version=2),
    "suite_version": dict(suite_version="v0"),
    "model": dict(model="tiny-gpt2"),
    "editor": dict(editor="memit"),
    "hparams": dict(hparams={"layer": 2}),
    "dataset.name": dict(dataset=DatasetSpec(name="zsre")),
    "dataset.split": dict(dataset=DatasetSpec(name="counterfact", split="train")),
    "dataset.offset": dict(dataset=DatasetSpec(name="counterfact", offset=3)),
    "n_edits": dict(n_edits=12, checkpoints=(0, 4, 12)),
    "batch_size": dict(batch_size=2),
    "checkpoints": dict(checkpoints=(0, 2, 8)),
    "trajectory": dict(trajectory={"kind": "rect"}),
    "trajectory.keep": dict(trajectory=RectSpec(keep=0.2)),
    "trajectory.eps": dict(trajectory=RectSpec(eps=1e-6)),
    "variants": dict(variants=("none",)),
    "variants.alpha": dict(variants=("none", PruneSpec(alpha="2"))),
    "variants.variant": dict(variants=("none", PruneSpec(variant="double_add"))),
    "trajectory.mode": dict(trajectory=PruneSpec(mode="online")),
    "evaluation.timing": dict(evaluation=EvalSpec(timing="final",
                                                  tasks=(TaskSpec(name="known_facts", limit=5),))),
    "evaluation.editing_metrics": dict(evaluation=EvalSpec(editing_metrics=("efficacy",),
                                                           tasks=(TaskSpec(name="known_facts", limit=5),))),
    "evaluation.tasks.name": dict(evaluation=EvalSpec(tasks=(TaskSpec(name="boolq", limit=5),))),
    "evaluation.tasks.limit": dict(evaluation=EvalSpec(tasks=(TaskSpec(name="known_facts", limit=6),))),
    "evaluation.batch_size": dict(evaluation=EvalSpec(batch_size=4, tasks=(TaskSpec(name="known_facts", limit=5),))),
    "evaluation.spectrum": dict(evaluation=EvalSpec(spectrum=False, tasks=(TaskSpec(name="known_facts", limit=5),))),
    "evaluation.chat_template": dict(evaluation=EvalSpec(chat_template=True, tasks=(TaskSpec(name="known_facts", limit=5),))),
    "evaluation.generation": dict(evaluation=EvalSpec(generation=GenerationSpec(match="contains"))),
    "evaluation.fluency": dict(evaluation=EvalSpec(fluency=FluencySpec(scored="continuation"))),
    "dataset.path": dict(dataset=DatasetSpec(name="counterfact", path="/data/cf.json",
                                             format="counterfact")),
    "dataset.format": dict(dataset=DatasetSpec(name="counterfact", path="/data/cf.json",
                                               format="counterfact-rome")),
    "dataset.sha256": dict(dataset=DatasetSpec(name="counterfact", path="/data/cf.json",
                                               format="counterfact", sha256="0" * 64)),
    "dataset.zsre_target": dict(dataset=DatasetSpec(name="zsre", zsre_target="alt")),
    "dataset.zsre_locality": dict(dataset=DatasetSpec(name="zsre", zsre_locality="loc")),
    "seed": dict(seed=1),
    "dtype": dict(dtype="float64"),
}


def _leaf_fields(model_cls, prefix="") -> set[str]:
    return {prefix + name for name in model_cls.model_fields}


def test_every_field_has_a_mutation():
    from benchmark.spec import DatasetSpec as D
    from benchmark.spec import EvalSpec as E
    from benchmark.spec import TaskSpec as T

    fields = _leaf_fields(CellSpec) | _leaf_fields(D, "dataset.") | _leaf_fields(E, "evaluation.") \
        | _leaf_fields(T, "evaluation.tasks.")
    fields -= {"evaluation.tasks", "dataset", "evaluation"}  # containers: their leaves count
    covered = {k for k in MUTATIONS}
    assert fields <= covered, f"fields without a hash-sensitivity mutation: {sorted(fields - covered)}"
    for restraint_field in ("keep", "eps", "alpha", "mode", "variant"):
        assert any(k.endswith("." + restraint_field) for k in covered)


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_hash_sensitive_to_every_field(field):
    base = base_spec()
    changed = base_spec(**MUTATIONS[field])
    assert changed != base
    assert changed.spec_hash() != base.spec_hash()
    assert changed.folder != base.folder


def test_all_mutations_distinct():
    hashes = {base_spec(**m).spec_hash() for m in MUTATIONS.values()} | {base_spec().spec_hash()}
    assert len(hashes) == len(MUTATIONS) + 1
