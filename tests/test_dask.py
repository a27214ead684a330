"""sparseconv.dask: layers chunk by chunk on Dask arrays, forward and adjoint, row blocks of
the matrix as a Dask array, zarr output, and all of it on a real two-process cluster.

Oracles: PyTorch's conv{d}d / conv_transpose{d}d of the whole array, and the serial operator
(itself checked against PyTorch) for the adjoint, which must also pass the dot test.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import sparseconv as sc

from ._oracles import (
    F,
    assert_close,
    random_array,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch,
    torch_conv,
    torch_conv_transpose,
)

da = pytest.importorskip("dask.array", reason="dask is not installed (the [dask] extra)")
dask = pytest.importorskip("dask")
sdask = pytest.importorskip("sparseconv.dask")
_dask_graph = pytest.importorskip("sparseconv._dask_graph")


@pytest.fixture(autouse=True)
def synchronous():
    """One thread, unless a test uses the cluster (a Client becomes the default itself)."""
    with dask.config.set(scheduler="synchronous"):
        yield


def random_chunks(rng, shape):
    """Each axis cut into 1 to 3 chunks of random sizes."""
    chunks = []
    for n in shape:
        cuts = sorted(set(int(c) for c in rng.integers(1, n, int(rng.integers(0, 3)))) if n > 1
                      else [])
        edges = [0, *cuts, n]
        chunks.append(tuple(b - a for a, b in zip(edges[:-1], edges[1:])))
    return tuple(chunks)


def assert_stride_aligned(A, transposed, config):
    """The convolution's input chunks start at multiples of the stride, and output chunk ``i``
    holds the outputs ``o`` whose ``o * stride`` lies in input chunk ``i``; the outputs past
    the input (padding may make some) follow in blocks no longer than the longest other."""
    a_in, a_out = ((A.output_chunks, A.input_chunks) if transposed
                   else (A.input_chunks, A.output_chunks))
    for axis, in_chunks, out_chunks in zip(A.geometry.axes, a_in, a_out):
        edges = np.cumsum((0, *in_chunks))
        assert edges[-1] == axis.size and all(e % axis.stride == 0 for e in edges[:-1]), config
        first = np.cumsum((0, *out_chunks))
        assert first[-1] == axis.output_size, config
        longest = max(-(-c // axis.stride) for c in in_chunks)
        assert max(out_chunks) <= longest, config
        for i in range(len(out_chunks)):
            if i >= len(in_chunks):  # past the input
                assert first[i] * axis.stride >= axis.size, (config, i)
                continue
            assert first[i] * axis.stride >= edges[i], (config, i)
            if i + 1 < len(in_chunks):
                assert (first[i + 1] - 1) * axis.stride < edges[i + 1], (config, i)


def check_layer(rng, layer, chunked, oracle, config):
    """``chunked(chunks)`` (the Dask twin of the serial ``layer``) on a batch of 3 in two
    batch chunks: forward against ``oracle``, adjoint against the serial layer, dot test."""
    chunks = random_chunks(rng, layer.input_shape[1:])
    A = chunked(chunks)
    assert_stride_aligned(A, isinstance(layer, sc.ConvTransposeOperator), config)
    x = random_array(rng, (3, *layer.input_shape), layer.dtype)
    y = A.matvec(da.from_array(x, chunks=((2, 1), -1, *chunks)))
    assert isinstance(y, da.Array) and y.chunks[2:] == A.output_chunks, config
    assert_close(y.compute(), oracle(x), (config, chunks))
    v = random_array(rng, (3, *layer.output_shape), layer.dtype)
    u = A.rmatvec(da.from_array(v, chunks=((1, 2), -1, *A.output_chunks)))
    assert u.chunks[2:] == A.input_chunks, config
    u = u.compute()
    expected = (layer.H @ v.reshape(3, -1).T).T.reshape(u.shape)
    assert_close(u, expected, (config, chunks))
    assert_close(np.vdot(v, y.compute()), np.vdot(u, x), (config, "dot test"))


@requires_torch
@pytest.mark.parametrize("seed", range(21))
def test_chunked_conv_matches_torch_and_the_serial_adjoint(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=12 - 3 * (seed % 3))
    serial = sc.ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    check_layer(rng, serial, lambda chunks: sdask.ConvOperator(
        layer.weight, layer.input_shape, chunks=chunks, **layer.kwargs),
        lambda x: torch_conv(x, layer.weight, **layer.kwargs), layer)


@requires_torch
@pytest.mark.parametrize("seed", range(9))
def test_chunked_conv_transpose_matches_torch_and_the_serial_adjoint(seed):
    rng = np.random.default_rng(100 + seed)
    weight, shape, kwargs = random_transpose_layer(rng, max_size=8)
    serial = sc.ConvTransposeOperator(weight, shape, **kwargs)
    check_layer(rng, serial, lambda chunks: sdask.ConvTransposeOperator(
        weight, shape, chunks=chunks, **kwargs),
        lambda x: torch_conv_transpose(x, weight, **kwargs), (weight.shape, shape, kwargs))


@pytest.mark.parametrize("transposed", [False, True])
def test_dims_and_dimsd_are_the_serial_operators(transposed):
    """A new user's trial: the Dask operators had no ``dims``/``dimsd`` (PyLops' names),
    which the serial ones have."""
    weight = np.random.default_rng(3).standard_normal((4, 2, 3, 3))
    kwargs = dict(stride=2, padding=1)
    serial, chunked = ((sc.ConvTransposeOperator(weight, (4, 5, 6), **kwargs),
                        sdask.ConvTransposeOperator(weight, (4, 5, 6), chunks=3, **kwargs))
                       if transposed else
                       (sc.ConvOperator(weight, (2, 9, 11), **kwargs),
                        sdask.ConvOperator(weight, (2, 9, 11), chunks=4, **kwargs)))
    assert chunked.dims == serial.dims == chunked.input_shape
    assert chunked.dimsd == serial.dimsd == chunked.output_shape
    assert math.prod(chunked.dims) == chunked.shape[1]


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_flip_and_complex_against_the_serial_operator(mode):
    rng = np.random.default_rng(7)
    w = random_array(rng, (2, 2, 4, 3), np.complex128)
    kwargs = dict(padding=((3, 1), 2), padding_mode=mode, flip=True, dilation=(1, 2))
    serial = sc.ConvOperator(w, (2, 11, 9), **kwargs)
    check_layer(rng, serial, lambda chunks: sdask.ConvOperator(w, (2, 11, 9), chunks=chunks,
                                                               **kwargs),
                lambda x: (serial @ x.reshape(3, -1).T).T.reshape(3, *serial.output_shape), mode)


def test_a_volume_too_large_for_the_serial_operator_runs_by_its_chunks():
    w = np.random.default_rng(9).standard_normal((4, 4, 3, 3, 3))
    old = sc.set_memory_limit(8 * 2**20)
    try:
        with pytest.raises(sc.MatrixTooLargeError):  # one product of the whole volume
            sc.ConvOperator(w, (4, 96, 96, 96), padding=1)
        A = sdask.ConvOperator(w, (4, 96, 96, 96), chunks=16, padding=1)
        x = da.random.default_rng(0).standard_normal((4, 96, 96, 96), chunks=(4, 16, 16, 16))
        y = A.matvec(x)
        assert y.numblocks == (1, 6, 6, 6)
        got = y[:, 40:50, 40:50, 40:50].compute()  # 8 blocks, each within the limit
        box = x[:, 39:51, 39:51, 39:51].compute()
    finally:
        sc.set_memory_limit(old)
    valid = sc.ConvOperator(w, box.shape)
    assert_close(got.ravel(), valid @ box.ravel(), "interior box")


def test_chunk_boundaries_move_to_multiples_of_the_stride():
    A = sdask.ConvOperator(np.ones((1, 1, 3)), (1, 24), chunks=((7, 9, 8),), stride=3, padding=1)
    assert A.input_chunks == ((6, 9, 9),) and A.output_chunks == ((2, 3, 3),)
    x = da.arange(24.0, chunks=(7, 9, 8))[None]  # rechunked to the aligned chunks
    serial = sc.ConvOperator(np.ones((1, 1, 3)), (1, 24), stride=3, padding=1)
    assert_close(A.matvec(x).compute().ravel(), serial @ np.arange(24.0), "aligned")


def test_functions_keep_the_callers_form():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3))
    x = rng.standard_normal((2, 10, 12))
    y = sdask.conv(da.from_array(x, chunks=(2, 5, 4)), w, padding="same",
                   padding_mode="reflect")
    A = sc.ConvOperator(w, (2, 10, 12), padding="same", padding_mode="reflect")
    assert y.shape == (3, 10, 12) and y.chunks[1:] == ((5, 5), (4, 4, 4))  # as the input
    assert_close(y.compute().ravel(), A @ x.ravel(), "conv")
    T = sc.ConvTransposeOperator(np.moveaxis(w, 0, 1), (2, 10, 12), stride=2, padding=1)
    t = sdask.conv_transpose(da.from_array(x, chunks=(2, 5, 4)), np.moveaxis(w, 0, 1),
                             stride=2, padding=1)
    assert_close(t.compute().ravel(), T @ x.ravel(), "conv_transpose")
    C = sdask.ConvOperator(w, (2, 10, 12), chunks=4, padding="same", padding_mode="reflect")
    flat = C.matvec(da.from_array(x.ravel(), chunks=60))  # flat in, flat out
    assert flat.shape == (360,)
    assert_close(flat.compute(), A @ x.ravel(), "flat")
    assert_close(C @ x.ravel(), A @ x.ravel(), "numpy in, numpy out")
    assert_close(C.H @ (A @ x.ravel()), A.H @ (A @ x.ravel()), "adjoint, numpy")
    assert_close(C.matmat(x.reshape(-1, 1)), A @ x.reshape(-1, 1), "numpy columns")
    assert C.H.H is C and isinstance(C.H.matvec(y), da.Array)


@pytest.mark.parametrize("transposed", [False, True])
def test_numpy_arrays_of_every_documented_form(transposed):
    """A numpy array shaped input_shape came back as a (32, 8) scramble of the right values,
    and a batch (N, *input_shape) was transposed before its reshape: wrong values. Every form
    a Dask array takes is now taken from numpy too, and scipy's (n, k) columns still are."""
    rng = np.random.default_rng(6)
    if transposed:
        w = rng.standard_normal((2, 3, 3, 3))
        kwargs = dict(stride=2, padding=1, output_padding=1)
        S = sc.ConvTransposeOperator(w, (2, 4, 4), **kwargs)
        C = sdask.ConvTransposeOperator(w, (2, 4, 4), chunks=2, **kwargs)
    else:
        w = rng.standard_normal((4, 2, 3, 3))
        S = sc.ConvOperator(w, (2, 8, 8), padding=1)
        C = sdask.ConvOperator(w, (2, 8, 8), chunks=4, padding=1)
    for product, serial, shape in ((C.matvec, S.apply, S.dims),
                                   (C.rmatvec, S.apply_adjoint, S.dimsd)):
        one, batch = rng.standard_normal(shape), rng.standard_normal((3, *shape))
        assert_close(product(one), serial(one), "one array")
        if product == C.matvec:  # dot and @ too (they fell through to scipy's, which refused)
            assert_close(C @ one, serial(one), "@ one array")
            assert_close(C.dot(batch), serial(batch), "dot of a batch")
        assert product(batch).shape == serial(batch).shape
        assert_close(product(batch), serial(batch), "a batch")
        assert_close(product(one.ravel()), serial(one).ravel(), "flat")
        columns = batch.reshape(3, -1).T
        assert_close(product(columns), serial(batch).reshape(3, -1).T, "columns")
    with pytest.raises(TypeError, match="x must be a numeric array, got dtype <U1"):
        C.matvec(np.array(["a"] * C.shape[1]))
    with pytest.raises(ValueError, match=r"x must have shape .* got shape \(5,\)"):
        C.matvec(np.ones(5))


