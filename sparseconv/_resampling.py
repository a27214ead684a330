"""Resampling as sparse matrices: adaptive average pooling, interpolation, pixel shuffle.

Adaptive pooling and interpolation act on every channel alike and on every spatial axis
separately: output ``o`` along an axis reads a few input positions with weights that depend
on that axis only. So the layer's matrix is the Kronecker product
``I_C (x) A_1 (x) ... (x) A_d`` of one small matrix a spatial axis, built here from PyTorch's
own index arithmetic (ATen's ``UpSample.h`` and ``AdaptiveAveragePooling.cpp``):

* adaptive average pooling: output ``o`` of ``m`` averages inputs ``floor(o n / m)`` to
  ``ceil((o + 1) n / m) - 1`` of ``n`` (windows may overlap and differ in size); ``"area"``
  interpolation is the same map;
* ``"nearest"``: input ``min(floor(o * scale), n - 1)``, with ``scale`` and the product
  rounded to float32 as PyTorch's float32 kernels round them (its 2-D kernel also copies an
  axis of unchanged size and halves the index of a doubled one, whatever ``scale_factor``
  says; a ``scale_factor`` near but not equal to 1 or 2 on which PyTorch's own 2-D kernels
  disagree is refused, with ``size=`` as the way out);
  ``"nearest-exact"``: ``min(floor((o + 0.5) * scale - 0.5 + 0.5), n - 1)``, the product and
  the subtraction one fused multiply-add in float32, clamped at 0, as PyTorch computes it (on
  a 2-D input, an output whose index PyTorch's 2-D kernels round either way at a float32 tie,
  ``floorf((o + 0.5) * scale)`` at some sizes, is refused, naming it);
* ``"linear"``, ``"bilinear"``, ``"trilinear"``: the two neighbours of the source coordinate
  ``scale * o`` (``align_corners=True``, ``scale = (n - 1) / (m - 1)``) or
  ``max(scale * (o + 0.5) - 0.5, 0)`` (``align_corners=False``), with weights ``1 - t`` and
  ``t``. ``scale`` is ``1 / scale_factor`` when a ``scale_factor`` is given (and
  ``recompute_scale_factor`` is not set), ``n / m`` otherwise, exactly as PyTorch uses it;
  an axis whose size does not change is copied (PyTorch's shortcut, whatever the scale);
* ``"bicubic"``: Keys' cubic convolution (``A = -0.75``) on the four inputs around the source
  coordinate, which is not clamped at 0 as the linear modes' is, each input index clamped
  into the axis (PyTorch's ``HelperInterpCubic``); no shortcut for an unchanged size;
* ``antialias=True`` (``"bilinear"``, ``"bicubic"``, and ``"lanczos"``, which needs it):
  PyTorch's separable resampling filter (ATen's ``_compute_weights_aa``, Pillow's scheme).
  Output ``o`` is centred at ``c = scale * (o + 0.5)`` in the input; where the axis shrinks
  (``scale >= 1``) the filter is stretched by ``scale``, so each output averages about
  ``scale`` times as many inputs. Inputs ``j`` with ``int(c - r + 0.5) <= j <
  int(c + r + 0.5)``, ``r`` the stretched half-width, get ``f((j + 0.5 - c) / max(scale,
  1))``, normalised to add up to 1, for the filter ``f``: the triangle (half-width 1), Keys'
  cubic with ``A = -0.5`` (2), or Lanczos-3, ``sinc(x) sinc(x / 3)`` (3). No input is
  clamped; an axis whose size does not change is copied, as in the linear modes. An output
  width of 1 with a height that changes is refused: there PyTorch's CPU kernel gives every
  output row the first row's weights.

The linear and bicubic modes floor the source coordinate after rounding it to float32, as
ATen's ``floorf`` does, so a coordinate just below a whole number reads that number. On axes
of tens of thousands of pixels the weights can still differ from PyTorch's near 1e-12: this
PyTorch build computes ``scale * (o + 0.5) - 0.5`` with a fused multiply-add, one rounding
where numpy makes two.

Each axis's matrix is built in :mod:`sparseconv._resampling_axes`. Pixel shuffle and unshuffle
are permutations (:mod:`sparseconv._pixel_shuffle`). Every matrix is sized against the memory
limit before it is allocated.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ._formats import in_format, repeated_block, repeated_block_bytes
from ._layout import in_layout
from ._matrices import format_bytes
from ._memory import check_memory
from ._resampling_axes import (
    _ANTIALIAS,
    _adaptive_axis,
    _antialias_axis,
    _cubic_axis,
    _entries_per_output,
    _linear_axis,
    _nearest_axis,
)
from ._typing import DTypeLike, IntOrTuple, Layout, ShapeLike, SparseArray, SparseFormat
from ._validation import (
    INDEX_LIMIT,
    as_bool,
    check_format,
    check_layout,
    exact_in,
    int_tuple,
    layer_dtype,
    one_of,
    positive_floats,
    positive_int,
    spatial_size,
)

__all__ = ["adaptive_avg_pool_matrix", "interpolate_matrix"]

#: interpolation modes, and the number of spatial axes the linear ones need (PyTorch's rule)
MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "lanczos",
         "area")
_LINEAR_RANK = {"linear": 1, "bilinear": 2, "trilinear": 3, "bicubic": 2, "lanczos": 2}


def _shape(input_shape, name: str = "input_shape") -> tuple[int, ...]:
    shape = spatial_size(input_shape, name)
    if len(shape) < 2:
        raise ValueError(f"{name} must be (C, *spatial) with at least one spatial axis, got "
                         f"{input_shape!r}")
    return shape


def _kron_bytes(channels: int, spatial_nnz: int, rows: int, dtype) -> int:
    """What :func:`_kron` allocates at its peak, measured within 10%: scipy's product of the
    axes with its COO scratch (up to 52 bytes an entry), or that product kept with a 64-bit
    copy of its columns (about 24 bytes an entry) and its copies, one per channel
    (:func:`sparseconv._formats.repeated_block_bytes`)."""
    return max(52 * spatial_nnz, 24 * spatial_nnz
               + repeated_block_bytes(spatial_nnz, channels, rows, dtype))


def _kron(channels: int, axes: list[sp.csr_array], format: str, dtype, what: str,
          input_shape: tuple[int, ...], layout: str) -> SparseArray:
    """``I_channels (x) axes[0] (x) ...``, sized against the memory limit first: scipy's
    Kronecker product of the axes alone, then one copy of it per channel, assembled as CSR
    directly (scipy's product with the identity peaked at 50 bytes an entry, twice what was
    counted, a memory audit found)."""
    rows = channels * math.prod(a.shape[0] for a in axes)
    for axis in axes:  # the product's entries are products of these: exact if theirs are
        exact_in(np.dtype(dtype), axis.data, f"{what}'s entries")
    entries = channels * math.prod(a.nnz for a in axes)
    index = np.int32 if max(entries, rows, channels * math.prod(a.shape[1] for a in axes)) \
        < 2**31 else np.int64
    # (and the copy another format is converted to, beside the CSR arrays: a review)
    converted = 0 if format == "csr" else format_bytes(
        entries, (rows, channels * math.prod(a.shape[1] for a in axes)), dtype, index, format)
    check_memory(_kron_bytes(channels, math.prod(a.nnz for a in axes), rows, dtype) + converted,
                 f"{what} ({format.upper()}, with the temporaries of its assembly)")
    spatial = sp.csr_array(functools.reduce(lambda a, b: sp.kron(a, b, format="csr"), axes))
    spatial.sum_duplicates()
    output_shape = (channels, *(a.shape[0] for a in axes))
    matrix = spatial.astype(dtype, copy=False) if channels == 1 else repeated_block(
        spatial, channels, dtype)
    return in_format(in_layout(matrix, input_shape, output_shape, layout, what), format)


def _size_axes(channels: int, outputs: list[int], entries: list[int], dtype, what: str) -> None:
    """Size the matrix (``entries[d]`` at most on axis ``d``, of ``outputs[d]`` rows) and its
    axes' scratch (about 40 bytes an entry) against the memory limit, before any axis is
    built (a review: a size of 10**8 allocated 5 GB before the limit refused the matrix)."""
    check_memory(40 * sum(entries), f"{what}'s per-axis weights")
    check_memory(_kron_bytes(channels, math.prod(entries), channels * math.prod(outputs), dtype),
                 f"{what} (CSR, with the temporaries of its assembly)")


def adaptive_avg_pool_matrix(input_shape: ShapeLike,
                             output_size: int | None | Sequence[int | None], *,
                             format: SparseFormat = "csr", dtype: DTypeLike = np.float64,
                             layout: Layout = "channels_first") -> SparseArray:
    """The sparse matrix of adaptive average pooling (PyTorch's ``adaptive_avg_pool{1,2,3}d``).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``, any number of spatial axes.
    output_size : int, None, or tuple of int or None
        The output's spatial size; ``None`` keeps that axis's input size (as PyTorch's
        2-D and 3-D modules take it in a tuple; here also a bare ``None`` and in 1-D,
        where PyTorch raises a ``TypeError``).
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *spatial)`` or, channels-last, of ``(*spatial,
        C)``, as :func:`sparseconv.conv_matrix` takes it.

    Returns
    -------
    scipy.sparse array, shape (C * prod(output_size), C * prod(spatial))

    Raises
    ------
    ValueError, TypeError
        A bad shape, output size, format or dtype (``float16``).
    MatrixTooLargeError
        The matrix exceeds the memory limit.

    See Also
    --------
    avg_pool_matrix : pooling with a fixed window and stride.

    Notes
    -----
    Along an axis of ``n`` inputs and ``m`` outputs, output ``o`` is the mean of inputs
    ``floor(o n / m) <= i < ceil((o + 1) n / m)``: windows overlap or differ in size when
    ``m`` does not divide ``n``, and repeat inputs when ``m > n``. The matrix is the Kronecker
    product of these per-axis averages (the window is the product of the per-axis ranges).

    Examples
    --------
    >>> from sparseconv import adaptive_avg_pool_matrix
    >>> adaptive_avg_pool_matrix((1, 5), 3).toarray().round(3)
    array([[0.5  , 0.5  , 0.   , 0.   , 0.   ],
           [0.   , 0.333, 0.333, 0.333, 0.   ],
           [0.   , 0.   , 0.   , 0.5  , 0.5  ]])
    >>> adaptive_avg_pool_matrix((2, 4, 4), 1).shape     # global average pooling
    (2, 32)
    """
    check_format(format)
    check_layout(layout)
    dtype = layer_dtype(np.empty(0), dtype)
    shape = _shape(input_shape)
    out = adaptive_output_size(shape[1:], output_size)
    # each output's window holds at most ceil(n / m) + 1 inputs: n + 2m in all
    _size_axes(shape[0], list(out), [min(n * m, n + 2 * m) for n, m in zip(shape[1:], out)],
               dtype, "adaptive_avg_pool_matrix")
    axes = [_adaptive_axis(n, m) for n, m in zip(shape[1:], out)]
    return _kron(shape[0], axes, format, dtype, "adaptive_avg_pool_matrix", shape, layout)


def adaptive_output_size(spatial: tuple[int, ...], output_size) -> tuple[int, ...]:
    """The output size of adaptive pooling (``None`` keeps an axis's input size)."""
    ndim = len(spatial)
    if output_size is None or isinstance(output_size, (tuple, list)):
        sizes = (None,) * ndim if output_size is None else tuple(output_size)
        if len(sizes) != ndim:
            raise ValueError(f"output_size must be a positive integer or a tuple of {ndim} "
                             f"of them (or None), got {output_size!r}")
        return tuple(n if s is None else positive_int(s, f"output_size[{d}]")
                     for d, (n, s) in enumerate(zip(spatial, sizes)))
    return int_tuple(output_size, ndim, "output_size", 1)


def interpolate_output_size(spatial: tuple[int, ...], size, scale_factor,
                            recompute_scale_factor=None) -> tuple[int, ...]:
    """The output size of :func:`interpolate_matrix` (PyTorch's rule)."""
    return _output_size(spatial, size, scale_factor, recompute_scale_factor)[0]


def _output_size(spatial, size, scale_factor, recompute_scale_factor):
    """PyTorch's output size and the scales its kernels use (``None``: from the sizes)."""
    ndim = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"exactly one of size and scale_factor must be given, got size={size!r} "
                         f"and scale_factor={scale_factor!r}")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor=True is not meaningful with an explicit "
                             f"size, got size={size!r}")
        return int_tuple(size, ndim, "size", 1), (None,) * ndim
    scales = positive_floats(scale_factor, ndim, "scale_factor")
    out = tuple(math.floor(n * s) for n, s in zip(spatial, scales))
    if min(out) < 1:
        raise ValueError(f"scale_factor={scale_factor!r} gives an empty output {out} for the "
                         f"input size {tuple(spatial)}")
    if max(out) > INDEX_LIMIT:  # as size= is refused (a review: a 300-digit EiB figure)
        raise ValueError(f"scale_factor={scale_factor!r} gives an output size over 2**60 "
                         f"(int64 index arithmetic) for the input size {tuple(spatial)}")
    return out, ((None,) * ndim if recompute_scale_factor else scales)


