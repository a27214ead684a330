"""Every sparse builder keeps the README's promise on its result: a scipy.sparse *array* in
the format asked for, canonical (sorted, no duplicates), with int32 indices where they fit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc

W = np.arange(1.0, 37.0).reshape(2, 2, 3, 3)  # no zero entries: nothing to drop

BUILDERS = {
    "conv_matrix": lambda f: sc.conv_matrix(W, (2, 5, 5), padding=1, padding_mode="reflect",
                                            format=f),
    "conv_transpose_matrix": lambda f: sc.conv_transpose_matrix(W, (2, 5, 5), stride=2,
                                                                format=f),
    "block_conv_matrix": lambda f: sc.block_conv_matrix(W, (2, 5, 5), padding=1, format=f),
    "conv1x1_matrix": lambda f: sc.conv1x1_matrix(W[:, :, 0, 0], (5, 5), format=f),
    "toeplitz_matrix": lambda f: sc.toeplitz_matrix(W[0, 0, 0], 5, format=f),
    "doubly_block_toeplitz": lambda f: sc.doubly_block_toeplitz(W[0, 0], (4, 5), format=f),
    "doubly_block_circulant": lambda f: sc.doubly_block_circulant(W[0, 0], (4, 5), format=f),
    "im2col_matrix": lambda f: sc.im2col_matrix((2, 5, 5), 3, padding=1, format=f),
    "pad_matrix": lambda f: sc.pad_matrix((2, 5, 5), 2, "reflect", format=f),
    "stride_matrix": lambda f: sc.stride_matrix((2, 5, 5), 2, format=f),
    "avg_pool_matrix": lambda f: sc.avg_pool_matrix((2, 5, 5), 3, 2, 1, format=f),
    "adaptive_avg_pool_matrix": lambda f: sc.adaptive_avg_pool_matrix((2, 5, 5), 3, format=f),
    "interpolate_matrix": lambda f: sc.interpolate_matrix((2, 5, 5), size=(7, 4),
                                                          mode="bicubic", format=f),
    "pixel_shuffle_matrix": lambda f: sc.pixel_shuffle_matrix((8, 3, 3), 2, format=f),
    "pixel_unshuffle_matrix": lambda f: sc.pixel_unshuffle_matrix((2, 4, 4), 2, format=f),
    "fractionally_strided": lambda f: sc.fractionally_strided(W, (2, 3, 3), stride=2,
                                                              format=f)[0],
}


@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_returns_a_canonical_array_with_int32_indices(name, format):
    """A review: COO results of conv1x1_matrix and block_conv_matrix were not canonical, and
    pad_matrix, im2col_matrix and others stored int64 indices."""
    matrix = BUILDERS[name](format)
    assert isinstance(matrix, sp.sparray) and matrix.format == format
    assert matrix.has_canonical_format
    indices = matrix.coords if format == "coo" else (matrix.indices, matrix.indptr)
    assert all(i.dtype == np.int32 for i in indices), [i.dtype for i in indices]
    # and the flag is true: the entries, sorted and summed again, are the same
    again = sp.coo_array(matrix)
    again.sum_duplicates()
    assert again.nnz == matrix.nnz


def test_compose_returns_an_array_of_spmatrix_layers():
    """A review: scipy's spmatrix layers made the product an spmatrix."""
    rng = np.random.default_rng(0)
    a, b = sp.random(4, 3, 0.6, rng=rng, format="csr"), sp.random(2, 4, 0.6, rng=rng)
    product = sc.compose(a, b)
    assert isinstance(product, sp.csr_array) and product.has_canonical_format
    np.testing.assert_array_equal(product.toarray(), b.toarray() @ a.toarray())


def test_compose_of_affine_maps_is_canonical():
    """A review: the AffineMap branch of compose kept scipy's unsorted product."""
    rng = np.random.default_rng(1)
    f = sc.affine_conv(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), (2, 6, 6),
                       padding=1)
    g = sc.affine_conv(rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2), (3, 6, 6),
                       stride=2)
    for composed in (sc.compose(f, g), sc.compose(f, sc.conv_matrix(
            rng.standard_normal((2, 3, 3, 3)), (3, 6, 6), padding=1))):
        matrix = composed.matrix
        rows = np.split(matrix.indices, matrix.indptr[1:-1])
        assert all((np.diff(r) > 0).all() for r in rows) and matrix.has_canonical_format


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_repeated_block_stays_within_its_sizing(dtype):
    """A mutant this catches: _formats.py: repeated_block_bytes' ``max(12, 4 + itemsize)``
    -> ``max(8, ...)``: the bytes tracemalloc sees repeated_block allocate at its peak (a
    64-bit column number and its 32-bit cast per entry) stay within what the sizing
    promised; the result is kron(I, block) (scipy's)."""
    import tracemalloc

    from sparseconv._formats import repeated_block, repeated_block_bytes

    block = sp.csr_array(np.random.default_rng(0).standard_normal((40, 50)))
    copies = 300
    tracemalloc.start()
    try:
        A = repeated_block(block, copies, dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= repeated_block_bytes(block.nnz, copies, 40 * copies, dtype)
    assert A.dtype == dtype
    expected = sp.kron(sp.eye_array(copies), block, format="csr")
    assert abs(A - expected.astype(dtype)).max() == 0
