"""One PyTorch module as a matrix, an operator, an affine map, spectra, or a folded BatchNorm.

The public functions of :mod:`sparseconv.torch` that take one module: each translates it with
:func:`sparseconv._torch_layers._layer` and hands the result to the array API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.fx
from torch import nn

import sparseconv as sc
from sparseconv._certificates import dense_upper
from sparseconv._formats import repeated_block
from sparseconv._memory import check_memory
from sparseconv._norm_result import scaled_result
from sparseconv._rounding import Rounding, U, down, up
from sparseconv._spectra import dense_is_affordable
from sparseconv._spectral_norm import (
    DEFAULT_TOL,
    _spectral_norm,
    checked_options,
    checked_relative_width,
    lanczos_tol,
    width_missed,
)
from sparseconv._spectral_norms import warn_missed
from sparseconv._symbol import unit_scale
from sparseconv._torch_kinds import (
    _CONV,
    _CONV_T,
    _NORM_RANKS,
    _RUNNING_NORMS,
    _refuse,
    check_module,
    check_module_layout,
    is_parametrized,
    parameter,
    refuse_hooks,
)
from sparseconv._torch_layers import _batchnorm_scale_shift, _input_shape, _Layer, _layer, _numpy
from sparseconv._typing import BlockSize, DTypeLike, Layout, SparseFormat
from sparseconv._validation import check_blocksize, check_format, inexact_dtype


def _hookless_layer(module: nn.Module, input_shape: Sequence[int], output_size=None) -> _Layer:
    """:func:`_layer` of a module whose output no hook changes (:func:`refuse_hooks`); a
    TorchScript one as :func:`_eager_leaf` rebuilds it."""
    check_module(module, "module")
    module = _eager_leaf(module, input_shape, output_size)
    refuse_hooks(module)
    return _layer(module, input_shape, output_size)


def _eager_leaf(module: nn.Module, input_shape: Sequence[int], output_size) -> nn.Module:
    """``module``, or for a TorchScript module (``torch.jit.script``, ``trace`` or ``load``)
    of one call of a module PyTorch ships -- a scripted ``Conv2d`` -- that eager module,
    rebuilt from its graph's operations as :func:`lipschitz_report` reads a TorchScript model
    (:func:`sparseconv._torch_script.script_calls`: run once on a probe, checked against it).
    A new user's trial: ``matrix(torch.jit.script(conv), shape)`` was refused as "not a linear
    module", where the report of the same scripted model read it."""
    if not isinstance(module, torch.jit.ScriptModule):
        return module
    from sparseconv._torch_script import (
        magnitude,
        matches,
        probe_input,
        restored_buffers,
        script_calls,
    )

    name = str(getattr(module, "original_name", type(module).__name__))
    shape = _input_shape(input_shape, None, name)
    if output_size is not None:
        raise TypeError(f"output_size cannot be passed to a TorchScript {name}: its graph is "
                        "run as it is; pass the eager module")
    records, _ = script_calls(module, shape)
    probe = probe_input(module, shape)  # what script_calls ran the graph on
    with torch.no_grad(), restored_buffers(module):
        output = module(probe)
    if not records:  # no operation on the signal: the identity if it returns its input
        # (a scripted Identity, or Dropout in eval mode), checked on the probe
        if isinstance(output, torch.Tensor) and torch.equal(output, probe):
            return nn.Identity()
        raise TypeError(f"TorchScript {name} computes its output through no layer's call "
                        "sparseconv.torch reads from its graph" + (
                            ": it is in training mode, call .eval() on it first"
                            if module.training else ""))
    # one call, reading the module's input as it is and giving its output (a review: a
    # forward relu(conv(x)) * 2 + x was taken for its conv, 3.0 off on the probe)
    _, layer, x, y = records[0] if len(records) == 1 else (None, None, None, None)
    if layer is None or not (isinstance(x, torch.Tensor) and torch.equal(x, probe)
                             and matches(y, output, magnitude(layer, x))):
        raise TypeError(f"TorchScript {name} is not one layer: its forward runs "
                        f"{len(records)} layers' calls"
                        + (" and more on its signal" if len(records) == 1 else "")
                        + "; sparseconv.torch.network_operator(model, input_shape) makes one "
                        "operator of a linear network, and lipschitz_report(model, "
                        "input_shape) bounds each of its layers")
    return layer


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
def matrix(module: nn.Module, input_shape: Sequence[int], *, format: SparseFormat = "csr",
           dtype: DTypeLike | None = None, layout: Layout = "channels_first",
           blocksize: BlockSize | None = None,
           output_size: Sequence[int] | None = None) -> sp.sparray:
    """The matrix of a linear module on inputs of shape ``input_shape`` (the bias left out).

    Parameters
    ----------
    module : torch.nn.Module
        A supported linear module (see :mod:`sparseconv.torch`), in eval mode where it matters;
        or a TorchScript module of one (scripted, traced or loaded), rebuilt from its graph
        as :func:`lipschitz_report` reads one.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch (``(*lead, in_features)`` for ``nn.Linear``),
        whatever the ``layout``.
    format : {"csr", "csc", "coo", "bsr"}
    dtype : {None, float32, float64, complex64, complex128}, optional
        The matrix's dtype. ``None`` (the default): float64 whatever the module's dtype (a
        float32, float16 or bfloat16 module's weights widen exactly), as :func:`operator` is;
        the array functions keep a float32 weight's dtype instead
        (``sparseconv.conv_matrix(conv.weight.detach().numpy(), ...)`` is float32). numpy's
        names or torch's (``torch.float32``).
    layout : {"channels_first", "channels_last"}
        The order of the flattened input and output, as in :func:`sparseconv.conv_matrix`:
        ``(C, *spatial)`` (PyTorch's) or ``(*spatial, C)``: ``P_out A P_in^T``
        (``torch.channels_last`` and ``torch.channels_last_3d`` name the latter). Only for
        modules between ``(C, *spatial)`` activations (not ``nn.Linear``, ``Flatten``,
        ``Unflatten``, ``Unfold``, ``Fold``).
    blocksize : (int, int), optional
        With ``format="bsr"``: the block shape (a convolution's default: its natural block, as
        in :func:`sparseconv.conv_matrix`; another module's: scipy's). It must divide the
        matrix's shape.
    output_size : tuple of int, optional
        For ``nn.ConvTranspose*d`` only: the ``output_size`` passed at call time: the
        spatial sizes, or with the channels before them (an unbatched input's
        ``y.size()``), or with the batch and channels (a batched input's); a channel entry
        must be ``out_channels`` (PyTorch ignores it).

    Returns
    -------
    scipy.sparse array, shape (prod(output_shape), prod(input_shape))
        ``matrix @ x.ravel() + bias == module(x[None])[0].ravel()`` (see :func:`affine`), both
        flattened in ``layout``. A convolution's is assembled in ``dtype`` and ``layout``
        directly; another module's (a small selection, averaging or diagonal matrix) is built
        in float64 and permuted and cast.

    Raises
    ------
    TypeError
        A module that is not linear or not supported, named; a module with a forward hook or
        pre-hook, or while a global one is registered (a hook can change what the module
        returns; the weight recomputation of ``torch.nn.utils.weight_norm`` and
        ``spectral_norm``'s old-style hooks is read as the next call computes it).
        A ``dtype`` that is not float or complex (an integer one would truncate the weights).
    ValueError
        A module in training mode where that matters (``BatchNorm``, ``Dropout``, a spectral
        normalisation), a bad ``input_shape``, ``output_size``, ``format``, ``layout`` or
        ``blocksize``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv.torch as sct
    >>> conv = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([[[1.0, 2.0, 3.0]]]))
    >>> sct.matrix(conv, (1, 4)).toarray()
    array([[2., 3., 0., 0.],
           [1., 2., 3., 0.],
           [0., 1., 2., 3.],
           [0., 0., 1., 2.]])

    Channels last, in float32, as a BSR array of ``(C_out, C_in)`` blocks:

    >>> conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    >>> a = sct.matrix(conv, (4, 6, 6), format="bsr", dtype=np.float32, layout="channels_last")
    >>> a.dtype, a.blocksize
    (dtype('float32'), (8, 4))
    >>> x = torch.randn(1, 4, 6, 6)
    >>> y = a @ x[0].permute(1, 2, 0).numpy().ravel()      # (H, W, C) order in and out
    >>> bool(np.allclose(y, (conv(x) - conv.bias[:, None, None])[0].permute(1, 2, 0)
    ...                  .detach().numpy().ravel(), atol=1e-5))
    True
    """
    options = _matrix_options(module, format, dtype, layout, blocksize)
    return _hookless_layer(module, input_shape, output_size).matrix(format, *options)


