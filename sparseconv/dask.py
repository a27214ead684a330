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

Only this module and the ``sparseconv._dask_*`` ones it imports (the graph, the chunked layer,
the lazy algebra) import dask; ``import sparseconv`` does not.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

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
    _BlockLayer,
)
from sparseconv._dask_layer import _ChunkedLayer, _finite, _owned
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
    as_bool,
    as_weight,
    is_int,
    layer_dtype,
    layer_weight,
    positive_int,
    row_range,
)

__all__ = ["ConvOperator", "ConvTransposeOperator", "conv", "conv_matrix", "conv_transpose",
           "to_zarr"]


def _frozen(options: dict[str, Any]) -> dict[str, Any]:
    """The arguments as they are now: arrays and lists read into tuples, so that the serial
    operator built later is the layer the chunks were planned for (a review: a padding array
    changed after the construction changed the numpy products alone, 13.6 apart)."""
    def frozen(value: Any) -> Any:
        if isinstance(value, np.generic) or isinstance(value, np.ndarray) and not value.ndim:
            return value.item()
        if isinstance(value, (list, tuple, np.ndarray)):  # (mixed: ((1, 2), 0))
            return tuple(frozen(v) for v in value)
        return value

    return {key: frozen(value) for key, value in options.items()}


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
    chunks : int, "auto" or tuple
        Chunks of the input along each spatial axis: one size for every axis (``64``), one
        per axis (``(64, 64, 64)``), or explicit chunk sizes (``((30, 34), 64)``), positive
        integers; as Dask takes them, ``-1`` or ``None`` for a whole axis, and ``"auto"``
        (Dask's ``array.chunk-size`` for a chunk of every channel). Boundaries are moved
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
    shape ``input_shape``, ``(N, *input_shape)``, the flat ``(prod(input_shape),)`` or columns
    ``(prod(input_shape), k)`` (scipy's ``matmat`` form) and
    return a lazy Dask array of the same form, so that an iterative solver written with Dask
    arrays never gathers them (scipy's ``LinearOperator`` would call ``np.asarray`` first, so
    these public methods are overridden, unlike sparseconv's serial operators). Given a numpy
    array they return a numpy array, so ``scipy.sparse.linalg`` solvers take the operator too.

    Each output block costs its own chunk, the halo slabs cut from its neighbours, its window
    and one block of output: O(chunk) memory per task, whatever the volume (outputs past the
    input, which a large padding makes, come in blocks of at most a chunk's outputs). A
    task's scratch is checked against the memory limit of the process that makes the
    operator, when each block's operator is made there, at construction (a block that cannot
    fit is refused then, as :class:`sparseconv.ConvOperator` refuses a layer: use smaller
    chunks), and again against the limit of the process
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
        self._options: dict[str, Any] = _frozen(dict(
            stride=stride, padding=padding, dilation=dilation, groups=groups,
            padding_mode=padding_mode, flip=flip, dtype=dtype))

    def _make_serial(self) -> sc.ConvOperator:
        return sc.ConvOperator(self.weight, self.input_shape, **self._options)

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
    chunks : int, "auto" or tuple
        Chunks of the input along each spatial axis, as :class:`ConvOperator` takes them
        (``-1``, ``None`` and ``"auto"`` as Dask reads them); the output is chunked at ``stride``
        times the input's chunk boundaries (``output_chunks``; the input is rechunked to
        ``input_chunks`` if these differ).
    stride, padding, output_padding, dilation, groups, dtype, output_size, padding_mode
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
        padding_mode: Literal["zeros"] = "zeros",
    ) -> None:
        """The layer and its plan of blocks; parameters as the class's docstring says."""
        weight = as_weight(weight)
        geometry = ConvGeometry.for_transpose(
            weight.shape, input_shape, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size, padding_mode=padding_mode)
        kwargs = dict(stride=geometry.stride, dilation=geometry.dilation, groups=geometry.groups)
        dtype = layer_dtype(weight, dtype)
        block = _BlockLayer(_owned(_finite(weight, dtype)), kwargs, True, dtype)
        self._setup(geometry, block, chunks)
        self._options: dict[str, Any] = _frozen(dict(
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
            groups=groups, dtype=dtype, output_size=output_size, padding_mode=padding_mode))

    def _make_serial(self) -> sc.ConvTransposeOperator:
        return sc.ConvTransposeOperator(self.weight, self.input_shape, **self._options)

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

    Raises
    ------
    TypeError
        ``x`` not a Dask array; an argument of the wrong type, named.
    ValueError
        ``x``'s shape not ``(C_in, *spatial)`` or ``(N, C_in, *spatial)`` for ``weight``; an
        invalid layer argument, as :func:`sparseconv.conv_matrix` refuses it.
    MatrixTooLargeError
        A chunk's product beyond the memory limit, before any work.

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
    padding_mode: Literal["zeros"] = "zeros",
) -> da.Array:
    """A transposed convolution (PyTorch's ``conv_transpose{1,2,3}d``) of a Dask array.

    Parameters
    ----------
    x : dask.array.Array, shape (C_in, *spatial) or (N, C_in, *spatial)
    weight, stride, padding, output_padding, dilation, groups, dtype, output_size, padding_mode
        As :func:`sparseconv.conv_transpose_matrix` (``output_size``, spatial, picks the
        ``output_padding`` as ``nn.ConvTranspose*d.forward(x, output_size=...)`` does); the
        result's dtype is numpy's promotion of ``dtype`` with ``x``'s, as for :func:`conv`.

    Returns
    -------
    dask.array.Array, shape (C_out, *out) or (N, C_out, *out)
        Lazy; each output chunk sums the contributions of the input blocks whose windows
        reach it.

    Raises
    ------
    TypeError, ValueError, MatrixTooLargeError
        As :func:`conv` raises them, the layer's arguments refused as
        :func:`sparseconv.conv_transpose_matrix` refuses them.

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
                                 output_size=output_size, padding_mode=padding_mode).matvec(x)


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


def to_zarr(x: da.Array, url: Any, *, component: str | None = None,
            overwrite: bool = False, compute: bool = True, **kwargs: Any) -> Any:
    """Write a (lazy) Dask array to a zarr store chunk by chunk, as it is computed.

    Zarr wants equal chunks (the last one along an axis may be shorter); a stride-aligned
    result may have unequal ones, so ``x`` is rechunked to its largest chunk per axis first
    when it must be. Nothing is gathered: every chunk is written by the worker that computed
    it.

    Parameters
    ----------
    x : dask.array.Array
    url : str, pathlib.Path or zarr store
        Where to write, as ``dask.array.to_zarr`` takes it (and names it: a new user's
        trial).
    component : str, optional
        The array's path inside the store.
    overwrite, compute, **kwargs
        As ``dask.array.to_zarr``.

    Returns
    -------
    None, or the lazy write (a Dask array) with ``compute=False``.

    Raises
    ------
    TypeError
        ``x`` not a Dask array, ``url`` not a path, URL or zarr store.

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
    # (a review: url=None wrote to a throw-away store in memory, compute='no' computed)
    if url is None or isinstance(url, (bool, int, float, complex, np.number)):
        raise TypeError(f"url must be a path, a URL or a zarr store, got {url!r}")
    overwrite = as_bool(overwrite, "overwrite")
    compute = as_bool(compute, "compute")
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
    return da.to_zarr(x, url, component=component, overwrite=overwrite, compute=compute,
                      **kwargs)


