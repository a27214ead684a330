"""sparseconv.torch.lipschitz_bounds: every weighted layer of a network, bounded with autograd.

Each bound is checked against the norm of PyTorch's own layer (the SVD of its dense Jacobian,
by torch.autograd) and against spectral_norm_upper of the same weight; the gradients against
the single-layer function's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ._oracles import definite, exact_gram, torch

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

from torch import nn  # noqa: E402

import sparseconv.torch as sct  # noqa: E402

from . import _networks  # noqa: E402

F64 = torch.float64


def jacobian_norm(module: nn.Module, input_shape, **call) -> float:
    """The spectral norm of the module's linear part, from PyTorch's own forward."""
    x = torch.zeros((1, *input_shape), dtype=F64)
    bias = getattr(module, "bias", None)
    with torch.no_grad():
        saved = None if bias is None else bias.clone()
        if bias is not None:
            bias.zero_()
        try:
            jac = torch.autograd.functional.jacobian(lambda v: module(v, **call), x)
        finally:
            if bias is not None:
                bias.copy_(saved)
    out = jac.reshape(-1, x.numel()).numpy()
    return float(np.linalg.svd(out, compute_uv=False)[0])


class _Mixed(nn.Module):
    """Every weighted kind and padding mode; a layer called on two shapes; an output_size."""

    def __init__(self):
        super().__init__()
        self.reflect = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
        self.circular = nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode="circular",
                                  groups=1)
        self.strided = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2, bias=False)
        self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)
        self.shared = nn.Conv2d(3, 3, 3, padding="same", padding_mode="replicate")
        self.head = nn.Linear(3, 5)

    def forward(self, x):
        x = torch.tanh(self.circular(self.reflect(x)))
        y = self.up(self.strided(x), output_size=(10, 10))  # output_padding 1
        y = self.shared(y) + self.shared(self.shared(y)[..., ::2, ::2]).mean()
        return self.head(y.mean((2, 3)))


def test_each_bound_is_the_layers_bound_and_above_pytorchs_norm():
    model = _networks.randomize(_Mixed())
    bounds = sct.lipschitz_bounds(model, (2, 9, 9))
    assert bounds.names == ("reflect", "circular", "strided", "up", "shared", "head")
    assert bounds["shared"] == ((3, 10, 10), (3, 5, 5)) and bounds["up"] == ((4, 5, 5),)
    values = bounds()
    shapes = {"reflect": (2, 9, 9), "circular": (3, 9, 9), "strided": (4, 9, 9),
              "up": (4, 5, 5), "head": (3,)}
    for name, shape in shapes.items():
        module = model.get_submodule(name)
        call = {"output_size": (10, 10)} if name == "up" else {}
        norm = jacobian_norm(module, shape, **call)
        assert norm <= values[name].item() <= 2.5 * norm, (name, norm, values[name].item())
    w = model.reflect.weight
    assert values["reflect"].item() == sct.spectral_norm_upper(
        w, (9, 9), padding=1, padding_mode="reflect").item()
    assert values["up"].item() == sct.spectral_norm_upper(
        model.up.weight, (5, 5), stride=2, padding=1, transposed=True, output_padding=1).item()
    # a layer called on two shapes: the larger bound, each above that call's norm
    both = [jacobian_norm(model.shared, shape) for shape in bounds["shared"]]
    assert max(both) <= values["shared"].item()
    assert values["shared"].item() == max(sct.spectral_norm_upper(
        model.shared.weight, shape[1:], padding="same", padding_mode="replicate").item()
        for shape in bounds["shared"])
    # a Linear's bound is its weight's norm, rounded up
    top = torch.linalg.matrix_norm(model.head.weight, 2).item()
    assert top <= values["head"].item() <= top * (1 + 1e-12)


def test_the_penalty_back_propagates_as_each_layers_bound():
    model = _networks.randomize(_Mixed())
    bounds = sct.lipschitz_bounds(model, (2, 9, 9))
    sum(bounds().values()).backward()
    grads = {name: model.get_submodule(name).weight.grad.clone() for name in bounds}
    model.zero_grad()
    sct.spectral_norm_upper(model.strided.weight, (9, 9), stride=2, padding=1,
                            groups=2).backward()
    assert torch.allclose(grads["strided"], model.strided.weight.grad, rtol=1e-12, atol=0)
    assert all(bool(g.abs().sum() > 0) for g in grads.values())
    assert model.reflect.bias.grad is None  # (the bias is no part of the norm)


def test_bounds_follow_the_weights_without_a_new_trace():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3)).double()
    bounds = sct.lipschitz_bounds(model, (2, 8, 8))
    before = bounds()
    with torch.no_grad():
        model[2].weight.mul_(2.0)  # an optimizer step, in effect
    after = bounds()
    assert after["0"].item() == before["0"].item()
    assert after["2"].item() == pytest.approx(2 * before["2"].item(), rel=1e-12)


def test_a_model_in_training_mode_keeps_its_statistics():
    model = _networks.randomize(_networks.TinyUNet()).train()
    stats = model.enc[1].running_mean.clone(), int(model.enc[1].num_batches_tracked)
    bounds = sct.lipschitz_bounds(model, (1, 8, 8))
    assert bounds.names == ("enc.0", "bottleneck.0", "up", "dec.0", "out")
    assert model.training and torch.equal(model.enc[1].running_mean, stats[0])
    assert int(model.enc[1].num_batches_tracked) == stats[1]
    for name, value in bounds().items():
        module = model.get_submodule(name)
        shape = bounds[name][0]
        assert jacobian_norm(module, shape) <= value.item(), name


def test_a_parametrized_weight_gets_the_gradient_of_its_parameters():
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(2, 2, 3, padding=1).double())
    bounds = sct.lipschitz_bounds(nn.Sequential(conv), (2, 16))
    bounds()["0"].backward()
    originals = conv.parametrizations.weight
    assert originals.original0.grad is not None and originals.original1.grad is not None


def test_refusals_name_what_is_wrong():
    model = nn.Sequential(nn.Conv2d(2, 2, 3)).double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (torch.jit.script's own)
        scripted = torch.jit.script(model)
    with pytest.raises(TypeError, match="lipschitz_bounds needs the eager model"):
        sct.lipschitz_bounds(scripted, (2, 6, 6))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        sct.lipschitz_bounds(np.ones(3), (2, 6, 6))
    with pytest.raises(ValueError, match="input_shape"):
        sct.lipschitz_bounds(model, (2, -6, 6))
    assert len(sct.lipschitz_bounds(nn.Sequential(nn.ReLU()), (2, 6))) == 0


@pytest.mark.parametrize("seed", range(6))
def test_a_transposed_layer_with_output_padding_not_below_its_stride_is_bounded(seed):
    """A hunt: ``ConvTranspose*d(..., dilation=2, output_padding >= stride)`` (PyTorch allows
    it where dilation does) was refused. It is the adjoint of the first rows of the
    convolution from its output by its weight: that convolution's bound bounds it. Against
    the dense norm of the module's matrix, as a module and as ``spectral_norm_upper``."""
    rng = np.random.default_rng(seed)
    stride = int(rng.integers(1, 3))
    output_padding = stride + int(rng.integers(0, 2))
    dilation = output_padding + 1 + int(rng.integers(0, 2))
    torch.manual_seed(seed)
    layer = nn.ConvTranspose2d(2, 3, 3, stride=stride, dilation=dilation, padding=1,
                               output_padding=output_padding).double()
    shape = (2, 5, int(rng.integers(4, 7)))
    true = np.linalg.norm(sct.matrix(layer, shape).toarray(), 2)
    bound = sct.lipschitz_bounds(nn.Sequential(layer), shape)()["0"]
    assert true <= bound.item(), (true, bound)
    direct = sct.spectral_norm_upper(layer.weight, shape[1:], stride=stride, padding=1,
                                     dilation=dilation, transposed=True,
                                     output_padding=output_padding)
    assert direct.item() == bound.item()
    bound.backward()  # differentiable, as every other layer's
    assert layer.weight.grad is not None and bool(layer.weight.grad.abs().sum() > 0)


