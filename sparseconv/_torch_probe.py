"""Running a model's forward on probes, as every entry point of :mod:`sparseconv.torch` does.

A probe is a batch of zeros or of seeded random values in the model's own dtype and device
(:func:`probe_input`). Every forward and every torch.fx trace runs with the model's state
restored afterwards (:mod:`sparseconv._torch_state`, :func:`fx_trace`; every entry point, its
parameters too: :func:`leaves_the_model`), outside ``torch.inference_mode()``
where an entry point needs version counters (:data:`outside_inference_mode`, :func:`version`);
a forward that fails says why in one line, with the batch it ran on
(:func:`forward_failed`); outputs are compared to the rounding of their dtype
(:func:`matches`).
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils import _pytree as pytree

from sparseconv._memory import check_memory
from sparseconv._torch_calls import function_name
from sparseconv._torch_script_rebuild import _kind
from sparseconv._torch_state import restored_state


def probe_like(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of the zeros a forward probe runs on: the model's first real
    floating parameter's, else its first complex one's (a complex network's; a Fourier
    layer's complex weights registered before its real convolutions' made the probe complex,
    and the forward's ``rfft2`` failed on it), else the same of its buffers (a model of
    buffers alone, a pooling chain in float64 say), else PyTorch's defaults."""
    for tensors in (model.parameters, model.buffers):
        found = [t for t in tensors() if t.is_floating_point() or t.is_complex()]
        first = next((t for t in found if t.is_floating_point()), found[0] if found else None)
        if first is not None:
            return first.dtype, first.device
    parameter = next(model.parameters(), None)
    return None, None if parameter is None else parameter.device


def probe_input(model: nn.Module, shape: tuple[int, ...], batch: int = 1,
                random: bool = True) -> torch.Tensor:
    """The probe batch ``(batch, *shape)`` of :func:`probe_like`'s dtype and device: seeded
    standard normal values, so that a layer's recorded output tells it apart from a multiple
    of it (on zeros, only through its bias); zeros for ``random=False`` (a model that indexes
    with its input, an Embedding of ``x.long()``, runs on them)."""
    dtype, device = probe_like(model)
    entries = batch * math.prod(shape)
    itemsize = (dtype or torch.get_default_dtype()).itemsize
    # (the seeded values are drawn in float64, then cast: both at once for a moment)
    check_memory(entries * (itemsize + (8 if random and itemsize != 8 else 0)),
                 f"the probe batch of shape {(batch, *shape)} for a forward pass of the model "
                 "(its own activations come on top)", "use a smaller input_shape")
    if not random:
        return torch.zeros((batch, *shape), dtype=dtype, device=device)
    values = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    return values.to(dtype=dtype or torch.get_default_dtype(), device=device)


def first_write(model: nn.Module, x: torch.Tensor) -> str | None:
    """The first operation ``model``'s forward runs on ``x`` that changes a tensor in place
    (an aten operation whose schema writes an argument: ``add_``, ``relu_``, ``copy_``, an
    ``out=``), as ``"aten.add_.Tensor"``; None if it runs none. Seen by a dispatch mode, below
    every Python name a tensor goes by (``y += z`` after ``kept = y`` too); a forward that
    fails under the mode counts as one that writes. (Not for a TorchScript model, some of
    whose graphs fail under a mode: ``aten::_local_scalar_dense`` of a traced number.)"""
    mode = _first_op(lambda func: func._schema.is_mutable)
    for grad in (False, True):  # (a review: `if torch.is_grad_enabled(): y += z`, a write
        # the probes' no_grad never runs, where torch.fx traced it)
        try:
            with torch.set_grad_enabled(grad), restored_state(model), mode:
                model(x.clone())
        except Exception as exc:  # noqa: BLE001 - any failure: the safe side
            return f"a run that failed under a dispatch mode ({type(exc).__name__})"
        if mode.found is not None:
            return mode.found
    return None


