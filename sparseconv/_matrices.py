"""Every convolution layer as an exact ``scipy.sparse`` array.

The matrix is assembled straight into CSR from the geometry's gather map, with no COO stage and
no sort of the nonzeros. The map is separable: along each axis, outputs fall into a few
*segments* that read alike (:meth:`AxisGeometry.segments`: left border, interior, right
border). A product of one segment per axis is a *block* of the matrix whose rows all hold the
same pattern of weights, shifted by the stride, so each block of ``data`` (for every output
channel at once) and of ``indices`` is one strided broadcast assignment. A 3x3 zero-padded
layer is 9 blocks; the work is one write of each stored entry, as close to a memory fill as
numpy gets.

Layout of the stored entries: rows in C order of ``(C_out, *out)``; within a row, input
channel major, then the distinct input positions in C order -- so the column indices of each
row are sorted and the result is in canonical format.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ._axis_geometry import AxisSegment
from ._formats import in_format
from ._geometry import ConvGeometry
from ._layout import assemble_channels_last, channels_last_bytes, checked_blocksize
from ._memory import USE_OPERATOR, USE_TRANSPOSE_OPERATOR, check_memory
from ._typing import (
    ArrayLike,
    BlockSize,
    DTypeLike,
    ExplicitPaddingLike,
    IntOrTuple,
    Layout,
    PaddingLike,
    PaddingMode,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import (
    as_weight,
    check_blocksize,
    check_format,
    check_layout,
    held_in,
    layer_dtype,
    summable,
)

__all__ = ["assemble", "check_addressable", "conv_matrix", "conv_transpose_matrix", "format_bytes",
           "matrix_bytes"]


class _BlockLayout:
    """Where each block's entries lie in the per-channel entry array of length ``length``.

    Entries of one output channel are laid out by output position (C order), then input
    channel, then distinct input position per axis (C order). Along axis ``d``, output ``o``
    has ``counts[d][o]`` entries and ``totals[d]`` is their sum over all outputs.
    """

    def __init__(self, segments: list[tuple[AxisSegment, ...]], in_per_group: int):
        self.segments, self.in_per_group = segments, in_per_group
        counts = [np.repeat([s.count for s in segs], [s.length for s in segs]) for segs in segments]
        self.counts = counts
        self.prefix = [np.cumsum(c) - c for c in counts]  # exclusive prefix sums
        self.totals = [int(c.sum()) for c in counts]
        self.length = in_per_group * math.prod(self.totals)

    def fill_indptr(self, indptr: np.ndarray, c_out: int) -> None:
        """Write the CSR ``indptr`` of ``c_out`` channels in place: no temporary of its size.

        A row's entry count is ``in_per_group * prod_d counts[d][o_d]``, a broadcast product
        written into the first channel's slots, then summed in place.
        """
        first = indptr[1:].reshape(c_out, -1)
        row = first[0].reshape([len(c) for c in self.counts])
        row[...] = self.in_per_group
        for d, c in enumerate(self.counts):
            grid = [1] * len(self.counts)
            grid[d] = -1
            np.multiply(row, c.reshape(grid), out=row, casting="unsafe")
        np.cumsum(first[0], out=first[0])
        np.add(first[0], (np.arange(1, c_out) * self.length)[:, None].astype(indptr.dtype),
               out=first[1:])
        indptr[0] = 0

    def view(self, array: np.ndarray, block: tuple[int, ...],
             tile: int | None = None) -> np.ndarray:
        """The entries of a block of ``array`` (shape ``(..., length * tile)``, C-contiguous).

        Returns a writeable view of shape ``(..., *lengths, in_per_group, *counts)``: output
        within the block, then input channel, then distinct input positions per axis; with a
        ``tile`` every entry is ``tile`` consecutive elements, a last axis of the view.
        """
        segs = [self.segments[d][j] for d, j in enumerate(block)]
        counts, totals = [s.count for s in segs], self.totals
        ndim = len(segs)
        # Moving one output along axis d skips its entries, times the entries of the outputs
        # of the axes before d (fixed within the block) and of all outputs of the axes after d.
        out_steps = [self.in_per_group * counts[d] * math.prod(counts[:d])
                     * math.prod(totals[d + 1:]) for d in range(ndim)]
        entry_steps = [math.prod(counts[d:]) for d in range(ndim + 1)]  # channel, then axes
        offset = self.in_per_group * sum(
            int(self.prefix[d][s.start]) * math.prod(counts[:d]) * math.prod(totals[d + 1:])
            for d, s in enumerate(segs)
        )
        shape = (*(s.length for s in segs), self.in_per_group, *counts)
        steps = (*out_steps, *entry_steps)
        last = offset + sum((n - 1) * step for n, step in zip(shape, steps))
        if last >= self.length or array.shape[-1] != self.length * (tile or 1):
            # an unchecked view past the end would corrupt memory
            raise RuntimeError(f"block {block} reaches entry {last} of {self.length}")
        item = array.itemsize * (tile or 1)
        if tile is not None:
            shape, steps = (*shape, tile), tuple(s * tile for s in steps) + (1,)
        return np.ndarray(
            array.shape[:-1] + shape, array.dtype, buffer=array, offset=offset * item,
            strides=array.strides[:-1] + tuple(step * array.itemsize for step in steps),
        )


def format_bytes(nnz: int, shape: tuple[int, int], dtype, index_dtype, format: str) -> int:
    """Bytes of a sparse array of ``shape`` with ``nnz`` entries stored in ``format``.

    ``bsr`` is counted twice over: scipy may choose blocks that store some zeros; and with
    the work arrays of scipy's conversion to it, one pointer per block column (``tobsr``'s
    ``csr_count_blocks`` and ``csr_tobsr``: a fuzz run's 2 x 2^40 layer of one nonzero, 40 bytes
    in CSR, raised ``MemoryError: std::bad_alloc`` as BSR).
    """
    item, idx = np.dtype(dtype).itemsize, np.dtype(index_dtype).itemsize
    if format == "coo":
        return nnz * (item + 2 * idx)
    compressed = nnz * (item + idx) + (shape[format == "csc"] + 1) * idx
    return 2 * compressed + 8 * (shape[1] + 1) if format == "bsr" else compressed


def check_addressable(shape: tuple[int, int], geom: ConvGeometry,
                      transposed: bool = False) -> None:
    """``ValueError`` for a matrix with more rows or columns than int64 indices address (no
    memory limit makes it possible: scipy.sparse itself cannot hold it). ``shape`` is the
    matrix's; ``transposed``: it is the transposed layer's, whose input is ``geom``'s output
    (a review: the message described the convolution, not the layer asked for)."""
    if max(shape) > np.iinfo(np.int64).max:
        source, target = ((geom.output_shape, geom.input_shape) if transposed
                          else (geom.input_shape, geom.output_shape))
        raise ValueError(  # (the output's size names padding, stride, dilation's part)
            f"the {shape[0]} x {shape[1]} matrix of the "
            f"{'transposed ' if transposed else ''}layer from input_shape={source} to "
            f"output_shape={target} (padding={geom.padding}, stride={geom.stride}) has more "
            "rows or columns than int64 indices can address")


def matrix_bytes(geom: ConvGeometry, dtype, format: str = "csr", *,
                 transposed: bool = False) -> tuple[int, int, np.dtype]:
    """``(bytes, nnz, index dtype)`` of assembling the layer's matrix (its transpose if
    ``transposed``) in ``format``: the CSR arrays, every temporary of :func:`assemble`, and the
    converted copy that exists beside the CSR arrays while scipy converts them. O(segments)."""
    shape = geom.shape
    check_addressable(shape[::-1] if transposed else shape, geom, transposed)
    nnz = geom.nnz()
    # more nonzeros than int64 counts (a review: scipy's get_index_dtype raised a bare
    # OverflowError): int64 in the count, which then exceeds any memory limit
    largest = max(nnz, *shape)
    index_dtype = np.dtype(np.int64 if largest > np.iinfo(np.int64).max
                           else sp.get_index_dtype(maxval=largest))
    idx = index_dtype.itemsize
    per_channel = nnz // geom.out_channels
    sum_out = sum(geom.output_size)
    total = format_bytes(nnz, shape, dtype, index_dtype, "csr")
    # one channel's columns, a block's spatial sums (int64), the per-axis counts
    total += per_channel * (idx + 8) + 4 * sum_out * 8
    final = shape[::-1] if transposed else shape
    # A.T is a CSC view of A: only another format is a copy
    if format != ("csc" if transposed else "csr"):
        total += format_bytes(nnz, final, dtype, index_dtype, format)
        if transposed and format == "bsr":  # via CSR
            total += format_bytes(nnz, final, dtype, index_dtype, "csr")
    return total, nnz, index_dtype


def assemble(geom: ConvGeometry, weight: np.ndarray, dtype: np.dtype, format: str = "csr", *,
             transposed: bool = False, extra: int = 0, layout: str = "channels_first",
             blocksize: tuple[int, int] | None = None,
             hint: str | None = USE_OPERATOR) -> sp.sparray:
    """The layer described by ``geom`` with (validated) ``weight`` as a sparse array in
    ``format``; its transpose if ``transposed``. Sized against the memory limit first (plus
    ``extra`` bytes the caller will allocate beside it), before any array is allocated.
    ``layout="channels_last"`` orders rows and columns as ``(*spatial, C)``, built as BSR
    (:mod:`sparseconv._layout`); ``blocksize`` (validated by ``check_blocksize``) is the
    result's BSR blocksize. ``hint``: the refusal's advice (a pooling matrix has no
    matrix-free operator to suggest)."""
    rows, cols = geom.shape[::-1] if transposed else geom.shape
    if transposed and hint == USE_OPERATOR:
        hint = USE_TRANSPOSE_OPERATOR
    if layout == "channels_last":
        return _assemble_channels_last(geom, weight, dtype, format, transposed, extra, blocksize,
                                       hint)
    nbytes, nnz, index_dtype = matrix_bytes(geom, dtype, format, transposed=transposed)
    check_memory(nbytes + extra, f"the {rows} x {cols} sparse matrix with {nnz} nonzeros "
                 f"({format.upper()}, with the temporaries of its assembly)", hint)
    matrix = _assemble_csr(geom, weight, dtype, index_dtype)
    matrix = matrix.T if transposed else matrix
    if blocksize is not None:  # scipy's conversion, which checks that it divides the shape
        if rows % blocksize[0] or cols % blocksize[1]:
            raise ValueError(f"blocksize={blocksize} must divide the shape {(rows, cols)} of "
                             "the matrix")
        return in_format(matrix, format, blocksize)
    return in_format(matrix, format)


def _assemble_channels_last(geom: ConvGeometry, weight: np.ndarray, dtype: np.dtype,
                            format: str, transposed: bool, extra: int,
                            blocksize: tuple[int, int] | None,
                            hint: str | None = USE_OPERATOR) -> sp.sparray:
    """:func:`assemble` in channels-last order: BSR blocks straight from the segments; CSR is
    the case of 1x1 blocks (the same arrays); other formats and transposes are scipy's."""
    rows, cols = geom.shape[::-1] if transposed else geom.shape
    check_addressable((rows, cols), geom, transposed)
    block = (1, 1) if format != "bsr" else checked_blocksize(geom, blocksize, transposed)
    nbytes, nnz, index_dtype = channels_last_bytes(geom, dtype, block)
    direct = "bsr" if format == "bsr" else ("csc" if transposed else "csr")
    if transposed or format != direct:  # scipy's transpose or conversion is a second copy
        nbytes += format_bytes(nnz, (rows, cols), dtype, index_dtype, format)
    check_memory(nbytes + extra, f"the {rows} x {cols} sparse matrix with {nnz} nonzeros "
                 f"({format.upper()}, channels_last, with the temporaries of its assembly)",
                 hint)
    matrix: sp.sparray = assemble_channels_last(geom, weight, dtype, index_dtype, block)
    if format != "bsr":
        bsr = matrix
        matrix = sp.csr_array((bsr.data.reshape(-1), bsr.indices, bsr.indptr), shape=bsr.shape,
                              copy=False)
        matrix.has_sorted_indices = True
        matrix.has_canonical_format = True
    return in_format(matrix.T if transposed else matrix, format)


