"""avg_pool_matrix against PyTorch's avg_pool{1,2,3}d."""

from __future__ import annotations

import numpy as np
import pytest

import sparseconv
from sparseconv import (
    avg_pool_matrix,
)

from ._oracles import F, assert_close, per_side, requires_torch, torch


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
        # any nonzero divisor, as PyTorch takes it (a new user's trial: -1 was refused)
        kwargs["divisor_override"] = int(rng.choice([-3, -1, *range(1, 10)]))
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
    (dict(ceil_mode="False"), TypeError, "ceil_mode must be a bool"),
    (dict(count_include_pad=None), TypeError, "count_include_pad must be a bool"),
    (dict(dtype=np.float16), TypeError, "float16"),
    (dict(divisor_override=0), ValueError, "divisor_override must be a nonzero integer"),
    (dict(divisor_override=2.0), TypeError, "divisor_override must be a nonzero integer"),
    (dict(input_shape=(2, 1, 1)), ValueError, "kernel_size"),
    (dict(input_shape=(2,)), ValueError, "input_shape"),
    (dict(format="dense"), ValueError, "format"),
    # (a new user's trial: "not supported for strided convolutions" with no stride passed,
    # and a dilation pooling does not have)
    (dict(padding="same"), ValueError,
     r"^padding='same' needs stride=1, got stride=\(3, 3\) \(the default: kernel_size"),
    (dict(input_shape=(2, 2, 2)), ValueError,
     r"^kernel_size=\(3, 3\) is larger than the padded input size 2 along spatial axis 0 "
     r"\(input size 2"),
]


@pytest.mark.parametrize("bad, error, match", BAD_POOL, ids=[str(b[0]) for b in BAD_POOL])
def test_avg_pool_matrix_rejects(bad, error, match):
    args = dict(input_shape=(2, 6, 6), kernel_size=3)
    args.update(bad)
    with pytest.raises(error, match=match):
        avg_pool_matrix(args.pop("input_shape"), args.pop("kernel_size"), **args)


@requires_torch
@pytest.mark.parametrize("seed", range(120))
def test_ceil_mode_with_a_kernel_larger_than_the_input_follows_torch(seed):
    """Small inputs, large kernels and strides: where PyTorch's avg_pool1d/2d returns cut
    windows we return the same; where it refuses, so do we (avg_pool3d refuses a kernel
    larger than the unpadded input, which a review found built)."""
    rng = np.random.default_rng(5000 + seed)
    ndim = 1 + seed % 3
    kernel = tuple(int(k) for k in rng.integers(1, 7, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 5, ndim))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    size = tuple(int(n) for n in rng.integers(1, 5, ndim))
    kwargs = dict(stride=stride, padding=padding, ceil_mode=bool(seed % 4 != 3),
                  count_include_pad=bool(seed % 3))
    config = dict(kernel_size=kernel, size=size, **kwargs)
    x = rng.standard_normal((1, 2, *size))
    pool = getattr(F, f"avg_pool{ndim}d")
    try:
        y = pool(torch.from_numpy(x), kernel, **kwargs).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            avg_pool_matrix((2, *size), kernel, **kwargs)
        return
    A = avg_pool_matrix((2, *size), kernel, **kwargs)
    assert A.shape == (y.size, x.size), config
    assert_close(A @ x.ravel(), y.ravel(), config)


@requires_torch
@pytest.mark.parametrize("ndim", [1, 2])
def test_ceil_mode_cut_window_of_the_issue(ndim):
    x = np.array([1.0, 2.0]).reshape((1, 1) + (1,) * (ndim - 1) + (2,))
    A = avg_pool_matrix((1,) + (1,) * (ndim - 1) + (2,), (1,) * (ndim - 1) + (4,),
                        (1,) * (ndim - 1) + (3,), ceil_mode=True)
    pool = getattr(F, f"avg_pool{ndim}d")
    y = pool(torch.from_numpy(x), (1,) * (ndim - 1) + (4,), (1,) * (ndim - 1) + (3,),
             ceil_mode=True).numpy()
    assert np.allclose(y.ravel(), [1.5]) and np.allclose(A @ x.ravel(), y.ravel())