def inference_mode_change(model: nn.Module, x: torch.Tensor) -> str:
    """Why ``model`` gives another output on ``x`` under ``torch.inference_mode()`` than under
    ``torch.no_grad()`` (where the probes run; a verb phrase), or ``""`` if it gives the same
    (to :func:`matches`' rounding, each tensor of a tuple, list or dict; torch runs the same
    kernels in both, so only a forward that reads the mode differs: a fifth review's
    ``if torch.is_inference_mode_enabled(): y = y * 100``, a deployment's fast path, was
    bounded by 2.01 for a map of 133, and ``network_operator`` gave the other branch). Run
    on ``x``, on ``x`` scaled by 1e3 with its first sample again (as the graph's check runs
    it outside the mode: a review's forward scaled by 100 in the mode where ``|x| > 10``
    passed the one probe), and on its first sample alone."""
    scale = 1e3 if x.dtype.itemsize >= 4 else 1.0  # (float16 overflows)
    for batch in (x, scale * torch.cat([x, x[:1]]), x[:1]):
        try:
            with torch.no_grad(), restored_state(model):
                plain = model(batch.clone())
        except Exception:  # noqa: BLE001 - a forward that fails on this batch outside the
            continue  # mode too: the other checks say so, by their own reasons
        try:
            with restored_state(model), torch.inference_mode():
                inferred = model(batch.clone())
        except Exception as exc:  # noqa: BLE001 - a forward raises anything
            return f"fails under torch.inference_mode() ({type(exc).__name__}: {exc})"
        ours, theirs = pytree.tree_leaves(plain), pytree.tree_leaves(inferred)
        if not (len(ours) == len(theirs) and all(map(matches, ours, theirs))):
            break
    else:
        return ""
    return ("computes otherwise under torch.inference_mode() than outside it (its forward "
            "reads the mode: torch.is_inference_mode_enabled()?), where it is read outside")


def _first_op(noted: Callable[[Any], bool]) -> Any:
    """A dispatch mode (a context manager) whose ``found`` is the first aten operation run
    under it that ``noted`` holds for (``"aten.add_.Tensor"``), else None."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class FirstOp(TorchDispatchMode):
        found: str | None = None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if self.found is None and noted(func):
                self.found = str(func)
            return func(*args, **(kwargs or {}))

    return FirstOp()


def leaves_the_model(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function(model, ...)`` (an entry point) run inside :func:`restored_state`, the
    parameters' values kept too (a copy of each, once per call), whatever it reads: a
    parametrization may change its state whenever its weight is read, not only in a forward
    (reviews: a weight that doubled its buffer on each read was left at 4 where it was 1; a
    parametrization's factor, read by ``matrix``, ``spectral_norm`` and ``lipschitz_bounds``
    outside their probe runs, left doubled; a parameter changed through ``.data`` left
    changed 32 times). torch's random state is put back too: a probe run of a model in
    training mode draws its dropout masks from it (a new user's trial: ``lipschitz_bounds``
    changed a seeded run's masks)."""
    @functools.wraps(function)
    def wrapper(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(model, nn.Module):
            return function(model, *args, **kwargs)  # (refused there, by name)
        devices = sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers())
                          if t.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices), restored_state(model, parameters=True):
            return function(model, *args, **kwargs)
    return wrapper


#: Calls whose result's values are whatever its memory held (a review: one read back the
#: values an im2col buffer, freed, had held of the signal), by name (:func:`function_name`).
UNSET_CALLS = frozenset({
    "empty", "empty_strided", "empty_like", "empty_permuted", "new_empty", "new_empty_strided",
    "new", "Tensor", "resize_", "resize_as_", "set_", "as_strided", "frombuffer", "asarray",
    "from_file", "UntypedStorage", "untyped_storage"})


#: Calls that draw random numbers (a random "constant" sized by the signal's shape makes no
#: map of the input at all).
RANDOM_CALLS = frozenset({
    "rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "normal",
    "bernoulli", "multinomial", "randperm", "poisson", "random_", "normal_", "uniform_",
    "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_", "uniform",
    "random", "binomial", "_standard_gamma", "_sample_dirichlet", "rrelu_with_noise",
    "rrelu_with_noise_", "_fused_dropout", "native_dropout"})  # (a review: binomial missing)


#: Of :data:`UNSET_CALLS`, the allocations (the others make views or read buffers), and the
#: in-place calls that set every entry of the tensor they are called on.
_ALLOCATIONS = frozenset({"empty", "empty_strided", "empty_like", "empty_permuted", "new_empty",
                          "new_empty_strided", "new", "Tensor", "resize_", "resize_as_"})
