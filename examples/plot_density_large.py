"""
The sparsity of a large layer
=============================

A 64 -> 64 3x3 layer on 56x56 images is a 200,704 x 200,704 matrix with 1.1e8 nonzeros.
:func:`sparseconv.plot.spy` draws a layer given as a :class:`~sparseconv.ConvOperator` from its
geometry alone, with no matrix formed: :func:`sparseconv.plot.raster` counts the nonzeros in
bins that never straddle a channel block and cut every block alike
(:func:`sparseconv.plot.bin_edges`), so all 64 x 64 blocks show the same band, with no moiré.
``zoom=`` draws a range of channel blocks, down to single image rows.
"""

import os
import tempfile

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import (
    bin_edges,
    density_counts,
    largest_entries,
    raster,
    save_raster,
    spy,
)

weight = np.random.default_rng(3).standard_normal((64, 64, 3, 3))
layer = sc.ConvOperator(weight, (64, 56, 56), padding=1)

# %%
# The counts behind the picture
# -----------------------------
# 256 bins per axis: 4 per channel, each 784 positions (14 rows of the 56x56 image). Every
# channel block holds the same counts.
binned = raster(layer, 256)
print(binned.counts.shape, binned.bin_shape)
blocks = binned.counts.reshape(64, 4, 64, 4).transpose(0, 2, 1, 3)
assert (blocks == blocks[0, 0]).all()
print(bin_edges(3136, 4, period=56))  # one channel's edges: whole image rows per bin

# %%
# The whole layer, four channel blocks, one channel pair
# ------------------------------------------------------
# Left: all 64 x 64 blocks, about 5 pixels each in print: each block's band is one stroke of
# an even hatching (the grid between them, drawn, would hide the bands). Middle: output and
# input channels 0-3, binned by image rows, where each block is the row-block tridiagonal of
# a 3x3 kernel.
# Right: the first 168 x 168 entries of one block, one pixel per entry, with its 56 x 56 row
# blocks.
corner = sc.conv_matrix(weight[:1, :1], (1, 56, 56), padding=1)[:168, :168]
fig, axes = plt.subplots(1, 3, num="density_large.png", figsize=(7.0, 3.0),
                         layout="compressed")  # "compressed": for axes of a fixed aspect
spy(layer, axes[0], max_bins=256, blocks=False, colorbar=False)
image = spy(layer, axes[1], max_bins=256, blocks=True, zoom=((0, 4), (0, 4)), colorbar=False)
for ax, artist, title in ((axes[0], axes[0].images[0], "64 -> 64 channels, 3x3 on 56x56"),
                          (axes[1], image, "zoom: channels 0-3")):
    bins = raster(layer, 256, zoom=None if ax is axes[0] else ((0, 4), (0, 4))).bin_shape
    fig.colorbar(artist, ax=ax, location="bottom", shrink=0.9,
                 label=f"nonzeros per {bins[0]}x{bins[1]} bin")
    ax.set_title(title)
    ax.set_ylabel("output channel")
    ax.set_xlabel("input channel")
spy(corner, axes[2], blocks=[(56, 56)])
axes[2].set_title("one channel pair, exactly")
axes[2].set_xticks(range(0, 169, 56))
axes[2].set_yticks(range(0, 169, 56))
axes[2].set_xlabel("input position")
axes[2].set_ylabel("output position")

# %%
# The row blocks, counted
# -----------------------
# :func:`sparseconv.plot.density_counts` bins any sparse matrix: the corner above, in its 3 x 3
# row blocks, holds 3 x 56 - 2 = 166 entries in each tridiagonal block.
edges = bin_edges(168, 3, period=56)
print(density_counts(corner, edges, edges))

# %%
# The weights, pooled
# -------------------
# ``values=True`` colors entries by value. On a matrix longer than ``max_bins`` each bin is
# drawn as its stored entry of largest magnitude, with its sign
# (:func:`sparseconv.plot.largest_entries`): an average would fade the weights into the zeros
# around them. Left, channels 0-3 of the layer (12,544 x 12,544 entries) in bins of one image
# row (56 entries, ``max_bins=224``): an output row reads the image rows above, at and below
# it, so every block's band is three diagonals of bins, each the largest tap of one kernel
# row. Right, the corner of one channel pair drawn above, in bins of 3 x 3 entries: its three
# row blocks' diagonals, pooled.
four = sc.conv_matrix(weight[:4, :4], (4, 56, 56), padding=1)
fig, axes = plt.subplots(1, 2, num="density_values.png", figsize=(7.0, 3.2),
                         layout="compressed")
# (about two pixels a bin at the gallery's 200 dpi: nearest-neighbour draws each bin whole,
# where the default antialiasing averaged neighbouring diagonals into colours of no entry)
spy(four, axes[0], values=True, max_bins=224, interpolation="nearest",
    geometry=sc.ConvGeometry.from_weight((4, 4, 3, 3), (4, 56, 56), padding=1), blocks=True)
axes[0].set_title("channels 0-3, values pooled by image rows")
spy(corner, axes[1], values=True, max_bins=56, blocks=[(56, 56)])
axes[1].set_title("one channel pair's corner, 3 x 3 bins")
edges = bin_edges(168, 56)
pooled = largest_entries(corner, edges, edges)
taps = weight[0, 0].ravel()
top = taps[np.abs(taps).argmax()]
print(pooled.shape, top)  # the largest tap survives the pooling, with its sign
assert top in pooled and np.nanmax(np.abs(pooled)) == abs(top)

# %%
# The raster itself, one pixel per bin
# ------------------------------------
# :func:`sparseconv.plot.save_raster` writes the counts as an image with no axes and no
# resampling: 256 x 256 pixels for the whole layer.
with tempfile.TemporaryDirectory() as tmp:
    save_raster(os.path.join(tmp, "layer.png"), layer, max_bins=256)
    print(matplotlib.image.imread(os.path.join(tmp, "layer.png")).shape)
