"""Composition: layers as maps that compose, and a stack of convolutions as one kernel.

A network of linear layers is a product of sparse matrices; a bias makes each layer an affine
map (:class:`AffineMap`), and affine maps compose too. A stack of "valid" convolutions is
itself one convolution, whose kernel :func:`compose_kernels` gives in closed form: a layer's
taps are ``dilation`` of its inputs apart, and its inputs are ``S`` network inputs apart, ``S``
the product of the strides below it (the same recursion as
:func:`sparseconv.receptive_field_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._dilation import dilate_kernel
from ._formats import in_format
from ._geometry import ConvGeometry, dense_weight
from ._matrices import check_format, conv_matrix
from ._memory import check_memory, fits
from ._read_only import ReadOnlyState
from ._typing import ArrayLike, IntOrTuple, ShapeLike, SparseFormat
from ._validation import as_weight, per_layer_tuples

__all__ = ["AffineMap", "affine_conv", "compose", "compose_kernels"]


# ---------------------------------------------------------------------------------------------
# Affine layers and composition
# ---------------------------------------------------------------------------------------------
def as_matrix(layer, name: str, operators: bool = False) -> sp.sparray:
    if isinstance(layer, AffineMap):
        return layer.matrix
    if not (sp.issparse(layer) and layer.ndim == 2):
        kinds = ("a 2-D scipy.sparse array, an AffineMap or a LinearOperator" if operators
                 else "a 2-D scipy.sparse array or an AffineMap")
        raise TypeError(f"{name} must be {kinds}, got {type(layer).__name__}")
    return layer


#: The advice for an AffineMap meeting a LinearOperator (``compose`` refuses the pair too).
_WITH_AN_OPERATOR = ("a LinearOperator composes with the map's linear part, op @ f.matrix or "
                     "f.matrix @ op (scipy makes a LinearOperator of either), the bias added "
                     "where the map is applied (an operator has no bias)")


@dataclass(frozen=True, eq=False)
class AffineMap(ReadOnlyState):
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
    >>> from sparseconv import affine_conv
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
        self._own(copy=True)

    @classmethod
    def _fresh(cls, matrix: sp.sparray, bias: ArrayLike) -> AffineMap:
        """A map of arrays just made by the caller, which no one else holds: validated and
        made read-only as the constructor's, without its copies (a product's matrix)."""
        f = object.__new__(cls)
        object.__setattr__(f, "matrix", matrix)
        object.__setattr__(f, "bias", bias)
        f._own(copy=False)
        return f

    def _own(self, copy: bool) -> None:
        matrix = self.matrix
        if not (sp.issparse(matrix) and matrix.ndim == 2):
            raise TypeError(f"matrix must be a 2-D scipy.sparse array, got "
                            f"{type(matrix).__name__}")
        bias = as_weight(self.bias, "bias")
        if bias.shape != (matrix.shape[0],):
            raise ValueError(f"bias must have shape ({matrix.shape[0]},) to match matrix.shape="
                             f"{matrix.shape}, got bias.shape={bias.shape}")
        # canonical, as every builder's (a review: products left compose's unsorted); private
        # read-only copies, as the operators' weights (a new user's trial: the map changed
        # with the caller's arrays, and its bias could be written to)
        matrix = in_format(sp.csr_array(matrix, copy=copy), "csr")
        for array in (matrix.data, matrix.indices, matrix.indptr):
            array.flags.writeable = False
        bias = np.array(bias, copy=True) if copy else np.asarray(bias)
        bias.flags.writeable = False
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "bias", bias)

    @property
    def shape(self) -> tuple[int, int]:
        """The matrix's shape ``(outputs, inputs)``."""
        return self.matrix.shape

    def __call__(self, x: ArrayLike) -> np.ndarray:
        """Apply to a vector ``(n,)`` or to columns ``(n, k)``.

        Parameters
        ----------
        x : array_like, shape (n,) or (n, k)

        Returns
        -------
        numpy.ndarray, shape (m,) or (m, k)
            ``matrix @ x + bias`` (the bias added to each column).

        Raises
        ------
        ValueError
            Any other shape.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import affine_conv
        >>> f = affine_conv(np.ones((1, 1, 2)), [1.0], (1, 3))   # x -> conv(x) + 1
        >>> f(np.array([1.0, 2.0, 3.0]))
        array([4., 6.])
        >>> f(np.eye(3)[:, :2])                                  # two columns
        array([[2., 2.],
               [1., 2.]])
        """
        x = np.asarray(x)
        n = self.shape[1]
        if x.ndim not in (1, 2) or x.shape[0] != n:  # (a new user's trial: scipy's matmul
            # message named neither x nor the shapes it takes)
            raise ValueError(f"x must have shape ({n},) or ({n}, k) for this {self.shape[0]} "
                             f"x {n} map, got x.shape={x.shape}")
        return self.matrix @ x + (self.bias if x.ndim == 1 else self.bias[:, None])

    def __matmul__(self, other: AffineMap | sp.sparray) -> AffineMap:
        if isinstance(other, AffineMap) or sp.issparse(other):
            check_chain([as_matrix(other, "other"), self.matrix], names=["g", "f in f @ g"])
        if isinstance(other, AffineMap):
            return AffineMap._fresh(checked_product(self.matrix, other.matrix, "f @ g"),
                                    self.matrix @ other.bias + self.bias)
        if sp.issparse(other):
            return AffineMap._fresh(checked_product(self.matrix, other, "f @ g"), self.bias)
        if isinstance(other, (np.ndarray, list, tuple)):  # numpy's own error names no operand
            raise TypeError(f"f @ g composes f with g, a scipy.sparse array or an AffineMap, "
                            f"got {type(other).__name__}; apply f to a vector or to columns "
                            "with f(x)")
        if isinstance(other, spla.LinearOperator):  # (a new user's trial: scipy's "expected
            # 1-d or 2-d array", of an object array)
            raise TypeError(_WITH_AN_OPERATOR)
        return NotImplemented

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """``x @ f`` with a numpy array ``x`` refused by name (numpy's "does not have enough
        dimensions", of an object array, named no operand; a new user's trial); numpy's
        other operations on a map are none of its."""
        if ufunc is np.matmul and inputs[-1] is self:
            raise TypeError(f"P @ f composes a scipy.sparse array P after the map f, got "
                            f"{type(inputs[0]).__name__}: for a dense P, compose "
                            "sp.csr_array(P), or take f.matrix and f.bias")
        return NotImplemented

    def __rmatmul__(self, other: sp.sparray) -> AffineMap:
        """``P @ f``: a sparse matrix after the map, ``x -> P (A x + b)`` (a new user's trial:
        a pooling matrix could follow a map only through :func:`compose`)."""
        if not sp.issparse(other):
            return NotImplemented
        check_chain([self.matrix, as_matrix(other, "other")], names=["g", "f in f @ g"])
        return AffineMap._fresh(checked_product(other, self.matrix, "f @ g"), other @ self.bias)

    def __repr__(self) -> str:  # the dataclass's would print every entry of the bias
        m, n = self.shape
        return (f"<AffineMap {m} x {n}: nnz {self.matrix.nnz}, dtype {self.matrix.dtype}, "
                f"bias norm {float(np.linalg.norm(self.bias)):.6g}>")

    def homogeneous(self, format: SparseFormat = "csr") -> sp.sparray:
        """The ``(m+1) x (n+1)`` matrix ``[[A, b], [0, 1]]``: composition is its product.

        Parameters
        ----------
        format : {"csr", "csc", "coo", "bsr"}, optional
            Sparse format of the result, as for :func:`sparseconv.conv_matrix`.

        Returns
        -------
        scipy.sparse array, shape (m + 1, n + 1)
            ``H @ [x, 1] = [f(x), 1]``.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import affine_conv
        >>> f = affine_conv(np.ones((1, 1, 2)), [1.0], (1, 3))   # x -> conv(x) + 1
        >>> H = f.homogeneous()
        >>> H.toarray()
        array([[1., 1., 0., 1.],
               [0., 1., 1., 1.],
               [0., 0., 0., 1.]])
        >>> (H @ np.array([1.0, 2.0, 3.0, 1.0]))[:-1], f(np.array([1.0, 2.0, 3.0]))
        (array([4., 6.]), array([4., 6.]))
        """
        check_format(format)
        corner = sp.csr_array(np.ones((1, 1), dtype=self.bias.dtype))
        return sp.block_array([[self.matrix, sp.csr_array(self.bias[:, None])], [None, corner]],
                              format=format)


