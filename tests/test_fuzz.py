"""Fuzzing the public API (issue 15.4): random valid and invalid arguments, bounded time.

Every argument is drawn either from a pool of good values or, now and then, from a pool of
values that are wrong whatever the other arguments (a wrong type, zero, a negative, a huge int,
a string, a bool, NaN, a wrong length). Good values are drawn independently, so that their
combinations are often inconsistent (channels that do not match, groups that do not divide, a
kernel larger than the padded input, "same" with a stride, a large output padding, a matrix
over the memory limit). Each call then has one of three outcomes, and only these:

* it returns a result equal to an independent dense reference (PyTorch in float64 through
  basis vectors, numpy, scipy, or an SVD of the explicit matrix), and no bad value was drawn;
* it raises ``TypeError`` or ``ValueError`` (``MatrixTooLargeError`` included) whose message
  names a bad argument, or, when every value was good, one of the call's arguments;
* nothing else: another exception (a warning is an error in this suite) fails the test, and so
  does a call that runs longer than ``TIMEOUT`` seconds (a ``SIGALRM`` timer, so a hang fails
  instead of blocking CI).

The examples are derandomized, so CI is reproducible; the memory limit is lowered while the
tests run, so that no example can allocate much.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sparseconv as sc
from sparseconv import cli

from ._oracles import TORCH_PAD_MODE, per_side, requires_torch, torch

pytestmark = requires_torch
if torch is not None:
    import torch.nn.functional as F

TIMEOUT = 20  # seconds a single call may take before it counts as a hang
MEMORY_LIMIT = 16 * 2**20
FUZZ = settings(max_examples=40, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
HUGE = 2**63
BIG = 2**40  # a legal size whose matrix is far over the memory limit
NAN = float("nan")

# What the messages call an argument: a channel mismatch names in_channels, a weight its shape.
ALIASES = {
    "input_shape": ("input_shape", "in_channels"),
    "weight": ("weight", "kernel_size", "out_channels", "in_channels"),
    "kernel": ("kernel",),
    "layers": ("layers",),
    # kernels of another rank than the strides and dilations drawn for them: a message may
    # name either side (a fuzz run)
    "weights": ("weights", "stride", "dilation"),
}
# Names a message may use when every value was good but their combination is not.
RELATIONAL = ("weight", "kernel", "in_channels", "out_channels", "kernel_size", "input_shape",
              "input_size", "spatial", "n", "stride", "padding", "dilation", "groups",
              "padding_mode", "output_padding", "method", "memory limit", "layers", "dtype")


class Hang(Exception):
    """A call ran longer than TIMEOUT seconds."""


@contextlib.contextmanager
def time_limit(seconds=TIMEOUT):
    def alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True, scope="module")
def small_memory_limit():
    old = sc.set_memory_limit(MEMORY_LIMIT)
    yield
    sc.set_memory_limit(old)


class Args:
    """The arguments of one call, and which of them were drawn from a bad pool."""

    def __init__(self, data):
        self.data = data
        self.bad: set[str] = set()
        self.good: dict = {}
        # a third of the examples draw bad values (a quarter of their arguments each)
        self.corrupt = data.draw(st.integers(0, 2), label="corrupt") == 0

    def pick(self, name, good, bad=(), p_bad=4):
        """A good value, or in a corrupt example with probability 1/p_bad one of ``bad``."""
        value = self.good[name] = self.data.draw(
            good if isinstance(good, st.SearchStrategy) else st.sampled_from(good), label=name)
        if bad and self.corrupt and self.data.draw(st.integers(0, p_bad - 1),
                                                   label=f"{name} is bad") == 0:
            self.bad.add(name)
            value = self.data.draw(st.sampled_from(bad), label=f"bad {name}")
        return value

    def call(self, function, **kwargs):
        """``function(**kwargs)``, or None after an acceptable refusal.

        A refusal names a bad argument, or, if every value was good, any argument; if it
        names a good one while a bad one was drawn, the call with the bad values replaced by
        good ones must fail too (the good values are inconsistent by themselves).
        """
        try:
            with time_limit():
                result = function(**kwargs)
        except (TypeError, ValueError) as exc:
            message = str(exc)
            event("refused, bad" if self.bad else "refused, all good")
            bad = [alias for name in self.bad for alias in ALIASES.get(name, (name,))]
            if any(name in message for name in bad):
                return None
            assert any(name in message for name in RELATIONAL), (
                f"{type(exc).__name__} names no argument: {message}")
            if self.bad:
                repaired = {k: self.good[k] if k in self.bad else v for k, v in kwargs.items()}
                try:
                    with time_limit():
                        function(**repaired)
                except (TypeError, ValueError):
                    return None
                raise AssertionError(f"bad {sorted(self.bad)} refused as: {message}") from exc
            return None
        assert not self.bad, f"bad {sorted(self.bad)} accepted"
        event("accepted")
        return result


def assert_equal(actual, expected, rtol, what=""):
    actual = actual.toarray() if sp.issparse(actual) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    err = float(np.abs(actual - expected).max(initial=0))
    assert err <= rtol * scale, f"{what}: error {err:.3g} (scale {scale:.3g})"


# ---------------------------------------------------------------------------------------------
# Pools of values
# ---------------------------------------------------------------------------------------------
WEIGHT_DTYPES = ["float64", "float32", "float16", "complex128", "complex64", "int64", "bool"]
BAD_WEIGHTS = ["w", None, 1.0, np.ones((2, 2)), np.ones((1, 1, 0)), [[["a"]]],
               np.array([[[object()]]]), np.ones((1, 1, 2), dtype="datetime64[s]")]
BAD_POSITIVE = [0, -1, True, 1.5, "2", None, HUGE, NAN, np.float64(2.0), (1, 1, 1, 1),
                (1, 0, 1, 1)[:1] + (0,)]
BAD_GROUPS = [0, -1, True, 1.5, "1", None, HUGE, np.float64(1.0)]
BAD_PADDING = [-1, 1.5, "half", "Same", True, NAN, HUGE, (1, 1, 1, 1), ((0, -1),), [1, "a"],
               ((0, 1, 2),)]
BAD_MODES = ["mirror", "Zeros", 1, None, ("zeros",)]
BAD_FLAGS = [1, "False", None, 0.0]
BAD_FORMATS = ["dense", "CSR", 1, None]
BAD_DTYPES = ["str", object, "not a dtype", "float16", "datetime64[s]"]
BAD_SIZES = [0, -3, 1.5, True, "8", None, HUGE, NAN, (), (0,), (-1,), (2.0,), (True,), "8,8"]
GOOD_DTYPES = [None, None, None, "float64", np.float32, np.complex128, "complex64", np.int64]
MODES = ["zeros", "circular", "reflect", "replicate"]
FORMATS = ["csr", "csc", "coo", "bsr"]


def rarely(common, rare):
    """``common``, or once in six draws ``rare``."""
    return st.one_of(*[common] * 5, rare)


def ints(ndim, low, high):
    """An int, a tuple of ``ndim`` ints or a 1-D integer array, each in [low, high]."""
    one = st.integers(low, high)
    return st.one_of(one, st.tuples(*[one] * ndim),
                     st.lists(one, min_size=ndim, max_size=ndim).map(np.array))


def paddings(ndim, strings=True, high=3):
    one = st.integers(0, high)
    pair = st.tuples(one, one)
    forms = [one, st.tuples(*[one] * ndim), st.tuples(*[pair] * ndim),
             st.tuples(*[st.one_of(one, pair)] * ndim)]
    if strings:
        forms.append(st.sampled_from(["valid", "same", "full"]))
    return st.one_of(*forms)


def random_weight(args, shape, name="weight", bad=BAD_WEIGHTS, dtypes=WEIGHT_DTYPES):
    seed = args.data.draw(st.integers(0, 2**16), label=f"{name} seed")
    dtype = np.dtype(args.data.draw(st.sampled_from(dtypes), label=f"{name} dtype"))
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) + (1j * rng.standard_normal(shape)
                                           if dtype.kind == "c" else 0)
    if dtype.kind in "iub":
        values = np.round(3 * values.real)
    good = st.just(values.astype(dtype))
    return args.pick(name, good, bad)


def draw_layer(args, *, transpose=False, max_ndim=3, max_size=6, max_channels=2, big=True,
               square=False):
    """Weight and input shape: usually consistent, sometimes not (channels, rank, sizes)."""
    d = args.data.draw
    ndim = d(st.integers(1, max_ndim), label="ndim")
    groups = d(st.sampled_from([1, 1, 2]), label="true groups")
    c_in, c_out = (groups * d(st.integers(1, max_channels), label="channels") for _ in "io")
    c_out = c_in if square else c_out
    kernel = tuple(d(st.integers(1, 3), label="kernel") for _ in range(ndim))
    shape = (c_in, c_out // groups, *kernel) if transpose else (c_out, c_in // groups, *kernel)
    weight = random_weight(args, shape)
    high = max(2, max_size - ndim)
    channels = rarely(st.just(c_in), st.integers(1, 4))
    sizes = st.tuples(channels, *[st.integers(1, high)] * ndim)
    sizes = rarely(st.one_of(sizes, sizes.map(np.array)),
                   st.tuples(st.just(c_in), *[st.sampled_from([1, 2, BIG if big else 2])]
                             * ndim))
    input_shape = args.pick("input_shape", sizes,
                            BAD_SIZES + [(c_in,) + (2,) * (ndim + 1), (c_in, *(0,) * ndim)])
    groups = args.pick("groups", rarely(st.sampled_from([groups, np.int64(groups)]),
                                        st.integers(1, 3)),
                       BAD_GROUPS)
    return ndim, weight, input_shape, groups


def draw_layer_options(args, ndim, *, modes=True, strings=True, none=False):
    options = dict(
        stride=args.pick("stride", rarely(st.one_of(st.just(1), ints(ndim, 1, 3)), st.just(BIG)),
                         BAD_POSITIVE),
        dilation=args.pick("dilation", st.one_of(st.just(1), st.just(1), ints(ndim, 1, 2)),
                           BAD_POSITIVE),
    )
    good_padding = paddings(ndim, strings)
    if none:
        good_padding = st.one_of(st.none(), good_padding)
    options["padding"] = args.pick("padding", good_padding,
                                   BAD_PADDING + ([] if none else [None]))
    if modes:
        options["padding_mode"] = args.pick("padding_mode", MODES, BAD_MODES)
        if options["padding"] is None and options["padding_mode"] == "circular":
            args.bad.discard("padding")  # (the periodic padding: a fuzz run)
    return options


def as_tuple(value, ndim):
    """An int, a tuple or a 1-D array as a tuple of ``ndim`` Python ints."""
    return tuple(np.broadcast_to(np.asarray(value), (ndim,)).tolist())


def resolved(options, weight, ndim, flip=False):
    """Per-side padding pairs and tuples of stride and dilation, from the conftest rules."""
    stride = as_tuple(options.get("stride", 1), ndim)
    dilation = as_tuple(options.get("dilation", 1), ndim)
    padding = options.get("padding", 0)
    if padding is None:
        padding = "same"
    if isinstance(padding, np.ndarray):
        padding = tuple(padding.tolist())
    pads = per_side(padding, weight.shape[2:], dilation, flip)
    return stride, [tuple(p) for p in pads], dilation


def layer_dtype(weight, dtype):
    """The result dtype, written out independently of sparseconv._validation."""
    weight = np.asarray(weight)
    result = np.dtype(dtype) if dtype is not None else (
        np.dtype(np.float64) if weight.dtype.kind in "biu" else weight.dtype)
    return np.dtype(np.float32) if result == np.float16 else result


def tolerance(dtype):
    return 1e-12 if np.dtype(dtype) in (np.float64, np.complex128) else 2e-5


# ---------------------------------------------------------------------------------------------
# Dense references: PyTorch on the basis vectors, in float64, real and imaginary parts apart
# ---------------------------------------------------------------------------------------------
def beyond_oracle(sizes, stride) -> bool:
    """A legal layer the dense oracle cannot hold: more than 10^6 entries on a side, or a
    stride PyTorch keeps in 32 bits (a fuzz run: a stride of 2^40 over an input of 2^40, two
    outputs, small in CSR; PyTorch read the stride as 0). Its shape is checked instead."""
    if math.prod(sizes) <= 10**6 and max(np.ravel(stride).tolist()) < 2**31:
        return False
    event("beyond the dense oracle: shape checked")
    return True


def conv_sizes(spatial, kernel, stride, pads, dilation):
    """The output's spatial sizes, by PyTorch's formula."""
    return [(n + lo + hi - d * (k - 1) - 1) // s + 1
            for n, k, s, (lo, hi), d in zip(spatial, kernel, stride, pads, dilation)]


def basis(shape):
    n = math.prod(shape)
    return torch.eye(n, dtype=torch.float64).reshape(n, *shape)


def torch_pad(x, pads, mode):
    """``F.pad`` with PyTorch's limits; ``mode="wrap"`` is numpy's, which wraps any number of
    times (the periodic layers of the spectra)."""
    if mode == "wrap":
        return torch.from_numpy(np.pad(x.numpy(), [(0, 0), (0, 0)] + list(pads), mode="wrap"))
    flat = [v for lo_hi in reversed(pads) for v in lo_hi]
    if mode == "zeros" or not any(flat):
        return F.pad(x, flat)
    return F.pad(x, flat, mode=TORCH_PAD_MODE[mode])


def split(weight, fn):
    """``fn`` applied to the real and the imaginary part of ``weight`` (it is linear in it)."""
    weight = np.asarray(weight)
    # np.array copies into C order (ascontiguousarray keeps negative strides of size-1 axes)
    real = fn(torch.from_numpy(np.array(weight.real, dtype=np.float64, order="C")))
    if weight.dtype.kind != "c":
        return real
    return real + 1j * fn(torch.from_numpy(np.array(weight.imag, dtype=np.float64, order="C")))


def dense_conv(weight, input_shape, stride, pads, dilation, groups, mode, flip=False):
    """The explicit matrix of the layer, from ``torch.nn.functional.conv{d}d``."""
    ndim = weight.ndim - 2
    if flip:
        weight = weight[(Ellipsis,) + (slice(None, None, -1),) * ndim]
    x = torch_pad(basis(input_shape), pads, mode)
    conv = getattr(F, f"conv{ndim}d")
    y = split(weight, lambda w: conv(x, w, stride=stride, dilation=dilation, groups=groups)
              .reshape(x.shape[0], -1).T.numpy())
    return y


def dense_conv_transpose(weight, input_shape, stride, pads, output_padding, dilation, groups):
    ndim = weight.ndim - 2
    fn = getattr(F, f"conv_transpose{ndim}d")
    x = basis(input_shape)
    if all(lo == hi for lo, hi in pads):
        def apply(w):
            return fn(x, w, stride=stride, padding=[lo for lo, _ in pads],
                      output_padding=output_padding, dilation=dilation, groups=groups)
    else:  # per-side padding crops the output of padding 0, which output_padding extends
        def apply(w):
            full = fn(x, w, stride=stride, dilation=dilation, groups=groups)
            full = F.pad(full, [v for op in reversed(output_padding) for v in (0, op)])
            crop = tuple(slice(lo, size - hi) for (lo, hi), size in zip(pads, full.shape[2:]))
            return full[(Ellipsis,) + crop]
    return split(weight, lambda w: apply(w).reshape(x.shape[0], -1).T.numpy())


def expect_layer(args, fn, weight, input_shape, options, groups, flip, dtype, fmt):
    """Call a layer builder and compare its matrix with dense_conv."""
    A = args.call(fn, weight=weight, input_shape=input_shape, groups=groups, flip=flip,
                  format=fmt, dtype=dtype,
                  **options)
    if A is None:
        return
    ndim = weight.ndim - 2
    stride, pads, dilation = resolved(options, weight, ndim, flip)
    expected_dtype = layer_dtype(weight, dtype)
    assert A.dtype == expected_dtype and A.format == fmt, (A.dtype, A.format)
    shape = np.asarray(input_shape).tolist()
    if beyond_oracle(A.shape, stride):
        sizes = conv_sizes(shape[1:], weight.shape[2:], stride, pads, dilation)
        assert A.shape == (weight.shape[0] * math.prod(sizes), math.prod(shape)), A.shape
        return
    ref_weight = np.asarray(weight).astype(expected_dtype)
    dense = dense_conv(ref_weight, tuple(shape), stride, pads, dilation, int(groups),
                       options.get("padding_mode", "zeros"), flip)
    assert_equal(A, dense, tolerance(expected_dtype), "conv matrix")


# ---------------------------------------------------------------------------------------------
# Layer matrices and operators
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [sc.conv_matrix, sc.block_conv_matrix],
                         ids=["conv_matrix", "block_conv_matrix"])
@FUZZ
@given(data=st.data())
def test_conv_matrix(fn, data):
    args = Args(data)
    ndim, weight, input_shape, groups = draw_layer(args)
    options = draw_layer_options(args, ndim)
    flip = args.pick("flip", [False, True, np.bool_(True)], BAD_FLAGS)
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    expect_layer(args, fn, weight, input_shape, options, groups, flip, dtype, fmt)


def draw_transpose(args):
    ndim, weight, input_shape, groups = draw_layer(args, transpose=True)
    options = draw_layer_options(args, ndim, modes=False, strings=False)
    options["output_padding"] = args.pick(
        "output_padding", ints(ndim, 0, 2), [-1, True, 1.5, "0", None, HUGE, (0,) * (ndim + 1)])
    return ndim, weight, input_shape, groups, options


def transpose_reference(weight, input_shape, options, groups, dtype, shape=None):
    """The dense matrix and dtype, or None for the dense matrix where ``shape`` (the result's)
    is :func:`beyond_oracle`, after checking it by PyTorch's formula."""
    ndim = weight.ndim - 2
    stride, pads, dilation = resolved(options, weight, ndim)
    output_padding = tuple(np.broadcast_to(np.asarray(options["output_padding"]), (ndim,)))
    expected_dtype = layer_dtype(weight, dtype)
    if shape is not None and beyond_oracle(shape, stride):
        spatial = np.asarray(input_shape).tolist()
        sizes = [(n - 1) * s - lo - hi + d * (k - 1) + int(p) + 1 for n, s, (lo, hi), d, k, p
                 in zip(spatial[1:], stride, pads, dilation, weight.shape[2:], output_padding)]
        assert shape == (weight.shape[1] * int(groups) * math.prod(sizes), math.prod(spatial))
        return None, expected_dtype
    ref_weight = np.asarray(weight).astype(expected_dtype)
    dense = dense_conv_transpose(ref_weight, tuple(np.asarray(input_shape).tolist()), stride,
                                 pads, tuple(int(v) for v in output_padding), dilation,
                                 int(groups))
    return dense, expected_dtype


@FUZZ
@given(data=st.data())
def test_conv_transpose_matrix(data):
    args = Args(data)
    _, weight, input_shape, groups, options = draw_transpose(args)
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    A = args.call(sc.conv_transpose_matrix, weight=weight, input_shape=input_shape,
                  groups=groups, dtype=dtype,
                  format=fmt, **options)
    if A is not None:
        dense, expected_dtype = transpose_reference(weight, input_shape, options, groups, dtype,
                                                    A.shape)
        assert A.dtype == expected_dtype and A.format == fmt
        if dense is not None:
            assert_equal(A, dense, tolerance(expected_dtype), "conv_transpose_matrix")


@FUZZ
@given(data=st.data())
def test_fractionally_strided(data):
    args = Args(data)
    _, weight, input_shape, groups, options = draw_transpose(args)
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    AU = args.call(sc.fractionally_strided, weight=weight, input_shape=input_shape,
                   groups=groups, dtype=dtype,
                   format=fmt, **options)
    if AU is not None:
        A, U = AU
        dense, expected_dtype = transpose_reference(weight, input_shape, options, groups, dtype,
                                                    (A.shape[0], U.shape[1]))
        if dense is not None:
            assert_equal((A @ U).toarray(), dense, tolerance(expected_dtype), "A @ U")


def check_operator(op, A, rng):
    """``op`` equals ``A`` on vectors and blocks, and passes the dot test."""
    complex_ = np.dtype(op.dtype).kind == "c" or A.dtype.kind == "c"
    def vec(*shape):
        v = rng.standard_normal(shape)
        return v + 1j * rng.standard_normal(shape) if complex_ else v
    rtol = tolerance(op.dtype)
    x, y, X = vec(A.shape[1]), vec(A.shape[0]), vec(A.shape[1], 3)
    Ad = A.toarray().astype(np.complex128 if complex_ else np.float64)
    assert op.shape == A.shape
    assert_equal(op.matvec(x), Ad @ x, rtol * 10 * A.shape[1], "matvec")
    assert_equal(op.rmatvec(y), Ad.conj().T @ y, rtol * 10 * A.shape[0], "rmatvec")
    assert_equal(op.matmat(X), Ad @ X, rtol * 10 * A.shape[1], "matmat")
    lhs, rhs = np.vdot(y, op.matvec(x)), np.vdot(op.rmatvec(y), x)
    scale = np.linalg.norm(x) * np.linalg.norm(y) * max(1.0, np.abs(Ad).max(initial=0))
    assert abs(lhs - rhs) <= rtol * 100 * scale * A.shape[0], (lhs, rhs)


@FUZZ
@given(data=st.data())
def test_conv_operator(data):
    args = Args(data)
    ndim, weight, input_shape, groups = draw_layer(args)
    options = draw_layer_options(args, ndim)
    flip = args.pick("flip", [False, True], BAD_FLAGS)
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    op = args.call(sc.ConvOperator, weight=weight, input_shape=input_shape, groups=groups,
                   flip=flip, dtype=dtype,
                   **options)
    if op is not None and not beyond_oracle(op.shape, resolved(options, op.weight, ndim)[0]):
        A = sc.conv_matrix(weight, input_shape, groups=groups, flip=flip, dtype=dtype, **options)
        check_operator(op, A, np.random.default_rng(0))


@FUZZ
@given(data=st.data())
def test_conv_transpose_operator(data):
    args = Args(data)
    _, weight, input_shape, groups, options = draw_transpose(args)
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    op = args.call(sc.ConvTransposeOperator, weight=weight, input_shape=input_shape,
                   groups=groups, dtype=dtype,
                   **options)
    if op is not None:
        A = sc.conv_transpose_matrix(weight, input_shape, groups=groups, dtype=dtype, **options)
        check_operator(op, A, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Selection and pooling matrices
# ---------------------------------------------------------------------------------------------
def draw_shape(args, name="input_shape", max_ndim=3):
    ndim = args.data.draw(st.integers(1, max_ndim), label="ndim")
    high = max(2, 6 - ndim)
    sizes = st.tuples(st.integers(1, 3), *[st.integers(1, high)] * ndim)
    shape = args.pick(name, rarely(st.one_of(sizes, sizes.map(np.array)),
                                   st.tuples(st.just(1), *[st.sampled_from([1, BIG])] * ndim)),
                      BAD_SIZES)
    return ndim, shape


def as_shape(shape):
    return tuple(np.asarray(shape).tolist())


@FUZZ
@given(data=st.data())
def test_im2col_matrix(data):
    args = Args(data)
    ndim, shape = draw_shape(args)
    kernel_size = args.pick("kernel_size", ints(ndim, 1, 3), BAD_POSITIVE)
    options = draw_layer_options(args, ndim)
    dtype = args.pick("dtype", [np.float64, "float32", np.complex128], BAD_DTYPES)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    P = args.call(sc.im2col_matrix, input_shape=shape, kernel_size=kernel_size, format=fmt,
                  dtype=dtype, **options)
    if P is None:
        return
    shape = as_shape(shape)
    kernel = tuple(np.broadcast_to(np.asarray(kernel_size), (ndim,)).tolist())
    channels, taps = shape[0], math.prod(kernel)
    onehot = np.eye(taps).reshape(taps, 1, *kernel)
    weight = np.concatenate([onehot] * channels)  # depthwise: channel c*K + t reads tap t of c
    stride, pads, dilation = resolved(options, weight, ndim)
    assert P.dtype == np.dtype(dtype) and P.format == fmt
    if beyond_oracle(P.shape, stride):
        sizes = conv_sizes(shape[1:], kernel, stride, pads, dilation)
        assert P.shape == (channels * taps * math.prod(sizes), math.prod(shape)), P.shape
        return
    dense = dense_conv(weight, shape, stride, pads, dilation, channels,
                       options["padding_mode"])
    assert_equal(P, dense, 0, "im2col")


@FUZZ
@given(data=st.data())
def test_pad_matrix(data):
    args = Args(data)
    ndim, shape = draw_shape(args)
    padding = args.pick("padding", paddings(ndim), BAD_PADDING)
    mode = args.pick("padding_mode", MODES, BAD_MODES)
    kernel_size = args.pick("kernel_size", st.one_of(st.none(), ints(ndim, 1, 3)),
                            [0, 1.5, "3", HUGE, (3,) * (ndim + 1)])
    dilation = args.pick("dilation", ints(ndim, 1, 2), BAD_POSITIVE)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    Pm = args.call(sc.pad_matrix, input_shape=shape, padding=padding, padding_mode=mode,
                   kernel_size=kernel_size,
                   dilation=dilation, format=fmt)
    if Pm is None:
        return
    assert not (padding == "same" and kernel_size is None), "'same' without a kernel"
    kernel = (1,) * ndim if kernel_size is None else tuple(
        np.broadcast_to(np.asarray(kernel_size), (ndim,)).tolist())
    dil = tuple(np.broadcast_to(np.asarray(dilation), (ndim,)).tolist())
    pads = per_side(padding if not isinstance(padding, np.ndarray) else tuple(padding.tolist()),
                    kernel, dil)
    x = torch_pad(basis(as_shape(shape)), pads, mode)
    assert_equal(Pm, x.reshape(x.shape[0], -1).T.numpy(), 0, "pad_matrix")


@FUZZ
@given(data=st.data())
def test_stride_matrix(data):
    args = Args(data)
    ndim, shape = draw_shape(args)
    stride = args.pick("stride", st.one_of(ints(ndim, 1, 4), st.just(BIG)), BAD_POSITIVE)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    S = args.call(sc.stride_matrix, input_shape=shape, stride=stride, format=fmt)
    if S is not None and math.prod(as_shape(shape)) > 10**4:  # no basis: one 1 a row
        assert S.nnz == S.shape[0] and S.shape[1] == math.prod(as_shape(shape))
    elif S is not None:
        x = basis(as_shape(shape)).numpy()
        step = np.broadcast_to(np.asarray(stride), (ndim,)).tolist()
        kept = x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in step)]
        assert_equal(S, kept.reshape(x.shape[0], -1).T, 0, "stride_matrix")


