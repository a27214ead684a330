"""The operators inside PyLops: its dot test, its LinearOperator keeping dims/dimsd, and its
solvers run end to end (against scipy's lsqr on the same problem)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from sparseconv import ConvOperator, ConvTransposeOperator

pylops = pytest.importorskip("pylops")
from pylops.optimization.basic import cgls, lsqr  # noqa: E402
from pylops.utils import dottest  # noqa: E402

LAYERS = [
    (ConvOperator, (4, 3, 3, 3), (3, 9, 8), dict(stride=2, padding=1, padding_mode="reflect")),
    (ConvOperator, (6, 2, 3), (4, 11), dict(groups=2, dilation=2, padding="same")),
    (ConvOperator, (2, 2, 2, 3, 2), (2, 5, 6, 4), dict(padding=1, padding_mode="circular")),
    (ConvTransposeOperator, (4, 3, 4, 4), (4, 5, 5), dict(stride=2, padding=1)),
]


def build(cls, weight_shape, input_shape, kwargs, layout, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(weight_shape)
    if np.dtype(dtype).kind == "c":
        w = w + 1j * rng.standard_normal(weight_shape)
    return cls(w, input_shape, layout=layout, **kwargs)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: f"{layer[0].__name__}{layer[2]}")
def test_pylops_dottest_and_shapes(layer, layout):
    op = build(*layer, layout)
    # dottest draws from numpy's global generator: unseeded, a pair of vectors whose
    # products cancelled to 8e-3 missed rtol=1e-12 by rounding once in many runs
    np.random.seed(4)  # noqa: NPY002
    assert dottest(op, *op.shape, rtol=1e-12)
    assert dottest(op.T, *op.T.shape, rtol=1e-12)
    Lop = pylops.LinearOperator(op)
    assert tuple(Lop.dims) == op.dims and tuple(Lop.dimsd) == op.dimsd
    assert tuple(Lop.H.dims) == op.dimsd and tuple(Lop.H.dimsd) == op.dims
    assert dottest(Lop, *Lop.shape, rtol=1e-12)
    x = np.random.default_rng(1).standard_normal(op.dims)
    y = Lop @ x  # PyLops keeps the shape: an image in, an image out
    assert y.shape == op.dimsd
    np.testing.assert_allclose(y, op.apply(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(Lop.H @ y, op.apply_adjoint(y), rtol=1e-13, atol=1e-13)


def test_pylops_dottest_complex():
    op = build(*LAYERS[0], "channels_last", dtype=np.complex128)
    assert dottest(op, *op.shape, complexflag=3, rtol=1e-12)
    assert dottest(pylops.LinearOperator(op), *op.shape, complexflag=3, rtol=1e-12)


def test_pylops_composes_with_its_own_operators():
    op = build(*LAYERS[0], "channels_first")
    diag = pylops.Diagonal(np.linspace(1, 2, op.shape[0]))
    chain = diag @ pylops.LinearOperator(op)
    x = np.random.default_rng(2).standard_normal(op.shape[1])
    np.testing.assert_allclose(chain @ x, np.linspace(1, 2, op.shape[0]) * (op @ x), rtol=1e-13)
    assert dottest(chain, *chain.shape, rtol=1e-12)


@pytest.mark.parametrize("solver", ["cgls", "lsqr"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_pylops_solvers_match_scipy_lsqr(solver, layout):
    """Damped least squares by PyLops' solver on the shaped operator, against scipy's lsqr
    on the same operator: the same minimizer, and the image shape kept."""
    op = build(ConvOperator, (3, 2, 3, 3), (2, 10, 9),
               dict(padding=1, padding_mode="replicate"), layout, seed=3)
    Lop = pylops.LinearOperator(op)
    rng = np.random.default_rng(4)
    truth = rng.standard_normal(op.dims)
    data = Lop @ truth + 0.01 * rng.standard_normal(op.dimsd)
    damp = 0.1
    if solver == "cgls":
        x = cgls(Lop, data, niter=400, damp=damp, tol=1e-14)[0]
    else:
        x = lsqr(Lop, data, damp=damp, niter=400, atol=1e-14, btol=1e-14)[0]
    assert x.shape == op.dims  # PyLops returns the solution as an image
    reference = spla.lsqr(op, data.ravel(), damp=damp, atol=1e-14, btol=1e-14,
                          iter_lim=1000)[0]
    # the normal equations (A^T A + damp^2 I) x = A^T b are met by both
    residual = op.H @ (op @ x.ravel() - data.ravel()) + damp**2 * x.ravel()
    assert np.linalg.norm(residual) <= 1e-8 * np.linalg.norm(op.H @ data.ravel())
    np.testing.assert_allclose(x.ravel(), reference, rtol=0, atol=1e-8)
    assert np.linalg.norm(x - truth) < 0.5 * np.linalg.norm(truth)
