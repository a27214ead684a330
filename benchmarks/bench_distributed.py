"""sparseconv.dask on a LocalCluster: 1 worker against 2, peak worker memory against the chunk,
and a volume whose dense input and output do not fit under one worker's memory limit.

0. All singular values of a ``--svd-channels`` -> ``--svd-channels`` 3x3 periodic layer on
   ``--svd-size``^2 (256 channels on 64x64 by default: 4,096 SVDs of 256 x 256) through
   ``singular_values(..., executor=client.get_executor())`` on 1 worker and on 2, against the
   serial call in this process; the results are checked equal to 1e-12.
1. A 16->16 3x3x3 convolution (padding 1, float32) of a ``--size``^3 volume chunked
   ``--chunk``^3: the forward product and the adjoint, each reduced to a scalar on the
   cluster (nothing gathered), on 1 worker and on 2 (one thread each, separate processes).
   Ratios in one run: the speedup of 2 workers over 1.
2. Peak memory of each worker (its process's peak RSS, ``ru_maxrss``) against the chunk size,
   over ``--chunks`` (a fresh 2-worker cluster each, so the peaks do not carry over).
3. A ``--big-size``^3 volume of 16 channels (float32; 512^3 is 8.6 GB in, 8.6 GB out) under a
   worker memory limit of ``--worker-memory`` (2 GiB by default): the input generated chunk by
   chunk on the workers, the convolution written to a zarr store under /tmp, its adjoint read
   back from that store and written to a second one; then an interior box of the result is
   checked against the serial ConvOperator on the same input, and the stores are removed.

Run (the lead's configuration; about an hour of CPU on 2 cores)::

    python benchmarks/bench_distributed.py

A small configuration (minutes)::

    python benchmarks/bench_distributed.py --size 128 --chunk 32 --chunks 16,32,64 \\
        --big-size 192 --worker-memory 600MiB

Every worker runs one thread and its BLAS with one thread (``OMP_NUM_THREADS=1``), so the
speedup is that of processes, not of BLAS threads.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one BLAS thread per worker
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

import sparseconv as sc  # noqa: E402
import sparseconv.dask as sdask  # noqa: E402

CHANNELS = 16


def layer(size: int, chunk: int, seed: int = 0):
    w = np.random.default_rng(seed).standard_normal((CHANNELS, CHANNELS, 3, 3, 3))
    w = (w / np.sqrt(w[0].size)).astype(np.float32)
    return w, sdask.ConvOperator(w, (CHANNELS, size, size, size), chunks=chunk, padding=1)


def volume(shape, chunks, seed: int) -> da.Array:
    """A random float32 volume, generated chunk by chunk where it is used (never gathered)."""
    return da.random.default_rng(seed).standard_normal(shape, chunks=chunks, dtype=np.float32)


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cluster(workers: int, memory: str) -> tuple[LocalCluster, Client]:
    c = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     memory_limit=memory, dashboard_address=":0")
    return c, Client(c)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_adjoint(size: int, chunk: int, workers: int, memory: str) -> dict:
    _, C = layer(size, chunk)
    c, client = cluster(workers, memory)
    try:
        x = volume(C.input_shape, (CHANNELS, *C.input_chunks), seed=1)
        y = volume(C.output_shape, (CHANNELS, *C.output_chunks), seed=2)
        client.run(lambda: sc.ConvOperator(np.ones((1, 1, 3)), (1, 8)))  # warm the imports
        forward = timed(lambda: C.matvec(x).sum().compute())
        adjoint = timed(lambda: C.rmatvec(y).sum().compute())
        peaks = sorted(client.run(peak_rss).values())
    finally:
        client.close()
        c.close()
    return dict(forward=forward, adjoint=adjoint, peaks=peaks)


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"


def part_spectra(args) -> None:
    c_, n = args.svd_channels, args.svd_size
    print(f"\n0. all singular values of {c_}->{c_} 3x3 circular on {n}x{n} "
          f"({n * n} SVDs of {c_}x{c_}), executor=client.get_executor()")
    w = np.random.default_rng(0).standard_normal((c_, c_, 3, 3)) / (3 * c_ ** 0.5)
    shape, periodic = (c_, n, n), dict(padding=None, padding_mode="circular")
    serial_s = timed(lambda: sc.singular_values(w, shape, **periodic))
    serial = sc.singular_values(w, shape, **periodic)
    print(f"{'workers':>8} {'seconds':>9} {'speedup':>8}   (serial, this process: "
          f"{serial_s:.2f} s, its default thread pool)")
    base = None
    for workers in (1, 2):
        c, client = cluster(workers, args.worker_memory)
        try:
            client.run(lambda: sc.singular_values(np.ones((1, 1, 3)), (1, 8)))  # warm imports
            executor = client.get_executor()
            start = time.perf_counter()
            values = sc.singular_values(w, shape, executor=executor, **periodic)
            seconds = time.perf_counter() - start
        finally:
            client.close()
            c.close()
        error = float(np.abs(values - serial).max() / serial[0])
        base = base or seconds
        print(f"{workers:>8} {seconds:>9.2f} {base / seconds:>8.2f}   (max difference from "
              f"serial {error:.1e} of sigma_max)")


def part_speedup(args) -> None:
    print(f"\n1. {CHANNELS}->{CHANNELS} 3x3x3 conv, padding 1, float32, {args.size}^3 chunked "
          f"{args.chunk}^3 (forward, adjoint: each reduced to a scalar on the cluster)")
    rows = {w: forward_adjoint(args.size, args.chunk, w, args.worker_memory) for w in (1, 2)}
    print(f"{'workers':>8} {'forward s':>10} {'adjoint s':>10} {'total s':>9} {'speedup':>8}")
    base = rows[1]["forward"] + rows[1]["adjoint"]
    for w, r in rows.items():
        total = r["forward"] + r["adjoint"]
        print(f"{w:>8} {r['forward']:>10.2f} {r['adjoint']:>10.2f} {total:>9.2f} "
              f"{base / total:>8.2f}")


def part_memory(args) -> None:
    print(f"\n2. peak worker memory against the chunk (2 workers, {args.size}^3, forward + "
          "adjoint)")
    print(f"{'chunk':>6} {'chunk MiB':>10} {'window MiB':>11} {'peak RSS per worker':>30} "
          f"{'seconds':>8}")
    for chunk in args.chunks:
        r = forward_adjoint(args.size, chunk, 2, args.worker_memory)
        item = 4 * CHANNELS
        print(f"{chunk:>6} {mib(item * chunk**3):>10} {mib(item * (chunk + 2) ** 3):>11} "
              f"{', '.join(mib(p) for p in r['peaks']):>30} "
              f"{r['forward'] + r['adjoint']:>8.1f}")


def part_big(args) -> None:
    size, chunk = args.big_size, args.big_chunk
    dense = 4 * CHANNELS * size**3
    print(f"\n3. {CHANNELS} x {size}^3 float32 ({dense / 1e9:.2f} GB in, {dense / 1e9:.2f} GB "
          f"out) on 2 workers limited to {args.worker_memory} each, chunks {chunk}^3, via zarr")
    w, C = layer(size, chunk)
    root = Path(tempfile.mkdtemp(prefix="sparseconv-bench-", dir="/tmp"))
    c, client = cluster(2, args.worker_memory)
    try:
        x = volume(C.input_shape, (CHANNELS, *C.input_chunks), seed=3)
        forward = timed(lambda: sdask.to_zarr(C.matvec(x), str(root / "y.zarr")))
        y = da.from_zarr(str(root / "y.zarr"))
        adjoint = timed(lambda: sdask.to_zarr(C.rmatvec(y), str(root / "u.zarr")))
        peaks = sorted(client.run(peak_rss).values())
        on_disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        # an interior box, against the serial operator on the same (regenerated) input
        lo, n = size // 2 - 8, 16
        box = x[:, lo - 1:lo + n + 1, lo - 1:lo + n + 1, lo - 1:lo + n + 1].compute()
        valid = sc.ConvOperator(w, box.shape)
        expected = (valid @ box.ravel()).reshape(CHANNELS, n, n, n)
        got = y[:, lo:lo + n, lo:lo + n, lo:lo + n].compute()
        err = float(np.abs(got - expected).max() / np.abs(expected).max())
    finally:
        client.close()
        c.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"forward -> zarr {forward:.1f} s, adjoint zarr -> zarr {adjoint:.1f} s; "
          f"{on_disk / 1e9:.2f} GB written; peak RSS per worker "
          f"{', '.join(mib(p) for p in peaks)}; interior box vs serial: rel. error {err:.1e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--svd-channels", type=int, default=256)
    parser.add_argument("--svd-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--chunks", default="32,64,128",
                        help="chunk sizes for the memory table, comma-separated")
    parser.add_argument("--big-size", type=int, default=512)
    parser.add_argument("--big-chunk", type=int, default=64)
    parser.add_argument("--worker-memory", default="2GiB")
    parser.add_argument("--skip", default="", help="parts to skip, e.g. 2,3")
    args = parser.parse_args(argv)
    args.chunks = [int(c) for c in args.chunks.split(",") if c]
    skip = {s for s in args.skip.split(",") if s}
    print(describe())
    print(f"dask {dask.__version__}; each worker: 1 thread, OMP/OPENBLAS threads "
          f"{os.environ['OMP_NUM_THREADS']}/{os.environ['OPENBLAS_NUM_THREADS']}")
    if "0" not in skip:
        part_spectra(args)
    if "1" not in skip:
        part_speedup(args)
    if "2" not in skip:
        part_memory(args)
    if "3" not in skip:
        part_big(args)


if __name__ == "__main__":
    main()
