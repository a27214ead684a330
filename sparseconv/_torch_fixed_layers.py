"""The modules that are no convolution and no ``nn.Linear``, as layers: pooling, normalization
by running statistics, padding, resampling, patches (``Unfold``, ``Fold``,
``ChannelShuffle``) and reshapes.

Each becomes a :class:`sparseconv._torch_layer_base._Layer` from sparseconv's own matrices,
with PyTorch's arguments and output sizes (:func:`sparseconv._torch_layers._layer`
dispatches to them).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.fx
from torch import nn

import sparseconv as sc
from sparseconv._caller import outside_level
from sparseconv._formats import in_format
from sparseconv._memory import check_sparse_memory
from sparseconv._resampling import MODES as INTERPOLATION_MODES
from sparseconv._resampling import adaptive_output_size, interpolate_output_size
from sparseconv._torch_kinds import (
    _ADAPTIVE,
    _BATCHNORM,
    _NORM_RANKS,
    _PAD_MODES,
    _POOL,
    Interpolate,
    parameter,
)
from sparseconv._torch_layer_base import _identity, _input_shape, _Layer, _numpy, _repeated
from sparseconv._typing import PaddingMode
from sparseconv._validation import (
    as_weight,
    first_index,
    int_tuple,
    positive_int,
)

__all__: list[str] = []


def _pool_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    ndim = 1 + _POOL.index(type(module)) if type(module) in _POOL else None
    shape = _input_shape(input_shape, ndim, name)
    ndim = len(shape) - 1
    kwargs = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
                  ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad,
                  divisor_override=getattr(module, "divisor_override", None))
    kernel = int_tuple(module.kernel_size, ndim, "kernel_size", 1, broadcast_one=True)
    if ndim == 3 and any(n < k for n, k in zip(shape[1:], kernel)):
        # PyTorch's avg_pool3d (only it) wants the unpadded input at least the kernel's size
        raise ValueError(f"{name} refuses an input smaller than its kernel, as PyTorch does: "
                         f"input_shape={shape}, kernel_size={kernel}")
    matrix = sc.avg_pool_matrix(shape, **kwargs)
    out = (shape[0], *_pool_output_size(shape[1:], kwargs, ndim))
    conv = None
    plain = kwargs["count_include_pad"] or not any(np.atleast_1d(module.padding))
    if plain and not kwargs["ceil_mode"] and kwargs["divisor_override"] is None:
        # every window averages prod(kernel) padded positions: a depthwise convolution
        weight = np.full((shape[0], 1, *kernel), 1.0 / math.prod(kernel))
        conv = (weight, shape, dict(stride=module.stride, padding=module.padding,
                                    groups=shape[0]))
    return _Layer(name, shape, out, lambda format: in_format(matrix, format), conv=conv)


def _pool_output_size(size, kwargs, ndim) -> tuple[int, ...]:
    """PyTorch's pooling output size (``pooling_output_shape`` in ATen)."""
    def per_axis(name, minimum):  # (2,) is every axis, as PyTorch's (a new user's trial)
        return int_tuple(kwargs[name], ndim, name, minimum, broadcast_one=True)

    result = []
    for n, k, s, p in zip(size, per_axis("kernel_size", 1), per_axis("stride", 1),
                          per_axis("padding", 0)):
        span = n + 2 * p - k + ((s - 1) if kwargs["ceil_mode"] else 0)
        out = span // s + 1
        if kwargs["ceil_mode"] and (out - 1) * s >= n + p:
            out -= 1  # the last window must start inside the input or the low padding
        result.append(out)
    return tuple(result)


