"""The certificates' building blocks against dense definitions: the banded Gram matrices
(sparseconv._section_gram), the exact sections (sparseconv._exact_sections), the whole-Gram
certificate (sparseconv._whole_gram) and the dense one (sparseconv._certificates).

spectral_norm's intervals are checked against dense SVDs in test_spectral_norm.py; here the
building block itself: the banded Gram of a 1-D multi-channel layer ``T``, on the side
``section_gram`` picks (``T^H T``, or ``T T^H`` when that factorizes faster), equals the dense
Gram of ``conv_matrix``; its band storage, products and eigenvectors too.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from sparseconv import conv_matrix
from sparseconv._certificates import dense_upper
from sparseconv._exact_sections import _top_eigenpair, section_bound
from sparseconv._geometry import ConvGeometry
from sparseconv._rounding import Rounding, U, cholesky_slack, gamma
from sparseconv._section_gram import SectionGram, _certified_square, section_gram


def _layer(rng, c_out, c_in, k, n, stride, padding, dilation, complex_, padding_mode="zeros"):
    kernel = rng.standard_normal((c_out, c_in, k))
    if complex_:
        kernel = kernel + 1j * rng.standard_normal(kernel.shape)
    geom = ConvGeometry.from_weight(kernel.shape, (c_in, n), stride=stride, padding=padding,
                                    dilation=dilation, padding_mode=padding_mode)
    dense = conv_matrix(kernel, (c_in, n), stride=stride, padding=padding,
                        dilation=dilation, padding_mode=padding_mode).toarray()
    m = geom.output_size[0]
    # conv_matrix is channel-major (c * n + p); the Gram blocks are position-major (p * C + c)
    rows = np.arange(m * c_out).reshape(c_out, m).T.ravel()
    cols = np.arange(n * c_in).reshape(c_in, n).T.ravel()
    return kernel, geom.axes[0].tap_index(), dense[np.ix_(rows, cols)]


def _from_band(band: np.ndarray) -> np.ndarray:
    """The Hermitian matrix whose lower band LAPACK stores as ``band[i - j, j]``."""
    n = band.shape[1]
    full = np.zeros((n, n), dtype=band.dtype)
    for d in range(band.shape[0]):
        idx = np.arange(n - d)
        full[idx + d, idx] = band[d, :n - d]
        full[idx, idx + d] = np.conj(band[d, :n - d])
    return full


CONFIGS = [  # c_out, c_in, k, n, stride, padding, dilation
    (3, 2, 3, 7, 1, 1, 1),
    (4, 2, 3, 9, 2, 1, 1),  # strided, more outputs per position: T T^H is cheaper
    (6, 2, 3, 12, 2, 1, 1),
    (2, 5, 5, 11, 3, 2, 1),
    (3, 3, 3, 10, 1, 2, 2),
    (5, 3, 2, 8, 2, 0, 1),
    (2, 2, 7, 6, 1, 3, 1),  # kernel wider than the input
]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_section_gram_is_the_dense_gram_on_its_side(config, complex_):
    rng = np.random.default_rng(sum(config) + complex_)
    c_out, c_in, k, n, stride, padding, dilation = config
    kernel, taps, T = _layer(rng, c_out, c_in, k, n, stride, padding, dilation, complex_)
    gram = section_gram(kernel, taps, n)
    inputs = gram.shape[0] == n * c_in and gram.positions == n
    dense = np.conj(T.T) @ T if inputs else T @ np.conj(T.T)
    scale = np.abs(dense).max()
    assert np.abs(gram.toarray() - dense).max() <= 1e-13 * scale
    mu = 1.5 * np.linalg.norm(T, 2) ** 2
    assert np.abs(_from_band(gram.band(mu)) - (mu * np.eye(len(dense)) - dense)).max() <= \
        1e-13 * scale
    x = rng.standard_normal(len(dense))
    assert np.abs(gram.matvec(x) - dense @ x).max() <= 1e-13 * scale * np.abs(x).max()
    # the top eigenpair, mapped to an input: ||T v|| is the norm
    lam, vector = _top_eigenpair(gram)
    top = np.linalg.norm(T, 2)
    assert abs(np.sqrt(lam) - top) <= 1e-10 * top
    v = gram.to_input(vector)
    assert v.shape == (n * c_in,)
    assert abs(np.linalg.norm(T @ v) / np.linalg.norm(v) - top) <= 1e-9 * top
    # the Cholesky test brackets the top eigenvalue
    assert gram.below(top * top * (1 + 1e-9)) and not gram.below(top * top * (1 - 1e-9))


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("config", [(2, 1, 4, 300, 1, 2, 1, "circular"),
                                    (3, 2, 3, 120, 2, 1, 1, "zeros"),
                                    (2, 3, 5, 90, 1, 4, 2, "reflect"),
                                    (3, 3, 4, 100, 3, 2, 1, "replicate")])
def test_the_whole_section_of_a_1d_layer_takes_the_banded_eigensolver(config, complex_,
                                                                        monkeypatch):
    """(An audit: ARPACK took 43,000 iterations, 27 s, on a 1-D layer of 1849 positions, whose
    top eigenvalues lie 1/n^2 apart.) A whole 1-D layer's section gets its top eigenpair from
    LAPACK's banded solver, no ARPACK: the dense matrix's, and its vector the top one."""
    import scipy.sparse.linalg as spla

    rng = np.random.default_rng(sum(config[:-1]) + complex_)
    *sizes, mode = config
    kernel, taps, T = _layer(rng, *sizes, complex_, padding_mode=mode)
    gram = section_gram(kernel, taps, sizes[3])
    assert gram.shape[0] > 64  # (over DENSE_EIGH: the dense eigh would take it)

    def no_arpack(*args, **kwargs):
        raise AssertionError("ARPACK ran")

    monkeypatch.setattr(spla, "eigsh", no_arpack)
    lam, vector = _top_eigenpair(gram, whole=True)
    gram.release()
    top = np.linalg.norm(T, 2)
    assert abs(np.sqrt(lam) - top) <= 1e-12 * top
    v = gram.to_input(vector)
    assert abs(np.linalg.norm(T @ v) / np.linalg.norm(v) - top) <= 1e-12 * top


COPYING = [  # c_out, c_in, k, n, stride, padding, dilation, padding_mode
    (3, 2, 3, 7, 1, 1, 1, "reflect"),  # output 0 reads position 1 twice
    (2, 3, 5, 6, 1, 5, 1, "reflect"),  # the padding as wide as PyTorch allows: 3 copies
    (4, 2, 3, 9, 2, 1, 1, "reflect"),
    (2, 2, 3, 8, 1, 2, 2, "reflect"),
    (3, 2, 3, 7, 1, 1, 1, "replicate"),
    (2, 3, 5, 5, 1, 4, 1, "replicate"),  # one tap reads the edge from five outputs
    (3, 3, 4, 9, 3, 2, 1, "replicate"),
]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("config", COPYING)
def test_section_gram_of_padding_that_copies(config, complex_):
    """Reflect and replicate padding read one position more than once (through one tap, from
    several outputs, or through several taps of one output): the Gram, its band, its products
    and its Cholesky test are still those of the dense matrix."""
    rng = np.random.default_rng(sum(config[:-1]) + complex_)
    *sizes, mode = config
    kernel, taps, T = _layer(rng, *sizes, complex_, padding_mode=mode)
    n = sizes[3]
    gram = section_gram(kernel, taps, n)
    # where one tap reads a position twice, T T^H has no gather map: T^H T, by a scatter
    twice = any(np.unique(column[column >= 0]).size < (column >= 0).sum() for column in taps.T)
    assert (gram.transposed is None) == twice
    inputs = gram.positions == n and gram.shape[0] == n * sizes[1]
    assert inputs or not twice
    dense = np.conj(T.T) @ T if inputs else T @ np.conj(T.T)
    scale = np.abs(dense).max()
    assert np.abs(gram.toarray() - dense).max() <= 1e-13 * scale
    top = np.linalg.norm(T, 2)
    mu = 1.5 * top**2
    assert np.abs(_from_band(gram.band(mu)) - (mu * np.eye(len(dense)) - dense)).max() <= \
        1e-13 * scale
    lam, vector = _top_eigenpair(gram)
    assert abs(np.sqrt(lam) - top) <= 1e-10 * top
    assert gram.below(top * top * (1 + 1e-9)) and not gram.below(top * top * (1 - 1e-9))


@pytest.mark.parametrize("weight_shape, shape, kwargs", [
    ((16, 8, 3, 3), (8, 9, 9), dict(stride=3, dilation=2, padding=4)),
    ((5, 3, 3), (3, 7), dict(stride=3, padding=((0, 3),))),
])
def test_the_full_certificate_allows_for_the_band_it_factorizes(monkeypatch, weight_shape, shape,
                                                                kwargs):
    """Under reflect padding two outputs may read a position and its mirror image, so the
    outputs' Gram can be wider than zero padding's: the full certificate factorizes the
    inputs' side, and its allowance takes at least the band it factorized."""
    import sparseconv._whole_gram as whole_gram
    from sparseconv._geometry import copies_of
    from sparseconv._whole_gram import full_bound

    rng = np.random.default_rng(7)
    weight = rng.standard_normal(weight_shape)
    geom = ConvGeometry.from_weight(weight.shape, shape, padding_mode="reflect", **kwargs)
    factorized, allowed = [], []
    below, square = SectionGram.below, whole_gram._certified_square
    monkeypatch.setattr(SectionGram, "below", lambda gram, mu: factorized.append(
        len(gram.band(mu))) or below(gram, mu))
    monkeypatch.setattr(whole_gram, "_certified_square", lambda mu, bandwidth, *args: (
        allowed.append(bandwidth), square(mu, bandwidth, *args))[1])
    dense = conv_matrix(weight, shape, padding_mode="reflect", **kwargs).toarray()
    norm = np.linalg.norm(dense, 2)
    upper = full_bound(weight, geom, norm * (1 - 1e-12), Rounding.of(weight, 1), 1e-7,
                       copies=copies_of(geom))
    assert norm <= upper <= norm * (1 + 1e-6)
    assert factorized and min(allowed) + 1 >= max(factorized), (allowed, factorized)


