"""save_layer / load_layer: the matrix and the layer in one .npz that scipy still reads."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc
from sparseconv import (
    ConvOperator,
    SavedLayer,
    conv_matrix,
    conv_transpose_matrix,
    load_layer,
    save_layer,
)

from ._oracles import (
    assert_close,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch,
    traced,
)


@pytest.mark.parametrize("format", ["csr", "csc", "coo", "bsr"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_scipy_load_npz_reads_the_matrix_and_load_layer_the_layer(tmp_path, format, layout):
    rng = np.random.default_rng(sum(map(ord, format + layout)))
    layer = random_layer(rng, ndim=2, max_size=6)
    path = tmp_path / "layer.npz"
    written = save_layer(path, layer.weight, layer.input_shape, format=format, layout=layout,
                         **layer.kwargs)
    expected = conv_matrix(layer.weight, layer.input_shape, format=format, layout=layout,
                           **layer.kwargs)
    plain = sp.load_npz(path)  # scipy's own reader, untouched by the extra entries
    assert plain.format == format and isinstance(plain, sp.sparray), layer
    assert_close(plain, expected, layer, rtol=0)
    assert_close(written, expected, layer, rtol=0)
    if format == "bsr":
        assert plain.blocksize == expected.blocksize
    A, saved = load_layer(path)
    assert_close(A, expected, layer, rtol=0)
    assert np.array_equal(saved.weight, layer.weight) and saved.input_shape == layer.input_shape
    assert saved.options == layer.kwargs and saved.layout == layout and saved.format == format
    assert not saved.transposed
    assert_close(saved.matrix(), expected, layer, rtol=0)
    op = saved.operator()
    x = rng.standard_normal(op.shape[1])
    assert_close(op @ x, expected @ x, layer)


@pytest.mark.parametrize("seed", range(4))
def test_transposed_layers_round_trip(seed):
    rng = np.random.default_rng(seed)
    weight, input_shape, kwargs = random_transpose_layer(rng)
    f = io.BytesIO()
    save_layer(f, weight, input_shape, transposed=True, format="bsr", layout="channels_last",
               dtype=np.float32, **kwargs)
    f.seek(0)
    A, saved = load_layer(f)
    expected = conv_transpose_matrix(weight, input_shape, format="bsr", layout="channels_last",
                                     dtype=np.float32, **kwargs)
    assert A.dtype == np.float32 and saved.transposed and saved.options["dtype"] == "float32"
    assert_close(A, expected, kwargs, rtol=0)
    assert saved.operator().output_shape == saved.operator().H.input_shape


def test_a_transposed_layer_saved_with_its_output_size():
    weight = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    f = io.BytesIO()
    saved_matrix = save_layer(f, weight, (3, 5, 5), transposed=True, stride=2, padding=1,
                              output_size=(10, 9))
    f.seek(0)
    A, saved = load_layer(f)
    assert saved.options["output_size"] == (10, 9) and A.shape == (2 * 10 * 9, 3 * 5 * 5)
    expected = conv_transpose_matrix(weight, (3, 5, 5), stride=2, padding=1, output_padding=(1, 0))
    assert abs(A - expected).max() == 0 and abs(saved_matrix - expected).max() == 0
    assert saved.operator().output_shape == (2, 10, 9)


def test_the_description_is_plain_json_and_needs_no_pickle(tmp_path):
    path = tmp_path / "a"  # .npz is appended, as numpy does
    save_layer(path, np.ones((2, 1, 3, 3)), (2, 5, 5), padding=((1, 0), (0, 1)), groups=2,
               padding_mode="reflect", blocksize=(1, 1), format="bsr")
    with np.load(tmp_path / "a.npz", allow_pickle=False) as entries:
        description = json.loads(str(entries["sparseconv_layer"]))
        assert {"format", "shape", "data", "indices", "indptr"} <= set(entries.files)
    assert description["kind"] == "conv" and description["blocksize"] == [1, 1]
    assert description["options"]["padding"] == [[1, 0], [0, 1]]
    _, saved = load_layer(tmp_path / "a.npz")
    assert saved.options["padding"] == ((1, 0), (0, 1)) and saved.blocksize == (1, 1)


def test_a_file_that_is_no_zip_is_named_so(tmp_path):
    """A new user's trial: a text file got numpy's advice to unpickle it."""
    (tmp_path / "g.npz").write_text("x")
    for file in (tmp_path / "g.npz", io.BytesIO(b"x")):
        with pytest.raises(ValueError, match="not a zip archive") as raised:
            load_layer(file)
        assert "pickle" not in str(raised.value)


def test_a_plain_npz_and_bad_options_are_refused(tmp_path):
    sp.save_npz(tmp_path / "plain.npz", conv_matrix(np.ones((1, 1, 3)), (1, 5)))
    with pytest.raises(ValueError, match="no layer description"):
        load_layer(tmp_path / "plain.npz")
    with pytest.raises(TypeError, match="flip=True, not an option of conv_transpose_matrix"):
        save_layer(tmp_path / "t.npz", np.ones((1, 1, 3)), (1, 5), transposed=True, flip=True)
    # padding_mode is conv_transpose_matrix's too (a review: 'zeros' was refused as no option)
    with pytest.raises(ValueError, match="padding_mode must be 'zeros' for a transposed "):
        save_layer(tmp_path / "t.npz", np.ones((1, 1, 3)), (1, 5), transposed=True,
                   padding_mode="reflect")
    saved = save_layer(tmp_path / "z.npz", np.ones((1, 1, 3)), (1, 5), transposed=True,
                       padding_mode="zeros")
    matrix, layer = load_layer(tmp_path / "z.npz")
    assert layer.options == {"padding_mode": "zeros"} and (matrix != saved).nnz == 0
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        save_layer(tmp_path / "s.npz", np.ones((1, 1, 3)), (1, 5), stride=0)
    assert not (tmp_path / "t.npz").exists() and not (tmp_path / "s.npz").exists()
    # a file-system state is an OSError, the one load_layer raises (a new user's trial: it
    # was a ValueError here and a FileNotFoundError there)
    for path, error in [(tmp_path, IsADirectoryError), (tmp_path / "no" / "a", FileNotFoundError),
                        (tmp_path / "s.npz" / "a", FileNotFoundError)]:
        with pytest.raises(error, match=re.escape(str(path))):
            save_layer(path, np.ones((1, 1, 3)), (1, 5))
        with pytest.raises(error, match=re.escape(str(path))):
            load_layer(path)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="Not a directory"):
        save_layer(tmp_path / "file" / "a", np.ones((1, 1, 3)), (1, 5))


def test_saved_layer_rebuilds_what_it_describes():
    layer = SavedLayer(np.ones((4, 2, 3, 3)), (2, 8, 8), options={"stride": 2})
    assert isinstance(layer.operator(), ConvOperator)
    assert layer.matrix().shape == (4 * 3 * 3, 2 * 8 * 8)


@pytest.mark.parametrize("name", ["layer.NPZ", "layer.Npz"])
def test_an_upper_case_suffix_gets_the_data_not_an_empty_file(tmp_path, name):
    """A review: numpy appends ".npz" to a name that lacks it in lower case, so the data went
    to a stray hidden file and the empty temporary file replaced the path (which may have
    held a good file), without an error."""
    path = tmp_path / name
    path.write_bytes(b"an earlier file")
    A = save_layer(path, np.ones((2, 1, 3)), (1, 6), padding=1)
    B, layer = load_layer(path)
    assert abs(A - B).max() == 0 and layer.input_shape == (1, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_numpy_integers_and_arrays_as_options_are_saved():
    """A review: conv_matrix takes np.int64, 1-D int arrays and np.bool_ where ints and bools
    go, and save_layer raised "Object of type int64 is not JSON serializable"."""
    for options in ({"padding": np.int64(1)}, {"stride": np.array([2])},
                    {"groups": np.int64(1)}, {"flip": np.True_}):
        buffer = io.BytesIO()
        A = save_layer(buffer, np.ones((2, 1, 3)), (1, 7), **options)
        buffer.seek(0)
        B, layer = load_layer(buffer)
        assert abs(A - B).max() == 0 and abs(layer.matrix() - A).max() == 0, options


def test_a_description_that_does_not_match_its_matrix_is_refused(tmp_path):
    """A review: an input_shape edited in the file loaded without a word (a 12 x 6 matrix
    with a layer of 18 x 9); a BSR blocksize that does not divide the matrix was accepted by
    SavedLayer and refused only when the matrix was built."""
    path = tmp_path / "layer.npz"
    save_layer(path, np.ones((2, 1, 3)), (1, 6), padding=1)
    with np.load(path, allow_pickle=False) as stored:
        entries = {key: stored[key] for key in stored.files}
    description = json.loads(str(entries["sparseconv_layer"]))
    description["input_shape"] = [1, 9]
    entries["sparseconv_layer"] = np.array(json.dumps(description))
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=r"holds a 12 x 6 matrix, but its layer description "
                                         r"gives 18 x 9"):
        load_layer(path)
    # (a new user's trial: "csc" written over a CSR matrix's description loaded)
    description["input_shape"], description["format"] = [1, 6], "csc"
    entries["sparseconv_layer"] = np.array(json.dumps(description))
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=r"holds a CSR matrix, but its layer description "
                                         r"gives format='csc'"):
        load_layer(path)
    with pytest.raises(ValueError, match=r"blocksize=\(4, 4\) must divide the shape \(12, 6\)"):
        SavedLayer(np.ones((2, 1, 3)), (1, 6), options={"padding": 1}, format="bsr",
                   blocksize=(4, 4))


@pytest.mark.parametrize("edit", ["weight", "padding_mode", "matrix"])
def test_a_matrix_that_is_not_its_weights_is_refused(tmp_path, edit):
    """A new user's trial: a weight edited in the file (same shape) loaded silently beside a
    matrix that is no longer its; so did a padding mode that keeps the shape."""
    path = tmp_path / "layer.npz"
    weight = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    save_layer(path, weight, (3, 6, 6), padding=1)
    load_layer(path)  # as written: accepted
    with np.load(path, allow_pickle=False) as stored:
        entries = {key: stored[key] for key in stored.files}
    if edit == "weight":
        entries["sparseconv_weight"] = weight + 1e-6 * (np.arange(weight.size) == 7).reshape(
            weight.shape)
    elif edit == "matrix":
        entries["data"] = entries["data"].copy()
        entries["data"][5] *= -1
    else:
        description = json.loads(str(entries["sparseconv_layer"]))
        description["options"]["padding_mode"] = "circular"
        entries["sparseconv_layer"] = np.array(json.dumps(description))
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=r"holds a matrix that is not its layer's: a product "
                                         r"with a random vector differs by .*; the file was "
                                         r"changed after save_layer wrote it"):
        load_layer(path)


@pytest.mark.parametrize("seed", range(6))
def test_every_layer_saved_is_its_matrixs_own(seed):
    """The check above, on random layers of every padding mode, transposed ones, float32 and
    complex weights: no layer saved as written is refused."""
    rng = np.random.default_rng(seed)
    for _ in range(8):
        layer = random_layer(rng, ndim=int(rng.integers(1, 4)), max_size=6)
        weight = layer.weight * 10.0 ** rng.integers(-3, 4)
        if seed % 3 == 1:
            weight = weight + 1j * rng.standard_normal(weight.shape)
        dtype = np.float32 if seed % 3 == 2 else None
        f = io.BytesIO()
        save_layer(f, weight, layer.input_shape, dtype=dtype, **layer.kwargs)
        f.seek(0)
        load_layer(f)
        weight, input_shape, kwargs = random_transpose_layer(rng)
        f = io.BytesIO()
        save_layer(f, weight, input_shape, transposed=True, dtype=dtype, **kwargs)
        f.seek(0)
        load_layer(f)


def test_saving_makes_no_copy_of_the_matrix(tmp_path):
    """(A memory audit: scipy's entries were written to memory and read back, a peak of 3.3x
    the matrix; now what building the matrix takes, and a few percent more.)"""
    import tracemalloc

    weight = np.random.default_rng(7).standard_normal((8, 8, 3, 3))
    shape = (8, 96, 96)  # 64 MB
    expected = conv_matrix(weight, shape, padding=1)
    nbytes = expected.data.nbytes + expected.indices.nbytes + expected.indptr.nbytes
    peaks = []
    for call in (lambda: conv_matrix(weight, shape, padding=1),  # its assembly's own peak
                 lambda: save_layer(tmp_path / "layer.npz", weight, shape, padding=1,
                                    compressed=False)):
        tracemalloc.start()
        try:
            call()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # (numpy writes an array to a zip member 16 MiB at a time)
    assert peaks[1] < peaks[0] + 0.25 * nbytes + 2**24, [p / nbytes for p in peaks]


@pytest.mark.parametrize("compressed", [False, True])
def test_the_archive_holds_scipys_entries_byte_for_byte(tmp_path, compressed):
    import zipfile

    layer = random_layer(np.random.default_rng(8), ndim=2, max_size=6)
    save_layer(tmp_path / "layer.npz", layer.weight, layer.input_shape, compressed=compressed,
               **layer.kwargs)
    sp.save_npz(tmp_path / "scipy.npz", conv_matrix(layer.weight, layer.input_shape,
                                                    **layer.kwargs), compressed=compressed)
    with zipfile.ZipFile(tmp_path / "layer.npz") as ours, \
            zipfile.ZipFile(tmp_path / "scipy.npz") as scipys:
        assert set(ours.namelist()) == set(scipys.namelist()) | {
            "sparseconv_layer.npy", "sparseconv_weight.npy"}
        for name in scipys.namelist():
            assert ours.read(name) == scipys.read(name), (name, layer)


def test_a_write_only_file_object_gets_the_archive(tmp_path):
    weight = np.ones((2, 1, 3))
    with open(tmp_path / "layer.npz", "wb") as handle:  # (not readable: zipfile cannot append)
        save_layer(handle, weight, (1, 6), padding=1)
    A, layer = load_layer(tmp_path / "layer.npz")
    assert_close(A, conv_matrix(weight, (1, 6), padding=1), "write-only", rtol=0)
    with open(tmp_path / "layer.npz", "rb") as handle:
        assert load_layer(io.BytesIO(handle.read()))[1].input_shape == (1, 6)
    # a text file, refused before the matrix is built (a new user's trial: Python's "write()
    # argument must be str, not bytes" after it)
    for mode, call in (("w", lambda f: save_layer(f, weight, (1, 6))), ("r", load_layer)):
        with open(tmp_path / "layer.npz", mode) as handle, pytest.raises(
                TypeError, match=r"got a text file .*layer\.npz'.*open it with mode 'wb' or "
                                 r"'rb'"):
            call(handle)


class _Stream:
    """A binary stream that cannot seek back (a pipe, a socket)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def seekable(self) -> bool:
        return False


