"""sparseconv.testing: the helpers pass on correct operators and fail on wrong ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import sparseconv as sc
from sparseconv import ConvOperator, ConvTransposeOperator, conv_matrix
from sparseconv.testing import assert_layer_matches_torch, dottest

from ._oracles import (
    random_layer,
    random_transpose_layer,
    requires_torch,
)


class WrongAdjoint(ConvOperator):
    """A convolution whose adjoint is off by a small relative amount at one entry."""

    def _apply_adjoint(self, Y):
        out = super()._apply_adjoint(Y).copy()
        out.flat[0] *= 1.001
        return out


class WrongWeight(ConvOperator):
    """Forward and adjoint of one weight (so the dot test passes), reported with another."""

    def __init__(self, weight, input_shape, **kwargs):
        super().__init__(weight, input_shape, **kwargs)
        changed = np.array(weight, dtype=float, copy=True)
        changed.flat[0] += 0.5
        self._weight = changed


# -- dottest -----------------------------------------------------------------------------------
@pytest.mark.parametrize("complexflag", [0, 1, 2, 3])
def test_dottest_passes_on_correct_operators(complexflag):
    rng = np.random.default_rng(complexflag)
    for seed in range(6):
        layer = random_layer(np.random.default_rng(seed), dtype=np.complex128 if seed % 2 else
                             np.float64)
        op = ConvOperator(layer.weight, layer.input_shape, **layer.kwargs)
        assert dottest(op, complexflag=complexflag, rng=rng) is True, layer
        matrix = spla.aslinearoperator(conv_matrix(layer.weight, layer.input_shape,
                                                   **layer.kwargs))
        assert dottest(matrix, nr=op.shape[0], nc=op.shape[1], rng=rng), layer


def test_dottest_fails_on_a_wrong_adjoint():
    op = WrongAdjoint(np.ones((2, 1, 3)), (1, 6), padding=1)
    with pytest.raises(AssertionError, match=r"<A x, y> = .* but <x, A\^H y> = "):
        dottest(op, rng=0)
    assert dottest(op, rng=0, raiseerror=False) is False
    # a plain matrix with a deliberately wrong rmatvec: the transpose of another matrix
    rng = np.random.default_rng(1)
    M, N = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    wrong = spla.LinearOperator((5, 4), matvec=lambda x: M @ x, rmatvec=lambda y: N.T @ y,
                                dtype=float)
    with pytest.raises(AssertionError):
        dottest(wrong, rng=2)
    # conjugation forgotten: right for real vectors, wrong for complex ones
    C = rng.standard_normal((5, 4)) + 1j * rng.standard_normal((5, 4))
    unconjugated = spla.LinearOperator((5, 4), matvec=lambda x: C @ x,
                                       rmatvec=lambda y: C.T @ y, dtype=complex)
    with pytest.raises(AssertionError):
        dottest(unconjugated, complexflag=3, rng=3)


def test_dottest_checks_its_arguments():
    op = ConvOperator(np.ones((1, 1, 3)), (1, 6))
    with pytest.raises(ValueError, match="nr=5"):
        dottest(op, nr=5)
    with pytest.raises(ValueError, match="complexflag"):
        dottest(op, complexflag=4)
    with pytest.raises(TypeError, match="op must be a LinearOperator or a 2-D matrix, got str"):
        dottest("abc")
    # (a new user's trial: rtol=-1 and NaN failed as a failed dot test, True was taken as
    # complexflag=1, an int as raiseerror, and numpy's SeedSequence message named no rng)
    for rtol in (-1, 0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^rtol must be a finite number in"):
            dottest(op, rtol=rtol)
    with pytest.raises(ValueError, match="complexflag"):
        dottest(op, complexflag=True)
    with pytest.raises(TypeError, match="^raiseerror must be a bool, got 1"):
        dottest(op, raiseerror=1)
    with pytest.raises(TypeError, match="^rng must be a numpy.random.Generator"):
        dottest(op, rng="x")


@requires_torch
def test_assert_layer_matches_torch_checks_its_arguments():
    """A layer PyTorch has no function for (4 spatial dimensions: no conv4d), and bad
    rtol, n_inputs and rng, each refused by name (a new user's trial: AttributeError, and
    numpy's reshape and SeedSequence messages)."""
    with pytest.raises(ValueError, match="has 4 spatial dimensions"):
        assert_layer_matches_torch(ConvOperator(np.ones((1, 1, 2, 2, 2, 2)), (1, 3, 3, 3, 3)))
    op = ConvOperator(np.ones((1, 1, 3, 3)), (1, 5, 5))
    for n_inputs in (0, -1):
        with pytest.raises(ValueError, match="^n_inputs must be a positive integer"):
            assert_layer_matches_torch(op, n_inputs=n_inputs)
    with pytest.raises(ValueError, match="^rtol must be"):
        assert_layer_matches_torch(op, rtol=-1)
    with pytest.raises(TypeError, match="^rng must be"):
        assert_layer_matches_torch(op, rng="x")


@requires_torch
def test_assert_layer_matches_torch_sizes_its_batch_and_reads_its_tuple(memory_limit):
    """A review: n_inputs=20,000 on a 2x64x64 layer took 5 GB and 39 s to fail in torch's
    allocator (10**9: numpy's MemoryError), and a tuple without its keyword arguments got
    "'NoneType' object is not iterable"."""
    import sparseconv as sc

    w = np.ones((2, 2, 3, 3))
    memory_limit(2**30)
    for n_inputs in (20_000, 10**9):
        with pytest.raises(sc.MatrixTooLargeError, match=rf"^{n_inputs} random inputs of "
                           r"<ConvOperator \(2, 64, 64\) -> \(2, 62, 62\).*use a smaller "
                           r"n_inputs"):
            assert_layer_matches_torch((w, (2, 64, 64), {}), n_inputs=n_inputs)
    assert_layer_matches_torch((w, (2, 64, 64), {}), n_inputs=20)
    with pytest.raises(sc.MatrixTooLargeError, match="random inputs of <ConvTransposeOperator"):
        assert_layer_matches_torch((w, (2, 64, 64), {"transposed": True}), n_inputs=20_000)
    with pytest.raises(TypeError, match=r"^layer must be \(weight, input_shape, kwargs\) with "
                       r"kwargs a mapping .*got kwargs=None"):
        assert_layer_matches_torch((w, (2, 64, 64), None))


def test_dottest_takes_a_matrix():
    """A sparse array or a dense one, as scipy's aslinearoperator takes it (a new user's trial:
    dottest(conv_matrix(...)) raised AttributeError)."""
    w = np.random.default_rng(7).standard_normal((2, 3, 3, 3))
    A = conv_matrix(w, (3, 6, 5), padding=1)
    assert dottest(A, rng=0) and dottest(A.toarray(), rng=0)


# -- assert_layer_matches_torch ----------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("seed", range(20))
def test_assert_layer_matches_torch_passes_on_correct_layers(seed):
    rng = np.random.default_rng(600 + seed)
    dtype = np.complex128 if seed % 5 == 4 else np.float64
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7 - seed % 3, dtype=dtype)
    kwargs = dict(layer.kwargs, flip=bool(seed % 2))
    assert_layer_matches_torch(ConvOperator(layer.weight, layer.input_shape, **kwargs), rng=seed)
    assert_layer_matches_torch((layer.weight, layer.input_shape, kwargs), rng=seed, n_inputs=1)
    w, input_shape, tkwargs = random_transpose_layer(rng)
    assert_layer_matches_torch(ConvTransposeOperator(w, input_shape, **tkwargs), rng=seed)
    assert_layer_matches_torch((w, input_shape, dict(tkwargs, transposed=True)), rng=seed)


