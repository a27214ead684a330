"""A TorchScript model's graph rebuilt as a torch.fx graph of eager modules
(:func:`script_graph_module`), so that the bound over the graph
(:func:`sparseconv._torch_graph_bound.graph_bound`) follows a compiled residual model as it
follows the eager one.

The inlined graph's top-level nodes are grouped into calls of leaf modules as the report's rows
read them (:func:`sparseconv._torch_script.script_calls`); each call becomes one ``call_module``
node of the module its row was read off (rebuilt from the call's operations, and checked
there), and the few operations a forward runs between its layers become the torch functions
they are (:data:`_FUNCTIONS`: sums, products by numbers, concatenations, reshapes, basic
slices, ReLU, sizes, ``einsum`` and ``where``, dropouts in eval mode...; a partition's pieces,
:data:`_PARTITIONS`; the ranks of tensors, :meth:`_Builder._rank`, and loops on
constants, run here, which ``F.interpolate``'s compiled code needs;
a list the forward builds and appends to; a parameter or buffer read outside the layers, as a
constant; a value computed from parameters and constants alone, read off a probe run,
:func:`_constant_values`). A leaf module of a class of the user's is no layer: its
operations are walked as the forward's own. A check that only raises (an ``assert``, a shape
check) is skipped with the values it alone reads: where the model does not raise, the graph
computes what it does, and a bound of a map holds on any part of its domain. Anything else
is refused, saying what: an operation with no translation here, an ``if`` or a loop whose
condition the graph does not fix, a parameter or buffer changed in place.

TorchScript's values are SSA, its tensors are not: an in-place operation (``out +=
identity``, an ``nn.ReLU(inplace=True)``'s ``relu_``) changes the memory its argument names,
and a node that reads that argument afterwards reads the changed values. The graph built here
computes every operation out of place, so it is the model's only where no such read can tell
the difference: after an in-place write, the written value itself is read as the write's
result (what its memory then holds), and any other value that may share its memory at the
write (by the alias annotations of the operations run so far; a node without a schema is
taken to alias all its tensors) and was made before the write is refused if anything reads
it afterwards; a layer's call whose output shares its input's memory on a probe (an
eval-mode ``Dropout`` returns its input itself, which its operation's schema does not say)
joins the two. The rebuilt graph is then run beside the model on two probe batches and must
return what the model returns.
"""

from __future__ import annotations

import contextlib
import io
import operator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sparseconv._torch_calls import LAYOUT_READS
from sparseconv._torch_graph import output_leaves
from sparseconv._torch_graph_sizes import (
    int64_add,
    int64_floordiv,
    int64_mul,
    int64_neg,
    int64_sub,
)
from sparseconv._torch_probe import (
    UNSET_CALLS,
    draws_random,
    error_line,
    matches,
    probe_input,
)
from sparseconv._torch_script import (
    _OPAQUE,
    _UNKNOWN,
    CONDITION_OPS,
    MISSING,
    _Call,
    _calls,
    _graph_of,
    _inputs_within,
    _Modules,
    _preorder,
    _probe,
    _values_within,
    changes_a_value,
    constant_of,
    holds_tensors,
    passed_twice,
    script_attribute,
    untold_calls,
)
from sparseconv._torch_script_chain import _known_flag, _mutates, _owners, _top, _where
from sparseconv._torch_script_rebuild import _kind, _shipped
from sparseconv._torch_state import changes_own_state, restored_state, unchanged

__all__ = ["script_graph_module"]


def _pooling(name: str, dims: range) -> dict[str, Any]:
    return {f"aten::{name}{n}d": getattr(F, f"{name}{n}d") for n in dims}


#: The dropouts, which TorchScript compiles ``F.dropout``, ``F.dropout1d/2d/3d``,
#: ``F.alpha_dropout`` and ``F.feature_alpha_dropout`` to: ``(input, p, train)``.
_DROPOUTS = ("aten::dropout", "aten::feature_dropout", "aten::alpha_dropout",
             "aten::feature_alpha_dropout")


#: The operations a forward may run outside its layers, as the torch functions (or, by name,
#: the Tensor methods) they are; each reads its arguments in the schema's order, as those do.
_FUNCTIONS: dict[str, Any] = {
    "aten::add": torch.add, "aten::sub": torch.sub, "aten::mul": torch.mul,
    "aten::div": torch.div, "aten::neg": torch.neg, "aten::cat": torch.cat,
    "aten::flatten": torch.flatten, "aten::reshape": torch.reshape,
    "aten::squeeze": torch.squeeze, "aten::unsqueeze": torch.unsqueeze,
    "aten::permute": torch.permute, "aten::transpose": torch.transpose,
    "aten::relu": torch.relu, "aten::tanh": torch.tanh, "aten::sigmoid": torch.sigmoid,
    "aten::leaky_relu": F.leaky_relu, "aten::mean": torch.mean,
    # the activations with a known constant, called as functions (a new user's trial: a
    # traced F.relu6 between layers had no bound where the eager model had one)
    "aten::relu6": F.relu6, "aten::hardtanh": F.hardtanh, "aten::gelu": F.gelu,
    "aten::silu": F.silu, "aten::hardswish": F.hardswish, "aten::hardsigmoid": F.hardsigmoid,
    "aten::mish": F.mish, "aten::selu": F.selu, "aten::softshrink": F.softshrink,
    "aten::log_sigmoid": F.logsigmoid, "aten::elu": F.elu, "aten::celu": F.celu,
    "aten::rrelu": torch.rrelu,  # (its training argument decides: a draw only in training)
    "aten::softmax": torch.softmax,
    "aten::view": "view", "aten::contiguous": "contiguous", "aten::size": "size",
    "aten::dim": "dim", "aten::slice": operator.getitem, "aten::select": operator.getitem,
    "aten::narrow": torch.narrow, "aten::rsub": operator.sub,
    "aten::pad": F.pad, "aten::constant_pad_nd": F.pad,
    # a contraction with a constant, and a selection by a constant mask
    "aten::einsum": torch.einsum, "aten::where": torch.where,
    "aten::masked_fill": torch.masked_fill,
    # linear functions of the signal by constant arguments (a weight the forward computes
    # from its parameters: a weight-standardised convolution; a tied weight, fc.weight.t()),
    # and selections and copies the bound over the graph reads as the eager forward's
    **{f"aten::conv{n}d": getattr(F, f"conv{n}d") for n in range(1, 4)},
    **{f"aten::conv_transpose{n}d": getattr(F, f"conv_transpose{n}d") for n in range(1, 4)},
    "aten::_convolution": F.conv2d, "aten::convolution": F.conv2d,  # (by rank: _convolution)
    "aten::linear": F.linear, "aten::matmul": torch.matmul, "aten::mm": torch.mm,
    "aten::pixel_shuffle": F.pixel_shuffle, "aten::pixel_unshuffle": F.pixel_unshuffle,
    "aten::roll": torch.roll, "aten::flip": torch.flip, "aten::expand": "expand",
    "aten::repeat": "repeat", "aten::index_select": torch.index_select,
    "aten::batch_norm": F.batch_norm,  # (by running statistics: an affine map per channel)
    "aten::cumsum": torch.cumsum, "aten::sum": torch.sum, "aten::expand_as": "expand_as",
    # a difference along an axis, and the zeros its prepend or append is made of (a new
    # user's trial: torch.diff(x, prepend=torch.zeros_like(x[..., :1])), bounded eager, had
    # no bound scripted or traced)
    "aten::diff": torch.diff, "aten::zeros_like": torch.zeros_like,
    "aten::view_as": "view_as", "aten::reshape_as": "reshape_as",
    # dropout with a training flag the graph fixes to False (``F.dropout(x, p,
    # self.training)`` of a model in eval mode, DenseNet's): its input, as F.dropout returns
    **dict.fromkeys(_DROPOUTS, F.dropout),
    **_pooling("avg_pool", range(1, 4)), **_pooling("adaptive_avg_pool", range(1, 4)),
    **_pooling("max_pool", range(1, 4))}

#: A traced ``F.interpolate``'s operation (its ``.vec`` overload, which ``F.interpolate``
#: calls with its own arguments) and the mode it runs.
_RESAMPLING: dict[str, str] = {
    **{f"aten::upsample_nearest{n}d": "nearest" for n in range(1, 4)},
    **{f"aten::_upsample_nearest_exact{n}d": "nearest-exact" for n in range(1, 4)},
    "aten::upsample_linear1d": "linear", "aten::upsample_bilinear2d": "bilinear",
    "aten::upsample_trilinear3d": "trilinear", "aten::upsample_bicubic2d": "bicubic"}
_FUNCTIONS.update(dict.fromkeys(_RESAMPLING, F.interpolate))

#: The operations that cut a tensor into a list of disjoint pieces (ShuffleNetV2's
#: ``x.chunk(2, dim=1)``, a new user's trial), as the torch functions they are.
_PARTITIONS: dict[str, Any] = {
    "aten::chunk": torch.chunk, "aten::split": torch.split, "aten::unbind": torch.unbind,
    "aten::tensor_split": torch.tensor_split,
    # (a traced x.split([1, 3], 1); the unsafe_ ones, the same pieces that are no views)
    "aten::split_with_sizes": torch.split, "aten::unsafe_chunk": torch.chunk,
    "aten::unsafe_split": torch.split, "aten::unsafe_split_with_sizes": torch.split}

#: In-place operations run out of place (see the module's docstring).
_IN_PLACE = {f"aten::{name}_": f"aten::{name}" for name in (
    "add", "sub", "mul", "div", "neg", "relu", "tanh", "sigmoid", "leaky_relu", "relu6",
    "hardtanh", "silu", "hardswish", "hardsigmoid", "mish", "selu", "elu", "celu",
    *(kind.split("::")[1] for kind in _DROPOUTS))}

#: Arithmetic on sizes (a forward's ``x.size(0) * 2``): in 64 bits, as TorchScript computes.
_INTEGER: dict[str, Any] = {
    "aten::add": int64_add, "aten::sub": int64_sub, "aten::mul": int64_mul,
    "aten::floordiv": int64_floordiv, "aten::neg": int64_neg,
    "aten::floor_divide": int64_floordiv,  # (a traced `//` on sizes: torch floors too)
    "aten::remainder": operator.mod}  # (`x.shape[-1] % 2`: floored, in range, as Python's)

