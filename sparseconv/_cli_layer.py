"""The command line's layer: the one layer (or saved model's layer) a command works on, built
from its options -- a weight file or seeded random weights, the input shape, a transposed
layer -- and the messages that name those options (:func:`_reason`)."""

from __future__ import annotations

import functools
import io
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from ._geometry import ConvGeometry
from ._memory import USE_OPERATOR, USE_TRANSPOSE_OPERATOR, MatrixTooLargeError, check_memory
from ._shapes import conv_transpose_output_shape, output_padding_for
from ._validation import PADDING_STRINGS, first_index, int_tuple


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
    dtype: str = "float64"  # --dtype: the matrices' (spy, export), not the spectra's

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
        """The weights as given (or drawn, in float64), made on first use: ``info`` needs
        only their shape. The spectra and their certified intervals are of these (a new
        user's trial: ``spectrum --dtype float32`` certified the weights rounded to float32,
        an interval 7e-8 above the given layer's norm)."""
        weight = self.source() if callable(self.source) else self.source
        return weight.astype(np.float64, copy=False)  # (exact: real floats, checked integers)

    @functools.cached_property
    def matrix_weight(self) -> np.ndarray:
        """The weights in ``--dtype``, which the explicit matrices are built in."""
        return self.weight.astype(self.dtype, copy=False)

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
        if "Object arrays" in str(exc):  # (a new user's trial: said to be no np.save file)
            error(f"cannot read --weights {path}: it holds an array of Python objects "
                  "(dtype object), which loads only by unpickling: save a numeric array "
                  "(np.save(path, weight.astype(np.float64)))")
        if "pickle" in str(exc):
            _not_torch(path, error)  # (torch's legacy format is a pickle: a review)
            error(f"cannot read --weights {path}: not an array saved with np.save (.npy)")
        error(f"cannot read --weights {path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - np.load raises OSError, ValueError, EOFError...
        error(f"cannot read --weights {path}: {exc}")
    if not isinstance(weight, np.ndarray):  # a zip archive: .npz's named arrays, or torch's
        weight.close()
        _not_torch(path, error)  # (a new user's trial: a torch.save file, "an .npz archive")
        error(f"--weights {path} is an .npz archive; expected one array saved with np.save "
              "(.npy)")
    return weight


def _not_torch(path: str, error) -> None:
    """Refuse a PyTorch file given as ``--weights``, saying which kind it is."""
    kind = _model_format(path)
    if kind in ("pickle", "torchscript"):
        what = ("a TorchScript file (torch.jit.save)" if kind == "torchscript" else
                "a PyTorch file (torch.save)")
        error(f"--weights {path} is {what}; expected one array saved with np.save (.npy): "
              "np.save(path, layer.weight.detach().numpy()), or --model for a saved model")


def _load_weight(args, error) -> np.ndarray:
    weight = _read_array(args.weights, error)
    if weight.dtype.kind not in "iuf":
        error(f"--weights must hold a real numeric array, got dtype {weight.dtype}")
    if weight.dtype.kind in "iu" and weight.size and max(-int(weight.min()),
                                                         int(weight.max())) > 2**53:
        error("--weights holds integers beyond 2**53, which float64 would round (the spectra "
              f"read the weights in float64), such as {weight.flat[np.abs(weight).argmax()]}")
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
    return weight


def _random_shape(args, error) -> tuple[int, ...]:
    ndim = len(args.in_shape) - 1
    if args.out_channels is None or args.kernel_size is None:
        error("--out-channels and --kernel-size are required unless --weights or --model "
              "gives them")
    for option, value in (("--out-channels", args.out_channels),
                          ("--kernel-size", args.kernel_size)):  # (named by its option, not
        if max(value if isinstance(value, tuple) else (value,)) > 2**60:  # as weight_shape)
            error(f"{option} must be at most 2**60, got {value}")
    kernel = args.kernel_size
    kernel = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
    if len(kernel) != ndim or min(kernel) < 1:
        error("--kernel-size must be a positive integer" + (
            f" or {ndim} of them (one per spatial dimension of --in-shape)" if ndim > 1 else
            f" (--in-shape {','.join(map(str, args.in_shape))} has one spatial dimension)")
            + f", got {args.kernel_size}")
    if args.in_shape[0] % args.groups:
        error(f"--groups {args.groups} must divide the input channels {args.in_shape[0]}")
    if args.out_channels % args.groups:
        error(f"--groups {args.groups} must divide --out-channels {args.out_channels}")
    if args.transposed:  # PyTorch's ConvTranspose weight: (C_in, C_out/groups, *kernel)
        return (args.in_shape[0], args.out_channels // args.groups, *kernel)
    return (args.out_channels, args.in_shape[0] // args.groups, *kernel)


def _random_weight(shape: tuple[int, ...], seed: int, dtype: str) -> np.ndarray:
    # float64 draws (the layer), and at most one copy in --dtype later (its matrices)
    check_memory(math.prod(shape) * (8 + np.dtype(dtype).itemsize),
                 f"random weights of shape {shape}")
    weight = np.random.default_rng(seed).standard_normal(shape)
    weight /= math.sqrt(math.prod(shape[1:]))  # fan-in
    return weight


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
    if args.padding_mode != "zeros" and all(a.pad == (0, 0) for a in geometry.axes):
        # (a new user's trial: --padding-mode circular alone gave the valid layer, as
        # PyTorch's does, with no word; its spectrum figure then set the valid layer's values
        # beside the periodic layer's symbol)
        print(f"{args.command_parser.prog}: note: --padding-mode {args.padding_mode} with no "
              "padding reads none, as PyTorch's: this is the unpadded layer (pass --padding "
              "same, or the kernel's half, for the padded one)", file=sys.stderr)
    return _Layer(source, tuple(args.in_shape), kwargs, geometry, dtype=args.dtype)


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
    return _Layer(source, conv_input, kwargs, geometry, output_padding=pads, dtype=args.dtype)


def _model_run_failed(exc: Exception, option: str, shape: Sequence[int],
                      error: Callable[[str], NoReturn]) -> NoReturn:
    """The one line for a model that failed on the input shape ``option`` gave: with the batch
    axis given (``BatchAxisGiven``), or its forward's own error (``ForwardFailed``)."""
    from sparseconv._torch_probe import BatchAxisGiven

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
    module, input_shape, output_shape = _called_convolution(_model_records(args, error), args,
                                                            error)
    from sparseconv._torch_kinds import _CONV_T
    from sparseconv._torch_layers import called_output_size
    from sparseconv._torch_module import _hookless_layer
    try:
        conv = _hookless_layer(module, input_shape,
                               called_output_size(module, input_shape, output_shape)).conv
    except (ValueError, TypeError) as exc:
        error(f"--layer {args.layer}: {_reason(exc, layer=False)}")
    if conv is None:  # a transposed layer with output_padding >= stride on an axis
        error(f"--layer {args.layer}: its output padding is at least its stride on an axis, "
              "so it is no adjoint of one convolution, which these commands take "
              "(sparseconv.torch.matrix(module, input_shape) builds it)")
    assert conv is not None  # (error exits)
    weight, shape, kwargs = conv
    with np.errstate(over="ignore"):
        cast = weight.astype(args.dtype)
    if (where := first_index(~np.isfinite(cast))) is not None:
        error(f"--layer {args.layer}'s weight must be finite in --dtype {args.dtype}: "
              f"{weight[where]} at index {where}")
    geometry = ConvGeometry.from_weight(weight.shape, shape, **kwargs)
    if isinstance(module, _CONV_T):  # the convolution's output is the transposed layer's input
        pads = output_padding_for(output_shape[1:], input_shape[1:], geometry.kernel_size,
                                  geometry.stride, geometry.padding, geometry.dilation)
        return _Layer(weight, shape, kwargs, geometry, args.layer, output_padding=pads,
                      dtype=args.dtype)
    return _Layer(weight, shape, kwargs, geometry, args.layer, dtype=args.dtype)


def _model_records(args, error) -> list:
    """``--model`` loaded (in eval mode, said if it was saved in training mode) and traced on
    ``--in-shape`` (:func:`sparseconv.torch.trace`'s records); a missing torch, a model that
    does not load or does not run on that shape: the command's error."""
    if min(args.in_shape) < 1:
        error(f"--in-shape must be positive integers C[,H,W,...] (the model's input), got "
              f"{','.join(map(str, args.in_shape))}")
    _model_kind(args.model, error)  # (before torch's import: a missing file said at once)
    try:
        import sparseconv.torch as sct
        from sparseconv._torch_probe import BatchAxisGiven, ForwardFailed
    except ImportError as exc:
        error(_reason(exc, layer=False))
    model = _load_model(args.model, args.trust_pickle, error, args.command)
    if any(getattr(module, "training", False) for module in model.modules()):
        # said, as the report says it (an audit: switched silently)
        print(f"{args.command_parser.prog}: {_TRAINING_NOTE}", file=sys.stderr)
    model.eval()  # as the report: never analysed in training mode (a BatchNorm's statistics)
    try:
        return sct.trace(model, args.in_shape)
    except (BatchAxisGiven, ForwardFailed) as exc:
        _model_run_failed(exc, "--in-shape", args.in_shape, error)
    except (ValueError, TypeError, RuntimeError) as exc:
        error(f"cannot trace --model {args.model}: {_reason(exc, layer=False)}")
    raise AssertionError("unreachable: error exits")  # pragma: no cover


def _called_convolution(records: list, args, error) -> tuple[Any, tuple, tuple]:
    """``(module, input_shape, output_shape)`` of the convolution ``--layer`` among the
    model's ``records``; a name that is no convolution the model calls, or one called on
    several shapes: the command's error, listing the model's convolutions."""
    from sparseconv._torch_kinds import _CONV, _CONV_T
    calls = [record for record in records if record.name == args.layer]
    convolutions = list(dict.fromkeys(record.name for record in records
                                      if isinstance(record.module, (*_CONV, *_CONV_T))))
    if not calls:
        error(f"--layer {args.layer} is not a module the model calls on --in-shape "
              f"{','.join(map(str, args.in_shape))}; its convolutions: "
              f"{', '.join(convolutions) or 'none'}")
    module = calls[0].module
    if not isinstance(module, (*_CONV, *_CONV_T)):
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
    return module, input_shape, output_shape


# ---------------------------------------------------------------------------------------------
# report: a PyTorch model, not one layer.
# ---------------------------------------------------------------------------------------------
#: torch's legacy (pickle) format begins with this number, pickled (torch.serialization's
#: MAGIC_NUMBER, written here so that --weights can name such a file without torch).
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _model_format(path: str) -> str | None:
    """"torchscript" (``torch.jit.save``), "pickle" (``torch.save``: a zip archive or the legacy
    pickle), "plain pickle" (``pickle.dump``, which ``torch.load`` cannot read), or None.

    Both of torch's archives are zip files; only TorchScript's holds compiled code
    (``code/``, ``constants.pkl``). torch's legacy format is a pickle whose first object is
    its magic number, in any pickle protocol. Reads the file's directory, or a pickle's first
    opcodes (parsed by :mod:`pickletools` from at most its first 64 KiB, not run), never
    unpickles.
    """
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        return "pickle" if any(n.endswith("data.pkl") for n in names) else None
    with open(path, "rb") as stream:
        # (a review: a 14-byte file whose opcode claimed 2**62 bytes made pickletools read
        # that many, and the command said "out of memory"; a bytes buffer returns what it has)
        head = io.BytesIO(stream.read(2**16))
    try:
        for opcode, value, _ in pickletools.genops(head):
            if opcode.name not in ("PROTO", "FRAME"):
                if value == _TORCH_MAGIC and opcode.name in ("LONG", "LONG1", "LONG4"):
                    return "pickle"
                # (a new user's trial: pickle.dump's file got torch's "Invalid magic number;
                # corrupt file?" after --trust-pickle); protocols 2 and up only, which begin
                # with PROTO: a file of text may parse as protocol 0's opcodes
                return "plain pickle" if head.getvalue()[:1] == b"\x80" else None
    except ValueError:  # not a pickle after all
        return None
    return None


def _model_kind(path: str, error) -> str:
    """``--model``'s format (:func:`_model_format`), or the command's error for a file that
    cannot be read or that torch cannot load: said before torch is imported (a new user's
    trial: a missing file was said after 3 to 7 s of importing torch)."""
    try:
        kind = _model_format(path)
    except OSError as exc:
        error(f"cannot read --model {path}: {exc.strerror or exc}")
    if kind is None:
        error(f"--model {path} is not a file written by torch.save or torch.jit.save")
    if kind == "plain pickle":
        error(f"--model {path} is a Python pickle that torch.save did not write (pickle.dump?), "
              "which torch.load cannot read: save the model with torch.save(model), or "
              "torch.jit.script(model).save(path)")
    return str(kind)


def _load_model(path: str, trust_pickle: bool, error, command: str = "report"):
    import pickle
    import warnings

    kind = _model_kind(path, error)
    import torch
    if kind == "torchscript":  # TorchScript's loader builds modules, it runs no Python code
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript: not the user's
                warnings.simplefilter("ignore", DeprecationWarning)  # to act on, here
                return torch.jit.load(path, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch.jit.load raises RuntimeError, Error...
            from sparseconv._torch_probe import error_line
            error(f"cannot load the TorchScript file --model {path}: {error_line(exc)}")
    try:  # weights_only runs no code: a state_dict loads, a pickled module does not
        with warnings.catch_warnings():  # torch's note on its own legacy file's protocol
            warnings.filterwarnings("ignore", "Detected pickle protocol")  # (a new user's
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # trial)
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
        held = [key for key, value in loaded.items() if isinstance(value, torch.nn.Module)]
        if held:  # (a checkpoint: a new user's trial was told "a state_dict?")
            error(f"--model {path} holds a dict (a checkpoint?) whose entry {held[0]!r} is a "
                  f"model ({type(loaded[held[0]]).__name__}): save that module alone with "
                  f"torch.save(checkpoint[{held[0]!r}], path)")
        error(f"--model {path} holds a dict (a state_dict?), not a model: save the module itself "
              "with torch.save(model)")
    if not isinstance(loaded, torch.nn.Module):
        error(f"--model {path} holds a {type(loaded).__name__}, not a torch.nn.Module")
    return loaded


# ---------------------------------------------------------------------------------------------
# The messages, in the command line's option names.
# ---------------------------------------------------------------------------------------------
#: The library's argument names, as this command line's options spell them.
_OPTION_OF = {"input_shape": "--in-shape", "padding_mode": "--padding-mode",
              "kernel_size": "--kernel-size", "out_channels": "--out-channels",
              "stride": "--stride", "padding": "--padding", "dilation": "--dilation",
              "groups": "--groups", "zoom": "--zoom", "blocksize": "--blocksize",
              "format": "--format", "values": "--values", "max_bins": "--max-bins",
              "output_padding": "--output-padding"}


def _as_options(message: str) -> str:
    """A library message with its argument names as options: ``stride must ...`` -> ``--stride
    must ...``, ``blocksize=(2, 3)`` -> ``--blocksize (2, 3)`` (a name that leads the message,
    or is followed by ``=``; English words such as "padding" elsewhere are left alone)."""
    for name, option in _OPTION_OF.items():
        message = re.sub(rf"^{name}(?=[ \[])", option, message)
        message = re.sub(rf"(?<![\w.-]){name}=", f"{option} ", message)
    # --zoom as typed, R0:R1,C0:C1 (a new user's trial: "--zoom ((4, 0), (0, 1))")
    message = re.sub(r"--zoom \(\((-?\d+), (-?\d+)\), \((-?\d+), (-?\d+)\)\)",
                     r"--zoom \1:\2,\3:\4", message)
    # (a flag: given, or not)
    return message.replace("--values True", "--values").replace("--values False", "no --values")


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
        message = message.replace(f"{USE_OPERATOR}, or raise", "raise").replace(
            f"{USE_TRANSPOSE_OPERATOR}, or raise", "raise").replace(  # (a review: "; or raise")
            "with sparseconv.set_memory_limit(nbytes) or SPARSECONV_MEMORY_LIMIT",
            "in the environment, e.g. SPARSECONV_MEMORY_LIMIT="  # (a new user's trial: 16G
            # offered for a matrix of 54 GiB)
            + (f"{-(-exc.needed // 2**30)}G" if exc.needed else "16G"))
    return _as_options(message) if layer else message

