"""The rounding model behind every certified bound: what float64 arithmetic can cost.

A certificate must hold for the layer the user gave, not for the numbers the computer happened
to produce. Every bound in :mod:`sparseconv._certificates` (and the modules it names:
:mod:`sparseconv._exact_sections`, :mod:`sparseconv._whole_gram`) and :mod:`sparseconv._lanczos`
is computed in float64 (complex128) from weights converted exactly to that precision, and then
widened by the worst-case effect of rounding, derived from the standard model
``fl(a op b) = (a op b)(1 + d)``, ``|d| <= u = 2**-53`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed.):

* an inner product of ``k`` terms errs by at most ``gamma(k) sum |a_i b_i|``,
  ``gamma(k) = k u / (1 - k u)``; complex ones by ``gamma(2k + 4)`` (a generous constant);
* the symbol ``H(xi) = sum_t w_t exp(2 pi i <q_t, xi/M>)`` is evaluated with phases whose
  angle errs by at most ``2 pi d (d + 4) u`` and whose exponential by ``2 u`` more, so
  ``||fl(H) - H||_F <= alpha u W1`` with ``alpha = 2 pi d (d + 4) + 2 + 3 (K + 2)`` and
  ``W1 = sum_t ||w_t||_F`` (``K`` taps, ``d`` axes), which also bounds ``||H(xi)||_F`` at
  every frequency and ``|| |T| ||_2`` of every one-dimensional section ``T``;
* a symmetric eigensolver returns the exact eigenvalues of ``G + E``,
  ``||E|| <= n**2 u ||G||`` (LAPACK's backward error ``p(n) u ||G||`` with ``p(n) = n**2``,
  a conservative choice of its modestly growing constant);
* a Cholesky factorization of a matrix ``M`` of bandwidth ``k`` that runs to completion in
  floating point is the exact factorization of ``M + D``, ``|D| <= gamma(k + 1) |R^T| |R|``,
  hence ``||D||_2 <= (2k + 1) gamma(k + 2) max_i M_ii`` (Demmel; Rump, BIT 46, 2006): so
  ``M`` is positive semidefinite if ``M + (2k+1) gamma(k+2) max M_ii I`` is; in complex
  arithmetic the inner products of length ``k + 1`` take the complex constant above,
  ``gamma(k + 1)`` becoming ``gamma(2k + 6)``. LAPACK divides by a pivot as a product with
  its reciprocal (one rounding more), so :func:`cholesky_slack` takes ``gamma(k + 3)`` and
  ``gamma(2k + 9)``.

Each formula of this module then rounds its own result outward (:func:`up`, :func:`down`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import overload

import numpy as np

__all__ = ["U", "Rounding", "cholesky_slack", "decimal_outward", "down", "gamma", "scaled",
           "up"]

U = 2.0**-53  #: unit roundoff of float64


def gamma(k: float) -> float:
    """``k u / (1 - k u)``: the relative error bound of ``k`` chained roundings."""
    return k * U / (1 - k * U)


def up(x: float | np.floating, operations: int = 8) -> float:
    """``x``, a result of at most ``operations`` roundings of positive terms, rounded outward."""
    return float(x) * (1 + gamma(operations)) if x > 0 else float(x)


def down(x: float, operations: int = 8) -> float:
    """:func:`up`'s counterpart for a lower bound (never below zero)."""
    return max(0.0, float(x) * (1 - gamma(operations)))


def decimal_outward(value: float, rounding: str, digits: int) -> Decimal:
    """``value`` to ``digits`` significant digits, rounded outward from the float's exact
    value, so that a printed bound stays one: ``rounding`` is ``decimal.ROUND_FLOOR`` for a
    lower bound, ``ROUND_CEILING`` for an upper one. Zero and non-finite values are returned
    exactly.

    The float's exact value, not its shortest repr: 0.1 is 0.1000000000000000055..., above
    ``repr``'s ``0.1``, so rounding that repr up would print a bound below the float (a
    review found it in the report's table, the command line and the figures).
    """
    exact = Decimal(float(value))
    if exact == 0 or not exact.is_finite():
        return exact
    rounded = exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding)
    # a carry into a new leading digit leaves digits + 1 of them (1e-12 up: 1.0000000000E-12,
    # a review); their last is a zero, dropped exactly
    return rounded.quantize(Decimal(1).scaleb(rounded.adjusted() - digits + 1), rounding)


