"""The lower bound of a certified spectral norm: a Rayleigh quotient, evaluated rigorously.

Any ``||A u|| / ||u||`` is at most ``||A||``, whatever ``u``. The vector comes from Lanczos
on the Gram matrix of the smaller side (``A^H A`` or ``A A^H``), matrix-free, started from the
witnesses of the exact sections (the top eigenvector of the block that set the upper bound,
as a windowed wave along the periodic axes); the quotient is then evaluated explicitly and
widened by its rounding allowance (:meth:`Rounding.quotient_lower`).

The Lanczos basis is the memory of this stage: at most 32 vectors, fewer if the memory limit
says so, sized before it is allocated; a full basis thick-restarts from its top half of Ritz
vectors (Wu and Simon), so that a layer of any size gets its bound and each step reads a
bounded basis.

A large layer searches in single precision when the caller passes the operator in it: its
products and the basis' reads take half the time, for about the same number of steps. The
search runs to half of ``tol``, or of :data:`SINGLE_REACH` when ``tol`` is tighter; its top
:data:`RITZ` Ritz vectors are combined in double precision (Rayleigh-Ritz: the best vector
of their span, which separates two top eigenvalues closer than single precision's products
can), and the result is checked there (its quotient against the proved ceiling, and its
residual if the search met ``tol`` or better). If that check fails the double-precision
iteration goes on from it (it stays a candidate). The bound is always a double-precision
quotient.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import LinearOperator

from ._geometry import ConvGeometry, dense_weight
from ._memory import MatrixTooLargeError, check_memory, fits, format_bytes, get_memory_limit
from ._rounding import Rounding, up
from ._section_gram import section_gram

__all__ = ["banded_lower_bound", "check_lanczos_memory", "lower_bound", "start_vector"]


def start_vector(geom: ConvGeometry, grid, witnesses: dict) -> np.ndarray:
    """A near-optimal input from the witness blocks: in each group, exact along the witness's
    axis and a windowed wave at its frequency along the others (the block's input in the
    periodic embedding)."""
    check_memory(32 * geom.shape[1], "the start vector of spectral_norm's lower bound")
    c_in = geom.in_channels // geom.groups
    positions = np.indices(geom.input_size)
    x = np.zeros((geom.in_channels, *geom.input_size), dtype=complex)
    for witness in witnesses.values():
        others = [d for d in range(geom.ndim) if d != witness.axis]
        n_e = geom.input_size[witness.axis]
        profile = witness.vector.reshape(n_e, c_in, *[geom.stride[d] for d in others])
        wave = 1.0
        for d, xi in zip(others, witness.xi):
            a, m = geom.axes[d], grid[d] // geom.axes[d].stride
            wave = wave * np.exp(2j * np.pi * (positions[d] // a.stride) * xi / m)
            wave = wave * np.sin(np.pi * (positions[d] + 1) / (a.size + 1))
        # profile[p_e, c, phases of the other axes] at every input position
        index = (positions[witness.axis], slice(None),
                 *(positions[d] % geom.axes[d].stride for d in others))
        values = np.moveaxis(profile[index], -1, 0) * wave  # (c, *input_size)
        norm = np.linalg.norm(values)
        x[witness.group * c_in:(witness.group + 1) * c_in] = values / (norm if norm else 1.0)
    return x.ravel()


def check_lanczos_memory(op) -> None:
    """Refuse, before any other stage runs, a lower bound whose few vectors cannot fit.

    The smallest Lanczos that can run keeps 3 basis vectors and 3 work vectors of the larger
    side within half the limit (:func:`_basis_size`), and the start vector (complex) of the
    input.
    """
    n, itemsize = max(op.shape), np.dtype(op.dtype).itemsize
    check_memory(12 * n * itemsize + 32 * op.shape[1],
                 f"the Lanczos vectors of spectral_norm (6 vectors of {n} entries, in half the "
                 "limit)")
    small = min(op.shape)
    sizing = getattr(op, "_apply_bytes" if op.shape[0] >= op.shape[1] else
                     "_apply_adjoint_bytes", None)
    if small <= 64 and sizing is not None:  # (a review: refused only after the other stages,
        # by a product's message that named neither spectral_norm nor its lower bound)
        check_memory(sizing(small, itemsize) + 2 * n * small * itemsize,
                     f"the {small} columns of the Gram matrix behind spectral_norm's lower "
                     "bound (one product of that many columns)")


#: The most Lanczos vectors kept at once: a full basis thick-restarts to its top half of Ritz
#: vectors, so that each step's reorthogonalization reads at most this many vectors. On large
#: grids that reading costs as much as the products: 32 takes 3% more steps than 64 and 15-25%
#: less time (64->64 on 112x112, single precision, one core: 242 steps in 12-13 s against 235
#: in 15.5-16 s; 64->64 5x5 on 12x12: 100 steps against 98).
BASIS = 32


def _basis_size(n: int, itemsize: int, maxiter: int) -> int:
    """How many Lanczos vectors to keep: at most :data:`BASIS` and what half the memory limit
    holds (at least 3), at most ``maxiter + 1``."""
    limit = get_memory_limit()
    # half the limit: the operator's scratch, the work vectors and the caller's arrays need room
    fits = maxiter + 1 if limit is None else limit // (2 * n * itemsize) - 3
    if fits < 3:
        assert limit is not None  # without a limit, fits = maxiter + 1 > 64 (see lower_bound)
        raise MatrixTooLargeError(
            f"the Lanczos vectors of spectral_norm need {format_bytes(12 * n * itemsize)} "
            f"(6 vectors of {n} entries, in half the limit), more than the memory limit of "
            f"{format_bytes(limit)}; raise it with sparseconv.set_memory_limit(nbytes)",
            needed=12 * n * itemsize)
    return int(min(fits, BASIS, maxiter + 1))


#: Layers with at least this many rows or columns run the Lanczos search in single precision
#: when the caller has the operator in it (:func:`lower_bound`).
SINGLE_FROM = 2**14

#: The tightest ``tol`` the single-precision search aims at (half of it): below, the
#: double-precision iteration finishes from its vector, in fewer steps than from the
#: witnesses' start. A single-precision step costs half a double-precision one, and on
#: layers whose top eigenvalues lie a few 1e-7 apart (VGG-11's) the search only tells them
#: apart after 150-250 steps, however it is started: so the search goes as far as its
#: precision lets it (2e-7: half of it, 1e-7, at the default ``tol``), and the double-
#: precision iteration then needs a few steps from the Rayleigh-Ritz vector of its top
#: :data:`RITZ` Ritz vectors (VGG-11's features.2: 11 steps after 260, where it took 173
#: from the top Ritz vector of a search to 2.5e-6). Against that search (5e-6 here until
#: 2026-12-04), the lower bound alone, two layers at once on 2026-12-04's Zen 4 (a scratch
#: copy of both routes): VGG-11's features.1-3 and 5-7 105.4 -> 77.9 s (20.5 -> 15.4, 23.8
#: -> 15.8, 24.9 -> 19.2, 15.1 -> 13.9, 4.6 -> 5.2, 16.5 -> 8.4 s), ResNet-18's stem and
#: seven 3x3 layers 20.6 -> 18.0 s (one of them, layer2.1.conv1, 2.4 -> 4.2 s: the longer
#: search found a quotient 3e-8 above the one the shorter search had stopped at, converged).
SINGLE_REACH = 2e-7

#: How many of the single-precision search's top Ritz vectors the double-precision check
#: combines by Rayleigh-Ritz (one product each).
RITZ = 4


def _near_ceiling(theta: float, ceiling: float, tol: float) -> bool:
    """Whether the Ritz value ``theta`` proves its norm ``sqrt(theta)`` within ``tol``
    (relative) of the norm, ``ceiling`` being a proved bound on ``lambda_max``: ``sqrt(theta)
    >= (1 - tol) sqrt(ceiling) >= (1 - tol) ||A||``. (On the norm, as :func:`_converged`: the
    squares' test ``theta >= (1 - tol) ceiling`` asked for half of ``tol``.)"""
    return theta >= ceiling * (1 - tol) ** 2


def _converged(values: np.ndarray, residual: float, tol: float) -> bool:
    """Whether the top Ritz value is within ``tol`` (relative, on the norm) of ``lambda_max``.

    The top Ritz value ``theta`` is within ``r`` (its residual) of an eigenvalue; the norm's
    error is half the relative error of ``theta``. (Not ``r^2 / gap`` with the gap to the
    next Ritz value: the Krylov space can still miss an eigenvalue just above ``theta`` --
    a nearly double top singular value -- and that gap then claimed a random 4 -> 4 3x3
    layer on 12x12 within 1e-7 of its norm when it was 3e-5 below.)
    """
    return residual <= 2 * tol * values[-1]


def _normal(op: LinearOperator) -> LinearOperator:
    """``A^H A`` as products by ``A`` then ``A^H``."""
    return LinearOperator((op.shape[1],) * 2, matvec=lambda x: op.rmatvec(op.matvec(x)),
                          rmatvec=lambda x: op.rmatvec(op.matvec(x)), dtype=op.dtype)


def _lanczos(gram: LinearOperator, start: np.ndarray, tol: float, maxiter: int,
             ceiling: float = np.inf, count: int = 1) -> tuple[np.ndarray, bool]:
    """Top Ritz vector of ``gram`` (``A^H A``) by thick-restarted Lanczos with full
    reorthogonalization; with ``count > 1``, the top ``count`` Ritz vectors (fewer if the
    basis is smaller) as rows, the top one last.

    The basis ``V`` and the projection ``H = V^H A^H A V`` (from the Gram-Schmidt
    coefficients: tridiagonal, plus an arrowhead after a restart) satisfy ``A^H A V = V H + w
    e^T``, so the top Ritz pair ``(theta, V y)`` has residual ``||w|| |y_last|``. Stops when
    that residual shows ``theta`` within ``tol`` of the top eigenvalue (:func:`_converged`)
    and it has moved less than ``tol`` (relative) over the last 10 steps, at an invariant
    subspace, once ``theta`` shows the norm within ``tol`` of ``sqrt(ceiling)`` (``ceiling`` a
    proved bound on the top eigenvalue: :func:`_near_ceiling`), or after ``maxiter`` steps.
    A full basis (:func:`_basis_size`) keeps its top half of Ritz vectors and goes on from
    ``w`` (Wu and Simon's thick restart). One Gram-Schmidt pass against the basis, a second
    one only when the first removed most of the vector (Daniel, Gragg, Kaufman & Stewart's
    criterion). Returns the vector(s) and whether
    ``tol`` was met.
    """
    n = gram.shape[1]
    dtype = np.result_type(gram.dtype, start.dtype)
    size = _basis_size(n, np.dtype(dtype).itemsize, maxiter)
    keep = max(1, size // 2)
    basis = np.empty((size, n), dtype=dtype)
    real = basis.dtype.kind != "c"
    projection = np.zeros((size, size), dtype=dtype)
    basis[0] = start / np.linalg.norm(start)
    m, steps, history = 1, 0, []
    while True:
        w = gram.matvec(basis[m - 1])
        coefficients = np.zeros(m, dtype=dtype)
        before = float(np.linalg.norm(w))
        for _ in range(2):  # classical Gram-Schmidt against the whole basis, twice at most
            # (conj(B) @ w as conj(B @ conj(w)): no copy of the basis, real or complex)
            c = basis[:m] @ w if real else np.conj(basis[:m] @ np.conj(w))
            w = w - basis[:m].T @ c
            coefficients += c
            norm = float(np.linalg.norm(w))
            if norm > 0.5 * before:
                break
            before = norm
        coefficients[m - 1] = coefficients[m - 1].real
        projection[:m, m - 1] = coefficients
        projection[m - 1, :m] = np.conj(coefficients)
        values, vectors = np.linalg.eigh(projection[:m, :m])
        ritz, steps = vectors[:, -1], steps + 1
        history.append(values[-1])
        settled = len(history) > 10 and history[-1] - history[-11] <= tol * history[-1]
        met = bool(norm <= 1e-14 * abs(values[-1]) or _near_ceiling(values[-1], ceiling, tol)
                   or (settled and _converged(values, norm * abs(ritz[-1]), tol)))
        if met or steps >= maxiter:
            if count == 1:
                return basis[:m].T @ ritz, met
            return (basis[:m].T @ vectors[:, -min(count, m):]).T, met
        if m == size:  # thick restart: the top Ritz vectors, then w
            top = vectors[:, -keep:]
            basis[:keep] = top.T @ basis[:m]
            projection[:] = 0
            projection[range(keep), range(keep)] = values[-keep:]
            m = keep  # the coupling of w to them comes with its own coefficients next step
        basis[m] = w / norm
        m += 1


def _confirmed(op, vector: np.ndarray, tol: float, ceiling: float,
               by_residual: bool = True) -> bool:
    """Whether ``vector`` meets ``tol`` by :func:`_lanczos`'s tests, redone with ``op``: its
    quotient and residual computed in ``op``'s precision (the residual, which costs the
    adjoint's product, only if ``by_residual`` and the quotient alone does not decide)."""
    scale = float(np.vdot(vector, vector).real)
    if not scale > 0:  # a search that found nothing (a zero operator in its precision)
        return False
    image = op.matvec(vector)
    theta = float(np.vdot(image, image).real) / scale
    if _near_ceiling(theta, ceiling, tol):
        return True
    if not by_residual:
        return False
    residual = float(np.linalg.norm(op.rmatvec(image) - theta * vector)) / np.sqrt(scale)
    return _converged(np.array([theta]), residual, tol)


def lower_bound(op, start: np.ndarray, tol: float, rounding: Rounding,
                maxiter: int = 300, upper: float = np.inf,
                single: Callable[[], LinearOperator | None] | None = None,
                gram: Callable[[np.dtype, bool], LinearOperator | None] | None = None,
                deflate: np.ndarray | None = None) -> tuple[float, bool, np.ndarray]:
    """A rigorous lower bound on ``||A||``: the best certified quotient ``||A u|| / ||u||``.

    ``upper``: a certified upper bound on ``||A||``, if known; the iteration also stops once
    its estimate is within ``tol`` of it (then it is within ``tol`` of the norm, proved).
    ``single``: makes the same operator in single precision (or ``None``, for lack of
    memory), if the caller can; with at least :data:`SINGLE_FROM` unknowns the search runs on
    it (to half of ``tol``, or of :data:`SINGLE_REACH` if that is looser; at most ``maxiter``
    steps) and what it finds is confirmed at ``tol`` in ``op``'s precision
    (:func:`_confirmed`: by the ceiling, and by its residual too only if the search met
    ``tol`` or better). When that check fails, the iteration goes on in ``op``'s precision from
    the vector found (kept as a candidate too), for at most ``maxiter`` steps more.
    ``gram(dtype, outputs)``: makes ``A^H A`` (``A A^H`` if ``outputs``) in ``dtype`` where
    the caller has it cheaper than the two products
    (:func:`sparseconv._gram_operator.gram_operator`), else returns ``None``; the iterations
    run on it.

    ``deflate``: the vector a previous call returned, whose quotient is known to lie more
    than ``tol`` below the norm (a Cholesky test just above it failed: the Krylov space of
    that call held little of the top eigenvector, as when the top two singular values lie
    within about 1e-5 of each other and the start vector is nearly orthogonal to the top
    one). The iteration then runs on ``A^H A`` projected off that vector, from ``start`` and
    the fixed random part added to it, likewise projected, in ``op``'s precision: it converges to
    what the previous call's Krylov space missed, and the Rayleigh-Ritz vector of the two is
    the candidate.

    Returns the bound; whether it is within ``tol`` of the norm (the Lanczos iteration met
    ``tol``, and the rounding allowance of the quotient is within ``tol`` too); and the vector
    whose quotient it is, on the side the iteration ran on (for ``deflate``).
    """
    rows, cols = op.shape
    fast = None if deflate is not None or single is None or max(rows, cols) < SINGLE_FROM \
        else single()
    outputs = rows < cols
    if outputs:  # the same singular values; iterate on outputs instead
        op, start = op.H, op.matvec(start)
        fast = None if fast is None else fast.H
        rows, cols = cols, rows

    def normal(a: LinearOperator) -> LinearOperator:  # A^H A, the cheaper way
        made = None if gram is None else gram(a.dtype, outputs)
        return _normal(a) if made is None else made

    exact = functools.cache(lambda: normal(op))  # made once, if needed

    v0 = start.real if op.dtype.kind != "c" else start
    # a fixed random part reaches every eigenvector: a symmetric layer's witness can be
    # orthogonal to the top one, and Lanczos then converges, honestly, to a lower eigenvalue
    noise = np.random.default_rng(0).standard_normal(cols)
    norm = np.linalg.norm(v0)
    v0 = noise if norm == 0 else v0 / norm + noise / np.linalg.norm(noise)
    candidates, converged = [v0], True
    if deflate is not None and cols > 64:
        u = deflate / np.linalg.norm(deflate)
        off, project = _projected(exact(), u)
        ceiling = up(upper * upper, 1)
        found, _ = _lanczos(off, project(v0), tol, min(maxiter, cols), ceiling)
        vector = _rayleigh_ritz(exact(), np.stack([u, found.astype(u.dtype)]))
        candidates += [u, vector]
        converged = _confirmed(op, vector, tol, ceiling)
    elif cols <= 64:
        columns = op.matmat(np.eye(cols, dtype=op.dtype))
        candidates.append(np.linalg.eigh(np.conj(columns.T) @ columns)[1][:, -1])
    else:
        ceiling = up(upper * upper, 1)  # above the square of upper
        begin, converged = v0, False  # where the double-precision iteration starts
        if fast is not None:
            # aiming at half of tol leaves the double-precision check at tol room for the
            # single-precision rounding of the quotient and residual (at tol itself, a vector
            # that stopped at the ceiling's edge failed the check by a hair: VGG-11's 64->128
            # on 112x112 then ran its 140 steps again in double precision, 14 -> 40 s); below
            # SINGLE_REACH it runs to half of that, and if that is short of tol only the
            # ceiling can confirm it
            aim = max(tol, SINGLE_REACH) / 2
            # the Rayleigh-Ritz step holds 3 copies of the vectors in op's precision (with
            # the QR's): in half the limit, as the Lanczos basis, or the top vector alone
            itemsize = np.dtype(op.dtype).itemsize
            count = RITZ if fits(6 * RITZ * cols * itemsize) else 1
            found, claimed = _lanczos(normal(fast), v0.astype(fast.dtype), aim,
                                      min(maxiter, cols), ceiling, count=count)
            begin = _rayleigh_ritz(exact(), found.astype(op.dtype))
            candidates.append(begin)
            # by its residual only if it met tol or better (one out of steps may still have
            # been moving; one that met a looser aim settled only at that level)
            converged = _confirmed(op, begin, tol, ceiling, by_residual=claimed and aim <= tol)
        if not converged:  # in double precision, from the vector found if there is one
            vector, converged = _lanczos(exact(), begin, tol, min(maxiter, cols), ceiling)
            candidates.append(vector)
    size = max(rows, cols)
    norms = [(float(np.linalg.norm(op.matvec(u))), float(np.linalg.norm(u))) for u in candidates]
    best, most, which = max((rounding.quotient_lower(*pair, size),
                             rounding.quotient_upper(*pair, size), i)
                            for i, pair in enumerate(norms))
    # the rounding allowance alone can exceed tol (taps that cancel: a norm far below that of
    # |A|, which the allowance scales with): the bound is then not within tol of the quotient
    return best, bool(converged and best >= (1 - tol) * most), candidates[which]


def _projected(gram: LinearOperator, u: np.ndarray,
               ) -> tuple[LinearOperator, Callable[[np.ndarray], np.ndarray]]:
    """``P gram P`` with ``P = I - u u^H`` (``u`` a unit vector), and ``P`` itself: an
    iteration on it from a vector off ``u`` stays off ``u``."""
    def project(x: np.ndarray) -> np.ndarray:
        return x - u * np.vdot(u, x)

    def apply(x: np.ndarray) -> np.ndarray:
        return project(gram.matvec(project(x)))

    return LinearOperator(gram.shape, matvec=apply, rmatvec=apply, dtype=gram.dtype), project


def _rayleigh_ritz(gram: LinearOperator, rows: np.ndarray) -> np.ndarray:
    """The top Ritz vector of ``gram`` on the span of ``rows`` (one product per row): the
    vector of that span with the largest quotient, whichever of them it mostly lies on."""
    basis = np.linalg.qr(np.atleast_2d(rows).T)[0]  # orthonormal columns
    image = np.column_stack([gram.matvec(column) for column in basis.T])
    projection = np.conj(basis.T) @ image
    top = np.linalg.eigh((projection + np.conj(projection.T)) / 2)[1][:, -1]
    return basis @ top


#: The most multiply-adds :func:`banded_lower_bound` spends on its factorization.
BANDED_FLOPS = 2**32


def banded_lower_bound(op, weight: np.ndarray, geom: ConvGeometry, upper: float, tol: float,
                       rounding: Rounding) -> tuple[float, bool] | None:
    """The lower bound of a layer of one spatial axis, by inverse iteration: ``(bound,
    converged)``, or ``None`` where its factorization would cost more than
    :data:`BANDED_FLOPS` or not fit the memory limit.

    The Lanczos iteration of :func:`lower_bound` converges at the rate of the top gap of the
    Gram matrix, which on a long 1-D input is of order ``1 / n^2`` of its eigenvalues: 300
    steps left a (3, 2, 3) layer on 1112 positions 5e-6 below its norm (a new user's trial).
    On one axis the Gram matrix ``G`` of the layer (``op``; ``weight`` and ``geom`` its
    kernel and geometry), position-major, is banded (about ``channels * span`` wide, ``span``
    the kernel's reach in positions; wider where padding folds, and as wide as the matrix
    where circular padding wraps): the exact sections' band
    (:func:`sparseconv._section_gram.section_gram`, on the side that factorizes faster), so
    ``mu I - G``, ``mu`` just above ``upper ** 2`` (``upper`` certified), has a banded
    Cholesky factor of ``n b^2`` multiply-adds, and inverse iteration with it converges at
    the rate ``(mu - lambda_1) / (mu - lambda_2)``: in a few steps when ``upper`` is close.
    The band and its memory are sized from the gather map before either is built. The
    bound is the iterate's certified quotient, as :func:`lower_bound`'s; ``converged`` as
    there (the ceiling ``upper ** 2``, else the residual).
    """
    rows, cols = op.shape
    axis = geom.axes[0]
    gram = section_gram(dense_weight(weight, geom.groups), axis.tap_index(), axis.size)
    size, width = gram.shape[0], gram.depth * gram.channels
    # the band, factorized in place (a review: a plan of the tap pairs built before this
    # check peaked at 734 MiB under a 32 MiB limit)
    if size * width * width > BANDED_FLOPS or not fits(gram.band_bytes()):
        return None
    ceiling = up(upper * upper, 1)
    try:
        factor = gram.factor_above(ceiling, (1e-10, 1e-6))  # mu just above the ceiling
        if factor is None:  # pragma: no cover - mu above lambda_max: positive definite
            return None
        x = _inverse_lanczos(factor, tol)
    finally:
        gram.release()
    # position-major on the side it took -> the input's, channel-major
    vector = gram.to_input(x).reshape(axis.size, geom.in_channels).T.ravel()
    pair = float(np.linalg.norm(op.matvec(vector))), float(np.linalg.norm(vector))
    best, most = (rounding.quotient_lower(*pair, max(rows, cols)),
                  rounding.quotient_upper(*pair, max(rows, cols)))
    converged = _confirmed(op, vector, tol, ceiling)
    return best, bool(converged and best >= (1 - tol) * most)


def _inverse_lanczos(factor: np.ndarray, tol: float) -> np.ndarray:
    """The top eigenvector of ``(mu I - G)^-1``, ``factor`` the banded Cholesky factor of
    ``mu I - G`` (LAPACK's lower storage)."""
    # Lanczos on (mu I - G)^-1, whose top eigenvalues 1 / (mu - lambda) stand apart even
    # where those of G nearly coincide (inverse iteration alone crept: two singular values
    # 2.8e-7 apart, mu 9e-6 above them, left it 1.2e-7 short after 50 steps)
    size = int(factor.shape[1])
    inverse = LinearOperator((size, size), dtype=factor.dtype, matvec=lambda v: (
        scipy.linalg.cho_solve_banded((factor, True), v, check_finite=False)))
    start = np.random.default_rng(0).standard_normal(size).astype(factor.dtype)
    return _lanczos(inverse, start, tol, 100)[0]
