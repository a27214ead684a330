"""The Gram matrices' own trigonometric polynomial (sparseconv._gram_symbol), against the
symbol's Gram matrices and LAPACK's singular values of the symbol."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import _certificates
from sparseconv._certificates import circulant_tops, embedding_grid, periodic_geometry
from sparseconv._geometry import ConvGeometry
from sparseconv._gram_symbol import gram_symbol, worth_it
from sparseconv._rounding import Rounding
from sparseconv._symbol import phases, symbol_at

LAYERS = [  # (C_out, C_in, kernel, size, keyword arguments); both Gram sides occur
    (6, 4, (3, 3), (9, 8), {}),
    (3, 5, (3, 3), (12, 12), dict(stride=2)),
    (8, 8, (3,), (20,), dict(dilation=2, groups=2)),
    (3, 2, (2, 3, 3), (6, 6, 5), {}),
    (6, 4, (5, 5), (12, 12), dict(stride=(2, 3))),
    (4, 4, (3, 3), (10, 10), dict(groups=4)),
    (2, 7, (4, 1), (12, 9), dict(stride=(3, 1), dilation=(2, 1))),
]


def periodic(layer, complex_=False, scale=None, seed=0):
    c_out, c_in, kernel, size, kwargs = layer
    rng = np.random.default_rng(seed + sum(size) + c_out)
    w = rng.standard_normal((c_out, c_in // kwargs.get("groups", 1), *kernel))
    if complex_:
        w = w + 1j * rng.standard_normal(w.shape)
    if scale is not None:  # a wide dynamic range: entries from 1e-scale to 1e+scale
        w = w * 10.0 ** rng.uniform(-scale, scale, w.shape)
    geom = ConvGeometry.from_weight(w.shape, (c_in, *size), padding=tuple(k // 2 for k in kernel),
                                    **kwargs)
    return w, periodic_geometry(w.shape, geom, embedding_grid(geom))


def smaller_grams(h):
    """The reference: each symbol block's Gram matrix on its smaller side."""
    adjoint = np.conj(np.swapaxes(h, -1, -2))
    return h @ adjoint if h.shape[-2] <= h.shape[-1] else adjoint @ h


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("layer", LAYERS, ids=[str(layer[:4]) for layer in LAYERS])
def test_the_coefficients_sum_to_the_symbols_gram_matrices(layer, complex_):
    w, geom = periodic(layer, complex_)
    gram = gram_symbol(geom, w, Rounding.of(w, geom.groups))
    grid = np.array(geom.coarse_grid)
    xi = np.indices(grid).reshape(len(grid), -1).T
    expected = smaller_grams(symbol_at(geom, w, xi))  # (F, groups, n, n)
    got = np.einsum("fd,gdij->fgij", phases(xi, gram.deltas, grid), gram.coefficients)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()


@pytest.mark.parametrize("scale", [None, 6.0])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("layer", LAYERS, ids=[str(layer[:4]) for layer in LAYERS])
def test_certified_tops_hold_lapacks_singular_values(layer, complex_, scale):
    """Every frequency's interval holds LAPACK's largest singular value of the symbol, on
    random kernels and on kernels spanning 12 orders of magnitude."""
    w, geom = periodic(layer, complex_, scale)
    rounding = Rounding.of(w, geom.groups)
    gram = gram_symbol(geom, w, rounding)
    grid = np.array(geom.coarse_grid)
    xi = np.indices(grid).reshape(len(grid), -1).T
    truth = np.linalg.svd(symbol_at(geom, w, xi), compute_uv=False)[..., 0]  # (F, groups)
    lower, upper = rounding.square_interval(gram.top_squares(xi), gram.allowance)
    slack = 4e-16 * truth.max()  # LAPACK's own error on the reference
    assert np.all(lower <= truth + slack) and np.all(truth <= upper + slack)
    assert np.all(upper - lower <= 1e-6 * truth.max())  # and the interval is tight


