"""Entry points of installed distributions register into the suite's registries."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.core.errors import DataError
from benchmark.core.registry import PluginError, Registry, UnknownName
from tests.plugins.conftest import write_distribution


def test_a_registry_reads_its_group_lazily(tmp_path, monkeypatch):
    write_distribution(tmp_path, "somedist", {"seqedit.test_group": {"thing": "json:dumps"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("thing", entry_points="seqedit.test_group")
    reg.register("builtin", "json:loads")
    assert reg.names() == ["builtin", "thing"]
    assert reg.get("thing") is json.dumps and reg["builtin"] is json.loads
    assert "somedist" in reg.plugin_origin("thing") and reg.plugin_origin("builtin") is None
    with pytest.raises(UnknownName, match="Did you mean 'thing'"):
        reg.get("thin")


def test_a_plugin_may_not_take_a_builtin_name(tmp_path, monkeypatch):
    write_distribution(tmp_path, "clash", {"seqedit.test_group": {"builtin": "json:dumps"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("thing", entry_points="seqedit.test_group")
    reg.register("builtin", "json:loads")
    with pytest.raises(PluginError, match="'builtin'.*clash|clash.*'builtin'"):
        reg.names()


def test_a_broken_plugin_names_its_distribution(tmp_path, monkeypatch):
    write_distribution(tmp_path, "broken", {"seqedit.test_group": {"bad": "no_such_module_x:Thing",
                                                                   "flat": "json"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("thing", entry_points="seqedit.test_group")
    with pytest.raises(PluginError, match="module:attribute"):
        reg.names()
    write_distribution(tmp_path / "b2", "broken2", {"seqedit.test_group2": {"bad": "no_such_module_x:T"}})
    monkeypatch.syspath_prepend(str(tmp_path / "b2"))
    reg2: Registry = Registry("thing", entry_points="seqedit.test_group2")
    with pytest.raises(PluginError, match="broken2.*no_such_module_x"):
        reg2.get("bad")


def test_plugin_restraint_as_an_evaluation_variant(fake_plugins):
    from benchmark.components import Restrainer
    from benchmark.spec import CellSpec, PluginRestraint

    spec = CellSpec(model="tiny-llama", editor="rome", dataset={"name": "counterfact"}, n_edits=2,
                    checkpoints=[0, 2], variants=["none", {"kind": "plugin", "name": "shrink",
                                                           "params": {"factor": 0.25}}])
    variant = spec.variants[1]
    assert isinstance(variant, PluginRestraint) and variant.label.startswith("shrink-")
    assert CellSpec(**{**spec.model_dump(), "variants": ["none", "shrink"]}).variants[1].label == "shrink"
    w0, acc = torch.randn(4, 3), torch.randn(4, 3)
    restrained = Restrainer(variant).for_evaluation(w0, acc, "m")
    torch.testing.assert_close(restrained, 0.25 * acc)
    assert Restrainer(variant).mask_edit(w0, acc) is acc  # no per-edit role: unchanged


def test_plugin_restraint_as_a_trajectory_restraint(fake_plugins):
    from benchmark.components import Restrainer
    from benchmark.spec import CellSpec

    spec = CellSpec(model="tiny-llama", editor="rome", dataset={"name": "counterfact"}, n_edits=2,
                    checkpoints=[0, 2], trajectory="halve-each")
    restrainer = Restrainer(spec.trajectory)
    w, a, b = torch.randn(4, 3), torch.randn(4, 1), torch.randn(3, 1)
    torch.testing.assert_close(restrainer.mask_edit(w, (a, b)), (a @ b.T) / 2)
    acc = torch.randn(4, 3)
    assert restrainer.for_evaluation(w, acc, "m") is acc  # no evaluation role: unchanged
    assert spec.slug.split("_")[3] == "halve-each"


def test_plugin_dataset_format_reads_a_file(fake_plugins, tmp_path):
    from benchmark.data.loaders import PARSERS, load_requests

    assert "triples" in PARSERS
    file = tmp_path / "facts.json"
    file.write_text(json.dumps([["Paris", "{} is the capital of", "Italy", "France"]]))
    (req,) = load_requests(path=file, format="triples")
    assert (req.prompt, req.subject, req.target_new) == ("Paris is the capital of", "Paris", " Italy")
    with pytest.raises(DataError, match="triples"):
        load_requests(path=file, format="triplez")


def test_plugin_task_uses_its_own_yaml_folder(fake_plugins):
    from benchmark.evaluation import general
    from benchmark.evaluation.task_catalog import TASKS

    info = TASKS.get("fake_task")
    assert info.yaml_path == fake_plugins / "fake_tasks" / "fake_task.yaml"
    assert general._yaml_dirs()[-1] == fake_plugins / "fake_tasks"


def test_grid_checks_plugin_restraint_names(fake_plugins, tmp_path):
    from benchmark.grid import load_grid
    from benchmark.grid_schema import GridError

    text = (tmp_path / "g.yaml")
    base = ("schema_version: 1\nname: g\nmodels: [tiny-llama]\neditors: [rome]\n"
            "datasets: [{name: counterfact}]\nn_edits: 2\ncheckpoints: [0, 2]\n")
    text.write_text(base + "variants: [none, shrink]\n")
    assert [v.label for v in load_grid(text).cells[0].variants] == ["none", "shrink"]
    text.write_text(base + "variants: [none, shrnk]\n")
    with pytest.raises(GridError, match="Did you mean 'shrink'") as err:
        load_grid(text)
    assert "variants[1].name" in str(err.value)


def test_grid_reads_a_file_in_a_plugin_format(fake_plugins, tmp_path):
    from benchmark.grid import load_grid

    facts = [["Paris", "{} is the capital of", "Italy", "France"],
             ["Rome", "{} is the capital of", "Spain", "Italy"]]
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    grid = tmp_path / "g.yaml"
    grid.write_text("schema_version: 1\nname: g\nmodels: [tiny-llama]\neditors: [rome]\n"
                    "datasets: [{path: facts.json, format: triples}]\nn_edits: 2\n"
                    "checkpoints: [0, 2]\n")
    (cell,) = load_grid(grid).cells
    assert cell.dataset.format == "triples"
    assert cell.dataset.path == str(tmp_path / "facts.json")