def test_scipy_solvers_take_the_operator():
    rng = np.random.default_rng(2)
    w = 0.2 * rng.standard_normal((2, 2, 3, 3))  # A^H A + I well conditioned: a few steps
    A = sc.ConvOperator(w, (2, 8, 8), padding=1, padding_mode="circular")
    C = sdask.ConvOperator(w, (2, 8, 8), chunks=4, padding=1, padding_mode="circular")
    b = rng.standard_normal(A.shape[1])
    normal = C.H @ C + spla.aslinearoperator(np.eye(A.shape[1]))
    x, info = spla.cg(normal, b, rtol=1e-12)
    assert info == 0
    assert_close(A.H @ (A @ x) + x, b, "cg", rtol=1e-9)


def dask_cg(apply, b, iterations):
    """Conjugate gradients on Dask arrays: only the scalars are computed each step."""
    x = da.zeros_like(b)
    r = p = b
    rr = float((r * r).sum().compute())
    for _ in range(iterations):
        q = apply(p).persist()  # chunks stay where they are (on the workers of a cluster)
        alpha = rr / float((p * q).sum().compute())
        x, r = (x + alpha * p).persist(), (r - alpha * q).persist()
        rr, rr_old = float((r * r).sum().compute()), rr
        p = (r + (rr / rr_old) * p).persist()
    assert isinstance(x, da.Array)
    return x


def regularized_solution(A, b):
    """The dense oracle: (A^H A + I)^-1 b by scipy.linalg."""
    M = A.tosparse().toarray()
    return np.linalg.solve(M.conj().T @ M + np.eye(M.shape[1]), b.ravel())


def test_conjugate_gradients_on_dask_arrays():
    rng = np.random.default_rng(3)
    w = 0.02 * rng.standard_normal((3, 2, 3, 3, 3))
    A = sc.ConvOperator(w, (2, 8, 7, 6), padding=1, padding_mode="reflect")
    C = sdask.ConvOperator(w, (2, 8, 7, 6), chunks=(4, 4, 3), padding=1, padding_mode="reflect")
    b = rng.standard_normal(A.input_shape)

    def normal(v):  # (A^H A + I) v, lazily
        return C.rmatvec(C.matvec(v)) + v

    x = dask_cg(normal, da.from_array(b, chunks=(2, *C.input_chunks)), 10).compute()
    assert_close(x.ravel(), regularized_solution(A, b), "dask cg", rtol=1e-10)


def test_to_zarr_writes_the_result(tmp_path):
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(4)
    w = rng.standard_normal((2, 1, 3, 3, 3))
    x = rng.standard_normal((1, 13, 12, 11))
    kwargs = dict(padding=2, stride=2, padding_mode="replicate")
    A = sc.ConvOperator(w, (1, 13, 12, 11), **kwargs)
    y = sdask.ConvOperator(w, (1, 13, 12, 11), chunks=5, **kwargs).matvec(
        da.from_array(x, chunks=(1, 5, 5, 5)))
    sdask.to_zarr(y, str(tmp_path / "y.zarr"))
    stored = zarr.open(str(tmp_path / "y.zarr"), mode="r")
    assert stored.shape == A.output_shape
    assert_close(stored[...].ravel(), A @ x.ravel(), "zarr")


def test_matrix_blocks_as_a_dask_array():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 2, 3, 3))
    kwargs = dict(padding=1, groups=2, padding_mode="reflect", stride=(1, 2))
    M = sdask.conv_matrix(w, (4, 9, 10), block_rows=50, **kwargs)
    full = sc.conv_matrix(w, (4, 9, 10), **kwargs)
    assert M.shape == full.shape and M.chunks[0][:2] == (50, 50)
    assert abs(M.compute() - full).max() == 0
    assert (M.blocks[2].compute() != full[100:150]).nnz == 0


