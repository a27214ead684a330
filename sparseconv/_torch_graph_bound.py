"""A Lipschitz bound of a network that is not a chain, over its torch.fx graph.

Each node gets a bound ``L`` of the map from the network's input to its value, in the 2-norm,
in exact rational arithmetic (rounded up once, at the end):

* the input: 1; a constant (a parameter, a shape): 0;
* a module call: the report's certified upper bound of that call's matrix (a convolution with
  the BatchNorm folded into it, whose own call then counts 1), or its Lipschitz constant (an
  activation, max pooling), times its input's ``L``; a reshape (``Flatten``, ``Identity``,
  ``Dropout`` in eval mode): its input's;
* ``x + y``, ``x - y``: ``L(x) + L(y)`` -- a residual block's branches add; an operand that
  is broadcast (a ``(C, 1, 1)`` summary added to a ``(C, H, W)`` map) repeats each of its
  entries ``r`` times (``r``: the ratio of the sizes, from one forward pass through
  ``torch.fx``'s shape propagation), and counts ``sqrt(r)`` times its ``L``;
* ``torch.cat``: ``sqrt(sum L_i^2)`` -- its parts are orthogonal;
* ``c * x``, ``x / c`` for a number ``c``: ``|c| L(x)``; for a constant tensor ``t`` (a
  parameter or a buffer, entry by entry): ``max |t| L(x)``, ``L(x) / min |t|``, times
  ``sqrt(r)`` if the signal is broadcast to ``r`` copies;
* a sum over non-batch axes, ``r`` entries into each output: ``sqrt(r) L(x)``; a mean:
  ``L(x) / sqrt(r)``; ``F.dropout(x, training=False)`` and torchvision's
  ``stochastic_depth`` outside training: ``L(x)``;
* an elementwise activation called as a function (``F.relu``, ``torch.tanh``, ...): its
  constant times its input's; a reshape, permutation or basic slice: its input's; a cast
  between floating dtypes (``x.double()``, ``x.to(torch.float32)``): its input's, the
  layers being read exactly in every dtype;
* a linear function with constant arguments besides the signal (``F.avg_pool2d``,
  ``F.adaptive_avg_pool2d``, ``F.interpolate``, ``F.pixel_shuffle``, ``F.pad``, and
  ``F.linear`` or ``F.conv2d`` by a parameter, ...): the certified upper bound of its matrix
  on the traced shape (``functional``, from the report's own ``spectral_norm`` options), times
  its input's; ``x @ W`` or ``W @ x`` by a constant matrix or vector ``W``: that of
  ``F.linear`` by ``W`` (on the signal's shape with its last two axes swapped for ``W @ x``);
  ``torch.einsum`` of the signal and a constant ``W``: ``sqrt(summed) * max_s ||W[s]||``, the
  exact norm (:class:`sparseconv._torch_calls.EinsumSplit`), the maximum certified as that of
  a 1x1 ``F.conv1d`` with one group per ``s``; ``torch.where(condition, a, b)`` or
  ``masked_fill`` by a constant boolean condition: ``sqrt(sum_o r_o L_o^2)`` over its signal
  operands ``o`` (each output entry one of an operand's, ``r_o`` its copies);
* a selection, permutation or copy run by torch (``flip``, ``roll``, ``select``,
  ``index_select``, ``repeat_interleave``, ``expand``, ``unfold``, ...): ``sqrt`` of the
  most copies of one entry times its input's; ``cumsum`` over ``L`` entries: ``1 / (2 sin(pi
  / (4 L + 2)))`` times its input's (the norm of the running sum); ``diff`` of order ``n``:
  ``2^n`` times its input's -- each refused where it reads or moves the batch axis.

Anything else (a product of two signals, advanced indexing, a function with an argument
computed from the signal, a reduction over the batch axis, an output that is no single
tensor) gives no bound, and the node is named. The rule ``L(f + g) <= L(f) +
L(g)`` and ``L(f o g) <= L(f) L(g)`` make the result a Lipschitz bound of the whole forward.

This module traces the graph and checks that it computes what the forward does
(:func:`_traced`), then walks it; each node's rule is in :mod:`sparseconv._torch_graph_rules`,
and which sizes the graph reads from its signal in :mod:`sparseconv._torch_graph_sizes`.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable, Collection, Mapping
from fractions import Fraction
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from sparseconv._torch_calls import function_name, inside, reads_metadata
from sparseconv._torch_graph import (
    Versions,
    changed,
    follow_in_place,
    graph_outputs,
    makes_a_constant,
    output_leaves,
    returns_new_memory,
    rewritten,
    tensor_versions,
    untracked,
)
from sparseconv._torch_graph_rules import (
    _PARTITIONS,
    Factor,
    _bound,
    _Opaque,
    _sqrt_up,
    _Walk,
    whole_call,
)
from sparseconv._torch_graph_sizes import _integers, _size_number, _tainted_sizes
from sparseconv._torch_probe import (
    UNTRACKED,
    UntraceableDefault,
    dispatched,
    drawn_or_unset,
    error_line,
    first_write,
    fx_trace,
    inference_mode_change,
    version,
)
from sparseconv._torch_sizes_tracer import SizesTracer
from sparseconv._torch_state import changes_own_state, restored_state
from sparseconv._torch_whole_calls import WholeUnit, attribute, code, whole_units

__all__ = ["graph_bound"]


def _output_squares(result: Any, opaque: set, of: Callable) -> tuple[list[Fraction], str]:
    """The bounds of the graph's outputs (:func:`sparseconv._torch_graph.graph_outputs`: a
    namedtuple's fields in its place), one per disjoint part (their squares add up), or why
    there are none. A tuple cut by chunk, split, unbind or tensor_split and returned whole is
    its tensor where the pieces are disjoint (together, the tensor's norm; a review:
    ``tensor_split(x, [3, 1])`` returns ``x[:, :3]`` and ``x[:, 1:]``, which overlap, and was
    bounded by 1 for a map of norm sqrt 2). Another value of the signal that is no floating
    tensor (indices, a tuple from max) is named."""
    parts: list[Fraction] = []
    for leaf in graph_outputs(result) or []:
        if isinstance(leaf, torch.fx.Node) and leaf in opaque:
            source = leaf.args[0] if leaf.args else None
            if leaf.target in _PARTITIONS and isinstance(source, torch.fx.Node) and (
                    source not in opaque) and _disjoint(leaf):
                parts.append(of(source))
                continue
            return [], (f"returns {leaf.name!r}, which is no floating tensor (indices, a "
                        "boolean or integer tensor, a size, or a tuple of values such as "
                        "max's): the bound is of a map to floating tensors")
        parts.append(of(leaf))
    if not parts:
        return [], "returns no tensor"
    return parts, ""


def _disjoint(partition: torch.fx.Node) -> bool:
    """Whether a partition's pieces are disjoint: chunk, split and unbind cut a tensor into
    consecutive pieces; tensor_split too for a number of sections or indices that are
    non-negative integers in increasing order (not ``[3, 1]``, whose pieces overlap)."""
    if partition.target not in (torch.tensor_split, "tensor_split"):
        return True
    cut = partition.args[1] if len(partition.args) > 1 else partition.kwargs.get(
        "indices_or_sections", partition.kwargs.get("sections", partition.kwargs.get(
            "indices")))
    if type(cut) is int:
        return True
    return isinstance(cut, (list, tuple)) and all(type(i) is int and i >= 0 for i in cut) \
        and all(a <= b for a, b in zip(cut, cut[1:]))


def _same(ours: Any, theirs: Any) -> bool:
    """Whether the graph's output equals the model's: to rounding (the same operations), each
    tensor of a tuple, list or dict of them."""
    if isinstance(theirs, (tuple, list, dict)):
        # (torch.fx hands back its own immutable list and dict types)
        kind = dict if isinstance(theirs, dict) else (tuple, list)
        if not isinstance(ours, kind) or len(ours) != len(theirs) or (
                isinstance(theirs, dict) and list(ours) != list(theirs)):
            return False
        if isinstance(theirs, dict):
            return all(_same(ours[key], theirs[key]) for key in theirs)
        return all(_same(a, b) for a, b in zip(ours, theirs))
    if not (isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor)):
        return False
    if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
        return False
    if not (theirs.is_floating_point() or theirs.is_complex()):  # (a review: abs() of a
        return bool(torch.equal(ours, theirs))  # bool output failed, "cannot trace")
    # (over the finite entries: a NaN's scale made atol NaN, which torch refuses, a review)
    finite = theirs.abs()[torch.isfinite(theirs)]
    scale = float(finite.max()) if finite.numel() else 0.0
    tol = 1e-12 if theirs.dtype in (torch.float64, torch.complex128) else 1e-5
    return bool(torch.allclose(ours, theirs, rtol=tol, atol=tol * scale, equal_nan=True))


class _Probe(ShapeProp):
    """torch.fx's shape propagation, also recording where a node reads a tensor that an
    in-place operation changed after it was made (``keep = y; y += z``, a view of ``y``
    scaled in place, ``ReLU(inplace=True)`` on a value read again): the graph's nodes are
    functional, so there they would bound the value before the change. Views share their
    base's version counter, so a change through any alias shows."""

    def __init__(self, module: torch.fx.GraphModule):
        super().__init__(module)
        self.versions: dict[torch.fx.Node, Versions] = {}
        self.stale: torch.fx.Node | None = None
        self.signal: set[torch.fx.Node] = set()  # the nodes computed from the input
        self.constants: dict[torch.fx.Node, Any] = {}  # the others' values (parameters...)
        self.sizes: dict[torch.fx.Node, Any] = {}  # the integer values computed from the input
        self.shapes: dict[torch.fx.Node, tuple] = {}  # every tensor value's shape
        self.changed: torch.fx.Node | None = None  # a constant changed after it was made
        self.untracked: torch.fx.Node | None = None  # the first node whose value holds an
        # inference tensor, whose changes in place nothing counts
        self.rewritten: torch.fx.Node | None = None  # the first to read a value whose bytes
        # changed after it was made, its version counter unmoved (memory shared: a review)
        self.calls: dict[torch.fx.Node, tuple] = {}  # each call's tensors read and returned,
        # with their versions just after it (:meth:`touched`)
        self.dispatched: tuple[torch.fx.Node, str] | None = None  # the first node run where
        # a mode or a tensor subclass may replace what torch computes (:func:`dispatched`)
        self.siblings: list[_Probe] = []  # the runs on other batches (:meth:`absorb`)

    def run_node(self, n: torch.fx.Node) -> Any:
        for a in n.all_input_nodes:
            if self.stale is None and changed(self.versions.get(a, ())):
                self.stale = n
            if self.rewritten is None and rewritten(self.versions.get(a, ())):
                self.rewritten = n
        result = super().run_node(n)
        self.versions[n] = tensor_versions(result)
        if n.op in ("call_function", "call_method", "call_module"):  # (their versions now:
            # a call's own change in place, an in-place activation's, is no later change; a
            # sixth review found a given swish_ refused)
            self.calls[n] = tuple((t, version(t)) for a in (*n.all_input_nodes, n)
                                  for t, _, _ in self.versions.get(a, ()))
        if self.dispatched is None:
            why = dispatched(t for a in (*n.all_input_nodes, n)
                             for t, _, _ in self.versions.get(a, ()))
            self.dispatched = None if why is None else (n, why)
        if self.untracked is None and untracked(self.versions[n]):
            self.untracked = n
        if isinstance(result, torch.Tensor):
            self.shapes[n] = tuple(result.shape)
        if n.op == "placeholder" or any(a in self.signal for a in n.all_input_nodes) and \
                not makes_a_constant(n, self.signal.__contains__, self.env.get):
            self.signal.add(n)
            if _integers(result) or _size_number(result):  # (x.size(2) - y.size(2), or
                # math.sqrt(x.shape[-1]): read where the traced shape fixes it,
                self.sizes[n] = result  # :func:`_static_size`)
        elif n.op != "output":
            self.constants[n] = result
        return result

    def touched(self, node: torch.fx.Node) -> bool:
        """Whether a tensor the call ``node`` read or returned changed in place after it
        (or is an inference tensor, whose changes nothing counts), in this run or another."""
        return any(was is None or version(t) != was for run in (self, *self.siblings)
                   for t, was in run.calls.get(node, ()))

    def absorb(self, others: list[_Probe] | None) -> None:
        """The other runs' findings where this one found none: a change in place that the
        probe's values did not make and a larger batch's did (a fifth review: a call given
        its constant that changed its input on large values alone, or through numpy on a
        value the probe made zero, got bounds of 2.13 for constants of 4.06 and 18.9)."""
        for run in others or ():
            for name in ("stale", "rewritten", "untracked", "changed", "dispatched"):
                if getattr(self, name) is None:
                    setattr(self, name, getattr(run, name))
            self.siblings.append(run)

    def propagate(self, *args: Any) -> Any:
        result = super().propagate(*args)
        # the bound reads the constants' values after the run: one changed in place after it
        # was made (t.zero_() after x * t; a signal's value copied into an attribute) would be
        # read changed (reviews: bounds of 0 for constants of 10 and 32)
        self.changed = next((n for n in self.constants if changed(self.versions.get(n, ()))),
                            None)
        if self.rewritten is None:  # (and through shared memory, said last)
            self.rewritten = next((n for n in self.constants
                                   if rewritten(self.versions.get(n, ()))), None)
        return result


