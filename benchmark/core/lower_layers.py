"""The output of a model's unedited lower layers, recorded once and replayed later
(docs/performance.md, checkpoint evaluation).

A model whose edits touch decoder layer ``n`` and above computes, for a given input, the
same output of layers ``0..n-1`` at every checkpoint and under every evaluation variant.
:class:`LowerLayerMemo` records that output for each plain forward pass made while it is
:meth:`~LowerLayerMemo.active` (the teacher-forced scoring of
:func:`benchmark.core.scoring.score_continuations`) and, when the same input comes again,
replaces layers ``0..n-1`` by the recorded tensor instead of running them.

What makes a replay exact:

- a pass is keyed by every tensor it is given (input ids, attention mask, positions, the
  kept logits) with shapes and dtypes, so a replayed tensor is what the same layers
  computed from the same input in the same batch shape;
- only plain passes take part: no key/value cache in or out (``use_cache=False``), no
  other arguments (a generation step would need the lower layers' cache entries);
- the records are tied to a fingerprint (sha256 of the bytes) of every parameter and
  buffer outside decoder layers ``n`` and above, taken each time the memo is activated:
  if any of them changed, the records are dropped.

Recording stops at :data:`MAX_BYTES` of recorded tensors (the rest of the passes run as
usual).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Iterator

import torch

from benchmark.core.arch import LoadedModel, forward_replaced, layer_modules, output_recorded

log = logging.getLogger(__name__)

#: The most recorded hidden states one memo keeps (bytes).
MAX_BYTES = 1 << 30
#: Keyword arguments a memoised pass may carry (tensors among them are part of its key).
PLAIN_ARGS = frozenset({"input_ids", "attention_mask", "position_ids", "logits_to_keep", "use_cache"})


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy())


class LowerLayerMemo:
    """Records and replays the output of decoder layers ``0..n-1`` of ``lm`` (``n >= 1``)."""

    def __init__(self, lm: LoadedModel, n: int, max_bytes: int = MAX_BYTES):
        if not 1 <= n <= lm.arch.n_layers:
            raise ValueError(f"lower-layer memo: n must be in 1..{lm.arch.n_layers}, not {n}")
        self.lm, self.n, self.max_bytes = lm, n, max_bytes
        self.mods = layer_modules(lm, n)
        self._upper = tuple(lm.arch.layer_name(i) + "." for i in range(n, lm.arch.n_layers))
        self.records: dict[str, torch.Tensor] = {}
        self.fingerprint: str | None = None
        self.replayed = 0
        self.recorded_bytes = 0

    def _fingerprint(self) -> str:
        h, seen = hashlib.sha256(), set()
        model = self.lm.model  # read afresh: a parameter replaced since is seen
        for name, t in (*model.named_parameters(), *model.named_buffers()):
            if name.startswith(self._upper):
                continue
            if t.data_ptr() in seen:  # tied weights (input and output embeddings)
                continue
            seen.add(t.data_ptr())
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(_tensor_bytes(t))
        return h.hexdigest()

    def _key(self, args: tuple, kwargs: dict) -> str | None:
        if args or not set(kwargs) <= PLAIN_ARGS or kwargs.get("use_cache") is not False:
            return None
        h = hashlib.sha256()
        for name in sorted(kwargs):
            v = kwargs[name]
            if isinstance(v, torch.Tensor):
                h.update(f"{name}:{v.dtype}:{tuple(v.shape)};".encode())
                h.update(_tensor_bytes(v))
            elif v is not None and not isinstance(v, (bool, int)):
                return None
            else:
                h.update(f"{name}={v!r};".encode())
        return h.hexdigest()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within this block, plain forward passes of the model record or replay."""
        fingerprint = self._fingerprint()
        if fingerprint != self.fingerprint:
            if self.records:
                log.info("lower-layer memo: layers 0..%d changed; %d records dropped",
                         self.n - 1, len(self.records))
            self.records, self.recorded_bytes, self.fingerprint = {}, 0, fingerprint
        model = self.lm.model
        real = model.forward

        @functools.wraps(real)  # callers read the signature (``logits_to_keep``)
        def forward(*args, **kwargs):
            key = self._key(args, kwargs)
            if key is None:
                return real(*args, **kwargs)
            if key in self.records:
                self.replayed += 1
                rec = self.records[key]
                with forward_replaced(self.mods, lambda *a, **k: rec.clone()):
                    return real(*args, **kwargs)
            def record(out) -> None:
                size = out.numel() * out.element_size() if isinstance(out, torch.Tensor) else 0
                if size and self.recorded_bytes + size <= self.max_bytes:
                    self.records[key] = out.detach().clone()
                    self.recorded_bytes += size

            with output_recorded(self.mods[-1], record):
                return real(*args, **kwargs)

        with forward_replaced([model], forward):
            yield


def lowest_layer(lm: LoadedModel, names) -> int | None:
    """The lowest decoder layer holding any of the modules or parameters ``names`` (None if
    none is inside a decoder layer)."""
    layers = [i for i in range(lm.arch.n_layers)
              if any(str(name).startswith(lm.arch.layer_name(i) + ".") for name in names)]
    return min(layers) if layers else None
