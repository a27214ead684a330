"""Row blocks: conv_matrix(rows=...), conv_transpose_matrix(rows=...), conv_matrix_blocks.

Every block equals those rows of the full matrix entry for entry (indptr, indices, data), and
its product equals those entries of PyTorch's output; a block is built within a memory limit
the whole matrix exceeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc
from sparseconv._blocks import slabs

from ._oracles import (
    assert_close,
    random_array,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch_conv,
    torch_conv_transpose,
)


def assert_same_rows(block, full, start, stop, config):
    rows = full[start:stop]
    assert block.format == "csr" and block.shape == rows.shape, config
    assert block.has_canonical_format, config
    assert np.array_equal(block.indptr, rows.indptr), config
    assert np.array_equal(block.indices, rows.indices), config
    assert np.array_equal(block.data, rows.data), config  # bit for bit, not merely close


def random_ranges(rng, n, count=4):
    """Random ranges, the empty one, one row, all rows, and a range ending at the last row."""
    ends = [sorted(int(v) for v in rng.integers(0, n + 1, 2)) for _ in range(count)]
    return [*ends, [0, 0], [n - 1, n], [0, n], [max(n - 3, 0), n]]


@requires_torch
@pytest.mark.parametrize("seed", range(18))
def test_conv_matrix_rows_are_the_rows_of_the_matrix(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - 2 * (seed % 3))
    full = sc.conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    x = random_array(rng, layer.input_shape)
    y = torch_conv(x[None], layer.weight, **layer.kwargs)[0].ravel()
    for start, stop in random_ranges(rng, full.shape[0]):
        block = sc.conv_matrix(layer.weight, layer.input_shape, rows=slice(start, stop),
                               **layer.kwargs)
        assert_same_rows(block, full, start, stop, layer)
        assert_close(block @ x.ravel(), y[start:stop], layer)


@requires_torch
@pytest.mark.parametrize("seed", range(12))
def test_conv_transpose_matrix_rows_are_the_rows_of_the_matrix(seed):
    rng = np.random.default_rng(seed)
    weight, shape, kwargs = random_transpose_layer(rng)
    config = (weight.shape, shape, kwargs)
    full = sc.conv_transpose_matrix(weight, shape, **kwargs)
    x = random_array(rng, shape)
    y = torch_conv_transpose(x[None], weight, **kwargs)[0].ravel()
    for start, stop in random_ranges(rng, full.shape[0]):
        block = sc.conv_transpose_matrix(weight, shape, rows=slice(start, stop), **kwargs)
        assert_same_rows(block, full, start, stop, config)
        assert_close(block @ x.ravel(), y[start:stop], config)


def test_negative_and_open_slices_follow_numpy():
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    full = sc.conv_matrix(w, (2, 6, 6), padding=1, padding_mode="circular")
    for rows in (slice(-10, None), slice(None, 7), slice(5, 2), slice(-1000, 1000)):
        block = sc.conv_matrix(w, (2, 6, 6), padding=1, padding_mode="circular", rows=rows)
        start, stop, _ = rows.indices(full.shape[0])
        assert_same_rows(block, full, start, max(start, stop), rows)


@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
def test_rows_in_every_format(format):
    w = np.random.default_rng(1).standard_normal((2, 2, 3))
    block = sc.conv_matrix(w, (2, 9), padding=2, padding_mode="reflect", rows=slice(3, 14),
                           format=format)
    assert block.format == format
    full = sc.conv_matrix(w, (2, 9), padding=2, padding_mode="reflect")
    assert abs(block.tocsr() - full[3:14]).max() == 0


def test_blocks_cover_the_matrix():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 1, 3, 3))
    kwargs = dict(padding=2, dilation=2, groups=2, padding_mode="replicate", stride=(2, 1))
    full = sc.conv_matrix(w, (2, 9, 7), **kwargs)
    pieces = list(sc.conv_matrix_blocks(w, (2, 9, 7), block_rows=23, **kwargs))
    assert [rows.start for rows, _ in pieces] == list(range(0, full.shape[0], 23))
    assert abs(sp.vstack([block for _, block in pieces]) - full).max() == 0
    default = list(sc.conv_matrix_blocks(w, (2, 9, 7), **kwargs))  # one output channel each
    assert len(default) == 4 and all(b.shape[0] == full.shape[0] // 4 for _, b in default)


def test_a_block_fits_where_the_matrix_does_not():
    w = np.ones((8, 8, 3, 3))
    full_bytes = sc.ConvGeometry.from_weight(w.shape, (8, 64, 64), padding=1).nnz() * 12
    old = sc.set_memory_limit(full_bytes // 2)  # a 1000-row block is 1/32 of the rows
    try:
        with pytest.raises(sc.MatrixTooLargeError):
            sc.conv_matrix(w, (8, 64, 64), padding=1)
        block = sc.conv_matrix(w, (8, 64, 64), padding=1, rows=slice(1000, 2000))
        assert block.shape == (1000, 8 * 64 * 64)
        with pytest.raises(sc.MatrixTooLargeError, match="rows 0:16384"):
            sc.conv_matrix(w, (8, 64, 64), padding=1, rows=slice(0, 16384))
        with pytest.raises(sc.MatrixTooLargeError, match="rows"):
            sc.conv_transpose_matrix(w, (8, 64, 64), padding=1, rows=slice(0, None))
        t_block = sc.conv_transpose_matrix(w, (8, 64, 64), padding=1, rows=slice(500, 1500))
        assert t_block.shape == (1000, 8 * 64 * 64)
    finally:
        sc.set_memory_limit(old)


@pytest.mark.parametrize("seed", range(20))
def test_slabs_are_the_range_in_order(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 5, int(rng.integers(1, 5))))
    size = int(np.prod(shape))
    start, stop = sorted(int(v) for v in rng.integers(0, size + 1, 2))
    flat = np.arange(size).reshape(shape)
    got = [flat[tuple(slice(lo, hi) for lo, hi in box)].ravel() for box in slabs(shape, start,
                                                                                 stop)]
    assert np.array_equal(np.concatenate([np.zeros(0, int), *got]), np.arange(start, stop))
    assert len(got) <= 2 * len(shape) - 1 or len(shape) == 1


@pytest.mark.parametrize("rows, error", [
    (5, TypeError), ("0:5", TypeError), ([0, 5], TypeError), (slice(0, 10, 2), ValueError),
    (slice(0.0, 5), TypeError), (slice(True, 5), TypeError), (slice(0, 10, -1), ValueError),
])
def test_bad_rows_are_refused_by_name(rows, error):
    with pytest.raises(error, match="rows"):
        sc.conv_matrix(np.ones((1, 1, 3)), (1, 8), rows=rows)
    with pytest.raises(error, match="rows"):
        sc.conv_transpose_matrix(np.ones((1, 1, 3)), (1, 8), rows=rows)


def test_petsc_recipe():
    PETSc = pytest.importorskip("petsc4py.PETSc", reason="petsc4py is not installed here")
    w = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    full = sc.conv_matrix(w, (2, 8, 8), padding=1)
    n_rows, n_cols = full.shape
    start, stop = 0, n_rows  # a single rank owns every row
    block = sc.conv_matrix(w, (2, 8, 8), padding=1, rows=slice(start, stop))
    A = PETSc.Mat().createAIJ(size=((stop - start, n_rows), (None, n_cols)),
                              csr=(block.indptr.astype(PETSc.IntType),
                                   block.indices.astype(PETSc.IntType), block.data))
    A.assemble()
    x = A.createVecRight()
    x.setArray(np.arange(n_cols, dtype=float))
    y = A.createVecLeft()
    A.mult(x, y)
    assert np.allclose(y.getArray(), full @ np.arange(n_cols, dtype=float))


def test_rows_refuse_a_reordered_matrix():
    w = np.ones((2, 2, 3))
    with pytest.raises(ValueError, match="layout='channels_last'"):
        sc.conv_matrix(w, (2, 8), rows=slice(0, 4), layout="channels_last")
    with pytest.raises(ValueError, match=r"blocksize=\(1, 1\)"):
        sc.conv_transpose_matrix(w, (2, 8), rows=slice(0, 4), format="bsr", blocksize=(1, 1))


def _row_ranges(n_rows: int):
    """Ranges of rows from every start, of lengths 0, 1, 5, 11 and to the end, as slices."""
    return [slice(a, b) for a in range(n_rows + 1)
            for b in sorted({a, a + 1, a + 5, a + 11, n_rows}) if b <= n_rows]


def test_conv_matrix_rows_are_the_rows_of_the_matrix_for_every_range():
    """Mutants this catches: _blocks.py: the slabs' body and head (``full_to``/``full_from``),
    the shifted low pad ``lo * stride``, the group's column offset, a channel piece cut past
    its group, empty ranges. Every row range of a grouped, strided, reflect-padded layer
    against the rows of the whole matrix."""
    rng = np.random.default_rng(26)
    w = rng.standard_normal((4, 1, 2, 3))
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, padding_mode="reflect")
    full = sc.conv_matrix(w, (2, 4, 3), **kw).toarray()
    assert full.shape[0] == 4 * 3 * 3
    for rows in _row_ranges(full.shape[0]):
        block = sc.conv_matrix(w, (2, 4, 3), rows=rows, **kw)
        assert block.shape == full[rows].shape, rows
        np.testing.assert_array_equal(block.toarray(), full[rows], err_msg=str(rows))


def test_conv_transpose_matrix_rows_are_the_rows_of_the_matrix_for_every_range():
    """Mutants this catches: _blocks.py: the outputs that read an input range
    (``_reading_outputs``: its first and last), the box filter ``w < hi``, the group's
    weight and output-channel offsets, the indices' sorting. Every row range of a grouped,
    strided, dilated transposed layer against the rows of the whole matrix."""
    rng = np.random.default_rng(27)
    w = rng.standard_normal((4, 1, 3, 2))
    kw = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(2, 1), groups=2)
    full = sc.conv_transpose_matrix(w, (4, 2, 2), **kw)
    dense = full.toarray()
    for rows in _row_ranges(dense.shape[0])[::2]:
        block = sc.conv_transpose_matrix(w, (4, 2, 2), rows=rows, **kw)
        assert block.shape == dense[rows].shape
        np.testing.assert_array_equal(block.toarray(), dense[rows], err_msg=str(rows))
        assert all(np.all(np.diff(block.indices[a:b]) > 0)
                   for a, b in zip(block.indptr[:-1], block.indptr[1:]))


def test_conv_matrix_blocks_keep_a_last_block_of_one_row():
    """A mutant this catches: _blocks.py: ``range(0, geom.shape[0], block_rows)`` ->
    ``range(0, geom.shape[0] - 1, block_rows)`` (the last block, of one row, dropped)."""
    w = np.random.default_rng(28).standard_normal((2, 1, 3))
    full = sc.conv_matrix(w, (1, 7), padding=1).toarray()
    blocks = list(sc.conv_matrix_blocks(w, (1, 7), block_rows=13, padding=1))
    assert [rows for rows, _ in blocks] == [slice(0, 13), slice(13, 14)]
    np.testing.assert_array_equal(sp.vstack([b for _, b in blocks]).toarray(), full)


def test_rows_of_a_folded_transpose_are_refused_not_built_wrong():
    """The transposed slabs are one box of the layer's outputs, which a folding padding
    (reflect, replicate, circular) reads beyond: rows 3:17 of a circular layer's transpose
    came out 1.67 off (a check of spy's zoom windows, which now build such windows whole).
    Transposed convolutions pad with zeros only, so no public path asks; refused."""
    from sparseconv._blocks import row_block

    w = np.random.default_rng(1).standard_normal((2, 1, 3, 3))
    for mode in ("reflect", "replicate", "circular"):
        geom = sc.ConvGeometry.from_weight(w.shape, (1, 5, 5), padding=1, padding_mode=mode)
        with pytest.raises(ValueError, match=f"rows of the transpose of a {mode}-padded layer"):
            row_block(geom, w, np.dtype(float), slice(3, 17), transposed=True)
    geom = sc.ConvGeometry.from_weight(w.shape, (1, 5, 5), padding=1)
    full = sc.conv_matrix(w, (1, 5, 5), padding=1).T.toarray()
    np.testing.assert_array_equal(
        row_block(geom, w, np.dtype(float), slice(3, 17), transposed=True).toarray(), full[3:17])
