"""Differentiable spectra of convolution layers, as PyTorch functions of the weight tensor.

For Lipschitz regularisation during training: the values are computed by torch operations on
the weight, on its device, so ``loss + lam * circular_spectral_norm(conv.weight, ...)``
back-propagates. Re-exported by :mod:`sparseconv.torch`, the only public module that imports
torch.

The periodic layer is diagonalized by the DFT (Sedghi, Gupta & Long, ICLR 2019); with stride
``s`` the polyphase components make it one ``C_out/g x C_in/g * prod(s)`` matrix per frequency
of the ``n/s`` grid and group -- the *symbol*, as :mod:`sparseconv._symbol` builds it. Here it is
split into two factors::

    H[xi, g, o, (c, r)] = sum_t  T[xi, t, r] * w[g, o, c, t]

``T`` (the *tap responses*: tap ``t`` lands in phase ``r`` with phase factor ``exp(2 pi i <q_t,
xi/M>)``) depends on the geometry only; it is built by :func:`sparseconv._symbol.symbol_at`
itself, from a one-hot kernel, so this module repeats none of the symbol's index arithmetic.
The weight enters through one ``einsum``, and ``torch.linalg.svdvals`` gives the singular
values per frequency: both differentiable, on any device. This is the symbol's own evaluation
(a dense DFT over the ``K`` taps, ``K`` work per entry instead of an FFT's ``log n``); the
certified values of :func:`spectral_norm_upper` come from the numpy route itself, whose
rounding model (:mod:`sparseconv._rounding`) is derived for that evaluation.

The zero-padded layer embeds in a strided circular layer on a larger grid with no wrap-around
(:func:`sparseconv._certificates.embedding_grid`): ``||A|| <= ||C||``. :func:`spectral_norm_upper`
is that circulant bound, certified per frequency by the numpy route of
:func:`sparseconv.spectral_norm` (its ``bounds["circulant"]``, rounding allowance included) on
the CPU; the one frequency and group that attains it is rebuilt here from the weight and
differentiated. Its gradient is the gradient of the top singular value there, the
gradient *of the bound* but for the allowance's (a constant to autograd, of relative size
3e-13 for an 8->8 3x3 layer, 4e-11 for 64->64, 2e-8 for 512->512), not of the layer's norm.

The gradient of a singular value is undefined where it is repeated within one frequency's
matrix (``torch.linalg.svdvals`` then returns one choice); for generic weights it is not.
The norms differentiate the one frequency's largest value by
:func:`sparseconv._torch_top_singular.largest_singular_value`, whose first and second
derivatives (``create_graph=True``: a gradient penalty, Hessian-vector products,
``torch.func.hessian``, forward mode) need only that value to be simple: finite where the
matrix repeats other values, zeros included (a pruned input channel, a strided 1x1 layer's
polyphase matrix: through ``torch.linalg.svdvals``, whose backward divides by the differences
of every pair, a review found NaN Hessian-vector products for ResNet's 1x1 stride-2
shortcut); third derivatives are refused where reverse mode takes them (see that module).
:func:`circular_singular_values` differentiates every value by ``torch.linalg.svdvals``,
whose second derivatives are NaN or inf where any two repeat.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._certificates import (
    circulant_tops,
    circulant_uppers,
    embedding_grid,
    periodic_geometry,
)
from ._geometry import ConvGeometry, copies_of
from ._memory import check_memory
from ._norm_bounds import periodic_rows
from ._rounding import Rounding, up
from ._shapes import conv_transpose_output_shape
from ._symbol import (
    conjugate_pairs,
    is_periodic,
    one_frequency,
    padding_taps,
    require_periodic,
    symbol_at,
    unit_scale,
)
from ._torch_top_singular import largest_singular_value, refused
from ._typing import IntOrTuple, PaddingLike, PaddingMode, ShapeLike
from ._validation import int_tuple, is_int, positive_int, spatial_size, transposed_padding_mode

__all__ = ["circular_singular_values", "circular_spectral_norm", "spectral_norm_upper"]


def _weight(weight) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        hint = (": pass its .weight and its arguments, or the model to lipschitz_bounds, which "
                "reads them" if isinstance(weight, torch.nn.Module) else "")
        raise TypeError(f"weight must be a torch.Tensor (C_out, C_in/groups, *kernel_size), got "
                        f"{type(weight).__name__}{hint}")
    if not (weight.is_floating_point() or weight.is_complex()):
        raise TypeError(f"weight must be a floating-point or complex tensor, got {weight.dtype}")
    if weight.ndim < 3:
        hint = ("; a Linear's weight (out, in) is a 1x1 convolution's, weight[:, :, None] (its "
                "norm, for any input_size 1)" if weight.ndim == 2 else "")
        raise ValueError(f"weight must have shape (C_out, C_in/groups, *kernel_size) with at "
                         f"least one spatial dimension, got shape {tuple(weight.shape)}{hint}")
    if weight.layout != torch.strided:  # (a review: "torch computes too little in", for a
        # sparse COO weight whose isfinite torch lacks)
        raise TypeError(f"weight must be a dense (strided) tensor, got layout {weight.layout}: "
                        "pass weight.to_dense()")
    if weight.device.type == "meta":
        raise ValueError("weight is on the meta device, which holds shapes but no values: "
                         "spectra need the weight's values (materialize it first, e.g. "
                         "module.to_empty(device='cpu') and initialize it)")
    try:
        finite = not weight.numel() or bool(torch.isfinite(weight.detach()).all())
    except NotImplementedError as exc:  # torch's "isfinite not implemented for
        # 'Float8_e4m3fn'" (a review; float8_e5m2 and e8m0fnu have it, and are read)
        raise TypeError(f"weight is {weight.dtype}, which torch computes too little in to read "
                        "its values: cast it to float32 or float64 first "
                        "(weight.float())") from exc
    except RuntimeError as exc:  # torch.func.vmap: a data-dependent step (a hunt)
        if "vmap" not in str(exc):
            raise
        raise TypeError("sparseconv's spectra do not run under torch.func.vmap: they check the "
                        "weight's values and locate the largest singular value by value, "
                        "steps vmap cannot batch; call them on each weight in a loop "
                        "(torch.func.grad, jacrev and jvp work)") from exc
    if not finite:
        raise ValueError("weight must be finite: spectra of NaN or infinite entries mean "
                         "nothing")
    return weight


def _size(input_size, ndim: int) -> tuple[int, ...]:
    """``input_size`` as spatial sizes: one int stands for every axis (as ``stride=2`` does;
    a hunt found it refused where the docstrings say "int or tuple of int")."""
    size = spatial_size(input_size, "input_size")
    return size * ndim if is_int(input_size) else size


def _geometry(weight: torch.Tensor, input_size, stride, padding, dilation, groups,
              padding_mode) -> ConvGeometry:
    """The layer on input ``(C_in, *input_size)``; ``padding=None``: the periodic
    padding, refused unless ``padding_mode`` is circular."""
    ndim = weight.ndim - 2
    size = _size(input_size, ndim)
    if len(size) != ndim:
        hint = f" (the spatial sizes alone: {size[1:]!r}, without the channels)" if (
            len(size) == ndim + 1) else ""
        raise ValueError(f"input_size must give one size per spatial dimension of the weight "
                         f"({ndim}, weight.shape={tuple(weight.shape)}), got {input_size!r}"
                         f"{hint}")
    groups = positive_int(groups, "groups")
    return ConvGeometry.from_weight(  # padding=None: the periodic padding (circular only)
        tuple(weight.shape), (weight.shape[1] * groups, *size), stride=stride, padding=padding,
        dilation=dilation, groups=groups, padding_mode=padding_mode)


@torch.compiler.disable  # (numpy's exp in float64: traced, torch.compile's in lower precision
# moved the gradient of spectral_norm_upper by 1e-7)
def _tap_responses(periodic: ConvGeometry, frequencies=None) -> np.ndarray:
    """``T[xi, t, r]``, shape ``(F, K, prod(stride))``: the symbol of tap ``t`` alone.

    :func:`symbol_at` on a kernel with one output channel per tap, each a one-hot tap: its
    output channel ``t`` is ``exp(2 pi i <q_t, xi/M>)`` in tap ``t``'s phase column, else 0.
    At every frequency of the grid, or at ``frequencies`` (an integer array ``(F, ndim)``).
    """
    kernel = periodic.kernel_size
    taps = math.prod(kernel)
    probe = ConvGeometry.from_weight(
        (taps, 1, *kernel), (1, *periodic.input_size), stride=periodic.stride,
        padding=periodic.padding, dilation=periodic.dilation, padding_mode="circular")
    one_hot = np.eye(taps).reshape(taps, 1, *kernel)
    h = symbol_at(probe, one_hot, frequencies)
    return h.reshape(-1, taps, math.prod(periodic.stride))


def _complex_dtype(weight: torch.Tensor) -> torch.dtype:
    if weight.is_complex():
        return weight.dtype
    return torch.complex128 if weight.dtype == torch.float64 else torch.complex64


def _symbol_bytes(weight: torch.Tensor, periodic: ConvGeometry, count: int) -> int:
    """A bound on the memory of :func:`_symbol` at ``count`` frequencies: ``T``, the symbol,
    and its Gram matrices or what autograd keeps for svdvals (U, V)."""
    taps, phases = math.prod(periodic.kernel_size), math.prod(periodic.stride)
    return 16 * count * (taps * phases + 4 * weight.shape[0] * weight.shape[1] * phases)


def _symbol(weight: torch.Tensor, periodic: ConvGeometry, what: str,
            frequencies=None) -> torch.Tensor:
    """The symbol ``(F, groups, C_out/g, C_in/g * prod(stride))`` as a torch function of w."""
    count = (math.prod(periodic.coarse_grid) if frequencies is None
             else len(frequencies))
    taps, phases, groups = (math.prod(periodic.kernel_size), math.prod(periodic.stride),
                            periodic.groups)
    c_out, c_in = weight.shape[0] // groups, weight.shape[1]
    check_memory(_symbol_bytes(weight, periodic, count), what)
    dtype = _complex_dtype(weight)
    t = torch.from_numpy(_tap_responses(periodic, frequencies)).to(device=weight.device,
                                                                   dtype=dtype)
    w = weight.reshape(groups, c_out, c_in, taps).to(dtype)
    h = torch.einsum("ftr,goct->fgocr", t, w)
    return h.reshape(count, groups, c_out, c_in * phases)


def _top(weight: torch.Tensor, periodic: ConvGeometry, what: str) -> tuple[torch.Tensor,
                                                                           float]:
    """``max_xi sigma_max(H(xi))``, differentiable, and the largest computed estimate.

    The maximum is located without autograd: for a weight on the CPU by the numpy route's
    per-frequency maxima (:func:`sparseconv._certificates.circulant_tops`, 4x faster than
    torch's eigenvalues of every Gram matrix on a 64->64 layer), elsewhere on the weight's
    device by the largest eigenvalue of each frequency's smaller Gram matrix (one of each
    pair ``{xi, -xi}`` for a real weight: their singular values are equal); then only the
    matrix that attains it is rebuilt with autograd and its largest singular value taken
    (:func:`largest_singular_value`). Its gradient is ``u v^H`` at that frequency, the
    gradient of the maximum; the work and memory of autograd are one frequency's.
    """
    if weight.device.type == "cpu":
        xi, group, estimate = _numpy_top(weight, periodic)
        h = _symbol(weight, periodic, what, np.array([xi]))
        return largest_singular_value(h[0, group]), estimate
    return _top_by_torch(weight, periodic, what)


# The numpy route's own arithmetic: run by Python even inside torch.compile, whose Dynamo would
# trace numpy into torch operations of other roundings than the ones the certificates' rounding
# allowances are derived for (a new user's trial: compiled with any backend,
# spectral_norm_upper of a periodic layer fell 7e-8 below the layer's exact norm).
@torch.compiler.disable
def _numpy_top(weight: torch.Tensor, periodic: ConvGeometry) -> tuple[tuple[int, ...], int,
                                                                       float]:
    """The frequency and group of the largest computed ``sigma_max`` of the symbol, and that
    value, by the numpy route (:func:`sparseconv._certificates.circulant_tops`)."""
    held, exponent = _scaled_copy(weight)
    tops = circulant_tops(held, one_frequency(periodic), Rounding.of(held, periodic.groups))[0]
    xi, group, top = _attained(tops)
    return xi, group, math.ldexp(top, exponent)


@torch.compiler.disable
def _numpy_upper(weight: torch.Tensor, periodic: ConvGeometry) -> tuple[tuple[int, ...], int,
                                                                         float]:
    """The frequency and group of the largest certified upper bound on ``sigma_max`` of the
    symbol of ``weight`` (detached, on the CPU), and that bound, by the numpy route
    (:func:`sparseconv._certificates.circulant_uppers`: :func:`spectral_norm`'s own
    ``bounds["circulant"]``)."""
    held = _values(weight)
    return _attained(circulant_uppers(held, one_frequency(periodic),
                                      Rounding.of(held, periodic.groups)))


def _attained(values: np.ndarray) -> tuple[tuple[int, ...], int, float]:
    """The frequency and group of the largest of per-frequency ``values`` ``(*grid, groups)``,
    and that value (a 1x1 layer's one frequency: its grid is one point)."""
    *xi, group = np.unravel_index(int(np.argmax(values)), values.shape)
    return tuple(map(int, xi)), int(group), float(values[(*xi, group)])


@torch.compiler.disable
def _times_sqrt(copies: int, value: float) -> float:
    """An upper bound on ``sqrt(copies) * value``: both rounded up."""
    return up(up(math.sqrt(copies), 2) * value, 2)


def _top_by_torch(weight: torch.Tensor, periodic: ConvGeometry,
                  what: str) -> tuple[torch.Tensor, float]:
    """:func:`_top` on the weight's own device: every Gram matrix's eigenvalues by torch."""
    grid = list(periodic.coarse_grid)
    # the frequencies' indices (and their conjugates') and the symbol, sized before either is
    # made (a hunt: numpy's MemoryError, or 15 GiB taken, where the limit should refuse)
    count = math.prod(grid)
    check_memory(16 * len(grid) * count + _symbol_bytes(
        weight, periodic, count if weight.is_complex() else count // 2 + 1), what)
    frequencies = (np.indices(grid).reshape(len(grid), -1).T if weight.is_complex()
                   else conjugate_pairs(grid)[0])
    with torch.no_grad():
        h = _symbol(weight.detach(), periodic, what, frequencies).flatten(0, 1)
        # scaled by a power of two to a largest modulus in [1/2, 1) first: the Gram's
        # squares underflowed for weights of 1e-300 (every top 0: the first frequency was
        # taken) and lost digits to subnormals for float32 weights of 1e-25 (a review)
        peak = float(h.abs().max()) if h.numel() else 0.0
        exponent = math.frexp(peak)[1] if 0.0 < peak < math.inf else 0
        h = h * 2.0 ** -(exponent // 2) * 2.0 ** -(exponent - exponent // 2)  # (two exact
        gram = h.mH @ h if h.shape[-2] >= h.shape[-1] else h @ h.mH  # steps: 2**1070 overflows)
        tops = torch.linalg.eigvalsh(gram)[..., -1].clamp(min=0).sqrt()
        best = int(tops.argmax()) // periodic.groups
        estimate = math.ldexp(float(tops.max()), exponent)
    h = _symbol(weight, periodic, what, frequencies[best:best + 1])
    return largest_singular_value(h).max(), estimate


def _scaled_copy(weight: torch.Tensor) -> tuple[np.ndarray, int]:
    """``weight`` in float64 (complex128) on the CPU as numpy's, scaled by ``2**-exponent``
    (:func:`sparseconv._symbol.unit_scale`), and ``exponent``."""
    held = weight.detach().cpu().to(torch.complex128 if weight.is_complex() else torch.float64)
    return unit_scale(_values(held))


def _values(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor's values as a numpy array, also under ``torch.func.grad``, ``jacrev`` and
    ``jvp``, whose wrapped tensors have no storage for ``.numpy()`` to share (a review: the
    numpy route broke them); their values are read out element by element instead."""
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and functorch.is_functorch_wrapped_tensor(tensor):
        return np.array(tensor.tolist(), dtype=np.complex128 if tensor.is_complex()
                        else np.float64).reshape(tuple(tensor.shape))
    # a conjugate or negated view (z.conj(), z.conj().imag) has no numpy of its own (a review:
    # circular_spectral_norm raised torch's "Can't call numpy() ... conjugate bit set")
    return tensor.resolve_conj().resolve_neg().numpy()


def _periodic(weight, input_size, stride, dilation, groups, what: str) -> ConvGeometry:
    geometry = _geometry(_weight(weight), input_size, stride, None, dilation, groups,
                         "circular")
    # (its padding is the periodic one already: only a size the stride does not divide fails)
    require_periodic(geometry, what, "pass an input_size that each stride divides")
    return geometry


def circular_singular_values(weight: torch.Tensor, input_size: ShapeLike, *,
                             stride: IntOrTuple = 1, dilation: IntOrTuple = 1,
                             groups: int = 1) -> torch.Tensor:
    """All singular values of a periodic (circular) convolution, differentiable in the weight.

    The layer is ``nn.Conv*d(..., padding_mode="circular")`` with the periodic padding
    ``dilation*(k-1)`` per axis (``padding="same"`` at stride 1), on inputs of spatial size
    ``input_size``: the values equal :func:`sparseconv.singular_values` with ``padding=None,
    padding_mode="circular"``.

    Parameters
    ----------
    weight : torch.Tensor, shape (C_out, C_in/groups, *kernel_size)
        Real or complex, finite, on any device; ``requires_grad`` as you like.
    input_size : int or tuple of int
        The spatial size, each divisible by its stride.
    stride, dilation, groups
        As ``torch.nn.Conv*d``.

    Returns
    -------
    torch.Tensor, shape (min(rows, cols),)
        Decreasing, real, in the weight's precision (complex64 arithmetic for float32; float16
        and bfloat16 weights are computed and returned in float32), on its device;
        ``rows = C_out * prod(n/s)``, ``cols = C_in * prod(n)``.

    Raises
    ------
    TypeError
        ``weight`` not a floating-point tensor, or an argument of the wrong type.
    ValueError
        Non-finite weights, an input size its stride does not divide, or another invalid
        argument (named).
    MatrixTooLargeError
        A symbol beyond the memory limit (:func:`sparseconv.set_memory_limit`), before any
        work.

    See Also
    --------
    circular_spectral_norm, spectral_norm_upper, sparseconv.singular_values

    Notes
    -----
    Per frequency ``xi`` of the ``n/s`` grid and group, the singular values of the symbol
    ``H(xi)``, from ``torch.linalg.svdvals``. The gradient of a singular value repeated within
    one ``H(xi)`` is undefined, and second derivatives there are NaN or inf (torch's SVD
    backward divides by the values' differences).

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv, sparseconv.torch as sct
    >>> w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> s = sct.circular_singular_values(w, (8, 8), stride=2)
    >>> s.shape
    torch.Size([64])
    >>> ref = sparseconv.singular_values(w.detach().numpy(), (3, 8, 8), stride=2, padding=None,
    ...                                  padding_mode="circular")
    >>> bool(np.allclose(s.detach().numpy(), ref, rtol=1e-12))
    True
    >>> s.sum().backward()          # the nuclear norm's gradient
    >>> w.grad.shape
    torch.Size([4, 3, 3, 3])
    """
    geometry = _periodic(weight, input_size, stride, dilation, groups, "circular_singular_values")
    h = _symbol(weight, geometry, "the symbol of circular_singular_values")
    return torch.sort(torch.linalg.svdvals(h).flatten(), descending=True).values


def circular_spectral_norm(weight: torch.Tensor, input_size: ShapeLike, *,
                           stride: IntOrTuple = 1, dilation: IntOrTuple = 1,
                           groups: int = 1) -> torch.Tensor:
    """The spectral norm of a periodic (circular) convolution, differentiable in the weight.

    ``circular_singular_values(...)[0]``. The frequency that attains it is found without
    autograd (the largest eigenvalue of each frequency's Gram matrix); only that frequency's
    matrix is differentiated (its largest singular value): its gradient ``u v^H`` is the
    norm's, and autograd's work and memory are one small matrix's. Arguments, errors and the
    layer as :func:`circular_singular_values`, except that the symbol is not held whole on
    the CPU: the numpy route streams it by chunks of frequencies, so a large grid is no
    memory refusal but takes its time (0.5 s on 64x64, 8.4 s on 256x256 for 64 channels,
    measured on 2026-12-03), without progress reports. Second derivatives (a gradient
    penalty, ``torch.func.hessian``) are exact wherever that largest value is simple, also
    where the matrix repeats others (zeros of a pruned channel or of a strided 1x1 layer);
    third derivatives are refused where reverse mode takes them (zero where forward
    mode takes the third: ``jacfwd`` of a Hessian).

    Parameters
    ----------
    weight : torch.Tensor, shape (C_out, C_in/groups, *kernel_size)
        Real or complex, finite, on any device; ``requires_grad`` as you like.
    input_size : int or tuple of int
        The spatial size, each divisible by its stride.
    stride, dilation, groups
        As ``torch.nn.Conv*d``.

    Returns
    -------
    torch.Tensor, 0-d
        In the weight's real precision (float32 for float16 and bfloat16 weights), on its
        device.

    Raises
    ------
    TypeError, ValueError, MatrixTooLargeError
        As :func:`circular_singular_values` raises them.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> w = torch.ones(1, 1, 3)                  # a moving sum: its norm is the kernel's sum
    >>> float(sct.circular_spectral_norm(w, 16))
    3.0
    """
    geometry = _periodic(weight, input_size, stride, dilation, groups, "circular_spectral_norm")
    return _top(weight, geometry, "the symbol of circular_spectral_norm")[0]


def _times_power_of_two(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """``x * 2**exponent``, in two factors each within float64's range: exact in the normal
    range, rounded to the nearest below it (:func:`_upward_times_power_of_two` for a bound)."""
    half = exponent // 2
    return x * 2.0 ** half * 2.0 ** (exponent - half)


def _upward_times_power_of_two(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """``x * 2**exponent`` for an upper bound: a result below the normal range rounds to the
    nearest subnormal, maybe below ``x * 2**exponent`` (a review: a 1 -> 2 layer of weight
    ``3 * 2**-1074`` got ``2e-323`` for a norm of ``2.096e-323``); then the next float up.
    A value, with no gradient (:func:`_same_gradient` gives it one)."""
    y = _times_power_of_two(x.detach(), exponent)
    if bool(_times_power_of_two(y, -exponent) < x.detach()):  # (exact: a subnormal scaled up)
        y = torch.nextafter(y, torch.tensor(math.inf, dtype=y.dtype))
    return y


def spectral_norm_upper(weight: torch.Tensor, input_size: ShapeLike, *,
                        stride: IntOrTuple = 1, padding: PaddingLike = 0,
                        dilation: IntOrTuple = 1, groups: int = 1,
                        padding_mode: PaddingMode = "zeros", transposed: bool = False,
                        output_padding: IntOrTuple = 0) -> torch.Tensor:
    """A certified upper bound on a convolution's spectral norm, differentiable.

    The circulant-embedding bound of :func:`sparseconv.spectral_norm` (its
    ``bounds["circulant"]`` where it computes one: a layer small enough for its dense route
    has only ``bounds["dense"]``, and a 1x1 kernel its closed form ``bounds["1x1"]``, which
    this bound, taken at one frequency, equals to a few units in the last place, rounded
    differently and certified either way; a dilated layer that ``spectral_norm`` splits by
    residues into undilated layers on smaller grids, at stride 1, has the largest of their
    circulant bounds, another bound, either may be the lower): the layer
    ``nn.Conv*d(..., padding=padding)`` (zero padding) on inputs of spatial size
    ``input_size`` is a restriction of a strided circular layer on a grid large enough that
    nothing wraps around, whose norm -- the largest singular value of its symbol -- bounds
    the layer's. A periodic circular layer is that circular layer itself (the bound is its
    norm, to rounding); reflect, replicate and other circular padding copy inputs: the layer
    is ``V P`` with ``V`` unpadded on the padded size and ``||P|| = sqrt(copies)`` (the most
    copies of one input entry), bounded by ``sqrt(copies)`` times ``V``'s bound
    (``bounds["padding x circulant"]``); circular padding that is not periodic gets the
    smaller of that and ``sqrt(c)`` times the norm of the periodic layer on the same grid
    whose rows are its rows, ``c`` the most times it takes one (``bounds["periodic rows"]``).
    A transposed convolution is the adjoint of the
    convolution by the same weight from its output size: the same norm (with
    ``output_padding`` not below the stride, which dilation allows, the adjoint of that
    convolution's first rows on each axis: at most its norm, and its bound). The value is
    :func:`sparseconv.spectral_norm`'s own bound, computed by it on the CPU in float64
    (complex128) whatever the weight's dtype and device, widened by the library's rounding
    allowance, so it bounds the norm of the layer as given. Use it as a penalty: its gradient
    is the gradient of the top singular value of the symbol at the frequency that attains the
    bound (the allowance, relative 3e-13 for an 8->8 3x3 layer to 2e-8 for 512->512, is a
    constant to autograd), computed on the weight's device. Taps that read only zero padding
    are not in the layer's matrix: the bound is that of the weight with them zero, and
    their gradient is zero. Second derivatives are the top singular value's, exact wherever
    it is simple (also where the frequency's matrix repeats other values, zeros included);
    third derivatives are refused where reverse mode takes them (zero where forward
    mode takes the third: ``jacfwd`` of a Hessian).

    Parameters
    ----------
    weight : torch.Tensor, shape (C_out, C_in/groups, *kernel_size)
        Real or complex, finite, on any device; ``(C_in, C_out/groups, *kernel_size)`` for a
        transposed convolution, as ``nn.ConvTranspose*d`` holds it.
    input_size : int or tuple of int
        The spatial size of the layer's input.
    stride, padding, dilation, groups, padding_mode
        As ``torch.nn.Conv*d`` (``padding`` an int, a tuple, ``"same"`` or ``"valid"``;
        sparseconv's per-side pairs too).
    transposed : bool, optional
        The layer is ``nn.ConvTranspose*d(..., stride, padding, output_padding, groups,
        dilation)`` (zero padding only, as in PyTorch).
    output_padding : int or tuple of int, optional
        A transposed convolution's, as ``nn.ConvTranspose*d``'s.

    Returns
    -------
    torch.Tensor, 0-d, float64
        On the weight's device. Cast it (``.to(weight.dtype)``) to add it to a float32 loss;
        the float32 value may round below the bound.

    Raises
    ------
    TypeError, ValueError, MatrixTooLargeError
        As :func:`circular_singular_values`; a layer that PyTorch would refuse (an empty
        output, a kernel larger than the padded input).

    See Also
    --------
    sparseconv.spectral_norm : the certified interval, with tighter bounds (exact sections)
        and a lower bound.

    Notes
    -----
    The embedding grid ``N`` per axis is the smallest multiple of the stride with ``N >= max(n +
    pad_lo, span - pad_lo)`` (``span`` the kernel's extent) and no output reading a wrapped
    input. The per-frequency bounds are those of :func:`sparseconv.spectral_norm`'s
    circulant bound (a Cholesky test just above a Lanczos estimate of each frequency's Gram
    matrix where the channels make that pay, else LAPACK's SVD, each widened by
    :mod:`sparseconv._rounding`'s allowance), derived for float64 on the CPU.

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv, sparseconv.torch as sct
    >>> conv = torch.nn.Conv2d(3, 8, 3, padding=1, dtype=torch.float64)
    >>> bound = sct.spectral_norm_upper(conv.weight, (16, 16), padding=1)
    >>> bound.backward()                      # d(bound)/d(weight), for a penalty
    >>> A = sct.matrix(conv, (3, 16, 16)).toarray()
    >>> bool(np.linalg.norm(A, 2) <= bound.item())
    True
    """
    weight = _weight(weight)
    candidates, unread = _upper_geometry(weight, input_size, stride, padding, dilation,
                                         groups, padding_mode, transposed, output_padding)
    w = weight.to(torch.complex128 if weight.is_complex() else torch.float64)
    if unread is not None:  # taps that read only zero padding: the same layer without them
        w = w.masked_fill(torch.as_tensor(unread, device=w.device), 0)
    top = w.detach().abs().max().item()
    if top == 0.0:
        return (w.abs() * 0.0).sum()  # the zero layer; keeps the graph
    # scaled by a power of two (exact) so that the squares below neither overflow nor vanish,
    # and scaled back: both scalings differentiable (_scaled), so that second derivatives
    # are the bound's (carried as the identity, they were 2**exponent times too large, a new
    # user's trial); for weights whose largest entry is beyond 2**+-_SCALED_EXPONENT, the
    # cotangent of 2**exponent would round to subnormals on its way (a review: a weight of
    # 3 * 2**-1074, its gradient 2.2% off), so the bound being homogeneous of degree 1, the
    # gradient is carried unchanged, and a second derivative refused
    exponent = math.frexp(top)[1]
    w = _scaled(w, _times_power_of_two(w.detach(), -exponent), -exponent)
    # the certified bound per frequency, by the numpy route (spectral_norm's own
    # bounds["circulant"]: Gram matrices and a Cholesky test above a Lanczos estimate, 4x faster
    # than torch's eigenvalues of every frequency's Gram matrix), then the one frequency and
    # group that attains it rebuilt in torch for autograd
    # (scaled: the exponent is undone below)
    # (circular padding that is not periodic has two: the smaller is taken)
    found = [(*_numpy_upper(w.detach().cpu(), periodic), periodic, copies)
             for periodic, copies in candidates]
    xi, group, certified, periodic, copies = min(
        found, key=lambda each: each[2] if each[4] == 1 else _times_sqrt(each[4], each[2]))
    h = _symbol(w, periodic, "the symbol of spectral_norm_upper", np.array([xi]))
    sigma = largest_singular_value(h[0, group])
    bound = _at_least(sigma, certified)
    if copies > 1:  # times ||P|| = sqrt(copies), both rounded up
        bound = _at_least(bound * math.sqrt(copies), _times_sqrt(copies, float(bound.detach())))
    return _scaled(bound, _upward_times_power_of_two(bound.detach(), exponent), exponent)


#: The largest ``|exponent|`` by which :func:`_scaled` scales a gradient by differentiable
#: products: the cotangents of ``2**exponent`` and its inverse stay in float64's normal range
#: for a bound or weight of modulus up to ``2**(1021 - exponent)``.
_SCALED_EXPONENT = 500


def _scaled(x: torch.Tensor, value: torch.Tensor, exponent: int) -> torch.Tensor:
    """``value`` (``x * 2**exponent`` computed without a graph, rounded as its caller
    needs) with the derivatives of ``x * 2**exponent``: exact powers of two in two factors,
    so first derivatives are unchanged by the scaling and second ones scale as they should.
    Beyond ``2**+-_SCALED_EXPONENT`` the first derivative is carried as the identity's (the
    scalings of a homogeneous bound cancel in it), and a second refused (:class:`_Scaled`)."""
    if abs(exponent) <= _SCALED_EXPONENT:
        half = exponent // 2
        scaled = x * 2.0 ** half * 2.0 ** (exponent - half)
        return value + (scaled - scaled.detach())
    return _Scaled.apply(x, value)


class _Scaled(torch.autograd.Function):
    """``value`` with ``x``'s gradient (the identity's), for :func:`_scaled`'s extreme
    exponents; a derivative of that gradient is refused by name (:func:`refused`), and so is
    forward mode (a jvp's outer levels go unrecorded: a second derivative would be zero)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value.detach().clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor],
                      output: torch.Tensor) -> None:
        pass  # (torch.func's transforms need one: a review's grad and jacrev failed)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # (create_graph=True: the gradient may be differentiated again)
        return (refused(grad, _BEYOND) if torch.is_grad_enabled() else grad), None

    @staticmethod
    def jvp(ctx: Any, x_tangent: torch.Tensor, value_tangent: Any) -> torch.Tensor:
        raise RuntimeError(_FORWARD_BEYOND)


_BEYOND = ("spectral_norm_upper has no second derivative for a weight whose largest entry is "
           f"beyond 2**+-{_SCALED_EXPONENT} (it would be scaled by as much): scale the weight "
           "into that range")
_FORWARD_BEYOND = ("spectral_norm_upper has no forward-mode derivative (jvp, jacfwd, "
                   "forward_ad) for a weight whose largest entry is beyond "
                   f"2**+-{_SCALED_EXPONENT}: scale the weight into that range, or take its "
                   "gradient by reverse mode")


def _at_least(x: torch.Tensor, value: float) -> torch.Tensor:
    """``x`` moved to a float no smaller than ``value``, with ``x``'s gradient (a certified
    bound computed beside a differentiable expression of it that differs by rounding)."""
    y = x + (value - x.detach())
    if bool(y.detach() < value):
        y = y + (torch.nextafter(y.detach(), torch.tensor(math.inf, dtype=y.dtype))
                 - y.detach())
    return y


def _upper_geometry(weight: torch.Tensor, input_size, stride, padding, dilation, groups,
                    padding_mode, transposed, output_padding,
                    ) -> tuple[list[tuple[ConvGeometry, int]], np.ndarray | None]:
    """The circular layers whose norms, each times the square root of its count, bound the
    layer's: the padded layer's embedding with the copies ``||P||^2`` of a padding that
    copies inputs (1 for zero padding and periodic layers), and for circular padding that is
    not periodic the periodic layer whose rows are its rows, with the most times it takes
    one (:func:`sparseconv._norm_bounds.periodic_rows`); and the taps that read only zero
    padding (:func:`sparseconv._symbol.padding_taps`), which the bound leaves out (the layer
    is the same without them)."""
    if not isinstance(transposed, bool):
        raise TypeError(f"transposed must be a bool, got {transposed!r}")
    if transposed:  # the adjoint of the convolution from the output size, by the same weight
        transposed_padding_mode(padding_mode)  # (a review: an array raised numpy's error)
        size = _size(input_size, weight.ndim - 2)
        kernel = tuple(weight.shape[2:])
        output = conv_transpose_output_shape(size, kernel, stride, padding, output_padding,
                                             dilation)
        # with output_padding >= stride (dilated), that convolution has more outputs than
        # the layer has inputs, and the layer is the adjoint of its first rows on each axis,
        # R C: ||(R C)^T|| <= ||C||, the same bound (a hunt: refused, where a bound exists)
        geometry = _geometry(weight, output, stride, padding, dilation, groups, "zeros")
        rows = size  # (the taps that only its rows past the layer's inputs read are not in
        # the layer: a review found them kept, the bound 1e6 for a norm of 1)
    else:
        rows = None
        if any(int_tuple(output_padding, weight.ndim - 2, "output_padding", 0,
                         broadcast_one=True)):
            raise ValueError("output_padding applies to a transposed convolution only "
                             "(transposed=True)")
        geometry = _geometry(weight, input_size, stride, padding, dilation, groups,
                             padding_mode)
    if geometry.padding_mode == "zeros":
        return ([(periodic_geometry(tuple(weight.shape), geometry, embedding_grid(geometry)),
                  1)], padding_taps(geometry, rows))
    if is_periodic(geometry):
        return [(geometry, 1)], None
    padded = (geometry.in_channels, *(a.padded_size for a in geometry.axes))
    valid = ConvGeometry.from_weight(tuple(weight.shape), padded, stride=geometry.stride,
                                     dilation=geometry.dilation, groups=geometry.groups)
    wrapped = periodic_rows(tuple(weight.shape), geometry)
    return [(periodic_geometry(tuple(weight.shape), valid, embedding_grid(valid)),
             copies_of(geometry)), *([] if wrapped is None else [wrapped])], None
