"""The accumulating BLAS gemm (sparseconv._gemm) against numpy's matmul, on strided operands."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv._gemm import gemm


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_gemm_accumulates_strided_products(dtype):
    """``C^T = A^T B^T (+ C^T)`` on C-ordered views whose rows are far apart: one call
    overwrites (beta 0), the next adds (beta 1), as numpy computes them."""
    rng = np.random.default_rng(0)
    single = np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.complex64))
    product, tol = gemm(dtype), 1e-5 if single else 1e-13
    x = rng.standard_normal((5, 40)) + (1j * rng.standard_normal((5, 40))
                                        if np.dtype(dtype).kind == "c" else 0)
    w = rng.standard_normal((3, 5)) + (1j * rng.standard_normal((3, 5))
                                       if np.dtype(dtype).kind == "c" else 0)
    x, w = x.astype(dtype), w.astype(dtype)
    y = np.full((3, 30), np.nan, dtype)
    size = np.dtype(dtype).itemsize
    # rows of x from column 7 on (lda = 40), 17 columns; y's first 17 columns (ldc = 30)
    for beta in (0, 1):
        product(17, 3, 5, x.ctypes.data + 7 * size, 40, w.ctypes.data, 5, y.ctypes.data, 30,
                beta)
    np.testing.assert_allclose(y[:, :17], 2 * (w @ x[:, 7:24]), rtol=tol, atol=tol)
    assert np.isnan(y[:, 17:]).all()  # nothing written past m


def test_gemm_refuses_what_blas_cannot_take():
    assert gemm(np.int64) is None and gemm(">f8") is None and gemm(np.float16) is None
    product = gemm(np.float64)
    a = np.zeros((2, 2))
    with pytest.raises(ValueError, match="positive sizes"):
        product(0, 2, 2, a.ctypes.data, 2, a.ctypes.data, 2, a.ctypes.data, 2, 0)
    with pytest.raises(ValueError, match="lda=1"):
        product(2, 2, 2, a.ctypes.data, 1, a.ctypes.data, 2, a.ctypes.data, 2, 0)


def test_a_blas_of_other_integers_is_not_called(monkeypatch):
    """A scipy built with 64-bit BLAS integers has another Cython signature: no gemm is made
    from it (the ctypes prototype declares 32-bit ones), and the products keep to im2col."""
    from sparseconv import ConvOperator, _gemm, _products, conv_matrix

    monkeypatch.setattr(_gemm, "_SIGNATURE", b"void (char *, char *, int64_t *, ")
    for cache in (_gemm._pointer, _gemm.gemm, _products.implicit_applies):
        cache.cache_clear()
    try:
        assert gemm(np.float64) is None
        rng = np.random.default_rng(1)
        w = rng.standard_normal((32, 32, 3, 3))
        A, M = ConvOperator(w, (32, 12, 12), padding=1), conv_matrix(w, (32, 12, 12), padding=1)
        X, Y = rng.standard_normal((A.shape[1], 2)), rng.standard_normal((A.shape[0], 2))
        np.testing.assert_allclose(A.matmat(X), M @ X, atol=1e-12)
        np.testing.assert_allclose(A.rmatmat(Y), M.T @ Y, atol=1e-12)
    finally:
        for cache in (_gemm._pointer, _gemm.gemm):
            cache.cache_clear()
