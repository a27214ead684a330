"""One product split across the cores, each thread on one BLAS thread.

numpy's BLAS threads a GEMM across the cores by itself, but the work around it -- the
padding and the im2col copy -- runs on the calling thread, and that copy writes memory which
the other cores' BLAS threads have just read. Where the cores share no cache, each such write
first invalidates the other core's copy of the line. On the 2-core machine of 2026-12-05 (a
virtual one whose two cores sat, for minutes at a time, on caches they did not share: the
host's placement, not the process's), writing 4 MB that the other core had read in the GEMM
before took 0.97 ms, against 0.13 ms for memory it had not read, and ResNet-18's
layer1.0.conv1 forward in single precision took 3.3-4.1 ms instead of 1.5
(``benchmarks/bench_cores.py`` measures both).

So the im2col route of a large product (:func:`may_split`) is cut into one part per BLAS
thread the caller has (:func:`threads_for`, :func:`parts`): by groups where there are enough,
else by output rows, or by output channels where the weight is the larger operand. Each
thread copies its part's patches into its own scratch and multiplies them on one BLAS
thread (:func:`run_parts`), as PyTorch's OpenMP threads each take their share: a core writes
only memory it reads itself. The parts write disjoint blocks of one result, so the numbers
are those of the serial product up to the BLAS's own order of additions.

The implicit GEMM (double precision at stride 1) is not split: it copies nothing but the
padding, and its serial product was as fast (0.92-1.10x of the split one). Neither is col2im,
whose taps add into overlapping rows. Inside :func:`sparseconv._parallel.one_blas_thread` (a
spectrum's tasks, a layer worker, a product already split), with one BLAS thread, or on one
core, a product stays on its thread.

While a split product runs, BLAS is held to one thread for the whole process (the limit is
process-wide), and the calling thread to the core it is on (Linux; its affinity is restored
after, whatever happens; elsewhere the threads are not pinned). So a limit another thread
sets with threadpoolctl while a split product runs is undone when the product ends (a
review); a limit set before the product keeps it from splitting, and holds. A child forked
during a product starts without the limit (:func:`sparseconv._parallel.one_blas_thread`).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from . import _parallel

__all__ = ["MIN_SPLIT_BYTES", "MIN_SPLIT_FLOPS", "may_split", "parts", "run_parts",
           "threads_for"]

#: Products of fewer multiply-adds stay on the calling thread: handing a part to another
#: thread and waiting for it costs tens of microseconds ...
MIN_SPLIT_FLOPS = 2**24
#: ... and so do products whose im2col copies less than this: their copy is short, and
#: numpy's BLAS threads split a small GEMM better than one BLAS thread a part
#: (``benchmarks/bench_cores.py``: 0.6-0.85x on ResNet-18's 1x1 stride-2 layers at batch 8).
MIN_SPLIT_BYTES = 2**20


Task = tuple[int, int, int, int, int]  # (group, first row, end row, first channel, end channel)

_pools: dict[int, tuple[int, ThreadPoolExecutor]] = {}  # by process id (a forked child
# starts its own): (workers, pool)
_pools_lock = threading.Lock()


def may_split(flops: float, copied: int) -> bool:
    """Whether a product of ``flops`` multiply-adds whose im2col copies ``copied`` bytes is
    large enough to split."""
    return flops >= MIN_SPLIT_FLOPS and copied >= MIN_SPLIT_BYTES


def threads_for(flops: float, copied: int) -> int:
    """How many threads a product of ``flops`` multiply-adds whose im2col copies ``copied``
    bytes splits across: the threads BLAS would use for it, or 1 (small work, one core, or
    BLAS already held to one thread)."""
    if not may_split(flops, copied) or _parallel.limited():
        return 1
    cores = _parallel.cpu_count()
    return 1 if cores == 1 else min(cores, _parallel.blas_threads())


def parts(groups: int, rows: int, chunk: int, channels: int, threads: int, *,
          by_channels: bool) -> list[list[Task]]:
    """The ``(group, row, end, channel, end)`` tasks of a product over ``groups`` x ``rows``
    output rows of ``channels`` output channels each, at most ``chunk`` rows a task, cut into
    at most ``threads`` contiguous parts of about equal work.

    With as many groups as threads, each part takes whole groups. Otherwise the parts cut
    the rows (each then reads the whole weight) or, ``by_channels``, the output channels
    (each then copies every row's patches): the caller picks the smaller of the two to repeat.
    """
    count = math.ceil(rows / chunk)
    if 1 < threads and groups < threads and not by_channels:  # a multiple of the parts
        share = math.ceil(threads / groups)
        count = min(rows, math.ceil(count / share) * share)
        chunk = math.ceil(rows / count)
    row_chunks = [(r0, min(rows, r0 + chunk)) for r0 in range(0, rows, chunk)]
    if 1 < threads and groups < threads and by_channels:
        cuts = min(threads, channels)
        return [[(g, r0, r1, i * channels // cuts, (i + 1) * channels // cuts)
                 for g in range(groups) for r0, r1 in row_chunks] for i in range(cuts)]
    tasks = [(g, r0, r1, 0, channels) for g in range(groups) for r0, r1 in row_chunks]
    count = min(threads, len(tasks))
    return [tasks[i * len(tasks) // count:(i + 1) * len(tasks) // count] for i in range(count)]


def run_parts(task: Callable[..., None], cut: Sequence[Sequence[Task]]) -> None:
    """``task(*t)`` for every task ``t`` of every part of ``cut``: the first part on the calling
    thread, each other on a thread and a core of its own (:func:`_cores`), all on one BLAS
    thread; returns when all are done, raising the first part's error, if any."""
    if len(cut) == 1:
        _run_part(task, cut[0])
        return
    with _parallel.one_blas_thread(), _cores(len(cut) - 1) as cores:
        pool = _pool(len(cut) - 1)
        futures = [pool.submit(_run_part, task, part, core)
                   for part, core in zip(cut[1:], cores)]
        try:
            _run_part(task, cut[0])
        finally:
            errors = [future.exception() for future in futures]  # waits for every part
        for error in errors:
            if error is not None:
                raise error


_placed = threading.local()  # a worker thread's cores


def _run_part(task: Callable[..., None], part: Sequence[Task],
              cores: frozenset[int] | None = None) -> None:
    if cores is not None and getattr(_placed, "cores", None) != cores:
        os.sched_setaffinity(0, cores)
        _placed.cores = cores
    for t in part:
        task(*t)


@contextlib.contextmanager
def _cores(workers: int) -> Iterator[list[frozenset[int] | None]]:
    """Within the block, the calling thread kept on the core it runs on, and a core for each
    of ``workers`` worker threads among the others it may use; where it cannot say which
    core it is on, or may use one only, the workers get the cores it may use (``None`` where
    the system has no affinity: the workers are left where they are).

    Left to the kernel, a worker woke on the calling thread's own core (the core that woke
    it), and the two parts ran one after the other: 2.9 ms against 1.5 for layer1.0.conv1's
    forward (2026-12-05). Pinning a worker alone is not enough: the calling thread, idle
    between products, stayed on the worker's core. numpy's BLAS threads avoid this by
    spinning on their own cores between calls.
    """
    if not hasattr(os, "sched_getaffinity"):
        yield [None] * workers
        return
    allowed = frozenset(os.sched_getaffinity(0))
    here = _getcpu() if _getcpu is not None and len(allowed) > 1 else -1
    if here not in allowed:
        yield [allowed] * workers
        return
    others = sorted(allowed - {here})
    os.sched_setaffinity(0, {here})
    try:
        yield [frozenset({others[i % len(others)]}) for i in range(workers)]
    finally:
        os.sched_setaffinity(0, allowed)


def _libc_getcpu() -> Callable[[], int] | None:
    """glibc's ``sched_getcpu`` (the core the calling thread runs on), where there is one."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):  # pragma: no cover - a libc without it
        return None


_getcpu = _libc_getcpu()


def _pool(workers: int) -> ThreadPoolExecutor:
    """This process's threads for the parts after the first, kept between products (a new
    thread per product would cost more than the split saves)."""
    pid = os.getpid()
    with _pools_lock:
        size, pool = _pools.get(pid, (0, None))
        if pool is None or size < workers:  # a smaller one is left to its callers: its
            # threads end when the last drops it (shut down, a caller's submit would fail)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="sparseconv")
            _pools[pid] = (workers, pool)
        return pool
