"""Spectra of a product of layers ``A_L @ ... @ A_1``, strided periodic layers included.

A chain of periodic layers with strides ``s_1, ..., s_L`` commutes with shifts of its input by
the total stride ``S = s_1 ... s_L`` (per axis), so it is block diagonalized by the DFT over
the *coarsest common grid* ``M = n / S``: every layer is written on that grid, with its input
split into ``P_l = s_l ... s_L`` polyphase components and its output into ``P_{l+1}``:

    K_l(xi)[(o, a), (c, b)] = sum_{taps t} w[o, c, t] exp(2 pi i <Q, xi / M>),

where ``a`` is an output phase (output ``j*P_{l+1} + a``), tap ``t`` of that output reads input
position ``p = Q*P_l + b`` (the geometry's own gather map), rows ordered ``(o, a)`` and columns
``(c, b)``, phases in C order over the axes. Layer ``l``'s output phases are layer ``l+1``'s
input phases, so the product's symbol is ``K_L(xi) ... K_1(xi)``, a ``C_L x C_0*prod(S)``
matrix per frequency of ``M``: a stride-2 stage composes exactly. With every stride 1 it is
the product of the layers' symbols (:func:`sparseconv.symbol`).

Eigenvalues need the product's input and output indexed alike; a strided product's output is
not its input's polyphase split, so its eigenvalues come from the dense route only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._geometry import ConvGeometry, block_diagonal
from ._memory import check_memory
from ._spectra import (
    _chain,
    _check_method,
    _dense,
    _eigenvalues,
    _fft_obstacle,
    _Layer,
    _require_fft,
)
from ._symbol import conjugate_pairs, frequency_list_bytes, phase_bytes, times_power_of_two
from ._typing import LayerLike, ShapeLike, SpectralMethod

__all__ = ["composition_eigenvalues", "composition_singular_values"]

#: Frequencies are processed in chunks whose largest symbol takes about this many bytes.
_CHUNK_BYTES = 8 * 2**20


class _PolyphaseLayer(NamedTuple):
    """A layer on a coarser grid: ``K(xi) = sum_j exp(2 pi i <shifts[j], xi/grid>) placed[j]``."""

    shifts: np.ndarray  # (J, ndim) distinct shifts Q
    placed: np.ndarray  # (J, groups * rows * cols): the weights at each shift
    groups: int
    rows: int  # per group: C_out/g * prod(blocks)
    cols: int  # per group: C_in/g * prod(blocks * stride)


def _polyphase_layer(geom: ConvGeometry, weight: np.ndarray, blocks: Sequence[int],
                     grid: Sequence[int]) -> _PolyphaseLayer:
    """Layer ``geom`` with its output split into ``blocks`` phases per axis, on ``grid``."""
    ndim, groups = geom.ndim, geom.groups
    inputs = [b * s for b, s in zip(blocks, geom.stride)]  # input phases per axis
    shift = np.zeros((), np.int64)
    phase_in = np.zeros((), np.int64)
    for d, axis in enumerate(geom.axes):
        # positions read by outputs 0 .. blocks-1: the gather map, wrapped into [0, n)
        positions = axis.tap_index(np.arange(blocks[d], dtype=np.int64))
        shape = [1] * (2 * ndim)
        shape[d], shape[ndim + d] = positions.shape
        positions = positions.reshape(shape)
        shift = shift * grid[d] + positions // inputs[d]
        phase_in = phase_in * inputs[d] + positions % inputs[d]
    # axes (a_1..a_d, t_1..t_d) -> (a, t), both flat in C order
    a_count, taps = math.prod(blocks), math.prod(geom.kernel_size)
    full = (*blocks, *geom.kernel_size)
    shift = np.broadcast_to(shift, full).reshape(a_count, taps)
    phase_in = np.broadcast_to(phase_in, full).reshape(a_count, taps)
    unique, which = np.unique(shift, return_inverse=True)
    c_out, c_in = geom.out_channels // groups, geom.in_channels // groups
    b_count = math.prod(inputs)
    check_memory(16 * unique.size * geom.out_channels * c_in * a_count * b_count,
                 "a layer's polyphase symbol on the common grid")
    placed = np.zeros((unique.size, a_count, b_count, groups, c_out, c_in),
                      dtype=np.result_type(weight, np.float64))
    w = np.moveaxis(weight.reshape(groups, c_out, c_in, taps), -1, 0)
    a, t = np.indices(shift.shape).reshape(2, -1)
    np.add.at(placed, (which.reshape(-1), a, phase_in.reshape(-1)), w[t])
    placed = placed.transpose(0, 3, 4, 1, 5, 2)  # (J, g, c_out, A, c_in, B)
    shifts = np.stack(np.unravel_index(unique, tuple(grid)), axis=-1)
    return _PolyphaseLayer(shifts, placed.reshape(unique.size, -1), groups, c_out * a_count,
                           c_in * b_count)


def _evaluate(layer: _PolyphaseLayer, grid: Sequence[int], frequencies: np.ndarray):
    """The layer's symbol at ``frequencies`` ``(F, ndim)``: ``(F, g*rows, g*cols)``."""
    size = np.asarray(grid)
    turns = ((frequencies[:, None, :] * layer.shifts[None]) % size / size).sum(axis=-1)
    h = np.exp(2j * np.pi * turns) @ layer.placed
    return block_diagonal(h.reshape(-1, layer.groups, layer.rows, layer.cols))


