"""RECT: RElative Change in weighT (docs/methods.md §3.2).

Per edit (per batch for batch editors) and separately per edited matrix: with ``W_prev``
the weight just before this edit and ``ΔW`` this edit's update,
``δ_ij = |ΔW_ij| / (|W_prev,ij| + eps)``; keep the entries of ΔW with the ``k`` largest δ,
zero the rest, and add the masked update. RECT changes the trajectory (later edits see
the masked weights) and returns a dense update.

Kept count: ``k = ceil(keep · numel)``, computed exactly from the decimal value of
``keep`` (so ``keep=0.7`` on 10 entries keeps 7, not 8 through float rounding); ``k >= 1``
because ``keep > 0``.

Ties: entries are ranked by δ descending, equal δ by ascending flat (row-major) index,
i.e. the first ``k`` of a stable descending sort. Implemented without a full sort: the k-th
largest value ``t`` is found with ``kthvalue``; every entry with δ > t is kept, and of the
entries with δ == t the ones with the smallest flat index fill the remaining slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from prune.linalg import Update, check_update, compute_dtype_for, to_dense, update_dtype


@dataclass(frozen=True)
class RECT:
    """RECT restraint configuration. ``keep``: fraction of entries kept, in (0, 1]
    (default 0.4, the project page and the AlphaEdit/NSE baseline; the released snippet
    uses 0.2). ``eps``: added to ``|W_prev|`` in the denominator (default 1e-8)."""

    keep: float = 0.4
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if not (0 < self.keep <= 1):
            raise ValueError(f"RECT keep must be in (0, 1], got {self.keep!r}")
        if not (self.eps >= 0) or math.isinf(self.eps):
            raise ValueError(f"RECT eps must be a finite number >= 0, got {self.eps!r}")

    @property
    def label(self) -> str:
        return f"rect[keep={self.keep},eps={self.eps:g}]"

    def kept_count(self, numel: int) -> int:
        """``ceil(keep · numel)`` computed exactly from the decimal value of ``keep``."""
        return min(numel, math.ceil(Fraction(str(self.keep)) * numel))

    def relative_change(self, w_prev: torch.Tensor, delta: Update) -> torch.Tensor:
        """``|ΔW| / (|W_prev| + eps)`` in the compute dtype (float64 input stays float64)."""
        check_update(delta, tuple(w_prev.shape))
        dt = compute_dtype_for(torch.promote_types(update_dtype(delta), w_prev.dtype))
        d = to_dense(delta).to(dt)
        return d.abs() / (w_prev.to(device=d.device, dtype=dt).abs() + self.eps)

    def mask(self, w_prev: torch.Tensor, delta: Update) -> torch.Tensor:
        """Boolean ``out x in`` mask of the kept entries (exactly :meth:`kept_count` of them)."""
        score = self.relative_change(w_prev, delta)
        flat = score.reshape(-1)
        if torch.isnan(flat).any():
            raise ValueError("RECT relative change has NaN entries (0/0: eps=0 where W_prev and ΔW are 0, or NaN input)")
        n = flat.numel()
        k = self.kept_count(n)
        if k >= n:
            return torch.ones_like(score, dtype=torch.bool)
        t = torch.kthvalue(flat, n - k + 1).values  # k-th largest
        keep = flat > t
        need = k - int(keep.sum())
        ties = torch.nonzero(flat == t, as_tuple=False).reshape(-1)  # ascending flat index
        keep[ties[:need]] = True
        return keep.reshape(score.shape)

    def restrain(self, w_prev: torch.Tensor, delta: Update) -> torch.Tensor:
        """This edit's masked update (dense, the input's dtype); factors are densified."""
        dense = to_dense(delta)
        return torch.where(self.mask(w_prev, dense), dense, torch.zeros_like(dense))
