"""The banded Gram matrix of a 1-D layer, from the gather map, against the dense one.

Oracle: ``conv_matrix`` (itself checked against PyTorch) made dense, ``A^H A`` and
``A A^H`` by numpy, permuted to position-major order.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import conv_matrix
from sparseconv._banded_gram import BandedGram, banded_gram
from sparseconv._geometry import ConvGeometry


def _random_layer(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    k, stride, dilation = (int(rng.integers(1, 6)), int(rng.integers(1, 4)),
                           int(rng.integers(1, 3)))
    n = int(rng.integers(dilation * (k - 1) + 1, 30))
    mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
    padding = int(rng.integers(0, min(4, n)))
    w = rng.standard_normal((c_out, c_in // groups, k))
    if rng.random() < 0.3:
        w = w + 1j * rng.standard_normal(w.shape)
    return w, (c_in, n), dict(stride=stride, padding=padding, dilation=dilation,
                              groups=groups, padding_mode=mode)


@pytest.mark.parametrize("seed", range(3))
def test_the_band_is_the_dense_gram(seed):
    """Every padding mode, stride, dilation, groups, complex weights, both sides: the lower
    band equals the dense Gram's lower triangle, and nothing of it lies outside the band."""
    rng = np.random.default_rng(seed)
    checked = 0
    while checked < 60:
        w, shape, layer = _random_layer(rng)
        if layer["padding_mode"] == "reflect" and layer["padding"] >= shape[1]:
            continue
        geom = ConvGeometry.from_weight(w.shape, shape, **layer)
        a = conv_matrix(w, shape, **layer).toarray()
        for outputs in (False, True):
            plan = BandedGram(geom, outputs)
            band = banded_gram(w, geom, outputs)
            gram = a @ a.conj().T if outputs else a.conj().T @ a
            c = plan.channels
            order = np.arange(len(gram)).reshape(c, -1).T.ravel()  # position-major
            gram = gram[np.ix_(order, order)]
            assert band.shape == (plan.band + 1, plan.size) == (band.shape[0], len(gram))
            lower = np.zeros_like(gram)
            for r in range(len(band)):
                lower[np.arange(r, len(gram)), np.arange(len(gram) - r)] = band[r, :len(gram) - r]
            np.testing.assert_allclose(lower, np.tril(gram), rtol=0,
                                       atol=1e-13 * max(1.0, np.abs(gram).max()),
                                       err_msg=f"{w.shape} {shape} {layer} {outputs}")
        checked += 1


def test_a_wrapping_circular_layer_is_as_wide_as_the_matrix():
    """Circular padding that wraps couples the first and last positions: the plan says so
    (its band is what the caller sizes, and refuses, before anything is built)."""
    geom = ConvGeometry.from_weight((2, 2, 3), (2, 50), padding=1, padding_mode="circular")
    plan = BandedGram(geom, False)
    assert plan.offset == 49 and plan.band == 2 * 50 - 1
    zeros = BandedGram(ConvGeometry.from_weight((2, 2, 3), (2, 50), padding=1), False)
    assert zeros.offset == 2 and zeros.band == 5