@pytest.mark.parametrize("layer", LAYERS, ids=[str(layer[:4]) for layer in LAYERS])
def test_both_routes_of_the_circulant_bound_agree(layer, monkeypatch):
    w, geom = periodic(layer)
    rounding = Rounding.of(w, geom.groups)
    monkeypatch.setattr(_certificates, "worth_it", lambda *args: True)
    by_gram = circulant_tops(w, geom, rounding)
    monkeypatch.setattr(_certificates, "worth_it", lambda *args: False)
    by_symbol = circulant_tops(w, geom, rounding)
    np.testing.assert_allclose(by_gram[0], by_symbol[0], rtol=1e-12, atol=1e-14)
    for low, high in ((by_gram[1], by_symbol[2]), (by_symbol[1], by_gram[2])):
        assert np.all(low <= high)  # each route's interval meets the other's


def test_the_route_is_taken_where_it_saves_work():
    many = ConvGeometry.from_weight((64, 64, 3, 3), (64, 16, 16), padding=1,
                                    padding_mode="circular")
    depthwise = ConvGeometry.from_weight((64, 1, 3, 3), (64, 16, 16), padding=1, groups=64,
                                         padding_mode="circular")
    assert worth_it(many, 256 // 2) and not worth_it(depthwise, 256 // 2)
    assert not worth_it(many, 4)  # a few frequencies do not pay for the coefficients


def test_chunks_shrink_under_a_tight_memory_limit(monkeypatch):
    """Under the default limit the chunks are 64 MB; under one below 16 of them, a
    sixteenth of it (at least 16 MB, the chunks of before): a 512-channel layer keeps the
    coefficients' route under 300 MB, which 64 MB chunks on two threads would exceed."""
    from sparseconv import _gram_symbol, _parallel, set_memory_limit
    from sparseconv._memory import DEFAULT_LIMIT
    monkeypatch.setattr(_parallel, "_one_core", False)
    monkeypatch.setattr(_parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_parallel.os, "sched_getaffinity", lambda pid: {0, 1},
                        raising=False)  # (under taskset -c 0 it says one core)
    geom = ConvGeometry.from_weight((512, 512, 3, 3), (512, 29, 29), padding=1,
                                    padding_mode="circular")
    frequencies = 29 * 29 // 2 + 1
    previous = set_memory_limit(DEFAULT_LIMIT)
    try:
        assert _gram_symbol._chunk_bytes() == 64 * 2**20
        set_memory_limit(300 * 2**20)
        assert _gram_symbol._chunk_bytes() == 300 * 2**20 // 16
        assert worth_it(geom, frequencies)
        monkeypatch.setattr(_gram_symbol, "_chunk_bytes", lambda: 64 * 2**20)
        assert not worth_it(geom, frequencies)  # (what fixed 64 MB chunks would do)
        set_memory_limit(100 * 2**20)
        monkeypatch.undo()
        assert _gram_symbol._chunk_bytes() == 16 * 2**20
        set_memory_limit(None)
        assert _gram_symbol._chunk_bytes() == 64 * 2**20
    finally:
        set_memory_limit(previous)


@pytest.mark.parametrize("complex_", [False, True])
def test_upper_bounds_from_lanczos_and_cholesky_hold_the_singular_values(complex_, monkeypatch):
    """The cheaper route to upper bounds alone: each holds LAPACK's sigma_max of the symbol,
    tightly; a Lanczos estimate that misses the top (forced here) is caught by the
    factorization and that frequency takes the eigenvalues' route, still rigorous."""
    from sparseconv import _gram_symbol
    monkeypatch.setattr(_gram_symbol, "LANCZOS_FROM", 1)  # (the blocks here are 24 wide)
    monkeypatch.setattr(_gram_symbol, "LANCZOS_FROM_ONE_CORE", 1)
    estimated = []
    estimates = _gram_symbol._lanczos_tops
    monkeypatch.setattr(_gram_symbol, "_lanczos_tops",
                        lambda grams: estimated.append(len(grams)) or estimates(grams))
    layer = (24, 16, (3, 3), (8, 8), dict(stride=(2, 1)))
    w, geom = periodic(layer, complex_)
    rounding = Rounding.of(w, geom.groups)
    gram = gram_symbol(geom, w, rounding)
    grid = np.array(geom.coarse_grid)
    xi = np.indices(grid).reshape(len(grid), -1).T
    truth = np.linalg.svd(symbol_at(geom, w, xi), compute_uv=False)[..., 0]
    upper = gram.top_uppers(xi)
    assert sum(estimated) == len(xi)  # every frequency through Lanczos
    assert np.all(truth <= upper) and np.all(upper <= truth * (1 + 1e-8))
    monkeypatch.setattr(_gram_symbol, "_lanczos_tops", lambda grams: 0.9 * estimates(grams))
    fallback = gram.top_uppers(xi)
    assert np.all(truth <= fallback) and np.all(fallback <= truth * (1 + 1e-8))


def test_lanczos_estimates_run_on_a_few_matrices_of_a_chunk_at_a_time(monkeypatch):
    """A chunk's Gram matrices are summed at once (:data:`_CHUNK_BYTES`), but Lanczos steps
    through :data:`_LANCZOS_BYTES` of them at a time: here two of 24x24 a batch, the same
    bounds as in one batch, every one above LAPACK's sigma_max."""
    from sparseconv import _gram_symbol
    monkeypatch.setattr(_gram_symbol, "LANCZOS_FROM", 1)
    monkeypatch.setattr(_gram_symbol, "LANCZOS_FROM_ONE_CORE", 1)
    batches = []
    estimates = _gram_symbol._lanczos_tops
    monkeypatch.setattr(_gram_symbol, "_lanczos_tops",
                        lambda grams: batches.append(len(grams)) or estimates(grams))
    w, geom = periodic((24, 16, (3, 3), (8, 8), dict(stride=(2, 1))))
    gram = gram_symbol(geom, w, Rounding.of(w, geom.groups))
    grid = np.array(geom.coarse_grid)
    xi = np.indices(grid).reshape(len(grid), -1).T
    assert gram.step >= len(xi)  # one chunk
    monkeypatch.setattr(_gram_symbol, "_LANCZOS_BYTES", 2 * 16 * 24 * 24)
    paired = gram.top_uppers(xi)
    assert batches == [2] * (len(xi) // 2) + [1] * (len(xi) % 2)
    monkeypatch.setattr(_gram_symbol, "_LANCZOS_BYTES", 2**40)
    batches.clear()
    whole = gram.top_uppers(xi)
    assert batches == [len(xi)]
    np.testing.assert_allclose(paired, whole, rtol=1e-14)
    truth = np.linalg.svd(symbol_at(geom, w, xi), compute_uv=False)[..., 0]
    assert np.all(truth <= paired) and np.all(paired <= truth * (1 + 1e-8))


@pytest.mark.parametrize("one_core", [False, True])
def test_blocks_of_256_take_lanczos_where_the_frequencies_run_in_turn(monkeypatch, one_core):
    """On one core (a layer worker) blocks from LANCZOS_FROM_ONE_CORE (256) take the Lanczos
    and Cholesky route; with a thread pool, only from LANCZOS_FROM (384), whose batched small
    products two threads share the GIL for."""
    from sparseconv import _gram_symbol, _parallel
    monkeypatch.setattr(_parallel, "_one_core", one_core)
    monkeypatch.setattr(_parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_parallel.os, "sched_getaffinity", lambda pid: {0, 1},
                        raising=False)  # (under taskset -c 0 it says one core)
    estimated = []
    estimates = _gram_symbol._lanczos_tops
    monkeypatch.setattr(_gram_symbol, "_lanczos_tops",
                        lambda grams: estimated.append(len(grams)) or estimates(grams))
    rng = np.random.default_rng(3)
    w = rng.standard_normal((256, 256, 3, 3)) / 48
    geom = ConvGeometry.from_weight(w.shape, (256, 4, 4), padding_mode="circular", padding=1)
    gram = gram_symbol(geom, w, Rounding.of(w, 1))
    assert gram.size == 256 == _gram_symbol.LANCZOS_FROM_ONE_CORE < _gram_symbol.LANCZOS_FROM
    xi = np.array([[0, 0], [1, 2]])
    upper = gram.top_uppers(xi)
    assert (sum(estimated) == 2) == one_core
    truth = np.linalg.svd(symbol_at(geom, w, xi), compute_uv=False)[..., 0]
    assert np.all(truth <= upper) and np.all(upper <= truth * (1 + 1e-8))


def test_lanczos_estimates_converge_to_the_top_eigenvalue():
    rng = np.random.default_rng(7)
    h = rng.standard_normal((5, 40, 60)) + 1j * rng.standard_normal((5, 40, 60))
    grams = h @ np.conj(np.swapaxes(h, 1, 2))
    from sparseconv._gram_symbol import _lanczos_tops
    np.testing.assert_allclose(_lanczos_tops(grams), np.linalg.eigvalsh(grams)[:, -1],
                               rtol=1e-11)
    rank_one = np.einsum("fi,fj->fij", h[:, :, 0], np.conj(h[:, :, 0]))  # an early breakdown
    np.testing.assert_allclose(_lanczos_tops(rank_one), np.linalg.eigvalsh(rank_one)[:, -1],
                               rtol=1e-11)


def test_lanczos_estimates_do_not_depend_on_the_rest_of_the_batch():
    """Matrices that converge at different steps (a rank-one one at once, a clustered top
    late) leave the batch at different checks; each keeps the estimate it has alone."""
    rng = np.random.default_rng(8)
    h = rng.standard_normal((4, 50, 70)) + 1j * rng.standard_normal((4, 50, 70))
    grams = h @ np.conj(np.swapaxes(h, 1, 2))
    grams[1] = np.outer(h[1, :, 0], np.conj(h[1, :, 0]))  # converges in one step
    q = np.linalg.qr(h[2, :, :50])[0]  # a top of four eigenvalues 1e-6 apart
    grams[2] = (q * np.r_[np.linspace(0, 1, 46), 1 + 1e-6 * np.arange(1, 5)]) @ np.conj(q.T)
    from sparseconv import _gram_symbol
    together = _gram_symbol._lanczos_tops(grams)
    alone = np.concatenate([_gram_symbol._lanczos_tops(grams[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-15)
    np.testing.assert_allclose(together, np.linalg.eigvalsh(grams)[:, -1], rtol=1e-11)


def test_circulant_upper_bounds_agree_with_the_eigenvalues_route(monkeypatch):
    from sparseconv import _gram_symbol
    from sparseconv._certificates import circulant_uppers
    monkeypatch.setattr(_gram_symbol, "LANCZOS_FROM", 1)
    for layer in LAYERS:
        w, geom = periodic(layer)
        rounding = Rounding.of(w, geom.groups)
        _, lower, upper = circulant_tops(w, geom, rounding)
        fast = circulant_uppers(w, geom, rounding)
        # both rigorous; the margin above the Lanczos estimate (1e-10) makes the difference
        assert np.all(lower <= fast) and np.all(fast <= upper * (1 + 1e-9))


def test_spectral_norm_through_the_cheaper_upper_bounds_holds_the_truth(monkeypatch):
    """Zero-padded layers whose circulant bound takes the Lanczos-and-Cholesky route (forced
    on small layers): the certified interval still holds LAPACK's norm of the matrix."""
    from sparseconv import _gram_symbol, conv_matrix, spectral_norm
    monkeypatch.setattr(_gram_symbol, "LANCZOS_FROM", 1)
    monkeypatch.setattr(_certificates, "worth_it", lambda *args: True)
    rng = np.random.default_rng(11)
    for c_out, c_in, kernel, size, kwargs in LAYERS:
        w = rng.standard_normal((c_out, c_in // kwargs.get("groups", 1), *kernel))
        shape = (c_in, *size)
        result = spectral_norm(w, shape, padding=1, method="bounds", **kwargs)
        truth = np.linalg.norm(conv_matrix(w, shape, padding=1, **kwargs).toarray(), 2)
        assert result.lower <= truth * (1 + 1e-14) and truth <= result.upper * (1 + 1e-14)
        assert result.bounds["circulant"] >= truth


def test_the_cheaper_upper_bounds_run_on_a_process_pool():
    """Large blocks (the Lanczos and Cholesky route) in tasks on another process: the same
    bounds as in this one, each above LAPACK's singular value of the symbol."""
    from concurrent.futures import ProcessPoolExecutor

    from sparseconv._certificates import circulant_uppers
    rng = np.random.default_rng(13)
    w = rng.standard_normal((400, 400, 3, 3)) / 60
    geom = ConvGeometry.from_weight(w.shape, (400, 5, 5), padding=1, padding_mode="circular")
    rounding = Rounding.of(w, 1)
    serial = circulant_uppers(w, geom, rounding)
    with ProcessPoolExecutor(2) as pool:
        parallel = circulant_uppers(w, geom, rounding, executor=pool)
    # the same to the last bit or two: the pool's tasks hold 6 frequencies, the thread pool's
    # 2, and BLAS may round a product of another shape differently by an ulp (seen once, in a
    # whole-suite run on a loaded machine: 4.4e-16 on values near 2); each is certified alone
    np.testing.assert_allclose(serial, parallel, rtol=4 * np.finfo(float).eps, atol=0)
    truth = np.linalg.svd(symbol_at(geom, w), compute_uv=False)[..., 0]
    assert np.all(truth <= serial) and np.all(serial <= truth * (1 + 1e-8))


def test_the_dense_cholesky_test_refuses_a_shift_below_the_top():
    """``dense_below(gram, mu)`` proves ``lambda_max(gram) <= mu``: it must refuse every
    ``mu`` below the top eigenvalue (numpy's eigvalsh is the oracle) and accept one above.
    A mutant this catches: _gram_symbol.py: np.negative(gram) -> gram (mu I + G always
    factors), the final finiteness check -> True."""
    from sparseconv._gram_symbol import dense_below

    rng = np.random.default_rng(9)
    for n in (1, 4, 9):
        a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
        gram = a @ a.conj().T
        top = float(np.linalg.eigvalsh(gram)[-1])
        assert dense_below(gram, top * (1 + 1e-6))
        assert not dense_below(gram, top * (1 - 1e-6))
        assert not dense_below(gram, top * 0.5)
    nan = np.full((3, 3), np.nan)
    assert not dense_below(nan, 1.0)


def test_gram_coefficients_in_one_frequency_chunks(monkeypatch):
    """The Gram coefficients' top eigenvalues, cut into chunks of one frequency each (a tiny
    chunk size): every frequency must still be evaluated, each sigma_max^2 the square of
    numpy's top singular value of the kernel's DFT there (a real kernel: the sign of the
    frequency does not matter). A mutant this catches: _gram_symbol.py: the chunks'
    range(0, len(frequencies), step) -> range(0, len(frequencies) - 1, step) (the last
    frequency's row left uninitialized)."""
    import importlib

    from sparseconv._gram_symbol import gram_symbol
    from sparseconv._rounding import Rounding
    from sparseconv._symbol import layer_geometry

    module = importlib.import_module("sparseconv._gram_symbol")
    rng = np.random.default_rng(31)
    weight = rng.standard_normal((6, 6, 3, 3))
    weight, geom = layer_geometry(weight, (6, 5, 4), 1, None, 1, 1, "circular")
    symbol = gram_symbol(geom, weight, Rounding.of(weight, 1))
    frequencies = np.indices((5, 4)).reshape(2, -1).T
    monkeypatch.setattr(module, "_CHUNK_BYTES", 1)
    assert symbol.step == 1
    tops = np.sqrt(np.maximum(symbol.top_squares(frequencies)[:, 0], 0))
    dft = np.fft.fft2(weight, s=(5, 4))
    expected = [np.linalg.norm(dft[:, :, f0, f1], 2) for f0, f1 in frequencies]
    np.testing.assert_allclose(tops, expected, rtol=1e-10)


@pytest.mark.parametrize("c_out, c_in, groups", [(4, 6, 1), (6, 4, 2), (3, 3, 3)])
def test_the_allowance_adds_the_eigensolver_term_to_the_gram_error(c_out, c_in, groups):
    """The computed top eigenvalue of the Gram matrix is within ``error + n^2 u (W1^2 +
    error)`` of ``sigma_max^2`` (the module's notes): the allowance is at least that sum, in
    exact rationals, for ``n`` the smaller side of a group's block (a mutation review: the
    eigensolver's term could be dropped, leaving the Gram error alone, with no test
    noticing)."""
    from fractions import Fraction

    rng = np.random.default_rng(c_out * 10 + c_in)
    w = rng.standard_normal((c_out, c_in // groups, 3, 2)) * 3.0
    geom = ConvGeometry.from_weight(w, (c_in, 6, 5), groups=groups, padding_mode="circular",
                                    padding=(1, (0, 1)))
    rounding = Rounding.of(w, groups)
    gram = gram_symbol(geom, w, rounding)
    n = gram.size
    assert n == min(c_out, c_in) // groups
    w1, error = Fraction(rounding.tap_norms), Fraction(gram.error)
    needed = error + n * n * Fraction(2) ** -53 * (w1 * w1 + error)
    assert Fraction(gram.allowance) >= needed
    assert gram.allowance <= 1.01 * float(needed)  # and no looser than its formula
