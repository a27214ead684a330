"""The forward product's helpers (sparseconv._products): copies that move runs as one item,
inputs that need a cast, through every kernel, and the implicit GEMM against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import ConvOperator, conv_matrix

from ._oracles import random_array, random_layer, requires_torch, torch_conv
from .test_matrices import assert_close


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


# ---------------------------------------------------------------------------------------------
# The implicit GEMM (stride 1): against PyTorch on random layers of every kind, forced to run
# everywhere it can, and on its own where it runs by default.
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def implicit_everywhere(monkeypatch):
    """Every stride-1 layer runs the implicit GEMM, whatever its channels, waste and dtype
    (single precision too, where it is not chosen by default); returns the list of
    geometries it ran on."""
    import math

    from sparseconv import _products

    ran = []
    implicit = _products._implicit

    def spy(geom, taps, xp):
        ran.append(geom)
        return implicit(geom, taps, xp)

    monkeypatch.setattr(_products, "IMPLICIT_MIN_CHANNELS", 1)
    monkeypatch.setattr(_products, "IMPLICIT_MAX_WASTE", math.inf)
    monkeypatch.setattr(_products, "IMPLICIT_DTYPES", tuple(map(np.dtype, "fdFD")))
    monkeypatch.setattr(_products, "_implicit", spy)
    _products.implicit_applies.cache_clear()
    yield ran
    _products.implicit_applies.cache_clear()


@requires_torch
@pytest.mark.parametrize("seed", range(60))
def test_implicit_gemm_matches_torch_on_random_layers(seed, implicit_everywhere):
    """Every dimension, padding form and mode, dilation, groups, dtype and batch: the forward
    product against ``torch.nn.functional.conv*d`` and the adjoint against the matrix."""
    from sparseconv._products import implicit_applies

    rng = np.random.default_rng(20_000 + seed)
    dtype = (np.float64, np.complex128, np.float32)[seed % 3]
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=9 - 2 * (seed % 3), max_channels=4)
    layer.kwargs["stride"] = 1
    weight = layer.weight.astype(np.float32) if dtype == np.float32 else layer.weight
    if dtype == np.complex128:
        weight = weight + 1j * random_array(rng, weight.shape)
    op = ConvOperator(weight, layer.input_shape, **layer.kwargs)
    assert implicit_applies(op.geometry)
    batch = 1 + seed % 4
    x = random_array(rng, (batch, *layer.input_shape), dtype)
    parts = (x.real, x.imag, weight.real, weight.imag) if dtype == np.complex128 else None
    if parts is None:
        y = torch_conv(x.astype(np.float64), weight.astype(np.float64), **layer.kwargs)
    else:  # (a + ib) * (c + id), each product by PyTorch
        xr, xi, wr, wi = parts
        y = (torch_conv(xr, wr, **layer.kwargs) - torch_conv(xi, wi, **layer.kwargs)
             + 1j * (torch_conv(xr, wi, **layer.kwargs) + torch_conv(xi, wr, **layer.kwargs)))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    ran = len(implicit_everywhere)
    assert_close(op.matmat(x.reshape(batch, -1).T), y.reshape(batch, -1).T, layer, rtol=rtol)
    assert len(implicit_everywhere) == ran + 1  # the implicit GEMM computed it
    A = conv_matrix(weight.astype(np.complex128 if dtype == np.complex128 else np.float64),
                    layer.input_shape, **layer.kwargs)
    Y = random_array(rng, (op.shape[0], batch), dtype)
    assert_close(op.rmatmat(Y), A.conj().T @ Y, layer, rtol=rtol)


@pytest.mark.parametrize("seed", range(20))
def test_implicit_gemm_in_transposed_convolutions(seed, implicit_everywhere):
    """A stride-1 transposed convolution's adjoint is a correlation's forward product: the
    implicit GEMM runs there too, against the transposed layer's matrix."""
    from sparseconv import ConvTransposeOperator, conv_transpose_matrix

    from ._oracles import random_transpose_layer

    rng = np.random.default_rng(21_000 + seed)
    w, input_shape, kwargs = random_transpose_layer(rng, max_size=7)
    kwargs.update(stride=1, output_padding=0)
    op = ConvTransposeOperator(w, input_shape, **kwargs)
    T = conv_transpose_matrix(w, input_shape, **kwargs)
    X, Y = rng.standard_normal((op.shape[1], 3)), rng.standard_normal((op.shape[0], 3))
    np.testing.assert_allclose(op.matmat(X), T @ X, atol=1e-12 * max(1, abs(T @ X).max()))
    np.testing.assert_allclose(op.rmatmat(Y), T.T @ Y, atol=1e-12 * max(1, abs(T.T @ Y).max()))
    assert implicit_everywhere  # the adjoint is the correlation's forward product


