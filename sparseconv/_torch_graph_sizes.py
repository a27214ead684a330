"""Which sizes a torch.fx graph reads from its signal (for
:func:`sparseconv._torch_graph_bound.graph_bound`).

A reshape or an index whose sizes are fixed by the traced shape keeps a bound; one whose
sizes follow the signal's values, or the batch size, makes one sample's map jump, and has no
Lipschitz constant. :func:`_tainted_sizes` finds the values computed from the batch size;
:func:`_static_size` tells a size fixed by the shapes from one computed from the signal.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx

from sparseconv._torch_kinds import _CONV_T

__all__: list[str] = []


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


def _size_number(value: Any) -> bool:
    """A finite float: a number computed from sizes (``math.sqrt(x.shape[-1])``)."""
    return type(value) is float and math.isfinite(value)


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


def _in_int64(function: Any, *args: Any) -> Any:
    """``function(*args)`` on integers, refused where it leaves 64 bits; traced by torch.fx
    (an argument a ``Proxy``), one node calling ``function``."""
    proxy = next((a for a in args if isinstance(a, torch.fx.Proxy)), None)
    if proxy is not None:
        return proxy.tracer.create_proxy("call_function", function, args, {})
    value = _INT64_OPERATIONS[function](*args)
    if not -2**63 <= value < 2**63:
        raise OverflowError(f"{value} wraps around in 64-bit integers, as TorchScript "
                            "computes sizes")
    return value


def int64_add(a: int, b: int) -> int:
    """``a + b`` as TorchScript computes on sizes: in 64 bits, refused where that wraps
    (Python's unbounded integers found another size: a review's ``4 * 3 * 2**61 // 2**61``,
    17 in Python and 1 in TorchScript, a pooling's divisor: 9.7 for a map of 81.8)."""
    return _in_int64(int64_add, a, b)


def int64_sub(a: int, b: int) -> int:
    """``a - b`` in 64 bits (:func:`int64_add`)."""
    return _in_int64(int64_sub, a, b)


def int64_mul(a: int, b: int) -> int:
    """``a * b`` in 64 bits (:func:`int64_add`)."""
    return _in_int64(int64_mul, a, b)


def int64_floordiv(a: int, b: int) -> int:
    """``a // b`` in 64 bits, floored as Python and TorchScript floor (:func:`int64_add`)."""
    return _in_int64(int64_floordiv, a, b)


def int64_neg(a: int) -> int:
    """``-a`` in 64 bits (:func:`int64_add`)."""
    return _in_int64(int64_neg, a)


_INT64_OPERATIONS: dict[Any, Callable[..., int]] = {
    int64_add: operator.add, int64_sub: operator.sub, int64_mul: operator.mul,
    int64_floordiv: operator.floordiv, int64_neg: operator.neg}


_SIZE_ARITHMETIC = {operator.getitem, operator.add, operator.sub, operator.mul,
                    operator.floordiv, operator.mod, operator.neg, int64_add, int64_sub,
                    int64_mul, int64_floordiv, int64_neg,
                    # (numbers: an attention's x / math.sqrt(x.shape[-1]), a new user's trial)
                    operator.truediv, operator.pow, math.sqrt,
                    # (timm's "same" padding: math.ceil(x.size(-1) / s), a new user's trial)
                    math.ceil, math.floor}


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


def read_by_the_call(node: torch.fx.Node, ndim: int) -> tuple[tuple, dict]:
    """A module call's arguments after its input, as far as the module reads them: a
    transposed convolution's ``output_size`` (``up(h, output_size=x.size())``, PyTorch's own
    example) is read for its last ``ndim - 2`` entries, the sizes of the spatial axes, so a
    whole shape read (its batch entry) or the leading entries of a list are left out (a
    review found ``output_size=x.size()`` refused as a size that follows the batch)."""
    args, kwargs = tuple(node.args[1:]), dict(node.kwargs)
    module = getattr(node.graph.owning_module, "get_submodule", None)
    called = module(str(node.target)) if module is not None and node.op == "call_module" \
        else None
    if not isinstance(called, _CONV_T):
        return args, kwargs
    spatial = ndim - 2

    def kept(size: Any) -> Any:
        if isinstance(size, (tuple, list)):
            return tuple(size[-spatial:]) if spatial > 0 else ()
        if _direct_batch(size) and _shape_item(size) is None:  # (x.size(), x.shape)
            return None
        return size

    if args:
        args = (kept(args[0]), *args[1:])
    if "output_size" in kwargs:
        kwargs["output_size"] = kept(kwargs["output_size"])
    return args, kwargs


def _static_size(n: Any, bound: dict) -> bool:
    """Whether ``n``, an argument of a reshape or slice computed in the graph, is fixed by the
    traced shape: a shape read (:func:`_reads_shape`) of a tensor the bound accepted (every
    rule keeps shapes fixed by the input's: ``nonzero`` or a mask's count has none, so its
    size is no constant; a review) or of a parameter or buffer, integer arithmetic on such
    reads, or such a tensor itself (``view_as``). The batch size is one too: a reshape
    keeping it is checked by :func:`_moves_batch`."""
    stack, seen = [n], set()  # (iterative: a chain of 400 size operations, a review)
    while stack:
        m = stack.pop()
        if not isinstance(m, torch.fx.Node) or m in bound or m in seen:
            continue
        seen.add(m)
        if _reads_shape(m):
            tensor = m.args[0]  # (of a parameter or buffer too: timm's "same" padding reads
            if not (isinstance(tensor, torch.fx.Node) and (  # its kernel's, a new user's trial)
                    tensor in bound or tensor.op == "get_attr")):
                return False
            # x.size(k), k computed in the graph: fixed only where k is (a review: k read off
            # the signal's values, (x > 10).any() + 1, a size that jumps with them)
            stack.extend(n for n in m.all_input_nodes if n is not m.args[0])
        elif m.op == "call_function" and m.target in _SIZE_ARITHMETIC:
            stack.extend(m.all_input_nodes)
        else:
            return False
    return True