def test_an_eigenpair_builds_no_band():
    """The band (the Gram's bulk: 88 MB for 512 channels on 7 positions) is built only when a
    Cholesky test asks for it: a block whose eigenpair ends its section never pays for it."""
    rng = np.random.default_rng(5)
    kernel, taps, T = _layer(rng, 4, 3, 3, 70, 1, 1, 1, True)
    gram = section_gram(kernel, taps, 70)
    lam, _ = _top_eigenpair(gram)
    assert gram._blocks is None
    dense = np.conj(T.T) @ T
    assert np.abs(_from_band(gram.band(2 * lam)) - (2 * lam * np.eye(len(dense)) - dense)).max() \
        <= 1e-13 * np.abs(dense).max()
    assert gram._blocks is not None


def test_the_cheaper_side_is_picked():
    rng = np.random.default_rng(0)
    # stride 2, 3 taps: outputs overlap only with their neighbours, inputs with two either side
    kernel, taps, _ = _layer(rng, 8, 8, 3, 16, 2, 1, 1, False)
    assert section_gram(kernel, taps, 16).positions == 8  # T T^H: 8 outputs
    kernel, taps, _ = _layer(rng, 8, 8, 3, 16, 1, 1, 1, False)
    assert section_gram(kernel, taps, 16).positions == 16  # a tie: T^H T
    kernel, taps, _ = _layer(rng, 2, 16, 3, 16, 1, 1, 1, False)
    assert section_gram(kernel, taps, 16).channels == 2  # fewer outputs per position


