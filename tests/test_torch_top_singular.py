"""The largest singular value's first and second derivatives (sparseconv._torch_top_singular),
against autograd through ``torch.linalg.svdvals`` where that is finite, against central
differences of gradients where it is not, and through the public differentiable spectra."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import sparseconv.torch as sct  # noqa: E402
from sparseconv._torch_spectra import _periodic, _top_by_torch  # noqa: E402
from sparseconv._torch_top_singular import largest_singular_value  # noqa: E402

F64 = torch.float64


def _random(shape, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=dtype, generator=generator)


def _hvp(f, w, v):
    """The Hessian of ``f`` at ``w`` times ``v``, by double backward."""
    w = w.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(w), w, create_graph=True)
    return torch.autograd.grad((g.conj() * v).real.sum() if g.is_complex()
                               else (g * v).sum(), w)[0]


def _central(f, w, v, eps=1e-6):
    """The same by central differences of first derivatives."""
    def gradient(x):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(f(x), x)[0]
    return (gradient(w + eps * v) - gradient(w - eps * v)) / (2 * eps)


@pytest.mark.parametrize("shape, dtype", [((5, 3), F64), ((3, 5), F64), ((4, 4), F64),
                                          ((4, 4), torch.complex128),
                                          ((2, 3, 6), torch.complex128),
                                          ((3, 6, 2), F64)])
def test_value_gradient_and_hessian_are_svdvals_where_its_are_finite(shape, dtype):
    h = _random(shape, dtype, 0)
    v = _random(shape, dtype, 1)

    def ours(x):
        return largest_singular_value(x).sum()

    def torchs(x):
        return torch.linalg.svdvals(x)[..., 0].sum()

    assert torch.allclose(ours(h), torchs(h), rtol=1e-15, atol=0)
    x = h.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(ours, (x,))
    assert torch.autograd.gradgradcheck(ours, (x,))
    first = torch.autograd.grad(ours(x), x)[0]
    assert torch.allclose(first, torch.autograd.grad(torchs(x), x)[0], rtol=0, atol=1e-14)
    assert torch.allclose(_hvp(ours, h, v), _hvp(torchs, h, v), rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])
def test_repeated_zero_values_leave_the_hessian_finite_and_exact(shape):
    """A review: through svdvals, second derivatives were NaN wherever any two values repeat
    (here the zeros of a rank-2 matrix), though the largest is simple."""
    h = torch.zeros(shape, dtype=F64)
    h[:2, :2] = torch.tensor([[2.0, 1.0], [0.5, -1.0]], dtype=F64)
    v = _random(shape, F64, 2)
    assert not torch.isfinite(_hvp(lambda x: torch.linalg.svdvals(x)[0], h, v)).all()
    ours = _hvp(largest_singular_value, h, v)
    assert torch.allclose(ours, _central(largest_singular_value, h, v), rtol=0, atol=1e-8)
    assert torch.autograd.gradgradcheck(largest_singular_value, (h.requires_grad_(True),))


# (forward AD's own decompositions script a function)
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torch_func_hessians_are_the_double_backward_hessian():
    """``torch.func.hessian`` (forward over reverse: the functions' jvp) and ``jacrev`` twice
    (reverse over reverse, vmapped) give the same matrix as double backward."""
    h = _random((4, 3), F64, 3)
    reference = torch.func.hessian(lambda x: torch.linalg.svdvals(x)[0])(h)
    assert torch.allclose(torch.func.hessian(largest_singular_value)(h), reference, atol=1e-14)
    twice = torch.func.jacrev(torch.func.jacrev(largest_singular_value))(h)
    assert torch.allclose(twice, reference, atol=1e-14)
    direction = _random((4, 3), F64, 4)
    _, tangent = torch.func.jvp(largest_singular_value, (h,), (direction,))
    assert tangent.item() == pytest.approx(
        (torch.func.grad(largest_singular_value)(h) * direction).sum().item(), rel=1e-14)


def test_third_derivatives_are_refused_by_name():
    h = _random((4, 3), F64, 5).requires_grad_(True)
    (g,) = torch.autograd.grad(largest_singular_value(h), h, create_graph=True)
    (hv,) = torch.autograd.grad((g * _random((4, 3), F64, 6)).sum(), h, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives of a largest singular value"):
        torch.autograd.grad(hv.sum(), h)


def _shortcut():
    """ResNet's 1x1 stride-2 shortcut, small: its polyphase matrices (4 x 8) repeat zero."""
    return _random((4, 2, 1, 1), F64, 7)


def _pruned():
    """A 3x3 layer whose second input channel is pruned: each frequency's matrix repeats 0."""
    w = _random((2, 3, 3, 3), F64, 8)
    w[:, 1] = 0
    return w


@pytest.mark.parametrize("weight, f", [
    (_shortcut(), lambda w: sct.circular_spectral_norm(w, (4, 4), stride=2)),
    (_shortcut(), lambda w: sct.spectral_norm_upper(w, (4, 4), stride=2)),
    (_shortcut(), lambda w: _top_by_torch(  # (the route of weights off the CPU)
        w, _periodic(w, (4, 4), 2, 1, 1, "a test"), "a test")[0]),
    (_pruned(), lambda w: sct.circular_spectral_norm(w, (4, 4))),
    (_pruned(), lambda w: sct.spectral_norm_upper(w, (4, 4), padding=1)),
    (_pruned(), lambda w: sct.spectral_norm_upper(w, (4, 4), padding=1,
                                                  padding_mode="reflect")),
])
def test_the_spectra_have_finite_exact_hessians_where_zeros_repeat(weight, f):
    """A review found NaN Hessian-vector products of ResNet's 1x1 stride-2 shortcut and of a
    pruned channel (torch's SVD backward divides by the differences of the repeated zeros);
    now finite, equal to central differences of the gradient, and passing gradgradcheck."""
    v = _random(weight.shape, F64, 9)
    hv = _hvp(f, weight, v)
    assert torch.isfinite(hv).all()
    fd = _central(f, weight, v)
    assert torch.allclose(hv, fd, rtol=1e-5, atol=1e-7 * float(fd.abs().max()))
    assert torch.autograd.gradgradcheck(f, (weight.clone().requires_grad_(True),))


def test_lipschitz_bounds_second_derivatives_through_a_shortcut():
    """The same through the model-level bounds (a gradient penalty on a ResNet block)."""
    model = nn.Sequential(nn.Conv2d(2, 4, 1, stride=2, bias=False, dtype=F64))
    with torch.no_grad():
        model[0].weight.copy_(_shortcut())
    bounds = sct.lipschitz_bounds(model, (2, 4, 4))
    weight = model[0].weight
    (g,) = torch.autograd.grad(bounds()["0"], weight, create_graph=True)
    v = _random(weight.shape, F64, 10)
    (hv,) = torch.autograd.grad((g * v).sum(), weight)
    expected = _hvp(lambda w: sct.spectral_norm_upper(w, (4, 4), stride=2), weight, v)
    assert torch.isfinite(hv).all()
    assert torch.allclose(hv, expected, rtol=1e-12, atol=0)
    assert np.isfinite(hv.numpy()).all()
