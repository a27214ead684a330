"""conv_matrix and conv_transpose_matrix against PyTorch, a dense definition and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.sparse as sp

import sparseconv
from sparseconv import _matrices as matrices_module
from sparseconv import conv_matrix, conv_transpose_matrix

from ._oracles import (
    PERIODIC,
    F,
    assert_close,
    dense_conv,
    per_side,
    periodic_pads,
    random_array,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch,
    torch_conv,
    torch_conv_transpose,
)


@requires_torch
@pytest.mark.parametrize("seed", range(120))
def test_conv_matrix_matches_torch(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=9 - 2 * (seed % 3))
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    x = random_array(rng, (2, *layer.input_shape))  # a batch of two: matrix columns
    y = torch_conv(x, layer.weight, **layer.kwargs)
    assert A.shape == (y[0].size, x[0].size), layer
    assert_close((A @ x.reshape(2, -1).T).T, y.reshape(2, -1), layer)
    assert A.has_canonical_format and A.format == "csr"
    B = A.copy()  # canonical: sorted, no duplicates, no explicit structure lost
    B.has_canonical_format = False
    B.sum_duplicates()
    assert B.nnz == A.nnz and np.array_equal(B.indices, A.indices), layer


@pytest.mark.parametrize("seed", range(60))
def test_conv_matrix_matches_dense_definition(seed):
    rng = np.random.default_rng(1000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - 2 * (seed % 3), max_channels=2)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    x = random_array(rng, layer.input_shape)
    assert_close(A @ x.ravel(), dense_conv(x, layer.weight, **layer.kwargs).ravel(), layer)
    # the stored entries are exactly the nonzeros of the dense matrix (none lost, none extra)
    dense = np.stack([dense_conv(e.reshape(layer.input_shape), layer.weight, **layer.kwargs).ravel()
                      for e in np.eye(x.size)], axis=1)
    assert_close(A.toarray(), dense, layer)


@pytest.mark.parametrize("seed", range(8))
def test_four_spatial_axes_follow_the_same_rules(seed):
    """The README's "any higher rank by the same rules" (PyTorch stops at 3-D): a 4-D layer's
    matrix, operator, adjoint and norm against the dense definition."""
    rng = np.random.default_rng(3000 + seed)
    layer = random_layer(rng, ndim=4, max_size=3, max_channels=2)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    dense = np.stack([dense_conv(e.reshape(layer.input_shape), layer.weight, **layer.kwargs)
                      .ravel() for e in np.eye(A.shape[1])], axis=1)
    assert_close(A.toarray(), dense, layer)
    op = sparseconv.ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    x, y = random_array(rng, (A.shape[1], 2)), random_array(rng, (A.shape[0], 2))
    assert_close(op @ x, dense @ x, layer)
    assert_close(op.H @ y, dense.T @ y, layer)
    norm = sparseconv.spectral_norm(layer.weight, layer.input_shape, **layer.kwargs)
    true = np.linalg.norm(dense, 2)
    assert norm.lower <= true * (1 + 1e-13) and true <= norm.upper * (1 + 1e-13), (norm, true)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("seed", range(8))
def test_dtypes(dtype, seed):
    rng = np.random.default_rng(2000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, dtype=dtype, max_size=7 - seed % 3)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    assert A.dtype == dtype, layer
    x = random_array(rng, (1, *layer.input_shape), dtype)
    # the oracle in float64 (complex128): compare to float32's own precision
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    y = torch_conv(x.astype(wide), layer.weight.astype(wide), **layer.kwargs)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(A @ x.ravel(), y.ravel(), layer, rtol=tol)


def test_dtype_argument_and_integer_weights():
    w = np.arange(12).reshape(2, 2, 3)
    A = conv_matrix(w, (2, 5))
    assert A.dtype == np.float64
    assert conv_matrix(w, (2, 5), dtype=np.float32).dtype == np.float32
    assert conv_matrix(w, (2, 5), dtype=np.complex64).dtype == np.complex64
    assert abs(A - conv_matrix(w.astype(float), (2, 5))).max() == 0


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("seed", range(12))
def test_flip_is_scipy_signal_convolve(mode, seed):
    rng = np.random.default_rng(3000 + seed)
    ndim = 1 + seed % 3
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))  # odd and even
    size = tuple(int(k + rng.integers(0, 5)) for k in kernel)
    c_in = int(rng.integers(1, 3))
    w = rng.standard_normal((1, c_in, *kernel))
    x = rng.standard_normal((c_in, *size))
    A = conv_matrix(w, x.shape, padding=mode, flip=True)
    expected = sum(scipy.signal.convolve(x[c], w[0, c], mode=mode, method="direct")
                   for c in range(c_in))
    assert_close(A @ x.ravel(), expected.ravel(), (kernel, size, mode))


@pytest.mark.parametrize("seed", range(8))
def test_flip_with_the_periodic_padding_is_scipy_convolve2d_wrapped(seed):
    """A review: padding=None (the split of "same", any stride) kept PyTorch's split under
    flip=True, where "same" mirrors it: a one-pixel circular shift from padding="same" and from
    scipy's convolve2d(mode="same", boundary="wrap") for even kernels (86.0 off on a 4x4)."""
    rng = np.random.default_rng(4000 + seed)
    kernel = tuple(int(k) for k in rng.integers(1, 5, 2))  # odd and even
    size = tuple(int(k + rng.integers(0, 5)) for k in kernel)
    stride = (1, 1) if seed < 4 else tuple(int(s) for s in rng.integers(1, 3, 2))
    size = tuple(max(s, n - n % s) for n, s in zip(size, stride))  # periodic: s divides n
    w = rng.standard_normal((1, 1, *kernel))
    x = rng.standard_normal(size)
    wrapped = scipy.signal.convolve2d(x, w[0, 0], mode="same", boundary="wrap")
    expected = wrapped[::stride[0], ::stride[1]]
    for make in (conv_matrix, sparseconv.ConvOperator):
        A = make(w, (1, *size), stride=stride, padding=None, padding_mode="circular", flip=True)
        assert_close(A @ x.ravel(), expected.ravel(), (kernel, size, stride, make.__name__))
    if stride == (1, 1):
        same = conv_matrix(w, (1, *size), padding="same", padding_mode="circular", flip=True)
        assert_close(same @ x.ravel(), expected.ravel(), (kernel, size))


