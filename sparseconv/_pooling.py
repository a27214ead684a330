"""Average pooling as a sparse matrix (PyTorch's ``avg_pool{1,2,3}d``).

Pooling is a depthwise convolution with a constant kernel: the windows are the gather map of
a weightless depthwise geometry (:meth:`ConvGeometry.from_kernel_size`), and each row is
divided by the number of positions its window counts (``count_include_pad``,
``divisor_override``). ``ceil_mode`` adds the cut last window PyTorch adds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ._geometry import ConvGeometry
from ._matrices import check_format, conv_matrix
from ._validation import is_int, result_dtype

__all__ = ["avg_pool_matrix"]

def avg_pool_matrix(
    input_shape: Sequence[int], kernel_size: int | Sequence[int], stride=None, padding=0,
    ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None, *, format: str = "csr", dtype=np.float64,
) -> sp.sparray:
    """The sparse matrix of average pooling (PyTorch's ``avg_pool{1,2,3}d``).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``.
    kernel_size, stride : int or tuple of int
        ``stride`` defaults to ``kernel_size``, as in PyTorch.
    padding : int, tuple of int, or tuple of (lo, hi) pairs
        Zero padding, at most ``kernel_size // 2`` per side (PyTorch's limit).
    ceil_mode : bool
        Round the output size up: one more window where the last one would hang over the
        padded input, provided it starts inside the input or the low padding (PyTorch's rule).
    count_include_pad : bool
        Divide by the window's positions inside the padded input (True) or by the input
        positions it covers (False).
    divisor_override : int, optional
        Divide every window by this number instead.
    format : {"csr", "csc", "coo", "bsr"}
    dtype : numpy dtype, default float64

    Returns
    -------
    scipy.sparse array, shape (C * prod(out), C * prod(spatial))

    Raises
    ------
    ValueError, TypeError
        A bad shape or argument, a padding over half the kernel.

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
    """
    check_format(format)
    geom = ConvGeometry.from_kernel_size(input_shape, kernel_size, depthwise=True,
                                         stride=kernel_size if stride is None else stride,
                                         padding=padding)
    if any(max(pad) > k // 2 for pad, k in zip(geom.padding, geom.kernel_size)):
        raise ValueError(f"padding={padding!r} must be at most half of kernel_size="
                         f"{geom.kernel_size} on every side (PyTorch's limit)")
    for name, flag in (("ceil_mode", ceil_mode), ("count_include_pad", count_include_pad)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    if divisor_override is not None and not (is_int(divisor_override) and divisor_override > 0):
        raise ValueError(f"divisor_override must be a positive integer, got {divisor_override!r}")
    dtype = result_dtype(np.empty(0), dtype)
    padded = [a.padded_size for a in geom.axes]
    if ceil_mode:  # the last window may hang over the padded input: zeros there, not stored
        geom = ConvGeometry.from_kernel_size(
            geom.input_shape, geom.kernel_size, depthwise=True, stride=geom.stride,
            padding=[(lo, hi + _ceil_extra(a)) for a, (lo, hi) in zip(geom.axes, geom.padding)])
    matrix = conv_matrix(np.ones(geom.weight_shape), geom.input_shape, stride=geom.stride,
                         padding=geom.padding, groups=geom.groups, dtype=dtype)
    if divisor_override is not None:
        divisor = np.full(matrix.shape[0], float(divisor_override))
    elif count_include_pad:  # the window's taps inside the padded input
        per_axis = [np.minimum(start + a.kernel_size, size) - start
                    for a, size in zip(geom.axes, padded)
                    for start in [np.arange(a.output_size) * a.stride]]
        window = functools.reduce(np.multiply.outer, per_axis).ravel()
        divisor = np.tile(window.astype(float), geom.in_channels)
    else:  # zero padding stores only the taps that read the input
        divisor = np.diff(matrix.indptr).astype(float)
    matrix.data /= np.repeat(divisor, np.diff(matrix.indptr)).astype(dtype)
    return matrix.asformat(format)


def _ceil_extra(axis) -> int:
    """Zeros to add after the padded input so that PyTorch's ceil-mode output exists.

    Ceil mode takes ``ceil((n + lo + hi - k) / stride) + 1`` windows, less one if the last would
    start beyond the input and its low padding; the last may then overhang by ``extra``.
    """
    lo, hi = axis.pad
    covered = axis.size + lo + hi
    out = -(-(covered - axis.kernel_size) // axis.stride) + 1
    if (out - 1) * axis.stride >= axis.size + lo:
        out -= 1
    return max(0, (out - 1) * axis.stride + axis.kernel_size - covered)


