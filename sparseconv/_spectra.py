"""Exact spectra of convolution layers: singular values and eigenvalues, of one layer or a
composition.

A periodic layer's spectrum is that of its symbol (:mod:`sparseconv._symbol`), one small matrix
per frequency; any other small layer gets a dense SVD of its explicit matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._geometry import ConvGeometry
from ._matrices import conv_matrix
from ._memory import check_memory
from ._symbol import (
    block_diagonal,
    conjugate_pairs,
    is_periodic,
    layer_geometry,
    per_frequency,
    require_periodic,
    smaller_gram,
    symbol_at,
)

__all__ = [
    "composition_eigenvalues",
    "composition_singular_values",
    "eigenvalues",
    "singular_values",
]

#: ``method="auto"`` computes a dense SVD only up to this many singular values.
DENSE_LIMIT = 4096
#: Frequencies whose Gram matrix is worse conditioned than this go to the SVD.
_GRAM_CONDITION = 1e10


def _frequency_singular_values(h: np.ndarray) -> np.ndarray:
    """Singular values of a stack of matrices ``(..., m, n)``, shape ``(..., min(m, n))``.

    Eigenvalues of the smaller Gram matrix are faster than an SVD and accurate to
    ``eps * sigma_max^2 / sigma`` per value; matrices conditioned worse than
    ``sqrt(_GRAM_CONDITION)`` are redone by SVD, accurate to ``eps * sigma_max``.
    """
    flat = h.reshape(-1, *h.shape[-2:])
    lam = np.linalg.eigvalsh(smaller_gram(flat))[:, ::-1]
    values = np.sqrt(np.clip(lam, 0, None))
    bad = lam[:, -1] < lam[:, 0] / _GRAM_CONDITION
    if bad.any():
        values[bad] = np.linalg.svd(flat[bad], compute_uv=False)
    return values.reshape(*h.shape[:-2], -1)


def _circular_singular_values(geom: ConvGeometry, weight: np.ndarray) -> np.ndarray:
    grid = [a.size // a.stride for a in geom.axes]
    if weight.dtype.kind == "c":
        frequencies, counts = np.indices(grid).reshape(len(grid), -1).T, 1
    else:  # one frequency of each pair {xi, -xi}
        frequencies, counts = conjugate_pairs(grid)
    values = per_frequency(geom, weight, frequencies, _frequency_singular_values)
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
    weight, geom = layer_geometry(weight, input_shape, stride, padding, dilation, groups,
                                  padding_mode)
    if method == "fft" or (method == "auto" and is_periodic(geom)):
        require_periodic(geom, "method='fft'")
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
        weight, geom = layer_geometry(weight, shape, kwargs.get("stride", 1), kwargs.get("padding"),
                              kwargs.get("dilation", 1), kwargs.get("groups", 1), "circular")
        if any(a.stride != 1 for a in geom.axes) or not is_periodic(geom):
            raise ValueError(f"layers[{i}] must be a periodic circular layer with stride 1")
        if square and geom.in_channels != geom.out_channels:
            raise ValueError(
                f"eigenvalues need a square map: layers[{i}] maps {geom.in_channels} to "
                f"{geom.out_channels} channels"
            )
        symbols.append(block_diagonal(symbol_at(geom, weight)))
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
