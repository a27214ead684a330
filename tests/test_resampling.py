"""adaptive_avg_pool_matrix, interpolate_matrix and pixel_(un)shuffle_matrix against PyTorch's
F.adaptive_avg_pool{1,2,3}d, F.interpolate and F.pixel_(un)shuffle, on seeded random sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparseconv
import sparseconv as sc
from sparseconv import (
    adaptive_avg_pool_matrix,
    interpolate_matrix,
    pixel_shuffle_matrix,
    pixel_unshuffle_matrix,
)

from ._oracles import F, assert_close, requires_torch, torch

LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _apply(matrix, x):
    return matrix @ x.ravel()


@requires_torch
@pytest.mark.parametrize("seed", range(60))
def test_adaptive_avg_pool_matches_torch(seed):
    """Output sizes below, equal to and above the input's: overlapping windows of different
    sizes, and repeated inputs."""
    rng = np.random.default_rng(seed)
    ndim = 1 + seed % 3
    size = tuple(int(n) for n in rng.integers(1, 10 if ndim < 3 else 6, ndim))
    out = tuple(int(m) for m in rng.integers(1, 10 if ndim < 3 else 6, ndim))
    none = seed % 5 == 0 and ndim > 1  # adaptive_avg_pool1d takes no None
    output_size = tuple(None if none and i == 0 else m for i, m in enumerate(out))
    x = rng.standard_normal((1, 2, *size))
    a = adaptive_avg_pool_matrix((2, *size), output_size)
    y = getattr(F, f"adaptive_avg_pool{ndim}d")(torch.from_numpy(x), output_size).numpy()
    config = dict(size=size, output_size=output_size)
    assert a.shape == (y.size, x.size), config
    assert_close(_apply(a, x), y.ravel(), config)


def _interpolation(rng, ndim):
    """Random arguments for F.interpolate: a size or a scale factor (per axis or one),
    every mode PyTorch has for the rank, both align_corners."""
    mode = str(rng.choice(["nearest", "nearest-exact", "area", LINEAR[ndim], LINEAR[ndim],
                           *(["bicubic"] * 2 if ndim == 2 else [])]))
    size = tuple(int(n) for n in rng.integers(1, 9 if ndim < 3 else 5, ndim))
    kwargs: dict = {"mode": mode}
    if mode in (LINEAR[ndim], "bicubic"):
        kwargs["align_corners"] = bool(rng.integers(2))
    if rng.integers(2):
        kwargs["size"] = tuple(int(m) for m in rng.integers(1, 13 if ndim < 3 else 7, ndim))
    else:
        factors = rng.choice([0.5, 0.7, 1.0, 1.3, 1.5, 2.0, 2.1, 2.5, 3.0, 1 / 3], ndim)
        factors = tuple(float(f) for f in factors)
        kwargs["scale_factor"] = factors[0] if rng.integers(2) else factors
        if rng.integers(3) == 0:
            kwargs["recompute_scale_factor"] = bool(rng.integers(2))
    return size, kwargs


@requires_torch
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_interpolate_matches_torch(ndim):
    rng = np.random.default_rng(ndim)
    checked = 0
    for _ in range(400):
        size, kwargs = _interpolation(rng, ndim)
        x = torch.from_numpy(rng.standard_normal((1, 2, *size)))
        try:
            y = F.interpolate(x, **kwargs).numpy()
        except (RuntimeError, ValueError):  # an empty output, refused by PyTorch
            y = np.empty(0)
        if y.size == 0:  # refused, or an empty tensor: we refuse an empty output
            with pytest.raises(ValueError, match="empty output"):
                interpolate_matrix((2, *size), **kwargs)
            continue
        try:
            a = interpolate_matrix((2, *size), **kwargs)
        except ValueError as error:  # a 2-D case where PyTorch's own kernels disagree
            assert ndim == 2 and kwargs["mode"] == "nearest" and "disagree" in str(error)
            continue
        config = dict(size_in=size, **kwargs)
        assert a.shape == (y.size, x.numel()), config
        assert_close(_apply(a, x.numpy()), y.ravel(), config)
        # no zero stored: each entry is a read the output depends on (a new user's trial:
        # a sample on an input position stored its neighbour's weight 0)
        assert a.data.all(), config
        checked += 1
        if checked == 150:
            break
    assert checked == 150


@requires_torch
def test_antialiased_interpolation_matches_torch():
    """antialias=True (bilinear, bicubic) and mode="lanczos": PyTorch's stretched filters,
    downsampling by up to 7x and upsampling, sizes and scale factors, both align_corners."""
    rng = np.random.default_rng(7)
    refused = checked = 0
    for _ in range(300):
        mode = str(rng.choice(["bilinear", "bicubic", "lanczos"]))
        size = tuple(int(n) for n in rng.integers(1, 22, 2))
        kwargs: dict = {"mode": mode, "antialias": True}
        if rng.integers(2):
            kwargs["align_corners"] = mode != "lanczos" and bool(rng.integers(2))
        if rng.integers(2):
            kwargs["size"] = tuple(int(m) for m in rng.integers(1, 14, 2))
        else:
            # (1.1 on 4 to 9 inputs keeps the size: PyTorch copies the axis, a review found
            # it filtered with scale 1 / 1.1)
            factors = rng.choice([1 / 7, 0.2, 0.3, 0.5, 0.77, 1.0, 1.1, 1.5, 2.0], 2)
            kwargs["scale_factor"] = tuple(float(f) for f in factors)
            if max(math.floor(n * f) for n, f in zip(size, factors)) < 1 or min(
                    math.floor(n * f) for n, f in zip(size, factors)) < 1:
                continue
            if rng.integers(3) == 0:
                kwargs["recompute_scale_factor"] = bool(rng.integers(2))
        x = torch.from_numpy(rng.standard_normal((1, 3, *size)))
        y = F.interpolate(x, **kwargs).numpy()
        if y.shape[3] == 1 and size[0] > 1 and y.shape[2] not in (1, size[0]):  # PyTorch
            with pytest.raises(ValueError, match="first row's weights"):
                interpolate_matrix((3, *size), **kwargs)
            refused += 1
            continue
        a = interpolate_matrix((3, *size), **kwargs)
        config = dict(size_in=size, **kwargs)
        assert a.shape == (y.size, x.numel()), config
        assert_close(_apply(a, x.numpy()), y.ravel(), config)
        checked += 1
    assert checked > 200 and refused > 0, (checked, refused)


@requires_torch
def test_antialias_to_a_width_of_one_is_refused_where_torch_leaves_its_filter():
    """PyTorch 2.13's CPU kernel, resizing 7 rows to 3 over a width of 1, gives the three
    outputs the same weights (the first row's); a height kept, or one input row, follows
    the filter and is built."""
    eye = torch.eye(7, dtype=torch.float64).reshape(7, 1, 7, 1)
    theirs = F.interpolate(eye, size=(3, 1), mode="bilinear", antialias=True)
    rows = theirs.reshape(7, 3).T.numpy()
    assert np.allclose(rows, rows[0])  # (if this fails, PyTorch has changed: lift the refusal)
    with pytest.raises(ValueError, match=r"\(7 -> 3\).*first row's weights"):
        interpolate_matrix((1, 7, 1), size=(3, 1), mode="bilinear", antialias=True)
    for size, out in (((7, 4), (7, 1)), ((1, 4), (3, 1)), ((7, 4), (1, 1)), ((7, 4), (3, 2))):
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 2, *size)))
        y = F.interpolate(x, size=out, mode="bicubic", antialias=True).numpy()
        a = interpolate_matrix((2, *size), size=out, mode="bicubic", antialias=True)
        assert_close(_apply(a, x.numpy()), y.ravel(), (size, out))


@requires_torch
def test_2d_nearest_refuses_where_torchs_kernels_disagree():
    """10 -> 20 rows at scale_factor 2.06: PyTorch halves the index (its shortcut for a doubled
    axis) on some widths and rounds o / 2.06 on others; ``size=`` says which is meant."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 2, 10, 37)))
    with pytest.raises(ValueError, match=r"scale_factor=2\.06 maps 10 inputs to 20.*size=20"):
        interpolate_matrix((2, 10, 37), scale_factor=(2.06, 3.25))
    y = F.interpolate(x, size=(20, 120)).numpy()
    a = interpolate_matrix((2, 10, 37), size=(20, 120))
    assert_close(_apply(a, x.numpy()), y.ravel(), "size=(20, 120)")
    # an exact factor of 2 is unambiguous
    y = F.interpolate(x, scale_factor=(2.0, 3.25)).numpy()
    a = interpolate_matrix((2, 10, 37), scale_factor=(2.0, 3.25))
    assert_close(_apply(a, x.numpy()), y.ravel(), "scale_factor=(2.0, 3.25)")


@requires_torch
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_2d_nearest_indices_are_those_of_torchs_float32_kernels(mode):
    """Long axes, awkward factors (3.7, 2.3, 2.7), sizes, widths, channels and both memory
    formats: the matrix reads what PyTorch's float32 kernels read (its float64 kernels round
    ``o * scale`` in float64 at such factors: output 111 of 35 rows at 3.7 reads row 30 there,
    29 here and in float32, which a review took for a wrong index)."""
    rng = np.random.default_rng(5)
    for trial in range(80):
        n, width, channels = (int(rng.integers(20, 160)), int(rng.integers(1, 17)),
                              int(rng.integers(1, 5)))
        factor = float(rng.choice([3.7, 2.3, 2.7, 0.5, 1.5, rng.uniform(0.3, 4.0)]))
        kwargs = dict(scale_factor=(factor, 1.0)) if trial % 3 else dict(
            size=(max(1, int(n * factor)), width))
        x = torch.arange(float(n * width * channels), dtype=torch.float32).reshape(
            1, channels, n, width)
        if trial % 2:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            a = interpolate_matrix((channels, n, width), mode=mode, **kwargs)
        except ValueError as error:  # the doubled-axis shortcut, or an ambiguous tie
            assert "disagree" in str(error) or "rounding of a whole number" in str(error), error
            continue
        y = F.interpolate(x, mode=mode, **kwargs).double().numpy().ravel()
        assert np.array_equal(a @ x.double().numpy().ravel(), y), (n, width, kwargs)
    if mode == "nearest":  # float32's row, where float64's is 30
        assert interpolate_matrix((1, 35, 1), scale_factor=(3.7, 1.0)).indices[111] == 29
    else:  # output 53 of 5 rows at 53.5: PyTorch's 2-D kernel reads row 1 (the fused
        # multiply-add's rounding) where floorf((o + 0.5) * scale) reads row 0, which it
        # reads at other sizes (test_2d_nearest_exact_is_torchs_or_refused_...): refused
        x = torch.arange(15.0).reshape(1, 1, 5, 3)
        for memory_format in (torch.contiguous_format, torch.channels_last):
            y = F.interpolate(x.contiguous(memory_format=memory_format), mode=mode,
                              scale_factor=(53.5, 1.0))
            assert y[0, 0, 53, 0] == 3.0
        with pytest.raises(ValueError, match="output 53's source index"):
            interpolate_matrix((1, 5, 3), mode=mode, scale_factor=(53.5, 1.0))


@requires_torch
def test_2d_nearest_exact_is_torchs_or_refused_on_its_ambiguous_ties():
    """A hunt: 2 rows to 41 (and (2, 112) to (109, 16), 16 outputs wrong by up to 2.6) read
    input 1 at output 20, where PyTorch's 2-D kernel reads input 0; 8 rows to 164, whose
    float32 scale and source index are the same, read input 1 there. Where the two roundings
    differ, the matrix is refused; everywhere else it is PyTorch's, on both axes."""
    for size in ((41, 1), (109, 16)):
        with pytest.raises(ValueError, match=r"mode='nearest-exact' maps 2 inputs to "
                                             rf"{size[0]} outputs .* output \d+'s source"):
            interpolate_matrix((1, 2, size[1] if size[1] == 1 else 112), size=size,
                               mode="nearest-exact")
    built = refused = 0
    for n in range(1, 25):
        for m in range(1, 180, 2 if n % 2 else 1):
            for axis in (0, 1):
                shape, size = [1, 1], [1, 1]
                shape[axis], size[axis] = n, m
                x = torch.arange(float(n), dtype=torch.float32).reshape(1, 1, *shape)
                try:
                    a = interpolate_matrix((1, *shape), size=tuple(size), mode="nearest-exact")
                except ValueError:
                    refused += 1
                    continue
                built += 1
                y = F.interpolate(x, size=tuple(size), mode="nearest-exact")
                assert np.array_equal(a @ x.double().numpy().ravel(),
                                      y.double().numpy().ravel()), (n, m, axis)
    assert refused < built // 100


@requires_torch
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
@pytest.mark.parametrize("ndim", [1, 3])
def test_nearest_indices_follow_torchs_float32_rounding(mode, ndim):
    """Long axes and awkward factors, where the float32 rounding of ``o * scale`` decides the
    source index (81 / 2.7 is 30, rounded to float32 from just below), against PyTorch's
    float32 kernels, its default dtype: the product of a float32 index and a float32 scale.
    (A review found 1-D and 3-D axes rounding a double product instead, as PyTorch's float64
    kernels do: 18 inputs at 2.3 in nearest-exact read input 15 at output 34 where float32
    reads 14, 26 at 3.96 in nearest read 25 at output 99 where it reads 24, and 3-D factors
    within 1e-4 of 2 read other rows. Rounding nearest-exact's product before its subtraction,
    where PyTorch's kernel fuses them, reads 0 at output 53 of 6 inputs at 53.5, not 1.)"""
    lead = (1,) * (ndim - 1)
    cases = [(1000, 1.1), (997, 0.3), (1234, 2.7), (77, 1 / 3), (300, 3.0001),
             (294, 35 / 294), (6, 321 / 6), (18, 2.3), (26, 3.96), (38, 2.7), (11, 2.0000001),
             (8, 1.9999)]
    for n, factor in cases:
        x = torch.arange(float(n), dtype=torch.float32).reshape(1, 1, *lead, n)
        for kwargs in (dict(scale_factor=(1.0,) * (ndim - 1) + (factor,)),
                       dict(size=(*lead, int(n * factor) + 1))):
            y = F.interpolate(x, mode=mode, **kwargs).double().numpy().ravel()
            a = interpolate_matrix((1, *lead, n), mode=mode, **kwargs)
            assert np.array_equal(a @ x.double().numpy().ravel(), y), (n, kwargs)
    # a seeded sweep of short axes and factors with one to three decimals, every axis scaled
    rng = np.random.default_rng(7 + ndim)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(3, 30 if ndim == 1 else 9, ndim))
        factor = tuple(float(np.round(rng.uniform(0.5, 60 if ndim == 1 else 4.5),
                                      int(rng.integers(1, 4)))) for _ in range(ndim))
        x = torch.arange(float(np.prod(shape)), dtype=torch.float32).reshape(1, 1, *shape)
        y = F.interpolate(x, mode=mode, scale_factor=factor).double().numpy().ravel()
        a = interpolate_matrix((1, *shape), mode=mode, scale_factor=factor)
        assert np.array_equal(a @ x.double().numpy().ravel(), y), (shape, factor)


