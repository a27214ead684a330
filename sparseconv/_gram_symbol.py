"""The Gram matrices of a periodic layer's symbol, as a trigonometric polynomial of their own.

The symbol is ``H(xi) = sum_t P_t exp(2 pi i <q_t, xi/M>)``, one term per tap (``P_t``: the
tap's weight in its stride phase's columns, ``q_t``: its shift on the coarse grid; see
:func:`sparseconv._symbol.placed_taps`). Its Gram matrix on the smaller side is then a
trigonometric polynomial too::

    H H^H = sum_d C_d exp(2 pi i <d, xi/M>),   C_d = sum_{q_t - q_s = d} P_t P_s^H

(``H^H H`` likewise, with ``C_d = sum_{q_s - q_t = d} P_t^H P_s``). The coefficients cost one
product per pair of taps, once for the whole grid; the direct route multiplies the symbol by
its adjoint at every frequency (a 512-channel 3x3 layer on a 29x29 grid: 45 products of
512 x 512 matrices against 421 complex ones, four times the work each). A frequency then costs
a phase sum of the coefficients -- one real product ``(F, D) x (D, n^2)`` for a chunk of
frequencies -- and the eigenvalues of its Gram matrix.

Rounding (the model of :mod:`sparseconv._rounding`; ``u = 2**-53``): with ``W1 = sum_t
||w_t||_F``, ``K`` taps, ``D`` coefficients and at most ``p`` pairs of taps per coefficient,
each computed coefficient errs by at most ``(gamma(inner * p) + 3 gamma(K)) sum |P_t| |P_s|^H``
entrywise (``inner``: the length of the products; ``3 gamma(K)``: taps that wrap onto one
position add up in ``P_t``); the phases by ``eps = (2 pi d (d + 4) + 2) u`` each (as for the
symbol); their sum by ``gamma(D + 2)`` of the sum of the terms' magnitudes. Since
``|| sum_{t,s} |P_t| |P_s|^H ||_2 <= W1^2``, the computed Gram matrix ``G^`` satisfies
``||G^ - G||_2 <= kappa W1^2``, ``kappa = gamma(inner p) + 3 gamma(K) + eps + gamma(D + 2) (1 +
gamma(inner p) + 3 gamma(K))``; a symmetric eigensolver adds ``n^2 u ||G^|| <= n^2 u (1 +
kappa) W1^2`` (``||G|| <= ||H||_F^2 <= W1^2``). So ``|sigma_max^2 - lambda^| <= (kappa + n^2 u
(1 + kappa)) W1^2``: :func:`gram_allowance`.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor

import numpy as np

from ._geometry import ConvGeometry
from ._memory import fits
from ._parallel import frequency_chunks, map_chunks
from ._rounding import Rounding, U, gamma, up
from ._symbol import phases, placed_taps
from ._typing import ProgressLike

__all__ = ["GramSymbol", "gram_symbol"]

#: Frequencies whose Gram matrices take about this many bytes are summed at once.
_CHUNK_BYTES = 16 * 2**20


class GramSymbol:
    """The coefficients ``C_d`` of a periodic layer's smaller Gram matrix, per group.

    Attributes
    ----------
    deltas : ndarray, shape (D, ndim)
        The exponents ``d``, on the coarse grid.
    coefficients : ndarray, shape (groups, D, n, n)
        ``C_d`` per group; real for a real kernel.
    grid : ndarray
        The coarse grid ``M`` (input size over stride).
    allowance : float
        ``|sigma_max(H(xi))^2 - lambda|`` for ``lambda`` the computed top eigenvalue at any
        frequency (see the module's notes): a relative ``1e-10`` or so of ``W1^2``.
    """

    def __init__(self, deltas: np.ndarray, coefficients: np.ndarray, grid: np.ndarray,
                 allowance: float) -> None:
        self.deltas, self.coefficients, self.grid = deltas, coefficients, grid
        self.allowance = allowance

    @property
    def size(self) -> int:
        return int(self.coefficients.shape[-1])

    def top_squares(self, frequencies: np.ndarray) -> np.ndarray:
        """The computed top eigenvalue of each group's Gram matrix at ``frequencies``
        (``(F, ndim)``): shape ``(F, groups)``."""
        groups, count, n = self.coefficients.shape[:3]
        step = max(1, _CHUNK_BYTES // (16 * n * n))
        tops = np.empty((len(frequencies), groups))
        flat = self.coefficients.reshape(groups, count, n * n)
        for start in range(0, len(frequencies), step):
            e = phases(frequencies[start:start + step], self.deltas, self.grid)  # (F, D)
            for g in range(groups):
                if flat.dtype.kind == "c":
                    gram = (e @ flat[g]).reshape(-1, n, n)
                else:  # two real products: a complex one would promote the coefficients
                    gram = np.empty((len(e), n * n), dtype=complex)
                    np.matmul(e.real, flat[g], out=gram.real)
                    np.matmul(e.imag, flat[g], out=gram.imag)
                    gram = gram.reshape(-1, n, n)
                # the lower triangle, as LAPACK reads it, is a Hermitian matrix within the
                # allowance of the exact Gram matrix (which is Hermitian)
                tops[start:start + step, g] = np.linalg.eigvalsh(gram, UPLO="L")[:, -1]
        return tops


def _pairs(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct differences ``q_t - q_s``, the index of each pair's, and the most pairs
    sharing one."""
    differences = (shift[:, None, :] - shift[None, :, :]).reshape(-1, shift.shape[1])
    deltas, index, counts = np.unique(differences, axis=0, return_inverse=True,
                                      return_counts=True)
    return deltas, index.reshape(len(shift), len(shift)), int(counts.max())


def gram_bytes(geom: ConvGeometry) -> int:
    """Memory of the coefficients (and the placed taps), counted before either is built."""
    rows = geom.out_channels // geom.groups
    cols = geom.in_channels // geom.groups * math.prod(geom.stride)
    taps = math.prod(geom.kernel_size)
    count = math.prod(2 * k - 1 for k in geom.kernel_size)  # at most, for distinct shifts
    return 16 * geom.groups * (count * min(rows, cols) ** 2 + 2 * taps * rows * cols)


def worth_it(geom: ConvGeometry, frequencies: int) -> bool:
    """Whether the coefficients cost less than the direct route's products, and fit.

    Multiply-adds: the direct route makes each frequency's symbol (``K rows cols``) and its
    Gram matrix (``n^2 inner``), complex; this one makes ``K^2 / 2`` real products of
    ``n^2 inner`` once, then ``2 D n^2`` per frequency.
    """
    rows = geom.out_channels // geom.groups
    cols = geom.in_channels // geom.groups * math.prod(geom.stride)
    n, inner, taps = min(rows, cols), max(rows, cols), math.prod(geom.kernel_size)
    count = math.prod(2 * k - 1 for k in geom.kernel_size)
    direct = 4 * frequencies * (taps * rows * cols + n * n * inner)
    coefficients = taps * (taps + 1) / 2 * n * n * inner + 2 * frequencies * count * n * n
    return coefficients < direct and fits(gram_bytes(geom))


def gram_allowance(rounding: Rounding, ndim: int, taps: int, count: int, inner: int,
                   pairs: int, size: int) -> float:
    """``(kappa + n^2 u (1 + kappa)) W1^2``, rounded up: see the module's notes."""
    eps = (2 * math.pi * ndim * (ndim + 4) + 2) * U
    products = gamma(inner * pairs) + 3 * gamma(taps)
    kappa = up(products + eps + gamma(count + 2) * (1 + products), 8)
    w1 = rounding.tap_norms
    return up((kappa + size * size * U * (1 + kappa)) * w1 * w1, 8)


def gram_symbol(geom: ConvGeometry, weight: np.ndarray, rounding: Rounding) -> GramSymbol:
    """The coefficients of each group's smaller Gram matrix, and their rounding allowance.

    ``rounding``: the model of ``weight`` (:meth:`Rounding.of`).
    """
    shift, placed = placed_taps(geom, weight)
    taps, groups = placed.shape[:2]
    blocks = placed.reshape(taps, groups, placed.shape[2], -1)  # (K, g, rows, cols)
    rows, cols = blocks.shape[2:]
    outputs = rows <= cols  # H H^H: C_d = sum_{q_t - q_s = d} P_t P_s^H; else H^H H
    deltas, index, pairs = _pairs(shift if outputs else -shift)
    n = min(rows, cols)
    coefficients = np.zeros((groups, len(deltas), n, n), dtype=blocks.dtype)
    for t in range(taps):
        for s in range(t, taps):  # (t, s) and (s, t): one product and its adjoint
            a, b = blocks[t], blocks[s]
            product = a @ np.conj(np.swapaxes(b, -1, -2)) if outputs else \
                np.conj(np.swapaxes(a, -1, -2)) @ b
            coefficients[:, index[t, s]] += product
            if s != t:
                coefficients[:, index[s, t]] += np.conj(np.swapaxes(product, -1, -2))
    grid = np.array([a.size // a.stride for a in geom.axes])
    allowance = gram_allowance(rounding, geom.ndim, taps, len(deltas), max(rows, cols), pairs,
                               n)
    return GramSymbol(deltas, coefficients, grid, allowance)


def _top_squares(symbol: GramSymbol, frequencies: np.ndarray) -> np.ndarray:
    """One task of :func:`top_squares`."""
    return symbol.top_squares(frequencies)


def top_squares(symbol: GramSymbol, frequencies: np.ndarray, executor: Executor | None = None,
                progress: ProgressLike | None = None, what: str = "the Gram symbol",
                ) -> np.ndarray:
    """:meth:`GramSymbol.top_squares` at ``frequencies``, in tasks on ``executor``."""
    step = max(1, _CHUNK_BYTES // (16 * symbol.size**2))
    chunks = frequency_chunks(frequencies, step, executor)
    parts = map_chunks(_top_squares, (symbol,), chunks, executor=executor, what=what,
                       progress=progress, label=lambda i: f"frequency chunk {i}")
    return np.concatenate(parts)
