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
gamma(inner p) + 3 gamma(K))`` (:func:`gram_error`); a symmetric eigensolver adds ``n^2 u ||G^||
<= n^2 u (1 + kappa) W1^2`` (``||G|| <= ||H||_F^2 <= W1^2``). So ``|sigma_max^2 - lambda^| <=
(kappa + n^2 u (1 + kappa)) W1^2`` (:attr:`GramSymbol.allowance`). An upper bound alone can
skip the eigenvalues: :meth:`GramSymbol.top_uppers`.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor

import numpy as np
import scipy.linalg

from ._geometry import ConvGeometry
from ._memory import fits, get_memory_limit
from ._parallel import cpu_count, frequency_chunks, map_chunks
from ._rounding import Rounding, U, cholesky_slack, gamma, up
from ._symbol import phase_bytes, phases, placed_taps
from ._typing import ProgressLike

__all__ = ["GramSymbol", "dense_below", "gram_symbol", "top_squares", "worth_it"]

#: Frequencies whose Gram matrices take about this many bytes are summed at once. Each chunk
#: reads every coefficient once (a 512-channel 3x3 layer's 25 are 52 MB, real): at 16 MB, 3
#: Gram matrices of 512 took that read each, and the circulant bound of VGG-11's 512->512 on
#: 28x28 (one core, best of 4) 14.0 s; at 64 MB, 11.1 s, with :data:`_LANCZOS_BYTES`.
_CHUNK_BYTES = 64 * 2**20

#: :meth:`GramSymbol.top_uppers` runs its Lanczos estimates on this many bytes of a chunk's
#: Gram matrices at a time: each step reads all of them, and a few stay in the cache from one
#: step to the next (a whole 64 MB chunk at once: no faster than 16 MB chunks).
_LANCZOS_BYTES = 8 * 2**20


def _frequency_bytes(size: int, deltas: int, ndim: int, copies: int = 1) -> int:
    """The bytes one frequency costs in a chunk: its Gram matrix (``copies`` of it: the
    eigensolver's is a second), and the phases of every exponent (a review found a 15x15
    kernel's 841 exponents uncounted, 89 MB at the peak of a one-channel layer)."""
    return copies * 16 * size * size + phase_bytes(deltas, ndim)


#: The chunk under a memory limit that 16 chunks of :data:`_CHUNK_BYTES` would exceed: the
#: chunks are smaller (this one at least), so that the coefficients' route still fits where
#: it did before the chunks grew.
_SMALL_CHUNK_BYTES = 16 * 2**20