@requires_torch
@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize("groups", [1, 2])
def test_implicit_gemm_where_it_runs_by_default(batch, groups):
    """A layer with many channels and little padding per row (32 per group on 20x20): the
    default rule picks the implicit GEMM, which equals PyTorch, forward and adjoint (the
    adjoint's correlation runs it as well)."""
    from sparseconv._products import implicit_applies

    rng = np.random.default_rng(batch + groups)
    w = rng.standard_normal((32 * groups, 32, 3, 3))
    op = ConvOperator(w, (32 * groups, 20, 20), padding=1, groups=groups)
    assert implicit_applies(op.geometry)
    x = rng.standard_normal((batch, 32 * groups, 20, 20))
    y = torch_conv(x, w, padding=1, groups=groups)
    assert_close(op.matmat(x.reshape(batch, -1).T), y.reshape(batch, -1).T, "default rule")
    A = conv_matrix(w, (32 * groups, 20, 20), padding=1, groups=groups)
    Y = rng.standard_normal((op.shape[0], batch))
    assert_close(op.rmatmat(Y), A.T @ Y, "default rule")


def test_implicit_gemm_is_not_chosen_where_it_would_waste():
    """Stride 2, thin groups, a 7x7 input padded to 9x9, and single precision: im2col."""
    from sparseconv._geometry import ConvGeometry
    from sparseconv._products import implicit_applies

    def geom(channels, size, **kwargs):
        return ConvGeometry.from_weight((channels, channels // kwargs.get("groups", 1), 3, 3),
                                        (channels, size, size), **kwargs)

    assert implicit_applies(geom(64, 56, padding=1), np.float64)
    assert implicit_applies(geom(256, 14, padding=1), np.complex128)
    assert not implicit_applies(geom(256, 14, padding=1), np.float32)
    assert not implicit_applies(geom(64, 56, padding=1, stride=2))
    assert not implicit_applies(geom(64, 56, padding=1, groups=8))
    assert not implicit_applies(geom(512, 7, padding=1))


@pytest.mark.parametrize("seed", range(40))
def test_implicit_col2im_matches_the_transpose(seed, implicit_everywhere, monkeypatch):
    """col2im's implicit GEMM (one accumulating product per tap into the phase-split input),
    forced on random layers of every stride, dilation, padding, group and dtype: ``A.T @ y``
    against the matrix, and it ran."""
    from sparseconv import _adjoint_products
    from sparseconv._adjoint_products import Col2im

    ran = []
    implicit = _adjoint_products._implicit_col2im
    monkeypatch.setattr(_adjoint_products, "_implicit_col2im",
                        lambda *args: ran.append(1) or implicit(*args))
    monkeypatch.setattr(_adjoint_products, "IMPLICIT_GROWTH", np.inf)  # widen every layer
    _adjoint_products._col2im_layout.cache_clear()
    rng = np.random.default_rng(22_000 + seed)
    dtype = (np.float64, np.complex128, np.float32)[seed % 3]
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=9 - 2 * (seed % 3), max_channels=4)
    weight = layer.weight.astype(np.float32) if dtype == np.float32 else layer.weight
    if dtype == np.complex128:
        weight = weight + 1j * random_array(rng, weight.shape)
    op = ConvOperator(weight, layer.input_shape, **layer.kwargs)
    transpose = Col2im(op.geometry, op._w)
    batch = 1 + seed % 4
    Y = random_array(rng, (op.shape[0], batch), dtype)
    A = conv_matrix(weight.astype(np.complex128 if dtype == np.complex128 else np.float64),
                    layer.input_shape, **layer.kwargs)
    x = transpose(Y.reshape(*op.output_shape, batch))
    assert_close(x.reshape(-1, batch), A.T @ Y, layer, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert ran
    _adjoint_products._col2im_layout.cache_clear()


def test_implicit_gemm_reads_only_aligned_inputs(monkeypatch):
    """A contiguous input that is not aligned to its item size (a buffer at an odd offset)
    is copied before BLAS reads it (scipy's Cython BLAS does not check alignment)."""
    from sparseconv import _products

    seen = []
    implicit = _products._implicit
    monkeypatch.setattr(_products, "_implicit",
                        lambda geom, taps, xp: seen.append(xp.flags.aligned)
                        or implicit(geom, taps, xp))
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 32, 3, 3))
    op = ConvOperator(w, (32, 12, 12))  # unpadded: the input itself would be read
    n = op.shape[1] * 3
    X = np.frombuffer(bytearray(n * 8 + 1), np.float64, count=n, offset=1).reshape(-1, 3)
    X[...] = rng.standard_normal(X.shape)
    assert not X.flags.aligned and X.flags.c_contiguous
    np.testing.assert_allclose(op.matmat(X), conv_matrix(w, (32, 12, 12)) @ X, atol=1e-12)
    assert seen == [True]


