"""Row blocks of a layer's matrix, built from the geometry without building the rest.

A contiguous range of rows of a C-order grid ``(C, *spatial)`` is a short sequence of *slabs*:
boxes that fix the leading indices, take a range along one axis and every index of the axes
after it (at most ``2 * ndim + 1`` of them). Each slab of a convolution's rows is itself a
convolution: the same kernel, a range of output channels, and along each axis a run of
outputs ``lo .. hi-1``, which read exactly what outputs ``0 .. hi-lo-1`` of an axis with the
padding shifted by ``lo * stride`` read (:func:`output_run`). So a slab is assembled by the
same code as the whole matrix (``sparseconv._matrices._assemble_csr``), and its rows are the
full matrix's rows bit for bit: the entries, their order and the sums where padding folds
several taps onto one input.

A row range of a transposed convolution's matrix ``A.T`` is a range of *input* positions of
the convolution ``A``: its slabs are built from the block of ``A`` whose outputs read the
slab's inputs (the slab widened by the kernel's reach), restricted to those inputs and
transposed. Transposed convolutions pad with zeros only, so that block is one box.

Memory: a block costs what its rows hold (plus, for ``A.T``, the reach of the kernel around
it), sized against the memory limit before anything is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._axis_geometry import AxisGeometry
from ._formats import in_format
from ._geometry import ConvGeometry
from ._matrices import _assemble_csr, format_bytes, matrix_bytes
from ._memory import USE_OPERATOR, USE_TRANSPOSE_OPERATOR, check_memory
from ._typing import (
    ArrayLike,
    DTypeLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import as_weight, check_format, layer_dtype, positive_int, row_range

__all__ = ["conv_matrix_blocks", "output_run", "row_block", "slabs", "transposed_rows_by_blocks"]

Box = tuple[tuple[int, int], ...]


def slabs(shape: tuple[int, ...], start: int, stop: int) -> list[Box]:
    """Flat C-order positions ``start .. stop-1`` of a grid of ``shape`` as boxes, in order.

    Each box fixes the leading indices, takes a range along one axis and all of the axes
    after it, so its positions are contiguous and the boxes, concatenated, are the range.

    Examples
    --------
    >>> slabs((3, 4), 2, 11)
    [((0, 1), (2, 4)), ((1, 2), (0, 4)), ((2, 3), (0, 3))]
    """
    if start >= stop:
        return []
    if len(shape) == 1:
        return [((start, stop),)]
    inner = math.prod(shape[1:])
    first, last = start // inner, (stop - 1) // inner
    if first == last:  # within one leading index
        return [((first, first + 1), *box)
                for box in slabs(shape[1:], start - first * inner, stop - first * inner)]
    head = [] if start % inner == 0 else [
        ((first, first + 1), *box) for box in slabs(shape[1:], start % inner, inner)]
    full_from = first + (start % inner != 0)
    full_to = last + (stop % inner == 0)
    body = [((full_from, full_to), *((0, n) for n in shape[1:]))] if full_from < full_to else []
    tail = [] if stop % inner == 0 else [
        ((last, last + 1), *box) for box in slabs(shape[1:], 0, stop - last * inner)]
    return head + body + tail


def output_run(axis: AxisGeometry, lo: int, hi: int) -> AxisGeometry:
    """The axis of outputs ``lo .. hi-1`` of ``axis``: output ``i`` of it is output ``lo + i``.

    Output ``o`` reads padded position ``o*stride + t*dilation``, that is input position
    ``o*stride - pad[0] + t*dilation``; shifting the low pad by ``lo*stride`` (negative if need
    be: the input and its padding map are unchanged) renumbers the outputs.
    """
    return replace(axis, pad=(axis.pad[0] - lo * axis.stride, axis.pad[1]), output_size=hi - lo)


def _pieces(geom: ConvGeometry, box: Box) -> Iterator[tuple[int, int, int]]:
    """The channel range of ``box`` cut at group boundaries: ``(group, first, stop)``."""
    per_group = geom.out_channels // geom.groups
    c, stop = box[0]
    while c < stop:
        g = c // per_group
        yield g, c, min(stop, (g + 1) * per_group)
        c = min(stop, (g + 1) * per_group)


def _sub_geometry(geom: ConvGeometry, out_channels: int, in_channels: int,
                  box: Box) -> ConvGeometry:
    # derived from a validated geometry, so the constructor's values need no checking
    axes = tuple(output_run(axis, lo, hi) for axis, (lo, hi) in zip(geom.axes, box))
    return ConvGeometry(in_channels, out_channels, 1, axes, geom.flip)


def _reading_outputs(axis: AxisGeometry, lo: int, hi: int) -> tuple[int, int]:
    """The outputs of a zero-padded axis that read any input in ``lo .. hi-1``."""
    reach = (axis.kernel_size - 1) * axis.dilation
    first = -((reach - lo - axis.pad[0]) // axis.stride)  # ceil((lo + pad - reach) / stride)
    last = (hi - 1 + axis.pad[0]) // axis.stride
    return max(first, 0), min(last + 1, axis.output_size)


def _plan(geom: ConvGeometry, start: int, stop: int, transposed: bool):
    """Per slab and group: ``(box, group, channels, sub-geometry)`` for rows start .. stop-1."""
    ipg, opg = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    grid = geom.input_shape if transposed else geom.output_shape
    plan: list[tuple[Box, int, Any, ConvGeometry]] = []
    for box in slabs(grid, start, stop):
        if not transposed:
            for g, c0, c1 in _pieces(geom, box):
                plan.append((((c0, c1), *box[1:]), g, (c0, c1),
                             _sub_geometry(geom, c1 - c0, ipg, box[1:])))
            continue
        c, c_stop = box[0]
        outputs = tuple(_reading_outputs(axis, lo, hi) for axis, (lo, hi) in zip(geom.axes,
                                                                                  box[1:]))
        while c < c_stop:  # input channels, cut at group boundaries
            g = c // ipg
            c1 = min(c_stop, (g + 1) * ipg)
            if all(lo < hi for lo, hi in outputs):
                plan.append((((c, c1), *box[1:]), g, outputs,
                             _sub_geometry(geom, opg, c1 - c, outputs)))
            c = c1
    return plan


def check_row_block(geom: ConvGeometry, dtype: np.dtype, start: int, stop: int,
                    transposed: bool = False, plan: list | None = None,
                    hint: str = USE_OPERATOR, format: str = "csr") -> None:
    """Refuse (:class:`~sparseconv.MatrixTooLargeError`) rows ``start:stop`` of the layer's
    matrix (of its transpose if ``transposed``) if building them, as :func:`row_block` does,
    and converting them to ``format``, would exceed the memory limit; ``plan``: their
    :func:`_plan`, if already made; ``hint``: the refusal's advice."""
    shape = geom.shape[::-1] if transposed else geom.shape
    plan = _plan(geom, start, stop, transposed) if plan is None else plan
    item = np.dtype(dtype).itemsize
    nbytes = nnz = 0
    for *_, sub in plan:
        part, part_nnz, _ = matrix_bytes(sub, dtype)
        nbytes, nnz = nbytes + part, nnz + part_nnz
        if transposed:  # its coordinates, then the slab's COO and CSR
            nbytes += part_nnz * (3 * 8 + 2 * (item + 16))
    # the parts' 64-bit columns, then the block (64-bit indices at most)
    nbytes += nnz * (item + 16) + 8 * (stop - start + 1)
    if format != "csr":  # scipy's copy in that format, beside the CSR block (a hunt: CSC's
        # index of every column, 18.6 GiB for two rows of a 50000 x 50000 input)
        nbytes += format_bytes(nnz, (stop - start, shape[1]), dtype, np.int64, format)
    check_memory(nbytes, f"rows {start}:{stop} of the {shape[0]} x {shape[1]} sparse matrix "
                 f"(at most {nnz} nonzeros, with the temporaries of their assembly"
                 f"{'' if format == 'csr' else ' and of its ' + format.upper() + ' copy'})",
                 hint)


