"""The base of sparseconv's matrix-free layers: a ``LinearOperator`` driven by a geometry.

:class:`_GeometryOperator` holds what :class:`sparseconv.ConvOperator` and
:class:`sparseconv.ConvTransposeOperator` share: the shapes (``dims``, ``dimsd``), the checks
of what a product takes (numeric arrays of the right size, flat, as images or as a batch),
the sizing of every product against the memory limit, the widening of integer products
that float64 would round, and the adjoint and transpose as operators of their own
(:class:`_Adjoint`, :class:`_Transpose`). The module docstring of
:mod:`sparseconv._operators` has the conventions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ._geometry import ConvGeometry, copies_of
from ._layout import array_shape, from_channels_first, to_channels_first
from ._matrices import check_format
from ._memory import get_memory_limit
from ._products import check_product_memory
from ._read_only import ReadOnlyState
from ._typing import (
    ArrayLike,
    BlockSize,
    SparseArray,
    SparseFormat,
)
from ._validation import check_blocksize, first_index

__all__ = ["ShapeNamedProducts", "_GeometryOperator"]


class ShapeNamedProducts(ReadOnlyState):
    """scipy's public ``matvec``/``rmatvec``/``matmat``/``rmatmat`` for an operator of
    ``input_shape`` to ``output_shape`` arrays, flattened: scipy's own, which decide what they
    accept; where they refuse a shape, the error names the shapes accepted (scipy's says
    "dimension mismatch"). Mixed in before ``LinearOperator``; pickled and copied with its
    read-only arrays read-only (:class:`ReadOnlyState`)."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    shape: tuple[int, int]  # (the LinearOperator's)

    def matvec(self, x: ArrayLike) -> np.ndarray:
        return self._scipys("matvec", x, lambda: self._vector(x, self.input_shape, "matvec"))

    def rmatvec(self, x: ArrayLike) -> np.ndarray:
        return self._scipys("rmatvec", x, lambda: self._vector(x, self.output_shape, "rmatvec"))

    def matmat(self, X: ArrayLike) -> np.ndarray:
        return self._scipys("matmat", X, lambda: self._matrix(X, self.input_shape, "matmat"))

    def rmatmat(self, X: ArrayLike) -> np.ndarray:
        return self._scipys("rmatmat", X, lambda: self._matrix(X, self.output_shape, "rmatmat"))

    def dot(self, x: Any) -> Any:
        """scipy's ``dot`` (and ``@``), except that an array of more than two dimensions is
        refused by its shape (scipy's message prints the whole array; ``x @ A`` as well).

        Parameters
        ----------
        x : ndarray, LinearOperator or scalar
            A vector of length ``shape[1]``, columns ``(shape[1], k)``, another operator (a
            product operator) or a scalar (a scaled operator; ``A @ 2.0`` is refused, as
            scipy refuses it), as :meth:`scipy.sparse.linalg.LinearOperator.dot` takes; a
            scipy.sparse array is refused by its kind.

        Returns
        -------
        ndarray or LinearOperator
            ``A @ x``.
        """
        _dense(x, "A @ x", callable(getattr(self, "tosparse", None)))
        if isinstance(x, np.ndarray) and x.ndim > 2:
            raise ValueError(
                f"{self!r} multiplies flat vectors of length {self.shape[1]} or ({self.shape[1]},"
                f" k) columns, got an array of shape {x.shape}: {self._shaped_hint()}")
        return super().dot(x)  # type: ignore[misc]

    def _rdot(self, x: Any) -> Any:
        """scipy's ``x @ A``, refusing an array of more than two dimensions, or of another
        length, by its shape (scipy's transposed operator says "dimension mismatch")."""
        wrong = isinstance(x, np.ndarray) and (x.ndim > 2 or x.ndim in (1, 2) and (
            x.shape[-1] != self.shape[0]))
        if wrong:
            raise ValueError(
                f"y @ {self!r} multiplies flat row vectors of length {self.shape[0]} or (k, "
                f"{self.shape[0]}) rows, got an array of shape {x.shape}"
                + (f": {self._shaped_hint(adjoint=True)}" if x.ndim > 2 else ""))
        return super()._rdot(x)  # type: ignore[misc]

    def _shaped_hint(self, adjoint: bool = False) -> str:
        """What to do with an array of the operator's own shapes."""
        shape = self.output_shape if adjoint else self.input_shape
        return f"flatten an array of shape {shape} (x.ravel())"

    def _scipys(self, name: str, x: ArrayLike, check: Callable[[], Any]) -> np.ndarray:
        """scipy's public ``name`` (which decides what it accepts); where it refuses the
        shape, the refusal says which shapes are accepted (``check``'s ValueError) instead of
        scipy's "dimension mismatch"."""
        _dense(x, name, callable(getattr(self, "tosparse", None)))
        try:
            return getattr(super(), name)(x)
        except ValueError as exc:
            try:
                check()
            except ValueError as ours:
                raise ours from None
            raise exc

    def _matrix(self, X, shape, what):
        """``_columns``, for scipy's ``matmat``, which takes 2-d arrays only."""
        if np.ndim(X) != 2:
            raise ValueError(f"{what} expects a 2-d array of shape ({math.prod(shape)}, k), "
                             f"got shape {np.shape(X)}")
        return self._columns(X, shape, what)

    def _columns(self, X, shape, what):
        """``X`` as an ``(n, k)`` array, or ValueError naming the shapes accepted."""
        X = _numeric(X, what)
        n = math.prod(shape)
        if X.ndim == 1 and X.shape[0] == n:
            return X.reshape(n, 1)
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(
                f"{what} expects an array of shape ({n},), ({n}, 1) or ({n}, k) (a flattened "
                f"{shape} array, or k of them as columns), got shape {X.shape}"
            )
        return X

    def _vector(self, x, shape, what):
        x = np.asarray(x)
        n = math.prod(shape)
        if x.shape not in ((n,), (n, 1)):
            raise ValueError(f"{what} expects an array of shape ({n},) or ({n}, 1) (a flattened "
                             f"{shape} array), got shape {x.shape}")
        return x.reshape(n, 1)


