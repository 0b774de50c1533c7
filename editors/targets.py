"""The target optimisation: a vector δ at the subject's last token that makes the model
prefer the new target (docs/methods.md §2.1).

Weights are never changed and never receive gradients (only δ requires grad).

Public API (used by ROME, MEMIT, AlphaEdit, NSE):

- ``compute_targets(lm, requests, layer, templates, spec: TargetSpec, point, engine=...)``
  -> one :class:`TargetResult` per request (each request has its own δ), and
  ``compute_target(...)`` for one request. ``point="mlp_out"`` is the ROME form (δ added
  to the MLP output at ``layer``), ``point="residual"`` the MEMIT form (δ added to the
  residual output of ``layer``; ``TargetResult.target`` is z* = h + δ).
- :data:`ENGINES`: how the steps are run (:mod:`editors.runners`, docs/performance.md):

  - ``"fast"`` (default): the rows of every request of the batch in one forward pass per
    step, each request with its own δ, Adam state, early stop and norm clamp (a request
    that stops leaves the batch); tokens before each subject-last token run once into a
    key/value cache; layers whose output δ cannot change run once per edit. For one
    request the result is bit for bit that of ``"suffix"``; for several, equal to float
    rounding (tested).
  - ``"suffix"``: the reference (the procedure before ``"fast"``): one request at a time,
    key/value cache for the prefix, every layer in every step.
  - ``"full"``: one request at a time, every token of every row in every step.

A model with a sliding attention window shorter than the longest prefix plus the longest
suffix runs ``"full"`` rows (padded cache positions would shift the window); ``"fast"``
then still batches and skips layers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from benchmark.core.arch import LoadedModel, get_module
from benchmark.core.requests import EditRequest
from benchmark.core.scoring import encode_pair
from editors.hparams import TargetSpec
from editors.keys import (
    Point,
    frozen_params,
    point_module,
    subject_end,
    subject_last_token,
    unwrap_output,
)
from editors.packed import PackedRunner, attention_kind
from editors.runners import FullRunner, Rows, SuffixRunner, cache_span

Engine = Literal["fast", "suffix", "full"]
ENGINES: tuple[Engine, ...] = ("fast", "suffix", "full")


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


@dataclass
class StepLog:
    """What the steps of one :func:`compute_targets` call cost (for profiling, not results):
    the runner class, seconds of setup (prefix pass), of each step's forward (logits), loss
    and backward (backward, Adam and clamp), and the tokens each step's forward processed."""

    runner: str = ""
    setup: float = 0.0
    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- prompts
def _encode_prompts(tok, request: EditRequest, templates: Sequence[str], kl_prompt: str
                    ) -> tuple[Rows, list[int], int]:
    """Rows of one request (every template + prompt + target with the last token dropped,
    then the KL prompt), its target token ids and its number of rewrite rows."""
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
    rows = Rows(seqs=[ids for ids, _, _ in rewrite] + [kl_ids],
                lookup=[i for _, i, _ in rewrite] + [kl_idx], needed=needed,
                owner=[0] * (len(rewrite) + 1))
    return rows, target_ids, len(rewrite)


# --------------------------------------------------------------------------- loss
class _Objective:
    """Loss of one step from the kept logits (target positions row-major, then the KL row):
    mean target NLL + kl_factor·KL(current ‖ initial) + v_weight_decay·(weight decay)."""

    def __init__(self, target_tokens: torch.Tensor, n_rewrite: int, n_target: int, spec: TargetSpec):
        self.tgt, self.n_tgt = target_tokens, len(target_tokens)
        self.denom = n_rewrite * n_target
        self.spec = spec
        self.kl_init: torch.Tensor | None = None

    @property
    def n_kept(self) -> int:
        """Logits this request's rows keep: its target positions and the KL position."""
        return self.n_tgt + 1

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
                   spec: TargetSpec, point: Point, *, engine: Engine = "fast",
                   log: StepLog | None = None) -> TargetResult:
    """Optimise δ (added at ``point`` of ``layer`` at the subject's last token in every prompt)
    so that the model prefers ``request.target_new``. See module docstring."""
    return compute_targets(lm, [request], layer, templates, spec, point, engine=engine, log=log)[0]


def compute_targets(lm: LoadedModel, requests: Sequence[EditRequest], layer: int,
                    templates: Sequence[str], spec: TargetSpec, point: Point, *,
                    engine: Engine = "fast", log: StepLog | None = None) -> list[TargetResult]:
    """:func:`compute_target` for each request (each has its own δ); ``engine`` says how
    the steps run (module docstring). ``log`` (optional) receives the steps' costs."""
    if engine not in ENGINES:
        raise ValueError(f"unknown target engine {engine!r}; choose from {ENGINES}")
    if engine != "fast" and len(requests) > 1:
        return [compute_target(lm, r, layer, templates, spec, point, engine=engine, log=log)
                for r in requests]
    encoded = [_encode_prompts(lm.tokenizer, r, templates, spec.kl_prompt) for r in requests]
    rows = Rows([], [], [], [])
    objectives = []
    for i, (r, target_ids, n_rewrite) in enumerate(encoded):
        rows.seqs += r.seqs
        rows.lookup += r.lookup
        rows.needed += r.needed
        rows.owner += [i] * len(r.seqs)
        tgt = torch.tensor([t for _ in range(n_rewrite) for t in target_ids], device=lm.device)
        objectives.append(_Objective(tgt, n_rewrite, len(target_ids), spec))
    run = _runner(lm, rows, engine, layer + (1 if point == "residual" else 0))
    module = get_module(lm.model, point_module(lm, layer, point))
    return _optimise(lm, run, rows.owner, module, objectives, spec,
                     log if log is not None else StepLog())


