"""Every public entry point refuses bad input with a TypeError or ValueError that names the
argument, before any work (issue 10.2); numpy's integer scalars are accepted where ints are.

``SPECS`` gives, for every name in ``sparseconv.__all__``, a call with good arguments and the
kinds of bad value each parameter must refuse; ``ROWS`` is their product. A meta-test checks
that every public name has rows, so a new public function cannot be added without them.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc
import sparseconv.plot

W = np.ones((2, 2, 3, 3))  # a 2 -> 2 3x3 layer
SHAPE = (2, 8, 8)
HUGE = 2**63
NAN = float("nan")

# Bad values by kind of parameter (for 2-D layers). Every one must raise TypeError/ValueError.
# (a one-element tuple is PyTorch's value for every axis, accepted: test_validation.py)
# bytes are sequences of small ints to Python (a new user's trial: b"\x02" was a stride of 2)
BYTES = [b"\x02", bytearray(b"\x02\x02"), memoryview(b"\x02")]
POSITIVE = [0, -1, True, 1.5, "2", None, HUGE, np.float64(2.0), NAN, (1, 1, 1), (1, 0),
            (1, HUGE), [1, "a"], np.array([1.0, 2.0]), *BYTES]
NON_NEGATIVE = [-1, True, 1.5, "0", None, HUGE, (0, 0, 0), (0, -1), (0, HUGE), *BYTES]
SIZES = [8, (2, 8), (2, 8, 8, 8), (2, 0, 8), (2, -8, 8), (2, 8.0, 8), (2, True, 8), "2,8,8",
         None, (2, HUGE, 8), (), np.float64(8.0), (2, NAN, 8), np.zeros((2, 8, 8)),
         b"\x02\x08\x08", bytearray(b"\x02\x08\x08")]
SPATIAL = [(8,), (8, 8, 8), (8, 0), (8, -1), (8, 8.0), (8, True), "88", None, (8, HUGE), (),
           1.5, np.zeros((8, 8)), b"\x08\x08"]
# Selection and pooling matrices take any number of spatial dimensions.
ANY_RANK = [s for s in SIZES if not (isinstance(s, tuple) and s in ((2, 8), (2, 8, 8, 8)))]
ANY_SPATIAL = [s for s in SPATIAL if not (isinstance(s, tuple) and s in ((8,), (8, 8, 8)))]
WEIGHTS = ["w", None, np.float64(1.0), 1.0, np.ones((2, 2)), np.ones((2, 2, 0, 3)),
           [[["a"]]], np.array([[[object()]]]), np.ones((2, 2, 3, 3), dtype="datetime64[s]")]
NON_FINITE = [np.where(np.eye(3, dtype=bool), NAN, 1.0)[None, None].repeat(2, 0).repeat(2, 1),
              np.full((2, 2, 3, 3), np.inf)]
PADDINGS = [-1, 1.5, "half", (1, 1, 1), ((0, -1), (0, 0)), HUGE, True, ((0, HUGE), (0, 0)),
            [1, "a"], NAN, b"x", (b"\x01", 1)]
MODES = ["mirror", 1, None, ("zeros",), "Zeros", np.array(["zeros", "zeros"])]
METHODS = ["svd", 1, None]
FORMATS = ["dense", 1, None, np.array(["csr", "csc"])]  # (an array: numpy's truth-value error)
DTYPES = ["str", object, "not a dtype", np.float32(1.0)]  # (a value: np.dtype takes its type)
GROUPS = [0, -1, True, 1.5, "1", None, HUGE, np.float64(1.0)]
LAYOUTS = ["NHWC", "channels-last", None, 1, ("channels_last",)]
# blocksize applies to format="bsr" only: with the default format every value is refused
BLOCKSIZES = [(2, 2), (0, 1), 2, "2,2", (1.5, 1)]
# a 2 -> 2 3x3 transposed layer on 8x8 at stride 1 has one output size: (10, 10)
OUTPUT_SIZES = [0, -1, 1.5, "10", True, (10,), (10, 10, 10), (9, 10), (10, 11), HUGE, NAN,
                (10, HUGE)]
ROWS_BAD = [5, "0:5", [0, 5], slice(0, 10, 2), slice(0.0, 5), slice(True, 5), (0, 5)]



@dataclass
class Spec:
    """A public name: how to call it with good arguments, and its parameters' bad values."""

    call: object
    good: dict
    bad: dict = field(default_factory=dict)


def keyword_call(function, *positional):
    """``function`` called with ``positional`` arguments taken from the keywords by name."""
    def call(**kwargs):
        args = [kwargs.pop(name) for name in positional]
        return function(*args, **kwargs)
    return call


