"""A layer's matrix and the layer itself in one ``.npz`` file that scipy still reads.

:func:`scipy.sparse.load_npz` reads only the entries it knows (``format``, ``shape``,
``data``, ``indices``/``indptr`` or ``row``/``col``/``coords``, ``_is_array``) and ignores the
others. So :func:`save_layer` writes exactly what :func:`scipy.sparse.save_npz` writes (it
calls it, then appends to its archive), plus two of its own: ``sparseconv_layer``, a JSON text
describing the layer (kind, input shape, the keyword arguments, layout, format, blocksize,
sparseconv's version), and ``sparseconv_weight``, the weight. The JSON is stored as a numpy
string, so neither reader needs pickle. :func:`load_layer` returns the matrix and a
:class:`SavedLayer` that rebuilds the operator or the matrix. Files are written atomically
(:mod:`sparseconv._files`): whole or not at all.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from ._files import atomic_path, output_path
from ._geometry import ConvGeometry, periodic_padding
from ._matrices import conv_matrix, conv_transpose_matrix
from ._memory import MatrixTooLargeError, check_memory, get_memory_limit, reworded
from ._operators import ConvOperator, ConvTransposeOperator
from ._typing import ArrayLike, BlockSize, Layout, ShapeLike, SparseArray, SparseFormat
from ._validation import (
    as_bool,
    as_weight,
    check_blocksize,
    check_format,
    check_layout,
    int_tuple,
    layer_dtype,
)
from ._version import __version__

__all__ = ["SavedLayer", "load_layer", "save_layer"]

LAYER_KEY, WEIGHT_KEY = "sparseconv_layer", "sparseconv_weight"
_OPTIONS = {
    False: ("stride", "padding", "dilation", "groups", "padding_mode", "flip", "dtype"),
    True: ("stride", "padding", "output_padding", "output_size", "dilation", "groups",
           "padding_mode", "dtype"),
}

FileLike = str | os.PathLike[str] | IO[bytes]


def _jsonable(value: Any) -> Any:
    """Options as JSON: tuples become lists, numpy integers ints, a dtype its name."""
    if isinstance(value, dict):  # (a review: numpy integers in the options were not read)
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the layer arguments are written with."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _check_options(options: dict[str, Any], transposed: bool, prefix: str = "") -> None:
    allowed = _OPTIONS[transposed]
    for name in options:
        if name not in allowed:
            builder = "conv_transpose_matrix" if transposed else "conv_matrix"
            raise TypeError(f"{prefix}{name}={options[name]!r}, not an option of {builder} "
                            f"(one of {', '.join(allowed)})")


def _check_file(file: Any) -> None:
    if not isinstance(file, (str, os.PathLike)) and not hasattr(file, "read") \
            and not hasattr(file, "write"):
        raise TypeError(f"file must be a path or a binary file object, got {file!r}")
    if isinstance(file, io.TextIOBase):  # (a new user's trial: the matrix was built, then
        # Python's "write() argument must be str, not bytes")
        raise TypeError(f"file must be a path or a binary file object, got a text file "
                        f"{getattr(file, 'name', file)!r}: open it with mode 'wb' or 'rb'")


@dataclass(frozen=True)
class SavedLayer:
    """A layer as :func:`save_layer` describes it: enough to rebuild its matrix or operator.

    Parameters
    ----------
    weight : ndarray
        PyTorch's layout (``(C_in, C_out/groups, *kernel)`` if ``transposed``).
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    transposed : bool, optional
        A transposed convolution (:func:`sparseconv.conv_transpose_matrix`).
    options : dict, optional
        The keyword arguments of the layer (``stride``, ``padding``, ...), as given.
    layout : {"channels_first", "channels_last"}, optional
    format : {"csr", "csc", "coo", "bsr"}, optional
        The format the matrix was saved in.
    blocksize : (int, int) or None, optional
        The BSR blocksize asked for, if any.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import SavedLayer
    >>> layer = SavedLayer(np.ones((4, 2, 3, 3)), (2, 8, 8), options={"padding": 1})
    >>> layer.operator().dimsd, layer.matrix().shape, layer.shape
    ((4, 8, 8), (256, 128), (256, 128))
    >>> layer                                        # doctest: +NORMALIZE_WHITESPACE
    SavedLayer(weight=<array (4, 2, 3, 3) float64>, input_shape=(2, 8, 8), transposed=False,
               options={'padding': 1}, layout='channels_first', format='csr', blocksize=None)
    """

    weight: np.ndarray
    input_shape: tuple[int, ...]
    transposed: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    layout: Layout = "channels_first"
    format: SparseFormat = "csr"
    blocksize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        """Refuse, by name, what would not rebuild: checked as the builders check it."""
        as_bool(self.transposed, "transposed")
        check_layout(self.layout)
        check_format(self.format)
        check_blocksize(self.blocksize, self.format)
        if not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict of the layer's keyword arguments, got "
                            f"{self.options!r}")
        _check_options(self.options, self.transposed, "options has ")
        weight = as_weight(self.weight)
        geometry = {k: v for k, v in self.options.items() if k != "dtype"}
        build = ConvGeometry.for_transpose if self.transposed else ConvGeometry.from_weight
        try:
            layer = build(weight.shape, self.input_shape, **geometry)
        except (ValueError, TypeError) as exc:
            raise reworded(exc, f"{exc} (with options {self.options!r})") from None
        rows, cols = layer.shape[::-1] if self.transposed else layer.shape
        if self.blocksize is not None and (rows % self.blocksize[0] or cols % self.blocksize[1]):
            raise ValueError(f"blocksize={self.blocksize} must divide the shape {(rows, cols)} "
                             "of the layer's matrix")  # (as the builders refuse it, later)
        object.__setattr__(self, "weight", weight)  # frozen: the validated forms
        object.__setattr__(self, "input_shape", layer.output_shape if self.transposed
                           else layer.input_shape)

    def __repr__(self) -> str:
        """The weight by its shape and dtype (a new user's trial: a 16-channel weight's repr
        printed a hundred lines before ``input_shape``), the rest as given."""
        w = self.weight
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in (
            "input_shape", "transposed", "options", "layout", "format", "blocksize"))
        return f"SavedLayer(weight=<array {w.shape} {w.dtype}>, {fields})"

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of the layer's matrix, from its geometry (nothing is built)."""
        geometry = {k: v for k, v in self.options.items() if k != "dtype"}
        if self.transposed:
            return ConvGeometry.for_transpose(self.weight.shape, self.input_shape,
                                              **geometry).shape[::-1]
        return ConvGeometry.from_weight(self.weight.shape, self.input_shape, **geometry).shape

    def matrix(self) -> SparseArray:
        """The layer's matrix, rebuilt in the saved format, layout and blocksize.

        Examples
        --------
        >>> import io, numpy as np, sparseconv as sc
        >>> buffer = io.BytesIO()
        >>> A = sc.save_layer(buffer, np.ones((2, 1, 3)), (1, 8), padding=1, format="csc")
        >>> B = sc.load_layer(io.BytesIO(buffer.getvalue()))[1].matrix()  # rebuilt, not read
        >>> B.format, (B != A).nnz
        ('csc', 0)
        """
        build = conv_transpose_matrix if self.transposed else conv_matrix
        return build(self.weight, self.input_shape, format=self.format, layout=self.layout,
                     blocksize=self.blocksize, **self.options)

    def operator(self) -> ConvOperator | ConvTransposeOperator:
        """The layer as a matrix-free operator in the saved layout.

        Examples
        --------
        >>> import io, numpy as np, sparseconv as sc
        >>> buffer = io.BytesIO()                    # a transposed layer, channels last
        >>> T = sc.save_layer(buffer, np.ones((1, 2, 3)), (1, 4), transposed=True, stride=2,
        ...                   layout="channels_last")
        >>> op = sc.load_layer(io.BytesIO(buffer.getvalue()))[1].operator()
        >>> x = np.ones(4)
        >>> type(op).__name__, op.dims, op.dimsd, bool(np.allclose(op @ x, T @ x))
        ('ConvTransposeOperator', (4, 1), (9, 2), True)
        """
        cls = ConvTransposeOperator if self.transposed else ConvOperator
        return cls(self.weight, self.input_shape, layout=self.layout, **self.options)


