"""Stand-in for :mod:`sparseconv.spectra` (issue 5) used by the figures and the command line.

The ONE place where sparseconv's figures and command line compute spectra
(:mod:`sparseconv.figures`, :mod:`sparseconv.cli` import this module and nothing else for
spectra). When ``sparseconv.spectra`` lands, re-export its ``symbol`` and ``singular_values``
here, build ``frequency_map`` from its ``symbol`` and ``spectral_norm`` /
``layer_singular_values`` from its ``spectral_norm(...).value`` and Lanczos method, and delete
the rest. The signatures already follow the announced ones.

Exact methods only:

* a stride-1 layer with circular padding of total ``dilation*(k-1)`` per axis is block
  circulant: its singular values are those of the ``C_out x C_in`` matrices of the FFT of the
  kernel zero-padded to the input size, one per frequency (:func:`symbol`);
* any other layer: ``numpy.linalg.svd`` of its dense matrix, for matrices up to
  ``DENSE_LIMIT`` on their smaller side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse.linalg as spla

from .geometry import ConvGeometry, _int_tuple, as_weight
from .matrices import conv_matrix

#: Largest min(rows, columns) of a matrix whose dense SVD we accept (about 2 s here).
DENSE_LIMIT = 2048


def _dense_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """The grouped weight as a full ``(C_out, C_in, *k)`` kernel, zero across groups."""
    c_out, per_group = weight.shape[:2]
    full = np.zeros((c_out, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    out_per_group = c_out // groups
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        full[rows, g * per_group:(g + 1) * per_group] = weight[rows]
    return full


def symbol(weight, input_size: Sequence[int], *, stride=1, dilation=1,
           groups: int = 1) -> np.ndarray:
    """Per-frequency ``C_out x C_in`` matrices of a circular stride-1 layer.

    Returns the FFT over the spatial axes of the (dilated, group-expanded) kernel zero-padded
    to ``input_size``, shape ``(*input_size, C_out, C_in)``. Up to a phase per frequency and
    complex conjugation (which change no singular value) it is the matrix the layer applies to
    each Fourier mode.
    """
    weight = as_weight(weight)
    ndim = weight.ndim - 2
    geom = ConvGeometry.from_weight(weight.shape, (weight.shape[1] * groups, *input_size),
                                    stride=stride, dilation=dilation, groups=groups)
    if any(s != 1 for s in geom.stride):
        raise ValueError(f"symbol needs stride 1, got stride={geom.stride}")
    kernel = _dense_weight(weight, groups)
    dilated = np.zeros(kernel.shape[:2] + tuple(d * (k - 1) + 1 for k, d in
                                                 zip(geom.kernel_size, geom.dilation)),
                       dtype=kernel.dtype)
    dilated[(Ellipsis, *(slice(None, None, d) for d in geom.dilation))] = kernel
    spectrum = np.fft.fftn(dilated, s=geom.input_size, axes=tuple(range(2, 2 + ndim)))
    return np.moveaxis(spectrum, (0, 1), (-2, -1))


def _circular_padding(kernel_size, dilation) -> tuple[tuple[int, int], ...]:
    totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
    return tuple((t // 2, t - t // 2) for t in totals)


def _layer(weight, input_shape, stride, padding, dilation, groups, padding_mode):
    weight = as_weight(weight)
    ndim = weight.ndim - 2
    if padding is None:
        padding = _circular_padding(weight.shape[2:], _int_tuple(dilation, ndim, "dilation", 1))
    geom = ConvGeometry.from_weight(weight.shape, input_shape, stride=stride, padding=padding,
                                    dilation=dilation, groups=groups, padding_mode=padding_mode)
    return weight, padding, geom


def _is_circulant(geom: ConvGeometry) -> bool:
    return (geom.padding_mode == "circular" and all(s == 1 for s in geom.stride)
            and geom.output_size == geom.input_size)


def singular_values(weight, input_shape: Sequence[int], *, stride=1, padding=None, dilation=1,
                    groups: int = 1, padding_mode: str = "circular",
                    method: str = "auto") -> np.ndarray:
    """All singular values of a layer, sorted descending (exact: symbol or dense SVD).

    ``padding=None`` pads ``dilation*(k-1)`` in total per axis (``"same"`` at stride 1).

    Raises
    ------
    ValueError
        For a bad layer, or a non-circulant layer too large for a dense SVD.
    """
    weight, padding, geom = _layer(weight, input_shape, stride, padding, dilation, groups,
                                   padding_mode)
    if _is_circulant(geom) and method in ("auto", "symbol"):
        s = np.linalg.svd(symbol(weight, geom.input_size, dilation=dilation, groups=groups),
                          compute_uv=False).ravel()
    else:
        if min(geom.shape) > DENSE_LIMIT:
            raise ValueError(
                f"exact singular values of this {geom.shape[0]} x {geom.shape[1]} layer need a "
                f"dense SVD, limited to matrices with at most {DENSE_LIMIT} rows or columns; use "
                "circular padding with stride 1, or a smaller input"
            )
        A = conv_matrix(weight, input_shape, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, padding_mode=padding_mode)
        s = np.linalg.svd(A.toarray(), compute_uv=False)
    return np.sort(s)[::-1]


def frequency_map(weight, input_size: Sequence[int], *, dilation=1, groups: int = 1) -> np.ndarray:
    """Largest singular value of the circular layer at each frequency, shape ``input_size``."""
    return np.linalg.norm(symbol(weight, input_size, dilation=dilation, groups=groups), ord=2,
                          axis=(-2, -1))


def layer_singular_values(weight, input_shape: Sequence[int], *, k: int = 32,
                          **layer) -> tuple[np.ndarray, str]:
    """All singular values when an exact method applies, else ARPACK's ``k`` largest.

    ``layer`` holds the keyword arguments of :func:`singular_values`. Returns the values
    (descending) and how they were computed.
    """
    weight, padding, geom = _layer(weight, input_shape, layer.get("stride", 1),
                                   layer.get("padding"), layer.get("dilation", 1),
                                   layer.get("groups", 1), layer.get("padding_mode", "circular"))
    layer = {**layer, "padding": padding}
    if _is_circulant(geom):
        return singular_values(weight, input_shape, **layer), "exact: per-frequency SVD"
    if min(geom.shape) <= DENSE_LIMIT:
        return singular_values(weight, input_shape, **layer), "exact: dense SVD"
    A = conv_matrix(weight, input_shape, **layer)
    k = min(k, min(A.shape) - 1)
    v0 = np.random.default_rng(0).standard_normal(min(A.shape))
    top = spla.svds(A, k=k, return_singular_vectors=False, v0=v0)
    return np.sort(top)[::-1], f"the {k} largest, ARPACK on the {A.shape[0]} x {A.shape[1]} matrix"


def spectral_norm(weight, input_shape: Sequence[int], **layer) -> tuple[float, str]:
    """The layer's largest singular value and how it was computed.

    Exact (symbol or dense SVD) when possible, otherwise ARPACK's largest singular value of the
    sparse matrix (``scipy.sparse.linalg.svds``, converged to its default tolerance).
    """
    values, how = layer_singular_values(weight, input_shape, k=1, **layer)
    return float(values[0]), how
