"""The numbers behind sparseconv's pictures, computed without matplotlib.

Every index here comes from the geometry core: a layer's spatial pattern is read off
:meth:`ConvGeometry.index_map`, the padded grid of the animations off
:meth:`AxisGeometry.pad_index`. :mod:`sparseconv.plot` draws these arrays and re-exports the
public ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._geometry import ConvGeometry, spatial_matrix
from .._matrices import check_addressable
from .._memory import check_memory
from .._operators import layer_of
from .._validation import int_tuple, is_int, positive_int

__all__ = ["Raster", "bin_edges", "density_counts", "largest_entries", "padded_index_map",
           "raster"]

#: What the plot functions draw: a matrix, or a layer (geometry or operator) drawn from its
#: geometry.
MatrixLike: TypeAlias = sp.sparray | sp.spmatrix | np.ndarray | ConvGeometry | LinearOperator

_CHUNK = 1 << 22  # entries binned per pass: bounds the temporaries at ~100 MB


@dataclass(frozen=True, eq=False)
class Raster:
    """A matrix's stored entries counted in a grid of bins (pixels).

    ``counts[i, j]`` is the number of stored entries in rows ``row_edges[i]:row_edges[i+1]``
    and columns ``col_edges[j]:col_edges[j+1]``. When every bin is one row and one column
    (:attr:`exact`), ``counts`` is the sparsity pattern itself. The edges start at 0, or at the
    first row (column) of the window that ``zoom=`` selected.

    Parameters
    ----------
    counts : ndarray of int, shape (len(row_edges) - 1, len(col_edges) - 1)
        Entries per bin (real numbers: :func:`spy`'s ``values=True`` image holds the entries'
        values, or each bin's entry of largest magnitude, NaN where nothing is stored).
    row_edges, col_edges : ndarray of int
        Strictly increasing bin edges from 0 on, in rows (columns) of the whole matrix (one
        edge alone: an empty axis, no bins).

    Raises
    ------
    TypeError
        Edges that are not integers, or counts that are not real numbers.
    ValueError
        Edges that are not one-dimensional, empty, negative or not increasing, or
        counts of another shape than the edges make.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv.plot import Raster
    >>> r = Raster(np.eye(2, dtype=int), np.array([0, 2, 4]), np.array([0, 2, 4]))
    >>> r.shape, r.exact, r.bin_shape             # a 4 x 4 matrix in 2 x 2 bins
    ((4, 4), False, (2, 2))
    """

    counts: np.ndarray
    row_edges: np.ndarray
    col_edges: np.ndarray

    def __post_init__(self) -> None:
        # (a review: any value was taken, and failed later in drawing, or drew nonsense)
        edges = [_checked_edges(getattr(self, name), name) for name in ("row_edges", "col_edges")]
        counts = np.asarray(self.counts)
        if counts.dtype.kind not in "biuf":
            raise TypeError(f"counts must be real numbers, got dtype {counts.dtype}")
        wanted = (len(edges[0]) - 1, len(edges[1]) - 1)
        if counts.shape != wanted:
            raise ValueError(f"counts has shape {counts.shape}; row_edges and col_edges make "
                             f"{wanted[0]} x {wanted[1]} bins")
        for name, value in zip(("counts", "row_edges", "col_edges"), (counts, *edges)):
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the matrix (or of the zoomed window of it) that the raster bins."""
        return (int(self.row_edges[-1] - self.row_edges[0]),
                int(self.col_edges[-1] - self.col_edges[0]))

    @property
    def exact(self) -> bool:
        """True when each pixel is exactly one entry of the matrix."""
        return self.counts.shape == self.shape

    @property
    def bin_shape(self) -> tuple[int, int] | None:
        """``(rows, columns)`` of every bin when all bins are alike, else None."""
        rows, cols = np.unique(np.diff(self.row_edges)), np.unique(np.diff(self.col_edges))
        return (int(rows[0]), int(cols[0])) if len(rows) == len(cols) == 1 else None


def _checked_edges(value, name: str) -> np.ndarray:
    """``value`` as bin edges: one-dimensional integers, at least one, from 0, increasing."""
    edges = np.asarray(value)
    if edges.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {edges.dtype}")
    if edges.ndim != 1 or not len(edges):
        raise ValueError(f"{name} must be one-dimensional with at least one edge, got shape "
                         f"{edges.shape}")
    if edges[0] < 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{name} must increase strictly from 0 or more, got {edges}")
    return edges


def _bins_per_block(block: int, wanted: int, period: int) -> int:
    """The number of equal bins to cut a block into (see :func:`bin_edges`)."""
    divisors = [d for d in range(1, min(block, wanted) + 1) if block % d == 0]
    fitting = [d for d in divisors if (block // d) % period == 0 or period % (block // d) == 0]
    for choice in (fitting, divisors):
        if choice and 2 * choice[-1] >= wanted:
            return choice[-1]
    return wanted  # a block length without a divisor near: near-equal bins


def sparse_ready(dense: np.ndarray) -> np.ndarray:
    """A dense numeric array as scipy.sparse takes it: 2-D, in the machine's byte order, float16
    as float32 (a review: a big-endian or float16 array raised scipy's "does not support
    dtype"); exact, as these conversions are.

    Examples
    --------
    >>> sparse_ready(np.arange(3.0).astype(">f8")).dtype, sparse_ready(np.ones(2, "f2")).shape
    (dtype('float64'), (1, 2))
    """
    dense = np.atleast_2d(dense)
    if dense.dtype == np.float16:
        return dense.astype(np.float32)
    return dense if dense.dtype.isnative else dense.astype(dense.dtype.newbyteorder("="))


def bin_edges(size: int, max_bins: int, blocks: int = 1, period: int = 1) -> np.ndarray:
    """Edges of at most about ``max_bins`` bins over ``range(size)``, aligned to ``blocks``.

    The axis is ``blocks`` equal blocks (channels). A block longer than a bin gets the same
    whole number ``b`` of bins, equal wherever its length allows: ``b`` is the largest divisor
    of the block length not above ``max_bins // blocks`` whose bins hold whole periods or
    divide one (an image row of ``period`` positions: bins then follow the bands of a 2-D
    layer), else the largest divisor, unless that is under half of ``max_bins // blocks`` (a
    prime length), when the ``max_bins // blocks`` bins differ in length by at most one. More
    blocks than ``max_bins`` are grouped, whole blocks per bin, ``g`` to a bin (a divisor of
    ``blocks`` when one lies within ``2 ceil(blocks / max_bins)``; else the last bin holds
    fewer). Either way every block is binned alike: no moiré between the bands and the bins.

    Parameters
    ----------
    size : int
        Length of the axis.
    max_bins : int
        About how many bins at most; positive.
    blocks : int, optional
        Number of equal blocks no bin may straddle; must divide ``size``.
    period : int, optional
        A length within each block (the width of an image row) that bins should hold a whole
        number of, or divide, where a choice of equal bins allows; must divide the block.

    Returns
    -------
    ndarray of int64
        Increasing edges from 0 to ``size``: bin ``i`` is ``range(edges[i], edges[i+1])``.

    Raises
    ------
    ValueError
        A negative ``size``, ``blocks`` not dividing it, ``period`` not dividing a block, or
        ``max_bins < 1``.
    TypeError
        An argument that is no integer.

    Examples
    --------
    >>> from sparseconv.plot import bin_edges
    >>> bin_edges(12, 5).tolist()                       # 4 equal bins, not 5 unequal ones
    [0, 3, 6, 9, 12]
    >>> bin_edges(6, 100, blocks=2).tolist()
    [0, 1, 2, 3, 4, 5, 6]
    >>> bin_edges(64 * 3136, 512, blocks=64)[:3].tolist()   # 8 bins of 392 per channel
    [0, 392, 784]
    >>> bin_edges(3136, 64)[:3].tolist(), bin_edges(3136, 64, period=56)[:3].tolist()
    ([0, 49, 98], [0, 56, 112])
    >>> bin_edges(8 * 5, 3, blocks=8).tolist()          # whole blocks: 4 channels per bin
    [0, 20, 40]
    """
    if not is_int(size):  # (a review: '100' was a ValueError, as -4 is)
        raise TypeError(f"size must be a non-negative integer, got {size!r}")
    if size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    blocks, max_bins = positive_int(blocks, "blocks"), positive_int(max_bins, "max_bins")
    if size % blocks:
        raise ValueError(f"blocks={blocks!r} must be a positive integer dividing size={size}")
    block = size // blocks
    period = positive_int(period, "period")
    if block % period:
        raise ValueError(f"period={period!r} must be a positive integer dividing the block "
                         f"length {block}")
    if blocks > max_bins:  # whole blocks per bin
        group = -(-blocks // max_bins)
        divisor = next((g for g in range(group, 2 * group + 1) if blocks % g == 0), group)
        return np.append(np.arange(0, blocks, divisor, dtype=np.int64) * block, size)
    per_block = _bins_per_block(block, min(block, max_bins // blocks), period)
    local = np.arange(per_block, dtype=np.int64) * block // per_block
    edges = (np.arange(blocks, dtype=np.int64)[:, None] * block + local).ravel()
    return np.append(edges, size)


def _entries(A, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, columns, values) of the stored entries of ``A``, a chunk at a time, without
    copying A."""
    fmt = A.format
    if fmt in ("csr", "csc"):
        major_ptr = A.indptr
        starts = np.searchsorted(major_ptr, np.arange(0, A.nnz, chunk), side="right") - 1
        # at most chunk rows a pass too: a few entries on 10**9 rows took 8 GB at once
        bounds = np.union1d(np.union1d(starts, np.arange(0, len(major_ptr) - 1, chunk)),
                            [len(major_ptr) - 1])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            major = np.repeat(np.arange(lo, hi), np.diff(major_ptr[lo:hi + 1]))
            span = slice(major_ptr[lo], major_ptr[hi])
            minor, data = A.indices[span], A.data[span]
            yield (major, minor, data) if fmt == "csr" else (minor, major, data)
    elif fmt == "coo":
        for lo in range(0, A.nnz, chunk):
            span = slice(lo, lo + chunk)
            yield A.row[span], A.col[span], A.data[span]
    else:  # (its CSR copy: an index pointer a row and the entries' columns and values)
        check_memory(8 * (A.shape[0] + 1) + (4 + A.dtype.itemsize) * A.nnz,
                     f"the CSR copy of a {A.shape[0]} x {A.shape[1]} {fmt} matrix",
                     "pass it as CSR, CSC or COO")
        yield from _entries(A.tocsr(), chunk)


def check_bins(rows: int, cols: int, what: str, per_bin: int = 16) -> None:
    """Refuse (:class:`~sparseconv.MatrixTooLargeError`) a ``rows`` x ``cols`` grid of bins
    whose arrays would not fit the memory limit, ``per_bin`` bytes a bin (counts: the int64
    counts and the histogram of a chunk beside them, 16 bytes; a raster is one image:
    ``max_bins`` of a few thousand at most is ever drawn)."""
    check_memory(per_bin * rows * cols, f"the {rows} x {cols} bins of {what}",
                 "use a smaller max_bins")


def _checked_bins(A, row_edges, col_edges, chunk, what: str,
                  per_bin: int = 16) -> tuple[int, int, int]:
    """``density_counts``'s and ``largest_entries``' arguments checked (``per_bin`` bytes of
    memory a bin): the number of bins along each axis, and the chunk."""
    if not sp.issparse(A) or A.ndim != 2:
        raise TypeError(f"A must be a 2-D scipy.sparse array or matrix, got "
                        f"{type(A).__name__} (scipy.sparse.csr_array(A) makes one)")
    # (a new user's trial: chunk=-1 counted nothing, silently, and chunk=0 divided by zero)
    chunk = positive_int(chunk, "chunk")
    for name, edges, n in (("row_edges", row_edges, A.shape[0]),
                           ("col_edges", col_edges, A.shape[1])):
        e = np.asarray(edges)
        if e.ndim != 1 or not e.size or e.dtype.kind not in "iu" or e[0] != 0 or e[-1] != n \
                or (np.diff(e) <= 0).any():  # ([0] for an empty axis)
            raise ValueError(f"{name} must be increasing integers from 0 to {n} (A.shape "
                             f"{A.shape}), got {edges!r}")
    nr, nc = len(row_edges) - 1, len(col_edges) - 1
    check_bins(nr, nc, what, per_bin)
    return nr, nc, chunk


def density_counts(A: sp.sparray | sp.spmatrix, row_edges: np.ndarray, col_edges: np.ndarray, *,
                   chunk: int = _CHUNK) -> np.ndarray:
    """Number of stored entries of the sparse array ``A`` in each bin.

    Parameters
    ----------
    A : scipy.sparse array or matrix
        Any format; CSR, CSC and COO are read in place, a chunk of entries at a time.
    row_edges, col_edges : ndarray of int
        Increasing bin edges, from 0 to the number of rows (columns).
    chunk : int, optional
        How many stored entries are binned at a time (the memory of one pass).

    Returns
    -------
    ndarray of int64, shape (len(row_edges) - 1, len(col_edges) - 1)
        Sums to ``A.nnz``.

    Raises
    ------
    TypeError
        ``A`` not a 2-D sparse array or matrix; ``chunk`` not an integer.
    ValueError
        Edges that are not increasing integers from 0 to ``A.shape``; ``chunk`` below 1.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparseconv.plot import density_counts
    >>> A = sp.csr_array(np.eye(4))
    >>> density_counts(A, np.array([0, 2, 4]), np.array([0, 2, 4])).tolist()
    [[2, 0], [0, 2]]
    """
    nr, nc, chunk = _checked_bins(A, row_edges, col_edges, chunk, "density_counts")
    row_bin, col_bin = _bin_of(np.asarray(row_edges)), _bin_of(np.asarray(col_edges))
    counts = np.zeros(nr * nc, dtype=np.int64)
    for rows, cols, _ in _entries(A, chunk):
        # one flat bin number per entry, then a histogram of them
        counts += np.bincount(row_bin(rows) * nc + col_bin(cols), minlength=nr * nc)
    return counts.reshape(nr, nc)


def largest_entries(A: sp.sparray | sp.spmatrix, row_edges: np.ndarray,
                    col_edges: np.ndarray, *, chunk: int = _CHUNK) -> np.ndarray:
    """The stored entry of largest magnitude in each bin: a matrix's values, pooled.

    The values counterpart of :func:`density_counts`, what :func:`spy` draws with
    ``values=True`` where the matrix is longer than ``max_bins``: the largest weights stay
    visible, with their signs, however many entries a pixel holds (an average would fade
    them into the zeros around).

    Parameters
    ----------
    A : scipy.sparse array or matrix
        Any format; duplicate entries are summed first (they are one entry). A complex
        matrix is pooled by modulus, and its moduli returned.
    row_edges, col_edges : ndarray of int
        Increasing bin edges, from 0 to the number of rows (columns).
    chunk : int, optional
        How many stored entries are pooled at a time (the memory of one pass).

    Returns
    -------
    ndarray of float64, shape (len(row_edges) - 1, len(col_edges) - 1)
        Per bin, the stored entry of largest magnitude (of two of equal magnitude and
        opposite signs, the positive one), NaN where the bin stores nothing; a stored zero
        is 0.

    Raises
    ------
    TypeError
        ``A`` not a 2-D sparse array or matrix of numbers; ``chunk`` not an integer.
    ValueError
        Edges that are not increasing integers from 0 to ``A.shape``; ``chunk`` below 1.
    MatrixTooLargeError
        The bins, or a copy that sums duplicate entries, beyond the memory limit.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sparseconv.plot import largest_entries
    >>> A = sp.csr_array(np.array([[1.0, -3.0, 0, 0], [2.0, 0, 0, 0]]))
    >>> largest_entries(A, np.array([0, 2]), np.array([0, 2, 4])).tolist()
    [[-3.0, nan]]
    """
    # (the running maxima, a chunk's, its signs and the result: 40 bytes a bin)
    nr, nc, chunk = _checked_bins(A, row_edges, col_edges, chunk, "largest_entries", 40)
    if A.dtype.kind not in "biufc":
        raise TypeError(f"A must hold numbers, got dtype {A.dtype}")
    if not (A.format in ("csr", "csc") and A.has_canonical_format):
        check_memory((8 + A.dtype.itemsize) * A.nnz + 8 * (max(A.shape) + 1),
                     f"a canonical copy of a {A.shape[0]} x {A.shape[1]} {A.format} matrix "
                     "(its duplicate entries summed)", "pass it as CSR with no duplicates")
        A = sp.csr_array(A, copy=True)
        A.sum_duplicates()
    row_bin, col_bin = _bin_of(np.asarray(row_edges)), _bin_of(np.asarray(col_edges))
    best = np.full(nr * nc, -1.0)          # the largest magnitude so far (-1: nothing stored)
    positive = np.zeros(nr * nc, dtype=bool)  # whether an entry of that magnitude is > 0
    for rows, cols, data in _entries(A, chunk):
        flat = row_bin(rows) * nc + col_bin(cols)
        # (as float64 first: abs of int8's -128 is -128)
        size = np.abs(data if np.iscomplexobj(data) else data.astype(np.float64, copy=False))
        top = np.full(nr * nc, -1.0)
        np.maximum.at(top, flat, size)
        at_top = size == top[flat]
        signed = at_top if np.iscomplexobj(data) else at_top & (data > 0)
        up = np.bincount(flat[signed], minlength=nr * nc) > 0
        positive = np.where(top > best, up, positive | (up & (top == best)))
        best = np.maximum(best, top)
    values = np.where(positive, best, -best)
    values[best < 0] = np.nan
    return values.reshape(nr, nc)


def _bin_of(edges: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The bin of each index, by a table of the axis's bins where the axis has at most
    ``4 * _CHUNK`` indices (the faster: 1.8 s against 2.5 to bin a 64-channel layer on 56x56),
    by a search of the edges on a longer one (a few entries on 10**9 rows took 8 GB)."""
    if edges[-1] <= 4 * _CHUNK:
        table = np.repeat(np.arange(len(edges) - 1, dtype=np.int64), np.diff(edges))
        return table.__getitem__
    return lambda index: np.searchsorted(edges, index, side="right") - 1


def _channel_connectivity(geom: ConvGeometry) -> np.ndarray:
    """``G[o, c] = 1`` where output channel ``o`` reads input channel ``c`` (same group)."""
    groups = geom.groups
    out_group = np.arange(geom.out_channels) // (geom.out_channels // groups)
    in_group = np.arange(geom.in_channels) // (geom.in_channels // groups)
    return (out_group[:, None] == in_group[None, :]).astype(np.int64)


def _zoom_range(zoom, channels: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``zoom`` checked: ``((r0, r1), (c0, c1))`` row and column block ranges, half-open."""
    full = ((0, channels[0]), (0, channels[1]))
    if zoom is None:
        return full
    try:
        (r0, r1), (c0, c1) = zoom
    except (TypeError, ValueError):
        raise TypeError(f"zoom must be ((first, stop), (first, stop)) output and input channel "
                        f"blocks, got {zoom!r}") from None
    for (lo, hi), n, side in zip(((r0, r1), (c0, c1)), channels, ("output", "input")):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                   for v in (lo, hi)):
            raise TypeError(f"zoom must hold integers, got {zoom!r}")
        if not 0 <= lo < hi <= n:
            raise ValueError(f"zoom={zoom!r}: the {side} block range ({lo}, {hi}) must satisfy "
                             f"0 <= first < stop <= {n}")
    return (int(r0), int(r1)), (int(c0), int(c1))


def raster(A: MatrixLike, max_bins: int = 512, *, channels: tuple[int, int] = (1, 1),
           period: tuple[int, int] = (1, 1),
           zoom: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Raster:
    """Count the stored entries of a matrix or a layer in at most about ``max_bins`` squared bins.

    Parameters
    ----------
    A : scipy.sparse array or matrix, ndarray, ConvGeometry, ConvOperator, ConvTransposeOperator
        A layer (geometry or operator) is binned from its geometry, without forming the matrix:
        its pattern is ``kron(G, S != 0)`` (channel connectivity ``G``, spatial pattern ``S``),
        so the counts are ``kron(G, counts of S)`` in bins aligned to the channel blocks. A
        dense array counts its nonzero entries.
    max_bins : int, optional
        Bins per axis (an axis no longer than this is drawn one index per bin: exact).
    channels : (int, int), optional
        Number of row and column blocks the bins must not straddle (ignored for a layer, whose
        channel counts are used); see :func:`bin_edges`.
    period : (int, int), optional
        Row and column lengths (image rows) that bins fit whole or divide where they can
        (ignored for a layer, which uses the width of its output and input rows).
    zoom : ((int, int), (int, int)), optional
        Bin only the row blocks ``range(*zoom[0])`` and column blocks ``range(*zoom[1])``
        (output and input channels of a layer); the edges stay in rows (columns) of the whole
        matrix.

    Returns
    -------
    Raster

    Raises
    ------
    TypeError
        A LinearOperator that is not a sparseconv layer (there is no matrix to count); a
        ``zoom`` that is not two pairs of integers.
    ValueError
        ``max_bins < 1``, ``channels`` not dividing the matrix's shape, or a ``zoom`` range
        outside the blocks.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import ConvGeometry, conv_matrix
    >>> from sparseconv.plot import raster
    >>> geom = ConvGeometry.from_weight((64, 64, 3, 3), (64, 56, 56), padding=1)
    >>> r = raster(geom, 256)                  # 4 bins of 784 x 784 entries per channel pair
    >>> r.counts.shape, r.bin_shape, int(r.counts.sum()) == geom.nnz()
    ((256, 256), (784, 784), True)
    >>> corner = raster(geom, 256, zoom=((0, 4), (0, 4)))     # 4 x 4 channel blocks
    >>> corner.counts.shape, corner.bin_shape                  # one image row per bin
    ((224, 224), (56, 56))
    >>> A = conv_matrix(np.ones((1, 1, 3)), (1, 4))
    >>> raster(A).counts.tolist()
    [[1, 1, 1, 0], [0, 1, 1, 1]]
    """
    (c0, c1), (p0, p1) = int_tuple(channels, 2, "channels", 1), int_tuple(period, 2, "period", 1)
    channels, period = (c0, c1), (p0, p1)
    layer = layer_of(A)
    if layer is not None:
        geom, transposed = layer
        # (a new user's trial: a 3x4e9x4e9 input overflowed in the bins' arithmetic)
        check_addressable(geom.shape[::-1] if transposed else geom.shape, geom, transposed)
        if transposed:
            zoom = None if zoom is None else tuple(zoom)[::-1]
        pattern = _layer_raster(geom, max_bins, zoom)
        if transposed:
            return Raster(pattern.counts.T.copy(), pattern.col_edges, pattern.row_edges)
        return pattern
    if isinstance(A, LinearOperator) and callable(getattr(A, "tosparse", None)):
        A = A.tosparse()  # a channels-last layer: its matrix, sized against the memory limit
    if isinstance(A, LinearOperator):
        raise TypeError(f"cannot raster a {type(A).__name__} without its matrix: pass "
                        "A.tosparse() or a sparseconv operator")
    if not sp.issparse(A):
        dense = np.asarray(A)
        if dense.dtype.kind not in "biufc" or dense.ndim > 2:  # (a new user's trial: "abc"
            # got scipy's list of dtypes, naming no argument)
            raise TypeError(f"A must be a matrix (a scipy.sparse array or a numeric 2-D "
                            f"array), a ConvGeometry or a sparseconv operator, got "
                            f"{type(A).__name__} (as an array: shape {dense.shape}, dtype "
                            f"{dense.dtype})")
        A = sp.csr_array(sparse_ready(dense))
    for n, c in zip(A.shape, channels):
        if n % c:
            raise ValueError(f"channels={channels!r} must divide A.shape {A.shape}")
    (r0, r1), (c0, c1) = _zoom_range(zoom, channels)
    block = (A.shape[0] // channels[0], A.shape[1] // channels[1])
    if zoom is not None:
        A = sp.csr_array(A)[r0 * block[0]:r1 * block[0], c0 * block[1]:c1 * block[1]]
    rows = bin_edges(A.shape[0], max_bins, r1 - r0, period[0])
    cols = bin_edges(A.shape[1], max_bins, c1 - c0, period[1])
    check_bins(len(rows) - 1, len(cols) - 1, "raster")
    return Raster(density_counts(A, rows, cols), rows + r0 * block[0], cols + c0 * block[1])


def row_lengths(geom: ConvGeometry) -> tuple[int, int]:
    """Positions in one row of the output and of the input grid (1 for a 1-D layer)."""
    return math.prod(geom.output_size[1:]), math.prod(geom.input_size[1:])


def _split(edges: np.ndarray, blocks: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges as (first block of each channel bin, edges within one block)."""
    if len(edges) - 1 >= blocks:  # bins within blocks, the same in each
        return np.arange(blocks), edges[:(len(edges) - 1) // blocks + 1]
    return edges[:-1] // block, np.array([0, block])  # whole blocks per bin


def _layer_raster(geom: ConvGeometry, max_bins: int, zoom) -> Raster:
    (r0, r1), (c0, c1) = _zoom_range(zoom, (geom.out_channels, geom.in_channels))
    out_block, in_block = geom.shape[0] // geom.out_channels, geom.shape[1] // geom.in_channels
    out_row, in_row = row_lengths(geom)
    rows = bin_edges((r1 - r0) * out_block, max_bins, r1 - r0, out_row)
    cols = bin_edges((c1 - c0) * in_block, max_bins, c1 - c0, in_row)
    check_bins(len(rows) - 1, len(cols) - 1, "raster")
    row_groups, row_local = _split(rows, r1 - r0, out_block)
    col_groups, col_local = _split(cols, c1 - c0, in_block)
    local = density_counts(spatial_matrix(geom), row_local, col_local)
    # channel pairs that connect, summed over the channels each bin holds
    G = _channel_connectivity(geom)[r0:r1, c0:c1]
    G = np.add.reduceat(np.add.reduceat(G, row_groups, axis=0), col_groups, axis=1)
    return Raster(np.kron(G, local), rows + r0 * out_block, cols + c0 * in_block)


def padded_index_map(geom: ConvGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Where each tap sits on the padded input grid, and what each padded cell copies.

    Parameters
    ----------
    geom : ConvGeometry

    Returns
    -------
    window : ndarray of int64, shape (prod(output_size), prod(kernel_size))
        Flat (C order) position on the padded grid of tap ``t`` of output ``o``: the index map
        of the same layer applied to the already padded input, with no padding.
    source : ndarray of int64, shape (prod(padded_size),)
        Flat input position each padded cell copies (per axis: the input position a padding
        mode reads there, as ``np.pad`` does), ``-1`` for a zero pad; ``source[window] ==
        geom.index_map()``.

    Examples
    --------
    >>> from sparseconv import ConvGeometry
    >>> from sparseconv.plot import padded_index_map
    >>> geom = ConvGeometry.from_weight((1, 1, 3), (1, 3), padding=1, padding_mode="reflect")
    >>> window, source = padded_index_map(geom)
    >>> window.tolist()                          # output o reads padded cells o, o+1, o+2
    [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    >>> source.tolist()                          # reflect: [x1 | x0 x1 x2 | x1]
    [1, 0, 1, 2, 1]
    >>> bool((source[window] == geom.index_map()).all())
    True
    """
    if not isinstance(geom, ConvGeometry):
        raise TypeError(f"geom must be a ConvGeometry, got {type(geom).__name__}")
    padded = tuple(axis.padded_size for axis in geom.axes)
    on_padded = ConvGeometry.from_weight(
        geom.weight_shape, (geom.in_channels, *padded), stride=geom.stride,
        dilation=geom.dilation, groups=geom.groups, output_size=geom.output_size,
    )
    # padding alone is the 1-tap, stride-1 layer with the same padding: its gather map
    padding = ConvGeometry.from_kernel_size(geom.input_shape, 1, padding=geom.padding,
                                            padding_mode=geom.padding_mode)
    return on_padded.index_map(), padding.index_map()[:, 0]
