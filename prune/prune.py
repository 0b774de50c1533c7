"""PRUNE: Perturbation Restraint on Upper bouNd for Editing (docs/methods.md §3.1).

Restraint of one edited matrix with original (unedited) weight ``W0`` (``out x in``) and
accumulated update ``ΔW`` (``W_n = W0 + ΔW``):

1. ``ΔW = U Σ V^T``, truncated to its numerical rank (:func:`prune.linalg.numerical_rank_tol`).
2. ``m = σ_max(W0)`` -- of the ORIGINAL matrix, computed once per matrix and cached.
3. ``F(σ) = log_α(σ) − log_α(m) + m`` for ``σ >= m`` (``α`` in ``e, 2, 1.5, 1.2``), or
   ``F(σ) = (σ + m) / 2`` for ``alpha="linear"``; ``σ < m`` unchanged. ``F(m) = m``.
4. Restrained weight ``W̄ = W0 + ΔW̄`` with ``ΔW̄ = U F(Σ) V^T``; :meth:`PRUNE.restrain`
   returns ``ΔW̄`` (factors ``(U F(Σ), V)`` for factored input, dense for dense input).

Variants (``variant=``):
- ``"standard"`` (default): the paper and the released PRUNE code, ``W0 + U F(Σ) V^T``.
- ``"double_add"``: REPRODUCTION ONLY. The PRUNE baseline of the AlphaEdit/NSE repositories
  adds the restrained update on top of the already edited weight, ``W_n + F(ΔW_n)``, i.e.
  the returned update is ``ΔW + U F(Σ) V^T``. Their published PRUNE rows come from it. Never
  the default; label results that use it.

Modes (``mode=``), i.e. how a trajectory uses the restraint:
- ``"posthoc"`` (default, the released code): edits are computed and accumulated on the
  UNRESTRAINED model; at an evaluation checkpoint ``n`` the accumulated ``ΔW_n`` is restrained
  once and the model ``W0 + F(ΔW_n)`` is evaluated. The trajectory keeps ``ΔW_n``.
- ``"online"``: after EVERY edit the accumulated update is restrained and the trajectory
  continues from the restrained model, so the next edit is computed on ``W0 + ΔW̄_{k}``::

      ΔW̄_k = F(ΔW̄_{k-1} + δ_k)          (online_step)

  versus posthoc ``ΔW̄_n = F(δ_1 + ... + δ_n)``. F compounds online, so the two differ even for
  the same edits (e.g. two orthogonal rank-one edits above m: online restrains the first one
  twice, ``F(F(s_1))``, posthoc once).

A trajectory runner does, per edited matrix (``acc`` starts as ``None``)::

    acc = prune.after_edit(w0, acc, delta, name=name)       # online: restrained; posthoc: raw sum
    model weight <- w0 + acc                                # the model the next edit sees
    ...at a checkpoint: evaluate w0 + prune.for_evaluation(w0, acc, name=name)

:func:`reference_prune` is the released code's procedure (numpy full SVDs of ΔW, W0 and
W_n), kept for parity tests and the overhead benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from prune import spectrum
from prune.linalg import (
    Update,
    add_updates,
    check_update,
    compute_dtype_for,
    is_factored,
    thin_svd,
    to_dense,
    update_dtype,
)

Alpha = Literal["e", "linear"] | float
#: The log bases the released code offers, plus the linear variant.
ALPHAS: tuple[Alpha, ...] = ("e", 2, 1.5, 1.2, "linear")
Mode = Literal["posthoc", "online"]
Variant = Literal["standard", "double_add"]

#: Entries sampled (evenly spaced) to fingerprint W0 in the σ_max cache key.
_FINGERPRINT_SAMPLES = 257


def _canonical_alpha(alpha: Any) -> Alpha:
    if isinstance(alpha, str):
        if alpha in ("e", "linear"):
            return alpha
    elif isinstance(alpha, int | float) and not isinstance(alpha, bool):
        for allowed in (2, 1.5, 1.2):
            if float(alpha) == allowed:
                return allowed
    raise ValueError(f"PRUNE alpha must be one of {ALPHAS}, got {alpha!r}")


def restrain_values(s: torch.Tensor, m: float, alpha: Alpha) -> torch.Tensor:
    """F applied elementwise to singular values ``s`` (values below ``m`` unchanged)."""
    alpha = _canonical_alpha(alpha)
    if alpha == "linear":
        new = (s + m) / 2
    else:
        ln_alpha = 1.0 if alpha == "e" else math.log(float(alpha))
        # log_α(σ) − log_α(m) + m, written as ln(σ/m)/ln(α) + m; guard log(0) in the masked branch
        new = torch.log(torch.clamp(s, min=m) / m) / ln_alpha + m
    return torch.where(s >= m, new, s)


def _fingerprint(w0: torch.Tensor) -> tuple[float, ...]:
    flat = w0.detach().reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, min(_FINGERPRINT_SAMPLES, flat.numel())).long()
    return tuple(flat[idx.to(flat.device)].double().cpu().tolist())


@dataclass(frozen=True)
class PRUNE:
    """PRUNE restraint configuration (pure; knows nothing about editors).

    ``alpha``: ``"e"`` (default), ``2``, ``1.5``, ``1.2`` or ``"linear"``.
    ``mode``: ``"posthoc"`` (default) or ``"online"`` (see module doc; used by
    :meth:`after_edit` / :meth:`for_evaluation`).
    ``variant``: ``"standard"`` (default) or ``"double_add"`` (AlphaEdit/NSE repos; reproduction only).
    ``rank_rtol``: relative cut-off of the numerical rank of ΔW (default: ``max(out,in)·eps``).
    ``compute_dtype``: ``"auto"`` (float64 input in float64, anything else in float32) or ``"float64"``.
    ``exact_sigma_max``: how m = σ_max(W0) is computed: ``None`` = svdvals for matrices up to
    :data:`prune.spectrum.EXACT_MAX_NUMEL` entries, Lanczos (~1e-10 relative) above; True/False force.
    """

    alpha: Alpha = "e"
    mode: Mode = "posthoc"
    variant: Variant = "standard"
    rank_rtol: float | None = None
    compute_dtype: Literal["auto", "float64"] = "auto"
    exact_sigma_max: bool | None = None
    _m_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _canonical_alpha(self.alpha))
        if self.mode not in ("posthoc", "online"):
            raise ValueError(f"PRUNE mode must be 'posthoc' or 'online', got {self.mode!r}")
        if self.variant not in ("standard", "double_add"):
            raise ValueError(f"PRUNE variant must be 'standard' or 'double_add', got {self.variant!r}")
        if self.compute_dtype not in ("auto", "float64"):
            raise ValueError(f"PRUNE compute_dtype must be 'auto' or 'float64', got {self.compute_dtype!r}")
        if self.rank_rtol is not None and not (0 <= self.rank_rtol < 1):
            raise ValueError(f"PRUNE rank_rtol must be in [0, 1), got {self.rank_rtol!r}")

    @property
    def label(self) -> str:
        """A short label for result records, e.g. ``prune[alpha=e,posthoc,standard]``."""
        return f"prune[alpha={self.alpha},{self.mode},{self.variant}]"

    # ------------------------------------------------------------------ m = σ_max(W0)
    def sigma_max_w0(self, w0: torch.Tensor, *, name: str | None = None) -> float:
        """m = σ_max(W0). With ``name`` it is cached, keyed by the name, shape, dtype, device
        and a fingerprint of sampled entries of W0 (so a name reused for another matrix
        misses the cache instead of returning a stale m)."""
        if name is None:
            return spectrum.sigma_max(w0, exact=self.exact_sigma_max)
        key = (name, tuple(w0.shape), str(w0.dtype), str(w0.device), self.exact_sigma_max, _fingerprint(w0))
        if key not in self._m_cache:
            self._m_cache[key] = spectrum.sigma_max(w0, exact=self.exact_sigma_max)
        return self._m_cache[key]

    # ------------------------------------------------------------------ restraint
    def restrain(
        self,
        w0: torch.Tensor,
        delta: Update,
        *,
        name: str | None = None,
        sigma_max_w0: float | None = None,
    ) -> Update:
        """The restrained accumulated update ΔW̄ (the restrained weight is ``W0 + ΔW̄``).

        ``w0``: the ORIGINAL unedited matrix (``out x in``). ``delta``: the accumulated update,
        dense ``out x in`` or factors ``(A, B)`` with ``ΔW = A @ B.T``. Returns factors
        ``(U F(Σ), V)`` truncated to the numerical rank for factored input, dense otherwise
        (in the input's dtype). When no singular value reaches m the restraint is the
        identity and ``delta`` itself is returned (``double_add``: ``2·delta``).
        ``sigma_max_w0`` overrides m (else :meth:`sigma_max_w0`, cached by ``name``).
        """
        check_update(delta, tuple(w0.shape))
        m = float(sigma_max_w0) if sigma_max_w0 is not None else self.sigma_max_w0(w0, name=name)
        out_dtype = update_dtype(delta)
        dt = torch.float64 if self.compute_dtype == "float64" else compute_dtype_for(out_dtype)
        svd = thin_svd(delta, dtype=dt, rtol=self.rank_rtol)
        if svd.rank == 0 or float(svd.S[0]) < m:
            return delta if self.variant == "standard" else add_updates(delta, delta)
        scaled = svd.U * restrain_values(svd.S, m, self.alpha)
        if is_factored(delta):
            restrained: Update = (scaled.to(out_dtype), svd.V.to(out_dtype))
        else:
            restrained = (scaled @ svd.V.T).to(out_dtype)
        if self.variant == "double_add":
            return add_updates(delta, restrained)
        return restrained

    # ------------------------------------------------------------------ trajectory helpers
    def after_edit(
        self,
        w0: torch.Tensor,
        accumulated: Update | None,
        delta: Update,
        *,
        name: str | None = None,
        sigma_max_w0: float | None = None,
    ) -> Update:
        """The accumulated update the trajectory holds after this edit (``W = W0 + result``).

        posthoc: ``accumulated + delta`` (unrestrained). online: :func:`online_step`.
        """
        if self.mode == "online":
            return online_step(self, w0, accumulated, delta, name=name, sigma_max_w0=sigma_max_w0)
        return add_updates(accumulated, delta)

    def for_evaluation(
        self,
        w0: torch.Tensor,
        accumulated: Update,
        *,
        name: str | None = None,
        sigma_max_w0: float | None = None,
    ) -> Update:
        """The update to evaluate at a checkpoint: posthoc restrains ``accumulated`` now;
        online returns it unchanged (it is already restrained)."""
        if self.mode == "online":
            return accumulated
        return self.restrain(w0, accumulated, name=name, sigma_max_w0=sigma_max_w0)


def online_step(
    prune: PRUNE,
    w0: torch.Tensor,
    restrained_prev: Update | None,
    delta: Update,
    *,
    name: str | None = None,
    sigma_max_w0: float | None = None,
) -> Update:
    """One online step: ``ΔW̄_k = F(ΔW̄_{k-1} + δ_k)``.

    ``restrained_prev``: the previous restrained accumulated update (``None`` before the first
    edit); ``delta``: this edit's update, computed on the model ``W0 + restrained_prev``.
    Factored inputs stay factored (their factors are concatenated, then truncated to the
    numerical rank by the restraint).
    """
    return prune.restrain(w0, add_updates(restrained_prev, delta), name=name, sigma_max_w0=sigma_max_w0)


# ---------------------------------------------------------------------- reference procedure
@dataclass(frozen=True)
class ReferenceResult:
    update: torch.Tensor  # dense restrained update (W̄ = W0 + update)
    sigma_max_w0: float
    rank: int
    sigma_max_wn: float  # of the edited (unrestrained) W_n = W0 + ΔW
    sigma_min_wn: float


def _np_restrain_values(s: np.ndarray, m: float, alpha: Alpha) -> np.ndarray:
    s = s.copy()
    active = s >= m
    if alpha == "linear":
        s[active] = 0.5 * s[active] + 0.5 * m
    else:
        base = math.e if alpha == "e" else float(alpha)
        s[active] = np.log(s[active]) / math.log(base) + m - math.log(m) / math.log(base)
    return s


def reference_prune(
    w0: torch.Tensor,
    delta: Update,
    *,
    alpha: Alpha = "e",
    variant: Variant = "standard",
    full_matrices: bool = False,
) -> ReferenceResult:
    """The released PRUNE code's procedure, for parity tests and the overhead benchmark.

    numpy SVDs (in the input dtype, on the CPU) of the dense ΔW (with U, V) and of W0 (for m,
    recomputed every call), numerical rank by the ``matrix_rank`` rule on ΔW's singular values,
    F on the singular values, and an SVD of ``W_n = W0 + ΔW`` (the released pipeline tracks
    its spectrum). The released code passes ``full_matrices=True`` to the first two, which
    is slower still on non-square matrices; the default here is the economy SVD, so
    benchmark ratios against this reference understate the released code's cost.
    """
    alpha = _canonical_alpha(alpha)
    w = w0.detach().cpu().numpy()
    d = to_dense(delta).detach().cpu().numpy()
    u, s, vt = np.linalg.svd(d, full_matrices=full_matrices)
    _u0, s0, _vt0 = np.linalg.svd(w, full_matrices=full_matrices)
    m = float(s0[0])
    tol = s[0] * max(d.shape) * np.finfo(s.dtype).eps if s.size else 0.0
    rank = int((s > tol).sum()) if s.size and s[0] > 0 else 0
    s2 = _np_restrain_values(s, m, alpha)
    upd = (u[:, :rank] * s2[:rank]) @ vt[:rank]
    if variant == "double_add":
        upd = d + upd
    _un, sn, _vtn = np.linalg.svd(w + d, full_matrices=False)
    return ReferenceResult(
        update=torch.from_numpy(np.ascontiguousarray(upd)),
        sigma_max_w0=m,
        rank=rank,
        sigma_max_wn=float(sn[0]),
        sigma_min_wn=float(sn[-1]),
    )
