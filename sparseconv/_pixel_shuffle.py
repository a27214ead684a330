"""Pixel shuffle and unshuffle as matrices: permutations, one 1 a row.

``nn.PixelShuffle(r)`` moves ``r * r`` channels into an ``r x r`` block of pixels, and
``nn.PixelUnshuffle`` back; the permutation comes from the reshape and transpose that define
them, and is sized against the memory limit before it is allocated.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._formats import in_format
from ._layout import in_layout
from ._memory import check_sparse_memory
from ._resampling import _shape
from ._typing import DTypeLike, Layout, ShapeLike, SparseArray, SparseFormat
from ._validation import (
    check_format,
    check_layout,
    layer_dtype,
    positive_int,
)

__all__ = ["pixel_shuffle_matrix", "pixel_unshuffle_matrix"]


def _permutation(source: np.ndarray, format: str, dtype, what: str,
                 input_shape: tuple[int, int, int], output_shape: tuple[int, int, int],
                 layout: str) -> SparseArray:
    """The matrix with a 1 in column ``source[r]`` of each row ``r`` (channels first), in
    ``layout``."""
    n = source.size
    check_sparse_memory(n, n, dtype, what)
    index = sp.get_index_dtype(maxval=n)
    matrix = sp.csr_array((np.ones(n, dtype=dtype), source.ravel().astype(index),
                           np.arange(n + 1, dtype=index)), shape=(n, n))
    return in_format(in_layout(matrix, input_shape, output_shape, layout, what), format)


def _shuffle_shape(input_shape) -> tuple[int, int, int]:
    shape = _shape(input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    c, h, w = shape
    return c, h, w


def pixel_shuffle_matrix(input_shape: ShapeLike, upscale_factor: int, *,
                         format: SparseFormat = "csr", dtype: DTypeLike = np.float64,
                         layout: Layout = "channels_first") -> SparseArray:
    """The permutation matrix of PyTorch's ``pixel_shuffle``: ``(C r^2, H, W) -> (C, H r, W r)``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C * upscale_factor**2, H, W)``.
    upscale_factor : int
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *spatial)`` or, channels-last, of ``(*spatial,
        C)``, as :func:`sparseconv.conv_matrix` takes it.

    Returns
    -------
    scipy.sparse array, shape (n, n) with ``n = prod(input_shape)``

    Raises
    ------
    ValueError, TypeError
        ``input_shape`` not ``(C, H, W)`` or ``C`` not divisible by ``upscale_factor**2``.

    Notes
    -----
    ``y[c, h r + i, w r + j] = x[c r^2 + i r + j, h, w]``.

    Examples
    --------
    >>> from sparseconv import pixel_shuffle_matrix
    >>> pixel_shuffle_matrix((4, 1, 1), 2).toarray().astype(int)
    array([[1, 0, 0, 0],
           [0, 1, 0, 0],
           [0, 0, 1, 0],
           [0, 0, 0, 1]])
    >>> pixel_shuffle_matrix((4, 1, 2), 2).indices   # input index of each output, C order
    array([0, 2, 1, 3, 4, 6, 5, 7], dtype=int32)
    """
    check_format(format)
    check_layout(layout)
    dtype = layer_dtype(np.empty(0), dtype)
    r = positive_int(upscale_factor, "upscale_factor")
    c, h, w = _shuffle_shape(input_shape)
    if c % (r * r):
        raise ValueError(f"input_shape[0]={c} must be divisible by upscale_factor**2={r * r}")
    check_sparse_memory(c * h * w, c * h * w, dtype, "pixel_shuffle_matrix")  # (before the
    index = np.arange(c * h * w).reshape(c // (r * r), r, r, h, w)  # index array)
    source = index.transpose(0, 3, 1, 4, 2)  # (C, H, r, W, r): the output's C order
    return _permutation(source, format, dtype, "pixel_shuffle_matrix", (c, h, w),
                        (c // (r * r), h * r, w * r), layout)


def pixel_unshuffle_matrix(input_shape: ShapeLike, downscale_factor: int, *,
                           format: SparseFormat = "csr", dtype: DTypeLike = np.float64,
                           layout: Layout = "channels_first") -> SparseArray:
    """The permutation matrix of ``pixel_unshuffle``: ``(C, H r, W r) -> (C r^2, H, W)``.

    The inverse (and transpose) of :func:`pixel_shuffle_matrix`.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H * downscale_factor, W * downscale_factor)``.
    downscale_factor : int
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *spatial)`` or, channels-last, of ``(*spatial,
        C)``, as :func:`sparseconv.conv_matrix` takes it.

    Returns
    -------
    scipy.sparse array, shape (n, n) with ``n = prod(input_shape)``

    Raises
    ------
    ValueError, TypeError
        ``input_shape`` not ``(C, H, W)`` or ``H``, ``W`` not divisible by the factor.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import pixel_shuffle_matrix, pixel_unshuffle_matrix
    >>> P = pixel_unshuffle_matrix((1, 4, 2), 2)
    >>> bool(np.array_equal((P @ pixel_shuffle_matrix((4, 2, 1), 2)).toarray(), np.eye(8)))
    True
    """
    check_format(format)
    check_layout(layout)
    dtype = layer_dtype(np.empty(0), dtype)
    r = positive_int(downscale_factor, "downscale_factor")
    c, h, w = _shuffle_shape(input_shape)
    if h % r or w % r:
        raise ValueError(f"input_shape[1:]={(h, w)} must be divisible by downscale_factor={r}")
    check_sparse_memory(c * h * w, c * h * w, dtype, "pixel_unshuffle_matrix")
    index = np.arange(c * h * w).reshape(c, h // r, r, w // r, r)
    source = index.transpose(0, 2, 4, 1, 3)  # (C, r, r, H, W): the output's C order
    return _permutation(source, format, dtype, "pixel_unshuffle_matrix", (c, h, w),
                        (c * r * r, h // r, w // r), layout)
