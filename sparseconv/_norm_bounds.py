"""The ``"bounds"`` route of :func:`sparseconv.spectral_norm`: a layer neither periodic nor
small, on weights scaled to ``[1/2, 1)``.

Above: the circulant embedding (:mod:`sparseconv._certificates`), then the exact sections
(:mod:`sparseconv._exact_sections`) or, where its factorization is cheap or asked for, the
whole Gram's Cholesky certificate (:mod:`sparseconv._whole_gram`). Below: the Lanczos
Rayleigh quotient (:mod:`sparseconv._lanczos`).

Reflect, replicate and non-periodic circular padding: ``A = V P`` with ``P`` the padding,
``||P||^2`` the largest number of copies of one input entry (``P^T P`` is diagonal, each
entry counting the padded positions that copy one input), ``V`` the unpadded layer on the
padded input; so ``||A|| <= ||P|| ||V||``, ``V`` bounded as it would be alone (its circulant
bound, its exact sections, and its whole-Gram certificate where that is cheap).

Circular padding that is not periodic has a second bound, often much closer. On an axis of
size ``n``, output ``i`` reads the inputs ``(i s + t d - p) mod n``; the periodic layer of
stride ``s' = gcd(s, n)`` on the same grid (``s`` itself where it divides ``n``), its input
shifted by ``p`` (a permutation: the same singular values), has output ``j`` read
``(j s' + t d) mod n``. As ``s'`` divides both ``s`` and ``n``, the layer's output ``i`` is
that layer's row ``(i s / s') mod (n / s')``, and ``A = R B`` with ``B`` the periodic layer
and ``R`` a selection of its rows, some perhaps taken more than once (where the outputs wrap
around the grid); ``R^T R`` is diagonal, of largest entry ``c``, the product over the axes
of the most times one row is taken. Hence ``||A|| <= sqrt(c) ||B||``, and ``||B||`` is its
circulant bound on its own grid, certified per frequency (:mod:`sparseconv._certificates`),
its entries those of ``A`` (the same sums of taps that wrap onto one input). ``sqrt(c)`` is
rounded up, and its product with the bound too (``bounds["periodic rows"]``; a kernel wider
than twice the input, whose periodic padding PyTorch's limit refuses, does without it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from ._certificates import circulant_uppers, embedding_grid, periodic_geometry
from ._exact_sections import section_bound, section_bytes
from ._geometry import ConvGeometry, copies_of, periodic_padding
from ._gram_operator import gram_operator
from ._lanczos import banded_lower_bound, check_lanczos_memory, lower_bound, start_vector
from ._memory import MatrixTooLargeError, check_memory, fits, format_bytes, reworded
from ._norm_result import SpectralNorm, checked_result
from ._operators import ConvOperator
from ._products import forward_bytes
from ._rounding import Rounding, up
from ._symbol import is_periodic
from ._typing import ProgressLike
from ._whole_gram import FULL_FLOPS, full_bound, full_bytes_and_flops, lifts
from ._workspace import reusing

__all__ = ["SECTION_GAIN", "bounds_norm", "exact_applies", "layer_operator", "periodic_rows",
           "single_operator"]


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


def _wrapped_rows(geom: ConvGeometry) -> tuple[list[int], int]:
    """For circular padding that is not periodic: per axis, the stride of a periodic layer on
    the same grid whose rows hold the layer's (``gcd(s, n)``: the layer's own stride where it
    divides the input size), and the product over the axes of the most times the layer takes
    one of its rows.

    Output ``i`` reads ``(i s + t d - pad) mod n``: row ``(i s // s') mod (n / s')`` of the
    periodic layer of stride ``s'`` (its input shifted by the padding, a unitary relabelling).
    """
    strides, copies = [], 1
    for a in geom.axes:
        step = math.gcd(a.stride, a.size)
        period = a.size // step
        rows = np.arange(a.output_size) * (a.stride // step) % period
        copies *= int(np.bincount(rows).max())  # (counted in one pass: outputs in millions)
        strides.append(step)
    return strides, copies


def periodic_rows(weight_shape, geom: ConvGeometry) -> tuple[ConvGeometry, int] | None:
    """For circular padding that is not periodic: the periodic layer on the same grid whose
    rows the layer's rows are (:func:`_wrapped_rows`), and ``c``, the most times the layer
    takes one of them: its norm is at most ``sqrt(c)`` times that layer's. None for other
    padding, or where the periodic layer's padding would be over the input (a kernel wider
    than twice the input: PyTorch's limit)."""
    if geom.padding_mode != "circular" or is_periodic(geom):
        return None
    if any(hi > a.size for a, (_, hi) in zip(geom.axes, periodic_padding(geom.kernel_size,
                                                                          geom.dilation))):
        return None
    strides, copies = _wrapped_rows(geom)
    return periodic_geometry(weight_shape, geom, [a.size for a in geom.axes], strides), copies


def _wrapped_rows_bound(weight, geom: ConvGeometry, rounding: Rounding,
                        executor=None) -> float | None:
    """The certified bound of :func:`periodic_rows` (``sqrt(c)`` times the periodic layer's
    circulant bound, which is its norm), or None where there is none."""
    rows = periodic_rows(weight.shape, geom)
    if rows is None:
        return None
    periodic, copies = rows
    top = float(circulant_uppers(weight, periodic, rounding, executor).max())
    return top if copies == 1 else up(up(math.sqrt(copies), 2) * top, 2)


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


@dataclass
class _Above:
    """A layer's upper bounds: on its own grid (zero padding, ``scale`` None) or, for ``A = V
    P``, the unpadded layer ``V`` on the padded input, each of whose bounds times ``scale``
    (``||P||``, rounded up) bounds the layer. ``own``: the bounds of ``on``, the geometry the
    circulant bound and the exact sections run on. ``periodic``: a periodic layer, whose
    circulant bound is its norm (up to rounding): the sections are skipped. ``extra``: bounds
    of the layer itself beside them (:func:`_wrapped_rows_bound`)."""

    weight: np.ndarray
    on: ConvGeometry
    rounding: Rounding
    grid: list
    certified: np.ndarray
    own: dict
    scale: float | None
    periodic: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def circulant(cls, weight, geom: ConvGeometry, executor, chunk) -> _Above:
        """The circulant bound, ``chunk(done, total)`` called as its frequencies are done."""
        on, scale = geom, None
        rounding = Rounding.of(weight, geom.groups)
        if is_periodic(geom):  # its own grid's circulant bound is its norm: no embedding, no
            # padding factor, no section to tighten it (method="bounds" on a 64-channel
            # periodic layer bounded the padding and the unpadded layer, 1.2x above its
            # norm, then factorized the whole Gram: minutes, where the FFT takes 0.3 s)
            certified = circulant_uppers(weight, geom, rounding, executor, chunk)
            return cls(weight, geom, rounding, [a.size for a in geom.axes], certified,
                       {"circulant": float(certified.max())}, None, periodic=True)
        if geom.padding_mode != "zeros":
            padded = (geom.in_channels, *(a.padded_size for a in geom.axes))
            on = ConvGeometry.from_weight(weight.shape, padded, stride=geom.stride,
                                          dilation=geom.dilation, groups=geom.groups)
            scale = up(math.sqrt(copies_of(geom)), 2)
        grid, certified = _circulant(weight, on, rounding, executor, chunk)
        wrapped = _wrapped_rows_bound(weight, geom, rounding, executor)
        return cls(weight, on, rounding, grid, certified, {"circulant": float(certified.max())},
                   scale, extra={} if wrapped is None else {"periodic rows": wrapped})

    def sections(self, executor, floor=None, step: Callable[[], None] = lambda: None) -> dict:
        """:func:`_sections` on ``on``, into ``own`` (none on a periodic layer)."""
        if self.periodic:
            return {}
        return _sections(self.weight, self.on, self.grid, self.certified, self.own,
                         self.rounding, executor, floor, step)

    def unpadded_exact(self, tol: float, executor) -> None:
        """Adds to ``own`` the whole-Gram certificate of the unpadded layer ``V`` (``A = V
        P``), where it is cheap, as :func:`spectral_norm` of ``V`` alone takes it: just above
        ``V``'s own Lanczos lower bound (a new user's trial: a reflect-padded 8 -> 3 7x7 layer
        on 64x64, whose own whole Gram is over the budget, got 2 x 0.97451 from the sections,
        where its convolution alone, unpadded, got 0.97266 from that certificate: the layer
        folded with its padding module was bounded looser than the two apart)."""
        cheap, _ = _whole_gram_first(self.weight, self.on, False, False)
        if not cheap:
            return
        try:  # (a review: its Lanczos vectors, of the padded size, over the memory limit
            # that the layer's own had passed, raised: skipped, as a section that does not
            # fit is)
            op = layer_operator(self.weight, self.on)
            check_lanczos_memory(op)
        except MatrixTooLargeError:
            return
        rounding = Rounding.of(self.weight, self.on.groups, copies_of(self.on))
        below = _Below(self.weight, self.on, op, np.ones(op.shape[1]), tol, rounding, executor)
        upper = min(self.own.values())
        lower, converged, vector = below.lanczos(upper)
        groups = self.certified.reshape(-1, self.on.groups).max(axis=0)
        exact = below.certified(lower, converged, vector, upper, groups)[2]
        if math.isfinite(exact):
            self.own["exact"] = exact

    def bounds(self) -> dict:
        """The layer's upper bounds, by name (a new dict)."""
        if self.scale is None:
            return {**self.own, **self.extra}
        return {**{f"padding x {name}": up(self.scale * value, 2)
                   for name, value in self.own.items()}, **self.extra}


@dataclass
class _Below:
    """The Lanczos lower bound of a layer (``op``, its ``rounding`` with the padding's copies)
    and the whole-Gram certificate placed just above it."""

    weight: np.ndarray
    geom: ConvGeometry
    op: ConvOperator
    start: np.ndarray
    tol: float
    rounding: Rounding
    executor: Executor | None

    def lanczos(self, upper: float, deflate: np.ndarray | None = None,
                ) -> tuple[float, bool, np.ndarray]:
        """:func:`lower_bound` from ``start`` (projected off ``deflate``), below ``upper``."""
        weight, geom = self.weight, self.geom
        return lower_bound(self.op, self.start, self.tol, self.rounding, upper=upper,
                           gram=functools.partial(gram_operator, weight, geom),
                           single=functools.partial(single_operator, weight, geom),
                           deflate=deflate)

    def refined(self, lower: float, converged: bool, upper: float) -> tuple[float, bool]:
        """A long 1-D input: the top gap can be too small for Lanczos, not for Lanczos on
        the inverse of the banded ``mu I - G`` (``mu`` above ``upper ** 2``)."""
        if converged or self.geom.ndim != 1:
            return lower, converged
        found = banded_lower_bound(self.op, self.weight, self.geom, upper, self.tol,
                                   self.rounding)
        return found if found is not None and found[0] >= lower else (lower, converged)

    def certificate(self, lower: float, groups: np.ndarray | None,
                    lifted: list[float] | None = None) -> float:
        """:func:`full_bound` just above ``lower`` (``groups``: each group's circulant bound,
        or None: every group is factorized)."""
        with reusing():  # one group's band memory serves the next, dropped after them
            return full_bound(self.weight, self.geom, lower,
                              Rounding.of(self.weight, self.geom.groups), self.tol, groups,
                              self.executor, copies_of(self.geom), lifted)

    def certified(self, lower: float, converged: bool, vector: np.ndarray, upper: float,
                  groups: np.ndarray | None) -> tuple[float, bool, float]:
        """``(lower, converged, exact)``: the whole Gram's certificate ``exact`` and the
        lower bound it settles. Where Lanczos claims ``tol``, the certificate runs first at
        ``(1 + tol)`` times the lower bound alone, which decides the claim (:func:`lifts`),
        else at every lift in one factorization run. ``upper``: the best other upper bound."""
        first, *higher = lifts(self.tol)
        exact = self.certificate(lower, groups, [first] if converged else None)
        if exact == math.inf and converged:  # an eigenvalue above: Lanczos settled below the
            # top (a nearly double top its Krylov space held little of), and the search runs
            # again off the vector it found
            found = self.lanczos(upper, deflate=vector)
            if found[0] > lower:
                lower, converged, vector = found
                exact = self.certificate(lower, groups, [first])
            if exact == math.inf:  # lower is more than tol below the norm
                converged = False
                exact = self.certificate(lower, groups, higher)
        converged = converged or exact <= lower * (1 + self.tol)  # (proved so)
        if exact < upper and not converged:  # mu closer above: the inverse's gaps
            # wider; the certificate then placed again, just above the better bound (one
            # axis: both cost a banded factorization)
            before = lower
            lower, converged = self.refined(lower, converged, exact)
            if lower > before:
                exact = min(exact, self.certificate(lower, groups))
        return lower, converged, exact


def _whole_gram_first(weight, geom: ConvGeometry, upper_only: bool, exact: bool,
                      ) -> tuple[bool, int | None]:
    """Whether the whole-Gram certificate replaces the exact sections (it is cheap, or
    ``exact`` asks for it whatever its cost: then sized against the memory limit here, before
    anything else runs), and its bytes (None where no whole-Gram proof applies)."""
    if not exact_applies(geom):
        return False, None
    nbytes, flops = full_bytes_and_flops(geom, weight.dtype.kind == "c")
    if exact:
        check_memory(nbytes, "the Cholesky factorization of the whole Gram matrix "
                     f"({flops:.2e} multiply-adds) of spectral_norm's method='exact'")
    return exact or (not upper_only and flops <= FULL_FLOPS and fits(nbytes)), nbytes


def _whole_gram_for_width(nbytes: int | None, missed: list[str] | None) -> bool:
    """Whether the whole-Gram certificate can run for a relative width asked for (else
    ``missed`` gets the reason)."""
    if nbytes is None:
        _say(missed, "circular padding that is not periodic has no whole-Gram proof")
        return False
    if not fits(nbytes):
        _say(missed, f"the whole-Gram factorization that would narrow it needs "
             f"{format_bytes(nbytes)}, over the memory limit (sparseconv.set_memory_limit)")
        return False
    return True


def bounds_norm(weight, geom: ConvGeometry, tol: float, executor=None, progress=None,
                upper_only: bool = False, exact: bool = False, width: float | None = None,
                missed: list[str] | None = None) -> SpectralNorm:
    """Certified bounds of a layer (``method="auto"`` sends only those neither periodic nor
    small here).

    A periodic layer: the circulant bound on its own grid (its norm, up to rounding), then
    the Lanczos lower bound. Zero padding: the circulant bound, then either -- when one
    banded Cholesky factorization of the whole Gram is cheap, or ``exact`` asks for it
    whatever its cost -- the Lanczos lower bound and that factorization just above it (every
    axis exact; the exact sections only if it fails), or the exact sections, then the Lanczos
    lower bound started from their witnesses. Other paddings: the padding's norm times the
    bounds of the unpadded layer on the padded input. ``width``: a relative width asked for;
    where the interval is wider, the whole-Gram factorization runs after all, if it applies
    and fits the memory limit (else ``missed`` gets the reason).
    """
    try:
        op = layer_operator(weight, geom)
    except MatrixTooLargeError as error:  # say which stage needs the products
        raise reworded(error, f"spectral_norm's bounds multiply by the layer, one vector at a "
                              f"time: {error}") from None
    if not upper_only:  # (a review: method="upper", which runs no Lanczos, was refused)
        check_lanczos_memory(op)  # every stage is sized before the first one starts
    exact_first, nbytes = _whole_gram_first(weight, geom, upper_only, exact)
    # the stages that may follow the circulant bound: the sections (one per axis), the
    # Lanczos lower bound, the whole-Gram certificate
    stages = _Stages(progress, 0 if upper_only else
                     (0 if exact_first or is_periodic(geom) else geom.ndim) + 1
                     + (exact_first or width is not None))
    above = _Above.circulant(weight, geom, executor, stages.chunk)
    rounding = Rounding.of(weight, geom.groups, copies_of(geom))
    start = np.ones(op.shape[1])
    if not upper_only and not exact_first:
        if above.scale is None:  # zero padding: Lanczos starts from the sections' witnesses

            def floor(found: dict) -> float:  # the quotient of the start vector they give
                x = start_vector(geom, above.grid, found)
                x = x if weight.dtype.kind == "c" else x.real
                return rounding.quotient_lower(float(np.linalg.norm(op.matvec(x))),
                                               float(np.linalg.norm(x)), max(op.shape))

            witnesses = above.sections(executor, floor, stages.step)
            if witnesses:
                start = start_vector(geom, above.grid, witnesses)
        else:
            above.sections(executor, step=stages.step)
    if not upper_only and not exact_first and above.scale is not None:
        above.unpadded_exact(tol, executor)
    bounds = above.bounds()
    upper = min(bounds.values())
    if upper_only:  # one certified quotient of the start vector: cheap, and loose
        lower = rounding.quotient_lower(float(np.linalg.norm(op.matvec(start))),
                                        float(np.linalg.norm(start)), max(op.shape))
        stages.finish()
        return checked_result(upper, lower, upper, "upper", bounds, False)
    below = _Below(weight, geom, op, start, tol, rounding, executor)
    lower, converged, vector = below.lanczos(upper)
    lower, converged = below.refined(lower, converged, upper)
    stages.step()
    # (method="exact" asks for the width tol; elsewhere the cheap certificate runs where the
    # interval is over 1e-6 wide)
    full = exact_first and upper - lower > (tol if exact else max(tol, 1e-6)) * upper
    if width is not None and not full and upper - lower > width * upper:
        full = exact_first or _whole_gram_for_width(nbytes, missed)
    if full:
        # each group's circulant bound (zero padding), or none: every group is factorized
        groups = above.certified.reshape(-1, geom.groups).max(axis=0) \
            if above.scale is None else None
        lower, converged, bounds["exact"] = below.certified(lower, converged, vector, upper,
                                                            groups)
        stages.step()
        if bounds["exact"] == math.inf and exact_first:  # no candidate proved: the sections
            # (skipped before it), as for a large layer
            above.sections(executor)
            bounds.update(above.bounds())
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
