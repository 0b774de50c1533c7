"""Editing success read from the model's own greedy continuation (docs/methods.md, §5,
generation-based editing success).

Teacher forcing asks whether the model *prefers* the new target; these metrics ask whether
it *says* it. Each prompt is continued greedily (argmax at every step) for at most
``max_new_tokens`` tokens; the continuation is decoded without special tokens and cut at
the first stop string; the case succeeds when the normalised continuation matches the
normalised target under the rule's ``match``:

- ``prefix``: the continuation begins with the target and the target ends at a word
  boundary ("English, and" matches "English"; "Englishman" does not);
- ``contains``: the target occurs in the continuation as whole words.

Normalisation: Unicode NFKC, lower case, every punctuation character (Unicode category P)
replaced by a space, runs of whitespace collapsed to one space, ends stripped.

The prompt is encoded exactly as the teacher-forced scorer encodes it (the tokenizer's
special tokens, so a BOS-adding tokenizer gets its BOS; :func:`benchmark.core.scoring.encode_pair`).
Prompts are run in length-sorted, left-padded batches (attention mask and explicit positions),
each distinct prompt once, with a KV cache; a row ends at an end-of-sequence token, a stop
string, after ``max_new_tokens``, or (when the texts are not kept) once its outcome can no
longer change (:func:`decided`); a batch ends with its last row.

Metrics (x100 rates, each case under its case id):

- ``gen_efficacy`` / ``zsre_gen_efficacy``: the new target from the edit prompt;
- ``gen_generalization`` / ``zsre_gen_generalization``: the same on each rephrase prompt,
  per case the mean over its prompts (cases without rephrases are left out).

The CounterFact and zsRE names compute the same thing; both exist so that a grid names the
metric of its data set.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import torch

from benchmark.core.errors import DataError
from benchmark.evaluation import MetricValue

#: How a continuation is compared with its target (see the module docstring).
MATCH_RULES = ("prefix", "contains")

#: The generation-based editing metrics and the prompts each one reads.
GENERATION_METRICS = ("gen_efficacy", "gen_generalization", "zsre_gen_efficacy", "zsre_gen_generalization")

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class GenerationRule:
    """How a continuation is produced and judged; recorded with the results (``describe()``)."""

    max_new_tokens: int = 16
    stop: tuple[str, ...] = ("\n",)
    match: str = "prefix"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"generation rule: max_new_tokens must be a positive integer, "
                             f"not {self.max_new_tokens!r}")
        if self.match not in MATCH_RULES:
            raise ValueError(f"generation rule: unknown match {self.match!r}; known: {', '.join(MATCH_RULES)}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"generation rule: stop strings must be non-empty strings, not {self.stop!r}")

    def describe(self) -> str:
        """A short label, e.g. ``greedy;max16;stop=\\n;prefix``."""
        stops = ",".join(s.encode("unicode_escape").decode("ascii") for s in self.stop) or "none"
        return f"greedy;max{self.max_new_tokens};stop={stops};{self.match}"

    def to_dict(self) -> dict:
        """Every setting, for provenance and spec hashes."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        return {"decoding": "greedy", **d, "normalisation": "nfkc;lower;punctuation->space;collapse-whitespace"}

    @classmethod
    def from_dict(cls, d: dict) -> GenerationRule:
        return cls(max_new_tokens=int(d.get("max_new_tokens", 16)), stop=tuple(d.get("stop", ("\n",))),
                   match=str(d.get("match", "prefix")))


# --------------------------------------------------------------------------- text rules
def normalise(text: str) -> str:
    """NFKC, lower case, punctuation to spaces, whitespace collapsed and stripped."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return _SPACES.sub(" ", text).strip()


def cut_at_stop(text: str, stop: Iterable[str]) -> str:
    """``text`` up to (without) the earliest occurrence of any stop string."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[:min(hits)] if hits else text


