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
* ``c * x``, ``x / c`` for a number ``c``: ``|c| L(x)``;
* an elementwise activation called as a function (``F.relu``, ``torch.tanh``, ...): its
  constant times its input's; a reshape, permutation or basic slice: its input's.

Anything else (a product of two signals, advanced indexing, a functional call whose norm the
report has no row for) gives no bound, and the node is named. The rule ``L(f + g) <= L(f) +
L(g)`` and ``L(f o g) <= L(f) L(g)`` make the result a Lipschitz bound of the whole forward.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["graph_bound"]

_ADDS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub,
         "add", "add_", "sub", "sub_"}
_SCALES = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIVIDES = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_CATS = {torch.cat, torch.concat, torch.concatenate}
# maps that keep every entry (or a basic slice of them): the norm of a change cannot grow
_KEEPS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
          torch.unsqueeze, torch.swapaxes, torch.movedim, "flatten", "view", "reshape",
          "contiguous", "permute", "transpose", "squeeze", "unsqueeze", "swapaxes", "movedim",
          "clone", "detach", "view_as", "reshape_as"}
_ONE = {F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.hardtanh, torch.tanh, F.tanh,
        F.softplus, "relu", "relu_", "tanh", "tanh_"}


def _activation(target, args: tuple, kwargs: dict) -> Fraction | None:
    """The Lipschitz constant of an elementwise activation called as a function."""
    if target in _ONE:
        return Fraction(1)
    if target in (torch.sigmoid, F.sigmoid, "sigmoid", "sigmoid_"):
        return Fraction(1, 4)
    if target in (F.leaky_relu, F.leaky_relu_):
        slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
        return max(Fraction(1), abs(Fraction(float(slope))))
    if target in (F.elu, F.elu_):
        alpha = kwargs.get("alpha", args[1] if len(args) > 1 else 1.0)
        return max(Fraction(1), abs(Fraction(float(alpha))))
    return None