def _runner(lm: LoadedModel, rows: Rows, engine: Engine, skip: int):
    """The runner for ``engine``; ``skip``: the layers whose output δ cannot change (below
    the edited layer, and the edited layer itself when δ is added to its output)."""
    window = getattr(getattr(lm.model, "config", None), "sliding_window", None)
    window = float("inf") if window is None else int(window)
    # packed, a lane's rows follow each other: a sliding window (whose cache layers keep only
    # the last window's tokens) must cover a whole lane (bounded by all rows together)
    if engine == "fast" and len(set(rows.owner)) > 1 and attention_kind(lm.model) is not None \
            and sum(map(len, rows.seqs)) <= window:
        return PackedRunner(lm, rows, skip=skip)
    skip = skip if engine == "fast" else 0
    # a sliding window counts cache positions: padding must not push a key out of it
    if engine == "full" or cache_span(rows) > window:
        return FullRunner(lm, rows, skip=skip, reference=engine != "fast")
    return SuffixRunner(lm, rows, skip=skip, reference=engine != "fast")


def _shift_hook(run, owner: list[int], deltas: list[torch.Tensor], active: list[int],
                state: dict[str, list[torch.Tensor]]):
    """Forward hook adding each row's δ at the runner's selected positions; records h_init
    (every request's first row) once."""
    first_rows = [owner.index(i) for i in range(len(deltas))]

    def hook(mod, args, out):
        hidden = unwrap_output(out)
        if "h_init" not in state:
            state["h_init"] = [hidden[run.site(r)].detach().clone() for r in first_rows]
        if len(deltas) == 1:  # the one-request form of the reference, bit for bit
            shift = deltas[0].to(hidden.dtype)
        else:
            shift = run.spread(torch.stack([deltas[i] for i in active])).to(hidden.dtype)
        shifted = hidden + run.sel[..., None].to(hidden.dtype) * shift
        if isinstance(out, tuple):
            return (shifted, *out[1:])
        return shifted

    return hook


def _optimise(lm: LoadedModel, run, owner: list[int], module: torch.nn.Module,
              objectives: list[_Objective], spec: TargetSpec, log: StepLog) -> list[TargetResult]:
    n = len(objectives)
    deltas = [torch.zeros(lm.arch.d_model, device=lm.device, requires_grad=True) for _ in range(n)]
    opts = [torch.optim.Adam([d], lr=spec.v_lr) for d in deltas]
    active = list(range(n))  # requests still optimising, in row order
    state: dict[str, list[torch.Tensor]] = {}
    losses: list[list[float]] = [[] for _ in range(n)]
    nlls = [float("nan")] * n
    log.runner = type(run).__name__
    with frozen_params(lm.model):
        t0 = time.perf_counter()
        run.setup()
        log.setup += time.perf_counter() - t0
        handle = module.register_forward_hook(_shift_hook(run, owner, deltas, active, state))
        try:
            with torch.enable_grad():
                for it in range(spec.v_num_grad_steps):
                    if not active:
                        break
                    _step(run, it, deltas, opts, objectives, spec, state, active, losses, nlls, log)
        finally:
            handle.remove()
    return [TargetResult(delta=deltas[i].detach().float().cpu(),
                         h_init=state["h_init"][i].float().cpu(), steps=len(losses[i]),
                         losses=losses[i], nll=nlls[i]) for i in range(n)]


def _step(run, it: int, deltas, opts, objectives, spec: TargetSpec, state, active: list[int],
          losses: list[list[float]], nlls: list[float], log: StepLog) -> None:
    """One Adam step of every active request (early stop and the norm clamp per request);
    requests that stop leave ``active`` and their rows leave the runner."""
    t0 = time.perf_counter()
    for i in active:
        opts[i].zero_grad()
    log.tokens.append(run.n_tokens())
    kept = run.logits()  # (sum of the active requests' kept positions, vocab)
    t1 = time.perf_counter()
    total, going = None, []
    # split, not sliced: a slice's backward writes into a zero tensor of all the kept logits
    parts = kept.split([objectives[i].n_kept for i in active])
    for i, part in zip(active, parts):
        h_norm = state["h_init"][i].float().norm()
        loss, nll = objectives[i](part, deltas[i], h_norm)
        losses[i].append(float(loss.detach()))
        nlls[i] = float(nll.detach())
        if losses[i][-1] < spec.early_stop_loss or it == spec.v_num_grad_steps - 1:
            continue
        going.append(i)
        total = loss if total is None else total + loss
    if total is not None:
        total.backward()
    for i in going:
        opts[i].step()
        h_norm = state["h_init"][i].float().norm()
        max_norm = spec.clamp_norm_factor * h_norm
        with torch.no_grad():
            norm = deltas[i].norm()
            if norm > max_norm:
                deltas[i].mul_(max_norm / norm)
    if going and going != active:
        rows = run.rows_of_active()  # per current row: its request's position in ``active``
        kept_rows = [active[o] in going for o in rows]
        run.select(kept_rows, [going.index(active[o]) for o, k in zip(rows, kept_rows) if k])
    active[:] = going
    log.forward.append(t1 - t0)
    log.backward.append(time.perf_counter() - t1)
