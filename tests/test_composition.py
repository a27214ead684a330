"""Affine maps, composition and composed kernels against PyTorch and products of matrices."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import scipy.signal
import scipy.sparse as sp

import sparseconv as sc
from sparseconv import (
    AffineMap,
    MatrixTooLargeError,
    affine_conv,
    avg_pool_matrix,
    compose,
    compose_kernels,
    conv_matrix,
    conv_output_shape,
    receptive_field_size,
)

from ._oracles import F, assert_close, requires_torch, torch, torch_conv


@requires_torch
@pytest.mark.parametrize("seed", range(12))
def test_affine_network_matches_torch(seed):
    rng = np.random.default_rng(100 + seed)
    c0, c1, c2 = (int(c) for c in rng.integers(1, 4, 3))
    size = (int(rng.integers(6, 10)), int(rng.integers(6, 10)))
    w1, b1 = rng.standard_normal((c1, c0, 3, 3)), rng.standard_normal(c1)
    w2, b2 = rng.standard_normal((c2, c1, 2, 3)), rng.standard_normal(c2)
    stride = int(rng.integers(1, 3))
    layer1 = affine_conv(w1, b1, (c0, *size), padding=1, padding_mode="reflect")
    pool = avg_pool_matrix((c1, *size), 2, count_include_pad=False, padding=1)
    pooled = conv_output_shape(size, 2, stride=2, padding=1)
    layer2 = affine_conv(w2, b2, (c1, *pooled), stride=stride)
    net = compose(layer1, pool, layer2)
    assert isinstance(net, AffineMap)

    x = rng.standard_normal((3, c0, *size))  # a batch: the columns of the input
    t = torch.from_numpy
    h = F.conv2d(F.pad(t(x), (1, 1, 1, 1), mode="reflect"), t(w1), t(b1))
    h = F.avg_pool2d(h, 2, padding=1, count_include_pad=False)
    y = F.conv2d(h, t(w2), t(b2), stride=stride).numpy()
    config = dict(channels=(c0, c1, c2), size=size, stride=stride)
    assert_close(net(x.reshape(3, -1).T).T, y.reshape(3, -1), config)
    assert_close(net(x[0].ravel()), y[0].ravel(), config)
    # homogeneous coordinates: composition is the matrix product
    H = layer2.homogeneous() @ AffineMap(pool, np.zeros(pool.shape[0])).homogeneous() \
        @ layer1.homogeneous()
    assert_close(H, net.homogeneous(), config)
    assert_close((H @ np.append(x[0].ravel(), 1.0))[:-1], y[0].ravel(), config)
    assert_close(net.matrix, layer2.matrix @ pool @ layer1.matrix, config)


@requires_torch
@pytest.mark.parametrize("seed", range(8))
def test_affine_conv_bias_follows_layout_format_and_rows(seed):
    # a review: the bias was repeated in channels-first order whatever the layout, and
    # over the whole matrix's rows whatever rows= selected (off by the bias differences)
    rng = np.random.default_rng(700 + seed)
    ndim = 1 + seed % 3
    c_in, c_out = int(rng.integers(1, 4)), int(rng.integers(2, 5))
    size = tuple(int(n) for n in rng.integers(3, 6, ndim))
    w = rng.standard_normal((c_out, c_in, *(3,) * ndim))
    b = rng.permutation(10.0 ** np.arange(c_out))  # distinct per channel
    stride = int(rng.integers(1, 3))
    x = rng.standard_normal((c_in, *size))
    conv = getattr(F, f"conv{ndim}d")
    y = conv(torch.from_numpy(x[None]), torch.from_numpy(w), torch.from_numpy(b),
             stride=stride, padding=1)[0].numpy()
    config = dict(seed=seed, ndim=ndim, size=size)
    for layout, fmt in (("channels_first", "csr"), ("channels_last", "csr"),
                        ("channels_last", "bsr")):
        f = affine_conv(w, b, x.shape, stride=stride, padding=1, layout=layout, format=fmt)
        if layout == "channels_last":
            assert_close(f(np.moveaxis(x, 0, -1).ravel()), np.moveaxis(y, 0, -1).ravel(),
                         {**config, "layout": layout, "format": fmt})
        else:
            assert_close(f(x.ravel()), y.ravel(), config)
    first, stop = sorted(int(i) for i in rng.integers(0, y.size + 1, 2))
    f = affine_conv(w, b, x.shape, stride=stride, padding=1, rows=slice(first, stop))
    assert_close(f(x.ravel()), y.ravel()[first:stop], {**config, "rows": (first, stop)})


def test_compose_of_matrices_is_their_product_and_checks_shapes():
    rng = np.random.default_rng(3)
    A = conv_matrix(rng.standard_normal((2, 1, 3)), (1, 9))
    B = avg_pool_matrix((2, 7), 2, stride=1)
    C = compose(A, B)
    assert isinstance(C, sp.csr_array)
    assert_close(C, B @ A, "compose")
    with pytest.raises(ValueError, match=r"layers\[1\] has shape \(14, 9\) but receives .* 12"):
        compose(B, A)
    with pytest.raises(ValueError, match="at least one"):
        compose()
    with pytest.raises(TypeError, match="scipy.sparse"):
        compose(A, np.ones((3, 14)))
    with pytest.raises(ValueError, match="bias must have shape"):
        AffineMap(A, np.zeros(3))
    with pytest.raises(TypeError, match="matrix must be a 2-D scipy.sparse array"):
        AffineMap(A.toarray(), np.zeros(14))
    with pytest.raises(TypeError, match="matrix must be"):  # would drop the inner bias
        AffineMap(AffineMap(A, np.ones(14)), np.zeros(14))
    with pytest.raises(ValueError, match="bias must have shape"):
        affine_conv(np.ones((2, 1, 3)), [1.0, 2.0, 3.0], (1, 5))
    f = affine_conv(np.ones((2, 1, 3)), None, (1, 5))
    assert np.array_equal(f.bias, np.zeros(6))
    # f @ vector: numpy's "matmul: Input operand 0 does not have enough dimensions" before
    with pytest.raises(TypeError, match=r"f @ g composes f with g, .* got ndarray; apply f "
                                        r"to a vector or to columns with f\(x\)"):
        f @ np.ones(5)
    # a new user's trial: scipy's "expected 1-d or 2-d array", and numpy's "does not have
    # enough dimensions", of an object array
    from sparseconv import ConvOperator
    op = ConvOperator(np.ones((1, 2, 3)), (2, 5))
    with pytest.raises(TypeError, match=r"a LinearOperator composes with the map's linear "
                                        r"part, op @ f.matrix or f.matrix @ op"):
        f @ op
    with pytest.raises(TypeError, match=r"P @ f composes a scipy.sparse array P after the map "
                                        r"f, got ndarray: for a dense P, compose sp.csr_array"):
        np.ones((3, 6)) @ f
    P = sp.csr_array(np.ones((3, 6)))
    assert_close((P @ f).matrix, P @ f.matrix, "P @ f")  # a sparse P still composes


@pytest.mark.parametrize("seed", range(6))
def test_compose_of_operators_is_the_matrix_free_product(seed):
    """A new user's trial: compose(ConvOperator(...), A) was refused; it is scipy's product
    operator now, equal to the product of the matrices, with its adjoint (a dot test)."""
    from sparseconv import ConvOperator, ConvTransposeOperator, conv_transpose_matrix

    rng = np.random.default_rng(40 + seed)
    c0, c1, c2 = (int(c) for c in rng.integers(1, 4, 3))
    n = int(rng.integers(6, 10))
    w1 = rng.standard_normal((c1, c0, 3, 3))
    w2 = rng.standard_normal((c1, c2, 2, 2))  # a transposed convolution's (C_in, C_out, k)
    kw1 = dict(stride=int(rng.integers(1, 3)), padding=1,
               padding_mode=str(rng.choice(["zeros", "circular", "reflect"])))
    first = ConvOperator(w1, (c0, n, n), **kw1)
    m = first.shape[0] // c1
    side = math.isqrt(m)
    pool = avg_pool_matrix((c1, side, side), 2, stride=1)
    up = ConvTransposeOperator(w2, (c1, side - 1, side - 1), stride=2)
    dense = [conv_matrix(w1, (c0, n, n), **kw1).toarray(), pool.toarray(),
             conv_transpose_matrix(w2, (c1, side - 1, side - 1), stride=2).toarray()]
    op = compose(first, pool, up)
    assert op.shape == (dense[2].shape[0], dense[0].shape[1])
    x = rng.standard_normal(op.shape[1])
    y = rng.standard_normal(op.shape[0])
    assert_close(op @ x, dense[2] @ (dense[1] @ (dense[0] @ x)), "compose of operators")
    assert abs(y @ (op @ x) - (op.H @ y) @ x) <= 1e-12 * np.linalg.norm(x) * np.linalg.norm(
        y) * np.linalg.norm(dense[2] @ dense[1] @ dense[0], 2)
    assert_close(op @ np.eye(op.shape[1])[:, :3], (dense[2] @ dense[1] @ dense[0])[:, :3],
                 "columns")
    with pytest.raises(ValueError, match=r"layers\[1\] has shape .* but receives a vector"):
        compose(first, up)
    with pytest.raises(TypeError, match=r"layers\[0\] is an AffineMap and layers\[1\] a "
                                        r"LinearOperator"):
        compose(AffineMap(pool, np.zeros(pool.shape[0])), up)
    with pytest.raises(TypeError, match=r"layers\[1\] must be a 2-D scipy.sparse array, an "
                                        r"AffineMap or a LinearOperator, got ndarray"):
        compose(first, np.ones((3, 3)))


@pytest.mark.parametrize("seed", range(6))
def test_product_nnz_is_the_products_without_forming_it(seed, memory_limit):
    """The bound, and the exact count where the bound does not fit the limit, are scipy's."""
    from sparseconv._composition import product_nnz

    rng = np.random.default_rng(seed)
    m, k, n = rng.integers(1, 60, size=3)
    f = sp.random_array((m, k), density=rng.uniform(0, 0.5), format="csr", rng=rng)
    g = sp.csr_array(sp.random_array((k, n), density=rng.uniform(0, 0.5), rng=rng))
    truth = (f @ g).nnz  # random values: no entry cancels to zero
    assert product_nnz(f, g) >= truth  # within the default limit: the bound
    memory_limit(1)  # nothing fits: the exact count
    assert product_nnz(f, g) == truth


