"""NSE on tiny random models: rewound targets, the residual band, neuron selection,
outlier counting, state round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from benchmark.core.arch import to_out_in
from editors.base import apply_delta
from editors.hparams import parse_hparams
from editors.nse import NSE
from editors.targets import compute_targets
from editors.templates import context_templates
from tests.editors.test_memit import REQUESTS, read_at_subject


def hparams(alpha=1e-6, upper=1e6, p=1.0, iterations=3, layers=(1, 2), templates=((3, 2),)):
    return parse_hparams("nse", {
        "source": "test", "layers": list(layers), "mom2_update_weight": 5.0,
        "templates": {"lengths": [list(t) for t in templates]},
        "target": {"v_num_grad_steps": 4, "v_lr": 0.5, "clamp_norm_factor": 4.0},
        "stats": {"n_samples": 6, "context_cap": 64},
        "alpha": alpha, "upper_bound": upper, "neuron_fraction": p, "max_iterations": iterations,
    })


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("nse-stats")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_nse_delta_shapes_and_band_edits_everything_in_it(name, cache):
    lm = models.load(name)
    hp = hparams()
    editor = NSE(hp, cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:3], state)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    delta = editor.compute(lm, REQUESTS[:3], state)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert delta.info["passes"][0]["edited"] == ["c1", "c2", "c3"]
    assert 1 <= delta.info["n_passes"] <= 2 and delta.info["outliers_skipped"] == 0
    for layer in hp.layers:
        md = delta.matrices[lm.arch.down_name(layer)]
        W = to_out_in(core_arch.down_weight(lm.model, lm.arch, layer), lm.arch.layout)
        assert md.A.shape[0] == W.shape[0] and md.B.shape[0] == W.shape[1]
        assert md.A.shape[1] == md.B.shape[1] == 3 * delta.info["n_passes"]
        assert torch.isfinite(md.to_dense()).all() and md.to_dense().norm() > 0


def test_nse_targets_are_rewound_to_the_unedited_model(cache):
    lm = models.load("tiny-llama")
    hp = hparams()
    editor = NSE(hp, cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS, state)
    templates = context_templates(lm, hp.templates)
    expected = compute_targets(lm, REQUESTS, hp.layers[-1], templates, hp.target, point="residual")
    stored = state.tensors["targets"]
    assert state.meta["target_case_ids"] == [r.case_id for r in REQUESTS]
    for i, t in enumerate(expected):
        torch.testing.assert_close(stored[i], t.target, rtol=1e-5, atol=1e-5)
    undo = apply_delta(lm.model, editor.compute(lm, REQUESTS[:2], state))
    try:
        editor.prepare(lm, REQUESTS, state)  # on the edited model: nothing recomputed
        assert torch.equal(state.tensors["targets"], stored)
        # the second batch aims at the rewound targets: its first residual check is
        # ‖z*_unedited − h_L(edited model)‖, read independently
        delta = editor.compute(lm, REQUESTS[2:], state)
        z_layer = hp.layers[-1]
        for j, r in enumerate(REQUESTS[2:]):
            h = read_at_subject(lm, r, lm.arch.layer_name(z_layer), "output")
            want = float((stored[2 + j].double() - h).norm())
            assert delta.info["residual_checks"][0][j] == pytest.approx(want, rel=1e-4)
    finally:
        undo.revert()


def test_nse_requests_below_alpha_are_not_edited(cache):
    lm = models.load("tiny-llama")
    editor = NSE(hparams(alpha=1e6, upper=2e6), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:2], state)
    delta = editor.compute(lm, REQUESTS[:2], state)
    assert delta.info["n_passes"] == 0 and delta.info["outliers_skipped"] == 0
    assert all(md.rank_bound == 0 for md in delta.matrices.values())
    assert len(delta.matrices) == 2
    assert state.meta["n_keys"] == 2  # their keys are still protected from now on


def test_nse_outliers_are_skipped_and_counted(cache, caplog):
    lm = models.load("tiny-llama")
    editor = NSE(hparams(alpha=1e-9, upper=2e-9), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:3], state)
    with caplog.at_level("INFO", logger="editors.nse"):
        delta = editor.compute(lm, REQUESTS[:3], state)
    assert delta.info["outliers_skipped"] == 3
    assert delta.info["outlier_case_ids"] == ["c1", "c2", "c3"]
    assert delta.info["n_passes"] == 0
    assert "outlier" in caplog.text


def test_nse_max_iterations_bounds_the_editing_passes(cache):
    lm = models.load("tiny-llama")
    editor = NSE(hparams(iterations=1), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:2], state)
    assert editor.compute(lm, REQUESTS[:2], state).info["n_passes"] == 0
    editor = NSE(hparams(iterations=2), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:2], state)
    assert editor.compute(lm, REQUESTS[:2], state).info["n_passes"] == 1


def _direct_selection(K: np.ndarray, p: float) -> set[int]:
    scores = np.abs(K).sum(axis=1)
    order = np.argsort(-scores, kind="stable")
    csum = np.cumsum(scores[order])
    n = max(int((csum <= p * scores.sum()).sum()), 1)
    return set(order[:n].tolist())


def test_nse_updates_only_the_selected_neurons(cache):
    """One pass, bare-prompt keys: the first layer's update is nonzero exactly on the
    columns a direct numpy selection picks from independently read keys."""
    lm = models.load("tiny-llama")
    hp = hparams(p=0.5, iterations=2, templates=())
    editor = NSE(hp, cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS[:3], state)
    first = hp.layers[0]
    K = np.stack([read_at_subject(lm, r, lm.arch.down_name(first), "input").numpy()
                  for r in REQUESTS[:3]], 1)
    delta = editor.compute(lm, REQUESTS[:3], state)
    assert delta.info["n_passes"] == 1
    B = delta.matrices[lm.arch.down_name(first)].B.double().numpy()
    nonzero = set(np.nonzero(np.abs(B).sum(axis=1))[0].tolist())
    assert nonzero == _direct_selection(K, 0.5)
    assert len(nonzero) < lm.arch.d_ffn


def test_nse_state_round_trips(cache):
    lm = models.load("tiny-llama")
    editor = NSE(hparams(), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    editor.prepare(lm, REQUESTS, state)
    undo = apply_delta(lm.model, editor.compute(lm, REQUESTS[:2], state))
    try:
        buf = io.BytesIO()
        torch.save(state.state_dict(), buf)
        buf.seek(0)
        restored = editor.init_state(lm)
        restored.load_state_dict(torch.load(buf))
        assert restored.meta["target_case_ids"] == [r.case_id for r in REQUESTS]
        d1 = editor.compute(lm, REQUESTS[2:], state)
        d2 = editor.compute(lm, REQUESTS[2:], restored)
    finally:
        undo.revert()
    for name, md in d1.matrices.items():
        assert torch.equal(md.to_dense(), d2.matrices[name].to_dense())


def test_nse_without_prepared_targets_is_an_error(cache):
    lm = models.load("tiny-llama")
    editor = NSE(hparams(), cache_root=cache, progress=False)
    state = editor.init_state(lm)
    with pytest.raises(ValueError, match="prepare"):
        editor.compute(lm, REQUESTS[:1], state)


def test_nse_rejects_an_empty_band():
    with pytest.raises(ValueError, match="upper_bound"):
        NSE(hparams(alpha=5.0, upper=5.0))


def test_nse_targets_are_cached_under_every_input(tmp_path, monkeypatch):
    """A second editor on a fresh state reads z* from the disk cache (no target is optimised),
    bit for bit what a direct computation gives; other weights, settings or text recompute."""
    from editors import batch as batch_mod

    calls: list[str] = []
    real = batch_mod.residual_targets

    def counting(lm, requests, *args, **kwargs):
        calls.extend(r.case_id for r in requests)
        return real(lm, requests, *args, **kwargs)

    monkeypatch.setattr(batch_mod, "residual_targets", counting)
    lm = models.load("tiny-llama")
    hp = hparams()
    first = NSE(hp, cache_root=tmp_path, progress=False)
    s1 = first.init_state(lm)
    first.prepare(lm, REQUESTS[:3], s1)
    assert calls == ["c1", "c2", "c3"]
    # the direct computation, one request at a time as prepare does
    templates = context_templates(lm, hp.templates)
    direct = [compute_targets(lm, [r], hp.layers[-1], templates, hp.target, point="residual")[0].target
              for r in REQUESTS[:3]]
    assert all(torch.equal(s1.tensors["targets"][i], direct[i]) for i in range(3))

    calls.clear()
    second = NSE(hp, cache_root=tmp_path, progress=False)
    s2 = second.init_state(lm)
    second.prepare(lm, REQUESTS[:4], s2)
    assert calls == [REQUESTS[3].case_id]  # only the new request is optimised
    assert torch.equal(s2.tensors["targets"][:3], s1.tensors["targets"])

    calls.clear()  # other target settings: recomputed
    other = NSE(hparams(layers=(1, 2)).model_copy(update={"target": hp.target.model_copy(
        update={"v_lr": 0.25})}), cache_root=tmp_path, progress=False)
    other.prepare(lm, REQUESTS[:1], other.init_state(lm))
    assert calls == ["c1"]

    calls.clear()  # other weights under the same model name: recomputed
    with torch.no_grad():
        lm.model.get_output_embeddings().weight.mul_(1.5)
    again = NSE(hp, cache_root=tmp_path, progress=False)
    again.prepare(lm, REQUESTS[:1], again.init_state(lm))
    assert calls == ["c1"]
