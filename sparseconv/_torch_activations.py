"""The Lipschitz constants of PyTorch's elementwise activations, as modules and as functions.

An elementwise ``f`` with ``|f'| <= L`` everywhere is ``L``-Lipschitz in every norm of the
signal, so the network bounds multiply by ``L``. Each constant is ``sup |f'|`` or a decimal
just above it, never below:

* ``ReLU``, ``ReLU6``, ``Hardtanh``, ``Tanh``, ``Softsign`` (``1 / (1 + |x|)^2``),
  ``LogSigmoid`` (``sigmoid(-x)``), ``Tanhshrink`` (``tanh^2``), ``Softshrink``, ``clamp``,
  ``CELU`` with ``alpha > 0`` (``exp(x / alpha)`` below 0; a negative ``alpha``, which
  PyTorch takes, makes it unbounded: no constant): 1;
* ``LeakyReLU``: ``max(1, |slope|)``; ``ELU``: ``max(1, |alpha|)``; ``PReLU``: ``max(1,
  max |weight|)`` (a non-finite one: no constant); ``Sigmoid``: ``1/4``; ``Hardsigmoid``:
  ``1/6``; ``Hardswish``: ``3/2`` (``(2x + 3) / 6`` on ``[-3, 3]``);
* ``SELU``: ``scale * alpha = 1.7580993...`` (``scale alpha exp(x)`` below 0), bounded by
  ``1.7581``;
* ``GELU``: ``f' = Phi(x) + x phi(x)``, ``f'' = phi(x) (2 - x^2)``: largest at ``sqrt(2)``,
  ``1.1289041...``; its ``tanh`` approximation peaks at ``1.1289931...`` near ``x = 1.4185``;
  both bounded by ``1.13``. ``SiLU``: ``1.0998393...`` at ``x = 2.3994``, bounded by
  ``1.1``. ``Mish``: ``1.0884982...`` at ``x = 1.4906``, bounded by ``1.089``. (The smallest
  ``f'`` of each is above ``-0.13``.) Found as the roots of ``f''`` in 30-digit arithmetic
  (mpmath), which ``tests/test_torch_report.py`` repeats.

Not ``Softplus``: PyTorch's switches to the identity above its ``threshold``, a jump of
``log(1 + e^-t) / beta``; nor ``Hardshrink`` or ``Threshold``, which jump too.
"""

from __future__ import annotations

import copy
import io
import math
import random
import types
import warnings
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparseconv._caller import outside_level
from sparseconv._rounding import decimal_outward
from sparseconv._torch_kinds import is_torch_class

__all__ = ["KNOWN_FUNCTIONS", "function_constant", "module_constant"]

_ONE = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
        nn.Softshrink, nn.Softmax, nn.Softmax2d, nn.Softmin)  # (softmax's Jacobian, diag(p)
# - p p^T, lies between 0 and diag(p), so its norm is at most max p <= 1, and softmin's is its
# negative: over one axis of a sample, each slice apart; over the batch axis, refused as any
# map that mixes the samples)
_FIXED: dict[type, Fraction] = {
    nn.Sigmoid: Fraction(1, 4), nn.Hardsigmoid: Fraction(1, 6), nn.Hardswish: Fraction(3, 2),
    nn.SELU: Fraction("1.7581"), nn.GELU: Fraction("1.13"), nn.SiLU: Fraction("1.1"),
    nn.Mish: Fraction("1.089"),
}
#: The same, called as functions (``F.gelu``, ``torch.tanh``, ``x.relu()``, ...).
_FUNCTIONS: dict[Any, Fraction] = {
    **{f: Fraction(1) for f in (
        F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.hardtanh, F.hardtanh_, torch.tanh,
        F.tanh, F.softsign, F.logsigmoid, F.tanhshrink, F.softshrink, torch.clamp, torch.clip,
        "relu", "relu_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_")},
    **{f: Fraction(1, 4) for f in (torch.sigmoid, F.sigmoid, "sigmoid", "sigmoid_")},
    F.hardsigmoid: Fraction(1, 6), F.hardswish: Fraction(3, 2), F.selu: Fraction("1.7581"),
    torch.selu: Fraction("1.7581"), F.gelu: Fraction("1.13"), F.silu: Fraction("1.1"),
    F.mish: Fraction("1.089"),
}


