"""Folds into a convolution: the BatchNorm after it (:func:`fold_batchnorm`), the padding
module before it (:func:`fold_padding`).

In eval mode a BatchNorm (SyncBatchNorm, InstanceNorm with running statistics) is the
per-channel affine map ``scale * x + shift``: after a convolution, the convolution with its
output channels scaled and a bias shifted, computed in float64. A padding module before a
convolution is the convolution's own padding, in its mode.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.fx
from torch import nn

from sparseconv._torch_fixed_layers import _batchnorm_scale_shift
from sparseconv._torch_kinds import (
    _CONV,
    _CONV_T,
    _NORM_RANKS,
    _PAD_MODES,
    _RUNNING_NORMS,
    _refuse,
    check_module,
    check_padding_copy,
    is_parametrized,
    parameter,
    refuse_hooks,
)
from sparseconv._torch_layer_base import _numpy
from sparseconv._typing import PaddingMode

__all__ = ["FoldedBatchNorm", "fold_batchnorm", "fold_padding"]


class FoldedBatchNorm(NamedTuple):
    """``bn(conv(x))`` as one convolution: its weight and bias, and the module.

    Attributes
    ----------
    weight, bias : numpy.ndarray
        The folded convolution's, float64 (the convolution's weight layout).
    module : torch.nn.Module
        A copy of the convolution holding them, in the convolution's dtype.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> conv, bn = torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3).eval()
    >>> folded = sct.fold_batchnorm(conv, bn)
    >>> folded.weight.shape, folded.bias.shape, type(folded.module).__name__
    ((3, 2, 3, 3), (3,), 'Conv2d')
    >>> x = torch.randn(1, 2, 5, 5)
    >>> bool(torch.allclose(folded.module(x), bn(conv(x)), atol=1e-5))
    True
    >>> folded  # doctest: +NORMALIZE_WHITESPACE
    FoldedBatchNorm(weight=<array (3, 2, 3, 3) float64>, bias=<array (3,) float64>,
                    module=Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1)))
    """

    weight: np.ndarray
    bias: np.ndarray
    module: nn.Module

    def __repr__(self) -> str:
        """The arrays by shape and dtype (a new user's trial: a page of entries for an
        8 x 3 x 4 x 4 weight), the module as torch prints it."""
        return (f"FoldedBatchNorm(weight=<array {self.weight.shape} {self.weight.dtype}>, "
                f"bias=<array {self.bias.shape} {self.bias.dtype}>, module={self.module!r})")


def fold_batchnorm(conv: nn.Module, bn: nn.Module) -> FoldedBatchNorm:
    """Fold an eval-mode BatchNorm into the convolution (or transposed convolution) before it.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel, ``bn(conv(x))`` is the
    convolution with weight ``s * W`` (scaled per output channel: ``W``'s first axis for a
    convolution, its second within each group for a transposed one, whose weight is ``(C_in,
    C_out/groups, *kernel)``) and bias ``s * (b - running_mean) + beta``.

    Parameters
    ----------
    conv : torch.nn.Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d or ConvTranspose3d
        (not a ``Linear``: a ``BatchNorm1d`` after it normalizes its output features on
        ``(N, features)`` inputs but axis 1 of ``(N, C, L)`` ones, which the modules do not
        tell apart)
    bn : torch.nn.BatchNorm1d/2d/3d, SyncBatchNorm, or InstanceNorm1d/2d/3d
        In eval mode, with running statistics (``track_running_stats=True``),
        ``num_features == conv.out_channels``: the same per-channel affine map.

    Returns
    -------
    FoldedBatchNorm
        ``(weight, bias, module)``: float64 numpy arrays, and a new convolution module (the
        conv's class, hyper-parameters, dtype and device) holding them.

    Raises
    ------
    TypeError
        ``conv`` or ``bn`` of another type, or ``bn`` of another rank than ``conv``
        (``BatchNorm1d`` after a ``Conv2d``), a BatchNorm without running statistics; a
        forward hook on either (as :func:`matrix`).
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
    for module, name in ((conv, "conv"), (bn, "bn")):
        check_module(module, name)
        refuse_hooks(module)
    _refuse(conv)  # (a subclass, a forward of its own: its code, not its arguments)
    return _fold(conv, bn)


def _fold(conv: nn.Module, bn: nn.Module, dtype: torch.dtype | None = None,
          features: bool = False) -> FoldedBatchNorm:
    """:func:`fold_batchnorm`, hooks or not (the report withholds its network bound instead);
    the module built in ``dtype`` (the convolution's by default: the report's rows ask for
    float64, where a float32 module would round the folded weights). ``features``: the
    caller knows that ``conv`` is a ``Linear`` called on ``(N, in_features)`` inputs, where
    a ``BatchNorm1d`` after it normalizes its output features (the report, from the traced
    shapes: a new user's trial found an MLP head's pair left as two rows)."""
    if isinstance(conv, nn.Linear) and features:
        return _fold_linear(conv, bn, dtype)
    if isinstance(conv, nn.Linear):  # BatchNorm1d on (N, C, L) normalizes C, not the features
        raise TypeError("conv must be a convolution: a BatchNorm1d after a Linear normalizes "
                        "the Linear's output features only on (N, features) inputs (on (N, C, "
                        "L) it normalizes C), which the modules alone do not say; fold it "
                        "yourself where that holds")
    if not isinstance(conv, (*_CONV, *_CONV_T)):
        raise TypeError(f"conv must be a Conv1d, Conv2d, Conv3d or a ConvTranspose of those, "
                        f"got {type(conv).__name__}")
    if not isinstance(bn, _RUNNING_NORMS):  # (a new user's trial: SyncBatchNorm refused)
        raise TypeError(f"bn must be a BatchNorm1d/2d/3d, a SyncBatchNorm or an "
                        f"InstanceNorm1d/2d/3d with running statistics, got "
                        f"{type(bn).__name__}")
    _refuse(bn)  # (training mode; an InstanceNorm without running statistics: not linear)
    rank = _NORM_RANKS.get(type(bn))  # (SyncBatchNorm: any)
    if rank is not None and rank != len(conv.kernel_size):  # PyTorch's forward refuses it
        raise TypeError(f"bn must be the normalization of the convolution's rank: "
                        f"{type(conv).__name__} takes {type(bn).__name__[:-2]}"
                        f"{len(conv.kernel_size)}d, got {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn.num_features={bn.num_features} must equal conv.out_channels="
                         f"{conv.out_channels}")
    scale, shift = _batchnorm_scale_shift(bn)
    weight, conv_bias = _numpy(parameter(conv, "weight")), parameter(conv, "bias")
    factory: Any = type(conv)  # torch's stubs type the sizes per rank; ours are checked tuples
    if is_parametrized(conv):  # the layer with the weight its parametrization computes: the
        factory = factory.__base__  # class torch.nn.utils.parametrize derived from (a review)
    options = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                   groups=conv.groups, bias=True, padding_mode=conv.padding_mode,
                   device=conv.weight.device, dtype=dtype or conv.weight.dtype)
    if isinstance(conv, _CONV_T):  # weight (C_in, C_out/g, *k): output channel g C_out/g + j
        g, spatial = conv.groups, weight.shape[2:]
        grouped = weight.reshape(g, -1, weight.shape[1], *spatial)
        weight = (grouped * scale.reshape(g, 1, -1, *([1] * len(spatial)))).reshape(weight.shape)
        options["output_padding"] = conv.output_padding
    else:  # weight (C_out, C_in/g, *k)
        weight = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    bias = shift + scale * (0.0 if conv_bias is None else _numpy(conv_bias))
    return _holding(factory(conv.in_channels, conv.out_channels, conv.kernel_size, **options),
                    weight, bias, conv.training)


