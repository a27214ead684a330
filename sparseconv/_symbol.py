"""The symbol of a periodic layer: its per-frequency matrices, and their norms.

A circular (periodic) layer is diagonalized by the DFT, one small matrix per frequency
(Sedghi, Gupta & Long, ICLR 2019); with stride ``s`` the polyphase components of the input
make it ``C_out x C_in*s^d`` per frequency of the ``n/s`` grid. The per-frequency matrices --
the *symbol* -- are built from the taps' positions in the geometry's own gather map, so they
describe exactly the matrix :func:`sparseconv.conv_matrix` builds. :mod:`sparseconv._spectra`
and :mod:`sparseconv._spectral_norm` compute with them.

Spectra are computed on the weight rescaled by a power of two (exact in floating point) so that
its largest entry is about 1, then scaled back (:func:`unit_scale`): weights of 1e-300 or
1e300 neither underflow nor overflow in the Gram matrices.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Literal

import numpy as np

from ._caller import outside_level
from ._geometry import ConvGeometry, block_diagonal
from ._memory import check_memory
from ._parallel import cpu_count, frequency_chunks, map_chunks
from ._typing import (
    ArrayLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ProgressLike,
    ShapeLike,
)
from ._validation import (
    PADDING_MODES,
    check_executor,
    check_progress,
    layer_weight,
    one_of,
    periodic_padding_mode,
    positive_int,
    spatial_size,
)

__all__ = ["frequency_map", "symbol"]

#: How to ask for a periodic layer, quoted by every error that needs one.
PERIODIC_HINT = ("pass padding_mode='circular', padding='same' (stride 1), or padding=None "
                 "(sparseconv's shorthand for the periodic padding dilation*(k-1) per axis, any "
                 "stride)")


def layer_geometry(weight: ArrayLike, input_shape: ShapeLike, stride: IntOrTuple,
                   padding: PaddingLike | None, dilation: IntOrTuple, groups: int,
                   padding_mode: PaddingMode) -> tuple[np.ndarray, ConvGeometry]:
    """The validated ``(weight, geometry)`` of a layer; ``padding=None`` is periodic padding.

    The weight must be finite: spectra of NaN or infinite entries mean nothing.
    """
    weight = layer_weight(weight, finite=True)
    one_of(padding_mode, PADDING_MODES, "padding_mode")
    # padding=None: the periodic padding, which the geometry refuses without circular padding
    geom = ConvGeometry.from_weight(
        weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
        groups=groups, padding_mode=padding_mode,
    )
    return weight, geom


def padding_taps(geom: ConvGeometry, outputs: Sequence[int] | None = None,
                 ) -> np.ndarray | None:
    """The taps, as a boolean array of the kernel's shape in the weight's own order, that read
    only zero padding (``None``: every tap reads an input somewhere, or the padding copies
    inputs); of the layer's first ``outputs`` outputs per axis only, where given (a
    transposed layer's adjoint convolution may have more outputs than the layer has inputs:
    the layer is the adjoint of those first rows).

    With zero padding such a tap adds nothing to the matrix, so the layer is the same with it
    set to zero; the certificates are not: they scale with the weight as given (a soundness
    review: taps of 1 reading only the padding beside taps of 1e-20 that read the input gave
    the interval ``[0, 2]`` for a norm of 1.6e-20).
    """
    if geom.padding_mode != "zeros":
        return None
    inside = np.ones((), dtype=bool)
    for d, axis in enumerate(geom.axes):
        inside = np.multiply.outer(inside, axis.taps_inside(
            None if outputs is None else outputs[d]))
    if inside.all():
        return None
    return ~geom.tap_weights(np.broadcast_to(inside, geom.weight_shape))[0, 0]


def without_padding_taps(weight: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``weight`` with its taps that read only zero padding (:func:`padding_taps`) set to
    zero: the same layer's matrix, and ``weight`` itself where there are none."""
    mask = padding_taps(geom)
    if mask is None:
        return weight
    weight = weight.copy()
    weight[..., mask] = 0
    return weight


