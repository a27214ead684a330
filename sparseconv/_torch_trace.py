"""Walking a network: one forward pass, every leaf module's call recorded (:func:`trace`).

Forward hooks on every leaf module see its calls whatever the model's ``forward`` does; a
TorchScript model, which has no hooks, is walked through its graph
(:mod:`sparseconv._torch_script`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from sparseconv._torch_graph import output_leaves
from sparseconv._torch_kinds import (
    _refuse,
    check_module,
    is_reshape,
    leaf_modules,
    mode_hooked,
    mode_matters,
)
from sparseconv._torch_layer_base import _input_shape
from sparseconv._torch_probe import (
    dispatched,
    forward_failed,
    leaves_the_model,
    module_tensors,
    probe_input,
    replaced_forward,
)
from sparseconv._torch_script import _kind, script_calls
from sparseconv._torch_state import restored_state
from sparseconv._validation import as_bool


@dataclass(frozen=True)
class TraceRecord:
    """One call of a leaf module during :func:`trace`.

    Attributes
    ----------
    name : str
        The qualified name (``model.get_submodule(name)``; ``""`` for the model itself).
    module : torch.nn.Module
    input_shape, output_shape : tuple of int
        The first input's and the output's shapes, without the batch.
    linear : bool
        Whether sparseconv.torch builds this module's matrix (:func:`matrix` accepts it).
    sample : tuple of torch.Tensor or None
        For a linear record, the first input and the output of the probe's first sample
        (seeded random values), which the report checks its reading of the module against.
    dispatched : str or None
        What may have replaced what torch's functions computed in this call, said in words:
        a tensor subclass among its inputs, outputs or the module's own tensors (parameters,
        buffers, tensor attributes, parametrized weights), an active ``TorchFunctionMode``
        or ``TorchDispatchMode``, or, for a module of torch's own class, a method of that
        class defined outside torch; None otherwise. :func:`lipschitz_report` gives no
        network bound for a model with such a call.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU()).eval()
    >>> [(r.name, r.input_shape, r.output_shape, r.linear) for r in sct.trace(model, (3, 9, 9))]
    [('0', (3, 9, 9), (4, 4, 4), True), ('1', (4, 4, 4), (4, 4, 4), False)]
    """

    name: str
    module: nn.Module = field(repr=False)
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    linear: bool
    sample: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False,
                                                            compare=False)
    dispatched: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PaddedRecord(TraceRecord):
    """A padding module's call and the convolution's that reads its output, as one row of
    :func:`sparseconv.torch.lipschitz_report` (``fold_padding=True``): ``module`` the folded
    convolution (:func:`sparseconv.torch.fold_padding`), the shapes and ``sample`` from the
    padding's input to the convolution's output, ``parts`` the two calls' records."""

    parts: tuple[TraceRecord, ...] = field(default=(), repr=False, compare=False)


def row_parts(record: TraceRecord) -> tuple[TraceRecord, ...]:
    """The calls a row's record stands for: a :class:`PaddedRecord`'s two, else itself."""
    return record.parts if isinstance(record, PaddedRecord) else (record,)


def padded_record(pad: TraceRecord, conv: TraceRecord, module: nn.Module) -> PaddedRecord:
    """``pad``'s call and ``conv``'s, which reads its output, as one record of ``module``."""
    sample = (None if pad.sample is None or conv.sample is None else
              (pad.sample[0], conv.sample[1]))
    return PaddedRecord(f"{pad.name}+{conv.name}", module, pad.input_shape, conv.output_shape,
                        True, sample, pad.dispatched or conv.dispatched, parts=(pad, conv))


def _is_linear(module: nn.Module) -> bool:
    try:
        _refuse(module)
    except (TypeError, ValueError):
        return False
    return True


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((t for t in map(_first_tensor, value) if t is not None), None)
    return None


def _shape(value) -> tuple[int, ...]:
    tensor = _first_tensor(value)
    return () if tensor is None else tuple(tensor.shape[1:])


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside the wrappers that compute what it computes: ``torch.compile``'s
    ``OptimizedModule`` (``_orig_mod``), ``nn.DataParallel`` and ``DistributedDataParallel``
    (``module``); their layers keep the model's own names."""
    return _inside(model)[0]


