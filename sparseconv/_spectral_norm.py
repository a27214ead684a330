"""The spectral norm of any convolution layer, with a certified interval.

``spectral_norm`` returns ``lower <= ||A||_2 <= upper`` for the layer exactly as given: the
weights are converted (exactly) to float64 or complex128 whatever their dtype, with zero
padding their taps that read only the padding set to zero (the same matrix:
:func:`sparseconv._symbol.without_padding_taps`), scaled by a power of two so that the
largest is in ``[1/2, 1)`` (exact, and the norm is homogeneous), and every bound is widened by
its derived rounding allowance (:mod:`sparseconv._rounding`).
This module validates the arguments and picks the route (:func:`_route`); each route is its
own module:

* 1x1 kernels in closed form, periodic circular layers by FFT, small layers by LAPACK's SVD
  of the explicit matrix (:mod:`sparseconv._norm_routes`);
* every other layer, certified bounds (:mod:`sparseconv._norm_bounds`): zero padding, the
  circulant embedding, exact sections and, where a Cholesky factorization of the whole Gram
  is cheap, every axis exact above, a Lanczos Rayleigh quotient below; reflect, replicate
  and non-periodic circular padding, ``A = V P`` with ``P`` the padding;
* a zero-padded layer dilated along an axis of stride 1, first split by residues into
  undilated layers (:mod:`sparseconv._residues`).

The result is a :class:`sparseconv._norm_result.SpectralNorm`. A lower bound above an upper
bound would prove one of them wrong: that is a bug, raised as such, never clamped away.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from concurrent.futures import Executor

import numpy as np

from ._geometry import ConvGeometry
from ._norm_bounds import bounds_norm, exact_applies
from ._norm_result import SpectralNorm, checked_result, scaled_result
from ._norm_routes import dense_norm, fft_norm, pointwise_norm
from ._residues import residue_layers
from ._spectra import dense_is_affordable
from ._symbol import (
    is_periodic,
    layer_geometry,
    not_periodic,
    unit_scale,
    without_padding_taps,
)
from ._typing import (
    ArrayLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ProgressLike,
    ShapeLike,
    SpectralNormMethod,
)
from ._validation import check_executor, check_progress, one_of, real_number

__all__ = ["SpectralNorm", "spectral_norm"]

_METHODS = ("auto", "fft", "dense", "bounds", "upper", "exact")


#: ``spectral_norm``'s and ``spectral_norms``' default ``tol`` (the command line's too).
DEFAULT_TOL = 1e-7


def applicable_method(method: SpectralNormMethod, geom: ConvGeometry) -> SpectralNormMethod:
    """``method``, or ``"auto"`` where ``"exact"`` does not apply (:func:`exact_applies`):
    what each layer of a whole network, or of a command-line flag, takes."""
    return "auto" if method == "exact" and not exact_applies(geom) else method


#: The smallest ``tol`` taken: a float64 quotient is itself rounded by about 1e-16 of the norm,
#: so no lower bound can be told closer (a new user's trial: ``tol=1e-20`` was taken, and
#: could only end with ``converged=False``; :func:`toeplitz_norm` refused it).
MIN_TOL = 1e-15


def checked_tol(tol, name: str = "tol") -> float:
    """``spectral_norm``'s ``tol`` (``name``: as the caller calls it), validated."""
    try:
        return real_number(tol, name, low=MIN_TOL, high=1.0)
    except ValueError as error:  # (a new user's trial: the message said (0, 1))
        if not (isinstance(tol, (int, float)) and 0 <= tol < MIN_TOL):  # (a second trial:
            raise  # the reason for the lower limit was given for tol=1 and tol=nan too)
        raise ValueError(f"{error} (a float64 quotient is itself rounded by about 1e-16 of "
                         "the norm: no lower bound can be told closer than 1e-15)") from None


#: The smallest ``relative_width`` taken: the lower bound is computed to ``relative_width /
#: 8``, which must be a ``tol`` (:data:`MIN_TOL`).
MIN_RELATIVE_WIDTH = 8 * MIN_TOL


