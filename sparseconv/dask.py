"""sparseconv.dask: convolution layers applied chunk by chunk to Dask arrays, and their
matrices in row blocks.

A layer ``A`` (a convolution, or the transposed convolution ``A.T``) maps ``(C, *spatial)``
arrays, optionally batched ``(N, C, *spatial)``, that are chunked along batch and space. The
output is chunked *stride-aligned*: along each axis, output ``o`` belongs to the block of the
input chunk holding position ``o*stride``, so an output chunk maps to whole strides of its
input chunk (with stride 1 and "same" padding, the output is chunked as the input). An output
block reads its own input chunk plus a halo of ``pad_lo`` positions before it and
``(kernel_size - 1) * dilation + 1 - stride - pad_lo`` after it (the reach of the kernel,
dilation included).

Each output block is computed from its *window*: the input positions it reads, gathered from
the input chunks through the geometry's exact padding map
(``AxisGeometry.source``), so the global boundary is exact in all
four padding modes (zeros, circular, reflect excluding the edge as PyTorch does, replicate);
Dask's own ``boundary="reflect"`` is numpy's ``"symmetric"`` and is not used. The window is
then convolved with the library's own :class:`sparseconv.ConvOperator` with no padding (a
"valid" convolution). The adjoint runs the same plan backwards: each output block's adjoint
window (the transposed "valid" convolution), then every input chunk sums the parts of the
windows that map onto it, wrapped, reflected or replicated positions included.

Tasks move only what they need: a halo is cut out of its neighbouring chunk by a slicing
task before it travels, so a task receives its own chunk and thin slabs. No task holds more
than its block, its window and those slabs; nothing is ever gathered on one machine.

The graph is written by hand (``dask.highlevelgraph.HighLevelGraph``), one task per
output block and batch chunk, plus the slicing tasks; Dask's scheduler runs it locally or on
a ``dask.distributed`` cluster. The weight is small and goes into the graph whole: one given
as a Dask array is computed once, on the client, when the call is made. Each block's operator
is sized against the memory limit then, for one column, so a chunking too coarse is refused
before anything runs.

This is the only sparseconv module that imports dask; ``import sparseconv`` does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - CI installs the extra
    raise ImportError(
        'sparseconv.dask needs Dask: pip install "dask[array,distributed]" zarr (or, in a '
        'checkout of sparseconv, pip install -e ".[dask]")'
    ) from exc

import sparseconv as sc
from sparseconv._blocks import check_row_block
from sparseconv._dask_graph import (
    Chunks,
    _BlockLayer,
    _Plan,
    input_chunks,
    output_chunks,
    stride_aligned,
)
from sparseconv._geometry import ConvGeometry
from sparseconv._matrices import check_addressable
from sparseconv._typing import (
    ArrayLike,
    DTypeLike,
    ExplicitPaddingLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ShapeLike,
)
from sparseconv._validation import (
    as_weight,
    first_index,
    is_int,
    is_sequence,
    layer_dtype,
    layer_weight,
    positive_int,
    row_range,
)

__all__ = ["ConvOperator", "ConvTransposeOperator", "conv", "conv_matrix", "conv_transpose",
           "to_zarr"]


# ---------------------------------------------------------------------------------------------
# The public API.
# ---------------------------------------------------------------------------------------------
def _spatial_chunks(chunks, shape: tuple[int, ...], name: str = "chunks") -> tuple[Chunks, ...]:
    """``chunks`` (an int, or one int or tuple of sizes per spatial axis) normalized by Dask."""
    if isinstance(chunks, (bool, str)) or chunks is None:
        raise TypeError(f"{name} must be an int or a tuple of chunk sizes per spatial axis, got "
                        f"{chunks!r}")
    if isinstance(chunks, np.ndarray) and chunks.ndim == 1:  # as int tuples elsewhere
        chunks = tuple(chunks.tolist())
    if isinstance(chunks, Sequence) and len(chunks) != len(shape):
        raise ValueError(f"{name} must give the chunks of each of the {len(shape)} spatial axes "
                         f"{shape}, got {chunks!r}")
    for size in _leaves(chunks):  # before Dask, whose errors name neither
        if not is_int(size):
            raise TypeError(f"{name} must be integer chunk sizes, got {chunks!r}")
        if size < 1:
            raise ValueError(f"{name} must be positive sizes, got {chunks!r}")
    try:
        normal = da.core.normalize_chunks(chunks, shape)
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


class _LazyAlgebra:
    """scipy's operator algebra (``A.T``, ``2 * A``, ``A + B``, ``A.H @ A``, ``-A``, ``A ** k``)
    with results that stay lazy on Dask arrays: scipy's composites would call ``np.asarray``
    on the input first, computing the whole array on the client."""

    def dot(self, x):
        if isinstance(x, LinearOperator) or np.isscalar(x):
            return _lazy(LinearOperator.dot(self, x))
        return self._dot_array(x)

    __matmul__ = dot

    def __mul__(self, x):
        return self.dot(x)

    def __rmul__(self, x):
        return _lazy(LinearOperator.__rmul__(self, x))

    def __rmatmul__(self, x):
        if isinstance(x, da.Array):  # x @ A = (A^T x^T)^T, lazily (a new user's trial: scipy's
            # np.asarray computed the whole array on the client)
            if x.ndim != 1:
                raise ValueError(f"x @ A takes a 1-D Dask array x (A.T @ x, lazily), got shape "
                                 f"{x.shape}; several rows at once: A.T.matvec of their batch")
            return self.T.matvec(x)
        return _lazy(LinearOperator.__rmatmul__(self, x))

    def __add__(self, x):
        return _lazy(LinearOperator.__add__(self, x))

    def __neg__(self):
        return _lazy(LinearOperator.__neg__(self))

    def __truediv__(self, x):  # (a new user's trial: A / 2 computed its input on the client)
        return _lazy(LinearOperator.__truediv__(self, x))

    def __sub__(self, x):
        return self.__add__(-x)

    def __pow__(self, p):
        LinearOperator.__pow__(self, p)  # scipy's checks (square, p a non-negative integer)
        return _LazyComposite(_Power(self, int(p)))


class _Power(LinearOperator):
    """``A ** p`` by ``p`` products (scipy's copies its input with ``np.array`` first)."""

    def __init__(self, A: LinearOperator, p: int) -> None:
        self.args = (A, p)
        LinearOperator.__init__(self, dtype=A.dtype, shape=A.shape)

    def _power(self, product, x):
        for _ in range(self.args[1]):
            x = product(x)
        return x

    def _matvec(self, x):
        return self._power(self.args[0].matvec, x)

    def _rmatvec(self, x):
        return self._power(self.args[0].rmatvec, x)

    def _adjoint(self):
        return _Power(self.args[0].H, self.args[1])


def _lazy(result):
    """A scipy composite wrapped so that its products take Dask arrays lazily."""
    return _LazyComposite(result) if isinstance(result, LinearOperator) else result


class _LazyComposite(_LazyAlgebra, LinearOperator):
    """A composite of chunked layers (and scalars, and other operators): on a Dask array each
    product calls the composite's own ``_matvec`` / ``_rmatvec``, which call the layers'
    lazy products; numpy arrays go through scipy as before. The layers check the shapes: a
    Dask array in any form they take (flat, one image, a batch) passes through."""

    def __init__(self, op: LinearOperator) -> None:
        self._op = op
        LinearOperator.__init__(self, dtype=op.dtype, shape=op.shape)

    def matvec(self, x):
        return self._lazily(self._op._matvec, x) if isinstance(x, da.Array) else \
            self._op.matvec(x)

    def rmatvec(self, x):
        return self._lazily(self._op._rmatvec, x, 0) if isinstance(x, da.Array) else \
            self._op.rmatvec(x)

    def matmat(self, X):
        return self._lazily(self._op._matvec, X) if isinstance(X, da.Array) else \
            self._op.matmat(X)

    def rmatmat(self, X):
        return self._lazily(self._op._rmatvec, X, 0) if isinstance(X, da.Array) else \
            self._op.rmatmat(X)

    def _lazily(self, product, x: da.Array, side: int = 1):
        """``product(x)``; scipy's own operators in the composite take flat vectors only (a
        new user's trial: ``A.H @ A + 0.5 * IdentityOperator(...)`` on an image met scipy's
        bare "dimension mismatch")."""
        try:
            return product(x)
        except ValueError as error:
            if x.ndim < 2 or "dimension mismatch" not in str(error):
                raise
            raise ValueError(f"{self!r} holds operators other than sparseconv.dask's: scipy's "
                             "take flat vectors only (and compute a Dask array on the client): "
                             f"pass x flat, x.reshape(-1) (shape ({self.shape[side]},)), got "
                             f"shape {x.shape}") from error

    def _dot_array(self, x):
        return self.matvec(x) if isinstance(x, da.Array) else self._op.dot(x)

    _matvec, _rmatvec, _matmat, _rmatmat = matvec, rmatvec, matmat, rmatmat

    def _adjoint(self):
        return _LazyComposite(self._op.H)

    def _transpose(self):
        return _LazyComposite(self._op.T)

    def __repr__(self) -> str:
        return f"<lazy {self._op!r}>"


class _ChunkedLayer(_LazyAlgebra, LinearOperator):
    """A layer applied chunk by chunk to Dask arrays (the two public classes build it).

    ``matvec``, ``rmatvec``, ``matmat``, ``rmatmat``, ``dot`` and ``@`` take a Dask array of
    shape ``input_shape``, ``(N, *input_shape)`` or the flat ``(prod(input_shape),)`` and
    return a lazy Dask array of the same form, so an iterative solver written with Dask arrays
    never gathers them (scipy's ``LinearOperator`` would call ``np.asarray`` first, so these
    public methods are overridden here, unlike sparseconv's serial operators). Given a numpy
    array, they compute and return a numpy array, so ``scipy.sparse.linalg`` solvers take the
    operator too.
    """

    def _setup(self, geometry: ConvGeometry, block: _BlockLayer, chunks: Any) -> None:
        self.geometry, self._block = geometry, block
        transposed = block.transposed
        a_in, a_out = geometry.input_shape, geometry.output_shape
        self.input_shape: tuple[int, ...] = a_out if transposed else a_in
        self.output_shape: tuple[int, ...] = a_in if transposed else a_out
        given = _spatial_chunks(chunks, self.input_shape[1:])
        if transposed:  # the layer's input is the geometry's output
            in_chunks = tuple(input_chunks(ax, c) for ax, c in zip(geometry.axes, given))
        else:
            in_chunks = tuple(stride_aligned(ax, c) for ax, c in zip(geometry.axes, given))
        out_chunks = tuple(output_chunks(ax, c) for ax, c in zip(geometry.axes, in_chunks))
        self._plan = _Plan(geometry, in_chunks, out_chunks)
        self.input_chunks = self._plan.out_chunks if transposed else self._plan.in_chunks
        self.output_chunks = self._plan.in_chunks if transposed else self._plan.out_chunks
        shape = geometry.shape
        LinearOperator.__init__(self, dtype=block.dtype,
                                shape=shape[::-1] if transposed else shape)

    def _apply(self, x, adjoint: bool):
        shape_in, shape_out = self.input_shape, self.output_shape
        chunks_in = self.input_chunks
        if adjoint:
            shape_in, shape_out, chunks_in = shape_out, shape_in, self.output_chunks
        if not isinstance(x, da.Array):  # numpy in, numpy out: scipy's solvers
            x = np.asarray(x)
            _numeric(x, "x")
            if x.ndim == 2 and x.shape[0] == math.prod(shape_in):  # columns (shape_in may be
                # (N, 1) too: then an image of one column is the same array)
                columns = da.from_array(x.T.reshape(-1, *shape_in), chunks=(1, -1, *chunks_in))
                return self._apply(columns, adjoint).compute().reshape(
                    x.shape[1], math.prod(shape_out)).T
            # flat, shape_in or (N, *shape_in): the Dask forms, computed
            return self._apply(da.from_array(x, chunks=-1), adjoint).compute()
        batch, restore = _as_batch(x, shape_in, "x")
        batch = batch.rechunk((batch.chunks[0], -1, *chunks_in))
        dtype = np.result_type(self.dtype, batch.dtype)
        gather = adjoint == self._block.transposed  # A, or the transposed layer's adjoint
        channels = shape_out[0]
        if gather:
            return restore(self._plan.gather(batch, self._block, channels, dtype))
        return restore(self._plan.scatter(batch, self._block, channels, dtype))

    def matvec(self, x):
        """``A @ x`` for a Dask array (lazy) or a numpy array (computed)."""
        return self._apply(x, adjoint=False)

    def rmatvec(self, x):
        """``A^H @ x`` for a Dask array (lazy) or a numpy array (computed)."""
        return self._apply(x, adjoint=True)

    def matmat(self, X):
        """``A @ X``: Dask arrays batched ``(N, *input_shape)``, or numpy columns."""
        return self._apply(X, adjoint=False)

    def rmatmat(self, X):
        """``A^H @ X``: Dask arrays batched ``(N, *output_shape)``, or numpy columns."""
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


class ConvOperator(_ChunkedLayer):
    """A convolution (PyTorch's ``conv{1,2,3}d``) applied chunk by chunk to Dask arrays.

    The chunked twin of :class:`sparseconv.ConvOperator`: the same arguments plus ``chunks``
    (but ``layout``: Dask arrays are channels first here), and the same numbers (to
    rounding), but products take and return lazy Dask arrays, and the layer is sized by its
    chunks, never by the whole volume.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    input_shape : tuple of int
        ``(C_in, *spatial)``, any size: nothing of the volume's size is allocated; the plan
        of the blocks' windows is made per axis, in a Python pass over its positions and a
        numpy pass per chunk over its windows (0.8 s for an axis of a million positions in
        10 or 100 chunks; chunks times positions beyond that).
    chunks : int or tuple
        Chunks of the input along each spatial axis: one size for every axis (``64``), one
        per axis (``(64, 64, 64)``), or explicit chunk sizes (``((30, 34), 64)``), positive
        integers (Dask's ``-1``, ``None`` and ``"auto"`` are not taken). Boundaries are moved
        to the nearest multiple of the stride (``input_chunks``), and output chunk ``i`` is
        the outputs ``o`` whose ``o * stride`` lies in input chunk ``i`` (``output_chunks``);
        batch chunks pass through; channels are one chunk.
    stride, padding, dilation, groups, padding_mode, flip, dtype
        As :class:`sparseconv.ConvOperator`: ``dtype`` is the operator's, and a product's
        result has numpy's promotion of it with the input's (``np.result_type``), so a
        float32 operator applied to float64 data gives float64.

    Attributes
    ----------
    geometry : sparseconv.ConvGeometry
    weight : ndarray
    input_shape, output_shape : tuple of int
    input_chunks, output_chunks : tuple of tuple of int
        Per spatial axis; ``matvec`` returns ``output_chunks``, ``rmatvec`` ``input_chunks``
        (arrays chunked otherwise are rechunked first).

    Raises
    ------
    ValueError, TypeError
        As :class:`sparseconv.ConvOperator`; and a weight with inf or NaN entries (the
        blocks multiply the padding's zeros by every tap, and inf * 0 is nan where the
        layer's matrix has no entry; :class:`sparseconv.ConvOperator` computes such a layer
        on its explicit matrix).

    Notes
    -----
    ``matvec``, ``rmatvec``, ``matmat``, ``rmatmat``, ``dot`` and ``@`` take a Dask array of
    shape ``input_shape``, ``(N, *input_shape)`` or the flat ``(prod(input_shape),)`` and
    return a lazy Dask array of the same form, so that an iterative solver written with Dask
    arrays never gathers them (scipy's ``LinearOperator`` would call ``np.asarray`` first, so
    these public methods are overridden, unlike sparseconv's serial operators). Given a numpy
    array they return a numpy array, so ``scipy.sparse.linalg`` solvers take the operator too.

    Each output block costs its own chunk, the halo slabs cut from its neighbours, its window
    and one block of output: O(chunk) memory per task, whatever the volume (outputs past the
    input, which a large padding makes, come in blocks of at most a chunk's outputs). A
    task's scratch is checked against the memory limit of the process that builds the graph,
    when each block's operator is made there (a block that cannot fit is refused before
    anything is computed: use smaller chunks), and again against the limit of the process
    that runs it (:func:`sparseconv.set_memory_limit` in that process, or
    ``SPARSECONV_MEMORY_LIMIT`` in the workers' environment), when it runs. Each process
    caches the block operators of the last 64 (layer, block shape) pairs it met, with their
    weights, for the life of the process.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import sparseconv
    >>> import sparseconv.dask
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((4, 2, 3, 3))
    >>> A = sparseconv.dask.ConvOperator(w, (2, 40, 40), chunks=16, padding=1,
    ...                                  padding_mode="reflect", stride=2)
    >>> A.input_chunks, A.output_chunks
    (((16, 16, 8), (16, 16, 8)), ((8, 8, 4), (8, 8, 4)))
    >>> x = da.from_array(rng.standard_normal((2, 40, 40)), chunks=(2, 16, 16))
    >>> y = A.matvec(x)                                   # lazy, chunked (4, 20, 20)
    >>> serial = sparseconv.ConvOperator(w, (2, 40, 40), padding=1, padding_mode="reflect",
    ...                                  stride=2)
    >>> bool(np.allclose(y.compute().ravel(), serial @ x.compute().ravel()))
    True
    >>> x_back = A.rmatvec(y)                             # the adjoint, chunk by chunk
    >>> bool(np.allclose(x_back.compute().ravel(), serial.H @ y.compute().ravel()))
    True
    """

    def __init__(
        self, weight: ArrayLike, input_shape: ShapeLike, *, chunks: Any,
        stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1,
        groups: int = 1, padding_mode: PaddingMode = "zeros", flip: bool = False,
        dtype: DTypeLike | None = None,
    ) -> None:
        """The layer and its plan of blocks; parameters as the class's docstring says."""
        weight = as_weight(weight)
        geometry = ConvGeometry.from_weight(
            weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
            groups=groups, padding_mode=padding_mode, flip=flip)
        kwargs = dict(stride=geometry.stride, dilation=geometry.dilation,
                      groups=geometry.groups, flip=geometry.flip)
        dtype = layer_dtype(weight, dtype)
        block = _BlockLayer(_owned(_finite(weight, dtype)), kwargs, False, dtype)
        self._setup(geometry, block, chunks)

    @property
    def weight(self) -> np.ndarray:
        """The layer's weight: a private, read-only copy."""
        return self._block.weight


class ConvTransposeOperator(_ChunkedLayer):
    """A transposed convolution (PyTorch's ``conv_transpose{1,2,3}d``) applied chunk by
    chunk to Dask arrays: the chunked twin of :class:`sparseconv.ConvTransposeOperator`.

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out/groups, *kernel_size)
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    chunks : int or tuple
        Chunks of the input along each spatial axis; the output is chunked at ``stride``
        times the input's chunk boundaries (``output_chunks``; the input is rechunked to
        ``input_chunks`` if these differ).
    stride, padding, output_padding, dilation, groups, dtype, output_size
        As :class:`sparseconv.ConvTransposeOperator` (``output_size``, spatial, picks the
        ``output_padding`` as ``ConvTranspose*d.forward(x, output_size=...)`` does);
        ``dtype`` is the operator's, a product's result numpy's promotion of it with the
        input's, as for :class:`ConvOperator`.

    Attributes
    ----------
    geometry : sparseconv.ConvGeometry
        The convolution it transposes (from ``output_shape`` to ``input_shape``).
    weight, input_shape, output_shape, input_chunks, output_chunks
        As :class:`sparseconv.dask.ConvOperator`.

    Raises
    ------
    ValueError, TypeError
        As :class:`sparseconv.dask.ConvOperator`.

    Notes
    -----
    ``matvec`` computes every input block's contribution (the transposed "valid"
    convolution of the block), and each output chunk sums the parts of those that land in
    it; ``rmatvec`` is a chunked strided convolution with the conjugate weight. Products take
    and return Dask arrays as :class:`sparseconv.dask.ConvOperator`'s do.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import sparseconv
    >>> import sparseconv.dask
    >>> w = np.random.default_rng(0).standard_normal((4, 2, 4, 4))
    >>> T = sparseconv.dask.ConvTransposeOperator(w, (4, 16, 16), chunks=8, stride=2,
    ...                                           padding=1)
    >>> T.output_shape, T.output_chunks
    ((2, 32, 32), ((16, 16), (16, 16)))
    >>> x = da.ones((4, 16, 16), chunks=(4, 8, 8))
    >>> serial = sparseconv.ConvTransposeOperator(w, (4, 16, 16), stride=2, padding=1)
    >>> bool(np.allclose(T.matvec(x).compute().ravel(), serial @ np.ones(4 * 16 * 16)))
    True
    """

    def __init__(
        self, weight: ArrayLike, input_shape: ShapeLike, *, chunks: Any,
        stride: IntOrTuple = 1, padding: ExplicitPaddingLike = 0,
        output_padding: IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1,
        dtype: DTypeLike | None = None, output_size: IntOrTuple | None = None,
    ) -> None:
        """The layer and its plan of blocks; parameters as the class's docstring says."""
        weight = as_weight(weight)
        geometry = ConvGeometry.for_transpose(
            weight.shape, input_shape, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size)
        kwargs = dict(stride=geometry.stride, dilation=geometry.dilation, groups=geometry.groups)
        dtype = layer_dtype(weight, dtype)
        block = _BlockLayer(_owned(_finite(weight, dtype)), kwargs, True, dtype)
        self._setup(geometry, block, chunks)

    @property
    def weight(self) -> np.ndarray:
        """The layer's weight: a private, read-only copy."""
        return self._block.weight


def conv(
    x: da.Array, weight: ArrayLike, *, stride: IntOrTuple = 1, padding: PaddingLike = 0,
    dilation: IntOrTuple = 1, groups: int = 1, padding_mode: PaddingMode = "zeros",
    flip: bool = False, dtype: DTypeLike | None = None,
) -> da.Array:
    """A convolution (PyTorch's ``conv{1,2,3}d``) of a chunked Dask array, chunk by chunk.

    Parameters
    ----------
    x : dask.array.Array, shape (C_in, *spatial) or (N, C_in, *spatial)
        Chunked along batch and space as you like; channels are gathered into one chunk.
    weight, stride, padding, dilation, groups, padding_mode, flip, dtype
        As :func:`sparseconv.conv_matrix`; the result's dtype is numpy's promotion of
        ``dtype`` with ``x``'s (``np.result_type``): float32 from float64 data needs
        ``x.astype(np.float32)``.

    Returns
    -------
    dask.array.Array, shape (C_out, *out) or (N, C_out, *out)
        Lazy; chunked stride-aligned with ``x`` (along each axis, output ``o`` with the input
        chunk holding position ``o * stride``; the outputs past the input, if padding makes
        any, in blocks of at most as many outputs as the largest chunk has strides). Equal to
        PyTorch's ``conv{d}d`` of the whole array.

    See Also
    --------
    sparseconv.dask.ConvOperator : the same, forward and adjoint, as a LinearOperator.
    sparseconv.dask.to_zarr : write the result to disk chunk by chunk.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import sparseconv
    >>> from sparseconv.dask import conv
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((3, 2, 3, 3, 3))
    >>> x = da.from_array(rng.standard_normal((2, 24, 24, 24)), chunks=(2, 8, 8, 12))
    >>> y = conv(x, w, padding=1, padding_mode="circular")
    >>> y.shape, y.chunks[1:]
    ((3, 24, 24, 24), ((8, 8, 8), (8, 8, 8), (12, 12)))
    >>> A = sparseconv.ConvOperator(w, (2, 24, 24, 24), padding=1, padding_mode="circular")
    >>> bool(np.allclose(y.compute().ravel(), A @ x.compute().ravel()))
    True
    """
    weight = as_weight(weight)  # (computed once: a Dask weight was computed 2-3 times)
    shape = _channels_and_space(x, weight, "x", 1, groups)
    return ConvOperator(weight, shape, chunks=x.chunks[x.ndim - len(shape) + 1:],
                        stride=stride, padding=padding, dilation=dilation, groups=groups,
                        padding_mode=padding_mode, flip=flip, dtype=dtype).matvec(x)


def conv_transpose(
    x: da.Array, weight: ArrayLike, *, stride: IntOrTuple = 1, padding: ExplicitPaddingLike = 0,
    output_padding: IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1,
    dtype: DTypeLike | None = None, output_size: IntOrTuple | None = None,
) -> da.Array:
    """A transposed convolution (PyTorch's ``conv_transpose{1,2,3}d``) of a Dask array.

    Parameters
    ----------
    x : dask.array.Array, shape (C_in, *spatial) or (N, C_in, *spatial)
    weight, stride, padding, output_padding, dilation, groups, dtype, output_size
        As :func:`sparseconv.conv_transpose_matrix` (``output_size``, spatial, picks the
        ``output_padding`` as ``nn.ConvTranspose*d.forward(x, output_size=...)`` does); the
        result's dtype is numpy's promotion of ``dtype`` with ``x``'s, as for :func:`conv`.

    Returns
    -------
    dask.array.Array, shape (C_out, *out) or (N, C_out, *out)
        Lazy; each output chunk sums the contributions of the input blocks whose windows
        reach it.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import sparseconv
    >>> from sparseconv.dask import conv_transpose
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((4, 2, 4, 4))
    >>> x = da.from_array(rng.standard_normal((4, 16, 16)), chunks=(4, 8, 8))
    >>> y = conv_transpose(x, w, stride=2, padding=1)
    >>> y.shape
    (2, 32, 32)
    >>> T = sparseconv.ConvTransposeOperator(w, (4, 16, 16), stride=2, padding=1)
    >>> bool(np.allclose(y.compute().ravel(), T @ x.compute().ravel()))
    True
    """
    weight = as_weight(weight)  # (computed once: a Dask weight was computed 2-3 times)
    shape = _channels_and_space(x, weight, "x", 0, 1)
    return ConvTransposeOperator(weight, shape, chunks=x.chunks[x.ndim - len(shape) + 1:],
                                 stride=stride, padding=padding, output_padding=output_padding,
                                 dilation=dilation, groups=groups, dtype=dtype,
                                 output_size=output_size).matvec(x)


def _channels_and_space(x, weight, name: str, axis: int, groups) -> tuple[int, ...]:
    """``(C, *spatial)`` of ``x`` for a weight of ``np.ndim(weight) - 2`` spatial axes, whose
    ``C`` must be ``weight.shape[axis] * groups`` (said of ``x`` here: the layer would name
    ``input_shape``, an argument the caller never gave)."""
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask array (dask.array.from_array(x, chunks=...) "
                        f"makes one), got {type(x).__name__}")
    weight = layer_weight(weight)  # (a new user's trial: a bad weight was blamed on x)
    ndim = weight.ndim - 2
    if x.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(f"{name} must have shape (C, *spatial) or (N, C, *spatial) with "
                         f"{ndim} spatial axes for weight of shape {weight.shape}, "
                         f"got shape {x.shape}")
    shape = tuple(x.shape[-ndim - 1:])
    if is_int(groups) and groups > 0 and shape[0] != np.shape(weight)[axis] * groups:
        form = "(N, C, *spatial)" if x.ndim == ndim + 2 else "(C, *spatial)"
        takes = (f"weight.shape[0] = {np.shape(weight)[0]}" if axis == 0 else
                 f"weight.shape[1] * groups = {np.shape(weight)[1]} * {groups} = "
                 f"{np.shape(weight)[1] * groups}")
        raise ValueError(f"{name} of shape {x.shape}, read as {form} for weight of shape "
                         f"{np.shape(weight)}, has C={shape[0]} channels; the layer takes "
                         f"{takes}")
    return shape


def to_zarr(x: da.Array, store: Any, *, component: str | None = None,
            overwrite: bool = False, compute: bool = True, **kwargs: Any) -> Any:
    """Write a (lazy) Dask array to a zarr store chunk by chunk, as it is computed.

    Zarr wants equal chunks (the last one along an axis may be shorter); a stride-aligned
    result may have unequal ones, so ``x`` is rechunked to its largest chunk per axis first
    when it must be. Nothing is gathered: every chunk is written by the worker that computed
    it.

    Parameters
    ----------
    x : dask.array.Array
    store : str, pathlib.Path or zarr store
        Where to write, as ``dask.array.to_zarr`` takes it.
    component : str, optional
        The array's path inside the store.
    overwrite, compute, **kwargs
        As ``dask.array.to_zarr``.

    Returns
    -------
    None, or the lazy write (a Dask array) with ``compute=False``.

    Examples
    --------
    >>> import tempfile, zarr
    >>> import numpy as np
    >>> import dask.array as da
    >>> from sparseconv.dask import conv, to_zarr
    >>> x = da.ones((1, 30, 30), chunks=(1, 12, 12))
    >>> y = conv(x, np.ones((1, 1, 3, 3)), padding=1, padding_mode="replicate", stride=2)
    >>> y.chunks
    ((1,), (6, 6, 3), (6, 6, 3))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     to_zarr(y, tmp + "/y.zarr")
    ...     float(zarr.open(tmp + "/y.zarr", mode="r")[0].sum())
    2025.0
    """
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array, got {type(x).__name__}")
    if sp.issparse(getattr(x, "_meta", None)):  # (a new user's trial: numpy's "setting an
        # array element with a sequence", from inside zarr)
        raise TypeError(
            "x's chunks are scipy.sparse matrices (conv_matrix's row blocks), which zarr stores "
            "only as dense arrays: densify them first, x.map_blocks(lambda block: "
            "block.toarray(), dtype=x.dtype, meta=numpy.empty((0, 0), x.dtype)) (the matrix "
            "at its dense size), or save the layer itself, sparseconv.save_layer")
    regular = tuple(max(c) if c else 0 for c in x.chunks)
    if any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]) for c in x.chunks):
        x = x.rechunk(regular)
    return da.to_zarr(x, store, component=component, overwrite=overwrite, compute=compute,
                      **kwargs)