def compiled_reason(model: nn.Module) -> str | None:
    """Why the forward of a model wrapped by ``torch.compile`` is no map the bound over its
    graph or ``network_operator`` may read (its layers are the model's), or None."""
    if not _inside(model)[1]:
        return None
    return ("the model is wrapped by torch.compile, whose compiled call may compute otherwise "
            "than the forward read here (a forward that reads torch.compiler.is_compiling(), "
            "a backend's own code: a review's bound of 2.01 for a compiled map of 112): pass "
            "model._orig_mod, the forward as Python runs it")


def _inside(model: nn.Module) -> tuple[nn.Module, bool]:
    """:func:`unwrapped`'s model, and whether a wrapper on the way was ``torch.compile``'s."""
    compiled = False
    while True:
        inner: Any = getattr(model, "_orig_mod", None)
        if type(model).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
            model, compiled = inner, True
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model, compiled


def _checked(model: nn.Module, input_shape, allow_train: bool | None) -> tuple[int, ...]:
    """``input_shape`` checked; a model in training mode refused unless ``allow_train``
    (``None``: refused, and the caller has no ``allow_train`` to suggest); a lazy module not
    yet run refused."""
    check_module(model, "model")
    if allow_train is not None:
        allow_train = as_bool(allow_train, "allow_train")
    shape = _input_shape(input_shape, None, _kind(model))
    if not isinstance(model, torch.jit.ScriptModule):  # (a review: torch's own RuntimeError,
        # "register_forward_hook is not supported on ScriptModules", was all it said)
        script = next(((name, m) for name, m in model.named_modules()
                       if isinstance(m, torch.jit.ScriptModule)), None)
        if script is not None:
            raise TypeError(f"module {script[0]!r} of the eager model is a TorchScript module "
                            f"({_kind(script[1])}), which forward hooks cannot see into: pass "
                            "the model with that module eager, or the whole model scripted "
                            "(torch.jit.script(model))")
    lazy = [(name, m) for name, m in model.named_modules()
            if any(isinstance(p, (UninitializedParameter, UninitializedBuffer))
                   for p in (*m.parameters(recurse=False), *m.buffers(recurse=False)))]
    if lazy:
        name, module = lazy[0]
        raise ValueError(f"module {name or '(the model)'!r} ({_kind(module)}) has parameters "
                         "not yet initialized (a lazy module): run one forward pass first, "
                         "model(torch.zeros((1, *input_shape)))")
    # only where the mode matters: model[:4] of an eval model is a new Sequential in training
    # mode, its layers still in eval mode; a fresh ReLU swapped in is in training mode too
    _one_input(model)
    # (a new user's trial: a Conv2d whose hook may read the mode was named as if the
    # convolution did, and its hook, refused after eval(), was not)
    hooked = ", whose hook may read the mode"
    training = [(f"module {name!r} ({_kind(m)}{hooked if mode_hooked(m) else ''})" if name
                 else _kind(m) + (f" ({hooked[2:]})" if mode_hooked(m) else ""))
                for name, m in model.named_modules()
                if getattr(m, "training", False) and mode_matters(m)]  # (frozen: no flag)
    if training and not allow_train:
        raise ValueError(f"the model is in training mode ({', '.join(training[:3])}"
                         f"{', ...' if len(training) > 3 else ''}): call model.eval() first"
                         + ("" if allow_train is None else ", or pass allow_train=True"))
    return shape


def _one_input(model: nn.Module) -> None:
    """Refuse a forward that needs more than one input, by name (a trial: Python's own
    "forward() missing 1 required positional argument" came out of the probe's call).
    TorchScript models are checked on their graph (:mod:`sparseconv._torch_script`)."""
    if isinstance(model, torch.jit.ScriptModule):
        return
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # a forward with no readable signature: run it
        return
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p.name for p in parameters if p.kind in positional and p.default is p.empty]
    if len(required) > 1:
        raise TypeError(f"{_kind(model)}.forward takes {len(required)} inputs "
                        f"({', '.join(required)}); one is supported (wrap the model in a module "
                        "whose forward takes one tensor, the others fixed)")


def _script_trace(model: nn.Module, shape: tuple[int, ...], strict: bool = False,
                  ) -> tuple[list[TraceRecord], tuple[list[bool], list[bool]]]:
    """:func:`trace` of a TorchScript model, and its BatchNorm and padding folds (see
    :func:`sparseconv._torch_script.script_calls`; ``strict``: as a bound over the graph
    checks them)."""
    calls, folds = script_calls(model, shape, strict)
    return [_record(name, module, x, y) for name, module, x, y in calls], folds


