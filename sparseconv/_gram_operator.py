"""``A^H A`` of a zero-padded layer of stride 1, as one convolution and a thin frame.

Counted over every output that reads an input (the "full" convolution), ``A^H A`` is the
convolution by the layer's Gram kernel::

    (A^H A x)(q) = sum_delta K(delta) x(q + delta dilation),
    K(delta) = sum_{t' - t = delta} W_t^H W_t'          (per group; ``|delta| <= k - 1``)

The layer keeps only the outputs of its own window, so its ``A^H A`` is that convolution less
``F^H F``, ``F`` the outputs it drops that still read an input: on each side of each axis a
frame ``(k - 1) dilation - pad`` wide (one position for a 3x3 layer with padding 1). The
frame is cut into boxes, one per side of each axis (the axes before it restricted to the
window, so that no output is counted twice), and each box is a small valid convolution of
the input's edge.

Per input position the Gram convolution costs ``C_in C_in/g (2k - 1)^d`` multiply-adds,
against ``2 C_out C_in/g k^d`` for ``A`` then ``A^H``: fewer on layers that widen their
channels (VGG-11's 3->64 a fifteenth, its 64->128 and 128->256 about 0.7). On a layer that
narrows them, ``A A^H`` is the same construction on ``A^H``, itself such a layer
(:func:`adjoint_layer`). The Lanczos lower bound (:mod:`sparseconv._lanczos`) iterates on the
smaller side's Gram convolution where its count is lower (:func:`gram_operator`); its
certified quotient is still computed with ``A``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._geometry import ConvGeometry
from ._memory import MatrixTooLargeError, fits
from ._operators import ConvOperator
from ._transposed import transpose_kernel

__all__ = ["GramOperator", "adjoint_layer", "gram_applies", "gram_kernel", "gram_operator"]

#: The Gram convolution replaces ``A`` then ``A^H`` where its cost is at most this fraction of
#: theirs (measured on VGG-11's layers: one product 0.77-0.90 of theirs where the count said
#: 0.73-0.77).
CHEAPER = 0.8

#: What one operator product costs beyond its multiply-adds, counted as multiply-adds (0.1-0.15
#: ms of calls and copies at about 15e9 a second, one core): the Gram convolution makes one
#: product and two per frame box, against two, so on small grids the count alone chose it
#: where it took 1.5-3.4 times as long (a review: 2->24 on 48x48, a 3-D 2->16 on 16^3).
CALL = 2_000_000


def _kernel_bytes(weight_shape: tuple[int, ...], groups: int, itemsize: int) -> int:
    """Bytes :func:`gram_kernel` allocates: the kernel, and two copies of the weight's taps
    for one offset at a time."""
    c_out, c_group, *kernel = weight_shape
    return itemsize * (groups * c_group * c_group
                       * math.prod(2 * k - 1 for k in kernel) + 2 * math.prod(weight_shape))


def gram_kernel(weight: np.ndarray, groups: int) -> np.ndarray:
    """The Gram kernel ``K``, shape ``(C_in, C_in/groups, *(2k - 1))``: the weight of the
    convolution (PyTorch's cross-correlation, padding ``(k - 1) dilation``) equal to the full
    layer's ``A^H A``; entry ``[g c + a, b, k - 1 + delta]`` is ``sum_o conj(W[o, a, t])
    W[o, b, t + delta]`` over the outputs ``o`` of group ``g`` and the taps ``t``, one product
    per offset ``delta`` of the taps that have a partner there (:func:`_kernel_bytes`)."""
    c_out, c_group, *kernel = weight.shape
    w = weight.reshape(groups, c_out // groups, c_group, *kernel)
    wide = tuple(2 * k - 1 for k in kernel)
    result = np.empty((groups, c_group, c_group, *wide), dtype=weight.dtype)
    for index in np.ndindex(*wide):
        delta = [i - (k - 1) for i, k in zip(index, kernel)]
        # the taps t whose partner t + delta is a tap too, and those partners
        first = tuple(slice(max(0, -d), k - max(0, d)) for d, k in zip(delta, kernel))
        second = tuple(slice(max(0, d), k - max(0, -d)) for d, k in zip(delta, kernel))
        a = np.moveaxis(w[(slice(None),) * 3 + first], 2, -1).reshape(groups, -1, c_group)
        b = np.moveaxis(w[(slice(None),) * 3 + second], 2, -1).reshape(groups, -1, c_group)
        result[(slice(None),) * 3 + index] = np.conj(np.swapaxes(a, 1, 2)) @ b
    return result.reshape(groups * c_group, c_group, *wide)


def _frame_boxes(geom: ConvGeometry) -> list[list[tuple[int, int]]]:
    """The boxes of dropped outputs that read an input: per box, per axis, the range
    ``[lo, hi)`` of the position each output's first tap reads (``-pad`` for the layer's first
    output; the full convolution's run over ``[-(k - 1) dilation, n)``)."""
    full = [(-(a.kernel_size - 1) * a.dilation, a.size) for a in geom.axes]
    window = [(-a.pad[0], -a.pad[0] + a.output_size) for a in geom.axes]
    boxes = []
    for axis in range(geom.ndim):
        (start, stop), (first, last) = full[axis], window[axis]
        for side in ((start, first), (last, stop)):
            if side[1] > side[0]:
                boxes.append(window[:axis] + [side] + full[axis + 1:])
    return boxes


def gram_applies(geom: ConvGeometry) -> bool:
    """Whether ``A^H A`` is the Gram convolution less a frame: stride 1, zero padding no wider
    than the kernel's reach (wider pads give outputs that read no input), every axis; a
    cross-correlation (a review: a true convolution's flipped taps, ``flip=True``, were read
    unflipped)."""
    return geom.padding_mode == "zeros" and not geom.flip and all(
        a.stride == 1 and 0 <= min(a.pad) and max(a.pad) <= (a.kernel_size - 1) * a.dilation
        for a in geom.axes)


def _cost(geom: ConvGeometry) -> tuple[float, float]:
    """The cost of one product in multiply-adds, each call counted as :data:`CALL` more: the
    Gram convolution and its frame's boxes, then ``A`` and ``A^H``."""
    c_group = geom.in_channels // geom.groups
    taps = math.prod(geom.kernel_size)
    wide = math.prod(2 * k - 1 for k in geom.kernel_size)
    boxes = _frame_boxes(geom)
    frame = sum(math.prod(hi - lo for lo, hi in box) for box in boxes)
    gram = (float(math.prod(geom.input_size)) * geom.in_channels * c_group * wide
            + 2.0 * frame * geom.out_channels * c_group * taps + (1 + 2 * len(boxes)) * CALL)
    pair = 2.0 * math.prod(geom.output_size) * geom.out_channels * c_group * taps + 2 * CALL
    return gram, pair


class GramOperator(LinearOperator):
    """``A^H A`` of a layer of :func:`gram_applies`, on its input vectors (C order of
    ``(C_in, *input_size)``), in ``dtype``: the Gram convolution less the frame's boxes."""

    def __init__(self, weight: np.ndarray, geom: ConvGeometry, dtype) -> None:
        if not gram_applies(geom):
            raise ValueError("the Gram convolution needs stride 1 and zero padding no wider "
                             f"than the kernel's reach, got {geom}")
        super().__init__(np.dtype(dtype), (geom.shape[1],) * 2)
        self.input_shape = geom.input_shape
        reach = tuple((a.kernel_size - 1) * a.dilation for a in geom.axes)
        self._gram = ConvOperator(gram_kernel(weight, geom.groups), geom.input_shape,
                                  padding=reach, dilation=geom.dilation, groups=geom.groups,
                                  dtype=dtype)
        self._boxes = []
        for box in _frame_boxes(geom):
            crop = tuple(slice(max(lo, 0), min(hi + r, a.size))
                         for (lo, hi), r, a in zip(box, reach, geom.axes))
            pads = [(c.start - lo, hi + r - c.stop) for (lo, hi), r, c in zip(box, reach, crop)]
            shape = (geom.in_channels, *(hi - lo + r for (lo, hi), r in zip(box, reach)))
            edge = ConvOperator(weight, shape, dilation=geom.dilation, groups=geom.groups,
                                dtype=dtype)
            self._boxes.append((crop, pads, edge))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(self.input_shape)
        y = self._gram.matvec(x.ravel()).reshape(self.input_shape)
        for crop, pads, edge in self._boxes:
            part = np.pad(x[(slice(None), *crop)], [(0, 0), *pads])
            back = edge.rmatvec(edge.matvec(part.ravel())).reshape(part.shape)
            y[(slice(None), *crop)] -= back[(slice(None), *(slice(b, s - a) for (b, a), s
                                                            in zip(pads, part.shape[1:])))]
        return y.ravel()

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)  # Hermitian

    def _adjoint(self) -> GramOperator:
        return self


