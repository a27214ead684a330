"""How the matrix-free operators compute their products, from the layer's geometry.

* ``A @ x`` (:func:`forward`): pad the input (a copy into a preallocated array, the border
  slabs filled from the padding map), then
  - at stride 1 with enough channels (:func:`implicit_applies`), the implicit GEMM: one BLAS
    product per kernel tap, of the tap's weight matrix by the padded input read in place at
    the tap's offset, accumulated into one output (:func:`_implicit`, :mod:`sparseconv._gemm`);
  - otherwise view the strided, dilated windows without copying (``as_strided``), and
    multiply them, copied out a cache-sized chunk of output rows at a time (im2col), by the
    weight matrix with BLAS; a large product in parts on every core, each part's copy and
    GEMM on its own thread (:mod:`sparseconv._product_threads`).
* ``A.T @ y`` (no conjugation): :mod:`sparseconv._adjoint_products` (col2im, or stride-1
  correlations per phase, which are :func:`forward` again), from the padding's adjoint here
  (:func:`_pad_adjoint`: the border slabs of reflect, replicate or circular padding added
  back onto the positions they copy).

Arrays are ``(C, *spatial, b)``, a batch of ``b`` columns kept last in memory throughout, so
no transposition is ever made; strided copies move the trailing axes contiguous in both
arrays (a batch row, at stride 1 a window's row of outputs) as one item (:func:`_copy`).
Whatever depends on the geometry alone is computed once per geometry (:func:`_by_geometry`).

Memory: :func:`forward_bytes` and the transpose maps' ``nbytes`` give what one product
allocates (padded input, im2col chunk or phase split, widened ``y``, result); the operators
check it against the memory limit (:func:`check_product_memory`) at construction for a batch
of one and before every product. The padding's border slabs are one slice a side for zero
and replicate padding, however wide, so no map of the padded size is ever built.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._gemm import INT_MAX, gemm
from ._geometry import ConvGeometry
from ._memory import MatrixTooLargeError, format_bytes, get_memory_limit
from ._product_threads import may_split, parts, run_parts, threads_for

__all__ = ["check_product_memory", "forward", "forward_bytes", "implicit_applies",
           "implicit_runs_in", "tap_major"]


# ---------------------------------------------------------------------------------------------
# Scratch space: the padded input and the im2col chunks of every product reuse one buffer per
# thread, so repeated products do not page-fault fresh memory each time.
# ---------------------------------------------------------------------------------------------
_T = TypeVar("_T")
_SCRATCH_LIMIT = 64 * 2**20  # larger temporaries are allocated afresh
_scratch = threading.local()


def _scratch_array(slot: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialized array for temporary use in this thread, reused across calls."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _SCRATCH_LIMIT:
        return np.empty(shape, dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    if slot not in buffers or buffers[slot].nbytes < nbytes:
        buffers[slot] = np.empty(max(nbytes, 1), np.uint8)
    return buffers[slot][:nbytes].view(dtype).reshape(shape)


def _item_run(dst: np.ndarray, src: np.ndarray) -> tuple[int, int]:
    """``(axes, bytes)``: how many trailing axes are one contiguous run in both arrays (equal
    lengths, C order), and the run's length in bytes."""
    axes, run = 0, dst.itemsize
    for n, m, d, s in zip(dst.shape[::-1], src.shape[::-1], dst.strides[::-1],
                          src.strides[::-1]):
        if n != m or (n > 1 and (d != run or s != run)):
            break
        axes, run = axes + 1, run * n
    return axes, run


