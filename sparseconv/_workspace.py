"""Large scratch arrays reused within one computation, and given back to the system after it.

A certificate builds the same large temporaries over and over: an exact section factorizes
one banded Gram matrix per frequency, each hundreds of megabytes for 512 channels. A fresh
array that large is mapped page by page on its first write, and freed it goes back to the
system. On a virtual machine that hands freed memory back to its host, the next fresh array
is slower still to map: measured on this project's VM, 1 to 4 s per GiB touched for the first
time, against 0.2 s per GiB where the pages stay mapped. One section of a 512 -> 512 3x3 layer
on 7x7 touched 1.3 GiB that way.

So an array borrowed here (:func:`borrow`) and given back (:func:`give_back`) is kept for the
next borrower of a size it can hold, as long as some computation has declared that it reuses
memory (:func:`reusing`, entered by ``spectral_norm`` around its work). When the last such
computation ends, the kept arrays are dropped: nothing outlives the call. Outside one,
:func:`borrow` allocates and :func:`give_back` drops. A borrower that needs more than every
kept array holds drops those smaller ones first, so what is kept never exceeds the most the
computation held at once. Thread-safe: a thread pool's tasks borrow concurrently, each its own
array.
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
    nbytes = max(math.prod(shape) * dtype.itemsize, 1)
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