def _magnitude(value: Any) -> Fraction | None:
    """``|value|`` of a number, or the largest of a real tensor, exactly (floats are exact
    rationals); None for a non-finite, complex or non-numeric one."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or not value.is_floating_point():
            return None
        value = value.detach().to("cpu", torch.float64).abs().max().item() if (
            value.numel()) else 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = abs(float(value))
    return Fraction(value) if math.isfinite(value) else None


def _at_least_one(value: Any) -> Fraction | None:
    """``max(1, |value|)``: a slope or scale below 0 (LeakyReLU, ELU, PReLU), or None."""
    magnitude = _magnitude(value)
    return None if magnitude is None else max(Fraction(1), magnitude)


def _celu(alpha: Any) -> Fraction | None:
    """CELU: ``exp(x / alpha)`` below 0, at most 1 for ``alpha > 0``; for ``alpha < 0`` it
    grows without bound as ``x -> -inf`` (PyTorch accepts a negative alpha)."""
    magnitude = _magnitude(alpha)
    return Fraction(1) if magnitude is not None and float(alpha) > 0 else None


def module_constant(module: nn.Module) -> Fraction | None:
    """The Lipschitz constant of an activation of torch's own class (a subclass may compute
    anything), or None if unknown."""
    if not is_torch_class(module):
        return None
    if isinstance(module, nn.LeakyReLU):
        return _at_least_one(module.negative_slope)
    if isinstance(module, nn.ELU):  # f' = alpha exp(x) below 0
        return _at_least_one(module.alpha)
    if isinstance(module, nn.PReLU):  # a learned slope per channel (or one)
        return _at_least_one(module.weight)
    if isinstance(module, nn.CELU):
        return _celu(module.alpha)
    if isinstance(module, nn.RReLU):  # below 0, their mean in eval mode, a slope drawn
        # between lower and upper in training (a new user's trial found it unknown)
        return _rrelu(module.lower, module.upper, module.training)
    if isinstance(module, _ONE):  # (Hardtanh covers ReLU6)
        return Fraction(1)
    return next((c for cls, c in _FIXED.items() if isinstance(module, cls)), None)


#: Activations whose constant depends on an argument: ``(name, its default, the constant)``.
_BY_ARGUMENT: dict[Any, tuple[str, Any, Callable[[Any], Fraction | None]]] = {
    **{f: ("negative_slope", 0.01, _at_least_one) for f in (F.leaky_relu, F.leaky_relu_)},
    **{f: ("alpha", 1.0, _at_least_one) for f in (F.elu, F.elu_)},
    **{f: ("alpha", 1.0, _celu) for f in (F.celu, F.celu_)},
    # (a weight computed from the signal: a node, None)
    **{f: ("weight", None, _at_least_one) for f in (F.prelu, torch.prelu)}}


def _rrelu(lower: Any, upper: Any, training: Any) -> Fraction | None:
    """RReLU's: below 0 the slope ``(lower + upper) / 2`` outside training, one drawn between
    ``lower`` and ``upper`` in it (each draw's map is then at most that steep)."""
    if training is False:
        lower = upper = (lower + upper) / 2 if _magnitude(lower) is not None and (
            _magnitude(upper) is not None) else None
    elif training is not True:  # (a mode computed in the graph: unknown here)
        return None
    low, high = _at_least_one(lower), _at_least_one(upper)
    return None if low is None or high is None else max(low, high)


#: RReLU as a function: ``F.rrelu(input, lower, upper, training, inplace)``, ``torch.rrelu(input,
#: lower, upper, training, generator)`` (a generator draws only in training).
_RRELU = (F.rrelu, F.rrelu_, torch.rrelu, torch.rrelu_)


#: Every function :func:`function_constant` knows a constant of (its arguments permitting).
KNOWN_FUNCTIONS = {*_FUNCTIONS, *_BY_ARGUMENT, *_RRELU}


def function_constant(target: Any, args: Any, kwargs: dict) -> Fraction | None:
    """The Lipschitz constant of an activation called as a function in a torch.fx graph
    (its constant arguments by value), or None if unknown."""
    if any(target is f for f in _RRELU):  # (a new user's trial: nn.RReLU had a constant,
        # F.rrelu none)
        given = list(args[1:4])
        return _rrelu(*(kwargs.get(name, given[i] if i < len(given) else default)
                        for i, (name, default) in enumerate(
                            (("lower", 1 / 8), ("upper", 1 / 3), ("training", False)))))
    try:
        name, default, constant = _BY_ARGUMENT[target]
    except (KeyError, TypeError):  # (TypeError: an unhashable target)
        pass
    else:
        return constant(kwargs.get(name, args[1] if len(args) > 1 else default))
    try:
        return _FUNCTIONS.get(target)
    except TypeError:  # an unhashable target
        return None


_SAMPLE_NORM_KINDS = ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "GroupNorm",
                      "LayerNorm", "RMSNorm")