def test_loading_is_sized_against_the_memory_limit_first(tmp_path, memory_limit):
    """Refused before the entries are read (a review: a file object was copied whole, 60 MiB
    under a 1 MiB limit, before the check); a stream is read at most up to the limit. Within
    the limit, each kind of file reads the same layer."""
    import sparseconv

    save_layer(tmp_path / "layer.npz", np.ones((4, 4, 3, 3)), (4, 64, 64), padding=1,
               compressed=False)
    data = (tmp_path / "layer.npz").read_bytes()
    memory_limit(2**20)  # its entries need 13 MiB
    with open(tmp_path / "layer.npz", "rb") as opened:
        for file, match in ((tmp_path / "layer.npz", "layer.npz.*memory limit"),
                            (opened, "layer.npz.*memory limit"),
                            (io.BytesIO(data), "BytesIO.*memory limit"),
                            (_Stream(data), "the copy of the stream .* memory limit")):
            error, peak = traced(lambda file=file: load_layer(file))
            assert isinstance(error, sparseconv.MatrixTooLargeError), error
            assert re.search(match, str(error)) and peak < 1.2 * 2**20, (file, error, peak)
    memory_limit(None)
    expected = load_layer(tmp_path / "layer.npz")[0]
    with open(tmp_path / "layer.npz", "rb") as opened:
        for file in (opened, io.BytesIO(data), _Stream(data)):
            matrix, layer = load_layer(file)
            assert (matrix != expected).nnz == 0 and layer.input_shape == (4, 64, 64)


