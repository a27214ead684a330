"""Layer algebra: pooling, affine layers, composition and receptive fields, as sparse arrays.

A network of linear layers is a product of sparse matrices. This module adds the layers that
are linear but not convolutions (average pooling), the bias (an affine map that composes), and
what a product tells: the exact receptive field of a unit (the sparsity pattern of a row).
The closed forms for a stack of convolutions (its receptive field's extent, its single kernel)
are in :mod:`sparseconv.stacks`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .arguments import as_weight, is_int, result_dtype, spatial_size
from .geometry import ConvGeometry
from .matrices import _check_format, conv_matrix
from .stacks import compose_kernels, receptive_field_size

__all__ = [
    "avg_pool_matrix",
    "AffineMap",
    "affine_conv",
    "compose",
    "receptive_field",
    # still importable from here, where they were defined before stacks.py
    "receptive_field_size",
    "compose_kernels",
]


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------
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
    >>> from sparseconv.algebra import avg_pool_matrix
    >>> avg_pool_matrix((1, 4), 2).toarray()
    array([[0.5, 0.5, 0. , 0. ],
           [0. , 0. , 0.5, 0.5]])
    >>> avg_pool_matrix((1, 3), 3, stride=1, padding=1, count_include_pad=False).toarray()[0]
    array([0.5, 0.5, 0. ])
    >>> avg_pool_matrix((1, 5), 2, ceil_mode=True).toarray()[-1]     # the cut last window
    array([0., 0., 0., 0., 1.])
    """
    _check_format(format)
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


# ---------------------------------------------------------------------------------------------
# Affine layers and composition
# ---------------------------------------------------------------------------------------------
def _as_matrix(layer, name: str) -> sp.sparray:
    if isinstance(layer, AffineMap):
        return layer.matrix
    if not (sp.issparse(layer) and layer.ndim == 2):
        raise TypeError(f"{name} must be a 2-D scipy.sparse array or an AffineMap, "
                        f"got {type(layer).__name__}")
    return layer


