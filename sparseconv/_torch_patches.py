"""The names torch's code calls through, watched for replacement since sparseconv.torch
was imported.

A network bound trusts that torch computes what torch's code says. A function of torch
replaced -- by code defined elsewhere, by another of torch's own (``torch.relu =
torch.sinh``), a namespace swapped under a module of torch.nn (``torch.nn.modules.conv.F``),
a function changed in place (its ``__code__``, defaults, closure) -- withholds it
(:func:`replaced_functions`; five reviews found each of these below the truth).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import torch
import torch._dynamo  # noqa: F401 - before the snapshot below: see _AT_IMPORT
import torch.functional
import torch.nn.functional as F
from torch import nn

from sparseconv._torch_probe import _outside_torch

__all__ = ["replaced_functions"]


def _watched() -> list[tuple[str, Any]]:
    """The namespaces whose names torch's modules and functions call through: ``torch``,
    ``torch.nn.functional``, ``torch.Tensor``, torch's native entry points
    (``torch._C._nn``, ``torch._C._VariableFunctions``), ``torch.functional`` (whose
    ``einsum`` calls its ``_VF``), the globals of every module of
    ``torch.nn.modules`` (``torch.nn.modules.conv.F``...), and every module class of
    ``torch.nn``."""
    spaces: list[tuple[str, Any]] = [
        ("torch", torch), ("torch.nn.functional", F), ("torch.Tensor", torch.Tensor),
        ("torch._C.TensorBase", torch._C.TensorBase), ("torch._C._nn", torch._C._nn),
        ("torch._C._VariableFunctions", torch._C._VariableFunctions),
        ("torch._VF", torch._VF),  # (F.dropout calls torch._VF.dropout, through its .vf)
        ("torch.functional", torch.functional)]  # (torch.einsum calls its _VF: a review
    # swapped that module's _VF for one with einsum 4 times itself, a bound of a quarter)
    spaces += [(name, module) for name, module in list(sys.modules.items())
               if name.startswith("torch.nn.modules.") and module is not None]
    spaces += [(f"torch.nn.{name}", value) for name, value in vars(nn).items()
               if isinstance(value, type) and issubclass(value, nn.Module)]
    return spaces


def _names(space: Any) -> dict[str, Any]:
    """A namespace's names and what they hold (``dir`` where it has no ``__dict__``)."""
    try:
        return dict(vars(space))
    except TypeError:  # (its dunders: method wrappers Python makes anew on each lookup)
        return {name: getattr(space, name, None) for name in dir(space)
                if not name.startswith("__")}


def _snapshot() -> dict[tuple[str, str], Any]:
    return {(label, name): value for label, space in _watched()
            for name, value in _names(space).items()}


def _insides(value: Any) -> tuple:
    """What a Python function computes with besides its identity: its code, defaults and
    closure cells, each of which can be replaced in place (a review: ``F.relu.__code__ =
    F.selu.__code__``, a closure cell of ``F.max_pool2d`` scaled by 50)."""
    if not isinstance(value, types.FunctionType):
        return ()
    cells = []
    for cell in value.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            cells.append(_MISSING)
    return (value.__code__, value.__defaults__, value.__kwdefaults__, *cells)


def _insides_snapshot() -> dict[tuple[str, str], tuple]:
    return {key: _insides(value) for key, value in _AT_IMPORT.items()
            if isinstance(value, types.FunctionType)}


_MISSING = object()

#: What :func:`_watched`'s names held when sparseconv.torch was first imported, and what
#: each Python function among them computed with (:func:`_insides`). Taken with torch._dynamo
#: imported, which wraps ``torch.manual_seed`` (and others) when it is: the adapter's modules
#: import it through ``torch.compiler.disable``, and one imported before them (a private
#: module first, as a doctest run of one file does) had it wrap them after the snapshot, and
#: refused every network as "torch.manual_seed was replaced".
_AT_IMPORT = _snapshot()
_INSIDES_AT_IMPORT = _insides_snapshot()