class _GeometryOperator(ShapeNamedProducts, LinearOperator):
    """A LinearOperator mapping ``(C, *in)`` to ``(C', *out)`` arrays, flattened in C order.

    Subclasses set ``input_shape``, ``output_shape`` and implement ``_apply(X)`` and
    ``_apply_adjoint(Y)`` on arrays of shape ``(*input_shape, b)`` / ``(*output_shape, b)``,
    ``_apply_bytes(b, itemsize)`` and ``_apply_adjoint_bytes(b, itemsize)`` (what one product
    allocates) and ``_explicit(format, adjoint, blocksize, window)`` (``window``: the
    matrix's rows and columns of a range of channel blocks each, channels first). scipy's
    underscored methods do the work; the public products are :class:`ShapeNamedProducts`'.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layout: str = "channels_first"
    #: For an integer or bool operator, a bound on the magnitudes of any row's or column's
    #: entries, summed (:func:`_magnitudes`), else None: see :func:`_widened`.
    _magnitude: int | None = None

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape of an input array: ``input_shape``, or ``(*spatial, C)`` if channels-last
        (PyLops' name: ``x.reshape(dims)`` is the image a flat input vector holds)."""
        return array_shape(self.input_shape, self.layout)

    @property
    def dimsd(self) -> tuple[int, ...]:
        """The shape of an output array, as :attr:`dims` (PyLops' name for the data shape)."""
        return array_shape(self.output_shape, self.layout)

    def apply(self, x: ArrayLike) -> np.ndarray:
        """The layer applied to an array shaped ``dims`` or ``(N, *dims)`` (a batch).

        Parameters
        ----------
        x : array_like, shape ``dims`` or ``(N, *dims)``
            The input, in the operator's layout: ``(C, *spatial)``, or ``(*spatial, C)`` when
            the operator's layout is channels-last.

        Returns
        -------
        ndarray, shape ``dimsd`` or ``(N, *dimsd)``
            The output, in the same layout as the input.

        Raises
        ------
        ValueError
            An array of any other shape; the message names the shapes.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import ConvOperator
        >>> A = ConvOperator(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1)
        >>> A.apply(np.ones((3, 8, 8))).shape, A.apply(np.ones((5, 3, 8, 8))).shape
        ((4, 8, 8), (5, 4, 8, 8))
        """
        return self._shaped(x, self.dims, self.dimsd, self.matmat, "apply")

    def apply_adjoint(self, y: ArrayLike) -> np.ndarray:
        """The adjoint applied to an array shaped ``dimsd`` or ``(N, *dimsd)``.

        Parameters
        ----------
        y : array_like, shape ``dimsd`` or ``(N, *dimsd)``
            An output-shaped array, in the operator's layout.

        Returns
        -------
        ndarray, shape ``dims`` or ``(N, *dims)``
            ``A^H y``, in the same layout.

        Raises
        ------
        ValueError
            An array of any other shape; the message names the shapes.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import ConvOperator
        >>> A = ConvOperator(np.ones((4, 3, 3, 3)), (3, 8, 8), stride=2, padding=1,
        ...                  layout="channels_last")
        >>> A.dims, A.dimsd, A.apply_adjoint(np.ones((2, 4, 4, 4))).shape
        ((8, 8, 3), (4, 4, 4), (2, 8, 8, 3))
        """
        return self._shaped(y, self.dimsd, self.dims, self.rmatmat, "apply_adjoint")

    @staticmethod
    def _shaped(x, dims, dimsd, product, what):
        x = _numeric(x, what)
        if x.shape == dims:
            return product(x.reshape(-1, 1)).reshape(dimsd)
        if x.ndim == len(dims) + 1 and x.shape[1:] == dims:
            n = x.shape[0]  # (sizes spelled out: -1 is undetermined for an empty batch)
            return product(x.reshape(n, math.prod(dims)).T).T.reshape(n, *dimsd)
        raise ValueError(f"{what} expects an array of shape {dims} or {_batched(dims)}, got "
                         f"shape {x.shape}")

    def _shaped_hint(self, adjoint: bool = False) -> str:
        if adjoint:
            return (f"use A.apply_adjoint(y) for arrays shaped {self.dimsd} or "
                    f"{_batched(self.dimsd)} (the adjoint; y @ A is its conjugate)")
        return (f"use A.apply(x) for arrays shaped {self.dims} or {_batched(self.dims)}, or "
                "A @ x.ravel()")

    def _sized_for(self, b: int, dtype, adjoint: bool = False) -> None:
        """Refuse (:class:`~sparseconv.MatrixTooLargeError`) a product on a batch of ``b``
        columns of ``dtype`` that would need more than the memory limit, as ``matmat`` (or
        ``rmatmat``, ``adjoint``) refuses it, without computing it: for callers that plan
        products before they have the data (``sparseconv.dask``'s graphs)."""
        if adjoint:
            self._at_once(b, np.result_type(self.dtype, dtype), self._apply_adjoint_bytes,
                          self.output_shape, self.input_shape, "rmatmat")
        else:
            self._at_once(b, np.result_type(self.dtype, dtype), self._apply_bytes,
                          self.input_shape, self.output_shape, "matmat")

    def _batch_bytes(self, b, dtype, nbytes, shape_in, shape_out) -> int:
        """What a product on ``b`` columns of ``dtype`` allocates (``nbytes``, and the
        permuted copies of a channels-last layout)."""
        itemsize = 8 if dtype.kind in "biu" else dtype.itemsize  # (int64: _widened)
        permuted = 0 if self.layout == "channels_first" else (
            (math.prod(shape_in) + math.prod(shape_out)) * b * itemsize)  # the two permuted
        return nbytes(b, itemsize) + permuted  # copies

    def _at_once(self, b, dtype, nbytes, shape_in, shape_out, what) -> int:
        """How many of ``b`` columns a product runs at once: all where their scratch is within
        the memory limit, else the most whose scratch and the whole result are (scipy's
        iterative solvers ask for blocks of columns: a block over the limit was refused,
        where it can run a part at a time); refused where not even one column fits that
        way."""
        limit = get_memory_limit()
        whole = self._batch_bytes(b, dtype, nbytes, shape_in, shape_out)
        if limit is None or whole <= limit:
            return b
        result = math.prod(shape_out) * b * (8 if dtype.kind in "biu" else dtype.itemsize)

        def fits(c: int) -> bool:
            return self._batch_bytes(c, dtype, nbytes, shape_in, shape_out) + result <= limit

        if not fits(1):  # refused, naming the least that would run (two reviews: the
            # batch's whole scratch, which need not fit; a column's beside the result, which
            # counts a matvec's result twice)
            parts = self._batch_bytes(1, dtype, nbytes, shape_in, shape_out) + result
            check_product_memory(
                min(whole, parts),
                lambda: f"{what} of {self!r} on a batch of {b}" + (
                    f", a column at a time (the batch's {shape_out} results, and one "
                    "column's padded input, im2col or phase-split scratch)" if parts < whole
                    else f" (padded input, im2col or phase-split scratch and the {shape_out} "
                    "result)"))
        low, high = 1, b  # fits(low), not fits(high): the scratch grows with the columns
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low

    def _product(self, X, apply, nbytes, shape_in, shape_out, what, first=0):
        """``apply`` on the columns of ``X`` (``first``: the index of the first among all the
        caller's, which an error names)."""
        X = self._columns(X, shape_in, what)
        b, dtype = X.shape[1], np.result_type(self.dtype, X.dtype)
        if b == 0:  # an empty batch, as scipy.sparse gives it
            return np.zeros((math.prod(shape_out), 0), dtype)
        at_once = self._at_once(b, dtype, nbytes, shape_in, shape_out, what)  # (or refused)
        if at_once < b:  # a part of the columns at a time, into the one result
            Y = None
            for start in range(0, b, at_once):
                part = self._product(X[:, start:start + at_once], apply, nbytes, shape_in,
                                     shape_out, what, first + start)
                if Y is None:
                    Y = np.empty((part.shape[0], b), part.dtype)
                Y[:, start:start + part.shape[1]] = part
            return Y
        exact = dtype.kind in "biu"  # computed in int64, then checked: _widened, _held
        if exact:
            X = _widened(X, dtype, self._magnitude, what)
        Y = from_channels_first(apply(to_channels_first(X, shape_in, self.layout)), self.layout)
        return _held(Y, dtype, what, first) if exact else Y

    def _matmat(self, X):
        return self._product(X, self._apply, self._apply_bytes, self.input_shape,
                             self.output_shape, "matmat")

    def _rmatmat(self, X):
        return self._product(X, self._apply_adjoint, self._apply_adjoint_bytes,
                             self.output_shape, self.input_shape, "rmatmat")

    def _matvec(self, x):
        return self._product(self._vector(x, self.input_shape, "matvec"), self._apply,
                             self._apply_bytes, self.input_shape, self.output_shape,
                             "matvec").reshape(-1)

    def _rmatvec(self, x):
        return self._product(self._vector(x, self.output_shape, "rmatvec"), self._apply_adjoint,
                             self._apply_adjoint_bytes, self.output_shape, self.input_shape,
                             "rmatvec").reshape(-1)

    def _check_products(self) -> None:
        """Refuse, at construction, a layer whose products with one column exceed the limit."""
        item = self.dtype.itemsize
        for nbytes, what in ((self._apply_bytes, "matvec"),
                             (self._apply_adjoint_bytes, "rmatvec")):
            check_product_memory(
                nbytes(1, item), f"{what} of {self!r} (padded input, im2col or phase-split "
                "scratch and result, for one column)", batch=False)

    def _adjoint(self):
        return _Adjoint(self)

    def _transpose(self):
        return _Transpose(self)

    def tosparse(self, format: SparseFormat = "csr", *,
                 blocksize: BlockSize | None = None) -> SparseArray:
        """The explicit matrix in ``format`` and the operator's layout, sized against the
        memory limit first.

        Parameters
        ----------
        format : {"csr", "csc", "coo", "bsr"}
        blocksize : (int, int), optional
            For ``format="bsr"``, as :func:`sparseconv.conv_matrix`'s.

        Returns
        -------
        scipy.sparse array
            ``conv_matrix`` of the same layer (``conv_transpose_matrix`` for a transposed
            one), equal to ``self @ np.eye(n)``.
        """
        check_format(format)
        return self._explicit(format, adjoint=False,
                              blocksize=check_blocksize(blocksize, format))

    def __repr__(self) -> str:
        layout = "" if self.layout == "channels_first" else f", layout={self.layout!r}"
        return (f"<{type(self).__name__} {self.input_shape} -> {self.output_shape}, "
                f"dtype={self.dtype}{layout}>")


