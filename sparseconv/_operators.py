"""Matrix-free convolution layers: ``scipy.sparse.linalg.LinearOperator`` subclasses.

Everything is driven by the :class:`ConvGeometry` that also builds the sparse matrices; the
products themselves are computed in :mod:`sparseconv._products`.

A convolution is ``(A, conj(A).T)``; a transposed convolution is ``(A.T, conj(A))``.
Batches are columns: ``matmat(X)`` takes ``X`` of shape ``(prod(input_shape), b)`` and hands
it on as an ``(C, *spatial, b)`` array in that memory order (batch last); an empty batch
(``b = 0``) gives an empty result, as scipy.sparse does.

Invariants: the operators override only scipy's underscored methods (``_matvec``,
``_rmatvec``, ``_matmat``, ``_rmatmat``, ``_adjoint``), so they accept exactly what scipy's
``LinearOperator`` accepts; they hold a private read-only copy of their weight, so the forward
product and the adjoint always describe the same matrix; and every product is sized against
the memory limit before it allocates (for one column at construction, for the batch given
at each product).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._geometry import ConvGeometry
from ._matrices import assemble, check_format
from ._products import check_product_memory, forward, forward_bytes, transpose_map
from ._typing import (
    ArrayLike,
    DTypeLike,
    ExplicitPaddingLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import as_weight, layer_dtype

__all__ = ["ConvOperator", "ConvTransposeOperator", "as_geometry", "layer_of"]


# ---------------------------------------------------------------------------------------------
# The operators.
# ---------------------------------------------------------------------------------------------
class _GeometryOperator(LinearOperator):
    """A LinearOperator mapping ``(C, *in)`` to ``(C', *out)`` arrays, flattened in C order.

    Subclasses set ``input_shape``, ``output_shape`` and implement ``_apply(X)`` and
    ``_apply_adjoint(Y)`` on arrays of shape ``(*input_shape, b)`` / ``(*output_shape, b)``,
    ``_apply_bytes(b, itemsize)`` and ``_apply_adjoint_bytes(b, itemsize)`` (what one product
    allocates) and ``_explicit(format, adjoint)``. Only scipy's underscored methods are
    overridden: the public ``matvec``/``matmat``/``dot``/``@`` are scipy's, which check the
    shapes they accept and call these.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def _columns(self, X, shape, what):
        """``X`` as an ``(n, k)`` array, or ValueError naming the shapes accepted."""
        X = np.asarray(X)
        n = math.prod(shape)
        if X.ndim == 1 and X.shape[0] == n:
            return X.reshape(n, 1)
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(
                f"{what} expects an array of shape ({n},), ({n}, 1) or ({n}, k) (a flattened "
                f"{shape} array, or k of them as columns), got shape {X.shape}"
            )
        return X

    def _product(self, X, apply, nbytes, shape_in, shape_out, what):
        X = self._columns(X, shape_in, what)
        b, dtype = X.shape[1], np.result_type(self.dtype, X.dtype)
        if b == 0:  # an empty batch, as scipy.sparse gives it
            return np.zeros((math.prod(shape_out), 0), dtype)
        check_product_memory(
            nbytes(b, dtype.itemsize),
            f"{what} of {self!r} on a batch of {b} (padded input, im2col or phase-split "
            f"scratch and the {shape_out} result)")
        return apply(X.reshape(*shape_in, b)).reshape(-1, b)

    def _matmat(self, X):
        return self._product(X, self._apply, self._apply_bytes, self.input_shape,
                             self.output_shape, "matmat")

    def _rmatmat(self, X):
        return self._product(X, self._apply_adjoint, self._apply_adjoint_bytes,
                             self.output_shape, self.input_shape, "rmatmat")

    def _matvec(self, x):
        return self._matmat(self._vector(x, self.input_shape, "matvec")).reshape(-1)

    def _rmatvec(self, x):
        return self._rmatmat(self._vector(x, self.output_shape, "rmatvec")).reshape(-1)

    def _vector(self, x, shape, what):
        x = np.asarray(x)
        n = math.prod(shape)
        if x.shape not in ((n,), (n, 1)):
            raise ValueError(f"{what} expects an array of shape ({n},) or ({n}, 1) (a flattened "
                             f"{shape} array), got shape {x.shape}")
        return x.reshape(n, 1)

    def _check_products(self) -> None:
        """Refuse, at construction, a layer whose products with one column exceed the limit."""
        item = self.dtype.itemsize
        for nbytes, what in ((self._apply_bytes, "matvec"),
                             (self._apply_adjoint_bytes, "rmatvec")):
            check_product_memory(
                nbytes(1, item), f"{what} of {self!r} (padded input, im2col or phase-split "
                "scratch and result, for one column)")

    def _adjoint(self):
        return _Adjoint(self)

    def tosparse(self, format: SparseFormat = "csr") -> SparseArray:
        """The explicit matrix in ``format``, sized against the memory limit first."""
        check_format(format)
        return self._explicit(format, adjoint=False)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.input_shape} -> {self.output_shape}, "
                f"dtype={self.dtype}>")


