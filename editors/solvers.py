"""Pure linear algebra of the batch editors (MEMIT, sequential MEMIT, AlphaEdit, NSE).

Everything here is a function of tensors only (no model, no hooks, no state), computed in
float64. Orientation is the math one: an edited matrix is ``out x in``, keys are columns
``in x n``, residuals are columns ``out x n``. Every solver returns low-rank factors
``(A, B)`` with ``ΔW = A @ B.T`` (``A = R``: ``out x n``, ``B``: ``in x n``), so the rank of
an update never exceeds the batch size ``n``.

References (docs/methods.md §2.1):
- MEMIT: ``ΔW = R Kᵀ (λ C0 + K Kᵀ)⁻¹``; sequential MEMIT adds the accumulated ``Kp Kpᵀ``
  of every previously edited key to the bracket.
- AlphaEdit: ``P = Û Ûᵀ`` with ``Û`` the eigenvectors of ``C0`` whose eigenvalue is below a
  threshold; ``ΔW = R K₁ᵀ P (Kp Kpᵀ P + K₁ K₁ᵀ P + β I)⁻¹``.
- NSE: per layer, the neurons (key coordinates) carrying a fraction ``p`` of the
  accumulated ``|k|``; the sequential-MEMIT system solved on those columns only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch

log = logging.getLogger(__name__)

_F64 = torch.float64


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(_F64)


def _check_batch(R: torch.Tensor, K: torch.Tensor) -> None:
    if R.ndim != 2 or K.ndim != 2:
        raise ValueError(f"R and K must be matrices, got {tuple(R.shape)} and {tuple(K.shape)}")
    if R.shape[1] != K.shape[1]:
        raise ValueError(f"R has {R.shape[1]} columns but K has {K.shape[1]} (one per request)")


def _check_square(name: str, M: torch.Tensor | None, d: int) -> None:
    if M is not None and tuple(M.shape) != (d, d):
        raise ValueError(f"{name} must be {d}x{d}, got {tuple(M.shape)}")


def outer_sum(K: torch.Tensor) -> torch.Tensor:
    """``K Kᵀ`` in float64 (the per-batch increment of the accumulated key moment)."""
    K = _f64(K)
    return K @ K.T


# --------------------------------------------------------------------------- MEMIT
def memit_solve(
    R: torch.Tensor,
    K: torch.Tensor,
    C0: torch.Tensor,
    lam: float,
    Kp_KpT: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MEMIT's closed form as factors: ``ΔW = R Kᵀ (λ C0 + Kp Kpᵀ + K Kᵀ)⁻¹ = A Bᵀ``.

    ``A = R`` and ``B = (λ C0 + Kp Kpᵀ + K Kᵀ)⁻¹ K`` (the bracket is symmetric). It is the
    minimiser of ``‖ΔW K − R‖² + λ tr(ΔW C0 ΔWᵀ) + ‖ΔW Kp‖²``. ``Kp_KpT=None`` is plain
    MEMIT; a matrix makes it sequential MEMIT.
    """
    _check_batch(R, K)
    d = K.shape[0]
    _check_square("C0", C0, d)
    _check_square("Kp_KpT", Kp_KpT, d)
    K64 = _f64(K)
    M = lam * _f64(C0) + K64 @ K64.T
    if Kp_KpT is not None:
        M = M + _f64(Kp_KpT)
    B = torch.linalg.solve(M, K64)
    return _f64(R), B


# --------------------------------------------------------------------------- AlphaEdit
@dataclass(frozen=True)
class NullSpaceThreshold:
    """Which eigenvectors of ``C0`` span the preserved keys' (approximate) null space.

    - ``absolute``: eigenvalues ``< value`` (released AlphaEdit code: 2e-2; paper: 1e-2).
      Depends on the scale of the keys; on a model whose key moments are large it can
      select nothing (P = 0, no edit at all).
    - ``relative``: eigenvalues ``< value`` times the largest eigenvalue (scale-free).
    - ``energy``: the smallest eigenvalues whose sum is at most ``value`` times the trace
      of ``C0`` (scale-free; the null space then carries at most that share of the key
      energy, so P = 0 only if even the smallest eigenvalue exceeds it).
    """

    mode: Literal["absolute", "relative", "energy"] = "absolute"
    value: float = 2e-2

    def __post_init__(self) -> None:
        if self.mode not in ("absolute", "relative", "energy"):
            raise ValueError("null-space threshold mode must be 'absolute', 'relative' or 'energy', "
                             f"got {self.mode!r}")
        if not self.value >= 0:
            raise ValueError(f"null-space threshold must be >= 0, got {self.value}")
        if self.mode != "absolute" and self.value > 1:
            raise ValueError(f"{self.mode} threshold is a fraction (<= 1), got {self.value}")


def null_space_mask(evals: torch.Tensor, threshold: NullSpaceThreshold) -> torch.Tensor:
    """Which of ``C0``'s eigenvalues (ascending, as ``torch.linalg.eigh`` returns them) span
    the null space under ``threshold`` (boolean mask; its sum is the null-space dimension)."""
    if threshold.mode == "absolute":
        return evals < threshold.value
    if threshold.mode == "relative":
        return evals < threshold.value * evals[-1]
    budget = threshold.value * evals.clamp_min(0).sum()
    return torch.cumsum(evals.clamp_min(0), 0) <= budget


