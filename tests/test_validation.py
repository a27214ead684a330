"""Validation: every bad argument raises a clear error, naming the argument and the value."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import sparseconv
import sparseconv as sc
from sparseconv import conv_matrix, conv_transpose_matrix

from ._oracles import assert_close, requires_torch, torch_conv

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


def test_an_input_passed_as_its_shape_is_named_by_type_and_shape_not_printed():
    """A new user's trial: the input tensor itself as ``input_shape`` printed every entry."""
    for value, kind in ((np.zeros((2, 8, 8)), "ndarray"), (np.zeros((1, 2, 8, 8)), "ndarray")):
        with pytest.raises(TypeError) as caught:
            conv_matrix(W2, value)
        assert str(caught.value) == (
            f"input_shape must be a tuple of positive integers, got a {kind} of shape "
            f"{value.shape} (the input itself? pass its shape without the batch axis: "
            "x.shape[1:])")
    assert conv_matrix(W2, np.array([2, 8, 8])).shape == conv_matrix(W2, (2, 8, 8)).shape


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_one_element_tuple_is_every_axis_as_in_pytorch(ndim):
    """PyTorch's conv*d, conv_transpose*d and pooling take stride=(2,), padding=(1,),
    dilation=(2,), output_padding=(1,), kernel_size=(2,) for every axis (and its modules keep
    them so): a new user's trial found such values refused. Each equals the int."""
    rng = np.random.default_rng(ndim)
    w = rng.standard_normal((2, 2, *(3,) * ndim))
    shape = (2, *(7,) * ndim)
    one = dict(stride=(2,), padding=(1,), dilation=(2,))
    ints = dict(stride=2, padding=1, dilation=2)
    assert (conv_matrix(w, shape, **one) != conv_matrix(w, shape, **ints)).nnz == 0
    op = sparseconv.ConvOperator(w, shape, **one)
    assert op.geometry == sparseconv.ConvOperator(w, shape, **ints).geometry
    t_one = conv_transpose_matrix(w, shape, output_padding=(1,), **one)
    t_int = conv_transpose_matrix(w, shape, output_padding=1, **ints)
    assert (t_one != t_int).nnz == 0
    assert sparseconv.conv_transpose_output_shape(shape[1:], w.shape[2:], output_padding=(1,),
                                                  **one) == \
        sparseconv.conv_transpose_output_shape(shape[1:], w.shape[2:], output_padding=1, **ints)
    pool_one = sparseconv.avg_pool_matrix(shape, (2,), stride=(1,), padding=(1,))
    assert (pool_one != sparseconv.avg_pool_matrix(shape, 2, stride=1, padding=1)).nnz == 0
    assert np.array_equal(sparseconv.dilate_kernel(w, (2,)), sparseconv.dilate_kernel(w, 2))
    # a tuple of another length is still refused, by name
    with pytest.raises(ValueError, match=r"stride has 4 values for \d ax[ie]s: it must be .* "
                                         r"got \(2, 2, 2, 2\)"):
        conv_matrix(w, shape, stride=(2, 2, 2, 2))


def test_numpy_integer_arrays_are_accepted_as_tuples():
    w = np.ones((2, 1, 3, 3))
    a = conv_matrix(w, (1, 9, 9), stride=np.array([1, 2]), dilation=np.array([2, 1]))
    b = conv_matrix(w, (1, 9, 9), stride=(1, 2), dilation=(2, 1))
    assert abs(a - b).max() == 0
    with pytest.raises(TypeError, match="stride"):
        conv_matrix(w, (1, 9, 9), stride=np.array([1.0, 2.0]))


