"""A dilated layer as the direct sum of undilated ones, one per residue of its inputs.

Along an axis of stride 1, dilation ``d`` and zero padding, each output reads the inputs of
one residue modulo ``d``: :func:`residue_layers` lists the distinct undilated layers the
whole layer splits into, so that its norm is the largest of theirs, each on a grid ``d``
times smaller.
"""

from __future__ import annotations

import itertools

from ._geometry import ConvGeometry

__all__ = ["residue_layers"]


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
