"""The operations of a TorchScript model's graph that act on a call's signal, and a call found
there rebuilt as the eager module it was scripted or traced from (:func:`_rebuild`):
convolutions, padding, BatchNorm and InstanceNorm, upsampling and activations, from the ops
and constants the graph recorded, so that the rest of :mod:`sparseconv.torch` reads it as it
reads an eager model (:mod:`sparseconv._torch_script` finds the calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sparseconv._torch_kinds import _ONE_LIPSCHITZ, _PAD_MODES, _SUPPORTED, is_parametrized

if TYPE_CHECKING:  # (it imports this module)
    from sparseconv._torch_script import _Call

_CONV_OPS = {"aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::_convolution",
             "aten::_convolution_mode", "aten::conv_transpose1d", "aten::conv_transpose2d",
             "aten::conv_transpose3d"}
_PAD_OPS = {"aten::pad", "aten::constant_pad_nd", "aten::reflection_pad1d",
            "aten::reflection_pad2d", "aten::reflection_pad3d", "aten::replication_pad1d",
            "aten::replication_pad2d", "aten::replication_pad3d"}
_ACTIVATION_OPS = {f"aten::{name}{suffix}" for suffix in ("", "_") for name in (
    "relu", "leaky_relu", "elu", "hardtanh", "sigmoid", "tanh", "softplus", "gelu", "silu",
    "mish", "hardswish", "hardsigmoid", "selu", "prelu", "celu", "softshrink", "log_sigmoid",
    "rrelu", "softmax")}
# the operations that act on a call's signal: one of a kind per call
_SIGNAL_OPS = _CONV_OPS | _PAD_OPS | _ACTIVATION_OPS | {
    "aten::batch_norm", "aten::instance_norm", "aten::linear", "aten::flatten", *(
        f"aten::{name}{suffix}" for suffix in ("", "_") for name in (
            "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")),
    "aten::pixel_shuffle", "aten::unflatten", "aten::im2col", "aten::col2im",
    "aten::channel_shuffle", "aten::native_channel_shuffle",
    "aten::pixel_unshuffle", "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d",
    *(f"aten::{k}avg_pool{n}d" for k in ("", "adaptive_") for n in (1, 2, 3)),
    *(f"aten::{m}" for m in ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
                             "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
                             "_upsample_nearest_exact3d", "upsample_linear1d",
                             "upsample_bilinear2d", "upsample_trilinear3d",
                             "upsample_bicubic2d"))}
_STRUCTURAL = {"prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::TupleConstruct"}


def _kind(module: nn.Module) -> str:
    """A module's class name; a ScriptModule's is the class it was compiled from."""
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


_UNKNOWN = object()


def constant_of(value) -> Any:
    """A ``prim::Constant``'s value in Python, or ``_UNKNOWN`` where torch cannot give one (a
    review: a string of bytes that are no UTF-8, as TorchScript's slicing by bytes makes,
    ``"\xe9"[0:1]``, raised UnicodeDecodeError; an enum member of a model loaded in a process
    that has not imported its class raised RuntimeError; both out of lipschitz_report)."""
    try:
        return value.toIValue()
    except (RuntimeError, UnicodeDecodeError, ValueError, TypeError):
        return _UNKNOWN


# ---------------------------------------------------------------------------------------------
# A call of a shipped module, rebuilt as that eager module
# ---------------------------------------------------------------------------------------------
def _shipped(module: nn.Module) -> bool:
    """Whether a ScriptModule was compiled from a class torch ships (its type's qualified
    name ``__torch__.torch.nn....``), not from a class of the user's of the same name (a
    review: a scripted ``Linear`` of the user's computing ``F.linear(x + 100 *
    clamp(x - 20, min=0), ...)`` matched torch's Linear on the probe and was read as one)."""
    script: Any = module
    return str(script._c._type().qualified_name()).startswith("__torch__.torch.nn.")