def layer_bad(stride=True, padding=True, groups=True, mode=True, dilation=True):
    bad = {}
    if stride:
        bad["stride"] = POSITIVE
    if padding:
        bad["padding"] = PADDINGS
    if dilation:
        bad["dilation"] = POSITIVE
    if groups:
        bad["groups"] = GROUPS
    if mode:
        bad["padding_mode"] = MODES
    return bad


A = sc.conv_matrix(np.ones((1, 1, 3, 3)), (1, 9, 9), padding=1)
G = sc.ConvGeometry.from_weight((1, 1, 3), (1, 5), padding=1)
PERIODIC = dict(padding=None, padding_mode="circular")
LAYERS = [W, [], "abc", None, [(W, None)], [(W, dict(dilatoin=2))], [(W, {}, {})],
          [(W, dict(stride=0))], [("abc", {})], [W, np.ones((3, 5, 3, 3))], [(W, [1])],
          [np.ones((2, 2))], [(W, dict(padding="half"))]]

def _npz(write) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


SAVED = _npz(lambda f: sc.save_layer(f, W, SHAPE, padding=1))  # a good save_layer file
PLAIN_NPZ = _npz(lambda f: sp.save_npz(f, A))  # scipy's: a matrix without a layer

SPECS = {
    "AffineMap": Spec(keyword_call(sc.AffineMap, "matrix", "bias"),
                      dict(matrix=A, bias=np.zeros(81)),
                      dict(matrix=[np.ones((81, 81)), None, "x", sp.csr_array(np.ones((1, 1)))],
                           bias=["x", np.ones(3), None, np.ones((81, 1))])),
    "CircularSVD": Spec(keyword_call(sc.CircularSVD, "weight", "input_shape"),
                        dict(weight=W, input_shape=SHAPE),
                        dict(weight=WEIGHTS + NON_FINITE, input_shape=SIZES,
                             **layer_bad(mode=False))),
    "ConvGeometry": Spec(keyword_call(sc.ConvGeometry.from_weight, "weight_shape", "input_shape"),
                         dict(weight_shape=W.shape, input_shape=SHAPE),
                         dict(weight_shape=[3, "abc", (2, 2), (2, 2, 0), (2, 2.0, 3), None,
                                            (2, 2, HUGE)],
                              input_shape=SIZES, **layer_bad())),
    "ConvOperator": Spec(keyword_call(sc.ConvOperator, "weight", "input_shape"),
                         dict(weight=W, input_shape=SHAPE),
                         dict(weight=WEIGHTS, input_shape=SIZES, dtype=DTYPES, layout=LAYOUTS,
                              **layer_bad())),
    "ConvTransposeOperator": Spec(
        keyword_call(sc.ConvTransposeOperator, "weight", "input_shape"),
        dict(weight=W, input_shape=SHAPE),
        dict(weight=WEIGHTS, input_shape=SIZES, output_padding=NON_NEGATIVE, dtype=DTYPES,
             layout=LAYOUTS, output_size=OUTPUT_SIZES, **layer_bad(mode=False))),
    "SavedLayer": Spec(keyword_call(sc.SavedLayer, "weight", "input_shape"),
                       dict(weight=W, input_shape=SHAPE),
                       dict(weight=WEIGHTS, input_shape=SIZES, transposed=["yes", 1, None],
                            options=[None, "stride=2", {"stridee": 2}, {"stride": 0},
                                     {"padding_mode": "mirror"}],
                            layout=LAYOUTS, format=FORMATS, blocksize=BLOCKSIZES)),
    "SpectralNorm": Spec(keyword_call(sc.SpectralNorm, "value", "lower", "upper", "method"),
                         dict(value=1.0, lower=1.0, upper=1.0, method="fft"),
                         dict(value=["x", None], lower=["x", 2.0], upper=["x", 0.5],
                              method=["svd", 1])),
    "affine_conv": Spec(keyword_call(sc.affine_conv, "weight", "bias", "input_shape"),
                        dict(weight=W, bias=np.zeros(2), input_shape=SHAPE),
                        dict(weight=WEIGHTS, bias=["x", np.ones(3), np.ones((2, 1))],
                             input_shape=SIZES, stride=POSITIVE)),
    "adaptive_avg_pool_matrix": Spec(
        sc.adaptive_avg_pool_matrix, dict(input_shape=SHAPE, output_size=3),
        dict(input_shape=ANY_RANK, output_size=[0, -1, 1.5, "2", True, HUGE, (1,), (1, 1, 1),
                                                 (1, 0), [None, 0], (2, "a")],
             format=FORMATS, dtype=DTYPES)),
    "avg_pool_matrix": Spec(sc.avg_pool_matrix, dict(input_shape=SHAPE, kernel_size=2),
                            dict(input_shape=ANY_RANK, kernel_size=POSITIVE,
                                 stride=[s for s in POSITIVE if s is not None],
                                 padding=PADDINGS, ceil_mode=["yes", 1, None],
                                 count_include_pad=["yes", 1, None],
                                 divisor_override=[0, 1.5, "2", True, HUGE, -HUGE - 1],
                                 format=FORMATS, dtype=DTYPES)),
    "block_conv_matrix": Spec(keyword_call(sc.block_conv_matrix, "weight", "input_shape"),
                              dict(weight=W, input_shape=SHAPE),
                              dict(weight=WEIGHTS, input_shape=SIZES, format=FORMATS,
                                   dtype=DTYPES, **layer_bad())),
    "circular_svd": Spec(keyword_call(sc.circular_svd, "weight", "input_shape"),
                         dict(weight=W, input_shape=SHAPE),
                         dict(weight=WEIGHTS + NON_FINITE, input_shape=SIZES,
                              **layer_bad(mode=False))),
    "clip_singular_values": Spec(
        keyword_call(sc.clip_singular_values, "weight", "input_shape"),
        dict(weight=W, input_shape=SHAPE, max=1.0, support="kernel"),
        dict(weight=WEIGHTS + NON_FINITE, input_shape=SIZES,
             max=[-1.0, NAN, float("inf"), "1", None, True, np.ones(2)],
             support=["same", 1, None, ("full",)],
             iterations=[g for g in GROUPS if g is not None],  # None: the default
             **layer_bad(mode=False))),
    "compose": Spec(lambda layers: sc.compose(*layers), dict(layers=(A, A)),
                    dict(layers=[(), ("abc",), (None,), (np.ones((81, 81)),),
                                 (A, sc.conv_matrix(W, SHAPE))])),
    "compose_kernels": Spec(lambda weights, **kw: sc.compose_kernels(*weights, **kw),
                            dict(weights=(W, W)),
                            dict(weights=[(), ("abc",), (None,), (np.ones(3),), (W, W[:1, :1]),
                                          (W, np.ones((2, 2, 3)))],
                                 stride=[[1], 1, "ab", [0, 1], [1.5, 1], [HUGE, 1], [True, 1]],
                                 dilation=[[1], 2, [1, 0], [(1, 1, 1), 1]],
                                 groups=[[1], 1, [0, 1], [3, 1], [1.5, 1]])),
    "composition_eigenvalues": Spec(
        sc.composition_eigenvalues, dict(layers=[(W, PERIODIC)], input_shape=SHAPE),
        dict(layers=LAYERS, input_shape=SIZES, method=METHODS)),
    "composition_singular_values": Spec(
        sc.composition_singular_values, dict(layers=[(W, PERIODIC)], input_shape=SHAPE),
        dict(layers=LAYERS, input_shape=SIZES, method=METHODS)),
    "conv1x1_matrix": Spec(sc.conv1x1_matrix, dict(weight=np.ones((3, 2)), spatial=(4, 4)),
                           dict(weight=["w", None, np.ones(3), np.ones((3, 2, 2)), [["a"]]],
                                spatial=[0, -1, 1.5, "4", None, HUGE, (4, 0), (4, 4.0), ()],
                                format=FORMATS, dtype=DTYPES)),
    "conv_matrix": Spec(keyword_call(sc.conv_matrix, "weight", "input_shape"),
                        dict(weight=W, input_shape=SHAPE),
                        dict(weight=WEIGHTS, input_shape=SIZES, format=FORMATS, dtype=DTYPES,
                             layout=LAYOUTS, blocksize=BLOCKSIZES,
                             rows=ROWS_BAD, **layer_bad())),
    "conv_matrix_blocks": Spec(keyword_call(sc.conv_matrix_blocks, "weight", "input_shape"),
                               dict(weight=W, input_shape=SHAPE),
                               dict(weight=WEIGHTS, input_shape=SIZES, format=FORMATS,
                                    dtype=DTYPES, block_rows=[0, -1, 1.5, "8", True, HUGE],
                                    **layer_bad())),
    "conv_output_shape": Spec(sc.conv_output_shape, dict(input_size=(8, 8), kernel_size=3),
                              dict(input_size=ANY_SPATIAL, kernel_size=POSITIVE,
                                   stride=POSITIVE, padding=PADDINGS, dilation=POSITIVE)),
    "conv_transpose_matrix": Spec(
        keyword_call(sc.conv_transpose_matrix, "weight", "input_shape"),
        dict(weight=W, input_shape=SHAPE),
        dict(weight=WEIGHTS, input_shape=SIZES, output_padding=NON_NEGATIVE, format=FORMATS,
             dtype=DTYPES, layout=LAYOUTS, blocksize=BLOCKSIZES,
             rows=ROWS_BAD, output_size=OUTPUT_SIZES, **layer_bad(mode=False))),
    "conv_transpose_output_shape": Spec(
        sc.conv_transpose_output_shape, dict(input_size=(8, 8), kernel_size=3),
        dict(input_size=ANY_SPATIAL, kernel_size=POSITIVE, stride=POSITIVE, padding=PADDINGS,
             output_padding=NON_NEGATIVE, dilation=POSITIVE)),
    "dilate_kernel": Spec(sc.dilate_kernel, dict(weight=W, dilation=2),
                          dict(weight=WEIGHTS, dilation=POSITIVE)),
    "doubly_block_circulant": Spec(sc.doubly_block_circulant,
                                   dict(kernel=np.ones((3, 3)), input_size=(5, 5)),
                                   dict(kernel=["k", None, np.ones(3), np.ones((0, 3)), 1.0],
                                        input_size=SPATIAL, format=FORMATS, dtype=DTYPES)),
    "doubly_block_toeplitz": Spec(sc.doubly_block_toeplitz,
                                  dict(kernel=np.ones((3, 3)), input_size=(5, 5)),
                                  dict(kernel=["k", None, np.ones(3), np.ones((0, 3)), 1.0],
                                       input_size=SPATIAL, mode=["half", 1, None],
                                       format=FORMATS, dtype=DTYPES)),
    "eigenvalues": Spec(keyword_call(sc.eigenvalues, "weight", "input_shape"),
                        dict(weight=W, input_shape=SHAPE, padding=1),
                        dict(weight=WEIGHTS + NON_FINITE, input_shape=SIZES, method=METHODS,
                             **layer_bad())),
    "fractionally_strided": Spec(
        keyword_call(sc.fractionally_strided, "weight", "input_shape"),
        dict(weight=W, input_shape=SHAPE),
        dict(weight=WEIGHTS, input_shape=SIZES, output_padding=NON_NEGATIVE, format=FORMATS,
             dtype=DTYPES, **layer_bad(mode=False))),
    "frequency_map": Spec(keyword_call(sc.frequency_map, "weight", "input_size"),
                          dict(weight=W, input_size=(8, 8)),
                          dict(weight=WEIGHTS + NON_FINITE, input_size=SPATIAL,
                               **layer_bad(padding=False, mode=False))),
    "im2col_matrix": Spec(sc.im2col_matrix, dict(input_shape=SHAPE, kernel_size=3),
                          dict(input_shape=ANY_RANK, kernel_size=POSITIVE, stride=POSITIVE,
                               padding=PADDINGS, dilation=POSITIVE, padding_mode=MODES,
                               format=FORMATS, dtype=DTYPES, layout=LAYOUTS)),
    "pad_matrix": Spec(sc.pad_matrix, dict(input_shape=SHAPE, padding=1),
                       dict(input_shape=ANY_RANK, padding=PADDINGS + [None], padding_mode=MODES,
                            kernel_size=[0, 1.5, "3", HUGE, (3, 3, 3)], dilation=POSITIVE,
                            format=FORMATS, dtype=DTYPES, layout=LAYOUTS)),
    "load_layer": Spec(lambda file: sc.load_layer(io.BytesIO(file) if isinstance(file, bytes)
                                                  else file),
                       dict(file=SAVED),
                       dict(file=[None, 5, PLAIN_NPZ, b"not an npz", SAVED[:100]])),
    "interpolate_matrix": Spec(
        sc.interpolate_matrix, dict(input_shape=SHAPE, scale_factor=2, mode="bilinear"),
        dict(input_shape=ANY_RANK + [(2, 8, 8, 8)],
             scale_factor=[0, -1.0, NAN, float("inf"), "2", True, (2.0,), (2.0, 0.0), 0.01],
             size=[0, -1, 1.5, "2", HUGE, (4,), (4, 0)],
             mode=["cubic", 1, None, "linear", "trilinear", "Nearest"],
             align_corners=[1, "yes"], recompute_scale_factor=[1, "no"],
             format=FORMATS, dtype=DTYPES)),
    "pixel_shuffle_matrix": Spec(
        sc.pixel_shuffle_matrix, dict(input_shape=(4, 3, 3), upscale_factor=2),
        dict(input_shape=SIZES + [(3, 3, 3)],
             upscale_factor=GROUPS + [3], format=FORMATS, dtype=DTYPES)),
    "pixel_unshuffle_matrix": Spec(
        sc.pixel_unshuffle_matrix, dict(input_shape=(1, 4, 4), downscale_factor=2),
        dict(input_shape=SIZES + [(1, 3, 4)],
             downscale_factor=GROUPS + [3], format=FORMATS, dtype=DTYPES)),
    "receptive_field": Spec(sc.receptive_field,
                            dict(layers=[A], input_shape=(1, 9, 9), output_index=0),
                            dict(layers=[None, "abc", [], [np.ones((81, 81))], A, 5],
                                 input_shape=[(1, 9), (1, 0, 9), "x", None, (1, 9.0, 9)],
                                 output_index=[-1, 81, HUGE, 1.5, "0", None, (0, 4), True],
                                 output_shape=[(1, 9), (0, 9, 9), "x", (1, 9.0, 9), 5])),
    "receptive_field_paths": Spec(sc.receptive_field_paths, dict(layers=[G, G]),
                                  dict(layers=[None, "abc", [], [np.ones(3)], 5, [G, A]],
                                       position=[(0, 0), (99,), (-1,), "a", (1.5,), 5,
                                                 (True,), (HUGE,)],
                                       dtype=[np.int32, None, "foo", bool, complex])),
    "receptive_field_size": Spec(sc.receptive_field_size, dict(kernel_size=[3, 3]),
                                 dict(kernel_size=[[], 3, "33", [0], [3.0], [True], [HUGE],
                                                   None, [(3, 3), (3,)], [(3, 3), 3.0]],
                                      stride=[[0, 1], [1], "ab", 5, [1.5, 1], [HUGE, 1]],
                                      dilation=[[0, 1], [1, 1, 1], 2, [None, 1]])),
    "save_layer": Spec(lambda file, **kw: sc.save_layer(file(), **kw),
                       dict(file=io.BytesIO, weight=W, input_shape=SHAPE),
                       dict(file=[lambda: None, lambda: 5], weight=WEIGHTS, input_shape=SIZES,
                            transposed=["yes", 1, None], compressed=["yes", None],
                            stridee=[2], format=FORMATS, layout=LAYOUTS, blocksize=BLOCKSIZES,
                            dtype=DTYPES, **layer_bad())),
    "set_memory_limit": Spec(sc.set_memory_limit, dict(nbytes=None),
                             dict(nbytes=[-1, 1.5, "8 apples", True, NAN])),
    "singular_values": Spec(keyword_call(sc.singular_values, "weight", "input_shape"),
                            dict(weight=W, input_shape=SHAPE),
                            dict(weight=WEIGHTS + NON_FINITE, input_shape=SIZES,
                                 method=METHODS, **layer_bad())),
    "spectral_norm": Spec(keyword_call(sc.spectral_norm, "weight", "input_shape"),
                          dict(weight=W, input_shape=SHAPE),
                          dict(weight=WEIGHTS + NON_FINITE, input_shape=SIZES, method=METHODS,
                               tol=[-1.0, 0.0, "x", None, NAN, True], **layer_bad())),
    "spectral_norms": Spec(sc.spectral_norms, dict(layers=[dict(weight=W, input_shape=SHAPE)]),
                           dict(layers=[5, "layers", dict(weight=W, input_shape=SHAPE), [5],
                                        [dict(weight=W)], [dict(weight=W, input_shape=SHAPE,
                                                                kernel_size=3)],
                                        [dict(weight=W, input_shape=(99, 8, 8))],
                                        [dict(weight=W, input_shape=SHAPE, stride=0)]],
                                method=METHODS, tol=[-1.0, 0.0, "x", None, NAN, True],
                                workers=[0, 1.5, "2", True, -1000], progress=["x", 3])),
    "stride_matrix": Spec(sc.stride_matrix, dict(input_shape=SHAPE, stride=2),
                          dict(input_shape=ANY_RANK, stride=POSITIVE, format=FORMATS,
                               dtype=DTYPES)),
    "symbol": Spec(keyword_call(sc.symbol, "weight", "input_size"),
                   dict(weight=W, input_size=(8, 8)),
                   dict(weight=WEIGHTS + NON_FINITE, input_size=SPATIAL,
                        **layer_bad(mode=False),
                        )),
    "toeplitz_norm": Spec(sc.toeplitz_norm, dict(weight=W),
                          dict(weight=WEIGHTS + NON_FINITE, stride=POSITIVE, dilation=POSITIVE,
                               groups=GROUPS + [3], tol=[-1.0, 0.0, 1e-13, 1.0, "x", None, NAN,
                                                         True],
                               max_evaluations=[0, -1, 1.5, "9", None, True])),
    "toeplitz_matrix": Spec(sc.toeplitz_matrix, dict(kernel=np.ones(3), n=6),
                            dict(kernel=["k", None, np.ones((3, 3)), np.ones(0), 1.0],
                                 n=[0, -1, 1.5, "6", None, True, HUGE, (6,)],
                                 mode=["half", 1, None], format=FORMATS, dtype=DTYPES)),
    "transpose_kernel": Spec(sc.transpose_kernel, dict(weight=W),
                             dict(weight=WEIGHTS, groups=GROUPS + [3])),
}
#: Public names that take no argument a caller could get wrong.
NO_ARGUMENTS = {
    "get_memory_limit": "takes no argument",
    "MatrixTooLargeError": "an exception class: its message is free text",
}

