"""The calls a traced forward makes on its signal, and which layer each one is.

The vocabulary of :mod:`sparseconv._torch_graph` (which builds a network's operator) and of
:mod:`sparseconv._torch_graph_rules` (which bounds it): sums, negations and products by
numbers, transpositions of axes, concatenations, ``x @ W``, ``torch.einsum`` with a constant
(:func:`einsum_split`), ``torch.where`` by a constant mask, reshapes, and the functional
calls of ``torch.nn.functional`` that a module of :mod:`sparseconv.torch` computes
(:func:`linear_call_layer`: ``F.conv2d``, ``F.avg_pool2d``, ``F.interpolate``, ``F.pad``,
``F.linear``...), read with their arguments normalized by keyword (:func:`by_keyword`).
"""

from __future__ import annotations

import math
import operator as pyop
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.operator_schemas import normalize_function

from sparseconv._torch_fixed_layers import _padding
from sparseconv._torch_kinds import (
    _CONV_T,
    _POOL,
    Interpolate,
)
from sparseconv._torch_layer_base import _Layer
from sparseconv._torch_layers import _layer
from sparseconv._typing import PaddingMode

__all__ = ["EINSUM", "EINSUM_SUBLIST", "MATMUL", "MAX_POOL_F", "REPEATS", "RUNNING",
           "RUN_BY_TORCH", "SELECTIONS", "WHERE", "EinsumSplit", "acts_per_sample",
           "by_keyword", "call_on", "einsum_constants_refusal", "einsum_operands",
           "einsum_split", "function_name", "identity_in_eval", "inside",
           "linear_call_layer", "matmul_operands", "module_path", "repeat_counts",
           "transposition_axes", "where_operands"]


#: Sums and differences, by the sign of their second operand (``torch.rsub(x, y, alpha)`` is
#: ``y - alpha x``: its first's), with torch's aliases (a new user's trial found
#: ``torch.rsub`` and ``torch.true_divide`` refused where ``1 - y`` and ``y / 0.5`` were not).
_ADD = {pyop.add: 1, pyop.iadd: 1, torch.add: 1, "add": 1, "add_": 1,
        pyop.sub: -1, pyop.isub: -1, torch.sub: -1, "sub": -1, "sub_": -1,
        torch.subtract: -1, "subtract": -1, "subtract_": -1, torch.rsub: -1}


_NEG = {pyop.neg, torch.neg, torch.negative, "neg", "negative"}


#: the operators torch.fx records an augmented assignment ``y += z`` as (``y + z``: a Proxy
#: has no in-place operators)
_AUGMENTED = {pyop.add, pyop.sub, pyop.mul, pyop.truediv, pyop.floordiv, pyop.mod, pyop.pow,
              pyop.matmul, pyop.and_, pyop.or_, pyop.xor, pyop.lshift, pyop.rshift}


#: Products and quotients (of the signal by a constant, in the operator and the bound).
_SCALE = {pyop.mul, pyop.imul, torch.mul, "mul", "mul_", torch.multiply, "multiply",
          "multiply_"}
_DIVIDE = {pyop.truediv, pyop.itruediv, torch.div, "div", "div_", torch.divide, "divide",
           "divide_", torch.true_divide, "true_divide", "true_divide_"}
_MUL = {*_SCALE, *_DIVIDE, *_NEG}


#: transpositions of axes (:func:`transposition_axes`)
_TRANSPOSE = {"permute", torch.permute, "transpose", torch.transpose, "swapaxes",
              torch.swapaxes, "swapdims", torch.swapdims, "movedim", torch.movedim, "moveaxis",
              torch.moveaxis}


_CAT = {torch.cat, torch.concat, torch.concatenate}


#: ``x @ W`` and ``W @ x``: linear in the signal when the other operand is a constant
MATMUL = {pyop.matmul, torch.matmul, torch.mm, "matmul", "mm"}


#: ``x.repeat(*sizes)``, ``x.tile(dims)``, ``torch.tile(x, dims)``: every entry copied.
REPEATS = {"repeat", "tile", torch.tile}

