"""A linear network's graph, traced by torch.fx, as a list of linear ops.

:func:`_build_graph` traces the model (every module :mod:`sparseconv.torch` translates kept
whole), probes every node's shape on one forward pass, and turns each dependent node into an
``_Op`` (:mod:`sparseconv._torch_graph_ops`): its forward on batched arrays and the adjoint
of each input. :mod:`sparseconv._torch_network` runs them as one operator. The calls it knows
are in :mod:`sparseconv._torch_calls`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import operator
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata, _extract_tensor_metadata

from sparseconv._memory import MatrixTooLargeError, reworded
from sparseconv._torch_calls import (
    _AUGMENTED,
    reads_metadata,
)
from sparseconv._torch_graph_ops import _BATCH, _describe, _GraphBuilder, _Op
from sparseconv._torch_graph_sizes import (
    _direct_batch,
    _integers,
    _shape_item,
    _size_number,
    _tainted_sizes,
    read_by_the_call,
)
from sparseconv._torch_kinds import (
    _DROPOUT,
    _INSTANCE_NORMS,
    _RUNNING_NORMS,
    _SAMPLE_NORMS,
    _SUPPORTED,
    _refuse,
    instance_method_reason,
    is_torch_class,
)
from sparseconv._torch_patches import replaced_functions
from sparseconv._torch_probe import (
    UNTRACKED,
    UntraceableDefault,
    dispatched,
    drawn_or_unset,
    error_line,
    first_write,
    forward_failed,
    fx_trace,
    module_tensors,
    probe_input,
    replaced_forward,
    version,
)
from sparseconv._torch_sizes_tracer import SizesTracer
from sparseconv._torch_state import restored_state


class _Tracer(SizesTracer):
    """torch.fx's tracer (which follows loops over sizes), with every module sparseconv.torch
    translates kept as a leaf; a subclass of one with a forward of its own (BiT's
    weight-standardised ``StdConv2d``, whose forward computes its weight: a new user's trial
    found it refused here, where the bound over the graph follows it) is traced through, as
    the bound's tracer does."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (isinstance(m, _SUPPORTED) and is_torch_class(m)) or super().is_leaf_module(
            m, module_qualified_name)


#: Tensor methods whose result reads nothing of the tensor they are called on but its dtype
#: and device (``x.new_tensor(3.0)``, ``x.new_ones(4)``): constants, where no other argument
#: is computed from the signal (``new_empty``'s values are whatever memory held: not one).
_NEW_TENSOR_METHODS = frozenset({"new_tensor", "new_ones", "new_zeros", "new_full"})

#: Functions that make a tensor of their tensor's shape, dtype and device, their values
#: their other arguments' (``torch.ones_like(x)``: a new user's trial found ``x +
#: torch.ones_like(x)`` refused as a call of unknown constant).
_LIKE_FUNCTIONS = frozenset({torch.zeros_like, torch.ones_like, torch.full_like})


#: What a tensor tells of itself besides its values: ``x.dtype``, ``x.device``.
_METADATA = frozenset({"dtype", "device"})

#: Casts of their tensor to another's dtype (and device): ``w.type_as(x)``, ``w.to(x)``,
#: ``w.to(x.dtype)``, which read nothing of ``x`` but those.
_CAST_METHODS = frozenset({"to", "type_as",
                           # (and to its shape: a review found ones_like(y).view_as(y), a
                           # constant, crash the bound's walk)
                           "view_as", "reshape_as", "expand_as"})


def _a_tensor(arg: Any, value: Callable[[torch.fx.Node], Any] | None) -> bool:
    """Whether ``arg`` is a node whose traced value is one tensor: ``value(arg)``, or where
    no ``value`` is given, torch.fx's shape propagation's metadata (a tuple or dict of
    tensors has other)."""
    if not isinstance(arg, torch.fx.Node):
        return False
    if value is not None:
        return isinstance(value(arg), torch.Tensor)
    return isinstance(arg.meta.get("tensor_meta"), TensorMetadata)