def scaled(x: float, exponent: int, upward: bool | None = None) -> float:
    """``x * 2**exponent``: exact in the normal range; else, for a bound, rounded outward.

    ``upward``: True for an upper bound, False for a lower one, None (the estimate) to the
    nearest float. A result below the normal range rounds to a neighbouring subnormal, maybe
    on the wrong side of the number it bounds; one beyond the largest float is infinite for
    an upper bound and the largest float for a lower one (the scaled number is finite), never
    with numpy's overflow warning.
    """
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return x
    try:
        y = math.ldexp(x, exponent)
    except OverflowError:
        return sys.float_info.max if upward is False else math.inf
    back = math.ldexp(y, -exponent)  # exact: y is a normal number, or a subnormal scaled up
    if upward and back < x:
        return math.nextafter(y, math.inf)
    if upward is False and back > x:
        return math.nextafter(y, 0.0)
    return y


def cholesky_slack(bandwidth: int, complex_: bool) -> float:
    """The relative allowance of a Cholesky test of bandwidth ``k``: a factorization of
    ``mu I - G`` that completes in floating point proves ``lambda_max(G) <= mu (1 + slack)``.

    ``(2k + 1) gamma(k + 3) + 2u`` in real arithmetic (the ``2u``: forming ``mu - G_ii``);
    ``(2k + 1) gamma(2k + 9) + 2u`` in complex arithmetic, whose inner products of ``k + 1``
    terms err by ``gamma(2(k + 1) + 4)`` instead of ``gamma(k + 1)``; each with one rounding
    more than Demmel's bound for the division by a pivot, which LAPACK carries out as a
    product with its reciprocal.
    """
    return (2 * bandwidth + 1) * gamma(2 * bandwidth + 9 if complex_ else bandwidth + 3) + 2 * U