def matches(continuation: str, target: str, match: str = "prefix") -> bool:
    """Does ``continuation`` say ``target`` under ``match`` (both normalised here)?"""
    c, t = normalise(continuation), normalise(target)
    if not t:
        raise ValueError(f"target {target!r} has no words after normalisation")
    if match == "prefix":
        return c == t or c.startswith(t + " ")
    if match == "contains":
        return f" {t} " in f" {c} "
    raise ValueError(f"unknown match {match!r}; known: {', '.join(MATCH_RULES)}")


# --------------------------------------------------------------------------- generation
def _eos_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, (list, tuple)) else [config_eos])
    return {int(i) for i in ids if i is not None}


def _length_batches(encoded: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices sorted by token length (longest first) in batches of at most ``batch_size``."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def _left_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r))
        mask[i, width - len(r):] = 1
    return ids, mask


@torch.no_grad()
def _greedy_batch(model: torch.nn.Module, tokenizer, rows: Sequence[Sequence[int]], rule: GenerationRule,
                  eos: set[int], until: Sequence[Callable[[str], bool] | None]) -> list[str]:
    """Greedy continuations of token rows (left-padded, masked, explicit positions), each cut
    at EOS and the first stop string; a row also ends once ``until[row](text)`` holds."""
    device = next(model.parameters()).device
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    step, mask = (t.to(device) for t in _left_padded(rows, pad))
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    past, new = None, [[] for _ in rows]
    done = [False] * len(rows)
    for _ in range(rule.max_new_tokens):
        res = model(input_ids=step, attention_mask=mask, position_ids=pos, past_key_values=past,
                    use_cache=True, **keep)
        past = res.past_key_values
        nxt = res.logits[:, -1, :].argmax(-1)
        for b, tok in enumerate(nxt.tolist()):
            if done[b]:
                continue
            if tok in eos:
                done[b] = True
                continue
            new[b].append(tok)
            text = tokenizer.decode(new[b], skip_special_tokens=True)
            done[b] = (any(s in text for s in rule.stop)
                       or (until[b] is not None and until[b](cut_at_stop(text, rule.stop))))
        if all(done):
            break
        step = nxt[:, None]
        mask = torch.cat([mask, torch.ones_like(step)], dim=1)
        pos = pos[:, -1:] + 1
    return [cut_at_stop(tokenizer.decode(t, skip_special_tokens=True), rule.stop) for t in new]


def greedy_continuations(model: torch.nn.Module, tokenizer, prompts: Sequence[str],
                         rule: GenerationRule | None = None, batch_size: int = 32, *,
                         until: Mapping[str, Callable[[str], bool]] | None = None) -> list[str]:
    """The greedy continuation of every prompt under ``rule`` (each distinct prompt generated
    once, in length-sorted batches of at most ``batch_size``). ``until``: per prompt, a test
    of the continuation so far that ends it early (the metrics pass :func:`decided`)."""
    rule = rule or GenerationRule()
    until = until or {}
    unique = list(dict.fromkeys(prompts))
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in unique]
    for p, e in zip(unique, encoded):
        if not e:
            raise ValueError(f"prompt {p!r} encodes to no tokens")
    eos = _eos_ids(model, tokenizer)
    texts: dict[str, str] = {}
    for batch in _length_batches(encoded, max(1, batch_size)):
        outs = _greedy_batch(model, tokenizer, [encoded[i] for i in batch], rule, eos,
                             [until.get(unique[i]) for i in batch])
        texts.update((unique[i], t) for i, t in zip(batch, outs))
    return [texts[p] for p in prompts]


