"""Whether a TorchScript model's graph is the chain of its calls (:func:`script_chain_break`).

The report multiplies its layers' bounds only for a chain: the signal enters the first call,
each call reads the previous call's output (through :data:`CHAIN_KEEPING` operations only)
and nothing else of the signal, and the last call's output is the graph's. :class:`_Chain`
walks the inlined graph's nodes to tell, naming the first that breaks it.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from sparseconv._torch_script import (
    _Call,
    _calls,
    _graph_of,
    _is_dropout,
    _preorder,
    constant_of,
    passed_twice,
    script_attribute,
)
from sparseconv._torch_script_rebuild import (
    _STRUCTURAL,
    _kind,
    _shipped,
)

__all__ = ["CHAIN_KEEPING", "script_chain_break"]


#: What a forward may run on its signal outside its layers and stay the chain of them, the
#: product of their bounds a bound: reshapes, sizes, and 1-Lipschitz activations (not
#: F.dropout, which drops in eval mode too unless told training=False).
CHAIN_KEEPING = {"view", "reshape", "flatten", "contiguous", "size", "dim", "clone", "relu",
                 "tanh", "squeeze", "unsqueeze", "getattr", "len"}


def _mutates(node) -> bool:
    """Whether a node changes a value or an attribute: ``prim::SetAttr``, an in-place or an
    ``out=`` operation (its schema writes an argument: ``Tensor(a!)``)."""
    if node.kind() == "prim::SetAttr":
        return True
    try:
        return "!" in str(node.schema())
    except RuntimeError:  # (no schema: a prim node)
        return node.kind().endswith("_") and not node.kind().endswith("__")


_PASSING = ("prim::TupleConstruct", "prim::TupleIndex", "prim::TupleUnpack",
            "prim::ListConstruct", "prim::ListUnpack")


_SHAPE_READS = ("aten::size", "aten::dim", "aten::len", "prim::shape")


def _nested_reads(node, signal: set) -> set:
    """The values of ``signal`` read inside ``node``'s blocks, at any depth, other than for
    their shapes (``F.batch_norm``'s batch size check)."""
    found: set = set()
    for block in node.blocks():
        for inner in block.nodes():
            if inner.kind() not in _SHAPE_READS:
                found |= {v.unique() for v in inner.inputs()} & signal
            found |= _nested_reads(inner, signal)
    return found


def _first_read(blocks, signal: set):
    """The first node in ``blocks`` (and the blocks within) that reads a value of ``signal``,
    or None."""
    for block in blocks:
        for node in block.nodes():
            if any(v.unique() in signal for v in node.inputs()):
                return node
            inner = _first_read(list(node.blocks()), signal)
            if inner is not None:
                return inner
    return None


def _where(node) -> str:
    """``" (torch/nn/modules/batchnorm.py, line 495)"``: the source of a graph node, where
    TorchScript kept it (a new user's trial: an if of torch's own BatchNorm, inlined between
    calls, was read as one of the user's forward, which had none)."""
    try:
        text = node.sourceRange()
    except Exception:  # noqa: BLE001 - a node without a source range
        return ""
    found = re.search(r'File "([^"]+)", line (\d+)', text if isinstance(text, str) else "")
    if found is None:
        return ""
    path = found.group(1).replace("\\", "/")
    inside = path.rfind("/torch/")
    path = path[inside + 1:] if inside >= 0 else path.rpartition("/")[2]
    return f", at {path} line {found.group(2)}"


def _known_flag(condition, self_value, model: nn.Module,
                written: frozenset | set = frozenset()) -> bool | None:
    """The value of an ``if``'s condition where the graph fixes it: a constant, or a module's
    boolean attribute read off ``self`` (``if self.training:`` of a BatchNorm inlined into a
    forward of the user's own: a new user's trial, whose scripted model got no bound); else
    None."""
    if condition.kind() == "prim::Constant":
        value = constant_of(condition.output())
        return value if isinstance(value, bool) else None
    names = []
    while condition.kind() == "prim::GetAttr":
        names.append(condition.s("name"))
        source = next(condition.inputs())
        if source is self_value and names[0] not in written:  # (``written``: attributes the
            # forward sets, whose values at rest may not be those it reads)
            owner: Any = model
            for name in reversed(names):
                owner = script_attribute(owner, name)
            return owner if isinstance(owner, bool) else None
        condition = source.node()
    return None


def script_chain_break(model: nn.Module, sequential: bool = False) -> str | None:
    """Why a TorchScript model's graph is not the chain of its calls, as a phrase after "its
    forward" (``"runs aten::add on its signal outside its layers"``), or None for a chain:
    the signal enters the first call, each call reads the output of the one before (through
    :data:`CHAIN_KEEPING` operations only) and nothing else of the signal, and the last call's
    output, so passed on, is the graph's output; an ``if`` of the model's own forward only
    where its condition is a constant (``F.relu``'s ``if inplace:``), followed into its
    branch. For a chain the product of the calls' bounds is a bound of the model (a new
    user's trial: a scripted model with a forward of its own got none, and a residual one
    was told to assume a chain). The graph is the one the report's rows are read from, dead
    calls included: each must be on the chain, or the product would count a factor the
    model's map does not have. ``sequential``: the model is a scripted ``nn.Sequential``,
    whose forward runs its children in turn: an ``if`` or a loop the inliner left outside the
    calls (a BatchNorm's shape checks) that neither reads the signal nor returns a tensor is
    then one of theirs; elsewhere it breaks the chain (it may change a parameter)."""
    graph = _graph_of(model)
    if isinstance(graph, str):
        return graph
    every = _calls(model, graph)
    calls = [c for c in every if c.input() is not None]  # (the report's rows: script_calls)
    twice = passed_twice(model)
    doubled = next((c for c in calls if c.name in twice or "?" in twice), None)
    if doubled is not None:  # (a review: Bilinear(x, x) given 0.01, bounded 0.01)
        return (f"calls module {doubled.name!r} ({_kind(doubled.module)}) with one value as "
                "two of its arguments (or a module chosen at run time so)")
    chain = _Chain(model, graph, sequential, _owners(graph, every), calls)
    why = chain.follow(graph.nodes())
    outputs = list(graph.outputs())
    if why is None and not (len(outputs) == 1 and outputs[0].unique() in chain.current
                            and isinstance(outputs[0].type(), torch.TensorType)):
        why = "returns something other than its last call's output"
    return why


#: Nodes whose code is not in the inlined graph: a method called by name, a forked or
#: Python function; what they change (an attribute a flag reads) does not show.
OPAQUE = frozenset({"prim::CallMethod", "prim::CallFunction", "prim::fork",
                    "prim::forkClosure", "prim::PythonOp", "aten::wait", "prim::awaitable"})


def writes_tensors(node) -> bool:
    """Whether ``node`` or a node in its blocks changes a tensor in place (a list it appends
    to is no tensor: a scripted ``Upsample``'s loop over its scale factors)."""
    if _mutates(node) and "Tensor" in str(next(node.inputs(), None) and
                                          next(node.inputs()).type()):
        return True
    return any(writes_tensors(inner) for block in node.blocks() for inner in block.nodes())


def _owners(graph, every: list[_Call], any_path: bool = False) -> dict:
    """The call each node belongs to. An ``if`` the inliner left without a module (a
    BatchNorm's shape check) between two nodes of one call is that call's, unless it changes
    a tensor in place: two calls of a module whose operation lies in an ``if`` (a scripted
    ``Upsample``, ``InstanceNorm``) read as one, with the parent's loop between them writing
    the signal, were bounded 0.5 for a map of 665 (a review). With ``any_path``, an ``if``
    or a loop there whatever its module path (the bound over the graph's: a scripted
    ``Upsample``'s loop over its scale factors, whose path ends
    ``.UNKNOWN_INSTANCE(UNKNOWN_TYPE)``)."""
    owner = {node: call for call in every for node in call.nodes}
    nodes = [n for n in graph.nodes() if n.kind() not in _STRUCTURAL]
    for i, node in enumerate(nodes):
        if node not in owner and list(node.blocks()) and (
                any_path or not node.getModuleHierarchy()) and not writes_tensors(node):
            before = next((owner[n] for n in reversed(nodes[:i]) if n in owner), None)
            after = next((owner[n] for n in nodes[i + 1:] if n in owner), None)
            if before is not None and before is after:
                owner[node] = before
    made = {v.unique(): owner[n] for n in nodes if n in owner for v in n.outputs()}
    for node in graph.nodes():  # a list of values one call made, read by that call alone (a
        # GroupNorm's sizes, scripted: its check's list read as the model's, "reads a value
        # made by aten::floordiv", a new user's trial)
        if node.kind() not in ("prim::ListConstruct", "prim::TupleConstruct"):
            continue
        makers = {id(made[v.unique()]): made[v.unique()] for v in node.inputs()
                  if v.unique() in made}
        users = [_top(use.user) for out in node.outputs() for use in out.uses()]
        if len(makers) == 1 and users:
            call = next(iter(makers.values()))
            if all(owner.get(user) is call for user in users):
                owner[node] = call
    return owner


def _top(node):
    """The node of the graph's own block that holds ``node`` (itself, at the top)."""
    while (owner := node.owningBlock().owningNode()) is not None:
        node = owner
    return node


class _Chain:
    """:func:`script_chain_break`'s walk over a graph's nodes: ``current``, the values of the
    last call's output as passed on; ``inside``, those computed inside the current call;
    ``signal``, every tensor computed from the input. Each step returns why the graph is no
    chain, or None."""

    def __init__(self, model: nn.Module, graph, sequential: bool, owner: dict,
                 calls: list[_Call]):
        self.model, self.sequential, self.owner, self.calls = model, sequential, owner, calls
        self.inputs = list(graph.inputs())
        self.written = {n.s("name") for n in _preorder(graph.block())  # (a review: a flag
                        if n.kind() == "prim::SetAttr"}  # a layer's forward flips, read at rest)
        self.current: set = {self.inputs[1].unique()}
        self.inside: set = set()
        self.signal: set = {self.inputs[1].unique()}  # every tensor computed from the input

    def follow(self, nodes) -> str | None:
        for node in nodes:
            reads = {v.unique() for v in node.inputs()} & self.signal
            tensors = {v.unique() for v in node.outputs()
                       if isinstance(v.type(), torch.TensorType)}
            call = self.owner.get(node)
            if call is not None:
                why = self._in_call(node, call, reads, tensors)
            elif list(node.blocks()):
                why = self._branches(node, list(node.blocks()))
            else:
                why = self._operation(node, reads, tensors)
            if why is not None:
                return why
        return None

    def _in_call(self, node, call: _Call, reads: set, tensors: set) -> str | None:
        """A node of a module's call: the call must read the previous call's output alone."""
        reads = reads | _nested_reads(node, self.signal)  # (what its branches read: a
        # scripted Dropout's operation)
        if call not in self.calls and not (_is_dropout(getattr(nn, _kind(call.module), None))
                                           and not call.module.training):
            return (f"calls module {call.name!r}, whose operations on its signal lie in "
                    "branches of its forward")
        if node is call.nodes[0]:
            self.inside = set()
            if not _shipped(call.module):  # (a review: two calls of a user's leaf module in
                # a row read as one, its constant counted once)
                return (f"calls module {call.name!r}, of a class of its own, whose calls "
                        "cannot be told apart in the graph")
        if reads - self.current - self.inside:
            return (f"calls module {call.name!r} on a value other than the previous call's "
                    "output (a residual or a branch, or a call whose result is not used)")
        self.inside |= {v.unique() for v in node.outputs()}
        self.signal.update(tensors)
        if node is call.nodes[-1]:
            output = call.output()
            if output is None:
                return f"calls module {call.name!r}, whose output is no tensor"
            # (a max pooling's values and indices, one of them read on: the values)
            self.current = {output.unique(), *tensors}
        return None

    def _branches(self, node, blocks: list) -> str | None:
        """An ``if`` or a loop of the model's own forward: followed into its branch where
        its condition is a constant."""
        if self.sequential and not _nested_reads(node, self.signal) and not any(
                isinstance(v.type(), torch.TensorType) for v in node.outputs()):
            return None
        condition = next(node.inputs()).node() if node.kind() == "prim::If" else None
        known = None if condition is None else _known_flag(condition, self.inputs[0],
                                                             self.model, self.written)
        if known is None:
            inner = _first_read(blocks, self.signal)
            if inner is not None and inner.kind() not in _STRUCTURAL and inner.kind(
                    ).split("::")[-1].rstrip("_") not in CHAIN_KEEPING:
                return (f"runs {inner.kind()} on its signal outside its layers (in "
                        f"{node.kind()} branches)")
            return (f"runs {node.kind()} on a condition of its own{_where(node)} (its "
                    "branches are not followed here)")
        block = blocks[0] if known else blocks[1]
        why = self.follow(block.nodes())
        if why is not None:
            return why
        for mine, theirs in zip(node.outputs(), block.outputs()):
            if theirs.unique() in self.signal:
                if theirs.unique() not in self.current:
                    return f"returns an older value of its signal from {node.kind()}"
                self.signal.add(mine.unique())
                self.current.add(mine.unique())
        return None

    def _operation(self, node, reads: set, tensors: set) -> str | None:
        """An operation outside the calls: one that keeps the chain (:data:`CHAIN_KEEPING`)
        on the last call's output, or one that does not read the signal and changes nothing."""
        kind = node.kind()
        if kind in OPAQUE:  # (a fifth review: a flag set by a forked method, an interface's
            # call or an ignored Python function, read by the graph's if: 1.0 for 100)
            return (f"runs {kind}, code the graph does not show, which may change what the "
                    "graph reads")
        if not reads:
            if _mutates(node):
                return (f"runs {kind}, which changes a tensor or an attribute of its own (a "
                        "parameter or a buffer: the layers' rows would be read off a probe "
                        "that changed them)")  # (a review: weight.mul_(10), out=, self.w =
            return None  # self.w * 10 in forward)
        if kind == "aten::view" and not str(list(node.inputs())[1].type()).startswith(
                "List"):  # (a review: x.view(torch.float32), a bit reinterpretation)
            return "reinterprets its signal's bits (aten::view to a dtype)"
        if kind in _PASSING and not reads - self.current - self.inside:  # (a tuple of a
            # call's outputs, indexed: its values; what reads it next decides)
            made = {v.unique() for v in node.outputs()}
            if reads <= self.current:
                self.current = self.current | made
            self.inside |= made
            self.signal.update(made)
            return None
        if kind in _STRUCTURAL or not kind.startswith("aten::") or kind.split("::")[-1].rstrip(
                "_") not in CHAIN_KEEPING:  # (a review: a custom op mylib::relu)
            consumer = next((use.user.kind() for v in node.outputs() for use in v.uses()),
                            kind) if kind in _STRUCTURAL else kind
            return f"runs {consumer} on its signal outside its layers"
        if reads - self.current and tensors:  # (x.size(0) of an older value: an integer)
            return f"runs {kind} on an older value of its signal than the last call's"
        if tensors:  # (size, dim: integers, no signal)
            self.current = tensors | (self.current if kind.endswith("_") else set())
            self.signal.update(tensors)
        return None
