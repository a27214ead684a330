"""TorchScript models walked without hooks: their graph, inlined, run once with extra outputs.

A ``torch.jit.ScriptModule`` (from ``torch.jit.script`` or ``torch.jit.trace``, or loaded with
``torch.jit.load``) has neither forward hooks nor a torch.fx graph. What it has is its
TorchScript graph; inlined (``module.inlined_graph``), every node of a leaf module's forward
still says which module it came from (``Node.getModuleHierarchy()``: ``"layer1(Sequential).
0(BasicBlock).conv1(Conv2d).SELF(Conv2d)"``). So:

1. the top-level nodes are grouped into *calls*: consecutive nodes of one leaf module (a new
   call starts where a node repeats an operation the call already applied to its signal, as in
   ``self.relu(self.relu(x))``);
2. each call's first tensor from outside the call is its input, its last tensor its output,
   and the arguments of its operations (weights, strides, paddings, eps, ...) are read too: all
   of them become extra outputs of a copy of the graph, which is run once on a probe of
   seeded random values (each call's input and output cloned where the call starts and
   ends, so that the rebuilt module is checked against what the call computed);
3. each call of a module PyTorch ships (``original_name`` ``Conv2d``, ``BatchNorm2d``,
   ``ReLU``, ...) is rebuilt as that eager module from its operations' actual arguments
   (a ``Conv2d`` with ``padding_mode="reflect"`` is its ``pad`` and its ``conv2d``), so the rest of
   :mod:`sparseconv.torch` translates it exactly as the eager model's.

Loading a TorchScript file runs no Python code from it (``torch.jit.load``), unlike a pickle.
A scripted ``Upsample``, whose ``F.interpolate`` branches on its mode, and a scripted
``InstanceNorm*d``, whose forward runs its operation inside its shape checks' ``if``, are rebuilt
from their attributes (a ScriptModule keeps them; a traced one does not, and is read from its
operation). An ``if`` whose condition is computed from constants and the modules' attributes
(``if self.stride == 1:`` around a ShuffleNetV2 block's branches) takes its branch first, as the
call does (:func:`_fix_flags`).
Refused, with the module named: a leaf module called inside control flow (an ``if`` or a loop
of its parent's ``forward`` in the graph), a shipped linear module whose operations are not the
ones its class runs (or run in branches), a ``forward`` with more than one input without a
default (the others are bound to their defaults: :func:`_graph_of`). A leaf
module that runs no operation (``Identity``) has no call and no record.
"""

from __future__ import annotations

import enum
import inspect
import operator
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from sparseconv._torch_kinds import (
    _CONV,
    _CONV_T,
    _PADS,
    _RUNNING_NORMS,
    is_leaf,
    is_parametrized,
)
from sparseconv._torch_probe import (
    forward_failed,
    magnitude,
    matches,
    probe_input,
)
from sparseconv._torch_script_rebuild import (
    _CONV_OPS,
    _SIGNAL_OPS,
    _STRUCTURAL,
    _UNKNOWN,
    _kind,
    _rebuild,
    _shipped,
    constant_of,
)
from sparseconv._torch_state import restored_state

#: The names TorchScript's module paths use for what is no attribute of a module.
_MARKERS = frozenset({"SELF", "UNKNOWN_INSTANCE", "INSTANCE_NAME_UNKNOWN", "UNKNOWN_TYPE"})
_HIERARCHY = re.compile(r"([^.()]+)\(([^()]*)\)")
_PAD_MODE = {"constant": "Constant", "reflect": "Reflection", "replicate": "Replication",
             "circular": "Circular"}


class _Ambiguous(TypeError):
    """A module path that names modules of one kind in several places: refused, never
    resolved another way (a fourth review: the fallback for paths written from an enclosing
    module down took one of them)."""


def _call_graph(model: nn.Module) -> dict[str, set[str]]:
    """The modules each module's code calls, by qualified names: from the model's
    ``forward`` down, the receivers of the ``prim::CallMethod`` nodes of every method a
    module is entered by (``forward``, an exported method another module calls on it, and
    the methods those call on ``self``), each by its chain of ``prim::GetAttr`` nodes from
    ``self``, in the graphs before inlining (where a call's receiver is always there: the
    inlined graph drops it when the callee reads no attribute, a ReLU's).

    TorchScript's module path keeps, for each call, only the last name of the attribute chain
    the call went through: ``for m in self.seq: m(x)`` writes ``0(Conv2d)`` (a container's
    name is left out: a fourth and a sixth review), and ``blk.act(x)`` or ``self.a.b(x)``
    writes ``act(Softplus)`` and ``b(Softplus)`` (a seventh review: read as the model's own
    ``act``, of the same kind, and a constant given for that one taken for the jumps of the
    blocks' own: 1.0 for 171.8). A receiver that is no such chain (a module chosen at run
    time) is recorded as ``"?Kind"``. A step of the path is one of the callees of that name of
    the module the step before named, by whichever method it was entered (an eighth review:
    by ``forward`` alone, ``self.blk.helper(x)``'s ``act`` was read as the one
    ``blk.forward`` calls, 0.069 for 32.6 with a constant given)."""
    called: dict[str, set[str]] = {}
    for path, found in _entered(model):
        called.setdefault(path, set())
        if found is None:
            continue
        graph, this, where = found
        for node in graph.findAllNodes("prim::CallMethod", True):
            receiver = next(iter(node.inputs())).unique()
            if receiver in where:
                if receiver != this.unique():
                    called[path].add(where[receiver])
            else:  # a module chosen at run time (m = self.a if flag else self.b; m(x)): any
                # module of its class may be the one called (an eleventh review: read as a,
                # the one forward also calls, 1.0 for 12.5 with a constant given for a)
                kind = str(next(iter(node.inputs())).type()).rsplit(".", 1)[-1]
                called[path].add(f"?{kind}")
    return called


def _entered(model: nn.Module) -> Iterator[tuple[str, tuple[Any, Any, dict] | None]]:
    """The methods the model's ``forward`` enters, itself first, then those its
    ``prim::CallMethod`` nodes call (on a module whose path :func:`_receivers` knows), each
    once for the modules it is passed: the path of its module and its :func:`_receivers`."""
    modules = dict(model.named_modules(remove_duplicate=False))
    todo: list[tuple[str, str, tuple]] = [("", "forward", ())]
    done: set[tuple[str, str, tuple]] = set()
    while todo:
        path, method, passed = item = todo.pop()
        if item in done or path not in modules:
            continue
        done.add(item)
        found = _receivers(modules[path], path, method, passed)
        yield path, found
        if found is None:
            continue
        graph, _, where = found
        for node in graph.findAllNodes("prim::CallMethod", True):
            receiver, *given = (v.unique() for v in node.inputs())
            if receiver in where:
                todo.append((where[receiver], node.s("name"), tuple(where.get(v)
                                                                    for v in given)))


def _receivers(script: Any, path: str, method: str, passed: tuple) -> tuple[Any, Any, dict] | None:
    """``method``'s graph of the module at ``path`` before inlining, its ``self`` value, and
    the qualified names of the modules its values hold (by ``unique()``: ``self``, the chains
    of ``prim::GetAttr`` from it, and the modules ``passed`` as arguments, by path or None);
    None where the module has no such method (a ModuleList's forward)."""
    try:  # (a traced child's forward is a Python method: its C++ one)
        graph = script._c._get_method(method).graph
    except (AttributeError, RuntimeError):
        return None
    this, *arguments = graph.inputs()
    where = {this.unique(): path}
    # a module passed as an argument (torch.jit.trace passes a module the model holds twice
    # to its caller's forward, by the path it was first found at: a ninth review)
    where.update({v.unique(): p for v, p in zip(arguments, passed) if p is not None})
    for node in graph.findAllNodes("prim::GetAttr", True):
        source = node.input().unique()
        if source in where and isinstance(node.output().type(), torch._C.ClassType):
            name = node.s("name")
            where[node.output().unique()] = f"{where[source]}.{name}" if where[source] else name
    return graph, this, where


