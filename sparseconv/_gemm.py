"""BLAS ``gemm`` with leading dimensions and ``beta``, which numpy's ``matmul`` does not offer.

The implicit GEMM of :mod:`sparseconv._products` multiplies each kernel tap's weight matrix by
a shifted view of the padded input (rows a channel apart, far more than their length) and
adds every tap's product into one output. ``numpy.matmul`` takes such strided operands but
always overwrites its result; scipy's f2py wrappers (:func:`scipy.linalg.blas.dgemm`)
accumulate but copy any operand that is not contiguous. scipy also exports the BLAS it links
as Cython function pointers (:mod:`scipy.linalg.cython_blas`, 32-bit integers), which take
both; they are called here through :mod:`ctypes`, which releases the GIL during the call.

If a scipy build does not export them, or exports them with 64-bit integers (a build
option), :func:`gemm` returns ``None`` and the products keep to im2col. The callers check
their operands' shapes, contiguity and alignment before passing raw addresses.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import numpy as np

__all__ = ["INT_MAX", "gemm"]

_NAMES = {np.dtype(np.float32): "sgemm", np.dtype(np.float64): "dgemm",
          np.dtype(np.complex64): "cgemm", np.dtype(np.complex128): "zgemm"}


#: The start of the Cython signature the ctypes prototype below assumes: 32-bit integers
#: (scipy can be built with 64-bit ones; such a build keeps to im2col).
_SIGNATURE = b"void (char *, char *, int *, int *, int *, "


@functools.cache
def _pointer(name: str) -> Callable | None:
    """The Fortran-convention ``?gemm`` scipy links, as a ctypes function, or ``None``."""
    try:
        from scipy.linalg import cython_blas

        capsule = cython_blas.__pyx_capi__[name]
        # private prototypes: ctypes.pythonapi's own function objects are shared process-wide
        get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
            ("PyCapsule_GetName", ctypes.pythonapi))
        get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", ctypes.pythonapi))
        signature = get_name(capsule)
        if not signature or not signature.startswith(_SIGNATURE):
            return None  # not the 32-bit interface the prototype declares
        address = get_pointer(capsule, signature)
    except Exception:  # pragma: no cover - a scipy without its Cython BLAS
        return None
    if not address:  # pragma: no cover
        return None
    p_int, p_void = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
    prototype = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, p_int, p_int, p_int,
                                 p_void, p_void, p_int, p_void, p_int, p_void, p_void, p_int)
    return prototype(address)


#: The largest size or leading dimension the 32-bit interface takes.
INT_MAX = 2**31 - 1


class Gemm:
    """``C = A @ B + beta * C`` in column-major terms, on raw addresses of ``dtype`` arrays.

    ``A`` is ``m x k`` with columns ``lda`` apart, ``B`` is ``k x n`` with columns ``ldb``
    apart, ``C`` is ``m x n`` with columns ``ldc`` apart (for C-ordered arrays: ``A`` is the
    transpose of a ``k x m`` array whose rows are ``lda`` items apart, and so on). ``beta``
    is 0 or 1. The caller guarantees that every address it passes is inside its arrays,
    aligned to the item size, and that sizes and leading dimensions are at most
    :data:`INT_MAX` (checked again here).
    """

    def __init__(self, dtype: np.dtype, function: Callable):
        self.dtype, self._function = dtype, function
        self.itemsize = dtype.itemsize
        self._one, self._zero = np.ones(1, dtype), np.zeros(1, dtype)

    def __call__(self, m: int, n: int, k: int, a: int, lda: int, b: int, ldb: int, c: int,
                 ldc: int, beta: int) -> None:
        if min(m, n, k) <= 0:
            raise ValueError(f"gemm needs positive sizes, got m={m}, n={n}, k={k}")
        if max(m, n, k, lda, ldb, ldc) > INT_MAX or lda < m or ldb < k or ldc < m:
            raise ValueError(f"gemm sizes out of range: m={m}, n={n}, k={k}, lda={lda}, "
                             f"ldb={ldb}, ldc={ldc}")
        c_int = ctypes.c_int
        self._function(b"N", b"N", c_int(m), c_int(n), c_int(k), self._one.ctypes.data,
                       a, c_int(lda), b, c_int(ldb),
                       (self._one if beta else self._zero).ctypes.data, c, c_int(ldc))


@functools.cache
def gemm(dtype) -> Gemm | None:
    """The accumulating ``gemm`` for ``dtype`` (float32/64, complex64/128, native byte order),
    or ``None`` when there is none."""
    dtype = np.dtype(dtype)
    if dtype not in _NAMES or not dtype.isnative:
        return None
    function = _pointer(_NAMES[dtype])
    return None if function is None else Gemm(dtype, function)
