"""Spectra side by side with the plain approaches, in one process.

1. All singular values of a circular 3x3 layer: ``sparseconv.singular_values`` against the plain
   approach (``np.fft.fft2`` of the zero-padded kernel, then ``np.linalg.svd`` at every
   frequency). Target: at least 2x faster.
2. Agreement with a dense ``np.linalg.svd`` of the explicit matrix where it fits. Target: 1e-10
   relative to the largest singular value.
3. The spectral norm of zero-padded 3x3 layers with its certified interval: time, relative
   width, and the width the plain periodic embedding alone gives. Targets: 64->64 on 56x56 in
   under 5 s; widths below the plain embedding's. For reference, ``scipy.sparse.linalg.svds``
   on the CSR matrix of the 64->64 layer on 32x32 (no interval) is timed too.

Each time is the best of ``--repeat`` runs (one run for the slow references).

Run: ``python benchmarks/bench_spectra.py``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse.linalg as spla

from sparseconv import conv_matrix, set_memory_limit, singular_values, spectral_norm

#: The circular layer, any stride (sparseconv's shorthand for periodic padding).
PERIODIC = dict(padding=None, padding_mode="circular")


def best_of(repeat: int, fn, *args, **kwargs):
    result, times = None, []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times), result


def plain_fft_svd(weight: np.ndarray, n: int) -> np.ndarray:
    symbol = np.fft.fft2(weight, s=(n, n)).transpose(2, 3, 0, 1)
    return np.sort(np.linalg.svd(symbol, compute_uv=False).ravel())[::-1]


def singular_value_speed(repeat: int) -> None:
    print("1. all singular values of a circular 3x3 layer")
    print(f"{'layer':<24}{'values':>9}{'ours s':>9}{'plain s':>9}{'speedup':>9}{'max diff':>10}")
    rng = np.random.default_rng(0)
    for c, n in [(64, 32), (128, 64)]:
        weight = rng.standard_normal((c, c, 3, 3))
        runs = repeat if c == 64 else 1
        plain_fft_svd(weight, 8), singular_values(weight, (c, 8, 8), **PERIODIC)  # warm-up
        ours, fast = best_of(runs, singular_values, weight, (c, n, n), **PERIODIC)
        theirs, slow = best_of(runs, plain_fft_svd, weight, n)
        diff = np.abs(fast - slow).max() / slow[0]
        print(f"{f'{c}->{c}, {n}x{n}':<24}{fast.size:>9,}{ours:>9.2f}{theirs:>9.2f}"
              f"{theirs / ours:>9.2f}{diff:>10.1e}")


def dense_agreement() -> None:
    print("\n2. agreement with a dense SVD of the explicit matrix (relative to sigma_max)")
    rng = np.random.default_rng(1)
    cases = [("16->16, 12x12", (16, 16, 3, 3), (16, 12, 12), {}),
             ("8->8, 16x16, stride 2", (8, 8, 3, 3), (8, 16, 16), dict(stride=2)),
             ("12->6, 12x12, dilation 2, groups 2", (6, 6, 4, 4), (12, 12, 12),
              dict(dilation=2, groups=2))]
    for label, wshape, xshape, kwargs in cases:
        weight = rng.standard_normal(wshape)
        fast = singular_values(weight, xshape, **PERIODIC, **kwargs)
        dense = singular_values(weight, xshape, method="dense", **PERIODIC, **kwargs)
        diff = np.abs(fast - dense).max() / dense[0]
        print(f"{label:<38}{fast.size:>7} values   max diff {diff:.1e}")


def spectral_norm_bounds(repeat: int, svds: bool) -> None:
    print("\n3. spectral norm of a zero-padded 3x3 layer (padding 1), certified interval")
    print(f"{'layer':<20}{'time s':>8}{'lower':>16}{'upper':>16}{'width':>10}{'plain width':>13}")
    rng = np.random.default_rng(2)
    for c, n in [(16, 16), (64, 32), (64, 56)]:
        weight = rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)
        seconds, r = best_of(repeat, spectral_norm, weight, (c, n, n), padding=1,
                             method="bounds")
        plain = (r.bounds["circulant"] - r.lower) / r.bounds["circulant"]
        print(f"{f'{c}->{c}, {n}x{n}':<20}{seconds:>8.2f}{r.lower:>16.10f}{r.upper:>16.10f}"
              f"{r.relative_width:>10.1e}{plain:>13.1e}")
        if svds and (c, n) == (64, 32):
            A = conv_matrix(weight, (c, n, n), padding=1)
            start = time.perf_counter()
            top = spla.svds(A, k=1, return_singular_vectors=False, rng=0)[0]
            took = time.perf_counter() - start
            inside = r.lower <= top * (1 + 1e-9) and top <= r.upper * (1 + 1e-9)
            print(f"{'   svds on its CSR':<20}{took:>8.2f}{top:>16.10f}{'':>16}{'':>10}"
                  f"{'(in interval)' if inside else '(OUTSIDE)':>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-svds", action="store_true", help="skip the slow svds reference")
    args = parser.parse_args()
    set_memory_limit(None)
    singular_value_speed(args.repeat)
    dense_agreement()
    spectral_norm_bounds(args.repeat, not args.no_svds)


if __name__ == "__main__":
    main()
