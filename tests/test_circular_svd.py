"""The circular SVD and the clipping of singular values, against dense linear algebra.

Oracles: ``numpy.linalg`` (svd, lstsq, pinv, cond, matrix_rank, solve) on the explicit
``conv_matrix(..., padding_mode="circular")``, and the dense projection ``U min(S, c) V^H``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparseconv import (
    MatrixTooLargeError,
    circular_svd,
    clip_singular_values,
    conv_matrix,
    set_memory_limit,
    singular_values,
)
from sparseconv.testing import dottest

from ._oracles import PERIODIC, periodic_pads


def random_layer(rng, complex_weight=False):
    """A periodic layer: rank 1-3, groups, stride 1-2, dilation 1-2, odd and even kernels."""
    ndim = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 3, ndim))
    size = tuple(int(s * rng.integers(max(1, -(-d * (k - 1) // (2 * s))), 8 // (ndim + s) + 2))
                 for s, d, k in zip(stride, dilation, kernel))
    w = rng.standard_normal((c_out, c_in // groups, *kernel))
    if complex_weight:
        w = w + 1j * rng.standard_normal(w.shape)
    return w, (c_in, *size), dict(stride=stride, dilation=dilation, groups=groups)


def dense(w, input_shape, stride=1, dilation=1, groups=1):
    ndim = w.ndim - 2
    dilation = (dilation,) * ndim if isinstance(dilation, int) else dilation
    return conv_matrix(w, input_shape, stride=stride, dilation=dilation, groups=groups,
                       padding=periodic_pads(w.shape[2:], dilation),
                       padding_mode="circular").toarray()


def as_dense(op):
    return op @ np.eye(op.shape[1])


@pytest.mark.parametrize("seed", range(24))
def test_factors_are_an_svd_of_conv_matrix(seed):
    rng = np.random.default_rng(seed)
    w, shape, options = random_layer(rng, complex_weight=seed % 3 == 0)
    A = dense(w, shape, **options)
    svd = circular_svd(w, shape, **options)
    U, S, Vh = svd.dense_factors()
    k = min(A.shape)
    layer = (w.shape, shape, options)
    assert U.shape == (A.shape[0], k) and Vh.shape == (k, A.shape[1]) and S.shape == (k,)
    assert np.abs(U @ np.diag(S) @ Vh - A).max() <= 1e-12 * max(1.0, S[0]), layer
    assert np.abs(U.conj().T @ U - np.eye(k)).max() <= 1e-12, layer
    assert np.abs(Vh @ Vh.conj().T - np.eye(k)).max() <= 1e-12, layer
    assert np.all(np.diff(S) <= 0)
    assert np.abs(S - np.linalg.svd(A, compute_uv=False)).max() <= 1e-12 * max(1.0, S[0])
    assert np.abs(S - singular_values(w, shape, **options, **PERIODIC)).max() <= 1e-12 * S[0]
    # the matrix-free factors are the dense ones, and the layer's products conv_matrix's
    z = rng.standard_normal(k) + 1j * rng.standard_normal(k)
    assert np.allclose(svd.U @ z, U @ z, rtol=0, atol=1e-12 * np.abs(z).sum())
    assert np.allclose(svd.V.H @ (A.conj().T @ (U @ z)), S * z, atol=1e-11 * max(1.0, S[0]))
    x = rng.standard_normal((A.shape[1], 2))
    assert np.abs(svd @ x - A @ x).max() <= 1e-12 * max(1.0, S[0]) * np.abs(x).sum()
    y = rng.standard_normal(A.shape[0])
    assert np.abs(svd.H @ y - A.conj().T @ y).max() <= 1e-12 * max(1.0, S[0]) * np.abs(y).sum()
    for op in (svd, svd.U, svd.V, svd.pinv(), svd.rank_r(k // 2)):
        dottest(op, rng=rng)
    real = np.isrealobj(w)
    assert (svd.dtype == np.float64) == real and np.isrealobj(svd @ x[:, 0]) == real


def test_one_layer_of_every_rank_and_option_against_the_oracle_conv():
    """The layer the SVD describes is PyTorch's circular convolution (a dense numpy loop)."""
    from ._oracles import dense_conv
    rng = np.random.default_rng(7)
    for ndim in (1, 2, 3):
        w = rng.standard_normal((4, 1, *(3,) * ndim))
        options = dict(stride=2, dilation=2, groups=2)
        shape = (2, *(4,) * ndim)
        x = rng.standard_normal(shape)
        y = dense_conv(x, w, padding=[(2, 2)] * ndim, padding_mode="circular", **options)
        svd = circular_svd(w, shape, **options)
        assert np.abs(svd @ x.ravel() - y.ravel()).max() <= 1e-12 * np.abs(y).max()