@pytest.mark.parametrize("build", [
    lambda dtype: sparseconv.conv_matrix(np.ones((1, 1, 2)) + 1j, (1, 3), dtype=dtype),
    lambda dtype: sparseconv.ConvOperator(np.ones((1, 1, 2)) + 1j, (1, 3), dtype=dtype),
    lambda dtype: sparseconv.toeplitz_matrix(np.ones(2) + 1j, 3, dtype=dtype),
    lambda dtype: sparseconv.conv1x1_matrix(np.ones((1, 1)) + 1j, 3, dtype=dtype),
], ids=["conv_matrix", "ConvOperator", "toeplitz_matrix", "conv1x1_matrix"])
def test_a_real_dtype_for_a_complex_weight_is_refused_by_name(build):
    """Found by tests/test_fuzz.py: the imaginary part was dropped with numpy's
    ComplexWarning instead of a TypeError naming dtype."""
    with pytest.raises(TypeError, match="dtype=float64 would discard the imaginary part"):
        build(np.float64)
    assert build(np.complex64).dtype == np.complex64


@pytest.mark.parametrize("build", [
    lambda w, dtype: sparseconv.conv_matrix(w, (1, 5), dtype=dtype),
    lambda w, dtype: sparseconv.ConvOperator(w, (1, 5), dtype=dtype),
    lambda w, dtype: sparseconv.conv_transpose_matrix(w, (1, 5), dtype=dtype),
], ids=["conv_matrix", "ConvOperator", "conv_transpose_matrix"])
def test_an_integer_dtype_that_would_change_the_weight_is_refused_by_name(build):
    """numpy's astype truncated 0.4 to 0 (and 300 to 44 in int8) without a word: the
    matrix was silently another layer's."""
    w = np.array([[[1.0, 0.4, 2.0]]])
    with pytest.raises(TypeError, match=r"dtype=int64 would change the float64 weight's "
                                        r"entries \(0\.4 at index \(0, 0, 1\) becomes 0\)"):
        build(w, np.int64)
    with pytest.raises(TypeError, match=r"dtype=bool would change .* becomes True"):
        build(w, bool)
    with pytest.raises(TypeError, match=r"dtype=int8 would change .*300\.0 .* becomes 44"):
        build(w * 0 + 300.0, np.int8)
    with pytest.raises(TypeError, match=r"dtype=int64 would change .*nan"):
        build(w * np.nan, np.int64)
    exact = build(np.array([[[1.0, -2.0, 3.0]]]), np.int16)  # entries it holds: kept
    dense = exact.tosparse() if hasattr(exact, "tosparse") else exact
    assert dense.dtype == np.int16
    assert set(np.unique(dense.toarray())) <= {-2, 0, 1, 3}


@pytest.mark.parametrize("build", [
    lambda w, dtype, mode: sparseconv.conv_matrix(w, (1, 2, 2), padding=1, padding_mode=mode,
                                                  dtype=dtype),
    lambda w, dtype, mode: sparseconv.conv_matrix(w, (1, 2, 2), padding=1, padding_mode=mode,
                                                  dtype=dtype, rows=slice(1, 3)),
    lambda w, dtype, mode: sparseconv.conv_matrix(w, (1, 2, 2), padding=1, padding_mode=mode,
                                                  dtype=dtype, layout="channels_last",
                                                  format="bsr"),
    lambda w, dtype, mode: sparseconv.block_conv_matrix(w, (1, 2, 2), padding=1,
                                                        padding_mode=mode, dtype=dtype),
    lambda w, dtype, mode: sparseconv.doubly_block_circulant(w[0, 0], (2, 2), dtype=dtype),
], ids=["conv_matrix", "rows", "channels_last_bsr", "block_conv_matrix",
        "doubly_block_circulant"])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_an_integer_dtype_that_cannot_hold_the_folded_entries_is_refused(build, mode):
    """A review: padding that folds taps onto one input position sums them in the requested
    dtype, so int8 wrapped 100 + 100 to -56 and bool made 1 + 1 True, each weight entry
    being representable."""
    w = np.full((1, 1, 3, 3), 100.0)
    truth = build(w, np.float64, mode).toarray()
    assert truth.max() > 127  # the case: each tap fits int8, their sums do not
    with pytest.raises(TypeError, match=r"dtype=int8 cannot hold the matrix's entries|"
                                        r"dtype=int8 would change the matrix's entries"):
        build(w, np.int8, mode)
    with pytest.raises(TypeError, match=r"dtype=bool (cannot hold|would change) the matrix's"):
        build(w / 100, bool, mode)
    exact = build(w, np.int16, mode)  # sums it holds: the float64 matrix, exactly
    assert exact.dtype == np.int16
    assert np.array_equal(exact.toarray(), truth)