def test_section_gram_keeps_its_input_side_constructor():
    rng = np.random.default_rng(1)
    kernel, taps, T = _layer(rng, 4, 2, 3, 9, 2, 1, 1, True)
    gram = SectionGram(kernel, taps, 9)  # always T^H T
    assert np.abs(gram.toarray() - np.conj(T.T) @ T).max() <= 1e-13 * np.abs(T).max() ** 2


def test_complex_factorizations_get_the_complex_cholesky_allowance():
    """A complex Hermitian matrix factorizes with complex inner products: the proof of
    ``lambda_max <= mu`` allows (2k+1) gamma(k+4) mu at least (Higham, Lemma 3.5), not the
    real (2k+1) gamma(k+2) (the gap: 2e-14 here, beyond the other allowances' rounding)."""
    n = 50
    unitary = np.diag(np.exp(2j * np.pi * np.arange(n) / n))  # every singular value 1
    mu = 1 + 4 * n * U  # the first candidate: mu I - G = 4 n u I factorizes
    higham = (2 * n - 1) * gamma(n + 3) + 2 * U
    assert dense_upper(unitary, 1.0) ** 2 >= mu * (1 + higham) + gamma(2 * n + 4) * n
    assert dense_upper(unitary.real, 1.0) ** 2 < mu * (1 + higham) + gamma(2 * n + 4) * n
    rounding = Rounding.of(np.ones((1, 1, 3)), 1)
    k = 40
    real, complex_ = (_certified_square(1.0, k, rounding, 1, 3, c) for c in (False, True))
    assert complex_ >= 1 + (2 * k + 1) * gamma(k + 4) and complex_ > real


def _partly_periodic_norm(w, geom, grid, axis):
    """The norm of the layer exact along ``axis`` and circular on ``grid`` along the others,
    built by conv_matrix: the circular layer on the zero-padded axis (no padding there), its
    columns restricted to the real inputs of ``axis``."""
    from sparseconv._geometry import periodic_padding

    lo, hi = geom.padding[axis]
    sizes = [geom.input_size[axis] + lo + hi if d == axis else grid[d] for d in range(geom.ndim)]
    pads = [(0, 0) if d == axis else p for d, p in enumerate(
        periodic_padding(geom.kernel_size, geom.dilation))]
    dense = conv_matrix(w, (geom.in_channels, *sizes), stride=geom.stride, padding=pads,
                        dilation=geom.dilation, groups=geom.groups,
                        padding_mode="circular").toarray()
    position = np.indices((geom.in_channels, *sizes))[1 + axis].ravel()
    real = (position >= lo) & (position < lo + geom.input_size[axis])
    return np.linalg.norm(dense[:, real], 2)


