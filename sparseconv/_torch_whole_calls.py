"""An eager model's calls of modules of the user's classes given their Lipschitz constants,
made whole in its torch.fx graph for the bound over it.

The tracer follows such a module's forward (:class:`WholeCall`, recorded by
:class:`sparseconv._torch_sizes_tracer.SizesTracer`), its argument passed through a marker
node of its own (:func:`argument`), so that the graph shows what the call reads: the
argument is then no value another module can hand it (an attribute set to the same tensor,
a global) unseen. :func:`collapse` replaces each call by one call of the module, where
every call of it reads its argument and constants alone (no other value computed from the
input), leaves nothing of the signal to the rest of the forward but its output, and calls no
module, no random draw, no memory read past its version counter and no normalization by a
sample's own statistics (whose slope the walk checks against a constant given for its node).
A module any of whose calls fails this is followed instead, and said so (two reviews found a
module called whole, untraced, reading what another module left: bounds 1e4 below the
truth)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch
import torch.fx

from sparseconv._torch_activations import is_sample_norm

__all__ = ["WholeCall", "argument", "collapse"]


def argument(x: torch.Tensor) -> torch.Tensor:
    """The argument of a module's call that the graph may make whole: ``x`` itself (a node
    of its own in the traced graph, which :func:`collapse` removes)."""
    return x


@dataclasses.dataclass
class WholeCall:
    """One call of a module the graph may make whole: the module's qualified ``name``, the
    ``key`` under which torch.fx records the call in a node's ``nn_module_stack``
    (``"act@1"``, its second call), the ``marker`` node of its argument, the ``members``,
    the nodes its forward made (all those traced after the marker), its ``output`` node
    (None where it returns no node), and why it cannot be made whole, as far as the call's
    arguments say."""

    name: str
    key: str
    marker: torch.fx.Node | None = None
    members: list[torch.fx.Node] = dataclasses.field(default_factory=list)
    output: torch.fx.Node | None = None
    why: str = ""


def collapse(graph: torch.fx.Graph, calls: Iterable[WholeCall],
             refused: Callable[[torch.fx.Node], str]) -> dict[str, str]:
    """Replace in ``graph`` every call of each module of ``calls`` by one ``call_module``
    node on its argument, where each call of that module can be (the module docstring);
    return the others' names, each with why it is followed (their markers removed).
    ``refused(node)``: why the bound refuses a node whatever it reads (a random draw...)."""
    by_name: dict[str, list[WholeCall]] = {}
    for call in calls:
        by_name.setdefault(call.name, []).append(call)
    signal = _from_the_input(graph)
    markers = {call.marker: call.name for call in calls if call.marker is not None}
    followed: dict[str, str] = {}
    for name, its in by_name.items():  # (every call judged before the graph changes)
        why = next((w for w in (call.why or _why(call, signal, markers, refused)
                                for call in its) if w), "")
        if why:
            followed[name] = why
    for call in (call for its in by_name.values() for call in its):
        if call.name in followed:
            _unmark(graph, call)
        else:
            _replace(graph, call)
    graph.lint()
    return followed


def _from_the_input(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """The nodes computed from the graph's inputs (every node that reads one, or reads a
    node that does)."""
    found: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in found for a in node.all_input_nodes):
            found.add(node)
    return found


def _why(call: WholeCall, signal: set[torch.fx.Node], markers: dict[torch.fx.Node, str],
         refused: Callable[[torch.fx.Node], str]) -> str:
    """Why ``call`` cannot be made whole; ``""`` where it can. ``signal``: the nodes
    computed from the input; ``markers``: every call's marker, with its module's name;
    ``refused(node)``: why the bound refuses a node whatever it reads."""
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
        if node.op == "call_function" and is_sample_norm(node.target):
            return (f"calls {getattr(node.target, '__name__', node.target)}(), which "
                    "normalizes each sample by its own statistics (lipschitz_constants="
                    f"{{{node.name!r}: L}} gives that call a constant, checked against its "
                    "slope)")
    if call.marker is not None and any(u not in members for u in call.marker.users):
        return ("leaves its argument to the rest of the forward (in an attribute or a global "
                "another module reads)")
    return ""


def _unmark(graph: torch.fx.Graph, call: WholeCall) -> None:
    """Remove a call's marker: its forward's nodes read its argument itself."""
    if call.marker is not None:
        call.marker.replace_all_uses_with(call.marker.args[0])  # type: ignore[arg-type]
        graph.erase_node(call.marker)


def _replace(graph: torch.fx.Graph, call: WholeCall) -> None:
    """Replace the nodes a call's forward made (but the constants that others read too) by
    one ``call_module`` node on its argument."""
    assert call.marker is not None and call.output is not None  # (:func:`_why` passed)
    with graph.inserting_before(call.output):
        whole = graph.call_module(call.name, (call.marker.args[0],))
    stack = call.output.meta.get("nn_module_stack") or {}  # (the caller's, and the call's)
    if call.key in stack:
        keys = list(stack)
        whole.meta["nn_module_stack"] = {k: stack[k] for k in keys[:keys.index(call.key) + 1]}
    call.output.replace_all_uses_with(whole)
    for node in reversed(call.members):
        if not node.users:
            graph.erase_node(node)
    graph.erase_node(call.marker)
