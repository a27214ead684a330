"""The circular SVD and the clipping of singular values, against dense linear algebra.

Oracles: ``numpy.linalg`` (svd, lstsq, pinv, cond, matrix_rank, solve) on the explicit
``conv_matrix(..., padding_mode="circular")``, and the dense projection ``U min(S, c) V^H``.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import sparseconv as sc
from sparseconv import (
    MatrixTooLargeError,
    _symbol_svd,
    circular_svd,
    clip_singular_values,
    conv_matrix,
    set_memory_limit,
    singular_values,
    spectral_norm,
    symbol,
)
from sparseconv.testing import dottest

from ._oracles import PERIODIC, mpmath_singular_values, nearly_rank_two, periodic_pads


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


@pytest.mark.parametrize(("scale", "damp"), [(1.0, 1e-310), (1.0, 1e300), (1e160, 1e-3),
                                           (1e-160, 1e-200), (1e-160, 1e160)])
def test_damped_solutions_of_extreme_scales_are_finite_and_right(scale, damp):
    """A trial: ``damp=1e-310`` made every entry NaN (``s / damp`` overflowed, then inf/inf).
    The filter ``s / (s^2 + damp^2)`` is checked against mpmath's at every singular value."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3, 3)) * scale
    svd = circular_svd(w, (2, 8, 8))
    s = svd._s
    mp.mp.dps = 30
    expected = np.array([float(mp.mpf(v) / (mp.mpf(v) ** 2 + mp.mpf(damp) ** 2))
                         for v in s.ravel()]).reshape(s.shape)
    numerator, divisor = svd._inverse_filter(damp, None)
    got = numerator / divisor
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    b = np.random.default_rng(1).standard_normal(svd.shape[0])
    x = svd.solve(b, damp=damp)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(svd.pinv(damp=damp) @ b))
    if damp < 1e-100 * scale:  # negligible damping: the undamped solution
        np.testing.assert_allclose(x, svd.solve(b), rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [1.0, 1e-300])
def test_subnormal_singular_values_solve_without_overflow(scale):
    """A review: the kernel [1, 1 + 1e-10] times 1e-300 has a singular value of 1e-310,
    whose reciprocal overflows, and solve, pinv and the damped solve gave NaN everywhere for
    a solution near 3e8 (numpy.linalg.lstsq's on the unscaled layer, the same for b scaled
    alike). The coefficients are divided by it now, by real and imaginary parts."""
    w = np.array([[[1.0, 1.0 + 1e-10]]])
    b = np.random.default_rng(0).standard_normal(8)
    expected = np.linalg.lstsq(dense(w, (1, 8)), b, rcond=None)[0]
    svd = circular_svd(w * scale, (1, 8))
    assert svd.S[-1] < 1e-9 * svd.S[0]
    tol = 1e-5  # the condition number 2e10 times a few units of 2**-52: lstsq's own error
    for x in (svd.solve(b * scale), svd.pinv() @ (b * scale),
              svd.solve(b * scale, damp=1e-20 * scale)):
        np.testing.assert_allclose(x, expected, rtol=tol, atol=0)


def test_float32_arrays_are_transformed_in_double_precision():
    """A review: numpy's FFT keeps float32 in complex64, so solve, pinv, svd @ v and the
    factors' adjoints of float32 arrays were 3e-8 accurate where numpy's lstsq is exact."""
    w = np.random.default_rng(2).standard_normal((2, 3, 3, 3))
    svd = circular_svd(w, (3, 6, 6))
    b32 = np.random.default_rng(3).standard_normal(svd.shape[0]).astype(np.float32)
    v32 = np.random.default_rng(4).standard_normal(svd.shape[1]).astype(np.float32)
    b64, v64 = b32.astype(np.float64), v32.astype(np.float64)
    pairs = [(svd.solve(b32), svd.solve(b64)), (svd.pinv() @ b32, svd.pinv() @ b64),
             (svd @ v32, svd @ v64), (svd.H @ b32, svd.H @ b64),
             (svd.U.H @ b32, svd.U.H @ b64), (svd.V.H @ v32, svd.V.H @ v64)]
    for ours, double in pairs:
        np.testing.assert_allclose(ours, double, rtol=1e-13, atol=1e-13 * np.abs(double).max())


def test_empty_batches_pass_through_every_product():
    """A trial: ``svd @ np.zeros((n, 0))`` raised a reshape error where scipy's operators (and
    ConvOperator) return ``(m, 0)``; every product of the factorization takes them now."""
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    svd = circular_svd(w, (2, 6, 6), stride=(2, 1))
    m, n = svd.shape
    k = svd.S.size
    products = {"svd": (svd, n, m), "svd.H": (svd.H, m, n), "U": (svd.U, k, m),
                "U.H": (svd.U.H, m, k), "V": (svd.V, k, n), "V.H": (svd.V.H, n, k),
                "pinv": (svd.pinv(), m, n), "pinv(damp)": (svd.pinv(damp=0.1), m, n),
                "rank_r": (svd.rank_r(3), n, m)}
    for name, (op, cols, rows) in products.items():
        assert (op @ np.zeros((cols, 0))).shape == (rows, 0), name
    assert svd.solve(np.zeros((m, 0))).shape == (n, 0)


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


