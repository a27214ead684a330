"""A BatchNorm folded into the convolution before it (:func:`fold_batchnorm`).

In eval mode a BatchNorm (SyncBatchNorm, InstanceNorm with running statistics) is the
per-channel affine map ``scale * x + shift``: after a convolution, the convolution with its
output channels scaled and a bias shifted, computed in float64.
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
    _RUNNING_NORMS,
    _refuse,
    check_module,
    is_parametrized,
    parameter,
    refuse_hooks,
)
from sparseconv._torch_layer_base import _numpy

__all__ = ["FoldedBatchNorm", "fold_batchnorm"]


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
    return _fold(conv, bn)


def _fold(conv: nn.Module, bn: nn.Module, dtype: torch.dtype | None = None) -> FoldedBatchNorm:
    """:func:`fold_batchnorm`, hooks or not (the report withholds its network bound instead);
    the module built in ``dtype`` (the convolution's by default: the report's rows ask for
    float64, where a float32 module would round the folded weights)."""
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
    module = factory(conv.in_channels, conv.out_channels, conv.kernel_size, **options)
    assert module.bias is not None  # built with bias=True
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))
    return FoldedBatchNorm(weight, bias, module.train(conv.training))