@pytest.mark.parametrize("by_rows", [False, True])
@pytest.mark.parametrize("seed", range(24))
def test_section_bound_is_the_norm_of_the_partly_periodic_layer(monkeypatch, seed, by_rows):
    """Each exact section bounds (and, run to the end, equals) the norm of the layer that is
    exact along its axis and periodic on the embedding grid along the others: the maximum
    over every block, not only the first ones visited (rows: the certified circulant bound
    of each block, as spectral_norm passes them). ``by_rows``: every block's Cholesky test
    by block rows of one position (as sections of many channels run), real and complex."""
    import sparseconv._exact_sections as exact_sections
    from sparseconv._block_cholesky import BlockRows
    from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry

    tested = []
    if by_rows:
        monkeypatch.setattr(exact_sections, "SECTION_ROWS_FROM", 1)
        below = BlockRows.below
        monkeypatch.setattr(BlockRows, "below", lambda self, mu: tested.append(
            self.dtype.kind) or below(self, mu))

    rng = np.random.default_rng(500 + seed)
    ndim = 2 + seed % 2
    groups = int(rng.choice([1, 2]))
    kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
    w = rng.standard_normal((groups * int(rng.integers(1, 3)), int(rng.integers(1, 3)), *kernel))
    if seed % 3 == 0:
        w = w + 1j * rng.standard_normal(w.shape)
    if seed % 4 == 1:  # the top input oscillates: a block away from xi = 0 carries the norm
        w = np.abs(w) * (-1.0) ** np.indices(kernel).sum(axis=0)
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (ndim, 2)))
    sizes = (max(int(n), d * (k - 1) + 1 - lo - hi) for n, d, k, (lo, hi) in zip(
        rng.integers(2, 6 if ndim == 2 else 4, ndim), dilation, kernel, padding))
    geom = ConvGeometry.from_weight(
        w.shape, (groups * w.shape[1], *sizes), padding=padding, dilation=dilation,
        stride=tuple(int(s) for s in rng.integers(1, 3, ndim)), groups=groups)
    w = w / np.abs(w).max()  # as spectral_norm scales it
    rounding = Rounding.of(w, groups)
    grid = embedding_grid(geom)
    per_frequency = circulant_tops(w, periodic_geometry(w.shape, geom, grid), rounding)[2].max(
        axis=-1)
    for axis in range(ndim):
        value, witnesses = section_bound(w, geom, grid, per_frequency.max(axis=axis), axis,
                                         np.inf, rounding)
        truth = _partly_periodic_norm(w, geom, grid, axis)
        assert truth * (1 - 1e-13) <= value <= truth * (1 + 1e-6), (seed, axis, value, truth)
        assert sorted(witnesses) == list(range(groups))
    if by_rows:  # every section proved something (each visits a block at least)
        assert tested, seed


@pytest.mark.parametrize("seed", range(16))
def test_full_bound_proves_the_dense_norm_and_nothing_below_it(seed):
    """The whole-Gram certificate against the dense norm: from an estimate just below it,
    a bound just above it; from half of it, no proof (math.inf), groups pruned by their
    circulant bounds included (depthwise and grouped layers, one group dominating)."""
    from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry
    from sparseconv._whole_gram import full_bound

    rng = np.random.default_rng(700 + seed)
    ndim = 1 + seed % 3
    groups = int(rng.choice([1, 2, 4]))
    per_group = 1 if seed % 4 == 0 else int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
    w = rng.standard_normal((groups * int(rng.integers(1, 3)), per_group, *kernel))
    if seed % 3 == 1:
        w = w + 1j * rng.standard_normal(w.shape)
    w[: w.shape[0] // groups] *= 2  # the first group dominates: the others can be pruned
    w = 8 * w / np.abs(w).max()  # a norm above 8: squares and norms compared apart
    sizes = tuple(int(n) for n in rng.integers(3, {1: 12, 2: 6, 3: 4}[ndim], ndim))
    kwargs = dict(stride=tuple(int(s) for s in rng.integers(1, 4, ndim)), groups=groups,
                  padding=tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (ndim, 2))))
    shape = (groups * per_group, *(max(n, k) for n, k in zip(sizes, kernel)))
    geom = ConvGeometry.from_weight(w.shape, shape, **kwargs)
    truth = np.linalg.norm(conv_matrix(w, shape, **kwargs).toarray(), 2)
    rounding = Rounding.of(w, groups)
    upper = circulant_tops(w, periodic_geometry(w.shape, geom, embedding_grid(geom)), rounding)[2]
    tops = upper.reshape(-1, groups).max(axis=0)
    for pruned in (None, tops):
        close = full_bound(w, geom, truth * (1 - 1e-10), rounding, 1e-9, pruned)
        assert truth <= close <= truth * (1 + 1e-6), (seed, close, truth)
        assert full_bound(w, geom, truth / 2, rounding, 1e-9, pruned) == np.inf, seed