@pytest.mark.parametrize("seed", range(10))
def test_solve_is_numpy_lstsq_and_the_dense_tikhonov_solution(seed):
    rng = np.random.default_rng(100 + seed)
    w, shape, options = random_layer(rng, complex_weight=seed % 4 == 0)
    A = dense(w, shape, **options)
    svd = circular_svd(w, shape, **options)
    b = rng.standard_normal((A.shape[0], 3))
    top = np.linalg.norm(A, 2)
    expected = np.linalg.lstsq(A, b, rcond=None)[0]
    x = svd.solve(b)
    assert x.shape == expected.shape
    assert np.abs(x - expected).max() <= 1e-9 * max(1.0, np.abs(expected).max()), (w.shape,)
    for damp in (1e-3, 0.5, 3.0):
        tikhonov = np.linalg.solve(A.conj().T @ A + damp**2 * np.eye(A.shape[1]),
                                   A.conj().T @ b)
        got = svd.lstsq(b, damp=damp)
        assert np.abs(got - tikhonov).max() <= 1e-9 * max(1.0, np.abs(tikhonov).max() * top)
    # b given as the output array, or flat: x comes back the same way
    out = b[:, 0].reshape(svd.output_shape)
    assert svd.solve(out).shape == svd.input_shape
    assert np.allclose(svd.solve(out).ravel(), svd.solve(b[:, 0]), rtol=0, atol=1e-13)
    assert np.allclose(svd.solve(b[:, 0]), expected[:, 0], atol=1e-9)


