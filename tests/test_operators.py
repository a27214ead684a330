"""ConvOperator and ConvTransposeOperator against PyTorch, conv_matrix, dot tests and solvers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import sparseconv
from sparseconv import ConvOperator, ConvTransposeOperator, conv_matrix, conv_transpose_matrix

from ._oracles import (
    random_array,
    random_layer,
    random_transpose_layer,
    requires_torch,
    torch_conv,
    torch_conv_transpose,
)
from .test_matrices import assert_close


def dot_test(op, rng, dtype=np.float64, batch=None):
    """<A x, y> == <x, A^H y>, relative to the size of the terms (PyLops' dottest)."""
    shape_x = (op.shape[1],) if batch is None else (op.shape[1], batch)
    shape_y = (op.shape[0],) if batch is None else (op.shape[0], batch)
    x, y = random_array(rng, shape_x, dtype), random_array(rng, shape_y, dtype)
    ax = op @ x if batch is None else op.matmat(x)
    ahy = op.rmatvec(y) if batch is None else op.rmatmat(y)
    lhs, rhs = np.vdot(y, ax), np.vdot(ahy, x)
    scale = np.linalg.norm(ax) * np.linalg.norm(y) + np.linalg.norm(ahy) * np.linalg.norm(x)
    return abs(lhs - rhs) / scale if scale else abs(lhs - rhs)  # an all-zero layer: 0


@requires_torch
@pytest.mark.parametrize("seed", range(90))
def test_conv_operator_matches_torch_matrix_and_dot_test(seed):
    rng = np.random.default_rng(10_000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=9 - 2 * (seed % 3))
    op = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    batch = 1 + seed % 3
    x = random_array(rng, (batch, *layer.input_shape))
    y = torch_conv(x, layer.weight, **layer.kwargs)
    assert op.output_shape == y.shape[1:], layer
    X = x.reshape(batch, -1).T
    assert_close(op.matmat(X), y.reshape(batch, -1).T, layer)
    assert_close(op.matvec(X[:, 0]), y[0].ravel(), layer)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    Y = random_array(rng, (op.shape[0], batch))
    assert_close(op.rmatmat(Y), A.T @ Y, layer)
    assert_close(op.rmatvec(Y[:, 0]), A.T @ Y[:, 0], layer)
    assert dot_test(op, rng) < 1e-13, layer
    assert dot_test(op, rng, batch=batch) < 1e-13, layer


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("seed", range(10))
def test_dtypes_and_complex_adjoint(dtype, seed):
    rng = np.random.default_rng(11_000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, dtype=dtype, max_size=7)
    op = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    assert op.dtype == dtype
    x = random_array(rng, op.shape[1], dtype)
    y = random_array(rng, op.shape[0], dtype)
    assert (op @ x).dtype == dtype and op.rmatvec(y).dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(op @ x, A @ x, layer, rtol=tol)
    assert_close(op.rmatvec(y), A.conj().T @ y, layer, rtol=tol)  # the adjoint conjugates
    assert dot_test(op, rng, dtype) < (1e-6 if dtype == np.float32 else 1e-13), layer


def test_dtype_follows_numpy_promotion():
    w32 = np.ones((2, 1, 3), np.float32)
    op = ConvOperator(w32, (1, 8))
    assert (op @ np.ones(8, np.float32)).dtype == np.float32
    assert (op @ np.ones(8)).dtype == np.float64
    assert (op @ np.ones(8, np.complex64)).dtype == np.complex64
    assert ConvOperator(w32, (1, 8), dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int64, np.bool_])
