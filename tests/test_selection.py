"""The selection matrices (im2col, padding, stride) against PyTorch, numpy and conv_matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv
from sparseconv import conv_matrix, im2col_matrix, pad_matrix, stride_matrix

from ._oracles import (
    NP_PAD_MODE,
    F,
    assert_close,
    per_side,
    random_layer,
    requires_torch,
    torch,
    torch_conv,
)


def groups_one(layer):
    """The same layer with groups=1 (a full weight), for identities PyTorch states that way."""
    c_out, c_in = layer.weight.shape[0], layer.input_shape[0]
    rng = np.random.default_rng(c_out * 7 + c_in)
    weight = rng.standard_normal((c_out, c_in, *layer.weight.shape[2:]))
    return weight, {**layer.kwargs, "groups": 1}


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_im2col_matches_unfold(seed):
    rng = np.random.default_rng(400 + seed)
    layer = random_layer(rng, ndim=2, padding_forms=("int", "tuple", "pairs", "valid"),
                         max_size=7)
    kw = layer.kwargs
    kernel = layer.weight.shape[2:]
    P = im2col_matrix(layer.input_shape, kernel, stride=kw["stride"], padding=kw["padding"],
                      dilation=kw["dilation"], padding_mode=kw["padding_mode"])
    x = rng.standard_normal(layer.input_shape)
    pads = per_side(kw["padding"], kernel, (kw["dilation"],) * 2 if isinstance(
        kw["dilation"], int) else kw["dilation"])
    padded = np.pad(x, [(0, 0), *pads], mode=NP_PAD_MODE[kw["padding_mode"]])
    patches = F.unfold(torch.from_numpy(padded[None]), kernel, dilation=kw["dilation"],
                       stride=kw["stride"])[0].numpy()
    assert P.shape[0] == patches.size, layer
    assert_close((P @ x.ravel()).reshape(patches.shape), patches, layer)
    if kw["padding_mode"] == "zeros" and not isinstance(kw["padding"], tuple):  # symmetric
        own = F.unfold(torch.from_numpy(x[None]), kernel, dilation=kw["dilation"],
                       padding=kw["padding"] if kw["padding"] != "valid" else 0,
                       stride=kw["stride"])[0].numpy()
        assert_close((P @ x.ravel()).reshape(own.shape), own, layer)


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_weight_times_patches_is_the_convolution(seed):
    rng = np.random.default_rng(500 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7 - seed % 3)
    weight, kw = groups_one(layer)
    args = {k: v for k, v in kw.items() if k != "groups"}
    P = im2col_matrix(layer.input_shape, weight.shape[2:], **args)
    x = rng.standard_normal(layer.input_shape)
    y = torch_conv(x[None], weight, **kw)[0]
    patches = (P @ x.ravel()).reshape(-1, y[0].size)
    assert_close(weight.reshape(weight.shape[0], -1) @ patches, y.reshape(y.shape[0], -1), layer)


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_pad_matrix_is_np_pad(mode):
    rng = np.random.default_rng(6)
    for _ in range(25):
        ndim = int(rng.integers(1, 4))
        shape = (int(rng.integers(1, 3)), *(int(n) for n in rng.integers(2, 6, ndim)))
        # PyTorch's limits: reflect pads less than the size, circular at most the size
        most = {"reflect": lambda n: n - 1, "circular": lambda n: n}.get(mode, lambda n: 3)
        pads = tuple(tuple(int(v) for v in rng.integers(0, most(n) + 1, 2)) for n in shape[1:])
        x = rng.standard_normal(shape)
        P = pad_matrix(shape, pads, mode)
        expected = np.pad(x, [(0, 0), *pads], mode=NP_PAD_MODE[mode])
        assert_close(P @ x.ravel(), expected.ravel(), (shape, pads, mode))
        assert P.nnz == (expected.size if mode != "zeros" else x.size)


@pytest.mark.parametrize("seed", range(40))
def test_padding_factorizes_the_convolution(seed):
    rng = np.random.default_rng(700 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7 - seed % 3)
    kw = dict(layer.kwargs)
    padding, mode = kw.pop("padding"), kw.pop("padding_mode")
    kernel, ndim = layer.weight.shape[2:], layer.weight.ndim - 2
    dilation = (kw["dilation"],) * ndim if isinstance(kw["dilation"], int) else kw["dilation"]
    pads = per_side(padding, kernel, dilation)
    padded = (layer.input_shape[0], *(n + lo + hi for n, (lo, hi) in
                                      zip(layer.input_shape[1:], pads)))
    P = pad_matrix(layer.input_shape, padding, mode, kernel_size=kernel, dilation=dilation)
    valid = conv_matrix(layer.weight, padded, **kw)
    assert_close(valid @ P, conv_matrix(layer.weight, layer.input_shape, **layer.kwargs), layer)


@pytest.mark.parametrize("seed", range(30))
def test_pad_and_im2col_with_flip_factorize_the_true_convolution(seed):
    """A new user's trial: conv_matrix(flip=True) splits "same" the other way for an even
    kernel (as scipy.signal.convolve does), and pad_matrix and im2col_matrix took no flip,
    so the factorizations were one pixel off. With flip=True both factor the true
    convolution, against scipy.signal.convolve(mode="same") (zeros, single channel) and
    conv_matrix (every mode, dilation, channels)."""
    import scipy.signal

    rng = np.random.default_rng(900 + seed)
    ndim = 1 + seed % 2
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))
    if seed < 10:  # an even kernel on some axis
        kernel = (2 * int(rng.integers(1, 3)), *kernel[1:])
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim)) if seed % 3 else (1,) * ndim
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    shape = (int(rng.integers(1, 3)), *(int(s + rng.integers(0, 4)) for s in span))
    mode = ("zeros", "circular", "reflect", "replicate")[seed % 4]
    c_out = int(rng.integers(1, 3))
    w = rng.standard_normal((c_out, shape[0], *kernel))
    x = rng.standard_normal(shape)
    layer = dict(padding="same", padding_mode=mode, dilation=dilation, flip=True)
    A = conv_matrix(w, shape, **layer)
    P = pad_matrix(shape, "same", mode, kernel_size=kernel, dilation=dilation, flip=True)
    geometry = sparseconv.ConvGeometry.from_weight(w.shape, shape, padding="same",
                                                    padding_mode=mode, dilation=dilation,
                                                    flip=True)
    padded_shape = (shape[0], *(a.padded_size for a in geometry.axes))
    assert_close(conv_matrix(w, padded_shape, dilation=dilation, flip=True) @ P, A, layer)
    Q = im2col_matrix(shape, kernel, padding="same", padding_mode=mode, dilation=dilation,
                      flip=True)
    flipped = np.flip(w, tuple(range(2, w.ndim))).reshape(c_out, -1)
    assert_close((flipped @ (Q @ x.ravel()).reshape(flipped.shape[1], -1)).ravel(),
                 A @ x.ravel(), layer)
    if mode == "zeros" and dilation == (1,) * ndim and shape[0] == c_out == 1:
        expected = scipy.signal.convolve(x[0], w[0, 0], mode="same")
        assert_close(A @ x.ravel(), expected.ravel(), layer)
        assert_close((flipped @ (Q @ x.ravel()).reshape(flipped.shape[1], -1)).ravel(),
                     expected.ravel(), layer)


@pytest.mark.parametrize("seed", range(40))
def test_stride_is_subsampling(seed):
    rng = np.random.default_rng(800 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - seed % 3)
    strided = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    unit = conv_matrix(layer.weight, layer.input_shape, **{**layer.kwargs, "stride": 1})
    unit_shape = (layer.weight.shape[0],
                  *unit_stride_output(layer.input_shape[1:], layer.weight.shape[2:], layer.kwargs))
    S = stride_matrix(unit_shape, layer.kwargs["stride"])
    assert_close(S @ unit, strided, layer)
    # S keeps every stride-th position: numpy slicing is the definition
    y = rng.standard_normal(unit_shape)
    step = layer.kwargs["stride"]
    step = (step,) * (len(unit_shape) - 1) if isinstance(step, int) else step
    assert_close(S @ y.ravel(), y[(slice(None), *(slice(None, None, s) for s in step))].ravel(),
                 layer)


def unit_stride_output(size, kernel, kwargs):
    """Stride-1 output size, PyTorch's formula written out here."""
    ndim = len(size)
    dil = kwargs["dilation"]
    dil = (dil,) * ndim if isinstance(dil, int) else dil
    pads = per_side(kwargs["padding"], kernel, dil)
    return tuple(n + lo + hi - d * (k - 1) for n, k, d, (lo, hi) in zip(size, kernel, dil, pads))


