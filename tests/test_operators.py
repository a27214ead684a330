"""ConvOperator and ConvTransposeOperator against PyTorch, conv_matrix, dot tests and solvers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from sparseconv import ConvOperator, ConvTransposeOperator, conv_matrix, conv_transpose_matrix

from .conftest import (
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
                                         ("rmatmat", np.ones((3, 2)))])
def test_wrong_input_length_names_the_expected_shape(method, arg):
    op = ConvOperator(np.ones((2, 3, 3)), (3, 20), padding=1)
    with pytest.raises(ValueError, match=r"expects an array of shape \((60|40)"):
        getattr(op, method)(arg)


def test_bad_layer_arguments_are_rejected_like_conv_matrix():
    with pytest.raises(ValueError, match="padding_mode"):
        ConvOperator(np.ones((2, 3, 3)), (3, 20), padding_mode="wrap")
    with pytest.raises(ValueError, match="output_padding"):
        ConvTransposeOperator(np.ones((2, 3, 3)), (2, 20), output_padding=1)
