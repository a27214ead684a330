"""Animations of the convolution arithmetic (after vdumoulin's conv_arithmetic).

The frames are drawn from the geometry's own maps (:func:`sparseconv.plot.padded_index_map`):
the window of each output on the padded grid is the index map of the same layer applied to the
padded input, and the padded cells are colored by what :meth:`AxisGeometry.pad_index` says they
copy. matplotlib is imported inside the function.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from .._geometry import ConvGeometry
from .._memory import check_memory
from .._operators import ConvOperator, ConvTransposeOperator
from .._validation import as_bool, is_int
from ._figure import check_output, save_figure
from ._raster import layer_of, padded_index_map

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

# vdumoulin's palette: blue input, white zero padding, dark kernel window, green output
_INPUT, _COPY, _ZERO = "#9ecae1", "#deebf7", "white"
_WINDOW, _OUTPUT, _DONE, _CURRENT = "#2b5d8a", "#f2f2f2", "#a1d99b", "#238b45"
_CROPPED_DONE, _CROPPED_CURRENT = "#e0e0e0", "#969696"  # transposed: written, then cropped


def _as_2d(size: tuple[int, ...]) -> tuple[int, int]:
    return (1, size[0]) if len(size) == 1 else (size[0], size[1])


class _Grid:
    """A grid of unit cells at ``origin`` (its top-left), drawn as one PatchCollection."""

    def __init__(self, ax, shape, origin, base, dashed):
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        rows, cols = shape
        x0, top = origin
        cells = [Rectangle((x0 + c, top - r - 1), 1, 1) for r in range(rows) for c in range(cols)]
        self.base = list(base)
        self.collection = PatchCollection(
            cells, facecolors=self.base, edgecolors="0.3", linewidths=0.8,
            linestyles=["--" if d else "-" for d in dashed],
        )
        ax.add_collection(self.collection)

    def paint(self, colors: dict[int, str]) -> None:
        faces = list(self.base)
        for cell, color in colors.items():
            faces[cell] = color
        self.collection.set_facecolor(faces)


def _padded_colors(geom: ConvGeometry, source: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Base color of each padded cell, and which cells are padding (outside the input)."""
    inside = np.ones((), dtype=bool)
    for d, axis in enumerate(geom.axes):
        shape = [1] * geom.ndim
        shape[d] = -1
        lo = axis.pad[0]
        position = np.arange(axis.padded_size)
        inside = inside & ((position >= lo) & (position < lo + axis.size)).reshape(shape)
    inside = inside.ravel()
    colors = [_INPUT if i else (_COPY if s >= 0 else _ZERO) for i, s in zip(inside, source)]
    return colors, ~inside


def _title(geom: ConvGeometry, transposed: bool) -> str:
    """Two lines: the sizes, then the options (short enough for the narrowest animation)."""
    def fmt(values):
        return "x".join(map(str, values))

    parts = [f"kernel {fmt(geom.kernel_size)}"]
    if any(s != 1 for s in geom.stride):
        parts.append(f"stride {fmt(geom.stride)}")
    pads = sorted({p for pair in geom.padding for p in pair})
    if pads != [0]:
        parts.append(f"padding {pads[0] if len(pads) == 1 else geom.padding}")
    if any(d != 1 for d in geom.dilation):
        parts.append(f"dilation {fmt(geom.dilation)}")
    if geom.padding_mode != "zeros":
        parts.append(geom.padding_mode)
    if transposed:
        sizes = f"transposed: {fmt(geom.output_size)} -> {fmt(geom.input_size)}"
    else:
        sizes = f"{fmt(geom.input_size)} -> {fmt(geom.output_size)}"
    return sizes + "\n" + ", ".join(parts)


CELL = 0.45  # inches per grid cell
MIN_WIDTH = 600  # pixels: the narrowest GIF written, so a 10-pt title stays legible
_STILLS = ("png", "pdf", "svg")


