"""PyTorch modules translated into sparseconv layers, once: the core of :mod:`sparseconv.torch`.

:func:`_layer` reads a module's weights (as float64 numpy copies) and hyper-parameters and
returns a :class:`_Layer`: its input and output shapes, a builder of its ``scipy.sparse``
matrix, a ``LinearOperator`` (matrix-free where sparseconv has one: convolutions, transposed
convolutions, ``nn.Linear``), its affine offset (the bias broadcast over the output) and, where
the module is a convolution in disguise, the weight and arguments that sparseconv's certified
spectra take. Every public function of the adapter starts from that one description, so a
module is translated in one place; :func:`_refuse` says which modules are linear.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import sparseconv as sc
from sparseconv._formats import in_format, repeated_block, repeated_block_bytes
from sparseconv._layout import channels_last_order
from sparseconv._matrices import format_bytes
from sparseconv._memory import check_memory, check_sparse_memory
from sparseconv._resampling import MODES as INTERPOLATION_MODES
from sparseconv._resampling import adaptive_output_size, interpolate_output_size
from sparseconv._shapes import output_padding_for
from sparseconv._typing import Layout, PaddingMode, SparseFormat
from sparseconv._validation import (
    as_weight,
    check_layout,
    first_index,
    int_tuple,
    normalize_padding,
    positive_int,
    spatial_size,
)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# normalizations by running statistics in eval mode: a per-channel affine map, as BatchNorm
_RUNNING_NORMS = (*_BATCHNORM, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
                  nn.InstanceNorm3d)
# normalizations by each sample's own statistics, in either mode: not linear
_SAMPLE_NORMS = tuple(getattr(nn, name) for name in ("GroupNorm", "LayerNorm",
                                                       "LocalResponseNorm", "RMSNorm")
                      if hasattr(nn, name))
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_RESAMPLE = (*_ADAPTIVE, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle)
_PAD_MODES: dict[type, PaddingMode] = {
    nn.ZeroPad1d: "zeros", nn.ZeroPad2d: "zeros", nn.ZeroPad3d: "zeros",
    nn.ConstantPad1d: "zeros", nn.ConstantPad2d: "zeros", nn.ConstantPad3d: "zeros",
    nn.ReflectionPad1d: "reflect", nn.ReflectionPad2d: "reflect", nn.ReflectionPad3d: "reflect",
    nn.ReplicationPad1d: "replicate", nn.ReplicationPad2d: "replicate",
    nn.ReplicationPad3d: "replicate",
    nn.CircularPad1d: "circular", nn.CircularPad2d: "circular", nn.CircularPad3d: "circular",
}
# patches (im2col and its adjoint) and a permutation of the channels
_PATCHES = (nn.Unfold, nn.Fold, nn.ChannelShuffle)
_SUPPORTED = (*_CONV, *_CONV_T, *_POOL, *_RUNNING_NORMS, *_DROPOUT, *_PAD_MODES, *_RESAMPLE,
              *_PATCHES, nn.Linear, nn.Flatten, nn.Unflatten, nn.Identity)
# torch's modules whose forward does not read `training` (containers compute nothing; the
# others are pure functions of their input and parameters): their mode does not matter
_MODELESS = (*_CONV, *_CONV_T, *_POOL, *_PAD_MODES, *_RESAMPLE, *_PATCHES, nn.Linear,
             nn.Flatten, nn.Unflatten, nn.Identity, nn.Sequential, nn.ModuleList, nn.ModuleDict,
             nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Hardtanh, nn.ELU, nn.Sigmoid,
             nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU,
             nn.PReLU, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Softshrink, nn.Softplus,
             nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def mode_matters(module: nn.Module) -> bool:
    """Whether ``module`` in training mode may compute otherwise than in eval mode: any module
    but torch's own modeless ones (:data:`_MODELESS`; a user's subclass may read
    ``training``; a parametrized layer's parametrizations are modules of their own, checked as
    such)."""
    return mode_hooked(module) or not (is_torch_module(module) and isinstance(module, _MODELESS))


def mode_hooked(module: nn.Module) -> bool:
    """Whether ``module`` has a hook that may read its mode (spectral_norm's does;
    sparseconv's own do not)."""
    return any(
        not (isinstance(hook, _weight_hooks()[::2]) or getattr(hook, "sparseconv", False))
        for hook in (*module._forward_hooks.values(), *module._forward_pre_hooks.values()))


# modules whose input and output are (C, *spatial) activations, whose matrix and operator
# layout="channels_last" takes in (*spatial, C) order (the others have no channel axis)
_CHANNEL_FIRST = (*_CONV, *_CONV_T, *_POOL, *_RUNNING_NORMS, *_DROPOUT, *_PAD_MODES,
                  *_RESAMPLE, nn.ChannelShuffle, nn.Identity)


def check_module_layout(module: nn.Module, layout: Any) -> Layout:
    """``layout`` (:func:`sparseconv._validation.check_layout`), if the module has a channel
    axis to move: ``nn.Linear`` works on ``(*, in_features)``, ``Flatten``, ``Unflatten``,
    ``Unfold`` and ``Fold`` change the axes themselves."""
    layout = check_layout(layout)
    if layout == "channels_last":
        _refuse(module)  # (a module that is not linear: said as such first, a review)
    if layout == "channels_last" and not (isinstance(module, _CHANNEL_FIRST)
                                          or is_empty_sequential(module)):
        raise ValueError(f"layout='channels_last' applies to modules from (C, *spatial) to "
                         f"(C, *spatial) activations; {type(module).__name__} has no channel "
                         "axis to move (use layout='channels_first')")
    return layout


# activations with Lipschitz constant at most 1 (LeakyReLU only when |negative_slope| <= 1)
_ONE_LIPSCHITZ = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Hardtanh)  # (Softplus jumps)


# ---------------------------------------------------------------------------------------------
# One module as a layer
# ---------------------------------------------------------------------------------------------
def _numpy(tensor) -> np.ndarray:
    """A float64 numpy copy of a parameter or buffer (never a view of the module's memory)."""
    return np.array(tensor.detach().cpu().to(torch.float64).numpy(), copy=True)


