"""MEND training on a tiny model: the loss falls, a run killed after a checkpoint resumes
to the same network (same bytes), the stored network is found again by its key and used
by the editor, and a wrong data file is named."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark import models
from benchmark.core.errors import DataError
from benchmark.training import train_mend
from benchmark.training.data import load_examples, training_order
from editors import create_editor
from editors.hparams import load_hparams
from editors.mend import store
from editors.mend.hparams import DataFile


@pytest.fixture(scope="module")
def lm():
    return models.load("tiny-gpt2")


def _hp(**train):
    return load_hparams("mend", "tiny-gpt2", {f"train.{k}": v for k, v in train.items()} or None)


class Killed(Exception):
    pass


def test_training_loss_falls(lm, tmp_path):
    hp = _hp(max_steps=60, val_every=20, checkpoint_every=20, patience=60)
    out = train_mend(lm, hp, cache_root=tmp_path, progress=False)
    curve = out["summary"]["curve"]
    assert [p["step"] for p in curve] == [20, 40, 60]
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]
    assert curve[-1]["val_loss"] < curve[0]["val_loss"]
    assert out["summary"]["validation"]["split"] == "val"
    folder = store.network_dir(lm, store.network_key(lm, hp), tmp_path)
    assert (folder / "network.safetensors").is_file() and (folder / "curve.csv").is_file()
    assert not (folder / "checkpoint.safetensors").exists()


def test_resume_after_kill_gives_the_same_network(lm, tmp_path):
    hp = _hp(max_steps=30, val_every=10, checkpoint_every=10, patience=30)
    straight = train_mend(lm, hp, cache_root=tmp_path / "a", progress=False)

    def kill(step: int) -> None:
        if step == 14:  # past the checkpoint at 10: edits 11-14 are lost and redone
            raise Killed

    with pytest.raises(Killed):
        train_mend(lm, hp, cache_root=tmp_path / "b", progress=False, after_step=kill)
    seen: list[int] = []
    resumed = train_mend(lm, hp, cache_root=tmp_path / "b", progress=False, after_step=seen.append)
    assert seen[0] == 11
    a = (tmp_path / "a").rglob("network.safetensors")
    b = (tmp_path / "b").rglob("network.safetensors")
    assert next(a).read_bytes() == next(b).read_bytes()
    assert straight["file_sha256"] == resumed["file_sha256"]
    def losses(out):
        return [{k: v for k, v in p.items() if k != "elapsed_s"} for p in out["summary"]["curve"]]

    assert losses(straight) == losses(resumed)


def test_stored_network_is_reused_and_edits(lm, tmp_path):
    hp = _hp(max_steps=10, val_every=10, checkpoint_every=10)
    first = train_mend(lm, hp, cache_root=tmp_path, progress=False)
    calls: list[int] = []
    again = train_mend(lm, hp, cache_root=tmp_path, progress=False, after_step=calls.append)
    assert calls == [] and again["file_sha256"] == first["file_sha256"]
    editor = create_editor("mend", lm, hp, cache_root=tmp_path)
    request = load_examples(hp.train.validation)[0].request
    editor.prepare(lm, [request], editor.init_state(lm))
    delta = editor.compute(lm, [request], editor.init_state(lm))
    assert sorted(delta.matrices) == sorted(store.matrix_names(lm, hp))
    assert delta.info["network_sha256"] == first["key_sha256"]
    meta = json.loads((store.network_dir(lm, store.network_key(lm, hp), tmp_path) / "network.json").read_text())
    assert meta["key"]["data"][0]["sha256"] and meta["key"]["identity"] == lm.identity
    other = _hp(max_steps=10, val_every=10, checkpoint_every=10, seed=1)
    assert store.network_key(lm, other) != store.network_key(lm, hp)


def test_wrong_data_file_is_named():
    with pytest.raises(DataError, match="zsre/zsre_mend_train-1k.json"):
        load_examples(DataFile(dataset="counterfact", split="train", file="zsre/zsre_mend_train-1k.json"))


def test_training_order_is_a_seeded_permutation_per_epoch():
    order = training_order(5, 3, 12)
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))
    assert order == training_order(5, 3, 12) and order != training_order(5, 4, 12)


def test_gradient_reaches_only_the_network(lm):
    from benchmark.training.steps import edit_step

    hp = _hp()
    net = store.new_network(lm, hp).train()
    ex = load_examples(hp.train.validation)[1]
    result = edit_step(lm, net, hp, ex)
    result.loss.backward()
    assert net.edit_lrs.grad is not None and float(net.edit_lrs.grad.abs().sum()) > 0
    assert all(p.grad is None for p in lm.model.parameters())


def test_single_edit_check_restores_the_model_and_uses_unseen_facts(lm, tmp_path):
    from benchmark.training.check import single_edit_check, unseen_requests
    from benchmark.training.data import combined

    hp = _hp(max_steps=10, val_every=10, checkpoint_every=10)
    train_mend(lm, hp, cache_root=tmp_path, progress=False)
    requests = unseen_requests(hp, 3)
    seen = {ex.request.subject for ex in combined([*hp.train.data, hp.train.validation])}
    assert not seen & {r.subject for r in requests}
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    out = single_edit_check(lm, create_editor("mend", lm, hp, cache_root=tmp_path), requests)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert out["n"] == 3 and set(out["edited"]) == set(out["unedited"]) == {"efficacy", "generalization", "locality"}
    assert all(0 <= v <= 100 for v in [*out["edited"].values(), *out["unedited"].values()])


def test_train_command(tmp_path, capsys):
    from benchmark.cli import main

    args = ["train", "--editor", "mend", "--model", "tiny-llama", "--cache-root", str(tmp_path), "--no-progress",
            "--json", "--set", "train.max_steps=10", "--set", "train.val_every=10", "--set", "train.checkpoint_every=10"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 10 and out["validation"]["split"] == "val" and len(out["key_sha256"]) == 64
    assert main(["train", "--editor", "mend", "--model", "tiny-llama", "--cache-root", str(tmp_path),
                 "--set", "train.max_stepz=1"]) == 2
    assert "train.max_stepz" in capsys.readouterr().err