def transposed_rows_by_blocks(geom: ConvGeometry) -> bool:
    """Whether :func:`row_block` builds rows of the transpose of ``geom``'s matrix: its
    transposed slabs are one box of the layer's outputs, and a padding that folds (reflect,
    replicate, circular) reads inputs beyond it (a helper's check of spy's windows found rows
    of circular layers wrong)."""
    return geom.padding_mode == "zeros" or not any(p for a in geom.axes for p in a.pad)


def row_block(geom: ConvGeometry, weight: np.ndarray, dtype: np.dtype, rows,
              transposed: bool = False, format: str = "csr") -> sp.sparray:
    """Rows ``rows`` (a slice) of the layer's matrix (of its transpose if ``transposed``), in
    ``format``.

    Equal to ``full[rows]`` entry for entry, built in memory proportional to the block (and,
    in a format other than CSR, to its copy in that format: sized first too).
    """
    if transposed and not transposed_rows_by_blocks(geom):
        raise ValueError(f"rows of the transpose of a {geom.padding_mode}-padded layer are "
                         "not built by blocks; build the whole matrix")
    shape = geom.shape[::-1] if transposed else geom.shape
    start, stop = row_range(rows, shape[0])
    plan = _plan(geom, start, stop, transposed)
    check_row_block(geom, dtype, start, stop, transposed, plan,
                    USE_TRANSPOSE_OPERATOR if transposed else USE_OPERATOR, format)
    parts = [_transposed_slab(geom, weight, dtype, *step) if transposed
             else _slab(geom, weight, dtype, *step) for step in plan]
    return in_format(_stack(parts, (stop - start, shape[1]), dtype, transposed, geom, start,
                            plan), format)