def _matrix_options(module: nn.Module, format: Any, dtype: Any, layout: Any, blocksize: Any,
                    ) -> tuple[np.dtype | None, Layout, tuple[int, int] | None]:
    """``dtype``, ``layout`` and ``blocksize`` checked for ``module`` (and ``format``), before
    anything is read or built."""
    check_format(format)
    if isinstance(dtype, torch.dtype):  # torch's name for it (a new user's trial: refused)
        if not (dtype.is_floating_point or dtype.is_complex) or dtype.itemsize < 4:
            raise TypeError(f"dtype must be float32, float64, complex64 or complex128 (numpy's "
                            f"or torch's), got {dtype}")
        dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if layout is torch.channels_last or layout is torch.channels_last_3d:  # (torch's memory
        layout = "channels_last"  # format, named by its flattening order here)
    return (inexact_dtype(dtype), check_module_layout(module, layout),
            check_blocksize(blocksize, format))


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
def operator(module: nn.Module, input_shape: Sequence[int], *,
             dtype: DTypeLike | None = None, layout: Layout = "channels_first",
             output_size: Sequence[int] | None = None) -> spla.LinearOperator:
    """The linear part of a module as a ``LinearOperator``, with its adjoint.

    Matrix-free for convolutions (:class:`sparseconv.ConvOperator`) and transposed
    convolutions (:class:`sparseconv.ConvTransposeOperator`), in any ``dtype`` and ``layout``
    (their ``matmat`` takes and returns columns flattened in it), and for ``nn.Linear`` in
    float64; the other modules (and ``nn.Linear`` in another ``dtype``) wrap their (small,
    diagonal or selection) sparse matrix. Arguments and errors as :func:`matrix`; ``dtype=None``
    is float64.

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
    dtype, layout, _ = _matrix_options(module, "csr", dtype, layout, None)
    return _hookless_layer(module, input_shape, output_size).operator(dtype, layout)


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
def affine(module: nn.Module, input_shape: Sequence[int], *,
           dtype: DTypeLike | None = None, layout: Layout = "channels_first",
           output_size: Sequence[int] | None = None) -> sc.AffineMap:
    """The module as the :class:`sparseconv.AffineMap` ``x -> A x + b``, bias included.

    ``b`` is the bias broadcast over the output (a convolution's per channel, a BatchNorm's
    shift, a ``ConstantPad``'s fill value); zero for a module without one. ``A`` is the CSR
    :func:`matrix`; arguments as there, ``b`` in the same ``dtype`` and ``layout``.

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
    dtype, layout, _ = _matrix_options(module, "csr", dtype, layout, None)
    layer = _hookless_layer(module, input_shape, output_size)
    # (the matrix is new; the offset may be the layer's own, which stays writable: a copy)
    return sc.AffineMap._fresh(layer.matrix("csr", dtype, layout),
                               layer.offset_in(dtype, layout).copy())


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
def spectral_norm(module: nn.Module, input_shape: Sequence[int], *,
                  output_size: Sequence[int] | None = None, **kwargs: Any) -> sc.SpectralNorm:
    """The spectral norm of a module's matrix, with a certified interval.

    Convolutions, transposed convolutions (through their adjoint convolution), ``nn.Linear``
    (its weight, a 1x1 convolution), BatchNorm (a depthwise 1x1 convolution) and average pooling
    without ``ceil_mode`` or excluded padding go to :func:`sparseconv.spectral_norm`; ``kwargs``
    (``method``, ``tol``, ``relative_width``, ``executor``, ``progress``) are passed on, any
    other keyword is refused (as is ``method="exact"`` for circular padding that is not
    periodic on a layer neither 1x1 nor small, which :func:`sparseconv.spectral_norm` refuses;
    :func:`lipschitz_report` takes the default route for such a layer instead). The other
    modules (padding, interpolation, the remaining pooling layers) are bounded from their
    explicit matrix -- on one channel where the module acts on each alike -- with the same
    ``method`` and ``tol``: a dense SVD certified by a Cholesky factorization where that is
    affordable (method ``"dense"``, as ``"auto"`` chooses it); else ARPACK's top singular vector
    to ``tol`` below and ``sqrt(||A||_1 ||A||_inf)`` above (exact for a padding, whose ``A^T A``
    is diagonal; method ``"bounds"``, with ``bounds["schur"]``, ``converged`` saying whether
    ARPACK met ``tol``), both widened for rounding.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> conv = torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular")
    >>> r = sct.spectral_norm(conv, (2, 8, 8))
    >>> r.method, bool(r.lower <= r.value <= r.upper)
    ('fft', True)
    """
    # one module: method="exact" refused where it does not apply, as the arrays refuse it
    return _layer_norm(_hookless_layer(module, input_shape, output_size), strict=True, **kwargs)


#: The options :func:`spectral_norm` passes on (those of :func:`sparseconv.spectral_norm`).
_OPTIONS = ("method", "tol", "relative_width", "executor", "progress")


def _layer_norm(layer: _Layer, strict: bool = False, label: str = "spectral_norm",
                **kwargs: Any) -> sc.SpectralNorm:
    """A layer's certified norm; ``strict=False`` (a network's layers): ``method="exact"``
    becomes ``"auto"`` where it does not apply (:func:`_layer_options`). A
    ``relative_width`` missed is warned of, led by ``label``."""
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"spectral_norm() got an unexpected keyword argument {unknown[0]!r}; "
                        f"it passes {', '.join(_OPTIONS)} to sparseconv.spectral_norm")
    if layer.conv is None:
        result, missed = _matrix_norm(_one_channel(layer.build("csr"), layer.input_shape[0]),
                                      **kwargs)
    else:
        weight, shape, conv_kwargs = layer.conv
        result, missed = _spectral_norm(weight, shape, **conv_kwargs,
                                        **(kwargs if strict else _layer_options(layer, kwargs)))
    warn_missed(missed, label)
    return result


