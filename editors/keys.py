"""Subject location, activation capture, keys and hook-point outputs.

Everything here works on a :class:`benchmark.core.arch.LoadedModel` through its ArchFacts
(module-name templates, layout); nothing looks at model names. Weights are never changed.

Public API (used by ROME, MEMIT, AlphaEdit, NSE and :mod:`editors.targets`):

- ``subject_end(request) -> int``: character end of the subject's LAST occurrence in the prompt.
- ``subject_last_token(tokenizer, text, char_end) -> int``: index (in the encoding with
  special tokens, so BOS counts) of the token containing character ``char_end - 1``; robust
  to BOS and to the subject's last token merging with the following text.
- ``collect_at_subject(lm, requests, templates, points, ...) -> dict[str, Tensor]``: values
  at hook points (``(module_name, "input"|"output")``) at the subject's last token,
  averaged over templates (:mod:`editors.templates`): ``(n_requests, dim)`` float32.
  With ``groups`` (template group sizes, :func:`editors.templates.template_groups`) the
  average is the mean of the group means (released MEMIT ``compute_ks``); without, the
  plain mean over templates.
- ``template_weights(n_templates, groups) -> Tensor``: each template's weight in that average.
- ``compute_keys(lm, requests, layers, templates, groups=None) -> dict[int, Tensor]``: the
  input of the down projection (ArchFacts.down_name) = the key, ``(n_requests, d_ffn)``.
- ``compute_outputs(lm, requests, layer, point, templates=("",))``: MLP output
  (``point="mlp_out"``) or residual output of the block (``point="residual"``).
- Small helpers shared with :mod:`editors.targets`: ``pad_batch``, ``pad_token_id``,
  ``unwrap_output``, ``frozen_params``, ``point_module``, the ``Point`` literal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.core.arch import LoadedModel, forward_replaced, get_module, layer_modules
from benchmark.core.requests import EditRequest

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


def point_module(lm: LoadedModel, layer: int, point: Point) -> str:
    """Module whose output is the hook point: the MLP (``mlp_out``) or the block (``residual``)."""
    return lm.arch.mlp_name(layer) if point == "mlp_out" else lm.arch.layer_name(layer)


# --------------------------------------------------------------------------- batching
@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> Batch:
    """Right-pad token sequences to one width (mask 1 on real tokens)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return Batch(ids, mask)


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def unwrap_output(out):
    """A module's hidden states, whether it returns a tensor or a tuple."""
    return out[0] if isinstance(out, tuple) else out


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


# --------------------------------------------------------------------------- averaging
def template_weights(n_templates: int, groups: Sequence[int] | None = None) -> torch.Tensor:
    """Weight of each template in the template average (float64, sums to 1): ``1/n`` each
    without ``groups``; with ``groups`` (consecutive group sizes summing to ``n_templates``)
    ``1/(len(groups)·size)`` for a template in a group of ``size``, i.e. the mean of the
    group means."""
    if groups is None:
        return torch.full((n_templates,), 1.0 / n_templates, dtype=torch.float64)
    if any(g < 1 for g in groups) or sum(groups) != n_templates:
        raise ValueError(f"template groups {list(groups)} do not partition {n_templates} templates")
    return torch.cat([torch.full((g,), 1.0 / (len(groups) * g), dtype=torch.float64) for g in groups])


# --------------------------------------------------------------------------- capture
class _StopForward(Exception):
    pass


def _encode_with_subject(tokenizer, prefix: str, request: EditRequest) -> tuple[list[int], int]:
    text = prefix + request.prompt
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return list(ids), subject_last_token(tokenizer, text, len(prefix) + subject_end(request))


def _capture_hook(mod: torch.nn.Module, name: str, kind: str, record):
    if kind == "input":
        return mod.register_forward_pre_hook(
            lambda m, a, k: record(name, a[0] if a else next(iter(k.values()))), with_kwargs=True)
    return mod.register_forward_hook(lambda m, a, o: record(name, unwrap_output(o)))


_RECORD = "<input of the recorded layer>"


