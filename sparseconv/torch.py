"""sparseconv.torch: PyTorch modules and networks as sparseconv's matrices, operators and bounds.

The adapter reads a module's weights (as float64 numpy copies) and its hyper-parameters, and
hands them to the array API: a module becomes a *layer* — its input and output shapes, a
builder of its ``scipy.sparse`` matrix, a ``LinearOperator`` (matrix-free where sparseconv has
one: convolutions, transposed convolutions, ``nn.Linear``), its affine offset (the bias
broadcast over the output) and, where the module is a convolution in disguise, the weight and
arguments that sparseconv's certified spectra take. Every public function below starts from
that one description (:func:`_layer`), so a module is translated in one place.

Supported modules (``input_shape`` is ``(C, *spatial)`` without the batch; for ``nn.Linear``
the last axis is ``in_features``)::

    nn.Conv1d/2d/3d            every padding form and padding_mode, groups, dilation, bias
    nn.ConvTranspose1d/2d/3d   output_padding, or output_size= as passed at call time
    nn.AvgPool1d/2d/3d         ceil_mode, count_include_pad, divisor_override
    nn.AdaptiveAvgPool1d/2d/3d any output size (overlapping windows of different sizes)
    nn.Upsample                nearest, nearest-exact, area, (bi/tri)linear, align_corners
    nn.PixelShuffle, nn.PixelUnshuffle
    nn.BatchNorm1d/2d/3d       eval mode, running statistics: a per-channel affine map
    nn.Linear, nn.Flatten, nn.Identity, nn.Dropout* (eval mode)
    nn.ZeroPad/ConstantPad/ReflectionPad/ReplicationPad/CircularPad 1d/2d/3d (negative: crop)

Anything else (``nn.ReLU``, ``nn.MaxPool2d``, attention, ...) is not linear and is refused with
a ``TypeError`` naming it; a ``BatchNorm`` or ``Dropout`` in training mode is refused with a
``ValueError`` (call ``model.eval()``). Networks are walked by :func:`trace` (forward hooks on
every leaf module); :func:`network_operator` traces a linear network's graph with torch.fx
(residual sums, concatenations, reshapes and functional calls included) into one operator
with its adjoint, and :func:`lipschitz_report` bounds every linear layer's spectral norm,
with certificates.

For training, :func:`circular_singular_values`, :func:`circular_spectral_norm` and
:func:`spectral_norm_upper` are torch functions of a weight tensor, with autograd
(:mod:`sparseconv._torch_spectra`).

This is the only sparseconv module that imports torch; ``import sparseconv`` does not.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import importlib
import json
import math
import operator as pyop
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, NamedTuple, NoReturn

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

try:
    import torch
    import torch.fx
    import torch.nn.functional as F
    from torch import nn
    from torch.fx.operator_schemas import normalize_function
except ImportError as exc:  # pragma: no cover - CI installs torch
    raise ImportError(
        'sparseconv.torch needs PyTorch: pip install "sparseconv[torch]" (or pip install torch)'
    ) from exc

import sparseconv as sc
from sparseconv._memory import check_memory, format_bytes
from sparseconv._resampling import adaptive_output_size, interpolate_output_size
from sparseconv._rounding import up
from sparseconv._torch_spectra import (
    circular_singular_values,
    circular_spectral_norm,
    spectral_norm_upper,
)
from sparseconv._typing import PaddingMode, SparseFormat

__all__ = [
    "FoldedBatchNorm",
    "LipschitzReport",
    "NetworkOperator",
    "TraceRecord",
    "affine",
    "circular_singular_values",
    "circular_spectral_norm",
    "fold_batchnorm",
    "lipschitz_report",
    "matrix",
    "network_operator",
    "operator",
    "singular_values",
    "spectral_norm",
    "spectral_norm_upper",
    "trace",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_RESAMPLE = (*_ADAPTIVE, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle)
_PAD_MODES: dict[type, PaddingMode] = {
    nn.ZeroPad1d: "zeros", nn.ZeroPad2d: "zeros", nn.ZeroPad3d: "zeros",
    nn.ConstantPad1d: "zeros", nn.ConstantPad2d: "zeros", nn.ConstantPad3d: "zeros",
    nn.ReflectionPad1d: "reflect", nn.ReflectionPad2d: "reflect", nn.ReflectionPad3d: "reflect",
    nn.ReplicationPad1d: "replicate", nn.ReplicationPad2d: "replicate",
    nn.ReplicationPad3d: "replicate",
    nn.CircularPad1d: "circular", nn.CircularPad2d: "circular", nn.CircularPad3d: "circular",
}
_SUPPORTED = (*_CONV, *_CONV_T, *_POOL, *_BATCHNORM, *_DROPOUT, *_PAD_MODES, *_RESAMPLE,
              nn.Linear, nn.Flatten, nn.Identity)
# activations with Lipschitz constant at most 1 (LeakyReLU only when |negative_slope| <= 1)
_ONE_LIPSCHITZ = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Hardtanh)


# ---------------------------------------------------------------------------------------------
# One module as a layer
# ---------------------------------------------------------------------------------------------
def _numpy(tensor) -> np.ndarray:
    """A float64 numpy copy of a parameter or buffer (never a view of the module's memory)."""
    return np.array(tensor.detach().cpu().to(torch.float64).numpy(), copy=True)


@dataclass(frozen=True, eq=False)
class _Layer:
    """A linear module translated once: shapes, builders and the arguments its spectra take."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    build: Callable[[SparseFormat], sp.sparray]      # format -> the matrix
    offset: np.ndarray | None = None                 # the bias over the output, flat
    make_operator: Callable[[], spla.LinearOperator] | None = None
    conv: tuple[np.ndarray, tuple[int, ...], dict] | None = None  # weight, shape, kwargs
    repeat: int = 1  # the matrix is `repeat` copies of that convolution's, block-diagonally

    def operator(self) -> spla.LinearOperator:
        if self.make_operator is not None:
            return self.make_operator()
        return spla.aslinearoperator(self.build("csr"))


def _input_shape(input_shape, ndim: int | None, name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple of ints (C, *spatial), got "
                        f"{input_shape!r}") from None
    if not shape or min(shape) < 1 or (ndim is not None and len(shape) != ndim + 1):
        want = "(C, *spatial)" if ndim is None else f"(C, *spatial) with {ndim} spatial axes"
        raise ValueError(f"input_shape must be {want} of positive ints for {name}, got "
                         f"{input_shape!r}")
    return shape


def _refuse(module: nn.Module) -> None:
    name = type(module).__name__
    if not isinstance(module, _SUPPORTED):
        raise TypeError(f"{name} is not a linear module sparseconv.torch supports ({module!r}); "
                        "supported: Conv*d, ConvTranspose*d, AvgPool*d, AdaptiveAvgPool*d, "
                        "BatchNorm*d, Linear, Flatten, Identity, Dropout, Upsample, "
                        "PixelShuffle, PixelUnshuffle, the padding modules")
    if isinstance(module, _BATCHNORM):
        if module.training:
            raise ValueError(f"{name} is in training mode, where it normalizes with the batch's "
                             "statistics: call .eval() on the model first")
        if module.running_mean is None:
            raise TypeError(f"{name} with track_running_stats=False normalizes with the batch's "
                            "statistics even in eval mode: it is not linear")
    if isinstance(module, _DROPOUT) and module.training:
        raise ValueError(f"{name} is in training mode, where it is random: call .eval() on the "
                         "model first")


def _layer(module: nn.Module, input_shape: Sequence[int], output_size=None) -> _Layer:
    _refuse(module)
    if isinstance(module, _CONV_T):
        return _conv_transpose_layer(module, input_shape, output_size)
    if output_size is not None:
        raise TypeError(f"output_size applies to ConvTranspose*d only, not to "
                        f"{type(module).__name__}")
    if isinstance(module, _CONV):
        return _conv_layer(module, input_shape)
    if isinstance(module, nn.Linear):
        return _linear_layer(module, input_shape)
    if isinstance(module, _POOL):
        return _pool_layer(module, input_shape)
    if isinstance(module, _BATCHNORM):
        return _batchnorm_layer(module, input_shape)
    if isinstance(module, tuple(_PAD_MODES)):
        return _pad_layer(module, input_shape)
    if isinstance(module, _RESAMPLE):
        return _resample_layer(module, input_shape)
    return _reshape_layer(module, input_shape)


def _conv_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    shape = _input_shape(input_shape, len(module.kernel_size), name)
    weight = _numpy(module.weight)
    kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                  groups=module.groups, padding_mode=module.padding_mode)
    geometry = sc.ConvGeometry.from_weight(weight.shape, shape, **kwargs)
    out = geometry.output_shape
    offset = None if module.bias is None else np.repeat(_numpy(module.bias), math.prod(out[1:]))
    return _Layer(name, shape, out,
                  lambda format: sc.conv_matrix(weight, shape, format=format, **kwargs),
                  offset, lambda: sc.ConvOperator(weight, shape, **kwargs),
                  (weight, shape, kwargs))


def _transpose_output_padding(module, shape, output_size) -> tuple[int, ...]:
    """The output_padding PyTorch derives from ``module(x, output_size=...)``."""
    ndim = len(module.kernel_size)
    size = tuple(int(n) for n in output_size)[-ndim:]
    if len(size) != ndim:
        raise ValueError(f"output_size must give {ndim} spatial sizes, got {output_size!r}")
    smallest = sc.conv_transpose_output_shape(shape[1:], module.kernel_size, module.stride,
                                              module.padding, 0, module.dilation)
    padding = tuple(n - m for n, m in zip(size, smallest))
    if any(not 0 <= p < s for p, s in zip(padding, module.stride)):
        largest = tuple(m + s - 1 for m, s in zip(smallest, module.stride))
        raise ValueError(f"output_size must lie between {smallest} and {largest} for "
                         f"{type(module).__name__} on input_shape={shape}, got {output_size!r}")
    return padding


def _conv_transpose_layer(module, input_shape, output_size) -> _Layer:
    name = type(module).__name__
    if module.padding_mode != "zeros":  # PyTorch itself refuses this at construction
        raise ValueError(f"{name} supports padding_mode='zeros' only, got "
                         f"{module.padding_mode!r}")
    shape = _input_shape(input_shape, len(module.kernel_size), name)
    weight = _numpy(module.weight)
    output_padding = (module.output_padding if output_size is None
                      else _transpose_output_padding(module, shape, output_size))
    kwargs = dict(stride=module.stride, padding=module.padding, output_padding=output_padding,
                  dilation=module.dilation, groups=module.groups)
    out_size = sc.conv_transpose_output_shape(shape[1:], module.kernel_size, module.stride,
                                              module.padding, output_padding, module.dilation)
    out = (module.out_channels, *out_size)
    offset = None if module.bias is None else np.repeat(_numpy(module.bias), math.prod(out_size))
    # its matrix is the adjoint of a convolution from `out` with the same weight, when that
    # convolution's output is `shape` (output_padding < stride); the spectra are the same
    adjoint_kwargs = dict(stride=module.stride, padding=module.padding,
                          dilation=module.dilation, groups=module.groups)
    back = sc.conv_output_shape(out_size, module.kernel_size, module.stride, module.padding,
                                module.dilation)
    conv = (weight, out, adjoint_kwargs) if tuple(back) == shape[1:] else None
    return _Layer(name, shape, out,
                  lambda format: sc.conv_transpose_matrix(weight, shape, format=format, **kwargs),
                  offset, lambda: sc.ConvTransposeOperator(weight, shape, **kwargs), conv)


def _linear_layer(module, input_shape) -> _Layer:
    shape = _input_shape(input_shape, None, "Linear")
    if shape[-1] != module.in_features:
        raise ValueError(f"input_shape[-1] must equal in_features={module.in_features} for "
                         f"Linear, got input_shape={shape}")
    weight = _numpy(module.weight)
    lead = math.prod(shape[:-1])
    out = (*shape[:-1], module.out_features)
    offset = None if module.bias is None else np.tile(_numpy(module.bias), lead)

    def build(format):
        return sp.kron(sp.eye_array(lead), sp.csr_array(weight), format=format)

    def make_operator():
        # columns are a batch: (lead * in, k) -> (lead, in, k) -> W over the in axis
        def matmat(x):
            x = x.reshape(lead, module.in_features, -1)
            return np.einsum("oi,lik->lok", weight, x).reshape(-1, x.shape[-1])

        def rmatmat(y):
            y = y.reshape(lead, module.out_features, -1)
            return np.einsum("oi,lok->lik", weight, y).reshape(-1, y.shape[-1])

        return spla.LinearOperator((math.prod(out), math.prod(shape)), dtype=np.float64,
                                   matvec=lambda x: matmat(x.reshape(-1, 1)), matmat=matmat,
                                   rmatvec=lambda y: rmatmat(y.reshape(-1, 1)), rmatmat=rmatmat)

    # y = W x on each of `lead` rows: the norm and singular values are W's, a 1x1 convolution
    return _Layer("Linear", shape, out, build, offset, make_operator,
                  (weight[:, :, None], (module.in_features, 1), {}), lead)


def _pool_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    ndim = 1 + _POOL.index(type(module)) if type(module) in _POOL else None
    shape = _input_shape(input_shape, ndim, name)
    ndim = len(shape) - 1
    kwargs = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
                  ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad,
                  divisor_override=getattr(module, "divisor_override", None))
    matrix = sc.avg_pool_matrix(shape, **kwargs)
    out = (shape[0], *_pool_output_size(shape[1:], kwargs, ndim))
    conv = None
    plain = kwargs["count_include_pad"] or not any(np.atleast_1d(module.padding))
    if plain and not kwargs["ceil_mode"] and kwargs["divisor_override"] is None:
        # every window averages prod(kernel) padded positions: a depthwise convolution
        kernel = np.broadcast_to(module.kernel_size, (ndim,))
        weight = np.full((shape[0], 1, *kernel), 1.0 / math.prod(kernel))
        conv = (weight, shape, dict(stride=module.stride, padding=module.padding,
                                    groups=shape[0]))
    return _Layer(name, shape, out, lambda format: matrix.asformat(format), conv=conv)


def _pool_output_size(size, kwargs, ndim) -> tuple[int, ...]:
    """PyTorch's pooling output size (``pooling_output_shape`` in ATen)."""
    def per_axis(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim

    result = []
    for n, k, s, p in zip(size, per_axis(kwargs["kernel_size"]), per_axis(kwargs["stride"]),
                          per_axis(kwargs["padding"])):
        span = n + 2 * p - k + ((s - 1) if kwargs["ceil_mode"] else 0)
        out = span // s + 1
        if kwargs["ceil_mode"] and (out - 1) * s >= n + p:
            out -= 1  # the last window must start inside the input or the low padding
        result.append(out)
    return tuple(result)


def _batchnorm_scale_shift(module) -> tuple[np.ndarray, np.ndarray]:
    # y = (x - mean) / sqrt(var + eps) * gamma + beta = scale * x + shift, per channel
    scale = 1.0 / np.sqrt(_numpy(module.running_var) + module.eps)
    shift = -_numpy(module.running_mean) * scale
    if module.affine:
        scale = scale * _numpy(module.weight)
        shift = shift * _numpy(module.weight) + _numpy(module.bias)
    return scale, shift


def _batchnorm_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    ndim = _BATCHNORM.index(type(module)) + 1 if type(module) in _BATCHNORM else None
    shape = _input_shape(input_shape, None, name)
    if shape[0] != module.num_features or (ndim is not None and len(shape) - 1 not in
                                           ((0, 1) if ndim == 1 else (ndim,))):
        raise ValueError(f"input_shape must be (num_features={module.num_features}, *spatial) "
                         f"as {name} expects, got {shape}")
    scale, shift = _batchnorm_scale_shift(module)
    spatial = math.prod(shape[1:])
    diagonal = np.repeat(scale, spatial)
    channels = shape[0]
    return _Layer(name, shape, shape,
                  lambda format: sp.diags_array(diagonal).asformat(format),
                  np.repeat(shift, spatial), None,
                  (scale.reshape(channels, 1, 1), (channels, 1), {"groups": channels}), spatial)


def _pad_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    sides = tuple(module.padding)
    shape = _input_shape(input_shape, len(sides) // 2, name)
    return _padding(name, shape, sides, _PAD_MODES[type(module)],
                    float(getattr(module, "value", 0.0)))


def _padding(name: str, shape: tuple[int, ...], sides: Sequence[int], mode: PaddingMode,
             value: float = 0.0) -> _Layer:
    """PyTorch's pad tuple ``sides`` (per side, last axis first, negative: crop) on the last
    ``len(sides) // 2`` axes of ``shape``; the channel axis too when ``sides`` reaches it."""
    ndim = len(sides) // 2
    if len(sides) % 2 or ndim > len(shape):
        raise ValueError(f"{name}'s padding {tuple(sides)} must give (lo, hi) pairs for at most "
                         f"the {len(shape)} axes of input_shape={shape}")
    # PyTorch's pad tuples run per side, last axis first: (left, right, top, bottom, ...)
    pairs = ((0, 0),) * (len(shape) - ndim) + tuple(
        (int(sides[2 * i]), int(sides[2 * i + 1])) for i in reversed(range(ndim)))
    out = tuple(n + lo + hi for n, (lo, hi) in zip(shape, pairs))
    if min(out) < 1:
        raise ValueError(f"{name}'s padding {tuple(sides)} crops input_shape={shape} to {out}")
    # a negative side crops. PyTorch's circular pad wraps what is left after the crop; its
    # other modes read the whole input (a reflection may reach into the cropped part): so
    # cut then pad (circular), or pad then cut. The leading 1 lets the channel axis be padded.
    grown = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
    first = mode == "circular"
    grid = shape if first else tuple(n + lo + hi for n, (lo, hi) in zip(shape, grown))
    cut = [sp.eye_array(n, format="csr")[max(-lo, 0):n - max(-hi, 0)]
           for n, (lo, hi) in zip(grid, pairs)]
    kept = tuple(c.shape[0] for c in cut) if first else shape
    if min(kept) < 1:
        raise ValueError(f"{name}'s padding {tuple(sides)} crops input_shape={shape} to {kept} "
                         "before its circular pad: nothing left to wrap")

    def build(format):
        a = sc.pad_matrix((1, *kept), grown, mode)
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            crop = functools.reduce(lambda x, y: sp.kron(x, y, format="csr"), cut)
            a = a @ crop if first else crop @ a
        return sp.csr_array(a).asformat(format)

    offset = None
    if value:  # ConstantPad with a fill value: the pad entries are an offset
        offset = value * (1.0 - build("csr") @ np.ones(math.prod(shape)))
    return _Layer(name, shape, out, build, offset)


def _resample_layer(module, input_shape) -> _Layer:
    """AdaptiveAvgPool*d, Upsample, PixelShuffle, PixelUnshuffle: sparseconv's matrices."""
    name = type(module).__name__
    if isinstance(module, _ADAPTIVE):
        shape = _input_shape(input_shape, _ADAPTIVE.index(type(module)) + 1
                             if type(module) in _ADAPTIVE else None, name)
        matrix = sc.adaptive_avg_pool_matrix(shape, module.output_size)
    elif isinstance(module, nn.Upsample):
        shape = _input_shape(input_shape, None, name)
        matrix = sc.interpolate_matrix(shape, module.size, module.scale_factor, module.mode,
                                       module.align_corners, module.recompute_scale_factor)
    elif isinstance(module, nn.PixelShuffle):
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.pixel_shuffle_matrix(shape, module.upscale_factor)
    else:
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.pixel_unshuffle_matrix(shape, module.downscale_factor)
    out = _resampled_shape(module, shape, matrix.shape[0])
    return _Layer(name, shape, out, lambda format: matrix.asformat(format))


def _resampled_shape(module, shape, rows: int) -> tuple[int, ...]:
    if isinstance(module, nn.PixelShuffle):
        r = module.upscale_factor
        out = (shape[0] // (r * r), shape[1] * r, shape[2] * r)
    elif isinstance(module, nn.PixelUnshuffle):
        r = module.downscale_factor
        out = (shape[0] * r * r, shape[1] // r, shape[2] // r)
    elif isinstance(module, nn.Upsample):
        out = (shape[0], *interpolate_output_size(shape[1:], module.size, module.scale_factor,
                                                  module.recompute_scale_factor))
    else:
        out = (shape[0], *adaptive_output_size(shape[1:], module.output_size))
    assert math.prod(out) == rows, (module, shape, out)
    return out


def _reshape_layer(module, input_shape) -> _Layer:
    """Identity, Dropout (eval) and Flatten: the identity on the flat (C order) vector."""
    name = type(module).__name__
    shape = _input_shape(input_shape, None, name)
    out = shape
    if isinstance(module, nn.Flatten):
        full = (1, *shape)
        start, end = (d % len(full) for d in (module.start_dim, module.end_dim))
        if start == 0 or end < start:
            raise ValueError(f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) "
                             "must keep the batch axis")
        out = (*full[1:start], math.prod(full[start:end + 1]), *full[end + 1:])
    n = math.prod(shape)
    return _Layer(name, shape, out, lambda format: sp.eye_array(n, format=format),
                  None, lambda: spla.aslinearoperator(sp.eye_array(n, format="csr")),
                  (np.ones((1, 1, 1)), (1, 1), {}), n)


# ---------------------------------------------------------------------------------------------
# Public: one module
# ---------------------------------------------------------------------------------------------
def matrix(module: nn.Module, input_shape: Sequence[int], *, format: SparseFormat = "csr",
           output_size: Sequence[int] | None = None) -> sp.sparray:
    """The matrix of a linear module on inputs of shape ``input_shape`` (the bias left out).

    Parameters
    ----------
    module : torch.nn.Module
        A supported linear module (see :mod:`sparseconv.torch`), in eval mode where it matters.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch (``(*lead, in_features)`` for ``nn.Linear``).
    format : {"csr", "csc", "coo", "bsr"}
    output_size : tuple of int, optional
        For ``nn.ConvTranspose*d`` only: the ``output_size`` passed at call time.

    Returns
    -------
    scipy.sparse array, shape (prod(output_shape), prod(input_shape))
        ``matrix @ x.ravel() + bias == module(x[None])[0].ravel()`` (see :func:`affine`).

    Raises
    ------
    TypeError
        A module that is not linear or not supported, named.
    ValueError
        A module in training mode where that matters (``BatchNorm``, ``Dropout``), or a bad
        ``input_shape`` or ``output_size``.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> conv = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([[[1.0, 2.0, 3.0]]]))
    >>> sct.matrix(conv, (1, 4)).toarray()
    array([[2., 3., 0., 0.],
           [1., 2., 3., 0.],
           [0., 1., 2., 3.],
           [0., 0., 1., 2.]])
    """
    return _layer(module, input_shape, output_size).build(format)


def operator(module: nn.Module, input_shape: Sequence[int], *,
             output_size: Sequence[int] | None = None) -> spla.LinearOperator:
    """The linear part of a module as a ``LinearOperator``, with its adjoint.

    Matrix-free for convolutions (:class:`sparseconv.ConvOperator`), transposed convolutions
    (:class:`sparseconv.ConvTransposeOperator`) and ``nn.Linear``; the other modules wrap their
    (small, diagonal or selection) sparse matrix. Arguments as :func:`matrix`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv.torch as sct
    >>> conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect").double()
    >>> op = sct.operator(conv, (3, 16, 16))
    >>> op.shape
    (512, 768)
    >>> x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    >>> y = op @ x.numpy().ravel() + conv.bias.detach().numpy().repeat(64)
    >>> bool(np.allclose(y, conv(x).detach().numpy().ravel()))
    True
    """
    return _layer(module, input_shape, output_size).operator()


def affine(module: nn.Module, input_shape: Sequence[int], *,
           output_size: Sequence[int] | None = None) -> sc.AffineMap:
    """The module as the :class:`sparseconv.AffineMap` ``x -> A x + b``, bias included.

    ``b`` is the bias broadcast over the output (a convolution's per channel, a BatchNorm's
    shift, a ``ConstantPad``'s fill value); zero for a module without one. Arguments as
    :func:`matrix`.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> bn = torch.nn.BatchNorm1d(2).eval()
    >>> with torch.no_grad():
    ...     _ = bn.running_mean.fill_(1.0)
    >>> f = sct.affine(bn, (2, 3))
    >>> f([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]).round(4)       # (x - 1) / sqrt(1 + eps)
    array([0., 0., 0., 1., 1., 1.])
    """
    layer = _layer(module, input_shape, output_size)
    a = layer.build("csr")
    return sc.AffineMap(a, np.zeros(a.shape[0]) if layer.offset is None else layer.offset)


def spectral_norm(module: nn.Module, input_shape: Sequence[int], *,
                  output_size: Sequence[int] | None = None, **kwargs: Any) -> sc.SpectralNorm:
    """The spectral norm of a module's matrix, with a certified interval.

    Convolutions, transposed convolutions (through their adjoint convolution), ``nn.Linear``
    (its weight, a 1x1 convolution), BatchNorm (a depthwise 1x1 convolution) and average
    pooling without ``ceil_mode`` or excluded padding go to :func:`sparseconv.spectral_norm`;
    ``kwargs`` (``method``, ``tol``) are passed on. The other modules (padding, the remaining
    pooling layers) are bounded from their explicit matrix: ``sqrt(||A||_1 ||A||_inf)`` above
    (exact for a padding, whose ``A^T A`` is diagonal), a power iteration's Rayleigh quotient
    below, both widened for rounding (method ``"bounds"``, with ``bounds["schur"]``).

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> conv = torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular")
    >>> r = sct.spectral_norm(conv, (2, 8, 8))
    >>> r.method, bool(r.lower <= r.value <= r.upper)
    ('fft', True)
    """
    return _layer_norm(_layer(module, input_shape, output_size), **kwargs)


def _layer_norm(layer: _Layer, **kwargs: Any) -> sc.SpectralNorm:
    if layer.conv is None:
        return _matrix_norm(layer.build("csr"))
    weight, shape, conv_kwargs = layer.conv
    return sc.spectral_norm(weight, shape, **conv_kwargs, **kwargs)


def singular_values(module: nn.Module, input_shape: Sequence[int], *,
                    output_size: Sequence[int] | None = None, **kwargs: Any) -> np.ndarray:
    """All singular values of a module's matrix, in decreasing order.

    From :func:`sparseconv.singular_values` for the modules that are convolutions (see
    :func:`spectral_norm`; ``kwargs`` such as ``method`` are passed on), repeated for the
    block-diagonal copies (``nn.Linear`` over leading axes, BatchNorm over positions); from a
    dense SVD of the matrix otherwise, within the memory limit.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> sct.singular_values(torch.nn.ZeroPad1d((1, 2)), (1, 3))
    array([1., 1., 1.])
    """
    layer = _layer(module, input_shape, output_size)
    if layer.conv is None:
        a = layer.build("csr")
        n = min(a.shape)
        limit = sc.get_memory_limit()
        if limit is not None and 8 * (a.shape[0] * a.shape[1] + 2 * n * n) > limit:
            raise sc.MatrixTooLargeError(
                f"singular_values of {type(module).__name__} on input_shape={layer.input_shape} "
                f"needs a dense {a.shape} matrix, beyond the memory limit of {limit} bytes")
        return np.linalg.svd(a.toarray(), compute_uv=False)
    weight, shape, conv_kwargs = layer.conv
    values = sc.singular_values(weight, shape, **conv_kwargs, **kwargs)
    return np.sort(np.tile(values, layer.repeat))[::-1]


def _matrix_norm(a: sp.sparray, iterations: int = 50) -> sc.SpectralNorm:
    """A certified interval for ``||A||_2`` from an explicit sparse matrix.

    Its method is "bounds", and ``bounds["schur"]`` the upper bound.
    """
    a = sp.csr_array(a, dtype=np.float64)
    if a.nnz == 0:
        return sc.SpectralNorm(0.0, 0.0, 0.0, "zero")
    absolute = abs(a)
    longest = max(np.diff(a.indptr).max(), np.diff(a.tocsc().indptr).max())
    slack = 4 * (longest + 4) * np.finfo(np.float64).eps  # the sums' and sqrt's rounding
    upper = math.sqrt(absolute.sum(axis=0).max() * absolute.sum(axis=1).max()) * (1 + slack)
    x = np.random.default_rng(0).standard_normal(a.shape[1])
    for _ in range(iterations):
        x = a.T @ (a @ x)
        x /= np.linalg.norm(x)
    lower = np.linalg.norm(a @ x) / np.linalg.norm(x) * (1 - slack)
    return sc.SpectralNorm(lower, lower, upper, "bounds", bounds={"schur": upper})


class FoldedBatchNorm(NamedTuple):
    """``bn(conv(x))`` as one convolution: its weight and bias, and the module."""

    weight: np.ndarray
    bias: np.ndarray
    module: nn.Module


def fold_batchnorm(conv: nn.Module, bn: nn.Module) -> FoldedBatchNorm:
    """Fold an eval-mode BatchNorm into the convolution before it.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel, ``bn(conv(x))`` is the
    convolution with weight ``s * W`` (scaled per output channel) and bias
    ``s * (b - running_mean) + beta``.

    Parameters
    ----------
    conv : torch.nn.Conv1d, Conv2d or Conv3d
    bn : torch.nn.BatchNorm1d, BatchNorm2d or BatchNorm3d
        In eval mode, with running statistics, ``num_features == conv.out_channels``.

    Returns
    -------
    FoldedBatchNorm
        ``(weight, bias, module)``: float64 numpy arrays, and a new convolution module (the
        conv's class, hyper-parameters, dtype and device) holding them.

    Raises
    ------
    TypeError
        ``conv`` or ``bn`` of another type, a BatchNorm without running statistics.
    ValueError
        ``bn`` in training mode, mismatched channel counts.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> conv, bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4).eval()
    >>> folded = sct.fold_batchnorm(conv, bn)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> bool(torch.allclose(folded.module(x), bn(conv(x)), atol=1e-5))
    True
    """
    if not isinstance(conv, _CONV):
        raise TypeError(f"conv must be a Conv1d, Conv2d or Conv3d, got {type(conv).__name__}")
    if not isinstance(bn, _BATCHNORM):
        raise TypeError(f"bn must be a BatchNorm1d, BatchNorm2d or BatchNorm3d, got "
                        f"{type(bn).__name__}")
    _refuse(bn)
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn.num_features={bn.num_features} must equal conv.out_channels="
                         f"{conv.out_channels}")
    scale, shift = _batchnorm_scale_shift(bn)
    weight = _numpy(conv.weight) * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    bias = shift + scale * (0.0 if conv.bias is None else _numpy(conv.bias))
    factory: Any = type(conv)  # torch's stubs type the sizes per rank; ours are checked tuples
    module = factory(conv.in_channels, conv.out_channels, conv.kernel_size,
                        stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                        groups=conv.groups, bias=True, padding_mode=conv.padding_mode,
                        device=conv.weight.device, dtype=conv.weight.dtype)
    assert module.bias is not None  # built with bias=True
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))
    return FoldedBatchNorm(weight, bias, module.train(conv.training))


# ---------------------------------------------------------------------------------------------
# Public: a network
# ---------------------------------------------------------------------------------------------
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
    """

    name: str
    module: nn.Module = field(repr=False)
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    linear: bool


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


def trace(model: nn.Module, input_shape: Sequence[int], *,
          allow_train: bool = False) -> list[TraceRecord]:
    """Run one forward pass and record every leaf module's call, in call order.

    Forward hooks on every leaf module (a module without children) see its calls whatever the
    model's ``forward`` does: residual blocks, branches, a module called twice (two records).
    Only leaf modules are listed: functional calls inside ``forward`` (``F.relu``, ``x + y``,
    ``torch.cat``) are not modules and are not seen (:func:`network_operator` sees them, through
    torch.fx). The input is zeros of shape ``(1, *input_shape)`` in the model's dtype and device,
    run under ``torch.no_grad()``.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.
    allow_train : bool
        Trace a model with modules in training mode (their records say ``linear=False``
        where that matters). By default such a model is refused.

    Returns
    -------
    list of TraceRecord

    Raises
    ------
    ValueError
        A module in training mode (without ``allow_train=True``), a bad ``input_shape``.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()).eval()
    >>> [(r.name, r.output_shape, r.linear) for r in sct.trace(net, (1, 5, 5))]
    [('0', (2, 3, 3), True), ('1', (2, 3, 3), False)]
    """
    shape = _input_shape(input_shape, None, type(model).__name__)
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training and not allow_train:
        raise ValueError(f"the model is in training mode ({', '.join(training[:3])}"
                         f"{', ...' if len(training) > 3 else ''}): call model.eval() first, "
                         "or pass allow_train=True")
    records: list[TraceRecord] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            def hook(mod, inputs, output, name=name):
                records.append(TraceRecord(name, mod, _shape(inputs), _shape(output),
                                           _is_linear(mod)))
            hooks.append(module.register_forward_hook(hook))
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    device = parameter.device if parameter is not None else None
    try:
        with torch.no_grad():
            model(torch.zeros((1, *shape), dtype=dtype, device=device))
    finally:
        for handle in hooks:
            handle.remove()
    return records


# ---------------------------------------------------------------------------------------------
# A linear network's graph (torch.fx), as one operator
# ---------------------------------------------------------------------------------------------
# The probe's batch: a reshape that keeps it first keeps every sample's values in C order, and
# one that moves it (``x.view(-1)``) is seen and refused.
_BATCH = 2


@dataclass(frozen=True, eq=False)
class _Op:
    """One linear node of the graph, on batched arrays ``(k, *shape)`` (k columns).

    ``forward(inputs, affine)`` adds the node's constants (biases, fill values, added
    tensors) only when ``affine``; ``backward(g)`` gives the adjoint's cotangent of each input.
    """

    name: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    forward: Callable[[list[np.ndarray], bool], np.ndarray]
    backward: Callable[[np.ndarray], list[np.ndarray]]
    layer: _Layer | None = None


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, with every module sparseconv.torch translates kept as a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _SUPPORTED) or super().is_leaf_module(m, module_qualified_name)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of broadcasting ``(k, *shape)`` to ``g.shape``: sum the broadcast axes."""
    extra = g.ndim - 1 - len(shape)
    g = g.sum(axis=tuple(range(1, 1 + extra))) if extra > 0 else g
    axes = tuple(i + 1 for i, n in enumerate(shape) if n == 1 and g.shape[i + 1] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _constant(value) -> np.ndarray | float:
    if isinstance(value, torch.Tensor):
        return _numpy(value)
    return float(value)


def _layer_op(name, index, layer: _Layer, shape) -> _Op:
    op = layer.operator()
    adjoint = op.H  # built once: a convolution's adjoint operator has its own set-up
    offset = None if layer.offset is None else layer.offset.reshape(layer.output_shape)

    def forward(xs, affine):
        k = xs[0].shape[0]
        y = (op @ xs[0].reshape(k, -1).T).T.reshape(k, *layer.output_shape)
        return y + offset if affine and offset is not None else y

    def backward(g):
        k = g.shape[0]
        return [(adjoint @ g.reshape(k, -1).T).T.reshape(k, *layer.input_shape)]

    return _Op(name, (index,), shape, forward, backward, layer)


def _reshape_op(name, index, in_shape, shape) -> _Op:
    return _Op(name, (index,), shape, lambda xs, affine: xs[0].reshape(-1, *shape),
               lambda g: [g.reshape(-1, *in_shape)],
               _Layer(name, in_shape, shape, lambda format: sp.eye_array(
                   math.prod(shape), format=format)))


_ADD = {pyop.add: 1, pyop.iadd: 1, torch.add: 1, "add": 1, "add_": 1,
        pyop.sub: -1, pyop.isub: -1, torch.sub: -1, "sub": -1, "sub_": -1}
_MUL = {pyop.mul, pyop.imul, torch.mul, "mul", "mul_", pyop.truediv,
        pyop.itruediv, torch.div, "div", "div_", pyop.neg, torch.neg, "neg"}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_RESHAPE = {torch.flatten, "flatten", "view", "reshape", torch.reshape, "squeeze",
            torch.squeeze, "unsqueeze", torch.unsqueeze, "contiguous", "clone", torch.clone,
            "view_as", "reshape_as", "float", "double", "to", "type_as", "detach"}
_DROPOUT_F = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
_POOL_F = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d, F.avg_pool3d: nn.AvgPool3d,
           F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
           F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
           F.adaptive_avg_pool3d: nn.AdaptiveAvgPool3d,
           F.pixel_shuffle: nn.PixelShuffle, F.pixel_unshuffle: nn.PixelUnshuffle}
