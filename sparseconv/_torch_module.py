"""One PyTorch module as a matrix, an operator, an affine map, spectra, or a folded BatchNorm.

The public functions of :mod:`sparseconv.torch` that take one module: each translates it with
:func:`sparseconv._torch_layers._layer` and hands the result to the array API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.fx
from torch import nn

import sparseconv as sc
from sparseconv._torch_kinds import (
    check_module,
    check_module_layout,
    refuse_hooks,
)
from sparseconv._torch_layer_base import _input_shape, _Layer
from sparseconv._torch_layers import _layer
from sparseconv._torch_probe import leaves_the_model
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
    from sparseconv._torch_probe import magnitude, matches, probe_input
    from sparseconv._torch_script import script_calls
    from sparseconv._torch_state import restored_state

    name = str(getattr(module, "original_name", type(module).__name__))
    shape = _input_shape(input_shape, None, name)
    if output_size is not None:
        raise TypeError(f"output_size cannot be passed to a TorchScript {name}: its graph is "
                        "run as it is; pass the eager module")
    records, _ = script_calls(module, shape)
    probe = probe_input(module, shape)  # what script_calls ran the graph on
    with torch.no_grad(), restored_state(module):
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
                        + "; lipschitz_report(model, input_shape) bounds each of its "
                        "layers, and sparseconv.torch.network_operator(model, input_shape) "
                        "makes one operator of a linear network from its eager model (not "
                        "from TorchScript)")
    return layer


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@leaves_the_model
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
    format : {"csr", "csc", "coo", "bsr"}, optional
    dtype : {None, float32, float64, complex64, complex128}, optional
        The matrix's dtype. ``None`` (the default): float64 whatever the module's dtype (a
        float32, float16 or bfloat16 module's weights widen exactly), as :func:`operator` is;
        the array functions keep a float32 weight's dtype instead
        (``sparseconv.conv_matrix(conv.weight.detach().numpy(), ...)`` is float32). numpy's
        names or torch's (``torch.float32``).
    layout : {"channels_first", "channels_last"}, optional
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
@leaves_the_model
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

    Parameters
    ----------
    module : torch.nn.Module
        A supported linear module, as in :func:`matrix`.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch (``(*lead, in_features)`` for ``nn.Linear``).
    dtype : {None, float32, float64, complex64, complex128}, optional
        The operator's dtype; ``None``: float64.
    layout : {"channels_first", "channels_last"}, optional
        The order of the flattened columns it takes and returns, as in :func:`matrix`.
    output_size : tuple of int, optional
        For ``nn.ConvTranspose*d`` only: the ``output_size`` passed at call time.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator, shape (prod(output_shape), prod(input_shape))
        ``op @ x.ravel() + bias == module(x[None])[0].ravel()``; ``op.H`` is the adjoint.

    Raises
    ------
    TypeError, ValueError
        As :func:`matrix`.

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
@leaves_the_model
def affine(module: nn.Module, input_shape: Sequence[int], *,
           dtype: DTypeLike | None = None, layout: Layout = "channels_first",
           output_size: Sequence[int] | None = None) -> sc.AffineMap:
    """The module as the :class:`sparseconv.AffineMap` ``x -> A x + b``, bias included.

    ``b`` is the bias broadcast over the output (a convolution's per channel, a BatchNorm's
    shift, a ``ConstantPad``'s fill value); zero for a module without one. ``A`` is the CSR
    :func:`matrix`; arguments as there, ``b`` in the same ``dtype`` and ``layout``.

    Parameters
    ----------
    module : torch.nn.Module
        A supported linear module, as in :func:`matrix`.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch (``(*lead, in_features)`` for ``nn.Linear``).
    dtype : {None, float32, float64, complex64, complex128}, optional
        The dtype of ``A`` and ``b``; ``None``: float64.
    layout : {"channels_first", "channels_last"}, optional
        The order of the flattened input and output, as in :func:`matrix`.
    output_size : tuple of int, optional
        For ``nn.ConvTranspose*d`` only: the ``output_size`` passed at call time.

    Returns
    -------
    sparseconv.AffineMap
        ``f(x.ravel()) == module(x[None])[0].ravel()``, with ``f.A`` the CSR matrix and
        ``f.b`` the offset.

    Raises
    ------
    TypeError, ValueError
        As :func:`matrix`.

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
