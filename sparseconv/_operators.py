"""Matrix-free convolution layers: ``scipy.sparse.linalg.LinearOperator`` subclasses.

Everything is driven by the :class:`ConvGeometry` that also builds the sparse matrices; the
products themselves are computed in :mod:`sparseconv._products` (``A @ x``) and
:mod:`sparseconv._adjoint_products` (``A.T @ y``).

A convolution is ``(A, conj(A).T)``; a transposed convolution is ``(A.T, conj(A))``.
Batches are columns: ``matmat(X)`` takes ``X`` of shape ``(prod(input_shape), b)`` and hands
it on as an ``(C, *spatial, b)`` array in that memory order (batch last); an empty batch
(``b = 0``) gives an empty result, as scipy.sparse does.

Shapes: ``input_shape``/``output_shape`` are the layer's ``(C, *spatial)`` shapes, PyTorch's;
``dims``/``dimsd`` (PyLops' names) are the shapes a flat vector reshapes to, the same or, with
``layout="channels_last"``, ``(*spatial, C)`` (the permutation is done at the boundary, one
copy each way). ``apply``/``apply_adjoint`` take and return such arrays, with an optional
leading batch axis.

Invariants: the operators override scipy's underscored methods (``_matvec``, ``_rmatvec``,
``_matmat``, ``_rmatmat``, ``_adjoint``, ``_transpose``), so they accept exactly what scipy's
``LinearOperator`` accepts -- the one public override is ``dot`` (hence ``@``), which refuses
an array of more than two dimensions by its shape before scipy would print the whole array;
they hold a private read-only copy of their weight, so the forward product and the adjoint
always describe the same matrix; and every product is sized against
the memory limit before it allocates (for one column at construction, for the batch given
at each product).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ._adjoint_products import transpose_map
from ._formats import in_format
from ._geometry import ConvGeometry
from ._matrices import assemble
from ._memory import MatrixTooLargeError, reworded
from ._operator_base import _GeometryOperator, _magnitudes, _working
from ._products import forward, forward_bytes, implicit_applies, tap_major
from ._typing import (
    ArrayLike,
    DTypeLike,
    ExplicitPaddingLike,
    IntOrTuple,
    Layout,
    PaddingLike,
    PaddingMode,
    ShapeLike,
)
from ._validation import as_weight, check_layout, first_index, layer_dtype

__all__ = ["ConvOperator", "ConvTransposeOperator", "as_geometry", "layer_of"]


def _matrices_for(geom: ConvGeometry, weight: np.ndarray, w: np.ndarray, dtype: np.dtype,
                  transposed: bool) -> tuple[Any, Any] | None:
    """For a weight with inf or NaN entries in ``dtype`` (``w``: the weights the products
    multiply by, as they hold them), the operator's explicit matrix and its adjoint (CSR,
    channels-first), on which its products then run; None for a finite weight.

    The matrix-free products multiply the padding's zeros (and the zero columns of their
    scratch) by every tap, and inf * 0 is nan, where the matrix has no entry at all: so a
    weight that is not finite would make them differ from :func:`sparseconv.conv_matrix`
    (PyTorch's own forward and its gradient differ the same way). A finite weight that
    overflows ``dtype`` (1e300 in float32: a review) counts as not finite.
    """
    if w.dtype.kind not in "fc" or np.isfinite(w).all():
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # (the casts of a weight that
        # overflows dtype: their infinities are what this route is for)
        where = first_index(~np.isfinite(weight.astype(dtype)))
    what = ("the weight's taps that the padding folds together"
            if where is None else f"weight{list(where)}")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = assemble(geom, weight, dtype, "csr", transposed=transposed,
                              layout="channels_first")
    except MatrixTooLargeError as exc:
        raise reworded(exc, f"{what} is not finite in {dtype}: with inf or NaN entries the "
                            "operator's products run on its explicit matrix (matrix-free, the "
                            f"padding's zeros times inf would be nan), and {exc}") from None
    return matrix, matrix.conj().T.tocsr()


def _on_matrix(matrix, X: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``matrix @ X`` for ``X`` of shape ``(*in, b)``, shaped ``(*shape, b)``."""
    return (matrix @ X.reshape(matrix.shape[1], -1)).reshape(*shape, X.shape[-1])


def _taps_for(geom: ConvGeometry, w: np.ndarray) -> np.ndarray | None:
    """The weight as the implicit GEMM reads it, kept where the forward product runs it."""
    return tap_major(geom, w) if implicit_applies(geom, w.dtype) else None


def _own(weight: np.ndarray) -> np.ndarray:
    """A private, read-only copy: later changes to the caller's array change nothing."""
    owned = np.array(weight, copy=True)
    owned.flags.writeable = False
    return owned


class ConvOperator(_GeometryOperator):
    """A convolution layer (PyTorch's ``conv{1,2,3}d``) as a matrix-free LinearOperator.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride, padding, dilation, groups, padding_mode, flip
        Exactly as :func:`sparseconv.conv_matrix`.
    dtype : numpy dtype, optional
        The operator's dtype; by default the weight's (float16 weights compute in float32, as
        :func:`sparseconv.conv_matrix`). Products follow numpy promotion of the weight and the
        input (float32 stays float32). Integer and bool products are exact: computed in int64
        and refused where their dtype cannot hold a result, where numpy would wrap around.
    layout : {"channels_first", "channels_last"}, optional
        How vectors are flattened, as :func:`sparseconv.conv_matrix`: C order of ``(C,
        *spatial)`` or of ``(*spatial, C)``.

    Attributes
    ----------
    geometry : ConvGeometry
    weight : ndarray
        A private read-only copy of the weight given: changing the caller's array afterwards
        changes neither the operator nor its adjoint.
    input_shape, output_shape : tuple of int
        The layer's ``(C, *spatial)`` shapes, whatever the layout.
    dims, dimsd : tuple of int
        PyLops' names: the shapes of an input and an output array in the operator's layout
        (``input_shape``/``output_shape``, or ``(*spatial, C)`` if channels-last).
    layout : str

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_matrix`; ``matvec`` and the other products raise
        ``ValueError`` for an array whose shape does not match the operator.
    MatrixTooLargeError
        A product with one column would allocate (padded input, im2col scratch, result) more
        than the memory limit; also from a product whose batch would; the explicit matrix
        of a weight that is not finite, over the limit.
    OverflowError
        From a product in an integer or bool dtype, where that dtype cannot hold an entry of
        the result (or int64 a partial sum).

    Notes
    -----
    ``matvec`` pads once, views the windows with ``as_strided`` and multiplies by the
    ``(C_out/groups, C_in/groups * prod(kernel))`` weight matrix with BLAS: O(nnz) flops and
    O(C_in/groups * prod(kernel) * prod(out)) extra memory. ``rmatvec`` is the transposed
    convolution of the conjugate weight, by whichever moves less memory: col2im (BLAS, then
    one slice-add per tap) when the layer widens, else one stride-1 correlation per stride
    phase; the border slabs of reflect, replicate or circular padding are then added back
    where they were copied from.

    A weight with inf or NaN entries makes the products run on the explicit matrix
    (``tosparse()``, built at construction and sized against the memory limit): the
    matrix-free ones multiply the padding's zeros by every tap, and ``inf * 0`` is nan where
    the matrix has no entry. (PyTorch's forward gives that nan, its gradient does not.)

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import ConvOperator
    >>> rng = np.random.default_rng(0)
    >>> A = ConvOperator(rng.standard_normal((8, 3, 3, 3)), (3, 32, 32), stride=2, padding=1)
    >>> A.shape, A.output_shape
    ((2048, 3072), (8, 16, 16))
    >>> x, y = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
    >>> bool(np.isclose(y @ (A @ x), (A.H @ y) @ x))       # the adjoint passes the dot test
    True
    >>> bool(np.allclose(A.tosparse() @ x, A @ x))
    True
    """

    def __init__(
        self, weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
        padding: PaddingLike | None = 0, dilation: IntOrTuple = 1, groups: int = 1,
        padding_mode: PaddingMode = "zeros", flip: bool = False, dtype: DTypeLike | None = None,
        layout: Layout = "channels_first",
    ) -> None:
        self.layout = check_layout(layout)
        weight = as_weight(weight)
        self.geometry = ConvGeometry.from_weight(
            weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
            groups=groups, padding_mode=padding_mode, flip=flip,
        )
        dtype = layer_dtype(weight, dtype)
        self._weight = _own(weight)
        self._w = np.ascontiguousarray(self.geometry.tap_weights(self._weight),
                                       dtype=_working(dtype))
        self._taps = _taps_for(self.geometry, self._w)
        self._transpose_map = transpose_map(self.geometry, self._w.conj())
        self._magnitude = _magnitudes(self.geometry, self._w)
        self.input_shape = self.geometry.input_shape
        self.output_shape = self.geometry.output_shape
        super().__init__(dtype=dtype, shape=self.geometry.shape)
        self._check_products()
        self._matrices = _matrices_for(self.geometry, self._weight, self._w, dtype,
                                       transposed=False)

    @property
    def weight(self) -> np.ndarray:
        """The layer's weight: a private, read-only copy."""
        return self._weight

    def _apply(self, X):
        if self._matrices is not None:
            return _on_matrix(self._matrices[0], X, self.output_shape)
        return forward(self.geometry, self._w, X, self._taps)

    def _apply_adjoint(self, Y):
        if self._matrices is not None:
            return _on_matrix(self._matrices[1], Y, self.input_shape)
        return self._transpose_map(Y)

    def _apply_bytes(self, b, itemsize):
        return forward_bytes(self.geometry, b, itemsize)

    def _apply_adjoint_bytes(self, b, itemsize):
        return self._transpose_map.nbytes(b, itemsize)

    def _explicit(self, format, adjoint, blocksize=None, window=None):
        # A^H is the transpose of the matrix of the conjugate weight: conjugate the few weights
        weight = self._weight.conj() if adjoint else self._weight
        return _assembled(self, weight, format, adjoint, blocksize, window)


class ConvTransposeOperator(_GeometryOperator):
    """A transposed convolution (PyTorch's ``conv_transpose{1,2,3}d``) as a LinearOperator.

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out/groups, *kernel_size)
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride, padding, output_padding, dilation, groups
        Exactly as :func:`sparseconv.conv_transpose_matrix`.
    dtype : numpy dtype, optional
    layout : {"channels_first", "channels_last"}, optional
        As :class:`ConvOperator`.
    output_size, padding_mode
        Exactly as :func:`sparseconv.conv_transpose_matrix`.

    Attributes
    ----------
    geometry : ConvGeometry
        The geometry of the convolution it transposes (from ``output_shape`` to
        ``input_shape``).
    weight : ndarray
        A private read-only copy of the weight given.
    input_shape, output_shape : tuple of int
    dims, dimsd : tuple of int
        As :class:`ConvOperator`.
    layout : str

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_transpose_matrix`; ``matvec`` and the other products raise
        ``ValueError`` for an array whose shape does not match the operator.
    MatrixTooLargeError, OverflowError
        As :class:`ConvOperator`.

    Notes
    -----
    ``matvec`` is the transpose (not the conjugate transpose) of the convolution with the same
    weight, as PyTorch computes; ``rmatvec`` (its adjoint) is a strided convolution with the
    conjugate weight.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import ConvTransposeOperator
    >>> w = np.random.default_rng(0).standard_normal((16, 8, 4, 4))
    >>> T = ConvTransposeOperator(w, (16, 7, 7), stride=2, padding=1)
    >>> T.output_shape
    (8, 14, 14)
    >>> T.H.output_shape                                  # the adjoint: a strided convolution
    (16, 7, 7)
    """

    def __init__(
        self, weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
        padding: ExplicitPaddingLike = 0, output_padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1, groups: int = 1, dtype: DTypeLike | None = None,
        layout: Layout = "channels_first", output_size: IntOrTuple | None = None,
        padding_mode: Literal["zeros"] = "zeros",
    ) -> None:
        self.layout = check_layout(layout)
        weight = as_weight(weight)
        self.geometry = ConvGeometry.for_transpose(
            weight.shape, input_shape, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size, padding_mode=padding_mode,
        )
        dtype = layer_dtype(weight, dtype)
        self._weight = _own(weight)
        self._w = np.ascontiguousarray(self._weight, dtype=_working(dtype))
        self._w_conj = self._w.conj()
        self._taps = _taps_for(self.geometry, self._w_conj)
        self._transpose_map = transpose_map(self.geometry, self._w)
        self._magnitude = _magnitudes(self.geometry, self._w)
        self.input_shape = self.geometry.output_shape
        self.output_shape = self.geometry.input_shape
        super().__init__(dtype=dtype, shape=self.geometry.shape[::-1])
        self._check_products()
        self._matrices = _matrices_for(self.geometry, self._weight, self._w, dtype,
                                       transposed=True)

    @property
    def weight(self) -> np.ndarray:
        """The layer's weight: a private, read-only copy."""
        return self._weight

    def _apply(self, X):
        if self._matrices is not None:
            return _on_matrix(self._matrices[0], X, self.output_shape)
        return self._transpose_map(X)

    def _apply_adjoint(self, Y):
        if self._matrices is not None:
            return _on_matrix(self._matrices[1], Y, self.input_shape)
        return forward(self.geometry, self._w_conj, Y, self._taps)

    def _apply_bytes(self, b, itemsize):
        return self._transpose_map.nbytes(b, itemsize)

    def _apply_adjoint_bytes(self, b, itemsize):
        return forward_bytes(self.geometry, b, itemsize)

    def _explicit(self, format, adjoint, blocksize=None, window=None):
        # the matrix is A.T of the geometry's A; its adjoint conj(A), from the conjugate weight
        weight = self._weight.conj() if adjoint else self._weight
        return _assembled(self, weight, format, not adjoint, blocksize, window)


def _assembled(op, weight: np.ndarray, format, transposed: bool, blocksize, window):
    """The matrix of ``op``'s geometry with ``weight`` (its transpose if ``transposed``), or
    only its ``window``: ``((r0, r1), (c0, c1))``, the rows of channel blocks ``r0:r1`` and
    the columns of ``c0:c1`` (channels first), built from the geometry in memory
    proportional to them: the layer of those channels alone where there is one group, else
    the window's rows (:func:`sparseconv._blocks.row_block`) cut to its columns."""
    g = op.geometry
    if window is None:
        return assemble(g, weight, op.dtype, format, transposed=transposed, layout=op.layout,
                        blocksize=blocksize)
    (r0, r1), (c0, c1) = window
    if g.groups == 1:  # block (o, c) of the matrix is weight[o, c]'s alone
        (o0, o1), (i0, i1) = ((c0, c1), (r0, r1)) if transposed else ((r0, r1), (c0, c1))
        sub = dataclasses.replace(g, out_channels=o1 - o0, in_channels=i1 - i0)
        return assemble(sub, weight[o0:o1, i0:i1], op.dtype, format, transposed=transposed)
    from ._blocks import row_block, transposed_rows_by_blocks  # (they assemble with
    # _matrices' code)

    per_out, per_in = math.prod(g.output_size), math.prod(g.input_size)  # a channel block's
    row, col = (per_in, per_out) if transposed else (per_out, per_in)
    if transposed and not transposed_rows_by_blocks(g):  # the whole matrix, cut
        block = assemble(g, weight, op.dtype, "csr", transposed=True)[r0 * row:r1 * row]
    else:
        block = row_block(g, weight, op.dtype, slice(r0 * row, r1 * row), transposed=transposed)
    return in_format(sp.csr_array(block[:, c0 * col:c1 * col]), format)


def layer_of(A) -> tuple[ConvGeometry, bool] | None:
    """``(geometry, transposed)`` of a layer object, ``None`` for a plain matrix.

    A ConvGeometry or ConvOperator is its geometry's matrix; a ConvTransposeOperator (whose
    geometry is the convolution it transposes) and an operator's adjoint ``.H`` are its
    transpose. A channels-last operator is neither (its matrix is a permutation of the
    geometry's): ``None``, as a plain matrix.
    """
    if isinstance(A, ConvGeometry):
        return A, False
    if getattr(A, "layout", "channels_first") != "channels_first":
        return None
    if isinstance(A, ConvOperator):
        return A.geometry, False
    if isinstance(A, ConvTransposeOperator):
        return A.geometry, True
    parent = getattr(A, "parent", None)
    if isinstance(A, LinearOperator) and parent is not None:
        inner = layer_of(parent)
        return None if inner is None else (inner[0], not inner[1])
    return None


def as_geometry(layer) -> ConvGeometry:
    """The geometry of a ConvGeometry or ConvOperator (for index maps, so not transposed)."""
    if isinstance(layer, ConvOperator):  # in any layout: index maps are spatial
        return layer.geometry
    found = layer_of(layer)
    if found is None or found[1]:
        raise TypeError(f"expected a ConvGeometry or a ConvOperator, got {type(layer).__name__}")
    return found[0]
