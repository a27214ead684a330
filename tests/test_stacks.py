"""A stack of convolutions in closed form: receptive field extents and composed kernels,
against scipy.signal, conv_matrix products and PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

from sparseconv import conv_matrix, conv_output_shape
from sparseconv.stacks import compose_kernels, receptive_field_size

from .conftest import assert_close, requires_torch, torch_conv


# -- receptive field extents -------------------------------------------------------------------
def test_receptive_field_size_cases():
    assert receptive_field_size([3, 3]) == 5
    assert receptive_field_size([(3, 3)] * 2) == (5, 5)
    assert receptive_field_size([3] * 3) == 7
    assert receptive_field_size([3, 3, 3], dilation=[1, 2, 4]) == 15
    assert receptive_field_size([2, 2, 2], stride=[2, 2, 2]) == 8
    assert receptive_field_size([(7, 1), (3, 3)], stride=[(2, 1), 1]) == (11, 3)


def test_receptive_field_size_rejects():
    with pytest.raises(ValueError, match="non-empty sequence"):
        receptive_field_size([])
    with pytest.raises(ValueError, match="one entry a layer"):
        receptive_field_size([3, 3], stride=[2])
    with pytest.raises(ValueError, match=r"kernel_size\[1\]"):
        receptive_field_size([3, 0])
    with pytest.raises(ValueError, match=r"dilation\[0\]"):
        receptive_field_size([(3, 3)], dilation=[(1, 1, 1)])


# -- kernel composition ------------------------------------------------------------------------
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
    with pytest.raises(ValueError, match=r"dilation\[1\]"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 2, 3)), dilation=[1, 0])
    with pytest.raises(ValueError, match=r"weights\[1\] must be"):
        compose_kernels(np.ones((2, 1, 3)), np.ones((1, 2, 3, 3)))
    with pytest.raises(TypeError, match=r"weights\[0\]"):
        compose_kernels([["a"]])
    assert math.prod(compose_kernels(np.ones((2, 1, 3, 3))).shape) == 18  # one kernel: itself
