"""The Cholesky test of a block-banded Gram matrix by block rows, at GEMM speed.

The whole-Gram certificate (:func:`sparseconv._whole_gram.full_bound`) proves
``lambda_max(G) < mu`` by factorizing ``mu I - G``, ``G`` position-major over the grid. Over
the grid's first axis, ``G`` is block banded: a block row holds every position with one
index on that axis (``row`` positions, ``s = row * channels`` unknowns), and two block rows
are coupled only within the kernel's reach along that axis (``reach`` block rows, 2 for a
3x3 kernel of stride 1). LAPACK's banded factorization (``?pbtrf``) runs through such a band
in panels of a few dozen columns; on a 512-channel layer on 7x7 (``s = 3584``) it ran at a
third of the machine's GEMM rate. Here the same factorization is carried out on whole block
rows: per block row, one dense Cholesky of the diagonal block, one triangular solve of the
panel below it, and one symmetric rank-``s`` update plus one GEMM per block row it reaches
-- BLAS-3 calls of thousands of rows, near the GEMM rate. Only ``reach + 1`` block columns
are held at once (the factor is not kept: the test needs only to know that it exists), in a
ring of buffers reused from column to column.

The factorization is a Cholesky factorization of a matrix of bandwidth ``(reach + 1) s - 1``
(the block band holds the band), so a completed one proves what a banded one proves, with
that bandwidth in :func:`sparseconv._rounding.cholesky_slack`: :func:`block_bandwidth`.

The panel is stored by rows, so that BLAS sees its transpose, in Fortran order, and every
call works in place. A complex (Hermitian) Gram matrix -- an exact section's block off the
zero frequency, or a complex layer's -- stores its panel conjugated, so that BLAS sees its
conjugate transpose: the same calls then run in complex arithmetic (``?herk`` for
``?syrk``, and conjugate transposes for transposes).

An exact section's Gram (one axis's positions, many channels each) is block banded too, a
block row being one position. On one BLAS thread (Zen 3, OpenBLAS's Haswell kernel;
``benchmarks/bench_spectra.py --sections``) its test took 0.60-0.87 of the band's time on
256 and 512 channels (512 on 7x7: 0.16 against 0.21 s real, 0.48 against 0.63 s complex; on
28x28: 2.6 against 4.3 s complex), 0.61-0.97 on 128 channels, and 0.85-1.59 on 64 channels:
sections take block rows from :data:`SECTION_ROWS_FROM` channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack

from ._workspace import borrow, give_back

__all__ = ["SECTION_ROWS_FROM", "BlockRows", "block_bandwidth", "block_bytes", "block_flops"]

#: Exact sections whose Gram has at least this many channels per position are tested by block
#: rows of one position, fewer in their band storage (measured: the module's docstring).
SECTION_ROWS_FROM = 128


def block_bandwidth(reach: int, row: int, channels: int) -> int:
    """The bandwidth, in unknowns, of the block band of ``reach`` block rows of ``row``
    positions of ``channels`` each: what the block factorization's rounding allowance takes."""
    return (reach + 1) * row * channels - 1


def block_flops(count: int, size: int, reach: int) -> int:
    """The multiply-adds of the factorization of ``count`` block rows of ``size`` unknowns,
    each coupled to ``reach`` block rows below it: per block row with ``d`` block rows below
    it, a dense Cholesky (``s^3 / 6``), a triangular solve of the panel below (``s^3 / 2``
    per block) and the update of the ``d (d + 1) / 2`` blocks it reaches (``s^3`` each below
    the diagonal, ``s^3 / 2`` on it): ``(1/6 + d/2 + d^2/2) s^3``."""
    total = 0
    for i in range(count):
        depth = min(reach, count - 1 - i)
        total += size**3 // 6 + depth * size**3 // 2 + depth * depth * size**3 // 2
    return total


def block_bytes(reach: int, size: int, itemsize: int = 8) -> int:
    """The memory of the ring of ``reach + 1`` block columns (``itemsize`` bytes per entry: 8
    real, 16 complex): per column, its diagonal block and the panel of ``reach`` blocks below
    it."""
    return (reach + 1) * (1 + max(reach, 1)) * size**2 * itemsize