def makes_a_constant(node: torch.fx.Node, signal: Callable[[torch.fx.Node], bool],
                     value: Callable[[torch.fx.Node], Any] | None = None) -> bool:
    """Whether ``node`` is such a call (a new user's trial: ``x * x.new_tensor(3.0)`` was
    refused as mixing the batch axis into the sample) or one of :data:`_LIKE_FUNCTIONS` on a
    tensor, none of whose other arguments is a node for which ``signal`` holds; or a read of
    the signal's dtype or device (``x.dtype``), or a cast of a tensor that is no signal to
    them (``w.to(x.dtype)``, ``w.type_as(x)``: a review found ``x @ w.to(x.dtype)`` refused
    as mixing the batch axis), each of a value that is a tensor (:func:`_a_tensor`, by
    ``value``: the nodes' traced values)."""
    # (read off a tensor only, by its traced value: a review read .dtype off a namedtuple of
    # the signal's values, and w.to(x) of an object of its own can compute anything)
    if node.op == "call_function" and node.target is getattr and len(node.args) == 2 and (
            node.args[1] in _METADATA) and _a_tensor(node.args[0], value):
        return True
    first = node.args[0] if node.args else None
    if node.op == "call_method" and node.target in _CAST_METHODS and isinstance(
            first, torch.fx.Node) and _a_tensor(first, value) and not signal(first):
        return True
    like = node.op == "call_function" and node.target in _LIKE_FUNCTIONS and _a_tensor(
        first, value)
    if not like and (node.op != "call_method" or node.target not in _NEW_TENSOR_METHODS):
        return False
    others: list[torch.fx.Node] = []  # (``y.new_tensor(y)`` reads y's values: its argument)
    torch.fx.node.map_arg((node.args[1:], node.kwargs), others.append)
    return not any(signal(n) for n in others)


#: What :func:`tensor_versions` keeps of each tensor: itself, its version, its bytes' CRC.
Versions = tuple[tuple[torch.Tensor, "int | None", int], ...]


def tensor_versions(value: Any) -> Versions:
    """Every tensor in a node's value (itself, or in a tuple, list or dict of them, nested)
    with its version counter and the digest of its bytes now: a change in place to any of
    them after the node ran shows (a review: the views ``y.chunk(2)`` returns, held in a
    tuple, were read after ``y.mul_(5)`` as they were before it, and a network bound came
    out below the network's constant). The digest sees what the counter does not: a tensor
    that shares another's memory but not its counter (``torch.from_numpy(y.numpy())``, or
    ``set_`` on its storage: a second review's bound of 1.07 for a constant of 3.29)."""
    return tuple((t, version(t), _digest(t)) for t in output_leaves(value) or ()
                 if isinstance(t, torch.Tensor))


def _digest(tensor: torch.Tensor) -> int:
    """The CRC-32 of the tensor's bytes (a change's chance to keep it: 2**-32), -1 where
    there are none to read (a meta tensor). (BLAKE2 took 4.5 times as long: a second more
    for ResNet-18 at 224x224.)"""
    if tensor.is_meta or tensor.layout != torch.strided or tensor.is_quantized:
        return -1
    # (clone: contiguous() keeps a size-1 axis of stride 0, a 0-dim parameter expanded to a
    # batch of one, which view() then refuses: a review)
    data = tensor.detach().cpu().clone(memory_format=torch.contiguous_format).reshape(-1)
    return zlib.crc32(data.view(torch.uint8).numpy().data)


def changed(versions: Versions) -> bool:
    """Whether any tensor of :func:`tensor_versions` changed in place since, by its version
    counter (an inference tensor, whose changes nothing counts, may have)."""
    return any(was is None or version(tensor) != was for tensor, was, _ in versions)


def rewritten(versions: Versions) -> bool:
    """Whether any tensor of :func:`tensor_versions` holds other bytes than it did, whatever
    its version counter says."""
    return any(_digest(tensor) != digest for tensor, _, digest in versions)


def untracked(versions: Versions) -> bool:
    """Whether a tensor of :func:`tensor_versions` is an inference tensor, with no version."""
    return any(was is None for _, was, _ in versions)


def _inplace_argument(node: torch.fx.Node) -> Any:
    """A function call's ``inplace`` argument, by keyword or by position (``F.relu(y, True)``,
    which a trial found read as out of place), or None."""
    try:
        bound = inspect.signature(node.target).bind_partial(  # type: ignore[arg-type]
            *node.args, **node.kwargs)  # (a call_function's target is a callable)
    except (TypeError, ValueError):  # a builtin without a signature, or arguments it rejects
        return node.kwargs.get("inplace")
    return bound.arguments.get("inplace")