def unit_scale(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """``(weight * 2**-e, e)`` with the largest real or imaginary part in ``[0.5, 1)``.

    A power of two scales exactly, so spectra computed on the scaled weight and multiplied by
    ``2**e`` (:func:`times_power_of_two`) are those of the weight, without overflow (1e200
    squares to infinity in a Gram matrix) or underflow (1e-200 squares to zero). The weight
    is scaled in float64 (complex128) or wider: in its own float16 or float32, the small
    entries of a weight with a wide range would fall into that type's subnormals and lose
    bits. A zero weight is returned as is, with ``e = 0``.
    """
    weight = np.asarray(weight)
    weight = weight.astype(np.result_type(weight.dtype, np.float64), copy=False)
    # the parts themselves, not a view of them as reals: that needs a contiguous last axis,
    # which a transposed or Fortran-ordered weight (a permuted tensor's) does not have
    top = float(max(np.abs(weight.real).max(initial=0.0), np.abs(weight.imag).max(initial=0.0)))
    if top == 0.0:
        return weight, 0
    exponent = int(np.frexp(top)[1])
    return times_power_of_two(weight, -exponent), exponent


def scaled_back(values: np.ndarray, exponent: int,
                what: str = "singular value(s)") -> np.ndarray:
    """Singular values (or eigenvalues) of a unit-scaled weight (:func:`unit_scale`) times
    ``2**exponent``: those of the weight itself, ``inf`` beyond float64's range, said in one
    warning at the caller's line (a new user's trial: numpy's "overflow encountered in
    ldexp")."""
    with np.errstate(over="ignore"):
        result = times_power_of_two(values, exponent)
    over = int(np.count_nonzero(np.isinf(result) & np.isfinite(values)))
    if over:
        warnings.warn(f"{over} {what} over the largest float64, "
                      f"{sys.float_info.max:.4g}, are inf; they scale with the weight "
                      "(c A has c times A's): pass the weight times 2**-k and multiply the "
                      "values by 2**k", RuntimeWarning, stacklevel=outside_level())
    return result


def times_power_of_two(values: np.ndarray, exponent: int) -> np.ndarray:
    """``values * 2**exponent``, exactly (``ldexp``, also for complex values)."""
    values = np.asarray(values)
    if values.dtype.kind == "c":
        values = np.ascontiguousarray(values)
        parts = np.ldexp(values.view(values.real.dtype), exponent)
        return parts.view(values.dtype).reshape(values.shape)
    return np.ldexp(values, exponent)


def check_symbol_memory(geom: ConvGeometry, what: str, copies: int = 3) -> None:
    """Refuse, before any work, a full symbol (and ``copies`` of it) beyond the memory limit.

    The full symbol is ``prod(n/s)`` complex ``C_out x C_in*prod(s)`` matrices, block
    diagonal over the groups; beside it, the work of the chunks that compute it
    (:func:`frequency_work_bytes`).
    """
    grid = math.prod(geom.coarse_grid)
    block = geom.out_channels * geom.in_channels * math.prod(geom.stride)
    check_memory(copies * 16 * grid * block + frequency_work_bytes(geom, grid), what)


def phase_bytes(shifts: int, ndim: int) -> int:
    """The bytes one frequency costs in :func:`phases` with ``shifts`` shifts in ``ndim``
    dimensions: its phase and the integer and float temporaries that reduce each shift's turn
    (44-48 bytes a shift measured with tracemalloc in 1-D to 3-D: a 15x15 kernel's phases
    outweigh a one-channel symbol hundredfold)."""
    return shifts * (8 * ndim + 48)


def frequency_list_bytes(grid: Sequence[int]) -> int:
    """The bytes of a list of frequencies of ``grid`` (``(F, ndim)`` integers) and of
    :func:`conjugate_pairs`' work to choose it from the whole grid."""
    return 8 * (2 * len(grid) + 4) * math.prod(grid)


def tap_bytes(geom: ConvGeometry) -> int:
    """:func:`phase_bytes` of the layer's taps."""
    return phase_bytes(math.prod(geom.kernel_size), geom.ndim)


def task_bytes(geom: ConvGeometry) -> int:
    """The bytes of one call of :func:`symbol_at` that do not grow with its frequencies: the
    taps' weights placed in their phases' columns (:func:`placed_taps`, float64), and the
    complex copy of them that the product with the complex phases makes."""
    block = geom.out_channels * (geom.in_channels // geom.groups) * math.prod(geom.stride)
    return 24 * math.prod(geom.kernel_size) * block


def stored_count(grid: Sequence[int], real: bool) -> int:
    """How many frequencies a real (``real=True``) or complex weight's spectra work on: one
    of each pair ``{xi, -xi}`` for a real weight (:func:`conjugate_pairs`), else all.

    The frequencies that are their own negatives are the ones of coordinates ``0`` or
    ``n/2`` on every axis: ``prod(2 if n is even else 1)`` of them.
    """
    count = math.prod(grid)
    if not real:
        return count
    alone = math.prod(2 if n % 2 == 0 else 1 for n in grid)
    return (count + alone) // 2


def frequency_work_bytes(geom: ConvGeometry, frequencies: int, copies: int = 3) -> int:
    """Bytes :func:`per_frequency` needs for ``frequencies`` frequencies, besides its results.

    The frequency list (``(F, ndim)`` integers, and :func:`conjugate_pairs`'s work to choose
    it from the whole grid), and the chunks in flight on the default thread pool: their
    symbols, ``copies`` of each (the symbol, the adjoint the Gram product makes, and the
    Gram matrix: with 2, ``frequency_map`` of 8 channels on 256x256 went 4% over its
    estimate), their phases (:func:`tap_bytes`) and each worker's placed taps
    (:func:`task_bytes`).
    """
    block = geom.out_channels * (geom.in_channels // geom.groups) * math.prod(geom.stride)
    step = frequency_step(geom)
    in_flight = min(frequencies, step * cpu_count())
    workers = min(cpu_count(), -(-frequencies // step))
    return (frequency_list_bytes(geom.coarse_grid)
            + in_flight * (copies * 16 * block + tap_bytes(geom)) + workers * task_bytes(geom))


def is_periodic(geom: ConvGeometry) -> bool:
    """Whether the layer is a circular convolution of the whole input (FFT-diagonalizable)."""
    return not_periodic(geom) is None


def one_frequency(geom: ConvGeometry) -> ConvGeometry:
    """A periodic layer with a 1x1 kernel as the same layer on one stride of input, whose
    grid has one frequency; any other layer as it is.

    Its one tap reads one phase at one shift ``q``, so its polyphase symbol is the weight in
    that phase's columns times ``exp(2 pi i <q, xi>)``: the same singular values at every
    frequency, those of the one frequency here. (The certified bounds evaluated it at every
    frequency: 11 s for a 256->512 1x1 stride-2 layer on 56x56.)
    """
    if any(k != 1 for k in geom.kernel_size) or not is_periodic(geom):
        return geom
    return ConvGeometry.from_weight((geom.out_channels, geom.in_channels // geom.groups,
                                     *geom.kernel_size), (geom.in_channels, *geom.stride),
                                    stride=geom.stride, groups=geom.groups,
                                    padding_mode="circular")


def symbol_at(geom: ConvGeometry, weight: np.ndarray, frequencies=None) -> np.ndarray:
    """The symbol at every frequency of the grid, or at the given ones.

    Tap ``t`` of output 0 reads input position ``u_t`` (the gather map); with ``u = q*s + r``
    it reads phase ``r`` at shift ``q``, so ``H(xi) = sum_t w_t exp(2 pi i <q_t, xi/M>)``: a
    trigonometric polynomial with one term per tap, evaluated as one matrix product
    ``E @ W`` (``E[xi, t]`` the phases, ``W[t]`` the weight of tap ``t`` placed in its phase's
    columns) -- cheaper than an FFT of the kernel padded to the grid, and exact at any subset
    of frequencies.

    Returns shape ``(*grid, groups, C_out/g, C_in/g * prod(stride))``, or
    ``(len(frequencies), groups, ...)`` for an integer array ``frequencies`` of shape
    ``(F, ndim)``. Columns are ordered ``(c, r)``, ``r`` in C order over the stride.
    """
    ndim, groups = geom.ndim, geom.groups
    grid = np.array(geom.coarse_grid)
    # numpy's stubs want the shape of np.indices as a sequence, not an integer array
    xi = (np.indices(grid).reshape(ndim, -1).T if frequencies is None  # type: ignore[call-overload]
          else np.asarray(frequencies, dtype=np.int64).reshape(-1, ndim))
    shift, placed = placed_taps(geom, weight)
    h = phases(xi, shift, grid) @ placed.reshape(len(shift), -1)
    lead = tuple(grid) if frequencies is None else (xi.shape[0],)
    return h.reshape(*lead, groups, geom.out_channels // groups, -1)


def placed_taps(geom: ConvGeometry, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each tap's shift on the coarse grid and its weight placed in its phase's columns.

    Returns ``shift``, shape ``(K, ndim)``, and ``placed``, shape ``(K, groups, C_out/g, C_in/g,
    prod(stride))``: ``H(xi) = sum_t placed[t] exp(2 pi i <shift_t, xi/M>)`` (columns
    flattened ``(c, r)``).
    """
    ndim, groups = geom.ndim, geom.groups
    c_out, c_in = geom.out_channels // groups, geom.in_channels // groups
    first = [a.tap_index()[0] for a in geom.axes]  # positions read by output 0, per axis
    taps = list(np.ndindex(*geom.kernel_size))
    u = np.array([[first[d][tap[d]] for d in range(ndim)] for tap in taps])  # (K, ndim)
    stride = np.array(geom.stride)
    shift, phase = u // stride, np.ravel_multi_index((u % stride).T, geom.stride)
    placed = np.zeros((len(taps), groups, c_out, c_in, math.prod(geom.stride)),
                      dtype=np.result_type(weight, np.float64))
    w = weight.reshape(groups, c_out, c_in, len(taps))
    for t in range(len(taps)):  # taps that wrap onto one position simply add up
        placed[t, ..., phase[t]] += w[..., t]
    return shift, placed


_QUARTER_TURNS = np.array([1, 1j, -1, -1j])


def phases(xi: np.ndarray, shift: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``exp(2 pi i <shift, xi/M>)`` for frequencies ``(F, ndim)`` and shifts ``(K, ndim)``:
    shape ``(F, K)``; the products reduced modulo the grid first, in exact integers."""
    turns = ((xi[:, None, :] * shift[None, :, :]) % grid / grid).sum(axis=-1)
    values = np.exp(2j * np.pi * turns)
    # quarter turns exactly: a real kernel's symbol is then exactly real where it is real (at
    # xi = -xi, the Nyquist frequencies), and its blocks factorize in real arithmetic
    quarters = 4 * turns
    nearest = np.round(quarters)
    exact = quarters == nearest
    values[exact] = _QUARTER_TURNS[nearest[exact].astype(np.int64) % 4]
    return values


def symbol(weight: ArrayLike, input_size: ShapeLike, *, stride: IntOrTuple = 1,
           padding: PaddingLike | None = None, dilation: IntOrTuple = 1,
           groups: int = 1, padding_mode: Literal["circular"] = "circular",
           executor: Executor | None = None,
           progress: ProgressLike | None = None) -> np.ndarray:
    """The per-frequency matrices of a circular layer.

    The symbol exists for periodic layers only: circular padding of total ``dilation*(k-1)``
    per axis (``padding_mode="circular"`` is implied). Unlike :func:`singular_values`, whose
    defaults are :func:`sparseconv.conv_matrix`'s, this function always describes that
    circular layer: ``symbol(w, n)`` is the layer ``conv_matrix(w, (C_in, *n),
    padding_mode="circular", padding="same")`` (stride 1).

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        Finite entries.
    input_size : int or tuple of int
        Spatial input size ``n``, one per spatial dimension of the weight; each ``n`` must be
        divisible by its stride.
    stride
        As :func:`sparseconv.conv_matrix`.
    padding : None, or a periodic padding as :func:`sparseconv.conv_matrix`, optional
        ``None`` (default): the periodic padding, ``dilation * (kernel_size - 1)`` per axis
        (PyTorch's "same" split). Another split of the same total only changes the phase of
        the symbol, not its singular values; any other padding is refused.
    dilation, groups
        As :func:`sparseconv.conv_matrix`.
    padding_mode : {"circular"}, optional
        Only ``"circular"``, accepted so that the periodic arguments of the other spectral
        functions (``padding=None, padding_mode="circular"``) pass unchanged.
    executor : concurrent.futures.Executor, optional
        Runs the work, one task per chunk of frequencies carrying the kernel and the chunk
        (a ``ProcessPoolExecutor``, a ``dask.distributed`` client's ``get_executor()``,
        ``MPIPoolExecutor``...); default: threads on every core. Results are in the serial
        order; a failed task raises ``RuntimeError`` naming its chunk.
    progress : callable, optional
        ``progress(done, total)``, called as chunks of frequencies complete.

    Returns
    -------
    ndarray, complex, shape (*grid, C_out, C_in * prod(stride))
        ``grid = n // stride``. With ``x_r[c, q] = x[c, q*stride + r]`` the polyphase
        components of the input (``r`` in C order over the stride, columns ordered
        ``(c, r)``) and ``^`` the DFT over ``grid`` (``numpy.fft.fftn``), the layer's output is
        ``y^(xi) = H[xi] @ x^(xi)``. Block diagonal over groups.

    Raises
    ------
    ValueError
        An input size not divisible by its stride, a padding that is not periodic, non-finite
        weights, or invalid arguments (the message names the argument).
    TypeError
        An argument of the wrong type.

    See Also
    --------
    singular_values

    Notes
    -----
    ``H[xi][o, (c, r)] = sum_{t : u_t = r (mod s)} w[o, c, t] exp(2 pi i floor(u_t/s) xi/(n/s))``
    where ``u_t = t*dilation - pad_lo`` is the position tap ``t`` reads for output 0. Cost:
    one matrix product of the ``(n/s)^d x taps`` phases by the taps' weights,
    ``C_out*C_in/groups * taps * (n/s)^d`` complex multiply-adds; the
    FFT of the kernel padded to the grid would cost more for kernels of few taps.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import symbol, conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    >>> H = symbol(w, (8, 8))
    >>> H.shape
    (8, 8, 2, 3)
    >>> A = conv_matrix(w, (3, 8, 8), padding="same", padding_mode="circular").toarray()
    >>> s = np.sort(np.linalg.svd(H, compute_uv=False).ravel())[::-1]
    >>> bool(np.allclose(s, np.linalg.svd(A, compute_uv=False)))
    True
    """
    executor, progress = check_executor(executor), check_progress(progress)
    periodic_padding_mode(padding_mode, "symbol")
    weight, geom = _periodic_geometry(weight, input_size, stride, padding, dilation, groups)
    check_symbol_memory(geom, "the symbol")
    scaled, exponent = unit_scale(weight)
    grid = list(geom.coarse_grid)
    h = per_frequency(geom, scaled, _all_frequencies(grid), None, executor, progress)
    return times_power_of_two(block_diagonal(h.reshape(*grid, *h.shape[1:])), exponent)


def _all_frequencies(grid: Sequence[int]) -> np.ndarray:
    """Every frequency of ``grid``, in C order: shape ``(prod(grid), len(grid))``."""
    return np.indices(grid).reshape(len(grid), -1).T


def _periodic_geometry(weight, input_size, stride, padding, dilation, groups) -> tuple:
    """The validated weight and periodic geometry of :func:`symbol` and :func:`frequency_map`."""
    weight = layer_weight(weight, finite=True)
    input_size = spatial_size(input_size, "input_size")
    if len(input_size) != weight.ndim - 2:
        hint = (" (input_size is spatial: without the channels, unlike the (C, *spatial) "
                "input_shape of the other spectral functions)"
                if len(input_size) == weight.ndim - 1 else "")
        raise ValueError(f"input_size must give one size per spatial dimension of the weight "
                         f"({weight.ndim - 2}, weight.shape={weight.shape}), got "
                         f"{input_size}{hint}")
    groups = positive_int(groups, "groups")
    weight, geom = layer_geometry(weight, (weight.shape[1] * groups, *input_size), stride,
                                  padding, dilation, groups, "circular")
    require_periodic(geom, "symbol")
    return weight, geom


def not_periodic(geom: ConvGeometry) -> str | None:
    """Why the layer is not a circular convolution of the whole input, or None if it is.

    Periodic: circular padding, every input size ``n`` divisible by its stride ``s``, and
    ``n / s`` outputs on every axis. Output ``o`` then reads ``(o s + t d - pad) mod n``, every
    stride phase once: the circular convolution by polyphase, its input shifted by the
    padding's low side (a unitary relabelling). The total padding ``P`` is then from
    ``d (k - 1) - s + 1`` to ``d (k - 1)`` (a 4x4 stride-2 layer with circular padding 1 is
    the periodic layer itself).
    """
    for a in geom.axes:
        if a.size % a.stride:
            return (f"every input size divisible by its stride, got input size "
                    f"{geom.input_size} and stride {geom.stride}")
    for d, a in enumerate(geom.axes):
        if a.output_size != a.size // a.stride:
            most = a.dilation * (a.kernel_size - 1)
            least = max(0, most - a.stride + 1)
            needs = f"{most}" if least == most else f"from {least} to {most}"
            return (f"a periodic layer: input_size/stride outputs on every axis, a total "
                    f"padding of dilation*(kernel_size-1) - stride + 1 to "
                    f"dilation*(kernel_size-1); axis {d} needs {needs}, got padding "
                    f"{geom.padding}")
    if geom.padding_mode != "circular":
        return f"padding_mode='circular', got {geom.padding_mode!r}"
    return None


def require_periodic(geom: ConvGeometry, what: str, hint: str | None = None) -> None:
    """``ValueError`` saying why the layer is not periodic and how to ask for one (``hint``:
    the caller's own way, default :data:`PERIODIC_HINT`'s arguments)."""
    reason = not_periodic(geom)
    if reason and hint is None and any(a.size % a.stride for a in geom.axes):  # no padding
        # helps (an audit: the padding hint below was given here too)
        raise ValueError(f"{what} needs {reason}: no padding makes that layer periodic (crop "
                         "or pad the input to a multiple of the stride)")
    if reason:
        raise ValueError(f"{what} needs {reason}; for the periodic layer "
                         f"{PERIODIC_HINT if hint is None else hint}")


def smaller_gram(flat: np.ndarray) -> np.ndarray:
    """The Gram matrices of a stack ``(k, m, n)`` on their smaller side: ``(k, min, min)``."""
    # a contiguous adjoint: numpy's batched complex matmul is slow on a transposed operand
    adjoint = np.ascontiguousarray(np.conj(flat).transpose(0, 2, 1))
    return np.matmul(adjoint, flat) if flat.shape[-2] >= flat.shape[-1] else flat @ adjoint


def conjugate_pairs(grid: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One frequency of each pair ``{xi, -xi}`` of the grid, and how many it stands for.

    A real kernel's symbol at ``-xi`` is the conjugate of the one at ``xi``: the same
    singular values. Returns the chosen frequencies, shape ``(F, ndim)``, and their counts
    (1 if ``xi == -xi``, else 2).
    """
    xi = np.indices(grid).reshape(len(grid), -1)
    itself = np.ravel_multi_index(list(xi), grid)
    negative = np.ravel_multi_index([(-x) % n for x, n in zip(xi, grid)], grid)
    keep = itself <= negative
    # numpy's stubs give ravel_multi_index of a list of arrays a scalar type, not an array
    return xi[:, keep].T, np.where(itself[keep] == negative[keep], 1, 2)  # type: ignore[index]


def top_per_frequency(h: np.ndarray) -> np.ndarray:
    """``sigma_max`` of each matrix of a stack ``(..., m, n)`` (eigenvalues of the Gram)."""
    gram = smaller_gram(h.reshape(-1, *h.shape[-2:]))
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[:, -1], 0, None)).reshape(h.shape[:-2])


def frequency_map(weight: ArrayLike, input_size: ShapeLike, *, stride: IntOrTuple = 1,
                  padding: PaddingLike | None = None, dilation: IntOrTuple = 1,
                  groups: int = 1, padding_mode: Literal["circular"] = "circular",
                  executor: Executor | None = None,
                  progress: ProgressLike | None = None) -> np.ndarray:
    """The largest singular value of the circular layer's symbol at each frequency.

    Like :func:`symbol`, this describes the periodic (circular) layer only, whatever the
    padding of the layer it is drawn for.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        Finite entries.
    input_size : int or tuple of int
        Spatial input size, divisible by the stride.
    stride
        As :func:`sparseconv.conv_matrix`.
    padding : None, or a periodic padding, optional
        As :func:`symbol`: ``None`` (the default) or another split of the same total (the
        same map).
    dilation, groups
        As :func:`sparseconv.conv_matrix`.
    padding_mode : {"circular"}, optional
        As :func:`symbol`: accepted so that the periodic arguments of the other spectral
        functions pass unchanged.
    executor : concurrent.futures.Executor, optional
        Runs the work, one task per chunk of frequencies carrying the kernel and the chunk
        (a ``ProcessPoolExecutor``, a ``dask.distributed`` client's ``get_executor()``,
        ``MPIPoolExecutor``...); default: threads on every core. Results are in the serial
        order; a failed task raises ``RuntimeError`` naming its chunk.
    progress : callable, optional
        ``progress(done, total)``, called as chunks of frequencies complete.

    Returns
    -------
    ndarray, shape ``input_size // stride``
        ``sigma_max(H[xi])`` in ``numpy.fft`` frequency order; its maximum is the spectral
        norm of the periodic layer.

    Raises
    ------
    ValueError, TypeError
        As :func:`symbol`: an input size not divisible by its stride, non-finite weights, or
        invalid arguments.

    See Also
    --------
    symbol, sparseconv.plot.frequency_heatmap

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import frequency_map, singular_values
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> m = frequency_map(w, (16, 16))
    >>> m.shape
    (16, 16)
    >>> s = singular_values(w, (3, 16, 16), padding="same", padding_mode="circular")
    >>> bool(np.isclose(m.max(), s[0]))
    True
    """
    executor, progress = check_executor(executor), check_progress(progress)
    periodic_padding_mode(padding_mode, "frequency_map")
    weight, geom = _periodic_geometry(weight, input_size, stride, padding, dilation, groups)
    # the tops per frequency and group, and the chunks in flight; not the whole symbol (a
    # review: 9.2 GiB asked for a 64 -> 64 layer on 224x224, whose chunks need a few MiB)
    grid_size = math.prod(geom.coarse_grid)
    check_memory(3 * 8 * grid_size * geom.groups + frequency_work_bytes(geom, grid_size),
                 "frequency_map's largest singular value per frequency")
    scaled, exponent = unit_scale(weight)
    grid = list(geom.coarse_grid)
    top = per_frequency(geom, scaled, _all_frequencies(grid), top_per_frequency, executor,
                        progress, "frequency_map")  # (F, groups): the top of each block
    return times_power_of_two(top.max(axis=-1).reshape(grid), exponent)


#: Frequencies are processed in chunks whose symbol takes about this many bytes: temporaries
#: stay small and are reused, instead of page-faulting fresh memory the size of the symbol.
_CHUNK_BYTES = 8 * 2**20


def frequency_step(geom: ConvGeometry) -> int:
    """How many frequencies' symbol and phases (:func:`tap_bytes`) fit :data:`_CHUNK_BYTES`."""
    block = (geom.out_channels // geom.groups) * (geom.in_channels // geom.groups)
    per_frequency = 16 * geom.groups * block * math.prod(geom.stride) + tap_bytes(geom)
    return max(1, _CHUNK_BYTES // per_frequency)


def reduce_symbol(geom: ConvGeometry, weight: np.ndarray, reduce, frequencies: np.ndarray,
                  ) -> np.ndarray:
    """``reduce(symbol)`` at ``frequencies`` (``(F, ndim)``), :data:`_CHUNK_BYTES` at a time.

    One task of :func:`per_frequency`: module-level, so any executor can run it.
    """
    step = frequency_step(geom)
    return np.concatenate([reduce(symbol_at(geom, weight, frequencies[i:i + step]))
                           for i in range(0, len(frequencies), step)])


def _symbol_chunk(geom: ConvGeometry, weight: np.ndarray, frequencies: np.ndarray,
                  ) -> np.ndarray:
    """The symbol at a task's frequencies, :data:`_CHUNK_BYTES` of them at a time (a task
    holds many: their phases at once were 90 MB for a 15x15 kernel on 200x200, a review)."""
    return reduce_symbol(geom, weight, _identity, frequencies)


def per_frequency(geom: ConvGeometry, weight: np.ndarray, frequencies: np.ndarray, reduce,
                  executor: Executor | None = None, progress: ProgressLike | None = None,
                  what: str = "the symbol") -> np.ndarray:
    """``reduce(symbol)`` at ``frequencies`` (``(F, ndim)``), in tasks on ``executor``.

    ``reduce=None`` returns the symbol itself. Chunks of frequencies are the tasks
    (:func:`sparseconv._parallel.map_chunks`); the results are in the order of
    ``frequencies``.
    """
    if len(frequencies) == 0:
        return reduce_symbol(geom, weight, reduce or _identity, frequencies)
    chunks = frequency_chunks(frequencies, frequency_step(geom), executor)
    starts = np.cumsum([0] + [len(c) for c in chunks])

    def label(i: int) -> str:
        return f"frequencies {starts[i]} to {starts[i + 1] - 1} of {starts[-1]}"

    if reduce is None:
        parts = map_chunks(_symbol_chunk, (geom, weight), chunks, executor=executor, what=what,
                           progress=progress, label=label)
    else:
        parts = map_chunks(reduce_symbol, (geom, weight, reduce), chunks, executor=executor,
                           what=what, progress=progress, label=label)
    return np.concatenate(parts)


def _identity(h: np.ndarray) -> np.ndarray:
    return h
