"""Could a cheaper certificate than the whole Gram's Cholesky reach the width targets? A test of
Lehmann's bounds, with the exact sections counting the top eigenvalues.

Issue 12 asks for widths under 1e-4 on every layer of ResNet-18; on its 14x14 and 7x7 layers
only the whole Gram's Cholesky factorization (``spectral_norm(..., method="exact")``) gets
there, at 20-80 s a layer. Lehmann's bounds (the Kato-Temple inequality for several vectors)
would bound ``lambda_1(G)``, ``G = A^T A``, to the square of a Lanczos residual, with no
factorization -- given a number ``rho`` with ``lambda_{k+1}(G) <= rho < lambda_k(G)``: an
upper bound on the ``(k+1)``-th eigenvalue, below the ``k``-th. With ``A = P B Z`` (``B`` the
section layer: one axis exact, the other periodic on the embedding grid; ``P`` and ``Z``
restrictions), Cauchy's interlacing gives ``lambda_j(G) <= lambda_j(B^H B)`` for every ``j``,
and ``B^H B`` is block diagonal over the periodic axis's frequencies, so its eigenvalues are
the blocks' (cheap, banded). The bound then exists for ``k`` where ``lambda_{k+1}(B^H B) <
lambda_k(G)``: the section spectrum must fall below the true one's ``k``-th value one index
later.

This script prints, for one layer of ResNet-18 (Kaiming weights, as ``bench_spectra.py``
draws them), the top ``K`` eigenvalues of ``G`` (ARPACK) and of each axis's section
operator (dense ``eigvalsh`` of every frequency's block on its smaller side), relative to
``lambda_1(G)``, and marks the ``k`` where such a ``rho`` exists. Minutes per layer (the
dense block spectra). Run: ``python benchmarks/bench_lehmann.py --layer 19``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse.linalg as spla
from _machine import describe
from bench_spectra import kaiming, resnet18
from threadpoolctl import threadpool_limits

import sparseconv as sc
from sparseconv._certificates import embedding_grid
from sparseconv._exact_sections import _section_kernels
from sparseconv._geometry import ConvGeometry


def section_spectrum(weight: np.ndarray, geom: ConvGeometry, axis: int, top: int) -> np.ndarray:
    """The ``top`` largest eigenvalues of ``B^H B`` for the section with ``axis`` exact."""
    grid = embedding_grid(geom)
    other = 1 - axis
    taps, positions = geom.axes[axis].tap_index(), geom.axes[axis].size
    values: list[float] = []
    for j in range(grid[other]):
        for kernel in _section_kernels(weight, geom, grid, axis, (j,)):
            c_out, channels, k = kernel.shape
            t = np.zeros((taps.shape[0], c_out, positions, channels), dtype=kernel.dtype)
            for o in range(taps.shape[0]):
                for tap in range(k):
                    if taps[o, tap] >= 0:
                        t[o, :, taps[o, tap], :] += kernel[:, :, tap]
            t = t.reshape(taps.shape[0] * c_out, positions * channels)
            gram = t @ t.conj().T if t.shape[0] < t.shape[1] else t.conj().T @ t
            values.extend(np.linalg.eigvalsh(gram)[-top:].tolist())
    return np.sort(values)[::-1][:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", type=int, default=19, help="index into ResNet-18's 20 "
                        "convolutions (bench_spectra.resnet18): 11-14 on 14x14, 15-19 on 7x7")
    parser.add_argument("--top", type=int, default=30, help="eigenvalues compared (K)")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    print(describe())
    label, c_in, c_out, k, stride, padding, n = resnet18(args.size)[args.layer]
    rng = np.random.default_rng(args.layer)
    weight = kaiming(rng, c_out, c_in, k)
    geom = ConvGeometry.from_weight(weight.shape, (c_in, n, n), stride=stride, padding=padding)
    print(f"{label}: {c_in}->{c_out} {k}x{k}/{stride} on {n}x{n}, embedding grid "
          f"{embedding_grid(geom)}")
    with threadpool_limits(1):
        op = sc.ConvOperator(weight, (c_in, n, n), stride=stride, padding=padding)
        gram = spla.LinearOperator((op.shape[1],) * 2, dtype=float,
                                   matvec=lambda v: op.rmatvec(op.matvec(v)))
        start = time.perf_counter()
        true = np.sort(spla.eigsh(gram, k=args.top + 1, which="LA", tol=1e-10)[0])[::-1]
        print(f"lambda_j(G): eigsh, {time.perf_counter() - start:.1f} s")
        sections = []
        for axis in (0, 1):
            start = time.perf_counter()
            sections.append(section_spectrum(weight, geom, axis, args.top + 1))
            print(f"sections with axis {axis} exact: {time.perf_counter() - start:.1f} s")
    best = np.minimum(*sections)  # each is an upper bound of lambda_j(G), j by j
    top = true[0]
    print(f"\n{'k':>3}{'lambda_k(G)':>14}{'axis 0':>10}{'axis 1':>10}{'min':>10}  "
          "rho exists (lambda_{k+1}(sections) < lambda_k(G))")
    found = []
    for j in range(args.top):
        ok = bool(best[j + 1] < true[j])
        found += [j + 1] if ok else []
        print(f"{j + 1:>3}{true[j] / top:>14.6f}{sections[0][j] / top:>10.6f}"
              f"{sections[1][j] / top:>10.6f}{best[j] / top:>10.6f}  {'yes' if ok else ''}")
    print(f"\nk with a Lehmann bound from the sections: {found or 'none'} of 1..{args.top}")


if __name__ == "__main__":
    main()
