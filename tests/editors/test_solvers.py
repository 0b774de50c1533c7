"""The batch editors' linear algebra against independent numpy statements of each objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editors import solvers


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _psd(rng, d: int, n: int) -> np.ndarray:
    X = rng.standard_normal((d, n))
    return X @ X.T / n


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)


def _dense(A: torch.Tensor, B: torch.Tensor) -> np.ndarray:
    return (A @ B.T).numpy()


def _lstsq_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """argmin_D ||D X - Y||_F, solved by numpy's least squares on the transposed system."""
    sol, *_ = np.linalg.lstsq(X.T, Y.T, rcond=None)
    return sol.T


def _sqrt_psd(C: np.ndarray) -> np.ndarray:
    """L with L L^T = C (symmetric square root via numpy's eigh)."""
    w, V = np.linalg.eigh(C)
    return V * np.sqrt(np.clip(w, 0, None))


@pytest.mark.parametrize("with_prev", [False, True])
def test_memit_solve_is_the_least_squares_minimiser(with_prev):
    rng = _rng(1)
    d_in, d_out, n, lam = 12, 7, 3, 4.0
    K = rng.standard_normal((d_in, n))
    R = rng.standard_normal((d_out, n))
    C0 = _psd(rng, d_in, 50)
    Kp = rng.standard_normal((d_in, 5)) if with_prev else np.zeros((d_in, 0))
    # minimise ||D K - R||^2 + lam * tr(D C0 D^T) + ||D Kp||^2 as one stacked least squares
    X = np.hstack([K, np.sqrt(lam) * _sqrt_psd(C0), Kp])
    Y = np.hstack([R, np.zeros((d_out, d_in + Kp.shape[1]))])
    expected = _lstsq_rows(X, Y)
    A, B = solvers.memit_solve(_t(R), _t(K), _t(C0), lam, _t(Kp @ Kp.T) if with_prev else None)
    assert A.shape == (d_out, n) and B.shape == (d_in, n)
    assert A.dtype == torch.float64 and B.dtype == torch.float64
    np.testing.assert_allclose(_dense(A, B), expected, rtol=1e-8, atol=1e-10)


def test_memit_solve_matches_the_closed_form_and_has_rank_at_most_batch():
    rng = _rng(2)
    d_in, d_out, n, lam = 20, 9, 4, 15.0
    K = rng.standard_normal((d_in, n)).astype(np.float32)
    R = rng.standard_normal((d_out, n)).astype(np.float32)
    C0 = _psd(rng, d_in, 80)
    K64, R64 = K.astype(np.float64), R.astype(np.float64)
    expected = R64 @ K64.T @ np.linalg.inv(lam * C0 + K64 @ K64.T)
    A, B = solvers.memit_solve(_t(R), _t(K), _t(C0), lam)
    dense = _dense(A, B)
    np.testing.assert_allclose(dense, expected, rtol=1e-8, atol=1e-10)
    assert np.linalg.matrix_rank(dense) <= n


def test_memit_solve_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="columns"):
        solvers.memit_solve(torch.zeros(3, 2), torch.zeros(4, 3), torch.eye(4), 1.0)
    with pytest.raises(ValueError, match="C0"):
        solvers.memit_solve(torch.zeros(3, 2), torch.zeros(4, 2), torch.eye(5), 1.0)


def _c0_with_null_space(rng, d: int, r: int, small: float = 1e-4):
    """C0 with a known eigenbasis: r eigenvalues ``small`` (the null-ish space), the rest large."""
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    evals = np.concatenate([np.full(r, small), rng.uniform(1.0, 5.0, d - r)])
    return (Q * evals) @ Q.T, Q[:, :r], Q[:, r:]


def test_null_space_projection_absolute_threshold_recovers_the_small_eigenspace():
    rng = _rng(3)
    C0, U_null, _ = _c0_with_null_space(rng, 10, 4)
    P = solvers.null_space_projection(_t(C0), solvers.NullSpaceThreshold("absolute", 2e-2)).numpy()
    np.testing.assert_allclose(P, U_null @ U_null.T, atol=1e-10)
    # a threshold under every eigenvalue gives P = 0
    P0 = solvers.null_space_projection(_t(C0), solvers.NullSpaceThreshold("absolute", 1e-6)).numpy()
    assert np.abs(P0).max() == 0


