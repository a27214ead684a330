"""The memory limit that guards every explicit (sparse or dense) matrix sparseconv builds.

A 64->64 3x3 layer on 224x224 has 1.8e9 nonzeros (22 GB in CSR): asking for it by mistake must
fail at once with a clear message, not push the machine into swap. Every builder computes the
bytes it will allocate *before* allocating and calls :func:`check_memory`.

The default limit is 4 GiB. The environment variable ``SPARSECONV_MEMORY_LIMIT``, read once,
when the limit is first needed, replaces it: a number of bytes, optionally with a binary suffix
``k``, ``M``, ``G`` or ``T`` (any case, 1k = 1024, optionally followed by ``B`` or ``iB``; a
decimal fraction only with a suffix, as in ``1.5G``), or ``none`` / ``unlimited`` for no limit.
Any other value (``inf``, ``-1``, ``1e9``) is ignored with a ``RuntimeWarning`` naming the
variable and its value, so that a typo in the environment never makes sparseconv fail; the
warning comes at the first line that needs the limit (the command line shows it as its own
warning, as ``import sparseconv`` ran before it could). :func:`set_memory_limit` changes the
limit at run time.
"""

from __future__ import annotations

import os
import re
import warnings
from decimal import Decimal

import numpy as np

from ._caller import outside_level
from ._validation import is_int

__all__ = [
    "USE_OPERATOR",
    "USE_TRANSPOSE_OPERATOR",
    "fits",
    "DEFAULT_LIMIT",
    "MatrixTooLargeError",
    "check_memory",
    "check_sparse_memory",
    "format_bytes",
    "get_memory_limit",
    "parse_limit",
    "set_memory_limit",
]

DEFAULT_LIMIT = 4 * 2**30
_SUFFIXES = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class MatrixTooLargeError(ValueError, MemoryError):
    """A requested matrix would exceed the memory limit (see :func:`set_memory_limit`).

    Raised by every builder before it allocates; a ``ValueError`` (a bad request) and a
    ``MemoryError``, so either ``except`` clause catches it.

    Parameters
    ----------
    message : str
        What was refused, and why.
    needed : int, optional
        The bytes the request would need, where the raiser sized it.

    Attributes
    ----------
    needed : int or None
        ``needed`` as given (a limit at least this large lets the request run).

    Examples
    --------
    >>> import numpy as np
    >>> import sparseconv
    >>> old = sparseconv.set_memory_limit(10_000)
    >>> try:
    ...     sparseconv.conv_matrix(np.ones((1, 1, 3, 3)), (1, 64, 64), padding=1)
    ... except sparseconv.MatrixTooLargeError as error:
    ...     print(isinstance(error, MemoryError), error.needed > 10_000)
    ... finally:
    ...     _ = sparseconv.set_memory_limit(old)
    True True
    """

    def __init__(self, message: str, needed: int | None = None) -> None:
        super().__init__(message)
        self.needed = needed


def reworded(exc: Exception, message: str) -> Exception:
    """An exception of ``exc``'s type with ``message`` (the raiser's context added), a
    :class:`MatrixTooLargeError`'s ``needed`` kept (the command line advises a limit that
    holds it: a new user's trial was offered 16G for 54 GiB)."""
    new = type(exc)(message)
    if isinstance(exc, MatrixTooLargeError) and isinstance(new, MatrixTooLargeError):
        new.needed = exc.needed
    return new


_VARIABLE = "SPARSECONV_MEMORY_LIMIT"
# digits, a fraction only before a suffix, then k/M/G/T optionally followed by B or iB
_GRAMMAR = re.compile(r"([0-9]+)(?:([kmgt])(?:i?b)?|(\.[0-9]+)([kmgt])(?:i?b)?)?")
_UNLIMITED = ("none", "unlimited")