#: torch's own elementwise functions and modules that always return new memory, known by
#: identity (a user's function or module can pass for torch's by its ``__module__``, not be
#: it); those that a caller may give a constant (:func:`returns_new_memory`).
# (and the normalizations by each sample's statistics, whose constants users give: a new
# user's trial found CycleGAN's generator, an InstanceNorm2d then nn.ReLU(True), refused)
_NEW_MEMORY_FUNCTIONS = frozenset({
    F.softplus, F.hardshrink, F.threshold, torch.sin, torch.cos, torch.atan, torch.arctan,
    torch.erf, torch.erfc, torch.exp, torch.expm1, torch.log1p, torch.sinh, torch.asinh,
    *(getattr(F, name) for name in ("instance_norm", "group_norm", "layer_norm", "rms_norm",
                                    "local_response_norm") if hasattr(F, name))})
_NEW_MEMORY_MODULES = (nn.Softplus, nn.Hardshrink, nn.Threshold, *_INSTANCE_NORMS,
                       *_SAMPLE_NORMS)


def returns_new_memory(node: torch.fx.Node, root: nn.Module) -> bool:
    """Whether the call ``node`` is one of torch's own elementwise functions or modules,
    called out of place (no ``inplace=True``, no ``out=``): its result is new memory with a
    version counter of its own, so a later change in place of its input or its result shows
    in the graph (a call given its constant that is none of these may return its input's
    memory: refused then)."""
    if node.op == "call_function":
        try:
            known = node.target in _NEW_MEMORY_FUNCTIONS
        except TypeError:  # an unhashable target
            return False
        return known and _inplace_argument(node) is not True and "out" not in node.kwargs
    if node.op == "call_module":
        module = root.get_submodule(str(node.target))
        return (type(module) in _NEW_MEMORY_MODULES
                and getattr(module, "inplace", False) is not True)
    return False


def _in_place_base(node: torch.fx.Node, root: nn.Module) -> torch.fx.Node | None:
    """The node whose tensor ``node`` changes in place and returns (``y.add_(z)``,
    ``F.relu_(y)``, ``torch.relu_(y)``, ``F.relu(y, inplace=True)`` or ``F.relu(y, True)``,
    ``nn.ReLU(inplace=True)(y)``), or None. A trailing ``_`` marks a method, or one of
    torch's functions, as in place; a user's own function so named need not be (a review:
    a wrapped ``halve_`` that computed out of place was read as in place)."""
    if node.op in ("call_method", "call_function"):
        name = getattr(node.target, "__name__", str(node.target))
        torchs = node.op == "call_method" or str(
            getattr(node.target, "__module__", "")).split(".")[0] == "torch"
        in_place = (torchs and name.endswith("_") and not name.startswith("_")) or (
            node.op == "call_function" and _inplace_argument(node) is True)
    elif node.op == "call_module":
        in_place = getattr(root.get_submodule(str(node.target)), "inplace", False) is True
    else:
        in_place = False
    base = node.args[0] if node.args else node.kwargs.get("input")
    return base if in_place and isinstance(base, torch.fx.Node) else None


def follow_in_place(graph: torch.fx.Graph, root: nn.Module) -> None:
    """Make every node that reads a tensor after an in-place call changed it read that call's
    node, whose value it is: torch.fx records ``y.add_(z); return y`` as a graph whose output
    is ``y`` before the change (a new user's trial: refused, the message blaming a ``kept =
    y`` that was not there). Python names that alias ``y`` (``kept = y``) are its node too.
    What this cannot see stays refused by :func:`_probe`: a view of ``y`` read after the
    change, and ``y += z``, which torch.fx records as ``y + z``; and a change through
    ``y.data``, which even the version counters do not see, by the refusal of ``.data``
    itself (:func:`sparseconv._torch_graph_bound._untracked_write`; ``network_operator``
    maps no such call)."""
    latest: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in graph.nodes:
        for read in node.all_input_nodes:
            if latest.get(read, read) is not read:
                node.replace_input_with(read, latest[read])
        base = _in_place_base(node, root)
        if base is not None:
            for value, now in list(latest.items()):
                if now is base:
                    latest[value] = node
            latest[base] = node


