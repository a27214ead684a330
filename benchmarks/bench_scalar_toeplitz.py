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

This script measures both against the dense norm, on random layers with Kaiming weights
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


def bounds(weight: np.ndarray, n: int, padding: int, points: int) -> tuple[float, ...]:
    """The exact sections' bound (the periodic axis on the embedding grid), the ideal scalar
    Toeplitz bound, the best circulant corner bound and the best twisted embedding's, for the
    first axis exact."""
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
    return (float(np.sqrt(sections)), float(np.sqrt(toeplitz)), float(np.sqrt(min(corners))),
            float(np.sqrt(twisted)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=256,
                        help="frequencies at which Lambda is sampled (default 256)")
    parser.add_argument("--seeds", type=int, default=3, help="layers per shape (default 3)")
    args = parser.parse_args()
    describe()
    print(f"{'channels':>8}{'grid':>6}{'seed':>5}{'norm':>11}{'sections':>11}"
          f"{'Toeplitz':>11}{'closed':>8}{'corner':>11}{'closed':>8}{'twisted':>11}"
          f"{'closed':>8}")
    for channels, n in ((16, 7), (64, 7), (32, 14)):
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            weight = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(
                2 / (channels * 9))
            norm = float(np.linalg.norm(
                sc.conv_matrix(weight, (channels, n, n), padding=1).toarray(), 2))
            # each axis exact in turn (the spatial axes swapped), the smaller bound kept
            both = [bounds(w, n, 1, args.points) for w in (weight, weight.swapaxes(2, 3))]
            sections, toeplitz, corner, twisted = (min(b[i] for b in both) for i in range(4))
            gap = sections - norm
            print(f"{channels:>8}{n:>6}{seed:>5}{norm:>11.6f}{sections / norm - 1:>11.2e}"
                  f"{toeplitz / norm - 1:>11.2e}{(sections - toeplitz) / gap:>8.2f}"
                  f"{corner / norm - 1:>11.2e}{(sections - corner) / gap:>8.2f}"
                  f"{twisted / norm - 1:>11.2e}{(sections - twisted) / gap:>8.2f}", flush=True)
    print("sections, Toeplitz, corner, twisted: each bound's excess over the norm (relative); "
          "closed: the fraction of the sections' excess the bound before it removes")


if __name__ == "__main__":
    main()
