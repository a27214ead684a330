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
@pytest.mark.parametrize("shape, dtype", [((4, 3), F64), ((3, 5), F64), ((2, 3, 4), F64),
                                          ((3, 3), torch.complex128)])
def test_every_mode_and_nesting_gives_the_same_second_derivatives(shape, dtype):
    """``torch.func.hessian`` (forward over reverse), ``jacrev`` twice, ``jacfwd`` twice (a
    review: zero, where a custom function's jvp went unrecorded by the outer level),
    ``torch.autograd.forward_ad`` (a review: torch's internal assert on a view) and the
    gradchecks of forward mode agree with autograd through svdvals."""
    h = _random(shape, dtype, 3)

    def ours(x):
        return largest_singular_value(x).sum()

    def torchs(x):
        return torch.linalg.svdvals(x)[..., 0].sum()

    x = h.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(ours, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(ours, (x,), check_fwd_over_rev=True)
    if dtype.is_complex:  # (torch.func's jacobians are of real functions of real inputs)
        return
    reference = torch.func.hessian(torchs)(h)
    for transform in (torch.func.hessian,
                      lambda f: torch.func.jacrev(torch.func.jacrev(f)),
                      lambda f: torch.func.jacfwd(torch.func.jacfwd(f)),
                      lambda f: torch.func.jacfwd(torch.func.jacrev(f))):
        assert torch.allclose(transform(ours)(h), reference, rtol=0, atol=1e-13)
    direction = _random(shape, dtype, 4)
    _, tangent = torch.func.jvp(ours, (h,), (direction,))
    expected = (torch.func.grad(torchs)(h) * direction).sum()
    assert tangent.item() == pytest.approx(expected.item(), rel=1e-13)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(h, direction)
        tangent = torch.autograd.forward_ad.unpack_dual(ours(dual)).tangent
    assert tangent.item() == pytest.approx(expected.item(), rel=1e-13)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_third_derivatives_are_refused_where_reverse_mode_takes_them():
    """Triple backward raises by name; ``jacrev`` of a Hessian (under vmap, which cannot
    raise on values) gives NaN, never the polynomial's zero."""
    h = _random((4, 3), F64, 5).requires_grad_(True)
    (g,) = torch.autograd.grad(largest_singular_value(h), h, create_graph=True)
    (hv,) = torch.autograd.grad((g * _random((4, 3), F64, 6)).sum(), h, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives of a largest singular value"):
        torch.autograd.grad(hv.sum(), h)
    third = torch.func.jacrev(torch.func.hessian(largest_singular_value))(h.detach())
    assert torch.isnan(third).all()


def test_a_zero_matrix_has_value_zero_a_subgradient_and_a_zero_hessian():
    """A zero weight: sigma is 0 (its NaN coefficients made the value NaN, a test caught);
    the gradient is svdvals' choice of u v^H, of norm 1; the second derivative zero (sigma
    is linear on each side of zero along every line)."""
    h = torch.zeros((3, 2), dtype=F64, requires_grad=True)
    value = largest_singular_value(h)
    assert value.item() == 0.0
    (g,) = torch.autograd.grad(value, h, create_graph=True)
    assert torch.linalg.matrix_norm(g, 2).item() == pytest.approx(1.0, rel=1e-15)
    (hv,) = torch.autograd.grad((g * _random((3, 2), F64, 7)).sum(), h)
    assert torch.equal(hv, torch.zeros_like(hv))


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


def test_a_repeated_largest_value_keeps_the_value_and_finite_derivatives():
    """A review: a Dirac-initialised convolution (every singular value 1) made the
    resolvent's coefficients 1/0, and the value NaN. Where the largest value repeats no
    derivative exists: the first is svdvals' choice (of norm 1), the second finite."""
    for h in (torch.eye(3, dtype=F64), torch.tensor([[2.0, 0.0], [0.0, -2.0], [0.0, 0.0]],
                                                    dtype=F64)):
        x = h.clone().requires_grad_(True)
        value = largest_singular_value(x)
        assert value.item() == torch.linalg.svdvals(h)[0].item()
        (g,) = torch.autograd.grad(value, x, create_graph=True)
        assert torch.linalg.matrix_norm(g, 2).item() == pytest.approx(1.0, rel=1e-15)
        (hv,) = torch.autograd.grad(g.sum(), x)
        assert torch.isfinite(hv).all()
    weight = torch.zeros((3, 3, 3, 3), dtype=F64)
    nn.init.dirac_(weight)
    w = weight.clone().requires_grad_(True)
    for f in (lambda w: sct.circular_spectral_norm(w, (6, 6)),
              lambda w: sct.spectral_norm_upper(w, (6, 6), padding=1)):
        value = f(w)
        assert value.item() == pytest.approx(1.0, rel=1e-9)
        (g,) = torch.autograd.grad(value, w, create_graph=True)
        (hv,) = torch.autograd.grad((g * weight).sum(), w)
        assert torch.isfinite(g).all() and torch.isfinite(hv).all()


def test_what_a_second_review_found():
    """A subnormal top value (1 / sigma overflows) made the value NaN; an orthogonal matrix's
    values, 1 apart by an ulp, gave Hessians of 4e15; batched reverse mode of the older vmap
    (``is_grads_batched``, gradcheck's batched checks) raised; an infinite cotangent from the
    loss raised the third derivatives' error on a first derivative."""
    h = torch.tensor([[3.0, 1.0], [0.5, 2.0]], dtype=F64)
    for scale, dtype in ((1e-310, F64), (1e-40, torch.float32), (1e-312, torch.complex128)):
        x = (h * scale).to(dtype).requires_grad_(True)
        value = largest_singular_value(x)
        assert value.item() == torch.linalg.svdvals(x.detach())[0].item() > 0
        (g,) = torch.autograd.grad(value, x)
        assert torch.isfinite(g).all()
    q, _ = torch.linalg.qr(_random((6, 6), F64, 11))
    x = q.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(largest_singular_value(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * _random((6, 6), F64, 12)).sum(), x)
    assert float(hv.abs().max()) < 100  # (2e15 where the ulp apart values were resolved)
    x = _random((4, 3), F64, 13).requires_grad_(True)
    assert torch.autograd.gradcheck(largest_singular_value, (x,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(largest_singular_value, (x,), check_batched_grad=True)
    (g,) = torch.autograd.grad(largest_singular_value(x) * torch.inf, x)
    assert not torch.isfinite(g).all()