def save_layer(file: FileLike, weight: ArrayLike, input_shape: ShapeLike, *,
               transposed: bool = False, format: SparseFormat = "csr",
               layout: Layout = "channels_first", blocksize: BlockSize | None = None,
               compressed: bool = True, **options: Any) -> SparseArray:
    """Save a layer's matrix with the layer's arguments and weight in one ``.npz`` file.

    Parameters
    ----------
    file : str, path or binary file
        Where to write; ``.npz`` is appended to a name without it, as numpy does. A path is
        written atomically (a failed write leaves no partial file).
    weight : array_like
        The layer's weight, PyTorch's layout.
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    transposed : bool, optional
        False: :func:`sparseconv.conv_matrix`; True: :func:`sparseconv.conv_transpose_matrix`.
    format, layout, blocksize
        As :func:`sparseconv.conv_matrix`.
    compressed : bool, optional
        ``np.savez_compressed`` (default) or ``np.savez``, as ``scipy.sparse.save_npz``.
    **options
        The layer's keyword arguments (``stride``, ``padding``, ``dilation``, ``groups``,
        ``padding_mode``, ``flip``, ``output_padding`` or ``output_size``, ``dtype``), as the
        builder takes them.

    Returns
    -------
    scipy.sparse array
        The matrix written.

    Raises
    ------
    ValueError, TypeError
        As the builder; an option the builder does not take (named); a path that is a
        device.
    OSError
        The file cannot be written (the message names it): a path that is a directory
        (``IsADirectoryError``) or in a directory that does not exist (``FileNotFoundError``),
        refused before the matrix is built, as ``load_layer`` refuses it.

    See Also
    --------
    load_layer, scipy.sparse.load_npz

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sparseconv import load_layer, save_layer
    >>> path = os.path.join(tempfile.mkdtemp(), "layer.npz")
    >>> A = save_layer(path, np.ones((4, 2, 3, 3)), (2, 8, 8), stride=2, padding=1)
    >>> B, layer = load_layer(path)
    >>> layer.options, layer.input_shape
    ({'stride': 2, 'padding': 1}, (2, 8, 8))
    >>> bool(abs(sp.load_npz(path) - A).max() == 0)          # scipy reads the matrix
    True
    """
    transposed = as_bool(transposed, "transposed")
    compressed = as_bool(compressed, "compressed")
    check_format(format)
    _check_options(options, transposed)
    _check_file(file)
    build = conv_transpose_matrix if transposed else conv_matrix
    as_weight(weight)  # (refused by name as the builders refuse it: a review found a
    weight = np.asarray(weight)  # tensor that requires grad said by torch's RuntimeError)
    matrix = build(weight, input_shape, format=format, layout=layout, blocksize=blocksize,
                   **options)
    stored = dict(options)
    if "dtype" in stored and stored["dtype"] is not None:
        stored["dtype"] = np.dtype(stored["dtype"]).name
    description = {
        "sparseconv": __version__,
        "kind": "conv_transpose" if transposed else "conv",
        "input_shape": _jsonable(input_shape), "options": _jsonable(stored),
        "layout": layout, "format": format,
        "blocksize": None if blocksize is None else _jsonable(blocksize),
    }
    ours = {LAYER_KEY: np.array(json.dumps(description)), WEIGHT_KEY: weight}
    if isinstance(file, (str, os.PathLike)):
        path = output_path(os.fspath(file), ".npz")
        with atomic_path(path) as temporary, open(temporary, "w+b") as handle:
            # (a file, not its name: numpy appends ".npz" to a name ending in ".NPZ", and the
            # empty temporary file was renamed onto the path, a review found)
            _write(handle, matrix, ours, compressed)
    else:  # (a caller's file may be write-only: the archive is made on disk, then copied)
        with tempfile.TemporaryFile() as handle:
            _write(handle, matrix, ours, compressed)
            handle.seek(0)
            shutil.copyfileobj(handle, file)
    return matrix


