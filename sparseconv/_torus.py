"""The norm of a layer on the infinite grid: one certified bound for every input size.

**The operator.** A layer with weight ``W`` (taps ``W_t``, ``t`` over the kernel), dilation
``delta``, stride ``s`` and no padding acts on the bi-infinite grid ``Z^d`` as
``(T x)[o, m] = sum_{c, t} W[o, c, t] x[c, m s + t delta]``. Writing each input position as
``j = q s + r`` (``r`` in ``[0, s)^d``, the *phase*) and ``t delta = a_t s + r_t``, it is
``(T x)[m] = sum_t W_t x_{r_t}[m + a_t]``: a stride-1 layer from the ``C_in s^d`` polyphase
channels ``x_r[c, q] = x[c, q s + r]`` -- a unitary relabelling of the input. The Fourier
transform of ``l^2(Z^d)`` therefore turns ``T`` into multiplication by the polyphase symbol

    ``H(xi) = sum_a M_a exp(2 pi i <a, xi>)``,  ``xi`` in the torus ``[0, 1)^d``,

``M_a`` the taps with shift ``a`` placed in their phase's columns (block diagonal over the
groups), so ``||T|| = max_xi sigma_max(H(xi))`` (``H`` is continuous, so the essential supremum
is a maximum).

**Every input size.** A zero-padded layer on ``n`` inputs is ``A = R T E``: ``E`` extends the
input by zeros to ``Z^d`` (after the padding's shift, an isometry), ``T`` as above, ``R`` keeps
the outputs of the box (a coordinate projection). A compression of ``T``, so ``||A|| <= ||T||``
for every ``n`` and every zero padding, left and right, of any size. A periodic (circular)
layer on a grid ``N`` divisible by ``s`` has the singular values of ``H`` at the frequencies
``k / (N/s)``: samples of the same function, so its norm is ``<= ||T||`` too. (Reflect and
replicate padding copy inputs: not covered.)

**Certified maximum.** ``max sigma_max(H)`` over the torus is found by branch and bound on
boxes, each bounded from the ``sigma_max`` at a few vertices -- no Lipschitz constant:

* On a *hull axis* (shifts spanning at most 2: every 3x3 kernel at stride 1 or 2, 2x2,
  1x1) the shifts are centred to ``{-1, 0, 1}`` and ``H`` extends off the unit circle as
  ``z``, ``1``, ``conj(z)`` (``z = e^{2 pi i xi_d}``): real affine in ``z``, so
  ``sigma_max`` is convex in each ``z_d``. The arc of a box of width ``w`` lies in the
  triangle of its two ends and the apex ``e^{2 pi i c} / cos(pi w)`` where the end
  tangents meet; a function separately convex over a product of triangles is largest at a
  product of their vertices. So the box maximum is at most the maximum over ``3^d``
  vertices, off the circle by ``O(w^2)``.
* On a wider *Taylor axis*, with ``H(c + eta) = H0 + H1(eta) + S(eta)`` (centred shifts
  ``a~``, ``H1`` linear, ``||S|| <= s(h) = 1/2 sum_a ||M_a|| (2 pi <|a~|, h>)^2`` from
  ``|e^{i theta} - 1 - i theta| <= theta^2 / 2``), ``sigma_max(H0 + H1)`` is convex, largest
  at a vertex, where it is at most ``sigma_max(H) + s(h)``: the box maximum is at most the
  vertex maximum plus ``2 s(h)``.

A box closes when every vertex is proved below ``tau = close - 2 s(h)``, ``close`` just above
the best value found (``lower / (1 - tol)``): by one Cholesky factorization of
``mu I - G``, ``G = H H^H`` on the smaller side, formed from classes ``C_k`` precomputed once
(``G = sum_k phi_k(xi) C_k``, ``K m^2`` per vertex instead of ``m^2 n``). Boxes that do not
close are halved; a vertex on the circle that fails the test is evaluated (LAPACK's
eigenvalues) and raises the best value; the lower bound is a certified quotient
``||H x|| / ||x||`` there (:func:`_quotient_lower`). The result is ``[lower, close]``:
relative width ``tol``.
A real kernel has ``H(-xi) = conj(H(xi))``: half the torus suffices.

**A flat maximum.** Where ``sigma_max(H)`` is constant (an orthogonal layer) no box closes
below ``tol`` of it; before the search, Weyl's inequality on the Gram's classes bounds every
frequency at once, ``lambda_max(G(xi)) <= lambda_max(C_0) + sum_{delta != 0}
||C_delta||_F`` (:func:`_weyl_upper`): exact to rounding where ``G`` is constant, and the
search stops as soon as it is within ``tol`` of the best value found.

**A nearly flat maximum** (an orthogonal layer plus ``eps``, as a Lipschitz-constrained
network's) is still beyond the Weyl bound's reach, and the rules above scale with all the
taps, not with ``eps``. The *Gram's Taylor rule* (:func:`_twice_gram_remainder`) scales with
``eps``: about a box's centre, ``G`` is its first-order part (Hermitian and affine in the
offset, so its ``lambda_max`` is convex and largest at a corner) plus a remainder
``||S|| <= s = 1/2 sum_{delta != 0} ||D_delta|| (2 pi <|delta|, h>)^2`` (``D_delta``
the classes of one ``delta`` on the circle), so the box maximum of ``lambda_max(G)`` is at
most the corners' plus ``2 s``; the corners are tested against ``close^2 - 2 s``. A level
takes it instead of the hull's triangles where ``2 s`` is below what the apexes and the
symbol's remainder add (an estimate: each rule is rigorous, the choice a heuristic), or
leaves half of the margin above the best value.

**Rounding.** Frequencies are integers over ``2**40``: the turns ``<a, xi> mod 1`` are exact.
Values use :class:`sparseconv._rounding.Rounding`'s ``top_upper`` / ``top_lower``; the
quotient's product and norms are widened by their ``gamma``. A
Cholesky test is rigorous as in :func:`sparseconv._certificates.dense_upper`, with the
complex constant ``(2m - 1) gamma(4m + 8) + 2u`` and the Gram matrix's own error
``||fl(G) - G|| <= gamma(n + S^2 + 2K + 20d + 8) (apex sum_a ||M_a||_F)^2`` (inner products of
length ``n``, ``2n + 4`` roundings if complex, over ``S^2`` pairs of shifts, phases, the sum
over ``K`` classes; ``apex`` the moduli off the circle). ``||M_a||`` is LAPACK's 2-norm
widened by its backward error; every sum is rounded outward. The Gram's Taylor rule bounds
each ``||D_delta||`` by the computed sum's Frobenius norm, widened by its own rounding and
that of the sum over degrees, adds the classes' error once at the largest ``theta``, and
tests the corners against ``(close^2 (1 - 8u) - 2 s (1 + 8u)) (1 - 8u)``, below
``close^2 - 2 s``; where the budget stops it, the bound is the corners' certified values
squared plus ``2 s``, rounded up. (``top_lower``'s allowance, ``n^2 u`` for the
eigensolver, is about ``2e-8`` relative at 512 channels: the quotient, ``n u``, is what keeps
the width at ``tol``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import product

import numpy as np

from ._geometry import ConvGeometry
from ._memory import check_memory
from ._norm_result import SpectralNorm
from ._rounding import Rounding, U, gamma, scaled, up
from ._symbol import unit_scale
from ._torus_gram import (
    _FULL,
    _apex,
    _cholesky_below,
    _Circle,
    _Gram,
    _gram,
    _gram_at,
    _gram_error,
    _on_circle,
    _slack,
    _twice_gram_remainder,
    _weyl_upper,
)
from ._torus_symbol import (
    _CHUNK_BYTES,
    _check_symbol_memory,
    _chunk_bytes,
    _polyphase,
    _quotient_lower,
    _Symbol,
    _tops,
    _twice_remainder,
)
from ._typing import ArrayLike, IntOrTuple, ProgressLike
from ._validation import (
    check_progress,
    int_tuple,
    is_int,
    layer_weight,
    positive_int,
    real_number,
)

__all__ = ["toeplitz_norm"]

def _initial_exponents(symbol: _Symbol) -> list[int]:
    """``log2`` of the first grid per axis: twice the shifts' extent, 0 on constant axes."""
    extent = np.ptp(symbol.shifts, axis=0)
    return [int(e).bit_length() + 1 if e > 0 else 0 for e in extent]


