"""Spectrum tracking of edited matrices (docs/methods.md §4; the condition-number claim is §3.1).

Per edited matrix and checkpoint the suite records, of the current weight ``W``:
σ_max(W), σ_min(W) and κ(W) = σ_max/σ_min over the min(out, in) singular values; and of
the accumulated update ``ΔW``: σ_max(ΔW), its numerical rank and ‖ΔW‖_F.

Exactness:
- ``W`` with at most :data:`EXACT_MAX_NUMEL` entries (or ``exact=True``): ``torch.linalg.svdvals``
  in float64, everything exact.
- Larger ``W``: σ_max by Lanczos on the Gram matrix of the short side (float64, converged to
  ~1e-10 relative); σ_min is the smallest Ritz value of the same Krylov space, an upper bound
  that is NOT converged, so it is reported with ``sigma_min_exact = False`` (and κ, computed
  from it, is then a lower bound).
- Factored ``ΔW`` (``(A, B)``, ``ΔW = A @ B.T``): always exact through the thin-QR core SVD.
  Dense large ``ΔW``: σ_max by Lanczos, rank not computed (``None``), ‖ΔW‖_F exact.

:func:`spectrum_record` gives a flat ``dict`` for result records;
:func:`restraint_record` gives the same before and after a restraint (``pre_``/``post_`` keys).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

from prune.linalg import Update, check_update, is_factored, lanczos_extremes, thin_svd, to_dense

log = logging.getLogger(__name__)

#: Matrices with at most this many entries get an exact (svdvals) spectrum by default.
#: 2**22 covers SmolLM2 (576x1536) and Gemma-270m MLPs; GPT-2 XL (1600x6400) and larger go iterative.
EXACT_MAX_NUMEL = 2**22


def _use_exact(mat_numel: int, exact: bool | None) -> bool:
    return mat_numel <= EXACT_MAX_NUMEL if exact is None else exact


@dataclass(frozen=True)
class WeightSpectrum:
    sigma_max: float
    sigma_min: float
    kappa: float
    sigma_max_exact: bool  # False: Lanczos (converged to ~1e-10 relative, see lanczos_converged)
    sigma_min_exact: bool  # False: Lanczos Ritz value, an upper bound (kappa then a lower bound)
    lanczos_converged: bool | None = None  # None when exact


@dataclass(frozen=True)
class UpdateSpectrum:
    sigma_max: float
    rank: int | None  # numerical rank; None when not computed (large dense update)
    fro: float
    exact: bool  # False: sigma_max by Lanczos and rank not computed


def sigma_max(w: torch.Tensor, *, exact: bool | None = None) -> float:
    """σ_max(w): exact svdvals for small matrices, Lanczos for large ones (see module doc)."""
    if w.ndim != 2:
        raise ValueError(f"expected a matrix, got shape {tuple(w.shape)}")
    if w.numel() == 0:
        return 0.0
    if _use_exact(w.numel(), exact):
        return float(torch.linalg.svdvals(w.to(torch.float64))[0])
    res = lanczos_extremes(w)
    if not res.converged_max:
        log.warning("Lanczos sigma_max of a %dx%d matrix not converged after %d steps", *w.shape, res.steps)
    return math.sqrt(max(res.lam_max, 0.0))


def weight_spectrum(w: torch.Tensor, *, exact: bool | None = None) -> WeightSpectrum:
    """σ_max, σ_min, κ of a weight matrix (``out x in``)."""
    if w.ndim != 2 or w.numel() == 0:
        raise ValueError(f"expected a non-empty matrix, got shape {tuple(w.shape)}")
    if _use_exact(w.numel(), exact):
        s = torch.linalg.svdvals(w.to(torch.float64))
        smax, smin = float(s[0]), float(s[-1])
        return WeightSpectrum(smax, smin, _kappa(smax, smin), True, True)
    res = lanczos_extremes(w)
    smax = math.sqrt(max(res.lam_max, 0.0))
    smin = math.sqrt(max(res.lam_min_ritz, 0.0))
    return WeightSpectrum(smax, smin, _kappa(smax, smin), False, False, res.converged_max)


def _kappa(smax: float, smin: float) -> float:
    return smax / smin if smin > 0 else math.inf


def update_spectrum(delta: Update, *, exact: bool | None = None) -> UpdateSpectrum:
    """σ_max, numerical rank and Frobenius norm of an update (dense or factors)."""
    out, inn = check_update(delta)
    if is_factored(delta) or _use_exact(out * inn, exact):
        svd = thin_svd(delta, dtype=torch.float64)
        s = svd.S
        smax = float(s[0]) if s.numel() else 0.0
        return UpdateSpectrum(smax, svd.rank, float(s.norm()), True)
    d = to_dense(delta)
    smax = math.sqrt(max(lanczos_extremes(d).lam_max, 0.0))
    return UpdateSpectrum(smax, None, float(d.to(torch.float64).norm()), False)


def spectrum_record(
    weight: torch.Tensor, delta: Update | None = None, *, prefix: str = "", exact: bool | None = None
) -> dict[str, float | int | bool | None]:
    """Flat record of the current weight's spectrum (and of ``delta`` when given).

    Keys: ``sigma_max, sigma_min, kappa, sigma_max_exact, sigma_min_exact, lanczos_converged``
    and, with ``delta``, ``delta_sigma_max, delta_rank, delta_fro, delta_exact``; each
    prefixed by ``prefix``.
    """
    rec: dict[str, float | int | bool | None] = dict(asdict(weight_spectrum(weight, exact=exact)))
    if delta is not None:
        check_update(delta, tuple(weight.shape))
        us = update_spectrum(delta, exact=exact)
        rec.update(
            delta_sigma_max=us.sigma_max, delta_rank=us.rank, delta_fro=us.fro, delta_exact=us.exact
        )
    return {f"{prefix}{k}": v for k, v in rec.items()}


def restraint_record(
    base: torch.Tensor,
    delta: Update,
    restrained: Update,
    *,
    exact: bool | None = None,
) -> dict[str, float | int | bool | None]:
    """Spectra before (``pre_``: ``base + delta``) and after (``post_``: ``base + restrained``).

    For PRUNE ``base`` is W0 and ``delta``/``restrained`` the accumulated update before and
    after the restraint; for RECT ``base`` is the weight before this edit and the updates are
    this edit's raw and masked update.
    """
    shape = tuple(base.shape)
    check_update(delta, shape)
    check_update(restrained, shape)
    pre = spectrum_record(base + to_dense(delta).to(base.dtype), delta, prefix="pre_", exact=exact)
    post = spectrum_record(
        base + to_dense(restrained).to(base.dtype), restrained, prefix="post_", exact=exact
    )
    return {**pre, **post}