def test_flip_is_the_flipped_kernel():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 2, 3))
    flipped = w[:, :, ::-1, ::-1]
    for padding in [1, ((2, 0), (1, 1)), "valid", "full"]:
        A = conv_matrix(w, (2, 6, 7), padding=padding, flip=True, padding_mode="replicate")
        B = conv_matrix(flipped, (2, 6, 7), padding=padding, padding_mode="replicate")
        assert abs(A - B).max() == 0


def test_reflect_is_pytorch_reflect_not_ndimage_reflect():
    # PyTorch's reflect excludes the edge: [a b c] padded by 1 is [b a b c b].
    w = np.zeros((1, 1, 3))
    w[0, 0, 0] = 1.0  # output i reads padded position i: the first output reads the pad
    A = conv_matrix(w, (1, 3), padding=1, padding_mode="reflect").toarray()
    assert np.array_equal(A[0], [0.0, 1.0, 0.0])  # x[1], not x[0] as ndimage's "reflect"


@requires_torch
@pytest.mark.parametrize("seed", range(60))
def test_conv_transpose_matrix_matches_torch(seed):
    rng = np.random.default_rng(4000 + seed)
    w, (c_in, *size), kwargs = random_transpose_layer(rng)
    c_out = w.shape[1] * kwargs["groups"]
    x = rng.standard_normal((1, c_in, *size))
    y = torch_conv_transpose(x, w, **kwargs)
    T = conv_transpose_matrix(w, x.shape[1:], **kwargs)
    assert T.shape == (y.size, x.size), kwargs
    assert_close(T @ x.ravel(), y.ravel(), kwargs)
    # the adjoint identity, whenever the forward convolution gives back the input size
    if all(op < s for op, s in zip(kwargs["output_padding"], kwargs["stride"])):
        forward = {k: v for k, v in kwargs.items() if k != "output_padding"}
        A = conv_matrix(w, (c_out, *y.shape[2:]), **forward)
        assert abs(T - A.T).max() == 0 and (T != A.T).nnz == 0, kwargs