def _vertex_bytes(symbol: _Symbol, width: np.ndarray) -> int:
    """The memory one box's vertices take in a round of the branch and bound: their array,
    and the keys, sets and dicts of the test, about 400 bytes a vertex in Python objects (a
    hunt: a dilation of 1000 made a first grid of 16.7 million boxes, and the process grew
    to 24 GB instead of refusing)."""
    count = math.prod(3 if symbol.hull[d] else 2 for d, w in enumerate(width.tolist()) if w)
    return count * (32 * len(width) + 400)


def _vertices(symbol: _Symbol, boxes: np.ndarray, width: np.ndarray,
              corners: bool = False) -> np.ndarray:
    """``(B, V, d, 2)``: the (turn, off-circle width) of every vertex of every box.

    A hull axis has three (both ends and the apex), a Taylor axis two, a constant axis one;
    ``corners``: two on every axis that varies, the box's corners (the Gram's Taylor rule).
    """
    options = []
    for d, w in enumerate(width.tolist()):
        lo = boxes[:, d]
        if not w:
            choices = [(lo * 0, lo * 0)]
        elif symbol.hull[d] and not corners:
            choices = [(lo, lo * 0), (lo + w, lo * 0), (lo + w // 2, lo * 0 + w)]
        else:
            choices = [(lo, lo * 0), (lo + w, lo * 0)]
        options.append(np.stack([np.stack(c, axis=-1) for c in choices], axis=1))  # (B, n, 2)
    index = np.indices([o.shape[1] for o in options]).reshape(len(options), -1)
    out = np.stack([o[:, i] for o, i in zip(options, index)], axis=2)  # (B, V, d, 2)
    out[..., 0] %= _FULL
    return out


@dataclass(frozen=True)
class _Rule:
    """How one level of the branch and bound closes its boxes: every vertex below ``tau``.

    The hull's triangles and the symbol's Taylor remainder (``corners`` False: a box's
    maximum of ``sigma_max`` is at most its vertices' plus ``added``), or the Gram's Taylor
    rule (``corners`` True: its maximum of ``sigma_max^2`` at most its corners' plus
    ``added``, :func:`_twice_gram_remainder`). ``apex``: the hull vertices' modulus factor.
    """

    tau: float
    corners: bool
    added: float
    apex: float

    @classmethod
    def of(cls, symbol: _Symbol, circle: _Circle, width: np.ndarray, close: float,
           best: float) -> _Rule:
        """The level's rule for boxes of ``width`` and the threshold ``close``: the Gram's
        where its remainder is below what the hull's apexes and the symbol's remainder add
        (an estimate, on the squares), or leaves half of the margin above the best value (a
        symbol nearly flat near its maximum); the hull's otherwise."""
        hull_width = np.array([w if h else 0 for w, h in zip(width.tolist(), symbol.hull)])
        apex = float(np.prod(_apex(hull_width)))
        taylor = _twice_remainder(symbol, np.where(symbol.hull, 0, width) / (2 * _FULL), apex)
        gram = _twice_gram_remainder(circle, width / (2 * _FULL))
        overshoot = float(np.sum(symbol.norms * (apex ** symbol.degree - 1)))
        if gram <= max(2 * close * (overshoot + taylor), (close * close - best * best) / 2):
            squared = (close * close * (1 - 8 * U) - gram * (1 + 8 * U)) * (1 - 8 * U)
            tau = math.sqrt(squared) * (1 - 8 * U) if squared > 0 else 0.0
            return cls(tau, True, gram, apex)
        return cls((close - taylor) * (1 - 4 * U), False, taylor, apex)

    def box_bound(self, top: float) -> float:
        """A box's maximum of ``sigma_max`` from ``top``, a certified bound at its vertices
        (where the budget stops the search), rounded up."""
        if self.corners:  # the corners' squares plus the Gram's remainder
            return up(math.sqrt(up(up(top * top) + self.added)))
        return up(top + self.added)


def _branch_and_bound(symbol: _Symbol, rounding: Rounding, real: bool, tol: float,
                      max_evaluations: int, seeds: np.ndarray | None = None,
                      progress: ProgressLike | None = None
                      ) -> tuple[float, float, float, bool, int]:
    """``(best computed, certified lower, certified upper, converged, evaluations)``.

    A box closes when every vertex is proved below ``tau = floor / (1 - tol) - 2 s(h)`` by a
    Cholesky factorization of ``mu I - G`` (the Gram matrix at that vertex, from the
    classes of :class:`_Gram`); or, at a level that takes the Gram's Taylor rule, when every
    corner is proved below ``sqrt(close^2 - 2 s)`` (:class:`_Rule`). ``floor`` is
    the certified upper value at the best frequency evaluated (LAPACK's eigenvalues of the
    symbol's Gram matrix, :func:`_tops`), raised whenever a frequency on the circle fails
    the test; the threshold is never lowered (nor the certified lower bound), so every
    closed box is below the final one: that is the upper bound. ``seeds``: integer
    frequencies ``(P, d)`` evaluated first. ``progress(done, 1000)``: after each level of
    boxes, the per mille of the torus proved below the threshold so far; last
    ``(1000, 1000)``.
    """
    result = _search(symbol, rounding, real, tol, max_evaluations, seeds, progress)
    if progress is not None:
        progress(1000, 1000)
    return result


class _Evaluated:
    """The symbol's values at the frequencies evaluated so far (on the circle): the best,
    and a certified lower bound on the maximum (never lowered: any frequency's certified
    value bounds it; an audit, from the code: overwritten, a tighter quotient at a new best
    could lower it)."""

    def __init__(self, symbol: _Symbol, rounding: Rounding) -> None:
        self.symbol, self.rounding = symbol, rounding
        self.values: dict[tuple, float] = {}
        self.best = 0.0
        self.certified = 0.0

    def add(self, points: np.ndarray) -> None:
        """Evaluate at the integer frequencies ``points`` ``(P, d)`` not seen yet."""
        keys = sorted({tuple(p) for p in points.tolist()} - self.values.keys())
        if not keys:
            return
        symbol, rounding = self.symbol, self.rounding
        array = np.array(keys, dtype=np.int64)
        tops = _tops(symbol, array, np.zeros_like(array))
        self.values.update(zip(keys, tops.tolist()))
        if tops.max() > self.best:
            self.best = float(tops.max())
            self.certified = max(self.certified,
                                 rounding.top_lower(self.best, symbol.rows, symbol.cols),
                                 _quotient_lower(symbol, rounding, array[np.argmax(tops)]))


class _Proofs:
    """The Cholesky tests of ``mu I - G`` at vertices ``(turn, off-circle width)``, cached:
    per vertex the smallest ``mu`` proved and the largest refused."""

    def __init__(self, symbol: _Symbol, gram: _Gram) -> None:
        self.symbol, self.gram, self.slack = symbol, gram, _slack(gram.size)
        self.passed: dict[tuple, float] = {}
        self.failed: dict[tuple, float] = {}

    def __len__(self) -> int:
        return len(self.passed) + len(self.failed)

    def below(self, points: np.ndarray, tau: float) -> np.ndarray:
        """Per vertex of ``points`` ``(P, d, 2)``: whether ``sigma_max`` there is proved at
        most ``tau``."""
        if not tau > 0:  # (a review: a remainder above the threshold made tau negative, and
            # tau * tau a threshold the vertices passed: boxes closed above their maximum)
            return np.zeros(len(points), dtype=bool)
        symbol, gram, passed, failed = self.symbol, self.gram, self.passed, self.failed
        keys = [tuple(p) for p in points.reshape(len(points), 2 * points.shape[1]).tolist()]
        unique = sorted(set(keys))
        array = np.array(unique, dtype=np.int64).reshape(len(unique), points.shape[1], 2)
        apex = np.prod(_apex(np.where(symbol.hull, array[..., 1], 0)), axis=1)
        # a test at mu proves lambda_max(fl(G)) <= mu slack / (1 - gamma(8)) (_slack), so mu
        # is (tau^2 - E) slack^-1 (1 - gamma(8)), with tau^2 rounded down first (E may be
        # most of it) and this line's six roundings outward (a mutation review's test: to
        # the nearest, a vertex was proved 1.7e-16 above tau^2)
        square = tau * tau * (1 - gamma(4))
        mu = (square - _gram_error(gram, apex)) / self.slack * (1 - gamma(8)) * (1 - gamma(8))
        known = {}
        todo = []
        for i, key in enumerate(unique):
            if mu[i] <= 0 or failed.get(key, -1.0) >= mu[i]:
                known[key] = False
            elif passed.get(key, math.inf) <= mu[i]:
                known[key] = True
            else:
                todo.append(i)
        # per point: the phases of every class and their temporaries, the Gram matrix and
        # its Cholesky factor
        per_point = 16 * 3 * (len(gram.delta) + gram.groups * gram.size ** 2)
        check_memory(per_point, "one Gram matrix of toeplitz_norm's symbol")
        chunk = max(1, _chunk_bytes(4 * _CHUNK_BYTES) // per_point)  # one product: all classes
        for start in range(0, len(todo), chunk):
            index = np.array(todo[start:start + chunk])
            ok = _cholesky_below(_gram_at(gram, array[index, :, 0], array[index, :, 1]),
                                 mu[index])
            for i, good in zip(index.tolist(), ok.tolist()):
                key = unique[i]
                known[key] = good
                if good:
                    passed[key] = min(passed.get(key, math.inf), mu[i])
                else:
                    failed[key] = max(failed.get(key, -1.0), mu[i])
        return np.array([known[k] for k in keys])


def _first_grid(symbol: _Symbol, real: bool) -> tuple[np.ndarray, np.ndarray]:
    """The boxes of the first level (their low corners, ``(B, d)``) and their width: twice
    the shifts' extent per axis, half the first active axis for a real kernel
    (``H(-xi) = conj(H(xi))``)."""
    ndim, active = symbol.shifts.shape[1], symbol.active
    exponents = _initial_exponents(symbol)
    counts = [1 << exponents[d] if d in active else 1 for d in range(ndim)]
    if real:
        counts[active[0]] //= 2
    width = np.array([_FULL >> exponents[d] if d in active else 0 for d in range(ndim)],
                     dtype=np.int64)
    check_memory(math.prod(counts) * _vertex_bytes(symbol, width),
                 "the first grid of toeplitz_norm's branch and bound (its boxes' vertices)")
    return np.array(list(product(*[range(c) for c in counts])), dtype=np.int64) * width, width


def _stopped(symbol: _Symbol, rounding: Rounding, rule: _Rule, vertices: np.ndarray) -> float:
    """Where the budget stops the search: a certified bound over the open boxes, from the
    symbol at their ``vertices`` ``(B, V, d, 2)`` (off the circle: the taps' moduli scaled by
    the apex) and the level's rule."""
    ndim = symbol.shifts.shape[1]
    scale = rule.apex ** ndim
    model = replace(rounding, tap_norms=up(rounding.tap_norms * scale),
                    symbol_error=up(2 * rounding.symbol_error * scale))
    tops = _tops(symbol, vertices[..., 0].reshape(-1, ndim), vertices[..., 1].reshape(-1, ndim))
    return rule.box_bound(float(model.top_upper(float(tops.max()), symbol.rows, symbol.cols)))


def _search(symbol: _Symbol, rounding: Rounding, real: bool, tol: float, max_evaluations: int,
            seeds: np.ndarray | None, progress: ProgressLike | None
            ) -> tuple[float, float, float, bool, int]:
    """:func:`_branch_and_bound`'s search, without its last progress call."""
    ndim, active = symbol.shifts.shape[1], symbol.active
    seen = _Evaluated(symbol, rounding)
    if seeds is not None and len(seeds):
        seen.add(seeds % _FULL)
    if not active:
        seen.add(np.zeros((1, ndim), dtype=np.int64))
        top = seen.best
        return top, rounding.top_lower(top, symbol.rows, symbol.cols), \
            float(rounding.top_upper(top, symbol.rows, symbol.cols)), True, 1
    gram = _gram(symbol)
    proofs = _Proofs(symbol, gram)
    circle = _on_circle(gram)
    weyl, constant = _weyl_upper(circle, proofs.slack)
    boxes, width = _first_grid(symbol, real)
    seen.add(boxes)  # the corners of the first grid: a floor to start from
    converged = True
    level = len(boxes)  # the boxes of the whole domain at the current width
    close = 0.0
    while True:
        # any number is a valid threshold (the proofs are against tau, rounded down below
        # it), but the search ends only if it is above the maximum: the best value plus
        # tol/2 and the lower bound's own distance to it. Never lowered: every box closed
        # so far is below every later threshold (the distance can shrink as the best rises)
        lower = seen.certified
        close = best_close = max(close, lower / (1 - 0.999 * tol),
                                 seen.best * (1 + tol / 2) + (seen.best - lower))
        if weyl <= close or constant:  # the Gram's constant class bounds it already (a flat
            # maximum); or, the Gram constant to rounding, no box would close nearer
            best_close, converged = weyl, weyl <= close
            break
        rule = _Rule.of(symbol, circle, width, close, seen.best)
        check_memory(len(boxes) * _vertex_bytes(symbol, width),
                     "the vertices of toeplitz_norm's branch and bound")
        vertices = _vertices(symbol, boxes, width, corners=rule.corners)
        flat = vertices.reshape(-1, ndim, 2)
        ok = proofs.below(flat, rule.tau)
        on_circle = ~flat[..., 1].any(axis=1) & ~ok
        if on_circle.any():  # a frequency above the floor: its value raises the floor
            seen.add(flat[on_circle, :, 0])
        still = ~ok.reshape(len(boxes), -1).all(axis=1)
        boxes = boxes[still]
        if progress is not None:  # the share of the domain closed, in boxes of this width
            progress(min(999, 1000 * (level - len(boxes)) // level), 1000)
        if not len(boxes):
            break
        if len(proofs) >= max_evaluations or width[active].min() < 4:
            converged = False
            best_close = max(close, _stopped(symbol, rounding, rule, vertices[still]))
            break
        width = width // 2
        halves = np.array(list(product(*[(0, w) if w else (0,) for w in width.tolist()])))
        level *= len(halves)
        check_memory(16 * ndim * len(boxes) * len(halves) * (1 + len(vertices[0])),
                     "the open boxes of toeplitz_norm's branch and bound")
        boxes = (boxes[:, None, :] + halves[None]).reshape(-1, ndim)
    return (seen.best, seen.certified, min(best_close, weyl), converged,
            len(proofs) + len(seen.values))


def _undilated(stride: tuple[int, ...], dilation: tuple[int, ...]
               ) -> tuple[tuple[int, ...], int]:
    """The stride and dilation of an undilated layer with the same norm on the infinite grid:
    per axis ``s / g`` and 1, ``g = gcd(s, d)``.

    Output ``o = d q + r`` reads input ``s o + d t = d (s q + a_r + t) + b_r`` (``s r = d a_r
    + b_r``): one residue class of the inputs mod ``d``, the undilated stride-``s`` layer in
    ``q``. The ``d / g`` classes ``r`` mod ``d / g`` read distinct input classes, and the
    ``g`` outputs ``r + m d / g`` of one of them read ``s' (g q + m) + a_r + t`` (``s = g
    s'``): together the undilated stride-``s'`` layer in ``g q + m``. So the layer is ``d /
    g`` disjoint copies of that one, up to permutations of its inputs and outputs: the same
    norm, found on a symbol whose shifts do not grow with ``d`` (a review: a stride of 2 and
    a dilation of 1001, shifts 0, 500 and 1001 with no common divisor, evaluated 10 million
    frequencies in 50 s and then refused for memory; a stride of (2, 3) and a dilation of
    (5, 7) took 75 s where the undilated layer takes 0.02 s)."""
    common = [math.gcd(s, d) for s, d in zip(stride, dilation)]
    return tuple(s // g for s, g in zip(stride, common)), 1


def _result(value: float, lower: float, upper: float, converged: bool) -> SpectralNorm:
    """A :class:`SpectralNorm` whose method is "torus"."""
    if lower > upper:
        raise RuntimeError(
            f"toeplitz_norm proved lower bound {lower!r} above upper bound {upper!r}: one "
            "certificate is wrong; this is a bug in sparseconv, please report it with the layer")
    return SpectralNorm(value, lower, upper, "torus", {"torus": upper}, converged)


def toeplitz_norm(weight: ArrayLike, *, stride: IntOrTuple = 1, dilation: IntOrTuple = 1,
                  groups: int = 1, tol: float = 1e-8, max_evaluations: int = 200_000,
                  progress: ProgressLike | None = None) -> SpectralNorm:
    """The norm of a layer on the infinite grid: a certified bound for every input size.

    ``||T|| = max_xi sigma_max(H(xi))`` over the continuous frequency torus, ``H`` the
    (polyphase) symbol of the kernel. It bounds the spectral norm of the layer for every input
    size and every zero padding, and of the periodic (circular) layer on every grid divisible
    by the stride; it is the limit of the zero-padded norms as the input grows.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, k_1, ..., k_d)
        Real or complex, finite, any number ``d`` of spatial dimensions (converted exactly to
        float64 or complex128).
    stride, dilation, groups
        As :func:`sparseconv.conv_matrix`. No padding argument: the bound holds for all.
    tol : float, optional
        Relative width of the interval, in ``[1e-12, 1)``.
    max_evaluations : int, optional
        The most frequencies at which the symbol is tested or evaluated; if reached (a symbol
        whose maximum is flat on part of the torus only), the bounds are returned as they
        are, still certified, with ``converged=False`` unless they are within ``tol`` all the
        same. (A symbol of constant norm, as an orthogonal layer's, is proved at once by the
        Weyl bound of its Gram matrix; a nearly constant one, by a Taylor rule on the Gram
        matrix whose remainder scales with its variation.)
    progress : callable, optional
        ``progress(done, total)`` with ``total = 1000``: after each level of the branch and
        bound, the per mille of the frequency torus proved below the bound so far (a level
        halves every open box); the last call is ``(1000, 1000)``, also where the budget
        stopped the search.

    Returns
    -------
    SpectralNorm
        ``method == "torus"``; ``value`` the largest computed ``sigma_max(H(xi))``, and
        ``lower <= ||T|| <= upper``, both certified (rounding included).

    Raises
    ------
    ValueError
        Invalid layer arguments, ``tol`` or ``max_evaluations``, non-finite weights.
    TypeError
        An argument of the wrong type.
    MatrixTooLargeError
        The polyphase symbol (``C_out/groups x C_in/groups * prod(stride)`` per group and
        shift) beyond the memory limit, before it is built; one batch of its evaluations,
        before that batch (the branch and bound holds several such arrays at once: up to
        30x the largest on ResNet-18's layers, a few hundred MB).

    See Also
    --------
    spectral_norm : the norm for one input size (exact, or a tighter certified interval).
    frequency_map : ``sigma_max(H)`` on the discrete grid of a periodic layer.

    Notes
    -----
    ``A = R T E`` for a zero-padded layer (``E`` extends by zeros, ``R`` keeps the output box),
    so ``||A|| <= ||T||``. The maximum is certified by branch and bound on the torus: a box
    is bounded by ``sigma_max`` at the vertices of triangles enclosing its frequency arcs
    (``sigma_max`` is convex in ``e^{2 pi i xi}`` for kernels of span <= 2 per axis, 3x3 at
    stride 1 or 2 among them) plus a second-order Taylor remainder on wider axes, or, where
    the symbol is nearly flat, by its Gram matrix at the box's corners plus the Gram's own
    second-order remainder (which scales with how far the Gram is from constant); each
    vertex is proved below the threshold by a Cholesky factorization of its Gram matrix
    (``O(C^3 / 3)`` for ``C`` channels per group). The derivation and the rounding model are
    in :mod:`sparseconv._torus` (the user guide's "How the bounds are proved"). On the
    infinite grid a dilation ``d`` at stride ``s`` gives ``d / g`` disjoint copies of the
    undilated layer at stride ``s / g`` (``g = gcd(s, d)`` per axis), so the bound is that
    layer's, found in the same time for any dilation. This bound is the
    one Araujo et al. (AAAI 2021) approximate on a grid (their LipGrid), made rigorous, and
    the limit that Delattre et al.'s (ICML 2024) Gram iteration for zero-padded layers
    bounds from above.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import toeplitz_norm, spectral_norm
    >>> r = toeplitz_norm(np.array([[[1.0, 2.0, 1.0]]]))    # |1 + 2 e^{iw} + e^{2iw}| <= 4
    >>> r.method, round(float(r), 12), bool(r.lower <= 4.0 <= r.upper)
    ('torus', 4.0, True)
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> r = toeplitz_norm(w)
    >>> r.relative_width <= 1e-8
    True
    >>> all(spectral_norm(w, (4, n, n), padding=1).upper <= r.upper for n in (4, 9))
    True
    """
    weight = layer_weight(weight, finite=True)
    groups = positive_int(groups, "groups")
    tol = real_number(tol, "tol", low=1e-12, high=1.0)
    if not is_int(max_evaluations):
        raise TypeError(f"max_evaluations must be a positive integer, got {max_evaluations!r}")
    max_evaluations = positive_int(max_evaluations, "max_evaluations")
    progress = check_progress(progress)
    # the geometry validates groups; any input size is fine: the kernel's own
    span = [1] * max(weight.ndim - 2, 1)
    if weight.ndim >= 3:
        ndim = weight.ndim - 2
        stride, dilation = _undilated(int_tuple(stride, ndim, "stride", 1, broadcast_one=True),
                                      int_tuple(dilation, ndim, "dilation", 1,
                                                broadcast_one=True))
        span = list(weight.shape[2:])
        if max(span) >= 1 << 22:  # shifts times 2**40 frequencies stay within int64
            raise ValueError(f"kernel_size must be below 2**22 per axis, got "
                             f"weight.shape={weight.shape}")
    geom = ConvGeometry.from_weight(weight.shape, (weight.shape[1] * groups, *span),
                                    stride=stride, dilation=dilation, groups=groups)
    _check_symbol_memory(geom)
    weight = weight.astype(np.complex128 if weight.dtype.kind == "c" else np.float64)
    if not weight.any():
        if progress is not None:
            progress(1000, 1000)
        return SpectralNorm(0.0, 0.0, 0.0, "zero", {"zero": 0.0})
    weight, exponent = unit_scale(weight)  # exact; the results are scaled back by 2**exponent
    symbol = _polyphase(weight, geom)
    best, lower, upper, converged, _ = _branch_and_bound(
        symbol, Rounding.of(weight, groups), weight.dtype.kind != "c", tol, max_evaluations,
        progress=progress)
    result = _result(scaled(best, exponent), scaled(lower, exponent, False),
                     scaled(upper, exponent, True), converged)
    if not converged and result.relative_width <= tol:  # the budget reached, the interval
        # within tol all the same (an audit: tol=1e-12 ended 9.99e-13 wide, converged=False)
        result = replace(result, converged=True)
    if converged and not result.relative_width <= tol:  # (a hunt: scaled back into the
        # subnormals, the bounds round outward; that width, or an infinite upper bound's
        # undefined one, is not within tol any more)
        result = replace(result, converged=False)
    return result
