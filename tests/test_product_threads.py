"""A product split across threads by rows or channels: the same numbers as PyTorch and the
matrix, every output computed once, errors raised, the BLAS limit restored."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sparseconv import (
    ConvOperator,
    ConvTransposeOperator,
    _parallel,
    _product_threads,
    conv_matrix,
    conv_transpose_matrix,
)
from sparseconv._product_threads import parts, run_parts, threads_for

from ._oracles import (
    assert_close,
    random_array,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch_conv,
)


@pytest.mark.parametrize("seed", range(200))
def test_parts_cover_every_output_once(seed):
    """Every (group, row, channel) in exactly one task, no task over ``chunk`` rows when cut
    by channels (the rows are cut finer, never coarser, when cut by rows), at most ``threads``
    parts, none empty."""
    rng = np.random.default_rng(seed)
    groups, rows, channels = (int(v) for v in rng.integers(1, 9, 3))
    chunk, threads = int(rng.integers(1, rows + 2)), int(rng.integers(1, 6))
    by_channels = bool(rng.integers(2))
    found = parts(groups, rows, chunk, channels, threads, by_channels=by_channels)
    config = (groups, rows, chunk, channels, threads, by_channels)
    assert 1 <= len(found) <= threads and all(found), config
    covered = [(g, r, c) for part in found for g, r0, r1, c0, c1 in part
               for r in range(r0, r1) for c in range(c0, c1)]
    assert sorted(covered) == list(itertools.product(range(groups), range(rows),
                                                     range(channels))), config
    assert all(r1 - r0 <= chunk for part in found for _, r0, r1, _, _ in part), config


@pytest.fixture
def split_everywhere(monkeypatch):
    """Three threads for every product, however small; returns the part counts it ran."""
    ran = []
    monkeypatch.setattr(_product_threads, "MIN_SPLIT_FLOPS", 0)
    monkeypatch.setattr(_product_threads, "MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(_parallel, "cpu_count", lambda: 3)
    monkeypatch.setattr(_parallel, "blas_threads", lambda: 3)

    from sparseconv import _products

    def spy(task, cut):
        ran.append(len(cut))
        run_parts(task, cut)

    monkeypatch.setattr(_products, "run_parts", spy)
    return ran


@requires_torch
@pytest.mark.parametrize("seed", range(60))
def test_split_products_match_torch_and_the_matrix(seed, split_everywhere):
    """Random layers of every rank, padding, stride, dilation and groups, cut three ways (by
    groups, rows or channels): the forward against PyTorch, the adjoint against the matrix."""
    rng = np.random.default_rng(30_000 + seed)
    dtype = (np.float64, np.float32)[seed % 2]
    while True:  # two output rows or more: the forward then splits, by rows or channels
        layer = random_layer(rng, ndim=1 + seed % 3, max_size=9 - 2 * (seed % 3),
                             max_channels=5)
        op = ConvOperator(layer.weight.astype(dtype), layer.input_shape, **layer.kwargs)
        if op.output_shape[1] > 1:
            break
    batch = 1 + seed % 4
    x = random_array(rng, (batch, *layer.input_shape))
    y = torch_conv(x, layer.weight.astype(dtype).astype(np.float64), **layer.kwargs)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(op.matmat(x.reshape(batch, -1).T.astype(dtype)), y.reshape(batch, -1).T,
                 layer, rtol=rtol)
    A = conv_matrix(layer.weight.astype(dtype).astype(np.float64), layer.input_shape,
                    **layer.kwargs)
    Y = random_array(rng, (op.shape[0], batch))
    assert_close(op.rmatmat(Y.astype(dtype)), A.T @ Y, layer, rtol=rtol)
    assert max(split_everywhere) > 1, layer  # the forward, at least, was split


@pytest.mark.parametrize("seed", range(20))
def test_split_transposed_products_match_the_matrix(seed, split_everywhere):
    w, input_shape, kwargs = random_transpose_layer(np.random.default_rng(31_000 + seed),
                                                    max_size=7)
    op = ConvTransposeOperator(w, input_shape, **kwargs)
    T = conv_transpose_matrix(w, input_shape, **kwargs)
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((op.shape[1], 3)), rng.standard_normal((op.shape[0], 3))
    assert_close(op.matmat(X), T @ X, kwargs)
    assert_close(op.rmatmat(Y), T.T @ Y, kwargs)


def test_a_part_that_fails_raises_after_every_part_is_done():
    done = []

    def task(g, r0, r1, c0, c1):
        if g == 1:
            raise ZeroDivisionError("part 1")
        done.append(g)

    cut = [[(g, 0, 1, 0, 1)] for g in range(3)]
    with pytest.raises(ZeroDivisionError, match="part 1"):
        run_parts(task, cut)
    assert sorted(done) == [0, 2]


def test_the_blas_limit_is_restored_and_holds_during_the_parts():
    before = _parallel.blas_threads()
    seen = []
    run_parts(lambda *t: seen.append(_parallel.blas_threads()), [[(0, 0, 1, 0, 1)]] * 2)
    assert seen == [1, 1]
    assert _parallel.blas_threads() == before


def test_no_split_inside_one_blas_thread_or_for_small_work(monkeypatch):
    monkeypatch.setattr(_parallel, "cpu_count", lambda: 4)
    monkeypatch.setattr(_parallel, "blas_threads", lambda: 4)
    large = (1e12, 2**30)
    assert threads_for(*large) == 4
    assert threads_for(_product_threads.MIN_SPLIT_FLOPS / 2, 2**30) == 1
    assert threads_for(1e12, _product_threads.MIN_SPLIT_BYTES // 2) == 1
    with _parallel.one_blas_thread():
        assert threads_for(*large) == 1
    monkeypatch.setattr(_parallel, "blas_threads", lambda: 1)  # a caller's threadpool_limits
    assert threads_for(*large) == 1


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="no affinity")
def test_the_callers_cores_are_restored_and_the_parts_run_on_other_cores():
    """The calling thread is held to its core during the parts only; each worker runs on a
    core the caller does not (where the process has two or more)."""
    import os

    allowed = os.sched_getaffinity(0)
    where = []

    def task(g, r0, r1, c0, c1):
        where.append((g, os.sched_getaffinity(0)))
        if g == 2:
            raise ValueError("after the others")

    with pytest.raises(ValueError, match="after the others"):
        run_parts(task, [[(g, 0, 1, 0, 1)] for g in range(3)])
    assert os.sched_getaffinity(0) == allowed
    cores = dict(where)
    if len(allowed) > 1:
        assert all(len(cores[g]) == 1 for g in range(3))
        assert cores[0].isdisjoint(cores[1]) and cores[0].isdisjoint(cores[2])


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="no affinity")
def test_a_caller_held_to_one_core_neither_splits_nor_pins_workers_elsewhere():
    """A thread the user holds to one core: no split, and parts run anyway (run_parts called
    directly) keep the workers on that core (a review: a worker pinned by an earlier product
    stayed on a core the caller had since excluded)."""
    import os
    import threading

    one = {min(os.sched_getaffinity(0))}
    seen = {}

    def restricted():
        os.sched_setaffinity(0, one)
        seen["cores"] = _parallel.cpu_count()
        seen["threads"] = threads_for(1e12, 2**30)
        run_parts(lambda g, *_: seen.setdefault(g, os.sched_getaffinity(0)),
                  [[(g, 0, 1, 0, 1)] for g in range(2)])

    thread = threading.Thread(target=restricted)
    thread.start()
    thread.join()
    assert seen["cores"] == 1 and seen["threads"] == 1
    assert seen[0] == one and seen[1] == one


def _in_child(check) -> int:
    """Fork; the child exits 0 if ``check()`` is true (and runs nothing else); the parent
    returns the child's exit code."""
    import os
    import warnings

    with warnings.catch_warnings():  # (Python 3.12 warns of a fork beside other threads)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 2  # an error in the child: never back into pytest
        try:
            code = 0 if check() else 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork")