def _layer_options(layer: _Layer, kwargs: dict) -> dict:
    """``spectral_norm``'s options for a convolution ``layer``: ``method="exact"`` becomes
    ``"auto"`` for circular padding that is not periodic (no whole-Gram proof there: its reads
    wrap around the grid)."""
    assert layer.conv is not None
    weight, shape, conv_kwargs = layer.conv
    if kwargs.get("method") == "exact":
        from sparseconv._spectral_norm import applicable_method

        geom = sc.ConvGeometry.from_weight(weight.shape, shape, **conv_kwargs)
        return {**kwargs, "method": applicable_method("exact", geom)}
    return kwargs


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
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
    layer = _hookless_layer(module, input_shape, output_size)
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


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
def symbol(module: nn.Module, input_shape: Sequence[int], *, executor: Any = None,
           progress: Any = None) -> np.ndarray:
    """The per-frequency matrices of a periodic convolution module (:func:`sparseconv.symbol`).

    A circular layer is block-diagonalized by the discrete Fourier transform: its symbol is
    that block at every frequency of the grid. It exists for ``nn.Conv1d/2d/3d`` with
    ``padding_mode="circular"`` and a padding of total ``dilation * (kernel_size - 1)`` per
    axis (``padding="same"``, or ``(k - 1) // 2`` for an odd ``k``), on spatial sizes its
    stride divides; another module has a matrix (:func:`matrix`) but no symbol.

    Parameters
    ----------
    module : torch.nn.Conv1d, Conv2d or Conv3d
        With ``padding_mode="circular"`` (the bias is left out: the symbol is the linear
        part's).
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.
    executor, progress
        As :func:`sparseconv.symbol`.

    Returns
    -------
    numpy.ndarray
        Complex, shape ``(*grid, C_out, C_in * prod(stride))`` with ``grid = n // stride``
        (block diagonal over groups): :func:`sparseconv.symbol` of the module's weight
        (float64) and arguments, so that ``y^(xi) = H[xi] @ x^(xi)`` for the DFTs of the
        output and of the input's polyphase components; its singular values over every
        frequency are the module's.

    Raises
    ------
    TypeError
        A module that is no convolution (a transposed convolution, a pooling, a padding...).
    ValueError
        A convolution that is not periodic (``padding_mode`` other than ``"circular"``, or a
        circular padding of another total), a size its stride does not divide, or an
        ``input_shape`` that does not fit the module.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> conv = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    >>> H = sct.symbol(conv, (2, 8, 8))
    >>> H.shape  # 8 x 8 frequencies, a 3 x 2 block each
    (8, 8, 3, 2)
    >>> top = np.linalg.svd(H, compute_uv=False).max()
    >>> bool(np.isclose(top, sct.spectral_norm(conv, (2, 8, 8)).value, rtol=1e-12))
    True
    """
    layer = _hookless_layer(module, input_shape)
    name = type(module).__name__
    if layer.conv is None or not isinstance(module, _CONV):
        raise TypeError(f"symbol: {name} is no convolution; the symbol exists for nn.Conv1d/2d/3d "
                        "with padding_mode='circular' (sparseconv.torch.matrix gives any "
                        "supported module's matrix)")
    weight, shape, kwargs = layer.conv
    if kwargs["padding_mode"] != "circular":
        raise ValueError(f"symbol: {name}(padding_mode={kwargs['padding_mode']!r}) is not "
                         "periodic; the symbol describes a layer with padding_mode='circular' "
                         "and padding='same' (its certified norm is "
                         "sparseconv.torch.spectral_norm; the symbol of the same kernel made "
                         "periodic is sparseconv.symbol(weight, input_size, ...))")
    try:
        return sc.symbol(weight, shape[1:], stride=kwargs["stride"], padding=kwargs["padding"],
                         dilation=kwargs["dilation"], groups=kwargs["groups"],
                         executor=executor, progress=progress)
    except ValueError as exc:  # named as the module's: its padding, stride or size
        if any(n % s for n, s in zip(shape[1:], module.stride)):
            raise ValueError(f"symbol: {name}: {exc}") from exc
        # (a new user's trial: the arrays' advice, padding=None, which no nn.Conv takes, and
        # "axis 0" for the first spatial axis)
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        if all(t % 2 == 0 for t in totals):
            fix = f"padding={tuple(t // 2 for t in totals)}"
        elif all(st == 1 for st in module.stride):
            fix = "padding='same'"
        else:
            fix = ("no padding an nn.Conv takes (an even kernel at a stride: PyTorch's 'same' "
                   "split needs stride 1); sparseconv.symbol(weight, input_size, stride=..., "
                   "padding=None) gives that periodic layer's symbol")
        raise ValueError(f"symbol: {name}(padding={module.padding!r}, padding_mode='circular') "
                         f"on {tuple(shape)} is not the periodic layer, which pads each spatial "
                         f"axis by dilation*(kernel_size-1) in all, {tuple(totals)}: pass "
                         f"{fix}") from exc