def _batchnorm_scale_shift(module) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` per channel of an eval-mode normalization: ``y = (x - mean) /
    sqrt(var + eps) * gamma + beta = scale * x + shift``. Refused (``ValueError`` naming the
    module, the channel and the values) where PyTorch refuses the module (``eps < 0``) or its
    forward gives no number (``var + eps <= 0``, statistics or affine parameters not
    finite): the matrix would hold NaN or infinity, and its bounds none."""
    name = type(module).__name__
    eps = module.eps
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"{name}.eps must be a non-negative number, as PyTorch's batch_norm "
                         f"requires, got {eps!r}")
    if module.running_var is not None and module.running_var.dtype != torch.float64:
        # PyTorch adds eps in float32 (the opmath of float32, float16 and bfloat16 buffers): a
        # review's float32 BatchNorm with eps=2e-45 and a zero variance had the slope
        # 1/sqrt(1.4e-45), 19.5% above the row's upper bound read from 2e-45
        eps = float(np.float32(eps))
    var, mean = (as_weight(_numpy(getattr(module, what)), f"{name}.{what}", finite=True)
                 for what in ("running_var", "running_mean"))
    gamma, beta = ((as_weight(_numpy(parameter(module, what)), f"{name}.{what}", finite=True)
                    for what in ("weight", "bias")) if module.affine else (None, None))
    if (where := first_index(~(var + eps > 0))) is not None:
        raise ValueError(f"{name}.running_var + eps must be positive (the forward divides by "
                         f"its square root), got running_var={float(var[where])!r} and "
                         f"eps={eps!r} at index {where}")
    scale = 1.0 / np.sqrt(var + eps)
    shift = -mean * scale
    if gamma is not None:
        scale, shift = scale * gamma, shift * gamma + beta
    return scale, shift


def _batchnorm_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    ndim = _NORM_RANKS.get(type(module))  # (SyncBatchNorm: any rank)
    shape = _input_shape(input_shape, None, name)
    spatial_ranks = (0, 1) if ndim == 1 and type(module) in _BATCHNORM else (ndim,)
    if shape[0] != module.num_features or (ndim is not None and len(shape) - 1 not in
                                           spatial_ranks):
        raise ValueError(f"input_shape must be (num_features={module.num_features}, *spatial) "
                         f"as {name} expects, got {shape}")
    scale, shift = _batchnorm_scale_shift(module)
    spatial = math.prod(shape[1:])
    channels = shape[0]

    def build(format):
        n = math.prod(shape)
        check_sparse_memory(n, n, np.float64, f"the {n} x {n} diagonal matrix of {name}")
        return in_format(sp.diags_array(np.repeat(scale, spatial)), format)

    return _Layer(name, shape, shape, build, _repeated(shift, spatial), None,
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
        return in_format(sp.csr_array(a), format)

    # ConstantPad with a fill value: the pad entries are an offset
    offset = (lambda: value * (1.0 - build("csr") @ np.ones(math.prod(shape)))) if value else None
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
        if module.mode not in INTERPOLATION_MODES:
            raise TypeError(f"{name}(mode={module.mode!r}) is not a mode sparseconv.torch "
                            f"supports ({module!r}); supported: {INTERPOLATION_MODES}")
        matrix = sc.interpolate_matrix(shape, module.size, module.scale_factor, module.mode,
                                       module.align_corners, module.recompute_scale_factor,
                                       isinstance(module, Interpolate) and module.antialias)
        _warn_float64_reads(module, shape, matrix)
    elif isinstance(module, nn.PixelShuffle):
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.pixel_shuffle_matrix(shape, module.upscale_factor)
    else:
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.pixel_unshuffle_matrix(shape, module.downscale_factor)
    out = _resampled_shape(module, shape, matrix.shape[0])
    return _Layer(name, shape, out, lambda format: in_format(matrix, format))


#: What a refusal adds where a float64 model resamples in a nearest mode.
NEAREST_FLOAT64_HINT = (" (a nearest resampling in float64? The matrix reads the indices "
                        "PyTorch's float32 kernels read, and its float64 kernels read others at "
                        "some sizes: run the model in float32, or see the RuntimeWarning of "
                        "sparseconv.torch.matrix)")


def nearest_in_float64(module: nn.Module, dtype: torch.dtype) -> bool:
    """Whether ``module`` resamples in a nearest mode, run in float64."""
    return dtype == torch.float64 and isinstance(module, nn.Upsample) and str(
        module.mode).startswith("nearest")


def _warn_float64_reads(module: nn.Upsample, shape: tuple[int, ...], matrix) -> None:
    """Warn where a nearest mode's matrix (PyTorch's float32 kernel, its default dtype) is
    not what its float64 kernel computes on this input: the module has no parameter to tell
    which one a caller runs (a new user's trial: a float64 network of one
    ``Upsample(scale_factor=3.7, mode="nearest-exact")`` was 1.47 off, without a word). One
    forward of a float64 probe whose entries are their own positions shows what it reads."""
    if module.mode not in ("nearest", "nearest-exact"):
        return
    spatial = shape[1:]
    n = math.prod(spatial)
    with torch.no_grad():
        read = module(torch.arange(n, dtype=torch.float64).reshape(1, 1, *spatial))
    theirs = read.reshape(-1).numpy()
    block = sp.csr_array(matrix)[:theirs.size, :n]  # (the first channel's block)
    ours = block @ np.arange(n, dtype=np.float64)
    differ = np.flatnonzero(theirs != ours)
    if differ.size:
        o = int(differ[0])
        said = (f"{type(module).__name__}(mode={module.mode!r}, scale_factor="
                f"{module.scale_factor!r}) on {shape}: the matrix is PyTorch's float32 "
                f"kernel (its default dtype), and its float64 kernel reads other inputs at "
                f"{differ.size} of {theirs.size} outputs (flat output {o} of a channel: "
                f"input {int(theirs[o])} in float64, {int(ours[o])} in float32), so "
                "float64 inputs get other values; an integer scale_factor (or 0.5, 1.5, "
                "2.5) reads alike in both")
        warnings.warn(said, RuntimeWarning, stacklevel=outside_level(torch))


def _patch_layer(module, input_shape) -> _Layer:
    """Unfold (sparseconv's im2col matrix, torch's ``(C * prod(kernel), L)`` order), Fold (its
    adjoint on ``output_size``: overlapping patches add up) and ChannelShuffle (a
    permutation of the channels)."""
    name = type(module).__name__
    if isinstance(module, nn.ChannelShuffle):
        shape = _input_shape(input_shape, None, name)
        groups = positive_int(module.groups, "groups")
        if shape[0] % groups:
            raise ValueError(f"{name}(groups={groups}) needs channels divisible by groups, got "
                             f"input_shape={shape}")
        n = math.prod(shape)
        check_sparse_memory(n, n, np.float64, f"the {n} x {n} permutation matrix of {name}")
        # torch: (g, C/g, ...) transposed to (C/g, g, ...): output channel o reads source[o]
        source = np.arange(shape[0]).reshape(groups, -1).T.ravel()
        size = math.prod(shape[1:])
        columns = (source[:, None] * size + np.arange(size)).ravel()
        matrix = sp.csr_array((np.ones(n), (np.arange(n), columns)), shape=(n, n))
        return _Layer(name, shape, shape, lambda format: in_format(matrix, format))
    options = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
    if isinstance(module, nn.Unfold):
        shape = _input_shape(input_shape, 2, name)
        matrix = sc.im2col_matrix(shape, module.kernel_size, **options)
        rows = shape[0] * math.prod(int_tuple(module.kernel_size, 2, "kernel_size", 1))
        out = (rows, matrix.shape[0] // rows)
        return _Layer(name, shape, out, lambda format: in_format(matrix, format))
    shape = _input_shape(input_shape, 1, name)  # (C * prod(kernel), L)
    taps = math.prod(int_tuple(module.kernel_size, 2, "kernel_size", 1))
    if shape[0] % taps:
        raise ValueError(f"{name}(kernel_size={module.kernel_size}) needs input_shape[0] "
                         f"divisible by {taps} (C times the kernel's taps), got {shape}")
    out = (shape[0] // taps, *int_tuple(module.output_size, 2, "output_size", 1))
    patches = sc.im2col_matrix(out, module.kernel_size, **options)
    if patches.shape[0] != math.prod(shape):
        raise ValueError(f"{name}(output_size={module.output_size}, kernel_size="
                         f"{module.kernel_size}, ...) makes {patches.shape[0] // shape[0]} "
                         f"blocks, so input_shape must be ({shape[0]}, "
                         f"{patches.shape[0] // shape[0]}), got {shape}")
    matrix = patches.T.tocsr()
    return _Layer(name, shape, out, lambda format: in_format(matrix, format))


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


def _unflattened(module: nn.Unflatten, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape (without the batch) of ``module`` on ``shape``, as PyTorch's."""
    full = (1, *shape)
    dim = module.dim
    if not isinstance(dim, int) or not -len(full) <= dim < len(full) or dim % len(full) == 0:
        raise ValueError(f"Unflatten(dim={dim!r}) must name an axis of the input other than the "
                         f"batch, input_shape={shape}")
    dim %= len(full)
    sizes = [int(n) for n in module.unflattened_size]
    known = math.prod(n for n in sizes if n != -1)
    if sizes.count(-1) == 1 and known and full[dim] % known == 0:
        sizes[sizes.index(-1)] = full[dim] // known
    if math.prod(sizes) != full[dim] or min(sizes) < 1:
        raise ValueError(f"Unflatten(unflattened_size={tuple(module.unflattened_size)}) does "
                         f"not split axis {dim} of size {full[dim]}")
    return (*full[1:dim], *sizes, *full[dim + 1:])


def _reshape_layer(module, input_shape) -> _Layer:
    """Identity, an empty Sequential, Dropout (eval), Flatten and Unflatten: the identity on
    the flat (C order) vector."""
    name = type(module).__name__
    shape = _input_shape(input_shape, None, name)
    out = shape
    if isinstance(module, nn.Unflatten):
        out = _unflattened(module, shape)
    if isinstance(module, nn.Flatten):
        full = (1, *shape)
        start, end = (d % len(full) for d in (module.start_dim, module.end_dim))
        if start == 0 or end < start:
            raise ValueError(f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) "
                             "must keep the batch axis")
        out = (*full[1:start], math.prod(full[start:end + 1]), *full[end + 1:])
    n = math.prod(shape)
    return _Layer(name, shape, out, functools.partial(_identity, n, name),
                  None, lambda: spla.aslinearoperator(_identity(n, name, "csr")),
                  (np.ones((1, 1, 1)), (1, 1), {}), n)
