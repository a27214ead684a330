"""The channels-last layout: matrices equal to the permuted channels-first ones, BSR blocks
built directly, and the operators against PyTorch in ``(*spatial, C)`` order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc
from sparseconv import (
    ConvOperator,
    ConvTransposeOperator,
    MatrixTooLargeError,
    conv_matrix,
    conv_transpose_matrix,
    im2col_matrix,
    pad_matrix,
    set_memory_limit,
)

from ._oracles import (
    assert_close,
    per_side,
    random_array,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch_conv,
    torch_conv_transpose,
)


def channels_last_order(shape):
    """Flat channels-first index of each channels-last position: ``P`` as a gather."""
    return np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), 0, -1).ravel()


def permuted(A, out_shape, in_shape):
    """``P_out A P_in^T``: the channels-first matrix with rows and columns reordered."""
    return A.toarray()[np.ix_(channels_last_order(out_shape), channels_last_order(in_shape))]


def assert_canonical_bsr(B, blocksize, config):
    assert B.format == "bsr" and B.blocksize == blocksize, config
    assert B.data.shape[1:] == blocksize and B.data.shape[0] == B.indices.size, config
    assert B.has_canonical_format, config
    B.check_format(full_check=True)
    for r in range(B.indptr.size - 1):  # sorted, distinct block columns in every block row
        cols = B.indices[B.indptr[r]:B.indptr[r + 1]]
        assert np.all(np.diff(cols) > 0), config


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@pytest.mark.parametrize("seed", range(60))
def test_channels_last_matrix_is_the_permuted_matrix(seed):
    rng = np.random.default_rng(7000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - 2 * (seed % 3))
    kwargs = dict(layer.kwargs, flip=bool(seed % 5 == 0))
    A = conv_matrix(layer.weight, layer.input_shape, **kwargs)
    out_shape = (layer.weight.shape[0], *ConvOperator(layer.weight, layer.input_shape,
                                                       **kwargs).output_shape[1:])
    expected = permuted(A, out_shape, layer.input_shape)
    config = (layer, kwargs)
    for format in ("csr", "csc", "coo"):
        M = conv_matrix(layer.weight, layer.input_shape, format=format, layout="channels_last",
                        **kwargs)
        assert M.format == format and M.nnz == A.nnz, config
        assert_close(M, expected, config, rtol=0)
    B = conv_matrix(layer.weight, layer.input_shape, format="bsr", layout="channels_last",
                    **kwargs)
    groups = kwargs["groups"]
    tile = (layer.weight.shape[0] // groups, layer.weight.shape[1])
    assert_canonical_bsr(B, tile, config)
    assert B.data.size == A.nnz, config  # one group's tile a block: no stored zeros
    assert_close(B, expected, config, rtol=0)
    blocksize = (int(rng.choice(divisors(tile[0]))), int(rng.choice(divisors(tile[1]))))
    C = conv_matrix(layer.weight, layer.input_shape, format="bsr", layout="channels_last",
                    blocksize=blocksize, **kwargs)
    assert_canonical_bsr(C, blocksize, (config, blocksize))
    assert_close(C, expected, (config, blocksize), rtol=0)


@pytest.mark.parametrize("seed", range(30))
def test_channels_last_transpose_matrix_is_the_permuted_matrix(seed):
    rng = np.random.default_rng(7100 + seed)
    weight, input_shape, kwargs = random_transpose_layer(rng)
    T = conv_transpose_matrix(weight, input_shape, **kwargs)
    out_shape = ConvTransposeOperator(weight, input_shape, **kwargs).output_shape
    expected = permuted(T, out_shape, input_shape)
    config = (weight.shape, input_shape, kwargs)
    for format in ("csr", "csc", "coo"):
        M = conv_transpose_matrix(weight, input_shape, format=format, layout="channels_last",
                                  **kwargs)
        assert M.format == format, config
        assert_close(M, expected, config, rtol=0)
    tile = (weight.shape[1], weight.shape[0] // kwargs["groups"])  # this layer's (out, in)
    B = conv_transpose_matrix(weight, input_shape, format="bsr", layout="channels_last",
                              **kwargs)
    assert_canonical_bsr(B, tile, config)
    assert_close(B, expected, config, rtol=0)
    blocksize = (int(rng.choice(divisors(tile[0]))), int(rng.choice(divisors(tile[1]))))
    C = conv_transpose_matrix(weight, input_shape, format="bsr", layout="channels_last",
                              blocksize=blocksize, **kwargs)
    assert_canonical_bsr(C, blocksize, (config, blocksize))
    assert_close(C, expected, (config, blocksize), rtol=0)


def test_channels_last_bsr_of_a_wide_layer_has_channel_blocks():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 6, 3, 3))
    B = conv_matrix(w, (6, 5, 5), padding=1, format="bsr", layout="channels_last")
    assert B.blocksize == (8, 6) and B.data.shape == (B.nnz // 48, 8, 6)
    # the block linking output pixel (1, 1) to input pixel (0, 0) is tap (0, 0) of the weight
    row, col = 1 * 5 + 1, 0
    found = B.indices[B.indptr[row]:B.indptr[row + 1]].tolist().index(col)
    assert np.array_equal(B.data[B.indptr[row] + found], w[:, :, 0, 0])


def test_blocksize_that_does_not_divide_is_refused_by_name():
    w = np.ones((4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"blocksize=\(3, 2\) must divide .*\(4, 2\)"):
        conv_matrix(w, (2, 5, 5), format="bsr", layout="channels_last", blocksize=(3, 2))
    with pytest.raises(ValueError, match=r"blocksize=\(4, 4\) must divide"):
        conv_matrix(np.ones((4, 1, 3, 3)), (2, 5, 5), groups=2, format="bsr",
                    layout="channels_last", blocksize=(4, 4))  # across groups: refused
    with pytest.raises(ValueError, match=r"blocksize=\(2, 2\) applies to format='bsr' only"):
        conv_matrix(w, (2, 5, 5), blocksize=(2, 2))
    with pytest.raises(ValueError, match=r"blocksize=\(7, 1\) must divide the shape"):
        conv_matrix(w, (2, 5, 5), format="bsr", blocksize=(7, 1))


def test_channels_first_bsr_honours_blocksize():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 2, 3, 3))
    A = conv_matrix(w, (2, 6, 6), padding=1)
    B = conv_matrix(w, (2, 6, 6), padding=1, format="bsr", blocksize=(4, 3))
    assert B.blocksize == (4, 3)
    assert_close(B, A, "channels_first bsr", rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_channels_last_dtypes(dtype):
    rng = np.random.default_rng(2)
    w = random_array(rng, (4, 2, 3, 3), dtype)
    A = conv_matrix(w, (2, 5, 4), padding=(1, 2), padding_mode="circular")
    B = conv_matrix(w, (2, 5, 4), padding=(1, 2), padding_mode="circular", format="bsr",
                    layout="channels_last")
    assert B.dtype == A.dtype
    assert_close(B, permuted(A, (4, 5, 6), (2, 5, 4)), dtype, rtol=0)


@requires_torch
@pytest.mark.parametrize("seed", range(24))
def test_channels_last_operators_match_torch(seed):
    rng = np.random.default_rng(7200 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - 2 * (seed % 3))
    op = ConvOperator(layer.weight, layer.input_shape, layout="channels_last", **layer.kwargs)
    x = random_array(rng, (2, *layer.input_shape))
    y = torch_conv(x, layer.weight, **layer.kwargs)
    x_last, y_last = np.moveaxis(x, 1, -1), np.moveaxis(y, 1, -1)
    assert op.dims == x_last.shape[1:] and op.dimsd == y_last.shape[1:], layer
    assert_close(op.apply(x_last), y_last, layer)
    assert_close(op @ x_last[0].ravel(), y_last[0].ravel(), layer)
    B = op.tosparse("bsr")
    assert_close(B @ x_last.reshape(2, -1).T, y_last.reshape(2, -1).T, layer)
    z = random_array(rng, op.shape[0])
    assert_close(op.rmatvec(z), B.T @ z, layer)

    weight, input_shape, kwargs = random_transpose_layer(rng)
    T = ConvTransposeOperator(weight, input_shape, layout="channels_last", **kwargs)
    x = random_array(rng, (1, *input_shape))
    y = np.moveaxis(torch_conv_transpose(x, weight, **kwargs), 1, -1)
    assert_close(T.apply(np.moveaxis(x, 1, -1)), y, kwargs)
    assert_close(T.tosparse("bsr") @ np.moveaxis(x, 1, -1).ravel(), y.ravel(), kwargs)


@pytest.mark.parametrize("seed", range(12))
def test_channels_last_selection_matrices_are_permuted(seed):
    rng = np.random.default_rng(7300 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7 - 2 * (seed % 3))
    c, kernel = layer.input_shape[0], layer.weight.shape[2:]
    kw = {k: v for k, v in layer.kwargs.items() if k != "groups"}
    P = im2col_matrix(layer.input_shape, kernel, **kw)
    L = P.shape[0] // (c * int(np.prod(kernel)))
    rows = (c, int(np.prod(kernel)), L)  # channels-first rows (c, t, o); channels-last (o, t, c)
    expected = P.toarray()[np.ix_(np.transpose(np.arange(P.shape[0]).reshape(rows)).ravel(),
                                  channels_last_order(layer.input_shape))]
    Q = im2col_matrix(layer.input_shape, kernel, layout="channels_last", **kw)
    assert_close(Q, expected, layer, rtol=0)
    # channels-last im2col then the (C_out, *kernel, C_in) weight matrix is the NHWC layer
    x = random_array(rng, layer.input_shape)
    if layer.kwargs["groups"] == 1 and "flip" not in layer.kwargs:
        w = np.moveaxis(layer.weight, 1, -1).reshape(layer.weight.shape[0], -1)
        y = (Q @ np.moveaxis(x, 0, -1).ravel()).reshape(L, -1) @ w.T
        A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
        assert_close(y.T.ravel(), A @ x.ravel(), layer)
    pad = kw["padding"]
    Pf = pad_matrix(layer.input_shape, pad, kw["padding_mode"], kernel_size=kernel,
                    dilation=kw["dilation"])
    Pl = pad_matrix(layer.input_shape, pad, kw["padding_mode"], kernel_size=kernel,
                    dilation=kw["dilation"], layout="channels_last")
    pairs = per_side(pad, kernel, (kw["dilation"],) * len(kernel)
                     if isinstance(kw["dilation"], int) else kw["dilation"])
    padded = (c, *(n + lo + hi for n, (lo, hi) in zip(layer.input_shape[1:], pairs)))
    assert_close(Pl, permuted(Pf, padded, layer.input_shape), layer, rtol=0)


_BUILDERS = [  # (name, builder of the matrix in a layout, its input and output shapes)
    ("avg_pool_matrix", lambda **kw: sc.avg_pool_matrix((3, 4, 6), 2, 1, 1, **kw),
     (3, 4, 6), (3, 5, 7)),
    ("adaptive_avg_pool_matrix", lambda **kw: sc.adaptive_avg_pool_matrix(
        (3, 4, 6), (3, 2), **kw), (3, 4, 6), (3, 3, 2)),
    ("interpolate_matrix", lambda **kw: sc.interpolate_matrix(
        (3, 4, 6), (5, 7), mode="bilinear", **kw), (3, 4, 6), (3, 5, 7)),
    ("interpolate_matrix, one channel", lambda **kw: sc.interpolate_matrix(
        (1, 4, 6), scale_factor=2, **kw), (1, 4, 6), (1, 8, 12)),
    ("pixel_shuffle_matrix", lambda **kw: sc.pixel_shuffle_matrix((12, 4, 6), 2, **kw),
     (12, 4, 6), (3, 8, 12)),
    ("pixel_unshuffle_matrix", lambda **kw: sc.pixel_unshuffle_matrix((3, 4, 6), 2, **kw),
     (3, 4, 6), (12, 2, 3)),
    ("stride_matrix", lambda **kw: sc.stride_matrix((3, 4, 6), (2, 3), **kw),
     (3, 4, 6), (3, 2, 2)),
    ("conv1x1_matrix", lambda **kw: sc.conv1x1_matrix(
        np.arange(1.0, 7.0).reshape(2, 3, 1, 1), (4, 6), **kw), (3, 4, 6), (2, 4, 6)),
    ("conv1x1_matrix, groups", lambda **kw: sc.conv1x1_matrix(
        np.arange(1.0, 5.0).reshape(4, 1), (4, 6), groups=2, **kw), (2, 4, 6), (4, 4, 6))]


@pytest.mark.parametrize("name, build, in_shape, out_shape", _BUILDERS,
                         ids=[b[0] for b in _BUILDERS])
@pytest.mark.parametrize("fmt", ["csr", "coo", "bsr"])
def test_every_builder_takes_the_channels_last_layout(name, build, in_shape, out_shape, fmt):
    """A new user's trial: the pooling, resampling, shuffle, stride and 1x1 builders had no
    ``layout``, so a channels-last convolution composed with them gave wrong numbers with
    no error. Each takes ``layout="channels_last"`` now: its channels-first matrix with rows
    and columns permuted (a dense oracle), in the format asked for, and refuses a bad layout
    by name."""
    first = build()
    assert first.shape == (int(np.prod(out_shape)), int(np.prod(in_shape))), name
    last = build(layout="channels_last", format=fmt)
    assert last.format == fmt, name
    assert_close(last, permuted(first, out_shape, in_shape), name, rtol=0)
    with pytest.raises(ValueError, match="layout must be one of"):
        build(layout="NHWC")


@requires_torch
def test_a_channels_last_chain_composes_as_torch_runs_it():
    """The trial's chain: a channels-last convolution then average pooling and a bilinear
    upsampling, composed, against torch on the channels-last vectors."""
    from ._oracles import F, torch

    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 3))
    x = rng.standard_normal((3, 8, 8))
    chain = sc.compose(  # first applied first
        conv_matrix(w, (3, 8, 8), padding=1, layout="channels_last"),
        sc.avg_pool_matrix((4, 8, 8), 2, layout="channels_last"),
        sc.interpolate_matrix((4, 4, 4), (6, 6), mode="bilinear", layout="channels_last"))
    expected = F.interpolate(F.avg_pool2d(F.conv2d(torch.from_numpy(x[None]),
                                                   torch.from_numpy(w), padding=1), 2),
                             size=(6, 6), mode="bilinear")[0].numpy()
    assert_close(chain @ np.moveaxis(x, 0, -1).ravel(), np.moveaxis(expected, 0, -1).ravel(),
                 "chain")


def test_layout_is_validated_by_name():
    w = np.ones((2, 2, 3, 3))
    for call in (lambda v: conv_matrix(w, (2, 5, 5), layout=v),
                 lambda v: ConvOperator(w, (2, 5, 5), layout=v),
                 lambda v: im2col_matrix((2, 5, 5), 3, layout=v)):
        with pytest.raises(ValueError, match="layout must be one of"):
            call("NHWC")
        with pytest.raises(TypeError, match="layout must be one of"):
            call(None)


def test_channels_last_sizes_against_the_memory_limit():
    old = set_memory_limit(200_000)
    try:
        with pytest.raises(MatrixTooLargeError, match="channels_last"):
            conv_matrix(np.ones((16, 16, 3, 3)), (16, 64, 64), padding=1, format="bsr",
                        layout="channels_last")
        assert sp.issparse(conv_matrix(np.ones((2, 2, 3, 3)), (2, 8, 8), format="bsr",
                                       layout="channels_last"))
    finally:
        set_memory_limit(old)


def test_channels_last_blocksize_must_divide_both_sides_of_the_tile():
    """A mutant this catches: _layout.py: ``tile[0] % R or tile[1] % C`` -> ``tile[0] % R``:
    a (2, 4) block on the (4, 6) channel tile would straddle channels and is refused by
    name; (2, 3) divides it and gives the permuted channels-first matrix."""
    w = np.random.default_rng(0).standard_normal((4, 6, 3))
    with pytest.raises(ValueError, match="blocksize"):
        sc.conv_matrix(w, (6, 5), padding=1, layout="channels_last", format="bsr",
                       blocksize=(2, 4))
    A = sc.conv_matrix(w, (6, 5), padding=1, layout="channels_last", format="bsr",
                       blocksize=(2, 3))
    dense = sc.conv_matrix(w, (6, 5), padding=1).toarray()
    rows = np.arange(4 * 5).reshape(4, 5).T.ravel()  # (C, L) -> (L, C) order, by hand
    cols = np.arange(6 * 5).reshape(6, 5).T.ravel()
    assert A.blocksize == (2, 3)
    np.testing.assert_array_equal(A.toarray(), dense[np.ix_(rows, cols)])
