"""The MEND editor network (docs/methods.md, MEND).

For one edited matrix with input width ``d_in`` and output width ``d_out`` the network
maps every token's pair (u, δ) (layer input and output gradient) to a pseudo-pair
(ũ, δ̃). As released:

- one :class:`GradientTransform` per distinct ``(d_in, d_out)``, shared by the matrices of
  that shape; each block carries a per-matrix scale and shift of its pre-activation;
- u and δ are normalised by their running mean and standard deviation (updated from every
  training row, frozen outside training);
- the normalised [u, δ] goes through ``n_hidden + 1`` low-rank residual blocks
  ``x + relu(s ⊙ (U V x + b) + t)`` with ``U`` initialised to zero (so every block, and
  the whole network, starts as the identity map) and ``V`` standard normal;
- a learned edit learning rate per matrix scales the update ``ΔW = lr · Σ_t δ̃_t ũ_tᵀ``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from editors.mend.hparams import NetworkSpec


class LowRankBlock(nn.Module):
    """``x + relu(scale[m] ⊙ (U V x + b) + shift[m])`` for the matrix index ``m``."""

    def __init__(self, dim: int, rank: int, n_modes: int):
        super().__init__()
        mid = min(rank, dim)
        self.u = nn.Parameter(torch.zeros(dim, mid))
        self.v = nn.Parameter(torch.randn(mid, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (x @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return x + pre.clamp(min=0)


def _merge_moments(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor, rows: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running (count, mean, sum of squared deviations) after adding ``rows`` (Chan et al.)."""
    n_b = rows.shape[0]
    mean_b = rows.mean(0)
    m2_b = ((rows - mean_b) ** 2).sum(0)
    n = count + n_b
    diff = mean_b - mean
    return n, mean + diff * n_b / n, m2 + m2_b + diff ** 2 * count * n_b / n


class GradientTransform(nn.Module):
    """The network of one weight shape: normalisation, then the residual low-rank MLP over
    ``[u, δ]``; returns (ũ, δ̃)."""

    def __init__(self, d_in: int, d_out: int, spec: NetworkSpec, n_modes: int):
        super().__init__()
        self.d_in, self.d_out, self.norm = d_in, d_out, spec.norm
        dim = d_in + d_out
        self.blocks = nn.ModuleList(LowRankBlock(dim, spec.rank, n_modes) for _ in range(spec.n_hidden + 1))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    def observe(self, x: torch.Tensor) -> None:
        """Add rows ``[u, δ]`` to the running moments."""
        with torch.no_grad():
            n, mean, m2 = _merge_moments(self.count, self.mean, self.m2, x.detach().to(torch.float64))
            self.count.copy_(n)
            self.mean.copy_(mean)
            self.m2.copy_(m2)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if not self.norm:
            return x
        if float(self.count) < 2:
            raise RuntimeError(f"normalisation needs at least 2 rows seen in training, have {int(self.count)}")
        std = (self.m2 / (self.count - 1)).sqrt()
        return (x - self.mean.to(x.dtype)) / (std.to(x.dtype) + 1e-7)

    def forward(self, u: torch.Tensor, delta: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([u, delta], dim=-1).to(self.blocks[0].u.dtype)  # the network's dtype (float32)
        if self.training:
            self.observe(x)
        h = self.normalise(x)
        for block in self.blocks:
            h = block(h, mode)
        return h[:, :self.d_in], h[:, self.d_in:]


def shape_key(d_in: int, d_out: int) -> str:
    return f"{d_in}x{d_out}"


class MENDNetwork(nn.Module):
    """All edited matrices' networks and edit learning rates. ``shapes``: one
    ``(d_in, d_out)`` per edited matrix, in the order of ``names``."""

    def __init__(self, names: Sequence[str], shapes: Sequence[tuple[int, int]], spec: NetworkSpec):
        super().__init__()
        if len(names) != len(shapes):
            raise ValueError("one shape per matrix name")
        self.names = list(names)
        groups: dict[str, list[str]] = {}
        for name, (d_in, d_out) in zip(names, shapes):
            groups.setdefault(shape_key(d_in, d_out), []).append(name)
        self.route = {name: (shape_key(*shape), groups[shape_key(*shape)].index(name))
                      for name, shape in zip(names, shapes)}
        dims = {shape_key(*s): s for s in shapes}
        self.transforms = nn.ModuleDict({k: GradientTransform(*dims[k], spec, len(v)) for k, v in groups.items()})
        self.edit_lrs = nn.Parameter(torch.full((len(names),), float(spec.edit_lr)))

    def network_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the edit learning rates."""
        return list(self.transforms.parameters())

    def pseudo(self, name: str, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ũ, δ̃) for the rows of one matrix; rows where u or δ is all zero are dropped
        (padding), as released."""
        keep = (u != 0).any(-1) & (delta != 0).any(-1)
        key, mode = self.route[name]
        return self.transforms[key](u[keep], delta[keep], mode)

    def factors(self, name: str, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors (A, B) of the update ``ΔW = A Bᵀ = lr · Σ_t δ̃_t ũ_tᵀ`` (``out x in``):
        A = lr · δ̃ᵀ (out x T), B = ũᵀ (in x T)."""
        u_t, d_t = self.pseudo(name, u, delta)
        lr = self.edit_lrs[self.names.index(name)]
        return lr * d_t.T, u_t.T
