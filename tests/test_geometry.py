"""Shape formulas against PyTorch, the index maps, and the validation of every argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseconv import (
    ConvGeometry,
    conv_matrix,
    conv_output_shape,
    conv_transpose_matrix,
    conv_transpose_output_shape,
)

from .conftest import F, per_side, requires_torch, torch

small = st.integers(1, 9)
padding_arg = st.one_of(st.integers(0, 4), st.sampled_from(["same", "valid"]))


@requires_torch
@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 12), k=small, s=st.integers(1, 4), p=padding_arg, d=st.integers(1, 3),
       two_d=st.booleans())
def test_conv_output_shape_matches_torch(n, k, s, p, d, two_d):
    ndim = 2 if two_d else 1
    x = torch.zeros((1, 1) + (n,) * ndim, dtype=torch.float64)
    w = torch.zeros((1, 1) + (k,) * ndim, dtype=torch.float64)
    conv = F.conv2d if two_d else F.conv1d
    try:
        expected = tuple(conv(x, w, stride=s, padding=p, dilation=d).shape[2:])
    except (RuntimeError, ValueError):
        with pytest.raises(ValueError):
            conv_output_shape((n,) * ndim, k, stride=s, padding=p, dilation=d)
        return
    assert conv_output_shape((n,) * ndim, k, stride=s, padding=p, dilation=d) == expected
    if not two_d:
        assert conv_output_shape(n, k, stride=s, padding=p, dilation=d) == expected[0]


@requires_torch
@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 8), k=small, s=st.integers(1, 4), p=st.integers(0, 4),
       op=st.integers(0, 3), d=st.integers(1, 3))
def test_conv_transpose_output_shape_matches_torch(n, k, s, p, op, d):
    x = torch.zeros((1, 1, n), dtype=torch.float64)
    w = torch.zeros((1, 1, k), dtype=torch.float64)
    try:
        expected = F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op,
                                      dilation=d).shape[2]
    except (RuntimeError, ValueError):
        with pytest.raises(ValueError):
            conv_transpose_output_shape(n, k, stride=s, padding=p, output_padding=op,
                                        dilation=d)
        return
    assert conv_transpose_output_shape(n, k, stride=s, padding=p, output_padding=op,
                                       dilation=d) == expected
    assert conv_transpose_output_shape((n, n), (k, 1), stride=(s, 1), padding=(p, 0),
                                       output_padding=(op, 0), dilation=(d, 1)) == (expected, n)


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


# -- validation: every bad argument raises a clear error naming it -----------------------------
W2 = np.ones((4, 2, 3, 3))
BAD_CONV = [
    (dict(weight=np.ones((4, 2))), ValueError, "weight"),
    (dict(weight=np.ones((4, 2, 0))), ValueError, "weight"),
    (dict(input_shape=(2, 8)), ValueError, "input_shape"),
    (dict(input_shape=(3, 8, 8)), ValueError, "in_channels"),
    (dict(input_shape=(4, 8, 8), groups=3), ValueError, "groups"),
    (dict(weight=np.ones((3, 2, 3, 3)), input_shape=(4, 8, 8), groups=2), ValueError, "groups"),
    (dict(groups=0), ValueError, "groups"),
    (dict(groups=1.5), TypeError, "groups"),
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=(1, 0)), ValueError, "stride"),
    (dict(stride=(1, 1, 1)), ValueError, "stride"),
    (dict(stride=1.0), TypeError, "stride"),
    (dict(dilation=-1), ValueError, "dilation"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(padding=((0, -1), (0, 0))), ValueError, "padding"),
    (dict(padding="half"), ValueError, "padding"),
    (dict(padding=(1, 1, 1)), ValueError, "padding"),
    (dict(padding=1.5), TypeError, "padding"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode"),
    (dict(padding="same", stride=2), ValueError, "same"),
    (dict(input_shape=(2, 2, 8)), ValueError, "kernel_size"),
    (dict(input_shape=(2, 3, 8), padding=3, padding_mode="reflect"), ValueError, "padding"),
    (dict(input_shape=(2, 3, 8), padding=4, padding_mode="circular"), ValueError, "padding"),
    (dict(weight=np.array([["a"]] * 3, dtype=object).reshape(1, 1, 3)), TypeError, "weight"),
    (dict(weight=[[["x", "y"]]]), TypeError, "weight"),
    (dict(input_shape=(2, float("nan"), 8)), TypeError, "input_shape"),
    (dict(input_shape=(2, 8.0, 8)), TypeError, "input_shape"),
    (dict(input_shape=(2, 0, 8)), ValueError, "input_shape"),
    (dict(format="dense"), ValueError, "format"),
    (dict(dtype="str"), TypeError, "dtype"),
]


@pytest.mark.parametrize("bad, error, name", BAD_CONV, ids=[str(b[0])[:60] for b in BAD_CONV])
def test_conv_matrix_rejects(bad, error, name):
    args = dict(weight=W2, input_shape=(2, 8, 8))
    args.update(bad)
    weight, input_shape = args.pop("weight"), args.pop("input_shape")
    with pytest.raises(error, match=name):
        conv_matrix(weight, input_shape, **args)


BAD_TRANSPOSE = [
    (dict(output_padding=2, stride=2), "output_padding"),
    (dict(output_padding=1), "output_padding"),
    (dict(output_padding=-1), "output_padding"),
    (dict(padding=5), "empty"),
    (dict(padding="same"), "padding"),
    (dict(input_shape=(3, 5, 5)), "in_channels"),
    (dict(groups=3), "groups"),
]


@pytest.mark.parametrize("bad, name", BAD_TRANSPOSE, ids=[str(b[0]) for b in BAD_TRANSPOSE])
def test_conv_transpose_matrix_rejects(bad, name):
    args = dict(input_shape=(4, 5, 5))
    args.update(bad)
    with pytest.raises(ValueError, match=name):
        conv_transpose_matrix(W2, args.pop("input_shape"), **args)


def test_messages_name_the_value():
    with pytest.raises(ValueError, match=r"stride must be .* got \(1, 0\)"):
        conv_matrix(W2, (2, 8, 8), stride=(1, 0))
    with pytest.raises(ValueError, match=r"groups=3 must divide in_channels=2"):
        conv_matrix(np.ones((3, 1, 1)), (2, 4), groups=3)


def test_numpy_integer_arrays_are_accepted_as_tuples():
    w = np.ones((2, 1, 3, 3))
    a = conv_matrix(w, (1, 9, 9), stride=np.array([1, 2]), dilation=np.array([2, 1]))
    b = conv_matrix(w, (1, 9, 9), stride=(1, 2), dilation=(2, 1))
    assert abs(a - b).max() == 0
    with pytest.raises(TypeError, match="stride"):
        conv_matrix(w, (1, 9, 9), stride=np.array([1.0, 2.0]))


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