_SETTING = frozenset({"copy_", "fill_", "zero_"})


def drawn_or_unset(node: torch.fx.Node, allocations: bool = False) -> str:
    """Why a call of the graph makes no map of the input whatever it reads, or ``""``: it
    draws random numbers (:data:`RANDOM_CALLS`, exact names: a function of the user's may
    hold any part of one, ``operand_scale``), or allocates memory whose values it does not
    set (:data:`UNSET_CALLS`: a review read back the values an im2col buffer, freed, had held
    of the signal). With ``allocations`` (``network_operator``'s, which checks the values it
    holds against the model), only :data:`_ALLOCATIONS` not set whole at once by their one
    reader (``torch.empty(n).copy_(b)``, ``fill_``, ``zero_``: a second review found them
    refused). A review found ``torch.bernoulli(p, dtype=x.dtype)``, typed by the signal and
    so no constant torch.fx computes, held by ``network_operator`` as the probe's draw."""
    if node.op not in ("call_function", "call_method"):
        return ""
    called = function_name(node.target)
    if called in UNSET_CALLS and not (allocations and (called not in _ALLOCATIONS or (
            len(node.users) == 1 and all(
                u.op == "call_method" and u.target in _SETTING and u.args[:1] == (node,)
                for u in node.users)))):
        return ("allocates a tensor whose values it does not set (torch.empty: whatever its "
                "memory held, the signal's values among them)")
    if called in RANDOM_CALLS:
        return ("draws random numbers: the same input gives another output, so no map of "
                "the input holds")
    return ""


def fx_trace(model: nn.Module, tracer: torch.fx.Tracer | None = None) -> torch.fx.Graph:
    """torch.fx's graph of ``model`` (by ``tracer``, else torch.fx's own), the model's buffers
    left as they were: the tracer runs on the real tensors what reads no signal (a trial: a
    forward's ``self.buf.mul_(5)`` was left in the model by every entry point that traced
    it). The forward's other arguments take their defaults, as in ``model(x)``, the one call
    sparseconv makes (:func:`_defaults`)."""
    concrete = _defaults(model)
    tracer = tracer or torch.fx.Tracer()
    # (what the tracer runs on the model's own tensors, a buffer's, is baked into the graph:
    # a random draw there would be one draw for every call; a review found
    # torch.binomial(self.n, self.p) certified as the value it drew)
    draws = _first_op(lambda func: draws_random(func._schema.name))
    before = set(vars(model))
    with restored_state(model), draws:  # (the forward's own attribute changes undone)
        graph = tracer.trace(model, concrete_args=concrete or None)
        made = {n.target: vars(model)[n.target] for n in graph.nodes if n.op == "get_attr"
                and n.target in vars(model) and n.target not in before}
    vars(model).update(made)  # (the tracer's own: tensor constants, _tensor_constant0)
    if draws.found is not None:
        raise TypeError(f"its forward draws random numbers ({draws.found}) from values of "
                        "its own, which torch.fx computes once, when it traces: the graph "
                        "would hold one draw for every call")
    if concrete:
        _drop_specialized(graph)
    if isinstance(model, torch.fx.GraphModule):  # (a TorchScript model's graph, rebuilt:
        # the module each call was made in, which tracing it again does not keep, for the
        # rows' names and the messages, "blur.conv2d", as the eager model's)
        stacks = {(n.name, n.target): n.meta["nn_module_stack"] for n in model.graph.nodes
                  if "nn_module_stack" in n.meta}
        for node in graph.nodes:
            if (node.name, node.target) in stacks and "nn_module_stack" not in node.meta:
                node.meta["nn_module_stack"] = stacks[node.name, node.target]
    return graph


#: Parts of the names of torch's operations that draw random numbers, beyond
#: :data:`RANDOM_CALLS` (a review: ``aten::_sobol_engine_draw``, a SobolEngine's).
_RANDOM_PARTS = ("rand", "sobol", "bernoulli", "multinomial", "poisson", "binomial",
                 "dirichlet", "normal_", "exponential_", "geometric_", "cauchy_", "uniform_")


