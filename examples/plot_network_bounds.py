"""
Certified Lipschitz bounds of a PyTorch network
===============================================

:func:`sparseconv.torch.lipschitz_report` bounds the spectral norm of every linear layer of
a PyTorch network by a certified interval, and the network's Lipschitz constant over its
torch.fx graph (residual sums included). An image-to-image generator in CycleGAN's style pads
by reflection before each convolution: apart, that padding is a layer of norm 2 (it copies
the inputs next to the border), and the product of its bound and the unpadded convolution's
is far above the norm of the padded convolution the two make. ``fold_padding=True`` bounds
each padding and the convolution that reads it as that one layer
(:func:`sparseconv.torch.fold_padding`), as ``fold_batchnorm=True`` folds each BatchNorm
into the convolution before it.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import sparseconv.torch as sct

torch.manual_seed(0)


def normalized(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm in eval mode, with running statistics as training leaves them."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    return bn


class Residual(nn.Module):
    """CycleGAN's residual block: reflect padding, 3x3 convolution, BatchNorm, twice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), normalized(channels),
            nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
            normalized(channels))

    def forward(self, x):
        return x + self.body(x)


generator = nn.Sequential(
    nn.ReflectionPad2d(3), nn.Conv2d(3, 8, 7), normalized(8), nn.ReLU(),
    nn.Conv2d(8, 16, 3, stride=2, padding=1), normalized(16), nn.ReLU(),
    Residual(16), Residual(16),
    nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), normalized(8),
    nn.ReLU(), nn.ReflectionPad2d(3), nn.Conv2d(8, 3, 7), nn.Tanh()).eval()

# %%
# The report, apart and folded
# ----------------------------
# The same network twice: each row is a certified interval ``[lower, upper]`` of a layer's
# spectral norm on the traced input shape; the network bound follows the graph.
apart = sct.lipschitz_report(generator, (3, 16, 16), fold_batchnorm=True)
folded = sct.lipschitz_report(generator, (3, 16, 16), fold_batchnorm=True, fold_padding=True)
print(folded)
print(f"network bound: {apart.network_upper:.4g} apart, {folded.network_upper:.4g} folded")

# %%
# Each padded convolution: the padding's bound times the convolution's (apart) against the
# padded convolution's own (folded), with its certified lower bound: the product is 1.6 to
# 1.8 times the norm here, and the network bound, a product along each path, 15 times.
pairs = [row for row in folded if "+" in row["name"] and row["type"].startswith("Reflection")]
products, uppers, lowers = [], [], []
for row in pairs:
    pad, conv = row["name"].split("+")[:2]
    conv_row = next(r for r in apart if r["name"].split("+")[0] == conv)
    products.append(apart[pad]["upper"] * conv_row["upper"])
    uppers.append(row["upper"])
    lowers.append(row["lower"])
labels = [row["name"].split("+")[1] for row in pairs]
at = np.arange(len(pairs))
fig, ax = plt.subplots(num="network_bounds.png", figsize=(7.0, 2.8), layout="constrained")
handles = [
    ax.bar(at - 0.2, products, 0.4, color="0.7", label="padding's bound x convolution's (apart)"),
    ax.bar(at + 0.2, uppers, 0.4, color="C0", label="padded convolution's (fold_padding=True)"),
    ax.scatter(at + 0.2, lowers, color="C1", marker="_", s=120, zorder=3,
               label="its certified lower bound")]
ax.set_xticks(at, labels)
ax.set_xlabel("convolution after a ReflectionPad2d (its BatchNorm folded in, where one follows)")
ax.set_ylabel("spectral norm bound")
ax.set_title(f"CycleGAN-style generator, 3x16x16: network bound {apart.network_upper:.3g} "
             f"apart, {folded.network_upper:.3g} folded")
ax.set_ylim(0, 1.45 * max(products))
# (in the order drawn, the lower bound after the bound it is "its" of, and in the print
# size's 8 pt: a review found 7 pt and the lower bound listed first)
ax.legend(handles=handles, loc="upper center", ncols=2)