_CONV_F = {F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d}
# the functional calls read by keyword (torch.fx's normalize_function)
_NORMALIZED = {*_DROPOUT_F, *_POOL_F, *_CONV_F, F.interpolate, F.pad, F.linear}
_PAD_F: dict[str, PaddingMode] = {"constant": "zeros", "reflect": "reflect",
                                   "replicate": "replicate", "circular": "circular"}


def _functional_module(target, kwargs: dict) -> nn.Module | None:
    """The module whose forward is the functional call ``target(**kwargs)`` (input aside)."""
    if target in _POOL_F:
        cls = _POOL_F[target]
        if cls in _POOL:
            if not kwargs.get("stride"):
                kwargs["stride"] = None  # PyTorch's default: the kernel size
            return cls(**kwargs)
        return cls(*kwargs.values())
    if target is F.interpolate:
        if kwargs.pop("antialias", False):
            raise TypeError("F.interpolate(antialias=True) is not supported")
        return nn.Upsample(**kwargs)
    if target is F.linear or target in _CONV_F:
        weight, bias = kwargs.pop("weight"), kwargs.pop("bias", None)
        if target is F.linear:
            module: Any = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        else:
            groups = kwargs.get("groups", 1)
            conv: Any = _CONV_F[target]
            module = conv(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                          bias=bias is not None, **kwargs)
        module = module.to(torch.float64)
        with torch.no_grad():
            module.weight.copy_(weight)
            if bias is not None:
                module.bias.copy_(bias)
        return module
    return None