def test_integer_products_are_exact_or_refused(dtype, transposed):
    """numpy's integer arithmetic wraps (100 + 100 is -56 in int8, True + True is True): an
    integer or bool operator's products are the exact integers (the float64 matrix's, which
    holds these small sums exactly) where ``dtype`` holds them, and OverflowError otherwise,
    for the forward product, the adjoint and the transpose alike."""
    rng = np.random.default_rng(7)
    info = (0, 1) if dtype == np.bool_ else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    held = refused = 0
    for trial in range(30):
        top = min(info[1], int(rng.integers(1, 120)) * (4 if dtype == np.int16 else 1))
        low = max(info[0], -top)
        w = rng.integers(low, top + 1, size=(3, 2, 3)).astype(dtype)
        cls, build = ((ConvTransposeOperator, conv_transpose_matrix) if transposed
                      else (ConvOperator, conv_matrix))
        kwargs = dict(stride=1 + trial % 2, padding=1 + trial % 3 // 2 * int(not transposed))
        if not transposed:  # reflect, replicate, circular: columns that read an edge entry
            # through its copies sum more than the weight's magnitudes (a review)
            kwargs["padding_mode"] = ("zeros", "reflect", "replicate", "circular")[trial % 4]
        shape = (3, 5) if transposed else (2, 7)
        op = cls(w, shape, dtype=dtype, **kwargs)
        exact = build(w.astype(np.float64), shape, **kwargs)
        for A, M in ((op, exact), (op.H, exact.T), (op.T, exact.T)):
            x = rng.integers(low, top + 1, size=A.shape[1]).astype(dtype)
            if trial % 3 == 0:
                x[rng.random(x.size) < 0.8] = 0  # sparse inputs: sums the dtype holds
            expected = M @ x.astype(np.float64)
            if expected.min() >= info[0] and expected.max() <= info[1]:
                held += 1
                got = A @ x
                assert got.dtype == dtype and np.array_equal(got.astype(float), expected)
                assert np.array_equal(A.matmat(np.stack([x, x], 1)).astype(float),
                                      np.stack([expected, expected], 1))
            else:
                refused += 1
                with pytest.raises(OverflowError, match=f"in {np.dtype(dtype)}: entry"):
                    A @ x
    assert held and (refused or dtype == np.int64), (held, refused)  # both branches ran
    huge = ConvOperator(np.full((1, 1, 3), 2**40), (1, 8), padding=1, dtype=np.int64)
    with pytest.raises(OverflowError, match="could exceed int64's range"):
        huge @ np.full(8, 2**30)


def test_integer_products_at_the_edges_of_int64_and_uint64():
    """A review: a replicate-padded column sums an edge weight once per copy, past the plain
    sum of the weight's magnitudes (int64 wrapped around, unseen); uint64 products ran in
    float64 (numpy's promotion of uint64 with int64); weights beyond 2**53 were rounded to
    float64 before anything else."""
    A = ConvOperator(np.full((1, 1, 3), 2**53), (1, 3), padding=2, padding_mode="replicate",
                     dtype=np.int64)
    with pytest.raises(OverflowError, match="could exceed int64's range"):
        A.H @ np.full(5, 256, np.int64)  # an edge entry read 6 times: 6 * 2**61 > 2**63
    U = ConvOperator(np.array([[[2**52 + 1, 1]]], np.uint64), (1, 3), dtype=np.uint64)
    got = U @ np.array([3, 0, 0], np.uint64)
    assert got.dtype == np.uint64 and int(got[0]) == 3 * (2**52 + 1)
    assert int((U.H @ np.array([3, 0], np.uint64))[0]) == 3 * (2**52 + 1)
    assert (U @ np.ones(3, np.float32)).dtype == np.float64  # numpy's uint64 with float32
    for weight in (np.array([[[2**53 + 1, 1]]], np.int64), np.array([[[2**60]]], np.uint64)):
        with pytest.raises(ValueError, match="weight must have integer entries of magnitude at "
                           "most 2\\*\\*53"):
            ConvOperator(weight, (1, 3), dtype=np.int64)


@requires_torch
@pytest.mark.parametrize("seed", range(45))
def test_conv_transpose_operator_matches_torch(seed):
    rng = np.random.default_rng(12_000 + seed)
    w, input_shape, kwargs = random_transpose_layer(rng, max_size=7)
    c_in, *size = input_shape
    op = ConvTransposeOperator(w, (c_in, *size), **kwargs)
    x = rng.standard_normal((2, c_in, *size))
    y = torch_conv_transpose(x, w, **kwargs)
    assert op.output_shape == y.shape[1:], kwargs
    assert_close(op.matmat(x.reshape(2, -1).T), y.reshape(2, -1).T, kwargs)
    T = conv_transpose_matrix(w, (c_in, *size), **kwargs)
    z = rng.standard_normal(op.shape[0])
    assert_close(op.rmatvec(z), T.T @ z, kwargs)
    assert dot_test(op, rng) < 1e-13, kwargs
    assert abs(op.tosparse() - T).max() == 0


def test_adjoint_transpose_and_tosparse_are_operators():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3)) + 1j * rng.standard_normal((3, 2, 3, 3))
    op = ConvOperator(w, (2, 6, 5), stride=(2, 1), padding=1, padding_mode="reflect")
    A = conv_matrix(w, (2, 6, 5), stride=(2, 1), padding=1, padding_mode="reflect")
    assert abs(op.tosparse() - A).max() == 0
    assert op.tosparse("csc").format == "csc"
    for adj in (op.H, op.adjoint()):
        assert isinstance(adj, spla.LinearOperator) and adj.shape == op.shape[::-1]
        assert adj.input_shape == op.output_shape and adj.output_shape == op.input_shape
        assert abs(adj.tosparse() - A.conj().T).max() == 0
        assert adj.H is op
    y = random_array(rng, op.shape[0], np.complex128)
    assert_close(op.T @ y, A.T @ y, "transpose")
    assert_close(op.H @ y, A.conj().T @ y, "adjoint")


def test_composition_with_scipy_algebra():
    rng = np.random.default_rng(2)
    w1, w2 = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal((3, 4, 3, 3))
    A = ConvOperator(w1, (2, 8, 8), padding=1)
    B = ConvOperator(w2, (4, 8, 8), stride=2, padding=1, padding_mode="circular")
    Am, Bm = A.tosparse(), B.tosparse()
    x = rng.standard_normal(A.shape[1])
    assert_close((B @ A) @ x, Bm @ (Am @ x), "B @ A")
    assert_close((A + A) @ x, 2 * (Am @ x), "A + A")
    assert_close((3.0 * A) @ x, 3 * (Am @ x), "3 A")
    C = spla.aslinearoperator(Bm) @ A
    assert_close(C @ x, Bm @ (Am @ x), "aslinearoperator(B) @ A")
    y = rng.standard_normal(B.shape[0])
    assert_close((B @ A).rmatvec(y), Am.T @ (Bm.T @ y), "(B A)^H")