@FUZZ
@given(data=st.data())
def test_avg_pool_matrix(data):
    args = Args(data)
    ndim, shape = draw_shape(args)
    kernel_size = args.pick("kernel_size", ints(ndim, 1, 3), BAD_POSITIVE)
    stride = args.pick("stride", st.one_of(st.none(), ints(ndim, 1, 3)),
                       [s for s in BAD_POSITIVE if s is not None])
    padding = args.pick("padding", st.one_of(ints(ndim, 0, 1), st.integers(0, 1).map(
        lambda p: ((p, p),) * ndim)), BAD_PADDING)
    ceil_mode = args.pick("ceil_mode", [False, True], BAD_FLAGS)
    count_include_pad = args.pick("count_include_pad", [True, False], BAD_FLAGS)
    divisor_override = args.pick("divisor_override", [None, None, 1, 3, -2],  # (PyTorch takes
                                 [0, 1.5, "2", True, HUGE])  # any nonzero int: a fuzz run)
    dtype = args.pick("dtype", [np.float64, "float32"], BAD_DTYPES)
    P = args.call(sc.avg_pool_matrix, input_shape=shape, kernel_size=kernel_size, stride=stride,
                  padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                  divisor_override=divisor_override, dtype=dtype)
    if P is None:
        return
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        padding = tuple(lo for lo, _ in padding)
    if isinstance(padding, np.ndarray):
        padding = tuple(padding.tolist())
    x = basis(as_shape(shape))
    kernel = as_tuple(kernel_size, ndim)
    stride = kernel if stride is None else as_tuple(stride, ndim)
    padding = as_tuple(padding, ndim)
    if ndim == 1:  # avg_pool1d has no divisor_override: pool a trailing axis of size 1
        x, kernel, stride, padding = x[..., None], kernel + (1,), stride + (1,), padding + (0,)
    if ndim == 3 and any(k > n for k, n in zip(kernel, as_shape(shape)[1:])):
        event("avg_pool3d refuses a kernel larger than the input: not compared")
        return
    y = getattr(F, f"avg_pool{len(kernel)}d")(x, kernel, stride, padding, ceil_mode,
                                              count_include_pad, divisor_override)
    assert_equal(P, y.reshape(x.shape[0], -1).T.numpy(), tolerance(dtype), "avg_pool_matrix")


