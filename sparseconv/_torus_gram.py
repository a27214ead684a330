"""The Gram matrix of a layer's polyphase symbol, for :mod:`sparseconv._torus`.

``G(xi) = H(xi) H(xi)^H`` on the smaller side, as a sum of classes computed once
(:class:`_Gram`), evaluated at a frequency (on the circle or off it, at a hull's apex), its
rounding error (:func:`_gram_error`), the Cholesky test that proves ``lambda_max(G) <= mu``
(:func:`_cholesky_below`, :func:`_slack`), and the two bounds read off its classes on the
circle (:class:`_Circle`): Weyl's, for every frequency at once (:func:`_weyl_upper`), and
the remainder of its second-order Taylor rule on a box (:func:`_twice_gram_remainder`).
The derivations and the rounding model are in :mod:`sparseconv._torus`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._memory import check_memory
from ._rounding import U, gamma, up

if TYPE_CHECKING:
    from ._torus_symbol import _Symbol

_BITS = 40
_FULL = 1 << _BITS  #: a frequency xi is the integer xi * 2**40: exact turns, no drift


def _apex(width: np.ndarray) -> np.ndarray:
    """``1 / cos(pi w)`` rounded up: the apex of the triangle around an arc of ``w`` turns.

    The arc ``exp(2 pi i t)``, ``t`` in ``[c - w/2, c + w/2]``, lies in the triangle of its
    two ends and ``exp(2 pi i c) / cos(pi w)``, where the tangents at the ends meet.
    """
    return np.where(width > 0, 1 / np.cos(np.pi * (width / _FULL)) * (1 + 16 * U), 1.0)


@dataclass(frozen=True)
class _Gram:
    """``G(xi) = sum_k phi_k(xi) C_k``: the symbol's Gram matrix on its smaller side.

    With ``psi_a`` the phase of shift ``a`` (:func:`_phases`; ``rho^|a| e^{2 pi i <a, t>}``
    on hull axes), ``G = H H^H = sum_{a,b} psi_a conj(psi_b) M_a M_b^H`` and
    ``psi_a conj(psi_b) = prod_d rho_d^{|a_d|+|b_d|} e^{2 pi i (a_d - b_d) t_d}``: one class
    ``k`` per ``(a - b, |a| + |b|)``. Forming ``G`` at a frequency costs ``K m^2`` instead of
    ``m^2 n``; the classes are computed once.
    """

    delta: np.ndarray  # (K, d) int64: a - b
    degree: np.ndarray  # (K, d) int: |a_d| + |b_d| on hull axes, 0 on Taylor axes
    blocks: np.ndarray  # (K, groups * m * m)
    groups: int
    size: int
    frobenius: float  # sum_a ||M_a||_F (all groups), rounded up
    inner: int  # the length of the inner products of one C_k entry
    pairs: int  # S^2


#: Blocks of at least this many entries are multiplied and added one pair at a time: numpy's
#: batched product (its gathers) and ``np.add.at`` are 2-10x slower there (512 channels).
_LARGE = 4096


def _products(blocks: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``blocks[first[k]] @ blocks[second[k]]^H`` for every ``k``, stacked."""
    if blocks[0].size < _LARGE:
        return blocks[first] @ np.conj(blocks[second]).transpose(0, 1, 3, 2)
    out = np.empty((len(first), blocks.shape[1], blocks.shape[2], blocks.shape[2]),
                   dtype=blocks.dtype)
    for k, (i, j) in enumerate(zip(first.tolist(), second.tolist())):
        np.matmul(blocks[i], np.conj(blocks[j]).transpose(0, 2, 1), out=out[k])
    return out


def _accumulate(sums: np.ndarray, where: np.ndarray, values: np.ndarray) -> None:
    """``sums[where[k]] += values[k]`` in the order of ``k``."""
    if values[0].size < _LARGE if len(values) else True:
        np.add.at(sums, where, values)
    else:
        for k, value in zip(where.tolist(), values):
            sums[k] += value