def test_a_child_forked_while_another_thread_holds_one_blas_thread_starts_unlimited():
    """The child inherits the parent's limit but not the thread that would lift it (a review:
    every product of such a child ran on one BLAS thread); it starts with neither."""
    import threading

    before = _parallel.blas_threads()
    held, done = threading.Event(), threading.Event()

    def hold():
        with _parallel.one_blas_thread():
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30) and _parallel.limited()
        code = _in_child(lambda: not _parallel.limited()
                         and _parallel.blas_threads() == before)
    finally:
        done.set()
        holder.join()
    assert code == 0 and not _parallel.limited()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork")
def test_a_child_forked_inside_its_own_block_leaves_it_there():
    """Forked by the thread that holds the limit, the child keeps it until that thread, its
    own, leaves the block; then the limit is lifted."""
    import os

    before = _parallel.blas_threads()
    pid = -1
    try:
        with _parallel.one_blas_thread():
            pid = os.fork()
            inside = _parallel.limited() and _parallel.blas_threads() == 1
        if pid == 0:
            lifted = not _parallel.limited() and _parallel.blas_threads() == before
            os._exit(0 if inside and lifted else 1)
    finally:
        if pid == 0:
            os._exit(2)  # whatever went wrong in the child, never back into pytest
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert _parallel.blas_threads() == before