@pytest.mark.parametrize("seed", range(6))
def test_rcond_cuts_before_the_damping_where_given(seed):
    """A new user's trial: with damp > 0, rcond was ignored. Given, it cuts the singular
    values at most rcond * S[0], then the rest are damped; not given, none is cut (lsqr)."""
    rng = np.random.default_rng(380 + seed)
    w, shape, options = random_layer(rng, complex_weight=seed % 2 == 1)
    A = dense(w, shape, **options)
    svd = circular_svd(w, shape, **options)
    U, S, Vh = np.linalg.svd(A, full_matrices=False)
    b = rng.standard_normal(A.shape[0])
    for damp, rcond in ((0.1, 0.5), (0.3, 0.9), (1e-3, 0.2)):
        f = np.where(S > rcond * S[0], S / (S**2 + damp**2), 0.0)
        expected = Vh.conj().T @ (f * (U.conj().T @ b))
        got = svd.solve(b, damp=damp, rcond=rcond)
        assert np.allclose(got, expected, rtol=0, atol=1e-10 * max(1.0, np.abs(expected).max()))
        P = as_dense(svd.pinv(damp=damp, rcond=rcond))
        assert np.allclose(P, (Vh.conj().T * f) @ U.conj().T, rtol=0, atol=1e-10 / damp)
        if np.sum(S > rcond * S[0]) < S.size:  # something was cut: not the plain Tikhonov
            assert not np.allclose(got, svd.solve(b, damp=damp), rtol=0, atol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_rank_r_of_a_real_weight_is_real_and_best_for_every_r(seed):
    """A new user's trial: where r kept one member of a conjugate pair {xi, -xi} (equal
    singular values: about every other r), the approximation was complex. It is now real at
    every r, of rank r, and as close as Eckart-Young allows in both norms."""
    rng = np.random.default_rng(350 + seed)
    w, shape, options = random_layer(rng, complex_weight=False)
    if seed == 0:  # the trial's layer: 60 of its 129 ranks split a pair
        w, shape, options = rng.standard_normal((4, 2, 3, 3)), (2, 8, 8), {}
    A = dense(w, shape, **options)
    svd = circular_svd(w, shape, **options)
    S = np.linalg.svd(A, compute_uv=False)
    split = 0
    for r in range(S.size + 1):
        Ar = svd.rank_r(r)
        assert Ar.dtype == np.float64, r
        D = as_dense(Ar)
        assert np.isrealobj(D), r
        rank = int(np.sum(S[:r] > 1e-9 * S[0]))  # (strided layers have zero values)
        assert int(np.linalg.matrix_rank(D, tol=1e-9 * S[0])) == rank, r
        assert math.isclose(np.linalg.norm(A - D, 2), S[r] if r < S.size else 0.0,
                            rel_tol=1e-9, abs_tol=1e-12 * S[0]), r
        assert math.isclose(np.linalg.norm(A - D), math.sqrt(np.sum(S[r:] ** 2)),
                            rel_tol=1e-9, abs_tol=1e-12 * S[0]), r
        assert np.allclose(as_dense(Ar.H), D.T, rtol=0, atol=1e-12 * S[0]), r
        split += 0 < r < S.size and svd.S[r - 1] == svd.S[r]
    assert split > 40 or seed, "no r split a pair: the test did not reach the real triplets"


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


def test_iterations_belong_to_the_alternating_projection_only():
    """(A new user's trial: support="full" ignored iterations=50 without a word.)"""
    w = np.random.default_rng(7).standard_normal((2, 2, 3, 3))
    with pytest.raises(ValueError, match=r"iterations=50 applies to support='kernel' only"):
        clip_singular_values(w, (2, 8, 8), max=1.0, iterations=50)
    np.testing.assert_array_equal(clip_singular_values(w, (2, 8, 8), max=1.0, support="kernel"),
                                  clip_singular_values(w, (2, 8, 8), max=1.0, support="kernel",
                                                       iterations=10))


def test_scaled_weights_scale_the_values_only():
    w = np.random.default_rng(8).standard_normal((2, 2, 3))
    base = circular_svd(w, (2, 8))
    for scale in (1e-300, 1e300):
        svd = circular_svd(w * scale, (2, 8))
        assert np.allclose(svd.S, base.S * scale, rtol=1e-14, atol=0)
        assert np.allclose(svd.U @ np.eye(16), base.U @ np.eye(16), atol=1e-14)
        assert np.allclose(svd.solve(np.ones(16)) * scale, base.solve(np.ones(16)), rtol=1e-12)


def random_strided_periodic_layer(rng):
    """A circular layer of ``n / s`` outputs per axis whose total padding is any from
    ``d (k - 1) - s + 1`` to ``d (k - 1)``, split at random: periodic, its input shifted."""
    while True:
        ndim, groups = int(rng.integers(1, 3)), int(rng.choice([1, 2]))
        c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        kernel = tuple(int(k) for k in rng.integers(2, 5, ndim))
        dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
        stride = tuple(int(s) for s in rng.integers(2, 4, ndim))
        size = tuple(int(s * rng.integers(2, 5)) for s in stride)
        pads = []
        for k, d, s in zip(kernel, dilation, stride):
            total = int(rng.integers(max(0, d * (k - 1) - s + 1), d * (k - 1) + 1))
            low = int(rng.integers(0, total + 1))
            pads.append((low, total - low))
        if all(max(pad) <= n for pad, n in zip(pads, size)):  # PyTorch's circular limit
            break
    w = rng.standard_normal((c_out, c_in // groups, *kernel))
    return w, (c_in, *size), dict(stride=stride, dilation=dilation, groups=groups,
                                  padding=tuple(pads), padding_mode="circular")


def test_a_strided_layer_of_n_over_s_outputs_is_periodic_whatever_its_padding():
    """(A new user's trial: a 4x4 stride-2 layer with circular padding 1, the periodic layer
    itself, was refused by circular_svd and bounded at twice its norm.) Every consumer of a
    periodic layer takes it: the factors, singular values, norm and projection are the dense
    ones of ``conv_matrix`` with its own padding."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        w, shape, options = random_strided_periodic_layer(rng)
        A = conv_matrix(w, shape, **options).toarray()
        U, S, Vh = np.linalg.svd(A, full_matrices=False)
        layer = (w.shape, shape, options)
        svd = circular_svd(w, shape, **options)
        u, s, vh = svd.dense_factors()
        assert np.abs(u @ np.diag(s) @ vh - A).max() <= 1e-12 * S[0], layer
        assert np.abs(singular_values(w, shape, **options) - S).max() <= 1e-12 * S[0], layer
        result = spectral_norm(w, shape, **options)
        assert result.method == "fft" and result.lower <= S[0] <= result.upper, layer
        assert result.upper - result.lower <= 1e-10 * S[0], layer  # (the rounding allowance)
        full = clip_singular_values(w, shape, max=0.6 * S[0], **options)
        n = shape[1:]
        B = conv_matrix(full, shape, stride=options["stride"], groups=options["groups"],
                        padding=periodic_pads(n, (1,) * len(n)),
                        padding_mode="circular").toarray()
        assert np.abs(B - (U * np.minimum(S, 0.6 * S[0])) @ Vh).max() <= 1e-12 * S[0], layer


def test_non_periodic_layers_and_bad_arguments_are_refused_by_name():
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="circular_svd needs a periodic layer.*padding=None"):
        circular_svd(w, (2, 8, 8), padding=0)
    # (an audit: the padding hint came with it too, and no padding helps)
    with pytest.raises(ValueError, match=r"divisible by its stride, got input size \(7, 8\) "
                       r"and stride \(2, 2\): no padding makes that layer periodic \(crop or "
                       r"pad the input to a multiple of the stride\)$"):
        circular_svd(w, (2, 7, 8), stride=2)
    svd = circular_svd(w, (2, 8, 8))
    with pytest.raises(ValueError, match=r"b must have shape \(128,\)"):
        svd.solve(np.ones(7))
    with pytest.raises(ValueError, match="b must have finite entries, got nan"):
        svd.solve(np.full(128, np.nan))  # (a trial: all-NaN x, where numpy.linalg.lstsq raises)
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


def test_the_spectra_periodic_arguments_pass_unchanged():
    """``padding=None, padding_mode="circular"`` asks singular_values for the periodic layer;
    the same dict describes the same layer to circular_svd and clip_singular_values (the
    refusal of a non-periodic layer tells the user to pass padding_mode='circular')."""
    rng = np.random.default_rng(3)
    w, shape = rng.standard_normal((3, 2, 3, 3)), (2, 8, 8)
    svd = circular_svd(w, shape, stride=2, **PERIODIC)
    np.testing.assert_allclose(svd.S, singular_values(w, shape, stride=2, **PERIODIC),
                               rtol=1e-13)
    np.testing.assert_allclose(as_dense(svd), dense(w, shape, stride=2), atol=1e-12)
    np.testing.assert_array_equal(clip_singular_values(w, shape, max=1.0, **PERIODIC),
                                  clip_singular_values(w, shape, max=1.0))
    for mode in ("zeros", "reflect", "replicate", None):
        # a wrong value, or no string: the wrong type (a new user's trial)
        error = TypeError if mode is None else ValueError
        with pytest.raises(error, match=rf"padding_mode must be 'circular' for "
                                        rf"circular_svd .*got {mode!r}"):
            circular_svd(w, shape, padding_mode=mode)
        with pytest.raises(error, match="padding_mode must be 'circular' for "
                                        "clip_singular_values"):
            clip_singular_values(w, shape, max=1.0, padding_mode=mode)


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


# -- the per-frequency factorization (sparseconv._symbol_svd): Gram route or LAPACK's gesdd ----

def gram_route_spy(monkeypatch):
    """Record, per call of the Gram route, which matrices it factored (``good``)."""
    calls, original = [], _symbol_svd._gram_svd_into

    def spy(h, u, s, vh):
        good = original(h, u, s, vh)
        calls.append(good.copy())
        return good

    monkeypatch.setattr(_symbol_svd, "_gram_svd_into", spy)
    return calls


def near_orthogonal(rng, c_out, c_in, kernel, noise, spread=False):
    """Orthonormal rows or columns at the kernel's centre tap (``spread``: over all its taps,
    the symbol of a kernel-``k`` stride-``k`` layer) plus ``noise``: every frequency's
    condition number about ``(1 + 3 noise) / (1 - 3 noise)`` at most."""
    w = noise * rng.standard_normal((c_out, c_in, kernel, kernel)) / (kernel * np.sqrt(c_in))
    cols = c_in * kernel**2 if spread else c_in
    q = np.linalg.qr(rng.standard_normal((max(c_out, cols), min(c_out, cols))))[0]
    q = q if c_out >= cols else q.T
    if spread:
        return w + q.reshape(w.shape)
    w[:, :, kernel // 2, kernel // 2] += q
    return w


def check_factors(svd, A, tol=1e-13):
    U, S, Vh = svd.dense_factors()
    k = S.size
    assert np.abs(U.conj().T @ U - np.eye(k)).max() <= tol
    assert np.abs(Vh @ Vh.conj().T - np.eye(k)).max() <= tol
    assert np.abs(U @ np.diag(S) @ Vh - A).max() <= tol * S[0]
    assert np.abs(S - np.linalg.svd(A, compute_uv=False)).max() <= tol * S[0]


@pytest.mark.parametrize("layer", [
    ((8, 8, 3), (8, 8, 8), {}),                       # square, near-orthogonal 3x3
    ((12, 4, 1), (4, 6, 6), {}),                      # tall: U = H V / S
    ((4, 3, 2), (3, 8, 8), dict(stride=2)),           # wide 4 x 12: V^H = S^-1 U^H H
    ((6, 3, 3), (6, 4, 4), dict(groups=2, dilation=2)),
])
def test_well_conditioned_frequencies_take_the_gram_route_and_stay_unitary(layer, monkeypatch):
    (c_out, c_in, kernel), shape, options = layer
    w = near_orthogonal(np.random.default_rng(c_out + c_in), c_out, c_in, kernel, 0.2,
                        spread="stride" in options)
    calls = gram_route_spy(monkeypatch)
    svd = circular_svd(w, shape, **options)
    took = np.concatenate(calls)
    assert took.size and took.all(), layer  # every matrix: the route is actually the Gram one
    check_factors(svd, dense(w, shape, **options))


@pytest.mark.parametrize("c", [1, 8])
def test_clustered_singular_values_keep_unitary_factors(c, monkeypatch):
    """An orthogonal 1x1 layer (every singular value 1: one cluster) and the identity kernel
    (``H^H H = I`` exactly): the eigenvectors of a multiple eigenvalue are any basis, and the
    factors must still be unitary."""
    rng = np.random.default_rng(c)
    orthogonal = np.linalg.qr(rng.standard_normal((c, c)))[0][:, :, None, None]
    identity = np.zeros((c, c, 3, 3))
    identity[:, :, 1, 1] = np.eye(c)
    calls = gram_route_spy(monkeypatch)
    for w in (orthogonal, identity):
        svd = circular_svd(w, (c, 6, 4))
        assert np.abs(svd.S - 1.0).max() <= 1e-14
        check_factors(svd, dense(w, (c, 6, 4)))
    assert np.concatenate(calls).all()


def test_ill_conditioned_frequencies_are_factored_by_lapack_against_mpmath(monkeypatch):
    """8 -> 8 of condition ~1e4 at every frequency: no Gram route; the small singular values
    within 1e-13 * sigma_max of mpmath's SVD at 30 digits (no worse than LAPACK's own), the
    factors unitary. The Gram route forced everywhere fails both checks: they can fail."""
    w = nearly_rank_two(np.random.default_rng(21), 8, 3, 1e-4)
    H = symbol(w, (2, 4)).reshape(-1, 8, 8)
    exact = mpmath_singular_values(H)
    lapack = np.sort(np.linalg.svd(H, compute_uv=False).ravel())[::-1]
    assert 1e-6 * exact[0] < exact[-1] < 1e-3 * exact[0]  # the small values are small
    calls = gram_route_spy(monkeypatch)
    svd = circular_svd(w, (8, 2, 4))
    assert not any(good.any() for good in calls)  # never called, or nothing taken
    ours, theirs = np.abs(svd.S - exact).max(), np.abs(lapack - exact).max()
    assert ours <= max(1e-13 * exact[0], 4 * theirs), (ours, theirs)
    check_factors(svd, dense(w, (8, 2, 4)))
    monkeypatch.setattr(_symbol_svd, "GRAM_CONDITION", np.inf)  # the Gram route alone
    gram = circular_svd(w, (8, 2, 4))
    assert np.abs(gram.S - exact).max() > 1e-13 * exact[0]
    U = gram.dense_factors()[0]
    assert np.abs(U.conj().T @ U - np.eye(U.shape[1])).max() > 1e-9


def test_the_route_of_each_matrix_depends_on_its_condition_only():
    """A stack of conditions on both sides of 4 (and a zero and a singular matrix): the
    matrices of condition <= 4 take the Gram route whichever route is tried first, and the
    factors are the same either way (so the route does not depend on the chunking)."""
    rng = np.random.default_rng(5)
    conditions = np.array([1.0, 1.5, 3.0, 3.9, 4.1, 8.0, 1e8, np.inf, 2.0, 50.0, 1.0, 0.0])
    m, n = 6, 9
    stack = []
    for kappa in conditions:
        q = np.linalg.qr(rng.standard_normal((m, m)) + 1j * rng.standard_normal((m, m)))[0]
        p = np.linalg.qr(rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m)))[0]
        s = np.geomspace(1.0, 1.0 / kappa, m) if 0 < kappa < np.inf else np.r_[np.ones(m - 1), 0]
        stack.append((q * (s if kappa else 0 * s)) @ p.conj().T)
    h = np.array(stack)
    results = []
    for gram_first in (True, False):
        u = np.empty((len(h), m, m), dtype=complex)
        vh = np.empty((len(h), m, n), dtype=complex)
        s = np.empty((len(h), m))
        results.append((_symbol_svd.svd_of_stack(h, u, s, vh, gram_first), u, s, vh))
    expected = (conditions <= _symbol_svd.GRAM_CONDITION) & (conditions > 0)
    for took, u, s, vh in results:
        assert np.array_equal(took, expected)
        assert np.abs(u @ (s[..., None] * vh) - h).max() <= 1e-14
        assert np.abs(u.conj().transpose(0, 2, 1) @ u - np.eye(m)).max() <= 1e-13
    for a, b in zip(results[0][1:], results[1][1:]):
        assert np.array_equal(a, b)


def test_a_layer_mixing_both_routes_is_an_svd(monkeypatch):
    """``0.5 (delta_0 - delta_1) I`` plus noise: near frequency 0 the symbol is the noise
    (ill-conditioned), elsewhere near a multiple of ``I``; both routes, switching along the
    grid, and the same S as LAPACK alone."""
    rng = np.random.default_rng(3)
    w = 0.03 * rng.standard_normal((6, 6, 3))
    w[:, :, 1] += 0.5 * np.eye(6)
    w[:, :, 2] -= 0.5 * np.eye(6)
    calls = gram_route_spy(monkeypatch)
    svd = circular_svd(w, (6, 64))
    took = np.concatenate(calls)
    assert took.any() and not took.all()
    check_factors(svd, dense(w, (6, 64)))
    monkeypatch.setattr(_symbol_svd, "GRAM_CONDITION", 0.0)  # LAPACK alone
    assert np.abs(circular_svd(w, (6, 64)).S - svd.S).max() <= 1e-14 * svd.S[0]


@pytest.mark.parametrize("m, n", [(64, 64), (24, 40), (40, 24)])
def test_the_gram_threshold_keeps_the_factors_unitary_to_1e_13(m, n, monkeypatch):
    """Condition just below 4, values spread or in two clusters: the Gram route's factors are
    unitary to 1e-13 (the bound ``c kappa^2 eps``); at condition 16 they are not, which is
    why the threshold is 4 and not singular_values' 16."""
    rng = np.random.default_rng(m + n)
    k = min(m, n)

    def stack(kappa):
        spread = np.geomspace(1.0, 1.0 / kappa, k)
        clusters = np.where(np.arange(k) < k // 2, 1.0, 1.0 / kappa)
        out = []
        for s in (spread, clusters) * 3:
            q = np.linalg.qr(rng.standard_normal((m, k)) + 1j * rng.standard_normal((m, k)))[0]
            p = np.linalg.qr(rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k)))[0]
            out.append((q * s) @ p.conj().T)
        return np.array(out)

    def worst_unitarity(h):
        u, s = np.empty((len(h), m, k), dtype=complex), np.empty((len(h), k))
        vh = np.empty((len(h), k, n), dtype=complex)
        assert _symbol_svd._gram_svd_into(h, u, s, vh).all()
        assert np.abs(u @ (s[..., None] * vh) - h).max() <= 1e-14
        return max(np.abs(u.conj().transpose(0, 2, 1) @ u - np.eye(k)).max(),
                   np.abs(vh @ vh.conj().transpose(0, 2, 1) - np.eye(k)).max())

    assert worst_unitarity(stack(3.99)) <= 1e-13
    monkeypatch.setattr(_symbol_svd, "GRAM_CONDITION", 16.0)
    assert worst_unitarity(stack(15.9)) > 1e-13


