"""The rules of :func:`sparseconv._torch_graph_bound.graph_bound`: one node's bound from its
inputs'.

:func:`_bound` dispatches on the node's call (the module docstring of
:mod:`sparseconv._torch_graph_bound` lists the rules): a module's certified bound or
constant, sums, products by numbers or constant tensors, concatenations, reductions,
reshapes and slices, casts, and elementwise functions with a known Lipschitz constant;
:class:`_Walk` holds what the walk over the graph knows so far.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import torch
import torch.fx
import torch.nn.functional as F

from sparseconv._torch_activations import (
    KNOWN_FUNCTIONS,
    NORM_REASON,
    function_constant,
    function_norm_slope,
    slope_text,
    warn_below_slope,
)
from sparseconv._torch_calls import (
    _ADD,
    _DIVIDE,
    _DROPOUT_F,
    _NEG,
    _NORMALIZED,
    _SCALE,
    _TRANSPOSE,
    EINSUM,
    EINSUM_SUBLIST,
    MATMUL,
    MAX_POOL_F,
    REPEATS,
    RUNNING,
    SELECTIONS,
    WHERE,
    acts_per_sample,
    call_on,
    einsum_constants_refusal,
    einsum_operands,
    einsum_split,
    function_name,
    identity_in_eval,
    matmul_operands,
    per_sample_arguments,
    repeat_counts,
    transposition_axes,
    where_operands,
)
from sparseconv._torch_graph_sizes import _direct_batch, _static_size, read_by_the_call
from sparseconv._torch_probe import error_line

__all__ = ["Factor", "FunctionalCall", "has_rule"]


class FunctionalCall(NamedTuple):
    """The graph's call that a linear function's norm bounds (``walk.functional``'s
    ``call``), for its report row: its ``node``, the ``signal`` node it maps, and ``summed``,
    the signal entries each of the function's inputs sums first (``torch.einsum``'s labels in
    no output; 1 for any other call): the call's norm is ``sqrt(summed)`` times the
    function's, and its matrix has ``summed`` times as many entries per row."""

    node: torch.fx.Node
    signal: torch.fx.Node
    summed: int = 1


_CATS = {torch.cat, torch.concat, torch.concatenate, torch.stack}


#: Calls that cut a tensor into a tuple of disjoint pieces: returned whole, the pieces have the
#: tensor's norm together.
_PARTITIONS = {torch.chunk, torch.split, torch.unbind, torch.tensor_split, "chunk", "split",
               "unbind", "tensor_split"}


# maps that keep every entry (or a basic slice of them): the norm of a change cannot grow
_KEEPS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
          torch.unsqueeze, torch.swapaxes, torch.movedim, torch.narrow, "narrow", "flatten",
          "view", "reshape",
          "contiguous", "permute", "transpose", "squeeze", "unsqueeze", "swapaxes", "movedim",
          "clone", "detach", "view_as", "reshape_as"}


_REDUCTIONS = {torch.sum, torch.mean, "sum", "mean"}


# a cast between floating (or complex) dtypes: the same values, as every layer is read exactly
_CASTS = {"to", "float", "double", "half", "bfloat16", "type_as"}


# y.expand_as(x), y.view_as(x), y.reshape_as(x): x read for its shape alone
_SHAPED_AS = {"expand_as", "view_as", "reshape_as"}


# softmax and softmin over an axis of each sample: 1 (their Jacobian ``diag(p) - p p^T``, or
# its negative, lies between 0 and ``diag(p)`` in norm: at most ``max p``)
_SOFTMAX = {F.softmax, torch.softmax, torch.special.softmax, "softmax", F.softmin}

_RULED = {*_ADD, *_SCALE, *_DIVIDE, *_CATS, *_KEEPS, *_REDUCTIONS, *_NEG, *_CASTS,
          *MATMUL, *EINSUM, *WHERE, *(_NORMALIZED - {F.batch_norm}), *REPEATS, *SELECTIONS,
          *RUNNING, *_SHAPED_AS, *_SOFTMAX, operator.getitem}  # (batch_norm by batch
# statistics has none)


