"""Dilation and the transposed convolution as direct convolutions, as the tutorial draws them.

* a dilated kernel is the kernel with ``dilation - 1`` zeros between its taps;
* a transposed convolution is a direct convolution with the flipped, channel-swapped kernel:
  with full padding minus the layer's for stride 1, after zero insertion ("fractionally
  strided") for larger strides.

The tests prove each picture equal to :func:`sparseconv.conv_transpose_matrix` and PyTorch.
"""

from __future__ import annotations

import numpy as np

from ._formats import in_format
from ._geometry import ConvGeometry
from ._matrices import check_format, conv_matrix
from ._selection import stride_matrix
from ._typing import (
    ArrayLike,
    DTypeLike,
    ExplicitPaddingLike,
    IntOrTuple,
    ShapeLike,
    SparseArray,
    SparseFormat,
)
from ._validation import is_int, layer_dtype, layer_weight

__all__ = ["fractionally_strided", "transpose_kernel"]


def transpose_kernel(weight: ArrayLike, groups: int = 1) -> np.ndarray:
    """A transposed convolution's kernel as the direct convolution's: channels swapped, flipped.

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out/groups, *kernel_size)
        PyTorch's transposed layout.
    groups : int, optional

    Returns
    -------
    ndarray, shape (C_out, C_in/groups, *kernel_size)
        ``out[g*C_out/groups + o, c] = weight[g*C_in/groups + c, o]`` flipped on every axis.

    Raises
    ------
    ValueError, TypeError
        A bad weight, or ``groups`` not dividing ``C_in``.

    See Also
    --------
    fractionally_strided

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import transpose_kernel
    >>> transpose_kernel(np.arange(6.0).reshape(1, 2, 3))
    array([[[2., 1., 0.]],
    <BLANKLINE>
           [[5., 4., 3.]]])
    """
    weight = layer_weight(weight)
    if not is_int(groups) or groups < 1 or weight.shape[0] % groups:
        raise (ValueError if is_int(groups) else TypeError)(
            f"groups must be a positive integer dividing weight.shape[0]={weight.shape[0]}, "
            f"got {groups!r}")
    c_in, out_per_group, *kernel = weight.shape
    swapped = weight.reshape(groups, c_in // groups, out_per_group, *kernel).swapaxes(1, 2)
    flipped = swapped[(Ellipsis, *[slice(None, None, -1)] * len(kernel))]
    return np.ascontiguousarray(flipped).reshape(groups * out_per_group, c_in // groups, *kernel)


def fractionally_strided(
    weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
    padding: ExplicitPaddingLike = 0, output_padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
    groups: int = 1, format: SparseFormat = "csr", dtype: DTypeLike | None = None,
    output_size: IntOrTuple | None = None,
) -> tuple[SparseArray, SparseArray]:
    """A transposed convolution as zero insertion followed by a stride-1 direct convolution.

    Parameters
    ----------
    weight, input_shape, stride, padding, output_padding, dilation, groups, format, dtype
        As for :func:`sparseconv.conv_transpose_matrix`; ``padding`` at most
        ``dilation*(kernel_size-1)`` per side (a larger one would crop).
    output_size : int or tuple of int, optional
        As for :func:`sparseconv.conv_transpose_matrix` (and ``ConvTranspose*d``'s call):
        the output's size, instead of ``output_padding``.

    Returns
    -------
    A : scipy.sparse array
        ``conv_matrix(transpose_kernel(weight, groups), (C_in, *inserted), padding=pads,
        dilation=dilation, groups=groups)`` with ``inserted = (n - 1)*stride + 1``.
    U : scipy.sparse array
        Zero insertion, ``stride_matrix((C_in, *inserted), stride).T`` (the identity for
        stride 1). ``A @ U`` equals ``conv_transpose_matrix(weight, input_shape, ...)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv_transpose_matrix`; a padding larger than ``dilation*(kernel_size-1)``.

    See Also
    --------
    transpose_kernel, stride_matrix

    Notes
    -----
    With ``e = dilation*(k-1)``, the direct convolution pads ``(e - lo, e - hi +
    output_padding)``: "full" padding minus the transposed layer's. Stride 1 is the first
    picture of the tutorial, the flipped kernel sliding with full padding.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import conv_transpose_matrix
    >>> from sparseconv import fractionally_strided
    >>> w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    >>> A, U = fractionally_strided(w, (2, 4, 4), stride=2, padding=1, output_padding=1)
    >>> T = conv_transpose_matrix(w, (2, 4, 4), stride=2, padding=1, output_padding=1)
    >>> U.shape, bool(abs(A @ U - T).max() < 1e-12)
    ((98, 32), True)
    """
    check_format(format)
    weight = layer_weight(weight)
    # the forward convolution (C_out, *out) -> (C_in, *n) whose adjoint is the layer
    geom = ConvGeometry.for_transpose(weight.shape, input_shape, stride=stride, padding=padding,
                                      output_padding=output_padding, dilation=dilation,
                                      groups=groups, output_size=output_size)
    inserted = [(a.output_size - 1) * a.stride + 1 for a in geom.axes]
    pads = []
    for axis, size in zip(geom.axes, inserted):
        extent = axis.dilation * (axis.kernel_size - 1)
        lo = extent - axis.pad[0]  # then hi makes the output exactly the transposed size
        pads.append((lo, axis.size - size - lo + extent))
    if min(min(p) for p in pads) < 0:
        raise ValueError(
            f"padding={padding!r} (per side {geom.padding}) exceeds dilation*(kernel_size-1) "
            f"for kernel_size={geom.kernel_size}, dilation={geom.dilation}: the direct picture "
            "would crop")
    c_in = weight.shape[0]
    # the direct convolution first: the larger of the two (its nonzeros are the zero
    # insertion's times the taps), so a refusal comes before either is built (a hunt: 26 MiB
    # of zero insertion allocated, then the convolution refused)
    direct = conv_matrix(transpose_kernel(weight, groups), (c_in, *inserted), padding=pads,
                         dilation=geom.dilation, groups=groups, format=format, dtype=dtype)
    upsample = stride_matrix((c_in, *inserted), geom.stride, dtype=layer_dtype(weight, dtype))
    return direct, in_format(upsample.T, format)