def test_a_later_section_that_cannot_win_proves_nothing(monkeypatch):
    """A block whose Ritz value reaches ``beat`` ends the visit once proved; when the next
    block's circulant bound is no better than ``best``, the section would return at least
    that, so no factorization runs and the section returns its circulant bound (still a
    bound), from a loose estimate alone. With ``best`` above that circulant bound, the same
    block is proved."""
    import sparseconv._exact_sections as exact_sections
    from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry

    w = np.random.default_rng(0).standard_normal((6, 6, 3, 3))
    w = w / np.abs(w).max()
    geom = ConvGeometry.from_weight(w.shape, (6, 12, 12), padding=1)  # blocks of 72 rows
    rounding, grid = Rounding.of(w, 1), embedding_grid(geom)
    rows = circulant_tops(w, periodic_geometry(w.shape, geom, grid), rounding)[2].max(
        axis=-1).max(axis=0)
    truth = np.linalg.norm(conv_matrix(w, (6, 12, 12), padding=1).toarray(), 2)
    factorizations = []
    original = SectionGram.below
    monkeypatch.setattr(SectionGram, "below",
                        lambda gram, mu: factorizations.append(mu) or original(gram, mu))
    beat = 1e-3 * truth  # every block's Ritz value reaches it
    # the next block's circulant bound (pairs {xi, -xi} are one block): the first block's
    # top eigenvalue is below it, so only the new rule skips its proof
    best = float(np.unique(rows)[-2])
    kernel = exact_sections._section_kernels(w, geom, grid, 0, (int(np.argmax(rows)),))[0]
    lam, _ = exact_sections._top_eigenpair(section_gram(kernel, geom.axes[0].tap_index(), 12))
    assert lam < best**2
    tolerances = []
    eigenpair = exact_sections._top_eigenpair
    monkeypatch.setattr(exact_sections, "_top_eigenpair",
                        lambda gram, tol=1e-10, v0=None, whole=False: (
                            tolerances.append(tol) or eigenpair(gram, tol, v0, whole)))
    value, _ = section_bound(w, geom, grid, rows, 0, beat, rounding, best=best)
    # nor is its eigenpair computed: the loose estimate (a Ritz value) reaches beat already
    assert factorizations == [] and value == rows.max() >= truth
    assert tolerances == [exact_sections.QUICK_TOL]
    value, _ = section_bound(w, geom, grid, rows, 0, beat, rounding, best=2 * float(rows.max()))
    assert factorizations and truth <= value


def test_a_band_in_reused_memory_is_the_gram_s():
    """The band is written into memory another Gram used (sparseconv._workspace): entries no
    block fills -- here the odd offsets of a dilated kernel -- must be zero, not left over."""
    from sparseconv._workspace import reusing

    rng = np.random.default_rng(11)
    with reusing():
        kernel, taps, _ = _layer(rng, 4, 4, 5, 12, 1, 2, 1, False)  # depth 5, every offset
        first = section_gram(kernel, taps, 12)
        old = first.band(1e6)
        first.release()
        kernel, taps, T = _layer(rng, 4, 4, 3, 12, 1, 2, 2, False)  # depth 5, even offsets
        gram = section_gram(kernel, taps, 12)
        dense = np.conj(T.T) @ T
        band = gram.band(2.0)
        assert np.shares_memory(band, old)
        assert np.abs(_from_band(band) - (2.0 * np.eye(len(dense)) - dense)).max() <= \
            1e-13 * np.abs(dense).max()


def test_a_layer_whose_taps_all_read_padding_has_a_zero_gram():
    """Every tap of every output reads a pad: the Gram (and its band) is zero, and
    spectral_norm still bounds the layer (its matrix is zero though its weight is not)."""
    from sparseconv import spectral_norm

    gram = SectionGram(np.ones((1, 1, 1)), np.full((2, 1), -1), 1)
    assert np.array_equal(gram.band(1.0), np.ones((1, 1)))
    w = np.random.default_rng(0).standard_normal((2, 2, 1, 3))
    r = spectral_norm(w, (2, 1, 20), stride=(2, 1), padding=(1, 1), method="bounds")
    dense = np.linalg.norm(conv_matrix(w, (2, 1, 20), stride=(2, 1), padding=(1, 1)).toarray(), 2)
    assert r.lower <= dense <= r.upper and r.upper <= 1e-5


def _small_2d_section_layer(seed):
    """A random 2-D layer of at most two channels each side, its kernel up to 3x3 and each
    side's padding up to 2, scaled as spectral_norm scales it: ``(weight, geometry,
    rounding, embedding grid, each frequency's certified circulant bound)``."""
    from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry

    rng = np.random.default_rng(500 + seed)
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    w = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 3)), *kernel))
    padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (2, 2)))
    sizes = tuple(max(int(n), k - lo - hi) for n, k, (lo, hi) in zip(
        rng.integers(2, 6, 2), kernel, padding))
    geom = ConvGeometry.from_weight(w.shape, (w.shape[1], *sizes), padding=padding)
    w = w / np.abs(w).max()  # as spectral_norm scales it
    rounding, grid = Rounding.of(w, 1), embedding_grid(geom)
    per_frequency = circulant_tops(w, periodic_geometry(w.shape, geom, grid), rounding)[2].max(
        axis=-1)
    return w, geom, rounding, grid, per_frequency


@pytest.mark.parametrize("seed", [1, 17, 25, 53])
def test_a_section_that_stops_once_mu_passes_beat_still_bounds_the_layer(seed):
    """section_bound ends its visit as soon as ``mu`` passes ``beat``; the blocks it has not
    visited are then bounded only by their circulant bounds, and the value it returns must
    cover them too. The block visited first (the largest circulant bound) need not hold the
    largest exact norm: on these layers it does not, so ``mu`` alone is below the norm of the
    partly periodic layer, and the first circulant bound not visited alone may be too."""
    w, geom, rounding, grid, per_frequency = _small_2d_section_layer(seed)
    for axis in range(2):
        truth = _partly_periodic_norm(w, geom, grid, axis)
        rows = per_frequency.max(axis=axis)
        for beat in (1e-3 * truth, 0.5 * truth, truth * (1 - 1e-6)):
            value, _ = section_bound(w, geom, grid, rows, axis, beat, rounding, best=np.inf)
            assert value >= truth * (1 - 1e-13), (seed, axis, beat, value, truth)