@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
def test_formats(format):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 2, 3, 3))
    ref = conv_matrix(w, (4, 6, 5), padding=1, groups=2)
    A = conv_matrix(w, (4, 6, 5), padding=1, groups=2, format=format)
    assert isinstance(A, sp.sparray) and A.format == format
    assert abs(A.tocsr() - ref).max() == 0
    T = conv_transpose_matrix(w, (4, 6, 5), padding=1, groups=2, format=format)
    assert T.format == format and abs(T.tocsr() - ref.T).max() == 0


def test_index_dtype_is_int32_when_it_fits_and_int64_otherwise(monkeypatch):
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 2, 3, 3))
    small = conv_matrix(w, (2, 6, 6), padding=1, padding_mode="reflect")
    assert small.indices.dtype == np.int32 and small.indptr.dtype == np.int32
    # Pretend int32 ends at 100: the same matrix must come out with int64 indices, unchanged.
    monkeypatch.setattr(matrices_module.sp, "get_index_dtype",
                        lambda arrays=(), maxval=None, check_contents=False:
                        np.int64 if maxval > 100 else np.int32)
    big = conv_matrix(w, (2, 6, 6), padding=1, padding_mode="reflect")
    assert big.indices.dtype == np.int64 and big.indptr.dtype == np.int64
    assert abs(big - small).max() == 0


def test_nnz_is_known_before_building():
    rng = np.random.default_rng(7)
    for seed in range(30):
        layer = random_layer(np.random.default_rng(seed))
        geom = sparseconv.ConvGeometry.from_weight(layer.weight.shape, layer.input_shape,
                                                   **layer.kwargs)
        assert geom.nnz() == conv_matrix(layer.weight, layer.input_shape, **layer.kwargs).nnz
    del rng


def test_memory_limit_raises_before_allocating():
    huge = np.ones((64, 64, 3, 3))
    with pytest.raises(sparseconv.MatrixTooLargeError, match="memory limit") as info:
        conv_matrix(huge, (64, 224, 224), padding=1)  # 1.8e9 nonzeros, 21 GiB
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemoryError)
    old = sparseconv.set_memory_limit(10_000)
    try:
        with pytest.raises(ValueError, match="set_memory_limit"):
            conv_matrix(np.ones((2, 2, 3)), (2, 400))
        assert conv_matrix(np.ones((1, 1, 3)), (1, 20)).nnz == 3 * 18
    finally:
        sparseconv.set_memory_limit(old)


def test_documented_matrix_example():
    w = np.array([[[1.0, 2.0, 3.0]]])
    A = conv_matrix(w, (1, 5), padding=1).toarray()
    # rows are the kernel sliding over the input: cross-correlation, zero padding
    assert np.array_equal(A, [[2, 3, 0, 0, 0], [1, 2, 3, 0, 0], [0, 1, 2, 3, 0],
                              [0, 0, 1, 2, 3], [0, 0, 0, 1, 2]])


def test_per_side_padding_extension():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((2, 1, 3, 2))
    x = rng.standard_normal((1, 5, 4))
    pads = ((2, 0), (0, 3))
    A = conv_matrix(w, x.shape, padding=pads, padding_mode="circular")
    expected = dense_conv(x, w, padding=pads, padding_mode="circular")
    assert_close(A @ x.ravel(), expected.ravel(), pads)
    assert per_side(pads, (3, 2), (1, 1)) == [(2, 0), (0, 3)]


