"""Exact spectra of convolution layers: singular values and eigenvalues, of one layer or a
composition.

Every function describes the layer :func:`sparseconv.conv_matrix` builds from the same
arguments, with its defaults (``padding=0``, ``padding_mode="zeros"``), as
:func:`sparseconv.spectral_norm` does. Two routes:

* **FFT**, exact and fast, for periodic layers (circular padding, ``n / stride`` outputs per
  axis: a total padding ``dilation*(k-1)``, as ``padding_mode="circular", padding="same"``, or
  ``padding=None`` at any stride, or down to ``stride - 1`` less): the
  spectrum is that of the symbol (:mod:`sparseconv._symbol`), one small matrix per frequency.
  Per frequency the singular values come from the eigenvalues of the smaller Gram matrix where
  that is as accurate as an SVD (condition at most ``_GRAM_CONDITION``), else from an SVD.
* **Dense**, an SVD or eigendecomposition of the explicit matrix (of the product, for a
  composition), for any other layer that :func:`dense_is_affordable` -- the one size rule of
  the package.

Weights are rescaled by a power of two before either route and the results scaled back
(:func:`sparseconv._symbol.unit_scale`), so spectra are exact multiples of each other for
weights of 1e-300 and 1e300.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np

from ._geometry import ConvGeometry, block_diagonal
from ._matrices import conv_matrix
from ._memory import check_memory, format_bytes, get_memory_limit, reworded
from ._symbol import (
    PERIODIC_HINT,
    conjugate_pairs,
    frequency_work_bytes,
    layer_geometry,
    not_periodic,
    one_frequency,
    per_frequency,
    scaled_back,
    smaller_gram,
    stored_count,
    symbol_at,
    tap_bytes,
    task_bytes,
    unit_scale,
)
from ._typing import (
    ArrayLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ProgressLike,
    ShapeLike,
    SpectralMethod,
)
from ._validation import check_executor, check_progress, is_sequence, one_of, spatial_size

__all__ = [
    "DENSE_FLOPS",
    "dense_is_affordable",
    "eigenvalues",
    "singular_values",
]

#: ``method="auto"`` decomposes a dense matrix of at most this many ``rows*cols*min(rows, cols)``
#: (about a second of LAPACK): a 1290 x 1290 matrix, or 512 x 8192.
DENSE_FLOPS = 2**31
#: A frequency's singular values come from the eigenvalues of its Gram matrix only where its
#: condition number ``sigma_max / sigma_min`` is at most this: the Gram route's error
#: ``eps * sigma_max^2 / sigma`` then stays within ``_GRAM_CONDITION * eps * sigma_max``, as
#: accurate as LAPACK's SVD (``O(eps * sigma_max)``).
_GRAM_CONDITION = 16.0
#: Frequencies whose symbols :func:`_product` forms at once take about this many bytes.
_PRODUCT_CHUNK = 8 * 2**20
#: The options a layer of a composition takes, with :func:`sparseconv.conv_matrix`'s meaning.
LAYER_OPTIONS = ("stride", "padding", "dilation", "groups", "padding_mode")
_METHODS = ("auto", "fft", "dense")


def dense_is_affordable(rows: int, cols: int) -> bool:
    """Whether a dense SVD or eigendecomposition of a ``rows x cols`` matrix is affordable.

    The package's one rule for ``method="auto"``: about ``rows * cols * min(rows, cols)`` flops,
    at most :data:`DENSE_FLOPS`, and three complex copies of the matrix within the memory
    limit (:func:`sparseconv.get_memory_limit`).

    Examples
    --------
    >>> from sparseconv._spectra import dense_is_affordable
    >>> dense_is_affordable(1024, 1024), dense_is_affordable(4096, 4096)
    (True, False)
    """
    limit = get_memory_limit()
    return (rows * cols * min(rows, cols) <= DENSE_FLOPS
            and (limit is None or 3 * 16 * rows * cols <= limit))


def _check_method(method) -> None:
    one_of(method, _METHODS, "method")


def _frequency_singular_values(h: np.ndarray) -> np.ndarray:
    """Singular values of a stack of matrices ``(..., m, n)``, shape ``(..., min(m, n))``.

    Eigenvalues of the smaller Gram matrix are faster than an SVD and accurate to
    ``eps * sigma_max^2 / sigma`` per value; matrices conditioned worse than
    ``_GRAM_CONDITION`` (measured from those eigenvalues) are redone by SVD, accurate to
    ``eps * sigma_max`` for every value.
    """
    flat = h.reshape(-1, *h.shape[-2:])
    lam = np.linalg.eigvalsh(smaller_gram(flat))[:, ::-1]
    values = np.sqrt(np.clip(lam, 0, None))
    bad = lam[:, -1] * _GRAM_CONDITION**2 < lam[:, 0]
    if bad.any():
        values[bad] = np.linalg.svd(flat[bad], compute_uv=False)
    return values.reshape(*h.shape[:-2], -1)


def _circular_singular_values(geom: ConvGeometry, weight: np.ndarray,
                              executor: Executor | None = None,
                              progress: ProgressLike | None = None) -> np.ndarray:
    grid = list(geom.coarse_grid)
    rows, cols = geom.out_channels // geom.groups, geom.in_channels // geom.groups
    count = math.prod(grid) * geom.groups * min(rows, cols * math.prod(geom.stride))
    # the values, their repeats and sort; the frequencies and the symbol's chunks in flight
    stored = stored_count(geom.coarse_grid, weight.dtype.kind != "c")
    check_memory(4 * 8 * count + frequency_work_bytes(geom, stored),
                 f"the {count} singular values")
    one = one_frequency(geom)  # a 1x1 kernel: every frequency's values are frequency 0's
    if one is not geom:
        values = per_frequency(one, weight, np.zeros((1, geom.ndim), dtype=np.int64),
                               _frequency_singular_values, executor, progress, "singular_values")
        return np.sort(np.repeat(values, math.prod(grid), axis=0).ravel())[::-1]
    if weight.dtype.kind == "c":
        frequencies, counts = np.indices(grid).reshape(len(grid), -1).T, 1
    else:  # one frequency of each pair {xi, -xi}
        frequencies, counts = conjugate_pairs(grid)
    values = per_frequency(geom, weight, frequencies, _frequency_singular_values, executor,
                           progress, "singular_values")
    return np.sort(np.repeat(values, counts, axis=0).ravel())[::-1]


class _Layer(NamedTuple):
    """A validated layer: its weight is ``weight * 2**exponent`` (:func:`unit_scale`)."""

    weight: np.ndarray
    exponent: int
    geom: ConvGeometry


def _layer(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros") -> _Layer:
    weight, geom = layer_geometry(weight, input_shape, stride, padding, dilation, groups,
                                  padding_mode)
    return _Layer(*unit_scale(weight), geom)


def _fft_obstacle(chain: list[_Layer], stride_one: bool) -> str | None:
    """Why the FFT does not apply to the chain and what would make it (phrased after
    "needs"), or None."""
    for i, layer in enumerate(chain):
        where = "" if len(chain) == 1 else f" in layers[{i}]"
        geom = layer.geom
        reason = not_periodic(geom)
        if any(a.size % a.stride for a in geom.axes):  # the sizes, whatever the padding
            return (f"every input size divisible by its stride, got input size "
                    f"{geom.input_size} and stride {geom.stride}{where}: no padding makes "
                    "that layer periodic")
        if reason:
            return f"{reason}{where}; for the periodic layer {PERIODIC_HINT}"
        if stride_one and any(s != 1 for s in geom.stride):
            return (f"stride 1, got stride {geom.stride}{where}: a strided layer's symbol is "
                    "not square, and its eigenvalues are not the symbol's")
    return None


def _dense(chain: list[_Layer], method: str, obstacle: str | None, what: str) -> np.ndarray:
    """The explicit matrix of the chain (the product, first layer applied first)."""
    rows, cols = math.prod(chain[-1].geom.output_shape), math.prod(chain[0].geom.input_shape)
    if method == "auto" and not dense_is_affordable(rows, cols):
        flops, dense, limit = rows * cols * min(rows, cols), 3 * 16 * rows * cols, \
            get_memory_limit()
        over = (f"about {flops:.2g} flops, over method='auto''s budget of {DENSE_FLOPS:.2g} "
                "(a second or so)" if flops > DENSE_FLOPS else
                f"{format_bytes(dense)}, over the memory limit")
        # (a new user's trial: a product was sent to spectral_norm, which takes one layer)
        largest = ("of this layer use sparseconv.spectral_norm" if len(chain) == 1 else
                   "of the product use scipy.sparse.linalg.svds on sparseconv.compose of the "
                   "layers' ConvOperators (its estimate; the product of the layers' "
                   "sparseconv.spectral_norm upper bounds bounds it)")
        # method='dense' offered only where the memory limit admits it (a new user's trial:
        # offered for a 131072 x 131072 matrix, 768 GiB), and said once
        anyway = ("" if flops <= DENSE_FLOPS else
                  "; method='dense' computes them all anyway (within the memory limit)"
                  if limit is None or dense <= limit else
                  f"; all of them (method='dense') would need {format_bytes(dense)}, over the "
                  "memory limit too")
        raise ValueError(
            f"{what}: the dense decomposition of the {rows} x {cols} matrix costs {over}, and "
            f"the FFT needs {obstacle}; for the largest singular value {largest}{anyway}"
        )
    check_memory(3 * 16 * rows * cols, f"a dense {rows} x {cols} decomposition")
    product = None
    for layer in chain:
        g = layer.geom
        A = conv_matrix(layer.weight, g.input_shape, stride=g.stride, padding=g.padding,
                        dilation=g.dilation, groups=g.groups, padding_mode=g.padding_mode,
                        dtype=np.result_type(layer.weight, np.float64))
        product = A if product is None else A @ product
    assert product is not None  # the chain holds at least one layer
    return product.toarray()


def _require_fft(method: str, obstacle: str | None) -> bool:
    """Whether to take the FFT route; ``method="fft"`` where it does not apply is an error."""
    if method == "fft" and obstacle:
        raise ValueError(f"method='fft' needs {obstacle} (method='dense' decomposes its "
                         "matrix)")
    return method == "fft" or (method == "auto" and obstacle is None)


def pointwise_reads(geom: ConvGeometry) -> list[np.ndarray]:
    """Per axis, how many outputs of a 1x1 kernel read each input position read at all (its
    one tap's gather map counted; a reflected or replicated pad is one more read): a
    position's reads are the product over axes. :func:`sparseconv.spectral_norm`'s closed
    form takes the most; :func:`singular_values`' takes them all. Counted over the positions
    read, not over the axis (a fuzz run: a stride of 2^40 over an input of 2^40, two
    outputs, allocated 8 TiB of counts)."""
    reads = []
    for axis in geom.axes:
        taps = axis.tap_index()[:, 0]
        reads.append(np.unique(taps[taps >= 0], return_counts=True)[1])
    return reads


def _pointwise_singular_values(geom: ConvGeometry, weight: np.ndarray) -> np.ndarray:
    """Every singular value of a layer with a 1x1 kernel (any stride, padding and mode), in
    closed form.

    Each output reads one input position or a zero pad: up to the order of rows and columns
    ``A = S (x) W``, ``S`` the spatial read map (one 1 at most per row) and ``W`` the weight
    matrix (block diagonal over the groups). ``S^T S`` is diagonal, holding the number of
    outputs that read each input (a copy per reflected or replicated pad), so the singular
    values are ``sigma_i(W) sqrt(c_j)`` over the inputs ``j`` read ``c_j > 0`` times, then
    zeros up to ``min(rows, cols)``. (A periodic 1x1 layer took 62 s by its 784 frequencies
    on 56x56 with 256 -> 512 channels; a zero-padded one over ``"auto"``'s dense budget was
    refused.)
    """
    rows, cols = geom.shape
    check_memory(4 * 8 * min(rows, cols), f"the {min(rows, cols)} singular values")
    reads = np.ones(1)
    for axis_reads in pointwise_reads(geom):
        reads = np.multiply.outer(reads, axis_reads).ravel()
    groups = geom.groups
    blocks = weight.reshape(groups, weight.shape[0] // groups, weight.shape[1])
    of_weight = np.linalg.svd(blocks, compute_uv=False).ravel()
    values = np.zeros(min(rows, cols))
    products = np.multiply.outer(np.sqrt(reads[reads > 0]), of_weight).ravel()
    values[:products.size] = np.sort(products)[::-1]
    return values


def _singular_values(chain: list[_Layer], method: str, what: str,
                     executor: Executor | None = None,
                     progress: ProgressLike | None = None) -> np.ndarray:
    layer = chain[0]
    if len(chain) == 1 and method == "auto" and all(k == 1 for k in layer.geom.kernel_size):
        return scaled_back(_pointwise_singular_values(layer.geom, layer.weight),
                           layer.exponent)
    obstacle = _fft_obstacle(chain, stride_one=len(chain) > 1)
    if not _require_fft(method, obstacle):
        values = np.linalg.svd(_dense(chain, method, obstacle, what), compute_uv=False)
    elif len(chain) == 1:
        values = _circular_singular_values(chain[0].geom, chain[0].weight, executor, progress)
    else:
        values = np.sort(_frequency_singular_values(_product(chain)).ravel())[::-1]
    return scaled_back(values, sum(layer.exponent for layer in chain))


def _block_eigenvalues(h: np.ndarray) -> np.ndarray:
    """Eigenvalues of each frequency's block-diagonal symbol, ``(F, groups, m, m)`` -> ``(F, n)``.

    A real symbol (a real kernel's at a frequency that is its own negative) is decomposed in
    real arithmetic: its complex eigenvalues come in exactly conjugate pairs, of exactly equal
    modulus, so their order does not hang on the last bits of the symbol (which the size of a
    chunk of frequencies may change).
    """
    blocks = block_diagonal(h)
    real = ~np.any(blocks.imag, axis=(-2, -1))
    if not real.any():
        return np.linalg.eigvals(blocks)
    out = np.empty(blocks.shape[:-1], dtype=np.complex128)
    out[real] = np.linalg.eigvals(blocks[real].real)
    if not real.all():
        out[~real] = np.linalg.eigvals(blocks[~real])
    return out


def _eigenvalues(chain: list[_Layer], method: str, what: str,
                 executor: Executor | None = None,
                 progress: ProgressLike | None = None) -> np.ndarray:
    first, last = chain[0].geom, chain[-1].geom
    if math.prod(first.input_shape) != math.prod(last.output_shape):
        raise ValueError(f"{what} need a square map, but the layer maps input_shape "
                         f"{first.input_shape} to output shape {last.output_shape}")
    obstacle = _fft_obstacle(chain, stride_one=True)
    if not _require_fft(method, obstacle):
        values = np.linalg.eigvals(_dense(chain, method, obstacle, what))
    elif len(chain) == 1:
        geom = chain[0].geom
        grid = list(geom.coarse_grid)
        count = math.prod(grid) * geom.out_channels  # the eigenvalues, their mirror and sort
        stored = stored_count(grid, chain[0].weight.dtype.kind != "c")
        check_memory(4 * 16 * count + frequency_work_bytes(geom, stored),
                     f"the {count} eigenvalues")  # (not the whole symbol: a review)
        if chain[0].weight.dtype.kind == "c":
            frequencies = np.indices(grid).reshape(len(grid), -1).T
            values = per_frequency(geom, chain[0].weight, frequencies, _block_eigenvalues,
                                   executor, progress, what).ravel()
        else:  # H(-xi) = conj H(xi): one of each pair, and the other's values exactly conj
            frequencies, counts = conjugate_pairs(grid)
            values = per_frequency(geom, chain[0].weight, frequencies, _block_eigenvalues,
                                   executor, progress, what)
            values = np.concatenate([values.ravel(), np.conj(values[counts == 2]).ravel()])
    else:
        values = np.linalg.eigvals(_product(chain)).ravel()
    values = scaled_back(values, sum(layer.exponent for layer in chain), "eigenvalue(s)")
    # complex on every route (numpy's eigvals returns real values where all are real: a new
    # user's trial found the dtype depending on the route)
    values = values.astype(np.complex128, copy=False)
    return values[np.argsort(-np.abs(values), kind="stable")]


def singular_values(
    weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
    padding: PaddingLike | None = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros", method: SpectralMethod = "auto",
    executor: Executor | None = None, progress: ProgressLike | None = None,
) -> np.ndarray:
    """All singular values, sorted descending, of the matrix :func:`conv_matrix` builds.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        Finite entries.
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride, padding, dilation, groups, padding_mode
        As :func:`sparseconv.conv_matrix`, with its defaults (``padding=0``,
        ``padding_mode="zeros"``). ``padding=None`` is sparseconv's shorthand for the periodic
        padding, total ``dilation*(k-1)`` per axis split as PyTorch's "same", at any stride.
    method : {"auto", "fft", "dense"}, optional
        ``"fft"``: exact, for periodic layers (``padding_mode="circular"`` with
        ``padding="same"``, or ``padding=None``; sizes divisible by the stride).
        ``"dense"``: SVD of the explicit matrix. ``"auto"``: a closed form for a 1x1 kernel (any
        stride, padding and mode: the weight matrix's singular values, each times the square
        root of the reads of each input position), else ``"fft"`` when it applies, else
        ``"dense"`` when the package-wide size rule allows it (flops and the memory limit).
    executor : concurrent.futures.Executor, optional
        Runs the FFT route's work, one task per chunk of frequencies carrying the kernel and
        the chunk (a ``ProcessPoolExecutor``, a ``dask.distributed`` client's
        ``get_executor()``, ``MPIPoolExecutor``...); default: threads on every core, one BLAS
        thread each. Results equal the serial ones; a failed task raises ``RuntimeError``
        naming its chunk of frequencies.
    progress : callable, optional
        ``progress(done, total)``, called as chunks of frequencies complete (FFT route).

    Returns
    -------
    ndarray, shape (min(rows, cols),)

    Raises
    ------
    ValueError
        Invalid arguments (the message names them), non-finite weights, ``"fft"`` requested
        for a layer that is not periodic, or, with ``"auto"``, a non-periodic layer too large
        for a dense SVD (the message says how to ask for the periodic layer; use
        :func:`sparseconv.spectral_norm` for the largest singular value).
    TypeError
        An argument of the wrong type.

    See Also
    --------
    symbol, spectral_norm, eigenvalues

    Notes
    -----
    FFT path: the symbol on the ``n/s`` grid, then per frequency the singular values of a
    ``C_out/g x C_in/g * s^d`` matrix, from the eigenvalues of its smaller Gram matrix where
    that matrix's condition is at most 16, else by SVD (every value to ``O(eps sigma_max)``):
    ``O(g * (n/s)^d * m^2 * M)`` with ``m <= M`` the block sizes, halved for real kernels
    (frequencies ``xi`` and ``-xi`` share their singular values). Dense path:
    ``O(rows * cols * min(rows, cols))`` time and ``rows * cols`` memory.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import singular_values
    >>> w = np.ones((1, 1, 3))
    >>> round(float(singular_values(w, (1, 16))[0]), 4)           # zero padding 0: dense
    2.9587
    >>> float(singular_values(w, (1, 16), padding="same", padding_mode="circular")[0])
    3.0
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> s = singular_values(w, (4, 16, 16), stride=2, padding=None, padding_mode="circular")
    >>> s.shape                                                   # exact, by FFT and polyphase
    (256,)
    >>> singular_values(w, (4, 6, 6), padding=1).shape            # dense
    (144,)
    >>> w = np.random.default_rng(0).standard_normal((512, 256, 1, 1))
    >>> s = singular_values(w, (256, 56, 56), stride=2)           # 1x1: closed form
    >>> s.shape, bool(np.isclose(s[0], np.linalg.norm(w[:, :, 0, 0], 2)))
    ((401408,), True)
    """
    _check_method(method)
    executor, progress = check_executor(executor), check_progress(progress)
    layer = _layer(weight, input_shape, stride=stride, padding=padding, dilation=dilation,
                   groups=groups, padding_mode=padding_mode)
    return _singular_values([layer], method, "singular_values", executor, progress)


def eigenvalues(weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
                padding: PaddingLike | None = 0, dilation: IntOrTuple = 1, groups: int = 1,
                padding_mode: PaddingMode = "zeros", method: SpectralMethod = "auto",
                executor: Executor | None = None,
                progress: ProgressLike | None = None) -> np.ndarray:
    """Eigenvalues of a square layer's matrix, sorted by decreasing modulus.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        Finite entries.
    input_shape : tuple of int
        ``(C_in, *spatial)``; the matrix must be square (as many outputs as inputs).
    stride, padding, dilation, groups, padding_mode
        As :func:`sparseconv.conv_matrix`, with its defaults; ``padding=None`` is the periodic
        padding. The split matters here: it shifts the output and multiplies each frequency's
        eigenvalues by a phase.
    method : {"auto", "fft", "dense"}, optional
        ``"fft"``: exact, for periodic stride-1 layers (``padding_mode="circular"`` with
        ``padding="same"`` or ``None``, or another split of the same total). ``"dense"``:
        eigenvalues of the explicit matrix. ``"auto"``: ``"fft"`` when it applies, else
        ``"dense"`` when the package-wide size rule allows it (flops and the memory limit).
    executor : concurrent.futures.Executor, optional
        Runs the FFT route's work, one task per chunk of frequencies carrying the kernel and
        the chunk (a ``ProcessPoolExecutor``, a ``dask.distributed`` client's
        ``get_executor()``, ``MPIPoolExecutor``...); default: threads on every core, one BLAS
        thread each. Results equal the serial ones; a failed task raises ``RuntimeError``
        naming its chunk of frequencies.
    progress : callable, optional
        ``progress(done, total)``, called as chunks of frequencies complete (FFT route).

    Returns
    -------
    ndarray, complex, shape (C * prod(spatial),)

    Raises
    ------
    ValueError
        A matrix that is not square, ``"fft"`` for a layer that is not periodic with stride 1,
        a non-periodic layer too large for ``"auto"``, invalid arguments or weights.
    TypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import eigenvalues, conv_matrix
    >>> w = np.random.default_rng(1).standard_normal((2, 2, 3))
    >>> lam = eigenvalues(w, (2, 10), padding="same", padding_mode="circular")   # FFT
    >>> A = conv_matrix(w, (2, 10), padding=1, padding_mode="circular").toarray()
    >>> dense = np.linalg.eigvals(A)
    >>> float(np.abs(lam[:, None] - dense[None, :]).min(axis=1).max()) < 1e-12
    True
    >>> eigenvalues(w, (2, 10), padding=1).shape                  # zero padding: dense
    (20,)
    """
    _check_method(method)
    executor, progress = check_executor(executor), check_progress(progress)
    layer = _layer(weight, input_shape, stride=stride, padding=padding, dilation=dilation,
                   groups=groups, padding_mode=padding_mode)
    return _eigenvalues([layer], method, "eigenvalues", executor, progress)


def _options(layer, i: int) -> tuple:
    """``(weight, options)`` of ``layers[i]``: a weight, or a ``(weight, dict)`` pair."""
    if isinstance(layer, Mapping):  # (a new user's trial: dicts met "a numeric array")
        raise TypeError(f"layers[{i}] must be a weight or a (weight, options) pair such as "
                        f"(w, dict(stride=2)), got a dict with keys {sorted(map(str, layer))}")
    if (isinstance(layer, list) and len(layer) == 2 and isinstance(layer[1], Mapping)):
        layer = tuple(layer)  # [w, options] as a pair (a new user's trial: "weight must be a
        # numeric array, got list" named neither the pair nor its form)
    if not isinstance(layer, tuple):
        return layer, {}
    if len(layer) != 2:
        raise TypeError(f"layers[{i}] must be a weight or a (weight, options) pair, got a "
                        f"tuple of {len(layer)}")
    weight, options = layer
    if not isinstance(options, Mapping):
        raise TypeError(f"layers[{i}] options must be a dict of some of {LAYER_OPTIONS}, got "
                        f"{options!r}")
    for key in options:
        if key not in LAYER_OPTIONS:
            raise TypeError(f"layers[{i}] options got an unexpected keyword {key!r}; "
                            f"expected some of {LAYER_OPTIONS}")
    return weight, dict(options)


def _chain(layers, input_shape) -> list[_Layer]:
    """The validated layers of a composition, each reading the previous one's output."""
    if isinstance(layers, np.ndarray) or not is_sequence(layers):
        raise TypeError(f"layers must be a list of weights or (weight, options) pairs, got "
                        f"{type(layers).__name__}")
    if not layers:
        raise ValueError("layers must hold at least one layer, got an empty sequence")
    shape, chain = spatial_size(input_shape, "input_shape"), []
    for i, entry in enumerate(layers):
        weight, options = _options(entry, i)
        try:
            chain.append(_layer(weight, shape, **options))
        except (TypeError, ValueError) as exc:
            reads = "input_shape" if i == 0 else f"the output {shape} of layers[{i - 1}]"
            raise reworded(exc, f"layers[{i}] (reading {reads}): {exc}") from None
        shape = chain[-1].geom.output_shape
    return chain


def _product(chain: list[_Layer]) -> np.ndarray:
    """The symbol of the product of periodic stride-1 layers, ``H_L(xi) ... H_1(xi)``, shape
    ``(F, C_out, C_in)`` over the grid's frequencies in C order.

    Computed a chunk of frequencies at a time: the phases of every tap at every frequency at
    once were a few GB for large kernels (a review: 3.7 GB for two 9x9x9 layers on 48^3).
    """
    geoms = [layer.geom for layer in chain]
    grid = list(geoms[0].coarse_grid)
    count, ndim = math.prod(grid), len(grid)
    rows, cols = geoms[-1].out_channels, geoms[0].in_channels
    # a frequency's symbols, their product and its copy; its phases; each call's placed taps
    per = 3 * 16 * max(g.out_channels * g.in_channels for g in geoms) + max(
        tap_bytes(g) for g in geoms)
    step = max(1, min(count, _PRODUCT_CHUNK // per))
    check_memory(16 * count * rows * cols + 8 * (ndim + 1) * count + step * per
                 + max(task_bytes(g) for g in geoms), "the symbols of a composition")
    frequencies = np.indices(grid).reshape(ndim, -1).T
    total = np.empty((count, rows, cols), dtype=np.complex128)
    for start in range(0, count, step):
        xi, product = frequencies[start:start + step], None
        for layer in chain:  # applied first to last
            h = block_diagonal(symbol_at(layer.geom, layer.weight, xi))
            product = h if product is None else h @ product
        total[start:start + step] = product
    return total