#: Reads of a tensor's memory layout, by method (an aten operation's) name: a module of the
#: user's taken whole, given its constant, may not make them (eager or TorchScript), as it
#: may compute otherwise on the view the model passes than on the argument its constant was
#: measured on (reviews: ``is_contiguous``, ``storage_offset``, ``dim_order``).
LAYOUT_READS = frozenset({"is_contiguous", "stride", "storage_offset", "dim_order",
                          "is_non_overlapping_and_dense", "is_set_to", "is_neg", "is_conj",
                          "is_pinned", "is_shared", "data_ptr"})

#: Linear tensor calls, homogeneous in the signal (their other arguments constants), run by
#: torch itself (a new user's trial found them refused): selections, permutations, copies
#: (each output entry one input entry) and running sums and differences along an axis.
SELECTIONS = frozenset({
    "narrow", torch.narrow, "flip", torch.flip, "fliplr", torch.fliplr, "flipud", torch.flipud,
    "roll", torch.roll, "expand", "index_select", torch.index_select, "repeat_interleave",
    torch.repeat_interleave, "tril", torch.tril, "triu", torch.triu, "select", torch.select,
    "rot90", torch.rot90, "unfold"})  # (the method: windows of an axis, audio's frames)
#: Running sums and differences along one axis (``cumsum``, ``diff``), run by torch too.
RUNNING = frozenset({"cumsum", torch.cumsum, "diff", torch.diff})
RUN_BY_TORCH = SELECTIONS | RUNNING


@dataclass(frozen=True, eq=False)
class PerSample:
    """A constant argument that torch wants of the batch's size, made at the probe's, whose
    samples are equal (``torch.diff(x, prepend=torch.zeros_like(x[..., :1]))``): its first
    sample, expanded to the batch the call runs on (:func:`call_on`)."""

    tensor: torch.Tensor


#: The constant arguments (name, position) that torch wants of the input's batch size.
_BATCH_SIZED = {"diff": (("prepend", 3), ("append", 4))}


def per_sample_arguments(target: Any, args: Any, kwargs: dict, batch: int,
                         ) -> tuple[list, dict] | str:
    """``target``'s arguments with those torch wants of the batch's size (``diff``'s
    ``prepend`` and ``append``), made at the probe's ``batch``, each as :class:`PerSample`;
    or why not: one whose samples differ (a new user's trial: ``torch.diff(x,
    prepend=torch.zeros_like(x[..., :1]))``, linear, had no operator and no bound, said to
    run on no batch of three)."""
    args, kwargs = list(args), dict(kwargs)
    for key, position in _BATCH_SIZED.get(function_name(target), ()):
        where: dict[Any, Any] = kwargs if key in kwargs else dict(enumerate(args))
        slot = key if key in kwargs else position
        value = where.get(slot)
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != batch:
            continue
        if not bool((value == value[:1]).all()):
            return f"takes a {key} whose samples differ (a constant of the probe's batch)"
        if key in kwargs:
            kwargs[key] = PerSample(value[:1].clone())
        else:
            args[position] = PerSample(value[:1].clone())
    return args, kwargs


def without_constants(args: list, kwargs: dict) -> tuple[list, dict]:
    """``args`` and ``kwargs`` with each :class:`PerSample` made zero: the linear part of a
    call that is linear in them and the signal together (``diff``'s)."""
    def zero(a: Any) -> Any:
        return PerSample(torch.zeros_like(a.tensor)) if isinstance(a, PerSample) else a
    return [zero(a) for a in args], {k: zero(a) for k, a in kwargs.items()}