@requires_torch
def test_assert_layer_matches_torch_per_side_and_float32():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 2, 3, 2))
    assert_layer_matches_torch(ConvOperator(w, (2, 6, 5), padding=((2, 0), (0, 1)),
                                            padding_mode="replicate"))
    assert_layer_matches_torch(ConvTransposeOperator(w, (3, 4, 4), stride=2,
                                                     padding=((1, 0), (0, 1))))
    assert_layer_matches_torch(ConvOperator(w.astype(np.float32), (2, 6, 5), padding=1))


@requires_torch
@pytest.mark.parametrize("transposed", [False, True])
def test_assert_layer_matches_torch_reads_a_channels_last_layout(transposed):
    """A channels-last operator (correct: its README example checks it against the
    channels-first one) failed here by 14.8: its flat vectors were read channels first."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((4, 2, 3, 3))
    shape = (4, 5, 5) if transposed else (2, 5, 5)
    build = ConvTransposeOperator if transposed else ConvOperator
    options = dict(stride=2, output_padding=1) if transposed else dict(padding=1,
                                                                      padding_mode="reflect")
    last = build(w, shape, layout="channels_last", **options)
    assert_layer_matches_torch(last, rng=1)
    assert_layer_matches_torch((w, shape, dict(options, layout="channels_last",
                                               **({"transposed": True} if transposed else {}))))


@requires_torch
def test_assert_layer_matches_torch_fails_on_wrong_layers():
    w = np.random.default_rng(8).standard_normal((2, 2, 3, 3))
    with pytest.raises(AssertionError, match="adjoint"):
        assert_layer_matches_torch(WrongAdjoint(w, (2, 6, 6), padding=1))
    with pytest.raises(AssertionError, match="forward product"):
        assert_layer_matches_torch(WrongWeight(w, (2, 6, 6), padding=1))
    # flipping is not a detail: the flipped layer is not the unflipped one
    flipped = ConvOperator(w, (2, 6, 6), padding=1, flip=True)
    object.__setattr__(flipped.geometry, "flip", False)
    with pytest.raises(AssertionError, match="forward product"):
        assert_layer_matches_torch(flipped)
    with pytest.raises(TypeError, match="layer must be"):
        assert_layer_matches_torch(conv_matrix(w, (2, 6, 6)))
    # (a new user's trial: "False", a true string, built and passed a transposed layer)
    with pytest.raises(TypeError, match="^transposed must be a bool, got 'False'"):
        assert_layer_matches_torch((w, (2, 6, 6), dict(transposed="False", stride=2)))


@requires_torch
def test_the_reference_is_pytorch_s_own_module_where_one_expresses_the_layer():
    """A new user's trial: the reference was built from the operator's own geometry (its
    padding split, its output size), which would copy a mistake there into it. Where the
    padding is the same on both sides (and the kernel not flipped), PyTorch's module is the
    reference, its output size and padding mode its own."""
    import torch

    from sparseconv.testing import _torch_module

    w = np.random.default_rng(9).standard_normal((4, 2, 3, 3))
    weight = torch.from_numpy(w)
    module = _torch_module(ConvOperator(w, (2, 7, 7), stride=2, padding=1,
                                        padding_mode="reflect"), weight, torch)
    assert isinstance(module, torch.nn.Conv2d) and module.padding_mode == "reflect"
    transposed = _torch_module(ConvTransposeOperator(w, (4, 4, 4), stride=2, padding=1,
                                                     output_padding=1), weight, torch)
    assert isinstance(transposed, torch.nn.ConvTranspose2d)
    assert transposed.output_padding == (1, 1)
    for per_side in (ConvOperator(w, (2, 7, 7), padding=((0, 1), 1)),
                     ConvOperator(w, (2, 7, 7), padding=1, flip=True)):
        assert _torch_module(per_side, weight, torch) is None
        assert_layer_matches_torch(per_side)  # by F.pad and the functional call


def test_testing_does_not_import_torch_and_says_how_to_get_it():
    """Run in a fresh interpreter in which torch cannot be imported."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, sparseconv.testing as t, sparseconv\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n"
        "    t.assert_layer_matches_torch(sparseconv.ConvOperator(np.ones((1, 1, 3)), (1, 5)))\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert "pip install torch" in result.stdout