class _UpTwice(nn.Module):
    """One transposed convolution called on one input shape with two output sizes."""

    def __init__(self):
        super().__init__()
        self.t = nn.ConvTranspose1d(1, 1, 3, stride=2, padding=1, bias=False).double()
        with torch.no_grad():
            self.t.weight.copy_(torch.tensor([[[1.0, 1.0, -1.0]]]))

    def forward(self, x):
        return torch.cat([self.t(x, output_size=[1]), self.t(x, output_size=[2])], -1)


def test_a_hooked_layer_is_bounded_as_its_class_computes_and_said():
    """A new user's trial: a hook scaling a convolution's output by 10 was bounded as the
    plain convolution without a word. The bound stays the weight's (a penalty's meaning); a
    warning names the hook. A weight_norm pre-hook only recomputes the weight: no warning."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)).double()
    plain = sct.lipschitz_bounds(model, (1, 8, 8))()
    handle = model[2].register_forward_hook(lambda module, inputs, output: 10 * output)
    with pytest.warns(UserWarning, match=r"bounds each layer as its class computes it from "
                      r"its weight, not what a hook makes of it: module '2' \(Conv2d\) has "
                      r"a forward hook \(<lambda>\)"):
        hooked = sct.lipschitz_bounds(model, (1, 8, 8))()
    assert {k: v.item() for k, v in hooked.items()} == {k: v.item() for k, v in plain.items()}
    handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # (torch deprecates the old style)
        torch.nn.utils.weight_norm(model[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sct.lipschitz_bounds(model, (1, 8, 8))


def test_a_layer_called_as_two_layers_on_one_shape_is_bounded_as_both():
    """A review: the second call of a transposed convolution on the same input shape with
    another output_size was dropped; its norm, sqrt(2), was above the bound kept (1.0)."""
    model = _UpTwice()
    bounds = sct.lipschitz_bounds(model, (1, 1))
    truths = [jacobian_norm(model.t, (1, 1), output_size=[size]) for size in (1, 2)]
    assert truths[1] == pytest.approx(2**0.5, rel=1e-12)
    assert bounds()["t"].item() >= max(truths)


def test_parametrizations_are_read_as_in_eval_mode_and_keep_their_state():
    """A review: an orthogonal weight in training mode was refused as "spectral_norm's power
    iteration"; a spectral_norm parametrization in training mode advanced its vectors on
    every call of the bounds. Both are read as in eval mode now, the model unchanged."""
    torch.manual_seed(0)
    ortho = nn.utils.parametrizations.orthogonal(nn.Linear(4, 4).double())
    normed = nn.utils.parametrizations.spectral_norm(nn.Conv1d(4, 4, 3, padding=1).double())
    model = nn.Sequential(ortho, nn.Unflatten(1, (4, 1)), normed).train()
    bounds = sct.lipschitz_bounds(model, (4,))
    vectors = normed.parametrizations.weight[0]._u.clone()
    values = bounds()
    assert torch.equal(normed.parametrizations.weight[0]._u, vectors)
    assert model.training and normed.parametrizations.weight[0].training
    assert values["0"].item() == pytest.approx(1.0, rel=1e-12)  # orthogonal: norm 1
    with torch.no_grad():
        normed.eval()
        truth = jacobian_norm(normed, (4, 1))
    assert truth <= values["2"].item()
    values["2"].backward()
    assert normed.parametrizations.weight.original.grad is not None


def test_a_weight_deleted_since_the_trace_is_named():
    conv = nn.Conv1d(2, 2, 3).double()
    bounds = sct.lipschitz_bounds(nn.Sequential(conv), (2, 6))
    assert repr(bounds) == "LipschitzBounds(['0'])"
    del conv.weight
    with pytest.raises(ValueError, match=r"module '0' \(Conv1d\) has no weight any more"):
        bounds()
    assert repr(sct.lipschitz_bounds(conv.__class__(2, 2, 3), (2, 6))) == "LipschitzBounds([''])"


def test_a_module_replaced_since_the_trace_is_named():
    """A new user's trial: after ``model[0] = nn.Conv2d(...)`` (its weight times 100), the
    bound of '0' stayed the old module's, 1.18 for a norm of 100.9."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).double()
    bounds = sct.lipschitz_bounds(model, (3, 8, 8))
    before = float(bounds()["0"].detach())
    model[0] = nn.Conv2d(3, 4, 3, padding=1).double()
    with pytest.raises(ValueError, match=r"module '0' of the model is not the Conv2d "
                                         r"lipschitz_bounds traced \(replaced or removed"):
        bounds()
    again = sct.lipschitz_bounds(model, (3, 8, 8))()["0"].detach()
    assert float(again) != before
    del model[0]
    with pytest.raises(ValueError, match=r"module '0' of the model is not the Conv2d"):
        bounds()


