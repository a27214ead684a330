"""Dilation: a dilated kernel is the kernel with ``dilation - 1`` zeros between its taps.

Every builder takes ``dilation`` directly (the gather map spaces the taps); this module makes
the equivalence a checkable object, as the tutorial draws it.
"""

from __future__ import annotations

import math

import numpy as np

from ._memory import check_memory
from ._typing import ArrayLike, IntOrTuple
from ._validation import int_tuple, layer_weight

__all__ = ["dilate_kernel"]


def dilate_kernel(weight: ArrayLike, dilation: IntOrTuple) -> np.ndarray:
    """The kernel with ``dilation - 1`` zeros inserted between its taps.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    dilation : int or tuple of int

    Returns
    -------
    ndarray, shape (C_out, C_in/groups, *(dilation*(kernel_size-1)+1))
        ``conv_matrix(weight, ..., dilation=d)`` equals ``conv_matrix(dilate_kernel(weight,
        d), ...)`` (the latter stores the inserted zeros).

    Raises
    ------
    ValueError, TypeError
        A bad weight or dilation.

    Examples
    --------
    >>> from sparseconv import dilate_kernel
    >>> dilate_kernel([[[1.0, 2.0, 3.0]]], 2)
    array([[[1., 0., 2., 0., 3.]]])
    """
    weight = layer_weight(weight)
    dilation = int_tuple(dilation, weight.ndim - 2, "dilation", 1, broadcast_one=True)
    size = [d * (k - 1) + 1 for k, d in zip(weight.shape[2:], dilation)]
    check_memory(weight.itemsize * math.prod(weight.shape[:2]) * math.prod(size),
                 f"the dilated kernel of shape {(*weight.shape[:2], *size)}")
    out = np.zeros((*weight.shape[:2], *size), dtype=weight.dtype)
    # numpy's stubs refuse Ellipsis beside slices, which numpy accepts
    out[(Ellipsis, *(slice(None, None, d) for d in dilation))] = weight  # type: ignore[index]
    return out