def _describe(node) -> str:
    """How an error names a graph node: a module by its qualified name, a call by its node."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    return f"node {node.name!r} ({node.op} {name})"


class _GraphBuilder:
    """Translates the dependent nodes of a traced graph into :class:`_Op` objects."""

    def __init__(self, gm, values: dict):
        self.gm, self.values = gm, values
        self.index: dict = {}
        self.ops: list[_Op] = []

    def refuse(self, node, why: str) -> NoReturn:
        raise TypeError(f"network_operator: {_describe(node)} {why}")

    def value(self, a):
        """A constant argument's value (a dependent node is kept as the node)."""
        return torch.fx.node.map_arg(a, lambda n: n if n in self.index else self.values[n])

    def shape(self, node) -> tuple[int, ...]:
        return tuple(self.values[node].shape[1:])

    def add(self, node, make) -> None:
        try:
            op = make()
        except (TypeError, ValueError) as exc:
            if str(exc).startswith("network_operator:"):
                raise
            raise type(exc)(f"network_operator: {_describe(node)}: {exc}") from exc
        if op.shape != self.shape(node):
            raise ValueError(f"network_operator: {_describe(node)} gives {op.shape}, the "
                             f"model {self.shape(node)}")
        self.index[node] = len(self.ops)
        self.ops.append(op)

    def translate(self, node) -> None:
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            source = node.args[0]
            if source not in self.index or len(node.all_input_nodes) > 1 and not isinstance(
                    module, _CONV_T):
                self.refuse(node, "must take the network's signal as its only tensor")
            output_size = self.value(node.kwargs.get("output_size", (node.args[1:] or [None])[0]))
            self.add(node, lambda: _layer_op(node.target, self.index[source], _layer(
                module, self.shape(source), output_size), self.shape(node)))
            return
        target = node.target
        args, kwargs = list(node.args), dict(node.kwargs)
        if node.op == "call_function" and target in _NORMALIZED:
            def kind(a):
                return type(self.values[a]) if isinstance(a, torch.fx.Node) else type(a)

            normalized = normalize_function(
                target, tuple(args), kwargs, tuple(kind(a) for a in args),
                {k: kind(v) for k, v in kwargs.items()}, normalize_to_only_use_kwargs=True)
            if normalized is not None:
                kwargs = dict(normalized.kwargs)
                args = []
        self.add(node, lambda: self.functional(node, target, args, kwargs))

    def dependent(self, a) -> bool:
        return isinstance(a, torch.fx.Node) and a in self.index

    def functional(self, node, target, args, kwargs) -> _Op:
        shape = self.shape(node)
        if target in _ADD:
            return self.add_op(node, args, kwargs, _ADD[target])
        if target in _MUL:
            return self.mul_op(node, target, args, kwargs)
        if target in _CAT:
            return self.cat_op(node, kwargs.get("tensors", args[0] if args else None),
                               kwargs.get("dim", args[1] if len(args) > 1 else 0))
        source = kwargs.get("input", args[0] if args else None)
        if not self.dependent(source):
            self.refuse(node, "does not act on the network's signal")
        i, in_shape = self.index[source], self.shape(source)
        if target in _RESHAPE or (target in _DROPOUT_F and not kwargs.get("training", True)):
            return _reshape_op(node.name, i, in_shape, shape)
        if target in ("permute", torch.permute, "transpose", torch.transpose):
            return self.permute_op(node, target, i, in_shape, args, kwargs)
        if target is pyop.getitem:
            return self.getitem_op(node, i, in_shape, self.value(args[1]))
        if target in ("sum", torch.sum, "mean", torch.mean):
            return self.sum_op(node, target, i, in_shape, args, kwargs)
        if target is F.pad:
            pad, mode = self.value(kwargs["pad"]), kwargs.get("mode", "constant")
            if mode not in _PAD_F:
                self.refuse(node, f"pads in mode {mode!r}, not one of {tuple(_PAD_F)}")
            layer = _padding("F.pad", in_shape, pad, _PAD_F[mode],
                             float(self.value(kwargs.get("value")) or 0.0))
            return _layer_op(node.name, i, layer, shape)
        constants = {k: self.value(v) for k, v in kwargs.items() if k != "input"}
        module = _functional_module(target, constants) if not isinstance(target, str) else None
        if module is None:
            return self.refuse(node, "is not linear, or not a call network_operator maps")
        return _layer_op(node.name, i, _layer(module.eval(), in_shape), shape)

    def add_op(self, node, args, kwargs, sign) -> _Op:
        a = kwargs.get("input", args[0] if args else None)
        b = kwargs.get("other", args[1] if len(args) > 1 else None)
        alpha = float(kwargs.get("alpha", args[2] if len(args) > 2 else 1.0))
        terms = [(a, 1.0), (b, sign * alpha)]
        live = [(self.index[t], c, self.shape(t)) for t, c in terms if self.dependent(t)]
        fixed = [(np.asarray(_constant(self.value(t))), c) for t, c in terms
                 if not self.dependent(t)]

        def forward(xs, affine):
            y = sum(c * x for x, (_, c, _) in zip(xs, live))
            if affine:
                y = y + sum(c * v for v, c in fixed)
            return np.broadcast_to(y, (y.shape[0], *self.shape(node))).copy()

        def backward(g):
            return [c * _unbroadcast(g, s) for _, c, s in live]

        return _Op(node.name, tuple(i for i, _, _ in live), self.shape(node), forward, backward)

    def mul_op(self, node, target, args, kwargs) -> _Op:
        if target in (pyop.neg, torch.neg, "neg"):
            a, factor = kwargs.get("input", args[0] if args else None), -1.0
        else:
            a = kwargs.get("input", args[0] if args else None)
            b = kwargs.get("other", args[1] if len(args) > 1 else None)
            if self.dependent(b) and target in (pyop.mul, pyop.imul, torch.mul, "mul",
                                                "mul_"):
                a, b = b, a
            if self.dependent(b) or not self.dependent(a):
                self.refuse(node, "multiplies or divides two signals: not linear")
            if kwargs.get("rounding_mode") is not None:
                self.refuse(node, "rounds: not linear")
            factor = np.asarray(_constant(self.value(b)))
            if target in (pyop.truediv, pyop.itruediv, torch.div, "div", "div_"):
                factor = 1.0 / factor
        in_shape = self.shape(a)

        def forward(xs, affine):
            return xs[0] * factor

        return _Op(node.name, (self.index[a],), self.shape(node), forward,
                   lambda g: [_unbroadcast(g * factor, in_shape)])

    def cat_op(self, node, tensors, dim) -> _Op:
        pieces = [(self.index[t], self.shape(t)) if self.dependent(t) else
                  np.asarray(_constant(self.value(t))) for t in tensors]
        ndim = len(self.shape(node)) + 1
        axis = int(dim) % ndim
        if axis == 0:
            self.refuse(node, "concatenates along the batch axis")
        sizes = [p[1][axis - 1] if isinstance(p, tuple) else p.shape[axis] for p in pieces]
        bounds = np.cumsum(sizes)[:-1]

        def forward(xs, affine):
            it, k = iter(xs), xs[0].shape[0] if xs else 1
            parts = [next(it) if isinstance(p, tuple) else
                     np.broadcast_to(p if affine else 0 * p, (k, *p.shape[1:])) for p in pieces]
            return np.concatenate(parts, axis=axis)

        def backward(g):
            parts = np.split(g, bounds, axis=axis)
            return [part for part, p in zip(parts, pieces) if isinstance(p, tuple)]

        return _Op(node.name, tuple(p[0] for p in pieces if isinstance(p, tuple)),
                   self.shape(node), forward, backward)

    def permute_op(self, node, target, i, in_shape, args, kwargs) -> _Op:
        ndim = len(in_shape) + 1
        if target in ("permute", torch.permute):
            dims = kwargs.get("dims", args[1:] if target == "permute" else args[1])
            dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) \
                else tuple(dims)
            axes = [int(d) % ndim for d in self.value(dims)]
        else:
            d0, d1 = (int(self.value(kwargs.get(k, v))) % ndim
                      for k, v in zip(("dim0", "dim1"), args[1:3]))
            axes = list(range(ndim))
            axes[d0], axes[d1] = axes[d1], axes[d0]
        if axes[0] != 0:
            self.refuse(node, "moves the batch axis")
        inverse = list(np.argsort(axes))
        return _Op(node.name, (i,), self.shape(node),
                   lambda xs, affine: np.ascontiguousarray(xs[0].transpose(axes)),
                   lambda g: [np.ascontiguousarray(g.transpose(inverse))])

    def getitem_op(self, node, i, in_shape, index) -> _Op:
        index = index if isinstance(index, tuple) else (index,)
        if not index or index[0] != slice(None):
            self.refuse(node, "indexes the batch axis (x[:, ...] keeps it)")
        index = tuple(_numpy(v).astype(np.int64) if isinstance(v, torch.Tensor) else v
                      for v in index)

        def backward(g):
            z = np.zeros((g.shape[0], *in_shape))
            np.add.at(z, index, g)
            return [z]

        return _Op(node.name, (i,), self.shape(node), lambda xs, affine: xs[0][index], backward)

    def sum_op(self, node, target, i, in_shape, args, kwargs) -> _Op:
        dim = self.value(kwargs.get("dim", args[1] if len(args) > 1 else None))
        keepdim = bool(self.value(kwargs.get("keepdim", args[2] if len(args) > 2 else False)))
        ndim = len(in_shape) + 1
        if dim is None or dim == []:
            self.refuse(node, "reduces over the batch axis")
        axes = tuple(sorted({int(d) % ndim for d in (dim if isinstance(dim, (tuple, list))
                                                     else (dim,))}))
        if 0 in axes:
            self.refuse(node, "reduces over the batch axis")
        scale = 1.0 / math.prod(in_shape[a - 1] for a in axes) if target in ("mean",
                                                                            torch.mean) else 1.0

        def backward(g):
            g = g if keepdim else np.expand_dims(g, axes)
            return [np.broadcast_to(g * scale, (g.shape[0], *in_shape)).copy()]

        return _Op(node.name, (i,), self.shape(node),
                   lambda xs, affine: xs[0].sum(axis=axes, keepdims=keepdim) * scale, backward)