def test_solvers_lsqr_cg_svds_eigs():
    rng = np.random.default_rng(3)
    # deblurring: a 5x5 box blur, solved by least squares with damping
    blur = ConvOperator(np.full((1, 1, 5, 5), 1 / 25), (1, 24, 24), padding=2,
                        padding_mode="reflect")
    image = np.zeros((24, 24))
    image[6:18, 8:16] = 1.0
    blurred = blur @ image.ravel()
    restored = spla.lsqr(blur, blurred, damp=1e-4, atol=1e-12, btol=1e-12, iter_lim=2000)[0]
    assert np.linalg.norm(restored - image.ravel()) < 0.2 * np.linalg.norm(blurred - image.ravel())
    # cg on the normal equations of a well-conditioned layer
    w = 0.3 * rng.standard_normal((2, 2, 3))
    w[[0, 1], [0, 1], 1] += 3.0  # a dominant identity tap
    A = ConvOperator(w, (2, 16), padding=1)
    N = A.H @ A + 0.1 * spla.aslinearoperator(np.eye(A.shape[1]))
    b = rng.standard_normal(A.shape[1])
    sol, info = spla.cg(N, b, rtol=1e-12, maxiter=500)
    assert info == 0 and np.allclose(N @ sol, b, atol=1e-9)
    # svds and eigs against dense linear algebra of the explicit matrix
    D = A.tosparse().toarray()
    top = spla.svds(A, k=1, return_singular_vectors=False, rng=0)[0]
    assert abs(top - np.linalg.svd(D, compute_uv=False)[0]) < 1e-10
    lam = spla.eigs(A, k=2, which="LM", return_eigenvectors=False, v0=np.ones(A.shape[0]))
    dense = np.linalg.eigvals(D)
    assert np.allclose(np.sort(np.abs(lam)), np.sort(np.abs(dense))[-2:])


@pytest.mark.parametrize("method, arg", [("matvec", np.ones(5)), ("rmatvec", np.ones(7)),
                                         ("matmat", np.ones((5, 2))), ("matvec", np.ones((60, 2))),
                                         ("rmatmat", np.ones((3, 2))), ("matmat", np.ones(60)),
                                         ("dot", np.ones((60, 2, 1)))])
def test_wrong_shapes_are_refused_as_scipy_refuses_them(method, arg):
    """The public methods are scipy's: whatever a matrix operator refuses, ours refuses --
    with a message that names the shapes accepted, not scipy's "dimension mismatch"."""
    op = ConvOperator(np.ones((2, 3, 3)), (3, 20), padding=1)
    reference = spla.aslinearoperator(op.tosparse())
    with pytest.raises(ValueError) as expected:
        getattr(reference, method)(arg)
    with pytest.raises(type(expected.value), match=r"expects .*\((60|40)|multiplies flat "):
        getattr(op, method)(arg)
    for product in (op.T, op.H):  # the transpose and adjoint operators too
        with pytest.raises(ValueError, match=r"expects .*\((60|40)"):
            getattr(product, method if method != "dot" else "matvec")(arg)


@pytest.mark.parametrize("method, arg", [("_matvec", np.ones(5)), ("_rmatvec", np.ones(7)),
                                         ("_matmat", np.ones((5, 2))),
                                         ("_matvec", np.ones((60, 2))),
                                         ("_rmatmat", np.ones((3, 2, 1)))])
def test_underscored_methods_name_the_expected_shape(method, arg):
    """Called directly (as a future scipy may, with other shapes), the underscored methods
    check their input themselves and say which shapes they take."""
    op = ConvOperator(np.ones((2, 3, 3)), (3, 20), padding=1)
    with pytest.raises(ValueError, match=r"expects an array of shape \((60|40),\)"):
        getattr(op, method)(arg)


@pytest.mark.parametrize("method", ["matvec", "rmatvec", "matmat", "rmatmat", "apply",
                                    "apply_adjoint"])
@pytest.mark.parametrize("dtype", ["<U1", object])
def test_non_numeric_arrays_are_refused_by_name(method, dtype):
    """Strings or objects gave numpy's "ufunc 'matmul' did not contain a loop" or "Cannot
    change data-type for array of references"; the message names the method and the dtype."""
    op = ConvOperator(np.ones((2, 3, 3)), (3, 20), padding=1)
    n = op.shape[0] if method.startswith(("r", "apply_")) else op.shape[1]
    shape = {"apply": op.dims, "apply_adjoint": op.dimsd}.get(method, (n,) if "vec" in method
                                                                 else (n, 2))
    with pytest.raises(TypeError, match=f"{method} expects a numeric array, got dtype"):
        getattr(op, method)(np.full(shape, "a", dtype=dtype))


def test_bad_layer_arguments_are_rejected_like_conv_matrix():
    with pytest.raises(ValueError, match="padding_mode"):
        ConvOperator(np.ones((2, 3, 3)), (3, 20), padding_mode="wrap")
    with pytest.raises(ValueError, match="output_padding"):
        ConvTransposeOperator(np.ones((2, 3, 3)), (2, 20), output_padding=1)


# -- scipy's LinearOperator contract -----------------------------------------------------------
def _operators():
    """A convolution, a transposed convolution, and the adjoint and transpose of each, with
    their explicit matrices from conv_matrix / conv_transpose_matrix (complex weights, so
    that .H and .T differ)."""
    rng = np.random.default_rng(21)
    w = rng.standard_normal((3, 2, 3)) + 1j * rng.standard_normal((3, 2, 3))
    conv = ConvOperator(w, (2, 7), stride=2, padding=1, padding_mode="reflect")
    A = conv_matrix(w, (2, 7), stride=2, padding=1, padding_mode="reflect")
    wt = rng.standard_normal((3, 2, 3)) + 1j * rng.standard_normal((3, 2, 3))
    tconv = ConvTransposeOperator(wt, (3, 4), stride=2, padding=1)
    T = conv_transpose_matrix(wt, (3, 4), stride=2, padding=1)
    return [("conv", conv, A), ("conv.H", conv.H, A.conj().T), ("conv.T", conv.T, A.T),
            ("tconv", tconv, T), ("tconv.H", tconv.H, T.conj().T), ("tconv.T", tconv.T, T.T)]