# symbol's padding: None is its default (periodic), 0 is not periodic: refused by name.
SPECS["symbol"].bad["padding"] = [p for p in PADDINGS] + [0, 2]
for name in ("CircularSVD", "circular_svd", "clip_singular_values"):  # periodic, as symbol
    SPECS[name].bad["padding"] = [p for p in PADDINGS] + [0, 2]
    SPECS[name].bad["padding_mode"] = ["zeros", "reflect", None, 1, ("circular",)]
for name in ("singular_values", "eigenvalues", "spectral_norm"):
    SPECS[name].bad["padding"] = PADDINGS  # None is the periodic shorthand: accepted
# executor= and progress= (sparseconv._parallel): refused by type before any work
for name in ("singular_values", "eigenvalues", "spectral_norm", "symbol", "frequency_map"):
    SPECS[name].bad["executor"] = ["threads", 2, max]
    SPECS[name].bad["progress"] = ["bar", 1]

# Rows known to fail, by (name, parameter, row index or None for all rows of the parameter),
# with the reason; each becomes an xfail(strict=True), so a fixed row must leave this table.
OUTSIDE: dict = {}  # every row is fixed where it belongs; none is expected to fail


def outside(name, parameter, index):
    return OUTSIDE.get((name, parameter, index)) or OUTSIDE.get((name, parameter, None))


