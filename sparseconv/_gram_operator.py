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
from ._products import forward_bytes

__all__ = ["GramOperator", "adjoint_layer", "gram_applies", "gram_kernel", "gram_operator"]

#: The Gram convolution replaces ``A`` then ``A^H`` where its multiply-adds are at most this
#: fraction of theirs (its wider kernel is read as efficiently, measured on VGG-11's layers).
CHEAPER = 0.8


def gram_kernel(weight: np.ndarray, groups: int) -> np.ndarray:
    """The Gram kernel ``K``, shape ``(C_in, C_in/groups, *(2k - 1))``: the weight of the
    convolution (PyTorch's cross-correlation, padding ``(k - 1) dilation``) equal to the full
    layer's ``A^H A``; entry ``[g c + a, b, k - 1 + delta]`` is ``sum_o conj(W[o, a, t])
    W[o, b, t + delta]`` over the outputs ``o`` of group ``g`` and the taps ``t``."""
    c_out, c_group, *kernel = weight.shape
    taps, ndim = math.prod(kernel), len(kernel)
    columns = weight.reshape(groups, c_out // groups, c_group * taps)
    gram = np.conj(np.swapaxes(columns, 1, 2)) @ columns  # [g, (a, t), (b, t')]
    gram = gram.reshape(groups, c_group, taps, c_group, taps).transpose(0, 1, 3, 2, 4)
    # each pair of taps (t, t') lands on the offset t' - t: a 0/1 matrix sums them per offset
    position = np.indices(kernel).reshape(ndim, taps)
    offset = position[:, None, :] - position[:, :, None] + (np.array(kernel) - 1)[:, None, None]
    wide = tuple(2 * k - 1 for k in kernel)
    scatter = np.zeros((taps * taps, math.prod(wide)), dtype=gram.real.dtype)
    scatter[np.arange(taps * taps), np.ravel_multi_index(tuple(offset), wide).ravel()] = 1
    kernel_ = gram.reshape(groups * c_group * c_group, taps * taps) @ scatter
    return kernel_.reshape(groups * c_group, c_group, *wide)


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
    than the kernel's reach (wider pads give outputs that read no input), every axis."""
    return geom.padding_mode == "zeros" and all(
        a.stride == 1 and 0 <= min(a.pad) and max(a.pad) <= (a.kernel_size - 1) * a.dilation
        for a in geom.axes)


def _cost(geom: ConvGeometry) -> tuple[float, float]:
    """Multiply-adds of one product: the Gram convolution and its frame, then ``A`` and
    ``A^H``."""
    c_group = geom.in_channels // geom.groups
    taps = math.prod(geom.kernel_size)
    wide = math.prod(2 * k - 1 for k in geom.kernel_size)
    frame = sum(math.prod(hi - lo for lo, hi in box) for box in _frame_boxes(geom))
    gram = (math.prod(geom.input_size) * geom.in_channels * c_group * wide
            + 2 * frame * geom.out_channels * c_group * taps)
    return gram, 2.0 * math.prod(geom.output_size) * geom.out_channels * c_group * taps


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
    conjugated, its channels swapped per group and its taps reversed, each axis padded by
    ``(k - 1) dilation`` less the layer's pad on the other side."""
    groups, (c_out, c_group, *kernel) = geom.groups, weight.shape
    swapped = np.conj(weight).reshape(groups, c_out // groups, c_group, *kernel).swapaxes(1, 2)
    flipped = swapped.reshape(groups * c_group, c_out // groups, *kernel)[
        (Ellipsis, *[slice(None, None, -1)] * len(kernel))]
    pads = tuple(((a.kernel_size - 1) * a.dilation - a.pad[0],
                  (a.kernel_size - 1) * a.dilation - a.pad[1]) for a in geom.axes)
    return np.ascontiguousarray(flipped), ConvGeometry.from_weight(
        flipped.shape, geom.output_shape, padding=pads, dilation=geom.dilation, groups=groups)


def gram_operator(weight: np.ndarray, geom: ConvGeometry, dtype,
                  outputs: bool = False) -> GramOperator | None:
    """``A^H A`` (``A A^H`` if ``outputs``: the Gram of :func:`adjoint_layer`) as a
    :class:`GramOperator` in ``dtype`` where it applies and costs at most :data:`CHEAPER` of
    the two products (and its products fit the memory limit), else ``None``."""
    if not gram_applies(geom):
        return None
    if outputs:
        weight, geom = adjoint_layer(weight, geom)
    gram, pair = _cost(geom)
    if gram > CHEAPER * pair:
        return None
    reach = tuple((a.kernel_size - 1) * a.dilation for a in geom.axes)
    wide = ConvGeometry.from_weight(
        (geom.in_channels, geom.in_channels // geom.groups,
         *(2 * k - 1 for k in geom.kernel_size)),
        geom.input_shape, padding=reach, dilation=geom.dilation, groups=geom.groups)
    if not fits(forward_bytes(wide, 1, np.dtype(dtype).itemsize)):
        return None
    try:
        return GramOperator(weight, geom, dtype)
    except MatrixTooLargeError:
        return None
