"""The modules of the user's classes, without submodules, given their Lipschitz constants
(``lipschitz_constants``), that the bound over a model's graph calls whole, as activations of
those constants (:func:`given_leaves`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparseconv._torch_kinds import is_leaf, is_torch_module
from sparseconv._torch_script import _kind
from sparseconv._torch_script_graph import _of_the_user

__all__ = ["given_leaves"]


def given_leaves(model: nn.Module, given: Mapping[str, float]) -> frozenset[str]:
    """The qualified names of a model's modules of the user's classes, without submodules,
    whose Lipschitz constant ``given`` holds (by name or class): the bound over the graph
    calls them whole, as activations of that constant (a new user's trial: EfficientNet's
    ``Swish``, ``x * sigmoid(x)``, given 1.1, was followed into a product of two signals, no
    bound).

    In an eager model, where what each call reads and leaves allows: torch.fx follows the
    forward, and :func:`sparseconv._torch_whole_calls.whole_units` takes whole only a module
    whose traced calls read their one argument and constants alone and run torch's own
    operations (three reviews found modules called whole, untraced, reading what another module
    left, an attribute or a global, or tracing otherwise than they run: bounds 3 to 1e4 times
    below the truth); the graph runs those traced nodes. In a scripted model, those whose
    forward takes one input: TorchScript refuses an attribute set in a forward and reads no
    globals, so what such a module reads is its input and its own tensors, which the rebuilt
    graph checks. None in a traced model as ``torch.jit.trace`` returns it (its submodules
    cannot be called alone)."""
    if isinstance(model, torch.jit.TracedModule):
        return frozenset()
    if not isinstance(model, torch.jit.ScriptModule):
        return frozenset(name for name, module in _given_leaf_modules(model, given)
                         if not is_torch_module(module))
    return frozenset(name for name, module in _given_leaf_modules(model, given)
                     if _of_the_user(module) and _one_input(module))


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