def _dense(x: Any, what: str, tosparse: bool = True) -> None:
    """Refuse a scipy.sparse array by its kind (a new user's trial: numpy reads one as a 0-d
    object array, and the refusal said "got shape ()" of a (50, 1) column); ``tosparse``:
    whether the operator has the matrix to offer instead."""
    if sp.issparse(x):
        raise TypeError(f"{what} takes dense arrays (numpy's), got a scipy.sparse "
                        f"{x.format} array of shape {x.shape}: pass x.toarray()"
                        + (", or multiply the layer's matrix, A.tosparse() @ x" if tosparse
                           else ""))


def _numeric(x: ArrayLike, what: str) -> np.ndarray:
    """``x`` as an array of numbers, or a TypeError (numpy's own would name a ufunc loop)."""
    _dense(x, what)
    x = np.asarray(x)
    if x.dtype.kind not in "biufc":
        raise TypeError(f"{what} expects a numeric array, got dtype {x.dtype}")
    return x


def _batched(dims: tuple[int, ...]) -> str:
    return f"(N, {', '.join(map(str, dims))})"


def _magnitudes(geom: ConvGeometry, w: np.ndarray) -> int | None:
    """For an integer or bool weight, a bound on the sum of the magnitudes of any row's or
    column's entries, as a Python integer: ``sum(|w|)`` times the most padded positions that
    copy one input (a column of a reflect-, replicate- or circular-padded layer reads an
    edge entry through each of its copies: a review); else None."""
    if w.dtype.kind not in "biu":
        return None
    return int(np.abs(w.astype(object)).sum()) * copies_of(geom)