# ---------------------------------------------------------------------------------------------
# Spectra (small layers: the frequency-domain paths are not sized against the memory limit)
# ---------------------------------------------------------------------------------------------
SPECTRAL_BAD_WEIGHTS = BAD_WEIGHTS + [np.full((1, 1, 2), NAN), np.full((1, 1, 2, 2), np.inf)]
BAD_METHODS = ["svd", 1, None, "FFT"]


def draw_spectral_layer(args, methods=("auto", "fft", "dense")):
    periodic = args.data.draw(st.booleans(), label="square periodic")
    ndim, weight, input_shape, groups = draw_layer(args, max_ndim=2, max_size=6, big=False,
                                                   square=periodic)
    if "weight" in args.bad:
        weight = args.data.draw(st.sampled_from(SPECTRAL_BAD_WEIGHTS), label="bad weight")
    options = draw_layer_options(args, ndim, none=True)
    if periodic:  # the layers the FFT paths apply to, and square ones for eigenvalues
        args.bad -= {"stride", "padding", "padding_mode"}  # (drawn again: a fuzz run)
        options.update(stride=1, padding=args.pick("padding", [None, "same"], BAD_PADDING),
                       padding_mode=args.pick("padding_mode", ["circular", "zeros"], BAD_MODES))
    options["method"] = args.pick("method", methods, BAD_METHODS)
    return ndim, weight, input_shape, groups, options


