"""Prompt runners of the target optimisation (:mod:`editors.targets`): token rows in, the
logits the loss needs out, once per optimisation step.

Rows: for every request, every template + prompt + target (last token dropped), then the
KL prompt; the rows of a request are contiguous and ``Rows.owner`` names the request of
each row. δ is added at each row's subject-last token (``lookup``).

- :class:`FullRunner` runs the whole right-padded rows.
- :class:`SuffixRunner` runs the tokens before each row's subject-last token once into a
  key/value cache (δ cannot change them) and then, each step, only the rest (the suffix),
  right-padded.
- :class:`editors.packed.PackedRunner` (batches): like :class:`SuffixRunner` with the rows
  packed into lanes instead of padded.

All take ``skip``, the number of decoder layers whose output does not depend on δ (the
layers below the edited one; the edited layer too when δ is added to its output). With
``skip > 0`` the first step runs every layer and records the output of layer ``skip − 1``;
later steps replace those layers by that recorded output, which is what they would
compute again bit for bit (same inputs, same operations). ``skip=0`` plus
``reference=True`` is the procedure before this module existed (every layer every step,
the key/value cache deep-copied per step, one logit kept in the prefix pass).

:meth:`select` keeps only some rows (the requests still optimising), :meth:`logits`
returns the kept logits (row-major over the rows' needed positions).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from benchmark.core.arch import LoadedModel, forward_replaced, layer_modules, output_recorded
from editors.keys import pad_batch, pad_token_id


@dataclass
class Rows:
    seqs: list[list[int]]
    lookup: list[int]  # per row: the subject's last token (where δ is added)
    needed: list[list[int]]  # per row: positions whose logits the loss needs
    owner: list[int]  # per row: index of its request


def cache_span(rows: Rows) -> int:
    """Key/value positions a :class:`SuffixRunner` step spans: the longest prefix plus the
    longest suffix (prefixes are padded to one length, so a short row's suffix sits later
    in the cache than in its own sequence)."""
    return max(rows.lookup) + max(len(s) - i for s, i in zip(rows.seqs, rows.lookup))


class LayerReplay:
    """Replace the first ``n`` decoder layers by their recorded output after the first pass."""

    def __init__(self, lm: LoadedModel, n: int):
        self.mods = layer_modules(lm, n)
        self.out: torch.Tensor | None = None

    def select(self, idx: torch.Tensor, dim: int) -> None:
        if self.out is not None:
            self.out = self.out.index_select(dim, idx)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if not self.mods:
            yield
            return
        if self.out is None:  # first pass: every layer runs, the last skipped one is recorded
            def record(out) -> None:
                self.out = out.detach() if isinstance(out, torch.Tensor) else None

            with output_recorded(self.mods[-1], record):
                yield
            if self.out is None:  # a layer returning a tuple: nothing is skipped
                self.mods = []
            return
        with forward_replaced(self.mods, lambda *args, **kwargs: self.out):
            yield


class PrefixCache:
    """The prefix pass's key/value cache, restored before every step. A step only appends
    to it (each layer's update builds new tensors), so restoring every layer's attributes
    undoes a step without copying; the reference deep-copies instead."""

    def __init__(self, cache, reference: bool):
        self.cache, self.reference = cache, reference
        self.saved = [] if reference else [dict(layer.__dict__) for layer in cache.layers]

    def fresh(self):
        if self.reference:
            return copy.deepcopy(self.cache)
        for layer, attrs in zip(self.cache.layers, self.saved):
            layer.__dict__.update(attrs)
        return self.cache

    def select(self, idx: torch.Tensor, dim: int, size: int) -> None:
        """Keep entries ``idx`` along ``dim`` (of extent ``size``) of every cached tensor."""
        self.map(lambda v: v.index_select(dim, idx), lambda v: v.shape[dim] == size)

    def map(self, fn, applies) -> None:
        """Replace every cached 4D tensor ``v`` with ``applies(v)`` by ``fn(v)``."""
        if self.reference:
            raise RuntimeError("the reference cache is never narrowed (one request at a time)")
        for attrs in self.saved:
            for name, value in attrs.items():
                if isinstance(value, torch.Tensor) and value.ndim == 4 and applies(value):
                    attrs[name] = fn(value)


class Runner:
    """What every runner shares: δ sites, kept positions, layer replay, the prefix cache."""

    keep: torch.Tensor
    sel: torch.Tensor

    def __init__(self, lm: LoadedModel, rows: Rows, skip: int, reference: bool):
        self.model, self.dev, self.reference = lm.model, lm.device, reference
        self.replay = LayerReplay(lm, skip)
        self.prefix: PrefixCache | None = None

    def n_tokens(self) -> int:
        """Token positions one step runs (padding included)."""
        return int(self.keep.numel())

    def _kept(self, ids: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.prefix is not None:
            kwargs["past_key_values"] = self.prefix.fresh()
        with self.replay.active():
            return kept_logits(self.model, ids, mask, self.keep, **kwargs)


class _PaddedRunner(Runner):
    """Rows right-padded to one width: row r is batch entry r, δ sits at ``lookup[r]``."""

    row_tensors: tuple[str, ...] = ()
    lookup: list[int]

    def __init__(self, lm: LoadedModel, rows: Rows, skip: int, reference: bool):
        super().__init__(lm, rows, skip, reference)
        self.owner = torch.tensor(rows.owner, device=lm.device)

    def site(self, row: int) -> tuple[int, int]:
        """Where row ``row``'s δ goes in the hidden states (before any :meth:`select`)."""
        return row, self.lookup[row]

    def rows_of_active(self) -> list[int]:
        """Per current row: the index of its request among the active requests."""
        return self.owner.tolist()

    def spread(self, deltas: torch.Tensor) -> torch.Tensor:
        """Per-request δ (n_active x d) -> per row, broadcastable to the hidden states."""
        return deltas[self.owner][:, None, :]

    def select(self, keep_rows: Sequence[bool], owner: Sequence[int]) -> None:
        """Keep the rows flagged True; ``owner``: their requests' new indices."""
        idx = torch.tensor([i for i, k in enumerate(keep_rows) if k], device=self.dev)
        for name in self.row_tensors:
            setattr(self, name, getattr(self, name)[idx])
        self.lookup = [p for p, k in zip(self.lookup, keep_rows) if k]
        self.owner = torch.tensor(list(owner), device=self.dev)
        self.replay.select(idx, 0)
        if self.prefix is not None:
            self.prefix.select(idx, 0, len(keep_rows))


class FullRunner(_PaddedRunner):
    """Every step runs the whole right-padded rows."""

    row_tensors = ("ids", "mask", "sel", "keep")

    def __init__(self, lm: LoadedModel, rows: Rows, *, skip: int = 0, reference: bool = False):
        super().__init__(lm, rows, skip, reference)
        dev = lm.device
        batch = pad_batch(rows.seqs, pad_token_id(lm.tokenizer))
        self.ids, self.mask = batch.input_ids.to(dev), batch.attention_mask.to(dev)
        self.lookup = list(rows.lookup)
        self.sel = torch.zeros(self.ids.shape, dtype=torch.float32, device=dev)
        self.sel[torch.arange(len(rows.seqs), device=dev), torch.tensor(rows.lookup, device=dev)] = 1.0
        self.keep = torch.zeros(self.ids.shape, dtype=torch.bool, device=dev)
        for r, pos in enumerate(rows.needed):
            self.keep[r, pos] = True

    def setup(self) -> None:
        pass

    def logits(self) -> torch.Tensor:
        return self._kept(self.ids, self.mask)


class SuffixRunner(_PaddedRunner):
    """Prefix (tokens before the subject-last token) once into a key/value cache; each
    step runs the suffix with explicit positions and a mask covering prefix + suffix."""

    row_tensors = ("pre_ids", "full_mask", "suf_ids", "suf_pos", "sel", "keep")

    def __init__(self, lm: LoadedModel, rows: Rows, *, skip: int = 0, reference: bool = False):
        super().__init__(lm, rows, skip, reference)
        dev = lm.device
        pad = pad_token_id(lm.tokenizer)
        prefixes = [s[:i] for s, i in zip(rows.seqs, rows.lookup)]
        suffixes = [s[i:] for s, i in zip(rows.seqs, rows.lookup)]
        self.P = max(len(p) for p in prefixes)
        width = max(len(x) for x in suffixes)
        B = len(rows.seqs)
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
        for r, pos in enumerate(rows.needed):
            self.keep[r, [q - len(prefixes[r]) for q in pos]] = True

    @torch.no_grad()
    def setup(self) -> None:
        if self.P == 0:
            return
        # no logits are needed from the prefix: an all-False mask skips the vocabulary projection
        keep = 1 if self.reference else torch.zeros_like(self.pre_ids, dtype=torch.bool)
        out = self.model(input_ids=self.pre_ids, attention_mask=torch.ones_like(self.pre_ids),
                         position_ids=torch.arange(self.P, device=self.pre_ids.device)[None].expand(
                             len(self.pre_ids), -1), use_cache=True, logits_to_keep=keep)
        self.prefix = PrefixCache(out.past_key_values, self.reference)

    def logits(self) -> torch.Tensor:
        return self._kept(self.suf_ids, self.full_mask, position_ids=self.suf_pos)


def kept_logits(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
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
