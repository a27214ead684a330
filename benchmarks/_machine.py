"""What a benchmark ran on: the CPU, numpy's BLAS kernel and thread count, the environment.

Every benchmark prints :func:`describe` first, so that a figure can be read later: the CPU
model changes between machines, and OpenBLAS may run a slower kernel than the CPU allows
(``OPENBLAS_CORETYPE``; see the env notes before benchmarking). So does memory: on this
project's VM, whose kernel reports freed memory to its host (Linux's free page reporting,
the likely cause), the huge pages numpy asks for (its default on Linux,
``NUMPY_MADVISE_HUGEPAGE``) cost up to 14 s per GiB to touch for the first time in a while,
against 0.6-0.8 s per GiB in small pages and 0.2 s per GiB for pages still mapped. And
the cores' caches: the same VM's two cores share a cache at some times and not at others (the
host's placement, changing over minutes), and where they do not, a core's write to memory the
other has just read costs several times more (:func:`cache_sharing`).
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    import numpy  # noqa: F401  (threadpoolctl reports only the libraries already loaded)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"
    found = [f"{info.get('internal_api')} {info.get('version')} kernel "
             f"{info.get('architecture')}, {info['num_threads']} threads"
             for info in threadpool_info() if info["user_api"] == "blas"]
    return "; ".join(found) or "none found"


def gemm_rates(size: int = 2048, repeat: int = 3) -> str:
    """sgemm and dgemm speed now (best of ``repeat`` products of ``size``-square matrices):
    a shared VM's speed drifts between runs, and this says what it was during this one."""
    import time

    import numpy as np

    rates = []
    for dtype in (np.float32, np.float64):
        a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
        a @ a  # warm up the thread team
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        rates.append(f"{np.dtype(dtype).name} {2 * size**3 / min(times) / 1e9:.0f} GFLOP/s")
    return f"GEMM {size}^3: " + ", ".join(rates)


def memory() -> str:
    """numpy's huge-page setting, and the order of the blocks the kernel reports free to a host
    (``none`` where it does not)."""
    import numpy as np

    try:
        huge = np._core.multiarray._get_madvise_hugepage()
    except AttributeError:  # a numpy without the switch
        huge = "unknown"
    try:
        with open("/sys/module/page_reporting/parameters/page_reporting_order") as order:
            reporting = f"blocks of order {order.read().strip()}"
    except OSError:
        reporting = "none"
    return f"numpy huge pages: {huge}; free page reporting: {reporting}"


def cache_sharing(repeat: int = 100) -> str:
    """What writing 4 MB costs right after numpy's BLAS threads read it, against 4 MB they did
    not read: about 1x where the cores share their cache, several times where they do not
    (each write then first invalidates the other core's copy of the line)."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 576)).astype(np.float32)
    read, unread = (rng.standard_normal((576, 1792)).astype(np.float32) for _ in range(2))
    out = np.empty((64, 1792), np.float32)
    times = {}
    for name, target in (("read", read), ("unread", unread)):
        best = np.inf
        for _ in range(repeat):
            np.matmul(a, read, out=out)  # the BLAS threads read `read`, every core a share
            start = time.perf_counter()
            target.fill(1.0)
            best = min(best, time.perf_counter() - start)
        times[name] = best * 1e3
    ratio = times["read"] / times["unread"]
    return (f"cores' caches: 4 MB written after the BLAS threads read it {times['read']:.2f} "
            f"ms, unread {times['unread']:.2f} ms ({ratio:.1f}x: the cores share "
            f"{'no' if ratio > 2.5 else 'a'} cache now)")


def describe() -> str:
    """One line per fact: CPU, cores, BLAS, its speed now, memory, and the OpenBLAS and numpy
    variables in force."""
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                      "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                      "NUMPY_MADVISE_HUGEPAGE") if k in os.environ}
    return (f"CPU: {cpu_model()} ({os.cpu_count()} cores)\n"
            f"BLAS: {blas()}; {gemm_rates()}\n"
            f"memory: {memory()}\n"
            f"{cache_sharing()}\n"
            f"environment: {env or 'no OpenBLAS or numpy variables set'}")
