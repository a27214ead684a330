"""Could the circulant majorant's top eigenvectors be deflated? A test of the idea, not a bound.

The zero-padded layer ``A`` is a restriction of the circular layer ``C`` on the embedding
grid, so ``G = A^T A <= E^T C^T C E`` (``E`` the embedding), a majorant whose spectrum is
exact per frequency. Outside the span ``Z`` of its top ``s`` eigenvectors (restricted to the
layer's inputs) ``G`` is below the majorant's ``(s+1)``-th eigenvalue ``beta``; if ``beta``
were well below ``||A||^2``, a certificate of ``mu I - G`` would need only the small
compressed problem on ``Z``: the Schur complement ``mu I - Z^T G Z - R^T R / (mu - beta)``,
``R`` the residual ``G Z - Z (Z^T G Z)``, positive definite -- which asks every direction of
``Z`` to be nearly invariant for ``G`` (residuals well under ``sqrt((mu - theta)(mu - beta))``).

This script prints both sides, for ResNet-18 layers with Kaiming weights (as
``bench_spectra.py`` draws them): how many eigenvalues of the majorant lie above fractions
of ``||A||^2`` (the size of ``Z``), and, on a small layer whose Gram matrix is dense, the
Rayleigh quotients and residuals of the majorant's top eigenvectors restricted to the
layer's inputs. Run: ``python benchmarks/bench_deflation.py`` (about a minute, one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import describe
from bench_spectra import kaiming, resnet18
from threadpoolctl import threadpool_limits

import sparseconv as sc
from sparseconv._certificates import embedding_grid
from sparseconv._geometry import ConvGeometry

FRACTIONS = (1.0, 0.99, 0.97, 0.95, 0.9, 0.8)


def majorant_spectrum(weight: np.ndarray, grid: list[int], stride: int) -> np.ndarray:
    """The squared singular values of the circular layer on ``grid`` (padding 1 each side,
    3x3: the kernel's offsets -1..1), every frequency's, largest first."""
    values = sc.singular_values(weight, (weight.shape[1], *grid), stride=stride, padding=1,
                                padding_mode="circular")
    return np.sort(values**2)[::-1]


def counts(index: int, size: int) -> None:
    label, c_in, c_out, k, stride, padding, n = resnet18(size)[index]
    weight = kaiming(np.random.default_rng(index), c_out, c_in, k)
    geom = ConvGeometry.from_weight(weight, (c_in, n, n), stride=stride, padding=padding)
    grid = embedding_grid(geom)
    start = time.perf_counter()
    top = sc.spectral_norm(weight, (c_in, n, n), stride=stride, padding=padding).lower ** 2
    spectrum = majorant_spectrum(weight, grid, stride)
    seconds = time.perf_counter() - start
    above = "  ".join(f">= {f:g}: {int((spectrum >= f * top).sum())}" for f in FRACTIONS)
    print(f"{label} ({c_in}->{c_out} {k}x{k}/{stride} on {n}x{n}, grid {grid}; "
          f"{spectrum.size} eigenvalues, {seconds:.1f} s)\n  majorant eigenvalues over "
          f"||A||^2 times ... {above}")


def residuals(channels: int, n: int, top: int) -> None:
    """The majorant's ``top`` largest eigenvectors on a ``channels``-channel 3x3 layer on
    ``n x n`` (padding 1, grid ``n + 1``), restricted to the inputs: their eigenvalue, Rayleigh
    quotient and residual on the dense ``G``, each relative to ``lambda_1(G)``."""
    weight = kaiming(np.random.default_rng(0), channels, channels, 3)
    matrix = sc.conv_matrix(weight, (channels, n, n), padding=1).toarray()
    gram = matrix.T @ matrix
    largest = float(np.linalg.eigvalsh(gram)[-1])
    grid, rows = n + 1, []
    positions = np.arange(n)
    # the circular layer maps the wave exp(2 pi i xi . p / N) q to the same wave times
    # H(xi) q, H its symbol: the majorant's eigenvectors at xi are waves of those of H^H H
    symbol = sc.symbol(weight, (grid, grid), padding=1)
    for x1 in range(grid):
        for x2 in range(grid):
            h = symbol[x1, x2]
            values, vectors = np.linalg.eigh(h.conj().T @ h)
            wave = np.exp(2j * np.pi * (x1 * positions[:, None] + x2 * positions) / grid)
            for j in range(1, 3):
                z = (vectors[:, -j][:, None, None] * wave).ravel()
                z /= np.linalg.norm(z)
                image = gram @ z
                quotient = float(np.vdot(z, image).real)
                rows.append((values[-j], quotient, np.linalg.norm(image - quotient * z)))
    table = np.array(sorted(rows, key=lambda r: -r[0])[:top]) / largest
    print(f"\n{channels}->{channels} 3x3 on {n}x{n} (dense G, lambda_1 {largest:.6f}): the "
          f"majorant's {top} largest eigenvectors, restricted (each relative to lambda_1)")
    print(f"{'eigenvalue':>12}{'quotient':>10}{'residual':>10}")
    for value, quotient, residual in table[:12]:
        print(f"{value:>12.4f}{quotient:>10.4f}{residual:>10.4f}")
    print(f"residuals over all {top}: {table[:, 2].min():.3f} to {table[:, 2].max():.3f}; "
          f"quotients / eigenvalue {np.min(table[:, 1] / table[:, 0]):.3f} to "
          f"{np.max(table[:, 1] / table[:, 0]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="13,19", help="indices into ResNet-18's 20 "
                        "convolutions (bench_spectra.resnet18): 11-14 on 14x14, 15-19 on 7x7")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=64, help="the dense layer's")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    print(describe())
    with threadpool_limits(1):
        for index in (int(i) for i in args.layers.split(",")):
            counts(index, args.size)
        residuals(args.channels, 7, args.top)


if __name__ == "__main__":
    main()
