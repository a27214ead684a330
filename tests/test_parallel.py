"""executor=: the same numbers from a process pool and a Dask cluster; failures named."""

from __future__ import annotations

import pickle
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from sparseconv import (
    _parallel,
    _symbol,
    eigenvalues,
    frequency_map,
    singular_values,
    spectral_norm,
    symbol,
)
from sparseconv._parallel import map_chunks, one_blas_thread

PERIODIC = dict(padding=None, padding_mode="circular")


class SerialExecutor(Executor):
    """Runs each task at submit, after a pickle round trip, as a remote worker would."""

    def __init__(self):
        self.tasks = 0

    def submit(self, fn, /, *args, **kwargs):
        fn, args = pickle.loads(pickle.dumps((fn, args)))
        future: Future = Future()
        self.tasks += 1
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # the caller sees it through the future, as from a pool
            future.set_exception(error)
        return future


def calls(executor):
    """Every executor-aware public function on small layers, serially comparable."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 3, 3))
    square = rng.standard_normal((4, 4, 3, 3))
    zero_padded = rng.standard_normal((4, 4, 3, 3)) / 6
    return [
        singular_values(w, (4, 12, 10), stride=(2, 1), executor=executor, **PERIODIC),
        eigenvalues(square, (4, 8, 8), executor=executor, **PERIODIC),
        symbol(w, (8, 6), stride=(2, 1), executor=executor),
        frequency_map(w, (8, 6), dilation=2, executor=executor),
        np.array([spectral_norm(zero_padded, (4, 40, 40), padding=1, method=method,
                                executor=executor).upper for method in ("bounds", "upper")]),
    ]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of a few frequencies, so that these small layers make many tasks."""
    monkeypatch.setattr(_symbol, "_CHUNK_BYTES", 4096)


def assert_same(serial, parallel):
    for a, b in zip(serial, parallel, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max(), np.abs(a - b).max()


def test_any_executor_gives_the_serial_numbers_in_the_serial_order():
    serial = calls(SerialExecutor())  # picklable tasks, one at a time
    with ThreadPoolExecutor(3) as threads:
        assert_same(serial, calls(threads))
    assert_same(serial, calls(None))  # the default thread pool


def test_a_process_pool():
    with ProcessPoolExecutor(2) as pool:
        w = np.random.default_rng(3).standard_normal((8, 8, 3, 3))
        parallel = singular_values(w, (8, 16, 16), executor=pool, **PERIODIC)
        norm = spectral_norm(w / 9, (8, 24, 24), padding=1, executor=pool, method="upper")
    assert_same([singular_values(w, (8, 16, 16), executor=SerialExecutor(), **PERIODIC)],
                [parallel])
    assert norm.upper == spectral_norm(w / 9, (8, 24, 24), padding=1, method="upper").upper


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_a_dask_cluster(dask_client):
    w = np.random.default_rng(4).standard_normal((4, 4, 3, 3))
    executor = dask_client.get_executor()
    parallel = [singular_values(w, (4, 12, 12), executor=executor, **PERIODIC),
                frequency_map(w, (12, 12), executor=executor)]
    serial = [singular_values(w, (4, 12, 12), **PERIODIC), frequency_map(w, (12, 12))]
    assert_same(serial, parallel)


def fails_on_the_second_chunk(value, chunk):
    if chunk[0] == 2:
        raise ArithmeticError("no convergence")
    return value + chunk


def test_a_failed_task_is_raised_naming_its_chunk():
    chunks = [np.array([0, 1]), np.array([2, 3])]
    for executor in (None, SerialExecutor()):
        with pytest.raises(RuntimeError, match=r"the test: the task for chunk 1 failed: "
                                               r"ArithmeticError\('no convergence'\)") as caught:
            map_chunks(fails_on_the_second_chunk, (10,), chunks, executor=executor,
                       what="the test", label=lambda i: f"chunk {i}")
        assert isinstance(caught.value.__cause__, ArithmeticError)


def test_progress_is_reported_per_chunk():
    seen = []
    w = np.random.default_rng(5).standard_normal((4, 4, 3, 3))
    singular_values(w, (4, 16, 16), progress=lambda done, total: seen.append((done, total)),
                    **PERIODIC)
    total = seen[-1][1]
    assert total > 1 and seen == [(i + 1, total) for i in range(total)]


@pytest.mark.parametrize("call", [
    lambda w, progress: singular_values(w, (4, 4, 4), progress=progress, **PERIODIC),
    lambda w, progress: eigenvalues(w, (4, 4, 4), progress=progress, **PERIODIC),
    lambda w, progress: symbol(w, (4, 4), progress=progress),
    lambda w, progress: map_chunks(np.add, (1,), [np.arange(2)], executor=None, what="one",
                                   progress=progress),
])
def test_progress_is_reported_for_work_of_one_chunk(call, monkeypatch):
    """(A new user's trial: work that fit one chunk ran without a pool, and without calling
    the progress callback at all.)"""
    monkeypatch.undo()  # the chunks of the library, not small_chunks': one for these layers
    seen = []
    call(np.random.default_rng(6).standard_normal((4, 4, 3, 3)),
         lambda done, total: seen.append((done, total)))
    assert seen == [(1, 1)]


def test_one_blas_thread_is_shared_and_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    with one_blas_thread(), one_blas_thread():
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info())
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before
    assert not _parallel.limited()


def test_frequency_chunks_cover_every_frequency_once_in_order():
    """Whatever the count, step and executor, the chunks concatenate to the frequencies as
    given (numpy's identity is the oracle). A mutant this catches: _parallel.py:
    range(0, count, size) -> range(0, count - 1, size) (a last chunk of frequencies never
    bounded: an upper bound that skips part of the spectrum)."""
    from concurrent.futures import ThreadPoolExecutor

    from sparseconv._parallel import frequency_chunks

    with ThreadPoolExecutor(2) as pool:
        for count in (1, 2, 5, 13, 17, 64, 129, 1000):
            frequencies = np.arange(2 * count).reshape(count, 2)
            for step in (1, 3, 4, 16, 5000):
                for executor in (None, pool):
                    chunks = frequency_chunks(frequencies, step, executor)
                    assert all(len(chunk) for chunk in chunks)
                    np.testing.assert_array_equal(np.concatenate(chunks), frequencies)


def _square_chunk(offset, chunk):
    return chunk ** 2 + offset


def test_map_chunks_returns_each_chunk_s_result_in_the_serial_order():
    """map_chunks on an executor (threads) and in turn: the results are the serial list's,
    in the chunks' order, whatever order the tasks finish in. A mutant this catches:
    _parallel.py: enumerate(futures) -> enumerate(futures[::-1]) (one chunk's result
    attributed to another)."""
    from concurrent.futures import ThreadPoolExecutor

    from sparseconv._parallel import map_chunks

    chunks = [np.arange(i, i + 3) for i in range(0, 21, 3)]
    expected = [_square_chunk(1, c) for c in chunks]
    ticks = []
    with ThreadPoolExecutor(3) as pool:
        for executor in (pool, None):
            got = map_chunks(_square_chunk, (1,), chunks, executor=executor, what="review",
                             progress=lambda d, t: ticks.append((d, t)))
            assert len(got) == len(expected)
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)
    assert ticks[-1] == (len(chunks), len(chunks))
