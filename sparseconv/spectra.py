"""Exact spectra of convolution layers: the symbol, singular values and eigenvalues.

A circular (periodic) layer is diagonalized by the DFT, one small matrix per frequency
(Sedghi, Gupta & Long, ICLR 2019); with stride ``s`` the polyphase components of the input
make it ``C_out x C_in*s^d`` per frequency of the ``n/s`` grid. The per-frequency matrices --
the *symbol* -- are built from the taps' positions in the geometry's own gather map, so they
describe exactly the matrix :func:`sparseconv.conv_matrix` builds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .arguments import as_weight, int_tuple, normalize_padding
from .geometry import ConvGeometry
from .limits import check_memory
from .matrices import conv_matrix

__all__ = [
    "composition_eigenvalues",
    "composition_singular_values",
    "eigenvalues",
    "frequency_map",
    "periodic_padding",
    "singular_values",
    "symbol",
]

#: ``method="auto"`` computes a dense SVD only up to this many singular values.
DENSE_LIMIT = 4096
#: Frequencies whose Gram matrix is worse conditioned than this go to the SVD.
_GRAM_CONDITION = 1e10


def periodic_padding(kernel_size: Sequence[int], dilation: Sequence[int]):
    """The padding of a periodic layer: ``dilation*(k-1)`` per axis, split as PyTorch's "same".

    Examples
    --------
    >>> from sparseconv.spectra import periodic_padding
    >>> periodic_padding((3, 4), (1, 1))
    ((1, 1), (1, 2))
    """
    ndim = len(kernel_size)
    return normalize_padding("same", ndim, tuple(kernel_size), (1,) * ndim, tuple(dilation))


def _layer(weight, input_shape, stride, padding, dilation, groups, padding_mode) -> tuple:
    weight = as_weight(weight)
    if padding is None and weight.ndim >= 3:
        dil = int_tuple(dilation, weight.ndim - 2, "dilation", 1)
        padding = periodic_padding(weight.shape[2:], dil)
    geom = ConvGeometry.from_weight(
        weight.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
        groups=groups, padding_mode=padding_mode,
    )
    return weight, geom


def _is_periodic(geom: ConvGeometry) -> bool:
    """Whether the layer is a circular convolution of the whole input (FFT-diagonalizable)."""
    return _not_periodic(geom) is None


def _symbol(geom: ConvGeometry, weight: np.ndarray, frequencies=None) -> np.ndarray:
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
    grid = np.array([a.size // a.stride for a in geom.axes])
    c_out, c_in = geom.out_channels // groups, geom.in_channels // groups
    xi = (np.indices(grid).reshape(ndim, -1).T if frequencies is None
          else np.asarray(frequencies, dtype=np.int64).reshape(-1, ndim))
    first = [a.tap_index()[0] for a in geom.axes]  # positions read by output 0, per axis
    taps = list(np.ndindex(*geom.kernel_size))
    u = np.array([[first[d][tap[d]] for d in range(ndim)] for tap in taps])  # (K, ndim)
    stride = np.array(geom.stride)
    shift, phase = u // stride, np.ravel_multi_index((u % stride).T, geom.stride)
    turns = ((xi[:, None, :] * shift[None, :, :]) % grid / grid).sum(axis=-1)  # (F, K)
    placed = np.zeros((len(taps), groups, c_out, c_in, math.prod(geom.stride)),
                      dtype=np.result_type(weight, np.float64))
    w = weight.reshape(groups, c_out, c_in, len(taps))
    for t in range(len(taps)):  # taps that wrap onto one position simply add up
        placed[t, ..., phase[t]] += w[..., t]
    h = np.exp(2j * np.pi * turns) @ placed.reshape(len(taps), -1)
    lead = tuple(grid) if frequencies is None else (xi.shape[0],)
    return h.reshape(*lead, groups, c_out, -1)


def _block_diagonal(h: np.ndarray) -> np.ndarray:
    """``(*grid, groups, m, n)`` per-group blocks -> ``(*grid, groups*m, groups*n)``."""
    groups, m, n = h.shape[-3:]
    full = np.zeros((*h.shape[:-3], groups * m, groups * n), dtype=h.dtype)
    for g in range(groups):
        full[..., g * m:(g + 1) * m, g * n:(g + 1) * n] = h[..., g, :, :]
    return full


def symbol(weight, input_size: Sequence[int], *, stride=1, padding=None, dilation=1,
           groups: int = 1) -> np.ndarray:
    """The per-frequency matrices of a circular layer.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    input_size : tuple of int
        Spatial input size ``n``; each ``n`` must be divisible by its stride.
    stride, dilation, groups
        As :func:`sparseconv.conv_matrix`.
    padding : None, or as :func:`sparseconv.conv_matrix`
        ``None``: the periodic layer (:func:`periodic_padding`). The split only changes the
        phase of the symbol, not its singular values.

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
        If an input size is not divisible by its stride or the arguments are invalid.

    See Also
    --------
    singular_values

    Notes
    -----
    ``H[xi][o, (c, r)] = sum_{t : u_t = r (mod s)} w[o, c, t] exp(2 pi i floor(u_t/s) xi/(n/s))``
    where ``u_t = t*dilation - pad_lo`` is the position tap ``t`` reads for output 0. Cost:
    one FFT of size ``C_out*C_in/groups * n^d``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import symbol, conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    >>> H = symbol(w, (8, 8))
    >>> H.shape
    (8, 8, 2, 3)
    >>> A = conv_matrix(w, (3, 8, 8), padding=1, padding_mode="circular").toarray()
    >>> s = np.sort(np.linalg.svd(H, compute_uv=False).ravel())[::-1]
    >>> bool(np.allclose(s, np.linalg.svd(A, compute_uv=False)))
    True
    """
    weight = as_weight(weight)
    input_size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    input_shape = (weight.shape[1] * groups if isinstance(groups, int) else 1, *input_size)
    weight, geom = _layer(weight, input_shape, stride, padding, dilation, groups, "circular")
    _require_periodic(geom, "symbol")
    return _block_diagonal(_symbol(geom, weight))


def _not_periodic(geom: ConvGeometry) -> str | None:
    """Why the layer is not a circular convolution of the whole input, or None if it is."""
    for a in geom.axes:
        if a.size % a.stride:
            return (f"every input size divisible by its stride, got input size "
                    f"{geom.input_size} and stride {geom.stride}")
        if a.pad[0] + a.pad[1] != a.dilation * (a.kernel_size - 1):
            return (f"a periodic layer: total padding dilation*(kernel_size-1) = "
                    f"{a.dilation * (a.kernel_size - 1)} per axis, got padding {geom.padding}")
    if geom.padding_mode != "circular":
        return f"padding_mode='circular', got {geom.padding_mode!r}"
    return None


def _require_periodic(geom: ConvGeometry, what: str) -> None:
    reason = _not_periodic(geom)
    if reason:
        raise ValueError(f"{what} needs {reason}")


def _smaller_gram(flat: np.ndarray) -> np.ndarray:
    """The Gram matrices of a stack ``(k, m, n)`` on their smaller side: ``(k, min, min)``."""
    # a contiguous adjoint: numpy's batched complex matmul is slow on a transposed operand
    adjoint = np.ascontiguousarray(np.conj(flat).transpose(0, 2, 1))
    return np.matmul(adjoint, flat) if flat.shape[-2] >= flat.shape[-1] else flat @ adjoint


def _frequency_singular_values(h: np.ndarray) -> np.ndarray:
    """Singular values of a stack of matrices ``(..., m, n)``, shape ``(..., min(m, n))``.

    Eigenvalues of the smaller Gram matrix are faster than an SVD and accurate to
    ``eps * sigma_max^2 / sigma`` per value; matrices conditioned worse than
    ``sqrt(_GRAM_CONDITION)`` are redone by SVD, accurate to ``eps * sigma_max``.
    """
    flat = h.reshape(-1, *h.shape[-2:])
    lam = np.linalg.eigvalsh(_smaller_gram(flat))[:, ::-1]
    values = np.sqrt(np.clip(lam, 0, None))
    bad = lam[:, -1] < lam[:, 0] / _GRAM_CONDITION
    if bad.any():
        values[bad] = np.linalg.svd(flat[bad], compute_uv=False)
    return values.reshape(*h.shape[:-2], -1)


def _conjugate_pairs(grid: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One frequency of each pair ``{xi, -xi}`` of the grid, and how many it stands for.

    A real kernel's symbol at ``-xi`` is the conjugate of the one at ``xi``: the same
    singular values. Returns the chosen frequencies, shape ``(F, ndim)``, and their counts
    (1 if ``xi == -xi``, else 2).
    """
    xi = np.indices(grid).reshape(len(grid), -1)
    itself = np.ravel_multi_index(list(xi), grid)
    negative = np.ravel_multi_index([(-x) % n for x, n in zip(xi, grid)], grid)
    keep = itself <= negative
    return xi[:, keep].T, np.where(itself[keep] == negative[keep], 1, 2)


