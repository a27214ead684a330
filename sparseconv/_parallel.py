"""Work split across frequencies: chunks, an executor, and one BLAS thread per task.

Spectra of a periodic layer are independent per frequency. The work is cut into chunks of
frequencies; each chunk is one task, a module-level (picklable) function called with the
kernel, the geometry and the chunk -- never a matrix -- so that any
:class:`concurrent.futures.Executor` runs it: a :class:`~concurrent.futures.ThreadPoolExecutor`
(the default, :func:`cpu_count` workers: the cores this process may use), a
:class:`~concurrent.futures.ProcessPoolExecutor`, a ``dask.distributed`` client's
``get_executor()``, or mpi4py's ``MPIPoolExecutor``. Results are gathered in the serial
order, so they equal the serial ones.

Each task runs its LAPACK calls on one BLAS thread (:func:`one_blas_thread`): thousands of
small factorizations each spinning up a BLAS thread team cost more than they compute, and
collapse when processes oversubscribe the cores; the parallelism is across chunks instead.

Whole layers split too (:func:`map_layers`): a network's layers are independent, so ``workers``
processes each take one layer at a time, on one core -- one BLAS thread, its chunks in turn
(:func:`cpu_count` is 1 there) -- the costliest first. A single layer's Lanczos iteration is
a chain of products that two cores barely speed up; two layers at once use both.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from ._typing import ProgressLike

__all__ = ["blas_threads", "cpu_count", "limited", "map_chunks", "map_layers", "naming",
           "one_blas_thread"]

_lock = threading.Lock()
_one_core = False  # True in a layer worker (map_layers): its chunks run in turn
_holders: dict[int, int] = {}  # thread -> the one_blas_thread blocks it is inside
_limiter: Any = None
_controlled: tuple[int, float, Any] | None = None  # (modules imported, when, controller)


def _controller() -> Any:
    """threadpoolctl's controller of the thread pools loaded in this process, kept a few
    seconds while no module is imported: finding the libraries costs about a millisecond
    (torch loaded), which a product cannot pay each time; an import may load new ones, and so
    may ``ctypes`` (a review), so it is looked for again after either."""
    global _controlled
    key = len(sys.modules)
    if (_controlled is None or _controlled[0] != key
            or time.monotonic() - _controlled[1] > _RESCAN_SECONDS):
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _controlled = (key, time.monotonic(), ThreadpoolController())
    return _controlled[2]


#: How long :func:`_controller` trusts the libraries it found, while no module is imported.
_RESCAN_SECONDS = 5.0


def blas_threads() -> int:
    """The threads BLAS uses now (the most of any BLAS loaded): 1 inside
    :func:`one_blas_thread` or a caller's own ``threadpool_limits(1)``."""
    pools = _controller().select(user_api="blas").lib_controllers
    return max((pool.num_threads for pool in pools), default=1)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS and LAPACK on one thread within the block, for the whole process.

    The limit is process-wide (threadpoolctl's), so nested and concurrent uses share it: the
    first to enter sets it and the last to leave restores the previous setting.
    """
    global _limiter
    me = threading.get_ident()
    with _lock:
        if not _holders:
            _limiter = _controller().limit(limits=1)
        _holders[me] = _holders.get(me, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _holders[me] -= 1
            if not _holders[me]:
                del _holders[me]
            if not _holders:
                _limiter.restore_original_limits()
                _limiter = None


def limited() -> bool:
    """Whether some thread of this process is inside :func:`one_blas_thread` (a hint, read
    without the lock: a product then keeps to its own thread)."""
    return bool(_holders)


def cpu_count() -> int:
    """The cores this thread may use (its affinity, where the system has one; else
    ``os.cpu_count()``), or 1 in a layer worker."""
    if _one_core:
        return 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _after_fork_in_child() -> None:
    """A child forked while another thread held :func:`one_blas_thread` inherits the limit
    and the count, perhaps the held lock, but not the thread that would release them (a
    review: every later product of the child ran on one BLAS thread, never split). The
    forking thread, the child's only one, keeps its own blocks: it leaves them there."""
    global _lock, _limiter
    _lock = threading.Lock()
    own = _holders.get(threading.get_ident())
    _holders.clear()
    if own:
        _holders[threading.get_ident()] = own
    elif _limiter is not None:
        _limiter.restore_original_limits()
        _limiter = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run(task: Callable, args: tuple, chunk: Any) -> Any:
    """One task, in whatever worker runs it: ``task(*args, chunk)`` on one BLAS thread."""
    with one_blas_thread():
        return task(*args, chunk)


def map_chunks(task: Callable, args: tuple, chunks: Sequence, *, executor: Executor | None,
               what: str, progress: ProgressLike | None = None,
               label: Callable[[int], str] = str) -> list:
    """``[task(*args, chunk) for chunk in chunks]``, on ``executor``, in the serial order.

    ``executor=None`` runs the chunks on a thread pool of :func:`cpu_count` workers (serially
    for a single chunk or a single core). A task that fails is re-raised as a ``RuntimeError``
    naming ``what`` and ``label(i)`` of its chunk, chained to the worker's exception.
    """
    total = len(chunks)
    if total == 1 and executor is None:  # small work: no pool, no thread limit to set
        result = _collect(functools.partial(task, *args, chunks[0]), what, label(0))
        _report(progress, 1, 1)
        return [result]
    own = executor is None and cpu_count() > 1
    pool = ThreadPoolExecutor(cpu_count()) if own else executor
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
        size = math.ceil(count / (4 * cpu_count()))
    else:
        size = max(step, math.ceil(count / 64))
    return [frequencies[i:i + size] for i in range(0, count, size)] or [frequencies]


class Results(Protocol):
    """What :func:`map_layers` returns: ``(i, result, seconds)`` as each item finishes, and
    ``close()``, which stops the work left."""

    def __iter__(self) -> Iterator[tuple[int, Any, float]]: ...

    def __next__(self) -> tuple[int, Any, float]: ...

    def close(self) -> None: ...


def _on_one_core(task: Callable, args: tuple, limit: int | None, parent: int,
                 ) -> tuple[Any, float]:
    """In a layer worker: ``task(*args)`` on one core under the memory ``limit``, and its time.

    Run by the process ``parent`` itself (joblib falls back to that in a daemon process or a
    thread other than the main one), it changes nothing there: its other threads keep their
    cores and BLAS threads."""
    global _one_core
    from ._memory import set_memory_limit

    if os.getpid() == parent:
        start = time.perf_counter()
        return task(*args), time.perf_counter() - start
    old, _one_core = set_memory_limit(limit), True
    try:
        with one_blas_thread():
            start = time.perf_counter()
            return task(*args), time.perf_counter() - start
    finally:
        _one_core = False
        set_memory_limit(old)


def map_layers(task: Callable, items: Sequence[tuple], *, workers: int | Callable,
               costs: Sequence[float], label: Callable[[int], str] = str) -> Results:
    """``(i, task(*items[i]), seconds)`` for every item, as each finishes.

    ``workers`` a map-like callable (:func:`sparseconv._validation.workers_or_map`): the
    items are mapped through it, the largest ``costs`` first, each under this process's
    memory limit, on whatever threads its workers have (a Dask cluster's processes, say), and
    come back in that order. ``workers == 1``: in this process, in order, each item when
    asked for. Else on
    ``workers`` processes (joblib's loky pool, reused between calls; a script needs no ``if
    __name__ == "__main__"`` guard), dispatched at once, the largest ``costs`` first so that
    no big item is left for the end; each worker runs one item at a time on one core, under
    this process's memory limit (a limit per matrix, as here: the workers' peak memory adds
    up). ``task`` must be a module-level function of picklable arguments. An exception in a
    task reaches the caller with its type, its message led by ``label(i)`` of its item. Close the
    iterator (``close()``: an interrupt, an error) to stop the workers.
    """
    if callable(workers):
        return _mapped(task, items, workers, costs, label)
    if workers == 1 or len(items) <= 1:
        return _in_turn(task, items, label)
    from joblib import Parallel, delayed  # type: ignore[import-untyped]

    from ._memory import get_memory_limit

    limit, parent = get_memory_limit(), os.getpid()
    order = sorted(range(len(items)), key=lambda i: -costs[i])
    jobs = min(workers, len(items))  # (a trial: workers=2**62 went to joblib as it was)
    runs = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
        delayed(_indexed)(i, task, items[i], limit, parent, label(i)) for i in order)
    return _Closing(runs)  # created here: the workers start now, not at the first read


