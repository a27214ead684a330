"""Figures for print: the house style, and drawing into a new figure saved to a file.

A journal prints a one-column figure 3.5 in wide and wants no text under 8 pt there, so the
style sets every font to 8 pt or more, and a figure the plot functions make themselves is 3.5 in
wide by default, saved at 300 dpi: the sizes in the file are the sizes in print. The format
(png, pdf, svg, ...) follows the file's suffix or ``format=``; the same figure gives the same
bytes, whenever it is saved (:func:`stable_save`). The style is applied only to figures made
here (``fname=`` or ``figsize=``); an ``ax`` of yours keeps your rcParams.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import inspect
import io
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["COLUMN_WIDTH", "FORMATS", "STYLE", "check_keywords", "check_output", "drawing",
           "save_figure", "stable_metadata", "stable_save"]

#: matplotlib rcParams of the figures sparseconv.plot makes (and of the gallery,
#: examples/gallery.mplstyle): nothing under 8 pt at a 3.5 in column.
STYLE: dict[Any, Any] = {  # keys: matplotlib rcParams names
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 9,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
    "lines.linewidth": 1.2, "legend.frameon": False, "figure.dpi": 100, "savefig.dpi": 300,
    "font.family": "DejaVu Sans", "svg.fonttype": "none", "pdf.fonttype": 42,
}
COLUMN_WIDTH = 3.5  # inches: one column of a two-column journal
FORMATS = ("png", "pdf", "svg")
_DEFAULT_FIGSIZE = (COLUMN_WIDTH, 3.0)


def _formats() -> list[str]:
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def _format_of(fname, format: str | None, formats: tuple[str, ...] | None) -> str:
    known = _formats() if formats is None else formats
    named = ", ".join(formats or FORMATS) + ("" if formats else " (or another format "
                                                                 "matplotlib writes)")
    if format is not None:
        if not isinstance(format, str) or format.lower() not in known:
            raise ValueError(f"format must be one of {named}, got {format!r}")
        return format.lower()
    suffix = os.path.splitext(os.fspath(fname))[1].lower().lstrip(".")
    if suffix not in known:
        raise ValueError(f"fname {os.fspath(fname)!r}: the suffix must be one of {named}, or "
                         "pass format=")
    return suffix


def check_output(fname, dpi, figsize, format, *, ax=None,
                 formats: tuple[str, ...] | None = None,
                 ) -> tuple[str | None, float | None, tuple[float, float] | None]:
    """The format, dpi and figsize checked before any drawing: ``(format, dpi, figsize)``.

    ``formats``: the formats allowed (by default every format matplotlib's savefig writes).
    """
    if fname is not None and not isinstance(fname, (str, os.PathLike)):
        raise TypeError(f"fname must be a path, got {type(fname).__name__}")
    if fname is not None and os.path.isdir(fname):  # (a new user's trial: its suffix blamed)
        raise IsADirectoryError(errno.EISDIR, "fname is a directory: give a file in it",
                                os.fspath(fname))
    if ax is not None:
        from matplotlib.axes import Axes as _Axes

        if not isinstance(ax, _Axes):  # else an AttributeError ('tuple' has no 'imshow')
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
        if getattr(ax, "name", "rectilinear") != "rectilinear":  # (a new user's trial: a
            # 2-D picture drawn into 3-D axes without a word)
            raise ValueError(f"ax must be a 2-D matplotlib Axes, got a {ax.name!r} one")
    fmt = None if fname is None else _format_of(fname, format, formats)
    if fname is None and format is not None:
        raise ValueError(f"format={format!r} needs fname= (the file to write)")
    if dpi is not None:
        if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(dpi) and 10 <= dpi <= 2400):
            raise ValueError(f"dpi must be a number in [10, 2400], got {dpi!r}")
        if fname is None:
            raise ValueError(f"dpi={dpi!r} needs fname= (the file to write)")
        dpi = float(dpi)
    if figsize is not None:
        try:
            width, height = (float(v) for v in figsize)
            ok = not any(isinstance(v, (bool, str)) for v in figsize)
        except (TypeError, ValueError):
            ok = False
        if not ok or not (0 < width <= 100 and 0 < height <= 100):
            raise ValueError(f"figsize must be (width, height) in inches, each in (0, 100], "
                             f"got {figsize!r}")
        if ax is not None:
            raise ValueError("figsize sizes a new figure: pass it without ax= (or size ax's "
                             "figure yourself)")
        figsize = (width, height)
    return fmt, dpi, figsize


def check_keywords(kwargs: dict[str, Any], function: str, method: str) -> None:
    """Refuse the keywords passed on to ``Axes.<method>`` (``"imshow"`` or ``"plot"``) that
    neither it nor its artist takes, by name, before a figure is made (matplotlib raised an
    ``AttributeError`` from the artist's ``set``, with the figure made: a review)."""
    if not kwargs:
        return
    from matplotlib.artist import ArtistInspector
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D

    artist = {"imshow": AxesImage, "plot": Line2D}[method]
    inspector = ArtistInspector(artist)
    known = set(inspector.get_setters()) | set().union(*inspector.aliasd.values())
    known |= set(inspect.signature(getattr(Axes, method)).parameters) - {
        "self", "args", "kwargs", "X"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r} "
                        f"(neither {function}'s own nor one of Axes.{method}'s, which takes "
                        f"matplotlib's {artist.__name__} properties)")


def save_figure(fig, fname, fmt: str, dpi: float | None) -> None:
    """Save without dates or versions in the file, so the same figure gives the same bytes."""
    stable_save(lambda target, form: fig.savefig(
        target, format=form, dpi=dpi if dpi is not None else STYLE["savefig.dpi"],
        metadata=stable_metadata(form)), fname, fmt)


def stable_metadata(fmt: str) -> dict[str, Any] | None:
    """File metadata without the date or the software version, where the format has them."""
    metadata: dict[str, dict[str, Any]] = {
        "png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
        "svg": {"Date": None, "Creator": None}, "svgz": {"Date": None, "Creator": None},
        "ps": {"Creator": "sparseconv"}, "eps": {"Creator": "sparseconv"}}
    return metadata.get(fmt)


def stable_save(save: Callable[[Any, str], Any], fname, fmt: str) -> None:
    """``save(target, format)`` such that the same figure gives the same bytes in every format.

    With :func:`stable_metadata`, and what metadata cannot say: an svg's ids are hashed with a
    fixed salt (matplotlib salts them with a random uuid when ``svg.hashsalt`` is unset); a
    PostScript file is written without its ``%%Title`` (matplotlib's is the file's name: the
    command line's temporary one) and ``%%CreationDate`` comments, which are optional; an
    svgz is gzipped with a zero time stamp (matplotlib's holds the time of writing). No
    environment variable is touched (a review: two saves in threads raced on one).
    """
    import matplotlib

    salt = matplotlib.rcParams["svg.hashsalt"] or "sparseconv"
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        if fmt not in ("svgz", "ps", "eps"):
            save(fname, fmt)
            return
        buffer = io.BytesIO()
        save(buffer, "svg" if fmt == "svgz" else fmt)
    data = buffer.getvalue()
    if fmt == "svgz":
        packed = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
            gz.write(data)
        data = packed.getvalue()
    else:  # (DSC comments of the header: one line each, before %%EndComments)
        head, sep, tail = data.partition(b"%%EndComments")
        head = re.sub(rb"^%%(Title|CreationDate):[^\n]*\n", b"", head, flags=re.MULTILINE)
        data = head + sep + tail
    with open(fname, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def drawing(ax, fname, dpi, figsize, format,
            default: tuple[float, float] | None = None) -> Iterator[Axes]:
    """The axes to draw on; on exit, the figure saved to ``fname`` when given.

    ``ax`` given: drawn there (its figure saved). Else a new figure in :data:`STYLE` when
    ``fname`` or ``figsize`` is given (without pyplot when there is a file to write; laid out
    "compressed", matplotlib's layout for axes of a fixed aspect; of size ``default``, or
    :data:`_DEFAULT_FIGSIZE`, where no ``figsize`` is given), else pyplot's current axes.
    """
    fmt, dpi, figsize = check_output(fname, dpi, figsize, format, ax=ax)
    with contextlib.ExitStack() as stack:
        made = None  # a figure of pyplot's made for this call: closed if the call fails
        if ax is None and fname is None and figsize is None:
            import matplotlib.pyplot as plt

            new = not plt.get_fignums()
            ax = plt.gca()
            made = plt.gcf() if new else None  # (a figure current before is the caller's)
        elif ax is None:
            import matplotlib

            stack.enter_context(matplotlib.rc_context(STYLE))
            if fname is None:
                import matplotlib.pyplot as plt

                made = plt.figure(figsize=figsize, layout="compressed")
                ax = made.add_subplot()
            else:
                from matplotlib.figure import Figure

                ax = Figure(figsize=figsize or default or _DEFAULT_FIGSIZE,
                            layout="compressed").add_subplot()
        try:
            yield ax
        except BaseException:  # (a review: a failing call left its pyplot figure open)
            if made is not None:
                plt.close(made)
            raise
        if fname is not None and fmt is not None:
            save_figure(ax.figure, fname, fmt, dpi)


def nice_step(count: int, most: int = 8) -> int:
    """The smallest step of 1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, ... that gives at
    most ``most`` ticks over ``count`` items (channel counts are often powers of two)."""
    steps = sorted({m * 10**e for e in range(13) for m in (1, 2, 5)} | {2**e for e in range(41)}
                   | {25 * 10**e for e in range(12)})
    return next(s for s in steps if math.ceil(count / s) <= most)


def round_outward(value: float, rounding: str, digits: int) -> str:
    """``value`` to ``digits`` significant digits, rounded outward (``decimal.ROUND_FLOOR``
    for a lower bound, ``ROUND_CEILING`` for an upper one) so a printed bound stays one.

    Examples
    --------
    >>> from decimal import ROUND_CEILING, ROUND_FLOOR
    >>> round_outward(0.7979027, ROUND_CEILING, 4), round_outward(0.7979027, ROUND_FLOOR, 4)
    ('0.7980', '0.7979')
    """
    from .._rounding import decimal_outward

    rounded = decimal_outward(value, rounding, digits)
    return "0" if rounded == 0 else f"{rounded:g}"


def interval_digits(lower: float, upper: float, least: int = 6, most: int = 10) -> int:
    """The significant digits that show the width of ``[lower, upper]``: its ends printed
    differ in their last two digits or so (at least ``least``, at most ``most``; a new user's
    trial read ``[1.88386, 1.88387]``, six digits, as the certificate of an interval 9e-11
    wide).

    Examples
    --------
    >>> interval_digits(1.883863904601696, 1.883863904687749), interval_digits(1.0, 2.0)
    (10, 6)
    """
    width = upper - lower
    if not upper > 0 or not width > 0:
        return most if upper > 0 else least
    return max(least, min(most, math.ceil(math.log10(upper / width)) + 1))


def check_flag(value, name: str) -> bool | None:
    """``None`` (automatic) or a bool."""
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True, False or None, got {value!r}")
    return None if value is None else bool(value)


def check_cmap(value, name: str = "cmap", *, optional: bool = False) -> None:
    """A colormap name matplotlib knows (or ``None`` where ``optional``); refused by name, as
    matplotlib's own ``KeyError`` would not say which argument it came from."""
    from matplotlib import colormaps

    if optional and value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be the name of a matplotlib colormap, got {value!r}")
    if value not in colormaps:
        raise ValueError(f"{name} must be the name of a matplotlib colormap (such as "
                         f"'viridis' or 'Blues'), got {value!r}")


def check_color(value, name: str = "color") -> None:
    """A color matplotlib takes, refused by name before anything is drawn (a new user's
    trial: ``color="notacolor"`` drew, and failed only when the figure was saved)."""
    from matplotlib.colors import is_color_like

    if not is_color_like(value):
        raise ValueError(f"{name} must be a matplotlib color (such as 'C0', 'black' or "
                         f"'#1f77b4'), got {value!r}")