def dense_layer(weight, input_shape, groups, options):
    """The explicit matrix, complex128 or float64, from PyTorch."""
    weight = np.asarray(weight)
    weight = weight.astype(np.complex128 if weight.dtype.kind == "c" else np.float64)
    stride, pads, dilation = resolved(options, weight, weight.ndim - 2)
    return dense_conv(weight, as_shape(input_shape), stride, pads, dilation, int(groups),
                      options.get("padding_mode", "zeros"))


@FUZZ
@given(data=st.data())
def test_singular_values(data):
    args = Args(data)
    _, weight, input_shape, groups, options = draw_spectral_layer(args)
    s = args.call(sc.singular_values, weight=weight, input_shape=input_shape, groups=groups,
                  **options)
    if s is not None:
        expected = np.linalg.svd(dense_layer(weight, input_shape, groups, options),
                                 compute_uv=False)
        assert_equal(s, expected, 1e-10, "singular values")


@FUZZ
@given(data=st.data())
def test_eigenvalues(data):
    args = Args(data)
    _, weight, input_shape, groups, options = draw_spectral_layer(args)
    lam = args.call(sc.eigenvalues, weight=weight, input_shape=input_shape, groups=groups,
                    **options)
    if lam is None:
        return
    A = dense_layer(weight, input_shape, groups, options)
    assert lam.shape == (A.shape[0],)
    assert np.all(np.diff(np.abs(lam)) <= 1e-12 * max(1.0, abs(lam[0]))), "not by modulus"
    # power sums are traces: well conditioned even where the eigenvalues are not
    power = np.eye(A.shape[0])
    scale = max(1.0, np.linalg.norm(A, 2))
    for k in range(1, 4):
        power = power @ A
        assert abs(np.sum(lam**k) - np.trace(power)) <= 1e-9 * A.shape[0] * scale**k, k