def _foreign(call: _Call, cls: type) -> str | None:
    """An operation of a call of a torch class that the class does not run on its signal, or
    None: one of :data:`_SIGNAL_OPS` reading the signal other than as its input (a review:
    ``conv1d(x, x)`` through ``_conv_forward``, quadratic), or another operation making a
    tensor of the signal, the activations of several operations aside (a review: a traced
    ``Linear`` whose forward was set on the instance ran ``sub``, ``clamp``, ``mul``,
    ``add`` before its ``linear``, unseen on the probe's small values)."""
    start = call.input()
    derived = {start.unique()} if start is not None else set()
    if call.signal is not None:  # every value of the signal, not the call's input alone (a
        # fifth review: a buffer's product read first, the signal passed as the weight of a
        # _conv_forward, was taken for the input: 3.25 for a map of 300)
        if start is None or start.unique() not in call.signal:
            return "no value of the signal as its input"
        derived = set(call.signal)
    for node in call.nodes:
        values = [v.unique() for v in _reads(node)]
        if not any(v in derived for v in values):
            continue
        # the values that hold the signal: tensors, and lists or tuples of them (a review
        # passed it through torch.cat([x], 0), whose list hid every operation after it)
        tensors = [v for v in node.outputs() if "Tensor" in str(v.type())]
        if node.kind() in _SIGNAL_OPS:
            if any(v in derived for v in values[1:]):
                return f"{node.kind()} reading its signal other than as its input"
        elif tensors and node.kind() not in _STRUCTURAL and cls not in _COMPOUND_ACTIVATIONS:
            return f"{node.kind()} on its signal"
        derived.update(v.unique() for v in tensors)
    return None


def _reads(node) -> list:
    """The values ``node`` reads, a list or tuple built outside the call (by a structural
    node, which no call holds) read as its items too: ``torch.cat([x], 0)`` reads ``x``."""
    found = []
    for value in node.inputs():
        found.append(value)
        if value.node().kind() in ("prim::ListConstruct", "prim::TupleConstruct"):
            found.extend(_reads(value.node()))
    return found


