"""The memory limit that guards every explicit (sparse or dense) matrix sparseconv builds.

A 64->64 3x3 layer on 224x224 has 1.8e9 nonzeros (22 GB in CSR): asking for it by mistake must
fail at once with a clear message, not push the machine into swap. Every builder computes the
bytes it will allocate *before* allocating and calls :func:`check_memory`.

The default limit is 4 GiB, or the value (in bytes, ``k``/``M``/``G`` suffixes allowed) of the
environment variable ``SPARSECONV_MEMORY_LIMIT``; change it with :func:`set_memory_limit`.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "MatrixTooLargeError",
    "check_memory",
    "check_sparse_memory",
    "get_memory_limit",
    "set_memory_limit",
]

_DEFAULT = 4 * 2**30
_SUFFIXES = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class MatrixTooLargeError(ValueError, MemoryError):
    """A requested matrix would exceed the memory limit (see :func:`set_memory_limit`).

    Raised by every builder before it allocates; a ``ValueError`` (a bad request) and a
    ``MemoryError``, so either ``except`` clause catches it.

    Examples
    --------
    >>> import numpy as np
    >>> import sparseconv
    >>> old = sparseconv.set_memory_limit(10_000)
    >>> try:
    ...     sparseconv.conv_matrix(np.ones((1, 1, 3, 3)), (1, 64, 64), padding=1)
    ... except sparseconv.MatrixTooLargeError as error:
    ...     print(isinstance(error, MemoryError), "memory limit" in str(error))
    ... finally:
    ...     _ = sparseconv.set_memory_limit(old)
    True True
    """


def _parse(text: str) -> int:
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = _SUFFIXES.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _SUFFIXES else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise ValueError(
            f"SPARSECONV_MEMORY_LIMIT must be a number of bytes such as 8G, got {text!r}"
        ) from None


_limit: int | None = _parse(os.environ["SPARSECONV_MEMORY_LIMIT"]) if os.environ.get(
    "SPARSECONV_MEMORY_LIMIT") else _DEFAULT


def get_memory_limit() -> int | None:
    """The current limit in bytes (``None``: no limit).

    Returns
    -------
    int or None
        The largest matrix, in bytes, that builders may allocate.

    Examples
    --------
    >>> import sparseconv
    >>> sparseconv.get_memory_limit() > 0
    True
    """
    return _limit


def set_memory_limit(nbytes: int | None) -> int | None:
    """Set the largest matrix, in bytes, that builders may allocate; return the old limit.

    Parameters
    ----------
    nbytes : int or None
        The new limit; ``None`` removes it.

    Returns
    -------
    int or None
        The previous limit, to restore it later.

    Raises
    ------
    ValueError
        ``nbytes`` neither ``None`` nor a non-negative int.

    Examples
    --------
    >>> import sparseconv
    >>> old = sparseconv.set_memory_limit(16 * 2**30)
    >>> _ = sparseconv.set_memory_limit(old)
    """
    global _limit
    if nbytes is not None and (not isinstance(nbytes, int) or nbytes < 0):
        raise ValueError(f"nbytes must be a non-negative int or None, got {nbytes!r}")
    old, _limit = _limit, nbytes
    return old


def check_memory(nbytes: int, what: str) -> None:
    """Raise :class:`MatrixTooLargeError` if building ``what`` needs more than the limit."""
    if _limit is not None and nbytes > _limit:
        raise MatrixTooLargeError(
            f"{what} needs {nbytes / 2**30:.2f} GiB, more than the memory limit of "
            f"{_limit / 2**30:.2f} GiB; use the matrix-free ConvOperator, or raise the limit with "
            "sparseconv.set_memory_limit(nbytes) or SPARSECONV_MEMORY_LIMIT"
        )


def check_sparse_memory(nnz: int, rows: int, dtype, what: str) -> None:
    """:func:`check_memory` for a sparse array of ``nnz`` entries of ``dtype`` and ``rows`` rows.

    Counts the widest intermediate the builders make: COO, or CSR with 64-bit indices.
    """
    check_memory(nnz * (np.dtype(dtype).itemsize + 16) + 8 * (rows + 1), what)
