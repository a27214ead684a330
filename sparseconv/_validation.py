"""Validation of the arguments every layer takes, in one place.

One function per kind of argument, each raising ``TypeError`` (wrong kind) or ``ValueError``
(wrong value) with a message that names the argument and the value it got, before anything
is allocated. :class:`sparseconv._geometry.ConvGeometry` and the public functions call these.
Arrays and dtypes are checked in :mod:`sparseconv._validation_arrays`, whose names are
imported here too: every check is reached as ``sparseconv._validation.<name>``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._typing import Layout, ProgressLike
from ._validation_arrays import (
    as_dtype,
    as_weight,
    exact_in,
    first_index,
    held_in,
    inexact_dtype,
    layer_dtype,
    layer_weight,
    result_dtype,
    summable,
)

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = [
    "INDEX_LIMIT",
    "LAYOUTS",
    "PADDING_MODES",
    "PADDING_STRINGS",
    "as_bool",
    "as_dtype",
    "as_weight",
    "check_blocksize",
    "check_layout",
    "exact_in",
    "first_index",
    "held_in",
    "inexact_dtype",
    "int_tuple",
    "is_int",
    "layer_dtype",
    "layer_weight",
    "normalize_padding",
    "periodic_padding_mode",
    "positive_floats",
    "positive_int",
    "result_dtype",
    "spatial_size",
    "summable",
    "transposed_padding_mode",
    "worker_count",
]

#: Padding modes with PyTorch's meaning (``torch.nn.Conv2d(padding_mode=...)``).
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
PADDING_STRINGS = ("valid", "same", "full")
#: Sparse formats the builders return (scipy.sparse's names).
FORMATS = ("csr", "csc", "coo", "bsr")
#: How a ``(C, *spatial)`` array is flattened: C order of ``(C, *spatial)`` (PyTorch's NCHW) or
#: of ``(*spatial, C)`` (NHWC, TensorFlow's default).
LAYOUTS = ("channels_first", "channels_last")
#: The largest integer a size, stride, dilation or padding may take: index arithmetic is int64,
#: and a position plus a padding plus a dilated tap must stay below ``2**63``.
INDEX_LIMIT = 2**60


def is_int(value: object) -> TypeIs[int | np.integer]:
    """An integer (numpy's too), but not a bool.

    Examples
    --------
    >>> import numpy as np
    >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
    (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_sequence(value: object) -> TypeIs[Sequence[Any]]:
    """A sequence of values (a tuple, a list, a range), but not text nor bytes: ``b"\\x02"``
    is a sequence of small ints to Python, and was read as a stride of 2 (a new user's
    trial; PyTorch's ``F.conv2d`` refuses it).

    Examples
    --------
    >>> is_sequence((1, 2)), is_sequence([3]), is_sequence("same"), is_sequence(b"\\x02")
    (True, True, False, False)
    """
    return isinstance(value, Sequence) and not isinstance(
        value, (str, bytes, bytearray, memoryview))


def int_tuple(value, ndim: int, name: str, minimum: int, *,
              broadcast_one: bool = False) -> tuple[int, ...]:
    """Normalize an int or a tuple of ``ndim`` ints, each ``>= minimum`` and ``<= INDEX_LIMIT``.

    ``broadcast_one``: a sequence of one int stands for every axis, as in PyTorch's
    convolution and pooling arguments (``F.conv2d(x, w, stride=(2,))``, whose modules keep
    ``stride=(2,)``: a new user's trial found such a module refused).

    Examples
    --------
    >>> int_tuple(2, 3, "stride", 1), int_tuple((1, 2), 2, "stride", 1)
    ((2, 2, 2), (1, 2))
    >>> int_tuple((2,), 3, "stride", 1, broadcast_one=True)
    (2, 2, 2)
    >>> int_tuple((1, 0), 2, "stride", 1)
    Traceback (most recent call last):
    ...
    ValueError: stride must be a positive integer or a tuple of 2 of them, got (1, 0)
    >>> int_tuple((1, 2, 3), 2, "stride", 1, broadcast_one=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: stride has 3 values for 2 axes: ... 2 of them (or of one, for every axis), ...
    >>> int_tuple(2**63, 2, "stride", 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: stride must be a positive integer at most 2**60 (int64 index arithmetic) ...
    """
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    # (a new user's trial: "groups[0] must be ... or a tuple of 1 of them" read as a 1-tuple)
    tuples = f" or a tuple of {ndim} of them" if ndim > 1 else ""
    if broadcast_one and ndim > 1:  # (a review: stride=(1,) passed, which this did not say)
        tuples = f" or a tuple of {ndim} of them (or of one, for every axis)"
    expected = f"{name} must be {what}{tuples}, got {value!r}"
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value.tolist())  # numpy's integers become Python ints
    if broadcast_one and is_sequence(value) and len(value) == 1 and is_int(value[0]):
        value = value[0]
    if is_int(value):
        values = (int(value),) * ndim
    elif is_sequence(value):
        if len(value) != ndim and all(is_int(v) for v in value):
            # (a new user's trial: stride=(2, 2) of a 1-D layer read "must be a positive
            # integer", not saying the length was the fault)
            # (a second trial: "must be an integer >= 0, got (2, 2) (...)" still led with
            # what was not the fault)
            count = f"{len(value)} value{'' if len(value) == 1 else 's'}"
            raise ValueError(f"{name} has {count} for {ndim} "
                             f"{'axis' if ndim == 1 else 'axes'}: it must be {what}{tuples}, "
                             f"got {value!r}")
        if not all(is_int(v) for v in value):
            raise TypeError(expected)
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(expected)
    if min(values, default=minimum) < minimum:
        raise ValueError(expected)
    _check_index_limit(values, f"{name} must be {what}", tuples.lstrip(), value)
    return values


def _check_index_limit(values, must: str, rest: str, value) -> None:
    """``ValueError`` if an integer is too large for int64 index arithmetic."""
    if max(values, default=0) > INDEX_LIMIT:
        raise ValueError(f"{must} at most 2**60 (int64 index arithmetic)"
                         f"{' ' + rest if rest else ''}, got {value!r}")


def normalize_padding(
    padding, ndim: int, kernel_size: tuple[int, ...], stride: tuple[int, ...],
    dilation: tuple[int, ...], flip: bool = False, strings: bool = True,
) -> tuple[tuple[int, int], ...]:
    """Per-side padding ``((lo, hi), ...)`` from any accepted form.

    Forms: an int (or a tuple of one, as PyTorch); a tuple of ``ndim`` ints (symmetric per
    axis); a tuple of ``ndim`` pairs
    ``(lo, hi)``; ``"valid"`` (none); ``"same"`` (PyTorch's rule: total ``dilation*(k-1)``,
    ``lo = total // 2``, the odd pixel on the high side; mirrored when ``flip``, so that kernel
    element ``(k-1)//2`` is the one aligned with the output as in ``scipy.signal.convolve``);
    ``"full"`` (``dilation*(k-1)`` on both sides). ``strings=False``: the caller takes no
    string (a transposed convolution), and the message offers none.

    Examples
    --------
    >>> normalize_padding("same", 2, (3, 4), (1, 1), (1, 1))
    ((1, 1), (1, 2))
    >>> normalize_padding(((0, 2), 1), 2, (3, 3), (1, 1), (1, 1))
    ((0, 2), (1, 1))
    """
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(
                f"padding must be an int, a tuple, or one of {PADDING_STRINGS}, got {padding!r}"
            )
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "full":
            return tuple((t, t) for t in totals)
        if any(s != 1 for s in stride):
            raise ValueError(
                f"padding='same' is not supported for strided convolutions, got stride={stride}"
            )
        # PyTorch puts the odd pixel on the high side. A flipped (true) convolution mirrors the
        # kernel, so the split mirrors too: either way kernel element (k-1)//2 sits on the output.
        pairs = [(t // 2, t - t // 2) for t in totals]
        return tuple((hi, lo) if flip else (lo, hi) for lo, hi in pairs)

    expected = (
        f"padding must be a non-negative int, a tuple of {ndim} of them" + (
            f", a tuple of {ndim} (lo, hi) pairs, or one of {PADDING_STRINGS}" if strings
            else f" or a tuple of {ndim} (lo, hi) pairs") + f", got {padding!r}"
    )
    if isinstance(padding, np.ndarray) and padding.ndim in (1, 2):
        padding = [tuple(p) if isinstance(p, list) else p for p in padding.tolist()]
    if is_sequence(padding) and len(padding) == 1 and is_int(padding[0]):
        padding = padding[0]  # one int for every axis, as PyTorch's padding=(1,)
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * ndim
    elif is_sequence(padding) and len(padding) == ndim:
        pairs = []
        for p in padding:
            if is_int(p):
                pairs.append((int(p), int(p)))
            elif is_sequence(p) and len(p) == 2 and all(is_int(v) for v in p):
                pairs.append((int(p[0]), int(p[1])))
            else:
                raise TypeError(expected)
        pairs = tuple(pairs)
    elif is_sequence(padding):
        raise ValueError(expected)
    else:
        raise TypeError(expected)
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(expected)
    _check_index_limit([v for pair in pairs for v in pair], "padding must be non-negative",
                       "per side", padding)
    return pairs


def spatial_size(value, name: str) -> tuple[int, ...]:
    """Validate a tuple of positive integer sizes (``input_shape`` and the like).

    Examples
    --------
    >>> spatial_size(5, "input_size"), spatial_size([3, 8, 8], "input_shape")
    ((5,), (3, 8, 8))
    """
    expected = f"{name} must be a tuple of positive integers, got {value!r}"
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value.tolist())  # numpy's integers become Python ints
    if is_int(value):
        value = (value,)
    shape = getattr(value, "shape", None)
    if isinstance(shape, Sequence) and not isinstance(value, Sequence):  # an array or tensor
        # itself (a new user's trial: the input tensor, printed whole in the message)
        raise TypeError(f"{name} must be a tuple of positive integers, got a "
                        f"{type(value).__name__} of shape {tuple(shape)} (the input itself? "
                        "pass its shape without the batch axis: x.shape[1:])")
    if not is_sequence(value):
        raise TypeError(expected)
    if not all(is_int(v) for v in value):
        raise TypeError(expected)
    if not value:
        raise ValueError(f"{name} must be a non-empty tuple of positive integers, got {value!r}")
    if any(v < 1 for v in value):
        raise ValueError(f"{name} must be a tuple of positive integers, got {tuple(value)!r}")
    values = tuple(int(v) for v in value)
    _check_index_limit(values, f"{name} must be a tuple of positive integers", "each", values)
    return values


def positive_int(value, name: str) -> int:
    """``value`` as an int, which must be positive (``groups`` and the like).

    Examples
    --------
    >>> positive_int(0, "groups")
    Traceback (most recent call last):
    ...
    ValueError: groups must be a positive integer, got 0
    """
    if not is_int(value):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _check_index_limit([int(value)], f"{name} must be a positive integer", "", value)
    return int(value)


def worker_count(value, name: str = "workers") -> int:
    """``workers`` as a number of processes, scipy's convention (``scipy.fft``'s ``workers``):
    ``None`` (one), a positive int, or a negative one that wraps around from the cores this
    process may use (its affinity where the system has one, else ``os.cpu_count()``;
    ``-1``: every one of them), never below one.

    Examples
    --------
    >>> worker_count(2)
    2
    >>> import os
    >>> worker_count(-1) == len(os.sched_getaffinity(0))
    True
    """
    from ._parallel import cpu_count  # (a new user's trial under taskset -c 1: "count back

    cores = cpu_count()  # from the 2 cores" of a process that may use one)
    if value is None:
        return 1
    if not is_int(value):
        raise TypeError(f"{name} must be an int or None, got {value!r} of type "
                        f"{type(value).__name__}")
    if value == 0 or value < -cores:
        raise ValueError(f"{name} must be a positive integer, or negative to count back from "
                         f"the {cores} core{'s' if cores != 1 else ''} this process may use "
                         f"(-1: all), got {value!r}")
    return int(value) if value > 0 else cores + 1 + int(value)


def workers_or_map(value, name: str = "workers") -> int | Callable:
    """``workers`` as :func:`worker_count` reads it, or a map-like callable kept as it is
    (scipy's other convention, ``scipy.optimize.differential_evolution``'s ``workers``:
    ``pool.map``, a Dask client's ``get_executor().map``); a
    ``concurrent.futures.Executor`` is taken as its ``map``.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> workers_or_map(2), workers_or_map(map) is map
    (2, True)
    >>> with ThreadPoolExecutor(2) as pool:
    ...     list(workers_or_map(pool)(abs, [-1, -2]))
    [1, 2]
    >>> workers_or_map(len)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: workers must be map-like, called as workers(function, iterable) like the ...
    """
    if isinstance(value, Executor):
        return value.map
    if isinstance(value, type) and issubclass(value, Executor):
        raise TypeError(f"{name} must be an Executor, not its class: pass "
                        f"{value.__name__}(...), got the class {value.__name__}")
    if callable(value):  # (the built-in map, a class, too)
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):  # a built-in without one (map): its call will tell
            return value
        try:
            signature.bind(abs, [])
        except TypeError:
            raise TypeError(f"{name} must be map-like, called as {name}(function, iterable) "
                            f"like the built-in map or pool.map, got {value!r}, whose "
                            f"signature {signature} takes no such call") from None
        return value
    if value is not None and not is_int(value):
        raise TypeError(f"{name} must be an int, None or a map-like callable (pool.map, a "
                        f"concurrent.futures.Executor or its map), got {value!r} of type "
                        f"{type(value).__name__}")
    return worker_count(value, name)


def positive_floats(value, ndim: int, name: str) -> tuple[float, ...]:
    """Normalize a positive finite number or a tuple of ``ndim`` of them (``scale_factor``).

    Examples
    --------
    >>> positive_floats(2, 2, "scale_factor"), positive_floats((1.5, 3), 2, "scale_factor")
    ((2.0, 2.0), (1.5, 3.0))
    >>> positive_floats((1.5, 0.0), 2, "scale_factor")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: scale_factor must be a positive finite number or a tuple of 2 ..., got (1.5, 0.0)
    """
    expected = (f"{name} must be a positive finite number or a tuple of {ndim} of them, got "
                f"{value!r}")

    def number(v) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value.tolist())
    if isinstance(value, numbers.Real) and number(value):
        values = (float(value),) * ndim
    elif is_sequence(value):
        if not all(number(v) for v in value):
            raise TypeError(expected)
        if len(value) != ndim:
            raise ValueError(expected)
        values = tuple(float(v) for v in value)
    else:
        raise TypeError(expected)
    if not all(0 < v < float("inf") for v in values):
        raise ValueError(expected)
    return values


