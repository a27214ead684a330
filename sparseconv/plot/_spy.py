"""Sparsity pictures: :func:`spy` (axes, block grid, colorbar) and :func:`save_raster` (pixels).

A large matrix is drawn as :func:`~sparseconv.plot.raster` counts in bins aligned to its channel
blocks, so every block of a layer is binned alike and looks alike. Where the image has more bins
(or entries) than the saved figure has pixels, matplotlib's antialiasing filter averages them
(nearest neighbour would pick every n-th one: diagonals aliased into moiré stripes, runs of an
exact pattern's entries left out); where it has at least three pixels an entry, each entry is
a crisp block of pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._files import raster_formats
from .._geometry import ConvGeometry
from .._memory import (
    USE_OPERATOR,
    USE_TRANSPOSE_OPERATOR,
    MatrixTooLargeError,
    check_memory,
    reworded,
)
from .._operators import layer_of
from .._validation import as_bool, int_tuple, positive_int
from ._figure import (
    check_cmap,
    check_color,
    check_flag,
    check_keywords,
    check_output,
    drawing,
    nice_step,
    stable_metadata,
    stable_save,
)
from ._raster import (
    MatrixLike,
    Raster,
    _zoom_range,
    bin_edges,
    largest_entries,
    raster,
    row_lengths,
    sparse_ready,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage
    from matplotlib.typing import ColorType

__all__ = ["save_raster", "spy"]

_MAX_LINES = 128  # grid lines per level and axis beyond which the grid would hide the pattern


#: Why a channels-last operator is drawn as a plain matrix.
_CHANNELS_LAST = ("A is a channels-last operator: its matrix is the geometry's with rows and "
                  "columns permuted, so it has no channel blocks to draw or label (pass "
                  "geometry= with a channels-first layer's matrix, or build it with "
                  "layout='channels_first')")


def _resolve_layer(A, geometry: ConvGeometry | None) -> tuple[ConvGeometry | None, bool]:
    """The layer drawn and whether ``A`` is its transpose, checked against ``A.shape``."""
    layer = layer_of(A)
    if layer is not None:
        return layer
    if geometry is None:
        return None, False
    if not isinstance(geometry, ConvGeometry):
        raise TypeError(f"geometry must be a ConvGeometry, got {type(geometry).__name__}")
    if getattr(A, "layout", "channels_first") != "channels_first":
        raise ValueError(_CHANNELS_LAST)
    shape = tuple(np.shape(A))
    if shape not in (geometry.shape, geometry.shape[::-1]):
        raise ValueError(f"geometry describes a {geometry.shape} matrix, but A.shape is {shape}")
    return geometry, shape != geometry.shape


def _channel_blocks_of(A, geom: ConvGeometry | None, blocks, zoom) -> None:
    """Refuse, by its layout, a channels-last operator asked for channel blocks (``blocks=True``
    or ``zoom=``; a new user's trial: told to pass a ConvOperator, which it was)."""
    asked = blocks is True or (isinstance(blocks, str) and blocks == "auto") or zoom is not None
    if asked and geom is None and getattr(A, "layout", "channels_first") != "channels_first":
        raise ValueError(("zoom=" if zoom is not None else "blocks=True") + " draws channel "
                         "blocks: " + _CHANNELS_LAST)


def _channels(geom, transposed) -> tuple[int, int]:
    if geom is None:
        return 1, 1
    channels = (geom.out_channels, geom.in_channels)
    return channels[::-1] if transposed else channels


def _block_sizes(geom, transposed, blocks) -> list[tuple[int, int]]:
    """Block sizes ``(rows, cols)`` of each grid level, coarsest first."""
    if blocks is None or blocks is False:
        return []
    if blocks is True or isinstance(blocks, str) and blocks == "auto":
        if geom is None:
            raise ValueError(f"blocks={blocks!r} needs a layer: pass geometry= or a "
                             "ConvOperator")
        levels = [(math.prod(geom.output_size[d:]), math.prod(geom.input_size[d:]))
                  for d in range(min(geom.ndim, 2))]  # channel blocks, then row blocks
        return [lvl[::-1] if transposed else lvl for lvl in levels]
    if isinstance(blocks, (str, bool)) or not isinstance(blocks, (Sequence, np.ndarray)):
        raise TypeError(f"blocks must be True, False, 'auto', None or a sequence of (rows, "
                        f"columns) block sizes, got {blocks!r}")
    sizes = []
    for i, pair in enumerate(blocks):  # (one int: square blocks, as stride=2 is (2, 2))
        rows, cols = int_tuple(pair, 2, f"blocks[{i}]", 1)
        sizes.append((rows, cols))
    return sizes


def _draw_blocks(ax, sizes, edges) -> None:
    """Grid lines between blocks, in entry coordinates (entry ``i`` is centered on ``i``).

    A level is drawn where each block spans at least two pixels of the image and its lines are
    not too many: a denser grid would hide the pattern it is meant to explain.
    """
    spans = [(int(e[0]), int(e[-1]), len(e) - 1) for e in edges]
    for level, (rows, cols) in enumerate(sizes):
        for size, (lo, hi, pixels), draw, (olo, ohi, _) in (
                (rows, spans[0], ax.hlines, spans[1]), (cols, spans[1], ax.vlines, spans[0])):
            lines = np.arange(lo - lo % size + size, hi, size)
            if 0 < len(lines) <= _MAX_LINES and size * pixels >= 2 * (hi - lo):
                few = len(lines) <= 16
                width = 0.8 if few else 0.5 if len(lines) <= 40 else 0.3
                # (a new user's trial: 63 lines of 0.5 grey read as a mesh over a 64-channel
                # layer's bands)
                shade = ("0.25" if few else "0.5" if len(lines) <= 40 else "0.75"
                         ) if level == 0 else "0.65"
                draw(lines - 0.5, olo - 0.5, ohi - 0.5, colors=shade,
                     linewidths=width if level == 0 else 0.6 * width, zorder=3)


def _label_axes(ax, geom, transposed, binned: Raster) -> None:
    from matplotlib.ticker import MaxNLocator

    # at most about 5 ticks: labels of 6-digit indices at 8 pt stay apart in a narrow panel
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    if geom is None:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        return
    # rows are the drawn map's outputs: the layer's inputs when A is its transpose
    sides = [(geom.out_channels, geom.output_size), (geom.in_channels, geom.input_size)]
    if transposed:
        sides.reverse()
    for name, (channels, size), edges, axis, set_label in zip(
            ("output", "input"), sides, (binned.row_edges, binned.col_edges),
            (ax.yaxis, ax.xaxis), (ax.set_ylabel, ax.set_xlabel)):
        grid = "x".join(map(str, size))
        if channels == 1:
            if len(size) > 1:  # ticks at the starts of image rows
                row = math.prod(size[1:])
                first, stop = -(-int(edges[0]) // row), -(-int(edges[-1]) // row)
                step = nice_step(stop - first, 6)
                starts = np.arange(first - first % step, stop, step)
                axis.set_ticks(starts[starts >= first] * row)
            set_label(f"{name} position ({grid} grid)")
            continue
        block = math.prod(size)
        first, stop = int(edges[0]) // block, int(edges[-1]) // block
        step = nice_step(stop - first)
        starts = np.arange(first - first % step, stop, step)
        starts = starts[starts >= first]
        axis.set_ticks((starts + 0.5) * block - 0.5, [str(c) for c in starts])
        # the rows' label on two lines: one was longer than a wide matrix's short axes, and
        # ran off the figure (a new user's trial)
        set_label(f"{name} channel{chr(10) if axis is ax.yaxis else ' '}"
                  f"(blocks of {grid} positions)")


def check_values_window(shape: tuple[int, int], channels: tuple[int, int], max_bins: int,
                        zoom) -> tuple[int, int]:
    """The shape of the ``zoom`` window of a matrix of ``shape`` (``channels`` blocks a side)
    that ``values=True`` draws; refused (:class:`~sparseconv.MatrixTooLargeError`) where its
    image, one pixel per entry up to ``max_bins`` a side, would not fit the memory limit,
    before any matrix is built (a new user's trial: the command line built a 200,704-row
    matrix for 5 s first)."""
    (r0, r1), (c0, c1) = _zoom_range(zoom, channels)
    rows = (r1 - r0) * (shape[0] // channels[0])
    cols = (c1 - c0) * (shape[1] // channels[1])
    pixels = min(rows, max_bins) * min(cols, max_bins)
    check_memory(40 * pixels, f"the {min(rows, max_bins)} x {min(cols, max_bins)} image of "
                 "values=True (its values and running maxima, 40 bytes a pixel)",
                 "max_bins= fewer bins, or zoom= fewer channel blocks")
    return rows, cols


def _values_image(A, max_bins: int, zoom, channels: tuple[int, int],
                  period: tuple[int, int]) -> Raster:
    """The matrix entries as an image, NaN where nothing is stored, of the channel blocks
    ``zoom`` selects (a new user's trial: the advice to draw a slice could not be followed
    from the command line): one pixel per entry up to ``max_bins`` a side, else per bin (as
    :func:`raster` bins) the entry of largest magnitude (a longer matrix was refused, and the
    command line's advice, a larger ``--max-bins``, drew entries smaller than a pixel that
    faded into white)."""
    if isinstance(A, ConvGeometry):
        raise ValueError("values=True needs the matrix or an operator, not a bare ConvGeometry")
    if isinstance(A, LinearOperator):  # (its image sized before its matrix is built)
        check_values_window(A.shape, channels, max_bins, zoom)
    A, first = _window_matrix(A, zoom, channels)
    rows, cols = check_values_window(A.shape, (1, 1), max_bins, None)
    (r0, r1), (c0, c1) = _zoom_range(zoom, channels)
    # (bin_edges: one bin per index on an axis of at most max_bins)
    row_edges = bin_edges(rows, max_bins, r1 - r0, period[0])
    col_edges = bin_edges(cols, max_bins, c1 - c0, period[1])
    image = largest_entries(A, row_edges, col_edges)
    return Raster(image, row_edges + first[0], col_edges + first[1])


#: What ``values=True`` advises where a matrix it draws is beyond the memory limit.
_FEWER = "zoom= fewer channel blocks, or values=False (the pattern, from the geometry alone)"


def _window_matrix(A, zoom, channels: tuple[int, int]) -> tuple[sp.csr_array, tuple[int, int]]:
    """The CSR matrix of the ``zoom`` window of ``A`` (the whole matrix without one), and the
    row and column of the whole matrix it starts at. A channels-first layer builds the
    window alone, from its geometry (a new user's trial: a 4 x 4 window of a 64-channel
    layer built the whole matrix, 1.4 GB, and beyond the memory limit was refused for it with
    the advice of a zoom); any other operator its whole ``tosparse()``."""
    (r0, r1), (c0, c1) = _zoom_range(zoom, channels)
    if isinstance(A, LinearOperator):
        shape = A.shape
    else:
        A = A if sp.issparse(A) else sp.csr_array(sparse_ready(np.asarray(A)))
        shape = A.shape
    block = (shape[0] // channels[0], shape[1] // channels[1])
    rows, cols = slice(r0 * block[0], r1 * block[0]), slice(c0 * block[1], c1 * block[1])
    if isinstance(A, LinearOperator):
        if not callable(getattr(A, "tosparse", None)):  # (a new user's trial: scipy's "does
            # not support dtype object", from np.asarray of the operator)
            raise TypeError(f"values=True needs the matrix of a {type(A).__name__}: pass "
                            "A.tosparse() or a sparseconv operator")
        try:
            if layer_of(A) is not None and zoom is not None and hasattr(A, "_explicit"):
                window = A._explicit("csr", adjoint=False, window=((r0, r1), (c0, c1)))
                return sp.csr_array(window), (rows.start, cols.start)
            A = A.tosparse()
        except MatrixTooLargeError as exc:  # (a new user's trial: told to "use the
            # matrix-free ConvOperator" it had passed)
            message = str(exc)
            for hint in (USE_OPERATOR, USE_TRANSPOSE_OPERATOR):
                message = message.replace(f"; {hint}, or raise", f"; {_FEWER}, or raise")
            raise reworded(exc, f"values=True draws the matrix's entries: {message}") from None
    A = sp.csr_array(A)
    return (A if zoom is None else A[rows, cols]), (rows.start, cols.start)


def _image_style(image: np.ndarray, exact: bool, values: bool, color, cmap) -> dict:
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    if values:
        finite = image[np.isfinite(image)]
        top = float(np.abs(finite).max(initial=0)) or 1.0
        signed = finite.size and finite.min() < 0
        # signed: coolwarm, grey at 0, so that a small stored entry is not drawn as white as
        # the entries not stored (a new user's trial: RdBu_r, white at 0, hid two of a 1-D
        # kernel's five diagonals)
        cmap = colormaps[cmap or ("coolwarm" if signed else "viridis")].with_extremes(
            bad="white")
        return dict(cmap=cmap, vmin=-top if signed else 0.0, vmax=top)
    if exact:
        return dict(cmap=ListedColormap(["white", color]), vmin=0, vmax=1)
    # density: an empty bin is white, a bin holding a single entry already shows: Blues from a
    # quarter up (a new user's trial: bins of 166 of 6,640 entries, 2.5% up Blues, drew as
    # white, and a 64-channel layer's three bands per block as one)
    cmap = (colormaps[cmap] if cmap else ListedColormap(
        colormaps["Blues"](np.linspace(0.25, 1.0, 256)), name="Blues")).with_extremes(
        under="white")
    return dict(cmap=cmap, vmin=0.5, vmax=max(1.0, float(image.max())))


def _spy_image(A, geom, transposed, max_bins, values, color, cmap, zoom):
    """The image spy draws, its raster (edges), and its colormap and limits."""
    check_cmap(cmap, optional=True)
    check_color(color)
    period = (1, 1) if geom is None else row_lengths(geom)[::-1 if transposed else 1]
    if values:
        edges = _values_image(A, max_bins, zoom, _channels(geom, transposed), period)
        return edges.counts, edges, _image_style(edges.counts, True, True, color, cmap)
    binned = raster(A, max_bins, channels=_channels(geom, transposed), period=period, zoom=zoom)
    style = _image_style(binned.counts, binned.exact, False, color, cmap)
    return binned.counts, binned, style


def _colorbar_label(binned: Raster, values: bool = False, modulus: bool = False) -> str:
    """The colorbar's label: what a pixel holds (``modulus``: of complex entries), and of how
    many entries where it is a bin (a range where bins differ: "14 x 15-16 entries")."""
    if values:
        what = "entry modulus" if modulus else "entry value"
        if binned.exact:
            return what
        what = "largest modulus" if modulus else "largest-magnitude entry"
    else:
        what = "nonzeros"
    sizes = [np.unique(np.diff(edges)) for edges in (binned.row_edges, binned.col_edges)]
    rows, cols = (f"{s[0]:,}" if len(s) == 1 else f"{s[0]:,}-{s[-1]:,}" for s in sizes)
    return f"{what} per bin ({rows} x {cols} entries)"


def spy(A: MatrixLike, ax: Axes | None = None, *, geometry: ConvGeometry | None = None,
        blocks: bool | Literal["auto"] | Sequence[tuple[int, int]] | None = None,
        max_bins: int = 512, values: bool = False, color: ColorType = "C0",
        cmap: str | None = None, zoom: tuple[tuple[int, int], tuple[int, int]] | None = None,
        colorbar: bool | None = None, fname: str | os.PathLike[str] | None = None,
        dpi: float | None = None, figsize: tuple[float, float] | None = None,
        format: str | None = None, **kwargs: Any) -> AxesImage:
    """Draw the sparsity pattern of a matrix or a layer: exact when small, density when large.

    Parameters
    ----------
    A : scipy.sparse array or matrix, ndarray, ConvOperator, ConvTransposeOperator, ConvGeometry
        A layer given as an operator or geometry is drawn from its geometry: no matrix is
        formed, whatever its size (the pattern does not depend on the weights).
    ax : matplotlib Axes, optional
        Where to draw; by default a new figure when ``fname`` or ``figsize`` is given, else
        pyplot's current axes.
    geometry : ConvGeometry, optional
        The layer whose matrix (or its transpose) ``A`` is, or whose shape and channels-first
        order ``A`` has (a product of layers, say): labels the axes in channels and
        positions, aligns the bins with channel blocks and enables ``blocks=True``. A
        channels-last operator is refused (its matrix has no channel blocks); a channels-last
        matrix cannot be told from its entries: it must not be given a geometry.
    blocks : bool, "auto", or sequence of (int, int), optional
        Grid lines: ``True`` (or ``"auto"``, the same) draws channel blocks and, for 2-D
        layers, the row blocks of the doubly block Toeplitz structure; or explicit block
        sizes ``(rows, cols)`` (an int: square blocks), coarsest first. A level is drawn
        where its blocks span at least two pixels of the image.
    max_bins : int, optional
        An axis with at most ``max_bins`` indices is drawn one pixel per index; a longer one is
        binned into at most about ``max_bins`` pixels holding counts of stored entries (or,
        with ``values=True``, the entry of largest magnitude), aligned to the channel blocks
        (:func:`bin_edges`).
    values : bool, optional
        Color each stored entry by its value, of the whole matrix or of the ``zoom`` window
        (complex: modulus): one pixel per entry, or beyond ``max_bins`` per bin the stored
        entry of largest magnitude, with its sign (:func:`largest_entries`; an average would
        fade the weights into the zeros around them). The matrix is formed: a layer's
        ``tosparse()``, sized against the memory limit.
    color : color, optional
        Color of stored entries in the exact pattern.
    cmap : str, optional
        Colormap of values or counts. By default ``"viridis"`` for values of one sign,
        ``"coolwarm"`` for signed values (grey at 0: a small stored entry is not as white as
        the entries not stored), and for counts ``"Blues"`` from a quarter of its range up
        (a bin of a single entry shows; an empty one is white).
    zoom : ((int, int), (int, int)), optional
        Draw only output (row) channel blocks ``range(*zoom[0])`` against input (column)
        channel blocks ``range(*zoom[1])``; axes keep the whole matrix's coordinates.
    colorbar : bool, optional
        Add a labelled colorbar (counts: "nonzeros per bin" with the bin size in entries;
        values: "entry value", or "largest-magnitude entry per bin" with its size). By
        default for densities and values, not for an exact 0/1 pattern.
    fname : str or path-like, optional
        Save the figure there; the format is ``format`` or the suffix (png, pdf, svg).
    dpi : float, optional
        Resolution of the saved file (300 by default for a figure made here).
    figsize : (float, float), optional
        Size in inches of a new figure (default 3.5 x 3.0: one journal column).
    format : {"png", "pdf", "svg"}, optional
        Overrides ``fname``'s suffix.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.image.AxesImage
        Its array is the 0/1 pattern (exact), the binned counts (summing to the number of
        stored entries), or the values (per entry or bin; NaN where nothing is stored); its
        ``colorbar`` attribute the colorbar, if one was drawn.

    Raises
    ------
    ValueError
        A ``geometry`` that does not describe ``A.shape``; ``blocks=True`` without a layer;
        ``values=True`` for a bare ConvGeometry; ``max_bins < 1``; a ``zoom`` outside the
        channel blocks; a ``color``
        or ``cmap`` matplotlib does not know; an unknown
        format, a ``dpi`` outside [10, 2400], a bad ``figsize`` or ``figsize`` with ``ax``.
    TypeError
        A LinearOperator that is not a sparseconv layer (there is no matrix to draw); a
        ``zoom`` that is not two pairs of integers.

    Notes
    -----
    Binning is :func:`raster`: one ``bincount`` over the stored entries, chunked, so a CSR
    matrix with 1e8 entries is binned in about a second; a layer is binned from its spatial
    pattern and channel connectivity alone, its gather map (a new user's trial, a 64-channel
    3x3 layer on one core: 0.06 s on 224 x 224, 3.4 s on 1024 x 1024, 15 s on 2048 x 2048;
    a gather map beyond the memory limit is refused, 14 GiB on 10^4 x 10^4).

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
    >>> image = spy(big, Figure().subplots(), max_bins=256, blocks=True)
    >>> int(image.get_array().sum()) == big.nnz(), image.colorbar.ax.get_ylabel()
    (True, 'nonzeros per bin (784 x 784 entries)')
    >>> corner = spy(big, Figure().subplots(), zoom=((0, 4), (0, 4)))  # 4x4 channel blocks
    >>> image = spy(A, Figure().subplots(), geometry=geom, values=True, max_bins=25)
    >>> image.get_array().shape, image.colorbar.ax.get_ylabel()    # 100 x 75 entries, pooled
    ((20, 15), 'largest-magnitude entry per bin (5 x 5 entries)')

    Saved for print, one column wide (the format from the suffix)::

        spy(big, fname="layer.pdf", max_bins=256, blocks=True)
    """
    max_bins = positive_int(max_bins, "max_bins")
    colorbar = check_flag(colorbar, "colorbar")
    values = as_bool(values, "values")  # (a hunt: values="no" drew the values)
    check_keywords(kwargs, "spy", "imshow")
    check_output(fname, dpi, figsize, format, ax=ax)
    geom, transposed = _resolve_layer(A, geometry)
    if len(np.shape(A)) == 2 and 0 in np.shape(A):  # (a new user's trial: drawn, with
        # matplotlib's warning of identical limits)
        raise ValueError(f"A has shape {tuple(np.shape(A))}: no entry to draw")
    _channel_blocks_of(A, geom, blocks, zoom)
    _zoom_range(zoom, _channels(geom, transposed))
    image, binned, style = _spy_image(A, geom, transposed, max_bins, values, color, cmap, zoom)
    rows, cols = binned.row_edges, binned.col_edges
    # entry (i, j) centered on (j, i), as matplotlib's spy; a bin spans its entries. Every
    # image is antialiased: matplotlib draws it nearest-neighbour where the file has at
    # least three pixels an entry (or exactly one or two), crisp, and averages entries where
    # it has fewer (nearest-neighbour there dropped whole runs of an exact pattern's entries,
    # a 500 x 500 diagonal at 100 dpi: a hunt)
    style.update(extent=(cols[0] - 0.5, cols[-1] - 0.5, rows[-1] - 0.5, rows[0] - 0.5),
                 aspect="equal", interpolation="antialiased")
    style.update(kwargs)
    with drawing(ax, fname, dpi, figsize, format) as ax:
        artist = ax.imshow(image, **style)
        _draw_blocks(ax, _block_sizes(geom, transposed, blocks), (rows, cols))
        _label_axes(ax, geom, transposed, binned)
        if colorbar or (colorbar is None and (values or not binned.exact)):
            wide = image.shape[1] >= 2 * image.shape[0]  # a colorbar beside it would tower
            dtype = getattr(A, "dtype", None)  # (an array or list: the image's, real)
            modulus = values and dtype is not None and np.dtype(dtype).kind == "c"
            _add_colorbar(ax, artist, _colorbar_label(binned, values, modulus),
                          integer=not values, location="bottom" if wide else "right")
    return artist


def _add_colorbar(ax, artist, label: str, *, integer: bool, location: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.figure.colorbar(artist, ax=ax, shrink=0.85, label=label, location=location,
                       ticks=MaxNLocator(nbins=5, integer=True) if integer else None)


def save_raster(fname: str | os.PathLike[str], A: MatrixLike, *,
                geometry: ConvGeometry | None = None, max_bins: int = 512,
                values: bool = False, color: ColorType = "black",
                cmap: str | None = None,
                zoom: tuple[tuple[int, int], tuple[int, int]] | None = None,
                dpi: float | None = None, format: str | None = None) -> None:
    """Write spy's image itself: one image pixel per entry (exact) or per bin (density).

    No axes, no resampling: pixel ``(i, j)`` is white exactly where the matrix (bin) stores
    nothing. Parameters are those of :func:`spy`.

    Parameters
    ----------
    fname : str or path-like
        The image file; its suffix (or ``format``) chooses the format: png, pdf or svg
        (or eps, ps, svgz, or a raster format Pillow saves: jpg, tiff, webp, ...).
    A, geometry, max_bins, values, color, cmap, zoom
        As for :func:`spy` (``color`` defaults to black).
    dpi : float, optional
        Pixels per inch: stored in a png's metadata; sets the printed size of a pdf or svg
        (one inch per ``dpi`` pixels). The pixels are the same at any ``dpi``.
    format : {"png", "pdf", "svg"}, optional
        Overrides ``fname``'s suffix.

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

    values = as_bool(values, "values")
    max_bins = positive_int(max_bins, "max_bins")
    fmt, dpi, _ = check_output(fname, dpi, None, format, formats=raster_formats())
    geom, transposed = _resolve_layer(A, geometry)
    _channel_blocks_of(A, geom, None, zoom)
    _zoom_range(zoom, _channels(geom, transposed))
    image, _, style = _spy_image(A, geom, transposed, max_bins, values, color, cmap, zoom)
    stable_save(lambda target, form: imsave(target, image, format=form, dpi=dpi or 100,
                                            metadata=stable_metadata(form), **style),
                fname, fmt or "png")
