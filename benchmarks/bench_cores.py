"""A product split across the cores, against the same product on the calling thread.

Since 2026-12-05 a large product's im2col route (``sparseconv._product_threads``) is cut by
groups, output rows or output channels, one part per BLAS thread, each part's im2col copy and
GEMM on its own thread with one BLAS thread.
Before, the calling thread made every copy and numpy's BLAS threaded each GEMM. This script
times both on ResNet-18's distinct convolutions at 224x224 (forward and adjoint, float64 and
float32, batch 1 and 8), alternating the two in one process, and prints before each layer
whether the cores share a cache now (``_machine.cache_sharing``): where they do not, every
write to memory the other core's BLAS thread has just read is slow, and the serial product's
copies are.

Columns: ``split`` and ``serial`` in ms (best of ``--rounds`` alternating blocks of
``--repeat`` calls), and ``serial / split`` (above 1: the split is faster).

Run: ``python benchmarks/bench_cores.py`` (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import numpy as np
from _machine import cache_sharing, describe
from bench_operators import paired

from sparseconv import ConvOperator, _product_threads, set_memory_limit

# ResNet-18's distinct convolutions at 224x224: (name, weight shape, input shape, stride, padding)
LAYERS = [
    ("conv1", (64, 3, 7, 7), (3, 224, 224), 2, 3),
    ("layer1.0.conv1", (64, 64, 3, 3), (64, 56, 56), 1, 1),
    ("layer2.0.conv1", (128, 64, 3, 3), (64, 56, 56), 2, 1),
    ("layer2.0.conv2", (128, 128, 3, 3), (128, 28, 28), 1, 1),
    ("layer2.0.downsample", (128, 64, 1, 1), (64, 56, 56), 2, 0),
    ("layer3.0.conv1", (256, 128, 3, 3), (128, 28, 28), 2, 1),
    ("layer3.0.conv2", (256, 256, 3, 3), (256, 14, 14), 1, 1),
    ("layer3.0.downsample", (256, 128, 1, 1), (128, 28, 28), 2, 0),
    ("layer4.0.conv1", (512, 256, 3, 3), (256, 14, 14), 2, 1),
    ("layer4.0.conv2", (512, 512, 3, 3), (512, 7, 7), 1, 1),
    ("layer4.0.downsample", (512, 256, 1, 1), (256, 14, 14), 2, 0),
]


default = _product_threads.MIN_SPLIT_FLOPS


def mode(split: bool, fn):
    """``fn`` with products split across the cores (the default) or kept on this thread."""
    def call():
        _product_threads.MIN_SPLIT_FLOPS = default if split else np.inf
        try:
            fn()
        finally:
            _product_threads.MIN_SPLIT_FLOPS = default
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", default="",
                        help="names containing one of these, comma-separated")
    args = parser.parse_args()
    print(describe(), "\n")
    set_memory_limit(None)
    rng = np.random.default_rng(0)
    print(f"{'layer':<22}{'dtype':>8}{'b':>3}{'fwd split':>11}{'serial':>8}{'ratio':>7}"
          f"{'adj split':>11}{'serial':>8}{'ratio':>7}")
    wins, cells = 0, 0
    for name, shape, input_shape, stride, padding in LAYERS:
        if args.layers and not any(key in name for key in args.layers.split(",")):
            continue
        print(f"  {cache_sharing(20)}", flush=True)
        for dtype in (np.float64, np.float32):
            op = ConvOperator(rng.standard_normal(shape).astype(dtype), input_shape,
                              stride=stride, padding=padding)
            for b in (1, 8):
                x = rng.standard_normal((op.shape[1], b)).astype(dtype)
                y = rng.standard_normal((op.shape[0], b)).astype(dtype)
                row = f"{name:<22}{np.dtype(dtype).name:>8}{b:>3}"
                for product, operand in ((op.matmat, x), (op.rmatmat, y)):
                    fn = partial(product, operand)
                    split, serial = paired(args.rounds, args.repeat, mode(True, fn),
                                           mode(False, fn))
                    row += f"{split * 1e3:>11.2f}{serial * 1e3:>8.2f}{serial / split:>7.2f}"
                    wins, cells = wins + (split <= serial), cells + 1
                print(row, flush=True)
    print(f"\nthe split was as fast or faster in {wins} of {cells} cells")


if __name__ == "__main__":
    sys.exit(main())