def _gram(symbol: _Symbol) -> _Gram:
    blocks = symbol.blocks.reshape(-1, symbol.groups, symbol.rows, symbol.cols)
    shifts = symbol.shifts
    if symbol.rows > symbol.cols:  # H^H = sum_a psi_{-a} M_a^H: the same form, smaller side
        blocks, shifts = np.conj(blocks).transpose(0, 1, 3, 2), -shifts
    count, m = len(shifts), blocks.shape[2]
    # the products, their mirrors and sums; each pair's indices, class and their sort
    check_memory(16 * (2 * count) ** 2 * symbol.groups * m * m // 2
                 + (64 + 32 * shifts.shape[1]) * count ** 2, "the Gram classes of toeplitz_norm")
    hull = np.array(symbol.hull)
    # every product M_a M_b^H once (a before b) and its class (a - b, |a| + |b| on hull
    # axes) as one integer, lexicographic in the pair (a - b, degree); oriented so that a -
    # b is lexicographically positive: C_(b - a) = C_(a - b)^H is then its mirror, summed in
    # the same order (so exactly its conjugate transpose); the diagonal's M_a M_a^H go to
    # the classes of 0 (distinct shifts: no other pair does)
    first, second = np.triu_indices(count, 1)
    delta = shifts[first] - shifts[second]
    turned = np.zeros(len(delta), dtype=bool)
    undecided = np.ones(len(delta), dtype=bool)
    for d in range(delta.shape[1]):  # the first nonzero component's sign
        turned |= undecided & (delta[:, d] < 0)
        undecided &= delta[:, d] == 0
    first, second = np.where(turned, second, first), np.where(turned, first, second)
    delta[turned] = -delta[turned]
    products = _products(blocks, first, second)
    reach = np.abs(shifts).max(axis=0)  # |a - b| <= 2 reach, |a| + |b| <= 2 reach

    def code(delta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros(len(delta), dtype=np.int64)
        for d in range(delta.shape[1]):
            out = out * (4 * reach[d] + 1) + delta[:, d] + 2 * reach[d]
        for d in range(delta.shape[1]):
            out = out * (2 * reach[d] + 1) + (np.abs(a[:, d]) + np.abs(b[:, d]) if hull[d]
                                              else 0)
        return out

    codes = np.concatenate([code(delta, shifts[first], shifts[second]),
                            code(-delta, shifts[first], shifts[second]),
                            code(0 * shifts, shifts, shifts)])
    unique, where = np.unique(codes, return_inverse=True)
    classes = np.zeros((len(unique), *products.shape[1:]), dtype=blocks.dtype)
    pairs = len(products)  # (each class takes the pieces of one of the three)
    _accumulate(classes, where[:pairs], products)
    _accumulate(classes, where[pairs:2 * pairs], np.conj(products).transpose(0, 1, 3, 2))
    _accumulate(classes, where[2 * pairs:], _products(blocks, *np.diag_indices(count)))
    keys = np.zeros((len(unique), 2 * delta.shape[1]), dtype=np.int64)
    rest = unique.copy()
    for d in reversed(range(delta.shape[1])):  # the code's digits, last first
        rest, keys[:, delta.shape[1] + d] = np.divmod(rest, 2 * reach[d] + 1)
    for d in reversed(range(delta.shape[1])):
        rest, keys[:, d] = np.divmod(rest, 4 * reach[d] + 1)
        keys[:, d] -= 2 * reach[d]
    frob = up(sum(float(np.linalg.norm(b)) for b in blocks), blocks.size + 2 * count)
    ndim = shifts.shape[1]
    return _Gram(np.ascontiguousarray(keys[:, :ndim], dtype=np.int64),
                 np.ascontiguousarray(keys[:, ndim:]), classes.reshape(len(keys), -1),
                 symbol.groups, m, frob, blocks.shape[3], count * count)


def _gram_at(gram: _Gram, turns: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``(F, groups, m, m)``: ``G`` at the points (``widths``: off the circle, hull axes)."""
    phase = np.ones((len(turns), len(gram.delta)), dtype=np.complex128)
    for d in range(gram.delta.shape[1]):  # each axis's factors once per distinct exponent
        # (a 16x16 kernel: 961 classes, 31 distinct a - b per axis; the same values, in the
        # same operations, as per class)
        deltas, which = np.unique(gram.delta[:, d], return_inverse=True)
        degrees, order = np.unique(gram.degree[:, d], return_inverse=True)
        turn = (deltas[None, :] * turns[:, d, None]) % _FULL / _FULL
        moduli = _apex(widths[:, d])[:, None] ** degrees[None, :]
        phase *= np.exp(2j * np.pi * turn)[:, which] * moduli[:, order]
    if gram.blocks.dtype.kind == "c":
        g = phase @ gram.blocks
    else:
        g = phase.real @ gram.blocks + 1j * (phase.imag @ gram.blocks)
    return g.reshape(len(turns), gram.groups, gram.size, gram.size)


def _gram_error(gram: _Gram, apex: np.ndarray) -> np.ndarray:
    """A bound on ``||fl(G) - G||_2`` at points whose hull moduli multiply to ``apex``.

    ``fl(C_k)``: inner products of length ``n`` (``2n + 4`` roundings where the taps are
    complex, as :mod:`sparseconv._rounding` counts a complex one; a review: ``n`` was counted
    for both) summed over at most ``S^2`` pairs, ``gamma(n + S^2) sum |M_a| |M_b|^T``, which
    also bounds ``sum_k ||fl(C_k) - C_k||`` (:func:`_twice_gram_remainder` takes it so); the
    phases: ``20 d u`` relative (exact turns, one exp and a product of ``d`` factors per
    class); the sum over ``K`` classes of complex products, ``gamma(2K + 4)``. Each is at
    most its ``gamma`` times ``(apex sum_a ||M_a||_F)^2``.
    """
    d, classes = gram.delta.shape[1], len(gram.delta)
    inner = 2 * gram.inner + 4 if gram.blocks.dtype.kind == "c" else gram.inner
    factor = gamma(inner + gram.pairs + 2 * classes + 20 * d + 8) * 1.01
    return (factor * (apex * gram.frobenius) ** 2) * (1 + 8 * U)


def _cholesky_below(matrices: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Per matrix ``(F, groups, m, m)``: whether ``mu I - G`` factors for every group."""
    shifted = -matrices
    idx = np.arange(matrices.shape[-1])
    shifted[..., idx, idx] += mu[:, None, None]
    try:  # (a NaN pivot may pass LAPACK's potrf: every factor's diagonal must be finite)
        factors = np.linalg.cholesky(shifted)
        return np.isfinite(np.diagonal(factors, axis1=-2, axis2=-1)).all(axis=(1, 2))
    except np.linalg.LinAlgError:
        pass
    out = np.ones(len(matrices), dtype=bool)
    for f in range(len(matrices)):
        try:
            factor = np.linalg.cholesky(shifted[f])
            out[f] = bool(np.isfinite(np.diagonal(factor, axis1=-2, axis2=-1)).all())
        except np.linalg.LinAlgError:
            out[f] = False
    return out


def _slack(m: int) -> float:
    """What a completed complex Cholesky factorization of ``mu I - fl(G)`` (``m x m``) leaves
    of ``mu``: it proves ``lambda_max(fl(G)) <= mu * slack / (1 - gamma(8))``. Rounded up
    (to the nearest, ``1 + ...`` fell below the formula by ``O(u^2)``: a review's test)."""
    return up(1 + (2 * m - 1) * gamma(4 * m + 8) + 2 * U, 4)


@dataclass(frozen=True)
class _Circle:
    """The Gram's classes on the circle: ``G(xi) = C_0 + sum_{delta != 0} D_delta e^{2 pi i
    <delta, xi>}``, ``D_delta`` the classes of one ``delta`` summed over their degrees
    (:func:`_on_circle`): what the Weyl bound and the Gram's Taylor rule read."""

    c0: np.ndarray  # (groups, m, m): the constant class, computed
    delta: np.ndarray  # (J, d) int64: every delta != 0
    norms: np.ndarray  # (J, groups): certified bounds on ||D_delta|| per group
    error: float  # a bound on sum_k ||fl(C_k) - C_k|| (_gram_error at apex 1: its first term)


def _on_circle(gram: _Gram) -> _Circle:
    """The classes summed over their degrees; each ``||D_delta||`` per group is the computed
    sum's Frobenius norm, widened by that norm's rounding and the sum's (``gamma(K + 1)`` of
    the summed classes' norms: at most a few degrees per delta)."""
    groups, m = gram.groups, gram.size
    blocks = gram.blocks.reshape(len(gram.delta), groups, m, m)
    parts: dict[tuple, list] = {}
    for key, block in zip(map(tuple, gram.delta.tolist()), blocks):
        parts.setdefault(key, []).append(block)
    zero = tuple([0] * gram.delta.shape[1])
    c0 = sum(parts[zero][1:], parts[zero][0])
    keys = sorted(k for k in parts if k != zero)
    norms = np.zeros((len(keys), groups))
    for j, key in enumerate(keys):
        total = sum(parts[key][1:], parts[key][0])
        loose = sum(np.linalg.norm(b.reshape(groups, -1), axis=1) for b in parts[key])
        norms[j] = (np.linalg.norm(total.reshape(groups, -1), axis=1) * (1 + gamma(m * m + 4))
                    + gamma(len(parts[key]) + 1) * loose * (1 + gamma(len(parts[key]) + 4)))
    return _Circle(c0, np.array(keys, dtype=np.int64).reshape(len(keys), -1), norms,
                   float(_gram_error(gram, np.array(1.0))))


def _weyl_upper(circle: _Circle, slack: float) -> tuple[float, bool]:
    """A certified bound on ``max_xi sigma_max(H(xi))`` from the Gram classes alone.

    On the circle ``G(xi) = C_0 + sum_{delta != 0} e^{2 pi i <delta, xi>} D_delta``
    (:class:`_Circle`), ``D_{-delta} = D_delta^H``, so by Weyl's inequality
    ``lambda_max(G(xi)) <= lambda_max(C_0) + sum_{delta != 0} ||D_delta||`` for every ``xi``,
    per group. Loose in general; exact where the symbol's Gram is constant: an orthogonal
    layer (``H^H H = I``), whose flat maximum the branch and bound can never close (a new
    user's trial: 37 s, ``converged=False``, 2e-5 wide, on an 8-channel one).
    ``lambda_max(C_0)`` is certified by a completed Cholesky factorization of ``mu I -
    fl(C_0)`` (as the branch and bound's tests: ``slack``), and the computed classes' error
    is counted twice, once for ``C_0`` and once for the sum.

    Returns the bound and whether the Gram is constant to rounding (every ``D_delta``, delta
    != 0, within that error): then no box of the search can close nearer than this bound
    does, and a ``tol`` below its width is not searched for (an audit: ``tol=1e-12`` on a
    2-D orthogonal layer, 1.2e-12 wide, ran the search 34 s to its budget).
    """
    error = circle.error
    bound, flat = 0.0, True
    for g, c0 in enumerate(circle.c0):
        off = up(float(circle.norms[:, g].sum()), len(circle.norms) + 4)
        flat = flat and off <= error
        top = float(np.linalg.eigvalsh(c0)[-1])
        for lift in (1e-12, 1e-8, 1e-4):  # a mu the Cholesky test passes, just above top
            mu = max(top, 0.0) * (1 + lift) + lift * error + np.finfo(float).tiny
            if _cholesky_below(c0[None, None], np.array([mu]))[0]:
                break
        else:  # pragma: no cover - lambda_max(fl(C_0)) is within LAPACK's error of top
            return math.inf, False
        bound = max(bound, up(up(mu * slack / (1 - gamma(8)), 4) + off + 2 * error, 4))
    return math.sqrt(bound) * (1 + 2 * U), flat


def _twice_gram_remainder(circle: _Circle, half_widths: np.ndarray) -> float:
    """``2 s`` of the Gram's second-order Taylor rule for boxes of ``half_widths`` (turns).

    About a box's centre ``c``, ``G(c + eta) = L(eta) + S(eta)`` with ``L`` the first-order
    part, ``sum_delta D_delta e^{2 pi i <delta, c>} (1 + 2 pi i <delta, eta>)``: Hermitian and
    affine in ``eta``, so ``lambda_max(L)`` is convex and largest at a corner; and
    ``||S|| <= s = 1/2 sum_{delta != 0} ||D_delta|| theta_delta^2``, ``theta_delta = 2 pi
    <|delta|, h>``, from ``|e^{i theta} - 1 - i theta| <= theta^2 / 2`` (per group, the
    largest taken). So over the box ``lambda_max(G) <= max over the corners of
    lambda_max(G) + 2 s``. ``s`` scales with the classes off the constant one: an orthogonal
    layer plus ``1e-6`` has ``s`` of order ``1e-6 h^2``, where the hull's triangles, scaled
    by all the taps, close no box below ``tol`` of its flat maximum. The computed classes'
    error enters once, at the largest ``theta``.
    """
    if not len(circle.delta):
        return 0.0
    theta = 2 * math.pi * (np.abs(circle.delta) @ half_widths)
    value = float((theta ** 2 @ circle.norms).max() + circle.error * float(theta.max()) ** 2)
    return up(value, 4 * len(circle.norms) + 8 * circle.delta.shape[1] + 16)