def _on_other_batches(module: torch.fx.GraphModule, model: nn.Module,
                      probe: torch.Tensor) -> list[_Probe] | None:
    """The graph run on a batch of three (the probe's two and its first again, scaled by
    1e3, where the model's forward must give the same: a review's model branched off the
    graph on large values) and of one, to see which values the batch size changes beside the
    batch axis; None if a run fails or differs from the forward."""
    runs = []
    scale = 1e3 if probe.dtype.itemsize >= 4 else 1.0  # (float16 overflows: a review)
    for batch in (scale * torch.cat([probe, probe[:1]]), probe[:1]):
        again = _Probe(module)
        try:  # (torch.fx's ShapeProp prints the failing node's traceback: not the user's)
            with torch.no_grad(), restored_state(model), contextlib.redirect_stderr(
                    io.StringIO()):
                if not _same(again.propagate(batch.clone()), model(batch.clone())):
                    return None
        except Exception:  # noqa: BLE001 - a model that runs on its probe's batch size only
            return None
        runs.append(again)
    return runs


def _per_sample_change(recorder: _Probe, others: list[_Probe] | None, batch: int) -> str:
    """Why one sample's map may depend on the batch size (empty if it does not seem to): a
    graph that does not run on a batch of three, or a tensor whose shape beyond the batch
    axis (or whose batch axis) differs there (reviews: ``x[:, :, :x.shape[0]]`` and
    ``reshape(2, -1)`` were bounded at the probe's batch of two, below the constant at
    others). :func:`_tainted_sizes` catches sizes that agree at two and three by chance."""
    if others is None:
        return ("does not run on batches of three and one as on two, or not as the forward "
                "does there: one sample's map depends on the batch size or on the values")
    for again, size in zip(others, (batch + 1, 1)):
        for n, shape in recorder.shapes.items():
            other = again.shapes.get(n)
            # (the output squeezed at batch one, y.squeeze(): no node reads it; a review)
            last = size == 1 and all(u.op == "output" for u in n.users) and other == shape[1:]
            if n in recorder.signal and other is not None and len(shape) and not last and (
                    shape[0] == batch) and (not other or other[0] != size
                                            or other[1:] != shape[1:]):
                return (f"node {n.name!r} has shape {shape} on a batch of {batch} and {other} "
                        f"on one of {size}: one sample's map depends on the batch size")
    return ""


