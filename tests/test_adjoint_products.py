"""The kernels of the transpose (sparseconv._adjoint_products), each checked on its own against
conv_matrix(...).T and PyTorch's conv_transpose."""

from __future__ import annotations

import numpy as np
import pytest

import sparseconv
import sparseconv._adjoint_products as adjoint
from sparseconv import ConvOperator, conv_matrix
from sparseconv._adjoint_products import Col2im, Polyphase, col2im

from ._oracles import Layer, random_layer, requires_torch, torch_conv, torch_conv_transpose
from .test_matrices import assert_close


def _check_transpose_kernels(layer, batch, rng):
    op = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    y = rng.standard_normal((*op.output_shape, batch))
    expected = (A.T @ y.reshape(-1, batch)).reshape(*op.input_shape, batch)
    assert_close(col2im(op.geometry, op._w, y), expected, layer)
    assert_close(col2im(op.geometry, op._w, y, widen=False), expected, layer)
    assert_close(Polyphase(op.geometry, op._w)(y), expected, layer)


@pytest.fixture(params=["widened", "as decided"])
def widening(request, monkeypatch):
    """col2im with y's rows widened whenever the weight is finite, or as _widens decides
    (``widen=False`` covers the other path)."""
    if request.param == "widened":
        monkeypatch.setattr(adjoint, "_widens", lambda geom, b, growth: True)
        adjoint._col2im_layout.cache_clear()
    yield request.param
    adjoint._col2im_layout.cache_clear()


@pytest.mark.parametrize("seed", range(60))
def test_both_transpose_kernels_are_the_transpose(seed, widening):
    """col2im (rows widened or not) and the polyphase correlation each give A.T, whichever the
    operator picks; batches of 1 to 3 (a batch row is copied as one item from 2 on)."""
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
def test_transpose_kernels_at_the_edges_of_the_phase_split(kernel, kwargs, widening):
    """Zero padding is computed on the interior only: positions of a phase may then need y
    cropped, or no tap at all; other padding modes compute the padded array and fold it.
    Widened, each phase's lead tap writes and the rest of the phase is zeroed around it."""
    rng = np.random.default_rng(17)
    size = (7, 8)[:len(kernel)]
    layer = Layer(rng.standard_normal((3, 2, *kernel)), (2, *size), kwargs)
    for batch in (1, 2):
        _check_transpose_kernels(layer, batch, rng)


def test_polyphase_keeps_the_weight_dtype_when_no_phase_has_a_tap():
    """Every input position lies in a phase no tap reaches: the result is zeros, yet of the
    dtype numpy promotion of the weight and y gives."""
    A = ConvOperator(np.ones((1, 1, 1), complex), (1, 1), stride=4, padding=((1, 8),))
    assert not Polyphase(A.geometry, A._w).phases
    x = A.rmatmat(np.ones((A.shape[0], 2), np.float32))
    assert x.dtype == np.complex128 and not x.any()


