"""The spectral norm of any convolution layer, with a certified interval.

``spectral_norm`` returns ``lower <= ||A||_2 <= upper`` for the layer exactly as given: the
weights are converted (exactly) to float64 or complex128 whatever their dtype, scaled by a
power of two so that the largest is in ``[1/2, 1)`` (exact, and the norm is homogeneous), and
every bound is widened by its derived rounding allowance (:mod:`sparseconv._rounding`).
Which bounds, by layer:

* periodic circular layers: the symbol's largest singular value, by FFT (``"fft"``);
* small layers: LAPACK's SVD of the explicit matrix, certified by a Cholesky factorization
  and a Rayleigh quotient (``"dense"``);
* zero padding: the circulant embedding, exact sections and, where a Cholesky
  factorization of the whole Gram is cheap, every axis exact
  (:mod:`sparseconv._certificates`) above, a Lanczos Rayleigh quotient below
  (:mod:`sparseconv._lanczos`) (``"bounds"``);
* reflect, replicate and non-periodic circular padding: ``A = V P`` with ``P`` the padding,
  ``||P||^2`` the largest number of copies of one input entry, ``V`` unpadded.

A lower bound above an upper bound would prove one of them wrong: that is a bug, raised as
such, never clamped away.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ._certificates import (
    circulant_tops,
    circulant_uppers,
    dense_upper,
    embedding_grid,
    periodic_geometry,
)
from ._exact_sections import section_bound, section_bytes
from ._geometry import ConvGeometry, block_diagonal, copies_of
from ._gram_operator import gram_operator
from ._lanczos import banded_lower_bound, check_lanczos_memory, lower_bound, start_vector
from ._matrices import conv_matrix
from ._memory import MatrixTooLargeError, check_memory, fits, format_bytes
from ._operators import ConvOperator
from ._products import forward_bytes
from ._rounding import Rounding, down, gamma, scaled, up
from ._spectra import dense_is_affordable, pointwise_reads
from ._symbol import is_periodic, layer_geometry, not_periodic, one_frequency, unit_scale
from ._typing import (
    ArrayLike,
    IntOrTuple,
    PaddingLike,
    PaddingMode,
    ProgressLike,
    ShapeLike,
    SpectralNormMethod,
)
from ._validation import check_executor, check_progress, real_number
from ._whole_gram import FULL_FLOPS, full_bound, full_bytes_and_flops, lifts
from ._workspace import reusing

__all__ = ["SpectralNorm", "spectral_norm"]

_METHODS = ("auto", "fft", "dense", "bounds", "upper", "exact")
_RESULTS = ("fft", "dense", "bounds", "upper", "1x1", "torus", "zero")


@dataclass(frozen=True)
class SpectralNorm:
    """The spectral norm of a layer and a certified interval ``lower <= ||A|| <= upper``.

    Attributes
    ----------
    value : float
        The estimate: LAPACK's or the FFT's ``sigma_max`` for ``method`` "fft" and "dense",
        else the lower bound (a Rayleigh quotient, accurate to the Lanczos tolerance).
    lower, upper : float
        Certified bounds on the norm of the layer as given, rounding included.
    method : str
        "fft", "dense", "bounds", "upper" (the upper bounds alone, ``lower`` a cheap
        quotient), "1x1" (a 1x1 kernel at any stride and padding: the weight matrix's norm
        times the square root of the most reads of one input, in closed form), "torus"
        (:func:`toeplitz_norm`: the norm on the infinite grid, a bound for every input size),
        or "zero" (an all-zero weight, or a layer whose every tap reads padding: the norm is
        0).
    bounds : dict
        Every certified upper bound computed, by name, for comparison.
    converged : bool
        Whether ``lower`` is within ``tol`` of the norm. Where the whole Gram's certificate
        runs (``"exact"`` among ``bounds``: small layers, ``method="exact"``,
        ``relative_width``), it decides: placed at ``(1 + tol)`` times ``lower``, it proves
        the claim or refutes it (and a Lanczos iteration refuted so is searched again off
        the vector it settled on). Elsewhere, as far as the Lanczos iteration can tell (its
        Ritz residual, and the quotient's rounding allowance: taps that cancel can leave a
        norm below it), which is no proof: where the top two singular values lie within
        about 1e-5 (relative) of each other, Lanczos can settle on the second, whose
        residual passes, and claim ``tol`` up to their gap below the norm. For the exact
        methods, whether their interval is within ``tol`` (their rounding allowance, sized by
        the weight, alone can exceed it where taps cancel or never read an input); False for
        ``"upper"``. ``lower`` and ``upper`` are certified either way.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import spectral_norm
    >>> r = spectral_norm(np.ones((1, 1, 3)), (1, 16), padding="same", padding_mode="circular")
    >>> r.method, round(float(r), 12)            # periodic: exact by FFT, the kernel's sum
    ('fft', 3.0)
    >>> bool(r.lower <= 3.0 <= r.upper)
    True
    >>> f"{r:.3f}"                               # a format spec formats the value
    '3.000'
    """

    value: float
    lower: float
    upper: float
    method: Literal["fft", "dense", "bounds", "upper", "1x1", "torus", "zero"]
    bounds: dict[str, float] = field(default_factory=dict)
    converged: bool = True

    def __post_init__(self) -> None:
        for name in ("value", "lower", "upper"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
                    isinstance(value, complex | np.complexfloating):
                raise TypeError(f"{name} must be a real number, got {value!r}")
            if not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not self.lower <= self.upper:
            raise ValueError(f"lower must not exceed upper, got lower={self.lower!r}, "
                             f"upper={self.upper!r}")
        if self.method not in _RESULTS:
            raise ValueError(f"method must be one of {_RESULTS}, got {self.method!r}")

    def __float__(self) -> float:
        return float(self.value)

    def __format__(self, format_spec: str) -> str:
        """``f"{r:.4f}"`` formats the value as a float would; ``f"{r}"`` is ``str(r)`` (a new
        user's trial: a format spec raised TypeError)."""
        return format(float(self.value), format_spec) if format_spec else str(self)

    @property
    def relative_width(self) -> float:
        """``(upper - lower) / upper`` (0 for a zero layer; 1 for an infinite ``upper`` above a
        finite ``lower``, its limit, where the quotient would be NaN: a review found a filter
        ``width > 1e-3`` skipping such a layer)."""
        if math.isinf(self.upper):
            return 0.0 if math.isinf(self.lower) else 1.0
        return (self.upper - self.lower) / self.upper if self.upper > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# The methods, on float64/complex128 weights scaled to [1/2, 1).
# ---------------------------------------------------------------------------------------------
def _checked(value, lower, upper, method, bounds, converged=True) -> SpectralNorm:
    """The result, unless its certified bounds contradict each other: that is a bug."""
    if lower > upper:
        raise RuntimeError(
            f"spectral_norm proved lower bound {lower!r} above upper bound {upper!r} ({method}, "
            f"bounds {bounds}): one certificate is wrong; this is a bug in sparseconv, please "
            "report it with the layer")
    return SpectralNorm(value, lower, upper, method, bounds, converged)


def _fft(weight, geom: ConvGeometry, executor=None, progress=None) -> SpectralNorm:
    # a 1x1 kernel: one frequency holds every one's singular values (lipschitz_report's
    # circular column of a 1x1 stride-2 layer took 0.8-1.5 s at all 49-196 of them)
    geom = one_frequency(geom)
    top, lower, upper = circulant_tops(weight, geom, Rounding.of(weight, geom.groups), executor,
                                       progress)
    value, low, high = float(top.max()), float(lower.max()), float(upper.max())
    return _checked(value, low, high, "fft", {"fft": high})


def _matrix_interval(matrix: np.ndarray, rounding: Rounding) -> tuple[float, float, float]:
    """``(value, lower, upper)`` of ``||matrix||``: the top eigenpair of its smaller Gram
    matrix (a fraction of a full SVD's work and memory), the eigenvector's quotient widened
    by ``rounding`` (``A^H u`` for a wide matrix: the same norm), and a Cholesky proof just
    above the value (:func:`dense_upper`)."""
    rows, cols = matrix.shape
    tall = matrix if rows >= cols else np.conj(matrix.T)
    gram = np.conj(tall.T) @ tall
    n = gram.shape[0]
    lam, vector = scipy.linalg.eigh(gram, subset_by_index=[n - 1, n - 1], check_finite=False)
    if lam.size == 0:  # LAPACK's dsyevr found no eigenpair in the range (a review: Grams of
        # few nonzeros, OpenBLAS 0.3.30): the whole decomposition, whose last pair is the top
        lam, vector = scipy.linalg.eigh(gram, check_finite=False)
        lam, vector = lam[-1:], vector[:, -1:]
    top, value = vector[:, 0], math.sqrt(max(float(lam[0]), 0.0))
    lower = rounding.quotient_lower(float(np.linalg.norm(tall @ top)),
                                    float(np.linalg.norm(top)), max(rows, cols))
    return value, lower, dense_upper(matrix, value, gram)


def _dense(weight, geom: ConvGeometry) -> SpectralNorm:
    rows, cols = geom.shape
    # the matrix, its Gram, LAPACK's copy of it and the bound's scratch: 4.2x the matrix
    # measured (a memory audit: 3x was counted)
    check_memory(5 * rows * cols * weight.itemsize, f"a dense {rows} x {cols} SVD")
    dense = _matrix(weight, geom).toarray()
    copies = copies_of(geom)
    rounding = Rounding.of(weight, geom.groups, copies)
    # (the quotient's allowance, gamma(taps_per_entry) |A|, covers the rounded entries too)
    value, lower, upper = _matrix_interval(dense, rounding)  # upper: the norm of `dense`
    if copies > 1:
        # padding that copies an input sums the taps reading one entry: each entry of `dense`
        # is a rounded sum of at most `copies` weights, off by gamma(copies - 1) times that
        # entry of |V| |P| -- which cancellation can make the whole of it -- so
        # ||A - dense|| <= gamma(copies) || |V| |P| || <= gamma(copies) abs_norm
        upper = up(upper + gamma(copies) * rounding.abs_norm, 2)
    return _checked(value, lower, upper, "dense", {"dense": upper})


def _pointwise(weight, geom: ConvGeometry) -> SpectralNorm:
    """A 1x1 kernel, any stride, padding and mode: ``A = S (x) W``, in closed form.

    Each output reads one input position (or a zero pad): ``S`` has at most one 1 per row,
    ``S^T S`` is diagonal with the number of reads of each input, so ``||A|| = ||W||
    sqrt(max reads)``; ``W`` is block diagonal over the groups.
    """
    reads = math.prod(int(axis_reads.max()) for axis_reads in pointwise_reads(geom))
    rows, cols = weight.shape[0], weight.shape[1] * geom.groups
    check_memory(weight.itemsize * (2 * rows * cols + 2 * min(rows, cols) ** 2),
                 f"the {rows} x {cols} weight matrix of a 1x1 kernel (and its adjoint), and its "
                 "smaller Gram matrix")
    matrix = block_diagonal(weight.reshape(geom.groups, -1, weight.shape[1])[None])[0]
    if reads == 0 or not matrix.any():
        return SpectralNorm(0.0, 0.0, 0.0, "1x1", {"1x1": 0.0})
    # (an SVD with full_matrices made a 65536 x 65536 factor for a Linear(65536, 10))
    value, lower, upper = _matrix_interval(matrix, Rounding.of(weight, geom.groups))
    root = math.sqrt(reads)
    lower, upper = down(root * lower, 4), up(up(root, 2) * upper, 2)
    return _checked(value * root, lower, upper, "1x1", {"1x1": upper})


def _circulant(weight, geom: ConvGeometry, rounding: Rounding, executor=None,
               progress=None) -> tuple[list, np.ndarray]:
    """The embedding grid and the certified circulant bound per frequency and group."""
    grid = embedding_grid(geom)
    upper = circulant_uppers(weight, periodic_geometry(weight.shape, geom, grid), rounding,
                             executor, progress)
    # (the Toeplitz symbol's supremum, Araujo et al.'s bound, is never below this one: the
    # strided circulant layer subsamples the stride-1 one, whose norm is the symbol's
    # maximum on the grid; see sparseconv.toeplitz_norm for the bound of every input size)
    return grid, upper


#: A further exact section runs only while it can still lower the best upper bound by more
#: than this fraction of the gap to a quick lower bound (the first section's witness).
SECTION_GAIN = 0.05


def _sections(weight, geom: ConvGeometry, grid, certified: np.ndarray, bounds: dict,
              rounding: Rounding, executor=None, floor=None,
              step: Callable[[], None] = lambda: None) -> dict:
    """Adds each exact section's bound to ``bounds``; returns the witnesses of the best.

    ``floor(witnesses)``: a quick certified lower bound from a section's witnesses, if the
    caller has one; each later section then stops once it cannot beat the best bound by more
    than ``SECTION_GAIN`` of the gap to it (its bound is still certified, only less tight).
    ``step()`` is called after each axis (the progress of :class:`_Stages`).
    """
    per_frequency, chosen, low = certified.max(axis=-1), {}, None
    for axis in range(geom.ndim):
        if not fits(section_bytes(geom, axis)):
            step()
            continue  # an exact section only tightens the bound: skipped, never refused late
        # 1-D: no other axis, the layer itself is the one block, proved exactly
        blocks = per_frequency.max(axis=axis) if geom.ndim > 1 else np.array([math.inf])
        beat = min(bounds.values())
        if low is not None:
            beat -= SECTION_GAIN * max(beat - low, 0.0)
        with reusing():  # one block's band memory serves the next, dropped after the section
            value, witnesses = section_bound(weight, geom, grid, blocks, axis, beat, rounding,
                                             executor, best=min(bounds.values()))
        bounds[f"exact axis {axis}"] = value
        if witnesses and value <= min(bounds.values()):
            chosen = witnesses
            if floor is not None:
                low = floor(witnesses)
        step()
    return chosen


def _matrix(weight, geom: ConvGeometry) -> sp.csr_array:
    """The layer's sparse matrix."""
    return conv_matrix(weight, geom.input_shape, stride=geom.stride, padding=geom.padding,
                       dilation=geom.dilation, groups=geom.groups,
                       padding_mode=geom.padding_mode)


def _operator(weight, geom: ConvGeometry, dtype=None) -> ConvOperator:
    """The layer's operator (in ``dtype``, default the weight's)."""
    return ConvOperator(weight, geom.input_shape, stride=geom.stride, padding=geom.padding,
                        dilation=geom.dilation, groups=geom.groups,
                        padding_mode=geom.padding_mode, dtype=dtype)


def _single_operator(weight, geom: ConvGeometry) -> ConvOperator | None:
    """The layer's operator in single precision, for the Lanczos search (:func:`lower_bound`),
    or ``None`` if its products' scratch memory, beside the double-precision operator's, would
    not fit the memory limit (the search then stays in double precision)."""
    complex_ = weight.dtype.kind == "c"
    double = forward_bytes(geom, 1, 16 if complex_ else 8)
    if not fits(3 * double // 2 + 12 * max(geom.shape) * (8 if complex_ else 4)):
        return None
    return _operator(weight, geom, np.complex64 if complex_ else np.float32)


class _Stages:
    """``progress(done, total)`` over a bound's stages (an audit: only the circulant bound's
    chunks of frequencies were reported, before the longer stages even began): those chunks,
    then one step per later stage -- each exact section, the Lanczos lower bound, the
    whole-Gram certificate -- of the ``later`` that may run; :meth:`finish` makes the last
    call ``(total, total)`` whichever of them ran."""

    def __init__(self, progress: ProgressLike | None, later: int) -> None:
        self.progress, self.later, self.chunks, self.done = progress, later, 0, 0
        self.last: tuple[int, int] | None = None

    def _say(self, done: int, total: int) -> None:
        self.last = (done, total)
        if self.progress is not None:
            self.progress(done, total)

    def chunk(self, done: int, total: int) -> None:
        """The circulant bound's callback: ``done`` of its ``total`` chunks."""
        self.chunks = total
        self._say(done, total + self.later)

    def step(self) -> None:
        """A later stage finished."""
        self.done = min(self.done + 1, self.later)
        self._say(self.chunks + self.done, self.chunks + self.later)

    def finish(self) -> None:
        """Every stage done (those that did not run counted as done)."""
        total = max(1, self.chunks + self.later)
        if self.last != (total, total):
            self._say(total, total)


def _bounds(weight, geom: ConvGeometry, tol: float, executor=None, progress=None,
            upper_only: bool = False, exact: bool = False, width: float | None = None,
            missed: list[str] | None = None) -> SpectralNorm:
    """Certified bounds of a layer that is neither periodic nor small.

    Zero padding: the circulant bound, then either -- when one banded Cholesky factorization
    of the whole Gram is cheap, or ``exact`` asks for it whatever its cost -- the Lanczos
    lower bound and that factorization just above it (every axis exact; the exact sections
    only if it fails), or the exact sections, then the Lanczos lower bound started from their
    witnesses. Other paddings: the padding's norm times the bounds of the unpadded layer on
    the padded input. ``width``: a relative width asked for; where the interval is wider,
    the whole-Gram factorization runs after all, if it applies and fits the memory limit
    (else ``missed`` gets the reason).
    """
    try:
        op = _operator(weight, geom)
    except MatrixTooLargeError as error:  # say which stage needs the products
        raise MatrixTooLargeError(f"spectral_norm's bounds multiply by the layer, one vector "
                                  f"at a time: {error}") from None
    if not upper_only:  # (a review: method="upper", which runs no Lanczos, was refused)
        check_lanczos_memory(op)  # every stage is sized before the first one starts
    copies = copies_of(geom)  # after the operator, whose scratch memory is checked first
    exact_first = False
    if exact_applies(geom):  # zero, reflect or replicate padding: a whole-Gram proof exists
        nbytes, flops = full_bytes_and_flops(geom, weight.dtype.kind == "c")
        if exact:  # asked for: sized against the memory limit before anything else runs
            check_memory(nbytes, "the Cholesky factorization of the whole Gram matrix "
                         f"({flops:.2e} multiply-adds) of spectral_norm's method='exact'")
        exact_first = exact or (not upper_only and flops <= FULL_FLOPS and fits(nbytes))
    # the stages that may follow the circulant bound: the sections (one per axis), the
    # Lanczos lower bound, the whole-Gram certificate
    stages = _Stages(progress, 0 if upper_only else
                     (0 if exact_first else geom.ndim) + 1 + (exact_first or width is not None))
    if geom.padding_mode == "zeros":
        rounding = Rounding.of(weight, geom.groups)
        grid, certified = _circulant(weight, geom, rounding, executor, stages.chunk)
        bounds = {"circulant": float(certified.max())}

        def floor(found: dict) -> float:  # the quotient of the start vector they give
            x = start_vector(geom, grid, found)
            x = x if weight.dtype.kind == "c" else x.real
            return rounding.quotient_lower(float(np.linalg.norm(op.matvec(x))),
                                           float(np.linalg.norm(x)), max(op.shape))

        witnesses = {} if upper_only or exact_first else _sections(
            weight, geom, grid, certified, bounds, rounding, executor, floor, stages.step)
        start = start_vector(geom, grid, witnesses) if witnesses else np.ones(op.shape[1])
    else:  # A = V P: the unpadded layer V on the padded input, times ||P|| = sqrt(copies)
        padded = (geom.in_channels, *(a.padded_size for a in geom.axes))
        valid = ConvGeometry.from_weight(weight.shape, padded, stride=geom.stride,
                                         dilation=geom.dilation, groups=geom.groups)
        valid_rounding = Rounding.of(weight, geom.groups)
        grid, certified = _circulant(weight, valid, valid_rounding, executor,
                                     stages.chunk)
        valid_bounds = {"circulant": float(certified.max())}
        scale = up(math.sqrt(copies), 2)

        def times_padding(found: dict) -> dict:
            return {f"padding x {name}": up(scale * value, 2) for name, value in found.items()}

        if not upper_only and not exact_first:
            _sections(weight, valid, grid, certified, valid_bounds, valid_rounding, executor,
                      step=stages.step)
        bounds = times_padding(valid_bounds)
        start = np.ones(op.shape[1])
    upper = min(bounds.values())
    rounding = Rounding.of(weight, geom.groups, copies)
    if upper_only:  # one certified quotient of the start vector: cheap, and loose
        lower = rounding.quotient_lower(float(np.linalg.norm(op.matvec(start))),
                                        float(np.linalg.norm(start)), max(op.shape))
        stages.finish()
        return _checked(upper, lower, upper, "upper", bounds, False)
    gram = functools.partial(gram_operator, weight, geom)
    lower, converged, vector = lower_bound(
        op, start, tol, rounding, upper=upper, gram=gram,
        single=functools.partial(_single_operator, weight, geom))

    def refined(lower: float, converged: bool, upper: float) -> tuple[float, bool]:
        """A long 1-D input: the top gap can be too small for Lanczos, not for Lanczos on
        the inverse of the banded ``mu I - G`` (``mu`` above ``upper ** 2``)."""
        if converged or geom.ndim != 1:
            return lower, converged
        found = banded_lower_bound(op, weight, geom, upper, tol, rounding)
        return found if found is not None and found[0] >= lower else (lower, converged)

    lower, converged = refined(lower, converged, upper)
    stages.step()
    full = exact_first and upper - lower > max(tol, 1e-6) * upper
    if width is not None and not full and upper - lower > width * upper:
        if exact_first:
            full = True
        elif not exact_applies(geom):
            _say(missed, "circular padding that is not periodic has no whole-Gram proof")
        elif not fits(nbytes):
            _say(missed, f"the whole-Gram factorization that would narrow it needs "
                 f"{format_bytes(nbytes)}, over the memory limit (sparseconv.set_memory_limit)")
        else:
            full = True
    if full:
        # each group's circulant bound (zero padding), or none: every group is factorized
        groups = certified.reshape(-1, geom.groups).max(axis=0) if copies == 1 else None

        def certificate(lower: float, lifted: list[float] | None = None) -> float:
            with reusing():  # one group's band memory serves the next, dropped after them
                return full_bound(weight, geom, lower, Rounding.of(weight, geom.groups), tol,
                                  groups, executor, copies, lifted)

        # the whole Gram's certificate; where Lanczos claims tol, first at (1 + tol) lower
        # alone, which decides the claim (lifts), else every lift in one factorization run
        first, *higher = lifts(tol)
        bounds["exact"] = certificate(lower, [first] if converged else None)
        if bounds["exact"] == math.inf and converged:  # an eigenvalue above: Lanczos settled
            # below the top (a nearly double top its Krylov space held little of), and the
            # search runs again off the vector it found
            found = lower_bound(op, start, tol, rounding, upper=upper, gram=gram,
                                deflate=vector)
            if found[0] > lower:
                lower, converged, vector = found
                bounds["exact"] = certificate(lower, [first])
            if bounds["exact"] == math.inf:  # lower is more than tol below the norm
                converged = False
                bounds["exact"] = certificate(lower, higher)
        converged = converged or bounds["exact"] <= lower * (1 + tol)  # (proved so)
        if min(bounds.values()) < upper and not converged:  # mu closer above: the inverse's
            # gaps wider; the certificate then placed again, just above the better bound
            # (one axis: both cost a banded factorization)
            before = lower
            lower, converged = refined(lower, converged, min(bounds.values()))
            if lower > before:
                bounds["exact"] = min(bounds["exact"], certificate(lower))
        stages.step()
        if bounds["exact"] == math.inf and exact_first:  # no candidate proved: the sections
            # (skipped before it), as for a large layer
            if geom.padding_mode == "zeros":
                _sections(weight, geom, grid, certified, bounds, rounding, executor)
            else:
                _sections(weight, valid, grid, certified, valid_bounds, valid_rounding, executor)
                bounds.update(times_padding(valid_bounds))
        upper = min(bounds.values())
        if width is not None and upper - lower > width * upper:
            _say(missed, "the whole-Gram certificate proved none of its bounds just above the "
                 "lower bound" if bounds["exact"] == math.inf else "the whole-Gram "
                 "certificate is placed at least 1e-8 above the square of the lower bound, "
                 "its rounding allowance above that (relative widths from about 5e-9)")
    stages.finish()
    return _checked(lower, lower, upper, "bounds", bounds, converged)


def _say(missed: list[str] | None, reason: str) -> None:
    """Note why a relative width asked for was not reached (``missed``: where, if anywhere)."""
    if missed is not None:
        missed.append(reason)


# ---------------------------------------------------------------------------------------------
# The public function.
# ---------------------------------------------------------------------------------------------
def _scaled(result: SpectralNorm, exponent: int, tol: float) -> SpectralNorm:
    """``result`` for weights ``2**exponent`` times those it was computed for: exact, unless
    a bound leaves the normal range (then rounded outward, :func:`sparseconv._rounding.scaled`).
    A lower bound that loses more than ``tol / 8`` of itself so (a subnormal norm holds few
    bits) is no longer within ``tol`` as far as anything can tell: ``converged`` is False."""
    lower = scaled(result.lower, exponent, False)
    lost = result.lower > 0 and result.lower - scaled(lower, -exponent) > tol / 8 * result.lower
    return SpectralNorm(scaled(result.value, exponent), lower,
                        scaled(result.upper, exponent, True), result.method,
                        {k: scaled(v, exponent, True) for k, v in result.bounds.items()},
                        result.converged and not lost)


#: ``spectral_norm``'s and ``spectral_norms``' default ``tol`` (the command line's too).
DEFAULT_TOL = 1e-7


def exact_applies(geom: ConvGeometry) -> bool:
    """Whether ``method="exact"`` can bound the layer: zero, reflect or replicate padding
    (their Gram matrices are banded alike), a periodic layer, or no padding at all (circular
    padding that is not periodic has no whole-Gram proof: its reads wrap around the grid;
    callers that take it for a whole network, or from a command-line flag, keep ``"auto"``
    there)."""
    return geom.padding_mode != "circular" or is_periodic(geom) or geom.unpadded


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
    tol = real_number(tol, name, low=0.0, high=1.0, low_open=True)
    if tol < MIN_TOL:
        raise ValueError(f"{name}={tol:g} is below {MIN_TOL:g}, closer than a float64 lower "
                         "bound can be told from the norm (its quotient alone is rounded by "
                         f"about 1e-16 of it): pass {MIN_TOL:g} or more")
    return tol


def checked_relative_width(relative_width, method: str) -> float | None:
    """``spectral_norm``'s ``relative_width``: ``None``, or a number in ``(0, 1)`` with a
    method that computes a lower bound."""
    if relative_width is None:
        return None
    relative_width = real_number(relative_width, "relative_width", low=0.0, high=1.0,
                                 low_open=True, high_open=True)
    if method == "upper":
        raise ValueError(f"relative_width={relative_width:g} needs a lower bound, and "
                         "method='upper' computes none: pass another method")
    return relative_width


def checked_options(method, tol) -> tuple[str, float]:
    """``spectral_norm``'s ``method`` and ``tol``, validated."""
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    return method, checked_tol(tol)


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
    method : {"auto", "fft", "dense", "bounds", "upper", "exact"}
        ``"fft"``: exact, for periodic circular layers. ``"dense"``: SVD of the explicit
        matrix. ``"bounds"``: a Lanczos lower bound and certified upper bounds (zero padding:
        tight; reflect, replicate and non-periodic circular padding: the padding's own norm
        times the bound of the unpadded layer, looser -- by up to the square root of the most
        copies of one input, 2 for a 2-D padding of 1 on inputs of 4 or more -- except where
        the whole-Gram certificate below is cheap). ``"upper"``: the cheap certified upper
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
    tol : float
        The relative accuracy asked of the lower bound, in ``[1e-15, 1)``: the Lanczos
        iteration stops when the residual of its top Ritz pair shows the estimate within
        ``tol`` of the norm (at most 300 steps; on one axis, where that is short -- a long
        input's top singular values crowd together -- Lanczos on the inverse of ``mu I -
        A^H A``, banded, ``mu`` just above the upper bound, goes on); ``converged`` on the
        result says whether it got there.
    relative_width : float, optional
        The relative width ``(upper - lower) / upper`` asked of the interval, in ``(0, 1)``:
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
        ``(total, total)`` (``(1, 1)`` for the dense and ``1x1`` routes, which have one step).

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
    (a relative ``1e-15`` to ``1e-10``, derived in :mod:`sparseconv._rounding`; the user
    guide's "How the bounds are proved" has every derivation).

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
    if not weight.any() or geom.nnz() == 0:  # (no tap reads an input: zero padding only)
        return SpectralNorm(0.0, 0.0, 0.0, "zero", {"zero": 0.0}), None
    parts = residue_layers(geom) if _route(geom, method) == "bounds" else None
    if parts is not None:
        return _by_residues(weight, geom, parts, method, tol, relative_width, executor,
                            progress)
    tol = lanczos_tol(tol, relative_width)
    weight = weight.astype(np.complex128 if weight.dtype.kind == "c" else np.float64)
    weight, exponent = unit_scale(weight)  # exact; the results are scaled back by 2**exponent
    reasons: list[str] = []
    route = _route(geom, method)
    if route == "1x1":
        result = _pointwise(weight, geom)
    elif route == "fft":
        result = _fft(weight, geom, executor, progress)
    elif route == "dense":
        result = _dense(weight, geom)
    if route in ("1x1", "dense") and progress is not None:
        progress(1, 1)  # one step, done
    if route not in ("1x1", "fft", "dense"):
        result = _bounds(weight, geom, tol, executor, progress, upper_only=method == "upper",
                         exact=method == "exact", width=relative_width, missed=reasons)
    result = _scaled(result, exponent, tol)
    if route in ("1x1", "fft", "dense") and result.lower < (1 - tol) * result.upper:
        # the exact interval is the rounding allowance, sized by the weight: taps that cancel
        # or never read an input can leave a norm below it (a review: a 1e-9 norm beside a
        # tap of 1 that reads only padding, its lower bound 6.7e-7 short, said converged)
        result = dataclasses.replace(result, converged=False)
    missed = width_missed(result, relative_width, tol, reasons)
    if missed is not None and route == "bounds" and _route(geom, "auto") == "dense":
        # a review: method="bounds" on a small layer that the dense route proves exactly
        missed += "; method='auto' proves a layer this small by its dense SVD"
    return result, missed


def residue_layers(geom: ConvGeometry) -> list[tuple[tuple[int, tuple[int, int], int], ...]] | None:
    """The undilated layers a zero-padded layer splits into along its dilated axes of stride
    1, or ``None`` where it has none: per distinct layer, ``(size, (lo, hi), dilation)`` per
    axis.

    Along such an axis (dilation ``d``, padding ``lo``, kernel ``k``), output ``o`` reads the
    inputs ``o - lo + t d``: all of one residue ``r`` modulo ``d``. So, up to a permutation of
    its rows and columns, the layer is the direct sum over the residues of the undilated
    layer from the inputs ``r + d j`` (``n_r`` of them) to the outputs ``lo + r + d q``, ``q``
    from ``-((lo + r) // d)``: padded by ``(lo + r) // d`` below, and as many above as its
    outputs need. Its norm is the largest of theirs, and a few sizes and paddings cover
    every residue (a new user's trial: a dilation of 60 on 200x200 was bounded on the whole
    grid, 8% wide, where its blocks of 4x4 are each a dense SVD).
    """
    if geom.padding_mode != "zeros" or all(a.stride != 1 or a.dilation == 1 for a in geom.axes):
        return None
    per_axis = []
    for a in geom.axes:
        if a.stride != 1 or a.dilation == 1:
            per_axis.append([(a.size, a.pad, a.dilation)])
            continue
        d, lo = a.dilation, a.pad[0]
        distinct: list[tuple[int, tuple[int, int], int]] = []
        for r in range(min(d, a.size)):
            size = (a.size - r + d - 1) // d
            low = (lo + r) // d
            outputs = (a.output_size - 1 - lo - r) // d + low + 1
            high = outputs + a.kernel_size - 1 - size - low
            if outputs < 1:  # every output of this residue reads padding alone: a zero block
                continue
            if high < 0:  # pragma: no cover - an output past the last input reads its residue
                return None
            if (size, (low, high), 1) not in distinct:
                distinct.append((size, (low, high), 1))
        per_axis.append(distinct)
    if not all(per_axis):  # no output reads an input: the zero layer, answered before
        return None
    return list(itertools.product(*per_axis))


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
    return _checked(max(result.value for result in results),
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
    if not result.converged:
        reasons = [*reasons, f"the lower bound did not converge to tol={tol:.3g}"]
    because = "; ".join(reasons) or "the certificates reached no closer"
    return (f"the certified interval's relative width {result.relative_width:.2e} is over "
            f"relative_width={relative_width:g}: {because}")
