"""The tutorial's constructions of convolution as matrices, as real ``scipy.sparse`` arrays.

Each function builds its matrix the way the tutorial explains it, independently of the
gather-map assembly of :func:`sparseconv.conv_matrix`, and the tests prove that the two agree:

* a 1-D convolution is a Toeplitz matrix: kernel element ``j`` fills one diagonal;
* a 2-D convolution is a Toeplitz matrix of Toeplitz blocks (a circulant of circulants when
  circular): ``sum_j kron(T(e_j), T(kernel[j]))`` over the 1-D matrices of the kernel rows;
* im2col, padding and stride are 0/1 selection matrices, the geometry's gather map itself:
  they live in :mod:`sparseconv._selection`;
* channels are blocks: ``kron(W, I)`` for a 1x1 convolution, a block array in general, block
  diagonal with groups;
* dilation is a zero-inserted kernel, and a transposed convolution is a direct convolution with
  the flipped, channel-swapped kernel after zero insertion (fractionally strided): they live
  in :mod:`sparseconv._transposed`.

Every builder is sized against the memory limit before it allocates, counting the pieces scipy
holds at once while it assembles (Kronecker terms and their sum, block arrays) and any format
conversion. float16 kernels are computed in float32, as everywhere in sparseconv.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._formats import in_format
from ._geometry import ConvGeometry
from ._matrices import check_format, conv_matrix, format_bytes
from ._memory import check_memory
from ._typing import (
    ArrayLike,
    ConvMode,
    DTypeLike,
    IntOrTuple,
    Layout,
    PaddingLike,
    PaddingMode,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import (
    as_weight,
    check_layout,
    held_in,
    is_int,
    layer_dtype,
    one_of,
    positive_int,
    spatial_size,
    summable,
)

__all__ = [
    "toeplitz_matrix",
    "doubly_block_toeplitz",
    "doubly_block_circulant",
    "conv1x1_matrix",
    "block_conv_matrix",
]

_MODES = ("full", "valid", "same")  # numpy.convolve and scipy.signal.convolve2d modes


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _check_memory(nnz: int, shape: tuple[int, int], dtype, format: str, what: str, *,
                  copies: int = 2, dense: int = 0) -> None:
    """Size a construction against the limit: ``copies`` COO-sized sets of its ``nnz``
    entries alive at once (Kronecker terms, their running sum, scipy's block assembly), the
    CSR row pointers, a converted copy in ``format``, and ``dense`` extra values."""
    item = np.dtype(dtype).itemsize
    nbytes = copies * nnz * (item + 16) + 16 * (shape[0] + 1) + dense * item
    if format != "csr":
        nbytes += format_bytes(nnz, shape, dtype, np.int64, format)
    check_memory(nbytes, what)


def _kernel(kernel, ndim: int, name: str = "kernel") -> np.ndarray:
    kernel = as_weight(kernel, name)
    if kernel.ndim != ndim or kernel.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got {name}.shape="
                         f"{kernel.shape}")
    return kernel


def _check_mode(mode) -> None:
    one_of(mode, _MODES, "mode")


def _window(axis) -> tuple[int, int]:
    """``(first, rows)``: the rows of the full convolution a true convolution's axis keeps.

    Output ``o`` of a flipped kernel reads input ``o + t - lo`` with ``kernel[m-1-t]``, so kernel
    element ``j`` lies on diagonal ``column - row = first - j`` with ``first = m - 1 - lo``.
    """
    return axis.kernel_size - 1 - axis.pad[0], axis.output_size


def _diagonals(values: np.ndarray, offsets, shape: tuple[int, int]) -> sp.csr_array:
    """The matrix with ``values[i]`` all along diagonal ``offsets[i]`` (``column - row``)."""
    offsets = np.asarray(offsets)
    inside = (offsets > -shape[0]) & (offsets < shape[1])  # diags_array refuses the others
    if not inside.any():
        return sp.csr_array(shape, dtype=values.dtype)
    return sp.diags_array(list(values[inside]), offsets=offsets[inside].tolist(), shape=shape,
                          format="csr", dtype=values.dtype)


def _kron_sum(outer: list, inner: list) -> sp.csr_array:
    """``sum_j kron(outer[j], inner[j])``: blocks ``inner[j]`` placed where ``outer[j]`` is 1."""
    # scipy's kron of two empty arrays is float64 whatever their dtypes: cast back
    terms = [sp.kron(a, b, format="csr").astype(np.result_type(a.dtype, b.dtype), copy=False)
             for a, b in zip(outer, inner)]
    return sum(terms[1:], terms[0])


# ---------------------------------------------------------------------------------------------
# Toeplitz and circulant
# ---------------------------------------------------------------------------------------------
def toeplitz_matrix(kernel: ArrayLike, n: int, mode: ConvMode = "full", *,
                    format: SparseFormat = "csr", dtype: DTypeLike | None = None) -> SparseArray:
    """The Toeplitz matrix of the 1-D convolution with ``kernel``, as a sparse array.

    Parameters
    ----------
    kernel : array_like, shape (m,)
    n : int
        Length of the input.
    mode : {"full", "valid", "same"}, optional
        As ``numpy.convolve``: output length ``n+m-1``, ``max(m,n)-min(m,n)+1``, ``max(m,n)``.
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, optional
        By default the kernel's (integers become float64, float16 float32).

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
    >>> from sparseconv import toeplitz_matrix
    >>> toeplitz_matrix([1.0, 2.0, 3.0], 4, mode="valid").toarray()
    array([[3., 2., 1., 0.],
           [0., 3., 2., 1.]])
    """
    check_format(format)
    kernel = _kernel(kernel, 1)
    if not is_int(n) or n < 1:
        raise (ValueError if is_int(n) else TypeError)(f"n must be a positive integer, got {n!r}")
    _check_mode(mode)
    short, long = sorted((kernel.size, int(n)))
    first, rows = _window(ConvGeometry.from_weight(
        (1, 1, short), (1, long), padding=mode, flip=True).axes[0])
    dtype = layer_dtype(kernel, dtype)
    _check_memory(kernel.size * max(n, rows), (rows, int(n)), dtype, format,
                  f"the {rows} x {n} Toeplitz matrix")
    offsets = first - np.arange(kernel.size)
    return in_format(_diagonals(kernel.astype(dtype), offsets, (rows, int(n))), format)


def _size_2d(input_size) -> tuple[int, ...]:
    """``input_size`` validated as ``(height, width)``."""
    input_size = spatial_size(input_size, "input_size")
    if len(input_size) != 2:
        raise ValueError(f"input_size must be (height, width), got input_size={input_size}")
    return input_size


def _geometry_2d(kernel_shape, input_size, padding, padding_mode="zeros") -> ConvGeometry:
    return ConvGeometry.from_weight((1, 1, *kernel_shape), (1, *_size_2d(input_size)),
                                    padding=padding, padding_mode=padding_mode, flip=True)


def doubly_block_toeplitz(kernel: ArrayLike, input_size: ShapeLike, mode: ConvMode = "full", *,
                          format: SparseFormat = "csr",
                          dtype: DTypeLike | None = None) -> SparseArray:
    """The 2-D convolution as a Toeplitz matrix of Toeplitz blocks, assembled from kernel rows.

    Parameters
    ----------
    kernel : array_like, shape (m0, m1)
    input_size : tuple of 2 int
        ``(n0, n1)``.
    mode : {"full", "valid", "same"}, optional
        As ``scipy.signal.convolve2d``; ``"valid"`` gives the ``(n0-m0+1)(n1-m1+1) x n0*n1``
        matrix of the tutorial, or ``(m0-n0+1)(m1-n1+1) x n0*n1`` for a kernel that contains
        the input on both axes (convolution commutes: the input slides over the kernel).
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, optional

    Returns
    -------
    scipy.sparse array
        Equal to ``conv_matrix(kernel[None, None], (1, n0, n1), padding=mode, flip=True)``
        where the kernel fits in the input.

    Raises
    ------
    ValueError, TypeError
        A non-2-D kernel, a bad size or mode; with ``"valid"``, a kernel larger than the
        input on one axis and smaller on the other (``scipy.signal.convolve2d`` refuses it too).

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
    >>> from sparseconv import doubly_block_toeplitz
    >>> doubly_block_toeplitz(np.ones((3, 3)), (5, 5), mode="valid").shape
    (9, 25)
    """
    check_format(format)
    kernel = _kernel(kernel, 2)
    _check_mode(mode)
    size = spatial_size(input_size, "input_size")
    if mode == "valid" and len(size) == 2 and all(m >= n for m, n in zip(kernel.shape, size)) \
            and kernel.shape != size:
        # convolution commutes: as scipy.signal.convolve2d, the input slides over the kernel
        # (a new user's trial: refused, where toeplitz_matrix and convolve2d take it)
        windows = _geometry_2d(size, kernel.shape, mode).axes
        (n0, n1), (m0, m1) = size, kernel.shape
    else:
        if mode == "valid" and len(size) == 2 and any(m > n for m, n in zip(kernel.shape, size)):
            raise ValueError(f"with mode='valid', the kernel must fit in the input on both axes "
                             f"or contain it on both (scipy.signal.convolve2d's rule), got "
                             f"kernel.shape={kernel.shape} and input_size={size}")
        geom = _geometry_2d(kernel.shape, size, mode)
        windows = geom.axes
        (n0, n1), (m0, m1) = geom.input_size, kernel.shape
    (first0, rows0), (first1, rows1) = map(_window, windows)
    dtype = layer_dtype(kernel, dtype)
    _check_memory(rows0 * rows1 * kernel.size, (rows0 * rows1, n0 * n1), dtype, format,
                  f"the {rows0 * rows1} x {n0 * n1} doubly block Toeplitz matrix", copies=4)
    blocks = [_diagonals(row.astype(dtype), first1 - np.arange(m1), (rows1, n1)) for row in kernel]
    shifts = [_diagonals(np.ones(1, dtype), [first0 - j], (rows0, n0)) for j in range(m0)]
    return in_format(_kron_sum(shifts, blocks), format)


def _circulant(column: np.ndarray) -> sp.csr_array:
    """``sum_j column[j] P^j``, ``P`` the cyclic shift: ``C[i, c] = column[(i - c) % n]``."""
    n, lags = column.size, np.flatnonzero(column)
    wrapped = lags[lags > 0]  # lag j also fills the corner diagonal n - j
    return _diagonals(np.concatenate([column[lags], column[wrapped]]),
                      np.concatenate([-lags, n - wrapped]), (n, n))


def doubly_block_circulant(kernel: ArrayLike, input_size: ShapeLike, *,
                           format: SparseFormat = "csr",
                           dtype: DTypeLike | None = None) -> SparseArray:
    """The circular 2-D convolution as a circulant matrix of circulant blocks.

    Parameters
    ----------
    kernel : array_like, shape (m0, m1)
    input_size : tuple of 2 int
        ``(n0, n1)``, any size: a kernel larger than the input wraps around more than once,
        as in ``scipy.signal.convolve2d(boundary="wrap")``.
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, optional

    Returns
    -------
    scipy.sparse array, shape (n0*n1, n0*n1)
        Equal to ``scipy.signal.convolve2d(x, kernel, mode="same", boundary="wrap")``, and
        to ``conv_matrix(kernel[None, None], (1, n0, n1), padding="same",
        padding_mode="circular", flip=True)`` where PyTorch's circular padding takes the
        kernel (its padding at most the input size).

    Raises
    ------
    ValueError, TypeError
        A non-2-D kernel, a bad size.

    See Also
    --------
    doubly_block_toeplitz

    Notes
    -----
    The kernel, wrapped onto the torus with element ``first = ((m0 - 1) // 2, (m1 - 1) // 2)``
    at the origin (the center of ``scipy.signal.convolve2d``'s ``mode="same"``: with
    ``flip=True`` the larger half of an even kernel's padding comes before the input), is the
    first column ``c`` of the matrix; ``A = sum_j kron(P_0^j, C_1(c[j]))``
    with ``C_1(v) = sum_i v[i] P_1^i``. The 2-D DFT diagonalizes it: its eigenvalues are
    ``fft2(c)``, the DFT of the kernel times the phase of the shift ``first``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import doubly_block_circulant
    >>> A = doubly_block_circulant(np.arange(1.0, 10.0).reshape(3, 3), (4, 4))
    >>> bool(np.allclose(A.sum(axis=0), 45.0))            # every column holds the kernel once
    True
    """
    check_format(format)
    kernel = _kernel(kernel, 2)
    size = _size_2d(input_size)
    # the taps wrap onto the torus as many times as they need (scipy.signal.convolve2d's
    # boundary="wrap"; a new user's trial: a kernel longer than the input was refused for a
    # circular padding larger than the input, an argument this function does not take)
    firsts = [(m - 1) // 2 for m in kernel.shape]
    n0, n1 = size
    dtype = layer_dtype(kernel, dtype)
    _check_memory(n0 * n1 * kernel.size, (n0 * n1, n0 * n1), dtype, format,
                  f"the {n0 * n1} x {n0 * n1} doubly block circulant matrix", copies=4,
                  dense=n0 * n1)
    # the first column: kernel element j at lag (j - first) mod n, taps wrapping onto one summed
    taps = summable(kernel.astype(dtype))  # (layer_dtype checked every tap is held)
    column = np.zeros(size, taps.dtype)
    np.add.at(column, np.ix_(*[(np.arange(m) - f) % n
                              for m, f, n in zip(kernel.shape, firsts, size)]), taps)
    column = held_in(column, dtype)
    lags = np.flatnonzero(column.any(axis=1))
    # numpy's stubs type the diagonal offset as int, not as numpy's integers
    shifts = [_circulant(np.eye(1, n0, j, dtype=dtype).ravel()) for j in lags]  # type: ignore[call-overload]
    blocks = [_circulant(column[j]) for j in lags]
    if not blocks:  # an all-zero kernel
        return in_format(sp.csr_array((n0 * n1, n0 * n1), dtype=dtype), format)
    return in_format(_kron_sum(shifts, blocks), format)


# ---------------------------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------------------------
def conv1x1_matrix(weight: ArrayLike, spatial: ShapeLike, *, groups: int = 1,
                   format: SparseFormat = "csr", dtype: DTypeLike | None = None,
                   layout: Layout = "channels_first") -> SparseArray:
    """A 1x1 convolution (channel mixing) as ``kron(W, I)`` (channels last: ``kron(I, W)``).

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups) or (C_out, C_in/groups, 1, ..., 1)
        The channel-mixing matrix, or PyTorch's 1x1 weight (one ``1`` per spatial axis).
    spatial : int or tuple of int
        The spatial size, kept unchanged.
    groups : int, optional
        As PyTorch's ``groups``: group ``g`` mixes its ``C_in/groups`` input channels into
        its ``C_out/groups`` outputs, ``W`` is block diagonal.
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, optional
    layout : {"channels_first", "channels_last"}, optional
        Rows and columns in C order of ``(C, *spatial)``, ``W ⊗ I``, or, channels-last, of
        ``(*spatial, C)``, ``I ⊗ W``, as :func:`conv_matrix` takes it.

    Returns
    -------
    scipy.sparse array, shape (C_out * prod(spatial), C_in * prod(spatial))
        Equal to ``conv_matrix(weight[:, :, None, ...], (C_in, *spatial), groups=groups,
        layout=layout)``.

    Raises
    ------
    ValueError, TypeError
        A weight that is neither a non-empty 2-D numeric array nor a 1x1 kernel of the
        spatial rank, a bad spatial size, ``groups`` that does not divide ``C_out``.

    See Also
    --------
    block_conv_matrix

    Notes
    -----
    ``y[o] = sum_c W[o, c] x[c]`` at every position: ``A = W ⊗ I_{prod(spatial)}``, with ``W``
    the ``(C_out, C_in)`` block-diagonal matrix of the groups' weights.

    Examples
    --------
    >>> from sparseconv import conv1x1_matrix
    >>> conv1x1_matrix([[1.0, 2.0]], 2).toarray()
    array([[1., 0., 2., 0.],
           [0., 1., 0., 2.]])
    >>> conv1x1_matrix([[[[1.0]]], [[[2.0]]]], (1, 2), groups=2).toarray()  # PyTorch's layout
    array([[1., 0., 0., 0.],
           [0., 1., 0., 0.],
           [0., 0., 2., 0.],
           [0., 0., 0., 2.]])
    """
    check_format(format)
    check_layout(layout)
    weight = as_weight(weight, "weight")
    spatial = spatial_size(spatial, "spatial")
    pointwise = (weight.ndim == 2 + len(spatial) and weight.shape[2:] == (1,) * len(spatial))
    if not (weight.ndim == 2 or pointwise) or weight.size == 0:
        raise ValueError(f"weight must be a non-empty 2-D array (C_out, C_in/groups), or "
                         f"PyTorch's 1x1 weight (C_out, C_in/groups{', 1' * len(spatial)}) for "
                         f"{len(spatial)} spatial {'axis' if len(spatial) == 1 else 'axes'}, "
                         f"got weight.shape={weight.shape}")
    c_out, c_in = weight.shape[0], weight.shape[1]
    weight = weight.reshape(c_out, c_in)
    groups = positive_int(groups, "groups")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide out_channels=weight.shape[0]={c_out}")
    dtype, n = layer_dtype(weight, dtype), math.prod(spatial)
    shape = (c_out * n, c_in * groups * n)
    _check_memory(weight.size * n, shape, dtype, format,
                  f"the {shape[0]} x {shape[1]} 1x1 convolution matrix")
    per = c_out // groups
    mixing = sp.block_diag([sp.csr_array(weight[g * per:(g + 1) * per].astype(dtype))
                            for g in range(groups)], format="csr")
    identity = sp.eye_array(n, dtype=dtype)
    factors = (identity, mixing) if layout == "channels_last" else (
        mixing, identity)
    # (scipy's kron of a matrix that stores nothing is float64: a zero weight's matrix was,
    # whatever the dtype asked for; a fuzz run)
    return in_format(sp.kron(*factors, format=format).astype(dtype, copy=False), format)


def block_conv_matrix(
    weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
    padding: PaddingLike = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros", flip: bool = False, format: SparseFormat = "csr",
    dtype: DTypeLike | None = None,
) -> SparseArray:
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
    >>> from sparseconv import block_conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 1, 3, 3))
    >>> B = block_conv_matrix(w, (2, 5, 5), padding=1, groups=2)
    >>> bool(abs(B - conv_matrix(w, (2, 5, 5), padding=1, groups=2)).max() == 0)
    True
    """
    check_format(format)
    weight = as_weight(weight)
    geom = ConvGeometry.from_weight(weight.shape, input_shape, stride=stride, padding=padding,
                                    dilation=dilation, groups=groups, padding_mode=padding_mode,
                                    flip=flip)
    dtype = layer_dtype(weight, dtype)
    _check_memory(geom.nnz(), geom.shape, dtype, format,
                  f"the {geom.shape[0]} x {geom.shape[1]} block convolution matrix", copies=4)
    kwargs: dict[str, Any] = dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation,
                  padding_mode=geom.padding_mode, flip=geom.flip, dtype=dtype)
    single = (1, *geom.input_size)
    per_group = geom.out_channels // geom.groups
    group_blocks = [
        sp.block_array([[conv_matrix(weight[o:o + 1, c:c + 1], single, **kwargs)
                         for c in range(weight.shape[1])]
                        for o in range(g * per_group, (g + 1) * per_group)])
        for g in range(geom.groups)
    ]
    return in_format(sp.block_diag(group_blocks, format=format), format)
