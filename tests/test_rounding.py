"""The rounding model (sparseconv._rounding) against the constants of the literature."""

from __future__ import annotations

import math
import sys

import pytest

from sparseconv._rounding import U, cholesky_slack, gamma, scaled


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
