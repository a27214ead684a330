"""Charts of spectra and receptive fields: :func:`spectrum`, :func:`frequency_heatmap`,
:func:`receptive_field_heatmap`.

Each colorbar says what its color measures and in which unit; an interval that
:func:`sparseconv.spectral_norm` certifies is drawn with its ends rounded outward, so the
numbers printed on the figure still enclose the norm.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR
from typing import TYPE_CHECKING, Any

import numpy as np

from .._geometry import ConvGeometry
from .._operators import ConvOperator
from .._receptive_field import receptive_field_paths
from .._typing import ArrayLike
from .._validation import as_bool, is_int, one_of
from ._figure import (
    COLUMN_WIDTH,
    check_cmap,
    check_flag,
    check_keywords,
    check_output,
    drawing,
    interval_digits,
    nice_step,
    round_outward,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D

__all__ = ["frequency_heatmap", "receptive_field_heatmap", "spectrum"]


def _interval(interval, name: str = "interval") -> tuple[float, float] | None:
    if interval is None:
        return None
    pair = (interval.lower, interval.upper) if hasattr(interval, "upper") else interval
    try:
        lower, upper = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (lower, upper) or a SpectralNorm, got {interval!r}") \
            from None
    if not (math.isfinite(lower) and math.isfinite(upper) and 0 <= lower <= upper):
        raise ValueError(f"{name} must satisfy 0 <= lower <= upper (finite), got {interval!r}")
    return lower, upper


def spectrum(values: ArrayLike | Mapping[str, ArrayLike], ax: Axes | None = None, *,
             label: str | None = None, fraction: bool = False, interval: Any = None,
             every_size: Any = None, yscale: str = "linear",
             fname: str | os.PathLike[str] | None = None, dpi: float | None = None,
             figsize: tuple[float, float] | None = None, format: str | None = None,
             **kwargs: Any) -> list[Line2D]:
    """Plot sorted singular values; a mapping ``{label: values}`` overlays several layers.

    Parameters
    ----------
    values : array_like or mapping of str to array_like
        Singular values, 1-D (any order; drawn sorted, largest first); may be empty when
        ``interval`` is given, which is then drawn alone.
    ax : matplotlib Axes, optional
        Where to draw; by default a new figure when ``fname`` or ``figsize`` is given, else
        pyplot's current axes.
    label : str, optional
        Legend entry of a single array.
    fraction : bool, optional
        x axis as ``index / count``, to overlay layers with different numbers of values
        (stride 1 vs 2).
    interval : (float, float) or SpectralNorm, optional
        A certified interval ``[lower, upper]`` for the largest singular value (for instance
        :func:`sparseconv.spectral_norm`'s result): drawn as a band with an error bar at the
        first index, its ends printed rounded outward in the legend, to as many digits (6 to
        10) as show its width; given alone (no values), the band, labelled, with no index
        axis.
    every_size : (float, float) or SpectralNorm, optional
        A certified bound of the layer's norm at every input size (the norm on the infinite
        grid: :func:`sparseconv.toeplitz_norm`'s result): a dashed line at its upper end,
        labelled with it rounded up; how far the values at this size lie below the bound at
        any size.
    yscale : {"linear", "log"}, optional
        The value axis' scale (matplotlib's ``Axes.set_yscale``): ``"log"`` shows the decay of
        the small values, the condition number at a glance; zero values, which it cannot
        draw, are left out and the axis label says how many.
    fname, dpi, figsize, format
        Save to a file, as for :func:`spy`.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    list of matplotlib.lines.Line2D
        One per series; its y data are the sorted values.

    Raises
    ------
    ValueError, TypeError
        Values that are not a 1-D array of finite non-negative reals; an ``interval`` or
        ``every_size`` that is not ``0 <= lower <= upper`` (with ``yscale="log"``, ``0 <
        lower``, and for ``every_size`` ``0 < upper``); a ``yscale``
        other than ``"linear"`` or ``"log"``; the output options, as :func:`spy`.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from sparseconv.plot import spectrum
    >>> lines = spectrum({"a": [1.0, 3.0, 2.0]}, Figure().subplots())
    >>> lines[0].get_ydata().tolist()
    [3.0, 2.0, 1.0]
    >>> import numpy as np
    >>> from sparseconv import singular_values, spectral_norm
    >>> w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    >>> ax = Figure().subplots()
    >>> lines = spectrum(singular_values(w, (2, 8, 8), padding=1), ax,
    ...                  interval=spectral_norm(w, (2, 8, 8), padding=1))
    >>> ax.get_legend().get_texts()[-1].get_text().startswith("certified")
    True
    >>> from sparseconv import toeplitz_norm
    >>> ax = Figure().subplots()                        # the bound at every input size too
    >>> lines = spectrum(singular_values(w, (2, 8, 8), padding=1), ax,
    ...                  every_size=toeplitz_norm(w))
    >>> ax.texts[0].get_text().startswith("every input size")
    True
    >>> ax = Figure().subplots()
    >>> lines = spectrum([4.0, 1e-3, 0.0], ax, yscale="log")  # the zero left out, and said
    >>> print(ax.get_yscale(), ax.get_ylabel())
    log singular value $\\sigma_i$ (1 zero not drawn)
    """
    band = _interval(interval)
    every = _interval(every_size, "every_size")
    yscale = one_of(yscale, ("linear", "log"), "yscale")
    if yscale == "log" and band is not None and band[0] <= 0:
        raise ValueError(f"interval's lower end {band[0]!r} cannot be drawn on yscale='log'")
    if yscale == "log" and every is not None and every[1] <= 0:
        raise ValueError(f"every_size's upper end {every[1]!r} cannot be drawn on "
                         "yscale='log'")
    fraction = bool(check_flag(fraction, "fraction"))
    check_keywords(kwargs, "spectrum", "plot")
    series = list(values.items() if isinstance(values, Mapping) else [(label, values)])
    if not series and band is None:  # (a review: {} drew empty axes, as [] did not)
        raise ValueError("values must hold at least one series of singular values, got an "
                         "empty mapping (or an interval be given)")
    for name, s in series:  # (a hunt: [] raised an IndexError, None drew one NaN)
        given = np.asarray(s) if s is not None else None
        if given is None or given.dtype.kind not in "biuf":
            raise TypeError(f"values must be real numbers (singular values), got "
                            f"{s!r:.80}" + (f" for {name!r}" if name is not None else ""))
        if given.ndim > 1:  # (a new user's trial: a matrix's entries were drawn as its
            # singular values)
            raise ValueError(f"values must be a 1-D array of singular values, got shape "
                             f"{given.shape}" + (f" for {name!r}" if name is not None else "")
                             + ": pass np.linalg.svd(A, compute_uv=False) for a matrix, or "
                             "values.ravel() for per-frequency singular values")
        if not given.size and band is None:  # with an interval, the interval alone
            raise ValueError("values must hold at least one singular value" + (
                f" for {name!r}" if name is not None else "") + " (or an interval be given)")
        bad = ~(np.isfinite(given) & (given >= 0))  # (a new user's trial: -1 was drawn)
        if bad.any():
            raise ValueError(f"values must be finite and non-negative (singular values), got "
                             f"{given.ravel()[np.flatnonzero(bad.ravel())[0]]!r}"
                             + (f" for {name!r}" if name is not None else ""))
    lines = []
    zeros = 0
    with drawing(ax, fname, dpi, figsize, format) as ax:
        if yscale == "log":
            ax.set_yscale("log")
        for name, s in series:
            s = np.sort(np.asarray(s, dtype=float).ravel())[::-1]
            if not s.size:  # the interval alone
                continue
            x = (np.arange(s.size) + 0.5) / s.size if fraction else np.arange(s.size)
            if yscale == "log":  # (zeros, which a log axis cannot draw: masked, and counted)
                zeros += int(np.count_nonzero(s == 0))
                s = np.ma.masked_equal(s, 0.0)
            lines += ax.plot(x, s, label=name, **kwargs)
        if every is not None:  # (a new user's trial: printed by the command line, not drawn)
            # labelled on the line itself, at the right, where values decrease to: a legend
            # entry put the legend over the values or over the line (a second trial)
            ax.axhline(every[1], color="k", linestyle="--", linewidth=0.8)
            ax.annotate(f"every input size: ||A||$_2$ $\\leq$ "
                        f"{round_outward(every[1], ROUND_CEILING, interval_digits(*every))}",
                        xy=(1, every[1]), xycoords=ax.get_yaxis_transform(), xytext=(-3, 2),
                        textcoords="offset points", ha="right", va="bottom")
        if band is not None:
            lower, upper = band
            # on two lines: on one, it spanned a small axes, and the legend, which has no
            # frame, found no place off the curve (a new user's trial); as many digits as
            # show the width (interval_digits)
            digits = interval_digits(lower, upper)
            text = (f"certified ||A||$_2$ in\n[{round_outward(lower, ROUND_FLOOR, digits)}, "
                    f"{round_outward(upper, ROUND_CEILING, digits)}]")
            # opaque: 25% of mid-grey over white (PostScript has no transparency, and warned)
            if not lines:  # the interval alone (a trial: x ticks of -0.04..0.04 under an
                # unlabelled band, the legend on the error bar): the band, labelled, above
                # the legend, over no index
                ax.axhspan(lower, upper, color="0.875", linewidth=0, label=text)
                ax.set_ylim(*((lower / 1.1, upper * 1.1) if yscale == "log" else (
                    0, upper * 1.1 if upper > 0 else 1.0)))
                ax.set_xticks([])
                ax.set_ylabel("spectral norm $||A||_2$")
                _room_above(ax, every, yscale)
                _plain_log_ticks(ax, yscale)
                ax.legend(loc="lower center", bbox_to_anchor=_below(ax, every, yscale))
                return lines
            ax.axhspan(lower, upper, color="0.875", linewidth=0)
            x0 = float(np.asarray(lines[0].get_xdata())[0])
            ax.errorbar([x0], [(lower + upper) / 2], yerr=[[(upper - lower) / 2]] * 2,
                        fmt="none", ecolor="k", capsize=3, linewidth=0.8, label=text)
        ax.set_xlabel("index / number of singular values" if fraction
                      else "index i (largest first)")
        ax.set_ylabel("singular value $\\sigma_i$" + (
            f" ({zeros} zero{'s' if zeros > 1 else ''} not drawn)" if zeros else ""))
        _room_above(ax, every, yscale)
        _plain_log_ticks(ax, yscale)
        if band is not None or any(name is not None for name, _ in series):
            ax.legend(bbox_to_anchor=_below(ax, every, yscale))
    return lines


def _plain_log_ticks(ax, yscale: str) -> None:
    """On a log value axis spanning less than a decade, the ticks labelled as plain numbers
    (``2.45``): matplotlib labels them ``2.45 x 10^0`` there (a new user's trial)."""
    bottom, top = ax.get_ylim()
    if yscale != "log" or not 0 < bottom < top < 10 * bottom:
        return
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:.4g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _height(ax, value: float, yscale: str) -> float:
    """Where ``value`` lies on the value axis, as a fraction of its height (on its scale)."""
    scale = math.log if yscale == "log" else float
    bottom, top = (scale(v) for v in ax.get_ylim())
    return (scale(value) - bottom) / (top - bottom)


def _room_above(ax, every: tuple[float, float] | None, yscale: str) -> None:
    """The value axis extended so that the bound for every input size, and its label above
    it, lie within the axes: the line at most 85% of the way up."""
    if every is None or (height := _height(ax, every[1], yscale)) <= 0.85:
        return
    bottom, top = ax.get_ylim()  # the top moved so that the line's height becomes 0.85
    grow = height / 0.85
    ax.set_ylim(bottom, bottom * (top / bottom) ** grow if yscale == "log" else
                bottom + (top - bottom) * grow)


def _below(ax, every: tuple[float, float] | None, yscale: str):
    """Where the legend may go (axes coordinates): below the bound for every input size and
    its label (matplotlib's "best" avoids lines, not texts: it covered the label), or the
    whole axes."""
    return None if every is None else (0, 0, 1, _height(ax, every[1], yscale) - 0.02)


def frequency_heatmap(values: ArrayLike, ax: Axes | None = None, *, cmap: str = "viridis",
                      label: str = "largest singular value $\\sigma_{max}$",
                      colorbar: bool = True, fname: str | os.PathLike[str] | None = None,
                      dpi: float | None = None, figsize: tuple[float, float] | None = None,
                      format: str | None = None, **kwargs: Any) -> AxesImage:
    """Heatmap of a per-frequency quantity over the 2-D frequency grid, zero frequency centered.

    Parameters
    ----------
    values : array_like, shape (H, W) or (H, W, C_out, C_in)
        On numpy's FFT grid (``np.fft.fftfreq`` order): e.g. the largest singular value per
        frequency (:func:`sparseconv.frequency_map`); a symbol ``(H, W, C_out, C_in)`` is
        reduced to its spectral norms.
    ax : matplotlib Axes, optional
        As for :func:`spy`.
    cmap : str, optional
    label : str, optional
        The colorbar's label: what the color measures (the gain, a ratio of norms: unitless).
    colorbar : bool, optional
        Add the labelled colorbar.
    fname, dpi, figsize, format
        Save to a file, as for :func:`spy`.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.image.AxesImage
        Its array is ``np.fft.fftshift`` of the values. The axes are frequencies in cycles per
        sample, ``k / N`` for DFT index ``k`` of an axis of ``N`` samples, from -1/2 to 1/2.

    Raises
    ------
    ValueError
        ``values`` of another shape than ``(H, W)`` or ``(H, W, C_out, C_in)``, or not
        finite; the output options, as :func:`spy`.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from sparseconv.plot import frequency_heatmap
    >>> gain = np.abs(np.fft.fft2(np.ones((2, 2)), s=(8, 8)))   # a box filter: low-pass
    >>> image = frequency_heatmap(gain, Figure().subplots(), label="gain")
    >>> float(image.get_array()[4, 4])                          # zero frequency, centered
    4.0
    >>> image.colorbar.ax.get_ylabel()
    'gain'
    """
    if isinstance(ax, (tuple, list)):  # (a new user's trial: frequency_heatmap(weight,
        # shape) said only "ax must be a matplotlib Axes, got tuple")
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}: "
                        "frequency_heatmap draws values per frequency; for a layer's, pass "
                        "frequency_map(weight, input_size), input_size spatial")
    check_output(fname, dpi, figsize, format, ax=ax)
    check_cmap(cmap)
    check_keywords(kwargs, "frequency_heatmap", "imshow")
    colorbar = as_bool(colorbar, "colorbar")  # (a hunt: colorbar="no" drew one)
    v = np.asarray(values)
    if v.ndim == 4:
        v = np.linalg.norm(v, ord=2, axis=(-2, -1))
    if v.ndim != 2:
        raise ValueError(f"values must have shape (H, W) or (H, W, C_out, C_in), got {v.shape}")
    if v.dtype.kind not in "biuf":  # (a symbol is reduced to its norms above: real)
        raise TypeError(f"values must be real (a gain per frequency: abs() of a complex "
                        f"response, or frequency_map's values), got dtype {v.dtype}")
    if not v.size:
        raise ValueError(f"values must not be empty, got shape {v.shape}")
    if not np.isfinite(v).all():  # (a new user's trial: NaN drew a blank pixel, unsaid)
        raise ValueError(f"values must be finite, got {int(np.size(v) - np.isfinite(v).sum())}"
                         f" NaN or infinite value(s) of {v.size}")
    fy, fx = (np.fft.fftshift(np.fft.fftfreq(n)) for n in v.shape)
    dy, dx = 1.0 / v.shape[0], 1.0 / v.shape[1]
    style: dict[str, Any] = dict(cmap=cmap, origin="lower", interpolation="nearest",
                 extent=(fx[0] - dx / 2, fx[-1] + dx / 2, fy[0] - dy / 2, fy[-1] + dy / 2))
    style.update(kwargs)
    with drawing(ax, fname, dpi, figsize, format) as ax:
        artist = ax.imshow(np.fft.fftshift(v), **style)
        ax.set_xlabel("horizontal frequency (cycles/sample)")
        ax.set_ylabel("vertical frequency (cycles/sample)")
        ticks = dict(zip((-0.5, -0.25, 0.0, 0.25, 0.5), ("-1/2", "-1/4", "0", "1/4", "1/2")))
        for set_ticks, freqs, step in ((ax.set_xticks, fx, dx), (ax.set_yticks, fy, dy)):
            shown = [t for t in ticks if freqs[0] - step / 2 <= t <= freqs[-1] + step / 2]
            set_ticks(shown, [ticks[t] for t in shown])
        if colorbar:
            ax.figure.colorbar(artist, ax=ax, shrink=0.85, label=label)
    return artist


