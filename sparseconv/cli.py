"""The command line: ``sparseconv {info,spy,spectrum,export}``.

Run as ``sparseconv ...`` (console script) or ``python -m sparseconv ...``. Layers are given
with PyTorch's options (``--in-shape 3,32,32 --out-channels 16 --kernel-size 3 --stride 2
--padding 1``), with seeded random weights or ``--weights FILE.npy``. A bad option, including a
layer the library rejects, is an argparse error: exit status 2 and the reason on the first line
of stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from ._geometry import ConvGeometry
from ._validation import PADDING_MODES

__all__ = ["build_parser", "main"]

_PADDING_WORDS = ("valid", "same", "full")


class _Parser(argparse.ArgumentParser):
    """argparse, with the reason of an error on the first line of stderr."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\nTry '{self.prog} -h' for help.\n")


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
    return text if text in _PADDING_WORDS else _int_or_ints(text)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _layer_options() -> argparse.ArgumentParser:
    layer = argparse.ArgumentParser(add_help=False)
    group = layer.add_argument_group("layer (PyTorch's Conv options)")
    group.add_argument("--in-shape", type=_ints, required=True, metavar="C,H[,W,...]",
                       help="input shape without batch, e.g. 3,32,32")
    group.add_argument("--out-channels", type=_positive, metavar="N")
    group.add_argument("--kernel-size", type=_int_or_ints, metavar="K[,K...]")
    group.add_argument("--stride", type=_int_or_ints, default=1, metavar="S[,S...]")
    group.add_argument("--padding", type=_padding, default=0, metavar="P[,P...]|valid|same|full")
    group.add_argument("--dilation", type=_int_or_ints, default=1, metavar="D[,D...]")
    group.add_argument("--groups", type=_positive, default=1, metavar="G")
    group.add_argument("--padding-mode", choices=PADDING_MODES, default="zeros")
    group.add_argument("--weights", metavar="FILE.npy",
                       help="weight array (C_out, C_in/groups, *kernel); random if omitted")
    group.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    group.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    return layer


