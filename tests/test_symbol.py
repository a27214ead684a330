"""The symbol of a periodic layer against the DFT of its dense matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparseconv as sc
from sparseconv import frequency_map, singular_values, spectral_norm, symbol, toeplitz_norm

from ._oracles import PERIODIC
from .test_spectra import dense_matrix


def test_symbol_diagonalizes_the_layer():
    """y^(xi) = H[xi] x^(xi) for the polyphase components of x, as documented."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 4))
    stride, size = (2, 1), (8, 6)
    H = symbol(w, size, stride=stride)
    x = rng.standard_normal((2, *size))
    y = (dense_matrix(w, (2, *size), stride=stride) @ x.ravel()).reshape(3, 4, 6)
    phases = np.stack([x[:, r::2, :] for r in range(2)], axis=1)  # (c, r, 4, 6)
    x_hat = np.fft.fft2(phases).reshape(4, 4, 6)  # columns (c, r)
    y_hat = np.einsum("ijab,bij->aij", H, x_hat)
    assert np.allclose(y_hat, np.fft.fft2(y))


def test_frequency_map_is_the_top_of_the_symbol():
    w = np.random.default_rng(2).standard_normal((2, 3, 3, 3))
    m = frequency_map(w, (6, 8), dilation=2)
    assert np.allclose(m, np.linalg.norm(symbol(w, (6, 8), dilation=2), 2, axis=(-2, -1)))


def test_complex_weights_of_any_memory_layout():
    """A transposed, Fortran-ordered or reversed complex weight (a permuted tensor's) is the
    same layer as its contiguous copy: the scaling by a power of two read its parts through
    a view that needs a contiguous last axis, and raised."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((2, 3, 4, 3)) + 1j * rng.standard_normal((2, 3, 4, 3))
    for w in (base.transpose(0, 1, 3, 2), np.asfortranarray(base), base[..., ::-2]):
        copy = np.ascontiguousarray(w)
        assert not w.flags.c_contiguous
        shape = (3, 6, 6)
        for method in ("auto", "bounds"):
            assert spectral_norm(w, shape, padding=1, method=method) == \
                spectral_norm(copy, shape, padding=1, method=method)
        assert toeplitz_norm(w) == toeplitz_norm(copy)
        assert np.array_equal(frequency_map(w, (6, 6)), frequency_map(copy, (6, 6)))
        assert np.array_equal(singular_values(w, shape, padding=None, padding_mode="circular"),
                              singular_values(copy, shape, padding=None,
                                              padding_mode="circular"))


def test_an_input_size_with_the_channels_is_told_what_input_size_means():
    import pytest

    w = np.ones((3, 3, 3, 3))
    for function in (symbol, frequency_map):
        with pytest.raises(ValueError, match=r"one size per spatial dimension .*\(input_size "
                                             r"is spatial: without the channels"):
            function(w, (3, 6, 6))
        with pytest.raises(ValueError, match=r"one size per spatial dimension") as error:
            function(w, (6,))
        assert "without the channels" not in str(error.value)


def test_quarter_turns_are_exact():
    """Phases at quarter turns are exactly 1, i, -1, -i (a real kernel's symbol is then
    exactly real at its self-conjugate frequencies); every phase is exp(2 pi i turns)."""
    from sparseconv._geometry import ConvGeometry
    from sparseconv._symbol import phases, symbol_at

    grid = np.array([8, 6])
    xi = np.indices(grid).reshape(2, -1).T
    shift = np.array([[a, b] for a in range(-2, 3) for b in range(-1, 2)])
    values = phases(xi, shift, grid)
    turns = ((xi[:, None, :] * shift[None]) % grid / grid).sum(axis=-1)
    np.testing.assert_allclose(values, np.exp(2j * np.pi * turns), rtol=0, atol=1e-15)
    quarter = 4 * turns == np.round(4 * turns)
    assert quarter.sum() > len(xi) and set(np.unique(values[quarter])) <= {1, 1j, -1, -1j}
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (2, 8, 6), padding_mode="circular", padding=1)
    h = symbol_at(geom, w, [(0, 0), (4, 0), (0, 3), (4, 3)])
    assert not h.imag.any()


def test_stored_count_is_the_number_of_frequencies_the_spectra_work_on():
    """The memory checks size the frequencies before choosing them: the count must be that
    of the choice (one of each pair {xi, -xi} for a real weight), on odd and even grids."""
    from sparseconv._symbol import conjugate_pairs, stored_count
    from sparseconv._symbol_svd import Frequencies

    for grid in [(1,), (2,), (7,), (8,), (3, 4), (4, 4), (5, 7), (2, 3, 4), (6, 1, 5)]:
        pairs, counts = conjugate_pairs(grid)
        assert stored_count(grid, real=True) == len(pairs) == len(Frequencies.of(grid, True)
                                                                  .stored), grid
        assert counts.sum() == np.prod(grid) == stored_count(grid, real=False), grid


def test_a_layer_that_is_not_periodic_is_told_the_padding_of_its_failing_axis():
    """(An audit: the message quoted the first failing axis's total padding "per axis": a 3x3
    kernel of dilation (1, 2) needs 2 on axis 0 and 4 on axis 1.)"""
    w = np.ones((1, 1, 3, 3))
    for padding, axis, needs in (((1, 1), 1, "4"), ((0, 2), 0, "2")):
        with pytest.raises(ValueError, match=rf"axis {axis} needs {needs}, got padding"):
            spectral_norm(w, (1, 8, 8), padding=padding, dilation=(1, 2),
                             padding_mode="circular", method="fft")
    with pytest.raises(ValueError, match=r"axis 0 needs from 2 to 3, got padding"):
        spectral_norm(np.ones((1, 1, 4)), (1, 8), stride=2, padding=0,
                         padding_mode="circular", method="fft")


def test_the_spectras_periodic_arguments_pass_to_symbol_and_frequency_map():
    """A new user's trial: ``symbol(w, n, **periodic)`` and ``frequency_map(w, n,
    **periodic)`` raised TypeError (no padding_mode; no padding), where every other spectral
    function takes ``padding=None, padding_mode="circular"``. Any periodic padding gives the
    same map; another mode is refused by name."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    periodic = dict(padding=None, padding_mode="circular")
    top = sc.singular_values(w, (3, 16, 16), **periodic)[0]
    fmap = sc.frequency_map(w, (16, 16), **periodic)
    assert np.isclose(fmap.max(), top, rtol=1e-12)
    assert np.array_equal(sc.symbol(w, (16, 16), **periodic), sc.symbol(w, (16, 16)))
    assert np.allclose(sc.frequency_map(w, (16, 16), padding=((0, 2), (2, 0))), fmap,
                       rtol=1e-12)
    for function in (sc.symbol, sc.frequency_map):
        with pytest.raises(ValueError, match=rf"padding_mode must be 'circular' for "
                                             rf"{function.__name__}"):
            function(w, (16, 16), padding_mode="zeros")


