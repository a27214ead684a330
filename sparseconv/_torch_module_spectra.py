"""One PyTorch module's spectra: its certified spectral norm, singular values and symbol.

:func:`spectral_norm` and :func:`singular_values` take the array functions' routes for a
convolution (:func:`sparseconv.spectral_norm`), and bound any other supported module from
its explicit matrix (:func:`_matrix_norm`: a pooling's, a padding's, an upsampling's);
:func:`symbol` is a periodic convolution's per-frequency matrices.
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
from sparseconv._torch_kinds import _CONV
from sparseconv._torch_layer_base import _Layer
from sparseconv._torch_module import _eager_leaf, _hookless_layer
from sparseconv._torch_probe import leaves_the_model

__all__ = ["singular_values", "spectral_norm", "symbol"]

#: The options :func:`spectral_norm` passes on (those of :func:`sparseconv.spectral_norm`).
_OPTIONS = ("method", "tol", "relative_width", "executor", "progress")
#: Those :func:`singular_values` passes on (of :func:`sparseconv.singular_values`).
_VALUES_OPTIONS = ("method", "executor", "progress")


def _refuse_unknown(kwargs: dict[str, Any], options: tuple[str, ...], function: str) -> None:
    """A keyword ``function`` does not pass on to sparseconv's function of its name, by name
    (a layer's own arguments, such as ``stride``, are the module's)."""
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}; "
                        f"it passes {', '.join(options)} to sparseconv.{function} (the layer's "
                        "own arguments are the module's)")


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@leaves_the_model
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

    Parameters
    ----------
    module : torch.nn.Module
        A supported linear module, as in :func:`matrix`.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch (``(*lead, in_features)`` for ``nn.Linear``).
    output_size : tuple of int, optional
        For ``nn.ConvTranspose*d`` only: the ``output_size`` passed at call time.
    **kwargs
        :func:`sparseconv.spectral_norm`'s ``method``, ``tol``, ``relative_width``,
        ``executor`` and ``progress``.

    Returns
    -------
    sparseconv.SpectralNorm
        ``lower <= ||A||_2 <= upper`` for the module's matrix ``A`` (its bias left out), in
        float64: an interpolation's weights as PyTorch's float64 kernels compute them (a
        float32 module computes its own in float32: up to 3e-6 apart at awkward scales).

    Raises
    ------
    TypeError, ValueError
        As :func:`matrix`, and as :func:`sparseconv.spectral_norm` for ``kwargs``.

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


def _layer_norm(layer: _Layer, strict: bool = False, label: str = "spectral_norm",
                **kwargs: Any) -> sc.SpectralNorm:
    """A layer's certified norm; ``strict=False`` (a network's layers): ``method="exact"``
    becomes ``"auto"`` where it does not apply (:func:`_layer_options`). A
    ``relative_width`` missed is warned of, led by ``label``."""
    _refuse_unknown(kwargs, _OPTIONS, "spectral_norm")
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
@leaves_the_model
def singular_values(module: nn.Module, input_shape: Sequence[int], *,
                    output_size: Sequence[int] | None = None, **kwargs: Any) -> np.ndarray:
    """All singular values of a module's matrix, in decreasing order.

    From :func:`sparseconv.singular_values` for the modules that are convolutions (see
    :func:`spectral_norm`; ``kwargs`` such as ``method`` are passed on), repeated for the
    block-diagonal copies (``nn.Linear`` over leading axes, BatchNorm over positions); from a
    dense SVD of the matrix otherwise, within the memory limit.

    Parameters
    ----------
    module : torch.nn.Module
        A supported linear module, as in :func:`matrix`.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch (``(*lead, in_features)`` for ``nn.Linear``).
    output_size : tuple of int, optional
        For ``nn.ConvTranspose*d`` only: the ``output_size`` passed at call time.
    **kwargs
        :func:`sparseconv.singular_values`'s ``method``, ``executor`` and ``progress``.

    Returns
    -------
    ndarray of float64, shape (min(A.shape),)
        The singular values of the module's matrix ``A`` (:func:`matrix`), largest first.

    Raises
    ------
    TypeError, ValueError
        As :func:`matrix`, and as :func:`sparseconv.singular_values` for ``kwargs``.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> sct.singular_values(torch.nn.ZeroPad1d((1, 2)), (1, 3))
    array([1., 1., 1.])
    """
    # (a review: stride=2 got Python's "multiple values for keyword argument")
    _refuse_unknown(kwargs, _VALUES_OPTIONS, "singular_values")
    layer = _hookless_layer(module, input_shape, output_size)
    if layer.conv is None:
        a = layer.build("csr")
        n = min(a.shape)
        limit = sc.get_memory_limit()
        if limit is not None and 8 * (a.shape[0] * a.shape[1] + 2 * n * n) > limit:
            raise sc.MatrixTooLargeError(
                f"singular_values of {type(module).__name__} on input_shape={layer.input_shape} "
                f"needs a dense {a.shape} matrix, beyond the memory limit of {limit} bytes",
                needed=8 * (a.shape[0] * a.shape[1] + 2 * n * n))
        return np.linalg.svd(a.toarray(), compute_uv=False)
    weight, shape, conv_kwargs = layer.conv
    values = sc.singular_values(weight, shape, **conv_kwargs, **kwargs)
    return np.sort(np.tile(values, layer.repeat))[::-1]


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@leaves_the_model
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
    # a scripted Conv2d: the eager module its graph rebuilds (a review: "RecursiveScriptModule
    # is no convolution", where matrix and spectral_norm read it); checked as a module below
    module = _eager_leaf(module, input_shape, None)
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
    ``A = I (x) B`` checked entry by entry, ``||A|| = ||B||``). The interval is of the map
    whose coefficients are the matrix's entries, as :func:`matrix` computes them in float64:
    a pooling's ``1/9`` rounded once (within ``u`` of the exact one, so an allowance of
    ``u || |A| ||`` is taken off the lower bound and added to the upper one, covering the
    exact pooling); an interpolation's weights with PyTorch's own index arithmetic, which
    float64 kernels reproduce to 4e-15 and float32 kernels, whose weights PyTorch computes
    in float32, to 3e-6 (measured, at awkward scales such as 3.000000003): a float32
    module's own coefficients are not the ones certified, and its norm may lie outside by
    about as much (a review: 1.25e-10 relative above the upper bound, linear, 40 inputs).
    """
    method, tol = checked_options(method, DEFAULT_TOL if tol is None else tol)
    relative_width = checked_relative_width(relative_width, method)
    tol = lanczos_tol(tol, relative_width)
    a = sp.csr_array(a)
    if not np.isfinite(a.data).all():  # as the convolutions' route refuses a weight (a
        # review: a ConvTranspose past its stride's output_padding, with an inf, got numpy's
        # LinAlgError or NaN from "auto", and [0, inf] from "bounds")
        bad = np.flatnonzero(~np.isfinite(a.data))[0]
        row = int(np.searchsorted(a.indptr, bad, side="right") - 1)
        raise ValueError(f"the module's matrix must have finite entries (spectra of NaN or "
                         f"infinite entries mean nothing), got {a.data[bad]} at row {row}, "
                         f"column {a.indices[bad]}: from its weight or another parameter")
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
