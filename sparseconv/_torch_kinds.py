"""Which PyTorch modules are layers, and which are refused: the adapter's vocabulary.

The classes the adapter translates (:data:`_SUPPORTED`), grouped by kind (convolutions,
transposed ones, pooling, running-statistics normalizations, padding, resampling...); whether a
module is torch's own class and computes exactly what it does (:func:`is_torch_class`: a
subclass or an instance may override ``forward``), whether it is one leaf layer or a network,
whether its training mode can matter (:func:`mode_matters`), and the hooks that would change
what it computes (:func:`hook_reason`). :func:`_refuse` raises the ``TypeError`` that names a
module that is not linear (ReLU, max pooling, attention) or not supported.
:mod:`sparseconv._torch_layers` translates the modules that pass into layers.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from sparseconv._typing import Layout, PaddingMode
from sparseconv._validation import (
    check_layout,
    normalize_padding,
)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# normalizations by running statistics in eval mode: a per-channel affine map, as BatchNorm
_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_RUNNING_NORMS = (*_BATCHNORM, nn.SyncBatchNorm, *_INSTANCE_NORMS)
#: The spatial rank each normalization's forward takes (SyncBatchNorm: any).
_NORM_RANKS: dict[type, int] = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3,
                                 nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2,
                                 nn.InstanceNorm3d: 3}
# normalizations by each sample's own statistics, in either mode: not linear
_SAMPLE_NORMS = tuple(getattr(nn, name) for name in ("GroupNorm", "LayerNorm",
                                                       "LocalResponseNorm", "RMSNorm")
                      if hasattr(nn, name))
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)  # (the identity in eval mode; a trial: the last refused)
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
_PADS = tuple(_PAD_MODES)
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
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
             # (a new user's trial: a GroupNorm in training mode was refused, where the docs
             # say only a forward that reads its mode is; each read in torch 2.13's source)
             *_SAMPLE_NORMS, nn.CrossMapLRN2d, nn.Softmax, nn.Softmin, nn.LogSoftmax,
             nn.Softmax2d, nn.Hardshrink, nn.Threshold, nn.GLU)


def mode_matters(module: nn.Module) -> bool:
    """Whether ``module`` in training mode may compute otherwise than in eval mode: any module
    but torch's own modeless ones (:data:`_MODELESS`; a user's subclass may read
    ``training``; a parametrized layer's parametrizations are modules of their own, checked as
    such). An InstanceNorm without running statistics normalizes by the sample's own in
    either mode."""
    if mode_hooked(module) or not is_torch_module(module):
        return True
    return not (isinstance(module, _MODELESS) or isinstance(module, _INSTANCE_NORMS)
                and not module.track_running_stats)


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
    # (but nn.Module.compile()'s _compiled_call_impl, the module's own call compiled: its
    # rows are read off its attributes; the bound over a network withholds itself, below)
    replaced = instance_method(module)
    return ours and (base is None or issubclass(cls, base)) and replaced in (
        None, "_compiled_call_impl")


def _padding_torch_applies(module) -> list[int]:
    """The padding a convolution's forward applies in a mode other than zeros: the copy
    ``_ConvNd.__init__`` makes of ``padding`` (PyTorch's "same" split, reversed axes, (lo, hi)
    each)."""
    ndim = len(module.kernel_size)
    pairs = normalize_padding(module.padding, ndim, tuple(module.kernel_size), (1,) * ndim,
                              tuple(module.dilation))
    return [side for pair in reversed(pairs) for side in pair]


def check_padding_copy(module: Any) -> None:
    """Refuse a convolution in a mode other than zeros whose ``padding`` changed after
    construction (a review: PyTorch pads by its stale copy, and a bound of the new padding
    was below the norm)."""
    if module.padding_mode != "zeros" and [int(p) for p in getattr(
            module, "_reversed_padding_repeated_twice", [])] != _padding_torch_applies(module):
        raise ValueError(f"{type(module).__name__}(padding_mode={module.padding_mode!r}) pads "
                         f"by {module._reversed_padding_repeated_twice} (its copy made at "
                         f"construction), not by its padding={module.padding!r}, changed since "
                         "then: build the module anew with the padding it should have")


def instance_method(module: nn.Module) -> str | None:
    """The name of a method of the module's class replaced on the instance (``forward``,
    ``_conv_forward``, ``_compiled_call_impl``, which ``nn.Module.__call__`` runs instead of
    everything else where it is set), or None. ``_compiled_call_impl`` is named last: it is
    what ``nn.Module.compile()`` sets, a call compiled by a backend, which may be anyone's
    code (a review: set by hand to a function adding an axis from a batch of four on, it
    passed every check, and a bound came out at a tenth of the network's constant)."""
    cls = type(module)
    names = [key for key, value in vars(module).items()
             if callable(value) and hasattr(cls, key)]
    return min(names, key=lambda key: (key == "_compiled_call_impl", key), default=None)


def instance_method_reason(module: nn.Module, label: str) -> str | None:
    """:func:`instance_method` said in words, of the module called ``label``, or None: what
    withholds the network bound and refuses network_operator."""
    method = instance_method(module)
    if method is None:
        return None
    return f"{label} has a {method} of its own set on the instance" + (
        " (nn.Module.compile(): a call compiled by a backend, which may compute otherwise "
        "than its class; compile after the analysis)" if method == "_compiled_call_impl"
        else "")


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


#: Where torch keeps its quantized and quantization-aware modules, which share the float
#: modules' class names (``torch.ao.nn.quantized.Conv2d``).
_QUANTIZED = ("torch.ao.nn.quantized", "torch.ao.nn.qat", "torch.ao.nn.intrinsic",
              "torch.ao.nn.quantizable", "torch.ao.nn.sparse", "torch.nn.quantized",
              "torch.nn.qat", "torch.nn.intrinsic", "torch.nn.quantizable")


def _refuse(module: nn.Module) -> None:
    name = type(module).__name__
    if is_empty_sequential(module):
        return
    where = type(module).__module__
    if where.startswith(_QUANTIZED):  # (a new user's trial: "Conv2d is not a linear module
        # sparseconv.torch supports", or "a subclass of Conv2d", of torch's quantized Conv2d)
        raise TypeError(f"{where}.{name} is a quantized or quantization-aware module (its "
                        "weight and output are rounded to integers), which sparseconv.torch "
                        "does not read: pass the float model it was made from")
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
    instance = isinstance(module, _INSTANCE_NORMS)
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
