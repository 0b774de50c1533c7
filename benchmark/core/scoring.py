"""Batched teacher-forced scoring of target continuations (the one place it is done).

A target is encoded as a continuation of its prompt: the prompt with the tokenizer's
special tokens (so a BOS-adding tokenizer gets its BOS), the target with none, so a
BOS is never scored as part of a target.

Two paths give the same scores within float tolerance (docs/performance.md, checkpoint evaluation):

- :func:`score_continuations` (the default): an input that is a prefix of another (a prompt
  and its single-token targets) is run once, rows are sorted by length so batches carry
  little padding, the last token is not fed, and the output head runs only on the
  positions that predict scored tokens (``logits_to_keep``).
- ``score_targets(..., reference=True)``: the original path, kept for comparison: batches
  of ``batch_size`` in the given order, right-padded with an attention mask, the head and a
  log-softmax over every position.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TargetScores:
    """Per (prompt, target) pair: summed log-prob, token count, per-token argmax hits."""

    logprob_sum: torch.Tensor  # (N,) float64
    n_tokens: torch.Tensor  # (N,) int
    token_correct: list[torch.Tensor]  # each (n_tokens,) bool: argmax == target token

    @property
    def mean_nll(self) -> torch.Tensor:
        return -self.logprob_sum / self.n_tokens

    @property
    def prob(self) -> torch.Tensor:
        """exp(-mean token NLL), the per-target probability used by the magnitude metrics."""
        return torch.exp(-self.mean_nll)


def encode_pair(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt`` (with special tokens) and of ``target`` as its continuation."""
    ctx = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    cont_text = target if (target[:1].isspace() or prompt[-1:].isspace()) else " " + target
    cont = tokenizer(cont_text, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError(f"target {target!r} encodes to no tokens")
    return list(ctx), list(cont)


#: A batch of the default path closes at this many (padded) tokens: past a few hundred rows a
#: CPU matrix product gains nothing from more, and long sequences then go alone (no padding).
TOKENS_PER_BATCH = 512


def _rows(inputs: Sequence[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], list[int]]:
    """Distinct model inputs that are no prefix of another, and the row each input reads from.

    A causal model's logits at position p depend only on tokens 0..p, so an input that is a
    prefix of another one (a prompt whose single-token targets share it, a context whose
    answers differ only in their last token) is read from the longer row. In sorted order an
    input that is a prefix of some other one is a prefix of its successor."""
    order = sorted(set(inputs))
    owner: dict[tuple[int, ...], int] = {}
    rows: list[tuple[int, ...]] = []
    for k in range(len(order) - 1, -1, -1):
        nxt = order[k + 1] if k + 1 < len(order) else ()
        if nxt[:len(order[k])] == order[k]:
            owner[order[k]] = owner[nxt]
        else:
            owner[order[k]] = len(rows)
            rows.append(order[k])
    return rows, [owner[i] for i in inputs]


def length_batches(lengths: Sequence[int], batch_size: int,
                   tokens: int = TOKENS_PER_BATCH) -> list[list[int]]:
    """Row indices, longest first, in batches of at most ``batch_size`` rows and ``tokens``
    padded tokens (a longer row goes alone)."""
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if out and len(out[-1]) < batch_size and lengths[out[-1][0]] * (len(out[-1]) + 1) <= tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


@torch.no_grad()
def score_continuations(model: torch.nn.Module, seqs: Sequence[Sequence[int]], starts: Sequence[int],
                        batch_size: int = 32) -> TargetScores:
    """Score ``seq[start:]`` of every token sequence given the tokens before it (``start >= 1``).

    The model sees ``seq[:-1]``; inputs that are a prefix of another input share its row
    (:func:`_rows`); rows are sorted by length and right-padded in batches (:func:`length_batches`)
    without an attention mask (a causal model's real positions never see the padding after
    them); the head runs only on the batch's scored positions when the model's forward
    takes ``logits_to_keep`` (else on every position)."""
    if len(seqs) != len(starts):
        raise ValueError("sequences and starts differ in length")
    for i, (s, start) in enumerate(zip(seqs, starts)):
        if not 1 <= start < len(s):
            raise ValueError(f"sequence {i}: nothing to score from {start} in {len(s)} tokens")
    device = next(model.parameters()).device
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    inputs = [tuple(s[:-1]) for s in seqs]
    rows, owner = _rows(inputs)
    first = [len(r) - 1 for r in rows]  # first scored position of each row
    for i, o in enumerate(owner):
        first[o] = min(first[o], starts[i] - 1)
    logp_of: dict[int, tuple[torch.Tensor, int]] = {}  # row -> (log-probs, first position kept)
    for batch in length_batches([len(r) for r in rows], batch_size):
        width = len(rows[batch[0]])
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for b, r in enumerate(batch):
            ids[b, :len(rows[r])] = torch.tensor(rows[r])
        lo = min(first[r] for r in batch)
        kwargs = {"logits_to_keep": torch.arange(lo, width, device=device)} if keep_arg else {}
        logits = model(input_ids=ids.to(device), use_cache=False, **kwargs).logits.float()
        logp = torch.log_softmax(logits if keep_arg else logits[:, lo:], dim=-1).cpu()
        for b, r in enumerate(batch):
            logp_of[r] = (logp[b], lo)
    sums, correct = [], []
    for i, (s, start) in enumerate(zip(seqs, starts)):
        logp, lo = logp_of[owner[i]]
        tgt = torch.tensor(list(s[start:]))
        scored = logp[start - 1 - lo:len(s) - 1 - lo]
        sums.append(scored.gather(1, tgt[:, None]).sum().double())
        correct.append(scored.argmax(-1) == tgt)
    return TargetScores(torch.stack(sums) if sums else torch.zeros(0, dtype=torch.float64),
                        torch.tensor([len(s) - st for s, st in zip(seqs, starts)]), correct)


@torch.no_grad()
def score_targets(model: torch.nn.Module, tokenizer, prompts: Sequence[str], targets: Sequence[str],
                  batch_size: int = 32, *, reference: bool = False) -> TargetScores:
    """Scores of each target as the continuation of its prompt (``reference``: the original
    padded path, see the module docstring)."""
    if len(prompts) != len(targets):
        raise ValueError("prompts and targets differ in length")
    if not reference:
        pairs = [encode_pair(tokenizer, p, t) for p, t in zip(prompts, targets)]
        return score_continuations(model, [c + t for c, t in pairs], [len(c) for c, _ in pairs],
                                   batch_size)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums, counts, correct = [], [], []
    for start in range(0, len(prompts), batch_size):
        pairs = [encode_pair(tokenizer, p, t)
                 for p, t in zip(prompts[start:start + batch_size], targets[start:start + batch_size])]
        seqs = [c + t for c, t in pairs]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1).cpu()
        for i, (ctx, tgt) in enumerate(pairs):
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(tgt) - 1)
            tgt_t = torch.tensor(tgt)
            rows = logp[i, pos]
            sums.append(rows.gather(1, tgt_t[:, None]).sum().double())
            counts.append(len(tgt))
            correct.append(rows.argmax(-1) == tgt_t)
    return TargetScores(torch.stack(sums) if sums else torch.zeros(0, dtype=torch.float64),
                        torch.tensor(counts), correct)
