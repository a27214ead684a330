"""A torch.fx tracer that follows a forward's loops and branches over a tensor's sizes.

torch.fx cannot iterate a Proxy ("Proxy object cannot be iterated"), so the PyTorch tutorial
LeNet's ``for s in x.size()[1:]: num_features *= s`` (a new user's trial) had no graph, and
no bound over it. :class:`SizesTracer` reads the number of sizes, a tensor's rank, off the
graph traced so far run on a probe, for a tensor whose rank no size or value of the input
can change (:func:`_rank_fixed`, narrowed by four reviews), and keeps each size a node.
A branch or an ``assert`` on sizes (torch.fx: "symbolically traced variables cannot be used
as inputs to control flow") takes the way the probe takes, where the condition reads only
sizes other than the batch's of such tensors (:meth:`SizesTracer.to_bool`).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import operator
from collections.abc import Callable, Collection, Iterator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sparseconv._torch_kinds import (
    _CONV_T,
    _DROPOUT,
    _MODELESS,
    _RUNNING_NORMS,
    instance_method,
)
from sparseconv._torch_probe import (
    drop_defaults,
)
from sparseconv._torch_state import restored_tensors
from sparseconv._torch_whole_calls import WholeCall, argument

__all__ = ["SizesTracer"]


def _sized(node: Any) -> Any:
    """The tensor node whose sizes ``node`` is (``x.size()``, ``x.shape``, or a slice of them
    by constants), else None."""
    if not isinstance(node, torch.fx.Node):
        return None
    if node.op == "call_method" and node.target == "size":
        return node.args[0] if len(node.args) == 1 and not node.kwargs else None
    if node.op == "call_function" and node.target is getattr:
        return node.args[0] if node.args[1:] == ("shape",) else None
    if node.op == "call_function" and node.target is operator.getitem and isinstance(
            node.args[1], slice) and not any(isinstance(e, torch.fx.Node) for e in (
            node.args[1].start, node.args[1].stop, node.args[1].step)):
        return _sized(node.args[0])  # (a review: h.shape[:z.size(0)], a count of the batch)
    return None


_ACTIVATIONS = (torch.relu, torch.tanh, torch.sigmoid, F.relu, F.leaky_relu, F.gelu, F.silu,
                F.elu, F.relu6, F.hardtanh, F.softplus, F.dropout, "relu", "tanh", "sigmoid")

#: The calls whose result's rank the ranks of their tensor operands fix, given constant other
#: arguments (not ``squeeze()``, which drops the axes of size 1, nor ``nonzero``), with the
#: number of leading positional arguments that are tensor operands (-1: a list of them, as
#: ``torch.cat`` takes). A loop over sizes is followed only over a tensor made by these alone.
_RANK_FIXED: dict[Any, int] = {
    **dict.fromkeys((operator.add, operator.sub, operator.mul, operator.truediv, torch.add,
                     torch.sub, torch.mul, torch.div, "add", "sub", "mul", "div"), 2),
    **dict.fromkeys((operator.neg, operator.getitem, getattr, "neg", argument, torch.flatten,
                     torch.reshape, torch.permute, torch.transpose, F.pad, F.interpolate,
                     "flatten", "view", "reshape", "permute", "transpose", "contiguous",
                     "float", "double", *_ACTIVATIONS,
                     *(getattr(F, f"{kind}{n}d") for kind in (
                         "max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool")
                       for n in (1, 2, 3))), 1),
    **dict.fromkeys((F.linear, F.conv1d, F.conv2d, F.conv3d), 3),
    torch.cat: -1}

#: torch's own modules (by type: a subclass may compute anything) whose output rank is their
#: input's, whatever its sizes and values.
_RANK_KEEPING = frozenset({*_MODELESS, *_RUNNING_NORMS, *_DROPOUT} - {
    nn.Sequential, nn.ModuleList, nn.ModuleDict})

#: The attributes of a tensor read by ``getattr`` that keep its rank.
_RANK_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "real", "imag"})

#: Keyword arguments that are tensor operands.
_OPERANDS = frozenset({"input", "other", "weight", "bias", "tensors"})


def _keeps_batch(index: Any) -> bool:
    """Whether ``x[index]`` leaves the batch axis whole and first: ``x[:]``, or a tuple
    starting with ``:`` (``x[:, None]``, ``x[:, 1:]``); not a slice of the batch (``x[4:]``,
    whose sizes follow the batch's), an integer, ``None`` or ``...`` first."""
    whole = slice(None, None, None)
    if isinstance(index, slice):
        return index == whole
    return isinstance(index, tuple) and bool(index) and isinstance(index[0], slice) and (
        index[0] == whole)


def _has_node(value: Any) -> bool:
    found: list = []
    torch.fx.node.map_arg(value, found.append)
    return bool(found)


def _submodule(root: nn.Module, target: Any) -> nn.Module | None:
    try:
        return root.get_submodule(str(target))
    except AttributeError:
        return None


def _rank_fixed(tensor: torch.fx.Node, root: nn.Module,
                sizes: list[torch.fx.Node] | None = None) -> bool:
    """Whether every node ``tensor`` is computed from is the input, a module's tensor, a
    call of one of torch's modules of :data:`_RANK_KEEPING` on one input or a call of
    :data:`_RANK_FIXED` whose arguments other than its tensor operands are constants: its
    rank is then the same at every batch size and every input. ``F.interpolate`` and
    ``F.pad`` keep their input's rank whatever their other arguments; given ``sizes`` (a
    condition's reads, :func:`_size_condition`), those must be computed from sizes of such
    tensors alone, as a condition's are, and their shape reads are appended to ``sizes``, to
    be checked as the condition's own (a new user's trial: a two-level U-Net at odd sizes,
    ``u = F.interpolate(u, size=skip.shape[-2:])`` then the next level's ``if u.shape[-2:]
    != skip.shape[-2:]:``, had no graph).
    (Two reviews: ranks that changed with the batch size, by a ``squeeze()`` or a
    ``reshape`` to a slice of ``x.shape`` at the batch size, and with the values, by
    ``nonzero`` or a max pooling's indices slicing the sizes, were read once on the probe,
    and a forward scaled by them got a bound of a tenth to a thousandth of its constant.)"""
    seen, stack = set(), [tensor]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op in ("call_function", "call_method"):
            try:
                operands = _RANK_FIXED.get(node.target)
            except TypeError:  # an unhashable target
                operands = None
            if operands is None:
                return False
            args = list(node.args)
            if operands == -1:  # (a list of tensors first)
                operands = 1
            if node.target is getattr and not (
                    len(args) == 2 and isinstance(args[1], str) and args[1] in _RANK_ATTRIBUTES):
                return False
            if sizes is not None and node.target is operator.getitem and not _keeps_batch(
                    args[1] if len(args) > 1 else None):  # (a review: x[4:][None] broadcast
                # into a sample's axis, empty below a batch of five, its size read by a
                # condition decided at batches of one and two: 1.0 for a map of 100)
                return False
            others = (args[operands:],
                      {k: v for k, v in node.kwargs.items() if k not in _OPERANDS})
            if node.target in (F.interpolate, F.pad):
                computed = _sizes_given(others, root, sizes)
                if computed is None:
                    return False
                # (its tensor alone followed on: its sizes are no tensors of it)
                stack.extend(n for n in node.all_input_nodes if n not in computed)
                continue
            if _has_node(others):
                return False
        elif node.op == "call_module":  # (one of torch's own, on one input: another may be a
            # flag the module reads as a bool; a review: nn.DataParallel, a leaf to torch.fx,
            # runs the user's module, whose rank changed at a batch of four)
            module = _submodule(root, node.target)
            sized: list[torch.fx.Node] | None = []  # (a transposed convolution's
            if isinstance(module, _CONV_T):  # output_size, as F.interpolate's size: a
                # review, a U-Net's up(e, output_size=x.shape[-2:]) then a check of its shape)
                sized = _sizes_given((node.args[1:], node.kwargs), root, sizes)
            if sized is None or module is None or type(module) not in _RANK_KEEPING or (
                    not sized and (_has_node(node.args[1:]) or _has_node(node.kwargs))) or (
                    instance_method(module) is not None or module._forward_hooks
                    or module._forward_pre_hooks):
                return False  # (a review: a _compiled_call_impl set on an Identity)
            stack.extend(n for n in node.all_input_nodes if n not in sized)
            continue
        elif node.op not in ("placeholder", "get_attr"):
            return False
        stack.extend(node.all_input_nodes)
    return True


def _sizes_given(arguments: Any, root: nn.Module,
                 sizes: list[torch.fx.Node] | None) -> list[torch.fx.Node] | None:
    """The nodes among a call's ``arguments`` other than its tensor (``F.interpolate``'s
    ``size``, a transposed convolution's ``output_size``), or None where one is no size
    condition (:func:`_size_condition`); with ``sizes`` (a condition's reads), their shape
    reads appended to it, to be checked as the condition's own."""
    computed: list[torch.fx.Node] = []
    torch.fx.node.map_arg(arguments, computed.append)
    for size in computed:
        reads = _size_condition(size, root) if sizes is not None else []
        if reads is None:
            return None
        if sizes is not None:
            sizes.extend(reads)
    return computed


#: The operations a condition on sizes may take (comparisons, arithmetic, ``not``, items).
_CONDITION_OPERATIONS = frozenset({
    operator.getitem, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
    operator.ge, operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod,
    operator.truediv, operator.neg, operator.not_, operator.and_, operator.or_, math.ceil,
    math.floor})

#: The reads of a tensor's shape: the whole ``x.shape`` or ``x.size()``, or ``x.size(d)``.
_SHAPE_READS = frozenset({"size", "shape"})


def _size_condition(node: torch.fx.Node, root: nn.Module) -> list[torch.fx.Node] | None:
    """The shape reads (``x.shape``, ``x.size()``, ``x.size(d)``) that the condition
    ``node`` is computed from, by :data:`_CONDITION_OPERATIONS` on them and constants alone,
    each of a tensor whose shape the input's fixes (:func:`_rank_fixed`: computed by calls
    whose other arguments are constants), and each read only by items that are no batch
    size (checked on the probe, :func:`_reads_batch_of`); None for any other condition (one
    on a tensor's values, on ``x.numel()``, on a size computed otherwise)."""
    reads: list[torch.fx.Node] = []
    seen, stack = set(), [node]
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        if (m.op == "call_method" and m.target == "size") or (
                m.op == "call_function" and m.target is getattr and m.args[1:] == ("shape",)):
            tensor = m.args[0]
            if not (isinstance(tensor, torch.fx.Node) and _rank_fixed(tensor, root, reads)) or (
                    m.kwargs or len(m.args) > 2):
                return None
            if len(m.args) == 1 or m.target is getattr:  # (a whole shape: items alone)
                if not all(u.op == "call_function" and u.target is operator.getitem
                           and u.args[0] is m and not _has_node(u.args[1:]) for u in m.users):
                    return None
            elif not isinstance(m.args[1], int):
                return None
            reads.append(m)
        elif m.op == "call_function" and m.target in _CONDITION_OPERATIONS:
            stack.extend(m.all_input_nodes)
        else:
            return None
    return reads


def _reads_batch_of(read: torch.fx.Node, ndim: int) -> bool:
    """Whether the shape read ``read`` of a tensor of ``ndim`` axes gives the batch size to
    its condition: ``x.size(0)`` (or ``x.size(-ndim)``), or an item or slice of ``x.shape``
    that covers axis 0."""
    if read.op == "call_method" and len(read.args) == 2:  # x.size(d) (an int: checked)
        dim: Any = read.args[1]
        return dim % ndim == 0
    for user in read.users:
        index: Any = user.args[1]
        if isinstance(index, int):
            covered = [index % ndim]
        elif isinstance(index, slice) and all(
                e is None or isinstance(e, int) for e in (index.start, index.stop, index.step)):
            covered = list(range(ndim)[index])
        else:
            return True
        if 0 in covered:
            return True
    return False


def _erase_unread(graph: torch.fx.Graph, node: torch.fx.Node) -> None:
    """Erase ``node`` if nothing reads it, then each of its inputs that is no tensor
    computation and nothing else reads (a decided condition's comparisons and size reads)."""
    stack = [node]
    while stack:
        m = stack.pop()
        if m.users or m.op not in ("call_function", "call_method") or m.graph is not graph:
            continue
        inputs = m.all_input_nodes
        graph.erase_node(m)
        stack.extend(i for i in inputs if i.op in ("call_function", "call_method") and (
            i.target in _CONDITION_OPERATIONS or i.target in _SHAPE_READS
            or i.target is getattr))


class _Sized(torch.fx.Proxy):
    """torch.fx's Proxy whose ``len()`` a :class:`SizesTracer` answers where it iterates
    (a new user's trial: ``h.view(*h.shape[:2], -1)``, ``tuple(h.shape)``: Python asks a
    starred or converted value's ``len()`` first, which torch.fx refuses)."""

    def __len__(self) -> int:
        tracer = self.tracer
        length = tracer.length(self) if isinstance(tracer, SizesTracer) else None
        return super().__len__() if length is None else length

    def __setitem__(self, index: Any, value: Any) -> None:  # (a review: "'_Sized' object
        # does not support item assignment", this class's name, said for y[:, 0] = x[:, 1])
        raise TypeError("an assignment into a traced value (y[...] = ...), which torch.fx "
                        "does not record: build the value with torch.cat, torch.where or "
                        "F.pad instead")

    def __getattr__(self, k: str) -> torch.fx.proxy.Attribute:
        return _SizedAttribute(self, k)


class _SizedAttribute(torch.fx.proxy.Attribute, _Sized):
    """An attribute of a :class:`_Sized` (``h.shape``), itself one."""


def _first_parameter(module: nn.Module) -> str | None:
    """The name of a module's forward's first parameter (None where it has none)."""
    try:
        return next(iter(inspect.signature(module.forward).parameters), None)
    except (TypeError, ValueError):  # (a signature Python cannot read)
        return None


class SizesTracer(torch.fx.Tracer):
    """torch.fx's tracer, which also follows a loop over a tensor's sizes (the PyTorch
    tutorial LeNet's ``for s in x.size()[1:]: num_features *= s``, a new user's trial:
    "Proxy object cannot be iterated"): their number, a tensor's rank, which no value of the
    input changes, is read off the graph traced so far run on ``probe()`` (without one,
    torch.fx's own tracer); each size stays a node of the graph. Only the sizes of a tensor
    whose rank nothing but the input's rank fixes are iterated (:func:`_rank_fixed`), and
    nothing else (a loop over a tensor runs over its batch). A TorchScript module, which
    torch.fx cannot follow (a module of a TorchScript graph rebuilt for the bound, called
    whole), is a leaf. A call of a module named in ``whole`` is followed, its argument
    marked and the call recorded in ``calls`` (:class:`~sparseconv._torch_whole_calls.
    WholeCall`), for :func:`~sparseconv._torch_whole_calls.whole_units` to take it whole."""

    def __init__(self, probe: Callable[[], torch.Tensor] | None = None,
                 whole: Collection[str] = ()) -> None:
        super().__init__()
        self.probe = probe  # (made only where a loop needs it: it may be large)
        self.whole = whole
        self.calls: list[WholeCall] = []

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, torch.jit.ScriptModule) or super().is_leaf_module(
            m, module_qualified_name)

    def call_module(self, m: torch.nn.Module, forward: Callable[..., Any], args: tuple,
                    kwargs: dict[str, Any]) -> Any:
        try:
            return self._call_module(m, forward, args, kwargs)
        except Exception as exc:  # (the innermost module's call that failed, for the
            if not hasattr(exc, "sparseconv_module"):  # message: a new user's review)
                exc.sparseconv_module = (self.path_of_module(m), type(m).__name__)  # type: ignore[attr-defined]
            raise

    def _call_module(self, m: torch.nn.Module, forward: Callable[..., Any], args: tuple,
                     kwargs: dict[str, Any]) -> Any:
        name = self.path_of_module(m) if self.whole else ""
        if name not in self.whole:
            return super().call_module(m, forward, args, kwargs)
        call = WholeCall(name, self.num_calls.get(name, 0))  # (torch.fx counts every call)
        if not args and len(kwargs) == 1 and next(iter(kwargs)) == _first_parameter(m):
            args, kwargs = tuple(kwargs.values()), {}  # (act(input=x): its one argument)
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.fx.Proxy):
            args = (self.create_proxy("call_function", argument, args, {}),)
            call.marker = args[0].node
        elif len(args) != 1 or kwargs:
            call.why = (f"is called with {len(args)} arguments and {len(kwargs)} keywords, "
                        "not its one argument alone")
        result = super().call_module(m, forward, args, kwargs)
        call.output = result.node if isinstance(result, torch.fx.Proxy) else None
        if call.marker is not None:  # (torch.fx appends each node it makes: after the
            node = call.marker.next  # marker, those of the call alone)
            while node.op != "root":
                call.members.append(node)
                node = node.next
        self.calls.append(call)
        return result

    def _prefix(self, outputs: list, probe: torch.Tensor) -> Any:
        """The values of the nodes ``outputs`` of the graph traced so far, run on ``probe``
        (made by ``self.probe()``); None where it cannot be run here."""
        graph = torch.fx.Graph()
        copies: dict = {}
        graph.graph_copy(self.graph, copies)
        graph.output(tuple(copies[n] for n in outputs))
        drop_defaults(graph)  # (their checks fail on the copy: a tuple's entry's default)
        # (torch.fx's patches of nn.Module's __call__ and __getattr__ reverted meanwhile, or
        # the run would be traced too; a torch without that context is not followed)
        unpatched = getattr(torch.fx._symbolic_trace, "_maybe_revert_all_patches", None)
        if unpatched is None:  # pragma: no cover - torch 2.13 has it
            return None
        # (the prefix's own messages are not the user's; a change it makes in place to a
        # parameter, as to a buffer, is undone: a review)
        with unpatched(), torch.no_grad(), restored_tensors(
                [*self.root.buffers(), *self.root.parameters()]), contextlib.redirect_stderr(
                io.StringIO()):
            return torch.fx.GraphModule(self.root, graph)(probe)

    def proxy(self, node: torch.fx.Node) -> torch.fx.Proxy:
        return _Sized(node, self)

    def length(self, obj: torch.fx.Proxy) -> int | None:
        """The number of sizes ``obj`` holds, where :meth:`iter` iterates them (None
        elsewhere)."""
        tensor = _sized(obj.node)
        if self.probe is None or tensor is None or not _rank_fixed(tensor, self.root):
            return None
        values = self._prefix([obj.node], self.probe())
        sizes = None if values is None else values[0]
        if not isinstance(sizes, tuple) or any(type(s) is not int for s in sizes):
            return None
        return len(sizes)

    def iter(self, obj: torch.fx.Proxy) -> Iterator:
        """Each size of ``obj`` (``x.shape``, ``x.size()`` or a slice of them), read off the
        whole shape (``x.shape[1]`` for ``x.shape[:2]``'s second: the bound reads such a size
        as the traced shape fixes it, a new user's trial)."""
        length = self.length(obj)
        if length is None:
            return super().iter(obj)
        node: Any = obj.node
        picks = list(range(length))
        while node.target is operator.getitem:  # (a slice, by constants: _sized)
            whole = self.length(self.proxy(node.args[0]))
            if whole is None:
                return iter([obj[i] for i in picks])  # type: ignore[index]
            picks = [range(whole)[node.args[1]][i] for i in picks]
            node = node.args[0]
        sizes = self.proxy(node)
        return iter([sizes[i] for i in picks])  # type: ignore[index]

    def to_bool(self, obj: torch.fx.Proxy) -> bool:
        """A branch (or an ``assert``) on the sizes of tensors whose shapes the input's
        fixes, other than the batch's (a new user's trial: a U-Net's ``if u.shape[-2:] !=
        skip.shape[-2:]: u = F.interpolate(u, size=skip.shape[-2:])`` had no graph), taken
        as the probe takes it (:func:`_size_condition`); else torch.fx's TraceError."""
        reads = _size_condition(obj.node, self.root)
        if self.probe is None or reads is None:
            return super().to_bool(obj)
        tensors = [read.args[0] for read in reads]  # (their shapes at a batch of one too:
        probe = self.probe()  # the sizes read are then the same at both, and the condition)
        values, one = self._prefix([obj.node, *tensors], probe), self._prefix(tensors, probe[:1])
        if values is None or one is None or type(values[0]) not in (bool, int):
            return super().to_bool(obj)
        batch = len(probe)
        for read, node, tensor, alone in zip(reads, tensors, values[1:], one):
            if isinstance(node, torch.fx.Node) and node.op == "get_attr" and (
                    tensor is alone):  # a parameter's or buffer's shape: no batch, the same
                continue  # at every call (timm's "same" padding reads the kernel's, a trial)
            if not (isinstance(tensor, torch.Tensor) and isinstance(alone, torch.Tensor)) or (
                    tensor.shape[:1] != (batch,) or alone.shape != (1, *tensor.shape[1:])
                    or _reads_batch_of(read, tensor.ndim)):  # (a tensor whose batch is its
                return super().to_bool(obj)  # first axis alone, read off the others)
        self.decided.append(obj.node)
        return bool(values[0])  # (``if x.shape[-1] % 2:``, an int)

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> torch.fx.Graph:
        self.decided: list[torch.fx.Node] = []
        graph = super().trace(root, concrete_args)
        for node in reversed(self.decided):  # the conditions' nodes nothing else reads
            _erase_unread(graph, node)
        return graph
