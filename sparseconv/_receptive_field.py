"""Receptive fields: which inputs an output unit depends on, exactly or in closed form.

* :func:`receptive_field` -- the field of one unit of any composition of sparse layers: row
  ``i`` of the sparsity pattern of the product, pulled back through the patterns.
* :func:`receptive_field_paths` -- for convolution layers given by their geometry, how many
  paths lead from each input position to one output position (the tap-count matrices of the
  gather map, multiplied); nonzero exactly on the field.
* :func:`receptive_field_size` -- the extent of a stack's field in closed form,
  ``1 + sum_l dilation_l (k_l - 1) prod_{j<l} stride_j``.

The tests check that the three agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ._composition import AffineMap, as_matrix, check_chain
from ._geometry import ConvGeometry, spatial_matrix
from ._layout import array_shape
from ._memory import check_memory
from ._operators import ConvOperator, ConvTransposeOperator, as_geometry
from ._typing import DTypeLike, IntOrTuple, Layout, ShapeLike
from ._validation import (
    as_dtype,
    as_per_layer,
    check_layout,
    int_tuple,
    is_int,
    is_sequence,
    per_layer_tuples,
    spatial_size,
)

__all__ = ["receptive_field", "receptive_field_paths", "receptive_field_size"]


def receptive_field(layers: Sequence[sp.sparray | AffineMap | ConvOperator | ConvTransposeOperator],
                    input_shape: ShapeLike,
                    output_index: int | Sequence[int],
                    output_shape: ShapeLike | None = None,
                    layout: Layout = "channels_first") -> np.ndarray:
    """The receptive field of one output unit of a composition of layers (structural).

    Parameters
    ----------
    layers : sequence of scipy.sparse arrays, AffineMap, ConvOperator or ConvTransposeOperator
        First applied first, as for :func:`compose`; an operator by its explicit matrix
        (``tosparse()``), in ``layout`` (a new user's trial: operators were refused, which
        ``spy`` and ``compose`` take).
    input_shape : tuple of int
        Shape of the network's input, ``(C, *spatial)``.
    output_index : int or tuple of int
        The output unit: a flat index (a row of the matrices' product), or an index ``(c,
        *position)`` into ``output_shape``.
    output_shape : tuple of int, optional
        ``(C, *spatial)``; needed for a tuple ``output_index``.
    layout : {"channels_first", "channels_last"}, optional
        How the matrices flatten their activations, as in :func:`conv_matrix`: the shapes
        and the tuple index stay channels first whatever it is.

    Returns
    -------
    ndarray of bool, shape input_shape
        True where the unit depends on the input (structurally: stored entries, whatever
        their value), channels first.

    Raises
    ------
    ValueError, TypeError
        Mismatched shapes, an index out of range.

    See Also
    --------
    receptive_field_size : the closed form of its extent.

    Notes
    -----
    The field is row ``i`` of the sparsity pattern of ``A_L ... A_1``. It is computed without
    forming the product: ``e_i`` is pulled back through the patterns, ``r <- |A_l|^T r``, so
    ``r > 0`` exactly where a path of stored entries reaches the unit (no cancellation).

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_matrix
    >>> from sparseconv import receptive_field
    >>> A = conv_matrix(np.ones((1, 1, 3, 3)), (1, 9, 9), padding=1)
    >>> field = receptive_field([A, A], (1, 9, 9), (0, 4, 4), output_shape=(1, 9, 9))
    >>> int(field.sum())                                   # stacked 3x3: a 5x5 field
    25
    """
    input_shape = spatial_size(input_shape, "input_shape")
    layout = check_layout(layout)  # (a new user's trial: a channels_last matrix's field came
    # out scrambled, silently)
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of scipy.sparse arrays, AffineMaps or "
                        f"sparseconv operators, got {type(layers).__name__}")
    matrices = [_matrix_of(layer, f"layers[{i}]", layout) for i, layer in enumerate(layers)]
    if not matrices:
        raise ValueError("layers must hold at least one layer, got an empty sequence")
    if math.prod(input_shape) != matrices[0].shape[1]:
        raise ValueError(f"input_shape={input_shape} has {math.prod(input_shape)} entries but "
                         f"layers[0] has {matrices[0].shape[1]} columns")
    check_chain(matrices, math.prod(input_shape))
    rows = matrices[-1].shape[0]
    if output_shape is not None:
        output_shape = spatial_size(output_shape, "output_shape")
        if math.prod(output_shape) != rows:
            raise ValueError(f"output_shape={output_shape} has {math.prod(output_shape)} units, "
                             f"the last layer {rows}")
    index = output_index
    if not is_int(index):
        if output_shape is None or np.ndim(index) != 1 or len(index) != len(output_shape):
            raise ValueError(f"output_index={output_index!r} must be an int or a tuple of "
                             f"len(output_shape), with output_shape given")
        if not all(is_int(i) for i in index):  # (a new user's trial: 4.0 was "out of range")
            raise TypeError(f"output_index={output_index!r} must hold integers, as numpy's "
                            "indices do")
        if not all(0 <= i < n for i, n in zip(index, output_shape)):
            raise ValueError(f"output_index={output_index!r} is out of range for "
                             f"output_shape={output_shape}")
        index = int(np.ravel_multi_index(array_shape(tuple(index), layout),
                                         array_shape(output_shape, layout)))
    if not 0 <= index < rows:
        raise ValueError(f"output_index={output_index!r} is out of range for {rows} outputs")
    check_memory(24 * max(m.nnz for m in matrices) + 16 * max(max(m.shape) for m in matrices),
                 "the sparsity patterns of receptive_field")
    reached = np.zeros(rows)
    reached[index] = 1.0
    for matrix in reversed(matrices):
        pattern = sp.csr_array(matrix)
        pattern = sp.csr_array((np.ones(pattern.nnz), pattern.indices, pattern.indptr),
                               shape=pattern.shape)
        reached = (pattern.T @ reached > 0).astype(float)
    field = reached.astype(bool).reshape(array_shape(input_shape, layout))
    return np.moveaxis(field, -1, 0) if layout == "channels_last" else field


def _matrix_of(layer, name: str, layout: str) -> sp.sparray:
    """A layer of :func:`receptive_field` as a sparse matrix: an operator's explicit one, in
    the layout asked for."""
    if isinstance(layer, (ConvOperator, ConvTransposeOperator)):
        if layer.layout != layout:
            raise ValueError(f"{name} is a {layer.layout} operator, but layout={layout!r}: "
                             "pass the layout the layers flatten their activations in")
        return layer.tosparse()
    return as_matrix(layer, name)


def receptive_field_paths(
    layers: ConvGeometry | ConvOperator | Sequence[ConvGeometry | ConvOperator],
    position: Sequence[int] | None = None,
    dtype: DTypeLike = np.int64,
) -> np.ndarray:
    """Number of paths from each input position to one output position through a stack.

    Parameters
    ----------
    layers : ConvGeometry, ConvOperator, or a sequence of them
        Applied first to last; each layer's spatial input size must be the previous layer's
        output size.
    position : tuple of int, optional
        Output position of the last layer; its center by default.
    dtype : {numpy.int64, numpy.float64}, optional
        ``int64`` counts exactly, and refuses a stack whose counts exceed it (about twenty
        3x3 layers without stride); ``float64`` counts any stack, rounded beyond ``2**53``.

    Returns
    -------
    ndarray of ``dtype``, shape ``layers[0].input_size``
        Nonzero exactly on the receptive field: ``e_position @ S_L @ ... @ S_1`` with the
        tap-count matrices ``S`` of the layers (``S[o, j]``: how many kernel taps of output
        position ``o`` read input position ``j``, one channel pair's).

    Raises
    ------
    TypeError
        A layer that is not a ConvGeometry or ConvOperator.
    ValueError
        No layer, a layer that does not read the previous layer's output size, a
        ``position`` outside the last output, or ``int64`` counts that would overflow.

    Examples
    --------
    >>> from sparseconv import ConvGeometry
    >>> from sparseconv import receptive_field_paths
    >>> g = ConvGeometry.from_weight((1, 1, 3), (1, 5), padding=1)
    >>> receptive_field_paths([g, g]).tolist()          # two 3-tap layers: a 5-wide triangle
    [1, 2, 3, 2, 1]
    """
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        layers = [layers]  # one layer
    geoms = []
    for i, layer in enumerate(layers):
        try:
            geoms.append(as_geometry(layer))
        except TypeError:
            raise TypeError(f"layers[{i}] must be a ConvGeometry or a ConvOperator, got "
                            f"{type(layer).__name__}") from None
    if not geoms:
        raise ValueError("layers must hold at least one layer, got an empty sequence")
    for i, (a, b) in enumerate(zip(geoms[:-1], geoms[1:])):
        if b.input_size != a.output_size:
            raise ValueError(f"layer {i + 1} reads spatial size {b.input_size} but layer {i} "
                             f"outputs {a.output_size}")
    try:  # (numpy reads None as float64; a value as its type, and ">i8" is int64: a review)
        chosen = None if dtype is None else as_dtype(dtype)
    except TypeError:
        chosen = None
    if chosen not in (np.int64, np.float64):
        raise ValueError(f"dtype must be numpy.int64 (exact counts) or numpy.float64 (rounded "
                         f"beyond 2**53), got {dtype!r}")
    dtype = chosen
    out = geoms[-1].output_size
    position = (tuple(n // 2 for n in out) if position is None
                else int_tuple(position, len(out), "position", 0))
    if not all(p < n for p, n in zip(position, out)):
        raise ValueError(f"position must be an output position within {out}, got {position}")
    check_memory(max(48 * math.prod(g.output_size) * math.prod(g.kernel_size)
                     + 24 * math.prod(g.input_size) for g in geoms),
                 "the tap-count matrices of receptive_field_paths")
    paths = np.zeros(math.prod(out), dtype=dtype)
    paths[np.ravel_multi_index(position, out)] = 1
    for i, geom in reversed(list(enumerate(geoms))):
        counts = spatial_matrix(geom).T
        if dtype == np.int64:  # the counts in float64 first: numpy's int64 would wrap
            largest = float((counts @ paths.astype(np.float64)).max())
            if largest >= 2.0**63 * (1 - 1e-9):
                raise ValueError(
                    f"the path counts exceed int64 at layer {i} of {len(geoms)} (about "
                    f"{largest:.3g} paths); pass dtype=numpy.float64 for counts rounded to "
                    f"float64")
        paths = counts @ paths
    return paths.reshape(geoms[0].input_size)


def receptive_field_size(kernel_size: Sequence[IntOrTuple],
                         stride: Sequence[IntOrTuple] | None = None,
                         dilation: Sequence[IntOrTuple] | None = None) -> int | tuple[int, ...]:
    """The extent of the receptive field of a stack of convolutions, in closed form.

    Parameters
    ----------
    kernel_size : sequence of int or of tuples
        One entry a layer, first applied first.
    stride, dilation : sequence of int or of tuples, optional
        One entry a layer; default 1.

    Returns
    -------
    int or tuple of int
        Per spatial dimension; an int when every ``kernel_size``, ``stride`` and
        ``dilation`` entry is an int.

    Raises
    ------
    ValueError, TypeError
        No layer, lengths that differ, entries out of range.

    See Also
    --------
    receptive_field : the field itself, from the sparsity of the product.

    Notes
    -----
    ``r = 1 + sum_l dilation_l (k_l - 1) prod_{j<l} stride_j``: each layer widens the field by
    its dilated extent, in units of the input strides below it.

    Examples
    --------
    >>> from sparseconv import receptive_field_size
    >>> receptive_field_size([3, 3])                             # stacked 3x3 -> 5x5
    5
    >>> receptive_field_size([3, 3, 3], dilation=[1, 2, 4])      # growth with dilation
    15
    >>> receptive_field_size([(7, 7), (3, 3)], stride=[2, 1])
    (11, 11)
    """
    kernel_size, stride, dilation = map(as_per_layer, (kernel_size, stride, dilation))
    if isinstance(kernel_size, str) or not isinstance(kernel_size, Sequence):
        raise TypeError(f"kernel_size must be a non-empty sequence, one entry a layer, got "
                        f"{kernel_size!r}")
    if not kernel_size:
        raise ValueError(f"kernel_size must be a non-empty sequence, one entry a layer, got "
                         f"{kernel_size!r}")
    depth = len(kernel_size)
    # the first tuple entry (of kernel_size, stride or dilation) gives the number of
    # dimensions, ints repeating over them; per_layer_tuples checks the rest
    entries = [v for values in (kernel_size, stride, dilation) if is_sequence(values)
               for v in values]
    # (a 1-D array is a tuple of ints, as int_tuple reads it: a review found
    # [np.array([3, 5]), np.array([3, 5])] refused as "2 values for 1 axis")
    shaped = [v for v in entries if is_sequence(v) or (isinstance(v, np.ndarray) and v.ndim == 1)]
    ndim, scalar = (len(shaped[0]), False) if shaped else (1, True)
    per_layer = {name: per_layer_tuples(values, name, depth, ndim)
                 for name, values in (("kernel_size", kernel_size), ("stride", stride),
                                      ("dilation", dilation))}
    size, jump = [1] * ndim, [1] * ndim
    for k, s, d in zip(*per_layer.values()):
        size = [r + di * (ki - 1) * j for r, ki, di, j in zip(size, k, d, jump)]
        jump = [j * si for j, si in zip(jump, s)]
    return size[0] if scalar else tuple(size)
