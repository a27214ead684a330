"""Sparse results in the format asked for, in canonical form.

scipy's conversions keep CSR, CSC and COO canonical (sorted indices, no duplicates) when the
source is, but ``tobsr`` writes each block row's blocks in the order it meets them: a BSR
result is sorted here (and any other that is not canonical), and indices that fit int32 are
stored so, so that every builder keeps the README's promise.
"""

from __future__ import annotations

import scipy.sparse as sp

__all__ = ["in_format"]


def in_format(matrix: sp.sparray, format: str, blocksize: tuple[int, int] | None = None,
              ) -> sp.sparray:
    """``matrix`` as ``format`` (a BSR result with ``blocksize``, if given), canonical.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> a = sp.csr_array(np.array([[0, 1, 2, 3], [4, 0, 0, 5]]))
    >>> b = in_format(sp.csr_array(a[:, [2, 3, 0, 1]]), "bsr", (2, 2))
    >>> bool(b.has_canonical_format), b.indices.tolist()
    (True, [0, 1])
    """
    result = matrix.tobsr(blocksize=blocksize) if blocksize is not None else matrix.asformat(
        format)
    if not result.has_canonical_format:
        result = result.copy() if result is matrix else result  # (never sort the caller's)
        result.sum_duplicates()  # sorts (BSR: the blocks), and adds any repeated entries
    return _compact_indices(result)


def _compact_indices(matrix: sp.sparray) -> sp.sparray:
    """``matrix`` with int32 indices where they fit (scipy's rule, ``get_index_dtype``), its
    values shared: scipy keeps the int64 indices a builder computed with."""
    if matrix.format == "coo":
        indices: tuple = matrix.coords
    else:  # csr, csc, bsr
        indices = (matrix.indices, matrix.indptr)
    wanted = sp.get_index_dtype(maxval=max(matrix.nnz, *matrix.shape))
    if all(i.dtype == wanted for i in indices):
        return matrix
    small = tuple(i.astype(wanted) for i in indices)
    if matrix.format == "coo":
        result = sp.coo_array((matrix.data, small), shape=matrix.shape, copy=False)
    else:
        result = type(matrix)((matrix.data, *small), shape=matrix.shape, copy=False)
    result.has_canonical_format = True  # (checked or made so above; kept by the cast)
    return result
