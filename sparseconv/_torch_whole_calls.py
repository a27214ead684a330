"""An eager model's calls of modules of the user's classes given their Lipschitz constants,
bounded whole in the bound over its torch.fx graph.

The tracer follows such a module's forward (:class:`WholeCall`, recorded by
:class:`sparseconv._torch_sizes_tracer.SizesTracer`), its argument passed through a marker
node of its own (:func:`argument`), so that the graph shows what the call reads: the
argument is then no value another module can hand it (an attribute set to the same tensor,
a global) unseen. The nodes the call made stay in the graph, which runs them (not the
module's forward, which may compute otherwise where it is not traced) under every check of
the bound (a constant changed in place, a stale read, the graph against the forward on
several batches); :func:`whole_units` marks them as one unit, whose output the walk bounds
by the constant given times its argument's bound, where every call of the module reads its
argument and constants alone (no other value computed from the input), leaves nothing of
the signal to the rest of the forward but its output, runs torch's own operations alone
(no module of the model, no function of the user's that torch.fx cannot see into, no
tensor attribute past its metadata and views, such as ``x._base``), none of which draws,
reads memory no one set or past its version counter, or normalizes by a sample's own
statistics (whose slope the walk checks against a constant given for its node), and runs
the same operations on the same constants as every other call of it (a module whose state
one call changes is no one map). A module any of whose calls fails this is followed
instead, and said so (two reviews found a module called whole, untraced, reading what
another module left: bounds 1e4 below the truth; a third, writes into a tensor attribute,
a forward that traces otherwise than it runs, a wrapped function reading a global, a
per-call counter and ``x._base``: bounds 3-12 times below)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.fx

from sparseconv._torch_activations import is_sample_norm

__all__ = ["WholeCall", "WholeUnit", "argument", "whole_units"]


def argument(x: torch.Tensor) -> torch.Tensor:
    """The argument of a module's call that the bound may take whole: ``x`` itself (a node
    of its own in the traced graph)."""
    return x


@dataclasses.dataclass
class WholeCall:
    """One call of a module the bound may take whole: the module's qualified ``name``, the
    call's index ``k`` among its calls (from 0, those on constants counted, as the trace
    counts them), the ``marker`` node of its argument, the ``members``, the nodes its
    forward made (all those traced after the marker), its ``output`` node (None where it
    returns no node), and why it cannot be taken whole, as far as the call's arguments
    say."""

    name: str
    k: int
    marker: torch.fx.Node | None = None
    members: list[torch.fx.Node] = dataclasses.field(default_factory=list)
    output: torch.fx.Node | None = None
    why: str = ""


@dataclasses.dataclass(frozen=True)
class WholeUnit:
    """A call taken whole: its module's ``name``, its index ``k`` among the module's calls,
    its argument's ``marker`` node and the ``members``, the nodes its forward made (the
    output among them), which the walk does not bound one by one."""

    name: str
    k: int
    marker: torch.fx.Node
    members: frozenset[torch.fx.Node]


def whole_units(graph: torch.fx.Graph, calls: Iterable[WholeCall],
                refused: Callable[[torch.fx.Node], str],
                ) -> tuple[dict[torch.fx.Node, WholeUnit], dict[str, str]]:
    """The calls of ``calls`` taken whole, by their output node, where each call of their
    module can be (the module docstring); and the other modules' names, each with why it is
    followed (their calls' markers removed from ``graph``). ``refused(node)``: why the bound
    refuses a node whatever it reads (a random draw...)."""
    calls = list(calls)
    alive = set(graph.nodes)  # (the tracer drops the conditions' nodes it read)
    by_name: dict[str, list[WholeCall]] = {}
    for call in calls:
        call.members = [n for n in call.members if n in alive]
        by_name.setdefault(call.name, []).append(call)
    signal = _from_the_input(graph)
    markers = {call.marker: call.name for call in calls if call.marker is not None}
    followed: dict[str, str] = {}
    units: dict[torch.fx.Node, WholeUnit] = {}
    for name, its in by_name.items():
        why = next((w for w in (call.why or _why(call, signal, markers, refused)
                                for call in its) if w), "") or _differ(its)
        if why:
            followed[name] = why
    for call in (call for its in by_name.values() for call in its):
        if call.marker is None:
            continue
        if call.name in followed:
            call.marker.replace_all_uses_with(call.marker.args[0])  # type: ignore[arg-type]
            graph.erase_node(call.marker)
        elif call.output is not None:
            units[call.output] = WholeUnit(call.name, call.k, call.marker,
                                           frozenset(call.members))
    return units, followed


def _from_the_input(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """The nodes computed from the graph's inputs (every node that reads one, or reads a
    node that does)."""
    found: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in found for a in node.all_input_nodes):
            found.add(node)
    return found


#: The attributes a call taken whole may read off a tensor: its metadata, and views of it.
_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "layout", "is_cuda",
                         "requires_grad", "T", "mT", "H", "mH", "real", "imag"})
#: The modules whose functions a call taken whole may call (torch's own, Python's operators
#: and ``math`` on sizes) and the built-ins.
_MODULES = ("torch", "_operator", "operator", "math")
_BUILTINS = (getattr, len)


def _foreign(node: torch.fx.Node) -> str:
    """Why a node made in a call taken whole is no operation of torch's own (a wrapped
    function of the user's, an attribute past a tensor's metadata); ``""`` if it is one."""
    target = node.target
    if node.op == "call_function" and target is getattr:
        attribute = node.args[1] if len(node.args) > 1 else None
        if attribute not in _ATTRIBUTES:
            return f"reads the attribute {attribute!r}, which may reach past its argument"
        return ""
    if node.op == "call_function" and target not in _BUILTINS:
        module = str(getattr(target, "__module__", None) or "")
        if not (module in _MODULES or module.startswith("torch.")):
            name = getattr(target, "__name__", target)
            return (f"calls {name}(), a function torch.fx does not follow, which may read "
                    "or write what the graph does not show")
    return ""


def _why(call: WholeCall, signal: set[torch.fx.Node], markers: dict[torch.fx.Node, str],
         refused: Callable[[torch.fx.Node], str]) -> str:
    """Why ``call`` cannot be taken whole; ``""`` where it can. ``signal``: the nodes
    computed from the input; ``markers``: every call's marker, with its module's name;
    ``refused(node)``: why the bound refuses a node whatever it reads."""
    if call.marker is None:  # (a call on a constant: a constant)
        return ""
    inside = call.members
    if call.output is None or call.output not in inside:
        return ("returns no single value it computes (a tuple, its argument, or a value "
                "made outside it)")
    members = set(inside)
    for node in inside:
        for read in node.all_input_nodes:
            if read not in members and read is not call.marker and read in signal:
                shown = str(read.args[0]) if read in markers else read.name  # (another
                # call's argument: named as the forward names it)
                return (f"reads {shown!r}, a value computed from the input other than "
                        "its argument (a tensor another module left in an attribute or a "
                        "global)")
        if node is not call.output and node in signal and any(
                u not in members for u in node.users):
            return (f"leaves {node.name!r}, a value computed from the input, to the rest of "
                    "the forward (in an attribute or a global another module reads)")
        if node.op == "call_module" or node in markers:  # (its calls counted as its own)
            module = str(node.target) if node.op == "call_module" else markers[node]
            return f"calls the model's module {module!r}"
        why = refused(node)
        if why:
            return f"makes node {node.name!r}, which {why}"
        why = _foreign(node)
        if why:
            return f"makes node {node.name!r}, which {why}"
        if node.op == "call_function" and is_sample_norm(node.target):
            return (f"calls {getattr(node.target, '__name__', node.target)}(), which "
                    "normalizes each sample by its own statistics (lipschitz_constants="
                    f"{{{node.name!r}: L}} gives that call a constant, checked against its "
                    "slope)")
    if any(u not in members for u in call.marker.users):
        return ("leaves its argument to the rest of the forward (in an attribute or a global "
                "another module reads)")
    return ""


def _differ(calls: list[WholeCall]) -> str:
    """Why the calls of one module are no one map (``""`` if they are): one runs other
    operations, or on other constants, than the first (a review: a counter the forward
    increments, ``self.k += 1; return tanh(x) * self.k``, traced as 1, 2, 3)."""
    traced = [call for call in calls if call.marker is not None]
    codes = [_code(call) for call in traced]
    for call, code in zip(traced[1:], codes[1:]):
        if code != codes[0]:
            return (f"runs other operations, or on other constants, in its call {call.k} "
                    f"than in its call {traced[0].k} (its state changes between calls: no "
                    "one map)")
    return ""


def _code(call: WholeCall) -> list[tuple]:
    """What a call's nodes compute, comparable between calls: each operation with its
    arguments, a node of the call by its place, its argument as such, a module's tensor by
    its name (torch.fx reads it once, in the first call that reads it), any other node by
    its name."""
    assert call.marker is not None
    marker = call.marker
    places = {n: i for i, n in enumerate(n for n in call.members if n.op != "get_attr")}

    def key(n: torch.fx.Node) -> Any:
        if n is marker:
            return ("argument",)
        if n.op == "get_attr":
            return ("tensor", n.target)
        return ("node", places[n]) if n in places else ("outside", n.name)

    return [(n.op, n.target, torch.fx.node.map_arg(n.args, key),
             torch.fx.node.map_arg(n.kwargs, key)) for n in call.members if n.op != "get_attr"]
