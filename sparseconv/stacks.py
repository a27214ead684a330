"""A stack of convolutions in closed form: the extent of its receptive field, its one kernel.

Both follow from one recursion over the layers, first applied first: a layer's taps are
``dilation`` of its inputs apart, and its inputs are ``S`` network inputs apart, ``S`` the
product of the strides below it. :func:`sparseconv.algebra.receptive_field` finds the field
itself from the sparsity of the product of the layers' matrices; the tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .arguments import as_weight, int_tuple, is_int
from .transposed import dilate_kernel

__all__ = ["receptive_field_size", "compose_kernels"]


def _per_layer(values, name: str, depth: int, ndim: int) -> list[tuple[int, ...]]:
    """A per-layer argument (default 1 for every layer), each entry an int or ``ndim`` ints."""
    values = [1] * depth if values is None else values
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != depth:
        raise ValueError(f"{name} must have one entry a layer ({depth}), got {values!r}")
    return [int_tuple(v, ndim, f"{name}[{i}]", 1) for i, v in enumerate(values)]


def receptive_field_size(kernel_size: Sequence, stride: Sequence | None = None,
                         dilation: Sequence | None = None) -> int | tuple[int, ...]:
    """The extent of the receptive field of a stack of convolutions, in closed form.

    Parameters
    ----------
    kernel_size : sequence of int or of tuples
        One entry a layer, first applied first.
    stride, dilation : sequence of int or of tuples, optional
        One entry a layer; default 1.

    Returns
    -------
    int or tuple of int
        Per spatial dimension; an int when every ``kernel_size`` entry is.

    Raises
    ------
    ValueError, TypeError
        No layer, lengths that differ, entries out of range.

    See Also
    --------
    receptive_field : the field itself, from the sparsity of the product.

    Notes
    -----
    ``r = 1 + sum_l dilation_l (k_l - 1) prod_{j<l} stride_j``: each layer widens the field by
    its dilated extent, in units of the input strides below it.

    Examples
    --------
    >>> from sparseconv.stacks import receptive_field_size
    >>> receptive_field_size([3, 3])                             # stacked 3x3 -> 5x5
    5
    >>> receptive_field_size([3, 3, 3], dilation=[1, 2, 4])      # growth with dilation
    15
    >>> receptive_field_size([(7, 7), (3, 3)], stride=[2, 1])
    (11, 11)
    """
    if isinstance(kernel_size, str) or not isinstance(kernel_size, Sequence) or not kernel_size:
        raise ValueError(f"kernel_size must be a non-empty sequence, one entry a layer, got "
                         f"{kernel_size!r}")
    depth, scalar = len(kernel_size), all(is_int(k) for k in kernel_size)
    ndim = 1 if scalar else next(len(k) for k in kernel_size if not is_int(k))
    per_layer = {name: _per_layer(values, name, depth, ndim)
                 for name, values in (("kernel_size", kernel_size), ("stride", stride),
                                      ("dilation", dilation))}
    size, jump = [1] * ndim, [1] * ndim
    for k, s, d in zip(*per_layer.values()):
        size = [r + di * (ki - 1) * j for r, ki, di, j in zip(size, k, d, jump)]
        jump = [j * si for j, si in zip(jump, s)]
    return size[0] if scalar else tuple(size)


def compose_kernels(*weights: np.ndarray, stride: Sequence | None = None,
                    dilation: Sequence | None = None, groups: Sequence | None = None) -> np.ndarray:
    """The single kernel of a stack of "valid" convolutions, first applied first.

    Parameters
    ----------
    *weights : array_like, shapes (C_1, C_0/g_1, *k_1), (C_2, C_1/g_2, *k_2), ...
        PyTorch layouts (cross-correlation), each reading the previous output.
    stride, dilation, groups : sequence, optional
        One entry a layer (an int, or a tuple per spatial axis for ``stride`` and
        ``dilation``); default 1.

    Returns
    -------
    ndarray, shape (C_L, C_0, *K)
        The kernel of one convolution with ``groups=1``, ``dilation=1`` and stride
        ``prod(stride)`` per axis, ``K = 1 + sum_l dilation_l (k_l - 1) prod_{j<l} stride_j``
        (:func:`receptive_field_size`): ``conv_matrix(W, s, stride=prod(stride))`` equals
        ``conv_matrix(w_L, s_L, stride=stride_L, ...) @ ... @ conv_matrix(w_1, s, ...)``.

    Raises
    ------
    ValueError, TypeError
        No weight, mismatched channels or dimensions, per-layer lists of the wrong length,
        groups that do not divide the channels.

    See Also
    --------
    receptive_field_size : the extent ``K``, in closed form.

    Notes
    -----
    Cross-correlations compose by the full *convolution* of their kernels, summed over the
    inner channels: ``W[o, c] = sum_m w2[o, m] * w1[m, c]``, since
    ``sum_u w2[u] sum_t w1[t] x[i+u+t] = sum_s (sum_{t+u=s} w1[t] w2[u]) x[i+s]``. A later
    layer's tap ``v`` lands ``dilation * v`` outputs further on, that is ``S * dilation * v``
    inputs, ``S`` the stride of all the layers before it; a grouped weight is its block
    diagonal. Only valid padding composes exactly (padding would insert zeros between the
    layers).

    Examples
    --------
    >>> from sparseconv.stacks import compose_kernels
    >>> compose_kernels([[[1.0, 1.0]]], [[[1.0, 2.0]]])
    array([[[1., 3., 2.]]])
    >>> compose_kernels([[[1.0, 1.0]]], [[[1.0, 2.0]]], stride=[2, 1])  # W of stride 2
    array([[[1., 1., 2., 2.]]])
    """
    if not weights:
        raise ValueError("compose_kernels needs at least one weight")
    arrays = [as_weight(w, f"weights[{i}]") for i, w in enumerate(weights)]
    for i, w in enumerate(arrays):
        if w.ndim != arrays[0].ndim or w.ndim < 3 or w.size == 0:
            raise ValueError(f"weights[{i}] must be a non-empty (C_out, C_in/groups, "
                             f"*kernel_size) array like weights[0], got shape {w.shape}")
    ndim, depth = arrays[0].ndim - 2, len(arrays)
    per_layer = {name: _per_layer(values, name, depth, 1 if name == "groups" else ndim)
                 for name, values in (("stride", stride), ("dilation", dilation),
                                      ("groups", groups))}
    dense = []
    for i, (w, (g,)) in enumerate(zip(arrays, per_layer["groups"])):
        c_in = w.shape[1] * g if i == 0 else dense[-1].shape[0]
        if w.shape[0] % g or w.shape[1] * g != c_in:
            raise ValueError(
                f"weights[{i}].shape={w.shape} with groups[{i}]={g} must read the "
                f"{c_in} channels of " + ("its input" if i == 0 else f"weights[{i - 1}]")
                + f" (weights[{i}].shape[1] * groups == {c_in}, groups dividing shape[0])")
        dense.append(_block_diagonal_weight(w, g))
    # the first layer's own dilation, as zeros in its kernel
    total, jump = dilate_kernel(dense[0], per_layer["dilation"][0]), per_layer["stride"][0]
    for w, s, d in zip(dense[1:], per_layer["stride"][1:], per_layer["dilation"][1:]):
        step = [j * di for j, di in zip(jump, d)]  # input offset between w's taps
        kernel = [st * (k - 1) + t for st, k, t in zip(step, w.shape[2:], total.shape[2:])]
        out = np.zeros((w.shape[0], total.shape[1], *kernel), np.result_type(total, w))
        for tap in np.ndindex(*w.shape[2:]):  # each tap of the outer kernel shifts the inner
            window = tuple(slice(st * v, st * v + t)
                           for st, v, t in zip(step, tap, total.shape[2:]))
            out[(slice(None), slice(None), *window)] += np.tensordot(
                w[(slice(None), slice(None), *tap)], total, axes=(1, 0))
        total, jump = out, [j * si for j, si in zip(jump, s)]
    return total


def _block_diagonal_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped weight ``(C_out, C_in/groups, *k)`` as its ``groups=1`` equivalent."""
    if groups == 1:
        return weight
    c_out, per_group = weight.shape[0] // groups, weight.shape[1]
    dense = np.zeros((weight.shape[0], per_group * groups, *weight.shape[2:]), weight.dtype)
    for g in range(groups):
        dense[g * c_out:(g + 1) * c_out, g * per_group:(g + 1) * per_group] = (
            weight[g * c_out:(g + 1) * c_out])
    return dense