def conv_matrix(
    weight: ArrayLike, input_shape: ShapeLike, *, block_rows: int | None = None,
    stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros", flip: bool = False, dtype: DTypeLike | None = None,
) -> da.Array:
    """A layer's matrix as a Dask array whose chunks are ``scipy.sparse.csr_array`` row blocks.

    Parameters
    ----------
    weight, input_shape, stride, padding, dilation, groups, padding_mode, flip, dtype
        As :func:`sparseconv.conv_matrix`.
    block_rows : int, optional
        Rows per chunk; by default one output channel's rows.

    Returns
    -------
    dask.array.Array, shape (C_out * prod(out), C_in * prod(in))
        Lazy; chunk ``i`` along the rows is ``sparseconv.conv_matrix(..., rows=...)`` of its
        rows, a CSR array built by its own task (one chunk along the columns). Computing the
        whole array concatenates the blocks into one CSR array; products are blockwise
        (``A.map_blocks(lambda block: block @ x, drop_axis=1, ...)``), as Dask's own
        ``@`` does not take sparse chunks.

    Examples
    --------
    >>> import numpy as np
    >>> import sparseconv
    >>> from sparseconv.dask import conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((8, 3, 3, 3))
    >>> A = conv_matrix(w, (3, 32, 32), padding=1, block_rows=4096)
    >>> A.chunks
    ((4096, 4096), (3072,))
    >>> type(A.blocks[1].compute()).__name__
    'csr_array'
    >>> x = np.ones(3072)
    >>> y = A.map_blocks(lambda block: block @ x, drop_axis=1, dtype=A.dtype,
    ...                  meta=np.empty(0)).compute()
    >>> bool(np.allclose(y, sparseconv.conv_matrix(w, (3, 32, 32), padding=1) @ x))
    True
    """
    weight = as_weight(weight)  # (computed once: a Dask weight was computed 3 times)
    kwargs: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation,
                                  groups=groups, padding_mode=padding_mode, flip=flip, dtype=dtype)
    geometry = ConvGeometry.from_weight(
        weight.shape, input_shape, stride=stride, padding=padding,
        dilation=dilation, groups=groups, padding_mode=padding_mode, flip=flip)
    n_rows, n_cols = geometry.shape
    # (a new user's trial: beyond int64, the default block_rows was blamed, as if passed)
    check_addressable((n_rows, n_cols), geometry)
    if block_rows is None:
        block_rows = math.prod(geometry.output_size)
    block_rows = positive_int(block_rows, "block_rows")
    result = sc.conv_matrix(weight, input_shape, rows=slice(0, 0), **kwargs)  # dtype, checks
    build = dask.delayed(sc.conv_matrix, pure=True)
    weight = dask.delayed(np.asarray(weight))  # once in the graph, not once per block
    blocks = []
    dtype = np.dtype(result.dtype)
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        row_range(slice(start, stop), n_rows)
        # each block is sized now, when the graph is built: a block that cannot fit is refused
        # here, not by its task after the blocks before it were computed (a memory audit)
        check_row_block(geometry, dtype, start, stop, hint=f"use a smaller block_rows (got "
                        f"{block_rows}), or the matrix-free sparseconv.dask.ConvOperator")
        blocks.append(da.from_delayed(build(weight, input_shape, rows=slice(start, stop),
                                            **kwargs),
                                      shape=(stop - start, n_cols), dtype=result.dtype,
                                      meta=result[:0]))
    return da.concatenate(blocks, axis=0)
