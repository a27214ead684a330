"""A model's state, kept and put back around the probe runs of :mod:`sparseconv.torch`.

State is what a forward may change and a later call read: its parameters and buffers, and
every other attribute of every submodule, in its ``__dict__`` or ``__slots__``, with what it
holds (:func:`_held`): a tensor, a number or string, a list, deque, ``array.array``, dict,
set or tuple and its items, a numpy array, any other object's attributes (a dataclass's, a
``SimpleNamespace``'s, a tensor's Python attributes; a TorchScript module's attributes
through its C++ object). :func:`restored_state` puts it back after a block (every probe run
and torch.fx trace: a report left a forward's ``self.s.mul_(2)`` and ``self.n = self.n * 2``
applied once per run, 1 -> 32); :func:`changes_own_state` says whether a forward changes it
so that the model is no one map.

Also kept: each tensor's ``.grad`` and ``requires_grad``, and the state of a random number
generator held (``random.Random``, a numpy ``Generator`` or ``RandomState``, a
``torch.Generator``). Not kept: state outside the model (a global, a closure, a class
attribute), an iterator's or a generator's position (``itertools.count()``: no state to read
back), the slots of objects other than modules, what lies more than :data:`_DEPTH`
containers deep, and the parameters' values except around an entry point and in
:func:`changes_own_state`'s runs (a copy of every weight on every probe run). Nor is a change
seen that the probes do not make happen: one made at a batch size or on values no probe has
(a third review: a factor multiplied by 10 on batches of four alone, bounded at the first
call's constant).
"""

from __future__ import annotations

import contextlib
import math
import random
import types
from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence, MutableSet
from typing import Any

import numpy as np
import torch
from torch import nn

from sparseconv._torch_kinds import _weight_hooks

#: How many containers deep a value is kept (a list of dicts of tensors: three).
_DEPTH = 4

_MISSING = object()


def changes_own_state(model: nn.Module, x: torch.Tensor) -> str:
    """Why ``model`` is no one map, if its forward changes its own state (``""`` if not):
    on every call (``self.n = self.n * 2``, a counter, a list appended to), or on its first
    (``y = self.k * x; self.k = 2``, a value cached, a record of the output): a later call
    starts from another state than the probes, which each start from the state the model
    was given in, and what it reads of that state no probe tells (a record, never read,
    looks the same as a factor read by the next call; a review's TorchScript model updated
    a buffer it read in the same call, the output equal at the next call, and the bound
    read it at rest: 1.0 for 3.0). State is what :func:`restored_state` keeps, the
    parameters' values included (changed in place: a write no schema says,
    ``native_batch_norm``'s running statistics in training mode; a review). Two calls on
    ``x`` with autograd off and two with it on (an ordinary call's mode: a review's ``if
    torch.is_grad_enabled(): self.n = self.n * 2`` was bounded, 0.72 for the next call's
    1.44; a forward that fails with autograd on is checked off alone), each pair from the
    state the model was given in, undone afterwards."""
    for grad in (False, True):
        once: list[str] = []
        again: list[str] = []
        try:
            with torch.set_grad_enabled(grad), restored_state(model, once, parameters=True):
                model(x.clone())
                with restored_state(model, again, parameters=True):
                    model(x.clone())
        except Exception:  # noqa: BLE001 - a forward raises anything
            if not grad:
                raise
            continue  # (out= on a parameter that requires grad: it runs without autograd)
        if again:
            return (f"changes its own state on every call ({_listed(again)}): each call may "
                    "compute another map")
        if once:
            return (f"changes its own state in its forward ({_listed(once)}): the next call "
                    "may compute another map than this one (a value its first call caches? "
                    "run the model once, model(x), and ask again; a record of each call, "
                    "self.last = y, cannot be told from state a call reads: keep it out of "
                    "the forward)")
    return ""