def draws_random(name: str) -> bool:
    """Whether an operation or function of this name (``randn``, ``aten::randn.default``)
    draws random numbers."""
    name = name.split("::")[-1].split(".")[0]
    return name in RANDOM_CALLS or any(part in name for part in _RANDOM_PARTS)


#: The plain values a forward's default may take for torch.fx to trace it as a constant
#: (and tuples and lists of them).
_PLAIN = (type(None), bool, int, float, str)


def _plain(value: Any) -> bool:
    return type(value) in _PLAIN or type(value) in (tuple, list) and all(map(_plain, value))


class UntraceableDefault(TypeError):
    """A forward's argument after the signal whose default torch.fx cannot trace as a
    constant (:func:`_defaults`): sparseconv's own refusal, said as it stands, not as
    torch.fx's reason."""

    def __init__(self, kind: str, name: str, default: str) -> None:
        self.name, self.default = name, default
        super().__init__(f"{kind}.forward's argument {name!r} defaults to a {default}, which "
                         "sparseconv does not trace as a constant: wrap the model in a module "
                         "whose forward takes the signal alone")


def _defaults(model: nn.Module) -> dict[str, Any]:
    """The arguments of ``model``'s forward after its signal, by name, each with its default:
    torch.fx traces them as what ``model(x)`` passes, where it would trace each as a second
    input and fail (a review: ``forward(self, x, y=None)`` branching on ``y is None``, a
    common form for an optional mask or skip input, had no graph: "ShapeProp error ...
    call_function[target=operator.add](args = (%c, %y))"). A default other than a plain
    value (None, a bool, a number, a string, a tuple or list of them) is refused with a
    TypeError: torch.fx's graph kept it as an input (a tensor default failed with
    "NameError: name '_tensor_constant0' is not defined")."""
    forward = type(model).forward
    # torch.fx reads the arguments off the innermost function (inspect.unwrap) and calls the
    # outermost with them, where model(x) gives each wrapper its own defaults: only wrappers
    # that pass everything on (``*args, **kwargs``: torch.no_grad's) keep the inner defaults
    # (a review: a functools.wraps wrapper declaring big=True over forward(x, big=False)
    # was traced with big=False, a bound of 1.0 for a map of constant 101)
    wrapper = forward
    while hasattr(wrapper, "__wrapped__"):
        try:
            own = inspect.signature(wrapper, follow_wrapped=False).parameters.values()
        except (TypeError, ValueError):
            return {}
        if any(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in own):
            return {}  # (torch.fx's own tracing then: each argument an input, as before)
        wrapper = wrapper.__wrapped__
    try:
        signature = inspect.signature(inspect.unwrap(forward))
    except (TypeError, ValueError):  # (a forward inspect cannot read: torch.fx's own rules)
        return {}
    parameters = [p for p in list(signature.parameters.values())[2:]  # (self, the signal)
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.default is not p.empty]
    for p in parameters:
        if not _plain(p.default):
            raise UntraceableDefault(_kind(model), p.name, type(p.default).__name__)
    concrete: dict[str, Any] = {p.name: p.default for p in parameters}
    for p in list(signature.parameters.values())[2:]:  # ``*args`` and ``**kwargs`` empty, as
        if p.kind == p.VAR_POSITIONAL:  # in model(x) (a new user's trial: network_operator
            concrete[f"*{p.name}"] = ()  # said "takes 2 inputs" of forward(x, **kwargs))
        elif p.kind == p.VAR_KEYWORD:
            concrete[f"**{p.name}"] = {}
    return concrete


#: The nodes torch.fx adds to check an argument traced as a constant (``concrete_args``).
_SPECIALIZING = (torch._assert, torch.fx._symbolic_trace._assert_is_none, operator.eq)