def interpolate_matrix(input_shape: ShapeLike, size: IntOrTuple | None = None,
                       scale_factor: float | tuple[float, ...] | None = None,
                       mode: str = "nearest", align_corners: bool | None = None,
                       recompute_scale_factor: bool | None = None, antialias: bool = False, *,
                       format: SparseFormat = "csr", dtype: DTypeLike = np.float64,
                       layout: Layout = "channels_first") -> SparseArray:
    """The sparse matrix of PyTorch's ``F.interpolate`` (and ``nn.Upsample``).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``.
    size : int or tuple of int, optional
        The output's spatial size. Exactly one of ``size`` and ``scale_factor`` is given.
    scale_factor : float or tuple of float, optional
        The output size is ``floor(n * scale_factor)``; the kernels then map output ``o`` back
        with ``1 / scale_factor``, unless ``recompute_scale_factor=True`` (then with
        ``n / out``, as for ``size``).
    mode : {"nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", \
"lanczos", "area"}, optional
        ``"linear"``, ``"bilinear"``, ``"trilinear"``, ``"bicubic"`` and ``"lanczos"`` need 1,
        2, 3, 2 and 2 spatial axes; ``"lanczos"`` needs ``antialias=True`` (as PyTorch).
    align_corners : bool, optional
        For the interpolating modes only (default False): map the corner pixels' centres onto
        each other instead of their outer edges (not with ``"lanczos"``, as PyTorch).
    recompute_scale_factor : bool, optional
        With ``scale_factor``, ``True`` maps outputs back with ``n / out`` (the computed
        size's ratio) instead of ``1 / scale_factor``, as PyTorch; not with ``size``.
    antialias : bool, default False
        For ``"bilinear"``, ``"bicubic"`` and ``"lanczos"``: PyTorch's antialiasing filter,
        stretched where the image shrinks, so that each output averages every input under it
        (torchvision's ``Resize(antialias=True)``, Pillow's resampling).
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, default float64
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *spatial)`` or, channels-last, of ``(*spatial,
        C)``, as :func:`sparseconv.conv_matrix` takes it.

    Returns
    -------
    scipy.sparse array, shape (C * prod(out), C * prod(spatial))

    Raises
    ------
    ValueError, TypeError
        Both or neither of ``size`` and ``scale_factor``, an empty output, a mode unknown or
        of another rank, ``align_corners`` with a mode that does not interpolate, or
        ``antialias`` with a mode that has no such filter (as PyTorch); ``antialias`` from
        several rows to a different number of them, above one, on an output width of 1
        (PyTorch's CPU kernel departs from its filter there); ``mode="nearest"`` in 2-D
        with a ``scale_factor`` other than 1 or 2 on an axis whose size the two rules of
        PyTorch's 2-D nearest kernels map differently (pass ``size=`` instead).
    MatrixTooLargeError
        The matrix exceeds the memory limit.

    Notes
    -----
    Each axis has its own small matrix (see the module's description of PyTorch's source
    index), and the layer's is their Kronecker product with the channels' identity. The
    weights are those of PyTorch's float64 kernels; the nearest modes' indices are computed in
    float32, as PyTorch's float32 kernels (its default dtype) compute them in every rank, not
    as its float64 kernels, which round ``o * scale`` in float64 and read the next input at a
    few outputs for factors such as 3.7.

    Examples
    --------
    >>> from sparseconv import interpolate_matrix
    >>> interpolate_matrix((1, 2), scale_factor=2).toarray()
    array([[1., 0.],
           [1., 0.],
           [0., 1.],
           [0., 1.]])
    >>> interpolate_matrix((1, 2), size=4, mode="linear").toarray()
    array([[1.  , 0.  ],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.  , 1.  ]])
    >>> interpolate_matrix((1, 2), size=3, mode="linear", align_corners=True).toarray()
    array([[1. , 0. ],
           [0.5, 0.5],
           [0. , 1. ]])

    Antialiased, halving an axis stretches the triangle filter to twice its width: each
    output averages three inputs (plain bilinear interpolation reads two, 0.5 and 0.5):

    >>> interpolate_matrix((1, 1, 4), size=(1, 2), mode="bilinear",
    ...                    antialias=True).toarray().round(4)
    array([[0.4286, 0.4286, 0.1429, 0.    ],
           [0.    , 0.1429, 0.4286, 0.4286]])
    """
    check_format(format)
    check_layout(layout)
    dtype = layer_dtype(np.empty(0), dtype)
    shape = _shape(input_shape)
    ndim = len(shape) - 1
    one_of(mode, MODES, "mode")
    if mode in _LINEAR_RANK and _LINEAR_RANK[mode] != ndim:
        raise ValueError(f"mode={mode!r} needs {_LINEAR_RANK[mode]} spatial axes, got "
                         f"input_shape={shape}")
    if align_corners is not None:
        align_corners = as_bool(align_corners, "align_corners")
        if mode not in _LINEAR_RANK:
            raise ValueError(f"align_corners can only be set with the interpolating modes "
                             f"{tuple(_LINEAR_RANK)}, got mode={mode!r}")
        if mode == "lanczos" and align_corners:
            raise ValueError("mode='lanczos' does not support align_corners=True (as PyTorch)")
    antialias = as_bool(antialias, "antialias")
    if antialias and mode not in _ANTIALIAS:
        raise ValueError(f"antialias=True applies to the modes {tuple(_ANTIALIAS)} only (2 "
                         f"spatial axes, as PyTorch), got mode={mode!r}")
    if mode == "lanczos" and not antialias:
        raise ValueError("mode='lanczos' needs antialias=True (as PyTorch)")
    if recompute_scale_factor is not None:
        recompute_scale_factor = as_bool(recompute_scale_factor, "recompute_scale_factor")
    out, scales = _output_size(shape[1:], size, scale_factor, recompute_scale_factor)
    if antialias and out[1] == 1 and shape[1] > 1 and out[0] not in (1, shape[1]):
        # (measured on torch 2.13's CPU kernel: its vertical pass over a width of 1 gives
        # every output row the first row's weights; any other size follows the filter)
        raise ValueError(f"antialias=True to a width of 1 with a height that changes "
                         f"({shape[1]} -> {out[0]}): PyTorch's CPU kernel gives every output "
                         "row the first row's weights there, not the filter's, so no matrix "
                         "is both; keep the height, or a width above 1")
    _size_axes(shape[0], list(out), [
        m * min(n, _entries_per_output(n, m, s, mode, antialias, bool(align_corners)))
        if mode != "area" else min(n * m, n + 2 * m)
        for n, m, s in zip(shape[1:], out, scales)], dtype, "interpolate_matrix")
    if mode == "area":
        axes = [_adaptive_axis(n, m) for n, m in zip(shape[1:], out)]
    elif antialias:
        axes = [_antialias_axis(n, m, s, bool(align_corners), mode)
                for n, m, s in zip(shape[1:], out, scales)]
    elif mode == "bicubic":
        axes = [_cubic_axis(n, m, s, bool(align_corners))
                for n, m, s in zip(shape[1:], out, scales)]
    elif mode in _LINEAR_RANK:
        axes = [_linear_axis(n, m, s, bool(align_corners))
                for n, m, s in zip(shape[1:], out, scales)]
    else:
        axes = [_nearest_axis(n, m, s, mode == "nearest-exact", ndim == 2)
                for n, m, s in zip(shape[1:], out, scales)]
    return _kron(shape[0], axes, format, dtype, "interpolate_matrix", shape, layout)


