"""Small linear-algebra building blocks shared by the restraints and spectrum tracking.

- :func:`as_factors` / :func:`to_dense` / :func:`add_updates`: an update is either a dense
  ``out x in`` tensor or a pair of factors ``(A, B)`` with ``ΔW = A @ B.T``
  (``A``: ``out x r``, ``B``: ``in x r``), the convention of :class:`editors.base.MatrixDelta`.
- :func:`thin_svd`: SVD of an update, truncated to its numerical rank. Factored updates go
  through thin QR of both factors and an SVD of the small core (cost ``O((out + in) r^2)``);
  dense ones through ``torch.linalg.svd`` on the tall orientation.
- :func:`lanczos_extremes`: the largest and smallest eigenvalue of ``M^T M`` (short side)
  by Lanczos with full reorthogonalisation, for large matrices where a full SVD is too slow.
- :func:`numerical_rank_tol`: the rank cut-off (numpy ``matrix_rank`` convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Update = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def compute_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (float32, bf16, fp16) is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def is_factored(update: Update) -> bool:
    return isinstance(update, tuple)


def check_update(update: Update, shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """Validate an update and return its ``(out, in)`` shape (checked against ``shape``)."""
    if isinstance(update, tuple):
        if len(update) != 2:
            raise ValueError(f"factored update must be a pair (A, B), got {len(update)} items")
        a, b = update
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(
                f"factors must be A: out x r and B: in x r, got A {tuple(a.shape)}, B {tuple(b.shape)}"
            )
        got = (a.shape[0], b.shape[0])
    else:
        if update.ndim != 2:
            raise ValueError(f"dense update must be 2-D (out x in), got shape {tuple(update.shape)}")
        got = (update.shape[0], update.shape[1])
    if shape is not None and tuple(shape) != got:
        raise ValueError(f"update is {got[0]}x{got[1]} but the weight is {shape[0]}x{shape[1]}")
    return got


def update_dtype(update: Update) -> torch.dtype:
    return update[0].dtype if isinstance(update, tuple) else update.dtype


def to_dense(update: Update) -> torch.Tensor:
    if isinstance(update, tuple):
        a, b = update
        return a @ b.T
    return update


def add_updates(first: Update | None, second: Update) -> Update:
    """``first + second``: factors are concatenated when both are factored, else densified."""
    if first is None:
        return second
    check_update(first, check_update(second))
    if isinstance(first, tuple) and isinstance(second, tuple):
        return (torch.cat([first[0], second[0]], dim=1), torch.cat([first[1], second[1]], dim=1))
    return to_dense(first) + to_dense(second)


def numerical_rank_tol(sigma_max: float, shape: tuple[int, int], dtype: torch.dtype) -> float:
    """Cut-off below which a singular value counts as zero: ``σ_max · max(out, in) · eps``.

    The same rule as ``numpy.linalg.matrix_rank`` (which the released PRUNE code uses),
    with ``eps`` of the dtype the SVD is computed in.
    """
    return float(sigma_max) * max(shape) * torch.finfo(dtype).eps


@dataclass(frozen=True)
class ThinSVD:
    """``ΔW = U diag(S) V^T`` truncated to the numerical rank (``S`` descending)."""

    U: torch.Tensor  # out x k
    S: torch.Tensor  # k
    V: torch.Tensor  # in x k
    shape: tuple[int, int]

    @property
    def rank(self) -> int:
        return int(self.S.numel())


def _truncate(u: torch.Tensor, s: torch.Tensor, v: torch.Tensor, shape, rtol: float | None) -> ThinSVD:
    if s.numel() == 0 or float(s[0]) == 0.0:
        k = 0
    else:
        tol = (
            float(s[0]) * rtol
            if rtol is not None
            else numerical_rank_tol(float(s[0]), shape, s.dtype)
        )
        k = int((s > tol).sum())
    return ThinSVD(U=u[:, :k], S=s[:k], V=v[:, :k], shape=(int(shape[0]), int(shape[1])))


def thin_svd(update: Update, *, dtype: torch.dtype | None = None, rtol: float | None = None) -> ThinSVD:
    """SVD of an update truncated to its numerical rank.

    Factored ``A @ B.T``: ``A = Qa Ra``, ``B = Qb Rb`` (thin QR), ``Ra Rb^T = Uc S Vc^T``
    (small core), so ``U = Qa Uc``, ``V = Qb Vc``. Dense: ``torch.linalg.svd`` of the tall
    orientation (``ΔW`` or ``ΔW^T``, whichever has more rows). ``dtype``: compute dtype
    (default: :func:`compute_dtype_for` of the input). ``rtol``: relative rank cut-off
    (default: :func:`numerical_rank_tol`).
    """
    shape = check_update(update)
    dt = dtype or compute_dtype_for(update_dtype(update))
    if isinstance(update, tuple):
        a, b = (t.to(dt) for t in update)
        if a.shape[1] == 0:
            return _truncate(a, a.new_zeros(0), b, shape, rtol)
        qa, ra = torch.linalg.qr(a, mode="reduced")
        qb, rb = torch.linalg.qr(b, mode="reduced")
        uc, s, vch = torch.linalg.svd(ra @ rb.T, full_matrices=False)
        return _truncate(qa @ uc, s, qb @ vch.T, shape, rtol)
    d = update.to(dt)
    if d.shape[0] >= d.shape[1]:
        u, s, vh = torch.linalg.svd(d, full_matrices=False)
        return _truncate(u, s, vh.T, shape, rtol)
    u, s, vh = torch.linalg.svd(d.T, full_matrices=False)  # d^T = u s vh  =>  d = vh^T s u^T
    return _truncate(vh.T, s, u, shape, rtol)


@dataclass(frozen=True)
class LanczosResult:
    """Extreme eigenvalues of the Gram matrix of the short side, i.e. squared singular values."""

    lam_max: float
    lam_min_ritz: float  # smallest Ritz value: an UPPER bound on the true smallest eigenvalue
    converged_max: bool
    steps: int


def lanczos_extremes(
    mat: torch.Tensor,
    *,
    max_steps: int = 120,
    tol: float = 1e-9,
    seed: int = 0,
) -> LanczosResult:
    """Lanczos (full reorthogonalisation) on ``G = M M^T`` or ``M^T M`` (the short side).

    Computed in float64 from a deterministic start vector (a local generator seeded with
    ``seed``; no global RNG state is touched). Stops when the residual norm of the largest Ritz
    pair is below ``tol`` relative (the eigenvalue error is at most that, typically its
    square over the spectral gap), or after ``max_steps``. The smallest Ritz value of
    the same Krylov space is returned as an estimate (an upper bound) of the smallest
    eigenvalue; it is not converged in general.
    """
    m = mat.to(torch.float64)
    wide = m.shape[0] <= m.shape[1]
    n = m.shape[0] if wide else m.shape[1]

    def gram(x: torch.Tensor) -> torch.Tensor:
        return m @ (m.T @ x) if wide else m.T @ (m @ x)

    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).to(m.device)
    q = q / q.norm()
    steps = min(max_steps, n)
    basis = torch.empty(steps, n, dtype=torch.float64, device=m.device)
    alphas: list[float] = []
    betas: list[float] = []
    lam_max, lam_min, converged = 0.0, 0.0, False
    for j in range(steps):
        basis[j] = q
        w = gram(q)
        alpha = float(w @ q)
        # full reorthogonalisation (twice is enough)
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(w.norm())
        alphas.append(alpha)
        t = np.diag(np.asarray(alphas))
        if j > 0:
            off = np.asarray(betas)
            t = t + np.diag(off, 1) + np.diag(off, -1)
        evals, evecs = np.linalg.eigh(t)  # tiny tridiagonal: numpy is much faster than torch here
        lam_max, lam_min = float(evals[-1]), float(evals[0])
        residual = abs(beta * float(evecs[-1, -1]))
        if residual <= tol * max(abs(lam_max), 1e-300) or beta <= 1e-300 or j + 1 == n:
            converged = True
            return LanczosResult(lam_max, max(lam_min, 0.0), converged, j + 1)
        betas.append(beta)
        q = w / beta
    return LanczosResult(lam_max, max(lam_min, 0.0), converged, steps)