def test_a_larger_pool_leaves_the_smaller_one_working():
    """A caller that took the pool before another caller needed a larger one can still submit
    to it (a review: the smaller one was shut down under it)."""
    small = _product_threads._pool(1)
    _product_threads._pools.pop(__import__("os").getpid())
    large = _product_threads._pool(2)
    assert small.submit(lambda: 3).result() == 3 and large.submit(lambda: 4).result() == 4


def test_the_thread_pools_are_looked_for_again_after_a_while(monkeypatch):
    """A BLAS loaded with ctypes imports no module; the controller is renewed after
    _RESCAN_SECONDS anyway (a review)."""
    first = _parallel._controller()
    assert _parallel._controller() is first
    monkeypatch.setattr(_parallel, "_RESCAN_SECONDS", -1.0)
    assert _parallel._controller() is not first


@requires_torch
def test_forward_bytes_charges_a_chunk_per_part_split_by_channels():
    """64 -> 512 channels with one output row splits by channels: one im2col chunk a part
    (a review: charged by rows, 2.16 MB for a 3.72 MB peak)."""
    import tracemalloc

    from sparseconv._products import forward_bytes

    rng = np.random.default_rng(0)
    op = ConvOperator(rng.standard_normal((512, 64, 3, 3)).astype(np.float32), (64, 3, 64))
    x = rng.standard_normal((op.shape[1], 8)).astype(np.float32)
    op.matmat(x)  # every thread's scratch made once
    from sparseconv import _products

    _products._scratch.__dict__.clear()  # this thread's scratch allocated again, traced
    tracemalloc.start()
    try:
        op.matmat(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= forward_bytes(op.geometry, 8, 4)


# A mutation review of the operators (2026-12-05): each test below failed on a change
# of the code that every other test let pass.


# A mutant this catches: _product_threads.parts -- with as many groups as threads each part takes
# whole groups (documented), and no task covers an empty range of output channels
@pytest.mark.parametrize("groups,channels,threads", [(2, 1, 2), (3, 2, 3), (1, 2, 4), (2, 3, 5)])
def test_parts_whole_groups_and_no_empty_channel_ranges(groups, channels, threads):
    for by_channels in (False, True):
        found = parts(groups, 1, 1, channels, threads, by_channels=by_channels)
        assert all(c1 > c0 and r1 > r0 for part in found for _, r0, r1, c0, c1 in part)
        if groups >= threads:
            for part in found:
                assert all(c0 == 0 and c1 == channels for _, _, _, c0, c1 in part)


# A mutant this catches: parts() with fewer groups than threads cuts the rows into a multiple of
# the parts (ceil(threads / groups) a group), so that every thread gets work where the rows allow
def test_parts_use_every_thread_where_the_rows_allow():
    assert len(parts(2, 4, 4, 1, 3, by_channels=False)) == 3
    assert len(parts(1, 8, 8, 1, 4, by_channels=False)) == 4