def _chunk_bytes() -> int:
    """:data:`_CHUNK_BYTES`, or less under a memory limit below 16 of them (a sixteenth of
    the limit, at least :data:`_SMALL_CHUNK_BYTES`)."""
    limit = get_memory_limit()
    return _CHUNK_BYTES if limit is None else min(_CHUNK_BYTES,
                                                  max(_SMALL_CHUNK_BYTES, limit // 16))


def _step(size: int, deltas: int, ndim: int) -> int:
    """Frequencies a chunk: their Gram matrices and phases about :func:`_chunk_bytes`."""
    return max(1, _chunk_bytes() // _frequency_bytes(size, deltas, ndim))


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
    error : float
        ``kappa W1^2``: a bound on ``||G^ - G||_2`` for the Gram matrix ``G^`` summed at any
        frequency (see the module's notes).
    allowance : float
        ``|sigma_max(H(xi))^2 - lambda|`` for ``lambda`` the computed top eigenvalue of
        ``G^``: ``error`` and the eigensolver's ``n^2 u (1 + kappa) W1^2``.
    """

    def __init__(self, deltas: np.ndarray, coefficients: np.ndarray, grid: np.ndarray,
                 error: float, w1: float) -> None:
        self.deltas, self.coefficients, self.grid = deltas, coefficients, grid
        self.error = error
        n = self.size
        self.allowance = up(error + n * n * U * (w1 * w1 + error), 4)

    @property
    def size(self) -> int:
        return int(self.coefficients.shape[-1])

    @property
    def step(self) -> int:
        """Frequencies whose Gram matrices and phases take about :func:`_chunk_bytes`."""
        return _step(self.size, len(self.deltas), self.deltas.shape[1])

    def grams(self, frequencies: np.ndarray, group: int) -> np.ndarray:
        """``G^`` of one group at ``frequencies`` (``(F, ndim)``): shape ``(F, n, n)``."""
        count, n = self.coefficients.shape[1:3]
        flat = self.coefficients[group].reshape(count, n * n)
        e = phases(frequencies, self.deltas, self.grid)  # (F, D)
        if flat.dtype.kind == "c":
            return (e @ flat).reshape(-1, n, n)
        gram = np.empty((len(e), n * n), dtype=complex)  # two real products: a complex one
        np.matmul(e.real, flat, out=gram.real)           # would promote the coefficients
        np.matmul(e.imag, flat, out=gram.imag)
        return gram.reshape(-1, n, n)

    def _chunks(self, frequencies: np.ndarray):
        """``(rows, group, grams)`` over ``frequencies``, :func:`_chunk_bytes` of Gram matrices
        at a time (``rows``: their slice of ``frequencies``)."""
        step = self.step
        for start in range(0, len(frequencies), step):
            rows = slice(start, start + step)
            for g in range(self.coefficients.shape[0]):
                yield rows, g, self.grams(frequencies[rows], g)

    def top_squares(self, frequencies: np.ndarray) -> np.ndarray:
        """The computed top eigenvalue of each group's ``G^`` at ``frequencies``
        (``(F, ndim)``), within :attr:`allowance` of ``sigma_max^2``: shape ``(F, groups)``."""
        tops = np.empty((len(frequencies), self.coefficients.shape[0]))
        for rows, g, grams in self._chunks(frequencies):
            # the lower triangle, as LAPACK reads it, is a Hermitian matrix within the error
            # of the exact Gram matrix (which is Hermitian)
            tops[rows, g] = np.linalg.eigvalsh(grams, UPLO="L")[:, -1]
        return tops

    def top_uppers(self, frequencies: np.ndarray) -> np.ndarray:
        """Rigorous upper bounds on ``sigma_max(H(xi))`` at ``frequencies``, shape ``(F,
        groups)``, at a fraction of :meth:`top_squares`' cost for large blocks.

        Per matrix: Lanczos estimates ``lambda_max(G^)`` (:func:`_lanczos_tops`); a Cholesky
        factorization of ``mu I - G^`` at ``mu`` just above it proves ``lambda_max(G^) <= mu
        + c (mu + error)``, ``c`` the complex dense Cholesky test's allowance
        (:func:`sparseconv._rounding.cholesky_slack`; ``G^``'s diagonal is at least
        ``-error``), so ``sigma_max^2 <= (mu + error)(1 + c)``.
        A matrix that the factorization does not prove takes :meth:`top_squares`' route, and
        so do blocks smaller than :data:`LANCZOS_FROM` (:data:`LANCZOS_FROM_ONE_CORE` where
        the frequencies run in turn on one core), where it is no slower.
        """
        if self.size < (LANCZOS_FROM if cpu_count() > 1 else LANCZOS_FROM_ONE_CORE):
            return Rounding.square_interval(self.top_squares(frequencies), self.allowance)[1]
        c = cholesky_slack(self.size - 1, True)  # dense, complex
        uppers = np.empty((len(frequencies), self.coefficients.shape[0]))
        per = max(1, _LANCZOS_BYTES // (16 * self.size * self.size))
        for rows, g, grams in self._chunks(frequencies):
            estimates = np.concatenate([_lanczos_tops(grams[i:i + per])
                                        for i in range(0, len(grams), per)])
            for f, (gram, estimate) in enumerate(zip(grams, estimates), start=rows.start):
                mu = max(float(estimate), 0.0) * (1 + _MARGIN)
                if dense_below(gram, mu):
                    square = (mu + self.error) * (1 + c)
                else:  # Lanczos missed the top: its eigenvalues, with their allowance
                    top = float(np.linalg.eigvalsh(gram, UPLO="L")[-1])
                    square = max(top, 0.0) + self.allowance
                uppers[f, g] = up(np.sqrt(up(square, 4)), 2)
        return uppers


#: Matrices of at least this size take the Lanczos and Cholesky route to their upper bounds
#: (:meth:`GramSymbol.top_uppers`): twice as fast as their eigenvalues at 512 (one core: 48
#: against 92 ms, the Gram matrices included). At 256 it was 25-30% faster on one core (the
#: circulant bound of a 256->256 layer on 56x56: 11.4 against 16.2 s), but on the default
#: thread pool ResNet-18's four 3x3 layers of layer3 took 18-21 s against 16.5 s in all
#: (its batched Lanczos steps are many small products, which two threads share the GIL for).
LANCZOS_FROM = 384

#: :data:`LANCZOS_FROM` where the frequencies run in turn on one core (a layer worker of
#: ``workers=2``, or a one-core machine), with no thread pool to share the GIL with: there
#: the 256-wide blocks gain too (one core, the circulant bound of VGG-11's 256->256 on 56x56:
#: 18.6 -> 15.4 s; 256->512 on 28x28: 4.1 -> 3.2 s; the same bounds).
LANCZOS_FROM_ONE_CORE = 256

#: :func:`_lanczos_tops` checks its Ritz values every this many steps, and takes at most
#: :data:`_MOST` steps. A matrix that has converged leaves the batch at the next check: one
#: slow matrix no longer makes the others step with it. On VGG-11's 512->512 on 28x28 (one
#: core; 96 frequencies, 4 to a chunk) the matrices converge in 48 steps on average, 60 at
#: most; checked every 20 steps, each chunk ran 60.
_CHECK, _MOST = 5, 120

#: The factorization is tried this far (relative) above the Lanczos estimate.
_MARGIN = 1e-10


def dense_below(gram: np.ndarray, mu: float) -> bool:
    """Whether ``mu I - gram`` has a Cholesky factorization (LAPACK reads its lower half): the
    dense test behind :meth:`GramSymbol.top_uppers` and
    :func:`sparseconv._certificates.dense_upper`."""
    matrix = np.negative(gram)
    matrix[np.diag_indices_from(matrix)] += mu
    try:
        factor = scipy.linalg.cholesky(matrix, lower=True, overwrite_a=True, check_finite=False)
    except scipy.linalg.LinAlgError:
        return False
    return bool(np.isfinite(np.diagonal(factor)).all())  # a NaN pivot passes with info = 0


def _lanczos_tops(grams: np.ndarray) -> np.ndarray:
    """Estimates of ``lambda_max`` of each Hermitian matrix of a stack ``(F, n, n)``: Lanczos
    with full reorthogonalization from a fixed random start, all matrices at once. Every
    :data:`_CHECK` steps, the matrices whose top Ritz pair's residual ``r`` shows it converged
    (``r^2 / gap`` and ``r`` against the Ritz value) keep that Ritz value and leave the batch;
    the rest go on, for at most :data:`_MOST` steps. Each matrix's start and steps are its own:
    its estimate does not depend on the others."""
    count, n = grams.shape[0], grams.shape[-1]
    size = min(n, _MOST)
    top = np.zeros(count)
    active = np.arange(count)  # the matrices still stepping, and their rows below
    basis = np.zeros((count, size + 1, n), dtype=complex)
    start = np.random.default_rng(0).standard_normal(n)  # one start for every matrix
    basis[:, 0] = start / np.linalg.norm(start)
    alpha, beta = np.zeros((count, size)), np.zeros((count, size))
    for j in range(size):
        w = np.matmul(grams, basis[:, j, :, None])[..., 0]
        alpha[:, j] = np.einsum("fi,fi->f", basis[:, j].conj(), w).real
        kept = basis[:, :j + 1]
        for _ in range(2):  # full reorthogonalization, twice (the basis is short);
            # conj(B) w as conj(B conj(w)): batched BLAS products, no copy of the basis
            c = np.conj(np.matmul(kept, np.conj(w)[..., None]))
            w -= np.matmul(np.swapaxes(kept, 1, 2), c)[..., 0]
        beta[:, j] = np.linalg.norm(w, axis=1)
        alive = beta[:, j] > 1e-14 * np.maximum(np.abs(alpha[:, :j + 1]).max(axis=1), 1e-300)
        basis[alive, j + 1] = w[alive] / beta[alive, j, None]  # an invariant subspace stops
        if (j + 1) % _CHECK and j + 1 < size:
            continue
        tridiagonal = np.zeros((len(active), j + 1, j + 1))
        k = np.arange(j + 1)
        tridiagonal[:, k, k] = alpha[:, :j + 1]
        tridiagonal[:, k[:-1], k[1:]] = tridiagonal[:, k[1:], k[:-1]] = beta[:, :j]
        values, vectors = np.linalg.eigh(tridiagonal)
        residual = beta[:, j] * np.abs(vectors[:, -1, -1])
        gap = values[:, -1] - (values[:, -2] if j > 0 else 0.0)
        error = np.minimum(residual, residual**2 / np.maximum(gap, 1e-300))
        top[active] = values[:, -1]
        going = error > 1e-12 * np.abs(values[:, -1])
        if not going.any():
            break
        if not going.all():  # the converged ones leave: copies of the rest, once
            active, grams = active[going], grams[going]
            basis, alpha, beta = basis[going], alpha[going], beta[going]
    return top


def _pairs(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct differences ``q_t - q_s``, the index of each pair's, and the most pairs
    sharing one."""
    differences = (shift[:, None, :] - shift[None, :, :]).reshape(-1, shift.shape[1])
    deltas, index, counts = np.unique(differences, axis=0, return_inverse=True,
                                      return_counts=True)
    return deltas, index.reshape(len(shift), len(shift)), int(counts.max())


def gram_bytes(geom: ConvGeometry) -> int:
    """Memory of the coefficients (and the placed taps), counted before either is built."""
    rows, cols = geom.symbol_block
    taps = math.prod(geom.kernel_size)
    count = math.prod(2 * k - 1 for k in geom.kernel_size)  # at most, for distinct shifts
    return 16 * geom.groups * (count * min(rows, cols) ** 2 + 2 * taps * rows * cols)


def worth_it(geom: ConvGeometry, frequencies: int) -> bool:
    """Whether the coefficients cost less than the direct route's products, and fit.

    Multiply-adds: the direct route makes each frequency's symbol (``K rows cols``) and its
    Gram matrix (``n^2 inner``), complex; this one makes ``K^2 / 2`` real products of
    ``n^2 inner`` once, then ``2 D n^2`` per frequency.
    """
    rows, cols = geom.symbol_block
    n, inner, taps = min(rows, cols), max(rows, cols), math.prod(geom.kernel_size)
    count = math.prod(2 * k - 1 for k in geom.kernel_size)
    direct = 4 * frequencies * (taps * rows * cols + n * n * inner)
    coefficients = taps * (taps + 1) / 2 * n * n * inner + 2 * frequencies * count * n * n
    # the coefficients, and the chunks in flight on the default thread pool
    per = _frequency_bytes(n, count, geom.ndim, copies=2)
    work = min(frequencies, _step(n, count, geom.ndim) * cpu_count()) * per
    return coefficients < direct and fits(gram_bytes(geom) + work)


def gram_error(rounding: Rounding, ndim: int, taps: int, count: int, inner: int,
               pairs: int) -> float:
    """``kappa W1^2``, rounded up: a bound on ``||G^ - G||_2`` (see the module's notes)."""
    eps = (2 * math.pi * ndim * (ndim + 4) + 2) * U
    products = gamma(inner * pairs) + 3 * gamma(taps)
    kappa = up(products + eps + gamma(count + 2) * (1 + products), 8)
    w1 = rounding.tap_norms
    return up(kappa * w1 * w1, 4)


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
    grid = np.array(geom.coarse_grid)
    error = gram_error(rounding, geom.ndim, taps, len(deltas), max(rows, cols), pairs)
    return GramSymbol(deltas, coefficients, grid, error, rounding.tap_norms)


def _top_squares(symbol: GramSymbol, frequencies: np.ndarray) -> np.ndarray:
    """One task of :func:`top_squares`."""
    return symbol.top_squares(frequencies)


def _top_uppers(symbol: GramSymbol, frequencies: np.ndarray) -> np.ndarray:
    """One task of :func:`top_squares` with ``upper_only``."""
    return symbol.top_uppers(frequencies)


def top_squares(symbol: GramSymbol, frequencies: np.ndarray, executor: Executor | None = None,
                progress: ProgressLike | None = None, what: str = "the Gram symbol",
                upper_only: bool = False) -> np.ndarray:
    """:meth:`GramSymbol.top_squares` at ``frequencies``, in tasks on ``executor``; with
    ``upper_only``, :meth:`GramSymbol.top_uppers` instead (certified upper bounds on
    ``sigma_max``, not squares)."""
    chunks = frequency_chunks(frequencies, symbol.step, executor)
    task = _top_uppers if upper_only else _top_squares
    parts = map_chunks(task, (symbol,), chunks, executor=executor, what=what,
                       progress=progress, label=lambda i: f"frequency chunk {i}")
    return np.concatenate(parts)