def _fold_linear(linear: nn.Linear, bn: nn.Module, dtype: torch.dtype | None) -> FoldedBatchNorm:
    """``bn(linear(x))`` on ``(N, in_features)`` inputs as one ``Linear``: its rows scaled by
    ``s = gamma / sqrt(running_var + eps)``, its bias ``s * (b - running_mean) + beta``."""
    if not isinstance(bn, (nn.BatchNorm1d, nn.SyncBatchNorm)):
        raise TypeError(f"bn must be a BatchNorm1d (or SyncBatchNorm) after a Linear, got "
                        f"{type(bn).__name__}")
    _refuse(bn)
    if bn.num_features != linear.out_features:
        raise ValueError(f"bn.num_features={bn.num_features} must equal "
                         f"linear.out_features={linear.out_features}")
    scale, shift = _batchnorm_scale_shift(bn)
    weight, linear_bias = _numpy(parameter(linear, "weight")), parameter(linear, "bias")
    weight = weight * scale[:, None]
    bias = shift + scale * (0.0 if linear_bias is None else _numpy(linear_bias))
    return _holding(nn.Linear(linear.in_features, linear.out_features, bias=True,
                              device=linear.weight.device, dtype=dtype or linear.weight.dtype),
                    weight, bias, linear.training)


def _holding(module: Any, weight: np.ndarray, bias: np.ndarray,
             training: bool) -> FoldedBatchNorm:
    """A folded layer: ``module`` (built with a bias) given ``weight`` and ``bias``, in the
    mode of the layer it folds."""
    assert module.bias is not None  # built with bias=True
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))
    return FoldedBatchNorm(weight, bias, module.train(training))