def conv_animation(layer: ConvGeometry | ConvOperator | ConvTransposeOperator, *,
                   transposed: bool = False, fig: Figure | None = None,
                   interval: int = 600, fname: str | os.PathLike[str] | None = None,
                   dpi: float | None = None, figsize: tuple[float, float] | None = None,
                   format: str | None = None, fps: int = 2) -> FuncAnimation:
    """Animate a 1-D or 2-D layer's arithmetic: the kernel window moving over the input.

    Parameters
    ----------
    layer : ConvGeometry, ConvOperator or ConvTransposeOperator
        Channels are ignored: one input and one output plane are drawn.
    transposed : bool, optional
        Draw the transposed convolution of ``layer`` (a ConvTransposeOperator always is): each
        frame stamps the kernel of one input cell onto the output, whose cells outside the
        cropped padding are dashed.
    fig : matplotlib Figure, optional
        The figure to draw in (a pyplot figure, to show it), resized to ``figsize`` or to 0.45
        in per cell; a new ``matplotlib.figure.Figure`` by default (no pyplot state).
    interval : int, optional
        Milliseconds between frames (on screen).
    fname : str or path-like, optional
        Save there: a ``.gif`` (format ``"gif"``) holds every frame, at ``fps`` frames per
        second; a ``.png``, ``.pdf`` or ``.svg`` is the first frame as a still.
    dpi : float, optional
        Resolution of the file; by default 100, or more so that it is at least 600 pixels wide.
    figsize : (float, float), optional
        Size in inches of the figure.
    format : {"gif", "png", "pdf", "svg"}, optional
        Overrides ``fname``'s suffix.
    fps : int, optional
        Frames per second of a saved GIF.

    Returns
    -------
    matplotlib.animation.FuncAnimation
        One frame per output position (per input position when transposed), C order. Save it
        yourself with ``anim.save("conv.gif", writer=matplotlib.animation.PillowWriter(fps=2))``.

    Raises
    ------
    TypeError
        ``layer`` neither a ConvGeometry nor a sparseconv operator.
    ValueError
        A layer with more than 2 spatial dimensions; an unknown format, a ``dpi`` outside
        [10, 2400] or a bad ``figsize``; ``fps`` not positive.
    MatrixTooLargeError
        A GIF whose frames (kept in memory until the file is written: 4 bytes a pixel) would
        exceed the memory limit (:func:`sparseconv.set_memory_limit`).

    Notes
    -----
    Forward frame ``o`` darkens the cells of the padded input at ``window[o]`` and the output
    cells computed so far, where ``window, source = padded_index_map(geometry)``; padding cells
    are white (zeros) or pale (copies: circular, reflect, replicate). ``source[window]`` is the
    index map that builds the matrix, so the picture and the matrix cannot disagree.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from sparseconv import ConvGeometry
    >>> from sparseconv.plot import conv_animation
    >>> geom = ConvGeometry.from_weight((1, 1, 3, 3), (1, 5, 5), stride=2, padding=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     anim = conv_animation(geom, fname=os.path.join(tmp, "conv.gif"))
    ...     with Image.open(os.path.join(tmp, "conv.gif")) as gif:
    ...         frames, width = gif.n_frames, gif.width
    >>> frames, width >= 600                          # one frame per output: 3x3
    (9, True)
    """
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import FigureBase

    found = layer_of(layer)
    if found is None:
        raise TypeError(f"expected a ConvGeometry or an operator, got {type(layer).__name__}")
    fmt, dpi, figsize = check_output(fname, dpi, figsize, format, formats=("gif", *_STILLS))
    if not is_int(fps) or not 0 < fps <= 100:
        raise ValueError(f"fps must be an integer in [1, 100], got {fps!r}")
    transposed = as_bool(transposed, "transposed")  # (a hunt: these passed unchecked)
    if not is_int(interval) or isinstance(interval, bool) or interval < 1:
        raise ValueError(f"interval must be a positive integer (milliseconds a frame), got "
                         f"{interval!r}")
    if fig is not None and not isinstance(fig, FigureBase):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    geom, transposed = found[0], transposed or found[1]
    if geom.ndim > 2:
        raise ValueError(f"conv_animation draws 1-D and 2-D layers, got {geom.ndim}-D")
    size = _figure_size(geom, figsize)
    dpi = dpi or max(100.0, math.ceil(MIN_WIDTH / size[0]))
    if fname is not None and fmt == "gif":
        # PillowWriter keeps every frame until it writes the file (a new user's trial: a
        # 20x20 input took 3.5 GB and minutes, a 200x200 one ran until killed); sized before
        # the grids are drawn (a trial: their patches took 11 s before this refusal)
        frames = math.prod(geom.output_size)
        width, height = (math.ceil(v * dpi) for v in size)
        check_memory(4 * frames * width * height,
                     f"the GIF's {frames} frames of {width} x {height} pixels "
                     "(every frame is kept until the file is written; a smaller layer, dpi or "
                     "figsize, or a still .png, takes less)")
    window, source = padded_index_map(geom)
    fig, big, small_grid, is_pad = _draw_grids(geom, transposed, source, fig, size)

    def update(frame: int):
        if transposed:  # the input cell stamps its kernel; the output accumulates the stamps
            done = {cell: _CROPPED_DONE if is_pad[cell] else _DONE
                    for cell in window[:frame].ravel().tolist()}
            stamp = {cell: _CROPPED_CURRENT if is_pad[cell] else _CURRENT
                     for cell in window[frame].tolist()}
            big.paint({**done, **stamp})
            small_grid.paint({frame: _WINDOW})
        else:
            big.paint(dict.fromkeys(window[frame].tolist(), _WINDOW))
            small_grid.paint({**dict.fromkeys(range(frame), _DONE), frame: _CURRENT})
        return [big.collection, small_grid.collection]

    update(0)
    anim = FuncAnimation(fig, update, frames=window.shape[0], interval=interval, blit=False)
    if fname is not None and fmt is not None:
        if fmt == "gif":
            from matplotlib.animation import PillowWriter

            anim.save(os.fspath(fname), writer=PillowWriter(fps=fps), dpi=dpi)
            update(0)
        else:
            save_figure(fig, fname, fmt, dpi)
            # a still is this animation's output: matplotlib need not warn it was never drawn
            anim._draw_was_started = True  # type: ignore[attr-defined]
    return anim


