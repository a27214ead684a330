"""spectral_norm on a layer whose Lanczos basis alone exceeds the memory limit: time and peak.

The issue's case: a 256->256 3x3 layer on 128x128 with zero padding. Its Lanczos basis of 151
vectors would need 4.7 GiB; sparseconv sizes every stage before starting it and restarts
Lanczos within the limit, so the layer gets its certified interval. Each run is a fresh
process, so that its peak resident memory (``ru_maxrss``) is its own.

Run: ``python benchmarks/bench_spectral_norm_memory.py [--limit 4G] [--channels 256] [--size 128]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _machine import describe

CHILD = r"""
import json, sys, time, resource
import numpy as np
import sparseconv as sc
channels, size, limit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sc.set_memory_limit(None if limit == "none" else int(limit))
w = np.random.default_rng(0).standard_normal((channels, channels, 3, 3)) / (3 * channels**0.5)
start = time.perf_counter()
r = sc.spectral_norm(w, (channels, size, size), padding=1, method="bounds")
seconds = time.perf_counter() - start
print(json.dumps(dict(seconds=seconds, lower=r.lower, upper=r.upper, width=r.relative_width,
                      converged=r.converged, bounds=r.bounds,
                      peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""


def parse_bytes(text: str) -> str:
    if text == "none":
        return text
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1].lower(), 1)
    return str(int(float(text[:-1] if scale > 1 else text) * scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--limit", nargs="+", default=["4G", "1G"],
                        help="memory limits to run under (bytes, k/M/G suffixes, or none)")
    args = parser.parse_args()
    print(describe())
    print(f"\nspectral_norm of {args.channels}->{args.channels} 3x3, padding 1, on "
          f"{args.size}x{args.size} (method='bounds')")
    print(f"{'limit':>6}{'time s':>9}{'peak GiB':>10}{'lower':>16}{'upper':>16}{'width':>10}"
          f"{'converged':>11}")
    for limit in args.limit:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.channels), str(args.size),
                              parse_bytes(limit)], capture_output=True, text=True)
        if out.returncode:
            print(f"{limit:>6}  failed after {time.perf_counter() - start:.0f} s: "
                  f"{out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout)
        print(f"{limit:>6}{r['seconds']:>9.1f}{r['peak'] / 2**30:>10.2f}{r['lower']:>16.10f}"
              f"{r['upper']:>16.10f}{r['width']:>10.1e}{r['converged']!s:>11}")
        print(f"{'':>6}  bounds: " + ", ".join(f"{k} {v:.10f}" for k, v in r["bounds"].items()))
    print(f"\n(this process's peak: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)")


if __name__ == "__main__":
    main()
