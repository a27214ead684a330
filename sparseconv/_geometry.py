"""Layer geometry: the validated description of a layer and its gather index map.

This module is the single source of truth of sparseconv. A :class:`ConvGeometry` describes a
convolution layer once (channels, spatial sizes, stride, per-side padding, dilation, groups,
padding mode), validated once (by :mod:`sparseconv._validation`); every matrix, operator,
selection matrix, spectrum and picture is derived from its two index maps:

* the *padding map* of each spatial axis: for every position of the padded axis, the input
  position it copies, or ``-1`` for a zero pad (:meth:`AxisGeometry.source`, elementwise, in
  :mod:`sparseconv._axis_geometry`);
* the *gather map*: for every output position and kernel tap, the input position the tap
  reads, or ``-1`` (:meth:`ConvGeometry.index_map`).

Cost invariant: validating a layer and cutting each axis into segments
(:meth:`AxisGeometry.segments`) costs O(kernel + border outputs), never O(padded size), so a
request for an enormous layer is sized (``nnz()``, ``shape``) and refused against the memory
limit before any array of its size exists. Only the maps themselves (``index_map``,
``tap_index``, ``pad_index``) cost what they contain.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._axis_geometry import AxisGeometry
from ._memory import check_memory
from ._shapes import conv_transpose_output_shape, output_padding_for, output_sizes
from ._typing import ExplicitPaddingLike, IntOrTuple, PaddingLike, PaddingMode, ShapeLike
from ._validation import (
    INDEX_LIMIT,
    PADDING_MODES,
    as_bool,
    int_tuple,
    is_int,
    normalize_padding,
    one_of,
    positive_int,
    spatial_size,
    transposed_padding_mode,
)

__all__ = [
    "ConvGeometry",
    "block_diagonal",
    "copies_of",
    "dense_weight",
    "periodic_padding",
    "spatial_matrix",
]

def periodic_padding(kernel_size: Sequence[int], dilation: Sequence[int], flip: bool = False):
    """The padding of a periodic layer: ``dilation*(k-1)`` per axis, split as "same" splits it
    (PyTorch's split, mirrored under ``flip``; at any stride: the spectra's ``padding=None``).

    Examples
    --------
    >>> from sparseconv._geometry import periodic_padding
    >>> periodic_padding((3, 4), (1, 1)), periodic_padding((3, 4), (1, 1), flip=True)
    (((1, 1), (1, 2)), ((1, 1), (2, 1)))
    """
    ndim = len(kernel_size)
    return normalize_padding("same", ndim, tuple(kernel_size), (1,) * ndim, tuple(dilation),
                             flip)


# ---------------------------------------------------------------------------------------------
# A whole layer.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvGeometry:
    """A convolution layer's geometry, validated; the source of every index map.

    Build it with :meth:`from_weight` (a convolution) or :meth:`for_transpose` (the forward
    convolution whose adjoint is a transposed convolution); do not call the constructor with
    unchecked values.

    Parameters
    ----------
    in_channels, out_channels, groups, axes, flip
        The attributes below, already validated (:meth:`from_weight` validates them).

    Attributes
    ----------
    in_channels, out_channels, groups : int
    axes : tuple of AxisGeometry
        One per spatial dimension.
    flip : bool
        True convolution (kernel flipped) instead of cross-correlation.

    Examples
    --------
    >>> from sparseconv import ConvGeometry
    >>> geom = ConvGeometry.from_weight((8, 3, 3, 3), (3, 32, 32), stride=2, padding=1)
    >>> geom.output_shape, geom.shape
    ((8, 16, 16), (2048, 3072))
    >>> ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1).index_map()   # -1: a zero pad
    array([[-1,  0,  1],
           [ 0,  1,  2],
           [ 1,  2,  3],
           [ 2,  3, -1]])
    """

    in_channels: int
    out_channels: int
    groups: int
    axes: tuple[AxisGeometry, ...]
    flip: bool = False

    def __post_init__(self) -> None:
        # (a review: ConvGeometry(2, 2, 0, ()) was made, and its maps divided by zero)
        for name in ("in_channels", "out_channels", "groups"):
            positive_int(getattr(self, name), name)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_channels={self.in_channels} "
                             f"and out_channels={self.out_channels}")
        if not isinstance(self.axes, tuple) or not self.axes \
                or not all(isinstance(a, AxisGeometry) for a in self.axes):
            raise TypeError(f"axes must be a non-empty tuple of AxisGeometry, one per spatial "
                            f"dimension (use ConvGeometry.from_weight), got {self.axes!r}")
        as_bool(self.flip, "flip")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_weight(
        cls, weight_shape: ShapeLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
        padding: PaddingLike | None = 0, dilation: IntOrTuple = 1, groups: int = 1,
        padding_mode: PaddingMode = "zeros", flip: bool = False,
        output_size: IntOrTuple | None = None,
    ) -> ConvGeometry:
        """Validate a layer given PyTorch's weight shape ``(C_out, C_in/groups, *kernel)``.

        Parameters
        ----------
        weight_shape : tuple of int
            ``(C_out, C_in/groups, *kernel_size)``, as ``nn.Conv*d.weight.shape`` (or the
            weight itself, a numpy array, whose shape is taken).
        input_shape : tuple of int
            ``(C_in, *spatial)``, without the batch axis.
        stride, padding, dilation, groups, padding_mode, flip
            As for :func:`sparseconv.conv_matrix`. ``padding=None`` with
            ``padding_mode="circular"`` is the periodic layer the spectra mean by it: total
            ``dilation*(k-1)`` per axis, split as ``"same"`` splits it (mirrored under
            ``flip``), any stride.
        output_size : int or sequence of int, optional
            Used by transposed convolutions: keeps only the first outputs of each axis; it
            may not exceed the natural output size.

        Returns
        -------
        ConvGeometry

        Raises
        ------
        ValueError, TypeError
            Each argument's, named with its value, as :func:`sparseconv.conv_matrix` raises
            them (an empty output, a channel count ``groups`` does not divide, ...).

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> g = ConvGeometry.from_weight((64, 3, 7, 7), (3, 224, 224), stride=2, padding=3)
        >>> g.output_shape, g.shape                  # the matrix is 200,704 x 150,528
        ((64, 112, 112), (802816, 150528))
        >>> ConvGeometry.from_weight((4, 2, 4), (2, 10), padding="same").padding  # even kernel
        ((1, 2),)
        """
        weight_shape = _weight_shape(weight_shape)
        flip = as_bool(flip, "flip")
        if len(weight_shape) < 3:
            raise ValueError(
                "weight must have shape (out_channels, in_channels/groups, *kernel_size) with at "
                f"least one spatial dimension, got weight_shape={weight_shape}"
            )
        if min(weight_shape) < 1:
            raise ValueError(
                f"weight must not have empty dimensions, got weight_shape={weight_shape}"
            )
        ndim = len(weight_shape) - 2
        input_shape = spatial_size(input_shape, "input_shape")
        if len(input_shape) != ndim + 1:
            raise ValueError(
                f"input_shape must be (in_channels, *spatial) with {ndim} spatial dimension(s) "
                f"to match weight.shape={weight_shape}, got input_shape={input_shape}"
            )
        groups = positive_int(groups, "groups")
        out_channels, in_per_group = weight_shape[:2]
        kernel_size = weight_shape[2:]
        in_channels = input_shape[0]
        if in_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels}")
        if out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide out_channels=weight.shape[0]={out_channels}"
            )
        if in_per_group * groups != in_channels:
            raise ValueError(
                f"input_shape[0] (in_channels={in_channels}) must equal weight.shape[1] * groups "
                f"= {in_per_group} * {groups} = {in_per_group * groups}"
            )
        one_of(padding_mode, PADDING_MODES, "padding_mode")
        stride = int_tuple(stride, ndim, "stride", 1, broadcast_one=True)
        dilation = int_tuple(dilation, ndim, "dilation", 1, broadcast_one=True)
        if padding is None:  # the spectra's shorthand for the periodic layer, any stride
            if padding_mode != "circular":
                raise ValueError(f"padding=None (the periodic padding, dilation*(k-1) per axis) "
                                 f"needs padding_mode='circular', got padding_mode="
                                 f"{padding_mode!r}")
            # mirrored under flip, as "same" is (a review: kept unmirrored, a one-pixel
            # circular shift from scipy's convolve2d(mode="same", boundary="wrap"))
            pads = periodic_padding(kernel_size, dilation, flip)
            for n, k, d, (lo, hi) in zip(input_shape[1:], kernel_size, dilation, pads):
                if max(lo, hi) > n:  # (said as what it is: no padding was passed; a hunt)
                    raise ValueError(
                        f"the periodic padding ({lo}, {hi}) that padding=None implies "
                        f"(dilation*(kernel_size-1) = {d}*{k - 1}) is larger than an input "
                        f"size {n}: PyTorch's circular padding wraps around at most once, so "
                        "each side's padding must be at most the input size (a smaller "
                        "dilation or kernel, or a larger input)")
        else:
            pads = normalize_padding(padding, ndim, kernel_size, stride, dilation, flip)
        if output_size is not None:  # (a review: (3,) of a 2-D layer made a 1-D geometry)
            output_size = int_tuple(output_size, ndim, "output_size", 1)
        axes = _make_axes(input_shape[1:], kernel_size, stride, dilation, pads, padding_mode,
                          output_size)
        return cls(in_channels, out_channels, groups, axes, flip)

    @classmethod
    def from_kernel_size(
        cls, input_shape: ShapeLike, kernel_size: IntOrTuple, *, depthwise: bool = False,
        **kwargs: Any,
    ) -> ConvGeometry:
        """Validate a weightless layer given by ``kernel_size``: selection and pooling maps.

        Parameters
        ----------
        input_shape : tuple of int
            ``(C, *spatial)``.
        kernel_size : int or tuple of int
        depthwise : bool, optional
            False: one output channel reading every input channel (weight shape ``(1, C,
            *kernel)``); True: one output channel per input channel (``(C, 1, *kernel)``,
            ``groups=C``), as pooling.
        **kwargs
            Those of :meth:`from_weight` (``stride``, ``padding``, ...).

        Returns
        -------
        ConvGeometry

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> g = ConvGeometry.from_kernel_size((3, 8, 8), 2, stride=2, depthwise=True)
        >>> g.output_shape, g.groups                 # a 2x2 pooling's map, channel by channel
        ((3, 4, 4), 3)
        """
        input_shape = spatial_size(input_shape, "input_shape")
        if len(input_shape) < 2:
            raise ValueError(
                "input_shape must be (channels, *spatial) with at least one spatial dimension, "
                f"got input_shape={input_shape}"
            )
        channels, kernel = input_shape[0], int_tuple(
            kernel_size, len(input_shape) - 1, "kernel_size", 1, broadcast_one=True)
        if as_bool(depthwise, "depthwise"):
            if "groups" in kwargs:
                raise TypeError(f"groups={kwargs['groups']!r} cannot be given with "
                                f"depthwise=True, which sets groups to the {channels} channels")
            return cls.from_weight((channels, 1, *kernel), input_shape, groups=channels, **kwargs)
        return cls.from_weight((1, channels, *kernel), input_shape, **kwargs)

    @classmethod
    def for_transpose(
        cls, weight_shape: ShapeLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
        padding: ExplicitPaddingLike = 0, output_padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1, groups: int = 1, output_size: IntOrTuple | None = None,
        padding_mode: str = "zeros",
    ) -> ConvGeometry:
        """Geometry of the convolution whose adjoint is ``conv_transpose{d}d``.

        Parameters
        ----------
        weight_shape : tuple of int
            PyTorch's transposed layout ``(C_in, C_out/groups, *kernel)``.
        input_shape : tuple of int
            The transposed layer's input ``(C_in, *spatial)``.
        stride, padding, output_padding, dilation, groups
            As for :func:`sparseconv.conv_transpose_matrix`.
        output_size : int or tuple of int, optional
            The spatial output size, which picks the ``output_padding``, as
            ``ConvTranspose*d.forward(x, output_size=...)``.
        padding_mode : str, optional
            ``"zeros"``, the only one PyTorch's ``ConvTranspose*d`` takes.

        Returns
        -------
        ConvGeometry
            It maps ``(C_out, *transposed_output)`` to ``(C_in, *spatial)``.

        Raises
        ------
        ValueError, TypeError
            As :func:`sparseconv.conv_transpose_matrix` raises them.

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> g = ConvGeometry.for_transpose((16, 8, 3, 3), (16, 7, 7), stride=2, padding=1,
        ...                                output_size=(14, 14))
        >>> g.input_shape, g.output_shape            # the convolution it is the adjoint of
        ((8, 14, 14), (16, 7, 7))
        """
        # (a new user's trial: the argument PyTorch takes was refused as unexpected)
        transposed_padding_mode(padding_mode)
        weight_shape = _weight_shape(weight_shape)
        if len(weight_shape) < 3:
            raise ValueError(
                "weight must have shape (in_channels, out_channels/groups, *kernel_size), got "
                f"weight.shape={weight_shape}"
            )
        if min(weight_shape) < 1:
            raise ValueError(
                f"weight must not have empty dimensions, got weight_shape={weight_shape}")
        ndim = len(weight_shape) - 2
        input_shape = spatial_size(input_shape, "input_shape")
        if len(input_shape) != ndim + 1:
            raise ValueError(
                f"input_shape must be (in_channels, *spatial) with {ndim} spatial dimension(s) "
                f"to match weight.shape={weight_shape}, got input_shape={input_shape}"
            )
        if input_shape[0] != weight_shape[0]:
            raise ValueError(
                f"input_shape[0] (in_channels={input_shape[0]}) must equal weight.shape[0]="
                f"{weight_shape[0]} for a transposed convolution"
            )
        groups = positive_int(groups, "groups")
        if weight_shape[0] % groups:
            raise ValueError(f"groups={groups} must divide in_channels={weight_shape[0]}")
        output_padding = output_padding_for(output_size, input_shape[1:], weight_shape[2:],
                                            stride, padding, dilation, output_padding,
                                            channels=weight_shape[1] * groups)
        out_size = conv_transpose_output_shape(
            input_shape[1:], weight_shape[2:], stride, padding, output_padding, dilation
        )
        return cls.from_weight(
            weight_shape, (weight_shape[1] * groups, *out_size), stride=stride, padding=padding,
            dilation=dilation, groups=groups, output_size=input_shape[1:],
        )

    # -- shapes ----------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.axes)

    @property
    def input_size(self) -> tuple[int, ...]:
        """Spatial input sizes, one per axis."""
        return tuple(a.size for a in self.axes)

    @property
    def output_size(self) -> tuple[int, ...]:
        """Spatial output sizes, one per axis."""
        return tuple(a.output_size for a in self.axes)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """Kernel sizes, one per axis."""
        return tuple(a.kernel_size for a in self.axes)

    @property
    def stride(self) -> tuple[int, ...]:
        """Strides, one per axis."""
        return tuple(a.stride for a in self.axes)

    @property
    def dilation(self) -> tuple[int, ...]:
        """Dilations, one per axis."""
        return tuple(a.dilation for a in self.axes)

    @property
    def padding(self) -> tuple[tuple[int, int], ...]:
        """Per-side padding ``((lo, hi), ...)``, strings and ints resolved."""
        return tuple(a.pad for a in self.axes)

    @property
    def padding_mode(self) -> PaddingMode:
        """``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"`` (one for every axis)."""
        return self.axes[0].padding_mode

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C_in, *input_size)``: the input without the batch."""
        return (self.in_channels, *self.input_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """``(C_out, *output_size)``: the output without the batch."""
        return (self.out_channels, *self.output_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """PyTorch's weight shape ``(C_out, C_in/groups, *kernel_size)``."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the layer's matrix: ``(C_out * prod(out), C_in * prod(in))``."""
        return (math.prod(self.output_shape), math.prod(self.input_shape))

    @property
    def unpadded(self) -> bool:
        """Whether no axis pads: every tap reads the input itself, whatever the padding mode
        (the zero-padded layer's matrix, for any ``padding_mode``).

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> ConvGeometry.from_weight((4, 2, 3, 3), (2, 8, 8), padding_mode="circular").unpadded
        True
        >>> ConvGeometry.from_weight((4, 2, 3, 3), (2, 8, 8), padding=(0, 1)).unpadded
        False
        """
        return all(a.pad == (0, 0) for a in self.axes)

    # -- the polyphase view of a periodic layer (its symbol) --------------------------------
    @property
    def coarse_grid(self) -> tuple[int, ...]:
        """The grid of the symbol's frequencies: ``input_size // stride`` per axis (the
        output grid of a periodic layer whose stride divides its input).

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> ConvGeometry.from_weight((4, 2, 3, 3), (2, 8, 12), stride=(2, 3),
        ...                          padding=1, padding_mode="circular").coarse_grid
        (4, 4)
        """
        return tuple(a.size // a.stride for a in self.axes)

    @property
    def symbol_block(self) -> tuple[int, int]:
        """The shape of each group's symbol block: ``(C_out/g, C_in/g * prod(stride))``."""
        return (self.out_channels // self.groups,
                self.in_channels // self.groups * math.prod(self.stride))

    # -- index maps ------------------------------------------------------------------------
    def index_map(self) -> np.ndarray:
        """The gather map, shape ``(prod(output_size), prod(kernel_size))``, int64.

        Entry ``[o, t]`` is the C-order flat spatial input position read by kernel tap ``t``
        (C-order over ``kernel_size``) at flat output position ``o``, or ``-1`` where the tap
        reads a zero pad. It is the same for every channel pair.

        Returns
        -------
        numpy.ndarray of int64, shape (prod(output_size), prod(kernel_size))

        Raises
        ------
        MatrixTooLargeError
            The map over the memory limit.

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1).index_map().tolist()
        [[-1, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, -1]]
        """
        entries = math.prod(self.output_size) * math.prod(self.kernel_size)
        # the map, the sum it is built from and the mask: 17 bytes per entry at once
        check_memory(17 * entries, f"the {math.prod(self.output_size)} x "
                     f"{math.prod(self.kernel_size)} gather map (output_size="
                     f"{self.output_size}, kernel_size={self.kernel_size})",
                     "use a smaller input")
        ndim, flat, valid = self.ndim, np.zeros((), np.int64), np.ones((), bool)
        in_strides = np.cumprod((1,) + self.input_size[:0:-1])[::-1]
        for d, (axis, step) in enumerate(zip(self.axes, in_strides)):
            # axis d of the output grid at position d, its tap axis at position ndim + d
            shape = [1] * (2 * ndim)
            shape[d], shape[ndim + d] = axis.output_size, axis.kernel_size
            idx = axis.tap_index().reshape(shape)
            flat = flat + idx * int(step)
            valid = valid & (idx >= 0)
        flat = np.where(valid, flat, -1)
        return flat.reshape(math.prod(self.output_size), math.prod(self.kernel_size))

    def tap_weights(self, weight: np.ndarray) -> np.ndarray:
        """``weight`` as applied to the gather map's taps: flipped for a true convolution.

        Parameters
        ----------
        weight : numpy.ndarray, shape (C_out, C_in/groups, *kernel_size)

        Returns
        -------
        numpy.ndarray
            ``weight`` itself, or a view of it flipped on every spatial axis (``flip``).

        Raises
        ------
        ValueError
            A weight of another shape than the geometry's.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import ConvGeometry
        >>> g = ConvGeometry.from_weight((1, 1, 3), (1, 5), flip=True)
        >>> g.tap_weights(np.array([[[1.0, 2.0, 3.0]]])).tolist()
        [[[3.0, 2.0, 1.0]]]
        """
        weight = self._checked_weight(weight)
        if self.flip:
            # numpy's stubs refuse Ellipsis beside slices, which numpy accepts
            return weight[(Ellipsis, *[slice(None, None, -1)] * self.ndim)]  # type: ignore[arg-type]
        return weight

    def _checked_weight(self, weight: Any) -> np.ndarray:
        """``weight`` as an array of the geometry's weight shape, or a ValueError."""
        weight = np.asarray(weight)
        if weight.shape != self.weight_shape:
            raise ValueError(f"weight must have shape {self.weight_shape} for this geometry, got "
                             f"shape {weight.shape}")
        return weight

    def folded_blocks(self, weight: np.ndarray) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """The matrix's entries, one pattern per block of outputs that read alike.

        For each combination ``block`` of one ``AxisGeometry.segments()`` per axis whose
        outputs read some input, ``(block, folded)``: ``weight`` (as :meth:`tap_weights`
        applies it) with each axis' taps summed onto the positions its segment reads,
        ``(C_out, C_in/groups, *counts)``; the sums of the first axes are shared by the
        blocks that have them in common. Every matrix builder writes these patterns, and
        checks them first where an integer dtype could not hold a sum.

        Parameters
        ----------
        weight : array_like, shape (C_out, C_in/groups, *kernel_size)

        Yields
        ------
        block : tuple of int
            One segment's index per axis.
        folded : numpy.ndarray, shape (C_out, C_in/groups, *counts)
            The weight folded onto the inputs the block's outputs read.

        Raises
        ------
        ValueError
            A weight of another shape than the geometry's.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import ConvGeometry
        >>> g = ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1, padding_mode="reflect")
        >>> for block, folded in g.folded_blocks(np.array([[[1.0, 2.0, 4.0]]])):
        ...     print(block, folded.tolist())   # the edges fold taps 0 and 2 onto one input
        (0,) [[[2.0, 5.0]]]
        (1,) [[[1.0, 2.0, 4.0]]]
        (2,) [[[5.0, 2.0]]]
        """
        weight = self._checked_weight(weight)
        segments = [axis.segments() for axis in self.axes]
        folded: dict[tuple[int, ...], np.ndarray] = {(): self.tap_weights(weight)}
        for block in itertools.product(*(range(len(segs)) for segs in segments)):
            if any(segments[d][j].count == 0 for d, j in enumerate(block)):
                continue  # these outputs read only zero padding: empty rows
            for d in range(self.ndim):
                if block[: d + 1] not in folded:
                    folded[block[: d + 1]] = segments[d][block[d]].fold_weight(
                        folded[block[:d]], axis=2 + d)
            yield block, folded[block]

    def nnz(self) -> int:
        """Number of stored entries of the layer's matrix, computed without building it.

        The gather map is separable, so the distinct input positions an output reads are a
        Cartesian product over axes, and so is their count.

        Returns
        -------
        int

        Examples
        --------
        >>> from sparseconv import ConvGeometry
        >>> ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1).nnz()   # 2 + 3 + 3 + 2
        10
        """
        per_channel = math.prod(
            sum(seg.count * seg.length for seg in axis.segments()) for axis in self.axes
        )
        return per_channel * self.out_channels * (self.in_channels // self.groups)


#: :func:`copies_of` counts the read positions of an axis when its outputs times its taps are
#: at most this many (an O(output * kernel) map), else it takes the closed form.
COPIES_COUNTED = 2**22


def copies_of(geom: ConvGeometry) -> int:
    """The most padded positions *that some output reads* copying one input entry (1 for zero
    padding): ``||D P||^2``, ``P`` the padding and ``D`` the read positions, so that ``A = V D
    P`` (``V`` the layer without padding on the padded input, which reads nothing else) has
    ``||A|| <= ||V|| sqrt(copies)``; also at least the outputs that read one entry through one
    tap (their padded positions are distinct), which the rounding allowances count.

    Per axis (the read positions and the copies are a product over the axes): the distinct
    positions ``o * stride + t * dilation`` counted through the padding's source map where
    outputs times taps are at most :data:`COPIES_COUNTED`, else in closed form from every
    padded position (never from the padded map, whose size is the padding's): a circular
    axis of padded length ``L`` copies each entry at most ``ceil(L/n)`` times; a replicated
    edge is copied ``pad + 1`` times; a reflected entry at most 3 times (PyTorch's reflect
    padding is less than ``n``: the entry itself and one mirror image per side), 3 exactly
    when one entry is mirrored by both sides. (An audit: a 1x1 stride-2 layer with circular
    padding 1 reads neither copy twice, and ``sparseconv.torch.spectral_norm_upper`` bounded
    it at sqrt(2) times its norm, where its docstring promises the closed form.)
    """
    def per_axis(a) -> int:
        lo, hi = a.pad
        if geom.padding_mode == "zeros" or lo + hi == 0:
            return 1
        if a.output_size * a.kernel_size <= COPIES_COUNTED:
            read = np.unique(np.add.outer(np.arange(a.output_size, dtype=np.int64) * a.stride,
                                          np.arange(a.kernel_size, dtype=np.int64)
                                          * a.dilation))
            # counted over the entries read (a fuzz run: bincount over the positions up to
            # the largest, 2^40 on a stride-2^40 axis, allocated 8 TiB)
            return max(1, int(np.unique(a.source(read - lo), return_counts=True)[1].max()))
        if geom.padding_mode == "circular":
            return -(-a.padded_size // a.size)
        if geom.padding_mode == "replicate":
            return lo + hi + 1 if a.size == 1 else max(lo, hi) + 1
        # reflect: p is read at p, at -p if 1 <= p <= lo, at 2(n-1)-p if n-1-hi <= p <= n-2
        both = max(1, a.size - 1 - hi) <= min(lo, a.size - 2)
        return 3 if both else 1 + (lo > 0 or hi > 0)

    return math.prod(per_axis(a) for a in geom.axes)


def block_diagonal(h: np.ndarray) -> np.ndarray:
    """Per-group blocks ``(..., groups, m, n)`` as the full ``(..., groups*m, groups*n)``.

    A grouped layer is block diagonal over its groups: its symbol at each frequency, and its
    weight once the kernel axes are moved in front (:func:`dense_weight`).
    """
    groups, m, n = h.shape[-3:]
    full = np.zeros((*h.shape[:-3], groups * m, groups * n), dtype=h.dtype)
    for g in range(groups):
        full[..., g * m:(g + 1) * m, g * n:(g + 1) * n] = h[..., g, :, :]
    return full


def dense_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped weight ``(C_out, C_in/groups, *k)`` as its ``groups=1`` equivalent."""
    if groups == 1:
        return weight
    c_out, per_group, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
    blocks = weight.reshape(groups, c_out // groups, per_group, -1).transpose(3, 0, 1, 2)
    full = block_diagonal(blocks)  # (taps, C_out, C_in)
    return full.transpose(1, 2, 0).reshape(c_out, per_group * groups, *kernel)


def _weight_shape(weight_shape) -> tuple[int, ...]:
    """``weight_shape`` as a tuple of non-negative ints (the caller checks rank and emptiness):
    a 1-D integer array is a shape, an array of more dimensions the weight itself, whose shape
    is taken (as the docstring of :meth:`ConvGeometry.from_weight` promised, and a review
    found refused)."""
    if isinstance(weight_shape, np.ndarray):
        weight_shape = tuple(weight_shape.tolist()) if weight_shape.ndim == 1 else \
            weight_shape.shape
    if isinstance(weight_shape, str) or not isinstance(weight_shape, Sequence) or not all(
            is_int(v) for v in weight_shape):
        raise TypeError(f"weight_shape (the weight's shape) must be a tuple of integers, got "
                        f"{weight_shape!r}")
    if any(v < 0 or v > INDEX_LIMIT for v in weight_shape):
        raise ValueError(f"weight_shape (the weight's shape) must hold sizes in [0, 2**60], got "
                         f"{tuple(weight_shape)!r}")
    return tuple(int(v) for v in weight_shape)


def spatial_matrix(geom: ConvGeometry) -> sp.csr_array:
    """``S[o, j]``: how many kernel taps of output position ``o`` read input position ``j``.

    One channel pair of the layer, built from :meth:`ConvGeometry.index_map`; the layer's
    sparsity pattern is the Kronecker product of the channel connectivity and ``S != 0``.
    """
    index = geom.index_map()
    rows = np.repeat(np.arange(index.shape[0], dtype=np.int64), index.shape[1])
    keep = index.ravel() >= 0
    shape = (math.prod(geom.output_size), math.prod(geom.input_size))
    S = sp.csr_array((np.ones(int(keep.sum()), dtype=np.int64), (rows[keep], index.ravel()[keep])),
                     shape=shape)
    S.sum_duplicates()
    return S


def _make_axes(sizes, kernel_size, stride, dilation, pads, padding_mode, output_size):
    natural = output_sizes(sizes, kernel_size, stride, dilation, pads)
    for n, (lo, hi) in zip(sizes, pads):
        limit = {"reflect": n - 1, "circular": n}.get(padding_mode)
        if limit is not None and max(lo, hi) > limit:
            rule = "less than" if padding_mode == "reflect" else "at most"
            raise ValueError(
                f"padding ({lo}, {hi}) is too large for padding_mode={padding_mode!r} on an input "
                f"of size {n}: it must be {rule} the input size (PyTorch's limit)"
            )
    if output_size is None:
        output_size = natural
    elif any(o < 1 or o > m for o, m in zip(output_size, natural)):
        raise ValueError(f"output_size={tuple(output_size)} must lie in [1, {tuple(natural)}]")
    return tuple(
        AxisGeometry(n, k, s, d, (lo, hi), padding_mode, out)
        for n, k, s, d, (lo, hi), out in zip(sizes, kernel_size, stride, dilation, pads,
                                             output_size)
    )