@pytest.mark.parametrize("options", [{}, {"stride": 2, "dilation": (1, 2)}])
def test_a_file_of_the_periodic_padding_unmirrored_under_flip_still_loads(tmp_path, options):
    """A review: padding=None's split now mirrors under flip=True (as "same" does), so a file
    that save_layer wrote before, its matrix of PyTorch's split and its description
    padding=None, was refused as "changed after save_layer wrote it". It loads, read with the
    split it was written with, given explicitly, and a warning says so."""
    path = tmp_path / "old.npz"
    weight = np.random.default_rng(1).standard_normal((2, 1, 4, 3))
    shape = (1, 8, 6)
    # PyTorch's split of the periodic padding d (k - 1): the odd pixel on the high side
    dilation = options.get("dilation", (1, 1))
    old = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(weight.shape[2:], dilation))
    written = save_layer(path, weight, shape, padding=old, padding_mode="circular", flip=True,
                         **options)
    with np.load(path, allow_pickle=False) as stored:  # the description as it was written
        entries = {key: stored[key] for key in stored.files}
    description = json.loads(str(entries["sparseconv_layer"]))
    description["options"]["padding"] = None
    entries["sparseconv_layer"] = np.array(json.dumps(description))
    np.savez(path, **entries)
    with pytest.warns(UserWarning, match=r"written before padding=None's split mirrored under "
                                         r"flip=True .* padding=\(\(1, 2\), "):
        A, layer = load_layer(path)
    assert abs(A - written).max() == 0 and layer.options["padding"] == old
    x = np.random.default_rng(2).standard_normal(A.shape[1])
    assert_close(layer.operator() @ x, A @ x, options)
    # a file of this version, padding=None under flip, loads without a word
    save_layer(path, weight, shape, padding=None, padding_mode="circular", flip=True, **options)
    A, layer = load_layer(path)
    assert layer.options["padding"] is None


