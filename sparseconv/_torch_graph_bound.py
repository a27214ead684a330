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
  ``L(x) / sqrt(r)``; ``F.dropout(x, training=False)``: ``L(x)``;
* an elementwise activation called as a function (``F.relu``, ``torch.tanh``, ...): its
  constant times its input's; a reshape, permutation or basic slice: its input's; a cast
  between floating dtypes (``x.double()``, ``x.to(torch.float32)``): its input's, the
  layers being read exactly in every dtype;
* a linear function with constant arguments besides the signal (``F.avg_pool2d``,
  ``F.adaptive_avg_pool2d``, ``F.interpolate``, ``F.pixel_shuffle``, ``F.pad``, and
  ``F.linear`` or ``F.conv2d`` by a parameter, ...): the certified upper bound of its matrix
  on the traced shape (``functional``, from the report's own ``spectral_norm`` options), times
  its input's; ``x @ W`` or ``W @ x`` by a constant matrix or vector ``W``: that of
  ``F.linear`` by ``W`` (on the signal's shape with its last two axes swapped for ``W @ x``).

Anything else (a product of two signals, advanced indexing, a function with an argument
computed from the signal, a reduction over the batch axis, an output that is no single
tensor) gives no bound, and the node is named. The rule ``L(f + g) <= L(f) +
L(g)`` and ``L(f o g) <= L(f) L(g)`` make the result a Lipschitz bound of the whole forward.
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from sparseconv._torch_activations import KNOWN_FUNCTIONS, function_constant
from sparseconv._torch_graph import (
    _DROPOUT_F,
    _NEG,
    _NORMALIZED,
    _TRANSPOSE,
    MATMUL,
    MAX_POOL_F,
    graph_outputs,
    matmul_operands,
    output_leaves,
    transposition_axes,
)
from sparseconv._torch_script import restored_buffers

__all__ = ["function_name", "graph_bound", "has_rule"]

_ADDS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub,
         "add", "add_", "sub", "sub_"}
_SCALES = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIVIDES = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_CATS = {torch.cat, torch.concat, torch.concatenate}
#: Calls that cut a tensor into a tuple of disjoint pieces: returned whole, the pieces have the
#: tensor's norm together.
_PARTITIONS = {torch.chunk, torch.split, torch.unbind, torch.tensor_split, "chunk", "split",
               "unbind", "tensor_split"}
# maps that keep every entry (or a basic slice of them): the norm of a change cannot grow
_KEEPS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
          torch.unsqueeze, torch.swapaxes, torch.movedim, "flatten", "view", "reshape",
          "contiguous", "permute", "transpose", "squeeze", "unsqueeze", "swapaxes", "movedim",
          "clone", "detach", "view_as", "reshape_as"}
_REDUCTIONS = {torch.sum, torch.mean, "sum", "mean"}
# a cast between floating (or complex) dtypes: the same values, as every layer is read exactly
_CASTS = {"to", "float", "double", "half", "bfloat16", "type_as"}
_RULED = {*_ADDS, *_SCALES, *_DIVIDES, *_CATS, *_KEEPS, *_REDUCTIONS, *_NEG, *_CASTS,
          *MATMUL, *_NORMALIZED, operator.getitem}


