"""
The convolution arithmetic, animated
====================================

After Dumoulin and Visin's `conv_arithmetic <https://github.com/vdumoulin/conv_arithmetic>`_:
the kernel window moving over the (padded) input, one frame per output.
:func:`sparseconv.plot.conv_animation` draws each frame from the layer's index map, the same
map that builds its matrix (:func:`sparseconv.plot.padded_index_map`), so each frame's window
is one row of the matrix. ``conv_animation(layer, fname=...)`` with a name ending in ``.gif``
writes the GIF, at least 600 pixels wide; ``.png``, ``.pdf`` or ``.svg`` writes the first
frame as a still.
"""

import matplotlib.pyplot as plt

import sparseconv as sc
from sparseconv.plot import conv_animation, padded_index_map


def animate(name, geometry, transposed=False):
    """The animation of ``geometry`` in a pyplot figure named ``name`` (sized to its grids)."""
    return conv_animation(geometry, transposed=transposed, fig=plt.figure(num=name))


# %%
# No padding, no strides
# ----------------------
# A 3x3 kernel on a 4x4 input gives a 2x2 output.
no_padding = animate("arithmetic_no_padding_no_strides.gif",
                     sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 4, 4)))

# %%
# Padding 1, stride 2
# -------------------
# The white cells are the zero padding; the window moves two cells at a time. Frame ``o``
# darkens the cells ``window[o]`` of the padded grid; ``source`` says which input cell each
# padded cell holds (-1: a zero).
geometry = sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 5, 5), stride=2, padding=1)
window, source = padded_index_map(geometry)
print(window[0], source[window[0]])  # the first output reads 5 zeros and 4 input cells
padding_strides = animate("arithmetic_padding_strides.gif", geometry)

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
