"""Certified upper bounds on the spectral norm of a layer, each rigorous in float64.

* **Circulant embedding.** A zero-padded layer is the restriction ``P C Z`` of a strided
  circular layer ``C`` on any grid ``N`` with no wrap-around: ``N >= max(n + pad_lo, span -
  pad_lo)`` per axis (``n`` inputs, ``span = dilation * (k - 1) + 1`` the kernel's extent;
  left and right pads can share one gap of zeros), ``N > (m-1)*stride`` (``m`` outputs),
  ``N`` a multiple of the stride. So ``||A|| <= ||C|| = max_xi sigma_max(H(xi))``, by the symbol
  (:mod:`sparseconv._symbol`) at every frequency -- all of them for a complex kernel, one of
  each pair ``{xi, -xi}`` for a real one (``H(-xi) = conj(H(xi))``).
* **Exact sections.** Embedding all axes but one, ``e``, makes ``A`` block diagonal over the
  frequencies of the other axes: each block is a 1-D zero-padded multi-channel layer ``T``
  along ``e`` whose Gram matrix is banded. ``lambda_max(T^H T) < mu`` is proved by one
  banded Cholesky factorization of ``mu I - T^H T`` (or of ``mu I - T T^H``, the same top
  eigenvalue, when that is cheaper: a strided layer's outputs are fewer and overlap less),
  so axis ``e``'s boundary is treated exactly. Blocks are visited by decreasing circulant
  bound, and only while one could still raise the maximum. Complex kernels are handled as
  they are: Gram matrices are Hermitian.
* **Every axis exact.** The same Cholesky test on the whole layer's banded Gram, where it
  is cheap enough (small grids with few channels) or asked for: for a real layer in two or
  more dimensions, by block rows of the grid's first axis
  (:mod:`sparseconv._block_cholesky`: BLAS-3 calls on whole block rows, holding a few
  block rows instead of the band), else in LAPACK's band storage.
* **Dense.** For small layers, ``sigma_max`` of the explicit matrix by LAPACK, certified by a
  dense Cholesky factorization of ``mu I - A^H A``.

Every number that decides a bound (the circulant maxima used to prune blocks included) is
widened by its rounding allowance from :mod:`sparseconv._rounding`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla

from ._block_cholesky import SECTION_ROWS_FROM, BlockRows, block_bytes, block_flops
from ._geometry import ConvGeometry, periodic_padding
from ._gram_symbol import dense_below, gram_symbol, top_squares, worth_it
from ._memory import check_memory, fits, get_memory_limit
from ._parallel import cpu_count, map_chunks, one_blas_thread
from ._rounding import Rounding, U, cholesky_slack, gamma, up
from ._symbol import (
    conjugate_pairs,
    frequency_work_bytes,
    per_frequency,
    stored_count,
    symbol_at,
    top_per_frequency,
)
from ._typing import ProgressLike
from ._workspace import borrow, give_back

__all__ = [
    "circulant_tops",
    "circulant_uppers",
    "dense_upper",
    "embedding_grid",
    "full_bound",
    "full_bytes_and_flops",
    "section_bound",
    "section_bytes",
]


# ---------------------------------------------------------------------------------------------
# The circulant embedding.
# ---------------------------------------------------------------------------------------------
def embedding_grid(geom: ConvGeometry) -> list[int]:
    """The smallest periodic grid per axis into which the zero-padded layer embeds."""
    grid = []
    for a in geom.axes:
        total = a.dilation * (a.kernel_size - 1)  # the circular layer pads total - total//2
        # the input sits at 0..n-1: reads reach back to -pad_lo and forward to span-1-pad_lo
        need = max(a.size + a.pad[0], a.span - a.pad[0], (a.output_size - 1) * a.stride + 1,
                   total - total // 2)
        grid.append(-(-need // a.stride) * a.stride)
    return grid


def periodic_geometry(weight_shape, geom: ConvGeometry, grid: Sequence[int],
                      stride: Sequence[int] | None = None) -> ConvGeometry:
    """The circular layer with the same kernel, dilation and groups (and stride) on ``grid``."""
    return ConvGeometry.from_weight(
        weight_shape, (geom.in_channels, *grid), stride=geom.stride if stride is None else stride,
        dilation=geom.dilation, groups=geom.groups, padding_mode="circular",
        padding=periodic_padding(geom.kernel_size, geom.dilation),
    )


def _circulant_frequencies(weight, periodic: ConvGeometry) -> tuple[np.ndarray, list[int]]:
    """The frequencies to evaluate (one of each pair ``{xi, -xi}`` for a real kernel) and the
    coarse grid, after checking the memory of the per-frequency results."""
    grid = list(periodic.coarse_grid)
    check_memory(24 * math.prod(grid) * periodic.groups
                 + frequency_work_bytes(periodic, stored_count(grid, weight.dtype.kind != "c")),
                 "the per-frequency maxima of spectral_norm's circulant bound")
    if weight.dtype.kind == "c":
        return np.indices(grid).reshape(len(grid), -1).T, grid
    return conjugate_pairs(grid)[0], grid


def circulant_tops(weight, periodic: ConvGeometry, rounding: Rounding,
                   executor: Executor | None = None, progress: ProgressLike | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sigma_max`` of the periodic layer's symbol per frequency and group: computed, and
    rigorous lower and upper bounds on it (``rounding``: the weight's model).

    Each shape ``(*grid/s, groups)``. A real kernel's symbol is computed at one frequency of
    each pair ``{xi, -xi}`` and mirrored; a complex kernel's at every frequency. Where the
    Gram matrices' own coefficients cost less than the symbol's products at every frequency
    (:func:`sparseconv._gram_symbol.worth_it`: many channels), the Gram matrices come from
    them; else from the symbol.
    """
    frequencies, grid = _circulant_frequencies(weight, periodic)
    what = "spectral_norm's circulant bound"
    if worth_it(periodic, len(frequencies)):
        gram = gram_symbol(periodic, weight, rounding)
        squares = top_squares(gram, frequencies, executor, progress, what)
        top = np.sqrt(np.maximum(squares, 0.0))
        lower, upper = rounding.square_interval(squares, gram.allowance)
    else:
        top = per_frequency(periodic, weight, frequencies, top_per_frequency, executor,
                            progress, what)  # (F, groups)
        rows, cols = periodic.symbol_block
        lower, upper = rounding.top_lower(top, rows, cols), rounding.top_upper(top, rows, cols)
    return tuple(_mirrored(values, frequencies, grid, weight.dtype.kind != "c")
                 for values in (top, lower, upper))  # type: ignore[return-value]


