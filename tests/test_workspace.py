"""Scratch arrays reused within a computation (sparseconv._workspace)."""

from __future__ import annotations

import threading

import numpy as np

from sparseconv import _workspace
from sparseconv._workspace import borrow, give_back, reusing


def test_outside_a_computation_nothing_is_kept():
    a = borrow((100, 3), np.float64)
    give_back(a)
    assert _workspace._kept == []
    assert not np.shares_memory(borrow((100, 3), np.float64), a)


def test_within_one_an_array_given_back_serves_the_next_borrower():
    with reusing():
        a = borrow((1000,), np.complex128)
        assert a.shape == (1000,) and a.dtype == np.complex128 and a.flags.c_contiguous
        give_back(a)
        b = borrow((30, 40), np.float64)  # smaller, another dtype: the same memory
        assert np.shares_memory(a, b) and b.shape == (30, 40) and b.flags.c_contiguous
        c = borrow((30, 40), np.float64)  # b is out: a new array
        assert not np.shares_memory(b, c)
        give_back(b)
        give_back(c)
        assert len(_workspace._kept) == 2
        big = borrow((10**5,), np.float64)  # larger than both: they are dropped, not kept
        assert _workspace._kept == []
        give_back(big)
        give_back(big)  # twice by mistake: kept once
        assert len(_workspace._kept) == 1
    assert _workspace._kept == []  # the last computation ended: dropped


def test_nested_and_concurrent_computations_keep_until_the_last_ends():
    entered, leave = threading.Event(), threading.Event()

    def other():
        with reusing():
            entered.set()
            leave.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    entered.wait(5)
    with reusing():
        give_back(borrow((10,), np.float64))
    assert len(_workspace._kept) == 1  # the other computation still runs
    leave.set()
    thread.join()
    assert _workspace._kept == []


def test_fortran_order_views_of_a_borrowed_array_go_back_whole():
    with reusing():
        a = borrow((6, 4), np.float64)
        give_back(a.T)  # a view of it, as the band's LAPACK order is
        assert np.shares_memory(borrow((24,), np.float64), a)


def test_an_empty_array_is_borrowed_as_such():
    with reusing():
        a = borrow((0, 3), np.float64)
        assert a.shape == (0, 3) and a.dtype == np.float64
        give_back(a)