def test_a_linear_on_other_leading_axes_lists_both_shapes_and_is_bounded_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3).double()

        def forward(self, x):
            return self.lin(x) + self.lin(x.unsqueeze(1)).squeeze(1)

    model = Twice()
    bounds = sct.lipschitz_bounds(model, (3,))
    assert bounds["lin"] == ((3,), (1, 3))
    top = torch.linalg.matrix_norm(model.lin.weight, 2).item()
    assert top <= bounds()["lin"].item() <= top * (1 + 1e-12)


F = torch.nn.functional


class _Functional(nn.Module):
    """Weights used by functional calls in ``forward``: a convolution (keywords), a transposed
    one (positional: ``groups`` before ``dilation``), a linear head; a module's weight read
    outside its module; a module between them."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3, 3, 3, dtype=F64) / 4)
        self.conv = nn.Conv2d(6, 6, 3, padding=1).double()
        self.t = nn.Parameter(torch.randn(6, 2, 2, 2, dtype=F64) / 3)  # groups 2: 6 -> 4
        self.head = nn.Parameter(torch.randn(5, 4 * 16 * 16, dtype=F64) / 40)

    def forward(self, x):
        x = torch.relu(F.conv2d(x, self.w, stride=1, padding=(1, 2), dilation=(1, 2)))
        x = self.conv(x)
        x = F.conv2d(x, self.conv.weight, None, 1, "same")  # the module's weight, again
        x = F.conv_transpose2d(x, self.t, None, 2, 0, 0, 2, 1)
        return F.linear(x.flatten(1), self.head)


def test_weights_of_functional_calls_are_bounded_by_their_parameters():
    """Each parameter a functional call reads gets the call's bound, under its name: above
    the norm of PyTorch's Jacobian of that call, equal to spectral_norm_upper with the call's
    arguments, and its gradient reaches the parameter. The module keeps its own entry."""
    torch.manual_seed(1)
    model = _Functional()
    bounds = sct.lipschitz_bounds(model, (3, 8, 8))
    assert dict(bounds) == {"conv": ((6, 8, 8),), "w": ((3, 8, 8),),
                            "conv.weight": ((6, 8, 8),), "t": ((6, 8, 8),),
                            "head": ((1024,),)}
    values = bounds()
    calls = {"w": (lambda x: F.conv2d(x, model.w, padding=(1, 2), dilation=(1, 2)), (3, 8, 8)),
             "conv.weight": (lambda x: F.conv2d(x, model.conv.weight, padding="same"),
                             (6, 8, 8)),
             "t": (lambda x: F.conv_transpose2d(x, model.t, stride=2, groups=2), (6, 8, 8)),
             "head": (lambda x: F.linear(x, model.head), (1024,))}
    for name, (call, shape) in calls.items():
        x = torch.zeros((1, *shape), dtype=F64)
        jac = torch.autograd.functional.jacobian(call, x).reshape(-1, x.numel())
        truth = float(torch.linalg.matrix_norm(jac, 2))
        assert truth <= values[name].item() <= truth * 1.2, name
    direct = sct.spectral_norm_upper(model.w, (8, 8), padding=(1, 2), dilation=(1, 2))
    assert values["w"].item() == direct.item()
    sum(values.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in (model.w, model.t, model.head, model.conv.weight))


class _Computed(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 2, 3, dtype=F64))
        self.norm = nn.utils.parametrizations.spectral_norm(nn.Conv1d(2, 2, 3).double())

    def forward(self, x):
        return F.conv1d(self.norm(x), self.w / self.w.norm())


def test_a_weight_computed_in_forward_is_named_and_not_bounded():
    """A weight that forward computes is no parameter to read at each call: named in a
    warning, left out. A parametrized module's own call (its weight computed too) is its
    module's, no warning."""
    with pytest.warns(UserWarning, match=r"conv1d on \(2, 4\): its weight is no parameter"):
        bounds = sct.lipschitz_bounds(_Computed(), (2, 6))
    assert dict(bounds) == {"norm": ((2, 6),)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sct.lipschitz_bounds(nn.Sequential(_Computed().norm), (2, 6))


class _Unusual(nn.Module):
    """What a review found raising or hidden: a convolution on one sample at a time
    (unbatched), ``F.linear`` by a 1-D weight, a weighted module that raises inside a
    ``try`` before a functional call, and a functional call that fails inside a ``try``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3, dtype=F64))
        self.lin = nn.Linear(4 * 6 * 6, 5).double()
        self.v = nn.Parameter(torch.randn(5, dtype=F64))
        self.u = nn.Parameter(torch.randn(5, 5, dtype=F64))

    def forward(self, x):
        x = torch.stack([F.conv2d(sample, self.w, padding=1) for sample in x])  # (4, 6, 6)
        try:
            x = F.conv2d(x.permute(0, 2, 1, 3), self.w)  # 6 channels: fails
        except RuntimeError:
            pass
        try:
            y = self.lin(x.flatten(1)[:, :3])  # raises inside the weighted module
        except RuntimeError:
            y = self.lin(x.flatten(1))
        return F.linear(F.linear(y, self.u), self.v)


def test_unbatched_calls_failures_and_1d_weights():
    torch.manual_seed(2)
    model = _Unusual()
    with pytest.warns(UserWarning, match=r"linear on \(5,\): its weight has 1 dimension"):
        bounds = sct.lipschitz_bounds(model, (3, 6, 6))
    assert dict(bounds) == {"lin": ((144,),), "w": ((3, 6, 6),), "u": ((5,),)}
    values = bounds()
    x = torch.zeros((3, 6, 6), dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda v: F.conv2d(v, model.w, padding=1), x)
    truth = float(torch.linalg.matrix_norm(jac.reshape(-1, x.numel()), 2))
    assert truth <= values["w"].item() <= truth * 1.2
    assert values["u"].item() == pytest.approx(float(torch.linalg.matrix_norm(model.u.detach(), 2)),
                                               rel=1e-12)


def test_a_functional_transposed_call_with_output_padding_not_below_its_stride_is_bounded():
    """As a module (test_a_transposed_layer_with_output_padding_not_below_its_stride_is_
    bounded), so as a functional call: it was named in a warning and left out."""
    class Dilated(nn.Module):
        def __init__(self):
            super().__init__()
            self.t = nn.Parameter(torch.randn(2, 2, 3, dtype=F64))

        def forward(self, x):
            return F.conv_transpose1d(x, self.t, output_padding=1, dilation=2)

    model = Dilated()
    bound = sct.lipschitz_bounds(model, (2, 6))()["t"]
    module = nn.ConvTranspose1d(2, 2, 3, output_padding=1, dilation=2, bias=False).double()
    with torch.no_grad():
        module.weight.copy_(model.t)
    assert np.linalg.norm(sct.matrix(module, (2, 6)).toarray(), 2) <= bound.item()


class _OnlyItsOutputSize(nn.Module):
    """A transposed convolution whose own output size is empty: only the call's
    ``output_size=`` gives it one (PyTorch runs it)."""

    def __init__(self):
        super().__init__()
        self.t = nn.ConvTranspose1d(1, 1, 2, stride=2, padding=1, bias=False).double()
        with torch.no_grad():
            self.t.weight.copy_(torch.tensor([[[0.25, -0.5]]]))

    def forward(self, x):
        return self.t(x, output_size=(1,))


def test_a_transposed_layer_sized_by_its_call_alone_is_bounded():
    """A review: lipschitz_bounds (and lipschitz_report's row) refused it, "transposed
    convolution output size (0,) is empty", building the layer without its output_size."""
    model = _OnlyItsOutputSize()
    truth = jacobian_norm(model.t, (1, 1), output_size=(1,))
    assert truth == pytest.approx(0.5, rel=1e-12)
    assert sct.lipschitz_bounds(model, (1, 1))()["t"].item() >= truth
    row = sct.lipschitz_report(model.eval(), (1, 1))[0]
    assert row["lower"] <= truth <= row["upper"] and row["upper"] == pytest.approx(0.5)


# A mutation review of the spectral code (2026-12-05): each test below failed on a
# change of the code that every other test let pass.


def test_a_functional_linear_on_a_sequence_is_named_with_its_whole_input_shape():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 4, dtype=torch.float64))

        def forward(self, x):  # x: (batch, 3, 4)
            return F.linear(x, self.w)

    net = Net()
    bounds = sct.lipschitz_bounds(net, (3, 4))
    assert bounds["w"] == ((3, 4),)
    assert bounds()["w"].item() >= np.linalg.norm(net.w.detach().numpy(), 2)