def drop_defaults(graph: torch.fx.Graph) -> None:
    """Drops from ``graph`` each input after the first that torch.fx traced as its default
    (:func:`_defaults`), with the checks torch.fx added of its value (``y has been
    specialized to have value None``): the graph then takes the signal alone, as the model is
    called (and runs: torch.fx gives an input that is a tuple's entry the whole tuple as its
    default, which fails its check)."""
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    for placeholder in inputs[1:]:
        if not placeholder.args:  # (no default: an argument the forward needs, ``*args``)
            continue
        reached: dict = {}
        stack = [placeholder]
        while stack:
            node = stack.pop()
            if node not in reached:
                reached[node] = None
                stack.extend(node.users)
        checks = [n for n in reached if n is not placeholder]
        if any(n.op != "call_function" or n.target not in _SPECIALIZING
               or not set(n.all_input_nodes) <= reached.keys() for n in checks):
            raise TypeError(f"the forward's argument {placeholder.target!r}, traced as its "
                            "default, is read by more than torch.fx's check of its value")
        for node in reversed([n for n in graph.nodes if n in reached]):
            graph.erase_node(node)


def _drop_specialized(graph: torch.fx.Graph) -> None:
    """:func:`drop_defaults`, and where a default is a tuple, which made torch.fx return the
    output flattened to a list (its pytree code generation), the output given back its
    structure (a review: ``F.interpolate(y, size=size)`` with ``size=(4, 6)`` came out as
    one list of one output, read as a batch flattened)."""
    drop_defaults(graph)
    codegen = graph._codegen
    spec = getattr(getattr(codegen, "pytree_info", None), "out_spec", None)
    if isinstance(codegen, torch.fx.graph._PyTreeCodeGen) and spec is not None:
        output = next(n for n in reversed(graph.nodes) if n.op == "output")  # (a flat list)
        output.args = (pytree.tree_unflatten(list(output.args[0]), spec),)
        graph._codegen = torch.fx.graph.CodeGen()


def version(tensor: torch.Tensor) -> int | None:
    """A tensor's version counter, which counts its changes in place; None for an inference
    tensor (one made under ``torch.inference_mode()``), which has none: whoever reads it
    cannot tell whether it changed (a forward may enter inference mode and change it there:
    a review's bounds of 1.9 and 1.07 for maps of constants 274.8 and 2.28, where a version
    of 0 had been read as unchanged)."""
    return None if tensor.is_inference() else tensor._version


#: Why a network bound cannot rest on an inference tensor's value (:func:`version`).
UNTRACKED = ("an inference tensor (made under torch.inference_mode()), which keeps no version "
             "counter to show a change in place")


#: A decorator (each call enters a copy) that runs a function's probe forwards outside
#: ``torch.inference_mode()``, which would make their values inference tensors, whose
#: changes in place leave no version counter to read (a trial: the forward failed with
#: "Inference tensors do not track version counter").
outside_inference_mode = torch.inference_mode(False)


class BatchAxisGiven(ValueError):
    """An ``input_shape`` given with its batch axis: ``(1, C, *spatial)``, on which the
    model fails, where it runs on ``(C, *spatial)`` (:attr:`runs_on`)."""

    def __init__(self, shape: tuple[int, ...], kind: str):
        self.shape, self.runs_on = shape, shape[1:]
        super().__init__(f"input_shape={shape} includes the batch axis: {kind} runs on "
                         f"input_shape={shape[1:]}, (C, *spatial) without the batch")


class ForwardFailed(ValueError, RuntimeError):
    """The model's forward failed on the probe batch of ``input_shape``: a ValueError, as the
    shape is the argument at fault as far as sparseconv can tell (a new user's trial: a
    channel count the model does not take came out as a RuntimeError), and a RuntimeError,
    as earlier versions raised it (torch's own type for a shape its layers refuse)."""


