"""The committed batch-editor hyperparameter files (MEMIT, sequential MEMIT, AlphaEdit, NSE)
load, name their source, and fit the models they are for."""

from __future__ import annotations

import pytest

from benchmark.models import get_entry
from editors.hparams import HPARAMS_DIR, load_hparams

METHODS = ("memit", "memit-seq", "alphaedit", "nse")
FILES = sorted((m, p.stem) for m in METHODS for p in (HPARAMS_DIR / m).glob("*.yaml"))


def test_every_batch_method_has_the_embedded_and_paper_models():
    have = set(FILES)
    for method in METHODS:
        for model in ("smollm2-135m", "gemma3-270m", "gpt2-xl", "gpt-j-6b", "llama3-8b-instruct"):
            assert (method, model) in have, f"missing editors/hparams/{method}/{model}.yaml"


@pytest.mark.parametrize(("method", "model"), FILES)
def test_hparams_file_is_valid_for_its_model(method, model):
    hp = load_hparams(method, model)
    arch = get_entry(model).arch
    assert hp.source.strip()
    assert all(0 <= layer < arch.n_layers for layer in hp.layers)
    assert hp.layers == sorted(hp.layers)
    if method == "nse":
        assert hp.alpha < hp.upper_bound
    if method == "alphaedit":
        assert hp.L2 > 0


@pytest.mark.parametrize("method", METHODS)
def test_committed_tiny_settings_edit_through_the_registry(method, tmp_path):
    import torch

    from benchmark import models
    from editors import create_editor
    from tests.editors.test_memit import REQUESTS

    lm = models.load("tiny-gpt2")
    editor = create_editor(method, lm, cache_root=tmp_path, progress=False)
    assert editor.name == method
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:2], state)
    delta = editor.compute(lm, REQUESTS[:2], state)
    assert sorted(delta.matrices) == sorted(lm.arch.down_name(layer) for layer in editor.hparams.layers)
    assert all(torch.isfinite(md.to_dense()).all() for md in delta.matrices.values())
