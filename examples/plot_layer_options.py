"""
Stride, dilation, channels and the transposed convolution
=========================================================

Each of PyTorch's layer options changes the matrix in a way you can see. The matrices are
built by :func:`sparseconv.conv_matrix` and :func:`sparseconv.conv_transpose_matrix`; the
layer's :class:`~sparseconv.ConvGeometry` labels the axes in channels and positions and draws
the block grid (``blocks=True``). Each figure is one journal column wide (3.5 in).
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import spy

KERNEL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # 9 distinct colors


def spy_layer(name, weight, input_shape, title, **kwargs):
    """One column-wide figure: the layer's matrix colored by value, its blocks outlined."""
    A = sc.conv_matrix(weight, input_shape, **kwargs)
    geometry = sc.ConvGeometry.from_weight(weight.shape, input_shape, **kwargs)
    rows, cols = A.shape
    wide = cols >= 2 * rows  # spy puts the colorbar below a wide matrix
    fig, ax = plt.subplots(num=name, layout="compressed",
                           figsize=(3.5, min(4.2, (1.9 if wide else 1.0) + 2.6 * rows / cols)))
    spy(A, ax, values=True, geometry=geometry, blocks=True)
    ax.set_title(title)
    return fig


# %%
# Stride 2
# --------
# A stride keeps every ``stride``-th output along each axis: here 16 of the 49 rows of the
# stride-1 matrix (:func:`sparseconv.stride_matrix` selects them).
spy_layer("stride2.png", KERNEL[None, None], (1, 7, 7),
          "3x3 kernel on 7x7, stride 2, padding 1:\n16 of the 49 rows of the stride-1 matrix",
          stride=2, padding=1)

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
          "a 4x3 grid of doubly block Toeplitz blocks", padding=1)

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
# transpose of the strided convolution's matrix: the adjoint. Both panels are drawn at the
# same scale (an entry is the same size in both: the width ratio is the column ratio) and
# share one color scale.
A = sc.conv_matrix(KERNEL[None, None], (1, 5, 5), stride=2, padding=1)
T = sc.conv_transpose_matrix(KERNEL[None, None], (1, 3, 3), stride=2, padding=1)
assert abs(T - A.T).max() == 0
geometry = sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 5, 5), stride=2, padding=1)
fig, axes = plt.subplots(1, 2, num="transposed.png", figsize=(5.0, 3.4), layout="constrained",
                         width_ratios=[A.shape[1], T.shape[1]])
panels = ((axes[0], A, "convolution\n5x5 -> 3x3", "input (5x5)", "output (3x3)"),
          (axes[1], T, "transposed\n3x3 -> 5x5", "input\n(3x3)", "output (5x5)"))
for ax, M, title, xlabel, ylabel in panels:
    image = spy(M, ax, values=True, geometry=geometry, blocks=True, colorbar=False,
                vmin=0, vmax=KERNEL.max())
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
fig.colorbar(image, ax=axes, shrink=0.8, label="entry value (kernel weight)")
fig.draw_without_rendering()
scales = [ax.get_window_extent().width / M.shape[1] for ax, M, *_ in panels]
assert abs(scales[0] - scales[1]) < 0.02 * scales[0], scales  # the same size per entry
