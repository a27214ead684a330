"""sparseconv: convolution layers as exact sparse matrices and matrix-free operators."""

from .geometry import ConvGeometry, conv_output_shape, conv_transpose_output_shape
from .limits import MatrixTooLargeError, get_memory_limit, set_memory_limit
from .matrices import conv_matrix, conv_transpose_matrix
from .operators import ConvOperator, ConvTransposeOperator

__version__ = "0.1.0"

__all__ = [
    "ConvGeometry",
    "ConvOperator",
    "ConvTransposeOperator",
    "MatrixTooLargeError",
    "conv_matrix",
    "conv_output_shape",
    "conv_transpose_matrix",
    "conv_transpose_output_shape",
    "get_memory_limit",
    "set_memory_limit",
]
