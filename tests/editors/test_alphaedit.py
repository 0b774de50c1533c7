"""AlphaEdit on tiny random models: preserved keys are annihilated, P is cached on disk,
the accumulated keys round-trip through a checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from benchmark.core.arch import to_out_in
from editors import stats
from editors.alphaedit import AlphaEdit
from editors.base import apply_delta
from editors.hparams import parse_hparams
from tests.editors.test_memit import REQUESTS


def hparams(kind="relative", threshold=0.05, beta=1.0, layers=(1, 2)):
    return parse_hparams("alphaedit", {
        "source": "test", "layers": list(layers),
        "templates": {"lengths": [[3, 2]]},
        "target": {"v_num_grad_steps": 4, "v_lr": 0.5, "clamp_norm_factor": 4.0},
        "stats": {"n_samples": 6, "context_cap": 64},
        "nullspace_threshold": threshold, "nullspace_threshold_kind": kind, "L2": beta,
    })


@pytest.fixture()
def cache(tmp_path):
    return tmp_path


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_alphaedit_annihilates_the_preserved_keys(name, cache):
    lm = models.load(name)
    hp = hparams()
    editor = AlphaEdit(hp, cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:3], state)
    delta = editor.compute(lm, REQUESTS[:3], state)
    for layer in hp.layers:
        # preserved subspace, independently: eigenvectors of C0 with eigenvalue >= 5% of the largest
        c0 = stats.second_moment(lm, layer, hp.stats, cache_root=cache, progress=False).double().numpy()
        w, V = np.linalg.eigh((c0 + c0.T) / 2)
        keep = V[:, w >= 0.05 * w.max()]
        assert 0 < keep.shape[1] < c0.shape[0]
        K0 = keep @ np.random.default_rng(0).standard_normal((keep.shape[1], 20))
        md = delta.matrices[lm.arch.down_name(layer)]
        W = to_out_in(core_arch.down_weight(lm.model, lm.arch, layer), lm.arch.layout)
        assert md.A.shape == (W.shape[0], 3) and md.B.shape == (W.shape[1], 3)
        dW = md.A.double().numpy() @ md.B.double().numpy().T
        assert np.isfinite(dW).all() and np.abs(dW).max() > 0
        assert np.linalg.matrix_rank(dW) <= 3
        rel = np.linalg.norm(dW @ K0) / (np.linalg.norm(dW) * np.linalg.norm(K0))
        assert rel < 1e-5, f"layer {layer}: preserved keys moved by {rel:.2e}"


def test_alphaedit_projection_is_cached_and_keyed_by_the_threshold(cache):
    lm = models.load("tiny-llama")
    name = "derived:alphaedit-null-projection"
    before = stats.COMPUTE_COUNT[name]
    P1 = AlphaEdit(hparams(), cache_root=cache, progress=False).projections(lm)
    assert stats.COMPUTE_COUNT[name] == before + 2  # two layers built
    P2 = AlphaEdit(hparams(), cache_root=cache, progress=False).projections(lm)
    assert stats.COMPUTE_COUNT[name] == before + 2  # loaded from disk, not rebuilt
    for layer in P1:
        assert torch.equal(P1[layer], P2[layer])
    P3 = AlphaEdit(hparams(threshold=0.2), cache_root=cache, progress=False).projections(lm)
    assert stats.COMPUTE_COUNT[name] == before + 4  # a new threshold is a new key
    assert float(P3[1].trace()) > float(P1[1].trace())  # a larger threshold, a larger null space
    # P is an orthogonal projection
    P = P1[1].double()
    torch.testing.assert_close(P @ P, P, rtol=0, atol=1e-5)
    torch.testing.assert_close(P, P.T, rtol=0, atol=1e-6)


def test_alphaedit_state_accumulates_and_round_trips(cache):
    lm = models.load("tiny-llama")
    editor = AlphaEdit(hparams(), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS, state)
    assert all(float(t.abs().max()) == 0 for t in state.tensors.values())
    undo = apply_delta(lm.model, editor.compute(lm, REQUESTS[:2], state))
    try:
        assert state.meta["n_keys"] == 2
        assert all(float(t.abs().max()) > 0 for t in state.tensors.values())
        buf = io.BytesIO()
        torch.save(state.state_dict(), buf)
        buf.seek(0)
        restored = editor.init_state(lm)
        restored.load_state_dict(torch.load(buf))
        d1 = editor.compute(lm, REQUESTS[2:], state)
        d2 = editor.compute(lm, REQUESTS[2:], restored)
    finally:
        undo.revert()
    for name, md in d1.matrices.items():
        assert torch.equal(md.to_dense(), d2.matrices[name].to_dense())
    assert state.meta["n_keys"] == restored.meta["n_keys"] == 4


def test_alphaedit_with_no_null_space_edits_nothing(cache):
    lm = models.load("tiny-llama")
    editor = AlphaEdit(hparams(kind="absolute", threshold=1e-12), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:1], state)
    delta = editor.compute(lm, REQUESTS[:1], state)
    assert all(float(md.to_dense().abs().max()) == 0 for md in delta.matrices.values())
    assert delta.info["null_space_dim"] == {1: 0, 2: 0}