def _working(dtype: np.dtype) -> np.dtype:
    """The dtype the weights multiply in: ``dtype``, but uint64's in int64 (numpy promotes
    uint64 with the int64 of an exact product to float64: a review; :func:`as_weight`
    keeps integer weights within 2**53), which promotes with every other dtype alike."""
    return np.dtype(np.int64) if dtype == np.uint64 else dtype


def _widened(X: np.ndarray, dtype: np.dtype, magnitude: int, what: str) -> np.ndarray:
    """``X`` in int64, for a product in the integer or bool ``dtype`` that is exact there.

    numpy's integer arithmetic wraps around (100 + 100 is -56 in int8; True + True is True),
    so integer products run in int64 and :func:`_held` checks the result. Every entry of the
    product, and every partial sum on the way, is at most ``magnitude * max|X|``
    (``magnitude``: :func:`_magnitudes`, which bounds the summed magnitudes of any row's or
    column's entries), so where that is below ``2**63`` the int64 product is exact; else
    OverflowError.
    """
    largest = max(abs(int(X.max())), abs(int(X.min()))) if X.size else 0
    if magnitude * largest >= 2**63:
        raise OverflowError(
            f"{what} in {dtype}: the sums could exceed int64's range (the weight's magnitudes "
            f"sum to {magnitude}, the input's largest is {largest}); pass a floating dtype")
    return X.astype(np.int64)