@dataclass(frozen=True, eq=False)
class _Layer:
    """A linear module translated once: shapes, builders and the arguments its spectra take."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    build: Callable[..., sp.sparray]                 # format -> the matrix
    # () -> the bias over the output, flat: built on first use (sized against the memory
    # limit), never for a matrix, an operator or a spectrum, which do not need it
    make_offset: Callable[[], np.ndarray] | None = None
    make_operator: Callable[..., spla.LinearOperator] | None = None
    conv: tuple[np.ndarray, tuple[int, ...], dict] | None = None  # weight, shape, kwargs
    repeat: int = 1  # the matrix is `repeat` copies of that convolution's, block-diagonally
    # build and make_operator take dtype=, layout= (and build blocksize=) themselves: the
    # array API's convolutions, which assemble any of them directly
    native: bool = False

    def matrix(self, format: SparseFormat = "csr", dtype: np.dtype | None = None,
               layout: Layout = "channels_first", blocksize: tuple[int, int] | None = None,
               ) -> sp.sparray:
        """The matrix in ``format``, ``dtype`` (``None``: float64) and ``layout``; the
        arguments checked by the caller (``_torch_module._matrix_options``)."""
        if self.native:
            return self.build(format, dtype=dtype, layout=layout, blocksize=blocksize)
        if dtype is None and layout == "channels_first" and blocksize is None:
            return self.build(format)
        a = sp.csr_array(self.build("csr"))
        if blocksize is not None and (a.shape[0] % blocksize[0] or a.shape[1] % blocksize[1]):
            raise ValueError(f"blocksize={blocksize} must divide the shape {a.shape} of the "
                             f"{self.name} matrix")
        # each conversion copies the matrix beside it, sized first (a review: float32 peaked
        # at 1.6x a limit the CSR matrix alone had passed)
        held = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
        what = f"the {a.shape[0]} x {a.shape[1]} matrix of {self.name}"
        if layout == "channels_last":  # P_out A P_in^T: two indexed copies, and the orders
            check_memory(3 * held + 8 * sum(a.shape), f"{what} in channels_last order",
                         "use the layer's operator")
            a = sp.csr_array(a[channels_last_order(self.output_shape)][
                :, channels_last_order(self.input_shape)])
        final = np.dtype(np.float64 if dtype is None else dtype)
        if dtype is not None:
            check_memory(held + format_bytes(a.nnz, a.shape, final, a.indices.dtype, "csr"),
                         f"{what} in {final}", "use the layer's operator")
            a = a.astype(dtype)
        if format != "csr" or blocksize is not None:
            check_memory(held + format_bytes(a.nnz, a.shape, final, a.indices.dtype, format),
                         f"{what} in {format.upper()}", "use the layer's operator")
        return in_format(a, format, blocksize)

    def operator(self, dtype: np.dtype | None = None, layout: Layout = "channels_first",
                 ) -> spla.LinearOperator:
        """The ``LinearOperator`` in ``dtype`` and ``layout``: matrix-free where the layer has
        one of its own (for the defaults, and always for the native ones), else the matrix's."""
        if self.native:
            assert self.make_operator is not None
            return self.make_operator(dtype=dtype, layout=layout)
        if dtype is not None or layout != "channels_first":
            return spla.aslinearoperator(self.matrix("csr", dtype, layout))
        if self.make_operator is not None:
            return self.make_operator()
        return spla.aslinearoperator(self.build("csr"))

    @functools.cached_property
    def offset(self) -> np.ndarray | None:
        """The bias over the output, flat (``None``: no bias), built once on first use."""
        if self.make_offset is None:
            return None
        self._check_offset_memory()
        return self.make_offset()

    def _check_offset_memory(self) -> None:
        check_memory(8 * math.prod(self.output_shape), f"the offset of {self.name} (a vector "
                     f"over its output shape {self.output_shape})")

    def offset_in(self, dtype: np.dtype | None = None, layout: Layout = "channels_first",
                  ) -> np.ndarray:
        """The affine offset (zeros where there is none) in ``dtype`` and ``layout``."""
        self._check_offset_memory()
        b = np.zeros(math.prod(self.output_shape)) if self.offset is None else self.offset
        if layout == "channels_last":
            b = b[channels_last_order(self.output_shape)]
        return b if dtype is None else b.astype(dtype)


def _repeated(values: np.ndarray, count: int) -> Callable[[], np.ndarray]:
    """``() -> np.repeat(values, count)``: a per-channel bias over the output, on demand."""
    return functools.partial(np.repeat, values, count)


def _identity(n: int, name: str, format: SparseFormat) -> sp.sparray:
    check_sparse_memory(n, n, np.float64, f"the {n} x {n} identity matrix of {name}")
    return sp.eye_array(n, format=format)


def _input_shape(input_shape, ndim: int | None, name: str) -> tuple[int, ...]:
    # the arrays' normalizer: ints only (8.5 or "388" is refused, never truncated); a 1-D
    # integer tensor (x.shape[1:] as a tensor) as its list
    if isinstance(input_shape, torch.Tensor) and input_shape.ndim == 1 and not (
            input_shape.is_floating_point() or input_shape.is_complex()):
        input_shape = input_shape.tolist()
    shape = spatial_size(input_shape, "input_shape")
    if ndim is not None and len(shape) != ndim + 1:
        want = f"(C, *spatial) with {ndim} spatial axes"
        # one axis too many: the batch, most likely (x.shape; an audit: trace says so,
        # this did not)
        batch = (f"; without the batch axis, input_shape={shape[1:]}"
                 if len(shape) == ndim + 2 else "")
        raise ValueError(f"input_shape must be {want} of positive ints for {name}, got "
                         f"{input_shape!r}{batch}")
    return shape