def error_line(exc: BaseException, *, last: bool = False) -> str:
    """``exc``'s message on one line: its first non-blank line (its ``last`` for TorchScript,
    whose message ends with it), or the exception's type where the message is empty. A
    reason in a report stays one line (a review: torch.fx's ShapeProp error, embedded
    whole, put its graph dump and a link to tlparse inside the network bound's reason)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(exc).__name__


def forward_failed(model: nn.Module, shape: tuple[int, ...], exc: Exception, *,
                   last: bool = False, batch: int = 1) -> ValueError:
    """The model's own error on the probe batch, on one line (its ``last`` line for
    TorchScript, whose message ends with it; else its first, before torch.fx's context), with
    the batch it ran on: an ``input_shape`` given with its batch is the usual cause. Where it
    is, that is, where the model runs on ``shape[1:]`` after failing on ``shape`` with a
    leading 1, a ValueError says so."""
    if len(shape) > 1 and shape[0] == 1 and _runs_on(model, shape[1:]):
        return BatchAxisGiven(shape, _kind(model))
    # (a new user's trial: a grayscale H, W; a batch of 2 read as one unbatched sample of 2
    # channels failed with "expected ... 1 channels"; a second: an RGB model given 32,32)
    counts = (getattr(m, "in_channels", None) for m in model.modules())
    channels = next((int(c) for c in counts if isinstance(c, int)), 1)
    # (a third trial: a 2-D model given 3,17 was told it lacked the channel axis and ran on
    # (3, 3, 17); its first entry is the model's channel count, so a spatial axis is missing)
    if len(shape) > 1 and shape[0] == channels and _runs_on(model, (*shape, shape[-1])):
        return ForwardFailed(f"input_shape={shape} lacks a spatial axis, it seems: "
                             f"{_kind(model)}'s forward failed on a probe batch of shape "
                             f"{(batch, *shape)} and runs on input_shape="
                             f"{(*shape, shape[-1])} ({channels} channels, as its first "
                             "layer takes)")
    reason = error_line(exc, last=last)
    for fixed in dict.fromkeys(((1, *shape), (channels, *shape))):
        if _runs_on(model, fixed):  # (torch's error beside the guess: a forward that runs
            # at a batch of one alone, broadcasting with a constant of 3, was only told its
            # input lacked an axis; helper 269)
            return ForwardFailed(f"input_shape={shape} lacks the channel axis, it seems: "
                                 f"{_kind(model)}'s forward failed on a probe batch of shape "
                                 f"{(batch, *shape)} ({reason}) and runs on input_shape="
                                 f"{fixed}")
    return ForwardFailed(f"{_kind(model)}'s forward failed on a probe batch of shape "
                         f"{(batch, *shape)} (input_shape={shape} is (C, *spatial), without "
                         f"the batch): {reason}")


def _runs_on(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model``'s forward runs on a batch of one of zeros shaped ``shape`` (its
    state restored)."""
    try:
        with torch.no_grad(), restored_state(model):
            model(probe_input(model, shape, random=False))
    except Exception:  # noqa: BLE001 - a forward raises anything
        return False
    return True


def magnitude(module: nn.Module, x: torch.Tensor) -> float:
    """The size of the terms a layer's output sums, beyond its result's: its largest
    parameter or buffer times ``1 + max |x|`` (a bias of 1e6 then a zero-sum kernel, or a
    BatchNorm's mean and bias of 1e6, cancel to outputs near 1, rounded at 1e6)."""
    largest = max((float(t.detach().abs().max()) for t in (*module.parameters(),
                                                           *module.buffers())
                   if (t.is_floating_point() or t.is_complex()) and t.numel()), default=0.0)
    return largest * (1.0 + (float(x.detach().abs().max()) if x.numel() else 0.0))


def matches(ours: Any, theirs: Any, magnitude: float = 0.0) -> bool:
    """Whether two outputs agree to the rounding of their dtype: 1e4 units in the last place
    of the less precise (at most 0.1), relative to their largest entry or ``magnitude`` (the
    size of the terms summed, where they cancel). Where either has a non-finite entry (a
    float16 model overflowing on the probe) the shapes alone are compared."""
    if not (isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor)):
        return False
    if ours.shape != theirs.shape:
        return False
    if not (bool(torch.isfinite(ours).all()) and bool(torch.isfinite(theirs).all())):
        return True
    a, b = ours.detach().cpu().to(torch.complex128 if ours.is_complex() or theirs.is_complex()
                                  else torch.float64), theirs.detach().cpu()
    b = b.to(a.dtype)
    if a.numel() == 0:
        return True
    eps = max(torch.finfo(t.dtype).eps if t.is_floating_point() else
              torch.finfo(t.real.dtype).eps if t.is_complex() else 0.0 for t in (ours, theirs))
    tolerance = min(1e4 * eps, 0.1)
    scale = max(float(a.abs().max()), float(b.abs().max()), magnitude)
    return bool(((a - b).abs() <= tolerance * scale + 1e-300).all())