def _trace_graph(model: nn.Module, shape: tuple[int, ...]):
    """``(graph module, root name)``: the model traced by torch.fx (a leaf module wrapped) on
    inputs of ``shape``, reads after an in-place change reading its node
    (:func:`follow_in_place`)."""
    leaf = next(model.children(), None) is None
    root = nn.Sequential(model) if leaf else model
    try:
        graph = fx_trace(root, _Tracer(lambda: probe_input(root, shape, _BATCH, random=False)))
    except MatrixTooLargeError:  # (the probe of a loop over sizes)
        raise
    except UntraceableDefault as exc:
        raise TypeError(f"network_operator: {exc}") from exc
    except Exception as exc:  # fx raises many kinds: TraceError, TypeError, RuntimeError...
        # (the advice only where torch.fx met a branch: a new user's trial read it after
        # "self argument cannot be part of *args expansion", of a decorator)
        advice = ("; its forward must not branch on tensor values or call code torch.fx "
                  "cannot see through") if isinstance(exc, torch.fx.proxy.TraceError) else ""
        raise TypeError(f"network_operator: torch.fx cannot trace {type(model).__name__} "
                        f"({type(exc).__name__}: {error_line(exc)}){advice}") from exc
    follow_in_place(graph, root)
    return torch.fx.GraphModule(root, graph), leaf


