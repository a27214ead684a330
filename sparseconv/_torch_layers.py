"""PyTorch modules translated into sparseconv layers, once: the core of :mod:`sparseconv.torch`.

:func:`_layer` reads a module's weights (as float64 numpy copies) and hyper-parameters and
returns a :class:`_Layer`: its input and output shapes, a builder of its ``scipy.sparse``
matrix, a ``LinearOperator`` (matrix-free where sparseconv has one: convolutions, transposed
convolutions, ``nn.Linear``), its affine offset (the bias broadcast over the output) and, where
the module is a convolution in disguise, the weight and arguments that sparseconv's certified
spectra take. Every public function of the adapter starts from that one description, so a
module is translated in one place; which modules are linear is
:mod:`sparseconv._torch_kinds`'s to say (:func:`sparseconv._torch_kinds._refuse`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from torch import nn

import sparseconv as sc
from sparseconv._formats import in_format, repeated_block, repeated_block_bytes
from sparseconv._matrices import format_bytes
from sparseconv._memory import check_memory
from sparseconv._shapes import output_padding_for
from sparseconv._torch_fixed_layers import (
    _batchnorm_layer,
    _pad_layer,
    _patch_layer,
    _pool_layer,
    _resample_layer,
    _reshape_layer,
)
from sparseconv._torch_kinds import (
    _CONV,
    _CONV_T,
    _PADS,
    _PATCHES,
    _POOL,
    _RESAMPLE,
    _RUNNING_NORMS,
    _refuse,
    _refuse_complex,
    check_padding_copy,
    parameter,
)
from sparseconv._torch_layer_base import _input_shape, _Layer, _numpy, _repeated
from sparseconv._validation import (
    is_int,
    spatial_size,
)


def _layer(module: nn.Module, input_shape: Sequence[int], output_size=None) -> _Layer:
    _refuse(module)
    _refuse_complex(module)
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
    if isinstance(module, _RUNNING_NORMS):
        return _batchnorm_layer(module, input_shape)
    if isinstance(module, _PADS):
        return _pad_layer(module, input_shape)
    if isinstance(module, _RESAMPLE):
        return _resample_layer(module, input_shape)
    if isinstance(module, _PATCHES):
        return _patch_layer(module, input_shape)
    return _reshape_layer(module, input_shape)


def _conv_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    check_padding_copy(module)
    shape = _input_shape(input_shape, len(module.kernel_size), name)
    weight, bias = _numpy(parameter(module, "weight")), parameter(module, "bias")
    kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                  groups=module.groups, padding_mode=module.padding_mode)
    geometry = sc.ConvGeometry.from_weight(weight.shape, shape, **kwargs)
    out = geometry.output_shape
    offset = None if bias is None else _repeated(_numpy(bias), math.prod(out[1:]))
    return _Layer(name, shape, out,
                  lambda format, **kw: sc.conv_matrix(weight, shape, format=format, **kw,
                                                      **kwargs),
                  offset, lambda **kw: sc.ConvOperator(weight, shape, **kw, **kwargs),
                  (weight, shape, kwargs), native=True)


def called_output_size(module: nn.Module, input_shape: Sequence[int],
                       output_shape: Sequence[int]) -> tuple[int, ...] | None:
    """A transposed convolution's output size where the call asked for one (``output_size=``,
    the size traced), ``None`` where the module's own ``output_padding`` gave it: that may
    reach ``dilation - 1``, beyond the ``stride - 1`` an ``output_size`` may add (a review:
    ``ConvTranspose1d(stride=1, dilation=2, output_padding=1)`` was refused; a new user's
    trial: the command line's ``--model --layer`` refused it by the same ``output_size``)."""
    if not isinstance(module, _CONV_T):
        return None
    traced = tuple(output_shape[1:])
    conv: Any = module  # (torch's stubs type padding as str | tuple for every module)
    try:
        own = sc.conv_transpose_output_shape(input_shape[1:], conv.kernel_size, conv.stride,
                                             conv.padding, conv.output_padding, conv.dilation)
    except ValueError:  # its own output would be empty: only the call's output_size makes
        return traced  # one (a review: lipschitz_report and lipschitz_bounds refused it)
    return None if tuple(own) == traced else traced


def _transpose_output_padding(module, shape, output_size) -> tuple[int, ...]:
    """The output_padding PyTorch derives from ``module(x, output_size=...)`` (which may give
    the channel size, and the batch size of a batched input, too: the last ``ndim`` are the
    spatial ones; PyTorch takes ``ndim + 1`` for an unbatched input, ``ndim + 2`` for a
    batched one, and ``input_shape`` here is either)."""
    ndim = len(module.kernel_size)
    if is_int(output_size):  # (a new user's trial: taken as every spatial size, where
        # PyTorch's call refuses it: "object of type 'int' has no len()")
        raise TypeError(f"output_size must be a sequence of ints, as {type(module).__name__}'s "
                        f"call takes it (PyTorch refuses one int), got {output_size!r}")
    given = spatial_size(output_size, "output_size")  # ints only, as PyTorch's
    if len(given) not in (ndim, ndim + 1, ndim + 2):
        raise ValueError(f"output_size must have {ndim} (spatial), {ndim + 1} (channels, "
                         f"spatial) or {ndim + 2} (batch, channels, spatial) elements for "
                         f"{type(module).__name__}, as in PyTorch, got {output_size!r}")
    return output_padding_for(given, shape[1:], module.kernel_size, module.stride,
                              module.padding, module.dilation, channels=module.out_channels)


def _conv_transpose_layer(module, input_shape, output_size) -> _Layer:
    name = type(module).__name__
    if module.padding_mode != "zeros":  # PyTorch itself refuses this at construction
        raise ValueError(f"{name} supports padding_mode='zeros' only, got "
                         f"{module.padding_mode!r}")
    shape = _input_shape(input_shape, len(module.kernel_size), name)
    weight, bias = _numpy(parameter(module, "weight")), parameter(module, "bias")
    output_padding = (module.output_padding if output_size is None
                      else _transpose_output_padding(module, shape, output_size))
    kwargs = dict(stride=module.stride, padding=module.padding, output_padding=output_padding,
                  dilation=module.dilation, groups=module.groups)
    out_size = sc.conv_transpose_output_shape(shape[1:], module.kernel_size, module.stride,
                                              module.padding, output_padding, module.dilation)
    out = (module.out_channels, *out_size)
    offset = None if bias is None else _repeated(_numpy(bias), math.prod(out_size))
    # its matrix is the adjoint of a convolution from `out` with the same weight, when that
    # convolution's output is `shape` (output_padding < stride); the spectra are the same
    adjoint_kwargs = dict(stride=module.stride, padding=module.padding,
                          dilation=module.dilation, groups=module.groups)
    back = sc.conv_output_shape(out_size, module.kernel_size, module.stride, module.padding,
                                module.dilation)
    conv = (weight, out, adjoint_kwargs) if tuple(back) == shape[1:] else None
    return _Layer(name, shape, out,
                  lambda format, **kw: sc.conv_transpose_matrix(weight, shape, format=format,
                                                                **kw, **kwargs),
                  offset, lambda **kw: sc.ConvTransposeOperator(weight, shape, **kw, **kwargs),
                  conv, native=True)


def _linear_layer(module, input_shape) -> _Layer:
    shape = _input_shape(input_shape, None, "Linear")
    if shape[-1] != module.in_features:
        raise ValueError(f"input_shape[-1] must equal in_features={module.in_features} for "
                         f"Linear, got input_shape={shape}")
    weight, bias = _numpy(parameter(module, "weight")), parameter(module, "bias")
    lead = math.prod(shape[:-1])
    out = (*shape[:-1], module.out_features)
    offset = None if bias is None else functools.partial(np.tile, _numpy(bias), lead)

    def build(format):
        # kron(I_lead, W) (sparseconv._formats.repeated_block); W's own CSR: about 40 bytes
        # per nonzero (scipy's conversion of the dense weight)
        nonzero = int(np.count_nonzero(weight))
        nnz = lead * nonzero
        index = np.int32 if max(nnz, math.prod(shape)) < 2**31 else np.int64
        size = (math.prod(out), math.prod(shape))
        # (and the copy another format is converted to, beside the CSR arrays: a review)
        converted = 0 if format == "csr" else format_bytes(nnz, size, np.float64, index, format)
        check_memory(40 * nonzero + repeated_block_bytes(nonzero, lead, size[0], np.float64)
                     + converted,
                     f"the {size[0]} x {size[1]} matrix of Linear (its weight on each of "
                     f"{lead} rows, {nnz} nonzeros; {format.upper()}, with the temporaries of "
                     "its assembly)", "use the layer's operator")
        return in_format(repeated_block(sp.csr_array(weight), lead, np.float64), format)

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