@contextlib.contextmanager
def restored_state(model: nn.Module, changed: list[str] | None = None,
                   parameters: bool = False) -> Iterator[None]:
    """The block's changes to ``model``'s state undone: every buffer and every other tensor
    it holds copied back in place (:func:`restored_tensors`; the parameters too with
    ``parameters=True``), every attribute of every submodule bound again to what it held,
    every container it holds given its entries back, every numpy array its values, every
    random number generator its state, every leaf tensor its ``.grad`` and
    ``requires_grad``. What
    changed is named in ``changed``, if given (but the weight an old-style
    ``spectral_norm``, ``weight_norm`` or pruning hook sets again before each call, from the
    parameters, which its first call changes from the raw weight: :func:`_recomputed`)."""
    kept = [(prefix + "." * bool(prefix), module, type(module), _attributes(module))
            for prefix, module in model.named_modules()]
    labels = {id(t): f"parameter {n!r}" for n, t in model.named_parameters()}
    labels.update({id(t): f"buffer {n!r}" for n, t in model.named_buffers()})
    tensors = {id(t): t for t in (*(model.parameters() if parameters else ()),
                                  *model.buffers())}
    for prefix, _, _, attributes in kept:
        for key, (value, _) in attributes.items():
            if key not in ("_parameters", "_buffers", "_modules"):
                for tensor in _tensors_in(value, _DEPTH):
                    tensors.setdefault(id(tensor), tensor)
                    labels.setdefault(id(tensor), f"tensor attribute {prefix + key!r}")
    flags = [(t, t.grad, t.requires_grad) for t in  # (a review: a forward that set .grad;
             {id(t): t for t in (*model.parameters(), *tensors.values())}.values()
             if t.is_leaf]  # a tensor computed, a hook's weight, has none of its own)
    written: list[torch.Tensor] = []
    with restored_tensors(tensors.values(), written):
        try:
            yield
        finally:
            for tensor, grad, requires in flags:
                if tensor.grad is not grad:
                    tensor.grad = grad
                    if changed is not None:
                        changed.append(f"the gradient of {labels[id(tensor)]}")
                if tensor.requires_grad != requires and tensor.is_leaf:
                    tensor.requires_grad_(requires)
                    if changed is not None:
                        changed.append(f"requires_grad of {labels[id(tensor)]}")
            for prefix, module, kind, attributes in kept:
                if type(module) is not kind:  # (a lazy module, initialized by its first
                    # call, has become its class's own: its state is that class's now)
                    if changed is not None:
                        changed.append(f"the class of module {prefix.rstrip('.')!r}")
                    continue
                recomputed = _recomputed(module)
                for key in _put_back(module, attributes):
                    if changed is not None and key not in recomputed:
                        changed.append(f"attribute {prefix + key!r}")
    if changed is not None:
        changed.extend(labels[id(t)] for t in written)


def _attributes(module: nn.Module) -> dict[str, tuple[Any, Any]]:
    """``module``'s attributes, each with :func:`_contents` of it: an ``nn.Module``'s
    ``__dict__`` (its parameter, buffer and submodule dicts among them), a TorchScript
    module's attributes that are no parameter, buffer or submodule (read through its C++
    object, which gives a new Python list, dict or object at each read)."""
    if isinstance(module, torch.jit.ScriptModule):
        concrete = getattr(module, "_concrete_type", None)
        if concrete is None:  # pragma: no cover - every scripted or loaded module has one
            return {}
        own = {*module._parameters.keys(), *module._buffers.keys(), *module._modules.keys()}
        return {name: (module._c.getattr(name), None)
                for name in concrete.get_attributes() if name not in own}
    slots = {_SLOT + name: (getattr(module, name, _MISSING), None)  # (a review: a slot's
             for name in _slot_names(type(module))}  # n left at 32 where it was 1)
    return {**slots, **{key: (value, _contents(value, _DEPTH))
                        for key, value in vars(module).items()}}


#: Where :func:`_attributes` keeps a ``__slots__`` attribute (no key of a ``__dict__``).
_SLOT = "\0slot "


def _slot_names(kind: type) -> tuple[str, ...]:
    """The attributes the ``__slots__`` of ``kind`` and its bases hold (private names as
    Python mangles them), read once for each class (asked on every probe run)."""
    known = _SLOTS.get(kind)
    if known is not None:
        return known
    names = []
    for base in kind.__mro__:
        slots = base.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            private = name.startswith("__") and not name.endswith("__")
            names.append(f"_{base.__name__.lstrip('_')}{name}" if private else name)
    _SLOTS[kind] = tuple(names)
    return _SLOTS[kind]


_SLOTS: dict[type, tuple[str, ...]] = {}