def signal_reads(node: torch.fx.Node, signal: Any) -> list[torch.fx.Node]:
    """The values of the signal (nodes in ``signal``) that ``node``'s arguments name, each as
    often as they name it: ``node.all_input_nodes`` lists each once, so ``torch.diff(x,
    prepend=x)`` and ``cell(x, x)`` read as taking ``x`` once, bounded as a map of one
    argument (a review: 2 for a map of norm 2.76; a constant given for the cell, 1.74 for
    2.46)."""
    named: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), named.append)
    return [n for n in named if n in signal]


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
    signals = signal_reads(node, bound)
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
    found = functional(F.linear, [], {"input": signal, "weight": weight}, shape,
                       call=FunctionalCall(node, signal))
    if found is None or isinstance(found, str):
        return found or "is not a call whose Lipschitz constant is known here"
    return found * of(signal)


def _einsum(node: torch.fx.Node, args: Any, kwargs: dict, walk: _Walk) -> Fraction | str:
    """``torch.einsum`` of the signal and a constant tensor ``W``: at each index ``s`` of the
    labels the output shares with both, ``W[s]`` applied to the contracted labels, after a
    sum over the signal's labels that neither ``W`` nor the output has
    (:class:`sparseconv._torch_calls.EinsumSplit`): of norm ``sqrt(summed) * max_s
    ||W[s]||_2``, certified as a grouped 1x1 convolution's (``F.conv1d``, one group per
    ``s``)."""
    equation, operands = einsum_operands(args, kwargs)
    if not isinstance(equation, str):
        return EINSUM_SUBLIST
    signals = signal_reads(node, walk.bound)
    if len(signals) != 1 or sum(o is signals[0] for o in operands) != 1:
        return "multiplies two values of the signal, or reads it other than as an operand"
    if len(operands) != 2:
        return f"contracts {len(operands)} operands (one signal and one constant have a rule)"
    signal = signals[0]
    at = 0 if operands[0] is signal else 1
    constant = operands[1 - at]
    why = einsum_constants_refusal([constant])
    if why:
        return why
    shapes = [tuple(walk.meta(signal).shape), tuple(constant.shape)][::1 - 2 * at]
    split = einsum_split(equation, shapes, at)
    if isinstance(split, str):
        return split
    if walk.functional is None:
        return "is not a call whose Lipschitz constant is known here"
    found = walk.functional(F.conv1d, [], {"input": signal, "weight": split.grouped(constant),
                                           "groups": split.shared},
                            (split.shared * split.contracted, 1),
                            call=FunctionalCall(node, signal, split.summed))
    if found is None or isinstance(found, str):
        return found or "is not a call whose Lipschitz constant is known here"
    return _sqrt_up(Fraction(split.summed)) * found * walk.of(signal)