def checked_relative_width(relative_width, method: str) -> float | None:
    """``spectral_norm``'s ``relative_width``: ``None``, or a number in ``[8e-15, 1)`` with a
    method that computes a lower bound."""
    if relative_width is None:
        return None
    try:  # (a new user's trial: 5e-324 was taken, its tol of 0 then blamed on Lanczos)
        relative_width = real_number(relative_width, "relative_width", low=MIN_RELATIVE_WIDTH,
                                     high=1.0)
    except ValueError as error:
        raise ValueError(f"{error} (the lower bound is computed to relative_width / 8, at "
                         f"least {MIN_TOL:g}; the whole-Gram certificate reaches widths of "
                         "about 5e-9, the exact routes their rounding allowance)") from None
    if method == "upper":
        raise ValueError(f"relative_width={relative_width:g} needs a lower bound, and "
                         "method='upper' computes none: pass another method")
    return relative_width


def checked_options(method, tol) -> tuple[str, float]:
    """``spectral_norm``'s ``method`` and ``tol``, validated."""
    return one_of(method, _METHODS, "method"), checked_tol(tol)


def _route(geom: ConvGeometry, method: str) -> str:
    """The route ``method`` takes on a layer: ``"1x1"``, ``"fft"``, ``"dense"`` or
    ``"bounds"`` (whose whole-Gram certificate is the one that may take minutes)."""
    closed = method in ("auto", "upper", "exact")  # the exact routes where they apply
    if closed and all(k == 1 for k in geom.kernel_size):
        return "1x1"
    if method == "fft" or (closed and is_periodic(geom)):
        return "fft"
    if method == "dense" or (method in ("auto", "exact") and dense_is_affordable(*geom.shape)):
        return "dense"
    return "bounds"


def lanczos_tol(tol: float, relative_width: float | None) -> float:
    """The tolerance the lower bound is computed to: ``tol``, or tighter where a
    ``relative_width`` asks for it (``relative_width / 8``)."""
    return tol if relative_width is None else min(tol, relative_width / 8)


def _checked_layer(weight, input_shape, stride, padding, dilation, groups, padding_mode,
                   method: str) -> tuple[np.ndarray, ConvGeometry]:
    """The validated ``(weight, geometry)`` of a layer, refused if ``method`` cannot bound it."""
    if input_shape is None:  # (a trial: the bound for every size is a function of its own)
        raise TypeError("input_shape must be a tuple of positive integers (C_in, *spatial), "
                        "got None; the bound for every input size and zero padding is "
                        "sparseconv.toeplitz_norm(weight, stride=..., dilation=..., "
                        "groups=...)")
    weight, geom = layer_geometry(weight, input_shape, stride, padding, dilation, groups,
                                  padding_mode)
    if method == "fft" and not is_periodic(geom):
        raise ValueError(f"method='fft' needs {not_periodic(geom)}")
    if geom.padding_mode != "zeros" and geom.unpadded and not is_periodic(geom):
        # no padding read: the zero-padded layer's matrix, and its certificates (a new user's
        # trial: circular padding 0 was taken as wrapping, 2,000 times wider and refused by
        # method="exact")
        geom = ConvGeometry.from_weight(weight.shape, geom.input_shape, stride=geom.stride,
                                        dilation=geom.dilation, groups=geom.groups)
    if method == "exact" and not exact_applies(geom) and _route(geom, method) == "bounds":
        # (a 1x1 kernel and a layer small enough for a dense SVD take those exact routes)
        raise ValueError("method='exact' needs zero, reflect or replicate padding, a "
                         "periodic layer, a 1x1 kernel or a layer small enough for a dense "
                         f"SVD, got padding_mode={geom.padding_mode!r} on a layer that is none "
                         f"of these; periodic needs {not_periodic(geom)}")
    return weight, geom