def _top_per_frequency(h: np.ndarray) -> np.ndarray:
    """``sigma_max`` of each matrix of a stack ``(..., m, n)`` (eigenvalues of the Gram)."""
    gram = _smaller_gram(h.reshape(-1, *h.shape[-2:]))
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[:, -1], 0, None)).reshape(h.shape[:-2])


def frequency_map(weight, input_size: Sequence[int], *, stride=1, dilation=1,
                  groups: int = 1) -> np.ndarray:
    """The largest singular value of the circular layer's symbol at each frequency.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    input_size : tuple of int
        Spatial input size, divisible by the stride.
    stride, dilation, groups
        As :func:`sparseconv.conv_matrix`.

    Returns
    -------
    ndarray, shape ``input_size // stride``
        ``sigma_max(H[xi])`` in ``numpy.fft`` frequency order; its maximum is the spectral
        norm of the periodic layer.

    Raises
    ------
    ValueError
        As :func:`symbol`: an input size not divisible by its stride, or invalid arguments.

    See Also
    --------
    symbol, sparseconv.plot.frequency_map

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import frequency_map, singular_values
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> m = frequency_map(w, (16, 16))
    >>> m.shape
    (16, 16)
    >>> bool(np.isclose(m.max(), singular_values(w, (3, 16, 16))[0]))
    True
    """
    return _top_per_frequency(symbol(weight, input_size, stride=stride, dilation=dilation,
                                      groups=groups))


