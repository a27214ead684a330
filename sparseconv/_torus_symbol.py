"""The polyphase symbol of :func:`sparseconv.toeplitz_norm`: its shifts and matrices, and its
values, ``sigma_max`` and certified quotients at frequencies on (and off) the unit circle.

``H(xi) = sum_a M_a exp(2 pi i <a, xi>)`` (:mod:`sparseconv._torus` says where it comes
from and how the branch and bound uses it); frequencies are integers over ``2**40``
(``_FULL``), so that the turns ``<a, xi> mod 1`` are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._geometry import ConvGeometry
from ._memory import check_memory, get_memory_limit
from ._rounding import Rounding, U, gamma, up
from ._symbol import top_per_frequency
from ._torus_gram import _FULL, _apex

_CHUNK_BYTES = 1 << 26  #: symbols evaluated at once, at most this much memory (64 MiB)


def _chunk_bytes(chunk: int = _CHUNK_BYTES) -> int:
    """``chunk``, or a sixteenth of the memory limit where that is less (a review: a limit
    of 4 MiB, and toeplitz_norm held 34 MB of chunks)."""
    limit = get_memory_limit()
    return chunk if limit is None else max(1, min(chunk, limit // 16))


@dataclass(frozen=True)
class _Symbol:
    """The polyphase symbol ``H(xi) = sum_a M_a exp(2 pi i <a, xi>)`` of one layer.

    On a *hull axis* (shifts spanning at most 2) the shifts are centred to ``{-1, 0, 1}`` (or
    ``{0, 1}``), and ``H`` is extended off the unit circle as ``z``, ``1``, ``conj(z)``: real
    affine in ``z``. On a *Taylor axis* (wider span) the shifts are ``>= 0``.
    """

    shifts: np.ndarray  # (S, d) int64, one row per distinct shift a
    hull: tuple[bool, ...]  # per axis: the triangle hull (True) or the Taylor remainder
    blocks: np.ndarray  # (S, groups * rows * cols): M_a, block by block
    groups: int
    rows: int
    cols: int
    norms: np.ndarray  # (S,) certified max over groups of ||M_a||_2
    centred: np.ndarray  # (S, d) |a - (min a + max a)/2| on Taylor axes, 0 on hull axes

    @property
    def degree(self) -> np.ndarray:
        """``(S,)``: each shift's total degree ``|a|`` over the hull axes (its phase's modulus
        off the circle is ``apex`` to that power)."""
        return np.abs(self.shifts[:, list(self.hull)]).sum(axis=1)

    @property
    def active(self) -> list[int]:
        """The axes along which ``H`` varies (a kernel of size 1 leaves an axis constant)."""
        return [d for d in range(self.shifts.shape[1]) if np.ptp(self.shifts[:, d]) > 0]


def _check_symbol_memory(geom: ConvGeometry) -> None:
    """Refuse, before anything is allocated, a polyphase symbol beyond the memory limit.

    Its matrices are ``C_out/groups x C_in/groups * prod(stride)`` per group: a large stride
    multiplies the columns, and the Gram matrix of each vertex squares the smaller side.
    """
    groups, taps = geom.groups, math.prod(geom.kernel_size)
    rows = geom.out_channels // groups
    cols = geom.in_channels // groups * math.prod(geom.stride)
    side = min(rows, cols)
    check_memory(16 * taps * groups * rows * cols + 3 * 16 * rows * cols
                 + 3 * 16 * groups * side * side,
                 f"toeplitz_norm's polyphase symbol: {groups} group(s) of {rows} x {cols} "
                 f"matrices (C_out/groups x C_in/groups * prod(stride), "
                 f"stride={geom.stride}) at {taps} shifts")


def _polyphase(weight: np.ndarray, geom: ConvGeometry) -> _Symbol:
    """The shifts ``a`` and matrices ``M_a`` of the layer, from the geometry's gather map."""
    first = [a.tap_index()[0] for a in geom.axes]  # taps of output 0 read t * dilation
    taps = list(np.ndindex(*geom.kernel_size))
    u = np.array([[first[d][tap[d]] for d in range(geom.ndim)] for tap in taps], dtype=np.int64)
    stride = np.array(geom.stride)
    shift, phase = u // stride, np.ravel_multi_index((u % stride).T, geom.stride)
    shifts, which = np.unique(shift, axis=0, return_inverse=True)
    groups, phases = geom.groups, math.prod(geom.stride)
    rows, c_in = geom.out_channels // groups, geom.in_channels // groups
    blocks = np.zeros((len(shifts), groups, rows, c_in, phases), dtype=weight.dtype)
    w = weight.reshape(groups, rows, c_in, len(taps))
    for t in range(len(taps)):  # distinct taps of one shift have distinct phases
        blocks[which.ravel()[t], ..., phase[t]] += w[..., t]
    blocks = blocks.reshape(len(shifts), groups, rows, c_in * phases)
    norms = np.array([max(up(np.linalg.norm(b, 2) + (max(b.shape) ** 2 + 2) * U
                             * np.linalg.norm(b)) for b in per_shift) for per_shift in blocks])
    low, span = shifts.min(axis=0), np.ptp(shifts, axis=0)
    hull = tuple(bool(e <= 2) for e in span)
    shifts = shifts - low - np.where(hull, span // 2, 0)
    centred = np.where(hull, 0.0, np.abs(shifts - span / 2))
    return _Symbol(shifts, hull, blocks.reshape(len(shifts), -1), groups, rows,
                   c_in * phases, norms, centred)


def _phases(symbol: _Symbol, turns: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``(F, S)``: each shift's phase at the points ``turns``, off the circle by ``widths``."""
    phase = np.ones((len(turns), len(symbol.shifts)), dtype=np.complex128)
    for d, hull in enumerate(symbol.hull):
        a = symbol.shifts[:, d]
        if hull:  # z, 1 or conj(z): exact turns, one exp, one exact-enough scaling
            z = np.exp(2j * np.pi * (turns[:, d] / _FULL)) * _apex(widths[:, d])
            phase *= np.where(a > 0, z[:, None], np.where(a < 0, np.conj(z)[:, None], 1.0))
        else:  # <a, xi> mod 1 in integers: exact, then one exact scaling by 2**-40
            turn = (a[None] * turns[:, d, None]) % _FULL / _FULL
            phase *= np.exp(2j * np.pi * turn)
    return phase


def _tops(symbol: _Symbol, turns: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Computed ``sigma_max`` of the (extended) symbol at the given points, in chunks."""
    # per point: the phases of every shift and their temporaries (a review: uncounted, a
    # 16x16 kernel of one channel held 435 MB at a limit of 16 MiB), the symbol from two
    # real products, and the smaller Gram matrix whose eigenvalues give sigma_max
    per_point = 16 * (3 * len(symbol.shifts) + 2 * symbol.blocks.shape[1]
                      + 2 * symbol.groups * min(symbol.rows, symbol.cols) ** 2)
    check_memory(3 * per_point, "one evaluation of toeplitz_norm's symbol")
    chunk = max(1, _chunk_bytes() // per_point)
    out = np.empty(len(turns))
    for start in range(0, len(turns), chunk):
        h = _symbol_at(symbol, turns[start:start + chunk], widths[start:start + chunk])
        out[start:start + chunk] = top_per_frequency(h).max(axis=-1)
    return out


def _symbol_at(symbol: _Symbol, turns: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``(F, groups, rows, cols)``: the (extended) symbol at the points."""
    phase = _phases(symbol, turns, widths)
    if symbol.blocks.dtype.kind == "c":
        h = phase @ symbol.blocks
    else:  # two real products: cheaper than a complex one with a real operand
        h = phase.real @ symbol.blocks + 1j * (phase.imag @ symbol.blocks)
    return h.reshape(len(phase), symbol.groups, symbol.rows, symbol.cols)


def _quotient_lower(symbol: _Symbol, rounding: Rounding, point: np.ndarray) -> float:
    """A certified lower bound on ``sigma_max(H(xi))`` at one frequency, by a quotient.

    ``sigma_max(H) >= ||H x|| / ||x||`` for LAPACK's top right singular vector ``x`` of the
    computed symbol ``H~``: ``||H - H~|| <= eps`` (the model's symbol error), the product errs
    by ``gamma(2n + 4) ||H~||_F ||x||`` (complex inner products of length ``n``) and each norm
    by ``gamma(n + 2)``. Far tighter than :meth:`Rounding.top_lower`, whose allowance for the
    Gram eigenvalues grows with ``n^2``.
    """
    h = _symbol_at(symbol, point[None], np.zeros_like(point)[None])[0]
    tops = [np.linalg.svd(block, compute_uv=False)[0] for block in h]
    block = h[int(np.argmax(tops))]
    x = np.conj(np.linalg.svd(block, full_matrices=False)[2][0])
    n = block.shape[1]
    y_norm, x_norm = float(np.linalg.norm(block @ x)), float(np.linalg.norm(x))
    g = gamma(2 * n + 4)
    error = (g * (rounding.tap_norms + rounding.symbol_error) + rounding.symbol_error) * x_norm
    bound = (y_norm * (1 - g) - error * (1 + g)) / (x_norm * (1 + g))
    return max(0.0, bound * (1 - gamma(8)))


def _twice_remainder(symbol: _Symbol, half_widths: np.ndarray, apex: float) -> float:
    """``2 s(h) = sum_a ||M_a|| apex^|a| (2 pi <|a~|, h>)^2`` over the Taylor axes, rounded up.

    ``apex^|a|`` bounds the phases' moduli on the hull axes, off the circle.
    """
    reach = symbol.centred @ half_widths  # exact: halves times powers of two, few terms
    value = float(np.sum(symbol.norms * apex ** symbol.degree * (2 * math.pi * reach) ** 2))
    return up(value, 4 * len(symbol.norms) + 8 * symbol.centred.shape[1] + 8)