#: Calls that reach a tensor's memory past its version counter (its storage, a numpy array
#: on it): a change made through them is one the stale-read checks cannot see.
_UNTRACKED = frozenset({"untyped_storage", "storage", "_typed_storage", "numpy", "__array__",
                        "__dlpack__", "data_ptr"})


def _untracked_write(node: torch.fx.Node) -> str:
    """Why ``node`` is refused as a way to change memory that no version counter follows
    (a review: ``y.untyped_storage().copy_(...)``, ``y.detach().numpy().__imul__(5)`` and
    ``torch.mul(y, 5, out=y.data)`` gave bounds a fifth of the network's constant, the graph
    doing the same write unseen); ``""`` for any other node."""
    if node.op == "call_method" and node.target in _UNTRACKED:
        return (f"calls .{node.target}(), which reaches the tensor's memory past its version "
                "counter: a change made through it cannot be followed")
    if node.op == "call_function" and node.target is getattr and node.args[1:2] == ("data",):
        return ("reads .data, whose version counter is its own: a change made through it "
                "cannot be followed (use the tensor itself)")
    return ""


def _refused(node: torch.fx.Node) -> str:
    """Why ``node`` is refused whatever it reads (:func:`_untracked_write`, memory whose
    values nothing set, a random draw); ``""`` for any other node."""
    return _untracked_write(node) or drawn_or_unset(node)  # (by name, not by the chance
    # that two runs draw differently)