def test_atomic_path_gives_a_new_file_opens_permissions(tmp_path):
    """Mutants this catch: _files.py: the ``os.chmod`` of the temporary file dropped (it
    keeps mkstemp's 0600), and ``0o666 & ~umask`` -> ``0o600 & ~umask``: a new file gets the
    mode ``open`` gives one (0o666 less the umask); a replaced file keeps its own."""
    from sparseconv._files import atomic_path

    umask = os.umask(0o022)
    try:
        target = tmp_path / "new.bin"
        with atomic_path(str(target)) as temporary, open(temporary, "wb") as handle:
            handle.write(b"data")
        with open(tmp_path / "plain.bin", "wb") as handle:  # what open() gives, the oracle
            handle.write(b"data")
        mode = stat.S_IMODE(os.stat(target).st_mode)
        assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.bin").st_mode) == 0o644
        os.chmod(target, 0o640)
        with atomic_path(str(target)) as temporary, open(temporary, "wb") as handle:
            handle.write(b"more")
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
        assert target.read_bytes() == b"more"
    finally:
        os.umask(umask)


def test_atomic_path_leaves_nothing_behind_a_failed_write(tmp_path):
    """A mutant this catches: _files.py: the temporary file's ``os.unlink`` on failure
    dropped: a failed write leaves the directory as it was, the old file intact."""
    from sparseconv._files import atomic_path

    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_path(str(target)) as temporary:
            with open(temporary, "w") as handle:
                handle.write("partial")
            raise RuntimeError("half-way")
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"] and target.read_text() == "old"