def conv_matrix(
    weight: ArrayLike, input_shape: ShapeLike, *, block_rows: int | None = None,
    stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros", flip: bool = False, dtype: DTypeLike | None = None,
) -> da.Array:
    """A layer's matrix as a Dask array whose chunks are ``scipy.sparse.csr_array`` row blocks.

    Parameters
    ----------
    weight, input_shape
        As :func:`sparseconv.conv_matrix`.
    block_rows : int, optional
        Rows per chunk; by default one output channel's rows.
    stride, padding, dilation, groups, padding_mode, flip, dtype
        As :func:`sparseconv.conv_matrix`.

    Returns
    -------
    dask.array.Array, shape (C_out * prod(out), C_in * prod(in))
        Lazy; chunk ``i`` along the rows is ``sparseconv.conv_matrix(..., rows=...)`` of its
        rows, a CSR array built by its own task (one chunk along the columns). Computing the
        whole array concatenates the blocks into one CSR array; products are blockwise
        (``A.map_blocks(lambda block: block @ x, drop_axis=1, ...)``), as Dask's own
        ``@`` does not take sparse chunks.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparseconv.conv_matrix` raises them, and for ``block_rows`` not a positive
        integer; before any chunk is built.
    MatrixTooLargeError
        A chunk (or the whole matrix's index arrays) beyond the memory limit.

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
    given = "got" if block_rows is not None else "the default, one output channel's rows:"
    if block_rows is None:  # (a new user's trial: "got 5017600", a value not passed)
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
        check_row_block(geometry, dtype, start, stop, hint=f"use a smaller block_rows ({given} "
                        f"{block_rows}), or the matrix-free sparseconv.dask.ConvOperator")
        blocks.append(da.from_delayed(build(weight, input_shape, rows=slice(start, stop),
                                            **kwargs),
                                      shape=(stop - start, n_cols), dtype=result.dtype,
                                      meta=result[:0]))
    return da.concatenate(blocks, axis=0)