def sample_norm_slope(module: nn.Module, input_shape: tuple[int, ...],
                      dtype: torch.dtype | None = None) -> tuple[float, float] | None:
    """``(lower, upper)``: bounds of the Lipschitz constant of a normalization by each sample's
    own statistics on one sample of ``input_shape`` (``(C, *spatial)``), rounded outward:
    torch's ``InstanceNorm*d`` without running statistics, ``GroupNorm``, ``LayerNorm`` and
    ``RMSNorm``, eager or TorchScript (``RMSNorm(eps=None)``'s ``eps`` is that of ``dtype``,
    the input's, float32's for half precision, as torch takes it: without ``dtype``, no
    bounds); None for any other module. Never used as the report's constant: the report's
    reason names them, and a constant given below ``lower`` is warned of.

    Each block the module normalizes (``n`` entries: a channel of a sample, a group, the
    normalized shape) maps ``x`` to ``w * (x - mean) / sqrt(var + eps)`` (``w * x / sqrt(mean(x^2)
    + eps)`` for RMSNorm), whose Jacobian ``diag(w) (P - c u u^T) / sqrt(var + eps)`` (``P``
    the centring projection, the identity for RMSNorm; ``u`` the unit centred sample,
    ``0 <= c < 1``) has norm at most ``||diag(w) P|| / sqrt(var + eps)``, attained at a sample
    of zero variance; the blocks are independent. So ``upper = max|w| / sqrt(eps)``, and
    ``lower = max|w| sqrt(1 - 1/n) / sqrt(eps)`` (``P`` applied to the unit vector of the
    largest weight's entry), ``max|w| / sqrt(eps)`` where ``w`` is one number per block
    (InstanceNorm) or ``P`` the identity (RMSNorm). (A new user's trial: ``InstanceNorm2d``
    given the constant 1 bounded a map whose slope measured 319.6 at inputs of scale 1e-4;
    ``1 / sqrt(1e-5) = 316.2``. A review: a LayerNorm's weights ``[1, 0]`` have the constant
    ``sqrt(1/2) / sqrt(eps)``, not ``1 / sqrt(eps)``.)

    Examples
    --------
    >>> from torch import nn
    >>> [round(v, 3) for v in sample_norm_slope(nn.InstanceNorm2d(4), (4, 8, 8))]
    [316.228, 316.228]
    >>> [round(v, 3) for v in sample_norm_slope(nn.LayerNorm(4), (4,))]
    [273.861, 316.228]
    >>> sample_norm_slope(nn.ReLU(), (4,)) is None
    True
    """
    kind = getattr(module, "original_name", None) if isinstance(module, torch.jit.ScriptModule) \
        else type(module).__name__ if is_torch_class(module) else None
    if kind not in _SAMPLE_NORM_KINDS or (kind.startswith("InstanceNorm") and getattr(
            module, "track_running_stats", True)):
        return None
    if isinstance(module, torch.jit.ScriptModule) and not hasattr(module, "eps"):
        module = _traced_arguments(module, kind)  # (a traced module keeps no attributes)
        if module is None:
            return None
    return _norm_slope(kind, getattr(module, "eps", None), getattr(module, "weight", None),
                       input_shape, dtype, getattr(module, "num_groups", None),
                       getattr(module, "normalized_shape", None))


#: The normalizations by each sample's statistics called as functions: their kind, and the
#: positions and defaults of their ``eps``, ``weight`` and (GroupNorm's ``num_groups`` or
#: LayerNorm's and RMSNorm's ``normalized_shape``) arguments (``F.instance_norm`` also takes
#: ``use_input_stats`` at 5: False normalizes by the running statistics, a linear map).
_NORM_FUNCTIONS: dict[Any, tuple[str, tuple[str, int, Any], tuple[str, int]]] = {
    **{f: ("LayerNorm", ("eps", 4, 1e-5), ("normalized_shape", 1))
       for f in (F.layer_norm, torch.layer_norm)},
    **{f: ("GroupNorm", ("eps", 4, 1e-5), ("num_groups", 1))
       for f in (F.group_norm, torch.group_norm)},
    **{f: ("RMSNorm", ("eps", 3, None), ("normalized_shape", 1))
       for f in (F.rms_norm, torch.rms_norm)},
    F.instance_norm: ("InstanceNorm", ("eps", 7, 1e-5), ("running_mean", 1)),
}
_NORM_WEIGHTS = {"LayerNorm": 2, "GroupNorm": 2, "RMSNorm": 2, "InstanceNorm": 3}


