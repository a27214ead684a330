"""The tutorial's constructions against scipy, PyTorch, numpy and conv_matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.linalg as sla
import scipy.signal
import scipy.signal as ss
import scipy.sparse as sp

import sparseconv as sc
from sparseconv import (
    MatrixTooLargeError,
    block_conv_matrix,
    conv1x1_matrix,
    conv_matrix,
    doubly_block_circulant,
    doubly_block_toeplitz,
    toeplitz_matrix,
)

from ._oracles import (
    F,
    assert_close,
    per_side,
    random_layer,
    requires_torch,
    torch,
    torch_conv,
)

MODES = ["full", "valid", "same"]


# -- Toeplitz and circulant --------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_toeplitz_matrix_is_scipy_convolution_matrix(mode):
    rng = np.random.default_rng(0)
    for m in range(1, 7):
        for n in range(1, 7):
            kernel = rng.standard_normal(m)
            T = toeplitz_matrix(kernel, n, mode)
            config = dict(m=m, n=n, mode=mode)
            assert isinstance(T, sp.csr_array), config
            assert_close(T, scipy.linalg.convolution_matrix(kernel, n, mode), config)
            if m <= n:  # the library's own reading of mode as a padding
                assert_close(T, conv_matrix(kernel[None, None], (1, n), padding=mode, flip=True),
                             config)


def test_toeplitz_matrix_dtype_and_format():
    kernel = np.array([1 + 2j, 3.0, -1j])
    T = toeplitz_matrix(kernel, 5, "same", format="csc")
    assert T.format == "csc" and T.dtype == np.complex128
    assert_close(T, scipy.linalg.convolution_matrix(kernel, 5, "same"), "complex")
    assert toeplitz_matrix([1, 2], 3, dtype=np.float32).dtype == np.float32
    assert toeplitz_matrix([1, 2], 3).dtype == np.float64


@pytest.mark.parametrize("seed", range(30))
def test_doubly_block_toeplitz_is_convolve2d_and_conv_matrix(seed):
    rng = np.random.default_rng(100 + seed)
    mode = MODES[seed % 3]
    kernel = rng.standard_normal(tuple(rng.integers(1, 5, 2)))
    low = kernel.shape if mode == "valid" else (1, 1)  # "valid" needs the kernel to fit
    size = tuple(int(rng.integers(lo, 8)) for lo in low)
    A = doubly_block_toeplitz(kernel, size, mode)
    config = dict(kernel=kernel.shape, size=size, mode=mode)
    x = rng.standard_normal(size)
    assert_close(A @ x.ravel(), scipy.signal.convolve2d(x, kernel, mode).ravel(), config)
    assert_close(A, conv_matrix(kernel[None, None], (1, *size), padding=mode, flip=True), config)


def test_doubly_block_toeplitz_takes_and_refuses_what_convolve2d_does():
    """Every size of kernel and input, larger kernels included: "valid" with a kernel that
    contains the input is the input sliding over it; a kernel larger on one axis only is
    refused, as scipy refuses it (a new user's trial: the first was refused too)."""
    rng = np.random.default_rng(7)
    swapped = refused = 0
    for m0, m1, n0, n1 in np.ndindex(5, 5, 5, 5):
        kernel = rng.standard_normal((m0 + 1, m1 + 1))
        x = rng.standard_normal((n0 + 1, n1 + 1))
        for mode in MODES:
            config = dict(kernel=kernel.shape, size=x.shape, mode=mode)
            try:
                expected = scipy.signal.convolve2d(x, kernel, mode)
            except ValueError:
                with pytest.raises(ValueError, match="kernel.shape=.*input_size="):
                    doubly_block_toeplitz(kernel, x.shape, mode)
                refused += 1
                continue
            A = doubly_block_toeplitz(kernel, x.shape, mode)
            assert A.shape == (expected.size, x.size), config
            assert_close(A @ x.ravel(), expected.ravel(), config)
            swapped += mode == "valid" and kernel.shape != x.shape and \
                all(m >= n for m, n in zip(kernel.shape, x.shape))
    assert swapped > 100 and refused > 100, (swapped, refused)


def test_doubly_block_toeplitz_is_a_toeplitz_matrix_of_toeplitz_blocks():
    rng = np.random.default_rng(1)
    for mode in MODES:
        kernel = rng.standard_normal((3, 4))
        (n0, n1) = (6, 7)
        dense = doubly_block_toeplitz(kernel, (n0, n1), mode).toarray()
        r0, r1 = scipy.signal.convolve2d(np.zeros((n0, n1)), kernel, mode).shape
        assert dense.shape == (r0 * r1, n0 * n1)
        blocks = dense.reshape(r0, r1, n0, n1).transpose(0, 2, 1, 3)  # [I, J] = block (I, J)
        for i in range(r0):
            for j in range(n0):
                if i + 1 < r0 and j + 1 < n0:  # constant along block diagonals
                    assert np.array_equal(blocks[i, j], blocks[i + 1, j + 1]), (mode, i, j)
                b = blocks[i, j]  # each block constant along its diagonals
                assert np.array_equal(b[1:, 1:], b[:-1, :-1]), (mode, i, j)
        # the tutorial's "valid" matrix: (n-m+1)^2 x n^2 for a square kernel and input
    assert doubly_block_toeplitz(np.ones((3, 3)), (8, 8), "valid").shape == (36, 64)


@requires_torch
@pytest.mark.parametrize("seed", range(24))
def test_doubly_block_circulant_is_circular_convolution(seed):
    rng = np.random.default_rng(200 + seed)
    kernel = rng.standard_normal(tuple(rng.integers(1, 6, 2)))
    # circular padding of at most the input size (PyTorch's limit): kernels may wrap
    size = tuple(int(rng.integers(max(1, k // 2), 7)) for k in kernel.shape)
    A = doubly_block_circulant(kernel, size)
    config = dict(kernel=kernel.shape, size=size)
    ref = conv_matrix(kernel[None, None], (1, *size), padding="same", padding_mode="circular",
                      flip=True)
    assert_close(A, ref, config)
    x = rng.standard_normal((1, 1, *size))
    pads = per_side("same", kernel.shape, (1, 1), flip=True)
    flipped = kernel[::-1, ::-1][None, None].copy()  # torch rejects negative strides
    y = torch_conv(x, flipped, padding=pads, padding_mode="circular")
    assert_close(A @ x.ravel(), y.ravel(), config)
    if all(k <= n for k, n in zip(kernel.shape, size)):
        wrap = scipy.signal.convolve2d(x[0, 0], kernel, "same", boundary="wrap")
        assert_close(A @ x.ravel(), wrap.ravel(), config)


@pytest.mark.parametrize("seed", range(6))
def test_doubly_block_circulant_wraps_kernels_of_any_size(seed):
    """A new user's trial: a kernel more than twice as long as the input on an axis was
    refused, for a circular padding larger than the input (an argument the function does
    not take); scipy.signal.convolve2d(boundary="wrap") takes it, and the taps wrap onto
    the torus as many times as they need: equal to scipy on 40 random sizes per seed."""
    rng = np.random.default_rng(260 + seed)
    for _ in range(40):
        kernel = rng.standard_normal(tuple(int(m) for m in rng.integers(1, 10, 2)))
        size = tuple(int(n) for n in rng.integers(1, 5, 2))
        x = rng.standard_normal(size)
        wrap = scipy.signal.convolve2d(x, kernel, "same", boundary="wrap")
        assert_close(doubly_block_circulant(kernel, size) @ x.ravel(), wrap.ravel(),
                     dict(kernel=kernel.shape, size=size))


def test_doubly_block_circulant_first_column_is_the_kernel_at_its_documented_origin():
    """The Notes: element ((m0 - 1) // 2, (m1 - 1) // 2) at the origin (a new user's trial
    found the docstring's m // 2, wrong for even kernels)."""
    rng = np.random.default_rng(5)
    for m0, m1 in np.ndindex(5, 5):
        kernel = rng.standard_normal((m0 + 1, m1 + 1))
        size = (m0 + 3, m1 + 4)
        column = np.zeros(size)
        column[:kernel.shape[0], :kernel.shape[1]] = kernel
        column = np.roll(column, (-((kernel.shape[0] - 1) // 2),
                                  -((kernel.shape[1] - 1) // 2)), axis=(0, 1))
        A = doubly_block_circulant(kernel, size)
        assert_close(A[:, [0]].toarray().ravel(), column.ravel(), kernel.shape)


@pytest.mark.parametrize("seed", range(12))
def test_dft_diagonalizes_the_doubly_block_circulant(seed):
    rng = np.random.default_rng(300 + seed)
    kernel = rng.standard_normal(tuple(rng.integers(1, 5, 2))) + 1j * (seed % 2)
    size = tuple(int(rng.integers(k, 7)) for k in kernel.shape)
    A = doubly_block_circulant(kernel, size).toarray()
    F2 = np.kron(scipy.linalg.dft(size[0]), scipy.linalg.dft(size[1]))
    D = F2 @ A @ F2.conj().T / A.shape[0]
    eigenvalues = np.diag(D)
    assert_close(D - np.diag(eigenvalues), np.zeros_like(D), (kernel.shape, size), rtol=1e-10)
    # the eigenvalues are the DFT of the kernel, times the phase of its centring shift
    first = [k - 1 - lo for k, (lo, _) in zip(kernel.shape,
                                             per_side("same", kernel.shape, (1, 1), flip=True))]
    freq = np.meshgrid(*[np.arange(n) / n for n in size], indexing="ij")
    phase = np.exp(2j * np.pi * (freq[0] * first[0] + freq[1] * first[1]))
    expected = np.fft.fft2(kernel, s=size) * phase
    assert_close(eigenvalues, expected.ravel(), (kernel.shape, size), rtol=1e-10)


# -- channels ----------------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("seed", range(10))
def test_conv1x1_is_kron(seed):
    rng = np.random.default_rng(1000 + seed)
    c_out, c_in = (int(c) for c in rng.integers(1, 5, 2))
    spatial = tuple(int(n) for n in rng.integers(1, 6, 1 + seed % 3))
    groups = 1 + seed % 3  # and PyTorch's (C_out, C_in/groups, 1, ...) layout too
    c_out, c_in = c_out * groups, c_in * groups
    w = rng.standard_normal((c_out, c_in // groups))
    kernel = w.reshape(c_out, c_in // groups, *(1,) * len(spatial))
    config = (w.shape, spatial, groups)
    for A in conv1x1_matrix(w, spatial, groups=groups), conv1x1_matrix(kernel, spatial,
                                                                       groups=groups):
        assert_close(A, conv_matrix(kernel, (c_in, *spatial), groups=groups), config)
        x = rng.standard_normal((1, c_in, *spatial))
        assert_close(A @ x.ravel(), torch_conv(x, kernel, groups=groups).ravel(), config)
    if groups == 1:
        assert_close(conv1x1_matrix(w, spatial), np.kron(w, np.eye(int(np.prod(spatial)))),
                     config)


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_block_conv_matrix_is_the_convolution(seed):
    rng = np.random.default_rng(1100 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7 - seed % 3)
    B = block_conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    assert_close(B, conv_matrix(layer.weight, layer.input_shape, **layer.kwargs), layer)
    x = rng.standard_normal((1, *layer.input_shape))
    assert_close(B @ x.ravel(), torch_conv(x, layer.weight, **layer.kwargs).ravel(), layer)
    # groups: nothing outside the diagonal blocks
    groups = layer.kwargs["groups"]
    rows, cols = B.shape[0] // groups, B.shape[1] // groups
    coo = B.tocoo()
    assert np.array_equal(coo.row // rows, coo.col // cols), layer


# -- formats and rejections --------------------------------------------------------------------
@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
def test_formats(format):
    k = np.arange(1.0, 7.0).reshape(2, 3)
    built = [toeplitz_matrix(k[0], 5, format=format),
             doubly_block_toeplitz(k, (4, 5), format=format),
             doubly_block_circulant(k, (4, 5), format=format),
             conv1x1_matrix(k, 4, format=format),
             block_conv_matrix(k[None, :, None], (2, 1, 5), format=format)]
    for matrix in built:
        assert isinstance(matrix, sp.sparray) and matrix.format == format


BAD = [
    (toeplitz_matrix, ([[1.0]], 3), {}, ValueError, "kernel must be a non-empty 1-D"),
    (toeplitz_matrix, ([], 3), {}, ValueError, "kernel"),
    (toeplitz_matrix, (["a"], 3), {}, TypeError, "kernel"),
    (toeplitz_matrix, ([1.0], 0), {}, ValueError, "n must be a positive integer, got 0"),
    (toeplitz_matrix, ([1.0], 2.0), {}, TypeError, "n must"),
    (toeplitz_matrix, ([1.0], 3, "circular"), {}, ValueError, "mode must be one of"),
    (toeplitz_matrix, ([1.0], 3, 1), {}, TypeError, "mode"),
    (toeplitz_matrix, ([1.0], 3), dict(format="dense"), ValueError, "format"),
    (toeplitz_matrix, ([1.0], 3), dict(dtype="str"), TypeError, "dtype"),
    (doubly_block_toeplitz, (np.ones(3), (4, 4)), {}, ValueError, "kernel must be a non-empty 2-D"),
    (doubly_block_toeplitz, (np.ones((2, 2)), (4,)), {}, ValueError, "input_size"),
    (doubly_block_toeplitz, (np.ones((2, 2)), (4, 0)), {}, ValueError, "input_size"),
    (doubly_block_toeplitz, (np.ones((5, 2)), (4, 4), "valid"), {}, ValueError,
     r"kernel.shape=\(5, 2\) and input_size=\(4, 4\)"),
    (doubly_block_toeplitz, (np.ones((2, 2)), (4, 4), "half"), {}, ValueError, "mode"),
    (doubly_block_circulant, (np.ones((2, 2)), (3,)), {}, ValueError, "input_size"),
    (doubly_block_circulant, (np.ones((2, 2)), (3, 0)), {}, ValueError, "input_size"),
    (doubly_block_circulant, (np.ones((2, 2, 2)), (3, 4)), {}, ValueError, "kernel"),
    (conv1x1_matrix, (np.ones((2, 2, 1)), (3, 3)), {}, ValueError,
     r"PyTorch's 1x1 weight \(C_out, C_in/groups, 1, 1\) for 2 spatial axes, got weight.shape"),
    (conv1x1_matrix, (np.ones((2, 2, 3)), 3), {}, ValueError, r"weight.shape=\(2, 2, 3\)"),
    (conv1x1_matrix, (np.ones((3, 2)), 3), dict(groups=2), ValueError,
     r"groups=2 must divide out_channels=weight.shape\[0\]=3"),
    (conv1x1_matrix, (np.ones((2, 2)), 3), dict(groups=0), ValueError, "groups"),
    (conv1x1_matrix, (np.ones((2, 0)), 3), {}, ValueError, "weight"),
    (conv1x1_matrix, (np.ones((2, 2)), (3, -1)), {}, ValueError, "spatial"),
    (block_conv_matrix, (np.ones((2, 2, 3)), (3, 5)), {}, ValueError, "in_channels"),
]


@pytest.mark.parametrize("fn, args, kwargs, error, match", BAD,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_rejects_bad_input(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_memory_limit_raises_before_allocating():
    import sparseconv

    old = sparseconv.set_memory_limit(10_000)
    try:
        for build in [lambda: toeplitz_matrix(np.ones(3), 2000),
                      lambda: doubly_block_toeplitz(np.ones((3, 3)), (40, 40)),
                      lambda: doubly_block_circulant(np.ones((3, 3)), (40, 40)),
                      lambda: conv1x1_matrix(np.ones((2, 2)), (40, 40)),
                      lambda: block_conv_matrix(np.ones((1, 1, 3, 3)), (1, 40, 40))]:
            with pytest.raises(sparseconv.MatrixTooLargeError, match="memory limit"):
                build()
        assert toeplitz_matrix(np.ones(3), 20).nnz == 3 * 20  # small ones still build (full)
    finally:
        sparseconv.set_memory_limit(old)


def test_float16_kernels_are_computed_in_float32():
    """Every builder: a float16 kernel gives float32 entries equal to the float16 values
    (scipy.linalg's dense matrix of the float64 kernel); dtype=float16 is refused by name."""
    rng = np.random.default_rng(8)
    k16 = rng.standard_normal((3, 3)).astype(np.float16)
    k64 = k16.astype(np.float64)
    w16 = rng.standard_normal((2, 2, 3, 3)).astype(np.float16)
    cases = [
        (toeplitz_matrix(k16[0], 5), scipy.linalg.convolution_matrix(k64[0], 5, "full")),
        (doubly_block_toeplitz(k16, (4, 5)), doubly_block_toeplitz(k64, (4, 5))),
        (doubly_block_circulant(k16, (4, 5)), doubly_block_circulant(k64, (4, 5))),
        (conv1x1_matrix(k16[:2], 3), np.kron(k64[:2], np.eye(3))),
        (block_conv_matrix(w16, (2, 5, 5), padding=1),
         conv_matrix(w16.astype(np.float64), (2, 5, 5), padding=1)),
    ]
    for got, expected in cases:
        assert got.dtype == np.float32
        assert_close(got, expected, "float16", rtol=1e-6)
    for build in (lambda: toeplitz_matrix(k64[0], 5, dtype=np.float16),
                  lambda: doubly_block_toeplitz(k64, (4, 5), dtype=np.float16),
                  lambda: doubly_block_circulant(k64, (4, 5), dtype=np.float16),
                  lambda: conv1x1_matrix(k64[:2], 3, dtype=np.float16),
                  lambda: block_conv_matrix(w16, (2, 5, 5), dtype=np.float16)):
        with pytest.raises(TypeError, match="dtype=float16"):
            build()


@pytest.mark.parametrize("build", [
    lambda: toeplitz_matrix(np.ones(3), 10**10),
    lambda: doubly_block_toeplitz(np.ones((3, 3)), (10**5, 10**5)),
    lambda: doubly_block_circulant(np.ones((3, 3)), (10**5, 10**5)),
    lambda: conv1x1_matrix(np.ones((4, 4)), (10**5, 10**5)),
    lambda: block_conv_matrix(np.ones((2, 2, 3, 3)), (2, 10**5, 10**5)),
], ids=["toeplitz", "doubly-block-toeplitz", "circulant", "1x1", "block"])
def test_huge_structured_matrices_are_refused_at_once(build):
    with pytest.raises(MatrixTooLargeError, match="GiB"):
        build()


@pytest.mark.parametrize("format", ["csr", "coo"])
def test_memory_limit_counts_the_assembly(format):
    """A limit that the result alone would fit: the Kronecker terms, their sum, scipy's block
    assembly and the converted copy do not."""
    import sparseconv

    for build in (lambda: doubly_block_toeplitz(np.ones((3, 3)), (20, 20), format=format),
                  lambda: doubly_block_circulant(np.ones((3, 3)), (20, 20), format=format),
                  lambda: block_conv_matrix(np.ones((2, 2, 3, 3)), (2, 10, 10), padding=1,
                                            format=format)):
        result = build().tocsr()
        old = sparseconv.set_memory_limit(
            result.data.nbytes + result.indices.nbytes + result.indptr.nbytes)
        try:
            with pytest.raises(MatrixTooLargeError, match="memory limit"):
                build()
        finally:
            sparseconv.set_memory_limit(old)


@pytest.mark.parametrize("mode", ["same", "full"])
def test_doubly_block_toeplitz_keeps_the_dtype_of_an_empty_matrix(mode):
    """Found by tests/test_fuzz.py: a kernel larger than the input in "same" mode made every
    block empty, and scipy's kron of empty arrays returned float64 for dtype=float32."""
    A = doubly_block_toeplitz(np.ones((3, 3)), (1, 1), mode, dtype=np.float32)
    assert A.dtype == np.float32


def test_toeplitz_is_scipys_convolution_matrix_for_every_length_and_mode():
    """Mutants this catches: _structured.py: the kernel and the input not sorted by length
    (``short, long = kernel.size, int(n)``: "same" with a kernel longer than the input), the
    window's first diagonal, the diagonals kept at the matrix's edges. Oracle:
    ``scipy.linalg.convolution_matrix``, kernels longer and shorter than the input."""
    rng = np.random.default_rng(13)
    for m in range(1, 7):
        kernel = rng.standard_normal(m)
        for n in range(1, 7):
            for mode in ("full", "valid", "same"):
                got = sc.toeplitz_matrix(kernel, n, mode)
                expected = sla.convolution_matrix(kernel, n, mode)
                assert got.shape == expected.shape, (m, n, mode)
                np.testing.assert_allclose(got.toarray(), expected, rtol=0, atol=1e-15,
                                           err_msg=str((m, n, mode)))


def test_doubly_block_toeplitz_is_convolve2d_for_every_shape():
    """Mutants this catches: _structured.py: ``all(m >= n ...)`` -> ``all(m > n ...)`` and
    ``any(m > n ...)`` -> ``any(m >= n ...)`` (a "valid" kernel equal to the input on one
    axis was refused), ``first0``/``first1`` swapped between the axes. Oracle:
    ``scipy.signal.convolve2d`` (its refusals included) on every shape up to 3 x 3."""
    rng = np.random.default_rng(14)
    shapes = [(a, b) for a in range(1, 4) for b in range(1, 4)]
    for kshape in shapes:
        kernel = rng.standard_normal(kshape)
        for size in shapes:
            x = rng.standard_normal(size)
            for mode in ("full", "valid", "same"):
                try:
                    expected = ss.convolve2d(x, kernel, mode=mode)
                except ValueError:
                    with pytest.raises(ValueError):
                        sc.doubly_block_toeplitz(kernel, size, mode)
                    continue
                A = sc.doubly_block_toeplitz(kernel, size, mode)
                np.testing.assert_allclose(A @ x.ravel(), expected.ravel(), rtol=1e-12,
                                           atol=1e-12, err_msg=str((kshape, size, mode)))


def test_doubly_block_circulant_wraps_kernels_larger_than_the_input():
    """A mutant this catches: _structured.py: ``(np.arange(m) - f) % n`` -> ``(np.arange(m)
    - f)`` (numpy's negative indices wrap the low taps, but a kernel longer than the input
    indexed past it: an IndexError on a valid layer). Oracle: ``np.pad(mode="wrap")`` and
    ``scipy.signal.convolve2d(mode="valid")``, the larger half of the padding first."""
    rng = np.random.default_rng(15)
    for kshape, size in [((6, 5), (3, 3)), ((4, 1), (2, 5)), ((5, 6), (3, 4)), ((3, 2), (5, 4))]:
        kernel, x = rng.standard_normal(kshape), rng.standard_normal(size)
        pads = [((m - 1) - (m - 1) // 2, (m - 1) // 2) for m in kshape]
        expected = ss.convolve2d(np.pad(x, pads, mode="wrap"), kernel, mode="valid")
        A = sc.doubly_block_circulant(kernel, size)
        np.testing.assert_allclose(A @ x.ravel(), expected.ravel(), rtol=1e-12, atol=1e-12,
                                   err_msg=str((kshape, size)))


def test_doubly_block_circulant_refuses_wrapped_sums_its_integer_dtype_cannot_hold():
    """A mutant this catches: _structured.py: ``held_in(column, dtype)`` ->
    ``column.astype(dtype)`` (taps wrapped onto one lag summed to 400, silently -112 in
    int8). A 4 x 4 kernel of 100s on a 2 x 2 torus: each lag holds four taps."""
    kernel = np.full((4, 4), 100, np.int8)
    with pytest.raises(TypeError, match="cannot hold"):
        sc.doubly_block_circulant(kernel, (2, 2), dtype=np.int8)
    A = sc.doubly_block_circulant(kernel, (2, 2), dtype=np.int16)
    np.testing.assert_array_equal(A.toarray(), np.full((4, 4), 400, np.int16))


def test_conv1x1_matrix_has_the_dtype_asked_for():
    """A mutant this catches: _structured.py: the groups' blocks not cast to ``dtype`` (a
    float64 weight gave a float64 matrix for ``dtype=float32``)."""
    w = np.random.default_rng(16).standard_normal((4, 1))
    A = sc.conv1x1_matrix(w, (2, 3), groups=2, dtype=np.float32)
    assert A.dtype == np.float32
    np.testing.assert_allclose(A.toarray(), np.kron(sla.block_diag(w[:2], w[2:]),
                                                    np.eye(6)).astype(np.float32))
    # a zero weight stores nothing, and scipy's kron of it was float64 (a fuzz run)
    for layout in ("channels_first", "channels_last"):
        for format in ("csr", "csc", "coo", "bsr"):
            Z = sc.conv1x1_matrix(np.zeros((2, 2), np.int64), 3, dtype=np.float32,
                                  format=format, layout=layout)
            assert (Z.dtype, Z.format, Z.nnz) == (np.float32, format, 0)


@requires_torch
@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_block_conv_matrix_keeps_flip_and_padding_mode(mode):
    """Mutants this catches: _structured.py: ``flip=geom.flip`` or
    ``padding_mode=geom.padding_mode`` left out of the blocks' keywords. Oracle: torch's
    conv2d of the padded input, with the kernel flipped by hand for ``flip=True``."""
    rng = np.random.default_rng(17)
    w = rng.standard_normal((4, 1, 3, 2))
    x = rng.standard_normal((2, 5, 6))
    pad = {"zeros": "constant"}.get(mode, mode)
    xt = F.pad(torch.from_numpy(x)[None], (1, 1, 2, 2), mode=pad)
    for flip in (False, True):
        kernel = w[:, :, ::-1, ::-1].copy() if flip else w
        ref = F.conv2d(xt, torch.from_numpy(kernel), groups=2, stride=(2, 1))[0].numpy()
        B = sc.block_conv_matrix(w, x.shape, padding=(2, 1), groups=2, stride=(2, 1),
                                 padding_mode=mode, flip=flip)
        np.testing.assert_allclose(B @ x.ravel(), ref.ravel(), rtol=1e-12, atol=1e-12)
