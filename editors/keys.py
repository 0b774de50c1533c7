"""Shared locate-then-edit machinery: subject location, context templates, keys, targets.

Everything here works on a :class:`benchmark.arch.LoadedModel` through its ArchFacts
(module-name templates, layout); nothing looks at model names. Weights are never changed
and never receive gradients (only the optimised vector δ requires grad).

Public API (stable; used by ROME, MEMIT, AlphaEdit, NSE):

- ``subject_end(request) -> int``: character end of the subject's LAST occurrence in the prompt.
- ``subject_last_token(tokenizer, text, char_end) -> int``: index (in the encoding with
  special tokens, so BOS counts) of the token containing character ``char_end - 1``; robust
  to BOS and to the subject's last token merging with the following text.
- ``context_templates(lm, spec: TemplateSpec) -> tuple[str, ...]``: ``("", prefix1 + ". ", ...)``;
  a template is a text PREFIX put before the prompt (the first is the bare prompt).
  Generated once per (model identity, spec) with an explicit ``torch.Generator`` seeded by
  ``spec.seed`` and cached in memory (call it first on the unedited model).
- ``collect_at_subject(lm, requests, templates, points, ...) -> dict[str, Tensor]``: values
  at hook points (``(module_name, "input"|"output")``) at the subject's last token,
  averaged over templates: ``(n_requests, dim)`` float32.
- ``compute_keys(lm, requests, layers, templates) -> dict[int, Tensor]``: the input of the
  down projection (ArchFacts.down_name) = the key, ``(n_requests, d_ffn)``.
- ``compute_outputs(lm, requests, layer, point, templates=("",))``: MLP output
  (``point="mlp_out"``) or residual output of the block (``point="residual"``).
- ``compute_target(lm, request, layer, templates, spec: TargetSpec, point) -> TargetResult``
  and ``compute_targets(...)`` (a list, one per request): the δ optimisation.
  ``point="mlp_out"`` is the ROME form (δ added to the MLP output at ``layer``),
  ``point="residual"`` the MEMIT form (δ added to the residual output of ``layer``;
  ``TargetResult.target`` is z* = h + δ).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from benchmark.core import io
from benchmark.core.arch import LoadedModel, get_module
from benchmark.core.requests import EditRequest
from benchmark.core.scoring import encode_pair
from editors.hparams import TargetSpec, TemplateSpec

log = logging.getLogger(__name__)

Point = Literal["mlp_out", "residual"]


# --------------------------------------------------------------------------- location
def subject_end(request: EditRequest) -> int:
    """Character index just past the subject's last occurrence in ``request.prompt``."""
    start = request.prompt.rfind(request.subject)
    if start < 0:
        raise ValueError(f"case {request.case_id}: subject {request.subject!r} not in prompt")
    return start + len(request.subject)


def subject_last_token(tokenizer, text: str, char_end: int) -> int:
    """Index of the token covering character ``char_end - 1`` of ``text`` (special tokens
    included in the encoding, so a BOS shifts the index)."""
    if not 0 < char_end <= len(text):
        raise ValueError(f"character end {char_end} outside text of length {len(text)}")
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        target = char_end - 1
        best = None
        for i, (s, e) in enumerate(enc["offset_mapping"]):
            if e > s and s <= target < e:
                best = i  # keep the last token covering the character (multi-token bytes)
        if best is not None:
            return best
    # Fallback (slow tokenizers / odd offsets): tokens of the prefix ending at the subject.
    prefix = tokenizer(text[:char_end], add_special_tokens=True)["input_ids"]
    return len(prefix) - 1


# --------------------------------------------------------------------------- batching
@dataclass
class _Batch:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)


def _pad(seqs: Sequence[Sequence[int]], pad_id: int) -> _Batch:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return _Batch(ids, mask)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _unwrap(out):
    return out[0] if isinstance(out, tuple) else out


class _StopForward(Exception):
    pass