#: Frequencies are processed in chunks whose symbol takes about this many bytes: temporaries
#: stay small and are reused, instead of page-faulting fresh memory the size of the symbol.
_CHUNK_BYTES = 8 * 2**20


def _per_frequency(geom: ConvGeometry, weight: np.ndarray, frequencies: np.ndarray,
                   reduce) -> np.ndarray:
    """``reduce(symbol)`` at ``frequencies`` (``(F, ndim)``), a chunk of them at a time."""
    block = (geom.out_channels // geom.groups) * (geom.in_channels // geom.groups)
    step = max(1, _CHUNK_BYTES // (16 * geom.groups * block * math.prod(geom.stride)))
    return np.concatenate([reduce(_symbol(geom, weight, frequencies[i:i + step]))
                           for i in range(0, len(frequencies), step)])


def _circular_singular_values(geom: ConvGeometry, weight: np.ndarray) -> np.ndarray:
    grid = [a.size // a.stride for a in geom.axes]
    if weight.dtype.kind == "c":
        frequencies, counts = np.indices(grid).reshape(len(grid), -1).T, 1
    else:  # one frequency of each pair {xi, -xi}
        frequencies, counts = _conjugate_pairs(grid)
    values = _per_frequency(geom, weight, frequencies, _frequency_singular_values)
    return np.sort(np.repeat(values, counts, axis=0).ravel())[::-1]


def singular_values(
    weight, input_shape: Sequence[int], *, stride=1, padding=None, dilation=1, groups: int = 1,
    padding_mode: str = "circular", method: str = "auto",
) -> np.ndarray:
    """All singular values, sorted descending, of the matrix :func:`conv_matrix` builds.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride, dilation, groups, padding_mode
        As :func:`sparseconv.conv_matrix` (``padding_mode`` defaults to ``"circular"``).
    padding : None, or as :func:`sparseconv.conv_matrix`
        ``None``: the periodic layer, total padding ``dilation*(k-1)`` per axis split as
        PyTorch's "same"; with stride ``s`` and sizes divisible by ``s`` the output is ``n/s``.
    method : {"auto", "fft", "dense"}
        ``"fft"``: exact, for circular layers whose padding is ``dilation*(k-1)`` per axis and
        whose sizes are divisible by the stride. ``"dense"``: SVD of the explicit matrix.
        ``"auto"``: ``"fft"`` when it applies, else ``"dense"`` up to ``DENSE_LIMIT`` values.

    Returns
    -------
    ndarray, shape (min(rows, cols),)

    Raises
    ------
    ValueError
        Invalid arguments, ``"fft"`` requested where it does not apply, or a layer too large
        for a dense SVD (use :func:`sparseconv.spectral_norm` for the largest one).

    See Also
    --------
    symbol, spectral_norm, eigenvalues

    Notes
    -----
    FFT path: one FFT of the kernel placed on the ``n/s`` grid (real FFT for real kernels),
    then per frequency the singular values of a ``C_out/g x C_in/g * s^d`` matrix, from the
    eigenvalues of its smaller Gram matrix, or by SVD where that matrix is ill-conditioned:
    ``O(g * (n/s)^d * m^2 * M)`` with ``m <= M`` the block sizes, halved for real kernels
    (frequencies ``xi`` and ``-xi`` share their singular values). Dense path:
    ``O(rows * cols * min(rows, cols))`` time and ``rows * cols`` memory.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import singular_values
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> s = singular_values(w, (4, 16, 16), stride=2)        # exact, by FFT and polyphase
    >>> s.shape
    (256,)
    >>> z = singular_values(w, (4, 6, 6), padding=1, padding_mode="zeros")   # dense
    >>> z.shape
    (144,)
    """
    if method not in ("auto", "fft", "dense"):
        raise ValueError(f"method must be 'auto', 'fft' or 'dense', got {method!r}")
    weight, geom = _layer(weight, input_shape, stride, padding, dilation, groups, padding_mode)
    if method == "fft" or (method == "auto" and _is_periodic(geom)):
        _require_periodic(geom, "method='fft'")
        return _circular_singular_values(geom, weight)
    rows, cols = geom.shape
    if method == "auto" and min(rows, cols) > DENSE_LIMIT:
        raise ValueError(
            f"the {rows} x {cols} matrix of this layer is too large for a dense SVD (more than "
            f"{DENSE_LIMIT} singular values) and its padding is not periodic; use "
            "sparseconv.spectral_norm for the largest singular value, or method='dense'"
        )
    check_memory(rows * cols * np.dtype(weight.dtype).itemsize * 2, f"a dense {rows} x {cols} SVD")
    dense = conv_matrix(weight, input_shape, stride=stride, padding=geom.padding,
                        dilation=dilation, groups=groups, padding_mode=padding_mode).toarray()
    return np.linalg.svd(dense, compute_uv=False)


def eigenvalues(weight, input_shape: Sequence[int], *, padding=None, dilation=1,
                groups: int = 1) -> np.ndarray:
    """Eigenvalues of a square circular stride-1 layer, exactly, by FFT.

    Parameters
    ----------
    weight : array_like, shape (C, C/groups, *kernel_size)
    input_shape : tuple of int
        ``(C, *spatial)``.
    padding : None, or a periodic padding as :func:`sparseconv.conv_matrix`
        The split matters here: it shifts the output and multiplies each frequency's
        eigenvalues by a phase.
    dilation, groups
        As :func:`sparseconv.conv_matrix`.

    Returns
    -------
    ndarray, complex, shape (C * prod(spatial),)
        Sorted by decreasing modulus.

    Raises
    ------
    ValueError
        If the layer is not square (``C_in == C_out``) or not periodic.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import eigenvalues, conv_matrix
    >>> w = np.random.default_rng(1).standard_normal((2, 2, 3))
    >>> lam = eigenvalues(w, (2, 10))
    >>> A = conv_matrix(w, (2, 10), padding=1, padding_mode="circular").toarray()
    >>> dense = np.linalg.eigvals(A)
    >>> float(np.abs(lam[:, None] - dense[None, :]).min(axis=1).max()) < 1e-12
    True
    """
    return composition_eigenvalues([(weight, dict(padding=padding, dilation=dilation,
                                                  groups=groups))], input_shape)


def _chain(layers, input_shape, square: bool) -> tuple[list, tuple]:
    """Validate a chain of circular stride-1 layers on one grid; return their full symbols."""
    if not layers:
        raise ValueError("layers must hold at least one layer")
    shape, symbols = tuple(input_shape), []
    for i, layer in enumerate(layers):
        weight, kwargs = layer if isinstance(layer, tuple) else (layer, {})
        weight, geom = _layer(weight, shape, kwargs.get("stride", 1), kwargs.get("padding"),
                              kwargs.get("dilation", 1), kwargs.get("groups", 1), "circular")
        if any(a.stride != 1 for a in geom.axes) or not _is_periodic(geom):
            raise ValueError(f"layers[{i}] must be a periodic circular layer with stride 1")
        if square and geom.in_channels != geom.out_channels:
            raise ValueError(
                f"eigenvalues need a square map: layers[{i}] maps {geom.in_channels} to "
                f"{geom.out_channels} channels"
            )
        symbols.append(_block_diagonal(_symbol(geom, weight)))
        shape = geom.output_shape
    return symbols, shape


def _product(symbols: list) -> np.ndarray:
    total = symbols[0]
    for h in symbols[1:]:
        total = h @ total  # applied first to last
    return total


def composition_singular_values(layers: Sequence, input_shape: Sequence[int]) -> np.ndarray:
    """Singular values of a product of circular stride-1 layers, without forming it.

    Parameters
    ----------
    layers : sequence of weights or of ``(weight, kwargs)`` pairs
        Applied first to last; ``kwargs`` may hold ``padding`` (periodic), ``dilation`` and
        ``groups``.
    input_shape : tuple of int
        Input of the first layer, ``(C_in, *spatial)``.

    Returns
    -------
    ndarray
        Sorted descending: the singular values of ``A_L @ ... @ A_1``.

    Raises
    ------
    ValueError
        No layer, a layer that is not periodic and circular with stride 1, a layer whose
        input does not match the previous output, or invalid layer arguments.
    TypeError
        A non-numeric weight or a non-integer size.

    Notes
    -----
    The product of the layers is diagonalized by the same DFT, with symbol
    ``H_L(xi) ... H_1(xi)``: ``O(n^d (L C^3))``, against ``O((C n^d)^3)`` for the product.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import composition_singular_values
    >>> rng = np.random.default_rng(0)
    >>> w1, w2 = rng.standard_normal((8, 3, 3, 3)), rng.standard_normal((5, 8, 3, 3))
    >>> composition_singular_values([w1, (w2, dict(dilation=2))], (3, 16, 16)).shape
    (768,)
    """
    symbols, _ = _chain(layers, input_shape, square=False)
    values = _frequency_singular_values(_product(symbols))
    return np.sort(values.ravel())[::-1]


def composition_eigenvalues(layers: Sequence, input_shape: Sequence[int]) -> np.ndarray:
    """Eigenvalues of a product of square circular stride-1 layers, sorted by modulus.

    Parameters
    ----------
    layers, input_shape
        As :func:`composition_singular_values`; every layer must map ``C`` channels to ``C``.

    Returns
    -------
    ndarray, complex, shape (C * prod(spatial),)
        The eigenvalues of ``A_L @ ... @ A_1``, sorted by decreasing modulus.

    Raises
    ------
    ValueError, TypeError
        As :func:`composition_singular_values`; a layer that does not map ``C`` channels to
        ``C``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import composition_eigenvalues
    >>> w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    >>> composition_eigenvalues([w, w], (2, 8, 8)).shape
    (128,)
    """
    symbols, _ = _chain(layers, input_shape, square=True)
    values = np.linalg.eigvals(_product(symbols)).ravel()
    return values[np.argsort(-np.abs(values), kind="stable")]
