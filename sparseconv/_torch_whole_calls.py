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
the signal to the rest of the forward but its output, and runs torch's own operations
alone (no module of the model, no function torch.fx cannot see into, no tensor attribute
past its metadata and views, such as ``x._base``), none of which writes in place, draws,
reads memory no one set or past its version counter, or normalizes by a sample's own
statistics (whose slope
the walk checks against a constant given for its node); and where, traced alone from the
model's state on the call's argument, the module runs the same operations on the same
constants, compared by their bits (:func:`code`), and, run alone on a contiguous copy of
that argument, gives the call's output (both checked by the bound after a run: a module
whose state the forward changes around or between its calls is not the map its constant is
of). A module any of whose calls fails this is followed instead, and said so (two reviews
found a module called whole, untraced, reading what another module left: bounds 1e4 below
the truth; a third, a write into a tensor attribute, a forward that traces otherwise than it
runs, a wrapped function reading a global, a per-call counter and ``x._base``: bounds 3-12
times below; a fourth, a custom operator, ``Tensor.apply_``, a scale set around the call:
7-90 times; a fifth, ``-0.0 == 0.0`` and reads of the memory's layout: 4-30 times; a sixth,
``x.contiguous().zero_()``, writing into the argument or a copy as its layout decides: 99
times)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.fx

from sparseconv._torch_activations import is_sample_norm
from sparseconv._torch_calls import LAYOUT_READS, function_name