def _rebuild(call: _Call, value) -> nn.Module:
    """The eager module of ``call`` (the ScriptModule itself for a class sparseconv does not
    know: it is then not linear, as in the eager trace)."""
    kind = _kind(call.module)
    if is_parametrized(call.module):  # its weight, computed in the graph, is an argument
        kind = kind.removeprefix("Parametrized")
    cls = getattr(nn, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or not _known(cls) or not (
            _shipped(call.module)):
        return call.module

    ops: list[tuple[str, list]]
    if cls in _COMPOUND_ACTIVATIONS:  # (their operations, read exactly: _compound)
        ops = _compound(call, cls)
    else:
        ops = [(op.kind(), [value(a) for a in op.inputs()]) for op in call.ops()]
    trained = [k for k, a in ops if k in ("aten::batch_norm", "aten::instance_norm")
               and a[5] is True  # (batch_norm's training, instance_norm's use_input_stats)
               and a[3] is not None  # (without running statistics it is always so: a review)
               or "dropout" in k and a[2] is True]
    if trained and not call.module.training:  # (a new user's trial: "does not compute what
        # a BatchNorm2d of its operations' arguments does" said nothing of the cause)
        raise TypeError(f"TorchScript module {call.name or '(the model)'!r} ({kind}) runs "
                        f"{trained[0]} in training mode, though the module is in eval mode: "
                        "torch.jit.trace froze the mode the model had when it was traced; "
                        "trace it after model.eval()")
    foreign = _foreign(call, cls)
    if foreign is not None:
        raise TypeError(f"TorchScript module {call.name or '(the model)'!r} ({kind}) runs "
                        f"{foreign}, which its class does not: sparseconv reads torch's "
                        "class, not what this module computes")
    try:
        if cls in _INSTANCE_NORMS and not ops:  # (scripted: its forward's shape checks hold
            module = _instancenorm_of(cls, call.module)  # the operation in an if: a hunt)
        else:
            module = _upsample(call.module, ops) if cls is nn.Upsample else _build(cls, ops)
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        module, reason = None, f" ({type(exc).__name__}: {exc})"
    else:
        reason = ""
    if module is None:
        raise TypeError(f"TorchScript module {call.name or '(the model)'!r} ({kind}) runs "
                        f"{', '.join(k for k, _ in ops) or 'no operation'}, which sparseconv "
                        f"cannot read as a {kind}{reason}")
    return module.train(call.module.training)


#: Activations of one operation each, rebuilt from it: ``aten::<name>(x)``.
_PLAIN_ACTIVATIONS = {"silu": nn.SiLU, "mish": nn.Mish, "hardswish": nn.Hardswish,
                      "hardsigmoid": nn.Hardsigmoid, "selu": nn.SELU}


#: Activations whose inlined forward is several operations: their kinds, in order.
_COMPOUND_ACTIVATIONS: dict[type, list[str]] = {
    nn.Softsign: ["aten::abs", "aten::add", "aten::div"],
    nn.Tanhshrink: ["aten::tanh", "aten::sub"]}


def _compound(call: _Call, cls: type) -> list[tuple[str, list]]:
    """The operations of a call of a :data:`_COMPOUND_ACTIVATIONS` class, each reading what
    torch's class has it read (``Softsign``: ``abs(x)``, ``add(that, 1, alpha=1)``,
    ``div(x, that)``; ``Tanhshrink``: ``tanh(x)``, ``sub(x, that, alpha=1)``), or TypeError.
    Their kinds alone, checked against the output on the probe, let a traced ``Softsign``
    whose forward was set on the instance to ``x / (|x| + 1e-3)`` be read as torch's (helper
    291: where the layer before it has a large gain, the probe reaches it only where the two
    agree: bounds of 6038 for a map whose Jacobian reaches 4.8e6; ``sub(x, tanh(x),
    alpha=10)`` for a Tanhshrink, 64944 for 508699)."""
    nodes = [n for n in call.nodes if n.kind() not in _STRUCTURAL]
    source = call.input()

    def reads(node, *values) -> bool:  # (a value of the graph, or 1 for a constant one)
        inputs = list(node.inputs())
        return len(inputs) == len(values) and all(
            _is_one(v) if want == 1 else v.unique() == want.unique()
            for v, want in zip(inputs, values))

    kinds = [n.kind() for n in nodes]
    exact = kinds == _COMPOUND_ACTIVATIONS[cls] and source is not None and all(
        n.outputsSize() == 1 for n in nodes) and call.output() is not None and (
        call.output().unique() == nodes[-1].output().unique())
    if exact and cls is nn.Softsign:
        exact = reads(nodes[0], source) and reads(nodes[1], nodes[0].output(), 1, 1) and (
            reads(nodes[2], source, nodes[1].output()))
    elif exact:
        exact = reads(nodes[0], source) and reads(nodes[1], source, nodes[0].output(), 1)
    if not exact:
        raise TypeError(f"TorchScript module {call.name or '(the model)'!r} ({cls.__name__}) "
                        f"runs {', '.join(kinds) or 'no operation'} otherwise than torch's "
                        f"{cls.__name__} does: sparseconv reads torch's class, not what this "
                        "module computes (a forward set on the instance?)")
    return [(k, []) for k in kinds]


def _is_one(value) -> bool:
    """Whether a value of the graph is the constant 1: an integer or float, or a tensor of one
    real entry (torch.jit.trace records ``1 + x`` with a tensor ``{1}``)."""
    if value.node().kind() != "prim::Constant":
        return False
    constant = constant_of(value)
    if isinstance(constant, torch.Tensor):
        return constant.numel() == 1 and not constant.is_complex() and (
            constant.dtype != torch.bool) and constant.item() == 1
    return type(constant) in (int, float) and constant == 1


def _known(cls: type) -> bool:
    return cls in (*_SUPPORTED, *_ONE_LIPSCHITZ, nn.ELU, nn.Sigmoid, nn.Softplus, nn.GELU,
                   *_PLAIN_ACTIVATIONS.values(), nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                   nn.PReLU, nn.CELU, nn.LogSigmoid, nn.Softshrink, nn.RReLU,
                   nn.Softmax, nn.Softmax2d,
                   *_COMPOUND_ACTIVATIONS)


_UPSAMPLE_MODES = {"upsample_nearest": "nearest", "_upsample_nearest_exact": "nearest-exact",
                   "upsample_linear": "linear", "upsample_bilinear": "bilinear",
                   "upsample_trilinear": "trilinear", "upsample_bicubic": "bicubic",
                   "adaptive_avg_pool": "area"}


def _upsample(script: Any, ops: list[tuple[str, list]]) -> nn.Module | None:
    """A scripted Upsample keeps its attributes; a traced one, the arguments of its one
    operation (``mode="area"`` runs an adaptive average pooling to the output size)."""
    if hasattr(script, "mode"):
        return nn.Upsample(script.size, script.scale_factor, script.mode, script.align_corners,
                           script.recompute_scale_factor)
    if len(ops) != 1:
        return None
    kind, args = ops[0]
    mode = _UPSAMPLE_MODES.get(kind.removeprefix("aten::")[:-2])
    if mode is None:
        return None
    interpolating = mode in ("linear", "bilinear", "trilinear", "bicubic")
    size, align = args[1], args[2] if interpolating else None
    scales = args[2 + interpolating:]  # a list (.vec overload), or one optional float per axis
    if mode == "area" or len(scales) != 1 or not isinstance(scales[0], list):
        if any(s is not None for s in scales):
            return None  # an output size with its own scales: not an nn.Upsample's call
        scale = None
    else:
        scale = scales[0]
    return nn.Upsample(size=_tuple(size) if scale is None else None,
                       scale_factor=None if scale is None else tuple(scale), mode=mode,
                       align_corners=align)


def _build(cls: type, ops: list[tuple[str, list]]) -> nn.Module | None:
    kinds = [k for k, _ in ops]
    if not ops:
        return None
    kind, args = ops[-1]
    if kind in _CONV_OPS:
        pad = ops[0] if len(ops) == 2 and kinds[0] in _PAD_OPS else None
        return None if len(ops) != 1 + (pad is not None) else _conv(cls, kind, args, pad)
    if _COMPOUND_ACTIVATIONS.get(cls) == kinds:  # (then checked against the module's output)
        return cls()
    if len(ops) != 1:
        return None
    name = kind.removeprefix("aten::").rstrip("_")
    if name == "batch_norm":
        return _batchnorm(cls, args)
    if name == "instance_norm" and cls in _INSTANCE_NORMS:
        return _instancenorm(cls, args)
    if name == "unflatten":
        return cls(int(args[1]), tuple(int(n) for n in args[2]))
    if name == "linear":
        weight, bias = args[1], args[2]
        return _with_tensors(nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None),
                             weight=weight, bias=bias)
    if "avg_pool" in name and not name.startswith("adaptive"):
        kernel, stride, padding, ceil, include = (_tuple(a) for a in args[1:6])
        extra = {"divisor_override": args[6]} if len(args) > 6 else {}
        return cls(kernel, stride, padding, ceil_mode=ceil, count_include_pad=include, **extra)
    if name.startswith("adaptive_avg_pool"):
        return cls(_tuple(args[1]))
    if name.startswith("max_pool"):  # (its Lipschitz constant, in the report)
        kernel, stride, padding, dilation, ceil = (_tuple(a) for a in args[1:6])
        return cls(kernel, stride or None, padding, dilation, ceil_mode=bool(ceil))
    if name == "flatten":
        return cls(args[1], args[2])
    if "dropout" in name:
        return cls(args[1]).train(bool(args[2]))
    if name in ("pixel_shuffle", "pixel_unshuffle"):
        return cls(args[1])
    # (im2col and col2im: the arguments in nn.Unfold's and nn.Fold's own order)
    if name == "im2col" and cls is nn.Unfold:
        return cls(*(_tuple(a) for a in args[1:5]))
    if name == "col2im" and cls is nn.Fold:
        return cls(*(_tuple(a) for a in args[1:6]))
    if name in ("channel_shuffle", "native_channel_shuffle") and cls is nn.ChannelShuffle:
        return cls(int(args[1]))
    if kind in _PAD_OPS:
        return _pad(cls, kind, args)
    return _activation(cls, name, args)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _with_tensors(module: nn.Module, **tensors) -> nn.Module:
    """``module`` holding copies of ``tensors`` (in their dtype and device)."""
    first = next((t for t in tensors.values() if t is not None), None)
    if first is None:
        return module
    module = module.to(dtype=first.dtype, device=first.device)
    with torch.no_grad():
        for name, tensor in tensors.items():
            if tensor is not None:
                getattr(module, name).copy_(tensor)
    return module