def _basic_index(index) -> bool:
    """A slice that selects each entry at most once (ints, slices, ``...``, ``None``)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


def _sqrt_up(value: Fraction) -> Fraction:
    """A rational upper bound on ``sqrt(value)``: exact for the square of a rational, else
    within a float step of it."""
    top, bottom = math.isqrt(value.numerator), math.isqrt(value.denominator)
    if top * top == value.numerator and bottom * bottom == value.denominator:
        return Fraction(top, bottom)
    root = Fraction(math.nextafter(math.sqrt(float(value)), math.inf))
    while root * root < value:
        root = Fraction(math.nextafter(float(root), math.inf))
    return root


#: What :func:`graph_bound` is told of one module call: its bound, ``("folded", name)`` for
#: a BatchNorm folded into the convolution ``name`` (whose bound covers both), or None.
Factor = Fraction | tuple[str, str] | None


class _Opaque(Exception):
    """A value of the signal that is no single tensor, read as one."""


def _in_place(node: torch.fx.Node, module: nn.Module | None) -> bool:
    """Whether ``node`` changes its first argument in place (``x.relu_()``, ``x += y``, a
    module built with ``inplace=True``)."""
    if module is not None:
        return bool(getattr(module, "inplace", False))
    target = node.target
    if isinstance(target, str):
        return target.endswith("_") and not target.endswith("__")
    return target in (operator.iadd, operator.isub, operator.imul, operator.itruediv) or \
        getattr(target, "__name__", "").endswith("_")


def graph_bound(model: nn.Module, factors: Callable[[str, int], Factor],
                probe: torch.Tensor) -> tuple[Fraction | None, str]:
    """``(L, "")``, a Lipschitz bound of ``model``'s forward, or ``(None, reason)``.

    ``factors(name, k)``: what is known of the ``k``-th call (from 0) of the module named
    ``name`` (:data:`Factor`). ``probe``: an input batch of one, run once to learn every
    node's shape (broadcasting). An operation that changes its input in place raises that
    input's bound to its own for the nodes that read it afterwards.
    """
    try:
        graph = torch.fx.Tracer().trace(model)
        module = torch.fx.GraphModule(model, graph)
        with torch.no_grad():
            ShapeProp(module).propagate(probe)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return None, (f"torch.fx cannot trace {type(model).__name__} "
                      f"({type(exc).__name__}: {exc})")
    calls: dict[str, int] = {}
    bound: dict[torch.fx.Node, Fraction] = {}
    opaque: set[torch.fx.Node] = set()  # values of the signal that are no tensor (a size)

    def size(a) -> int | None:
        meta = a.meta.get("tensor_meta") if isinstance(a, torch.fx.Node) else None
        shape = getattr(meta, "shape", None)  # (a tuple of outputs has no one shape)
        return None if shape is None else math.prod(shape)

    def of(a) -> Fraction:
        """A node's bound: 0 for a constant; a value of the signal that is no single tensor
        (a shape, a tuple of outputs) has none, and reading it as one is refused."""
        if not isinstance(a, torch.fx.Node):
            return Fraction(0)
        if a in opaque:
            raise _Opaque(a)
        return bound.get(a, Fraction(0))

    def unsupported(node: torch.fx.Node, why: str) -> tuple[None, str]:
        target = getattr(node.target, "__name__", node.target)
        return None, f"node {node.name!r} ({node.op} {target}) {why}"

    for node in graph.nodes:
        if node.op == "placeholder":
            bound[node] = Fraction(1)
            continue
        if node.op == "output":
            result: Any = node.args[0]
            if not isinstance(result, torch.fx.Node) or result in opaque:
                return None, f"{type(model).__name__} does not return one tensor"
            return of(result), ""
        if node.op == "get_attr" or not any(n in bound or n in opaque
                                            for n in node.all_input_nodes):
            continue  # a constant
        if size(node) is None:  # a size, a shape, a tuple: no signal itself
            opaque.add(node)
            continue
        try:
            found = _bound(node, bound, of, size, factors, calls)
        except _Opaque as exc:
            return unsupported(node, f"reads {exc.args[0].name!r}, a value of the signal that "
                               "is no single tensor")
        if isinstance(found, str):
            return unsupported(node, found)
        bound[node] = found
        source = node.args[0] if node.args else node.kwargs.get("input")
        owner = module.get_submodule(str(node.target)) if node.op == "call_module" else None
        if isinstance(source, torch.fx.Node) and source in bound and _in_place(node, owner):
            bound[source] = max(bound[source], found)  # later readers see the changed value
    return None, "the graph has no output"  # pragma: no cover - torch.fx always adds one


def _bound(node: torch.fx.Node, bound: dict, of: Callable, size: Callable,
           factors: Callable[[str, int], Factor], calls: dict[str, int]) -> Fraction | str:
    """One node's bound, from its inputs' (:func:`graph_bound`'s rules), or why there is
    none."""
    args: Any = node.args  # (torch.fx types its arguments as any Python value)
    kwargs: dict[str, Any] = dict(node.kwargs)
    source = args[0] if args else kwargs.get("input")
    if node.op == "call_module":
        signals = [n for n in node.all_input_nodes if n in bound]
        if signals != [source]:
            return "takes the signal other than as its one input"
        name = str(node.target)
        k = calls.get(name, 0)
        calls[name] = k + 1
        factor = factors(name, k)
        if isinstance(factor, tuple):  # its input must be that convolution's own output
            if not (isinstance(source, torch.fx.Node) and source.op == "call_module"
                    and source.target == factor[1]):
                return (f"is a BatchNorm folded into {factor[1]!r}, whose output it does not "
                        "take in the graph")
            factor = Fraction(1)
        if factor is None:
            return "has no certified bound nor known Lipschitz constant"
        return factor * of(source)
    target = node.target
    if target in _ADDS:
        alpha = abs(Fraction(float(kwargs.get("alpha", 1))))
        other = args[1] if len(args) > 1 else kwargs.get("other")
        total = Fraction(0)
        for operand, weight in ((source, Fraction(1)), (other, alpha)):
            if not (isinstance(operand, torch.fx.Node) and (operand in bound or
                                                             of(operand) > 0)):
                continue  # a constant added
            whole, part = size(node), size(operand)
            if whole is None or part is None or part == 0 or whole % part:
                return "adds operands whose sizes are not known"
            # broadcast: each entry of the operand repeated whole/part times
            total += weight * of(operand) * _sqrt_up(Fraction(whole // part))
        return total
    if target in _SCALES or target in _DIVIDES:
        other = args[1] if len(args) > 1 else kwargs.get("other")
        tensors = [a for a in (source, other) if isinstance(a, torch.fx.Node) and a in bound]
        number = other if tensors == [source] else source
        if len(tensors) != 1 or not isinstance(number, (int, float)) or isinstance(number, bool):
            return "multiplies the signal by something other than a number"
        if target in _DIVIDES:
            if number == 0:
                return "divides by zero"
            return of(tensors[0]) / abs(Fraction(float(number)))
        return abs(Fraction(float(number))) * of(tensors[0])
    if target in _CATS:
        parts = args[0] if args else kwargs.get("tensors", ())
        return _sqrt_up(sum((of(p) ** 2 for p in parts), Fraction(0)))
    if target in _KEEPS or (target is operator.getitem and _basic_index(args[1])):
        return of(source)
    constant = _activation(target, args, kwargs)
    if constant is None:
        return "is not a call whose Lipschitz constant is known here"
    return constant * of(source)