def _natural_output_padding(shape, op, kwargs):
    """conv_transpose's output_padding giving back the input size of the convolution."""
    stride, padding, dilation = (np.broadcast_to(kwargs[k], 2) for k in
                                 ("stride", "padding", "dilation"))
    kernel = op.geometry.kernel_size
    return tuple(int(n - ((o - 1) * s - 2 * p + d * (k - 1) + 1)) for n, o, s, p, d, k in
                 zip(shape[1:], op.output_shape[1:], stride, padding, dilation, kernel))


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(24))
def test_col2im_matches_torch_conv_transpose(seed, dtype, widening):
    """The adjoint by col2im, rows widened or not, against F.conv_transpose2d: strides 1-3,
    paddings, dilations, groups, kernels up to 7 wide, batches of 1, 2 and 8; 1e-12 in
    float64 (float32: 1e-5)."""
    rng = np.random.default_rng(31_000 + seed)
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 5))
    kernel = tuple(int(k) for k in rng.choice([1, 2, 3, 7], 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
    padding = tuple(int(rng.integers(0, (k - 1) * d // 2 + 1)) for k, d in zip(kernel, dilation))
    size = tuple(int(rng.integers((k - 1) * d + 1, (k - 1) * d + 12))
                 for k, d in zip(kernel, dilation))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    w = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    op = ConvOperator(w, (c_in, *size), **kwargs)
    batch = (1, 2, 8)[seed % 3]
    y = rng.standard_normal((batch, *op.output_shape)).astype(dtype)
    expected = torch_conv_transpose(y, w, output_padding=_natural_output_padding(
        op.input_shape, op, kwargs), **kwargs)
    expected = np.moveaxis(expected, 0, -1)
    config = (w.shape, op.input_shape, kwargs, batch, dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for widen in (True, False):
        got = col2im(op.geometry, op._w, np.ascontiguousarray(np.moveaxis(y, 0, -1)),
                     widen=widen)
        assert got.dtype == dtype, config
        assert_close(got, expected, config, rtol=rtol)


@pytest.mark.parametrize("weight_shape, size, stride, padding, widened", [
    ((64, 3, 7, 7), 224, 2, 3, {1: True, 8: True}),      # ResNet's stem: few input channels
    ((128, 64, 3, 3), 56, 2, 1, {1: True, 8: False}),    # its strided 3x3 layers
    ((256, 128, 3, 3), 28, 2, 1, {1: True, 8: False}),
    ((512, 256, 3, 3), 14, 2, 1, {1: False, 8: False}),  # 7 -> 8 columns: 14% more BLAS
    ((64, 3, 3, 3), 224, 1, 1, {1: False, 8: False}),    # copying y would cost more than the adds
])
def test_col2im_widens_rows_where_it_was_measured_to_pay(weight_shape, size, stride, padding,
                                                          widened):
    """Which layers col2im widens at batch 1 and 8 (the decision alone, at full size), and
    at a few channels, both paths give A.T at batches 1 and 8."""
    from sparseconv import ConvGeometry

    geom = ConvGeometry.from_weight(weight_shape, (weight_shape[1], size, size), stride=stride,
                                    padding=padding)
    assert {b: adjoint._col2im_layout(geom, b, 8)[0] for b in widened} == widened
    rng = np.random.default_rng(3)
    small = (4, min(weight_shape[1], 3), *weight_shape[2:])
    layer = Layer(rng.standard_normal(small), (small[1], 20, 20),
                  dict(stride=stride, padding=padding))
    for batch in (1, 8):
        _check_transpose_kernels(layer, batch, rng)


def test_col2im_does_not_widen_rows_for_a_weight_that_is_not_finite(widening):
    """inf * 0 is nan: the zero columns that would widen y's rows would carry it onto real
    positions. Not widened, the result is the sparse matrix's, nan and inf where it has them."""
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 1, 0] = np.inf  # a zero column after a row of y would reach input column 9
    A = ConvOperator(w, (1, 10, 10), stride=2, padding=1)
    y = np.ones((1, 5, 5, 1))
    with np.errstate(invalid="ignore"):
        expected = (conv_matrix(w, (1, 10, 10), stride=2, padding=1).T
                    @ y.reshape(-1)).reshape(1, 10, 10, 1)
        assert not Col2im(A.geometry, A._w).widen
        np.testing.assert_array_equal(Col2im(A.geometry, A._w)(y), expected)
        widened = col2im(A.geometry, A._w, y, widen=True)  # what the flag prevents
    if widening == "widened":  # (this small layer is not widened as decided)
        assert np.isnan(widened).sum() > np.isnan(expected).sum()


@requires_torch
@pytest.mark.parametrize("size, stride, padding", [
    ((5, 6), 1, 1), ((5, 6), 3, 1), ((5, 7), (3, 2), (1, 0)), ((4, 4), 2, 0)])
def test_pointwise_transpose_where_outputs_read_only_padding(size, stride, padding):
    """A 1x1 layer's A.T (its own route, Pointwise) where some outputs read only the zero
    padding and the stride does not divide the padded input: PyTorch's dense matrix,
    transposed."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 2, 1, 1))
    n = 2 * int(np.prod(size))  # the layer's dense matrix: PyTorch on every basis vector
    dense = torch_conv(np.eye(n).reshape(n, 2, *size), w, stride=stride,
                       padding=padding).reshape(n, -1).T
    op = sparseconv.ConvOperator(w, (2, *size), stride=stride, padding=padding)
    y = rng.standard_normal((dense.shape[0], 2))
    assert_close(op.T @ y, dense.T @ y, (size, stride, padding))


@requires_torch
def test_implicit_col2im_over_several_chunks_of_rows():
    """col2im's implicit GEMM (16+ channels a group, double precision, widened rows) on more
    output rows than one chunk holds (_IMPLICIT_CHUNK_BYTES): the last, shorter chunk too.
    The adjoint of a stride-1 conv2d is PyTorch's conv_transpose2d."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((24, 16, 3, 3))
    shape = (16, 600, 64)
    op = sparseconv.ConvOperator(w, shape, padding=1)
    y = rng.standard_normal(op.shape[0])
    expected = torch_conv_transpose(y.reshape(1, 24, 600, 64), w, padding=1)
    assert_close(op.T @ y, expected.ravel(), "implicit col2im, several chunks", rtol=1e-10)