@requires_torch
@pytest.mark.parametrize("r", [1, 2, 3])
def test_pixel_shuffle_and_unshuffle_match_torch(r):
    rng = np.random.default_rng(r)
    x = rng.standard_normal((1, 2 * r * r, 3, 2))
    a = pixel_shuffle_matrix(x.shape[1:], r)
    y = F.pixel_shuffle(torch.from_numpy(x), r).numpy()
    assert_close(_apply(a, x), y.ravel(), r)
    b = pixel_unshuffle_matrix(y.shape[1:], r, format="csc")
    assert_close(_apply(b, y), x.ravel(), r)
    z = F.pixel_unshuffle(torch.from_numpy(y), r).numpy()
    assert b.format == "csc" and np.array_equal(_apply(b, y), z.ravel())
    assert_close(b @ a, np.eye(x.size), r)


def test_formats_and_dtypes():
    a = interpolate_matrix((2, 3, 3), scale_factor=2, mode="bilinear", format="coo",
                           dtype=np.float32)
    assert a.format == "coo" and a.dtype == np.float32 and a.shape == (72, 18)
    b = adaptive_avg_pool_matrix((2, 5), 3, format="csc")
    assert b.format == "csc" and b.dtype == np.float64
    # every row of a resampling matrix is a weighted mean: its weights sum to 1
    for m in (a, b, interpolate_matrix((1, 4, 5), size=(7, 3), mode="nearest-exact")):
        assert_close(np.asarray(m.sum(axis=1)).ravel(), np.ones(m.shape[0]), m.shape, 1e-6)


