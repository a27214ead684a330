"""What each command of the command line does with its layer: ``info``, ``spy``, ``spectrum``
and ``export`` (:mod:`sparseconv.cli` parses the options and builds the layer), and
``report`` on a saved PyTorch model."""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
import warnings
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN
from typing import Any

import numpy as np

from ._cli_layer import _TRAINING_NOTE, _Layer, _load_model, _model_kind, _model_run_failed, _reason
from ._files import atomic_path, image_path, output_path
from ._geometry import AxisGeometry
from ._memory import check_memory, format_bytes
from ._rounding import decimal_outward
from ._spectral_norm import applicable_method, lanczos_tol
from ._validation import worker_count


# ---------------------------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------------------------
def _axis_work_bytes(axis: AxisGeometry) -> int:
    """A bound on the memory of one axis' count and center reads: its segments and the center
    output's taps, a few int64 per tap, not per output or padded position (a new user's
    trial found a 10**9-long input refused for 260 GiB it never needed). Not a bound where a
    circular kernel wraps around its input several times, whose segments cost more (a
    review: 3.2 GB for a kernel of 2001 on 1250 inputs)."""
    return 80 * axis.kernel_size


def _center_reads(axis: AxisGeometry) -> np.ndarray:
    """The input positions the center output of ``axis`` reads (``receptive_field_paths``'s
    default position), sorted and distinct."""
    taps = axis.tap_index(np.array([axis.output_size // 2]))[0]
    return np.unique(taps[taps >= 0])


def _center_readers(axis: AxisGeometry) -> np.ndarray:
    """What a transposed layer's output near the center (its convolution's input) reads: the
    convolution's outputs that read that input, ``o`` with ``o s + t d - lo`` at it; of the
    ``stride`` outputs from the center on, the one that reads the most (a new user's trial:
    the center one alone read 1 position where its neighbours read 2)."""
    lo = axis.pad[0]
    found = []
    for p in range(axis.size // 2, min(axis.size, axis.size // 2 + axis.stride)):
        starts = p + lo - axis.dilation * np.arange(axis.kernel_size)
        o = starts[starts % axis.stride == 0] // axis.stride
        found.append(np.unique(o[(o >= 0) & (o < axis.output_size)]))
    return max(found, key=len)


def _receptive_field(layer: _Layer) -> str:
    g = layer.geometry
    # the gather map is separable: the field is the product of the axes' fields
    reads = [(_center_readers if layer.transposed else _center_reads)(axis) for axis in g.axes]
    if min(r.size for r in reads) == 0:
        return "empty (the center output reads only zero padding)"
    extent = [int(r[-1] - r[0]) + 1 for r in reads]  # bounding box
    per_channel = math.prod(r.size for r in reads)
    channels = (g.out_channels if layer.transposed else g.in_channels) // g.groups
    who = "the outputs at the center read up to" if layer.transposed and max(
        a.stride for a in g.axes) > 1 else "the center output reads"  # (the most, of a period)
    return (f"{'x'.join(map(str, extent))} ({who} {per_channel} "
            f"position{'s' if per_channel != 1 else ''} "
            f"x {channels} channel(s) = {per_channel * channels} inputs)")


def _info(layer: _Layer, args) -> None:
    g = layer.geometry
    rows, cols = g.shape[::-1] if layer.transposed else g.shape
    # shapes are O(1); counting walks each axis once, never the product of the axes
    check_memory(sum(_axis_work_bytes(axis) for axis in g.axes),
                 "counting the nonzeros and the receptive field of this layer")
    nnz = g.nnz()
    item = np.dtype(args.dtype).itemsize
    # scipy's rule (get_index_dtype), without its int64 conversion, which overflows on a
    # layer whose counts exceed int64: such a matrix cannot exist, but its sizes can be told
    index = 4 if max(nnz, *g.shape) <= np.iinfo(np.int32).max else 8
    memory = {"csr": nnz * (item + index) + (rows + 1) * index,
              "csc": nnz * (item + index) + (cols + 1) * index,
              "coo": nnz * (item + 2 * index), "dense": rows * cols * item,
              "operator (weights)": math.prod(g.weight_shape) * item}
    input_shape, output_shape = layer.shapes
    lines = {
        "layer": layer.describe(),
        "input shape": input_shape,
        "output shape": output_shape,
        "matrix": f"{rows} x {cols}, nnz {nnz} (density {_percent(nnz / (rows * cols))})",
        "memory": ", ".join(f"{k} {format_bytes(v)}" for k, v in memory.items()) + (
            # (a new user's trial: sizes of EiB told as if such a matrix could be built)
            " (beyond int64 indices: no scipy.sparse matrix can hold it)"
            if max(nnz, rows, cols) > np.iinfo(np.int64).max else ""),
        "receptive field": _receptive_field(layer),
    }
    for key, value in lines.items():
        print(f"{key:<16} {value}")


def _output(args) -> str:
    """The file the command will write, checked before any work (see :mod:`._files`)."""
    if args.command == "export":
        return output_path(args.output, ".npz")
    return image_path(args.output, raw=args.command == "spy" and args.raw)


def _figure(args, default: tuple[float, float]):
    """A new figure in the print style (:mod:`sparseconv.plot._figure`), sized by --figsize."""
    from matplotlib.figure import Figure

    return Figure(figsize=args.figsize or default, layout="compressed")


def _title(text: str, fig) -> str:
    """``text`` wrapped to the figure's width at 8 pt, between its comma-separated items."""
    width = max(30, int(fig.get_figwidth() * 15))
    lines = [""]  # broken after a comma only (a new user's trial: "padding\n1x1")
    for item in text.split(", "):
        if lines[-1] and len(lines[-1]) + 2 + len(item) > width:
            lines[-1] += ","
            lines.append(item)
        else:
            lines[-1] += (", " if lines[-1] else "") + item
    return "\n".join(lines)


def _spy(layer: _Layer, args) -> None:
    import matplotlib

    from . import plot
    from .plot._figure import COLUMN_WIDTH, STYLE

    A: Any = layer.geometry
    if args.values:  # its image sized before the matrix is built (a new user's trial: 5 s)
        from .plot._spy import _channels, check_values_window

        rows, cols = A.shape
        window = check_values_window((cols, rows) if layer.transposed else (rows, cols),
                                     _channels(A, layer.transposed), args.max_bins, args.zoom)
        pixels = int((args.figsize or (COLUMN_WIDTH,))[0] * (args.dpi or 300) * 0.75)
        # (a new user's trial: 6,272 entries a side, one pixel each, in about 620 pixels drew
        # a white square; beyond --max-bins they are pooled, each bin its largest entry)
        if pixels < max(window) <= args.max_bins and not args.raw:
            print(f"spy: {window[0]} x {window[1]} entries in a picture about {pixels} pixels "
                  "wide: an entry smaller than a pixel fades into the white around it "
                  "(--zoom fewer channel blocks, or --raw: one pixel per entry)",
                  file=sys.stderr)
    # the pattern is drawn from the geometry, no matrix formed; --values builds the matrix, or
    # the --zoom window's alone (a new user's trial: a 4 x 4 window of a 64-channel layer
    # built the whole, 1.4 GB)
    if layer.transposed:
        from ._operators import ConvTransposeOperator

        inputs, kwargs = layer.shapes[0], layer.transposed_kwargs()
        A = ConvTransposeOperator(layer.matrix_weight, inputs, **kwargs)
    elif args.values:
        from ._operators import ConvOperator

        A = ConvOperator(layer.matrix_weight, layer.input_shape, **layer.kwargs)
    if args.raw:
        with atomic_path(args.output) as path:
            plot.save_raster(path, A, geometry=layer.geometry, max_bins=args.max_bins,
                             values=args.values, zoom=args.zoom, dpi=args.dpi,
                             format=_format_of(args.output))
    else:
        with matplotlib.rc_context(STYLE):
            fig = _figure(args, (COLUMN_WIDTH, COLUMN_WIDTH))
            ax = fig.subplots()
            plot.spy(A, ax, geometry=layer.geometry, blocks=True, max_bins=args.max_bins,
                     values=args.values, zoom=args.zoom)
            # (a new user's trial: a zoomed picture's title told the whole layer alone)
            zoomed = "" if args.zoom is None else (
                f", zoom: output channels {args.zoom[0][0]}..{args.zoom[0][1] - 1} x input "
                f"channels {args.zoom[1][0]}..{args.zoom[1][1] - 1}")
            ax.set_title(_title(layer.describe() + zoomed, fig))
            _savefig(fig, args.output, args.dpi)
    print(f"wrote {args.output}")


def _format_of(output: str) -> str:
    """The format of an output file's name, as :func:`sparseconv._files.image_path` read it:
    its suffix, or PNG for a name without one (``.png`` itself; ``.pdf`` became ``.pdf.png``,
    as matplotlib names it)."""
    return os.path.splitext(os.path.basename(output))[1][1:].lower() or "png"


def _savefig(fig, output: str, dpi: float | None = None) -> None:
    from .plot._figure import save_figure

    try:
        # the format of the name asked for, not of the temporary file (a new user's trial:
        # "-o .png" got "Format '0hwijnqc' is not supported")
        format = _format_of(output)
        with atomic_path(output) as path:
            save_figure(fig, path, format, dpi)
    except RuntimeError as exc:  # a backend's missing tool: pgf without LaTeX
        raise ValueError(f"cannot write {output}: {exc}") from exc


def _percent(fraction: float) -> str:
    """A fraction as a percentage with three significant digits (a new user's trial: a large
    layer's density printed as 0.000%)."""
    return f"{100 * fraction:.3g}%"


def _digits(value: float, digits: int = 10) -> str:
    """``value`` to ``digits`` significant digits, rounded to nearest, in the notation of the
    interval beside it (:func:`_outward`; a new user's trial: 1.8173408 beside an interval of
    ten digits)."""
    return _outward(value, ROUND_HALF_EVEN, digits)


def _outward(value: float, rounding: str, digits: int = 10) -> str:
    """``value`` to ``digits`` significant digits, rounded outward so an interval stays valid."""
    rounded = decimal_outward(value, rounding, digits)
    return "0" if rounded == 0 else str(rounded)


def _top_singular_values(layer: _Layer, k: int = 32, estimate: bool = True,
                         bar: Any = lambda: (None, lambda: None)) -> tuple[np.ndarray, str]:
    """All singular values where an exact method applies, else ARPACK's ``k`` largest, or
    none if not ``estimate``; ``bar()``, a progress bar (:func:`_stage_bar`) the ARPACK run
    counts its products on (a new user's trial: 80 s without a sign, for a figure whose
    bound took 8 s)."""
    import scipy.sparse.linalg as spla

    from ._operators import ConvOperator
    from ._spectra import dense_is_affordable, singular_values
    from ._symbol import is_periodic

    g = layer.geometry
    if is_periodic(g) or dense_is_affordable(*g.shape):
        how = "exact, by FFT" if is_periodic(g) else "exact, dense SVD"
        return singular_values(layer.weight, layer.input_shape, **layer.kwargs), how
    if not estimate:
        return np.empty(0), "none computed: --upper"
    # matrix-free: on 64->64 3x3 on 32x32, 6 s against 98 s on the CSR matrix (its products
    # are one thread's sparse loops, the operator's BLAS); 13 s on one core of 2026-12-04's
    # Zen 4, at ARPACK's default tol as at tol=1e-10 (14.5 s) or 1e-8 (11.1 s): the 32
    # values lie within 1.2% of each other, and ARPACK's steps, not its tolerance, cost
    A = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    k = min(k, min(A.shape) - 1)
    # ARPACK's Lanczos basis (ncv = max(2k + 1, 20) vectors) and the products' vectors, sized
    # first (a review: 31 GiB asked of numpy for a 64-channel 1000 x 1000 layer)
    check_memory(8 * (max(2 * k + 1, 20) + 6) * max(A.shape),
                 f"ARPACK's workspace for the {k} largest singular values")
    v0 = np.random.default_rng(0).standard_normal(min(A.shape))
    progress, close = bar()
    counted: Any = A
    if progress is not None:
        products = [0]

        def count(apply: Any) -> Any:
            def counted_apply(v: np.ndarray) -> np.ndarray:
                products[0] += 1
                progress(products[0], None)
                return apply(v)
            return counted_apply

        counted = spla.LinearOperator(A.shape, matvec=count(A.matvec),
                                      rmatvec=count(A.rmatvec), dtype=A.dtype)
    try:
        top = spla.svds(counted, k=k, return_singular_vectors=False, v0=v0)
    finally:
        close()
    return np.sort(top)[::-1], f"the {k} largest, by ARPACK"


def _refuse_overflow(upper: float, args) -> None:
    """A norm beyond float64's range (``upper=inf``), refused naming where the weights came
    from (a new user's trial: weights of 1e308 gave an error about an interval)."""
    if math.isfinite(upper):
        return
    source = (f"--weights {args.weights}" if args.weights else
              f"--layer {args.layer} of --model {args.model}" if args.model else "the layer")
    raise ValueError(f"the spectral norm of {source} is over the largest float64, "
                     f"{sys.float_info.max:.4g}: scale the weights down by a power of two "
                     "(the norm scales with them)")


def _spectrum(layer: _Layer, args) -> None:
    from ._spectral_norm import spectral_norm

    # --upper promises a fast bound: no ARPACK run for the plot, which on a large layer takes
    # far longer than the bound (a new user's trial: 64->64 on 64x64 ran out of two minutes)
    drawn = args.output is not None  # (a trial: the interval alone needed a figure file)
    with warnings.catch_warnings(record=True) as said:  # (told once the norm is known to be
        warnings.simplefilter("always")  # a float: over float64's range, the one line is
        values, how = _top_singular_values(  # the refusal's)
            layer, estimate=not args.upper,
            bar=lambda: _stage_bar(args, "ARPACK's 32 largest singular values, for the figure"),
        ) if drawn else (None, "")
    # --exact where it applies; non-periodic circular padding keeps the default route
    progress, close = _stage_bar(args, "spectral_norm")
    try:
        with warnings.catch_warnings():
            # (beyond float64's range the command refuses in one line, _refuse_overflow: the
            # library's warning of the same made two, a new user's trial)
            warnings.filterwarnings("ignore", "spectral_norm: the norm is over the largest")
            norm = spectral_norm(layer.weight, layer.input_shape, **layer.kwargs,
                                 method="upper" if args.upper else
                                 applicable_method("exact" if args.exact else "auto",
                                                   layer.geometry),
                                 tol=args.tol, relative_width=args.relative_width,
                                 progress=progress)
    finally:
        close()
    _refuse_overflow(norm.upper, args)
    for each in said:
        warnings.warn_explicit(each.message, each.category, each.filename, each.lineno)
    every = _every_size(layer, args) if args.every_size else None
    skipped = values is not None and _draw_spectrum(layer, args, values, how, norm, every)
    lower, upper = _outward(norm.lower, ROUND_FLOOR), _outward(norm.upper, ROUND_CEILING)
    tol = lanczos_tol(args.tol, args.relative_width)  # (--relative-width W: W / 8 if smaller)
    short = ("; the value is the certified upper bound, and the lower bound is one quotient"
             if norm.method == "upper" else  # (a trial read the upper bound as the norm)
             "" if norm.converged else f"; the lower bound did not meet tol {tol:g}"
             if norm.method == "bounds" else f"; its rounding allowance is over tol {tol:g}")
    print(f"spectral norm  {_digits(norm.value)}  in [{lower}, {upper}]  ({norm.method}{short})")
    width = (norm.upper - norm.lower) / norm.upper if norm.upper > 0 else 0.0
    if width > 1e-3 and args.relative_width is None and not args.upper:
        # (a new user's trial: a 44%-wide interval printed as if it were the usual 1e-7;
        # another's: the advice given where --relative-width cannot narrow it)
        narrows = applicable_method("exact", layer.geometry) == "exact"
        print(f"  the interval is {width:.2g} wide (relative): " + (
            "--relative-width W certifies one at most W wide, at more cost" if narrows else
            "circular padding that is not periodic has no whole-Gram proof, and "
            "--relative-width cannot narrow it"), file=sys.stderr)
    if skipped:
        print("  (no frequency heatmap with --upper on a layer this large: its SVD per "
              "frequency costs more than the bound; drop --upper to draw it)", file=sys.stderr)
    if every is not None:
        _print_every_size(layer, every)
    if drawn:
        print(f"wrote {args.output}")


def _draw_spectrum(layer: _Layer, args, values: np.ndarray, how: str, norm, every) -> bool:
    """``spectrum``'s figure into ``--output``: the singular values with the certified
    interval (and with ``--every-size`` the bound for every input size, where it bounds this
    layer), and beside them, for a 2-D layer whose symbol is defined, the largest singular
    value per frequency; whether that map was skipped as too costly for ``--upper``."""
    import matplotlib

    from . import plot
    from ._spectra import DENSE_FLOPS
    from ._symbol import frequency_map, is_periodic
    from .plot._figure import COLUMN_WIDTH, STYLE

    g = layer.geometry
    show_map = g.ndim == 2 and all(a.size % a.stride == 0 and a.dilation * (a.kernel_size - 1)
                                   < a.size for a in g.axes)
    if g.ndim == 2 and not show_map:  # (a new user's trial: a strided transposed layer got
        # none, the help promising one for a 2-D layer, and nothing said why)
        sizes = "output size (its convolution's input)" if layer.transposed else "input size"
        print(f"spectrum: no frequency map: the layer's circular version needs its {sizes} "
              f"{tuple(a.size for a in g.axes)} divisible by the stride {g.stride} and larger "
              "than the dilated kernel's extent on each axis", file=sys.stderr)
    # --upper promises speed: the heatmap (an SVD per frequency) only within the dense budget
    # (a new user's trial: 512 channels on 224x224 ran past five minutes on the map alone)
    m, n = g.symbol_block
    skipped = show_map and args.upper and (
        math.prod(g.output_size) * g.groups * m * n * min(m, n) > DENSE_FLOPS)
    show_map = show_map and not skipped
    if show_map and args.figsize is not None and args.figsize[0] < 1.5 * COLUMN_WIDTH:
        # (a new user's trial: at --figsize 3.5,2.5, a paper's column, the two panels' titles
        # ran off the figure and their tick labels collided): the singular values alone
        show_map = False
        print(f"spectrum: no frequency map in a figure {args.figsize[0]:g} in wide: the "
              f"singular values alone (--figsize {2 * COLUMN_WIDTH:g},3 draws the map beside "
              "them)", file=sys.stderr)
    with matplotlib.rc_context(STYLE):
        fig = _figure(args, (2 * COLUMN_WIDTH if show_map else COLUMN_WIDTH, 3.0))
        axes = fig.subplots(1, 2 if show_map else 1, squeeze=False)[0]
        # on a log scale where asked, unless the interval's lower end is 0, which a log axis
        # cannot draw (a new user's trial: a zero layer's 432 zero values, refused)
        log = args.log and norm.lower > 0
        if args.log and not log:
            print("spectrum: no log scale: the interval's lower end is 0, which a log axis "
                  "cannot draw", file=sys.stderr)
        bound = every if every is not None and _bounds_every_size(layer.geometry) and (
            every.upper > 0 or not log) else None  # (a zero layer's 0: on no log axis)
        plot.spectrum(values, axes[0], interval=norm, every_size=bound,
                      yscale="log" if log else "linear")
        axes[0].set_title(f"singular values ({how})")
        if show_map:
            fmap = frequency_map(layer.weight, g.input_size, stride=g.stride,
                                 dilation=g.dilation, groups=g.groups)
            plot.frequency_heatmap(fmap, axes[1])
            # the symbol is the periodic layer's: say so for any other (a circular padding of
            # another total included)
            caveat = "" if is_periodic(g) else "\n(of the periodic layer)"
            axes[1].set_title(f"largest singular value per frequency{caveat}")
        fig.suptitle(_title(layer.describe(), fig))
        _savefig(fig, args.output, args.dpi)
    return bool(skipped)


def _stage_bar(args, what: str) -> tuple[Any, Any]:
    """A progress bar on stderr for a long call's ``progress(done, total)``, and its closer:
    drawn by tqdm where stderr is a terminal, tqdm is installed and ``--quiet`` is not given
    (a new user's trial: ``spectrum --upper`` of a 512-channel layer on 256x256 ran for
    eleven minutes without a sign)."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None, lambda: None
    try:  # optional: by name, so that neither an import nor type stubs are required
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=None, desc=what, unit="step", file=sys.stderr)

    def update(done: int, total: int | None) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update, bar.close


def _every_size(layer: _Layer, args):
    """``spectrum --every-size``'s bound: the certified norm on the infinite grid."""
    from ._torus import toeplitz_norm

    g = layer.geometry
    progress, close = _stage_bar(args, "toeplitz_norm")
    try:
        return toeplitz_norm(layer.weight, stride=g.stride, dilation=g.dilation,
                             groups=g.groups, progress=progress)
    finally:
        close()


def _bounds_every_size(g) -> bool:
    """Whether the norm on the infinite grid bounds the layer of geometry ``g``: its
    zero-padded and periodic layers (an unpadded one is zero-padded by nothing), not a
    reflect, replicate or other circular padding (those fold taps onto the input: a larger
    norm)."""
    from ._symbol import is_periodic

    return (g.padding_mode == "zeros" or is_periodic(g)
            or not any(p for a in g.axes for p in a.pad))


def _print_every_size(layer: _Layer, every) -> None:
    """``spectrum --every-size``'s line."""
    g = layer.geometry
    lower, upper = _outward(every.lower, ROUND_FLOOR), _outward(every.upper, ROUND_CEILING)
    caveat = "" if _bounds_every_size(g) else (
        f"; it bounds the zero-padded and periodic layers only, not this "
        f"{g.padding_mode}-padded one")
    print(f"every input size  {_digits(every.value)}  in [{lower}, {upper}]  (the infinite "
          f"grid{caveat})")


def _export(layer: _Layer, args) -> None:
    from ._io import save_layer

    if layer.transposed:
        A = save_layer(args.output, layer.matrix_weight, layer.shapes[0], transposed=True,
                       format=args.format, layout=args.layout, blocksize=args.blocksize,
                       compressed=args.compressed, **layer.transposed_kwargs())
    else:
        A = save_layer(args.output, layer.matrix_weight, layer.input_shape, format=args.format,
                       layout=args.layout, blocksize=args.blocksize,
                       compressed=args.compressed, **layer.kwargs)
    blocks = f" in {A.blocksize[0]}x{A.blocksize[1]} blocks" if args.format == "bsr" else ""
    print(f"wrote {args.output}: {args.format}{blocks}, {args.layout}, {A.shape[0]} x "
          f"{A.shape[1]}, nnz {A.nnz}, with the layer's arguments and weight")
    if args.format == "bsr" and args.blocksize is None and args.layout == "channels_first":
        # (a new user's trial: 1x1 blocks, and no hint that the channels' blocks need the
        # other layout)
        per = "" if layer.geometry.groups == 1 else "/groups"  # (a review: grouped layers)
        print("  (channels_first keeps a pixel's channels apart, so its blocks are what divides "
              f"the matrix; --layout channels_last gives C_out{per} x C_in{per} blocks)")


def _plot_report(report, output: str, dpi: float | None = None,
                 figsize: tuple[float, float] | None = None) -> None:
    _savefig(_report_figure(report, figsize), output, dpi)


def _report_figure(report, figsize: tuple[float, float] | None = None) -> Any:
    """The per-layer bounds as bars (a log scale only where they span more than 100x)."""
    from decimal import ROUND_CEILING

    from matplotlib.figure import Figure

    from .plot._figure import round_outward

    rows = list(report)
    fig = Figure(figsize=figsize or (max(6.4, 0.3 * len(rows) + 2), 4.4),
                 layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x, [row["upper"] for row in rows], color="C0", label="certified upper bound")
    ax.scatter(x, [row["lower"] for row in rows], color="C1", marker="_", s=120, zorder=4,
               label="certified lower bound")
    periodic = [(i, row["circular"]) for i, row in enumerate(rows) if row["circular"] is not None]
    if periodic:  # a ring, under the lower bound's tick: both seen where they meet (a new
        # user's trial: a dot hid the tick on almost every bar)
        at, values = zip(*periodic)
        ax.scatter(at, values, facecolors="none", edgecolors="C3", marker="o", s=36,
                   linewidths=1.2, zorder=3, label="circular padding (exact)")
    # a folded row's two names on two lines (a new user's trial: ResNet's names took 40% of
    # the figure's height)
    ax.set_xticks(x, [row["name"].replace("+", "+\n") for row in rows], rotation=90,
                  fontsize=8)
    ax.set_xlabel("layer (the report's row name)")
    uppers = [row["upper"] for row in rows if row["upper"] > 0]
    if uppers and max(uppers) > 100 * min(uppers):  # bars from 0 would hide the small ones
        ax.set_yscale("log")
        ax.set_ylabel("spectral norm (log scale)")
    else:  # bars from 0: their heights compare
        ax.set_ylim(bottom=0)
        ax.set_ylabel("spectral norm")
    bound = report.network_upper  # printed rounded up: a bound (a new user's trial: .4g)
    named = "product, assumed a bound (see the warning)" if report.warning else "network bound"
    ax.set_title("per-layer spectral norms" + ("" if bound is None else
                                               f"; {named} "
                                               f"{round_outward(bound, ROUND_CEILING, 4)}"),
                 fontsize=9)
    # above the axes, where no bar reaches (a new user's trial: inside, it covered one);
    # the README's smallest text: 8 pt
    fig.legend(loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    return fig


def _constants(given: list[str], error) -> dict[str, float]:
    """``--constant NAME=L`` options as lipschitz_report's ``lipschitz_constants``; a
    malformed or repeated one: the command's error."""
    constants: dict[str, float] = {}
    for text in given:
        name, equals, value = (part.strip() for part in text.partition("="))
        try:
            if not (equals and name) or name in constants:
                raise ValueError(text)
            constants[name] = float(value)
        except ValueError:
            error(f"--constant must be NAME=L (a module's name or class and a number), once "
                  f"per name, got {text!r}")
    return constants


def _write_report_files(report, outputs: dict) -> None:
    """The report's files asked for (``--csv``, ``--json``, ``--plot``), each said on stderr:
    written before the table, so that a reader of the table that stops early (``| head``)
    loses none of them."""
    for key, write in (("csv", report.to_csv), ("json", report.to_json)):
        if outputs[key] and outputs[key] != "-":  # ("-": stdout, in place of the table)
            with atomic_path(outputs[key]) as path:
                write(path)
            print(f"wrote {outputs[key]}", file=sys.stderr)
    if outputs["plot"]:
        _plot_report(report, outputs["plot"], outputs["dpi"], outputs["figsize"])
        print(f"wrote {outputs['plot']}", file=sys.stderr)


def _report(args, error) -> None:
    if args.csv == args.json == "-":
        error("only one of --csv and --json may be '-' (stdout)")
    outputs = {"csv": args.csv if args.csv == "-" else args.csv and output_path(args.csv, ".csv"),
               "json": args.json if args.json == "-" else args.json and output_path(
                   args.json, ".json"),
               "plot": args.plot and image_path(args.plot),  # checked before any work
               "dpi": args.dpi, "figsize": args.figsize}
    if not args.plot and (args.dpi is not None or args.figsize is not None):
        error(f"{'--dpi' if args.dpi is not None else '--figsize'} sets the figure of --plot, "
              "which is not given")
    if len(args.input_shape) < 1 or min(args.input_shape) < 1:
        error(f"--input-shape must be positive integers C[,H,W,...], got "
              f"{','.join(map(str, args.input_shape))}")
    try:
        worker_count(args.workers, "--workers")
    except ValueError as exc:
        error(_reason(exc, layer=False))
    _model_kind(args.model, error)  # (before torch's import: a missing file said at once)
    try:
        import sparseconv.torch as sct
        from sparseconv._torch_probe import BatchAxisGiven, ForwardFailed
    except ImportError as exc:
        error(_reason(exc, layer=False))
    constants = _constants(args.constant, error)
    model = _load_model(args.model, args.trust_pickle, error)
    training = any(getattr(module, "training", False) for module in model.modules())
    model.eval()  # said on the output: never analysed silently in training mode
    try:
        report = sct.lipschitz_report(model, args.input_shape, assume_chain=args.assume_chain,
                                      fold_batchnorm=args.fold_batchnorm,
                                      fold_padding=args.fold_padding,
                                      progress=not args.quiet and sys.stderr.isatty(),
                                      method="upper" if args.upper else
                                      "exact" if args.exact else "auto",
                                      tol=args.tol, relative_width=args.relative_width,
                                      workers=args.workers,
                                      lipschitz_constants=constants or None)
    except KeyboardInterrupt as interrupt:
        partial = getattr(interrupt, "report", None)
        if partial is not None:  # (on stderr where stdout is a --csv - or --json - file)
            print(partial, file=sys.stderr if "-" in (outputs["csv"], outputs["json"])
                  else sys.stdout)
        print(f"{args.command_parser.prog}: interrupted"
              + (f" ({partial.reason})" if partial is not None else ""), file=sys.stderr)
        sys.exit(130)
    except (BatchAxisGiven, ForwardFailed) as exc:  # the model's own forward refused it
        _model_run_failed(exc, "--input-shape", args.input_shape, error)
    except ValueError as exc:  # (a --constant naming no traced non-linear module, say)
        # (a new user's trial: "--constant['relu'] names no ..."; the option as typed)
        error(re.sub(r"lipschitz_constants\[('[^']*')\]", r"--constant \1",
                     _reason(exc, layer=False)).replace("lipschitz_constants", "--constant"))
    except RuntimeError as exc:  # a layer's own work, named by lipschitz_report
        error(_reason(exc, layer=False))
    if training:  # (notes on stderr: stdout is the report, a new user's trial)
        print(f"{args.command_parser.prog}: {_TRAINING_NOTE}", file=sys.stderr)
    _write_report_files(report, outputs)
    # the library's keywords, as this command line spells them; with --csv - or --json -,
    # that file is stdout and the table goes to stderr (a new user's trial: --json - wrote
    # a file named -.json)
    data = (report.to_csv() if outputs["csv"] == "-" else
            report.to_json() if outputs["json"] == "-" else None)
    print(re.sub(r"lipschitz_constants=\{'([^']*)': L\}", r"--constant \1=L",
                 str(report).replace("pass assume_chain=True", "pass --assume-chain")),
          file=sys.stdout if data is None else sys.stderr)
    if data is not None:
        sys.stdout.write(data if data.endswith("\n") else data + "\n")
    sys.stdout.flush()  # (a closed pipe raises here, inside main's handler)
    if ("activation of known constant" in report.reason or (
            "activations of known constant" in report.reason)) and (
            "even with its Lipschitz constant given" not in report.reason):
        print("  (give each one's Lipschitz constant with --constant NAME=L, if you know it)",
              file=sys.stderr)

