"""sparseconv: convolution layers as exact sparse matrices and matrix-free operators.

Every public name lives here; the implementation is in private modules (``sparseconv._*``),
one concept each. Four public submodules are imported by name: :mod:`sparseconv.plot`
(matplotlib, imported lazily), :mod:`sparseconv.testing` (checks for research scripts), and
the adapters :mod:`sparseconv.torch` and :mod:`sparseconv.dask`. ``import sparseconv``
imports neither matplotlib nor torch nor dask.

Layer matrices
--------------
conv_matrix                  -- a convolution layer as a scipy.sparse array
conv_transpose_matrix        -- a transposed convolution layer as a scipy.sparse array
conv_matrix_blocks           -- a layer's matrix in row blocks, one at a time
conv_output_shape            -- PyTorch's output shape of a convolution
conv_transpose_output_shape  -- PyTorch's output shape of a transposed convolution
ConvGeometry                 -- the validated layer and its gather index map

Operators
---------
ConvOperator                 -- a convolution as a matrix-free LinearOperator
ConvTransposeOperator        -- a transposed convolution as a matrix-free LinearOperator

Files
-----
save_layer                   -- a layer's matrix, arguments and weight in one scipy .npz
load_layer                   -- the matrix and the SavedLayer of such a file
SavedLayer                   -- a saved layer: rebuilds its operator or matrix

Classic constructions
---------------------
toeplitz_matrix              -- 1-D convolution as a Toeplitz matrix
doubly_block_toeplitz        -- 2-D convolution from the kernel rows' Toeplitz blocks
doubly_block_circulant       -- 2-D circular convolution, diagonalized by the 2-D DFT
conv1x1_matrix               -- a 1x1 convolution as a Kronecker product
block_conv_matrix            -- a multi-channel layer as a block matrix of single-channel ones
dilate_kernel                -- a dilated kernel: zeros between the taps
transpose_kernel             -- a transposed convolution's kernel as a direct one's
fractionally_strided         -- a transposed convolution as zero insertion + convolution

Selection matrices
------------------
im2col_matrix                -- the im2col (unfold) patch matrix
pad_matrix                   -- padding in any mode as a 0/1 matrix
stride_matrix                -- stride as row selection

Pooling, resampling, composition, receptive fields
--------------------------------------------------
avg_pool_matrix              -- average pooling (PyTorch's avg_pool{1,2,3}d)
adaptive_avg_pool_matrix     -- adaptive average pooling (PyTorch's adaptive_avg_pool{1,2,3}d)
interpolate_matrix           -- nearest and (bi/tri)linear resampling (PyTorch's F.interpolate)
pixel_shuffle_matrix         -- pixel shuffle as a permutation (PyTorch's pixel_shuffle)
pixel_unshuffle_matrix       -- its inverse (PyTorch's pixel_unshuffle)
AffineMap                    -- x -> A x + b, composable
affine_conv                  -- a convolution with its bias as an AffineMap
compose                      -- the product of a chain of layers
compose_kernels              -- a stack of "valid" convolutions as one kernel
receptive_field              -- the exact receptive field of one unit of any chain
receptive_field_paths        -- path counts from each input to one output of a conv stack
receptive_field_size         -- the extent of a stack's receptive field, in closed form

Spectra
-------
symbol                       -- the per-frequency matrices of a periodic layer
frequency_map                -- sigma_max of the symbol at each frequency
singular_values              -- all singular values, exactly (FFT or dense)
eigenvalues                  -- eigenvalues of a square periodic layer
composition_singular_values  -- singular values of a product of periodic layers, any stride
composition_eigenvalues      -- eigenvalues of a product of periodic layers
circular_svd                 -- the SVD of a periodic layer: S, U, V, solve, pinv, rank_r
CircularSVD                  -- its result, itself the layer's LinearOperator
clip_singular_values         -- the projection onto an operator-norm ball (Sedghi et al.)
spectral_norm                -- the largest singular value with a certified interval
SpectralNorm                 -- its result: value, lower, upper, method
spectral_norms               -- spectral_norm of many layers, several processes at once
toeplitz_norm                -- the norm on the infinite grid: a bound for every input size

Memory
------
get_memory_limit             -- the limit every explicit matrix is sized against
set_memory_limit             -- change it
MatrixTooLargeError          -- raised before allocating beyond it

Testing (``import sparseconv.testing``; PyTorch is imported only when called)
----------------------------------------------------------------------------
testing.dottest                     -- <A x, y> == <x, A^H y> on random vectors (PyLops' dot test)
testing.assert_layer_matches_torch  -- an operator's product and adjoint against PyTorch
"""

from ._blocks import conv_matrix_blocks
from ._circular_svd import CircularSVD, circular_svd
from ._clipping import clip_singular_values
from ._composition import AffineMap, affine_conv, compose, compose_kernels
from ._composition_spectra import composition_eigenvalues, composition_singular_values
from ._dilation import dilate_kernel
from ._geometry import ConvGeometry
from ._io import SavedLayer, load_layer, save_layer
from ._matrices import conv_matrix, conv_transpose_matrix
from ._memory import MatrixTooLargeError, get_memory_limit, set_memory_limit
from ._operators import ConvOperator, ConvTransposeOperator
from ._pixel_shuffle import pixel_shuffle_matrix, pixel_unshuffle_matrix
from ._pooling import avg_pool_matrix
from ._receptive_field import receptive_field, receptive_field_paths, receptive_field_size
from ._resampling import adaptive_avg_pool_matrix, interpolate_matrix
from ._selection import im2col_matrix, pad_matrix, stride_matrix
from ._shapes import conv_output_shape, conv_transpose_output_shape
from ._spectra import eigenvalues, singular_values
from ._spectral_norm import SpectralNorm, spectral_norm
from ._spectral_norms import spectral_norms
from ._structured import (
    block_conv_matrix,
    conv1x1_matrix,
    doubly_block_circulant,
    doubly_block_toeplitz,
    toeplitz_matrix,
)
from ._symbol import frequency_map, symbol
from ._torus import toeplitz_norm
from ._transposed import fractionally_strided, transpose_kernel
from ._version import __version__ as __version__

__all__ = [
    "AffineMap",
    "CircularSVD",
    "ConvGeometry",
    "ConvOperator",
    "ConvTransposeOperator",
    "MatrixTooLargeError",
    "SavedLayer",
    "SpectralNorm",
    "adaptive_avg_pool_matrix",
    "affine_conv",
    "avg_pool_matrix",
    "block_conv_matrix",
    "circular_svd",
    "clip_singular_values",
    "compose",
    "compose_kernels",
    "composition_eigenvalues",
    "composition_singular_values",
    "conv1x1_matrix",
    "conv_matrix",
    "conv_matrix_blocks",
    "conv_output_shape",
    "conv_transpose_matrix",
    "conv_transpose_output_shape",
    "dilate_kernel",
    "doubly_block_circulant",
    "doubly_block_toeplitz",
    "eigenvalues",
    "fractionally_strided",
    "frequency_map",
    "get_memory_limit",
    "im2col_matrix",
    "interpolate_matrix",
    "load_layer",
    "pad_matrix",
    "pixel_shuffle_matrix",
    "pixel_unshuffle_matrix",
    "receptive_field",
    "receptive_field_paths",
    "receptive_field_size",
    "save_layer",
    "set_memory_limit",
    "singular_values",
    "spectral_norm",
    "spectral_norms",
    "stride_matrix",
    "symbol",
    "toeplitz_matrix",
    "toeplitz_norm",
    "transpose_kernel",
]