class Interpolate(nn.Upsample):
    """A call ``F.interpolate(x, ...)`` as a module: ``nn.Upsample`` with ``antialias``,
    which torch's module does not take (the layer of a functional call in a graph)."""

    def __init__(self, *args: Any, antialias: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.antialias = antialias

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor, self.antialias)


def is_torch_class(module: nn.Module, base: type | None = None) -> bool:
    """Whether ``module`` computes exactly what its torch.nn class does: an instance of that
    class itself (or of the subclass ``torch.nn.utils.parametrize`` makes of it, which adds
    nothing to its computation), with no ``forward`` of its own set on the instance. A
    subclass may override ``forward``, ``_conv_forward`` or ``__call__``; a user's class of
    the same name is not torch's."""
    cls: Any = type(module)
    if parametrize.is_parametrized(module) and cls.__name__ == (
            f"Parametrized{cls.__base__.__name__}"):
        cls = cls.__base__
    # torch's (UpsamplingNearest2d is Upsample's), or F.interpolate's call as a module
    ours = getattr(nn, cls.__name__, None) is cls or cls is Interpolate
    # a method of the class set on the instance (forward, _conv_forward, ...) replaces it (a
    # review: conv._conv_forward = ... scaling by 20 passed for torch's own Conv2d)
    # (but nn.Module.compile()'s _compiled_call_impl, the module's own call compiled)
    replaced = any(callable(value) and hasattr(cls, key) and key != "_compiled_call_impl"
                   for key, value in vars(module).items())
    return ours and (base is None or issubclass(cls, base)) and not replaced


def is_parametrized(module: nn.Module) -> bool:
    """A module whose weight ``torch.nn.utils.parametrize`` computes (spectral_norm,
    weight_norm, orthogonal), eager or compiled by TorchScript (whose copy keeps the class
    name ``Parametrized<Layer>`` and the ``parametrizations`` child, not torch's markers)."""
    if isinstance(module, torch.jit.ScriptModule):
        return (str(getattr(module, "original_name", "")).startswith("Parametrized")
                and "parametrizations" in dict(module.named_children()))
    return parametrize.is_parametrized(module)


def is_leaf(module: nn.Module) -> bool:
    """A module that is one layer: no submodule but its ``parametrizations``
    (:func:`is_parametrized`), which compute its weight and are no layers of the network."""
    return all(name == "parametrizations" and is_parametrized(module)
               for name, _ in module.named_children())


def is_torch_module(module: nn.Module) -> bool:
    """A module of a class torch defines (or compiles: a ScriptModule), not the user's."""
    return type(module).__module__.startswith("torch.")


def leaf_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every leaf of ``model`` (:func:`is_leaf`) with its qualified name, in module order; the
    modules inside a layer's ``parametrizations`` are not leaves of the network."""
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name == p or name.startswith(p + ".") for p in inside):
            continue
        if not name and not is_torch_module(module):
            continue  # a model of the user's own with no submodules: its forward's calls are
            # functions, not a layer (a torch.nn module alone is its one leaf)
        if is_parametrized(module):
            inside.append(f"{name}.parametrizations" if name else "parametrizations")
        if type(module) is nn.MultiheadAttention:  # one layer, whose forward reads its
            # out_proj's weights without calling it (a new user's trial: no record at all)
            inside.append(name)
            yield name, module
        elif is_leaf(module):
            yield name, module


def _is_network(module: nn.Module) -> bool:
    """A container, or a model of the user's own with submodules (not one of PyTorch's
    compound layers, such as attention)."""
    return next(module.children(), None) is not None and (
        isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        or not type(module).__module__.startswith("torch."))


def is_empty_sequential(module: nn.Module) -> bool:
    """An empty ``nn.Sequential``: the identity (the shortcut of many ResNet definitions,
    ``self.shortcut = nn.Sequential()``), read as ``nn.Identity``."""
    return type(module) is nn.Sequential and len(module) == 0


def is_reshape(module: nn.Module) -> bool:
    """A module whose matrix is the identity on the flat vector: ``Flatten``, ``Unflatten``,
    ``Identity``, an empty ``Sequential``, ``Dropout`` (in eval mode)."""
    return isinstance(module, (nn.Flatten, nn.Unflatten, nn.Identity, *_DROPOUT)) or \
        is_empty_sequential(module)


def _weight_hooks() -> tuple[Any, Any, Any]:
    """The forward pre-hooks of ``torch.nn.utils.weight_norm`` and ``spectral_norm`` (the
    old-style, non-parametrization ones) and of ``torch.nn.utils.prune``: they only recompute
    a parameter from others (``g v / ||v||``, ``weight_orig / sigma``, ``weight_orig *
    weight_mask``) before each call, which :func:`parameter` does itself."""
    return (importlib.import_module("torch.nn.utils.weight_norm").WeightNorm,
            importlib.import_module("torch.nn.utils.spectral_norm").SpectralNorm,
            importlib.import_module("torch.nn.utils.prune").BasePruningMethod)


def _hook_name(hook: Any) -> str:
    return getattr(hook, "__name__", type(hook).__name__)


def hook_reason(module: nn.Module, label: str) -> str:
    """Why ``module``'s output may not be what its class computes from its parameters, or "":
    a global forward hook or pre-hook (``torch.nn.modules.module``), or one of its own (but
    the weight recomputations of :func:`_weight_hooks`). A hook can change any input or
    output; one that only records them cannot be told apart, so both are refused."""
    from torch.nn.modules import module as torch_module

    if any(getattr(torch_module, name, None) for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks",
            "_global_forward_hooks_with_kwargs")):
        return "a global forward hook is registered (torch.nn.modules.module), which may " \
               "change every module's output"
    for hook in module._forward_pre_hooks.values():
        if _hook_name(hook) == "_infer_parameters":  # (a review: the advice to remove it)
            return (f"{label} has parameters not yet initialized (a lazy module): run one "
                    "forward pass first, module(torch.zeros((1, *input_shape)))")
        if not isinstance(hook, _weight_hooks()):
            return (f"{label} has a forward pre-hook ({_hook_name(hook)}), which may change "
                    "its input")
    for hook in module._forward_hooks.values():
        return f"{label} has a forward hook ({_hook_name(hook)}), which may change its output"
    return ""