def replaced_functions() -> str | None:
    """A name torch's code calls through (:func:`_watched`) that holds another object than
    when sparseconv.torch was imported, or a public function of ``torch``,
    ``torch.nn.functional`` or ``torch.Tensor`` that is one defined outside torch (a wrapper
    or a monkeypatch, made before that import): either may compute anything, and torch's
    modules call these; said in words, or None. (Reviews: ``F.relu`` patched to 50 times
    itself got a chain bound of 0.94 for a map of 20.4; ``torch.relu`` made
    ``functools.partial(torch.mul, other=50.)``, or ``torch.sinh``, both defined in torch, and
    ``torch.nn.modules.conv.F``, ``torch._C._nn.leaky_relu`` and ``torch.Tensor.__mul__``
    replaced, got bounds of 0.78 down to a nine-thousandth of the network's constant.)"""
    spaces = _watched()
    labels = {id(space): label for label, space in spaces}
    for label, space in spaces:
        for name, value in _names(space).items():
            was = _AT_IMPORT.get((label, name), _MISSING)
            if was is _MISSING:  # (a name a class gains shadows its bases': torch.Tensor's
                # __mul__ set by hand replaced TensorBase's, a review's bound of 1.58 for a
                # map of 28.9); else a name a module gained (a submodule imported since)
                was = (_inherited(space, name, labels) if isinstance(space, type) else value
                       if type(space) is types.ModuleType else _MISSING)  # (torch._VF, a
                # module of its own class: a name it gains shadows what its __getattr__
                # forwards to, a review's dropout of 50 times its input)
            if value is not was and (_code(value) or _code(was)) and not _same_descriptor(
                    value, was) and name not in _NOT_RUN:
                return f"{label}.{name} was replaced after sparseconv.torch was imported"
            inside = _INSIDES_AT_IMPORT.get((label, name))
            if value is was and inside is not None and name not in _NOT_RUN and any(
                    a is not b for a, b in zip(_insides(value), inside, strict=True)):
                return (f"{label}.{name} was changed in place (its code, defaults or closure) "
                        "after sparseconv.torch was imported")
    for label, namespace in (("torch", torch), ("torch.nn.functional", F),
                             ("torch.Tensor", torch.Tensor)):
        for name, value in list(vars(namespace).items()):
            if name.startswith("_") or isinstance(value, (type, types.ModuleType)):
                continue
            where = _outside_torch(value)
            if where is not None:
                return f"{label}.{name} is a function defined outside torch ({where})"
    return None


#: Methods that compute nothing of a forward (torch.compile's Dynamo replaces nn.Module's
#: ``__init__`` and ``__setstate__`` with its own, to tag the modules it sees).
_NOT_RUN = frozenset({"__init__", "__setstate__", "__getstate__", "__repr__", "extra_repr",
                      "__dir__", "__init_subclass__", "__reduce__", "__reduce_ex__",
                      "reset_parameters", "_reset_parameters"})


def _code(value: Any) -> bool:
    """Whether ``value`` is code or holds it (a function, a method or descriptor, a module
    whose names torch's code calls through): not data a class or module keeps, which Python
    and TorchScript add and change as they run (``__annotations__``, caches)."""
    return callable(value) and not isinstance(value, type) or isinstance(value, (
        types.ModuleType, staticmethod, classmethod, property, types.SimpleNamespace)) or (
        isinstance(value, type) and issubclass(value, nn.Module))


def _inherited(cls: type, name: str, labels: dict[int, str]) -> Any:
    """What ``cls.name`` resolved to at the import, through its watched bases (``_MISSING``
    where none had it)."""
    for base in cls.__mro__[1:]:
        label = labels.get(id(base))
        if label is not None and (label, name) in _AT_IMPORT:
            return _AT_IMPORT[(label, name)]
    return _MISSING


def _same_descriptor(value: Any, was: Any) -> bool:
    """Two lookups of one thing that Python makes anew (a class's ``__dict__`` entry is the
    same object; this guards against wrappers that compare equal, a bound method)."""
    return type(value) is type(was) and isinstance(value, types.MethodType) and value == was