def build_parser() -> argparse.ArgumentParser:
    """The ``sparseconv`` argument parser (subcommands info, spy, spectrum, export)."""
    parser = _Parser(prog="sparseconv", description="Convolution layers as exact sparse "
                     "matrices: inspect, draw and export them.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    layer = _layer_options()
    info = commands.add_parser("info", parents=[layer], help="shapes, nnz, memory, receptive field")
    spy = commands.add_parser("spy", parents=[layer], help="draw the sparsity pattern")
    spy.add_argument("-o", "--output", required=True, metavar="FILE")
    spy.add_argument("--max-bins", type=_positive, default=512,
                     help="pixels per axis before entries are binned (default 512)")
    spy.add_argument("--values", action="store_true", help="color entries by value")
    spy.add_argument("--raw", action="store_true",
                     help="write the raster itself: one pixel per entry or bin, no axes")
    spectrum = commands.add_parser("spectrum", parents=[layer],
                                   help="singular values, frequency map, spectral norm")
    spectrum.add_argument("-o", "--output", required=True, metavar="FILE")
    export = commands.add_parser("export", parents=[layer],
                                 help="save the matrix with scipy.sparse.save_npz")
    export.add_argument("-o", "--output", required=True, metavar="FILE.npz")
    export.add_argument("--format", choices=("csr", "csc", "coo"), default="csr")
    for command in (info, spy, spectrum, export):
        command.set_defaults(command_parser=command)
    return parser


# ---------------------------------------------------------------------------------------------
# The layer the options describe.
# ---------------------------------------------------------------------------------------------
@dataclass
class _Layer:
    weight: np.ndarray
    input_shape: tuple[int, ...]
    kwargs: dict
    geometry: ConvGeometry

    def describe(self) -> str:
        g = self.geometry

        def fmt(values):
            return "x".join(map(str, values))

        return (f"conv{g.ndim}d {g.in_channels} -> {g.out_channels}, kernel "
                f"{fmt(g.kernel_size)}, stride {fmt(g.stride)}, padding {g.padding}, dilation "
                f"{fmt(g.dilation)}, groups {g.groups}, padding_mode {g.padding_mode}")


def _load_weight(args, error) -> np.ndarray:
    try:
        weight = np.load(args.weights, allow_pickle=False)
    except (OSError, ValueError) as exc:
        error(f"cannot read --weights {args.weights}: {exc}")
    if weight.dtype.kind not in "iuf":
        error(f"--weights must hold a real numeric array, got dtype {weight.dtype}")
    if args.out_channels is not None and args.out_channels != weight.shape[0]:
        error(f"--out-channels {args.out_channels} contradicts --weights of shape {weight.shape}")
    if args.kernel_size is not None and weight.ndim > 2:
        wanted = (args.kernel_size,) * (weight.ndim - 2) if isinstance(args.kernel_size, int) \
            else tuple(args.kernel_size)
        if wanted != weight.shape[2:]:
            error(f"--kernel-size {args.kernel_size} contradicts --weights of shape "
                  f"{weight.shape}")
    return weight.astype(args.dtype)


def _random_weight(args, error) -> np.ndarray:
    ndim = len(args.in_shape) - 1
    if args.out_channels is None or args.kernel_size is None:
        error("--out-channels and --kernel-size are required unless --weights is given")
    kernel = args.kernel_size
    kernel = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
    if len(kernel) != ndim or min(kernel) < 1:
        error(f"--kernel-size must be a positive integer or {ndim} of them (one per spatial "
              f"dimension of --in-shape), got {args.kernel_size}")
    if args.in_shape[0] % args.groups:
        error(f"--groups {args.groups} must divide the input channels {args.in_shape[0]}")
    shape = (args.out_channels, args.in_shape[0] // args.groups, *kernel)
    fan_in = math.prod(shape[1:])
    weight = np.random.default_rng(args.seed).standard_normal(shape) / math.sqrt(fan_in)
    return weight.astype(args.dtype)


def _layer(args, error) -> _Layer:
    if len(args.in_shape) < 2 or min(args.in_shape) < 1:
        error(f"--in-shape must be positive C,*spatial with at least one spatial size, got "
              f"{','.join(map(str, args.in_shape))}")
    weight = _load_weight(args, error) if args.weights else _random_weight(args, error)
    kwargs = dict(stride=args.stride, padding=args.padding, dilation=args.dilation,
                  groups=args.groups, padding_mode=args.padding_mode)
    try:
        geometry = ConvGeometry.from_weight(weight.shape, args.in_shape, **kwargs)
    except (ValueError, TypeError) as exc:
        error(str(exc))
    return _Layer(weight, tuple(args.in_shape), kwargs, geometry)


# ---------------------------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------------------------
def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _info(layer: _Layer, args) -> None:
    import scipy.sparse as sp

    from ._receptive_field import receptive_field_paths

    g = layer.geometry
    rows, cols = g.shape
    nnz = g.nnz()
    item = np.dtype(args.dtype).itemsize
    index = np.dtype(sp.get_index_dtype(maxval=max(nnz, *g.shape))).itemsize
    memory = {"csr": nnz * (item + index) + (rows + 1) * index,
              "csc": nnz * (item + index) + (cols + 1) * index,
              "coo": nnz * (item + 2 * index), "dense": rows * cols * item,
              "operator (weights)": layer.weight.size * item}
    field = receptive_field_paths(g) > 0
    extent = [int(ix.max() - ix.min()) + 1 for ix in np.nonzero(field)]  # bounding box
    per_channel, channels = int(field.sum()), g.in_channels // g.groups
    lines = {
        "layer": layer.describe(),
        "input shape": g.input_shape,
        "output shape": g.output_shape,
        "matrix": f"{rows} x {cols}, nnz {nnz} (density {nnz / (rows * cols):.3%})",
        "memory": ", ".join(f"{k} {_bytes(v)}" for k, v in memory.items()),
        "receptive field": f"{'x'.join(map(str, extent))} (the center output reads "
                           f"{per_channel} positions x {channels} channel(s) = "
                           f"{per_channel * channels} inputs)",
    }
    for key, value in lines.items():
        print(f"{key:<16} {value}")


def _spy(layer: _Layer, args) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from . import plot
    from ._matrices import conv_matrix

    A = layer.geometry
    if args.values:
        A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    if args.raw:
        plot.save_raster(args.output, A, geometry=layer.geometry, max_bins=args.max_bins,
                         values=args.values)
    else:
        fig = Figure(figsize=(6.4, 5.6), layout="constrained")
        ax = fig.subplots()
        image = plot.spy(A, ax, geometry=layer.geometry, blocks=True, max_bins=args.max_bins,
                         values=args.values)
        if args.values:
            fig.colorbar(image, ax=ax, shrink=0.8, label="entry")
        elif image.get_array().shape != layer.geometry.shape:  # binned: counts
            fig.colorbar(image, ax=ax, shrink=0.8, label="nonzeros per pixel",
                         ticks=MaxNLocator(integer=True))
        ax.set_title(layer.describe().replace(", stride", ",\nstride"), fontsize=8)
        _savefig(fig, args.output)
    print(f"wrote {args.output}")


def _savefig(fig, path: str) -> None:
    fig.savefig(path, **({"metadata": {"Software": None}} if path.endswith(".png") else {}))


def _outward(value: float, rounding: str, digits: int = 10) -> str:
    """``value`` to ``digits`` significant digits, rounded outward so an interval stays valid."""
    exact = Decimal(repr(float(value)))
    if exact == 0:
        return "0"
    return str(exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding))


def _top_singular_values(layer: _Layer, k: int = 32) -> tuple[np.ndarray, str]:
    """All singular values where an exact method applies, else ARPACK's ``k`` largest."""
    import scipy.sparse.linalg as spla

    from ._matrices import conv_matrix
    from ._spectra import DENSE_LIMIT, singular_values
    from ._symbol import is_periodic

    g = layer.geometry
    if is_periodic(g) or min(g.shape) <= DENSE_LIMIT:
        how = "exact, by FFT" if is_periodic(g) else "exact, dense SVD"
        return singular_values(layer.weight, layer.input_shape, **layer.kwargs), how
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    k = min(k, min(A.shape) - 1)
    v0 = np.random.default_rng(0).standard_normal(min(A.shape))
    top = spla.svds(A, k=k, return_singular_vectors=False, v0=v0)
    return np.sort(top)[::-1], f"the {k} largest, by ARPACK"


def _spectrum(layer: _Layer, args) -> None:
    from matplotlib.figure import Figure

    from . import plot
    from ._spectral_norm import spectral_norm
    from ._symbol import frequency_map

    g = layer.geometry
    values, how = _top_singular_values(layer)
    show_map = g.ndim == 2 and all(a.size % a.stride == 0 and a.dilation * (a.kernel_size - 1)
                                   < a.size for a in g.axes)
    fig = Figure(figsize=(9.6 if show_map else 5.2, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if show_map else 1, squeeze=False)[0]
    plot.spectrum(values, axes[0])
    axes[0].set_title(f"singular values ({how})", fontsize=8)
    if show_map:
        fmap = frequency_map(layer.weight, g.input_size, stride=g.stride, dilation=g.dilation,
                             groups=g.groups)
        fig.colorbar(plot.frequency_heatmap(fmap, axes[1]), ax=axes[1], shrink=0.8)
        circular = "" if g.padding_mode == "circular" else " (of the circular layer)"
        axes[1].set_title(f"largest singular value per frequency{circular}", fontsize=8)
    fig.suptitle(layer.describe(), fontsize=8)
    _savefig(fig, args.output)
    norm = spectral_norm(layer.weight, layer.input_shape, **layer.kwargs)
    lower, upper = _outward(norm.lower, ROUND_FLOOR), _outward(norm.upper, ROUND_CEILING)
    print(f"spectral norm  {norm.value:.10g}  in [{lower}, {upper}]  ({norm.method})")
    print(f"wrote {args.output}")


def _export(layer: _Layer, args) -> None:
    import scipy.sparse as sp

    from ._matrices import conv_matrix

    A = conv_matrix(layer.weight, layer.input_shape, format=args.format, **layer.kwargs)
    sp.save_npz(args.output, A)
    print(f"wrote {args.output}: {args.format}, {A.shape[0]} x {A.shape[1]}, nnz {A.nnz}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse errors exit with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command_parser
    layer = _layer(args, command.error)
    handler = {"info": _info, "spy": _spy, "spectrum": _spectrum, "export": _export}
    try:
        handler[args.command](layer, args)
    except (ValueError, OSError) as exc:  # the memory limit, an unwritable output file
        command.error(str(exc))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
