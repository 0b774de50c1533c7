"""Token batches and the two MEND losses.

A pair (prompt, target) is encoded as in :func:`benchmark.core.scoring.encode_pair` (the
prompt with the tokenizer's special tokens, the target as its continuation), right-padded;
``labels`` holds the target tokens at the positions that predict them and -100 elsewhere.

- :func:`masked_nll`: mean negative log-likelihood of the labelled tokens (the edit loss);
- :func:`kl_loc`: KL(p_before ‖ p_after) of the next-token distributions, averaged over the
  positions a mask keeps (the locality loss): every unpadded position as MEND released it
  (:func:`loc_mask` ``sequence``), or the positions that predict the answer (``answer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from benchmark.core.scoring import encode_pair


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L): next-token targets, -100 where unscored

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def encode(tokenizer, pairs: Sequence[tuple[str, str]], max_tokens: int) -> TokenBatch:
    """Right-padded batch of ``prompt + target`` sequences, at most ``max_tokens`` each
    (the prompt is cut from the left when the pair is longer)."""
    seqs, starts = [], []
    for prompt, target in pairs:
        ctx, cont = encode_pair(tokenizer, prompt, target)
        cont = cont[:max_tokens - 1]
        ctx = ctx[-(max_tokens - len(cont)):]
        seqs.append(ctx + cont)
        starts.append(len(ctx))
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        # position p predicts token p + 1
        labels[i, start - 1:len(seq) - 1] = torch.tensor(seq[start:])
    return TokenBatch(ids, mask, labels)


def logits(model: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()


def masked_nll(logits_: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over the labelled positions."""
    keep = labels != -100
    logp = torch.log_softmax(logits_[keep], dim=-1)
    return -logp.gather(1, labels[keep][:, None]).mean()


def loc_mask(batch: TokenBatch, positions: str) -> torch.Tensor:
    """The positions of the locality loss: ``sequence``, every unpadded position;
    ``answer``, the positions that predict the answer's tokens (``labels != -100``)."""
    if positions == "sequence":
        return batch.attention_mask.bool()
    if positions == "answer":
        return batch.labels != -100
    raise ValueError(f"loc_positions must be 'sequence' or 'answer', not {positions!r}")


def kl_loc(pre_logits: torch.Tensor, post_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions ``mask`` keeps of KL(softmax(pre) ‖ softmax(post))."""
    keep = mask.bool()
    pre = torch.log_softmax(pre_logits[keep], dim=-1)
    post = torch.log_softmax(post_logits[keep], dim=-1)
    return (pre.exp() * (pre - post)).sum(-1).mean()
