"""The Gram matrix of a layer along its positions, banded, and what its Cholesky test proves.

A layer ``T`` given by its gather map (``taps[o, t]``: the position tap ``t`` of output ``o``
reads, ``-1`` for a zero pad) and one ``C_out x C`` kernel per tap has a Gram matrix ``T^H T``
that is banded when its rows are ordered position-major: the ``C x C`` block at positions
``(p, p - d)`` sums ``K_t^H K_u`` over the taps of one output that read ``p`` and ``p - d``,
nonzero only for ``d`` below the widest spread of one output's reads. :class:`SectionGram`
builds that band from a few distinct blocks (away from the edges the same taps meet at every
position), applies the Gram by the kernel itself (two GEMMs), and runs the Cholesky test of
``mu I - T^H T`` in LAPACK's band storage or by block rows
(:mod:`sparseconv._block_cholesky`). :func:`section_gram` picks ``T^H T`` or ``T T^H`` (the
same nonzero eigenvalues), whichever factorizes faster.

The same Gram serves one axis of a layer (an exact section,
:mod:`sparseconv._exact_sections`) and the whole layer (:mod:`sparseconv._whole_gram`).
:func:`_certified_square` turns a completed factorization into a rigorous bound: the
factorization's rounding (:func:`sparseconv._rounding.cholesky_slack`) and the Gram's own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse

from ._block_cholesky import BlockRows
from ._rounding import Rounding, cholesky_slack, gamma, up
from ._workspace import borrow, give_back

__all__ = ["SectionGram", "section_gram"]


def _transposed_taps(taps: np.ndarray, positions: int) -> np.ndarray | None:
    """The gather map of ``T^H``: ``[p, t]`` is the output whose tap ``t`` reads position ``p``
    (``-1`` if none); ``None`` when one tap reads a position twice (never for zero padding)."""
    o, t = np.nonzero(taps >= 0)
    p = taps[o, t]
    if np.unique(p * taps.shape[1] + t).size != p.size:
        return None
    transposed = np.full((positions, taps.shape[1]), -1, dtype=np.int64)
    transposed[p, t] = o
    return transposed


def _scatter_matrix(taps: np.ndarray, positions: int) -> scipy.sparse.csr_array:
    """The 0/1 matrix ``S`` with ``S[p, o * k + t] = 1`` where tap ``t`` of output ``o`` reads
    position ``p``: ``T^H``'s sum over the taps, when one position is read more than once."""
    o, t = np.nonzero(taps >= 0)
    return scipy.sparse.csr_array(
        (np.ones(o.size), (taps[o, t], o * taps.shape[1] + t)), shape=(positions, taps.size))


def _depth(taps: np.ndarray) -> int:
    """The band depth of ``T^H T`` in positions: the widest spread of one output's reads."""
    valid = taps >= 0
    if not valid.any():
        return 1
    high = np.where(valid, taps, -1).max(axis=1)
    low = np.where(valid, taps, np.iinfo(np.int64).max).min(axis=1)
    return int((high - low)[valid.any(axis=1)].max()) + 1


def _columns(kernel: np.ndarray) -> np.ndarray:
    """``kernel (C_out, C, k)`` as the ``(k * C, C_out)`` matrix that multiplies gathered rows."""
    c_out, channels, k = kernel.shape
    return np.ascontiguousarray(kernel.transpose(2, 1, 0).reshape(k * channels, c_out))


