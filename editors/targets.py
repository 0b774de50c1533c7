"""The target optimisation: a vector δ at the subject's last token that makes the model
prefer the new target (docs/methods.md §2.1).

Weights are never changed and never receive gradients (only δ requires grad).

Public API (used by ROME, MEMIT, AlphaEdit, NSE):

- ``compute_target(lm, request, layer, templates, spec: TargetSpec, point) -> TargetResult``
  and ``compute_targets(...)`` (a list, one per request). ``point="mlp_out"`` is the ROME
  form (δ added to the MLP output at ``layer``), ``point="residual"`` the MEMIT form (δ
  added to the residual output of ``layer``; ``TargetResult.target`` is z* = h + δ).
- :class:`TargetResult`.

Each optimisation step runs either the whole batch of prompts (the full runner) or, by
default, only the tokens from each prompt's subject-last token on, the earlier tokens
(which δ cannot affect) being run once into a key/value cache (the suffix runner).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from benchmark.core.arch import LoadedModel, get_module
from benchmark.core.requests import EditRequest
from benchmark.core.scoring import encode_pair
from editors.hparams import TargetSpec
from editors.keys import (
    Point,
    frozen_params,
    pad_batch,
    pad_token_id,
    point_module,
    subject_end,
    subject_last_token,
    unwrap_output,
)


@dataclass
class TargetResult:
    delta: torch.Tensor  # (d_model,) optimised shift at the hook point
    h_init: torch.Tensor  # (d_model,) unshifted value at the hook point, bare (first) template
    steps: int  # forward passes done
    losses: list[float] = field(default_factory=list)
    nll: float = float("nan")  # mean target NLL at the last evaluated step

    @property
    def target(self) -> torch.Tensor:
        return self.h_init + self.delta


# --------------------------------------------------------------------------- prompts
@dataclass
class _Prompts:
    """Token rows: every template + prompt + target (last token dropped), then the KL prompt."""

    seqs: list[list[int]]
    lookup: list[int]  # per row: the subject's last token (where δ is added)
    needed: list[list[int]]  # per row: positions whose logits the loss needs
    target_ids: list[int]
    n_rewrite: int


def _encode_prompts(tok, request: EditRequest, templates: Sequence[str], kl_prompt: str) -> _Prompts:
    rewrite = []
    target_ids: list[int] | None = None
    for t in templates:
        ctx, tgt = encode_pair(tok, t + request.prompt, request.target_new)
        target_ids = tgt
        idx = subject_last_token(tok, t + request.prompt, len(t) + subject_end(request))
        rewrite.append((ctx + tgt[:-1], idx, len(ctx)))
    assert target_ids is not None
    kl_text = kl_prompt.format(subject=request.subject)
    kl_ids = list(tok(kl_text, add_special_tokens=True)["input_ids"])
    kl_idx = subject_last_token(tok, kl_text, kl_text.rfind(request.subject) + len(request.subject))
    # positions whose logits the loss needs: predicting target_ids[j] from len(ctx) - 1 + j
    # (row-major), then the KL prompt's subject-last token
    needed = [[n_ctx - 1 + j for j in range(len(target_ids))] for _, _, n_ctx in rewrite]
    needed.append([kl_idx])
    return _Prompts(seqs=[ids for ids, _, _ in rewrite] + [kl_ids],
                    lookup=[i for _, i, _ in rewrite] + [kl_idx], needed=needed,
                    target_ids=target_ids, n_rewrite=len(rewrite))


# --------------------------------------------------------------------------- loss
class _Objective:
    """Loss of one step from the kept logits (target positions row-major, then the KL row):
    mean target NLL + kl_factor·KL(current ‖ initial) + v_weight_decay·(weight decay)."""

    def __init__(self, target_tokens: torch.Tensor, n_rewrite: int, n_target: int, spec: TargetSpec):
        self.tgt, self.n_tgt = target_tokens, len(target_tokens)
        self.denom = n_rewrite * n_target
        self.spec = spec
        self.kl_init: torch.Tensor | None = None

    def __call__(self, kept: torch.Tensor, delta: torch.Tensor,
                 h_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.spec
        logp_t = torch.log_softmax(kept[:self.n_tgt].float(), dim=-1)
        tok_nll = -logp_t.gather(1, self.tgt[:, None]).squeeze(1)
        nll = tok_nll.sum() / self.denom
        kl_logp = torch.log_softmax(kept[self.n_tgt].float(), dim=-1)
        if self.kl_init is None:
            self.kl_init = kl_logp.detach().clone()
        # KL(current || initial), as the released code's kl_div(init, cur, log_target=True)
        kl = torch.sum(kl_logp.exp() * (kl_logp - self.kl_init))
        if spec.weight_decay_form == "squared":
            wd = delta.norm() ** 2 / h_norm ** 2
        else:
            wd = delta.norm() / h_norm ** 2
        loss = nll + spec.kl_factor * kl + spec.v_weight_decay * wd
        return loss, nll


# --------------------------------------------------------------------------- optimisation
def compute_target(lm: LoadedModel, request: EditRequest, layer: int, templates: Sequence[str],
                   spec: TargetSpec, point: Point, *, reuse_prefix: bool = True) -> TargetResult:
    """Optimise δ (added at ``point`` of ``layer`` at the subject's last token in every prompt)
    so that the model prefers ``request.target_new``. See module docstring.

    With ``reuse_prefix`` the tokens before each prompt's subject-last token are run once and
    reused as a key/value cache; every step then runs only the rest of each prompt. Same
    result as the full forward (tested)."""
    prompts = _encode_prompts(lm.tokenizer, request, templates, spec.kl_prompt)
    tgt_tok_t = torch.tensor([t for _ in range(prompts.n_rewrite) for t in prompts.target_ids],
                             device=lm.device)
    objective = _Objective(tgt_tok_t, prompts.n_rewrite, len(prompts.target_ids), spec)
    window = getattr(getattr(lm.model, "config", None), "sliding_window", None)
    if window is not None and max(len(x) for x in prompts.seqs) > int(window):
        reuse_prefix = False  # padded cache positions would shift the sliding window
    run = (_SuffixRunner if reuse_prefix else _FullRunner)(lm, prompts.seqs, prompts.lookup,
                                                          prompts.needed)
    module = get_module(lm.model, point_module(lm, layer, point))
    return _optimise(lm, run, module, objective, spec)


def _shift_hook(run, delta: torch.Tensor, state: dict[str, torch.Tensor]):
    """Forward hook adding δ at the runner's selected positions; records h_init once."""

    def hook(mod, args, out):
        hidden = unwrap_output(out)
        if "h_init" not in state:
            state["h_init"] = hidden[0, run.lookup[0]].detach().clone()
        shifted = hidden + run.sel[..., None].to(hidden.dtype) * delta.to(hidden.dtype)
        if isinstance(out, tuple):
            return (shifted, *out[1:])
        return shifted

    return hook


def _optimise(lm: LoadedModel, run, module: torch.nn.Module, objective: _Objective,
              spec: TargetSpec) -> TargetResult:
    delta = torch.zeros(lm.arch.d_model, device=lm.device, requires_grad=True)
    state: dict[str, torch.Tensor] = {}
    opt = torch.optim.Adam([delta], lr=spec.v_lr)
    with frozen_params(lm.model):
        run.setup()
        handle = module.register_forward_hook(_shift_hook(run, delta, state))
        try:
            with torch.enable_grad():
                steps, losses, nll_value = _steps(run, delta, opt, objective, spec, state)
        finally:
            handle.remove()
    return TargetResult(delta=delta.detach().float().cpu(), h_init=state["h_init"].float().cpu(),
                        steps=steps, losses=losses, nll=nll_value)


def _steps(run, delta: torch.Tensor, opt: torch.optim.Optimizer, objective: _Objective,
           spec: TargetSpec, state: dict[str, torch.Tensor]) -> tuple[int, list[float], float]:
    """Adam steps with early stop and the norm clamp: (steps, losses, last NLL)."""
    losses: list[float] = []
    nll_value = float("nan")
    steps = 0
    for it in range(spec.v_num_grad_steps):
        steps += 1
        opt.zero_grad()
        kept = run.logits()  # (n_tgt + 1, vocab)
        h_norm = state["h_init"].float().norm()
        loss, nll = objective(kept, delta, h_norm)
        losses.append(float(loss.detach()))
        nll_value = float(nll.detach())
        if losses[-1] < spec.early_stop_loss or it == spec.v_num_grad_steps - 1:
            break
        loss.backward()
        opt.step()
        max_norm = spec.clamp_norm_factor * h_norm
        with torch.no_grad():
            n = delta.norm()
            if n > max_norm:
                delta.mul_(max_norm / n)
    return steps, losses, nll_value


def compute_targets(lm: LoadedModel, requests: Sequence[EditRequest], layer: int,
                    templates: Sequence[str], spec: TargetSpec, point: Point) -> list[TargetResult]:
    """:func:`compute_target` for each request (each has its own δ)."""
    return [compute_target(lm, r, layer, templates, spec, point) for r in requests]


# --------------------------------------------------------------------------- runners
class _FullRunner:
    """Every step runs the whole right-padded batch."""

    def __init__(self, lm: LoadedModel, seqs, lookup, needed):
        dev = lm.device
        batch = pad_batch(seqs, pad_token_id(lm.tokenizer))
        self.model = lm.model
        self.ids, self.mask = batch.input_ids.to(dev), batch.attention_mask.to(dev)
        self.lookup = list(lookup)
        self.sel = torch.zeros(self.ids.shape, dtype=torch.float32, device=dev)
        self.sel[torch.arange(len(seqs), device=dev), torch.tensor(lookup, device=dev)] = 1.0
        self.keep = torch.zeros(self.ids.shape, dtype=torch.bool, device=dev)
        for r, pos in enumerate(needed):
            self.keep[r, pos] = True

    def setup(self) -> None:
        pass

    def logits(self) -> torch.Tensor:
        return _kept_logits(self.model, self.ids, self.mask, self.keep)


class _SuffixRunner:
    """Prefix (tokens before the subject-last token) once into a key/value cache; each
    step runs the suffixes only. Prefixes are right-padded and run with a full mask (pad
    positions only ever attend to real tokens or pads, so nothing is NaN); the suffix pass
    masks the pad keys and gives every token its true position."""

    def __init__(self, lm: LoadedModel, seqs, lookup, needed):
        dev = lm.device
        pad = pad_token_id(lm.tokenizer)
        self.model = lm.model
        prefixes = [s[:i] for s, i in zip(seqs, lookup)]
        suffixes = [s[i:] for s, i in zip(seqs, lookup)]
        self.P = max(len(p) for p in prefixes)
        width = max(len(x) for x in suffixes)
        B = len(seqs)
        self.pre_ids = torch.full((B, max(self.P, 1)), pad, dtype=torch.long)
        pre_real = torch.zeros((B, self.P), dtype=torch.long)
        self.suf_ids = torch.full((B, width), pad, dtype=torch.long)
        suf_mask = torch.zeros((B, width), dtype=torch.long)
        for r, (p, x) in enumerate(zip(prefixes, suffixes)):
            self.pre_ids[r, : len(p)] = torch.tensor(p, dtype=torch.long)
            pre_real[r, : len(p)] = 1
            self.suf_ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
            suf_mask[r, : len(x)] = 1
        self.full_mask = torch.cat([pre_real, suf_mask], dim=1).to(dev)
        self.suf_pos = (torch.tensor([len(p) for p in prefixes])[:, None] + torch.arange(width)).to(dev)
        self.pre_ids, self.suf_ids = self.pre_ids.to(dev), self.suf_ids.to(dev)
        self.lookup = [0] * B  # the subject-last token opens every suffix
        self.sel = torch.zeros((B, width), dtype=torch.float32, device=dev)
        self.sel[:, 0] = 1.0
        self.keep = torch.zeros((B, width), dtype=torch.bool, device=dev)
        for r, pos in enumerate(needed):
            self.keep[r, [q - len(prefixes[r]) for q in pos]] = True
        self.cache = None

    @torch.no_grad()
    def setup(self) -> None:
        if self.P == 0:
            return
        out = self.model(input_ids=self.pre_ids, attention_mask=torch.ones_like(self.pre_ids),
                         position_ids=torch.arange(self.P, device=self.pre_ids.device)[None].expand(
                             len(self.pre_ids), -1), use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values

    def logits(self) -> torch.Tensor:
        if self.cache is None:
            return _kept_logits(self.model, self.suf_ids, self.full_mask, self.keep,
                                position_ids=self.suf_pos)
        return _kept_logits(self.model, self.suf_ids, self.full_mask, self.keep,
                            position_ids=self.suf_pos, past_key_values=copy.deepcopy(self.cache))


def _kept_logits(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                 keep: torch.Tensor, **kwargs) -> torch.Tensor:
    """Logits at the True positions of ``keep`` (row-major, flattened). Uses the
    transformers ``logits_to_keep`` boolean mask so the vocabulary projection runs only
    there; falls back to full logits for models without it."""
    try:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **kwargs).logits
    except TypeError:
        return model(input_ids=ids, attention_mask=mask, **kwargs).logits[keep]
    if logits.ndim == 3:  # a model that ignored the mask
        return logits[keep]
    return logits