def _held(Y: np.ndarray, dtype: np.dtype, what: str, first: int = 0) -> np.ndarray:
    """An exact int64 product as ``dtype``, or OverflowError where ``dtype`` cannot hold it
    (naming the entry's column as ``first`` plus its own: a part of the caller's columns,
    a review found the column named within the part)."""
    low, high = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min),
                                                 int(np.iinfo(dtype).max))
    where = first_index((Y < low) | (Y > high))
    if where is not None:
        entry = (where[0], where[1] + first)
        raise OverflowError(
            f"{what} in {dtype}: entry {entry} (row, column) of the result is {int(Y[where])}, "
            f"outside [{low}, {high}] (numpy's own arithmetic would change it); pass a wider or "
            "floating dtype")
    return Y.astype(dtype)


class _Adjoint(_GeometryOperator):
    """The adjoint ``A^H`` of a geometry operator, itself an operator (``.H.H`` is ``A``)."""

    def __init__(self, parent: _GeometryOperator):
        self.parent = parent
        self.input_shape, self.output_shape = parent.output_shape, parent.input_shape
        self.layout, self._magnitude = parent.layout, parent._magnitude
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

    def _explicit(self, format, adjoint, blocksize=None, window=None):
        return self.parent._explicit(format, adjoint=not adjoint, blocksize=blocksize,
                                     window=window)

    def __repr__(self) -> str:
        return f"<adjoint of {self.parent!r}>"


