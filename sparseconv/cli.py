"""The command line: ``sparseconv {info,spy,spectrum,export,report}``.

Run as ``sparseconv ...`` (console script) or ``python -m sparseconv ...``. Layers are given
with PyTorch's options (``--in-shape 3,32,32 --out-channels 16 --kernel-size 3 --stride 2
--padding 1``), with seeded random weights or ``--weights FILE.npy``.

Every error is an argparse error: exit status 2 and one line on stderr, ``sparseconv <command>:
error: <reason>``, never a traceback. That covers bad options, unreadable weights, a layer the
library rejects, a matrix over the memory limit and a file that cannot be written.

Every file is written whole or not at all (:mod:`sparseconv._files`): into a temporary file next
to the destination, renamed over it only once complete, so a failed write leaves neither a
truncated file nor a damaged older one. The output is checked before any work: numpy's ``.npz``
or matplotlib's ``.png`` is appended to a name without it, and the message names the file that
was actually written; a directory or a device is refused, as is an image format that the
command cannot write.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, NoReturn

import numpy as np

from ._files import atomic_path, image_path, output_path
from ._geometry import AxisGeometry, ConvGeometry
from ._memory import USE_OPERATOR, MatrixTooLargeError, check_memory, format_bytes
from ._shapes import conv_transpose_output_shape, output_padding_for
from ._spectral_norm import DEFAULT_TOL, applicable_method, checked_tol
from ._validation import (
    LAYOUTS,
    PADDING_MODES,
    PADDING_STRINGS,
    first_index,
    int_tuple,
    real_number,
    worker_count,
)
from ._version import __version__

__all__ = ["build_parser", "main"]



class _Parser(argparse.ArgumentParser):
    """argparse, with an error as one line on stderr: the reason, without the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


# ---------------------------------------------------------------------------------------------
# Option types: argparse turns an ArgumentTypeError into "argument --x: <reason>".
# ---------------------------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or comma-separated integers such as 3,32,32, got {text!r}"
        ) from None
    return values


def _int_or_ints(text: str) -> int | tuple[int, ...]:
    values = _ints(text)
    return values[0] if len(values) == 1 else values


def _padding(text: str) -> int | tuple[int, ...] | str:
    if text in PADDING_STRINGS:
        return text
    try:
        return _int_or_ints(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer, comma-separated integers (one per spatial dimension) or one "
            f"of {', '.join(PADDING_STRINGS)}, got {text!r}") from None


def _at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value
    return parse


_positive = _at_least(1, "positive")
_non_negative = _at_least(0, "non-negative")


def _dpi(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 10 <= value <= 2400:
        raise argparse.ArgumentTypeError(f"expected dots per inch in [10, 2400], got {text!r}")
    return value


def _figsize(text: str) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in text.split(","))
    except ValueError:
        width = height = math.nan
    if not (0 < width <= 100 and 0 < height <= 100):
        raise argparse.ArgumentTypeError(
            f"expected WIDTH,HEIGHT in inches such as 3.5,3, each in (0, 100], got {text!r}")
    return width, height


def _zoom(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        rows, cols = text.split(",")
        (r0, r1), (c0, c1) = (tuple(int(v) for v in part.split(":")) for part in (rows, cols))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected FIRST:STOP,FIRST:STOP output and input channel blocks such as 0:4,0:4, "
            f"got {text!r}") from None
    return (r0, r1), (c0, c1)