def model_hook_reason(model: nn.Module) -> str:
    """:func:`hook_reason` of the first of ``model``'s modules that has one, named by its
    qualified name, or ""."""
    for name, module in model.named_modules():
        why = hook_reason(module, f"module {name!r}" if name else type(model).__name__)
        if why:
            return why
    return ""


def check_module(value: Any, name: str) -> None:
    """Refuse, by ``name``, a ``value`` that is no ``torch.nn.Module`` (a new user's trial:
    a function, or the state_dict ``torch.load`` returned, met ``AttributeError``), or one
    with a parameter or buffer on the meta device (a ``ValueError``)."""
    if not isinstance(value, nn.Module):
        hint = (" (a state_dict? build the model and call model.load_state_dict(...) first)"
                if isinstance(value, Mapping) else "")
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}{hint}")
    # (a new user's trial: a model on the meta device met the probe's own torch.equal, in an
    # error that blamed the model's forward, or "Cannot copy out of meta tensor")
    meta = next((key for key, tensor in (*value.named_parameters(), *value.named_buffers())
                 if tensor.device.type == "meta"), None)
    if meta is not None:
        raise ValueError(f"{name}'s {meta!r} is on the meta device, which holds shapes but no "
                         "values: sparseconv.torch reads the values (materialize it first, "
                         f"e.g. {name}.to_empty(device='cpu'), then initialize or load them)")


def refuse_hooks(module: nn.Module) -> None:
    """:func:`hook_reason`'s reason as a ``TypeError``, with what to do about it (a lazy
    module not yet run: a ``ValueError``, as :func:`trace` raises)."""
    why = hook_reason(module, type(module).__name__)
    if "not yet initialized" in why:  # a lazy module: its own hook, not one to remove
        raise ValueError(why)
    if why:
        raise TypeError(f"{why}: sparseconv.torch reads what the module's class computes; "
                        "remove the hook first (handle.remove(), on the handle its "
                        "registration returned)")


def parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module``'s parameter ``name`` as its next call would use it: recomputed here where an
    old-style ``torch.nn.utils.weight_norm`` or ``spectral_norm`` pre-hook recomputes it
    before each call (the attribute holds the last call's value, stale after an optimizer
    step), or a ``torch.nn.utils.prune`` pre-hook (``weight_orig * weight_mask``); a
    parametrization's is computed on access anyway."""
    weight_norm, spectral_norm, pruning = _weight_hooks()
    hook: Any
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, weight_norm) and hook.name == name:
            return hook.compute_weight(module)
        if isinstance(hook, pruning) and hook._tensor_name == name:
            return hook.apply_mask(module)
        if isinstance(hook, spectral_norm) and hook.name == name:  # (in eval mode: _refuse)
            return hook.compute_weight(module, do_power_iteration=False)
    return getattr(module, name)


def _refuse(module: nn.Module) -> None:
    name = type(module).__name__
    if is_empty_sequential(module):
        return
    if not isinstance(module, _SUPPORTED) and _is_network(module):
        raise TypeError(f"{name} is a network of modules, not one layer: "
                        "sparseconv.torch.network_operator(model, input_shape) makes one "
                        "operator of a linear network, and lipschitz_report(model, "
                        "input_shape) bounds each of its layers")
    base: Any = next((cls for cls in type(module).__mro__ if cls in _SUPPORTED), None)
    if base is not None and not is_torch_class(module, base):
        raise TypeError(f"{name} is a subclass of {base.__name__}, or has its own forward (or "
                        "another of its class's methods set on the instance): "
                        f"sparseconv.torch reads a {base.__name__}'s arguments, not what your "
                        "code computes; use torch's own class")
    instance = isinstance(module, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d))
    if isinstance(module, _SAMPLE_NORMS) or instance and not module.track_running_stats:
        raise TypeError(f"{name} normalizes each sample by its own statistics (in eval mode "
                        f"too): it is not linear ({module!r}); BatchNorm, SyncBatchNorm and "
                        "InstanceNorm with track_running_stats=True are, in eval mode")
    if not isinstance(module, _SUPPORTED):
        raise TypeError(f"{name} is not a linear module sparseconv.torch supports ({module!r}); "
                        "supported: Conv*d, ConvTranspose*d, AvgPool*d, AdaptiveAvgPool*d, "
                        "BatchNorm*d, SyncBatchNorm, InstanceNorm*d (with running statistics), "
                        "Linear, Flatten, Unflatten, Identity, Dropout, Upsample, "
                        "PixelShuffle, PixelUnshuffle, Unfold, Fold, ChannelShuffle, the "
                        "padding modules")
    stateful = [key for key, p in getattr(module, "parametrizations", {}).items()
                if any(m.training and next(m.buffers(), None) is not None for m in p)]
    stateful += [getattr(hook, "name", "weight") for hook in module._forward_pre_hooks.values()
                 if isinstance(hook, _weight_hooks()[1]) and module.training]
    if stateful:  # spectral_norm's power iteration runs on every read of the weight
        raise ValueError(f"{name} is in training mode, where what computes its "
                         f"{stateful[0]!r} may update its state on every use (as "
                         "spectral_norm's power iteration does): call .eval() on the model "
                         "first")
    if isinstance(module, _RUNNING_NORMS):
        if module.training:
            raise ValueError(f"{name} is in training mode, where it normalizes with the batch's "
                             "statistics: call .eval() on the model first")
        if module.running_mean is None:
            raise TypeError(f"{name} with track_running_stats=False normalizes with the batch's "
                            "statistics even in eval mode: it is not linear")
    if isinstance(module, _DROPOUT) and module.training:
        raise ValueError(f"{name} is in training mode, where it is random: call .eval() on the "
                         "model first")