class _Transpose(_GeometryOperator):
    """The transpose ``A^T = conj(A^H)`` of a geometry operator (``.T.T`` is ``A``); for a real
    operator it is the adjoint."""

    def __init__(self, parent: _GeometryOperator):
        self.transposed_of = parent
        self.input_shape, self.output_shape = parent.output_shape, parent.input_shape
        self.layout, self._magnitude = parent.layout, parent._magnitude
        self._complex = parent.dtype.kind == "c"
        if not self._complex:
            self.parent = parent  # the adjoint: plots and layer_of read it as the transpose
        super().__init__(dtype=parent.dtype, shape=parent.shape[::-1])

    def _conj(self, product, X):
        return product(X.conj()).conj() if self._complex else product(X)

    def _apply(self, X):
        return self._conj(self.transposed_of._apply_adjoint, X)

    def _apply_adjoint(self, X):
        return self._conj(self.transposed_of._apply, X)

    def _apply_bytes(self, b, itemsize):
        return self.transposed_of._apply_adjoint_bytes(b, itemsize) + 2 * self._complex * (
            self.shape[1] * b * itemsize)

    def _apply_adjoint_bytes(self, b, itemsize):
        return self.transposed_of._apply_bytes(b, itemsize) + 2 * self._complex * (
            self.shape[0] * b * itemsize)

    def _transpose(self):
        return self.transposed_of

    def _explicit(self, format, adjoint, blocksize=None, window=None):
        # A^T is conj(A^H); its adjoint (A^T)^H is conj(A)
        matrix = self.transposed_of._explicit(format, adjoint=not adjoint, blocksize=blocksize,
                                              window=window)
        return matrix.conj() if self._complex else matrix

    def __repr__(self) -> str:
        return f"<transpose of {self.transposed_of!r}>"