@FUZZ
@given(data=st.data())
def test_spectral_norm(data):
    args = Args(data)
    _, weight, input_shape, groups, options = draw_spectral_layer(
        args, ("auto", "fft", "dense", "bounds"))
    options["tol"] = args.pick("tol", [1e-7, 1e-3], [-1.0, 0.0, "x", None, NAN, True])
    result = args.call(sc.spectral_norm, weight=weight, input_shape=input_shape, groups=groups,
                       **options)
    if result is not None:
        options.pop("tol")
        norm = np.linalg.norm(dense_layer(weight, input_shape, groups, options), 2)
        slack = 1e-13 * max(norm, 1e-300)
        assert result.lower - slack <= norm <= result.upper + slack, (result, norm)
        assert result.lower <= result.value <= result.upper, result


def draw_periodic(args):
    """A layer for symbol and frequency_map: input_size is spatial, padding periodic."""
    ndim, weight, _, groups = draw_layer(args, max_ndim=2, big=False)
    args.bad.discard("input_shape")  # (not passed: input_size is; a fuzz run)
    if "weight" in args.bad:
        weight = args.data.draw(st.sampled_from(SPECTRAL_BAD_WEIGHTS), label="bad weight")
    stride = args.pick("stride", st.one_of(st.just(1), ints(ndim, 1, 2)), BAD_POSITIVE)
    dilation = args.pick("dilation", st.one_of(st.just(1), ints(ndim, 1, 2)), BAD_POSITIVE)
    input_size = args.pick("input_size", st.one_of(
        st.tuples(*[st.sampled_from([1, 2, 3, 4, 6])] * ndim), st.integers(1, 6)),
        [s for s in BAD_SIZES if s != 0])
    return ndim, weight, input_size, groups, stride, dilation


