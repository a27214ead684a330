"""The Lanczos lower bound (sparseconv._lanczos): its single-precision search, checked and
finished in double precision, against LAPACK's norm of the explicit matrix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.linalg import aslinearoperator

from sparseconv import ConvOperator, _lanczos, conv_matrix, spectral_norm
from sparseconv._norm_routes import _matrix_interval
from sparseconv._rounding import Rounding


def dense_norm(w, shape, **kwargs):
    return np.linalg.norm(conv_matrix(w, shape, **kwargs).toarray(), 2)


def recorded_calls(monkeypatch) -> list:
    """Every layer searches in single precision; each call of the iteration is recorded as
    ``(precision, tol, start, top vector found, every vector returned)``."""
    monkeypatch.setattr(_lanczos, "SINGLE_FROM", 0)
    calls: list = []
    original = _lanczos._lanczos

    def recorded(op, start, tol, *args, **kwargs):
        found, met = original(op, start, tol, *args, **kwargs)
        rows = np.atleast_2d(found)
        calls.append((np.dtype(op.dtype).name, tol, start.copy(), rows[-1], rows))
        return found, met

    monkeypatch.setattr(_lanczos, "_lanczos", recorded)
    return calls


LAYERS = [  # (C_out, C_in, kernel, input size, keyword arguments)
    (6, 4, (3, 3), (11, 9), dict(padding=1)),
    (5, 3, (3, 3), (12, 12), dict(padding=2, stride=2)),
    (8, 8, (3,), (40,), dict(padding=1, dilation=2, groups=2)),
    (4, 4, (3, 3), (10, 10), dict(padding=1, padding_mode="reflect")),
    (3, 2, (2, 3, 3), (5, 6, 5), dict(padding=1)),
]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("layer", LAYERS, ids=[str(k) for *_, k in LAYERS])
def test_single_precision_search_gives_the_double_precision_bound(monkeypatch, layer,
                                                                   complex_):
    """The search in float32 (complex64) finds a vector whose double-precision quotient is
    as good as the double-precision search's: the interval holds the truth, and its lower
    end is within tol of it."""
    calls = recorded_calls(monkeypatch)
    c_out, c_in, kernel, size, kwargs = layer
    rng = np.random.default_rng(sum(size) + c_out)
    w = rng.standard_normal((c_out, c_in // kwargs.get("groups", 1), *kernel))
    if complex_:
        w = w + 1j * rng.standard_normal(w.shape)
    shape = (c_in, *size)
    result = spectral_norm(w, shape, method="bounds", tol=1e-9, **kwargs)
    truth = dense_norm(w, shape, **kwargs)
    assert calls[0][0] == ("complex64" if complex_ else "float32")
    assert result.lower <= truth * (1 + 1e-14) and truth <= result.upper * (1 + 1e-14)
    assert result.converged
    assert truth - result.lower <= 1e-8 * truth, (result, truth)


def from_the_search(op, start, rows) -> bool:
    """Whether the double-precision iteration's ``start`` is the Rayleigh-Ritz vector of the
    search's Ritz vectors ``rows``: in their span, and with a quotient at least that of each
    of them."""
    rows = rows.astype(start.dtype)  # (a single-precision vector's product is single too)
    basis = np.linalg.qr(rows.T)[0]
    inside = np.linalg.norm(start - basis @ (np.conj(basis.T) @ start))
    quotients = [np.linalg.norm(op.matvec(u)) / np.linalg.norm(u) for u in (start, *rows)]
    return bool(inside <= 1e-12 * np.linalg.norm(start)
                and quotients[0] >= max(quotients[1:]) * (1 - 1e-14))


def test_an_unconfirmed_single_precision_search_goes_on_in_double(monkeypatch):
    """A search whose own residual met tol but whose vector fails the double-precision check
    (forced here) goes on in double precision from the vector it found, and meets tol."""
    calls = recorded_calls(monkeypatch)
    monkeypatch.setattr(_lanczos, "_confirmed", lambda *args, **kwargs: False)
    w = np.random.default_rng(3).standard_normal((6, 6, 3, 3))
    shape = (6, 14, 14)
    result = spectral_norm(w, shape, padding=1, method="bounds", tol=1e-5)
    truth = dense_norm(w, shape, padding=1)
    assert [(dtype, tol) for dtype, tol, *_ in calls] == [("float32", 5e-6), ("float64", 1e-5)]
    op = ConvOperator(w, shape, padding=1)
    assert from_the_search(op, calls[1][2], calls[0][4])  # from where the search stopped
    assert result.converged
    assert abs(truth - result.lower) <= 1e-5 * truth and result.lower <= truth * (1 + 1e-15)


def test_a_tolerance_below_single_reach_is_finished_in_double(monkeypatch):
    """Below SINGLE_REACH the search aims at half of it, and the double-precision iteration
    finishes at tol from the vector it found; a looser tol needs the search alone."""
    calls = recorded_calls(monkeypatch)
    w = np.random.default_rng(3).standard_normal((6, 6, 3, 3))
    shape = (6, 14, 14)
    truth = dense_norm(w, shape, padding=1)
    result = spectral_norm(w, shape, padding=1, method="bounds", tol=1e-9)
    reach = _lanczos.SINGLE_REACH
    assert [(dtype, tol) for dtype, tol, *_ in calls] == [("float32", reach / 2),
                                                          ("float64", 1e-9)]
    assert from_the_search(ConvOperator(w, shape, padding=1), calls[1][2], calls[0][4])
    assert result.converged and truth * (1 - 1e-9) <= result.lower <= truth * (1 + 1e-15)
    calls.clear()
    loose = spectral_norm(w, shape, padding=1, method="bounds", tol=1e-4)
    # the search alone at a looser tol: it claimed 5e-5 and settled 1.5e-4 below the norm;
    # the whole Gram's certificate refuted that, and a search off its vector (in double
    # precision) found the top (until 2026-12-04, converged=True stood, 1.5e-4 below)
    assert [(dtype, tol) for dtype, tol, *_ in calls] == [("float32", 5e-5), ("float64", 1e-4)]
    assert loose.converged and truth * (1 - 1e-4) <= loose.lower <= truth * (1 + 1e-15)


@pytest.mark.parametrize("tol", [1e-5, 1e-8])
def test_a_search_out_of_steps_goes_on_in_double(monkeypatch, tol):
    """maxiter bounds each precision: a search that uses it up without meeting tol goes on in
    double precision from its vector, for maxiter steps more, and the result says whether tol
    was met (not, in 6 + 6 steps)."""
    calls = recorded_calls(monkeypatch)
    w = np.random.default_rng(4).standard_normal((6, 6, 3, 3))
    op = ConvOperator(w, (6, 14, 14), padding=1)
    single = ConvOperator(w, (6, 14, 14), padding=1, dtype=np.float32)
    rounding = Rounding.of(w, 1)
    start = np.ones(op.shape[1])
    lower, converged, _ = _lanczos.lower_bound(op, start, tol, rounding, maxiter=6,
                                            single=lambda: single)
    assert [dtype for dtype, *_ in calls] == ["float32", "float64"]
    assert from_the_search(op, calls[1][2], calls[0][4])
    assert not converged and lower <= dense_norm(w, (6, 14, 14), padding=1)


def stubbed_search(monkeypatch, claimed: bool):
    """A 6 -> 6 layer on 14x14 whose every search (in single precision: SINGLE_FROM is 0)
    returns the Gram's exact top eigenvector and ``claimed``, recording ``(precision, tol)``
    of each call. Returns the weight, the operator, its single-precision twin and the
    record."""
    monkeypatch.setattr(_lanczos, "SINGLE_FROM", 0)
    w = np.random.default_rng(4).standard_normal((6, 6, 3, 3))
    op = ConvOperator(w, (6, 14, 14), padding=1)
    single = ConvOperator(w, (6, 14, 14), padding=1, dtype=np.float32)
    matrix = op.tosparse().toarray()
    top = np.linalg.eigh(matrix.T @ matrix)[1][:, -1]
    asked: list = []

    def search(operator, start, tol, maxiter, ceiling=np.inf, count=1):
        asked.append((np.dtype(operator.dtype).name, tol))
        return top.astype(operator.dtype), claimed

    monkeypatch.setattr(_lanczos, "_lanczos", search)
    return w, op, single, asked


@pytest.mark.parametrize("tol, aim, alone", [(5e-8, 1e-7, False), (1.5e-7, 1e-7, True),
                                             (1e-5, 5e-6, True)])
def test_only_a_search_that_met_tol_is_confirmed_by_its_residual(monkeypatch, tol, aim, alone):
    """A search that met half of SINGLE_REACH, not a tighter tol, settled only at that level:
    even with the top eigenvector in hand (its residual at rounding level) the
    double-precision iteration decides, unless the ceiling does. One that met tol or better
    (half of tol, or half of SINGLE_REACH when that is below tol) is confirmed by its
    residual."""
    w, op, single, asked = stubbed_search(monkeypatch, claimed=True)
    assert _lanczos.SINGLE_REACH / 2 == 1e-7
    _lanczos.lower_bound(op, np.ones(op.shape[1]), tol, Rounding.of(w, 1),
                         single=lambda: single)
    assert asked == [("float32", aim)] + ([] if alone else [("float64", tol)])


class CountedAdjoint(ConvOperator):
    """A ConvOperator that counts the products of its adjoint."""

    adjoints = 0

    def _rmatvec(self, y):
        CountedAdjoint.adjoints += 1
        return super()._rmatvec(y)


def test_confirmation_redoes_the_tests_in_double_precision():
    """An eigenvector of the Gram passes; a vector that is far from one does not. The
    residual (the adjoint's product) is computed only when the quotient does not decide and
    it is asked for."""
    w = np.random.default_rng(5).standard_normal((4, 4, 3, 3))
    op = CountedAdjoint(w, (4, 9, 9), padding=1)
    gram = op.tosparse().toarray()
    values, vectors = np.linalg.eigh(gram.T @ gram)
    assert _lanczos._confirmed(op, vectors[:, -1], 1e-10, np.inf)
    assert not _lanczos._confirmed(op, vectors[:, -1] + vectors[:, -2], 1e-10, np.inf)
    # at a proved ceiling, the quotient alone decides
    ceiling = values[-1] * (1 + 1e-12)
    CountedAdjoint.adjoints = 0
    assert _lanczos._confirmed(op, vectors[:, -1] + 1e-3 * vectors[:, 0], 1e-6, ceiling)
    assert not _lanczos._confirmed(op, vectors[:, -1], 1e-10, np.inf, by_residual=False)
    assert CountedAdjoint.adjoints == 0
    assert _lanczos._confirmed(op, vectors[:, -1], 1e-10, np.inf)
    assert CountedAdjoint.adjoints == 1


def test_the_ceiling_test_is_on_the_norm():
    """``tol`` is relative on the norm: a quotient whose square is 1.5 tol below a proved
    ceiling on ``lambda_max`` has its norm within 0.75 tol of the bound, so within tol of the
    norm (the squares' test asked for half of tol, and failed it)."""
    w = np.random.default_rng(5).standard_normal((4, 4, 3, 3))
    op = ConvOperator(w, (4, 9, 9), padding=1)
    matrix = op.tosparse().toarray()
    values, vectors = np.linalg.eigh(matrix.T @ matrix)
    tol, ceiling = 1e-4, values[-1] * (1 + 1.5e-4)
    # near the top vector, but with a residual far above tol: the ceiling alone can pass it
    vector = vectors[:, -1] + 1e-3 * vectors[:, 0]
    theta = float(np.linalg.norm(matrix @ vector) ** 2 / np.linalg.norm(vector) ** 2)
    assert not _lanczos._confirmed(op, vector, tol, np.inf)
    # within tol of the proved bound on the norm, so of the norm; not on the squares
    assert np.sqrt(theta) >= (1 - tol) * np.sqrt(ceiling) and theta < (1 - tol) * ceiling
    assert _lanczos._confirmed(op, vector, tol, ceiling)


def test_the_single_precision_twin_is_declined_when_memory_is_short():
    """Under a memory limit that holds the double-precision operator but not a second one,
    the search stays in double precision (no late MatrixTooLargeError)."""
    from sparseconv import set_memory_limit
    from sparseconv._geometry import ConvGeometry
    from sparseconv._norm_bounds import layer_operator, single_operator
    from sparseconv._products import forward_bytes
    w = np.random.default_rng(6).standard_normal((8, 8, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (8, 64, 64), padding=1)
    assert single_operator(w, geom).dtype == np.float32
    previous = set_memory_limit(int(1.2 * forward_bytes(geom, 1, 8)))
    try:
        assert layer_operator(w, geom).dtype == np.float64 and single_operator(w, geom) is None
    finally:
        set_memory_limit(previous)


def test_the_single_precision_search_aims_at_half_of_tol(monkeypatch):
    """The search runs to tol / 2 (tol >= SINGLE_REACH), and its vector is confirmed at tol
    itself: one out of steps whose quotient reaches the proved ceiling is converged without a
    second iteration; by its residual alone it is not (the search may still have been
    moving)."""
    w, op, single, asked = stubbed_search(monkeypatch, claimed=False)  # out of steps
    truth = dense_norm(w, (6, 14, 14), padding=1)
    lower, converged, _ = _lanczos.lower_bound(op, np.ones(op.shape[1]), 1e-5, Rounding.of(w, 1),
                                            upper=truth * (1 + 5e-6), single=lambda: single)
    assert asked == [("float32", 5e-6)] and converged
    assert truth * (1 - 1e-5) <= lower <= truth
    lower, converged, _ = _lanczos.lower_bound(op, np.ones(op.shape[1]), 1e-5, Rounding.of(w, 1),
                                            single=lambda: single)  # no ceiling: not claimed
    assert asked[1:] == [("float32", 5e-6), ("float64", 1e-5)]  # (out of steps again here)
    assert not converged and truth * (1 - 1e-5) <= lower <= truth


def test_the_search_s_top_ritz_vectors_are_combined_in_double_precision(monkeypatch):
    """Two eigenvalues closer than single precision tells apart leave the search's top Ritz
    vector a mix of their eigenvectors; the double-precision check takes the best vector of
    the span of its top Ritz vectors (Rayleigh-Ritz), which is the top eigenvector itself
    here: confirmed by its residual, with no double-precision iteration. (The mix alone fails
    the check, and the iteration then ran.)"""
    monkeypatch.setattr(_lanczos, "SINGLE_FROM", 0)
    w = np.random.default_rng(4).standard_normal((6, 6, 3, 3))
    op = ConvOperator(w, (6, 14, 14), padding=1)
    single = ConvOperator(w, (6, 14, 14), padding=1, dtype=np.float32)
    matrix = op.tosparse().toarray()
    values, vectors = np.linalg.eigh(matrix.T @ matrix)
    mixes = np.stack([vectors[:, -1] - vectors[:, -2], vectors[:, -1] + vectors[:, -2]]) / 2**0.5
    asked: list = []

    def search(operator, start, tol, maxiter, ceiling=np.inf, count=1):
        asked.append((np.dtype(operator.dtype).name, count))
        found = mixes if count > 1 else mixes[-1]
        return found.astype(operator.dtype), True

    monkeypatch.setattr(_lanczos, "_lanczos", search)
    tol = 1e-7
    assert not _lanczos._confirmed(op, mixes[-1], tol, np.inf)
    lower, converged, _ = _lanczos.lower_bound(op, np.ones(op.shape[1]), tol, Rounding.of(w, 1),
                                            single=lambda: single)
    assert asked == [("float32", _lanczos.RITZ)] and converged
    truth = np.sqrt(values[-1])
    assert truth * (1 - 1e-12) <= lower <= truth * (1 + 1e-15)


def test_rayleigh_ritz_finds_the_best_vector_of_a_span():
    """The top Ritz vector of a span is the vector of the largest quotient in it: the top
    eigenvector where the span holds it, whatever the rows (complex ones too)."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((30, 30)) + 1j * rng.standard_normal((30, 30))
    gram = a.conj().T @ a
    values, vectors = np.linalg.eigh(gram)
    rows = (rng.standard_normal((3, 3)) @ vectors[:, [-1, 5, 9]].T)  # mixes of three
    found = _lanczos._rayleigh_ritz(aslinearoperator(gram), rows)
    assert abs(np.vdot(found, vectors[:, -1])) >= 1 - 1e-12
    assert np.isclose(np.linalg.norm(found), 1.0)


def test_the_rayleigh_ritz_step_keeps_to_the_memory_limit(monkeypatch):
    """Its copies of the Ritz vectors take half the limit at most, as the Lanczos basis does:
    under a limit that holds the iteration but not them, the search returns its top vector
    alone, and the bound is still found."""
    from sparseconv import get_memory_limit, set_memory_limit
    monkeypatch.setattr(_lanczos, "SINGLE_FROM", 0)
    asked: list = []
    original = _lanczos._lanczos

    def counted(op, start, tol, *args, count=1, **kwargs):
        asked.append(count)
        return original(op, start, tol, *args, count=count, **kwargs)

    monkeypatch.setattr(_lanczos, "_lanczos", counted)
    w = np.random.default_rng(4).standard_normal((6, 6, 3, 3))
    op = ConvOperator(w, (6, 14, 14), padding=1)
    single = ConvOperator(w, (6, 14, 14), padding=1, dtype=np.float32)
    truth = dense_norm(w, (6, 14, 14), padding=1)
    cols = op.shape[1]
    for limit, count in [(None, _lanczos.RITZ), (6 * _lanczos.RITZ * cols * 8 - 1, 1)]:
        asked.clear()
        previous = get_memory_limit()
        set_memory_limit(limit)
        try:
            lower, converged, _ = _lanczos.lower_bound(op, np.ones(cols), 1e-7, Rounding.of(w, 1),
                                                    single=lambda: single)
        finally:
            set_memory_limit(previous)
        assert asked[0] == count
        assert truth * (1 - 1e-7) <= lower <= truth * (1 + 1e-15) and converged



def test_a_deflated_search_finds_what_the_first_krylov_space_missed(monkeypatch):
    """A layer of two decoupled channel blocks whose norms lie 1e-6 apart, and a search that
    settled on the weaker block's top vector (within 1e-6 of the norm, its residual
    small): searched again off that vector (``deflate``), the iteration finds the stronger
    block, and the Rayleigh-Ritz vector of the two is the top one."""
    rng = np.random.default_rng(3)
    block = rng.standard_normal((3, 3, 3, 3))
    w = np.zeros((6, 6, 3, 3))
    w[:3, :3], w[3:, 3:] = block, block * (1 + 1e-6)
    shape = (6, 9, 9)
    op = ConvOperator(w, shape, padding=1)
    matrix = op.tosparse().toarray()
    values, vectors = np.linalg.eigh(matrix.T @ matrix)
    truth = np.sqrt(values[-1])
    weaker = vectors[:, -2]  # the weaker block's top vector, 1e-6 below
    assert np.linalg.norm(weaker[op.shape[1] // 2:]) < 1e-9
    rounding = Rounding.of(w, 1)
    projected, original = [], _lanczos._projected
    monkeypatch.setattr(_lanczos, "_projected", lambda gram, u: (
        projected.append(abs(np.vdot(u, weaker))), original(gram, u))[1])
    lower, converged, found = _lanczos.lower_bound(op, np.ones(op.shape[1]), 1e-7, rounding,
                                                   deflate=weaker)
    assert projected == [pytest.approx(1.0)]  # the search ran off that vector
    assert converged and truth * (1 - 1e-9) <= lower <= truth * (1 + 1e-15), (lower, truth)
    assert abs(np.vdot(found, vectors[:, -1])) >= (1 - 1e-9) * np.linalg.norm(found)


@pytest.mark.parametrize("wide", [False, True])
def test_every_certified_quotient_allows_for_the_longest_norm(monkeypatch, wide):
    """A certified quotient ``||A u|| / ||u||`` widens for the rounding of both norms, each a
    sum of up to ``max(rows, cols)`` squares: the size every call passes covers the longer
    side, for the Lanczos bound, the banded one and the dense route's alike, on a layer with
    more outputs than inputs and on one with fewer (two mutation reviews: the banded bound's
    size and the dense route's could shrink to the shorter side with no test noticing)."""
    from sparseconv._geometry import ConvGeometry

    sizes: list[int] = []
    for name in ("quotient_lower", "quotient_upper"):
        original = getattr(Rounding, name)
        monkeypatch.setattr(Rounding, name, lambda self, image, vector, size, original=original: (
            sizes.append(size), original(self, image, vector, size))[1])
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 5, 3) if wide else (5, 3, 3))
    shape = (w.shape[1], 100)
    op = ConvOperator(w, shape, padding=1)
    rows, cols = op.shape
    assert rows != cols
    rounding = Rounding.of(w, 1)
    truth = dense_norm(w, shape, padding=1)
    lower, _, _ = _lanczos.lower_bound(op, np.ones(cols), 1e-7, rounding)
    assert sizes and min(sizes) >= max(rows, cols) and lower <= truth
    sizes.clear()
    geom = ConvGeometry.from_weight(w, shape, padding=1)
    found = _lanczos.banded_lower_bound(op, w, geom, truth * (1 + 1e-6), 1e-7, rounding)
    assert found is not None and found[0] <= truth
    assert sizes and min(sizes) >= max(rows, cols), (sizes, rows, cols)
    sizes.clear()  # the dense route's quotient
    _, lower, _ = _matrix_interval(conv_matrix(w, shape, padding=1).toarray(), rounding)
    assert sizes and min(sizes) >= max(rows, cols) and lower <= truth, (sizes, rows, cols)
