"""Sparse results in the format asked for, in canonical form.

scipy's conversions keep CSR, CSC and COO canonical (sorted indices, no duplicates) when the
source is, but ``tobsr`` writes each block row's blocks in the order it meets them: a BSR
result is sorted here, so that every builder keeps the README's promise.
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
    if result.format == "bsr" and not result.has_canonical_format:
        result = result.copy() if result is matrix else result  # (never sort the caller's)
        result.sum_duplicates()  # sorts the blocks, and adds any repeated ones
    return result