class BlockRows:
    """``mu I - G`` by block rows, from the distinct ``C x C`` blocks of ``-G``.

    ``blocks``: ``(d, starts, block)`` triples (:meth:`SectionGram._assemble`): ``block.T``
    is the block of ``-G`` at positions ``(q + d, q)`` for every ``q`` in ``starts``, ``d >=
    0``. ``positions`` is a multiple of ``row``, the positions of one block row.
    """

    def __init__(self, blocks: Sequence[tuple[int, np.ndarray, np.ndarray]], channels: int,
                 positions: int, row: int) -> None:
        if positions % row:
            raise ValueError(f"positions={positions} is not a multiple of row={row}")
        self.channels, self.row, self.count = channels, row, positions // row
        self.size = row * channels  # unknowns of one block row
        self._blocks = [block for _, _, block in blocks]
        #: float64 or complex128: a complex matrix stores its panels conjugated (:meth:`_fill`)
        self.dtype = np.result_type(np.float64, *(block.dtype for block in self._blocks))
        # every placement (q + d, q) of a distinct block, by the block column of q
        q, d, which = (np.concatenate(parts) if parts else np.zeros(0, np.int64) for parts in (
            [np.asarray(at, dtype=np.int64) for _, at, _ in blocks],
            [np.full(len(at), d, np.int64) for d, at, _ in blocks],
            [np.full(len(at), i, np.int64) for i, (_, at, _) in enumerate(blocks)]))
        p = q + d
        self._column = q // row
        self._below = p // row - self._column  # block rows between the entry and its column
        self._p, self._q, self._which = p % row, q % row, which
        self.reach = int(self._below.max()) if self._below.size else 0
        order = np.argsort(self._column, kind="stable")
        cuts = np.searchsorted(self._column[order], np.arange(self.count + 1))
        self._by_column = [order[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:])]

    @property
    def bandwidth(self) -> int:
        """:func:`block_bandwidth` of this matrix."""
        return block_bandwidth(self.reach, self.row, self.channels)

    def _fill(self, column: int, mu: float, diagonal: np.ndarray, panel: np.ndarray) -> None:
        """Block column ``column`` of ``mu I - G``: its diagonal block (lower half, Fortran
        order) and the ``reach`` blocks below it, stacked by rows (C order), conjugated if
        complex (so that the panel's Fortran-ordered transpose is their conjugate transpose,
        as the real one's is their transpose)."""
        c, conj = self.channels, self.dtype.kind == "c"
        diagonal.fill(0)
        panel.fill(0)
        for i in self._by_column[column].tolist():
            below, p, q = int(self._below[i]), int(self._p[i]), int(self._q[i])
            block = self._blocks[int(self._which[i])].T  # the entry of -G at (p, q), (a, b)
            if below == 0:  # p >= q: the lower half of the diagonal block (p = q: all of it)
                diagonal[p * c:(p + 1) * c, q * c:(q + 1) * c] = block
            else:
                start = (below - 1) * self.size + p * c
                panel[start:start + c, q * c:(q + 1) * c] = np.conj(block) if conj else block
        diagonal[np.diag_indices_from(diagonal)] += mu

    def below(self, mu: float) -> bool:
        """Whether ``mu I - G`` has a Cholesky factorization (``G`` real symmetric or complex
        Hermitian)."""
        if not np.isfinite(mu):
            return False
        if not self.count:
            return True
        s, reach, count = self.size, self.reach, self.count
        slots = reach + 1
        # complex: the panel holds conj(B), its Fortran view B^H; "adjoint" is BLAS's trans
        # code of the conjugate transpose (2), or of the transpose for a real matrix (1)
        potrf, trsm, gemm, rank_k, adjoint = (
            (lapack.zpotrf, blas.ztrsm, blas.zgemm, blas.zherk, 2) if self.dtype.kind == "c"
            else (lapack.dpotrf, blas.dtrsm, blas.dgemm, blas.dsyrk, 1))
        diagonals = borrow((slots, s, s), self.dtype)  # each transposed below: Fortran order
        panels = borrow((slots, max(reach, 1) * s, s), self.dtype)  # C order
        try:
            for j in range(min(slots, count)):
                self._fill(j, mu, diagonals[j].T, panels[j])
            for i in range(count):
                slot = i % slots
                diagonal, panel = diagonals[slot].T, panels[slot]
                factor, info = potrf(diagonal, lower=1, overwrite_a=1, clean=0)
                # not positive definite (info > 0); a NaN pivot passes OpenBLAS's dpotrf with
                # info = 0 (and any NaN or infinity in the panels reaches a later pivot)
                if info != 0 or not np.isfinite(np.diagonal(factor)).all():
                    return False
                _same(factor, diagonal)
                depth = min(reach, count - 1 - i)  # block rows below this one
                if depth:
                    # the panel's block rows B_a become L_a = B_a L^-H: L L_a^H = B_a^H
                    solved = trsm(1.0, factor, panel[:depth * s].T, lower=1, overwrite_b=1)
                    _same(solved, panel[:depth * s].T)
                for b in range(1, depth + 1):
                    target = (i + b) % slots
                    own = panel[(b - 1) * s:b * s].T  # L_b^H
                    # the diagonal block of block row i + b: minus L_b L_b^H
                    updated = rank_k(-1.0, own, beta=1.0, c=diagonals[target].T,
                                     trans=adjoint, lower=1, overwrite_c=1)
                    _same(updated, diagonals[target].T)
                    if b < depth:  # the blocks (i + a, i + b), a > b: minus L_a L_b^H, held
                        # as their conjugate transposes: minus L_b L_a^H
                        rows = panels[target][:(depth - b) * s].T
                        updated = gemm(-1.0, own, panel[b * s:depth * s].T, beta=1.0,
                                       c=rows, trans_a=adjoint, overwrite_c=1)
                        _same(updated, rows)
                if i + slots < count:  # this slot's next column: untouched by earlier ones
                    self._fill(i + slots, mu, diagonal, panel)
            return True
        finally:
            give_back(panels)
            give_back(diagonals)


def _same(result: np.ndarray, target: np.ndarray) -> None:
    """BLAS wrote in place (scipy's wrappers copy an operand they cannot use as it is)."""
    if not np.shares_memory(result, target):  # pragma: no cover - the layouts above are exact
        raise RuntimeError("a BLAS call of the block Cholesky test copied its operand")
