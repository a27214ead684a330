"""The Cholesky test by block rows (sparseconv._block_cholesky), against dense eigenvalues.

A whole real layer's Gram matrix in two or three dimensions is factorized by block rows of
its grid's first axis. Here, over a seeded sweep of layers (strides, dilations, asymmetric
padding, zero, reflect and replicate padding, both sides of the Gram): the block rows hold
exactly ``mu I - G`` (``G`` from the dense ``conv_matrix``), the test passes just above the
top eigenvalue and fails just below it and between eigenvalues, and the whole-layer
certificate that runs it brackets the dense norm with an allowance for the bandwidth it
factorized.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparseconv._block_cholesky as block_cholesky
import sparseconv._whole_gram as whole_gram
from sparseconv import conv_matrix
from sparseconv._block_cholesky import BlockRows, block_bytes, block_flops
from sparseconv._geometry import ConvGeometry, copies_of
from sparseconv._memory import DEFAULT_LIMIT
from sparseconv._rounding import Rounding
from sparseconv._section_gram import SectionGram, _transposed_taps, section_gram
from sparseconv._whole_gram import _distinct_blocks, full_bound, full_bytes_and_flops


def _random_layer(rng: np.random.Generator):
    """A random real layer in 2-D or 3-D, its input shape and options."""
    while True:
        ndim = int(rng.integers(2, 4))
        kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
        sizes = tuple(int(n) for n in rng.integers(2, 7 if ndim == 2 else 5, ndim))
        mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate"]))
        kwargs = dict(stride=tuple(int(s) for s in rng.integers(1, 3, ndim)),
                      dilation=tuple(int(d) for d in rng.integers(1, 3, ndim)),
                      padding=tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (ndim, 2))),
                      padding_mode=mode)
        c_in, c_out = (int(c) for c in rng.integers(1, 4, 2))
        weight = rng.standard_normal((c_out, c_in, *kernel))
        shape = (c_in, *sizes)
        try:
            geom = ConvGeometry.from_weight(weight.shape, shape, **kwargs)
        except ValueError:  # a kernel wider than the padded input, or padding reflect refuses
            continue
        return weight, shape, kwargs, geom


def _sides(weight, geom):
    """``(gram, row, dense Gram)`` of the whole layer's ``T^H T``, and of ``T T^H`` where its
    gather map exists, position-major; the dense ones from ``conv_matrix``."""
    taps, size = geom.index_map(), math.prod(geom.input_size)
    kernel = weight.reshape(weight.shape[0], weight.shape[1], -1)
    dense = conv_matrix(weight, geom.input_shape, stride=geom.stride, padding=geom.padding,
                        dilation=geom.dilation, padding_mode=geom.padding_mode).toarray()
    c_out, c_in = weight.shape[:2]
    outputs = math.prod(geom.output_size)
    # conv_matrix is channel-major (c * n + p); the Gram blocks are position-major (p * C + c)
    rows = np.arange(outputs * c_out).reshape(c_out, outputs).T.ravel()
    cols = np.arange(size * c_in).reshape(c_in, size).T.ravel()
    a = dense[np.ix_(rows, cols)]
    found = [(section_gram(kernel, taps, size, inputs=True),
              math.prod(geom.input_size[1:]), np.conj(a.T) @ a)]
    transposed = _transposed_taps(taps, size)
    if geom.padding_mode == "zeros" and transposed is not None:
        gram = SectionGram(np.conj(kernel).transpose(1, 0, 2), transposed, outputs, taps)
        gram.inputs_side = False
        found.append((gram, math.prod(geom.output_size[1:]), a @ np.conj(a.T)))
    return found


def _held(rows: BlockRows, mu: float) -> np.ndarray:
    """The lower triangle of the matrix the block rows hold, from their columns as filled (a
    complex matrix's panels hold the conjugate of its blocks)."""
    s, n = rows.size, rows.count * rows.size
    full = np.zeros((n, n), dtype=rows.dtype)
    diagonal = np.empty((s, s), dtype=rows.dtype, order="F")
    panel = np.empty((max(rows.reach, 1) * s, s), dtype=rows.dtype)
    for j in range(rows.count):
        rows._fill(j, mu, diagonal, panel)
        full[j * s:(j + 1) * s, j * s:(j + 1) * s] = np.tril(diagonal)
        depth = min(rows.reach, rows.count - 1 - j)
        full[(j + 1) * s:(j + 1 + depth) * s, j * s:(j + 1) * s] = np.conj(panel[:depth * s])
    return full


def _decides_as_eigenvalues(rows: BlockRows, lam: np.ndarray, label) -> None:
    """The test passes just above the top eigenvalue, fails just below it and between two
    eigenvalues (one negative pivot at least)."""
    top = lam[-1]
    assert rows.below(top * (1 + 1e-8) + 1e-300), (label, top)
    if top > 1e-6:
        assert not rows.below(top * (1 - 1e-8)), (label, top)
    gaps = np.flatnonzero(np.diff(lam) > 1e-6 * max(top, 1))
    if gaps.size:
        i = gaps[-1]
        assert not rows.below((lam[i] + lam[i + 1]) / 2), (label, lam[i], lam[i + 1])


@pytest.mark.parametrize("seed", range(40))
def test_block_rows_hold_the_gram_and_decide_as_its_eigenvalues(seed):
    rng = np.random.default_rng(4100 + seed)
    weight, _, _, geom = _random_layer(rng)
    for gram, row, dense in _sides(weight, geom):
        rows = BlockRows(gram._assemble(), gram.channels, gram.positions, row)
        lam = np.linalg.eigvalsh(dense)
        mu = 1.5 * lam[-1] + 1.0
        expected = np.tril(mu * np.eye(len(dense)) - dense)
        assert np.abs(_held(rows, mu) - expected).max() <= 1e-12 * (1 + np.abs(dense).max())
        # the reach along the first axis and the bandwidth the allowance takes
        first = geom.axes[0]
        span = first.dilation * (first.kernel_size - 1)
        assert rows.reach <= (span if gram.inputs_side else span // first.stride)
        assert rows.bandwidth >= (len(gram.band(mu)) - 1 if dense.size else 0)
        gram.release()
        _decides_as_eigenvalues(rows, lam, seed)


@pytest.mark.parametrize("seed", range(30))
def test_complex_block_rows_hold_the_hermitian_gram_and_decide_as_its_eigenvalues(seed):
    """A complex layer's Gram (Hermitian) by block rows: of a whole 2-D or 3-D layer's, by
    its grid's first axis, and of a 1-D layer's by one position each (as an exact section's
    blocks off the zero frequency are tested). The panels hold the conjugated blocks; a
    block (p, q) and its conjugate transpose (q, p) swapped, or a block left unconjugated,
    holds another matrix with other eigenvalues."""
    rng = np.random.default_rng(4400 + seed)
    weight, _, _, geom = _random_layer(rng)
    weight = weight + 1j * rng.standard_normal(weight.shape)
    found = [(gram, row, dense) for gram, row, dense in _sides(weight, geom)]
    # a 1-D complex layer along the first axis, by positions
    c_out, c_in, k = (int(v) for v in rng.integers(1, 5, 3))
    kernel = rng.standard_normal((c_out, c_in, k)) + 1j * rng.standard_normal((c_out, c_in, k))
    n = int(rng.integers(k, k + 8))
    line = ConvGeometry.from_weight(kernel.shape, (c_in, n), padding=int(rng.integers(0, 3)),
                                    stride=int(rng.integers(1, 3)))
    gram = section_gram(kernel, line.axes[0].tap_index(), n)
    found.append((gram, 1, gram.toarray()))
    for gram, row, dense in found:
        rows = BlockRows(gram._assemble(), gram.channels, gram.positions, row)
        # (a Gram whose every tap reads padding has no blocks: float64 zeros)
        assert rows.dtype == (np.complex128 if gram._assemble() else np.float64)
        lam = np.linalg.eigvalsh(dense)
        mu = 1.5 * lam[-1] + 1.0
        expected = np.tril(mu * np.eye(len(dense)) - dense)
        assert np.abs(_held(rows, mu) - expected).max() <= 1e-12 * (1 + np.abs(dense).max())
        gram.release()
        _decides_as_eigenvalues(rows, lam, seed)


@pytest.mark.parametrize("seed", range(24))
def test_the_distinct_blocks_are_bounded_before_any_is_built(seed):
    """full_bytes_and_flops sizes the distinct blocks from the axes' own gather maps."""
    rng = np.random.default_rng(4200 + seed)
    weight, _, _, geom = _random_layer(rng)
    for gram, _, _ in _sides(weight, geom):
        assert len(gram._assemble()) <= _distinct_blocks(geom, gram.inputs_side), seed


def test_a_factorization_borrows_what_block_bytes_says_and_counts_its_flops(monkeypatch):
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((5, 4, 3, 3))
    geom = ConvGeometry.from_weight(weight.shape, (4, 6, 5), padding=1)
    gram = section_gram(weight.reshape(5, 4, -1), geom.index_map(), 30, inputs=True)
    rows = BlockRows(gram._assemble(), 4, 30, 5)
    borrowed = []
    original = block_cholesky.borrow
    monkeypatch.setattr(block_cholesky, "borrow", lambda shape, dtype: borrowed.append(
        math.prod(shape) * np.dtype(dtype).itemsize) or original(shape, dtype))
    assert rows.below(1e6)
    assert sum(borrowed) == block_bytes(rows.reach, rows.size)
    complex_rows = BlockRows([(d, at, block * (1 + 1j)) for d, at, block in gram._assemble()],
                             4, 30, 5)
    borrowed.clear()
    assert complex_rows.below(1e6)
    assert sum(borrowed) == block_bytes(rows.reach, rows.size, 16)
    s = rows.size  # six block rows, each reaching two below it but the last two
    # rows 0-3: a solve of two blocks and their three updates; row 4: one block, its diagonal
    assert block_flops(6, s, 2) == 6 * (s**3 // 6) + 4 * (s**3 + 2 * s**3) + (s**3 // 2 + s**3 // 2)


@pytest.mark.parametrize("seed", range(12))
def test_the_whole_layer_certificate_runs_by_block_rows_and_allows_for_them(monkeypatch, seed):
    """full_bound on real 2-D and 3-D layers factorizes by block rows (where that takes
    fewer multiply-adds than the band, as here), brackets the dense norm from an estimate
    just below it, proves nothing from half of it, and its allowance takes the bandwidth of
    the block rows it factorized."""
    rng = np.random.default_rng(4300 + seed)
    while True:
        weight, shape, kwargs, geom = _random_layer(rng)
        if geom.input_size[0] >= 3 and geom.axes[0].kernel_size > 1:
            break
    weight = weight.copy()
    weight *= 8 / np.abs(weight).max()
    dense = conv_matrix(weight, shape, **kwargs).toarray()
    truth = np.linalg.norm(dense, 2)
    factorized, allowed = [], []
    below, square = BlockRows.below, whole_gram._certified_square
    monkeypatch.setattr(BlockRows, "below", lambda self, mu: factorized.append(
        self.bandwidth) or below(self, mu))
    monkeypatch.setattr(whole_gram, "_certified_square", lambda mu, bandwidth, *args: (
        allowed.append(bandwidth), square(mu, bandwidth, *args))[1])
    route = whole_gram.full_route(geom, False)
    copies = copies_of(geom)
    close = full_bound(weight, geom, truth * (1 - 1e-10), Rounding.of(weight, 1), 1e-9,
                       copies=copies)
    assert truth <= close <= truth * (1 + 1e-6), (seed, close, truth)
    assert full_bound(weight, geom, truth / 2, Rounding.of(weight, 1), 1e-9,
                      copies=copies) == np.inf
    if route.row is not None:
        assert factorized, seed
    if factorized:
        assert min(allowed) >= max(factorized), (allowed, factorized)


@pytest.mark.parametrize("c_in, c_out, n, stride", [
    (256, 256, 14, 1), (512, 512, 7, 1), (128, 128, 28, 1), (64, 64, 56, 1),
    (64, 128, 56, 2), (128, 256, 28, 2), (256, 512, 14, 2)])
def test_exact_fits_the_default_memory_limit_on_every_resnet_layer(c_in, c_out, n, stride):
    """The whole-Gram certificate of ResNet-18's 3x3 layers at 224x224 held the whole band
    (sized at 6.1 GiB for a 256-channel layer on 14x14, refused under the default 4 GiB
    limit; 22 GiB for 64 channels on 56x56); by block rows it holds three block columns,
    about 1 GiB, and the band is taken only where it fits."""
    geom = ConvGeometry.from_weight((c_out, c_in, 3, 3), (c_in, n, n), padding=1,
                                    stride=stride)
    nbytes, _ = full_bytes_and_flops(geom, complex_=False)
    assert nbytes <= DEFAULT_LIMIT, nbytes


def test_no_cholesky_test_reads_a_nan_as_a_proof():
    """OpenBLAS's ``?potrf`` and ``?pbtrf`` return ``info = 0`` for a NaN pivot: each
    Cholesky test of the certificates (block rows, band, dense, the torus's batched one)
    must not take that for a factorization (a review found the block rows did)."""
    from sparseconv._gram_symbol import dense_below
    from sparseconv._torus import _cholesky_below

    nan_block = [(0, np.array([0, 1]), np.array([[-1.0]])), (1, np.array([0]),
                                                            np.array([[np.nan]]))]
    assert not BlockRows(nan_block, channels=1, positions=2, row=1).below(2.0)
    finite = nan_block[:1]
    assert BlockRows(finite, 1, 2, 1).below(2.0)
    assert not BlockRows(finite, 1, 2, 1).below(float("nan"))
    assert not BlockRows(finite, 1, 2, 1).below(float("inf"))
    kernel = np.array([[[1.0, np.nan, 1.0]]])
    gram = section_gram(kernel, ConvGeometry.from_weight((1, 1, 3), (1, 6), padding=1)
                        .axes[0].tap_index(), 6)
    assert not gram.below(10.0)
    assert not dense_below(np.array([[np.nan, 0.0], [0.0, 1.0]]), 10.0)
    assert not _cholesky_below(np.full((1, 1, 2, 2), np.nan), np.array([10.0]))[0]
    assert _cholesky_below(np.zeros((1, 1, 2, 2)), np.array([10.0]))[0]


@pytest.mark.parametrize("weight_shape, shape, kwargs", [
    ((16, 3, 7, 7), (3, 48, 48), dict(padding=3, stride=2)),  # few channels, many taps
    ((8, 4, 3, 3, 3), (4, 8, 8, 8), dict(padding=1)),
    ((6, 6, 3, 3), (6, 12, 10), dict(padding=1, padding_mode="reflect")),
])
def test_the_route_sizes_what_the_certificate_allocates(weight_shape, shape, kwargs):
    """full_bytes_and_flops bounds the peak of the whole-Gram certificate's own arrays (a
    review: the index arrays of the distinct blocks' placements, which grow with outputs x
    taps^2, were left out, and a stem-like layer took 6.7x its sizing)."""
    import tracemalloc

    rng = np.random.default_rng(11)
    weight = rng.standard_normal(weight_shape)
    geom = ConvGeometry.from_weight(weight.shape, shape, **kwargs)
    route = whole_gram.full_route(geom, False)
    nbytes, _ = full_bytes_and_flops(geom, complex_=False)
    tracemalloc.start()
    try:
        gram = section_gram(weight.reshape(weight_shape[0], weight_shape[1], -1),
                            geom.index_map(), math.prod(geom.input_size), route.inputs,
                            not route.inputs)
        gram.row = route.row
        gram.below(1e6)
        gram.release()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= nbytes, (route, peak, nbytes)
