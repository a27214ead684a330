"""Build time of conv_matrix against the memory floor, and the matvec of its formats against
the operator, measured side by side in one process.

``build``: the floor is the time to allocate and fill arrays of the sizes of the CSR result
(``data``, ``indices``, ``indptr``); no builder can beat it. The target is a build within 3x
of it. Each time is the best of ``--repeat`` runs, after one warm-up allocation of the largest
size (the first large allocation of a process pays the kernel's page zeroing once, whoever
makes it).

``matvec``: on the five standard layers of ``bench_operators.py``, one product ``A @ x`` (and
a batch of ``--batch`` columns) by the channels-last BSR matrix (``(C_out/groups,
C_in/groups)`` blocks, built directly), the channels-first CSR matrix, the channels-last CSR
matrix, and the matrix-free :class:`ConvOperator`. The target is BSR within 2x of the
operator. A sparse matvec reads every stored entry once (8 bytes of ``data`` each, plus an
index per block), so it is bounded by memory bandwidth, ``nnz * 8 B / bandwidth``, while the
operator reads the weight once and runs a GEMM: on the large layers the matrix is ~1 GB and no
sparse format can be within 2x of the operator; the batch amortizes the read.

Run: ``python benchmarks/bench_conv_matrix.py [--section build|matvec|all] [--small]``
(``--small`` divides the spatial sizes by 4: a check that the script runs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import describe

from sparseconv import ConvGeometry, ConvOperator, conv_matrix, set_memory_limit

# (label, weight shape, input shape, stride, padding, dilation)
LAYERS = [
    ("3->64, 224x224, k3 s1 p1", (64, 3, 3, 3), (3, 224, 224), 1, 1, 1),
    ("64->64, 56x56, k3 s1 p1", (64, 64, 3, 3), (64, 56, 56), 1, 1, 1),
    ("64->128, 56x56, k3 s2 p1", (128, 64, 3, 3), (64, 56, 56), 2, 1, 1),
    ("16->16, 32x32, k3 d2 p2", (16, 16, 3, 3), (16, 32, 32), 1, 2, 2),
]

# the five layers of bench_operators.py
MATVEC_LAYERS = [
    ("3->64, 224x224, k3 p1", (64, 3, 3, 3), (3, 224, 224), 1, 1, 1),
    ("64->64, 56x56, k3 p1", (64, 64, 3, 3), (64, 56, 56), 1, 1, 1),
    ("64->128, 56x56, k3 s2 p1", (128, 64, 3, 3), (64, 56, 56), 2, 1, 1),
    ("1->1, 512x512, k5 p2", (1, 1, 5, 5), (1, 512, 512), 1, 2, 1),
    ("16->16, 32x32, k3 d2 p2", (16, 16, 3, 3), (16, 32, 32), 1, 2, 2),
]


def small(xshape: tuple[int, ...]) -> tuple[int, ...]:
    return (xshape[0], *(max(8, n // 4) for n in xshape[1:]))


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


def matvecs(args) -> None:
    rng = np.random.default_rng(0)
    header = (f"{'layer':<26}{'nnz':>12}{'cols':>5}{'BSR cl ms':>11}{'CSR cf ms':>11}"
              f"{'CSR cl ms':>11}{'op ms':>9}{'read ms':>9}{'BSR/op':>8}{'BSR/read':>9}"
              f"{'CSR/BSR':>9}{'block':>9}")
    print(header)
    print("-" * len(header))
    for label, wshape, xshape, stride, padding, dilation in MATVEC_LAYERS:
        xshape = small(xshape) if args.small else xshape
        weight = rng.standard_normal(wshape)
        kwargs = dict(stride=stride, padding=padding, dilation=dilation)
        op = ConvOperator(weight, xshape, **kwargs)
        op_last = ConvOperator(weight, xshape, layout="channels_last", **kwargs)
        inputs = [rng.standard_normal(op.shape[1]), rng.standard_normal((op.shape[1], args.batch))]
        times: dict[str, list[float]] = {}
        # one matrix at a time: the large layers' matrices are ~1 GB each
        for name, build in (("bsr", dict(format="bsr", layout="channels_last")),
                            ("csr", {}), ("csr_last", dict(layout="channels_last"))):
            A = conv_matrix(weight, xshape, **build, **kwargs)
            times[name] = [best_of(args.repeat, A.dot, x) * 1e3 for x in inputs]
            if name == "bsr":
                nnz, blocksize = A.nnz, A.blocksize
                # the memory floor of any product by this matrix: one streaming read of its
                # stored values (a sum: one add per 8 bytes read)
                read = best_of(args.repeat, np.add.reduce, A.data.reshape(-1)) * 1e3
            del A
        # the operator in either layout: its best
        times["op"] = [min(best_of(args.repeat, o.dot, x) for o in (op, op_last)) * 1e3
                       for x in inputs]
        for k, cols in enumerate((1, args.batch)):
            t = [times[name][k] for name in ("bsr", "csr", "csr_last", "op")]
            print(f"{label if cols == 1 else '':<26}{nnz:>12,}{cols:>5}"
                  f"{t[0]:>11.2f}{t[1]:>11.2f}{t[2]:>11.2f}{t[3]:>9.2f}{read:>9.2f}"
                  f"{t[0] / t[3]:>8.2f}{t[0] / read:>9.2f}{t[1] / t[0]:>9.2f}"
                  f"{'x'.join(map(str, blocksize)):>9}")
    print("BSR cl = channels-last BSR; CSR cf / cl = CSR channels-first / -last; op = "
          "ConvOperator (best of its two layouts); read = one streaming read of the BSR "
          "values, the memory floor of any sparse product; target BSR/op <= 2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--section", choices=("build", "matvec", "all"), default="all")
    parser.add_argument("--batch", type=int, default=16, help="columns of the batched product")
    parser.add_argument("--small", action="store_true", help="spatial sizes / 4 (a check)")
    args = parser.parse_args()
    set_memory_limit(None)
    print(describe())
    if args.section in ("matvec", "all"):
        matvecs(args)
    if args.section in ("build", "all"):
        builds(args)


def builds(args) -> None:
    rng = np.random.default_rng(0)
    floor(150_000_000, 1, np.int32)  # warm-up: see the module docstring

    header = (f"{'layer':<28}{'nnz':>12}{'build s':>10}{'segments s':>12}{'Mnnz/s':>9}"
              f"{'floor s':>10}{'ratio':>8}")
    print(header)
    print("-" * len(header))
    for label, wshape, xshape, stride, padding, dilation in LAYERS:
        xshape = small(xshape) if args.small else xshape
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
