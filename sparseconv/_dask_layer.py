"""A layer applied chunk by chunk to Dask arrays: the base of :mod:`sparseconv.dask`'s two
operators, and the checks of what they take (chunks, arrays, weights).

:class:`_ChunkedLayer` plans the stride-aligned chunks (:mod:`sparseconv._dask_graph`) and
runs each product lazily on a Dask array, or computes it on a numpy array (scipy's solvers);
:class:`_ChunkedAdjoint` is its adjoint, as lazy.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy.sparse.linalg import LinearOperator

from sparseconv._dask_graph import (
    Chunks,
    _BlockLayer,
    _Plan,
    input_chunks,
    output_chunks,
    stride_aligned,
)
from sparseconv._dask_lazy import _LazyAlgebra, _LazyComposite
from sparseconv._geometry import ConvGeometry
from sparseconv._memory import MatrixTooLargeError, get_memory_limit
from sparseconv._read_only import ReadOnlyState
from sparseconv._validation import first_index, is_int, is_sequence

__all__ = ["_ChunkedLayer", "_as_batch", "_finite", "_owned", "_spatial_chunks"]


def _spatial_chunks(chunks, shape: tuple[int, ...], name: str = "chunks", channels: int = 1,
                    itemsize: int = 8) -> tuple[Chunks, ...]:
    """``chunks`` normalized by Dask: an int or ``"auto"``, or one int, ``-1`` or ``None``
    (the whole axis), ``"auto"`` or tuple of sizes per spatial axis, as
    ``dask.array.from_array`` takes them (a new user's trial: ``-1`` and ``"auto"`` were
    refused). ``"auto"`` sizes a chunk of all ``channels`` to Dask's ``array.chunk-size``."""
    if isinstance(chunks, bool) or chunks is None:
        raise TypeError(f"{name} must be an int, 'auto' or a tuple of chunk sizes per spatial "
                        f"axis, got {chunks!r}")
    if isinstance(chunks, np.ndarray) and chunks.ndim == 1:  # as int tuples elsewhere
        chunks = tuple(chunks.tolist())
    if isinstance(chunks, Sequence) and not isinstance(chunks, str) and len(chunks) != len(
            shape):
        raise ValueError(f"{name} must give the chunks of each of the {len(shape)} spatial axes "
                         f"{shape}, got {chunks!r}")
    for size in _leaves(chunks) if not isinstance(chunks, str) else [chunks]:
        if size is None or (isinstance(size, str) and size == "auto") or (
                is_int(size) and (size >= 1 or size == -1)):
            continue  # (before Dask, whose errors name neither)
        if not is_int(size):
            raise TypeError(f"{name} must be integer chunk sizes (or -1, None or 'auto'), got "
                            f"{chunks!r}")
        raise ValueError(f"{name} must be positive sizes (or -1 for a whole axis), got "
                         f"{chunks!r}")
    limit = dask.utils.parse_bytes(dask.config.get("array.chunk-size"))
    try:
        normal = da.core.normalize_chunks(chunks, shape, dtype=np.float64,
                                          limit=max(8, limit * 8 // (itemsize * channels)))
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ValueError(f"{name}={chunks!r} are not chunks of the spatial shape {shape}: "
                         f"{exc}") from exc
    if any(c < 1 for axis in normal for c in axis):
        raise ValueError(f"{name} must be positive sizes, got {chunks!r}")
    return normal


def _leaves(chunks) -> list:
    """The sizes in ``chunks``: an int, or nested sequences of them."""
    if is_sequence(chunks):
        return [size for part in chunks for size in _leaves(part)]
    return [chunks]


def _numeric(x, name: str) -> None:
    if np.dtype(x.dtype).kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array, got dtype {x.dtype}")


def _as_batch(x, shape: tuple[int, ...], name: str):
    """``x`` (a Dask array, ``shape`` or ``(N, *shape)`` or flat) as ``(N, *shape)``, and the
    function that gives a result the caller's form back."""
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask array (dask.array.from_array(x, chunks=...) "
                        f"makes one), got {type(x).__name__}")
    _numeric(x, name)
    if any(math.isnan(size) for axis in x.chunks for size in axis):
        # (a new user's trial: a filtered batch, x[mask], failed in a task with "'float'
        # object cannot be interpreted as an integer", after blocks were computed)
        raise ValueError(f"{name} has chunks of unknown size (shape {x.shape}, as after "
                         f"boolean indexing): call {name}.compute_chunk_sizes() first")
    n = math.prod(shape)
    if x.shape == (n,) and len(shape) > 1:
        return x.reshape(shape)[None], lambda y: y[0].reshape(-1)
    if x.shape == shape:
        return x[None], lambda y: y[0]
    if x.ndim == len(shape) + 1 and x.shape[1:] == shape:
        return x, lambda y: y
    raise ValueError(f"{name} must have shape {shape}, (N, *{shape}) or ({n},), got shape "
                     f"{x.shape}")


#: Each chunked operator's serial operator of the whole layer, with the memory limit it was
#: built under (:meth:`_ChunkedLayer._serial`).
_SERIAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _ChunkedLayer(ReadOnlyState, _LazyAlgebra, LinearOperator):
    """A layer applied chunk by chunk to Dask arrays (the two public classes build it).

    ``matvec``, ``rmatvec``, ``matmat``, ``rmatmat``, ``dot`` and ``@`` take a Dask array of
    shape ``input_shape``, ``(N, *input_shape)``, the flat ``(prod(input_shape),)`` or columns
    ``(prod(input_shape), k)`` (scipy's ``matmat`` form) and
    return a lazy Dask array of the same form, so an iterative solver written with Dask arrays
    never gathers them (scipy's ``LinearOperator`` would call ``np.asarray`` first, so these
    public methods are overridden here, unlike sparseconv's serial operators). Given a numpy
    array, they compute and return a numpy array, so ``scipy.sparse.linalg`` solvers take the
    operator too: by the serial operator of the whole layer where it and the product fit the
    memory limit (the same numbers, with no task graph: 0.15 ms a product of a 2->2 layer on
    12^3, where the chunks took 51 ms), else chunk by chunk.
    """

    def _setup(self, geometry: ConvGeometry, block: _BlockLayer, chunks: Any) -> None:
        self.geometry, self._block = geometry, block
        transposed = block.transposed
        a_in, a_out = geometry.input_shape, geometry.output_shape
        self.input_shape: tuple[int, ...] = a_out if transposed else a_in
        self.output_shape: tuple[int, ...] = a_in if transposed else a_out
        given = _spatial_chunks(chunks, self.input_shape[1:], channels=self.input_shape[0],
                                itemsize=np.dtype(block.dtype).itemsize)
        if transposed:  # the layer's input is the geometry's output
            in_chunks = tuple(input_chunks(ax, c) for ax, c in zip(geometry.axes, given))
        else:
            in_chunks = tuple(stride_aligned(ax, c) for ax, c in zip(geometry.axes, given))
        out_chunks = tuple(output_chunks(ax, c) for ax, c in zip(geometry.axes, in_chunks))
        self._plan = _Plan(geometry, in_chunks, out_chunks)
        # a block that cannot fit is refused here, as the serial operator refuses its layer
        # (a new user's trial: refused at the first product, after a construction that
        # passed); the operators stay cached for the graphs
        block.size_operators(self._plan.block_shapes())
        self.input_chunks = self._plan.out_chunks if transposed else self._plan.in_chunks
        self.output_chunks = self._plan.in_chunks if transposed else self._plan.out_chunks
        shape = geometry.shape
        LinearOperator.__init__(self, dtype=block.dtype,
                                shape=shape[::-1] if transposed else shape)

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape of an input array, ``input_shape`` (PyLops' name, as the serial
        operators' :attr:`sparseconv.ConvOperator.dims`; a new user's trial found it
        missing here)."""
        return self.input_shape

    @property
    def dimsd(self) -> tuple[int, ...]:
        """The shape of an output array, ``output_shape`` (PyLops' name for the data
        shape)."""
        return self.output_shape

    def _apply(self, x, adjoint: bool):
        shape_in, shape_out = self.input_shape, self.output_shape
        chunks_in = self.input_chunks
        if adjoint:
            shape_in, shape_out, chunks_in = shape_out, shape_in, self.output_chunks
        if not isinstance(x, da.Array):  # numpy in, numpy out: scipy's solvers
            x = np.asarray(x)
            _numeric(x, "x")
            direct = self._in_memory(x, adjoint, shape_in, shape_out)
            if direct is not None:
                return direct
            if x.ndim == 2 and x.shape[0] == math.prod(shape_in):  # columns (shape_in may be
                # (N, 1) too: then an image of one column is the same array)
                columns = da.from_array(x.T.reshape(-1, *shape_in), chunks=(1, -1, *chunks_in))
                return self._apply(columns, adjoint).compute().reshape(
                    x.shape[1], math.prod(shape_out)).T
            # flat, shape_in or (N, *shape_in): the Dask forms, computed
            return self._apply(da.from_array(x, chunks=-1), adjoint).compute()
        n = math.prod(shape_in)
        if x.ndim == 2 and x.shape[0] == n and x.shape != shape_in:  # columns (n, k), as
            # scipy's matmat and the numpy path take them (a new user's trial: refused)
            if x.shape[1] == 0:  # (no columns: dask's reshape of none divides by zero)
                return da.zeros((math.prod(shape_out), 0),
                                dtype=np.result_type(self.dtype, x.dtype))
            out = self._apply(x.T.reshape(x.shape[1], *shape_in), adjoint)
            return out.reshape(x.shape[1], -1).T
        gather = adjoint == self._block.transposed  # A, or the transposed layer's adjoint
        # the graph sized first: Dask's own slicing of x, below, costs as much per chunk
        self._plan.check_graph(len(x.chunks[0]) if x.ndim == len(shape_in) + 1 else 1,
                               adjoint=adjoint, transposed=self._block.transposed)
        batch, restore = _as_batch(x, shape_in, "x")
        batch = batch.rechunk((batch.chunks[0], -1, *chunks_in))
        dtype = np.result_type(self.dtype, batch.dtype)
        channels = shape_out[0]
        if gather:
            return restore(self._plan.gather(batch, self._block, channels, dtype))
        return restore(self._plan.scatter(batch, self._block, channels, dtype))

    def _in_memory(self, x: np.ndarray, adjoint: bool, shape_in: tuple[int, ...],
                   shape_out: tuple[int, ...]) -> np.ndarray | None:
        """A numpy array's product by the serial operator of the whole layer, where that and
        its product fit the memory limit (None where not, or ``x`` has no form of the
        operator's): the same numbers as the chunks', without a task graph per product (a
        new user's trial: 51 ms a product of a 2->2 layer on 12^3 through Dask, 0.1 ms
        serially, so 30 lsqr steps took 64 s; about 1 s a product on a LocalCluster)."""
        n, m = math.prod(shape_in), math.prod(shape_out)
        if x.ndim == 2 and x.shape[0] == n:  # columns (of an input_shape (n, 1) too, as the
            columns, restore = x, lambda y: y  # chunks read it: scipy's contract)
        elif x.shape in ((n,), shape_in):
            columns, out = x.reshape(n, 1), (m,) if x.shape == (n,) else shape_out
            restore = lambda y: y.reshape(out)  # noqa: E731
        elif x.ndim == len(shape_in) + 1 and x.shape[1:] == shape_in:
            columns = x.reshape(len(x), n).T
            restore = lambda y: y.T.reshape(len(x), *shape_out)  # noqa: E731
        else:
            return None
        serial = self._serial()
        if serial is None:
            return None
        try:
            return restore(serial.rmatmat(columns) if adjoint else serial.matmat(columns))
        except MatrixTooLargeError:  # (the product beyond the limit: by chunks)
            return None

    def _serial(self) -> LinearOperator | None:
        """The serial operator of the whole layer, built once under each memory limit; None
        where it would not fit that limit. Held beside the operator, not in it (a cache: not
        pickled nor copied with it)."""
        limit = get_memory_limit()
        held = _SERIAL.get(self)
        if held is None or held[0] != limit:
            try:
                held = (limit, self._make_serial())
            except MatrixTooLargeError:
                held = (limit, None)
            _SERIAL[self] = held
        return held[1]

    def _make_serial(self) -> LinearOperator:
        """The serial operator of the same layer (its public class's)."""
        raise NotImplementedError

    def matvec(self, x):
        """``A @ x`` for a Dask array (lazy) or a numpy array (computed).

        Parameters
        ----------
        x : dask.array.Array or ndarray
            A flat vector of length ``shape[1]``, or an array shaped ``input_shape`` (or a
            batch of them, ``(N, *input_shape)``).

        Returns
        -------
        dask.array.Array or ndarray
            ``A @ x``, shaped as ``x`` is (flat, or ``output_shape``); lazy for a Dask input.
        """
        return self._apply(x, adjoint=False)

    def rmatvec(self, x):
        """``A^H @ x`` for a Dask array (lazy) or a numpy array (computed).

        Parameters
        ----------
        x : dask.array.Array or ndarray
            A flat vector of length ``shape[0]``, or an array shaped ``output_shape`` (or a
            batch of them, ``(N, *output_shape)``).

        Returns
        -------
        dask.array.Array or ndarray
            ``A^H @ x``, shaped as ``x`` is (flat, or ``input_shape``); lazy for a Dask input.
        """
        return self._apply(x, adjoint=True)

    def matmat(self, X):
        """``A @ X``: arrays batched ``(N, *input_shape)``, or columns ``(n, k)`` (Dask or
        numpy).

        Parameters
        ----------
        X : dask.array.Array or ndarray
            A batch shaped ``(N, *input_shape)``, or ``k`` columns shaped ``(shape[1], k)``.

        Returns
        -------
        dask.array.Array or ndarray
            ``(N, *output_shape)`` or ``(shape[0], k)``; lazy for a Dask input.
        """
        return self._apply(X, adjoint=False)

    def rmatmat(self, X):
        """``A^H @ X``: arrays batched ``(N, *output_shape)``, or columns ``(m, k)`` (Dask or
        numpy).

        Parameters
        ----------
        X : dask.array.Array or ndarray
            A batch shaped ``(N, *output_shape)``, or ``k`` columns shaped ``(shape[0], k)``.

        Returns
        -------
        dask.array.Array or ndarray
            ``(N, *input_shape)`` or ``(shape[1], k)``; lazy for a Dask input.
        """
        return self._apply(X, adjoint=True)

    def _dot_array(self, x):
        """``A @ x`` of an array (operators and scalars compose, :class:`_LazyAlgebra`)."""
        if isinstance(x, da.Array) or isinstance(x, np.ndarray) and (
                x.ndim > 2 or x.shape == self.input_shape and x.shape[0] != self.shape[1]):
            # (an image, or a batch of them; an input shape (N, 1) is also one column of N
            # entries, and is read so, as scipy's operators read it: a review)
            return self._apply(x, adjoint=False)
        return LinearOperator.dot(self, x)

    # scipy's own entry points (compositions, solvers) reach the same products
    _matvec, _rmatvec, _matmat, _rmatmat = matvec, rmatvec, matmat, rmatmat

    def _adjoint(self):
        return _ChunkedAdjoint(self)

    def _transpose(self):
        """``A.T``: ``A.H`` for a real layer, ``conj(A.H conj(x))`` for a complex one; lazy."""
        if self.dtype.kind != "c":
            return self.H
        return _LazyComposite(LinearOperator._transpose(self))

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.input_shape} -> {self.output_shape} in chunks "
                f"{self.input_chunks} -> {self.output_chunks}>")


class _ChunkedAdjoint(_ChunkedLayer):
    """``A.H`` of a chunked layer, as lazy as ``A``."""

    def __init__(self, parent: _ChunkedLayer):
        self.parent, self.geometry, self._block = parent, parent.geometry, parent._block
        self.input_shape, self.output_shape = parent.output_shape, parent.input_shape
        self.input_chunks, self.output_chunks = parent.output_chunks, parent.input_chunks
        LinearOperator.__init__(self, dtype=parent.dtype, shape=parent.shape[::-1])

    def _apply(self, x, adjoint: bool):
        return self.parent._apply(x, not adjoint)

    def _adjoint(self):
        return self.parent

    def __repr__(self) -> str:
        return f"<adjoint of {self.parent!r}>"


def _owned(weight: np.ndarray) -> np.ndarray:
    owned = np.array(weight, copy=True)
    owned.flags.writeable = False
    return owned


def _finite(weight: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``weight``, refused if it has an inf or NaN entry in ``dtype`` (see
    :class:`ConvOperator`; 1e300 is inf in float32: a review)."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = weight.astype(dtype)
    where = first_index(~np.isfinite(cast))
    if where is not None:
        raise ValueError(
            f"weight{list(where)} is {weight[where]}, {cast[where]} in "
            f"{dtype}: sparseconv.dask takes finite weights only (its blocks multiply the "
            "padding's zeros by every tap, and inf * 0 is nan where the layer's matrix has no "
            "entry); sparseconv.ConvOperator computes such a layer on its explicit matrix")
    return weight
