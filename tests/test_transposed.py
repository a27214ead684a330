"""Dilation and the transposed convolution as direct convolutions, against PyTorch and
conv_transpose_matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv
from sparseconv import (
    conv_matrix,
    conv_transpose_matrix,
    dilate_kernel,
    fractionally_strided,
    transpose_kernel,
)

from ._oracles import (
    F,
    assert_close,
    requires_torch,
    torch,
    torch_conv,
    torch_conv_transpose,
)


# -- dilation ----------------------------------------------------------------------------------
# -- transposed convolution --------------------------------------------------------------------
def random_transpose(rng, stride_one=False):
    ndim = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
    stride = (1,) * ndim if stride_one else tuple(int(s) for s in rng.integers(1, 4, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    output_padding = tuple(0 if stride_one else int(rng.integers(0, max(s, d)))
                           for s, d in zip(stride, dilation))
    padding = tuple(int(rng.integers(0, 1 + d * (k - 1))) for k, d in zip(kernel, dilation))
    # (n-1)*stride - 2*padding + dilation*(k-1) + output_padding >= 0: a non-empty output
    low = [1 + -(-max(0, 2 * p - d * (k - 1) - op) // s)
           for p, d, k, op, s in zip(padding, dilation, kernel, output_padding, stride)]
    size = tuple(int(rng.integers(lo, lo + 6 - ndim)) for lo in low)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups)
    return rng.standard_normal((c_in, c_out // groups, *kernel)), (c_in, *size), kwargs


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_stride1_transposed_conv_is_the_flipped_swapped_kernel_with_full_padding(seed):
    rng = np.random.default_rng(1200 + seed)
    w, shape, kw = random_transpose(rng, stride_one=True)
    x = rng.standard_normal((1, *shape))
    expected = torch_conv_transpose(x, w, **kw)
    # the tutorial's picture, computed by PyTorch alone: full padding minus the layer's
    pads = tuple(d * (k - 1) - p for k, d, p in zip(w.shape[2:], kw["dilation"], kw["padding"]))
    flipped = transpose_kernel(w, kw["groups"])
    direct = torch_conv(x, flipped, padding=pads, dilation=kw["dilation"], groups=kw["groups"])
    assert_close(direct, expected, kw)
    A, U = fractionally_strided(w, shape, **kw)
    assert_close(U, sp.eye_array(U.shape[0]), kw)
    assert_close(A, conv_matrix(flipped, shape, padding=pads, dilation=kw["dilation"],
                                groups=kw["groups"]), kw)
    assert_close(A @ x.ravel(), expected.ravel(), kw)


@requires_torch
@pytest.mark.parametrize("seed", range(40))
def test_strided_transposed_conv_is_zero_insertion_then_conv(seed):
    rng = np.random.default_rng(1300 + seed)
    w, shape, kw = random_transpose(rng)
    A, U = fractionally_strided(w, shape, **kw)
    x = rng.standard_normal(shape)
    # zero insertion by its definition: x at every stride-th position of a zero array
    inserted = np.zeros((shape[0], *((n - 1) * s + 1 for n, s in zip(shape[1:], kw["stride"]))))
    inserted[(slice(None), *(slice(None, None, s) for s in kw["stride"]))] = x
    assert_close(U @ x.ravel(), inserted.ravel(), kw)
    assert_close(A @ (U @ x.ravel()), torch_conv_transpose(x[None], w, **kw).ravel(), kw)
    assert_close(A @ U, conv_transpose_matrix(w, shape, **kw), kw)


# -- formats and rejections --------------------------------------------------------------------
@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
def test_formats(format):
    k = np.arange(1.0, 7.0).reshape(2, 1, 3)
    for matrix in fractionally_strided(k, (2, 4), stride=2, format=format):
        assert isinstance(matrix, sp.sparray) and matrix.format == format


BAD = [
    (dilate_kernel, (np.ones((2, 2, 3)), 0), {}, ValueError, "dilation"),
    (dilate_kernel, (np.ones((2, 3)), 2), {}, ValueError, "weight"),
    (transpose_kernel, (np.ones((3, 2, 3)), 2), {}, ValueError, "groups"),
    (transpose_kernel, (np.ones((3, 2, 3)), 1.0), {}, TypeError, "groups"),
    (fractionally_strided, (np.ones((2, 1, 3)), (2, 8)), dict(padding=3), ValueError,
     "exceeds dilation"),
    # the padding as given, then per side (a review: (2,) was said as ((2, 2),) alone)
    (fractionally_strided, (np.ones((2, 1, 2)), (2, 3)), dict(stride=3, padding=(2,)),
     ValueError, r"^padding=\(2,\) \(per side \(\(2, 2\),\)\) exceeds dilation"),
    (fractionally_strided, (np.ones((2, 1, 3)), (2, 4)), dict(output_padding=1), ValueError,
     "output_padding"),
]


@pytest.mark.parametrize("fn, args, kwargs, error, match", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_rejects_bad_input(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


@requires_torch
@pytest.mark.parametrize("seed", range(12))
def test_fractionally_strided_takes_output_size_as_the_modules_call(seed):
    """A review: conv_transpose_matrix takes output_size=, fractionally_strided refused it
    (TypeError). Checked against ``nn.ConvTranspose*d(...)(x, output_size=...)``."""
    import torch

    rng = np.random.default_rng(1400 + seed)
    w, shape, kw = random_transpose(rng)
    kw.pop("output_padding")
    # an output size PyTorch's call accepts: the smallest plus up to stride - 1 on each axis
    sizes = [(n - 1) * s - 2 * p + d * (k - 1) + 1 + int(rng.integers(0, s))
             for n, s, p, d, k in zip(shape[1:], kw["stride"], kw["padding"], kw["dilation"],
                                      w.shape[2:])]
    ndim = len(sizes)
    module = getattr(torch.nn, f"ConvTranspose{ndim}d")(
        shape[0], w.shape[1] * kw["groups"], w.shape[2:], bias=False, dtype=torch.float64,
        **kw)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))
    x = rng.standard_normal(shape)
    expected = module(torch.from_numpy(x)[None], output_size=sizes).detach().numpy()
    A, U = fractionally_strided(w, shape, output_size=sizes, **kw)
    assert_close(A @ (U @ x.ravel()), expected.ravel(), (kw, sizes))
    assert_close(A @ U, conv_transpose_matrix(w, shape, output_size=sizes, **kw), (kw, sizes))


def test_fractionally_strided_float16_is_computed_in_float32():
    w16 = np.random.default_rng(2).standard_normal((2, 3, 3)).astype(np.float16)
    A, U = fractionally_strided(w16, (2, 4), stride=2, padding=1)
    assert A.dtype == np.float32 and U.dtype == np.float32
    expected = conv_transpose_matrix(w16.astype(np.float64), (2, 4), stride=2, padding=1)
    assert_close(A @ U, expected, "float16", rtol=1e-6)
    assert transpose_kernel(w16).dtype == np.float16  # a kernel, not a matrix: kept
    with pytest.raises(TypeError, match="dtype=float16"):
        fractionally_strided(w16, (2, 4), stride=2, dtype=np.float16)


@requires_torch
def test_a_transposed_layer_refuses_an_input_whose_channels_are_not_the_weights():
    """F.conv_transpose1d refuses an input whose channels are not weight.shape[0]; so must the
    matrix and the operator, not build the layer of weight.shape[0] channels instead."""
    w = np.ones((4, 2, 3))
    with pytest.raises(RuntimeError):
        F.conv_transpose1d(torch.ones((1, 3, 8), dtype=torch.float64), torch.from_numpy(w))
    for build in (conv_transpose_matrix, sparseconv.ConvTransposeOperator):
        with pytest.raises(ValueError, match=r"in_channels=3\) must equal weight.shape\[0\]=4"):
            build(w, (3, 8))


# A mutation review of the operators (2026-12-05): each test below failed on a change
# of the code that every other test let pass.


# A mutant this catches: fractionally_strided read the high side's padding for the low side: with
# asymmetric padding A @ U was not the transposed convolution
@pytest.mark.parametrize("pad", [(0, 1), (2, 1), (1, 0)])
@pytest.mark.parametrize("stride", [1, 2])
def test_fractionally_strided_with_asymmetric_padding(pad, stride):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    rng = np.random.default_rng(5)
    w = rng.standard_normal((2, 3, 3))
    A, U = sparseconv.fractionally_strided(w, (2, 4), stride=stride, padding=[pad])
    x = rng.standard_normal((2, 4))
    full = F.conv_transpose1d(torch.from_numpy(x[None]), torch.from_numpy(w), stride=stride)[0]
    lo, hi = pad
    expected = full[:, lo:full.shape[1] - hi].numpy()  # asymmetric padding crops the full output
    np.testing.assert_allclose(A @ (U @ x.ravel()), expected.ravel(), rtol=1e-12, atol=1e-12)