def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` (``src`` broadcast to ``dst``): a run at a time when no conversion is
    needed (same dtype, byte order included), else numpy's casting copy.

    The trailing axes contiguous in both arrays (a batch row; with it, a window's row of
    outputs at stride 1) are viewed as one opaque item, so the copy moves a run per item
    instead of running numpy's inner loop over a handful of values: for a batch of 8 behind a
    stride-2 gather, about 2x faster.
    """
    if dst.dtype == src.dtype and dst.ndim == src.ndim:
        axes, run = _item_run(dst, src)
        if run > dst.itemsize:
            lead, item = dst.ndim - axes, np.dtype((np.void, run))
            items = [a.reshape(*a.shape[:lead], run // a.itemsize).view(item)[..., 0]
                     for a in (dst, src)]  # src's leading axes may broadcast
            np.copyto(items[0], items[1])
            return
    np.copyto(dst, src)


def _by_geometry(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Memoize ``fn(geom, *args)`` by the geometry's identity: hashing a geometry (a tuple of
    dataclasses) costs microseconds, paid several times per product. An entry keeps its
    geometry alive, so no other object can take its id while it is cached."""
    cache: dict[tuple, tuple[ConvGeometry, _T]] = {}

    @functools.wraps(fn)
    def memoized(geom: ConvGeometry, *args):
        key = (id(geom), *args)
        hit = cache.get(key)
        if hit is not None and hit[0] is geom:
            return hit[1]
        if len(cache) >= 1024:
            cache.clear()
        value = fn(geom, *args)
        cache[key] = (geom, value)
        return value

    memoized.cache_clear = cache.clear  # type: ignore[attr-defined]
    return memoized


# ---------------------------------------------------------------------------------------------
# Padding and its adjoint, from the geometry's padding maps.
# ---------------------------------------------------------------------------------------------
@_by_geometry
def _border_slabs(geom: ConvGeometry) -> tuple:
    """``(axis, source position or -1, region)`` for each border slab of the padding.

    Axes are visited in order; the slab of axis ``d`` spans the padded extent of the axes
    before it (already filled) and the interior of the axes after it, so corners are filled
    by the last axis from borders the earlier ones filled: padding is separable. A run of
    zero-padded positions is one slab. Cached: a geometry is an immutable value.
    """
    return tuple(_slabs(geom))


def _slabs(geom: ConvGeometry):
    interior = [slice(a.pad[0], a.pad[0] + a.size) for a in geom.axes]
    full = [slice(None)] * geom.ndim
    for d, axis in enumerate(geom.axes):
        lo, n = axis.pad[0], axis.size
        for start, stop in ((0, lo), (lo + n, axis.padded_size)):
            if start == stop:
                continue
            if axis.padding_mode in ("zeros", "replicate"):  # one slab a side, however wide
                src = -1 if axis.padding_mode == "zeros" else (0 if start == 0 else n - 1)
                yield d, src, full[:d] + [slice(start, stop)] + interior[d + 1:]
                continue
            # reflect and circular: one slab a position, at most n a side (PyTorch's limit)
            sources = axis.source(np.arange(start - lo, stop - lo, dtype=np.int64))
            for p, src in zip(range(start, stop), sources.tolist()):
                yield d, src, full[:d] + [p] + interior[d + 1:]


def _source_of(geom: ConvGeometry, d: int, src: int, region: list) -> tuple:
    """Where the slab ``region`` of axis ``d`` copies from: position ``src`` of the input,
    kept as a length-1 slice (broadcast) when the slab is a run of positions."""
    at = geom.axes[d].pad[0] + src
    source = list(region)
    source[d] = slice(at, at + 1) if isinstance(region[d], slice) else at
    return (slice(None), *source)


@_by_geometry
def _padded(geom: ConvGeometry) -> bool:
    """Whether the layer pads at all."""
    return any(a.pad != (0, 0) for a in geom.axes)


def _pad(geom: ConvGeometry, x: np.ndarray) -> np.ndarray:
    """``x`` of shape ``(C, *input_size, b)`` padded to ``(C, *padded_size, b)``."""
    if not _padded(geom):
        return x
    xp = _scratch_array("padded", (x.shape[0], *(a.padded_size for a in geom.axes),
                                   x.shape[-1]), x.dtype)
    _copy(xp[(slice(None), *(slice(a.pad[0], a.pad[0] + a.size) for a in geom.axes))], x)
    for d, src, region in _border_slabs(geom):
        target = (slice(None), *region)
        if src < 0:
            xp[target] = 0
        else:
            _copy(xp[target], xp[_source_of(geom, d, src, region)])
    return xp


def _adjoint_span(geom: ConvGeometry) -> tuple[bool, list[tuple[int, int]]]:
    """Whether the padding is zeros alone, and per axis the ``(start, length)`` of padded
    positions a transpose must compute: the interior if so (the border is discarded), else
    all of them (the border slabs are folded back by :func:`_pad_adjoint`)."""
    if all(src < 0 for _, src, _ in _border_slabs(geom)):
        return True, [(a.pad[0], a.size) for a in geom.axes]
    return False, [(0, a.padded_size) for a in geom.axes]


def _pad_adjoint(geom: ConvGeometry, xp: np.ndarray) -> np.ndarray:
    """The transpose of :func:`_pad`: border slabs added onto the positions they copy."""
    if geom.unpadded:
        return xp
    for d, src, region in reversed(_border_slabs(geom)):
        if src >= 0:
            slab = xp[(slice(None), *region)]
            if isinstance(region[d], slice):  # a run copying one position: its sum
                slab = slab.sum(axis=1 + d, keepdims=True)
            xp[_source_of(geom, d, src, region)] += slab
    return xp[(slice(None), *(slice(a.pad[0], a.pad[0] + a.size) for a in geom.axes))]


# ---------------------------------------------------------------------------------------------
# Memory: every product's scratch and result, sized against the limit before it is allocated.
# ---------------------------------------------------------------------------------------------
def check_product_memory(nbytes: int, what: str | Callable[[], str], *,
                         batch: bool = True) -> None:
    """Raise :class:`MatrixTooLargeError` if a product needs more than the memory limit.

    ``what`` names the product; a callable is called only to write the message, so that a
    product within the limit does not pay for formatting it. ``batch=False``: the product is
    of one column already, and a smaller batch is no advice.
    """
    limit = get_memory_limit()
    if limit is not None and nbytes > limit:
        smaller = "a smaller batch or layer" if batch else (  # (a new user's trial: a 3-D
            # volume of 256^3, for which sparseconv.dask is the tool, went unsaid)
            "a smaller layer or input (or sparseconv.dask, which applies a layer chunk by "
            "chunk)")
        raise MatrixTooLargeError(
            f"{what if isinstance(what, str) else what()} needs {format_bytes(nbytes)}, more "
            f"than the memory limit of {format_bytes(limit)}; use {smaller}, or raise the "
            "limit with sparseconv.set_memory_limit(nbytes) or SPARSECONV_MEMORY_LIMIT",
            needed=nbytes)


def _chunk_rows(rows: int, row_bytes: int) -> int:
    """Output rows per im2col chunk: about ``_CHUNK_BYTES``, at least one row."""
    return min(rows, max(1, _CHUNK_BYTES // max(row_bytes, 1)))


@_by_geometry
def forward_bytes(geom: ConvGeometry, b: int, itemsize: int) -> int:
    """Bytes :func:`forward` allocates for a batch of ``b``: the padded input, one im2col
    chunk per thread it may split across and the result, or, where the implicit GEMM may run,
    the more of that and its padded input, widened result and result."""
    padded = geom.in_channels * math.prod(a.padded_size for a in geom.axes)
    depth, _, per_row, chunk = _forward_sizes(geom, b, itemsize)
    out = geom.out_channels * math.prod(geom.output_size)
    # a chunk of scratch per part of a product large enough to split, at most a part per
    # core, by rows (and groups) or by output channels (_product_threads.parts)
    most = max(geom.groups * geom.output_size[0], geom.out_channels // geom.groups)
    threads = min(os.cpu_count() or 1, most) if may_split(*_work(geom, b, itemsize)) else 1
    im2col = ((padded if _padded(geom) else 0) * b + threads * chunk * depth * per_row
              + out * b)
    # the implicit GEMM's dtypes, by item size (complex64, of float64's, is charged for it
    # too); its padded input may be a copy even when unpadded
    if (itemsize not in {d.itemsize for d in IMPLICIT_DTYPES} or not implicit_applies(geom)
            or not implicit_fits(geom, b)):
        return im2col * itemsize
    widened = _widened_size(geom)
    return max(im2col, (padded + widened + (out if widened != out else 0)) * b) * itemsize


# ---------------------------------------------------------------------------------------------
# The two kernels.
# ---------------------------------------------------------------------------------------------
def _windows(geom: ConvGeometry, xp: np.ndarray) -> np.ndarray:
    """View of shape ``(C, *kernel_size, *output_size, b)``: tap ``t`` of output ``o`` reads
    padded position ``o*stride + t*dilation``."""
    c_stride, *sp_strides, b_stride = xp.strides
    sizes, dilation, stride = _window_steps(geom)
    return as_strided(
        xp, shape=(xp.shape[0], *sizes, xp.shape[-1]),
        strides=(c_stride, *(s * d for s, d in zip(sp_strides, dilation)),
                 *(s * t for s, t in zip(sp_strides, stride)), b_stride),
        writeable=False,
    )


@_by_geometry
def _window_steps(geom: ConvGeometry) -> tuple[tuple[int, ...], ...]:
    """``(kernel_size + output_size, dilation, stride)``, once per geometry (per product,
    the properties' tuples cost as much as a small layer's copy)."""
    return (*geom.kernel_size, *geom.output_size), geom.dilation, geom.stride


@_by_geometry
def _forward_sizes(geom: ConvGeometry, b: int, itemsize: int) -> tuple[int, int, int, int]:
    """``(depth, rows, per_row, chunk)`` of :func:`forward`: the im2col depth per group, the
    output rows and the columns per row, and the output rows per im2col chunk."""
    depth = geom.in_channels // geom.groups * math.prod(geom.kernel_size)
    rows, per_row = geom.output_size[0], math.prod(geom.output_size[1:]) * b
    return depth, rows, per_row, _chunk_rows(rows, depth * per_row * itemsize)


@_by_geometry
def _work(geom: ConvGeometry, b: int, itemsize: int) -> tuple[int, int]:
    """``(multiply-adds, bytes copied)`` of :func:`forward`'s im2col route: what decides
    whether it splits across threads (:mod:`sparseconv._product_threads`)."""
    depth, rows, per_row, _ = _forward_sizes(geom, b, itemsize)
    patches = geom.groups * depth * rows * per_row  # every group's
    return 2 * geom.out_channels // geom.groups * patches, patches * itemsize


#: Target size of one im2col chunk: large enough for efficient BLAS, small enough for the cache.
_CHUNK_BYTES = 4 * 2**20


def forward(geom: ConvGeometry, w: np.ndarray, x: np.ndarray,
            taps: np.ndarray | None = None) -> np.ndarray:
    """``A @ x`` for ``x`` of shape ``(C_in, *input_size, b)``; returns ``(C_out, *out, b)``.

    ``w``: the weight ``(C_out, C_in/groups, *kernel)``; ``taps``: the same weight as
    :func:`tap_major` orders it, if the caller keeps one (else made here when needed).

    Where :func:`implicit_applies`, the implicit GEMM (:func:`_implicit`). Otherwise the
    patches of a chunk of output rows (first spatial axis) are copied out of the strided
    window view and multiplied by the group's weight matrix, straight into the output.
    """
    groups, b = geom.groups, x.shape[-1]
    dtype = np.result_type(w, x)
    if (b and implicit_applies(geom, dtype) and w.dtype == x.dtype == dtype
            and implicit_fits(geom, b)):
        return _implicit(geom, tap_major(geom, w) if taps is None else taps,
                         np.require(_pad(geom, x), requirements=["C", "A"]))  # BLAS: aligned
    windows = _windows(geom, _pad(geom, x))  # (C_in, *kernel, *out, b)
    in_per_group = geom.in_channels // groups
    depth, rows, per_row, chunk = _forward_sizes(geom, b, dtype.itemsize)
    w = w.reshape(groups, -1, depth)
    y = np.empty((groups, w.shape[1], rows, per_row), dtype)
    lead = (slice(None),) * (1 + len(geom.axes))  # channel and tap axes

    def part(g: int, r0: int, r1: int, c0: int, c1: int) -> None:  # on its thread's scratch
        block = windows[(slice(g * in_per_group, (g + 1) * in_per_group), *lead[1:],
                         slice(r0, r1))]
        im2col = _scratch_array("im2col", block.shape, dtype)
        _copy(im2col, block)  # the im2col copy, into reused memory
        np.matmul(w[g, c0:c1], im2col.reshape(depth, -1),
                  out=y[g, c0:c1, r0:r1].reshape(c1 - c0, -1))

    threads = threads_for(*_work(geom, b, dtype.itemsize))
    run_parts(part, parts(groups, rows, chunk, w.shape[1], threads,
                          by_channels=w.shape[1] > rows * per_row))
    return y.reshape(geom.out_channels, *_window_steps(geom)[0][len(geom.axes):], b)


# ---------------------------------------------------------------------------------------------
# The implicit GEMM: no im2col copy at stride 1.
# ---------------------------------------------------------------------------------------------
#: The implicit GEMM runs where each group has at least this many input and output channels
#: (fewer make each tap's product too thin for BLAS) ...
IMPLICIT_MIN_CHANNELS = 16
#: ... and where the outputs it computes and discards (:func:`_widened_size`) add at most this
#: fraction to the real ones: 14 of 16 columns a row on ResNet-18's 14x14 layers, not 7 of 9
#: on its 7x7 ones, where im2col is as fast (``benchmarks/bench_networks.py``).
IMPLICIT_MAX_WASTE = 0.2
#: Target size of the output block one chunk of the implicit GEMM accumulates into.
_IMPLICIT_CHUNK_BYTES = 2**22


#: The dtypes the implicit GEMM runs in: in single precision it was no faster than im2col on
#: ResNet-18's layers (0.93-1.07) and 1.6x slower on VGG-11's 64->128 on 112x112.
IMPLICIT_DTYPES = (np.dtype(np.float64), np.dtype(np.complex128))


def implicit_runs_in(geom: ConvGeometry, dtype: np.dtype | None = None) -> bool:
    """Whether the implicit GEMM may run on this layer's products at all (forward, or
    col2im's): at least :data:`IMPLICIT_MIN_CHANNELS` channels a group each way, and
    ``dtype`` (``None``: some dtype) one of :data:`IMPLICIT_DTYPES` with a BLAS ``gemm``."""
    if dtype is not None and (np.dtype(dtype) not in IMPLICIT_DTYPES or gemm(dtype) is None):
        return False
    return min(geom.in_channels, geom.out_channels) // geom.groups >= IMPLICIT_MIN_CHANNELS


@_by_geometry
def implicit_applies(geom: ConvGeometry, dtype: np.dtype | None = None) -> bool:
    """Whether :func:`forward` runs the implicit GEMM (:func:`_implicit`) on this layer in
    ``dtype`` (``None``: in some dtype): :func:`implicit_runs_in`, stride 1 on every axis,
    and at most :data:`IMPLICIT_MAX_WASTE` of discarded outputs."""
    if not implicit_runs_in(geom, dtype) or any(a.stride != 1 for a in geom.axes):
        return False
    real = geom.out_channels * math.prod(geom.output_size)
    return _widened_size(geom) <= (1 + IMPLICIT_MAX_WASTE) * real


def implicit_fits(geom: ConvGeometry, b: int) -> bool:
    """Whether a batch of ``b`` keeps the implicit GEMM's leading dimensions (a padded
    channel's items) within the 32-bit BLAS interface (:data:`sparseconv._gemm.INT_MAX`)."""
    return math.prod(a.padded_size for a in geom.axes) * b <= INT_MAX


@_by_geometry
def _widened_size(geom: ConvGeometry) -> int:
    """Values per batch column of the implicit GEMM's result: the outputs of the first axis
    by the padded extent of the others."""
    return geom.out_channels * geom.output_size[0] * math.prod(
        a.padded_size for a in geom.axes[1:])


def tap_major(geom: ConvGeometry, w: np.ndarray, transposed: bool = False) -> np.ndarray:
    """The weight ``(C_out, C_in/groups, *kernel)`` as the implicit GEMM reads it:
    ``(taps, groups, C_out/groups, C_in/groups)``, or with the last two axes swapped for
    col2im's (``transposed``), contiguous, read-only."""
    groups, taps = geom.groups, math.prod(geom.kernel_size)
    w = w.reshape(groups, geom.out_channels // groups, geom.in_channels // groups, taps)
    ordered = np.ascontiguousarray(w.transpose(3, 0, 2, 1) if transposed
                                   else w.transpose(3, 0, 1, 2))
    ordered.flags.writeable = False
    return ordered


@_by_geometry
def _implicit_plan(geom: ConvGeometry, b: int, itemsize: int) -> tuple:
    """``(offsets, inner, last, rows)``: each tap's offset into a padded channel, the items
    per position of the first axis, the items of the last output row up to its last real
    output, and the output rows per chunk. Checks that no read leaves a channel."""
    padded = [a.padded_size for a in geom.axes]
    steps = [math.prod(padded[d + 1:]) * b for d in range(geom.ndim)]  # items per position
    offsets = [sum(t * a.dilation * s for t, a, s in zip(tap, geom.axes, steps))
               for tap in np.ndindex(*geom.kernel_size)]
    out = geom.output_size
    last = sum((o - 1) * s for o, s in zip(out[1:], steps[1:])) + b
    # the farthest read: the last output's last tap (stride 1: out + (k-1)*dilation <= padded)
    if (out[0] - 1) * steps[0] + last - 1 + max(offsets) >= padded[0] * steps[0]:
        raise AssertionError("implicit GEMM reads beyond the padded input")  # pragma: no cover
    rows = max(1, min(out[0], _IMPLICIT_CHUNK_BYTES // (geom.out_channels * steps[0] * itemsize)))
    return offsets, steps[0], last, rows


def _implicit(geom: ConvGeometry, taps: np.ndarray, xp: np.ndarray) -> np.ndarray:
    """``A @ x`` by implicit GEMM, from the contiguous padded input ``xp``.

    With the trailing axes kept at their padded extent, output position ``o`` and padded
    position ``o`` have the same offset in their channels, so tap ``t``'s contribution to a
    run of outputs is the weight matrix times the run of input items ``offset(t)`` further
    on: one BLAS product per tap (and group, and chunk of output rows), accumulated
    (``beta = 1``) into the same output block, read in place from ``xp`` -- no im2col copy.
    The positions past each row's last output (as many as the padding) are computed into
    the widened result and dropped by one copy at the end.
    """
    b, dtype = xp.shape[-1], xp.dtype
    product, size = gemm(dtype), dtype.itemsize
    groups = geom.groups
    c_in, c_out = geom.in_channels // groups, geom.out_channels // groups
    # BLAS reads raw addresses: the shapes that bound them are checked, never assumed
    padded = (geom.in_channels, *(a.padded_size for a in geom.axes), b)
    weights = (math.prod(geom.kernel_size), groups, c_out, c_in)
    if (product is None or xp.shape != padded or taps.shape != weights or taps.dtype != dtype
            or not (xp.flags.c_contiguous and taps.flags.c_contiguous)
            or not (xp.flags.aligned and taps.flags.aligned)):
        raise ValueError(f"implicit GEMM operands do not match the layer: input {xp.shape} "
                         f"for {padded}, weights {taps.shape} {taps.dtype} for {weights} "
                         f"{dtype}")  # pragma: no cover - forward passes matching ones
    offsets, inner, last, rows = _implicit_plan(geom, b, size)
    out0 = geom.output_size[0]
    lda, ldc = xp[0].size, out0 * inner  # items per channel: padded input, widened result
    widened = np.empty((geom.out_channels, out0, *xp.shape[2:]), dtype)
    x0, y0, w0 = xp.ctypes.data, widened.ctypes.data, taps.ctypes.data

    for r0 in range(0, out0, rows):
        r1 = min(out0, r0 + rows)
        m = (r1 - r0 - 1) * inner + last
        for g in range(groups):
            a = x0 + (g * c_in * lda + r0 * inner) * size
            c = y0 + (g * c_out * ldc + r0 * inner) * size
            for t, offset in enumerate(offsets):
                product(m, c_out, c_in, a + offset * size, lda,
                        w0 + (t * groups + g) * c_out * c_in * size, c_in, c, ldc, t)
    keep = (slice(None), slice(None), *(slice(o) for o in geom.output_size[1:]))
    if widened[keep].shape == widened.shape:
        return widened
    y = np.empty((geom.out_channels, *geom.output_size, b), dtype)
    _copy(y, widened[keep])
    return y