def only_padding_mode(padding_mode, mode: str, where: str) -> None:
    """``padding_mode`` of a function that takes one mode alone, ``mode``: a ``TypeError`` for
    what is no string (an array would be asked for its truth value), a ``ValueError`` for
    another string, each saying ``where`` the one mode applies."""
    if not isinstance(padding_mode, str) or padding_mode != mode:
        error = ValueError if isinstance(padding_mode, str) else TypeError
        raise error(f"padding_mode must be {mode!r} for {where}, got {padding_mode!r}")


def periodic_padding_mode(padding_mode, what: str) -> None:
    """``padding_mode`` of a function that only describes the periodic layer
    (:func:`~sparseconv.circular_svd`, :func:`~sparseconv.clip_singular_values`): only
    ``"circular"``, accepted so that the spectra's arguments pass unchanged.

    Examples
    --------
    >>> periodic_padding_mode("circular", "circular_svd")
    >>> periodic_padding_mode("zeros", "circular_svd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: padding_mode must be 'circular' for circular_svd (...), got 'zeros'
    """
    only_padding_mode(padding_mode, "circular", f"{what} (it describes the periodic layer)")


def transposed_padding_mode(padding_mode) -> None:
    """``padding_mode`` of a transposed convolution: only ``"zeros"``, as PyTorch's
    ``ConvTranspose*d``.

    Examples
    --------
    >>> transposed_padding_mode("zeros")
    >>> transposed_padding_mode("reflect")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: padding_mode must be 'zeros' for a transposed convolution, ... got 'reflect'
    """
    only_padding_mode(padding_mode, "zeros", "a transposed convolution, as PyTorch's "
                      "ConvTranspose*d")


