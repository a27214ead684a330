"""A torch.fx tracer that follows a forward's loops over a tensor's sizes.

torch.fx cannot iterate a Proxy ("Proxy object cannot be iterated"), so the PyTorch tutorial
LeNet's ``for s in x.size()[1:]: num_features *= s`` (a new user's trial) had no graph, and
no bound over it. :class:`SizesTracer` reads the number of sizes, a tensor's rank, off the
graph traced so far run on a probe, for a tensor whose rank no size or value of the input
can change (:func:`_rank_fixed`, narrowed by four reviews), and keeps each size a node.
"""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sparseconv._torch_kinds import _DROPOUT, _MODELESS, _RUNNING_NORMS, instance_method
from sparseconv._torch_probe import drop_defaults, restored_tensors

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
    **dict.fromkeys((operator.neg, operator.getitem, getattr, "neg", torch.flatten,
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


def _has_node(value: Any) -> bool:
    found: list = []
    torch.fx.node.map_arg(value, found.append)
    return bool(found)


def _submodule(root: nn.Module, target: Any) -> nn.Module | None:
    try:
        return root.get_submodule(str(target))
    except AttributeError:
        return None


def _rank_fixed(tensor: torch.fx.Node, root: nn.Module) -> bool:
    """Whether every node ``tensor`` is computed from is the input, a module's tensor, a
    call of one of torch's modules of :data:`_RANK_KEEPING` on one input or a call of
    :data:`_RANK_FIXED` whose arguments other than its tensor operands are constants: its
    rank is then the same at every batch size and every input.
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
            if _has_node(args[operands:]) or _has_node(
                    {k: v for k, v in node.kwargs.items() if k not in _OPERANDS}):
                return False
        elif node.op == "call_module":  # (one of torch's own, on one input: another may be a
            # flag the module reads as a bool; a review: nn.DataParallel, a leaf to torch.fx,
            # runs the user's module, whose rank changed at a batch of four)
            module = _submodule(root, node.target)
            if module is None or type(module) not in _RANK_KEEPING or _has_node(
                    node.args[1:]) or _has_node(node.kwargs) or instance_method(
                    module) is not None or module._forward_hooks or (
                    module._forward_pre_hooks):
                return False  # (a review: a _compiled_call_impl set on an Identity)
        elif node.op not in ("placeholder", "get_attr"):
            return False
        stack.extend(node.all_input_nodes)
    return True


class SizesTracer(torch.fx.Tracer):
    """torch.fx's tracer, which also follows a loop over a tensor's sizes (the PyTorch
    tutorial LeNet's ``for s in x.size()[1:]: num_features *= s``, a new user's trial:
    "Proxy object cannot be iterated"): their number, a tensor's rank, which no value of the
    input changes, is read off the graph traced so far run on ``probe()`` (without one,
    torch.fx's own tracer); each size stays a node of the graph. Only the sizes of a tensor
    whose rank nothing but the input's rank fixes are iterated (:func:`_rank_fixed`), and
    nothing else (a loop over a tensor runs over its batch)."""

    def __init__(self, probe: Callable[[], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.probe = probe  # (made only where a loop needs it: it may be large)

    def iter(self, obj: torch.fx.Proxy) -> Iterator:
        tensor = _sized(obj.node)
        if self.probe is None or tensor is None or not _rank_fixed(tensor, self.root):
            return super().iter(obj)
        graph = torch.fx.Graph()
        copies: dict = {}
        graph.graph_copy(self.graph, copies)
        graph.output(copies[obj.node])
        drop_defaults(graph)  # (their checks fail on the copy: a tuple's entry's default)
        # (torch.fx's patches of nn.Module's __call__ and __getattr__ reverted meanwhile, or
        # the run would be traced too; a torch without that context is not followed)
        unpatched = getattr(torch.fx._symbolic_trace, "_maybe_revert_all_patches", None)
        if unpatched is None:  # pragma: no cover - torch 2.13 has it
            return super().iter(obj)
        # (the prefix's own messages are not the user's; a change it makes in place to a
        # parameter, as to a buffer, is undone: a review)
        with unpatched(), torch.no_grad(), restored_tensors(
                [*self.root.buffers(), *self.root.parameters()]), contextlib.redirect_stderr(
                io.StringIO()):
            sizes = torch.fx.GraphModule(self.root, graph)(self.probe())
        if not isinstance(sizes, tuple) or any(type(s) is not int for s in sizes):
            return super().iter(obj)
        return iter([obj[i] for i in range(len(sizes))])  # type: ignore[index]
