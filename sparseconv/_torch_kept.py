"""The user's modules given their Lipschitz constants (``lipschitz_constants``) that the
report's network bound keeps whole, as activations of those constants, where torch.fx would
follow their forward (:func:`given_leaves`): only modules that read their input alone."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparseconv._torch_activations import is_sample_norm
from sparseconv._torch_kinds import is_leaf, is_torch_module
from sparseconv._torch_probe import fx_trace, probe_input
from sparseconv._torch_script import _kind
from sparseconv._torch_script_graph import _of_the_user
from sparseconv._torch_sizes_tracer import SizesTracer
from sparseconv._torch_state import restored_state

__all__ = ["given_leaves"]


def given_leaves(model: nn.Module, given: Mapping[str, float],
                  shape: tuple[int, ...]) -> frozenset[str]:
    """The qualified names of the user's modules without submodules whose Lipschitz constant
    ``given`` holds (by name or class): the bound keeps them whole, as activations of that
    constant, where torch.fx would follow their forward (a new user's trial: EfficientNet's
    ``Swish``, given 1.1, was listed as assumed, and its forward's ``x * sigmoid(x)`` then
    had no bound). Only a module whose ``forward`` takes one input: one of two inputs, whose
    map is no activation's, is followed (its constant, of another map, not taken). In a
    scripted model, its modules compiled from classes of the user's; none in a traced one
    (whose submodules cannot be called alone: their operations are followed). In an eager
    model, only those that read their input alone (:func:`_reads_its_input_alone`,
    :func:`_reading_the_forward`), each called with that input alone."""
    if isinstance(model, torch.jit.TracedModule) or not given:
        return frozenset()
    scripted = isinstance(model, torch.jit.ScriptModule)
    kept = frozenset(name for name, module in model.named_modules() if name and (
        name in given or _kind(module) in given) and is_leaf(module) and (
        _of_the_user(module) if scripted else not is_torch_module(module))
        and _one_input(module) and (scripted or _reads_its_input_alone(module)))
    if scripted or not kept:  # (TorchScript refuses attributes set in a forward, reads no
        return kept  # globals, and its rebuilt graph checks what each call reads)
    kept -= _reading_the_forward(model, shape, kept)
    try:  # each called with its input alone (a review: forward(self, x, s=None) called with
        # s = 10 got the constant of its one-input map, 0.81 for ratios of 8.0)
        graph = fx_trace(model, SizesTracer(leaves=kept))
    except Exception:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return kept  # (no graph: no bound over it; a Sequential calls each with one input)
    return kept - {str(node.target) for node in graph.nodes if node.op == "call_module" and (
        len(node.args) != 1 or node.kwargs)}


def _reading_the_forward(model: nn.Module, shape: tuple[int, ...],
                         names: frozenset[str]) -> set[str]:
    """Those of the modules ``names`` whose output on the input a forward pass gave them
    changes after another forward pass, on another input (or that then fail): they read
    what the forward left behind, not their input alone (a review: a module reading a global
    ``STORE["x"]`` that another module set to the signal, and whose own trace by torch.fx
    could not show it, was kept whole, 0.81 for ratios of 10.7). Each is called as its
    class's forward, without hooks, after a pass on the other input; the model's state is
    restored after."""
    modules = dict(model.named_modules())
    seen: dict[str, tuple] = {}

    def keep(name, module, inputs, output):
        if name not in seen:
            seen[name] = (tuple(t.clone() if isinstance(t, torch.Tensor) else t
                                for t in inputs), output.clone()
                          if isinstance(output, torch.Tensor) else None)

    handles = [modules[name].register_forward_hook(functools.partial(keep, name))
               for name in names]
    reading: set[str] = set()
    try:
        with torch.no_grad(), restored_state(model):
            model(probe_input(model, shape))
            for handle in handles:
                handle.remove()
            other = 2.0 * probe_input(model, shape).flip(-1) + 1.0
            for name in sorted(names):  # (each right after a pass on another input: a call
                # of one module may set what another reads, a global dict, as the forward
                # did; the review's case passed or not with the names' order)
                model(other)
                inputs, output = seen.get(name, ((), None))
                try:
                    again = modules[name].forward(*inputs) if output is not None else None
                except Exception:  # noqa: BLE001 - whatever the module's code raises
                    again = None
                if not (isinstance(again, torch.Tensor) and again.shape == output.shape
                        and torch.equal(again, output)):
                    reading.add(name)
    except Exception:  # noqa: BLE001 - the forward's own failure: none is kept
        return set(names)
    finally:
        for handle in handles:
            handle.remove()
    return reading


def _reads_its_input_alone(module: nn.Module) -> bool:
    """Whether a module's forward, traced by torch.fx alone (a copy), reads nothing but its
    input and its own parameters and buffers (a review: a module adding ``self.ctx``, set by
    another module's forward to ten times the signal, was kept whole, 0.81 for ratios of
    9.9), and calls no normalization by each sample's statistics (``F.layer_norm``: its call
    followed, the constant given below its slope is warned of, as the review found one
    hidden)."""
    try:
        graph = fx_trace(copy.deepcopy(module))
    except Exception:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return False
    own = {name for name, _ in module.named_parameters()} | {
        name for name, _ in module.named_buffers()}
    return not any(node.op == "call_module" or (node.op == "get_attr" and node.target not in own)
                   or (node.op == "call_function" and is_sample_norm(node.target))
                   for node in graph.nodes)


def _one_input(module: nn.Module) -> bool:
    """Whether ``module.forward`` takes exactly one argument without a default (and no
    ``*args``; a scripted one's, by its schema)."""
    if isinstance(module, torch.jit.ScriptModule):
        try:  # (a ScriptMethod, whose schema torch's stubs do not know; a loaded traced
            # model's module that no call reached has none: a review)
            method: Any = module.forward
            arguments = method.schema.arguments[1:]  # (after self)
        except (AttributeError, RuntimeError):
            return False
        return sum(not a.has_default_value() for a in arguments) == 1
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # (no signature to read)
        return False
    kinds = inspect.Parameter
    if any(p.kind is kinds.VAR_POSITIONAL for p in parameters):
        return False
    return sum(p.default is kinds.empty and p.kind is not kinds.VAR_KEYWORD
               for p in parameters) == 1