def _refuse_complex(module: nn.Module) -> None:
    """A complex module is linear, but read as float64 its imaginary parts would be dropped:
    a wrong matrix. Refused when it is read (a trace still lists it as linear)."""
    complex_ = sorted({str(t.dtype) for t in (*module.parameters(), *module.buffers())
                       if t.is_complex()})
    if complex_:
        raise TypeError(f"{type(module).__name__} has complex parameters "
                        f"({', '.join(complex_)}): sparseconv.torch reads real modules; the "
                        "arrays' functions take complex weights (sparseconv.conv_matrix, "
                        "ConvOperator, spectral_norm)")


def _layer(module: nn.Module, input_shape: Sequence[int], output_size=None) -> _Layer:
    _refuse(module)
    _refuse_complex(module)
    if isinstance(module, _CONV_T):
        return _conv_transpose_layer(module, input_shape, output_size)
    if output_size is not None:
        raise TypeError(f"output_size applies to ConvTranspose*d only, not to "
                        f"{type(module).__name__}")
    if isinstance(module, _CONV):
        return _conv_layer(module, input_shape)
    if isinstance(module, nn.Linear):
        return _linear_layer(module, input_shape)
    if isinstance(module, _POOL):
        return _pool_layer(module, input_shape)
    if isinstance(module, _RUNNING_NORMS):
        return _batchnorm_layer(module, input_shape)
    if isinstance(module, tuple(_PAD_MODES)):
        return _pad_layer(module, input_shape)
    if isinstance(module, _RESAMPLE):
        return _resample_layer(module, input_shape)
    if isinstance(module, _PATCHES):
        return _patch_layer(module, input_shape)
    return _reshape_layer(module, input_shape)


def _padding_torch_applies(module) -> list[int]:
    """The padding a convolution's forward applies in a mode other than zeros: the copy
    ``_ConvNd.__init__`` makes of ``padding`` (PyTorch's "same" split, reversed axes, (lo, hi)
    each)."""
    ndim = len(module.kernel_size)
    pairs = normalize_padding(module.padding, ndim, tuple(module.kernel_size), (1,) * ndim,
                              tuple(module.dilation))
    return [side for pair in reversed(pairs) for side in pair]


def _conv_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    if module.padding_mode != "zeros" and [int(p) for p in getattr(
            module, "_reversed_padding_repeated_twice", [])] != _padding_torch_applies(module):
        # (a review: padding set after construction; PyTorch pads by its stale copy there)
        raise ValueError(f"{name}(padding_mode={module.padding_mode!r}) pads by "
                         f"{module._reversed_padding_repeated_twice} (its copy made at "
                         f"construction), not by its padding={module.padding!r}, changed since "
                         "then: build the module anew with the padding it should have")
    shape = _input_shape(input_shape, len(module.kernel_size), name)
    weight, bias = _numpy(parameter(module, "weight")), parameter(module, "bias")
    kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                  groups=module.groups, padding_mode=module.padding_mode)
    geometry = sc.ConvGeometry.from_weight(weight.shape, shape, **kwargs)
    out = geometry.output_shape
    offset = None if bias is None else _repeated(_numpy(bias), math.prod(out[1:]))
    return _Layer(name, shape, out,
                  lambda format, **kw: sc.conv_matrix(weight, shape, format=format, **kw,
                                                      **kwargs),
                  offset, lambda **kw: sc.ConvOperator(weight, shape, **kw, **kwargs),
                  (weight, shape, kwargs), native=True)


def called_output_size(module: nn.Module, input_shape: Sequence[int],
                       output_shape: Sequence[int]) -> tuple[int, ...] | None:
    """A transposed convolution's output size where the call asked for one (``output_size=``,
    the size traced), ``None`` where the module's own ``output_padding`` gave it: that may
    reach ``dilation - 1``, beyond the ``stride - 1`` an ``output_size`` may add (a review:
    ``ConvTranspose1d(stride=1, dilation=2, output_padding=1)`` was refused; a new user's
    trial: the command line's ``--model --layer`` refused it by the same ``output_size``)."""
    if not isinstance(module, _CONV_T):
        return None
    traced = tuple(output_shape[1:])
    conv: Any = module  # (torch's stubs type padding as str | tuple for every module)
    own = sc.conv_transpose_output_shape(input_shape[1:], conv.kernel_size, conv.stride,
                                         conv.padding, conv.output_padding, conv.dilation)
    return None if tuple(own) == traced else traced


def _transpose_output_padding(module, shape, output_size) -> tuple[int, ...]:
    """The output_padding PyTorch derives from ``module(x, output_size=...)`` (which may give
    the channel size, and the batch size of a batched input, too: the last ``ndim`` are the
    spatial ones; PyTorch takes ``ndim + 1`` for an unbatched input, ``ndim + 2`` for a
    batched one, and ``input_shape`` here is either)."""
    ndim = len(module.kernel_size)
    given = spatial_size(output_size, "output_size")  # ints only, as PyTorch's
    if len(given) == 1 and ndim > 1:  # one int: every spatial size (the arrays' convention)
        given = given * ndim
    if len(given) not in (ndim, ndim + 1, ndim + 2):
        raise ValueError(f"output_size must have {ndim} (spatial), {ndim + 1} (channels, "
                         f"spatial) or {ndim + 2} (batch, channels, spatial) elements for "
                         f"{type(module).__name__}, as in PyTorch, got {output_size!r}")
    return output_padding_for(given, shape[1:], module.kernel_size, module.stride,
                              module.padding, module.dilation, channels=module.out_channels)