@contextlib.contextmanager
def frozen_params(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily set requires_grad=False on every parameter (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


# --------------------------------------------------------------------------- templates
_TEMPLATE_CACHE: dict[tuple[str, str], tuple[str, ...]] = {}


def clear_template_cache() -> None:
    _TEMPLATE_CACHE.clear()


def context_templates(lm: LoadedModel, spec: TemplateSpec) -> tuple[str, ...]:
    """The bare template ``""`` plus generated prefixes (each ending in ``". "``)."""
    key = (io.sha256_json(lm.identity), spec.model_dump_json())
    if key not in _TEMPLATE_CACHE:
        gen = torch.Generator(device="cpu").manual_seed(spec.seed)
        out = [""]
        for length, count in spec.lengths:
            starters = [spec.starters[i % len(spec.starters)] for i in range(count)]
            for text in sample_prefixes(lm, starters, length, spec.top_k, gen):
                out.append(text.replace("\n", " ").strip() + ". ")
        _TEMPLATE_CACHE[key] = tuple(out)
        log.debug("context templates for %s: %s", lm.entry.name, out)
    return _TEMPLATE_CACHE[key]


@torch.no_grad()
def sample_prefixes(lm: LoadedModel, starters: Sequence[str], length: int, top_k: int,
                    generator: torch.Generator) -> list[str]:
    """Top-k sampled continuations of ``starters`` up to ``length`` tokens in total
    (special tokens not counted); sampling draws only from ``generator``."""
    tok, model = lm.tokenizer, lm.model
    special = set(tok.all_special_ids)
    encoded = [tok(s, add_special_tokens=True)["input_ids"] for s in starters]
    results: list[str | None] = [None] * len(starters)
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(i)
    for idx in groups.values():  # same length: advance together, no padding needed
        ids = torch.tensor([encoded[i] for i in idx], dtype=torch.long)
        n_real = sum(1 for t in encoded[idx[0]] if t not in special)
        for _ in range(max(0, length - n_real)):
            logits = model(input_ids=ids.to(lm.device)).logits[:, -1, :].float().cpu()
            top = torch.topk(logits, top_k, dim=-1)
            probs = torch.softmax(top.values, dim=-1)
            pick = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, top.indices.gather(1, pick)], dim=1)
        for row, i in enumerate(idx):
            results[i] = tok.decode(ids[row].tolist(), skip_special_tokens=True)
    return [r or "" for r in results]


# --------------------------------------------------------------------------- collection
def _encode_with_subject(tokenizer, prefix: str, request: EditRequest) -> tuple[list[int], int]:
    text = prefix + request.prompt
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return list(ids), subject_last_token(tokenizer, text, len(prefix) + subject_end(request))


def _run_capturing(lm: LoadedModel, batch: _Batch,
                   points: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """One forward capturing module inputs/outputs; stops once all points fired."""
    got: dict[str, torch.Tensor] = {}
    n_points = len(points)

    def record(name: str, value: torch.Tensor) -> None:
        got[name] = value
        if len(got) == n_points:
            raise _StopForward

    handles = []
    try:
        for name, kind in points:
            mod = get_module(lm.model, name)
            if kind == "input":
                handles.append(mod.register_forward_pre_hook(
                    lambda m, a, k, name=name: record(name, a[0] if a else next(iter(k.values()))),
                    with_kwargs=True))
            else:
                handles.append(mod.register_forward_hook(
                    lambda m, a, o, name=name: record(name, _unwrap(o))))
        try:
            lm.model(input_ids=batch.input_ids.to(lm.device),
                     attention_mask=batch.attention_mask.to(lm.device))
        except _StopForward:
            pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n, _ in points if n not in got]
    if missing:
        raise RuntimeError(f"hook points never ran: {missing}")
    return got