class _Recording:
    """A 3 x 2 real matrix as an operator that records the vectors it is given."""

    def __init__(self, drop_imaginary_input=False):
        self.M = np.arange(6.0).reshape(3, 2) - 2.5
        self.shape, self.dtype, self.seen = self.M.shape, np.float64, []
        self.drop = drop_imaginary_input

    def matvec(self, x):
        self.seen.append(("x", np.iscomplexobj(x)))
        return self.M @ (x.real if self.drop else x)

    def rmatvec(self, y):
        self.seen.append(("y", np.iscomplexobj(y)))
        return self.M.T @ y


@pytest.mark.parametrize("flag,x_complex,y_complex", [(0, False, False), (1, True, False),
                                                     (2, False, True), (3, True, True)])
def test_dottest_complexflag_is_pylops(flag, x_complex, y_complex):
    """A mutant this catches: testing.py: ``x`` complex for ``complexflag in (1, 3)`` ->
    ``(1, 2)``: PyLops' flags are 1 complex x, 2 complex y, 3 both. An operator that drops
    the imaginary part of its input passes with a real x, and must fail once x is
    complex."""
    op = _Recording()
    assert sc.testing.dottest(op, complexflag=flag, rng=0)
    assert op.seen == [("x", x_complex), ("y", y_complex)]
    wrong = _Recording(drop_imaginary_input=True)
    assert sc.testing.dottest(wrong, complexflag=flag, raiseerror=False, rng=0) is not x_complex


@requires_torch
def test_assert_layer_matches_torch_catches_a_relative_error_of_1e_7():
    """A mutant this catches: testing.py: _assert_close's scale ``max(1.0, |expected|)`` ->
    ``max(1e6, ...)``: a forward product off by a relative 1e-7 (a float32 rounding, say)
    is no match at the default rtol=1e-10; the correct operator is one."""
    from sparseconv import ConvOperator

    class Scaled(ConvOperator):
        def _matmat(self, X):
            return super()._matmat(X) * (1 + 1e-7)

    w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    sc.testing.assert_layer_matches_torch(ConvOperator(w, (3, 5, 5), padding=1), rng=0)
    with pytest.raises(AssertionError, match="forward product"):
        sc.testing.assert_layer_matches_torch(Scaled(w, (3, 5, 5), padding=1), rng=0)


@requires_torch
def test_assert_layer_matches_torch_names_a_wrong_output_shape():
    """A mutant this catches: testing.py: _assert_close's shape check dropped: an operator
    that declares its output (C, W, H) instead of (C, H, W) -- the same size -- fails with
    the documented AssertionError naming the shapes (not numpy's broadcasting
    ValueError)."""
    from sparseconv import ConvOperator

    class Transposed(ConvOperator):
        @property
        def dimsd(self):
            c, h, w = super().dimsd
            return (c, w, h)

    w = np.random.default_rng(0).standard_normal((2, 1, 1, 1))
    with pytest.raises(AssertionError, match=r"shape \(3, 2, 4, 3\), PyTorch's \(3, 2, 3, 4\)"):
        sc.testing.assert_layer_matches_torch(Transposed(w, (1, 3, 4)), rng=0)