#: The tensor types whose calls torch's own kernels run (a Parameter disables
#: ``__torch_function__``); any other subclass may replace what a call computes.
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


def _function_modes() -> list | None:
    """The active torch function modes but torch's own ``DeviceContext`` (which
    ``torch.set_default_device`` and ``with torch.device(...)`` install: it sets the device
    of new tensors only); None where this torch cannot say."""
    stack = getattr(torch.overrides, "_get_current_function_mode_stack", None)
    device = getattr(getattr(torch.utils, "_device", None), "DeviceContext", None)
    if stack is None or device is None:
        return None
    return [mode for mode in stack() if type(mode) is not device]


def _dispatch_modes() -> list | None:
    """The active torch dispatch modes; None where this torch cannot say."""
    import torch.utils._python_dispatch as python_dispatch

    stack = getattr(python_dispatch, "_get_current_dispatch_mode_stack", None)
    return None if stack is None else list(stack())


def dispatched(tensors: Iterable[Any] = ()) -> str | None:
    """What may replace what torch's functions compute on ``tensors`` just now: an active
    ``TorchFunctionMode`` or ``TorchDispatchMode``, or a tensor subclass among ``tensors``
    (named), or None. A network bound that reads ``F.relu`` as 1-Lipschitz does not hold
    there (a review: a subclass whose ``torch.sin`` returned its input's memory, and a
    ``relu`` scaled by 50, got bounds of 1.0 and 1.19 for maps of 51 and 14.3)."""
    for what, modes in (("a TorchFunctionMode", _function_modes),
                        ("a TorchDispatchMode", _dispatch_modes)):
        active = modes()
        if active is None:  # (an older or newer torch without the stack: no bound trusts it)
            return f"{what} may be active (this torch cannot list them)"
        if active:
            return f"{what} is active ({type(active[0]).__name__})"
    kinds = sorted({type(t).__name__ for t in tensors
                    if isinstance(t, torch.Tensor) and type(t) not in _PLAIN_TENSORS})
    return f"a tensor of class {kinds[0]} (a torch.Tensor subclass)" if kinds else None


#: Where torch's own Python code lies.
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _outside_torch(function: Any) -> str | None:
    """The file of a Python function (or of a ``functools.partial``'s) defined outside torch,
    or None: a builtin, or torch's own."""
    while isinstance(function, functools.partial):
        function = function.func
    code = getattr(function, "__code__", None)
    if code is None or os.path.abspath(code.co_filename).startswith(_TORCH_DIR):
        return None
    return code.co_filename


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The tensors a module reads of its own: its parameters and buffers, the tensors among
    its plain attributes, and each parametrized tensor as its property computes it (a review:
    a parametrization returning a tensor subclass, or a plain attribute put in a weight's
    place, is in no ``parameters()``)."""
    own = [*module._parameters.values(), *module._buffers.values(),
           *(v for v in vars(module).values() if isinstance(v, torch.Tensor))]
    if parametrize.is_parametrized(module):
        with torch.no_grad():
            own += [getattr(module, str(name)) for name in vars(module)["_modules"].get(
                "parametrizations", {})]
    return [t for t in own if t is not None]


def replaced_forward(module: nn.Module) -> str | None:
    """For a module of one of torch's classes: a method of its class or a base (``forward``,
    ``_conv_forward``, ...) that is now a function defined outside torch (a review:
    ``nn.ReLU.forward`` patched to 50 times itself got a bound of 0.94 for a map of 22.2),
    said in words; else None."""
    cls: type = type(module)
    if parametrize.is_parametrized(module) and cls.__name__ == (
            f"Parametrized{cls.__bases__[0].__name__}"):
        cls = cls.__bases__[0]
    if getattr(nn, cls.__name__, None) is not cls:
        return None  # a user's class: its forward is the user's, its constant given
    for klass in cls.__mro__:  # forward, _conv_forward, ... on the class or a base
        for name, value in list(vars(klass).items()):
            where = _outside_torch(value)
            if where is not None:
                return f"{klass.__name__}.{name} is defined outside torch ({where})"
    return None