def test_solve_of_a_singular_layer_is_the_least_norm_solution():
    """The difference kernel kills the constants: lstsq's least-norm answer, not a blow-up."""
    w = np.array([[[[1.0, -1.0]], [[0.5, 0.5]]]]).reshape(1, 2, 1, 2)  # 2 -> 1, 1x2
    shape = (2, 4, 6)
    A = dense(w, shape)
    svd = circular_svd(w, shape)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    assert np.allclose(svd.solve(b), np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-12)
    w = np.array([[[1.0, -1.0]]])
    svd = circular_svd(w, (1, 8))
    assert svd.S[-1] < 1e-15 and svd.cond() == math.inf
    b = np.random.default_rng(1).standard_normal(8)
    A = dense(w, (1, 8))
    assert np.allclose(svd.solve(b), np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-12)
    assert np.allclose(as_dense(svd.pinv()), np.linalg.pinv(A), atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_pinv_and_cond_are_numpys(seed):
    rng = np.random.default_rng(200 + seed)
    w, shape, options = random_layer(rng, complex_weight=seed % 2 == 1)
    A = dense(w, shape, **options)
    svd = circular_svd(w, shape, **options)
    P = svd.pinv()
    assert P.shape == A.shape[::-1]
    assert np.abs(as_dense(P) - np.linalg.pinv(A)).max() <= 1e-9 * max(
        1.0, np.abs(np.linalg.pinv(A)).max())
    assert np.allclose(as_dense(P.H), np.linalg.pinv(A).conj().T, atol=1e-9)
    assert math.isclose(svd.cond(), np.linalg.cond(A), rel_tol=1e-9)
    damped = as_dense(svd.pinv(damp=0.3))
    assert np.allclose(damped, np.linalg.solve(A.conj().T @ A + 0.09 * np.eye(A.shape[1]),
                                               A.conj().T), atol=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_rank_r_is_the_best_rank_r_approximation(seed):
    rng = np.random.default_rng(300 + seed)
    w, shape, options = random_layer(rng, complex_weight=seed % 2 == 1)
    A = dense(w, shape, **options)
    svd = circular_svd(w, shape, **options)
    U, S, Vh = np.linalg.svd(A, full_matrices=False)
    gaps = [r for r in range(1, S.size) if S[r - 1] > S[r] * (1 + 1e-6)]  # unique there
    for r in gaps[:3] + [0, S.size]:
        Ar = as_dense(svd.rank_r(r))
        assert np.abs(Ar - (U[:, :r] * S[:r]) @ Vh[:r]).max() <= 1e-11 * max(1.0, S[0])
        tail = S[r] if r < S.size else 0.0
        assert math.isclose(np.linalg.norm(A - Ar, 2), tail, rel_tol=1e-9, abs_tol=1e-12)
    # a real weight's approximation is real where r keeps conjugate pairs whole
    if np.isrealobj(w) and gaps:
        assert svd.rank_r(gaps[0]).dtype == np.float64


def test_rank_r_splitting_a_conjugate_pair_is_complex_and_still_best():
    w = np.random.default_rng(3).standard_normal((1, 1, 3))
    svd = circular_svd(w, (1, 8))
    A = dense(w, (1, 8))
    r = 1 if svd.S[0] == svd.S[1] else 2  # a pair {xi, -xi} with equal singular values
    assert svd.S[r - 1] == svd.S[r]
    Ar = svd.rank_r(r)
    assert Ar.dtype == np.complex128
    assert int(np.linalg.matrix_rank(as_dense(Ar), tol=1e-9)) == r
    assert math.isclose(np.linalg.norm(A - as_dense(Ar), 2), svd.S[r], rel_tol=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_clip_is_the_dense_projection_onto_the_norm_ball(seed):
    rng = np.random.default_rng(400 + seed)
    w, shape, options = random_layer(rng, complex_weight=seed % 3 == 0)
    A = dense(w, shape, **options)
    U, S, Vh = np.linalg.svd(A, full_matrices=False)
    c = 0.6 * S[0]
    kernel = clip_singular_values(w, shape, max=c, **options)
    n = shape[1:]
    assert kernel.shape == (w.shape[0], w.shape[1], *n)
    assert np.isrealobj(kernel) == np.isrealobj(w)
    B = conv_matrix(kernel, shape, stride=options["stride"], groups=options["groups"],
                    padding=periodic_pads(n, (1,) * len(n)), padding_mode="circular").toarray()
    assert np.abs(B - (U * np.minimum(S, c)) @ Vh).max() <= 1e-12 * S[0], (w.shape, options)


def test_clip_within_the_ball_changes_nothing():
    w = np.random.default_rng(5).standard_normal((3, 2, 3, 3))
    top = singular_values(w, (2, 6, 6), **PERIODIC)[0]
    full = clip_singular_values(w, (2, 6, 6), max=2 * top)
    assert np.abs(full[:, :, 1:4, 1:4] - w).max() <= 1e-13 * top  # the kernel, embedded
    assert np.abs(full).sum() - np.abs(full[:, :, 1:4, 1:4]).sum() <= 1e-12 * top
    same = clip_singular_values(w, (2, 6, 6), max=2 * top, support="kernel")
    assert np.array_equal(same, w)
    assert not clip_singular_values(w, (2, 6, 6), max=0.0).any()


@pytest.mark.parametrize("options", [dict(), dict(stride=2), dict(dilation=2, groups=2)])
def test_clip_keeping_the_support_lowers_the_norm_towards_max(options):
    w = np.random.default_rng(6).standard_normal((4, 4 // options.get("groups", 1), 3, 3))
    shape = (4, 8, 8)
    top = singular_values(w, shape, **options, **PERIODIC)[0]
    c = 0.5 * top
    norms = []
    for iterations in (1, 5, 40):
        small = clip_singular_values(w, shape, max=c, support="kernel", iterations=iterations,
                                     **options)
        assert small.shape == w.shape and small.dtype == np.float64
        norms.append(singular_values(small, shape, **options, **PERIODIC)[0])
    assert top > norms[0] >= norms[1] - 1e-12 >= norms[2] - 2e-12
    assert norms[2] <= c * 1.01  # approximate: close to the ball, not necessarily inside


def test_scaled_weights_scale_the_values_only():
    w = np.random.default_rng(8).standard_normal((2, 2, 3))
    base = circular_svd(w, (2, 8))
    for scale in (1e-300, 1e300):
        svd = circular_svd(w * scale, (2, 8))
        assert np.allclose(svd.S, base.S * scale, rtol=1e-14, atol=0)
        assert np.allclose(svd.U @ np.eye(16), base.U @ np.eye(16), atol=1e-14)
        assert np.allclose(svd.solve(np.ones(16)) * scale, base.solve(np.ones(16)), rtol=1e-12)


def test_non_periodic_layers_and_bad_arguments_are_refused_by_name():
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="circular_svd needs a periodic layer.*padding=None"):
        circular_svd(w, (2, 8, 8), padding=0)
    with pytest.raises(ValueError, match="divisible"):
        circular_svd(w, (2, 7, 8), stride=2)
    svd = circular_svd(w, (2, 8, 8))
    with pytest.raises(ValueError, match=r"b must have shape \(128,\)"):
        svd.solve(np.ones(7))
    for bad, error in ((-1.0, ValueError), (math.nan, ValueError), ("1", TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match="damp"):
            svd.solve(np.ones(128), damp=bad)
        with pytest.raises(error, match="rcond"):
            svd.pinv(rcond=bad)
    for bad, error in ((-1, ValueError), (129, ValueError), (1.5, TypeError), ("2", TypeError)):
        with pytest.raises(error, match="r must be an integer in"):
            svd.rank_r(bad)
    with pytest.raises(ValueError, match="max"):
        clip_singular_values(w, (2, 8, 8), max=-1.0)
    with pytest.raises(ValueError, match="support"):
        clip_singular_values(w, (2, 8, 8), max=1.0, support="same")


def test_factors_are_sized_before_they_are_allocated():
    old = set_memory_limit(200_000)
    try:
        with pytest.raises(MatrixTooLargeError, match="circular SVD's factors"):
            circular_svd(np.ones((8, 8, 3, 3)), (8, 32, 32))
        svd = circular_svd(np.ones((2, 2, 3, 3)), (2, 16, 16))
        with pytest.raises(MatrixTooLargeError, match="dense factors"):
            svd.dense_factors()
    finally:
        set_memory_limit(old)