def affine_conv(weight: ArrayLike, bias: ArrayLike | None, input_shape: ShapeLike,
                **kwargs: Any) -> AffineMap:
    """A convolution layer with bias, ``x -> conv(x) + bias``, as an :class:`AffineMap`.

    Parameters
    ----------
    weight
        As for :func:`sparseconv.conv_matrix`.
    bias : array_like, shape (C_out,), or None
        One value an output channel, as PyTorch's ``bias``; None for zero.
    input_shape, **kwargs
        As for :func:`sparseconv.conv_matrix`.

    Returns
    -------
    AffineMap
        ``matrix = conv_matrix(weight, input_shape, **kwargs)`` and each output row's channel's
        bias, in the matrix's ``layout`` and for its ``rows``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_matrix`; a bias of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import affine_conv
    >>> affine_conv(np.ones((2, 1, 3, 3)), [0.5, -1.0], (1, 4, 4)).bias.shape
    (8,)
    """
    matrix = conv_matrix(weight, input_shape, **kwargs)
    c_out = np.shape(weight)[0]
    bias = np.zeros(c_out, matrix.dtype) if bias is None else as_weight(bias, "bias")
    if bias.shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},) (one value an output channel), got "
                         f"bias.shape={bias.shape}")
    geometry = {k: v for k, v in kwargs.items() if k in _GEOMETRY_ARGUMENTS}
    positions = math.prod(ConvGeometry.from_weight(np.shape(weight), input_shape,
                                                   **geometry).output_size)
    if kwargs.get("layout", "channels_first") == "channels_last":
        rows = np.tile(bias, positions)  # a row's channel varies fastest
    else:
        rows = np.repeat(bias, positions)
    return AffineMap._fresh(matrix, rows[kwargs.get("rows") or slice(None)])


