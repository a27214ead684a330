"""Average pooling as a sparse matrix (PyTorch's ``avg_pool{1,2,3}d``).

Pooling is a depthwise convolution with a constant kernel: the windows are the gather map of
a weightless depthwise geometry (:meth:`ConvGeometry.from_kernel_size`), and each row is
divided by the number of positions its window counts (``count_include_pad``,
``divisor_override``). ``ceil_mode`` adds the cut last window PyTorch adds, as zero
padding past the input that the divisor does not count. The matrix, the divisors and any format
conversion are sized against the memory limit before anything is allocated.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._formats import in_format
from ._geometry import ConvGeometry
from ._layout import in_layout
from ._matrices import assemble, check_format, format_bytes, matrix_bytes
from ._memory import check_memory
from ._typing import (
    DTypeLike,
    ExplicitPaddingLike,
    IntOrTuple,
    Layout,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import (
    as_bool,
    check_layout,
    exact_in,
    int_tuple,
    is_int,
    layer_dtype,
    normalize_padding,
)

__all__ = ["avg_pool_matrix"]


def avg_pool_matrix(
    input_shape: ShapeLike, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
    padding: ExplicitPaddingLike = 0, ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None, *, format: SparseFormat = "csr",
    dtype: DTypeLike = np.float64, layout: Layout = "channels_first",
) -> SparseArray:
    """The sparse matrix of average pooling (PyTorch's ``avg_pool{1,2,3}d``).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``, any number of spatial axes (PyTorch's functions take 1 to 3; the
        same rule applies to each axis).
    kernel_size, stride : int or tuple of int
        ``stride`` defaults to ``kernel_size``, as in PyTorch.
    padding : int, tuple of int, tuple of (lo, hi) pairs, "valid" or "same", optional
        Zero padding, at most ``kernel_size // 2`` per side (PyTorch's limit). The strings
        are sparseconv's, as :func:`conv_matrix` reads them (PyTorch's pooling takes none):
        ``"valid"`` is 0; ``"same"`` needs ``stride=1`` and pads ``kernel_size - 1`` split
        as :func:`conv_matrix` splits it (the odd one after).
    ceil_mode : bool, optional
        Round the output size up: one more window where the last one would hang over the
        padded input, provided it starts inside the input or the low padding (PyTorch's rule;
        the kernel may then be larger than the padded input, as in ``avg_pool1d`` and
        ``avg_pool2d``; ``avg_pool3d`` alone refuses a kernel larger than the unpadded input,
        and so does this function in 3-D).
    count_include_pad : bool, optional
        Divide by the window's positions inside the padded input (True) or by the input
        positions it covers (False).
    divisor_override : int, optional
        Divide every window by this number instead: any nonzero integer, as PyTorch takes it
        (a negative one negates the averages).
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
        A bad shape or argument (a flag that is not a bool), a padding over half the kernel,
        in 3-D a kernel larger than the unpadded input (as ``avg_pool3d``), ``dtype=float16``.
    MatrixTooLargeError
        The matrix, its divisors and any format conversion exceed the memory limit.

    See Also
    --------
    conv_matrix : pooling is the depthwise convolution with an all-ones kernel, scaled.

    Notes
    -----
    ``y[c, o] = (1 / N(o)) sum_t x_pad[c, o*stride + t]`` with ``N(o) = prod(kernel_size)``
    (in ``ceil_mode``, the taps inside the padded input: a window hanging over it is cut),
    or the number of taps reading the input (``count_include_pad=False``), or
    ``divisor_override``.

    Examples
    --------
    >>> from sparseconv import avg_pool_matrix
    >>> avg_pool_matrix((1, 4), 2).toarray()
    array([[0.5, 0.5, 0. , 0. ],
           [0. , 0. , 0.5, 0.5]])
    >>> avg_pool_matrix((1, 3), 3, stride=1, padding=1, count_include_pad=False).toarray()[0]
    array([0.5, 0.5, 0. ])
    >>> avg_pool_matrix((1, 5), 2, ceil_mode=True).toarray()[-1]     # the cut last window
    array([0., 0., 0., 0., 1.])
    >>> avg_pool_matrix((1, 2), 4, 3, ceil_mode=True).toarray()      # F.avg_pool1d: [1.5]
    array([[0.5, 0.5]])
    """
    check_format(format)
    check_layout(layout)
    dtype = layer_dtype(np.empty(0), dtype)
    shape, kernel, stride, pads, padded, divisor_override = _pool_arguments(
        input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
        divisor_override)
    # the window's weights and the taps' index arrays, before the geometry builds them (a
    # review: a kernel of 10**8 over 10 inputs allocated 4.5 GB for a 1 x 10 matrix)
    check_memory(8 * shape[0] * math.prod(kernel) + 48 * sum(kernel),
                 f"avg_pool_matrix's window of kernel_size={kernel}")
    geom = ConvGeometry.from_kernel_size(shape, kernel, depthwise=True, stride=stride,
                                         padding=pads)
    # beside the matrix: the divisors a row, the entries' divisors, and a converted copy
    _, nnz, index_dtype = matrix_bytes(geom, dtype)
    rows = geom.shape[0]
    extra = rows * (24 + 2 * index_dtype.itemsize) + nnz * (8 + dtype.itemsize)
    if format != "csr":
        extra += format_bytes(nnz, geom.shape, dtype, index_dtype, format)
    matrix = assemble(geom, np.ones(geom.weight_shape), dtype, extra=extra, hint=None)
    if divisor_override is not None:
        divisor = np.full(matrix.shape[0], float(divisor_override))
    elif as_bool(count_include_pad, "count_include_pad"):  # the taps in the padded input
        per_axis = [np.minimum(start + a.kernel_size, size) - start
                    for a, size in zip(geom.axes, padded)
                    for start in [np.arange(a.output_size) * a.stride]]
        window = functools.reduce(np.multiply.outer, per_axis).ravel()
        divisor = np.tile(window.astype(float), geom.in_channels)
    else:  # zero padding stores only the taps that read the input
        divisor = np.diff(matrix.indptr).astype(float)
    exact_in(dtype, 1.0 / divisor, "avg_pool_matrix's entries 1/divisor")
    if dtype.kind in "fc":  # an integer dtype passed exact_in: every divisor is 1
        matrix.data /= np.repeat(divisor, np.diff(matrix.indptr)).astype(dtype)
    return in_format(in_layout(matrix, geom.input_shape, geom.output_shape, layout,
                               "avg_pool_matrix"), format)


def _pool_arguments(input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override) -> tuple:
    """:func:`avg_pool_matrix`'s arguments checked as PyTorch checks them: ``(shape, kernel,
    stride, pads, padded, divisor_override)``, ``pads`` per axis with ``ceil_mode``'s extra
    window's zeros on the high side, ``padded`` the padded sizes without them."""
    ceil_mode = as_bool(ceil_mode, "ceil_mode")
    as_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None:  # (a new user's trial: -1, which PyTorch takes, refused)
        if not is_int(divisor_override):
            raise TypeError(f"divisor_override must be a nonzero integer, got "
                            f"{divisor_override!r}")
        if divisor_override == 0 or abs(divisor_override) >= 2**63:
            raise ValueError(f"divisor_override must be a nonzero integer of int64, as "
                             f"PyTorch takes it, got {divisor_override!r}")
        divisor_override = int(divisor_override)
    shape = ConvGeometry.from_kernel_size(input_shape, 1).input_shape  # validated
    ndim = len(shape) - 1
    kernel = int_tuple(kernel_size, ndim, "kernel_size", 1, broadcast_one=True)
    stride_default = stride is None
    stride = int_tuple(kernel if stride is None else stride, ndim, "stride", 1,
                       broadcast_one=True)
    if isinstance(padding, str) and padding == "same" and any(s != 1 for s in stride):
        raise ValueError(f"padding='same' needs stride=1, got stride={stride}"
                         + (" (the default: kernel_size, as in PyTorch)" if stride_default
                            else ""))
    pads = normalize_padding(padding, ndim, kernel, stride, (1,) * ndim)
    if any(max(pad) > k // 2 for pad, k in zip(pads, kernel)):
        raise ValueError(f"padding={padding!r} must be at most half of kernel_size="
                         f"{kernel} on every side (PyTorch's limit)")
    if ndim == 3 and any(n < k for n, k in zip(shape[1:], kernel)):  # (a review found it
        # built: PyTorch's avg_pool3d alone checks the kernel against the unpadded input)
        raise ValueError(f"kernel_size={kernel} is larger than the unpadded input "
                         f"{tuple(shape[1:])} on some axis, which avg_pool3d refuses "
                         "(avg_pool1d and avg_pool2d accept it)")
    padded = [n + lo + hi for n, (lo, hi) in zip(shape[1:], pads)]
    if ceil_mode:  # the last window may hang over the padded input: zeros there, not stored
        pads = [(lo, hi + _ceil_extra(n, k, s, lo, hi))
                for n, k, s, (lo, hi) in zip(shape[1:], kernel, stride, pads)]
    return shape, kernel, stride, pads, padded, divisor_override


def _ceil_extra(n: int, k: int, s: int, lo: int, hi: int) -> int:
    """Zeros to add after the padded input so that PyTorch's ceil-mode output exists.

    PyTorch takes ``floor((n + lo + hi - k + s - 1) / s) + 1`` windows, less one if the last
    would start beyond the input and its low padding; the last may then overhang by the value
    returned, even when the kernel is larger than the padded input (``avg_pool1d`` of 2 values
    with a kernel of 4 and stride 3 is one cut window). 0 when that count is below one: the
    geometry then refuses the layer, as PyTorch does.
    """
    covered = n + lo + hi
    out = (covered - k + s - 1) // s + 1
    if (out - 1) * s >= n + lo:
        out -= 1
    return max(0, (out - 1) * s + k - covered)