def _index_dtype(*values: int) -> np.dtype:
    return np.dtype(sp.get_index_dtype(maxval=max(values)))


def _slab(geom, weight, dtype, box, g, channels, sub):
    """Rows of one slab and group of a convolution: ``(indptr, global columns, data)``."""
    c0, c1 = channels
    ipg, n_in = geom.in_channels // geom.groups, math.prod(geom.input_size)
    block = _assemble_csr(sub, weight[c0:c1], dtype, _index_dtype(sub.nnz(), *sub.shape))
    columns = block.indices.astype(np.int64) + g * ipg * n_in
    return block.indptr.astype(np.int64), columns, block.data


def _transposed_slab(geom, weight, dtype, box, g, outputs, sub):
    """Rows of ``A.T`` for the inputs of ``box`` (one group): the block of ``A`` whose outputs
    read them, restricted to them and transposed."""
    (c0, c1), spatial = box[0], box[1:]
    ipg, opg = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    local = weight[g * opg:(g + 1) * opg, c0 - g * ipg:c1 - g * ipg]
    block = _assemble_csr(sub, local, dtype, _index_dtype(sub.nnz(), *sub.shape)).tocoo()
    n_in = math.prod(geom.input_size)
    channel, position = np.divmod(block.col.astype(np.int64), n_in)
    where = np.unravel_index(position, geom.input_size)
    keep = np.logical_and.reduce([(w >= lo) & (w < hi) for w, (lo, hi) in zip(where, spatial)])
    box_shape = tuple(hi - lo for lo, hi in spatial)
    row = channel[keep] * math.prod(box_shape) + np.ravel_multi_index(
        tuple(w[keep] - lo for w, (lo, _) in zip(where, spatial)), box_shape)
    # the column of A.T is the row of A: output channel, then the output position in A's grid
    oc, opos = np.divmod(block.row.astype(np.int64)[keep], math.prod(sub.output_size))
    ounr = np.unravel_index(opos, sub.output_size)
    column = (g * opg + oc) * math.prod(geom.output_size) + np.ravel_multi_index(
        tuple(o + lo for o, (lo, _) in zip(ounr, outputs)), geom.output_size)
    slab = sp.coo_array((block.data[keep], (row, column)),
                        shape=((c1 - c0) * math.prod(box_shape), geom.shape[0])).tocsr()
    slab.sort_indices()
    return slab.indptr.astype(np.int64), slab.indices.astype(np.int64), slab.data