def _assemble_csr(geom: ConvGeometry, weight: np.ndarray, dtype: np.dtype,
                  index_dtype: np.dtype) -> sp.csr_array:
    shape, ndim = geom.shape, geom.ndim
    c_out, groups = geom.out_channels, geom.groups
    in_per_group, n_in = geom.in_channels // groups, math.prod(geom.input_size)
    segments = [axis.segments() for axis in geom.axes]
    layout = _BlockLayout(segments, in_per_group)

    # Column of entry (output i of a block, channel c, positions e) in group 0:
    # c*n_in + sum_d in_step_d * (positions_d[e_d] + i_d*stride_d). One term per segment.
    in_steps = np.cumprod((1,) + geom.input_size[:0:-1])[::-1]
    terms: list[list[Any]] = []  # per axis and segment: column offsets, None if empty
    for d, segs in enumerate(segments):
        grid = [1] * (2 * ndim + 1)
        terms.append([])
        for seg in segs:
            if seg.count == 0:  # outputs that read only padding: no entries, no columns
                terms[d].append(None)
                continue
            grid[d], grid[ndim + 1 + d] = seg.length, seg.count
            at = np.add.outer(np.arange(seg.length) * seg.step, seg.positions)
            terms[d].append((at * int(in_steps[d])).reshape(grid))
    channel_columns = np.arange(in_per_group).reshape((1,) * ndim + (-1,) + (1,) * ndim) * n_in

    w = summable(np.asarray(weight, dtype=dtype))  # (exact integer sums)
    data = np.empty((c_out, layout.length), dtype=dtype)
    columns = np.empty(layout.length, dtype=index_dtype)
    for block, folded in geom.folded_blocks(w):
        pattern = held_in(folded, dtype).reshape(c_out, 1, -1)
        # Consecutive outputs along the last axis are consecutive rows, contiguous in memory:
        # write a strip of them once, then copy the strip with long contiguous inner loops.
        target = layout.view(data, block)
        strip = np.broadcast_to(pattern, (c_out, target.shape[ndim], pattern.shape[-1]))
        target = target.reshape(target.shape[:ndim] + (-1,))
        target[...] = strip.reshape(c_out, *(1,) * (ndim - 1), -1)
        spatial = sum(terms[d][j] for d, j in enumerate(block))
        np.add(spatial, channel_columns, out=layout.view(columns, block), casting="unsafe")

    indices = np.empty((c_out, layout.length), dtype=index_dtype)
    out_per_group = c_out // groups
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        np.add(columns, index_dtype.type(g * in_per_group * n_in), out=indices[rows])
    indptr = np.empty(shape[0] + 1, dtype=index_dtype)
    layout.fill_indptr(indptr, c_out)
    matrix = sp.csr_array((data.reshape(-1), indices.reshape(-1), indptr), shape=shape, copy=False)
    matrix.has_sorted_indices = True
    matrix.has_canonical_format = True
    return matrix