class _Modules:
    """The module each node of the inlined graph belongs to, by its qualified name."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = dict(model.named_modules(remove_duplicate=False))
        for path in self.modules:  # (a twelfth review: a child named SELF, or a Sequential
            # entry "act(RReLU)", read as the model's own act: 0.65 for at least 8.6)
            for name in path.split(".") if path else ():
                if name in _MARKERS or "(" in name or ")" in name:
                    raise TypeError(f"module {path!r} of the TorchScript model has a name that "
                                    "TorchScript's module paths cannot tell from their own "
                                    f"marks ({name!r}): rename it, or pass the eager model")
        self.callees = _call_graph(model)  # by a module's path, the paths it calls
        self.cache: dict[str, tuple[str, nn.Module]] = {}
        self.last = ""  # the qualified name of the last node's module
        self.named = ""  # ... of the last node's that was not the model's (see continued)

    def __call__(self, node) -> tuple[str, nn.Module]:
        hierarchy = node.getModuleHierarchy()
        if "INSTANCE_NAME_UNKNOWN" in hierarchy:  # not cached: one name for several modules
            found = self.by_attributes(node, hierarchy) or self.resolve(hierarchy)  # (raises)
            self.last = found[0]
            return found
        if hierarchy in self.cache:
            found = self.cache[hierarchy]
        else:
            try:
                found = self.cache[hierarchy] = self.resolve(hierarchy)
            except TypeError:
                found = self.continued(node, hierarchy)
                if found is None:
                    raise
        self.last = found[0]
        self.named = found[0] or self.named
        return found

    def by_attributes(self, node, hierarchy: str) -> tuple[str, nn.Module] | None:
        """The module of a node that torch.jit.trace places in ``INSTANCE_NAME_UNKNOWN`` (a
        module the model holds twice, in two Sequentials say, which it passes to the parent
        by the first place it found it at): among the modules of its kind that the parent's
        code calls (:func:`_call_graph`), the one, or the one that holds, itself, every
        tensor the node reads of the model (``self.a.0.weight`` is module ``a.0``'s; a
        tensor two of them hold, a tied weight, tells nothing). None otherwise. (Reviews:
        the parent's one child of that kind was taken, and another module got a shared
        convolution's rows; the owner of a tied weight's first name, another module than the
        one called, was taken: a constant given for it applied to a LayerNorm of eps 1e-4,
        1.08 for at least 12.9.)"""
        pairs = _HIERARCHY.findall(hierarchy)
        if not pairs or pairs[-1][0] != "INSTANCE_NAME_UNKNOWN":
            return None
        try:
            parent = self.resolve(".".join(f"{n}({k})" for n, k in pairs[:-1]))[0] if len(
                pairs) > 1 else ""
        except TypeError:
            return None
        if f"?{pairs[-1][1]}" in self.called(parent):
            raise TypeError(f"the TorchScript graph runs a module ({pairs[-1][1]}) that the "
                            f"code of {parent or 'the model'} chooses at run time (an if or a "
                            "loop over modules): sparseconv cannot tell which module runs; "
                            "pass the eager model")
        candidates = [p for p in sorted(self.called(parent))
                      if p in self.modules and _kind(self.modules[p]) == pairs[-1][1]]
        if len(candidates) == 1:  # (named by the place the call was passed; not renamed to
            # another place of the same code: a trace prints tensor constants as
            # CONSTANTS.c0, and a PReLU of slope 50 read as one of slope 0.25, a tenth review)
            return candidates[0], self.modules[candidates[0]]
        chosen: set[str] = set()
        for value in node.inputs():
            names: list[str] = []
            while value.node().kind() == "prim::GetAttr":
                names.insert(0, value.node().s("name"))
                value = next(iter(value.node().inputs()))
            if not names or value.node().kind() != "prim::Param":  # (not read off the model)
                continue
            read: Any = self.model
            for name in names:
                read = getattr(read, name, None)
            if not isinstance(read, torch.Tensor):
                continue
            holders = {p for p in candidates if any(
                t is read for t in (*self.modules[p].parameters(recurse=False),
                                    *self.modules[p].buffers(recurse=False)))}
            if len(holders) != 1:
                return None
            chosen |= holders
        if len(chosen) != 1:
            return None
        path = chosen.pop()
        return path, self.modules[path]

    def continued(self, node, hierarchy: str, last: str | None = None,
                  ) -> tuple[str, nn.Module] | None:
        """The module of an ``if`` or loop of a method a module calls on itself, whose path
        TorchScript writes from that module down (``up(ConvTranspose2d).SELF(...)``, where
        the nodes around it say ``0(Up).up(ConvTranspose2d)...``: the ifs and loops of
        ``ConvTranspose2d._output_padding`` called with ``output_size`` in a nested module):
        the previous node's module, if its path ends with the steps this one names; None
        otherwise. Not cached: another block may hold the same names. (A seventh review: the
        nearest ancestor of the previous node's module that held a module of that name was
        taken for any node, and ``self.a.b(x)`` after ``self.z(x)`` read as ``z.b``.) An
        ``if`` in a module's own forward may be written from that module alike, without
        ``SELF``: ``1(InstanceNorm2d)`` within ``body(Sequential).1(InstanceNorm2d)``, the
        ``if`` on the input's rank of InstanceNorm's forward (a new user's trial: a scripted
        CycleGAN generator was refused as a frozen module). Where the nodes just before lost
        their path altogether (an ``if`` written ``''``, read as the model's own, as the
        ``if`` of InstanceNorm's warning is), the last module they did not lose is the
        candidate (or the ``last`` given)."""
        last = last or self.last or self.named
        if not list(node.blocks()) or not last:
            return None
        steps = _HIERARCHY.findall(hierarchy.split(".SELF(")[0])
        names = last.split(".")
        if not steps or len(steps) > len(names):
            return None
        kinds = [_kind(self.modules[".".join(names[:i + 1])]) for i in range(len(names))]
        if list(zip(names, kinds))[-len(steps):] != steps:
            return None
        return last, self.modules[last]

    def called(self, caller: str) -> set[str]:
        """The modules the code of module ``caller`` calls, by their qualified names."""
        return self.callees.get(caller, set())

    def resolve(self, hierarchy: str) -> tuple[str, nn.Module]:
        """The qualified name and module a hierarchy names.

        Each step names the module a call reached, by the last name of the attribute chain
        it went through, and its kind: one of the modules that the calling module's code
        calls (:func:`_call_graph`) of that name. Every reading of the whole path is
        followed, each step of the kind the path says (a review: a list entry "0" of a class
        of the user's was read as the model's own child "0", a Linear); one reading is the
        module, several are refused (:class:`_Ambiguous`), none is a TypeError."""
        steps = []
        for name, kind in _HIERARCHY.findall(hierarchy):
            if name == "SELF":  # a method the module calls on itself: its calls are its own
                continue  # (the modules its helpers call: a forward_features, an eighth review)
            if name == "UNKNOWN_INSTANCE":  # a function called inside that forward
                break
            if name == "INSTANCE_NAME_UNKNOWN":
                raise TypeError(f"torch.jit.trace names no path to a module ({kind}) that the "
                                "model holds in more than one place, and it reads no weight "
                                "that would tell which it is: pass the eager model, or one "
                                "made with torch.jit.script")
            steps.append((name, kind))
        readings: list[str] = [""]
        for depth, (name, kind) in enumerate(steps):
            chosen = [r for r in readings if f"?{kind}" in self.called(r)]
            if chosen:
                raise TypeError(f"the TorchScript graph runs a module {name!r} ({kind}) where "
                                f"the code of {chosen[0] or 'the model'} calls a {kind} it "
                                "chooses at run time (an if or a loop over modules): "
                                "sparseconv cannot tell which module runs; pass the eager "
                                "model")
            following = sorted({path for caller in readings for path in self.called(caller)
                                if path.rsplit(".", 1)[-1] == name and path in self.modules
                                and _kind(self.modules[path]) == kind})
            if not following:
                where = ".".join(name for name, _ in steps[:depth]) or "the model"
                raise TypeError(f"the TorchScript graph runs a module {name!r} ({kind}) that "
                                f"{where} does not hold (a frozen or optimized module?): "
                                "sparseconv cannot tell its layers apart; pass the module "
                                "before torch.jit.freeze")
            readings = following
        if len(readings) > 1:
            paths = ", ".join(repr(path) for path in sorted(readings))
            name, kind = steps[-1]
            raise _Ambiguous(f"the TorchScript graph runs a module {name!r} ({kind}) that the "
                             f"model holds in more than one place ({paths}): TorchScript leaves "
                             "out the names of the containers a forward iterates and of the "
                             "modules a call reaches through (blk.act(x) reads act), so "
                             "sparseconv cannot tell which; pass the eager model, or give them "
                             "distinct names")
        return readings[0], self.modules[readings[0]]


def _inputs_within(node) -> list:
    """The values ``node`` reads, those its blocks' nodes read and return included."""
    found = list(node.inputs())
    for block in node.blocks():
        for inner in block.nodes():
            found.extend(_inputs_within(inner))
        found.extend(block.outputs())
    return found


def _values_within(node) -> list:
    """The values ``node`` makes, those made inside its blocks included."""
    found = list(node.outputs())
    for block in node.blocks():
        found.extend(block.inputs())
        for inner in block.nodes():
            found.extend(_values_within(inner))
    return found


class _Call:
    """One call of a leaf module: its nodes, in graph order."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.nodes: list[Any] = []
        self.signal: set | None = None  # the graph's values computed from its input, if known

    def repeats(self, node, traced: bool = False) -> bool:
        """Whether ``node`` starts another call of the module: it repeats an operation on the
        signal the call already ran, or runs an operation of a kind the call ran on its input
        on a tensor the call made (the module called on its own output), or, in a scripted
        graph, any operation from the same place of the same source (a scripted ``Upsample``
        or ``InstanceNorm`` runs its operation inside an ``if``, so ``up(up(h))`` showed no
        repeated operation and read as one call: a review). Not that last in a traced one
        (``traced``), whose loops are unrolled: a traced ``Upsample(mode="area")``'s sizes
        come from one line, once per axis."""
        if node.kind() in _SIGNAL_OPS and any(n.kind() == node.kind() for n in self.nodes):
            return True
        # an operation of a kind the call ran on its input, now on a tensor the call made: the
        # module called on its own output (a twelfth review: a traced RReLU's act(act(x)),
        # whose rrelu is no signal operation known here, read as one call, its constant
        # counted once, 13.0 for at least 228.6; a thirteenth: a scripted LocalResponseNorm
        # in a traced model, whose operations lie in an if, 5.6 for 31.6), values read inside
        # an if included
        start = self.input()
        if start is not None:
            made = {v.unique() for n in self.nodes for v in _values_within(n)}
            if any(v.unique() in made and isinstance(v.type(), torch.TensorType)
                   for v in _inputs_within(node)) and any(
                    n.kind() == node.kind() and any(v.unique() == start.unique()
                                                    for v in _inputs_within(n))
                    for n in self.nodes):
                return True
        if traced:
            return False
        where = _source(node)
        return where is not None and any(
            n.kind() == node.kind() and _source(n) == where for n in self.nodes)

    def input(self):
        made = {v.unique() for n in self.nodes for v in n.outputs()}
        for node in self.nodes:
            for value in node.inputs():
                if (value.unique() not in made and isinstance(value.type(), torch.TensorType)
                        and value.node().kind() not in ("prim::GetAttr", "prim::Constant")):
                    return value
        return None

    def output(self):
        tensors = [v for n in self.nodes for v in n.outputs()
                   if isinstance(v.type(), torch.TensorType)]
        return tensors[-1] if tensors else None

    def ops(self) -> list:
        return [n for n in self.nodes if n.kind() in _SIGNAL_OPS]


def _source(node) -> str | None:
    """The source text a node was compiled from, with its place marked (TorchScript's), or
    None where it kept none."""
    try:
        text = node.sourceRange()
    except Exception:  # noqa: BLE001 - a node without a source range
        return None
    return text if isinstance(text, str) and text.strip() else None


def _call_sites(model: nn.Module) -> Counter[tuple[str, str]] | None:
    """How many calls of each module's methods from outside it the inlined ``forward`` holds,
    by qualified name and method: the ``prim::CallMethod`` nodes on it (through the chains of
    ``prim::GetAttr`` from ``self``, as :func:`_call_graph` reads them), each counted once
    per copy of the method holding it that inlining makes; None where a receiver is no such
    chain (a module chosen at run time). A call inside a loop counts once, as the inlined
    graph holds it; one in each branch of an ``if``, twice."""
    modules = dict(model.named_modules(remove_duplicate=False))
    memo: dict[tuple, Counter[tuple[str, str]] | None] = {}

    def sites(path: str, method: str, passed: tuple) -> Counter[tuple[str, str]] | None:
        item = (path, method, passed)
        if item not in memo:
            memo[item] = Counter()  # (a method calling itself: TorchScript has no recursion)
            memo[item] = _sites_of(path, method, passed)
        return memo[item]

    def _sites_of(path: str, method: str, passed: tuple) -> Counter[tuple[str, str]] | None:
        receivers = _receivers(modules.get(path), path, method, passed)
        if receivers is None:
            return Counter()
        graph, this, where = receivers
        written = {n.s("name") for n in graph.findAllNodes("prim::SetAttr", True)}
        found: Counter[tuple[str, str]] = Counter()
        for node in graph.findAllNodes("prim::CallMethod", True):
            if _not_taken(node, this, modules.get(path), written):
                continue  # (a branch on a flag the call does not take, as _fix_flags folds)
            receiver, *given = (v.unique() for v in node.inputs())
            if receiver not in where:
                return None
            if receiver != this.unique():
                found[where[receiver], node.s("name")] += 1
            inner = sites(where[receiver], node.s("name"), tuple(where.get(v) for v in given))
            if inner is None:
                return None
            found.update(inner)
        return found

    return sites("", "forward", ())


def _method_calls(model: nn.Module) -> Iterator[tuple[str, Any, dict, set[str], Any]]:
    """Each ``prim::CallMethod`` node of the methods the model's ``forward`` enters
    (:func:`_entered`), with its method's module path, ``self`` value, the modules its values
    hold (:func:`_receivers`) and the attributes the method sets (for :func:`_not_taken`)."""
    for path, receivers in _entered(model):
        if receivers is None:
            continue
        graph, this, where = receivers
        written = {n.s("name") for n in graph.findAllNodes("prim::SetAttr", True)}
        for node in graph.findAllNodes("prim::CallMethod", True):
            yield path, this, where, written, node


def passed_twice(model: nn.Module) -> set[str]:
    """The modules some method of the model calls with one tensor value as two of its
    arguments (``self.cell(x, x)``, ``self.bilinear(h, h)``), by qualified name (``"?"`` for
    a module chosen at run time), from the ``prim::CallMethod`` nodes of the graphs before
    inlining, as :func:`_call_graph` walks them: after inlining, the call reads one value,
    as a module of one argument would (a review: ``Bilinear(x, x)``, a quadratic map, given
    0.01, bounded 0.01; the eager bound refuses such calls)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    found: set[str] = set()
    for _, this, where, _, node in _method_calls(model):
        receiver, *given = node.inputs()
        tensors = [v.unique() for v in given if holds_tensors(v)
                   and v.node().kind() != "prim::Constant"]  # (a tensor constant:
        # no value of the signal)
        callee = where.get(receiver.unique())
        entered = receiver.unique() != this.unique() and re.fullmatch(
            r"forward\d*", node.s("name")) is not None  # (torch.jit.trace's forward1...)
        if len(tensors) != len(set(tensors)) or entered and len(given) < _arguments_needed(
                modules.get(callee)):  # (torch.jit.trace passes a tensor given twice
            # once: a traced Bilinear's forward takes one argument)
            found.add("?" if callee is None else callee)
    return found


def _arguments_needed(module: nn.Module | None) -> int:
    """How many arguments the ``forward`` of the class torch ships that a ScriptModule was
    compiled from needs (those without a default: ``Bilinear``'s two), or 0 (a class of the
    user's, whose source a loaded model does not keep)."""
    script: Any = module
    if not isinstance(module, torch.jit.ScriptModule):
        return 0
    name = re.sub(r"\.___torch_mangle_\d+", "", str(script._c._type().qualified_name()))
    if not name.startswith("__torch__.torch.nn."):  # (mangled where a class is compiled
        return 0  # again: __torch__.torch.nn.modules.linear.___torch_mangle_4.Bilinear)
    cls = getattr(nn, name.rsplit(".", 1)[-1], None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)
            and f"__torch__.{cls.__module__}.{cls.__qualname__}" == name):
        return 0
    parameters = list(inspect.signature(cls.forward).parameters.values())[1:]
    return sum(p.default is inspect.Parameter.empty and p.kind in (
        p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def _not_taken(node, this, module: nn.Module | None, written: set) -> bool:
    """Whether ``node`` lies in a branch of an ``if`` on the module's attributes that the call
    does not take (:func:`_evaluated`, as :func:`_fix_flags` decides it)."""
    block = node.owningBlock()
    while module is not None and block is not None:
        owner = block.owningNode()
        if owner is None:
            return False
        if owner.kind() == "prim::If":
            flag = _evaluated(next(owner.inputs()), this, module, written, [])
            if isinstance(flag, bool) and block is not list(owner.blocks())[0 if flag else 1]:
                return True
        block = owner.owningBlock()
    return False


def _calls(model: nn.Module, graph) -> list[_Call]:
    """The calls of leaf modules in the inlined ``graph``, in order. Where two calls of one
    module follow each other, a module of the user's class is cut where one call's operations
    (:func:`_call_pattern`) end, and kept so if every call it made runs exactly them (an
    ``if`` or a loop is one node, whichever way it goes); any other module where an
    operation repeats (:meth:`_Call.repeats`). A new user's trial: ConvNeXt's
    ``LayerNorm2d`` (a permute, a layer norm, a permute) given its constant, scripted or
    traced, read as two calls where the model makes one, had no bound, where the eager model
    had one."""
    patterns: dict[str, tuple[str, ...]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        pattern = _call_pattern(module)
        if pattern is not None and name not in patterns:
            patterns[name] = pattern
    while True:
        calls = _read_calls(model, graph, patterns)
        wrong = {c.name for c in calls if c.name in patterns
                 and tuple(n.kind() for n in c.nodes) != patterns[c.name]}
        if not wrong:
            return calls
        patterns = {k: v for k, v in patterns.items() if k not in wrong}


def _call_pattern(module: nn.Module) -> tuple[str, ...] | None:
    """The kinds of the operations one call of ``module`` runs, in order, as the inlined
    graph holds them (its ``forward``'s graph inlined, :data:`_STRUCTURAL` nodes aside); None
    for a class torch ships (:meth:`_Call.repeats` knows its calls), a module with children,
    or a ``forward`` that runs nothing or calls another method still after inlining."""
    if not isinstance(module, torch.jit.ScriptModule) or _shipped(module) or not is_leaf(
            module):
        return None
    script: Any = module
    try:
        graph = script._c._get_method("forward").graph.copy()
    except (AttributeError, RuntimeError):
        return None
    torch._C._jit_pass_inline(graph)
    kinds = []
    for node in graph.nodes():
        if node.kind() in ("prim::CallMethod", "prim::CallFunction"):
            return None
        if node.kind() not in _STRUCTURAL and node.kind() != "prim::Uninitialized":
            kinds.append(node.kind())
    return tuple(kinds) or None


def _read_calls(model: nn.Module, graph, patterns: dict[str, tuple[str, ...]]) -> list[_Call]:
    """:func:`_calls`, the modules in ``patterns`` cut after their operations."""
    modules = _Modules(model)
    calls: list[_Call] = []
    traced = isinstance(model, torch.jit.TracedModule)  # (saved and loaded: no sources)
    # the parametrizations of parametrized layers (not a child a user named so: a review)
    inside = tuple(f"{name}.parametrizations." if name else "parametrizations."
                   for name, module in model.named_modules() if is_parametrized(module))
    for node in graph.nodes():
        if node.kind() in _STRUCTURAL or node.kind() == "prim::Uninitialized":
            continue  # their values are read where they are used (an uninitialized one: by
            # the branch that raises, of a scripted Upsample's if)
        name, module = modules(node)
        if calls and name != calls[-1].name and _continues(node, calls[-1], modules):
            name, module = calls[-1].name, calls[-1].module
            modules.last = name
        if inside and f"{name}.".startswith(inside):
            continue  # computes a parametrized layer's weight: read where the layer uses it
        if not is_leaf(module):
            _refuse_control_flow(node, modules)
            continue
        if not calls or calls[-1].name != name or (
                len(calls[-1].nodes) >= len(patterns[name]) if name in patterns
                else calls[-1].repeats(node, traced)):
            calls.append(_Call(name, module))
        calls[-1].nodes.append(node)  # its own branches: a rebuilt module reads none
    return calls


def _same_code(module: nn.Module, method: str) -> bool:
    """Whether ``method`` is ``forward``, or a method whose graph, inlined, is ``forward``'s
    but for the names of its values and the shapes a trace saw, with the same arguments and
    defaults (torch.jit.trace's ``forward1``, ...: a module's later calls traced again, their
    argument named ``argument_1`` and a local ``x`` where ``forward``'s is ``x0``; helper 272
    found a ``forward1`` of the user's with forward's operations and other constants taken
    for one, 10 for 100; a review of the graphs' text found another default, a function of
    another module of the same name, a string constant holding ``" # "`` all read as
    forward's, :func:`_canonical`)."""
    if method == "forward":
        return True
    script: Any = module
    try:
        ours, theirs = (script._c._get_method(m) for m in ("forward", method))
        return _canonical(ours) == _canonical(theirs)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return False


class _Unlike:
    """A value :func:`_canonical` cannot read: equal to nothing, itself included."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def _comparable(value: Any) -> Any:
    """An attribute's value, comparable: a tensor by its dtype, shape and bytes (its text may
    elide its values), a list or tuple entry by entry with its type (a review: a NamedTuple
    passed as a plain tuple's default), a graph by :func:`_graph_form`, a float by its
    bits (reviews: ``-0.0 == 0.0``, and ``float.hex`` gives one ``"nan"`` for both signs,
    which ``copysign`` tells apart), a device, dtype or enum member by its name (a review:
    refused as values that cannot be compared)."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, complex):
        return ("complex", struct.pack("<dd", value.real, value.imag))
    if isinstance(value, (torch.device, torch.dtype)):
        return (type(value).__name__, str(value))
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__module__, type(value).__qualname__, value.name,
                _comparable(value.value))
    if isinstance(value, torch.Tensor):
        try:
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            return (str(value.dtype), tuple(value.shape), data.numpy().tobytes())
        except (RuntimeError, TypeError):  # (a quantized tensor, say)
            return _Unlike()
    if isinstance(value, (list, tuple)):
        return (type(value).__module__, type(value).__qualname__,
                tuple(_comparable(v) for v in value))
    if isinstance(value, torch._C.Graph):
        return _graph_form(value)
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return (type(value).__name__, value)
    return _Unlike()


def _type_form(value) -> str:
    """A value's type, a tensor's as ``Tensor`` (the shapes and strides a trace saw aside)."""
    kind = value.type()
    return "Tensor" if isinstance(kind, torch.TensorType) else str(kind)


def _graph_form(graph) -> tuple:
    """A graph as nested tuples: each node's kind, its attributes by value
    (:func:`_comparable`), its inputs and outputs numbered in order of appearance with the
    outputs' types, its blocks; two graphs have the same form where they run the same
    operations on the same values, up to those values' names."""
    numbers: dict[int, int] = {}

    def number(value) -> int:
        return numbers.setdefault(value.unique(), len(numbers))

    def block(b) -> tuple:
        rows: list[Any] = [tuple((number(v), _type_form(v)) for v in b.inputs())]
        for node in b.nodes():
            attributes = tuple(
                (a, node.kindOf(a), _comparable(getattr(node, node.kindOf(a))(a)))
                for a in sorted(node.attributeNames()))
            rows.append((node.kind(), attributes, tuple(number(v) for v in node.inputs()),
                         tuple((number(v), _type_form(v)) for v in node.outputs()),
                         tuple(block(inner) for inner in node.blocks())))
        rows.append(tuple(number(v) for v in b.outputs()))
        return tuple(rows)

    return block(graph.block())


def _canonical(method) -> tuple:
    """A method of a ScriptModule in a form equal to another's where both compute the same:
    its arguments' types and defaults (their names aside) and its graph inlined (a function
    it calls by its body, not its name) in :func:`_graph_form`; :class:`_Unlike` where a call
    is left after inlining or Python code runs (:data:`_OPAQUE`)."""
    graph = method.graph.copy()
    torch._C._jit_pass_inline(graph)
    if any(graph.findNode(kind, True) is not None for kind in _OPAQUE):  # (a review: a
        return (_Unlike(),)  # PythonOp, @torch.jit.ignore's call, shows no function)
    arguments = tuple((str(a.type), a.kwarg_only, a.has_default_value(),
                       _comparable(a.default_value) if a.has_default_value() else None)
                      for a in method.schema.arguments[1:])
    return (arguments, _graph_form(graph))


def _runs_nothing(module: nn.Module) -> bool:
    """Whether ``module``'s forward runs no operation (returns its input, or a constant)."""
    script: Any = module
    try:
        graph = script._c._get_method("forward").graph
    except (AttributeError, RuntimeError):
        return False
    return all(n.kind() in _STRUCTURAL for n in graph.nodes())


def _given_more(model: nn.Module, names: frozenset[str]) -> str:
    """Why a module named in ``names`` (called whole, its constant given for its map of its
    input) is called with an argument beyond its input other than that argument's default:
    its map is then another (a review: ``forward(x, s: float = 0.0)`` called ``m(x, 9.0)``,
    given a constant true of ``s = 0``, 1, bounded a map of 10 by 1; TorchScript's call
    passes every argument, defaults included); or ``""``."""
    modules = dict(model.named_modules(remove_duplicate=False))
    for path, this, where, written, node in _method_calls(model):
        receiver, *given = node.inputs()
        callee = where.get(receiver.unique())
        if callee not in names or _not_taken(node, this, modules.get(path), written):
            continue  # (a branch on a flag the call does not take, as _call_sites)
        script: Any = modules.get(callee)
        try:
            arguments = script._c._get_method(node.s("name")).schema.arguments[2:]
        except (AttributeError, RuntimeError):
            arguments = []
        for k, value in enumerate(given[1:]):
            argument = arguments[k] if k < len(arguments) else None
            given_value = constant_of(value) if value.node().kind() == (
                "prim::Constant") else _UNKNOWN
            if argument is None or not argument.has_default_value() or (
                    given_value is _UNKNOWN) or not (
                    _comparable(given_value) == _comparable(argument.default_value)):
                said = f"argument {argument.name!r}" if argument is not None else (
                    f"argument {k + 2}")
                return (f"calls {callee!r} ({_kind(script)}), of a class of your own, "
                        f"whose constant is given, with its {said} other than its default "
                        "(or a value not compared with it): the constant is of its map of "
                        "its input alone")
    return ""


def untold_calls(model: nn.Module, calls: list[_Call], names: frozenset[str]) -> str:
    """Why the calls of a module named in ``names`` (of a class of the user's, called whole
    as one layer: its constant given) cannot be taken as read off the inlined graph, or
    ``""``. Its code may repeat any operation, so the calls are read right only where the
    graph calls its ``forward`` (:func:`_same_code`), exactly as often as they were read
    (helper 269: ConvNeXt's LayerNorm2d permutes twice, and was read as two calls, its given
    constant counted twice: 1.03 for a map of 1.118; helper 271: ``act.twice(x)`` runs
    forward twice, ``act.other(x)`` other code: rebuilt as one forward each, 10 for 100;
    helper 272: ``forward1``, a method of the user's, taken for torch.jit.trace's second
    trace of forward, 10 for 100; a module read 0 times but called, 11 for 101)."""
    if not names:
        return ""
    more = _given_more(model, names)
    if more:
        return more
    read = Counter(call.name for call in calls if call.name in names)
    sites = _call_sites(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    for name in sorted(names):
        count, module = read[name], modules.get(name)
        entered: Counter[str] = Counter()
        for (path, method), n in (sites or {}).items():
            if path == name:
                entered["forward" if module is not None and _same_code(module, method)
                        else method] += n
        if not count and module is not None and _runs_nothing(module):
            continue  # (its constant is warned of as unused)
        if entered != (Counter({"forward": count}) if count else Counter()) or (
                sites is None):  # (read 0 times, called once: helper 272, the next
            # module's forward taken for the last call's)
            said = ", ".join(f"{method} {n} time{'s' * (n != 1)}" for method, n in sorted(
                entered.items())) or ("by a module chosen at run time" if sites is None
                                      else "by no call of a method")
            return (f"calls {name!r} ({_kind(module) if module is not None else '?'}), of a "
                    "class of your own, whose constant "
                    f"is given, {count} time{'s' * (count != 1)} as read off the inlined graph, "
                    f"where the graph calls it {said}: its calls cannot be told apart (its "
                    "forward repeats an operation? two calls in a row?); the eager model "
                    "(torch.save(model)) gets the bound")
    return ""


def holds_tensors(value) -> bool:
    """Whether a value of the graph may hold a tensor (a tensor, an optional one, a list or
    tuple of them): integers, booleans and lists of them share no tensor's memory."""
    return "Tensor" in str(value.type())


def _continues(node, call: _Call, modules: _Modules) -> bool:
    """Whether ``node``, an ``if`` or loop whose path names another module, is the last
    call's own: its path is written from the call's module down (:meth:`_Modules.continued`)
    and it reads only values the call made, constants and the module's attributes
    (``self.training``), none a tensor (the next call's loop over its input reads it).
    TorchScript writes the ``if`` that checks an InstanceNorm's sizes ``norm(InstanceNorm2d)``
    where the InstanceNorm is ``block.norm``; a model that also holds a ``norm`` had the
    check read as a call of it, and was refused as one whose calls cannot be told apart
    (left open since a new user's trial of the sample normalizations)."""
    if not list(node.blocks()) or modules.continued(
            node, node.getModuleHierarchy(), call.name) is None:
        return False
    made = {v.unique() for n in call.nodes for v in n.outputs()}

    def own(value) -> bool:
        source = value.node()
        if value.unique() in made or source.kind() == "prim::Constant":
            return True
        if source.kind() != "prim::GetAttr":
            return False
        try:
            return modules.resolve(source.getModuleHierarchy())[0] == call.name
        except TypeError:
            return False

    read = list(node.inputs())  # (no tensor: a review found the model's own act's loop over
    # its signal, the nested block.act's output, taken for block.act's: 0.81 for 80.5)
    return bool(read) and all(own(v) and not isinstance(v.type(), torch.TensorType)
                              for v in read) and not any(
        holds_tensors(v) for v in node.outputs())  # (a check returns none: helper 272 found
    # the next module's whole forward, an if on a constant default argument, taken for the
    # last call's, 11 for 101)


def signal_values(graph) -> set:
    """The tensors of ``graph`` computed from its input's values (by ``unique()``; lists and
    tuples of them too): a node's outputs that hold tensors where it reads one, or where a
    block of it returns one. Sizes are none (the shapes a layer's code reads)."""
    found = {list(graph.inputs())[1].unique()}

    def walk(block) -> None:
        for node in block.nodes():
            for inner in node.blocks():
                walk(inner)
            if any(v.unique() in found for v in node.inputs()) or any(
                    v.unique() in found for b in node.blocks() for v in b.outputs()):
                found.update(v.unique() for v in node.outputs() if "Tensor" in str(v.type()))
                if _writes_first(node):  # (a list a signal is appended to holds it: an
                    # Inception's outs.append(branch(x)); torch.cat(outs), a new user's trial:
                    # its next layer was refused as reading no signal)
                    found.add(next(iter(node.inputs())).unique())

    walk(graph.block())
    return found


def _writes_first(node) -> bool:
    """Whether ``node`` changes its first argument in place, by its schema (``aten::append``,
    ``aten::add_``); False for a node without one."""
    try:
        schema = torch._C.parse_schema(node.schema())
    except (RuntimeError, ValueError):  # (no schema: "(no schema)")
        return False
    info = schema.arguments[0].alias_info if schema.arguments else None
    return bool(info is not None and info.is_write)


def _refuse_control_flow(node, modules: _Modules) -> None:
    """A leaf module's operation inside an ``if`` or a loop of its parent's forward."""
    for block in node.blocks():
        for inner in block.nodes():
            name, module = modules(inner)
            if is_leaf(module):
                _refuse_in_block(block, name, module)
            _refuse_control_flow(inner, modules)


def _refuse_in_block(block, name: str, module: nn.Module) -> None:
    for node in block.nodes():
        if node.kind() in _SIGNAL_OPS:
            raise TypeError(
                f"TorchScript module {name or '(the model)'!r} ({_kind(module)}) is called "
                f"inside control flow (an if or a loop of the TorchScript graph, running "
                f"{node.kind()}): sparseconv cannot follow it; pass the eager model "
                "(torch.save(model))")
        for inner in node.blocks():
            _refuse_in_block(inner, name, module)


def _probe(model: nn.Module, graph, values: list, shape: tuple[int, ...],
           grad: bool = False, batch: int = 1) -> list:
    """The runtime values of ``values`` on one forward pass of the probe batch
    (:func:`probe_input`, of ``batch`` samples), under ``torch.no_grad()`` (or, with
    ``grad``, with autograd on)."""
    outputs = list(graph.outputs())  # the graph is the model's inlined copy: ours to change
    node = graph.create("prim::TupleConstruct", outputs + values)
    node.output().setType(torch._C.TupleType([v.type() for v in outputs + values]))
    graph.appendNode(node)
    for _ in outputs:
        graph.eraseOutput(0)
    graph.registerOutput(node.output())
    function = torch._C._create_function_from_graph("sparseconv_probe", graph)
    probe = probe_input(model, shape, batch=batch)  # (sized against the memory limit first)
    try:
        with torch.set_grad_enabled(grad), restored_state(model):
            try:
                result = function(model._c, probe)
            except (RuntimeError, torch.jit.Error):  # a model may index with its input:
                result = function(model._c, probe.zero_())  # zeros, as before
    except (RuntimeError, torch.jit.Error) as exc:  # TorchScript's message carries its whole
        # traceback; a ``raise`` in the forward is a torch.jit.Error, no RuntimeError (a new
        # user's trial: its traceback came out whole, naming the probe's function)
        raise forward_failed(model, shape, exc, last=True) from exc
    return list(result)[len(outputs):]


def _snapshot(graph, value, node, before: bool):
    """A clone of tensor ``value`` inserted just before (or after) ``node``: the probe's
    value there, which an in-place operation elsewhere (``relu_``) cannot change; other
    values as they are."""
    if not isinstance(value.type(), torch._C.TensorType):
        return value
    none = graph.insertConstant(None)
    clone = graph.create("aten::clone", [value, none])
    clone.output().setType(value.type())
    none.node().moveBefore(node)
    if before:
        clone.insertBefore(node)
    else:
        clone.insertAfter(node)
    return clone.output()


def _is_dropout(cls: Any) -> bool:
    """Whether ``cls`` is one of torch's dropout classes, the identity in eval mode."""
    return isinstance(cls, type) and issubclass(cls, nn.modules.dropout._DropoutNd)


def _graph_of(model: nn.Module):
    """The model's inlined graph, ours to change, with each argument of ``forward`` after the
    input bound to its default (a scripted ``ConvTranspose2d``'s ``output_size=None``, a
    user's ``scale: float = 2.0``), as the model runs when called on one tensor; or the
    phrase that says why it cannot be (``"takes 2 inputs (x, y)"``: one without a default).
    """
    script: Any = model  # torch's stubs type a ScriptModule's graph attributes loosely
    try:
        graph = script.inlined_graph
    except (AttributeError, RuntimeError):  # (a review: a scripted GRU's overloaded forward
        return "has no one graph (an overloaded forward, as a scripted RNN's)"  # raised)
    inputs = list(graph.inputs())
    arguments = list(script.forward.schema.arguments)[1:]  # (after self)
    required = [a.name for a in arguments if not a.has_default_value()]
    if len(required) > 1:
        return f"takes {len(required)} inputs ({', '.join(required)})"
    if len(inputs) != 2 + sum(a.has_default_value() for a in arguments):  # (none, or *args)
        return f"takes {len(inputs) - 1} inputs"
    first = next(iter(graph.nodes()), None)
    for index in range(len(inputs) - 1, 1, -1):  # (from the last: the indices stay valid)
        default = _UNKNOWN
        try:
            default = arguments[index - 1].default_value
            if not (_plain(default) or isinstance(default, (torch.dtype, torch.device))):
                raise RuntimeError("no plain constant")  # (a review: an Enum default of a
                # loaded model, inserted with the Python class's type, compared unequal to
                # the graph's own: the branch folded away, 1.0 for a map of 10)
            constant = graph.insertConstant(default)
        except RuntimeError:  # a default TorchScript holds but cannot insert as a constant
            kind = "" if default is _UNKNOWN else f", a {type(default).__name__},"
            return (f"takes {len(inputs) - 1} inputs (the default of "
                    f"{arguments[index - 1].name}{kind} is no constant the graph can hold "
                    "here)")
        if first is not None:
            constant.node().moveBefore(first)
        inputs[index].replaceAllUsesWith(constant)
        graph.eraseInput(index)
    flags = _fix_flags(graph, model)  # (an if on a module's flag: its branch, inlined)
    if len(inputs) > 2 or flags:  # an if on a bound argument takes its branch, as the call does
        torch._C._jit_pass_constant_propagation(graph)
    while flags and _fix_flags(graph, model):  # (a condition the pass laid bare: ``if a or
        torch._C._jit_pass_constant_propagation(graph)  # b:`` is an if in an if)
    return graph


def _fix_flags(graph, model: nn.Module) -> bool:
    """Put each ``if`` on a module's attributes (``if self.use_res:`` around a MobileNet
    block's residual sum, a new user's trial: its layers were refused as called inside
    control flow; ``if self.stride == 1:`` around a ShuffleNetV2 block's branches, another:
    the scripted model raised a TypeError) on the condition's value, for constant
    propagation to take its branch, as the call does; not where the forward sets an
    attribute of that name (``prim::SetAttr``). Whether any was."""
    nodes = _preorder(graph.block())
    if any(n.kind() in _OPAQUE for n in nodes):  # (code the graph does not show may set
        return False  # any attribute: a fifth review's forked method, 1.0 for 100)
    if any(changes_a_value(n) for n in nodes):  # (a list attribute changed in place: its
        return False  # value at rest may not be the one an if reads)
    written = {n.s("name") for n in nodes if n.kind() == "prim::SetAttr"}
    self_value = next(iter(graph.inputs()))
    fixed = False
    for node in nodes:
        if node.kind() != "prim::If" or next(node.inputs()).node().kind() == "prim::Constant":
            continue
        read: list = []  # (on constants alone, an if is the pass's to fold, or a layer's)
        flag = _evaluated(next(node.inputs()), self_value, model, written, read)
        if isinstance(flag, bool) and read:
            constant = graph.insertConstant(flag)
            constant.node().moveBefore(node)
            node.replaceInput(0, constant)
            fixed = True
    return fixed


def changes_a_value(node) -> bool:
    """Whether ``node`` changes in place a value that is no tensor and that the forward did
    not build (a list or dict attribute: ``self.flags[0] = 1``, ``aten::_set_item``; a
    review's list attribute flipped by a layer's call, read at rest by the parent's if: 2.03
    for a map of 28.1); appending to a list the forward builds (``outs = []``) changes
    nothing of the model's."""
    try:
        schema = torch._C.parse_schema(node.schema())
    except RuntimeError:  # (a prim node: none of these)
        return False
    return any(a.alias_info is not None and a.alias_info.is_write
               and not isinstance(v.type(), torch.TensorType)
               and v.node().kind() not in ("prim::ListConstruct", "prim::DictConstruct")
               for v, a in zip(node.inputs(), schema.arguments))


#: Nodes whose code is not in the inlined graph (:data:`sparseconv._torch_script_chain.OPAQUE`).
_OPAQUE = frozenset({"prim::CallMethod", "prim::CallFunction", "prim::fork",
                     "prim::forkClosure", "prim::PythonOp", "aten::wait", "prim::awaitable"})


def _plain(value: Any) -> bool:
    """Whether Python computes on ``value`` as TorchScript does: None, a bool, a 64-bit int,
    a float other than NaN (Python finds ``[nan] == [nan]``, an object equal to itself;
    TorchScript does not), a str (for equality: UTF-8 bytes compare as their code points), a
    list or tuple of them."""
    if value is None or type(value) in (bool, str):
        return True
    if type(value) is int:
        return -2**63 <= value < 2**63
    if type(value) is float:
        return value == value
    return type(value) in (list, tuple) and all(_plain(item) for item in value)


def _as_torchscript(operation: Callable[..., Any], numbers: bool = False) -> Callable[..., Any]:
    """An operation on constants as TorchScript computes it, refused (``TypeError``) where
    Python may compute another value: an integer against a float is converted to a float
    first (a review: Python's ``2**53 + 1 == 2.0**53`` is False, TorchScript's True, and the
    report followed the other branch: 0.90 for a map of 45.9); ``numbers``: numbers only
    (no str, whose order and length TorchScript reads in bytes: ``len("é")`` is 2, a
    review's branch taken wrongly, 1.34 for 28.4)."""
    def computed(*args: Any) -> Any:
        if not all(_plain(a) and not (numbers and isinstance(a, str)) for a in args):
            raise TypeError("a value Python may read otherwise than TorchScript")
        if len(args) == 2 and {type(args[0]), type(args[1])} == {int, float}:
            args = tuple(float(a) for a in args)
        return operation(*args)
    return computed


def _contains(items: Any, item: Any) -> bool:
    """``item in items`` on values of one type (TorchScript's lists are of one type)."""
    if any(type(i) is not type(item) for i in items):
        raise TypeError("values of different types")
    return item in items


def _sequence(operation: Callable[..., Any]) -> Callable[..., Any]:
    """``len`` or an item of a list or tuple (not of a str: TorchScript counts its bytes)."""
    def computed(items: Any, *args: Any) -> Any:
        if type(items) not in (list, tuple):
            raise TypeError("not a list")
        return operation(items, *args)
    return computed


#: The operations a condition on constants is computed with, as TorchScript computes them.
CONDITION_OPS: dict[str, Callable[..., Any]] = {
    **{f"aten::{name}": _as_torchscript(getattr(operator, name), numbers=name not in (
        "eq", "ne")) for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    "aten::__not__": _as_torchscript(operator.not_), "aten::Bool": _as_torchscript(bool),
    "aten::__contains__": _as_torchscript(_contains),
    "aten::len": _as_torchscript(_sequence(len)),
    "aten::__getitem__": _as_torchscript(_sequence(operator.getitem))}
def _evaluated(value, self_value, model: nn.Module, written: set, read: list) -> Any:
    """The value of a condition computed from constants and attributes of modules
    (:func:`_attribute`, each appended to ``read``) by comparisons, ``not`` and ``in``
    (``self.stride == 1``), each a value Python computes on as TorchScript does
    (:func:`_plain`); ``_UNKNOWN`` for any other."""
    node = value.node()
    if node.kind() == "prim::Constant":
        found = constant_of(value)
        if found is _UNKNOWN:
            return _UNKNOWN
    elif node.kind() == "prim::GetAttr":
        found = _attribute(value, self_value, model, written)
        if found is None:  # (an attribute that is None reads as its NoneType constant)
            return _UNKNOWN
        read.append(node.s("name"))
    elif node.kind() in CONDITION_OPS or node.kind() == "prim::ListConstruct":
        arguments = [_evaluated(v, self_value, model, written, read) for v in node.inputs()]
        if any(a is _UNKNOWN for a in arguments):
            return _UNKNOWN
        try:
            found = CONDITION_OPS.get(node.kind(), lambda *items: list(items))(*arguments)
        except (TypeError, IndexError, KeyError):  # (refused, or failing: in a branch that
            return _UNKNOWN  # does not run, an index out of range raises nothing)
    else:
        return _UNKNOWN
    return found if _plain(found) else _UNKNOWN


def _attribute(value, self_value, model: nn.Module, written: set) -> Any:
    """The value of ``self.a.b.flag`` read by a chain of ``prim::GetAttr`` from the model, an
    attribute of a module that holds others (a block's) or of a leaf module torch does not
    ship (torchvision's ``StochasticDepth``, the identity in eval mode, a new user's trial);
    not a shipped layer's own ``self.training``: its code stays as its rebuilding reads it;
    or None (another value, a shipped layer's attribute, or one the forward sets)."""
    names: list[str] = []
    while value.node().kind() == "prim::GetAttr":
        names.append(value.node().s("name"))
        value = next(value.node().inputs())
    if value is not self_value or not names or names[0] in written:
        return None
    owner: Any = model
    for name in reversed(names[1:]):
        owner = script_attribute(owner, name)
    if not isinstance(owner, nn.Module) or is_leaf(owner) and _shipped(owner):
        return None
    found = script_attribute(owner, names[0])
    return None if found is MISSING else found


#: What :func:`script_attribute` returns for an attribute the module does not hold.
MISSING = object()


def script_attribute(owner: Any, name: str) -> Any:
    """``owner.name`` as TorchScript reads it: a submodule, else the compiled module's own
    attribute (Python's ``getattr`` finds a class attribute of ``nn.Module`` or
    ``ScriptModule`` first: a review's ``self.call_super_init = True`` read False, the other
    branch taken, 1.34 for a map of 37.0); :data:`MISSING` where it holds none."""
    modules = getattr(owner, "_modules", None)
    if modules is not None and name in modules:
        return modules[name]
    compiled = getattr(owner, "_c", None)
    if isinstance(compiled, torch._C.ScriptModule):
        script: Any = compiled  # (torch's stubs lack its getattr and hasattr)
        return script.getattr(name) if script.hasattr(name) else MISSING
    return getattr(owner, name, MISSING)


def _preorder(block) -> list:
    """Every node of ``block`` and the blocks within, in the order they run."""
    found = []
    for node in block.nodes():
        found.append(node)
        for inner in node.blocks():
            found.extend(_preorder(inner))
    return found


def script_calls(model: nn.Module, shape: tuple[int, ...], strict: bool = False,
                 ) -> tuple[list[tuple], tuple[list[bool], list[bool]]]:
    """Every leaf module's call, as ``(name, module, input, output)`` (the tensors of the
    probe batch, :func:`probe_input`), in order; and per BatchNorm call whether its input is
    the last convolution's output, per convolution call whether its input is the last
    padding's, unmodified and read by nothing else (:func:`_folds`; ``strict``, for a model
    whose bound is over its graph: directly, not through dropouts)."""
    graph = _graph_of(model)
    if isinstance(graph, str):
        raise TypeError(f"TorchScript {_kind(model)}.forward {graph}; " + (
            "one is supported (the others need defaults, or a module whose forward takes one "
            "tensor, the others fixed)" if graph.startswith("takes") else
            "pass the eager model (torch.save(model))"))
    calls = [c for c in _calls(model, graph) if c.input() is not None]
    signal = signal_values(graph)
    for call in calls:
        call.signal = signal
    _refuse_frozen(model, graph)
    for call in calls:
        if call.output() is None:  # (a review: a nested ConvTranspose2d's output_size code,
            # its path written from a name the model also holds, cut the call in pieces)
            raise TypeError(f"TorchScript module {call.name or '(the model)'!r} "
                            f"({_kind(call.module)}) has a call in the graph that reads the "
                            "signal and returns no tensor: sparseconv cannot tell its calls "
                            "apart (a module path TorchScript wrote from a name the model "
                            "holds twice?); pass the eager model")
    order = {node: i for i, node in enumerate(graph.nodes())}
    readers = {out.unique(): [use.user for use in out.uses()]  # (before the probe's nodes)
               for out in (c.output() for c in calls) if out is not None}
    # each call's input as it enters the call and output as it leaves (an in-place operation
    # after it, relu_(), would change the tensor the graph returns), as clones in the graph
    ends = [(_snapshot(graph, c.input(), c.nodes[0], True),
             _snapshot(graph, c.output(), c.nodes[-1], False)) for c in calls]
    wanted = [v for c, end in zip(calls, ends) for v in (*end, *(
        a for op in c.ops() for a in op.inputs()))]
    index = {v.unique(): i for i, v in reversed(list(enumerate(wanted)))}
    results = _probe(model, graph, wanted, shape)

    def value(v):
        return results[index[v.unique()]]

    modules = [_rebuild(call, value) for call in calls]
    samples = [(value(x), value(y)) for x, y in ends]
    for call, module, (x, y) in zip(calls, modules, samples):
        if module is not call.module:
            _check_rebuilt(call, module, x, y)
    records = [(call.name, module, x, y) for call, module, (x, y) in zip(calls, modules, samples)]
    return records, _folds(order, readers, calls, modules, strict)


def _check_rebuilt(call: _Call, module: nn.Module, x: Any, y: Any) -> None:
    """Refuse a call whose rebuilt module does not compute what the call did on the probe (a
    review: a scripted class of the user's named ``Conv2d`` computing ``100 * F.conv2d(...)``,
    or ``ReLU`` computing ``100 * relu``, was read as torch's, its other operations unseen)."""
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or module.training:
        return  # (in training mode, dropout draws anew)
    with torch.no_grad():
        ours = module(x)
    if not matches(ours, y, magnitude(module, x)):
        raise TypeError(f"TorchScript module {call.name or '(the model)'!r} "
                        f"({_kind(call.module)}) does not compute what a {_kind(call.module)} "
                        "of its operations' arguments does (its output on a probe differs): "
                        "it runs operations sparseconv does not read")


def _refuse_frozen(model: nn.Module, graph) -> None:
    """A model frozen by ``torch.jit.freeze``, saved and loaded back: it holds no submodule
    and no parameter (its layers are inlined, their weights constants of its graph), so the
    whole model would pass for one unknown leaf module and get an empty report."""
    if not is_leaf(model) or next(model.parameters(), None) is not None:
        return
    weighted = _CONV_OPS | {"aten::linear", "aten::batch_norm"}
    constant = [node.kind() for node in graph.nodes() if node.kind() in weighted and any(
        v.node().kind() == "prim::Constant" and isinstance(v.type(), torch.TensorType)
        for v in node.inputs())]
    if constant:
        raise TypeError(f"TorchScript {_kind(model)} holds no submodule and no parameter but "
                        f"runs {', '.join(dict.fromkeys(constant))} with constant weights: a "
                        "model frozen by torch.jit.freeze (its layers inlined away); "
                        "sparseconv cannot tell its layers apart: pass the module before "
                        "torch.jit.freeze")


#: Reads of a tensor's shape, dtype or device alone: no read of its values.
_SHAPE_READS = frozenset({"aten::size", "aten::dim", "aten::len", "aten::numel", "prim::shape",
                          "prim::dtype", "prim::device", "prim::layout", "aten::__isnot__",
                          "aten::__is__"})


def _reads_elsewhere(user, through: set, call: _Call) -> bool:
    """Whether ``user``, a node of the model's graph (as it was before the probe's clones and
    outputs were added) that reads a value on the way from a convolution to the BatchNorm
    ``call`` (or from a padding to the convolution ``call``), reads that value itself
    elsewhere: the graph's return, or any node but the dropouts passing it on (``through``)
    and the call's own nodes (those inside its own ``if`` too; a review found ``if c:
    y.mul_(5)`` folded). A read of the shape alone
    (``dim``, ``size``: the BatchNorm's own checks, some inside their ``if``) is none."""
    if user.kind() == "prim::Return":
        return True
    if user.kind() in _SHAPE_READS or user in through or user in call.nodes:
        return False
    top = user
    while (owner := top.owningBlock().owningNode()) is not None:
        top = owner  # (the top-level node whose block holds it)
    # inside an if or a loop: the BatchNorm's own (an InstanceNorm's branches), or a foreign
    # read; at the top level, any other node (a dict that holds it, a third review: the
    # pair was folded, and a change through d["k"] failed the report)
    return top not in call.nodes and top not in through


def _folds(order: dict, readers: dict, calls: list[_Call], modules: list[nn.Module],
           strict: bool = False) -> tuple[list[bool], list[bool]]:
    """Per BatchNorm call, whether it may fold into the convolution (or ``Linear``: the
    report folds it where that is called on ``(N, features)``) before it, and per
    convolution call, whether the padding module before it may fold into it
    (:func:`_pairs`)."""
    return (_pairs(order, readers, calls, modules, (*_CONV, *_CONV_T, nn.Linear),
                   _RUNNING_NORMS, strict),
            _pairs(order, readers, calls, modules, _PADS, (*_CONV, *_CONV_T),
                   strict))


def _pairs(order: dict, readers: dict, calls: list[_Call], modules: list[nn.Module],
           firsts: tuple[type, ...], seconds: tuple[type, ...], strict: bool = False,
           ) -> list[bool]:
    """Per call of a module of ``seconds`` (a BatchNorm; a convolution): its input is the
    value the last call of a module of ``firsts`` (a convolution; a padding) returned, which
    nothing but that call (and eval-mode dropouts passing it on) reads (``readers``: each
    call's output's users in the model's graph), and no in-place operation (``relu_``)
    touched that value in between. ``strict`` (a model bounded over its graph, which checks
    a fold as the eager report's torch.fx graph does, a review found: a fold through a
    dropout lost the bound): no dropout passes it on. (A read of its shape outside the
    call, which that check refuses too, is not told apart here from the BatchNorm's own
    checks of its input's rank: such a fold still loses the bound.)"""
    folds: list[bool] = []
    last: _Call | None = None
    value = None  # the last first's output, as the calls since pass it on
    through: set = set()  # those calls' nodes: eval-mode dropouts, in place or not
    passed: list = []  # the values on the way: the first's output, the dropouts'
    for call, module in zip(calls, modules):
        if isinstance(module, seconds):
            source = call.input()
            if last is None or source.unique() != value:
                folds.append(False)
            else:
                start, end = order[last.nodes[-1]], order[call.nodes[0]]
                made = last.output()
                folds.append(not any(  # (a trial: relu(bn(y)) + y was folded, y's row lost)
                    _reads_elsewhere(user, through, call)
                    for out in passed for user in readers.get(out.unique(), ())) and not any(
                    use.user.kind().endswith("_") and not use.user.kind().endswith("__")
                    and use.user not in through and start < order.get(use.user, -1) < end
                    for out in {made.unique(): made, source.unique(): source}.values()
                    for use in out.uses()))
        if isinstance(module, firsts):  # (a convolution: a second for its padding, then a
            # first for its BatchNorm)
            last, value, through = call, call.output().unique(), set()
            passed = [call.output()]
        elif (not strict and _is_dropout(type(module)) and not module.training
              and value is not None and call.input().unique() == value):
            # (a hunt: Dropout(inplace=True) between a convolution and its BatchNorm, the
            # identity in eval mode, kept them unfolded where the eager report folds them)
            value, through = call.output().unique(), through | set(call.nodes)
            passed.append(call.output())
    return folds
