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
from typing import Any

from ._cli_commands import _export, _info, _output, _report, _spectrum, _spy
from ._cli_layer import _layer, _reason
from ._memory import get_memory_limit
from ._spectral_norm import DEFAULT_TOL, MIN_RELATIVE_WIDTH, checked_tol
from ._validation import LAYOUTS, PADDING_MODES, PADDING_STRINGS, real_number
from ._version import __version__

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with an error as one line on stderr: the reason, without the usage; and no
    abbreviated options (``--stri`` for ``--stride``), which a new option could make
    ambiguous in a user's script (a trial)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

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
                       "for spectrum's two panels, 0.3 in a layer and at least 6.4 x 4.4 "
                       "for report's; fonts 8 pt)")
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
    group.add_argument("--out-channels", type=_positive, metavar="N",
                       help="output channels (required unless --weights or --model gives them)")
    group.add_argument("--kernel-size", type=_int_or_ints, metavar="K[,K...]",
                       help="one size for every spatial dimension, or one per dimension "
                       "(required unless --weights or --model gives it)")
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
                       help="real weight array (C_out, C_in/groups, *kernel), or (C_in, "
                       "C_out/groups, *kernel) with --transposed; random if omitted (complex "
                       "weights: the Python functions take them)")
    group.add_argument("--seed", type=_non_negative, default=None,
                       help="seed of the random weights (a non-negative integer, default 0; "
                       "not with --weights)")
    group.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="the dtype of the matrices spy and export build and info "
                       "sizes (default float64, whatever the weights'); the spectra and their "
                       "certified intervals are of the weights as given")
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


_FIGURE_FILE = ("the figure; its suffix names the format (png, pdf, svg, ...; without one, "
                ".png is added)")


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
    spy = _spy_parser(commands, layer, figure)
    spectrum = _spectrum_parser(commands, layer, figure)
    export = _export_parser(commands, layer)
    for command in (info, spy, spectrum, export):
        command.set_defaults(command_parser=command)
    _report_parser(commands, figure)
    return parser


