"""Malformed grid files are rejected with errors naming the file and the field."""

from __future__ import annotations

import textwrap

import pytest

from benchmark.grid import load_grid, parse_grid
from benchmark.grid_checks import NameCheckers
from benchmark.grid_schema import GridError
from tests.runner.conftest import FAKE_NAMES

GOOD = """\
schema_version: 1
name: {name}
models: [tiny-llama]
editors: [rome]
datasets: [{{name: counterfact, split: edit}}]
n_edits: 8
checkpoints: [0, 4, 8]
trajectories: [none, {{kind: rect, keep: 0.4}}]
variants: [none, {{kind: prune, alpha: e}}]
evaluation: {{timing: first-n, editing_metrics: [efficacy], tasks: [{{name: known_facts, limit: 4}}]}}
"""


def _write(tmp_path, text, name="g"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _replace(old: str, new: str, name: str = "g") -> str:
    text = GOOD.format(name=name)
    assert old in text, old
    return text.replace(old, new)


def test_good_grid_parses(tmp_path):
    path = _write(tmp_path, GOOD.format(name="g"))
    grid = parse_grid(path, path.read_text(), FAKE_NAMES)
    assert len(grid.cells) == 2
    assert {c.trajectory.label for c in grid.cells} == {"none", "rect-0.4"}


# (case id, grid text, expected field in the message, expected words)
MALFORMED = [
    ("unknown-top-key", GOOD.format(name="g") + "colour: blue\n", "colour", "Extra inputs"),
    ("unknown-eval-key", _replace("timing: first-n", "timing: first-n, speed: 2"),
     "evaluation.speed", "Extra inputs"),
    ("bad-timing", _replace("timing: first-n", "timing: sometimes"), "evaluation.timing", "each"),
    ("unknown-model", _replace("[tiny-llama]", "[tiny-lama]"), "models[0]", "tiny-llama"),
    ("unknown-editor", _replace("editors: [rome]", "editors: [roam]"), "editors[0]", "rome"),
    ("unknown-task", _replace("name: known_facts", "name: known_fact"), "evaluation.tasks[0].name",
     "known_facts"),
    ("unknown-dataset", _replace("name: counterfact,", "name: counterfakt,"), "datasets[0].name",
     "counterfact"),
    ("checkpoint-beyond-edits", _replace("checkpoints: [0, 4, 8]", "checkpoints: [0, 4, 12]"),
     "checkpoints[2]", "exceeds n_edits"),
    ("checkpoints-unsorted", _replace("checkpoints: [0, 4, 8]", "checkpoints: [0, 8, 4, 8]"),
     "checkpoints", "increasing"),
    ("last-checkpoint-not-n", _replace("checkpoints: [0, 4, 8]", "checkpoints: [0, 4]"),
     "checkpoints", "must equal n_edits"),
    ("negative-edits", _replace("n_edits: 8", "n_edits: -1"), "n_edits", "greater than 0"),
    ("rect-keep-out-of-range", _replace("keep: 0.4", "keep: 1.5"), "trajectories[1].keep",
     "less than or equal"),
    ("unknown-restraint", _replace("{kind: rect, keep: 0.4}", "{kind: clip}"), "trajectories[1]",
     "kind"),
    ("rect-as-variant", _replace("variants: [none, {kind: prune, alpha: e}]",
                                 "variants: [none, {kind: rect}]"), "variants", "trajectory restraint"),
    ("posthoc-prune-trajectory", _replace("{kind: rect, keep: 0.4}", "{kind: prune, mode: posthoc}"),
     "trajectories", "online"),
    ("bad-alpha", _replace("alpha: e", "alpha: 3"), "variants[1].alpha", "'e'"),
    ("missing-models", GOOD.format(name="g").replace("models: [tiny-llama]\n", ""), "models",
     "required"),
    ("empty-editors", _replace("editors: [rome]", "editors: []"), "editors", "empty"),
    ("name-mismatch", GOOD.format(name="other"), "name", "differs from the file name"),
    ("bad-schema-version", GOOD.format(name="g").replace("schema_version: 1", "schema_version: 7"),
     "schema_version", "unsupported"),
    ("wrong-type", _replace("n_edits: 8", "n_edits: eight"), "n_edits", "integer"),
    ("batch-not-dividing", _replace("n_edits: 8", "n_edits: 8\nbatch_size: 3"), "checkpoints",
     "multiple of batch_size"),
    ("bad-block-field", GOOD.format(name="g") + "blocks:\n  - {editors: [rome], seeds: [-1]}\n",
     "blocks[0].seeds[0]", "greater than or equal"),
    ("dataset-too-small", _replace("name: counterfact, split: edit", "name: zsre, offset: 15"),
     "n_edits", "usable records"),
    ("hparams-for-absent-editor", GOOD.format(name="g") + "hparams: {memit: {layers: [1]}}\n",
     "hparams.memit", "not in editors"),
]


@pytest.mark.parametrize("case,text,field,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_grid_rejected(tmp_path, case, text, field, words):
    path = _write(tmp_path, text)
    with pytest.raises(GridError) as info:
        parse_grid(path, text, FAKE_NAMES)
    msg = str(info.value)
    assert str(path) in msg, msg
    assert field in msg, f"field {field!r} not named in: {msg}"
    assert words.lower() in msg.lower(), msg


def test_at_least_ten_malformed_cases():
    assert len(MALFORMED) >= 10


def test_invalid_yaml_names_file(tmp_path):
    path = _write(tmp_path, "models: [tiny-llama\n")
    with pytest.raises(GridError) as info:
        parse_grid(path, path.read_text(), FAKE_NAMES)
    assert str(path) in str(info.value) and "invalid YAML" in str(info.value)


def test_not_a_mapping(tmp_path):
    path = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(GridError, match="mapping"):
        parse_grid(path, path.read_text(), FAKE_NAMES)


def test_real_model_registry_did_you_mean(tmp_path):
    text = _replace("[tiny-llama]", "[smollm2-135]")
    path = _write(tmp_path, text)
    names = NameCheckers(editors=lambda: [], datasets=lambda: [], tasks=lambda: [],
                         editing_metrics=lambda: [], check_hparams=False)
    with pytest.raises(GridError) as info:
        parse_grid(path, text, names)
    assert "Did you mean 'smollm2-135m'" in str(info.value)


def test_unknown_grid_name_did_you_mean():
    with pytest.raises(GridError) as info:
        load_grid("smokee")
    assert "smoke" in str(info.value)


def test_blocks_expand_separately(tmp_path):
    text = GOOD.format(name="g") + textwrap.dedent("""\
        blocks:
          - {}
          - {editors: [memit], batch_size: 2, trajectories: [none]}
        """)
    path = _write(tmp_path, text)
    grid = parse_grid(path, text, FAKE_NAMES)
    assert [(c.editor, c.batch_size, c.trajectory.label) for c in grid.cells] == [
        ("rome", 1, "none"), ("rome", 1, "rect-0.4"), ("memit", 2, "none")]


def test_duplicate_cells_rejected(tmp_path):
    text = GOOD.format(name="g") + "blocks:\n  - {}\n  - {}\n"
    path = _write(tmp_path, text)
    with pytest.raises(GridError, match="appears twice"):
        parse_grid(path, text, FAKE_NAMES)


def test_real_name_sources_answer():
    """The registries behind the default checks are found (a moved name would silently
    disable a check otherwise)."""
    names = NameCheckers()
    assert "smollm2-135m" in names.models()
    assert "rome" in names.editors()
    assert "counterfact" in names.datasets()
    assert "known_facts" in names.tasks()
    assert "efficacy" in names.editing_metrics()
    assert names.dataset_size("counterfact", "edit") > 100