def _gather_apply(columns: np.ndarray, taps: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y[o] = sum_t K_t @ x[taps[o, t]]`` (a pad reads zero): one GEMM with
    ``columns = _columns(K)``. ``x`` is ``(positions, C)``; the result ``(outputs, C_out)``."""
    padded = np.concatenate([x, np.zeros((1, x.shape[1]), dtype=x.dtype)])
    gathered = padded[np.where(taps >= 0, taps, x.shape[0])]  # (outputs, k, channels)
    return gathered.reshape(taps.shape[0], columns.shape[0]) @ columns


def _block_plan(taps: np.ndarray) -> tuple[dict[tuple[int, bytes], list[int]], np.ndarray]:
    """Where the distinct blocks of ``T^H T`` go, from the gather map alone: a dict from
    ``(d, pairs)`` to the positions ``q`` whose block at ``(q + d, q)`` sums ``K_t^H K_u``
    over the tap pairs ``pairs`` (``t * k + u``, int64 bytes), ``d >= 0``; and the ``(k, k)``
    mask of the pairs some output reads at ``p >= q``."""
    k = taps.shape[1]
    t, u = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    p, q = taps[:, t], taps[:, u]  # (outputs, k, k) positions read by taps t and u
    keep = (p >= 0) & (q >= 0) & (p >= q)  # the lower block triangle, diagonal included
    where: dict[tuple[int, bytes], list[int]] = {}
    if not keep.any():
        return where, np.asarray(keep.any(axis=0))
    _, tap, other = np.nonzero(keep)
    starts, gaps, pair = q[keep], (p - q)[keep], (tap * k + other).astype(np.int64)
    # the pairs (t, u) of each block (q + d, q), in one order; blocks with the same pairs
    # (a q may repeat a pair: padding that copies reads it from several outputs) are equal
    order = np.lexsort((pair, gaps, starts))
    starts, gaps, pair = starts[order], gaps[order], pair[order]
    cuts = [0, *(np.flatnonzero((np.diff(starts) != 0) | (np.diff(gaps) != 0)) + 1),
            len(pair)]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        where.setdefault((int(gaps[lo]), pair[lo:hi].tobytes()), []).append(int(starts[lo]))
    return where, np.asarray(keep.any(axis=0))


class SectionGram:
    """``T^H T`` of a layer ``T`` along its positions, in LAPACK's band storage.

    ``taps[o, t]`` is the position (of ``positions``, linear over the axes) that tap ``t`` of
    output ``o`` reads, ``-1`` for a zero pad: one axis's gather map for an exact section,
    the whole layer's for the full certificate. Rows and columns are ordered ``p * channels
    + c`` (position-major), so the matrix is banded with bandwidth ``depth * channels - 1``:
    the ``C x C`` block at positions ``(p, p - d)`` is the sum of ``K_t^H K_u`` over the taps
    ``t, u`` of one output that read ``p`` and ``p - d``, nonzero for ``d < depth``.

    Products with it go through ``T`` itself (:meth:`matvec`: two GEMMs on the kernel).
    :func:`section_gram` picks ``T^H T`` or ``T T^H``, whichever factorizes faster;
    ``to_input`` maps an eigenvector of the one it picked to the input side (``T^H u`` for
    ``T T^H``).
    """

    def __init__(self, kernel: np.ndarray, taps: np.ndarray, positions: int,
                 transposed: np.ndarray | None = None) -> None:
        c_out, channels, k = kernel.shape
        if transposed is None:
            transposed = _transposed_taps(taps, positions)
        self.taps, self.transposed = taps, transposed
        self._scatter = None if transposed is not None else _scatter_matrix(taps, positions)
        self._forward = _columns(kernel)  # T and T^H by GEMMs on the kernel
        # T^H: gathered like T where each tap reads a position once; else one GEMM gives
        # K_t^H y[o] for every (o, t), and the scatter adds up those of one position
        self._adjoint = _columns(np.conj(kernel).transpose(1, 0, 2)) if self._scatter is None \
            else np.ascontiguousarray(np.conj(self._forward).T)
        self.channels, self.positions = channels, positions
        self.shape = (positions * channels,) * 2
        self.dtype = np.result_type(kernel.dtype, np.float64)
        self.to_input = lambda vector: vector  # T^H T: its eigenvectors are inputs already
        self.inputs_side = True  # T^H T (section_gram may pick T T^H)
        #: positions per block row, where the Cholesky test runs by block rows
        #: (:mod:`sparseconv._block_cholesky`: a whole layer's Gram, by its grid's first axis;
        #: an exact section's of many channels, one position each), else None
        self.row: int | None = None
        self._blocks: list | None = None  # the band's distinct blocks, on first use
        self._rows: BlockRows | None = None
        self._work: np.ndarray | None = None

    def _assemble(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The distinct blocks of ``-T^H T`` below the diagonal and where each goes, built once,
        when the band is first asked for (an eigenpair needs only :meth:`matvec`).

        Each is ``(d, starts, block)``: the block at positions ``(q + d, q)`` for every ``q``
        in ``starts``, transposed (entry ``(a, b)`` at ``block[b, a]``). The block at ``(p,
        q)`` sums ``K_t^H K_u`` over the outputs' taps ``t``, ``u`` that read ``p`` and ``q``:
        away from the edges the same taps meet at every ``q``, so a few sums of a few ``C x C``
        products describe the whole band, which :meth:`band` writes out (not a copy of it:
        on a VM that hands freed memory back to its host, each fresh copy of a 512-channel
        band costs seconds to map).
        """
        if self._blocks is not None:
            return self._blocks
        k = self._forward.shape[0] // self.channels
        where, meets = _block_plan(self.taps)
        if not where:  # every tap reads padding: the Gram is zero
            self._blocks = []
            return self._blocks
        c = self.channels
        # per tap t, one GEMM for the taps u it meets below it: the (b, a) block of
        # products[t][(u, b), a] = sum_o K_u[o, b] K_t[o, a]^* is (K_t^H K_u)^T
        flat = self._forward.reshape(k, c, -1)
        products = {t: dict(zip(np.flatnonzero(meets[t]).tolist(), (
            flat[meets[t]].reshape(-1, flat.shape[2]) @ np.conj(flat[t].T)).reshape(-1, c, c)))
            for t in range(k) if meets[t].any()}
        blocks = []
        for (d, key), at in where.items():
            block = np.zeros((c, c), dtype=self.dtype)
            for i in np.frombuffer(key, dtype=np.int64).tolist():
                block -= products[i // k][i % k]
            blocks.append((d, np.array(at), block))
        self._blocks = blocks
        return blocks

    @functools.cached_property
    def depth(self) -> int:
        """The band's depth in positions (its bandwidth is ``depth * channels - 1``)."""
        return _depth(self.taps)

    def band_bytes(self) -> int:
        """Memory of the first :meth:`band`, before it is built: the band itself, the tap
        products and the distinct blocks (at most a band's worth), and the plan's tables of
        the ``k^2`` tap pairs of every output (:func:`_block_plan`: two of int64, then
        int64 indices and their sorted copies of the pairs kept, up to 96 bytes a pair; 55
        measured on a 101-tap reflect layer, where it keeps half)."""
        outputs, k = self.taps.shape
        c, itemsize = self.channels, np.dtype(self.dtype).itemsize
        return (itemsize * (2 * self.depth * self.positions * c * c + k * k * c * c)
                + 96 * outputs * k * k)

    def band(self, mu: float) -> np.ndarray:
        """``mu I - T^H T`` in LAPACK's lower band storage, ``band[i - j, j]``, Fortran-ordered
        (LAPACK's own order, so no copy on the way in): a working array of this Gram, which the
        next call overwrites (as a factorization in place does)."""
        blocks = self._assemble()
        c = self.channels
        width = (max(d for d, _, _ in blocks) + 1) * c if blocks else 1
        if self._work is None:
            self._work = borrow((self.positions * c, width), self.dtype)
        work = self._work
        work.fill(0)
        # entry (a, b) of block (q + d, q) is entry (q*c + b + o, q*c + b), o = d*c + a - b
        # rows below the diagonal: [q*c + b, d*c + a - b] of `work`, so a block is a sheared
        # view of it, rows (width - 1) entries apart; the diagonal block's upper triangle
        # (a < b) would fall in the previous columns, and is left out
        step, upper = work.itemsize, np.triu(np.ones((c, c), dtype=bool))
        for d, at, block in blocks:
            for run in np.split(at, np.flatnonzero(np.diff(at) != 1) + 1):
                view = np.lib.stride_tricks.as_strided(
                    work.reshape(-1)[int(run[0]) * c * width + d * c:],
                    shape=(len(run), c, c), strides=(c * width * step, (width - 1) * step, step))
                np.copyto(view, block, where=upper if d == 0 else True)
        work[:, 0] += mu
        return work.T

    def band_factor(self, mu: float) -> np.ndarray | None:
        """The lower Cholesky factor of ``mu I - T^H T`` in LAPACK's band storage, computed in
        :meth:`band`'s working array, or ``None`` where the factorization fails (a NaN pivot,
        which ``?pbtrf`` passes with ``info = 0``, counts as failing)."""
        try:
            factor = scipy.linalg.cholesky_banded(self.band(mu), lower=True, overwrite_ab=True,
                                                  check_finite=False)
        except scipy.linalg.LinAlgError:
            return None
        return factor if np.isfinite(factor[0]).all() else None

    def factor_above(self, value: float, lifts: Sequence[float]) -> np.ndarray | None:
        """:meth:`band_factor` at ``mu = value + lift |value|`` for the first of ``lifts``
        (increasing) that factorizes: ``mu`` just above an eigenvalue estimate or a proved
        ceiling, higher where rounding leaves ``mu I - T^H T`` indefinite; ``None`` if none
        does."""
        for lift in lifts:
            factor = self.band_factor(value + lift * abs(value) + 1e-300)
            if factor is not None:
                return factor
        return None

    def below(self, mu: float) -> bool:
        """Whether ``mu I - T^H T`` has a Cholesky factorization: by block rows where this
        Gram has them (:attr:`row`), else in its band storage."""
        if self.row is not None:
            return self.block_rows().below(mu)
        return self.band_factor(mu) is not None

    def block_rows(self) -> BlockRows:
        """``mu I - T^H T`` by block rows of :attr:`row` positions (built once)."""
        if self._rows is None:
            assert self.row is not None
            self._rows = BlockRows(self._assemble(), self.channels, self.positions, self.row)
        return self._rows

    def release(self) -> None:
        """Give the band's memory back for the next Gram (:mod:`sparseconv._workspace`);
        it is built again if asked for."""
        give_back(self._work)
        self._work = None

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``T^H (T x)``, by the kernel: ``x`` position-major."""
        y = _gather_apply(self._forward, self.taps, x.reshape(self.positions, self.channels))
        if self.transposed is None:  # a position read twice (padding that copies): a sum
            # z[o, (t, c)] = (K_t^H y[o])[c], then each (o, t) added onto the position it read
            z = y @ self._adjoint
            return (self._scatter @ z.reshape(-1, self.channels)).ravel()
        return _gather_apply(self._adjoint, self.transposed, y).ravel()

    def toarray(self) -> np.ndarray:
        """The dense Gram matrix, column by column (small sections only)."""
        return np.stack([self.matvec(c) for c in np.eye(self.shape[0], dtype=self.dtype)],
                        axis=1)


def section_gram(kernel: np.ndarray, taps: np.ndarray, positions: int,
                 inputs: bool = False, outputs: bool = False) -> SectionGram:
    """The Gram matrix of ``T`` on its cheaper side: ``T^H T``, or ``T T^H`` (the same
    nonzero eigenvalues) when its banded Cholesky costs less -- a strided layer's outputs are
    fewer and closer together than its inputs. ``inputs``: ``T^H T`` whatever it costs (the
    full certificate of a padding that copies inputs, whose outputs' side has no band bound
    in closed form: two outputs may read a position and its mirror image); ``outputs``:
    ``T T^H`` whatever it costs, where its gather map exists (the full certificate's route,
    :func:`full_route`, picks the side)."""
    # a real block (xi = 0 or a Nyquist frequency of a real kernel): a real factorization, a
    # quarter of the complex one's flops
    if kernel.dtype.kind == "c" and not kernel.imag.any():
        kernel = kernel.real
    transposed = _transposed_taps(taps, positions)
    c_out, channels = kernel.shape[:2]
    cost_in = positions * channels * (_depth(taps) * channels) ** 2
    if inputs or transposed is None or (not outputs and cost_in <= taps.shape[0] * c_out * (
            _depth(transposed) * c_out) ** 2):
        return SectionGram(kernel, taps, positions, transposed)
    # T^H: tap t is K_t^H, its gather map the transposed one
    gram = SectionGram(np.conj(kernel).transpose(1, 0, 2), transposed, taps.shape[0], taps)
    gram.inputs_side = False

    def to_input(vector: np.ndarray) -> np.ndarray:  # an eigenvector u of T T^H: T^H u
        image = _gather_apply(gram._forward, transposed, vector.reshape(taps.shape[0], c_out))
        norm = np.linalg.norm(image)
        return (image / norm if norm else image).ravel()

    gram.to_input = to_input
    return gram


def _gram_sides(axes, c_in: int, c_out: int) -> tuple[tuple[int, int, int], ...]:
    """``(positions, depth, channels)`` of ``T^H T`` and of ``T T^H`` for a layer along
    ``axes`` (C order), before either is built: the band depth in positions is one more than
    the largest linear offset between two positions one output reads (between two outputs
    that read one position)."""
    sides = []
    for channels, inputs in ((c_in, True), (c_out, False)):
        depth, step = 1, 1
        for a in reversed(axes):
            depth += _reach(a, inputs) * step
            step *= a.size if inputs else a.output_size
        sides.append((step, depth, channels))
    return tuple(sides)


def _reach(axis, inputs: bool) -> int:
    """The most positions along ``axis`` between two inputs one output reads (``inputs``), or
    between two outputs that read one input."""
    span = axis.dilation * (axis.kernel_size - 1)
    return min(span, axis.size - 1) if inputs else min(span // axis.stride,
                                                        axis.output_size - 1)



def _certified_square(mu: float, bandwidth: int, rounding: Rounding, inner: int,
                      taps: int, complex_: bool, copies: int = 1) -> float:
    """A rigorous bound on ``lambda_max(T^H T)`` of every exact block certified below ``mu``.

    A completed Cholesky of ``mu I - G^`` (bandwidth ``k``) proves ``lambda_max(G^) <= mu (1 +
    slack)``, :func:`sparseconv._rounding.cholesky_slack` (``complex_``: some block was
    factorized in complex arithmetic); ``G^`` differs from the exact ``T^H T`` (or ``T
    T^H``, the same top eigenvalue) by the Gram's own rounding, ``gamma(2 inner + K^2 + 4)
    W1^2`` (``inner``: the length of the products of its blocks, ``C_out`` for ``T^H T`` and
    ``C_in`` for ``T T^H``; callers pass the larger), and by the kernels' evaluation error
    ``eps``: ``2 W1 eps + eps^2``. ``bandwidth``: the larger of the two sides' too.

    ``copies``: the most outputs that read one position through one tap (reflect and
    replicate padding; 1 for zero padding). Each tap's read map ``R_t`` then has norm at most
    ``sqrt(copies)``, so ``T' = sum_t |K_t| (x) R_t``, which bounds the Gram's rounding
    entrywise (``|E| <= gamma T'^T T'``), has ``||T'||^2 <= copies W1^2``; an entry of ``G^``
    adds up to ``K^2 copies`` tap products: the allowance is ``copies (gamma(2 inner + K^2
    copies + 4) W1^2 + 2 W1 eps + eps^2)``. Two taps of one output may then read one position, so a
    diagonal entry of ``G^`` holds cross terms and may round below zero (by at most that
    allowance): the factorized diagonal is at most ``mu`` plus it, and the slack applies to
    that sum.
    """
    w1, eps = rounding.tap_norms + rounding.symbol_error, rounding.symbol_error
    slack = cholesky_slack(bandwidth, complex_)
    if copies == 1:
        proved = mu * (1 + slack)
        return up(proved + gamma(2 * inner + taps**2 + 4) * w1 * w1 + 2 * w1 * eps + eps * eps)
    error = up(copies * (gamma(2 * inner + taps**2 * copies + 4) * w1 * w1 + 2 * w1 * eps
                         + eps * eps))
    return up(up(mu + error) * (1 + slack) + error)