def _trace_graph(model: nn.Module):
    """``(graph module, root name)``: the model traced by torch.fx (a leaf module wrapped)."""
    leaf = next(model.children(), None) is None
    root = nn.Sequential(model) if leaf else model
    try:
        graph = _Tracer().trace(root)
    except Exception as exc:  # fx raises many kinds: TraceError, TypeError, RuntimeError...
        raise TypeError(f"network_operator: torch.fx cannot trace {type(model).__name__} "
                        f"({type(exc).__name__}: {exc}); its forward must not branch on tensor "
                        "values or call code torch.fx cannot see through") from exc
    return torch.fx.GraphModule(root, graph), leaf


def _probe(gm, shape) -> dict:
    """Every node's value on one forward pass of a batch of ``_BATCH`` zeros."""
    values: dict = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            values[n] = result
            return result

    parameter = next(gm.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    device = parameter.device if parameter is not None else None
    with torch.no_grad():
        Recorder(gm).run(torch.zeros((_BATCH, *shape), dtype=dtype, device=device))
    return values


def _build_graph(model: nn.Module, shape: tuple[int, ...]):
    gm, leaf = _trace_graph(model)
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise TypeError(f"network_operator: {type(model).__name__}.forward takes "
                        f"{len(inputs)} inputs; one is supported")
    for node in nodes:  # refuse training mode before the probe runs (it would update stats)
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, (*_BATCHNORM, *_DROPOUT)):
                _refuse(module)
    values = _probe(gm, shape)
    builder = _GraphBuilder(gm, values)
    builder.index[inputs[0]] = 0
    builder.ops.append(_Op("input", (), shape, lambda xs, affine: xs[0], lambda g: [g]))
    output = None
    for node in nodes[1:]:
        live = any(a in builder.index for a in node.all_input_nodes)
        if node.op == "output":
            output = node.args[0]
            break
        if not live or not isinstance(values[node], torch.Tensor):
            continue  # a constant: a parameter, a shape, a size computed from them
        if values[node].ndim == 0 or values[node].shape[0] != _BATCH:
            builder.refuse(node, "mixes the batch axis into the sample (the batch must stay "
                           "the first axis)")
        builder.translate(node)
    if not isinstance(output, torch.fx.Node) or output not in builder.index:
        raise TypeError(f"network_operator: {type(model).__name__} must return one tensor "
                        f"computed from its input, got {output!r}")
    ops = builder.ops[:builder.index[output] + 1]
    if leaf:
        ops = [op if op.name != "0" else dataclasses.replace(op, name="") for op in ops]
    return ops