def test_compose_is_sized_before_the_product_is_formed(memory_limit):
    """(A new user's trial: compose formed a 291 MB product under a 100 MiB limit, 583 MB at
    its peak.)"""
    w = np.ones((8, 8, 3, 3))
    A = conv_matrix(w, (8, 32, 32), padding=1)
    affine = affine_conv(w, np.ones(8), (8, 32, 32), padding=1)
    product_bytes = 2 * (compose(A, A).nnz * 12 + (A.shape[0] + 1) * 4)
    memory_limit(product_bytes - 1)
    tracemalloc.start()
    try:
        for layers in [(A, A), (affine, affine), (A, affine)]:
            with pytest.raises(MatrixTooLargeError, match=r"product with (at least )?\d+ "
                                                          r"nonzeros would "
                                                          r"need .* more than the memory limit"):
                compose(*layers)
        with pytest.raises(MatrixTooLargeError, match="f @ g"):
            affine @ A
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < product_bytes / 4, peak  # refused having formed no product
    # int64 indices in an input make scipy's product int64 too: sized so (a review: 1.5x)
    wide = sp.csr_array(A)
    wide.indices, wide.indptr = wide.indices.astype(np.int64), wide.indptr.astype(np.int64)
    assert (wide @ wide).indices.dtype == np.int64
    with pytest.raises(MatrixTooLargeError):
        compose(wide, wide)
    memory_limit(product_bytes)
    assert compose(A, A).nnz == (A @ A).nnz  # and what fits is formed


