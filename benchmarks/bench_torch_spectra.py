"""The differentiable spectra of ``sparseconv.torch`` against the numpy route, side by side.

Forward + backward of ``spectral_norm_upper`` (float64, zero and reflect padding) and of
``circular_spectral_norm`` (float32 and float64) on one layer, best of ``--repeat``, one
thread for both libraries; beside them ``sparseconv.spectral_norm(..., method="upper")`` on
the same weight (no gradient), whose ``bounds`` the certified value is. Prints the ratios, and
checks that the bound equals the numpy route's. Run: ``python
benchmarks/bench_torch_spectra.py`` (64->64 3x3 on 32x32, the README's layer).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _machine import describe
from threadpoolctl import threadpool_limits

import sparseconv as sc


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import torch

    import sparseconv.torch as sct

    threadpool_limits(1)
    torch.set_num_threads(1)
    print(describe())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    c, n, k = args.channels, args.size, args.kernel
    generator = torch.Generator().manual_seed(0)
    w64 = torch.randn(c, c, k, k, dtype=torch.float64, generator=generator) / (k * c**0.5)
    w64.requires_grad_(True)
    w32 = w64.detach().float().requires_grad_(True)
    held = w64.detach().numpy()
    size, pad = (n, n), k // 2
    print(f"\n{c}->{c} {k}x{k} on {n}x{n}, padding {pad}; seconds, best of {args.repeat}")
    print(f"{'':44s} {'torch f+b':>10s} {'numpy':>8s} {'ratio':>6s}")
    rows = [
        ("spectral_norm_upper, zeros, float64",
         lambda: sct.spectral_norm_upper(w64, size, padding=pad).backward(),
         lambda: sc.spectral_norm(held, (c, n, n), padding=pad, method="upper")),
        ("spectral_norm_upper, reflect, float64",
         lambda: sct.spectral_norm_upper(w64, size, padding=pad,
                                         padding_mode="reflect").backward(),
         lambda: sc.spectral_norm(held, (c, n, n), padding=pad, padding_mode="reflect",
                                  method="upper")),
        ("circular_spectral_norm, float64",
         lambda: sct.circular_spectral_norm(w64, size).backward(),
         lambda: sc.spectral_norm(held, (c, n, n), padding=None, padding_mode="circular")),
        ("circular_spectral_norm, float32",
         lambda: sct.circular_spectral_norm(w32, size).backward(),
         lambda: sc.spectral_norm(held.astype("float32"), (c, n, n), padding=None,
                                  padding_mode="circular")),
    ]
    for name, ours, peer in rows:
        mine, theirs = best(ours, args.repeat), best(peer, args.repeat)
        print(f"{name:44s} {mine:10.3f} {theirs:8.3f} {mine / theirs:6.2f}")
    bound = float(sct.spectral_norm_upper(w64.detach(), size, padding=pad))
    numpy_bound = sc.spectral_norm(held, (c, n, n), padding=pad, method="upper")
    circulant = numpy_bound.bounds["circulant"]
    print(f"\nthe bound: torch {bound!r}, numpy bounds['circulant'] {circulant!r} "
          f"(equal: {bound == circulant})")


if __name__ == "__main__":
    main()
