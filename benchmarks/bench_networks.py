"""ResNet-18 through sparseconv.torch: the matrix-free operators against PyTorch, and the report.

(a) Every distinct convolution of ResNet-18 (He et al. 2016) at 224x224, as
``sparseconv.torch.operator(conv, input_shape)``, against the ``nn.Conv2d`` module itself, side
by side in one process: batch 1 and 8, forward (``matvec``/``matmat`` against ``conv(x)``) and
adjoint (``rmatvec``/``rmatmat`` against ``F.conv_transpose2d``, which is what autograd runs for
the input gradient), float64 and float32. The im2col GEMM floor is measured too: the one matrix
product ``W (C_out x C_in k^2) @ cols`` (and ``W^T @ Y`` for the adjoint) on prebuilt operands,
which no im2col implementation can beat with the same BLAS; and the same product by PyTorch's
BLAS (``torch.mm``, MKL on x86), the peer's floor. Ratios are ours / PyTorch's, ours / floor
and floor / the peer's floor ("fl/pe": above 1, numpy's BLAS alone is slower than PyTorch's on
that product; lower is better everywhere). Targets (issue 11): float64 <= 1.0 on every
layer; float32 <= 1.5 where numpy's BLAS runs the CPU's native kernel, else within 1.15x of the
floor. Timing as in ``bench_operators.py`` (alternating blocks, best of, a pause between).

(b) ``sparseconv.torch.lipschitz_report`` of ResNet-18 at 224x224 with random weights and
randomised BatchNorm statistics, BatchNorm folded (``fold_batchnorm=True``: the 20
convolutions and the linear layer): the total time and each layer's relative interval width
``(upper - lower) / upper``. Targets: under 60 s in total on the 2-core machine, every width
under 1e-3.

Run: ``python benchmarks/bench_networks.py`` (the full configuration), or reduced, e.g.
``python benchmarks/bench_networks.py --size 32 --repeat 1 --rounds 1 --layers layer1``, or
only some cells: ``--skip-report --layers conv1,layer2.0 --batches 1 --dtypes float64``.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sparseconv as sc  # noqa: E402
import sparseconv.torch as sct  # noqa: E402
from benchmarks._machine import describe  # noqa: E402
from benchmarks.bench_operators import best_of, blas_threads, paired  # noqa: E402
from sparseconv._spectral_norm import DEFAULT_TOL  # noqa: E402
from tests._networks import BasicBlock, randomize  # noqa: E402


class ResNet18(nn.Module):
    """torchvision's resnet18: a 7x7 stem, max pooling, four stages of two BasicBlocks."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, channels = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(channels, width, stride),
                                        BasicBlock(width, width)))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def distinct_convs(model: nn.Module, size: int) -> list[tuple[str, nn.Conv2d, tuple]]:
    """Each distinct (weight shape, stride, input shape) convolution once, first name kept."""
    seen, layers = set(), []
    for record in sct.trace(model, (3, size, size)):
        if isinstance(record.module, nn.Conv2d):
            key = (tuple(record.module.weight.shape), record.module.stride, record.input_shape)
            if key not in seen:
                seen.add(key)
                layers.append((record.name, record.module, record.input_shape))
    return layers


def label(name: str, conv: nn.Conv2d, shape: tuple) -> str:
    k, s = conv.kernel_size[0], conv.stride[0]
    return f"{name} {conv.in_channels}->{conv.out_channels} {shape[1]}x{shape[2]} k{k}s{s}"


def measure(conv: nn.Conv2d, shape: tuple, dtype, batch: int, args) -> dict:
    """Times in ms: ours and torch, forward and adjoint; the im2col GEMM floors, numpy's and
    PyTorch's."""
    conv = copy.deepcopy(conv).to(dtype)
    weight = conv.weight.detach()
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    if dtype == torch.float64:
        op = sct.operator(conv, shape)
    else:  # sct.operator reads weights as float64; the float32 operator from the same args
        op = sc.ConvOperator(weight.numpy(), shape, stride=conv.stride, padding=conv.padding,
                             dilation=conv.dilation, groups=conv.groups)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((op.shape[1], batch)).astype(np_dtype)
    y = rng.standard_normal((op.shape[0], batch)).astype(np_dtype)
    xt = torch.from_numpy(np.ascontiguousarray(x.T.reshape(batch, *shape)))
    out_shape = op.output_shape
    yt = torch.from_numpy(np.ascontiguousarray(y.T.reshape(batch, *out_shape)))
    # conv_transpose2d's output_padding that gives back the input size (strided layers)
    natural = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, s, p, d, k in
               zip(out_shape[1:], conv.stride, conv.padding, conv.dilation, conv.kernel_size)]
    output_padding = tuple(n - m for n, m in zip(shape[1:], natural))
    fwd = partial(op.matvec, x[:, 0]) if batch == 1 else partial(op.matmat, x)
    adj = partial(op.rmatvec, y[:, 0]) if batch == 1 else partial(op.rmatmat, y)
    times = {}
    with torch.no_grad():
        times["fwd"], times["torch fwd"] = paired(args.rounds, args.repeat, fwd,
                                                  partial(conv, xt))
        times["adj"], times["torch adj"] = paired(
            args.rounds, args.repeat, adj,
            partial(F.conv_transpose2d, yt, weight, stride=conv.stride, padding=conv.padding,
                    output_padding=output_padding, dilation=conv.dilation))
    w = weight.numpy().reshape(weight.shape[0], -1).astype(np_dtype)
    pixels = math.prod(out_shape[1:]) * batch
    cols = rng.standard_normal((w.shape[1], pixels)).astype(np_dtype)
    ys = rng.standard_normal((w.shape[0], pixels)).astype(np_dtype)
    wt = np.ascontiguousarray(w.T)
    times["floor fwd"] = best_of(args.repeat, np.matmul, w, cols)
    times["floor adj"] = best_of(args.repeat, np.matmul, wt, ys)
    with torch.no_grad():  # the peer's BLAS on the same operands
        times["peer fwd"] = best_of(args.repeat, torch.mm, *map(torch.from_numpy, (w, cols)))
        times["peer adj"] = best_of(args.repeat, torch.mm, *map(torch.from_numpy, (wt, ys)))
    return {k: v * 1e3 for k, v in times.items()}