def _calls(n):
    rng = np.random.default_rng(n)
    vec, col, block = rng.standard_normal(n), rng.standard_normal((n, 1)), rng.standard_normal(
        (n, 3)) + 1j * rng.standard_normal((n, 3))
    empty = np.zeros((n, 0))
    return [("matvec", vec), ("matvec", col), ("matmat", block), ("matmat", col),
            ("matmat", empty), ("dot", vec), ("dot", col), ("dot", block), ("dot", empty),
            ("@", vec), ("@", col), ("@", block), ("@", empty),
            ("matvec", vec.astype(np.float32)), ("matmat", block.astype(np.complex64))]


def _call(op, method, x):
    return op @ x if method == "@" else getattr(op, method)(x)


@pytest.mark.parametrize("name", ["conv", "conv.H", "conv.T", "tconv", "tconv.H", "tconv.T"])
def test_operators_accept_what_scipy_accepts_with_its_result_shapes(name):
    """(N,), (N, 1), (N, k) and (N, 0) through matvec, matmat, dot and @, forward and adjoint:
    the shapes, dtypes and values of scipy's own aslinearoperator(csr) of the same matrix."""
    _, op, matrix = next(case for case in _operators() if case[0] == name)
    reference = spla.aslinearoperator(matrix.tocsr())
    for forward_op, forward_ref in ((op, reference), (op.H, reference.H)):
        for method, x in _calls(forward_op.shape[1]):
            got, expected = _call(forward_op, method, x), _call(forward_ref, method, x)
            config = (name, method, x.shape, x.dtype)
            assert isinstance(got, np.ndarray) and got.shape == expected.shape, config
            assert got.dtype == expected.dtype, config
            assert_close(got, expected, config)
        for method, x in _calls(forward_op.shape[0]):
            if method in ("matvec", "matmat"):
                r = "r" + method
                got, expected = getattr(forward_op, r)(x), getattr(forward_ref, r)(x)
                assert got.shape == expected.shape and got.dtype == expected.dtype, (name, r)
                assert_close(got, expected, (name, r, x.shape))


@pytest.mark.parametrize("name", ["conv", "conv.H", "tconv", "tconv.H"])
def test_empty_batches_give_empty_results(name):
    """matmat and rmatmat of an (n, 0) batch: an (m, 0) array, as scipy.sparse gives."""
    _, op, matrix = next(case for case in _operators() if case[0] == name)
    for dtype in (np.float32, np.float64):
        X = np.zeros((op.shape[1], 0), dtype)
        Y = np.zeros((op.shape[0], 0), dtype)
        for got, expected in ((op.matmat(X), matrix @ X), (op.rmatmat(Y), matrix.conj().T @ Y)):
            assert got.shape == expected.shape and got.dtype == expected.dtype, name


def test_only_the_underscored_methods_are_overridden(monkeypatch):
    """scipy's contract: the public products are scipy's own (its development branch changes
    them), so a subclass overrides only _matvec, _rmatvec, _matmat, _rmatmat, _adjoint,
    _transpose -- and ``dot``, which refuses an n-d array by its shape and is otherwise
    scipy's (test_dot_refuses_images_by_shape). matvec, rmatvec, matmat and rmatmat call
    scipy's, which decide what they take; only their refusal's message is ours."""
    public = ("__matmul__", "__call__", "adjoint", "transpose")
    for cls in (ConvOperator, ConvTransposeOperator, type(ConvOperator(np.ones((1, 1, 1)),
                                                                       (1, 2)).H),
                type(ConvOperator(np.ones((1, 1, 1)), (1, 2)).T)):
        for name in public:
            assert getattr(cls, name) is getattr(spla.LinearOperator, name), (cls, name)
    called = []
    for name in ("matvec", "rmatvec", "matmat", "rmatmat"):
        scipys = getattr(spla.LinearOperator, name)
        monkeypatch.setattr(spla.LinearOperator, name,
                            lambda self, x, _f=scipys, _n=name: called.append(_n) or _f(self, x))
    op = ConvOperator(np.ones((2, 3, 3)), (3, 20), padding=1)
    op.matvec(np.ones(60)), op.rmatvec(np.ones(40))
    op.matmat(np.ones((60, 2))), op.rmatmat(np.ones((40, 2)))
    assert called == ["matvec", "rmatvec", "matmat", "rmatmat"]


