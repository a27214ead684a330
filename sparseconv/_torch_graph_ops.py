"""A traced graph's nodes as linear ops (:class:`_GraphBuilder`), for
:func:`sparseconv._torch_graph._build_graph`.

Each node that depends on the input becomes an :class:`_Op`: its forward on batched arrays
and the adjoint of each of its inputs -- a module's layer, a reshape or transposition, a
sum, a product by a constant, a concatenation, a slice, a functional call that a module of
:mod:`sparseconv.torch` computes; anything else is refused, naming the node.
"""

from __future__ import annotations

import functools
import math
import operator as pyop
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F

from sparseconv._memory import reworded
from sparseconv._torch_calls import (
    _ADD,
    _CAT,
    _DIVIDE,
    _DROPOUT_F,
    _MUL,
    _NEG,
    _PAD_F,
    _RESHAPE,
    _SCALE,
    _TRANSPOSE,
    EINSUM,
    EINSUM_SUBLIST,
    MATMUL,
    REPEATS,
    RUN_BY_TORCH,
    WHERE,
    _functional_module,
    acts_per_sample,
    by_keyword,
    call_on,
    einsum_constants_refusal,
    einsum_operands,
    identity_in_eval,
    inside,
    matmul_operands,
    per_sample_arguments,
    repeat_counts,
    transposition_axes,
    where_operands,
    without_constants,
)
from sparseconv._torch_fixed_layers import _padding
from sparseconv._torch_kinds import (
    _CONV_T,
)
from sparseconv._torch_layer_base import _identity, _Layer, _numpy
from sparseconv._torch_layers import _layer
from sparseconv._torch_probe import error_line

__all__: list[str] = []

# The probe's batch: a reshape that keeps it first keeps every sample's values in C order, and
# one that moves it (``x.view(-1)``) is seen and refused.
_BATCH = 2


@dataclass(frozen=True, eq=False)
class _Op:
    """One linear node of the graph, on batched arrays ``(k, *shape)`` (k columns).

    ``forward(inputs, affine)`` adds the node's constants (biases, fill values, added
    tensors) only when ``affine``; ``backward(g)`` gives the adjoint's cotangent of each input.
    """

    name: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    forward: Callable[[list[np.ndarray], bool], np.ndarray]
    backward: Callable[[np.ndarray], list[np.ndarray]]
    layer: _Layer | None = None


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of broadcasting ``(k, *shape)`` to ``g.shape``: sum the broadcast axes."""
    extra = g.ndim - 1 - len(shape)
    g = g.sum(axis=tuple(range(1, 1 + extra))) if extra > 0 else g
    axes = tuple(i + 1 for i, n in enumerate(shape) if n == 1 and g.shape[i + 1] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _constant(value) -> np.ndarray | float:
    if isinstance(value, torch.Tensor):
        return _numpy(value)
    return float(value)


def _held(value: Any) -> Any:
    """A constant argument as an op holds it: a tensor copied (the model's own buffer or
    parameter changes when it trains; a review found an index buffer read live), anything
    else as it is."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _held_index(value: Any) -> Any:
    """An index as an op holds it: :func:`_held` in its slices and tuples too (reviews:
    ``x[:, self.idx]``, then ``x[:, self.a:self.b]`` and ``x[:, (self.i, self.j)]``, read
    their buffers live: after ``idx.copy_(...)`` the operator was a mix of the old scale and
    the new index, matching neither model)."""
    if isinstance(value, slice):
        return slice(*(_held_index(v) for v in (value.start, value.stop, value.step)))
    if isinstance(value, (tuple, list)):
        return type(value)(_held_index(v) for v in value)
    return _held(value)


def _layer_op(name, index, layer: _Layer, shape) -> _Op:
    op = layer.operator()
    adjoint = op.H  # built once: a convolution's adjoint operator has its own set-up
    offset = None if layer.offset is None else layer.offset.reshape(layer.output_shape)

    def forward(xs, affine):
        k = xs[0].shape[0]
        y = (op @ xs[0].reshape(k, -1).T).T.reshape(k, *layer.output_shape)
        return y + offset if affine and offset is not None else y

    def backward(g):
        k = g.shape[0]
        return [(adjoint @ g.reshape(k, -1).T).T.reshape(k, *layer.input_shape)]

    return _Op(name, (index,), shape, forward, backward, layer)


