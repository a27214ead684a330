"""The index maps of ConvGeometry against their definitions (numpy.pad, loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparseconv
from sparseconv import (
    ConvGeometry,
)

from ._oracles import F, per_side, requires_torch, torch


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


def _check_segments(axis, config):
    """Every output in exactly one segment, reading positions + i*step with the fold's taps,
    checked against the definition: o*stride + t*dilation - lo through numpy.pad's rule."""
    n, (lo, hi) = axis.size, axis.pad
    extra = {"constant_values": -1} if axis.padding_mode == "zeros" else {}
    padded = np.pad(np.arange(n), (lo, hi), mode=NP_PAD[axis.padding_mode], **extra)
    o = np.arange(axis.output_size)[:, None] * axis.stride
    taps = padded[o + np.arange(axis.kernel_size)[None, :] * axis.dilation]
    covered = 0
    for seg in axis.segments():
        assert seg.start == covered, config  # in order, no gap, no overlap
        for i in range(seg.length):
            row = taps[seg.start + i]
            for e, pos in enumerate(seg.positions + i * seg.step):
                assert set(np.flatnonzero(row == pos)) == set(np.flatnonzero(seg.fold[e])), config
            assert seg.count == len(set(row[row >= 0])), config
        covered += seg.length
    assert covered == axis.output_size, config


NP_PAD = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_segments_cover_the_gather_map(mode):
    rng = np.random.default_rng(0)
    for _ in range(150):
        n, k, s, d = (int(v) for v in (rng.integers(1, 9), rng.integers(1, 6),
                                       rng.integers(1, 4), rng.integers(1, 4)))
        most = {"reflect": n - 1, "circular": n}.get(mode, 12)
        lo, hi = (int(v) for v in rng.integers(0, most + 1, 2))
        try:
            geom = ConvGeometry.from_weight((1, 1, k), (1, n), stride=s, dilation=d,
                                            padding=((lo, hi),), padding_mode=mode)
        except ValueError:
            continue
        _check_segments(geom.axes[0], dict(n=n, k=k, s=s, d=d, pad=(lo, hi), mode=mode))


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
def test_segments_are_few_and_cheap_for_huge_padding(mode):
    """Huge pads cost nothing: zero padding's empty runs and replicate's edge runs are one
    segment each, found without a map of the padded axis."""
    geom = ConvGeometry.from_weight((1, 1, 3), (1, 8), padding=((10**12, 10**12),),
                                    padding_mode=mode, stride=5)
    segments = geom.axes[0].segments()
    assert len(segments) <= 9 and sum(seg.length for seg in segments) == geom.output_size[0]
    small = ConvGeometry.from_weight((1, 1, 3), (1, 8), padding=((13, 12),),
                                     padding_mode=mode, stride=5)
    _check_segments(small.axes[0], mode)


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


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_folded_blocks_are_the_sums_of_the_taps_each_output_reads(mode):
    """Every block's pattern, at every output of its segments, against the gather map: the
    sum of the taps (flipped for a true convolution) that read each position."""
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(60):
        n = tuple(int(v) for v in rng.integers(2, 7, 2))
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        most = [{"reflect": s - 1, "circular": s}.get(mode, 3) for s in n]
        pads = [tuple(int(v) for v in rng.integers(0, m + 1, 2)) for m in most]
        w = rng.standard_normal((2, 3, *k))
        try:
            geom = ConvGeometry.from_weight(w.shape, (3, *n), padding=pads, padding_mode=mode,
                                            stride=int(rng.integers(1, 3)),
                                            flip=bool(rng.integers(2)))
        except ValueError:
            continue
        taps = geom.tap_weights(w)
        segments = [axis.segments() for axis in geom.axes]
        for block, folded in geom.folded_blocks(w):
            seg = [segments[d][j] for d, j in enumerate(block)]
            for i in range(seg[0].length):
                for j in range(seg[1].length):
                    reads = [geom.axes[0].tap_index([seg[0].start + i])[0],
                             geom.axes[1].tap_index([seg[1].start + j])[0]]
                    for p in range(seg[0].count):
                        for q in range(seg[1].count):
                            at = (seg[0].positions[p] + i * seg[0].step,
                                  seg[1].positions[q] + j * seg[1].step)
                            expected = taps[:, :, reads[0] == at[0]][:, :, :, reads[1] == at[1]]
                            assert np.allclose(folded[:, :, p, q], expected.sum(axis=(2, 3)))
            checked += 1
    assert checked > 20
    geom = ConvGeometry.from_weight((2, 3, 3, 3), (3, 5, 5))
    with pytest.raises(ValueError, match=r"^weight must have shape \(2, 3, 3, 3\) for this "
                       r"geometry, got shape \(2, 3, 3\)"):
        next(geom.folded_blocks(np.ones((2, 3, 3))))


@pytest.mark.parametrize("seed", range(10))
def test_taps_inside_by_their_definition(seed):
    """A tap reads inside the input iff some output's position o*stride + t*dilation - pad
    lies in [0, size), checked by brute force on random zero-padded axes."""
    from sparseconv import ConvGeometry

    rng = np.random.default_rng(50_000 + seed)
    for _ in range(50):
        k, s, d, n = (int(v) for v in rng.integers(1, 6, 4))
        lo, hi = (int(v) for v in rng.integers(0, 8, 2))
        if n + lo + hi < d * (k - 1) + 1:
            continue
        axis = ConvGeometry.from_weight((1, 1, k), (1, n), stride=s, dilation=d,
                                        padding=((lo, hi),)).axes[0]
        expected = [any(0 <= o * s + t * d - lo < n for o in range(axis.output_size))
                    for t in range(k)]
        assert axis.taps_inside().tolist() == expected, (k, s, d, n, lo, hi)