def _conv_transpose_layer(module, input_shape, output_size) -> _Layer:
    name = type(module).__name__
    if module.padding_mode != "zeros":  # PyTorch itself refuses this at construction
        raise ValueError(f"{name} supports padding_mode='zeros' only, got "
                         f"{module.padding_mode!r}")
    shape = _input_shape(input_shape, len(module.kernel_size), name)
    weight, bias = _numpy(parameter(module, "weight")), parameter(module, "bias")
    output_padding = (module.output_padding if output_size is None
                      else _transpose_output_padding(module, shape, output_size))
    kwargs = dict(stride=module.stride, padding=module.padding, output_padding=output_padding,
                  dilation=module.dilation, groups=module.groups)
    out_size = sc.conv_transpose_output_shape(shape[1:], module.kernel_size, module.stride,
                                              module.padding, output_padding, module.dilation)
    out = (module.out_channels, *out_size)
    offset = None if bias is None else _repeated(_numpy(bias), math.prod(out_size))
    # its matrix is the adjoint of a convolution from `out` with the same weight, when that
    # convolution's output is `shape` (output_padding < stride); the spectra are the same
    adjoint_kwargs = dict(stride=module.stride, padding=module.padding,
                          dilation=module.dilation, groups=module.groups)
    back = sc.conv_output_shape(out_size, module.kernel_size, module.stride, module.padding,
                                module.dilation)
    conv = (weight, out, adjoint_kwargs) if tuple(back) == shape[1:] else None
    return _Layer(name, shape, out,
                  lambda format, **kw: sc.conv_transpose_matrix(weight, shape, format=format,
                                                                **kw, **kwargs),
                  offset, lambda **kw: sc.ConvTransposeOperator(weight, shape, **kw, **kwargs),
                  conv, native=True)


def _linear_layer(module, input_shape) -> _Layer:
    shape = _input_shape(input_shape, None, "Linear")
    if shape[-1] != module.in_features:
        raise ValueError(f"input_shape[-1] must equal in_features={module.in_features} for "
                         f"Linear, got input_shape={shape}")
    weight, bias = _numpy(parameter(module, "weight")), parameter(module, "bias")
    lead = math.prod(shape[:-1])
    out = (*shape[:-1], module.out_features)
    offset = None if bias is None else functools.partial(np.tile, _numpy(bias), lead)

    def build(format):
        # kron(I_lead, W) (sparseconv._formats.repeated_block); W's own CSR: about 40 bytes
        # per nonzero (scipy's conversion of the dense weight)
        nonzero = int(np.count_nonzero(weight))
        nnz = lead * nonzero
        index = np.int32 if max(nnz, math.prod(shape)) < 2**31 else np.int64
        size = (math.prod(out), math.prod(shape))
        # (and the copy another format is converted to, beside the CSR arrays: a review)
        converted = 0 if format == "csr" else format_bytes(nnz, size, np.float64, index, format)
        check_memory(40 * nonzero + repeated_block_bytes(nonzero, lead, size[0], np.float64)
                     + converted,
                     f"the {size[0]} x {size[1]} matrix of Linear (its weight on each of "
                     f"{lead} rows, {nnz} nonzeros; {format.upper()}, with the temporaries of "
                     "its assembly)", "use the layer's operator")
        return in_format(repeated_block(sp.csr_array(weight), lead, np.float64), format)

    def make_operator():
        # columns are a batch: (lead * in, k) -> (lead, in, k) -> W over the in axis
        def matmat(x):
            x = x.reshape(lead, module.in_features, -1)
            return np.einsum("oi,lik->lok", weight, x).reshape(-1, x.shape[-1])

        def rmatmat(y):
            y = y.reshape(lead, module.out_features, -1)
            return np.einsum("oi,lok->lik", weight, y).reshape(-1, y.shape[-1])

        return spla.LinearOperator((math.prod(out), math.prod(shape)), dtype=np.float64,
                                   matvec=lambda x: matmat(x.reshape(-1, 1)), matmat=matmat,
                                   rmatvec=lambda y: rmatmat(y.reshape(-1, 1)), rmatmat=rmatmat)

    # y = W x on each of `lead` rows: the norm and singular values are W's, a 1x1 convolution
    return _Layer("Linear", shape, out, build, offset, make_operator,
                  (weight[:, :, None], (module.in_features, 1), {}), lead)


def _pool_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    ndim = 1 + _POOL.index(type(module)) if type(module) in _POOL else None
    shape = _input_shape(input_shape, ndim, name)
    ndim = len(shape) - 1
    kwargs = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
                  ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad,
                  divisor_override=getattr(module, "divisor_override", None))
    kernel = int_tuple(module.kernel_size, ndim, "kernel_size", 1, broadcast_one=True)
    if ndim == 3 and any(n < k for n, k in zip(shape[1:], kernel)):
        # PyTorch's avg_pool3d (only it) wants the unpadded input at least the kernel's size
        raise ValueError(f"{name} refuses an input smaller than its kernel, as PyTorch does: "
                         f"input_shape={shape}, kernel_size={kernel}")
    matrix = sc.avg_pool_matrix(shape, **kwargs)
    out = (shape[0], *_pool_output_size(shape[1:], kwargs, ndim))
    conv = None
    plain = kwargs["count_include_pad"] or not any(np.atleast_1d(module.padding))
    if plain and not kwargs["ceil_mode"] and kwargs["divisor_override"] is None:
        # every window averages prod(kernel) padded positions: a depthwise convolution
        weight = np.full((shape[0], 1, *kernel), 1.0 / math.prod(kernel))
        conv = (weight, shape, dict(stride=module.stride, padding=module.padding,
                                    groups=shape[0]))
    return _Layer(name, shape, out, lambda format: in_format(matrix, format), conv=conv)


def _pool_output_size(size, kwargs, ndim) -> tuple[int, ...]:
    """PyTorch's pooling output size (``pooling_output_shape`` in ATen)."""
    def per_axis(name, minimum):  # (2,) is every axis, as PyTorch's (a new user's trial)
        return int_tuple(kwargs[name], ndim, name, minimum, broadcast_one=True)

    result = []
    for n, k, s, p in zip(size, per_axis("kernel_size", 1), per_axis("stride", 1),
                          per_axis("padding", 0)):
        span = n + 2 * p - k + ((s - 1) if kwargs["ceil_mode"] else 0)
        out = span // s + 1
        if kwargs["ceil_mode"] and (out - 1) * s >= n + p:
            out -= 1  # the last window must start inside the input or the low padding
        result.append(out)
    return tuple(result)