def _leaves_the_tensors(node: torch.fx.Node, bound: Mapping) -> str:
    """Why ``node``, which reads the signal (a floating tensor) and returns no tensor, is
    refused: only metadata (``x.size()``, ``x.shape``) may leave the tensors, as a value no
    version counter follows and no bound covers (a review: a helper wrapped with
    ``torch.fx.wrap`` that scaled its argument in place and returned ``t.size(0)``);
    ``""`` for any other node."""
    if node.op not in ("call_method", "call_function") or not any(
            n in bound for n in node.all_input_nodes) or node.meta.get("tensor_meta"):
        return ""
    if reads_metadata(node):
        return ""
    return ("turns the signal into a value that is no tensor (a Python number, a numpy "
            "array, a storage), which no bound covers and no version counter follows")


def _untraceable(model: nn.Module, exc: Exception, whole: Collection[str] = ()) -> str:
    """Why ``model`` has no graph, naming the module whose forward torch.fx could not
    follow (a review: a module given its constant that branches on its input's values made
    the whole model untraceable, said as a bare TraceError); ``whole``: the modules given
    constants."""
    if isinstance(exc, UntraceableDefault):  # (sparseconv's own refusal, said as it stands)
        return str(exc)
    where = ""
    name, kind = getattr(exc, "sparseconv_module", ("", ""))
    if name:
        where = f" in module {name!r} ({kind})" + (
            ", whose constant given is used only where torch.fx follows its forward"
            if name in whole else "")
    return (f"torch.fx cannot trace {type(model).__name__}{where} ({type(exc).__name__}: "
            f"{error_line(exc)})")


