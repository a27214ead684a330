"""Work split across frequencies: chunks, an executor, and one BLAS thread per task.

Spectra of a periodic layer are independent per frequency. The work is cut into chunks of
frequencies; each chunk is one task, a module-level (picklable) function called with the
kernel, the geometry and the chunk -- never a matrix -- so that any
:class:`concurrent.futures.Executor` runs it: a :class:`~concurrent.futures.ThreadPoolExecutor`
(the default, ``os.cpu_count()`` workers), a :class:`~concurrent.futures.ProcessPoolExecutor`,
a ``dask.distributed`` client's ``get_executor()``, or mpi4py's ``MPIPoolExecutor``. Results
are gathered in the serial order, so they equal the serial ones.

Each task runs its LAPACK calls on one BLAS thread (:func:`one_blas_thread`): thousands of
small factorizations each spinning up a BLAS thread team cost more than they compute, and
collapse when processes oversubscribe the cores; the parallelism is across chunks instead.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from ._typing import ProgressLike

__all__ = ["map_chunks", "one_blas_thread"]

_lock = threading.Lock()
_depth = 0
_limiter: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS and LAPACK on one thread within the block, for the whole process.

    The limit is process-wide (threadpoolctl's), so nested and concurrent uses share it: the
    first to enter sets it and the last to leave restores the previous setting.
    """
    global _depth, _limiter
    with _lock:
        if _depth == 0:
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

            _limiter = threadpool_limits(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None


def _run(task: Callable, args: tuple, chunk: Any) -> Any:
    """One task, in whatever worker runs it: ``task(*args, chunk)`` on one BLAS thread."""
    with one_blas_thread():
        return task(*args, chunk)


def map_chunks(task: Callable, args: tuple, chunks: Sequence, *, executor: Executor | None,
               what: str, progress: ProgressLike | None = None,
               label: Callable[[int], str] = str) -> list:
    """``[task(*args, chunk) for chunk in chunks]``, on ``executor``, in the serial order.

    ``executor=None`` runs the chunks on a thread pool of ``os.cpu_count()`` workers (serially
    for a single chunk). A task that fails is re-raised as a ``RuntimeError`` naming ``what``
    and ``label(i)`` of its chunk, chained to the worker's exception.
    """
    total = len(chunks)
    if total == 1 and executor is None:  # small work: no pool, no thread limit to set
        return [_collect(functools.partial(task, *args, chunks[0]), what, label(0))]
    own = executor is None and (os.cpu_count() or 1) > 1
    pool = ThreadPoolExecutor(os.cpu_count()) if own else executor
    results: list = []
    try:
        if pool is None:
            for i, chunk in enumerate(chunks):
                results.append(_collect(functools.partial(_run, task, args, chunk), what, label(i)))
                _report(progress, i + 1, total)
            return results
        futures = [pool.submit(_run, task, args, chunk) for chunk in chunks]
        for i, future in enumerate(futures):
            results.append(_collect(future.result, what, label(i)))
            _report(progress, i + 1, total)
        return results
    finally:
        if own:
            assert pool is not None
            pool.shutdown(wait=True, cancel_futures=True)


def _collect(result: Callable[[], Any], what: str, where: str) -> Any:
    try:
        return result()
    except Exception as error:
        raise RuntimeError(f"{what}: the task for {where} failed: {error!r}") from error


def _report(progress: ProgressLike | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def frequency_chunks(frequencies: np.ndarray, step: int, executor: Executor | None,
                     ) -> list[np.ndarray]:
    """``frequencies`` cut into the tasks of :func:`map_chunks`.

    Work that fits one ``step`` (the frequencies whose symbol takes a few megabytes) is one
    task; else the default thread pool gets about four tasks per worker, and an executor
    at most 64 tasks (each pickles the kernel) of at least one ``step``.
    """
    count = len(frequencies)
    if count <= step:
        size = max(count, 1)
    elif executor is None:
        size = math.ceil(count / (4 * (os.cpu_count() or 1)))
    else:
        size = max(step, math.ceil(count / 64))
    return [frequencies[i:i + size] for i in range(0, count, size)] or [frequencies]
