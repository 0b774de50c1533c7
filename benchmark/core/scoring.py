"""Batched teacher-forced scoring of target continuations (the one place it is done).

A target is encoded as a continuation of its prompt: the prompt with the tokenizer's
special tokens (so a BOS-adding tokenizer gets its BOS), the target with none, so a
BOS is never scored as part of a target. Batches are right-padded so every real token
keeps its position.
"""

from __future__ import annotations

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


@torch.no_grad()
def score_targets(model: torch.nn.Module, tokenizer, prompts: Sequence[str], targets: Sequence[str],
                  batch_size: int = 32) -> TargetScores:
    if len(prompts) != len(targets):
        raise ValueError("prompts and targets differ in length")
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