class _Adjoint(_GeometryOperator):
    """The adjoint ``A^H`` of a geometry operator, itself an operator (``.H.H`` is ``A``)."""

    def __init__(self, parent: _GeometryOperator):
        self.parent = parent
        self.input_shape, self.output_shape = parent.output_shape, parent.input_shape
        super().__init__(dtype=parent.dtype, shape=parent.shape[::-1])

    def _apply(self, X):
        return self.parent._apply_adjoint(X)

    def _apply_adjoint(self, X):
        return self.parent._apply(X)

    def _apply_bytes(self, b, itemsize):
        return self.parent._apply_adjoint_bytes(b, itemsize)

    def _apply_adjoint_bytes(self, b, itemsize):
        return self.parent._apply_bytes(b, itemsize)

    def _adjoint(self):
        return self.parent

    def _explicit(self, format, adjoint):
        return self.parent._explicit(format, adjoint=not adjoint)

    def __repr__(self) -> str:
        return f"<adjoint of {self.parent!r}>"


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
        input (float32 stays float32).

    Attributes
    ----------
    geometry : ConvGeometry
    weight : ndarray
        A private read-only copy of the weight given: changing the caller's array afterwards
        changes neither the operator nor its adjoint.
    input_shape, output_shape : tuple of int

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_matrix`; ``matvec`` and the other products raise
        ``ValueError`` for an array whose shape does not match the operator.
    MatrixTooLargeError
        A product with one column would allocate (padded input, im2col scratch, result) more
        than the memory limit; also from a product whose batch would.

    Notes
    -----
    ``matvec`` pads once, views the windows with ``as_strided`` and multiplies by the
    ``(C_out/groups, C_in/groups * prod(kernel))`` weight matrix with BLAS: O(nnz) flops and
    O(C_in/groups * prod(kernel) * prod(out)) extra memory. ``rmatvec`` is the transposed
    convolution of the conjugate weight, by whichever moves less memory: col2im (BLAS, then
    one slice-add per tap) when the layer widens, else one stride-1 correlation per stride
    phase; the border slabs of reflect, replicate or circular padding are then added back
    where they were copied from.

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
        padding: PaddingLike = 0, dilation: IntOrTuple = 1, groups: int = 1,
        padding_mode: PaddingMode = "zeros", flip: bool = False, dtype: DTypeLike | None = None,
    ) -> None:
        weight = as_weight(weight)
        self.geometry = ConvGeometry.from_weight(
            weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
            groups=groups, padding_mode=padding_mode, flip=flip,
        )
        dtype = layer_dtype(weight, dtype)
        self._weight = _own(weight)
        self._w = np.ascontiguousarray(self.geometry.tap_weights(self._weight), dtype=dtype)
        self._transpose_map = transpose_map(self.geometry, self._w.conj())
        self.input_shape = self.geometry.input_shape
        self.output_shape = self.geometry.output_shape
        super().__init__(dtype=dtype, shape=self.geometry.shape)
        self._check_products()

    @property
    def weight(self) -> np.ndarray:
        """The layer's weight: a private, read-only copy."""
        return self._weight

    def _apply(self, X):
        return forward(self.geometry, self._w, X)

    def _apply_adjoint(self, Y):
        return self._transpose_map(Y)

    def _apply_bytes(self, b, itemsize):
        return forward_bytes(self.geometry, b, itemsize)

    def _apply_adjoint_bytes(self, b, itemsize):
        return self._transpose_map.nbytes(b, itemsize)

    def _explicit(self, format, adjoint):
        # A^H is the transpose of the matrix of the conjugate weight: conjugate the few weights
        weight = self._weight.conj() if adjoint else self._weight
        return assemble(self.geometry, weight, self.dtype, format, transposed=adjoint)


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

    Attributes
    ----------
    geometry : ConvGeometry
        The geometry of the convolution it transposes (from ``output_shape`` to
        ``input_shape``).
    weight : ndarray
        A private read-only copy of the weight given.
    input_shape, output_shape : tuple of int

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_transpose_matrix`; ``matvec`` and the other products raise
        ``ValueError`` for an array whose shape does not match the operator.
    MatrixTooLargeError
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
    ) -> None:
        weight = as_weight(weight)
        self.geometry = ConvGeometry.for_transpose(
            weight.shape, input_shape, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
        )
        dtype = layer_dtype(weight, dtype)
        self._weight = _own(weight)
        self._w = np.ascontiguousarray(self._weight, dtype=dtype)
        self._w_conj = self._w.conj()
        self._transpose_map = transpose_map(self.geometry, self._w)
        self.input_shape = self.geometry.output_shape
        self.output_shape = self.geometry.input_shape
        super().__init__(dtype=dtype, shape=self.geometry.shape[::-1])
        self._check_products()

    @property
    def weight(self) -> np.ndarray:
        """The layer's weight: a private, read-only copy."""
        return self._weight

    def _apply(self, X):
        return self._transpose_map(X)

    def _apply_adjoint(self, Y):
        return forward(self.geometry, self._w_conj, Y)

    def _apply_bytes(self, b, itemsize):
        return self._transpose_map.nbytes(b, itemsize)

    def _apply_adjoint_bytes(self, b, itemsize):
        return forward_bytes(self.geometry, b, itemsize)

    def _explicit(self, format, adjoint):
        # the matrix is A.T of the geometry's A; its adjoint conj(A), from the conjugate weight
        weight = self._weight.conj() if adjoint else self._weight
        return assemble(self.geometry, weight, self.dtype, format, transposed=not adjoint)


def layer_of(A) -> tuple[ConvGeometry, bool] | None:
    """``(geometry, transposed)`` of a layer object, ``None`` for a plain matrix.

    A ConvGeometry or ConvOperator is its geometry's matrix; a ConvTransposeOperator (whose
    geometry is the convolution it transposes) and an operator's adjoint ``.H`` are its
    transpose.
    """
    if isinstance(A, ConvGeometry):
        return A, False
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
    found = layer_of(layer)
    if found is None or found[1]:
        raise TypeError(f"expected a ConvGeometry or a ConvOperator, got {type(layer).__name__}")
    return found[0]