# -- formats and rejections --------------------------------------------------------------------
@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
def test_formats(format):
    built = [im2col_matrix((2, 4, 5), 3, format=format),
             pad_matrix((2, 4, 5), 1, format=format),
             stride_matrix((2, 4, 5), 2, format=format)]
    for matrix in built:
        assert isinstance(matrix, sp.sparray) and matrix.format == format


BAD = [
    (im2col_matrix, ((2, 5, 5), (3, 3, 3)), {}, ValueError, "kernel_size"),
    (im2col_matrix, ((2, 5, 5), 3), dict(stride=0), ValueError, "stride"),
    (im2col_matrix, ((2, 5, 5), 3), dict(padding_mode="mirror"), ValueError, "padding_mode"),
    (im2col_matrix, ((2,), 3), {}, ValueError, "input_shape"),
    (im2col_matrix, ((2, 5.0), 3), {}, TypeError, "input_shape"),
    (im2col_matrix, ((2, 2, 2), 3), {}, ValueError, "kernel_size"),
    (pad_matrix, ((2, 5), "same"), {}, ValueError, "kernel_size"),
    (pad_matrix, ((2, 5), -1), {}, ValueError, "padding"),
    (pad_matrix, ((2, 5), 5, "reflect"), {}, ValueError, "padding"),
    (stride_matrix, ((2, 5), (1, 2)), {}, ValueError, "stride"),
]