class TestPublicConstructorsValidate:
    """A review's bad-input sweep of ConvGeometry's own entry points: an output_size of the
    wrong length made a geometry of another rank (``(3,)`` of a 2-D layer: a 1-D geometry on
    8 inputs), a float or a string one failed deep in the index maps, the constructor took
    ``groups=0`` and no axes, and tap_weights returned any value unchanged."""

    @pytest.mark.parametrize("output_size, error, message", [
        ((3,), ValueError, r"output_size has 1 value for 2 axes"),
        ((3, 3, 3), ValueError, r"output_size has 3 values for 2 axes"),
        ((2.5, 3), TypeError, r"output_size must be a positive integer or a tuple of 2"),
        ((True, 3), TypeError, r"output_size must be a positive integer"),
        ((3, "3"), TypeError, r"output_size must be a positive integer"),
        ((0, 3), ValueError, r"output_size must be a positive integer"),
        ((7, 3), ValueError, r"output_size=\(7, 3\) must lie in \[1, \(6, 6\)\]"),
    ])
    def test_output_size(self, output_size, error, message):
        from sparseconv import ConvGeometry

        with pytest.raises(error, match=message):
            ConvGeometry.from_weight((2, 2, 3, 3), (2, 8, 8), output_size=output_size)

    def test_an_int_output_size_is_every_axis(self):
        from sparseconv import ConvGeometry

        geom = ConvGeometry.from_weight((2, 2, 3, 3), (2, 8, 8), output_size=5)
        assert geom.output_size == (5, 5) and geom.input_shape == (2, 8, 8)

    def test_constructor(self):
        from sparseconv import ConvGeometry

        axes = ConvGeometry.from_weight((2, 2, 3), (2, 8)).axes
        assert ConvGeometry(2, 2, 1, axes).shape == (12, 16)
        with pytest.raises(ValueError, match="groups must be a positive integer, got 0"):
            ConvGeometry(2, 2, 0, axes)
        with pytest.raises(ValueError, match="groups=2 must divide in_channels=3"):
            ConvGeometry(3, 2, 2, axes)
        with pytest.raises(TypeError, match=r"axes must be a non-empty tuple of AxisGeometry"):
            ConvGeometry(2, 2, 1, ())
        with pytest.raises(TypeError, match=r"axes must be a non-empty tuple"):
            ConvGeometry(2, 2, 1, list(axes))
        with pytest.raises(TypeError, match="flip must be a bool"):
            ConvGeometry(2, 2, 1, axes, "yes")

    def test_tap_weights_and_from_kernel_size(self):
        from sparseconv import ConvGeometry

        geom = ConvGeometry.from_weight((1, 1, 3), (1, 4))
        with pytest.raises(ValueError, match=r"weight must have shape \(1, 1, 3\) for this "
                           r"geometry, got shape \(\)"):
            geom.tap_weights("x")
        with pytest.raises(ValueError, match=r"got shape \(1, 1, 4\)"):
            geom.tap_weights(np.ones((1, 1, 4)))
        with pytest.raises(TypeError, match="depthwise must be a bool, got 'yes'"):
            ConvGeometry.from_kernel_size((3, 8, 8), 2, depthwise="yes")
        with pytest.raises(TypeError, match="groups=1 cannot be given with depthwise=True"):
            ConvGeometry.from_kernel_size((3, 8, 8), 2, depthwise=True, groups=1)


@requires_torch
def test_from_weight_takes_a_weight_shape_given_as_a_1d_integer_array():
    """weight_shape as a 1-D integer array (a tensor's shape turned to numpy): PyTorch's
    output shape."""
    geom = sparseconv.ConvGeometry.from_weight(np.array([4, 2, 3, 3]), (2, 8, 7), padding=1,
                                               stride=2)
    expected = F.conv2d(torch.ones((1, 2, 8, 7)), torch.ones((4, 2, 3, 3)), padding=1,
                        stride=2).shape[1:]
    assert geom.output_shape == tuple(expected)


def test_sizes_up_to_the_index_limit_are_taken():
    """INDEX_LIMIT (2**60) is the largest size a layer may take, a kernel's included: a
    kernel as long as the input has one output, floor((n - k) / 1) + 1."""
    limit = 2**60
    geom = sparseconv.ConvGeometry.from_weight((1, 1, limit), (1, limit))
    assert geom.output_shape == (1, 1)
    with pytest.raises(ValueError, match="2\\*\\*60"):
        sparseconv.ConvGeometry.from_weight((1, 1, limit + 1), (1, limit + 1))


def test_from_weight_takes_the_weight_array_itself():
    """The docstring said an array's shape is taken; the weight array itself was refused (a
    mutation review): a 1-D integer array is a shape, an array of more dimensions the
    weight."""
    weight = np.ones((4, 2, 3, 3))
    expected = sparseconv.ConvGeometry.from_weight((4, 2, 3, 3), (2, 8, 7), padding=1)
    assert sparseconv.ConvGeometry.from_weight(weight, (2, 8, 7), padding=1) == expected
    with pytest.raises(ValueError, match=r"weight_shape=\(2, 3\)"):
        sparseconv.ConvGeometry.from_weight(np.ones((2, 3)), (2, 8))