def is_sample_norm(target: Any) -> bool:
    """Whether a call's ``target`` is one of :data:`_NORM_FUNCTIONS`."""
    try:
        return target in _NORM_FUNCTIONS
    except TypeError:  # (an unhashable target)
        return False


def function_norm_slope(target: Any, args: Any, kwargs: dict, input_shape: tuple[int, ...],
                        dtype: torch.dtype | None) -> tuple[float, float] | None:
    """:func:`sample_norm_slope` of a call of ``F.layer_norm``, ``F.group_norm``,
    ``F.rms_norm`` (or torch's functions of those names) or ``F.instance_norm`` on its input's
    statistics, its arguments by value (``weight`` a tensor); None for any other call, or one
    whose arguments are not all known (a new user's trial: torchvision's ConvNeXt
    ``LayerNorm2d``, which calls ``F.layer_norm``, given the constant 1 for a slope of 1000,
    was not warned of)."""
    try:
        kind, (_, at_eps, default), (name, at_other) = _NORM_FUNCTIONS[target]
    except (KeyError, TypeError):  # (TypeError: an unhashable target)
        return None

    def argument(key: str, at: int, fallback: Any = None) -> Any:
        return kwargs.get(key, args[at] if len(args) > at else fallback)

    if kind == "InstanceNorm" and argument("use_input_stats", 5, True) is not True:
        return None
    other = argument(name, at_other)
    return _norm_slope(kind, argument("eps", at_eps, default),
                       argument("weight", _NORM_WEIGHTS[kind]), input_shape, dtype,
                       other if kind == "GroupNorm" else None,
                       other if kind in ("LayerNorm", "RMSNorm") else None)


def _norm_slope(kind: str, eps: Any, weight: Any, input_shape: tuple[int, ...],
                dtype: torch.dtype | None, num_groups: Any, normalized_shape: Any,
                ) -> tuple[float, float] | None:
    """The bounds of :func:`sample_norm_slope` from a normalization's arguments."""
    if eps is None and kind == "RMSNorm" and isinstance(dtype, torch.dtype) and (
            dtype.is_floating_point):  # (torch's default, its computing type's: float32's
        # for half precision, a review; a new user's trial, unwarned)
        eps = torch.finfo(torch.float32 if dtype.itemsize < 4 else dtype).eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 \
            or not math.isfinite(eps):
        return None
    if weight is not None and not isinstance(weight, torch.Tensor):
        return None  # (an argument the graph computes)
    scale = 1.0 if weight is None or not weight.numel() else float(weight.detach().abs().max())
    if not math.isfinite(scale) or len(input_shape) < 1:
        return None
    if kind in ("LayerNorm", "RMSNorm"):
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        if not isinstance(shape, (tuple, list, torch.Size)) or not all(
                isinstance(k, int) for k in shape):
            return None
        n = math.prod(shape or (1,))
    elif kind == "GroupNorm":
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            return None  # (a graph's non-constant argument)
        n = input_shape[0] // num_groups * math.prod(input_shape[1:])
    else:
        n = math.prod(input_shape[1:])
    root = math.sqrt(eps)
    upper = math.nextafter(scale / math.nextafter(root, 0.0), math.inf)  # (sqrt rounds to
    # nearest: below it, then the quotient up)
    if n < 2 and kind != "RMSNorm":  # (a block of one entry, centred: a constant output)
        share = 0.0
    elif kind == "RMSNorm" or kind.startswith("InstanceNorm"):
        share = 1.0
    else:
        share = math.sqrt(1.0 - 1.0 / n)
    lower = scale * share / math.nextafter(root, math.inf)
    return math.nextafter(math.nextafter(lower, 0.0), 0.0), upper  # (its roundings, down)


