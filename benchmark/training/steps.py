"""One MEND training (or validation) step on one example (docs/methods.md, MEND).

1. The edit: the NLL of the new target after the prompt is backpropagated through the
   unchanged model; per edited matrix the token inputs u and output gradients δ go
   through the network, giving ``ΔW = lr · Σ δ̃ ũᵀ`` as a function of the network's
   parameters.
2. The edited model (``W + ΔW`` substituted with :func:`torch.func.functional_call`) is
   run on the prompt and its paraphrases (edit loss: mean NLL of the new target) and on
   the locality prompts (locality loss: KL from the unedited model's next-token
   distributions, at every unpadded position or at those that predict the answer,
   ``train.loc_positions``).
3. ``loss = cedit · L_edit + cloc · L_loc``; its gradient reaches only the network's
   parameters and edit learning rates (the model's parameters are frozen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from benchmark.core.arch import LoadedModel, from_out_in, get_module
from benchmark.training.data import Example
from editors.mend import batches, grads
from editors.mend.hparams import MENDHparams
from editors.mend.network import MENDNetwork


@dataclass
class StepResult:
    loss: torch.Tensor  # cedit * edit + cloc * loc (differentiable in training)
    edit: float  # L_edit after the edit
    loc: float  # L_loc
    nll_before: float  # edit NLL before the edit (edit prompt)
    edit_acc: float  # share of new-target tokens that are the argmax after the edit


def edited_weights(lm: LoadedModel, net: MENDNetwork, pieces: dict) -> dict[str, torch.Tensor]:
    """``{"<matrix>.weight": W + ΔW}`` in the stored layout, differentiable in the network."""
    out = {}
    for name in net.names:
        u, delta = pieces[name]
        A, B = net.factors(name, u, delta)
        weight = get_module(lm.model, name).weight
        out[f"{name}.weight"] = weight + from_out_in(A @ B.T, lm.arch.layout).to(weight.dtype)
    return out


def _run(lm: LoadedModel, params: dict[str, torch.Tensor], batch: batches.TokenBatch) -> torch.Tensor:
    return functional_call(lm.model, params, args=(), kwargs={
        "input_ids": batch.input_ids, "attention_mask": batch.attention_mask}).logits.float()


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    keep = labels != -100
    return float((logits[keep].argmax(-1) == labels[keep]).float().mean())


def edit_step(lm: LoadedModel, net: MENDNetwork, hp: MENDHparams, ex: Example) -> StepResult:
    """Losses of one example; differentiable in ``net`` when grad is enabled and ``net``
    is in training mode (which also updates its running normalisation)."""
    tok, cap, device = lm.tokenizer, hp.train.max_tokens, lm.device
    inner = batches.encode(tok, [ex.edit_pair], cap).to(device)
    outer = batches.encode(tok, ex.outer_pairs, cap).to(device)
    loc = batches.encode(tok, ex.locality_pairs, cap).to(device)
    pieces, nll_before = grads.capture(
        lm.model, net.names, lambda m: batches.masked_nll(batches.logits(m, inner), inner.labels))
    with grads.frozen(lm.model):
        with torch.no_grad():
            pre_loc = batches.logits(lm.model, loc)
        params = edited_weights(lm, net, pieces)
        post_edit = _run(lm, params, outer)
        post_loc = _run(lm, params, loc)
        l_edit = batches.masked_nll(post_edit, outer.labels)
        l_loc = batches.kl_loc(pre_loc, post_loc, batches.loc_mask(loc, hp.train.loc_positions))
    total = hp.train.cedit * l_edit + hp.train.cloc * l_loc
    return StepResult(total, float(l_edit.detach()), float(l_loc.detach()), nll_before,
                      _accuracy(post_edit.detach(), outer.labels))