#: The most entries (input and output) of a record's probe sample: larger layers keep none.
_SAMPLE_ENTRIES = 1 << 24


def _record(name: str, module: nn.Module, inputs, output) -> TraceRecord:
    """A call's record, with its probe sample if the module is linear."""
    linear = _is_linear(module)
    x, y = _first_tensor(inputs), _first_tensor(output)
    sample = None
    if linear and x is not None and y is not None and x.shape[:1] == y.shape[:1] == (1,) and (
            x.numel() + y.numel() <= _SAMPLE_ENTRIES):
        sample = (x[0].detach().clone(), y[0].detach().clone())
    # what may have changed what torch computed in this call, seen as it ran (a review: a
    # weight swapped for a subclass during the forward, and back after)
    given = inputs if isinstance(inputs, (tuple, list)) else (inputs,)  # (a review: a 0-d
    # buffer, a TorchScript call's input, was iterated: "iteration over a 0-d tensor")
    leaves = output_leaves([*given, output]) or []  # (None: an output that is no tensors)
    changed = replaced_forward(module) or dispatched([*leaves, *module_tensors(module)])
    return TraceRecord(name, module, _shape(inputs), _shape(output), linear, sample, changed)


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@leaves_the_model
def trace(model: nn.Module, input_shape: Sequence[int], *,
          allow_train: bool = False) -> list[TraceRecord]:
    """Run one forward pass and record every leaf module's call, in call order.

    Forward hooks on every leaf module (a module without children) see its calls whatever the
    model's ``forward`` does: residual blocks, branches, a module called twice (two records).
    Only leaf modules are listed: functional calls inside ``forward`` (``F.relu``, ``x + y``,
    ``torch.cat``) are not modules and are not seen (:func:`network_operator` sees them, through
    torch.fx). The input is a seeded standard normal batch of shape ``(1, *input_shape)`` (of
    two samples where a module is in training mode: a BatchNorm there takes its statistics
    from the batch, and refuses one value per channel; zeros where the forward fails on it)
    in the model's dtype and device, run under ``torch.no_grad()``; every buffer, the
    model's other state and torch's random state are restored afterwards, so a model traced
    in training mode keeps its BatchNorm statistics and a seeded run its dropout masks.

    A TorchScript model (``torch.jit.script`` or ``torch.jit.trace``, or ``torch.jit.load``),
    which has no forward hooks, is traced through its inlined graph instead: every leaf
    module's call is located by the module its operations come from, the graph is run once
    with those calls' inputs, outputs and arguments as extra outputs, and each call of a
    module PyTorch ships (``Conv2d``, ``BatchNorm2d``, ``Linear``, ``ReLU``, ...) is recorded
    as that eager module, rebuilt from the arguments its operations actually received: the
    records are the eager model's. A leaf module that runs no operation (``Identity``) is
    not recorded; a module of another class is recorded as its ScriptModule (not linear).

    Parameters
    ----------
    model : torch.nn.Module
        An eager module, or a ``torch.jit.ScriptModule``.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.
    allow_train : bool, optional
        Trace a model with modules in training mode (their records say ``linear=False``
        where that matters). By default such a model is refused.

    Returns
    -------
    list of TraceRecord

    Raises
    ------
    ValueError
        A module in training mode (without ``allow_train=True``), a bad ``input_shape``
        (one on which the model's forward fails: also a RuntimeError, as before).
    TypeError
        A ``model`` that is no ``torch.nn.Module``, ``allow_train`` not a bool; in a
        TorchScript model: a leaf module called inside control flow (an ``if`` or a loop of
        the graph), or a shipped module whose operations are not its class's, named.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()).eval()
    >>> [(r.name, r.output_shape, r.linear) for r in sct.trace(net, (1, 5, 5))]
    [('0', (2, 3, 3), True), ('1', (2, 3, 3), False)]
    """
    model = unwrapped(model)
    # (None means "no flag to suggest" to _checked; a new user's trial: taken as False)
    shape = _checked(model, input_shape, as_bool(allow_train, "allow_train"))
    if isinstance(model, torch.jit.ScriptModule):
        return _script_trace(model, shape)[0]
    records: list[TraceRecord] = []
    hooks = []
    # a batch of two in training mode: a BatchNorm there takes its statistics from the batch,
    # and refuses one value per channel (a new user's trial: lipschitz_bounds of a Linear
    # and a BatchNorm1d in training mode failed); sized against the memory limit before any
    # hook is registered (a review: registered first, a refused probe left them on the model)
    batch = 2 if any(m.training for m in model.modules()) else 1
    probe = probe_input(model, shape, batch=batch)
    for name, module in leaf_modules(model):  # a parametrized layer is one leaf
        def hook(mod, args, kwargs, output, name=name):
            # (a module called with its input as a keyword, conv(input=x): a new user's trial)
            inputs = (*args, *([kwargs["input"]] if "input" in kwargs else []), *(
                value for key, value in kwargs.items() if key != "input"))
            records.append(_record(name, mod, inputs, output))
        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:  # (in training mode, allow_train, BatchNorm would update its statistics)
        with torch.no_grad(), restored_state(model):
            try:
                model(probe)
            except Exception:  # noqa: BLE001 - a model may index with its input (an
                # Embedding of x.long()): zeros, as before, whose records check less; a
                # model in training mode that takes one sample only, one
                records.clear()
                model(probe[:1].zero_())
    except Exception as exc:  # noqa: BLE001 - the model's own error, whatever its type (a
        # new user's trial: its KeyError or IndexError came out as if sparseconv raised it)
        raise forward_failed(model, shape, exc) from exc
    finally:
        for handle in hooks:
            handle.remove()
    _refuse_unbatched_probe(records, shape)
    _refuse_unbatched_calls(records)
    return records


