"""Could the exact sections close their gap on small grids by the periodic axis's own
finite size? A measurement of the best bound of that kind, before building it.

The exact sections bound a zero-padded 2-D layer ``A`` (``n x n`` grid) with one axis exact
and the other periodic: ``G = A^H A`` is below ``T_n(Ghat)``, the block Toeplitz matrix
along the periodic axis of the section Grams ``Ghat(xi)`` (each the Gram of a 1-D layer
along the exact axis, at frequency ``xi`` of the other), and ``||A||^2 <= sup_xi
lambda_max(Ghat(xi))``. That supremum forgets that the periodic axis has ``n`` positions
only: on 14x14 and 7x7 grids it leaves widths of 3e-4 to 2e-2. A bound that remembers it:
with ``Lambda(xi) = lambda_max(Ghat(xi))``, ``Lambda(xi) I - Ghat(xi)`` is positive
semidefinite for every ``xi``, so ``T_n(Ghat) <= T_n(Lambda) (x) I`` and ``||A||^2 <=
lambda_max(T_n(Lambda))``: the largest eigenvalue of an ``n x n`` scalar Toeplitz matrix,
which is below ``sup Lambda`` by about the symbol's curvature times ``(pi / (n + 1))^2``.
It is the best that any correction ``h(xi)`` with ``T_n(h) >= 0`` added to one scalar
symbol can do (the dual of that problem), and made rigorous it would need certified upper
bounds of ``Lambda`` on intervals of ``xi`` (a section factorization each).

A variant that needs ``Lambda`` at the frequencies of one periodic grid alone: the
periodic axis embeds into a grid of ``N >= n + k - 1`` positions, where the section Grams
are block diagonal; there ``Lambda(xi_j) I`` is above each block, so ``||A||^2`` is at most
``lambda_max`` of the ``n x n`` corner of the ``N x N`` circulant whose eigenvalues are the
``Lambda(xi_j)`` (never above the sections' own bound, ``max_j Lambda(xi_j)``, on that grid).
Certified, it would need one certified ``Lambda(xi_j)`` per frequency (the sections prove
one common bound instead).

A third needs nothing new to certify: a *twisted* periodic embedding (the wrapped entries
multiplied by ``exp(i theta)``, which they never meet: they act on the zeros beyond the
input) is block diagonal over the shifted frequencies ``(2 pi j + theta) / N``, so ``||A||^2
<= max_j Lambda((2 pi j + theta) / N)`` for every ``theta``: the sections' own bound with the
grid moved off the symbol's peaks. Measured as its best over 12 values of ``theta`` and the
grids ``n + 2`` to ``n + 4``.

A fourth keeps the blocks: ``lambda_max(T_n(Ghat))`` itself, the best that any bound built
on ``G <= T_n(Ghat)`` can give. ``T_n(Ghat)`` is the Gram matrix of the same layer with
every output that reads the input kept along the periodic axis (padding 2 there instead of
1, ``n + 2`` outputs: on a periodic grid of ``N >= n + 2`` positions its outputs are the
circular layer's, none wrapped), of which ``A`` is a subset of the rows; so its value is the
norm of that layer, measured here by a dense SVD (``block`` column). Certifying it cheaply
would take a bound of each section Gram by a scalar plus a few of its top eigenvectors,
``Ghat(xi) <= beta(xi) I + sum_k c_k(xi) v_k v_k^H``, whose compression to ``n`` positions
is a scalar Toeplitz matrix plus a matrix of rank ``N r`` (not built). Its value, with
``beta(xi)`` the section Gram's ``r + 1``-th eigenvalue and ``c_k`` the excess of the ``k``-th
over it, is measured for ``r`` = 8 and 32 (``rank 8``, ``rank 32``: the compressed matrix
formed densely, not certified).

This script measures them against the dense norm, on random layers with Kaiming weights
(3x3, zero padding 1): the first at its *ideal* value (``Lambda`` on a fine grid, its
Fourier coefficients by FFT: not certified), the second on grids ``N`` from ``n + 2`` to
``3 n`` (the best kept), with each axis exact in turn; it prints the fraction of the
sections' gap each closes. Seconds per layer. Run: ``python
benchmarks/bench_scalar_toeplitz.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.linalg as sl
from _machine import describe

import sparseconv as sc


def section_gram_top(weight: np.ndarray, n: int, padding: int, xi: float) -> float:
    """``lambda_max`` of the section Gram at frequency ``xi`` of the last axis (the first
    exact, zero-padded)."""
    k = weight.shape[-1]
    phase = np.exp(-1j * xi * (np.arange(k) - padding))  # cross-correlation offsets
    kernel = np.tensordot(weight, phase, axes=([3], [0]))  # (C_out, C_in, k)
    section = sc.conv_matrix(kernel, (weight.shape[1], n), padding=padding).toarray()
    return float(np.linalg.norm(section, 2)) ** 2


def section_gram(weight: np.ndarray, n: int, padding: int, xi: float) -> np.ndarray:
    """The section Gram at frequency ``xi`` of the last axis (dense, the first axis exact)."""
    k = weight.shape[-1]
    phase = np.exp(-1j * xi * (np.arange(k) - padding))
    kernel = np.tensordot(weight, phase, axes=([3], [0]))
    section = sc.conv_matrix(kernel, (weight.shape[1], n), padding=padding).toarray()
    return section.conj().T @ section


def low_rank_tops(weight: np.ndarray, n: int, padding: int, ranks) -> list[float]:
    """``lambda_max`` of ``P^T F^H diag(beta_j I + sum_k c_jk v_jk v_jk^H) F P``, the
    periodic axis on ``N = n + k - 1`` positions compressed to its ``n`` (``F`` the Fourier
    vectors there, ``f_j(m) = exp(-i xi_j m) / sqrt(N)`` to match :func:`section_gram`'s
    phases), for each rank ``r`` in ``ranks``; ``r = None`` keeps every eigenvalue (the
    block Toeplitz bound itself)."""
    grid = n + weight.shape[-1] - 1
    xi = 2 * np.pi * np.arange(grid) / grid
    grams = [section_gram(weight, n, padding, x) for x in xi]
    pairs = [np.linalg.eigh(g) for g in grams]
    f = np.exp(-1j * np.outer(xi, np.arange(n))) / np.sqrt(grid)  # (N, n)
    tops = []
    for r in ranks:
        compressed = 0
        for j, (values, vectors) in enumerate(pairs):
            values, vectors = values[::-1], vectors[:, ::-1]
            if r is None:
                block = grams[j]
            else:
                beta = values[r]
                block = beta * np.eye(len(values)) + (
                    vectors[:, :r] * (values[:r] - beta)) @ vectors[:, :r].conj().T
            compressed = compressed + np.kron(np.outer(f[j], f[j].conj()), block)
        tops.append(float(np.linalg.eigvalsh((compressed + compressed.conj().T) / 2)[-1]))
    return tops


def bounds(weight: np.ndarray, n: int, padding: int, points: int) -> tuple[float, ...]:
    """The exact sections' bound (the periodic axis on the embedding grid), the ideal scalar
    Toeplitz bound, the best circulant corner bound, the best twisted embedding's and the
    block Toeplitz bound's value (the norm of the layer padded fully along the periodic axis),
    for the first axis exact."""
    def tops(grid: int, theta: float = 0.0) -> np.ndarray:
        return np.array([section_gram_top(weight, n, padding, (2 * np.pi * j + theta) / grid)
                         for j in range(grid)])

    embedding = n + weight.shape[-1] - 1
    sections = tops(embedding).max()
    coefficients = np.fft.fft(tops(points)) / points
    toeplitz = np.linalg.eigvalsh(sl.toeplitz(coefficients[:n].conj(), coefficients[:n]))[-1]
    corners = []
    for grid in sorted({embedding, embedding + 1, embedding + 2, 2 * n, 3 * n}):
        corner = sl.circulant(np.fft.ifft(tops(grid)))[:n, :n]
        corners.append(np.linalg.eigvalsh((corner + corner.conj().T) / 2)[-1])
    twisted = min(tops(grid, theta).max() for grid in range(embedding, embedding + 3)
                  for theta in 2 * np.pi * np.arange(12) / 12)
    # the layer with every output that reads the input kept along the periodic (last) axis
    full = sc.conv_matrix(weight, (weight.shape[1], n, n),
                          padding=(padding, weight.shape[-1] - 1))
    block = float(np.linalg.norm(full.toarray(), 2))
    ranked = low_rank_tops(weight, n, padding, (8, 32))
    return (float(np.sqrt(sections)), float(np.sqrt(toeplitz)), float(np.sqrt(min(corners))),
            float(np.sqrt(twisted)), block, *(float(np.sqrt(t)) for t in ranked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=256,
                        help="frequencies at which Lambda is sampled (default 256)")
    parser.add_argument("--seeds", type=int, default=3, help="layers per shape (default 3)")
    args = parser.parse_args()
    print(describe(), flush=True)
    print(f"{'channels':>8}{'grid':>6}{'seed':>5}{'norm':>11}{'sections':>11}"
          f"{'Toeplitz':>11}{'closed':>8}{'corner':>11}{'closed':>8}{'twisted':>11}"
          f"{'closed':>8}{'block':>11}{'closed':>8}{'rank 8':>11}{'closed':>8}"
          f"{'rank 32':>11}{'closed':>8}")
    for channels, n in ((16, 7), (64, 7), (32, 14)):
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            weight = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(
                2 / (channels * 9))
            norm = float(np.linalg.norm(
                sc.conv_matrix(weight, (channels, n, n), padding=1).toarray(), 2))
            # each axis exact in turn (the spatial axes swapped), the smaller bound kept
            both = [bounds(w, n, 1, args.points) for w in (weight, weight.swapaxes(2, 3))]
            sections, toeplitz, corner, twisted, block, rank8, rank32 = (
                min(b[i] for b in both) for i in range(7))
            gap = sections - norm
            print(f"{channels:>8}{n:>6}{seed:>5}{norm:>11.6f}{sections / norm - 1:>11.2e}"
                  f"{toeplitz / norm - 1:>11.2e}{(sections - toeplitz) / gap:>8.2f}"
                  f"{corner / norm - 1:>11.2e}{(sections - corner) / gap:>8.2f}"
                  f"{twisted / norm - 1:>11.2e}{(sections - twisted) / gap:>8.2f}"
                  f"{block / norm - 1:>11.2e}{(sections - block) / gap:>8.2f}"
                  f"{rank8 / norm - 1:>11.2e}{(sections - rank8) / gap:>8.2f}"
                  f"{rank32 / norm - 1:>11.2e}{(sections - rank32) / gap:>8.2f}", flush=True)
    print("sections, Toeplitz, corner, twisted, block, rank 8, rank 32: each bound's excess "
          "over the norm "
          "(relative); "
          "closed: the fraction of the sections' excess the bound before it removes")


if __name__ == "__main__":
    main()
