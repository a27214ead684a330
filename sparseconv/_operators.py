"""Matrix-free convolution layers: ``scipy.sparse.linalg.LinearOperator`` subclasses.

Everything is driven by the :class:`ConvGeometry` that also builds the sparse matrices; the
products themselves are computed in :mod:`sparseconv._products`.

A convolution is ``(A, conj(A).T)``; a transposed convolution is ``(A.T, conj(A))``.
Batches are columns: ``matmat(X)`` takes ``X`` of shape ``(prod(input_shape), b)`` and hands
it on as an ``(C, *spatial, b)`` array in that memory order (batch last).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ._geometry import ConvGeometry
from ._matrices import assemble, check_format
from ._products import forward, transpose_map
from ._validation import as_weight, result_dtype

__all__ = ["ConvOperator", "ConvTransposeOperator", "as_geometry", "layer_of"]


# ---------------------------------------------------------------------------------------------
# The operators.
# ---------------------------------------------------------------------------------------------
class _GeometryOperator(LinearOperator):
    """A LinearOperator mapping ``(C, *in)`` to ``(C', *out)`` arrays, flattened in C order.

    Subclasses set ``input_shape``, ``output_shape`` and implement ``_apply(X)`` and
    ``_apply_adjoint(Y)`` on arrays of shape ``(*input_shape, b)`` / ``(*output_shape, b)``.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def _check(self, x, shape, what):
        x = np.asarray(x)
        n = math.prod(shape)
        if x.ndim not in (1, 2) or x.shape[0] != n or (what.endswith("vec") and x.ndim == 2
                                                       and x.shape[1] != 1):
            expected = f"({n},) or ({n}, 1)" if what.endswith("vec") else f"({n}, k)"
            raise ValueError(
                f"{what} expects an array of shape {expected} (a flattened {shape} array), "
                f"got shape {x.shape}"
            )
        return x

    def matvec(self, x):
        return super().matvec(self._check(x, self.input_shape, "matvec"))

    def rmatvec(self, x):
        return super().rmatvec(self._check(x, self.output_shape, "rmatvec"))

    def matmat(self, X):
        return super().matmat(self._check(X, self.input_shape, "matmat"))

    def rmatmat(self, X):
        return super().rmatmat(self._check(X, self.output_shape, "rmatmat"))

    def _matmat(self, X):
        b = X.shape[1]
        return self._apply(X.reshape(*self.input_shape, b)).reshape(-1, b)

    def _rmatmat(self, X):
        b = X.shape[1]
        return self._apply_adjoint(X.reshape(*self.output_shape, b)).reshape(-1, b)

    def _matvec(self, x):
        return self._matmat(x.reshape(-1, 1)).reshape(-1)

    def _rmatvec(self, x):
        return self._rmatmat(x.reshape(-1, 1)).reshape(-1)

    def _adjoint(self):
        return _Adjoint(self)

    def tosparse(self, format: str = "csr") -> sp.sparray:
        raise NotImplementedError  # pragma: no cover - every subclass defines it


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

    def _adjoint(self):
        return self.parent

    def tosparse(self, format: str = "csr") -> sp.sparray:
        """The explicit matrix, ``parent.tosparse().T.conj()``, in ``format``."""
        return self.parent.tosparse("csr").T.conj().asformat(format)


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
        The operator's dtype; by default the weight's. Products follow numpy promotion of the
        weight and the input (float32 stays float32).

    Attributes
    ----------
    geometry : ConvGeometry
    weight : ndarray
    input_shape, output_shape : tuple of int

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_matrix`; ``matvec`` and the other products raise
        ``ValueError`` for an array whose shape does not match the operator.

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
        self, weight, input_shape: Sequence[int], *, stride=1, padding=0, dilation=1,
        groups: int = 1, padding_mode: str = "zeros", flip: bool = False, dtype=None,
    ):
        weight = as_weight(weight)
        self.geometry = ConvGeometry.from_weight(
            weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
            groups=groups, padding_mode=padding_mode, flip=flip,
        )
        dtype = result_dtype(weight, dtype)
        self.weight = weight
        self._w = np.ascontiguousarray(self.geometry.tap_weights(weight), dtype=dtype)
        self._transpose_map = transpose_map(self.geometry, self._w.conj())
        self.input_shape = self.geometry.input_shape
        self.output_shape = self.geometry.output_shape
        super().__init__(dtype=dtype, shape=self.geometry.shape)

    def _apply(self, X):
        return forward(self.geometry, self._w, X)

    def _apply_adjoint(self, Y):
        return self._transpose_map(Y)

    def tosparse(self, format: str = "csr") -> sp.sparray:
        """The explicit matrix, equal to :func:`sparseconv.conv_matrix` of the same layer."""
        check_format(format)
        return assemble(self.geometry, self.weight, self.dtype).asformat(format)


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
    input_shape, output_shape : tuple of int

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.conv_transpose_matrix`; ``matvec`` and the other products raise
        ``ValueError`` for an array whose shape does not match the operator.

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
        self, weight, input_shape: Sequence[int], *, stride=1, padding=0, output_padding=0,
        dilation=1, groups: int = 1, dtype=None,
    ):
        weight = as_weight(weight)
        self.geometry = ConvGeometry.for_transpose(
            weight.shape, input_shape, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
        )
        dtype = result_dtype(weight, dtype)
        self.weight = weight
        self._w = np.ascontiguousarray(weight, dtype=dtype)
        self._transpose_map = transpose_map(self.geometry, self._w)
        self.input_shape = self.geometry.output_shape
        self.output_shape = self.geometry.input_shape
        super().__init__(dtype=dtype, shape=self.geometry.shape[::-1])

    def _apply(self, X):
        return self._transpose_map(X)

    def _apply_adjoint(self, Y):
        return forward(self.geometry, self._w.conj(), Y)

    def tosparse(self, format: str = "csr") -> sp.sparray:
        """The explicit matrix, equal to :func:`sparseconv.conv_transpose_matrix`."""
        check_format(format)
        return assemble(self.geometry, self.weight, self.dtype).T.asformat(format)


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