@dataclass(frozen=True)
class Rounding:
    """The rounding model of one layer's weights (float64 or complex128, already scaled).

    Attributes
    ----------
    tap_norms : float
        ``W1 = sum_t ||w_t||_F``, rounded up: a bound on ``||H(xi)||_F`` at every frequency
        and on ``|| |T| ||_2`` of every section.
    symbol_error : float
        ``alpha u W1``: a bound on ``||fl(H(xi)) - H(xi)||_F`` for every evaluation of the
        symbol (or of a section's kernels), at any subset of frequencies.
    row_sum, column_sum : float
        The largest absolute row and column sums of the layer's matrix (``copies`` counts
        how often padding copies one input entry): ``|| |A| ||_2 <= sqrt(row_sum *
        column_sum)``.
    taps_per_entry : int
        The most terms one entry of ``A x`` or ``A^H y`` sums.
    """

    tap_norms: float
    symbol_error: float
    row_sum: float
    column_sum: float
    taps_per_entry: int

    @classmethod
    def of(cls, weight: np.ndarray, groups: int, copies: int = 1) -> Rounding:
        ndim = weight.ndim - 2
        taps = weight.reshape(weight.shape[0], weight.shape[1], -1)
        k = taps.shape[-1]
        w1 = up(np.sqrt((np.abs(taps) ** 2).sum(axis=(0, 1))).sum(), taps.size + k + 4)
        alpha = 2 * math.pi * ndim * (ndim + 4) + 2 + 3 * (k + 2)
        magnitude = np.abs(taps)
        row_sum = up(magnitude.sum(axis=(1, 2)).max(), taps.size + 2)
        # a column: every output channel of the input channel's group, every tap, every copy
        out_per_group = weight.shape[0] // groups
        per_input = magnitude.reshape(groups, out_per_group, weight.shape[1], k).sum(axis=(1, 3))
        column_sum = up(per_input.max() * copies, taps.size + 4)
        entry_terms = k * max(weight.shape[1], out_per_group) * copies + 4
        return cls(w1, up(alpha * U * w1), row_sum, column_sum, entry_terms)

    @property
    def abs_norm(self) -> float:
        """A bound on ``|| |A| ||_2`` (hence on ``||A||_2``): ``sqrt(row_sum * column_sum)``."""
        return up(math.sqrt(self.row_sum * self.column_sum))

    @overload
    def top_upper(self, top: np.ndarray, rows: int, cols: int) -> np.ndarray: ...
    @overload
    def top_upper(self, top: float, rows: int, cols: int) -> float: ...
    def top_upper(self, top: np.ndarray | float, rows: int, cols: int) -> np.ndarray | float:
        """A rigorous upper bound on ``sigma_max(H(xi))`` from its computed value ``top``.

        ``top`` came from the eigenvalues of the smaller Gram matrix of the evaluated
        ``rows x cols`` blocks (or from their SVD, whose backward error is no larger).
        """
        m, n = max(rows, cols), min(rows, cols)
        frob = self.tap_norms + self.symbol_error
        beta = 2 * (m + 2) + n * n + 1
        value = np.sqrt(np.square(top) + beta * U * frob * frob) + self.symbol_error
        return value * (1 + gamma(8))

    @overload
    def top_lower(self, top: np.ndarray, rows: int, cols: int) -> np.ndarray: ...
    @overload
    def top_lower(self, top: float, rows: int, cols: int) -> float: ...
    def top_lower(self, top: np.ndarray | float, rows: int, cols: int) -> np.ndarray | float:
        """:meth:`top_upper`'s counterpart: a rigorous lower bound on ``sigma_max(H(xi))``."""
        m, n = max(rows, cols), min(rows, cols)
        frob = self.tap_norms + self.symbol_error
        beta = 2 * (m + 2) + n * n + 1
        value = np.sqrt(np.maximum(np.square(top) - beta * U * frob * frob, 0.0))
        value = np.maximum((value - self.symbol_error) * (1 - gamma(8)), 0.0)
        return float(value) if np.ndim(value) == 0 else value

    @staticmethod
    def square_interval(squares: np.ndarray, allowance: float) -> tuple[np.ndarray, np.ndarray]:
        """Rigorous bounds on ``sigma`` from computed ``sigma^2`` values known to within
        ``allowance`` (absolute): ``(lower, upper)``."""
        upper = np.sqrt(np.maximum(squares, 0.0) + allowance) * (1 + gamma(8))
        lower = np.sqrt(np.maximum(squares - allowance, 0.0)) * (1 - gamma(8))
        return lower, upper

    def quotient_lower(self, image_norm: float, vector_norm: float, size: int) -> float:
        """A rigorous lower bound on ``||A v|| / ||v||`` from their computed norms.

        Each entry of the computed ``A v`` errs by at most ``gamma(taps_per_entry)`` times
        the same entry of ``|A| |v|``, whose norm is at most ``abs_norm * ||v||``; the two
        computed norms err by ``gamma(size + 2)`` each.
        """
        if vector_norm <= 0:
            return 0.0
        g, error = self._quotient_errors(vector_norm, size)
        return down((image_norm * (1 - g) - error) / (vector_norm * (1 + g)))

    def quotient_upper(self, image_norm: float, vector_norm: float, size: int) -> float:
        """:meth:`quotient_lower`'s counterpart: the largest ``||A v|| / ||v||`` can be."""
        if vector_norm <= 0:
            return math.inf
        g, error = self._quotient_errors(vector_norm, size)
        return up((image_norm * (1 + g) + error) / (vector_norm * (1 - g)))

    def _quotient_errors(self, vector_norm: float, size: int) -> tuple[float, float]:
        """The relative error of each computed norm, and the absolute error of ``||A v||``
        (:meth:`quotient_lower`)."""
        g = gamma(size + 2)
        return g, gamma(self.taps_per_entry) * self.abs_norm * vector_norm * (1 + g)