def test_affine_map_repr_is_one_line():
    f = affine_conv(np.ones((2, 1, 3)), [3.0, 4.0], (1, 500), padding=1)
    assert repr(f) == "<AffineMap 1000 x 500: nnz 2996, dtype float64, bias norm 111.803>"
    with pytest.raises(ValueError, match="receives a vector of size"):
        f @ f


@pytest.mark.parametrize("seed", range(10))
def test_compose_kernels_single_channel_is_full_convolution(seed):
    rng = np.random.default_rng(400 + seed)
    ndim = 1 + seed % 3
    w1 = rng.standard_normal(tuple(rng.integers(1, 4, ndim)))
    w2 = rng.standard_normal(tuple(rng.integers(1, 4, ndim)))
    expected = scipy.signal.convolve(w1, w2, mode="full", method="direct")
    assert_close(compose_kernels(w1[None, None], w2[None, None])[0, 0], expected, ndim)


@requires_torch
@pytest.mark.parametrize("seed", range(40))
def test_composed_kernel_is_the_product_of_valid_convolutions(seed):
    """Stacks of 2-3 valid layers, with strides, dilations and groups from seed 10 on."""
    rng = np.random.default_rng(500 + seed)
    ndim = 1 + seed % 3
    depth = int(rng.integers(2, 4))
    plain = seed < 10
    groups = [1 if plain else int(rng.choice([1, 2])) for _ in range(depth)]
    channels = [int(rng.integers(1, 3)) * groups[0]]
    for i in range(depth):  # C_i must be divisible by the groups of the layers on both sides
        g = math.lcm(groups[i], groups[i + 1]) if i + 1 < depth else groups[i]
        channels.append(g * int(rng.integers(1, 3)))
    kernels = [tuple(int(k) for k in rng.integers(1, 4, ndim)) for _ in range(depth)]
    strides = [tuple(1 if plain else int(v) for v in rng.integers(1, 3, ndim))
               for _ in range(depth)]
    dilations = [tuple(1 if plain else int(v) for v in rng.integers(1, 3, ndim))
                 for _ in range(depth)]
    weights = [rng.standard_normal((channels[i + 1], channels[i] // g, *k))
               for i, (k, g) in enumerate(zip(kernels, groups))]
    extent = receptive_field_size(kernels, stride=strides, dilation=dilations)  # a tuple
    jump = np.prod(strides, axis=0)
    size = tuple(int(e + j * rng.integers(0, 3)) for e, j in zip(extent, jump))
    layers = [dict(stride=s, dilation=d, groups=g) for s, d, g in zip(strides, dilations, groups)]
    composed = compose_kernels(*weights, stride=strides, dilation=dilations, groups=groups)
    config = dict(channels=channels, kernels=kernels, layers=layers, size=size)
    assert composed.shape == (channels[-1], channels[0], *extent), config
    product, shape = None, (channels[0], *size)
    for w, kw in zip(weights, layers):
        A = conv_matrix(w, shape, **kw)
        product = A if product is None else A @ product
        shape = (w.shape[0], *conv_output_shape(shape[1:], w.shape[2:], stride=kw["stride"],
                                                dilation=kw["dilation"]))
    together = dict(stride=tuple(int(j) for j in jump))
    assert_close(conv_matrix(composed, (channels[0], *size), **together), product, config)
    x = rng.standard_normal((1, channels[0], *size))
    y = x
    for w, kw in zip(weights, layers):
        y = torch_conv(y, w, **kw)
    assert_close(torch_conv(x, composed, **together), y, config)


def test_compose_kernels_rejects():
    with pytest.raises(ValueError, match="at least one"):
        compose_kernels()
    with pytest.raises(ValueError, match=r"weights\[1\].shape=\(1, 3, 3\) with groups\[1\]=1"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 3, 3)))
    with pytest.raises(ValueError, match=r"groups\[0\]=2 must read"):
        compose_kernels(np.ones((3, 1, 3)), groups=[2])
    with pytest.raises(ValueError, match="stride must have one entry a layer"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 2, 3)), stride=[2])
    with pytest.raises(ValueError, match=r"^groups\[0\] must be a positive integer, got 0$"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 2, 3)), groups=[0, 1])
    with pytest.raises(ValueError, match=r"dilation\[1\]"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 2, 3)), dilation=[1, 0])
    with pytest.raises(ValueError, match=r"weights\[1\] must have as many spatial axes as "
                                         r"weights\[0\] \(shape \(2, 1, 3\)\)"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"weights\[0\] must be a non-empty \(C_out, "
                                         r"C_in/groups, \*kernel_size\) array, got shape \(3,\)$"):
        compose_kernels(np.ones(3))
    with pytest.raises(TypeError, match=r"weights\[0\]"):
        compose_kernels([["a"]])
    # (a new user's trial: the list of two (1, 1, 2) weights was stacked into one (2, 1, 1, 2))
    with pytest.raises(TypeError, match=r"weights\[0\] is a list of 2 weight arrays: pass the "
                                        r"weights as separate arguments"):
        compose_kernels([np.ones((1, 1, 2)), np.ones((1, 1, 2))])
    assert compose_kernels([[[1.0, 2.0]]]).shape == (1, 1, 2)  # a nested list is one weight
    assert math.prod(compose_kernels(np.ones((2, 1, 3, 3))).shape) == 18  # one kernel: itself