BAD = [
    (interpolate_matrix, dict(input_shape=(1, 4)), ValueError, "exactly one of size"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, scale_factor=2), ValueError,
     "exactly one"),
    (interpolate_matrix, dict(input_shape=(1, 4), scale_factor=0.1), ValueError, "empty"),
    (interpolate_matrix, dict(input_shape=(1, 4), scale_factor=-1.0), ValueError,
     "scale_factor"),
    (interpolate_matrix, dict(input_shape=(1, 4), scale_factor="2"), TypeError, "scale_factor"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, mode="bilinear"), ValueError,
     "2 spatial axes"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, mode="bicubic"), ValueError, "mode"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, align_corners=True), ValueError,
     "align_corners"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, mode="linear", align_corners=1),
     TypeError, "align_corners"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, recompute_scale_factor=True),
     ValueError, "recompute_scale_factor"),
    (interpolate_matrix, dict(input_shape=(4,), size=2), ValueError, "input_shape"),
    # PyTorch's refusals: antialias outside its modes, lanczos without it or aligned
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, mode="linear", antialias=True),
     ValueError, "antialias=True applies to the modes"),
    (interpolate_matrix, dict(input_shape=(1, 4, 4), size=2, antialias=True), ValueError,
     "antialias=True applies to the modes"),
    (interpolate_matrix, dict(input_shape=(1, 4, 4), size=2, mode="lanczos"), ValueError,
     "needs antialias=True"),
    (interpolate_matrix, dict(input_shape=(1, 4, 4), size=2, mode="lanczos", antialias=True,
                              align_corners=True), ValueError, "align_corners=True"),
    (interpolate_matrix, dict(input_shape=(1, 4), size=2, mode="lanczos", antialias=True),
     ValueError, "2 spatial axes"),
    (interpolate_matrix, dict(input_shape=(1, 4, 4), size=2, mode="bilinear", antialias=1),
     TypeError, "antialias"),
    (adaptive_avg_pool_matrix, dict(input_shape=(1, 4), output_size=0), ValueError,
     "output_size"),
    (adaptive_avg_pool_matrix, dict(input_shape=(1, 4), output_size=(2, 2)), ValueError,
     "output_size"),
    # (a new user's trial: "or a tuple of 1 of them, got 0" for a 2-D output_size entry)
    (adaptive_avg_pool_matrix, dict(input_shape=(1, 4, 4), output_size=(0, 2)), ValueError,
     r"^output_size\[0\] must be a positive integer, got 0$"),
    (adaptive_avg_pool_matrix, dict(input_shape=(1, 4), output_size=2, format="dense"),
     ValueError, "format"),
    (pixel_shuffle_matrix, dict(input_shape=(3, 2, 2), upscale_factor=2), ValueError,
     "divisible"),
    (pixel_shuffle_matrix, dict(input_shape=(4, 2), upscale_factor=2), ValueError,
     "input_shape"),
    (pixel_unshuffle_matrix, dict(input_shape=(1, 3, 2), downscale_factor=2), ValueError,
     "divisible"),
    (pixel_unshuffle_matrix, dict(input_shape=(1, 2, 2), downscale_factor=0), ValueError,
     "downscale_factor"),
]