def spectral_norm(
    weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
    padding: PaddingLike | None = 0, dilation: IntOrTuple = 1, groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    method: SpectralNormMethod = "auto", tol: float = DEFAULT_TOL,
    relative_width: float | None = None, executor: Executor | None = None,
    progress: ProgressLike | None = None,
) -> SpectralNorm:
    """The largest singular value of a layer's matrix, with a certified interval.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, k_1, ..., k_d)
        Real or complex, of any numeric dtype (converted exactly to float64 or complex128;
        integers beyond ``2**53``, which float64 would round, are refused).
    input_shape : tuple of int
        ``(C_in, n_1, ..., n_d)``.
    stride, padding, dilation, groups, padding_mode
        As :func:`sparseconv.conv_matrix` (``padding=None`` with ``padding_mode="circular"``:
        the periodic padding of :func:`sparseconv.singular_values`).
    method : {"auto", "fft", "dense", "bounds", "upper", "exact"}, optional
        ``"fft"``: exact, for periodic circular layers. ``"dense"``: SVD of the explicit
        matrix. ``"bounds"``: a Lanczos lower bound and certified upper bounds (zero padding:
        tight; reflect, replicate and non-periodic circular padding: the padding's own norm
        times the bound of the unpadded layer, looser -- by up to the square root of the most
        copies of one input, ``2^(d/2)`` for a padding of 1 in ``d`` dimensions on inputs of
        4 or more: 1.41, 2 and 2.83 in 1-D, 2-D and 3-D (a new user's trial of 3-D layers
        found the third unsaid; ``relative_width`` or ``method="exact"`` closes it, at a
        cost) -- except where
        the whole-Gram certificate below is cheap; non-periodic circular padding also: the
        norm of the periodic layer whose rows its rows are, times the square root of the most
        times it takes one; a periodic layer: the circulant bound on its own grid, which is
        its norm). ``"upper"``: the cheap certified upper
        bounds alone (the circulant embedding; no exact sections, no Lanczos, and no dense SVD
        even for a small layer; 1x1 and periodic layers exactly, as with ``"auto"``),
        ``value`` is the upper bound and ``lower`` one cheap quotient. ``"auto"``: a 1x1
        kernel in closed form, ``"fft"`` when it applies, else ``"dense"`` when a dense
        SVD is affordable (about ``rows * cols * min(rows, cols)`` at most ``2**31`` flops,
        and three complex copies of the matrix within the memory limit: the package's one
        rule), else ``"bounds"``. ``"exact"``: as
        ``"auto"``, but a layer with zero, reflect or replicate padding gets the certificate
        that treats every axis exactly (one Cholesky factorization of the whole Gram
        matrix, at ``(1 + tol)`` times the Lanczos lower bound: a relative width near
        ``tol``; by
        block rows of the grid for a real layer in 2-D or 3-D, else in band storage)
        whatever it costs -- for a 512-channel 3x3 layer on 7x7, about ``7.9e11``
        multiply-adds and 1.3 GiB (sized against the memory limit first); ``"bounds"``
        takes it only where it costs at most ``2**37``.
    tol : float, optional
        The relative accuracy asked of the lower bound, in ``[1e-15, 1)``: the Lanczos
        iteration stops when the residual of its top Ritz pair shows the estimate within
        ``tol`` of the norm (at most 300 steps; on one axis, where that is short -- a long
        input's top singular values crowd together -- Lanczos on the inverse of ``mu I -
        A^H A``, banded, ``mu`` just above the upper bound, goes on); ``converged`` on the
        result says whether it got there.
    relative_width : float, optional
        The relative width ``(upper - lower) / upper`` asked of the interval, in ``[8e-15, 1)``:
        where the route ``method`` takes ends wider, the whole-Gram certificate of
        ``"exact"`` runs after it, on that layer only, just above the lower bound found --
        whatever it costs, as ``"exact"`` (minutes for 256 channels on 14x14), if it fits the
        memory limit; and the lower bound is computed to ``min(tol, relative_width / 8)``.
        That certificate reaches relative widths down to about ``5e-9`` (it is placed at
        least ``1e-8`` above the square of the lower bound). Where the width is still over
        it (that floor, no whole-Gram proof for circular padding that is not periodic, a
        factorization over the memory limit, a lower bound that did not converge), a
        ``RuntimeWarning`` says why; ``relative_width`` on the result is the width reached.
        Not with ``method="upper"``, which computes no lower bound.
    executor : concurrent.futures.Executor, optional
        Runs the circulant bound (one task per chunk of frequencies) and the exact sections
        (one task per block): any ``concurrent.futures.Executor``, e.g. a
        ``ProcessPoolExecutor`` or a ``dask.distributed`` client's ``get_executor()``.
        Default: threads on every core, one BLAS thread each.
    progress : callable, optional
        ``progress(done, total)``, called as the circulant bound's chunks of frequencies
        complete, then as each later stage ends (each exact section, the Lanczos lower bound,
        the whole-Gram certificate), ``total`` counting those that may run; the last call is
        ``(total, total)`` (``(1, 1)`` for the dense, ``1x1`` and zero routes, which have one
        step).

    Returns
    -------
    SpectralNorm
        ``value``, and ``lower <= ||A||_2 <= upper`` (``bounds`` lists each upper bound).

    Raises
    ------
    ValueError
        Invalid layer arguments, ``method``, ``tol`` or ``relative_width`` (or
        ``relative_width`` with ``method="upper"``), non-finite weights, ``"fft"`` for a
        layer that is not periodic, or ``"exact"`` for circular padding that is not
        periodic on a layer neither 1x1 nor small enough for a dense SVD (its reads wrap
        around the grid: no whole-Gram proof).
    MatrixTooLargeError
        A stage that cannot fit the memory limit, before it starts.
    RuntimeError
        A certified lower bound above a certified upper bound: a bug, never clamped away.

    See Also
    --------
    singular_values : all singular values, exactly, where that is affordable.

    Notes
    -----
    Costs, for ``N`` the embedding grid: the circulant bound is ``prod(N/s)`` eigenvalue
    problems of size ``C/g``; each exact section is a banded Cholesky of size
    ``n_e * C_in/g * s^(d-1)`` and bandwidth ``C_in/g * s^(d-1) * (reach + 1)``, or of the
    output side (``m_e * C_out/g``, bandwidth ``C_out/g * (reach // s + 1)``) when that is
    cheaper; where one banded Cholesky of the whole Gram matrix costs at most ``2**37``
    multiply-adds (few channels, small grids, depthwise layers: groups whose circulant bound
    is below the lower bound are skipped), it replaces the sections and treats every axis
    exactly; the lower bound costs a matvec and an rmatvec per Lanczos step. The interval is
    rigorous for the
    layer as given: every bound is computed in float64 and widened by its rounding allowance
    (relative ``3e-13`` for an 8->8 3x3 layer to ``2e-8`` for 512->512, growing as the square of
    the per-frequency matrices' size; derived in :mod:`sparseconv._rounding`; the user
    guide's "How the bounds are proved" has every derivation). With zero padding, taps that
    read only the padding (a kernel over a small input, a large padding, a stride that steps
    over the input) are not in the matrix, and are set to zero first: neither the routes nor
    their rounding allowances see them.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import spectral_norm, conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3)) / 6
    >>> r = spectral_norm(w, (4, 16, 16), padding=1, method="bounds")
    >>> bool(r.lower <= r.upper) and r.relative_width < 1e-2
    True
    >>> dense = np.linalg.norm(conv_matrix(w, (4, 16, 16), padding=1).toarray(), 2)
    >>> bool(r.lower <= dense <= r.upper)
    True
    """
    result, missed = _spectral_norm(
        weight, input_shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, method=method, tol=tol, relative_width=relative_width,
        executor=executor, progress=progress)
    if missed is not None:
        warnings.warn(f"spectral_norm: {missed}", RuntimeWarning, stacklevel=2)
    return result