def test_an_object_passed_as_weight_is_named():
    """sc.spectral_norm(a_conv_operator, ...) said only "got dtype object"."""
    op = sparseconv.ConvOperator(np.ones((1, 1, 3)), (1, 5))
    with pytest.raises(TypeError, match=r"^weight must be a numeric array, got ConvOperator, "
                                        r"dtype object$"):
        sparseconv.spectral_norm(op, (1, 5))
    with pytest.raises(TypeError, match=r"^weight must be a numeric array, got dtype <U1$"):
        sparseconv.conv_matrix([["a"]], (1, 5))


@pytest.mark.parametrize("build", [
    lambda w: sparseconv.spectral_norm(w, (1, 5)).upper,
    lambda w: sparseconv.conv_matrix(w, (1, 5)).toarray(),
    lambda w: sparseconv.ConvOperator(w, (1, 5)).matvec(np.ones(5))])
def test_a_masked_weight_is_refused_where_an_entry_is_masked(build):
    """A review: a masked tap's hidden value was read (norm 5.84 for ``[--, 1]``, where the
    taps as zeros give 1): a masked entry is refused, a mask of none read as the array."""
    hidden = np.ma.array([[[5.0, 1.0]]], mask=[[[True, False]]])
    with pytest.raises(TypeError, match=r"^weight is a masked array with masked entries "
                                        r"\(index \(0, 0, 0\)\), .* weight.filled\(0\)"):
        build(hidden)
    np.testing.assert_array_equal(build(np.ma.array([[[5.0, 1.0]]], mask=False)),
                                  build(np.array([[[5.0, 1.0]]])))
    np.testing.assert_array_equal(build(hidden.filled(0)), build(np.array([[[0.0, 1.0]]])))


def test_a_zero_dimensional_array_is_a_number():
    """A 0-d array (what numpy reductions and np.asarray(x) return) passes where a number does,
    as in scipy; a 1-d array of one number does not."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    given = sparseconv.spectral_norm(w, (2, 6, 6), padding=1, tol=np.array(1e-5))
    assert given == sparseconv.spectral_norm(w, (2, 6, 6), padding=1, tol=1e-5)
    with pytest.raises(TypeError, match=r"tol must be a number in \[1e-15, 1\), got array\(\["):
        sparseconv.spectral_norm(w, (2, 6, 6), padding=1, tol=np.array([1e-5]))
    with pytest.raises(ValueError, match="tol must be a finite number"):
        sparseconv.spectral_norm(w, (2, 6, 6), padding=1, tol=np.array(0.0))
    with pytest.raises(TypeError, match="tol must be a number"):
        sparseconv.spectral_norm(w, (2, 6, 6), padding=1, tol=np.array(True))


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
                    reason="longdouble is float64 on this platform")
@pytest.mark.parametrize("spectrum", [
    lambda w: sparseconv.spectral_norm(w, (2, 6, 6), padding=1).upper,
    lambda w: sparseconv.toeplitz_norm(w).upper,
    lambda w: sparseconv.singular_values(w, (2, 6, 6), padding_mode="circular").max(),
    lambda w: sparseconv.circular_svd(w, (2, 6, 6)).cond(),
    lambda w: sparseconv.composition_singular_values([w, w], (2, 6, 6)).max(),
], ids=["spectral_norm", "toeplitz_norm", "singular_values", "circular_svd", "composition"])
def test_a_longdouble_weight_is_read_in_double_precision_only_where_that_is_exact(spectrum):
    """A review: 1e-4940 in longdouble underflowed to 0 in the spectra's float64, and
    spectral_norm and toeplitz_norm certified the interval [0, 0] for a nonzero layer."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    assert spectrum(w.astype(np.longdouble)) == spectrum(w)  # float64 values: the same
    two = np.longdouble(2)
    for wide, entry in ((w.astype(np.longdouble) * two ** -16000, "becomes 0.0"),
                        (w.astype(np.longdouble) + two ** -60, "at index"),
                        (w.astype(np.clongdouble) * two ** 1100, "becomes \\(inf")):
        with pytest.raises(TypeError, match=rf"weight of dtype {wide.dtype} has entries "
                                            rf"(float64|complex128) cannot hold .*{entry}"):
            spectrum(wide)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_an_integer_dtype_is_checked_against_every_entry_before_rows_are_built(mode):
    """A new user's trial: rows that hold no folded sum (an empty row block, the check
    ``sparseconv.dask.conv_matrix`` runs before its tasks) were accepted, and the row blocks
    that do hold one were refused only where they were built (on a Dask worker)."""
    w = np.full((2, 1, 3, 3), 10.0)
    w[1] = 100.0  # one output channel's sums pass int8 (each tap fits), not the other's
    for rows in (slice(0, 0), slice(0, 1), slice(7, 8)):
        with pytest.raises(TypeError, match=r"^dtype=int8 cannot hold the matrix's entries"):
            sparseconv.conv_matrix(w, (1, 2, 2), padding=1, padding_mode=mode, dtype=np.int8,
                                   rows=rows)
    held = sparseconv.conv_matrix(w, (1, 2, 2), padding=1, padding_mode=mode, dtype=np.int16)
    assert np.array_equal(held.toarray(), sparseconv.conv_matrix(
        w, (1, 2, 2), padding=1, padding_mode=mode).toarray())


