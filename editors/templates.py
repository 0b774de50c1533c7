"""Context templates: the bare prompt plus generated prefixes, sampled once per model.

A template is a text PREFIX put before a prompt; the first one is ``""`` (the bare
prompt), the others are top-k samples from the model ending in ``". "``
(docs/methods.md §2.1, context templates).

Public API:

- ``context_templates(lm, spec: TemplateSpec) -> tuple[str, ...]``: generated once per
  (model identity, spec) with an explicit ``torch.Generator`` seeded by ``spec.seed`` and
  cached in memory (call it first on the unedited model).
- ``template_groups(spec) -> tuple[int, ...]``: sizes of the template groups, in the
  order of :func:`context_templates`: 1 (the bare prompt), then ``count`` per
  ``[length, count]`` pair.
- ``sample_prefixes(lm, starters, length, top_k, generator) -> list[str]``
- ``clear_template_cache()``
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from benchmark.core import io
from benchmark.core.arch import LoadedModel
from editors.hparams import TemplateSpec

log = logging.getLogger(__name__)

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


def template_groups(spec: TemplateSpec) -> tuple[int, ...]:
    """Group sizes of the templates :func:`context_templates` returns for ``spec``: the bare
    prompt alone, then one group of ``count`` prefixes per ``[length, count]`` pair."""
    return (1, *(count for _, count in spec.lengths))


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
