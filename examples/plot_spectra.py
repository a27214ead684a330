"""
Singular values and frequency maps
==================================

A circular layer is diagonalized by the DFT: one small ``C_out x C_in`` matrix per frequency,
its *symbol*. :func:`sparseconv.singular_values` computes every singular value exactly from
it, also for stride 2 (through the polyphase decomposition), and
:func:`sparseconv.frequency_map` gives the largest one at each frequency.
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import frequency_heatmap, spectrum

# %%
# Padding and stride
# ------------------
# Zero padding and circular padding give nearly the same spectrum; stride 2 keeps a quarter
# of the values (x axis as a fraction of the count, to overlay them).
weight = np.random.default_rng(2).standard_normal((4, 4, 3, 3)) / 6.0
runs = {
    "circular, stride 1": dict(padding_mode="circular", padding=None),
    "zeros, stride 1": dict(padding_mode="zeros", padding=1),
    "circular, stride 2": dict(padding_mode="circular", padding=None, stride=2),
    "zeros, stride 2": dict(padding_mode="zeros", padding=1, stride=2),
}
values = {name: sc.singular_values(weight, (4, 12, 12), **kwargs)
          for name, kwargs in runs.items()}
# a certified interval for the largest singular value of the zero-padded layer (the error
# bar at index 0 of the left panel), and the certified bound for every input size and every
# zero padding, the norm on the infinite grid (the dashed line)
norm = sc.spectral_norm(weight, (4, 12, 12), padding=1)
every = sc.toeplitz_norm(weight)
print(norm.lower, norm.upper, every.upper)
fig, axes = plt.subplots(1, 2, num="spectra.png", figsize=(7.0, 2.8), layout="constrained",
                         sharey=True)
spectrum({k: v for k, v in values.items() if "stride 1" in k}, axes[0], interval=norm,
         every_size=every)
axes[0].set_title("4 -> 4, 3x3 on 12x12: circular vs zero padding")
spectrum(values, axes[1], fraction=True)
axes[1].set_title("stride 1 vs 2 (x: fraction of the values)")
axes[1].set_ylabel("")

# %%
# The gain at each frequency
# --------------------------
# A random layer passes all frequencies; the Laplacian is a high-pass filter, zero at the
# center (the zero frequency) and largest at the corners. Frequencies are in cycles per
# sample: DFT index ``k`` of an axis of ``N`` samples is ``k / N``, from -1/2 to 1/2.
kernels = {
    "random 4 -> 4, 3x3": weight,
    "Laplacian 1 -> 1 (a high-pass)": np.array([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]),
}
fig, axes = plt.subplots(1, 2, num="frequency_map.png", figsize=(7.0, 3.0),
                         layout="compressed")
for ax, (title, w) in zip(axes, kernels.items()):
    frequency_heatmap(sc.frequency_map(w, (32, 32)), ax)
    ax.set_title(f"{title}, on 32x32")