def _plot_options() -> argparse.ArgumentParser:
    """Options of the commands that draw a figure (spy, spectrum)."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("figure (format from the suffix: png, pdf, svg, ...)")
    group.add_argument("--dpi", type=_dpi, default=None, metavar="DPI",
                       help="resolution of the file (default 300)")
    group.add_argument("--figsize", type=_figsize, default=None, metavar="W,H",
                       help="figure size in inches (default one 3.5 in column wide, two "
                       "for spectrum's two panels; fonts 8 pt)")
    return options


_MODEL_HELP = ("a TorchScript file (loads as is), or a model saved with torch.save(model) "
               "(needs --trust-pickle)")
_TRUST_PICKLE_HELP = ("load a pickled model: unpickling runs code from the file, pass this "
                      "only for a file you trust")


def _layer_options() -> argparse.ArgumentParser:
    layer = argparse.ArgumentParser(add_help=False)
    group = layer.add_argument_group("layer (PyTorch's Conv options)")
    group.add_argument("--in-shape", "--input-shape", dest="in_shape", type=_ints,
                       required=True, metavar="C,H[,W,...]",
                       help="input shape without batch, e.g. 3,32,32 (with --model: the "
                       "model's input)")
    # (defaults None, filled in by _layer: an option given beside --model is told apart)
    group.add_argument("--out-channels", type=_positive, metavar="N")
    group.add_argument("--kernel-size", type=_int_or_ints, metavar="K[,K...]")
    group.add_argument("--stride", type=_int_or_ints, metavar="S[,S...]", help="default 1")
    group.add_argument("--padding", type=_padding, metavar="P[,P...]|valid|same|full",
                       help="one size for every side, one per spatial dimension, or two per "
                       "dimension (LO,HI for the first axis, then the next); default 0")
    group.add_argument("--dilation", type=_int_or_ints, metavar="D[,D...]", help="default 1")
    group.add_argument("--groups", type=_positive, metavar="G", help="default 1")
    group.add_argument("--padding-mode", choices=PADDING_MODES, help="default zeros")
    group.add_argument("--transposed", action="store_true",
                       help="the layer is nn.ConvTranspose1d/2d/3d (zero padding): --in-shape "
                       "its input, --out-channels its output channels, --weights of shape "
                       "(C_in, C_out/groups, *kernel); its matrix is the adjoint of the "
                       "convolution by the same weight")
    group.add_argument("--output-padding", type=_int_or_ints, metavar="OP[,OP...]",
                       help="with --transposed: PyTorch's output_padding, default 0")
    group.add_argument("--weights", metavar="FILE.npy",
                       help="weight array (C_out, C_in/groups, *kernel), or (C_in, "
                       "C_out/groups, *kernel) with --transposed; random if omitted")
    group.add_argument("--seed", type=_non_negative, default=None,
                       help="seed of the random weights (a non-negative integer, default 0; "
                       "not with --weights)")
    group.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="the matrix's dtype (default float64, whatever the weights')")
    model = layer.add_argument_group(
        "or a convolution of a PyTorch model (needs torch), instead of the options above")
    model.add_argument("--model", metavar="FILE.pt",
                       help=_MODEL_HELP + ", run once on --in-shape (the model's input) to "
                       "find the layer's own input shape")
    model.add_argument("--layer", metavar="NAME",
                       help="the qualified name of a Conv1d/2d/3d or ConvTranspose1d/2d/3d "
                       "in the model, as model.named_modules() and the report name it "
                       "(layer1.0.conv1)")
    model.add_argument("--trust-pickle", action="store_true", help=_TRUST_PICKLE_HELP)
    return layer


def build_parser() -> argparse.ArgumentParser:
    """The ``sparseconv`` argument parser (subcommands info, spy, spectrum, export, report)."""
    parser = _Parser(prog="sparseconv", description="Convolution layers as exact sparse "
                     "matrices: inspect, draw and export them.")
    parser.add_argument("--version", action="version", version=f"sparseconv {__version__}")
    # parents are plain ArgumentParsers: typeshed would want them of the subparsers' class
    commands: argparse._SubParsersAction[Any] = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND")
    layer = _layer_options()
    info = commands.add_parser(
        "info", parents=[layer], help="shapes, nnz, memory, receptive field",
        description="Print the layer's input and output shapes, its sparse matrix's size, nnz "
        "and memory in each format (counted, not built) and the receptive field of the center "
        "output.")
    figure = _plot_options()
    spy = commands.add_parser(
        "spy", parents=[layer, figure], help="draw the sparsity pattern",
        description="Draw the sparsity pattern of the layer's matrix into FILE (binned to "
        "--max-bins pixels per axis; --values draws the entries' values, --zoom a block).")
    spy.add_argument("-o", "--output", required=True, metavar="FILE")
    spy.add_argument("--max-bins", type=_positive, default=512,
                     help="pixels per axis before entries are binned (default 512)")
    spy.add_argument("--values", action="store_true", help="color entries by value")
    spy.add_argument("--raw", action="store_true",
                     help="write the raster itself: one pixel per entry or bin, no axes")
    spy.add_argument("--zoom", type=_zoom, default=None, metavar="R0:R1,C0:C1",
                     help="only output channels R0..R1-1 against input channels C0..C1-1")
    spectrum = commands.add_parser(
        "spectrum", parents=[layer, figure], help="singular values, frequency map, spectral norm",
        description="Draw the layer's singular values into FILE (all of them where an exact "
        "method applies, else ARPACK's largest) and, for a 2-D layer, the largest singular value "
        "per frequency of its circular version; print the certified interval of its spectral "
        "norm (sparseconv.spectral_norm), and with --every-size the bound for every input size.")
    spectrum.add_argument("-o", "--output", required=True, metavar="FILE")
    routes = spectrum.add_mutually_exclusive_group()
    routes.add_argument("--exact", action="store_true",
                        help="certify the spectral norm with every axis exact (spectral_norm's "
                        "method='exact'; zero, reflect or replicate padding or periodic "
                        "layers, the default route for non-periodic circular padding)")
    routes.add_argument("--upper", action="store_true", help=_UPPER_HELP)
    spectrum.add_argument("--tol", type=float, default=DEFAULT_TOL, metavar="TOL",
                          help=_TOL_HELP)
    spectrum.add_argument("--relative-width", type=float, default=None, metavar="W",
                          help=_WIDTH_HELP)
    spectrum.add_argument("--every-size", action="store_true",
                          help="also print the certified bound for every input size and every "
                          "zero padding (the norm on the infinite grid, sparseconv.toeplitz_norm; "
                          "seconds for a 64-channel 3x3 layer, minutes for 512 channels)")
    export = commands.add_parser(
        "export", parents=[layer], help="save the matrix (scipy.sparse.load_npz reads it) with "
        "the layer's arguments and weight (sparseconv.load_layer reads them)",
        description="Save the layer's sparse matrix into FILE.npz (scipy.sparse.load_npz reads "
        "it) with the layer's arguments and weight (sparseconv.load_layer reads them).")
    export.add_argument("-o", "--output", required=True, metavar="FILE.npz")
    export.add_argument("--format", choices=("csr", "csc", "coo", "bsr"), default="csr")
    export.add_argument("--layout", choices=LAYOUTS, default="channels_first",
                        help="flatten (C, *spatial) or (*spatial, C); channels_last BSR has "
                        "(C_out/groups, C_in/groups) blocks")
    export.add_argument("--blocksize", type=_ints, metavar="R,C",
                        help="BSR block shape (with --format bsr)")
    export.add_argument("--no-compress", dest="compressed", action="store_false",
                        help="write the arrays uncompressed (np.savez): several times faster "
                        "for large layers, and larger files")
    for command in (info, spy, spectrum, export):
        command.set_defaults(command_parser=command)
    _report_parser(commands)
    return parser


_TOL_HELP = ("the relative tolerance of the Lanczos lower bound (spectral_norm's tol, default "
             f"{DEFAULT_TOL:g}); 1e-5 takes a fifth to a third less time on large grids; the "
             "interval is then up to about 4 tol wide where the certificate of every axis "
             "decides (small layers, --exact)")


_UPPER_HELP = ("a fast certified upper bound alone (spectral_norm's method='upper': the "
               "circulant bound, no exact sections and no Lanczos iteration; the lower bound "
               "is one quotient, so the interval is wide; not with --relative-width)")


_WIDTH_HELP = ("the relative width (upper - lower) / upper asked of a certified interval, in "
               "(0, 1): where the default route ends wider, the certificate of --exact runs on "
               "that layer (spectral_norm's relative_width); a warning names a layer still "
               "wider, and why")


def _report_parser(commands) -> None:
    report = commands.add_parser(
        "report", help="certified Lipschitz report of a PyTorch model (needs torch)",
        description="Trace a PyTorch model on one input and print, per linear layer, the "
        "certified interval of its spectral norm (sparseconv.torch.lipschitz_report). Two kinds "
        "of file load: a TorchScript file (torch.jit.script(model).save(...) or "
        "torch.jit.trace(...).save(...)) loads without a flag, with torch.jit.load, which runs "
        "no Python code from the file; a model saved with torch.save(model) is a pickle: "
        "unpickling runs code from the file, so it loads only with --trust-pickle. A state_dict "
        "holds no model and is refused.")
    report.add_argument("--model", required=True, metavar="FILE.pt", help=_MODEL_HELP)
    report.add_argument("--input-shape", "--in-shape", dest="input_shape", type=_ints,
                        required=True, metavar="C,H[,W,...]",
                        help="input shape without batch, e.g. 3,224,224")
    report.add_argument("--trust-pickle", action="store_true", help=_TRUST_PICKLE_HELP)
    report.add_argument("--assume-chain", action="store_true",
                        help="give a model that is not a nn.Sequential the product of its "
                        "layers' bounds, assuming its forward is the chain of its layers, "
                        "instead of the bound over its torch.fx graph")
    report.add_argument("--fold-batchnorm", action="store_true",
                        help="one row per convolution and the BatchNorm that follows it")
    report.add_argument("--constant", action="append", default=[], metavar="NAME=L",
                        help="the Lipschitz constant L of a non-linear module the report does "
                        "not know (Softplus, say), by its name or class, or of a call the "
                        "forward makes (softplus_1), by its graph node's name as the reason "
                        "gives it; repeat for several (lipschitz_report's lipschitz_constants: "
                        "yours, not certified)")
    routes = report.add_mutually_exclusive_group()
    routes.add_argument("--upper", action="store_true", help=_UPPER_HELP)
    routes.add_argument("--exact", action="store_true",
                        help="certify every convolution with zero, reflect or replicate padding "
                        "with every axis exact (spectral_norm's method='exact': widths about "
                        "4 tol, 4e-7 at the default, but half a minute and gigabytes for a "
                        "512-channel layer on 7x7; raise the memory limit with "
                        "SPARSECONV_MEMORY_LIMIT)")
    report.add_argument("--tol", type=float, default=DEFAULT_TOL, metavar="TOL", help=_TOL_HELP)
    report.add_argument("--relative-width", type=float, default=None, metavar="W",
                        help=_WIDTH_HELP + " (1e-3: only the rows wider than that; far less "
                        "time than --exact on every row)")
    report.add_argument("--workers", type=int, default=1, metavar="N",
                        help="bound N layers at once, each on its own process and core "
                        "(lipschitz_report's workers; -1: one per core; default 1: one layer "
                        "after the other, each on every core)")
    report.add_argument("--csv", metavar="FILE.csv", help="also write the rows as CSV")
    report.add_argument("--json", metavar="FILE.json", help="also write the report as JSON")
    report.add_argument("--plot", metavar="FILE.png", help="also draw the per-layer bounds")
    report.add_argument("--quiet", action="store_true",
                        help="no progress bar (shown only when stderr is a terminal)")
    report.set_defaults(command_parser=report)


# ---------------------------------------------------------------------------------------------
# The layer the options describe.
# ---------------------------------------------------------------------------------------------
@dataclass
class _Layer:
    source: np.ndarray | Callable[[], np.ndarray]  # the weights, or how to make them
    input_shape: tuple[int, ...]
    kwargs: dict
    geometry: ConvGeometry
    name: str = ""  # a model's layer: its qualified name
    # a transposed convolution: the adjoint of the convolution above (its input_shape and
    # kwargs are that convolution's, the spectra the same), with this output_padding
    output_padding: tuple[int, ...] | None = None

    @property
    def transposed(self) -> bool:
        return self.output_padding is not None

    @property
    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The layer's own input and output shapes (a transposed one's swap the
        convolution's)."""
        g = self.geometry
        return (g.output_shape, g.input_shape) if self.transposed else (g.input_shape,
                                                                       g.output_shape)

    def transposed_kwargs(self) -> dict:
        """``conv_transpose_matrix``'s arguments (with ``input_shape``, the layer's own)."""
        kwargs = {k: v for k, v in self.kwargs.items() if k != "padding_mode"}
        return dict(kwargs, output_padding=self.output_padding)

    @functools.cached_property
    def weight(self) -> np.ndarray:
        """The weights, made on first use: ``info`` needs only their shape."""
        return self.source() if callable(self.source) else self.source

    def describe(self) -> str:
        g = self.geometry

        def fmt(values):
            return "x".join(map(str, values))

        # one token per axis, without spaces (a title wraps between words): 1, or (0,2)
        padding = fmt(lo if lo == hi else f"({lo},{hi})" for lo, hi in g.padding)
        name = f"{self.name}: " if self.name else ""
        if self.transposed:
            assert self.output_padding is not None
            return (f"{name}conv_transpose{g.ndim}d {g.out_channels} -> {g.in_channels}, "
                    f"kernel {fmt(g.kernel_size)}, stride {fmt(g.stride)}, padding {padding}, "
                    f"output_padding {fmt(self.output_padding)}, dilation {fmt(g.dilation)}, "
                    f"groups {g.groups}")
        return (f"{name}conv{g.ndim}d {g.in_channels} -> {g.out_channels}, kernel "
                f"{fmt(g.kernel_size)}, stride {fmt(g.stride)}, padding {padding}, dilation "
                f"{fmt(g.dilation)}, groups {g.groups}, padding_mode {g.padding_mode}")


