"""Sparse results in the format asked for, in canonical form.

scipy's conversions keep CSR, CSC and COO canonical (sorted indices, no duplicates) when the
source is, but ``tobsr`` writes each block row's blocks in the order it meets them: a BSR
result is sorted here (and any other that is not canonical), and indices that fit int32 are
stored so, so that every builder keeps the README's promise.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["in_format", "repeated_block", "repeated_block_bytes"]


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


def repeated_block_bytes(block_nnz: int, copies: int, rows: int, dtype) -> int:
    """What :func:`repeated_block` allocates for ``copies`` copies of a block of ``block_nnz``
    entries (``rows`` rows in all): per entry a column number made from a 64-bit one and its
    value, or the 64-bit one and its cast (12 bytes), whichever is larger; the row pointer
    and the tiled row counts it is summed from (16 bytes a row)."""
    per_entry = max(12, 4 + np.dtype(dtype).itemsize)
    return copies * block_nnz * per_entry + 16 * (rows + 1)


def repeated_block(block: sp.csr_array, copies: int, dtype) -> sp.csr_array:
    """``kron(I_copies, block)`` as CSR, assembled directly (scipy's ``kron`` with an
    identity, or of a dense block, peaked at 4.5x the result's bytes: a memory audit), in
    ``dtype``, int32 indices where they fit; :func:`repeated_block_bytes` sizes it.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> block = sp.csr_array(np.array([[1.0, 0.0], [2.0, 3.0]]))
    >>> a = repeated_block(block, 2, np.float64)
    >>> bool((a.toarray() == np.kron(np.eye(2), block.toarray())).all()), a.indices.dtype
    (True, dtype('int32'))
    """
    m, n = block.shape
    index = np.int32 if max(copies * block.nnz, copies * m, copies * n) < 2**31 else np.int64
    indptr = np.empty(copies * m + 1, dtype=index)
    indptr[0] = 0
    np.cumsum(np.tile(np.diff(block.indptr), copies), out=indptr[1:])
    columns = (np.arange(copies, dtype=np.int64)[:, None] * n
               + block.indices.astype(np.int64)).ravel().astype(index)
    return sp.csr_array((np.tile(block.data.astype(dtype, copy=False), copies), columns,
                         indptr), shape=(copies * m, copies * n))