def test_dask_s_own_chunk_conventions():
    """A new user's trial: ``chunks=-1`` and ``"auto"`` (Dask's whole axis and its own
    sizing) were refused. -1 and None give an axis one chunk, ``"auto"`` sizes a chunk of
    every channel to Dask's ``array.chunk-size``; the products equal the serial operator's."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 2, 3, 3))
    serial = sc.ConvOperator(w, (2, 12, 10), padding=1, stride=2)
    x = rng.standard_normal((2, 12, 10))
    for chunks, expected in [(-1, ((12,), (10,))), ((-1, 4), ((12,), (4, 4, 2))),
                             ((None, 6), ((12,), (6, 4))), ("auto", ((12,), (10,))),
                             (("auto", 4), ((12,), (4, 4, 2)))]:
        A = sdask.ConvOperator(w, (2, 12, 10), chunks=chunks, padding=1, stride=2)
        assert A.input_chunks == expected, chunks
        y = A.matvec(da.from_array(x, chunks=(2, *A.input_chunks))).compute()
        assert_close(y.ravel(), serial @ x.ravel(), chunks)
    import dask

    with dask.config.set({"array.chunk-size": "64KiB"}):  # 4 channels of float64: 2048
        A = sdask.ConvOperator(np.ones((4, 4, 3, 3)), (4, 256, 256), chunks="auto")
        assert max(A.input_chunks[0]) * max(A.input_chunks[1]) * 4 * 8 <= 64 * 2**10
        assert max(A.input_chunks[0]) * max(A.input_chunks[1]) >= 1024, A.input_chunks


def test_bad_input_is_refused_by_name():
    w = np.ones((1, 1, 3, 3))
    with pytest.raises(TypeError, match="weight"):
        sdask.ConvOperator("w", (1, 8, 8), chunks=4)
    with pytest.raises(ValueError, match="stride"):
        sdask.ConvTransposeOperator(w, (1, 8, 8), chunks=4, stride=0)
    for chunks, error in [(None, TypeError), ("4", TypeError), ((4,), ValueError),
                          ((4, 4, 4), ValueError), (0, ValueError), (((3, 3), 8), ValueError),
                          (-2, ValueError), (4.0, TypeError), (((4, 4.0), 8), TypeError)]:
        with pytest.raises(error, match="chunks"):
            sdask.ConvOperator(w, (1, 8, 8), chunks=chunks)
        with pytest.raises(error, match="chunks"):
            sdask.ConvTransposeOperator(w, (1, 8, 8), chunks=chunks)
    with pytest.raises(ValueError, match=r"chunks must be positive sizes \(or -1 for a whole "
                       r"axis\), got 0$"):
        sdask.ConvOperator(w, (1, 8, 8), chunks=0)  # (was Dask's "integer division or modulo")
    for value in (np.inf, -np.inf, np.nan):  # (a hunt: nan where the matrix has inf or a
        # number; the blocks multiply the padding's zeros by every tap)
        bad = w.copy()
        bad[0, 0, 2, 1] = value
        for cls in (sdask.ConvOperator, sdask.ConvTransposeOperator):
            with pytest.raises(ValueError, match=rf"weight\[0, 0, 2, 1\] is {value}, {value} in "
                               "float64: sparseconv.dask takes finite weights only"):
                cls(bad, (1, 8, 8), chunks=4)
    big = w.copy()
    big[0, 0, 1, 1] = 1e300  # finite, but inf in float32 (a review)
    with pytest.raises(ValueError, match=r"weight\[0, 0, 1, 1\] is 1e\+300, inf in float32"):
        sdask.ConvOperator(big, (1, 8, 8), chunks=4, dtype=np.float32)
    C = sdask.ConvOperator(w, (1, 8, 8), chunks=4, padding=1)
    with pytest.raises(ValueError, match="x must have shape"):
        C.matvec(da.ones((1, 8, 9), chunks=4))
    with pytest.raises(TypeError, match="x must be a dask array"):
        sdask.conv(np.ones((1, 8, 8)), np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="x must have shape"):
        sdask.conv(da.ones((8, 8), chunks=4), np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="padding_mode"):
        sdask.conv(da.ones((1, 8, 8), chunks=4), np.ones((1, 1, 3, 3)), padding_mode="mirror")
    # a trial: a 1-D weight reads (2, 16, 16) as a batch, and the layer blamed "input_shape"
    with pytest.raises(ValueError, match=r"x of shape \(2, 16, 16\), read as \(N, C, \*spatial\) "
                                         r"for weight of shape \(1, 2, 3\), has C=16 channels"):
        sdask.conv(da.ones((2, 16, 16), chunks=8), np.ones((1, 2, 3)))
    for function in (sdask.conv, sdask.conv_transpose):  # (a trial: x was blamed for it)
        with pytest.raises(ValueError, match=r"^weight must have two channel axes, then at "
                                             r"least one spatial axis .* weight.shape=\(3,\)$"):
            function(da.ones((2, 20, 20), chunks=10), np.ones(3))
    with pytest.raises(ValueError,
                       match=r"has C=2 channels; the layer takes weight.shape\[0\] = 3"):
        sdask.conv_transpose(da.ones((2, 16, 16), chunks=8), np.ones((3, 2, 3, 3)), groups=1)
    # chunks as a 1-D integer array, as stride and the serial functions' ints take them
    A = sdask.ConvOperator(w, (1, 8, 8), chunks=np.array([4, 2]), padding=1)
    assert A.input_chunks == ((4, 4), (2, 2, 2, 2))
    with pytest.raises(ValueError, match="block_rows"):
        sdask.conv_matrix(np.ones((1, 1, 3)), (1, 8), block_rows=0)
    with pytest.raises(TypeError, match="x must be a dask array"):
        sdask.to_zarr(np.ones(3), "unused.zarr")


def test_a_block_that_cannot_fit_is_refused_when_the_graph_is_built(memory_limit):
    """(A memory audit: conv_matrix returned a graph whose blocks each needed 26.9 GiB, and
    refused only when one was computed.)"""
    w = np.ones((16, 16, 3, 3))
    memory_limit(8 * 2**20)
    with pytest.raises(sc.MatrixTooLargeError, match=r"rows 0:16384 of the 262144 x 262144"
                                                     r".* use a smaller block_rows \(the "
                                                     r"default, one output channel's rows: "
                                                     r"16384\), or the matrix-free "):
        sdask.conv_matrix(w, (16, 128, 128), padding=1)  # a channel's rows a block: 107 MiB
    with pytest.raises(sc.MatrixTooLargeError, match=r"block_rows \(got 16000\)"):
        sdask.conv_matrix(w, (16, 128, 128), padding=1, block_rows=16000)
    M = sdask.conv_matrix(w, (16, 128, 128), padding=1, block_rows=1024)
    assert M.numblocks == (256, 1)
    block = M.blocks[5].compute()
    expected = sc.conv_matrix(w, (16, 128, 128), padding=1, rows=slice(5 * 1024, 6 * 1024))
    assert block.nnz == expected.nnz > 0 and abs(block - expected).max() == 0


@pytest.mark.parametrize("transposed", [False, True])
def test_a_batch_chunk_that_cannot_fit_is_refused_when_the_graph_is_built(transposed,
                                                                           memory_limit):
    """A review: a batch chunk of 400 whose block products need 39 MiB passed the build under
    a 2 MiB limit (each block's operator sized for one column), and its tasks failed; the
    products of the largest batch chunk are sized too, forward and adjoint, before any
    work. The same layer with the batch chunked by 4 builds, and equals the serial operator.
    Mutant this catches: _dask_graph.py: the batch not sized (``batch=0``)."""
    w = np.random.default_rng(3).standard_normal((8, 8, 3, 3))
    serial = (sc.ConvTransposeOperator if transposed else sc.ConvOperator)(
        w, (8, 32, 32), padding=1)
    x = np.random.default_rng(4).standard_normal((8, 8, 32, 32))
    forward, adjoint = (serial @ x.reshape(8, -1).T).T, (serial.H @ x.reshape(8, -1).T).T
    memory_limit(2 * 2**20)
    cls = sdask.ConvTransposeOperator if transposed else sdask.ConvOperator
    A = cls(w, (8, 32, 32), chunks=(16, 16), padding=1)
    big = da.ones((400, 8, 32, 32), chunks=(400, 8, 16, 16))
    with pytest.raises(sc.MatrixTooLargeError, match=r"on a batch chunk of 400 is too large: "
                                                     r"use smaller chunks \(of the batch "
                                                     r"too\)"):
        A.matmat(big)
    with pytest.raises(sc.MatrixTooLargeError, match=r"on a batch chunk of 400 is too large"):
        A.rmatmat(big)
    small = da.from_array(x, chunks=(4, 8, 16, 16))
    assert_close(A.matmat(small).compute().reshape(8, -1), forward, "batch chunks of 4")
    assert_close(A.rmatmat(small).compute().reshape(8, -1), adjoint,
                 "adjoint, batch chunks of 4")
    # a chunk whose scratch is over the limit but whose results fit beside one column's (32:
    # refused before: its block products need 4.4 MiB at once, under a limit of 2 MiB):
    # the block products run a part of the columns at a time, as the serial operator's do
    # (a review: the graph refused such a chunk, which the serial operator now runs)
    many = np.concatenate([x, 2 * x, -x, x[::-1]])  # (32 samples)
    whole = da.from_array(many, chunks=(32, 8, 16, 16))
    assert_close(A.matmat(whole).compute().reshape(32, -1),
                 np.concatenate([forward, 2 * forward, -forward, forward[::-1]]),
                 "a batch chunk of 32")
    assert_close(A.rmatmat(whole).compute().reshape(32, -1),
                 np.concatenate([adjoint, 2 * adjoint, -adjoint, adjoint[::-1]]),
                 "adjoint, a batch chunk of 32")


def test_import_sparseconv_imports_no_dask_and_the_error_names_the_extra():
    code = ("import sys, sparseconv, sparseconv.testing; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
            "sys.modules['dask'] = None\n"
            "try:\n    import sparseconv.dask\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert 'pip install -e ".[dask]"' in out


# ---------------------------------------------------------------------------------------------
# A real cluster: two worker processes, one thread each.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", memory_limit="1GiB") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_on_a_cluster_forward_adjoint_and_matrix(client, tmp_path):
    rng = np.random.default_rng(6)
    w = rng.standard_normal((4, 2, 3, 3, 3))
    kwargs = dict(padding=1, padding_mode="circular", stride=(2, 1, 1))
    A = sc.ConvOperator(w, (2, 12, 10, 9), **kwargs)
    C = sdask.ConvOperator(w, (2, 12, 10, 9), chunks=(6, 5, 5), **kwargs)
    x = rng.standard_normal((2, 2, 12, 10, 9))
    with dask.config.set(scheduler=client):
        y = C.matvec(da.from_array(x, chunks=(1, 2, 6, 5, 5))).persist()  # on the workers
        assert_close(y.compute().reshape(2, -1), (A @ x.reshape(2, -1).T).T, "cluster forward")
        u = C.rmatvec(y).compute()
        assert_close(u.reshape(2, -1), (A.H @ (A @ x.reshape(2, -1).T)).T, "cluster adjoint")
        ran_on = client.run(lambda: True)
        assert len(ran_on) == 2  # two worker processes
        sdask.to_zarr(y, str(tmp_path / "y.zarr"))  # each worker writes its own chunks
        M = sdask.conv_matrix(w, (2, 12, 10, 9), padding=1, padding_mode="circular",
                              stride=(2, 1, 1), block_rows=700)
        assert abs(M.compute() - A.tosparse()).max() == 0
    zarr = pytest.importorskip("zarr")
    assert_close(zarr.open(str(tmp_path / "y.zarr"), mode="r")[...].reshape(2, -1),
                 (A @ x.reshape(2, -1).T).T, "zarr from the cluster")


def test_on_a_cluster_spectral_norms_of_a_network(client):
    """Whole layers on the cluster's worker processes (``workers=client.get_executor()``),
    equal to the serial results; a layer's error comes back named."""
    rng = np.random.default_rng(9)
    layers = [dict(weight=rng.standard_normal((c, c, 3, 3)), input_shape=(c, n, n), padding=1)
              for c, n in ((4, 20), (8, 10), (2, 30))]
    serial = sc.spectral_norms(layers)
    on_cluster = sc.spectral_norms(layers, workers=client.get_executor(), relative_width=1e-5)
    for ours, alone in zip(on_cluster, serial):
        assert ours.relative_width <= 1e-5
        assert ours.lower <= alone.upper and alone.lower <= ours.upper
    old = sc.set_memory_limit(100_000)  # passed on to the task: refused there, and named
    try:
        with pytest.raises(sc.MatrixTooLargeError, match=r"^layers\[\d\]: spectral_norm.s bounds "
                                                         r"multiply by the layer"):
            sc.spectral_norms(layers, workers=client.get_executor().map)
    finally:
        sc.set_memory_limit(old)


def test_on_a_cluster_cg_keeps_the_vectors_on_the_workers(client):
    """The same iterations on the cluster as on one thread (checked against a dense solve
    above), the vectors persisted on the workers, only scalars coming back."""
    rng = np.random.default_rng(8)
    w = 0.03 * rng.standard_normal((2, 2, 3, 3))
    C = sdask.ConvOperator(w, (2, 16, 12), chunks=(8, 6), padding=1, padding_mode="replicate")
    A = sc.ConvOperator(w, (2, 16, 12), padding=1, padding_mode="replicate")
    b = da.from_array(rng.standard_normal(A.input_shape), chunks=(2, *C.input_chunks))

    def normal(v):
        return C.rmatvec(C.matvec(v)) + v

    with dask.config.set(scheduler=client):
        x = dask_cg(normal, b, 4)
        held = client.who_has(x)  # the solution's chunks live on the workers
        assert held and all(held.values()), held
        on_cluster = x.compute()
    assert_close(on_cluster, dask_cg(normal, b, 4).compute(), "cluster cg")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
def test_layers_differing_in_padding_alone_have_their_own_keys(mode):
    """A trial: task names covered the kernel's options and the chunks but not the padding, so
    a reflect- and a replicate-padded layer (or two splits of one padding) named their blocks
    alike, and in one graph one layer's blocks replaced the other's (``y1 - y2`` was 0)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 2, 3, 3))
    xn = rng.standard_normal((2, 16, 16))
    x = da.from_array(xn, chunks=(2, 8, 8))
    other = {"reflect": "replicate", "replicate": "reflect", "circular": "zeros",
             "zeros": "circular"}[mode]
    pairs = [(dict(padding=1, padding_mode=mode), dict(padding=1, padding_mode=other)),
             (dict(padding=((0, 2), (0, 2)), padding_mode=mode),
              dict(padding=((2, 0), (2, 0)), padding_mode=mode))]
    for first, second in pairs:
        serial = [sc.ConvOperator(w, (2, 16, 16), **o) for o in (first, second)]
        chunked = [sdask.ConvOperator(w, (2, 16, 16), chunks=8, **o) for o in (first, second)]
        y1, y2 = (A.matvec(x) for A in chunked)
        assert y1.name != y2.name, (first, second)
        expected = (serial[0] @ xn.ravel() - serial[1] @ xn.ravel()).reshape(y1.shape)
        assert np.abs(expected).max() > 1.0  # the two layers differ
        assert_close((y1 - y2).compute(), expected, (first, second))
        u1, u2 = (A.rmatvec(y1) for A in chunked)
        y = serial[0] @ xn.ravel()
        assert_close((u1 - u2).compute().ravel(), serial[0].H @ y - serial[1].H @ y, "adjoint")
        assert_close((sdask.conv(x, w, **first) - sdask.conv(x, w, **second)).compute(),
                     expected, ("conv", first, second))
    # transposed layers of one output size: padding 0, output_padding 0 against 1 and 2
    T = [sdask.ConvTransposeOperator(w, (2, 6, 6), chunks=3, stride=3, padding=p,
                                     output_padding=q) for p, q in ((0, 0), (1, 2))]
    S = [sc.ConvTransposeOperator(w, (2, 6, 6), stride=3, padding=p, output_padding=q)
         for p, q in ((0, 0), (1, 2))]
    v = rng.standard_normal((2, 6, 6))
    z1, z2 = (A.matvec(da.from_array(v, chunks=3)) for A in T)
    assert z1.shape == z2.shape and z1.name != z2.name
    assert_close((z1 - z2).compute().ravel(), S[0] @ v.ravel() - S[1] @ v.ravel(), "transposed")


@pytest.mark.parametrize("complex_weight", [False, True])
def test_scipy_algebra_of_chunked_layers_stays_lazy(complex_weight):
    """A trial: ``A.T``, ``2 * A``, ``A + A`` and ``A.H @ A`` went through scipy's composites,
    which call ``np.asarray`` on a Dask input: the whole array was computed on the client
    (and an image-shaped one refused with a message printing it)."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3))
    if complex_weight:
        w = w + 1j * rng.standard_normal(w.shape)
    S = sc.ConvOperator(w, (2, 16, 16), padding=1)
    A = sdask.ConvOperator(w, (2, 16, 16), chunks=8, padding=1)
    computed = []

    def counted(block):
        computed.append(block.shape)
        return block

    xn = rng.standard_normal((2, 16, 16))
    yn = rng.standard_normal((3, 16, 16))
    x = da.from_array(xn, chunks=(2, 8, 8)).map_blocks(counted, meta=np.empty((0,) * 3))
    y = da.from_array(yn, chunks=(3, 8, 8)).map_blocks(counted, meta=np.empty((0,) * 3))
    xf, yf = xn.ravel(), yn.ravel()
    cases = {
        "A.T @ y": (lambda: A.T @ y, S.T @ yf),
        "A.T.H @ x": (lambda: A.T.H @ x, S.T.H @ xf),
        "(2 * A) @ x": (lambda: (2 * A) @ x, 2 * (S @ xf)),
        "(A * 2j).matvec(x)": (lambda: (A * 2j).matvec(x), 2j * (S @ xf)),
        "(A + A - A) @ x": (lambda: (A + A - A) @ x, S @ xf),
        "(-A) @ x": (lambda: (-A) @ x, -(S @ xf)),
        "(A.H @ A).matvec(x)": (lambda: (A.H @ A).matvec(x), S.H @ (S @ xf)),
        "(A.H @ A).H @ x": (lambda: (A.H @ A).H @ x, S.H @ (S @ xf)),
        "(A @ A.H).T @ y": (lambda: (A @ A.H).T @ y, (S @ S.H).T @ yf),
        "((A.H @ A) ** 2) @ x": (lambda: ((A.H @ A) ** 2) @ x, S.H @ (S @ (S.H @ (S @ xf)))),
        # (a new user's trial: y @ A went through scipy's np.asarray, computed on the client)
        "y.ravel() @ A": (lambda: y.reshape(-1) @ A, S.T @ yf),
        # (a second trial: A / 2 was scipy's own composite, computed on the client)
        "(A / 2) @ x": (lambda: (A / 2) @ x, S @ xf / 2),
        "(A.H / 4j).matvec(y.ravel())": (lambda: (A.H / 4j).matvec(y.reshape(-1)),
                                         S.H @ yf / 4j),
    }
    for name, (product, expected) in cases.items():
        computed.clear()
        result = product()
        assert isinstance(result, da.Array) and not computed, name
        assert_close(result.compute().ravel(), expected, name)
    # numpy in, numpy out, through scipy as before
    assert_close((A.H @ A).matvec(xf), S.H @ (S @ xf), "numpy")
    assert_close((2 * A).matmat(np.stack([xf, xf], 1)), 2 * (S @ np.stack([xf, xf], 1)), "mm")


def test_what_the_lazy_algebra_cannot_take_is_refused_by_name(tmp_path):
    """A new user's trial: scipy's bare "dimension mismatch" for an image through a sum with
    scipy's own operator, ``Y @ A`` for rows of a Dask array computed on the client, numpy's
    "setting an array element with a sequence" from zarr for the matrix's sparse row blocks,
    and an integer dtype the folded entries overflow refused only when a block was built."""
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    A = sdask.ConvOperator(w, (2, 16, 16), chunks=8, padding=1, stride=2)
    damped = A.H @ A + 0.5 * spla.aslinearoperator(np.eye(512))
    image = da.ones((2, 16, 16), chunks=(2, 8, 8))
    with pytest.raises(ValueError, match=r"holds operators other than sparseconv.dask's: "
                       r"scipy's take flat vectors only .* pass x flat, x.reshape\(-1\) "
                       r"\(shape \(512,\)\), got shape \(2, 16, 16\)"):
        damped @ image
    S = sc.ConvOperator(w, (2, 16, 16), padding=1, stride=2)  # the way the message gives
    assert_close((damped @ image.reshape(-1)).compute(), S.H @ (S @ np.ones(512)) + 0.5,
                 "flat")
    with pytest.raises(ValueError, match=r"x @ A takes a 1-D Dask array x .* got shape "
                       r"\(2, 192\)"):
        da.ones((2, 192), chunks=64) @ A
    M = sdask.conv_matrix(np.ones((4, 2, 3, 3)), (2, 20, 20), block_rows=150)
    with pytest.raises(TypeError, match=r"^x's chunks are scipy.sparse matrices .* densify them "
                       r"first, x.map_blocks\(lambda block: block.toarray\(\)"):
        sdask.to_zarr(M, tmp_path / "m.zarr")
    dense = M.map_blocks(lambda block: block.toarray(), dtype=M.dtype,
                         meta=np.empty((0, 0), M.dtype))
    sdask.to_zarr(dense, tmp_path / "m.zarr")  # the way the message gives
    assert_close(da.from_zarr(str(tmp_path / "m.zarr")).compute().ravel(),
                 sc.conv_matrix(np.ones((4, 2, 3, 3)), (2, 20, 20)).toarray().ravel(), "zarr")
    with pytest.raises(TypeError, match=r"^dtype=int8 cannot hold the matrix's entries"):
        sdask.conv_matrix(np.full((1, 1, 3, 3), 100), (1, 8, 8), padding=1,
                          padding_mode="reflect", dtype=np.int8)


def test_empty_batches_pass_through():
    """A trial: a batch of 0 (``(0, *input_shape)``, or ``(n, 0)`` columns) raised a reshape
    error in the Dask operators and in the serial ``apply``; scipy returns ``(m, 0)``."""
    w = np.ones((3, 2, 3, 3))
    S = sc.ConvOperator(w, (2, 8, 8), padding=1)
    A = sdask.ConvOperator(w, (2, 8, 8), chunks=4, padding=1)
    assert A.matmat(np.zeros((128, 0))).shape == (192, 0)
    assert A.rmatmat(np.zeros((192, 0))).shape == (128, 0)
    empty = da.zeros((0, 2, 8, 8), chunks=(1, 2, 4, 4))
    assert A.matvec(empty).compute().shape == (0, 3, 8, 8)
    assert A.rmatvec(A.matvec(empty)).compute().shape == (0, 2, 8, 8)
    assert S.apply(np.zeros((0, 2, 8, 8))).shape == (0, 3, 8, 8)
    assert S.apply_adjoint(np.zeros((0, 3, 8, 8))).shape == (0, 2, 8, 8)


def test_the_block_operator_cache_is_shared_by_threads_safely():
    """A trial: with Dask's threaded scheduler and more block shapes than the cache holds, its
    eviction without a lock raised KeyError ("dictionary changed size during iteration") and
    let it grow past its bound."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 2, 3, 3))
    chunks = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)  # 121 block shapes > the 64 cached
    shape = (2, sum(chunks), sum(chunks))
    A = sdask.ConvOperator(w, shape, chunks=(chunks, chunks), padding=1, padding_mode="reflect")
    S = sc.ConvOperator(w, shape, padding=1, padding_mode="reflect")
    xn = rng.standard_normal(shape)
    x = da.from_array(xn, chunks=(2, chunks, chunks))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race shows
    try:
        y, u = dask.compute(A.matvec(x), A.rmatvec(A.matvec(x)), scheduler="threads",
                            num_workers=8)
    finally:
        sys.setswitchinterval(interval)
    assert len(_dask_graph._OPERATORS) <= _dask_graph._CACHED
    assert_close(y.ravel(), S @ xn.ravel(), "threads")
    assert_close(u.ravel(), S.H @ (S @ xn.ravel()), "threads adjoint")


@pytest.mark.parametrize(("stride", "padding", "mode"), [(1, 32, "zeros"), (2, 13, "zeros"),
                                                         (1, (3, 20), "circular"),
                                                         (3, 7, "replicate")])
def test_outputs_past_the_input_come_in_blocks_of_a_chunks_size(stride, padding, mode):
    """A trial: every output past the input went to the last block (padding 32 on chunks of 8:
    one block of 70 outputs per axis, 670 times a chunk in 3-D), against the promise of
    memory by the chunk. They are cut into blocks no longer than a chunk's outputs now."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((2, 2, 3, 3))
    pads = padding if isinstance(padding, int) else (padding, (1, 1))
    if mode == "circular":
        size = (2, 24, 24)
    else:
        size = (2, 64, 24)
    S = sc.ConvOperator(w, size, stride=stride, padding=pads, padding_mode=mode)
    A = sdask.ConvOperator(w, size, chunks=8, stride=stride, padding=pads, padding_mode=mode)
    assert_stride_aligned(A, False, (stride, padding))
    assert max(max(c) for c in A.output_chunks) <= -(-8 // stride)
    x = rng.standard_normal(size)
    assert_close(A.matvec(da.from_array(x, chunks=8)).compute().ravel(), S @ x.ravel(), "fwd")
    y = rng.standard_normal(S.output_shape)
    assert_close(A.rmatvec(da.from_array(y, chunks=-1)).compute().ravel(),
                 S.H @ y.ravel(), "adjoint")


def test_transposed_layers_take_output_size():
    """A trial: the serial ConvTransposeOperator takes ``output_size=`` (PyTorch's call-time
    argument), its Dask twin and ``conv_transpose`` did not."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 2, 3, 3))
    x = rng.standard_normal((3, 7, 6))
    for size in [(13, 11), (14, 12), (14, 11)]:
        S = sc.ConvTransposeOperator(w, (3, 7, 6), stride=2, padding=1, output_size=size)
        T = sdask.ConvTransposeOperator(w, (3, 7, 6), chunks=4, stride=2, padding=1,
                                        output_size=size)
        assert T.output_shape == S.output_shape == (2, *size)
        xd = da.from_array(x, chunks=(3, 4, 4))
        assert_close(T.matvec(xd).compute().ravel(), S @ x.ravel(), size)
        y = sdask.conv_transpose(xd, w, stride=2, padding=1, output_size=size)
        assert_close(y.compute().ravel(), S @ x.ravel(), ("conv_transpose", size))
    with pytest.raises(ValueError, match="output_size"):
        sdask.ConvTransposeOperator(w, (3, 7, 6), chunks=4, stride=2, padding=1,
                                    output_size=(20, 11))


def test_a_column_of_an_input_shape_n_by_1_is_a_column():
    """A review: with input_shape (N, 1), the numpy column (N, 1) was read as an image and
    A @ x gave (2, 3) where the serial operator (and scipy's contract) give (6, 1)."""
    w = np.random.default_rng(0).standard_normal((2, 4, 1))
    serial = sc.ConvOperator(w, (4, 1), padding=1)
    A = sdask.ConvOperator(w, (4, 1), chunks=1, padding=1)
    x = np.arange(4.0).reshape(4, 1)
    for result in (A @ x, A.matmat(x), A.dot(x)):
        assert result.shape == (6, 1)
        np.testing.assert_allclose(result, serial @ x, rtol=1e-14)
    np.testing.assert_allclose(A.H @ (serial @ x), serial.H @ (serial @ x), rtol=1e-14)


def test_dask_columns_are_taken_as_numpy_columns_are():
    """A new user's trial: A.matmat of a (200, 3) Dask array, scipy's matmat form, was
    refused where the numpy array worked; matvec of a (200, 1) Dask column too. Both are
    columns now, lazily, equal to the serial operator's."""
    w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    serial = sc.ConvOperator(w, (2, 10, 10), padding=1)
    A = sdask.ConvOperator(w, (2, 10, 10), chunks=5, padding=1)
    X = np.random.default_rng(1).standard_normal((200, 3))
    for product, theirs in ((A.matmat(da.from_array(X, chunks=(50, 2))), serial @ X),
                            (A.matvec(da.from_array(X[:, :1])), serial @ X[:, :1]),
                            (A.rmatmat(da.from_array(serial @ X)), serial.H @ (serial @ X))):
        assert isinstance(product, da.Array) and product.shape == theirs.shape
        np.testing.assert_allclose(product.compute(), theirs, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("transposed", [False, True])
def test_a_chunk_too_large_for_its_operator_is_refused_when_the_graph_is_built(
        transposed, memory_limit):
    """(A memory audit: sd.conv returned its graph; each task then refused its chunk.)"""
    import dask.array as da

    w = np.ones((16, 16, 3, 3))
    x = da.ones((16, 256, 256), chunks=(16, 256, 256))
    call = sdask.conv_transpose if transposed else sdask.conv
    memory_limit(8 * 2**20)
    with pytest.raises(sc.MatrixTooLargeError, match="use smaller chunks.*for one column"):
        call(x, w, padding=1)
    y = call(x.rechunk((16, 32, 32)), w, padding=1).compute()  # small chunks fit
    # ones through ones: 16 channels x 9 taps inside, 16 x 6 on an edge, 16 x 4 at a corner
    assert (y[:, 1:-1, 1:-1] == 144).all() and (y[:, 0, 1:-1] == 96).all()
    assert (y[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 64).all()
    # the operators at construction, as the serial ones (a new user's trial: refused only
    # at the first product)
    Operator = sdask.ConvTransposeOperator if transposed else sdask.ConvOperator
    with pytest.raises(sc.MatrixTooLargeError, match="use smaller chunks.*for one column"):
        Operator(w, (16, 256, 256), chunks=256, padding=1)
    Operator(w, (16, 256, 256), chunks=32, padding=1)


@pytest.mark.parametrize("transposed", [False, True])
def test_a_chunk_built_before_the_limit_was_lowered_is_refused_after(transposed,
                                                                     memory_limit):
    """A new user's trial: the layer built once under the default limit, then again under a
    lower one, passed (its block operator came from the cache, sized under the old limit),
    and its tasks failed."""
    w = np.ones((16, 16, 3, 3))
    Operator = sdask.ConvTransposeOperator if transposed else sdask.ConvOperator
    Operator(w, (16, 256, 256), chunks=256, padding=1)
    memory_limit(8 * 2**20)
    with pytest.raises(sc.MatrixTooLargeError, match="use smaller chunks"):
        Operator(w, (16, 256, 256), chunks=256, padding=1)


@pytest.mark.parametrize("adjoint", [False, True])
def test_dask_columns_may_be_none(adjoint):
    """A new user's trial: A.matmat of a (200, 0) Dask array raised ZeroDivisionError inside
    Dask's reshape; the numpy one gave (300, 0)."""
    A = sdask.ConvOperator(np.ones((3, 2, 3, 3)), (2, 10, 10), chunks=4, padding=1)
    n, m = (300, 200) if adjoint else (200, 300)
    result = (A.rmatmat if adjoint else A.matmat)(da.ones((n, 0), dtype=np.float32))
    assert isinstance(result, da.Array) and result.shape == (m, 0)
    assert result.dtype == np.float64 and result.compute().shape == (m, 0)


def test_the_transposed_twin_takes_padding_mode():
    """A new user's trial: sparseconv.ConvTransposeOperator takes padding_mode (PyTorch's
    ConvTranspose*d's "zeros"), its Dask twin refused the keyword."""
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    x = da.from_array(np.random.default_rng(1).standard_normal((4, 8, 8)), chunks=(4, 4, 4))
    y = sdask.conv_transpose(x, w, stride=2, padding_mode="zeros")
    T = sc.ConvTransposeOperator(w, (4, 8, 8), stride=2, padding_mode="zeros")
    np.testing.assert_allclose(y.compute().ravel(), T @ x.compute().ravel(), rtol=1e-13)
    assert sdask.ConvTransposeOperator(w, (4, 8, 8), chunks=4, stride=2,
                                       padding_mode="zeros").shape == (
        T.shape)
    with pytest.raises(ValueError, match="padding_mode must be 'zeros'"):
        sdask.ConvTransposeOperator(w, (4, 8, 8), chunks=4, padding_mode="reflect")


def test_a_batch_of_unknown_chunk_sizes_is_refused_with_the_fix():
    """(A new user's trial: x[mask] has chunks of unknown size; the convolution failed inside
    a task, "'float' object cannot be interpreted as an integer", after blocks had run.)"""
    x = da.random.default_rng(0).standard_normal((5, 2, 16, 16), chunks=(2, 2, 8, 8))
    x = x[x[:, 0, 0, 0] > -100]
    w = np.ones((4, 2, 3, 3))
    for call in (lambda: sdask.conv(x, w, padding=1),
                 lambda: sdask.ConvOperator(w, (2, 16, 16), chunks=8, padding=1).matvec(x)):
        with pytest.raises(ValueError, match=r"unknown size .*compute_chunk_sizes\(\)"):
            call()
    x.compute_chunk_sizes()
    assert_close(sdask.conv(x, w, padding=1).compute(),
                 sdask.conv(x.rechunk((5, 2, 8, 8)), w, padding=1).compute(), "known")


def test_a_dask_weight_is_computed_once_when_the_graph_is_built():
    """(A new user's trial: a lazy weight was computed 2-3 times by each call.)"""
    rng = np.random.default_rng(4)
    wn = rng.standard_normal((4, 2, 3, 3))
    computed = []

    def counted(block):
        computed.append(block.shape)
        return block

    w = da.from_array(wn, chunks=(2, 2, 3, 3)).map_blocks(counted, meta=np.empty((0,) * 4))
    x = da.from_array(rng.standard_normal((2, 16, 16)), chunks=(2, 8, 8))
    z = da.from_array(rng.standard_normal((4, 16, 16)), chunks=(4, 8, 8))
    for call, serial in [
            (lambda: sdask.conv(x, w, padding=1), lambda: sdask.conv(x, wn, padding=1)),
            (lambda: sdask.conv_transpose(z, w, padding=1),
             lambda: sdask.conv_transpose(z, wn, padding=1)),
            (lambda: sdask.conv_matrix(w, (2, 16, 16), block_rows=300),
             lambda: sdask.conv_matrix(wn, (2, 16, 16), block_rows=300))]:
        computed.clear()
        result = call()
        assert len(computed) == 2, computed  # its two blocks, once each
        computed.clear()
        expected = serial().compute()
        got = result.compute()
        assert not computed  # nothing of the weight is left in the graph to compute
        if hasattr(got, "toarray"):
            got, expected = got.toarray(), expected.toarray()
        assert_close(got, expected, "dask weight")


def test_a_matrix_beyond_int64_is_refused_as_sparseconv_refuses_it():
    """(A new user's trial: the default block_rows, the output's positions, was blamed as if
    passed: "block_rows must be a positive integer at most 2**60 ..., got 15999999984000000004".)
    The matrix's size is named, as by sparseconv.conv_matrix."""
    w, shape = np.ones((4, 3, 3, 3)), (3, 4_000_000_000, 4_000_000_000)
    with pytest.raises(ValueError, match="int64 indices can address") as theirs:
        sc.conv_matrix(w, shape)
    with pytest.raises(ValueError, match="int64 indices can address") as ours:
        sdask.conv_matrix(w, shape)
    assert str(ours.value) == str(theirs.value)


def test_to_zarr_names_its_target_as_dask_does(tmp_path):
    """A new user's trial: to_zarr(y, url=...) (dask.array.to_zarr's name) failed with
    "missing 1 required positional argument: 'store'"."""
    pytest.importorskip("zarr")
    import zarr

    y = sdask.conv(da.ones((1, 8, 8), chunks=(1, 4, 4)), np.ones((1, 1, 3, 3)), padding=1)
    sdask.to_zarr(y, url=str(tmp_path / "y.zarr"))
    assert float(zarr.open(str(tmp_path / "y.zarr"), mode="r")[:].sum()) == float(
        y.sum().compute())


def test_to_zarr_refuses_no_target_and_flags_that_are_no_bools(tmp_path):
    """A review: url=None wrote to a throw-away store in memory, compute='no' computed (a
    non-empty string is true) and overwrite='yes' was taken; an int url got zarr's message,
    which does not name it."""
    y = sdask.conv(da.ones((1, 8, 8), chunks=(1, 4, 4)), np.ones((1, 1, 3, 3)), padding=1)
    for url in (None, 5, True):
        with pytest.raises(TypeError, match=rf"^url must be a path, a URL or a zarr store, "
                           rf"got {url!r}$"):
            sdask.to_zarr(y, url)
    target = str(tmp_path / "y.zarr")
    with pytest.raises(TypeError, match="compute must be a bool, got 'no'"):
        sdask.to_zarr(y, target, compute="no")
    with pytest.raises(TypeError, match="overwrite must be a bool, got 'yes'"):
        sdask.to_zarr(y, target, overwrite="yes")
    assert not (tmp_path / "y.zarr").exists()


def test_matmul_refuses_a_scalar_as_scipy_does():
    """A review: A @ 2.0 returned the operator scaled by 2 (scipy, and sparseconv's own
    ConvOperator, refuse it: '*' scales); A.dot(2.0) and 2.0 * A scale, as in scipy."""
    w = np.ones((3, 2, 3, 3))
    theirs = sc.ConvOperator(w, (2, 8, 8))
    ours = sdask.ConvOperator(w, (2, 8, 8), chunks=4)
    for op in (theirs, ours, ours.T, 2 * ours):
        with pytest.raises(ValueError, match=r"^Scalar operands are not allowed, use '\*'"):
            op @ 2.0
    x = np.random.default_rng(0).standard_normal(ours.shape[1])
    assert np.allclose(ours.dot(2.0) @ x, 2 * (theirs @ x))


class TestManyChunks:
    """A review: on 10**5 x 10**5 positions in chunks of 8 the operator ran past 120 s before
    anything (each output block's plan looked at every input chunk), and a product's graph of
    10**8 blocks was made until memory ran out. The plan reads only the chunks a window
    reaches; a product's graph is sized against the memory limit before Dask slices x."""

    def test_a_fine_chunking_is_planned_at_once_and_its_product_refused(self):
        import time

        w = np.ones((3, 2, 3, 3))
        start = time.perf_counter()
        op = sdask.ConvOperator(w, (2, 10**5, 10**5), chunks=8)
        assert time.perf_counter() - start < 20  # (0.6 s measured)
        assert len(op.output_chunks[0]) == 12_500
        x = da.ones((2, 10**5, 10**5), chunks=(2, 8, 8))
        for product, what in ((op.matvec, "product"), (op.rmatvec, "adjoint product")):
            with pytest.raises(sc.MatrixTooLargeError, match=rf"^the Dask graph of the {what} "
                               r"\(\d+ tasks: the layer's 156250000 input and 156250000 output "
                               r"chunks, for each of 1 chunk\(s\) along x's batch axis\).*use "
                               r"larger chunks \(the operator's chunks=, or x's along its batch"):
                product(x)

    def test_the_refusal_speaks_of_a_transposed_layer_s_own_product(self, memory_limit):
        """A review: a transposed layer's forward product (a scatter of the geometry) was
        called the adjoint product, and its input and output chunks were swapped."""
        t = sdask.ConvTransposeOperator(np.ones((2, 3, 3, 3)), (2, 64, 64), chunks=8, stride=2,
                                        padding=1, output_padding=1)
        memory_limit(200_000)
        with pytest.raises(sc.MatrixTooLargeError, match=r"^the Dask graph of the product \(\d+ "
                           r"tasks: the layer's 64 input and 64 output chunks, for each of 4 "):
            t.matmat(da.zeros((4, 2, 64, 64), chunks=(1, 2, 64, 64)))
        with pytest.raises(sc.MatrixTooLargeError, match=r"^the Dask graph of the adjoint product "
                           r"\(\d+ tasks: the layer's 64 input and 64 output chunks"):
            t.rmatmat(da.zeros((4, 3, 128, 128), chunks=(1, 3, 128, 128)))

    @pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
    def test_the_graph_is_the_size_counted(self, padding_mode, monkeypatch):
        from sparseconv import _dask_graph

        counted = []
        real = _dask_graph._Plan.check_graph

        def count(plan, batches, adjoint, transposed):
            pieces = math.prod(sum(len(found) for found in p.reads) for p in plan.axes)
            blocks = math.prod(len(p.out_chunks) for p in plan.axes)
            chunks = math.prod(len(p.in_chunks) for p in plan.axes)
            scatter = adjoint != transposed
            counted.append(batches * (pieces + blocks + (chunks if scatter else 0)))
            return real(plan, batches, adjoint, transposed)

        monkeypatch.setattr(_dask_graph._Plan, "check_graph", count)
        op = sdask.ConvOperator(np.ones((3, 2, 3, 3)), (2, 40, 36), chunks=(8, 12), padding=1,
                                padding_mode=padding_mode)
        x = da.ones((3, 2, 40, 36), chunks=(2, 2, 8, 12))
        y = op @ x
        z = op.H @ y
        for result, tasks, names in ((y, counted[0], ("sparseconv-gather",)),
                                     (z, counted[1], ("sparseconv-scatter", "sparseconv-window"))):
            ours = [k for k in result.__dask_graph__()
                    if isinstance(k, tuple) and k[0].startswith(names)]
            assert len(ours) == tasks


def _dense(weight, shape, transposed=False, **kwargs):
    """The layer's dense matrix (the in-memory operator's)."""
    if transposed:
        return sc.conv_transpose_matrix(weight, shape, **kwargs).toarray()
    return sc.conv_matrix(weight, shape, **kwargs).toarray()


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_dask_conv_on_chunks_of_one_and_sizes_not_multiples(mode):
    """Mutants this catches: _dask_graph.py: the chunk search reading ``src > 0`` (a first
    chunk of one position was dropped), ``searchsorted(side="left")`` (a chunk whose first
    position alone is read was dropped), runs merged by a wrong step, the window zeroed by
    ``np.empty``; _dask_layer.py: the input not rechunked to the plan. Forward and adjoint
    against the dense matrix, on chunks (1, 4, 2) and (3, 1, 3) of a 7 x 7 input."""
    rng = np.random.default_rng(19)
    w = rng.standard_normal((3, 2, 2, 3))
    kw = dict(stride=(1, 2), padding=((1, 0), (2, 1)), dilation=(2, 1), padding_mode=mode)
    A = _dense(w, (2, 7, 7), **kw)
    op = sdask.ConvOperator(w, (2, 7, 7), chunks=((1, 4, 2), (3, 1, 3)), **kw)
    x = rng.standard_normal((2, 2, 7, 7))
    y = op.matvec(da.from_array(x, chunks=(1, 2, 2, 5))).compute()
    np.testing.assert_allclose(y.reshape(2, -1), x.reshape(2, -1) @ A.T, rtol=1e-12,
                               atol=1e-12)
    v = rng.standard_normal((2, *op.output_shape))
    u = op.rmatvec(da.from_array(v, chunks=(2, 3, 1, 2))).compute()
    np.testing.assert_allclose(u.reshape(2, -1), v.reshape(2, -1) @ A, rtol=1e-12, atol=1e-12)


def test_dask_conv_transpose_on_chunks_of_one():
    """Mutants this catches: _dask_layer.py: the transposed layer's input not chunked at the
    plan's output blocks; _dask_graph.py: the scatter's sums (``+=`` -> ``=``), the
    windows' bounding boxes. Both products against the dense matrix of
    ``conv_transpose_matrix``, chunks (1, 2, 2) with stride 2, dilation 2, groups 2."""
    rng = np.random.default_rng(20)
    w = rng.standard_normal((4, 1, 3, 2))
    kw = dict(stride=2, padding=(1, 0), output_padding=1, dilation=(2, 1), groups=2)
    A = _dense(w, (4, 5, 4), transposed=True, **kw)
    op = sdask.ConvTransposeOperator(w, (4, 5, 4), chunks=((1, 2, 2), (1, 3)), **kw)
    x = rng.standard_normal((4, 5, 4))
    y = op.matvec(da.from_array(x, chunks=(4, 2, 3))).compute()
    np.testing.assert_allclose(y.ravel(), A @ x.ravel(), rtol=1e-12, atol=1e-12)
    v = rng.standard_normal(op.output_shape)
    u = op.rmatvec(da.from_array(v, chunks=(2, 3, 5))).compute()
    np.testing.assert_allclose(u.ravel(), A.T @ v.ravel(), rtol=1e-12, atol=1e-12)


def test_dask_layers_of_one_shape_keep_their_own_weights():
    """Mutants this catches: _dask_graph.py: the block operators cached without the layer's
    token (a second layer of the same shapes reused the first's weights), the gather's or
    scatter's task names without the layer's token (two layers in one graph shared their
    blocks). Oracle: the two dense matrices."""
    rng = np.random.default_rng(21)
    w1, w2 = rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 2, 3))
    A1, A2 = (_dense(w, (2, 9), padding=1) for w in (w1, w2))
    ops = [sdask.ConvOperator(w, (2, 9), chunks=4, padding=1) for w in (w1, w2)]
    xn = rng.standard_normal((2, 9))
    x = da.from_array(xn, chunks=(2, 4))
    forward = (ops[0].matvec(x) - ops[1].matvec(x)).compute()
    np.testing.assert_allclose(forward.ravel(), (A1 - A2) @ xn.ravel(), rtol=1e-12, atol=1e-12)
    adjoint = (ops[0].rmatvec(x) - ops[1].rmatvec(x)).compute()
    np.testing.assert_allclose(adjoint.ravel(), (A1 - A2).T @ xn.ravel(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(ops[1].matvec(x).compute().ravel(), A2 @ xn.ravel(),
                               rtol=1e-12, atol=1e-12)


def test_dask_algebra_of_a_complex_layer_keeps_its_conjugations():
    """Mutants this catches: _dask_layer.py: ``A.T`` as ``A.H`` for a complex layer;
    _dask_lazy.py: ``(A ** k)``'s adjoint or ``rmatvec`` as its forward product, a
    composite's ``rmatvec``/``rmatmat`` as its ``matvec``, a composite's ``.T`` as ``.H``,
    ``.H`` as itself, ``x @ A`` as ``A.H @ x``. Oracle: the dense complex matrix."""
    rng = np.random.default_rng(22)
    w = rng.standard_normal((2, 2, 3)) + 1j * rng.standard_normal((2, 2, 3))
    kw = dict(padding=1, padding_mode="circular")
    A = _dense(w, (2, 7), **kw)
    op = sdask.ConvOperator(w, (2, 7), chunks=3, **kw)
    xn = rng.standard_normal(14) + 1j * rng.standard_normal(14)
    x = da.from_array(xn, chunks=5)
    cols = np.stack([xn, 2j * xn], axis=1)
    H = A.conj().T
    cases = {
        "A.T": (op.T.matvec(x), A.T @ xn),
        "x @ A": (x @ op, xn @ A),
        "x @ 2A": (x @ (2 * op), 2 * xn @ A),
        "(A**2).H": ((op ** 2).H.matvec(x), H @ H @ xn),
        "(A**2).rmatvec": ((op ** 2).rmatvec(x), H @ H @ xn),
        "(2A).T": ((2 * op).T.matvec(x), 2 * A.T @ xn),
        "(2A).H": ((2 * op).H.matvec(x), 2 * H @ xn),
        "(A + A.T).rmatvec": ((op + op.T).rmatvec(x), (A + A.T).conj().T @ xn),
        "(A @ A).rmatmat": ((op @ op).rmatmat(da.from_array(cols, chunks=4)),
                            (A @ A).conj().T @ cols),
        "(A**2).T": ((op ** 2).T.matvec(x), (A @ A).T @ xn),
    }
    for name, (got, expected) in cases.items():
        np.testing.assert_allclose(got.compute(), expected, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


@requires_torch
def test_dask_layers_take_flip_dilation_and_torchs_defaults():
    """Mutants this catches: dask.py: ``flip`` or ``dilation`` left out of a layer's block
    keywords, ``flip`` defaulting to True. Oracles: torch's conv1d (the kernel flipped by
    hand) and conv_transpose1d."""
    rng = np.random.default_rng(23)
    w = rng.standard_normal((2, 3, 4))
    xn = rng.standard_normal((3, 11))
    x = da.from_array(xn, chunks=(3, 4))
    t = torch.from_numpy
    plain = sdask.conv(x, w, padding=2, dilation=2).compute()
    np.testing.assert_allclose(plain, F.conv1d(t(xn)[None], t(w), padding=2,
                                               dilation=2)[0].numpy(), rtol=1e-12, atol=1e-12)
    flipped = sdask.ConvOperator(w, xn.shape, chunks=4, padding=2, dilation=2, flip=True)
    ref = F.conv1d(t(xn)[None], t(w[..., ::-1].copy()), padding=2, dilation=2)[0].numpy()
    np.testing.assert_allclose(flipped.matvec(x).compute(), ref, rtol=1e-12, atol=1e-12)
    wt = rng.standard_normal((3, 2, 3))
    yt = sdask.conv_transpose(x, wt, stride=2, padding=1, dilation=3).compute()
    ref = F.conv_transpose1d(t(xn)[None], t(wt), stride=2, padding=1, dilation=3)[0].numpy()
    np.testing.assert_allclose(yt, ref, rtol=1e-12, atol=1e-12)


def test_dask_numpy_columns_and_result_dtype():
    """Mutants this catches: _dask_layer.py: numpy columns ``(n, k)`` reshaped without the
    transpose back (columns scrambled), the result's dtype the operator's instead of
    numpy's promotion with the input's (float64 data through a float32 layer)."""
    rng = np.random.default_rng(24)
    w = rng.standard_normal((3, 2, 3))
    A = _dense(w, (2, 8), padding=1)
    op = sdask.ConvOperator(w, (2, 8), chunks=3, padding=1)
    cols = rng.standard_normal((16, 3))
    np.testing.assert_allclose(op.matmat(cols), A @ cols, rtol=1e-12, atol=1e-12)
    back = rng.standard_normal((24, 2))
    np.testing.assert_allclose(op.rmatmat(back), A.T @ back, rtol=1e-12, atol=1e-12)
    op32 = sdask.ConvOperator(w, (2, 8), chunks=3, padding=1, dtype=np.float32)
    y = op32.matvec(da.from_array(cols[:, 0].reshape(2, 8), chunks=(2, 3)))
    assert y.dtype == np.float64 and y.compute().dtype == np.float64


def test_dask_conv_matrix_keeps_a_last_block_of_one_row():
    """A mutant this catches: dask.py: ``range(0, n_rows, block_rows)`` ->
    ``range(0, n_rows - 1, block_rows)`` (a last block of one row was dropped). 2 x 7 = 14
    rows in blocks of 13: (13, 1). Oracle: the dense matrix."""
    w = np.random.default_rng(25).standard_normal((2, 2, 3))
    M = sdask.conv_matrix(w, (2, 7), padding=1, padding_mode="reflect", block_rows=13)
    assert M.chunks[0] == (13, 1)
    np.testing.assert_allclose(M.compute().toarray(),
                               _dense(w, (2, 7), padding=1, padding_mode="reflect"), rtol=0,
                               atol=0)


def test_to_zarr_rechunks_to_the_largest_chunk(tmp_path):
    """Mutants this catches: dask.py: the documented rechunk "to its largest chunk per axis"
    taken from the first chunk, or skipped for a last chunk larger than the first. A 9-long
    axis in chunks (4, 5) is written in chunks of 5."""
    zarr = pytest.importorskip("zarr")
    x = da.from_array(np.arange(18.0).reshape(2, 9), chunks=((2,), (4, 5)))
    sdask.to_zarr(x, str(tmp_path / "x.zarr"))
    z = zarr.open(str(tmp_path / "x.zarr"), mode="r")
    assert tuple(z.chunks) == (2, 5)
    np.testing.assert_array_equal(z[...], np.arange(18.0).reshape(2, 9))


def test_dask_runs_merge_reflected_positions_into_one_run():
    """A mutant this catches: _dask_graph.py: ``abs(local - l0) == 1`` -> ``local - l0 ==
    1`` (a reflected halo, positions 2, 1 then 0 1 2 ..., copied one position at a time:
    many more copies, the same numbers), and ``local == l0 + step * length`` -> ``local ==
    l0 + length`` (a decreasing run continued upwards: 5, 4 then 7 copied 5, 4, 3). The
    runs of a reflect-padded window, and of a source that turns."""
    graph = pytest.importorskip("sparseconv._dask_graph")
    src = np.array([2, 1, 0, 1, 2, 3, 4, -1])
    assert graph._runs(src, 0, 5) == [(0, 3, 2, -1), (3, 7, 1, 1)]
    assert graph._runs(src, 3, 5) == [(5, 7, 0, 1)]
    assert graph._runs(np.array([5, 4, 7]), 0, 8) == [(0, 2, 5, -1), (2, 3, 7, 1)]


@requires_torch
def test_dask_reflect_halo_ending_one_before_the_chunk_start():
    """A mutant this catches: _dask_graph.py: ``None if stop < 0 else stop`` -> ``None if
    stop <= 0 else stop`` (a reflected run ending at chunk-local 1 also copied position 0:
    a broadcast error on a valid layer). Kernel 5, reflect padding 2, chunks of 4: the last
    chunk's window reflects positions 6, 5. Oracles: torch's reflect conv1d, and the dense
    matrix for the adjoint."""
    rng = np.random.default_rng(29)
    w, xn = rng.standard_normal((2, 1, 5)), rng.standard_normal((1, 8))
    op = sdask.ConvOperator(w, (1, 8), chunks=4, padding=2, padding_mode="reflect")
    y = op.matvec(da.from_array(xn, chunks=(1, 4))).compute()
    t = torch.from_numpy
    ref = F.conv1d(F.pad(t(xn)[None], (2, 2), mode="reflect"), t(w))[0].numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    A = _dense(w, (1, 8), padding=2, padding_mode="reflect")
    v = rng.standard_normal((2, 8))
    u = op.rmatvec(da.from_array(v, chunks=(2, 4))).compute()
    np.testing.assert_allclose(u.ravel(), A.T @ v.ravel(), rtol=1e-12, atol=1e-12)


def _no_scheduler(*args, **kwargs):
    raise AssertionError("a Dask graph was computed")


@pytest.mark.parametrize("transposed", [False, True])
def test_a_numpy_product_runs_the_serial_operator_where_it_fits(transposed, memory_limit):
    """A new user's trial: a product of a numpy array went through a Dask graph of every
    chunk, 51 ms for a 2->2 layer on 12^3 where the serial operator takes 0.1 ms (30 lsqr
    steps: 64 s). Where the whole layer's serial operator and product fit the memory limit
    they run it, with no graph, in every form (flat, shaped, a batch, columns, the adjoint),
    equal to the chunks' product; where not, the chunks run as before."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((2, 2, 3, 3, 3))
    if transposed:
        A = sdask.ConvTransposeOperator(w, (2, 6, 6, 6), chunks=3, stride=2, padding=1,
                                        output_size=(12, 12, 12))
        S = sc.ConvTransposeOperator(w, (2, 6, 6, 6), stride=2, padding=1,
                                     output_size=(12, 12, 12))
    else:
        A = sdask.ConvOperator(w, (2, 12, 12, 12), chunks=4, padding=1, stride=2,
                               padding_mode="reflect")
        S = sc.ConvOperator(w, (2, 12, 12, 12), padding=1, stride=2, padding_mode="reflect")
    x, y = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
    chunked = A.matvec(da.from_array(x, chunks=-1)).compute()
    with dask.config.set(scheduler=_no_scheduler):
        assert_close(A.matvec(x), chunked, "flat")
        assert_close(A.matvec(x.reshape(A.input_shape)).ravel(), chunked, "shaped")
        assert A.matvec(x.reshape(A.input_shape)).shape == A.output_shape
        assert_close(A.matvec(x.reshape(1, *A.input_shape)).ravel(), chunked, "batch")
        assert_close(A.matmat(np.stack([x, 2 * x], 1)), np.stack([chunked, 2 * chunked], 1),
                     "columns")
        assert_close(A.rmatvec(y), S.rmatvec(y), "adjoint")
        assert A.matvec(x.astype(np.complex128)).dtype == np.complex128
    # a layer whose serial operator is beyond the limit, its chunks within it: the chunks
    B = sdask.ConvOperator(w, (2, 12, 12, 12), chunks=4, padding=1)
    x = rng.standard_normal(B.shape[1])
    expected = sc.ConvOperator(w, (2, 12, 12, 12), padding=1) @ x
    memory_limit(6 * 10**5)
    with dask.config.set(scheduler=_no_scheduler), pytest.raises(AssertionError, match="Dask"):
        B.matvec(x)
    assert_close(B.matvec(x), expected, "chunks")


def test_a_numpy_product_is_of_the_layer_as_constructed():
    """A review: the serial operator, built at the first numpy product from the arguments
    as given, read a padding array changed since the construction (13.6 from the layer,
    where the Dask products kept it)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 2, 3, 3))
    pad = np.array([[1, 1], [1, 1]])
    A = sdask.ConvOperator(w, (2, 8, 8), chunks=4, padding=pad)
    pad[0] = [0, 2]  # (the same output shape)
    x = rng.standard_normal(A.shape[1])
    expected = sc.ConvOperator(w, (2, 8, 8), padding=1) @ x
    assert_close(A.matvec(x), expected, "numpy")
    assert_close(A.matvec(da.from_array(x, chunks=-1)).compute(), expected, "dask")
