"""sparseconv.torch's fixed layers (``sparseconv._torch_fixed_layers``: pooling, BatchNorm,
padding, resampling, patches, reshapes; ``_torch_kinds``, ``_torch_module``,
``_torch_patches``), from a mutation review, against the modules themselves:
``module.double().eval()`` in float64 for the matrix, ``torch.autograd`` vector-Jacobian
products for the adjoint, the dense numpy SVD of the autograd Jacobian for the spectra."""

from __future__ import annotations

import numpy as np
import pytest

from ._oracles import jacobian_matrix, torch

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

from torch import nn  # noqa: E402

import sparseconv.torch as sct  # noqa: E402


def _jacobian(module, shape):
    """The module's Jacobian in float64, by torch.autograd (a dense matrix); the module is
    made float64 and put in eval mode, in place."""
    return jacobian_matrix(module.double().eval(), shape)


def _check_module(module, shape, seed=0):
    """matrix, operator (and its adjoint), affine and output shape equal the module's own."""
    module = module.double().eval()
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((1, *shape)))
    with torch.no_grad():
        y = module(x)
    a = sct.matrix(module, shape).toarray()
    np.testing.assert_allclose(a, _jacobian(module, shape), rtol=0, atol=1e-12)
    f = sct.affine(module, shape)
    np.testing.assert_allclose(f(x.numpy().ravel()), y.numpy().ravel(), rtol=1e-12, atol=1e-12)
    # adjoint: a vector-Jacobian product by torch.autograd
    u = torch.from_numpy(rng.standard_normal(y.shape))
    xg = x.clone().requires_grad_(True)
    (vjp,) = torch.autograd.grad(module(xg), xg, u)
    op = sct.operator(module, shape)
    np.testing.assert_allclose(op.rmatvec(u.numpy().ravel()), vjp.numpy().ravel(),
                               rtol=1e-12, atol=1e-12)
    net = sct.network_operator(module, shape)
    assert tuple(net.output_shape) == tuple(y.shape[1:])
    from sparseconv._torch_layers import _layer

    assert tuple(_layer(module, shape).output_shape) == tuple(y.shape[1:])
    return a


# --- pooling --------------------------------------------------------------------------------
@pytest.mark.parametrize("module, shape", [
    (lambda: nn.AvgPool1d(2, 2, 1, ceil_mode=True), (2, 5)),
    (lambda: nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 6)),
    (lambda: nn.AvgPool1d(3, 3, 1, ceil_mode=True), (1, 7)),
    (lambda: nn.AvgPool2d((3, 2), (2, 1), (1, 0), ceil_mode=True, count_include_pad=False),
     (2, 6, 5)),
    (lambda: nn.AvgPool2d(3, 2, 1, divisor_override=5), (1, 5, 6)),
    (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 5, 6)),
    (lambda: nn.AvgPool2d((3, 2), (2, 3), 1), (2, 5, 7)),
    (lambda: nn.AvgPool3d(2, 2, 1, ceil_mode=True, count_include_pad=False), (1, 3, 4, 5)),
    (lambda: nn.AvgPool3d((2, 1, 3), 1), (1, 2, 3, 3)),
])
def test_avg_pool_is_the_modules_own(module, shape):
    """Mutants this catches: _torch_fixed_layers.py: the ceil_mode output size
    ``(out - 1) * s >= n + p`` -> ``> n + p`` / ``>= n``, ``(s - 1)`` -> ``s``;
    ``count_include_pad`` / ``divisor_override`` dropped; ``n < k`` -> ``n <= k`` (avg_pool3d on
    an input of its kernel's size is accepted by PyTorch)."""
    _check_module(module(), shape)


@pytest.mark.parametrize("module, shape", [
    (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 6, 6)),
    (lambda: nn.AvgPool2d((3, 2), (2, 1), 0), (2, 6, 5)),
    (lambda: nn.AvgPool1d(3, 2, 1, ceil_mode=True), (1, 8)),
    (lambda: nn.AvgPool2d(2, 2, 1, divisor_override=3), (1, 6, 6)),
])
def test_avg_pool_spectral_norm_contains_the_jacobians(module, shape):
    """Mutants this catches: _torch_fixed_layers.py: ``plain = count_include_pad or ...`` ->
    ``plain = True``, ``not ceil_mode`` dropped, ``1 / prod(kernel)`` -> ``1 / max(kernel)``:
    the depthwise-convolution route then bounds another matrix than the module's."""
    module = module()
    true = np.linalg.norm(_jacobian(module, shape), 2)
    result = sct.spectral_norm(module, shape)
    assert result.lower <= true * (1 + 1e-9) and result.upper >= true * (1 - 1e-9)
    assert result.upper <= true * 1.01 + 1e-12
    values = np.sort(np.asarray(sct.singular_values(module, shape)))[::-1]
    dense = np.linalg.svd(_jacobian(module, shape), compute_uv=False)
    np.testing.assert_allclose(values[:dense.size], dense[:values.size], atol=1e-9)