def _probe(gm, shape, model: nn.Module) -> dict:
    """Every node's value on one forward pass of a batch of ``_BATCH`` zeros.

    A node that still reads a tensor changed in place after it was made (a view of ``y``
    changed through ``y``, what :func:`follow_in_place` does not redirect) is refused: the
    graph's nodes are values, so it would read the value before the change.
    Views share their base's version counter, so a change through any alias shows, whatever
    the values; an inference tensor has none, and a node that reads one is refused too, as
    is a value whose bytes changed (its memory shared past the counter). (``y += z`` is no
    in-place call in
    torch.fx's graph but ``y + z``, whose value nothing reads: :func:`_build_graph` refuses
    that.)"""
    values: dict = {}
    versions: dict = {}
    stale: list = []  # (the node, the node it read changed), raised outside torch's
    # interpreter, which appends its own context to an error raised in run_node

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            for a in n.all_input_nodes:
                if changed(versions.get(a, ())) or rewritten(versions.get(a, ())):
                    stale.append((n, a))
                    raise _Stale
            result = super().run_node(n)
            values[n] = result
            versions[n] = tensor_versions(result)
            return result

    try:
        with torch.no_grad(), restored_state(model):
            Recorder(gm).run(probe_input(gm, shape, _BATCH, random=False))
    except _Stale:
        node, read = stale[0]
        reader = "the model's output" if node.op == "output" else _describe(node)
        if untracked(versions[read]):  # (a forward that enters torch.inference_mode())
            raise TypeError(f"network_operator: {reader} reads node {read.name!r}, whose value "
                            f"is {UNTRACKED}: run the model's forward outside inference mode "
                            "(and make its parameters outside it)") from None
        raise TypeError(f"network_operator: {reader} reads the value of node {read.name!r} "
                        "after an in-place operation changed it (a view v = y[...] read after "
                        "y.add_(z), or a change through a view), which torch.fx's graph "
                        "cannot follow: it would read the value unchanged (make the change "
                        "out of place: y = y + z)") from None
    except MatrixTooLargeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a forward raises anything (a new user's trial:
        # forward(self, batch) reading batch["image"] came out as torch.fx's IndexError,
        # with its graph dump, where trace said the forward failed on the probe)
        raise forward_failed(model, shape, exc, batch=_BATCH) from exc
    return values


class _Stale(Exception):
    """:func:`_probe`'s signal that a node read a tensor changed in place after it was made."""


def output_leaves(value: Any) -> list | None:
    """The values in a model's output (or its graph's output node's argument): itself, or
    those of a tuple, list or dict of them, in order, nested; None for anything else."""
    if isinstance(value, (tuple, list)):
        found: list = []
        for part in value:
            more = output_leaves(part)
            if more is None:
                return None
            found += more
        return found
    if isinstance(value, dict):
        return output_leaves(list(value.values()))
    return [value]


def builds_namedtuple(node: Any) -> bool:
    """Whether ``node`` is torch.fx's record of a namedtuple made in ``forward`` (a call of
    its class), whose fields are its arguments."""
    return (isinstance(node, torch.fx.Node) and node.op == "call_function"
            and isinstance(node.target, type) and issubclass(node.target, tuple)
            and hasattr(node.target, "_fields"))


def graph_outputs(result: Any) -> list | None:
    """:func:`output_leaves` of a graph's output, a namedtuple's fields in its place."""
    found = output_leaves(result)
    if found is None:
        return None
    expanded: list = []
    for value in found:
        if builds_namedtuple(value):
            more = graph_outputs([*value.args, *value.kwargs.values()])
            if more is None:
                return None
            expanded += more
        else:
            expanded.append(value)
    return expanded


def _outputs_op(builder: Any, nodes: list) -> _Op:
    """Several outputs as one: each flattened, concatenated in order (``(k, total)``)."""
    inputs = tuple(builder.index[n] for n in nodes)
    shapes = [builder.ops[i].shape for i in inputs]
    sizes = [math.prod(s) for s in shapes]
    cuts = np.cumsum(sizes)[:-1]

    def forward(xs: list[np.ndarray], affine: bool) -> np.ndarray:
        return np.concatenate([x.reshape(x.shape[0], -1) for x in xs], axis=1)

    def backward(g: np.ndarray) -> list[np.ndarray]:
        return [part.reshape(g.shape[0], *s) for part, s in zip(np.split(g, cuts, axis=1),
                                                                 shapes)]

    return _Op("output", inputs, (sum(sizes),), forward, backward)


#: Functions and methods that return several tensors and are not linear (values and indices,
#: or pairs of statistics), told apart from the splits of the signal.
_NOT_LINEAR_TUPLES = frozenset({
    "max", "min", "sort", "topk", "kthvalue", "mode", "median", "nanmedian", "aminmax",
    "unique", "unique_consecutive", "var_mean", "std_mean", "cummax", "cummin", "frexp",
    "histogram", "slogdet", "qr", "svd", "eig", "eigh", "lu"})


def _target_name(node) -> str:
    """The name of the function or method a node calls (the last part of a qualified one)."""
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    return name.rsplit(".", 1)[-1]


def _checked_probe(gm: torch.fx.GraphModule, shape: tuple[int, ...], model: nn.Module,
                   ) -> dict:
    """:func:`_probe`'s values, after refusing a module in training mode (before the probe
    runs: it would update its statistics) and before refusing an augmented assignment whose
    value nothing reads."""
    nodes = list(gm.graph.nodes)
    for node in nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, (*_RUNNING_NORMS, *_DROPOUT)):
                try:
                    _refuse(module)
                except (TypeError, ValueError) as exc:  # named by where it is in the model
                    raise reworded(exc, f"network_operator: module {node.target!r}: {exc}") \
                        from exc
    values = _probe(gm, shape, model)
    why = dispatched() or replaced_functions()  # a mode, active now, a replaced function,
    # or a subclass in a node's value or a module's own tensors, or a method of torch's
    # class replaced (as for lipschitz_report: the operator is read off torch's functions
    # and modules, which any of these may change on values no probe has)
    for node in nodes:
        module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if why is None and module is not None:
            # (a review: a _compiled_call_impl set by hand, adding an axis from a batch of
            # four on: the operator was off there)
            why = replaced_forward(module) or instance_method_reason(
                module, f"module {node.target!r}")
            held = dispatched(module_tensors(module))
            why = why or (None if held is None else f"{_describe(node)} reads {held}")
        if why is None and node in values:
            held = dispatched(output_leaves(values[node]) or ())
            why = None if held is None else f"{_describe(node)} holds {held}"
    if why is not None:
        raise TypeError(f"network_operator: {why}, which may change what any torch function "
                        "computes: the operator read off the graph need not be the model's")
    dead = [n for n in nodes if n.op == "call_function" and n.target in _AUGMENTED
            and not n.users and isinstance(values[n], torch.Tensor)]
    write = first_write(model, probe_input(model, shape)) if dead else None
    if write is not None:  # torch.fx records `y += z` as `y + z`, which nothing reads where
        # the model reads the changed tensor through another name (kept = y): refused where
        # the forward changes a tensor in place. (An unused module or method call cannot be
        # one: a review found such models refused; nor a sum where nothing is written in
        # place, WaveNet's last residual: a new user's trial found it refused.)
        raise TypeError(f"network_operator: {_describe(dead[0])} computes a value nothing "
                        f"reads, and the forward changes a tensor in place ({write}): an "
                        "in-place change such as y += z after kept = y, which torch.fx "
                        "records as a new value while the model changes kept too, looks the "
                        "same (drop the unused expression if it is one, or write y = y + z)")
    return values