def _batchnorm_scale_shift(module) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` per channel of an eval-mode normalization: ``y = (x - mean) /
    sqrt(var + eps) * gamma + beta = scale * x + shift``. Refused (``ValueError`` naming the
    module, the channel and the values) where PyTorch refuses the module (``eps < 0``) or its
    forward gives no number (``var + eps <= 0``, statistics or affine parameters not
    finite): the matrix would hold NaN or infinity, and its bounds none."""
    name = type(module).__name__
    eps = module.eps
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"{name}.eps must be a non-negative number, as PyTorch's batch_norm "
                         f"requires, got {eps!r}")
    var, mean = (as_weight(_numpy(getattr(module, what)), f"{name}.{what}", finite=True)
                 for what in ("running_var", "running_mean"))
    gamma, beta = ((as_weight(_numpy(parameter(module, what)), f"{name}.{what}", finite=True)
                    for what in ("weight", "bias")) if module.affine else (None, None))
    if (where := first_index(~(var + eps > 0))) is not None:
        raise ValueError(f"{name}.running_var + eps must be positive (the forward divides by "
                         f"its square root), got running_var={float(var[where])!r} and "
                         f"eps={eps!r} at index {where}")
    scale = 1.0 / np.sqrt(var + eps)
    shift = -mean * scale
    if gamma is not None:
        scale, shift = scale * gamma, shift * gamma + beta
    return scale, shift


def _batchnorm_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    instance = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
    ndim = (_BATCHNORM.index(type(module)) + 1 if type(module) in _BATCHNORM else
            instance.index(type(module)) + 1 if type(module) in instance else None)
    shape = _input_shape(input_shape, None, name)
    spatial_ranks = (0, 1) if ndim == 1 and type(module) in _BATCHNORM else (ndim,)
    if shape[0] != module.num_features or (ndim is not None and len(shape) - 1 not in
                                           spatial_ranks):
        raise ValueError(f"input_shape must be (num_features={module.num_features}, *spatial) "
                         f"as {name} expects, got {shape}")
    scale, shift = _batchnorm_scale_shift(module)
    spatial = math.prod(shape[1:])
    channels = shape[0]

    def build(format):
        n = math.prod(shape)
        check_sparse_memory(n, n, np.float64, f"the {n} x {n} diagonal matrix of {name}")
        return in_format(sp.diags_array(np.repeat(scale, spatial)), format)

    return _Layer(name, shape, shape, build, _repeated(shift, spatial), None,
                  (scale.reshape(channels, 1, 1), (channels, 1), {"groups": channels}), spatial)


def _pad_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    sides = tuple(module.padding)
    shape = _input_shape(input_shape, len(sides) // 2, name)
    return _padding(name, shape, sides, _PAD_MODES[type(module)],
                    float(getattr(module, "value", 0.0)))


def _padding(name: str, shape: tuple[int, ...], sides: Sequence[int], mode: PaddingMode,
             value: float = 0.0) -> _Layer:
    """PyTorch's pad tuple ``sides`` (per side, last axis first, negative: crop) on the last
    ``len(sides) // 2`` axes of ``shape``; the channel axis too when ``sides`` reaches it."""
    ndim = len(sides) // 2
    if len(sides) % 2 or ndim > len(shape):
        raise ValueError(f"{name}'s padding {tuple(sides)} must give (lo, hi) pairs for at most "
                         f"the {len(shape)} axes of input_shape={shape}")
    # PyTorch's pad tuples run per side, last axis first: (left, right, top, bottom, ...)
    pairs = ((0, 0),) * (len(shape) - ndim) + tuple(
        (int(sides[2 * i]), int(sides[2 * i + 1])) for i in reversed(range(ndim)))
    out = tuple(n + lo + hi for n, (lo, hi) in zip(shape, pairs))
    if min(out) < 1:
        raise ValueError(f"{name}'s padding {tuple(sides)} crops input_shape={shape} to {out}")
    # a negative side crops. PyTorch's circular pad wraps what is left after the crop; its
    # other modes read the whole input (a reflection may reach into the cropped part): so
    # cut then pad (circular), or pad then cut. The leading 1 lets the channel axis be padded.
    grown = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
    first = mode == "circular"
    grid = shape if first else tuple(n + lo + hi for n, (lo, hi) in zip(shape, grown))
    cut = [sp.eye_array(n, format="csr")[max(-lo, 0):n - max(-hi, 0)]
           for n, (lo, hi) in zip(grid, pairs)]
    kept = tuple(c.shape[0] for c in cut) if first else shape
    if min(kept) < 1:
        raise ValueError(f"{name}'s padding {tuple(sides)} crops input_shape={shape} to {kept} "
                         "before its circular pad: nothing left to wrap")

    def build(format):
        a = sc.pad_matrix((1, *kept), grown, mode)
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            crop = functools.reduce(lambda x, y: sp.kron(x, y, format="csr"), cut)
            a = a @ crop if first else crop @ a
        return in_format(sp.csr_array(a), format)

    # ConstantPad with a fill value: the pad entries are an offset
    offset = (lambda: value * (1.0 - build("csr") @ np.ones(math.prod(shape)))) if value else None
    return _Layer(name, shape, out, build, offset)


def _resample_layer(module, input_shape) -> _Layer:
    """AdaptiveAvgPool*d, Upsample, PixelShuffle, PixelUnshuffle: sparseconv's matrices."""
    name = type(module).__name__
    if isinstance(module, _ADAPTIVE):
        shape = _input_shape(input_shape, _ADAPTIVE.index(type(module)) + 1
                             if type(module) in _ADAPTIVE else None, name)
        matrix = sc.adaptive_avg_pool_matrix(shape, module.output_size)
    elif isinstance(module, nn.Upsample):
        shape = _input_shape(input_shape, None, name)
        if module.mode not in INTERPOLATION_MODES:
            raise TypeError(f"{name}(mode={module.mode!r}) is not a mode sparseconv.torch "
                            f"supports ({module!r}); supported: {INTERPOLATION_MODES}")
        matrix = sc.interpolate_matrix(shape, module.size, module.scale_factor, module.mode,
                                       module.align_corners, module.recompute_scale_factor,
                                       isinstance(module, Interpolate) and module.antialias)
    elif isinstance(module, nn.PixelShuffle):
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.pixel_shuffle_matrix(shape, module.upscale_factor)
    else:
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.pixel_unshuffle_matrix(shape, module.downscale_factor)
    out = _resampled_shape(module, shape, matrix.shape[0])
    return _Layer(name, shape, out, lambda format: in_format(matrix, format))


def _patch_layer(module, input_shape) -> _Layer:
    """Unfold (sparseconv's im2col matrix, torch's ``(C * prod(kernel), L)`` order), Fold (its
    adjoint on ``output_size``: overlapping patches add up) and ChannelShuffle (a
    permutation of the channels)."""
    name = type(module).__name__
    if isinstance(module, nn.ChannelShuffle):
        shape = _input_shape(input_shape, None, name)
        groups = positive_int(module.groups, "groups")
        if shape[0] % groups:
            raise ValueError(f"{name}(groups={groups}) needs channels divisible by groups, got "
                             f"input_shape={shape}")
        n = math.prod(shape)
        check_sparse_memory(n, n, np.float64, f"the {n} x {n} permutation matrix of {name}")
        # torch: (g, C/g, ...) transposed to (C/g, g, ...): output channel o reads source[o]
        source = np.arange(shape[0]).reshape(groups, -1).T.ravel()
        size = math.prod(shape[1:])
        columns = (source[:, None] * size + np.arange(size)).ravel()
        matrix = sp.csr_array((np.ones(n), (np.arange(n), columns)), shape=(n, n))
        return _Layer(name, shape, shape, lambda format: in_format(matrix, format))
    options = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
    if isinstance(module, nn.Unfold):
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.im2col_matrix(shape, module.kernel_size, **options)
        rows = shape[0] * math.prod(int_tuple(module.kernel_size, 2, "kernel_size", 1))
        out = (rows, matrix.shape[0] // rows)
        return _Layer(name, shape, out, lambda format: in_format(matrix, format))
    shape = _input_shape(input_shape, 1, name)  # (C * prod(kernel), L)
    taps = math.prod(int_tuple(module.kernel_size, 2, "kernel_size", 1))
    if shape[0] % taps:
        raise ValueError(f"{name}(kernel_size={module.kernel_size}) needs input_shape[0] "
                         f"divisible by {taps} (C times the kernel's taps), got {shape}")
    out = (shape[0] // taps, *int_tuple(module.output_size, 2, "output_size", 1))
    patches = sc.im2col_matrix(out, module.kernel_size, **options)
    if patches.shape[0] != math.prod(shape):
        raise ValueError(f"{name}(output_size={module.output_size}, kernel_size="
                         f"{module.kernel_size}, ...) makes {patches.shape[0] // shape[0]} "
                         f"blocks, so input_shape must be ({shape[0]}, "
                         f"{patches.shape[0] // shape[0]}), got {shape}")
    matrix = patches.T.tocsr()
    return _Layer(name, shape, out, lambda format: in_format(matrix, format))


def _resampled_shape(module, shape, rows: int) -> tuple[int, ...]:
    if isinstance(module, nn.PixelShuffle):
        r = module.upscale_factor
        out = (shape[0] // (r * r), shape[1] * r, shape[2] * r)
    elif isinstance(module, nn.PixelUnshuffle):
        r = module.downscale_factor
        out = (shape[0] * r * r, shape[1] // r, shape[2] // r)
    elif isinstance(module, nn.Upsample):
        out = (shape[0], *interpolate_output_size(shape[1:], module.size, module.scale_factor,
                                                  module.recompute_scale_factor))
    else:
        out = (shape[0], *adaptive_output_size(shape[1:], module.output_size))
    assert math.prod(out) == rows, (module, shape, out)
    return out


def _unflattened(module: nn.Unflatten, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape (without the batch) of ``module`` on ``shape``, as PyTorch's."""
    full = (1, *shape)
    dim = module.dim
    if not isinstance(dim, int) or not -len(full) <= dim < len(full) or dim % len(full) == 0:
        raise ValueError(f"Unflatten(dim={dim!r}) must name an axis of the input other than the "
                         f"batch, input_shape={shape}")
    dim %= len(full)
    sizes = [int(n) for n in module.unflattened_size]
    known = math.prod(n for n in sizes if n != -1)
    if sizes.count(-1) == 1 and known and full[dim] % known == 0:
        sizes[sizes.index(-1)] = full[dim] // known
    if math.prod(sizes) != full[dim] or min(sizes) < 1:
        raise ValueError(f"Unflatten(unflattened_size={tuple(module.unflattened_size)}) does "
                         f"not split axis {dim} of size {full[dim]}")
    return (*full[1:dim], *sizes, *full[dim + 1:])


def _reshape_layer(module, input_shape) -> _Layer:
    """Identity, an empty Sequential, Dropout (eval), Flatten and Unflatten: the identity on
    the flat (C order) vector."""
    name = type(module).__name__
    shape = _input_shape(input_shape, None, name)
    out = shape
    if isinstance(module, nn.Unflatten):
        out = _unflattened(module, shape)
    if isinstance(module, nn.Flatten):
        full = (1, *shape)
        start, end = (d % len(full) for d in (module.start_dim, module.end_dim))
        if start == 0 or end < start:
            raise ValueError(f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) "
                             "must keep the batch axis")
        out = (*full[1:start], math.prod(full[start:end + 1]), *full[end + 1:])
    n = math.prod(shape)
    return _Layer(name, shape, out, functools.partial(_identity, n, name),
                  None, lambda: spla.aslinearoperator(_identity(n, name, "csr")),
                  (np.ones((1, 1, 1)), (1, 1), {}), n)