# --- normalization --------------------------------------------------------------------------
def _batchnorm(cls, channels, affine=True, eps=1e-5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    bn = cls(channels, eps=eps, affine=affine)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) * 0.3 + 0.01)
        if affine:
            bn.weight.copy_(torch.randn(channels, generator=gen))
            bn.bias.copy_(torch.randn(channels, generator=gen))
    return bn.eval()


@pytest.mark.parametrize("cls, shape, affine, eps", [
    (nn.BatchNorm1d, (3,), True, 0.25),
    (nn.BatchNorm1d, (3, 4), True, 0.5),
    (nn.BatchNorm2d, (3, 2, 3), True, 0.1),
    (nn.BatchNorm2d, (2, 3, 2), False, 0.3),
    (nn.BatchNorm3d, (2, 2, 1, 3), True, 1e-5),
    (nn.BatchNorm2d, (2, 2, 2), True, 0.0),
    (nn.SyncBatchNorm, (2, 3, 2), True, 0.2),
])
def test_batchnorm_is_the_modules_own(cls, shape, affine, eps):
    """Mutants this catches: _torch_fixed_layers.py: eps dropped (``sqrt(var)``), the shift's
    sign or its ``* gamma`` dropped, ``eps >= 0`` -> ``eps > 0`` (PyTorch takes eps=0),
    BatchNorm1d's (C,) input refused; _torch_layer_base.py: ``np.repeat`` -> ``np.tile``."""
    _check_module(_batchnorm(cls, shape[0], affine, eps), shape)


def test_instance_norm_with_running_statistics_is_the_modules_own():
    """InstanceNorm with track_running_stats=True in eval mode: the running statistics'
    per-channel affine map, as BatchNorm's."""
    norm = nn.InstanceNorm1d(3, affine=True, track_running_stats=True)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(3, generator=gen))
        norm.running_var.copy_(torch.rand(3, generator=gen) + 0.1)
        norm.weight.copy_(torch.randn(3, generator=gen))
        norm.bias.copy_(torch.randn(3, generator=gen))
    _check_module(norm.eval(), (3, 4))


def test_batchnorm_spectral_norm_contains_the_jacobians():
    """A mutant this catches: _torch_fixed_layers.py: BatchNorm's ``repeat=spatial`` -> 1 (the
    depthwise route's count of copies) and a shift in the scale."""
    bn = _batchnorm(nn.BatchNorm2d, 3, eps=0.2)
    shape = (3, 2, 3)
    dense = np.linalg.svd(_jacobian(bn, shape), compute_uv=False)
    result = sct.spectral_norm(bn, shape)
    assert result.lower <= dense[0] * (1 + 1e-12) and result.upper >= dense[0] * (1 - 1e-12)
    values = np.sort(np.asarray(sct.singular_values(bn, shape)))[::-1]
    np.testing.assert_allclose(values, dense, rtol=1e-12)


def test_batchnorm_of_another_width_or_rank_is_refused():
    """A mutant this catches: _torch_fixed_layers.py: the ``num_features`` check dropped."""
    bn = _batchnorm(nn.BatchNorm2d, 3)
    with pytest.raises(ValueError, match="num_features"):
        sct.matrix(bn, (4, 2, 2))
    with pytest.raises(ValueError, match="num_features"):
        sct.matrix(_batchnorm(nn.BatchNorm1d, 3), (3, 2, 2))


def test_batchnorm_zero_variance_and_zero_eps_is_refused():
    """A mutant this catches: _torch_fixed_layers.py: ``var + eps > 0`` -> ``>= 0`` (a zero
    divisor: PyTorch's forward gives infinity)."""
    bn = _batchnorm(nn.BatchNorm1d, 2, eps=0.0)
    with torch.no_grad():
        bn.running_var[1] = 0.0
    with pytest.raises(ValueError, match="running_var"):
        sct.matrix(bn, (2, 3))


