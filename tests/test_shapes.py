"""The output-shape formulas against PyTorch, including the layers PyTorch rejects."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseconv import conv_output_shape, conv_transpose_output_shape
from sparseconv._shapes import output_padding_for

from ._oracles import F, requires_torch, torch

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


def test_output_padding_for_is_the_size_above_the_smallest_output():
    # 8 -> 15 at stride 2, padding 1, kernel 3: output_size 15 or 16
    assert output_padding_for((15, 16), (8, 8), 3, stride=2, padding=1) == (0, 1)
    assert output_padding_for(None, (8, 8), 3, stride=2, output_padding=(1, 0)) == (1, 0)
    with pytest.raises(ValueError, match=r"between \(15,\) and \(16,\) .* got 17"):
        output_padding_for(17, (8,), 3, stride=2, padding=1)
