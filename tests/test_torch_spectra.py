"""sparseconv.torch's differentiable spectra against the numpy path and against PyTorch's own
circular convolution (its dense Jacobian's SVD), gradients by torch.autograd.gradcheck, and the
torch.nn.utils.spectral_norm pitfall the README quotes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import sparseconv as sc

from ._oracles import (
    assert_close,
    definite,
    exact_gram,
    jacobian_matrix,
    random_pointwise_layer,
    torch,
)

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

from torch import nn  # noqa: E402

import sparseconv.torch as sct  # noqa: E402

F64 = torch.float64


def random_periodic(rng, complex_weight=False):
    """A random periodic layer: rank 1-3, stride, dilation, groups; sizes divisible by stride."""
    ndim = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 4, ndim))
    stride = tuple(int(v) for v in rng.integers(1, 3, ndim))
    dilation = tuple(int(v) for v in rng.integers(1, 3, ndim))
    size = tuple(s * int(rng.integers(2, 4 if ndim < 3 else 3)) for s in stride)
    weight = rng.standard_normal((c_out, c_in // groups, *kernel))
    if complex_weight:
        weight = weight + 1j * rng.standard_normal(weight.shape)
    return torch.from_numpy(weight), size, dict(stride=stride, dilation=dilation, groups=groups)


def torch_dense(weight, size, padding_mode="circular", padding=None, **kwargs):
    """The dense matrix of PyTorch's own convolution, by autograd (the layer from nn.Conv*d)."""
    ndim = weight.ndim - 2
    dilation = kwargs.get("dilation", 1)
    dilation = (dilation,) * ndim if isinstance(dilation, int) else dilation
    if padding is None:  # the periodic padding, d*(k-1) in total, split as "same" splits it
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(weight.shape[2:], dilation)]
    else:
        pads = [(padding, padding)] * ndim
    flat = [v for pair in reversed(pads) for v in pair]
    conv = getattr(torch.nn.functional, f"conv{ndim}d")
    mode = "circular" if padding_mode == "circular" else "constant"

    def layer(x):
        return conv(torch.nn.functional.pad(x, flat, mode=mode), weight, **kwargs)

    x = torch.zeros((1, weight.shape[1] * kwargs.get("groups", 1), *size), dtype=weight.dtype)
    j = torch.autograd.functional.jacobian(layer, x)
    return j.reshape(-1, x.numel()).numpy()


def test_singular_values_equal_the_numpy_path_and_pytorch():
    rng = np.random.default_rng(0)
    for case in range(30):
        weight, size, kwargs = random_periodic(rng, complex_weight=case % 5 == 4)
        config = f"{tuple(weight.shape)} on {size} with {kwargs}"
        values = sct.circular_singular_values(weight, size, **kwargs)
        assert values.dtype == F64 and values.shape[0] > 0, config
        numpy_path = sc.singular_values(weight.numpy(), (weight.shape[1] * kwargs["groups"],
                                                          *size), padding=None,
                                        padding_mode="circular", **kwargs)
        assert_close(values.numpy(), numpy_path, config, rtol=1e-12)
        norm = sct.circular_spectral_norm(weight, size, **kwargs)
        assert norm.ndim == 0 and abs(float(norm) - numpy_path[0]) <= 1e-12 * numpy_path[0]
        if case < 12 and not weight.is_complex():  # PyTorch's circular convolution itself
            dense = np.linalg.svd(torch_dense(weight, size, **kwargs), compute_uv=False)
            assert_close(values.numpy(), dense, config, rtol=1e-10)


def test_upper_bound_is_the_circulant_bound_and_bounds_pytorch():
    rng = np.random.default_rng(1)
    for _ in range(16):
        weight, size, kwargs = random_periodic(rng)
        kernel = weight.shape[2:]
        padding = int(rng.integers(0, min(kernel) + 1))
        if any(n + 2 * padding < kwargs["dilation"][i] * (k - 1) + 1
               for i, (n, k) in enumerate(zip(size, kernel))):
            continue  # an empty output: PyTorch refuses the layer
        config = f"{tuple(weight.shape)} on {size}, padding {padding}, {kwargs}"
        bound = sct.spectral_norm_upper(weight, size, padding=padding, **kwargs)
        assert bound.dtype == F64 and bound.ndim == 0
        numpy_path = sc.spectral_norm(weight.numpy(), (weight.shape[1] * kwargs["groups"], *size),
                                      padding=padding, method="bounds", **kwargs)
        assert abs(float(bound) / numpy_path.bounds["circulant"] - 1) <= 1e-12, config
        top = np.linalg.norm(torch_dense(weight, size, "zeros", padding, **kwargs), 2)
        assert top <= float(bound), config