#: The keywords of :func:`conv_matrix` that define the layer (not its storage).
_GEOMETRY_ARGUMENTS = ("stride", "padding", "dilation", "groups", "padding_mode", "flip")


#: Entries of ``f`` read at a time by :func:`product_nnz`'s bound (8 MiB of gathered lengths).
_COUNT_CHUNK = 2**20


def product_nnz(f: sp.sparray, g: sp.sparray) -> int:
    """The entries scipy allocates for ``f @ g`` (CSR inputs), without forming it.

    First a bound in ``O(columns)`` memory (each entry of ``f`` meets a row of ``g``: their
    lengths summed); where that bound could exceed the memory limit, the exact count of
    scipy's own first pass (``csr_matmat_maxnnz``: ``O(f.nnz * row of g)`` time, ``O(columns
    of g)`` memory), so that what fits is never refused on the bound alone. Either is at
    least the product's ``nnz`` (entries that cancel to zero are allocated, then dropped).
    """
    lengths, reads = np.diff(g.indptr).astype(np.int64), 0
    for start in range(0, f.nnz, _COUNT_CHUNK):  # (bincount copies its input as intp)
        reads += int(lengths[f.indices[start:start + _COUNT_CHUNK]].sum())
    bound = min(reads, f.shape[0] * g.shape[1])
    if fits(_product_bytes(bound, f, g)):
        return bound
    try:  # scipy's private routine; its absence only costs the exact count
        from scipy.sparse._sparsetools import csr_matmat_maxnnz
    except ImportError:  # pragma: no cover - present in every scipy sparseconv supports
        return bound
    dtype = np.int64 if max(f.nnz, g.nnz, *f.shape, *g.shape) >= 2**31 else np.int32
    return int(csr_matmat_maxnnz(f.shape[0], g.shape[1], f.indptr.astype(dtype, copy=False),
                                 f.indices.astype(dtype, copy=False),
                                 g.indptr.astype(dtype, copy=False),
                                 g.indices.astype(dtype, copy=False)))


def _product_bytes(nnz: int, f: sp.csr_array, g: sp.csr_array) -> int:
    """The bytes of ``f @ g`` with ``nnz`` entries, scipy's result and our canonical copy:
    int64 indices where either input has them (scipy's choice) or the sizes need them."""
    wide = any(a.dtype == np.int64 for a in (f.indices, f.indptr, g.indices, g.indptr))
    index = 8 if wide or max(nnz, f.shape[0], g.shape[1]) >= 2**31 else 4
    itemsize = np.result_type(f.dtype, g.dtype).itemsize
    return 2 * (nnz * (index + itemsize) + (f.shape[0] + 1) * index)


def checked_product(f: sp.sparray, g: sp.sparray, what: str) -> sp.sparray:
    """``f @ g`` (sparse), refused before it is formed if it exceeds the memory limit.

    Both are converted to CSR first (a copy of an input that is not CSR, as scipy's product
    makes one), then sized, then multiplied.
    """
    f, g = sp.csr_array(f), sp.csr_array(g)
    lower = _nnz_lower_bound(f, g)
    # (a memory audit: the exact count took 6-10 s on a product hundreds of times too large)
    check_memory(_product_bytes(lower, f, g),
                 f"{what}: the {f.shape[0]} x {g.shape[1]} product with at least {lower} "
                 "nonzeros")
    nnz = product_nnz(f, g)
    check_memory(_product_bytes(nnz, f, g),
                 f"{what}: the {f.shape[0]} x {g.shape[1]} product with {nnz} nonzeros")
    return f @ g


