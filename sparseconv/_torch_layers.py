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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.fx
from torch import nn

import sparseconv as sc
from sparseconv._caller import outside_level
from sparseconv._formats import in_format, repeated_block, repeated_block_bytes
from sparseconv._layout import channels_last_order
from sparseconv._matrices import format_bytes
from sparseconv._memory import check_memory, check_sparse_memory
from sparseconv._resampling import MODES as INTERPOLATION_MODES
from sparseconv._resampling import adaptive_output_size, interpolate_output_size
from sparseconv._shapes import output_padding_for
from sparseconv._torch_kinds import (
    _ADAPTIVE,
    _BATCHNORM,
    _CONV,
    _CONV_T,
    _PAD_MODES,
    _PATCHES,
    _POOL,
    _RESAMPLE,
    _RUNNING_NORMS,
    Interpolate,
    _refuse,
    _refuse_complex,
    parameter,
)
from sparseconv._typing import Layout, PaddingMode, SparseFormat
from sparseconv._validation import (
    as_weight,
    first_index,
    int_tuple,
    is_int,
    normalize_padding,
    positive_int,
    spatial_size,
)


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
    build: Callable[..., sp.sparray]                 # format -> the matrix
    # () -> the bias over the output, flat: built on first use (sized against the memory
    # limit), never for a matrix, an operator or a spectrum, which do not need it
    make_offset: Callable[[], np.ndarray] | None = None
    make_operator: Callable[..., spla.LinearOperator] | None = None
    conv: tuple[np.ndarray, tuple[int, ...], dict] | None = None  # weight, shape, kwargs
    repeat: int = 1  # the matrix is `repeat` copies of that convolution's, block-diagonally
    # build and make_operator take dtype=, layout= (and build blocksize=) themselves: the
    # array API's convolutions, which assemble any of them directly
    native: bool = False

    def matrix(self, format: SparseFormat = "csr", dtype: np.dtype | None = None,
               layout: Layout = "channels_first", blocksize: tuple[int, int] | None = None,
               ) -> sp.sparray:
        """The matrix in ``format``, ``dtype`` (``None``: float64) and ``layout``; the
        arguments checked by the caller (``_torch_module._matrix_options``)."""
        if self.native:
            return self.build(format, dtype=dtype, layout=layout, blocksize=blocksize)
        if dtype is None and layout == "channels_first" and blocksize is None:
            return self.build(format)
        a = sp.csr_array(self.build("csr"))
        if blocksize is not None and (a.shape[0] % blocksize[0] or a.shape[1] % blocksize[1]):
            raise ValueError(f"blocksize={blocksize} must divide the shape {a.shape} of the "
                             f"{self.name} matrix")
        # each conversion copies the matrix beside it, sized first (a review: float32 peaked
        # at 1.6x a limit the CSR matrix alone had passed)
        held = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
        what = f"the {a.shape[0]} x {a.shape[1]} matrix of {self.name}"
        if layout == "channels_last":  # P_out A P_in^T: two indexed copies, and the orders
            check_memory(3 * held + 8 * sum(a.shape), f"{what} in channels_last order",
                         "use the layer's operator")
            a = sp.csr_array(a[channels_last_order(self.output_shape)][
                :, channels_last_order(self.input_shape)])
        final = np.dtype(np.float64 if dtype is None else dtype)
        if dtype is not None:
            check_memory(held + format_bytes(a.nnz, a.shape, final, a.indices.dtype, "csr"),
                         f"{what} in {final}", "use the layer's operator")
            a = a.astype(dtype)
        if format != "csr" or blocksize is not None:
            check_memory(held + format_bytes(a.nnz, a.shape, final, a.indices.dtype, format),
                         f"{what} in {format.upper()}", "use the layer's operator")
        return in_format(a, format, blocksize)

    def operator(self, dtype: np.dtype | None = None, layout: Layout = "channels_first",
                 ) -> spla.LinearOperator:
        """The ``LinearOperator`` in ``dtype`` and ``layout``: matrix-free where the layer has
        one of its own (for the defaults, and always for the native ones), else the matrix's."""
        if self.native:
            assert self.make_operator is not None
            return self.make_operator(dtype=dtype, layout=layout)
        if dtype is not None or layout != "channels_first":
            return spla.aslinearoperator(self.matrix("csr", dtype, layout))
        if self.make_operator is not None:
            return self.make_operator()
        return spla.aslinearoperator(self.build("csr"))

    @functools.cached_property
    def offset(self) -> np.ndarray | None:
        """The bias over the output, flat (``None``: no bias), built once on first use."""
        if self.make_offset is None:
            return None
        self._check_offset_memory()
        return self.make_offset()

    def _check_offset_memory(self) -> None:
        check_memory(8 * math.prod(self.output_shape), f"the offset of {self.name} (a vector "
                     f"over its output shape {self.output_shape})")

    def offset_in(self, dtype: np.dtype | None = None, layout: Layout = "channels_first",
                  ) -> np.ndarray:
        """The affine offset (zeros where there is none) in ``dtype`` and ``layout``."""
        self._check_offset_memory()
        b = np.zeros(math.prod(self.output_shape)) if self.offset is None else self.offset
        if layout == "channels_last":
            b = b[channels_last_order(self.output_shape)]
        return b if dtype is None else b.astype(dtype)


