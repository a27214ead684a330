"""The rounding model (sparseconv._rounding) against the constants of the literature."""

from __future__ import annotations

import pytest

from sparseconv._rounding import U, cholesky_slack, gamma


@pytest.mark.parametrize("k", [0, 1, 2, 7, 63, 1000])
def test_cholesky_slack_covers_real_and_complex_factorizations(k):
    """A completed Cholesky of bandwidth k: |D| <= gamma(k + 1) |R^H| |R| in real arithmetic
    (Higham, Thm 10.3; Demmel's (2k+1) gamma(k+2) max M_ii in the 2-norm), gamma(k + 3) in
    complex arithmetic, whose inner products err by gamma(n + 2) (Higham, Lemma 3.5)."""
    assert cholesky_slack(k, False) >= (2 * k + 1) * gamma(k + 2) + 2 * U
    assert cholesky_slack(k, True) >= (2 * k + 1) * gamma(k + 4) + 2 * U
    assert cholesky_slack(k, True) >= cholesky_slack(k, False)