def adjoint_layer(weight: np.ndarray, geom: ConvGeometry) -> tuple[np.ndarray, ConvGeometry]:
    """``A^H`` of a layer of :func:`gram_applies` as a layer of its own: stride 1, the weight
    conjugated, its channels swapped per group and its taps reversed
    (:func:`sparseconv.transpose_kernel`), each axis padded by ``(k - 1) dilation`` less the
    layer's pad on the other side."""
    adjoint = transpose_kernel(np.conj(weight), geom.groups)
    pads = tuple(((a.kernel_size - 1) * a.dilation - a.pad[0],
                  (a.kernel_size - 1) * a.dilation - a.pad[1]) for a in geom.axes)
    return adjoint, ConvGeometry.from_weight(adjoint.shape, geom.output_shape, padding=pads,
                                             dilation=geom.dilation, groups=geom.groups)


def gram_operator(weight: np.ndarray, geom: ConvGeometry, dtype,
                  outputs: bool = False) -> GramOperator | None:
    """``A^H A`` (``A A^H`` if ``outputs``: the Gram of :func:`adjoint_layer`) as a
    :class:`GramOperator` in ``dtype`` where it applies and costs at most :data:`CHEAPER` of
    the two products, and its kernel (sized here) and its products (sized by its
    ``ConvOperator``s as they are made) fit the memory limit; else ``None``."""
    if not gram_applies(geom):
        return None
    if outputs:
        weight, geom = adjoint_layer(weight, geom)
    gram, pair = _cost(geom)
    if gram > CHEAPER * pair:
        return None
    itemsize = max(np.dtype(dtype).itemsize, weight.itemsize)
    if not fits(_kernel_bytes(weight.shape, geom.groups, itemsize)):
        return None
    try:
        return GramOperator(weight, geom, dtype)
    except MatrixTooLargeError:
        return None
