"""Validation of arrays and dtypes: weights, and the dtypes results are computed and held in.

Part of :mod:`sparseconv._validation` (which re-exports every name here): a weight is a
numeric array of finite entries where a computation needs them, integers beyond ``2**53``
are refused where float64 would round them, and a result's dtype is one that holds its
values (:func:`result_dtype`, :func:`held_in`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass

__all__ = [
    "as_dtype",
    "as_weight",
    "exact_in",
    "first_index",
    "held_in",
    "inexact_dtype",
    "layer_dtype",
    "layer_weight",
    "result_dtype",
    "summable",
]


def as_weight(weight, name: str = "weight", *, finite: bool = False) -> np.ndarray:
    """``weight`` as a numeric ndarray (bool and integers become float64, exactly: integers
    beyond ``2**53`` in magnitude are refused).

    ``finite=True`` also refuses NaN and infinite entries (``ValueError``), as the spectra do,
    and takes a longdouble weight as float64 where that keeps every entry (``TypeError``
    where it does not).

    Examples
    --------
    >>> as_weight([[[1, 2]]]).dtype
    dtype('float64')
    >>> as_weight([[[1.0, float("nan")]]], finite=True)
    Traceback (most recent call last):
    ...
    ValueError: weight must have finite entries, got nan at index (0, 0, 1)
    """
    if isinstance(weight, np.ma.MaskedArray) and np.ma.getmaskarray(weight).any():
        where = first_index(np.ma.getmaskarray(weight))  # (a review: np.asarray took the
        # masked entries' values, the mask dropped without a word)
        raise TypeError(f"{name} is a masked array with masked entries (index {where}), which "
                        f"sparseconv does not read as any value: pass {name}.filled(0) to take "
                        "them as zero taps")
    try:
        array = np.asarray(weight)
    except (TypeError, ValueError, RuntimeError) as exc:  # (torch raises RuntimeError)
        # a tensor that requires grad, say (numpy has no bfloat16: convert it first)
        widen = ".float()" if "BFloat16" in str(exc) else ""
        hint = "" if not hasattr(weight, "detach") else (
            f" ({exc}): pass {name}.detach(){widen}.cpu().numpy(), or the module to "
            "sparseconv.torch")
        raise TypeError(f"{name} must be a numeric array, got {type(weight).__name__}"
                        f"{hint}") from exc
    if array.dtype.kind not in "biufc":
        what = "" if isinstance(weight, (np.ndarray, list, tuple)) else f"{type(weight).__name__}, "
        module = hasattr(weight, "named_parameters") and callable(weight)  # a torch module
        raise TypeError(f"{name} must be a numeric array, got {what}dtype {array.dtype}" + (
            ": a module goes to sparseconv.torch (sparseconv.torch.matrix(module, "
            "input_shape), .operator, .spectral_norm), its weight here as "
            "module.weight.detach().numpy()" if module else ""))
    if not array.dtype.isnative:  # (a review: big-endian weights, as FITS, HDF5 and some
        # .npy files hold them, gave matrices of dtype >f8 that scipy.sparse then refused)
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.kind in "iu" and array.dtype.itemsize >= 8 and (
            where := first_index((array > 2**53) | (array < -2**53))) is not None:
        raise ValueError(f"{name} must have integer entries of magnitude at most 2**53, which "
                         f"float64 holds exactly, got {array[where]} at index {where}")
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    if finite and array.dtype.kind in "fc" and array.dtype.itemsize > (8 if array.dtype.kind
                                                                       == "f" else 16):
        array = _in_double(array, name)  # (the spectra compute in LAPACK's double precision)
    if finite and (where := first_index(~np.isfinite(array))) is not None:
        raise ValueError(f"{name} must have finite entries, got {array[where]} at index {where}")
    return array


def first_index(mask: np.ndarray) -> tuple[int, ...] | None:
    """The index of ``mask``'s first true entry (C order), as Python ints; None if none is,
    for the messages that name the entry a refusal is about.

    Examples
    --------
    >>> import numpy as np
    >>> first_index(np.array([[False, False], [True, True]])), first_index(np.zeros(3) > 0)
    ((1, 0), None)
    """
    found = np.argwhere(mask)
    return tuple(int(i) for i in found[0]) if found.size else None


def _in_double(array: np.ndarray, name: str) -> np.ndarray:
    """A longdouble ``array`` as float64 (complex128), refused where an entry would change:
    1e-4940 underflows to 0 (a layer certified to have norm 0), 1e400 overflows."""
    double = np.complex128 if array.dtype.kind == "c" else np.float64
    with np.errstate(over="ignore", under="ignore"):
        narrow = array.astype(double)
    where = first_index((narrow != array) & ~np.isnan(array))  # (NaN: the finite check's)
    if where is not None:
        raise TypeError(
            f"{name} of dtype {array.dtype} has entries {np.dtype(double).name} cannot hold "
            f"({str(array[where])} at index {where} becomes {narrow[where]}), and the spectra "
            f"compute in double precision: pass {name}.astype(numpy.{np.dtype(double).name}) "
            f"to analyse the rounded layer")
    return narrow


def result_dtype(weight: np.ndarray, dtype) -> np.dtype:
    """The dtype of a layer's matrix: ``dtype`` if given, else the weight's, in the machine's
    byte order (scipy.sparse computes in no other).

    Examples
    --------
    >>> import numpy as np
    >>> result_dtype(np.ones(3, np.float32), None), result_dtype(np.ones(3), "complex128")
    (dtype('float32'), dtype('complex128'))
    >>> result_dtype(np.ones(3), ">f8") == np.float64
    True
    >>> result_dtype(np.ones(3), np.float32(1.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: dtype must be a numpy numeric dtype, got the value np.float32(1.0) (its type ...
    """
    if dtype is None:
        return weight.dtype  # (native: as_weight's)
    given = as_dtype(dtype)
    if given.kind not in "biufc":
        raise TypeError(f"dtype must be a numpy numeric dtype, got {dtype!r}")
    return given


def as_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` (not None) as numpy reads it, in the machine's byte order (scipy.sparse
    computes in no other: a review's ``>f8`` matrices, which ``svds`` refused); a numeric
    scalar *value* is refused, which ``np.dtype`` would take for its type (a review:
    ``dtype=np.float32(1.0)`` gave float32 where ``dtype=1.0`` is refused). A dtype's name
    as a numpy string (``np.str_("float32")``, from an array of names) is a name.

    Examples
    --------
    >>> import numpy as np
    >>> as_dtype(">f8") == np.float64, as_dtype(np.str_("float32"))
    (True, dtype('float32'))
    """
    if isinstance(dtype, (np.number, np.bool_)):
        raise TypeError(f"{name} must be a numpy numeric dtype, got the value {dtype!r} (its "
                        f"type is numpy.{type(dtype).__name__})")
    try:
        return np.dtype(dtype).newbyteorder("=")
    except TypeError as exc:
        raise TypeError(f"{name} must be a numpy numeric dtype, got {dtype!r}") from exc


def layer_weight(weight, name: str = "weight", *, finite: bool = False) -> np.ndarray:
    weight = as_weight(weight, name, finite=finite)
    if weight.ndim < 3 or weight.size == 0:
        raise ValueError(f"{name} must have two channel axes, then at least one spatial axis "
                         f"(as (C_out, C_in/groups, *kernel_size)), and no zero length, got "
                         f"{name}.shape={weight.shape}")
    return weight


def layer_dtype(weight: np.ndarray, dtype) -> np.dtype:
    """The dtype every layer builder computes and returns in: :func:`result_dtype`, except
    that float16 weights are computed in float32 (scipy.sparse has no float16 arithmetic), and
    an explicit ``dtype=float16``, which could not be honored, is refused by name.

    Examples
    --------
    >>> import numpy as np
    >>> layer_dtype(np.ones(3, np.float16), None), layer_dtype(np.ones(3), None)
    (dtype('float32'), dtype('float64'))
    >>> layer_dtype(np.ones(3), np.float16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: dtype=float16 is not supported (scipy.sparse has no float16 arithmetic); ...
    """
    explicit = dtype is not None
    dtype = result_dtype(weight, dtype)  # (native: ">f2" is float16 too, a review)
    if explicit and dtype == np.float16:
        raise TypeError(
            "dtype=float16 is not supported (scipy.sparse has no float16 arithmetic); "
            "float16 weights are computed in float32, or pass dtype=np.float32")
    if weight.dtype.kind == "c" and dtype.kind != "c":
        raise TypeError(f"dtype={dtype} would discard the imaginary part of the complex "
                        f"{weight.dtype} weight; pass a complex dtype or the real part")
    exact_in(dtype, weight, f"the {weight.dtype} weight's entries")
    return np.dtype(np.float32) if dtype == np.float16 else dtype


_INEXACT = tuple(np.dtype(t) for t in ("float32", "float64", "complex64", "complex128"))


def inexact_dtype(dtype, name: str = "dtype") -> np.dtype | None:
    """``dtype`` (``None`` stays ``None``) if it is a float or complex dtype arithmetic can be
    done in: for values read from a float array (a PyTorch module's weights), which an integer
    dtype would truncate and float16 could not compute in (:func:`layer_dtype`).

    Examples
    --------
    >>> inexact_dtype("float32"), inexact_dtype(None)
    (dtype('float32'), None)
    >>> inexact_dtype(np.int64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: dtype must be a float or complex dtype (...), got <class 'numpy.int64'>
    """
    if dtype is None:
        return None
    given = layer_dtype(np.empty(0), dtype)  # float16 refused by name, non-dtypes too
    if given not in _INEXACT:
        raise TypeError(f"{name} must be a float or complex dtype (float32, float64, complex64, "
                        f"complex128), got {dtype!r}")
    return given


def summable(values: np.ndarray) -> np.ndarray:
    """``values`` as Python integers (an object array) if their dtype is an integer or bool
    one, so that the sums padding folds into one entry are exact; else unchanged. numpy would
    wrap 100 + 100 to -56 in int8, make True + True True, and float64 would round beyond
    2**53. :func:`held_in` casts the sums back."""
    return values.astype(object) if values.dtype.kind in "biu" else values


def held_in(sums: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Exact sums from :func:`summable` as ``dtype``, refused (``TypeError``) where an
    integer or bool dtype cannot hold one: only the entries are checked, not partial sums.

    Examples
    --------
    >>> import numpy as np
    >>> held_in(summable(np.array([100, 27], np.int8)) + 0, np.dtype(np.int8))
    array([100,  27], dtype=int8)
    >>> held_in(summable(np.array([100], np.int8)) * 2, np.dtype(np.int8))
    Traceback (most recent call last):
    ...
    TypeError: dtype=int8 cannot hold the matrix's entries: the padding folds several taps ...
    """
    if sums.dtype != object:
        return sums
    dtype = np.dtype(dtype)
    low, high = (0, 1) if dtype.kind == "b" else (int(np.iinfo(dtype).min),
                                                 int(np.iinfo(dtype).max))
    where = first_index((sums < low) | (sums > high))
    if where is not None:
        raise TypeError(f"dtype={dtype} cannot hold the matrix's entries: the padding folds "
                        f"several taps onto one input position, and their sum "
                        f"{int(sums[where])} is outside [{low}, {high}]; pass a floating dtype")
    return sums.astype(dtype)


def exact_in(dtype: np.dtype, values: np.ndarray, what: str) -> None:
    """Refuse an integer or bool ``dtype`` that would change real ``values`` (numpy's
    ``astype`` truncates 0.4 to 0 and wraps 300 to 44 in int8 without a word).

    Examples
    --------
    >>> import numpy as np
    >>> exact_in(np.dtype(np.int16), np.array([1.0, -2.0]), "the weight's entries")
    >>> exact_in(np.dtype(int), np.array([1.0, 0.25]), "the entries")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: dtype=int64 would change the entries (0.25 at index (1,) becomes 0); pass a ...
    """
    if dtype.kind not in "biu" or values.dtype.kind != "f":
        return
    with np.errstate(invalid="ignore", over="ignore"):
        cast = values.astype(dtype)
    where = first_index(cast != values)  # truncated, wrapped around, or NaN
    if where is not None:
        before, after = values[where].item(), cast[where].item()
        raise TypeError(f"dtype={dtype} would change {what} ({before!r} at index {where} "
                        f"becomes {after!r}); pass a floating dtype")