def _run_capturing(lm: LoadedModel, batch: Batch, points: Sequence[tuple[str, str]],
                   record: int | None = None, start: int = 0,
                   replay: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One forward capturing module inputs/outputs; stops once all points fired. With
    ``record`` the input of that decoder layer is returned too (under ``_RECORD``; None
    when the layer below does not return a plain tensor, so it cannot be replayed); with
    ``start > 0`` layers ``0..start-1`` return ``replay`` instead of running."""
    got: dict[str, torch.Tensor] = {}
    names = {n for n, _ in points}

    def record_value(name: str, value: torch.Tensor) -> None:
        got[name] = value
        if names.issubset(got):
            raise _StopForward

    handles = []
    try:
        for name, kind in points:
            handles.append(_capture_hook(get_module(lm.model, name), name, kind, record_value))
        if record is not None:
            mod = get_module(lm.model, lm.arch.layer_name(record))
            handles.insert(0, _capture_hook(mod, _RECORD, "input", lambda n, v: got.__setitem__(n, v)))
            if record > 0:  # replaying needs layers that return plain tensors
                below = get_module(lm.model, lm.arch.layer_name(record - 1))
                handles.append(below.register_forward_hook(
                    lambda m, a, o: None if isinstance(o, torch.Tensor) else got.__setitem__("<tuple>", o)))
        replaced = layer_modules(lm, start) if replay is not None else []
        try:
            with forward_replaced(replaced, lambda *args, **kwargs: replay):
                lm.model(input_ids=batch.input_ids.to(lm.device),
                         attention_mask=batch.attention_mask.to(lm.device))
        except _StopForward:
            pass
    finally:
        for h in handles:
            h.remove()
    if got.pop("<tuple>", None) is not None:
        got[_RECORD] = None
    missing = [n for n, _ in points if n not in got]
    if missing:
        raise RuntimeError(f"hook points never ran: {missing}")
    return got


class SubjectPasses:
    """Forward passes over fixed rows (every template + prompt of every request, in chunks
    of ``batch_size`` rows) capturing values at each subject's last token, averaged over
    the templates: uniformly, or with ``groups`` the mean of the group means
    (:func:`template_weights`).

    :meth:`collect` with ``record=l`` also keeps the input of decoder layer ``l``; the next
    call then replaces layers ``0..l-1`` by that input instead of running them. That is
    exact (bit for bit) when the model was changed only at layers ``>= l`` in between, as
    in MEMIT's ascending layer loop, and ``record`` never decreases."""

    def __init__(self, lm: LoadedModel, requests: Sequence[EditRequest], templates: Sequence[str],
                 batch_size: int = 64, groups: Sequence[int] | None = None):
        if not templates:
            raise ValueError("need at least one template")
        self.lm, self.n_requests, self.n_templates = lm, len(requests), len(templates)
        # uniform: sum, then divide by the count (as before); groups: weighted sum
        self.weights = None if groups is None else template_weights(len(templates), groups)
        rows = [(ri, _encode_with_subject(lm.tokenizer, t, r))
                for ri, r in enumerate(requests) for t in templates]
        self.template_of = [ti for _ in requests for ti in range(len(templates))]
        self.chunks = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
        self.start = 0  # layers below are replayed from ``inputs``
        self.inputs: list[torch.Tensor] = []

    @torch.no_grad()
    def collect(self, points: Sequence[tuple[str, Literal["input", "output"]]],
                record: int | None = None) -> dict[str, torch.Tensor]:
        """Template-averaged values at hook ``points``: ``{module_name: (n_requests, dim)}``
        float32. The forward stops once every hooked module has fired."""
        lm = self.lm
        if record is None or record < self.start:
            self.start, self.inputs = 0, []
        sums: dict[str, torch.Tensor] = {}
        names = [n for n, _ in points]
        inputs = []
        first = 0  # row index of the chunk's first row
        for c, chunk in enumerate(self.chunks):
            batch = pad_batch([ids for _, (ids, _) in chunk], pad_token_id(lm.tokenizer))
            pos = torch.tensor([p for _, (_, p) in chunk])
            owner = torch.tensor([ri for ri, _ in chunk])
            replay = self.inputs[c] if self.start else None
            got = _run_capturing(lm, batch, points, record, self.start, replay)
            if record is not None:
                inputs.append(got.pop(_RECORD))
            for name in names:
                vals = got[name][torch.arange(len(chunk), device=got[name].device),
                                 pos.to(got[name].device)]
                vals = vals.float().cpu()
                if self.weights is not None:
                    w = self.weights[self.template_of[first:first + len(chunk)]]
                    vals = (vals.double() * w[:, None]).float()
                acc = sums.setdefault(name, torch.zeros(self.n_requests, vals.shape[-1]))
                acc.index_add_(0, owner, vals)
            first += len(chunk)
        if record is not None and all(x is not None for x in inputs):
            self.start, self.inputs = record, inputs
        else:
            self.start, self.inputs = 0, []
        if self.weights is not None:
            return sums
        return {n: s / self.n_templates for n, s in sums.items()}


def collect_at_subject(lm: LoadedModel, requests: Sequence[EditRequest], templates: Sequence[str],
                       points: Sequence[tuple[str, Literal["input", "output"]]],
                       batch_size: int = 64, groups: Sequence[int] | None = None,
                       ) -> dict[str, torch.Tensor]:
    """Template-averaged values at hook ``points`` at each request's subject last token
    (:meth:`SubjectPasses.collect`, one pass)."""
    return SubjectPasses(lm, requests, templates, batch_size, groups).collect(points)


# --------------------------------------------------------------------------- keys, outputs
def compute_keys(lm: LoadedModel, requests: Sequence[EditRequest], layers: Sequence[int],
                 templates: Sequence[str], batch_size: int = 64,
                 groups: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
    """Keys (down-projection inputs at the subject's last token, averaged over templates:
    uniformly, or with ``groups`` the mean of the group means)."""
    names = {layer: lm.arch.down_name(layer) for layer in layers}
    got = collect_at_subject(lm, requests, templates, [(n, "input") for n in names.values()],
                             batch_size=batch_size, groups=groups)
    return {layer: got[n] for layer, n in names.items()}


def compute_outputs(lm: LoadedModel, requests: Sequence[EditRequest], layer: int, point: Point,
                    templates: Sequence[str] = ("",), batch_size: int = 64) -> torch.Tensor:
    """MLP output or residual block output at the subject's last token, ``(n, d_model)``."""
    name = point_module(lm, layer, point)
    return collect_at_subject(lm, requests, templates, [(name, "output")], batch_size)[name]
