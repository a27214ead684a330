"""The channels-last layout: vectors flattened in C order of ``(*spatial, C)``.

PyTorch flattens an activation as ``(C, *spatial)`` (channels first, NCHW); TensorFlow, cuDNN's
NHWC kernels and most im2col/GEMM codes flatten it as ``(*spatial, C)``. The matrix of a layer
in channels-last order is ``P_out A P_in^T``, ``A`` the channels-first matrix and ``P`` the
permutation taking ``(C, *spatial)`` to ``(*spatial, C)``: row ``i * C_out + o`` is output
channel ``o`` at flat output position ``i``, column ``j * C_in + c`` is input channel ``c`` at
flat input position ``j``.

In that order the ``C_out x C_in`` entries linking output position ``i`` to input position
``j`` are one dense block (the sum of the kernel taps that read ``j`` from ``i``), block
diagonal over the groups. So the matrix is a BSR array whose natural block is one group's
``(C_out/groups, C_in/groups)`` tile: no stored zeros, and a matvec that runs as many small
GEMVs instead of CSR's scalar loop. Any ``blocksize`` dividing that tile is honoured by cutting
it further (block rows ``(i, g, a)``, block columns ``(j, g, b)``); a block spanning several
groups would store the zeros between them, so it is refused.

The BSR arrays are written straight from the geometry's segments, as the CSR assembly of
:mod:`sparseconv._matrices` writes its own (no CSR stage, no conversion, no sort): within a
segment product every output has the same distinct input positions and folded weights, so a
block of ``data`` is one broadcast assignment of the folded, tiled weight, and a block of
``indices`` one broadcast sum. Order of the stored blocks: block rows in C order of
``(*out, groups, C_out/groups/R)``; within a row, input position ascending, then ``b`` -- so
block columns are sorted and the result is canonical. With ``blocksize=(1, 1)`` these are
exactly the arrays of the channels-last CSR matrix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._geometry import ConvGeometry
from ._memory import check_memory
from ._validation import held_in, summable

__all__ = ["array_shape", "assemble_channels_last", "channels_last_bytes", "channels_last_order",
           "from_channels_first", "in_layout", "natural_blocksize", "to_channels_first"]


def array_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The shape a flat vector of the ``(C, *spatial)`` activation ``shape`` reshapes to."""
    return (*shape[1:], shape[0]) if layout == "channels_last" else tuple(shape)