def test_affine_map_names_a_wrong_input_shape():
    """A new user's trial: scipy's "matmul: dimension mismatch" named neither x nor the shapes
    the map takes."""
    f = affine_conv(np.ones((2, 3, 3, 3)), [1.0, 2.0], (3, 8, 8), padding=1)
    for bad in (np.ones(5), np.ones((5, 2)), np.ones((192, 2, 1)), np.float64(1.0)):
        with pytest.raises(ValueError, match=r"x must have shape \(192,\) or \(192, k\)"):
            f(bad)
    assert f(np.ones((192, 3))).shape == (128, 3)


def test_an_affine_map_keeps_private_read_only_copies():
    """(A new user's trial: the map changed with the caller's arrays, and its bias could be
    written to, though the class is frozen.)"""
    A = conv_matrix(np.ones((1, 1, 2)), (1, 3))
    b = np.zeros(2)
    f = AffineMap(A, b)
    b[0] = 5.0
    A.data[:] = 7.0
    np.testing.assert_array_equal(f(np.ones(3)), [2.0, 2.0])
    for array in (f.bias, f.matrix.data, f.matrix.indices, f.matrix.indptr):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    g = affine_conv(np.ones((1, 1, 2)), [1.0], (1, 3))
    with pytest.raises(ValueError, match="read-only"):
        g.bias[:] = -1.0
    # products and compose make their own arrays, read-only too (a review: a sparse result
    # was let through this check, which then held whatever the code did)
    for h in (g @ sp.eye_array(3), compose(g, sp.eye_array(2)), sp.eye_array(2) @ g):
        assert isinstance(h, AffineMap), type(h)
        for array in (h.bias, h.matrix.data, h.matrix.indices, h.matrix.indptr):
            assert not array.flags.writeable


