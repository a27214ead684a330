"""Pictures of convolution matrices: sparsity, spectra, receptive fields, animations.

matplotlib is imported inside the functions, so ``import sparseconv.plot`` stays light. Every
index drawn comes from the geometry core (see :mod:`sparseconv.plot._raster`); every function
takes ``ax=None`` (the current axes) and returns its artist, as matplotlib's own do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from .._geometry import ConvGeometry
from .._operators import ConvOperator, layer_of
from .._receptive_field import receptive_field_paths
from .._typing import ArrayLike
from ._animation import conv_animation
from ._raster import (
    MatrixLike,
    Raster,
    bin_edges,
    density_counts,
    padded_index_map,
    raster,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.typing import ColorType

__all__ = [
    "Raster",
    "bin_edges",
    "conv_animation",
    "density_counts",
    "frequency_heatmap",
    "padded_index_map",
    "raster",
    "receptive_field_heatmap",
    "save_raster",
    "spectrum",
    "spy",
]

_MAX_LINES = 40  # block grid levels with more lines than this would paint the picture over


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def _resolve_layer(A, geometry: ConvGeometry | None) -> tuple[ConvGeometry | None, bool]:
    """The layer drawn and whether ``A`` is its transpose, checked against ``A.shape``."""
    layer = layer_of(A)
    if layer is not None:
        return layer
    if geometry is None:
        return None, False
    shape = tuple(np.shape(A))
    if shape not in (geometry.shape, geometry.shape[::-1]):
        raise ValueError(f"geometry describes a {geometry.shape} matrix, but A.shape is {shape}")
    return geometry, shape != geometry.shape


def _block_sizes(geom, transposed, blocks) -> list[tuple[int, int]]:
    """Block sizes ``(rows, cols)`` of each grid level, coarsest first."""
    if blocks is None or blocks is False:
        return []
    if blocks is True or blocks == "auto":
        if geom is None:
            raise ValueError("blocks=True needs a layer: pass geometry= or a ConvOperator")
        levels = [(math.prod(geom.output_size[d:]), math.prod(geom.input_size[d:]))
                  for d in range(min(geom.ndim, 2))]  # channel blocks, then row blocks
        return [lvl[::-1] if transposed else lvl for lvl in levels]
    return [(int(r), int(c)) for r, c in blocks]


def _draw_blocks(ax, sizes, shape, pixels) -> None:
    """Grid lines between blocks, in entry coordinates (entry ``i`` is centered on ``i``).

    A level is drawn only where its lines are few and its blocks at least 3 pixels wide: a
    denser grid would hide the pattern it is meant to explain.
    """
    for level, (rows, cols) in enumerate(sizes):
        style = dict(colors="0.3" if level == 0 else "0.6", linewidths=0.8 if level == 0 else 0.4)
        for size, n, px, draw, span in ((rows, shape[0], pixels[0], ax.hlines, shape[1]),
                                        (cols, shape[1], pixels[1], ax.vlines, shape[0])):
            lines = np.arange(size, n, size)
            if len(lines) <= _MAX_LINES and size * px >= 3 * n:
                draw(lines - 0.5, -0.5, span - 0.5, **style)


def _label_axes(ax, geom, transposed) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if geom is None:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        return
    # rows are the drawn map's outputs: the layer's inputs when A is its transpose
    sides = [(geom.out_channels, geom.output_size), (geom.in_channels, geom.input_size)]
    if transposed:
        sides.reverse()
    for name, (channels, size), axis, set_label in zip(
            ("output", "input"), sides, (ax.yaxis, ax.xaxis), (ax.set_ylabel, ax.set_xlabel)):
        grid = "x".join(map(str, size))
        if channels == 1:
            set_label(f"{name} position (flattened {grid} grid)")
            continue
        step = math.ceil(channels / 16)
        starts = np.arange(0, channels, step)
        axis.set_ticks((starts + 0.5) * math.prod(size) - 0.5, [str(c) for c in starts])
        set_label(f"{name} channel (blocks of {grid} positions)")


def _values_image(A, max_bins: int) -> np.ndarray:
    """The matrix entries as an image, NaN where nothing is stored (one pixel per entry)."""
    if isinstance(A, ConvGeometry):
        raise ValueError("values=True needs the matrix or an operator, not a bare ConvGeometry")
    if layer_of(A) is not None:
        A = A.tosparse()
    A = sp.coo_array(A) if sp.issparse(A) else sp.coo_array(np.atleast_2d(np.asarray(A)))
    if max(A.shape) > max_bins:
        raise ValueError(f"values=True draws one pixel per entry: the {A.shape[0]} x "
                         f"{A.shape[1]} matrix exceeds max_bins={max_bins}")
    A.sum_duplicates()
    data = np.abs(A.data) if np.iscomplexobj(A.data) else A.data
    image = np.full(A.shape, np.nan)
    image[A.row, A.col] = data
    return image


def _image_style(image: np.ndarray, exact: bool, values: bool, color, cmap) -> dict:
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    if values:
        finite = image[np.isfinite(image)]
        top = float(np.abs(finite).max(initial=0)) or 1.0
        signed = finite.size and finite.min() < 0
        cmap = colormaps[cmap or ("RdBu_r" if signed else "viridis")].with_extremes(bad="white")
        return dict(cmap=cmap, vmin=-top if signed else 0.0, vmax=top)
    if exact:
        return dict(cmap=ListedColormap(["white", color]), vmin=0, vmax=1)
    # density: an empty bin is white, a bin holding a single entry already shows
    cmap = colormaps[cmap or "Blues"].with_extremes(under="white")
    return dict(cmap=cmap, vmin=0.5, vmax=max(1.0, float(image.max())))


def spy(A: MatrixLike, ax: Axes | None = None, *, geometry: ConvGeometry | None = None,
        blocks: bool | Literal["auto"] | Sequence[tuple[int, int]] | None = None,
        max_bins: int = 512, values: bool = False, color: ColorType = "C0",
        cmap: str | None = None, **kwargs: Any) -> AxesImage:
    """Draw the sparsity pattern of a matrix or a layer: exact when small, density when large.

    Parameters
    ----------
    A : scipy.sparse array or matrix, ndarray, ConvOperator, ConvTransposeOperator, ConvGeometry
        A layer given as an operator or geometry is drawn from its geometry: no matrix is
        formed, whatever its size (the pattern does not depend on the weights).
    ax : matplotlib Axes, optional
    geometry : ConvGeometry, optional
        The layer whose matrix (or its transpose) ``A`` is: labels the axes in channels and
        positions, aligns the bins with channel blocks and enables ``blocks=True``.
    blocks : bool, "auto", or sequence of (int, int), optional
        Grid lines: ``True`` draws channel blocks and, for 2-D layers, the row blocks of the
        doubly block Toeplitz structure; or explicit block sizes ``(rows, cols)``, coarsest
        first.
    max_bins : int
        An axis with at most ``max_bins`` indices is drawn one pixel per index; a longer one is
        binned into about ``max_bins`` pixels holding counts of stored entries.
    values : bool
        Color each stored entry by its value (needs an exact raster; complex: modulus).
    color : color
        Color of stored entries in the exact pattern.
    cmap : str, optional
        Colormap of values or counts.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.image.AxesImage
        Its array is the 0/1 pattern (exact), the binned counts (summing to the number of
        stored entries), or the values (masked where nothing is stored).

    Raises
    ------
    ValueError
        A ``geometry`` that does not describe ``A.shape``; ``blocks=True`` without a layer;
        ``values=True`` for a bare ConvGeometry or for a matrix longer than ``max_bins``;
        ``max_bins < 1``.
    TypeError
        A LinearOperator that is not a sparseconv layer (there is no matrix to draw).

    Notes
    -----
    Binning is :func:`raster`: one ``bincount`` over the stored entries, chunked, so a CSR
    matrix with 1e8 entries is binned in about a second; a layer is binned from its spatial
    pattern and channel connectivity alone (milliseconds). Bins differ in length by at most
    one index and are drawn with equal size.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from sparseconv import ConvGeometry, conv_matrix
    >>> from sparseconv.plot import spy
    >>> w = np.ones((4, 3, 3, 3))
    >>> A = conv_matrix(w, (3, 5, 5), padding=1)
    >>> geom = ConvGeometry.from_weight(w.shape, (3, 5, 5), padding=1)
    >>> image = spy(A, Figure().subplots(), geometry=geom, blocks=True)
    >>> bool((image.get_array() == (A.toarray() != 0)).all())
    True
    >>> big = ConvGeometry.from_weight((64, 64, 3, 3), (64, 56, 56), padding=1)
    >>> int(spy(big, Figure().subplots()).get_array().sum()) == big.nnz()
    True
    """
    ax = _axes(ax)
    geom, transposed = _resolve_layer(A, geometry)
    image, shape, style = _spy_image(A, geom, transposed, max_bins, values, color, cmap)
    # entry (i, j) centered on (j, i), as matplotlib's spy; a bin spans its entries
    style.update(extent=(-0.5, shape[1] - 0.5, shape[0] - 0.5, -0.5), interpolation="nearest",
                 aspect="equal")
    style.update(kwargs)
    artist = ax.imshow(image, **style)
    _draw_blocks(ax, _block_sizes(geom, transposed, blocks), shape, image.shape)
    _label_axes(ax, geom, transposed)
    return artist


def _spy_image(A, geom, transposed, max_bins, values, color, cmap):
    """The image spy draws, the matrix shape, and its colormap and limits."""
    if values:
        image = _values_image(A, max_bins)
        return image, image.shape, _image_style(image, True, True, color, cmap)
    channels = (1, 1)
    if geom is not None:
        channels = (geom.out_channels, geom.in_channels)[::-1 if transposed else 1]
    binned = raster(A, max_bins, channels=channels)
    style = _image_style(binned.counts, binned.exact, False, color, cmap)
    return binned.counts, binned.shape, style


def save_raster(fname: str | os.PathLike[str], A: MatrixLike, *,
                geometry: ConvGeometry | None = None, max_bins: int = 512,
                values: bool = False, color: ColorType = "black",
                cmap: str | None = None) -> None:
    """Write spy's image itself: one image pixel per entry (exact) or per bin (density).

    No axes, no resampling: pixel ``(i, j)`` is white exactly where the matrix (bin) stores
    nothing. Parameters are those of :func:`spy`; the format follows ``fname``'s extension.

    Parameters
    ----------
    fname : str or path-like
        The image file; its extension chooses the format (``.png``, ...).
    A, geometry, max_bins, values, color, cmap
        As for :func:`spy` (``color`` defaults to black).

    Returns
    -------
    None

    Raises
    ------
    ValueError, TypeError
        As :func:`spy`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import matplotlib.image
    >>> from sparseconv import conv_matrix
    >>> from sparseconv.plot import save_raster
    >>> A = conv_matrix(np.ones((1, 1, 3)), (1, 6), padding=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save_raster(os.path.join(tmp, "A.png"), A)
    ...     pixels = matplotlib.image.imread(os.path.join(tmp, "A.png"))
    >>> bool(((pixels[..., :3] < 1).any(axis=-1) == (A.toarray() != 0)).all())
    True
    """
    from matplotlib.image import imsave

    geom, transposed = _resolve_layer(A, geometry)
    image, _, style = _spy_image(A, geom, transposed, max_bins, values, color, cmap)
    imsave(fname, image, **style)


def spectrum(values: ArrayLike | Mapping[str, ArrayLike], ax: Axes | None = None, *,
             label: str | None = None, fraction: bool = False,
             **kwargs: Any) -> list[Line2D]:
    """Plot sorted singular values; a mapping ``{label: values}`` overlays several layers.

    Parameters
    ----------
    values : array_like or mapping of str to array_like
        Singular values (any order; drawn sorted, largest first).
    ax : matplotlib Axes, optional
    label : str, optional
        Legend entry of a single array.
    fraction : bool
        x axis as ``index / count``, to overlay layers with different numbers of values
        (stride 1 vs 2).
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    list of matplotlib.lines.Line2D
        One per series; its y data are the sorted values.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from sparseconv.plot import spectrum
    >>> lines = spectrum({"a": [1.0, 3.0, 2.0]}, Figure().subplots())
    >>> lines[0].get_ydata().tolist()
    [3.0, 2.0, 1.0]
    """
    ax = _axes(ax)
    series = values.items() if isinstance(values, Mapping) else [(label, values)]
    lines = []
    for name, s in series:
        s = np.sort(np.asarray(s, dtype=float).ravel())[::-1]
        x = (np.arange(s.size) + 0.5) / s.size if fraction else np.arange(s.size)
        lines += ax.plot(x, s, label=name, **kwargs)
    ax.set_xlabel("index / number of singular values" if fraction else "index")
    ax.set_ylabel("singular value")
    if any(name is not None for name, _ in series):
        ax.legend()
    return lines


def frequency_heatmap(values: ArrayLike, ax: Axes | None = None, *, cmap: str = "viridis",
                      **kwargs: Any) -> AxesImage:
    """Heatmap of a per-frequency quantity over the 2-D frequency grid, zero frequency centered.

    Parameters
    ----------
    values : array_like, shape (H, W) or (H, W, C_out, C_in)
        On numpy's FFT grid (``np.fft.fftfreq`` order): e.g. the largest singular value per
        frequency; a symbol ``(H, W, C_out, C_in)`` is reduced to its spectral norms.
    ax : matplotlib Axes, optional
    cmap : str
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.image.AxesImage
        Its array is ``np.fft.fftshift`` of the values; axes in cycles per pixel.

    Raises
    ------
    ValueError
        ``values`` of another shape than ``(H, W)`` or ``(H, W, C_out, C_in)``.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from sparseconv.plot import frequency_heatmap
    >>> gain = np.abs(np.fft.fft2(np.ones((2, 2)), s=(8, 8)))   # a box filter: low-pass
    >>> image = frequency_heatmap(gain, Figure().subplots())
    >>> float(image.get_array()[4, 4])                          # zero frequency, centered
    4.0
    """
    ax = _axes(ax)
    v = np.asarray(values)
    if v.ndim == 4:
        v = np.linalg.norm(v, ord=2, axis=(-2, -1))
    if v.ndim != 2:
        raise ValueError(f"values must have shape (H, W) or (H, W, C_out, C_in), got {v.shape}")
    fy, fx = (np.fft.fftshift(np.fft.fftfreq(n)) for n in v.shape)
    dy, dx = 1.0 / v.shape[0], 1.0 / v.shape[1]
    style = dict(cmap=cmap, origin="lower", interpolation="nearest",
                 extent=(fx[0] - dx / 2, fx[-1] + dx / 2, fy[0] - dy / 2, fy[-1] + dy / 2))
    style.update(kwargs)
    artist = ax.imshow(np.fft.fftshift(v), **style)
    ax.set_xlabel("horizontal frequency (cycles/pixel)")
    ax.set_ylabel("vertical frequency (cycles/pixel)")
    return artist


def receptive_field_heatmap(
    layers: ConvGeometry | ConvOperator | Sequence[ConvGeometry | ConvOperator],
    ax: Axes | None = None, *, position: Sequence[int] | None = None, cmap: str = "Purples",
    **kwargs: Any,
) -> AxesImage:
    """Draw the input pixels one output unit reads, through one layer or a stack of them.

    Parameters
    ----------
    layers : ConvGeometry, ConvOperator, or a sequence of them
        1-D or 2-D, applied first to last (see :func:`sparseconv.receptive_field_paths`).
    ax : matplotlib Axes, optional
    position : tuple of int, optional
        The output unit; the center of the last layer's output by default.
    cmap : str
        Colors the number of paths from each input pixel to the unit; unread pixels are white.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.image.AxesImage
        Its array is :func:`sparseconv.receptive_field_paths` (a row for a 1-D stack), zeros masked.

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.receptive_field_paths`; layers with more than 2 spatial dimensions.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from sparseconv import ConvGeometry
    >>> from sparseconv.plot import receptive_field_heatmap
    >>> g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 9, 9), padding=1)
    >>> image = receptive_field_heatmap([g, g, g], Figure().subplots())
    >>> int((image.get_array() > 0).sum())           # three 3x3 layers see 7x7 pixels
    49
    """
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    ax = _axes(ax)
    counts = receptive_field_paths(layers, position)
    if counts.ndim > 2:
        raise ValueError(f"receptive_field draws 1-D and 2-D layers, got {counts.ndim}-D")
    image = np.ma.masked_equal(np.atleast_2d(counts), 0)  # unread pixels: white
    style = dict(cmap=colormaps[cmap].with_extremes(bad="white"), vmin=0,
                 vmax=max(1, int(counts.max())), interpolation="nearest")
    style.update(kwargs)
    artist = ax.imshow(image, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if max(image.shape) <= 40:  # a pixel grid, where pixels are large enough to count
        ax.set_xticks(np.arange(image.shape[1] + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(image.shape[0] + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    ax.set_xlabel("input column")
    ax.set_ylabel("input row")
    return artist
