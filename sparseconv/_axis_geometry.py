"""One spatial axis of a layer: its padding map, its gather map, and its segments.

An :class:`AxisGeometry` is one axis of a :class:`sparseconv._geometry.ConvGeometry` (size,
kernel, stride, dilation, pads, padding mode): :meth:`AxisGeometry.source` maps a position of
the padded axis to the input position it copies (``-1`` for a zero pad), and
:meth:`AxisGeometry.tap_index` gives each output's taps their input positions.
:meth:`AxisGeometry.segments` cuts those outputs into runs that read alike
(:class:`AxisSegment`), in O(kernel + border outputs): the matrices are built a run at a time,
and a layer is sized before any array of its size exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._typing import PaddingMode

__all__ = ["AxisGeometry", "AxisSegment"]


@dataclass(frozen=True)
class AxisGeometry:
    """Geometry of one spatial axis: size ``n``, kernel ``k``, stride, dilation, pads, mode."""

    size: int
    kernel_size: int
    stride: int
    dilation: int
    pad: tuple[int, int]
    padding_mode: PaddingMode
    output_size: int

    @property
    def padded_size(self) -> int:
        return self.size + self.pad[0] + self.pad[1]

    @property
    def span(self) -> int:
        """Padded positions ``0 .. span-1`` are read by some output: the last tap of the last
        output reads ``(output_size-1)*stride + (kernel_size-1)*dilation``."""
        return (self.output_size - 1) * self.stride + (self.kernel_size - 1) * self.dilation + 1

    def source(self, j: np.ndarray) -> np.ndarray:
        """Input position that position ``j`` of the padded axis copies, ``-1`` for a zero pad.

        ``j`` counts from the first input position (a padded position minus ``pad[0]``); any
        integer array, mapped elementwise, so a map costs what it maps, never the padded size.
        ``reflect`` excludes the edge (numpy's ``"reflect"``, PyTorch's ``reflect``), unlike
        scipy.ndimage's ``"reflect"`` which repeats it (numpy's ``"symmetric"``).
        """
        n = self.size
        if self.padding_mode == "zeros":
            return np.where((j >= 0) & (j < n), j, -1)
        if self.padding_mode == "circular":
            return j % n
        if self.padding_mode == "replicate":
            return np.clip(j, 0, n - 1)
        # reflect: fold onto the period 2(n-1) of the mirrored sequence 0,1,..,n-1,n-2,..,1
        period = max(2 * (n - 1), 1)
        j = j % period
        return np.where(j < n, j, period - j)

    def pad_index(self) -> np.ndarray:
        """Source input position of every padded position, ``-1`` for a zero pad: O(padded)."""
        return self.source(np.arange(self.padded_size, dtype=np.int64) - self.pad[0])

    def tap_index(self, outputs: np.ndarray | None = None) -> np.ndarray:
        """Gather map of this axis, shape ``(output_size, kernel_size)``: O(output * kernel).

        Entry ``[o, t]`` is the input position read by tap ``t`` of output ``o``: the padded
        position ``o*stride + t*dilation`` mapped through :meth:`source`. ``outputs`` selects
        rows (all of them by default).
        """
        if outputs is None:
            outputs = np.arange(self.output_size, dtype=np.int64)
        o = np.asarray(outputs, dtype=np.int64)[:, None] * self.stride - self.pad[0]
        t = np.arange(self.kernel_size, dtype=np.int64)[None, :] * self.dilation
        return self.source(o + t)

    def _first_output(self, position: int) -> np.ndarray:
        """Per tap, the first output whose tap reads padded position ``>= position`` (relative
        to the input start), clipped to ``[0, output_size]``."""
        t = np.arange(self.kernel_size, dtype=np.int64) * self.dilation
        first = -((t - self.pad[0] - position) // self.stride)  # ceil division
        return np.clip(first, 0, self.output_size)

    def taps_inside(self, outputs: int | None = None) -> np.ndarray:
        """Per tap, whether some output's tap (of the first ``outputs`` outputs only, where
        given) reads a position inside the input (with zero padding, the others read only
        zeros)."""
        last = self._first_output(self.size)
        if outputs is not None:
            last = np.minimum(last, outputs)
        return self._first_output(0) < last

    def segments(self) -> tuple[AxisSegment, ...]:
        """The gather map of this axis cut into runs of outputs that read alike.

        A segment is a run of consecutive outputs with the same *fold* (which taps read which
        of the distinct positions, in increasing position order) whose positions advance by a
        constant ``step``: the stride, or 0 for the outputs that read only the replicated edge.
        Computed in O(kernel + border outputs), never O(padded size) nor O(output size):

        * zero padding: the taps reading the input are a contiguous range that changes only
          where a tap enters or leaves the input, at most ``2 * kernel_size`` outputs, so the
          segments are the runs between those (left border, interior, right border, and runs
          that read only padding, with no position);
        * other modes: the interior (every tap inside the input) is one segment, replicate's
          runs that read only one edge are one each, and the remaining border outputs (at most
          about ``(pad + dilation*(kernel_size-1)) / stride`` a side, and PyTorch bounds the
          reflect and circular pads by the input size) are merged as the rule above allows.
        """
        return _axis_segments(self)

    def _zero_segments(self) -> list[AxisSegment]:
        k, out = self.kernel_size, self.output_size
        enter, leave = self._first_output(0), self._first_output(self.size)
        cuts = np.unique(np.concatenate(([0, out], enter, leave)))
        segments, previous = [], None
        for start, stop in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            taps = np.flatnonzero((enter <= start) & (start < leave))
            key = tuple(taps.tolist())
            if key == previous:  # the same taps read the input: the run goes on
                last = segments[-1]
                segments[-1] = AxisSegment(last.start, stop - last.start, last.positions,
                                           last.fold, last.step)
                continue
            fold = np.zeros((taps.size, k), dtype=bool)
            fold[np.arange(taps.size), taps] = True
            positions = start * self.stride - self.pad[0] + taps * self.dilation
            segments.append(AxisSegment(start, stop - start, positions, fold, self.stride))
            previous = key
        return segments

    def _border_segments(self, outputs: np.ndarray) -> list[AxisSegment]:
        """Segments of the given outputs (sorted), read from their rows of the gather map."""
        if outputs.size == 0:
            return []
        pos = self.tap_index(outputs)
        order = np.argsort(pos, axis=1, kind="stable")
        srt = np.take_along_axis(pos, order, axis=1)
        new_run = np.ones_like(srt, dtype=bool)
        new_run[:, 1:] = srt[:, 1:] != srt[:, :-1]
        rank_sorted = np.cumsum(new_run, axis=1) - 1  # rank of the distinct position read
        rank = np.empty_like(rank_sorted)
        np.put_along_axis(rank, order, rank_sorted, axis=1)
        breaks = np.ones(outputs.size, dtype=bool)
        breaks[1:] = ((outputs[1:] != outputs[:-1] + 1) | (rank[1:] != rank[:-1]).any(axis=1)
                      | (pos[1:] - pos[:-1] != self.stride).any(axis=1))
        starts = np.flatnonzero(breaks)
        lengths = np.diff(starts, append=outputs.size)
        segments = []
        for first, length in zip(starts.tolist(), lengths.tolist()):
            row = rank[first]
            fold = np.zeros((row.max() + 1, self.kernel_size), dtype=bool)
            fold[row, np.arange(self.kernel_size)] = True
            positions = srt[first][new_run[first]]
            segments.append(AxisSegment(int(outputs[first]), length, positions, fold,
                                        self.stride))
        return segments

    def _padded_segments(self) -> list[AxisSegment]:
        k, out, n = self.kernel_size, self.output_size, self.size
        enter, leave = self._first_output(0), self._first_output(n)
        runs = []  # (start, stop, segment or None) of the outputs found without their rows
        if enter[0] < leave[-1]:  # the interior: every tap inside the input
            start = int(enter[0])
            runs.append((start, int(leave[-1]), AxisSegment(
                start, int(leave[-1]) - start, start * self.stride - self.pad[0]
                + np.arange(k) * self.dilation, np.eye(k, dtype=bool), self.stride)))
        if self.padding_mode == "replicate":  # every tap left of (right of) the input
            for stop, start, edge in ((int(enter[-1]), 0, 0), (out, int(leave[0]), n - 1)):
                if start < stop:
                    runs.append((start, stop, AxisSegment(
                        start, stop - start, np.array([edge]), np.ones((1, k), dtype=bool), 0)))
        # the border outputs: the gaps between those runs
        edges = [0, *(v for a, b, _ in sorted(runs, key=lambda r: r[0]) for v in (a, b)), out]
        outputs = np.concatenate([np.arange(a, b, dtype=np.int64)
                                  for a, b in zip(edges[::2], edges[1::2])])
        segments = [seg for _, _, seg in runs] + self._border_segments(outputs)
        return sorted(segments, key=lambda seg: seg.start)


@functools.lru_cache(maxsize=1024)
def _axis_segments(axis: AxisGeometry) -> tuple[AxisSegment, ...]:
    # cached: an axis is an immutable value, and matrices, nnz() and sizes ask for it in turn
    if axis.padding_mode == "zeros":
        return tuple(axis._zero_segments())
    return tuple(axis._padded_segments())


@dataclass(frozen=True, eq=False)
class AxisSegment:
    """Consecutive outputs ``start, ..., start + length - 1`` of one axis that read alike.

    Output ``start + i`` reads input positions ``positions + i*step`` (sorted, distinct);
    ``step`` is the stride, or 0 for outputs that all read one replicated edge. ``fold[e, t]``
    says that kernel tap ``t`` reads ``positions[e]`` (one tap per position with zero
    padding; several where reflect, replicate or circular padding folds taps onto the same
    input position).
    """

    start: int
    length: int
    positions: np.ndarray
    fold: np.ndarray
    step: int

    @property
    def count(self) -> int:
        """Number of distinct input positions each output of the segment reads."""
        return self.fold.shape[0]

    @functools.cached_property
    def _tap_rounds(self) -> tuple[np.ndarray, tuple[tuple[np.ndarray, np.ndarray], ...]]:
        # first tap of every position, then (positions, tap) for each further tap
        entries, taps = np.nonzero(self.fold)
        first = np.flatnonzero(np.diff(entries, prepend=-1))
        extras, nth = [], 1
        while (more := first[np.diff(first, append=entries.size) > nth]).size:
            extras.append((entries[more], taps[more + nth]))
            nth += 1
        return taps[first], tuple(extras)

    def fold_weight(self, weight: np.ndarray, axis: int) -> np.ndarray:
        """``weight`` with its tap ``axis`` replaced by the positions: ``sum`` over ``fold``.

        Computed by indexing, not by a product with the 0/1 fold, so that a non-finite tap
        stays in its own entry.
        """
        first, extras = self._tap_rounds
        out = np.take(weight, first, axis=axis)
        index = (slice(None),) * (axis % weight.ndim)
        for entries, taps in extras:
            # numpy's stubs refuse slices beside an index array, which numpy accepts
            out[(*index, entries)] += np.take(weight, taps, axis=axis)  # type: ignore[arg-type]
        return out