def slope_text(lower: float, upper: float) -> str:
    """A sample normalization's Lipschitz constant as its bounds say it (:func:`sample_norm_
    slope`), rounded outward to 7 digits (a review: rounded to nearest, the advised constant
    was below the slope)."""
    up = decimal_outward(upper, ROUND_CEILING, 7)
    if lower >= upper * (1 - 1e-12):
        return f"is {up} (max|weight|/sqrt(eps)), its slope at a sample of zero variance"
    return (f"is at most {up} (max|weight|/sqrt(eps)) and at least "
            f"{decimal_outward(lower, ROUND_FLOOR, 7)}, its slope at a sample of zero variance")


#: Why a sample normalization has no constant, before :func:`slope_text`.
NORM_REASON = ("it normalizes each sample by its own statistics; its Lipschitz constant, "
               "which lipschitz_constants may give, ")


def warn_below_slope(label: str, constant: Any, slopes: tuple[float, float] | None) -> None:
    """Warn that ``lipschitz_constants`` gives ``label`` (a module or a graph's call) a
    ``constant`` below the lower end of its ``slopes`` (:func:`sample_norm_slope`), if so."""
    if slopes is not None and constant < slopes[0]:
        warnings.warn(
            f"lipschitz_constants gives {label} the constant {constant!r}, below its "
            f"Lipschitz constant, which {slope_text(*slopes)} (it normalizes each sample by "
            "its own statistics): the network bound holds only for inputs where that slope "
            "is not reached", UserWarning, stacklevel=outside_level(torch))


def measured_slope(module: nn.Module, input_shape: tuple[int, ...],
                   dtype: torch.dtype | None = None) -> float | None:
    """A lower bound of ``module``'s Lipschitz constant, measured: the largest secant
    ``||f(x + h v) - f(x - h v)|| / ||2 h v||`` less the rounding float32 may have left in
    the outputs (:func:`_secant`: from the inputs as rounded and the forward's outputs, so
    autograd's backward, which a module may replace, as a gradient reversal or scaling
    layer does, cannot inflate it) along directions ``v`` where its Jacobian stretches most
    (:func:`_directions`), at three inputs of one sample of ``input_shape``: all ones, where
    every normalization's sample has zero variance, zeros, and values evenly spread over
    ``[-8, 8]``, near one of which an elementwise function's ``sup |f'|`` lies. In
    ``dtype``, the one the model runs the module in (a module may branch on it, or cast to
    it: two reviews found slopes measured in float16 or float64 above a float32 module's
    constant); without it, float64 where the module runs on it, else float32. None where it
    cannot be measured: a module that needs other arguments, returns no tensor, computes
    otherwise on the same input twice, or does not run in that dtype. Run on a copy of the
    module (its forward may change its own state), about forty-five forward passes of it,
    torch's, Python's and numpy's random states kept.

    Never a constant of the report's: a constant given in ``lipschitz_constants`` for a module
    of the user's class more than 1% below it is warned of (ConvNeXt's ``LayerNorm2d``,
    scripted, given 50, bounded a network whose Jacobian reached 151 at an input of zero
    variance; its slope there measures 316.2, ``1 / sqrt(eps)``).

    Examples
    --------
    >>> import torch
    >>> class Swish(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x * torch.sigmoid(x)
    >>> 1.09 < measured_slope(Swish(), (4, 8, 8)) <= 1.0998394  # (sup |f'| = 1.0998393...)
    True
    """
    dtypes = [torch.float64, torch.float32] if dtype is None else [dtype]
    if any(d not in (torch.float32, torch.float64) for d in dtypes):
        return None  # (half precision: no bound rests on a constant there)
    state = random.getstate(), np.random.get_state()  # noqa: NPY002 - the user's (a module
    try:  # may draw from them: a review found a report advancing them more than before)
        twin = _twin(module)
        with torch.random.fork_rng(devices=[]):
            for each in dtypes:
                found = _measured(twin, input_shape, each)
                if found is not _FAILS:
                    return found
        return None
    except Exception:  # (a module this cannot copy or measure: no slope; a review found
        return None  # argmax refused for a float8 signal)
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])  # noqa: NPY002


_FAILS = object()  # (a forward that fails in a dtype: the next one is tried)


