"""The Lipschitz constants of PyTorch's elementwise activations, as modules and as functions.

An elementwise ``f`` with ``|f'| <= L`` everywhere is ``L``-Lipschitz in every norm of the
signal, so the network bounds multiply by ``L``. Each constant is ``sup |f'|`` or a decimal
just above it, never below:

* ``ReLU``, ``ReLU6``, ``Hardtanh``, ``Tanh``, ``Softsign`` (``1 / (1 + |x|)^2``),
  ``LogSigmoid`` (``sigmoid(-x)``), ``Tanhshrink`` (``tanh^2``), ``Softshrink``, ``CELU``
  (``exp(x / alpha)`` below 0), ``clamp``: 1;
* ``LeakyReLU``: ``max(1, |slope|)``; ``ELU``: ``max(1, |alpha|)``; ``PReLU``: ``max(1,
  max |weight|)``; ``Sigmoid``: ``1/4``; ``Hardsigmoid``: ``1/6``; ``Hardswish``: ``3/2``
  (``(2x + 3) / 6`` on ``[-3, 3]``);
* ``SELU``: ``scale * alpha = 1.7580993...`` (``scale alpha exp(x)`` below 0), bounded by
  ``1.7581``;
* ``GELU``: ``f' = Phi(x) + x phi(x)``, ``f'' = phi(x) (2 - x^2)``: largest at ``sqrt(2)``,
  ``1.1289041...``; its ``tanh`` approximation peaks at ``1.1289931...`` near ``x = 1.4185``;
  both bounded by ``1.13``. ``SiLU``: ``1.0998393...`` at ``x = 2.3994``, bounded by
  ``1.1``. ``Mish``: ``1.0884982...`` at ``x = 1.4906``, bounded by ``1.089``. (The smallest
  ``f'`` of each is above ``-0.13``.) Found as the roots of ``f''`` in 40-digit arithmetic
  (mpmath), which ``tests/test_torch_report.py`` repeats.

Not ``Softplus``: PyTorch's switches to the identity above its ``threshold``, a jump of
``log(1 + e^-t) / beta``; nor ``Hardshrink`` or ``Threshold``, which jump too.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparseconv._torch_layers import is_torch_class

__all__ = ["function_constant", "module_constant"]

_ONE = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
        nn.Softshrink, nn.CELU)
_FIXED: dict[type, Fraction] = {
    nn.Sigmoid: Fraction(1, 4), nn.Hardsigmoid: Fraction(1, 6), nn.Hardswish: Fraction(3, 2),
    nn.SELU: Fraction("1.7581"), nn.GELU: Fraction("1.13"), nn.SiLU: Fraction("1.1"),
    nn.Mish: Fraction("1.089"),
}
#: The same, called as functions (``F.gelu``, ``torch.tanh``, ``x.relu()``, ...).
_FUNCTIONS: dict[Any, Fraction] = {
    **{f: Fraction(1) for f in (
        F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.hardtanh, F.hardtanh_, torch.tanh,
        F.tanh, F.softsign, F.logsigmoid, F.tanhshrink, F.softshrink, F.celu, F.celu_,
        torch.clamp, torch.clip, "relu", "relu_", "tanh", "tanh_", "clamp", "clamp_", "clip",
        "clip_")},
    **{f: Fraction(1, 4) for f in (torch.sigmoid, F.sigmoid, "sigmoid", "sigmoid_")},
    F.hardsigmoid: Fraction(1, 6), F.hardswish: Fraction(3, 2), F.selu: Fraction("1.7581"),
    torch.selu: Fraction("1.7581"), F.gelu: Fraction("1.13"), F.silu: Fraction("1.1"),
    F.mish: Fraction("1.089"),
}


def _magnitude(value: Any) -> Fraction:
    """``|value|`` of a number or the largest of a real tensor, exactly (floats are exact
    rationals); a non-finite one is refused by the caller's ``math.inf`` check."""
    if isinstance(value, torch.Tensor):
        value = value.detach().abs().max().item() if value.numel() else 0.0
    value = abs(float(value))
    return Fraction(value) if math.isfinite(value) else Fraction(-1)


def module_constant(module: nn.Module) -> Fraction | None:
    """The Lipschitz constant of an activation of torch's own class (a subclass may compute
    anything), or None if unknown."""
    if not is_torch_class(module):
        return None
    if isinstance(module, nn.LeakyReLU):
        return max(Fraction(1), _magnitude(module.negative_slope))
    if isinstance(module, nn.ELU):  # f' = alpha exp(x) below 0
        return max(Fraction(1), _magnitude(module.alpha))
    if isinstance(module, nn.PReLU):  # a learned slope per channel (or one)
        slope = _magnitude(module.weight)
        return None if slope < 0 else max(Fraction(1), slope)
    if isinstance(module, _ONE):  # (Hardtanh covers ReLU6)
        return Fraction(1)
    return next((c for cls, c in _FIXED.items() if isinstance(module, cls)), None)


def function_constant(target: Any, args: Any, kwargs: dict) -> Fraction | None:
    """The Lipschitz constant of an activation called as a function in a torch.fx graph
    (its constant arguments by value), or None if unknown."""
    if target in (F.leaky_relu, F.leaky_relu_):
        return max(Fraction(1), _magnitude(kwargs.get("negative_slope",
                                                      args[1] if len(args) > 1 else 0.01)))
    if target in (F.elu, F.elu_):
        return max(Fraction(1), _magnitude(kwargs.get("alpha", args[1] if len(args) > 1
                                                      else 1.0)))
    if target in (F.prelu, torch.prelu):
        weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            return None  # (a weight computed from the signal stays a graph node)
        slope = _magnitude(weight)
        return None if slope < 0 else max(Fraction(1), slope)
    try:
        return _FUNCTIONS.get(target)
    except TypeError:  # an unhashable target
        return None