def test_a_1x1_layer_is_bounded_at_one_frequency(monkeypatch):
    """A 1x1 kernel's symbol has the same singular values at every frequency: the bound and
    the circular norm evaluate one (a 256->512 1x1 stride-2 layer on 56x56 took 11 s for its
    penalty bound, at all 784), and still bound PyTorch's own layer, whose dense
    Jacobian gives the norm; the gradient is the top singular pair's of the weight matrix."""
    from sparseconv import _torch_spectra

    seen = []

    def counting(original):
        def counted(weight, geom, *args, **kwargs):
            seen.append(geom.coarse_grid)
            return original(weight, geom, *args, **kwargs)
        return counted

    for name in ("circulant_uppers", "circulant_tops"):
        monkeypatch.setattr(_torch_spectra, name, counting(getattr(_torch_spectra, name)))
    rng = np.random.default_rng(12)
    for case in range(16):
        ndim = 1 + case % 2
        w, c_in, stride, groups, size = random_pointwise_layer(rng, ndim)
        c_out, padding = w.shape[0], int(rng.integers(0, 2))
        weight = torch.from_numpy(w)
        weight.requires_grad_(True)
        kwargs = dict(stride=stride, groups=groups)
        bound = sct.spectral_norm_upper(weight, size, padding=padding, **kwargs)
        norm = sct.circular_spectral_norm(weight, size, **kwargs)
        assert seen == [(1,) * ndim] * 2, case
        seen.clear()
        module = getattr(nn, f"Conv{ndim}d")(c_in, c_out, 1, padding=padding, bias=False,
                                             **kwargs).double()
        with torch.no_grad():
            module.weight.copy_(weight)
        dense = np.linalg.norm(sct.matrix(module, (c_in, *size)).toarray(), 2)
        assert dense <= bound.item() <= dense * (1 + 1e-12), case
        assert abs(norm.item() - dense) <= 1e-12 * dense, case
        matrix = np.zeros((c_out, c_in))  # the block-diagonal weight matrix of the groups
        for g in range(groups):
            rows, cols = slice(g * c_out // groups, (g + 1) * c_out // groups), \
                slice(g * c_in // groups, (g + 1) * c_in // groups)
            matrix[rows, cols] = weight.detach().numpy()[rows].reshape(c_out // groups, -1)
        u, _, vh = np.linalg.svd(matrix)
        (grad,) = torch.autograd.grad(bound, weight)
        top = np.outer(u[:, 0], vh[0])
        expected = np.stack([top[g * c_out // groups:(g + 1) * c_out // groups,
                                 g * c_in // groups:(g + 1) * c_in // groups]
                             for g in range(groups)]).reshape(grad.shape)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=0, atol=1e-10, err_msg=str(case))


def test_upper_bound_of_every_padding_mode_and_of_transposed_layers():
    """spectral_norm_upper read every layer as zero-padded: a reflect-padded all-ones 1-D
    layer got 3.0 for a norm of 3.11, a ConvTranspose2d (weight passed as a convolution's)
    0.734 for 0.739. padding_mode= and transposed= now describe those layers; each bound is
    the numpy path's bound (its "padding x circulant" for padding that copies inputs) and
    holds PyTorch's own layer's norm (its dense Jacobian)."""
    ones = torch.ones((1, 1, 3), dtype=F64)
    assert float(sct.spectral_norm_upper(ones, 6, padding=1, padding_mode="reflect")) >= (
        np.linalg.norm(sc.conv_matrix(ones.numpy(), (1, 6), padding=1,
                                      padding_mode="reflect").toarray(), 2))
    rng = np.random.default_rng(7)
    for case in range(48):
        mode = ("zeros", "circular", "reflect", "replicate")[case % 4]
        ndim = 1 + case % 2
        k = int(rng.integers(1, 4))
        c_in, c_out = (int(v) for v in rng.integers(1, 3, 2))
        n, s = int(rng.integers(k + 1, 7)), int(rng.integers(1, 3))
        p = int(rng.integers(0, min(k, n - 1) + 1))
        weight = torch.from_numpy(rng.standard_normal((c_out, c_in, *(k,) * ndim)))
        kwargs = dict(stride=s, padding=p, padding_mode=mode)
        config = f"{tuple(weight.shape)} on {n}, {kwargs}"
        bound = float(sct.spectral_norm_upper(weight, (n,) * ndim, **kwargs))
        module = getattr(nn, f"Conv{ndim}d")(c_in, c_out, k, bias=False, **kwargs).double()
        with torch.no_grad():
            module.weight.copy_(weight)
        assert np.linalg.norm(sct.matrix(module, (c_in, *(n,) * ndim)).toarray(), 2) <= bound, \
            config
        numpy_path = sc.spectral_norm(weight.numpy(), (c_in, *(n,) * ndim), method="bounds",
                                      **kwargs)
        if numpy_path.method == "bounds":
            # (no padding read and no wrap: the zero-padded layer's bounds, whatever the mode)
            name = "padding x circulant" if mode != "zeros" and (
                p > 0 or "circulant" not in numpy_path.bounds) else "circulant"
            # (circular padding that is not periodic: the smaller of that and its periodic
            # rows' bound)
            expected = min(numpy_path.bounds[name],
                           numpy_path.bounds.get("periodic rows", math.inf))
            assert abs(bound / expected - 1) <= 1e-12, config
        # what the README says it is, in every mode (a new user's trial: it had named
        # bounds["circulant"], which zero padding alone has)
        upper = sc.spectral_norm(weight.numpy(), (c_in, *(n,) * ndim), method="upper",
                                 **kwargs).upper
        assert abs(bound / upper - 1) <= 1e-12, config
        transposed = getattr(nn, f"ConvTranspose{ndim}d")(c_out, c_in, k, stride=s, padding=p,
                                                          output_padding=s - 1,
                                                          bias=False).double()
        with torch.no_grad():
            transposed.weight.copy_(weight)
        if n * s - 2 * p + k - 1 < 1:
            continue
        top = np.linalg.norm(sct.matrix(transposed, (c_out, *(n,) * ndim)).toarray(), 2)
        assert top <= float(sct.spectral_norm_upper(
            weight, (n,) * ndim, stride=s, padding=p, output_padding=s - 1, transposed=True)), \
            config
    with pytest.raises(ValueError, match="padding_mode must be 'zeros' for a transposed"):
        sct.spectral_norm_upper(ones, 6, padding=1, padding_mode="reflect", transposed=True)
    # (a review: an array raised numpy's "truth value of an array is ambiguous")
    with pytest.raises(TypeError, match="padding_mode must be 'zeros' for a transposed"):
        sct.spectral_norm_upper(ones, 6, padding_mode=np.array(["zeros"] * 2), transposed=True)
    with pytest.raises(ValueError, match=r"output_padding applies to a transposed"):
        sct.spectral_norm_upper(ones, 6, padding=1, output_padding=1)
    with pytest.raises(TypeError, match="transposed must be a bool"):
        sct.spectral_norm_upper(ones, 6, transposed="yes")
    with pytest.raises(ValueError, match="padding_mode"):
        sct.spectral_norm_upper(ones, 6, padding_mode="mirror")


@pytest.mark.parametrize("shape, size, kwargs", [
    ((2, 3, 3), (6,), dict(stride=2)),
    ((2, 1, 2, 3), (4, 3), dict(groups=2, dilation=(1, 2))),
    ((1, 2, 2, 2, 2), (2, 2, 2), dict(stride=(2, 1, 1))),
])
def test_gradients_pass_gradcheck(shape, size, kwargs):
    weight = torch.from_numpy(np.random.default_rng(len(shape)).standard_normal(shape))
    weight.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda w: sct.circular_singular_values(w, size, **kwargs), (weight,))
    assert torch.autograd.gradcheck(
        lambda w: sct.circular_spectral_norm(w, size, **kwargs), (weight,))
    assert torch.autograd.gradcheck(
        lambda w: sct.spectral_norm_upper(w, size, padding=1, **kwargs), (weight,))
    assert torch.autograd.gradcheck(  # A = V P: sqrt(copies) times V's bound
        lambda w: sct.spectral_norm_upper(w, size, padding=1, padding_mode="replicate",
                                          **kwargs), (weight,))


def test_the_gradient_of_the_periodic_rows_bound():
    """Circular padding that is not periodic, where the bound of the periodic layer whose
    rows are its rows is the smaller (a 3x3 stride-2 layer of padding 3 on 5: 5.89 against
    12.5): its value is spectral_norm's, and its gradient passes gradcheck."""
    weight = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 1, 3, 3)))
    kwargs = dict(stride=2, padding=3, padding_mode="circular")
    numpy_path = sc.spectral_norm(weight.numpy(), (1, 5, 5), method="upper", **kwargs)
    assert numpy_path.bounds["periodic rows"] < numpy_path.bounds["padding x circulant"] / 2
    bound = sct.spectral_norm_upper(weight, (5, 5), **kwargs)
    assert float(bound) == pytest.approx(numpy_path.bounds["periodic rows"], rel=1e-12)
    assert torch.autograd.gradcheck(lambda w: sct.spectral_norm_upper(w, (5, 5), **kwargs),
                                    (weight.requires_grad_(True),))