def _conv(cls: type, kind: str, args: list, pad) -> nn.Module | None:
    weight, bias, stride = args[1], args[2], _tuple(args[3])
    transposed = "transpose" in kind or (kind == "aten::_convolution" and args[6])
    if kind in ("aten::_convolution",):
        padding, dilation, output_padding, groups = args[4], args[5], args[7], args[8]
    elif transposed:
        padding, output_padding, groups, dilation = args[4], args[5], args[6], args[7]
    else:
        padding, dilation, groups, output_padding = args[4], args[5], args[6], None
    channels = (weight.shape[0], weight.shape[1] * groups) if transposed else \
        (weight.shape[1] * groups, weight.shape[0])
    options: dict[str, Any] = dict(stride=stride, dilation=_tuple(dilation), groups=groups,
                                   bias=bias is not None)
    if transposed:
        options["output_padding"] = _tuple(output_padding)
    if pad is None:
        options["padding"] = _tuple(padding)
    else:
        mode, sides = _pad_mode(*pad), [int(s) for s in pad[1][1]]
        if transposed or mode == "constant" or any(_tuple(padding)) and padding != "valid":
            return None
        options["padding_mode"] = {"reflect": "reflect", "replicate": "replicate",
                                   "circular": "circular"}[mode]
        pairs = list(zip(sides[::2], sides[1::2]))[::-1]  # per axis, first axis first
        options["padding"] = (tuple(lo for lo, _ in pairs) if all(lo == hi for lo, hi in pairs)
                              else "same")
    module: Any = _with_tensors(cls(*channels, tuple(weight.shape[2:]), **options),
                                weight=weight, bias=bias)
    if pad is not None and list(module._reversed_padding_repeated_twice) != sides:
        return None
    return module