def decided(text: str, target: str, match: str) -> bool:
    """Is the outcome of ``matches(text + more, target, match)`` the same for any ``more``?

    Only words followed by a space in the normalised text are taken as final (the last one
    may still grow): a prefix match is decided once the target's words are all final, or a
    final word differs from the target's word at its place; a contains match once the target
    occurs among the final words (a failure is never decided early)."""
    norm = normalise(text)
    words = norm.split(" ") if norm else []
    if text and not (text[-1].isspace() or unicodedata.category(text[-1]).startswith("P")):
        words = words[:-1]  # the last word may still grow
    want = normalise(target).split(" ")
    if match == "prefix":
        return len(words) >= len(want) or any(w != t for w, t in zip(words, want))
    return f" {' '.join(want)} " in f" {' '.join(words)} "


# --------------------------------------------------------------------------- metrics
def _metric_prompts(requests: Sequence, metric: str) -> list[tuple[int, str, str]]:
    """(case index, prompt, target) of every prompt ``metric`` reads."""
    if metric.endswith("efficacy"):
        return [(i, r.prompt, r.target_new) for i, r in enumerate(requests)]
    return [(i, p, r.target_new) for i, r in enumerate(requests) for p in r.rephrase_prompts]


def _per_case_mean(values: Sequence[float], owners: Sequence[int], ids: Sequence[str]) -> MetricValue:
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for v, o in zip(values, owners):
        sums[o] = sums.get(o, 0.0) + v
        counts[o] = counts.get(o, 0) + 1
    kept = sorted(counts)
    return MetricValue.mean_of([100.0 * sums[i] / counts[i] for i in kept], ids=[ids[i] for i in kept])


def _check_targets(requests: Sequence) -> None:
    for i, r in enumerate(requests):
        if not normalise(r.target_new):
            raise DataError("edit requests", f"target {r.target_new!r} has no words after normalisation",
                            record=getattr(r, "case_id", i), field="target_new")


def _all_decided(text: str, *, targets: tuple[str, ...], match: str) -> bool:
    return all(decided(text, t, match) for t in targets)


def generation_metrics(lm, requests: Sequence, metrics: Iterable[str], rule: GenerationRule | None = None,
                       batch_size: int = 32, *, texts: dict[str, str] | None = None) -> dict[str, MetricValue]:
    """The requested :data:`GENERATION_METRICS` on ``lm`` (a LoadedModel), all prompts of
    all cases and metrics generated in one pass. ``texts``, when given, receives each
    prompt's continuation (prompt -> text) for inspection; without it a continuation ends
    as soon as its outcome is :func:`decided` (the values are the same)."""
    rule = rule or GenerationRule()
    metrics = [m for m in dict.fromkeys(metrics)]
    unknown = [m for m in metrics if m not in GENERATION_METRICS]
    if unknown:
        raise ValueError(f"unknown generation metric(s) {unknown}; known: {', '.join(GENERATION_METRICS)}")
    if not metrics:
        return {}
    _check_targets(requests)
    wanted = {m: _metric_prompts(requests, m) for m in metrics}
    prompts = list(dict.fromkeys(p for items in wanted.values() for _, p, _ in items))
    until = None
    if texts is None:  # no one reads the texts: a prompt ends once all its outcomes are decided
        targets: dict[str, set[str]] = {}
        for items in wanted.values():
            for _, p, t in items:
                targets.setdefault(p, set()).add(t)
        until = {p: partial(_all_decided, targets=tuple(ts), match=rule.match) for p, ts in targets.items()}
    generated = dict(zip(prompts, greedy_continuations(lm.model, lm.tokenizer, prompts, rule, batch_size,
                                                       until=until)))
    if texts is not None:
        texts.update(generated)
    ids = [str(getattr(r, "case_id", i)) for i, r in enumerate(requests)]
    return {m: _per_case_mean([float(matches(generated[p], t, rule.match)) for _, p, t in items],
                              [o for o, _, _ in items], ids)
            for m, items in wanted.items()}


__all__ = ["GENERATION_METRICS", "MATCH_RULES", "GenerationRule", "cut_at_stop", "decided", "generation_metrics",
           "greedy_continuations", "matches", "normalise"]