def _reshape_op(name, index, in_shape, shape) -> _Op:
    return _Op(name, (index,), shape, lambda xs, affine: xs[0].reshape(-1, *shape),
               lambda g: [g.reshape(-1, *in_shape)],
               _Layer(name, in_shape, shape,
                      functools.partial(_identity, math.prod(shape), name)))


def _describe(node) -> str:
    """How an error names a graph node: a module by its qualified name, a call by its node."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    return f"node {node.name!r} ({node.op} {name}){inside(node)}"


class _GraphBuilder:
    """Translates the dependent nodes of a traced graph into :class:`_Op` objects."""

    def __init__(self, gm, values: dict):
        self.gm, self.values = gm, values
        self.index: dict = {}
        self.ops: list[_Op] = []

    def refuse(self, node, why: str) -> NoReturn:
        raise TypeError(f"network_operator: {_describe(node)} {why}")

    def value(self, a):
        """A constant argument's value (a dependent node is kept as the node)."""
        return torch.fx.node.map_arg(a, lambda n: n if n in self.index else self.values[n])

    def shape(self, node) -> tuple[int, ...]:
        return tuple(self.values[node].shape[1:])

    def add(self, node, make) -> None:
        try:
            op = make()
        except (TypeError, ValueError) as exc:
            if str(exc).startswith("network_operator:"):
                raise
            raise reworded(exc, f"network_operator: {_describe(node)}: {exc}") from exc
        if op.shape != self.shape(node):
            raise ValueError(f"network_operator: {_describe(node)} gives {op.shape}, the "
                             f"model {self.shape(node)}")
        self.index[node] = len(self.ops)
        self.ops.append(op)

    def translate(self, node) -> None:
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            source = node.args[0] if node.args else node.kwargs.get("input")  # conv(input=x)
            if source not in self.index or len(node.all_input_nodes) > 1 and not isinstance(
                    module, _CONV_T):
                self.refuse(node, "must take the network's signal as its only tensor")
            output_size = self.value(node.kwargs.get("output_size", (node.args[1:] or [None])[0]))
            self.add(node, lambda: _layer_op(node.target, self.index[source], _layer(
                module, self.shape(source), output_size), self.shape(node)))
            return
        target = node.target
        args, kwargs = list(node.args), dict(node.kwargs)
        if node.op == "call_function":
            args, kwargs = by_keyword(target, args, kwargs, lambda a: type(self.values[a]))
        self.add(node, lambda: self.functional(node, target, args, kwargs))

    def dependent(self, a) -> bool:
        return isinstance(a, torch.fx.Node) and a in self.index

    def functional(self, node, target, args, kwargs) -> _Op:
        shape = self.shape(node)
        if target in _ADD:
            return self.add_op(node, args, kwargs, _ADD[target])
        if target in _MUL:
            return self.mul_op(node, target, args, kwargs)
        if target in MATMUL:
            return self.matmul_op(node, args, kwargs)
        if target in EINSUM:
            return self.einsum_op(node, args, kwargs)
        if target in WHERE:
            return self.where_op(node, target, args, kwargs)
        if target in _CAT or target is torch.stack:
            return self.cat_op(node, kwargs.get("tensors", args[0] if args else None),
                               kwargs.get("dim", args[1] if len(args) > 1 else 0),
                               stack=target is torch.stack)
        source = kwargs.get("input", args[0] if args else None)
        if not self.dependent(source):  # (the signal inside a list: torch.stack, say)
            self.refuse(node, "is not linear, or not a call network_operator maps" if any(
                self.dependent(a) for a in node.all_input_nodes) else
                "does not act on the network's signal")
        i, in_shape = self.index[source], self.shape(source)
        if target in _RESHAPE or (target in _DROPOUT_F and not kwargs.get("training", True)) \
                or identity_in_eval(target, self.value(args), self.value(kwargs)):
            return _reshape_op(node.name, i, in_shape, shape)
        if target in _TRANSPOSE:
            return self.permute_op(node, target, i, in_shape, args, kwargs)
        if target in REPEATS:
            return self.repeat_op(node, target, i, in_shape, args, kwargs)
        if target is pyop.getitem:
            return self.getitem_op(node, i, in_shape, self.value(args[1]))
        if target in ("sum", torch.sum, "mean", torch.mean):
            return self.sum_op(node, target, i, in_shape, args, kwargs)
        if target is F.pad:
            pad, mode = self.value(kwargs["pad"]), kwargs.get("mode", "constant")
            if mode not in _PAD_F:
                self.refuse(node, f"pads in mode {mode!r}, not one of {tuple(_PAD_F)}")
            layer = _padding("F.pad", in_shape, pad, _PAD_F[mode],
                             float(self.value(kwargs.get("value")) or 0.0))
            return _layer_op(node.name, i, layer, shape)
        if target == "expand_as":  # (y.expand_as(x): x read for its shape alone, every
            # value of the signal with the batch first; a new user's trial found it refused)
            other = kwargs.get("other", args[1] if len(args) > 1 else None)
            sizes = self.shape(other) if self.dependent(other) else None
            if sizes is None:
                return self.refuse(node, "expands the signal as a value that is no signal's")
            return self.run_op(node, lambda x: x.expand(-1, *sizes), source)
        if target in RUN_BY_TORCH:
            return self.torch_op(node, target, source, args, kwargs)
        constants = {k: self.value(v) for k, v in kwargs.items() if k != "input"}
        module = (_functional_module(target, constants, in_shape) if not isinstance(target, str)
                  else None)
        if module is None:
            return self.refuse(node, "is not linear, or not a call network_operator maps")
        return _layer_op(node.name, i, _layer(module.eval(), in_shape), shape)

    def per_sample(self, node, value) -> np.ndarray:
        """A constant combined with the signal, as one sample's. One expanded to the probe's
        batch (``x.shape[0]`` as a size: CoordConv's coordinates) had that batch baked in (a
        review: the operator then failed on any other); where its samples are equal, its first
        stands for all, and otherwise it is refused."""
        value = np.asarray(_constant(value))
        if value.ndim == len(self.shape(node)) + 1 and value.shape[0] == _BATCH:
            if not (value == value[:1]).all():
                self.refuse(node, "combines the signal with a constant that differs between "
                            "the samples of the batch")
            return value[:1]
        return value

    def add_op(self, node, args, kwargs, sign) -> _Op:
        a = kwargs.get("input", args[0] if args else None)
        b = kwargs.get("other", args[1] if len(args) > 1 else None)
        if len(args) > 2:  # add(input, alpha, other): deprecated, and still run by PyTorch
            return self.refuse(node, "uses the deprecated add/sub(input, alpha, other) form "
                               "(pass alpha= by keyword)")
        alpha = self.value(kwargs.get("alpha", 1.0))
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not (
                math.isfinite(alpha)):
            return self.refuse(node, f"adds with an alpha that is not a finite number "
                               f"({alpha!r})")
        terms = [(a, -alpha), (b, 1.0)] if node.target is torch.rsub else [
            (a, 1.0), (b, sign * alpha)]  # (rsub: other - alpha * input)
        live = [(self.index[t], c, self.shape(t)) for t, c in terms if self.dependent(t)]
        fixed = [(self.per_sample(node, self.value(t)), c) for t, c in terms
                 if not self.dependent(t)]

        def forward(xs, affine):
            y = sum(c * x for x, (_, c, _) in zip(xs, live))
            if affine:
                y = y + sum(c * v for v, c in fixed)
            return np.broadcast_to(y, (y.shape[0], *self.shape(node))).copy()

        def backward(g):
            return [c * _unbroadcast(g, s) for _, c, s in live]

        return _Op(node.name, tuple(i for i, _, _ in live), self.shape(node), forward, backward)

    def mul_op(self, node, target, args, kwargs) -> _Op:
        if target in _NEG:
            a, factor = kwargs.get("input", args[0] if args else None), -1.0
        else:
            a = kwargs.get("input", args[0] if args else None)
            b = kwargs.get("other", args[1] if len(args) > 1 else None)
            if self.dependent(b) and target in _SCALE:
                a, b = b, a
            if self.dependent(b) or not self.dependent(a):
                self.refuse(node, "multiplies or divides two signals: not linear")
            if kwargs.get("rounding_mode") is not None:
                self.refuse(node, "rounds: not linear")
            factor = self.per_sample(node, self.value(b))
            with np.errstate(divide="ignore", invalid="ignore"):
                if target in _DIVIDE:
                    factor = 1.0 / factor
            if not np.isfinite(factor).all():  # (a review: by an infinite buffer, the
                # operator returned inf and nan where the model did)
                self.refuse(node, "multiplies the signal by a constant with an entry that is "
                            "not finite (or divides it by one with a zero): not a linear map "
                            "of finite entries")
        in_shape = self.shape(a)

        def forward(xs, affine):
            return xs[0] * factor

        return _Op(node.name, (self.index[a],), self.shape(node), forward,
                   lambda g: [_unbroadcast(g * factor, in_shape)])

    def matmul_op(self, node, args, kwargs) -> _Op:
        """``x @ W`` (``W`` on the last axis) or ``W @ x`` (on the one before), ``W`` a
        constant matrix or vector; its adjoint multiplies by ``W.T`` on the same side."""
        a, b = matmul_operands(args, kwargs)
        if self.dependent(a) == self.dependent(b):
            self.refuse(node, "multiplies two signals: not linear" if self.dependent(a) else
                        "does not act on the network's signal")
        left = self.dependent(a)
        signal, matrix = (a, self.value(b)) if left else (b, self.value(a))
        if not isinstance(matrix, torch.Tensor) or matrix.ndim not in (1, 2):
            self.refuse(node, "multiplies the signal by something other than a constant "
                        "matrix or vector (a batch of matrices is not mapped)")
        in_shape = self.shape(signal)
        if len(in_shape) < (1 if left else 2):  # (W @ x of a 2-D x mixes the samples)
            self.refuse(node, "multiplies along the batch axis")
        w = np.asarray(_constant(matrix))

        def forward(xs, affine):
            return xs[0] @ w if left else w @ xs[0]

        def backward(g):
            if w.ndim == 1:  # (the vector's axis was contracted away)
                return [g[..., None] * w if left else w[:, None] * g[..., None, :]]
            return [g @ w.T if left else w.T @ g]

        return _Op(node.name, (self.index[signal],), self.shape(node), forward, backward)

    def cat_op(self, node, tensors, dim, stack: bool = False) -> _Op:
        """``torch.cat(tensors, dim)``, or ``torch.stack`` (``stack``): the pieces along a new
        axis ``dim`` (a new user's trial found it refused)."""
        if not isinstance(tensors, (list, tuple)):
            self.refuse(node, "concatenates a sequence the graph computes (not a list of "
                        "tensors)")
        pieces = [(self.index[t], self.shape(t)) if self.dependent(t) else
                  self.per_sample(node, self.value(t)) for t in tensors]
        ndim = len(self.shape(node)) + 1
        axis = int(dim) % ndim
        if axis == 0:
            self.refuse(node, f"{'stacks' if stack else 'concatenates'} along the batch axis")
        if stack:  # (each piece one index of the new axis)
            def split(g):
                return [np.take(g, j, axis=axis) for j in range(len(pieces))]
        else:
            sizes = [p[1][axis - 1] if isinstance(p, tuple) else p.shape[axis] for p in pieces]
            bounds = np.cumsum(sizes)[:-1]

            def split(g):
                return np.split(g, bounds, axis=axis)
        join = np.stack if stack else np.concatenate

        def forward(xs, affine):
            it, k = iter(xs), xs[0].shape[0] if xs else 1
            parts = [next(it) if isinstance(p, tuple) else
                     np.broadcast_to(p if affine else 0 * p, (k, *p.shape[1:])) for p in pieces]
            return join(parts, axis=axis)

        def backward(g):
            return [part for part, p in zip(split(g), pieces) if isinstance(p, tuple)]

        return _Op(node.name, tuple(p[0] for p in pieces if isinstance(p, tuple)),
                   self.shape(node), forward, backward)

    def permute_op(self, node, target, i, in_shape, args, kwargs) -> _Op:
        try:
            axes = transposition_axes(target, [self.value(a) for a in args],
                                      {k: self.value(v) for k, v in kwargs.items()},
                                      len(in_shape) + 1)
        except (TypeError, ValueError, IndexError) as exc:
            self.refuse(node, f"transposes axes it gives in a way not read here ({exc})")
        if axes[0] != 0:
            self.refuse(node, "moves the batch axis")
        inverse = list(np.argsort(axes))
        return _Op(node.name, (i,), self.shape(node),
                   lambda xs, affine: np.ascontiguousarray(xs[0].transpose(axes)),
                   lambda g: [np.ascontiguousarray(g.transpose(inverse))])

    def repeat_op(self, node, target, i, in_shape, args, kwargs) -> _Op:
        """``x.repeat(...)`` or a tile: ``np.tile`` of the samples, and its adjoint the sum
        of the copies (a new user's trial found ``x.repeat(1, 2, 1, 1)`` refused)."""
        try:
            counts = repeat_counts(target, [self.value(a) for a in args],
                                   {k: self.value(v) for k, v in kwargs.items()},
                                   len(in_shape) + 1)
        except ValueError as exc:
            self.refuse(node, f"repeats by {exc}")
        if counts[0] != 1:
            self.refuse(node, "repeats along the batch axis")
        split = [d for c, n in zip(counts[1:], in_shape) for d in (c, n)]
        copies = tuple(range(1, 2 * len(in_shape), 2))
        return _Op(node.name, (i,), self.shape(node),
                   lambda xs, affine: np.tile(xs[0], counts),
                   lambda g: [g.reshape(g.shape[0], *split).sum(axis=copies)])

    def getitem_op(self, node, i, in_shape, index) -> _Op:
        """``x[index]``, run by torch itself on the samples (forward), and its adjoint by
        torch.autograd (indexing's backward, which adds where an entry is read twice): numpy's
        rules differ from torch's where integers meet arrays (hunts found them read wrong)."""
        index = index if isinstance(index, tuple) else (index,)
        entries = [v for part in index for v in (
            (part.start, part.stop, part.step) if isinstance(part, slice) else
            part if isinstance(part, list) else (part,))]
        if any(isinstance(v, torch.fx.Node) for v in entries):
            self.refuse(node, "indexes by a value computed from the signal")
        if Ellipsis in index:  # x[..., a:b]: spelled out, so that the batch axis shows
            at = index.index(Ellipsis)
            named = sum(part is not None and part is not Ellipsis and not isinstance(
                part, bool) and not (isinstance(part, torch.Tensor) and part.dtype == torch.bool)
                for part in index)  # (None and True add an axis, False an empty one)
            named += sum(part.ndim for part in index if isinstance(part, torch.Tensor)
                         and part.dtype == torch.bool)  # (a mask stands for its axes)
            index = (*index[:at], *[slice(None)] * (len(in_shape) + 1 - named), *index[at + 1:])
        whole = (None, 0)  # x[::1] and x[0:] keep the batch too (a review)
        if not index or not (isinstance(index[0], slice) and index[0].start in whole
                             and index[0].stop is None and index[0].step in (None, 1)):
            self.refuse(node, "indexes the batch axis (x[:, ...] keeps it)")
        index = tuple(torch.as_tensor(v) if isinstance(v, list) else _held_index(v)
                      for v in index)
        for batch in (1, 7):  # the batch axis kept first, whatever its size: where torch
            # moves index arrays' axes to the front (arrays separated by a slice, or by
            # Ellipsis: x[:, True, ..., mask], True being one), the probe's batch of two can
            # match their length by chance (a hunt), never 1, 2 and 7 at once
            if tuple(torch.zeros(()).expand(batch, *in_shape)[index].shape) != (
                    batch, *self.shape(node)):
                self.refuse(node, "indexes with arrays whose axes torch moves before the "
                            "batch axis (arrays separated by a slice or Ellipsis), or makes the "
                            "batch's size matter")

        def forward(xs, affine):  # (writable: torch warns on a read-only array, a caller's)
            x = torch.from_numpy(np.require(xs[0], np.float64, ["C", "W"]))
            return x[index].numpy().copy()

        def backward(g):
            z = torch.zeros((g.shape[0], *in_shape), dtype=torch.float64, requires_grad=True)
            with torch.enable_grad():
                (gz,) = torch.autograd.grad(z[index], z, torch.from_numpy(
                    np.require(g, np.float64, ["C", "W"])))
            return [gz.numpy()]

        return _Op(node.name, (i,), self.shape(node), forward, backward)

    def where_op(self, node, target, args, kwargs) -> _Op:
        """``torch.where(condition, a, b)`` (``x.masked_fill(mask, value)`` is ``where(mask,
        value, x)``) by a constant boolean condition, ``a`` and ``b`` the signal or
        constants: the signal kept where it is chosen, the constants added in the affine
        part; the adjoint keeps the cotangent where each operand was chosen."""
        condition, a, b = where_operands(target, args, kwargs)
        if condition is None:
            self.refuse(node, "gives the indices of a condition's true entries")
        condition = self.value(condition)
        if self.dependent(condition) or not isinstance(condition, torch.Tensor) or (
                condition.dtype != torch.bool):
            self.refuse(node, "selects by a condition that is no constant boolean tensor")
        keep = np.asarray(self.per_sample(node, condition), dtype=bool)
        out = self.shape(node)
        live, fixed = [], []
        for operand, chosen in ((a, keep), (b, ~keep)):
            if self.dependent(operand):
                live.append((self.index[operand], self.shape(operand), chosen))
                continue
            value = self.value(operand)
            if isinstance(value, complex) or isinstance(value, torch.Tensor) and (
                    value.is_complex()):  # (a review: float() of 1j, or its real part kept)
                self.refuse(node, "selects a complex constant (the operator is real)")
            fixed.append((self.per_sample(node, value), chosen))
        if not live:
            self.refuse(node, "does not act on the network's signal")

        def forward(xs, affine):
            y = sum(np.where(chosen, x, 0.0) for x, (_, _, chosen) in zip(xs, live))
            if affine:
                y = y + sum(np.where(chosen, v, 0.0) for v, chosen in fixed)
            return np.broadcast_to(y, (y.shape[0], *out)).copy()

        def backward(g):
            return [_unbroadcast(np.where(chosen, g, 0.0), shape) for _, shape, chosen in live]

        return _Op(node.name, tuple(i for i, _, _ in live), out, forward, backward)

    def einsum_op(self, node, args, kwargs) -> _Op:
        """``torch.einsum`` of the signal (once) and constant tensors: linear in the signal,
        run by torch as :meth:`torch_op` runs its calls (a diagonal, a trace, a constant
        summed over a label of its own: any such contraction)."""
        equation, operands = einsum_operands(args, kwargs)
        if not isinstance(equation, str):
            self.refuse(node, EINSUM_SUBLIST)
        signals = [k for k, o in enumerate(operands) if self.dependent(o)]
        if len(signals) != 1 or any(self.dependent(a) for a in node.all_input_nodes
                                    if a is not operands[signals[0]]):
            self.refuse(node, "contracts two values of the signal, or reads it other than "
                        "as an operand" if signals else "does not act on the network's signal")
        constants = [self.value(o) if k != signals[0] else None
                     for k, o in enumerate(operands)]
        why = einsum_constants_refusal([c for k, c in enumerate(constants) if k != signals[0]])
        if why:
            self.refuse(node, why)
        # copies, as every other op holds its constants: the model's own tensors change when
        # it trains (a review: a float64 weight's .to(float64) is the weight itself)
        held = [c.detach().to(torch.float64, copy=True) if c is not None else None
                for c in constants]

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.einsum(equation, *[x if c is None else c for c in held])

        return self.run_op(node, run, operands[signals[0]])

    def torch_op(self, node, target, source, args, kwargs) -> _Op:
        """A linear call of :data:`RUN_BY_TORCH` on the signal alone, its other arguments
        constants: run by torch itself (:meth:`run_op`)."""
        if any(self.dependent(a) for a in node.all_input_nodes if a is not source):
            self.refuse(node, "takes the signal other than as its one tensor")
        held = per_sample_arguments(target, *torch.fx.node.map_arg(  # (the constants, as
            (args, kwargs), lambda n: n if n is source else _held(self.value(n))), _BATCH)
        if isinstance(held, str):  # values: copies)
            self.refuse(node, held)
        return self.run_op(node, call_on(target, *without_constants(*held), source), source,
                           call_on(target, *held, source))

    def run_op(self, node, run, source, affine=None) -> _Op:
        """A linear call ``run`` of the signal ``source`` (its other arguments constants):
        run by torch itself on the samples (forward) and its adjoint by torch.autograd, as
        :meth:`getitem_op` is; refused where it does not act on each sample alone
        (``x.flip(0)``, ``x.cumsum(0)``: checked on a random batch of three against each
        sample run alone). ``affine``: the call with its constants, where ``run`` is its
        linear part (``diff``'s ``prepend``: :func:`per_sample_arguments`)."""
        in_shape, i = self.shape(source), self.index[source]
        try:
            out_shape = acts_per_sample(run, in_shape)
        except (RuntimeError, IndexError, TypeError, ValueError) as exc:
            self.refuse(node, f"does not run on a batch of three ({error_line(exc)})")
        if out_shape != self.shape(node):
            self.refuse(node, "does not act on each sample alone (it reads or moves the "
                        "batch axis)")

        def forward(xs, with_constants):  # (writable: torch warns on a read-only array,
            # a caller's)
            call = affine if with_constants and affine is not None else run
            return call(torch.from_numpy(np.require(xs[0], np.float64, ["C", "W"]))
                        ).numpy().copy()

        def backward(g):
            z = torch.zeros((g.shape[0], *in_shape), dtype=torch.float64, requires_grad=True)
            with torch.enable_grad():
                (gz,) = torch.autograd.grad(run(z), z, torch.from_numpy(
                    np.require(g, np.float64, ["C", "W"])))
            return [gz.numpy()]

        return _Op(node.name, (i,), self.shape(node), forward, backward)

    def sum_op(self, node, target, i, in_shape, args, kwargs) -> _Op:
        # (axis= and keepdims= are PyTorch's numpy-style aliases: a review found axis= read
        # as no dim, "reduces over the batch axis")
        dim = self.value(kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1
                                                      else None)))
        keepdim = bool(self.value(kwargs.get("keepdim", kwargs.get(
            "keepdims", args[2] if len(args) > 2 else False))))
        ndim = len(in_shape) + 1
        if dim is None or dim == []:
            self.refuse(node, "reduces over the batch axis")
        axes = tuple(sorted({int(d) % ndim for d in (dim if isinstance(dim, (tuple, list))
                                                     else (dim,))}))
        if 0 in axes:
            self.refuse(node, "reduces over the batch axis")
        count = math.prod(in_shape[a - 1] for a in axes)
        if target in ("mean", torch.mean) and not count:
            self.refuse(node, "averages over an empty axis (NaN): not linear")
        scale = 1.0 / count if target in ("mean", torch.mean) else 1.0

        def backward(g):
            g = g if keepdim else np.expand_dims(g, axes)
            return [np.broadcast_to(g * scale, (g.shape[0], *in_shape)).copy()]

        return _Op(node.name, (i,), self.shape(node),
                   lambda xs, affine: xs[0].sum(axis=axes, keepdims=keepdim) * scale, backward)
