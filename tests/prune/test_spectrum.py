"""Spectrum tracking against numpy SVDs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prune import (
    PRUNE,
    restraint_record,
    sigma_max,
    spectrum_record,
    update_spectrum,
    weight_spectrum,
)
from tests.prune.npref import with_singular_values


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def test_exact_small_matrix():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((30, 70))
    s = np.linalg.svd(w, compute_uv=False)
    ws = weight_spectrum(_t(w))
    assert ws.sigma_max_exact and ws.sigma_min_exact
    assert ws.sigma_max == pytest.approx(s[0], rel=1e-12)
    assert ws.sigma_min == pytest.approx(s[-1], rel=1e-12)
    assert ws.kappa == pytest.approx(s[0] / s[-1], rel=1e-12)


@pytest.mark.parametrize("shape", [(120, 300), (300, 120)])
def test_iterative_marks_estimate(shape):
    rng = np.random.default_rng(1)
    # a weight-like spectrum: a few separated top values over a bulk
    n = min(shape)
    s = np.concatenate([[40.0, 30.0, 25.0], np.linspace(10.0, 0.5, n - 3)])
    w = with_singular_values(rng, shape, s)
    ws = weight_spectrum(_t(w).float(), exact=False)
    assert not ws.sigma_max_exact and not ws.sigma_min_exact
    assert ws.lanczos_converged
    assert ws.sigma_max == pytest.approx(40.0, rel=1e-6)
    # the smallest Ritz value bounds the true smallest eigenvalue from above
    assert ws.sigma_min >= 0.5 * (1 - 1e-6)
    assert ws.kappa <= 40.0 / 0.5 * (1 + 1e-6)
    assert sigma_max(_t(w), exact=False) == pytest.approx(40.0, rel=1e-8)


def test_update_spectrum_factored_and_dense():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 5))
    b = rng.standard_normal((90, 5))
    a[:, 4] = a[:, 0] + a[:, 1]  # rank 4
    b[:, 4] = 0.0
    b[:, 3] = b[:, 2]
    d = a @ b.T
    s = np.linalg.svd(d, compute_uv=False)
    for upd in ((_t(a), _t(b)), _t(d)):
        us = update_spectrum(upd)
        assert us.exact
        assert us.rank == np.linalg.matrix_rank(d)
        assert us.sigma_max == pytest.approx(s[0], rel=1e-10)
        assert us.fro == pytest.approx(np.linalg.norm(d), rel=1e-10)
    big = update_spectrum(_t(d), exact=False)
    assert big.rank is None and not big.exact
    assert big.sigma_max == pytest.approx(s[0], rel=1e-8)


def test_records_flat_and_before_after():
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((20, 50))
    m = np.linalg.svd(w0, compute_uv=False)[0]
    d = with_singular_values(rng, (20, 50), [8 * m, 3 * m, 0.2 * m])
    restrained = PRUNE().restrain(_t(w0), _t(d))
    rec = restraint_record(_t(w0), _t(d), restrained)
    for key, val in rec.items():
        assert isinstance(val, (int, float, bool, type(None))), key
    pre = np.linalg.svd(w0 + d, compute_uv=False)
    post = np.linalg.svd(w0 + restrained.numpy(), compute_uv=False)
    assert rec["pre_sigma_max"] == pytest.approx(pre[0]) and rec["post_sigma_max"] == pytest.approx(post[0])
    assert rec["pre_kappa"] == pytest.approx(pre[0] / pre[-1])
    assert rec["post_kappa"] == pytest.approx(post[0] / post[-1])
    assert rec["pre_delta_rank"] == 3 and rec["post_delta_rank"] == 3
    assert rec["pre_delta_sigma_max"] == pytest.approx(8 * m)
    assert rec["post_delta_sigma_max"] == pytest.approx(math.log(8) + m)
    assert rec["post_sigma_max"] < rec["pre_sigma_max"]
    plain = spectrum_record(_t(w0))
    assert set(plain) == {"sigma_max", "sigma_min", "kappa", "sigma_max_exact", "sigma_min_exact", "lanczos_converged"}


def test_kappa_infinite_for_singular():
    w = torch.zeros(3, 4, dtype=torch.float64)
    w[0, 0] = 1.0
    assert weight_spectrum(w).kappa == math.inf