def circular_matrix(weight, input_size, groups, stride, dilation, pads):
    weight = np.asarray(weight)
    weight = weight.astype(np.complex128 if weight.dtype.kind == "c" else np.float64)
    ndim = weight.ndim - 2
    shape = (weight.shape[1] * int(groups), *as_tuple(input_size, ndim))
    return dense_conv(weight, shape, as_tuple(stride, ndim), pads, as_tuple(dilation, ndim),
                      int(groups), "wrap"), shape


@FUZZ
@given(data=st.data())
def test_symbol(data):
    args = Args(data)
    ndim, weight, input_size, groups, stride, dilation = draw_periodic(args)
    kernel = np.shape(weight)[2:] if np.ndim(weight) == ndim + 2 else (1,) * ndim
    totals = [max(0, d * (k - 1)) for k, d in zip(kernel, as_tuple(dilation, ndim)
                                          if "dilation" not in args.bad else (1,) * ndim)]
    split = st.tuples(*[st.integers(0, t).map(lambda lo, t=t: (lo, t - lo)) for t in totals])
    padding = args.pick("padding", st.one_of(st.none(), split), BAD_PADDING)
    H = args.call(sc.symbol, weight=weight, input_size=input_size, stride=stride,
                  padding=padding, dilation=dilation, groups=groups)
    if H is None:
        return
    pads = per_side("same", kernel, as_tuple(dilation, ndim)) if padding is None else padding
    A, shape = circular_matrix(weight, input_size, groups, stride, dilation, pads)
    # y^ = H x^ with x's polyphase components over the grid n // stride
    s, grid = as_tuple(stride, ndim), [n // t for n, t in zip(shape[1:], as_tuple(stride, ndim))]
    x = np.random.default_rng(1).standard_normal(shape)
    split_axes = x.reshape(shape[0], *[v for g, t in zip(grid, s) for v in (g, t)])
    order = [0] + [2 + 2 * d for d in range(ndim)] + [1 + 2 * d for d in range(ndim)]
    phases = split_axes.transpose(order).reshape(-1, *grid)
    axes = tuple(range(1, ndim + 1))
    x_hat = np.fft.fftn(phases, axes=axes)
    y_hat = np.fft.fftn((A @ x.ravel()).reshape(-1, *grid), axes=axes)
    predicted = np.einsum("...oc,c...->o...", H, x_hat)
    assert_equal(predicted, y_hat, 1e-10 * x.size, "symbol")


@FUZZ
@given(data=st.data())
def test_frequency_map(data):
    args = Args(data)
    ndim, weight, input_size, groups, stride, dilation = draw_periodic(args)
    m = args.call(sc.frequency_map, weight=weight, input_size=input_size, stride=stride,
                  dilation=dilation, groups=groups)
    if m is None:
        return
    H = sc.symbol(weight, input_size, stride=stride, dilation=dilation, groups=groups)
    assert_equal(m, np.linalg.norm(H, 2, axis=(-2, -1)), 1e-12, "frequency_map")
    kernel = np.shape(weight)[2:]
    A, _ = circular_matrix(weight, input_size, groups, stride, dilation,
                           per_side("same", kernel, as_tuple(dilation, ndim)))
    assert abs(m.max() - np.linalg.norm(A, 2)) <= 1e-10 * max(1.0, m.max())


@FUZZ
@given(data=st.data())
def test_composition_singular_values(data):
    args = Args(data)
    d = data.draw
    ndim, depth = d(st.integers(1, 2), label="ndim"), d(st.integers(1, 3), label="depth")
    channels = [d(st.integers(1, 2), label="channels") for _ in range(depth + 1)]
    layers = []
    for i in range(depth):
        kernel = tuple(d(st.integers(1, 3), label="kernel") for _ in range(ndim))
        w = np.random.default_rng(i).standard_normal((channels[i + 1], channels[i], *kernel))
        options = d(st.fixed_dictionaries({}, optional=dict(
            padding=st.sampled_from([None, "same", 1, 0]),
            padding_mode=st.sampled_from(["circular", "zeros"]),
            stride=st.sampled_from([1, 2]))), label="options")
        layers.append((w, options) if d(st.booleans(), label="pair") or options else w)
    layers = args.pick("layers", st.just(layers),
                       [[], "abc", None, [(np.ones((1, 1, 2)), None)],
                        [(np.ones((1, 1, 2)), dict(dilatoin=2))], [("abc", {})]])
    input_shape = args.pick("input_shape", st.tuples(
        st.sampled_from([channels[0], channels[0], 3]),
        *[st.sampled_from([2, 4, 5])] * ndim), BAD_SIZES)
    method = args.pick("method", ["auto", "fft", "dense"], BAD_METHODS)
    s = args.call(sc.composition_singular_values, layers=layers, input_shape=input_shape,
                  method=method)
    if s is None:
        return
    product, shape = np.eye(math.prod(input_shape)), tuple(input_shape)
    for layer in layers:
        w, options = layer if isinstance(layer, tuple) else (layer, {})
        A = dense_layer(w, shape, 1, options)
        product = A @ product
        shape = (w.shape[0], *sc.conv_output_shape(
            shape[1:], w.shape[2:], options.get("stride", 1),
            [tuple(p) for p in resolved(options, w, ndim)[1]]))
    assert_equal(s, np.linalg.svd(product, compute_uv=False), 1e-10, "composition")


# ---------------------------------------------------------------------------------------------
# Classic constructions and kernels
# ---------------------------------------------------------------------------------------------
MATRIX_MODES = ["full", "valid", "same"]


def draw_kernel(args, shape_strategy, bad):
    shape = args.data.draw(shape_strategy, label="kernel shape")
    return random_weight(args, shape, "kernel", bad)


@FUZZ
@given(data=st.data())
def test_toeplitz_matrix(data):
    args = Args(data)
    kernel = draw_kernel(args, st.tuples(st.integers(1, 5)),
                         ["k", None, np.ones((2, 2)), np.ones(0), 1.0])
    n = args.pick("n", rarely(st.integers(1, 6), st.just(BIG)),
                  [0, -1, 1.5, "6", None, True, HUGE, (6,)])
    mode = args.pick("mode", MATRIX_MODES, ["half", 1, None])
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    T = args.call(sc.toeplitz_matrix, kernel=kernel, n=n, mode=mode, dtype=dtype, format=fmt)
    if T is not None:
        expected_dtype = layer_dtype(kernel, dtype)
        assert T.dtype == expected_dtype and T.format == fmt
        reference = scipy.linalg.convolution_matrix(kernel.astype(expected_dtype), n, mode)
        assert_equal(T, reference, tolerance(expected_dtype), "toeplitz")


def convolve2d_matrix(kernel, size, mode):
    columns = [scipy.signal.convolve2d(e.reshape(size), kernel, mode).ravel()
               for e in np.eye(math.prod(size))]
    return np.array(columns).T


@FUZZ
@given(data=st.data())
def test_doubly_block_toeplitz_and_circulant(data):
    args = Args(data)
    circulant = data.draw(st.booleans(), label="circulant")
    kernel = draw_kernel(args, st.tuples(st.integers(1, 3), st.integers(1, 3)),
                         ["k", None, np.ones(3), np.ones((0, 3)), 1.0, np.ones((2, 2, 2))])
    size = args.pick("input_size", st.tuples(st.integers(1, 5), st.integers(1, 5)),
                     [(5,), (5, 5, 5), (5, 0), (5, -1), (5, 5.0), (5, True), "55", None, ()])
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    fmt = args.pick("format", FORMATS, BAD_FORMATS)
    if circulant:
        A = args.call(sc.doubly_block_circulant, kernel=kernel, input_size=size, dtype=dtype,
                      format=fmt)
    else:
        mode = args.pick("mode", MATRIX_MODES, ["half", 1, None])
        A = args.call(sc.doubly_block_toeplitz, kernel=kernel, input_size=size, mode=mode,
                      dtype=dtype, format=fmt)
    if A is None:
        return
    expected_dtype = layer_dtype(kernel, dtype)
    assert A.dtype == expected_dtype and A.format == fmt
    k = kernel.astype(expected_dtype)
    if circulant:
        pads = per_side("same", k.shape, (1, 1), flip=True)
        reference = dense_conv(k[None, None], (1, *size), (1, 1), pads, (1, 1), 1, "wrap",
                               flip=True)
    else:
        reference = convolve2d_matrix(k, size, mode)
    assert_equal(A, reference, tolerance(expected_dtype), "doubly block")


@FUZZ
@given(data=st.data())
def test_conv1x1_matrix(data):
    args = Args(data)
    weight = random_weight(args, data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3))),
                           bad=["w", None, np.ones(3), np.ones((3, 2, 2)), [["a"]],
                                np.ones((0, 2))])
    spatial = args.pick("spatial", st.one_of(st.integers(1, 4), st.tuples(
        *[st.integers(1, 3)] * data.draw(st.integers(1, 3)))),
        [0, -1, 1.5, "4", None, HUGE, (4, 0), (4, 4.0), ()])
    dtype = args.pick("dtype", GOOD_DTYPES, BAD_DTYPES)
    A = args.call(sc.conv1x1_matrix, weight=weight, spatial=spatial, dtype=dtype)
    if A is not None:
        expected_dtype = layer_dtype(weight, dtype)
        n = math.prod(np.atleast_1d(spatial).tolist())
        assert A.dtype == expected_dtype
        assert_equal(A, np.kron(weight.astype(expected_dtype), np.eye(n)),
                     tolerance(expected_dtype), "conv1x1")