def real_number(value, name: str, *, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float if it is a real number (not a bool; a 0-d numpy array of one, as
    numpy reductions return, too) in the interval from ``low`` to ``high`` (each end closed
    unless ``*_open``; an infinite end is never reached), else TypeError/ValueError naming it
    and the interval. NaN is refused.

    >>> real_number(0.5, "tol", low=0.0, high=1.0, low_open=True)
    0.5
    >>> real_number(np.array(0.5), "tol", low=0.0, high=1.0, low_open=True)
    0.5
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]  # its scalar, checked as any other
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def check_executor(executor: object) -> Executor | None:
    """``executor`` if it is None or a :class:`concurrent.futures.Executor`, else TypeError."""
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(f"executor must be None or a concurrent.futures.Executor, got "
                        f"{executor!r}")
    return executor


def check_progress(progress: object) -> ProgressLike | None:
    """``progress`` if it is None or callable, else TypeError."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable progress(done, total), got "
                        f"{progress!r}")
    return progress


def row_range(rows, nrows: int, name: str = "rows") -> tuple[int, int]:
    """``rows`` (a ``slice`` with step 1 or ``None``, numpy's semantics) as ``(start, stop)``.

    Examples
    --------
    >>> row_range(slice(2, 5), 10), row_range(slice(-3, None), 10), row_range(None, 10)
    ((2, 5), (7, 10), (0, 10))
    """
    if rows is None:
        return 0, nrows
    if not isinstance(rows, slice):
        raise TypeError(f"{name} must be a slice of rows such as slice(0, 100), or None, got "
                        f"{rows!r}")
    for part in (rows.start, rows.stop, rows.step):
        if part is not None and (not is_int(part) or isinstance(part, bool)):
            raise TypeError(f"{name} must be a slice of integers, got {rows!r}")
    if rows.step not in (None, 1):
        raise ValueError(f"{name} must be a contiguous range of rows (step 1), got {rows!r}")
    start, stop, _ = rows.indices(nrows)
    return start, max(start, stop)


def as_per_layer(values):
    """A per-layer argument as a sequence: an integer numpy array (1-D, an int a layer, or
    2-D, a row a layer) as its list, as the arguments of one layer take arrays for ints (a
    new user's trial: ``receptive_field_size(np.array([3, 3]))`` was refused)."""
    if isinstance(values, np.ndarray) and values.ndim in (1, 2) and values.dtype.kind in "iu":
        return values.tolist()
    return values


def per_layer_tuples(values, name: str, depth: int, ndim: int) -> list[tuple[int, ...]]:
    """A per-layer argument (default 1 for every layer), each entry an int or ``ndim`` ints."""
    values = [1] * depth if values is None else as_per_layer(values)
    if not is_sequence(values):
        raise TypeError(f"{name} must be a sequence with one entry a layer ({depth}), got "
                        f"{values!r}")
    if len(values) != depth:
        raise ValueError(f"{name} must have one entry a layer ({depth}), got {values!r}")
    return [int_tuple(v, ndim, f"{name}[{i}]", 1) for i, v in enumerate(values)]


def one_of(value, choices: tuple[str, ...], name: str) -> str:
    """``value``, if it is one of the strings ``choices``: else a ``TypeError`` for what is no
    string (an array is none, and ``in`` would ask it for a truth value) and a ``ValueError``
    for another string, each naming ``name``, the choices and the value (a new user's trial:
    ``method=None`` was a ValueError in one function and a TypeError in the next).

    Examples
    --------
    >>> one_of("csr", ("csr", "csc"), "format")
    'csr'
    >>> one_of(None, ("csr", "csc"), "format")
    Traceback (most recent call last):
    ...
    TypeError: format must be one of ('csr', 'csc'), got None
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_format(format: str) -> None:
    """``format``, if it is one of :data:`FORMATS`."""
    one_of(format, FORMATS, "format")


def check_layout(layout: str) -> Layout:
    """``layout``, if it is one of :data:`LAYOUTS`.

    Examples
    --------
    >>> check_layout("channels_last")
    'channels_last'
    >>> check_layout("NHWC")
    Traceback (most recent call last):
    ...
    ValueError: layout must be one of ('channels_first', 'channels_last'), got 'NHWC'
    """
    return cast(Layout, one_of(layout, LAYOUTS, "layout"))


def check_blocksize(blocksize, format: str) -> tuple[int, int] | None:
    """``blocksize`` as a pair of positive ints (``None`` stays ``None``); only with
    ``format="bsr"``. Whether it divides the matrix is checked where the matrix is known.

    Examples
    --------
    >>> check_blocksize((4, 2), "bsr"), check_blocksize(None, "csr")
    ((4, 2), None)
    >>> check_blocksize((4, 2), "csr")
    Traceback (most recent call last):
    ...
    ValueError: blocksize=(4, 2) applies to format='bsr' only, got format='csr'
    """
    if blocksize is None:
        return None
    if format != "bsr":
        raise ValueError(f"blocksize={blocksize!r} applies to format='bsr' only, got "
                         f"format={format!r}")
    if isinstance(blocksize, np.ndarray) and blocksize.ndim == 1:
        blocksize = tuple(blocksize.tolist())
    expected = f"blocksize must be a pair of positive integers (R, C), got {blocksize!r}"
    if not is_sequence(blocksize) or not all(is_int(v) for v in blocksize):
        raise TypeError(expected)
    if len(blocksize) != 2 or min(blocksize) < 1:
        raise ValueError(expected)
    _check_index_limit(blocksize, "blocksize must be a pair of positive integers", "each",
                       blocksize)
    return int(blocksize[0]), int(blocksize[1])


def as_bool(value, name: str) -> bool:
    """``value`` as a Python bool: only ``True``/``False`` and numpy's bools are accepted.

    A string such as ``"False"`` is true in Python, and an int is a likely slip for another
    argument: both are refused rather than read as a flag.

    Examples
    --------
    >>> import numpy as np
    >>> as_bool(True, "flip"), as_bool(np.bool_(False), "flip")
    (True, False)
    >>> as_bool("False", "flip")
    Traceback (most recent call last):
    ...
    TypeError: flip must be a bool, got 'False'
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


