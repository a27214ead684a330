"""The ``"bounds"`` route of :func:`sparseconv.spectral_norm`: a layer neither periodic nor
small, on weights scaled to ``[1/2, 1)``.

Above: the circulant embedding (:mod:`sparseconv._certificates`), then the exact sections
(:mod:`sparseconv._exact_sections`) or, where its factorization is cheap or asked for, the
whole Gram's Cholesky certificate (:mod:`sparseconv._whole_gram`). Below: the Lanczos
Rayleigh quotient (:mod:`sparseconv._lanczos`). Reflect, replicate and non-periodic
circular padding: ``A = V P`` with ``P`` the padding, ``||P||^2`` the largest number of
copies of one input entry, ``V`` the unpadded layer on the padded input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from ._certificates import circulant_uppers, embedding_grid, periodic_geometry
from ._exact_sections import section_bound, section_bytes
from ._geometry import ConvGeometry, copies_of
from ._gram_operator import gram_operator
from ._lanczos import banded_lower_bound, check_lanczos_memory, lower_bound, start_vector
from ._memory import MatrixTooLargeError, check_memory, fits, format_bytes
from ._norm_result import SpectralNorm, checked_result
from ._operators import ConvOperator
from ._products import forward_bytes
from ._rounding import Rounding, up
from ._symbol import is_periodic
from ._typing import ProgressLike
from ._whole_gram import FULL_FLOPS, full_bound, full_bytes_and_flops, lifts
from ._workspace import reusing

__all__ = ["SECTION_GAIN", "bounds_norm", "exact_applies", "layer_operator", "single_operator"]


def exact_applies(geom: ConvGeometry) -> bool:
    """Whether ``method="exact"`` can bound the layer: zero, reflect or replicate padding
    (their Gram matrices are banded alike), a periodic layer, or no padding at all (circular
    padding that is not periodic has no whole-Gram proof: its reads wrap around the grid;
    callers that take it for a whole network, or from a command-line flag, keep ``"auto"``
    there)."""
    return geom.padding_mode != "circular" or is_periodic(geom) or geom.unpadded


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


def layer_operator(weight, geom: ConvGeometry, dtype=None) -> ConvOperator:
    """The layer's operator (in ``dtype``, default the weight's)."""
    return ConvOperator(weight, geom.input_shape, stride=geom.stride, padding=geom.padding,
                        dilation=geom.dilation, groups=geom.groups,
                        padding_mode=geom.padding_mode, dtype=dtype)


def single_operator(weight, geom: ConvGeometry) -> ConvOperator | None:
    """The layer's operator in single precision, for the Lanczos search (:func:`lower_bound`),
    or ``None`` if its products' scratch memory, beside the double-precision operator's, would
    not fit the memory limit (the search then stays in double precision)."""
    complex_ = weight.dtype.kind == "c"
    double = forward_bytes(geom, 1, 16 if complex_ else 8)
    if not fits(3 * double // 2 + 12 * max(geom.shape) * (8 if complex_ else 4)):
        return None
    return layer_operator(weight, geom, np.complex64 if complex_ else np.float32)


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


def bounds_norm(weight, geom: ConvGeometry, tol: float, executor=None, progress=None,
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
        op = layer_operator(weight, geom)
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
        return checked_result(upper, lower, upper, "upper", bounds, False)
    gram = functools.partial(gram_operator, weight, geom)
    lower, converged, vector = lower_bound(
        op, start, tol, rounding, upper=upper, gram=gram,
        single=functools.partial(single_operator, weight, geom))

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
    return checked_result(lower, lower, upper, "bounds", bounds, converged)


def _say(missed: list[str] | None, reason: str) -> None:
    """Note why a relative width asked for was not reached (``missed``: where, if anywhere)."""
    if missed is not None:
        missed.append(reason)
