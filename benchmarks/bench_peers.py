"""sparseconv's certified bounds beside the published methods, on ResNet-18-like layers.

Random (Kaiming-normal) 3x3 layers with padding 1: 64->64 on 32x32 and 56x56, 128->128 on
28x28, 512->512 on 7x7. Per layer and method: the value, how far it lies above the best
certified lower bound of the layer's norm (``spectral_norm(...).lower``, for the n-specific
methods) or of the infinite-grid norm (``toeplitz_norm(...).lower``, for the bounds that hold
for every input size), and the time. Run it alone: timings on a shared machine are noisy.

    python benchmarks/bench_peers.py                 # all four layers
    python benchmarks/bench_peers.py --quick         # 16 channels: checks the script runs
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _machine import describe
from _peers import araujo2021, delattre2024, ryu2019, svds

import sparseconv

LAYERS = [(64, 32), (64, 56), (128, 28), (512, 7)]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def gram_iterations(channels: int, budget: float, most: int = 6) -> int:
    """The most Delattre iterations whose spectrum (complex64, two copies) fits ``budget``."""
    for n_iter in range(most, 0, -1):
        size = 2**n_iter * 2 + 1
        if 2 * 8 * size * (size // 2 + 1) * channels**2 <= budget:
            return n_iter
    return 1


def row(name: str, value: float, reference: float, seconds: float, note: str = "") -> None:
    above = (value - reference) / reference
    print(f"  {name:<34} {value:14.8f} {above:+11.2e} {seconds:9.2f} s  {note}")


def layer(channels: int, n: int, tol: float, budget: float, with_svds: bool) -> None:
    rng = np.random.default_rng(channels * 1000 + n)
    w = rng.standard_normal((channels, channels, 3, 3)) * math.sqrt(2 / (9 * channels))
    print(f"\n{channels}->{channels} 3x3 on {n}x{n}, padding 1")
    print(f"  {'method':<34} {'value':>14} {'above low':>11} {'time':>11}")
    finite, t_finite = timed(sparseconv.spectral_norm, w, (channels, n, n), padding=1)
    torus, t_torus = timed(sparseconv.toeplitz_norm, w, tol=tol)
    low, low_inf = finite.lower, torus.lower
    print(f"  (n-specific rows against lower {low:.10f}; every-size bounds against the "
          f"infinite-grid lower {low_inf:.10f})")
    row("sparseconv.spectral_norm upper", finite.upper, low, t_finite,
        f"[{finite.method}] certified, width {finite.relative_width:.1e}")
    row("sparseconv.toeplitz_norm upper", torus.upper, low_inf, t_torus,
        f"certified for every n, width {torus.relative_width:.1e}")
    row("  ... same, against the n lower", torus.upper, low, t_torus)
    n_iter = gram_iterations(channels, budget)
    value, seconds = timed(delattre2024, w, n_iter)
    row(f"Delattre 2024, {n_iter} iterations", value, low_inf, seconds, "every n, no rounding")
    value, seconds = timed(araujo2021, w)
    row("Araujo 2021 LipGrid (50x50)", value, low_inf, seconds, "every n, no rounding")
    value, seconds = timed(ryu2019, w, n)
    row("Ryu 2019 power iteration (100)", value, low, seconds, "estimate, from below")
    if with_svds:
        value, seconds = timed(svds, w, n)
        row("scipy svds on the operator", value, low, seconds, "estimate (ARPACK)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 channels on 8x8 only")
    parser.add_argument("--tol", type=float, default=1e-8, help="toeplitz_norm's tolerance")
    parser.add_argument("--gram-memory", type=float, default=1.5e9,
                        help="bytes for Delattre's spectrum (sets its iterations, at most 6)")
    parser.add_argument("--no-svds", action="store_true", help="skip scipy's svds")
    parser.add_argument("--channels", type=int, nargs="*", help="only these layers")
    args = parser.parse_args()
    print(describe())
    layers = [(16, 8)] if args.quick else [
        (c, n) for c, n in LAYERS if not args.channels or c in args.channels]
    for channels, n in layers:
        layer(channels, n, args.tol, args.gram_memory, not args.no_svds)


if __name__ == "__main__":
    main()