# -- weight ownership, dtypes, flags -----------------------------------------------------------
@pytest.mark.parametrize("transposed", [False, True])
def test_operators_own_their_weights(transposed):
    """Changing the caller's array after construction changes nothing: forward and adjoint
    stay the matrix of the original weight, and the operator's own copy is read-only."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 2, 3, 3))
    original = w.copy()
    cls, build = ((ConvTransposeOperator, conv_transpose_matrix) if transposed
                  else (ConvOperator, conv_matrix))
    shape = (3, 5, 5) if transposed else (2, 6, 6)
    op = cls(w, shape, stride=2, padding=1)
    w *= 2
    w[0] = 7.0
    expected = build(original, shape, stride=2, padding=1)
    x, y = rng.standard_normal(op.shape[1]), rng.standard_normal(op.shape[0])
    assert_close(op @ x, expected @ x, "forward after the caller changed the weight")
    assert_close(op.rmatvec(y), expected.T @ y, "adjoint after the caller changed the weight")
    assert dot_test(op, rng) < 1e-13
    assert abs(op.tosparse() - expected).max() == 0
    assert np.array_equal(op.weight, original)
    with pytest.raises(ValueError, match="read-only"):
        op.weight[0] = 0.0
    with pytest.raises(AttributeError):
        op.weight = w


@requires_torch
def test_float16_weights_compute_in_float32():
    rng = np.random.default_rng(5)
    w16 = rng.standard_normal((2, 3, 3, 3)).astype(np.float16)
    x = rng.standard_normal((3, 6, 6))
    for op, reference in (
        (ConvOperator(w16, x.shape, padding=1), torch_conv(x[None], w16.astype(float), padding=1)),
        (ConvTransposeOperator(w16.transpose(1, 0, 2, 3), x.shape, padding=1),
         torch_conv_transpose(x[None], w16.transpose(1, 0, 2, 3).astype(float), padding=1)),
    ):
        assert op.dtype == np.float32
        out = op @ x.ravel().astype(np.float32)
        assert out.dtype == np.float32
        assert_close(out, reference.ravel(), "float16", rtol=1e-5)
        assert op.tosparse().dtype == np.float32
        assert dot_test(op, rng, np.float32) < 1e-6
    with pytest.raises(TypeError, match="float16"):
        ConvOperator(np.ones((1, 1, 3)), (1, 8), dtype=np.float16)


@pytest.mark.parametrize("flip", ["False", 0, 1.0, None])
def test_flip_must_be_a_bool(flip):
    with pytest.raises(TypeError, match="flip must be a bool"):
        ConvOperator(np.ones((1, 1, 3)), (1, 8), flip=flip)
    assert ConvOperator(np.ones((1, 1, 3)), (1, 8), flip=np.bool_(True)).geometry.flip is True


# -- memory ------------------------------------------------------------------------------------
@pytest.fixture
def small_limit():
    old = sparseconv.set_memory_limit(200_000)
    try:
        yield 200_000
    finally:
        sparseconv.set_memory_limit(old)


def test_operator_whose_product_exceeds_the_limit_is_refused_at_construction(small_limit):
    """One column's product (padded input, im2col scratch, result) over the limit: refused
    when built, naming the product; under it, a batch whose product is over it is refused
    when asked, before anything is allocated."""
    for build in (lambda: ConvOperator(np.ones((4, 1, 3, 3)), (1, 100, 100), padding=1),
                  lambda: ConvTransposeOperator(np.ones((1, 4, 3, 3)), (1, 100, 100), padding=1),
                  lambda: ConvOperator(np.ones((1, 1, 3)), (1, 8), padding=10**6)):
        with pytest.raises(sparseconv.MatrixTooLargeError, match="matvec|rmatvec") as info:
            build()
        assert "memory limit" in str(info.value)
    op = ConvOperator(np.ones((1, 1, 3, 3)), (1, 30, 30), padding=1)
    assert op.matmat(np.ones((900, 2))).shape == (900, 2)
    for product in (op.matmat, op.rmatmat, op.H.matmat, op.T.matmat):
        with pytest.raises(sparseconv.MatrixTooLargeError, match="batch of 40"):
            product(np.ones((900, 40)))
    with pytest.raises(sparseconv.MatrixTooLargeError, match="sparse matrix"):
        ConvOperator(np.ones((8, 8, 3, 3)), (8, 12, 12), padding=1).tosparse()


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("kind", ["conv", "transposed"])
def test_a_batch_over_the_limit_runs_a_part_of_its_columns_at_a_time(kind, layout):
    """scipy's block solvers (lobpcg, svds' block methods) ask for products on blocks of
    columns; a block whose scratch (padded input, im2col, phase-split parts) is over the
    memory limit was refused though the result fits: it now runs as many columns at a time
    as fit beside the whole result, and equals the explicit matrix's product (the same
    arithmetic: the columns are independent), forward and adjoint, of complex, float64 and
    int8 columns. A result that does not fit beside one column's scratch is
    refused as before."""
    rng = np.random.default_rng(7)
    if kind == "conv":
        weight = rng.standard_normal((3, 2, 3, 3))
        op = ConvOperator(weight, (2, 20, 20), padding=1, stride=2, layout=layout)
        matrix = conv_matrix(weight, (2, 20, 20), padding=1, stride=2, layout=layout)
    else:
        weight = rng.standard_normal((2, 3, 3, 3))
        op = ConvTransposeOperator(weight, (2, 10, 10), stride=2, padding=1, layout=layout)
        matrix = conv_transpose_matrix(weight, (2, 10, 10), stride=2, padding=1, layout=layout)
    n, m = op.shape[1], op.shape[0]
    X = rng.standard_normal((n, 24)) + 1j * rng.standard_normal((n, 24))
    Y = rng.standard_normal((m, 24))
    five = op._batch_bytes(5, np.dtype(complex), op._apply_bytes, op.input_shape,
                           op.output_shape)
    old = sparseconv.set_memory_limit(five + m * 24 * 16)  # (five columns' scratch, and
    try:  # the result)
        assert op._at_once(24, np.dtype(complex), op._apply_bytes, op.input_shape,
                           op.output_shape, "matmat") == 5
        forward, adjoint = op @ X, op.H @ Y
        np.testing.assert_allclose(forward, matrix @ X, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(adjoint, matrix.T @ Y, rtol=1e-12, atol=1e-12)
        assert op._at_once(24, np.dtype(float), op._apply_adjoint_bytes, op.output_shape,
                           op.input_shape, "rmatmat") < 24  # (the adjoint's columns in parts too)
        if kind == "conv":  # (integers, exactly)
            exact = ConvOperator(np.ones((1, 2, 3, 3), np.int8), (2, 20, 20), padding=1)
            small = rng.integers(-3, 4, size=(n, 24)).astype(np.int8)
            sparseconv.set_memory_limit(exact._batch_bytes(
                3, np.dtype(np.int8), exact._apply_bytes, exact.input_shape,
                exact.output_shape) + 400 * 24 * 8)
            assert exact._at_once(24, np.dtype(np.int8), exact._apply_bytes,
                                  exact.input_shape, exact.output_shape, "matmat") == 3
            product = exact @ small  # (an operator of integer weights is float64's)
            assert product.dtype == np.float64 and np.array_equal(product, conv_matrix(
                np.ones((1, 2, 3, 3), np.int64), (2, 20, 20), padding=1) @ small)
        # an overflow names its entry's column among all the columns (a review: named within
        # its part, column 3 of the second part of four for column 7)
        wide = ConvOperator(np.full((1, 1, 3), 100, np.int8), (1, 8), padding=1, dtype=np.int8)
        overflowing = np.zeros((8, 10), np.int8)
        overflowing[3, 7], overflowing[4, 7] = 1, 2  # (row 3: 100 + 200)
        sparseconv.set_memory_limit(2200)
        assert wide._at_once(10, np.dtype(np.int8), wide._apply_bytes, wide.input_shape,
                             wide.output_shape, "matmat") == 4
        with pytest.raises(OverflowError, match=r"entry \(3, 7\) \(row, column\) of the "
                                                "result is 300"):
            wide @ overflowing
        # refused, it names the least that would run (a review: a matvec's result counted
        # twice; then the whole batch's scratch, which need not fit)
        for product, operand in ((op.matvec, X[:, 0]), (op.matmat, X)):
            sparseconv.set_memory_limit(1000)
            with pytest.raises(sparseconv.MatrixTooLargeError) as refused:
                product(operand)
            sparseconv.set_memory_limit(refused.value.needed)
            product(operand)
            sparseconv.set_memory_limit(refused.value.needed - 1)
            with pytest.raises(sparseconv.MatrixTooLargeError):
                product(operand)
        sparseconv.set_memory_limit(m * 24 * 16 - 1)  # (the complex result alone: over it)
        with pytest.raises(sparseconv.MatrixTooLargeError, match="on a batch of 24"):
            op @ X
    finally:
        sparseconv.set_memory_limit(old)


@pytest.mark.parametrize("build", [
    lambda: ConvOperator(np.ones((1, 1, 3)), (1, 8), padding=10**9),
    lambda: ConvOperator(np.ones((1, 1, 3)), (1, 8), padding=10**9, padding_mode="replicate"),
    lambda: ConvTransposeOperator(np.ones((2, 2, 3, 3)), (2, 2, 2), stride=49999, padding=1),
    lambda: ConvOperator(np.ones((1, 1, 3)), (1, 10**9)),
], ids=["zeros-pad-1e9", "replicate-pad-1e9", "transposed-stride-49999", "input-1e9"])
def test_huge_operators_are_refused_at_once_under_the_default_limit(build):
    """The geometry is sized in O(kernel), so these are refused before any large array."""
    with pytest.raises(sparseconv.MatrixTooLargeError, match="GiB"):
        build()


# -- shapes: dims/dimsd, apply, .T, refusals of images -----------------------------------------
@requires_torch
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("seed", range(6))
def test_apply_takes_images_and_batches_in_the_layout(layout, seed):
    rng = np.random.default_rng(8000 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7 - seed % 3)
    op = ConvOperator(layer.weight, layer.input_shape, layout=layout, **layer.kwargs)
    x = random_array(rng, (3, *layer.input_shape))
    y = torch_conv(x, layer.weight, **layer.kwargs)
    if layout == "channels_last":
        x, y = np.moveaxis(x, 1, -1), np.moveaxis(y, 1, -1)
    assert op.dims == x.shape[1:] and op.dimsd == y.shape[1:], layer
    assert op.input_shape == layer.input_shape, layer  # the layer's (C, *spatial) shapes
    assert_close(op.apply(x), y, layer)
    assert_close(op.apply(x[1]), y[1], layer)
    z = random_array(rng, y.shape)
    back = op.apply_adjoint(z)
    assert back.shape == x.shape, layer
    assert abs(np.vdot(z, y) - np.vdot(back, x)) <= 1e-12 * np.linalg.norm(z) * np.linalg.norm(y)
    assert op.H.dims == op.dimsd and op.T.dimsd == op.dims and op.H.layout == layout


def test_transpose_is_our_operator_with_tosparse_and_shapes():
    rng = np.random.default_rng(3)
    for layout in ("channels_first", "channels_last"):
        for dtype in (np.float64, np.complex128):
            w = random_array(rng, (3, 2, 3, 3), dtype)
            op = ConvOperator(w, (2, 6, 5), stride=2, padding=1, padding_mode="replicate",
                              layout=layout)
            A = op.tosparse()
            T = op.T
            assert type(T).__module__ == "sparseconv._operator_base" and T.T is op
            assert T.input_shape == op.output_shape and T.dims == op.dimsd
            assert abs(T.tosparse() - A.T).max() == 0
            assert abs(T.H.tosparse() - A.conj()).max() == 0
            y = random_array(rng, op.shape[0], dtype)
            assert_close(T @ y, A.T @ y, (layout, dtype))
            assert_close(T.apply(y.reshape(T.dims)), (A.T @ y).reshape(T.dimsd), layout)
            x = random_array(rng, op.shape[1], dtype)
            assert_close(T.rmatvec(x), A.conj() @ x, (layout, dtype))
    ct = ConvTransposeOperator(rng.standard_normal((4, 2, 3)), (4, 5), stride=2)
    assert abs(ct.T.tosparse() - ct.tosparse().T).max() == 0


def test_dot_refuses_images_by_shape():
    op = ConvOperator(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1)
    img = np.zeros((3, 8, 8))
    with pytest.raises(ValueError, match=r"got an array of shape \(3, 8, 8\): use "
                                         r"A.apply\(x\) for arrays shaped \(3, 8, 8\)") as info:
        op @ img
    assert "array([" not in str(info.value)  # not scipy's dump of the array
    assert np.array_equal(op @ img.ravel(), op.apply(img).ravel())  # 1-D and 2-D: scipy's
    assert (op @ np.zeros((192, 2))).shape == (256, 2)
    for bad in (np.zeros((8, 8, 3)), np.zeros((2, 3, 8))):
        with pytest.raises(ValueError, match=rf"apply expects an array of shape \(3, 8, 8\) "
                                             rf"or \(N, 3, 8, 8\), got shape \({bad.shape[0]}"):
            op.apply(bad)
    with pytest.raises(ValueError, match=r"apply_adjoint expects .* \(4, 8, 8\)"):
        op.apply_adjoint(img)
    out = np.zeros((4, 8, 8))
    with pytest.raises(ValueError, match=r"got an array of shape \(4, 8, 8\): use "
                                         r"A.apply_adjoint\(y\) for arrays shaped") as info:
        out @ op  # scipy's __rmatmul__
    assert "array([" not in str(info.value)
    y = np.random.default_rng(3).standard_normal((2, 256))
    assert np.allclose(y @ op, (op.T @ y.T).T) and np.allclose(y[0] @ op, op.T @ y[0])


@pytest.mark.parametrize("seed", range(40))
def test_weights_with_inf_or_nan_give_the_matrix_products(seed):
    """inf * 0 is nan: matrix-free, the padding's zeros (and col2im's, the polyphase split's
    scratch) times an infinite tap gave nan where the matrix has no entry (a hunt: the
    adjoint and the transposed layer's products, against conv_matrix and PyTorch's
    gradient). With a weight that is not finite the products are the explicit matrix's, for
    the forward product, the adjoint and the transpose of both kinds of layer."""
    rng = np.random.default_rng(31_000 + seed)
    transposed = seed % 2 == 1
    layer = (random_transpose_layer if transposed else random_layer)(rng, max_size=6)
    w, shape, kwargs = ((layer[0], layer[1], layer[2]) if transposed
                        else (layer.weight, layer.input_shape, layer.kwargs))
    w = np.array(w, dtype=np.float64)
    w.flat[rng.integers(w.size)] = rng.choice([np.inf, -np.inf, np.nan])
    cls, build = ((ConvTransposeOperator, conv_transpose_matrix) if transposed
                  else (ConvOperator, conv_matrix))
    op = cls(w, shape, **kwargs)
    matrix = build(w, shape, **kwargs)
    x = rng.standard_normal((op.shape[1], 2))
    y = rng.standard_normal((op.shape[0], 2))
    with np.errstate(invalid="ignore", over="ignore"):
        for got, expected in ((op @ x, matrix @ x), (op.H @ y, matrix.T @ y),
                              (op.T @ y, matrix.T @ y), (op.T.H @ x, matrix @ x)):
            np.testing.assert_array_equal(got, expected, err_msg=str((shape, kwargs)))
    assert np.array_equal(op.tosparse().toarray(), matrix.toarray(), equal_nan=True)


def test_a_weight_finite_in_float64_but_not_in_the_operators_dtype():
    w = np.array([[[1e300, 1.0, 1.0]]])  # inf in float32 (a review: the nan of inf * 0 came
    # back, the check having read the float64 weight)
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "overflow in cast"
        for op, matrix in ((ConvOperator(w, (1, 4), padding=1, dtype=np.float32),
                            conv_matrix(w, (1, 4), padding=1, dtype=np.float32)),
                           (ConvTransposeOperator(w, (1, 4), padding=1, dtype=np.float32),
                            conv_transpose_matrix(w, (1, 4), padding=1, dtype=np.float32))):
            x = np.ones(op.shape[1], np.float32)
            np.testing.assert_array_equal(op @ x, matrix @ x)
            y = np.ones(op.shape[0], np.float32)
            np.testing.assert_array_equal(op.H @ y, matrix.T @ y)


def test_a_weight_that_is_not_finite_is_sized_as_its_matrix():
    from sparseconv import MatrixTooLargeError, get_memory_limit, set_memory_limit

    w = np.ones((8, 8, 3, 3))
    w[1, 2, 0, 0] = np.nan
    old = get_memory_limit()
    set_memory_limit(2_000_000)
    try:
        with pytest.raises(MatrixTooLargeError, match=r"weight\[1, 2, 0, 0\] is not finite in "
                           "float64: with inf or NaN entries the operator's products run on its "
                           "explicit matrix"):
            ConvOperator(w, (8, 32, 32), padding=1)
        ConvOperator(w[:, :, :1, :1].copy() * 0 + 1, (8, 32, 32))  # a finite one is not
    finally:
        set_memory_limit(old)


def test_a_sparse_operand_is_refused_by_its_kind():
    """A new user's trial: A @ csr_array((50, 1)) said "expects ... (50, 1) ..., got shape ()"
    (numpy reads a sparse array as a 0-d object array)."""
    A = ConvOperator(np.ones((4, 2, 3, 3)), (2, 5, 5), padding=1, stride=2)
    column = sp.csr_array(np.ones((50, 1)))
    for call in (lambda: A @ column, lambda: A.matvec(column), lambda: A.matmat(column),
                 lambda: A.H.rmatvec(column), lambda: A.apply(sp.csr_array(np.ones((5, 5))))):
        with pytest.raises(TypeError, match=r"takes dense arrays \(numpy's\), got a "
                                            r"scipy.sparse csr array of shape"):
            call()
    assert np.allclose(A @ column.toarray(), A.tosparse() @ column.toarray())


# A mutation review of the operators (2026-12-05): each test below failed on a change
# of the code that every other test let pass.


def _finite_match(got, expected):
    """Same non-finite pattern, and the finite entries equal."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    assert np.array_equal(np.isfinite(got), np.isfinite(expected))
    finite = np.isfinite(expected)
    assert finite.any()
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12, atol=1e-12)


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# A mutant this catches: _operators.py _matrices_for returned matrix.T (no conj) as the adjoint of
# a non-finite complex weight
def test_nonfinite_complex_weight_adjoint_is_conjugate_transpose():
    rng = np.random.default_rng(0)
    w = _complex(rng, (2, 2, 3))
    w[0, 0, 1] = np.inf
    A = ConvOperator(w, (2, 6), padding=1)
    M = conv_matrix(w, (2, 6), padding=1)  # sparse: no 0 * inf
    y = _complex(rng, A.shape[0])
    _finite_match(A.rmatvec(y), M.conj().T @ y)
    _finite_match(A.H @ y, M.conj().T @ y)


