"""
Clipping the singular values of a layer
=======================================

:func:`sparseconv.circular_svd` factors a periodic layer exactly, one small SVD per frequency;
:func:`sparseconv.clip_singular_values` projects it onto the operator-norm ball
``||A||_2 <= c`` (Sedghi, Gupta & Long, 2019) by clipping every singular value at ``c``. The
exact projection fills the whole input with its kernel; alternating it with the restriction
to the original 3x3 taps keeps the kernel small, at the price of an approximate norm.
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import frequency_heatmap, spectrum

# %%
# The clipped spectrum beside the original
# ----------------------------------------
# A random 8 -> 8 3x3 layer on 16x16, clipped at half its norm: exactly (a 16x16 kernel),
# and keeping the 3x3 support (20 rounds of the alternating projection).
rng = np.random.default_rng(0)
weight = rng.standard_normal((8, 8, 3, 3)) / 6.0
shape = (8, 16, 16)
periodic = dict(padding=None, padding_mode="circular")
svd = sc.circular_svd(weight, shape)
c = 0.5 * svd.S[0]
full = sc.clip_singular_values(weight, shape, max=c)
small = sc.clip_singular_values(weight, shape, max=c, support="kernel", iterations=20)
values = {  # (short labels: the legend fits under the curves, at the lower left)
    "original": svd.S,
    f"clipped at {c:.2f}, exact": sc.singular_values(full, shape, **periodic),
    "clipped, 3x3 kept": sc.singular_values(small, shape, **periodic),
}
fig, axes = plt.subplots(1, 2, num="clip_singular_values.png", figsize=(7.0, 3.6),
                         layout="constrained")
spectrum(values, axes[0])
axes[0].legend(loc="lower left")  # (off the curves: a legend at the upper right crossed
# the original's start, a review found)
axes[0].axhline(c, color="0.5", lw=0.8, ls=":")
axes[0].set_title(f"8 -> 8, 3x3 on 16x16: all {svd.S.size} singular values")
# Right: the largest singular value at each frequency of the clipped 3x3 layer, brought down
# to about ``c`` where the original exceeded it (the alternating projection keeps the 3x3
# support at the price of an approximate norm: a little above ``c`` at some frequencies).
gain = sc.frequency_map(small, shape[1:])
# with its labelled colorbar, from 0: a scale of the map's own range would draw a few
# percent of variation as full-range structure
frequency_heatmap(gain, axes[1], vmin=0.0)
axes[1].set_title("clipped 3x3 layer: largest singular value per frequency")
print(f"c = {c:.3f}; the clipped 3x3 layer's largest gain {gain.max():.3f}")