def _stack(parts, shape, dtype, transposed, geom, start, plan) -> sp.csr_array:
    """The slabs' rows, in order, as one CSR array (slabs with no rows leave empty rows)."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    row_at = 0
    grid = geom.input_shape if transposed else geom.output_shape
    offsets = []  # each part's first row within the block
    for (box, *_), (ptr, _, _) in zip(plan, parts):
        first = int(np.ravel_multi_index(tuple(lo for lo, _ in box), grid)) - start
        offsets.append(first)
        row_at = first + ptr.size - 1
        indptr[first + 1:row_at + 1] = np.diff(ptr)
    np.cumsum(indptr, out=indptr)
    nnz = int(indptr[-1])
    index_dtype = _index_dtype(nnz, *shape)
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=dtype)
    for first, (_, columns, values) in zip(offsets, parts):
        at = slice(int(indptr[first]), int(indptr[first]) + columns.size)
        indices[at], data[at] = columns, values
    block = sp.csr_array((data, indices, indptr.astype(index_dtype)), shape=shape, copy=False)
    block.has_sorted_indices = True
    block.has_canonical_format = True
    return block


def conv_matrix_blocks(
    weight: ArrayLike, input_shape: ShapeLike, *, block_rows: int | None = None,
    stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros", flip: bool = False, format: SparseFormat = "csr",
    dtype: DTypeLike | None = None,
) -> Iterator[tuple[slice, SparseArray]]:
    """The matrix of a convolution layer in row blocks, one at a time.

    Parameters
    ----------
    weight, input_shape
        Exactly as :func:`conv_matrix`.
    block_rows : int, optional
        Rows per block (the last block may be shorter); by default the rows of one output
        channel, ``prod(output spatial size)``.
    stride, padding, dilation, groups, padding_mode, flip, format, dtype
        Exactly as :func:`conv_matrix`.

    Yields
    ------
    rows : slice
        The block's rows ``slice(start, stop)`` in the full matrix.
    block : scipy.sparse array, shape (stop - start, C_in * prod(in))
        ``conv_matrix(...)[rows]``, entry for entry, built without the other rows: only one
        block exists at a time, sized against the memory limit before it is allocated.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_matrix`; ``block_rows`` not a positive integer.

    See Also
    --------
    conv_matrix : ``rows=slice(a, b)`` builds any one block.
    sparseconv.dask.conv_matrix : the blocks as a Dask array.

    Notes
    -----
    A distributed sparse solver owns a contiguous range of rows per process; each process
    builds its own, and nothing else. With petsc4py, on every rank::

        from petsc4py import PETSc
        n_rows, n_cols = sparseconv.ConvGeometry.from_weight(w.shape, input_shape).shape
        A = PETSc.Mat().create(comm=PETSc.COMM_WORLD)
        A.setSizes((n_rows, n_cols))        # PETSc splits the rows among the ranks
        A.setUp()
        start, stop = A.getOwnershipRange()
        block = sparseconv.conv_matrix(w, input_shape, rows=slice(start, stop))
        A = PETSc.Mat().createAIJ(size=((stop - start, n_rows), (None, n_cols)),
                                  csr=(block.indptr, block.indices, block.data),
                                  comm=PETSc.COMM_WORLD)

    (``PETSc.Mat().createAIJ`` wants the local rows' CSR arrays; pass ``indptr`` and
    ``indices`` as PETSc's integer type, ``block.indptr.astype(PETSc.IntType)``.)

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix, conv_matrix_blocks
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> A = conv_matrix(w, (3, 16, 16), padding=1, padding_mode="reflect")
    >>> for rows, block in conv_matrix_blocks(w, (3, 16, 16), block_rows=400, padding=1,
    ...                                       padding_mode="reflect"):
    ...     print(rows, block.shape, bool((block != A[rows]).nnz == 0))
    slice(0, 400, None) (400, 768) True
    slice(400, 800, None) (400, 768) True
    slice(800, 1024, None) (224, 768) True
    """
    check_format(format)
    weight = as_weight(weight)
    geom = ConvGeometry.from_weight(
        weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
        groups=groups, padding_mode=padding_mode, flip=flip,
    )
    if block_rows is None:
        block_rows = math.prod(geom.output_size)
    block_rows = positive_int(block_rows, "block_rows")
    dtype = layer_dtype(weight, dtype)
    return _blocks(geom, weight, dtype, block_rows, format)


def _blocks(geom, weight, dtype, block_rows, format):
    # a generator of its own, so that conv_matrix_blocks validates when called, not when iterated
    for start in range(0, geom.shape[0], block_rows):
        rows = slice(start, min(start + block_rows, geom.shape[0]))
        yield rows, row_block(geom, weight, dtype, rows, format=format)