def test_single_precision_is_not_charged_for_the_implicit_gemm():
    """float32 products run im2col: their memory estimate is im2col's (a float32 layer that
    fits under a limit is not refused for the implicit GEMM's larger buffers)."""
    import sparseconv
    from sparseconv._products import forward_bytes

    w = np.ones((64, 64, 1, 1), np.float32)
    op = ConvOperator(w, (64, 512, 512))
    assert forward_bytes(op.geometry, 1, 4) < forward_bytes(op.geometry, 1, 8) / 2
    previous = sparseconv.get_memory_limit()
    sparseconv.set_memory_limit(150 * 2**20)
    try:
        ConvOperator(w, (64, 512, 512))  # ~68 MiB a product in float32
    finally:
        sparseconv.set_memory_limit(previous)


@pytest.mark.parametrize("stride", [1, 2])
def test_implicit_gemm_falls_back_beyond_32_bit_sizes(stride, monkeypatch):
    """A padded channel longer than the 32-bit BLAS interface takes (here made small) runs
    im2col and col2im as without the implicit GEMM, with the same results, not an error."""
    from sparseconv import _adjoint_products, _products

    calls = []
    for module, name in ((_products, "_implicit"), (_adjoint_products, "_implicit_col2im")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *args, _f=original: calls.append(1) or _f(*args))
    monkeypatch.setattr(_products, "INT_MAX", 22 * 22 * 4 - 1)
    monkeypatch.setattr(_adjoint_products, "INT_MAX", 22 * 22 * 4 - 1)
    _adjoint_products._col2im_layout.cache_clear()
    rng = np.random.default_rng(4)
    w = rng.standard_normal((64, 32, 3, 3))  # 32 -> 64: the adjoint at stride 2 is col2im
    op = ConvOperator(w, (32, 20, 20), padding=1, stride=stride)
    M = conv_matrix(w, (32, 20, 20), padding=1, stride=stride)
    for batch, expected in ((2, True), (4, False)):  # 22*22*2 fits, 22*22*4 does not
        calls.clear()
        X, Y = rng.standard_normal((op.shape[1], batch)), rng.standard_normal((op.shape[0], batch))
        np.testing.assert_allclose(op.matmat(X), M @ X, atol=1e-12)
        np.testing.assert_allclose(op.rmatmat(Y), M.T @ Y, atol=1e-12)
        assert bool(calls) == expected, (batch, calls)
    _adjoint_products._col2im_layout.cache_clear()