def _read_array(path: str, error) -> np.ndarray:
    try:
        weight = np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy's guess for a file that is no .npy: "pickled data"
        if "pickle" in str(exc):
            error(f"cannot read --weights {path}: not an array saved with np.save (.npy)")
        error(f"cannot read --weights {path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - np.load raises OSError, ValueError, EOFError...
        error(f"cannot read --weights {path}: {exc}")
    if not isinstance(weight, np.ndarray):  # an .npz archive: several named arrays
        weight.close()
        error(f"--weights {path} is an .npz archive; expected one array saved with np.save "
              "(.npy)")
    return weight


def _load_weight(args, error) -> np.ndarray:
    weight = _read_array(args.weights, error)
    if weight.dtype.kind not in "iuf":
        error(f"--weights must hold a real numeric array, got dtype {weight.dtype}")
    if weight.ndim < 3:
        layout = "(C_in, C_out/groups" if args.transposed else "(C_out, C_in/groups"
        error(f"--weights must hold an array of shape {layout}, *kernel) with at "
              f"least one spatial dimension, got shape {weight.shape}")
    if weight.size == 0:
        error(f"--weights must not have empty dimensions, got shape {weight.shape}")
    if (where := first_index(~np.isfinite(weight))) is not None:
        error(f"--weights must have finite entries, got {weight[where]} at index {where}")
    out_channels = weight.shape[1] * args.groups if args.transposed else weight.shape[0]
    if args.out_channels is not None and args.out_channels != out_channels:
        error(f"--out-channels {args.out_channels} contradicts --weights of shape {weight.shape}"
              + (f" with --transposed and --groups {args.groups}" if args.transposed else ""))
    if args.kernel_size is not None:
        wanted = (args.kernel_size,) * (weight.ndim - 2) if isinstance(args.kernel_size, int) \
            else tuple(args.kernel_size)
        if wanted != weight.shape[2:]:
            error(f"--kernel-size {args.kernel_size} contradicts --weights of shape "
                  f"{weight.shape}")
    with np.errstate(over="ignore"):  # (checked below: a review found 1e300 written as inf)
        cast = weight.astype(args.dtype)
    if (where := first_index(~np.isfinite(cast))) is not None:
        error(f"--weights must be finite in --dtype {args.dtype}: {weight[where]} at index "
              f"{where} overflows it")
    return cast


def _random_shape(args, error) -> tuple[int, ...]:
    ndim = len(args.in_shape) - 1
    if args.out_channels is None or args.kernel_size is None:
        error("--out-channels and --kernel-size are required unless --weights is given")
    for option, value in (("--out-channels", args.out_channels),
                          ("--kernel-size", args.kernel_size)):  # (named by its option, not
        if max(value if isinstance(value, tuple) else (value,)) > 2**60:  # as weight_shape)
            error(f"{option} must be at most 2**60, got {value}")
    kernel = args.kernel_size
    kernel = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
    if len(kernel) != ndim or min(kernel) < 1:
        error(f"--kernel-size must be a positive integer or {ndim} of them (one per spatial "
              f"dimension of --in-shape), got {args.kernel_size}")
    if args.in_shape[0] % args.groups:
        error(f"--groups {args.groups} must divide the input channels {args.in_shape[0]}")
    if args.out_channels % args.groups:
        error(f"--groups {args.groups} must divide --out-channels {args.out_channels}")
    if args.transposed:  # PyTorch's ConvTranspose weight: (C_in, C_out/groups, *kernel)
        return (args.in_shape[0], args.out_channels // args.groups, *kernel)
    return (args.out_channels, args.in_shape[0] // args.groups, *kernel)


def _random_weight(shape: tuple[int, ...], seed: int, dtype: str) -> np.ndarray:
    # float64 draws, then at most one copy in the requested dtype
    check_memory(math.prod(shape) * (8 + np.dtype(dtype).itemsize),
                 f"random weights of shape {shape}")
    weight = np.random.default_rng(seed).standard_normal(shape)
    weight /= math.sqrt(math.prod(shape[1:]))  # fan-in
    return weight.astype(dtype, copy=False)


#: The options that describe a layer, and their defaults where --model does not read it.
_LAYER_DEFAULTS = {"weights": None, "seed": None, "out_channels": None, "kernel_size": None,
                   "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                   "padding_mode": "zeros"}


def _layer(args, error) -> _Layer:
    if args.model is not None:
        return _model_layer(args, error)
    if args.layer is not None or args.trust_pickle:
        error(f"{'--layer' if args.layer is not None else '--trust-pickle'} applies to a layer "
              "of --model FILE.pt only")
    if args.output_padding is not None and not args.transposed:
        error("--output-padding applies to a transposed convolution: add --transposed")
    if args.transposed and args.padding_mode not in (None, "zeros"):
        error(f"--padding-mode {args.padding_mode}: a transposed convolution pads with zeros "
              "only, as PyTorch's ConvTranspose")
    for name, default in _LAYER_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if len(args.in_shape) < 2 or min(args.in_shape) < 1:
        error(f"--in-shape must be positive C,*spatial with at least one spatial size, got "
              f"{','.join(map(str, args.in_shape))}")
    source: np.ndarray | Callable[[], np.ndarray]
    if args.weights:
        if args.seed is not None:
            error(f"--seed {args.seed} seeds random weights, and --weights {args.weights} "
                  "gives them: pass one of the two")
        source = _load_weight(args, error)
        shape = source.shape
        if shape[0] % args.groups:  # (in this command line's words, not the library's)
            error(f"--groups {args.groups} must divide the "
                  f"{'input' if args.transposed else 'output'} channels of --weights of "
                  f"shape {shape}")
        if args.transposed and args.in_shape[0] != shape[0]:
            error(f"--in-shape has {args.in_shape[0]} input channels, but --weights of shape "
                  f"{shape} (C_in, C_out/groups, *kernel) with --transposed takes {shape[0]}")
        if not args.transposed and args.in_shape[0] != shape[1] * args.groups:
            error(f"--in-shape has {args.in_shape[0]} input channels, but --weights of shape "
                  f"{shape} with --groups {args.groups} takes {shape[1]} x {args.groups} = "
                  f"{shape[1] * args.groups}")
    else:
        shape = _random_shape(args, error)
        seed = 0 if args.seed is None else args.seed
        source = functools.partial(_random_weight, shape, seed, args.dtype)
    padding, ndim = args.padding, len(args.in_shape) - 1
    if isinstance(padding, tuple) and len(padding) not in (ndim, 2 * ndim):  # (the library's
        # words would be "(lo, hi) pairs", which this option spells as 2 integers an axis)
        error(f"--padding must give one size, {ndim} (one per spatial dimension) or "
              f"{2 * ndim} (LO,HI per dimension), or one of {', '.join(PADDING_STRINGS)}, "
              f"got {','.join(map(str, padding))}")
    if isinstance(padding, tuple) and len(padding) == 2 * ndim != ndim:  # LO,HI per axis
        padding = tuple(zip(padding[::2], padding[1::2]))
    kwargs = dict(stride=args.stride, padding=padding, dilation=args.dilation,
                  groups=args.groups, padding_mode=args.padding_mode)
    if args.transposed:  # the adjoint of the convolution from its output to its input
        return _transposed_layer(source, shape, args, kwargs, error)
    try:
        geometry = ConvGeometry.from_weight(shape, args.in_shape, **kwargs)
    except (ValueError, TypeError) as exc:
        error(_reason(exc))
    return _Layer(source, tuple(args.in_shape), kwargs, geometry)


def _transposed_layer(source, shape: tuple[int, ...], args, kwargs: dict, error) -> _Layer:
    """``nn.ConvTranspose`` on ``--in-shape``: the convolution by the same weight from the
    transposed layer's output (whose output is ``--in-shape``), and the output padding."""
    output_padding = 0 if args.output_padding is None else args.output_padding
    try:
        out = conv_transpose_output_shape(tuple(args.in_shape[1:]), tuple(shape[2:]),
                                          stride=kwargs["stride"], padding=kwargs["padding"],
                                          output_padding=output_padding,
                                          dilation=kwargs["dilation"])
        conv_input = (shape[1] * kwargs["groups"], *out)
        geometry = ConvGeometry.from_weight(shape, conv_input, **kwargs)
        pads = int_tuple(output_padding, geometry.ndim, "output_padding", 0,
                         broadcast_one=True)
    except (ValueError, TypeError) as exc:
        error(_reason(exc))
    if geometry.output_shape[1:] != tuple(args.in_shape[1:]):  # output_padding >= stride
        error(f"--output-padding {','.join(map(str, pads))} is at least --stride on an axis: "
              "the layer is then no adjoint of one convolution, which these commands take "
              "(sparseconv.conv_transpose_matrix builds it)")
    return _Layer(source, conv_input, kwargs, geometry, output_padding=pads)


def _model_run_failed(exc: Exception, option: str, shape: Sequence[int],
                      error: Callable[[str], NoReturn]) -> NoReturn:
    """The one line for a model that failed on the input shape ``option`` gave: with the batch
    axis given (``BatchAxisGiven``), or its forward's own error (``ForwardFailed``)."""
    from sparseconv._torch_script import BatchAxisGiven

    if isinstance(exc, BatchAxisGiven):
        error(f"{option} {','.join(map(str, exc.shape))} includes the batch axis: the model "
              f"runs on {','.join(map(str, exc.runs_on))} (C,H[,W,...], without the batch)")
    reason = str(exc).split("without the batch): ", 1)[-1]  # (the shapes are said here)
    error(f"the model failed on input shape {tuple(shape)} ({option} is the model's input, "
          f"C,H[,W,...], without the batch): {reason}")


#: what --model says of a model saved in training mode (on stderr)
_TRAINING_NOTE = ("note: the model was saved in training mode; it is analysed in eval mode "
                  "(BatchNorm's running statistics, no dropout)")


def _model_layer(args, error) -> _Layer:
    """The convolution ``--layer`` of ``--model``, on the input shape it has when the model
    runs on ``--in-shape``: its weight (in ``--dtype``) and arguments, read by
    :mod:`sparseconv.torch` as its functions read them."""
    given = [f"--{name.replace('_', '-')}" for name in (*_LAYER_DEFAULTS, "output_padding")
             if getattr(args, name) is not None] + ["--transposed"] * args.transposed
    if given:
        error(f"{given[0]} describes a layer, and --model reads the layer from the model: pass "
              "one of the two")
    if args.layer is None:
        error("--model needs --layer NAME, the qualified name of one of its convolutions")
    try:
        import sparseconv.torch as sct
        from sparseconv._torch_layers import _CONV, _CONV_T
        from sparseconv._torch_module import _hookless_layer
        from sparseconv._torch_script import BatchAxisGiven, ForwardFailed
    except ImportError as exc:
        error(_reason(exc, layer=False))
    if min(args.in_shape) < 1:
        error(f"--in-shape must be positive integers C[,H,W,...] (the model's input), got "
              f"{','.join(map(str, args.in_shape))}")
    model = _load_model(args.model, args.trust_pickle, error, args.command)
    if any(getattr(module, "training", False) for module in model.modules()):
        # said, as the report says it (an audit: switched silently)
        print(_TRAINING_NOTE, file=sys.stderr)
    model.eval()  # as the report: never analysed in training mode (a BatchNorm's statistics)
    try:
        records = sct.trace(model, args.in_shape)
    except (BatchAxisGiven, ForwardFailed) as exc:
        _model_run_failed(exc, "--in-shape", args.in_shape, error)
    except (ValueError, TypeError, RuntimeError) as exc:
        error(f"cannot trace --model {args.model}: {_reason(exc, layer=False)}")
    calls = [record for record in records if record.name == args.layer]
    convolutions = list(dict.fromkeys(record.name for record in records
                                      if isinstance(record.module, (*_CONV, *_CONV_T))))
    if not calls:
        error(f"--layer {args.layer} is not a module the model calls on --in-shape "
              f"{','.join(map(str, args.in_shape))}; its convolutions: "
              f"{', '.join(convolutions) or 'none'}")
    module = calls[0].module
    transposed = isinstance(module, _CONV_T)
    if not (transposed or isinstance(module, _CONV)):
        error(f"--layer {args.layer} is a {type(module).__name__}: these commands take a "
              f"convolution (Conv1d/2d/3d or ConvTranspose1d/2d/3d; this model's: "
              f"{', '.join(convolutions) or 'none'}); "
              "sparseconv.torch.matrix(module, input_shape) takes any linear module")
    # (a transposed one's output size may be asked for at the call: its output_padding)
    shapes = list(dict.fromkeys((record.input_shape, record.output_shape) for record in calls))
    if len(shapes) > 1:
        error(f"--layer {args.layer} is called on several input shapes "
              f"({', '.join(str(i) for i, _ in shapes)}), or to several output shapes, and "
              "these commands take one layer on one")
    (input_shape, output_shape), = shapes
    try:
        conv = _hookless_layer(module, input_shape,
                               output_shape if transposed else None).conv
    except (ValueError, TypeError) as exc:
        error(f"--layer {args.layer}: {_reason(exc, layer=False)}")
    if conv is None:  # a transposed layer with output_padding >= stride on an axis
        error(f"--layer {args.layer}: its output padding is at least its stride on an axis, "
              "so it is no adjoint of one convolution, which these commands take "
              "(sparseconv.torch.matrix(module, input_shape) builds it)")
    assert conv is not None  # (error exits)
    weight, shape, kwargs = conv
    with np.errstate(over="ignore"):
        weight = weight.astype(args.dtype)
    if (where := first_index(~np.isfinite(weight))) is not None:
        error(f"--layer {args.layer}'s weight must be finite in --dtype {args.dtype}: "
              f"{weight[where]} at index {where}")
    geometry = ConvGeometry.from_weight(weight.shape, shape, **kwargs)
    if transposed:  # the convolution's output is the transposed layer's input
        pads = output_padding_for(output_shape[1:], input_shape[1:], geometry.kernel_size,
                                  geometry.stride, geometry.padding, geometry.dilation)
        return _Layer(weight, shape, kwargs, geometry, args.layer, output_padding=pads)
    return _Layer(weight, shape, kwargs, geometry, args.layer)


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
    """A transposed layer's center output (its convolution's center input) reads the
    convolution's outputs that read that input: ``o`` with ``o s + t d - lo`` at it."""
    p, lo = axis.size // 2, axis.pad[0]
    starts = p + lo - axis.dilation * np.arange(axis.kernel_size)
    o = starts[starts % axis.stride == 0] // axis.stride
    return np.unique(o[(o >= 0) & (o < axis.output_size)])


def _receptive_field(layer: _Layer) -> str:
    g = layer.geometry
    # the gather map is separable: the field is the product of the axes' fields
    reads = [(_center_readers if layer.transposed else _center_reads)(axis) for axis in g.axes]
    if min(r.size for r in reads) == 0:
        return "empty (the center output reads only zero padding)"
    extent = [int(r[-1] - r[0]) + 1 for r in reads]  # bounding box
    per_channel = math.prod(r.size for r in reads)
    channels = (g.out_channels if layer.transposed else g.in_channels) // g.groups
    return (f"{'x'.join(map(str, extent))} (the center output reads {per_channel} "
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
        "memory": ", ".join(f"{k} {format_bytes(v)}" for k, v in memory.items()),
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
    """``text`` wrapped to the figure's width at 8 pt."""
    import textwrap

    return textwrap.fill(text, width=max(30, int(fig.get_figwidth() * 15)),
                         break_long_words=False, break_on_hyphens=False)


def _spy(layer: _Layer, args) -> None:
    import matplotlib

    from . import plot
    from ._matrices import conv_matrix
    from .plot._figure import COLUMN_WIDTH, STYLE

    A: Any = layer.geometry
    if layer.transposed:  # drawn from its geometry as well, no matrix formed
        from ._matrices import conv_transpose_matrix
        from ._operators import ConvTransposeOperator

        inputs, kwargs = layer.shapes[0], layer.transposed_kwargs()
        A = (conv_transpose_matrix(layer.weight, inputs, **kwargs) if args.values else
             ConvTransposeOperator(layer.weight, inputs, **kwargs))
    elif args.values:
        A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
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
            ax.set_title(_title(layer.describe(), fig))
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


def _outward(value: float, rounding: str, digits: int = 10) -> str:
    """``value`` to ``digits`` significant digits, rounded outward so an interval stays valid."""
    exact = Decimal(repr(float(value)))
    if exact == 0:
        return "0"
    return str(exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding))


def _top_singular_values(layer: _Layer, k: int = 32,
                         estimate: bool = True) -> tuple[np.ndarray, str]:
    """All singular values where an exact method applies, else ARPACK's ``k`` largest, or
    none if not ``estimate``."""
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
    # are one thread's sparse loops, the operator's BLAS)
    A = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    k = min(k, min(A.shape) - 1)
    # ARPACK's Lanczos basis (ncv = max(2k + 1, 20) vectors) and the products' vectors, sized
    # first (a review: 31 GiB asked of numpy for a 64-channel 1000 x 1000 layer)
    check_memory(8 * (max(2 * k + 1, 20) + 6) * max(A.shape),
                 f"ARPACK's workspace for the {k} largest singular values")
    v0 = np.random.default_rng(0).standard_normal(min(A.shape))
    top = spla.svds(A, k=k, return_singular_vectors=False, v0=v0)
    return np.sort(top)[::-1], f"the {k} largest, by ARPACK"


def _spectrum(layer: _Layer, args) -> None:
    import matplotlib

    from . import plot
    from ._spectra import DENSE_FLOPS
    from ._spectral_norm import spectral_norm
    from ._symbol import frequency_map, is_periodic
    from .plot._figure import COLUMN_WIDTH, STYLE

    g = layer.geometry
    # --upper promises a fast bound: no ARPACK run for the plot, which on a large layer takes
    # far longer than the bound (a new user's trial: 64->64 on 64x64 ran out of two minutes)
    values, how = _top_singular_values(layer, estimate=not args.upper)
    # --exact where it applies; non-periodic circular padding keeps the default route
    norm = spectral_norm(layer.weight, layer.input_shape, **layer.kwargs,
                         method="upper" if args.upper else
                         applicable_method("exact" if args.exact else "auto", g),
                         tol=args.tol, relative_width=args.relative_width)
    show_map = g.ndim == 2 and all(a.size % a.stride == 0 and a.dilation * (a.kernel_size - 1)
                                   < a.size for a in g.axes)
    # --upper promises speed: the heatmap (an SVD per frequency) only within the dense budget
    # (a new user's trial: 512 channels on 224x224 ran past five minutes on the map alone)
    m, n = g.symbol_block
    skipped = show_map and args.upper and (
        math.prod(g.output_size) * g.groups * m * n * min(m, n) > DENSE_FLOPS)
    show_map = show_map and not skipped
    with matplotlib.rc_context(STYLE):
        fig = _figure(args, (2 * COLUMN_WIDTH if show_map else COLUMN_WIDTH, 3.0))
        axes = fig.subplots(1, 2 if show_map else 1, squeeze=False)[0]
        plot.spectrum(values, axes[0], interval=norm)
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
    lower, upper = _outward(norm.lower, ROUND_FLOOR), _outward(norm.upper, ROUND_CEILING)
    short = ("; the lower bound is one quotient" if norm.method == "upper" else
             "" if norm.converged else "; the lower bound did not meet --tol")
    print(f"spectral norm  {norm.value:.10g}  in [{lower}, {upper}]  ({norm.method}{short})")
    width = (norm.upper - norm.lower) / norm.upper if norm.upper > 0 else 0.0
    if width > 1e-3 and args.relative_width is None and not args.upper:
        # (a new user's trial: a 44%-wide interval printed as if it were the usual 1e-7)
        print(f"  the interval is {width:.2g} wide (relative): --relative-width W certifies "
              "one at most W wide, at more cost", file=sys.stderr)
    if skipped:
        print("  (no frequency heatmap with --upper on a layer this large: its SVD per "
              "frequency costs more than the bound; drop --upper to draw it)", file=sys.stderr)
    if args.every_size:
        from ._torus import toeplitz_norm

        every = toeplitz_norm(layer.weight, stride=g.stride, dilation=g.dilation, groups=g.groups)
        lower, upper = _outward(every.lower, ROUND_FLOOR), _outward(every.upper, ROUND_CEILING)
        # it bounds the zero-padded and the periodic layers of the kernel (an unpadded one is
        # zero-padded by nothing), not a reflect, replicate or other circular padding (those
        # fold taps onto the input: a larger norm)
        bounded = (g.padding_mode == "zeros" or is_periodic(g)
                   or not any(p for a in g.axes for p in a.pad))
        caveat = "" if bounded else (f"; it bounds the zero-padded and periodic layers only, "
                                     f"not this {g.padding_mode}-padded one")
        print(f"every input size  {every.value:.10g}  in [{lower}, {upper}]  (the infinite "
              f"grid{caveat})")
    print(f"wrote {args.output}")


def _export(layer: _Layer, args) -> None:
    from ._io import save_layer

    if layer.transposed:
        A = save_layer(args.output, layer.weight, layer.shapes[0], transposed=True,
                       format=args.format, layout=args.layout, blocksize=args.blocksize,
                       compressed=args.compressed, **layer.transposed_kwargs())
    else:
        A = save_layer(args.output, layer.weight, layer.input_shape, format=args.format,
                       layout=args.layout, blocksize=args.blocksize,
                       compressed=args.compressed, **layer.kwargs)
    blocks = f" in {A.blocksize[0]}x{A.blocksize[1]} blocks" if args.format == "bsr" else ""
    print(f"wrote {args.output}: {args.format}{blocks}, {args.layout}, {A.shape[0]} x "
          f"{A.shape[1]}, nnz {A.nnz}, with the layer's arguments and weight")


# ---------------------------------------------------------------------------------------------
# report: a PyTorch model, not one layer.
# ---------------------------------------------------------------------------------------------
def _model_format(path: str) -> str | None:
    """"torchscript" (``torch.jit.save``), "pickle" (``torch.save``: a zip archive or the legacy
    pickle), or None.

    Both of torch's archives are zip files; only TorchScript's holds compiled code
    (``code/``, ``constants.pkl``). Reads the file's directory only, never unpickles.
    """
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        return "pickle" if any(n.endswith("data.pkl") for n in names) else None
    with open(path, "rb") as stream:
        return "pickle" if stream.read(1) == b"\x80" else None  # a pickle's PROTO opcode


def _load_model(path: str, trust_pickle: bool, error, command: str = "report"):
    import pickle
    import warnings

    import torch

    try:
        kind = _model_format(path)
    except OSError as exc:
        error(f"cannot read --model {path}: {exc.strerror or exc}")
    if kind is None:
        error(f"--model {path} is not a file written by torch.save or torch.jit.save")
    if kind == "torchscript":  # TorchScript's loader builds modules, it runs no Python code
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript: not the user's
                warnings.simplefilter("ignore", DeprecationWarning)  # to act on, here
                return torch.jit.load(path, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch.jit.load raises RuntimeError, Error...
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            error(f"cannot load the TorchScript file --model {path}: {lines[0]}")
    try:  # weights_only runs no code: a state_dict loads, a pickled module does not
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            error(f"--model {path} is a pickled object (torch.save(model)); loading it runs code "
                  "from the file: pass --trust-pickle if you trust it")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except (AttributeError, ImportError) as exc:  # the pickle names a class not found here
            error(f"cannot load --model {path}: {type(exc).__name__}: {exc}; torch.save(model) "
                  "stores the name of the model's class, not its code: make the class "
                  "importable under that name here (one defined in the script that saved the "
                  "model, '__main__', never is; the sparseconv command does not look in the "
                  f"current directory: run 'python -m sparseconv {command} ...' or "
                  f"'PYTHONPATH=. sparseconv {command} ...' from the directory of the class's "
                  "module), or save the model with torch.jit.script(model).save(path), which "
                  "loads without it")
        except Exception as exc:  # noqa: BLE001 - unpickling raises anything the pickle does
            error(f"cannot load --model {path}: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - torch.load raises RuntimeError, EOFError...
        error(f"cannot read --model {path}: {exc}")
    if isinstance(loaded, dict):
        error(f"--model {path} holds a dict (a state_dict?), not a model: save the module itself "
              "with torch.save(model)")
    if not isinstance(loaded, torch.nn.Module):
        error(f"--model {path} holds a {type(loaded).__name__}, not a torch.nn.Module")
    return loaded


def _plot_report(report, output: str) -> None:
    _savefig(_report_figure(report), output)


def _report_figure(report) -> Any:
    """The per-layer bounds as bars (a log scale only where they span more than 100x)."""
    from decimal import ROUND_CEILING

    from matplotlib.figure import Figure

    from .plot._figure import round_outward

    rows = list(report)
    fig = Figure(figsize=(max(6.4, 0.3 * len(rows) + 2), 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x, [row["upper"] for row in rows], color="C0", label="certified upper bound")
    ax.scatter(x, [row["lower"] for row in rows], color="C1", marker="_", s=120, zorder=3,
               label="certified lower bound")
    periodic = [(i, row["circular"]) for i, row in enumerate(rows) if row["circular"] is not None]
    if periodic:
        ax.scatter(*zip(*periodic), color="C3", marker=".", zorder=3,
                   label="circular padding (exact)")
    ax.set_xticks(x, [row["name"] for row in rows], rotation=90, fontsize=8)
    ax.set_xlabel("layer (the report's row name)")
    uppers = [row["upper"] for row in rows if row["upper"] > 0]
    if uppers and max(uppers) > 100 * min(uppers):  # bars from 0 would hide the small ones
        ax.set_yscale("log")
        ax.set_ylabel("spectral norm (log scale)")
    else:  # bars from 0: their heights compare
        ax.set_ylim(bottom=0)
        ax.set_ylabel("spectral norm")
    bound = report.network_upper  # printed rounded up: a bound (a new user's trial: .4g)
    ax.set_title("per-layer spectral norms" + ("" if bound is None else
                                               "; network bound "
                                               f"{round_outward(bound, ROUND_CEILING, 4)}"),
                 fontsize=9)
    # above the axes, where no bar reaches (a new user's trial: inside, it covered one);
    # the README's smallest text: 8 pt
    fig.legend(loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    return fig


def _report(args, error) -> None:
    outputs = {"csv": args.csv and output_path(args.csv, ".csv"),
               "json": args.json and output_path(args.json, ".json"),
               "plot": args.plot and image_path(args.plot)}  # checked before any work
    try:
        import sparseconv.torch as sct
        from sparseconv._torch_script import BatchAxisGiven, ForwardFailed
    except ImportError as exc:
        error(_reason(exc, layer=False))
    if len(args.input_shape) < 1 or min(args.input_shape) < 1:
        error(f"--input-shape must be positive integers C[,H,W,...], got "
              f"{','.join(map(str, args.input_shape))}")
    try:
        worker_count(args.workers, "--workers")
    except ValueError as exc:
        error(_reason(exc, layer=False))
    constants: dict[str, float] = {}
    for given in args.constant:
        name, equals, value = (part.strip() for part in given.partition("="))
        try:
            if not (equals and name) or name in constants:
                raise ValueError(given)
            constants[name] = float(value)
        except ValueError:
            error(f"--constant must be NAME=L (a module's name or class and a number), once "
                  f"per name, got {given!r}")
    model = _load_model(args.model, args.trust_pickle, error)
    training = any(getattr(module, "training", False) for module in model.modules())
    model.eval()  # said on the output: never analysed silently in training mode
    try:
        report = sct.lipschitz_report(model, args.input_shape, assume_chain=args.assume_chain,
                                      fold_batchnorm=args.fold_batchnorm,
                                      progress=not args.quiet and sys.stderr.isatty(),
                                      method="upper" if args.upper else
                                      "exact" if args.exact else "auto",
                                      tol=args.tol, relative_width=args.relative_width,
                                      workers=args.workers,
                                      lipschitz_constants=constants or None)
    except KeyboardInterrupt as interrupt:
        partial = getattr(interrupt, "report", None)
        if partial is not None:
            print(partial)
        print(f"{args.command_parser.prog}: interrupted"
              + (f" ({partial.reason})" if partial is not None else ""), file=sys.stderr)
        sys.exit(130)
    except (BatchAxisGiven, ForwardFailed) as exc:  # the model's own forward refused it
        _model_run_failed(exc, "--input-shape", args.input_shape, error)
    except ValueError as exc:  # (a --constant naming no traced non-linear module, say)
        error(_reason(exc, layer=False).replace("lipschitz_constants", "--constant"))
    except RuntimeError as exc:  # a layer's own work, named by lipschitz_report
        error(_reason(exc, layer=False))
    if training:  # (notes on stderr: stdout is the report, a new user's trial)
        print(_TRAINING_NOTE, file=sys.stderr)
    # the files first: a reader of the table that stops early (| head) loses none of them
    for key, write in (("csv", report.to_csv), ("json", report.to_json)):
        if outputs[key]:
            with atomic_path(outputs[key]) as path:
                write(path)
            print(f"wrote {outputs[key]}", file=sys.stderr)
    if outputs["plot"]:
        _plot_report(report, outputs["plot"])
        print(f"wrote {outputs['plot']}", file=sys.stderr)
    # the library's keywords, as this command line spells them
    print(re.sub(r"lipschitz_constants=\{'([^']*)': L\}", r"--constant \1=L",
                 str(report).replace("pass assume_chain=True", "pass --assume-chain")))
    sys.stdout.flush()  # (a closed pipe raises here, inside main's handler)
    if "activation of known constant" in report.reason or (
            "activations of known constant" in report.reason):
        print("  (give each one's Lipschitz constant with --constant NAME=L, if you know it)",
              file=sys.stderr)


#: The library's argument names, as this command line's options spell them.
_OPTION_OF = {"input_shape": "--in-shape", "padding_mode": "--padding-mode",
              "kernel_size": "--kernel-size", "out_channels": "--out-channels",
              "stride": "--stride", "padding": "--padding", "dilation": "--dilation",
              "groups": "--groups", "zoom": "--zoom", "blocksize": "--blocksize",
              "format": "--format", "values": "--values", "max_bins": "--max-bins"}


def _as_options(message: str) -> str:
    """A library message with its argument names as options: ``stride must ...`` -> ``--stride
    must ...``, ``blocksize=(2, 3)`` -> ``--blocksize (2, 3)`` (a name that leads the message,
    or is followed by ``=``; English words such as "padding" elsewhere are left alone)."""
    for name, option in _OPTION_OF.items():
        message = re.sub(rf"^{name}(?=[ \[])", option, message)
        message = re.sub(rf"(?<![\w.-]){name}=", f"{option} ", message)
    return message.replace("--values True", "--values")  # (a flag: given, or not)


def _reason(exc: BaseException, layer: bool = True) -> str:
    """One line for ``exc``; ``layer``: a command of one layer, whose options the library's
    argument names are turned into (not ``report``, which has a model's options)."""
    if isinstance(exc, MemoryError) and not isinstance(exc, ValueError):
        return f"out of memory ({exc or 'MemoryError'}); try a smaller layer"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"cannot write {exc.filename}: {exc.strerror}"
    message = str(exc) or type(exc).__name__
    if isinstance(exc, MatrixTooLargeError):  # the remedies of a command line (a new user's
        # trial: the library's message offered Python calls only)
        message = message.replace(f"{USE_OPERATOR}, or raise", "or raise").replace(
            "with sparseconv.set_memory_limit(nbytes) or SPARSECONV_MEMORY_LIMIT",
            "in the environment, e.g. SPARSECONV_MEMORY_LIMIT=16G")
    return _as_options(message) if layer else message


def _attached(argv: Sequence[str]) -> list[str]:
    """``--zoom -1:2,...`` as ``--zoom=-1:2,...``: argparse takes a value that starts with
    ``-`` (and is not a plain negative number) for an option, and said only "expected one
    argument" (a new user's trial); attached, the value is read and its range refused by
    name."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--zoom" and re.match(r"-\d", arg) and out[-1] == "--zoom":
            out[-1] = f"--zoom={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (every error exits with 2, one line)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(_attached(sys.argv[1:] if argv is None else
                                                      [str(a) for a in argv]))
    command = args.command_parser
    if unknown:  # named by the command that was given them, as its other errors are
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = {"info": _info, "spy": _spy, "spectrum": _spectrum, "export": _export}
    try:
        if hasattr(args, "tol"):  # before a layer is built or a model loaded
            checked_tol(args.tol, "--tol")
        if getattr(args, "relative_width", None) is not None:
            real_number(args.relative_width, "--relative-width", low=0.0, high=1.0,
                        low_open=True)
            if args.upper:  # as spectral_norm refuses it, in this command line's names
                raise ValueError(f"--relative-width {args.relative_width:g} needs a lower "
                                 "bound, and --upper computes none: drop one of them")
        if getattr(args, "raw", False) and args.figsize is not None:  # (a new user's trial:
            # ignored, unsaid)
            raise ValueError("--figsize does not apply to --raw, which writes one pixel per "
                             "entry or bin and no figure (--dpi sets its printed size): drop "
                             "one of them")
        with warnings.catch_warnings():  # the library's warnings, one line each, shown
            warnings.simplefilter("default", RuntimeWarning)
            warnings.showwarning = functools.partial(_warning, command.prog)
            if args.command == "report":  # a model, not one layer
                _report(args, command.error)
                return 0
            if hasattr(args, "output"):
                args.output = _output(args)  # before any work: a bad path fails at once
            handler[args.command](_layer(args, command.error), args)
    except BrokenPipeError:  # stdout closed early (| head): as other commands, quietly;
        # the files asked for are written before the table (a new user's trial)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    # the library's refusals (bad layer, memory limit), an unwritable file, a real MemoryError
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        command.error(_reason(exc, layer=args.command != "report"))
    return 0


def _warning(prog: str, message, category, *args: Any, **kwargs: Any) -> None:
    """A warning as one line on stderr, ``prog: warning: message`` (not Python's file and
    line of the library)."""
    print(f"{prog}: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
