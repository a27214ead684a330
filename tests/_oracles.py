"""Independent oracles, random layers and the one comparison shared by the tests.

As JAX keeps ``lax_reference.py``: the references the library is checked against, in one place.

Nothing here imports sparseconv's index arithmetic: the oracles are PyTorch (``torch``), numpy's
``np.pad`` with explicit loops (``dense_conv``), and scipy. Set ``SPARSECONV_REQUIRE_TORCH=1``
(``.ci/run`` does) to make a missing PyTorch a failure instead of a skip.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

REQUIRE_TORCH = os.environ.get("SPARSECONV_REQUIRE_TORCH", "") not in ("", "0")
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised only without the oracle
    if REQUIRE_TORCH:
        raise
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the test oracle) is missing")

NP_PAD_MODE = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}
TORCH_PAD_MODE = {"zeros": "constant", "circular": "circular", "reflect": "reflect",
                  "replicate": "replicate"}


def per_side(padding, kernel_size, dilation, flip=False):
    """Resolve a padding argument to ``[(lo, hi), ...]`` -- written out here, independently."""
    ndim = len(kernel_size)
    if padding == "valid":
        return [(0, 0)] * ndim
    if padding in ("same", "full"):
        pairs = []
        for k, d in zip(kernel_size, dilation):
            total = d * (k - 1)
            if padding == "full":
                pairs.append((total, total))
            elif flip:
                pairs.append((total - total // 2, total // 2))
            else:
                pairs.append((total // 2, total - total // 2))
        return pairs
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


# sparseconv's periodic layer: padding=None is PyTorch's "same" split on a circular grid
PERIODIC = dict(padding=None, padding_mode="circular")


def periodic_pads(kernel, dilation):
    """PyTorch's "same" split of the total ``dilation*(k-1)``, written out here."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                 for k, d in zip(kernel, dilation))


def as_tuple(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def assert_close(actual, expected, config, rtol=1e-12):
    """Equal shapes and entries within ``rtol`` of the largest; a failure prints ``config``."""
    actual = actual.toarray() if sp.issparse(actual) else np.asarray(actual)
    expected = expected.toarray() if sp.issparse(expected) else np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} for {config}"
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    err = float(np.abs(actual - expected).max(initial=0))
    assert err <= rtol * scale, f"error {err:.3g} (scale {scale:.3g}) for {config}"