def _nnz_lower_bound(f: sp.csr_array, g: sp.csr_array) -> int:
    """At most the entries of ``f @ g``: a row of the product holds at least the longest row
    of ``g`` that its row of ``f`` reads (``O(f.nnz)`` time, a chunk of rows at a time)."""
    lengths, total = np.diff(g.indptr).astype(np.int64), 0
    starts = np.flatnonzero(np.diff(f.indptr))  # the rows of f with entries
    step = max(1, _COUNT_CHUNK // max(1, f.nnz // max(1, starts.size)))
    for first in range(0, starts.size, step):
        rows = starts[first:first + step]
        lo, hi = f.indptr[rows[0]], f.indptr[rows[-1] + 1]
        reads = lengths[f.indices[lo:hi]]
        total += int(np.maximum.reduceat(reads, f.indptr[rows] - lo).sum())
    return total


def check_chain(matrices: list, n_in: int | None = None, names=None) -> None:
    """Each matrix must accept the output of the one before (the first, ``n_in`` inputs)."""
    names = names or [f"layers[{i}]" for i in range(len(matrices))]
    expected = matrices[0].shape[1] if n_in is None else n_in
    for name, matrix in zip(names, matrices):
        if matrix.shape[1] != expected:
            raise ValueError(f"{name} has shape {matrix.shape} but receives a vector of "
                             f"size {expected}")
        expected = matrix.shape[0]


def compose(*layers: sp.sparray | AffineMap | spla.LinearOperator
            ) -> sp.csr_array | AffineMap | spla.LinearOperator:
    """The composition of layers, first applied first: ``layers[-1] @ ... @ layers[0]``.

    Parameters
    ----------
    *layers : scipy.sparse arrays, AffineMap or LinearOperator
        At least one; ``layers[i+1].shape[1] == layers[i].shape[0]``.

    Returns
    -------
    scipy.sparse array (CSR); an AffineMap if any layer is affine; a matrix-free
    ``LinearOperator`` (scipy's product, with its adjoint) if any layer is an operator
    (:class:`ConvOperator`, :func:`sparseconv.torch.operator`, ...), no product formed.

    Raises
    ------
    ValueError, TypeError
        No layer, a layer that is none of these, mismatched shapes, an AffineMap with an
        operator (compose their matrices, or the operator with the map's matrix).
    MatrixTooLargeError
        A product of sparse matrices beyond the memory limit, sized (its nonzeros counted as
        scipy counts them) before it is formed; compose operators instead to stay
        matrix-free.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix
    >>> from sparseconv import avg_pool_matrix, compose
    >>> net = compose(conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1),
    ...               avg_pool_matrix((4, 8, 8), 2))
    >>> net.shape
    (64, 192)
    >>> from sparseconv import ConvOperator
    >>> op = compose(ConvOperator(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1),
    ...              avg_pool_matrix((4, 8, 8), 2))          # matrix-free, first applied first
    >>> op.shape, bool(np.allclose(op @ np.ones(192), net @ np.ones(192)))
    ((64, 192), True)
    """
    if not layers:
        raise ValueError("layers must hold at least one layer, got none")
    operators = [isinstance(layer, spla.LinearOperator) for layer in layers]
    if any(operators):  # (a new user's trial: ConvOperators were refused)
        affine = [i for i, layer in enumerate(layers) if isinstance(layer, AffineMap)]
        if affine:
            raise TypeError(f"layers[{affine[0]}] is an AffineMap and layers"
                            f"[{operators.index(True)}] a LinearOperator: compose the operator "
                            "with the map's matrix (an operator has no bias)")
        chain = [layer if is_operator else as_matrix(layer, f"layers[{i}]", True)
                 for i, (layer, is_operator) in enumerate(zip(layers, operators))]
        check_chain(chain)
        result = spla.aslinearoperator(chain[0])
        for layer in chain[1:]:
            result = spla.aslinearoperator(layer) @ result
        return result
    check_chain([as_matrix(layer, f"layers[{i}]", True) for i, layer in enumerate(layers)])
    # (scipy's spmatrix would make the product an spmatrix: arrays throughout)
    layers = [layer if isinstance(layer, AffineMap) else sp.csr_array(layer) for layer in layers]
    result = layers[0]
    for i, layer in enumerate(layers[1:], 1):
        if isinstance(result, AffineMap) or isinstance(layer, AffineMap):
            result = layer @ result  # AffineMap's products check their own
        else:
            result = checked_product(layer, result, f"compose: layers[{i}] after layers[:{i}]")
    if isinstance(result, AffineMap):
        return result  # (read-only: itself, if alone)
    # one layer's csr_array shares the caller's arrays (a review: writing compose(A).data
    # changed A); a product is new
    return in_format(result.copy() if len(layers) == 1 else result, "csr")


def compose_kernels(*weights: ArrayLike, stride: Sequence[IntOrTuple] | None = None,
                    dilation: Sequence[IntOrTuple] | None = None,
                    groups: Sequence[int] | None = None) -> np.ndarray:
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
    >>> from sparseconv import compose_kernels
    >>> compose_kernels([[[1.0, 1.0]]], [[[1.0, 2.0]]])
    array([[[1., 3., 2.]]])
    >>> compose_kernels([[[1.0, 1.0]]], [[[1.0, 2.0]]], stride=[2, 1])  # W of stride 2
    array([[[1., 1., 2., 2.]]])
    """
    if not weights:
        raise ValueError("weights must hold at least one weight, got none")
    for i, w in enumerate(weights):  # (a new user's trial: a list was stacked into one)
        if (isinstance(w, (list, tuple)) and w
                and all(isinstance(v, np.ndarray) and v.ndim >= 3 for v in w)):
            raise TypeError(f"weights[{i}] is a {type(w).__name__} of {len(w)} weight arrays: "
                            "pass the weights as separate arguments, compose_kernels(*weights)")
    arrays = [as_weight(w, f"weights[{i}]") for i, w in enumerate(weights)]
    for i, w in enumerate(arrays):
        if w.ndim < 3 or w.size == 0:
            raise ValueError(f"weights[{i}] must be a non-empty (C_out, C_in/groups, "
                             f"*kernel_size) array, got shape {w.shape}")
        if w.ndim != arrays[0].ndim:
            raise ValueError(f"weights[{i}] must have as many spatial axes as weights[0] "
                             f"(shape {arrays[0].shape}), got shape {w.shape}")
    ndim, depth = arrays[0].ndim - 2, len(arrays)
    per_layer = {name: per_layer_tuples(values, name, depth, 1 if name == "groups" else ndim)
                 for name, values in (("stride", stride), ("dilation", dilation),
                                      ("groups", groups))}
    _check_composed_memory(arrays, per_layer)
    dense: list[np.ndarray] = []
    for i, (w, (g,)) in enumerate(zip(arrays, per_layer["groups"])):
        c_in = w.shape[1] * g if i == 0 else dense[-1].shape[0]
        if w.shape[0] % g or w.shape[1] * g != c_in:
            raise ValueError(
                f"weights[{i}].shape={w.shape} with groups[{i}]={g} must read the "
                f"{c_in} channels of " + ("its input" if i == 0 else f"weights[{i - 1}]")
                + f" (weights[{i}].shape[1] * groups == {c_in}, groups dividing shape[0])")
        dense.append(dense_weight(w, g))
    # the first layer's own dilation, as zeros in its kernel
    total, jump = dilate_kernel(dense[0], per_layer["dilation"][0]), per_layer["stride"][0]
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


def _check_composed_memory(arrays: list, per_layer: dict) -> None:
    """Refuse, before any work, a composed kernel (and its dense factors) beyond the limit."""
    kernel = [1 + d * (k - 1) for k, d in zip(arrays[0].shape[2:], per_layer["dilation"][0])]
    jump, largest = list(per_layer["stride"][0]), 0
    for w, s, d in zip(arrays[1:], per_layer["stride"][1:], per_layer["dilation"][1:]):
        kernel = [j * di * (k - 1) + t for j, di, k, t in zip(jump, d, w.shape[2:], kernel)]
        jump = [j * si for j, si in zip(jump, s)]
        largest = max(largest, w.shape[0] * math.prod(kernel))
    channels = max(w.shape[0] for w in arrays) * max(w.shape[1] * g for w, (g,) in
                                                      zip(arrays, per_layer["groups"]))
    itemsize = np.result_type(*arrays).itemsize
    check_memory(itemsize * (2 * largest * arrays[0].shape[1] * max(
        g for (g,) in per_layer["groups"]) + 2 * channels * math.prod(kernel)),
        "the composed kernel of compose_kernels")
