"""One axis's resampling matrix, with PyTorch's own index arithmetic.

:mod:`sparseconv._resampling` builds a layer's matrix as the Kronecker product of one such
matrix per axis (its module docstring has the rules): adaptive average pooling's windows
(:func:`_adaptive_axis`), the nearest modes' source index (:func:`_nearest_axis`, as
PyTorch's float32 kernels round it), linear and cubic weights (:func:`_linear_axis`,
:func:`_cubic_axis`, the coordinate floored after rounding to float32 as ATen's ``floorf``),
and the antialiasing filters (:func:`_antialias_axis`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

__all__: list[str] = []


#: the modes with ``antialias=True``, and the width of each one's filter (in inputs, before
#: it is stretched): PyTorch's ``interp_size``
_ANTIALIAS = {"bilinear": 2, "bicubic": 4, "lanczos": 6}


def _axis_matrix(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, m: int, n: int):
    """One axis's weights, without the entries that are zero (a sample on an input position
    gives its neighbour the weight 0; clamped taps may sum to 0): a zero stored would count
    as a read in ``nnz`` and :func:`sparseconv.receptive_field`, where the output does not
    depend on that input (a new user's trial: 4,474 of trilinear's 9,856 entries)."""
    matrix = sp.csr_array((weights, (rows, cols)), shape=(m, n))
    matrix.eliminate_zeros()
    return matrix


def _adaptive_axis(n: int, m: int) -> sp.csr_array:
    """Adaptive average pooling from ``n`` to ``m`` positions (ATen's start/end index)."""
    o = np.arange(m)
    start, end = (o * n) // m, -((-(o + 1) * n) // m)
    lengths = end - start
    rows = np.repeat(o, lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols += np.repeat(start, lengths)
    return _axis_matrix(rows, cols, np.repeat(1.0 / lengths, lengths), m, n)


def _nearest_axis(n: int, m: int, scale: float | None, exact: bool,
                  two_d: bool) -> sp.csr_array:
    """PyTorch's nearest and nearest-exact source index, as its float32 kernels compute it.

    ``scale`` is rounded to float32 from the double ``1 / scale_factor`` (or ``n / m``), and
    so is every step after it (ATen's ``area_pixel_compute_source_index``):
    ``nearest`` reads ``floor(o * scale)``, the float32 product of a float32 index and the
    scale; ``nearest-exact`` reads ``floor((o + 0.5) * scale - 0.5 + 0.5)``, where the product
    and the subtraction are one fused multiply-add (one rounding: PyTorch's CPU kernels are
    built for FMA, in its AVX2 and AVX-512 variants), clamped at 0, and the last sum is
    rounded to float32 again.

    ``two_d``: PyTorch's 2-D nearest-exact kernels read ``floorf((o + 0.5) * scale)`` (one
    rounding of the exact product) at some sizes and the 1-D and 3-D kernels' index at others
    (a hunt: 2 rows to 41 read row 0 at output 20, 8 rows to 164 read row 1; every other of
    80,000 sizes measured followed one or both): where the two differ, refused.
    PyTorch's 2-D nearest kernel also copies an axis whose size does not change or
    halves the index where it doubles, whatever ``scale_factor`` says; its 1-D and 3-D
    kernels do not (``scale_factor=1.1`` on 6 inputs reads input 0 twice). Where a
    ``scale_factor`` that is not exactly 1 or 2 gives such a size and the two rules disagree,
    PyTorch itself was seen to use either (it is not the axis's sizes that decide): refused,
    with ``size=`` as the way out, rather than guessed.

    These are the indices of PyTorch's float32 kernels, its default dtype (measured on 2.13:
    every rank and memory format, factors up to 60; a review found 1-D and 3-D axes following
    the float64 kernels before: 18 inputs at 2.3 in nearest-exact, output 34; and rounding the
    product before the subtraction misses 6 inputs at 53.5, output 53). Its float64 kernels
    round ``o * scale`` in float64 (then to float32) instead, and not alike in every memory
    format: at factors such as 3.7 on 35 rows, output 111 reads row 30 in float64 and row 29
    in float32 (at 0.5, 1.5, 2.5, 3 and 4 the two never differ). The adapter's checks against
    the model see the difference.
    """
    ratio = 1.0 / scale if scale is not None else n / m
    scale32 = np.float64(np.float32(ratio))
    index = np.arange(m).astype(np.float32).astype(np.float64)  # exact in float64
    if exact:  # products of 24-bit factors, exact in float64: one rounding, as an FMA
        fused = np.maximum((scale32 * (index + 0.5) - 0.5).astype(np.float32), 0)
        source = _floorf_index(fused.astype(np.float64) + 0.5, n)
        # ATen's floorf((o + 0.5) * scale), which its 2-D kernels use at some sizes only
        other = _floorf_index(scale32 * (index + 0.5), n)
        if two_d and not np.array_equal(source, other):
            o = int(np.argmax(source != other))
            raise ValueError(
                f"mode='nearest-exact' maps {n} inputs to {m} outputs on an axis of a 2-D "
                f"input, where output {o}'s source index, (o + 0.5) * {ratio:.9g}, lies "
                f"within float32 rounding of a whole number, which PyTorch's 2-D kernels "
                f"round to input {int(other[o])} at some sizes and to "
                f"input {int(source[o])} at others (seen on 2.13); the matrix is not built "
                "rather than guessed (pass another size, or mode='nearest')")
    else:  # exact in float64, rounded once to float32 by floorf's argument
        source = _floorf_index(scale32 * index, n)
    if two_d and not exact and m in (n, 2 * n):  # ATen's nearest_idx shortcut
        shortcut = np.arange(m) >> (m // n - 1)
        if not np.array_equal(shortcut, source):
            raise ValueError(
                f"scale_factor={scale!r} maps {n} inputs to {m} outputs, where PyTorch's "
                f"2-D nearest kernels disagree (one copies or halves the index, one "
                f"rounds o * {ratio!r}): pass size={m} instead")
        source = shortcut
    return _axis_matrix(np.arange(m), source, np.ones(m), m, n)


def _ratio(n: int, m: int, scale: float | None, align_corners: bool) -> float:
    """ATen's ``area_pixel_compute_scale``: input positions per output step, ``(n - 1) /
    (m - 1)`` with ``align_corners``, else ``1 / scale_factor`` (when given and not
    recomputed) or ``n / m``."""
    if align_corners:
        return (n - 1) / (m - 1) if m > 1 else 0.0
    return 1.0 / scale if scale is not None else n / m


def _linear_axis(n: int, m: int, scale: float | None, align_corners: bool) -> sp.csr_array:
    """PyTorch's linear interpolation weights (``area_pixel_compute_source_index``)."""
    o = np.arange(m, dtype=np.float64)
    if m == n:  # PyTorch copies an axis whose size does not change, whatever scale_factor says
        return _axis_matrix(np.arange(m), np.arange(m), np.ones(m), m, n)
    ratio = _ratio(n, m, scale, align_corners)
    source = o * ratio if align_corners else np.maximum(ratio * (o + 0.5) - 0.5, 0.0)
    low = _floorf_index(source, n)
    t = np.clip(source - low, 0.0, 1.0)
    high = np.minimum(low + 1, n - 1)
    rows = np.repeat(np.arange(m), 2)
    return _axis_matrix(rows, np.stack([low, high], 1).ravel(),
                        np.stack([1.0 - t, t], 1).ravel(), m, n)


def _floorf_index(source: np.ndarray, n: int) -> np.ndarray:
    """ATen's ``guard_index_and_lambda``: the index ``min(floorf(source), n - 1)``, floored
    after rounding the double to float32 (``floorf``), so a source just below a whole number
    that float32 rounds up reads that number with a fraction of 0."""
    return np.minimum(np.floor(source.astype(np.float32)).astype(np.int64), n - 1)


def _cubic_axis(n: int, m: int, scale: float | None, align_corners: bool) -> sp.csr_array:
    """PyTorch's bicubic weights along one axis (``HelperInterpCubic``): the source coordinate
    ``scale * o`` or ``scale * (o + 0.5) - 0.5`` (not clamped, unlike the linear modes), its
    index ``i`` (:func:`_floorf_index`) and ``t`` the rest, in ``[0, 1]``; Keys' cubic
    convolution with ``A = -0.75`` on inputs
    ``i - 1 .. i + 2``, each clamped into ``[0, n - 1]`` (weights of a clamped input add)."""
    a = -0.75
    o = np.arange(m, dtype=np.float64)
    ratio = _ratio(n, m, scale, align_corners)
    source = o * ratio if align_corners else ratio * (o + 0.5) - 0.5
    low = _floorf_index(source, n)
    t = np.clip(source - low, 0.0, 1.0)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
    columns = np.clip(low[:, None] + np.arange(-1, 3), 0, n - 1)
    return _axis_matrix(np.repeat(np.arange(m), 4), columns.ravel(), weights.ravel(), m, n)


def _entries_per_output(n: int, m: int, scale: float | None, mode: str, antialias: bool,
                        align_corners: bool) -> int:
    """The most inputs one output of an interpolating axis reads (before it is built)."""
    if antialias:  # the stretched window of _antialias_axis, and one more for rounding
        ratio = _ratio(n, m, scale, align_corners)
        return 2 * math.ceil(_ANTIALIAS[mode] / 2 * max(ratio, 1.0)) + 2
    return {"bicubic": 4}.get(mode, 1 if mode.startswith("nearest") else 2)


def _antialias_filter(mode: str, x: np.ndarray) -> np.ndarray:
    """PyTorch's antialiasing filters: the triangle, Keys' cubic with ``A = -0.5`` (not the
    ``-0.75`` of plain bicubic interpolation) and the Lanczos-3 window."""
    x = np.abs(x)
    if mode == "bilinear":
        return np.maximum(1.0 - x, 0.0)
    if mode == "bicubic":
        a = -0.5
        return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))
    px = np.pi * np.where(x == 0, 1.0, x)  # (sinc(0) = 1, set below)
    return np.where(x == 0, 1.0, np.where(x < 3, 3 * np.sin(px) * np.sin(px / 3) / px**2, 0.0))


def _antialias_axis(n: int, m: int, scale: float | None, align_corners: bool,
                    mode: str) -> sp.csr_array:
    """PyTorch's antialiased weights along one axis (``_compute_weights_aa``; the module's
    description): each output's window of inputs around its centre, the filter stretched by
    the scale where the axis shrinks, the weights normalised to add up to 1."""
    if m == n:  # PyTorch copies an axis whose size does not change, whatever scale_factor says
        return _axis_matrix(np.arange(m), np.arange(m), np.ones(m), m, n)
    ratio = _ratio(n, m, scale, align_corners)
    stretch = max(ratio, 1.0)
    support = _ANTIALIAS[mode] / 2 * stretch
    centre = ratio * (np.arange(m) + 0.5)
    first = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    stop = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), n)
    columns = first[:, None] + np.arange(max(int((stop - first).max()), 1))
    inside = columns < stop[:, None]
    weights = np.where(inside, _antialias_filter(mode, (columns - centre[:, None] + 0.5)
                                                 / stretch), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=weights, where=total != 0)
    return _axis_matrix(np.repeat(np.arange(m), inside.sum(axis=1)), columns[inside],
                        weights[inside], m, n)
