"""
Stride, dilation, channels and the transposed convolution
=========================================================

Each of PyTorch's layer options changes the matrix in a way you can see. The matrices are
built by :func:`sparseconv.conv_matrix` and :func:`sparseconv.conv_transpose_matrix`; the
layer's :class:`~sparseconv.ConvGeometry` labels the axes in channels and positions and draws
the block grid (``blocks=True``).
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import spy

KERNEL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # 9 distinct colors


def spy_layer(name, weight, input_shape, title, **kwargs):
    """One figure: the layer's matrix colored by value, its blocks outlined."""
    A = sc.conv_matrix(weight, input_shape, **kwargs)
    geometry = sc.ConvGeometry.from_weight(weight.shape, input_shape, **kwargs)
    rows, cols = A.shape
    fig, ax = plt.subplots(num=name, layout="constrained",
                           figsize=(2.0 + 3.0 * min(2.0, max(0.75, cols / rows)),
                                    1.4 + 3.0 * min(1.0, max(0.45, rows / cols))))
    image = spy(A, ax, values=True, geometry=geometry, blocks=True)
    fig.colorbar(image, ax=ax, shrink=0.8, label="entry")
    ax.set_title(title)
    return fig


# %%
# Stride 2
# --------
# A stride keeps every ``stride``-th output along each axis: here 16 of the 49 rows of the
# stride-1 matrix (:func:`sparseconv.stride_matrix` selects them).
spy_layer("stride2.png", KERNEL[None, None], (1, 7, 7),
          "3x3 kernel on 7x7, stride 2, padding 1: 16 of the 49\n"
          "rows of the stride-1 matrix (every other one per axis)", stride=2, padding=1)

# %%
# Dilation 2
# ----------
# Dilation spreads the 9 taps over a 5x5 window: the diagonals move apart.
spy_layer("dilation2.png", KERNEL[None, None], (1, 7, 7),
          "3x3 kernel on 7x7, dilation 2, padding 2:\nthe taps spread over a 5x5 window",
          dilation=2, padding=2)

# %%
# Several channels
# ----------------
# 3 input and 4 output channels give a 4x3 block matrix: one doubly block Toeplitz block per
# pair of channels, each made of that pair's 3x3 kernel.
weight = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
spy_layer("multichannel.png", weight, (3, 5, 5), "3 -> 4 channels, 3x3 on 5x5, padding 1:\n"
          "a 4x3 block matrix of doubly block Toeplitz blocks", padding=1)

# %%
# A 1x1 convolution is a Kronecker product
# ----------------------------------------
# A 1x1 convolution mixes channels at every pixel alike: its matrix is ``W (x) I``, each
# channel weight repeated along a diagonal (:func:`sparseconv.conv1x1_matrix`).
signs = np.where(np.arange(12) % 2, -1, 1).reshape(4, 3)
W = np.arange(1.0, 13.0).reshape(4, 3) * signs
spy_layer("conv1x1_kronecker.png", W[:, :, None, None], (3, 4, 4),
          "1x1 convolution 3 -> 4 on 4x4:\nthe Kronecker product W (x) I_16")
assert abs(sc.conv1x1_matrix(W, (4, 4)) - sc.conv_matrix(W[:, :, None, None], (3, 4, 4))).max() == 0

# %%
# The transposed convolution is the transpose
# -------------------------------------------
# PyTorch's ``conv_transpose2d`` with the same weight, stride and padding is exactly the
# transpose of the strided convolution's matrix: the adjoint.
A = sc.conv_matrix(KERNEL[None, None], (1, 5, 5), stride=2, padding=1)
T = sc.conv_transpose_matrix(KERNEL[None, None], (1, 3, 3), stride=2, padding=1)
assert abs(T - A.T).max() == 0
geometry = sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 5, 5), stride=2, padding=1)
fig, axes = plt.subplots(1, 2, num="transposed.png", figsize=(6.8, 3.6), layout="constrained")
for ax, M, title in ((axes[0], A, "convolution 5x5 -> 3x3\n(stride 2, padding 1)"),
                     (axes[1], T, "transposed convolution 3x3 -> 5x5:\nthe transpose")):
    spy(M, ax, values=True, geometry=geometry, blocks=True)
    ax.set_title(title)
