"""
Convolution as a structured matrix
==================================

A convolution layer is a linear map, so it is a matrix. This example draws the classic
pictures of that matrix, each built *the tutorial's way* by a sparseconv function and colored
by the value of each stored entry: the Toeplitz matrix of a 1-D convolution, the doubly block
Toeplitz and doubly block circulant matrices of a 2-D one, and im2col's 0/1 selection matrix.
"""

import matplotlib.pyplot as plt
import numpy as np

import sparseconv as sc
from sparseconv.plot import spy

KERNEL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # 9 distinct colors


def spy_values(name, A, title, **kwargs):
    """One column-wide figure (3.5 in): the entries of ``A`` colored by value, a colorbar."""
    rows, cols = A.shape
    wide = cols >= 2 * rows  # spy puts the colorbar below a wide matrix
    fig, ax = plt.subplots(num=name, layout="compressed",
                           figsize=(3.5, min(4.2, (1.9 if wide else 1.0) + 2.6 * rows / cols)))
    spy(A, ax, values=True, **kwargs)
    ax.set_title(title)
    return fig


# %%
# 1-D: a Toeplitz matrix
# ----------------------
# Each kernel tap fills one diagonal. With ``mode="full"`` the output has ``n + k - 1``
# entries, as :func:`scipy.signal.convolve` returns.
A = sc.toeplitz_matrix([-2.0, 1.0, 3.0], 10, mode="full")
spy_values("toeplitz_1d.png", A, "1-D convolution, kernel [-2, 1, 3], n=10 (full):\n"
           "a Toeplitz matrix, one diagonal per tap")

# %%
# 2-D: doubly block Toeplitz
# --------------------------
# A 3x3 kernel on a 5x5 image (``"valid"``) is a 3x5 grid of 3x5 Toeplitz blocks (one block
# row per output row, one block column per input row), each built from one kernel row,
# constant along block diagonals. The grid lines mark the blocks.
A = sc.doubly_block_toeplitz(KERNEL, (5, 5), mode="valid")
spy_values("doubly_block_toeplitz.png", A, "3x3 kernel on 5x5, valid: doubly block Toeplitz\n"
           "(a 3x5 grid of 3x5 Toeplitz blocks)", blocks=[(3, 5)])

# %%
# Circular padding: doubly block circulant
# ----------------------------------------
# With circular padding both the blocks and the grid of blocks wrap around. The 2-D DFT
# diagonalizes this matrix, which is why the spectra of circular layers are exact
# (:func:`sparseconv.singular_values`).
A = sc.doubly_block_circulant(KERNEL, (5, 5))
spy_values("doubly_block_circulant.png", A, "3x3 kernel on 5x5, circular padding:\n"
           "doubly block circulant (5x5 blocks of 5x5)", blocks=[(5, 5)])

# %%
# im2col: a selection matrix
# --------------------------
# im2col gathers every patch of the input into a column. As a matrix it has exactly one 1 per
# row, taken from the same index map as the convolution: ``im2col_matrix(...) @ x.ravel()`` is
# PyTorch's ``F.unfold``, and the layer is ``weight.reshape(C_out, -1) @ patches``.
A = sc.im2col_matrix((1, 4, 4), 3)
fig, ax = plt.subplots(num="im2col.png", figsize=(3.5, 4.2), layout="compressed")
spy(A, ax, blocks=[(4, 16)])
ax.set_title("im2col, 4x4 input, 3x3 kernel:\na 0/1 selection, one 1 per row")
ax.set_xlabel("input position")
ax.set_ylabel("(tap, output position): 9 x 4 rows")