def test_a_product_of_the_wrong_shape_names_the_shapes_accepted():
    """A review: ``svd @ np.ones(5)`` got scipy's bare "dimension mismatch", where
    ConvOperator names the shapes it takes."""
    svd = circular_svd(np.ones((2, 2, 3, 3)), (2, 4, 4))
    calls = [(lambda: svd @ np.ones(5), r"^matvec expects an array of shape \(32,\) or \(32, 1\) "
              r"\(a flattened \(2, 4, 4\) array\), got shape \(5,\)"),
             (lambda: svd.matmat(np.ones((5, 2))), r"^matmat expects .*got shape \(5, 2\)"),
             (lambda: svd.rmatvec(np.ones(3)), r"^rmatvec expects .*\(32,\).*got shape \(3,\)")]
    for call, match in calls:
        with pytest.raises(ValueError, match=match):
            call()
    # the adjoint, the pseudo-inverse and the best rank-r approximation alike
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    wide = circular_svd(w, (2, 4, 4))  # 48 x 32
    for op, n, shape in ((wide.H, 48, r"\(3, 4, 4\)"), (wide.pinv(), 48, r"\(3, 4, 4\)"),
                         (wide.rank_r(3), 32, r"\(2, 4, 4\)")):
        with pytest.raises(ValueError, match=rf"^matvec expects an array of shape \({n},\) or "
                           rf"\({n}, 1\) \(a flattened {shape} array\), got shape \(5,\)"):
            op @ np.ones(5)
    # a sparse column: the layer's matrix is no method of CircularSVD, so not offered
    import scipy.sparse as sp

    with pytest.raises(TypeError, match=r"^matvec takes dense arrays .*pass x.toarray\(\)$"):
        svd.matvec(sp.csr_array(np.ones((32, 1))))


