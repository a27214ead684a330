"""The index maps of ConvGeometry against their definitions (numpy.pad, loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparseconv import (
    ConvGeometry,
)

from .conftest import per_side


@pytest.mark.parametrize("padding", ["same", "full", 2, (1, 3), ((0, 2), (3, 1))])
def test_index_map_is_the_definition(padding):
    """Entry [o, t] is the input position read: o*stride + t*dilation - lo, or -1 in a pad."""
    geom = ConvGeometry.from_weight((1, 1, 3, 4), (1, 6, 7), padding=padding, dilation=(2, 1))
    pads = per_side(padding, (3, 4), (2, 1))
    imap = geom.index_map()
    assert imap.shape == (math.prod(geom.output_size), 12)
    for o in range(imap.shape[0]):
        oi, oj = divmod(o, geom.output_size[1])
        for t in range(12):
            ti, tj = divmod(t, 4)
            i, j = oi + 2 * ti - pads[0][0], oj + tj - pads[1][0]
            inside = 0 <= i < 6 and 0 <= j < 7
            assert imap[o, t] == (i * 7 + j if inside else -1)


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_pad_index_is_numpy_pad(mode):
    np_mode = {"zeros": "constant", "circular": "wrap", "reflect": "reflect",
               "replicate": "edge"}[mode]
    for n in range(1, 7):
        for lo in range(0, n + 1):
            for hi in range(0, n + 1):
                if mode == "reflect" and max(lo, hi) >= n:
                    continue
                geom = ConvGeometry.from_weight((1, 1, 1), (1, n), padding=((lo, hi),),
                                                padding_mode=mode)
                x = np.arange(1.0, n + 1)
                expected = np.pad(x, (lo, hi), mode=np_mode)
                idx = geom.axes[0].pad_index()
                got = np.where(idx >= 0, x[np.maximum(idx, 0)], 0.0)
                assert np.array_equal(got, expected), (mode, n, lo, hi)


def test_segments_cover_the_gather_map():
    rng = np.random.default_rng(0)
    for mode in ["zeros", "circular", "reflect", "replicate"]:
        for _ in range(40):
            n, k, s, d = (int(v) for v in (rng.integers(3, 9), rng.integers(1, 5),
                                           rng.integers(1, 3), rng.integers(1, 3)))
            lo, hi = (int(v) for v in rng.integers(0, 3, 2))
            try:
                geom = ConvGeometry.from_weight((1, 1, k), (1, n), stride=s, dilation=d,
                                                padding=((lo, hi),), padding_mode=mode)
            except ValueError:
                continue
            axis = geom.axes[0]
            taps = axis.tap_index()
            covered = 0
            for seg in axis.segments():
                for i in range(seg.length):
                    o = seg.start + i
                    for e, pos in enumerate(seg.positions + i * s):
                        readers = set(np.flatnonzero(taps[o] == pos))
                        assert readers == set(np.flatnonzero(seg.fold[e]))
                    assert seg.count == len(set(taps[o][taps[o] >= 0]))
                covered += seg.length
            assert covered == axis.output_size


def test_span_is_one_past_the_last_padded_position_read():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n, k, s, d, lo, hi = (int(v) for v in (rng.integers(4, 12), rng.integers(1, 5),
                                               rng.integers(1, 4), rng.integers(1, 3),
                                               rng.integers(0, 3), rng.integers(0, 3)))
        try:
            axis = ConvGeometry.from_weight((1, 1, k), (1, n), stride=s, dilation=d,
                                            padding=((lo, hi),)).axes[0]
        except ValueError:
            continue
        reads = [o * s + t * d for o in range(axis.output_size) for t in range(k)]
        assert axis.span == max(reads) + 1 <= axis.padded_size