@pytest.mark.parametrize("function, kwargs, error, match", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_refused_by_name(function, kwargs, error, match):
    with pytest.raises(error, match=match):
        function(**kwargs)


def test_memory_limit_is_checked_before_building():
    old = sparseconv.set_memory_limit(10_000)
    try:
        # no advice to use ConvOperator, which computes no interpolation: a larger limit
        for build, name in ((lambda: interpolate_matrix((4, 64, 64), scale_factor=2,
                                                        mode="bilinear"), "interpolate_matrix"),
                            (lambda: pixel_shuffle_matrix((16, 64, 64), 2),
                             "pixel_shuffle_matrix")):
            with pytest.raises(sparseconv.MatrixTooLargeError,
                               match=f"{name}.*; raise the limit") as info:
                build()
            assert "ConvOperator" not in str(info.value)
    finally:
        sparseconv.set_memory_limit(old)


def test_an_integer_dtype_is_refused_where_it_would_truncate_the_weights():
    """adaptive pooling and linear interpolation in dtype=int were all zeros (1/2 and 1/3
    truncated, without a word); nearest neighbours and exact copies hold in any dtype."""
    with pytest.raises(TypeError, match=r"dtype=int64 would change adaptive_avg_pool_matrix's "
                                        r"entries \(0\.5 at index"):
        sparseconv.adaptive_avg_pool_matrix((1, 5), 3, dtype=np.int64)
    with pytest.raises(TypeError, match="dtype=bool would change interpolate_matrix's entries"):
        sparseconv.interpolate_matrix((1, 4), size=6, mode="linear", dtype=bool)
    for build in (lambda dtype: sparseconv.adaptive_avg_pool_matrix((1, 5), 5, dtype=dtype),
                  lambda dtype: sparseconv.interpolate_matrix((1, 4), size=8, dtype=dtype)):
        exact = build(np.int8)
        assert exact.dtype == np.int8 and abs(exact.astype(float) - build(np.float64)).max() == 0


@requires_torch
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_a_source_float32_rounds_up_to_a_whole_number(mode):
    """ATen floors the source coordinate after rounding it to float32 (floorf): output 2's
    source 1 - 1e-8 reads input 1 with a fraction of 0, where a float64 floor read input 0
    with a fraction of about 1 (a review: 2.2e-8 off here, 2.6e-3 on a 60000-wide axis)."""
    factor = 2.5 / (1.5 - 1e-8)
    x = torch.tensor([[[[1.0, 2.0, 4.0, 8.0]]]], dtype=torch.float64)
    y = F.interpolate(x, scale_factor=(1.0, factor), mode=mode).numpy()
    a = interpolate_matrix((1, 1, 4), scale_factor=(1.0, factor), mode=mode)
    assert_close(_apply(a, x.numpy()), y.ravel(), mode, rtol=1e-14)


@requires_torch
def test_pixel_shuffle_and_unshuffle_are_torchs_on_rectangles():
    """Mutants this catches: _pixel_shuffle.py: the transposes' two factor axes swapped
    (``(0, 3, 2, 4, 1)``, ``(0, 4, 2, 1, 3)``), the positions read transposed, the dtype
    not the one asked for. Oracle: ``F.pixel_shuffle`` / ``F.pixel_unshuffle`` on
    non-square images, factor 3."""
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2 * 9, 2, 4))
    P = sc.pixel_shuffle_matrix(x.shape, 3, dtype=np.float32)
    assert P.dtype == np.float32
    ref = F.pixel_shuffle(torch.from_numpy(x)[None], 3)[0].numpy()
    np.testing.assert_array_equal(P.astype(np.float64) @ x.ravel(), ref.ravel())
    z = rng.standard_normal((2, 6, 12))
    U = sc.pixel_unshuffle_matrix(z.shape, 3, dtype=np.float32)
    assert U.dtype == np.float32
    ref = F.pixel_unshuffle(torch.from_numpy(z)[None], 3)[0].numpy()
    np.testing.assert_array_equal(U.astype(np.float64) @ z.ravel(), ref.ravel())


def test_pixel_shuffle_refuses_shapes_by_their_rule():
    """Mutants this catches: _pixel_shuffle.py: ``c % (r * r)`` -> ``c % r`` and ``h % r or
    w % r`` -> ``h % r`` (numpy's reshape error instead of the documented rule)."""
    with pytest.raises(ValueError, match="divisible by upscale_factor"):
        sc.pixel_shuffle_matrix((2, 3, 3), 2)
    with pytest.raises(ValueError, match="divisible by downscale_factor"):
        sc.pixel_unshuffle_matrix((1, 4, 3), 2)
