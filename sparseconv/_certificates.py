"""Certified upper bounds on the spectral norm of a layer, each rigorous in float64.

* **Circulant embedding.** A zero-padded layer is the restriction ``P C Z`` of a strided
  circular layer ``C`` on any grid ``N`` with no wrap-around: ``N >= max(n + pad_lo, span -
  pad_lo)`` per axis (``n`` inputs, ``span = dilation * (k - 1) + 1`` the kernel's extent;
  left and right pads can share one gap of zeros), ``N > (m-1)*stride`` (``m`` outputs),
  ``N`` a multiple of the stride. So ``||A|| <= ||C|| = max_xi sigma_max(H(xi))``, by the symbol
  (:mod:`sparseconv._symbol`) at every frequency -- all of them for a complex kernel, one of
  each pair ``{xi, -xi}`` for a real one (``H(-xi) = conj(H(xi))``).
* **Exact sections** (:mod:`sparseconv._exact_sections`). Embedding all axes but one, ``e``,
  makes ``A`` block diagonal over the frequencies of the other axes: each block is a 1-D
  zero-padded multi-channel layer ``T`` along ``e`` whose Gram matrix is banded
  (:mod:`sparseconv._section_gram`). ``lambda_max(T^H T) < mu`` is proved by one banded
  Cholesky factorization of ``mu I - T^H T`` (or of ``mu I - T T^H``, the same top
  eigenvalue, when that is cheaper: a strided layer's outputs are fewer and overlap less),
  so axis ``e``'s boundary is treated exactly. Blocks are visited by decreasing circulant
  bound, and only while one could still raise the maximum. Complex kernels are handled as
  they are: Gram matrices are Hermitian.
* **Every axis exact** (:mod:`sparseconv._whole_gram`). The same Cholesky test on the whole
  layer's banded Gram, where it is cheap enough (small grids with few channels) or asked
  for: for a real layer in two or more dimensions, by block rows of the grid's first axis
  (:mod:`sparseconv._block_cholesky`: BLAS-3 calls on whole block rows, holding a few block
  rows instead of the band), else in LAPACK's band storage.
* **Dense** (:func:`dense_upper`, here). For small layers, ``sigma_max`` of the explicit
  matrix by LAPACK, certified by a dense Cholesky factorization of ``mu I - A^H A``.

This module holds the first and the last; the circulant bounds per frequency also order
and prune the sections' blocks and the whole Gram's groups.

Every number that decides a bound (the circulant maxima used to prune blocks included) is
widened by its rounding allowance from :mod:`sparseconv._rounding`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from ._geometry import ConvGeometry, periodic_padding
from ._gram_symbol import dense_below, gram_symbol, top_squares, worth_it
from ._memory import check_memory
from ._rounding import Rounding, U, cholesky_slack, gamma, up
from ._symbol import (
    conjugate_pairs,
    frequency_work_bytes,
    per_frequency,
    stored_count,
    top_per_frequency,
)
from ._typing import ProgressLike

__all__ = [
    "circulant_tops",
    "circulant_uppers",
    "dense_upper",
    "embedding_grid",
    "periodic_geometry",
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
