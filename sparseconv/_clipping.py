"""Clipping the singular values of a periodic layer: the projection onto an operator-norm ball.

Sedghi, Gupta & Long (ICLR 2019): the periodic layer nearest to ``A`` in the Frobenius norm
among those of operator norm at most ``c`` is ``U diag(min(S, c)) V^H`` (clip the singular
values of the circular SVD, :mod:`sparseconv._circular_svd`). It commutes with the same shifts
as ``A``, so it is again a periodic layer, but its kernel fills the whole input: the impulse
response of the clipped symbol, read off by an inverse DFT.

Keeping the original kernel support is a second projection (zero the taps outside it), onto a
subspace: alternating the two (their "alternating projection") converges to a layer of that
support inside the ball. It is approximate: after finitely many rounds the norm may still
exceed ``c`` a little, and the limit is a point of the intersection, not the nearest one.

Both projections are orthogonal for the same inner product: the Frobenius norm of a periodic
layer is ``prod(n/stride)`` times the squared norm of one output position's row, so "zero the
taps outside the support" is the Frobenius-nearest layer of that support (a position read by
several taps of a wrapping dilated kernel is shared equally between them).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ._circular_svd import CircularSVD
from ._geometry import ConvGeometry
from ._memory import check_memory
from ._symbol import layer_geometry, require_periodic
from ._symbol_svd import factor_bytes
from ._typing import ArrayLike, IntOrTuple, PaddingLike, ShapeLike
from ._validation import one_of, periodic_padding_mode, positive_int, real_number

__all__ = ["clip_singular_values"]

_SUPPORTS = ("full", "kernel")
#: Rounds of the alternating projection by default.
_ITERATIONS = 10


def _impulse_row(geom: ConvGeometry, h: np.ndarray) -> np.ndarray:
    """Row of output position 0 of the layer of symbol ``h`` ``(F, g, m, c_in * S)``.

    Shape ``(C_out, C_in/g, *n)``, indexed by the input position read. With ``u = q*s + r``,
    the entry is ``ifftn(h)[-q][o, (c, r)]`` (the inverse DFT over the ``n/stride`` grid).
    """
    grid, stride, ndim = list(geom.coarse_grid), geom.stride, geom.ndim
    c_in = geom.in_channels // geom.groups
    h = h.reshape(*grid, geom.out_channels, c_in, *stride)
    h = np.fft.ifftn(h, axes=tuple(range(ndim)))
    # h[-q]: reverse each grid axis, keeping frequency 0 in place
    h = np.roll(np.flip(h, axis=tuple(range(ndim))), 1, axis=tuple(range(ndim)))
    order = [ndim, ndim + 1] + [v for d in range(ndim) for v in (d, ndim + 2 + d)]
    return h.transpose(order).reshape(geom.out_channels, c_in, *geom.input_size)


def _full_kernel(geom: ConvGeometry, row: np.ndarray) -> np.ndarray:
    """The kernel of size ``n`` (dilation 1, periodic padding) whose layer has this row."""
    # that kernel's tap t reads position t - (n-1)//2 for output 0
    shifts = [(n - 1) // 2 for n in geom.input_size]
    return np.roll(row, shifts, axis=tuple(range(2, 2 + geom.ndim)))


def _support(geom: ConvGeometry, row: np.ndarray) -> np.ndarray:
    """The Frobenius-nearest layer of the original support: its taps' share of the row."""
    positions = [a.tap_index(np.zeros(1, dtype=np.int64))[0] for a in geom.axes]
    shares = np.ones(())
    for pos in positions:  # taps reading one position share it equally
        shares = np.multiply.outer(shares, (pos[:, None] == pos[None, :]).sum(axis=1))
    return np.ascontiguousarray(row[(Ellipsis, *np.ix_(*positions))] / shares)