def circulant_uppers(weight, periodic: ConvGeometry, rounding: Rounding,
                     executor: Executor | None = None, progress: ProgressLike | None = None,
                     ) -> np.ndarray:
    """:func:`circulant_tops`' upper bounds alone, shape ``(*grid/s, groups)``: where the
    Gram coefficients pay, proved by a Cholesky factorization just above a Lanczos estimate
    instead of the eigenvalues (:meth:`sparseconv._gram_symbol.GramSymbol.top_uppers`)."""
    frequencies, grid = _circulant_frequencies(weight, periodic)
    if not worth_it(periodic, len(frequencies)):
        return circulant_tops(weight, periodic, rounding, executor, progress)[2]
    gram = gram_symbol(periodic, weight, rounding)
    upper = top_squares(gram, frequencies, executor, progress,
                        "spectral_norm's circulant bound", upper_only=True)
    return _mirrored(upper, frequencies, grid, weight.dtype.kind != "c")


def _mirrored(values: np.ndarray, frequencies: np.ndarray, grid: list[int],
              real: bool) -> np.ndarray:
    """Per-frequency ``values`` on the whole grid; a real kernel's also at ``-xi``."""
    full = np.empty((*grid, values.shape[-1]))
    if real:  # sigma(-xi) = sigma(xi) only for a real kernel
        full[tuple(((-frequencies) % grid).T)] = values
    full[tuple(frequencies.T)] = values
    return full


# ---------------------------------------------------------------------------------------------
# Exact sections.
# ---------------------------------------------------------------------------------------------
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


