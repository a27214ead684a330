"""
The convolution arithmetic, animated
====================================

After Dumoulin and Visin's `conv_arithmetic <https://github.com/vdumoulin/conv_arithmetic>`_:
the kernel window moving over the (padded) input, one frame per output.
:func:`sparseconv.plot.conv_animation` draws each frame from the layer's index map, the same
map that builds its matrix, so each frame's window is one row of the matrix.
"""

import matplotlib.pyplot as plt

import sparseconv as sc
from sparseconv.plot import conv_animation

CELL = 0.45  # inches per grid cell


def animate(name, geometry, transposed=False):
    """The animation of ``geometry`` in a pyplot figure named ``name``, sized to its grids."""
    padded = [n + lo + hi for n, (lo, hi) in zip(geometry.input_size, geometry.padding)]
    out = geometry.output_size
    fig = plt.figure(num=name, figsize=(CELL * (padded[1] + out[1] + 2),
                                        CELL * (max(padded[0], out[0]) + 1.5)))
    return conv_animation(geometry, transposed=transposed, fig=fig)


# %%
# No padding, no strides
# ----------------------
# A 3x3 kernel on a 4x4 input gives a 2x2 output.
no_padding = animate("arithmetic_no_padding_no_strides.gif",
                     sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 4, 4)))

# %%
# Padding 1, stride 2
# -------------------
# The white cells are the zero padding; the window moves two cells at a time.
padding_strides = animate("arithmetic_padding_strides.gif",
                          sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 5, 5), stride=2,
                                                      padding=1))

# %%
# Dilation 2
# ----------
# The 9 taps spread over a 5x5 window.
dilation = animate("arithmetic_dilation.gif",
                   sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 7, 7), dilation=2))

# %%
# Transposed convolution (stride 2, padding 1)
# --------------------------------------------
# Each input cell stamps the kernel onto the output; the dashed cells outside the output are
# the padding, cropped away.
transposed = animate("arithmetic_transposed.gif",
                     sc.ConvGeometry.for_transpose((1, 1, 3, 3), (1, 3, 3), stride=2,
                                                   padding=1), transposed=True)
