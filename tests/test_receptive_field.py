"""Receptive fields: the exact mask, the path counts and the closed form agree with each other
and with PyTorch's autograd."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc
from sparseconv import (
    ConvGeometry,
    conv_matrix,
    conv_output_shape,
    receptive_field,
    receptive_field_paths,
    receptive_field_size,
)

from ._oracles import F, requires_torch, torch


def test_receptive_field_cases():
    ones = np.ones((1, 1, 3, 3))
    A = conv_matrix(ones, (1, 9, 9), padding=1)
    field = receptive_field([A, A], (1, 9, 9), (0, 4, 4), output_shape=(1, 9, 9))
    expected = np.zeros((1, 9, 9), bool)
    expected[0, 2:7, 2:7] = True  # stacked 3x3 -> a full 5x5 box
    assert np.array_equal(field, expected)
    # a dilated layer's field has holes: exactly the dilated taps
    D = conv_matrix(ones, (1, 9, 9), dilation=2)
    field = receptive_field([D], (1, 9, 9), 0)
    assert np.array_equal(np.argwhere(field[0]), [[i, j] for i in (0, 2, 4) for j in (0, 2, 4)])
    # a field near a zero-padded border is cut
    assert receptive_field([A, A], (1, 9, 9), 0).sum() == 9
    # structural: a stored entry is a connection even where the weight is zero
    Z = conv_matrix(np.array([[[1.0, 0.0, 1.0]]]), (1, 5))
    assert receptive_field([Z], (1, 5), 0).tolist() == [[True, True, True, False, False]]


def torch_field(weights, strides, dilations, x_shape, unit):
    """The input positions an output unit depends on, by PyTorch's autograd: with positive
    weights, its gradient is positive exactly there."""
    x = torch.zeros((1, *x_shape), dtype=torch.float64, requires_grad=True)
    h = x
    for w, s, d in zip(weights, strides, dilations):
        conv = getattr(F, f"conv{w.ndim - 2}d")
        h = conv(h, torch.from_numpy(w), stride=s, dilation=d)
    h[(0, *unit)].backward()
    return x.grad[0].numpy() > 0


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_receptive_field_is_the_autograd_support_and_the_closed_form(seed):
    rng = np.random.default_rng(300 + seed)
    ndim = 1 + seed % 2
    depth = int(rng.integers(1, 4))
    kernels = [tuple(int(k) for k in rng.integers(1, 4, ndim)) for _ in range(depth)]
    strides = [tuple(int(s) for s in rng.integers(1, 3, ndim)) for _ in range(depth)]
    dilations = [tuple(int(d) for d in rng.integers(1, 3, ndim)) for _ in range(depth)]
    extent = receptive_field_size(kernels, strides, dilations)
    size = tuple(e + int(rng.integers(0, 4)) for e in extent)
    channels = [int(c) for c in rng.integers(1, 3, depth + 1)]
    weights, matrices, shape = [], [], (channels[0], *size)
    for i, (k, s, d) in enumerate(zip(kernels, strides, dilations)):
        w = np.abs(rng.standard_normal((channels[i + 1], channels[i], *k))) + 0.1
        weights.append(w)
        matrices.append(conv_matrix(w, shape, stride=s, dilation=d))
        shape = (channels[i + 1], *conv_output_shape(shape[1:], k, stride=s, dilation=d))
    unit = tuple(int(rng.integers(0, n)) for n in shape)
    field = receptive_field(matrices, (channels[0], *size), unit, output_shape=shape)
    config = dict(kernels=kernels, strides=strides, dilations=dilations, size=size, unit=unit)
    assert np.array_equal(field, torch_field(weights, strides, dilations, field.shape, unit)), \
        config
    # "valid" layers: every unit sees a whole field, whose extent is the closed form
    hit = np.argwhere(field.any(axis=0))
    assert tuple(hit.max(axis=0) - hit.min(axis=0) + 1) == tuple(extent), config


BAD_FIELD = [
    (dict(layers=[]), ValueError, "at least one layer"),
    (dict(layers=[np.eye(4)]), TypeError, "scipy.sparse"),
    (dict(input_shape=(1, 5)), ValueError, r"input_shape=\(1, 5\) has 5 entries but layers\[0\]"),
    (dict(layers=None), TypeError, "layers must be a sequence"),
    # (a new user's trial: 1.0, inside the range, was "out of range")
    (dict(output_index=(0, 1.5), output_shape=(1, 4)), TypeError, "must hold integers"),
    (dict(output_index=(0, 1.0), output_shape=(1, 4)), TypeError, "must hold integers"),
    (dict(output_index=4), ValueError, "out of range"),
    (dict(output_index=(0, 3)), ValueError, "output_shape given"),
    (dict(output_index=(0, 4), output_shape=(1, 4)), ValueError, "out of range"),
    (dict(output_index=(0, 1), output_shape=(2, 4)), ValueError, "units"),
    (dict(layout="nhwc"), ValueError, "layout must be one of"),
]


@pytest.mark.parametrize("bad, error, match", BAD_FIELD, ids=[str(b[0]) for b in BAD_FIELD])
def test_receptive_field_rejects(bad, error, match):
    args = dict(layers=[sp.eye_array(4)], input_shape=(1, 4), output_index=0)
    args.update(bad)
    with pytest.raises(error, match=match):
        receptive_field(args.pop("layers"), args.pop("input_shape"), args.pop("output_index"),
                        **args)


@pytest.mark.parametrize("seed", range(8))
def test_a_channels_last_chain_has_the_channels_first_chain_s_field(seed):
    """A new user's trial: a ``layout="channels_last"`` matrix's field came out scrambled,
    without a word. With ``layout=`` its field, shapes and index channels first, is the
    channels-first chain's, which is the dense product's row pattern."""
    rng = np.random.default_rng(seed)
    c0, c1, c2 = rng.integers(1, 4, size=3)
    shape = (int(c0), *rng.integers(6, 10, size=2).tolist())
    first = dict(stride=int(rng.integers(1, 3)), padding=1, dilation=int(rng.integers(1, 3)))
    w1, w2 = rng.standard_normal((c1, c0, 3, 3)), rng.standard_normal((c2, c1, 2, 3))
    middle = (int(c1), *conv_output_shape(shape[1:], (3, 3), **first))
    out = (int(c2), *conv_output_shape(middle[1:], (2, 3), padding=1))
    index = tuple(int(rng.integers(n)) for n in out)
    fields = {}
    for layout in ("channels_first", "channels_last"):
        chain = [conv_matrix(w1, shape, **first, layout=layout),
                 conv_matrix(w2, middle, padding=1, layout=layout)]
        fields[layout] = receptive_field(chain, shape, index, output_shape=out, layout=layout)
        assert fields[layout].shape == shape
    product = (conv_matrix(w2, middle, padding=1) @ conv_matrix(w1, shape, **first)).toarray()
    row = product[np.ravel_multi_index(index, out)].reshape(shape) != 0
    assert np.array_equal(fields["channels_first"], row)
    assert np.array_equal(fields["channels_last"], row)


@pytest.mark.parametrize("seed", range(10))
def test_field_counts_are_path_counts_of_the_layer_matrices(seed):
    rng = np.random.default_rng(100 + seed)
    size, layers = (int(rng.integers(6, 10)), int(rng.integers(6, 10))), []
    for _ in range(int(rng.integers(1, 4))):
        k, d = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        mode = str(rng.choice(["zeros", "circular", "reflect", "replicate"]))
        pad = min(d * (k - 1) // 2, min(size) - 1)
        stride = int(rng.integers(1, 3)) if pad * 2 == d * (k - 1) else 1
        geom = ConvGeometry.from_weight((1, 1, k, k), (1, *size), padding=pad, dilation=d,
                                        stride=stride, padding_mode=mode)
        layers.append(geom)
        size = geom.output_size
    # with all-ones weights, entry (o, j) of a layer's matrix counts the taps of o reading j
    product = None
    for g in layers:
        M = conv_matrix(np.ones(g.weight_shape), g.input_shape, stride=g.stride,
                        padding=g.padding, dilation=g.dilation, padding_mode=g.padding_mode)
        product = M if product is None else M @ product
    position = tuple(int(rng.integers(0, n)) for n in size)
    row = np.ravel_multi_index(position, size)
    counts = receptive_field_paths(layers, position)
    np.testing.assert_array_equal(counts.ravel(), product.toarray()[row], err_msg=str(layers))
    mats = [conv_matrix(np.ones(g.weight_shape), g.input_shape, stride=g.stride,
                        padding=g.padding, dilation=g.dilation, padding_mode=g.padding_mode)
            for g in layers]
    reached = receptive_field(mats, layers[0].input_shape, row)
    np.testing.assert_array_equal(reached[0], counts > 0)


def test_receptive_field_size_cases():
    assert receptive_field_size([3, 3]) == 5
    assert receptive_field_size([(3, 3)] * 2) == (5, 5)
    assert receptive_field_size([3] * 3) == 7
    assert receptive_field_size([3, 3, 3], dilation=[1, 2, 4]) == 15
    assert receptive_field_size([2, 2, 2], stride=[2, 2, 2]) == 8
    assert receptive_field_size([(7, 1), (3, 3)], stride=[(2, 1), 1]) == (11, 3)
    # a review: ints in kernel_size repeat over the axes a stride or dilation tuple gives
    assert receptive_field_size([3, 3], stride=[(2, 1), 1]) == (7, 5)
    assert receptive_field_size([3, 3], dilation=[1, (1, 2)]) == (5, 7)
    # integer arrays as the lists they hold, an int or a row a layer (a new user's trial)
    assert receptive_field_size(np.array([3, 3])) == 5
    assert receptive_field_size(np.array([[7, 1], [3, 3]]), stride=np.array([[2, 1], [1, 1]]),
                                dilation=np.array([1, 1])) == (11, 3)
    with pytest.raises(TypeError, match="kernel_size must be a non-empty sequence"):
        receptive_field_size(np.array([3.0, 3.0]))  # floats are no sizes


def test_receptive_field_size_rejects():
    with pytest.raises(ValueError, match="non-empty sequence"):
        receptive_field_size([])
    with pytest.raises(ValueError, match="one entry a layer"):
        receptive_field_size([3, 3], stride=[2])
    with pytest.raises(ValueError, match=r"kernel_size\[1\]"):
        receptive_field_size([3, 0])
    with pytest.raises(ValueError, match=r"dilation\[0\]"):
        receptive_field_size([(3, 3)], dilation=[(1, 1, 1)])


def test_path_counts_beyond_int64_are_refused_or_counted_in_float64():
    """A review: 22 plain 3x3 layers wrapped int64 around, to negative counts."""
    def exact(layers):  # the centre's count, in Python integers: [1, 1, 1] convolved
        counts = [1]
        for _ in range(layers):
            counts = [sum(counts[j] for j in (i - 2, i - 1, i) if 0 <= j < len(counts))
                      for i in range(len(counts) + 2)]
        return counts[layers] ** 2  # two axes

    g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 64, 64), padding=1)
    within = receptive_field_paths([g] * 21, (32, 32))
    assert within.dtype == np.int64 and int(within[32, 32]) == exact(21) < 2**63
    assert exact(22) >= 2**63
    with pytest.raises(ValueError, match=r"path counts exceed int64 at layer 0 of 22 \(about "
                                         r"1\.05e\+19 paths\); pass dtype=numpy\.float64"):
        receptive_field_paths([g] * 22, (32, 32))
    rounded = receptive_field_paths([g] * 22, (32, 32), dtype=np.float64)
    assert rounded.dtype == np.float64 and (rounded >= 0).all()
    assert rounded[32, 32] == pytest.approx(exact(22), rel=1e-14)


def test_a_tuple_of_the_wrong_length_is_named_as_such():
    """(A new user's trial: position (1, 1) of a 1-D stack said "must be an integer >= 0",
    and stride (2, 2) of 1-D kernels "must be a positive integer".)"""
    from sparseconv import compose_kernels

    g = ConvGeometry.from_weight((1, 1, 3), (1, 8))
    with pytest.raises(ValueError, match=r"^position has 2 values for 1 axis: it must be an "
                                         r"integer >= 0, got \(1, 1\)$"):
        receptive_field_paths([g], (1, 1))
    w = np.ones((1, 1, 3))
    with pytest.raises(ValueError, match=r"^stride\[0\] has 2 values for 1 axis: it must be a "
                                         r"positive integer, got \(2, 2\)$"):
        compose_kernels(w, w, stride=[(2, 2), 1])


def _exact_paths(k: int, depth: int) -> list[int]:
    """Coefficients of ``(1 + z + ... + z**(k-1))**depth``, in Python integers."""
    poly = [1]
    for _ in range(depth):
        nxt = [0] * (len(poly) + k - 1)
        for i, a in enumerate(poly):
            for j in range(k):
                nxt[i + j] += a
        poly = nxt
    return poly


def test_path_counts_just_past_int64_are_refused_not_wrapped():
    """A mutant this catches: _receptive_field.py: ``largest >= 2.0**63 * (1 - 1e-9)`` ->
    ``largest > 2.0**64`` (counts between 2**63 and 2**64 wrapped silently in int64).
    Twenty-nine 5-tap layers: the largest count is 1.05 * 2**63 (exact Python integers)."""
    geom = sc.ConvGeometry.from_weight((1, 1, 5), (1, 121), padding=2)
    exact = _exact_paths(5, 29)
    assert 2**63 < max(exact) < 2**64
    with pytest.raises(ValueError, match="exceed int64"):
        sc.receptive_field_paths([geom] * 29)
    rounded = sc.receptive_field_paths([geom] * 29, dtype=np.float64)
    np.testing.assert_allclose(rounded[2:-2], np.array(exact, dtype=np.float64), rtol=1e-12)
    counted = sc.receptive_field_paths([geom] * 28)  # below the limit: exact, not refused
    assert counted[4:-4].tolist() == _exact_paths(5, 28)


@requires_torch
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_receptive_field_is_autograds_support(layout):
    """Mutants this catches: _receptive_field.py: ``np.ones(pattern.nnz)`` ->
    ``pattern.data`` (a negative weight hid the unit's inputs), ``pattern.T @ reached`` ->
    ``pattern @ reached`` (the forward reach: wrong for one-sided padding),
    ``np.moveaxis(field, -1, 0)`` -> ``np.moveaxis(field, 0, -1)`` (channels_last with two
    spatial axes), the tuple index raveled channels first for a channels_last matrix.
    Oracle: the nonzero pattern of the gradient of one output with respect to the input."""
    rng = np.random.default_rng(12)
    c0, c1, c2, size = 2, 3, 2, (7, 6)
    w1 = rng.uniform(0.5, 1.5, (c1, c0, 2, 3)) * rng.choice([-1.0, 1.0], (c1, c0, 2, 3))
    w2 = -rng.uniform(0.5, 1.5, (c2, c1, 3, 1))  # all negative: no cancellation, all signs
    A1 = sc.conv_matrix(w1, (c0, *size), padding=((2, 0), (0, 1)), layout=layout)
    mid = sc.ConvGeometry.from_weight(w1.shape, (c0, *size), padding=((2, 0), (0, 1)))
    A2 = sc.conv_matrix(w2, mid.output_shape, stride=(2, 1), dilation=(1, 2), layout=layout)
    out = sc.ConvGeometry.from_weight(w2.shape, mid.output_shape, stride=(2, 1),
                                      dilation=(1, 2)).output_shape
    x = torch.zeros((1, c0, *size), dtype=torch.float64, requires_grad=True)
    h = F.conv2d(F.pad(x, (0, 1, 2, 0)), torch.from_numpy(w1))
    y = F.conv2d(h, torch.from_numpy(w2), stride=(2, 1), dilation=(1, 2))
    assert tuple(y.shape[1:]) == out
    for index in [(0, 0, 0), (1, out[1] - 1, out[2] - 1), (1, 1, 2)]:
        x.grad = None
        y[(0, *index)].backward(retain_graph=True)
        expected = x.grad[0].numpy() != 0
        field = sc.receptive_field([A1, A2], (c0, *size), index, output_shape=out, layout=layout)
        assert field.shape == (c0, *size)
        np.testing.assert_array_equal(field, expected, err_msg=str(index))


def test_receptive_field_paths_default_is_the_center_of_an_even_output():
    """A mutant this catches: _receptive_field.py: the default position ``n // 2`` ->
    ``(n - 1) // 2`` (on an even output: the documented centre moved by one). Checked
    against the explicit position (n // 2, n // 2) and a hand count."""
    g = sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 6, 8), padding=1)
    default = sc.receptive_field_paths([g, g])
    np.testing.assert_array_equal(default, sc.receptive_field_paths([g, g], (3, 4)))
    tri = np.array([1, 2, 3, 2, 1])
    expected = np.zeros((6, 8), np.int64)
    expected[1:6, 2:7] = np.outer(tri, tri)
    np.testing.assert_array_equal(default, expected)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_receptive_field_takes_operators(layout):
    """A new user's trial: receptive_field refused a ConvOperator (spy and compose take
    one). An operator counts by its explicit matrix: the same field as the chain of
    conv_matrix and conv_transpose_matrix; an operator of the other layout is refused by
    name."""
    rng = np.random.default_rng(4)
    w1, w2 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2, 2, 2))
    first = sc.ConvOperator(w1, (2, 7, 7), stride=2, padding=1, layout=layout)
    second = sc.ConvTransposeOperator(w2, (3, 4, 4), stride=2, layout=layout)
    matrices = [conv_matrix(w1, (2, 7, 7), stride=2, padding=1, layout=layout),
                sc.conv_transpose_matrix(w2, (3, 4, 4), stride=2, layout=layout)]
    for index in [(0, 3, 4), (1, 0, 7), (1, 5, 2)]:
        expected = receptive_field(matrices, (2, 7, 7), index, (2, 8, 8), layout=layout)
        field = receptive_field([first, second], (2, 7, 7), index, (2, 8, 8), layout=layout)
        assert np.array_equal(field, expected) and 0 < field.sum() < field.size, index
    other = "channels_last" if layout == "channels_first" else "channels_first"
    with pytest.raises(ValueError, match=rf"layers\[1\] is a {layout} operator, but "
                                         rf"layout='{other}'"):
        receptive_field([matrices[0], second], (2, 7, 7), 0, layout=other)


def test_receptive_field_size_reads_one_dimensional_arrays_per_axis():
    """A review: per-layer 1-D arrays were refused ("kernel_size[0] has 2 values for 1
    axis"), where tuples and a 2-D array were read; a layer's 1-element array gave an int."""
    a = np.array
    expected = sc.receptive_field_size([(3, 5), (3, 5)], stride=[(2, 1), 1])
    assert expected == (7, 9)
    assert sc.receptive_field_size([a([3, 5]), a([3, 5])], stride=[a([2, 1]), 1]) == expected
    assert sc.receptive_field_size([a([3, 5]), a([3, 5])], stride=[(2, 1), 1]) == expected
    assert sc.receptive_field_size([a([3]), a([5])]) == (7,)
    assert sc.receptive_field_size([3, 5]) == 7
