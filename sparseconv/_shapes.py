"""Output-shape formulas of convolutions and transposed convolutions, PyTorch's per axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import SupportsIndex, overload

from ._typing import ExplicitPaddingLike, IntOrTuple, PaddingLike
from ._validation import (
    INDEX_LIMIT,
    int_tuple,
    is_int,
    is_sequence,
    normalize_padding,
    spatial_size,
)

__all__ = ["conv_output_shape", "conv_transpose_output_shape", "output_padding_for",
           "output_sizes"]


def output_sizes(sizes, kernel_size, stride, dilation, pads) -> tuple[int, ...]:
    """Per axis, PyTorch's ``floor((n + lo + hi - dilation*(k-1) - 1) / stride) + 1``.

    Raises ``ValueError`` naming the sizes when a (dilated) kernel is larger than the padded
    input, so that the output would be empty, or when a padding makes it larger than 2**60
    (int64 index arithmetic), as :func:`conv_transpose_output_shape` does its own.

    Examples
    --------
    >>> output_sizes((224, 7), (3, 3), (2, 1), (1, 2), ((1, 1), (0, 0)))
    (112, 3)
    """
    out = []
    for axis, (n, k, s, d, (lo, hi)) in enumerate(zip(sizes, kernel_size, stride, dilation,
                                                     pads)):
        size = (n + lo + hi - d * (k - 1) - 1) // s + 1
        where = f" along spatial axis {axis}" if len(sizes) > 1 else ""  # (a new user's
        # trial: one number for a 2-D input read as its whole size)
        if size < 1:  # (dilation named only where it is not 1: pooling has none)
            dilated = (f" with dilation={tuple(dilation)} (effective extent {d * (k - 1) + 1})"
                       if any(v != 1 for v in dilation) else "")
            raise ValueError(
                f"kernel_size={tuple(kernel_size)}{dilated} is larger than the padded input "
                f"size {n + lo + hi}{where} (input size {n}, padding ({lo}, {hi})): the output "
                "would be empty"
            )
        if size > INDEX_LIMIT:  # (a review: blamed on input_shape, in the adjoint's set-up)
            raise ValueError(
                f"the output size {size}{where} is larger than 2**60 (int64 index arithmetic): "
                f"from input size {n} with kernel_size={tuple(kernel_size)}, dilation="
                f"{tuple(dilation)} and padding ({lo}, {hi})")
        out.append(size)
    return tuple(out)


def _per_axis(input_size, kernel_size, stride, dilation) -> tuple[tuple[int, ...], ...]:
    """The validated per-axis arguments of a shape formula."""
    sizes = spatial_size(input_size, "input_size")
    return (sizes, int_tuple(kernel_size, len(sizes), "kernel_size", 1, broadcast_one=True),
            int_tuple(stride, len(sizes), "stride", 1, broadcast_one=True),
            int_tuple(dilation, len(sizes), "dilation", 1, broadcast_one=True))


@overload
def conv_output_shape(
    input_size: SupportsIndex, kernel_size: IntOrTuple, stride: IntOrTuple = ...,
    padding: PaddingLike = ..., dilation: IntOrTuple = ...,
) -> int: ...
@overload
def conv_output_shape(
    input_size: Sequence[SupportsIndex], kernel_size: IntOrTuple, stride: IntOrTuple = ...,
    padding: PaddingLike = ..., dilation: IntOrTuple = ...,
) -> tuple[int, ...]: ...
def conv_output_shape(
    input_size: SupportsIndex | Sequence[SupportsIndex], kernel_size: IntOrTuple,
    stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1,
) -> int | tuple[int, ...]:
    """Spatial output size of a convolution, PyTorch's formula per dimension.

    Parameters
    ----------
    input_size : int or tuple of int
        Spatial input size (no channel or batch dimension).
    kernel_size : int or tuple of int
    stride : int or tuple of int, optional
    padding : int, tuple of int, tuple of (lo, hi) pairs, or {"valid", "same", "full"}, optional
        As for :func:`sparseconv.conv_matrix`.
    dilation : int or tuple of int, optional

    Returns
    -------
    int or tuple of int
        ``floor((n + lo + hi - dilation*(k-1) - 1) / stride) + 1`` per dimension; an int when
        ``input_size`` is an int.

    Raises
    ------
    ValueError
        If an argument is out of range or the output would be empty.

    Examples
    --------
    >>> from sparseconv import conv_output_shape
    >>> conv_output_shape(224, 3, stride=2, padding=1)
    112
    >>> conv_output_shape((32, 32), (3, 5), padding="same")
    (32, 32)
    """
    sizes, kernel, stride, dilation = _per_axis(input_size, kernel_size, stride, dilation)
    ndim, scalar = len(sizes), is_int(input_size)
    pads = normalize_padding(padding, ndim, kernel, stride, dilation)
    out = output_sizes(sizes, kernel, stride, dilation, pads)
    return out[0] if scalar else out


@overload
def conv_transpose_output_shape(
    input_size: SupportsIndex, kernel_size: IntOrTuple, stride: IntOrTuple = ...,
    padding: ExplicitPaddingLike = ..., output_padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
) -> int: ...
@overload
def conv_transpose_output_shape(
    input_size: Sequence[SupportsIndex], kernel_size: IntOrTuple, stride: IntOrTuple = ...,
    padding: ExplicitPaddingLike = ..., output_padding: IntOrTuple = ...,
    dilation: IntOrTuple = ...,
) -> tuple[int, ...]: ...
def conv_transpose_output_shape(
    input_size: SupportsIndex | Sequence[SupportsIndex], kernel_size: IntOrTuple,
    stride: IntOrTuple = 1, padding: ExplicitPaddingLike = 0, output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> int | tuple[int, ...]:
    """Spatial output size of a transposed convolution, PyTorch's formula per dimension.

    Parameters
    ----------
    input_size : int or tuple of int
        Spatial input size of the transposed convolution.
    kernel_size : int or tuple of int
    stride : int or tuple of int, optional
    padding : int, tuple of int, or tuple of (lo, hi) pairs, optional
    output_padding : int or tuple of int, optional
        Extra size on the high side; must be smaller than ``max(stride, dilation)``.
    dilation : int or tuple of int, optional

    Returns
    -------
    int or tuple of int
        ``(n - 1)*stride - lo - hi + dilation*(k - 1) + output_padding + 1`` per dimension.

    Raises
    ------
    ValueError
        If an argument is out of range or the output would be empty.

    Examples
    --------
    >>> from sparseconv import conv_transpose_output_shape
    >>> conv_transpose_output_shape(16, 3, stride=2, padding=1, output_padding=1)
    32
    """
    sizes, kernel, stride, dilation = _per_axis(input_size, kernel_size, stride, dilation)
    ndim, scalar = len(sizes), is_int(input_size)
    if isinstance(padding, str):
        raise ValueError(
            f"padding must be an int or a tuple for a transposed convolution, got {padding!r}"
        )
    pads = normalize_padding(padding, ndim, kernel, stride, dilation, strings=False)
    output_padding = int_tuple(output_padding, ndim, "output_padding", 0,
                               broadcast_one=True)
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding={output_padding} must be smaller than max(stride, dilation) in "
                f"every dimension, got stride={stride}, dilation={dilation}"
            )
    out = tuple(
        (n - 1) * s - lo - hi + d * (k - 1) + op + 1
        for n, k, s, d, (lo, hi), op in zip(sizes, kernel, stride, dilation, pads, output_padding)
    )
    if min(out) < 1:
        raise ValueError(
            f"transposed convolution output size {out} is empty: padding={pads} is too large for "
            f"input_size={sizes}, kernel_size={kernel}, stride={stride}, dilation={dilation}"
        )
    if max(out) > INDEX_LIMIT:  # (a review: every layer built on it blamed its input size)
        raise ValueError(
            f"transposed convolution output size {out} is larger than 2**60 (int64 index "
            f"arithmetic): from input_size={sizes} with kernel_size={kernel}, stride={stride}, "
            f"padding={pads}, output_padding={output_padding}, dilation={dilation}"
        )
    return out[0] if scalar else out


def unpadded_transpose_sizes(sizes: Sequence[int], kernel: Sequence[int],
                             strides: Sequence[int], dilations: Sequence[int],
                             pads: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """A transposed convolution's spatial output sizes at ``output_padding=0``, per axis,
    unchecked: ``(n-1)*stride - lo - hi + dilation*(k-1) + 1``, 0 or less where only an
    ``output_padding`` makes the output (PyTorch allows up to ``max(stride, dilation) - 1``)."""
    return tuple((n - 1) * s - lo - hi + d * (k - 1) + 1 for n, k, s, d, (lo, hi) in
                 zip(sizes, kernel, strides, dilations, pads))


def output_padding_for(
    output_size: IntOrTuple | None, input_size: Sequence[SupportsIndex], kernel_size: IntOrTuple,
    stride: IntOrTuple = 1, padding: ExplicitPaddingLike = 0, dilation: IntOrTuple = 1,
    output_padding: IntOrTuple = 0, channels: int | None = None,
) -> tuple[int, ...]:
    """The ``output_padding`` of a transposed convolution asked for by its ``output_size``.

    PyTorch's ``ConvTranspose*d.forward(x, output_size=...)``: the spatial output size picks
    one of the ``stride`` sizes a strided convolution's adjoint can have, from the smallest
    (``output_padding=0``) to ``stride - 1`` above it; as PyTorch, a full size ``(N, C,
    *spatial)`` or ``(C, *spatial)`` gives its spatial sizes, where the caller gives the
    layer's output ``channels`` to check ``C`` against. ``output_size=None``:
    ``output_padding`` as given. Both at once (a non-zero ``output_padding``) are refused.

    Examples
    --------
    >>> output_padding_for((16, 15), (8, 8), 3, stride=2, padding=1)
    (1, 0)
    >>> output_padding_for((1, 4, 16, 15), (8, 8), 3, stride=2, padding=1, channels=4)
    (1, 0)
    >>> output_padding_for(None, (8,), 3, stride=2, output_padding=1)
    (1,)
    """
    sizes, kernel, strides, dilations = _per_axis(input_size, kernel_size, stride, dilation)
    ndim = len(sizes)
    given = int_tuple(output_padding, ndim, "output_padding", 0, broadcast_one=True)
    if output_size is None:
        return given
    if any(given):
        raise ValueError(f"pass output_size or output_padding, not both: got output_size="
                         f"{output_size!r} and output_padding={output_padding!r}")
    if (channels is not None and is_sequence(output_size)
            and len(output_size) in (ndim + 1, ndim + 2)):
        # PyTorch's full size, (N, C, *spatial) or (C, *spatial), a tensor's shape (a new
        # user's trial: refused); PyTorch reads the spatial sizes alone, the channels here must
        # be the layer's
        if output_size[-ndim - 1] != channels:
            raise ValueError(f"output_size={output_size!r} gives {output_size[-ndim - 1]!r} "
                             f"channels, but the layer has out_channels={channels}")
        output_size = tuple(output_size)[-ndim:]
    size = int_tuple(output_size, ndim, "output_size", 1)
    if isinstance(padding, str):  # (as conv_transpose_output_shape says it)
        conv_transpose_output_shape(sizes, kernel, strides, padding, 0, dilations)
    pads = normalize_padding(padding, ndim, kernel, strides, dilations, strings=False)
    # the smallest may be empty where a larger one is not (PyTorch takes
    # ConvTranspose1d(1, 1, 2, stride=2, padding=1)(x, output_size=[1]) on one input)
    smallest = unpadded_transpose_sizes(sizes, kernel, strides, dilations, pads)
    largest = tuple(m + s - 1 for m, s in zip(smallest, strides))  # output_padding stride - 1
    if not all(m <= n <= big for m, n, big in zip(smallest, size, largest)):
        if min(largest) < 1:  # (a new user's trial: the message blamed the padding)
            further = any(d > s for d, s in zip(dilations, strides))
            raise ValueError(
                f"output_size={output_size!r} is out of reach: the output sizes it can pick "
                f"(output_padding 0 to stride - 1) are empty on some axis, at most {largest} "
                f"for input size {sizes} and padding={pads}" + (
                    "; output_padding, which may go up to max(stride, dilation) - 1, reaches "
                    "larger sizes" if further else ""))
        low = tuple(max(m, 1) for m in smallest)
        raise ValueError(f"output_size must lie between {low} and {largest} (up to stride - 1 "
                         f"above the smallest output) for input size {sizes}, got "
                         f"{output_size!r}")
    return tuple(n - m for n, m in zip(size, smallest))
