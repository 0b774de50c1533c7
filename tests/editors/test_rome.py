"""ROME: closed form vs an independent constrained least-squares solve, rank one,
exact constraint, apply/revert bit for bit, on both weight layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.arch import down_weight, to_out_in
from benchmark.core.requests import EditRequest
from editors import create_editor, keys
from editors.base import apply_delta
from editors.rome import rome_closed_form
from editors.templates import context_templates

REQ = EditRequest("0", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English", "French")


def _kkt_solution(W, C0, k, v):
    """argmin_ΔW tr(ΔW C0 ΔWᵀ) s.t. (W + ΔW) k = v, row by row from the KKT system
    [[2 C0, k], [kᵀ, 0]] [x; μ] = [0; r_i], solved by numpy least squares."""
    d_in = C0.shape[0]
    r = v - W @ k
    kkt = np.zeros((d_in + 1, d_in + 1))
    kkt[:d_in, :d_in] = 2 * C0
    kkt[:d_in, d_in] = k
    kkt[d_in, :d_in] = k
    rhs = np.zeros((d_in + 1, len(r)))
    rhs[d_in] = r
    sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    return sol[:d_in].T  # out x in


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_constrained_least_squares(seed):
    rng = np.random.default_rng(seed)
    d_out, d_in, n = 7, 11, 50
    W = rng.normal(size=(d_out, d_in))
    K0 = rng.normal(size=(d_in, n)) * rng.uniform(0.2, 3.0, size=(d_in, 1))
    C0 = K0 @ K0.T / n
    k, v = rng.normal(size=d_in), rng.normal(size=d_out)
    A, B = rome_closed_form(torch.tensor(W), torch.tensor(C0), torch.tensor(k), torch.tensor(v))
    dW = (A @ B.T).numpy()
    expected = _kkt_solution(W, C0, k, v)
    np.testing.assert_allclose(dW, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose((W + dW) @ k, v, rtol=1e-10, atol=1e-10)
    assert np.linalg.matrix_rank(dW) == 1
    # optimality against random feasible competitors: ΔW + X with X k = 0
    obj = np.trace(dW @ C0 @ dW.T)
    for _ in range(5):
        X = rng.normal(size=(d_out, d_in))
        X -= np.outer(X @ k, k) / (k @ k)
        other = dW + 0.1 * X
        assert np.trace(other @ C0 @ other.T) >= obj


def _editor(lm, corpus_root, stats_cache, **overrides):
    return create_editor("rome", lm, overrides=overrides or None, data_root=corpus_root,
                         cache_root=stats_cache, progress=False)


def test_rome_delta_rank_one_constraint_and_exact_revert(tiny, corpus_root, stats_cache):
    ed = _editor(tiny, corpus_root, stats_cache)
    state = ed.init_state(tiny)
    ed.prepare(tiny, [REQ], state)
    (layer,) = ed.hparams.layers
    name = tiny.arch.down_name(layer)
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    delta = ed.compute(tiny, [REQ], state)
    for n, p in tiny.model.named_parameters():  # compute never touches the weights
        assert torch.equal(p, before[n]), n
    md = delta.matrices[name]
    assert list(delta.matrices) == [name] and md.is_factored and md.A.shape[1] == 1
    dense = md.to_dense()
    assert dense.shape == (tiny.arch.d_model, tiny.arch.d_ffn)  # out x in whatever the layout
    assert torch.linalg.matrix_rank(dense.double(), rtol=1e-5).item() == 1  # float32 factors

    out_before = keys.compute_outputs(tiny, [REQ], layer, "mlp_out")[0]
    k_bare = keys.compute_keys(tiny, [REQ], [layer], ("",))[layer][0]
    undo = apply_delta(tiny.model, delta)
    W_after = to_out_in(down_weight(tiny.model, tiny.arch, layer), tiny.arch.layout)
    W_before = to_out_in(before[name + ".weight"], tiny.arch.layout)
    torch.testing.assert_close(W_after - W_before, dense, rtol=1e-5, atol=1e-6)
    # the bare prompt's MLP output moves by exactly the optimised delta
    out_after = keys.compute_outputs(tiny, [REQ], layer, "mlp_out")[0]
    shift = out_after - out_before
    expected = (dense.double() @ k_bare.double()).float()
    torch.testing.assert_close(shift, expected, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(shift, md.A[:, 0] * float(md.B[:, 0] @ k_bare), rtol=1e-3, atol=1e-5)
    undo.revert()
    for n, p in tiny.model.named_parameters():
        assert torch.equal(p, before[n]), n


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_rome_average_constraint_meets_v_star_and_is_the_kkt_solution(name, corpus_root, stats_cache):
    """constraint_key average: (W + ΔW) k_avg = v* (= the bare prompt's MLP output + δ, a
    bias cancelling) to 1e-5, and ΔW is the numpy KKT minimiser for (k_avg, v*)."""
    from benchmark import models
    from editors import stats
    from editors.targets import compute_target

    lm = models.load(name)
    ed = _editor(lm, corpus_root, stats_cache, constraint_key="average")
    state = ed.init_state(lm)
    ed.prepare(lm, [REQ], state)
    (layer,) = ed.hparams.layers
    templates = context_templates(lm, ed.hparams.templates)
    assert len(templates) > 1  # the averaged key differs from the bare one
    W = to_out_in(down_weight(lm.model, lm.arch, layer), lm.arch.layout).double().numpy()
    k_avg = keys.compute_keys(lm, [REQ], [layer], templates)[layer][0].double().numpy()
    k_bare = keys.compute_keys(lm, [REQ], [layer], ("",))[layer][0].double().numpy()
    h = keys.compute_outputs(lm, [REQ], layer, "mlp_out")[0].double().numpy()  # W k_bare + b
    delta = ed.compute(lm, [REQ], state)
    dW = delta.matrices[lm.arch.down_name(layer)].to_dense().double().numpy()
    res = compute_target(lm, REQ, layer, templates, ed.hparams.target, point="mlp_out")
    v_star = h + res.delta.double().numpy()
    bias = h - W @ k_bare
    np.testing.assert_allclose((W + dW) @ k_avg + bias, v_star, rtol=1e-5, atol=1e-5)
    assert np.linalg.norm(W @ (k_bare - k_avg)) > 1e-3 * np.linalg.norm(res.delta.numpy())
    c0 = stats.second_moment(lm, layer, ed.hparams.stats, data_root=corpus_root,
                             cache_root=stats_cache, progress=False).double().numpy()
    np.testing.assert_allclose(dW, _kkt_solution(W, c0, k_avg, v_star - bias), rtol=1e-4, atol=1e-6)


def test_rome_rejects_batches(corpus_root, stats_cache):
    from benchmark import models

    lm = models.load("tiny-gpt2")
    ed = _editor(lm, corpus_root, stats_cache)
    with pytest.raises(ValueError, match="one fact"):
        ed.compute(lm, [REQ, REQ], ed.init_state(lm))
    assert ed.init_state(lm).state_dict() == {}