def receptive_field_heatmap(
    layers: ConvGeometry | ConvOperator | Sequence[ConvGeometry | ConvOperator],
    ax: Axes | None = None, *, position: Sequence[int] | None = None, cmap: str = "Purples",
    vmax: int | None = None, colorbar: bool | None = None,
    fname: str | os.PathLike[str] | None = None,
    dpi: float | None = None, figsize: tuple[float, float] | None = None,
    format: str | None = None, **kwargs: Any,
) -> AxesImage:
    """Draw the input pixels one output unit reads, through one layer or a stack of them.

    Parameters
    ----------
    layers : ConvGeometry, ConvOperator, or a sequence of them
        1-D or 2-D, applied first to last (see :func:`sparseconv.receptive_field_paths`).
    ax : matplotlib Axes, optional
        As for :func:`spy`.
    position : tuple of int, optional
        The output unit; the center of the last layer's output by default.
    cmap : str, optional
        Colors the number of paths from each input pixel to the unit, one color per count;
        unread pixels are white.
    vmax : int, optional
        The path count at the top of the color scale (default: the largest here); give
        panels that compare the same ``vmax`` to draw them on one scale.
    colorbar : bool, optional
        A colorbar of path counts, one color per count. By default only where some pixel has
        more than one path: a single layer reads each pixel once, and its picture needs none.
    fname, dpi, figsize, format
        Save to a file, as for :func:`spy`.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    matplotlib.image.AxesImage
        Its array is :func:`sparseconv.receptive_field_paths` (a row for a 1-D stack), zeros
        masked.

    Raises
    ------
    ValueError, TypeError
        As :func:`sparseconv.receptive_field_paths`; layers with more than 2 spatial
        dimensions; the output options, as :func:`spy`.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from sparseconv import ConvGeometry
    >>> from sparseconv.plot import receptive_field_heatmap
    >>> g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 9, 9), padding=1)
    >>> image = receptive_field_heatmap([g, g, g], Figure().subplots())
    >>> int((image.get_array() > 0).sum())           # three 3x3 layers see 7x7 pixels
    49
    >>> image.colorbar.ax.get_ylabel()
    'paths to the output unit'
    >>> receptive_field_heatmap(g, Figure().subplots()).colorbar is None   # one layer: 0/1
    True
    """
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colorbar = check_flag(colorbar, "colorbar")
    check_output(fname, dpi, figsize, format, ax=ax)
    check_cmap(cmap)
    check_keywords(kwargs, "receptive_field_heatmap", "imshow")
    counts = receptive_field_paths(layers, position)
    if counts.ndim > 2:
        raise ValueError(f"receptive_field draws 1-D and 2-D layers, got {counts.ndim}-D")
    image = np.ma.masked_equal(np.atleast_2d(counts), 0)  # unread pixels: white
    top = max(1, int(counts.max()))
    if vmax is not None:
        if not is_int(vmax) or vmax < top:
            raise ValueError(f"vmax must be an integer at least the largest path count {top}, "
                             f"got {vmax!r}")
        top = int(vmax)
    levels = min(top, 256)
    # one color per path count (counts above 256 share colors); one path is already dark
    shades = colormaps[cmap](np.linspace(0.35, 0.95, levels) if levels > 1 else [0.6])
    style: dict[str, Any] = dict(cmap=ListedColormap(shades).with_extremes(bad="white"),
                 norm=BoundaryNorm(np.linspace(0.5, top + 0.5, levels + 1), levels),
                 interpolation="nearest")
    style.update(kwargs)
    line = counts.ndim == 1  # one row: no row axis, the colorbar under it, a short figure
    # (a new user's trial: ten tick labels piled on the one row, a colorbar squeezed to its
    # height, 70% of the figure empty)
    with drawing(ax, fname, dpi, figsize, format,
                 default=(COLUMN_WIDTH, 1.4) if line else None) as ax:
        artist = ax.imshow(image, **style)
        _pixel_grid(ax, image.shape)
        if line:
            ax.set_yticks([])
            ax.set_yticks([], minor=True)
        else:
            ax.set_ylabel("input row")
        ax.set_xlabel("input position" if line else "input column")
        if colorbar or (colorbar is None and top > 1):
            bar = ax.figure.colorbar(artist, ax=ax, ticks=path_ticks(top),
                                     label="paths to the output unit",
                                     **(dict(location="bottom", aspect=40) if line else
                                        dict(shrink=0.85)))
            bar.minorticks_off()
    return artist


def path_ticks(top: int) -> list[int]:
    """Colorbar ticks for path counts 1..top: every count up to 10, else about 6 of them."""
    if top <= 10:
        return list(range(1, top + 1))
    step = nice_step(top, 6)
    return [1, *range(step, top + 1, step)]


def _pixel_grid(ax, shape) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if max(shape) <= 40:  # a pixel grid, where pixels are large enough to count
        ax.set_xticks(np.arange(shape[1] + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(shape[0] + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