#: Pure operations on constants (a default argument's ``if stride is None:``, an ``if not
#: inplace:``), computed here so that the ``if`` they decide is followed.
_ON_CONSTANTS: dict[str, Any] = {
    **CONDITION_OPS,
    "aten::__is__": lambda a, b: _is(a, b), "aten::__isnot__": lambda a, b: not _is(a, b)}


def _is(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    raise _Refused("compares two values other than None by identity")


#: Operations that pass an integer through: a traced model's size as a tensor and back.
_PASS_THROUGH = {"prim::NumToTensor", "aten::Int", "aten::ScalarImplicit"}

#: The most operations loops on constants run here, all together (:meth:`_Builder._loop`).
_MAX_STEPS = 20_000

_MAX_POOLS = {f"aten::max_pool{n}d": getattr(nn, f"MaxPool{n}d") for n in (1, 2, 3)}


def _integral(value: Any) -> bool:
    """Whether ``value`` is an integer, or a one-entry tensor of integers."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_floating_point() and not (
            value.is_complex() or value.dtype == torch.bool)
    return isinstance(value, int) and not isinstance(value, bool)


def _module_named(name: str) -> str:
    """``module 'layer1.0'``, or ``the model`` for the root's empty name (a new user's
    trial: a quoting of its empty name)."""
    return f"module {name!r}" if name else "the model"


class _Refused(Exception):
    """Why the graph cannot be rebuilt (its message)."""


class _Aliases:
    """Which values of the graph may share memory at a given point of the walk: union-find
    over the alias annotations of each node's schema (``aten::view(Tensor(a) self, ...) ->
    Tensor(a)``); a node without a schema (``prim::If``, a call) joins all its values, but
    a list or tuple built of values holds each, which share no memory with each other. Each
    join is dated by the position of the top-level node that makes it (an ``if`` or a
    loop: where it starts, so that every write inside sees its joins), and a
    write is checked against the joins made up to it: two tensors that exist at a write
    share memory then only by joins made by then, while a list built afterwards holds its
    elements without making them share memory (a new user's trial: SqueezeNet's
    ``torch.cat([relu1(e1(x)), relu3(e3(x))])``, in-place ReLUs, read as the second ReLU
    writing the first's output, and refused)."""

    def __init__(self, nodes: list, order: dict):
        self.joins: list[tuple[int, int, int]] = []  # (position, value, value)
        self.cache: dict[int, dict[int, int]] = {}
        # a list or tuple built of values holds them without making them share memory
        # (the third review's false refusal: torch.einsum(eq, h, self.scale), a list of the
        # signal and a parameter, then h.relu_(), read as a write to the parameter); what is
        # joined to the list is joined to each of them (an item taken out of it, a list
        # passed on), all nodes' lists known first (an if's output joined before its block);
        # the same for what an operation returns that may be one of its inputs or a view of
        # one, which its schema does not say (einsum("ij->ji", h) is h's transpose, sharing
        # its memory; type_as(h, h) is h)
        self.items: dict[int, list[int]] = {
            node.output().unique(): [v.unique() for v in node.inputs() if _may_change(v)]
            for node in nodes if node.kind() in _CONSTRUCTS or _unsaid_view(node)}
        for node in nodes:
            if node.kind() in _CONSTRUCTS:
                continue
            at = order[_top(node)]
            if node.kind() == "prim::GetAttr" and holds_tensors(node.output()):  # (a
                # tuple of tensors too: a review wrote a view of one in place, 1.0 for 27)
                self.join(node.output().unique(), MODEL_TENSORS, -1)  # (a review: a buffer
                # written in place by a layer's call on a list's item, then read again by
                # another GetAttr, as it was: 1.99 for 28.5; tied weights share memory too)
            schema = None if node.kind() in _UNPACKS else _schema(node)  # (whose schema,
            # "prim::TupleUnpack(Any tup) -> ...", annotates nothing: a review unpacked a
            # tuple attribute's tensor and wrote a view of it, 1.0 for a map of 27)
            values = [v for v in (*node.inputs(), *node.outputs()) if _may_change(v)]
            if schema is None:
                for a, b in zip(values, values[1:]):
                    self.join(a.unique(), b.unique(), at)
                loop = node.kind() == "prim::Loop"  # (a loop's block returns its condition
                # first, and takes its step and the carried values, which it joins too)
                for block in node.blocks():
                    pairs = [*zip(node.outputs(), list(block.outputs())[loop:])]
                    if loop:
                        pairs += zip(list(node.inputs())[2:], list(block.inputs())[1:])
                    for a, b in pairs:
                        if _may_change(a) or _may_change(b):
                            self.join(a.unique(), b.unique(), at)
                continue
            sets: dict[str, list[int]] = {}
            for value, argument in (*zip(node.inputs(), schema.arguments),
                                    *zip(node.outputs(), schema.returns)):
                info = argument.alias_info
                if info is not None and _may_change(value):
                    for name in (*info.before_set, *info.after_set):
                        sets.setdefault(name, []).append(value.unique())
            wild = sets.pop("*", [])
            for members in sets.values():
                for a in [*members[1:], *wild]:
                    self.join(members[0], a, at)
            for out in node.outputs():  # (a list of views whose schema annotates its items
                # alone, aten::chunk's Tensor(a)[]: a review wrote a piece in place, then read
                # the tensor cut, unchanged in the rebuilt graph, 0.72 for a map of 34.9)
                if _may_change(out) and not isinstance(out.type(), torch.TensorType):
                    for v in node.inputs():
                        if _may_change(v):
                            self.join(out.unique(), v.unique(), at)

    def join(self, a: int, b: int, at: int) -> None:
        """Values ``a`` and ``b`` may share memory from position ``at`` on (and each item of
        a list or tuple built of values, joined, with the other)."""
        self.joins.append((at, a, b))
        for when, parent in self.cache.items():  # (a join found on the walk: each class
            if when >= at:  # known from then on takes it, none is built again)
                parent[_find(parent, a)] = _find(parent, b)
        for one, other in ((a, b), (b, a)):
            for item in self.items.get(one, ()):
                self.join(item, other, at)

    def same(self, a: int, b: int, at: int) -> bool:
        """Whether ``a`` and ``b`` may share memory at position ``at`` (a list or tuple
        built of values shares the memory of each)."""
        parent = self.cache.get(at)
        if parent is None:
            parent = self.cache[at] = {}
            for when, x, y in self.joins:
                if when <= at:
                    parent[_find(parent, x)] = _find(parent, y)
        return _find(parent, a) == _find(parent, b) or any(
            self.same(item, b, at) for item in self.items.get(a, ())) or any(
            self.same(a, item, at) for item in self.items.get(b, ()))


#: Operations that may return their input or a view of it while their schema annotates no
#: alias (torch 2.13: every operation of torch's schemas that returns a tensor with no alias
#: annotated was run here on a tensor, or a list of one, with the arguments it takes, and its
#: result's memory compared with its input's; also ``aten::_cast_*``; those returning a list
#: are joined to their inputs anyway, :class:`_Aliases`).
_UNSAID_VIEWS = frozenset({"aten::einsum", "aten::cartesian_prod", "aten::atleast_1d",
                           "aten::atleast_2d", "aten::atleast_3d", "aten::sum_to_size",
                           "aten::type_as", "aten::to", *_DROPOUTS, "aten::lift",
                           "aten::conj_physical", "aten::to_dense", "aten::dequantize",
                           "aten::flatten_dense_tensors", "aten::data",
                           "aten::to_dense_backward", "aten::to_mkldnn_backward"})

def _unsaid_view(node) -> bool:
    """Whether ``node`` is one of :data:`_UNSAID_VIEWS` that may return an input or a view
    (einsum and cartesian_prod of a list built of two or more tensors compute new ones)."""
    if node.kind() not in _UNSAID_VIEWS and not node.kind().startswith("aten::_cast_") or (
            node.outputsSize() != 1):
        return False
    listed = [v.node() for v in node.inputs() if isinstance(v.type(), torch.ListType)]
    return not (len(listed) == 1 and listed[0].kind() == "prim::ListConstruct"
                and listed[0].inputsSize() >= 2)


#: Nodes that build a list or tuple of their inputs (:class:`_Aliases` ``items``).
_CONSTRUCTS = frozenset({"prim::ListConstruct", "prim::TupleConstruct"})

#: Nodes that take items out of a tuple or list, all of whose values are joined.
_UNPACKS = frozenset({"prim::TupleUnpack", "prim::ListUnpack", "prim::TupleIndex",
                      "prim::unchecked_cast"})


#: The alias class of every parameter and buffer a forward reads (any may share memory).
MODEL_TENSORS = -1


def _find(parent: dict[int, int], a: int) -> int:
    while parent.get(a, a) != a:
        a = parent[a]
    return a


def _may_change(value) -> bool:
    """Whether a value of the graph may change in place: a tensor, or a list or dict (of
    anything: a review's list of ints appended to, its length read as before, the other
    branch taken, 1.34 for 28.4), or what holds one."""
    kind = str(value.type())
    return "Tensor" in kind or "[]" in kind or "Dict" in kind or "List" in kind


def _schema(node) -> Any:
    try:
        return node.schema() and torch._C.parse_schema(node.schema())
    except RuntimeError:  # (a prim node has none)
        return None


def _written(node) -> list:
    """The values an in-place node writes: its arguments annotated ``(a!)``, else (a node
    without a schema that :func:`_mutates` says writes) its first."""
    schema = _schema(node)
    if schema is None:
        return list(node.inputs())[:1]
    return [v for v, a in zip(node.inputs(), schema.arguments)
            if a.alias_info is not None and a.alias_info.is_write]


class _Graph(torch.fx.Graph):
    """A torch.fx graph whose function calls record the module whose forward makes them
    (``nn_module_stack``, as torch.fx's tracer records it: a row's name,
    :func:`sparseconv._torch_calls.module_path`), that of the node being translated."""

    path: tuple[str, type] | None = None

    def create_node(self, *args: Any, **kwargs: Any) -> torch.fx.Node:
        node = super().create_node(*args, **kwargs)
        if self.path is not None and node.op in ("call_function", "call_method"):
            node.meta["nn_module_stack"] = {self.path[0]: self.path}
        return node


class _Builder:
    """The walk over the inlined graph that writes the torch.fx graph: ``env`` maps each
    TorchScript value (by ``unique()``) to its fx node or Python value."""

    def __init__(self, model: nn.Module, graph, every: list[_Call], calls: list[_Call],
                 modules: list[nn.Module], folded: dict[int, Any], shape: tuple[int, ...]):
        self.model, self.graph = model, graph
        self.shape = shape  # the input's, without the batch (:meth:`_rank`)
        self.self_value = list(graph.inputs())[0].unique()  # the module (its attributes)
        self.folded = folded  # the constants computed from parameters, by value
        self.fx = _Graph()
        self.where = _Modules(model)  # (the module each node's code is of)
        self.root: dict[str, Any] = {}
        self.env: dict[int, Any] = {}
        self.order = {node: i for i, node in enumerate(_preorder(graph.block()))}
        self.aliases = _Aliases(list(self.order), self.order)
        self.owner = _owners(graph, every, any_path=True)
        self.members: dict[int, list] = {}  # each call's top-level nodes, its ifs included
        for node in graph.nodes():
            if node in self.owner:
                self.members.setdefault(id(self.owner[node]), []).append(node)
        self.calls = {id(call): module for call, module in zip(calls, modules)}
        self.aliasing: dict[int, bool] = {}  # per call: its output shares its input's memory
        self.made: dict[int, int] = {}  # each value's position (the graph's inputs: -1)
        for node, i in self.order.items():  # (an if's outputs are made when its branch ends:
            # after a write inside it, F.relu6(y, inplace=True)'s relu6_, a new user's trial)
            inner = [self.order[n] for block in node.blocks() for n in _preorder(block)]
            for value in node.outputs():
                self.made[value.unique()] = max([i, *inner])
        self.writes: list[tuple[int, Any]] = []  # the in-place writes that run, so far
        self.result: dict[Any, Any] = {}  # an in-place write -> the value holding its result
        self.skipped = _assertions(list(self.order))  # (checks that raise, and their
        # conditions: F.adaptive_avg_pool2d's assert on its sizes, a new user's trial)
        self.static: set[int] = set()  # values that are no signal: constants, attributes
        self.sizes: set[int] = set()  # a traced model's sizes as tensors, and arithmetic on them
        self.steps = 0  # the steps run of loops on constants, all together (:meth:`_loop`)
        for node in self.order:  # (constant propagation hoists a layer's constants to the
            if node.kind() == "prim::Constant":  # top, where the first call owns them: a
                self._node(node)  # scripted DenseNet's BatchNorms, their flag fixed)

    # -- values --------------------------------------------------------------------------
    def value(self, v, reader) -> Any:
        """What ``reader`` (None: the graph's return) reads as ``v``: after an in-place write
        to ``v`` itself, the write's result; refused where a value sharing ``v``'s memory
        was written since ``v`` was made, or ``v`` by a write whose result is not known
        here (inside a layer's call, on the way)."""
        at = self.order[reader] if reader is not None else len(self.order)
        latest = None
        tensor = isinstance(v.type(), torch.TensorType)  # (no list changes a tensor: UNet's
        for i, write in self.writes:  # skips.append(x), then down(x), a new user's trial)
            if not self.made.get(v.unique(), -1) < i < at or not _may_change(v) or all(
                    not self.aliases.same(w.unique(), v.unique(), i)
                    or tensor and isinstance(w.type(), torch.ListType)
                    for w in _written(write) if _may_change(w)):
                continue
            if write in self.result and any(w.unique() == v.unique() for w in _written(write)):
                latest = write  # (the written value itself: read as what the write made)
                continue
            raise _Refused(f"reads a value ({v.debugName()}) that {write.kind()}"
                           f"{_where(write)} changed in place, where the graph does not show "
                           "what it then holds")
        key = (v if latest is None else self.result[latest]).unique()
        if key not in self.env:  # (its maker named, and where: a new user's trial was told
            # of "a value (38)" alone)
            maker = (v if latest is None else self.result[latest]).node()
            raise _Refused(f"reads a value ({v.debugName()}) made by {maker.kind()}"
                           f"{_where(maker)}, which the bound over a TorchScript graph does "
                           "not translate")
        found = self.env[key]
        if isinstance(found, (nn.Module, torch._C.ScriptObject)):
            raise _Refused(f"uses module {v.debugName()} other than by calling it")
        return self._tensor(found) if isinstance(found, torch.Tensor) else found

    def _tensor(self, tensor: torch.Tensor) -> torch.fx.Node:
        """A parameter, buffer or constant tensor the forward reads outside its layers, as a
        constant of the rebuilt module."""
        name = next((k for k, t in self.root.items() if t is tensor), None)
        if name is None:
            name = f"_sparseconv_constant_{len(self.root)}"
            self.root[name] = tensor
        return self.fx.get_attr(name)

    # -- nodes ---------------------------------------------------------------------------
    def walk(self, nodes) -> None:
        for node in nodes:
            call = self.owner.get(node)
            if call is not None:
                members = self.members[id(call)]
                if node is members[0]:  # (a node between its nodes sees its writes)
                    self.writes.extend((self.order[n], n) for n in _executed_writes(members))
                if node is members[-1]:
                    self._call(call, members)
                continue
            if node in self.skipped:
                continue
            self.fx.path = self._path(node)
            self._node(node)
            if _mutates(node):
                self.writes.append((self.order[node], node))
                if any(isinstance(w.type(), torch.TensorType) and (
                        w.unique() in self.static or self._shares_a_constant(w, node))
                       for w in _written(node)):  # (a list: one the forward builds, `outs =
                    # []`; others are refused before the walk, changes_a_value. A view of a
                    # buffer sized by the batch, empty on the probes, is no constant but may
                    # share its memory: a review, 0.73 for a map of 5.65 after calls at 3;
                    # so may a view of a constant read off the probe, which holds what it
                    # holds when the run ends: a fifth review zeroed w = self.g * 1.0 through
                    # w.view(h.size(1)) after h * w[1] read it, 1.10 for a map of 97)
                    raise _Refused(f"runs {node.kind()}{_where(node)}, which changes a tensor "
                                   "of its own (a parameter, a buffer or a constant) or one "
                                   "that may share its memory")
                if node.outputsSize() == 1:  # (at the top, or in a branch the walk takes)
                    self.result[node] = node.output()

    def _shares_a_constant(self, w, node) -> bool:
        """Whether ``w`` may share memory at ``node`` with a parameter or buffer, or with a
        constant tensor of the graph (:meth:`walk`)."""
        at = self.order[node]
        return self.aliases.same(w.unique(), MODEL_TENSORS, at) or any(
            self.aliases.same(w.unique(), c, at) for c in self.static
            if isinstance(self.env.get(c), torch.Tensor))

    def _path(self, node) -> tuple[str, type] | None:
        """The qualified name and class of the module whose code ``node`` is (None for the
        model's own, or where TorchScript's path does not tell)."""
        try:
            name, module = self.where(_top(node))
        except TypeError:  # (ambiguous: the calls were read, so not a layer's)
            return None
        return (name, type(module)) if name else None

    def _call(self, call: _Call, members: list) -> None:
        """A leaf module's call (``members``: its top-level nodes, the ``if``s and loops of
        its own among them) as one ``call_module`` node."""
        module = self.calls.get(id(call))
        if module is None:
            raise _Refused(f"calls {_module_named(call.name)} ({_kind(call.module)}), whose "
                           "operations read no signal of the forward's")
        source = call.input()
        inside = {v.unique() for n in members for v in _values_within(n)}
        for node in members:  # a list of constants the graph builds after the call's first
            # node, which the walk reaches only after it (a new user's trial: a scripted
            # InstanceNorm3d's `input.dim() not in (4, 5)` refused as computed in the forward)
            for v in _inputs_within(node):
                made = v.node()
                if v.unique() not in inside | self.static and made.kind() in (
                        "prim::ListConstruct", "prim::TupleConstruct") and all(
                        u.unique() in self.static for u in made.inputs()):
                    self._node(made)
        for node in members:
            for v in _inputs_within(node):
                if (v.unique() not in inside and v.unique() != source.unique()
                        and v.unique() not in self.static):  # (sizes too: a review's
                    # output_size=[... + x.shape[0] // 3] changed the output's shape at a
                    # batch of three, 0.0 for a map of 686, where the module was rebuilt
                    # from what the call received on the probe)
                    if not holds_tensors(v):
                        raise _Refused(f"calls {_module_named(call.name)} with an argument "
                                       "computed in the forward (the graph's value "
                                       f"%{v.debugName()}, such as an output_size read off "
                                       "a shape), where its module is rebuilt from what one "
                                       "probe's call received (the eager or traced model "
                                       "gets the bound)")
                    raise _Refused(f"calls {_module_named(call.name)} on more than one value of "
                                   f"its signal ({v.debugName()} and {source.debugName()})")
        output = call.output()
        for inner in _executed_writes(members):
            if any(w.unique() not in inside and w.unique() != source.unique() and (
                    holds_tensors(w) or any(self.owner.get(_top(use.user)) is not call
                                            for use in w.uses()))
                   for w in _written(inner)):  # (a list built for the call alone: its own)
                raise _Refused(f"calls {_module_named(call.name)}, whose {inner.kind()} changes "
                               "a tensor other than its input in place")
            if any(w.unique() == source.unique() for w in _written(inner)) and (
                    self.aliases.same(source.unique(), MODEL_TENSORS, self.order[inner])):
                raise _Refused(f"calls {_module_named(call.name)}, whose {inner.kind()} changes in "
                               "place an input that may be a parameter or buffer of the model")
            if inner.outputsSize() == 1 and inner.output().unique() == output.unique():
                self.result[inner] = output  # (an in-place activation's: its output)
        for node in members:
            for v in node.outputs():
                if v.unique() != output.unique() and any(
                        self.owner.get(_top(use.user)) is not call for use in v.uses()):
                    raise _Refused(f"reads a value computed inside {_module_named(call.name)}'s "
                                   "call other than its output")
        if isinstance(module, torch.jit.ScriptModule) and (
                _shipped_max_pool(module) or _traced_module(module)):
            module = self._max_pool(call)  # (a scripted module of another class stays one:
            # called whole, its factor its constant if given; a traced one cannot be called)
        name = call.name
        held = self.root.setdefault(name, module)
        if held is not module and not _same_module(held, module):
            raise _Refused(f"calls {_module_named(name)} twice as two different layers")
        read = self.value(source, members[0])
        for node in members[1:]:  # (a review: two calls of an Upsample, whose operation lies
            # in an if, read as one call, the source written in between: 0.71 for 71.4)
            if any(v.unique() == source.unique() for v in _inputs_within(node)) and (
                    self.value(source, node) is not read):
                raise _Refused(f"calls {_module_named(call.name)} on a value changed in place "
                               "during the call (two calls of it read as one?)")
        self.env[output.unique()] = self.fx.call_module(name, (read,))
        if self.aliasing.get(id(call)):  # its output is its input's memory (an eval-mode
            # Dropout's, a Flatten's view: a review found y = drop(h); y.mul_(10) read h
            # unchanged, a bound of 11 for a map of 20): one alias class
            self.aliases.join(source.unique(), output.unique(), self.order[members[0]])

    def _max_pool(self, call: _Call) -> nn.Module:
        ops = [n for n in call.nodes if n.kind() in _MAX_POOLS]
        if len(ops) != 1 or not _shipped_max_pool(call.module):
            raise _Refused(f"calls {_module_named(call.name)} ({_kind(call.module)}), which the "
                           "bound over a TorchScript graph cannot rebuild")
        args = [self._static(v) for v in list(ops[0].inputs())[1:]]
        return _MAX_POOLS[ops[0].kind()](*args)

    def _static(self, v) -> Any:
        if v.unique() not in self.static:
            raise _Refused("calls a max pooling with arguments computed in the forward")
        return self.env[v.unique()]

    def _constant(self, v, reader) -> Any:
        """A constant of a loop on constants (:meth:`_loop`) as ``reader`` reads it: what it
        holds by then (:meth:`value`: a list appended to since it was made)."""
        if v.unique() not in self.static:
            raise _Refused(f"runs a loop whose values are computed in the forward"
                           f"{_where(reader)}, which the bound over a TorchScript graph does "
                           "not follow")
        return self.value(v, reader)

    def _node(self, node) -> None:
        kind = node.kind()
        outputs = list(node.outputs())
        if kind == "prim::Constant":
            held = constant_of(outputs[0])
            if held is _UNKNOWN:
                raise _Refused(f"holds a constant of type {outputs[0].type()} that torch "
                               f"cannot give in Python{_where(node)} (a string of bytes that "
                               "are no UTF-8, or a member of an enum class not imported)")
            self.env[outputs[0].unique()] = held
            self.static.add(outputs[0].unique())
        elif kind == "prim::Uninitialized":  # (what a branch that raises returns)
            self.env[outputs[0].unique()] = None
            self.static.add(outputs[0].unique())
        elif kind == "prim::GetAttr":
            source = next(node.inputs())
            owner = self.model if source is list(self.graph.inputs())[0] else self.env.get(
                source.unique())
            found = MISSING if owner is None else script_attribute(owner, node.s("name"))
            if found is MISSING:
                raise _Refused(f"reads attribute {node.s('name')!r} of a value it computes")
            self.env[outputs[0].unique()] = found
            self.static.add(outputs[0].unique())
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            items = [self.value(v, node) for v in node.inputs()]
            self.env[outputs[0].unique()] = items if kind == "prim::ListConstruct" else tuple(
                items)
            if all(v.unique() in self.static for v in node.inputs()):
                self.static.add(outputs[0].unique())
        elif kind == "prim::DictConstruct":  # (a forward returning {"out": y}: its keys
            # constants, as TorchScript's dicts are typed; their order the construction's)
            items = [self.value(v, node) for v in node.inputs()]
            inputs = list(node.inputs())
            if not all(v.unique() in self.static for v in inputs[::2]):
                raise _Refused(f"builds a dict with computed keys{_where(node)}")
            self.env[outputs[0].unique()] = dict(zip(items[::2], items[1::2]))
            if all(v.unique() in self.static for v in inputs):
                self.static.add(outputs[0].unique())
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            self._unpack(node, outputs)
        elif kind == "aten::append" and len(outputs) == 1:  # (DenseNet's features.append(
            # new): the list, longer; reading it afterwards reads this write's result)
            source, item = node.inputs()
            whole = self.value(source, node)
            if not isinstance(whole, list):
                raise _Refused(f"appends to a list it does not hold{_where(node)}")
            self.env[outputs[0].unique()] = [*whole, self.value(item, node)]
            if item.unique() not in self.static:  # (a list built empty: static until now)
                self.static.discard(source.unique())
        elif kind == "aten::slice" and len(outputs) == 1 and isinstance(
                outputs[0].type(), torch.ListType):  # (x.shape[-2:], a new user's trial)
            self._list_slice(node, outputs[0])
        elif kind == "prim::If":
            self._branch(node)
        elif kind == "prim::Loop":
            self._loop(node)
        elif list(node.blocks()):
            raise _Refused(f"runs {kind} of its own{_where(node)}, which the bound over a "
                           "TorchScript graph does not follow")
        elif kind == "aten::dim" and (rank := self._rank(next(node.inputs()), node)) is not None:
            self.env[outputs[0].unique()] = rank  # (F.interpolate's and F.dropout2d's code
            self.static.add(outputs[0].unique())  # branches on it, input.dim() == 4)
        elif kind in ("aten::__is__", "aten::__isnot__") and self._never_none(node):
            self.env[outputs[0].unique()] = kind == "aten::__isnot__"
            self.static.add(outputs[0].unique())
        elif kind in _ON_CONSTANTS and len(outputs) == 1 and all(
                v.unique() in self.static for v in node.inputs()):
            args = [self.value(v, node) for v in node.inputs()]
            try:
                self.env[outputs[0].unique()] = _ON_CONSTANTS[kind](*args)
            except (TypeError, IndexError, KeyError) as exc:
                raise _Refused(f"runs {kind} on constants{_where(node)}, which fails here "
                               f"({exc})") from exc
            self.static.add(outputs[0].unique())
        elif kind in _COMPARISONS and len(outputs) == 1 and not isinstance(
                outputs[0].type(), torch.TensorType) and any(
                self._sizes_node(v, node) is not None for v in node.inputs()) and all(
                v.unique() in self.static or self._sizes_node(v, node) is not None
                for v in node.inputs()):  # (sizes compared: an `if` on them, followed above)
            self.env[outputs[0].unique()] = self.fx.call_function(
                _COMPARISONS[kind], tuple(self.value(v, node) for v in node.inputs()))
        elif kind == "prim::unchecked_cast":  # (a refinement of a type, `Optional[List[int]]`
            # to `List[int]`: the value itself; F.interpolate's size computed from the signal)
            source = next(node.inputs())
            self.env[outputs[0].unique()] = self.value(source, node)
            if source.unique() in self.static:
                self.static.add(outputs[0].unique())
        elif kind == "prim::TupleIndex" and all(
                v.unique() in self.static for v in node.inputs()):
            args = [self.value(v, node) for v in node.inputs()]
            self.env[outputs[0].unique()] = args[0] if len(args) == 1 else args[0][args[1]]
            self.static.add(outputs[0].unique())
        elif outputs and all(v.unique() in self.folded for v in outputs) and all(
                v.unique() in self.static for v in node.inputs()):
            for v in node.inputs():  # (each argument as the forward holds it here: refused
                # where it may share a list changed since it was made; a third review's
                # c = outer[0], then a.append(x.size(0)) to the list c is: sum(c) was read
                # off the probe of one sample, 0.91 for 48)
                self.value(v, node)
            for v in outputs:  # (a constant the forward computes from its parameters and
                # constants alone, read off the probe: :func:`_constant_values`)
                self.env[v.unique()] = self.folded[v.unique()]
                self.static.add(v.unique())
        elif kind in _INTEGER and len(outputs) == 1 and all(
                v.unique() in self.static and type(self.env.get(v.unique())) is int
                for v in node.inputs()):  # (on constants: the rank less two, F.interpolate's;
            # after the constants read off the probe, which hold what TorchScript computed)
            args = [self.env[v.unique()] for v in node.inputs()]
            try:
                self.env[outputs[0].unique()] = _INTEGER[kind](*args)
            except ArithmeticError as exc:  # (a review: 2**62 * 4, which crashed the
                # report; another: 6 // 0, of a list read as built)
                raise _Refused(f"runs {kind} on constants{_where(node)}, which fails here "
                               f"({exc})") from exc
            self.static.add(outputs[0].unique())
        elif kind in _PASS_THROUGH:  # (a size made a tensor is passed on, nothing else)
            source = next(node.inputs())
            if kind != "prim::NumToTensor" and source.unique() not in self.sizes:
                raise _Refused(f"runs {kind}{_where(node)} on a tensor it computes")
            self.env[outputs[0].unique()] = self.value(source, node)
            if kind == "prim::NumToTensor":
                self.sizes.add(outputs[0].unique())
        elif _IN_PLACE.get(kind, kind) in _INTEGER and self._on_sizes(node):  # (a traced
            # num_flat_features: the sizes' product, as tensors, num *= s; the PyTorch
            # tutorial's LeNet, which had no bound in any form)
            args = [self._size(v, node) for v in node.inputs()]
            if len(args) == 3 and kind.rstrip("_") in ("aten::add", "aten::sub"):  # (alpha)
                if args.pop() != 1:
                    raise _Refused(f"runs {kind} on sizes with an alpha{_where(node)}")
            self.env[outputs[0].unique()] = self.fx.call_function(
                _INTEGER[_IN_PLACE.get(kind, kind)], tuple(args))
            self.sizes.add(outputs[0].unique())
        else:
            self._operation(node, kind, outputs)

    def _list_slice(self, node, out) -> None:
        """``items[start:end:step]`` of a list: of the graph's (its items), or of the sizes a
        tensor's ``size()`` returns (a slice of that node)."""
        whole, *bounds = [self.value(v, node) for v in node.inputs()]
        if not all(b is None or type(b) is int for b in bounds):
            raise _Refused(f"slices a list by a computed index{_where(node)}")
        item = slice(*bounds)
        if isinstance(whole, (list, tuple)):
            self.env[out.unique()] = list(whole)[item]
        elif isinstance(whole, torch.fx.Node):
            self.env[out.unique()] = self.fx.call_function(operator.getitem, (whole, item))
        else:
            raise _Refused(f"slices a value that is no list{_where(node)}")
        if all(v.unique() in self.static for v in node.inputs()):
            self.static.add(out.unique())

    def _unpack(self, node, outputs: list) -> None:
        """``a, b = values``: the items of a list or tuple the graph built, or of one an
        operation returns (a partition's pieces, a signal's sizes) by index."""
        source = next(node.inputs())
        whole = self.value(source, node)
        if isinstance(whole, (list, tuple)):
            if len(whole) != len(outputs):
                raise _Refused(f"unpacks {len(whole)} values into {len(outputs)}"
                               f"{_where(node)}")
            items = list(whole)
        elif isinstance(whole, torch.fx.Node):
            items = [self.fx.call_function(operator.getitem, (whole, i))
                     for i in range(len(outputs))]
        else:
            raise _Refused(f"runs {node.kind()} on a value it cannot unpack{_where(node)}")
        for out, item in zip(outputs, items):
            self.env[out.unique()] = item
            if source.unique() in self.static:
                self.static.add(out.unique())

    def _on_sizes(self, node) -> bool:
        """Whether ``node`` computes on sizes as tensors only (a traced ``x.size(1) *
        x.size(2)``): one of them at least, the others sizes, integers or integer tensors
        of the graph's constants."""
        inputs = list(node.inputs())
        return any(v.unique() in self.sizes for v in inputs) and all(
            v.unique() in self.sizes or (v.unique() in self.static and _integral(
                self.env[v.unique()])) for v in inputs)

    def _size(self, v, reader) -> Any:
        """A size as the integer it is (a constant tensor's item, a size's node)."""
        if v.unique() in self.sizes:
            return self.value(v, reader)
        found = self.env[v.unique()]  # (a constant: not made a constant node of the module)
        return int(found.item()) if isinstance(found, torch.Tensor) else found

    def _rank(self, v, reader) -> int | None:
        """The rank of tensor ``v`` where ``reader`` (``aten::dim``) reads it: that of its
        node in the graph built so far, run on probe batches of one, two and three (None
        where they differ); None also where it may follow the batch size, through an
        operation on its way whose rank follows sizes (:func:`_sized_rank`: a review's
        ``h.narrow(1, 0, x.size(0) // 4).squeeze(1)``, of
        rank 4 at batches one to three and 3 from four, its ``if`` on the rank fixed at 0.91
        for a map of 5.73)."""
        node = self.value(v, reader)
        if isinstance(node, torch.Tensor):  # (a constant tensor: a parameter, a buffer)
            return node.dim()
        if not isinstance(node, torch.fx.Node):
            return None
        needed = _ancestors(node)
        if any(_sized_rank(n) for n in needed):
            return None
        # (on batches of one, two and three: a rank read off the batch of two alone was
        # fixed where a `keepdim=x.size(0) > 1` gave another at a batch of one, and an `if`
        # on it passed, a review: 0.84 for a map of 85)
        ranks = {found.dim() if isinstance(found, torch.Tensor) else None
                 for found in (self._on_probe(node, needed, batch) for batch in (1, 2, 3))}
        return ranks.pop() if len(ranks) == 1 else None

    def _on_probe(self, node: torch.fx.Node | tuple, needed: set, batch: int = 2) -> Any:
        """What ``node`` (or a tuple of nodes) of the graph built so far computes on a probe
        batch of ``batch`` (None where the model's own operations fail there), from the
        nodes ``needed``."""
        sub = torch.fx.Graph()  # (the nodes it is computed from, as a module of its own)
        copies: dict[torch.fx.Node, torch.fx.Node] = {}
        for n in self.fx.nodes:
            if n in needed or n.op == "placeholder":
                copies[n] = sub.node_copy(n, copies.__getitem__)
        sub.output(tuple(copies[n] for n in node) if isinstance(node, tuple) else copies[node])
        try:  # (torch.fx prints a failing generated module's traceback to stderr: silenced,
            # as the refusal says what failed, a review)
            with torch.no_grad(), restored_state(self.model), contextlib.redirect_stderr(
                    io.StringIO()):
                return torch.fx.GraphModule(self.root, sub)(
                    probe_input(self.model, self.shape, batch=batch))
        except Exception:  # noqa: BLE001 - the model's own operations, failing here: the
            return None  # value unknown, and its reader refused where the walk reaches it

    def _sizes_node(self, v, reader) -> torch.fx.Node | None:
        """``v``'s node where the graph computes it from the signal's sizes alone (sizes,
        items and slices of them, integer arithmetic and comparisons of those with
        constants: :func:`_of_sizes`), else None."""
        node = self.value(v, reader)
        return node if isinstance(node, torch.fx.Node) and _of_sizes(node) else None

    def _never_none(self, node) -> bool:
        """Whether ``node`` (``a is b``, ``a is not b``) compares the constant None with a
        value of the signal that cannot be None: of a type that cannot, or one the rebuilt
        graph computes (a list of sizes passed to F.interpolate's ``size``, which its code
        compares with None), as none of its operations returns None."""
        a, b = node.inputs()
        for one, other in ((a, b), (b, a)):
            if one.unique() in self.static and self.env.get(one.unique(), 0) is None and (
                    other.unique() not in self.static) and (isinstance(other.type(), (
                        torch.TensorType, torch.ListType, torch.TupleType, torch.IntType,
                        torch.FloatType, torch.BoolType, torch.StringType, torch.DictType))
                    or isinstance(self.env.get(other.unique()), (
                        torch.fx.Node, list, tuple, dict, torch.Tensor))):
                return True  # (a type that cannot be None: not an Optional, nor a Union
                # that holds None, a second review's Union[Tensor, None, int], 0.91 for 50)
        return False

    def _loop(self, node) -> None:
        """A loop on constants alone (F.interpolate's ``[scale_factor for _ in
        range(dim)]``, the rank known): run here, each value of its body a constant; a list
        its body appends to grows in place, as TorchScript's lists do. Any other loop is
        refused."""
        count, condition, *carried = node.inputs()
        if not all(v.unique() in self.static for v in node.inputs()) or type(
                self.env[count.unique()]) is not int or type(
                self.env[condition.unique()]) is not bool:
            raise _Refused(f"runs prim::Loop of its own{_where(node)}, which the bound over a "
                           "TorchScript graph does not follow")
        body = list(node.blocks())[0]
        index, *state = body.inputs()
        # (each value read as it is by now, through self.value: a list appended to at the top
        # before the loop is that append's; a second review read it as built, 0.91 for 50)
        values = [self.value(v, node) for v in carried]
        going, step, size = self.env[condition.unique()], 0, 1 + len(list(body.nodes()))
        while going and step < self.env[count.unique()]:
            self.steps += size  # (the operations run, all loops together:
            if self.steps > _MAX_STEPS:  # reviews' 1000 x 1000 nested loops took 166 s, a
                # loop of 450 operations 500 times 34 s, each below a limit of its own)
                raise _Refused(f"runs loops of more than {_MAX_STEPS} operations in all"
                               f"{_where(node)}")
            for v, value in ((index, step), *zip(state, values)):
                self.env[v.unique()] = value
                self.static.add(v.unique())
            for inner in body.nodes():
                self._static_node(inner)
            going, *values = [self._constant(v, node) for v in body.outputs()]
            if type(going) is not bool:  # pragma: no cover - TorchScript types it bool
                raise _Refused(f"runs a loop whose condition is no constant{_where(node)}")
            step += 1
        for out, value in zip(node.outputs(), values):
            self.env[out.unique()] = value
            self.static.add(out.unique())

    def _static_node(self, node) -> None:
        """A node of a loop on constants (:meth:`_loop`): on constants, to constants."""
        if node in self.skipped:
            return
        if not all(v.unique() in self.static or v.unique() == self.self_value  # (its
                   for v in node.inputs()):  # attributes: self.f, a review)
            raise _Refused(f"runs a loop that computes on its signal{_where(node)}, which the "
                           "bound over a TorchScript graph does not follow")
        kind = node.kind()
        if kind == "aten::append":
            source, item = node.inputs()
            whole = self.value(source, node)  # (what it holds by now: after an append at the
            # top, that append's list; a review read the list as built, and the loop's
            # appends were lost to later readers, 0.91 for a map of 57.8)
            if not isinstance(whole, list) or source.node().kind() != "prim::ListConstruct":
                raise _Refused(f"appends in a loop to a list it does not build{_where(node)}")
            whole.append(self.value(item, node))  # (in place: every reader of it after the
            # loop reads the values it then holds, as TorchScript's do)
            self.env[node.output().unique()] = whole
            self.static.add(node.output().unique())
            return
        if kind == "prim::If":
            block = list(node.blocks())[0 if self._constant(next(node.inputs()), node) else 1]
            for inner in block.nodes():
                self._static_node(inner)
            for mine, theirs in zip(node.outputs(), block.outputs()):
                self.env[mine.unique()] = self._constant(theirs, node)
                self.static.add(mine.unique())
            return
        if kind == "prim::Loop":
            self._loop(node)
            return
        if _mutates(node) or list(node.blocks()):
            raise _Refused(f"runs {kind} in a loop{_where(node)}, which the bound over a "
                           "TorchScript graph does not follow")
        self._node(node)
        if not all(v.unique() in self.static for v in node.outputs()):  # pragma: no cover
            raise _Refused(f"runs {kind} in a loop on its signal{_where(node)}")

    def _branch(self, node) -> None:
        """An ``if`` whose condition the graph fixes (a constant, a module's flag): its
        branch, walked in place."""
        condition = next(node.inputs())
        known = self.env.get(condition.unique()) if condition.unique() in self.static else None
        if not isinstance(known, bool):
            known = _known_flag(condition.node(), list(self.graph.inputs())[0], self.model)
        if known is None and (sized := self._sizes_node(condition, node)) is not None:
            # (a U-Net's `if u.shape[-2:] != e.shape[-2:]: u = F.interpolate(...)`, as the
            # eager bound takes it: the way the traced shape takes)
            needed = _ancestors(sized)
            if len({repr(self._on_probe(_sizes_read(needed), needed, batch))
                    for batch in (1, 2, 3)}) > 1:
                # (a review: `if x.size(0) == 2`, its other side equal to the taken one on
                # the probes, passed the rebuilt graph's checks at other batches: 1.84 for a
                # map of 51; eager, torch.fx refuses any branch on the batch size)
                raise _Refused(f"runs prim::If on sizes that follow the batch size"
                               f"{_where(node)}, which the bound does not follow (it holds "
                               "for every batch)")
            found = self._on_probe(sized, needed)
            known = found if isinstance(found, bool) else None
        if known is None:
            raise _Refused(f"runs prim::If on a condition of its own{_where(node)}, which the "
                           "bound over a TorchScript graph does not follow")
        block = list(node.blocks())[0 if known else 1]
        self.walk(block.nodes())
        for mine, theirs in zip(node.outputs(), block.outputs()):
            self.env[mine.unique()] = self.value(theirs, None)
            if theirs.unique() in self.static:
                self.static.add(mine.unique())

    def _operation(self, node, kind: str, outputs: list) -> None:
        """An operation outside the calls: a torch function of :data:`_FUNCTIONS` on
        tensors, or arithmetic on sizes."""
        kind = _IN_PLACE.get(kind, kind)
        schema = _schema(node)
        if schema is not None and any(a.name == "out" and a.alias_info is not None and (
                a.alias_info.is_write) for a in schema.arguments):  # (a review: diff's .out
            # overload was called as torch.diff with out as a sixth argument, and failed)
            raise _Refused(f"runs {node.kind()} into a tensor given as out={_where(node)}, "
                           "which the bound over a TorchScript graph does not translate")
        out = outputs[0] if len(outputs) == 1 else None
        target: Any = None
        if out is not None and isinstance(out.type(), torch.TensorType):
            target = _FUNCTIONS.get(kind, operator.getitem if kind == "aten::__getitem__"
                                    else None)  # (a piece of a partition: x.chunk(2)[0])
        elif out is not None and kind in _PARTITIONS and isinstance(
                out.type(), torch.ListType) and isinstance(out.type().getElementType(),
                                                           torch.TensorType):
            target = _PARTITIONS[kind]
        elif out is not None and isinstance(out.type(), torch.IntType):  # a size
            target = operator.getitem if kind == "aten::__getitem__" else _INTEGER.get(
                kind, _FUNCTIONS.get(kind) if kind in ("aten::size", "aten::dim") else None)
        elif out is not None and kind == "aten::size":  # (x.shape: a list of sizes)
            target = "size"
        if target is None and _drawn(kind):
            raise _Refused(f"runs {node.kind()} outside its layers{_where(node)} (it draws "
                           "random numbers or allocates memory it does not set: the same "
                           "input may give another output)")
        if target is None:
            raise _Refused(f"runs {node.kind()} outside its layers{_where(node)}, which the "
                           "bound over a TorchScript graph does not translate")
        args = [self.value(v, node) for v in node.inputs()]
        if all(v.unique() in self.static for v in node.inputs()):
            raise _Refused(f"runs {node.kind()} on constants outside its layers{_where(node)}")
        assert out is not None
        if kind == "aten::softmax" and args[2] is not None:  # (a review: its dtype, a
            # ScalarType's number in the graph, failed in torch.softmax with a traceback)
            raise _Refused(f"runs aten::softmax with a dtype{_where(node)}, which the bound "
                           "over a TorchScript graph does not translate (the eager model "
                           "gets the bound)")
        if kind == "aten::__getitem__" and isinstance(out.type(), torch.TensorType):
            if type(args[1]) is not int:  # (an index computed from the signal's sizes)
                raise _Refused(f"indexes a list of tensors by a computed index{_where(node)}")
            if isinstance(args[0], (list, tuple)):  # (a list the graph built: its item)
                self.env[out.unique()] = args[0][args[1]]
                return
        kwargs: dict[str, Any] = {}
        if isinstance(out.type(), torch.TensorType):
            args, kwargs = _arguments(kind, args)
        if kind in ("aten::_convolution", "aten::convolution"):
            target, args = _convolution(args)
        if kind == "aten::view" and not isinstance(args[1], (list, tuple, torch.fx.Node)):
            raise _Refused("reinterprets its signal's bits (aten::view to a dtype)")
        if kind == "aten::contiguous":
            args = args[:1]  # (a memory format: the same values)
        if isinstance(target, str):
            self.env[out.unique()] = self.fx.call_method(target, tuple(args), kwargs)
        else:
            self.env[out.unique()] = self.fx.call_function(target, tuple(args), kwargs)


def _arguments(kind: str, args: list) -> tuple[list, dict]:
    """The torch function's arguments for a tensor operation's (``alpha`` and ``rounding_mode``
    by keyword, where torch takes them so)."""
    if kind in ("aten::add", "aten::sub") and len(args) == 3:
        return args[:2], ({} if args[2] == 1 else {"alpha": args[2]})
    if kind == "aten::rsub":  # (self, other, alpha): a traced 1 - x, other - alpha self
        if len(args) != 3 or args[2] != 1:
            raise _Refused("runs aten::rsub with an alpha other than 1")
        return [args[1], args[0]], {}
    if kind == "aten::div" and len(args) == 3:
        return args[:2], ({} if args[2] is None else {"rounding_mode": args[2]})
    if kind == "aten::gelu" and len(args) == 2:
        return args[:1], {"approximate": args[1]}
    if kind == "aten::elu" and len(args) == 4:  # (self, alpha, scale, input_scale)
        if args[2] != 1 or args[3] != 1:
            raise _Refused("runs an ELU with a scale of its own (F.elu has none)")
        return args[:2], {}
    if kind == "aten::constant_pad_nd":  # (self, pad, value): F.pad's value by keyword
        return args[:2], {"value": args[2]}
    if kind == "aten::slice":  # (self, dim, start, end, step): x[:, 1:3], a basic slice
        return [args[0], _at_axis(args[1], slice(*args[2:5]))], {}
    if kind == "aten::select":  # (self, dim, index): x[:, 0] (GoogLeNet's transform_input)
        return [args[0], _at_axis(args[1], args[2])], {}
    if kind in _RESAMPLING:  # .vec: (input, output_size, [align_corners,] scale_factors);
        # or, saved and loaded, (input, output_size, [align_corners,] scale per axis...)
        nearest = _RESAMPLING[kind].startswith("nearest")
        rest = args[2 if nearest else 3:]
        vec = len(rest) == 1 and not isinstance(rest[0], (int, float))
        if not vec and any(r is not None for r in rest):
            raise _Refused(f"runs {kind} with a scale per axis (not F.interpolate's call)")
        options = {"size": args[1], "scale_factor": rest[0] if vec else None,
                   "mode": _RESAMPLING[kind]}
        return args[:1], options if nearest else {**options, "align_corners": args[2]}
    if kind == "aten::einsum":  # (equation, tensors, path): with two operands no path
        # changes the value; torch.einsum takes them one by one
        if not isinstance(args[1], (list, tuple)):
            raise _Refused("runs aten::einsum on a list the graph computes")
        return [args[0], *args[1]], {}
    if kind in ("aten::mean", "aten::sum", "aten::cumsum"):  # (self, dtype), (self, dim,
        # keepdim, dtype) or cumsum's (self, dim, dtype)
        if args[-1] is not None:
            raise _Refused(f"runs {kind} in a dtype of its own")
        return args[:-1], {}
    if kind == "aten::expand":  # (self, size, implicit)
        return args[:2], {}
    if kind == "aten::zeros_like":  # (self, dtype, layout, device, pin_memory,
        # memory_format): the input's dtype, layout and device; any memory format (traced:
        # pin_memory False)
        if any(a is not None for a in args[1:4]) or args[4] not in (None, False):
            raise _Refused("runs aten::zeros_like with a dtype, layout or device of its own")
        return args[:1], {}
    if kind in _DROPOUTS:  # (input, p, train): the identity where the graph fixes train
        x, p, train = args
        if train is not False or type(p) is not float:
            raise _Refused(f"runs {kind} with a training flag the graph does not fix to "
                           "False (it draws random numbers: the same input may give another "
                           "output)")
        return [x], {"p": p, "training": False}
    if kind == "aten::batch_norm":  # (input, weight, bias, running_mean, running_var,
        # training, momentum, eps, cudnn_enabled): F.batch_norm's order differs
        x, weight, bias, mean, var, training, momentum, eps = args[:8]
        return [x, mean, var, weight, bias, training, momentum, eps], {}
    return args, {}


def _convolution(args: list) -> tuple[Any, list]:
    """A traced ``F.conv*d`` or ``F.conv_transpose*d``'s ``aten::_convolution`` (input,
    weight, bias, stride, padding, dilation, transposed, output_padding, groups, and flags
    that choose a kernel) as the torch function it is and that function's arguments."""
    x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    if not isinstance(stride, (list, tuple)) or len(stride) not in (1, 2, 3):
        raise _Refused("runs a convolution whose rank the graph does not fix")
    rank = len(stride)
    if transposed:
        return getattr(F, f"conv_transpose{rank}d"), [x, weight, bias, stride, padding,
                                                      output_padding, groups, dilation]
    if any(output_padding):
        raise _Refused("runs a convolution with an output padding but not transposed")
    return getattr(F, f"conv{rank}d"), [x, weight, bias, stride, padding, dilation, groups]


def _assertions(nodes: list) -> set:
    """The checks among ``nodes`` (every node of the graph, in order) that only raise: each
    ``if`` that returns nothing, one branch empty and the other raising without changing
    anything (an ``assert``, a shape check), and the nodes that compute nothing but their
    conditions. The rebuilt graph skips them: where the model does not raise, it computes
    what the model does, and a bound of a map holds on any part of its domain."""
    skipped: set = set()
    for node in nodes:
        blocks = list(node.blocks())
        if node.kind() != "prim::If" or node.outputsSize() or len(blocks) != 2:
            continue
        inner = [[n for n in _preorder(b)] for b in blocks]
        raising = [any(n.kind() == "prim::RaiseException" for n in ns) for ns in inner]
        if any(not ns and not raises for ns, raises in zip(inner, raising)) and any(raising) \
                and not any(_mutates(n) or n.kind() in _OPAQUE for ns in inner for n in ns):
            skipped.add(node)  # (a review: a forked function writing the signal, in the
            # raising branch, and the check's refusal of such code never ran: 0.97 for 49.2)
    for node in reversed(nodes):  # (a value read by skipped nodes alone: theirs)
        if node in skipped or list(node.blocks()) or _mutates(node) or not list(
                node.outputs()) or node.kind() in _OPAQUE or node.kind().startswith(
                "prim::") and node.kind() not in (
                "prim::Constant", "prim::ListConstruct", "prim::TupleConstruct"):
            continue
        if all(_inside(use.user, skipped) for v in node.outputs() for use in v.uses()) \
                and any(True for v in node.outputs() for _ in v.uses()):
            skipped.add(node)
    return skipped


def _inside(node, nodes: set) -> bool:
    """Whether ``node`` is one of ``nodes`` or inside one's blocks."""
    while node is not None:
        if node in nodes:
            return True
        node = node.owningBlock().owningNode()
    return False


def _at_axis(dim: Any, item: Any) -> tuple:
    """The index that applies ``item`` (a slice, an integer) to axis ``dim`` alone."""
    if type(dim) is not int:
        raise _Refused("slices its signal along an axis computed in the forward")
    if dim >= 0:
        return (*(slice(None),) * dim, item)
    return (Ellipsis, item, *(slice(None),) * (-dim - 1))


def _executed_writes(nodes) -> list:
    """The in-place nodes among ``nodes`` and their blocks that may run: an ``if`` on a
    constant (``F.leaky_relu``'s ``if inplace:``) runs one branch, any other both."""
    found = []
    for node in nodes:
        if _mutates(node):
            found.append(node)
        blocks = list(node.blocks())
        if node.kind() == "prim::If" and next(node.inputs()).node().kind() == "prim::Constant":
            taken = constant_of(next(node.inputs()).node().output())
            blocks = blocks[:1] if taken is True else blocks[1:] if taken is False else blocks
        for block in blocks:
            found.extend(_executed_writes(block.nodes()))
    return found


def _on_size_lists(operation: Any) -> Any:
    """``operation`` of :data:`CONDITION_OPS` (as TorchScript computes it, an integer against
    a float converted first: a review found ``size + 9007199254740993 < 9007199254741000.0``
    decided as Python decides it, the other way, and a false bound) on sizes: a
    ``torch.Size``, a tuple, read as the ``List[int]`` TorchScript holds (``x.shape[-2:] ==
    [8, 8]`` is True there)."""
    def computed(*args: Any) -> Any:
        return operation(*(list(a) if isinstance(a, tuple) else a for a in args))
    return computed


def _size_div(a: Any, b: Any) -> float:
    """``a / b`` of integers: a float, as TorchScript's ``aten::div.int``."""
    return float(a) / float(b)


#: Operations on sizes whose results an ``if`` reads, as graph nodes: comparisons, truth,
#: ``not``, ``in``, ``len`` (:data:`CONDITION_OPS`') and true division.
_COMPARISONS: dict[str, Any] = {
    **{kind: _on_size_lists(operation) for kind, operation in CONDITION_OPS.items()
       if kind != "aten::__getitem__"},
    "aten::div": _size_div}


def _ancestors(node: torch.fx.Node) -> set:
    """``node`` and every node it is computed from."""
    needed, todo = {node}, [node]
    while todo:
        for source in todo.pop().all_input_nodes:
            if source not in needed:
                needed.add(source)
                todo.append(source)
    return needed


#: The operations that keep a value one of sizes: an item or slice, integer arithmetic, a
#: comparison.
_ON_SIZES = frozenset({operator.getitem, *_COMPARISONS.values(), *_INTEGER.values()})


def _size_read(node: torch.fx.Node) -> bool:
    """Whether ``node`` reads a tensor's sizes (``x.size()``, ``x.size(d)``)."""
    return (node.op == "call_method" and node.target == "size") or (
        node.op == "call_function" and node.target is torch.Tensor.size)


def _sizes_read(needed: set) -> tuple:
    """The sizes that nodes ``needed`` read, as they read them: ``x.size(d)``, an item or
    slice of ``x.size()`` (``x.shape[-2:]``), or the whole shape where it is read whole (a
    review: ``x.size() != [5, 1, 8, 8]``, the same at batches of one to three, compared
    there, passed where the batch axis itself differs). Equal at batches of one, two and
    three, they hold no batch size (but one computed from it and cut off there, as
    ``x.narrow(1, 0, x.size(0) // 4)``: documented, as eager's)."""
    found = []
    for n in sorted(needed, key=lambda n: n.name):
        if not _size_read(n):
            continue
        readers = [u for u in n.users if u in needed]
        if len(n.args) + len(n.kwargs) > 1 or any(
                u.op != "call_function" or u.target not in (operator.getitem,
                                                            _COMPARISONS["aten::len"])
                for u in readers):
            found.append(n)
        else:  # (its items, slices and length: the rank, which a squeeze of the batch
            # axis changes at a batch of one, a review found: a false bound, 0.84 for 26)
            found.extend(sorted(readers, key=lambda u: u.name))
    return tuple(found)


def _of_sizes(node: torch.fx.Node) -> bool:
    """Whether ``node`` computes on the signal's sizes alone: ``x.size()`` or
    ``x.size(d)``, and what :data:`_ON_SIZES` makes of them and of constants."""
    if _size_read(node):
        return True
    return (node.op == "call_function" and node.target in _ON_SIZES
            and bool(node.all_input_nodes) and all(_of_sizes(n) for n in node.all_input_nodes))


def _sized_rank(n: torch.fx.Node) -> bool:
    """Whether the rank of ``n``'s result may follow sizes computed in the forward, not its
    inputs' ranks and constants alone: a ``squeeze`` (it drops the axes of size 1, which a
    size computed from the batch may be), a ``flatten`` by computed axes (a second review's
    ``h.flatten(1, 1 + x.size(0) // 4)``). Each other operation of :data:`_FUNCTIONS` makes
    a rank of its inputs' ranks and of its constants (the length of a list of sizes is the
    graph's constant, its items not: ``view``, ``expand``, ``F.interpolate``'s size); axes
    computed in the forward move or pick axes without changing how many
    (``transpose``, ``select``, ``narrow``, ``unsqueeze``)."""
    if n.op == "call_function" and n.target is torch.squeeze or (
            n.op == "call_method" and n.target == "squeeze"):
        return True
    flatten = n.op == "call_function" and n.target is torch.flatten or (
        n.op == "call_method" and n.target == "flatten")
    return flatten and any(isinstance(a, torch.fx.Node) for a in (*n.args[1:],
                                                                  *n.kwargs.values()))


def _traced_module(module: nn.Module) -> bool:
    """A submodule of a ``torch.jit.trace``d model (which cannot be called alone)."""
    return isinstance(module, torch.jit.TracedModule)


def _shipped_max_pool(module: nn.Module) -> bool:
    script: Any = module
    return str(script._c._type().qualified_name()).startswith(
        "__torch__.torch.nn.modules.pooling.MaxPool")


def _same_module(a: nn.Module, b: nn.Module) -> bool:
    """Two rebuilt modules of one name, equal: the same class, settings and tensors."""
    if type(a) is not type(b) or a.extra_repr() != b.extra_repr():
        return False
    first, second = dict(a.named_parameters()) | dict(a.named_buffers()), dict(
        b.named_parameters()) | dict(b.named_buffers())
    return first.keys() == second.keys() and all(
        first[k] is second[k] or (first[k].shape == second[k].shape
                                  and bool(torch.equal(first[k], second[k]))) for k in first)


def script_graph_module(model: nn.Module, names: list[str], modules: list[nn.Module],
                        shape: tuple[int, ...], kept: frozenset[str] = frozenset(),
                        ) -> torch.fx.GraphModule | str:
    """``model``'s graph as a torch.fx ``GraphModule`` that calls ``modules`` (the report's
    rows' modules, one per call, named ``names`` in the order of the calls), or why there is
    none (a phrase: "runs aten::sin outside its layers, ..."). ``kept``: the names of the
    user's modules called whole (given their constants), whose operations are not
    followed."""
    graph = _graph_of(model)
    if isinstance(graph, str):
        return f"its forward {graph}"
    for node in _preorder(graph.block()):  # (a review: a ReLU's forward set on the
        # instance flipped a flag the parent's if read between two calls; read at rest, the
        # other branch was taken, 1.96 for a map of 19.2: the walk reads attributes as they
        # are before the forward runs. Another: a list attribute flipped by _set_item, 2.03
        # for 28.1)
        if node.kind() == "prim::SetAttr":
            return (f"sets attribute {node.s('name')!r} in its forward{_where(node)}, where "
                    "the bound reads attributes as they are before the forward runs")
        if changes_a_value(node):
            return (f"runs {node.kind()}{_where(node)}, which changes in place a value the "
                    "forward did not build (a list or dict attribute), where the bound reads "
                    "attributes as they are before the forward runs")
    every = _calls(model, graph)
    calls = [c for c in every if c.input() is not None]
    if [c.name for c in calls] != list(names):  # (the rows were read off this graph's calls)
        return "its calls are not the traced layers"  # pragma: no cover - the same graph
    changed = changes_own_state(model, probe_input(model, shape))
    if changed:  # (a review: F.batch_norm(self.src, self.rm, ...) in training mode updates
        # its buffer rm, which no schema marks; a write through a view sized by the input
        # was not seen: bounds of 1.0 for the next call's 3.0)
        return changed
    # a leaf module of a class of the user's is no layer: its operations are the forward's,
    # followed one by one (a new user's trial: a child `Scale` computing x * 2, a
    # weight-standardised convolution, a blur pool, a layer scale, each left the scripted
    # and traced models of a bounded eager one without a bound)
    for call in every:  # (a fifth review: tanh(x) on a contiguous argument, 100 tanh(x) on
        # a transposed one, given 1.0, bounded 1.06 for a map of 100; the eager path refuses
        # these reads in a call taken whole too)
        read = next((n for top in call.nodes for n in (top, *(
            m for block in top.blocks() for m in _preorder(block))) if call.name in kept
            and _reads_layout(n)), None)
        if read is not None:
            return (f"calls {_module_named(call.name)} ({_kind(call.module)}), whose constant "
                    f"is given, and which runs {read.kind()}{_where(read)}: a read of its "
                    "argument's memory layout or autograd state, by which a module may compute "
                    "otherwise on the argument the model passes than on the one its constant "
                    "was measured on")
    untold = untold_calls(model, every, kept)
    if untold:
        return untold
    own = [c for c in every if not _of_the_user(c.module) or c.name in kept]
    twice = passed_twice(model)
    for call in own:  # (rebuilt as a call of one argument; one reading no signal is
        if call.input() is not None and (call.name in twice or "?" in twice):  # refused so)
            return (f"calls {_module_named(call.name)} ({_kind(call.module)}) with one value "
                    "as two of its arguments (or a module chosen at run time so), where the "
                    "bound over the graph takes a module's call as a map of one argument")
    try:  # (its constants read first: one torch cannot give in Python refused, a review)
        builder = _Builder(model, graph, own, calls, modules,
                           _constant_values(model, graph, shape), shape)
    except _Refused as exc:
        return str(exc)
    aliasing = _call_aliasing(model, shape)
    if len(aliasing) != len(calls):
        return "its calls are not the traced layers"  # pragma: no cover - the same graph
    builder.aliasing = {id(call): shares for call, shares in zip(calls, aliasing)}
    inputs = list(graph.inputs())
    builder.env[inputs[1].unique()] = builder.fx.placeholder("x")
    builder.made[inputs[1].unique()] = -1
    try:
        builder.walk(graph.nodes())
        outputs = [builder.value(v, None) for v in graph.outputs()]
    except _Refused as exc:
        return str(exc)
    builder.fx.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
    _drop_dead(builder.fx)
    # (a call whose result nothing reads, WaveNet's last residual convolution, stays: every
    # call of a module is counted, and it is bounded; a TorchScript graph shows its in-place
    # writes, so an unread value is no hidden one, as it may be in torch.fx's graph)
    module = torch.fx.GraphModule(builder.root, builder.fx)
    probe = probe_input(model, shape, batch=2)
    seen = []
    for x in (probe, 0.5 - 2.0 * probe.flip(0)):
        pairs = _side_by_side(model, module, x)
        if isinstance(pairs, str):
            return pairs
        seen.append(pairs)
    # and their changes from one probe to the other, which a large constant added to the
    # output does not hide under its rounding (a review added 1e14 to pass the check above)
    if not all(matches(a1 - a2, b1 - b2) for (a1, b1), (a2, b2) in zip(*seen)
               if a1.shape == a2.shape):
        return "is rebuilt as a graph that does not compute what the model does on a probe"
    for batch in (1, 3):  # (and at other batches, as the eager bound's graph is checked: a
        # review's ConvTranspose with output_size from x.shape[0] // 3, rebuilt at the probe's
        # batch, 0.0 for a map of 686 at a batch of three)
        pairs = _side_by_side(model, module, probe_input(model, shape, batch=batch))
        if isinstance(pairs, str):
            return f"{pairs} (at a batch of {batch})"
    return module


def _side_by_side(model: nn.Module, module: torch.fx.GraphModule, x: torch.Tensor,
                  ) -> list[tuple[Any, Any]] | str:
    """The rebuilt ``module``'s outputs beside the ``model``'s on ``x``, tensor by tensor
    through tuples, lists and dicts (a forward returning a dict), or why they differ."""
    try:
        with torch.no_grad(), restored_state(model):
            theirs = model(x.clone())
            ours = module(x.clone())
    except Exception as exc:  # noqa: BLE001 - a translation torch does not run
        return (f"is rebuilt as a graph that does not run ({type(exc).__name__}: "
                f"{error_line(exc)})")
    rebuilt, run = output_leaves(ours), output_leaves(theirs)
    pairs = (list(zip(rebuilt, run)) if rebuilt is not None and run is not None
             and len(rebuilt) == len(run) else [(ours, theirs)])
    if not all(matches(a, b) for a, b in pairs):
        return "is rebuilt as a graph that does not compute what the model does on a probe"
    return pairs


def _of_the_user(module: nn.Module) -> bool:
    """Whether a module of a TorchScript model was compiled from a class of the user's (not
    one torch ships, even a subclass of one: a ``StdConv2d(nn.Conv2d)``)."""
    return isinstance(module, torch.jit.ScriptModule) and not _shipped(module)


def _drawn(kind: str) -> bool:
    """Whether an operation's result is no function of its arguments' values: a random draw,
    memory left unset (the eager bound's names), dropout, a read of autograd's state."""
    name = kind.split("::", 1)[-1].split(".", 1)[0]
    return draws_random(name) or name in UNSET_CALLS or "dropout" in name or (
        "rrelu" in name) or name in _AUTOGRAD_STATE


#: Reads of a tensor's autograd state or of the run's modes, which differ between a call under
#: ``torch.no_grad()`` (the probe's) and one with autograd on (a review: ``if (self.w *
#: 1.0).is_leaf: return x`` folded to the probe's branch, 1.0 for a map of 10).
_AUTOGRAD_STATE = frozenset({
    "is_leaf", "requires_grad", "is_inference", "_version", "output_nr", "retains_grad",
    "_is_view", "data_ptr", "is_grad_enabled", "is_inference_mode_enabled",
    "is_autocast_enabled", "is_autocast_cpu_enabled", "_base", "grad", "grad_fn"})


def _reads_layout(node) -> bool:
    """Whether a node reads a tensor's memory layout or autograd state: ``LAYOUT_READS``,
    :data:`_AUTOGRAD_STATE`, or an identity test of tensors (a review: ``x.contiguous() is
    x``, ``aten::__is__``, told a transposed argument apart: 1.70 for a map of 81)."""
    name = node.kind().split("::", 1)[-1]
    return name in LAYOUT_READS | _AUTOGRAD_STATE or name in ("__is__", "__isnot__") and any(
        isinstance(v.type(), torch.TensorType) for v in node.inputs())


#: The structural nodes a constant may be read through.
_PURE_PRIM = frozenset({"prim::Constant", "prim::GetAttr", "prim::ListConstruct",
                        "prim::TupleConstruct", "prim::ListUnpack", "prim::TupleUnpack",
                        "prim::TupleIndex", "prim::unchecked_cast", "prim::dtype",
                        "prim::device", "prim::NumToTensor"})


def _foldable(type_) -> bool:
    """Whether a value of TorchScript type ``type_`` is a constant the probe can return: a
    tensor, a number, or a list of them; not a list of lists, whose items may be lists the
    forward appends to after the value is made, while the probe reads it when the run ends
    (a fourth review: ``outer + []`` of ``outer = [a]``, then appends to ``a``, read as
    holding them, a branch fixed, 1.10 for a map of 85)."""
    scalars = (torch.TensorType, torch.IntType, torch.FloatType, torch.BoolType)
    if isinstance(type_, torch.ListType):
        return isinstance(type_.getElementType(), scalars)
    return isinstance(type_, scalars)


def _constant_values(model: nn.Module, graph, shape: tuple[int, ...]) -> dict[int, Any]:
    """The values of the operations at the top of ``graph`` computed from its constants and
    the model's attributes alone (``self.weight.t()``, ``torch.sigmoid(self.gate)``, a
    weight standardised from its parameter), by ``unique()``, read off one run of the probe
    on a copy of the graph: the same on any input, as none reads it. Not an operation that
    draws random numbers or leaves memory unset (:func:`_drawn`), nor one of no arguments
    (``torch.is_grad_enabled()``: the state of the run, not a constant), nor one that changes
    a value in place (the walk refuses a write to a constant), nor one inside an ``if`` or a
    loop. The walk takes a value from here only where its own arguments are constants there
    (a list the forward built and appended the signal to is none)."""
    pure = {list(graph.inputs())[0].unique()}
    wanted = []
    for node in graph.nodes():
        kind = node.kind()
        if list(node.blocks()) or _mutates(node) or kind in _OPAQUE or not all(
                v.unique() in pure for v in node.inputs()) or kind.startswith("prim::") and (
                kind not in _PURE_PRIM) or not kind.startswith(("prim::", "aten::")) or (
                _drawn(kind)) or kind.startswith("aten::") and not node.inputsSize():
            continue
        pure.update(v.unique() for v in node.outputs())
        if kind.startswith("aten::") and all(_foldable(v.type()) for v in node.outputs()):
            wanted.extend(node.outputs())
    if not wanted:
        return {}
    values = _probe(model, *_copied(graph, wanted), shape)
    again = _probe(model, *_copied(graph, wanted), shape, grad=True)
    # (the probe runs under torch.no_grad(); a value that differs with autograd on, by a read
    # of its state the names above miss, is none of the forward's constants)
    return {v.unique(): value for v, value, other in zip(wanted, values, again)
            if _same_value(value, other)}


def _copied(graph, values: list) -> tuple[Any, list]:
    """A copy of ``graph`` (which the probe changes: its outputs) and ``values``, the top
    level's, in it."""
    copy = graph.copy()
    mapped = {}
    for mine, theirs in zip(graph.nodes(), copy.nodes()):
        mapped.update({a.unique(): b for a, b in zip(mine.outputs(), theirs.outputs())})
    return copy, [mapped[v.unique()] for v in values]


def _same_value(a: Any, b: Any) -> bool:
    """Whether two probe values are the same: tensors of one shape and dtype, equal entry by
    entry (NaN where the other is NaN), lists of them, or equal numbers."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and unchanged(a.detach(), b.detach())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same_value, a, b))
    return type(a) is type(b) and a == b


def _call_aliasing(model: nn.Module, shape: tuple[int, ...]) -> list[bool]:
    """Per call (as :func:`script_graph_module` lists them), whether its output shares memory
    with its input on a probe batch: an operation's schema does not always say so
    (``aten::dropout`` in eval mode returns its input itself)."""
    graph = _graph_of(model)
    calls = [c for c in _calls(model, graph) if c.input() is not None]
    values = [v for c in calls for v in (c.input(), c.output())]
    found = _probe(model, graph, values, shape)
    return [_share_memory(found[2 * i], found[2 * i + 1]) for i in range(len(calls))]


def _share_memory(a: Any, b: Any) -> bool:
    """Whether two probe values are tensors on one storage (or not both tensors: then
    taken to share, the safe side)."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return True
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:  # (a tensor without storage)
        return True


def _drop_dead(graph: torch.fx.Graph) -> None:
    """Removes the functions' nodes nothing reads (a size read and not used); the calls
    stay."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph.nodes)):
            if node.op in ("call_function", "call_method", "get_attr") and not node.users:
                graph.erase_node(node)
                changed = True
