"""The modules of the user's classes given their Lipschitz constants (``lipschitz_constants``)
that the bound over a scripted model's graph calls whole, as activations of those constants
(:func:`given_leaves`), and those whose forward the bound over an eager model's graph follows
instead, the constant unused (:func:`followed_constants`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparseconv._torch_kinds import is_leaf, is_torch_module
from sparseconv._torch_script import _kind
from sparseconv._torch_script_graph import _of_the_user

__all__ = ["followed_constants", "given_leaves"]


def given_leaves(model: nn.Module, given: Mapping[str, float]) -> frozenset[str]:
    """The qualified names of a scripted model's modules compiled from classes of the user's,
    without submodules, whose forward takes one input, and whose Lipschitz constant ``given``
    holds (by name or class): the rebuilt graph of the bound calls them whole, as activations
    of that constant (a new user's trial: EfficientNet's ``Swish``, ``x * sigmoid(x)``, given
    1.1, was followed into a product of two signals, no bound). TorchScript refuses an
    attribute set in a forward and reads no globals, so what such a module reads is its input
    and its own tensors, which the rebuilt graph checks. None in an eager model: its forward
    may read what another module left (an attribute, a global), as two reviews found
    (bounds 1e4 below the truth); torch.fx follows it. None in a traced model as
    ``torch.jit.trace`` returns it (its submodules cannot be called alone)."""
    if not isinstance(model, torch.jit.ScriptModule) or isinstance(
            model, torch.jit.TracedModule):
        return frozenset()
    return frozenset(name for name, module in _given_leaf_modules(model, given)
                     if _of_the_user(module) and _one_input(module))


def followed_constants(model: nn.Module, given: Mapping[str, float]) -> list[tuple[str, str]]:
    """The names and classes (``("act", "Swish")``) of an eager model's modules of the user's
    classes, without submodules, given a constant: the bound over the graph follows their
    forward, and does not use it."""
    if isinstance(model, torch.jit.ScriptModule):
        return []
    return [(name, _kind(module)) for name, module in _given_leaf_modules(model, given)
            if not is_torch_module(module)]


def _given_leaf_modules(model: nn.Module, given: Mapping[str, float]) -> list[tuple[str, Any]]:
    """The model's modules without submodules (not itself) that ``given`` names, by their
    qualified name or class."""
    return [(name, module) for name, module in model.named_modules() if name and (
        name in given or _kind(module) in given) and is_leaf(module)] if given else []


def _one_input(module: nn.Module) -> bool:
    """Whether a scripted module's ``forward`` takes exactly one argument without a default,
    by its schema (False where it has none: a loaded traced model's module no call reached,
    a review)."""
    try:
        method: Any = module.forward  # (a ScriptMethod: torch's stubs do not know schema)
        arguments = method.schema.arguments[1:]  # (after self)
    except (AttributeError, RuntimeError):
        return False
    return sum(not a.has_default_value() for a in arguments) == 1