def test_a_sparse_matrix_after_an_affine_map():
    """``P @ f`` is ``x -> P (A x + b)`` (a new user's trial: only compose(f, P) worked)."""
    rng = np.random.default_rng(3)
    f = affine_conv(rng.standard_normal((2, 1, 3)), rng.standard_normal(2), (1, 6),
                    padding=1)
    P = avg_pool_matrix((2, 6), 2)
    x = rng.standard_normal(6)
    h = P @ f
    assert isinstance(h, AffineMap) and h.shape == (6, 6)
    assert_close(h(x), P @ f(x), "P @ f")
    assert_close(h(x), compose(f, P)(x), "compose")
    with pytest.raises(ValueError, match="f in f @ g has shape"):
        avg_pool_matrix((2, 4), 2) @ f


def test_a_product_far_over_the_limit_is_refused_on_a_lower_bound_of_its_entries(
        memory_limit):
    """(A memory audit: the exact count of scipy's first pass took 6-10 s before refusing a
    product hundreds of times over the limit; a row of the product holds at least the
    longest row of g it reads, counted in O(f.nnz).)"""
    from sparseconv._composition import _nnz_lower_bound

    rng = np.random.default_rng(11)
    for _ in range(200):  # never above scipy's count of the product's entries
        m, k, n = rng.integers(1, 30, 3)
        f = sp.random_array((m, k), density=rng.random() * 0.5, rng=rng, format="csr")
        g = sp.random_array((k, n), density=rng.random() * 0.5, rng=rng, format="csr")
        assert _nnz_lower_bound(f, g) <= (f @ g).nnz
    A = conv_matrix(np.ones((4, 4, 3, 3)), (4, 32, 32), padding=1)
    assert _nnz_lower_bound(A, A) == 4096 * 4 * 9  # every row reads a full row of A
    memory_limit(2**20)
    with pytest.raises(MatrixTooLargeError, match="product with at least 147456 nonzeros"):
        compose(A, A)