def _mapped(task: Callable, items: Sequence[tuple], map_like: Callable,
            costs: Sequence[float], label: Callable[[int], str],
            ) -> Generator[tuple[int, Any, float], None, None]:
    """:func:`map_layers` through a map-like callable: the costliest items first, each with
    this process's memory limit and its label (:func:`_mapped_item`), in the map's order."""
    from ._memory import get_memory_limit

    limit = get_memory_limit()
    order = sorted(range(len(items)), key=lambda i: -costs[i])
    results = map_like(_mapped_item, [(i, task, items[i], limit, label(i)) for i in order])
    try:
        results = iter(results)
    except TypeError:
        raise TypeError(f"workers={map_like!r} returned {_shown(results)}, not the results of "
                        "the function on each item: a map-like callable returns what "
                        "map(function, iterable) would") from None
    pending = set(order)
    for found in results:
        if not (isinstance(found, tuple) and len(found) == 3 and type(found[0]) is int
                and found[0] in pending):  # (a hunt: 1.0 passed, [0] raised unhashable)
            raise TypeError(f"workers={map_like!r} returned {_shown(found)} among its results, "
                            "not the function's result on an item: a map-like callable "
                            "returns what map(function, iterable) would")
        pending.discard(found[0])
        yield found
    if pending:
        raise ValueError(f"workers={map_like!r} returned no result for "
                         f"{', '.join(label(i) for i in sorted(pending))}: a map-like callable "
                         "returns the function's result on every item")