def test_output_path_suffixes_and_refusals(tmp_path):
    """Mutants this catch: _files.py: the suffix compared case-sensitively (``a.NPZ`` became
    ``a.NPZ.npz``, which numpy does not do); the appended name not checked (a directory
    ``x.npz`` taken for the file); the directory check dropped; an unknown image format
    accepted."""
    from sparseconv._files import image_path, output_path

    assert output_path(str(tmp_path / "a.NPZ"), ".npz") == str(tmp_path / "a.NPZ")
    assert output_path(str(tmp_path / "a"), ".npz") == str(tmp_path / "a.npz")
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(IsADirectoryError):
        output_path(str(tmp_path / "x"), ".npz")
    with pytest.raises(IsADirectoryError):
        output_path(str(tmp_path / "x.npz"), ".npz")
    with pytest.raises(ValueError, match="xyz"):
        image_path(str(tmp_path / "figure.xyz"))
    assert image_path(str(tmp_path / "figure")) == str(tmp_path / "figure.png")


def test_save_layer_with_a_dtype_class_reads_back(tmp_path):
    """A mutant this catches: _io.py: ``np.dtype(stored["dtype"]).name`` -> ``str(...)``
    (``dtype=np.float32`` stored as "<class 'numpy.float32'>", which no loader reads): the
    file loads, its matrix is float32 and is scipy's, its layer rebuilds the same matrix."""
    w = np.random.default_rng(0).standard_normal((3, 2, 3))
    path = tmp_path / "layer.npz"
    A = sc.save_layer(str(path), w, (2, 7), padding=1, dtype=np.float32)
    B, layer = sc.load_layer(str(path))
    assert B.dtype == np.float32 and layer.options["dtype"] == "float32"
    assert (abs(sp.load_npz(path) - A)).max() == 0
    assert (abs(layer.matrix() - B)).max() == 0