@requires_torch
def test_affine_conv_with_dilation_is_torchs_layer_with_bias():
    """A mutant this catches: _composition.py: _GEOMETRY_ARGUMENTS without "dilation" (the
    bias was sized for the undilated layer's outputs: a ValueError on a valid layer).
    Checks affine_conv(dilation=2, stride=2) against torch's conv2d with its bias."""
    rng = np.random.default_rng(10)
    w, b = rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    x = rng.standard_normal((2, 9, 8))
    f = sc.affine_conv(w, b, x.shape, dilation=2, stride=(2, 1), padding=1)
    ref = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), torch.from_numpy(b),
                   dilation=2, stride=(2, 1), padding=1)[0].numpy()
    np.testing.assert_allclose(f(x.ravel()), ref.ravel(), rtol=1e-12, atol=1e-12)


@requires_torch
def test_affine_conv_periodic_padding_is_torchs_circular_layer():
    """A mutant this catches: _composition.py: _GEOMETRY_ARGUMENTS without "padding_mode"
    (padding=None, the periodic layer, was sized as a zero-padded one and refused).
    Checks affine_conv(padding=None, padding_mode="circular") against torch."""
    rng = np.random.default_rng(11)
    w, b = rng.standard_normal((2, 1, 3)), rng.standard_normal(2)
    x = rng.standard_normal((1, 7))
    f = sc.affine_conv(w, b, x.shape, padding=None, padding_mode="circular")
    xt = F.pad(torch.from_numpy(x)[None], (1, 1), mode="circular")
    ref = F.conv1d(xt, torch.from_numpy(w), torch.from_numpy(b))[0].numpy()
    np.testing.assert_allclose(f(x.ravel()), ref.ravel(), rtol=1e-12, atol=1e-12)


def test_product_nnz_bound_never_exceeds_the_products_size():
    """A mutant this catches: _composition.py: ``bound = min(reads, f.shape[0] *
    g.shape[1])`` -> ``bound = reads`` (a count of entries larger than the dense product).
    A 1 x n row of ones times a dense n x n matrix reads n * n entries into n places."""
    from sparseconv._composition import product_nnz

    f = sp.csr_array(np.ones((1, 40)))
    g = sp.csr_array(np.ones((40, 40)))
    assert (f @ g).nnz <= product_nnz(f, g) <= 40


def test_nnz_lower_bound_counts_the_last_rows_of_f():
    """A mutant this catches: _composition.py: ``range(0, starts.size, step)`` ->
    ``range(0, starts.size - 1, step)`` (the last chunk of rows of ``f`` was never read: a
    one-row ``f`` had a lower bound of 0, and a product far over the limit was counted
    exactly before its refusal). The bound of a row reading rows of lengths 3 and 5 is 5."""
    from sparseconv._composition import _nnz_lower_bound

    g = sp.csr_array(np.array([[1.0, 1.0, 1.0, 0.0, 0.0], [1.0] * 5]))
    f = sp.csr_array(np.array([[2.0, 3.0]]))
    assert _nnz_lower_bound(f, g) == 5 == (f @ g).nnz
    f2 = sp.csr_array(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    assert _nnz_lower_bound(f2, g) == 3


def test_homogeneous_matrix_keeps_the_maps_dtype():
    """A mutant this catches: _composition.py: the corner ``np.ones((1, 1),
    dtype=self.bias.dtype)`` -> ``np.ones((1, 1))`` (a float32 map's homogeneous matrix came
    out float64)."""
    f = sc.affine_conv(np.ones((1, 1, 2), np.float32), np.array([1.0], np.float32), (1, 3))
    H = f.homogeneous()
    assert H.dtype == np.float32
    np.testing.assert_array_equal(H.toarray(), np.array(
        [[1, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]], np.float32))


def test_compose_of_one_matrix_is_a_copy():
    """A review: ``compose(A)`` of one CSR array shared its arrays, so writing the result
    changed ``A``."""
    a = sc.conv_matrix(np.ones((1, 1, 3)), (1, 5))
    c = sc.compose(a)
    assert (c != a).nnz == 0
    c.data[0] = 42.0
    assert a.data[0] == 1.0
