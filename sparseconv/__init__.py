"""sparseconv: convolution layers as exact sparse matrices and matrix-free operators.

``sparseconv.plot``, ``sparseconv.figures`` and ``sparseconv.cli`` are submodules, imported on
demand, so that ``import sparseconv`` does not import matplotlib.
"""

from .algebra import (
    AffineMap,
    affine_conv,
    avg_pool_matrix,
    compose,
    compose_kernels,
    receptive_field,
    receptive_field_size,
)
from .geometry import ConvGeometry
from .limits import MatrixTooLargeError, get_memory_limit, set_memory_limit
from .matrices import conv_matrix, conv_transpose_matrix
from .norms import SpectralNorm, spectral_norm
from .operators import ConvOperator, ConvTransposeOperator
from .selection import im2col_matrix, pad_matrix, stride_matrix
from .shapes import conv_output_shape, conv_transpose_output_shape
from .spectra import (
    composition_eigenvalues,
    composition_singular_values,
    eigenvalues,
    singular_values,
)
from .structured import (
    block_conv_matrix,
    conv1x1_matrix,
    doubly_block_circulant,
    doubly_block_toeplitz,
    toeplitz_matrix,
)
from .symbol import frequency_map, symbol
from .transposed import fractionally_strided

__version__ = "0.1.0"

__all__ = [
    "AffineMap",
    "ConvGeometry",
    "ConvOperator",
    "ConvTransposeOperator",
    "MatrixTooLargeError",
    "SpectralNorm",
    "affine_conv",
    "avg_pool_matrix",
    "block_conv_matrix",
    "compose",
    "compose_kernels",
    "composition_eigenvalues",
    "composition_singular_values",
    "conv1x1_matrix",
    "conv_matrix",
    "conv_output_shape",
    "conv_transpose_matrix",
    "conv_transpose_output_shape",
    "doubly_block_circulant",
    "doubly_block_toeplitz",
    "eigenvalues",
    "fractionally_strided",
    "frequency_map",
    "get_memory_limit",
    "im2col_matrix",
    "pad_matrix",
    "receptive_field",
    "receptive_field_size",
    "set_memory_limit",
    "singular_values",
    "spectral_norm",
    "stride_matrix",
    "symbol",
    "toeplitz_matrix",
]