def _held(value: Any) -> tuple[str, Any] | None:
    """How ``value`` holds what a forward may change in place: ``("array", value)`` a numpy
    array; ``("random", value)`` a random number generator (:data:`_RANDOM`), its state;
    ``("tuple", value)``; ``("sequence", value)`` a list, deque, ``array.array``;
    ``("mapping", value)`` a dict; ``("set", value)``; ``("mapping", vars(value))`` any other
    object's attributes (a dataclass's, a ``SimpleNamespace``'s, a TorchScript class's, a
    tensor's Python attributes: a review's counters in a deque, an ``array.array``, a
    dataclass and ``weight.k``); ``None`` for a number, a string, a module (its own entry in
    ``named_modules``), a class, a function."""
    if isinstance(value, np.ndarray):
        return "array", value
    if isinstance(value, _RANDOM):
        return "random", value
    if isinstance(value, (str, bytes, nn.Module, type, types.FunctionType, types.MethodType,
                          types.BuiltinFunctionType, types.ModuleType)):
        return None
    if isinstance(value, tuple):
        return "tuple", value
    if isinstance(value, MutableSequence):
        return "sequence", value
    if isinstance(value, MutableMapping):
        return "mapping", value
    if isinstance(value, MutableSet):
        return "set", value
    attributes = getattr(value, "__dict__", None)
    return ("mapping", attributes) if isinstance(attributes, dict) and (
        attributes or not isinstance(value, torch.Tensor)) else None


#: Random number generators, whose state a draw advances (a review: a numpy Generator's
#: draw made the map, and the library's runs advanced it).
_RANDOM = (random.Random, np.random.Generator, np.random.RandomState, torch.Generator)


def _random_state(generator: Any) -> Any:
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    if isinstance(generator, np.random.RandomState):
        return generator.get_state(legacy=False)
    return generator.getstate() if isinstance(generator, random.Random) else \
        generator.get_state()


def _set_random_state(generator: Any, state: Any) -> None:
    if isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    elif isinstance(generator, np.random.RandomState):
        generator.set_state(state)
    elif isinstance(generator, random.Random):
        generator.setstate(state)
    else:
        generator.set_state(state)


def _contents(value: Any, depth: int) -> Any:
    """What ``value`` holds that a forward may change in place, kept (:func:`_held`): the
    items of a sequence, mapping or set (each with its own contents), a numpy array's
    values; ``None`` for anything else, or at ``depth`` 0."""
    held = _held(value)
    if depth <= 0 or held is None:
        return None
    kind, view = held
    if kind == "array":
        return view.copy()
    if kind == "random":
        return _random_state(view)
    if kind == "set":
        return set(view)
    if kind in ("tuple", "sequence"):
        return [(item, _contents(item, depth - 1)) for item in view]
    return [(key, item, _contents(item, depth - 1)) for key, item in view.items()]


def _tensors_in(value: Any, depth: int) -> Iterator[torch.Tensor]:
    """The tensors ``value`` is or holds (:func:`_held`), to ``depth`` containers deep."""
    if isinstance(value, torch.Tensor):
        yield value
    held = _held(value)
    if depth > 0 and held is not None and held[0] not in ("array", "random"):
        kind, view = held
        for item in (view.values() if kind == "mapping" else view):
            yield from _tensors_in(item, depth - 1)


def _put_back(module: nn.Module, attributes: dict[str, tuple[Any, Any]]) -> list[str]:
    """The attributes of ``module`` not as in ``attributes``, each put back, named once."""
    changed: list[str] = []
    if isinstance(module, torch.jit.ScriptModule):
        for name, (value, _) in attributes.items():
            if not same_value(module._c.getattr(name), value):
                module._c.setattr(name, value)
                changed.append(name)
        return changed
    bound = vars(module)
    for key in [k for k in bound if k not in attributes]:
        del bound[key]
        changed.append(key)
    for key, (value, contents) in attributes.items():
        if key.startswith(_SLOT):
            name = key[len(_SLOT):]
            now = getattr(module, name, _MISSING)
            if now is not value and not same_value(now, value):
                changed.append(name)
                if value is _MISSING:
                    object.__delattr__(module, name)
                else:
                    object.__setattr__(module, name, value)
            continue
        now = bound.get(key, _MISSING)
        bound[key] = value
        if (now is not value and not same_value(now, value)) | _refilled(value, contents):
            changed.append(key)
    return changed


def _refilled(value: Any, contents: Any) -> bool:
    """Whether ``value``'s contents were changed from ``contents`` (:func:`_contents`), each
    put back in place."""
    held = _held(value)
    if contents is None or held is None:
        return False
    kind, view = held
    changed = False
    if kind in ("tuple", "sequence"):
        items = [item for item, _ in contents]
        if kind == "sequence" and (len(view) != len(items) or any(
                a is not b and not same_value(a, b, 0) for a, b in zip(view, items))):
            if isinstance(view, list):
                view[:] = items
            else:  # (a deque: no slice assignment; an array.array: no clear())
                while len(view):
                    view.pop()
                view.extend(items)
            changed = True
        for item, inner in contents:
            changed |= _refilled(item, inner)
    elif kind == "mapping":
        if list(view) != [key for key, _, _ in contents] or any(
                view[key] is not item and not same_value(view[key], item, 0)
                for key, item, _ in contents):
            view.clear()
            view.update({key: item for key, item, _ in contents})
            changed = True
        for _, item, inner in contents:
            changed |= _refilled(item, inner)
    elif kind == "set":
        if view != contents:
            view.clear()
            view.update(contents)
            changed = True
    elif kind == "random":
        if not same_value(_random_state(view), contents, _DEPTH + 2):
            _set_random_state(view, contents)
            changed = True
    elif not same_value(view, contents):  # (an array)
        if view.shape == contents.shape:
            view[...] = contents
        changed = True
    return changed