@pytest.mark.parametrize("fn, args, kwargs, error, match", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_rejects_bad_input(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_memory_limit_raises_before_allocating():
    old = sparseconv.set_memory_limit(10_000)
    try:
        for build in [lambda: im2col_matrix((1, 40, 40), 3),
                      lambda: pad_matrix((1, 40, 40), 1)]:
            with pytest.raises(sparseconv.MatrixTooLargeError, match="memory limit"):
                build()
        assert im2col_matrix((1, 4, 4), 3).nnz == 9 * 4  # small ones still build (valid)
    finally:
        sparseconv.set_memory_limit(old)


@pytest.mark.parametrize("build", [lambda: im2col_matrix((1, 10**5, 10**5), 3),
                                   lambda: pad_matrix((1, 8, 8), 10**9),
                                   lambda: stride_matrix((3, 10**5, 10**5), 1),
                                   lambda: im2col_matrix((1, 8), 3, padding=10**10)],
                         ids=["im2col", "pad", "stride", "im2col-padding"])
def test_huge_selections_are_refused_at_once(build):
    with pytest.raises(sparseconv.MatrixTooLargeError, match="GiB"):
        build()


@pytest.mark.parametrize("format", ["csr", "coo"])
def test_memory_limit_counts_the_gather_map_temporaries(format):
    """Just above the result's own arrays is not enough: the gather map's temporaries count."""
    P = im2col_matrix((2, 20, 20), 3, padding=1)
    alone = P.data.nbytes + P.indices.nbytes + P.indptr.nbytes
    old = sparseconv.set_memory_limit(alone)
    try:
        for build in (lambda: im2col_matrix((2, 20, 20), 3, padding=1, format=format),
                      lambda: pad_matrix((2, 20, 20), 20, format=format),
                      lambda: stride_matrix((2, 60, 60), 1, format=format)):
            with pytest.raises(sparseconv.MatrixTooLargeError, match="selection matrix"):
                build()
    finally:
        sparseconv.set_memory_limit(old)


@pytest.mark.parametrize("build", [im2col_matrix, pad_matrix, stride_matrix])
def test_float16_is_refused_by_name(build):
    with pytest.raises(TypeError, match="dtype=float16"):
        build((1, 6, 6), 2, dtype=np.float16)
    assert build((1, 6, 6), 2, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("build", [
    lambda: stride_matrix((1, 2**40, 2**40), 2**40),
    lambda: im2col_matrix((1, 2**40, 2**40), 1, stride=2**40),
], ids=["stride_matrix", "im2col_matrix"])
def test_a_selection_beyond_int64_columns_is_refused_by_name(build):
    """Found by tests/test_fuzz.py: one row of 2**80 columns passed the memory check, then
    overflowed numpy (OverflowError) instead of a ValueError naming input_shape."""
    with pytest.raises(ValueError, match="input_shape=.*int64 indices"):
        build()


def test_the_layer_arguments_are_keywords():
    """F.unfold(input, kernel_size, dilation, padding, stride) orders them otherwise: a
    positional 2 meant a stride here and a dilation there (shapes (81, 64) against (9, 16))."""
    with pytest.raises(TypeError, match="positional"):
        im2col_matrix((1, 8, 8), 3, 2)
