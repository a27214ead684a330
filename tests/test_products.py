"""The two kernels of the transpose, each checked on its own against conv_matrix(...).T."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import ConvOperator, conv_matrix
from sparseconv._products import Polyphase, col2im

from ._oracles import Layer, random_layer
from .test_matrices import assert_close


def _check_transpose_kernels(layer, batch, rng):
    op = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    y = rng.standard_normal((*op.output_shape, batch))
    expected = (A.T @ y.reshape(-1, batch)).reshape(*op.input_shape, batch)
    assert_close(col2im(op.geometry, op._w, y), expected, layer)
    assert_close(Polyphase(op.geometry, op._w)(y), expected, layer)


@pytest.mark.parametrize("seed", range(60))
def test_both_transpose_kernels_are_the_transpose(seed):
    """col2im and the polyphase correlation each give A.T, whichever the operator picks;
    batches of 1 to 3 (a batch row is copied as one item from 2 on)."""
    rng = np.random.default_rng(13_000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - seed % 3)
    _check_transpose_kernels(layer, 1 + seed % 3, rng)


@pytest.mark.parametrize("kernel, kwargs", [
    ((1,), dict(stride=2, padding=((3, 2),))),               # padding beyond the kernel's reach
    ((2,), dict(stride=2, padding=4, dilation=3)),           # phases that only padding holds
    ((3,), dict(stride=3, padding=2, dilation=2)),           # a phase no tap reaches
    ((4,), dict(stride=2, padding=((0, 5),), dilation=2)),   # every tap in one phase
    ((3,), dict(stride=2, padding=2, padding_mode="circular")),
    ((2, 3), dict(stride=(3, 2), padding=((4, 1), (0, 3)))),
])
def test_transpose_kernels_at_the_edges_of_the_phase_split(kernel, kwargs):
    """Zero padding is computed on the interior only: positions of a phase may then need y
    cropped, or no tap at all; other padding modes compute the padded array and fold it."""
    rng = np.random.default_rng(17)
    size = (7, 8)[:len(kernel)]
    layer = Layer(rng.standard_normal((3, 2, *kernel)), (2, *size), kwargs)
    for batch in (1, 2):
        _check_transpose_kernels(layer, batch, rng)


@pytest.mark.parametrize("batch", [1, 2, 8])
@pytest.mark.parametrize("src_dtype, dst_dtype", [(np.float32, np.float32),
                                                  (np.float32, np.float64),
                                                  (np.int64, np.float64),  # same item size
                                                  (">f8", np.float64),     # byte order
                                                  (np.complex128, np.complex128)])
def test_batch_row_copies_equal_plain_copies(batch, src_dtype, dst_dtype):
    """_copy moves a contiguous batch axis as one item: strided sources and targets, mixed
    dtypes (cast, not reinterpreted) and a batch axis that is not contiguous all copy exactly."""
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


def test_polyphase_keeps_the_weight_dtype_when_no_phase_has_a_tap():
    """Every input position lies in a phase no tap reaches: the result is zeros, yet of the
    dtype numpy promotion of the weight and y gives."""
    A = ConvOperator(np.ones((1, 1, 1), complex), (1, 1), stride=4, padding=((1, 8),))
    assert not Polyphase(A.geometry, A._w).phases
    x = A.rmatmat(np.ones((A.shape[0], 2), np.float32))
    assert x.dtype == np.complex128 and not x.any()