def _measured(twin: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype) -> Any:
    """:func:`measured_slope` in ``dtype``: the slope, None, or ``_FAILS`` where the forward
    fails on the first input."""
    generator = torch.Generator().manual_seed(0)
    size, best = math.prod(input_shape), 0.0
    for k, x in enumerate((torch.ones(size, dtype=torch.float64),
                           torch.zeros(size, dtype=torch.float64),
                           torch.linspace(-8.0, 8.0, size, dtype=torch.float64))):
        x = x.reshape(1, *input_shape).to(dtype)
        try:
            with torch.no_grad():
                y = twin(x)
                if not isinstance(y, torch.Tensor) or not torch.equal(y, twin(x)):
                    return None  # (no map to measure)
        except Exception:  # (a module this cannot call alone, or in this dtype)
            return _FAILS if k == 0 else best or None
        if not (y.is_floating_point() and bool(torch.isfinite(y).all())):
            continue
        # from ones, nearly: where an elementwise function's derivative is largest, the
        # last v is largest (random alone, the power method converges slowly where many
        # entries come close); a normalization maps ones to zero
        u = 1 + 0.01 * torch.randn(y.shape, generator=generator, dtype=torch.float64)
        for v in _directions(twin, x, u.to(y.dtype)):
            best = max(best, _secant(twin, x, v))
    return best or None


def _directions(function: Callable, x: torch.Tensor, u: torch.Tensor) -> list[torch.Tensor]:
    """Directions along which ``function``'s Jacobian ``J`` at ``x`` stretches most, as far as
    three steps of the power method on ``J J^T`` from ``u`` find them (``v = J^T u``, by
    autograd): the last ``v``, and the unit vector of its largest entry (from ``u`` near all
    ones, that is where an elementwise function's derivative is largest: the power method
    alone converges slowly where many entries come close, Swish's derivative at 256 points
    of ``[-8, 8]`` 1.06 after four steps for 1.0998). None where autograd fails: an empty
    list."""
    try:
        with torch.enable_grad():
            for _ in range(3):
                _, v = torch.autograd.functional.vjp(function, x, u)
                _, w = torch.autograd.functional.jvp(function, x, v)
                norm_v, norm_w = float(v.norm()), float(w.norm())
                if not (norm_v > 0 and math.isfinite(norm_v) and math.isfinite(norm_w)):
                    return []
                u = w / norm_w if norm_w > 0 else w
        unit = torch.zeros(v.numel(), dtype=v.dtype)
        unit[int(v.abs().argmax())] = 1  # (the index in v's logical order, as reshape reads)
    except Exception:  # (a module autograd cannot differentiate twice)
        return []
    return [v, unit.reshape(v.shape)]


def _secant(function: Callable, x: torch.Tensor, v: torch.Tensor) -> float:
    """``(||f(a) - f(b)|| - r) / ||a - b||`` for ``a, b = x +- h v`` as rounded to ``x``'s
    dtype (``h`` 1e-4 in float64, 1e-2 in float32, times the larger of 1 and ``max|x|``,
    over ``max|v|``), in float64 from the outputs, ``r = 8 eps || |f(a)| + |f(b)| ||`` over
    the outputs that differ, with float32's ``eps``: the rounding a module computing in
    float32 inside may leave (two reviews: ``F.silu(x.float()).type_as(x)`` measured 1.52,
    ``tanh(y) + 1000`` in float32 1.06, for constants of 1.0998 and 1). A lower bound of
    the Lipschitz constant of ``f`` whatever its backward computes, but for a rounding
    inside larger than that; 0 where the two inputs round to one or an output is not
    finite."""
    relative = 1e-4 if x.dtype == torch.float64 else 1e-2
    scale = relative * max(1.0, float(x.abs().max())) / float(v.abs().max())
    if not math.isfinite(scale):
        return 0.0
    a, b = x + scale * v, x - scale * v
    step = float((a.double() - b.double()).norm())
    try:
        with torch.no_grad():
            fa, fb = function(a).double(), function(b).double()
    except Exception:  # (a forward that fails off the inputs it ran on)
        return 0.0
    change = float((fa - fb).norm())
    moved = fa != fb  # (an output the same on both: none of its rounding in the change)
    rounding = 8 * torch.finfo(torch.float32).eps * float(
        ((fa.abs() + fb.abs()) * moved).norm())
    return max(0.0, change - rounding) / step if step > 0 and math.isfinite(change) else 0.0