# -- float16, flags, memory --------------------------------------------------------------------
@requires_torch
def test_float16_weights_are_computed_in_float32():
    """scipy.sparse has no float16: float16 weights give a float32 matrix with the float16
    values exactly; an explicit dtype=float16 is refused by name."""
    rng = np.random.default_rng(9)
    w16 = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    x = rng.standard_normal((1, 2, 6, 6))
    A = conv_matrix(w16, (2, 6, 6), padding=1, padding_mode="reflect")
    assert A.dtype == np.float32
    expected = torch_conv(x, w16.astype(np.float64), padding=1, padding_mode="reflect")
    assert_close(A @ x.ravel(), expected.ravel(), "float16", rtol=1e-5)
    T = conv_transpose_matrix(w16, (3, 4, 4), stride=2)
    assert T.dtype == np.float32
    y = rng.standard_normal((1, 3, 4, 4))
    assert_close(T @ y.ravel(), torch_conv_transpose(y, w16.astype(np.float64), stride=2).ravel(),
                 "float16 transposed", rtol=1e-5)
    for build in (conv_matrix, conv_transpose_matrix):
        with pytest.raises(TypeError, match="dtype=float16"):
            build(np.ones((1, 1, 3)), (1, 8), dtype=np.float16)


@pytest.mark.parametrize("flip", ["False", "True", 0, 1, None, [True]])
def test_flip_must_be_a_bool(flip):
    with pytest.raises(TypeError, match="flip must be a bool"):
        conv_matrix(np.ones((1, 1, 3)), (1, 8), flip=flip)
    flipped = conv_matrix(np.arange(3.0).reshape(1, 1, 3), (1, 4), flip=np.bool_(True))
    assert flipped.toarray()[0, :3].tolist() == [2.0, 1.0, 0.0]


@pytest.mark.parametrize("build", [
    lambda: conv_transpose_matrix(np.ones((2, 2, 3, 3)), (2, 2, 2), stride=49999, padding=1),
    lambda: conv_matrix(np.ones((1, 1, 3)), (1, 10**9)),
    lambda: conv_matrix(np.ones((1, 1, 3)), (1, 8), padding=10**10),
    lambda: conv_matrix(np.ones((1, 1, 3)), (1, 8), padding=10**10, padding_mode="replicate"),
    lambda: conv_matrix(np.ones((1, 1, 3, 3)), (1, 8, 8), padding=((0, 10**12), (0, 0))),
], ids=["transposed-indptr", "input-1e9", "zero-pad-1e10", "replicate-pad-1e10",
        "pad-1e12-one-side"])
def test_huge_requests_are_refused_at_once(build):
    """Sized in O(kernel) from the geometry, before any index map or temporary exists: the
    transposed matrix's row pointers, the index temporaries and the padded axis all count."""
    with pytest.raises(sparseconv.MatrixTooLargeError, match="GiB"):
        build()


def test_one_sided_huge_padding_answers_with_empty_rows():
    """Padding of 10**5 on one side: the padded axis is never mapped, the rows that read only
    padding are empty, and the rest is the unpadded layer's."""
    w = np.random.default_rng(3).standard_normal((2, 1, 3, 3))
    A = conv_matrix(w, (1, 8, 8), padding=((0, 10**5), (0, 0)))
    assert A.shape == (2 * (10**5 + 6) * 6, 64)
    reference = conv_matrix(w, (1, 8, 8), padding=((0, 2), (0, 0))).toarray()
    rows = A.shape[0] // 2
    for o in range(2):
        block = A[[o * rows + i for i in range(8 * 6)]].toarray()
        assert np.array_equal(block, reference[o * 48:(o + 1) * 48]), o
    assert A.nnz == conv_matrix(w, (1, 8, 8), padding=((0, 2), (0, 0))).nnz


@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
@pytest.mark.parametrize("transposed", [False, True])
def test_memory_limit_counts_temporaries_and_the_converted_copy(memory_limit, format, transposed):
    """A limit just above the CSR arrays alone refuses: the assembly's temporaries and the
    copy scipy makes converting to another format (or transposing) count too."""
    w = np.ones((4, 4, 3, 3))
    build = conv_transpose_matrix if transposed else conv_matrix
    A = build(w, (4, 16, 16), padding=1)
    csr_alone = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
    memory_limit(csr_alone + 64)
    with pytest.raises(sparseconv.MatrixTooLargeError, match="memory limit"):
        build(w, (4, 16, 16), padding=1, format=format)
    memory_limit(6 * csr_alone + 10**5)
    assert abs(build(w, (4, 16, 16), padding=1, format=format) - A).max() == 0