def _traced(model: nn.Module, probe: torch.Tensor, whole: Collection[str] = (),
            followed: dict[str, str] | None = None,
            ) -> tuple[torch.fx.Graph, torch.fx.GraphModule, _Probe, dict, set, str,
                       dict[torch.fx.Node, WholeUnit]] | str:
    """``model``'s torch.fx graph, checked to compute what its forward does on ``probe``:
    ``(graph, module, recorder, sizes, tainted, change, units)`` (:func:`graph_bound`'s
    ``sizes`` and ``tainted``; ``change``: how the graph's map of one sample changes with
    the batch, said if all else passes; ``units``: the calls of the modules named in
    ``whole`` taken whole, by their output node,
    :func:`sparseconv._torch_whole_calls.whole_units`), or why it cannot be followed.
    ``followed`` receives the names of the modules of ``whole`` not taken whole, each with
    why."""
    tracer = SizesTracer(probe.clone, whole)
    try:
        graph = fx_trace(model, tracer)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return _untraceable(model, exc, whole)
    units, reasons = whole_units(graph, tracer.calls, model, _refused)
    if followed is not None:
        followed.update(reasons)
    follow_in_place(graph, model)
    try:
        module = torch.fx.GraphModule(model, graph)
        others = _on_other_batches(module, model, probe)  # (before the probe's run, whose
        recorder = _Probe(module)  # shapes the nodes keep)
        with torch.no_grad(), restored_state(model), contextlib.redirect_stderr(
                io.StringIO()):  # (ShapeProp's traceback of a failing node: not the user's)
            # the graph must compute what the model does: torch.fx records `y += z` as a new
            # value, and a name that kept y would read it unchanged in the graph
            theirs = model(probe.clone())
            same = _same(recorder.propagate(probe.clone()), theirs)
        recorder.absorb(others)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return _untraceable(model, exc)
    change = _per_sample_change(recorder, others, len(probe))  # (said if all else passes)
    tainted = _tainted_sizes(graph, recorder.sizes)  # sizes read at their traced values:
    sizes = {n: v for n, v in recorder.sizes.items()  # fixed by the batch, it seems and by
             if others is not None and others[0].sizes.get(n) == v and n not in tainted}
    if recorder.untracked is not None:  # (a review: a forward that entered inference mode
        # changed a view's base there, unseen; a bound of 1.07 for a constant of 2.28)
        return (f"node {recorder.untracked.name!r}'s value is {UNTRACKED} (make the model "
                "and run its forward outside torch.inference_mode())")
    if recorder.dispatched is not None:  # (a review: torch.sin returning its input's
        # memory under a subclass's __torch_function__, a relu scaled by 50: bounds of 1.0
        # and 1.19 for maps of 51 and 14.3)
        node, why = recorder.dispatched
        return (f"node {node.name!r} runs where {why}, which may change what any torch "
                "function computes: no rule of the bound holds there")
    if recorder.changed is not None:
        return (f"node {recorder.changed.name!r}, which is no value of the signal, is "
                "changed in place after it is made (the graph would read it changed)")
    outputs = output_leaves(theirs)
    if outputs is None or not outputs or not all(isinstance(t, torch.Tensor) for t in outputs):
        kinds = sorted({type(t).__name__ for t in outputs or ()
                        if not isinstance(t, torch.Tensor)})
        returns = ", ".join(kinds) if kinds else f"an empty {type(theirs).__name__}"
        return (f"{type(model).__name__} does not return a tensor or a tuple, list or "
                f"dict of tensors (it returns {returns}): the bound is of a map to "
                "tensors")
    if recorder.stale is not None:
        return (f"node {recorder.stale.name!r} reads a tensor changed in place after it "
                "was made, which the graph does not show")
    if not same:
        return (f"the torch.fx graph of {type(model).__name__} does not compute what its "
                "forward does (an in-place change such as y += z, recorded as a new "
                "value, or an operation that draws random numbers, such as "
                "FractionalMaxPool2d or torch.randn_like?)")
    changed = changes_own_state(model, probe) or inference_mode_change(model, probe)
    if changed:  # (the probes each start from the state the model was given in; a later
        # call would start from another: self.n = self.n * 2 doubles the map on each call)
        return f"{type(model).__name__} {changed}"
    dead = [n for n in graph.nodes if n.op.startswith("call") and not n.users
            and n not in recorder.sizes]  # (b, c, h, w = x.shape with w unused: a new user)
    write = first_write(model, probe) if dead else None
    if write is not None:  # a result nobody reads: maybe an in-place change that the graph
        # shows as a new value
        return (f"node {dead[0].name!r}{inside(dead[0])} computes a value nothing reads, and "
                f"the forward changes a tensor in place ({write}): an in-place change such "
                "as y += z, which the graph records as a new value, looks the same, so none "
                "is bounded (drop the unused call if it is one)")
    # (a forward that writes nothing in place, with autograd on or off: values nothing reads,
    # as WaveNet's last residual sum, a new user's trial, stay in the graph and are bounded,
    # each node checked by the walk as any other)
    return graph, module, recorder, sizes, tainted, change, units