# A mutation review of the spectral code (2026-12-05): each test below failed on a
# change of the code that every other test let pass.


def _periodic_dense(w, shape, **options):
    """The explicit matrix of the periodic layer (``padding=None``, circular)."""
    return sc.conv_matrix(w, shape, **options, padding=None, padding_mode="circular").toarray()


def test_imaginary_weights_of_huge_scale_do_not_overflow():
    """unit_scale must look at the imaginary parts: a purely imaginary weight of 1e200
    squared in a Gram matrix overflows unless it is rescaled first."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3))
    shape = (2, 8)
    expected = np.linalg.svd(_periodic_dense(w, shape), compute_uv=False)
    got = sc.singular_values(1e200j * w, shape, **PERIODIC)
    assert np.all(np.isfinite(got))
    assert np.allclose(got / 1e200, expected, rtol=1e-12, atol=0)
    svd = sc.circular_svd(1e200j * w, shape)
    assert np.allclose(svd.S / 1e200, expected, rtol=1e-12, atol=0)


def test_frequency_map_takes_the_largest_group():
    """The map's maximum is the layer's norm also when a later group dominates."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 1, 3, 3))
    w[2:] *= 10.0  # the second group dominates
    m = sc.frequency_map(w, (8, 8), groups=2)
    A = sc.conv_matrix(w, (2, 8, 8), groups=2, **PERIODIC).toarray()
    assert math.isclose(float(m.max()), np.linalg.norm(A, 2), rel_tol=1e-12)


def test_the_symbol_is_sized_against_the_memory_limit_before_it_is_made():
    w = np.random.default_rng(19).standard_normal((16, 16, 3, 3))
    old = sc.set_memory_limit(2**20)  # the symbol: 32 * 32 * 16 * 16 complex = 4 MiB
    try:
        with pytest.raises(sc.MatrixTooLargeError):
            sc.symbol(w, (32, 32))
    finally:
        sc.set_memory_limit(old)