@pytest.mark.parametrize("failing", ["every", "first"])
@pytest.mark.parametrize("seed", [1, 17, 25, 53])
def test_a_block_whose_eigenpair_fails_is_bounded_by_its_circulant_bound(monkeypatch, seed,
                                                                          failing):
    """Where ARPACK returns no eigenpair for a block it could not prove below ``mu``, the
    section takes that block's circulant bound instead (``mu`` raised to its square): the
    value still bounds the partly periodic layer, whether every block fails or only the
    first one visited (a mutation review: leaving ``mu`` as it was passed every test)."""
    import scipy.sparse.linalg as spla

    import sparseconv._exact_sections as exact_sections

    calls = []

    def no_eigenpair(gram, tol=1e-10, v0=None, whole=False):
        calls.append(gram.shape[0])
        if failing == "every" or len(calls) == 1:
            raise spla.ArpackNoConvergence("no convergence", np.empty(0), np.empty((0, 0)))
        return eigenpair(gram, tol, v0, whole)

    eigenpair = exact_sections._top_eigenpair
    monkeypatch.setattr(exact_sections, "_top_eigenpair", no_eigenpair)
    w, geom, rounding, grid, per_frequency = _small_2d_section_layer(seed)
    for axis in range(2):
        calls.clear()
        truth = _partly_periodic_norm(w, geom, grid, axis)
        value, _ = section_bound(w, geom, grid, per_frequency.max(axis=axis), axis, np.inf,
                                 rounding, best=np.inf)
        assert calls, (seed, axis)  # some block was not proved below mu by Cholesky alone
        assert value >= truth * (1 - 1e-13), (seed, axis, value, truth)


@pytest.mark.parametrize("complex_", [False, True])
def test_dense_upper_is_at_least_its_documented_allowance(complex_):
    """``dense_upper`` proves ``lambda_max(G^) <= mu (1 + slack)``, ``slack =
    cholesky_slack(n - 1)`` real or complex as the matrix, and adds the Gram's own error
    ``gamma(2m + 4) ||A||_F^2``: on ``I`` (every singular value 1, ``||A||_F^2 = n``) the
    first candidate ``mu = 1 + 4 n u`` factorizes, and each of the two terms is some 1e-13,
    far above the rounding of the comparison."""
    n = 50
    eye = np.eye(n) if not complex_ else np.diag(np.exp(2j * np.pi * np.arange(n) / n))
    mu = 1 + 4 * n * U
    documented = mu * (1 + cholesky_slack(n - 1, complex_)) + gamma(2 * n + 4) * n
    assert dense_upper(eye, 1.0) ** 2 >= documented
    tall = np.vstack([eye, np.zeros((3, n))])  # m = n + 3 rows: the Gram's error grows with m
    documented = mu * (1 + cholesky_slack(n - 1, complex_)) + gamma(2 * (n + 3) + 4) * n
    assert dense_upper(tall, 1.0) ** 2 >= documented
    assert dense_upper(tall.T, 1.0) ** 2 >= documented  # wide: the same, on its smaller side


@pytest.mark.parametrize("seed", range(4))
def test_full_bound_prunes_groups_by_squares_also_below_norm_one(seed):
    """A group is skipped (taken as proved) where its circulant bound squared is at most
    ``mu``: a square against a square. The test above scales its layers to norms above 8,
    where a wrong power makes the pruning more cautious; below 1 it makes it less (a norm
    cubed is below its square), so here the norms are near 0.1: from half the norm, nothing
    may be proved, and from just below it, a bound just above it."""
    from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry
    from sparseconv._whole_gram import full_bound

    rng = np.random.default_rng(900 + seed)
    groups = 2
    w = rng.standard_normal((groups * 2, 2, 3, 3))
    w[:2] *= 2  # the first group dominates
    kwargs = dict(groups=groups, padding=1, stride=int(rng.integers(1, 3)))
    shape = (groups * 2, 5, 6)
    w = 0.1 * w / np.linalg.norm(conv_matrix(w, shape, **kwargs).toarray(), 2)
    geom = ConvGeometry.from_weight(w.shape, shape, **kwargs)
    truth = np.linalg.norm(conv_matrix(w, shape, **kwargs).toarray(), 2)
    rounding = Rounding.of(w, groups)
    upper = circulant_tops(w, periodic_geometry(w.shape, geom, embedding_grid(geom)), rounding)[2]
    tops = upper.reshape(-1, groups).max(axis=0)
    assert tops.max() ** 3 < (truth / 2) ** 2  # a cube would prune the dominant group
    for pruned in (None, tops):
        assert full_bound(w, geom, truth / 2, rounding, 1e-9, pruned) == np.inf, seed
        close = full_bound(w, geom, truth * (1 - 1e-10), rounding, 1e-9, pruned)
        assert truth <= close <= truth * (1 + 1e-6), (seed, close, truth)


