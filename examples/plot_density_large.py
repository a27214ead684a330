"""
The sparsity of a large layer
=============================

A 64 -> 64 3x3 layer on 56x56 images has 1.1e8 nonzeros. :func:`sparseconv.plot.spy` draws a
layer given as a :class:`~sparseconv.ConvOperator` from its geometry alone: the counts of
nonzeros in each of 512x512 bins, with no matrix formed, in milliseconds. Next to it, an exact
zoom into the top-left corner of one channel block.
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import spy

weight = np.random.default_rng(3).standard_normal((64, 64, 3, 3))
layer = sc.ConvOperator(weight, (64, 56, 56), padding=1)
corner = sc.conv_matrix(weight[:1, :1], (1, 56, 56), padding=1)[:168, :168]

fig, axes = plt.subplots(1, 2, num="density_large.png", figsize=(8.4, 4.4),
                         layout="constrained")
image = spy(layer, axes[0], max_bins=512)
fig.colorbar(image, ax=axes[0], shrink=0.7, location="bottom", label="nonzeros per pixel")
rows, cols = layer.shape
axes[0].set_title(f"64 -> 64, 3x3 on 56x56: {rows:,} x {cols:,},\n"
                  f"{int(image.get_array().sum()):,} nonzeros in 512x512 pixels")
spy(corner, axes[1], blocks=[(56, 56)])
axes[1].set_title("zoom, exact: the top-left 168x168 entries\n"
                  "(3x3 row blocks of one channel block)")
fig.suptitle("A density raster computed from the geometry (no matrix formed), and "
             "a zoom into one channel block", fontsize=9)
