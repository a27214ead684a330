"""The forward product's helpers (sparseconv._products): copies that move runs as one item, and
inputs that need a cast, through every kernel."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import ConvOperator, conv_matrix


@pytest.mark.parametrize("batch", [1, 2, 8])
@pytest.mark.parametrize("src_dtype, dst_dtype", [(np.float32, np.float32),
                                                  (np.float32, np.float64),
                                                  (np.int64, np.float64),  # same item size
                                                  (">f8", np.float64),     # byte order
                                                  (np.complex128, np.complex128)])
def test_batch_row_copies_equal_plain_copies(batch, src_dtype, dst_dtype):
    """_copy moves the trailing axes contiguous in both arrays as one item: strided sources and
    targets, runs of several axes, broadcast sources, mixed dtypes (cast, not reinterpreted)
    and a batch axis that is not contiguous all copy exactly."""
    from sparseconv._products import _copy

    rng = np.random.default_rng(batch)
    src = rng.standard_normal((3, 9, 10, batch)).astype(src_dtype)
    cases = [
        (src[:, ::2, 1::3], (3, 5, 3, batch)),
        (src[:, 1:, :9].transpose(0, 2, 1, 3), (3, 9, 8, batch)),
        (np.asfortranarray(src)[:, ::3], (3, 3, 10, batch)),  # batch axis not contiguous
    ]
    for view, shape in cases:
        dst = np.zeros((3, shape[1] * 2, shape[2], batch), dst_dtype)[:, ::2]
        _copy(dst, view)
        np.testing.assert_array_equal(dst, view.astype(dst_dtype))
    # runs of several axes: rows of a stride-1 window (contiguous in both), a source that
    # broadcasts along a leading axis (a border slab), and an empty leading axis
    for view, dst in ((src[:, 2:7, 1:9], np.zeros((3, 7, 8, batch), dst_dtype)[:, 1:6]),
                      (src[:, 4:5], np.zeros((3, 6, 10, batch), dst_dtype)),
                      (src[:0, 1:], np.zeros((0, 8, 10, batch), dst_dtype))):
        _copy(dst, view)
        np.testing.assert_array_equal(dst, np.broadcast_to(view, dst.shape).astype(dst_dtype))


@pytest.mark.parametrize("dtype", [np.int64, ">f8", np.float32])
def test_products_of_inputs_that_need_a_cast(dtype):
    """Inputs whose dtype differs from the product's (integers, big-endian floats) are cast,
    never reinterpreted, in every kernel: forward, col2im and the polyphase correlation."""
    from sparseconv import ConvTransposeOperator, conv_transpose_matrix

    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 2, 3))
    A, M = (f(w, (2, 9), stride=2, padding=1) for f in (ConvOperator, conv_matrix))
    T, N = (f(w, (4, 5), stride=2) for f in (ConvTransposeOperator, conv_transpose_matrix))
    for op, matrix in ((A, M), (T, N)):
        for apply, dense in ((op.matmat, matrix), (op.rmatmat, matrix.T)):
            X = rng.integers(-3, 4, (dense.shape[1], 3)).astype(dtype)
            np.testing.assert_allclose(apply(X), dense @ X.astype(np.float64), atol=1e-12)