def _batch_first(n: Any, tainted: set) -> bool:
    """Whether a reshape's shape ``n`` keeps the batch first and reads it nowhere else: the
    batch size or a whole shape read as it is (``x.size(0)``, ``x.shape``), a slice of a shape
    from its start (``x.shape[:1]``, ``x.shape[:2]``), or such a tuple followed by sizes that
    do not follow the batch (``x.shape[:1] + (-1,)``: a review found it refused)."""
    if _direct_batch(n):
        return True
    index = n.args[1] if _shape_item(n) is not None else None
    if isinstance(index, slice) and index.start in (None, 0) and index.step in (None, 1) and (
            index.stop is None or type(index.stop) is int and index.stop != 0):
        return True  # (x.shape[:2]: a review found x.shape[:2] + (-1,) refused)
    if isinstance(n, torch.fx.Node) and n.op == "call_function" and n.target is operator.add \
            and len(n.args) == 2:
        rest: list[torch.fx.Node] = []
        torch.fx.node.map_arg(n.args[1], rest.append)
        return _batch_first(n.args[0], tainted) and not any(m in tainted for m in rest)
    return False


def _batch_sized(node: torch.fx.Node, tainted: set, values: dict) -> torch.fx.Node | None:
    """An argument of ``node`` that may follow the batch size (:func:`_tainted_sizes`), but
    the shape of a reshape that keeps the batch first (:func:`_batch_first`: ``x.view(
    x.size(0), -1)``) and what a module does not read (:func:`read_by_the_call`: the batch
    entry of ``output_size=x.size()``); None if there is none. (A review: ``up(h,
    output_size=[7, 7 + b // 4])``, ``F.pad(h, (0, b // 4))`` and ``F.interpolate(h,
    size=[7, 7 + b // 4])``, read at the probe's batch of two, were mapped wrong at batches
    from four on, where the check on batches of one to three saw nothing.)"""
    named: list[torch.fx.Node] = []
    arguments: Any = (node.args, node.kwargs)
    if node.op == "call_module" and node.args and isinstance(values.get(node.args[0]),
                                                              torch.Tensor):
        arguments = (node.args[:1], read_by_the_call(node, values[node.args[0]].ndim))
    torch.fx.node.map_arg(arguments, named.append)
    shape = node.args[1] if len(node.args) > 1 and node.target in (
        "view", "reshape", torch.reshape) else None
    first = shape[0] if isinstance(shape, (tuple, list)) and shape else shape
    kept = {n for n in (shape, first) if isinstance(n, torch.fx.Node) and _batch_first(
        n, tainted)}
    return next((n for n in named if n in tainted and n not in kept), None)