def _shown(value: Any) -> str:
    """``value`` as an error message shows it: its type, and its repr if short."""
    text = repr(value)
    return f"{text} (of type {type(value).__name__})" if len(text) <= 60 else \
        f"an object of type {type(value).__name__}"


def _mapped_item(item: tuple) -> tuple[int, Any, float]:
    """One item of :func:`_mapped`, where the map runs it (module level: a worker process
    unpickles it): under the caller's memory limit, its errors led by the item's label."""
    from ._memory import set_memory_limit

    i, task, args, limit, where = item
    old = set_memory_limit(limit)
    try:
        with naming(where):
            start = time.perf_counter()
            result = task(*args)
        return i, result, time.perf_counter() - start
    finally:
        set_memory_limit(old)


def _in_turn(task: Callable, items: Sequence[tuple], label: Callable[[int], str],
             ) -> Generator[tuple[int, Any, float], None, None]:
    for i, args in enumerate(items):
        start = time.perf_counter()
        with naming(label(i)):
            result = task(*args)
        yield i, result, time.perf_counter() - start


class _Closing:
    """joblib's generator of results, whose :meth:`close` stops the workers even before the
    first read (a generator's own ``close`` would do nothing then), quietly."""

    def __init__(self, runs) -> None:
        self._runs = runs

    def __iter__(self) -> _Closing:
        return self

    def __next__(self) -> tuple[int, Any, float]:
        return next(self._runs)

    def close(self) -> None:
        with warnings.catch_warnings():  # closed early: joblib counts the results left unread
            warnings.filterwarnings("ignore", "[0-9]+ tasks (have been|which)", UserWarning)
            self._runs.close()


def _indexed(i: int, task: Callable, args: tuple, limit: int | None, parent: int,
             where: str) -> tuple[int, Any, float]:
    with naming(where):
        result, seconds = _on_one_core(task, args, limit, parent)
    return i, result, seconds


@contextlib.contextmanager
def naming(where: str) -> Iterator[None]:
    """Errors raised in the block name ``where`` (:func:`_named`)."""
    try:
        yield
    except Exception as error:
        named = _named(error, where)
        if named is error:
            raise
        raise named from error


def _named(error: Exception, where: str) -> Exception:
    """``error`` with ``where`` (the item whose task raised it) leading its message: the same
    type, for an error whose one argument is its message; else ``error`` with a note."""
    if len(error.args) == 1 and isinstance(error.args[0], str):
        try:
            named = type(error)(f"{where}: {error.args[0]}")
        except Exception:  # pragma: no cover - a type whose constructor takes more
            pass
        else:
            return named
    if hasattr(error, "add_note"):
        error.add_note(f"raised by the task of {where}")
    return error