# --- padding --------------------------------------------------------------------------------
@pytest.mark.parametrize("module, shape", [
    (lambda: nn.ReflectionPad1d((2, 1)), (2, 5)),
    (lambda: nn.ReflectionPad2d((1, 2, 0, 3)), (1, 4, 5)),
    (lambda: nn.ReplicationPad2d((3, 0, 1, 2)), (2, 3, 4)),
    (lambda: nn.CircularPad2d((2, 1, 0, 3)), (1, 4, 5)),
    (lambda: nn.CircularPad1d((-1, 2)), (1, 5)),
    (lambda: nn.CircularPad2d((1, -2, -1, 2)), (1, 4, 5)),
    (lambda: nn.ReflectionPad1d((-1, 3)), (1, 5)),
    (lambda: nn.ReplicationPad1d((2, -3)), (1, 6)),
    (lambda: nn.ZeroPad2d((1, 0, 2, 3)), (2, 3, 4)),
    (lambda: nn.ConstantPad2d((0, 2, 1, 0), 1.5), (2, 3, 4)),
    (lambda: nn.ConstantPad1d((1, -2), -0.5), (2, 5)),
    (lambda: nn.ReplicationPad3d((1, 0, 0, 2, 1, 1)), (1, 2, 3, 3)),
    (lambda: nn.ReflectionPad3d((0, 1, 2, 0, 1, 0)), (1, 2, 3, 4)),
    (lambda: nn.CircularPad3d((1, 0, 0, 2, 1, 0)), (1, 2, 3, 3)),
])
def test_padding_is_the_modules_own(module, shape):
    """Mutants this catches: _torch_fixed_layers.py: PyTorch's (lo, hi) swapped, the axes not
    reversed, circular crop-then-pad vs pad-then-crop swapped, ``max(hi, 0)`` ->
    ``max(lo, 0)``, the crop's ``hi`` replaced by ``lo``, the fill value dropped."""
    _check_module(module(), shape)


def test_padding_that_crops_to_nothing_or_is_odd_is_refused():
    """Mutants this catches: _torch_fixed_layers.py: ``min(out) < 1`` -> ``< 0``; the odd
    length check dropped."""
    from sparseconv._torch_fixed_layers import _padding

    with pytest.raises(ValueError, match="crops"):
        sct.matrix(nn.ZeroPad1d((-2, -1)), (1, 3))
    with pytest.raises(ValueError, match="pairs"):
        _padding("pad", (1, 4), (1, 2, 3), "zeros")


# --- resampling -----------------------------------------------------------------------------
@pytest.mark.parametrize("module, shape", [
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), (1, 3, 4)),
    (lambda: nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=False), (1, 3, 4)),
    (lambda: nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True), (2, 3, 4)),
    (lambda: nn.Upsample(scale_factor=1.7, mode="linear", align_corners=False,
                         recompute_scale_factor=True), (1, 5)),
    (lambda: nn.Upsample(scale_factor=(1.5, 2.5), mode="bicubic", align_corners=True),
     (1, 3, 4)),
    (lambda: nn.Upsample(size=(4, 3, 5), mode="trilinear", align_corners=False), (1, 2, 2, 3)),
    (lambda: nn.Upsample(scale_factor=2, mode="nearest"), (2, 2, 3)),
    (lambda: nn.Upsample(size=7, mode="nearest-exact"), (1, 5)),
    (lambda: nn.AdaptiveAvgPool1d(4), (2, 7)),
    (lambda: nn.AdaptiveAvgPool2d((3, 5)), (1, 5, 7)),
    (lambda: nn.AdaptiveAvgPool2d((None, 2)), (1, 3, 5)),
    (lambda: nn.AdaptiveAvgPool3d((2, 3, 2)), (1, 3, 4, 5)),
    (lambda: nn.UpsamplingBilinear2d(scale_factor=2), (1, 2, 3)),
    (lambda: nn.UpsamplingNearest2d(size=(3, 5)), (1, 2, 3)),
    (lambda: nn.PixelShuffle(2), (8, 2, 3)),
    (lambda: nn.PixelUnshuffle(2), (2, 4, 6)),
])
def test_resampling_is_the_modules_own(module, shape):
    """Mutants this catches: _torch_fixed_layers.py: ``align_corners`` or
    ``recompute_scale_factor`` dropped; PixelShuffle's / PixelUnshuffle's output height and
    width swapped (same product, other shape)."""
    _check_module(module(), shape)