@pytest.mark.parametrize("blocksize", [None, (1, 2)])
def test_bsr_counts_scipys_conversion_work_arrays(blocksize):
    """A layer of 2**40 columns and one nonzero (a stride as long as its input) is 40 bytes in
    CSR; scipy's conversion to BSR allocates a pointer per block column, and raised
    ``MemoryError: std::bad_alloc`` (a fuzz run): it is refused by the memory limit first."""
    w = np.full((1, 1, 1), 0.5)
    A = conv_matrix(w, (1, 2**40), stride=2**40)
    assert A.shape == (1, 2**40) and A.nnz == 1
    with pytest.raises(sparseconv.MatrixTooLargeError, match="BSR"):
        conv_matrix(w, (1, 2**40), stride=2**40, format="bsr", blocksize=blocksize)


@pytest.mark.parametrize("build", [
    lambda: conv_matrix(np.ones((1, 1, 1, 1)), (1, 2**40, 2**40)),
    lambda: conv_transpose_matrix(np.ones((1, 1, 1, 1)), (1, 2**40, 2**40)),
    lambda: sparseconv.avg_pool_matrix((1, 2**40, 2**40), 1),
], ids=["conv_matrix", "conv_transpose_matrix", "avg_pool_matrix"])
def test_a_matrix_beyond_int64_indices_is_refused_by_name(build):
    """Found by tests/test_fuzz.py: 2**80 columns overflowed scipy's get_index_dtype
    (OverflowError) instead of a ValueError naming input_shape."""
    with pytest.raises(ValueError, match="input_shape=.*int64 indices"):
        build()