def _real_if(weight: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return kernel.real.copy() if weight.dtype.kind != "c" else kernel


def clip_singular_values(
    weight: ArrayLike, input_shape: ShapeLike, *, max: float, stride: IntOrTuple = 1,
    padding: PaddingLike | None = None, dilation: IntOrTuple = 1, groups: int = 1,
    support: Literal["full", "kernel"] = "full", iterations: int | None = None,
    padding_mode: Literal["circular"] = "circular",
) -> np.ndarray:
    """Project a periodic layer onto the operator-norm ball ``||A||_2 <= max``.

    Sedghi, Gupta & Long (2019): clip every singular value of the circular layer at ``max``.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        Finite entries.
    input_shape : tuple of int
        ``(C_in, *n)``, each ``n`` divisible by its stride.
    max : float
        The bound ``c >= 0`` on the operator norm (``numpy.clip``'s name).
    stride, padding, dilation, groups
        As :func:`circular_svd` (``padding=None``: the periodic padding).
    support : {"full", "kernel"}, optional
        ``"full"`` (default): the exact projection, a kernel of the input's size.
        ``"kernel"``: a kernel of the original shape and dilation, by alternating the
        projection with the restriction to the original taps (approximate: see Notes).
    iterations : int, optional
        Rounds of the alternating projection, ``support="kernel"`` only (default 10); it
        stops earlier once the layer is in the ball. The exact projection has no rounds:
        ``support="full"`` refuses it.
    padding_mode : "circular", optional
        As :func:`circular_svd`: the only value, so the spectra's periodic arguments pass.

    Returns
    -------
    ndarray
        ``support="full"``: shape ``(C_out, C_in/groups, *n)``, the kernel of the projected
        layer with dilation 1, the same stride and groups, and the periodic padding
        ``((n-1)//2, n-1-(n-1)//2)`` per axis, ``padding_mode="circular"`` (``padding=None``
        in sparseconv's spectra; ``padding="same"`` at stride 1). In PyTorch, which pads
        both sides alike: ``nn.Conv2d(..., kernel_size=n, stride=stride, groups=groups,
        padding="same", padding_mode="circular")`` at stride 1, else
        ``nn.CircularPad2d`` of those pads (last axis first) before an unpadded
        ``nn.Conv2d`` (``padding=(n-1)//2`` alone matches where ``n`` is odd).
        ``support="kernel"``: the weight's shape, for the original layer's arguments. Real
        for a real weight; in double precision whatever the weight's (a float32 kernel
        rounded back to float32 could leave the ball by its rounding).

    Raises
    ------
    ValueError, TypeError
        As :func:`circular_svd`; ``max`` negative or not a finite number; an unknown
        ``support``; ``iterations`` not a positive integer, or given with
        ``support="full"``. :class:`MatrixTooLargeError` if the circular SVD and the
        full-size kernel exceed the memory limit (checked before anything is allocated).

    See Also
    --------
    circular_svd, singular_values

    Notes
    -----
    ``support="full"`` returns ``U diag(min(S, max)) V^H``, the Frobenius-nearest layer of
    norm at most ``max`` (exact: its singular values are ``min(S, max)``, computed in floating
    point, so its computed norm may exceed ``max`` by a few units in the last place: a new
    user's trial measured ``1 + 1.6e-15`` for ``max=1``). ``support="kernel"``
    alternates that projection with zeroing the taps outside the original support; each
    round costs one circular SVD. It converges to a layer of the original support within the
    ball, but after finitely many rounds its norm may exceed ``max`` slightly, and its limit
    need not be the nearest such layer.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import clip_singular_values, singular_values
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> periodic = dict(padding=None, padding_mode="circular")
    >>> float(singular_values(w, (4, 8, 8), **periodic)[0]) > 1
    True
    >>> full = clip_singular_values(w, (4, 8, 8), max=1.0, **periodic)
    >>> full.shape
    (4, 4, 8, 8)
    >>> round(float(singular_values(full, (4, 8, 8), **periodic)[0]), 10)
    1.0
    >>> small = clip_singular_values(w, (4, 8, 8), max=1.0, support="kernel", iterations=50)
    >>> small.shape
    (4, 4, 3, 3)
    >>> bool(singular_values(small, (4, 8, 8), **periodic)[0] < 1.05)
    True
    """
    periodic_padding_mode(padding_mode, "clip_singular_values")
    c = real_number(max, "max", low=0.0)
    one_of(support, _SUPPORTS, "support")
    if iterations is None:
        iterations = _ITERATIONS
    elif support == "full":
        raise ValueError(f"iterations={iterations!r} applies to support='kernel' only: "
                         "support='full' is the exact projection, in one step")
    iterations = positive_int(iterations, "iterations")

    def factor(w) -> CircularSVD:
        return CircularSVD(w, input_shape, stride=stride, padding=padding, dilation=dilation,
                           groups=groups)

    original, geom = layer_geometry(weight, input_shape, stride, padding, dilation, groups,
                                    "circular")
    require_periodic(geom, "clip_singular_values")
    # the factors, then the clipped symbol and its inverse DFT: a few full-size kernels
    full = geom.out_channels * (geom.in_channels // geom.groups) * math.prod(geom.input_size)
    check_memory(factor_bytes(geom, original.dtype.kind != "c") + 4 * 16 * full,
                 f"clip_singular_values of a layer on {geom.input_shape} (the circular SVD "
                 f"and a {geom.out_channels} x {geom.in_channels // geom.groups} x "
                 f"{' x '.join(map(str, geom.input_size))} kernel)")
    svd = factor(original)
    if support == "full":
        row = _impulse_row(geom, svd._symbol_of(np.minimum(svd._s, c)))
        return _real_if(original, _full_kernel(geom, row))
    kernel = original
    for step in range(iterations):
        if step:  # the first round factors the weight itself, above
            del svd  # one circular SVD alive at a time
            svd = factor(kernel)
        if svd.S.size == 0 or svd.S[0] <= c:
            break
        kernel = _real_if(original, _support(geom, _impulse_row(
            geom, svd._symbol_of(np.minimum(svd._s, c)))))
    return np.array(kernel, dtype=np.result_type(original, np.float64))