def test_null_space_projection_energy_threshold_is_a_trace_budget():
    rng = _rng(4)
    d = 8
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    evals = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0, 94.0])  # trace 200
    C0 = (Q * evals) @ Q.T
    # 2% of the trace = 4 -> eigenvalues 1 and 2 (sum 3), not 3 (sum 6)
    U = solvers.null_space_basis(_t(C0), solvers.NullSpaceThreshold("energy", 0.02)).numpy()
    assert U.shape == (d, 2)
    np.testing.assert_allclose(U @ U.T, Q[:, :2] @ Q[:, :2].T, atol=1e-10)
    # scale-free: scaling C0 selects the same space, unlike the absolute threshold
    U_big = solvers.null_space_basis(_t(1e4 * C0), solvers.NullSpaceThreshold("energy", 0.02)).numpy()
    np.testing.assert_allclose(U_big @ U_big.T, U @ U.T, atol=1e-8)


def test_null_space_projection_relative_threshold_scales_with_the_largest_eigenvalue():
    rng = _rng(11)
    d = 6
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    evals = np.array([0.5, 0.9, 1.5, 4.0, 20.0, 100.0])
    C0 = (Q * evals) @ Q.T
    # 1% of the largest eigenvalue (100) = 1.0 -> eigenvalues 0.5 and 0.9
    U = solvers.null_space_basis(_t(C0), solvers.NullSpaceThreshold("relative", 0.01)).numpy()
    np.testing.assert_allclose(U @ U.T, Q[:, :2] @ Q[:, :2].T, atol=1e-10)


def test_null_space_threshold_validates():
    with pytest.raises(ValueError):
        solvers.NullSpaceThreshold("bogus", 0.1)
    with pytest.raises(ValueError):
        solvers.NullSpaceThreshold("energy", 2.0)


@pytest.mark.parametrize("with_prev", [False, True])
def test_alphaedit_update_annihilates_preserved_keys(with_prev):
    rng = _rng(5)
    d_in, d_out, n, r = 16, 6, 3, 7
    C0, U_null, U_keep = _c0_with_null_space(rng, d_in, r)
    P = solvers.null_space_projection(_t(C0), solvers.NullSpaceThreshold("absolute", 1e-2))
    K1 = rng.standard_normal((d_in, n))
    R = rng.standard_normal((d_out, n))
    Kp = rng.standard_normal((d_in, 4))
    A, B = solvers.alphaedit_solve(_t(R), _t(K1), P, _t(Kp @ Kp.T) if with_prev else None, beta=10.0)
    dW = _dense(A, B)
    K0 = U_keep @ rng.standard_normal((d_in - r, 30))  # keys in the preserved subspace
    assert np.abs(dW @ K0).max() <= 1e-10 * max(1.0, np.abs(dW).max())
    assert np.abs(dW).max() > 1e-3  # the edit itself is not zero
    assert np.linalg.matrix_rank(dW) <= n


@pytest.mark.parametrize("with_prev", [False, True])
def test_alphaedit_solve_is_the_projected_least_squares_minimiser(with_prev):
    rng = _rng(6)
    d_in, d_out, n, r, beta = 14, 5, 3, 6, 2.5
    C0, U, _ = _c0_with_null_space(rng, d_in, r)
    K1 = rng.standard_normal((d_in, n))
    R = rng.standard_normal((d_out, n))
    Kp = rng.standard_normal((d_in, 4)) if with_prev else np.zeros((d_in, 0))
    # ΔW = Z Uᵀ; minimise ||Z UᵀK1 - R||² + ||Z UᵀKp||² + β||Z||² over Z
    X = np.hstack([U.T @ K1, U.T @ Kp, np.sqrt(beta) * np.eye(r)])
    Y = np.hstack([R, np.zeros((d_out, Kp.shape[1] + r))])
    expected = _lstsq_rows(X, Y) @ U.T
    P = _t(U @ U.T)
    A, B = solvers.alphaedit_solve(_t(R), _t(K1), P, _t(Kp @ Kp.T) if with_prev else None, beta)
    np.testing.assert_allclose(_dense(A, B), expected, rtol=1e-7, atol=1e-10)
    # and the paper's formula, evaluated directly
    Pn = U @ U.T
    paper = R @ K1.T @ Pn @ np.linalg.inv(Kp @ Kp.T @ Pn + K1 @ K1.T @ Pn + beta * np.eye(d_in))
    np.testing.assert_allclose(_dense(A, B), paper, rtol=1e-7, atol=1e-10)