@torch.no_grad()
def collect_at_subject(lm: LoadedModel, requests: Sequence[EditRequest], templates: Sequence[str],
                       points: Sequence[tuple[str, Literal["input", "output"]]],
                       batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Template-averaged values at hook ``points`` at each request's subject last token.

    Returns ``{module_name: (n_requests, dim) float32}``. The forward stops once every
    hooked module has fired (later layers are not computed).
    """
    if not templates:
        raise ValueError("need at least one template")
    rows = [(ri, _encode_with_subject(lm.tokenizer, t, r))
            for ri, r in enumerate(requests) for t in templates]
    sums: dict[str, torch.Tensor] = {}
    names = [n for n, _ in points]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = _pad([ids for _, (ids, _) in chunk], _pad_id(lm.tokenizer))
        pos = torch.tensor([p for _, (_, p) in chunk])
        owner = torch.tensor([ri for ri, _ in chunk])
        got = _run_capturing(lm, batch, points)
        for name in names:
            vals = got[name][torch.arange(len(chunk), device=got[name].device), pos.to(got[name].device)]
            vals = vals.float().cpu()
            acc = sums.setdefault(name, torch.zeros(len(requests), vals.shape[-1]))
            acc.index_add_(0, owner, vals)
    return {n: s / len(templates) for n, s in sums.items()}


def compute_keys(lm: LoadedModel, requests: Sequence[EditRequest], layers: Sequence[int],
                 templates: Sequence[str], batch_size: int = 64) -> dict[int, torch.Tensor]:
    """Keys (down-projection inputs at the subject's last token, averaged over templates)."""
    names = {layer: lm.arch.down_name(layer) for layer in layers}
    got = collect_at_subject(lm, requests, templates, [(n, "input") for n in names.values()],
                             batch_size=batch_size)
    return {layer: got[n] for layer, n in names.items()}


def point_module(lm: LoadedModel, layer: int, point: Point) -> str:
    return lm.arch.mlp_name(layer) if point == "mlp_out" else lm.arch.layer_name(layer)


def compute_outputs(lm: LoadedModel, requests: Sequence[EditRequest], layer: int, point: Point,
                    templates: Sequence[str] = ("",), batch_size: int = 64) -> torch.Tensor:
    """MLP output or residual block output at the subject's last token, ``(n, d_model)``."""
    name = point_module(lm, layer, point)
    return collect_at_subject(lm, requests, templates, [(name, "output")], batch_size)[name]


# --------------------------------------------------------------------------- targets
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


def compute_target(lm: LoadedModel, request: EditRequest, layer: int, templates: Sequence[str],
                   spec: TargetSpec, point: Point, *, reuse_prefix: bool = True) -> TargetResult:
    """Optimise δ (added at ``point`` of ``layer`` at the subject's last token in every prompt)
    so that the model prefers ``request.target_new``. See module docstring.

    With ``reuse_prefix`` the tokens before each prompt's subject-last token (which δ cannot
    affect) are run once and reused as a key/value cache; every optimisation step then runs
    only the rest of each prompt. Same result as the full forward (tested)."""
    tok, model = lm.tokenizer, lm.model
    rewrite = []
    target_ids: list[int] | None = None
    for t in templates:
        ctx, tgt = encode_pair(tok, t + request.prompt, request.target_new)
        target_ids = tgt
        idx = subject_last_token(tok, t + request.prompt, len(t) + subject_end(request))
        rewrite.append((ctx + tgt[:-1], idx, len(ctx)))
    assert target_ids is not None
    kl_text = spec.kl_prompt.format(subject=request.subject)
    kl_ids = list(tok(kl_text, add_special_tokens=True)["input_ids"])
    kl_idx = subject_last_token(tok, kl_text, kl_text.rfind(request.subject) + len(request.subject))
    seqs = [ids for ids, _, _ in rewrite] + [kl_ids]
    lookup = [i for _, i, _ in rewrite] + [kl_idx]
    n_rw = len(rewrite)
    # positions whose logits the loss needs: predicting target_ids[j] from len(ctx) - 1 + j
    # (row-major), then the KL prompt's subject-last token
    needed: list[list[int]] = [[n_ctx - 1 + j for j in range(len(target_ids))] for _, _, n_ctx in rewrite]
    needed.append([kl_idx])
    tgt_tok_t = torch.tensor([t for _ in rewrite for t in target_ids], device=lm.device)
    n_tgt = len(tgt_tok_t)
    window = getattr(getattr(model, "config", None), "sliding_window", None)
    if window is not None and max(len(x) for x in seqs) > int(window):
        reuse_prefix = False  # padded cache positions would shift the sliding window
    run = (_SuffixRunner if reuse_prefix else _FullRunner)(lm, seqs, lookup, needed)

    module = get_module(model, point_module(lm, layer, point))
    delta = torch.zeros(lm.arch.d_model, device=lm.device, requires_grad=True)
    state: dict[str, torch.Tensor] = {}

    def hook(mod, args, out):
        hidden = _unwrap(out)
        if "h_init" not in state:
            state["h_init"] = hidden[0, run.lookup[0]].detach().clone()
        shifted = hidden + run.sel[..., None].to(hidden.dtype) * delta.to(hidden.dtype)
        if isinstance(out, tuple):
            return (shifted, *out[1:])
        return shifted

    opt = torch.optim.Adam([delta], lr=spec.v_lr)
    losses: list[float] = []
    kl_init: torch.Tensor | None = None
    nll_value = float("nan")
    steps = 0
    with frozen_params(model):
        run.setup()
        handle = module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                for it in range(spec.v_num_grad_steps):
                    steps += 1
                    opt.zero_grad()
                    kept = run.logits()  # (n_tgt + 1, vocab)
                    logp_t = torch.log_softmax(kept[:n_tgt].float(), dim=-1)
                    tok_nll = -logp_t.gather(1, tgt_tok_t[:, None]).squeeze(1)
                    nll = tok_nll.sum() / (n_rw * len(target_ids))
                    kl_logp = torch.log_softmax(kept[n_tgt].float(), dim=-1)
                    if kl_init is None:
                        kl_init = kl_logp.detach().clone()
                    # KL(current || initial), as the released code's kl_div(init, cur, log_target=True)
                    kl = torch.sum(kl_logp.exp() * (kl_logp - kl_init))
                    h_norm = state["h_init"].float().norm()
                    if spec.weight_decay_form == "squared":
                        wd = delta.norm() ** 2 / h_norm ** 2
                    else:
                        wd = delta.norm() / h_norm ** 2
                    loss = nll + spec.kl_factor * kl + spec.v_weight_decay * wd
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
        finally:
            handle.remove()
    return TargetResult(delta=delta.detach().float().cpu(), h_init=state["h_init"].float().cpu(),
                        steps=steps, losses=losses, nll=nll_value)


class _FullRunner:
    """Every step runs the whole right-padded batch."""

    def __init__(self, lm: LoadedModel, seqs, lookup, needed):
        dev = lm.device
        batch = _pad(seqs, _pad_id(lm.tokenizer))
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
        pad = _pad_id(lm.tokenizer)
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
        import copy

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


def compute_targets(lm: LoadedModel, requests: Sequence[EditRequest], layer: int,
                    templates: Sequence[str], spec: TargetSpec, point: Point) -> list[TargetResult]:
    """:func:`compute_target` for each request (each has its own δ)."""
    return [compute_target(lm, r, layer, templates, spec, point) for r in requests]