# ---------------------------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------------------------
def dense_conv(x, weight, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
               flip=False):
    """Convolution by its definition: np.pad, then a loop over outputs, channels and taps."""
    ndim = weight.ndim - 2
    stride, dilation = as_tuple(stride, ndim), as_tuple(dilation, ndim)
    pads = per_side(padding, weight.shape[2:], dilation, flip)
    if flip:
        weight = weight[(Ellipsis,) + (slice(None, None, -1),) * ndim]
    xp = np.pad(x, [(0, 0)] + list(pads), mode=NP_PAD_MODE[padding_mode])
    c_out, in_per_group, *kernel = weight.shape
    out_per_group = c_out // groups
    out_size = [(xp.shape[1 + d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
                for d in range(ndim)]
    y = np.zeros((c_out, *out_size), dtype=np.result_type(x, weight))
    for o in range(c_out):
        g = o // out_per_group
        for pos in itertools.product(*map(range, out_size)):
            acc = 0
            for c in range(in_per_group):
                for tap in itertools.product(*map(range, kernel)):
                    src = tuple(pos[d] * stride[d] + tap[d] * dilation[d] for d in range(ndim))
                    acc = acc + weight[(o, c) + tap] * xp[(g * in_per_group + c,) + src]
            y[(o,) + pos] = acc
    return y


def _torch_fn(name, ndim):
    return getattr(F, f"{name}{ndim}d")


def torch_conv(x, weight, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """PyTorch's convolution of a batch ``x`` (N, C, *spatial), using PyTorch's own reading of
    the padding argument wherever PyTorch has one."""
    ndim = weight.ndim - 2
    # np.array copies into fresh C order; ascontiguousarray keeps negative strides of size-1
    # axes (a flipped 1x1 kernel), which torch.from_numpy rejects
    xt = torch.from_numpy(np.array(x, order="C", copy=True))
    wt = torch.from_numpy(np.array(weight, order="C", copy=True))
    conv = _torch_fn("conv", ndim)
    explicit = not (isinstance(padding, (int, str)) or all(isinstance(p, int) for p in padding))
    if padding == "full" or explicit:
        pads = per_side(padding, weight.shape[2:], as_tuple(dilation, ndim))
        flat = [v for lo_hi in reversed(pads) for v in lo_hi]
        xt = F.pad(xt, flat, mode=TORCH_PAD_MODE[padding_mode])
        return conv(xt, wt, stride=stride, dilation=dilation, groups=groups).numpy()
    if padding_mode == "zeros":
        return conv(xt, wt, stride=stride, padding=padding, dilation=dilation,
                    groups=groups).numpy()
    module_cls = getattr(torch.nn, f"Conv{ndim}d")
    module = module_cls(x.shape[1], weight.shape[0], weight.shape[2:], stride=stride,
                        padding=padding, dilation=dilation, groups=groups, bias=False,
                        padding_mode=padding_mode, dtype=wt.dtype)
    with torch.no_grad():
        module.weight.copy_(wt)
        return module(xt).numpy()


def torch_conv_transpose(x, weight, *, stride=1, padding=0, output_padding=0, dilation=1,
                         groups=1):
    ndim = weight.ndim - 2
    return _torch_fn("conv_transpose", ndim)(
        torch.from_numpy(np.array(x, order="C", copy=True)),
        torch.from_numpy(np.array(weight, order="C", copy=True)),
        stride=stride, padding=padding, output_padding=output_padding, groups=groups,
        dilation=dilation,
    ).numpy()


# ---------------------------------------------------------------------------------------------
# Random layers
# ---------------------------------------------------------------------------------------------
@dataclass
class Layer:
    """A random valid convolution layer; ``str(layer)`` is printed by failing assertions."""

    weight: np.ndarray
    input_shape: tuple
    kwargs: dict = field(default_factory=dict)

    def __str__(self):
        return (f"Layer(weight.shape={self.weight.shape}, input_shape={self.input_shape}, "
                f"{self.kwargs})")

    __repr__ = __str__


def random_array(rng, shape, dtype=np.float64):
    dtype = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def random_layer(rng, ndim=None, *, modes=("zeros", "circular", "reflect", "replicate"),
                 padding_forms=("int", "tuple", "pairs", "same", "valid", "full"),
                 dtype=np.float64, max_size=7, max_channels=3):
    """A random layer of PyTorch-valid arguments, built so every constraint holds."""
    ndim = ndim or int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2, 3]))
    in_channels = groups * int(rng.integers(1, max_channels + 1))
    out_channels = groups * int(rng.integers(1, max_channels + 1))
    mode = str(rng.choice(modes))
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    form = str(rng.choice(padding_forms))
    stride = tuple(int(s) for s in rng.integers(1, 4, ndim)) if form != "same" else 1
    if form == "int":
        padding = int(rng.integers(0, 3))
    elif form == "tuple":
        padding = tuple(int(p) for p in rng.integers(0, 3, ndim))
    elif form == "pairs":
        padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 4, (ndim, 2)))
    else:
        padding = form
    pads = per_side(padding, kernel, dilation)
    size = []
    for k, d, (lo, hi) in zip(kernel, dilation, pads):
        low = max(1, d * (k - 1) + 1 - lo - hi)
        if mode == "reflect":
            low = max(low, lo + 1, hi + 1)
        elif mode == "circular":
            low = max(low, lo, hi)
        size.append(int(rng.integers(low, max(low, max_size) + 1)))
    weight = random_array(rng, (out_channels, in_channels // groups, *kernel), dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=mode)
    if ndim > 1 and rng.random() < 0.3:  # sometimes the int form of stride/dilation
        kwargs["stride"] = int(rng.integers(1, 3)) if form != "same" else 1
    return Layer(weight, (in_channels, *size), kwargs)


def random_pointwise_layer(rng, ndim: int, channels: int = 4):
    """A random 1x1 layer: ``(weight, C_in, stride, groups, size)``, 1 or 2 groups of 1 to
    ``channels - 1`` channels each way, strides 1-3, an input size divisible by the stride."""
    groups = int(rng.choice([1, 2]))
    stride = tuple(int(v) for v in rng.integers(1, 4, ndim))
    c_in, c_out = (groups * int(v) for v in rng.integers(1, channels, 2))
    size = tuple(s * int(v) for s, v in zip(stride, rng.integers(1, 4, ndim)))
    return rng.standard_normal((c_out, c_in // groups, *(1,) * ndim)), c_in, stride, groups, size


def random_transpose_layer(rng, max_size: int = 6):
    """A random valid transposed convolution: ``(weight, input_shape, kwargs)``, PyTorch layout
    ``(C_in, C_out/groups, *kernel)``, with output_padding below max(stride, dilation)."""
    ndim = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 4, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    size = tuple(int(n) for n in rng.integers(1, max_size + 2 - ndim, ndim))
    padding = tuple(int(rng.integers(0, 1 + d * (k - 1) // 2)) for k, d in zip(kernel, dilation))
    weight = rng.standard_normal((c_in, c_out // groups, *kernel))
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups)
    return weight, (c_in, *size), kwargs


def nearly_rank_two(rng, channels, kernel, gap):
    """A layer whose symbol is ``U M(xi) V^H + gap * Q`` at every frequency: two large singular
    values and ``channels - 2`` near ``gap``, condition about ``1 / gap``."""
    u = np.linalg.qr(rng.standard_normal((channels, 2)))[0]
    v = np.linalg.qr(rng.standard_normal((channels, 2)))[0]
    w = np.einsum("oa,abij,cb->ocij", u, rng.standard_normal((2, 2, kernel, kernel)), v)
    w[:, :, kernel // 2, kernel // 2] += gap * np.linalg.qr(rng.standard_normal((channels,) * 2))[0]
    return w


def mpmath_singular_values(matrices, digits: int = 30) -> np.ndarray:
    """Every singular value of a stack of complex matrices by mpmath's SVD at ``digits``
    digits, in decreasing order: the oracle for the small singular values (mpmath is in the
    test extra: imported, never skipped)."""
    import mpmath

    exact = []
    with mpmath.workdps(digits):
        for h in matrices:
            m = mpmath.matrix([[mpmath.mpc(complex(v)) for v in row] for row in h])
            exact.extend(float(v) for v in mpmath.svd_c(m, compute_uv=False))
    return np.sort(exact)[::-1]



def jacobian_matrix(module, input_shape, at=None) -> np.ndarray:
    """The Jacobian of ``module`` at a zero input of one sample of ``input_shape`` (or at
    ``at``, a float64 batch of one of that shape), by torch.autograd, in float64, as a dense
    (outputs, inputs) matrix."""
    x = torch.zeros((1, *input_shape), dtype=torch.float64) if at is None else at
    assert x.shape == (1, *input_shape) and x.dtype == torch.float64, (x.shape, x.dtype)
    jac = torch.autograd.functional.jacobian(lambda v: module(v), x)
    return jac.reshape(-1, x.numel()).numpy()


def exact_gram(matrix) -> list[list[int]]:
    """``A^T A`` of a matrix of small integers (dense or sparse), in Python integers: exact.
    Of Gaussian integers, ``A^H A = X + iY``'s real form ``[[X, -Y], [Y, X]]``: the same
    eigenvalues, each twice, so the same answers from :func:`definite`."""
    a = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    parts = (a.real, a.imag) if np.iscomplexobj(a) else (a,)
    for part in parts:
        assert np.array_equal(part, np.rint(part)) and np.abs(part).max() < 2**20
    if len(parts) == 1:
        gram = parts[0].T @ parts[0]  # (integer sums far below 2**53: exact in float64)
    else:
        re, im = parts
        x, y = re.T @ re + im.T @ im, re.T @ im - im.T @ re
        gram = np.block([[x, -y], [y, x]])
    return [[int(v) for v in row] for row in np.rint(gram)]


def definite(gram: list[list[int]], bound: float, strict: bool) -> bool:
    """Whether ``bound^2 I - G`` is positive definite (``strict``) or semidefinite, decided in
    exact rationals (``G`` of integers or Fractions): symmetric elimination, where a
    semidefinite matrix's zero pivot has a zero row. ``bound`` bounds ``||A||`` from above
    if and only if ``bound^2 I - A^T A`` is semidefinite, and from below if and only if it is
    not definite: no rounding anywhere."""
    square = Fraction(bound) ** 2
    m = [[(square if i == j else 0) - Fraction(v) for j, v in enumerate(row)]
         for i, row in enumerate(gram)]
    n = len(m)
    for k in range(n):
        pivot = m[k][k]
        if pivot < 0 or (pivot == 0 and strict):
            return False
        if pivot == 0:
            if any(m[k][j] != 0 for j in range(k + 1, n)):
                return False
            continue
        for i in range(k + 1, n):
            factor = m[i][k] / pivot
            if factor:
                row_k, row_i = m[k], m[i]
                for j in range(k + 1, n):
                    row_i[j] -= factor * row_k[j]
    return True


def assert_exactly_contains(result, gram, context=None) -> None:
    """A :class:`~sparseconv.SpectralNorm`'s interval, and each bound it took the least of,
    hold the norm of the matrix whose Gram matrix is ``gram``, in exact arithmetic
    (:func:`definite`)."""
    assert definite(gram, result.upper, strict=False), ("upper below the norm", result, context)
    assert not definite(gram, result.lower, strict=True), ("lower above the norm", result,
                                                           context)
    for name, bound in result.bounds.items():
        assert definite(gram, bound, strict=False), (f"bound {name!r} below the norm", result,
                                                     context)

def traced(call) -> tuple[Exception | None, int]:
    """``call()`` under tracemalloc: the ``MatrixTooLargeError`` it raised (``None`` if it
    answered) and the peak of what numpy and Python allocated meanwhile, in bytes. The memory
    tests' one measurement: a refusal must come before the allocation it refuses."""
    import tracemalloc

    from sparseconv import MatrixTooLargeError

    tracemalloc.start()
    try:
        try:
            call()
            error = None
        except MatrixTooLargeError as exc:
            error = exc
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
