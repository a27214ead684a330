"""The rounding model (sparseconv._rounding) against the constants of the literature."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from sparseconv._rounding import Rounding, U, cholesky_slack, down, gamma, scaled, up


@pytest.mark.parametrize("k", [0, 1, 2, 7, 63, 1000])
def test_cholesky_slack_covers_real_and_complex_factorizations(k):
    """A completed Cholesky of bandwidth k: |D| <= gamma(k + 1) |R^H| |R| in real arithmetic
    (Higham, Thm 10.3; Demmel's (2k+1) gamma(k+2) max M_ii in the 2-norm), gamma(k + 3) in
    complex arithmetic, whose inner products err by gamma(n + 2) (Higham, Lemma 3.5)."""
    # Demmel's bound, with one rounding more for the division by a pivot as a product
    assert cholesky_slack(k, False) >= (2 * k + 1) * gamma(k + 3) + 2 * U
    assert cholesky_slack(k, True) >= (2 * k + 1) * gamma(k + 4) + 2 * U
    assert cholesky_slack(k, True) >= cholesky_slack(k, False)


def test_scaled_is_exact_in_the_normal_range_and_outward_beyond():
    from fractions import Fraction

    for x in (1.0, 0.7071067811865476, 0.9999999999999999, 0.5):
        for exponent in (-1000, -1021, 0, 1000):  # x * 2**-1021 >= 2**-1022: normal
            exact = Fraction(x) * Fraction(2) ** exponent
            assert all(Fraction(scaled(x, exponent, up)) == exact for up in (None, True, False))
        for exponent in (-1060, -1073, -1080):  # subnormal, or below every float
            exact = Fraction(x) * Fraction(2) ** exponent
            assert Fraction(scaled(x, exponent, False)) <= exact <= Fraction(
                scaled(x, exponent, True))
        assert scaled(x, 1100, True) == math.inf
        assert scaled(x, 1100, False) == sys.float_info.max


def _weights():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((6, 2, 3, 3))
    yield real, 3, 1  # grouped: 3 groups of 2 outputs, 2 inputs each
    yield real[:4] + 1j * rng.standard_normal((4, 2, 3, 3)), 1, 2  # complex, copies=2
    yield rng.standard_normal((2, 5, 7)), 1, 1  # 1-D, 7 taps


@pytest.mark.parametrize("k", [1, 8, 40])
def test_up_and_down_round_outward_by_k_roundings(k):
    """``up(x, k)`` is at least ``x (1 + gamma(k))`` up to its own last rounding, ``down`` at
    most ``x (1 - gamma(k))``: exactly, in rationals."""
    from fractions import Fraction

    for x in (1.0, 0.1, 3.7e-200, 1e300, 0.7071067811865476):
        exact_up = Fraction(x) * (1 + Fraction(k) * Fraction(U))  # below x (1 + gamma(k))
        exact_down = Fraction(x) * (1 - Fraction(k) * Fraction(U))
        assert Fraction(up(x, k)) >= exact_up * (1 - Fraction(U))
        assert Fraction(down(x, k)) <= exact_down * (1 + Fraction(U))
        assert up(-x, k) == -x and down(-x, k) == 0.0


@pytest.mark.parametrize("index", range(3))
def test_the_rounding_model_of_a_weight_is_at_least_the_documented_one(index):
    """Each field of ``Rounding.of`` against its definition, computed independently: the
    tap norms ``W1``, ``alpha u W1`` with ``alpha = 2 pi d (d + 4) + 2 + 3 (K + 2)``, the row
    and column sums of ``|A|`` (``copies`` times for a column), and the terms per entry;
    the sums rounded up by at least their worst case."""
    weight, groups, copies = list(_weights())[index]
    r = Rounding.of(weight, groups, copies)
    d, k = weight.ndim - 2, math.prod(weight.shape[2:])
    taps = weight.reshape(weight.shape[0], weight.shape[1], k)
    w1 = math.fsum(math.sqrt(math.fsum(abs(complex(v)) ** 2 for v in taps[:, :, t].ravel()))
                   for t in range(k))
    # rounded up by the worst case of its float sums: more than gamma(taps.size), beside
    # LAPACK-free square roots (the sum of |w|^2 over C_out C_in terms, then over K norms)
    assert r.tap_norms >= w1 * (1 + gamma(taps.size))
    alpha = 2 * math.pi * d * (d + 4) + 2 + 3 * (k + 2)
    assert r.symbol_error >= alpha * U * w1
    magnitude = np.abs(taps)
    assert r.row_sum >= max(math.fsum(row.ravel()) for row in magnitude) * (
        1 + gamma(weight.shape[1] * k))
    out = weight.shape[0] // groups
    columns = [copies * math.fsum(magnitude[g * out:(g + 1) * out, c].ravel())
               for g in range(groups) for c in range(weight.shape[1])]
    assert r.column_sum >= max(columns) * (1 + gamma(out * k))
    assert r.taps_per_entry >= k * max(weight.shape[1], out) * copies
    assert r.abs_norm >= math.sqrt(r.row_sum * r.column_sum)


@pytest.mark.parametrize("index", range(3))
def test_sigma_max_bounds_widen_by_the_eigensolver_and_symbol_allowances(index):
    """``top_upper`` and ``top_lower`` widen a computed ``sigma_max`` of an ``m x n`` block by
    the eigensolver's allowance ``beta u (W1 + eps)^2``, ``beta = 2 (m + 2) + n^2 + 1``, and
    by the symbol's own error ``eps``; ``square_interval`` by its allowance on the squares;
    the quotient bounds by ``gamma(size + 2)`` per norm and ``gamma(taps) || |A| ||`` on the
    image. Each at least as wide as documented (a narrower one is not certified)."""
    weight, groups, copies = list(_weights())[index]
    r = Rounding.of(weight, groups, copies)
    frob, eps = r.tap_norms + r.symbol_error, r.symbol_error
    for rows, cols in ((4, 4), (2, 9), (9, 2)):
        m, n = max(rows, cols), min(rows, cols)
        allowance = (2 * (m + 2) + n * n + 1) * U * frob * frob
        for top in (0.0, 1e-9, 0.5, 3.0, 30.0):
            assert r.top_upper(top, rows, cols) >= math.sqrt(top * top + allowance) + eps
            assert r.top_lower(top, rows, cols) <= max(
                math.sqrt(max(top * top - allowance, 0.0)) - eps, 0.0)
            assert np.all(r.top_upper(np.array([top]), rows, cols) >= math.sqrt(
                top * top + allowance) + eps)
    squares = np.array([-1e-12, 0.0, 1e-20, 0.25, 9.0])
    lower, upper = Rounding.square_interval(squares, 1e-10)
    assert np.all(upper >= np.sqrt(np.maximum(squares, 0) + 1e-10))
    assert np.all(lower <= np.sqrt(np.maximum(squares - 1e-10, 0)))
    for image, vector, size in ((3.0, 1.0, 100), (1e-3, 2.0, 10**6), (5.0, 0.5, 7)):
        g = gamma(size + 2)
        error = gamma(r.taps_per_entry) * r.abs_norm * vector * (1 + g)
        assert r.quotient_lower(image, vector, size) <= max(
            (image * (1 - g) - error) / (vector * (1 + g)), 0.0)
        assert r.quotient_upper(image, vector, size) >= (image * (1 + g) + error) / (
            vector * (1 - g))