@FUZZ
@given(data=st.data())
def test_dilate_and_transpose_kernel(data):
    args = Args(data)
    ndim = data.draw(st.integers(1, 3), label="ndim")
    c_in, c_out = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 2))
    weight = random_weight(args, (c_in, c_out, *data.draw(st.tuples(*[st.integers(1, 3)] * ndim))))
    dilation = args.pick("dilation", ints(ndim, 1, 3), BAD_POSITIVE)
    D = args.call(sc.dilate_kernel, weight=weight, dilation=dilation)
    if D is not None:
        kernel, d = weight.shape[2:], as_tuple(dilation, ndim)
        expected = np.zeros(weight.shape[:2] + tuple(e * (k - 1) + 1 for k, e in zip(kernel, d)),
                            dtype=np.result_type(weight, np.float64))
        expected[(Ellipsis,) + tuple(slice(None, None, e) for e in d)] = weight
        assert_equal(D, expected, 0, "dilate_kernel")
    args.bad.discard("dilation")
    groups = args.pick("groups", st.integers(1, 4), BAD_GROUPS)  # (after dilate_kernel, which
    # takes none: a fuzz run)
    T = args.call(sc.transpose_kernel, weight=weight, groups=groups)
    if T is not None:
        per_in, per_out = c_in // groups, c_out
        expected = np.empty((groups * per_out, per_in, *weight.shape[2:]),
                            dtype=np.result_type(weight, np.float64))
        for g, o, c in itertools.product(range(groups), range(per_out), range(per_in)):
            expected[g * per_out + o, c] = weight[g * per_in + c, o][(slice(None, None, -1),)
                                                                     * ndim]
        assert_equal(T, expected, 0, "transpose_kernel")


@FUZZ
@given(data=st.data())
def test_compose_kernels(data):
    args = Args(data)
    d = data.draw
    ndim, depth = d(st.integers(1, 2), label="ndim"), d(st.integers(1, 3), label="depth")
    channels = [d(st.integers(1, 2), label="channels") for _ in range(depth + 1)]
    weights = [np.random.default_rng(i).standard_normal(
        (channels[i + 1], channels[i], *d(st.tuples(*[st.integers(1, 3)] * ndim))))
        for i in range(depth)]
    weights = args.pick("weights", st.just(weights),
                        [[], ["abc"], [None], [np.ones(3)], [np.ones((1, 1, 2)), np.ones((2, 2))],
                         [np.ones((1, 1, 2)), np.ones((1, 3, 2))]])
    stride = args.pick("stride", st.one_of(st.none(), st.lists(
        ints(ndim, 1, 2), min_size=len(weights), max_size=len(weights))),
        [[0] * 3, 1, "ab", [1.5] * 3, [HUGE] * 3, [True] * 3, [1] * 4])
    dilation = args.pick("dilation", st.one_of(st.none(), st.lists(
        ints(ndim, 1, 2), min_size=len(weights), max_size=len(weights))), [[0] * 3, 2, [1] * 4])
    W = args.call(lambda weights, **kw: sc.compose_kernels(*weights, **kw), weights=weights,
                  stride=stride, dilation=dilation)
    if W is None:
        return
    strides = [as_tuple(s, ndim) for s in (stride or [1] * depth)]
    dilations = [as_tuple(e, ndim) for e in (dilation or [1] * depth)]
    total = tuple(math.prod(s[a] for s in strides) for a in range(ndim))
    size = tuple(k + 2 * t for k, t in zip(W.shape[2:], total))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, channels[0], *size)))
    conv = getattr(F, f"conv{ndim}d")
    y = x
    for w, s, e in zip(weights, strides, dilations):
        y = conv(y, torch.from_numpy(w), stride=s, dilation=e)
    direct = conv(x, torch.from_numpy(W), stride=total)
    assert_equal(direct.numpy(), y.numpy(), 1e-12, "compose_kernels")