def test_upsample_recompute_scale_factor_output_shape():
    """A mutant this catches: _torch_fixed_layers.py: ``recompute_scale_factor`` dropped from
    the output size (``floor(5 * 1.7) = 8`` either way; the matrix then differs)."""
    _check_module(nn.Upsample(scale_factor=1.7, mode="nearest", recompute_scale_factor=True),
                  (1, 5))


def test_an_unsupported_upsample_mode_is_a_type_error_naming_it():
    """A mutant this catches: _torch_fixed_layers.py: the mode check dropped."""
    up = nn.Upsample(scale_factor=2, mode="bilinear")
    up.mode = "bogus"
    with pytest.raises(TypeError, match="bogus"):
        sct.matrix(up, (1, 3, 3))


# --- patches --------------------------------------------------------------------------------
@pytest.mark.parametrize("module, shape", [
    (lambda: nn.ChannelShuffle(2), (6, 2, 2)),
    (lambda: nn.ChannelShuffle(3), (6, 1, 2)),
    (lambda: nn.ChannelShuffle(4), (8, 3)),
    (lambda: nn.Unfold((2, 3), dilation=(2, 1), padding=(1, 0), stride=(1, 2)), (2, 5, 6)),
    (lambda: nn.Unfold(2, stride=2, padding=1), (1, 3, 4)),
    (lambda: nn.Fold((5, 6), (2, 3), dilation=(2, 1), padding=(1, 0), stride=(1, 2)),
     (12, 10)),
    (lambda: nn.Fold((4, 4), 2, stride=1, padding=1), (8, 25)),
])
def test_patches_are_the_modules_own(module, shape):
    """Mutants this catches: _torch_fixed_layers.py: ChannelShuffle's transpose dropped or its
    reshape's axes swapped; Unfold's output ``(C * taps, L)`` swapped; Fold/Unfold's dilation
    or padding dropped."""
    _check_module(module(), shape)


def test_patches_of_mismatched_shapes_are_refused():
    """Mutants this catches: _torch_fixed_layers.py: ChannelShuffle's ``C % groups`` check,
    Fold's ``C % taps`` and block-count checks dropped (each as PyTorch refuses them)."""
    with pytest.raises(ValueError, match="divisible"):
        sct.matrix(nn.ChannelShuffle(4), (6, 2))
    with pytest.raises(ValueError, match="divisible"):
        sct.matrix(nn.Fold((3, 3), 2), (6, 4))
    with pytest.raises(ValueError, match="blocks"):
        sct.matrix(nn.Fold((3, 3), 2), (8, 5))


# --- reshapes -------------------------------------------------------------------------------
def test_reshapes_have_the_modules_output_shape():
    """Mutants this catches: _torch_fixed_layers.py: Unflatten's -1 not resolved; Flatten's
    ``end < start`` check, Unflatten's dim-0 and non-positive size checks dropped."""
    _check_module(nn.Unflatten(2, (2, -1)), (3, 8))
    _check_module(nn.Flatten(2, 3), (2, 3, 4))
    _check_module(nn.Dropout(0.3), (2, 3))
    with pytest.raises(ValueError, match="batch"):
        sct.matrix(nn.Flatten(2, 1), (2, 3, 4))
    with pytest.raises(ValueError, match="batch"):
        sct.matrix(nn.Unflatten(0, (1, 1)), (2, 3))
    with pytest.raises(ValueError, match="split"):
        sct.matrix(nn.Unflatten(1, (0, 2)), (2, 3))


# --- which modules are refused --------------------------------------------------------------
def test_training_mode_and_non_linear_modules_are_refused():
    """Mutants this catches: _torch_kinds.py: BatchNorm's or Dropout's training-mode refusal
    dropped, InstanceNorm without running statistics accepted, ReLU added to the supported
    modules (read as the identity), a subclass with its own forward read as its base."""
    bn = nn.BatchNorm2d(2)
    bn.train()
    with pytest.raises(ValueError, match="training mode"):
        sct.matrix(bn, (2, 3, 3))
    with pytest.raises(ValueError, match="training mode"):
        sct.matrix(nn.Dropout(0.5).train(), (2, 3))
    with pytest.raises(TypeError, match="InstanceNorm2d"):
        sct.matrix(nn.InstanceNorm2d(2).eval(), (2, 3, 3))
    with pytest.raises(TypeError, match="ReLU"):
        sct.matrix(nn.ReLU(), (2, 3))
    with pytest.raises(TypeError, match="ReLU"):
        sct.network_operator(nn.Sequential(nn.Identity(), nn.ReLU()), (2, 3))

    class Doubled(nn.AvgPool1d):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(TypeError, match="subclass"):
        sct.matrix(Doubled(2), (1, 4))


