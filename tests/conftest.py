"""pytest configuration. The oracles and random layers the tests share are in ``_oracles.py``.

Under pytest-xdist (the README's test command runs ``-n auto``: one worker process per core)
each worker keeps its BLAS to one thread, as do the subprocesses the tests start: two workers
with a team of threads each would oversubscribe the cores on the tests that factorize."""

import os

if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = "1"  # for the subprocesses (benchmarks, the CLI)
    threadpool_limits(1)  # this process's BLAS, already loaded: from now on

import pytest  # noqa: E402  (after the thread limit, which must come first)


@pytest.fixture
def memory_limit():
    """``sparseconv.set_memory_limit`` for one test, the old limit restored afterwards
    whatever happens."""
    import sparseconv

    old = sparseconv.get_memory_limit()
    yield sparseconv.set_memory_limit
    sparseconv.set_memory_limit(old)
