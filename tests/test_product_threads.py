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
