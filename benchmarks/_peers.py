"""Faithful numpy reimplementations of the published spectral-norm methods for conv layers.

Each function takes a weight ``(C_out, C_in, k, k)`` (2-D, stride 1) and returns a float; the
bounds (``delattre2024``, ``araujo2021``) hold for every input size of the zero-padded layer,
the estimates (``ryu2019``, ``svds``) are for one input size ``n`` with padding ``k // 2`` and
certify nothing. None of them accounts for rounding.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import scipy.sparse.linalg as spla

from sparseconv import ConvOperator


def delattre2024(weight: np.ndarray, n_iter: int = 6, dtype=np.complex64) -> float:
    """Gram iteration on the kernel for zero-padded convolutions (Delattre et al. 2024).

    B. Delattre, Q. Barthelemy, A. Allauzen, "Spectral Norm of Convolutional Layers with
    Circular and Zero Paddings", arXiv:2402.00240 (2024); code: github.com/blaisedelattre/
    lip4conv, ``spectral_rescaling.compute_spectral_rescaling_conv``. Each iteration
    normalizes the kernel by its Frobenius norm and replaces it by its Gram kernel
    ``conv2d(K, K, padding=size-1)``; after ``n_iter`` steps the bound is
    ``max_i (sum_{j, pos} |K_ij(pos)|)^(2^-n) * prod(norms)``. The self-convolutions are done
    here as products of the kernel's symbol on a grid of the final support
    ``2^n (k-1) + 1`` (exact: no aliasing), in single precision as the authors' PyTorch code.
    """
    w = weight if weight.shape[1] <= weight.shape[0] else weight.transpose(1, 0, 2, 3)
    size = [2**n_iter * (k - 1) + 1 for k in w.shape[2:]]
    real = np.float32 if dtype == np.complex64 else np.float64
    spectrum = np.fft.rfftn(w.astype(real), s=size, axes=(2, 3)).astype(dtype)
    c_out = w.shape[0]
    m = spectrum.reshape(c_out, w.shape[1], -1).transpose(2, 0, 1)  # (F, C_out, C_in)
    # Parseval on the half spectrum: the columns that stand for two count twice
    twice = np.full(spectrum.shape[-1], 2.0)
    twice[0] = 1.0
    if size[1] % 2 == 0:
        twice[-1] = 1.0
    count = np.broadcast_to(twice, spectrum.shape[2:]).reshape(-1)
    log_norm = 0.0
    for _ in range(n_iter):
        norm = math.sqrt(float(np.einsum("f,fij->", count, np.abs(m) ** 2)) / math.prod(size))
        m = m / real(norm)
        log_norm = 2 * (log_norm + math.log(norm))
        m = m @ np.conj(m.transpose(0, 2, 1))
    kernel = np.fft.irfftn(m.transpose(1, 2, 0).reshape(c_out, c_out, *spectrum.shape[2:]),
                           s=size, axes=(2, 3))
    power = 2.0**-n_iter
    rows = np.abs(kernel).sum(axis=(1, 2, 3)).astype(np.float64) ** power
    return float(rows.max() * math.exp(log_norm * power))


def araujo2021(weight: np.ndarray, n_sample: int = 50) -> float:
    """LipGrid (Araujo et al., AAAI 2021), the "v2" code the authors published.

    A. Araujo, B. Negrevergne, Y. Chevaleyre, J. Atif, "On Lipschitz Regularization of
    Convolutional Layers using Toeplitz Matrix Theory", AAAI 2021; code: github.com/MILES-PSL/
    Upper-Bound-Lipschitz-Convolutional-Layers (as reproduced in lip4conv's ``bounds.py``):
    ``sqrt(max over a 50 x 50 grid of sum_ij |f_ij(w)|^2) / (1 - 2d/n_sample)``, ``f_ij`` the
    trigonometric polynomial of kernel ``(i, j)``, ``d = (k-1)/2``. A bound on the norm for
    every input size (the Frobenius norm of the symbol bounds its spectral norm).
    """
    c_out, c_in, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError("LipGrid needs a square kernel of odd size")
    if k == 1:
        return float(np.sqrt((weight**2).sum()))
    x = np.linspace(0, 2 * np.pi, num=n_sample)
    grid = np.array(list(product(x, x)))
    index = np.arange(-k + 1.0, 1.0)
    h0, h1 = np.repeat(index, k), np.tile(index, k)
    angle = grid[:, :1] * h0 + grid[:, 1:] * h1  # (samples, k*k)
    ker = weight.reshape(c_out * c_in, -1)
    poly = np.zeros(len(grid))
    for start in range(0, len(ker), 4096):  # sum_ij |f_ij|^2 in slices: memory stays small
        part = ker[start:start + 4096]
        poly += ((part @ np.cos(angle).T) ** 2 + (part @ np.sin(angle).T) ** 2).sum(axis=0)
    d = (k - 1) / 2
    denom = 1 - 2 * d / n_sample
    return float(np.sqrt(poly.max()) / (denom if denom else 1))


def ryu2019(weight: np.ndarray, n: int, n_iter: int = 100, seed: int = 0) -> float:
    """Power iteration on the zero-padded layer (Ryu et al., ICML 2019).

    E. K. Ryu, J. Liu, S. Wang, X. Chen, Z. Wang, W. Yin, "Plug-and-Play Methods Provably
    Converge with Properly Trained Denoisers", ICML 2019; code: github.com/uclaopt/
    Provable_Plug_and_Play, ``model/Spectral_Normalize.py``: ``v = A u / |A u|``,
    ``u = A^T v / |A^T v|``, ``n_iter`` times, then ``<A u, v>``. An estimate from below.
    """
    op = ConvOperator(weight, (weight.shape[1], n, n), padding=weight.shape[-1] // 2)
    u = np.random.default_rng(seed).standard_normal(op.shape[1])
    u /= np.linalg.norm(u)
    v = op @ u
    for _ in range(n_iter):
        v = op @ u
        v /= np.linalg.norm(v) + 1e-12
        u = op.rmatvec(v)
        u /= np.linalg.norm(u) + 1e-12
    return float((op @ u) @ v)


def svds(weight: np.ndarray, n: int, tol: float = 0.0) -> float:
    """``scipy.sparse.linalg.svds(k=1)`` on the matrix-free zero-padded layer (ARPACK)."""
    op = ConvOperator(weight, (weight.shape[1], n, n), padding=weight.shape[-1] // 2)
    v0 = np.random.default_rng(0).standard_normal(min(op.shape))
    return float(spla.svds(op, k=1, tol=tol, v0=v0, return_singular_vectors=False)[0])
