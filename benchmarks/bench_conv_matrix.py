"""Build time of conv_matrix against the memory floor, measured side by side in one process.

The floor is the time to allocate and fill arrays of the sizes of the CSR result (``data``,
``indices``, ``indptr``); no builder can beat it. The target is a build within 3x of it.
Each time is the best of ``--repeat`` runs, after one warm-up allocation of the largest size
(the first large allocation of a process pays the kernel's page zeroing once, whoever makes it).

Run: ``python benchmarks/bench_conv_matrix.py``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sparseconv import ConvGeometry, conv_matrix, set_memory_limit

# (label, weight shape, input shape, stride, padding, dilation)
LAYERS = [
    ("3->64, 224x224, k3 s1 p1", (64, 3, 3, 3), (3, 224, 224), 1, 1, 1),
    ("64->64, 56x56, k3 s1 p1", (64, 64, 3, 3), (64, 56, 56), 1, 1, 1),
    ("64->128, 56x56, k3 s2 p1", (128, 64, 3, 3), (64, 56, 56), 2, 1, 1),
    ("16->16, 32x32, k3 d2 p2", (16, 16, 3, 3), (16, 32, 32), 1, 2, 2),
]


def best_of(repeat: int, fn, *args, **kwargs) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def floor(nnz: int, n_rows: int, index_dtype) -> None:
    data = np.empty(nnz)
    data.fill(1.0)
    indices = np.empty(nnz, dtype=index_dtype)
    indices.fill(1)
    indptr = np.empty(n_rows + 1, dtype=index_dtype)
    indptr.fill(1)


def segments_of(geom: ConvGeometry) -> list:
    return [axis.segments() for axis in geom.axes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    set_memory_limit(None)
    rng = np.random.default_rng(0)
    floor(150_000_000, 1, np.int32)  # warm-up: see the module docstring

    header = (f"{'layer':<28}{'nnz':>12}{'build s':>10}{'segments s':>12}{'Mnnz/s':>9}"
              f"{'floor s':>10}{'ratio':>8}")
    print(header)
    print("-" * len(header))
    for label, wshape, xshape, stride, padding, dilation in LAYERS:
        weight = rng.standard_normal(wshape)
        kwargs = dict(stride=stride, padding=padding, dilation=dilation)
        matrix = conv_matrix(weight, xshape, **kwargs)
        nnz, n_rows, index_dtype = matrix.nnz, matrix.shape[0], matrix.indices.dtype
        del matrix
        build = best_of(args.repeat, conv_matrix, weight, xshape, **kwargs)
        geom = ConvGeometry.from_weight(wshape, xshape, **kwargs)
        template = best_of(args.repeat, segments_of, geom)
        fill = best_of(args.repeat, floor, nnz, n_rows, index_dtype)
        print(f"{label:<28}{nnz:>12,}{build:>10.4f}{template:>12.4f}{nnz / build / 1e6:>9.0f}"
              f"{fill:>10.4f}{build / fill:>8.2f}")
    print("ratio = build / floor; target <= 3.0 on every layer")


if __name__ == "__main__":
    main()