def to_channels_first(X: np.ndarray, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """Columns ``X`` (``(prod(shape), b)``) as a ``(*shape, b)`` array, channels first."""
    b = X.shape[-1]
    if layout == "channels_first":
        return X.reshape(*shape, b)
    return np.moveaxis(X.reshape(*shape[1:], shape[0], b), -2, 0)


def from_channels_first(Y: np.ndarray, layout: str) -> np.ndarray:
    """A ``(C, *spatial, b)`` result as ``(n, b)`` columns flattened in ``layout``."""
    if layout == "channels_last":
        Y = np.moveaxis(Y, 0, -2)
    return Y.reshape(-1, Y.shape[-1])


def natural_blocksize(geom: ConvGeometry) -> tuple[int, int]:
    """One group's channel tile ``(C_out/groups, C_in/groups)``."""
    return geom.out_channels // geom.groups, geom.in_channels // geom.groups


def checked_blocksize(geom: ConvGeometry, blocksize: tuple[int, int] | None,
                      transposed: bool) -> tuple[int, int]:
    """The blocksize of the *geometry's* matrix (``blocksize`` is the result's: the transpose's
    when ``transposed``); ``ValueError`` naming it unless it divides the group tile."""
    tile = natural_blocksize(geom)
    if blocksize is None:
        return tile
    wanted = blocksize[::-1] if transposed else blocksize
    if tile[0] % wanted[0] or tile[1] % wanted[1]:
        shown = tile[::-1] if transposed else tile
        raise ValueError(
            f"blocksize={blocksize} must divide the (C_out/groups, C_in/groups) = {shown} "
            "channel tile of the channels_last matrix (a block across groups would store zeros)")
    return wanted


def channels_last_bytes(geom: ConvGeometry, dtype, blocksize: tuple[int, int]) -> tuple[
        int, int, np.dtype]:
    """``(bytes, nnz, index dtype)`` of :func:`assemble_channels_last`: the BSR arrays and the
    temporaries (per-row counts, a block's index sums)."""
    rows, cols = geom.shape
    nnz = geom.nnz()
    blocks = nnz // (blocksize[0] * blocksize[1])
    index_dtype = np.dtype(sp.get_index_dtype(maxval=max(blocks, rows, cols)))
    block_rows = rows // blocksize[0]
    total = nnz * np.dtype(dtype).itemsize + (blocks + block_rows + 1) * index_dtype.itemsize
    total += blocks * 8 + 3 * block_rows * 8
    return total, nnz, index_dtype


def assemble_channels_last(geom: ConvGeometry, weight: np.ndarray, dtype: np.dtype,
                           index_dtype: np.dtype,
                           blocksize: tuple[int, int]) -> sp.bsr_array:
    """The channels-last matrix of ``geom`` as BSR with ``blocksize`` dividing the group tile
    (validated by the caller); see the module docstring for the order of the blocks."""
    from ._matrices import _BlockLayout  # the segment layout the CSR assembly also uses

    ndim, groups, c_out = geom.ndim, geom.groups, geom.out_channels
    rows_g, cols_g = natural_blocksize(geom)
    R, C = blocksize
    n_a, n_b = rows_g // R, cols_g // C  # cuts of a group tile along rows and columns
    row_slots = groups * n_a  # block rows per output position: (g, a)
    segments = [axis.segments() for axis in geom.axes]
    layout = _BlockLayout(segments, row_slots)

    # Block column of (output i, slot (g, a), input position j, cut b): j*groups*n_b + g*n_b + b
    in_steps = np.cumprod((1,) + geom.input_size[:0:-1])[::-1] * (groups * n_b)
    terms: list[list[Any]] = []
    for d, segs in enumerate(segments):
        grid = [1] * (2 * ndim + 2)
        terms.append([])
        for seg in segs:
            if seg.count == 0:
                terms[d].append(None)
                continue
            grid[d], grid[ndim + 1 + d] = seg.length, seg.count
            at = np.add.outer(np.arange(seg.length) * seg.step, seg.positions)
            terms[d].append((at * int(in_steps[d])).reshape(grid))
    slot_columns = (np.arange(row_slots) // n_a * n_b)[:, None] + np.arange(n_b)
    slot_columns = slot_columns.reshape((1,) * ndim + (row_slots,) + (1,) * ndim + (n_b,))

    w = summable(np.asarray(weight, dtype=dtype))  # (exact integer sums)
    tile = n_b * R * C
    data = np.empty(layout.length * tile, dtype=dtype)
    indices = np.empty(layout.length * n_b, dtype=index_dtype)
    for block, folded in geom.folded_blocks(w):
        f = held_in(folded, dtype)  # (C_out, C_in/groups, *counts)
        counts = f.shape[2:]
        # (g, a, r, b, c, *counts) -> (g, a, *counts, b, r, c): one slot's blocks along j, b
        pattern = f.reshape(groups, n_a, R, n_b, C, *counts)
        pattern = pattern.transpose(0, 1, *range(5, 5 + ndim), 3, 2, 4)
        layout.view(data, block, tile)[...] = pattern.reshape(row_slots, *counts, tile)
        spatial = sum(terms[d][j] for d, j in enumerate(block))
        np.add(spatial, slot_columns, out=layout.view(indices, block, n_b), casting="unsafe")

    # Block row (i, slot) holds n_b blocks for each distinct input position output i reads.
    per_output = np.ones((), np.int64)
    for d, c in enumerate(layout.counts):
        grid = [1] * ndim
        grid[d] = -1
        per_output = per_output * c.reshape(grid)
    indptr = np.zeros(math.prod(geom.output_size) * row_slots + 1, dtype=index_dtype)
    np.cumsum(np.repeat(per_output.reshape(-1) * n_b, row_slots), out=indptr[1:])
    shape = (c_out * math.prod(geom.output_size), geom.in_channels * math.prod(geom.input_size))
    matrix = sp.bsr_array((data.reshape(-1, R, C), indices, indptr), shape=shape,
                          blocksize=(R, C), copy=False)
    matrix.has_sorted_indices = True
    matrix.has_canonical_format = True
    return matrix


def in_layout(matrix: sp.sparray, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
              layout: str, what: str, hint: str | None = None) -> sp.sparray:
    """A channels-first ``matrix`` (``output_shape`` by ``input_shape``) in ``layout``:
    itself, or ``P_out A P_in^T`` as CSR, sized against the memory limit first (its CSR
    copy, the permuted rows and the relabelled columns beside it; ``hint`` as
    :func:`check_memory` takes it). (A new user's trial: the pooling and resampling builders
    had no layout, and composed with a channels-last convolution they gave wrong numbers,
    silently.)"""
    if layout == "channels_first":
        return matrix
    csr = sp.csr_array(matrix)
    held = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    check_memory(3 * held + 8 * sum(csr.shape), f"{what} in channels_last order", hint)
    out = sp.csr_array(csr[channels_last_order(output_shape)])
    inverse = np.empty(csr.shape[1], dtype=out.indices.dtype)
    inverse[channels_last_order(input_shape)] = np.arange(csr.shape[1], dtype=inverse.dtype)
    out.indices = inverse[out.indices]
    out.has_sorted_indices = False
    out.sort_indices()
    return out


def channels_last_order(shape: tuple[int, ...]) -> np.ndarray:
    """The channels-first flat index of each channels-last position of ``(C, *spatial)``:
    ``x_last = x_first[channels_last_order(shape)]``, and a channels-first matrix ``A`` is
    ``A[order(out)][:, order(in)]`` channels last (``P_out A P_in^T``).

    Examples
    --------
    >>> channels_last_order((2, 3)).tolist()   # (C=2, L=3): c0l0, c1l0, c0l1, ...
    [0, 3, 1, 4, 2, 5]
    """
    index = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    return np.moveaxis(index, 0, -1).ravel()