def test_affine_in_channels_last_has_its_offset_in_that_layout():
    """A mutant this catches: _torch_module.py: affine's offset taken in channels_first
    whatever the layout (a BatchNorm's per-channel shift in the wrong order)."""
    bn = _batchnorm(nn.BatchNorm2d, 3, eps=0.1).double()
    shape = (3, 2, 2)
    x = torch.randn((1, *shape), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = bn(x)[0].permute(1, 2, 0).numpy().ravel()
    f = sct.affine(bn, shape, layout="channels_last")
    np.testing.assert_allclose(f(x[0].permute(1, 2, 0).numpy().ravel()), y, rtol=1e-12,
                               atol=1e-12)
    a = sct.matrix(bn, shape, dtype=np.float32, layout="channels_last")
    assert a.dtype == np.float32
    np.testing.assert_allclose(a @ x[0].permute(1, 2, 0).numpy().ravel(),
                               y - f.bias.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_a_kwdefault_changed_in_place_is_seen():
    """A mutant this catches: _torch_patches.py: a function's ``__kwdefaults__`` left out of
    what is watched for an in-place change (a default swapped under torch's code)."""
    import torch.nn.functional as F

    from sparseconv._torch_patches import replaced_functions

    fn = F.triplet_margin_with_distance_loss
    saved = fn.__kwdefaults__
    assert replaced_functions() is None
    try:
        fn.__kwdefaults__ = dict(saved)
        assert "changed in place" in (replaced_functions() or "")
    finally:
        fn.__kwdefaults__ = saved
    assert replaced_functions() is None


def test_a_closure_cell_changed_in_place_withholds_the_bound():
    """A mutant this catches: _torch_patches.py: a closure cell's contents left out of what
    is watched (``cells.append(cell.cell_contents)`` -> ``cells.append(_MISSING)``).
    ``F.max_pool2d`` is a closure over the two functions it dispatches to; its cell made a
    function of 50 times the pooling leaves ``F.max_pool2d`` itself the same object, and
    the chain's bound (a 1-Lipschitz max pooling assumed) would be below the map's
    constant. The oracle: the patched chain's Jacobian, by autograd, against the bound
    the report would print."""
    import torch.nn.functional as F

    from sparseconv._torch_patches import replaced_functions

    chain = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.MaxPool2d(2)).double()
    chain.eval()
    cells = F.max_pool2d.__closure__
    index = next(i for i, cell in enumerate(cells)
                 if getattr(cell.cell_contents, "__name__", "") == "_max_pool2d")
    saved = cells[index].cell_contents

    def fifty_times(*args, **kwargs):
        return 50.0 * saved(*args, **kwargs)

    assert replaced_functions() is None
    sound = sct.lipschitz_report(chain, (1, 6, 6))
    assert sound.network_upper is not None
    cells[index].cell_contents = fifty_times
    try:
        jac = _jacobian(chain, (1, 6, 6))
        assert np.linalg.norm(jac, 2) > 10 * sound.network_upper  # (what it would miss)
        assert "changed in place" in (replaced_functions() or "")
        report = sct.lipschitz_report(chain, (1, 6, 6))
        assert report.network_upper is None
        assert "torch.nn.functional.max_pool2d was changed in place" in report.reason
    finally:
        cells[index].cell_contents = saved
    assert replaced_functions() is None


def test_a_bound_method_replaced_by_another_is_seen(monkeypatch):
    """A mutant this catches: _torch_patches.py: ``_same_descriptor`` taking any two bound
    methods for one (``value == was`` dropped). No name torch's code calls through holds a
    bound method when sparseconv.torch is imported (torch 2.13), so the watch's snapshot is
    retaken with one planted: a bound method of one object replaced by another of the
    object's methods must read as replaced, a fresh lookup of the same one must not."""
    from sparseconv import _torch_patches

    class Scale:
        def once(self, x):
            return x

        def fifty(self, x):
            return 50.0 * x

    scale = Scale()
    monkeypatch.setattr(torch._C._nn, "_sparseconv_review_scale", scale.once, raising=False)
    monkeypatch.setattr(_torch_patches, "_AT_IMPORT", _torch_patches._snapshot())
    monkeypatch.setattr(_torch_patches, "_INSIDES_AT_IMPORT",
                        _torch_patches._insides_snapshot())
    monkeypatch.setattr(torch._C._nn, "_sparseconv_review_scale", scale.once)
    assert torch._C._nn._sparseconv_review_scale is not _torch_patches._AT_IMPORT[
        ("torch._C._nn", "_sparseconv_review_scale")]  # (a fresh bound method: the same one)
    assert _torch_patches.replaced_functions() is None
    monkeypatch.setattr(torch._C._nn, "_sparseconv_review_scale", scale.fifty)
    assert _torch_patches.replaced_functions() == (
        "torch._C._nn._sparseconv_review_scale was replaced after sparseconv.torch was "
        "imported")


def test_a_stateful_parametrization_in_training_mode_is_refused():
    """A mutant this catches: _torch_kinds.py: the refusal of a parametrization with state in
    training mode dropped (``parametrizations.spectral_norm``'s power iteration updates its
    vectors on every read of the weight: the matrix read would not be the next call's)."""
    from torch.nn.utils import parametrizations

    conv = parametrizations.spectral_norm(nn.Conv1d(2, 2, 3, bias=False))
    conv.train()
    with pytest.raises(ValueError, match="training mode"):
        sct.matrix(conv, (2, 5))
    conv.eval()
    assert sct.matrix(conv, (2, 5)).shape == (6, 10)


def test_a_pruned_layer_is_read_as_its_next_call_after_a_step():
    """A mutant this catches: _torch_kinds.py: ``parameter`` not recomputing a pruned weight
    (``weight_orig * weight_mask``): after a step on ``weight_orig`` the stored ``weight`` is
    the last call's, not what the next forward uses."""
    from torch.nn.utils import prune

    gen = torch.Generator().manual_seed(5)
    conv = nn.Conv1d(1, 1, 3, bias=False).double()
    prune.l1_unstructured(conv, "weight", amount=1)
    with torch.no_grad():
        conv.weight_orig.add_(torch.randn(conv.weight_orig.shape, generator=gen,
                                          dtype=torch.float64))
    x = torch.randn((1, 1, 6), generator=gen, dtype=torch.float64)
    a = sct.matrix(conv, (1, 6))
    with torch.no_grad():
        y = conv(x)
    np.testing.assert_allclose(a @ x.numpy().ravel(), y.numpy().ravel(), rtol=1e-12,
                               atol=1e-12)


def test_torch_channels_last_3d_names_the_channels_last_layout():
    """A mutant this catches: _torch_module.py: ``torch.channels_last_3d`` no longer read as
    ``layout="channels_last"`` (refused)."""
    pool = nn.AvgPool3d(2, 1)
    shape = (2, 2, 3, 2)
    ours = sct.matrix(pool, shape, layout=torch.channels_last_3d).toarray()
    np.testing.assert_array_equal(ours, sct.matrix(pool, shape, layout="channels_last").toarray())


@pytest.mark.parametrize("pad, n", [(2, 3), (15, 5), (2, 1)])
def test_a_replication_pads_norm_is_certified_in_exact_rationals(pad, n):
    """A mutant this catches: _torch_module_spectra.py: the dense route's upper bound taken as
    LAPACK's largest singular value itself (``up(dense_upper(...) + entries, 2)`` ->
    ``float(s[0])``). ``ReplicationPad1d((pad, 0))`` copies the first input ``pad + 1``
    times: ``A^T A`` is diagonal, with ``pad + 1`` as its largest entry, read off autograd's
    Jacobian in integers, and the norm is ``sqrt(pad + 1)``; LAPACK's value for ``sqrt(3)``
    and ``sqrt(16)`` lies one rounding below it (1.7320508075688772 and
    3.9999999999999996). The interval holds it, checked in exact rationals."""
    from fractions import Fraction

    module = nn.ReplicationPad1d((pad, 0))
    jac = _jacobian(module, (1, n))
    gram = jac.T @ jac
    assert np.array_equal(gram, np.diag(np.diag(gram)))  # (integers: exact in float64)
    top = int(np.diag(gram).max())
    assert top == pad + 1
    result = sct.spectral_norm(module, (1, n))
    assert Fraction(result.lower) ** 2 <= top <= Fraction(result.upper) ** 2, result