__all__ = ["WholeCall", "WholeUnit", "argument", "attribute", "code", "whole_units"]


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
    its argument's ``marker`` node, the ``members``, the nodes its forward made (the
    output among them), which the walk does not bound one by one, and their :func:`code`."""

    name: str
    k: int
    marker: torch.fx.Node
    members: frozenset[torch.fx.Node]
    code: tuple


def whole_units(graph: torch.fx.Graph, calls: Iterable[WholeCall], root: torch.nn.Module,
                refused: Callable[[torch.fx.Node], str],
                ) -> tuple[dict[torch.fx.Node, WholeUnit], dict[str, str]]:
    """The calls of ``calls`` taken whole, by their output node, where each call of their
    module can be (the module docstring); and the other modules' names, each with why it is
    followed (their calls' markers removed from ``graph``). ``root``: the traced model (its
    ``get_attr`` nodes' objects); ``refused(node)``: why the bound refuses a node whatever it
    reads (a random draw...)."""

    def tensor(node: torch.fx.Node) -> bool:
        return isinstance(attribute(root, node), torch.Tensor)

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
        why = next((w for w in (call.why or _why(call, signal, markers, refused, tensor)
                                for call in its) if w), "")
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
                                           frozenset(call.members), code(
                                               call.members, call.marker, call.output,
                                               functools.partial(attribute, root)))
    return units, followed


def _from_the_input(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """The nodes computed from the graph's inputs (every node that reads one, or reads a
    node that does)."""
    found: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in found for a in node.all_input_nodes):
            found.add(node)
    return found


#: The attributes a call taken whole may read off a tensor: its metadata (not its memory's
#: layout nor its autograd state, a fourth review: ``tanh(x) * (1 + 99 * x.requires_grad)``),
#: and views of it; and the fields of torch's tuples of tensors.
_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "layout", "is_cuda", "T", "mT",
                         "H", "mH", "real", "imag", "values", "indices"})  # (the last two:
# torch's tuples, sort's and max's: a GroupSort's ``x.sort(dim=2).values``, a trial)
#: The modules whose functions a call taken whole may call: torch's operations (not a custom
#: operator of ``torch.library``, nor ``torch.save``, a fourth review), Python's operators
#: and ``math`` on sizes; and the built-ins.
_MODULES = frozenset({"torch", "torch.functional", "torch.nn.functional", "torch._C._nn",
                      "torch._C._special", "torch.special", "torch._C._linalg", "torch.linalg",
                      "torch._C._fft", "torch.fft", "torch._VF", "_operator", "operator",
                      "math"})
_BUILTINS = (getattr, len)
#: The tensor methods a call taken whole may not call: those that run a Python function of
#: the user's (``apply_``: a fourth review), read the memory's layout, or change autograd.
_METHODS = LAYOUT_READS | {"apply_", "map_", "map2_", "is_inference", "register_hook",
                          "retain_grad", "requires_grad_", "backward"}


def _foreign(node: torch.fx.Node, tensor: Callable[[torch.fx.Node], bool]) -> str:
    """Why a node made in a call taken whole is no operation of torch's own on tensors' values
    (a wrapped function of the user's, an attribute past a tensor's metadata, a method taking
    a Python function, a read of the memory's layout); ``""`` if it is one. ``tensor(node)``:
    whether a ``get_attr`` node is a tensor (torch.fx makes one of any object that says how,
    a callable among them)."""
    target = node.target
    if node.op == "get_attr" and not tensor(node):
        return "holds an object that is no tensor (torch.fx carries any that says how)"
    if node.op == "call_function" and target is getattr:
        attribute = node.args[1] if len(node.args) > 1 else None
        if attribute not in _ATTRIBUTES:
            return (f"reads the attribute {attribute!r}, which may reach past its argument's "
                    "values")
        return ""
    if node.op == "call_function" and target not in _BUILTINS and str(
            getattr(target, "__module__", None) or "") not in _MODULES:
        return (f"calls {function_name(target)}(), which is none of torch's "
                "operations: it may read or write what the graph does not show")
    if node.op == "call_method" and target in _METHODS:
        return f"calls .{target}(), which may compute what its argument's values do not"
    name = function_name(target)
    if node.op not in ("call_method", "call_function"):
        return ""
    if name.startswith("_") or "as_strided" in name:  # (a fifth review: torch.
        # _debug_has_internal_overlap, _reshape_alias_copy, as_strided_copy read the layout)
        return f"calls {name}(), which may read its argument's memory past its values"
    if name.endswith("_") or node.kwargs.get("inplace") is True or "out" in node.kwargs:
        # (a sixth review: x.contiguous().zero_() writes into x or into a copy as x's layout
        # decides, a map of values on a contiguous argument alone)
        return (f"calls {name}() in place, which writes into its argument or a copy of it as "
                "its memory's layout decides")
    if name in _DRAWS and not _outside_training(node):
        return f"calls {name}(), which draws random numbers in training"
    return ""


#: The functions that draw random numbers where ``training`` is not False (dropouts, RReLU),
#: or always (Gumbel-softmax); with their ``training`` argument's position (None: none).
_DRAWS = {"dropout": 2, "alpha_dropout": 2, "feature_alpha_dropout": 2, "dropout1d": 2,
          "dropout2d": 2, "dropout3d": 2, "rrelu": 3, "gumbel_softmax": None}


def _outside_training(node: torch.fx.Node) -> bool:
    """Whether a call of :data:`_DRAWS` is given ``training=False`` (by keyword or in its
    place; a method's arguments count its tensor first)."""
    at = _DRAWS.get(function_name(node.target))
    if at is None:
        return False
    training = node.kwargs.get("training", node.args[at] if len(node.args) > at else True)
    return training is False


def _why(call: WholeCall, signal: set[torch.fx.Node], markers: dict[torch.fx.Node, str],
         refused: Callable[[torch.fx.Node], str], tensor: Callable[[torch.fx.Node], bool],
         ) -> str:
    """Why ``call`` cannot be taken whole; ``""`` where it can. ``signal``: the nodes
    computed from the input; ``markers``: every call's marker, with its module's name;
    ``refused(node)``: why the bound refuses a node whatever it reads; ``tensor(node)``:
    whether a ``get_attr`` node is a tensor."""
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
        for read in (node, *(r for r in node.all_input_nodes if r.op == "get_attr")):
            why = _foreign(read, tensor)
            if why:
                return f"runs node {read.name!r}, which {why}"
        if node.op == "call_function" and is_sample_norm(node.target):
            return (f"calls {function_name(node.target)}(), which "
                    "normalizes each sample by its own statistics (lipschitz_constants="
                    f"{{{node.name!r}: L}} gives that call a constant, checked against its "
                    "slope)")
    if any(u not in members for u in call.marker.users):
        return ("leaves its argument to the rest of the forward (in an attribute or a global "
                "another module reads)")
    return ""


def attribute(root: torch.nn.Module, node: torch.fx.Node) -> Any:
    """The object a ``get_attr`` node of ``root``'s graph reads (None if there is none)."""
    value: Any = root
    for part in str(node.target).split("."):
        value = getattr(value, part, None)
    return value


def code(nodes: Iterable[torch.fx.Node], argument: torch.fx.Node, output: torch.fx.Node,
         resolve: Callable[[torch.fx.Node], Any]) -> tuple:
    """What the traced ``nodes`` compute from ``argument`` (a marker, or a placeholder) as
    ``output``, comparable between traces: each operation with its arguments, a node among
    them by its place, the argument as such, a ``get_attr`` node by the value of the tensor
    it reads (``resolve(node)``: torch.fx reads a module's tensor once, in the first call
    that reads it, and names a tensor constant anew in each trace), any other node by its
    name, and every other value by its exact type and value (a fifth review: ``-0.0 ==
    0.0``, ``True == 1`` and a float whose ``__eq__`` says yes made two scales one)."""
    listed = [n for n in nodes if n.op not in ("get_attr", "placeholder", "output")]
    places = {n: i for i, n in enumerate(listed)}

    def key(value: Any) -> Any:
        if isinstance(value, torch.fx.Node):
            if value is argument:
                return ("argument",)
            if value.op == "get_attr":
                return _tensor_key(resolve(value))
            return ("node", places[value]) if value in places else ("outside", value.name)
        return _value_key(value, key)

    return (*((n.op, n.target, key(n.args), key(n.kwargs)) for n in listed),
            ("output", key(output)))


def _tensor_key(value: Any) -> tuple:
    """A tensor by its exact values (its dtype, shape and bytes); any other object by its
    identity."""
    if not isinstance(value, torch.Tensor):
        return ("object", id(value))
    data = value.detach().to("cpu").contiguous()
    return ("tensor", data.dtype, tuple(data.shape),
            bytes(data.reshape(-1).view(torch.uint8).numpy()))


#: The types of the values :func:`_value_key` reads by their value (the exact type: not a
#: subclass, whose ``__eq__`` may say anything).
_PLAIN = (type(None), bool, int, str, torch.dtype, torch.device, torch.layout,
          torch.memory_format)


def _value_key(value: Any, key: Callable[[Any], Any]) -> Any:
    """A traced call's argument that is no node, by its exact type and value: a float by
    its bits (``-0.0`` is not ``0.0``; a NaN is itself), a tuple, list, dict or slice by its
    parts (``key`` for those); any other object by its identity."""
    kind = type(value)
    if kind is float:
        return ("float", value.hex())
    if kind in _PLAIN:
        return (kind.__name__, value)
    if kind in (tuple, list) or isinstance(value, (torch.fx.immutable_collections.immutable_list,
                                                   torch.Size)):
        return (kind.__name__, tuple(key(v) for v in value))
    if kind is dict or isinstance(value, torch.fx.immutable_collections.immutable_dict):
        return ("dict", tuple((k, key(v)) for k, v in value.items()))
    if kind is slice:
        return ("slice", key(value.start), key(value.stop), key(value.step))
    return ("object", kind, id(value))
