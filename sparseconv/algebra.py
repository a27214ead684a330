"""Layer algebra: pooling, affine layers, composition and receptive fields, as sparse arrays.

A network of linear layers is a product of sparse matrices. This module adds the layers that
are linear but not convolutions (average pooling), the bias (an affine map that composes), and
what a product tells: the exact receptive field of a unit (the sparsity pattern of a row) and
the single kernel of a stack of stride-1 "valid" convolutions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .arguments import as_weight, int_tuple, is_int, result_dtype, spatial_size
from .geometry import ConvGeometry
from .matrices import _check_format, conv_matrix

__all__ = [
    "avg_pool_matrix",
    "AffineMap",
    "affine_conv",
    "compose",
    "receptive_field",
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


def receptive_field_size(kernel_size: Sequence, stride: Sequence | None = None,
                         dilation: Sequence | None = None) -> int | tuple[int, ...]:
    """The extent of the receptive field of a stack of convolutions, in closed form.

    Parameters
    ----------
    kernel_size : sequence of int or of tuples
        One entry a layer, first applied first.
    stride, dilation : sequence of int or of tuples, optional
        One entry a layer; default 1.

    Returns
    -------
    int or tuple of int
        Per spatial dimension; an int when every ``kernel_size`` entry is.

    Raises
    ------
    ValueError, TypeError
        No layer, lengths that differ, entries out of range.

    See Also
    --------
    receptive_field : the field itself, from the sparsity of the product.

    Notes
    -----
    ``r = 1 + sum_l dilation_l (k_l - 1) prod_{j<l} stride_j``: each layer widens the field by
    its dilated extent, in units of the input strides below it.

    Examples
    --------
    >>> from sparseconv.algebra import receptive_field_size
    >>> receptive_field_size([3, 3])                             # stacked 3x3 -> 5x5
    5
    >>> receptive_field_size([3, 3, 3], dilation=[1, 2, 4])      # growth with dilation
    15
    >>> receptive_field_size([(7, 7), (3, 3)], stride=[2, 1])
    (11, 11)
    """
    if isinstance(kernel_size, str) or not isinstance(kernel_size, Sequence) or not kernel_size:
        raise ValueError(f"kernel_size must be a non-empty sequence, one entry a layer, got "
                         f"{kernel_size!r}")
    depth, scalar = len(kernel_size), all(is_int(k) for k in kernel_size)
    ndim = 1 if scalar else next(len(k) for k in kernel_size if not is_int(k))
    per_layer = {}
    for name, values in (("kernel_size", kernel_size), ("stride", stride),
                         ("dilation", dilation)):
        values = [1] * depth if values is None else values
        if not isinstance(values, Sequence) or len(values) != depth:
            raise ValueError(f"{name} must have one entry a layer ({depth}), got {values!r}")
        per_layer[name] = [int_tuple(v, ndim, f"{name}[{i}]", 1) for i, v in enumerate(values)]
    size, jump = [1] * ndim, [1] * ndim
    for k, s, d in zip(*per_layer.values()):
        size = [r + di * (ki - 1) * j for r, ki, di, j in zip(size, k, d, jump)]
        jump = [j * si for j, si in zip(jump, s)]
    return size[0] if scalar else tuple(size)


# ---------------------------------------------------------------------------------------------
# Kernel composition
# ---------------------------------------------------------------------------------------------
def compose_kernels(*weights: np.ndarray, stride: Sequence | None = None,
                    dilation: Sequence | None = None, groups: Sequence | None = None) -> np.ndarray:
    """The single kernel of a stack of "valid" convolutions, first applied first.

    Parameters
    ----------
    *weights : array_like, shapes (C_1, C_0/g_1, *k_1), (C_2, C_1/g_2, *k_2), ...
        PyTorch layouts (cross-correlation), each reading the previous output.
    stride, dilation, groups : sequence, optional
        One entry a layer (an int, or a tuple per spatial axis for ``stride`` and
        ``dilation``); default 1.

    Returns
    -------
    ndarray, shape (C_L, C_0, *K)
        The kernel of one convolution with ``groups=1``, ``dilation=1`` and stride
        ``prod(stride)`` per axis, ``K = 1 + sum_l dilation_l (k_l - 1) prod_{j<l} stride_j``
        (:func:`receptive_field_size`): ``conv_matrix(W, s, stride=prod(stride))`` equals
        ``conv_matrix(w_L, s_L, stride=stride_L, ...) @ ... @ conv_matrix(w_1, s, ...)``.

    Raises
    ------
    ValueError, TypeError
        No weight, mismatched channels or dimensions, per-layer lists of the wrong length,
        groups that do not divide the channels.

    See Also
    --------
    receptive_field_size : the extent ``K``, in closed form.

    Notes
    -----
    Cross-correlations compose by the full *convolution* of their kernels, summed over the
    inner channels: ``W[o, c] = sum_m w2[o, m] * w1[m, c]``, since
    ``sum_u w2[u] sum_t w1[t] x[i+u+t] = sum_s (sum_{t+u=s} w1[t] w2[u]) x[i+s]``. A later
    layer's tap ``v`` lands ``dilation * v`` outputs further on, that is ``S * dilation * v``
    inputs, ``S`` the stride of all the layers before it; a grouped weight is its block
    diagonal. Only valid padding composes exactly (padding would insert zeros between the
    layers).

    Examples
    --------
    >>> from sparseconv.algebra import compose_kernels
    >>> compose_kernels([[[1.0, 1.0]]], [[[1.0, 2.0]]])
    array([[[1., 3., 2.]]])
    >>> compose_kernels([[[1.0, 1.0]]], [[[1.0, 2.0]]], stride=[2, 1])  # W of stride 2
    array([[[1., 1., 2., 2.]]])
    """
    if not weights:
        raise ValueError("compose_kernels needs at least one weight")
    arrays = [as_weight(w, f"weights[{i}]") for i, w in enumerate(weights)]
    for i, w in enumerate(arrays):
        if w.ndim != arrays[0].ndim or w.ndim < 3 or w.size == 0:
            raise ValueError(f"weights[{i}] must be a non-empty (C_out, C_in/groups, "
                             f"*kernel_size) array like weights[0], got shape {w.shape}")
    ndim, depth = arrays[0].ndim - 2, len(arrays)
    per_layer = {}
    for name, values in (("stride", stride), ("dilation", dilation), ("groups", groups)):
        values = [1] * depth if values is None else values
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != depth:
            raise ValueError(f"{name} must have one entry a layer ({depth}), got {values!r}")
        per_layer[name] = [int_tuple(v, 1 if name == "groups" else ndim, f"{name}[{i}]", 1)
                           for i, v in enumerate(values)]
    dense = []
    for i, (w, (g,)) in enumerate(zip(arrays, per_layer["groups"])):
        c_in = w.shape[1] * g if i == 0 else dense[-1].shape[0]
        if w.shape[0] % g or w.shape[1] * g != c_in:
            raise ValueError(
                f"weights[{i}].shape={w.shape} with groups[{i}]={g} must read the "
                f"{c_in} channels of " + ("its input" if i == 0 else f"weights[{i - 1}]")
                + f" (weights[{i}].shape[1] * groups == {c_in}, groups dividing shape[0])")
        dense.append(_block_diagonal_weight(w, g))
    total, jump = dense[0], list(per_layer["stride"][0])
    dilated = [d * (k - 1) + 1 for d, k in zip(per_layer["dilation"][0], total.shape[2:])]
    if dilated != list(total.shape[2:]):  # the first layer's own dilation, as zeros
        wide = np.zeros((*total.shape[:2], *dilated), total.dtype)
        wide[(Ellipsis, *(slice(None, None, d) for d in per_layer["dilation"][0]))] = total
        total = wide
    for w, s, d in zip(dense[1:], per_layer["stride"][1:], per_layer["dilation"][1:]):
        step = [j * di for j, di in zip(jump, d)]  # input offset between w's taps
        kernel = [st * (k - 1) + t for st, k, t in zip(step, w.shape[2:], total.shape[2:])]
        out = np.zeros((w.shape[0], total.shape[1], *kernel), np.result_type(total, w))
        for tap in np.ndindex(*w.shape[2:]):  # each tap of the outer kernel shifts the inner
            window = tuple(slice(st * v, st * v + t)
                           for st, v, t in zip(step, tap, total.shape[2:]))
            out[(slice(None), slice(None), *window)] += np.tensordot(
                w[(slice(None), slice(None), *tap)], total, axes=(1, 0))
        total, jump = out, [j * si for j, si in zip(jump, s)]
    return total


def _block_diagonal_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped weight ``(C_out, C_in/groups, *k)`` as its ``groups=1`` equivalent."""
    if groups == 1:
        return weight
    c_out, per_group = weight.shape[0] // groups, weight.shape[1]
    dense = np.zeros((weight.shape[0], per_group * groups, *weight.shape[2:]), weight.dtype)
    for g in range(groups):
        dense[g * c_out:(g + 1) * c_out, g * per_group:(g + 1) * per_group] = (
            weight[g * c_out:(g + 1) * c_out])
    return dense