def call_on(target: Any, args: Any, kwargs: dict, source: torch.fx.Node,
            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The call ``target(*args, **kwargs)`` (a method's name: on its first argument) as a
    function of the tensor that takes the place of ``source``; the other arguments as they
    are (values), a :class:`PerSample` expanded to that tensor's batch."""
    where = [k for k, a in enumerate(args) if a is source]
    key = next((k for k, a in kwargs.items() if a is source), None)

    def run(x: torch.Tensor) -> torch.Tensor:
        call_args, call_kwargs = list(args), dict(kwargs)
        for k in where:
            call_args[k] = x
        if key is not None:
            call_kwargs[key] = x
        for k, a in enumerate(call_args):
            if isinstance(a, PerSample):
                call_args[k] = a.tensor.expand(x.shape[0], *a.tensor.shape[1:])
        for name, a in call_kwargs.items():
            if isinstance(a, PerSample):
                call_kwargs[name] = a.tensor.expand(x.shape[0], *a.tensor.shape[1:])
        if isinstance(target, str):
            return getattr(call_args[0], target)(*call_args[1:], **call_kwargs)
        return target(*call_args, **call_kwargs)

    return run


def module_path(node: torch.fx.Node) -> str:
    """The qualified name of the module whose forward makes a graph's call (torch.fx's
    record), ``""`` at the top (or for a module's own call)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack and node.op != "call_module" else ""


def inside(node: torch.fx.Node) -> str:
    """Where a graph's call is made, for messages: ``" in module 'blocks.3'"``, or ``""``
    at the top (a new user's trial was told of "node 'add_2'" in a stack of eight blocks)."""
    path = module_path(node)
    return f" in module {path!r}" if path else ""


def acts_per_sample(run: Callable[[torch.Tensor], torch.Tensor],
                    sample_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The sample shape of ``run``'s output where it acts on each sample alone, keeping the
    batch axis first: checked on a seeded random batch of three of ``sample_shape``, each
    sample's output unchanged, to the bit, when the other two samples are drawn again, and
    the same, but for rounding, when it runs alone (``x.flip(0)``, ``x.cumsum(0)``,
    ``x.select(0, 0)`` fail); else None. Raises what ``run`` raises. (Compared to the bit
    with each sample run alone, the values differed in rounding where torch batches a
    product, ``torch.einsum``'s; the same batch of three runs the same arithmetic for each
    sample.)"""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((3, *sample_shape), dtype=torch.float64, generator=generator)
    whole = run(x)
    if not isinstance(whole, torch.Tensor) or whole.ndim == 0 or whole.shape[0] != 3:
        return None
    for k in range(3):
        others = torch.randn((3, *sample_shape), dtype=torch.float64, generator=generator)
        others[k] = x[k]
        again, alone = run(others), run(x[k:k + 1])
        if again.shape != whole.shape or not torch.equal(again[k], whole[k]):
            return None
        scale = float(whole[k].abs().max()) if whole[k].numel() else 0.0
        if alone.shape != (1, *whole.shape[1:]) or not torch.allclose(
                alone[0], whole[k], rtol=1e-12, atol=1e-12 * scale):
            return None
    return tuple(whole.shape[1:])


def repeat_counts(target, args: list, kwargs: dict, ndim: int) -> tuple[int, ...]:
    """The copies per axis (batch axis first) of a :data:`REPEATS` call on an ``ndim``-axis
    tensor, its counts given as numbers by position or keyword (``x.repeat(1, 2, 1, 1)``,
    ``x.repeat((1, 2, 1, 1))``, ``torch.tile(x, dims=(2, 1, 1))``: ``tile`` puts ones before
    counts fewer than the axes, none for ``x.tile(())``). Raises ``ValueError`` for counts
    that are no non-negative integers (a count computed in the forward is one only where
    the caller has read it at its traced value), or more counts than axes (new axes before
    the batch's).

    Examples
    --------
    >>> repeat_counts("repeat", [None, 1, 2, 1, 1], {}, 4)
    (1, 2, 1, 1)
    >>> repeat_counts(torch.tile, [None], {"dims": (3, 1)}, 4)
    (1, 1, 3, 1)
    """
    keys = ("repeats", "sizes") if target == "repeat" else ("dims",)
    given = next((kwargs[key] for key in keys if key in kwargs), None)
    if given is None:
        given = args[1:] if len(args) != 2 or isinstance(args[1], (int, np.integer)) \
            else args[1]
    counts = tuple(given) if isinstance(given, (tuple, list, torch.Size)) else (given,)
    if (not counts and target == "repeat") or any(
            isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0
            for c in counts):
        raise ValueError(f"counts {counts!r} that are no non-negative integers written in "
                         "the forward")
    if len(counts) > ndim or (target == "repeat" and len(counts) < ndim):
        raise ValueError(f"{len(counts)} counts for a tensor of {ndim} axes")
    return (1,) * (ndim - len(counts)) + tuple(int(c) for c in counts)


def transposition_axes(target, args: list, kwargs: dict, ndim: int) -> list[int]:
    """The permutation ``axes`` (``y = x.transpose(axes)`` in numpy's sense, batch axis
    included) of a :data:`_TRANSPOSE` call on an ``ndim``-axis tensor, its arguments given by
    position or keyword (``x.permute(0, 2, 1)``, ``torch.permute(x, dims=...)``,
    ``torch.swapaxes(x, axis0=1, axis1=2)``, ``x.movedim(1, -1)``).

    Examples
    --------
    >>> transposition_axes("movedim", [None, 1, -1], {}, 4)
    [0, 2, 3, 1]
    >>> transposition_axes(torch.swapaxes, [None], {"axis0": 1, "axis1": 3}, 4)
    [0, 3, 2, 1]
    """
    name = getattr(target, "__name__", target)

    def given(position: int, *keys: str):
        for key in keys:
            if key in kwargs:
                return kwargs[key]
        if len(args) > position:
            return args[position]
        raise TypeError(f"{name} without its {keys[0]} argument")

    def axis(d) -> int:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not -ndim <= d < ndim:
            raise ValueError(f"axis {d!r} of a tensor of {ndim} axes")
        return int(d) % ndim

    if name == "permute":
        dims = kwargs["dims"] if "dims" in kwargs else (
            args[1:] if target == "permute" else given(1, "dims"))
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        axes = [axis(d) for d in dims]
        if sorted(axes) != list(range(ndim)):
            raise ValueError(f"dims {tuple(dims)} are no permutation of {ndim} axes")
        return axes
    axes = list(range(ndim))
    if name in ("transpose", "swapaxes", "swapdims"):
        d0 = axis(given(1, "dim0", "axis0"))
        d1 = axis(given(2, "dim1", "axis1"))
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return axes
    # movedim / moveaxis: numpy's moveaxis
    source, destination = given(1, "source"), given(2, "destination")
    source = [axis(d) for d in (source if isinstance(source, (tuple, list)) else (source,))]
    destination = [axis(d) for d in (destination if isinstance(destination, (tuple, list))
                                     else (destination,))]
    if len(source) != len(destination) or len(set(source)) != len(source) or len(
            set(destination)) != len(destination):
        raise ValueError(f"source {source} and destination {destination} do not pair up")
    rest = [a for a in axes if a not in source]
    order: list[int | None] = [None] * ndim
    for s_, d_ in zip(source, destination):
        order[d_] = s_
    it = iter(rest)
    return [next(it) if o is None else o for o in order]


def matmul_operands(args, kwargs: dict) -> tuple[Any, Any]:
    """The left and right operands of a :data:`MATMUL` call, given by position or keyword."""
    left = kwargs.get("input", args[0] if args else None)
    return left, kwargs.get("other", kwargs.get("mat2", args[1] if len(args) > 1 else None))


_RESHAPE = {torch.flatten, "flatten", "view", "reshape", torch.reshape, "squeeze",
            torch.squeeze, "unsqueeze", torch.unsqueeze, "contiguous", "clone", torch.clone,
            "view_as", "reshape_as", "float", "double", "to", "type_as", "detach"}


_DROPOUT_F = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
              F.feature_alpha_dropout}


#: What a call may read off a value of the signal without a tensor coming out: its sizes,
#: dtype, device and layout, never its values (tensor methods by name; functions by
#: identity: a review found a function of the user's named ``numel``, wrapped by
#: torch.fx.wrap, returning a gate on the values).
METADATA_METHODS = frozenset({"size", "dim", "ndimension", "numel", "nelement", "stride",
                              "storage_offset", "is_contiguous", "is_complex",
                              "is_floating_point", "element_size", "get_device", "type"})
METADATA_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "layout", "is_cuda",
                                 "requires_grad", "is_sparse", "itemsize", "nbytes"})
METADATA_FUNCTIONS = (len, torch.numel, torch.is_floating_point, torch.is_complex,
                      torch.result_type)


def reads_metadata(node: Any) -> bool:
    """Whether a graph's call reads only :data:`METADATA_METHODS`,
    :data:`METADATA_ATTRIBUTES` or :data:`METADATA_FUNCTIONS` of what it is given (a value
    of the signal that returns no tensor reads its values otherwise: ``allclose``,
    ``item``, ``tolist``)."""
    if node.op == "call_method":
        return node.target in METADATA_METHODS
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] in METADATA_ATTRIBUTES
    return node.op == "call_function" and any(node.target is f for f in METADATA_FUNCTIONS)


def function_name(target: Any) -> str:
    """The name a graph's call goes by: ``softplus`` for ``F.softplus``, for
    ``x.softplus()`` and for ``torch.ops.aten.softplus.default`` alike (a review: the aten
    form of ``torch.empty`` passed a check of its function by identity)."""
    name = str(getattr(target, "__name__", target))
    if str(getattr(target, "__module__", "")).startswith("torch._ops"):
        name = name.split(".")[0]  # (an overload's: empty.memory_format)
    return name


def identity_in_eval(target: Any, args: Any, kwargs: dict) -> bool:
    """Whether a call is torchvision's ``stochastic_depth`` (``torchvision.ops.
    StochasticDepth``'s, which torch.fx sees as one call: torchvision wraps it) with
    ``training=False`` or ``p=0``, where it returns its input (a new user's trial:
    torchvision's ConvNeXt and EfficientNet blocks in eval mode were refused, "not a call
    whose Lipschitz constant is known"). Read by name, torchvision not imported."""
    if getattr(target, "__module__", None) != "torchvision.ops.stochastic_depth" or getattr(
            target, "__name__", None) != "stochastic_depth":
        return False
    training = kwargs.get("training", args[3] if len(args) > 3 else True)
    p = kwargs.get("p", args[1] if len(args) > 1 else None)
    return training is False or type(p) in (int, float) and p == 0


_POOL_F = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d, F.avg_pool3d: nn.AvgPool3d,
           F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
           F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
           F.adaptive_avg_pool3d: nn.AdaptiveAvgPool3d,
           F.pixel_shuffle: nn.PixelShuffle, F.pixel_unshuffle: nn.PixelUnshuffle,
           F.unfold: nn.Unfold, F.fold: nn.Fold}


_CONV_F = {F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d,
           F.conv_transpose1d: nn.ConvTranspose1d, F.conv_transpose2d: nn.ConvTranspose2d,
           F.conv_transpose3d: nn.ConvTranspose3d}


# the functional calls read by keyword (torch.fx's normalize_function)
#: Max pooling: no linear map, but the module of the same windows (the graph bound's
#: constant, ``sqrt(w)``).
MAX_POOL_F = {F.max_pool1d: nn.MaxPool1d, F.max_pool2d: nn.MaxPool2d, F.max_pool3d: nn.MaxPool3d}


_NORMALIZED = {*_DROPOUT_F, *_POOL_F, *_CONV_F, *MAX_POOL_F, F.interpolate, F.pad, F.linear,
               F.batch_norm}
_PAD_F: dict[str, PaddingMode] = {"constant": "zeros", "reflect": "reflect",
                                   "replicate": "replicate", "circular": "circular"}


def by_keyword(target, args: list, kwargs: dict, kind: Callable[[torch.fx.Node], type],
               ) -> tuple[list, dict]:
    """A call of one of the functions read by keyword (:data:`_NORMALIZED`) as keywords alone
    (torch.fx's ``normalize_function``; ``kind``: the type of a node's value); any other call
    as it is."""
    if target not in _NORMALIZED:
        return args, kwargs

    def of(a):
        if isinstance(a, torch.fx.Node):
            return kind(a)
        if isinstance(a, (tuple, list)) and a:  # the schema's int[] (a tuple or list type
            # matched no overload: F.conv2d(x, w, padding=(1, 1)) was left unread; a hunt)
            for kind_, types in ((bool, bool), (int, int), (float, (int, float))):
                if all(isinstance(v, types) for v in a):
                    return list[kind_]
        return type(a)

    normalized = normalize_function(target, tuple(args), kwargs, tuple(of(a) for a in args),
                                    {k: of(v) for k, v in kwargs.items()},
                                    normalize_to_only_use_kwargs=True)
    return ([], dict(normalized.kwargs)) if normalized is not None else (args, kwargs)


def linear_call_layer(target, args: list, kwargs: dict, shape: tuple[int, ...],
                      ) -> tuple[nn.Module | None, _Layer] | None:
    """The module and layer of a linear functional call on an input of ``shape`` (without the
    batch), read in ``torch.fx``'s graph with its constant arguments' values in place:
    ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``, ``F.interpolate``, ``F.pixel_shuffle``,
    ``F.unfold``, ..., ``F.pad`` (no module), and ``F.linear``, ``F.conv*d`` and
    ``F.conv_transpose*d`` by a constant weight (a parameter, or one ``forward`` computes
    from its parameters); None for another call, or one whose other arguments are computed
    from the signal (still nodes)."""
    if not (target in _POOL_F or target in _CONV_F or target in (F.interpolate, F.pad,
                                                                   F.linear, F.batch_norm)):
        return None
    args, kwargs = by_keyword(target, args, kwargs, lambda a: torch.Tensor)
    constants = {k: v for k, v in kwargs.items() if k != "input"}
    computed: list[torch.fx.Node] = []
    torch.fx.node.map_arg(list(constants.values()), computed.append)
    if args or computed or not isinstance(kwargs.get("input"), torch.fx.Node):
        return None
    if target is F.pad:
        mode = constants.get("mode", "constant")
        if mode not in _PAD_F:
            raise TypeError(f"F.pad in mode {mode!r} is not one of {tuple(_PAD_F)}")
        return None, _padding("F.pad", shape, constants["pad"], _PAD_F[mode],
                              float(constants.get("value") or 0.0))
    module = _functional_module(target, constants, shape)
    return None if module is None else (module, _layer(module.eval(), shape))


def _batch_norm_module(kwargs: dict, shape: tuple[int, ...]) -> nn.Module | None:
    """``F.batch_norm`` by running statistics with ``training=False`` (a per-channel affine
    map: a new user's trial found it refused where ``nn.BatchNorm2d`` is read) as the
    eval-mode ``nn.BatchNorm1d/2d/3d`` of ``shape``'s rank; None with batch statistics
    (``training=True``, or no running statistics: no linear map of one sample)."""
    mean, var = kwargs.get("running_mean"), kwargs.get("running_var")
    if kwargs.get("training", False) or mean is None or var is None or len(shape) > 4:
        return None
    for name in ("running_mean", "running_var", "weight", "bias"):
        tensor = kwargs.get(name)
        if tensor is not None and not (isinstance(tensor, torch.Tensor)
                                       and tensor.is_floating_point()):
            raise TypeError(f"batch_norm's {name} is not a real floating tensor ({tensor!r:.60})")
    kind = (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[len(shape) - 1]
    module = kind(shape[0], eps=float(kwargs.get("eps", 1e-5))).to(torch.float64)
    with torch.no_grad():
        weight, bias = kwargs.get("weight"), kwargs.get("bias")
        assert module.running_mean is not None and module.running_var is not None  # (made:
        assert module.weight is not None and module.bias is not None  # affine, with stats)
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
        module.weight.copy_(torch.ones(shape[0]) if weight is None else weight)
        module.bias.copy_(torch.zeros(shape[0]) if bias is None else bias)
    return module.eval()


def _functional_module(target, kwargs: dict,
                       shape: tuple[int, ...] | None = None) -> nn.Module | None:
    """The module whose forward is the functional call ``target(**kwargs)`` (input aside) on
    an input of ``shape`` (without the batch; ``F.batch_norm``'s module depends on it)."""
    if target is F.batch_norm:
        return None if shape is None else _batch_norm_module(kwargs, shape)
    if target in _POOL_F:
        cls = _POOL_F[target]
        if cls in _POOL:
            if not kwargs.get("stride"):
                kwargs["stride"] = None  # PyTorch's default: the kernel size
            return cls(**kwargs)
        return cls(*kwargs.values())
    if target is F.interpolate:  # (nn.Upsample, which it builds on, takes tuples, not lists)
        listless: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                    for k, v in kwargs.items()}
        return Interpolate(**listless)
    if target is F.linear or target in _CONV_F:
        weight, bias = kwargs.pop("weight"), kwargs.pop("bias", None)
        rank = 2 if target is F.linear else list(_CONV_F).index(target) % 3 + 3
        for name, tensor in (("weight", weight), ("bias", bias)):
            if tensor is None:
                continue
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                kind = str(tensor.dtype) if isinstance(tensor, torch.Tensor) else type(
                    tensor).__name__
                raise TypeError(f"{target.__name__}'s {name} is not a real floating tensor "
                                f"({kind}): sparseconv.torch reads real layers (a complex "
                                "one would lose its imaginary part)")
        if weight.ndim != rank:
            raise TypeError(f"{target.__name__}'s weight has shape {tuple(weight.shape)}, not "
                            f"{rank} dimensions")
        if target is F.linear:
            module: Any = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        else:
            groups = kwargs.get("groups", 1)
            conv: Any = _CONV_F[target]
            # a convolution's weight is (C_out, C_in/g, *k); a transposed one's (C_in, C_out/g)
            channels = ((weight.shape[0], weight.shape[1] * groups) if conv in _CONV_T else
                        (weight.shape[1] * groups, weight.shape[0]))
            module = conv(*channels, tuple(weight.shape[2:]), bias=bias is not None, **kwargs)
        module = module.to(torch.float64)
        with torch.no_grad():
            module.weight.copy_(weight)
            if bias is not None:
                module.bias.copy_(bias)
        return module
    return None


#: ``torch.einsum(equation, x, W)`` (or ``W, x``, or ``[x, W]``): linear in the signal ``x``
#: when ``W`` is a constant tensor
EINSUM = {torch.einsum}


@dataclass(frozen=True)
class EinsumSplit:
    """``torch.einsum`` of the signal and a constant, as a map of one sample: the constant
    permuted to ``(S, F, K)`` axes (``order``; each group of axes merged into one) applies
    ``W[s]`` (``F x K``) to the ``K`` entries of the signal at each ``s``, after a sum of
    ``summed`` signal entries that appear in no output. Its norm is ``sqrt(summed) * max_s
    ||W[s]||_2``: the axes the output shares with the signal alone copy nothing, and each
    ``s`` is its own block. ``S``: in both operands and the output; ``K``: in both, not the
    output; ``F``: the constant's, in the output."""

    order: tuple[int, ...]
    shared: int
    free: int
    contracted: int
    summed: int

    def grouped(self, constant: torch.Tensor) -> torch.Tensor:
        """The constant as the weight of a 1-D 1x1 convolution with ``groups=shared``,
        ``(shared * free, contracted, 1)``, whose norm is ``max_s ||W[s]||_2``."""
        return constant.permute(self.order).reshape(
            self.shared * self.free, self.contracted, 1)


#: Why einsum's sublist form (``einsum(x, [0, 1], w, [1, 2])``) has neither an operator nor
#: a bound here.
EINSUM_SUBLIST = ("is einsum's sublist form (operand, [labels], ...), which is not read here: "
                  "write its equation")


def einsum_constants_refusal(constants: list) -> str:
    """Why ``torch.einsum`` of the signal and these other operands (their values) is read
    neither by ``network_operator`` nor by the bound over the graph, or ``""``: one that is no
    constant real floating tensor (a node of the graph, a complex tensor), or has non-finite
    entries."""
    if any(isinstance(c, torch.fx.Node) or not (isinstance(c, torch.Tensor)
                                                and c.is_floating_point()) for c in constants):
        return "contracts the signal with a tensor that is no constant real floating tensor"
    if any(not bool(torch.isfinite(c).all()) for c in constants):
        return "contracts the signal with a tensor with non-finite entries"
    return ""


def einsum_operands(args: Any, kwargs: dict) -> tuple[Any, list]:
    """The equation and the operands of a ``torch.einsum`` call, as its arguments or one list
    of them."""
    equation = kwargs.get("equation", args[0] if args else None)
    operands = list(args[1:]) or list(kwargs.get("operands", []))
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    return equation, operands


def einsum_split(equation: Any, shapes: list[tuple[int, ...]], signal: int,
                 ) -> EinsumSplit | str:
    """How ``torch.einsum(equation, *operands)`` acts on operand ``signal`` (a batch, its axis
    0 the samples'; ``shapes`` the operands' with that batch) when the other is a constant
    (:class:`EinsumSplit`), or why it has no rule: another number of operands, a label twice
    in one operand (a diagonal), an ellipsis in the constant's subscripts, a constant summed
    over a label of its own, a size the constant broadcasts, the batch axis not the output's
    first or in the constant."""
    if not isinstance(equation, str):
        return "takes an equation that is not a string"
    if len(shapes) != 2:
        return f"contracts {len(shapes)} operands (one signal and one constant have a rule)"
    lhs, arrow, out = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != 2:
        return f"has {len(terms)} operands' subscripts in {equation!r} for 2 operands"
    unused = [c for c in string.ascii_letters if c not in equation]
    longest = max((len(s) - len(t.replace("...", "")) for s, t in zip(shapes, terms)
                   if "..." in t), default=0)
    ellipsis = "".join(unused[:max(longest, 0)])
    expanded = []
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        if "..." in term:
            count = len(shape) - len(term.replace("...", ""))
            if count < 0 or term.count("...") > 1:
                return f"has subscripts {term!r} that do not fit a tensor of shape {shape}"
            if count and k != signal:
                return "broadcasts the constant over '...'"
            term = term.replace("...", ellipsis[len(ellipsis) - count:])
        expanded.append(term)
    if not all(c.isalpha() for c in "".join(expanded)) or any(
            len(t) != len(s) for t, s in zip(expanded, shapes)):
        return f"has subscripts {equation!r} that do not fit operands of shapes {shapes}"
    if any(len(set(t)) != len(t) for t in expanded):
        return "takes a diagonal (a label twice in one operand)"
    if arrow:
        output = out.replace("...", ellipsis)
    else:  # torch's implicit output: the ellipsis, then the labels seen once, sorted
        labels = "".join(expanded)
        output = ellipsis + "".join(sorted(c for c in set(labels) if labels.count(c) == 1
                                           and c not in ellipsis))
    x, w = expanded[signal], expanded[1 - signal]
    if len(set(output)) != len(output) or not set(output) <= set(x + w):
        return f"has an output {out!r} that is not its operands' labels once each"
    size = dict(zip(x, shapes[signal]))
    constant = dict(zip(w, shapes[1 - signal]))
    if any(size[c] != constant[c] for c in set(x) & set(w)):
        return "broadcasts the constant along a label of the signal"
    if x[0] in w or not output or output[0] != x[0]:
        return "reads or moves the batch axis (the bound is of a map of one sample)"
    if set(w) - set(x) - set(output):
        return "sums the constant over a label of its own"
    shared = [c for c in w if c in x and c in output]
    free = [c for c in w if c not in x]
    contracted = [c for c in w if c in x and c not in output]
    summed = [c for c in x if c not in w and c not in output]
    if 0 in shapes[signal] or 0 in shapes[1 - signal]:
        return "has an empty operand"
    return EinsumSplit(tuple(w.index(c) for c in shared + free + contracted),
                       math.prod(constant[c] for c in shared),
                       math.prod(constant[c] for c in free),
                       math.prod(constant[c] for c in contracted),
                       math.prod(size[c] for c in summed))


#: ``torch.where(condition, input, other)``, ``x.where(condition, other)`` and
#: ``x.masked_fill(mask, value)``: linear (affine) in the signal when the condition is a
#: constant boolean tensor and every operand the signal or a constant
WHERE = {torch.where, "where", torch.masked_fill, "masked_fill"}


def where_operands(target: Any, args: Any, kwargs: dict) -> tuple[Any, Any, Any]:
    """``(condition, input, other)`` of a :data:`WHERE` call, given by position or keyword:
    ``torch.where(condition, input, other)``; ``x.where(condition, other)``;
    ``x.masked_fill(mask, value)`` is ``torch.where(mask, value, x)``. ``condition`` is
    None for ``torch.where(condition)`` alone (the indices of its true entries)."""
    if target in (torch.masked_fill, "masked_fill"):
        x = kwargs.get("input", kwargs.get("self", args[0] if args else None))
        mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
        return mask, kwargs.get("value", args[2] if len(args) > 2 else None), x
    if target == "where":
        x = kwargs.get("self", args[0] if args else None)
        return (kwargs.get("condition", args[1] if len(args) > 1 else None), x,
                kwargs.get("other", args[2] if len(args) > 2 else None))
    condition = kwargs.get("condition", args[0] if args else None)
    if len(args) + len(kwargs) < 3:
        return None, None, None
    return (condition, kwargs.get("input", args[1] if len(args) > 1 else None),
            kwargs.get("other", args[2] if len(args) > 2 else None))