_GAP, _LABEL, _TITLE = 1.5, 0.8, 0.45  # cells between the grids and under them; inches


def _figure_size(geom: ConvGeometry, figsize) -> tuple[float, float]:
    """Inches of the figure: ``figsize``, or ``CELL`` a cell of both grids, the labels and
    the title (known before anything is drawn)."""
    if figsize is not None:
        return tuple(figsize)
    padded = _as_2d(tuple(axis.padded_size for axis in geom.axes))
    small = _as_2d(geom.output_size)
    return (CELL * (padded[1] + small[1] + _GAP + 0.4),
            CELL * (max(padded[0], small[0]) + _LABEL + 0.4) + _TITLE)


def _draw_grids(geom, transposed, source, fig, size):
    """The figure (``size`` inches) with the padded grid (``big``) and the small one, and the
    padding cells."""
    from matplotlib.figure import Figure

    padded = _as_2d(tuple(axis.padded_size for axis in geom.axes))
    small = _as_2d(geom.output_size)
    rows, gap, label, title = max(padded[0], small[0]), _GAP, _LABEL, _TITLE
    if fig is None:
        fig = Figure(figsize=size)
    else:
        fig.set_size_inches(size)
    ax = fig.add_axes((0, 0, 1, 1 - title / fig.get_figheight()))
    ax.set_axis_off()
    colors, is_pad = _padded_colors(geom, source)
    if transposed:
        colors = [_ZERO if pad else _OUTPUT for pad in is_pad]
    big_origin = (gap + small[1], padded[0]) if transposed else (0, padded[0])
    small_origin = (0, (padded[0] + small[0]) / 2) if transposed else (
        padded[1] + gap, (padded[0] + small[0]) / 2)
    big = _Grid(ax, padded, big_origin, colors, is_pad & (source < 0))
    small_grid = _Grid(ax, small, small_origin, [_INPUT if transposed else _OUTPUT] *
                       (small[0] * small[1]), [False] * (small[0] * small[1]))
    padding = any(p for pair in geom.padding for p in pair)
    names = (("output (dashed: cropped)" if padding else "output", "input") if transposed
             else ("input (padded)" if padding else "input", "output"))
    for (x0, top), (r, c), name in ((big_origin, padded, names[0]),
                                    (small_origin, small, names[1])):
        ax.text(x0 + c / 2, top - r - 0.3, name, ha="center", va="top", fontsize=9)
    ax.set_xlim(-0.3, padded[1] + small[1] + gap + 0.3)
    ax.set_ylim(-label - 0.2, rows + 0.2)
    ax.set_aspect("equal")
    fig.suptitle(_title(geom, transposed), fontsize=10, y=1 - 0.04 / fig.get_figheight())
    return fig, big, small_grid, is_pad