def _common_grid(chain: list[_Layer]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The coarsest common grid and each layer's output phases per axis (``P_{l+1}``)."""
    ndim = chain[0].geom.ndim
    blocks, phases = [], (1,) * ndim
    for layer in reversed(chain):
        blocks.append(phases)
        phases = tuple(p * s for p, s in zip(phases, layer.geom.stride))
    grid = tuple(n // p for n, p in zip(chain[0].geom.input_size, phases))
    return grid, blocks[::-1]


def _fft_singular_values(chain: list[_Layer]) -> np.ndarray:
    grid, blocks = _common_grid(chain)
    first, last = chain[0].geom, chain[-1].geom
    per_frequency = min(last.out_channels, first.in_channels * math.prod(first.stride)
                        * math.prod(blocks[0]))
    count = math.prod(grid) * per_frequency
    # before any symbol: the values (with their repeats and sort), the frequency list
    results = 4 * 8 * count + frequency_list_bytes(grid)
    check_memory(results, f"the {count} singular values")
    layers = [_polyphase_layer(layer.geom, layer.weight, block, grid)
              for layer, block in zip(chain, blocks)]
    # a frequency's symbols and their product, and the phases of one layer's shifts; a
    # chunk's product with the phases copies `placed` complex
    per = (3 * max(16 * p.groups**2 * p.rows * p.cols for p in layers)
           + max(phase_bytes(len(p.shifts), len(grid)) for p in layers))
    step = max(1, min(_CHUNK_BYTES // per, math.prod(grid)))
    placed = max(16 * p.placed.size for p in layers)
    check_memory(results + step * per + placed,
                 f"the {count} singular values and the symbols of one chunk")
    if all(layer.weight.dtype.kind != "c" for layer in chain):  # one of each {xi, -xi}
        frequencies, counts = conjugate_pairs(grid)
    else:
        frequencies, counts = np.indices(grid).reshape(len(grid), -1).T, np.ones((), int)
    values = []
    for start in range(0, len(frequencies), step):
        total = None
        for layer in layers:
            h = _evaluate(layer, grid, frequencies[start:start + step])
            total = h if total is None else h @ total
        assert total is not None  # the chain holds at least one layer
        values.append(np.linalg.svd(total, compute_uv=False))
    repeated = np.repeat(np.concatenate(values), np.broadcast_to(counts, len(frequencies)),
                         axis=0)
    return np.sort(repeated.ravel())[::-1]


def composition_singular_values(layers: Sequence[LayerLike], input_shape: ShapeLike, *,
                                method: SpectralMethod = "auto") -> np.ndarray:
    """Singular values of a product of layers, ``A_L @ … @ A_1``.

    Parameters
    ----------
    layers : sequence of weights or of ``(weight, options)`` pairs
        Applied first to last. ``options`` is a dict of some of ``stride``, ``padding``,
        ``dilation``, ``groups``, ``padding_mode``, with :func:`sparseconv.conv_matrix`'s
        meaning and defaults (``padding=0``: give ``padding=None`` with
        ``padding_mode="circular"`` for the periodic padding); any other key is an error. A
        list ``[weight, options]`` is read as the pair.
    input_shape : tuple of int
        Input of the first layer, ``(C_in, *spatial)``.
    method : {"auto", "fft", "dense"}, optional
        ``"fft"``: exact, when every layer is periodic (any strides: each layer's input
        divisible by its stride). ``"dense"``: SVD of the explicit product. ``"auto"``:
        ``"fft"`` when it applies, else ``"dense"`` when the package-wide size rule allows it
        (flops and the memory limit).

    Returns
    -------
    ndarray
        Sorted descending: the ``min(rows, cols)`` singular values of ``A_L @ ... @ A_1``.

    Raises
    ------
    ValueError
        No layer, a layer whose input does not match the previous output, invalid layer
        options (the message names ``layers[i]`` and the option), ``"fft"`` where it does not
        apply, or a product too large for ``"auto"``.
    TypeError
        A layer that is neither a weight nor a ``(weight, dict)`` pair, an unknown option, a
        non-numeric weight or a non-integer size.

    See Also
    --------
    composition_eigenvalues, singular_values, circular_svd

    Notes
    -----
    A chain of periodic layers of total stride ``S`` (per axis) is diagonalized by the DFT on
    the coarsest common grid ``n / S``: each layer becomes one ``C_out*P' x C_in*P`` matrix
    per frequency, ``P`` and ``P'`` its input's and output's polyphase components on that grid,
    and the product one ``C_L x C_0*prod(S)`` matrix per frequency, whose singular values are
    computed by LAPACK's SVD (half of the frequencies for real weights). Cost
    ``O(prod(n/S) * sum_l (C_l P_l)^2 C_{l-1} P_{l-1})`` against ``O((C n^d)^3)`` for the
    explicit product.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import composition_singular_values
    >>> rng = np.random.default_rng(0)
    >>> w1, w2 = rng.standard_normal((8, 3, 3, 3)), rng.standard_normal((5, 8, 3, 3))
    >>> periodic = dict(padding=None, padding_mode="circular")
    >>> layers = [(w1, periodic), (w2, dict(periodic, dilation=2))]
    >>> composition_singular_values(layers, (3, 16, 16)).shape                 # FFT
    (768,)
    >>> strided = [(w1, dict(periodic, stride=2)), (w2, periodic)]             # a stride-2 stage
    >>> composition_singular_values(strided, (3, 16, 16)).shape                # FFT, polyphase
    (320,)
    >>> composition_singular_values([(w1, dict(padding=1)), w2], (3, 8, 8)).shape  # dense
    (180,)
    """
    _check_method(method)
    chain = _chain(layers, input_shape)
    obstacle = _fft_obstacle(chain, stride_one=False)
    if _require_fft(method, obstacle):
        values = _fft_singular_values(chain)
    else:
        product = _dense(chain, method, obstacle, "composition_singular_values")
        values = np.linalg.svd(product, compute_uv=False)
    return times_power_of_two(values, sum(layer.exponent for layer in chain))


def composition_eigenvalues(layers: Sequence[LayerLike], input_shape: ShapeLike, *,
                            method: SpectralMethod = "auto") -> np.ndarray:
    """Eigenvalues of a square product of layers, sorted by decreasing modulus.

    Parameters
    ----------
    layers, input_shape, method
        As :func:`composition_singular_values`; the product must map ``input_shape`` to as
        many values. The FFT applies when every layer is periodic with stride 1 (then one
        DFT diagonalizes the product, indexed alike on both sides); a strided product's
        eigenvalues come from the dense route (``method="fft"`` is refused, by name).

    Returns
    -------
    ndarray, complex, shape (prod(input_shape),)
        The eigenvalues of ``A_L @ ... @ A_1``, sorted by decreasing modulus.

    Raises
    ------
    ValueError, TypeError
        As :func:`composition_singular_values`; a product that is not square.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import composition_eigenvalues
    >>> w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    >>> periodic = (w, dict(padding="same", padding_mode="circular"))
    >>> composition_eigenvalues([periodic, periodic], (2, 8, 8)).shape
    (128,)
    """
    _check_method(method)
    return _eigenvalues(_chain(layers, input_shape), method, "composition_eigenvalues")
