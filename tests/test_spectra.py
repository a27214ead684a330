"""Exact spectra against dense linear algebra of the explicit conv_matrix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from sparseconv import _spectra as spectra_module
from sparseconv import (
    composition_eigenvalues,
    composition_singular_values,
    conv_matrix,
    eigenvalues,
    singular_values,
)
from sparseconv._symbol import periodic_padding

#: The periodic layer, said explicitly: the spectra's defaults are conv_matrix's (zero padding 0).
PERIODIC = dict(padding=None, padding_mode="circular")


def random_periodic_layer(rng, complex_weight=False):
    """A circular layer with periodic padding: random rank, channels, groups, stride, dilation."""
    ndim = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))  # odd and even
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 3, ndim))
    # sizes divisible by the stride and large enough for PyTorch's circular padding limit
    size = tuple(int(s * rng.integers(max(1, -(-d * (k - 1) // (2 * s))), 13 // (ndim + s) + 2))
                 for s, d, k in zip(stride, dilation, kernel))
    w = rng.standard_normal((c_out, c_in // groups, *kernel))
    if complex_weight:
        w = w + 1j * rng.standard_normal(w.shape)
    return w, (c_in, *size), dict(stride=stride, dilation=dilation, groups=groups)


def dense_matrix(w, input_shape, stride=1, dilation=1, groups=1):
    ndim = w.ndim - 2
    dil = (dilation,) * ndim if isinstance(dilation, int) else dilation
    return conv_matrix(w, input_shape, stride=stride, dilation=dilation, groups=groups,
                       padding=periodic_padding(w.shape[2:], dil),
                       padding_mode="circular").toarray()


def assert_same_multiset(a, b, tol, what):
    """Complex multisets equal up to ``tol``, matched optimally (no fragile sorting)."""
    cost = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])
    rows, cols = linear_sum_assignment(cost)
    assert len(a) == len(b) and cost[rows, cols].max() <= tol, what


@pytest.mark.parametrize("seed", range(60))
def test_fft_singular_values_equal_dense_svd(seed):
    rng = np.random.default_rng(seed)
    w, shape, kwargs = random_periodic_layer(rng, complex_weight=seed % 5 == 0)
    dense = np.linalg.svd(dense_matrix(w, shape, **kwargs), compute_uv=False)
    fast = singular_values(w, shape, **kwargs, **PERIODIC)
    assert fast.shape == dense.shape, (shape, kwargs)
    assert np.all(np.diff(fast) <= 0)
    assert np.abs(fast - dense).max() <= 1e-10 * dense[0], (w.shape, shape, kwargs)


def test_ill_conditioned_frequencies_go_to_the_svd(monkeypatch):
    """A kernel whose symbol is nearly singular at every frequency: Gram eigenvalues alone
    lose the small singular values; the accuracy rule sends those frequencies to the SVD."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4, 3, 3))
    w[:, 3] = w[:, 2] * (1 + 1e-9)  # two input channels almost parallel at every frequency
    dense = np.linalg.svd(dense_matrix(w, (4, 8, 8)), compute_uv=False)
    fast = singular_values(w, (4, 8, 8), **PERIODIC)
    assert fast[-1] < 1e-8 * fast[0]
    assert np.abs(fast - dense).max() <= 1e-13 * dense[0]
    monkeypatch.setattr(spectra_module, "_GRAM_CONDITION", np.inf)  # Gram only: worse
    gram_only = singular_values(w, (4, 8, 8), **PERIODIC)
    assert np.abs(gram_only - dense).max() > 100 * np.abs(fast - dense).max()


