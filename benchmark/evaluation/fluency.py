"""Seeded top-k sampling and the n-gram entropy fluency measure (ROME's definition).

Fluency of one generated text is the weighted mean of its 2-gram and 3-gram entropies
(bits), weights 2/3 and 4/3: ``(2/3*H2 + 4/3*H3) / 2``. Words are ``\\w+`` runs and single
punctuation characters (ROME tokenises with NLTK's word_tokenize, which needs a download;
the regex split agrees with it on plain text).

Two settings, keyword arguments of :func:`generation_fluency` (defaults as ROME's released
``n_gram_entropy``): ``scored`` -- which text is scored, ``"prompt+continuation"`` (ROME:
the generated text includes its prompt) or ``"continuation"``; ``lowercase`` -- lower-case
the words first (ROME: no). :func:`fluency_score` scores a bare text and lower-cases by
default (the form of the suite's earlier fluency records: continuation, lower-cased).

Sampling uses one ``torch.Generator`` per prompt, seeded with ``seed + index of the
prompt``, so a text does not depend on the batch it was generated in.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal, get_args

import torch

_WORD = re.compile(r"\w+|[^\w\s]")
NGRAM_WEIGHTS = {2: 2 / 3, 3: 4 / 3}
ScoredText = Literal["prompt+continuation", "continuation"]
SCORED_TEXTS: tuple[str, ...] = get_args(ScoredText)


def words(text: str, *, lowercase: bool = True) -> list[str]:
    """``\\w+`` runs and single punctuation characters of ``text`` (lower-cased if asked)."""
    return _WORD.findall(text.lower() if lowercase else text)


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Entropy in bits of the empirical n-gram distribution (0 when there is no n-gram)."""
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in grams.values())


def fluency_score(text: str, *, lowercase: bool = True) -> float:
    """Weighted mean of the 2- and 3-gram entropies of ``text`` (weights 2/3, 4/3). Scores
    ``text`` as given, lower-cased unless ``lowercase=False``; :func:`generation_fluency`
    holds the recorded settings with ROME's defaults."""
    toks = words(text, lowercase=lowercase)
    vals = [w * ngram_entropy(toks, n) for n, w in NGRAM_WEIGHTS.items()]
    return sum(vals) / len(vals)


def generation_fluency(prompt: str, continuation: str, *, scored: ScoredText = "prompt+continuation",
                       lowercase: bool = False) -> float:
    """Fluency of one generation: of ``prompt + continuation`` (ROME) or of the continuation
    alone, words lower-cased or not (module docstring)."""
    if scored not in SCORED_TEXTS:
        raise ValueError(f"fluency: scored must be one of {SCORED_TEXTS}, got {scored!r}")
    text = prompt + continuation if scored == "prompt+continuation" else continuation
    return fluency_score(text, lowercase=lowercase)


@torch.no_grad()
def sample_texts(model: torch.nn.Module, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 100,
                 top_k: int = 5, seed: int = 0, batch_size: int = 8) -> list[str]:
    """Generate ``max_new_tokens`` continuations by top-k sampling (left-padded batches,
    explicit position ids, KV cache); returns only the generated text."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        enc = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in chunk]
        width = max(map(len, enc))
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, width - len(e):] = torch.tensor(e)
            mask[i, width - len(e):] = 1
        gens = [torch.Generator().manual_seed(seed + start + i) for i in range(len(enc))]
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        past, step_ids, new = None, ids, []
        for _ in range(max_new_tokens):
            res = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, past_key_values=past,
                        use_cache=True)
            past = res.past_key_values
            logits = res.logits[:, -1, :].float().cpu()
            top = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
            probs = torch.softmax(top.values, dim=-1)
            picks = torch.stack([torch.multinomial(probs[i], 1, generator=gens[i]) for i in range(len(enc))])
            nxt = top.indices.gather(1, picks)  # (B, 1)
            new.append(nxt)
            step_ids = nxt.to(device)
            mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
            pos = pos[:, -1:] + 1
        gen = torch.cat(new, dim=1)
        out.extend(tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in gen)
    return out