def _exact_gamma(k):
    """The float ``gamma(k)`` the code uses, as the exact rational it is."""
    return Fraction(gamma(k))


def _documented_square(mu, bandwidth, taps_norm, eps, inner, taps, complex_, copies):
    """The exact (rational) value of ``_certified_square``'s documented formula at its float
    inputs: ``mu (1 + slack) + gamma(2 inner + K^2 + 4) W1^2 + 2 W1 eps + eps^2``, or ``(mu +
    E)(1 + slack) + E``, ``E = copies (gamma(2 inner + K^2 copies + 4) W1^2 + 2 W1 eps +
    eps^2)``, where padding copies inputs (``W1`` the tap norms plus ``eps``, the symbol's
    error)."""
    w1, e, m = Fraction(taps_norm) + Fraction(eps), Fraction(eps), Fraction(mu)
    slack = Fraction(cholesky_slack(bandwidth, complex_))
    if copies == 1:
        return m * (1 + slack) + _exact_gamma(2 * inner + taps**2 + 4) * w1 * w1 \
            + 2 * w1 * e + e * e
    error = copies * (_exact_gamma(2 * inner + taps**2 * copies + 4) * w1 * w1
                      + 2 * w1 * e + e * e)
    return (m + error) * (1 + slack) + error


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("copies", [1, 2, 5])
def test_certified_square_covers_its_formula_exactly(copies, complex_):
    """``_certified_square`` is at least the exact value of its documented formula
    (:func:`_documented_square`), so the float operations that evaluate it are rounded
    outward, not to the nearest (which lands below the exact value about half the time):
    each term made to dominate in turn (a large ``W1``, a large ``eps``, a large bandwidth),
    then 200 random inputs."""
    cases = [(mu, bandwidth, taps_norm, eps, inner, taps)
             for taps_norm, eps, bandwidth in ((1e4, 0.0, 3), (1.0, 1e-3, 3), (1.0, 0.0, 10**6),
                                               (0.5, 1e-9, 40))
             for mu, inner, taps in ((1.0, 3, 9), (1e-6, 64, 27), (7.5, 1, 1))]
    rng = np.random.default_rng(copies + 10 * complex_)
    for _ in range(200):
        taps_norm = float(rng.random() * 10.0 ** rng.integers(-2, 5))
        eps = float(rng.random() * 10.0 ** rng.integers(-12, -2))
        mu = float(rng.random() * 10.0 ** rng.integers(-6, 3))
        bandwidth, inner, taps = (int(v) for v in rng.integers(1, 500, 3))
        cases.append((mu, bandwidth, taps_norm, eps, inner, taps))
    for mu, bandwidth, taps_norm, eps, inner, taps in cases:
        rounding = Rounding(taps_norm, eps, 1.0, 1.0, 1)
        value = _certified_square(mu, bandwidth, rounding, inner, taps, complex_, copies)
        exact = _documented_square(mu, bandwidth, taps_norm, eps, inner, taps, complex_, copies)
        assert Fraction(value) >= exact, (mu, bandwidth, inner, taps, taps_norm, eps)


@pytest.mark.parametrize("seed", range(6))
def test_dense_upper_covers_its_formula_exactly(seed):
    """``dense_upper(A)^2`` is at least the exact value of ``mu (1 + slack) + gamma(2m + 4)
    ||A||_F^2`` for the ``mu`` it proved (at least ``estimate^2 (1 + 4 n u)``, its first
    candidate), ``||A||_F`` the exact Frobenius norm: outward rounding throughout."""
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(3, 12)), int(rng.integers(2, 9))
    a = rng.standard_normal((m, n)) * 10.0 ** rng.integers(-3, 4)
    if seed % 2:
        a = a + 1j * rng.standard_normal((m, n))
    estimate = float(np.linalg.norm(a, 2))
    value = dense_upper(a, estimate)
    tall = a if m >= n else a.T
    rows, cols = tall.shape
    frobenius2 = sum(Fraction(float(v.real)) ** 2 + Fraction(float(v.imag)) ** 2
                     for v in np.asarray(tall, dtype=complex).ravel())
    mu = Fraction(estimate) ** 2 * (1 + 4 * cols * Fraction(U))
    slack = Fraction(cholesky_slack(cols - 1, bool(seed % 2)))
    assert Fraction(value) ** 2 >= mu * (1 + slack) + _exact_gamma(2 * rows + 4) * frobenius2