def _write(handle: IO[bytes], matrix: SparseArray, ours: dict[str, np.ndarray],
           compressed: bool) -> None:
    """scipy's archive of ``matrix`` (:func:`scipy.sparse.save_npz` itself), then ``ours``
    appended to it as ``numpy.savez`` writes its entries: no copy of the matrix is made (a
    memory audit: writing scipy's entries to memory and reading them back peaked at 3x the
    matrix)."""
    sp.save_npz(handle, matrix, compressed=compressed)
    handle.seek(0)
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(handle, "a", compression=method, allowZip64=True) as archive:
        for key, value in ours.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _seekable(file: Any) -> bool:
    """Whether a binary file object can be read again from where it stands."""
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_within_limit(stream: Any, name: str) -> bytes:
    """A stream's bytes, refused (:class:`MatrixTooLargeError`) once they pass the memory
    limit: at most the limit, and one byte, is read."""
    limit = get_memory_limit()
    data = stream.read() if limit is None else stream.read(limit + 1)
    check_memory(len(data), f"the copy of the stream {name} (read twice: a stream cannot "
                 "seek back)", "pass the file's path or a seekable file")
    return data


class _NotTheArchive(ValueError):
    """A stream whose archive is not the one at its position: said as it is."""


def _check_load_memory(file: str | os.PathLike[str] | IO[bytes], name: str,
                       start: int = 0, copied: int = 0) -> None:
    """Refuse a file whose entries, uncompressed, and the ``copied`` bytes of a stream's copy
    already made, would not fit the memory limit (read from the archive's directory before
    any entry is); a file object is left at ``start``. Refuse too a stream whose archive,
    found from its end as zip files are, does not start at ``start`` (a review: two layers
    written to one stream, read from the first's start, gave the second)."""
    with zipfile.ZipFile(file) as archive:
        members = archive.infolist()
        nbytes = sum(member.file_size for member in members)
        first = min((member.header_offset for member in members), default=start)
    if not isinstance(file, (str, os.PathLike)):
        file.seek(start)
        if first != start:
            raise _NotTheArchive(
                f"file {name} holds another archive than the one at its position {start}: the "
                f"last one in the stream starts at {first} (zip files are read from their "
                "end; give load_layer a stream that ends where the layer does, one layer per "
                "stream)")
    check_memory(nbytes + copied, f"the matrix and layer of file {name}")