def _spatial_rank(module: nn.Module) -> int | None:
    """The spatial axes a convolution or a pooling module works on (its input has one more
    when PyTorch reads it unbatched, two more batched), or None for another module."""
    kernel = getattr(module, "kernel_size", None)
    if isinstance(module, nn.modules.conv._ConvNd) and isinstance(kernel, tuple):
        return len(kernel)
    name = type(module).__name__
    if "Pool" in name and name[-2:] in ("1d", "2d", "3d"):
        return int(name[-2])
    return None


def _refuse_unbatched_calls(records: list[TraceRecord]) -> None:
    """Refuse a layer called on a tensor without the probe's batch axis: a linear layer's 0-d
    sample (``fc(y.squeeze())``, a new user's trial: "input_shape must be a non-empty tuple
    ..., got ()"; but an Identity or Dropout of one number a sample, ``(N,)``, keeps the
    batch: a review), or a convolution's or pooling's input one axis short (``conv(y[0])``,
    PyTorch's unbatched call: reviews; lipschitz_bounds blamed an ``input_shape`` the user
    never passed). Each record reads its input's first axis as the batch."""
    for record in records:
        if record.input_shape:
            rank = _spatial_rank(record.module)
            unbatched = rank is not None and len(record.input_shape) == rank
        else:  # (an empty Sequential, Flatten(0) keep it too: a review)
            unbatched = record.linear and not is_reshape(record.module)
        if unbatched:
            raise ValueError(
                f"layer {record.name!r} ({_kind(record.module)}) is called on a tensor "
                "without the batch axis (the probe's batch of 1 was squeezed or indexed "
                "away: y.squeeze(), y[0]?); keep the batch axis (y.flatten(1), "
                "y.squeeze(-1), y[:1])")


def _refuse_unbatched_probe(records: list[TraceRecord], shape: tuple[int, ...]) -> None:
    """Refuse an ``input_shape`` without its channel axis: a convolution or pooling that
    takes unbatched inputs reads the probe batch ``(1, *input_shape)`` as one sample of 1
    channel, and every shape after it lacks the batch (a new user's trial: ``trace(model, (8,
    8))`` of a Conv2d returned shapes one axis short, and the report blamed a squeeze in the
    forward)."""
    for record in records:
        rank = _spatial_rank(record.module)
        if rank is not None and record.input_shape == shape and len(shape) == rank:
            raise ValueError(
                f"input_shape={shape} lacks the channel axis, it seems: "
                + (f"{record.name!r} ({type(record.module).__name__})" if record.name else
                   type(record.module).__name__)
                + f" takes (C, *spatial) with {rank} spatial "
                f"axes, and PyTorch read the probe batch {(1, *shape)} as one sample without "
                f"a batch; pass input_shape={(1, *shape)} for one channel")