def _repeated(values: np.ndarray, count: int) -> Callable[[], np.ndarray]:
    """``() -> np.repeat(values, count)``: a per-channel bias over the output, on demand."""
    return functools.partial(np.repeat, values, count)


def _identity(n: int, name: str, format: SparseFormat) -> sp.sparray:
    check_sparse_memory(n, n, np.float64, f"the {n} x {n} identity matrix of {name}")
    return sp.eye_array(n, format=format)


def _input_shape(input_shape, ndim: int | None, name: str) -> tuple[int, ...]:
    # the arrays' normalizer: ints only (8.5 or "388" is refused, never truncated); a 1-D
    # integer tensor (x.shape[1:] as a tensor) as its list
    if isinstance(input_shape, torch.Tensor) and input_shape.ndim == 1 and not (
            input_shape.is_floating_point() or input_shape.is_complex()):
        input_shape = input_shape.tolist()
    shape = spatial_size(input_shape, "input_shape")
    if ndim is not None and len(shape) != ndim + 1:
        want = f"(C, *spatial) with {ndim} spatial axes"
        # one axis too many: the batch, most likely (x.shape; an audit: trace says so,
        # this did not)
        batch = (f"; without the batch axis, input_shape={shape[1:]}"
                 if len(shape) == ndim + 2 else "")
        raise ValueError(f"input_shape must be {want} of positive ints for {name}, got "
                         f"{input_shape!r}{batch}")
    return shape



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
    if isinstance(module, tuple(_PAD_MODES)):
        return _pad_layer(module, input_shape)
    if isinstance(module, _RESAMPLE):
        return _resample_layer(module, input_shape)
    if isinstance(module, _PATCHES):
        return _patch_layer(module, input_shape)
    return _reshape_layer(module, input_shape)


def _padding_torch_applies(module) -> list[int]:
    """The padding a convolution's forward applies in a mode other than zeros: the copy
    ``_ConvNd.__init__`` makes of ``padding`` (PyTorch's "same" split, reversed axes, (lo, hi)
    each)."""
    ndim = len(module.kernel_size)
    pairs = normalize_padding(module.padding, ndim, tuple(module.kernel_size), (1,) * ndim,
                              tuple(module.dilation))
    return [side for pair in reversed(pairs) for side in pair]


def _conv_layer(module, input_shape) -> _Layer:
    name = type(module).__name__
    if module.padding_mode != "zeros" and [int(p) for p in getattr(
            module, "_reversed_padding_repeated_twice", [])] != _padding_torch_applies(module):
        # (a review: padding set after construction; PyTorch pads by its stale copy there)
        raise ValueError(f"{name}(padding_mode={module.padding_mode!r}) pads by "
                         f"{module._reversed_padding_repeated_twice} (its copy made at "
                         f"construction), not by its padding={module.padding!r}, changed since "
                         "then: build the module anew with the padding it should have")
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
    own = sc.conv_transpose_output_shape(input_shape[1:], conv.kernel_size, conv.stride,
                                         conv.padding, conv.output_padding, conv.dilation)
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
    instance = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
    ndim = (_BATCHNORM.index(type(module)) + 1 if type(module) in _BATCHNORM else
            instance.index(type(module)) + 1 if type(module) in instance else None)
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
