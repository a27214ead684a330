"""``A^H A`` as the Gram convolution less its frame (sparseconv._gram_operator), against
PyTorch's convolution then its transpose, and its use by the Lanczos lower bound."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparseconv import (
    ConvOperator,
    _gram_operator,
    _lanczos,
    conv_matrix,
    spectral_norm,
)
from sparseconv._geometry import ConvGeometry
from sparseconv._gram_operator import (
    GramOperator,
    adjoint_layer,
    gram_applies,
    gram_operator,
)
from sparseconv._rounding import Rounding

from ._oracles import assert_close, per_side, random_array, random_layer


def torch_conv(x, weight, padding, dilation, groups):
    """``A x`` by PyTorch: zero-pad, convolve."""
    ndim = weight.ndim - 2
    pads = per_side(padding, weight.shape[2:], dilation)
    xt = F.pad(torch.from_numpy(x)[None], [v for pair in reversed(pads) for v in pair])
    conv = getattr(F, f"conv{ndim}d")
    return conv(xt, torch.from_numpy(weight), dilation=dilation, groups=groups)[0].numpy()


def torch_adjoint(y, weight, padding, dilation, groups):
    """``A^H y`` by PyTorch: transpose-convolve by the conjugate weight (the adjoint of the
    valid convolution), crop the pads."""
    ndim = weight.ndim - 2
    pads = per_side(padding, weight.shape[2:], dilation)
    transpose = getattr(F, f"conv_transpose{ndim}d")
    back = transpose(torch.from_numpy(y)[None], torch.from_numpy(weight).conj(),
                     dilation=dilation, groups=groups)[0].numpy()
    return back[(slice(None), *(slice(lo, back.shape[1 + d] - hi)
                                for d, (lo, hi) in enumerate(pads)))]


def stride_one_layers(seed: int, count: int):
    """Seeded stride-1 zero-padded layers of every rank, padding form (symmetric, per side,
    'same' with even kernels, 'valid'), dilation and group count, real and complex, where the
    Gram convolution applies: ``(layer, geometry, dtype, torch's arguments)``."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        dtype = np.complex128 if rng.random() < 0.25 else np.float64
        layer = random_layer(rng, modes=("zeros",), dtype=dtype, max_size=8,
                             padding_forms=("int", "tuple", "pairs", "same", "valid"))
        kwargs = dict(layer.kwargs, stride=1)
        geom = ConvGeometry.from_weight(layer.weight.shape, layer.input_shape, **kwargs)
        if not gram_applies(geom):  # pads wider than the kernel's reach
            assert any(max(a.pad) > (a.kernel_size - 1) * a.dilation for a in geom.axes)
            continue
        yield layer, geom, dtype, (kwargs["padding"], geom.dilation, geom.groups)


def test_equals_pytorchs_convolution_then_its_transpose():
    """``A^H A`` against PyTorch's convolution then its transposed convolution."""
    rng = np.random.default_rng(12)
    checked = 0
    for layer, geom, dtype, args in stride_one_layers(12, 150):
        x = random_array(rng, layer.input_shape, dtype)
        expected = torch_adjoint(torch_conv(x, layer.weight, *args), layer.weight, *args)
        got = GramOperator(layer.weight, geom, dtype).matvec(x.ravel())
        assert_close(got.reshape(layer.input_shape), expected, layer)
        checked += 1
    assert checked >= 100


def test_the_outputs_side_is_the_gram_of_the_adjoint_layer():
    """``A A^H``, by the Gram convolution of :func:`adjoint_layer`, against PyTorch's
    transposed convolution then its convolution."""
    rng = np.random.default_rng(13)
    checked = 0
    for layer, geom, dtype, args in stride_one_layers(13, 100):
        y = random_array(rng, geom.output_shape, dtype)
        expected = torch_conv(torch_adjoint(y, layer.weight, *args), layer.weight, *args)
        got = GramOperator(*adjoint_layer(layer.weight, geom), dtype).matvec(y.ravel())
        assert_close(got.reshape(geom.output_shape), expected, layer)
        checked += 1
    assert checked >= 60


def test_single_precision_and_hermitian():
    w = np.random.default_rng(1).standard_normal((8, 3, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (3, 9, 10), padding=1)
    double, single = GramOperator(w, geom, np.float64), GramOperator(w, geom, np.float32)
    x = np.random.default_rng(2).standard_normal(double.shape[1])
    assert single.matvec(x.astype(np.float32)).dtype == np.float32
    assert_close(single.matvec(x.astype(np.float32)), double.matvec(x), "float32", rtol=1e-5)
    y = np.random.default_rng(3).standard_normal(double.shape[1])
    assert np.isclose(y @ double.matvec(x), x @ double.rmatvec(y), rtol=1e-12)
    assert double.H is double


@pytest.mark.parametrize("kwargs, why", [
    (dict(stride=2, padding=1), "stride"),
    (dict(padding=1, padding_mode="reflect"), "padding mode"),
    (dict(padding=3), "pads wider than the reach"),
])
def test_refused_where_it_is_not_the_gram_convolution(kwargs, why):
    w = np.ones((8, 2, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (2, 12, 12), **kwargs)
    assert not gram_applies(geom), why
    assert gram_operator(w, geom, np.float64) is None
    with pytest.raises(ValueError, match="stride 1 and zero padding"):
        GramOperator(w, geom, np.float64)


def test_taken_only_where_it_costs_less(memory_limit):
    """Widening 3x3 layers on large grids take it (VGG-11's first layers); not the same layer on
    a small grid, where its extra calls cost more than its multiply-adds save (a review: 1.5-3.4
    times as long there), nor one of equal channels, a true convolution (``flip``, which it
    would read unflipped: a review), or one whose kernel and products would not fit the memory
    limit."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((64, 3, 3, 3))
    widening = ConvGeometry.from_weight(w.shape, (3, 112, 112), padding=1)
    assert isinstance(gram_operator(w, widening, np.float64), GramOperator)
    small = ConvGeometry.from_weight(w.shape, (3, 32, 32), padding=1)
    assert gram_operator(w, small, np.float64) is None
    equal = ConvGeometry.from_weight((16, 16, 3, 3), (16, 112, 112), padding=1)
    assert gram_operator(rng.standard_normal((16, 16, 3, 3)), equal, np.float64) is None
    flipped = ConvGeometry.from_weight(w.shape, (3, 112, 112), padding=1, flip=True)
    assert not gram_applies(flipped) and gram_operator(w, flipped, np.float64) is None
    memory_limit(2**20)
    assert gram_operator(w, widening, np.float64) is None


def test_the_kernel_is_sized_before_it_is_built(memory_limit):
    """A review: a 7x7x7 kernel's Gram kernel took 1977 MiB under a 256 MiB limit (a 0/1 matrix
    of taps^2 x 13^3 entries, since gone); now the kernel and its products are sized first,
    and the layer keeps the two products if they do not fit."""
    w = np.random.default_rng(9).standard_normal((16, 1, 7, 7, 7))
    geom = ConvGeometry.from_weight(w.shape, (1, 24, 24, 24), padding=5)
    made = gram_operator(w, geom, np.float64)
    assert isinstance(made, GramOperator)
    assert made._gram.weight.nbytes == 1 * 1 * 13**3 * 8
    memory_limit(made._gram.weight.nbytes)
    assert gram_operator(w, geom, np.float64) is None


def counted_products(monkeypatch) -> list:
    """The dtype of every product by a GramOperator, recorded."""
    products: list = []
    original = GramOperator._matvec

    def counted(self, x):
        products.append(np.dtype(x.dtype).name)
        return original(self, x)

    monkeypatch.setattr(_gram_operator.GramOperator, "_matvec", counted)
    return products


def test_the_lower_bound_iterates_on_it(monkeypatch):
    """A widening layer's Lanczos runs on the Gram convolution in both precisions, and its
    bound is the norm of the explicit matrix to ``tol``, from below."""
    monkeypatch.setattr(_gram_operator, "CALL", 0)  # small layers take it too
    products = counted_products(monkeypatch)
    monkeypatch.setattr(_lanczos, "SINGLE_FROM", 0)  # the single-precision search runs too
    rng = np.random.default_rng(5)
    w = rng.standard_normal((24, 3, 3, 3))
    shape = (3, 14, 13)
    geom = ConvGeometry.from_weight(w.shape, shape, padding=1)
    op, single = (ConvOperator(w, shape, padding=1, dtype=dtype)
                  for dtype in (np.float64, np.float32))
    lower, converged, _ = _lanczos.lower_bound(
        op, np.ones(op.shape[1]), 1e-9, Rounding.of(w, 1), single=lambda: single,
        gram=functools.partial(gram_operator, w, geom))
    truth = np.linalg.norm(conv_matrix(w, shape, padding=1).toarray(), 2)
    assert converged and truth * (1 - 1e-9) <= lower <= truth
    assert {"float32", "float64"} <= set(products)


def test_a_narrowing_layers_lower_bound_iterates_on_its_outputs_gram(monkeypatch):
    """A layer that narrows its channels iterates on ``A A^H``, the Gram convolution of its
    adjoint; the bound is the explicit matrix's norm to ``tol``, from below."""
    monkeypatch.setattr(_gram_operator, "CALL", 0)  # small layers take it too
    products = counted_products(monkeypatch)
    rng = np.random.default_rng(8)
    w = rng.standard_normal((3, 24, 3, 3))
    shape = (24, 12, 13)
    geom = ConvGeometry.from_weight(w.shape, shape, padding=((1, 0), (2, 1)))
    op = ConvOperator(w, shape, padding=((1, 0), (2, 1)))
    assert gram_operator(w, geom, np.float64) is None  # the inputs' side costs more
    lower, converged, _ = _lanczos.lower_bound(
        op, np.ones(op.shape[1]), 1e-9, Rounding.of(w, 1),
        gram=functools.partial(gram_operator, w, geom))
    truth = np.linalg.norm(op.tosparse().toarray(), 2)
    assert converged and truth * (1 - 1e-9) <= lower <= truth
    assert products


def test_spectral_norm_takes_it(monkeypatch):
    """spectral_norm's bounds route hands the Gram convolution to its lower bound."""
    monkeypatch.setattr(_gram_operator, "CALL", 0)  # small layers take it too
    products = counted_products(monkeypatch)
    w = np.random.default_rng(6).standard_normal((32, 2, 3, 3))
    result = spectral_norm(w, (2, 48, 48), padding=1)
    assert result.method == "bounds" and result.converged and products