# ---------------------------------------------------------------------------------------------
# Shapes and receptive fields, against the formulas written out here
# ---------------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_receptive_field_size(data):
    args = Args(data)
    depth = data.draw(st.integers(1, 4), label="depth")
    layer = st.integers(1, 4)
    kernel_size = args.pick("kernel_size", st.lists(layer, min_size=depth, max_size=depth),
                            [[], 3, "33", [0], [3.0], [True], [HUGE], None])
    stride = args.pick("stride", st.one_of(st.none(), st.lists(
        layer, min_size=depth, max_size=depth)), [[0] * depth, "ab", 5, [1.5] * depth])
    dilation = args.pick("dilation", st.one_of(st.none(), st.lists(
        layer, min_size=depth, max_size=depth)), [[0] * depth, 2, [None] * depth])
    r = args.call(sc.receptive_field_size, kernel_size=kernel_size, stride=stride,
                  dilation=dilation)
    if r is not None:
        expected = 1  # from the last layer down: each unit reads (k-1)*d+1 units below it
        for k, s, e in reversed(list(zip(kernel_size, stride or [1] * depth,
                                         dilation or [1] * depth))):
            expected = (expected - 1) * s + e * (k - 1) + 1
        assert r == expected, (r, expected)


@FUZZ
@given(data=st.data())
def test_output_shapes(data):
    args = Args(data)
    ndim = data.draw(st.integers(1, 3), label="ndim")
    transposed = data.draw(st.booleans(), label="transposed")
    input_size = args.pick("input_size", st.one_of(st.integers(1, 9), st.tuples(
        *[st.integers(1, 9)] * ndim)), [(0,) * ndim, (-1,) * ndim, "88", None, (), 1.5])
    ndim = len(input_size) if isinstance(input_size, tuple) and input_size else ndim
    kernel_size = args.pick("kernel_size", ints(ndim, 1, 4), BAD_POSITIVE)
    stride = args.pick("stride", ints(ndim, 1, 3), BAD_POSITIVE)
    dilation = args.pick("dilation", ints(ndim, 1, 3), BAD_POSITIVE)
    padding = args.pick("padding", paddings(ndim, strings=not transposed), BAD_PADDING)
    if transposed:
        output_padding = args.pick("output_padding", ints(ndim, 0, 2),
                                   [-1, True, 1.5, "0", None, HUGE])
        out = args.call(sc.conv_transpose_output_shape, input_size=input_size,
                        kernel_size=kernel_size, stride=stride, padding=padding,
                        output_padding=output_padding, dilation=dilation)
    else:
        out = args.call(sc.conv_output_shape, input_size=input_size, kernel_size=kernel_size,
                        stride=stride, padding=padding, dilation=dilation)
    if out is None:
        return
    n, k, s, e = (as_tuple(v, ndim) for v in (input_size, kernel_size, stride, dilation))
    pads = per_side(tuple(padding.tolist()) if isinstance(padding, np.ndarray) else padding,
                    k, e)
    if transposed:
        op = as_tuple(output_padding, ndim)
        expected = tuple((ni - 1) * si - lo - hi + ei * (ki - 1) + opi + 1
                         for ni, ki, si, ei, (lo, hi), opi in zip(n, k, s, e, pads, op))
    else:
        expected = tuple((ni + lo + hi - ei * (ki - 1) - 1) // si + 1
                         for ni, ki, si, ei, (lo, hi) in zip(n, k, s, e, pads))
    assert min(expected) >= 1, f"an empty output accepted: {expected}"
    assert out == (expected[0] if isinstance(input_size, int) else expected), (out, expected)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
CLI_VALUES = {
    "--in-shape": ["1,5", "2,4,4", "1,3,3,3", "0,4", "2,-4", "a", "", "2,4.5", "1,99999999999"],
    "--out-channels": ["1", "2", "0", "-1", "x"],
    "--kernel-size": ["1", "3", "2,2", "0", "9", "x"],
    "--stride": ["1", "2", "1,2", "0", "x"],
    "--padding": ["0", "1", "1,0", "valid", "same", "full", "-1", "half"],
    "--dilation": ["1", "2", "0"],
    "--groups": ["1", "2", "3", "0"],
    "--padding-mode": ["zeros", "circular", "reflect", "replicate", "mirror"],
    "--seed": ["0", "7", "-1", "x"],
    "--dtype": ["float64", "float32", "float16"],
    "--format": ["csr", "csc", "coo", "dense"],
    "--max-bins": ["4", "64", "0", "x"],
}
CLI_FLAGS = ["--values", "--raw"]


@settings(FUZZ, max_examples=30, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_cli(data, tmp_path_factory, capsys):
    pytest.importorskip("matplotlib").use("Agg")
    command = data.draw(st.sampled_from(["info", "spy", "spectrum", "export"]), label="command")
    options = data.draw(st.lists(st.sampled_from(sorted(CLI_VALUES)), max_size=5, unique=True),
                        label="options")
    argv = [command]
    if data.draw(st.integers(0, 9), label="in-shape given") > 0:
        options = ["--in-shape", *[o for o in options if o != "--in-shape"]]
    for option in options:
        argv += [option, data.draw(st.sampled_from(CLI_VALUES[option]), label=option)]
    argv += data.draw(st.lists(st.sampled_from(CLI_FLAGS), max_size=2, unique=True))
    if command != "info" and data.draw(st.integers(0, 9), label="output given") > 0:
        argv += ["-o", str(tmp_path_factory.mktemp("out") / data.draw(
            st.sampled_from(["m.npz", "m", "m.png", "m.txt"]), label="output"))]
    capsys.readouterr()
    try:
        with time_limit():
            status = cli.main(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2, (argv, exc.code, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert err.startswith("sparseconv"), (argv, err)
        return
    assert status == 0, argv