def _spy_parser(commands: argparse._SubParsersAction[Any], layer: argparse.ArgumentParser,
                figure: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``spy`` command's parser."""
    spy = commands.add_parser(
        "spy", parents=[layer, figure], help="draw the sparsity pattern",
        description="Draw the sparsity pattern of the layer's matrix into FILE (binned to "
        "--max-bins pixels per axis; --values draws the entries' values, --zoom a block).")
    spy.add_argument("-o", "--output", required=True, metavar="FILE", help=_FIGURE_FILE)
    spy.add_argument("--max-bins", type=_positive, default=512,
                     help="pixels per axis before entries are binned (default 512)")
    spy.add_argument("--values", action="store_true",
                     help="color entries by value (beyond --max-bins, each bin by its entry of "
                     "largest magnitude, with its sign: the matrix is built, seconds for a "
                     "64-channel 3x3 layer on 56x56)")
    spy.add_argument("--raw", action="store_true",
                     help="write the raster itself: one pixel per entry or bin, no axes")
    spy.add_argument("--zoom", type=_zoom, default=None, metavar="R0:R1,C0:C1",
                     help="only output channels R0..R1-1 against input channels C0..C1-1")
    return spy


def _spectrum_parser(commands: argparse._SubParsersAction[Any], layer: argparse.ArgumentParser,
                     figure: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``spectrum`` command's parser."""
    spectrum = commands.add_parser(
        "spectrum", parents=[layer, figure], help="singular values, frequency map, spectral norm",
        description="Draw the layer's singular values into FILE (all of them where an exact "
        "method applies, else ARPACK's largest) and, for a 2-D layer that has a circular version "
        "(each input size divisible by the stride and larger than the dilated kernel), the "
        "largest singular value per frequency of that version; print the certified interval "
        "of its spectral norm (sparseconv.spectral_norm), and with --every-size the bound for "
        "every input size.")
    spectrum.add_argument("-o", "--output", default=None, metavar="FILE",
                          help=_FIGURE_FILE + "; without it, the interval alone is printed. "
                          "Where no exact method gives every singular value (zero, reflect "
                          "or replicate padding, more than 4096 rows), the figure's are "
                          "ARPACK's 32 largest: often longer than the bound itself (80 s "
                          "against 8 s for 64 -> 64 3x3 on 56x56); --upper draws the interval "
                          "alone")
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
                          "seconds for a 64-channel 3x3 layer, minutes for 512 channels), and "
                          "draw it, a dashed line, where it bounds the layer")
    spectrum.add_argument("--log", action="store_true",
                          help="draw the singular values on a log scale (their decay, the "
                          "condition number at a glance; zero values left out, and counted "
                          "on the axis label)")
    spectrum.add_argument("--quiet", action="store_true",
                          help="no progress bar on stderr (drawn only when stderr is a "
                          "terminal); the interval is printed all the same")
    return spectrum


def _export_parser(commands: argparse._SubParsersAction[Any],
                   layer: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``export`` command's parser."""
    export = commands.add_parser(
        "export", parents=[layer], help="save the matrix (scipy.sparse.load_npz reads it) with "
        "the layer's arguments and weight (sparseconv.load_layer reads them)",
        description="Save the layer's sparse matrix into FILE.npz (scipy.sparse.load_npz reads "
        "it) with the layer's arguments and weight (sparseconv.load_layer reads them).")
    export.add_argument("-o", "--output", required=True, metavar="FILE.npz",
                        help="the archive (scipy.sparse.save_npz's, with the layer's "
                        "arguments and weight); .npz is added to a name without it, as "
                        "numpy and scipy do")
    export.add_argument("--format", choices=("csr", "csc", "coo", "bsr"), default="csr")
    export.add_argument("--layout", choices=LAYOUTS, default="channels_first",
                        help="flatten (C, *spatial) or (*spatial, C); channels_last BSR has "
                        "(C_out/groups, C_in/groups) blocks")
    export.add_argument("--blocksize", type=_ints, metavar="R,C",
                        help="BSR block shape (with --format bsr)")
    export.add_argument("--no-compress", dest="compressed", action="store_false",
                        help="write the arrays uncompressed (np.savez): several times faster "
                        "for large layers, and larger files")
    return export


_TOL_HELP = ("the relative tolerance of the Lanczos lower bound (spectral_norm's tol, default "
             f"{DEFAULT_TOL:g}); 1e-5 takes a fifth to a third less time on large grids; the "
             "interval is then about tol wide where the certificate of every axis decides "
             "(small layers, --exact)")


_UPPER_HELP = ("a faster certified upper bound alone (spectral_norm's method='upper': the "
               "circulant bound, no exact sections and no Lanczos iteration; the lower bound "
               "is one quotient, so the interval is wide; not with --relative-width); one "
               "eigenvalue problem of C channels per frequency of the input's grid: seconds "
               "for 512 channels on 16x16, many minutes on 256x256")


_WIDTH_HELP = ("the relative width (upper - lower) / upper asked of a certified interval, in "
               f"[{MIN_RELATIVE_WIDTH:.0e}, 1): where the default route ends wider, the "
               "certificate of --exact runs on that layer (spectral_norm's relative_width); a "
               "warning names a layer still wider, and why; not with --upper")


def _report_parser(commands, figure: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", parents=[figure],
        help="certified Lipschitz report of a PyTorch model (needs torch)",
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
    report.add_argument("--fold-padding", action="store_true",
                        help="one row per padding module (ReflectionPad2d, ...) and the "
                        "convolution that reads it: the padded convolution, whose bound is no "
                        "looser than the product of the two rows', and often far tighter")
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
                        "tol, 1e-7 at the default, but half a minute and gigabytes for a "
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
    report.add_argument("--csv", metavar="FILE.csv",
                        help="also write the rows as CSV, the network bound last (.csv added to "
                        "a name without it; '-': to stdout, the table then to stderr)")
    report.add_argument("--json", metavar="FILE.json",
                        help="also write the report as JSON (.json added to a name without "
                        "it; '-': to stdout, the table then to stderr)")
    report.add_argument("--plot", metavar="FILE.png", help="also draw the per-layer bounds "
                        "(--dpi, --figsize: default 0.3 in a layer, at least 6.4 x 4.4 in)")
    report.add_argument("--quiet", action="store_true",
                        help="no progress bar on stderr (drawn only when stderr is a "
                        "terminal); the table is printed all the same")
    report.set_defaults(command_parser=report)


def _attached(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--zoom -1:2,...`` as ``--zoom=-1:2,...``, and so for every option that takes a value:
    argparse takes a value that starts with ``-`` (and is not a plain negative number) for an
    option, and said only "expected one argument" (two new users' trials: ``--zoom -1:2``,
    ``--in-shape -3,5,5``); attached, the value is read and refused by name."""
    taking = {option for action in _actions(parser) if action.nargs is None  # (flags: 0)
              for option in action.option_strings}
    out: list[str] = []
    for i, arg in enumerate(argv):
        # (out[-1] is still that option: not itself a value attached just before)
        if i and argv[i - 1] in taking and out[-1] == argv[i - 1] and re.match(r"-\d", arg):
            out[-1] = f"{argv[i - 1]}={arg}"
        else:
            out.append(arg)
    return out


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action of ``parser`` and of its subcommands' parsers."""
    found = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _actions(sub)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (every error exits with 2, one line)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(_attached(sys.argv[1:] if argv is None else
                                                      [str(a) for a in argv], parser))
    command = args.command_parser
    if unknown:  # named by the command that was given them, as its other errors are
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = {"info": _info, "spy": _spy, "spectrum": _spectrum, "export": _export}
    try:
        if hasattr(args, "tol"):  # before a layer is built or a model loaded
            checked_tol(args.tol, "--tol")
        if getattr(args, "relative_width", None) is not None:
            real_number(args.relative_width, "--relative-width", low=MIN_RELATIVE_WIDTH,
                        high=1.0)  # (spectral_norm's range: a trial read "in (0, 1)")
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
            get_memory_limit()  # (reads SPARSECONV_MEMORY_LIMIT: a bad value's warning
            # in these words, whatever the command needs)
            if args.command == "report":  # a model, not one layer
                _report(args, command.error)
                return 0
            if getattr(args, "output", None) is not None:
                args.output = _output(args)  # before any work: a bad path fails at once
            handler[args.command](_layer(args, command.error), args)
    except KeyboardInterrupt:  # (a new user's trial: Ctrl-C in spectrum or export printed
        # a traceback; report says what it had, in its own handler). A file being written
        # is left as it was: each is written to a temporary name and renamed when complete
        print(f"{command.prog}: interrupted", file=sys.stderr)
        return 130
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