def _where(node: torch.fx.Node, args: Any, kwargs: dict, walk: _Walk) -> Fraction | str:
    """``torch.where(condition, a, b)`` (``x.masked_fill(mask, value)``: ``where(mask, value,
    x)``) by a constant boolean condition: each output entry one entry of ``a`` or of
    ``b``, each operand broadcast to ``r`` copies: the change of the output is at most
    ``sqrt(sum_o r_o L_o^2)`` times the input's, ``L_o`` each signal operand's bound (a
    constant operand adds none)."""
    condition, a, b = where_operands(node.target, args, kwargs)
    if condition is None:
        return "gives the indices of a condition's true entries (torch.where(condition))"
    if isinstance(condition, torch.fx.Node) or not isinstance(
            condition, torch.Tensor) or condition.dtype != torch.bool:
        return "selects by a condition that is no constant boolean tensor"
    total = Fraction(0)
    for operand in (a, b):
        if not (isinstance(operand, torch.fx.Node) and (operand in walk.bound or
                                                         walk.of(operand) > 0)):
            continue  # a constant
        whole, part = walk.size(node), walk.size(operand)
        if whole is None or part is None or part == 0 or whole % part:
            return "selects from operands whose sizes are not known"
        total += Fraction(whole // part) * walk.of(operand) ** 2
    return _sqrt_up(total)


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


#: Functions that jump, for which no Lipschitz constant holds (named so where one is missing).
_JUMPS = {"round", "floor", "ceil", "trunc", "fix", "sign", "sgn", "heaviside", "hardshrink",
          "floordiv", "floor_divide", "mod", "remainder", "fmod", "special_round",
          "threshold", "_threshold", "frac", "fake_quantize_per_tensor_affine",
          "fake_quantize_per_channel_affine", "bucketize", "searchsorted"}


def has_rule(target: Any) -> bool:
    """Whether the bound over the graph has a rule of its own for a call of ``target`` (a
    sum, a product, a reshape, a reduction, a known activation, a linear function whose norm
    it computes, max pooling): ``lipschitz_constants`` may not replace it (a review: a key
    ``"interpolate"`` replaced F.interpolate's certified norm)."""
    try:
        return target in _RULED or target in KNOWN_FUNCTIONS
    except TypeError:  # an unhashable target
        return False


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
#: convolution's output is read by the BatchNorm alone), ``("padding", name)`` for a padding
#: module folded into the convolution ``name`` (when its output is read by that
#: convolution alone), or None.
Factor = Fraction | tuple[str, str] | None


class Given(Fraction):
    """A module's constant the caller gave (``lipschitz_constants``), which the walk trusts
    only where nothing it read or returned changes in place afterwards (:class:`_Walk`'s
    ``touched``), as for a function's."""


#: Why a call given its constant gets no bound where its input or result changes in place.
_TOUCHED = ("is a call given its constant whose input or result is changed in place "
            "afterwards (by an activation with inplace=True after it, as nn.ReLU(True), "
            "say): the call may return its input's memory (of torch's own, only its "
            "normalizations, Softplus, Hardshrink, Threshold and a few functions are known "
            "not to), and the change would not show in the graph (compute the change out of "
            "place: inplace=False)")


class _Opaque(Exception):
    """A value of the signal that is no single tensor, read as one."""


@dataclass
class _Walk:
    """What the walk over the graph (:func:`graph_bound`) knows: each node's ``bound`` so
    far, the values of the signal that are no signal (``opaque``: a size, a tuple), and the
    caller's rules. ``constants``: the values of the nodes that do not depend on the input;
    ``sizes``: the integer values of those that do, read where :func:`_static_size` fixes
    them; ``tainted``: those that may follow the batch size (:func:`_tainted_sizes`);
    ``factors``, ``functional``, ``given`` and ``assumed`` as :func:`graph_bound`'s;
    ``touched(node)``: whether a tensor the call read or returned changed in place after it
    (a call given its constant may return its input's memory without sharing its version
    counter, and a change in place to either would not show in the graph)."""

    factors: Callable[[str, int, tuple], Factor]
    functional: Callable[..., Fraction | str | None] | None = None
    constants: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    tainted: set = field(default_factory=set)
    given: Mapping[str, float] | None = None
    assumed: list[str] | None = None
    bound: dict[torch.fx.Node, Fraction] = field(default_factory=dict)
    opaque: set[torch.fx.Node] = field(default_factory=set)
    touched: Callable[[torch.fx.Node], bool] = lambda node: False

    @staticmethod
    def meta(a) -> Any:
        return a.meta.get("tensor_meta") if isinstance(a, torch.fx.Node) else None

    def changes_dtype(self, node: torch.fx.Node, source: Any) -> bool:
        """Whether ``node``'s value has another dtype than its ``source``'s (a cast inside a
        call the walk reads as linear: ``x.view(torch.int32)``, a ``cumsum`` or ``softmax``
        with a ``dtype``)."""
        return getattr(self.meta(node), "dtype", None) != getattr(self.meta(source), "dtype",
                                                                   None)

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

    def fixed(self, value: Any, keep: Any = None) -> Any:
        """``value`` (an argument, a tuple of them) with each integer computed from the
        signal's shape where the traced shape fixes it (:meth:`static_index`) read as its
        value, as network_operator reads it; any other node (and ``keep``) stays a node."""
        return torch.fx.node.map_arg(value, lambda n: self.sizes[n] if (
            n is not keep and self.static_index(n)) else n)


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
    if target is operator.getitem and isinstance(source, torch.fx.Node) and (
            source.target in _PARTITIONS and source in walk.opaque):
        return _piece(source, args[1], walk)
    if target in _ADD:
        return _added(node, source, args, kwargs, walk)
    if target in _SCALE or target in _DIVIDE:
        return _multiplied(node, source, args, kwargs, walk)
    if target in _CATS:
        parts = args[0] if args else kwargs.get("tensors", ())
        if not isinstance(parts, (list, tuple)):
            return "concatenates a sequence the graph computes (not a list of tensors)"
        if target is torch.stack:  # (a new user's trial: torch.stack([x, x, x], 1))
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if type(dim) is not int or dim % len(walk.meta(node).shape) == 0:
                return "stacks along the batch axis (or an axis computed in the graph)"
        return _sqrt_up(sum((walk.of(p) ** 2 for p in parts), Fraction(0)))
    if target in _SHAPED_AS:
        shaped = _shaped_as(node, source, args, kwargs, walk)
        if shaped is not None:
            return shaped
    if target in _DROPOUT_F and not kwargs.get("training", args[2] if len(args) > 2 else True
                                               ) or identity_in_eval(target, args, kwargs):
        return walk.of(source)  # (F.dropout(x, p, training=False): the identity)
    if target in _NEG:  # -x: the same norm
        return walk.of(source)
    if target in MATMUL:
        return _matmul(node, args, kwargs, walk.bound, walk.meta, walk.functional, walk.of)
    if target in EINSUM:
        return _einsum(node, args, kwargs, walk)
    if target in WHERE:
        return _where(node, args, kwargs, walk)
    if target in _CASTS and node.op == "call_method":  # (a review: x.double() had no rule)
        cast = _cast(node, source, walk)
        if cast is not None:
            return cast
    if target in _REDUCTIONS:
        return _reduced(node, source, args, kwargs, walk.of, walk.size, walk.meta)
    if target in REPEATS:  # (a new user's trial: x.repeat(1, 2, 1, 1) had no rule)
        return _repeated(source, target, args, kwargs, walk)
    if target in SELECTIONS and target not in _KEEPS:  # (flip, roll, index_select: a trial)
        return _selected(node, source, args, kwargs, walk)
    if target in RUNNING:  # (cumsum, diff: a new user's trial)
        return _running(node, source, args, kwargs, walk)
    if target in _SOFTMAX:
        return _softmax(node, source, args, kwargs, walk)
    if target in _KEEPS or (target is operator.getitem
                            and _basic_index(args[1], walk.static_index)):
        return _kept(node, source, args, kwargs, walk)
    return _elementwise(node, source, args, kwargs, walk)


def _shaped_as(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
               walk: _Walk) -> Fraction | str | None:
    """``y.expand_as(x)``, ``y.view_as(x)`` or ``y.reshape_as(x)`` where ``x`` is a value of
    the signal, read for its shape alone (a new user's trial: a global-context block's
    ``t(x.mean((2, 3), keepdim=True)).expand_as(x)`` was refused as taking the signal twice):
    each sample of ``y`` expanded to (or reshaped as) a sample of ``x`` -- both have the
    batch first, as every value of the signal --, checked on a random batch of three; its
    bound ``y``'s times ``sqrt`` of the copies of each entry (1 for a reshape). None where
    ``x`` is no value of the signal (the rules of ``expand`` and the reshapes then apply)."""
    other = args[1] if len(args) > 1 else kwargs.get("other")
    if not (isinstance(other, torch.fx.Node) and (other in walk.bound or other in walk.opaque)
            and isinstance(source, torch.fx.Node)):
        return None
    if source not in walk.bound or [n for n in node.all_input_nodes
                                    if n in walk.bound and n is not other] not in ([source], []):
        return "takes the signal other than as its one input"
    value = walk.of(source)  # (refused first if the source is no floating tensor)
    sample, out = tuple(walk.meta(source).shape[1:]), tuple(walk.meta(node).shape[1:])
    if function_name(node.target) == "expand_as":
        def run(t: torch.Tensor) -> torch.Tensor:
            return t.expand(-1, *out)
    else:
        def run(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(-1, *out)
    try:
        found = acts_per_sample(run, sample)
    except (RuntimeError, IndexError, TypeError, ValueError) as exc:
        return f"does not run on a batch of three ({error_line(exc)})"
    if found != out or getattr(walk.meta(node), "dtype", None) != getattr(
            walk.meta(source), "dtype", None):
        return "does not act on each sample alone (it reads or moves the batch axis)"
    return _sqrt_up(Fraction(max(1, math.prod(out) // max(1, math.prod(sample))))) * value


def _piece(partition: torch.fx.Node, index: Any, walk: _Walk) -> Fraction | str:
    """One piece of a tensor cut by chunk, split, unbind or tensor_split (ShuffleNetV2's
    ``x1, x2 = x.chunk(2, dim=1)``, a new user's trial): a slice of it, whose bound is the
    tensor's."""
    whole = partition.args[0] if partition.args else partition.kwargs.get(
        "input", partition.kwargs.get("self"))
    if type(index) is not int or not isinstance(whole, torch.fx.Node):
        return "takes a piece of a partition by a computed index"
    if any(n is not whole and (n in walk.bound or n in walk.opaque and not walk.static(n))
           for n in partition.all_input_nodes):  # (pieces cut where the values say)
        return f"takes a piece of {partition.name!r}, cut where values of the signal say"
    if any(n in walk.tainted for n in partition.all_input_nodes):  # (a review: split(h, 4 -
        # 2 * (b // 4)), pieces of 4 at batches of one to three and of 2 from four on: 1.41
        # for a map of norm 2 at a batch of four)
        return f"takes a piece of {partition.name!r}, cut where the batch size says"
    position = 1 if partition.target in (torch.unbind, "unbind") else 2
    dim = partition.args[position] if len(partition.args) > position else (
        partition.kwargs.get("dim", 0))
    ndim = len(getattr(walk.meta(whole), "shape", ()))
    if type(dim) is not int or not ndim or dim % ndim == 0:
        return f"takes a piece of {partition.name!r}, cut along the batch axis or an axis " \
               "computed in the graph"
    return walk.of(whole)


def _module_call(node: torch.fx.Node, source: Any, walk: _Walk) -> Fraction | str:
    """A module's call: its factor (:data:`Factor`) times its input's bound."""
    signals = signal_reads(node, walk.bound)
    if signals != [source]:
        return "takes the signal other than as its one input"
    computed: list[torch.fx.Node] = []  # its other arguments that are sizes: constants, or
    torch.fx.node.map_arg(read_by_the_call(  # sizes the traced shape fixes (a review: up(h,
        node, len(walk.meta(source).shape)), computed.append)  # output_size=[7, 7 + b // 4]),
    computed = [n for n in computed if walk.meta(n) is None and n not in walk.constants and (
        n in walk.tainted or not walk.static(n))]  # 7 wide below a batch of four, read as 7:
    if computed:  # 0.46 for a map of 366 there; tensors as before: a second review)
        return f"has an argument computed from the signal or its batch ({computed[0].name!r})"
    name, k = node.meta["sparseconv_call"]
    factor = walk.factors(name, k, tuple(walk.meta(source).shape[1:]))
    if isinstance(factor, tuple) and factor[0] == "padding":  # its output must be that
        # convolution's input, read by it alone
        users = list(node.users)
        if not (len(users) == 1 and users[0].op == "call_module"
                and users[0].target == factor[1]):
            return (f"is a padding folded into {factor[1]!r}, whose input is not its output "
                    "alone in the graph (pass fold_padding=False)")
        factor = Fraction(1)
    elif isinstance(factor, tuple):  # its input must be that convolution's own output, read
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module"  # by it
                and source.target == factor[1] and len(source.users) == 1):  # alone
            return (f"is a BatchNorm folded into {factor[1]!r}, whose output is not its "
                    "input alone in the graph (pass fold_batchnorm=False)")
        factor = Fraction(1)
    if factor is None:
        return "has no certified bound nor known Lipschitz constant"
    if isinstance(factor, Given) and walk.touched(node):  # (a fifth review: a leaf module
        # returning its input's memory, then z.mul_(5): 1.07 for a constant of 1.85)
        return _TOUCHED
    return factor * walk.of(source)


def whole_call(node: torch.fx.Node, name: str, k: int, source: torch.fx.Node,
               walk: _Walk) -> Fraction | str:
    """The output ``node`` of the ``k``-th call of the module ``name`` taken whole
    (:func:`sparseconv._torch_whole_calls.whole_units`), on its argument's marker ``source``:
    the constant given for the module (:data:`Factor`) times the argument's bound."""
    factor = walk.factors(name, k, tuple(walk.meta(source).shape[1:]))
    if factor is None or isinstance(factor, tuple):
        return "is a call taken whole with no Lipschitz constant known for it"
    if isinstance(factor, Given) and (walk.touched(node) or walk.touched(source)):
        return _TOUCHED
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
    weights = (alpha, Fraction(1)) if node.target is torch.rsub else (Fraction(1), alpha)
    for operand, weight in zip((source, other), weights):  # (rsub: other - alpha * input)
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
    if isinstance(number, torch.fx.Node) and number in walk.sizes and walk.static_int(number):
        number = walk.sizes[number]  # (fixed by the traced shape, not by the batch: x /
        # math.sqrt(x.shape[-1]), refused before, a new user's trial)
    if len(tensors) == 1 and isinstance(number, torch.Tensor):  # a constant tensor
        return _by_tensor(node, tensors[0], number, target in _DIVIDE, kwargs, args, walk.of,
                          walk.size)
    if len(tensors) == 1 and isinstance(number, torch.fx.Node) and number in walk.tainted:
        return f"multiplies the signal by a number that may follow the batch size ({number.name!r})"
    if len(tensors) == 2:  # (a new user's trial: a squeeze-and-excitation gate was said to
        # multiply by "something other than a finite number", and then its node's constant
        # was refused as one the report knows)
        return ("multiplies two values of the signal (a gate, x * sigmoid(x) or a squeeze-"
                "and-excitation's): no rule bounds such a product, and no constant may be "
                "given for it (give one for a module of yours without submodules that "
                "computes it from its one argument, by its name or class)")
    if len(tensors) != 1 or not isinstance(number, (int, float)) or isinstance(
            number, bool) or not math.isfinite(number):
        return "multiplies the signal by something other than a finite number"
    if target in _DIVIDE:
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
            and signal_reads(node, walk.bound) == [source]):
        return None
    if dtypes[0].itemsize < (8 if dtypes[0].is_complex else 4) and (  # half, bfloat16,
            dtypes[1] != dtypes[0]):  # float8, complex32 (a review)
        return (f"casts the signal down to {dtypes[0]}, whose rounding (and float16's "
                "overflow beyond 65504) no Lipschitz constant bounds")  # (a hunt)
    return walk.of(source)


def _repeated(source: Any, target: Any, args: Any, kwargs: dict, walk: _Walk) -> Fraction | str:
    """``x.repeat(...)`` or a tile by counts written in the forward or read off the traced
    shape: each entry copied ``prod(counts)`` times, so the norm is ``sqrt`` of that; the
    batch axis's count must be 1."""
    value = walk.of(source)  # (refused first if the source is no floating tensor)
    # a count computed from the signal's shape is read where the traced shape fixes it, as
    # network_operator reads it (a review found the two disagree); any other stays a node
    fixed = walk.fixed((args[1:], kwargs))
    try:
        counts = repeat_counts(target, [source, *fixed[0]], fixed[1],
                               len(walk.meta(source).shape))
    except ValueError as exc:
        return f"repeats by {exc}"
    if counts[0] != 1:
        return "repeats along the batch axis (the bound is of a map of one sample)"
    return _sqrt_up(Fraction(math.prod(counts))) * value


def _per_sample(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
                walk: _Walk) -> tuple[list, dict, tuple[int, ...]] | str:
    """A linear call run by torch (:data:`SELECTIONS`, :data:`RUNNING`) on the signal alone:
    its arguments as values and its sample's shape, or why it has no bound -- the signal
    taken twice, an argument computed from it, or a call that does not act on each sample
    alone (checked on a random batch of three against each sample run alone, as
    ``network_operator`` checks it)."""
    if signal_reads(node, walk.bound) != [source]:
        return "takes the signal other than as its one input"
    fixed = walk.fixed((args, kwargs), keep=source)
    computed: list[torch.fx.Node] = []
    torch.fx.node.map_arg(fixed, computed.append)
    computed = [n for n in computed if n is not source]
    if computed:
        return f"takes a size or index computed from the signal ({computed[0].name!r})"
    held = per_sample_arguments(node.target, list(fixed[0]), dict(fixed[1]),
                                walk.meta(source).shape[0])  # (diff's prepend: of the batch)
    if isinstance(held, str):
        return held
    call_args, call_kwargs = held
    sample = tuple(walk.meta(source).shape[1:])
    try:
        out = acts_per_sample(call_on(node.target, call_args, call_kwargs, source), sample)
    except (RuntimeError, IndexError, TypeError, ValueError) as exc:
        return f"does not run on a batch of three ({error_line(exc)})"
    if out is None or out != tuple(walk.meta(node).shape[1:]):
        return "does not act on each sample alone (it reads or moves the batch axis)"
    return call_args, call_kwargs, sample


def _selected(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
              walk: _Walk) -> Fraction | str:
    """A selection, permutation or copy run by torch (:data:`SELECTIONS`: ``flip``, ``roll``,
    ``rot90``, ``select``, ``tril``, ``index_select``, ``repeat_interleave``, ``expand``,
    ``unfold``): each output entry is one input entry (or zero), so the norm is at most
    ``sqrt`` of the most outputs one entry gives -- 1 for a permutation or a selection, the
    most repeats of an index for ``index_select`` and ``repeat_interleave``, the copies for
    ``expand``, the most windows over one entry for ``unfold``;
    refused as :func:`_per_sample` says."""
    checked = _per_sample(node, source, args, kwargs, walk)
    if isinstance(checked, str):
        return checked
    call_args, call_kwargs, sample = checked
    out = tuple(walk.meta(node).shape[1:])
    name = function_name(node.target)
    copies = 1
    if name == "expand":
        copies = math.prod(out) // max(1, math.prod(sample))
    elif name in ("index_select", "repeat_interleave"):
        key, position = ("index", 2) if name == "index_select" else ("repeats", 1)
        given = call_kwargs.get(key, call_args[position] if len(call_args) > position
                                else None)
        if isinstance(given, torch.Tensor) and given.numel():
            counts = torch.bincount(given.flatten()) if name == "index_select" else given
            copies = int(counts.max())
        elif type(given) is int:
            copies = given
        else:
            return f"takes {key} sparseconv does not read ({given!r})"
    elif name == "unfold":  # (windows: an entry in as many as cover it, counted on indices)
        index = torch.arange(1, math.prod(sample) + 1, dtype=torch.float64).reshape(1, *sample)
        taken = call_on(node.target, call_args, call_kwargs, source)(index).flatten().long()
        copies = int(torch.bincount(taken).max())
    return _sqrt_up(Fraction(max(copies, 1))) * walk.of(source)


def _softmax(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
             walk: _Walk) -> Fraction | str:
    """Softmax or softmin over an axis of each sample (:data:`_SOFTMAX`): its input's bound
    (constant 1, as ``nn.Softmax``'s); refused as :func:`_per_sample` says (over the batch
    axis, where ``dim=None`` picks it for a 3-D input, the samples mix) or where it changes
    the dtype (a new user's trial: ``F.softmax`` had no constant where ``nn.Softmax`` had
    one)."""
    checked = _per_sample(node, source, args, kwargs, walk)
    if isinstance(checked, str):
        return checked
    if walk.changes_dtype(node, source):
        return "changes the signal's dtype"
    if walk.assumed is not None:
        walk.assumed.append(f"{node.name} ({function_name(node.target)}())")
    return walk.of(source)


#: Rational bounds on pi, below and above.
_PI_LOW, _PI_HIGH = Fraction(3141592653589793, 10**15), Fraction(3141592653589794, 10**15)


def _cumsum_norm(length: int) -> Fraction:
    """A rational upper bound on the norm of the running sum of ``length`` entries (the
    lower triangular matrix of ones): exactly ``1 / (2 sin(pi / (4 length + 2)))``, its
    largest singular value, with ``sin x`` bounded below by its Taylor series to ``x^11``
    (an alternating series ending on a negative term) at bounds of ``x`` below and above."""
    low, high = _PI_LOW / (4 * length + 2), _PI_HIGH / (4 * length + 2)
    sine = sum((low if k % 2 == 0 else -high) ** (2 * k + 1) / math.factorial(2 * k + 1)
               for k in range(6))
    return Fraction(1) / (2 * sine)


def _running(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
             walk: _Walk) -> Fraction | str:
    """A running sum or difference along one axis run by torch (:data:`RUNNING`): ``cumsum``
    over ``L`` entries has the norm of the lower triangular ``L x L`` matrix of ones
    (:func:`_cumsum_norm`, about ``(2 L + 1) / pi``), ``diff`` of order ``n`` at most
    ``2^n`` (each difference ``x_{i+1} - x_i`` twice a norm of one; its ``prepend`` and
    ``append``, constants, add an offset alone); refused as :func:`_per_sample` says, or
    where ``cumsum`` changes the dtype."""
    checked = _per_sample(node, source, args, kwargs, walk)
    if isinstance(checked, str):
        return checked
    call_args, call_kwargs, _ = checked
    shape = walk.meta(node).shape
    if function_name(node.target) == "cumsum":
        dim = call_kwargs.get("dim", call_args[1] if len(call_args) > 1 else None)
        if type(dim) is not int or not -len(shape) <= dim < len(shape):
            return f"takes dim sparseconv does not read ({dim!r})"
        if walk.changes_dtype(node, source):
            return "changes the signal's dtype"
        return _cumsum_norm(int(shape[dim])) * walk.of(source)
    order = call_kwargs.get("n", call_args[1] if len(call_args) > 1 else 1)
    if type(order) is not int or order < 0:
        return f"takes n sparseconv does not read ({order!r})"
    return Fraction(2) ** order * walk.of(source)


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
    if walk.changes_dtype(node, source):
        return "changes the signal's dtype"  # x.view(torch.int32): no reshape
    return value


def _elementwise(node: torch.fx.Node, source: Any, args: Any, kwargs: dict,
                 walk: _Walk) -> Fraction | str:
    """Any other call on the signal alone: an activation's (or clamp's, dropout's) known
    constant, a linear function's certified bound (``walk.functional``), or the caller's
    constant for the node; its input's bound times that."""
    target = node.target
    signals = signal_reads(node, walk.bound)
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
        found = walk.functional(target, list(args), kwargs, tuple(walk.meta(source).shape[1:]),
                                call=FunctionalCall(node, source))
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
    slopes = None if constant is not None else function_norm_slope(
        target, args, kwargs, tuple(walk.meta(source).shape[1:]),
        getattr(walk.meta(source), "dtype", None))
    if yours is not None:  # the caller's, for this node alone, where no rule applies: taken
        # entry by entry, so that a broadcast signal counts its copies (a review: clamp(x,
        # min=t) with a bigger t, given 1, was bounded by 1 where its constant is 8)
        if walk.touched(node):  # (four reviews: wrapped functions returning their input's
            # memory, as torch.from_numpy(t.numpy()), from_dlpack or _unsafe_view do, then
            # t.mul_(5): bounds of 1.07 for constants of 1.85 to 3.38)
            return _TOUCHED
        warn_below_slope(f"node {node.name!r} ({function}())", yours, slopes)
        constant, elementwise = Fraction(yours), True
        if assumed is not None:
            assumed.append(f"{node.name} ({function}(), {yours!r} given)")
    if constant is None and function in _JUMPS:  # (a new user's trial: round was offered
        # a constant of the user's)
        return (f"is {function}(), which jumps: no Lipschitz constant holds for it (its "
                "output moves by a step for inputs as close as you like)")
    if constant is None:
        return (f"is not a call whose Lipschitz constant is known here (lipschitz_constants="
                f"{{{node.name!r}: L}} gives this node one, yours" + (
                    ")" if slopes is None else f"; {NORM_REASON}{slope_text(*slopes)})"))
    whole, part = walk.size(node), walk.size(source)
    if elementwise and whole is not None and part and whole > part:
        # an elementwise function whose other operand broadcasts the signal (clamp(x, min=t)
        # with a bigger t, a review): each entry repeated whole/part times
        if whole % part:
            return "broadcasts the signal to a shape that is no whole number of copies of it"
        return constant * _sqrt_up(Fraction(whole // part)) * walk.of(source)
    return constant * walk.of(source)