def short(value) -> str:
    """``value`` for a test id: the same in every process (no address: pytest-xdist's workers
    must collect the same ids)."""
    text = (f"array{value.shape}" if isinstance(value, np.ndarray) else
            f"memoryview({value.tobytes()!r})" if isinstance(value, memoryview) else
            f"<{type(value).__name__}>" if callable(value) else repr(value))
    return text if len(text) <= 30 else text[:27] + "..."


ROWS = [pytest.param(name, parameter, value,
                     marks=[pytest.mark.xfail(strict=True, reason=outside(name, parameter, i))]
                     if outside(name, parameter, i) else [],
                     id=f"{name}-{parameter}-{i}-{short(value)}")
        for name, spec in SPECS.items() for parameter, values in spec.bad.items()
        for i, value in enumerate(values)]


@pytest.fixture(autouse=True)
def restore_memory_limit():
    old = sc.get_memory_limit()
    yield
    sc.set_memory_limit(old)


@pytest.mark.parametrize("name, parameter, value", ROWS)
def test_bad_input_is_refused_by_name(name, parameter, value):
    spec = SPECS[name]
    with pytest.raises((TypeError, ValueError)) as caught:
        spec.call(**{**spec.good, parameter: value})
    assert parameter in str(caught.value), (
        f"{name}({parameter}={short(value)}): {type(caught.value).__name__}: {caught.value}")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_good_arguments_are_good(name):
    """The rows above fail because of their bad value, not because the baseline is bad."""
    spec = SPECS[name]
    spec.call(**spec.good)


