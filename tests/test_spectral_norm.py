"""spectral_norm: the certified interval contains the dense answer; exact paths are exact."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import SpectralNorm, conv_matrix, spectral_norm


def dense_norm(w, shape, **kwargs):
    return np.linalg.norm(conv_matrix(w, shape, **kwargs).toarray(), 2)


def random_layer(rng, mode):
    ndim = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kernel = tuple(int(k) for k in rng.integers(1, 5, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    stride = tuple(int(s) for s in rng.integers(1, 3, ndim))
    padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (ndim, 2)))
    size = tuple(int(rng.integers(max(3, d * (k - 1) + 1), 14 // ndim + 4))
                 for d, k in zip(dilation, kernel))
    w = rng.standard_normal((c_out, c_in // groups, *kernel))
    return w, (c_in, *size), dict(stride=stride, dilation=dilation, groups=groups,
                                  padding=padding, padding_mode=mode)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("seed", range(25))
def test_certified_interval_contains_the_dense_norm(mode, seed):
    rng = np.random.default_rng(seed)
    w, shape, kwargs = random_layer(rng, mode)
    result = spectral_norm(w, shape, method="bounds", **kwargs)  # valid by construction
    truth = dense_norm(w, shape, **kwargs)
    assert result.lower <= truth * (1 + 1e-12) and truth <= result.upper * (1 + 1e-12), (
        result, truth, w.shape, shape, kwargs)
    assert all(bound >= truth * (1 - 1e-12) for bound in result.bounds.values()), result.bounds
    if mode == "zeros":  # Lanczos converges on these small layers
        assert abs(result.value - truth) <= 1e-6 * truth


def test_exact_paths():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3))
    periodic = spectral_norm(w, (3, 8, 8), padding=None, padding_mode="circular")
    truth = dense_norm(w, (3, 8, 8), padding=1, padding_mode="circular")
    assert periodic.method == "fft" and abs(periodic.value - truth) <= 1e-12 * truth
    assert periodic.lower <= truth <= periodic.upper
    small = spectral_norm(w, (3, 8, 8), padding=1)
    assert small.method == "dense" and abs(small.value - dense_norm(w, (3, 8, 8), padding=1)) \
        <= 1e-12 * small.value
    assert float(small) == small.value and isinstance(small, SpectralNorm)


def test_one_dimensional_layers_are_proved_almost_exactly():
    w = np.random.default_rng(2).standard_normal((8, 8, 5))
    result = spectral_norm(w, (8, 300), padding=2, method="bounds")
    truth = dense_norm(w, (8, 300), padding=2)
    assert result.lower <= truth <= result.upper
    assert result.relative_width < 1e-8


def test_exact_sections_beat_the_plain_embedding():
    """The issue's reference: a plain periodic embedding leaves a relative width near 4e-3 for
    a random 16->16 3x3 layer on 16x16; one exact axis halves it."""
    w = np.random.default_rng(0).standard_normal((16, 16, 3, 3)) / 12
    result = spectral_norm(w, (16, 16, 16), padding=1, method="bounds")
    truth = dense_norm(w, (16, 16, 16), padding=1)
    assert result.lower <= truth <= result.upper
    assert result.upper < result.bounds["circulant"]
    assert result.relative_width < 2.5e-3 and result.bounds["circulant"] / truth - 1 > 3e-3


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        spectral_norm(np.ones((1, 1, 3)), (1, 8), method="power")
