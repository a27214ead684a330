"""Pooling, affine layers, composition and receptive fields against PyTorch and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparseconv import conv_matrix, conv_output_shape
from sparseconv.algebra import AffineMap, affine_conv, avg_pool_matrix, compose, receptive_field
from sparseconv.stacks import receptive_field_size

from .conftest import F, assert_close, requires_torch, torch


# -- average pooling ---------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("seed", range(120))
def test_avg_pool_matrix_matches_torch(seed):
    """Random pools, half of them in ceil mode (where a last window may be cut)."""
    rng = np.random.default_rng(seed)
    ndim = 1 + seed % 3
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))
    stride = None if rng.random() < 0.3 else tuple(int(s) for s in rng.integers(1, 4, ndim))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    # the window must fit the padded input; avg_pool3d (only) also wants it to fit the input
    size = tuple(int(rng.integers(k if ndim == 3 else max(1, k - 2 * p), 9 - ndim))
                 for k, p in zip(kernel, padding))
    channels = int(rng.integers(1, 4))
    kwargs = dict(stride=stride, padding=padding, ceil_mode=bool(seed % 4 >= 2),
                  count_include_pad=bool(seed % 2))
    if ndim > 1 and seed % 5 == 0:  # avg_pool1d has no divisor_override
        kwargs["divisor_override"] = int(rng.integers(1, 10))
    A = avg_pool_matrix((channels, *size), kernel, **kwargs)
    x = rng.standard_normal((1, channels, *size))
    pool = getattr(F, f"avg_pool{ndim}d")
    y = pool(torch.from_numpy(x), kernel, **kwargs).numpy()
    config = dict(kernel_size=kernel, size=size, **kwargs)
    assert A.shape == (y.size, x.size), config
    assert_close(A @ x.ravel(), y.ravel(), config)


@requires_torch
def test_avg_pool_matrix_float32():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    A = avg_pool_matrix((2, 6, 6), 3, stride=2, padding=1, dtype=np.float32, format="csc")
    assert A.dtype == np.float32 and A.format == "csc"
    y = F.avg_pool2d(torch.from_numpy(x), 3, stride=2, padding=1).numpy()
    assert_close(A @ x.ravel(), y.ravel(), "float32", rtol=1e-6)


BAD_POOL = [
    (dict(padding=2), ValueError, "at most half of kernel_size"),
    (dict(padding=((0, 2), (0, 0))), ValueError, "at most half"),
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size"),
    (dict(stride=0), ValueError, "stride"),
    (dict(count_include_pad=1), TypeError, "count_include_pad"),
    (dict(ceil_mode="yes"), TypeError, "ceil_mode"),
    (dict(divisor_override=0), ValueError, "divisor_override"),
    (dict(input_shape=(2, 1, 1)), ValueError, "kernel_size"),
    (dict(input_shape=(2,)), ValueError, "input_shape"),
    (dict(format="dense"), ValueError, "format"),
]


@pytest.mark.parametrize("bad, error, match", BAD_POOL, ids=[str(b[0]) for b in BAD_POOL])
def test_avg_pool_matrix_rejects(bad, error, match):
    args = dict(input_shape=(2, 6, 6), kernel_size=3)
    args.update(bad)
    with pytest.raises(error, match=match):
        avg_pool_matrix(args.pop("input_shape"), args.pop("kernel_size"), **args)


# -- affine layers and composition -------------------------------------------------------------
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
    with pytest.raises(ValueError, match="receives a vector of size"):
        f @ f


# -- receptive fields --------------------------------------------------------------------------
def test_receptive_field_cases():
    ones = np.ones((1, 1, 3, 3))
    A = conv_matrix(ones, (1, 9, 9), padding=1)
    field = receptive_field([A, A], (1, 9, 9), (0, 4, 4), output_shape=(1, 9, 9))
    expected = np.zeros((1, 9, 9), bool)
    expected[0, 2:7, 2:7] = True  # stacked 3x3 -> a full 5x5 box
    assert np.array_equal(field, expected)
    # a dilated layer's field has holes: exactly the dilated taps
    D = conv_matrix(ones, (1, 9, 9), dilation=2)
    field = receptive_field([D], (1, 9, 9), 0)
    assert np.array_equal(np.argwhere(field[0]), [[i, j] for i in (0, 2, 4) for j in (0, 2, 4)])
    # a field near a zero-padded border is cut
    assert receptive_field([A, A], (1, 9, 9), 0).sum() == 9
    # structural: a stored entry is a connection even where the weight is zero
    Z = conv_matrix(np.array([[[1.0, 0.0, 1.0]]]), (1, 5))
    assert receptive_field([Z], (1, 5), 0).tolist() == [[True, True, True, False, False]]


def torch_field(weights, strides, dilations, x_shape, unit):
    """The input positions an output unit depends on, by PyTorch's autograd: with positive
    weights, its gradient is positive exactly there."""
    x = torch.zeros((1, *x_shape), dtype=torch.float64, requires_grad=True)
    h = x
    for w, s, d in zip(weights, strides, dilations):
        conv = getattr(F, f"conv{w.ndim - 2}d")
        h = conv(h, torch.from_numpy(w), stride=s, dilation=d)
    h[(0, *unit)].backward()
    return x.grad[0].numpy() > 0


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_receptive_field_is_the_autograd_support_and_the_closed_form(seed):
    rng = np.random.default_rng(300 + seed)
    ndim = 1 + seed % 2
    depth = int(rng.integers(1, 4))
    kernels = [tuple(int(k) for k in rng.integers(1, 4, ndim)) for _ in range(depth)]
    strides = [tuple(int(s) for s in rng.integers(1, 3, ndim)) for _ in range(depth)]
    dilations = [tuple(int(d) for d in rng.integers(1, 3, ndim)) for _ in range(depth)]
    extent = receptive_field_size(kernels, strides, dilations)
    size = tuple(e + int(rng.integers(0, 4)) for e in extent)
    channels = [int(c) for c in rng.integers(1, 3, depth + 1)]
    weights, matrices, shape = [], [], (channels[0], *size)
    for i, (k, s, d) in enumerate(zip(kernels, strides, dilations)):
        w = np.abs(rng.standard_normal((channels[i + 1], channels[i], *k))) + 0.1
        weights.append(w)
        matrices.append(conv_matrix(w, shape, stride=s, dilation=d))
        shape = (channels[i + 1], *conv_output_shape(shape[1:], k, stride=s, dilation=d))
    unit = tuple(int(rng.integers(0, n)) for n in shape)
    field = receptive_field(matrices, (channels[0], *size), unit, output_shape=shape)
    config = dict(kernels=kernels, strides=strides, dilations=dilations, size=size, unit=unit)
    assert np.array_equal(field, torch_field(weights, strides, dilations, field.shape, unit)), \
        config
    # "valid" layers: every unit sees a whole field, whose extent is the closed form
    hit = np.argwhere(field.any(axis=0))
    assert tuple(hit.max(axis=0) - hit.min(axis=0) + 1) == tuple(extent), config


BAD_FIELD = [
    (dict(layers=[]), ValueError, "at least one layer"),
    (dict(layers=[np.eye(4)]), TypeError, "scipy.sparse"),
    (dict(input_shape=(1, 5)), ValueError, "layers\\[0\\] has shape"),
    (dict(output_index=4), ValueError, "out of range"),
    (dict(output_index=(0, 3)), ValueError, "output_shape given"),
    (dict(output_index=(0, 4), output_shape=(1, 4)), ValueError, "out of range"),
    (dict(output_index=(0, 1), output_shape=(2, 4)), ValueError, "units"),
]


@pytest.mark.parametrize("bad, error, match", BAD_FIELD, ids=[str(b[0]) for b in BAD_FIELD])
def test_receptive_field_rejects(bad, error, match):
    args = dict(layers=[sp.eye_array(4)], input_shape=(1, 4), output_index=0)
    args.update(bad)
    with pytest.raises(error, match=match):
        receptive_field(args.pop("layers"), args.pop("input_shape"), args.pop("output_index"),
                        **args)
