"""The whole-Gram certificate: an upper bound on a layer's norm with every axis exact.

The Gram matrix of the whole layer (of each group), position-major over the grid in C order,
is banded too (:class:`sparseconv._section_gram.SectionGram` over the layer's own gather
map); one Cholesky factorization of ``mu I - A^H A`` at ``mu`` just above the square of a
lower bound proves ``||A||^2 <= mu``, up to the allowance of
:func:`sparseconv._section_gram._certified_square`. It closes the gap the exact sections leave
on small grids with many channels, at the price of a factorization whose multiply-adds grow as
``channels^3`` times the grid's size times its first axis's band (:func:`full_route` picks the
side, ``T^H T`` or ``T T^H``, and the storage: LAPACK's band, or block rows of the grid's first
axis by :mod:`sparseconv._block_cholesky`, within the memory limit).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from ._block_cholesky import block_bytes, block_flops
from ._geometry import ConvGeometry
from ._memory import fits
from ._parallel import cpu_count, map_chunks
from ._rounding import Rounding
from ._section_gram import (
    _block_plan,
    _certified_square,
    _depth,
    _gram_sides,
    _reach,
    _transposed_taps,
    section_gram,
)

__all__ = ["FULL_FLOPS", "full_bound", "full_bytes_and_flops", "full_route", "lifts"]


#: The full certificate runs when its Cholesky factorization takes at most this many
#: multiply-adds (:func:`full_bytes_and_flops`): a few seconds of LAPACK.
FULL_FLOPS = 2**37


def _full_sides(geom: ConvGeometry) -> list[tuple[int, int]]:
    """``(rows, bandwidth + 1)`` of the whole layer's ``T^H T`` and of its ``T T^H``."""
    return [(size * c, depth * c) for size, depth, c in _gram_sides(
        geom.axes, geom.in_channels // geom.groups, geom.out_channels // geom.groups)]


def _inputs_side_only(geom: ConvGeometry) -> bool:
    """Whether the whole Gram must be the inputs' ``T^H T``: a padding that copies inputs (a
    tap may read one position twice, so ``T T^H`` has no gather map and no band in closed
    form -- two outputs may read a position and its mirror image)."""
    return geom.padding_mode != "zeros"


@dataclass(frozen=True)
class _Route:
    """One way to factorize the whole layer's Gram matrix: on the inputs' side (``T^H T``)
    or the outputs' (``T T^H``), in band storage (``row`` None) or by block rows of ``row``
    positions of the grid's first axis; its multiply-adds and its memory per group."""

    inputs: bool
    row: int | None
    flops: int
    nbytes: int


def _full_routes(geom: ConvGeometry, complex_: bool) -> list[_Route]:
    """Every route of the whole Gram: both sides (the inputs' alone for a padding that
    copies inputs), each in band storage and, for a layer in two or more dimensions, by
    block rows."""
    first = geom.axes[0]
    c_in, c_out = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    blocks = ((math.prod(geom.input_size[1:]), first.size, _reach(first, True)),
              (math.prod(geom.output_size[1:]), first.output_size, _reach(first, False)))
    itemsize = 16 if complex_ else 8
    taps = math.prod(geom.kernel_size)
    products = (taps * max(c_in, c_out)) ** 2  # the tap products
    inputs_count, outputs_count = math.prod(geom.input_size), math.prod(geom.output_size)
    routes = []
    for (rows, bandwidth), (row, count, below), channels, inputs in zip(
            _full_sides(geom), blocks, (c_in, c_out), (True, False)):
        if not inputs and _inputs_side_only(geom):
            continue
        # where the distinct blocks go (_block_plan, BlockRows): index arrays over every pair
        # of taps of every row of the side's gather map, the outputs' for T^H T (about 60
        # bytes per pair measured: 1.65 GiB for the 7x7 stem of stride 2 on 224x224), and the
        # gather maps themselves
        plan = (outputs_count if inputs else inputs_count) * taps**2 * 96 + (
            inputs_count + outputs_count) * taps * 32
        # the band bounds its distinct blocks too (a few sums of a few tap products)
        routes.append(_Route(inputs, None, rows * bandwidth**2, plan + (
            2 * bandwidth * rows + rows * channels + products) * itemsize))
        if geom.ndim > 1:
            routes.append(_Route(inputs, row, block_flops(count, row * channels, below),
                                 plan + block_bytes(below, row * channels, itemsize) + (
                                     _distinct_blocks(geom, inputs) * channels**2 + products
                                     + rows * channels) * itemsize))
    return routes


def full_route(geom: ConvGeometry, complex_: bool) -> _Route:
    """The route the whole-Gram certificate takes: of those whose memory, for as many groups
    at once as the thread pool runs, fits the memory limit (else of all), the one of the
    fewest multiply-adds by its own count, block rows on a tie.

    The band's count, ``rows * bandwidth**2``, is about twice what ``?pbtrf`` does: per
    multiply-add of those counts the band took 0.52-0.67 of the block rows' time on
    ResNet-18's 14x14 and 7x7 layers (``benchmarks/bench_spectra.py --exact --compare``).
    So the band is taken only where it is faster by a margin (its count below the block
    rows'): it holds the whole band (22 GiB for 64 channels on 56x56, against 1 GiB by
    block rows), whose pages cost time to touch too.
    """
    routes = _full_routes(geom, complex_)
    fitting = [route for route in routes if fits(route.nbytes * _groups_at_once(geom))]
    return min(fitting or routes, key=lambda route: (route.flops, route.row is None))


def _distinct_blocks(geom: ConvGeometry, inputs: bool) -> int:
    """A bound on the distinct ``C x C`` blocks of the whole Gram (of the inputs' side, or
    of the outputs'): the gather map is a product over the axes, so a block's tap pairs are
    the product of one pair set per axis, and each axis has at most twice (offsets of either
    sign) the distinct blocks of its own one-dimensional Gram."""
    count = 1
    for axis in geom.axes:
        taps = axis.tap_index()
        if not inputs:
            taps = _transposed_taps(taps, axis.size)
            if taps is None:  # pragma: no cover - the outputs' side is zero padding's only
                return math.prod(geom.input_size) * math.prod(geom.kernel_size) ** 2
        count *= 2 * max(len(_block_plan(taps)[0]), 1)
    return count


def full_bytes_and_flops(geom: ConvGeometry, complex_: bool = True) -> tuple[int, int]:
    """Memory and multiply-adds of the full certificate, before building it, on its route
    (:func:`full_route`): for as many groups at once as the thread pool runs, and for every
    group."""
    route = full_route(geom, complex_)
    return route.nbytes * _groups_at_once(geom), geom.groups * route.flops


def _groups_at_once(geom: ConvGeometry) -> int:
    """The groups the full certificate factorizes at once: os.cpu_count(), not cpu_count(),
    so that a layer worker takes the route this process would."""
    return min(geom.groups, os.cpu_count() or 1)


def _prove_groups(kernels: np.ndarray, taps: np.ndarray, size: int, candidates: list,
                  tops: np.ndarray | None, route: _Route, group_list: list,
                  ) -> list[tuple[int, int]]:
    """One task of :func:`full_bound`: per group, the first candidate ``mu`` it is proved
    below (``len(candidates)`` if none): by its circulant bound ``tops[g]`` when that is
    below already, else by a Cholesky factorization of its whole Gram on ``route``. With
    it, the bandwidth of the block rows it factorized (0 if none)."""
    proved = []
    for g in group_list:
        gram, first = None, len(candidates)
        try:
            for i, mu in enumerate(candidates):
                if tops is None or tops[g] ** 2 > mu:
                    if gram is None:
                        gram = section_gram(kernels[g], taps, size, route.inputs,
                                            not route.inputs)
                        # block rows on the route's side (section_gram keeps to the inputs'
                        # side where the outputs' has no gather map)
                        same = gram.inputs_side == route.inputs
                        gram.row = route.row if same else None
                    if not gram.below(mu):
                        continue
                first = i
                break
            proved.append((first, gram.block_rows().bandwidth
                           if gram is not None and gram.row is not None else 0))
        finally:
            if gram is not None:
                gram.release()
    return proved


def lifts(tol: float) -> tuple[float, ...]:
    """Where :func:`full_bound` places ``mu``, relative to the square of its estimate: first
    at ``(1 + tol)^2`` times it (at least ``1 + 1e-8``, the resolution its rounding
    allowance leaves), then higher.

    The first decides whether the estimate is within ``tol`` of the norm: proved below it,
    the norm is at most ``(1 + tol)`` times the estimate (and the factorization's rounding,
    some 1e-12); not proved, the whole Gram has an eigenvalue above it (up to that
    rounding), and the estimate is more than ``tol`` below the norm, whatever the Lanczos
    iteration that gave it claimed. (Until 2026-12-04 the first was ``8 tol``: widths near
    ``4 tol``, and a Lanczos that settled up to ``4 tol`` below a nearly double top passed.)"""
    first = max((1 + tol) ** 2 - 1, 1e-8)
    return first, max(8 * first, 1e-5), max(80 * first, 1e-4)


def full_bound(weight, geom: ConvGeometry, estimate: float, rounding: Rounding,
               tol: float, tops: np.ndarray | None = None,
               executor: Executor | None = None, copies: int = 1,
               lifted: Sequence[float] | None = None) -> float:
    """Upper bound on ``||A||`` with every axis exact: ``mu I - A^H A`` proved positive.

    The Gram matrix of each group, position-major, is banded (:class:`SectionGram` over the
    layer's gather map); one Cholesky factorization at ``mu`` just above the square of
    ``estimate`` (a lower bound near the norm) proves ``||A||^2 <= mu`` up to the rounding
    allowance of :func:`_certified_square` -- on the side and by the factorization
    :func:`full_route` picks: in band storage, or, for a real layer in two or more
    dimensions, by block rows of the grid's first axis (:mod:`sparseconv._block_cholesky`:
    BLAS-3 calls on whole block rows, holding a few block rows instead of the whole band);
    the allowance takes the larger bandwidth of the two. ``tops``: a certified upper bound
    on each group's norm, if known (its circulant bound); a group already below
    ``sqrt(mu)`` is not factorized (``A`` is block diagonal over the groups: ``||A|| =
    max_g ||A_g||``). Groups are factorized in parallel
    (:func:`sparseconv._parallel.map_chunks`). The candidates ``mu`` are the square of
    ``estimate`` lifted by each of ``lifted`` (default :func:`lifts`), the first that every
    group is proved below taken; ``math.inf`` when none is.

    Reflect and replicate padding too: their gather map reads positions near the edges more
    than once, ``copies`` times at most through one tap (:func:`_certified_square`'s
    allowance), and one output's reads stay as close together as under zero padding, so the
    Gram of the inputs' side is banded alike (the outputs' side is not: two outputs may read
    a position and its mirror image; it is never taken here).
    """
    taps = geom.index_map()  # the whole layer's gather map, C order over the axes
    size = math.prod(geom.input_size)
    c_out = geom.out_channels // geom.groups
    kernels = weight.reshape(geom.groups, c_out, weight.shape[1], -1)
    # the route full_bytes_and_flops sized: a side (the inputs' for a padding that copies
    # inputs) and a factorization; the allowance takes the widest band either side can have
    route = full_route(geom, weight.dtype.kind == "c")
    bandwidth = max(max(bandwidth for _, bandwidth in _full_sides(geom)),
                    _depth(taps) * weight.shape[1])
    candidates = [max(estimate * estimate, 1e-300) * (1 + delta)
                  for delta in (lifts(tol) if lifted is None else lifted)]
    needed = [g for g in range(geom.groups) if tops is None or tops[g] ** 2 > candidates[0]]
    workers = min(len(needed), 4 * cpu_count())
    chunks = [needed[i::workers] for i in range(workers)]
    proofs = map_chunks(_prove_groups, (kernels, taps, size, candidates, tops, route),
                        chunks, executor=executor, what="the full certificate of spectral_norm",
                        label=lambda i: f"groups {chunks[i][:4]}...") if needed else []
    worst = max((i for proof in proofs for i, _ in proof), default=0)
    if worst == len(candidates):
        return math.inf
    bandwidth = max([bandwidth, *(width for proof in proofs for _, width in proof)])
    return math.sqrt(_certified_square(candidates[worst], bandwidth, rounding,
                                       max(c_out, weight.shape[1]), math.prod(geom.kernel_size),
                                       weight.dtype.kind == "c", copies))