def load_layer(file: FileLike) -> tuple[SparseArray, SavedLayer]:
    """Read a file written by :func:`save_layer`: the matrix and the layer it came from.

    Parameters
    ----------
    file : str, path or binary file

    Returns
    -------
    matrix : scipy.sparse array
        As :func:`scipy.sparse.load_npz` reads it.
    layer : SavedLayer
        The weight, input shape and arguments; ``layer.operator()`` rebuilds the operator.

    Raises
    ------
    ValueError
        A file without the layer's description (a plain ``save_npz`` file), one whose
        description is not valid, or one whose matrix is not its layer's (the weight, the
        options or the matrix edited after :func:`save_layer` wrote them: a product of each
        with a random vector tells them apart).
    MatrixTooLargeError
        The file's entries, uncompressed, would need more than the memory limit
        (:func:`sparseconv.set_memory_limit`); checked before any is read (a stream that
        cannot seek is copied first, read at most up to the limit).

    See Also
    --------
    save_layer

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from sparseconv import load_layer, save_layer
    >>> f = io.BytesIO()
    >>> _ = save_layer(f, np.ones((4, 2, 3)), (2, 16), padding="same", format="bsr",
    ...                layout="channels_last")
    >>> _ = f.seek(0)
    >>> A, layer = load_layer(f)
    >>> A.format, A.blocksize, layer.layout, layer.operator().dims
    ('bsr', (4, 2), 'channels_last', (16, 2))
    """
    _check_file(file)
    name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file)
    start = copied = 0
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as opened:
            head = opened.read(4)
    elif _seekable(file):  # read in place, from where it stands (its directory sized first)
        start = file.tell()
        head = file.read(4)
        file.seek(start)
    else:  # a stream is read twice below: copied, at most the memory limit of it (a review:
        # a 60 MiB stream was copied whole before a 1 MiB limit refused it)
        file = io.BytesIO(_read_within_limit(file, name))
        head, copied = file.getvalue()[:4], file.getbuffer().nbytes
    if head != b"PK\x03\x04":  # not a zip: numpy would read it as a pickle and suggest
        # unpickling it (a new user's trial, on a file of text)
        raise ValueError(f"file {name} is not a sparse matrix .npz: not a zip archive (an .npz "
                         f"is one), it starts with {head!r}")
    try:
        _check_load_memory(file, name, start, copied)
        matrix = sp.load_npz(file)
        if not isinstance(file, (str, os.PathLike)):
            file.seek(start)
        with np.load(file, allow_pickle=False) as entries:
            keys = set(entries.files)
            if LAYER_KEY in keys and WEIGHT_KEY in keys:
                text, weight = str(entries[LAYER_KEY]), entries[WEIGHT_KEY]
    except _NotTheArchive as exc:
        raise ValueError(str(exc)) from None
    except (OSError, MatrixTooLargeError):
        raise
    except Exception as exc:  # noqa: BLE001 - numpy and scipy raise many kinds for bad files
        raise ValueError(f"file {name} is not a sparse matrix .npz: {exc}") from exc
    if LAYER_KEY not in keys or WEIGHT_KEY not in keys:
        raise ValueError(f"file {name} holds a matrix but no layer description (it was not "
                         "written by sparseconv.save_layer); scipy.sparse.load_npz reads it")
    try:
        description = json.loads(text)
        _check_description(description, name)
        layer = SavedLayer(
            weight=weight, input_shape=_tuples(description["input_shape"]),
            transposed=description["kind"] == "conv_transpose",
            options={k: _tuples(v) for k, v in description["options"].items()},
            layout=description["layout"], format=description["format"],
            blocksize=_tuples(description["blocksize"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"the layer description in file {name} is not valid: {exc}") from exc
    try:
        _check_matrix_of(layer, matrix, name)
    except ValueError:
        older = _unmirrored(layer)
        if older is None:
            raise
        _check_matrix_of(older, matrix, name)  # (its error, if neither is the file's)
        warnings.warn(f"file {name} was written before padding=None's split mirrored under "
                      "flip=True (as padding='same' does): its layer is read with that split "
                      f"given explicitly, padding={older.options['padding']}, which its "
                      "matrix is", UserWarning, stacklevel=2)
        layer = older
    return matrix, layer


def _unmirrored(layer: SavedLayer) -> SavedLayer | None:
    """A file's layer of ``padding=None, flip=True`` as sparseconv wrote it before that split
    mirrored (a review: such files no longer loaded, "the file was changed"): the same layer
    with PyTorch's split given as per-side pairs; None for any other layer."""
    options = layer.options
    if layer.transposed or options.get("padding", 0) is not None or options.get("flip") \
            is not True:
        return None
    kernel_size = np.shape(layer.weight)[2:]
    dilation = int_tuple(options.get("dilation", 1), len(kernel_size), "dilation", 1,
                         broadcast_one=True)
    pads = periodic_padding(kernel_size, dilation)
    return dataclasses.replace(layer, options={**options, "padding": tuple(pads)})


def _check_description(description: Any, name: str) -> None:
    """Refuse a layer description that :func:`save_layer` did not write: one without the
    version that wrote it, or of a kind other than ``"conv"`` and ``"conv_transpose"`` (a
    review: ``"kind": "banana"`` was read as a convolution)."""
    if not isinstance(description, dict):
        raise TypeError(f"a JSON object, got {type(description).__name__}")
    version = description.get("sparseconv")
    if not isinstance(version, str) or not version:
        raise ValueError(f"it names no sparseconv version that wrote it (got {version!r})")
    kind = description.get("kind")
    if kind not in ("conv", "conv_transpose"):
        raise ValueError(f"kind must be 'conv' or 'conv_transpose', got {kind!r}")


def _check_matrix_of(layer: SavedLayer, matrix: SparseArray, name: str) -> None:
    """Refuse a file whose matrix is not its layer's: of another shape (a review: an edited
    description loaded silently) or format (a new user's trial: "csc" over a CSR matrix), or
    other entries (a new user's trial: an edited weight loaded silently), seen by one product
    of each with a random vector ``x`` of entries ``0.5 <= |x_j| <= 1.5``. Output ``i`` of
    either product sums at most ``m`` terms, ``m`` the taps one output reads (a matrix entry
    may hold several taps' sum), each term a tap times an entry of ``x``: both sums round
    within ``(m + 1) eps s_i`` of the exact one, ``s_i`` the sum of those terms' magnitudes,
    the layer of ``|w|`` applied to ``|x|``. A difference beyond ``4 (m + 2) eps s_i`` is
    no rounding (a review: the allowance was ``sqrt(eps)`` of the whole weight's sum, and a
    float32 64->64 3x3 layer loaded with one tap changed by 10)."""
    if matrix.shape != layer.shape:
        raise ValueError(f"file {name} holds a {matrix.shape[0]} x {matrix.shape[1]} matrix, "
                         f"but its layer description gives {layer.shape[0]} x "
                         f"{layer.shape[1]}: the file was changed after save_layer wrote it")
    if matrix.format != layer.format:
        raise ValueError(f"file {name} holds a {matrix.format.upper()} matrix, but its layer "
                         f"description gives format={layer.format!r}: the file was changed "
                         "after save_layer wrote it")
    built = layer_dtype(as_weight(layer.weight), layer.options.get("dtype"))
    if matrix.dtype != built:  # (a review: a matrix cast to float32 loaded, its layer float64)
        raise ValueError(f"file {name} holds a {matrix.dtype} matrix, but its layer "
                         f"description builds {built} (its weight's dtype, or its dtype "
                         "option): the file was changed after save_layer wrote it")
    if layer.blocksize is not None and matrix.format == "bsr" and tuple(
            matrix.blocksize) != tuple(layer.blocksize):  # (a review, as the dtype)
        raise ValueError(f"file {name} holds a BSR matrix in {tuple(matrix.blocksize)} "
                         f"blocks, but its layer description gives blocksize="
                         f"{tuple(layer.blocksize)}: the file was changed after save_layer "
                         "wrote it")
    operator = layer.operator()
    rng = np.random.default_rng(0)
    n = matrix.shape[1]
    x = rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n)
    if np.iscomplexobj(matrix) or np.iscomplexobj(layer.weight):
        x = x + 1j * rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n)
    eps = max(np.finfo(np.result_type(dtype, np.float16)).eps
              for dtype in (matrix.dtype, operator.dtype))
    weight = np.asarray(layer.weight)
    groups = int(layer.options.get("groups", 1) or 1)
    taps = math.prod(weight.shape[2:]) * (weight.shape[0] // groups if layer.transposed
                                          else weight.shape[1])
    magnitudes = dataclasses.replace(layer, weight=np.abs(weight)).operator()
    allowance = 4 * (taps + 2) * eps * np.abs(magnitudes @ np.abs(x))
    allowance += 4 * (taps + 2) * np.finfo(allowance.dtype).tiny  # (subnormal products)
    difference = np.abs(matrix @ x - operator @ x)
    beyond = ~(difference <= allowance)
    if beyond.any():
        row = int(np.argmax(np.where(beyond, difference - allowance, -np.inf)))
        raise ValueError(f"file {name} holds a matrix that is not its layer's: a product with "
                         f"a random vector differs by {difference[row]:.3g} in row {row} "
                         f"(rounding allows {allowance[row]:.3g} there); the file was changed "
                         "after save_layer wrote it")