def test_gradient_of_the_norm_is_the_top_singular_pair():
    # d sigma / d A = u v^T: the weight's gradient is the adjoint convolution's correlation
    weight = torch.randn((3, 2, 3, 3), dtype=F64, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
    sct.circular_spectral_norm(weight, (6, 6)).backward()
    dense = torch_dense(weight.detach(), (6, 6))
    u, s, vt = np.linalg.svd(dense)
    # the directional derivative along a random direction E: u^T A(E) v
    direction = torch.randn(weight.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    expected = u[:, 0] @ torch_dense(direction, (6, 6)) @ vt[0]
    assert abs(float((weight.grad * direction).sum()) - expected) <= 1e-10 * abs(expected)


def test_float32_weights_keep_their_precision_and_device():
    weight = torch.randn((4, 3, 3, 3), generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
    values = sct.circular_singular_values(weight, (8, 8))
    assert values.dtype == torch.float32 and values.device == weight.device
    exact = sct.circular_singular_values(weight.detach().double(), (8, 8))
    assert_close(values.detach().double().numpy(), exact.numpy(), "float32", rtol=1e-5)
    bound = sct.spectral_norm_upper(weight, (8, 8), padding=1)
    assert bound.dtype == F64  # certified in float64 whatever the weight's dtype
    bound.backward()
    assert weight.grad.dtype == torch.float32 and bool(weight.grad.abs().sum() > 0)


@pytest.mark.parametrize("dtype, scale", [(torch.float64, 1e-300), (torch.float64, 1e160),
                                          (torch.float32, 1e-25), (torch.float32, 1e20)])
def test_circular_norm_of_extreme_scales_is_at_the_right_frequency(dtype, scale):
    """A review: the frequency was chosen by Gram eigenvalues that underflowed (weights of
    1e-300: 0.37 of the norm) or lost digits (float32 at 1e-25: 2% low)."""
    w = (torch.randn(1, 1, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
         * scale).to(dtype)
    expected = sc.singular_values(w.double().numpy(), (1, 8), padding=None,
                                  padding_mode="circular")[0]
    tol = 1e-12 if dtype == F64 else 1e-6
    assert sct.circular_spectral_norm(w, 8).item() == pytest.approx(expected, rel=tol)


@pytest.mark.parametrize("route", ["_top", "_top_by_torch"])
@pytest.mark.parametrize("scale", [1.0, 1.5, 3.0, 6.0, 1e-300, 1e300])
def test_the_located_maximums_estimate_is_the_maximum(scale, route):
    """A review: the scaling before the Gram took 2**(-e-1) for an odd exponent e, halving the
    estimate kept beside the differentiable value. Both routes: the numpy one (CPU weights)
    and torch's own (other devices)."""
    from sparseconv import _torch_spectra
    from sparseconv._torch_spectra import _periodic

    w = torch.randn(2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * scale
    top = getattr(_torch_spectra, route)
    sigma, estimate = top(w, _periodic(w, (8,), 1, 1, 1, "a test"), "a test")
    expected = sc.singular_values(w.numpy(), (2, 8), padding=None, padding_mode="circular")[0]
    assert estimate == pytest.approx(sigma.item(), rel=1e-12)
    assert sigma.item() == pytest.approx(expected, rel=1e-12)


def test_the_two_routes_to_the_maximum_agree_in_value_and_gradient():
    """The CPU locates the maximizing frequency by the numpy route, other devices by torch's
    Gram eigenvalues: the same norm and gradient, on a seeded sweep of periodic layers."""
    from sparseconv._torch_spectra import _periodic, _top, _top_by_torch

    rng = np.random.default_rng(7)
    for case in range(20):
        weight, size, kwargs = random_periodic(rng, complex_weight=case % 5 == 4)
        periodic = _periodic(weight, size, kwargs["stride"], kwargs["dilation"],
                             kwargs["groups"], "a test")
        grads = []
        for top in (_top, _top_by_torch):
            w = weight.clone().requires_grad_(True)
            sigma, _ = top(w, periodic, "a test")
            sigma.backward()
            grads.append((sigma.item(), w.grad))
        (a, grad_a), (b, grad_b) = grads
        config = f"{tuple(weight.shape)} on {size} with {kwargs}"
        assert a == pytest.approx(b, rel=1e-12), config
        # (a gradient is the top pair's: equal unless the top is attained twice, not generic)
        assert torch.allclose(grad_a, grad_b, rtol=1e-8, atol=1e-10 * a), config


def test_the_bounds_gradient_is_the_top_singular_values():
    """The bound's value comes from the numpy route, its gradient from the frequency that
    attains it: on a periodic circular layer the bound is the norm, so both gradients agree."""
    weight = torch.randn((4, 3, 3, 3), dtype=F64, generator=torch.Generator().manual_seed(2))
    grads = []
    for f in (lambda w: sct.spectral_norm_upper(w, (8, 8), padding=1, padding_mode="circular"),
              lambda w: sct.circular_spectral_norm(w, (8, 8))):
        w = weight.clone().requires_grad_(True)
        f(w).backward()
        grads.append(w.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=0)


def test_zero_weight():
    weight = torch.zeros((2, 2, 3), dtype=F64, requires_grad=True)
    bound = sct.spectral_norm_upper(weight, 5, padding=1)
    assert float(bound.detach()) == 0.0
    bound.backward()
    assert float(sct.circular_spectral_norm(weight.detach(), 5)) == 0.0


@pytest.mark.parametrize("ulps", [3, 5, 1000, 10**9, 2**40 + 1])
@pytest.mark.parametrize("options", [{}, {"padding": 1}, {"padding": 1, "padding_mode": "reflect"},
                                     {"padding": 2, "stride": 2}])
def test_subnormal_layers_keep_their_bound_above_the_norm(ulps, options):
    """A review: the bound, scaled back by a power of two into the subnormal range, rounded to
    the nearest float and fell below the norm (2e-323 for a 1 -> 2 layer of weight
    ``3 * 2**-1074``, norm ``3 sqrt(2) 2**-1074 = 2.096e-323``). The exact norm of ``c`` times
    a layer of small integers is ``c`` times its float64 norm within a part in 1e15."""
    import mpmath as mp

    base = torch.tensor([[[1.0, 2.0, -1.0]], [[0.0, 1.0, 3.0]]], dtype=F64)  # 1 -> 2, 3 taps
    weight = base * (ulps * 2.0**-1074)
    assert torch.equal(weight / (ulps * 2.0**-1074), base)  # every entry exact
    dense = sc.conv_matrix(base.numpy(), (1, 6), **options).toarray()
    norm = float(np.linalg.svd(dense, compute_uv=False)[0])
    mp.mp.dps = 40
    truth = mp.mpf(norm) * (1 - mp.mpf(10) ** -14) * ulps * mp.mpf(2) ** -1074  # below it
    bound = sct.spectral_norm_upper(weight, (6,), **options)
    assert mp.mpf(float(bound)) >= truth, (float(bound), truth)
    assert float(bound) >= sc.spectral_norm(weight.numpy(), (1, 6), **options).lower


def test_refusals_name_the_argument():
    weight = torch.ones((2, 2, 3))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        sct.circular_spectral_norm(np.ones((2, 2, 3)), 6)
    with pytest.raises(TypeError, match="got Conv1d: pass its .weight and its arguments, or the "
                                        "model to lipschitz_bounds"):  # (a new user's trial)
        sct.spectral_norm_upper(torch.nn.Conv1d(2, 2, 3), 6)
    with pytest.raises(TypeError, match="floating-point or complex tensor, got torch.int64"):
        sct.circular_spectral_norm(torch.ones((2, 2, 3), dtype=torch.int64), 6)
    with pytest.raises(ValueError, match="weight must be finite"):
        sct.spectral_norm_upper(torch.full((2, 2, 3), float("nan")), 6)
    with pytest.raises(ValueError, match="at least one spatial dimension"):
        sct.circular_singular_values(torch.ones((2, 2)), 6)
    with pytest.raises(ValueError, match="input_size must give one size per spatial dimension"):
        sct.circular_singular_values(weight, (6, 6))
    with pytest.raises(ValueError, match=r"the spatial sizes alone: \(6, 6\), without the "):
        sct.circular_spectral_norm(torch.ones((2, 2, 3, 3)), (2, 6, 6))  # (C, H, W) given
    for f in (sct.circular_singular_values, sct.circular_spectral_norm):  # advice it takes
        with pytest.raises(ValueError, match="divisible by its stride.*pass an input_size that "
                           "each stride divides$"):
            f(weight, 7, stride=2)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        sct.spectral_norm_upper(weight, 6, stride=0)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        sct.circular_spectral_norm(weight, 6, groups=0)
    old = sc.set_memory_limit(2**20)
    try:
        with pytest.raises(sc.MatrixTooLargeError):
            sct.circular_spectral_norm(torch.ones((64, 64, 3, 3)), (64, 64))
    finally:
        sc.set_memory_limit(old)


@pytest.mark.parametrize("f", [sct.circular_singular_values, sct.circular_spectral_norm,
                               sct.spectral_norm_upper])
def test_what_a_hunt_found_refused_badly_is_refused_by_name(f):
    """A hunt: a meta tensor and torch.func.vmap got PyTorch's own errors (``item()``,
    "data-dependent control flow"), and an input of 10**12 x 8 numpy's MemoryError (or 15
    GiB taken, at 100000 x 10000) where the memory limit should refuse it before any work."""
    with pytest.raises(ValueError, match="weight is on the meta device"):
        f(torch.ones((2, 2, 3, 3), device="meta"), (6, 6))
    with pytest.raises(TypeError, match="do not run under torch.func.vmap"):
        torch.func.vmap(lambda w: f(w, (6, 6)))(torch.ones((3, 2, 2, 3, 3)))
    for size in ((10**12, 8), (100_000, 10_000)):
        with pytest.raises(sc.MatrixTooLargeError, match="more than the memory limit"):
            f(torch.ones((2, 2, 3, 3)), size)


def test_one_input_size_stands_for_every_axis():
    """The docstrings say "int or tuple of int", as for stride; an int was refused."""
    weight = torch.randn((3, 2, 3, 3), dtype=torch.float64, generator=torch.Generator()
                         .manual_seed(0))
    for f, kwargs in ((sct.circular_singular_values, {}), (sct.circular_spectral_norm, {}),
                      (sct.spectral_norm_upper, {"padding": 1}),
                      (sct.spectral_norm_upper, {"padding": 1, "transposed": True})):
        assert torch.equal(f(weight, 6, stride=2, **kwargs), f(weight, (6, 6), stride=2,
                                                               **kwargs))


def test_the_periodic_padding_too_large_is_said_to_come_from_padding_none():
    """A hunt: ``padding (4, 5) is too large`` where no padding was passed."""
    with pytest.raises(ValueError, match=r"the periodic padding \(4, 5\) that padding=None "
                       r"implies \(dilation\*\(kernel_size-1\) = 3\*3\) is larger than an "
                       "input size 4"):
        sct.circular_spectral_norm(torch.ones((1, 1, 4)), 4, dilation=3)
    with pytest.raises(ValueError, match="that padding=None implies"):
        sc.singular_values(np.ones((1, 1, 4)), (1, 4), dilation=3, padding=None,
                           padding_mode="circular")


def test_torch_spectral_norm_normalizes_the_reshaped_matrix_not_the_convolution():
    """PyTorch #99149, SNGAN #37: the parametrization divides the weight by the norm of
    W.reshape(C_out, -1); the convolution's norm is another number, up to k times larger."""
    torch.manual_seed(0)
    conv = nn.utils.parametrizations.spectral_norm(
        nn.Conv2d(32, 32, 3, padding=1, bias=False, dtype=F64), n_power_iterations=50)
    for _ in range(5):  # power iterations run in training mode, on each forward
        conv(torch.zeros((1, 32, 16, 16), dtype=F64))
    conv.eval()
    weight = conv.weight.detach()
    reshaped = torch.linalg.matrix_norm(weight.reshape(32, -1), ord=2)
    assert abs(float(reshaped) - 1) < 1e-9
    certified = sc.spectral_norm(weight.numpy(), (32, 16, 16), padding=1)
    assert certified.lower > 1.4  # the layer is not 1-Lipschitz (1.4968 with this seed)
    assert float(sct.spectral_norm_upper(weight, (16, 16), padding=1)) >= certified.lower


@pytest.mark.parametrize("f", [
    lambda w: sct.spectral_norm_upper(w, (6, 6), padding=1),
    lambda w: sct.spectral_norm_upper(w, (6, 6), padding=1, padding_mode="reflect"),
    lambda w: sct.circular_spectral_norm(w, (6, 6)),
])
def test_torch_func_transforms_give_autograds_gradient(f):
    """A review: the numpy route read the weight with .numpy(), which torch.func's wrapped
    tensors refuse ("Cannot access data pointer"): grad, jacrev and jvp all failed."""
    weight = torch.randn((3, 2, 3, 3), dtype=F64, generator=torch.Generator().manual_seed(5))
    w = weight.clone().requires_grad_(True)
    f(w).backward()
    assert torch.allclose(torch.func.grad(f)(weight), w.grad, rtol=1e-12, atol=0)
    assert torch.allclose(torch.func.jacrev(f)(weight), w.grad, rtol=1e-12, atol=0)
    direction = torch.randn(weight.shape, dtype=F64, generator=torch.Generator().manual_seed(6))
    with warnings.catch_warnings():  # (forward AD's own decompositions script a function)
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        value, derivative = torch.func.jvp(f, (weight,), (direction,))
    assert value.item() == f(weight).item()
    assert derivative.item() == pytest.approx((w.grad * direction).sum().item(), rel=1e-12)


def test_compiled_bounds_are_the_eager_bounds():
    """(A new user's trial: under ``torch.compile``, any backend, Dynamo traced the numpy
    route into torch operations of other roundings, and ``spectral_norm_upper`` of a periodic
    layer fell 7e-8 below the layer's exact norm.) The numpy route runs by Python inside a
    compiled function: the bound, the circular norm and their gradients are the eager ones,
    bit for bit."""
    cases = [(0, dict(padding=1, padding_mode="circular")), (6, dict(padding=1)),
             (1, dict(padding=1, padding_mode="reflect")), (2, None)]
    for seed, options in cases:
        weight = torch.randn((4, 3, 3, 3), dtype=F64,
                             generator=torch.Generator().manual_seed(seed))

        def f(w, options=options):
            if options is None:
                return sct.circular_spectral_norm(w, (8, 8))
            return sct.spectral_norm_upper(w, (8, 8), **options)

        torch._dynamo.reset()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (Dynamo's own, on graph breaks)
            w = weight.clone().requires_grad_(True)
            compiled = torch.compile(f, backend="eager")(w)
            compiled.backward()
        eager = weight.clone().requires_grad_(True)
        expected = f(eager)
        expected.backward()
        assert compiled.item() == expected.item()
        assert torch.equal(w.grad, eager.grad)
        dense = sc.conv_matrix(weight.numpy(), (3, 8, 8), **(options or dict(
            padding=1, padding_mode="circular"))).toarray()
        assert compiled.item() >= np.linalg.norm(dense, 2) * (1 - 1e-13 * (options is None))


def test_a_strided_circular_layer_of_n_over_s_outputs_is_bounded_by_its_norm():
    """(A new user's trial: ``Conv2d(3, 4, 4, stride=2, padding=1, padding_mode="circular")``
    on 12x12, the periodic layer itself, was bounded by sqrt(copies) times the unpadded
    layer: 1.95 for a norm of 0.99.) Its bound is its norm, to the rounding allowance."""
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 4, 4, stride=2, padding=1, padding_mode="circular").double()
    dense = np.linalg.norm(sct.matrix(conv, (3, 12, 12)).toarray(), 2)
    bound = sct.spectral_norm_upper(conv.weight, (12, 12), stride=2, padding=1,
                                    padding_mode="circular")
    assert dense <= bound.item() <= dense * (1 + 1e-10)
    assert sct.lipschitz_bounds(nn.Sequential(conv), (3, 12, 12))()["0"].item() == bound.item()


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_a_1x1_layer_of_a_padding_that_copies_is_bounded_by_its_closed_form(mode):
    """(An audit: ``spectral_norm_upper`` of a 1x1 stride-2 layer with circular padding 1 on
    23 positions was sqrt(2) times its norm, of one with replicate padding (2, 1, 2) and
    stride (2, 2, 1) sqrt(3) times, where the docstring promises the closed form
    ``bounds["1x1"]``: the copies of an edge that no output reads counted.) The bound is
    the closed form to a few units in the last place, on random such layers."""
    rng = np.random.default_rng(21)
    for case in range(12):
        ndim = 1 + case % 3
        w, c_in, stride, groups, size = random_pointwise_layer(rng, ndim)
        padding = tuple(int(p) for p in rng.integers(1, 3, ndim))
        # (PyTorch's limits: reflect padding below the size, circular at most the size)
        size = tuple(max(n, p + (mode == "reflect")) for n, p in zip(size, padding))
        options = dict(stride=stride, groups=groups, padding=padding, padding_mode=mode)
        closed = sc.spectral_norm(w, (c_in, *size), **options)
        assert closed.method == "1x1"
        bound = sct.spectral_norm_upper(torch.from_numpy(w), size, **options).item()
        dense = np.linalg.norm(sc.conv_matrix(w, (c_in, *size), **options).toarray(), 2)
        assert dense <= bound <= closed.upper * (1 + 1e-13), (case, w.shape, size, options)


def test_conjugate_and_negated_views_are_read_as_their_values():
    """A review: ``circular_spectral_norm`` raised torch's "Can't call numpy() on Tensor that
    has conjugate bit set" on ``z.conj()`` and its "negative bit" on ``z.conj().imag`` (a
    plain-looking float64 tensor), where the other two functions gave the right values."""
    torch.manual_seed(3)
    z = torch.randn(2, 2, 3, 3, dtype=torch.complex128)
    for view in (z.conj(), z.conj().imag):
        assert view.is_conj() or view.is_neg()
        plain = view.clone().resolve_conj().resolve_neg()
        basis = torch.eye(50, dtype=plain.dtype).reshape(50, 2, 5, 5)  # PyTorch's own layer
        columns = torch.nn.functional.conv2d(torch.nn.functional.pad(basis, (1, 1, 1, 1),
                                                                     mode="circular"), plain)
        truth = np.linalg.norm(columns.reshape(50, -1).numpy(), 2)
        assert float(sct.circular_spectral_norm(view, (5, 5))) == pytest.approx(truth, rel=1e-12)
        assert float(sct.circular_singular_values(view, (5, 5))[0]) == pytest.approx(
            truth, rel=1e-12)
        assert float(sct.spectral_norm_upper(view, (5, 5))) >= truth


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2,
                                   torch.float8_e8m0fnu])
def test_one_byte_floats_are_read_or_refused_by_name(dtype):
    """A review: a float8_e4m3fn weight got torch's "isfinite not implemented for
    'Float8_e4m3fn'"; float8_e5m2 and e8m0fnu, which torch can check, are read (a second
    review: a refusal of every one-byte float refused them too)."""
    torch.manual_seed(0)
    weight = torch.randn(2, 2, 3).to(dtype)
    try:
        torch.isfinite(weight)
    except NotImplementedError:
        assert dtype is torch.float8_e4m3fn  # (torch 2.13: the one of these it cannot check)
        for f in (sct.circular_singular_values, sct.circular_spectral_norm,
                  sct.spectral_norm_upper):
            with pytest.raises(TypeError, match=rf"weight is {dtype}, which torch computes too "
                                                r"little in.*weight\.float\(\)"):
                f(weight, 8)
        return
    assert dtype is not torch.float8_e4m3fn
    held = weight.double()  # the values it holds, exactly
    truth = np.linalg.norm(torch_dense(held, (8,), "zeros", 1), 2)
    assert float(sct.spectral_norm_upper(weight, 8, padding=1)) >= truth
    periodic = np.linalg.norm(torch_dense(held, (8,)), 2)
    assert float(sct.circular_spectral_norm(weight, 8)) == pytest.approx(periodic, rel=1e-6)


# A mutation review of the spectral code (2026-12-05): each test below failed on a
# change of the code that every other test let pass.


def _periodic_dense(w, shape, **options):
    """The explicit matrix of the periodic layer (``padding=None``, circular)."""
    return sc.conv_matrix(w, shape, **options, padding=None, padding_mode="circular").toarray()


def test_the_device_route_to_the_maximum_reads_every_frequency_of_a_complex_weight():
    """_top_by_torch (the route of weights off the CPU) on a complex weight: its symbol at -xi
    is not the conjugate one, so every frequency counts."""
    from sparseconv._torch_spectra import _periodic, _top_by_torch

    rng = np.random.default_rng(15)
    noise = rng.standard_normal((1, 1, 3)) + 1j * rng.standard_normal((1, 1, 3))
    for seed, w in enumerate([np.array([[[0.0, 1.0, 1.0j]]]), np.array([[[0.0, 1.0, -1.0j]]]),
                              noise]):
        # |1 + i e^(i theta)| and |1 - i e^(i theta)| peak at xi = 6 and xi = 2 of 8
        expected = np.linalg.norm(_periodic_dense(w, (1, 8)), 2)
        t = torch.from_numpy(w)
        sigma, estimate = _top_by_torch(t, _periodic(t, (8,), 1, 1, 1, "a test"), "a test")
        assert math.isclose(float(sigma), expected, rel_tol=1e-12), seed
        assert math.isclose(estimate, expected, rel_tol=1e-12), seed


def test_spectral_norm_upper_is_exactly_spectral_norms_upper_bound():
    """The documented value: sparseconv.spectral_norm's own bound, to the last bit (rounded up
    where it must be, and not one ulp more)."""
    rng = np.random.default_rng(16)
    for mode in ("zeros", "reflect", "circular", "replicate"):
        for stride in (1, 2):
            w = rng.standard_normal((2, 2, 3, 3))
            options = dict(padding=1, padding_mode=mode, stride=stride)
            bound = float(sct.spectral_norm_upper(torch.from_numpy(w), (8, 8), **options))
            upper = sc.spectral_norm(w, (2, 8, 8), method="upper", **options).upper
            assert bound == upper, (mode, stride, bound, upper)
            A = sc.conv_matrix(w, (2, 8, 8), **options).toarray()
            assert np.linalg.norm(A, 2) <= bound


@pytest.mark.parametrize("scale", [3 * 2.0**-1074, 1000 * 2.0**-1074, 1e-300, 1e300])
def test_a_subnormal_layers_bound_keeps_its_gradient(scale):
    """Rounded up to the next float in the subnormal range, the bound keeps the gradient of
    the top singular value; sigma is homogeneous of degree 1, so that gradient is the one
    of the same layer at a normal scale (a mutation review: the cotangent, scaled as the
    values, passed through subnormals, 2.2% off at 3 ulps; now the scalings pass it on)."""
    base = torch.tensor([[[1.0, 2.0, -1.0]], [[0.0, 1.0, 3.0]]], dtype=torch.float64)
    normal = base.clone().requires_grad_(True)
    sct.spectral_norm_upper(normal, (6,)).backward()
    tiny = (base * scale).requires_grad_(True)
    sct.spectral_norm_upper(tiny, (6,)).backward()
    assert tiny.grad is not None
    assert torch.allclose(tiny.grad, normal.grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate", "transposed"])
def test_upper_bound_holds_integer_layers_in_exact_arithmetic(mode):
    """The differentiable bound of small-integer layers against PyTorch's own layer in exact
    arithmetic: ``bound^2 I - J^T J`` semidefinite, ``J`` autograd's Jacobian of the module
    (integers, so its Gram matrix is exact), decided in exact rationals -- no allowance for a
    reference's rounding, which the sweeps above give."""
    rng = np.random.default_rng([20261206, len(mode)])
    for case in range(10):
        ndim = 1 + case % 2
        k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        c_in, c_out = (int(v) for v in rng.integers(1, 3, 2))
        n = int(rng.integers(k + 1, 7 if ndim == 1 else 5))
        p = int(rng.integers(0, min(k, n - 1) + 1))
        weight = torch.from_numpy(rng.integers(-2, 3, (c_out, c_in, *(k,) * ndim)).astype(
            np.float64))
        if mode == "transposed":
            p = min(p, k - 1)
            module = getattr(nn, f"ConvTranspose{ndim}d")(c_out, c_in, k, stride=s, padding=p,
                                                          bias=False).double()
            bound = sct.spectral_norm_upper(weight, (n,) * ndim, stride=s, padding=p,
                                            transposed=True)
            shape = (c_out, *(n,) * ndim)
        else:
            module = getattr(nn, f"Conv{ndim}d")(c_in, c_out, k, stride=s, padding=p,
                                                 padding_mode=mode, bias=False).double()
            bound = sct.spectral_norm_upper(weight, (n,) * ndim, stride=s, padding=p,
                                            padding_mode=mode)
            shape = (c_in, *(n,) * ndim)
        with torch.no_grad():
            module.weight.copy_(weight)
        gram = exact_gram(jacobian_matrix(module, shape))
        assert definite(gram, float(bound), strict=False), (mode, case, weight.tolist(), n, p,
                                                            s, float(bound))


def test_taps_that_read_only_zero_padding_are_left_out_of_the_bound():
    """The bound of a layer is the bound of the same layer with its taps that read only zero
    padding set to zero (they are not in its matrix; a soundness review found them scaling
    the certificates), and their gradient is zero. Those taps found by PyTorch itself: the
    ones whose weight gradient is zero for a random input and cotangent. Strided, dilated
    convolutions and transposed convolutions on small inputs with large padding."""
    rng = np.random.default_rng(20261206)
    cases = 0
    while cases < 32:
        ndim, transposed = 1 + cases % 2, cases % 3 == 0
        k = tuple(int(v) for v in rng.integers(2, 5, ndim))
        s, d = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        n = tuple(int(v) for v in rng.integers(1, 5, ndim))
        p = int(rng.integers(0, d * (min(k) - 1) + 1))
        c_in, c_out = (int(v) for v in rng.integers(1, 4, 2))
        kind = f"ConvTranspose{ndim}d" if transposed else f"Conv{ndim}d"
        # (a transposed layer's output_padding up to the dilation: at or past the stride, its
        # adjoint convolution has rows past the layer's inputs, whose taps a review found kept)
        extra = dict(output_padding=int(rng.integers(0, max(s, d)))) if transposed else {}
        module = getattr(nn, kind)(c_in, c_out, k, stride=s, padding=p, dilation=d,
                                   bias=False, **extra).double()
        try:
            y = module(torch.from_numpy(rng.standard_normal((1, c_in, *n))))
        except RuntimeError:  # an empty output or a kernel over the padded input
            continue
        (y * torch.from_numpy(rng.standard_normal(y.shape))).sum().backward()
        unread = (module.weight.grad == 0).all(dim=1).all(dim=0)
        if not unread.any():
            continue
        w = torch.from_numpy(rng.standard_normal(module.weight.shape))
        zeroed = w.masked_fill(unread, 0.0)
        w = w.masked_fill(unread, 1e6).requires_grad_(True)
        options = dict(stride=s, padding=p, dilation=d, transposed=transposed, **extra)
        bound = sct.spectral_norm_upper(w, n, **options)
        assert bound.item() == sct.spectral_norm_upper(zeroed, n, **options).item(), options
        bound.backward()
        assert w.grad is not None and not w.grad[..., unread].any(), options
        assert bound.item() < 1e3, options
        cases += 1


@pytest.mark.parametrize("scale", [0.75, 6.0, 768.0, 1e-100, 1e100])
def test_second_derivatives_of_the_upper_bound_scale_with_the_weight(scale):
    """A new user's trial: the scalings by a power of two were carried as the identity, so
    the bound's Hessian was its value at the scaled weight, 2**e times the truth
    (gradgradcheck failed on every weight of largest entry above 1). The bound is homogeneous
    of degree 1: its Hessian scales as 1 / scale; checked by gradgradcheck and by central
    differences of the gradient."""
    base = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 2, 3, 3)))
    base = base / base.abs().max()
    v = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 2, 3, 3)))

    def bound(w):
        return sct.spectral_norm_upper(w, (6, 6), padding=1)

    def gradient(w):
        w = w.detach().requires_grad_(True)
        return torch.autograd.grad(bound(w), w)[0]

    w = (base * scale).requires_grad_(True)
    g = torch.autograd.grad(bound(w), w, create_graph=True)[0]
    hv = torch.autograd.grad((g * v).sum(), w)[0]
    eps = 1e-6 * scale
    fd = (gradient(w + eps * v) - gradient(w - eps * v)) / (2 * eps)
    assert torch.allclose(hv, fd, rtol=1e-5, atol=1e-7 * float(fd.abs().max()))
    if scale == 6.0:
        assert torch.autograd.gradgradcheck(bound, (w,))
        model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=F64))  # lipschitz_bounds'
        with torch.no_grad():
            model[0].weight.copy_(w.detach())
        first = torch.autograd.grad(sct.lipschitz_bounds(model, (2, 6, 6))()["0"],
                                    model[0].weight, create_graph=True)[0]
        second = torch.autograd.grad((first * v).sum(), model[0].weight)[0]
        assert torch.allclose(second, hv, rtol=1e-12, atol=0)


