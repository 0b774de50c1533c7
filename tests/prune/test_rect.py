"""RECT against a numpy stable argsort (docs/methods.md §3.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prune import RECT


def np_rect_kept(w_prev: np.ndarray, delta: np.ndarray, keep: float, eps: float) -> np.ndarray:
    """Flat indices kept: the first round-up(keep·n) of a stable descending sort of δ."""
    score = np.abs(delta) / (np.abs(w_prev) + eps)
    n = score.size
    k = -(-round(keep * 10**6) * n // 10**6)  # exact ceil for keep with <= 6 decimals
    order = np.argsort(-score.reshape(-1), kind="stable")
    return np.sort(order[:k])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    out=st.integers(1, 20),
    inn=st.integers(1, 20),
    keep=st.sampled_from([0.4, 0.2, 0.7, 0.1, 1.0, 0.333, 0.05]),
    ties=st.booleans(),
    factored=st.booleans(),
)
def test_rect_keeps_top_relative_changes(seed, out, inn, keep, ties, factored):
    rng = np.random.default_rng(seed)
    if ties:  # small integers: many equal relative changes
        w = rng.integers(-2, 3, (out, inn)).astype(np.float64)
        d = rng.integers(-2, 3, (out, inn)).astype(np.float64)
    else:
        w = rng.standard_normal((out, inn))
        d = rng.standard_normal((out, inn))
    rect = RECT(keep=keep)
    if factored:
        r = 3
        a = rng.standard_normal((out, r))
        b = rng.standard_normal((inn, r))
        d = a @ b.T
        got = rect.restrain(torch.from_numpy(w), (torch.from_numpy(a), torch.from_numpy(b))).numpy()
    else:
        got = rect.restrain(torch.from_numpy(w), torch.from_numpy(d)).numpy()
    kept = np_rect_kept(w, d, keep, 1e-8)
    assert len(kept) == math.ceil(round(keep * out * inn, 9))
    mask = rect.mask(torch.from_numpy(w), torch.from_numpy(d)).numpy().reshape(-1)
    assert int(mask.sum()) == len(kept) == rect.kept_count(out * inn)
    np.testing.assert_array_equal(np.flatnonzero(mask), kept)
    expected = np.zeros(out * inn)
    expected[kept] = d.reshape(-1)[kept]
    np.testing.assert_allclose(got.reshape(-1), expected, rtol=0, atol=1e-12)


def test_kept_count_rounding_documented():
    assert RECT(keep=0.7).kept_count(10) == 7  # 0.7*10 is 7.000000000000001 in floats
    assert RECT(keep=0.4).kept_count(10) == 4
    assert RECT(keep=0.4).kept_count(11) == 5  # 4.4 rounds up
    assert RECT(keep=0.01).kept_count(3) == 1
    assert RECT(keep=1.0).kept_count(12) == 12


def test_ties_broken_by_flat_index():
    w = torch.ones(2, 3)
    d = torch.ones(2, 3)  # all relative changes equal
    mask = RECT(keep=0.5).mask(w, d)
    assert mask.reshape(-1).tolist() == [True, True, True, False, False, False]


def test_float32_matches_numpy_float32():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 96)).astype(np.float32)
    d = (rng.standard_normal((64, 96)) * 1e-3).astype(np.float32)
    got = RECT().mask(torch.from_numpy(w), torch.from_numpy(d)).numpy().reshape(-1)
    np.testing.assert_array_equal(np.flatnonzero(got), np_rect_kept(w, d, 0.4, np.float32(1e-8)))


def test_bad_config_and_nan():
    for keep in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            RECT(keep=keep)
    with pytest.raises(ValueError):
        RECT(eps=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        RECT(eps=0.0).mask(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="weight is"):
        RECT().restrain(torch.zeros(2, 3), torch.zeros(3, 2))