# A mutant this catches: a complex weight with inf taken matrix-free (padding zeros * inf = nan)
def test_nonfinite_complex_weight_forward_runs_on_the_matrix():
    rng = np.random.default_rng(1)
    w = _complex(rng, (2, 2, 3, 3))
    w[1, 0, 0, 0] = np.inf
    A = ConvOperator(w, (2, 5, 5), padding=1)
    M = conv_matrix(w, (2, 5, 5), padding=1)
    x = _complex(rng, A.shape[1])
    _finite_match(A @ x, M @ x)


# A mutant this catches: ConvTransposeOperator._explicit dropped the conjugation of the adjoint's
# matrix
def test_complex_transposed_adjoint_tosparse_is_conjugate_transpose():
    rng = np.random.default_rng(2)
    w = _complex(rng, (2, 3, 3))
    T = ConvTransposeOperator(w, (2, 4), stride=2, padding=1)
    dense = conv_transpose_matrix(w, (2, 4), stride=2, padding=1).toarray()
    np.testing.assert_allclose(T.H.tosparse().toarray(), dense.conj().T, rtol=0, atol=1e-14)
    np.testing.assert_allclose(T.T.tosparse().toarray(), dense.T, rtol=0, atol=1e-14)


# A mutant this catches: the implicit GEMM of a complex transposed layer's adjoint ran on the
# unconjugated taps
def test_complex_transposed_adjoint_through_the_implicit_gemm():
    rng = np.random.default_rng(3)
    w = _complex(rng, (16, 16, 3))  # >= 16 channels a group, stride 1, 1-D: implicit GEMM
    T = ConvTransposeOperator(w, (16, 8), padding=1)
    dense = conv_transpose_matrix(w, (16, 8), padding=1).toarray()
    Y = _complex(rng, (T.shape[0], 2))
    np.testing.assert_allclose(T.H @ Y, dense.conj().T @ Y, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(T.rmatvec(Y[:, 0]), dense.conj().T @ Y[:, 0], rtol=1e-12,
                               atol=1e-10)
    np.testing.assert_allclose(T.T @ Y, dense.T @ Y, rtol=1e-12, atol=1e-10)


# A mutant this catches: an empty batch came back in the operator's dtype, not the promoted one
@pytest.mark.parametrize("xdtype", [np.float64, np.complex128])
def test_empty_batch_has_the_dtype_of_a_nonempty_one(xdtype):
    A = ConvOperator(np.ones((2, 1, 3), np.float32), (1, 5))
    for product, n in ((A.matmat, A.shape[1]), (A.rmatmat, A.shape[0])):
        empty = product(np.zeros((n, 0), xdtype))
        one = product(np.zeros((n, 1), xdtype))
        assert empty.shape[1] == 0 and empty.dtype == one.dtype == np.result_type(
            np.float32, xdtype)


def _exact_or_refused(A, x):
    """Either OverflowError, or the exact integer product (Python integers)."""
    try:
        got = A @ x
    except OverflowError:
        return
    dense = A.tosparse().toarray().astype(object)
    expected = dense.dot(x.astype(object))
    assert [int(v) for v in got] == [int(v) for v in expected]


# A mutant this catches: magnitude * largest == 2**63 was let through: the int64 sum wraps to
# -2**63 and passes
def test_int64_product_of_exactly_two_to_the_63_is_refused():
    A = ConvOperator(np.array([[[2**52]]], np.int64), (1, 1), dtype=np.int64)
    x = np.array([2**11], np.int64)
    _exact_or_refused(A, x)
    with pytest.raises(OverflowError):
        A @ x


# A mutant this catches: the overflow bound read the input's max only, not its most negative entry
def test_int64_product_bound_reads_the_most_negative_input():
    A = ConvOperator(np.array([[[2**52]]], np.int64), (1, 2), dtype=np.int64)
    x = np.array([1, -2**12], np.int64)  # 2**52 * -2**12 = -2**64 wraps to 0 in int64
    _exact_or_refused(A, x)