def _run(ops: list[_Op], x: np.ndarray, affine: bool) -> np.ndarray:
    values: list = [x]
    for op in ops[1:]:
        values.append(op.forward([values[i] for i in op.inputs], affine))
    return values[-1]


def _run_adjoint(ops: list[_Op], g: np.ndarray) -> np.ndarray:
    grads: list = [None] * len(ops)
    grads[-1] = g
    for j in range(len(ops) - 1, 0, -1):
        if grads[j] is None:
            continue
        for i, gi in zip(ops[j].inputs, ops[j].backward(grads[j])):
            grads[i] = gi if grads[i] is None else grads[i] + gi
    return np.zeros_like(g, shape=(g.shape[0], *ops[0].shape)) if grads[0] is None else grads[0]


class _GraphOperator(spla.LinearOperator):
    """The linear part of a traced network: forward through the graph, adjoint backwards."""

    def __init__(self, ops: list[_Op]):
        self.ops = ops
        self.input_shape, self.output_shape = ops[0].shape, ops[-1].shape
        super().__init__(np.float64, (math.prod(self.output_shape), math.prod(self.input_shape)))

    def _matmat(self, x):
        k = x.shape[1]
        y = _run(self.ops, np.asarray(x, np.float64).T.reshape(k, *self.input_shape), False)
        return y.reshape(k, -1).T

    def _rmatmat(self, y):
        k = y.shape[1]
        x = _run_adjoint(self.ops, np.asarray(y, np.float64).T.reshape(k, *self.output_shape))
        return x.reshape(k, -1).T

    def _matvec(self, x):
        return self._matmat(x.reshape(-1, 1)).ravel()

    def _rmatvec(self, y):
        return self._rmatmat(y.reshape(-1, 1)).ravel()


