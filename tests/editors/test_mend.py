"""MEND on the tiny models: the gradient decomposition against autograd, the network's
initial identity map and running moments against plain formulas, and the Delta's factors
and rank through the editor contract."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core.arch import LoadedModel, get_module, to_out_in
from benchmark.core.requests import EditRequest
from editors import create_editor
from editors.base import apply_delta
from editors.hparams import load_hparams, parse_hparams
from editors.mend import batches, grads, store
from editors.mend.editor import mend_delta
from editors.mend.network import GradientTransform, LowRankBlock, MENDNetwork

REQUESTS = (
    EditRequest("a", "The Eiffel Tower is located in", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("b", "Danielle Darrieux speaks", "Danielle Darrieux", "English language", "French"),
)


def _double(lm: LoadedModel) -> LoadedModel:
    """A float64 copy whose parameters take gradients (for autograd's reference)."""
    model = copy.deepcopy(lm.model).double().requires_grad_(True)
    return LoadedModel(lm.entry, model, lm.tokenizer, lm.identity)


def _names(lm: LoadedModel) -> list[str]:
    return store.matrix_names(lm, load_hparams("mend", lm.entry.name))


def test_decomposition_equals_autograd_weight_gradient(tiny):
    lm = _double(tiny)
    names = _names(lm)
    batch = batches.encode(lm.tokenizer, [(r.prompt, r.target_new) for r in REQUESTS], 24)

    def loss_fn(model):
        return batches.masked_nll(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                                  batch.labels)

    pieces, _ = grads.capture(lm.model, names, loss_fn)
    weights = [get_module(lm.model, n).weight for n in names]
    expected = torch.autograd.grad(loss_fn(lm.model), weights)
    for name, w, g in zip(names, weights, expected):
        u, delta = pieces[name]
        got = grads.outer_sum(u, delta)
        want = to_out_in(g, lm.arch.layout)
        assert got.shape == want.shape == to_out_in(w, lm.arch.layout).shape
        assert torch.allclose(got, want, atol=1e-6, rtol=0), name
        assert float(want.abs().max()) > 1e-4  # not trivially zero
    assert all(p.grad is None and p.requires_grad for p in lm.model.parameters())  # left as found


def test_running_moments_and_normalisation_match_numpy():
    from editors.mend.hparams import NetworkSpec

    gt = GradientTransform(3, 2, NetworkSpec(rank=4), n_modes=1).train()
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(n, 5)) * [1, 2, 3, 4, 5] + 7 for n in (4, 1, 6)]
    for c in chunks:
        gt.observe(torch.tensor(c, dtype=torch.float32))
    rows = np.concatenate(chunks).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(gt.mean.numpy(), rows.mean(0), rtol=1e-10)
    np.testing.assert_allclose((gt.m2 / (gt.count - 1)).numpy(), rows.var(0, ddof=1), rtol=1e-9)
    gt.eval()
    x = torch.tensor(rng.normal(size=(2, 5)), dtype=torch.float32)
    want = (x.numpy() - rows.mean(0)) / (rows.std(0, ddof=1) + 1e-7)
    u, d = gt(x[:, :3], x[:, 3:], 0)  # fresh blocks are the identity map
    np.testing.assert_allclose(torch.cat([u, d], 1).detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_low_rank_block_formula():
    torch.manual_seed(0)
    block = LowRankBlock(6, 3, n_modes=2)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
    x = torch.randn(4, 6)
    U, V, b = block.u.detach().numpy(), block.v.detach().numpy(), block.bias.detach().numpy()
    s, t = block.mode_scale[1].detach().numpy(), block.mode_shift[1].detach().numpy()
    xn = x.numpy()
    want = xn + np.maximum((xn @ V.T @ U.T + b) * s + t, 0)
    np.testing.assert_allclose(block(x, 1).detach().numpy(), want, rtol=1e-5, atol=1e-5)
    assert block.u.shape == (6, 3) and block.v.shape == (3, 6)


def _plain_network(lm: LoadedModel, edit_lr: float) -> MENDNetwork:
    hp = load_hparams("mend", lm.entry.name, {"network.norm": False, "network.edit_lr": edit_lr})
    return store.new_network(lm, hp).eval().to(torch.float64)


def test_delta_factors_rank_and_value(tiny):
    """Fresh network without normalisation = the identity map, so the Delta must be
    edit_lr x the fine-tuning gradient (autograd), with one factor column per token."""
    lm = _double(tiny)
    net = _plain_network(lm, 0.25)
    delta = mend_delta(lm, net, list(REQUESTS), 24)
    batch = batches.encode(lm.tokenizer, [(r.prompt, r.target_new) for r in REQUESTS], 24)
    n_tokens = int(batch.attention_mask.sum())
    weights = [get_module(lm.model, n).weight for n in net.names]
    loss = batches.masked_nll(lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                              batch.labels)
    expected = torch.autograd.grad(loss, weights)
    assert sorted(delta.matrices) == sorted(net.names)
    for name, g in zip(net.names, expected):
        md = delta.matrices[name]
        assert md.is_factored and md.A.shape[1] == md.B.shape[1] == md.rank_bound <= n_tokens
        assert torch.linalg.matrix_rank(md.to_dense()) <= n_tokens
        assert torch.allclose(md.to_dense(), 0.25 * to_out_in(g, lm.arch.layout), atol=1e-9, rtol=1e-7)
    assert delta.info["n_tokens"] == n_tokens


def test_delta_applies_to_every_changed_matrix(tiny):
    lm = _double(tiny)
    net = _plain_network(lm, -0.5)
    before = {n: get_module(lm.model, n).weight.detach().clone() for n in net.names}
    nll = batches.masked_nll
    batch = batches.encode(lm.tokenizer, [(REQUESTS[0].prompt, REQUESTS[0].target_new)], 24)
    with torch.no_grad():
        loss0 = float(nll(batches.logits(lm.model, batch), batch.labels))
    undo = apply_delta(lm.model, mend_delta(lm, net, REQUESTS[:1], 24))
    with torch.no_grad():
        loss1 = float(nll(batches.logits(lm.model, batch), batch.labels))
    changed = [n for n in net.names if not torch.equal(before[n], get_module(lm.model, n).weight)]
    undo.revert()
    assert changed == net.names
    assert loss1 < loss0  # a descent step on the edit loss lowers it


def test_missing_network_says_how_to_train(tiny, tmp_path):
    editor = create_editor("mend", tiny, cache_root=tmp_path)
    with pytest.raises(store.MissingNetwork, match=f"seqedit train --editor mend --model {tiny.entry.name}"):
        editor.prepare(tiny, list(REQUESTS), editor.init_state(tiny))


def test_shipped_settings_name_existing_matrices():
    for name in ("tiny-gpt2", "tiny-llama"):
        lm = models.load(name)
        hp = load_hparams("mend", name)
        for n in store.matrix_names(lm, hp):
            get_module(lm.model, n)
    hp = load_hparams("mend", "gpt2-xl")
    assert (hp.layers, hp.matrices, hp.network.rank, hp.network.edit_lr) == ([45, 46, 47], ["c_fc", "c_proj"],
                                                                              1920, 1e-4)
    assert (hp.train.lr, hp.train.lr_lr, hp.train.cedit, hp.train.cloc) == (1e-6, 1e-4, 0.1, 1.0)
    with pytest.raises(Exception, match="multiple of accumulate"):
        parse_hparams("mend", {**hp.model_dump(), "train": {**hp.train.model_dump(), "val_every": 15}})


def test_locality_kl_positions_against_a_direct_statement(tiny):
    """``answer`` keeps the positions that predict the answer's tokens (the prompt's last
    token up to the answer's second-to-last), ``sequence`` every unpadded position; the KL
    is the plain mean of Σ p_pre (log p_pre − log p_post) over them (numpy, float64)."""
    pairs = [("The Eiffel Tower is located in", "Paris"), ("Danielle Darrieux speaks the language", "French")]
    batch = batches.encode(tiny.tokenizer, pairs, 64)
    rng = np.random.default_rng(0)
    shape = (*batch.input_ids.shape, 11)
    pre, post = rng.normal(size=shape), rng.normal(size=shape)

    def direct(rows_positions):
        terms = []
        for i, positions in rows_positions:
            for p in positions:
                lp = pre[i, p] - np.log(np.exp(pre[i, p]).sum())
                lq = post[i, p] - np.log(np.exp(post[i, p]).sum())
                terms.append(float((np.exp(lp) * (lp - lq)).sum()))
        return np.mean(terms)

    answer_rows, seq_rows = [], []
    for i, (prompt, _target) in enumerate(pairs):
        n_prompt = len(tiny.tokenizer(prompt)["input_ids"])
        n_all = int(batch.attention_mask[i].sum())
        answer_rows.append((i, range(n_prompt - 1, n_all - 1)))
        seq_rows.append((i, range(n_all)))
    for positions, rows in (("answer", answer_rows), ("sequence", seq_rows)):
        got = batches.kl_loc(torch.tensor(pre), torch.tensor(post), batches.loc_mask(batch, positions))
        assert float(got) == pytest.approx(direct(rows), rel=1e-12)
    with pytest.raises(ValueError, match="loc_positions"):
        batches.loc_mask(batch, "prompt")