def test_every_public_name_has_bad_input_rows():
    names = set(sc.__all__)
    covered = {name for name, spec in SPECS.items() if spec.bad} | set(NO_ARGUMENTS)
    assert names - covered == set(), f"public names without bad-input rows: {names - covered}"
    assert set(SPECS) | set(NO_ARGUMENTS) <= names, "rows for names that are not public"


# numpy's integer scalars and 1-D integer arrays are fine where Python ints are.
NUMPY_INTEGERS = [
    ("conv_matrix", dict(stride=np.int64(2), dilation=np.int32(1), groups=np.int64(1),
                         padding=np.int16(1))),
    ("conv_matrix", dict(input_shape=(np.int64(2), np.int64(8), np.int64(8)))),
    ("conv_matrix", dict(input_shape=np.array([2, 8, 8]), stride=np.array([1, 2]),
                         padding=np.array([1, 0]))),
    ("singular_values", dict(stride=np.int64(2), padding=np.int64(1), groups=np.int8(1))),
    ("singular_values", dict(input_shape=np.array([2, 8, 8]))),
    ("eigenvalues", dict(input_shape=(np.int64(2), 8, 8), padding=np.int64(1))),
    ("symbol", dict(input_size=np.int64(8), weight=np.ones((2, 2, 3)))),
    ("symbol", dict(input_size=np.array([8, 8]), stride=np.int64(2))),
    ("frequency_map", dict(input_size=(np.int64(8), np.int64(8)), dilation=np.int64(2))),
    ("composition_singular_values", dict(layers=[(W, dict(stride=np.int64(1), **PERIODIC))],
                                         input_shape=np.array([2, 8, 8]))),
    ("spectral_norm", dict(stride=np.int64(2), padding=np.int64(1))),
    ("circular_svd", dict(input_shape=np.array([2, 8, 8]), stride=np.int64(2),
                          groups=np.int64(1), dilation=np.int32(1))),
    ("clip_singular_values", dict(max=np.int64(1), iterations=np.int64(3),
                                  stride=np.array([2, 1]))),
    ("conv_output_shape", dict(input_size=np.int64(8), kernel_size=np.int64(3))),
    ("dilate_kernel", dict(dilation=np.int64(2))),
    ("receptive_field_size", dict(kernel_size=[np.int64(3), 3], stride=[np.int64(2), 1])),
    ("receptive_field", dict(output_index=np.int64(40))),
    ("receptive_field_paths", dict(position=(np.int64(2),))),
    ("toeplitz_matrix", dict(n=np.int64(6))),
    ("transpose_kernel", dict(groups=np.int64(2))),
    ("avg_pool_matrix", dict(divisor_override=np.int64(3), stride=np.int64(1))),
    ("adaptive_avg_pool_matrix", dict(output_size=(np.int64(3), None))),
    ("interpolate_matrix", dict(scale_factor=np.float32(1.5), input_shape=np.array([2, 8, 8]))),
    ("interpolate_matrix", dict(scale_factor=None, size=(np.int64(5), 7))),
    ("pixel_shuffle_matrix", dict(upscale_factor=np.int64(2))),
    ("set_memory_limit", dict(nbytes=np.int64(2**32))),
]