def test_load_layer_refuses_a_matrix_edited_beyond_rounding(tmp_path):
    """A mutant this catches: _io.py: the check ``difference <= allowance`` loosened a
    thousandfold: a file whose stored matrix was scaled by 1 + 1e-5 after save_layer wrote
    it (no rounding does that in float64) is refused."""
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
    path = tmp_path / "layer.npz"
    sc.save_layer(str(path), w, (2, 6, 6), padding=1)
    with np.load(path) as entries:
        arrays = {key: entries[key] for key in entries.files}
    arrays["data"] = arrays["data"] * (1 + 1e-5)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="not its layer's"):
        sc.load_layer(str(path))


def test_saved_layer_refuses_a_blocksize_not_dividing_the_columns():
    """A mutant this catches: _io.py: SavedLayer's check ``rows % R or cols % C`` -> ``rows %
    R``: a blocksize that divides the 24 rows but not the 16 columns is refused by name."""
    with pytest.raises(ValueError, match="blocksize"):
        sc.SavedLayer(np.ones((4, 2, 3)), (2, 8), format="bsr", blocksize=(2, 3))


def _saved(compressed=True, **options) -> bytes:
    buffer = io.BytesIO()
    w = np.random.default_rng(3).standard_normal((3, 2, 3, 2))
    sc.save_layer(buffer, w, (2, 6, 5), compressed=compressed, **options)
    return buffer.getvalue()


def test_load_layer_of_a_stream_counts_its_copy_against_the_limit(memory_limit):
    """Mutants this catch: _io.py: a stream read to ``limit`` bytes instead of ``limit + 1``
    (a stream one byte over the limit then read truncated, and refused as "not an .npz"
    instead of by the memory limit), and the stream's copy left out of the limit (its
    entries alone fit, the entries and the copy do not)."""
    from sparseconv import MatrixTooLargeError

    data = _saved(compressed=False)
    entries = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    memory_limit(len(data) - 1)
    with pytest.raises(MatrixTooLargeError):
        sc.load_layer(_Stream(data))
    memory_limit(max(len(data), entries) + 16)  # each fits alone; together they do not
    assert len(data) + entries > max(len(data), entries) + 16
    with pytest.raises(MatrixTooLargeError):
        sc.load_layer(_Stream(data))
    memory_limit(len(data) + entries)
    A, layer = sc.load_layer(_Stream(data))
    assert (abs(A - layer.matrix())).max() == 0


