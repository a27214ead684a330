"""How the matrix-free operators compute ``A.T @ y`` (no conjugation), from the geometry.

By whichever moves less memory (:func:`transpose_map`):

* :func:`col2im` -- one BLAS product gives every tap's contribution (``w.T @ y``), and each
  tap is slice-added into the padded input held split by phase modulo the stride
  (:func:`_tap_phases`: tap ``t`` of output ``o`` lands on position ``o + e`` of phase
  ``r``), where its positions are one block; no ``np.add.at``. When ``y``'s rows are widened
  with zeros to the accumulator's (:func:`_col2im_layout`, when :func:`_widens` finds the
  extra BLAS work and copy worth the loops saved), that block is one run per channel. The phases are
  then merged into the input (:func:`_phase_merge`). In double precision with 16+ channels
  a group, the product and the adds are one accumulating BLAS product per tap instead
  (:func:`_implicit_col2im`, the implicit GEMM of :mod:`sparseconv._products`).
* :class:`Polyphase` -- each phase of the padded input is a stride-1 correlation of ``y``
  with a reversed subset of the taps, i.e. :func:`forward` again, computed on the interior
  alone for zero padding.
* :class:`Pointwise` -- a 1x1 layer: one product per group, written where its outputs read.

Other padding modes end by adding the border slabs of the padding back onto the positions
they copy (:func:`sparseconv._products._pad_adjoint`). Each kernel's ``nbytes(b, itemsize)``
is what one product allocates, checked against the memory limit by the operators.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ._gemm import INT_MAX, gemm
from ._geometry import ConvGeometry
from ._products import (
    _adjoint_span,
    _by_geometry,
    _chunk_rows,
    _copy,
    _pad_adjoint,
    _scratch_array,
    forward,
    forward_bytes,
    implicit_applies,
    implicit_runs_in,
    tap_major,
)

__all__ = ["Col2im", "Pointwise", "Polyphase", "col2im", "transpose_map"]


def col2im(geom: ConvGeometry, w: np.ndarray, y: np.ndarray, *, widen: bool = True,
           taps: np.ndarray | None = None) -> np.ndarray:
    """``A.T @ y`` (no conjugation) for ``y`` of shape ``(C_out, *out, b)``, by col2im.

    For a cache-sized chunk of output rows, one BLAS product per group gives every tap's
    contribution (``w.T @ y``); each tap is then added into the padded input with one slice-add
    (no ``np.add.at``), and the padding is folded back at the end. The padded input is
    accumulated split by phase modulo the stride (:func:`_col2im_layout`), where every tap's
    positions are a contiguous block; when ``y``'s rows are widened to the accumulator's
    (zeros), that block is one run per channel, so each add is one loop per channel instead of
    one per output row. Each phase's lead tap writes its blocks instead of adding them, so
    the accumulator is zeroed only where the leads leave it. ``widen=False`` never widens (for
    a weight that is not finite).

    ``taps``: the weight as ``tap_major(geom, w, transposed=True)`` orders it, where the
    implicit GEMM may run (:func:`_implicit_col2im` then replaces the product and the adds,
    when ``y`` has the weight's dtype and the rows widen).
    """
    groups, b = geom.groups, y.shape[-1]
    c_in, c_out = geom.in_channels, geom.out_channels
    dtype = np.result_type(w, y)
    implicit = taps is not None and b > 0 and widen and y.dtype == w.dtype == dtype
    flat, extent, chunk, layout = _col2im_layout(geom, b, dtype.itemsize, widen, implicit)
    if implicit and not (flat and _implicit_fits(geom, extent, b)):
        implicit = False  # the products and adds as without it, in their own layout
        flat, extent, chunk, layout = _col2im_layout(geom, b, dtype.itemsize, widen)
    wt = w.reshape(groups, c_out // groups, -1).transpose(0, 2, 1)  # (groups, C_in/g * K, C_out/g)
    rows, out_rest = geom.output_size[0], geom.output_size[1:]
    row = math.prod(extent[1:]) * b  # accumulator (and widened y) elements per row
    if flat and extent[1:] != out_rest:  # y's rows widened with zeros
        wide = _scratch_array("widened", (c_out, rows, *extent[1:], b), y.dtype)
        for d, n in enumerate(out_rest):
            wide[(slice(None),) * (2 + d) + (slice(n, None),)] = 0
        _copy(wide[(slice(None), slice(None), *(slice(n) for n in out_rest))], y)
        y = wide
    y = y.reshape(groups, c_out // groups, rows, -1)
    acc = _scratch_array("split", (c_in, _phase_count(geom), (extent[0] + 1) * row), dtype)
    grid = acc.reshape(c_in, -1, extent[0] + 1, *extent[1:], b)
    by_phase = [acc[:, p] if flat else grid[:, p] for p in range(acc.shape[1])]
    # each phase's lead tap writes its blocks (every position another tap of its phase
    # reaches before it is one of them, zeroed around them, or already written): zero only
    # the rows before its first block and after its last, and phases no tap reaches
    leads = {phase: first for _, phase, first, _, lead in layout if lead}
    end = rows * row if flat else rows
    for phase, view in enumerate(by_phase):
        view[:, :leads.get(phase, view.shape[1])] = 0
        view[:, end + leads.get(phase, 0):] = 0
    if implicit:
        assert taps is not None  # for the type checker: implicit implies it
        _implicit_col2im(geom, taps, np.require(y, requirements=["C", "A"]), acc, layout, chunk)
        return _phase_merge(geom, grid)
    for r0 in range(0, rows, chunk):
        n_rows = min(chunk, rows - r0)
        chunk_y = y[:, :, r0:r0 + n_rows].reshape(groups, c_out // groups, -1)
        cols = _scratch_array("im2col", (groups, wt.shape[1], chunk_y.shape[-1]), dtype)
        np.matmul(wt, chunk_y, out=cols)
        cols = cols.reshape(c_in, -1, cols.shape[-1])
        if flat:  # one run per channel: widened rows line up with the accumulator's
            length = n_rows * row
            for t, phase, first, _, lead in layout:
                start = first + r0 * row
                target = by_phase[phase][:, start:start + length]
                if lead:
                    np.copyto(target, cols[:, t])
                else:
                    np.add(target, cols[:, t], out=target)
            continue
        cols = cols.reshape(c_in, -1, n_rows, *out_rest, b)
        for t, phase, first, where, lead in layout:
            band = by_phase[phase][:, r0 + first:r0 + first + n_rows]  # its rows
            target = band[(slice(None), slice(None), *where)]
            if not lead:
                np.add(target, cols[:, t], out=target)
                continue
            np.copyto(target, cols[:, t])
            for d, edge in enumerate(where):  # the band around its block
                axis = (slice(None),) * (2 + d)
                band[(*axis, slice(None, edge.start))] = 0
                band[(*axis, slice(edge.stop, None))] = 0
    return _phase_merge(geom, grid)


def _implicit_fits(geom: ConvGeometry, extent: tuple[int, ...], b: int) -> bool:
    """Whether the phase-split accumulator's channel (the implicit GEMM's leading dimension,
    longer than ``y``'s) fits the 32-bit BLAS interface (:data:`sparseconv._gemm.INT_MAX`)."""
    return _phase_count(geom) * (extent[0] + 1) * math.prod(extent[1:]) * b <= INT_MAX


def _implicit_col2im(geom: ConvGeometry, taps: np.ndarray, y: np.ndarray, acc: np.ndarray,
                     layout: tuple, chunk: int) -> None:
    """col2im's products and adds as one BLAS product per tap, accumulated in place.

    ``y``: the widened output ``(groups, C_out/groups, rows, row)``; ``acc``: the phase-split
    accumulator ``(C_in, phases, (extent + 1) * row)``, zeroed where the leads leave it. Tap
    ``t``'s contribution to a chunk of rows, ``W_t^T`` times that chunk of ``y``, lands on one
    run per channel of its phase (its offset ``first``): one ``gemm`` writes it (``beta = 0``,
    the phase's lead) or adds it (``beta = 1``), no columns buffer and no separate adds.
    """
    groups, rows, row = y.shape[0], y.shape[2], y.shape[3]
    c_in, c_out = geom.in_channels // groups, geom.out_channels // groups
    dtype = acc.dtype
    product, size = gemm(dtype), dtype.itemsize
    weights = (math.prod(geom.kernel_size), groups, c_in, c_out)
    # BLAS reads and writes raw addresses: the shapes that bound them are checked
    if (product is None or y.dtype != dtype or taps.shape != weights or taps.dtype != dtype
            or y.shape[1] != c_out or acc.shape[0] != groups * c_in
            or not (y.flags.c_contiguous and acc.flags.c_contiguous
                    and taps.flags.c_contiguous)
            or not (y.flags.aligned and acc.flags.aligned and taps.flags.aligned)
            or max(first for _, _, first, _, _ in layout) + rows * row > acc.shape[2]):
        raise ValueError("implicit col2im operands do not match the layer")  # pragma: no cover
    lda, ldc, per_phase = rows * row, acc[0].size, acc.shape[2]
    y0, w0, x0 = y.ctypes.data, taps.ctypes.data, acc.ctypes.data
    for r0 in range(0, rows, chunk):
        length = min(chunk, rows - r0) * row
        for g in range(groups):
            a = y0 + (g * c_out * lda + r0 * row) * size
            for t, phase, first, _, lead in layout:  # the leads first: they write
                product(length, c_in, c_out, a, lda,
                        w0 + (t * groups + g) * c_in * c_out * size, c_out,
                        x0 + (g * c_in * ldc + phase * per_phase + first + r0 * row) * size,
                        ldc, not lead)


def _flat_offset(shift, extent, b: int) -> int:
    """Offset of position ``shift`` in a C-ordered ``(*extent, b)`` block."""
    offset = 0
    for e, n in zip(shift, extent):
        offset = offset * n + e
    return offset * b


@_by_geometry
def _phases(geom: ConvGeometry) -> tuple[tuple[int, ...], ...]:
    """Every phase ``(r_1, ..., r_d)`` modulo the stride, in C order (built only where the
    phase-split accumulator, one slab per phase, is: sizes and indices come from
    :func:`_phase_count` and :func:`_phase_index`)."""
    return tuple(itertools.product(*(range(a.stride) for a in geom.axes)))


def _phase_count(geom: ConvGeometry) -> int:
    """The number of phases, ``prod(stride)``."""
    return math.prod(a.stride for a in geom.axes)


def _phase_index(geom: ConvGeometry, phase: tuple[int, ...]) -> int:
    """The index of ``phase`` in :func:`_phases`' C order, without listing them (a fuzzed
    stride of 2**40 on two axes made that list 2**80 long: MemoryError)."""
    index = 0
    for r, a in zip(phase, geom.axes):
        index = index * a.stride + r
    return index


@_by_geometry
def _tap_phases(geom: ConvGeometry) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """Per tap (weight order): the index of its phase and its shift per axis.

    Tap ``t`` of output ``o`` reads padded position ``o*stride + t*dilation = (o + e)*stride
    + r``, with ``r = t*dilation mod stride`` and ``e = t*dilation // stride``: the tap writes
    positions ``o + e`` of phase ``r``.
    """
    taps = []
    for tap in itertools.product(*(range(a.kernel_size) for a in geom.axes)):
        reach = [t * a.dilation for t, a in zip(tap, geom.axes)]
        phase = tuple(p % a.stride for p, a in zip(reach, geom.axes))
        taps.append((_phase_index(geom, phase),
                     tuple(p // a.stride for p, a in zip(reach, geom.axes))))
    return tuple(taps)


def _widens(geom: ConvGeometry, b: int, growth: float) -> bool:
    """Whether col2im widens ``y``'s rows, by ``growth`` (the fraction of columns added).

    Measured (one thread, ResNet-18's layers and a 3 -> 64 stem): widening pays when the
    extra BLAS work is small (``growth <= 1/8``) and copying ``y`` costs less than half the
    adds it shortens (``C_out <= C_in * prod(kernel) / 2``, per group); for a batch, whose
    rows are long already, only when there are few input channels (the 7x7 stem's 3).
    """
    c_in, c_out = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    return growth <= 1 / 8 and 2 * c_out <= c_in * math.prod(geom.kernel_size) and (
        b == 1 or c_in <= 4)


_Tap = tuple[int, int, int, tuple, bool]

#: The implicit GEMM's col2im widens ``y``'s rows (which it needs) when that adds at most this
#: fraction of columns; else the products and adds run as without it.
IMPLICIT_GROWTH = 1 / 8


@_by_geometry
def _col2im_layout(geom: ConvGeometry, b: int, itemsize: int, widen: bool = True,
                   implicit: bool = False
                   ) -> tuple[bool, tuple[int, ...], int, tuple[_Tap, ...]]:
    """``(flat, extent, chunk, taps)``: whether ``y``'s rows are widened, the accumulator's
    extent per axis in phase units (one more row is allocated: a widened run may end past the
    last), the output rows per chunk, and per tap where its block of a chunk starting at
    output row 0 lies: ``(t, phase, first, where, lead)``, its index in weight order
    (:func:`_tap_phases`), the offset of its run in a phase's flat accumulator when widened
    (else its first row), the slices of the other axes (unused when widened), and whether it
    is its phase's lead (written, not added; the leads come first).

    Axis ``d`` holds the ``ceil(padded_size / stride)`` positions of a phase; widened, every
    axis after the first also holds ``output_size + max shift`` of them, so that a tap's run,
    junk columns included, never wraps onto a position of the next row.

    ``implicit``: for the implicit GEMM (:func:`_implicit_col2im`), which needs the widened
    rows, taken whenever they add at most :data:`IMPLICIT_GROWTH`, and whose chunks hold the
    accumulator's rows (no columns buffer).
    """
    phases = [-(-a.padded_size // a.stride) for a in geom.axes]
    reach = [((a.kernel_size - 1) * a.dilation) // a.stride for a in geom.axes]
    wide = tuple([phases[0]] + [max(q, a.output_size + e)
                                for q, a, e in zip(phases[1:], geom.axes[1:], reach[1:])])
    out_rest = geom.output_size[1:]
    growth = math.prod(wide[1:]) / math.prod(out_rest) - 1
    flat = widen and (growth <= IMPLICIT_GROWTH if implicit else _widens(geom, b, growth))
    extent = wide if flat else tuple(phases)
    row_bytes = geom.in_channels * math.prod(geom.kernel_size) * math.prod(
        extent[1:] if flat else out_rest)
    if implicit and flat:
        row_bytes //= math.prod(geom.kernel_size)
    chunk = _chunk_rows(geom.output_size[0], row_bytes * b * itemsize)
    row = math.prod(extent[1:]) * b
    shifts = _tap_phases(geom)
    lead: dict[int, int] = {}  # a phase's lead: the tap whose blocks start last
    for t, (phase, shift) in enumerate(shifts):
        if phase not in lead or shift > shifts[lead[phase]][1]:
            lead[phase] = t
    taps = [(t, phase, shift[0] * row + _flat_offset(shift[1:], extent[1:], b), (), False)
            if flat else
            (t, phase, shift[0], tuple(slice(e, e + n) for e, n in zip(shift[1:], out_rest)),
             False) for t, (phase, shift) in enumerate(shifts)]
    taps = [(t, phase, first, where, lead[phase] == t) for t, phase, first, where, _ in taps]
    taps.sort(key=lambda tap: not tap[4])  # the leads first
    return flat, extent, chunk, tuple(taps)


def _phase_merge(geom: ConvGeometry, grid: np.ndarray) -> np.ndarray:
    """The input-shaped array of :func:`_pad_adjoint` of the padded array held in ``grid``
    (``(C, phase, *extent, b)``, phase ``r`` of axis ``d`` holding positions ``q*s + r``).

    One strided copy per phase: of the interior alone when the padding is zeros (the border
    is discarded), else of the whole padded array, whose border slabs are then folded back.
    """
    channels, b = grid.shape[0], grid.shape[-1]
    zeros, span = _adjoint_span(geom)
    out = np.empty((channels, *(n for _, n in span), b), grid.dtype)
    for index, phase in enumerate(_phases(geom)):
        src: list[int | slice]
        src, dst = [slice(None), index], [slice(None)]
        for r, a, (lo, n) in zip(phase, geom.axes, span):
            first = lo + (r - lo) % a.stride  # first position of the span in this phase
            src.append(slice(first // a.stride, -(-(lo + n - r) // a.stride)))
            dst.append(slice(first - lo, n, a.stride))
        _copy(out[tuple(dst)], grid[tuple(src)])
    return out if zeros else _pad_adjoint(geom, out)


def transpose_map(geom: ConvGeometry, w: np.ndarray):
    """The cheaper way to apply ``A.T``, by the memory each one moves.

    col2im writes, reads and adds ``C_in/g * prod(kernel)`` values per output position;
    the polyphase correlation copies and reads ``C_out/g * prod(kernel)``: col2im wins when
    the layer widens (3 -> 64), the correlation when it does not (many taps, few channels).
    col2im's accumulator holds a slab per phase of the stride, the correlation visits only
    the phases a tap reaches: with more phases than taps, most slabs would stay empty (a
    fuzzed stride of 2**40 on two axes: 2**80 of them), and the correlation is taken.
    Either is a callable with ``nbytes(b, itemsize)``, what one product allocates.
    """
    if all(a.kernel_size == 1 and (a.padding_mode == "zeros" or a.pad == (0, 0))
           for a in geom.axes):
        return Pointwise(geom, w)
    if 3 * geom.out_channels <= 4 * geom.in_channels or \
            _phase_count(geom) > math.prod(geom.kernel_size):
        return Polyphase(geom, w)
    return Col2im(geom, w)


class Pointwise:
    """``A.T`` of a 1x1 layer (zero padding): one product per group, ``W_g^T @ y_g``, written
    at the input positions its outputs read (``o * stride - pad``, inside the input), into
    zeros. ResNet's strided shortcuts: no col2im, no phase split."""

    def __init__(self, geom: ConvGeometry, w: np.ndarray):
        self.geom, self.w = geom, w
        self.where_in, self.where_out = [slice(None)], [slice(None)]
        for a in geom.axes:
            lo = a.pad[0]
            first = -(-lo // a.stride)                       # the first output inside
            count = max(min(a.output_size, (a.size - 1 + lo) // a.stride + 1) - first, 0)
            start = first * a.stride - lo
            self.where_in.append(slice(start, start + a.stride * count, a.stride))
            self.where_out.append(slice(first, first + count))

    def __call__(self, y: np.ndarray) -> np.ndarray:
        geom, groups, b = self.geom, self.geom.groups, y.shape[-1]
        c_in, c_out = geom.in_channels, geom.out_channels
        dtype = np.result_type(self.w, y)
        wt = self.w.reshape(groups, c_out // groups, c_in // groups).transpose(0, 2, 1)
        y = y[(*self.where_out, slice(None))]
        z = np.matmul(wt, y.reshape(groups, c_out // groups, -1))  # (groups, C_in/g, P*b)
        out = np.zeros((c_in, *(a.size for a in geom.axes), b), dtype)
        _copy(out[(*self.where_in, slice(None))], z.reshape(c_in, *y.shape[1:]))
        return out

    def nbytes(self, b: int, itemsize: int) -> int:
        """The products (at most the output's size) and the zeroed result."""
        geom = self.geom
        return (geom.in_channels * math.prod(geom.output_size)
                + geom.in_channels * math.prod(a.size for a in geom.axes)) * b * itemsize


class Col2im:
    """``A.T`` by :func:`col2im`, with the bytes it allocates. Rows of ``y`` are widened with
    zeros only when the weight is finite (``inf * 0`` would reach real positions)."""

    def __init__(self, geom: ConvGeometry, w: np.ndarray):
        self.geom, self.w = geom, w
        self.widen = bool(np.isfinite(w).all())
        # the implicit GEMM where its channels and dtype allow, at any stride
        self.taps = tap_major(geom, w, transposed=True) if (
            self.widen and implicit_runs_in(geom, w.dtype)) else None

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return col2im(self.geom, self.w, y, widen=self.widen, taps=self.taps)

    def nbytes(self, b: int, itemsize: int) -> int:
        """The phase-split padded input, the widened ``y``, one chunk of columns, and the
        result (twice: a non-zero padding's result is a strided view, copied when flattened)."""
        geom = self.geom
        flat, extent, chunk, _ = _col2im_layout(geom, b, itemsize, self.widen,
                                                self.taps is not None)
        row = math.prod(extent[1:])
        split = geom.in_channels * math.prod(geom.stride) * (extent[0] + 1) * row
        wide = geom.out_channels * geom.output_size[0] * row if flat else 0
        per_row = row if flat else math.prod(geom.output_size[1:])
        cols = geom.in_channels * math.prod(geom.kernel_size) * chunk * per_row
        out = geom.in_channels * math.prod(n for _, n in _adjoint_span(geom)[1])
        return (split + wide + cols + 2 * out) * b * itemsize


class Polyphase:
    """``A.T`` of a convolution (no conjugation) as stride-1 correlations, one per phase.

    The padded input position ``p = o*stride + t*dilation`` of axis ``d`` splits by its phase
    ``r = p mod stride``: the positions ``r + stride*q`` receive exactly the taps ``t`` with
    ``t*dilation = r (mod stride)``, from outputs ``q - (t*dilation - r)/stride``. That is a
    stride-1 correlation of the output with those taps, reversed, at dilation
    ``dilation/gcd(stride, dilation)``, so the transpose is ``prod(stride)`` forward passes
    (one for stride 1: the correlation with the flipped kernel, padded by ``dilation*(k-1)``
    minus the layer's padding).

    With zero padding only the interior positions are computed, straight into the result;
    otherwise the whole padded input is, and its border slabs are folded back.
    """

    def __init__(self, geom: ConvGeometry, w: np.ndarray):
        self.geom = geom
        groups, c_in, c_out = geom.groups, geom.in_channels, geom.out_channels
        # weight of the transposed layer: (C_in, C_out/groups, *kernel), same groups
        wt = w.reshape(groups, c_out // groups, c_in // groups, *geom.kernel_size)
        wt = wt.swapaxes(1, 2).reshape(c_in, c_out // groups, *geom.kernel_size)
        self.dtype = wt.dtype  # of the result with y, even when no phase has a tap
        self.zeros, spans = _adjoint_span(geom)
        self.shape = (c_in, *(n for _, n in spans))
        per_axis = [self._axis_phases(a, lo, n) for a, (lo, n) in zip(geom.axes, spans)]
        # positions of a phase that no tap reaches stay zero
        self.covered = all(ph["taps"] for phases in per_axis for ph in phases)
        per_axis = [[ph for ph in phases if ph["taps"]] for phases in per_axis]
        self.phases = []
        for combo in itertools.product(*per_axis):
            taps = np.ix_(*(phase["taps"] for phase in combo))
            sub = np.ascontiguousarray(wt[(slice(None), slice(None), *taps)])
            crop = tuple(slice(ph["crop"], None) for ph in combo)
            y_size = tuple(a.output_size - ph["crop"] for ph, a in zip(combo, geom.axes))
            sub_geom = ConvGeometry.from_weight(
                sub.shape, (c_out, *y_size),
                padding=tuple(ph["pad"] for ph in combo),
                dilation=tuple(ph["dilation"] for ph in combo), groups=groups,
                output_size=tuple(ph["size"] for ph in combo),
            )
            where = tuple(slice(ph["first"], None, a.stride) for ph, a in zip(combo, geom.axes))
            ordered = tap_major(sub_geom, sub) if implicit_applies(sub_geom, sub.dtype) else None
            self.phases.append((crop, where, sub_geom, sub, ordered))

    @staticmethod
    def _axis_phases(axis, lo: int, n: int) -> list[dict]:
        """Per phase: the taps, and the correlation giving padded positions ``[lo, lo + n)``.

        Position ``first + stride*k`` of the phase reads ``y[k + q0 - shift_t]`` for each tap,
        with ``q0 = (first - r)/stride``; as a correlation of ``y`` it needs ``shift_max - q0``
        zeros on the left (when negative, ``y`` is cropped instead) and enough on the right for
        ``size`` outputs; the geometry drops any outputs beyond those.
        """
        phases: list[dict[str, Any]] = []
        # only the phases some tap reaches are visited (a loop over every phase took seconds
        # at stride 10**7, before any size check); the others with positions in the span
        # (min(n, stride) phases have some) are counted, and stay zero
        by_phase: dict[int, list[int]] = {}
        for t in range(axis.kernel_size):
            by_phase.setdefault((t * axis.dilation) % axis.stride, []).append(t)
        reached = 0
        for r, taps in sorted(by_phase.items()):
            first = lo + (r - lo) % axis.stride
            size = -(-(lo + n - first) // axis.stride)
            if size <= 0:
                continue  # the span holds no position of this phase
            reached += 1
            shifts = [(t * axis.dilation - r) // axis.stride for t in taps]
            step = shifts[1] - shifts[0] if len(taps) > 1 else 1
            left = shifts[-1] - (first - r) // axis.stride
            right = size + step * (len(taps) - 1) - axis.output_size - left
            if -left >= axis.output_size:
                phases.append(dict(taps=[]))  # every read falls outside y
                continue
            phases.append(dict(first=first - lo, taps=taps[::-1], dilation=step, size=size,
                               pad=(max(left, 0), max(right, 0)), crop=max(-left, 0)))
        if reached < min(n, axis.stride):  # a phase no tap reaches: its positions are zeros
            phases.append(dict(taps=[]))
        return phases

    def nbytes(self, b: int, itemsize: int) -> int:
        """The result (twice, as :meth:`Col2im.nbytes`), and the largest phase's forward."""
        phases = max((forward_bytes(g, b, itemsize) for _, _, g, _, _ in self.phases), default=0)
        return 2 * math.prod(self.shape) * b * itemsize + phases

    def __call__(self, y: np.ndarray) -> np.ndarray:
        geom, b = self.geom, y.shape[-1]
        if len(self.phases) == 1 and all(a.stride == 1 for a in geom.axes):
            # stride 1: one phase, every position; no assembly needed
            crop, _, sub_geom, sub, taps = self.phases[0]
            x = forward(sub_geom, sub, y[(slice(None), *crop)], taps)
            return x if self.zeros else _pad_adjoint(geom, x)
        dtype = np.result_type(y.dtype, self.dtype)
        x = (np.empty if self.covered else np.zeros)((*self.shape, b), dtype)
        for crop, where, sub_geom, sub, taps in self.phases:
            _copy(x[(slice(None), *where)], forward(sub_geom, sub, y[(slice(None), *crop)], taps))
        return x if self.zeros else _pad_adjoint(geom, x)