def _pad_kind(pad: nn.Module) -> tuple[PaddingMode, int] | None:
    """A padding module's mode (``"zeros"`` for ``ConstantPad``'s any fill) and rank, or None
    for another module."""
    for cls, mode in _PAD_MODES.items():
        if isinstance(pad, cls):
            return mode, int(cls.__name__[-2])
    return None


def _own_padding(conv: nn.Module) -> list[tuple[int, int]]:
    """A convolution's zero padding per spatial axis, ``(lo, hi)``: ``"same"`` as PyTorch splits
    it (``total // 2`` before, the rest after), ``"valid"`` none."""
    module: Any = conv  # torch's stubs type padding as str | tuple
    if module.padding == "valid":
        return [(0, 0)] * len(module.kernel_size)
    if module.padding == "same":
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(int(p), int(p)) for p in module.padding]


def fold_padding(pad: nn.Module, conv: nn.Module) -> nn.Module:
    """A padding module and the convolution after it, ``conv(pad(x))``, as one convolution.

    ``nn.ReflectionPad2d(p)`` then ``nn.Conv2d(..., padding=0)`` is ``nn.Conv2d(...,
    padding=p, padding_mode="reflect")`` (PyTorch's convolution pads by the same ``F.pad``):
    one layer, whose certified norm is the padded convolution's, where the padding's norm
    times the unpadded convolution's is up to twice it (1.73-1.78x on CycleGAN's 3x3 and
    7x7 layers). ``ReplicationPad*d`` gives ``"replicate"``, ``CircularPad*d``
    ``"circular"``, ``ZeroPad*d`` and ``ConstantPad*d(value=0)`` zero padding, added to the
    convolution's own (as a replicate padding is to a replicate-padded convolution's). The
    same map (bit for bit, but where PyTorch's convolution pads zeros inside its kernel, whose
    rounding may differ from ``F.pad``'s then the convolution's).

    Parameters
    ----------
    pad : torch.nn.ZeroPad, ConstantPad, ReflectionPad, ReplicationPad or CircularPad (1d/2d/3d)
        Of the convolution's rank, padding both sides of each axis alike (a convolution
        pads them alike), without cropping; a ``ConstantPad`` with ``value=0``.
    conv : torch.nn.Conv1d, Conv2d or Conv3d
        Unpadded (``padding=0`` or ``"valid"``), or padded in the same mode after a zero or
        a replicate padding.

    Returns
    -------
    torch.nn.Module
        A new ``Conv1d``/``Conv2d``/``Conv3d`` with ``conv``'s weight, bias, stride,
        dilation and groups (its dtype and device), and the padding.

    Raises
    ------
    TypeError
        ``pad`` or ``conv`` of another type (a transposed convolution: a padding of its input
        is none of its own; a subclass, or a forward set on the instance, as :func:`matrix`
        refuses them), ``pad`` of another rank than ``conv``; a forward hook on either.
    ValueError
        A padding that crops (negative), pads the two sides of an axis differently, fills
        with another value than 0 (an affine map), or a convolution that pads too, where the
        two paddings are not both zeros or both replicate; a convolution whose padding was
        changed after construction in a mode other than zeros (PyTorch pads by its copy).

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> pad, conv = torch.nn.ReflectionPad2d(1), torch.nn.Conv2d(3, 4, 3)
    >>> folded = sct.fold_padding(pad, conv)
    >>> folded
    Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), padding_mode=reflect)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> bool(torch.equal(folded(x), conv(pad(x))))
    True
    """
    for module, name in ((pad, "pad"), (conv, "conv")):
        check_module(module, name)
        refuse_hooks(module)
    return _fold_padding(pad, conv)


