"""The exact routes of :func:`sparseconv.spectral_norm`, on weights scaled to ``[1/2, 1)``.

* ``"fft"``: a periodic circular layer, the largest singular value of its symbol;
* ``"dense"``: a small layer, LAPACK's top eigenpair of its explicit matrix's Gram, certified
  by a Cholesky factorization just above it and a Rayleigh quotient below;
* ``"1x1"``: a 1x1 kernel at any stride and padding, ``A = S (x) W`` in closed form.

Each interval is the rounding allowance around the value (:mod:`sparseconv._rounding`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ._certificates import (
    circulant_tops,
    dense_upper,
)
from ._geometry import ConvGeometry, block_diagonal, copies_of
from ._matrices import conv_matrix
from ._memory import check_memory
from ._norm_result import SpectralNorm, checked_result
from ._rounding import Rounding, down, gamma, up
from ._spectra import pointwise_reads
from ._symbol import one_frequency

__all__ = ["dense_norm", "fft_norm", "pointwise_norm"]


def fft_norm(weight, geom: ConvGeometry, executor=None, progress=None) -> SpectralNorm:
    # a 1x1 kernel: one frequency holds every one's singular values (lipschitz_report's
    # circular column of a 1x1 stride-2 layer took 0.8-1.5 s at all 49-196 of them)
    geom = one_frequency(geom)
    top, lower, upper = circulant_tops(weight, geom, Rounding.of(weight, geom.groups), executor,
                                       progress)
    value, low, high = float(top.max()), float(lower.max()), float(upper.max())
    return checked_result(value, low, high, "fft", {"fft": high})


def _matrix_interval(matrix: np.ndarray, rounding: Rounding) -> tuple[float, float, float]:
    """``(value, lower, upper)`` of ``||matrix||``: the top eigenpair of its smaller Gram
    matrix (a fraction of a full SVD's work and memory), the eigenvector's quotient widened
    by ``rounding`` (``A^H u`` for a wide matrix: the same norm), and a Cholesky proof just
    above the value (:func:`dense_upper`)."""
    rows, cols = matrix.shape
    tall = matrix if rows >= cols else np.conj(matrix.T)
    gram = np.conj(tall.T) @ tall
    n = gram.shape[0]
    lam, vector = scipy.linalg.eigh(gram, subset_by_index=[n - 1, n - 1], check_finite=False)
    if lam.size == 0:  # LAPACK's dsyevr found no eigenpair in the range (a review: Grams of
        # few nonzeros, OpenBLAS 0.3.30): the whole decomposition, whose last pair is the top
        lam, vector = scipy.linalg.eigh(gram, check_finite=False)
        lam, vector = lam[-1:], vector[:, -1:]
    top, value = vector[:, 0], math.sqrt(max(float(lam[0]), 0.0))
    lower = rounding.quotient_lower(float(np.linalg.norm(tall @ top)),
                                    float(np.linalg.norm(top)), max(rows, cols))
    return value, lower, dense_upper(matrix, value, gram)


def dense_norm(weight, geom: ConvGeometry) -> SpectralNorm:
    rows, cols = geom.shape
    # the matrix, its Gram, LAPACK's copy of it and the bound's scratch: 4.2x the matrix
    # measured (a memory audit: 3x was counted)
    check_memory(5 * rows * cols * weight.itemsize, f"a dense {rows} x {cols} SVD")
    dense = _matrix(weight, geom).toarray()
    copies = copies_of(geom)
    rounding = Rounding.of(weight, geom.groups, copies)
    # (the quotient's allowance, gamma(taps_per_entry) |A|, covers the rounded entries too)
    value, lower, upper = _matrix_interval(dense, rounding)  # upper: the norm of `dense`
    if copies > 1:
        # padding that copies an input sums the taps reading one entry: each entry of `dense`
        # is a rounded sum of at most `copies` weights, off by gamma(copies - 1) times that
        # entry of |V| |P| -- which cancellation can make the whole of it -- so
        # ||A - dense|| <= gamma(copies) || |V| |P| || <= gamma(copies) abs_norm
        upper = up(upper + gamma(copies) * rounding.abs_norm, 2)
    return checked_result(value, lower, upper, "dense", {"dense": upper})


def pointwise_norm(weight, geom: ConvGeometry) -> SpectralNorm:
    """A 1x1 kernel, any stride, padding and mode: ``A = S (x) W``, in closed form.

    Each output reads one input position (or a zero pad): ``S`` has at most one 1 per row,
    ``S^T S`` is diagonal with the number of reads of each input, so ``||A|| = ||W||
    sqrt(max reads)``; ``W`` is block diagonal over the groups.
    """
    reads = math.prod(int(axis_reads.max(initial=0)) for axis_reads in pointwise_reads(geom))
    rows, cols = weight.shape[0], weight.shape[1] * geom.groups
    check_memory(weight.itemsize * (2 * rows * cols + 2 * min(rows, cols) ** 2),
                 f"the {rows} x {cols} weight matrix of a 1x1 kernel (and its adjoint), and its "
                 "smaller Gram matrix")
    matrix = block_diagonal(weight.reshape(geom.groups, -1, weight.shape[1])[None])[0]
    if reads == 0 or not matrix.any():
        return SpectralNorm(0.0, 0.0, 0.0, "1x1", {"1x1": 0.0})
    # (an SVD with full_matrices made a 65536 x 65536 factor for a Linear(65536, 10))
    value, lower, upper = _matrix_interval(matrix, Rounding.of(weight, geom.groups))
    root = math.sqrt(reads)
    lower, upper = down(root * lower, 4), up(up(root, 2) * upper, 2)
    return checked_result(value * root, lower, upper, "1x1", {"1x1": upper})


def _matrix(weight, geom: ConvGeometry) -> sp.csr_array:
    """The layer's sparse matrix."""
    return conv_matrix(weight, geom.input_shape, stride=geom.stride, padding=geom.padding,
                       dilation=geom.dilation, groups=geom.groups,
                       padding_mode=geom.padding_mode)