def _spectral_norm(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", method="auto", tol=DEFAULT_TOL, relative_width=None,
                   executor=None, progress=None) -> tuple[SpectralNorm, str | None]:
    """:func:`spectral_norm` (the same arguments), and why its result is wider than
    ``relative_width`` (``None``: it is not, or none was asked for), for the callers that
    say it themselves (:func:`spectral_norms` names the layer)."""
    method, tol = checked_options(method, tol)
    relative_width = checked_relative_width(relative_width, method)
    executor, progress = check_executor(executor), check_progress(progress)
    weight, geom = _checked_layer(weight, input_shape, stride, padding, dilation, groups,
                                  padding_mode, method)
    # the same matrix, and certificates scaled by the taps that make it
    weight = without_padding_taps(weight, geom)
    if _no_entry(geom, weight):
        if progress is not None:  # (a review: never called, a progress bar never finished)
            progress(1, 1)
        return SpectralNorm(0.0, 0.0, 0.0, "zero", {"zero": 0.0}), None
    parts = residue_layers(geom) if _route(geom, method) == "bounds" else None
    if parts is not None:
        return _overflowed(*_by_residues(weight, geom, parts, method, tol, relative_width,
                                         executor, progress))
    tol = lanczos_tol(tol, relative_width)
    weight = weight.astype(np.complex128 if weight.dtype.kind == "c" else np.float64)
    weight, exponent = unit_scale(weight)  # exact; the results are scaled back by 2**exponent
    reasons: list[str] = []
    route = _route(geom, method)
    if route == "1x1":
        result = pointwise_norm(weight, geom)
    elif route == "fft":
        result = fft_norm(weight, geom, executor, progress)
    elif route == "dense":
        result = dense_norm(weight, geom)
    if route in ("1x1", "dense") and progress is not None:
        progress(1, 1)  # one step, done
    if route not in ("1x1", "fft", "dense"):
        result = bounds_norm(weight, geom, tol, executor, progress, upper_only=method == "upper",
                         exact=method == "exact", width=relative_width, missed=reasons)
    result = scaled_result(result, exponent, tol)
    if route in ("1x1", "fft", "dense") and result.lower < (1 - tol) * result.upper:
        # the exact interval is the rounding allowance, sized by the weight: taps that cancel
        # can leave a norm below it (taps that read only padding are zero by now; before, a
        # review found a 1e-9 norm beside such a tap of 1, its lower bound 6.7e-7 short)
        result = dataclasses.replace(result, converged=False)
        reasons.append(f"the {route} route is exact, and its interval is its rounding "
                       "allowance, which no other route narrows")
    missed = width_missed(result, relative_width, tol, reasons)
    if missed is not None and route == "bounds" and _route(geom, "auto") == "dense":
        # a review: method="bounds" on a small layer that the dense route proves exactly
        missed += "; method='auto' proves a layer this small by its dense SVD"
    return _overflowed(result, missed)


