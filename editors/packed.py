"""Packed rows for the batched target optimisation (:mod:`editors.targets`, engine
``"fast"`` with several requests).

Rows of a batch differ in length: right-padded, padding was 40% of the tokens of a 10-fact
SmolLM2 MEMIT batch. :class:`PackedRunner` packs the rows into lanes instead, one lane per
request, filled so that the lanes are about equally long: each lane
holds several rows' prefixes one after another (run once into a key/value cache) and
their suffixes (run every step), and a 4D attention mask keeps every token within its
row, at its own position. (All rows in one lane made attention, dense over the lane,
cost as much as the linear layers on SmolLM2.) Needs an attention implementation that
takes a 4D mask (:func:`attention_kind`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from benchmark.core.arch import LoadedModel
from editors.runners import PrefixCache, Rows, Runner


class PackedRunner(Runner):
    """Rows packed into lanes (one per request, filled so that the lanes' suffixes, then
    prefixes, are about equally long): each lane holds several rows' prefixes one after another (run
    once into a key/value cache) and their suffixes (run every step); a 4D mask keeps each
    token within its row, at its position in its row. Little padding, and attention only
    within a lane."""

    def __init__(self, lm: LoadedModel, rows: Rows, *, skip: int = 0):
        super().__init__(lm, rows, skip, reference=False)
        self.impl = attention_kind(lm.model)
        self.rows = rows
        self.alive = list(range(len(rows.seqs)))  # current rows (original indices)
        self.row_owner = list(rows.owner)  # per current row: its request's active index
        self._build()
        self.sites = dict(self.site_of)  # the rows' δ positions in the first layout

    def _build(self) -> None:
        """Lay the current rows out in lanes: ids, rows (-1: padding), positions, and the
        lane/slot of every (row, position)."""
        rows, dev = self.rows, self.dev
        n_lanes = len(set(self.row_owner))
        lanes: list[list[int]] = [[] for _ in range(n_lanes)]
        fill = [0.0] * n_lanes
        # longest suffixes first, each row into the emptiest lane; a suffix token runs every
        # step, a prefix token once: prefixes weigh 1/25 (about the number of steps)
        for r in sorted(self.alive, key=lambda r: (rows.lookup[r] - len(rows.seqs[r]), -rows.lookup[r])):
            lane = min(range(n_lanes), key=lambda i: fill[i])
            lanes[lane].append(r)
            fill[lane] += len(rows.seqs[r]) - rows.lookup[r] + rows.lookup[r] / 25
        pre = [[(r, q) for r in lane for q in range(rows.lookup[r])] for lane in lanes]
        suf = [[(r, q) for r in lane for q in range(rows.lookup[r], len(rows.seqs[r]))]
               for lane in lanes]
        self.pre = _lane_tensors(pre, rows, dev)
        self.suf = _lane_tensors(suf, rows, dev)
        self.slot = {rq: (li, k) for part in (pre, suf) for li, lane in enumerate(part)
                     for k, rq in enumerate(lane)}
        needed = {(r, q) for r in self.alive for q in rows.needed[r]}
        width = self.suf[0].shape[1]
        self.keep = torch.tensor([[rq in needed for rq in lane] + [False] * (width - len(lane))
                                  for lane in suf], device=dev)
        self.sel = torch.tensor([[float(q == rows.lookup[r]) for r, q in lane] + [0.0] * (width - len(lane))
                                 for lane in suf], device=dev)
        kept = [rq for lane in suf for rq in lane if rq in needed]  # lane order
        self.order = torch.tensor(sorted(range(len(kept)), key=lambda i: kept[i]), device=dev)
        self.site_of = {r: self.slot[(r, rows.lookup[r])] for r in self.alive}
        owner = dict(zip(self.alive, self.row_owner))
        self.tok_owner = torch.tensor([[owner.get(r, 0) for r in lane] for lane in self.suf[1].tolist()],
                                      device=dev)

    def site(self, row: int) -> tuple[int, int]:
        return self.sites[row]

    def rows_of_active(self) -> list[int]:
        return list(self.row_owner)

    def n_tokens(self) -> int:
        return int(self.suf[0].numel())

    def spread(self, deltas: torch.Tensor) -> torch.Tensor:
        return deltas[self.tok_owner]

    def _mask(self, q_row, q_pos, k_row, k_pos) -> torch.Tensor:
        allowed = (q_row[:, :, None] == k_row[:, None, :]) & (k_pos[:, None, :] <= q_pos[:, :, None])
        if self.impl == "eager":
            dtype = next(self.model.parameters()).dtype
            return torch.zeros(allowed.shape, dtype=dtype, device=self.dev).masked_fill(
                ~allowed, torch.finfo(dtype).min)[:, None]
        return allowed[:, None]

    @torch.no_grad()
    def setup(self) -> None:
        ids, row, pos = self.pre
        if ids.shape[1] == 0:
            return
        out = self.model(input_ids=ids, position_ids=pos, attention_mask=self._mask(row, pos, row, pos),
                         use_cache=True, logits_to_keep=torch.zeros_like(ids, dtype=torch.bool))
        self.prefix = PrefixCache(out.past_key_values, reference=False)

    def logits(self) -> torch.Tensor:
        (_, pre_row, pre_pos), (ids, row, pos) = self.pre, self.suf
        mask = self._mask(row, pos, torch.cat([pre_row, row], 1), torch.cat([pre_pos, pos], 1))
        # the kept positions come in lane order: reorder the vocabulary projection's input
        # (rows x d_model) into the rows' order, cheaper than reordering its output
        head = self.model.get_output_embeddings()
        handle = head.register_forward_pre_hook(lambda m, args: (args[0].index_select(-2, self.order),
                                                                 *args[1:]))
        try:
            return self._kept(ids, mask, position_ids=pos)
        finally:
            handle.remove()

    def select(self, keep_rows: Sequence[bool], owner: Sequence[int]) -> None:
        """Keep the current rows flagged True, ``owner``: their requests' new indices; the
        cached prefixes and replayed states move to the new layout."""
        old_slot, old_pre = self.slot, tuple(self.pre[0].shape)
        self.alive = [r for r, k in zip(self.alive, keep_rows) if k]
        self.row_owner = list(owner)
        self._build()
        moves = {"pre": ([], []), "suf": ([], [])}
        for (r, q), new in self.slot.items():
            moves["pre" if q < self.rows.lookup[r] else "suf"][0].append(old_slot[(r, q)])
            moves["pre" if q < self.rows.lookup[r] else "suf"][1].append(new)
        if self.prefix is not None:  # cached (lane, head, slot, dim) tensors
            self.prefix.map(lambda v: _moved(v, *moves["pre"], self.pre[0].shape, slot_dim=2),
                            lambda v: (v.shape[0], v.shape[2]) == old_pre)
        if self.replay.out is not None:  # the recorded (lane, slot, dim) layer output
            self.replay.out = _moved(self.replay.out, *moves["suf"], self.suf[0].shape, slot_dim=1)


def _lane_tensors(lanes: list[list[tuple[int, int]]], rows: Rows, dev) -> tuple[torch.Tensor, ...]:
    """(ids, row, position) per lane and slot; padding: row -1, position 0."""
    width = max((len(lane) for lane in lanes), default=0)
    ids = torch.zeros((len(lanes), width), dtype=torch.long)
    row = torch.full((len(lanes), width), -1, dtype=torch.long)
    pos = torch.zeros((len(lanes), width), dtype=torch.long)
    for li, lane in enumerate(lanes):
        for k, (r, q) in enumerate(lane):
            ids[li, k], row[li, k], pos[li, k] = rows.seqs[r][q], r, q
    return ids.to(dev), row.to(dev), pos.to(dev)


def attention_kind(model: torch.nn.Module) -> str | None:
    """The attention implementation if it takes a custom 4D mask (sdpa: boolean, eager:
    additive), else None (then batches are padded instead of packed)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl if impl in ("sdpa", "eager") else None


def _moved(value: torch.Tensor, old: list, new: list, new_shape, slot_dim: int) -> torch.Tensor:
    """A zero tensor of the new (lanes, slots) layout holding ``value``'s entries moved from
    (lane, slot) ``old[i]`` to ``new[i]`` (dims 0 and ``slot_dim``)."""
    shape = list(value.shape)
    shape[0], shape[slot_dim] = new_shape
    out = value.new_zeros(shape)
    if not old:
        return out
    (ol, os_), (nl, ns) = (torch.tensor(x, device=value.device).T for x in (old, new))
    if slot_dim == 1:
        out[nl, ns] = value[ol, os_]
    else:
        out[nl, :, ns] = value[ol, :, os_]
    return out