def _rows_layout(layout, blocksize) -> None:
    """``rows=`` are rows of the channels-first matrix: refuse the options that reorder it."""
    if layout != "channels_first":
        raise ValueError(f"rows= selects rows of the channels-first matrix; it cannot be "
                         f"combined with layout={layout!r}")
    if blocksize is not None:
        raise ValueError(f"rows= builds CSR row blocks; it cannot be combined with "
                         f"blocksize={blocksize!r}")


def conv_matrix(
    weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
    padding: PaddingLike | None = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros", flip: bool = False, format: SparseFormat = "csr",
    dtype: DTypeLike | None = None, layout: Layout = "channels_first",
    blocksize: BlockSize | None = None, rows: slice | None = None,
) -> SparseArray:
    """The sparse matrix of a convolution layer (PyTorch's ``conv{1,2,3}d``).

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        PyTorch's weight layout. Any number of spatial dimensions.
    input_shape : tuple of int
        ``(C_in, *spatial)``, without the batch dimension.
    stride : int or tuple of int, optional
        Positive, per spatial dimension.
    padding : int, tuple of int or of (lo, hi) pairs, {"valid", "same", "full"} or None, optional
        Non-negative. ``"same"`` follows PyTorch (total ``dilation*(k-1)``, the odd pixel on the
        high side; stride 1 only); ``"full"`` pads ``dilation*(k-1)`` on both sides; explicit
        per-side pairs are an extension PyTorch lacks. ``None`` (with
        ``padding_mode="circular"`` only) is the spectra's periodic layer: the split of
        ``"same"`` at any stride, as :func:`singular_values` means it.
    dilation : int or tuple of int, optional
        Positive, per spatial dimension.
    groups : int, optional
        Blocked connections, as in PyTorch; must divide both channel counts.
    padding_mode : {"zeros", "circular", "reflect", "replicate"}, optional
        PyTorch's modes. ``"reflect"`` excludes the edge (numpy's ``"reflect"``, scipy.ndimage's
        ``"mirror"``); ``"replicate"`` repeats it. Reflect needs padding < input size, circular
        padding <= input size, as in PyTorch.
    flip : bool, optional
        False (default): cross-correlation, as PyTorch computes. True: true convolution, the
        kernel flipped along every spatial axis, as ``scipy.signal.convolve``; with ``"same"``
        the split mirrors too, so ``mode="same"`` of scipy is matched for even kernels.
    format : {"csr", "csc", "coo", "bsr"}, optional
        Sparse format of the result.
    dtype : numpy dtype, optional
        Dtype of the result; by default the weight's (integers and bool become float64,
        float16 float32: scipy's sparse arrays hold no float16).
    layout : {"channels_first", "channels_last"}, optional
        How inputs and outputs are flattened: C order of ``(C, *spatial)`` (PyTorch's, the
        default) or of ``(*spatial, C)``: row ``i * C_out + o`` is output channel ``o`` at
        flat output position ``i``, column ``j * C_in + c`` input channel ``c`` at flat input
        position ``j``. The channels-last matrix is ``P_out A P_in^T``, ``A`` the
        channels-first one. With ``format="bsr"`` it is built directly as BSR whose blocks
        are one group's ``(C_out/groups, C_in/groups)`` channel tile (no stored zeros).
    blocksize : (int, int), optional
        The BSR block shape (``format="bsr"`` only). Channels-last: it must divide the
        ``(C_out/groups, C_in/groups)`` tile, its default. Channels-first: scipy's
        conversion, which needs it to divide the matrix's shape.
    rows : slice, optional
        Only these rows (a contiguous range, numpy's slice semantics), built from the geometry
        without the others, in memory proportional to the block: ``conv_matrix(...,
        rows=slice(a, b))`` equals ``conv_matrix(...)[a:b]`` entry for entry. See
        :func:`conv_matrix_blocks`.

    Returns
    -------
    scipy.sparse array, shape (C_out * prod(out), C_in * prod(in))
        ``A`` with ``A @ x.ravel() == conv(x[None], weight)[0].ravel()``: inputs and outputs are
        flattened in C order of ``(C, *spatial)`` (of ``(*spatial, C)`` with
        ``layout="channels_last"``). Entries read by several taps (reflect, replicate,
        circular) are summed; indices are sorted (canonical format), int32 when they fit and
        int64 otherwise.

    Raises
    ------
    ValueError
        A shape, size or argument out of range (the message names it), or a matrix larger than
        the memory limit (:class:`sparseconv.MatrixTooLargeError`, raised before allocating).
    TypeError
        A non-numeric weight or a non-integer size.

    See Also
    --------
    ConvOperator : the same layer, matrix-free.
    conv_transpose_matrix : the transposed convolution, the adjoint of this matrix.

    Notes
    -----
    With padded input ``xp`` (``xp[p] = x[pad_index(p)]``), output channel ``o`` of group ``g``
    is ``y[o, i] = sum_{c, t} w[o, c, t] xp[g*C_in/groups + c, i*stride + t*dilation]`` per
    spatial dimension; row ``o*prod(out) + i`` of the matrix holds these weights in the columns
    ``c*prod(in) + pad_index(...)``. Cost: O(nnz) time and memory, nnz at most
    ``C_out * C_in/groups * prod(out) * prod(kernel)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix
    >>> w = np.array([[[1.0, 2.0, 3.0]]])          # C_out=1, C_in=1, k=3
    >>> A = conv_matrix(w, (1, 5), padding=1)
    >>> A.toarray()
    array([[2., 3., 0., 0., 0.],
           [1., 2., 3., 0., 0.],
           [0., 1., 2., 3., 0.],
           [0., 0., 1., 2., 3.],
           [0., 0., 0., 1., 2.]])
    >>> conv_matrix(np.ones((64, 3, 3, 3)), (3, 32, 32), stride=2, padding=1).shape
    (16384, 3072)
    >>> B = conv_matrix(np.ones((64, 32, 3, 3)), (32, 8, 8), padding=1, format="bsr",
    ...                 layout="channels_last")
    >>> B.blocksize, B.data.shape                      # 64 x 32 blocks, one per tap and pixel
    ((64, 32), (484, 64, 32))
    """
    check_format(format)
    check_layout(layout)
    blocksize = check_blocksize(blocksize, format)
    weight = as_weight(weight)
    geom = ConvGeometry.from_weight(
        weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
        groups=groups, padding_mode=padding_mode, flip=flip,
    )
    dtype = layer_dtype(weight, dtype)
    check_entries(geom, weight, dtype)
    if rows is not None:
        from ._blocks import row_block  # it assembles with this module's code
        _rows_layout(layout, blocksize)
        return row_block(geom, weight, dtype, rows, format=format)
    return assemble(geom, weight, dtype, format, layout=layout, blocksize=blocksize)