def _no_entry(geom: ConvGeometry, weight: np.ndarray) -> bool:
    """Whether the layer's matrix is zero: a zero weight or no tap that reads an input (zero
    padding only). With zero padding, ``weight`` must have no tap that reads only padding
    (:func:`without_padding_taps`): a weight zero on every tap that reads an input (a hunt: a
    stride-2 layer whose taps read only the padding but its last, which was 0, raised
    ZeroDivisionError in the Lanczos search) is then zero. The other modes sum taps onto the
    border, and their routes bound such a matrix."""
    return not weight.any() or geom.nnz() == 0


def _overflowed(result: SpectralNorm, missed: str | None) -> tuple[SpectralNorm, str | None]:
    """``(result, missed)``, ``missed`` saying where the norm is beyond float64's range (a
    new user's trial: ``upper=inf`` without a word, and the command line's error named no
    option)."""
    if math.isfinite(result.upper):
        return result, missed
    overflow = (f"the norm is over the largest float64, {sys.float_info.max:.4g} (lower="
                f"{result.lower:.4g}, upper=inf); the norm scales with the weight (||c A|| = "
                "|c| ||A||): pass the weight times 2**-k and multiply the bounds by 2**k")
    return result, overflow if missed is None else f"{missed}; {overflow}"


def _by_residues(weight, geom: ConvGeometry, parts: list, method: str, tol: float,
                 relative_width: float | None, executor, progress,
                 ) -> tuple[SpectralNorm, str | None]:
    """:func:`_spectral_norm` of a layer that splits by residues (:func:`residue_layers`):
    each distinct undilated layer's, and the largest. Its interval is the largest of their
    lower and upper bounds; it has converged where each of them has."""
    results, missed = [], None
    for done, part in enumerate(parts, start=1):
        sizes, pads, dilation = zip(*part)
        result, why = _spectral_norm(
            weight, (geom.in_channels, *sizes), stride=geom.stride, padding=pads,
            dilation=dilation, groups=geom.groups, method=method, tol=tol,
            relative_width=relative_width, executor=executor)
        results.append(result)
        missed = missed or why
        if progress is not None:
            progress(done, len(parts))
    top = max(results, key=lambda result: result.upper)
    common = set.intersection(*(set(result.bounds) for result in results))
    bounds = {name: max(result.bounds[name] for result in results) for name in sorted(common)}
    methods = {result.method for result in results} - {"zero"}
    return checked_result(max(result.value for result in results),
                    max(result.lower for result in results), top.upper,
                    methods.pop() if len(methods) == 1 else "bounds" if methods else "zero",
                    bounds or {"residues": top.upper},
                    all(result.converged for result in results)), missed


def width_missed(result: SpectralNorm, relative_width: float | None, tol: float,
                 reasons: list[str]) -> str | None:
    """Why ``result`` is wider than ``relative_width`` (``reasons``, and a lower bound that
    did not converge to ``tol``); ``None`` where it is not, or none was asked for."""
    if relative_width is None or result.relative_width <= relative_width:
        return None
    if not result.converged and result.method in ("bounds", "upper"):  # (a new user's trial:
        # the exact routes' rounding allowance was blamed on a Lanczos that never ran)
        reasons = [*reasons, f"the lower bound did not converge to tol={tol:.3g}"]
    because = "; ".join(reasons) or "the certificates reached no closer"
    return (f"the certified interval's relative width {result.relative_width:.2e} is over "
            f"relative_width={relative_width:g}: {because}")
