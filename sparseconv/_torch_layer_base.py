"""A PyTorch module translated into a layer: the :class:`_Layer` every reader builds on.

A ``_Layer`` holds a module's input and output shapes, how to build its matrix in a format
(and, for a convolution, the arrays' own arguments), and its bias; :mod:`sparseconv._torch_layers`
makes one of each supported module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.fx

from sparseconv._formats import in_format
from sparseconv._layout import channels_last_order, in_layout
from sparseconv._matrices import format_bytes
from sparseconv._memory import check_memory, check_sparse_memory
from sparseconv._typing import Layout, SparseFormat
from sparseconv._validation import (
    spatial_size,
)

__all__: list[str] = []


# ---------------------------------------------------------------------------------------------
# One module as a layer
# ---------------------------------------------------------------------------------------------
def _numpy(tensor) -> np.ndarray:
    """A float64 numpy copy of a parameter or buffer (never a view of the module's memory)."""
    return np.array(tensor.detach().cpu().to(torch.float64).numpy(), copy=True)


@dataclass(frozen=True, eq=False)
class _Layer:
    """A linear module translated once: shapes, builders and the arguments its spectra take."""

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    build: Callable[..., sp.sparray]                 # format -> the matrix
    # () -> the bias over the output, flat: built on first use (sized against the memory
    # limit), never for a matrix, an operator or a spectrum, which do not need it
    make_offset: Callable[[], np.ndarray] | None = None
    make_operator: Callable[..., spla.LinearOperator] | None = None
    conv: tuple[np.ndarray, tuple[int, ...], dict] | None = None  # weight, shape, kwargs
    repeat: int = 1  # the matrix is `repeat` copies of that convolution's, block-diagonally
    # build and make_operator take dtype=, layout= (and build blocksize=) themselves: the
    # array API's convolutions, which assemble any of them directly
    native: bool = False

    def matrix(self, format: SparseFormat = "csr", dtype: np.dtype | None = None,
               layout: Layout = "channels_first", blocksize: tuple[int, int] | None = None,
               ) -> sp.sparray:
        """The matrix in ``format``, ``dtype`` (``None``: float64) and ``layout``; the
        arguments checked by the caller (``_torch_module._matrix_options``)."""
        if self.native:
            return self.build(format, dtype=dtype, layout=layout, blocksize=blocksize)
        if dtype is None and layout == "channels_first" and blocksize is None:
            return self.build(format)
        a = sp.csr_array(self.build("csr"))
        if blocksize is not None and (a.shape[0] % blocksize[0] or a.shape[1] % blocksize[1]):
            raise ValueError(f"blocksize={blocksize} must divide the shape {a.shape} of the "
                             f"{self.name} matrix")
        # each conversion copies the matrix beside it, sized first (a review: float32 peaked
        # at 1.6x a limit the CSR matrix alone had passed)
        held = a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
        what = f"the {a.shape[0]} x {a.shape[1]} matrix of {self.name}"
        a = in_layout(a, self.input_shape, self.output_shape, layout, what,
                      "use the layer's operator")
        final = np.dtype(np.float64 if dtype is None else dtype)
        if dtype is not None:
            check_memory(held + format_bytes(a.nnz, a.shape, final, a.indices.dtype, "csr"),
                         f"{what} in {final}", "use the layer's operator")
            a = a.astype(dtype)
        if format != "csr" or blocksize is not None:
            check_memory(held + format_bytes(a.nnz, a.shape, final, a.indices.dtype, format),
                         f"{what} in {format.upper()}", "use the layer's operator")
        return in_format(a, format, blocksize)

    def operator(self, dtype: np.dtype | None = None, layout: Layout = "channels_first",
                 ) -> spla.LinearOperator:
        """The ``LinearOperator`` in ``dtype`` and ``layout``: matrix-free where the layer has
        one of its own (for the defaults, and always for the native ones), else the matrix's."""
        if self.native:
            assert self.make_operator is not None
            return self.make_operator(dtype=dtype, layout=layout)
        if dtype is not None or layout != "channels_first":
            return spla.aslinearoperator(self.matrix("csr", dtype, layout))
        if self.make_operator is not None:
            return self.make_operator()
        return spla.aslinearoperator(self.build("csr"))

    def norm_key(self) -> tuple | None:
        """What a convolution's norm depends on, by value (its weight's bytes, shapes and
        arguments): two layers of equal keys have one norm, computed once for the functions a
        forward calls again with a weight it computes afresh each time; None for the other
        layers, whose explicit matrices are quick."""
        if self.conv is None:
            return None
        weight, shape, kwargs = self.conv
        return (*_by_value(weight), tuple(shape),
                tuple((name, _by_value(value)) for name, value in sorted(kwargs.items())))

    @functools.cached_property
    def offset(self) -> np.ndarray | None:
        """The bias over the output, flat (``None``: no bias), built once on first use."""
        if self.make_offset is None:
            return None
        self._check_offset_memory()
        return self.make_offset()

    def _check_offset_memory(self) -> None:
        check_memory(8 * math.prod(self.output_shape), f"the offset of {self.name} (a vector "
                     f"over its output shape {self.output_shape})")

    def offset_in(self, dtype: np.dtype | None = None, layout: Layout = "channels_first",
                  ) -> np.ndarray:
        """The affine offset (zeros where there is none) in ``dtype`` and ``layout``."""
        self._check_offset_memory()
        b = np.zeros(math.prod(self.output_shape)) if self.offset is None else self.offset
        if layout == "channels_last":
            b = b[channels_last_order(self.output_shape)]
        return b if dtype is None else b.astype(dtype)


def _by_value(value: Any) -> Any:
    """``value`` as a hashable key of what it holds (an array by its bytes, a list as a
    tuple: a functional call's ``stride=[1, 1]``)."""
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(map(_by_value, value))
    return value


def _repeated(values: np.ndarray, count: int) -> Callable[[], np.ndarray]:
    """``() -> np.repeat(values, count)``: a per-channel bias over the output, on demand."""
    return functools.partial(np.repeat, values, count)


def _identity(n: int, name: str, format: SparseFormat) -> sp.sparray:
    check_sparse_memory(n, n, np.float64, f"the {n} x {n} identity matrix of {name}")
    return sp.eye_array(n, format=format)


def _input_shape(input_shape, ndim: int | None, name: str) -> tuple[int, ...]:
    # the arrays' normalizer: ints only (8.5 or "388" is refused, never truncated); a 1-D
    # integer tensor (x.shape[1:] as a tensor) as its list
    if isinstance(input_shape, torch.Tensor) and input_shape.ndim == 1 and not (
            input_shape.is_floating_point() or input_shape.is_complex()):
        input_shape = input_shape.tolist()
    shape = spatial_size(input_shape, "input_shape")
    if ndim is not None and len(shape) != ndim + 1:
        want = f"(C, *spatial) with {ndim} spatial axes"
        # one axis too many: the batch, most likely (x.shape; an audit: trace says so,
        # this did not)
        batch = (f"; without the batch axis, input_shape={shape[1:]}"
                 if len(shape) == ndim + 2 else "")
        raise ValueError(f"input_shape must be {want} of positive ints for {name}, got "
                         f"{input_shape!r}{batch}")
    return shape