@dataclass(frozen=True, eq=False)
class NetworkOperator:
    """A linear network ``x -> operator @ x + offset``, from :func:`network_operator`.

    Attributes
    ----------
    names : tuple of str
        The graph's linear operations, first applied first: a module by its qualified name,
        a functional call (``add``, ``cat``, ``interpolate``, ...) by its torch.fx node name.
    input_shape, output_shape : tuple of int
    operator : scipy.sparse.linalg.LinearOperator
        The linear part, matrix-free where :func:`operator` is; its adjoint runs the graph
        backwards (the transposes of the operations, summed where a signal was used twice).
    offset : numpy.ndarray
        The network applied to zero: the biases (and added constants) carried to the output.
    """

    names: tuple[str, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    operator: spla.LinearOperator
    offset: np.ndarray
    _ops: tuple = field(repr=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a flat input ``(n,)`` or to columns ``(n, k)``."""
        x = np.asarray(x)
        return self.operator @ x + (self.offset if x.ndim == 1 else self.offset[:, None])

    def affine(self) -> sc.AffineMap:
        """The explicit :class:`sparseconv.AffineMap`.

        A chain is the product of its layers' matrices (:func:`sparseconv.compose`); a graph
        with sums or concatenations is the operator applied to the identity, a block of
        columns (or, when the output is smaller, of rows through the adjoint) at a time.
        """
        ops = self._ops
        if all(op.inputs == (i,) and op.layer is not None for i, op in enumerate(ops[1:])):
            return sc.compose(*(sc.AffineMap(op.layer.build("csr"), np.zeros(
                math.prod(op.shape)) if op.layer.offset is None else op.layer.offset)
                for op in ops[1:]))
        m, n = self.operator.shape
        small = min(m, n)
        block = max(1, min(small, 2**22 // max(m, n)))
        check_memory(8 * block * max(m, n) * 3, "NetworkOperator.affine")
        columns = []
        for start in range(0, small, block):
            eye = np.zeros((small, min(block, small - start)))
            eye[start + np.arange(eye.shape[1]), np.arange(eye.shape[1])] = 1.0
            part = self.operator @ eye if n <= m else self.operator.H @ eye
            columns.append(sp.csc_array(part) if n <= m else sp.csr_array(part.T))
        matrix = sp.hstack(columns, format="csr") if n <= m else sp.vstack(columns, format="csr")
        return sc.AffineMap(matrix, self.offset.copy())


def network_operator(model: nn.Module, input_shape: Sequence[int]) -> NetworkOperator:
    """A network whose forward is linear (affine) as one matrix-free operator.

    The model is traced with ``torch.fx`` (``torch.fx.symbolic_trace``'s tracer, with
    every module :func:`matrix` supports kept whole), and each node of the graph becomes its
    linear map: modules through :func:`operator`; residual sums and differences
    (``x + f(x)``, ``torch.add``), products with constants, ``torch.cat`` (not along the
    batch), ``flatten``/``view``/``reshape``/``squeeze``/``unsqueeze``, ``permute`` and
    ``transpose``, ``x[:, ...]`` indexing, ``sum``/``mean`` over non-batch axes, and the
    functional ``F.interpolate``, ``F.avg_pool*d``, ``F.adaptive_avg_pool*d``, ``F.pad``,
    ``F.pixel_(un)shuffle``, ``F.linear``, ``F.conv*d`` (with constant weights) and
    ``F.dropout`` (``training=False``). Shapes (``x.size(0)``, ``x.shape``) are read from one
    probe forward pass on a batch of zeros.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; any module whose forward torch.fx can trace.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.

    Returns
    -------
    NetworkOperator
        ``net(x.ravel()) == model(x[None])[0].ravel()``; ``net.operator`` is the matrix-free
        linear part (a ``LinearOperator`` with its adjoint), ``net.offset`` the biases'
        contribution, ``net.affine()`` the explicit :class:`sparseconv.AffineMap`.

    Raises
    ------
    TypeError
        A node that is not linear (``relu``, ``max_pool2d``, a product of two signals) or not
        mapped, named with its torch.fx node; a model torch.fx cannot trace, with the reason.
    ValueError
        A module in training mode where that matters; shapes that do not fit.

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> class Residual(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(2, 2, 3, padding=1)
    ...     def forward(self, x):
    ...         return x + self.conv(x)
    >>> model = nn.Sequential(Residual(), nn.AvgPool2d(2), nn.Flatten(),
    ...                       nn.Linear(32, 3)).double().eval()
    >>> net = sct.network_operator(model, (2, 8, 8))
    >>> net.names
    ('0.conv', 'add', '1', '2', '3')
    >>> x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    >>> bool(np.allclose(net(x.numpy().ravel()), model(x).detach().numpy().ravel()))
    True
    >>> net.affine().shape
    (3, 128)
    """
    shape = _input_shape(input_shape, None, type(model).__name__)
    ops = _build_graph(model, shape)
    operator_ = _GraphOperator(ops)
    offset = _run(ops, np.zeros((1, *shape)), True).ravel()
    return NetworkOperator(tuple(op.name for op in ops[1:]), shape, ops[-1].shape, operator_,
                           offset, tuple(ops))


# ---------------------------------------------------------------------------------------------
# The Lipschitz report
# ---------------------------------------------------------------------------------------------
_COLUMNS = ("name", "type", "input_shape", "output_shape", "nnz", "memory", "lower", "upper",
            "method", "circular", "seconds")


def _untyped(module: nn.Module) -> Any:
    """``module`` for attribute reads that torch's stubs type more loosely than the module."""
    return module


def _nnz(module: nn.Module, layer: _Layer) -> int:
    """The layer matrix's stored entries, without building it where sparseconv allows."""
    if isinstance(module, _CONV):
        assert layer.conv is not None  # every convolution layer records its arguments
        weight, shape, kwargs = layer.conv
        return sc.ConvGeometry.from_weight(weight.shape, shape, **kwargs).nnz()
    if isinstance(module, _CONV_T):
        module = _untyped(module)  # torch's stubs type padding as str | tuple for every module
        smallest = sc.conv_transpose_output_shape(
            layer.input_shape[1:], module.kernel_size, module.stride, module.padding, 0,
            module.dilation)
        output_padding = tuple(n - m for n, m in zip(layer.output_shape[1:], smallest))
        return sc.ConvGeometry.for_transpose(
            module.weight.shape, layer.input_shape, stride=module.stride, padding=module.padding,
            output_padding=output_padding, dilation=module.dilation, groups=module.groups).nnz()
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features * layer.repeat
    return int(layer.build("csr").nnz)


def _csr_bytes(nnz: int, rows: int, cols: int) -> int:
    """The memory of a float64 CSR array with ``nnz`` entries (scipy's index dtype rule)."""
    index = np.dtype(sp.get_index_dtype(maxval=max(nnz, rows, cols))).itemsize
    return nnz * (8 + index) + (rows + 1) * index


def _circular_norm(layer: _Layer) -> float | None:
    """The exact spectral norm of the same kernel with periodic padding, or None.

    The circular layer on the same input size (stride, dilation and groups kept), by FFT; None
    for a layer that is no convolution, or whose input size its stride does not divide.
    """
    if layer.conv is None:
        return None
    weight, shape, kwargs = layer.conv
    periodic = {k: v for k, v in kwargs.items() if k in ("stride", "dilation", "groups")}
    try:
        return float(sc.spectral_norm(weight, shape, padding=None, padding_mode="circular",
                                      method="fft", **periodic).value)
    except ValueError:  # a stride that does not divide the input size: no periodic layer
        return None


def _rounded(value: float, rounding: str, digits: int = 6) -> str:
    """``value`` to ``digits`` significant digits, rounded outward (a printed interval stays
    valid): ``rounding`` is decimal's ROUND_FLOOR or ROUND_CEILING."""
    exact = Decimal(repr(float(value)))
    if exact == 0 or not exact.is_finite():
        return str(float(value))
    return f"{exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding):g}"


@dataclass(frozen=True, eq=False)
class LipschitzReport:
    """Per-layer certified spectral norms of a network, from :func:`lipschitz_report`.

    Iterating gives the rows as dicts (the keys of ``columns``); ``str(report)`` is a table
    (intervals printed rounded outward, so a printed interval is certified too).

    Attributes
    ----------
    rows : tuple of dict
        ``name``, ``type``, ``input_shape``, ``output_shape``; ``nnz`` and ``memory`` (bytes,
        float64 CSR) of the layer's matrix, counted without building it for convolutions,
        transposed convolutions and ``nn.Linear``; the certified interval ``lower <= ||A||_2
        <= upper`` and its ``method`` (:func:`sparseconv.spectral_norm`'s); ``circular``, the
        exact norm of the same kernel with periodic padding on the same input size (None for
        a layer that is no convolution, or whose size its stride does not divide); the
        ``seconds`` the row took.
    network_upper : float or None
        The product of the layers' upper bounds and of the activations' Lipschitz constants,
        rounded up: a Lipschitz bound of the whole network (in the 2-norm) when it is the
        sequential chain of the traced layers; None when some traced module is neither
        linear nor a known activation, or the chain is not known (``reason`` says which).
    activations : tuple of str
        The activations assumed, as ``"name (Type)"`` for a 1-Lipschitz one and ``"name
        (Type, L)"`` otherwise (``Sigmoid``: 0.25).
    chain_checked : bool
        True when the model is a (nested) ``nn.Sequential``, so it is a chain; False when
        the chain is an assumption (hooks do not see residual sums or functional calls).
    reason : str
        Why ``network_upper`` is None (empty otherwise).
    complete : bool
        False for the partial report of an interrupted run (see :func:`lipschitz_report`).
    """

    rows: tuple[dict, ...]
    network_upper: float | None
    activations: tuple[str, ...]
    chain_checked: bool
    reason: str = ""
    complete: bool = True
    columns: tuple[str, ...] = _COLUMNS

    def __iter__(self) -> Iterator[dict]:
        return (dict(row) for row in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        def cell(key, value):
            if value is None:
                return "-"
            if key == "name" and not value:
                return "(model)"  # the model is itself the one layer
            if key == "lower":
                return _rounded(value, ROUND_FLOOR)
            if key in ("upper", "circular"):
                return _rounded(value, ROUND_CEILING)
            if key == "memory":
                return format_bytes(value)
            if key == "seconds":
                return f"{value:.3f}"
            if isinstance(value, tuple):
                return "x".join(map(str, value))
            return str(value)

        table = [list(self.columns)] + [[cell(k, row[k]) for k in self.columns]
                                        for row in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.network_upper is None:
            lines.append(f"network bound: none ({self.reason})")
        else:
            lines.append("network bound (product of the upper bounds): "
                         + _rounded(self.network_upper, ROUND_CEILING))
            lines.append("  assumes " + ("" if self.chain_checked else
                                         "the model is the sequential chain of these layers and ")
                         + "these activations' Lipschitz constants (1 unless given): "
                         + (", ".join(self.activations) or "none"))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as CSV (shapes as ``CxHxW``, a missing ``circular`` empty)."""
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: "x".join(map(str, v)) if isinstance(v, tuple) else v
                                 for k, v in row.items()})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the rows, the network bound and its assumptions as JSON."""
        data = {"layers": [dict(row) for row in self.rows], "network_upper": self.network_upper,
                "activations": list(self.activations), "chain_checked": self.chain_checked,
                "reason": self.reason, "complete": self.complete}
        with open(path, "w") as stream:
            json.dump(data, stream, indent=2)


def _activation_constant(module: nn.Module) -> float | None:
    """The Lipschitz constant ``sup |f'|`` of an elementwise activation, or None if unknown."""
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(float(module.negative_slope)))
    if isinstance(module, nn.ELU):  # f' = alpha exp(x) below 0
        return max(1.0, abs(float(module.alpha)))
    if isinstance(module, nn.Sigmoid):  # f' = s (1 - s) <= 1/4
        return 0.25
    if isinstance(module, (*_ONE_LIPSCHITZ, nn.Softplus)):  # Hardtanh covers ReLU6
        return 1.0
    return None


def _is_sequential(model: nn.Module) -> bool:
    if isinstance(model, nn.Sequential):
        return all(_is_sequential(child) for child in model.children())
    return next(model.children(), None) is None


def _progress_callback(progress, total: int) -> tuple[Callable | None, Callable[[], None]]:
    """The per-layer callback ``(done, total, name)`` that ``progress`` asks for, and a closer."""
    if progress is False or progress is None:
        return None, lambda: None
    if callable(progress):
        return progress, lambda: None
    try:  # optional: by name, so that neither an import nor type stubs are required
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        def line(done, total, name):
            print(f"lipschitz_report: {done}/{total} {name}", file=sys.stderr, flush=True)
        return line, lambda: None
    bar = tqdm(total=total, desc="lipschitz_report", unit="layer", file=sys.stderr)

    def update(done, total, name):
        bar.set_postfix_str(name, refresh=False)
        bar.update(done - bar.n)
    return update, bar.close


def _report_row(record: TraceRecord, batchnorm: TraceRecord | None = None,
                **kwargs: Any) -> dict:
    """One row: ``record``'s layer, or ``batchnorm`` folded into it (a convolution)."""
    module, name, kind, out = (record.module, record.name, type(record.module).__name__,
                               record.output_shape)
    start = time.perf_counter()
    if batchnorm is not None:
        # in float64: a float32 module would round the folded weights
        module = fold_batchnorm(copy.deepcopy(module).double(), batchnorm.module).module
        name, kind = f"{name}+{batchnorm.name}", f"{kind}+{type(batchnorm.module).__name__}"
        out = batchnorm.output_shape
    layer = _layer(module, record.input_shape,
                   record.output_shape[1:] if isinstance(module, _CONV_T) else None)
    bound = _layer_norm(layer, **kwargs)
    nnz = _nnz(module, layer)
    rows, cols = math.prod(layer.output_shape), math.prod(layer.input_shape)
    return dict(name=name, type=kind, input_shape=record.input_shape, output_shape=out,
                nnz=nnz, memory=_csr_bytes(nnz, rows, cols), lower=float(bound.lower),
                upper=float(bound.upper), method=bound.method, circular=_circular_norm(layer),
                seconds=time.perf_counter() - start)


def _trace_with_folds(model: nn.Module, input_shape) -> tuple[list[TraceRecord], list[bool]]:
    """:func:`trace`, and per BatchNorm call whether its input is the very tensor the last
    convolution returned, unmodified (so that folding it into that convolution is exact).

    The tensor's version counter rules out in-place operations in between (``ReLU(inplace=
    True)``, ``x.relu_()``), which return the same tensor object.
    """
    last: list = [None, -1]
    folds: list[bool] = []

    def after_conv(module, inputs, output):
        last[:] = [output, output._version]

    def after_batchnorm(module, inputs, output):
        tensor = _first_tensor(inputs)
        folds.append(tensor is not None and tensor is last[0] and tensor._version == last[1])

    handles = [m.register_forward_hook(after_conv if isinstance(m, _CONV) else after_batchnorm)
               for m in model.modules() if isinstance(m, (*_CONV, *_BATCHNORM))]
    try:
        return trace(model, input_shape), folds
    finally:
        for handle in handles:
            handle.remove()


def _layers_to_report(records: list[TraceRecord], folds: list[bool],
                      fold: bool) -> list[tuple[TraceRecord, TraceRecord | None]]:
    """The linear records that get a row, each with the BatchNorm folded into it, if any."""
    todo: list[tuple[TraceRecord, TraceRecord | None]] = []
    calls = iter(folds)
    for record in records:
        if not record.linear or isinstance(record.module, (nn.Flatten, nn.Identity, *_DROPOUT)):
            continue
        if isinstance(record.module, _BATCHNORM) and next(calls) and fold:
            # its input is the last convolution's output: that convolution's row, unpaired
            i = max(i for i, (r, _) in enumerate(todo) if isinstance(r.module, _CONV))
            if todo[i][1] is None:
                todo[i] = (todo[i][0], record)
                continue
        todo.append((record, None))
    return todo


def lipschitz_report(model: nn.Module, input_shape: Sequence[int], *,
                     assume_chain: bool = False, fold_batchnorm: bool = False,
                     progress: bool | Callable[[int, int, str], object] = False,
                     **kwargs: Any) -> LipschitzReport:
    """Certified spectral norms of every linear layer of a network, and their product.

    The model is traced (:func:`trace`, eval mode required); every linear layer that is not
    a reshape (``Flatten``, ``Identity``, ``Dropout``: norm 1) gets a row: shapes, the nnz
    and memory of its matrix (counted without building it for convolutions), the certified
    interval ``[lower, upper]`` of :func:`spectral_norm` with its method, the exact norm of
    the same kernel with circular padding beside it, and the time taken.

    Activations with a known Lipschitz constant: ``ReLU``, ``ReLU6``, ``Hardtanh``, ``Tanh``,
    ``Softplus`` (1), ``LeakyReLU`` and ``ELU`` (``max(1, |slope|)``, ``max(1, |alpha|)``),
    ``Sigmoid`` (1/4). The network bound multiplies the layers' upper bounds and these
    constants, rounded up.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.
    assume_chain : bool
        Give the network bound for a model that is not a (nested) ``nn.Sequential`` too,
        assuming its forward is the sequential chain of the traced layers (hooks do not see
        residual sums, concatenations or functional calls: for those the product is no
        bound). By default only a ``nn.Sequential`` gets one.
    fold_batchnorm : bool
        Fold each eval-mode BatchNorm into the convolution whose output tensor it normalizes
        (seen by forward hooks; :func:`fold_batchnorm`): one row ``"conv+bn"`` for the pair,
        whose norm can be much smaller than the product of the two. Other BatchNorms keep
        their own rows.
    progress : bool or callable
        ``True``: a progress bar on stderr (tqdm if it is installed, else one line per
        layer). A callable is called after each layer as ``progress(done, total, name)``.
    **kwargs
        Passed to :func:`sparseconv.spectral_norm` (``method``, ``tol``, ``executor``: any
        ``concurrent.futures.Executor``, for example a Dask client's ``get_executor()``, runs
        each layer's per-frequency work).

    Returns
    -------
    LipschitzReport

    Raises
    ------
    ValueError
        A model in training mode.
    KeyboardInterrupt
        Re-raised when the run is interrupted (Ctrl-C), with the rows finished so far as the
        exception's ``report`` attribute: a :class:`LipschitzReport` with ``complete=False``
        and no network bound. The layer running at the interrupt is left out.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(2 * 6 * 6, 4)).eval()
    >>> report = sct.lipschitz_report(model, (1, 6, 6))
    >>> [row["name"] for row in report]
    ['0', '3']
    >>> bool(report.network_upper >= report.rows[0]["upper"] * report.rows[1]["upper"])
    True
    >>> report.activations
    ('1 (ReLU)',)
    """
    if not (isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable (done, total, name), got "
                        f"{progress!r}")
    records, folds = _trace_with_folds(model, input_shape)
    todo = _layers_to_report(records, folds, fold_batchnorm)
    activations, constants, unknown = [], [], []
    for record in records:
        if record.linear:
            continue
        constant = _activation_constant(record.module)
        label = f"{record.name} ({type(record.module).__name__}"
        if constant is None:
            unknown.append(label + ")")
        else:
            constants.append(constant)
            activations.append(label + (")" if constant == 1 else f", {constant:g})"))
    chain = _is_sequential(model)
    callback, close = _progress_callback(progress, len(todo))
    rows: list[dict] = []
    try:
        for record, batchnorm in todo:
            rows.append(_report_row(record, batchnorm, **kwargs))
            if callback is not None:
                callback(len(rows), len(todo), rows[-1]["name"])
    except KeyboardInterrupt as interrupt:
        interrupt.report = LipschitzReport(  # type: ignore[attr-defined]
            tuple(rows), None, tuple(activations), chain,
            f"interrupted after {len(rows)} of {len(todo)} layers", complete=False)
        raise
    finally:
        close()
    reason = ""
    if unknown:
        reason = "not linear and not a known activation: " + ", ".join(unknown)
    elif not (chain or assume_chain):
        reason = (f"{type(model).__name__} is not a nn.Sequential, so the product of the "
                  "layers' bounds is no bound of its forward (pass assume_chain=True if that "
                  "forward is the chain of the traced layers)")
    factors = [row["upper"] for row in rows] + constants
    # each product rounds once: up() by that many roundings keeps it an upper bound
    product = up(math.prod(factors), len(factors) + 1)
    return LipschitzReport(tuple(rows), None if reason else product, tuple(activations),
                           chain, reason)