def _recomputed(module: nn.Module) -> set[str]:
    """The attributes ``module``'s weight hooks set again before each call, from its
    parameters (``weight`` of an old-style ``spectral_norm`` or ``weight_norm``, which its
    first call changes from the raw weight), which a forward's change is no change of."""
    return {str(getattr(hook, "name", getattr(hook, "_tensor_name", "")))
            for hook in module._forward_pre_hooks.values() if isinstance(hook, _weight_hooks())}


def same_value(now: Any, was: Any, depth: int = _DEPTH) -> bool:
    """Whether ``now`` holds what ``was`` held: the same object, tensors or numpy arrays of
    the same values (a NaN where one was; a ``weight_norm`` hook's weight made again on
    each call), equal numbers or strings, lists, tuples, dicts and sets of the same, objects
    of one class whose attributes are the same (a TorchScript class's, read as a new Python
    object each time: a review's false refusal), to ``depth`` containers deep."""
    if now is was:
        return True
    if isinstance(now, torch.Tensor) and isinstance(was, torch.Tensor):
        return unchanged(now, was)
    if type(now) is not type(was):
        return False
    if type(now) in _PLAIN or isinstance(now, np.generic):  # (not a subclass: a review's
        # int whose __eq__ said True, its rebinding n = 2n unseen, an operator accepted)
        return bool(now == was) or (isinstance(now, (float, complex, np.inexact)) and
                                    math.isnan(abs(now)) and math.isnan(abs(was)))
    if isinstance(now, _PLAIN):  # (a subclass: the same object only)
        return False
    if isinstance(now, np.ndarray):
        try:
            return bool(np.array_equal(now, was, equal_nan=now.dtype.kind in "fc"))
        except TypeError:  # (an array of objects)
            return False
    if depth <= 0:
        return False
    if isinstance(now, (tuple, MutableSequence)):
        return len(now) == len(was) and all(same_value(a, b, depth - 1)
                                            for a, b in zip(now, was))
    if isinstance(now, set):
        return bool(now == was)
    if isinstance(now, MutableMapping):
        return list(now) == list(was) and all(same_value(now[k], was[k], depth - 1)
                                              for k in now)
    if isinstance(now, (nn.Module, type, types.FunctionType, types.MethodType)) or not \
            hasattr(now, "__dict__"):
        return False
    return same_value(vars(now), vars(was), depth - 1)


#: The types whose values are compared by ``==`` (their own, no subclass's).
_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _listed(names: list[str]) -> str:
    names = list(dict.fromkeys(names))
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@contextlib.contextmanager
def restored_tensors(tensors: Iterable[torch.Tensor],
                     changed: list[torch.Tensor] | None = None) -> Iterator[None]:
    """Every one of ``tensors`` that the block changed is copied back, and only those, so that
    an untouched one keeps its version counter (a NaN where it was is no change; an inference
    tensor is copied back in inference mode, the only one that may change it: a review found
    both); each is appended to ``changed`` first, if given."""
    saved = [(buffer, buffer.detach().clone()) for buffer in tensors
             if not buffer.is_meta and not nn.parameter.is_lazy(buffer)]  # (no values to
    # keep: a meta tensor refused by name where read, a lazy module's told to run first)
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                if not unchanged(buffer, value):
                    if changed is not None:
                        changed.append(buffer)
                    with torch.inference_mode(buffer.is_inference()), torch.no_grad():
                        # (inference_mode(False) turns autograd on: a parameter's copy)
                        if buffer.shape != value.shape:  # (resized by out=: a review's
                            buffer.resize_(value.shape)  # where(..., out=buf), left resized)
                        buffer.copy_(value)


def unchanged(now: torch.Tensor, was: torch.Tensor) -> bool:
    """Whether a tensor holds what it held, a NaN where it had one included."""
    if torch.equal(now, was):
        return True
    if now.shape != was.shape or now.dtype != was.dtype or not (
            now.is_floating_point() or now.is_complex()):
        return False
    return bool(((now == was) | (torch.isnan(now) & torch.isnan(was))).all())
