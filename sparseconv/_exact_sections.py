"""The exact sections: an upper bound on a layer's norm with one axis's boundary exact.

Embedding all axes but one, ``e``, in a periodic grid
(:func:`sparseconv._certificates.embedding_grid`) makes a zero-padded layer ``A`` the
restriction of a layer that is block diagonal over the frequencies ``xi`` of the other axes:
each block is a 1-D zero-padded multi-channel layer ``T(xi)`` along ``e``
(:func:`_section_kernels`: its tap ``t`` is the symbol, over the other axes, of the weight's
slice at ``t``), whose Gram matrix is banded (:mod:`sparseconv._section_gram`). So ``||A|| <=
max_xi ||T(xi)||``, and ``lambda_max(T^H T) < mu`` is proved for a block by one banded
Cholesky factorization of ``mu I - T^H T``: axis ``e``'s boundary is treated exactly, the
others' periodically.

:func:`section_bound` visits the blocks by decreasing circulant bound (a certified bound on
each block, :func:`sparseconv._certificates.circulant_tops`), and only while one could still
raise the maximum: a block proved below the current ``mu`` costs one factorization; one that
is not gets its top eigenpair (ARPACK, or LAPACK's banded solver for a whole 1-D layer) and
raises ``mu`` just above it. The blocks with the largest eigenvalues are the witnesses from
which the Lanczos lower bound starts (:func:`sparseconv._lanczos.start_vector`).
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

from ._block_cholesky import SECTION_ROWS_FROM
from ._geometry import ConvGeometry, periodic_padding
from ._memory import check_memory, fits, get_memory_limit
from ._parallel import cpu_count, map_chunks, one_blas_thread
from ._rounding import Rounding
from ._section_gram import SectionGram, _certified_square, _gram_sides, section_gram
from ._symbol import symbol_at

__all__ = ["Witness", "section_bound", "section_bytes"]


def _section_kernels(weight, geom: ConvGeometry, grid, axis: int, xi: tuple) -> list:
    """Kernels of the 1-D layers along ``axis`` at frequency ``xi`` of the other axes.

    The block at ``xi`` is a 1-D layer along ``axis`` whose tap ``t`` is the symbol, over the
    other axes, of the weight's slice at ``t``. One ``(C_out/g, C_in/g * phases, k)`` kernel
    per group.
    """
    others = [d for d in range(geom.ndim) if d != axis]
    k, c_out, groups = geom.kernel_size[axis], geom.out_channels, geom.groups
    if not others:
        w = weight.reshape(groups, c_out // groups, *weight.shape[1:])
        return [w[g] for g in range(groups)]
    # taps along `axis` become output channels (o, t) of a layer over the other axes
    w = np.moveaxis(weight, 2 + axis, 1).reshape(c_out * k, weight.shape[1],
                                                 *[geom.kernel_size[d] for d in others])
    sub = ConvGeometry.from_weight(
        w.shape, (geom.in_channels, *[grid[d] for d in others]),
        stride=[geom.stride[d] for d in others], dilation=[geom.dilation[d] for d in others],
        groups=groups, padding_mode="circular",
        padding=periodic_padding([geom.kernel_size[d] for d in others],
                                 [geom.dilation[d] for d in others]),
    )
    h = symbol_at(sub, w, [xi])[0]  # (groups, C_out/g * k, C_in/g * phases)
    return [h[g].reshape(c_out // groups, k, -1).transpose(0, 2, 1) for g in range(groups)]



def _section_sides(geom: ConvGeometry, axis: int) -> tuple[tuple[int, int, int], ...]:
    """:func:`_gram_sides` of the blocks of the section along ``axis``: their channels are
    ``C_in/g`` times the other axes' phases."""
    return _gram_sides([geom.axes[axis]], geom.symbol_block[1] // geom.stride[axis],
                       geom.out_channels // geom.groups)


def section_bytes(geom: ConvGeometry, axis: int) -> int:
    """Memory of one section's Gram blocks and its band, counted before either is built (on
    the side that takes more: :func:`section_gram` may pick either)."""
    a = geom.axes[axis]
    itemsize = 16  # complex symbols; real kernels in 1-D take less
    sides = _section_sides(geom, axis)
    widest = max(c for _, _, c in sides)
    # where the distinct blocks go (_block_plan): index arrays over every pair of taps of
    # every row of the side's gather map, 96 bytes a pair as the full certificate counts them
    # (a review: a 101-tap 1-D layer on 3000 positions peaked at 1.6 GiB under a 64 MiB
    # limit, this left out), and the gather maps
    k = a.kernel_size
    plan = max(a.size, a.output_size) * k * (96 * k + 32)
    # the tap products, and per position three block rows: the band, its distinct blocks
    # and the copies around them (a bound: the band is written from a few distinct blocks)
    return plan + max(k**2 * widest**2 * 2 + 3 * depth * size * c * c
                      for size, depth, c in sides) * itemsize



#: Section Gram matrices of at most this many rows get their eigenpair from a dense ``eigh``.
DENSE_EIGH = 64


#: A whole layer of one spatial axis (its one section) whose band costs at most this many
#: ``rows^2 * bandwidth`` to reduce to tridiagonal form gets its top eigenvalue from LAPACK's
#: banded eigensolver (values only, about 4 ns each on the Zen 4 of 2026-12-04: 0.02 s for 1852
#: rows of bandwidth 4, 1.1 s for 4096 of 16) and its eigenvector by inverse iteration on the
#: band's Cholesky factor: its top eigenvalues lie ``1/n^2`` apart, and ARPACK took 43,000
#: iterations (27 s) on an audit's 1849-position layer. (Its eigenvectors too would cost far
#: more: 0.76 s and 22 s on those two. Not for the sections of a layer in 2-D or 3-D, many
#: blocks whose ARPACK converges in tens of products.)
BANDED_EIGH = 2**26


def _banded_eigenpair(gram: SectionGram) -> tuple[float, np.ndarray] | None:
    """The top eigenpair of ``gram`` by LAPACK's banded solver and inverse iteration (see
    :data:`BANDED_EIGH`): the eigenvector's Rayleigh quotient (a Ritz value) and the vector,
    or ``None`` where no shift just above the eigenvalue factorizes."""
    low = scipy.linalg.eig_banded(gram.band(0.0), lower=True, eigvals_only=True, select="i",
                                  select_range=(0, 0), check_finite=False)[0]  # of -G
    factor = gram.factor_above(-float(low), (1e-12, 1e-9, 1e-6))  # just above the top
    if factor is None:
        return None
    x = np.random.default_rng(0).standard_normal(gram.shape[0]).astype(gram.dtype)
    for _ in range(3):  # converges at (mu - lambda_1) / (mu - lambda_2): a few steps
        x = scipy.linalg.cho_solve_banded((factor, True), x, check_finite=False)
        x /= np.linalg.norm(x)
    return float(np.vdot(x, gram.matvec(x)).real), x


def _top_eigenpair(gram: SectionGram, tol: float = 1e-10, v0: np.ndarray | None = None,
                   whole: bool = False) -> tuple[float, np.ndarray]:
    """The top eigenpair of a section's Gram matrix, by ARPACK on its products (each two
    small GEMMs: on one BLAS thread, which a team of threads only slows down, and collapses
    when the cores are shared), to ARPACK's ``tol``, from ``v0`` if given. The value is a
    Ritz value, at most the top eigenvalue (up to rounding) whatever ``tol``. ``whole``: the
    section is a whole layer of one spatial axis, whose eigenpair comes from its band
    (:func:`_banded_eigenpair`) where that costs at most :data:`BANDED_EIGH` and its band,
    a copy and a factor fit the memory limit."""
    if gram.shape[0] <= DENSE_EIGH:
        lam, vec = np.linalg.eigh(gram.toarray())
        return float(lam[-1]), vec[:, -1]
    rows, itemsize = gram.shape[0], np.dtype(gram.dtype).itemsize
    width = gram.depth * gram.channels
    if whole and rows * rows * width <= BANDED_EIGH and fits(
            3 * rows * width * itemsize + gram.band_bytes()):
        found = _banded_eigenpair(gram)
        if found is not None:
            return found
    if v0 is None:  # a fixed random start has a component along every eigenvector (ones may not)
        v0 = np.random.default_rng(0).standard_normal(gram.shape[0]).astype(gram.dtype)
    op = spla.LinearOperator(gram.shape, matvec=gram.matvec, dtype=gram.dtype)
    with one_blas_thread():
        lam, vec = spla.eigsh(op, k=1, which="LA", tol=tol, v0=v0)
    return float(lam[0]), vec[:, 0]


#: ARPACK's tolerance for the quick estimate that may show a block reaching the bound to
#: beat before its full eigenpair is computed (:func:`_prove_blocks`).
QUICK_TOL = 1e-3


@dataclass
class Witness:
    """The block that set a section bound: where it is and its top eigenvector."""

    value: float
    axis: int
    xi: tuple
    group: int
    vector: np.ndarray  # position-major: p * channels + c



def _prove_blocks(weight, geom: ConvGeometry, grid, axis: int, mu: float, beaten: float,
                  quick: bool, xis: list) -> list:
    """One task of :func:`section_bound`: prove each block at ``xis`` below ``mu``, or not.

    Per frequency and group: ``None`` when a Cholesky factorization proves the block's Gram
    below ``mu``; else ``(proved, lam, vector)``, ``proved`` the smallest of a few candidates
    just above its computed top eigenvalue ``lam`` that a Cholesky factorization proves
    (``math.inf`` if none does; ``math.nan``, unproved, when ``lam`` reaches ``beaten``: the
    section cannot win, a Ritz value being below the block's top eigenvalue), or ``(None,
    None, None)`` when no eigenvalue estimate came. ``quick``: first a loose estimate
    (:data:`QUICK_TOL`; a Ritz value too), which may show ``beaten`` reached at a third of
    the eigenpair's cost; the eigenpair then starts from its vector.
    """
    results = []
    for xi in xis:
        per_group: list = []
        for kernel in _section_kernels(weight, geom, grid, axis, xi):
            gram = section_gram(kernel, geom.axes[axis].tap_index(), geom.axes[axis].size)
            if gram.channels >= SECTION_ROWS_FROM:  # by block rows of one position
                gram.row = 1
            try:
                per_group.append(_prove_block(gram, mu, beaten, quick, geom.ndim == 1))
            finally:
                gram.release()
        results.append(per_group)
    return results


def _prove_block(gram: SectionGram, mu: float, beaten: float, quick: bool,
                 whole: bool = False) -> tuple | None:
    """One block of :func:`_prove_blocks`: ``None``, or ``(proved, lam, vector)``; ``whole``:
    the block is a whole layer of one spatial axis (:func:`_top_eigenpair`)."""
    if mu > 0 and gram.below(mu):
        return None
    lam, vector = -math.inf, None
    if quick and gram.shape[0] > DENSE_EIGH and not whole:  # (else one direct solve below)
        try:
            lam, vector = _top_eigenpair(gram, QUICK_TOL)
        except spla.ArpackError:  # no quick estimate: the full one decides
            pass
    try:
        if lam < beaten:
            lam, vector = _top_eigenpair(gram, v0=vector, whole=whole)
    except spla.ArpackError:  # no estimate: the caller takes the circulant bound
        return None, None, None
    proved = math.nan if lam >= beaten else next(
        (c for c in (max(lam, 1e-300) * (1 + delta) for delta in
                     (1e-9, 1e-8, 1e-7, 1e-5, 1e-3, 1e-1, 1.0)) if gram.below(c)),
        math.inf)
    return proved, lam, gram.to_input(vector)


def _one_of_each_pair(order: list[int], shape: tuple) -> list[int]:
    """``order`` without the frequencies whose pair ``-xi`` comes earlier in it."""
    if not shape:
        return order
    xi = np.array(np.unravel_index(order, shape))
    partner = np.ravel_multi_index(tuple((-xi) % np.array(shape)[:, None]), shape)
    seen: set[int] = set()
    kept = []
    for flat, pair in zip(order, partner.tolist()):
        if pair not in seen:
            kept.append(flat)
        seen.add(flat)
    return kept


def _block_label(xis: list, i: int) -> str:
    return f"the block at frequency {xis[i]} of the other axes"


def section_bound(weight, geom: ConvGeometry, grid, rows: np.ndarray, axis: int, beat: float,
                  rounding: Rounding, executor: Executor | None = None,
                  best: float | None = None) -> tuple[float, dict]:
    """Upper bound on ``||A||`` with ``axis`` exact and the other axes periodic on ``grid``.

    ``rows[xi]`` is a certified bound on the block at frequency ``xi`` of the other axes (its
    circulant bound). Blocks are visited by decreasing ``rows``: each one is proved below the
    current candidate ``mu`` by one Cholesky factorization, and a block that fails raises
    ``mu`` to its own proved top eigenvalue. The first block is visited alone (it sets
    ``mu``); then rounds of as many blocks as run at once, each proved against the ``mu`` of
    its round -- a block proved below an older ``mu`` is below the final one. The visit ends
    when no block left can exceed ``mu``, or early once ``mu`` passes ``beat`` (another
    bound, which then wins, or one it is not worth beating by less); the result bounds
    ``||A||`` either way. ``best`` (default ``beat``): the best bound known; a block whose
    top Ritz value already reaches it is not proved, and the section returns its circulant
    bound -- nor one whose Ritz value reaches ``beat`` when the next block's circulant bound
    is at least ``best`` (its proof would end the visit at no better than that). Also
    returns, per group,
    the block with the largest computed top eigenvalue (the witnesses, to start the lower
    bound from).
    """
    check_memory(section_bytes(geom, axis), "an exact section of spectral_norm")
    taps = math.prod(geom.kernel_size)
    # every gram of this section has one band, on the side section_gram picks: the taps, not
    # the kernel, decide it; the allowance takes the larger side's
    sides = _section_sides(geom, axis)
    bandwidth = max(depth * c for _, depth, c in sides) - 1
    inner = max(c for _, _, c in sides)
    # a block off xi = 0 of the other axes, or of a complex kernel, factorizes in complex
    complex_ = weight.dtype.kind == "c" or geom.ndim > 1
    limit = get_memory_limit()
    at_once = max(1, min(cpu_count(), limit // section_bytes(geom, axis)
                         if limit else cpu_count()))
    witnesses: dict[int, Witness] = {}
    mu = 0.0

    def certified(value: float) -> float:
        return math.sqrt(_certified_square(value, bandwidth, rounding, inner, taps, complex_))

    order = [int(i) for i in np.argsort(rows, axis=None)[::-1]]
    if weight.dtype.kind != "c":  # T(-xi) = conj(T(xi)): one block of each pair has both spectra
        order = _one_of_each_pair(order, rows.shape)
    done = 0
    while done < len(order):
        if rows.flat[order[done]] ** 2 <= mu:
            break  # this block and all later ones are below mu already
        if certified(mu) >= beat:
            return max(certified(mu), float(rows.flat[order[done]])), witnesses
        size = 1 if done == 0 else at_once
        batch = [f for f in order[done:done + size] if rows.flat[f] ** 2 > mu]
        xis = [tuple(int(i) for i in np.unravel_index(f, rows.shape)) for f in batch]
        chunks = [[xi] for xi in xis]
        # a block whose Ritz value reaches beat ends the visit, its proof putting mu there;
        # the section then returns at least the circulant bound of the first block after
        # this round (or mu itself): when that is no better than the best bound, such a
        # block is not proved at all
        after = done + size
        proof_cannot_help = best is None or (
            after < len(order) and rows.flat[order[after]] >= best)
        beaten = (beat if best is None else min(beat, best) if proof_cannot_help else best) ** 2
        # a loose estimate first where it may decide: in a later section, whose bound to beat
        # is below the best bound, a block's Ritz value can reach it
        quick = proof_cannot_help and best is not None and beat < best
        proofs = map_chunks(_prove_blocks, (weight, geom, grid, axis, mu, beaten, quick), chunks,
                            executor=executor, what=f"the exact section on axis {axis}",
                            label=functools.partial(_block_label, xis))
        for flat, xi, [per_group] in zip(batch, xis, proofs):
            for group, proof in enumerate(per_group):
                if proof is None:
                    continue
                proved, lam, vector = proof
                if proved is None:
                    mu = max(mu, float(rows.flat[flat]) ** 2)
                    continue
                if proved == math.inf:  # pragma: no cover - Lanczos does not miss by 2x
                    return math.inf, witnesses
                if math.isnan(proved):  # its Ritz value reaches `beaten`: the section loses
                    return float(rows.flat[order[0]]), witnesses
                mu = max(mu, proved)
                if group not in witnesses or lam > witnesses[group].value:
                    witnesses[group] = Witness(lam, axis, xi, group, vector)
        done += size
    xi = tuple(int(i) for i in np.unravel_index(order[0], rows.shape))
    for group, kernel in enumerate(_section_kernels(weight, geom, grid, axis, xi)):
        if group not in witnesses:  # every group needs a start: the layer is block diagonal
            gram = section_gram(kernel, geom.axes[axis].tap_index(), geom.axes[axis].size)
            try:
                lam, vector = _top_eigenpair(gram, whole=geom.ndim == 1)
            except spla.ArpackError:  # this group starts from zero; the bound is unaffected
                continue
            finally:
                gram.release()  # (the banded solver's working band)
            witnesses[group] = Witness(lam, axis, xi, group, gram.to_input(vector))
    return certified(mu), witnesses