def test_a_grouped_transposed_convolution_is_bounded_with_its_groups():
    torch.manual_seed(0)
    # output_padding 1 >= stride (dilation allows it): the adjoint of the first rows of the
    # convolution from the output size, read from the module's own arguments
    options = dict(stride=1, padding=1, dilation=2, output_padding=1, groups=2)
    model = nn.Sequential(nn.ConvTranspose1d(4, 6, 3, **options, bias=False)).double()
    bounds = sct.lipschitz_bounds(model, (4, 5))
    value = bounds()["0"].item()
    expected = sct.spectral_norm_upper(model[0].weight, 5, **options, transposed=True).item()
    assert value == expected
    assert np.linalg.norm(sct.matrix(model[0], (4, 5)).toarray(), 2) <= value


def test_calls_of_a_forward_pass_that_failed_are_forgotten():
    """A model that fails on the random probe is traced again on zeros; a functional call
    made only by the failed pass is not the model's."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 2, 3, dtype=torch.float64))
            self.lin = nn.Linear(8, 8).double()

        def forward(self, x):  # x: (batch, 2, 4)
            if bool(x.any()):
                F.conv1d(x, self.w, padding=1)
                raise IndexError("this model takes zeros only")
            return self.lin(x.flatten(1))

    bounds = sct.lipschitz_bounds(Net(), (2, 4))
    assert bounds.names == ("lin",)


def test_bounds_hold_integer_layers_in_exact_arithmetic():
    """Each layer's penalty bound against its module's own Jacobian (autograd; integers for
    small-integer weights, so the Gram matrix is exact), decided in exact rationals: ``b^2 I -
    J^T J`` positive semidefinite. Every padding mode, a strided, a transposed and a 1x1
    layer and a Linear, a layer called twice on two sizes (the larger bound is kept)."""
    rng = np.random.default_rng(20261206)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
            self.b = nn.Conv2d(2, 3, 2, stride=2, padding=1, padding_mode="replicate")
            self.c = nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular")
            self.d = nn.ConvTranspose2d(3, 2, 2, stride=2)
            self.e = nn.Conv2d(2, 1, 1)
            self.f = nn.Linear(16, 3)

        def forward(self, x):
            y = self.d(self.c(self.b(torch.relu(self.a(x)))))
            y = self.e(y + self.a(y))  # (a called on a second size)
            return self.f(y.flatten(1)[:, :16])

    model = Net().double().eval()
    with torch.no_grad():
        for module in model.children():
            module.weight.copy_(torch.from_numpy(
                rng.integers(-2, 3, module.weight.shape).astype(np.float64)))
    inputs: dict = {}

    def keep(module, args, output) -> None:  # (every call's input)
        inputs.setdefault(module, []).append(args[0])

    handles = [m.register_forward_hook(keep) for m in model.children()]
    with torch.no_grad():
        model(torch.zeros((1, 2, 3, 3), dtype=torch.float64))
    for handle in handles:
        handle.remove()
    bounds = {name: float(b.detach()) for name, b in sct.lipschitz_bounds(model, (2, 3, 3))(
        ).items()}
    assert set(bounds) == set("abcdef"), bounds
    for name, module in model.named_children():
        bound = bounds[name]
        for x in inputs[module]:
            jac = torch.autograd.functional.jacobian(module, x)
            gram = exact_gram(jac.reshape(-1, x.numel()).numpy())
            assert definite(gram, bound, strict=False), (name, tuple(x.shape), bound)


def test_a_batchnorm_after_a_linear_in_training_mode_is_traced_on_two_samples():
    """A new user's trial: ``Linear`` then ``BatchNorm1d`` in training mode failed ("Expected
    more than 1 value per channel when training") on the trace's batch of one; the trace
    takes two samples where a module is in training mode, and leaves the statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20), nn.ReLU(),
                          nn.Linear(20, 5)).double().train()
    before = model[1].running_mean.clone(), int(model[1].num_batches_tracked)
    bounds = sct.lipschitz_bounds(model, (10,))
    assert bounds.names == ("0", "3") and bounds["0"] == ((10,),) and bounds["3"] == ((20,),)
    assert torch.equal(model[1].running_mean, before[0])
    assert int(model[1].num_batches_tracked) == before[1] and model.training
    for name, value in bounds().items():
        weight = model.get_submodule(name).weight.detach().numpy()
        assert np.linalg.norm(weight, 2) <= value.item() <= np.linalg.norm(weight, 2) * (1 + 1e-12)