def _translate(builder: _GraphBuilder, nodes: list[torch.fx.Node], values: dict) -> Any:
    """Every node computed from the signal, after the input, translated into ``builder``'s
    ops (a constant, such as a parameter or a size, is left to the nodes that read it); the
    output node's argument, what the model returns."""
    for node in nodes:  # (the ranks _tainted_sizes reads, as torch.fx's ShapeProp keeps them)
        if isinstance(values.get(node), torch.Tensor) and "tensor_meta" not in node.meta:
            node.meta["tensor_meta"] = _extract_tensor_metadata(values[node])
    tainted = _tainted_sizes(nodes[0].graph, {n: v for n, v in values.items()
                                              if _integers(v) or _size_number(v)})
    for node in nodes[1:]:
        why = drawn_or_unset(node, allocations=True)  # (whatever it reads: a constant typed
        if why:  # or sized by the signal is computed on each call, not once when torch.fx
            builder.refuse(node, why)  # traces)
        live = any(a in builder.index for a in node.all_input_nodes) and not \
            makes_a_constant(node, builder.index.__contains__, values.get)
        if node.op == "output":
            return node.args[0]
        if builds_namedtuple(node):
            continue  # its fields are read where it is returned (graph_outputs)
        if live and isinstance(values[node], (tuple, list)) and any(
                isinstance(v, torch.Tensor) for v in values[node]):
            if _target_name(node) in _NOT_LINEAR_TUPLES:  # (a new user's trial: max(dim=1)
                # was said to split the signal)
                builder.refuse(node, "is not linear (it returns values and their indices, or "
                               "statistics, of the signal)")
            builder.refuse(node, "splits the signal into several tensors (split, chunk, unbind "
                           "...), which network_operator does not map; slice it instead "
                           "(x[:, :k])")
        if live and not isinstance(values[node], torch.Tensor) and not reads_metadata(node):
            builder.refuse(node, f"reads the signal's values into a {type(values[node]).__name__}"
                           " (allclose, equal, item, tolist...), which the operator would "
                           "hold as the probe's")
        if not live or not isinstance(values[node], torch.Tensor):
            continue  # a constant: a parameter, a shape, a size computed from them
        if values[node].ndim == 0 or values[node].shape[0] != _BATCH:
            builder.refuse(node, "mixes the batch axis into the sample (the batch must stay "
                           "the first axis)")
        batch_sized = _batch_sized(node, tainted, values)
        if batch_sized is not None:
            builder.refuse(node, f"takes a size computed from the batch size "
                           f"({batch_sized.name!r}): one sample's map would change with the "
                           "batch (the forward is compared on batches of one to three)")
        if not (values[node].is_floating_point() or values[node].is_complex()):
            builder.refuse(node, f"makes the signal {values[node].dtype} (a cast or a view "
                           "to an integer or bool dtype): not linear")
        builder.translate(node)
    return None


def _build_graph(model: nn.Module, shape: tuple[int, ...]) -> tuple[list[_Op], torch.dtype]:
    """The graph's linear ops, and the least precise floating dtype any of its values has on
    the probe (the precision the model computes in: a float64 model may round through
    float32 by ``x.float().double()``)."""
    gm, leaf = _trace_graph(model, shape)
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise TypeError(f"network_operator: {type(model).__name__}.forward takes "
                        f"{len(inputs)} inputs; one is supported")
    values = _checked_probe(gm, shape, model)
    returned = output_leaves(values[nodes[-1]]) if nodes[-1].op == "output" else None
    if any(isinstance(t, torch.Tensor) and t.is_complex() for t in returned or ()):
        raise TypeError(f"network_operator: {type(model).__name__} returns complex values, "
                        "which network_operator does not map (its operator maps the real "
                        "input to a real output)")  # (a review: refused as computing
    # otherwise, "largest difference 0", the imaginary parts left out)
    builder = _GraphBuilder(gm, values)
    builder.index[inputs[0]] = 0
    builder.ops.append(_Op("input", (), shape, lambda xs, affine: xs[0], lambda g: [g]))
    output = _translate(builder, nodes, values)
    results = graph_outputs(output)
    if not results or not all(isinstance(r, torch.fx.Node) and r in builder.index
                              for r in results):
        raise TypeError(f"network_operator: {type(model).__name__} must return a tensor, or a "
                        "tuple, list, dict or namedtuple of tensors, computed from its input, "
                        f"got {output!r}")
    if results == [output]:  # one tensor
        ops = builder.ops[:builder.index[output] + 1]
    else:  # several outputs: the operator to all of them, flattened and concatenated
        ops = [*builder.ops, _outputs_op(builder, results)]
    if leaf:
        ops = [op if op.name != "0" else dataclasses.replace(op, name="") for op in ops]
    floating = [v.dtype for v in values.values()
                if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return ops, max(floating, key=lambda d: torch.finfo(d).eps, default=torch.float64)