def _numpy_selection(K: np.ndarray, p: float) -> list[int]:
    scores = np.abs(K).sum(axis=1)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    chosen, acc = [], 0.0
    for i in order:
        if acc + scores[i] > p * scores.sum():
            break
        acc += scores[i]
        chosen.append(i)
    return chosen or order[:1]


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8, 0.999])
def test_select_neurons_equals_a_direct_selection(p):
    rng = _rng(7)
    K = rng.standard_normal((40, 5)) * rng.uniform(0.1, 3.0, (40, 1))
    got = solvers.select_neurons(_t(K), p).tolist()
    assert got == _numpy_selection(K, p)


def test_select_neurons_full_fraction_is_every_neuron_and_at_least_one_otherwise():
    K = torch.tensor([[100.0], [1.0], [1.0]])
    assert solvers.select_neurons(K, 1.0).tolist() == [0, 1, 2]
    assert solvers.select_neurons(K, 0.1).tolist() == [0]  # first alone exceeds 10%
    with pytest.raises(ValueError):
        solvers.select_neurons(K, 0.0)


def test_nse_solve_is_the_least_squares_minimiser_on_the_selected_columns():
    rng = _rng(8)
    d_in, d_out, n, lam = 15, 6, 3, 3.0
    K = rng.standard_normal((d_in, n))
    R = rng.standard_normal((d_out, n))
    C0 = _psd(rng, d_in, 60)
    Kp = rng.standard_normal((d_in, 4))
    S = np.array([9, 2, 4, 11, 0, 7])
    # only ΔW[:, S] is free: minimise ||D K_S - R||² + lam tr(D C0_SS Dᵀ) + ||D Kp_S||²
    X = np.hstack([K[S], np.sqrt(lam) * _sqrt_psd(C0[np.ix_(S, S)]), Kp[S]])
    Y = np.hstack([R, np.zeros((d_out, len(S) + Kp.shape[1]))])
    expected = np.zeros((d_out, d_in))
    expected[:, S] = _lstsq_rows(X, Y)
    A, B = solvers.nse_solve(_t(R), _t(K), _t(C0), lam, _t(Kp @ Kp.T), torch.from_numpy(S))
    np.testing.assert_allclose(_dense(A, B), expected, rtol=1e-8, atol=1e-10)


def test_nse_solve_with_every_column_is_sequential_memit():
    rng = _rng(9)
    d_in, d_out, n, lam = 10, 4, 2, 5.0
    K = rng.standard_normal((d_in, n))
    R = rng.standard_normal((d_out, n))
    C0 = _psd(rng, d_in, 30)
    Kp = rng.standard_normal((d_in, 3))
    cols = solvers.select_neurons(_t(K), 1.0)
    nse = _dense(*solvers.nse_solve(_t(R), _t(K), _t(C0), lam, _t(Kp @ Kp.T), cols))
    expected = R @ K.T @ np.linalg.inv(lam * C0 + Kp @ Kp.T + K @ K.T)
    np.testing.assert_allclose(nse, expected, rtol=1e-8, atol=1e-10)


def test_outer_sum():
    rng = _rng(10)
    K = rng.standard_normal((6, 3)).astype(np.float32)
    got = solvers.outer_sum(_t(K))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), K.astype(np.float64) @ K.astype(np.float64).T, rtol=1e-12)