def _twin(module: nn.Module) -> nn.Module:
    """A copy of ``module`` to run apart from the model: a deep copy, or for TorchScript, the
    module saved and loaded again. (A scripted module's copy shares its compiled code, and
    running it alone changed what later reads of the model's graph found: a scripted
    ``LayerNorm2d`` run alone made the model's graph module fail under inference mode, and,
    run without the optimizing executor, read as two calls.)"""
    if isinstance(module, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript: not the
            warnings.simplefilter("ignore", DeprecationWarning)  # user's to act on, here
            torch.jit.save(module, buffer)
            buffer.seek(0)
            return torch.jit.load(buffer)
    return copy.deepcopy(module)


def warn_below_measured(label: str, constant: Any, module: nn.Module,
                        input_shape: tuple[int, ...], dtype: torch.dtype | None,
                        seen: dict) -> None:
    """Warn that ``lipschitz_constants`` gives ``label``, a module of the user's class, a
    ``constant`` more than 1% below the slope :func:`measured_slope` finds, if so. ``seen``
    holds the slopes measured so far, by :func:`_measured_key`: a module like one measured
    already is not measured again (a network's many calls of one activation), its constant
    compared all the same."""
    key = _measured_key(module, input_shape)
    if key not in seen:
        seen[key] = measured_slope(module, input_shape, dtype)
    slope = seen[key]
    if slope is not None and constant < slope * (1 - 1e-2):
        warnings.warn(
            f"lipschitz_constants gives {label} the constant {constant!r}, below its "
            f"Lipschitz constant, which is at least {decimal_outward(slope, ROUND_FLOOR, 7)}"
            ", its slope measured here (the change of its output over that of its input, "
            "between two inputs next to ones, zeros or values spread over [-8, 8], along a "
            "direction autograd found): the network bound holds only if yours is one",
            UserWarning, stacklevel=outside_level(torch))


#: The attributes every module has (its parameters, buffers, children, hooks, ...).
_MODULE_STATE = frozenset(vars(nn.Module()))


def _measured_key(module: nn.Module, input_shape: tuple[int, ...]) -> tuple:
    """What :func:`measured_slope` of ``module`` depends on: for an eager module without
    tensors, children or hooks whose own attributes are numbers, strings or None (a
    ``Swish``, a ``Scale(2.0)``), its class, attributes (``_k`` too: a review) and
    ``input_shape``; else the module itself."""
    plain = (int, float, complex, str, bool, type(None))
    state = vars(module)
    if not isinstance(module, torch.jit.ScriptModule) and not any(
            state.get(name) for name in _MODULE_STATE if name != "training"):
        attributes = {k: v for k, v in state.items() if k not in _MODULE_STATE}
        if all(type(v) in plain for v in attributes.values()):
            return (type(module), module.training, tuple(sorted(
                (k, type(v).__name__, repr(v)) for k, v in attributes.items())), input_shape)
    return (id(module), input_shape)


#: Where a traced normalization's graph holds its arguments: the operation, and the input
#: positions of ``eps``, ``num_groups`` and ``normalized_shape`` (None where it has none).
_TRACED_NORMS = {"GroupNorm": ("aten::group_norm", 4, 1, None),
                 "LayerNorm": ("aten::layer_norm", 4, None, 1),
                 "RMSNorm": ("aten::rms_norm", 3, None, 1)}


def _traced_arguments(module: torch.jit.ScriptModule, kind: str) -> Any:
    """A traced normalization's ``eps``, ``num_groups`` or ``normalized_shape`` and ``weight``
    (a namespace, as the module's attributes would be), read off its one normalization
    operation's constant arguments; None where the graph does not hold them so (a review: a
    traced LayerNorm, which keeps no ``eps``, got no constant and no warning)."""
    if kind not in _TRACED_NORMS:
        return None
    op, at_eps, at_groups, at_shape = _TRACED_NORMS[kind]
    nodes = [n for n in module.graph.nodes() if n.kind() == op]
    if len(nodes) != 1:
        return None
    inputs = list(nodes[0].inputs())

    def constant(value: Any) -> Any:  # (a list of constants as a tuple; None if no constant)
        if value.node().kind() == "prim::Constant":
            return value.toIValue()
        if value.node().kind() == "prim::ListConstruct":
            items = [constant(v) for v in value.node().inputs()]
            return None if None in items else tuple(items)
        return None

    found = types.SimpleNamespace(eps=constant(inputs[at_eps]),
                                  weight=getattr(module, "weight", None))
    if at_groups is not None:
        found.num_groups = constant(inputs[at_groups])
    if at_shape is not None:
        found.normalized_shape = constant(inputs[at_shape])
    return found