def test_second_derivatives_of_extreme_weights_are_refused_by_name():
    """Beyond 2**+-500 the scalings' cotangents would leave float64's normal range: the
    first derivative is carried as before (unchanged by the scale), a second refused."""
    base = torch.tensor([[[1.0, 2.0, -1.0]], [[0.0, 1.0, 3.0]]], dtype=F64)
    w = (base * 1e-200).requires_grad_(True)
    g = torch.autograd.grad(sct.spectral_norm_upper(w, (6,)), w, create_graph=True)[0]
    with pytest.raises(RuntimeError, match=r"no second derivative for a weight whose largest "
                                           r"entry is beyond 2\*\*\+-500"):
        g.sum().backward()


def test_a_linear_weight_is_refused_with_its_convolution():
    """A new user's trial: a Linear's (out, in) weight gave no hint of ``weight[:, :, None]``."""
    with pytest.raises(ValueError, match=r"got shape \(10, 256\); a Linear's weight \(out, in\) "
                                         r"is a 1x1 convolution's, weight\[:, :, None\]"):
        sct.spectral_norm_upper(torch.ones(10, 256, dtype=F64), 1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_extreme_weights_keep_torch_funcs_reverse_mode_and_refuse_forward_mode_by_name():
    """A review: beyond 2**+-500 ``torch.func.grad`` and ``jacrev`` failed (an old-style
    autograd function), and forward mode raised torch's own error."""
    base = torch.tensor([[[1.0, 2.0, -1.0]], [[0.0, 1.0, 3.0]]], dtype=F64)
    w = base * 1e-200

    def bound(w):
        return sct.spectral_norm_upper(w, (6,))

    x = w.clone().requires_grad_(True)
    bound(x).backward()
    assert torch.equal(torch.func.grad(bound)(w), x.grad)
    assert torch.equal(torch.func.jacrev(bound)(w), x.grad)
    with pytest.raises(RuntimeError, match="no forward-mode derivative .* beyond 2\\*\\*\\+-500"):
        torch.func.jvp(bound, (w,), (torch.ones_like(w),))
