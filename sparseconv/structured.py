"""The tutorial's constructions of convolution as matrices, as real ``scipy.sparse`` arrays.

Each function builds its matrix the way the tutorial explains it, independently of the
gather-map assembly of :func:`sparseconv.conv_matrix`, and the tests prove that the two agree:

* a 1-D convolution is a Toeplitz matrix: kernel element ``j`` fills one diagonal;
* a 2-D convolution is a Toeplitz matrix of Toeplitz blocks (a circulant of circulants when
  circular): ``sum_j kron(T(e_j), T(kernel[j]))`` over the 1-D matrices of the kernel rows;
* im2col, padding and stride are 0/1 selection matrices, the geometry's gather map itself:
  they live in :mod:`sparseconv.selection`;
* channels are blocks: ``kron(W, I)`` for a 1x1 convolution, a block array in general, block
  diagonal with groups;
* dilation is a zero-inserted kernel, and a transposed convolution is a direct convolution with
  the flipped, channel-swapped kernel after zero insertion (fractionally strided).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from .geometry import (
    ConvGeometry,
    _int_tuple,
    _is_int,
    _spatial_size,
    as_weight,
    result_dtype,
)
from .limits import check_sparse_memory
from .matrices import _check_format, conv_matrix
from .selection import stride_matrix

__all__ = [
    "toeplitz_matrix",
    "doubly_block_toeplitz",
    "doubly_block_circulant",
    "conv1x1_matrix",
    "block_conv_matrix",
    "dilate_kernel",
    "transpose_kernel",
    "fractionally_strided",
]

_MODES = ("full", "valid", "same")  # numpy.convolve and scipy.signal.convolve2d modes


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _kernel(kernel, ndim: int, name: str = "kernel") -> np.ndarray:
    kernel = as_weight(kernel, name)
    if kernel.ndim != ndim or kernel.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got {name}.shape="
                         f"{kernel.shape}")
    return kernel


def _check_mode(mode) -> None:
    if not (isinstance(mode, str) and mode in _MODES):
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


def _window(axis) -> tuple[int, int]:
    """``(first, rows)``: the rows of the full convolution a true convolution's axis keeps.

    Output ``o`` of a flipped kernel reads input ``o + t - lo`` with ``kernel[m-1-t]``, so kernel
    element ``j`` lies on diagonal ``column - row = first - j`` with ``first = m - 1 - lo``.
    """
    return axis.kernel_size - 1 - axis.pad[0], axis.output_size


def _diagonals(values: np.ndarray, offsets, shape: tuple[int, int]) -> sp.csr_array:
    """The matrix with ``values[i]`` all along diagonal ``offsets[i]`` (``column - row``)."""
    data = np.repeat(values[:, None], shape[1], axis=1)
    return sp.dia_array((data, np.asarray(offsets)), shape=shape).tocsr()


def _kron_sum(outer: list, inner: list) -> sp.csr_array:
    """``sum_j kron(outer[j], inner[j])``: blocks ``inner[j]`` placed where ``outer[j]`` is 1."""
    terms = [sp.kron(a, b, format="csr") for a, b in zip(outer, inner)]
    return sum(terms[1:], terms[0])


# ---------------------------------------------------------------------------------------------
# Toeplitz and circulant
# ---------------------------------------------------------------------------------------------
def toeplitz_matrix(kernel: np.ndarray, n: int, mode: str = "full", *, format: str = "csr",
                    dtype=None) -> sp.sparray:
    """The Toeplitz matrix of the 1-D convolution with ``kernel``, as a sparse array.

    Parameters
    ----------
    kernel : array_like, shape (m,)
    n : int
        Length of the input.
    mode : {"full", "valid", "same"}
        As ``numpy.convolve``: output length ``n+m-1``, ``max(m,n)-min(m,n)+1``, ``max(m,n)``.
    format : {"csr", "csc", "coo", "bsr"}
    dtype : numpy dtype, optional
        By default the kernel's (integers become float64).

    Returns
    -------
    scipy.sparse array
        Equal to ``scipy.linalg.convolution_matrix(kernel, n, mode)``, with zeros not stored.

    Raises
    ------
    ValueError, TypeError
        An empty or non-1-D kernel, ``n < 1``, an unknown mode or format.

    See Also
    --------
    scipy.linalg.convolution_matrix : the dense matrix.
    conv_matrix : equal to ``conv_matrix(kernel[None, None], (1, n), padding=mode, flip=True)``
        when ``m <= n``.

    Notes
    -----
    ``T[i, c] = kernel[i + first - c]``: kernel element ``j`` fills the diagonal ``c - i =
    first - j``. The window ``first`` is that of :func:`conv_matrix` with ``flip=True``, the
    shorter of kernel and input sliding over the longer (convolution commutes).

    Examples
    --------
    >>> from sparseconv.structured import toeplitz_matrix
    >>> toeplitz_matrix([1.0, 2.0, 3.0], 4, mode="valid").toarray()
    array([[3., 2., 1., 0.],
           [0., 3., 2., 1.]])
    """
    _check_format(format)
    kernel = _kernel(kernel, 1)
    if not _is_int(n) or n < 1:
        raise (ValueError if _is_int(n) else TypeError)(f"n must be a positive integer, got {n!r}")
    _check_mode(mode)
    short, long = sorted((kernel.size, int(n)))
    first, rows = _window(ConvGeometry.from_weight(
        (1, 1, short), (1, long), padding=mode, flip=True).axes[0])
    dtype = result_dtype(kernel, dtype)
    check_sparse_memory(kernel.size * n, rows, dtype, f"the {rows} x {n} Toeplitz matrix")
    offsets = first - np.arange(kernel.size)
    return _diagonals(kernel.astype(dtype), offsets, (rows, int(n))).asformat(format)


def _geometry_2d(kernel, input_size, padding, padding_mode="zeros") -> ConvGeometry:
    input_size = _spatial_size(input_size, "input_size")
    if len(input_size) != 2:
        raise ValueError(f"input_size must be (height, width), got input_size={input_size}")
    return ConvGeometry.from_weight((1, 1, *kernel.shape), (1, *input_size), padding=padding,
                                    padding_mode=padding_mode, flip=True)


def doubly_block_toeplitz(kernel: np.ndarray, input_size: Sequence[int], mode: str = "full", *,
                          format: str = "csr", dtype=None) -> sp.sparray:
    """The 2-D convolution as a Toeplitz matrix of Toeplitz blocks, assembled from kernel rows.

    Parameters
    ----------
    kernel : array_like, shape (m0, m1)
    input_size : tuple of 2 int
        ``(n0, n1)``.
    mode : {"full", "valid", "same"}
        As ``scipy.signal.convolve2d``; ``"valid"`` gives the ``(n0-m0+1)(n1-m1+1) x n0*n1``
        matrix of the tutorial.
    format : {"csr", "csc", "coo", "bsr"}
    dtype : numpy dtype, optional

    Returns
    -------
    scipy.sparse array
        Equal to ``conv_matrix(kernel[None, None], (1, n0, n1), padding=mode, flip=True)``.

    Raises
    ------
    ValueError, TypeError
        A non-2-D kernel, a bad size or mode, a kernel larger than the input with ``"valid"``.

    See Also
    --------
    toeplitz_matrix, doubly_block_circulant

    Notes
    -----
    With ``T_d(v)`` the 1-D Toeplitz matrix of ``v`` along axis ``d`` (in the window of
    ``mode``) and ``e_j`` the unit vector, ``A = sum_j kron(T_0(e_j), T_1(kernel[j]))``: block
    ``(I, J)`` is ``T_1(kernel[I - J + first_0])``, constant along block diagonals.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv.structured import doubly_block_toeplitz
    >>> doubly_block_toeplitz(np.ones((3, 3)), (5, 5), mode="valid").shape
    (9, 25)
    """
    _check_format(format)
    kernel = _kernel(kernel, 2)
    _check_mode(mode)
    geom = _geometry_2d(kernel, input_size, mode)
    (first0, rows0), (first1, rows1) = map(_window, geom.axes)
    (n0, n1), (m0, m1) = geom.input_size, kernel.shape
    dtype = result_dtype(kernel, dtype)
    check_sparse_memory(rows0 * rows1 * kernel.size, rows0 * rows1, dtype,
                   f"the {rows0 * rows1} x {n0 * n1} doubly block Toeplitz matrix")
    blocks = [_diagonals(row.astype(dtype), first1 - np.arange(m1), (rows1, n1)) for row in kernel]
    shifts = [_diagonals(np.ones(1, dtype), [first0 - j], (rows0, n0)) for j in range(m0)]
    return _kron_sum(shifts, blocks).asformat(format)


def _circulant(column: np.ndarray) -> sp.csr_array:
    """``sum_j column[j] P^j``, ``P`` the cyclic shift: ``C[i, c] = column[(i - c) % n]``."""
    n, lags = column.size, np.flatnonzero(column)
    wrapped = lags[lags > 0]  # lag j also fills the corner diagonal n - j
    return _diagonals(np.concatenate([column[lags], column[wrapped]]),
                      np.concatenate([-lags, n - wrapped]), (n, n))


def doubly_block_circulant(kernel: np.ndarray, input_size: Sequence[int], *,
                           format: str = "csr", dtype=None) -> sp.sparray:
    """The circular 2-D convolution as a circulant matrix of circulant blocks.

    Parameters
    ----------
    kernel : array_like, shape (m0, m1)
    input_size : tuple of 2 int
        ``(n0, n1)``; PyTorch's circular limit applies (padding at most the input size).
    format : {"csr", "csc", "coo", "bsr"}
    dtype : numpy dtype, optional

    Returns
    -------
    scipy.sparse array, shape (n0*n1, n0*n1)
        Equal to ``conv_matrix(kernel[None, None], (1, n0, n1), padding="same",
        padding_mode="circular", flip=True)``.

    Raises
    ------
    ValueError, TypeError
        A non-2-D kernel, a bad size, a kernel too large for circular padding.

    See Also
    --------
    doubly_block_toeplitz

    Notes
    -----
    The kernel, wrapped onto the torus with element ``first`` at the origin, is the first
    column ``c`` of the matrix; ``A = sum_j kron(P_0^j, C_1(c[j]))`` with ``C_1(v) = sum_i v[i]
    P_1^i``. The 2-D DFT diagonalizes it: its eigenvalues are ``fft2(c)``, the DFT of the kernel
    times the phase of the shift ``first``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv.structured import doubly_block_circulant
    >>> A = doubly_block_circulant(np.arange(1.0, 10.0).reshape(3, 3), (4, 4))
    >>> bool(np.allclose(A.sum(axis=0), 45.0))            # every column holds the kernel once
    True
    """
    _check_format(format)
    kernel = _kernel(kernel, 2)
    geom = _geometry_2d(kernel, input_size, "same", "circular")
    firsts = [_window(axis)[0] for axis in geom.axes]
    n0, n1 = size = geom.input_size
    dtype = result_dtype(kernel, dtype)
    check_sparse_memory(n0 * n1 * kernel.size, n0 * n1, dtype,
                   f"the {n0 * n1} x {n0 * n1} doubly block circulant matrix")
    # the first column: kernel element j at lag (j - first) mod n, taps wrapping onto one summed
    column = np.zeros(size, dtype)
    np.add.at(column, np.ix_(*[(np.arange(m) - f) % n
                              for m, f, n in zip(kernel.shape, firsts, size)]), kernel)
    lags = np.flatnonzero(column.any(axis=1))
    shifts = [_circulant(np.eye(1, n0, j, dtype=dtype).ravel()) for j in lags]
    blocks = [_circulant(column[j]) for j in lags]
    if not blocks:  # an all-zero kernel
        return sp.csr_array((n0 * n1, n0 * n1), dtype=dtype).asformat(format)
    return _kron_sum(shifts, blocks).asformat(format)


# ---------------------------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------------------------
def conv1x1_matrix(weight: np.ndarray, spatial: int | Sequence[int], *, format: str = "csr",
                   dtype=None) -> sp.sparray:
    """A 1x1 convolution (channel mixing) as ``kron(W, I)``.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in)
    spatial : int or tuple of int
        The spatial size, kept unchanged.
    format : {"csr", "csc", "coo", "bsr"}
    dtype : numpy dtype, optional

    Returns
    -------
    scipy.sparse array, shape (C_out * prod(spatial), C_in * prod(spatial))
        Equal to ``conv_matrix(weight[:, :, None, ...], (C_in, *spatial))``.

    Raises
    ------
    ValueError, TypeError
        A weight that is not a non-empty 2-D numeric array, a bad spatial size.

    See Also
    --------
    block_conv_matrix

    Notes
    -----
    ``y[o] = sum_c W[o, c] x[c]`` at every position: ``A = W ⊗ I_{prod(spatial)}``.

    Examples
    --------
    >>> from sparseconv.structured import conv1x1_matrix
    >>> conv1x1_matrix([[1.0, 2.0]], 2).toarray()
    array([[1., 0., 2., 0.],
           [0., 1., 0., 2.]])
    """
    _check_format(format)
    weight = _kernel(weight, 2, "weight")
    spatial = _spatial_size(spatial, "spatial")
    dtype, n = result_dtype(weight, dtype), math.prod(spatial)
    check_sparse_memory(weight.size * n, weight.shape[0] * n, dtype,
                   f"the {weight.shape[0] * n} x {weight.shape[1] * n} 1x1 convolution matrix")
    return sp.kron(sp.csr_array(weight.astype(dtype)), sp.eye_array(n, dtype=dtype),
                   format=format)


def block_conv_matrix(
    weight: np.ndarray, input_shape: Sequence[int], *, stride=1, padding=0, dilation=1,
    groups: int = 1, padding_mode: str = "zeros", flip: bool = False, format: str = "csr",
    dtype=None,
) -> sp.sparray:
    """A multi-channel convolution as a block array of single-channel matrices.

    Parameters
    ----------
    weight, input_shape, stride, padding, dilation, groups, padding_mode, flip, format, dtype
        As for :func:`sparseconv.conv_matrix`.

    Returns
    -------
    scipy.sparse array
        Equal to ``conv_matrix(weight, input_shape, ...)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_matrix`.

    See Also
    --------
    conv1x1_matrix, conv_matrix

    Notes
    -----
    Group ``g`` is the ``C_out/groups x C_in/groups`` block array whose block ``(o, c)`` is
    the single-channel matrix of ``weight[o, c]``; the groups sit on the diagonal
    (``scipy.sparse.block_diag``). One small matrix a channel pair: meant to show the
    structure, not for speed.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix
    >>> from sparseconv.structured import block_conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 1, 3, 3))
    >>> B = block_conv_matrix(w, (2, 5, 5), padding=1, groups=2)
    >>> bool(abs(B - conv_matrix(w, (2, 5, 5), padding=1, groups=2)).max() == 0)
    True
    """
    _check_format(format)
    weight = as_weight(weight)
    geom = ConvGeometry.from_weight(weight.shape, input_shape, stride=stride, padding=padding,
                                    dilation=dilation, groups=groups, padding_mode=padding_mode,
                                    flip=flip)
    dtype = result_dtype(weight, dtype)
    check_sparse_memory(geom.nnz(), geom.shape[0], dtype,
                   f"the {geom.shape[0]} x {geom.shape[1]} block convolution matrix")
    kwargs = dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation,
                  padding_mode=geom.padding_mode, flip=geom.flip, dtype=dtype)
    single = (1, *geom.input_size)
    per_group = geom.out_channels // geom.groups
    group_blocks = [
        sp.block_array([[conv_matrix(weight[o:o + 1, c:c + 1], single, **kwargs)
                         for c in range(weight.shape[1])]
                        for o in range(g * per_group, (g + 1) * per_group)])
        for g in range(geom.groups)
    ]
    return sp.block_diag(group_blocks, format=format)


# ---------------------------------------------------------------------------------------------
# Dilation and transposed convolution as direct convolutions
# ---------------------------------------------------------------------------------------------
def _layer_weight(weight, name: str = "weight") -> np.ndarray:
    weight = as_weight(weight, name)
    if weight.ndim < 3 or weight.size == 0:
        raise ValueError(f"{name} must have shape (channels, channels, *kernel_size) with at "
                         f"least one spatial dimension, got {name}.shape={weight.shape}")
    return weight


def dilate_kernel(weight: np.ndarray, dilation: int | Sequence[int]) -> np.ndarray:
    """The kernel with ``dilation - 1`` zeros inserted between its taps.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    dilation : int or tuple of int

    Returns
    -------
    ndarray, shape (C_out, C_in/groups, *(dilation*(kernel_size-1)+1))
        ``conv_matrix(weight, ..., dilation=d)`` equals ``conv_matrix(dilate_kernel(weight,
        d), ...)`` (the latter stores the inserted zeros).

    Raises
    ------
    ValueError, TypeError
        A bad weight or dilation.

    Examples
    --------
    >>> from sparseconv.structured import dilate_kernel
    >>> dilate_kernel([[[1.0, 2.0, 3.0]]], 2)
    array([[[1., 0., 2., 0., 3.]]])
    """
    weight = _layer_weight(weight)
    dilation = _int_tuple(dilation, weight.ndim - 2, "dilation", 1)
    size = [d * (k - 1) + 1 for k, d in zip(weight.shape[2:], dilation)]
    out = np.zeros((*weight.shape[:2], *size), dtype=weight.dtype)
    out[(Ellipsis, *(slice(None, None, d) for d in dilation))] = weight
    return out


def transpose_kernel(weight: np.ndarray, groups: int = 1) -> np.ndarray:
    """A transposed convolution's kernel as the direct convolution's: channels swapped, flipped.

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out/groups, *kernel_size)
        PyTorch's transposed layout.
    groups : int

    Returns
    -------
    ndarray, shape (C_out, C_in/groups, *kernel_size)
        ``out[g*C_out/groups + o, c] = weight[g*C_in/groups + c, o]`` flipped on every axis.

    Raises
    ------
    ValueError, TypeError
        A bad weight, or ``groups`` not dividing ``C_in``.

    See Also
    --------
    fractionally_strided

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv.structured import transpose_kernel
    >>> transpose_kernel(np.arange(6.0).reshape(1, 2, 3))
    array([[[2., 1., 0.]],
    <BLANKLINE>
           [[5., 4., 3.]]])
    """
    weight = _layer_weight(weight)
    if not _is_int(groups) or groups < 1 or weight.shape[0] % groups:
        raise (ValueError if _is_int(groups) else TypeError)(
            f"groups must be a positive integer dividing weight.shape[0]={weight.shape[0]}, "
            f"got {groups!r}")
    c_in, out_per_group, *kernel = weight.shape
    swapped = weight.reshape(groups, c_in // groups, out_per_group, *kernel).swapaxes(1, 2)
    flipped = swapped[(Ellipsis, *[slice(None, None, -1)] * len(kernel))]
    return np.ascontiguousarray(flipped).reshape(groups * out_per_group, c_in // groups, *kernel)


def fractionally_strided(
    weight: np.ndarray, input_shape: Sequence[int], *, stride=1, padding=0, output_padding=0,
    dilation=1, groups: int = 1, format: str = "csr", dtype=None,
) -> tuple[sp.sparray, sp.sparray]:
    """A transposed convolution as zero insertion followed by a stride-1 direct convolution.

    Parameters
    ----------
    weight, input_shape, stride, padding, output_padding, dilation, groups, format, dtype
        As for :func:`sparseconv.conv_transpose_matrix`; ``padding`` at most
        ``dilation*(kernel_size-1)`` per side (a larger one would crop).

    Returns
    -------
    A : scipy.sparse array
        ``conv_matrix(transpose_kernel(weight, groups), (C_in, *inserted), padding=pads,
        dilation=dilation, groups=groups)`` with ``inserted = (n - 1)*stride + 1``.
    U : scipy.sparse array
        Zero insertion, ``stride_matrix((C_in, *inserted), stride).T`` (the identity for
        stride 1). ``A @ U`` equals ``conv_transpose_matrix(weight, input_shape, ...)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_transpose_matrix`; a padding larger than ``dilation*(kernel_size-1)``.

    See Also
    --------
    transpose_kernel, stride_matrix

    Notes
    -----
    With ``e = dilation*(k-1)``, the direct convolution pads ``(e - lo, e - hi +
    output_padding)``: "full" padding minus the transposed layer's. Stride 1 is the first
    picture of the tutorial, the flipped kernel sliding with full padding.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_transpose_matrix
    >>> from sparseconv.structured import fractionally_strided
    >>> w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    >>> A, U = fractionally_strided(w, (2, 4, 4), stride=2, padding=1, output_padding=1)
    >>> T = conv_transpose_matrix(w, (2, 4, 4), stride=2, padding=1, output_padding=1)
    >>> U.shape, bool(abs(A @ U - T).max() < 1e-12)
    ((98, 32), True)
    """
    _check_format(format)
    weight = _layer_weight(weight)
    # the forward convolution (C_out, *out) -> (C_in, *n) whose adjoint is the layer
    geom = ConvGeometry.for_transpose(weight.shape, input_shape, stride=stride, padding=padding,
                                      output_padding=output_padding, dilation=dilation,
                                      groups=groups)
    inserted = [(a.output_size - 1) * a.stride + 1 for a in geom.axes]
    pads = []
    for axis, size in zip(geom.axes, inserted):
        extent = axis.dilation * (axis.kernel_size - 1)
        lo = extent - axis.pad[0]  # then hi makes the output exactly the transposed size
        pads.append((lo, axis.size - size - lo + extent))
    if min(min(p) for p in pads) < 0:
        raise ValueError(
            f"padding={geom.padding} exceeds dilation*(kernel_size-1) for kernel_size="
            f"{geom.kernel_size}, dilation={geom.dilation}: the direct picture would crop")
    c_in = weight.shape[0]
    upsample = stride_matrix((c_in, *inserted), geom.stride, dtype=result_dtype(weight, dtype))
    direct = conv_matrix(transpose_kernel(weight, groups), (c_in, *inserted), padding=pads,
                         dilation=geom.dilation, groups=groups, format=format, dtype=dtype)
    return direct, upsample.T.asformat(format)