def _reduced(node: torch.fx.Node, source: Any, args: Any, kwargs: dict, of: Callable,
             size: Callable, meta: Callable) -> Fraction | str:
    """A sum or mean over non-batch axes: each output adds ``r`` inputs of its own (``r`` the
    ratio of the sizes), so the norm is ``sqrt(r)``, or ``1 / sqrt(r)`` for a mean."""
    value = of(source)  # (refused first if the source is no floating tensor)
    dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else None))
    if kwargs.get("dtype") is not None:
        return "reduces to another dtype"
    ndim = len(meta(source).shape)
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    if dim is None or not dims or not all(isinstance(d, int) for d in dims) or any(
            d % ndim == 0 for d in dims):  # (dim=[]: every axis, the batch's too)
        return "reduces over the batch axis (or over axes it does not name as ints)"
    whole, part = size(source), size(node)
    if not whole or not part or whole % part:
        return "reduces over axes whose sizes are not known"
    r = Fraction(whole // part)
    return _sqrt_up(1 / r if node.target in (torch.mean, "mean") else r) * value


def _by_tensor(node: torch.fx.Node, signal: Any, tensor: torch.Tensor, divides: bool,
               kwargs: dict, args: Any, of: Callable, size: Callable) -> Fraction | str:
    """The signal times (or over) a constant tensor, entry by entry: a diagonal map (after
    the signal's broadcast to ``r`` copies, ``sqrt(r)``) of norm ``max |t|`` (``1 / min |t|``
    for a division)."""
    if divides and (kwargs.get("rounding_mode", args[2] if len(args) > 2 else None)
                    is not None or node.args[0] is not signal):
        return "divides other than the signal by a constant tensor (or rounds)"
    exact = tensor.is_floating_point()  # (float32, float16 and bfloat16 widen exactly)
    # in double precision first: abs(-2**63) overflows in int64; complex moduli and integers
    # beyond 2**53 round there, by at most a few units of 2**-52, widened below
    wide = tensor.detach().to("cpu", torch.complex128 if tensor.is_complex() else torch.float64)
    magnitudes = wide.abs()
    if magnitudes.numel() == 0 or not bool(torch.isfinite(magnitudes).all()):
        return "multiplies the signal by a tensor with non-finite entries"
    whole, part = size(node), size(signal)
    if not whole or not part or whole % part:
        return "multiplies operands whose sizes are not known"
    repeat = _sqrt_up(Fraction(whole // part))
    if divides:
        if not exact:
            return "divides the signal by a tensor that is not real floating"
        smallest = float(magnitudes.min())
        if smallest == 0:
            return "divides the signal by a tensor with a zero entry"
        return repeat * of(signal) / Fraction(smallest)
    scale = Fraction(float(magnitudes.max())) * (1 if exact else 1 + Fraction(4, 2 ** 52))
    return repeat * scale * of(signal)


def _matmul(node: torch.fx.Node, args: Any, kwargs: dict, bound: dict, meta: Callable,
            functional: Callable | None, of: Callable) -> Fraction | str:
    """``x @ W`` or ``W @ x`` by a constant matrix (or vector) ``W``: ``W`` applied to every
    row (column) of the signal, of norm ``||W||_2``, certified as ``F.linear``'s on that
    shape (the columns' map is the rows' after a transposition, which keeps the norm)."""
    left, right = matmul_operands(args, kwargs)
    signals = [n for n in node.all_input_nodes if n in bound]
    if len(signals) != 1 or not (signals[0] is left or signals[0] is right):
        return "multiplies two values of the signal, or reads it other than as an operand"
    signal_left = signals[0] is left
    signal, matrix = (left, right) if signal_left else (right, left)
    if isinstance(matrix, torch.fx.Node) or not isinstance(matrix, torch.Tensor):
        return "multiplies the signal by a matrix that is no constant tensor"
    if matrix.ndim not in (1, 2):
        return (f"multiplies the signal by a tensor of {matrix.ndim} dimensions (a matrix or "
                "a vector has a rule, a batch of them none)")
    shape = tuple(meta(signal).shape[1:])
    if len(shape) < (1 if signal_left else 2):  # (W @ x of a 2-D x mixes the samples)
        return "multiplies along the batch axis (the bound is of a map of one sample)"
    weight = matrix.reshape(1, -1) if matrix.ndim == 1 else matrix.T if signal_left else matrix
    if not signal_left:  # W @ x: F.linear on x with its last two axes swapped
        shape = (*shape[:-2], shape[-1], shape[-2])
    if functional is None:
        return "is not a call whose Lipschitz constant is known here"
    found = functional(F.linear, [], {"input": signal, "weight": weight}, shape)
    if found is None or isinstance(found, str):
        return found or "is not a call whose Lipschitz constant is known here"
    return found * of(signal)


def _moves_batch(target: Any, args: Any, kwargs: dict, ndim: int) -> bool:
    """Whether a transposition (``transpose``, ``swapaxes``, ``permute``, ``movedim``, read
    as ``network_operator`` reads it: :func:`sparseconv._torch_graph.transposition_axes`)
    moves axis 0, the batch's; unreadable axes count as moving it."""
    if target not in _TRANSPOSE:
        return False
    try:
        return transposition_axes(target, list(args), kwargs, ndim)[0] != 0
    except (TypeError, ValueError, IndexError):
        return True


def _basic_index(index, static: Callable[[Any], bool] = lambda n: False) -> bool:
    """A slice that selects each entry at most once (ints, slices, ``...``, ``None``), its
    ints known or ``static`` (read off shapes the input fixes)."""
    def whole(e) -> bool:
        return isinstance(e, int) and not isinstance(e, bool) or (
            isinstance(e, torch.fx.Node) and static(e))

    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or whole(p) or isinstance(p, slice) and all(
        e is None or whole(e) for e in (p.start, p.stop, p.step)) for p in parts)


def has_rule(target: Any) -> bool:
    """Whether the bound over the graph has a rule of its own for a call of ``target`` (a
    sum, a product, a reshape, a reduction, a known activation, a linear function whose norm
    it computes, max pooling): ``lipschitz_constants`` may not replace it (a review: a key
    ``"interpolate"`` replaced F.interpolate's certified norm)."""
    try:
        return target in _RULED or target in KNOWN_FUNCTIONS
    except TypeError:  # an unhashable target
        return False


def function_name(target: Any) -> str:
    """The name a graph's call goes by: ``softplus`` for ``F.softplus`` and for
    ``x.softplus()`` alike."""
    return str(getattr(target, "__name__", target))


def _sqrt_up(value: Fraction) -> Fraction:
    """A rational upper bound on ``sqrt(value)``, ``value >= 0``: exact for the square of a
    rational, else within ``2**-60`` relative, in integers (no float underflows or
    overflows)."""
    top, bottom = math.isqrt(value.numerator), math.isqrt(value.denominator)
    if top * top == value.numerator and bottom * bottom == value.denominator:
        return Fraction(top, bottom)
    # sqrt(p / q) <= (isqrt(p 4^k // q) + 1) / 2^k, k large enough for 60 bits of the root
    shift = max(0, 64 + (value.denominator.bit_length() - value.numerator.bit_length()) // 2)
    return Fraction(math.isqrt((value.numerator << (2 * shift)) // value.denominator) + 1,
                    1 << shift)


#: What :func:`graph_bound` is told of one module call: its bound, ``("folded", name)`` for
#: a BatchNorm folded into the convolution ``name`` (whose bound covers both, when that
#: convolution's output is read by the BatchNorm alone), or None.
Factor = Fraction | tuple[str, str] | None


def _output_squares(result: Any, opaque: set, of: Callable) -> tuple[list[Fraction], str]:
    """The bounds of the graph's outputs (:func:`sparseconv._torch_graph.graph_outputs`: a
    namedtuple's fields in its place), one per disjoint part (their squares add up), or why
    there are none. A tuple cut by chunk, split, unbind or tensor_split and returned whole is
    its tensor (the pieces are disjoint: together, the tensor's norm). Another value of the
    signal that is no floating tensor (indices, a tuple from max) is named."""
    parts: list[Fraction] = []
    for leaf in graph_outputs(result) or []:
        if isinstance(leaf, torch.fx.Node) and leaf in opaque:
            source = leaf.args[0] if leaf.args else None
            if leaf.target in _PARTITIONS and isinstance(source, torch.fx.Node) and (
                    source not in opaque):
                parts.append(of(source))
                continue
            return [], (f"returns {leaf.name!r}, which is no floating tensor (indices, a "
                        "boolean or integer tensor, a size, or a tuple of values such as "
                        "max's): the bound is of a map to floating tensors")
        parts.append(of(leaf))
    if not parts:
        return [], "returns no tensor"
    return parts, ""


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
    scale = float(theirs.abs().max()) if theirs.numel() else 0.0
    tol = 1e-12 if theirs.dtype in (torch.float64, torch.complex128) else 1e-5
    return bool(torch.allclose(ours, theirs, rtol=tol, atol=tol * scale, equal_nan=True))


class _Opaque(Exception):
    """A value of the signal that is no single tensor, read as one."""


class _Probe(ShapeProp):
    """torch.fx's shape propagation, also recording where a node reads a tensor that an
    in-place operation changed after it was made (``keep = y; y += z``, a view of ``y``
    scaled in place, ``ReLU(inplace=True)`` on a value read again): the graph's nodes are
    functional, so there they would bound the value before the change. Views share their
    base's version counter, so a change through any alias shows."""

    def __init__(self, module: torch.fx.GraphModule):
        super().__init__(module)
        self.versions: dict[torch.fx.Node, tuple[torch.Tensor, int]] = {}
        self.stale: torch.fx.Node | None = None
        self.signal: set[torch.fx.Node] = set()  # the nodes computed from the input
        self.constants: dict[torch.fx.Node, Any] = {}  # the others' values (parameters...)
        self.sizes: dict[torch.fx.Node, Any] = {}  # the integer values computed from the input
        self.shapes: dict[torch.fx.Node, tuple] = {}  # every tensor value's shape
        self.changed: torch.fx.Node | None = None  # a constant changed after it was made

    def run_node(self, n: torch.fx.Node) -> Any:
        for a in n.all_input_nodes:
            tensor, version = self.versions.get(a, (None, 0))
            if tensor is not None and tensor._version != version and self.stale is None:
                self.stale = n
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.versions[n] = (result, result._version)
            self.shapes[n] = tuple(result.shape)
        if n.op == "placeholder" or any(a in self.signal for a in n.all_input_nodes):
            self.signal.add(n)
            if _integers(result):  # (x.size(2) - y.size(2): read where it is fixed by the
                self.sizes[n] = result  # traced shape, :func:`_static_size`)
        elif n.op != "output":
            self.constants[n] = result
        return result

    def propagate(self, *args: Any) -> Any:
        result = super().propagate(*args)
        # the bound reads the constants' values after the run: one changed in place after it
        # was made (t.zero_() after x * t; a signal's value copied into an attribute) would be
        # read changed (reviews: bounds of 0 for constants of 10 and 32)
        self.changed = next((n for n, value in self.constants.items()
                             if isinstance(value, torch.Tensor) and n in self.versions
                             and value._version != self.versions[n][1]), None)
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
            with torch.no_grad(), restored_buffers(model), contextlib.redirect_stderr(
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


def _tainted_sizes(graph: torch.fx.Graph, integers: dict) -> set:
    """The integer values of the graph that may follow the batch size: reads of it
    (:func:`_reads_batch`), and integer arithmetic on one (``b // 4 + 1`` agrees at batches
    one to three, not at four: a review), in graph order (no recursion: a deep network's
    chains exceeded Python's limit, a review). ``integers``: the graph's integer values. A
    tensor ends the taint (one reshaped by the batch size keeps its other axes, a review): its
    shapes are checked at other batches (:func:`_per_sample_change`), and a reshape by a
    tainted size is refused where it is made."""
    tainted: set = set()
    for m in graph.nodes:
        if _reads_batch(m) or (m in integers and not _reads_shape(m) and _shape_item(m) is None
                               and any(a in tainted for a in m.all_input_nodes)):
            tainted.add(m)
    return tainted


def _integers(value: Any) -> bool:
    """An int, or a tuple or list of ints (a ``torch.Size``), not a bool."""
    if isinstance(value, (tuple, list)):
        return all(_integers(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


def _reads_shape(n: torch.fx.Node) -> bool:
    """``x.size()``, ``x.shape``, ``x.dim()``, ``x.ndim``, ``x.numel()``."""
    if n.op == "call_method":
        return n.target in ("size", "dim", "numel")
    return n.op == "call_function" and n.target is getattr and len(n.args) > 1 and (
        n.args[1] in ("shape", "ndim"))


_SIZE_ARITHMETIC = {operator.getitem, operator.add, operator.sub, operator.mul,
                    operator.floordiv, operator.mod, operator.neg}


def _ndim_read(read: torch.fx.Node) -> int:
    """The number of axes of the tensor a shape read (:func:`_reads_shape`) reads."""
    tensor: Any = read.args[0]  # (torch.fx types an argument as any value)
    return len(tensor.meta["tensor_meta"].shape)


def _shape_item(n: Any) -> torch.fx.Node | None:
    """The shape read (``x.shape``, ``x.size()``) that ``n`` takes an item or slice of
    (``x.shape[2]``), or None."""
    if not isinstance(n, torch.fx.Node) or not n.args:
        return None
    source = n.args[0]
    if (n.op == "call_function" and n.target is operator.getitem
            and isinstance(source, torch.fx.Node) and _reads_shape(source)
            and not (source.op == "call_method" and len(source.args) > 1)):
        return source
    return None


def _reads_batch(n: Any) -> bool:
    """Whether ``n`` reads the batch size off a shape (``x.size(0)``, ``x.numel()``, a whole
    ``x.shape``, ``x.shape[:2]``): conservative, for shape reads and their items only."""
    if not isinstance(n, torch.fx.Node):
        return False
    if (source := _shape_item(n)) is not None:
        ndim = _ndim_read(source)
        index: Any = n.args[1]
        if isinstance(index, int):
            return index % ndim == 0
        ends = (index.start, index.stop, index.step) if isinstance(index, slice) else (None,)
        if not all(e is None or isinstance(e, int) for e in ends) or ends == (None,):
            return True  # (a review: x.shape[x.dim() - 1:], bounds computed in the graph)
        return 0 in range(ndim)[index]
    if _reads_shape(n):
        if n.op == "call_method" and n.target == "size" and len(n.args) > 1:
            dim = n.args[1]
            return not isinstance(dim, int) or dim % _ndim_read(n) == 0
        return not (n.target == "dim" or n.op == "call_function" and n.args[1] == "ndim")
    return False


def _direct_batch(n: Any) -> bool:
    """Whether ``n`` is the batch size read as it is (``x.shape[0]``, ``x.size(0)``) or a
    whole shape (``x.shape``, ``x.size()``): a reshape's first size that keeps the batch."""
    if not isinstance(n, torch.fx.Node):
        return False
    index: Any = n.args[1] if len(n.args) > 1 else None
    zero = type(index) is int and index == 0
    if (source := _shape_item(n)) is not None:
        return zero and source.target != "numel"
    if n.op == "call_method" and n.target == "size":
        return len(n.args) == 1 or zero
    return n.op == "call_function" and n.target is getattr and n.args[1] == "shape"


def _static_size(n: Any, bound: dict) -> bool:
    """Whether ``n``, an argument of a reshape or slice computed in the graph, is fixed by the
    traced shape: a shape read (:func:`_reads_shape`) of a tensor the bound accepted (every
    rule keeps shapes fixed by the input's: ``nonzero`` or a mask's count has none, so its
    size is no constant; a review), integer arithmetic on such reads, or such a tensor itself
    (``view_as``). The batch size is one too: a reshape keeping it is checked by
    :func:`_moves_batch`."""
    stack, seen = [n], set()  # (iterative: a chain of 400 size operations, a review)
    while stack:
        m = stack.pop()
        if not isinstance(m, torch.fx.Node) or m in bound or m in seen:
            continue
        seen.add(m)
        if _reads_shape(m):
            if not (isinstance(m.args[0], torch.fx.Node) and m.args[0] in bound):
                return False
        elif m.op == "call_function" and m.target in _SIZE_ARITHMETIC:
            stack.extend(m.all_input_nodes)
        else:
            return False
    return True


def _traced(model: nn.Module, probe: torch.Tensor,
            ) -> tuple[torch.fx.Graph, torch.fx.GraphModule, _Probe, dict, set, str] | str:
    """``model``'s torch.fx graph, checked to compute what its forward does on ``probe``:
    ``(graph, module, recorder, sizes, tainted, change)`` (:func:`graph_bound`'s
    ``sizes`` and ``tainted``; ``change``: how the graph's map of one sample changes with
    the batch, said if all else passes), or why it cannot be followed."""
    try:
        graph = torch.fx.Tracer().trace(model)
        module = torch.fx.GraphModule(model, graph)
        others = _on_other_batches(module, model, probe)  # (before the probe's run, whose
        recorder = _Probe(module)  # shapes the nodes keep)
        with torch.no_grad(), restored_buffers(model), contextlib.redirect_stderr(
                io.StringIO()):  # (ShapeProp's traceback of a failing node: not the user's)
            # the graph must compute what the model does: torch.fx records `y += z` as a new
            # value, and a name that kept y would read it unchanged in the graph
            theirs = model(probe.clone())
            same = _same(recorder.propagate(probe.clone()), theirs)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return (f"torch.fx cannot trace {type(model).__name__} "
                f"({type(exc).__name__}: {exc})")
    change = _per_sample_change(recorder, others, len(probe))  # (said if all else passes)
    tainted = _tainted_sizes(graph, recorder.sizes)  # sizes read at their traced values:
    sizes = {n: v for n, v in recorder.sizes.items()  # fixed by the batch, it seems and by
             if others is not None and others[0].sizes.get(n) == v and n not in tainted}
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
    dead = [n for n in graph.nodes if n.op.startswith("call") and not n.users
            and n not in recorder.sizes]  # (b, c, h, w = x.shape with w unused: a new user)
    if dead:  # a result nobody reads: an in-place change that the graph shows as a new value
        return (f"node {dead[0].name!r} computes a value nothing reads: an in-place "
                "change such as y += z, which the graph records as a new value, looks "
                "the same, so none is bounded (drop the unused call if it is one)")
    return graph, module, recorder, sizes, tainted, change


def graph_bound(model: nn.Module, factors: Callable[[str, int, tuple], Factor],
                probe: torch.Tensor,
                functional: Callable[[Any, list, dict, tuple], Fraction | str | None] | None = None,
                *, given: Mapping[str, float] | None = None, assumed: list[str] | None = None,
                ) -> tuple[Fraction | None, str]:
    """``(L, "")``, a Lipschitz bound of ``model``'s forward, or ``(None, reason)``.

    ``factors(name, k, shape)``: what is known of the ``k``-th call (from 0, constant calls
    counted) of the module named ``name`` on an input of ``shape`` (without the batch)
    (:data:`Factor`). ``probe``: a random input batch of two (a value whose leading size is
    not the batch's mixes the samples: refused, with transpositions of the batch axis and
    reductions over it, which the bound of one sample's map does not cover), run once through
    the graph (buffers restored) to learn every node's shape and dtype and to see in-place
    changes read afterwards, which are refused, and through the model, whose output the
    graph's must be.
    ``functional(target, args, kwargs, shape)``: a certified bound on the norm of a linear
    function's call on an input of ``shape``, None if the call is none it knows, or why a
    linear call it knows gets none (a string).
    ``given``: the caller's Lipschitz constants of functions called on the signal, by node
    name (``"softplus_1"``), for calls no rule covers (:func:`has_rule`), taken entry by
    entry (a broadcast signal counts its copies). ``assumed``: a list to which each call with
    a constant, known or given, is appended as ``"node (function(), c)"``.
    """
    traced = _traced(model, probe)
    if isinstance(traced, str):
        return None, traced
    graph, module, recorder, sizes, tainted, change = traced
    calls: dict[str, int] = {}
    walk = _Walk(factors, functional, recorder.constants, sizes, tainted, given, assumed)
    bound, opaque, meta, size = walk.bound, walk.opaque, walk.meta, walk.size

    def unsupported(node: torch.fx.Node, why: str) -> tuple[None, str]:
        target = getattr(node.target, "__name__", node.target)
        return None, f"node {node.name!r} ({node.op} {target}) {why}"

    for node in graph.nodes:
        if node.op == "call_module":  # every call counted, a constant one too
            name = str(node.target)
            node.meta["sparseconv_call"] = (name, calls.get(name, 0))
            calls[name] = calls.get(name, 0) + 1
        if node.op == "placeholder":
            bound[node] = Fraction(1)
            continue
        if node.op == "output":
            # several outputs: the map to all of them, in the norm of their concatenation,
            # their bounds added in quadrature (as torch.cat's)
            squares, why = _output_squares(node.args[0], opaque, walk.of)
            if why:
                return None, f"{type(model).__name__} {why}"
            if change:
                return None, f"{type(model).__name__}'s graph {change}"
            return (squares[0] if len(squares) == 1 else _sqrt_up(sum(
                (b ** 2 for b in squares), Fraction(0)))), ""
        if node.op == "get_attr" or not any(n in bound or n in opaque
                                            for n in node.all_input_nodes):
            continue  # a constant
        dtype = getattr(meta(node), "dtype", None)
        if size(node) is None or dtype is None or not (dtype.is_floating_point
                                                       or dtype.is_complex):
            opaque.add(node)  # a size, a shape, a tuple, indices: no signal itself
            continue
        if len(meta(node).shape) == 0 or meta(node).shape[0] != len(probe):
            return unsupported(node, "mixes the batch axis into the sample (the bound is of "
                               "a map of one sample; the batch must stay the first axis)")
        if node.op == "call_module" and type(module.get_submodule(str(node.target))).__module__ \
                == "torch.nn.modules.activation" and any(
                getattr(getattr(meta(n), "dtype", None), "is_complex", False)
                for n in node.all_input_nodes):  # (a review: nn.Tanh on i*x)
            return unsupported(node, "takes a complex signal, where the constant known for "
                               "the real function does not hold")
        try:
            found = _bound(node, walk)
        except _Opaque as exc:
            read = exc.args[0]
            if isinstance(read.meta.get("tensor_meta"), (tuple, list)):  # (a new user's
                # trial: torch.chunk's tensors were called "no floating tensor")
                return unsupported(node, f"reads {read.name!r}, a tuple of values of the "
                                   "signal (torch.chunk, split, max with its indices), which "
                                   "the bound has no rule for (slice the signal instead)")
            return unsupported(node, f"reads {read.name!r}, a value of the signal that is no "
                               "floating tensor")
        if isinstance(found, str):
            return unsupported(node, found)
        bound[node] = found
    return None, "the graph has no output"  # pragma: no cover - torch.fx always adds one


@dataclass
class _Walk:
    """What the walk over the graph (:func:`graph_bound`) knows: each node's ``bound`` so
    far, the values of the signal that are no signal (``opaque``: a size, a tuple), and the
    caller's rules. ``constants``: the values of the nodes that do not depend on the input;
    ``sizes``: the integer values of those that do, read where :func:`_static_size` fixes
    them; ``tainted``: those that may follow the batch size (:func:`_tainted_sizes`);
    ``factors``, ``functional``, ``given`` and ``assumed`` as :func:`graph_bound`'s."""

    factors: Callable[[str, int, tuple], Factor]
    functional: Callable[[Any, list, dict, tuple], Fraction | str | None] | None = None
    constants: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    tainted: set = field(default_factory=set)
    given: Mapping[str, float] | None = None
    assumed: list[str] | None = None
    bound: dict[torch.fx.Node, Fraction] = field(default_factory=dict)
    opaque: set[torch.fx.Node] = field(default_factory=set)

    @staticmethod
    def meta(a) -> Any:
        return a.meta.get("tensor_meta") if isinstance(a, torch.fx.Node) else None

    def size(self, a) -> int | None:
        shape = getattr(self.meta(a), "shape", None)  # (a tuple of outputs has no one shape)
        return None if shape is None else math.prod(shape)

    def of(self, a) -> Fraction:
        """A node's bound: 0 for a constant; a value of the signal that is no floating
        tensor (a shape, a tuple of outputs, indices) has none, and reading it is refused."""
        if not isinstance(a, torch.fx.Node):
            return Fraction(0)
        if a in self.opaque:
            raise _Opaque(a)
        return self.bound.get(a, Fraction(0))

    def static(self, n) -> bool:
        return _static_size(n, self.bound)

    def static_int(self, n) -> bool:  # (a tensor as an index is advanced indexing: no slice)
        return n not in self.bound and self.static(n)

    def static_index(self, n) -> bool:  # (a review: x[:, x.shape[2:]] indexes by a tuple,
        return self.static_int(n) and type(self.sizes.get(n)) is int  # which repeats entries)


def _bound(node: torch.fx.Node, walk: _Walk) -> Fraction | str:
    """One node's bound, from its inputs' (:func:`graph_bound`'s rules), or why there is
    none."""
    # (torch.fx types its arguments as any Python value); constants by their values
    args: Any = torch.fx.node.map_arg(node.args, lambda n: walk.constants.get(n, n))
    kwargs: dict[str, Any] = dict(torch.fx.node.map_arg(node.kwargs,
                                                         lambda n: walk.constants.get(n, n)))
    source = args[0] if args else kwargs.get("input")
    if node.op == "call_module":
        return _module_call(node, source, walk)
    target = node.target
    if target in _ADDS:
        return _added(node, source, args, kwargs, walk)
    if target in _SCALES or target in _DIVIDES:
        return _multiplied(node, source, args, kwargs, walk)
    if target in _CATS:
        parts = args[0] if args else kwargs.get("tensors", ())
        if not isinstance(parts, (list, tuple)):
            return "concatenates a sequence the graph computes (not a list of tensors)"
        return _sqrt_up(sum((walk.of(p) ** 2 for p in parts), Fraction(0)))
    if target in _DROPOUT_F and not kwargs.get("training", args[2] if len(args) > 2 else True):
        return walk.of(source)  # (F.dropout(x, p, training=False): the identity)
    if target in _NEG:  # -x: the same norm
        return walk.of(source)
    if target in MATMUL:
        return _matmul(node, args, kwargs, walk.bound, walk.meta, walk.functional, walk.of)
    if target in _CASTS and node.op == "call_method":  # (a review: x.double() had no rule)
        cast = _cast(node, source, walk)
        if cast is not None:
            return cast
    if target in _REDUCTIONS:
        return _reduced(node, source, args, kwargs, walk.of, walk.size, walk.meta)
    if target in _KEEPS or (target is operator.getitem
                            and _basic_index(args[1], walk.static_index)):
        return _kept(node, source, args, kwargs, walk)
    return _elementwise(node, source, args, kwargs, walk)


def _module_call(node: torch.fx.Node, source: Any, walk: _Walk) -> Fraction | str:
    """A module's call: its factor (:data:`Factor`) times its input's bound."""
    signals = [n for n in node.all_input_nodes if n in walk.bound]
    if signals != [source]:
        return "takes the signal other than as its one input"
    name, k = node.meta["sparseconv_call"]
    factor = walk.factors(name, k, tuple(walk.meta(source).shape[1:]))
    if isinstance(factor, tuple):  # its input must be that convolution's own output, read
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module"  # by it
                and source.target == factor[1] and len(source.users) == 1):  # alone
            return (f"is a BatchNorm folded into {factor[1]!r}, whose output is not its "
                    "input alone in the graph (pass fold_batchnorm=False)")
        factor = Fraction(1)
    if factor is None:
        return "has no certified bound nor known Lipschitz constant"
    return factor * walk.of(source)


def _added(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
           walk: _Walk) -> Fraction | str:
    """``x + alpha y`` (or ``-``): the operands' bounds added, a broadcast one counting
    ``sqrt`` of its copies."""
    if len(args) > 2:  # add(input, alpha, other): deprecated, and still run by PyTorch
        return ("uses the deprecated add/sub(input, alpha, other) form (pass alpha= by "
                "keyword)")
    alpha_value = kwargs.get("alpha", 1)
    if not isinstance(alpha_value, (int, float)) or isinstance(alpha_value, bool) or not (
            math.isfinite(alpha_value)):
        return f"adds with an alpha that is not a finite number ({alpha_value!r})"
    alpha = abs(Fraction(float(alpha_value)))
    other = args[1] if len(args) > 1 else kwargs.get("other")
    total = Fraction(0)
    for operand, weight in ((source, Fraction(1)), (other, alpha)):
        if not (isinstance(operand, torch.fx.Node) and (operand in walk.bound or
                                                         walk.of(operand) > 0)):
            continue  # a constant added
        whole, part = walk.size(node), walk.size(operand)
        if whole is None or part is None or part == 0 or whole % part:
            return "adds operands whose sizes are not known"
        # broadcast: each entry of the operand repeated whole/part times
        total += weight * walk.of(operand) * _sqrt_up(Fraction(whole // part))
    return total


def _multiplied(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
                walk: _Walk) -> Fraction | str:
    """``c * x`` or ``x / c`` by a finite number, or by a constant tensor (:func:`_by_tensor`)."""
    target = node.target
    other = args[1] if len(args) > 1 else kwargs.get("other")
    tensors = [a for a in (source, other) if isinstance(a, torch.fx.Node) and a in walk.bound]
    number = other if tensors == [source] else source
    if len(tensors) == 1 and isinstance(number, torch.Tensor):  # a constant tensor
        return _by_tensor(node, tensors[0], number, target in _DIVIDES, kwargs, args, walk.of,
                          walk.size)
    if len(tensors) != 1 or not isinstance(number, (int, float)) or isinstance(
            number, bool) or not math.isfinite(number):
        return "multiplies the signal by something other than a finite number"
    if target in _DIVIDES:
        rounding = kwargs.get("rounding_mode", args[2] if len(args) > 2 else None)
        if tensors != [source] or number == 0 or rounding is not None:
            return "divides other than the signal by a nonzero number (or rounds)"
        return walk.of(source) / abs(Fraction(float(number)))
    return abs(Fraction(float(number))) * walk.of(tensors[0])


def _cast(node: torch.fx.Node, source: Any, walk: _Walk) -> Fraction | str | None:
    """A cast between floating (or complex) dtypes: its input's bound, refused down to a
    dtype of less than 32 bits; None where the call is no such cast (another rule may
    apply)."""
    dtypes: list[Any] = [getattr(walk.meta(n), "dtype", None) for n in (node, source)]
    if not (all(d is not None and (d.is_floating_point or d.is_complex) for d in dtypes)
            and [n for n in node.all_input_nodes if n in walk.bound] == [source]):
        return None
    if dtypes[0].itemsize < (8 if dtypes[0].is_complex else 4) and (  # half, bfloat16,
            dtypes[1] != dtypes[0]):  # float8, complex32 (a review)
        return (f"casts the signal down to {dtypes[0]}, whose rounding (and float16's "
                "overflow beyond 65504) no Lipschitz constant bounds")  # (a hunt)
    return walk.of(source)


def _kept(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
          walk: _Walk) -> Fraction | str:
    """A map that keeps every entry, or a basic slice of them (a reshape, a permutation, an
    index by constants): its input's bound, if its sizes and indices are fixed."""
    target = node.target
    computed_sizes: list[torch.fx.Node] = []
    torch.fx.node.map_arg((args[1:], {k: v for k, v in kwargs.items() if k != "input"}),
                          computed_sizes.append)
    # a reshape's first size is the batch's; any other size from the batch size makes one
    # sample's map depend on it (a review: reshape(b, 1 + 3 * (b // 4), -1), flatten(1 -
    # x.shape[0] // 4), the same at batches one to three)
    first = args[1] if len(args) > 1 and target in ("view", "reshape", torch.reshape) \
        else None
    first = first[0] if isinstance(first, (tuple, list)) and first else first
    if not _direct_batch(first):  # (b - b // 4 first, or a tuple computed from shapes:
        first = None  # a fourth review)
    batch_sized = [n for n in computed_sizes if n in walk.tainted and n is not first]
    computed_sizes = [n for n in computed_sizes if not walk.static(n)] + batch_sized
    if computed_sizes:  # (a review: a crop at the argmax, a reshape by a count of the
        # signal: maps that jump with the input, no Lipschitz constant at all)
        return (f"takes a size or index computed from the signal "
                f"({computed_sizes[0].name!r})")
    value = walk.of(source)  # (refused first if the source is no floating tensor)
    if _moves_batch(target, args, kwargs, len(walk.meta(source).shape)):
        return "moves the batch axis (the bound is of a map of one sample)"
    if getattr(walk.meta(node), "dtype", None) != getattr(walk.meta(source), "dtype", None):
        return "changes the signal's dtype"  # x.view(torch.int32): no reshape
    return value


def _elementwise(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
                 walk: _Walk) -> Fraction | str:
    """Any other call on the signal alone: an activation's (or clamp's, dropout's) known
    constant, a linear function's certified bound (``walk.functional``), or the caller's
    constant for the node; its input's bound times that."""
    target = node.target
    signals = [n for n in node.all_input_nodes if n in walk.bound]
    if signals != [source]:  # (clamp(x, min=y) of two signals: no rule)
        return "takes the signal other than as its one input"
    computed: list[torch.fx.Node] = []
    torch.fx.node.map_arg((args[1:], {k: v for k, v in kwargs.items() if k != "input"}),
                          computed.append)
    computed = [n for n in computed if not (n in walk.sizes and walk.static_int(n))]
    if computed:  # (F.leaky_relu(x, x.shape[-1] / 100): an argument from the signal's shape)
        return f"has an argument computed from the signal ({computed[0].name!r})"
    # sizes fixed by the traced shape (a U-Net's F.pad by x2.size(2) - x1.size(2)): values
    args = [torch.fx.node.map_arg(a, lambda n: walk.sizes.get(n, n)) if i else a
            for i, a in enumerate(args)]
    kwargs = {k: v if k == "input" else torch.fx.node.map_arg(v, lambda n: walk.sizes.get(n, n))
              for k, v in kwargs.items()}
    function = function_name(target)
    constant = function_constant(target, args, kwargs)
    elementwise = constant is not None  # (an activation, clamp, dropout: entry by entry)
    complex_ = any(getattr(getattr(walk.meta(n), "dtype", None), "is_complex", False)
                   for n in (node, source))
    if constant is not None and complex_:  # (a review: tanh(iy) = i tan(y) has poles)
        return ("takes a complex signal, where the constant known for the real function "
                "does not hold")
    assumed = walk.assumed
    if constant is None and walk.functional is not None and node.op == "call_function":
        found = walk.functional(target, list(args), kwargs, tuple(walk.meta(source).shape[1:]))
        if isinstance(found, str):
            return found
        constant = found
        if target in MAX_POOL_F and assumed is not None and constant is not None:
            assumed.append(f"{node.name} ({function}(), {float(constant):g})")
    elif constant is not None and assumed is not None:  # (a new user's trial: the report
        # listed none of these, and said it assumed none)
        assumed.append(f"{node.name} ({function}()" + (
            ")" if constant == 1 else f", {float(constant):g})"))
    given = walk.given
    yours = None if given is None or constant is not None else given.get(node.name)
    if yours is not None:  # the caller's, for this node alone, where no rule applies: taken
        # entry by entry, so that a broadcast signal counts its copies (a review: clamp(x,
        # min=t) with a bigger t, given 1, was bounded by 1 where its constant is 8)
        constant, elementwise = Fraction(yours), True
        if assumed is not None:
            assumed.append(f"{node.name} ({function}(), {yours!r} given)")
    if constant is None:
        return (f"is not a call whose Lipschitz constant is known here (lipschitz_constants="
                f"{{{node.name!r}: L}} gives this node one, yours)")
    whole, part = walk.size(node), walk.size(source)
    if elementwise and whole is not None and part and whole > part:
        # an elementwise function whose other operand broadcasts the signal (clamp(x, min=t)
        # with a bigger t, a review): each entry repeated whole/part times
        if whole % part:
            return "broadcasts the signal to a shape that is no whole number of copies of it"
        return constant * _sqrt_up(Fraction(whole // part)) * walk.of(source)
    return constant * walk.of(source)