def test_save_layer_uncompressed_stores_every_entry():
    """A mutant this catches: _io.py: sparseconv's own entries deflated even with
    ``compressed=False`` (np.savez's promise: every entry stored); and with the default
    every entry is deflated (zipfile's directory says so)."""
    stored = zipfile.ZipFile(io.BytesIO(_saved(compressed=False))).infolist()
    assert {i.compress_type for i in stored} == {zipfile.ZIP_STORED}
    assert "sparseconv_weight.npy" in [i.filename for i in stored]
    deflated = zipfile.ZipFile(io.BytesIO(_saved())).infolist()
    assert {i.compress_type for i in deflated} == {zipfile.ZIP_DEFLATED}


def test_load_layer_gives_the_options_as_tuples_and_refuses_another_shape(tmp_path):
    """Mutants this catch: _io.py: _tuples made the identity (the options read back as JSON
    lists, not as given), and the shape check dropped (a description edited to another
    input shape then fails on a product's dimension mismatch, not by the file's words)."""
    options = dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2))
    data = _saved(**options)
    A, layer = sc.load_layer(io.BytesIO(data))
    assert layer.options == options and layer.input_shape == (2, 6, 5)
    path = tmp_path / "edited.npz"
    with np.load(io.BytesIO(data)) as entries:
        arrays = {key: entries[key] for key in entries.files}
    description = json.loads(str(arrays["sparseconv_layer"]))
    description["input_shape"] = [2, 8, 5]
    arrays["sparseconv_layer"] = np.array(json.dumps(description))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="but its layer description gives"):
        sc.load_layer(str(path))