@pytest.mark.parametrize("name, changes", NUMPY_INTEGERS)
def test_numpy_integers_are_accepted(name, changes):
    spec = SPECS[name]
    spec.call(**{**spec.good, **changes})


def test_numpy_integers_give_the_same_layer():
    ints = sc.singular_values(W, SHAPE, stride=2, padding=1)
    numpy = sc.singular_values(W, np.array(SHAPE), stride=np.int64(2), padding=np.int32(1))
    assert np.array_equal(ints, numpy)
    assert math.isclose(sc.receptive_field_size([np.int64(3)] * 2), 5)


# ---------------------------------------------------------------------------------------------
# sparseconv.plot's print and raster keywords: refused before anything is drawn or written.
# ---------------------------------------------------------------------------------------------
PLOT_GEOMETRY = sc.ConvGeometry.from_weight((4, 4, 3, 3), (4, 6, 6), padding=1)
PLOT_CALLS = {
    "spy": lambda **kw: sc.plot.spy(PLOT_GEOMETRY, **kw),
    "save_raster": lambda **kw: sc.plot.save_raster(kw.pop("fname", "x.png"), PLOT_GEOMETRY,
                                                    **kw),
    "spectrum": lambda **kw: sc.plot.spectrum([1.0, 2.0], **kw),
    "frequency_heatmap": lambda **kw: sc.plot.frequency_heatmap(np.ones((4, 4)), **kw),
    "receptive_field_heatmap": lambda **kw: sc.plot.receptive_field_heatmap(PLOT_GEOMETRY,
                                                                            **kw),
    "conv_animation": lambda **kw: sc.plot.conv_animation(PLOT_GEOMETRY, **kw),
}
PRINT_BAD = [dict(fname="x.png", dpi=0), dict(fname="x.png", dpi=NAN), dict(fname="x.png",
             dpi="300"), dict(fname="x.png", dpi=True), dict(dpi=300),
             dict(fname="x.xyz"), dict(fname="x.png", format="bmp-ish"), dict(format="png"),
             dict(fname=3), dict(fname="x.png", figsize=(3.5,)), dict(fname="x.png",
             figsize=(3.5, -1)), dict(fname="x.png", figsize="3.5,3"),
             dict(fname="x.png", figsize=(NAN, 3))]