def _fold_padding(pad: nn.Module, conv: nn.Module) -> nn.Module:
    """:func:`fold_padding`, hooks or not (the report reads them itself)."""
    kind = _pad_kind(pad)
    if kind is None:
        raise TypeError(f"pad must be a ZeroPad, ConstantPad, ReflectionPad, ReplicationPad or "
                        f"CircularPad (1d, 2d or 3d), got {type(pad).__name__}")
    if not isinstance(conv, _CONV):
        raise TypeError(f"conv must be a Conv1d, Conv2d or Conv3d (a padding before a "
                        f"transposed convolution is none of its own), got {type(conv).__name__}")
    # a subclass or a forward set on the instance computes what its code does, not what its
    # arguments say (a review: folded by the arguments, 2.9 off conv(pad(x)))
    _refuse(pad)
    _refuse(conv)
    check_padding_copy(conv)  # (a circular convolution's padding changed after construction)
    mode, rank = kind
    module: Any = conv  # torch's stubs type the sizes per rank; ours are checked tuples
    ndim = len(module.kernel_size)
    sides = tuple(int(p) for p in _untyped_padding(pad))
    if rank != ndim or len(sides) != 2 * ndim:
        raise TypeError(f"pad must be the padding of the convolution's rank: "
                        f"{type(conv).__name__} takes a {ndim}d padding of {2 * ndim} sides, "
                        f"got {type(pad).__name__} with padding={sides}")
    value = getattr(pad, "value", 0.0)
    if value != 0:
        raise ValueError(f"pad fills with value={value!r}: an affine map, no padding of a "
                         "convolution (which fills with zeros); fold_padding folds value=0")
    if min(sides) < 0:
        raise ValueError(f"pad crops (padding={sides}, negative): no padding of a convolution")
    # PyTorch's sides run last axis first: (left, right, top, bottom, ...)
    pairs = [(sides[2 * (ndim - 1 - i)], sides[2 * (ndim - 1 - i) + 1]) for i in range(ndim)]
    if not any(sides):  # pads nothing: the convolution as it is ("same" too)
        return _conv_copy(conv, module.padding, module.padding_mode)
    own = _own_padding(conv)
    if any(lo or hi for lo, hi in own) and not (
            mode == module.padding_mode and mode in ("zeros", "replicate")):
        # zeros after zeros, or replicate after replicate, is one padding of the sum; a
        # reflection or a wrap of a padded input reads other entries than one of the whole
        raise ValueError(f"conv pads too (padding={module.padding!r}, padding_mode="
                         f"{module.padding_mode!r}): a {mode!r} padding, then a "
                         f"{module.padding_mode!r} one, is no one convolution's padding (zeros "
                         "then zeros, or replicate then replicate, is)")
    total = [(a + c, b + e) for (a, b), (c, e) in zip(pairs, own)]
    uneven = next((i for i, (lo, hi) in enumerate(total) if lo != hi), None)
    if uneven is not None:
        raise ValueError(f"the padding before the convolution (pad.padding={sides}, with "
                         f"conv.padding={module.padding!r}) pads the two sides of spatial axis "
                         f"{uneven} differently, {total[uneven]}; a PyTorch convolution pads "
                         "both alike (sparseconv.conv_matrix takes padding=((lo, hi), ...))")
    return _conv_copy(conv, tuple(lo for lo, _ in total), mode)


def _conv_copy(conv: nn.Module, padding: Any, mode: PaddingMode) -> nn.Module:
    """A new torch ``Conv1d/2d/3d`` with ``conv``'s weight (as its next call computes it),
    bias and arguments, but ``padding`` and ``mode``, in its dtype, device and mode."""
    module: Any = conv
    weight, bias = parameter(conv, "weight"), parameter(conv, "bias")
    assert weight is not None  # every convolution has one
    factory: Any = _CONV[len(module.kernel_size) - 1]
    folded = factory(module.in_channels, module.out_channels, module.kernel_size,
                     stride=module.stride, padding=padding, dilation=module.dilation,
                     groups=module.groups, bias=bias is not None, padding_mode=mode,
                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(weight)
        if bias is not None:
            folded.bias.copy_(bias)
    return folded.train(conv.training)


def _untyped_padding(pad: nn.Module) -> tuple:
    """A padding module's ``padding`` tuple (torch's stubs type it per class)."""
    module: Any = pad
    return tuple(module.padding)
