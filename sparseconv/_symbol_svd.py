"""The SVD of a periodic layer's symbol, frequency by frequency: the kernel of the circular SVD.

:func:`factor_symbol` computes ``H(xi) = U_xi S_xi V_xi^H`` for every frequency and group of
the symbol (:mod:`sparseconv._symbol`); :class:`Frequencies` says which frequencies are
stored and applies the stored factors at all of them. :mod:`sparseconv._circular_svd` builds
the public object on both.

Invariants and accuracy:

* For a real weight only one frequency of each pair ``{xi, -xi}`` is factored: the symbol at
  ``-xi`` is the conjugate one, and so are its factors (``U(-xi) = conj U(xi)``), so ``S`` is
  exactly equal on such pairs.
* Each matrix is factored by one of two routes, chosen from its own entries only (never from
  the chunking or the number of threads, which decide only which route is tried first):

  - **Gram**: the eigendecomposition of the smaller Gram matrix (``H^H H = V S^2 V^H`` for a
    tall ``H``, then ``U = H V / S``; ``H H^H = U S^2 U^H`` for a wide one, then
    ``V^H = S^{-1} U^H H``), taken where the matrix's condition number, measured from those
    eigenvalues, is at most ``kappa =`` :data:`GRAM_CONDITION` ``= 4``. With ``E`` the Gram
    matrix's rounding and the eigensolver's backward error, ``|E| <= c eps sigma_max^2``:
    each ``sigma_i`` is then within ``c eps sigma_max^2 / sigma_i <= c kappa eps sigma_max``
    (as accurate as LAPACK's SVD, ``O(eps sigma_max)``; :func:`sparseconv.singular_values`
    allows ``kappa = 16`` for the values alone), the eigenvectors are orthonormal to
    ``c eps`` whatever the clustering of the values, and the other factor's columns
    ``H v_i / sigma_i`` are orthonormal to ``|E_ij| / (sigma_i sigma_j) <= c kappa^2 eps``:
    clusters enter only through the eigenvectors, which ``eigh`` keeps orthonormal. Measured
    on clusters and spreads up to 256 x 256: ``c kappa^2 eps <= 120 eps`` (``3e-14``) at
    ``kappa = 4``; at ``kappa = 16`` it reached ``2500 eps`` (``6e-13``), too far from
    ``gesdd``'s few ``eps``.
  - **SVD**: LAPACK's ``gesdd`` everywhere else.

  The Gram route costs about 3/4 of ``gesdd`` with vectors; the route a matrix will take is
  guessed from its neighbours (the symbol is smooth in ``xi``), and a wrong guess costs one
  extra factorization of that matrix, never a different result.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._geometry import ConvGeometry
from ._parallel import frequency_chunks, map_chunks
from ._symbol import (
    frequency_step,
    frequency_work_bytes,
    scaled_back,
    stored_count,
    symbol_at,
    unit_scale,
)

__all__ = ["GRAM_CONDITION", "Frequencies", "factor_bytes", "factor_symbol",
           "negative_frequencies", "svd_of_stack"]

#: A matrix is factored through its Gram matrix only where ``sigma_max / sigma_min`` is at most
#: this: singular values to ``c kappa eps sigma_max``, the computed factor (``U = H V / S``)
#: orthonormal to ``c kappa^2 eps`` (``c`` about 8 measured: ``3e-14``).
GRAM_CONDITION = 4.0
#: The SVD route's ``sigma_max / sigma_min`` within this factor of :data:`GRAM_CONDITION` is
#: checked against the Gram route's own measure (the two differ by ``kappa^2 eps`` relative).
_MARGIN = 1.0 + 1e-6


class Frequencies(NamedTuple):
    """The frequencies whose factors are stored, and how the others derive from them.

    For a real weight, one frequency of each pair ``{xi, -xi}`` is stored (``stored``, flat
    indices, the first ``len(negatives)`` of them paired with the frequencies ``negatives``,
    the others their own negatives); the factors at ``-xi`` are the conjugate ones. For a
    complex weight every frequency is stored.
    """

    size: int
    stored: np.ndarray
    negatives: np.ndarray

    @classmethod
    def of(cls, grid: tuple[int, ...], real: bool) -> Frequencies:
        count = math.prod(grid)
        if not real:
            return cls(count, np.arange(count), np.zeros(0, dtype=np.int64))
        negative = negative_frequencies(grid)
        flat = np.arange(count)
        paired, alone = flat[flat < negative], flat[flat == negative]
        return cls(count, np.concatenate([paired, alone]), negative[paired])

    def everywhere(self, values: np.ndarray) -> np.ndarray:
        """Real values at the stored frequencies, given at every frequency."""
        out = np.empty((self.size, *values.shape[1:]), dtype=values.dtype)
        out[self.stored] = values
        out[self.negatives] = values[:len(self.negatives)]
        return out

    def product(self, factor: np.ndarray, X: np.ndarray, adjoint: bool) -> np.ndarray:
        """``A_xi @ X_xi`` (``A_xi^H @ X_xi``) at every frequency; ``A`` stored, ``X`` not.

        At ``-xi`` the factor is ``conj(A)``. ``A^H X = conj(A^T conj(X))`` on the transposed
        view: numpy hands BLAS the transpose, cheaper than a contiguous adjoint's copy.
        """
        out = np.empty((self.size, *factor.shape[1:-2],
                        factor.shape[-1 if adjoint else -2], X.shape[-1]), dtype=np.complex128)
        A = np.swapaxes(factor, -1, -2) if adjoint else factor
        X_stored, paired = X[self.stored], len(self.negatives)
        out[self.stored] = np.conj(A @ np.conj(X_stored)) if adjoint else A @ X_stored
        if paired:
            X_negative = X[self.negatives]
            out[self.negatives] = (A[:paired] @ X_negative if adjoint
                                   else np.conj(A[:paired] @ np.conj(X_negative)))
        return out

    def rebuild(self, u: np.ndarray, f: np.ndarray, vh: np.ndarray) -> np.ndarray:
        """``U_xi diag(f_xi) V_xi^H`` at every frequency, ``f`` given at every frequency."""
        out = np.empty((self.size, *u.shape[1:-1], vh.shape[-1]), dtype=np.complex128)
        out[self.stored] = (u * f[self.stored][..., None, :]) @ vh
        paired = len(self.negatives)
        if paired:
            out[self.negatives] = np.conj((u[:paired] * f[self.negatives][..., None, :])
                                          @ vh[:paired])
        return out


def negative_frequencies(grid: tuple[int, ...]) -> np.ndarray:
    """For each flat frequency of the grid, the flat index of its negative."""
    xi = np.indices(grid).reshape(len(grid), -1)
    return np.ravel_multi_index([(-x) % n for x, n in zip(xi, grid)], grid)


def factor_bytes(geom: ConvGeometry, real: bool) -> int:
    """The bytes :class:`sparseconv.CircularSVD` allocates, at most: the factors and the
    sorted singular values, and the chunks' work as the spectra's
    (:func:`sparseconv._symbol.frequency_work_bytes`: the frequencies' bookkeeping, each
    batch's symbols with their SVD's work, 4 copies, their phases and placed taps).

    Computed from the shapes alone, so that a layer too large is refused before anything is
    allocated.
    """
    groups, (m, n) = geom.groups, geom.symbol_block
    k, count = min(m, n), math.prod(geom.coarse_grid)
    stored = stored_count(geom.coarse_grid, real)
    factors = 16 * stored * groups * (m * k + k * n) + 8 * stored * groups * k
    spectrum = 8 * count * groups * k * 3  # S everywhere, its order, S sorted
    return factors + spectrum + frequency_work_bytes(geom, stored, copies=4)


def factor_symbol(geom: ConvGeometry, weight: np.ndarray, frequencies: Frequencies):
    """At the stored frequencies: ``U`` (R, g, m, k), ``S`` (R, g, k) and ``V^H`` (R, g, k, n).

    ``k = min(m, n)``; the SVD of the symbol per frequency and group, chunks of frequencies
    on the thread pool of :func:`sparseconv._parallel.map_chunks` (one BLAS thread each), each
    writing its rows of the result (no copy of the whole). The caller has checked
    :func:`factor_bytes` against the memory limit.
    """
    grid = list(geom.coarse_grid)
    groups = geom.groups
    m, n = geom.symbol_block
    k, stored = min(m, n), len(frequencies.stored)
    step = _chunk(geom)
    # contiguous: unit_scale views a complex weight as its real parts
    scaled, exponent = unit_scale(np.ascontiguousarray(weight))
    at = np.stack(np.unravel_index(frequencies.stored, grid), axis=-1)
    u = np.empty((stored, groups, m, k), dtype=np.complex128)
    vh = np.empty((stored, groups, k, n), dtype=np.complex128)
    s = np.empty((stored, groups, k))
    rows = frequency_chunks(np.arange(stored), step, None)
    map_chunks(_factor_rows, (geom, scaled, at, u, s, vh, step), rows, executor=None,
               what="circular_svd", label=lambda i: f"frequencies {rows[i][0]} to "
               f"{rows[i][-1]} of {stored}")
    return u, scaled_back(s, exponent), vh


def _factor_rows(geom: ConvGeometry, weight: np.ndarray, at: np.ndarray, u: np.ndarray,
                 s: np.ndarray, vh: np.ndarray, step: int, rows: np.ndarray) -> None:
    """One task of :func:`factor_symbol`: the SVDs at ``at[rows]`` (contiguous rows), written
    into ``u``, ``s``, ``vh`` (shared with the other tasks, which write other rows).

    Batches grow from 4 frequencies to ``step``; each takes the route that most
    of the previous batch's matrices took (the first: ``gesdd``).
    """
    if len(rows) == 0:
        return
    start, stop, size, gram = int(rows[0]), int(rows[-1]) + 1, 4, False
    while start < stop:
        end = min(start + min(size, step), stop)
        h = symbol_at(geom, weight, at[start:end])
        flat = h.reshape(-1, *h.shape[-2:])
        took_gram = svd_of_stack(flat, u[start:end].reshape(-1, *u.shape[-2:]),
                                 s[start:end].reshape(-1, s.shape[-1]),
                                 vh[start:end].reshape(-1, *vh.shape[-2:]), gram)
        gram = 2 * int(took_gram.sum()) >= took_gram.size
        start, size = end, 2 * size


def svd_of_stack(h: np.ndarray, u: np.ndarray, s: np.ndarray, vh: np.ndarray,
                 gram_first: bool) -> np.ndarray:
    """The thin SVD of each matrix of ``h`` (``(B, m, n)``), written into ``u``, ``s``, ``vh``.

    Each matrix takes the Gram route if its condition number is at most
    :data:`GRAM_CONDITION`, else ``gesdd``; ``gram_first`` only says which to try first.
    Returns which matrices took the Gram route.
    """
    if gram_first:
        took = _gram_svd_into(h, u, s, vh)
        redo = np.flatnonzero(~took)
        if redo.size:
            u[redo], s[redo], vh[redo] = np.linalg.svd(h[redo], full_matrices=False)
        return took
    u[...], s[...], vh[...] = np.linalg.svd(h, full_matrices=False)
    took = np.zeros(len(h), dtype=bool)
    # within the margin, only the Gram route's own eigenvalues decide
    maybe = np.flatnonzero(s[:, -1] * (GRAM_CONDITION * _MARGIN) >= s[:, 0])
    if maybe.size:
        U, S, Vh = np.empty_like(u[maybe]), np.empty_like(s[maybe]), np.empty_like(vh[maybe])
        good = _gram_svd_into(h[maybe], U, S, Vh)
        took[maybe[good]] = True
        u[took], s[took], vh[took] = U[good], S[good], Vh[good]
    return took


def _gram_svd_into(h: np.ndarray, u: np.ndarray, s: np.ndarray, vh: np.ndarray) -> np.ndarray:
    """The SVD of each matrix of ``h`` from its smaller Gram matrix, into ``u``, ``s``, ``vh``.

    Returns ``good``: the matrices of condition at most :data:`GRAM_CONDITION` (measured from
    the Gram eigenvalues) and no zero singular value; the others' factors are meaningless.
    """
    m, n = h.shape[-2:]
    # a contiguous adjoint: numpy's batched complex matmul is slow on a transposed operand
    adjoint = np.ascontiguousarray(np.conj(np.swapaxes(h, -1, -2)))
    tall = m >= n
    lam, vectors = np.linalg.eigh(adjoint @ h if tall else h @ adjoint)
    good = (lam[:, 0] > 0) & (lam[:, 0] * GRAM_CONDITION**2 >= lam[:, -1])
    np.sqrt(np.clip(lam[:, ::-1], 0.0, None), out=s)  # descending, as gesdd orders them
    vectors = vectors[..., ::-1]
    # a zero s (not good) would divide by zero: those factors are discarded
    inverse = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    if tall:  # H^H H = V S^2 V^H: U = H V S^-1
        np.matmul(h, vectors, out=u)
        u *= inverse[:, None, :]
        np.conj(np.swapaxes(vectors, -1, -2), out=vh)
    else:  # H H^H = U S^2 U^H: V^H = S^-1 U^H H
        u[...] = vectors
        np.matmul(np.conj(np.swapaxes(vectors, -1, -2)), h, out=vh)
        vh *= inverse[:, :, None]
    return good


def _chunk(geom: ConvGeometry) -> int:
    """Frequencies a chunk: as the spectra's (:func:`sparseconv._symbol.frequency_step`),
    their symbols and phases about 8 MiB."""
    return frequency_step(geom)