@dataclass(frozen=True, eq=False)
class AffineMap:
    """The affine layer ``x -> matrix @ x + bias``; ``f @ g`` is the composition ``f(g(x))``.

    Parameters
    ----------
    matrix : scipy.sparse array, shape (m, n)
    bias : array_like, shape (m,)

    Raises
    ------
    TypeError
        A matrix that is not a 2-D scipy.sparse array, a non-numeric bias.
    ValueError
        A bias whose shape is not ``(m,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv.algebra import affine_conv
    >>> f = affine_conv(np.ones((1, 1, 2)), [1.0], (1, 3))   # 3 -> 2: x -> conv(x) + 1
    >>> g = affine_conv(np.ones((1, 1, 2)), [1.0], (1, 2))   # 2 -> 1
    >>> (g @ f)(np.array([1.0, 2.0, 3.0]))                  # g(f(x)) = g([4, 6])
    array([11.])
    >>> (g @ f).homogeneous().toarray()                     # [[A, b], [0, 1]]
    array([[1., 2., 1., 3.],
           [0., 0., 0., 1.]])
    """

    matrix: sp.sparray
    bias: np.ndarray

    def __post_init__(self):
        matrix = self.matrix
        if not (sp.issparse(matrix) and matrix.ndim == 2):
            raise TypeError(f"matrix must be a 2-D scipy.sparse array, got "
                            f"{type(matrix).__name__}")
        bias = as_weight(self.bias, "bias")
        if bias.shape != (matrix.shape[0],):
            raise ValueError(f"bias must have shape ({matrix.shape[0]},) to match matrix.shape="
                             f"{matrix.shape}, got bias.shape={bias.shape}")
        object.__setattr__(self, "matrix", sp.csr_array(matrix))
        object.__setattr__(self, "bias", bias)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a vector ``(n,)`` or to columns ``(n, k)``."""
        x = np.asarray(x)
        return self.matrix @ x + (self.bias if x.ndim == 1 else self.bias[:, None])

    def __matmul__(self, other):
        if isinstance(other, AffineMap) or sp.issparse(other):
            _check_chain([_as_matrix(other, "other"), self.matrix], names=["g", "f in f @ g"])
        if isinstance(other, AffineMap):
            return AffineMap(self.matrix @ other.matrix, self.matrix @ other.bias + self.bias)
        if sp.issparse(other):
            return AffineMap(self.matrix @ other, self.bias)
        return NotImplemented

    def homogeneous(self, format: str = "csr") -> sp.sparray:
        """The ``(m+1) x (n+1)`` matrix ``[[A, b], [0, 1]]``: composition is its product."""
        _check_format(format)
        corner = sp.csr_array(np.ones((1, 1), dtype=self.bias.dtype))
        return sp.block_array([[self.matrix, sp.csr_array(self.bias[:, None])], [None, corner]],
                              format=format)


def affine_conv(weight: np.ndarray, bias, input_shape: Sequence[int], **kwargs) -> AffineMap:
    """A convolution layer with bias, ``x -> conv(x) + bias``, as an :class:`AffineMap`.

    Parameters
    ----------
    weight, input_shape, **kwargs
        As for :func:`sparseconv.conv_matrix`.
    bias : array_like, shape (C_out,), or None
        One value an output channel, as PyTorch's ``bias``; None for zero.

    Returns
    -------
    AffineMap
        ``matrix = conv_matrix(weight, input_shape, **kwargs)`` and the bias repeated over the
        output positions of each channel.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_matrix`; a bias of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv.algebra import affine_conv
    >>> affine_conv(np.ones((2, 1, 3, 3)), [0.5, -1.0], (1, 4, 4)).bias.shape
    (8,)
    """
    matrix = conv_matrix(weight, input_shape, **kwargs)
    c_out = np.shape(weight)[0]
    bias = np.zeros(c_out, matrix.dtype) if bias is None else as_weight(bias, "bias")
    if bias.shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},) (one value an output channel), got "
                         f"bias.shape={bias.shape}")
    return AffineMap(matrix, np.repeat(bias, matrix.shape[0] // c_out))


def _check_chain(matrices: list, n_in: int | None = None, names=None) -> None:
    """Each matrix must accept the output of the one before (the first, ``n_in`` inputs)."""
    names = names or [f"layers[{i}]" for i in range(len(matrices))]
    expected = matrices[0].shape[1] if n_in is None else n_in
    for name, matrix in zip(names, matrices):
        if matrix.shape[1] != expected:
            raise ValueError(f"{name} has shape {matrix.shape} but receives a vector of "
                             f"size {expected}")
        expected = matrix.shape[0]


def compose(*layers) -> sp.sparray | AffineMap:
    """The composition of layers, first applied first: ``layers[-1] @ ... @ layers[0]``.

    Parameters
    ----------
    *layers : scipy.sparse arrays or AffineMap
        At least one; ``layers[i+1].shape[1] == layers[i].shape[0]``.

    Returns
    -------
    scipy.sparse array (CSR), or AffineMap if any layer is affine.

    Raises
    ------
    ValueError, TypeError
        No layer, a non-sparse layer, mismatched shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix
    >>> from sparseconv.algebra import avg_pool_matrix, compose
    >>> net = compose(conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1),
    ...               avg_pool_matrix((4, 8, 8), 2))
    >>> net.shape
    (64, 192)
    """
    if not layers:
        raise ValueError("compose needs at least one layer")
    _check_chain([_as_matrix(layer, f"layers[{i}]") for i, layer in enumerate(layers)])
    if any(isinstance(layer, AffineMap) for layer in layers):
        layers = [layer if isinstance(layer, AffineMap) else
                  AffineMap(layer, np.zeros(layer.shape[0], layer.dtype)) for layer in layers]
    result = layers[0] if isinstance(layers[0], AffineMap) else sp.csr_array(layers[0])
    for layer in layers[1:]:
        result = layer @ result
    return result


# ---------------------------------------------------------------------------------------------
# Receptive fields
# ---------------------------------------------------------------------------------------------
def receptive_field(layers: Sequence, input_shape: Sequence[int], output_index,
                    output_shape: Sequence[int] | None = None) -> np.ndarray:
    """The exact receptive field of one output unit of a composition of layers.

    Parameters
    ----------
    layers : sequence of scipy.sparse arrays or AffineMap
        First applied first, as for :func:`compose`.
    input_shape : tuple of int
        Shape of the network's input, ``(C, *spatial)``.
    output_index : int or tuple of int
        The output unit: a flat index, or an index into ``output_shape``.
    output_shape : tuple of int, optional
        Needed for a tuple ``output_index``.

    Returns
    -------
    ndarray of bool, shape input_shape
        True where the unit depends on the input (structurally: stored entries, whatever
        their value).

    Raises
    ------
    ValueError, TypeError
        Mismatched shapes, an index out of range.

    See Also
    --------
    receptive_field_size : the closed form of its extent.

    Notes
    -----
    The field is row ``i`` of the sparsity pattern of ``A_L ... A_1``. It is computed without
    forming the product: ``e_i`` is pulled back through the patterns, ``r <- |A_l|^T r``, so
    ``r > 0`` exactly where a path of stored entries reaches the unit (no cancellation).

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix
    >>> from sparseconv.algebra import receptive_field
    >>> A = conv_matrix(np.ones((1, 1, 3, 3)), (1, 9, 9), padding=1)
    >>> field = receptive_field([A, A], (1, 9, 9), (0, 4, 4), output_shape=(1, 9, 9))
    >>> int(field.sum())                                   # stacked 3x3: a 5x5 field
    25
    """
    input_shape = spatial_size(input_shape, "input_shape")
    matrices = [_as_matrix(layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    if not matrices:
        raise ValueError("receptive_field needs at least one layer")
    _check_chain(matrices, math.prod(input_shape))
    rows = matrices[-1].shape[0]
    if output_shape is not None:
        output_shape = spatial_size(output_shape, "output_shape")
        if math.prod(output_shape) != rows:
            raise ValueError(f"output_shape={output_shape} has {math.prod(output_shape)} units, "
                             f"the last layer {rows}")
    index = output_index
    if not is_int(index):
        if output_shape is None or np.ndim(index) != 1 or len(index) != len(output_shape):
            raise ValueError(f"output_index={output_index!r} must be an int or a tuple of "
                             f"len(output_shape), with output_shape given")
        if not all(is_int(i) and 0 <= i < n for i, n in zip(index, output_shape)):
            raise ValueError(f"output_index={output_index!r} is out of range for "
                             f"output_shape={output_shape}")
        index = int(np.ravel_multi_index(tuple(index), output_shape))
    if not 0 <= index < rows:
        raise ValueError(f"output_index={output_index!r} is out of range for {rows} outputs")
    reached = np.zeros(rows)
    reached[index] = 1.0
    for matrix in reversed(matrices):
        pattern = sp.csr_array(matrix)
        pattern = sp.csr_array((np.ones(pattern.nnz), pattern.indices, pattern.indptr),
                               shape=pattern.shape)
        reached = (pattern.T @ reached > 0).astype(float)
    return reached.astype(bool).reshape(input_shape)