def _one_channel(a: sp.csr_array, channels: int) -> sp.csr_array:
    """``B`` where ``A = I_channels (x) B`` exactly (a module that acts on each channel alike:
    padding, pooling, interpolation), whose norm is ``A``'s at a ``channels``-th of the size;
    else ``A``."""
    rows, cols = a.shape
    if channels < 2 or rows % channels or cols % channels:
        return a
    block = sp.csr_array(a[:rows // channels, :cols // channels])
    whole = repeated_block(block, channels, a.dtype)
    return block if whole.shape == a.shape and (whole != a).nnz == 0 else a


def _matrix_norm(a: sp.sparray, method: str = "auto", tol: float | None = None,
                 relative_width: float | None = None, executor: Any = None,
                 progress: Any = None) -> tuple[sc.SpectralNorm, str | None]:
    """A certified interval for ``||A||_2`` from an explicit sparse matrix (a module that is
    no convolution: padding, interpolation, the remaining pooling layers), and why it is
    wider than ``relative_width`` (``None``: it is not; as
    :func:`sparseconv._spectral_norm._spectral_norm`).

    ``method``, ``tol`` and ``relative_width`` as :func:`sparseconv.spectral_norm` (which
    only tightens ``tol`` here: no whole-Gram certificate; ``executor`` and ``progress`` are
    accepted for the same signature; nothing here runs in parallel):

    * ``"dense"`` (``"auto"`` and ``"exact"`` where
      :func:`sparseconv._spectra.dense_is_affordable`): LAPACK's top singular pair of the
      explicit matrix, the upper bound certified by a Cholesky factorization
      (:func:`sparseconv._certificates.dense_upper`);
    * ``"bounds"`` (the rest): ARPACK's top singular vector to ``tol`` below, and
      ``sqrt(||A||_1 ||A||_inf)`` above (exact for a padding, whose ``A^T A`` is diagonal;
      ``bounds["schur"]``); ``converged`` says whether ARPACK met ``tol``;
    * ``"upper"``: the Schur bound alone, with one quotient below.

    A module that acts on every channel alike is bounded on one channel (:func:`_one_channel`:
    ``A = I (x) B`` checked entry by entry, ``||A|| = ||B||``). The matrix's entries are the
    layer's rounded (a pooling's ``1/9``): each is within ``u`` of the exact one, so the
    computed matrix is within ``u || |A| ||`` of the layer, an allowance taken off the lower
    bound and added to the upper one.
    """
    method, tol = checked_options(method, DEFAULT_TOL if tol is None else tol)
    relative_width = checked_relative_width(relative_width, method)
    tol = lanczos_tol(tol, relative_width)
    result = _matrix_bounds(a, method, tol)
    return result, width_missed(result, relative_width, tol, [
        "a bound from the module's explicit matrix, with no whole-Gram certificate"])


def _matrix_bounds(a: sp.sparray, method: str, tol: float) -> sc.SpectralNorm:
    """:func:`_matrix_norm`'s interval, its options checked."""
    if method == "fft":
        raise ValueError("method='fft' needs a periodic convolution; this module's matrix is "
                         "bounded by method 'auto', 'dense', 'bounds', 'upper' or 'exact'")
    a = sp.csr_array(a, dtype=np.float64)
    if not a.data.any():
        return sc.SpectralNorm(0.0, 0.0, 0.0, "zero", {"zero": 0.0})
    # scaled by a power of two to the largest entry in [1/2, 1), exactly, and the results
    # scaled back: unscaled, the sums and norms of a layer of 1e-170 underflow to zero (and
    # its bounds with them), those of 1e160 overflow
    data, exponent = unit_scale(a.data)
    a = sp.csr_array((data, a.indices, a.indptr), shape=a.shape)
    return scaled_result(_unit_bounds(a, method, tol), exponent, tol)


def _unit_bounds(a: sp.csr_array, method: str, tol: float) -> sc.SpectralNorm:
    """:func:`_matrix_bounds` of a nonzero matrix whose largest entry is in ``[1/2, 1)``."""
    absolute = abs(a)
    longest = int(max(np.diff(a.indptr).max(), np.diff(a.tocsc().indptr).max()))
    rounding = Rounding(0.0, 0.0, float(absolute.sum(axis=1).max()),
                        float(absolute.sum(axis=0).max()), longest)
    schur = up(rounding.abs_norm, longest + 4)  # the sums' and the square root's rounding
    entries = up(U * schur)  # the entries' own rounding: || |A - A^| || <= u || |A| ||
    size = max(a.shape)

    def quotient(v: np.ndarray) -> float:
        return down(rounding.quotient_lower(float(np.linalg.norm(a @ v)),
                                            float(np.linalg.norm(v)), size) - entries)

    if method == "dense" or min(a.shape) < 3 or (
            method in ("auto", "exact") and dense_is_affordable(*a.shape)):  # (svds needs 3)
        check_memory(3 * 8 * a.shape[0] * a.shape[1], f"a dense {a.shape} SVD")
        dense = a.toarray()
        _, s, vh = np.linalg.svd(dense, full_matrices=False)
        upper = up(dense_upper(dense, float(s[0])) + entries, 2)
        return sc.SpectralNorm(float(s[0]), quotient(vh[0]), upper, "dense", {"dense": upper})
    upper = up(schur + entries, 2)
    if method == "upper":
        return sc.SpectralNorm(upper, quotient(np.ones(a.shape[1])), upper, "upper",
                               {"schur": upper}, False)
    try:
        *_, vh = spla.svds(a, k=1, tol=tol, random_state=0)
        vector, converged = vh[0], True
    except spla.ArpackError:  # (no convergence, or no shifts for equal values): a few power
        vector, converged = np.random.default_rng(0).standard_normal(a.shape[1]), False
        for _ in range(20):  # steps instead, still a lower bound; converged only if proved
            vector = a.T @ (a @ vector)
            vector /= np.linalg.norm(vector)
    lower = quotient(vector)  # (above upper, SpectralNorm refuses it: a bug, never clamped)
    return sc.SpectralNorm(lower, lower, upper, "bounds", {"schur": upper},
                           converged or lower >= upper * (1 - tol))


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
    """

    weight: np.ndarray
    bias: np.ndarray
    module: nn.Module


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


def _fold(conv: nn.Module, bn: nn.Module) -> FoldedBatchNorm:
    """:func:`fold_batchnorm`, hooks or not (the report withholds its network bound instead)."""
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
                   device=conv.weight.device, dtype=conv.weight.dtype)
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