PLOT_BAD = [(name, bad) for name in PLOT_CALLS for bad in PRINT_BAD
            if not (name == "save_raster" and ("figsize" in bad or "fname" not in bad))] + [
    ("spy", dict(zoom=((0, 5), (0, 1)))), ("spy", dict(zoom=((1, 1), (0, 1)))),
    ("spy", dict(zoom=(0, 1))), ("spy", dict(zoom=((0, 1.5), (0, 1)))),
    ("spy", dict(colorbar="yes")), ("spy", dict(max_bins=0)), ("spy", dict(max_bins=2.5)),
    ("save_raster", dict(zoom=((0, 9), (0, 1)))), ("save_raster", dict(max_bins=-1)),
    ("spectrum", dict(interval=(2.0, 1.0))), ("spectrum", dict(interval=(-1.0, 1.0))),
    ("spectrum", dict(interval="1,2")), ("spectrum", dict(interval=(1.0, np.inf))),
    ("receptive_field_heatmap", dict(vmax=0)), ("receptive_field_heatmap", dict(vmax=1.5)),
    ("receptive_field_heatmap", dict(colorbar=1)),
    ("conv_animation", dict(fps=0)), ("conv_animation", dict(fps=2.5)),
    ("conv_animation", dict(fname="x.mp4")),
    # an ax that is no Axes: numpy's AttributeError ('tuple' object has no attribute 'imshow')
    *[(name, dict(ax=bad)) for name in ("spy", "spectrum", "frequency_heatmap",
                                        "receptive_field_heatmap") for bad in ((8, 8), "ax")],
]


