"""Large scratch arrays reused within one computation, and given back to the system after it.

A certificate builds the same large temporaries over and over: an exact section factorizes
one banded Gram matrix per frequency, 88 MB for 512 channels on 7 positions. A fresh array
that large is mapped page by page on its first write, and freed it goes back to the system.
On this project's VM (whose kernel reports freed memory to its host: the likely cause) memory
touched for the first time in a while cost up to 14 s per GiB in numpy's huge pages and
0.6-0.8 s per GiB in small pages, against 0.2 s per GiB for pages still mapped. One section of
a 512 -> 512 3x3 layer on 7x7 touched 1.3 GiB that way before this module.

So an array borrowed here (:func:`borrow`) and given back (:func:`give_back`) is kept for the
next borrower of a size it can hold, as long as some computation has declared that it reuses
memory (:func:`reusing`, entered around each exact section and each whole-Gram certificate,
so that the next stage finds the memory limit as free as before). When the last such
computation ends (in any thread), the kept arrays are dropped. Outside one,
:func:`borrow` allocates and :func:`give_back` drops. A borrower that needs more than every
kept array holds drops those smaller ones first, so what is kept never exceeds the most the
computation held at once. Thread-safe: a thread pool's tasks borrow concurrently, each its own
array.

The operators' products keep scratch of their own (:mod:`sparseconv._products`): at most 64 MB
per thread, for the thread's life, as products repeat with no end in sight. This module is for
larger arrays whose use has one: a section, a certificate.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np

__all__ = ["borrow", "give_back", "reusing"]

_lock = threading.Lock()
_kept: list[np.ndarray] = []  # byte buffers given back, not yet borrowed again
_users = 0  # computations within reusing()


@contextlib.contextmanager
def reusing() -> Iterator[None]:
    """Within the block (and any nested or concurrent one), arrays given back are kept for
    reuse; when the last block ends, they are dropped."""
    global _users
    with _lock:
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _kept.clear()


def borrow(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialized C-ordered array: a kept buffer that holds it, if any, else a new one."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes == 0:
        return np.empty(shape, dtype)
    buffer = None
    with _lock:
        fitting = [i for i, b in enumerate(_kept) if b.nbytes >= nbytes]
        if fitting:
            buffer = _kept.pop(min(fitting, key=lambda i: _kept[i].nbytes))
        else:  # none holds it: the smaller ones would only add to the peak
            _kept.clear()
    if buffer is None:
        buffer = np.empty(nbytes, np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


def give_back(array: np.ndarray | None) -> None:
    """Return an array from :func:`borrow` (``None``: nothing); it must not be used after."""
    if array is None:
        return
    buffer = array
    while isinstance(buffer.base, np.ndarray):  # the byte buffer under the views borrow made
        buffer = buffer.base
    with _lock:
        if _users > 0 and not any(kept is buffer for kept in _kept):
            _kept.append(buffer)