def test_integer_entries_are_checked_not_partial_sums_and_summed_exactly():
    """A review of the fold check: a partial sum over the first axis (100 + 100) was refused
    though every entry fits int8, and doubly_block_circulant rounded int64 sums beyond 2**53
    (in float64) where conv_matrix summed them exactly."""
    w = np.array([[-50, 100, -50], [-50, 100, -50], [0, 0, 0]], dtype=np.int8)[None, None]
    truth = sparseconv.conv_matrix(w.astype(float), (1, 2, 2), padding=1,
                                   padding_mode="replicate").toarray()
    assert np.abs(truth).max() <= 127
    held = sparseconv.conv_matrix(w, (1, 2, 2), padding=1, padding_mode="replicate",
                                  dtype=np.int8)
    assert held.dtype == np.int8 and np.array_equal(held.toarray(), truth)
    big = np.array([[2**53, 5, 1]], dtype=np.int64)
    entry = 2**53 + 1  # the taps 2**53 and 1 wrap onto one entry of a 2-wide torus
    circulant = sparseconv.doubly_block_circulant(big, (1, 2), dtype=np.int64).toarray()
    direct = sparseconv.conv_matrix(big[None, None], (1, 1, 2), padding="same",
                                    padding_mode="circular", flip=True, dtype=np.int64)
    assert int(circulant[0, 1]) == int(direct.toarray()[0, 1]) == entry


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
                    reason="longdouble is float64 on this platform")
def test_a_longdouble_nan_is_refused_as_not_finite():
    """A review: NaN != NaN made the longdouble check call a NaN a value float64 cannot
    hold (TypeError), where float64's NaN gets the documented ValueError."""
    w = np.ones((1, 1, 3, 3), np.longdouble)
    w[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="weight must have finite entries, got nan"):
        sparseconv.spectral_norm(w, (1, 5, 5))


@pytest.mark.parametrize("call", [
    lambda w, s: sparseconv.spectral_norm(w, s, method=None),
    lambda w, s: sparseconv.singular_values(w, s, method=None),
    lambda w, s: sparseconv.circular_svd(w, s, padding_mode=None),
    lambda w, s: sparseconv.clip_singular_values(w, s, max=1.0, support=1),
    lambda w, s: sparseconv.conv_matrix(w, s, format=None),
    lambda w, s: sparseconv.conv_matrix(w, s, padding_mode=0),
    lambda w, s: sparseconv.interpolate_matrix(s, size=(8, 8), mode=None),
    lambda w, s: sparseconv.toeplitz_matrix([1.0], 3, 1),
], ids=["spectral_norm", "singular_values", "circular_svd", "clip", "format", "padding_mode",
        "interpolate", "toeplitz"])