def _pad_mode(kind: str, args: list) -> str:
    if kind == "aten::pad":
        return str(args[2])
    if kind == "aten::constant_pad_nd":
        return "constant"
    return "reflect" if "reflection" in kind else "replicate"


def _pad(cls: type, kind: str, args: list) -> nn.Module | None:
    sides = tuple(int(s) for s in args[1])
    mode = _pad_mode(kind, args)
    fill = (args[3] if kind == "aten::pad" else args[2]) if mode == "constant" else None
    if _PAD_MODES.get(cls) != {"constant": "zeros"}.get(mode, mode):
        return None
    if cls.__name__.startswith("ConstantPad"):
        return cls(sides, 0.0 if fill is None else float(fill))
    if cls.__name__.startswith("ZeroPad") and fill:
        return None
    return cls(sides)


def _batchnorm(cls: type, args: list) -> nn.Module:
    weight, bias, mean, var, training, _, eps = args[1:8]
    module = cls(mean.shape[0] if mean is not None else weight.shape[0], eps=eps,
                 affine=weight is not None, track_running_stats=mean is not None)
    tensors = dict(weight=weight, bias=bias, running_mean=mean, running_var=var)
    return _with_tensors(module, **tensors).train(bool(training))


_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _instancenorm(cls: type, args: list) -> nn.Module:
    """An InstanceNorm of ``aten::instance_norm``'s arguments (traced): running statistics
    used exactly where ``use_input_stats`` is false."""
    x, weight, bias, mean, var, use_input_stats, momentum, eps = args[:8]
    module = cls(x.shape[1], eps=eps, momentum=momentum, affine=weight is not None,
                 track_running_stats=mean is not None)
    tensors = dict(weight=weight, bias=bias, running_mean=mean, running_var=var)
    return _with_tensors(module, **tensors)


def _instancenorm_of(cls: type, script: Any) -> nn.Module:
    """An InstanceNorm of a scripted one's constants and tensors (then checked against its
    output on the probe, as every rebuilt module)."""
    module = cls(script.num_features, eps=script.eps, momentum=script.momentum,
                 affine=script.affine, track_running_stats=script.track_running_stats)
    return _with_tensors(module, **{name: getattr(script, name, None) for name in (
        "weight", "bias", "running_mean", "running_var")})


def _activation(cls: type, name: str, args: list) -> nn.Module | None:
    if name == "relu" and cls is nn.ReLU:
        return nn.ReLU()
    if name == "leaky_relu" and cls is nn.LeakyReLU:
        return nn.LeakyReLU(float(args[1]))
    if name == "elu" and cls is nn.ELU and args[2] == 1 and args[3] == 1:
        return nn.ELU(float(args[1]))
    if name == "hardtanh" and cls is nn.ReLU6 and (args[1], args[2]) == (0, 6):
        return nn.ReLU6()
    if name == "hardtanh" and cls is nn.Hardtanh:
        return nn.Hardtanh(float(args[1]), float(args[2]))
    if name == "softplus" and cls is nn.Softplus:
        return nn.Softplus(args[1], args[2])
    if (name, cls) in (("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)):
        return cls()
    if name == "gelu" and cls is nn.GELU:
        return nn.GELU(approximate=str(args[1]) if len(args) > 1 else "none")
    if _PLAIN_ACTIVATIONS.get(name) is cls:
        return cls()
    # (a hunt: these six had bounds in the eager report and none in a TorchScript one)
    if name == "prelu" and cls is nn.PReLU:
        weight = args[1]
        return _with_tensors(nn.PReLU(weight.numel()), weight=weight)
    if name == "celu" and cls is nn.CELU:
        return nn.CELU(float(args[1]))
    if name == "softshrink" and cls is nn.Softshrink:
        return nn.Softshrink(float(args[1]))
    if name == "log_sigmoid" and cls is nn.LogSigmoid:
        return nn.LogSigmoid()
    if name == "softmax" and cls in (nn.Softmax, nn.Softmax2d):
        return nn.Softmax(int(args[1])) if cls is nn.Softmax else nn.Softmax2d()  # (a new
        # user's trial: unknown)
    if name == "rrelu" and cls is nn.RReLU:  # (its slopes; its mode, the module's, is set
        # after: a new user's trial found it unknown)
        return nn.RReLU(float(args[1]), float(args[2]))
    return None