def operators_table(model: nn.Module, args) -> None:
    layers = [layer for layer in distinct_convs(model, args.size)
              if not args.layers or any(key in layer[0] for key in args.layers.split(","))]
    header = (f"{'layer':<42}{'dtype':>8}{'b':>3}{'fwd ms':>9}{'torch':>8}{'ratio':>7}"
              f"{'floor':>8}{'/fl':>6}{'fl/pe':>6}{'adj ms':>9}{'torch':>8}{'ratio':>7}"
              f"{'floor':>8}{'/fl':>6}{'fl/pe':>6}")
    print(header)
    print("-" * len(header))
    for name, conv, shape in layers:
        for dtype in args.dtypes:
            for batch in args.batches:
                t = measure(conv, shape, dtype, batch, args)
                cells = [f"{t[side]:>9.2f}{t['torch ' + side]:>8.2f}"
                         f"{t[side] / t['torch ' + side]:>7.2f}{t['floor ' + side]:>8.2f}"
                         f"{t[side] / t['floor ' + side]:>6.2f}"
                         f"{t['floor ' + side] / t['peer ' + side]:>6.2f}"
                         for side in ("fwd", "adj")]
                print(f"{label(name, conv, shape):<42}{str(dtype)[6:]:>8}{batch:>3}"
                      f"{cells[0]}{cells[1]}", flush=True)
    print("ratio = sparseconv / PyTorch, /fl = sparseconv / im2col GEMM floor, fl/pe = that floor"
          " / the same GEMM by PyTorch's BLAS; targets: float64 <= 1.0; float32 <= 1.5 (native "
          "BLAS kernel) or <= 1.15 x floor")


def report_table(model: nn.Module, args) -> None:
    start = time.perf_counter()
    # BatchNorm folded into the convolutions: the 20 convolutions and the linear layer
    report = sct.lipschitz_report(model, (3, args.size, args.size), fold_batchnorm=True,
                                  progress=True, workers=args.workers, tol=args.tol,
                                  relative_width=args.relative_width)
    total = time.perf_counter() - start
    print(report)
    widths = {row["name"]: (row["upper"] - row["lower"]) / row["upper"] if row["upper"] else 0.0
              for row in report}
    print(f"\n{'layer':<46}{'method':>8}{'seconds':>9}{'relative width':>16}")
    for row in report:
        print(f"{row['name']:<46}{row['method']:>8}{row['seconds']:>9.2f}"
              f"{widths[row['name']]:>16.2e}")
    worst = max(widths, key=lambda name: widths[name])
    print(f"total {total:.1f} s for {len(report)} layers with workers={args.workers}, "
          f"tol={args.tol:g}, relative_width={args.relative_width} "
          f"(target < 60 s); widest interval "
          f"{widths[worst]:.2e} at {worst} (target < 1e-3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeat", type=int, default=5, help="calls per timed block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per side")
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 8], help="batch sizes, comma-separated (default 1,8)")
    parser.add_argument("--dtypes", default=[torch.float64, torch.float32],
                        type=lambda s: [getattr(torch, v) for v in s.split(",")],
                        help="dtypes, comma-separated (default float64,float32)")
    parser.add_argument("--layers", default="",
                        help="only layers whose name contains one of these, comma-separated")
    parser.add_argument("--skip-operators", action="store_true", help="part (b) only")
    parser.add_argument("--workers", type=int, default=2,
                        help="part (b): lipschitz_report's workers (layers at once)")
    parser.add_argument("--tol", type=float, default=DEFAULT_TOL,
                        help="part (b): spectral_norm's tol (default: its own)")
    parser.add_argument("--relative-width", type=float, default=None,
                        help="part (b): spectral_norm's relative_width (default none: the "
                        "default route on every layer; 1e-3: the whole-Gram certificate on "
                        "the rows wider than the target)")
    parser.add_argument("--skip-report", action="store_true", help="part (a) only")
    args = parser.parse_args()
    print(describe())
    threads = blas_threads()
    torch.set_num_threads(threads)
    sc.set_memory_limit(None)
    print(f"numpy BLAS threads = torch threads = {threads}; torch {torch.__version__}; "
          f"input 3x{args.size}x{args.size}\n")
    torch.manual_seed(0)
    model = randomize(ResNet18())  # float64, eval mode, random BatchNorm statistics
    if not args.skip_operators:
        operators_table(model, args)
        model = model.double()
    if not args.skip_report:
        print()
        report_table(model, args)


if __name__ == "__main__":
    main()