@pytest.mark.parametrize("seed", range(20))
def test_eigenvalues_equal_dense_eigvals(seed):
    rng = np.random.default_rng(100 + seed)
    ndim = 1 + seed % 2
    groups = int(rng.choice([1, 2]))
    c = groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    size = tuple(int(d * (k - 1) + rng.integers(1, 6)) for k, d in zip(kernel, dilation))
    w = rng.standard_normal((c, c // groups, *kernel))
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    padding = tuple((int(lo), t - int(lo)) for t, lo in
                    zip(totals, [rng.integers(0, t + 1) for t in totals]))  # any split
    A = conv_matrix(w, (c, *size), padding=padding, dilation=dilation, groups=groups,
                    padding_mode="circular").toarray()
    lam = eigenvalues(w, (c, *size), padding=padding, dilation=dilation, groups=groups,
                      padding_mode="circular")
    assert np.all(np.diff(np.abs(lam)) <= 1e-12)
    assert_same_multiset(lam, np.linalg.eigvals(A), 1e-9 * np.abs(lam[0]), (kernel, padding))


def test_compositions_equal_the_product_of_the_matrices():
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((4, 3, 3, 3))
    w2 = rng.standard_normal((4, 2, 2, 3))  # groups=2, even kernel
    w3 = rng.standard_normal((3, 4, 3, 3))
    layers = [(w1, PERIODIC), (w2, dict(groups=2, dilation=(2, 1), **PERIODIC)), (w3, PERIODIC)]
    A1 = dense_matrix(w1, (3, 8, 8))
    A2 = dense_matrix(w2, (4, 8, 8), groups=2, dilation=(2, 1))
    A3 = dense_matrix(w3, (4, 8, 8))
    product = A3 @ A2 @ A1
    dense = np.linalg.svd(product, compute_uv=False)
    fast = composition_singular_values(layers, (3, 8, 8))
    assert np.abs(fast - dense).max() <= 1e-10 * dense[0]
    square = [(rng.standard_normal((3, 3, 3, 3)), PERIODIC),
              (rng.standard_normal((3, 3, 2, 2)), PERIODIC)]
    B1 = dense_matrix(square[0][0], (3, 6, 6))
    B2 = dense_matrix(square[1][0], (3, 6, 6))
    lam = composition_eigenvalues(square, (3, 6, 6))
    assert_same_multiset(lam, np.linalg.eigvals(B2 @ B1), 1e-9 * abs(lam[0]), "B2 B1")


def test_dense_and_auto_methods():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 2, 3, 3))
    A = conv_matrix(w, (2, 7, 6), padding=1, stride=2, padding_mode="reflect").toarray()
    dense = np.linalg.svd(A, compute_uv=False)
    for method in ("auto", "dense"):
        values = singular_values(w, (2, 7, 6), padding=1, stride=2, padding_mode="reflect",
                                 method=method)
        assert np.allclose(values, dense)
    periodic = singular_values(w, (2, 8, 6), method="dense", **PERIODIC)
    assert np.allclose(periodic, singular_values(w, (2, 8, 6), method="fft", **PERIODIC))


def test_errors_name_the_problem(monkeypatch):
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="method"):
        singular_values(w, (2, 8, 8), method="svd")
    with pytest.raises(ValueError, match="divisible"):
        singular_values(w, (2, 7, 8), stride=2, method="fft", **PERIODIC)
    with pytest.raises(ValueError, match="periodic"):
        singular_values(w, (2, 8, 8), padding=0, padding_mode="circular", method="fft")
    with pytest.raises(ValueError, match="circular"):
        singular_values(w, (2, 8, 8), padding=None, method="fft")
    monkeypatch.setattr(spectra_module, "DENSE_FLOPS", 10)
    with pytest.raises(ValueError, match="spectral_norm"):
        singular_values(w, (2, 8, 8), padding=1)
    with pytest.raises(ValueError, match="square"):
        eigenvalues(np.ones((3, 2, 3)), (2, 8), **PERIODIC)
    with pytest.raises(ValueError, match=r"layers\[0\] to be stride 1"):
        composition_singular_values([(w, dict(stride=2, **PERIODIC)), (w, PERIODIC)],
                                    (2, 8, 8), method="fft")