def format_bytes(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that keeps it at least 1; beyond a million EiB,
    in powers of ten (a new user's trial: a 40-digit figure of EiB).

    Examples
    --------
    >>> format_bytes(1000), format_bytes(1536), format_bytes(4 * 2**30), format_bytes(2**70)
    ('1000 B', '1.5 KiB', '4.0 GiB', '1024.0 EiB')
    >>> format_bytes(2**160)
    '1.27e+30 EiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} EiB" if nbytes < 1e6 else f"{nbytes:.3g} EiB"


def parse_limit(text: str, name: str = _VARIABLE) -> int | None:
    """The limit ``SPARSECONV_MEMORY_LIMIT=text`` asks for, in bytes (``None``: no limit);
    ``name``: what an error calls ``text``.

    Raises
    ------
    ValueError
        ``text`` outside the grammar of the module docstring; the message names the value.

    Examples
    --------
    >>> parse_limit("8G"), parse_limit("1.5k"), parse_limit("none")
    (8589934592, 1536, None)
    """
    value = text.strip().lower()
    if value in _UNLIMITED:
        return None
    match = _GRAMMAR.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{name} must be a number of bytes with an optional k/M/G/T suffix (such as "
            f"8G) or 'none', got {text.strip()!r}"
        )
    whole, suffix, fraction, fraction_suffix = match.groups()
    return int(Decimal(whole + (fraction or "")) * _SUFFIXES.get(suffix or fraction_suffix, 1))


def _limit_from_environment(quiet: bool = False) -> int | None:
    text = os.environ.get(_VARIABLE, "")
    if not text.strip():
        return DEFAULT_LIMIT
    try:
        return parse_limit(text, "it")
    except ValueError as exc:
        if quiet:
            return DEFAULT_LIMIT
        # one line at the caller's line (a new user's trial: the
        # warning named the variable twice and showed this module's source line)
        warnings.warn(f"ignoring {_VARIABLE}={text!r}: {exc}; the memory limit stays at the "
                      f"default {format_bytes(DEFAULT_LIMIT)}", RuntimeWarning,
                      stacklevel=outside_level())
        return DEFAULT_LIMIT


_UNREAD = -1  # (the variable is read when the limit is first needed: a warning at import
# time came before the command line could say it in its own words; a trial)
_limit: int | None = _UNREAD


def _current(quiet: bool = False) -> int | None:
    """The limit, read from the environment the first time (``quiet``: a bad value
    unsaid, where the caller replaces the limit anyway)."""
    global _limit
    if _limit == _UNREAD:
        _limit = _limit_from_environment(quiet)
    return _limit


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
    return _current()


def set_memory_limit(nbytes: int | str | None) -> int | None:
    """Set the largest matrix, in bytes, that builders may allocate; return the old limit.

    Parameters
    ----------
    nbytes : int, str or None
        The new limit; ``None`` removes it. A string as ``SPARSECONV_MEMORY_LIMIT`` takes it:
        ``"8G"``, ``"1.5GiB"``, ``"512M"`` (binary units), ``"none"``.

    Returns
    -------
    int or None
        The previous limit, to restore it later.

    Raises
    ------
    TypeError
        ``nbytes`` neither ``None``, an int nor a string (a bool or a float, say).
    ValueError
        ``nbytes`` negative, or a string outside that grammar.

    Examples
    --------
    >>> import sparseconv
    >>> old = sparseconv.set_memory_limit(16 * 2**30)
    >>> sparseconv.set_memory_limit("8G") == 16 * 2**30, sparseconv.get_memory_limit() == 8 * 2**30
    (True, True)
    >>> _ = sparseconv.set_memory_limit(old)
    """
    global _limit
    if isinstance(nbytes, str):
        nbytes = parse_limit(nbytes, "nbytes")
    if nbytes is not None and not is_int(nbytes):
        raise TypeError(f"nbytes must be a non-negative int, a string such as '8G', or None, "
                        f"got {nbytes!r} of type {type(nbytes).__name__}")
    if nbytes is not None and nbytes < 0:
        raise ValueError(f"nbytes must be a non-negative int, a string such as '8G', or None, "
                         f"got {nbytes!r}")
    # (quiet: the limit is replaced; a review: each of a report's workers, given the
    # caller's limit, warned that the environment's bad value left the default in place)
    old, _limit = _current(quiet=True), None if nbytes is None else int(nbytes)
    return old


#: The advice for an explicit matrix that does not fit (a transposed layer's: its own operator;
#: a selection or pooling matrix has none to suggest, a trial found).
USE_OPERATOR = "use the matrix-free ConvOperator"
USE_TRANSPOSE_OPERATOR = "use the matrix-free ConvTransposeOperator"


def fits(nbytes: int) -> bool:
    """Whether ``nbytes`` fit the memory limit (for optional stages, skipped when they don't)."""
    limit = _current()
    return limit is None or nbytes <= limit


def check_memory(nbytes: int, what: str, hint: str | None = None) -> None:
    """Raise :class:`MatrixTooLargeError` if building ``what`` needs more than the limit.

    ``hint`` (e.g. ``USE_OPERATOR``) is said before the advice to raise the limit.
    """
    limit = _current()
    if limit is not None and nbytes > limit:
        advice = f"{hint}, or raise" if hint else "raise"
        raise MatrixTooLargeError(
            f"{what} would need {format_bytes(nbytes)}, more than the memory limit of "
            f"{format_bytes(limit)}; {advice} the limit with sparseconv.set_memory_limit(nbytes) "
            "or SPARSECONV_MEMORY_LIMIT", needed=nbytes
        )


def check_sparse_memory(nnz: int, rows: int, dtype, what: str,
                        hint: str | None = None) -> None:
    """:func:`check_memory` for a sparse array of ``nnz`` entries of ``dtype`` and ``rows`` rows.

    Counts the widest intermediate the builders make: COO, or CSR with 64-bit indices.
    ``hint``: the caller's advice, if it has a matrix-free way (a convolution's
    ``USE_OPERATOR``); an interpolation or pooling matrix has none, only a larger limit.
    """
    check_memory(nnz * (np.dtype(dtype).itemsize + 16) + 8 * (rows + 1), what, hint)