def test_float16_is_refused_by_name():
    with pytest.raises(TypeError, match="dtype=float16"):
        avg_pool_matrix((1, 4), 2, dtype=np.float16)


@pytest.mark.parametrize("format", ["csr", "csc", "coo"])
def test_memory_limit_counts_the_divisors_and_the_format(format):
    """The matrix alone fits the limit, but not with its divisors (and a converted copy):
    refused before allocating; the default limit refuses a huge pool at once."""
    from sparseconv._geometry import ConvGeometry
    from sparseconv._matrices import matrix_bytes

    geom = ConvGeometry.from_kernel_size((1, 64, 64), 2, depthwise=True, stride=2)
    alone = matrix_bytes(geom, np.float64)[0]
    old = sparseconv.set_memory_limit(alone)
    try:
        with pytest.raises(sparseconv.MatrixTooLargeError, match="memory limit"):
            avg_pool_matrix((1, 64, 64), 2, format=format)
        sparseconv.set_memory_limit(4 * alone)
        assert avg_pool_matrix((1, 64, 64), 2, format=format).nnz == 64 * 64
    finally:
        sparseconv.set_memory_limit(old)
    with pytest.raises(sparseconv.MatrixTooLargeError, match="GiB"):
        avg_pool_matrix((1, 10**5, 10**5), 3, 1, 1)


def test_an_integer_dtype_is_refused_where_it_would_truncate_the_averages():
    """dtype=int raised numpy's UFuncTypeError from the division (not naming dtype), even
    where every divisor is 1."""
    with pytest.raises(TypeError, match=r"dtype=int64 would change avg_pool_matrix's entries "
                                        r"1/divisor \(0\.25 at index"):
        sparseconv.avg_pool_matrix((1, 4, 4), 2, dtype=np.int64)
    with pytest.raises(TypeError, match="dtype=bool would change"):
        sparseconv.avg_pool_matrix((1, 4, 4), 2, count_include_pad=False, padding=1, dtype=bool)
    # divisor 1: the window sums are integers, and an integer dtype holds them
    exact = sparseconv.avg_pool_matrix((1, 4, 4), 2, divisor_override=1, dtype=np.int32)
    floats = sparseconv.avg_pool_matrix((1, 4, 4), 2, divisor_override=1)
    assert exact.dtype == np.int32 and abs(exact - floats).max() == 0


@requires_torch
@pytest.mark.parametrize("kernel", [3, 4, (3, 2)])
def test_avg_pool_matrix_same_padding_is_pytorchs_split(kernel):
    """padding="same" (stride 1) pads kernel_size - 1, the odd one after: the zero-padded
    input pooled by PyTorch, zeros counted (count_include_pad)."""
    rng = np.random.default_rng(2)
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((1, 2, 5, 6))
    A = avg_pool_matrix((2, 5, 6), kernel, stride=1, padding="same")
    pads = per_side("same", kernel, (1, 1))
    padded = F.pad(torch.from_numpy(x), (*pads[1], *pads[0]))
    expected = F.avg_pool2d(padded, kernel, stride=1).numpy()
    assert A.shape == (expected.size, x.size)
    assert_close(A @ x.ravel(), expected.ravel(), kernel)


@requires_torch
def test_avg_pool_matrix_refuses_a_divisor_beyond_int64():
    """PyTorch takes divisor_override as an int64: 2**63 overflows there, and is refused."""
    with pytest.raises((ValueError, RuntimeError)):
        F.avg_pool2d(torch.ones((1, 1, 4, 4), dtype=torch.float64), 2, divisor_override=2**63)
    with pytest.raises(ValueError, match="divisor_override must be a nonzero integer of int64"):
        avg_pool_matrix((1, 4, 4), 2, divisor_override=2**63)