def check_entries(geom: ConvGeometry, weight: np.ndarray, dtype: np.dtype) -> None:
    """Refuse, before anything is built, an integer or bool ``dtype`` that cannot hold every
    entry of the matrix: the sums that reflect, replicate or circular padding fold onto one
    input position (:func:`sparseconv._validation.held_in`; a new user's trial: row blocks,
    ``sparseconv.dask.conv_matrix``'s, were refused only where they were built, on a
    worker)."""
    if dtype.kind in "biu":
        for _, folded in geom.folded_blocks(summable(np.asarray(weight, dtype=dtype))):
            held_in(folded, dtype)


def conv_transpose_matrix(
    weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
    padding: ExplicitPaddingLike = 0, output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1, groups: int = 1, format: SparseFormat = "csr",
    dtype: DTypeLike | None = None, layout: Layout = "channels_first",
    blocksize: BlockSize | None = None, rows: slice | None = None,
    output_size: IntOrTuple | None = None, padding_mode: Literal["zeros"] = "zeros",
) -> SparseArray:
    """The sparse matrix of a transposed convolution (PyTorch's ``conv_transpose{1,2,3}d``).

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out/groups, *kernel_size)
        PyTorch's transposed-convolution layout.
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride : int or tuple of int, optional
    padding : int, tuple of int, or tuple of (lo, hi) pairs, optional
        Removed from the output: zero padding of the corresponding convolution.
    output_padding : int or tuple of int, optional
        Extra output size on the high side, smaller than ``max(stride, dilation)``.
    dilation : int or tuple of int, optional
    groups : int, optional
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : numpy dtype, optional
    layout : {"channels_first", "channels_last"}, optional
        As :func:`conv_matrix`; the channels-last BSR blocks are ``(C_out/groups,
        C_in/groups)`` tiles of this layer (``C_out = weight.shape[1] * groups``), the
        transposed blocks of the convolution it transposes.
    blocksize : (int, int), optional
        As :func:`conv_matrix`.
    rows : slice, optional
        Only these rows, as :func:`conv_matrix`: built from the block of the convolution whose
        outputs read them, never the whole matrix.
    output_size : int or tuple of int, optional
        The spatial output size instead of ``output_padding``, as PyTorch's
        ``ConvTranspose*d.forward(x, output_size=...)``: from the smallest output to
        ``stride - 1`` above it; a full size ``(N, C, *spatial)`` or ``(C, *spatial)``, such
        as a tensor's shape, gives its spatial sizes, as there.
    padding_mode : {"zeros"}, optional
        The only padding of PyTorch's ``ConvTranspose*d``; any other is refused.

    Returns
    -------
    scipy.sparse array, shape (C_out * prod(out), C_in * prod(in))
        With ``out = conv_transpose_output_shape(...)``. It is exactly the transpose of
        ``conv_matrix(weight, (C_out, *out), stride=..., padding=..., dilation=...,
        groups=...)`` restricted to the first ``in`` outputs per dimension (a restriction only
        when ``output_padding >= stride``).

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_matrix`; also ``output_padding`` too large or an empty output.

    See Also
    --------
    conv_matrix, ConvTransposeOperator

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix, conv_transpose_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    >>> T = conv_transpose_matrix(w, (4, 8, 8), stride=2, padding=1, output_padding=1)
    >>> T.shape                                   # (2*16*16, 4*8*8)
    (512, 256)
    >>> A = conv_matrix(w, (2, 16, 16), stride=2, padding=1)
    >>> bool(abs(T - A.T).max() == 0)
    True
    """
    check_format(format)
    check_layout(layout)
    blocksize = check_blocksize(blocksize, format)
    weight = as_weight(weight)
    geom = ConvGeometry.for_transpose(
        weight.shape, input_shape, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, output_size=output_size, padding_mode=padding_mode,
    )
    if rows is not None:
        from ._blocks import row_block
        _rows_layout(layout, blocksize)
        return row_block(geom, weight, layer_dtype(weight, dtype), rows, transposed=True,
                         format=format)
    return assemble(geom, weight, layer_dtype(weight, dtype), format, transposed=True,
                    layout=layout, blocksize=blocksize)
