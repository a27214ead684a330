"""Type aliases for the public signatures, one definition each (as PyLops' ``utils/typing.py``).

Every public function and method of sparseconv annotates its arguments with these names, so
that the accepted forms are written down once, next to what the validators in
:mod:`sparseconv._validation` accept at run time:

``ShapeLike``
    A size or shape: an int, a sequence of ints, or a 1-D integer ndarray (``input_shape``,
    ``input_size``, ``weight_shape``). numpy integers count as ints (``SupportsIndex``).
``IntOrTuple``
    A per-axis integer argument, one value for every axis or one per axis (``kernel_size``,
    ``stride``, ``dilation``, ``output_padding``).
``ExplicitPaddingLike``
    Padding given by numbers: an int, one int per axis, or one ``(lo, hi)`` pair per axis. The
    only form transposed convolutions and pooling accept.
``PaddingString``, ``PaddingLike``
    ``"valid"``, ``"same"`` or ``"full"``; and a convolution's padding, either form.
``PaddingMode``
    PyTorch's padding modes.
``SparseFormat``, ``SparseArray``
    The formats the builders return (``format=...``), and the scipy.sparse array classes of
    those formats: the return type of every builder.
``Layout``, ``BlockSize``
    How activations are flattened (``layout=...``: ``(C, *spatial)`` or ``(*spatial, C)``), and
    a BSR ``blocksize=(R, C)``.
``ConvMode``
    The output modes of the classic constructions (``scipy.signal.convolve``'s names).
``SpectralMethod``, ``SpectralNormMethod``
    How the spectra are computed (``method=...``).
``ArrayLike``, ``DTypeLike``
    numpy's own aliases (weights, kernels, vectors; ``dtype=...``).
``RNGLike``
    What ``numpy.random.default_rng`` accepts: a Generator, a seed, or None.
``LayerLike``
    A layer of the composition spectra: a weight, or a ``(weight, options)`` pair whose
    options are keyword arguments of :func:`sparseconv.conv_matrix`.

The aliases are for annotations only: the run-time checks stay in the validators, which name
the argument and the value they refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, SupportsIndex, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = [
    "ArrayLike",
    "BlockSize",
    "ConvMode",
    "DTypeLike",
    "ExplicitPaddingLike",
    "IntOrTuple",
    "Layout",
    "LayerLike",
    "PaddingLike",
    "PaddingMode",
    "PaddingString",
    "RNGLike",
    "ShapeLike",
    "SparseArray",
    "SparseFormat",
    "SpectralMethod",
    "SpectralNormMethod",
]

ArrayLike: TypeAlias = npt.ArrayLike
DTypeLike: TypeAlias = npt.DTypeLike

ShapeLike: TypeAlias = SupportsIndex | Sequence[SupportsIndex] | npt.NDArray[np.integer]
IntOrTuple: TypeAlias = SupportsIndex | Sequence[SupportsIndex] | npt.NDArray[np.integer]

ExplicitPaddingLike: TypeAlias = (
    SupportsIndex | Sequence[SupportsIndex | Sequence[SupportsIndex]] | npt.NDArray[np.integer]
)
PaddingString: TypeAlias = Literal["valid", "same", "full"]
PaddingLike: TypeAlias = ExplicitPaddingLike | PaddingString
PaddingMode: TypeAlias = Literal["zeros", "circular", "reflect", "replicate"]

SparseFormat: TypeAlias = Literal["csr", "csc", "coo", "bsr"]
SparseArray: TypeAlias = sp.csr_array | sp.csc_array | sp.coo_array | sp.bsr_array

Layout: TypeAlias = Literal["channels_first", "channels_last"]
BlockSize: TypeAlias = tuple[SupportsIndex, SupportsIndex]

ConvMode: TypeAlias = Literal["full", "valid", "same"]
SpectralMethod: TypeAlias = Literal["auto", "fft", "dense"]
SpectralNormMethod: TypeAlias = Literal["auto", "fft", "dense", "bounds", "upper", "exact"]

RNGLike: TypeAlias = np.random.Generator | int | None
LayerLike: TypeAlias = ArrayLike | tuple[ArrayLike, Mapping[str, Any]]

#: ``progress(done, total)``, called after each chunk of work completes.
ProgressLike: TypeAlias = Callable[[int, int], Any]
