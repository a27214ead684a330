"""The Dask graph behind :mod:`sparseconv.dask`: per axis, which input chunks each output
block's window reads and how (:func:`output_chunks`, :class:`_AxisPlan`); the layer on one
block (:class:`_BlockLayer`, a "valid" convolution of the window, or its adjoint, cached per
worker process); and the graph itself, written by hand (:class:`_Plan`)."""

from __future__ import annotations

import itertools
import math
import operator
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

import sparseconv as sc
from sparseconv._axis_geometry import AxisGeometry
from sparseconv._geometry import ConvGeometry
from sparseconv._memory import MatrixTooLargeError, check_memory, get_memory_limit, reworded
from sparseconv._read_only import ReadOnlyState

Chunks = tuple[int, ...]
Run = tuple[int, int, int, int]  # window start, window stop, chunk-local start, step (+1/-1)


# ---------------------------------------------------------------------------------------------
# One axis: which input chunks each output block's window reads, and how.
# ---------------------------------------------------------------------------------------------
def output_chunks(axis: AxisGeometry, in_chunks: Chunks) -> Chunks:
    """Stride-aligned output chunks: output ``o`` goes with the input chunk holding position
    ``o*stride``; the outputs past the input, if padding makes any, in blocks of at most as
    many outputs as the largest input chunk has strides (all with the last chunk, a padding
    of 32 on chunks of 8 made one block 70 outputs long)."""
    bounds = np.cumsum((0, *in_chunks))[1:-1]
    cuts = -(-bounds // axis.stride)  # ceil(bound / stride)
    cuts = np.unique(np.clip(cuts, 0, axis.output_size))
    edges = [0, *(int(c) for c in cuts if 0 < c < axis.output_size), axis.output_size]
    inside = -(-axis.size // axis.stride)  # outputs o with o*stride inside the input
    longest = max(-(-c // axis.stride) for c in in_chunks)
    if axis.output_size > inside:  # the last block: its input chunk's outputs, then the rest
        start = edges[-2]
        overhang = max(inside, start)
        if overhang == start:  # (no output of the last chunk lies inside the input)
            overhang += longest
        edges = [*edges[:-1], *range(overhang, axis.output_size, longest), axis.output_size]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


def input_chunks(axis: AxisGeometry, out_chunks: Chunks) -> Chunks:
    """Input chunks starting at ``stride`` times the output blocks' starts: the inverse of
    :func:`output_chunks` (each output block then reads its own chunk plus the halo)."""
    starts = np.cumsum((0, *out_chunks))[1:-1] * axis.stride
    starts = np.unique(np.clip(starts, 0, axis.size))
    edges = [0, *(int(s) for s in starts if 0 < s < axis.size), axis.size]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


def stride_aligned(axis: AxisGeometry, chunks: Chunks) -> Chunks:
    """``chunks`` with every boundary moved to the nearest multiple of the stride, so that
    each output chunk maps to whole strides of one input chunk (unchanged for stride 1)."""
    s = axis.stride
    bounds = np.cumsum((0, *chunks))[1:-1]
    bounds = np.unique((bounds + s // 2) // s * s)
    edges = [0, *(int(b) for b in bounds if 0 < b < axis.size), axis.size]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


def _runs(src: np.ndarray, lo: int, hi: int) -> list[Run]:
    """Window positions whose source lies in ``lo .. hi-1``, as runs ``(w0, w1, l0, step)``:
    window ``w0 + i`` copies chunk-local position ``l0 + step*i``."""
    where = np.flatnonzero((src >= lo) & (src < hi))
    runs: list[Run] = []
    for w in where.tolist():
        local = int(src[w]) - lo
        if runs:
            w0, w1, l0, step = runs[-1]
            length = w1 - w0
            if w == w1 and length == 1 and abs(local - l0) == 1:  # a second position: a step
                runs[-1] = (w0, w + 1, l0, local - l0)
                continue
            if w == w1 and length > 1 and local == l0 + step * length:
                runs[-1] = (w0, w + 1, l0, step)
                continue
        runs.append((w, w + 1, local, 1))
    return runs


@dataclass(frozen=True)
class _AxisPlan:
    """Per output block: its window (input positions, through the padding map) and, per input
    chunk it reads, the runs that copy them."""

    in_chunks: Chunks
    out_chunks: Chunks
    windows: tuple[int, ...]                       # window length of each output block
    reads: tuple[dict[int, list[Run]], ...]        # per output block: input chunk -> runs

    @classmethod
    def build(cls, axis: AxisGeometry, in_chunks: Chunks, out_chunks: Chunks) -> _AxisPlan:
        reach = (axis.kernel_size - 1) * axis.dilation + 1
        in_edges = np.cumsum((0, *in_chunks))
        windows, reads, first = [], [], 0
        for length in out_chunks:
            start = first * axis.stride - axis.pad[0]
            size = (length - 1) * axis.stride + reach
            src = axis.source(np.arange(start, start + size, dtype=np.int64))
            found = {}
            # only the chunks the window reads (a review: every chunk for every block, 12,500
            # squared on 10**5 positions in chunks of 8, ran for minutes)
            read = src[src >= 0]
            for q in np.unique(np.searchsorted(in_edges, read, side="right") - 1).tolist():
                runs = _runs(src, int(in_edges[q]), int(in_edges[q + 1]))
                if runs:
                    found[q] = runs
            windows.append(size)
            reads.append(found)
            first += length
        return cls(in_chunks, out_chunks, tuple(windows), tuple(reads))

    def writes(self, q: int) -> dict[int, list[Run]]:
        """Per output block whose window reads input chunk ``q``: the runs (the adjoint's
        view: which parts of which windows are summed into chunk ``q``)."""
        return {b: found[q] for b, found in enumerate(self.reads) if q in found}


def _box(runs: list[Run], by_window: bool) -> tuple[slice, int]:
    """The bounding slice of the runs, in window or chunk coordinates, and its start."""
    if by_window:
        lo, hi = min(r[0] for r in runs), max(r[1] for r in runs)
    else:
        ends = [(r[2], r[2] + r[3] * (r[1] - r[0] - 1)) for r in runs]
        lo, hi = min(min(e) for e in ends), max(max(e) for e in ends) + 1
    return slice(lo, hi), lo


def _slices(run: Run, window_offset: int, chunk_offset: int) -> tuple[slice, slice]:
    w0, w1, l0, step = run
    n, l0 = w1 - w0, l0 - chunk_offset
    window = slice(w0 - window_offset, w1 - window_offset)
    if step == 1:
        return window, slice(l0, l0 + n)
    stop = l0 - n
    return window, slice(l0, None if stop < 0 else stop, -1)


# ---------------------------------------------------------------------------------------------
# The layer on one block: a "valid" convolution of the window, or its adjoint.
# ---------------------------------------------------------------------------------------------
# Per process (each worker has its own): the block operators built so far, by layer and shape.
# A task arrives with its own unpickled copy of the layer, so the cache cannot live on it.
# Tasks of one process may run in threads at once (Dask's threaded scheduler): the cache is
# read and written under a lock.
_OPERATORS: dict = {}
_CACHED = 64
_LOCK = threading.Lock()


@dataclass
class _BlockLayer(ReadOnlyState):
    """The layer with no padding, on windows of any size; picklable (its weight read-only:
    the token names it), operators cached."""

    weight: np.ndarray
    kwargs: dict
    transposed: bool
    dtype: np.dtype
    token: str = field(init=False)

    def __post_init__(self):
        self.token = tokenize(self.weight, self.kwargs, self.transposed, self.dtype)

    def _operator(self, window: tuple[int, ...], block: tuple[int, ...]):
        """The block operator, cached by the memory limit it was sized against too (a new
        user's trial: one sized under a higher limit passed a lower one, and its tasks
        failed)."""
        key = (self.token, window, block, get_memory_limit())
        with _LOCK:
            op = _OPERATORS.get(key)
            if op is None:
                while len(_OPERATORS) >= _CACHED:
                    _OPERATORS.pop(next(iter(_OPERATORS)))
                if self.transposed:  # maps the block (the transposed layer's input) to the window
                    op = sc.ConvTransposeOperator(
                        self.weight, (self.weight.shape[0], *block), padding=0, dtype=self.dtype,
                        **self.kwargs)
                else:
                    channels = self.weight.shape[1] * self.kwargs["groups"]
                    op = sc.ConvOperator(self.weight, (channels, *window), padding=0,
                                         dtype=self.dtype, **self.kwargs)
                _OPERATORS[key] = op
        return op

    def size_operators(self, shapes, batch: int = 0, dtype=None, scatter: bool = False,
                       ) -> None:
        """Build (and cache) the operator of every ``(window, block)`` pair of a graph when
        the graph is built: each is sized against the memory limit for one column as it is
        made, so a chunk too large is refused now, not by its task (a memory audit); with
        ``batch``, the largest batch chunk of ``dtype``, its product on that many columns too,
        on the gather side or the ``scatter`` side (a review: a batch chunk of 400 passed the
        build, and its tasks failed)."""
        for window, block in sorted(shapes):
            try:
                op = self._operator(window, block)
                if batch:
                    op._sized_for(batch, dtype, adjoint=self.transposed != scatter)
            except MatrixTooLargeError as exc:  # (a new user's trial: the advice was "a
                # smaller layer or input", where smaller chunks are the fix here)
                said = f" on a batch chunk of {batch}" if batch else ""
                raise reworded(exc, f"a block of this chunking (window {window}, block "
                                    f"{block}){said} is too large: use smaller chunks"
                                    f"{' (of the batch too)' if batch else ''}. {exc}"
                               ) from None

    def gather_side(self, window: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
        """Window -> block: A (a convolution), or A^H of the transposed layer."""
        op = self._operator(window.shape[2:], block)
        apply = op.rmatmat if self.transposed else op.matmat
        return _batched(apply, window, block)

    def scatter_side(self, values: np.ndarray, window: tuple[int, ...]) -> np.ndarray:
        """Block -> window: A^H (the adjoint of a convolution), or the transposed layer."""
        op = self._operator(window, values.shape[2:])
        apply = op.matmat if self.transposed else op.rmatmat
        return _batched(apply, values, window)


def _batched(apply, x: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """``apply`` (columns in, columns out) on a batch ``(N, C, *s)``: ``(N, C', *spatial)``."""
    n = x.shape[0]  # (sizes spelled out: -1 is undetermined for an empty batch)
    y = apply(x.reshape(n, math.prod(x.shape[1:])).T)
    return np.ascontiguousarray(y.T).reshape(n, y.shape[0] // math.prod(spatial), *spatial)


def _gather_task(layer: _BlockLayer, recipe: _Recipe, channels: int, batch: int,
                 *pieces: np.ndarray) -> np.ndarray:
    """One output block: copy its window out of the pieces (zero where it reads only zero
    padding), then apply the layer."""
    window = np.zeros((batch, channels, *recipe.window), dtype=recipe.dtype)
    for piece, runs in zip(pieces, recipe.runs):
        for combo in itertools.product(*runs):
            window[(Ellipsis, *(w for w, _ in combo))] = piece[(Ellipsis, *(c for _, c in combo))]
    return layer.gather_side(window, recipe.block)


def _scatter_task(recipe: _Recipe, channels: int, batch: int, *pieces: np.ndarray) -> np.ndarray:
    """One input chunk of the adjoint: the sum of the parts of the windows that map onto it."""
    out = np.zeros((batch, channels, *recipe.block), dtype=recipe.dtype)
    for piece, runs in zip(pieces, recipe.runs):
        for combo in itertools.product(*runs):
            out[(Ellipsis, *(c for _, c in combo))] += piece[(Ellipsis, *(w for w, _ in combo))]
    return out


@dataclass(frozen=True)
class _Recipe:
    """What a task needs besides its inputs (one object, so Dask does not look inside it)."""

    window: tuple[int, ...]
    block: tuple[int, ...]
    runs: tuple                # per piece, per axis: ((window slice, chunk slice), ...)
    dtype: np.dtype


# ---------------------------------------------------------------------------------------------
# The graphs.
# ---------------------------------------------------------------------------------------------
#: Bytes a task of a product's graph takes, counted high (775 measured with tracemalloc on a
#: 2-D layer in 100 x 100 blocks, its input's graph included).
TASK_BYTES = 1024


class _Plan:
    """A layer's geometry cut into blocks along every spatial axis."""

    def __init__(self, geometry: ConvGeometry, in_chunks: Sequence[Chunks],
                 out_chunks: Sequence[Chunks]):
        self.geometry = geometry
        self.axes = [_AxisPlan.build(axis, ic, oc)
                     for axis, ic, oc in zip(geometry.axes, in_chunks, out_chunks)]
        self.in_chunks = tuple(p.in_chunks for p in self.axes)
        self.out_chunks = tuple(p.out_chunks for p in self.axes)
        # what the graph's keys must tell apart: the whole geometry (the padding decides which
        # inputs a block reads, beside the kernel's options in the block layer's token: two
        # layers differing in padding alone shared their keys, and one's blocks replaced the
        # other's), and the chunks
        self.token = tokenize(repr(geometry), self.in_chunks, self.out_chunks)

    def block_shapes(self) -> set[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Every ``(window, block)`` pair of the plan's output blocks, which are the product
        of the axes' blocks: the products of the pairs each axis has (a few, whatever the
        number of blocks)."""
        per_axis = [sorted(set(zip(p.windows, p.out_chunks))) for p in self.axes]
        return {(tuple(w for w, _ in pairs), tuple(b for _, b in pairs))
                for pairs in itertools.product(*per_axis)}

    def check_graph(self, batches: int, adjoint: bool, transposed: bool) -> None:
        """Refuse a product whose graph would not fit the memory limit, before it is made: a
        task a piece each of the geometry's output blocks reads from each of its input chunks,
        one per block, and for a scatter (:meth:`scatter`) one per input chunk too, at
        :data:`TASK_BYTES` each (a review: chunks of 8 on 10**5 x 10**5, 10**8 blocks, would
        have run for hours). ``adjoint``: the user's adjoint product; ``transposed``: a
        transposed layer's, whose input is the geometry's output."""
        pieces = math.prod(sum(len(found) for found in p.reads) for p in self.axes)
        blocks = math.prod(len(p.out_chunks) for p in self.axes)
        chunks = math.prod(len(p.in_chunks) for p in self.axes)
        scatter = adjoint != transposed
        tasks = batches * (pieces + blocks + (chunks if scatter else 0))
        layer_in, layer_out = (blocks, chunks) if transposed else (chunks, blocks)
        check_memory(TASK_BYTES * tasks, f"the Dask graph of the {'adjoint ' * adjoint}product "
                     f"({tasks} tasks: the layer's {layer_in} input and {layer_out} output "
                     f"chunks, for each of {batches} chunk(s) along x's batch axis)",
                     "use larger chunks (the operator's chunks=, or x's along its batch axis)")

    def gather(self, x, layer: _BlockLayer, channels_out: int, dtype) -> da.Array:
        """Input chunks (``x``, chunked ``(N, C, *in_chunks)``) -> output blocks (the graph
        sized by :meth:`check_graph` first)."""
        token = tokenize(x.name, layer.token, self.token, dtype)
        name = f"sparseconv-gather-{token}"
        graph: dict = {}
        shapes: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        for i in range(len(x.chunks[0])):
            for block in itertools.product(*(range(len(p.out_chunks)) for p in self.axes)):
                pieces, runs = [], []
                reads = [self.axes[d].reads[b] for d, b in enumerate(block)]
                for chunk in itertools.product(*(sorted(r) for r in reads)):
                    axis_runs = [r[q] for r, q in zip(reads, chunk)]
                    boxes = [_box(rs, by_window=False) for rs in axis_runs]
                    key = (name + "-halo", i, *block, *chunk)
                    graph[key] = (operator.getitem, (x.name, i, 0, *chunk),
                                  (Ellipsis, *(s for s, _ in boxes)))
                    pieces.append(key)
                    runs.append(tuple(tuple(_slices(r, 0, lo) for r in rs)
                                      for rs, (_, lo) in zip(axis_runs, boxes)))
                recipe = _Recipe(tuple(self.axes[d].windows[b] for d, b in enumerate(block)),
                                 tuple(self.axes[d].out_chunks[b] for d, b in enumerate(block)),
                                 tuple(runs), np.dtype(dtype))
                graph[(name, i, 0, *block)] = (_gather_task, layer, recipe, x.shape[1],
                                               x.chunks[0][i], *pieces)
                shapes.add((recipe.window, recipe.block))
        layer.size_operators(shapes, max(x.chunks[0], default=0), dtype)
        chunks = (x.chunks[0], (channels_out,), *self.out_chunks)
        return _array(graph, name, x, chunks, dtype)

    def scatter(self, y, layer: _BlockLayer, channels_in: int, dtype) -> da.Array:
        """Output blocks (``y``, chunked ``(N, C', *out_chunks)``) -> input chunks (the graph
        sized by :meth:`check_graph` first)."""
        token = tokenize(y.name, layer.token, self.token, dtype)
        name, windows = f"sparseconv-scatter-{token}", f"sparseconv-window-{token}"
        graph: dict = {}
        shapes: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        nblocks = [range(len(p.out_chunks)) for p in self.axes]
        for i in range(len(y.chunks[0])):
            for block in itertools.product(*nblocks):
                window = tuple(self.axes[d].windows[b] for d, b in enumerate(block))
                graph[(windows, i, *block)] = (layer.scatter_side, (y.name, i, 0, *block), window)
                shapes.add((window, tuple(self.axes[d].out_chunks[b]
                                          for d, b in enumerate(block))))
            for chunk in itertools.product(*(range(len(p.in_chunks)) for p in self.axes)):
                writes = [self.axes[d].writes(q) for d, q in enumerate(chunk)]
                pieces, runs = [], []
                for block in itertools.product(*(sorted(w) for w in writes)):
                    axis_runs = [w[b] for w, b in zip(writes, block)]
                    boxes = [_box(rs, by_window=True) for rs in axis_runs]
                    key = (name + "-part", i, *chunk, *block)
                    graph[key] = (operator.getitem, (windows, i, *block),
                                  (Ellipsis, *(s for s, _ in boxes)))
                    pieces.append(key)
                    runs.append(tuple(tuple(_slices(r, lo, 0) for r in rs)
                                      for rs, (_, lo) in zip(axis_runs, boxes)))
                shape = tuple(self.axes[d].in_chunks[q] for d, q in enumerate(chunk))
                recipe = _Recipe(shape, shape, tuple(runs), np.dtype(dtype))
                graph[(name, i, 0, *chunk)] = (_scatter_task, recipe, channels_in,
                                               y.chunks[0][i], *pieces)
        layer.size_operators(shapes, max(y.chunks[0], default=0), dtype, scatter=True)
        chunks = (y.chunks[0], (channels_in,), *self.in_chunks)
        return _array(graph, name, y, chunks, dtype)


def _array(graph: dict, name: str, source: da.Array, chunks: tuple, dtype) -> da.Array:
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=[source])  # type: ignore[list-item]
    return da.Array(hlg, name, chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype))
