"""Independent plain-numpy statements of the restraints, for the tests (not the code under test)."""

from __future__ import annotations

import math

import numpy as np


def np_F(s: np.ndarray, m: float, alpha) -> np.ndarray:
    """PRUNE's F stated directly (docs/methods.md §3.1), one value at a time."""
    out = np.array(s, dtype=np.float64, copy=True)
    for i, x in enumerate(out):
        if x >= m:
            if alpha == "linear":
                out[i] = (x + m) / 2.0
            else:
                base = math.e if alpha == "e" else float(alpha)
                out[i] = math.log(x, base) - math.log(m, base) + m
    return out


def np_prune_update(w0: np.ndarray, delta: np.ndarray, alpha) -> np.ndarray:
    """Restrained update U F(Σ) Vᵀ with m = σ_max(W0), numpy full SVDs, no rank truncation."""
    m = np.linalg.svd(w0, compute_uv=False)[0]
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    return (u * np_F(s, m, alpha)) @ vt


def orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q[:, :k]


def with_singular_values(rng: np.random.Generator, shape, s) -> np.ndarray:
    """A random out x in matrix with exactly the singular values ``s`` (zeros allowed)."""
    s = np.asarray(s, dtype=np.float64)
    u = orthonormal(rng, shape[0], len(s))
    v = orthonormal(rng, shape[1], len(s))
    return (u * s) @ v.T


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    denom = max(np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / denom)