def _entries(buffer: io.BytesIO) -> dict:
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def _archive(entries: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("dtype, member, change", [
    (np.float32, "sparseconv_weight", 10.0), (np.float32, "data", 20.0),
    (np.float64, "data", 1e-3), (np.float64, "sparseconv_weight", 1e-6)])
def test_one_entry_edited_in_a_layer_of_real_size_is_refused(dtype, member, change):
    """A review: the allowance for rounding was ``sqrt(eps)`` times the whole weight's sum of
    magnitudes, so in a 64->64 3x3 layer on 8x8 a float32 tap changed by 10 (a matrix entry
    by 20), or a float64 matrix entry by 1e-3, loaded silently. Now each output row is
    allowed ``4 (m + 2) eps`` times its own terms' magnitudes, ``m`` its taps: each such edit
    is refused, and the layer as written loads. Mutant this catches: _io.py: the allowance
    taken from the whole weight again (``np.abs(weight).sum()``)."""
    weight = np.random.default_rng(0).standard_normal((64, 64, 3, 3)).astype(dtype)
    buffer = io.BytesIO()
    save_layer(buffer, weight, (64, 8, 8), padding=1)
    load_layer(io.BytesIO(buffer.getvalue()))  # as written: accepted
    entries = _entries(buffer)
    edited = entries[member].copy()
    edited.reshape(-1)[0] += change
    entries[member] = edited
    with pytest.raises(ValueError, match=r"holds a matrix that is not its layer's: a product "
                                         r"with a random vector differs by .* in row \d+ "
                                         r"\(rounding allows .* there\)"):
        load_layer(_archive(entries))


@pytest.mark.parametrize("weight_dtype", [np.float16, np.int64, np.bool_, np.float32])
def test_weights_of_every_numeric_dtype_load_back(weight_dtype):
    """The file's matrix is in the dtype the builders compute in for its weight (float64 for
    integers and booleans, float32 for float16): each loads back, the check of its dtype
    reading the weight as the builders do. Mutant this catches: _io.py: the dtype compared
    with the weight's own (``np.asarray`` for ``as_weight``): the integer, boolean and
    float16 weights refused."""
    weight = (np.random.default_rng(1).standard_normal((3, 2, 3)) * 4).astype(weight_dtype)
    buffer = io.BytesIO()
    A = save_layer(buffer, weight, (2, 9), padding=1, stride=2)
    B, layer = load_layer(io.BytesIO(buffer.getvalue()))
    assert B.dtype == A.dtype == layer.matrix().dtype and abs(B - A).max() == 0


@pytest.mark.parametrize("edit, message", [
    ({"kind": "banana"}, r"kind must be 'conv' or 'conv_transpose', got 'banana'"),
    ({"sparseconv": None}, r"it names no sparseconv version that wrote it \(got None\)"),
    ({"options": {"padding": 1, "dtype": "float32"}},
     r"holds a float64 matrix, but its layer description builds float32"),
    ({"blocksize": [1, 1]}, r"holds a BSR matrix in \(2, 2\) blocks, but its layer "
                            r"description gives blocksize=\(1, 1\)")])
def test_a_description_edited_where_the_product_cannot_see_it_is_refused(edit, message):
    """A review: fields of the description that no product with a vector tells apart loaded
    silently -- a kind other than the two (read as a convolution), no version, a dtype option
    other than the matrix's (``layer.matrix()`` then in float32 beside a float64 file), a
    BSR blocksize other than the matrix's. Mutants this catches: _io.py: each check dropped."""
    buffer = io.BytesIO()
    save_layer(buffer, np.ones((2, 2, 3)), (2, 6), padding=1, format="bsr",
               blocksize=(2, 2))
    entries = _entries(buffer)
    description = json.loads(str(entries["sparseconv_layer"]))
    description.update(edit)
    entries["sparseconv_layer"] = np.array(json.dumps(description))
    with pytest.raises(ValueError, match=message):
        load_layer(_archive(entries))


def test_a_matrix_cast_after_saving_is_refused():
    """A review: the stored entries cast to float32 (a float64 layer) loaded silently."""
    buffer = io.BytesIO()
    save_layer(buffer, np.random.default_rng(2).standard_normal((2, 1, 3)), (1, 7))
    entries = _entries(buffer)
    entries["data"] = entries["data"].astype(np.float32)
    with pytest.raises(ValueError, match=r"holds a float32 matrix, but its layer description "
                                         r"builds float64"):
        load_layer(_archive(entries))


def test_two_layers_in_one_stream_are_read_one_at_a_time_or_refused():
    """A review: two layers written one after the other to one stream, read from the first's
    start, gave the second (zip files are found from their end). The first is refused so,
    saying why; the second, read from its own start, loads. Mutant this catches: _io.py:
    the archive's start not compared with the stream's position."""
    rng = np.random.default_rng(2)
    stream = io.BytesIO()
    save_layer(stream, rng.standard_normal((2, 1, 3)), (1, 6))
    middle = stream.tell()
    second = save_layer(stream, rng.standard_normal((2, 1, 3)), (1, 6))
    stream.seek(0)
    with pytest.raises(ValueError, match=rf"holds another archive than the one at its "
                                         rf"position 0: the last one in the stream starts at "
                                         rf"{middle}"):
        load_layer(stream)
    stream.seek(middle)
    assert abs(load_layer(stream)[0] - second).max() == 0


@requires_torch
def test_save_layer_refuses_a_tensor_that_requires_grad_by_name():
    """A review: save_layer read its weight with ``np.asarray`` before the builder, and a
    tensor that requires grad raised torch's own RuntimeError; now the builders' TypeError,
    naming ``weight`` and the fix."""
    weight = torch.ones(2, 1, 3, requires_grad=True)
    with pytest.raises(TypeError, match=r"weight must be a numeric array, got Tensor .*"
                                        r"weight\.detach\(\)"):
        save_layer(io.BytesIO(), weight, (1, 6))