def test_a_choice_of_the_wrong_type_is_a_type_error_everywhere(call):
    """A new user's trial: method=None was a ValueError in spectral_norm and a TypeError in
    singular_values; padding_mode=None the reverse in circular_svd; support=1 a ValueError.
    One rule now (_validation.one_of): no string is a TypeError, another string a
    ValueError."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    with pytest.raises(TypeError, match=r"must be"):
        call(w, (2, 8, 8))


@requires_torch
def test_a_2d_integer_array_padding_is_read_as_per_side_pairs():
    """padding as a 2-D integer array, a (lo, hi) row per axis, as the tuple of pairs."""
    rng = np.random.default_rng(1)
    w, x = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((1, 6, 7))
    A = conv_matrix(w, x.shape, padding=np.array([[0, 2], [1, 1]]))
    expected = torch_conv(x[None], w, padding=((0, 2), (1, 1)))
    assert_close(A @ x.ravel(), expected.ravel(), "2-D array padding")


@pytest.mark.parametrize("value,dtype", [(2**53 + 1, np.int64), (-(2**53) - 1, np.int64),
                                         (2**64 - 1, np.uint64)])
def test_integer_weights_float64_would_round_are_refused_by_name(value, dtype):
    """Mutants this catch: _validation_arrays.py: ``(a > 2**53) | (a < -2**53)`` -> ``a >
    2**53`` (a large negative weight silently rounded), and ``itemsize >= 8`` -> ``> 8`` (no
    64-bit integer checked): float64 cannot hold these integers (Fraction says so), and the
    builders refuse them, naming the argument and the value."""
    assert Fraction(float(value)) != Fraction(value)
    weight = np.array([[[1, value, 2]]], dtype=dtype)
    for build in (sc.conv_matrix, sc.spectral_norm):
        with pytest.raises(ValueError, match=rf"weight must have integer .*{value}"):
            build(weight, (1, 5))
    assert sc.conv_matrix(np.array([[[1, 2**53, -(2**53)]]], dtype=np.int64),
                          (1, 3)).toarray().tolist() == [[1.0, 2.0**53, -(2.0**53)]]


def test_workers_count_back_from_the_cores_this_process_may_use():
    """A new user's trial under ``taskset -c 1``: ``workers=-1`` counted the machine's two
    cores, where the process may use one."""
    import os
    import threading

    from sparseconv._validation import worker_count

    one = {min(os.sched_getaffinity(0))}
    seen = {}

    def restricted():  # (a thread's affinity, as taskset sets a process's)
        os.sched_setaffinity(0, one)
        seen["every"] = worker_count(-1)
        try:
            worker_count(-2)
        except ValueError as error:
            seen["error"] = str(error)

    thread = threading.Thread(target=restricted)
    thread.start()
    thread.join()
    assert seen["every"] == 1 and "the 1 core this process may use" in seen.get("error", ""), seen


# -- byte order (a review: big-endian weights, as FITS, HDF5 and some .npy files hold them) --
BIG = np.arange(1.0, 19.0).reshape(2, 1, 3, 3).astype(">f8")
BYTE_ORDER_BUILDS = {
    "conv_matrix": lambda w, d: sc.conv_matrix(w, (1, 5, 5), padding=1, dtype=d),
    "conv_matrix-bsr": lambda w, d: sc.conv_matrix(w, (1, 5, 5), padding=1, dtype=d,
                                                   format="bsr"),
    "conv_matrix-coo": lambda w, d: sc.conv_matrix(w, (1, 5, 5), dtype=d, format="coo"),
    "conv_transpose_matrix": lambda w, d: sc.conv_transpose_matrix(w, (2, 5, 5), stride=2,
                                                                   dtype=d),
    "block_conv_matrix": lambda w, d: sc.block_conv_matrix(w, (1, 5, 5), dtype=d),
    "conv1x1_matrix": lambda w, d: sc.conv1x1_matrix(w[:, :, :1, :1], (5, 5), dtype=d),
    "toeplitz_matrix": lambda w, d: sc.toeplitz_matrix(w[0, 0, 0], 6, dtype=d),
    "doubly_block_toeplitz": lambda w, d: sc.doubly_block_toeplitz(w[0, 0], (4, 4), dtype=d),
    "doubly_block_circulant": lambda w, d: sc.doubly_block_circulant(w[0, 0], (4, 4), dtype=d),
    "ConvOperator": lambda w, d: sc.ConvOperator(w, (1, 5, 5), padding=1, dtype=d).tosparse(),
    "ConvTransposeOperator": lambda w, d: sc.ConvTransposeOperator(w, (2, 5, 5),
                                                                   dtype=d).tosparse(),
    # (no weight: their dtype argument alone, against the native float64 built by default)
    "interpolate_matrix": lambda w, d: sc.interpolate_matrix((1, 4), 8, mode="linear",
                                                             **({} if d is None else {
                                                                 "dtype": d})),
    "avg_pool_matrix": lambda w, d: sc.avg_pool_matrix((1, 6), 2,
                                                       **({} if d is None else {"dtype": d})),
}
WEIGHTLESS = ("interpolate_matrix", "avg_pool_matrix")


@pytest.mark.parametrize("name, dtype", [
    (name, dtype) for name in sorted(BYTE_ORDER_BUILDS) for dtype in (None, ">f8", ">c16")
    if name not in WEIGHTLESS or dtype == ">f8"])  # (a review: theirs cannot fail otherwise)
def test_big_endian_weights_and_dtypes_give_native_matrices(name, dtype):
    """The matrix of a big-endian weight, or for a big-endian ``dtype``, is the one of the
    native weight, in the native dtype, which scipy.sparse computes with (before: ``>f8``
    matrices scipy refused, or scipy's raw error at construction)."""
    build = BYTE_ORDER_BUILDS[name]
    big = build(BIG, dtype)
    native = build(BIG.astype("<f8"), None if dtype is None or name in WEIGHTLESS
                   else np.dtype(dtype).newbyteorder("="))
    assert big.dtype.isnative and big.dtype == native.dtype, (big.dtype, native.dtype)
    assert (abs(big - native)).max() == 0 and big.nnz == native.nnz
    v = np.random.default_rng(0).standard_normal(big.shape[1])
    np.testing.assert_allclose(big @ v, native.toarray() @ v, rtol=1e-13, atol=1e-13)


def test_a_big_endian_input_to_an_operator_gives_a_native_result():
    op = sc.ConvOperator(BIG, (1, 5, 5), padding=1)
    assert op.weight.dtype.isnative  # (torch.from_numpy refuses another byte order)
    x = np.arange(25.0).astype(">f8")
    y = op @ x
    assert y.dtype == np.float64 and y.dtype.isnative
    np.testing.assert_allclose(
        y, sc.conv_matrix(BIG.astype("<f8"), (1, 5, 5), padding=1) @ x.astype("<f8"), rtol=1e-13)
    g = op.rmatvec(y.astype(">f8"))
    assert g.dtype.isnative


@pytest.mark.parametrize("value", [np.float32(1.0), np.int64(2), np.complex128(0)])
def test_a_numpy_scalar_value_is_no_dtype(value):
    """A review: ``dtype=np.float32(1.0)`` gave a float32 matrix where ``dtype=1.0`` is
    refused; numpy's ``np.dtype`` takes a scalar value for its type."""
    with pytest.raises(TypeError, match=r"dtype must be a numpy numeric dtype, got the value"):
        sc.conv_matrix(W2, (2, 8, 8), dtype=value)
    with pytest.raises(TypeError, match="dtype"):
        sc.ConvOperator(W2, (2, 8, 8), dtype=value)


@pytest.mark.parametrize("build, named", [
    (lambda: sc.conv_transpose_matrix(W2, (4, 5, 5), stride=2**60),
     "stride=(1152921504606846976"),
    (lambda: sc.ConvTransposeOperator(W2, (4, 5, 5), dilation=2**60),
     "dilation=(1152921504606846976"),
    (lambda: sc.conv_transpose_matrix(W2, (4, 5, 5), stride=2**59, output_padding=2**59 - 1),
     "output_padding=(576460752303423487"),
    (lambda: sc.conv_transpose_output_shape(5, 3, stride=2**60), "stride=(1152921504606846976"),
    (lambda: sc.ConvOperator(np.ones((4, 2, 3)), (2, 5), padding="full", dilation=2**59),
     "dilation=(576460752303423488,) and padding (1152921504606846976, 1152921504606846976)"),
    (lambda: sc.ConvOperator(W2, (2, 5, 5), padding=2**60),
     "padding (1152921504606846976, 1152921504606846976)"),
    (lambda: sc.ConvOperator(W2, (2, 5, 5), padding=2**59),
     "padding (576460752303423488, 576460752303423488)"),
    (lambda: sc.conv_matrix(W2, (2, 5, 5), padding=(2**60, 0)),
     "along spatial axis 0 is larger than 2**60 (int64 index arithmetic): from input size 5 "
     "with kernel_size=(3, 3), dilation=(1, 1) and padding (1152921504606846976, "),
    (lambda: sc.conv_output_shape(5, 3, padding=2**60), "padding (1152921504606846976, "),
], ids=["transposed-stride", "transposed-dilation", "transposed-output_padding",
        "transposed-shape", "full-padding-dilation", "operator-padding",
        "operator-half-padding", "matrix-padding", "shape"])
def test_an_output_past_int64_names_the_argument_that_made_it(build, named):
    """A review: a huge stride, dilation or padding was blamed on ``input_shape`` (the size it
    made, checked as the input of the adjoint's correlation)."""
    with pytest.raises(ValueError, match="larger than 2\\*\\*60") as info:
        build()
    assert named in str(info.value) and "input_shape must" not in str(info.value), info.value


@pytest.mark.parametrize("build", [
    lambda pm: sc.conv_transpose_matrix(W2, (4, 5, 5), padding_mode=pm),
    lambda pm: sc.ConvTransposeOperator(W2, (4, 5, 5), padding_mode=pm),
], ids=["matrix", "operator"])
@pytest.mark.parametrize("mode, error", [(np.array(["zeros", "zeros"]), TypeError),
                                         (None, TypeError), ("reflect", ValueError)])
def test_a_transposed_padding_mode_is_refused_by_name(build, mode, error):
    """A review: an array raised numpy's "truth value of an array is ambiguous"."""
    with pytest.raises(error, match="padding_mode must be 'zeros' for a transposed"):
        build(mode)


@pytest.mark.parametrize("name", ["float32", "complex128"])
def test_a_dtype_name_from_a_numpy_array_is_a_name(name):
    """A review: ``np.str_`` is a numpy scalar too, and was refused as a value."""
    for given in (np.array([name])[0], np.bytes_(name.encode())):
        assert sc.conv_matrix(np.ones((1, 1, 3)), (1, 5), dtype=given).dtype == name
        assert sc.avg_pool_matrix((1, 6), 2, dtype=given).dtype == name


@pytest.mark.parametrize("dtype", ["f2", ">f2", "<f2", np.float16])
def test_float16_is_refused_in_any_byte_order(dtype):
    """A review: ``">f2"`` passed the float16 check (compared in its byte order) and gave
    float32 silently."""
    with pytest.raises(TypeError, match="dtype=float16 is not supported"):
        sc.conv_matrix(np.ones((1, 1, 3)), (1, 5), dtype=dtype)
    with pytest.raises(TypeError, match="dtype=float16 is not supported"):
        sc.ConvOperator(np.ones((1, 1, 3)), (1, 5), dtype=dtype)


def test_receptive_field_paths_reads_its_dtype_as_every_builder_does():
    """A review: ``'>i8'`` was refused and ``np.float64(0.0)`` (a value) taken for float64."""
    g = sc.ConvGeometry.from_weight((1, 1, 3), (1, 8))
    assert sc.receptive_field_paths(g, dtype=">i8").dtype == np.int64
    with pytest.raises(ValueError, match="dtype must be numpy.int64"):
        sc.receptive_field_paths(g, dtype=np.float64(0.0))
