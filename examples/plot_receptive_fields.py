"""
Composition and receptive fields
================================

Two layers compose into one matrix, their product (:func:`sparseconv.compose`), and the
receptive field of an output unit is the set of input pixels with a nonzero path to it.
:func:`sparseconv.receptive_field_paths` counts those paths from the layers' geometry alone,
with no matrix formed, and :func:`sparseconv.plot.receptive_field_heatmap` draws them.
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import receptive_field_heatmap, spy

KERNEL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])

# %%
# Two 3x3 layers
# --------------
# The product of two 3x3 layers' matrices has 5x5-wide bands, and each output reads a 5x5
# window; the number of paths from each input pixel is the composed kernel's support.
layer = sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 8, 8), padding=1)
A = sc.conv_matrix(KERNEL[None, None], (1, 8, 8), padding=1)
fig, axes = plt.subplots(1, 2, num="composition.png", figsize=(7.0, 3.1), layout="compressed")
spy(sc.compose(A, A), axes[0], geometry=layer, blocks=True)
axes[0].set_title("two 3x3 layers on 8x8, padding 1:\nthe product has 5x5-wide bands")
receptive_field_heatmap([layer, layer], axes[1], position=(3, 4))
axes[1].set_title("receptive field of output (3, 4):\npaths from each input pixel")

# %%
# Stacks and dilation
# -------------------
# One 3x3 layer reads 9 pixels, three stacked 3x3 layers read 49 (a 7x7 box), and a dilated
# stack with dilations 1, 2, 4 reads 225 (15x15): the extent that
# :func:`sparseconv.receptive_field_size` gives in closed form. All three panels share one
# scale of path counts: a single layer reads each pixel once, the palest colour.
stacks = {
    "one 3x3 layer": [1],
    "three stacked 3x3 layers": [1, 1, 1],
    "dilated stack (dilation 1, 2, 4)": [1, 2, 4],
}
paths = {title: sc.receptive_field_paths(
    [sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=d, dilation=d)
     for d in dilations]) for title, dilations in stacks.items()}
most = max(int(p.max()) for p in paths.values())
fig, axes = plt.subplots(1, 3, num="receptive_field.png", figsize=(7.0, 2.45),
                         layout="compressed")
for ax, (title, dilations) in zip(axes, stacks.items()):
    layers = [sc.ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=d, dilation=d)
              for d in dilations]
    image = receptive_field_heatmap(layers, ax, vmax=most, colorbar=False)
    ax.set_title(f"{title}\n{int((image.get_array() > 0).sum())} input pixels")
    side = sc.receptive_field_size([3] * len(dilations), dilation=dilations)
    assert (image.get_array() > 0).sum() == side**2
fig.colorbar(image, ax=axes, shrink=0.9, ticks=[1, 10, 20, 30, 40, most],
             label="paths to the output unit").minorticks_off()