def test_a_trace_in_training_mode_leaves_torchs_random_state():
    """A new user's trial: the trace's forward pass in training mode drew Dropout's mask from
    torch's global generator, so a seeded run drew other masks after lipschitz_bounds."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Dropout(0.5), nn.Conv2d(4, 2, 3)).train()
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    sct.lipschitz_bounds(model, (2, 8, 8))
    assert torch.equal(torch.rand(5), expected)


class _Products(nn.Module):
    """Products that lipschitz_bounds does not bound, beside a convolution that it does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
        self.rnn = nn.LSTM(4, 4, batch_first=True)
        self.W = nn.Parameter(torch.randn(4, 4))
        self.pos = nn.Parameter(torch.zeros(1, 4, 6))  # added, not multiplied: not named

    def forward(self, x):
        h = self.conv(x + self.pos).transpose(1, 2)
        h = self.attention(h, h, h)[0] + self.rnn(h)[0]
        return torch.einsum("bld,de->ble", h, self.W) @ self.W


def test_products_by_parameters_it_does_not_bound_are_named():
    """A new user's trial: attention's projections, an LSTM's weights, a bilinear layer's
    and ``x @ W`` were left out of the bounds without a word."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bounds = sct.lipschitz_bounds(_Products(), (4, 6))
    assert bounds.names == ("conv",)
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and said[0].startswith("lipschitz_bounds bounds no product by these "
                                                 "parameters"), said
    assert said[0].endswith(
        "W (einsum), attention.in_proj_weight (multi_head_attention_forward), "
        "attention.out_proj.weight (multi_head_attention_forward), rnn.weight_hh_l0 (lstm), "
        "rnn.weight_ih_l0 (lstm)"), said[0]
    with warnings.catch_warnings():  # a network of bounded layers alone: no word
        warnings.simplefilter("error")
        sct.lipschitz_bounds(_Mixed(), (2, 9, 9))


class _Around(nn.Module):
    """A review's calls that lipschitz_bounds left out or mis-read without a word."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.W = nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(3, 2, 3, 3, dtype=torch.float64))
        self.conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=torch.float64)

    def forward(self, x):
        if self.how == "x @ W.T":
            return x.flatten(1)[:, :6] @ self.W.T
        if self.how == "torch.convolution":
            return torch.convolution(x, self.w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
        if self.how == "aten.conv2d":
            return torch.ops.aten.conv2d(x, self.w, None, [1, 1], [1, 1])
        if self.how == "aten.linear":
            return torch.ops.aten.linear(x.flatten(1)[:, :6], self.W)
        return self.conv.forward(x)  # (its hooks skipped: its F.conv2d on the padded input)


@pytest.mark.parametrize("how, said", [
    ("x @ W.T", "lipschitz_bounds bounds no product by these parameters, which forward "
                "multiplies by the signal in calls it does not bound (x @ W, einsum, attention's "
                "projections, recurrent and bilinear layers): W (matmul, of a view of it)"),
    ("torch.convolution", "lipschitz_bounds bounds no product by these parameters, which "
                          "forward multiplies by the signal in calls it does not bound (x @ W, "
                          "einsum, attention's projections, recurrent and bilinear layers): w "
                          "(convolution)"),
    ("aten.conv2d", "w (conv2d)"), ("aten.linear", "W (linear)"),
    ("forward", "lipschitz_bounds leaves out these functional calls of forward (it bounds those "
                "whose weight is a parameter of the model, read again at each call): conv2d on "
                "(2, 8, 8): its weight is that of module 'conv', whose padding mode pads the "
                "input first, called otherwise than as the module (module.forward(x) runs no "
                "hooks): call the module itself")])
def test_products_by_views_other_convolutions_and_a_bare_forward_are_named(how, said):
    """A review of the differentiable spectra: ``x @ W.T`` (a view of ``W``),
    ``torch.convolution`` and ``torch.ops.aten.conv2d`` by a parameter were left out without
    a word; ``conv.forward(x)`` of a reflect-padded layer was bounded as its ``F.conv2d`` on
    the padded input, 1.25 for a layer of 1.55 (its padding lost). Each is named in a
    warning and left out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bounds = sct.lipschitz_bounds(_Around(how), (2, 6, 6))
    assert bounds.names == () and bounds() == {}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].endswith(said), messages


def test_a_layers_arguments_changed_since_the_trace_are_refused():
    """A review: ``conv.stride = (1, 1)`` set after the trace kept the bound of stride 2
    (0.88 for a layer of 1.10)."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1)).double()
    bounds = sct.lipschitz_bounds(model, (2, 8, 8))
    bounds()
    model[0].stride = (1, 1)
    with pytest.raises(ValueError, match=r"module '0' \(Conv2d\) has stride=\(1, 1\) \(then "
                                         r"\(2, 2\)\) since lipschitz_bounds traced it"):
        bounds()
    model[0].stride = (2, 2)
    assert set(bounds()) == {"0"}


def test_a_sparse_weight_is_refused_for_its_layout():
    """A review: a sparse weight was refused as a dtype "torch computes too little in"."""
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64).to_sparse()
    with pytest.raises(TypeError, match=r"weight must be a dense \(strided\) tensor, got layout "
                                        r"torch.sparse_coo: pass weight.to_dense\(\)"):
        sct.spectral_norm_upper(weight, (6, 6), padding=1)


class _Unbatched(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, dtype=torch.float64)

    def forward(self, x):
        return self.conv(x[0])[None]  # (PyTorch takes (C, H, W))


@pytest.mark.parametrize("entry", [sct.lipschitz_bounds, sct.trace, sct.lipschitz_report])
def test_a_layer_called_without_the_batch_axis_is_named(entry):
    """A review: ``self.conv(x[0])`` made lipschitz_bounds blame ``input_shape`` "(6, 5)",
    one the user never passed (the call's first axis read as the batch)."""
    with pytest.raises(ValueError, match=r"^layer 'conv' \(Conv2d\) is called on a tensor "
                                         r"without the batch axis .* y\[:1\]\)"):
        entry(_Unbatched().eval(), (2, 6, 5))
