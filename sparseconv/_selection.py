"""0/1 selection matrices from the gather map: im2col, padding, stride.

Each matrix is the geometry's gather map written as a sparse array, one 1 a row (none where a
tap reads a zero pad): im2col gathers every tap of every output (``unfold``), padding is the
1-tap case on the padded grid (``np.pad``), stride the 1-tap case that keeps every
``stride``-th position. Composed with a weight matrix or a stride-1 layer they factor
:func:`sparseconv.conv_matrix`; the tests check each against PyTorch and numpy. Each is sized
against the memory limit (the gather map's temporaries and any format conversion included)
before anything is allocated; ``dtype=float16`` is refused (scipy.sparse lacks it).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ._formats import in_format
from ._geometry import ConvGeometry
from ._matrices import check_addressable, check_format, format_bytes
from ._memory import check_memory
from ._typing import (
    DTypeLike,
    IntOrTuple,
    Layout,
    PaddingLike,
    PaddingMode,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import check_layout, layer_dtype

__all__ = ["im2col_matrix", "pad_matrix", "stride_matrix"]


def _selection(geom: ConvGeometry, dtype, format: str,
               layout: str = "channels_first") -> sp.sparray:
    """The 0/1 patch-gather matrix of ``geom``: row ``(c, t, o)`` holds a 1 in column
    ``(c, index_map[o, t])``, none where the tap reads a zero pad (``unfold``'s layout); in
    channels-last order row ``(o, t, c)`` holds it in column ``(index_map[o, t], c)``."""
    dtype = layer_dtype(np.empty(0), dtype)
    channels, n_in = geom.in_channels, math.prod(geom.input_size)
    taps = math.prod(geom.kernel_size) * math.prod(geom.output_size)
    rows = channels * taps
    check_addressable((rows, channels * n_in), geom)
    # the gather map and its int64 temporaries (a tap's flat positions, their validity, the
    # transposed copy), then per row: hits, columns, indptr, ones, and a converted copy
    nbytes = taps * 34 + rows * (1 + 3 * 8 + 2 * 8 + dtype.itemsize)
    if format != "csr":
        nbytes += format_bytes(rows, (rows, channels * n_in), dtype, np.int64, format)
    check_memory(nbytes, f"the {rows} x {channels * n_in} selection matrix (with the "
                 "temporaries of its gather map)")  # (no operator computes it: a trial)
    if layout == "channels_last":
        taps = geom.index_map().ravel()
        hit = np.repeat(taps >= 0, channels)
        columns = (taps[:, None] * channels + np.arange(channels)).ravel()[hit]
    else:
        taps = geom.index_map().T.ravel()
        hit = np.tile(taps >= 0, channels)
        columns = (np.arange(channels)[:, None] * n_in + taps).ravel()[hit]
    indptr = np.concatenate(([0], np.cumsum(hit)))
    matrix = sp.csr_array((np.ones(columns.size, dtype), columns, indptr),
                          shape=(rows, channels * n_in))
    return in_format(matrix, format)


def im2col_matrix(input_shape: ShapeLike, kernel_size: IntOrTuple, *, stride: IntOrTuple = 1,
                  padding: PaddingLike = 0, dilation: IntOrTuple = 1,
                  padding_mode: PaddingMode = "zeros", flip: bool = False,
                  format: SparseFormat = "csr", dtype: DTypeLike = np.float64,
                  layout: Layout = "channels_first") -> SparseArray:
    """The 0/1 matrix ``P`` that gathers the patches of an input (im2col, ``unfold``).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``.
    kernel_size, stride, padding, dilation, padding_mode
        As for :func:`sparseconv.conv_matrix`. All but ``kernel_size`` are keywords:
        ``torch.nn.functional.unfold(input, kernel_size, dilation, padding, stride)`` takes
        them in another order, and ``im2col_matrix(shape, 3, 2)`` would mean a stride there
        and a dilation here.
    flip : bool, optional
        The patches of a true convolution, as :func:`sparseconv.conv_matrix` takes ``flip``:
        ``"same"`` split the other way for an even kernel (the patches are the same
        windows; the flipped weight multiplies them).
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        ``"channels_last"``: columns in C order of ``(*spatial, C)`` and rows of ``(L,
        prod(kernel_size), C)``, the NHWC im2col: ``(P @ x_last.ravel()).reshape(L, -1)``
        times the ``(C_out, *kernel_size, C)`` weight matrix, transposed, is the output in
        ``(L, C_out)`` order.

    Returns
    -------
    scipy.sparse array, shape (C * prod(kernel_size) * L, C * prod(spatial))
        ``(P @ x.ravel()).reshape(C * prod(kernel_size), L)`` is the patch matrix of
        ``torch.nn.functional.unfold``, ``L = prod(output size)``; then
        ``weight.reshape(C_out, -1) @ patches`` is the convolution (``flip=True``: the
        weight flipped on its spatial axes, ``np.flip(weight, tuple(range(2, weight.ndim)))``).

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_matrix`.

    See Also
    --------
    pad_matrix, stride_matrix, ConvGeometry.index_map

    Notes
    -----
    Row ``(c*K + t)*L + o`` holds a 1 in column ``c*prod(spatial) + index_map[o, t]``, none
    where the tap reads a zero pad; with reflect, replicate or circular padding every row holds
    one 1. Channels-last: row ``(o*K + t)*C + c``, column ``index_map[o, t]*C + c``.

    Examples
    --------
    >>> from sparseconv import im2col_matrix
    >>> P = im2col_matrix((3, 8, 8), 3, padding=1)
    >>> P.shape, P.nnz                                      # 27 patch rows of 64 positions
    ((1728, 192), 1452)
    >>> im2col_matrix((2, 3), 2, layout="channels_last").toarray()[:4]   # (o, t, c) rows
    array([[1., 0., 0., 0., 0., 0.],
           [0., 1., 0., 0., 0., 0.],
           [0., 0., 1., 0., 0., 0.],
           [0., 0., 0., 1., 0., 0.]])
    """
    check_format(format)
    check_layout(layout)
    geom = ConvGeometry.from_kernel_size(input_shape, kernel_size, stride=stride,
                                         padding=padding, dilation=dilation,
                                         padding_mode=padding_mode, flip=flip)
    return _selection(geom, dtype, format, layout)


def pad_matrix(input_shape: ShapeLike, padding: PaddingLike, padding_mode: PaddingMode = "zeros",
               *, kernel_size: IntOrTuple | None = None, dilation: IntOrTuple = 1,
               flip: bool = False, format: SparseFormat = "csr",
               dtype: DTypeLike = np.float64,
               layout: Layout = "channels_first") -> SparseArray:
    """Padding as a sparse linear map: the 0/1 matrix of ``np.pad`` / ``F.pad``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``.
    padding : int, tuple of int, tuple of (lo, hi) pairs, or {"valid", "same", "full"}
        Non-negative, as :func:`conv_matrix` takes it: ``F.pad`` crops with negative pads,
        and this matrix only pads. The strings need ``kernel_size``
        (and ``dilation``), as in :func:`conv_matrix`.
    padding_mode : {"zeros", "circular", "reflect", "replicate"}, optional
    kernel_size, dilation : int or tuple of int, optional
        Only to resolve ``"same"`` and ``"full"``.
    flip : bool, optional
        ``"same"`` as a true convolution splits it (:func:`conv_matrix`'s ``flip=True``:
        the larger half before, for an even kernel; a new user's trial found the
        factorization below one pixel off without it).
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *grid)`` or, channels-last, of ``(*grid, C)``.

    Returns
    -------
    scipy.sparse array, shape (C * prod(padded), C * prod(spatial))
        ``conv_matrix(w, input_shape, padding=p, padding_mode=m, flip=f)`` equals
        ``conv_matrix(w, (C, *padded), flip=f) @ pad_matrix(input_shape, p, m, flip=f,
        kernel_size=...)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_matrix`; a string padding without ``kernel_size``.

    See Also
    --------
    im2col_matrix : padding is its 1-tap case.

    Notes
    -----
    Row ``p`` (C order over the padded grid) holds a 1 in the column of the input position
    that padded position copies on every axis (as ``np.pad`` in the same mode), none in a
    zero pad.

    Examples
    --------
    >>> from sparseconv import pad_matrix
    >>> pad_matrix((1, 3), 2, "reflect").toarray().argmax(axis=1)
    array([2, 1, 0, 1, 2, 1, 0])
    """
    check_format(format)
    check_layout(layout)
    if isinstance(padding, str) and padding != "valid" and kernel_size is None:
        raise ValueError(f"padding={padding!r} depends on the kernel: pass kernel_size")
    layer = ConvGeometry.from_kernel_size(
        input_shape, 1 if kernel_size is None else kernel_size, padding=padding,
        dilation=dilation, padding_mode=padding_mode, flip=flip)
    unit = ConvGeometry.from_kernel_size(layer.input_shape, 1, padding=layer.padding,
                                         padding_mode=padding_mode)
    return _selection(unit, dtype, format, layout)


def stride_matrix(input_shape: ShapeLike, stride: IntOrTuple, *, format: SparseFormat = "csr",
                  dtype: DTypeLike = np.float64,
                  layout: Layout = "channels_first") -> SparseArray:
    """Stride as a 0/1 subsampling matrix: keep every ``stride``-th position of each axis.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``: the output shape of the stride-1 layer.
    stride : int or tuple of int
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *grid)`` or, channels-last, of ``(*grid, C)``.

    Returns
    -------
    scipy.sparse array, shape (C * prod(ceil(spatial / stride)), C * prod(spatial))
        A strided convolution is ``S @ A1``, ``A1`` the same layer with stride 1; the
        transpose ``S.T`` is zero insertion (see
        :func:`sparseconv.fractionally_strided`).

    Raises
    ------
    ValueError, TypeError
        A bad shape or stride.

    See Also
    --------
    im2col_matrix : subsampling is its 1-tap case.

    Examples
    --------
    >>> from sparseconv import stride_matrix
    >>> stride_matrix((1, 5), 2).toarray()
    array([[1., 0., 0., 0., 0.],
           [0., 0., 1., 0., 0.],
           [0., 0., 0., 0., 1.]])
    """
    check_format(format)
    check_layout(layout)
    return _selection(ConvGeometry.from_kernel_size(input_shape, 1, stride=stride), dtype, format,
                      layout)