def _symmetric_c0(C0: torch.Tensor) -> torch.Tensor:
    """``C0`` in float64, symmetrised (the eigendecomposition's input)."""
    C = _f64(C0)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"C0 must be square, got {tuple(C.shape)}")
    return (C + C.T) / 2


def c0_eigenvalues(C0: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, float64) of ``C0`` exactly as :func:`null_space_basis` computes
    them before selecting (the symmetrised matrix, ``torch.linalg.eigh``)."""
    return torch.linalg.eigh(_symmetric_c0(C0)).eigenvalues


def null_space_basis(C0: torch.Tensor, threshold: NullSpaceThreshold) -> torch.Tensor:
    """Orthonormal columns ``Û`` (``d x r``) of the eigenvectors of ``C0`` selected by ``threshold``."""
    evals, evecs = torch.linalg.eigh(_symmetric_c0(C0))  # ascending
    U = evecs[:, null_space_mask(evals, threshold)]
    if U.shape[1] == 0:
        log.warning("null-space threshold %s selects no eigenvector of C0 (smallest eigenvalue %.3g): "
                    "the projection is zero and AlphaEdit edits nothing", threshold, float(evals[0]))
    return U


def null_space_projection(C0: torch.Tensor, threshold: NullSpaceThreshold) -> torch.Tensor:
    """AlphaEdit's projection ``P = Û Ûᵀ`` (``d x d``, float64)."""
    U = null_space_basis(C0, threshold)
    return U @ U.T


def alphaedit_solve(
    R: torch.Tensor,
    K1: torch.Tensor,
    P: torch.Tensor,
    Kp_KpT: torch.Tensor | None,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaEdit's closed form as factors: ``ΔW = R K₁ᵀ P (Kp Kpᵀ P + K₁ K₁ᵀ P + β I)⁻¹ = A Bᵀ``.

    ``A = R`` and ``B = (P M + β I)⁻¹ P K₁`` with ``M = Kp Kpᵀ + K₁ K₁ᵀ`` (transpose of the
    bracket, using ``P = Pᵀ``). ``B`` lies in the range of ``P`` (for ``β > 0``), so
    ``ΔW k = 0`` for every key with ``P k = 0``: the preserved keys are annihilated.
    """
    _check_batch(R, K1)
    d = K1.shape[0]
    _check_square("P", P, d)
    _check_square("Kp_KpT", Kp_KpT, d)
    if beta <= 0:
        raise ValueError(f"AlphaEdit's beta must be > 0, got {beta}")
    K64, P64 = _f64(K1), _f64(P)
    M = K64 @ K64.T
    if Kp_KpT is not None:
        M = M + _f64(Kp_KpT)
    lhs = P64 @ M + beta * torch.eye(d, dtype=_F64, device=M.device)
    B = torch.linalg.solve(lhs, P64 @ K64)
    return _f64(R), B


# --------------------------------------------------------------------------- NSE
def select_neurons(K: torch.Tensor, fraction: float) -> torch.Tensor:
    """NSE's neuron selection for one layer: indices of the key coordinates (rows of
    ``K``, ``in x n``) with the largest accumulated ``|k|`` over the batch, taking the
    longest prefix (in descending score order) whose cumulative score is at most
    ``fraction`` of the total, and at least one. ``fraction >= 1`` selects every neuron
    (selection off, as in the released GPT-2 XL / LLaMA-3 configurations).

    Returns a 1-D long tensor of indices in descending-score order.
    """
    if not fraction > 0:
        raise ValueError(f"neuron fraction must be > 0, got {fraction}")
    if K.ndim != 2:
        raise ValueError(f"K must be in x n, got {tuple(K.shape)}")
    d = K.shape[0]
    if fraction >= 1.0:
        return torch.arange(d, device=K.device)
    scores = _f64(K).abs().sum(dim=1)
    sorted_scores, order = torch.sort(scores, descending=True, stable=True)
    count = int((torch.cumsum(sorted_scores, 0) <= fraction * scores.sum()).sum())
    return order[: max(count, 1)]


def nse_solve(
    R: torch.Tensor,
    K: torch.Tensor,
    C0: torch.Tensor,
    lam: float,
    Kp_KpT: torch.Tensor | None,
    columns: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequential-MEMIT system on the selected columns (neurons) ``S`` only.

    ``ΔW[:, S] = R K_Sᵀ (λ C0[S,S] + Kp Kpᵀ[S,S] + K_S K_Sᵀ)⁻¹`` and ``ΔW[:, ~S] = 0``;
    as factors ``A = R``, ``B[S] = (…)⁻¹ K_S``, ``B[~S] = 0``.
    """
    _check_batch(R, K)
    d = K.shape[0]
    _check_square("C0", C0, d)
    _check_square("Kp_KpT", Kp_KpT, d)
    cols = columns.to(device=K.device, dtype=torch.long)
    if cols.numel() == 0:
        raise ValueError("NSE needs at least one selected column")
    K64 = _f64(K)
    Ks = K64[cols]
    M = lam * _f64(C0)[cols][:, cols] + Ks @ Ks.T
    if Kp_KpT is not None:
        M = M + _f64(Kp_KpT)[cols][:, cols]
    B = torch.zeros_like(K64)
    B[cols] = torch.linalg.solve(M, Ks)
    return _f64(R), B
