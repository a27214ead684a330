"""The exact sections' Gram matrices (sparseconv._certificates), against dense definitions.

spectral_norm's intervals are checked against dense SVDs in test_spectral_norm.py; here the
building block itself: the banded Gram of a 1-D multi-channel layer ``T``, on the side
``section_gram`` picks (``T^H T``, or ``T T^H`` when that factorizes faster), equals the dense
Gram of ``conv_matrix``; its band storage, products and eigenvectors too.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import conv_matrix
from sparseconv._certificates import (
    SectionGram,
    _below,
    _certified_square,
    _top_eigenpair,
    dense_upper,
    section_gram,
)
from sparseconv._geometry import ConvGeometry
from sparseconv._rounding import Rounding, U, gamma


def _layer(rng, c_out, c_in, k, n, stride, padding, dilation, complex_):
    kernel = rng.standard_normal((c_out, c_in, k))
    if complex_:
        kernel = kernel + 1j * rng.standard_normal(kernel.shape)
    geom = ConvGeometry.from_weight(kernel.shape, (c_in, n), stride=stride, padding=padding,
                                    dilation=dilation)
    dense = conv_matrix(kernel, (c_in, n), stride=stride, padding=padding,
                        dilation=dilation).toarray()
    m = geom.output_size[0]
    # conv_matrix is channel-major (c * n + p); the Gram blocks are position-major (p * C + c)
    rows = np.arange(m * c_out).reshape(c_out, m).T.ravel()
    cols = np.arange(n * c_in).reshape(c_in, n).T.ravel()
    return kernel, geom.axes[0].tap_index(), dense[np.ix_(rows, cols)]


def _from_band(band: np.ndarray) -> np.ndarray:
    """The Hermitian matrix whose lower band LAPACK stores as ``band[i - j, j]``."""
    n = band.shape[1]
    full = np.zeros((n, n), dtype=band.dtype)
    for d in range(band.shape[0]):
        idx = np.arange(n - d)
        full[idx + d, idx] = band[d, :n - d]
        full[idx, idx + d] = np.conj(band[d, :n - d])
    return full


CONFIGS = [  # c_out, c_in, k, n, stride, padding, dilation
    (3, 2, 3, 7, 1, 1, 1),
    (4, 2, 3, 9, 2, 1, 1),  # strided, more outputs per position: T T^H is cheaper
    (6, 2, 3, 12, 2, 1, 1),
    (2, 5, 5, 11, 3, 2, 1),
    (3, 3, 3, 10, 1, 2, 2),
    (5, 3, 2, 8, 2, 0, 1),
    (2, 2, 7, 6, 1, 3, 1),  # kernel wider than the input
]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_section_gram_is_the_dense_gram_on_its_side(config, complex_):
    rng = np.random.default_rng(sum(config) + complex_)
    c_out, c_in, k, n, stride, padding, dilation = config
    kernel, taps, T = _layer(rng, c_out, c_in, k, n, stride, padding, dilation, complex_)
    gram = section_gram(kernel, taps, n)
    inputs = gram.shape[0] == n * c_in and gram.positions == n
    dense = np.conj(T.T) @ T if inputs else T @ np.conj(T.T)
    scale = np.abs(dense).max()
    assert np.abs(gram.toarray() - dense).max() <= 1e-13 * scale
    mu = 1.5 * np.linalg.norm(T, 2) ** 2
    assert np.abs(_from_band(gram.band(mu)) - (mu * np.eye(len(dense)) - dense)).max() <= \
        1e-13 * scale
    x = rng.standard_normal(len(dense))
    assert np.abs(gram.matvec(x) - dense @ x).max() <= 1e-13 * scale * np.abs(x).max()
    # the top eigenpair, mapped to an input: ||T v|| is the norm
    lam, vector = _top_eigenpair(gram)
    top = np.linalg.norm(T, 2)
    assert abs(np.sqrt(lam) - top) <= 1e-10 * top
    v = gram.to_input(vector)
    assert v.shape == (n * c_in,)
    assert abs(np.linalg.norm(T @ v) / np.linalg.norm(v) - top) <= 1e-9 * top
    # the Cholesky test brackets the top eigenvalue
    assert _below(gram, top * top * (1 + 1e-9)) and not _below(gram, top * top * (1 - 1e-9))


def test_the_cheaper_side_is_picked():
    rng = np.random.default_rng(0)
    # stride 2, 3 taps: outputs overlap only with their neighbours, inputs with two either side
    kernel, taps, _ = _layer(rng, 8, 8, 3, 16, 2, 1, 1, False)
    assert section_gram(kernel, taps, 16).positions == 8  # T T^H: 8 outputs
    kernel, taps, _ = _layer(rng, 8, 8, 3, 16, 1, 1, 1, False)
    assert section_gram(kernel, taps, 16).positions == 16  # a tie: T^H T
    kernel, taps, _ = _layer(rng, 2, 16, 3, 16, 1, 1, 1, False)
    assert section_gram(kernel, taps, 16).channels == 2  # fewer outputs per position


def test_section_gram_keeps_its_input_side_constructor():
    rng = np.random.default_rng(1)
    kernel, taps, T = _layer(rng, 4, 2, 3, 9, 2, 1, 1, True)
    gram = SectionGram(kernel, taps, 9)  # always T^H T
    assert np.abs(gram.toarray() - np.conj(T.T) @ T).max() <= 1e-13 * np.abs(T).max() ** 2


def test_complex_factorizations_get_the_complex_cholesky_allowance():
    """A complex Hermitian matrix factorizes with complex inner products: the proof of
    ``lambda_max <= mu`` allows (2k+1) gamma(k+4) mu at least (Higham, Lemma 3.5), not the
    real (2k+1) gamma(k+2) (the gap: 2e-14 here, beyond the other allowances' rounding)."""
    n = 50
    unitary = np.diag(np.exp(2j * np.pi * np.arange(n) / n))  # every singular value 1
    mu = 1 + 4 * n * U  # the first candidate: mu I - G = 4 n u I factorizes
    higham = (2 * n - 1) * gamma(n + 3) + 2 * U
    assert dense_upper(unitary, 1.0) ** 2 >= mu * (1 + higham) + gamma(2 * n + 4) * n
    assert dense_upper(unitary.real, 1.0) ** 2 < mu * (1 + higham) + gamma(2 * n + 4) * n
    rounding = Rounding.of(np.ones((1, 1, 3)), 1)
    k = 40
    real, complex_ = (_certified_square(1.0, k, rounding, 1, 3, c) for c in (False, True))
    assert complex_ >= 1 + (2 * k + 1) * gamma(k + 4) and complex_ > real