@pytest.mark.parametrize("seed", range(4))
def test_sigma_max_and_quotient_bounds_cover_their_formulas_exactly(seed):
    """``top_upper`` / ``top_lower`` and the quotient bounds of ``Rounding`` against the exact
    values of their formulas (:mod:`sparseconv._rounding`), at 300 random inputs: each is on
    the safe side of the rational value, not merely of its float evaluation."""
    rng = np.random.default_rng(seed)
    r = Rounding.of(rng.standard_normal((4, 3, 3, 3)) * 10.0 ** rng.integers(-3, 3), 1)
    frob, eps = Fraction(r.tap_norms) + Fraction(r.symbol_error), Fraction(r.symbol_error)
    for _ in range(300):
        rows, cols = (int(v) for v in rng.integers(1, 64, 2))
        top = float(rng.random() * r.tap_norms)
        m, n = max(rows, cols), min(rows, cols)
        inside = Fraction(top) ** 2 + (2 * (m + 2) + n * n + 1) * Fraction(U) * frob * frob
        upper = Fraction(float(r.top_upper(top, rows, cols)))
        assert upper >= eps and (upper - eps) ** 2 >= inside
        lower = Fraction(float(r.top_lower(top, rows, cols)))
        below = Fraction(top) ** 2 - (2 * (m + 2) + n * n + 1) * Fraction(U) * frob * frob
        assert lower == 0 or (below > 0 and (lower + eps) ** 2 <= below)
        image, vector = float(rng.random() * 10), float(rng.random() * 10 + 1e-3)
        size = int(rng.integers(1, 10**6))
        g = _exact_gamma(size + 2)
        error = _exact_gamma(r.taps_per_entry) * Fraction(r.abs_norm) * Fraction(vector) * (1 + g)
        low = Fraction(r.quotient_lower(image, vector, size))
        assert low == 0 or low <= (Fraction(image) * (1 - g) - error) / (Fraction(vector) * (1 + g))
        high = Fraction(r.quotient_upper(image, vector, size))
        assert high >= (Fraction(image) * (1 + g) + error) / (Fraction(vector) * (1 - g))


@pytest.mark.parametrize("seed", range(40))
def test_the_embedding_grid_meets_its_documented_conditions(seed):
    """:func:`embedding_grid` per axis: ``N >= n + pad_lo`` (the first output's reads before
    the input stay clear of its end), ``N >= span - pad_lo``, ``N > (m - 1) s`` and a multiple
    of ``s`` -- the conditions under which the zero-padded layer is a restriction of the
    circular one (sparseconv._certificates' docstring); one-sided paddings included."""
    from sparseconv._certificates import embedding_grid

    rng = np.random.default_rng(seed)
    ndim = int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 4, ndim))
    padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 4, (ndim, 2)))
    sizes = tuple(max(int(n), d * (k - 1) + 1 - lo - hi) for n, d, k, (lo, hi) in zip(
        rng.integers(1, 9, ndim), dilation, kernel, padding))
    geom = ConvGeometry.from_weight((2, 1, *kernel), (1, *sizes), stride=stride,
                                    dilation=dilation, padding=padding)
    for a, n in zip(geom.axes, embedding_grid(geom)):
        span = a.dilation * (a.kernel_size - 1) + 1
        assert n >= a.size + a.pad[0] and n >= span - a.pad[0], (a, n)
        assert n > (a.output_size - 1) * a.stride and n % a.stride == 0, (a, n)


@pytest.mark.parametrize("seed", range(30))  # (8 of them catch one less)
def test_a_section_s_allowance_takes_at_least_the_band_it_factorizes(monkeypatch, seed):
    """Each block of an exact section proved in band storage factorizes ``len(band)`` rows
    of band (its bandwidth plus one); the allowance the section's bound takes
    (``_certified_square``'s bandwidth) must be at least that bandwidth (a mutation review:
    one less passed every test)."""
    import sparseconv._exact_sections as exact_sections
    from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry

    rng = np.random.default_rng(700 + seed)
    kernel = tuple(int(k) for k in rng.integers(2, 4, 2))
    w = rng.standard_normal((int(rng.integers(1, 4)), int(rng.integers(1, 4)), *kernel))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    geom = ConvGeometry.from_weight(w.shape, (w.shape[1], 6, 5), padding=1, stride=stride)
    rounding, grid = Rounding.of(w, 1), embedding_grid(geom)
    rows = circulant_tops(w, periodic_geometry(w.shape, geom, grid), rounding)[2].max(axis=-1)
    factorized, allowed = [], []
    band, square = SectionGram.band, exact_sections._certified_square
    monkeypatch.setattr(SectionGram, "band", lambda gram, mu: (
        lambda b: (factorized.append(len(b)), b)[1])(band(gram, mu)))
    monkeypatch.setattr(exact_sections, "_certified_square", lambda mu, bandwidth, *args: (
        allowed.append(bandwidth), square(mu, bandwidth, *args))[1])
    for axis in range(2):  # (the two axes' sections have bands of their own)
        factorized.clear()
        allowed.clear()
        truth = _partly_periodic_norm(w, geom, grid, axis)
        value, _ = section_bound(w, geom, grid, rows.max(axis=axis), axis, truth * 2,
                                 rounding, best=np.inf)
        assert value >= truth * (1 - 1e-13)
        assert factorized and allowed, (axis, factorized, allowed)
        assert min(allowed) + 1 >= max(factorized), (axis, allowed, factorized)