def _below(gram: SectionGram, mu: float) -> bool:
    """Whether ``mu I - gram`` has a Cholesky factorization: by block rows where the gram
    has them (:attr:`SectionGram.row`), else in its band storage."""
    if gram.row is not None:
        return gram.block_rows().below(mu)
    return gram.band_factor(mu) is not None


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
    if mu > 0 and _below(gram, mu):
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
                     (1e-9, 1e-8, 1e-7, 1e-5, 1e-3, 1e-1, 1.0)) if _below(gram, c)),
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


# ---------------------------------------------------------------------------------------------
# Every axis exact: the whole layer's Gram matrix.
# ---------------------------------------------------------------------------------------------
#: The full certificate runs when its Cholesky factorization takes at most this many
#: multiply-adds (:func:`full_bytes_and_flops`): a few seconds of LAPACK.
FULL_FLOPS = 2**37


def _full_sides(geom: ConvGeometry) -> list[tuple[int, int]]:
    """``(rows, bandwidth + 1)`` of the whole layer's ``T^H T`` and of its ``T T^H``."""
    return [(size * c, depth * c) for size, depth, c in _gram_sides(
        geom.axes, geom.in_channels // geom.groups, geom.out_channels // geom.groups)]


def _inputs_side_only(geom: ConvGeometry) -> bool:
    """Whether the whole Gram must be the inputs' ``T^H T``: a padding that copies inputs (a
    tap may read one position twice, so ``T T^H`` has no gather map and no band in closed
    form -- two outputs may read a position and its mirror image)."""
    return geom.padding_mode != "zeros"


@dataclass(frozen=True)
class _Route:
    """One way to factorize the whole layer's Gram matrix: on the inputs' side (``T^H T``)
    or the outputs' (``T T^H``), in band storage (``row`` None) or by block rows of ``row``
    positions of the grid's first axis; its multiply-adds and its memory per group."""

    inputs: bool
    row: int | None
    flops: int
    nbytes: int


def _full_routes(geom: ConvGeometry, complex_: bool) -> list[_Route]:
    """Every route of the whole Gram: both sides (the inputs' alone for a padding that
    copies inputs), each in band storage and, for a layer in two or more dimensions, by
    block rows."""
    first = geom.axes[0]
    c_in, c_out = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    blocks = ((math.prod(geom.input_size[1:]), first.size, _reach(first, True)),
              (math.prod(geom.output_size[1:]), first.output_size, _reach(first, False)))
    itemsize = 16 if complex_ else 8
    taps = math.prod(geom.kernel_size)
    products = (taps * max(c_in, c_out)) ** 2  # the tap products
    inputs_count, outputs_count = math.prod(geom.input_size), math.prod(geom.output_size)
    routes = []
    for (rows, bandwidth), (row, count, below), channels, inputs in zip(
            _full_sides(geom), blocks, (c_in, c_out), (True, False)):
        if not inputs and _inputs_side_only(geom):
            continue
        # where the distinct blocks go (_block_plan, BlockRows): index arrays over every pair
        # of taps of every row of the side's gather map, the outputs' for T^H T (about 60
        # bytes per pair measured: 1.65 GiB for the 7x7 stem of stride 2 on 224x224), and the
        # gather maps themselves
        plan = (outputs_count if inputs else inputs_count) * taps**2 * 96 + (
            inputs_count + outputs_count) * taps * 32
        # the band bounds its distinct blocks too (a few sums of a few tap products)
        routes.append(_Route(inputs, None, rows * bandwidth**2, plan + (
            2 * bandwidth * rows + rows * channels + products) * itemsize))
        if geom.ndim > 1:
            routes.append(_Route(inputs, row, block_flops(count, row * channels, below),
                                 plan + block_bytes(below, row * channels, itemsize) + (
                                     _distinct_blocks(geom, inputs) * channels**2 + products
                                     + rows * channels) * itemsize))
    return routes


def full_route(geom: ConvGeometry, complex_: bool) -> _Route:
    """The route the whole-Gram certificate takes: of those whose memory, for as many groups
    at once as the thread pool runs, fits the memory limit (else of all), the one of the
    fewest multiply-adds by its own count, block rows on a tie.

    The band's count, ``rows * bandwidth**2``, is about twice what ``?pbtrf`` does: per
    multiply-add of those counts the band took 0.52-0.67 of the block rows' time on
    ResNet-18's 14x14 and 7x7 layers (``benchmarks/bench_spectra.py --exact --compare``).
    So the band is taken only where it is faster by a margin (its count below the block
    rows'): it holds the whole band (22 GiB for 64 channels on 56x56, against 1 GiB by
    block rows), whose pages cost time to touch too.
    """
    routes = _full_routes(geom, complex_)
    fitting = [route for route in routes if fits(route.nbytes * _groups_at_once(geom))]
    return min(fitting or routes, key=lambda route: (route.flops, route.row is None))


def _distinct_blocks(geom: ConvGeometry, inputs: bool) -> int:
    """A bound on the distinct ``C x C`` blocks of the whole Gram (of the inputs' side, or
    of the outputs'): the gather map is a product over the axes, so a block's tap pairs are
    the product of one pair set per axis, and each axis has at most twice (offsets of either
    sign) the distinct blocks of its own one-dimensional Gram."""
    count = 1
    for axis in geom.axes:
        taps = axis.tap_index()
        if not inputs:
            taps = _transposed_taps(taps, axis.size)
            if taps is None:  # pragma: no cover - the outputs' side is zero padding's only
                return math.prod(geom.input_size) * math.prod(geom.kernel_size) ** 2
        count *= 2 * max(len(_block_plan(taps)[0]), 1)
    return count


def full_bytes_and_flops(geom: ConvGeometry, complex_: bool = True) -> tuple[int, int]:
    """Memory and multiply-adds of the full certificate, before building it, on its route
    (:func:`full_route`): for as many groups at once as the thread pool runs, and for every
    group."""
    route = full_route(geom, complex_)
    return route.nbytes * _groups_at_once(geom), geom.groups * route.flops


def _groups_at_once(geom: ConvGeometry) -> int:
    """The groups the full certificate factorizes at once: os.cpu_count(), not cpu_count(),
    so that a layer worker takes the route this process would."""
    return min(geom.groups, os.cpu_count() or 1)


def _prove_groups(kernels: np.ndarray, taps: np.ndarray, size: int, candidates: list,
                  tops: np.ndarray | None, route: _Route, group_list: list,
                  ) -> list[tuple[int, int]]:
    """One task of :func:`full_bound`: per group, the first candidate ``mu`` it is proved
    below (``len(candidates)`` if none): by its circulant bound ``tops[g]`` when that is
    below already, else by a Cholesky factorization of its whole Gram on ``route``. With
    it, the bandwidth of the block rows it factorized (0 if none)."""
    proved = []
    for g in group_list:
        gram, first = None, len(candidates)
        try:
            for i, mu in enumerate(candidates):
                if tops is None or tops[g] ** 2 > mu:
                    if gram is None:
                        gram = section_gram(kernels[g], taps, size, route.inputs,
                                            not route.inputs)
                        # block rows on the route's side (section_gram keeps to the inputs'
                        # side where the outputs' has no gather map)
                        same = gram.inputs_side == route.inputs
                        gram.row = route.row if same else None
                    if not _below(gram, mu):
                        continue
                first = i
                break
            proved.append((first, gram.block_rows().bandwidth
                           if gram is not None and gram.row is not None else 0))
        finally:
            if gram is not None:
                gram.release()
    return proved


def full_bound(weight, geom: ConvGeometry, estimate: float, rounding: Rounding,
               tol: float, tops: np.ndarray | None = None,
               executor: Executor | None = None, copies: int = 1) -> float:
    """Upper bound on ``||A||`` with every axis exact: ``mu I - A^H A`` proved positive.

    The Gram matrix of each group, position-major, is banded (:class:`SectionGram` over the
    layer's gather map); one Cholesky factorization at ``mu`` just above the square of
    ``estimate`` (a lower bound near the norm) proves ``||A||^2 <= mu`` up to the rounding
    allowance of :func:`_certified_square` -- on the side and by the factorization
    :func:`full_route` picks: in band storage, or, for a real layer in two or more
    dimensions, by block rows of the grid's first axis (:mod:`sparseconv._block_cholesky`:
    BLAS-3 calls on whole block rows, holding a few block rows instead of the whole band);
    the allowance takes the larger bandwidth of the two. ``tops``: a certified upper bound
    on each group's norm, if known (its circulant bound); a group already below
    ``sqrt(mu)`` is not factorized (``A`` is block diagonal over the groups: ``||A|| =
    max_g ||A_g||``). Groups are factorized in parallel
    (:func:`sparseconv._parallel.map_chunks`). ``math.inf`` when no candidate is proved.

    Reflect and replicate padding too: their gather map reads positions near the edges more
    than once, ``copies`` times at most through one tap (:func:`_certified_square`'s
    allowance), and one output's reads stay as close together as under zero padding, so the
    Gram of the inputs' side is banded alike (the outputs' side is not: two outputs may read
    a position and its mirror image; it is never taken here).
    """
    taps = geom.index_map()  # the whole layer's gather map, C order over the axes
    size = math.prod(geom.input_size)
    c_out = geom.out_channels // geom.groups
    kernels = weight.reshape(geom.groups, c_out, weight.shape[1], -1)
    # the route full_bytes_and_flops sized: a side (the inputs' for a padding that copies
    # inputs) and a factorization; the allowance takes the widest band either side can have
    route = full_route(geom, weight.dtype.kind == "c")
    bandwidth = max(max(bandwidth for _, bandwidth in _full_sides(geom)),
                    _depth(taps) * weight.shape[1])
    candidates = [max(estimate * estimate, 1e-300) * (1 + delta)
                  for delta in (max(8 * tol, 1e-8), 1e-5, 1e-4)]
    needed = [g for g in range(geom.groups) if tops is None or tops[g] ** 2 > candidates[0]]
    workers = min(len(needed), 4 * cpu_count())
    chunks = [needed[i::workers] for i in range(workers)]
    proofs = map_chunks(_prove_groups, (kernels, taps, size, candidates, tops, route),
                        chunks, executor=executor, what="the full certificate of spectral_norm",
                        label=lambda i: f"groups {chunks[i][:4]}...") if needed else []
    worst = max((i for proof in proofs for i, _ in proof), default=0)
    if worst == len(candidates):
        return math.inf
    bandwidth = max([bandwidth, *(width for proof in proofs for _, width in proof)])
    return math.sqrt(_certified_square(candidates[worst], bandwidth, rounding,
                                       max(c_out, weight.shape[1]), math.prod(geom.kernel_size),
                                       weight.dtype.kind == "c", copies))


# ---------------------------------------------------------------------------------------------
# Small layers: the explicit matrix.
# ---------------------------------------------------------------------------------------------
def dense_upper(dense: np.ndarray, estimate: float, gram: np.ndarray | None = None) -> float:
    """A rigorous upper bound on ``||dense||_2`` near ``estimate`` (LAPACK's ``sigma_max``).

    A dense Cholesky of ``mu I - G^``, ``G^`` the computed Gram matrix of the smaller side,
    proves ``lambda_max(G^) <= mu (1 + slack)`` (:func:`sparseconv._rounding.cholesky_slack`
    of bandwidth ``n - 1``, real or complex as ``dense``); ``G^`` errs from the exact
    Gram by at most ``gamma(2m + 4) ||A||_F^2``. ``gram``: that computed Gram matrix, if the
    caller has it (``A^H A`` of a tall ``A``, ``A A^H`` of a wide one).
    """
    a = dense if dense.shape[0] >= dense.shape[1] else dense.T
    m, n = a.shape
    if gram is None:
        gram = np.conj(a.T) @ a
    frobenius = up(np.linalg.norm(a), m * n + 4)
    slack = cholesky_slack(n - 1, np.iscomplexobj(a) or np.iscomplexobj(gram))
    for delta in (4 * n * U, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 3.0):
        mu = max(estimate * estimate, 1e-300) * (1 + delta)
        if dense_below(gram, mu):
            return math.sqrt(up(mu * (1 + slack) + gamma(2 * m + 4) * frobenius * frobenius))
    return math.inf  # pragma: no cover - LAPACK does not miss by a factor of two