@pytest.mark.parametrize("name, bad", PLOT_BAD, ids=[f"{n}-{b}" for n, b in PLOT_BAD])
def test_plot_keywords_refuse_bad_values_before_writing(name, bad, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    with pytest.raises((TypeError, ValueError)) as info:
        PLOT_CALLS[name](**bad)
    assert any(key in str(info.value) for key in (*bad, "suffix")), str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_matrix_beyond_int64_indices_names_the_layers_shapes():
    """A new user's trial: padding=10**9 was blamed on input_shape=(3, 8, 8) alone."""
    with pytest.raises(ValueError, match=r"the 16000000096000000144 x 192 matrix of the layer "
                                         r"from input_shape=\(3, 8, 8\) to output_shape=\(4, "
                                         r"2000000006, 2000000006\) \(padding=\(\(1000000000, "):
        sc.conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=10**9)


def test_a_transposed_matrix_beyond_int64_indices_names_the_transposed_layer():
    """A review: the message described the convolution (from the huge shape to (2, 6, 6)),
    not the transposed layer asked for, in either layout."""
    for layout in ("channels_first", "channels_last"):
        with pytest.raises(ValueError, match=r"the 50000000060000000018 x 72 matrix of the "
                                             r"transposed layer from input_shape=\(2, 6, 6\) to "
                                             r"output_shape=\(2, 5000000003, 5000000003\)"):
            sc.conv_transpose_matrix(np.ones((2, 2, 3, 3)), (2, 6, 6), stride=10**9,
                                     layout=layout)


@pytest.mark.parametrize("build", [
    lambda: sc.conv_matrix(np.ones((1, 1, 3, 3)), (1, 2**30, 2**30), padding=1),
    lambda: sc.conv_transpose_matrix(np.ones((1, 1, 3, 3)), (1, 2**30, 2**30), padding=1),
    lambda: sc.avg_pool_matrix((1, 2**30, 2**30), 3, 1, 1),
    lambda: sc.affine_conv(np.ones((1, 1, 3, 3)), None, (1, 2**30, 2**30), padding=1),
    lambda: sc.conv_matrix(np.ones((2, 2, 3, 3)), (2, 6, 6), padding=10**9,
                           padding_mode="replicate"),
], ids=["conv", "transposed", "avg_pool", "affine", "replicate"])
def test_more_nonzeros_than_int64_counts_is_too_large_not_an_overflow(build):
    """A review: shapes that int64 addresses with more nonzeros than it counts raised a bare
    ``OverflowError`` from scipy's ``get_index_dtype``; the memory check refuses them."""
    with pytest.raises(sc.MatrixTooLargeError, match="nonzeros"):
        build()


def test_a_scale_factor_past_int64_sizes_is_refused_as_a_size_is():
    with pytest.raises(ValueError, match=r"scale_factor=1e\+300 gives an output size over "
                                         r"2\*\*60"):
        sc.interpolate_matrix((1, 4), scale_factor=1e300)