# A mutation review of the spectral code (2026-12-05): each test below failed on a
# change of the code that every other test let pass.


def _periodic_dense(w, shape, **options):
    """The explicit matrix of the periodic layer (``padding=None``, circular)."""
    return sc.conv_matrix(w, shape, **options, padding=None, padding_mode="circular").toarray()


def test_ties_of_s_are_in_frequency_order():
    """S's documented order: descending, equal values by frequency, ``xi`` and ``-xi``
    adjacent. A real weight's values at xi and -xi tie exactly; U's column of the first of a
    tie lives at the lower frequency."""
    w = np.random.default_rng(2).standard_normal((1, 1, 3))
    svd = sc.circular_svd(w, (1, 8))
    U = svd.U @ np.eye(svd.S.size)
    where = np.argmax(np.abs(np.fft.fft(U, axis=0)), axis=0)  # each column's frequency
    ties = np.flatnonzero(svd.S[:-1] == svd.S[1:])
    assert ties.size
    for j in ties:
        assert where[j] < where[j + 1], (j, where[j], where[j + 1])


def _real_2d_layer(seed):
    """A random real 2 -> 2 3x3 layer on 6x6, periodic: the generator (to draw more from),
    its explicit matrix and its circular SVD."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((2, 2, 3, 3))
    return rng, _periodic_dense(w, (2, 6, 6)), sc.circular_svd(w, (2, 6, 6))


def test_a_real_layer_applied_to_complex_vectors_keeps_the_imaginary_part():
    rng, A, svd = _real_2d_layer(3)
    x = rng.standard_normal(A.shape[1]) + 1j * rng.standard_normal(A.shape[1])
    assert np.allclose(svd @ x, A @ x, rtol=0, atol=1e-12)
    b = rng.standard_normal(A.shape[0]) + 1j * rng.standard_normal(A.shape[0])
    assert np.allclose(svd.solve(b), np.linalg.lstsq(A, b, rcond=None)[0], rtol=0, atol=1e-10)


def test_rcond_zero_never_divides_by_an_exact_zero_singular_value():
    """rcond=0 keeps every value above 0: an exact zero is still cut (numpy's "at most")."""
    w = np.array([[[1.0, -1.0]]])  # the symbol vanishes exactly at frequency 0
    shape = (1, 8)
    A = _periodic_dense(w, shape)
    svd = sc.circular_svd(w, shape)
    assert svd.S[-1] == 0.0
    b = np.random.default_rng(4).standard_normal(8)
    x = svd.solve(b, rcond=0.0)
    assert np.all(np.isfinite(x))
    assert np.allclose(x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=0, atol=1e-12)
    # the zero layer: every value zero, its least-norm solution zero
    zero = sc.circular_svd(np.zeros((1, 1, 3)), shape)
    assert np.array_equal(zero.solve(b), np.zeros(8))
    assert np.array_equal(zero.pinv() @ b, np.zeros(8))


def test_damping_without_rcond_cuts_nothing():
    """With damp > 0 and no rcond, a tiny singular value is damped, not cut (lsqr's rule):
    the constant vector is an eigenvector of the circulant with eigenvalue delta."""
    delta = 2.0**-50  # below the default cut eps * max(shape) * S[0]
    w = np.array([[[1.0, -(1.0 - delta)]]])
    svd = sc.circular_svd(w, (1, 8))
    A = _periodic_dense(w, (1, 8))
    assert np.allclose(A @ np.ones(8), delta)
    x = svd.solve(np.ones(8), damp=delta)  # s / (s^2 + damp^2) = 1 / (2 delta)
    assert np.allclose(x, np.full(8, 1.0 / (2.0 * delta)), rtol=1e-9, atol=0)


def test_default_rcond_is_eps_times_the_larger_dimension():
    """numpy.linalg.lstsq's default cut, eps * max(rows, cols) * S[0], for a wide layer:
    a value between eps * min and eps * max times S[0] is cut."""
    delta = 3 * 2.0**-49  # 5.3e-15: between 8 eps S[0] and 16 eps S[0] (S[0] ~ 2)
    w = np.zeros((1, 2, 2))
    w[0, 0] = [1.0, -(1.0 - delta)]
    w[0, 1] = [0.0, 0.0]
    shape = (2, 8)  # 8 x 16
    A = _periodic_dense(w, shape)
    svd = sc.circular_svd(w, shape)
    b = np.ones(8)
    expected = np.linalg.lstsq(A, b, rcond=None)[0]  # cuts delta: zero
    assert np.allclose(expected, 0.0, atol=1e-12)
    assert np.allclose(svd.solve(b), expected, rtol=0, atol=1e-12)


def test_rmatmat_of_the_pseudo_inverse_is_its_adjoint():
    rng, A, svd = _real_2d_layer(5)
    Y = rng.standard_normal((A.shape[1], 2))
    assert np.allclose(svd.pinv().rmatmat(Y), np.linalg.pinv(A).T @ Y, rtol=0, atol=1e-10)
    assert np.allclose(svd.pinv(damp=0.3).rmatmat(Y),
                       (np.linalg.solve(A.T @ A + 0.09 * np.eye(A.shape[1]), A.T)).T @ Y,
                       rtol=0, atol=1e-10)
    U, S, Vh = np.linalg.svd(A)
    r = next(j for j in range(2, S.size) if S[j - 1] - S[j] > 1e-6 * S[0])  # a gap: unique
    best = (U[:, :r] * S[:r]) @ Vh[:r]
    X = rng.standard_normal((A.shape[0], 2))
    assert np.allclose(svd.rank_r(r).rmatmat(X), best.T @ X, rtol=0, atol=1e-10)


def test_the_adjoint_of_a_real_layer_is_real_and_of_a_complex_one_complex():
    rng = np.random.default_rng(6)
    shape = (2, 6, 6)
    for w in (rng.standard_normal((2, 2, 3, 3)),
              rng.standard_normal((2, 2, 3, 3)) + 1j * rng.standard_normal((2, 2, 3, 3))):
        A = _periodic_dense(w, shape)
        svd = sc.circular_svd(w, shape)
        Y = rng.standard_normal((A.shape[0], 2))
        expected = A.conj().T @ Y
        for got in (svd.H @ Y, svd.rmatmat(Y), svd.H.matmat(Y)):
            assert np.iscomplexobj(got) == np.iscomplexobj(w)
            assert np.allclose(got, expected, rtol=0, atol=1e-12)
        assert svd.H.dtype == (np.complex128 if np.iscomplexobj(w) else np.float64)


def test_a_product_on_a_large_batch_is_sized_against_the_memory_limit():
    w = np.random.default_rng(20).standard_normal((2, 2, 3, 3))
    svd = sc.circular_svd(w, (2, 8, 8))
    X = np.ones((128, 1000))  # the product's work: 4 complex copies of 1000 columns
    old = sc.set_memory_limit(2 * 2**20)
    try:
        with pytest.raises(sc.MatrixTooLargeError):
            svd @ X
        with pytest.raises(sc.MatrixTooLargeError):
            svd.solve(X)
    finally:
        sc.set_memory_limit(old)


def _one_hot_layers(kernel_shape, shape, **options):
    """The matrices of the one-hot kernels: the basis of the layers of that support."""
    basis = []
    for index in np.ndindex(*kernel_shape):
        k = np.zeros(kernel_shape)
        k[index] = 1.0
        basis.append(sc.conv_matrix(k, shape, **options, **PERIODIC).toarray().ravel())
    return np.array(basis).T


@pytest.mark.parametrize("dilation", [1, 2])
def test_one_round_of_the_kernel_support_is_the_frobenius_projection(dilation):
    """support='kernel', one round: the clipped layer (dense SVD) projected in the Frobenius
    norm onto the layers of the original support (least squares over the one-hot kernels).
    With dilation 2 on a grid of 4, two taps read one position and share it."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((2, 2, 3))
    shape = (2, 4)
    options = dict(dilation=dilation)
    A = _periodic_dense(w, shape, **options)
    U, S, Vh = np.linalg.svd(A)
    c = 0.6 * S[0]
    clipped = (U * np.minimum(S, c)) @ Vh
    B = _one_hot_layers(w.shape, shape, **options)
    coefficients = np.linalg.lstsq(B, clipped.ravel(), rcond=None)[0]
    expected = (B @ coefficients).reshape(A.shape)
    got = sc.clip_singular_values(w, shape, max=c, support="kernel", iterations=1, **options)
    assert got.shape == w.shape
    assert np.allclose(_periodic_dense(got, shape, **options), expected, rtol=0, atol=1e-12)


def test_a_layer_exactly_on_the_sphere_is_in_the_ball():
    """||A|| == max: already in the (closed) ball, returned as it is, untouched by a round."""
    w = np.random.default_rng(9).standard_normal((2, 2, 3, 3))
    shape = (2, 8, 8)
    top = float(sc.circular_svd(w, shape).S[0])
    assert math.isclose(top, np.linalg.norm(_periodic_dense(w, shape), 2), rel_tol=1e-12)
    got = sc.clip_singular_values(w, shape, max=top, support="kernel")
    assert np.array_equal(got, w)


def _dense_round(w, shape, c):
    """One round of the alternating projection by dense linear algebra (dilation 1, where a
    kernel's layer determines the kernel): clip by numpy's SVD, project by least squares."""
    A = _periodic_dense(w, shape)
    U, S, Vh = np.linalg.svd(A)
    clipped = (U * np.minimum(S, c)) @ Vh
    B = _one_hot_layers(w.shape, shape)
    return np.linalg.lstsq(B, clipped.ravel(), rcond=None)[0].reshape(w.shape)


def test_two_rounds_of_the_alternating_projection_are_two_dense_rounds():
    rng = np.random.default_rng(10)
    w = rng.standard_normal((2, 2, 3))
    shape = (2, 6)
    c = 0.5 * np.linalg.norm(_periodic_dense(w, shape), 2)
    once = _dense_round(w, shape, c)
    # not in the ball yet: a second round
    assert np.linalg.norm(_periodic_dense(once, shape), 2) > c
    twice = _dense_round(once, shape, c)
    got = sc.clip_singular_values(w, shape, max=c, support="kernel", iterations=2)
    assert np.allclose(got, twice, rtol=0, atol=1e-12)


def test_a_float32_kernel_comes_back_in_double_precision_also_inside_the_ball():
    w = np.random.default_rng(11).standard_normal((2, 2, 3, 3)).astype(np.float32)
    for support, c in (("kernel", 100.0), ("kernel", 1.0), ("full", 100.0)):
        got = sc.clip_singular_values(w, (2, 8, 8), max=c, support=support)
        assert got.dtype == np.float64, (support, c)


def test_clip_names_itself_when_refusing_a_non_periodic_layer():
    w = np.ones((1, 1, 3))
    with pytest.raises(ValueError, match="clip_singular_values"):
        sc.clip_singular_values(w, (1, 8), max=1.0, padding=0)


def test_the_singular_values_are_read_only_and_vh_is_v_h():
    """A new user's trial: ``svd.S /= svd.S[0]`` changed what ``dense_factors`` and ``cond``
    read but not the products (the object contradicted itself); ``Vh`` is ``V.H``, as
    numpy's and scipy's SVDs name it."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3))
    A = conv_matrix(w, (2, 6), padding=None, padding_mode="circular").toarray()
    svd = circular_svd(w, (2, 6))
    with pytest.raises(ValueError, match="read-only"):
        svd.S /= svd.S[0]
    U, S, Vh = svd.dense_factors()
    np.testing.assert_allclose(U * S @ Vh, A, atol=1e-13)
    assert svd.cond() == pytest.approx(np.linalg.cond(A), rel=1e-12)
    x = np.random.default_rng(1).standard_normal(12)
    np.testing.assert_allclose(svd.Vh @ x, svd.V.H @ x, rtol=1e-15)
    np.testing.assert_allclose(svd.U @ (svd.S * (svd.Vh @ x)), A @ x, atol=1e-13)


def test_an_array_of_the_layers_shape_is_refused_by_its_shape():
    """A new user's trial: ``svd @ x`` (and ``svd.pinv() @ b``) of a 3-D array raised scipy's
    message, which prints the whole array."""
    svd = circular_svd(np.ones((4, 2, 3, 3)), (2, 8, 8), stride=2)
    for product in (lambda: svd @ np.ones((2, 8, 8)), lambda: svd.pinv() @ np.ones((4, 4, 4)),
                    lambda: np.ones((4, 4, 4)) @ svd):
        with pytest.raises(ValueError, match=r"got an array of shape \((2, 8, 8|4, 4, 4)\): "
                                             r"flatten an array of shape") as info:
            product()
        assert "1., 1." not in str(info.value)


def test_tied_values_keep_each_pair_of_frequencies_together():
    """A new user's trial: an orthogonal layer (all its values equal) or a clipped one (a
    cluster at the clip) had its ties in frequency order, so a rank-r cut kept one member of
    hundreds of pairs {xi, -xi}, each built by rank_r as a dense real triplet (12 GiB asked
    for a 16-channel layer on 64x64). Now at most one pair is split, whatever r, and the cut
    is still the best rank-r approximation."""
    from sparseconv._symbol_svd import negative_frequencies

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    w = np.zeros((4, 4, 3, 3))
    w[:, :, 1, 1], w[:, :, 0, 1] = q, 0.5 * q  # a few distinct values, each many times
    svd = circular_svd(w, (4, 8, 8))
    assert np.unique(svd.S).size < 20
    keep_shape = svd._s.shape
    negative = negative_frequencies(svd._grid)
    for r in range(svd.S.size + 1):
        keep = np.zeros(svd.S.size, dtype=bool)
        keep[svd._order[:r]] = True
        keep = keep.reshape(keep_shape)
        assert np.count_nonzero(keep & ~keep[negative]) <= 1, r
    A = svd @ np.eye(svd.shape[1])
    for r in (1, 7, 65, 131):
        Ar = svd.rank_r(r) @ np.eye(svd.shape[1])
        assert np.isrealobj(Ar) and np.linalg.matrix_rank(Ar, tol=1e-9) == r
        assert np.linalg.norm(A - Ar, 2) == pytest.approx(svd.S[r], rel=1e-12)


def test_products_of_the_factors_name_the_shapes_accepted():
    """A new user's trial: ``svd.U @ np.ones(5)`` got scipy's "dimension mismatch", and
    ``svd.Vh @ x`` of an image a 4,000-character dump of it, where the layer names shapes."""
    svd = circular_svd(np.random.default_rng(0).standard_normal((3, 4, 3, 3)), (4, 8, 8))
    products = [
        (lambda: svd.U @ np.ones(5), r"^matvec expects an array of shape \(192,\) or \(192, 1\) "
                                     r"\(a flattened \(192,\) array\), got shape \(5,\)"),
        (lambda: svd.V.H @ np.ones(5), r"^matvec expects .*\(256,\).*\(a flattened \(4, 8, 8\) "
                                       r"array\), got shape \(5,\)"),
        (lambda: svd.Vh @ np.ones((4, 8, 8)), r"got an array of shape \(4, 8, 8\): flatten"),
        (lambda: svd.U.matmat(np.ones((5, 2))), r"^matmat expects an array of shape \(192,\), "
                                                r"\(192, 1\) or \(192, k\)"),
        (lambda: np.ones(5) @ svd.U, r"^y @ .* multiplies flat row vectors of length 192 or "
                                     r"\(k, 192\) rows, got an array of shape \(5,\)$"),
        (lambda: np.ones(5) @ svd, r"^y @ .*CircularSVD.* of length 192 .*shape \(5,\)$")]
    for product, match in products:
        with pytest.raises(ValueError, match=match) as info:
            product()
        assert len(str(info.value)) < 300
    U, S, Vh = svd.dense_factors()  # and the factors are still the factors
    x = np.random.default_rng(1).standard_normal(256)
    np.testing.assert_allclose(svd.Vh @ x, Vh @ x, atol=1e-14)
    y = np.random.default_rng(2).standard_normal(192)
    np.testing.assert_allclose(svd.V.H.H @ y, Vh.conj().T @ y, atol=1e-14)
    np.testing.assert_allclose(svd.U.H @ x[:192], U.conj().T @ x[:192], atol=1e-14)
    np.testing.assert_allclose(x[:192] @ svd.U, x[:192] @ U, atol=1e-14)


def test_a_solution_beyond_float64_is_refused_rather_than_nan():
    """A new user's trial: subnormal weights (1e-310) and ``b`` of order one make a solution
    near 1e310; solve returned NaN everywhere (inf times 0 in the last product). Refused by
    name now; ``b`` scaled down solves."""
    w = 1e-310 * np.random.default_rng(3).standard_normal((2, 2, 3))
    svd = circular_svd(w, (2, 8))
    with pytest.raises(OverflowError, match=r"exceed float64's range .*scale b down"):
        svd.solve(np.ones(16))
    x = svd.solve(np.full(16, 1e-10))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(svd @ x, np.full(16, 1e-10), rtol=1e-9)