@requires_torch
@pytest.mark.parametrize("seed", range(12))
def test_output_size_picks_the_output_padding_as_pytorch_does(seed):
    """ConvTranspose*d.forward(x, output_size=...) against conv_transpose_matrix and
    ConvTransposeOperator with the same output_size, on every size PyTorch accepts; the
    sizes outside that range are refused by name, as PyTorch refuses them."""
    rng = np.random.default_rng(seed)
    ndim = int(rng.integers(1, 4))
    stride = tuple(int(v) for v in rng.integers(1, 4, ndim))
    kernel = tuple(int(v) for v in rng.integers(1, 4, ndim))
    padding = tuple(int(rng.integers(0, (k - 1) // 2 + 1)) for k in kernel)  # non-empty
    size = tuple(int(v) for v in rng.integers(2, 5, ndim))
    groups = int(rng.choice([1, 2]))
    w = rng.standard_normal((2 * groups, int(rng.integers(1, 3)), *kernel))
    module = getattr(torch.nn, f"ConvTranspose{ndim}d")(
        w.shape[0], w.shape[1] * groups, kernel, stride=stride, padding=padding,
        groups=groups, bias=False, dtype=torch.float64)
    module.weight.data = torch.from_numpy(w)
    x = rng.standard_normal((w.shape[0], *size))
    smallest = sparseconv.conv_transpose_output_shape(size, kernel, stride, padding)
    options = dict(stride=stride, padding=padding, groups=groups)
    for extra in np.ndindex(*stride):
        out = tuple(m + e for m, e in zip(smallest, extra))
        expected = module(torch.from_numpy(x)[None], output_size=out)[0].detach().numpy()
        A = conv_transpose_matrix(w, x.shape, output_size=out, **options)
        T = sparseconv.ConvTransposeOperator(w, x.shape, output_size=out, **options)
        assert T.output_shape == expected.shape, (out, T.output_shape)
        config = dict(options, output_size=out, weight_shape=w.shape, input_shape=x.shape)
        assert_close(A @ x.ravel(), expected.ravel(), config)
        assert_close(T @ x.ravel(), expected.ravel(), config)
        # PyTorch's full sizes too, a tensor's shape among them (a new user's trial)
        full_shape = module(torch.from_numpy(x)[None], output_size=out).shape
        for full in (full_shape, full_shape[1:]):
            assert_close(conv_transpose_matrix(w, x.shape, output_size=full, **options) @
                         x.ravel(), expected.ravel(), dict(config, output_size=full))
    beyond = tuple(m + s for m, s in zip(smallest, stride))
    with pytest.raises(ValueError, match="requested an output size"):  # PyTorch's refusal
        module(torch.from_numpy(x)[None], output_size=beyond)
    with pytest.raises(ValueError, match=r"output_size must lie between"):
        conv_transpose_matrix(w, x.shape, output_size=beyond, **options)
    with pytest.raises(ValueError, match="pass output_size or output_padding, not both"):
        conv_transpose_matrix(w, x.shape, output_size=smallest, output_padding=1, **options)
    with pytest.raises(ValueError, match="gives 99 channels, but the layer has out_channels="):
        conv_transpose_matrix(w, x.shape, output_size=(99, *smallest), **options)


@requires_torch
def test_output_size_where_the_smallest_output_is_empty():
    """PyTorch takes ConvTranspose1d(1, 1, 2, stride=2, padding=1)(x, output_size=[1]) on one
    input (output_padding 1; without it the output is empty); conv_transpose_matrix refused
    it, blaming the padding."""
    w = np.array([[[1.0, 2.0]]])
    module = torch.nn.ConvTranspose1d(1, 1, 2, stride=2, padding=1, bias=False,
                                      dtype=torch.float64)
    module.weight.data = torch.from_numpy(w)
    expected = module(torch.tensor([[[3.0]]], dtype=torch.float64), output_size=[1])
    options = dict(stride=2, padding=1, output_size=1)
    assert_close(conv_transpose_matrix(w, (1, 1), **options) @ [3.0],
                 expected.detach().numpy().ravel(), "matrix")
    assert_close(sparseconv.ConvTransposeOperator(w, (1, 1), **options) @ np.array([3.0]),
                 expected.detach().numpy().ravel(), "operator")
    with pytest.raises(ValueError, match=r"output_size must lie between \(1,\) and \(1,\)"):
        conv_transpose_matrix(w, (1, 1), stride=2, padding=1, output_size=2)


@requires_torch
def test_an_output_size_out_of_reach_is_named_as_such():
    """Where every size output_size can pick is empty, PyTorch refuses the output_size asked
    for; so does conv_transpose_matrix, naming it (a new user's trial: it blamed the padding
    and quoted an empty size never asked for). output_padding, up to dilation - 1 here,
    reaches the size, as in PyTorch."""
    w = np.ones((1, 1, 1))
    options = dict(stride=1, padding=1, dilation=2)
    module = torch.nn.ConvTranspose1d(1, 1, 1, bias=False, dtype=torch.float64, **options)
    with pytest.raises(ValueError, match="output size"):
        module(torch.ones((1, 1, 2), dtype=torch.float64), output_size=[1])
    with pytest.raises(ValueError, match=r"output_size=\(1,\) is out of reach: .* at most \(0,\)"
                       r".*output_padding, which may go up to max\(stride, dilation\) - 1"):
        conv_transpose_matrix(w, (1, 2), output_size=(1,), **options)
    assert conv_transpose_matrix(w, (1, 2), output_padding=1, **options).shape == (1, 2)


@pytest.mark.parametrize("stride, dilation, kernel", [(1, 1, (3, 4)), (2, 1, (3, 3)),
                                                      (2, 2, (2, 3)), ((1, 2), 1, (4, 1))])
def test_padding_none_is_the_spectra_periodic_layer(stride, dilation, kernel):
    """The README's ``periodic = dict(padding=None, padding_mode="circular")`` asks every
    spectral function for the periodic layer: conv_matrix and ConvOperator build that layer
    from the same dict (they refused padding=None by type)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, *kernel))
    options = dict(stride=stride, dilation=dilation)
    A = conv_matrix(w, (2, 8, 8), **options, **PERIODIC)
    dilations = (dilation,) * 2 if isinstance(dilation, int) else dilation
    explicit = conv_matrix(w, (2, 8, 8), padding=periodic_pads(kernel, dilations),
                           padding_mode="circular", **options)
    assert abs(A - explicit).max() == 0
    op = sparseconv.ConvOperator(w, (2, 8, 8), **options, **PERIODIC)
    assert abs(op.tosparse() - A).max() == 0
    np.testing.assert_allclose(np.linalg.svd(A.toarray(), compute_uv=False),
                               sparseconv.singular_values(w, (2, 8, 8), **options, **PERIODIC),
                               rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"padding=None \(the periodic padding, .*\) needs "
                                        r"padding_mode='circular', got padding_mode='zeros'"):
        conv_matrix(w, (2, 8, 8), padding=None, **options)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
def test_every_spectral_function_refuses_padding_none_without_circular(padding_mode):
    """A trial: singular_values, eigenvalues, spectral_norm and the composition spectra took
    ``padding=None`` without ``padding_mode="circular"`` as the zero-padded "same" layer
    (8.50 for a periodic 8.67), where conv_matrix refuses it: each refuses it alike."""
    w = np.random.default_rng(16).standard_normal((2, 2, 3, 3))
    calls = [
        lambda: sparseconv.singular_values(w, (2, 6, 6), padding=None, padding_mode=padding_mode),
        lambda: sparseconv.eigenvalues(w, (2, 6, 6), padding=None, padding_mode=padding_mode),
        lambda: sparseconv.spectral_norm(w, (2, 6, 6), padding=None, padding_mode=padding_mode),
        lambda: sparseconv.composition_singular_values(
            [(w, dict(padding=None, padding_mode=padding_mode))], (2, 6, 6)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"padding=None .* needs padding_mode='circular', "
                                             f"got padding_mode='{padding_mode}'"):
            call()


def test_bsr_results_are_canonical():
    """scipy's tobsr writes a block row's blocks in the order it meets them: 6 of 300 random
    padded layers built as BSR had unsorted block indices, against the README's promise of
    canonical results."""
    rng = np.random.default_rng(0)
    built = 0
    for case in range(300):
        mode = ("zeros", "reflect", "replicate", "circular")[case % 4]
        n, p = int(rng.integers(3, 6)), int(rng.integers(0, 3))
        try:
            matrix = conv_matrix(rng.standard_normal((2, 2, 3, 3)), (2, n, n), padding=p,
                                 padding_mode=mode, format="bsr")
        except ValueError:
            continue  # (a reflection wider than the input)
        built += 1
        assert matrix.has_canonical_format, (n, p, mode)
        indices = matrix.indices.copy()
        matrix.sort_indices()
        assert np.array_equal(indices, matrix.indices), (n, p, mode)
    assert built > 200


def test_a_transposed_padding_refusal_offers_no_string():
    """A transposed convolution takes no padding string: its refusal of a negative padding
    offers none (a new user's trial: it listed 'valid', 'same' and 'full')."""
    w = np.ones((1, 1, 3, 3))
    for padding in (-1, (1, -1)):
        with pytest.raises(ValueError, match=r"\(lo, hi\) pairs, got") as info:
            conv_transpose_matrix(w, (1, 5, 5), padding=padding)
        assert "same" not in str(info.value)
    with pytest.raises(ValueError, match="or one of"):  # the convolution's own takes them
        conv_matrix(w, (1, 5, 5), padding=-1)


@requires_torch
@pytest.mark.parametrize("mode, pad, ok", [
    ("reflect", (0, 3), True), ("reflect", (3, 0), True), ("reflect", (0, 4), False),
    ("reflect", (4, 0), False), ("circular", (0, 4), True), ("circular", (4, 4), True),
    ("circular", (0, 5), False), ("circular", (5, 0), False)])
def test_pytorchs_padding_limit_holds_on_each_side(mode, pad, ok):
    """PyTorch pads reflect by less than the input size and circular by at most it; a
    per-side pair is held to that limit on each side (not only the smaller one), and a pad
    at the limit is PyTorch's."""
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((2, 1, 3)), rng.standard_normal((1, 4))
    tx = torch.from_numpy(x)[None]
    if not ok:
        with pytest.raises((RuntimeError, ValueError)):
            F.pad(tx, pad, mode=mode)
        with pytest.raises(ValueError, match=f"too large for padding_mode='{mode}'"):
            conv_matrix(w, (1, 4), padding=(pad,), padding_mode=mode)
        return
    expected = F.conv1d(F.pad(tx, pad, mode=mode), torch.from_numpy(w))[0].numpy()
    A = conv_matrix(w, (1, 4), padding=(pad,), padding_mode=mode)
    assert_close(A @ x.ravel(), expected.ravel(), (mode, pad))