def _not_alone(module: torch.fx.GraphModule, model: nn.Module,
               units: Mapping[torch.fx.Node, WholeUnit], probe: torch.Tensor) -> dict[str, str]:
    """The modules of ``units`` (the calls taken whole) a call of which does not trace to
    what the module alone traces to, from the model's state, on the call's argument in the
    graph's run on ``probe`` (the same operations on the same constants, so that the
    constant given for the module is the call's, for every input: a fourth review's forward
    set ``act.scale = 100`` around the call and put it back, traced as ``100 tanh(x)`` and
    bounded with ``tanh``'s constant), or, run alone on a contiguous copy of that argument,
    does not give the call's output (a fifth review's modules read the memory layout of a
    transposed or expanded argument); each with why."""
    if not units:
        return {}
    wanted = {*units, *(unit.marker for unit in units.values())}
    values: dict[torch.fx.Node, Any] = {}

    class Keeping(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            result = super().run_node(n)
            if n in wanted and isinstance(result, torch.Tensor):
                values[n] = result.detach().clone()  # (as it was then)
            return result

    with torch.no_grad(), restored_state(model), contextlib.redirect_stderr(io.StringIO()):
        Keeping(module).run(probe.clone())
    differ: dict[str, str] = {}
    for output, unit in units.items():
        argument = values.get(unit.marker)
        if argument is None or unit.name in differ:
            continue  # (a call on no tensor: refused by the walk)
        alone = model.get_submodule(unit.name)
        try:
            with restored_state(model):  # (the tensor constants the trace made: read here)
                nodes = list(fx_trace(alone, SizesTracer(argument.clone)).nodes)
                same = [n.op for n in nodes].count("placeholder") == 1 and nodes[
                    -1].op == "output" and isinstance(nodes[-1].args[0], torch.fx.Node) and (
                    unit.code == code(nodes, nodes[0], nodes[-1].args[0],
                                      functools.partial(attribute, alone)))
            with torch.no_grad(), restored_state(model), contextlib.redirect_stderr(
                    io.StringIO()):  # (and its value, on a contiguous copy: a fifth review's
                # modules read the layout of a transposed or expanded argument)
                ran = alone(argument.clone(memory_format=torch.contiguous_format))
            same = same and isinstance(ran, torch.Tensor) and output in values and _same(
                ran, values[output])
        except Exception:  # noqa: BLE001 - torch.fx raises anything for untraceable code
            same = False
        if not same:
            differ[unit.name] = (
                f"runs in its call {unit.k} other operations, or on other constants, than "
                "the module alone from the model's state (its state changes around or "
                "between its calls: the constant is the module's, not the call's)")
    return differ


def _output_bound(node: torch.fx.Node, walk: _Walk, recorder: _Probe, model: str, change: str,
                  ) -> tuple[Fraction | None, str]:
    """:func:`graph_bound`'s answer at the output ``node``: one output's bound, or several
    outputs' (the map to all of them, in the norm of their concatenation: their bounds added
    in quadrature, as torch.cat's); or why there is none: bytes changed past the version
    counters (said here, after the nodes' own refusals, .data, numpy, storage, which say
    more), or ``change``, how the graph's map of one sample changes with the batch."""
    if recorder.rewritten is not None:
        return None, (f"node {recorder.rewritten.name!r} reads, or is, a tensor changed "
                      "after it was made through memory it shares with another, which "
                      "neither the graph nor the version counters show")
    squares, why = _output_squares(node.args[0], walk.opaque, walk.of)
    if why:
        return None, f"{model} {why}"
    if change:
        return None, f"{model}'s graph {change}"
    return (squares[0] if len(squares) == 1 else _sqrt_up(sum(
        (b ** 2 for b in squares), Fraction(0)))), ""


def _signal_refusal(node: torch.fx.Node, module: torch.fx.GraphModule,
                    meta: Callable[[torch.fx.Node], Any], batch: int) -> str:
    """Why a node computed from the signal gets no bound whatever its function, or "": a
    value whose leading size is not the batch's (it mixes the samples), or a complex signal
    into one of torch's activation modules (whose known constant is the real function's)."""
    if len(meta(node).shape) == 0 or meta(node).shape[0] != batch:
        return ("mixes the batch axis into the sample (the bound is of a map of one sample; "
                "the batch must stay the first axis)")
    if node.op == "call_module" and type(module.get_submodule(str(node.target))).__module__ \
            == "torch.nn.modules.activation" and any(
            getattr(getattr(meta(n), "dtype", None), "is_complex", False)
            for n in node.all_input_nodes):  # (a review: nn.Tanh on i*x)
        return ("takes a complex signal, where the constant known for the real function "
                "does not hold")
    return ""


#: The operations a constant of constants and sizes may be made by (an allow-list, after a
#: review found torch.ops.aten.empty among "torch's own calls"): factories with values,
#: reshapes, copies, casts, arithmetic and shape reads.
_OF_SIZES = {"getattr", "getitem", "size", "dim", "numel", "expand", "broadcast_to", "repeat",
             "view", "reshape", "flatten", "unflatten", "unsqueeze", "squeeze", "permute",
             "transpose", "contiguous", "clone", "detach", "to", "float", "double", "type_as",
             "new_zeros", "new_ones", "new_full", "new_tensor", "zeros", "ones", "full",
             "arange", "linspace", "logspace", "eye", "tensor", "as_tensor", "zeros_like",
             "ones_like", "full_like", "cat", "concat", "stack", "meshgrid", "add", "sub",
             "mul", "truediv", "floordiv", "div", "neg", "pow", "exp", "log", "sin", "cos",
             "sqrt", "outer", "matmul", "sum", "mean"}


def _of_constants_and_sizes(node: torch.fx.Node, walk: _Walk) -> bool:
    """Whether ``node`` is a constant of the traced shape: torch's own call (a tensor
    method, a torch function, an operator) on constants and sizes that shape fixes, no value
    of the signal (a new user's trial: ViT's class token, ``cls.expand(x.shape[0], -1,
    -1)``, was refused). Not a function of the user's (a review: a ``torch.fx.wrap`` one,
    ``fetch(x.shape[0])``, returned a value of the signal it had kept)."""
    target = node.target
    module = str(getattr(target, "__module__", None) or "")
    torchs = node.op == "call_method" or node.op == "call_function" and (
        target is getattr or module in ("_operator", "operator") or module == "torch"
        or module.startswith("torch."))
    return torchs and function_name(target) in _OF_SIZES and not any(
        n in walk.bound or n in walk.opaque and not walk.static_int(n)
        for n in node.all_input_nodes)


def graph_bound(model: nn.Module, factors: Callable[[str, int, tuple], Factor],
                probe: torch.Tensor,
                functional: Callable[..., Fraction | str | None] | None = None,
                *, given: Mapping[str, float] | None = None, assumed: list[str] | None = None,
                whole: Collection[str] = (), followed: dict[str, str] | None = None,
                ) -> tuple[Fraction | None, str]:
    """``(L, "")``, a Lipschitz bound of ``model``'s forward, or ``(None, reason)``.

    ``factors(name, k, shape)``: what is known of the ``k``-th call (from 0, constant calls
    counted) of the module named ``name`` on an input of ``shape`` (without the batch)
    (:data:`Factor`). ``probe``: a random input batch of two (a value whose leading size is
    not the batch's mixes the samples: refused, with transpositions of the batch axis and
    reductions over it, which the bound of one sample's map does not cover), run once through
    the graph (its state restored) to learn every node's shape and dtype and to see in-place
    changes read afterwards, which are refused, and through the model, whose output the
    graph's must be.
    ``functional(target, args, kwargs, shape, call=...)``: a certified bound on the norm of a
    linear function's call on an input of ``shape``, None if the call is none it knows, or
    why a linear call it knows gets none (a string); ``call``, the graph's call it bounds
    (:class:`~sparseconv._torch_graph_rules.FunctionalCall`: the report's row of it).
    ``given``: the caller's Lipschitz constants of functions called on the signal, by node
    name (``"softplus_1"``), for calls no rule covers (:func:`has_rule`), taken entry by
    entry (a broadcast signal counts its copies). ``assumed``: a list to which each call with
    a constant, known or given, is appended as ``"node (function(), c)"``. ``whole``: the
    modules of the user's classes given constants, whose calls the walk takes whole (the
    output of each call's traced nodes bounded by its factor, ``factors``'s, times its
    argument's bound) where what they read, leave and run allows
    (:func:`sparseconv._torch_whole_calls.whole_units`); ``followed`` receives the others'
    names, each with why its forward is followed.
    """
    followed = {} if followed is None else followed
    traced = _traced(model, probe, whole, followed)
    differ = {} if isinstance(traced, str) else _not_alone(traced[1], model, traced[6], probe)
    if differ:  # (followed instead: traced again)
        followed.update(differ)
        traced = _traced(model, probe, frozenset(whole) - set(differ), followed)
    if isinstance(traced, str):
        return None, traced
    graph, module, recorder, sizes, tainted, change, units = traced
    markers = {unit.marker for unit in units.values()}
    inner = {n for unit in units.values() for n in unit.members} - set(units)
    calls: dict[str, int] = {}
    walk = _Walk(factors, functional, recorder.constants, sizes, tainted, given, assumed,
                 touched=lambda node: recorder.touched(node)
                 and not returns_new_memory(node, module))  # (torch's softplus then relu_:
    # its result is its own, and the sessions' notes found the model refused; torch's own
    # kernel ran it, as no mode nor tensor subclass is seen: _traced)
    bound, opaque, meta, size = walk.bound, walk.opaque, walk.meta, walk.size

    def unsupported(node: torch.fx.Node, why: str) -> tuple[None, str]:
        target = getattr(node.target, "__name__", node.target)
        return None, f"node {node.name!r} ({node.op} {target}){inside(node)} {why}"

    for node in graph.nodes:
        if node.op == "call_module":  # every call counted, a constant one too
            name = str(node.target)
            node.meta["sparseconv_call"] = (name, calls.get(name, 0))
            calls[name] = calls.get(name, 0) + 1
        if node.op == "placeholder":
            bound[node] = Fraction(1)
            continue
        if node.op == "output":
            return _output_bound(node, walk, recorder, f"{type(model).__name__}", change)
        if node in inner:  # (a call taken whole: its output alone is bounded)
            continue
        if node in markers or node in units:
            source = node.args[0] if node in markers else units[node].marker
            if source in opaque:
                return unsupported(node, "takes a value of the signal that is no floating "
                                   "tensor, as the argument of a call taken whole")
            if source not in bound:  # (a call on a constant)
                continue
            found = walk.of(source) if node in markers else (
                _signal_refusal(node, module, meta, len(probe))
                or whole_call(node, units[node].name, units[node].k, source, walk))
            if isinstance(found, str):
                return unsupported(node, found)
            bound[node] = found
            continue
        why = _refused(node) or _leaves_the_tensors(node, bound)
        if why:
            return unsupported(node, why)
        if node.op == "get_attr" or not any(n in bound or n in opaque for n in
                                            node.all_input_nodes) or makes_a_constant(
                node, lambda n: n in bound or n in opaque) or _of_constants_and_sizes(
                node, walk):
            continue  # a constant
        dtype = getattr(meta(node), "dtype", None)
        if size(node) is None or dtype is None or not (dtype.is_floating_point
                                                       or dtype.is_complex):
            opaque.add(node)  # a size, a shape, a tuple, indices: no signal itself
            continue
        why = _signal_refusal(node, module, meta, len(probe))
        if why:
            return unsupported(node, why)
        try:
            found = _bound(node, walk)
        except _Opaque as exc:
            read = exc.args[0]
            if isinstance(read.meta.get("tensor_meta"), (tuple, list)):  # (a new user's
                # trial: torch.chunk's tensors were called "no floating tensor")
                if read.op == "call_module":  # (a new user's trial: nn.MultiheadAttention
                    # was told to slice the signal, and --constant was suggested for it)
                    return unsupported(node, f"reads {read.name!r}, the tuple module "
                                       f"{str(read.target)!r} returns, for which the bound has "
                                       "no rule: a module of several outputs has none, even "
                                       "with its Lipschitz constant given")
                return unsupported(node, f"reads {read.name!r}, a tuple of values of the "
                                   "signal (torch.chunk, split, max with its indices), which "
                                   "the bound has no rule for (slice the signal instead)")
            return unsupported(node, f"reads {read.name!r}, a value of the signal that is no "
                               "floating tensor")
        if isinstance(found, str):
            return unsupported(node, found)
        bound[node] = found
    return None, "the graph has no output"  # pragma: no cover - torch.fx always adds one


