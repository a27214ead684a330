"""The traced graph (``sparseconv._torch_graph``, ``_torch_graph_ops``, the TorchScript
modules, the report's rows), from a mutation review: ``network_operator``, the bound over the
graph and TorchScript graphs against oracles nobody here wrote: PyTorch's autograd Jacobian
(``torch.autograd.functional.jacobian`` of the float64 model, whose linear part it is), its
vector-Jacobian products for the adjoint, ``model(0)`` for the offset, and dense numpy SVDs
of that Jacobian for the norm a Lipschitz bound must not be below."""

from __future__ import annotations

import collections
import functools
import math
import types
import warnings

import numpy as np
import pytest

from ._oracles import torch

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import sparseconv.torch as sct  # noqa: E402


def _jacobian(model: nn.Module, shape: tuple[int, ...]) -> np.ndarray:
    """The model's Jacobian at a random point, ``(m, n)``, by torch.autograd, float64; one
    output flattened, or several concatenated in order."""
    x0 = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def flat(x):
        out = model(x.unsqueeze(0))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return torch.cat([o.reshape(-1) for o in outs])

    jac = torch.autograd.functional.jacobian(flat, x0)
    return jac.reshape(jac.shape[0], -1).numpy()


def _check_operator(model: nn.Module, shape: tuple[int, ...]):
    """network_operator's matrix, its adjoint's and its offset against torch's Jacobian,
    its vector-Jacobian products and ``model(0)``."""
    model = model.double().eval()
    net = sct.network_operator(model, shape)
    jac = _jacobian(model, shape)
    m, n = jac.shape
    a = net.operator @ np.eye(n)
    np.testing.assert_allclose(a, jac, rtol=1e-12, atol=1e-12)
    ah = net.operator.H @ np.eye(m)
    np.testing.assert_allclose(ah, jac.T, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        zero = model(torch.zeros((1, *shape), dtype=torch.float64))
    zeros = zero if isinstance(zero, (tuple, list)) else (zero,)
    offset = torch.cat([z.reshape(-1) for z in zeros]).numpy()
    np.testing.assert_allclose(net.offset, offset, rtol=1e-12, atol=1e-12)
    return net


def _check_bound(model: nn.Module, shape: tuple[int, ...]) -> float:
    """The report's network bound, at least the spectral norm of the (linear) model's
    Jacobian by a dense SVD."""
    model = model.double().eval()
    report = sct.lipschitz_report(model, shape)
    assert report.network_upper is not None, report.reason
    norm = float(np.linalg.svd(_jacobian(model, shape), compute_uv=False)[0])
    assert report.network_upper >= norm * (1 - 1e-12), (report.network_upper, norm)
    return report.network_upper


class _Lambda(nn.Module):
    def __init__(self, fn, **tensors):
        super().__init__()
        self.fn = fn
        for name, t in tensors.items():
            self.register_buffer(name, t)

    def forward(self, x):
        return self.fn(self, x)


def _conv_then(call) -> nn.Module:
    """A model running ``call`` on a 2->2 3x3 convolution's output."""
    def fn(self, x):
        return call(self.conv(x))

    model = _Lambda(fn)
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    return model


def _bound_over_conv(model: nn.Module, shape: tuple[int, ...]) -> float:
    """The network bound of a :func:`_conv_then` model (at least its Jacobian's norm) over
    its convolution's alone."""
    bound = _check_bound(model, shape)
    return bound / sct.lipschitz_report(nn.Sequential(model.conv).eval(), shape).network_upper


def _seeded(*shape, seed=0):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# -- network_operator: each op's forward, adjoint and offset ------------------------------

def test_sub_and_alpha_adjoint():
    """A mutant this catches: _torch_calls.py: torch.sub: -1 -> 1, and
    _torch_graph_ops.py: (b, sign * alpha) -> (b, alpha), or c * _unbroadcast(g, s) ->
    _unbroadcast(g, s) (the adjoint of a sum with coefficients)."""
    conv = nn.Conv1d(2, 2, 3, padding=1)

    def fn(self, x):
        y = self.conv(x)
        return torch.sub(x, y, alpha=3.0) + torch.add(y, x, alpha=-0.5) - 2 * y

    model = _Lambda(fn)
    model.conv = conv
    _check_operator(model, (2, 5))


def test_mul_div_broadcast_constant():
    """A mutant this catches: _torch_graph_ops.py: factor = 1.0 / factor -> factor, or
    _unbroadcast(g * factor, ...) -> _unbroadcast(g, ...): the adjoint of a product by a
    broadcast per-channel constant and of a division."""
    def fn(self, x):
        return -(x * self.c) / 4.0 + torch.div(x, self.d)

    _check_operator(_Lambda(fn, c=_seeded(2, 1), d=_seeded(1, 3).abs() + 1), (2, 3))


@pytest.mark.parametrize("case", ["right", "left", "right_vector", "left_vector",
                                  "mm_keyword"])
def test_matmul_adjoint(case):
    """A mutant this catches: _torch_graph_ops.py: g @ w.T -> g @ w, w.T @ g -> w @ g, and
    w[:, None] * g[..., None, :] -> w[None, :] * ... (``W @ x`` by a vector); each with a
    constant W that is not square, so the adjoint's shape shows too; _torch_calls.py:
    torch.mm's mat2= keyword not read."""
    shape = (3, 4)
    fns = {
        "right": (lambda self, x: x @ self.w, dict(w=_seeded(4, 4, seed=1))),
        "left": (lambda self, x: self.w @ x, dict(w=_seeded(3, 3, seed=2))),
        "right_vector": (lambda self, x: torch.matmul(x, self.w), dict(w=_seeded(4, seed=3))),
        "left_vector": (lambda self, x: torch.matmul(self.w, x), dict(w=_seeded(3, seed=4))),
        "mm_keyword": (lambda self, x: torch.mm(x.flatten(1), mat2=self.w),
                       dict(w=_seeded(12, 5, seed=5))),
    }
    fn, tensors = fns[case]
    _check_operator(_Lambda(fn, **tensors), shape)


def test_cat_with_constant_pieces():
    """A mutant this catches: _torch_graph_ops.py: np.cumsum(sizes)[:-1] -> [1:], a constant
    piece's size read off the wrong axis (p.shape[axis] -> p.shape[axis - 1]), and the
    constant added in the linear part (p if affine else 0 * p -> p): cat of the signal and
    constants, along an inner axis, the pieces of unequal sizes."""
    def fn(self, x):
        c = x.new_ones(x.shape[0], 2, 3) * self.c
        return torch.cat([c, x, 2 * x[:, :, :1]], dim=2) + 0 * torch.cat([c, x, x[:, :, :1]], 2)

    _check_operator(_Lambda(fn, c=_seeded(1, 2, 3, seed=5)), (2, 4))


def test_cat_negative_axis():
    """A mutant this catches: a cat's axis read wrong (dim=-2 of a 3-axis sample)."""
    def fn(self, x):
        return torch.cat([x, 3 * x[:, :, :2], x], dim=-2)

    _check_operator(_Lambda(fn), (2, 3, 4))


def test_permute_three_cycle_adjoint():
    """A mutant this catches: _torch_graph_ops.py: inverse = list(np.argsort(axes)) ->
    list(axes) (the two differ for a 3-cycle, whose inverse is not itself)."""
    def fn(self, x):
        return x.permute(0, 2, 3, 1) * self.s

    _check_operator(_Lambda(fn, s=_seeded(2, 2, 3, seed=6)), (3, 2, 2))


def test_movedim_and_transpose():
    """A mutant this catches: _torch_calls.py: movedim's remaining axes read off the
    destination instead of the source."""
    def fn(self, x):
        return torch.movedim(x, 1, 3).transpose(1, 2).reshape(x.shape[0], -1)

    _check_operator(_Lambda(fn), (2, 3, 4))


def test_repeat_and_tile_adjoint():
    """A mutant this catches: _torch_graph_ops.py: repeat's adjoint split (c, n) -> (n, c)
    (the copies summed on the wrong axis), and _torch_calls.py: tile's ones put after its
    counts instead of before."""
    def fn(self, x):
        return x.repeat(1, 2, 3) * self.s + torch.tile(x, (2,)).repeat(1, 2, 3)[..., :3 * 3]

    _check_operator(_Lambda(fn, s=_seeded(4, 9, seed=7)), (2, 3))


def test_mean_and_sum_adjoint():
    """A mutant this catches: _torch_graph_ops.py: the mean's 1/count dropped, in the forward
    (scale = 1.0) or the adjoint (g * scale -> g)."""
    def fn(self, x):
        return torch.cat([x.mean(dim=(2, 3)), x.sum(-1).flatten(1), x.mean(1, keepdim=True)
                          .flatten(1)], 1)

    _check_operator(_Lambda(fn), (2, 3, 4))


def test_pad_value_in_offset():
    """A mutant this catches: _torch_graph_ops.py: F.pad's fill value dropped (0.0), and the
    layer's offset dropped in the affine forward: the offset is model(0)."""
    def fn(self, x):
        return F.pad(x, (1, 2), value=1.5) + F.pad(x, (2, 1), mode="replicate")

    _check_operator(_Lambda(fn), (2, 4))


def test_ellipsis_index():
    """A mutant this catches: _torch_graph_ops.py: Ellipsis spelled out one axis short
    (len(in_shape) + 1 - named -> len(in_shape) - named), and basic slices with steps."""
    def fn(self, x):
        return torch.cat([x[..., 1:3].flatten(1), x[:, 1:, ::2].flatten(1),
                          x[..., 0, :].flatten(1)], 1)

    _check_operator(_Lambda(fn), (3, 4, 4))


def test_several_outputs_order():
    """A mutant this catches: _torch_graph.py: the outputs' cuts np.cumsum(sizes)[:-1] ->
    [1:] (the adjoint's split of several outputs of unequal sizes)."""
    conv = nn.Conv1d(2, 3, 2)

    def fn(self, x):
        return self.conv(x), x[:, :1], 2 * x

    model = _Lambda(fn)
    model.conv = conv
    net = _check_operator(model, (2, 5))
    assert net.output_shape == (3 * 4 + 1 * 5 + 2 * 5,)


def test_add_constant_offset():
    """A mutant this catches: _torch_graph_ops.py: y + sum(c * v for v, c in fixed) -> y
    (an added constant left out of the offset), and a subtracted one's sign."""
    def fn(self, x):
        return (x + self.b) - self.c * 2 - 1.25

    _check_operator(_Lambda(fn, b=_seeded(2, 1, seed=8), c=_seeded(3, seed=9)), (2, 3))


# -- the network bound over the graph: never below the Jacobian's norm ----------------------

class _Residual(nn.Module):
    """conv2(conv1(x) + x) concatenated with a slice and a chunk of the input: a residual
    sum, a cat along channels, a slice and a split of a linear network."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 3, 3, padding=1, bias=False)

    def forward(self, x):
        h = self.conv1(x) + x
        a, b = h.chunk(2, dim=1)
        return torch.cat([self.conv2(h), 3 * torch.cat([x[:, 1:], -x[:, 1:]], 1), b - a], 1), x[
            :, 1:, 1:4, ::2]


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model.double().eval()


def test_bound_of_a_residual_graph():
    """A mutant this catches: a residual sum counted once, a cat's branch dropped or a
    slice's range read wrong in the bound over the eager model's graph."""
    _check_bound(_randomized(_Residual()), (2, 5, 5))


class _Doubled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv1d(2, 2, 3, padding=1)

    def forward(self, x):
        h = self.conv1(x)
        return self.conv2(h + h)


class _Scaled(_Doubled):
    def forward(self, x):
        h = self.conv1(x)
        return self.conv2(h * 7.0)


@pytest.mark.parametrize("model", [_Doubled, _Scaled, _Residual])
@pytest.mark.parametrize("compile_", ["script", "trace"])
def test_torchscript_bound_is_sound(model, compile_):
    """A mutant this catches: _torch_script_chain.py: "add" or "mul" added to CHAIN_KEEPING
    (h + h or 7 * h read as keeping the chain: the product, a bound 2 or 7 times too small),
    and a residual read as a chain; the report's bound of the scripted or traced model must
    be at least the norm of its Jacobian."""
    shape = (2, 5, 5) if model is _Residual else (2, 6)
    eager = _randomized(model())
    probe = torch.zeros((1, *shape), dtype=torch.float64)
    with warnings.catch_warnings():  # (torch.jit is deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = (torch.jit.script(eager) if compile_ == "script" else
                    torch.jit.trace(eager, probe))
    report = sct.lipschitz_report(scripted, shape)
    assert report.network_upper is not None, report.reason
    norm = float(np.linalg.svd(_jacobian(eager, shape), compute_uv=False)[0])
    assert report.network_upper >= norm * (1 - 1e-12), (report.network_upper, norm)
    eager_rows = [(r["name"], r["input_shape"], r["output_shape"]) for r in
                  sct.lipschitz_report(eager, shape)]
    assert [(r["name"], r["input_shape"], r["output_shape"]) for r in report] == eager_rows


# -- the report's rows: names, shapes, folds; its bound at several points -------------------

def _largest_jacobian_norm(model: nn.Module, shape: tuple[int, ...], points: int = 3) -> float:
    """The largest spectral norm of the model's Jacobian at a few random points (dense SVD):
    a lower bound of its Lipschitz constant."""
    generator = torch.Generator().manual_seed(11)
    best = 0.0
    for _ in range(points):
        x0 = 2 * torch.randn(shape, dtype=torch.float64, generator=generator)
        jac = torch.autograd.functional.jacobian(
            lambda x: model(x.unsqueeze(0)).reshape(-1), x0)
        best = max(best, float(np.linalg.svd(jac.reshape(jac.shape[0], -1).numpy(),
                                             compute_uv=False)[0]))
    return best


def _bn_chain() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Conv2d(3, 3, 3), nn.ReLU(), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1),
                          nn.BatchNorm2d(2))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) * 2 + 0.05)
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
                m.weight.copy_(3 * torch.randn(m.num_features, generator=generator))
    return model.double().eval()


def _compiled(model: nn.Module, how: str, shape: tuple[int, ...]) -> nn.Module:
    with warnings.catch_warnings():  # (torch.jit is deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        if how == "script":
            return torch.jit.script(model)
        if how == "trace":
            return torch.jit.trace(model, torch.zeros((1, *shape), dtype=torch.float64))
    return model


@pytest.mark.parametrize("how", ["eager", "script", "trace", "data_parallel"])
def test_folded_rows_and_their_bound(how):
    """A mutant this catches: _torch_report.py: a BatchNorm folded into the first convolution
    instead of the last (max -> min), a second BatchNorm's flag passed on, folds read across a
    ReLU (BatchNorm 5's input is no convolution's output); _torch_script.py: a fold whose
    input is not the last convolution's value (source.unique() != value dropped);
    _torch_trace.py: DataParallel not unwrapped (names 'module.0'). Rows are written out by
    hand, and the bound is checked against Jacobians at random points."""
    shape = (2, 6, 6)
    eager = _bn_chain()
    model = nn.DataParallel(eager) if how == "data_parallel" else _compiled(eager, how, shape)
    report = sct.lipschitz_report(model, shape, fold_batchnorm=True)
    assert [(r["name"], r["input_shape"], r["output_shape"]) for r in report] == [
        ("0+1", (2, 6, 6), (3, 6, 6)), ("3", (3, 6, 6), (3, 4, 4)), ("5", (3, 4, 4), (3, 4, 4)),
        ("6+7", (3, 4, 4), (2, 4, 4))]
    assert report.network_upper is not None, report.reason
    assert report.network_upper >= _largest_jacobian_norm(eager, shape) * (1 - 1e-12)


class _SkipAroundBatchNorm(nn.Module):
    def __init__(self, through: bool):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.id = nn.Identity() if through else None
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y if self.id is None else self.id(y)) - 2 * y


@pytest.mark.parametrize("through", [False, True])
@pytest.mark.parametrize("how", ["eager", "script"])
def test_no_fold_where_the_convolution_is_read_elsewhere(how, through):
    """A mutant this catches: _torch_report.py: len(source.users) == 1 dropped (bn(y) - 2y
    folded, y's own row lost) and _torch_script.py: the graph's other reads of the
    convolution's output not seen. The bound must stay at least the Jacobian's norm."""
    shape = (2, 5, 5)
    eager = _SkipAroundBatchNorm(through)
    with torch.no_grad():
        eager.bn.running_var.copy_(torch.tensor([0.05, 3.0]))
        eager.bn.weight.copy_(torch.tensor([4.0, -1.0]))
        eager.conv.weight.copy_(torch.randn(eager.conv.weight.shape,
                                            generator=torch.Generator().manual_seed(2)))
    eager = eager.double().eval()
    report = sct.lipschitz_report(_compiled(eager, how, shape), shape, fold_batchnorm=True)
    assert [r["name"] for r in report] == ["conv", "bn"]
    assert report.network_upper is not None, report.reason
    assert report.network_upper >= _largest_jacobian_norm(eager, shape, 1) * (1 - 1e-12)


def test_constant_differing_between_samples_is_refused_by_name():
    """A mutant this catches: _torch_graph_ops.py: (value == value[:1]).all() -> .any() (a
    batch-sized constant whose samples agree in some entries taken as one sample's; refused
    later by the check against the model, as no operation in particular)."""
    def fn(self, x):
        c = torch.arange(x.shape[0], dtype=torch.float64).view(-1, 1) * self.w
        return x * (1 + c) + c

    model = _Lambda(fn, w=torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)).eval()
    with pytest.raises(TypeError, match="differs between the samples"):
        sct.network_operator(model, (3,))


class _ScriptOps(nn.Module):
    """The operations a TorchScript graph is rebuilt from between its layers: slices by
    Ellipsis (a negative axis), 1 - x (aten::rsub), add with alpha, a constant pad with a
    value (F.pad, and torch.constant_pad_nd: aten::constant_pad_nd), chunk, a select, a
    concatenation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv1d(3, 2, 2)

    def forward(self, x):
        h = self.conv(x)
        a = h[..., 1:4]
        b = 1.0 - x[:, :, 2:5]
        c = torch.add(a, b, alpha=2.5)
        d = torch.constant_pad_nd(F.pad(c, (1, 0), value=0.5), [0, 1], -2.0)
        p, q = d.chunk(2, dim=1)
        return self.conv2(torch.cat([p, 3 * q, x[:, 0, :5].unsqueeze(1)], 1))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_graph_ops_are_translated(how):
    """A mutant this catches: _torch_script_graph.py: a slice on a negative axis put one axis
    off (-dim - 1 -> -dim), rsub's operands kept in order, add's alpha or the pad's value
    dropped (each refused by the probe check: no bound), and the bound must hold."""
    shape = (2, 6)
    eager = _randomized(_ScriptOps())
    report = sct.lipschitz_report(_compiled(eager, how, shape), shape)
    assert report.network_upper is not None, report.reason
    assert report.over_graph
    assert report.network_upper >= _largest_jacobian_norm(eager, shape, 1) * (1 - 1e-12)
    eager_report = sct.lipschitz_report(eager, shape)
    # the pads' rows too, in the order the forward runs them: the eager walk stops at
    # torch.constant_pad_nd (no rule), after F.pad's; the rebuilt graph runs both as F.pad
    rows = [(r["name"], r["input_shape"], r["output_shape"]) for r in report]
    assert rows == [("conv", (2, 6), (2, 6)), ("pad", (2, 3), (2, 4)), ("pad_1", (2, 4), (2, 5)),
                    ("conv2", (3, 5), (2, 4))]
    assert [(r["name"], r["input_shape"], r["output_shape"]) for r in eager_report] == [
        rows[0], rows[1], rows[3]]


class _Functional(nn.Module):
    """Functional calls with constant weights, read by keyword or position: a grouped
    transposed convolution, a grouped convolution, an average pooling without a stride
    (its kernel size), F.linear, a product by a matrix, movedim and tile."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(12)
        self.wt = nn.Parameter(torch.randn(4, 1, 3, generator=generator))  # groups=2
        self.wc = nn.Parameter(torch.randn(4, 2, 2, generator=generator))  # groups=2
        self.wl = nn.Parameter(torch.randn(3, 5, generator=generator))
        self.m = nn.Parameter(torch.randn(4, 4, generator=generator))

    def forward(self, x):  # x: (4, 6)
        h = F.conv_transpose1d(x, self.wt, stride=2, groups=2)  # (2, 13)
        h = F.conv1d(torch.cat([h, -h], 1), self.wc, None, 1, 0, 1, 2)  # (4, 12)
        h = F.avg_pool1d(h, 2)  # (4, 6)
        h = torch.movedim(h, 1, 2) @ self.m  # (6, 4)
        h = torch.tile(h, (2, 1))[:, 1:, :]  # (11, 4)
        return F.linear(torch.cat([h, h[:, :, :2]], 2)[..., 1:], self.wl)  # (11, 3)


def test_functional_calls_operator_and_bound():
    """A mutant this catches: _torch_calls.py: a grouped transposed convolution's channels
    (weight.shape[1] * groups -> weight.shape[1]), an average pooling's default stride, tile's
    ones put after its counts, movedim's other axes, mm's mat2 keyword; the operator against
    torch's Jacobian, the bound against its norm."""
    model = _Functional().double().eval()
    _check_operator(model, (4, 6))
    _check_bound(model, (4, 6))


class _BatchNormCall(nn.Module):
    """``F.batch_norm`` by running statistics in ``forward`` (eval mode: a per-channel affine
    map), after a convolution, beside a channel sum of the input."""

    def __init__(self, rank: int, affine: bool = True, training: bool = False):
        super().__init__()
        generator = torch.Generator().manual_seed(rank)
        self.c = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1](3, 4, 3, padding=1)
        self.register_buffer("mean", torch.randn(4, generator=generator))
        self.register_buffer("var", torch.rand(4, generator=generator) + 0.1)
        self.w = nn.Parameter(torch.randn(4, generator=generator)) if affine else None
        self.b = nn.Parameter(torch.randn(4, generator=generator)) if affine else None
        self.training_stats = training

    def forward(self, x):
        y = F.batch_norm(self.c(x), self.mean, self.var, self.w, self.b,
                         self.training_stats, 0.1, 1e-3)
        return y + x.sum(1, keepdim=True)


class _StdConv2d(nn.Conv2d):
    """BiT's weight-standardised convolution: a subclass whose forward computes its weight."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / w.std((1, 2, 3), keepdim=True)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_subclass_with_a_forward_of_its_own_is_traced_through():
    """A new user's trial: network_operator refused BiT's StdConv2d ("a subclass of
    Conv2d"), which the report's bound over the graph follows: its forward is traced, its
    F.conv2d by the computed weight mapped; torch's own Conv2d stays a leaf."""
    torch.manual_seed(4)
    model = nn.Sequential(_StdConv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3))
    linear = nn.Sequential(model[0], model[2])
    _check_operator(linear, (3, 6, 6))
    _check_bound(linear, (3, 6, 6))
    report = sct.lipschitz_report(model.double().eval(), (3, 6, 6))
    assert [row["name"] for row in report] == ["0.conv2d", "2"]


@pytest.mark.parametrize("rank, affine", [(1, True), (2, True), (2, False), (3, True)])
def test_batch_norm_by_running_statistics_is_a_linear_call(rank, affine):
    """A new user's trial: eval-mode ``F.batch_norm(x, running_mean, running_var, w, b)``
    was refused ("not linear") where ``nn.BatchNorm2d`` is read: its operator equals the
    Jacobian, its row's interval holds its norm ``max |w| / sqrt(var + eps)``, the bound
    holds; with batch statistics (``training=True``) it has neither."""
    shape = (3, *(5, 4, 3)[:rank])
    model = _BatchNormCall(rank, affine).double().eval()
    _check_operator(model, shape)
    _check_bound(model, shape)
    (row,) = [r for r in sct.lipschitz_report(model, shape) if r["type"] == "F.batch_norm"]
    scale = (model.w if affine else torch.ones(4)).abs() / (model.var + 1e-3).sqrt()
    norm = float(scale.max().detach())
    assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12)
    assert row["input_shape"] == row["output_shape"] == (4, *shape[1:])
    batch = _BatchNormCall(rank, affine, training=True).double().eval()
    with pytest.raises(TypeError, match="not linear"):
        sct.network_operator(batch, shape)
    assert sct.lipschitz_report(batch, shape).network_upper is None


@pytest.mark.parametrize("fn, match", [
    (lambda self, x: x.permute(1, 0, 2) * 2, "moves the batch axis"),
    (lambda self, x: x.sum(dim=0) * 2, "reduces over the batch axis")])
def test_batch_axis_refusals_by_name(fn, match):
    """A mutant this catches: _torch_graph_ops.py: the refusal of a permutation that moves
    the batch axis, or of a sum over it, dropped (then refused only by the check against the
    model, as no operation in particular). Two channels: the probe's batch of two keeps its
    size."""
    with pytest.raises(TypeError, match=match):
        sct.network_operator(_Lambda(fn).eval(), (2, 3))


class _UnusedConvolution(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        self.conv(x)  # (its value read by nothing)
        return self.bn(x)


def test_scripted_fold_needs_the_convolutions_value():
    """A mutant this catches: _torch_script.py: a BatchNorm folded whatever its input, where
    the last convolution's output is read by nothing (source.unique() != value dropped): the
    scripted model's BatchNorm reads x, not conv(x), so it keeps its own row, as the eager
    model's does (the mutant raised, reading 'conv+bn' off the probe)."""
    model = _UnusedConvolution().double().eval()
    with torch.no_grad():
        model.bn.running_var.fill_(0.01)
    report = sct.lipschitz_report(_compiled(model, "script", (2, 3, 3)), (2, 3, 3),
                                  fold_batchnorm=True)
    assert [r["name"] for r in report] == ["conv", "bn"]


# -- one module's spectra -----------------------------------------------------------------

def test_singular_values_of_a_linear_over_leading_axes():
    """A mutant this catches: _torch_module_spectra.py: the block-diagonal copies of a Linear
    over leading axes dropped (np.tile(values, layer.repeat) -> values); oracle: numpy's SVD
    of kron(I_4, W)."""
    layer = nn.Linear(3, 2).double()
    weight = layer.weight.detach().numpy()
    expected = np.linalg.svd(np.kron(np.eye(4), weight), compute_uv=False)
    np.testing.assert_allclose(sct.singular_values(layer, (4, 3)), expected, rtol=1e-12)


def test_matrix_norms_bracket_the_exact_norm():
    """Mutants this guards against, which it does not catch (their effect lies below the
    certificates' slack on this layer): _torch_module_spectra.py: the entries' rounding
    allowance added to the lower bound instead of taken off, or the dense route's upper bound
    left uncertified (float(s[0])). A soundness check of the explicit-matrix route: a
    padding's norm is exactly 1, an average pooling's (excluded padding) that of its exact
    entries 1/4, 1/6, 1/9, computed by mpmath at 40 digits."""
    mpmath = pytest.importorskip("mpmath")
    pad = sct.spectral_norm(nn.ZeroPad2d((1, 2, 0, 1)), (1, 3, 3))
    assert pad.lower <= 1.0 <= pad.upper
    # (excluded padding: bounded from its explicit matrix, entries 1/4, 1/6 and 1/9)
    pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    shape = (1, 5, 5)
    result = sct.spectral_norm(pool, shape)
    jac = torch.autograd.functional.jacobian(
        lambda x: pool(x.unsqueeze(0)).reshape(-1), torch.zeros(shape, dtype=torch.float64))
    entries = jac.reshape(jac.shape[0], -1).numpy()
    counts = np.rint(1 / np.where(entries == 0, np.inf, entries))
    with mpmath.workdps(40):
        exact = mpmath.matrix([[mpmath.mpf(1) / int(c) if c else mpmath.mpf(0) for c in row]
                               for row in counts])
        norm = max(mpmath.svd_r(exact, compute_uv=False))
        assert mpmath.mpf(result.lower) <= norm <= mpmath.mpf(result.upper)


@torch.fx.wrap
def _alias_by_numpy(t):
    return torch.from_numpy(t.detach().numpy())  # t's memory, not its version counter


def test_network_operator_sees_a_rewrite_past_the_version_counter():
    """A mutant this catches: _torch_graph.py: the probe's check of a value's bytes dropped
    (changed(...) or rewritten(...) -> changed(...)): an alias of y's memory read after
    y.mul_(5) is then refused only as an unknown call, not as a read after an in-place
    change."""
    conv = nn.Conv1d(1, 1, 3, padding=1)

    def fn(self, x):
        y = self.conv(x)
        a = _alias_by_numpy(y)
        w = y.mul_(5.0)
        return a + 0.0 * w

    model = _Lambda(fn)
    model.conv = conv
    with pytest.raises(TypeError, match="after an in-place operation changed it"):
        sct.network_operator(model.eval(), (1, 4))


# -- a forward's other arguments, at their defaults ---------------------------------------

class _Defaults(nn.Module):
    """A forward whose other arguments change what it computes: each at its default, as
    ``model(x)`` runs it (an optional skip input, a scale, a flag, a size, a mode)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x, skip=None, scale=3.0, features=False, *, size=(4, 6), mode="pad"):
        y = self.conv(x) * scale if skip is None else self.conv(x) + skip
        if features:
            return y, x
        y = F.interpolate(y, size=size)
        return F.pad(y, (1, 0, 0, 2)) if mode == "pad" else y


def test_a_forward_s_other_arguments_take_their_defaults():
    """``forward(self, x, skip=None, scale=3.0, ...)`` has a graph, traced with each argument
    at its default, and its operator is the model's Jacobian; its bound is at least the
    Jacobian's norm. Mutants this catches: _torch_probe.py: the defaults not passed to
    torch.fx (no graph: "ShapeProp error" on ``conv + skip``), or its checks of them left in
    the graph (the graph takes more than one input)."""
    model = _Defaults()
    net = _check_operator(model, (2, 5, 5))
    assert net.operator.shape == (3 * 6 * 7, 2 * 5 * 5)  # (size=(4, 6), padded)
    _check_bound(model, (2, 5, 5))


def test_a_forward_s_tensor_default_is_refused_by_name():
    """A default torch.fx would keep as an input (a tensor) is refused naming the argument,
    where torch.fx's own error was "NameError: name '_tensor_constant0' is not defined"."""
    class TensorDefault(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 1, 3)

        def forward(self, x, gain=torch.ones(1)):  # noqa: B008 - the case under test
            return self.conv(x) * gain

    with pytest.raises(TypeError, match="^network_operator: TensorDefault.forward's argument "
                                        "'gain' defaults to a Tensor, which sparseconv does not "
                                        "trace as a constant: wrap the model in a module whose "
                                        "forward takes the signal alone$"):
        sct.network_operator(TensorDefault().eval(), (1, 6))
    report = sct.lipschitz_report(TensorDefault().eval(), (1, 6))
    assert report.network_upper is None
    assert "(its argument 'gain' defaults to a Tensor)); nor is there a bound over its graph: " \
        "TensorDefault.forward's argument 'gain' defaults to a Tensor, which" in report.reason


class _Starred(nn.Module):
    """A forward with ``*args`` and ``**kwargs``, read as ``model(x)`` passes them: empty."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)

    def forward(self, x, *args, cond=None, **kwargs):
        return self.conv(x) * kwargs.get("scale", 2.0) + len(args)


def test_a_forward_s_starred_arguments_are_empty():
    """A new user's trial: network_operator said "takes 3 inputs; one is supported" of
    ``forward(self, x, *args, **kwargs)``, which trace and lipschitz_report read. A mutant
    this catches: _torch_probe.py: ``*args`` and ``**kwargs`` not traced as empty."""
    _check_operator(_Starred(), (2, 5))  # (its scale 2, its offset 2 b)
    _check_bound(_Starred(), (2, 5))


def _undecorated(forward):
    def wrapper(*args, **kwargs):  # (no functools.wraps: torch.fx cannot see through it)
        return forward(*args, **kwargs)
    return wrapper


class _Decorated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3)

    @_undecorated
    def forward(self, x):
        return self.conv(x)


def test_torch_fx_s_advice_on_branches_only_where_it_met_one():
    """A new user's trial: a decorator without functools.wraps, which torch.fx cannot trace
    ("self argument cannot be part of *args expansion"), was told its forward "must not
    branch on tensor values"; that advice stays where torch.fx met a branch."""
    with pytest.raises(TypeError, match=r"\*args expansion!\)$"):
        sct.network_operator(_Decorated().eval(), (1, 6))

    def fn(self, x):
        return x if x.sum() > 0 else -x

    with pytest.raises(TypeError, match=r"TraceError: symbolically traced variables cannot be "
                                        r"used as inputs to control flow\); its forward must "
                                        "not branch on tensor values"):
        sct.network_operator(_Lambda(fn).eval(), (1, 6))


def test_a_forward_that_fails_on_the_graph_s_probe_says_so_in_one_line():
    """A new user's trial: ``forward(self, batch)`` reading ``batch["image"]`` came out of
    network_operator as torch.fx's IndexError with its graph dump; trace said the forward
    failed on the probe, as network_operator now does."""
    def fn(self, batch):
        return self.conv(batch["image"])

    model = _Lambda(fn)
    model.conv = nn.Conv1d(1, 1, 3)
    with warnings.catch_warnings():  # (torch's on indexing by a string's characters)
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="forward failed on a probe batch of shape "
                                             r"\(2, 1, 6\) .*: too many indices") as info:
            sct.network_operator(model.eval(), (1, 6))
    assert "\n" not in str(info.value)


class _MultiLineError(nn.Module):
    """A forward torch.fx cannot trace, raising a message of several lines (as torch.fx's own
    ShapeProp errors are, with a dump of the graph after the first)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3)

    def forward(self, x):
        if isinstance(x, torch.fx.Proxy):
            raise RuntimeError("first line of the reason\n\n  a graph dump\nsee tlparse")
        return self.conv(x)


def test_an_untraceable_model_s_reason_is_one_line():
    """The reason torch.fx cannot trace a model is its error's first line, in the report's
    reason and network_operator's message alike."""
    report = sct.lipschitz_report(_MultiLineError().eval(), (1, 6))
    assert report.network_upper is None
    assert "torch.fx cannot trace _MultiLineError (RuntimeError: first line of the reason)" in (
        report.reason)
    assert "\n" not in report.reason
    with pytest.raises(TypeError, match="first line of the reason\\)") as info:
        sct.network_operator(_MultiLineError().eval(), (1, 6))
    assert "\n" not in str(info.value)


class _SizesLoopWithDefaults(nn.Module):
    """The PyTorch tutorial LeNet's loop over sizes, in a forward with a tuple default."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 6, 5)

    def forward(self, x, size=(4, 6), skip=None):
        y = F.interpolate(self.conv(x), size=size)
        count = 1
        for s in y.size()[1:]:
            count *= s
        return self.fc(y.view(-1, count))


def test_a_loop_over_sizes_in_a_forward_with_defaults():
    """The tracer that follows a loop over sizes runs the graph traced so far without the
    checks of the defaults (torch.fx gives each entry of ``size=(4, 6)`` the whole tuple as
    its default, which fails its check: "size has been specialized to have value 4")."""
    model = _SizesLoopWithDefaults()
    _check_operator(model, (2, 5, 5))
    _check_bound(model, (2, 5, 5))


@pytest.mark.parametrize("scale, factor", [
    (lambda x: x / math.sqrt(x.shape[-1]), 0.5), (lambda x: x * x.shape[-1] ** -0.5, 0.5),
    (lambda x: x * x.size(1), 2.0), (lambda x: x / (x.shape[-2] * x.shape[-1]), 1 / 16),
    (lambda x: F.leaky_relu(x, -x.shape[-1] / 2), None)])
def test_a_product_by_a_number_computed_from_sizes(scale, factor):
    """A new user's trial: an attention's ``x / math.sqrt(x.shape[-1])`` (and ``x *
    x.size(1)``) had no bound over the graph ("multiplies the signal by something other than
    a finite number"), where network_operator maps it; the number is the one the traced
    shape fixes (4 by 4 here), and the bound is at least the Jacobian's norm and equals the
    convolution's times the number (a leaky ReLU's slope -2: its constant 2)."""
    def fn(self, x):
        return scale(self.conv(x))

    model = _Lambda(fn)
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    if factor is not None:
        _check_operator(model, (2, 4, 4))
    bound = _check_bound(model, (2, 4, 4))
    conv = sct.lipschitz_report(nn.Sequential(model.conv).eval(), (2, 4, 4)).network_upper
    assert bound == pytest.approx(conv * (factor or 2.0), rel=1e-12)


def test_a_product_by_a_number_computed_from_the_batch_size_is_refused():
    """``x * x.shape[0]`` changes the map of one sample with the batch: refused by name."""
    def fn(self, x):
        return self.conv(x) / math.sqrt(x.shape[0] + 3)

    model = _Lambda(fn)
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    report = sct.lipschitz_report(model.double().eval(), (2, 4, 4))
    assert report.network_upper is None
    assert "multiplies the signal by a number that may follow the batch size ('sqrt')" in (
        report.reason)



class _PadsToEven(nn.Module):
    """A branch on a size: an odd width padded to even."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] % 2:
            x = F.pad(x, (0, 1))
        return self.conv(x)


class _UpsamplesToItsSkip(nn.Module):
    """A U-Net's decoder step: the upsampled map resized to its skip connection's size where
    they differ, then both concatenated; and an ``assert`` on the channels."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 1, 2, stride=2)
        self.out = nn.Conv2d(2, 1, 1)

    def forward(self, x):
        assert x.size(1) == 1, "one channel"
        u = self.up(self.down(x))
        if u.shape[-2:] != x.shape[-2:]:
            u = F.interpolate(u, size=x.shape[-2:])
        return self.out(torch.cat([u, x], 1))


class _TwoLevelUNet(nn.Module):
    """Two decoder steps each resizing to its skip's size where they differ: the second
    step's condition reads a shape computed through the first step's ``F.interpolate`` by
    sizes (``size=skip.shape[-2:]``)."""

    def __init__(self):
        super().__init__()
        self.down = nn.ModuleList([nn.Conv2d(1, 1, 3, stride=2, padding=1) for _ in range(2)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(1, 1, 2, stride=2) for _ in range(2)])
        self.fuse = nn.ModuleList([nn.Conv2d(2, 1, 1) for _ in range(2)])

    def forward(self, x):
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            u = up(x)
            if u.shape[-2:] != skip.shape[-2:]:
                u = F.interpolate(u, size=skip.shape[-2:])
            x = fuse(torch.cat([skip, u], 1))
        return x


class _UpToItsSkipsSize(nn.Module):
    """A decoder step given its skip's size (``output_size=x.shape[-2:]``), then checked."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1)

    def forward(self, x):
        u = self.up(self.down(x), output_size=x.shape[-2:])
        if u.shape[-2:] != x.shape[-2:]:
            u = F.interpolate(u, size=x.shape[-2:])
        return u + x


@pytest.mark.parametrize("model, shape", [
    (_PadsToEven, (1, 7, 7)), (_PadsToEven, (1, 6, 6)),
    (_UpsamplesToItsSkip, (1, 7, 7)), (_UpsamplesToItsSkip, (1, 8, 8)),
    (_TwoLevelUNet, (1, 7, 9)), (_TwoLevelUNet, (1, 8, 8)),
    (_UpToItsSkipsSize, (1, 7, 9)), (_UpToItsSkipsSize, (1, 6, 6))])
def test_a_branch_on_sizes_takes_the_traced_shape_s_way(model, shape):
    """A new user's trial: a forward that branches (or asserts) on sizes of tensors whose
    shapes the input's fixes had no graph ("symbolically traced variables cannot be used as
    inputs to control flow"), where torch.jit.trace of it had a bound; the branch is taken as
    at the traced shape, both ways (7 wide: taken; 8: not), and the operator is the
    Jacobian, the bound at least its norm; so is a two-level U-Net's second condition, on a
    shape the first step's ``F.interpolate`` made by sizes (a new user's trial found it
    refused at odd sizes), and one on a shape a transposed convolution made to the sizes
    given it (``output_size=x.shape[-2:]``: a review found it refused). Mutants this
    catches: _torch_sizes_tracer.py: ``to_bool`` not overridden; the decided conditions'
    nodes left in the graph (the bound refuses "a value nothing reads"); a transposed
    convolution's sizes not read as F.interpolate's."""
    _check_operator(model(), shape)
    _check_bound(model(), shape)


def _assert_control_flow_refused(fn) -> None:
    """A forward ``fn(self, x)`` around a convolution ``self.conv``: refused as control flow
    by the bound and the operator."""
    model = _Lambda(fn)
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    model = model.double().eval()
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is None
    assert "control flow" in report.reason, report.reason
    with pytest.raises(TypeError, match="control flow"):
        sct.network_operator(model, (2, 4, 4))


def test_a_branch_on_a_shape_padded_by_the_batch_size_stays_refused():
    """A condition on a shape that ``F.pad`` made by the batch size (``x.shape[0] // 3``: no
    padding at the probes' batches of one and two) is no branch on the sample's shape:
    refused, for the bound and the operator. A mutant this catches: _torch_sizes_tracer.py:
    ``_rank_fixed`` not handing the padding's sizes to the condition's checks (the branch
    then taken as at the probe, and refused later, by the run at a batch of three, with
    another reason)."""
    def fn(self, x):
        z = self.conv(x)
        y = F.pad(z, [0, x.shape[0] // 3])
        return 2 * z if y.shape[-1] > 4 else z

    _assert_control_flow_refused(fn)


@pytest.mark.parametrize("condition", [
    lambda x: x.shape[0] > 1, lambda x: x.shape[0] < 5, lambda x: x.size(0) < 5,
    lambda x: x.shape[:2][0] < 5, lambda x: x[:, :, :, x[0, 0, 0] > 0].shape[-1] > 1,
    lambda x: x.sum() > 0, lambda x: x.numel() > 10,
    lambda x: x.reshape(2, -1).shape[-1] > 20, lambda x: x.reshape(2, -1).shape[-1] > 40])
def test_a_branch_on_the_batch_size_or_values_stays_refused(condition):
    """A branch on the batch size (``x.shape[0]``, ``x.size(0)``, an item of a slice with
    it, ``x.numel()``, a size a reshape by a constant moves the batch into, whichever way the
    probe's batches take the branch: ``< 5`` at batches of one to three the same) or on
    values (a size a mask of the signal's values makes) is no branch on the sample's shape:
    torch.fx's refusal stands, for the bound and the operator. Mutants this catches:
    _torch_sizes_tracer.py: the batch's items (``_reads_batch_of``: each of its two rules)
    or the shapes at a batch of one not compared, or a read tensor's shape not checked to be
    fixed by the input's (``_rank_fixed``)."""
    def fn(self, x):
        y = self.conv(x)
        return 2 * y if condition(x) else y

    model = _Lambda(fn)
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    report = sct.lipschitz_report(model.double().eval(), (2, 4, 4))
    assert report.network_upper is None
    assert "control flow" in report.reason, report.reason
    with pytest.raises(TypeError, match="control flow"):
        sct.network_operator(model, (2, 4, 4))


@pytest.mark.parametrize("call", [
    lambda x: x.narrow(-1, 0, 3) + torch.narrow(x, -1, 1, 3),
    lambda x: torch.flip(x, dims=[-1]) + x.flip(1) + torch.fliplr(x),
    lambda x: torch.roll(x, 1, -1) + x.roll((2, -1), (1, 2)),
    lambda x: torch.rot90(x, 1, (2, 3)), lambda x: x[:, :1].expand(-1, 3, -1, -1),
    lambda x: x.index_select(2, torch.tensor([0, 2, 2])),
    lambda x: x.repeat_interleave(2, dim=-1) + torch.repeat_interleave(x, 2, dim=3),
    lambda x: x.cumsum(-1) + torch.cumsum(x, 2), lambda x: torch.diff(x, dim=-1, n=2),
    lambda x: x.tril() + torch.triu(x, 1), lambda x: x.select(1, 1) + torch.select(x, 1, 0),
    lambda x: x.unfold(-1, 2, 1), lambda x: x.unfold(2, 3, 1).flatten(3)])
def test_linear_tensor_calls_run_by_torch(call):
    """A new user's trial: ``x.narrow`` (bounded by lipschitz_report), ``flip``, ``roll``,
    ``expand``, ``index_select``, ``repeat_interleave``, ``cumsum``, ``diff`` were "not linear,
    or not a call network_operator maps"; each is run by torch on the samples and its adjoint
    by torch.autograd, against the Jacobian. A mutant this catches: _torch_graph_ops.py:
    the calls not run by torch (refused as before)."""
    _check_operator(_conv_then(call), (2, 4, 4))


@pytest.mark.parametrize("call, factor", [
    (lambda x: torch.diff(x, dim=-1, prepend=torch.zeros_like(x[..., :1])), 2.0),
    (lambda x: x.diff(dim=2, append=torch.full_like(x[:, :, :1], 3.0)), 2.0),
    (lambda x: torch.diff(x, 2, -1, torch.ones_like(x[..., :2]),
                          -torch.ones_like(x[..., :1])), 4.0),
    (lambda x: torch.diff(x, n=1, dim=1, prepend=2 * torch.ones_like(x[:, :1]),
                          append=torch.zeros_like(x[:, :1])), 2.0)])
def test_a_difference_with_constants_of_the_batch_s_size(call, factor):
    """A new user's trial: ``torch.diff(x, prepend=torch.zeros_like(x[..., :1]))``, linear,
    had no operator and no bound, each said to run on no batch of three: torch wants
    ``prepend`` and ``append`` of the input's batch size, and they were held at the probe's.
    Their first sample now stands for all (:func:`per_sample_arguments`), expanded to the
    batch the call runs on: the operator is the Jacobian, its offset ``model(0)`` (nonzero
    constants make the map affine: the linear part runs them as zeros), it maps batches of
    one to five as the model does, and the bound is ``2^n`` times the convolution's. Mutants
    this catches: _torch_calls.py: the constants not expanded (no operator), or not made
    zero in the linear part (the operator off by the offset)."""
    model = _conv_then(call).double().eval()
    net = _check_operator(model, (2, 4, 4))
    for batch in (1, 3, 5):
        x = _seeded(batch, 2, 4, 4, seed=batch)
        with torch.no_grad():
            np.testing.assert_allclose(net.apply(x.numpy()), model(x).numpy(), rtol=1e-12,
                                       atol=1e-12)
    assert _bound_over_conv(model, (2, 4, 4)) == pytest.approx(factor, rel=1e-12)


def test_a_difference_with_constants_that_differ_between_samples_is_refused():
    """A ``prepend`` whose samples differ (here the sample's index in the batch) is no
    constant of one sample's map: refused by name by the operator, and by the bound (which
    sees a value computed from the batch size first)."""
    def call(x):
        index = torch.arange(x.shape[0], dtype=x.dtype).reshape(-1, 1, 1, 1)
        return torch.diff(x, dim=-1, prepend=index.expand(-1, 2, 4, 1))

    model = _conv_then(call).double().eval()
    with pytest.raises(TypeError, match="takes a prepend whose samples differ"):
        sct.network_operator(model, (2, 4, 4))
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is None
    assert "takes a size or index computed from the signal" in report.reason, report.reason


@pytest.mark.parametrize("call, reason", [
    (lambda x: x.flip(0), "does not act on each sample alone"),
    (lambda x: x.flipud(), "does not act on each sample alone"),
    (lambda x: x.cumsum(0), "does not act on each sample alone"),
    (lambda x: x.roll(1), "does not act on each sample alone"),
    (lambda x: x.select(0, 0), "does not act on each sample alone"),
    (lambda x: x.unfold(0, 2, 1), "mixes the batch"),
    (lambda x: x.index_select(-1, x[:, 0, 0, 0].argmax().reshape(1)), "mixes the batch"),
    (lambda x: torch.diff(x, dim=-1, prepend=x[..., :1]),
     "'diff' .* takes the signal other than as its one tensor")])
def test_linear_tensor_calls_across_the_batch_are_refused(call, reason):
    """A call run by torch that reads or moves the batch axis (``flip(0)``, ``flipud``,
    ``cumsum(0)``, ``roll`` of the flattened tensor, ``select(0, ...)``) or takes an index
    from the signal is refused, never mapped wrong, as is one taking the signal twice
    (``diff``'s ``prepend`` from it). Mutants this catch: _torch_graph_ops.py: the
    per-sample check, or the check that the other arguments are constants, dropped."""
    def fn(self, x):
        return call(x)

    with pytest.raises((TypeError, ValueError), match=reason):
        sct.network_operator(_Lambda(fn).double().eval(), (2, 4, 4))


@pytest.mark.parametrize("call, copies", [
    (lambda x: torch.flip(x, dims=[-1]), 1), (lambda x: x.fliplr(), 1),
    (lambda x: torch.roll(x, 1, -1), 1), (lambda x: x.roll((2, -1), (1, 2)), 1),
    (lambda x: torch.rot90(x, 1, (2, 3)), 1), (lambda x: x.tril(), 1),
    (lambda x: torch.triu(x, 1), 1), (lambda x: x.select(1, 1), 1),
    (lambda x: x[:, :1].expand(-1, 3, -1, -1), 3),
    (lambda x: x.index_select(2, torch.tensor([0, 2, 2, 2])), 3),
    (lambda x: torch.repeat_interleave(x, 3, dim=3), 3),
    (lambda x: x.repeat_interleave(torch.tensor([1, 2, 1, 1]), dim=2), 2),
    (lambda x: x.unfold(-1, 2, 1), 2), (lambda x: x.unfold(-1, 3, 1), 2),
    (lambda x: x.unfold(2, 2, 2), 1), (lambda x: x.unfold(-1, 4, 1), 1),
    (lambda x: x.unfold(3, 3, 1).unfold(2, 3, 1), 4)])
def test_selections_run_by_torch_are_bounded_by_their_copies(call, copies):
    """The bound over the graph of a selection, permutation or copy run by torch (``flip``,
    ``roll``, ``rot90``, ``tril``, ``select``, ``expand``, ``index_select``,
    ``repeat_interleave``; a new user's trial found none bounded) is the convolution's times
    ``sqrt`` of the most copies one entry gets, at least the Jacobian's norm. Mutants this
    catch: _torch_graph_rules.py: the rule dropped (no bound), or the copies not counted
    (the expand, index and repeat cases then fall below the Jacobian's norm)."""
    assert _bound_over_conv(_conv_then(call), (2, 4, 4)) == pytest.approx(math.sqrt(copies),
                                                                          rel=1e-12)


@pytest.mark.parametrize("call, reason", [
    (lambda x: x.flip(0), "does not act on each sample alone"),
    (lambda x: x.roll(1), "does not act on each sample alone"),
    (lambda x: x.flipud(), "does not act on each sample alone"),
    (lambda x: x.select(0, 0), "does not act on each sample alone"),
    (lambda x: x.roll(x.shape[0], -1), "takes a size or index computed from the signal"),
    (lambda x: x.cumsum(0), "does not act on each sample alone"),
    (lambda x: x.cumsum(-1, dtype=torch.float32), "changes the signal's dtype"),
    (lambda x: torch.diff(x, dim=-1, prepend=x[..., :1]),
     "takes the signal other than as its one input"),
    (lambda x: torch.diff(x, dim=-1, prepend=x), "takes the signal other than as its one input"),
    (lambda x: torch.diff(x, 2, -1, append=x), "takes the signal other than as its one input"),
    (lambda x: torch.diff(x, dim=0), "mixes the batch axis into the sample")])
def test_calls_run_by_torch_across_the_batch_have_no_bound(call, reason):
    """``x.flip(0)``, ``x.roll(1)`` (of the flattened tensor), ``flipud``, ``select(0, 0)``,
    ``cumsum(0)``, ``diff(dim=0)`` move or read the batch axis, a roll by the batch size
    changes one sample's map with the batch, ``diff``'s ``prepend`` from the signal takes it
    twice (the signal itself too: a review found ``diff(x, prepend=x)``, of norm 2.76, bounded
    2, as ``diff(x)``), and a ``cumsum`` into another dtype is a cast: no bound, by name.
    Mutants this catch: _torch_graph_rules.py: the per-sample check dropped, the arguments
    computed from the signal not refused, the signal counted once however often an argument
    names it (``node.all_input_nodes``), or the dtype check dropped."""
    report = sct.lipschitz_report(_conv_then(call).double().eval(), (2, 4, 4))
    assert report.network_upper is None
    assert reason in report.reason, report.reason


def test_the_running_sum_s_norm_is_its_largest_singular_value():
    """``_cumsum_norm(L)`` bounds the norm of the lower triangular ``L x L`` matrix of ones,
    within rounding of it (against a dense SVD), and is above its closed form at 40 digits
    (mpmath; compared as exact rationals: a mutant swapping pi's bounds in the series is
    1e-16 below it)."""
    import mpmath

    from sparseconv._torch_graph_rules import _cumsum_norm

    for length in [*range(1, 41), 97, 500, 10**6]:
        bound = _cumsum_norm(length)
        with mpmath.workdps(40):
            exact = 1 / (2 * mpmath.sin(mpmath.pi / (4 * length + 2)))
            assert mpmath.mpf(bound.numerator) / bound.denominator >= exact, length
        if length <= 500:
            norm = float(np.linalg.svd(np.tril(np.ones((length, length))),
                                       compute_uv=False)[0])
            assert norm * (1 - 1e-14) <= float(bound) <= norm * (1 + 1e-13), (length, norm)


def _cumsum_factor(length):
    return 1 / (2 * math.sin(math.pi / (4 * length + 2)))


@pytest.mark.parametrize("call, factor", [
    (lambda x: x.cumsum(-1), _cumsum_factor(5)), (lambda x: torch.cumsum(x, dim=2),
                                                   _cumsum_factor(4)),
    (lambda x: x.cumsum(dim=x.ndim - 3), _cumsum_factor(2)),
    (lambda x: x.diff(), 2.0), (lambda x: torch.diff(x, 2, dim=2), 4.0),
    (lambda x: torch.diff(x, n=0), 1.0)])
def test_running_sums_and_differences_are_bounded(call, factor):
    """A new user's trial: ``cumsum`` and ``diff``, mapped by network_operator, had no rule
    in the bound over the graph. ``cumsum`` over ``L`` entries multiplies the bound by the
    norm of the running sum, ``1 / (2 sin(pi / (4 L + 2)))``; ``diff`` of order ``n`` by
    ``2^n``; at least the Jacobian's norm. Mutants this catch: _torch_graph_rules.py: the
    rule dropped (no bound), or the factor not taken (below the Jacobian's norm)."""
    assert _bound_over_conv(_conv_then(call), (2, 4, 5)) == pytest.approx(factor, rel=1e-12)


@pytest.mark.parametrize("call, factor", [
    (lambda x: torch.stack([x, x, x], 1), math.sqrt(3)),
    (lambda x: torch.stack([x, 2 * x], dim=-1), math.sqrt(5)),
    (lambda x: torch.stack((x.flip(-1), x), 3), math.sqrt(2))])
def test_a_stack_of_the_signal(call, factor):
    """A new user's trial: ``torch.stack([x, x, x], 1)`` was refused as taking "the signal
    other than as its one input"; the operator stacks as torch does (against the Jacobian),
    and the bound adds the pieces' in quadrature, as a concatenation's (exact here). Mutants
    this catches: the stack not mapped (_torch_graph_ops.py) or not ruled
    (_torch_graph_rules.py)."""
    model = _conv_then(call)
    _check_operator(model, (2, 4, 4))
    assert _bound_over_conv(model, (2, 4, 4)) == pytest.approx(factor, rel=1e-12)


@pytest.mark.parametrize("dim", [0, -5])
def test_a_stack_along_the_batch_axis_is_refused(dim):
    """``torch.stack([x, x], 0)`` puts the new axis before the batch's: refused by the
    operator and the bound, by name. A mutant this catches: _torch_graph_rules.py: the
    stack's axis not checked."""
    def fn(self, x):
        return torch.stack([x, x], dim)

    model = _Lambda(fn).double().eval()
    with pytest.raises(TypeError, match="stacks along the batch axis"):
        sct.network_operator(model, (2, 4, 4))
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is None and "stacks along the batch axis" in report.reason


def _with_its_own_default(forward):
    @functools.wraps(forward)
    def wrapper(self, x, big=True):  # (model(x) runs big=True; the inner default is False)
        return forward(self, x, big)
    return wrapper


class _WrappedDefault(nn.Module):
    @_with_its_own_default
    def forward(self, x, big=False):
        return x + F.relu(x - 1e5) * 100 if big else x


def _passing_on(forward):
    @functools.wraps(forward)
    def wrapper(*args, **kwargs):  # (a logging or timing decorator: the inner defaults hold)
        return forward(*args, **kwargs)
    return wrapper


class _PassedOnDefault(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1)

    @_passing_on
    def forward(self, x, skip=None):
        y = self.conv(x)
        return y if skip is None else y + skip


def test_a_wrapper_s_own_defaults_are_not_replaced_by_the_inner_ones():
    """A review: torch.fx reads the arguments off the innermost function and calls the
    outermost with them, so a functools.wraps wrapper declaring ``big=True`` over
    ``forward(x, big=False)`` was traced with ``big=False``: a bound of 1.0 for a map of
    constant 101 (zero on the probes, ``relu(x - 1e5)``). Such a forward is traced as before
    (refused); one whose wrappers pass everything on (``*args, **kwargs``, as
    ``@torch.no_grad()``'s) keeps its defaults. A mutant this catches: _torch_probe.py: the
    wrappers' own parameters not checked."""
    report = sct.lipschitz_report(_WrappedDefault().double().eval(), (3, 4))
    x = torch.full((3, 4), 2e5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: _WrappedDefault()(v[None])[0], x)
    truth = float(np.linalg.norm(jac.reshape(12, 12).numpy(), 2))
    assert truth == pytest.approx(101.0)
    assert report.network_upper is None or report.network_upper >= truth, report.network_upper
    _check_operator(_PassedOnDefault(), (1, 6))
    _check_bound(_PassedOnDefault(), (1, 6))



def _einsum_model(equation: str, constant: torch.Tensor, signal_first: bool) -> nn.Module:
    """``torch.einsum(equation, conv(x), W)`` (or ``W, conv(x)``), ``W`` a parameter."""
    def fn(self, x):
        y = self.conv(x)
        return torch.einsum(equation, y, self.w) if signal_first else torch.einsum(
            equation, self.w, y)

    model = _Lambda(fn)
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    model.w = nn.Parameter(constant)
    return model


def _random_einsum(rng) -> tuple[str, tuple[int, ...], bool]:
    """An einsum of the signal ``bchw`` (``c, h, w = 2, 4, 5``) and a constant: labels of the
    signal's shared or contracted, labels of its own (``o``, ``p``) kept, the signal's others
    kept or summed; the output's labels in a random order after the batch's."""
    sizes = {"c": 2, "h": 4, "w": 5, "o": 3, "p": 2}
    mine = "".join(rng.permutation(list("chw"))[:rng.integers(0, 4)])
    own = "".join(rng.permutation(list("op"))[:rng.integers(0, 3)])
    constant = "".join(rng.permutation(list(mine + own))) if mine + own else ""
    if not constant:
        constant, own = "o", "o"
    kept = [c for c in "chw" + constant if c not in own and rng.random() < 0.5]
    output = "b" + "".join(rng.permutation(sorted(set(kept) | set(own))))
    signal_first = bool(rng.random() < 0.7)
    terms = ("bchw", constant) if signal_first else (constant, "bchw")
    return f"{','.join(terms)}->{output}", tuple(sizes[c] for c in constant), signal_first


def test_einsum_by_a_constant_is_mapped_and_bounded_exactly():
    """``torch.einsum`` of the signal and a parameter (a new user's trial found it refused
    by both): network_operator's matrix and adjoint are autograd's Jacobian, and the bound
    over the graph is the convolution's times the einsum's exact norm, ``sqrt(summed) *
    max_s ||W[s]||`` (a seeded sweep of equations; a fixed set of ellipsis and implicit
    forms)."""
    rng = np.random.default_rng(20261206)
    cases = [_random_einsum(rng) for _ in range(16)] + [
        ("...c,oc->...o", (3, 5), True), ("bchw,c", (2,), True), ("oc,bchw->bohw", (3, 2), False),
        ("b...w,w->b...", (5,), True), ("bchw,hw->bchw", (4, 5), True)]
    for equation, shape, signal_first in cases:
        w = torch.from_numpy(rng.standard_normal(shape))
        model = _einsum_model(equation, w, signal_first)
        _check_operator(model, (2, 4, 5))
        alone = _einsum_model(equation, w, signal_first)
        alone.conv = nn.Identity()
        alone = alone.double().eval()
        exact = np.linalg.norm(_jacobian(alone, (2, 4, 5)), 2)
        assert _bound_over_conv(model, (2, 4, 5)) == pytest.approx(exact, rel=1e-9), equation


@pytest.mark.parametrize("equation, shape, why", [
    ("bchw,hh->bc", (4, 4), "diagonal"),
    ("bchw,op->bchw", (3, 2), "sums the constant over a label of its own"),
    ("bchw,oc->obhw", (3, 2), "batch axis"),
    ("bchw,bc->bhw", (2, 2), "batch axis"),
    ("bchw,...c->b...", (3, 2), "'...'"),
    ("bchw,h->bchw", (1,), "broadcasts the constant"),
])
def test_einsums_without_a_rule_are_named(equation, shape, why):
    """A diagonal, a constant summed over a label of its own, the batch moved or read by the
    constant, an ellipsis or a broadcast in the constant: no bound, each said; a diagonal and
    a constant's own sum are linear all the same, and network_operator maps them."""
    model = _einsum_model(equation, _seeded(*shape), True).double().eval()
    try:
        model(torch.zeros(2, 2, 4, 5, dtype=torch.float64))
    except RuntimeError:  # torch refuses it too: nothing to bound
        return
    report = sct.lipschitz_report(model, (2, 4, 5))
    assert report.network_upper is None and why in report.reason, report.reason
    if why in ("diagonal", "sums the constant over a label of its own"):
        _check_operator(model, (2, 4, 5))


def test_einsum_of_two_signals_or_three_operands_is_refused():
    """Not linear (two values of the signal), or not read (three operands)."""
    for fn, why in ((lambda self, x: torch.einsum("bchw,bchw->bc", x, self.conv(x)),
                     "two values of the signal"),
                    (lambda self, x: torch.einsum("bchw,c,c->bhw", x, self.v, self.v),
                     "3 operands")):
        model = _Lambda(fn, v=_seeded(2))
        model.conv = nn.Conv2d(2, 2, 3, padding=1)
        model = model.double().eval()
        report = sct.lipschitz_report(model, (2, 4, 5))
        assert report.network_upper is None and why in report.reason, report.reason
    with pytest.raises(TypeError, match="two values of the signal"):
        sct.network_operator(_Lambda(lambda self, x: torch.einsum("bchw,bchw->bc", x, 2 * x)
                                     ).double().eval(), (2, 4, 5))


def test_a_call_acts_per_sample_only_if_no_other_sample_changes_it_by_a_bit():
    """The check behind every call run by torch: a sample's output must not change at all
    when the others do (a mixing of 1e-14 is caught, which a tolerance would let through),
    and must be the same, but for rounding, alone (a call that scales by the batch size is
    caught, which the first test cannot see); einsum's batched product passes, though its
    values alone differ in the last bits."""
    from sparseconv._torch_calls import acts_per_sample

    assert acts_per_sample(lambda x: x + 1e-14 * x.flip(0), (2, 3)) is None
    assert acts_per_sample(lambda x: x * x.shape[0], (2, 3)) is None
    assert acts_per_sample(lambda x: x.cumsum(0), (2, 3)) is None
    assert acts_per_sample(lambda x: x[:1], (2, 3)) is None
    w = _seeded(7, 5, seed=3)
    assert acts_per_sample(lambda x: torch.einsum("bchw,oc->bohw", x, w), (5, 6, 4)) == (
        7, 6, 4)
    assert acts_per_sample(lambda x: x.flip(1), (2, 3)) == (2, 3)


_MASK = torch.from_numpy(np.random.default_rng(7).random((2, 4, 5)) < 0.5)


@pytest.mark.parametrize("name, call, factor", [
    ("where", lambda m, y: torch.where(m.mask, y, 0.0), 1.0),
    ("where with a value", lambda m, y: torch.where(m.mask, y, 2.5), 1.0),
    ("where, the signal other", lambda m, y: torch.where(m.mask, -1.0, y), 1.0),
    ("x.where", lambda m, y: y.where(m.mask[0], m.other), 1.0),
    ("masked_fill", lambda m, y: y.masked_fill(m.mask, 3.0), 1.0),
    ("torch.masked_fill by keyword", lambda m, y: torch.masked_fill(y, mask=m.mask[:, :1],
                                                                     value=-2.0), 1.0),
    ("a mask that broadcasts the signal", lambda m, y: y[:, :1].masked_fill(m.mask, 0.0),
     math.sqrt(2.0)),
    ("two signals", lambda m, y: torch.where(m.mask, y, y.flip(-1)), math.sqrt(2.0)),
])
def test_where_and_masked_fill_by_a_constant_condition(name, call, factor):
    """``torch.where`` and ``masked_fill`` by a constant boolean mask (a buffer): each output
    entry one of an operand's (a new user's trial's leftover: refused by both).
    network_operator's matrix, adjoint and offset are autograd's; the bound over the graph
    is the convolution's times ``sqrt(sum_o r_o)``: 1 for one operand, ``sqrt(2)`` for a
    signal broadcast to two copies or chosen from twice."""
    model = _conv_then(lambda y: call(model, y))
    model.register_buffer("mask", _MASK)
    model.register_buffer("other", _seeded(4, 5, seed=4))
    _check_operator(model, (2, 4, 5))
    assert _bound_over_conv(model, (2, 4, 5)) == pytest.approx(factor, rel=1e-12), name


@pytest.mark.parametrize("call, why", [
    (lambda m, y: torch.where(y > 0, y, 0.0), "no constant boolean tensor"),
    (lambda m, y: y.masked_fill(y.detach() < 0, 0.0), "no constant boolean tensor"),
    (lambda m, y: torch.where(m.mask.double(), y, 0.0), "no constant boolean tensor"),
])
def test_where_by_a_condition_of_the_signal_is_refused(call, why):
    """A condition read off the signal is no linear map (``where(y > 0, y, 0)`` is a ReLU):
    refused by both, as is a condition that is not boolean."""
    model = _conv_then(lambda y: call(model, y))
    model.register_buffer("mask", _MASK)
    model = model.double().eval()
    try:
        model(torch.zeros(1, 2, 4, 5, dtype=torch.float64))
    except RuntimeError:  # torch refuses it too
        return
    report = sct.lipschitz_report(model, (2, 4, 5))
    assert report.network_upper is None and why in report.reason, report.reason
    with pytest.raises(TypeError, match=f"{why}|not linear"):
        sct.network_operator(model, (2, 4, 5))


def test_the_operator_holds_copies_of_the_constants_a_call_reads():
    """A review: einsum's float64 weight, and index_select's index buffer, were read live by
    network_operator, so an optimizer step after it was built changed the operator (the
    other ops hold copies: a mixed model then matched neither the old model nor the new)."""
    def fn(self, x):
        return torch.einsum("bc,oc->bo", x, self.w) + torch.index_select(x, 1, self.idx)

    model = _Lambda(fn, idx=torch.tensor([2, 0, 1]))
    model.w = nn.Parameter(torch.eye(3, dtype=torch.float64))
    model = model.double().eval()
    net = sct.network_operator(model, (3,))
    x = np.array([1.0, 2.0, 3.0])
    before = model(torch.from_numpy(x)[None]).detach().numpy().ravel()
    np.testing.assert_allclose(net(x), before, rtol=1e-15)
    with torch.no_grad():
        model.w.mul_(10.0)
        model.idx.copy_(torch.tensor([0, 1, 2]))
    np.testing.assert_allclose(net(x), before, rtol=1e-15)
    np.testing.assert_allclose(net.operator.H @ x, net.affine().matrix.toarray().T @ x,
                               rtol=1e-15)


@pytest.mark.parametrize("index, changed, read", [
    (torch.tensor([2, 0]), torch.tensor([0, 0]), lambda x, i: x[:, i]),
    (torch.tensor([True, False, True]), torch.tensor([False, True, True]),
     lambda x, i: x[:, i][:, :2]),
    (torch.tensor([0, 2]), torch.tensor([1, 3]), lambda x, i: x[:, i[0]:i[1]]),
    (torch.tensor([2, 0]), torch.tensor([1, 1]), lambda x, i: x[:, (i[0], i[1])])])
def test_the_operator_holds_a_copy_of_an_index_buffer(index, changed, read):
    """A review: ``x[:, self.idx] * self.scale`` read its index buffer live (a boolean mask
    too), so after ``idx.copy_(...)`` and ``scale.mul_(100)`` the operator was a mix of the
    old scale and the new index, matching neither model; a second review: tensors in a
    slice (``x[:, self.a:self.b]``) and in a tuple too. Mutant: the index not copied, or
    only at its top level (``_held_index`` not recursive)."""
    def fn(self, x):
        return read(x, self.idx) * self.scale[:2]

    model = _Lambda(fn, idx=index.clone(), scale=torch.tensor([1.0, 2.0, 3.0],
                                                              dtype=torch.float64))
    model = model.double().eval()
    net = sct.network_operator(model, (3,))
    x = np.array([10.0, 20.0, 30.0])
    before = model(torch.from_numpy(x)[None]).detach().numpy().ravel()
    adjoint = net.operator.H @ np.ones_like(before)
    with torch.no_grad():
        model.idx.copy_(changed)
        model.scale.mul_(100.0)
    np.testing.assert_allclose(net(x), before, rtol=1e-15)
    np.testing.assert_allclose(net.operator.H @ np.ones_like(before), adjoint, rtol=1e-15)


@pytest.mark.parametrize("call, reason", [
    (lambda x: x * torch.allclose(x, torch.zeros_like(x), atol=10.0),
     "reads the signal's values into a bool"),
    (lambda x: x * torch.equal(x, 2 * x), "reads the signal's values into a bool"),
    (lambda x: x * torch.bernoulli(torch.full((4,), 0.999, dtype=x.dtype)),
     "draws random numbers"),
    (lambda x: x + torch.rand(4, dtype=x.dtype), "draws random numbers"),
    (lambda x: x + torch.empty(4, dtype=x.dtype).zero_() + torch.empty(4, dtype=x.dtype),
     "whose values it does not set"),
    (lambda x: x * numel(x), "reads the signal's values into a float")])
def test_a_value_read_off_the_signal_or_drawn_is_no_constant(call, reason):
    """A review: ``x * torch.allclose(x, 0, atol=10)`` (x where every entry is under 10,
    else 0: not linear) was mapped as the identity, the probe's True held as a constant, 203
    for 0 at a scale of 100; ``torch.bernoulli(p, dtype=x.dtype)``, typed by the signal and
    so computed on each call, not once when torch.fx traces, was held as the probe's draw
    (7 calls in 3,000 differed from the model). Refused by name; a call may read the signal's
    sizes, dtype and device (a function of the user's named ``numel``, a second review's
    gate, is no such read: functions by identity). Mutants: the value read
    (``reads_metadata``, or by name) or the draw (``drawn_or_unset``) not refused."""
    def fn(self, x):
        return call(self.conv(x))

    model = _Lambda(fn)
    model.conv = nn.Conv1d(1, 1, 3, padding=1, dtype=torch.float64)
    with pytest.raises(TypeError, match=reason):
        sct.network_operator(model.eval(), (1, 4))


@torch.fx.wrap
def numel(t: torch.Tensor) -> float:
    """A gate named as a size read: 1 where every entry is under 50, else 0."""
    return 1.0 if float(t.detach().abs().amax()) < 50.0 else 0.0


@pytest.mark.parametrize("call", [
    lambda x, b: x * torch.empty(x.shape[1:], dtype=x.dtype).copy_(b),
    lambda x, b: x + b.new_empty(x.shape[1:]).fill_(3.0),
    lambda x, b: x * torch.asarray(b, dtype=x.dtype),
    lambda x, b: x * (x.itemsize > 0) * (x.nbytes > 0) * (x.storage_offset() + 1),
    lambda x, b: x.to(torch.result_type(x, 2.0)) * 2 + x.size(-1) + x.dim()])
def test_sizes_and_memory_set_at_once_are_read(call):
    """A second review of the refusals above: memory allocated and set whole at once
    (``torch.empty(n).copy_(b)``, ``new_empty(n).fill_(3)``), ``torch.asarray`` of a buffer,
    and the signal's item size, bytes, storage offset and result type were refused; they
    are read, as before, and the operator is the Jacobian."""
    def fn(self, x):
        return call(self.conv(x), self.b)

    model = _Lambda(fn, b=torch.linspace(0.5, 2.0, 4, dtype=torch.float64))
    model.conv = nn.Conv1d(1, 1, 3, padding=1, dtype=torch.float64)
    _check_operator(model, (1, 4))


class _SizedByTheBatch(nn.Module):
    """A decoder step whose output's width follows the batch size, 7 below a batch of four
    and 8 from four on (``7 + b // 4``), through ``how``; then scaled by 1000 where 8 wide."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1, dtype=torch.float64)
        self.up = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, dtype=torch.float64)
        self.conv = nn.Conv2d(1, 1, 3, padding=1, dtype=torch.float64)

    def forward(self, x):
        wide = 7 + x.shape[0] // 4
        if self.how == "output_size":
            u = self.up(self.down(x), output_size=[7, wide])
        elif self.how == "pad":
            u = F.pad(self.conv(x), (0, wide - 7))
        else:
            u = F.interpolate(self.conv(x), size=[7, wide])
        return u + 1000 * (u.shape[-1] - 7) * u


@pytest.mark.parametrize("how", ["output_size", "pad", "interpolate"])
def test_a_size_that_follows_the_batch_is_refused(how):
    """A review: a transposed convolution's ``output_size`` computed from the batch size
    (``7 + b // 4``: 7 below a batch of four) was read at the probe's batch, the bound over
    the graph 0.46 for a map of 366 at batches from four on (a module call's other arguments
    were never looked at), and ``network_operator`` mapped it and ``F.pad``'s and
    ``F.interpolate``'s such sizes wrong there (its check runs at batches of one to three).
    Both refuse them. Mutants: the module call's arguments not checked (the bound), the
    operator's check of sizes that follow the batch dropped."""
    model = _SizedByTheBatch(how).eval()
    with torch.no_grad():
        one = model(torch.ones(1, 1, 7, 7, dtype=torch.float64))
        four = model(torch.ones(4, 1, 7, 7, dtype=torch.float64))
    assert one.shape[-1] == 7 and four.shape[-1] == 8  # (the map changes with the batch)
    with pytest.raises(TypeError, match="takes a size computed from the batch size"):
        sct.network_operator(model, (1, 7, 7))
    report = sct.lipschitz_report(model, (1, 7, 7))
    assert report.network_upper is None, report.network_upper


class _BatchReadNowhere(nn.Module):
    """Sizes that read the batch where the call does not use it: ``output_size=x.size()``
    (PyTorch's own example; the transposed convolution reads its spatial entries), or a list
    led by a batch-dependent entry; a reshape to ``x.shape[:1] + (-1,)``."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.down = nn.Conv2d(2, 2, 3, stride=2, padding=1, dtype=torch.float64)
        self.up = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, dtype=torch.float64)

    def forward(self, x):
        if self.how == "reshape":
            return self.down(x).reshape(x.shape[:1] + (-1,))
        if self.how == "view":
            h = self.down(x)
            return h.view(h.shape[:2] + (-1,))
        if self.how == "size":
            return self.up(self.down(x), output_size=x.size())
        return self.up(self.down(x), [x.shape[0] + 5, *x.shape[1:]])  # (positional)


@pytest.mark.parametrize("how", ["size", "list", "reshape", "view"])
def test_a_size_read_with_the_batch_where_the_call_drops_it_is_read(how):
    """A second review of the refusal above: ``up(h, output_size=x.size())``, a list led by
    ``x.shape[0] + 5``, ``h.reshape(x.shape[:1] + (-1,))`` and ``h.view(h.shape[:2] + (-1,))``
    (a third review) were refused as sizes that
    follow the batch (the code before read them exactly): the call reads no batch there. The
    operator is the Jacobian; the transposed convolution's bound is at least its norm.
    Mutants: ``read_by_the_call`` keeping the whole output_size, ``_batch_first`` the direct
    batch alone."""
    model = _BatchReadNowhere(how).eval()
    _check_operator(model, (2, 6, 6))
    net = sct.network_operator(model, (2, 6, 6))
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(net.apply(x.numpy()), model(x).detach().numpy(), atol=1e-13)
    if how not in ("reshape", "view"):  # (the bound refuses a reshape by shapes it
        # computes: as before)
        _check_bound(model, (2, 6, 6))


def test_an_assignment_into_a_value_is_said_to_be_one():
    """A review: ``y[:, 0] = x[:, 1]`` was refused as "'_Sized' object does not support item
    assignment", a class of sparseconv's named; now as the assignment it is, with what to
    write instead, for the operator and the bound."""
    def fn(self, x):
        y = x.clone()
        y[:, 0] = x[:, 1]
        return y

    model = _Lambda(fn).double().eval()
    with pytest.raises(TypeError, match=r"an assignment into a traced value \(y\[...\] ="):
        sct.network_operator(model, (3, 4))
    report = sct.lipschitz_report(model, (3, 4))
    assert report.network_upper is None and "an assignment into a traced value" in report.reason


def test_a_complex_output_is_refused_as_such():
    """A review: a model returning ``conv(x) * (1 + 2j)`` was refused as computing otherwise
    than its forward, "largest difference 2.22e-16" (the imaginary parts left out of the
    comparison): now said. Mutant: the check dropped (the old message)."""
    def fn(self, x):
        return self.conv(x) * torch.tensor(1 + 2j)

    model = _Lambda(fn)
    model.conv = nn.Conv1d(1, 1, 3, padding=1, dtype=torch.float64)
    with pytest.raises(TypeError, match="returns complex values"):
        sct.network_operator(model.eval(), (1, 4))


def test_einsums_sublist_form_and_non_finite_constants_are_said_so():
    """A review: einsum's sublist form was refused as "two values of the signal" or "does not
    act on the network's signal", a NaN in the constant as a failed batch check."""
    for fn, why in ((lambda self, x: torch.einsum(x, [0, 1], self.w, [2, 1], [0, 2]),
                     "sublist form"),
                    (lambda self, x: torch.einsum(self.w, [2, 1], x, [0, 1], [0, 2]),
                     "sublist form"),
                    (lambda self, x: torch.einsum("bc,oc->bo", x, self.w * self.bad),
                     "non-finite entries")):
        model = _Lambda(fn, bad=torch.tensor([1.0, math.nan, 1.0], dtype=torch.float64))
        model.w = nn.Parameter(_seeded(4, 3))
        model = model.double().eval()
        report = sct.lipschitz_report(model, (3,))
        assert report.network_upper is None and why in report.reason, report.reason
        with pytest.raises(TypeError, match=why):
            sct.network_operator(model, (3,))


@pytest.mark.parametrize("call", [
    lambda m, y: y @ m.w.to(y.dtype), lambda m, y: y @ m.w.type_as(y),
    lambda m, y: y @ m.w.to(y), lambda m, y: y @ m.w.to(device=y.device, dtype=y.dtype),
    lambda m, y: torch.einsum("bcht,to->bcho", y, m.w.to(dtype=y.dtype)),
])
def test_a_constant_cast_to_the_signals_dtype_is_a_constant(call):
    """A review: ``x @ w.to(x.dtype)`` and ``w.type_as(x)`` were refused by the bound as
    "mixes the batch axis into the sample" (the cast read the signal's dtype); they are ``w``:
    the bound is that of ``x @ w``, at least the exact norm."""
    def plain(m, y):
        return y @ m.w

    bounds, conv = [], nn.Conv2d(2, 2, 3, padding=1)
    for fn in (call, plain):
        model = _Lambda(lambda self, x, fn=fn: fn(self, self.conv(x)))
        model.conv, model.w = conv, nn.Parameter(_seeded(4, 3, seed=9))
        _check_operator(model, (2, 3, 4))
        bounds.append(_check_bound(model, (2, 3, 4)))
    assert bounds[0] == bounds[1]


def test_a_cast_of_a_value_of_the_signal_stays_the_signal():
    """``(y > 0).to(y.dtype) * y`` is a ReLU (not linear), ``y.to(w)`` the signal cast: the
    first refused, the second bounded as ``y``."""
    model = _conv_then(lambda y: (y > 0).to(y.dtype) * y)
    report = sct.lipschitz_report(model.double().eval(), (2, 3, 4))
    assert report.network_upper is None and "takes the signal other than" in report.reason
    model = _conv_then(lambda y: y.to(model.w) + y)
    model.w = nn.Parameter(_seeded(1))
    assert _bound_over_conv(model, (2, 3, 4)) == pytest.approx(2.0, rel=1e-12)


class _Heads(dict):
    """A dict of tensors with a ``device`` that is one of them (a review's)."""

    @property
    def device(self):
        return self["hidden"]


_Pair = collections.namedtuple("_Pair", ["dtype", "device"])


@torch.fx.wrap
def _pair_of(y):
    return _Pair(5 * y, y)


@torch.fx.wrap
def _heads_of(y):
    return _Heads(hidden=9 * y)


class _Caster:
    """An object of its own with a ``to`` that computes: no tensor's cast."""

    def to(self, x):
        return 7 * x


def test_a_dtype_or_a_cast_read_off_what_is_no_tensor_is_no_constant():
    """An adversarial review: ``.dtype`` or ``.device`` read off a namedtuple or dict of the
    signal's values, and ``to`` of an object of the model's own, were taken for constants,
    the bounds 1.0 for maps of 6, 10 and 8. Only a tensor's dtype, device and casts are."""
    mask = torch.from_numpy(np.random.default_rng(3).random((3, 4)) < 0.5)
    for fn, true in ((lambda self, x: x + _pair_of(x).dtype, 6.0),
                     (lambda self, x: x + _heads_of(x).device, 10.0),
                     (lambda self, x: torch.where(self.mask, x, _pair_of(x).dtype.to(x)), 5.0),
                     (lambda self, x: x + self.caster.to(x), 8.0)):
        model = _Lambda(fn, mask=mask)
        model.caster = _Caster()
        model = model.double().eval()
        assert np.linalg.norm(_jacobian(model, (3, 4)), 2) == pytest.approx(true)
        report = sct.lipschitz_report(model, (3, 4))
        assert report.network_upper is None or report.network_upper >= true, report


def test_a_forward_that_resizes_a_buffer_is_refused_and_the_buffer_put_back():
    """An adversarial review: ``torch.where(..., out=self.buf)`` resizes the buffer to the
    probe's batch; copying it back raised torch's shape error over the refusal, and the
    model was left with the buffer resized."""
    def fn(self, x):
        y = self.conv(x)
        torch.where(self.mask, y, self.zero, out=self.buf)
        return self.buf * 3 + y

    model = _Lambda(fn, mask=_MASK[0], zero=torch.zeros(()), buf=torch.zeros(2, 2, 4, 5))
    model.conv = nn.Conv2d(2, 2, 3, padding=1)
    model = model.eval()
    report = sct.lipschitz_report(model, (2, 4, 5))
    assert report.network_upper is None and "buffers in place" in report.reason, report.reason
    assert tuple(model.buf.shape) == (2, 2, 4, 5) and not model.buf.any()


@pytest.mark.parametrize("call", [lambda m, y: torch.where(m.mask, y, 1j),
                                  lambda m, y: torch.where(m.mask, y, m.complex_),
                                  lambda m, y: y.to(torch.complex128).masked_fill(m.mask, 2 + 1j)])
def test_where_of_a_complex_constant_is_refused_by_name(call):
    """An adversarial review: a complex fill value raised Python's "float() argument must
    be ... not 'complex'", and a complex buffer "does not compute what its forward does
    (largest difference 3.3e-16)": the operator is real."""
    model = _conv_then(lambda y: call(model, y))
    model.register_buffer("mask", _MASK)
    model.register_buffer("complex_", torch.full((4, 5), 1 + 2j, dtype=torch.complex128))
    with pytest.raises(TypeError, match="complex"):
        sct.network_operator(model.double().eval(), (2, 4, 5))


def _tail(x):  # (B, max(B - 4, 0), ...): a slice of the batch broadcast into a sample's axis
    return x[:, None] + x[4:][None]


@pytest.mark.parametrize("fn", [
    lambda self, x: self.conv(x) * (1 if _tail(x).shape[1] == 0 else 100),
    lambda self, x: (lambda u: u if u.shape[-1] + _tail(x).shape[1] == 6 else 100 * u)(
        F.pad(self.conv(x), (0, x.shape[-1] % 3)))])
def test_a_branch_on_a_size_a_slice_of_the_batch_makes_stays_refused(fn):
    """A review: ``x[4:][None]`` broadcast into a sample's axis has size ``max(B - 4, 0)``
    there, 0 at the probes' batches of one and two; the branch on it was decided there, and
    the tensor, which only the condition read, erased with it: 1.0 for a map of 100 from a
    batch of five. A slice of the batch axis is no tensor whose shape the sample's fixes.
    A mutant this catches: _torch_sizes_tracer.py: ``_keeps_batch`` returning True."""
    _assert_control_flow_refused(fn)


def test_a_model_with_a_forward_set_on_the_instance_is_refused_by_name():
    """A new user's trial: ``network_operator`` of a model whose ``forward`` was set on the
    instance (torch.fx traces the class's) said only that the graph did not compute what the
    model does; ``lipschitz_report`` named the cause. A child's own forward is traced (it is
    the one called), and its operator is the model's."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 2, 3, padding=1, dtype=torch.float64)

        def forward(self, x):
            return self.c(x) + x

    model = Residual().eval()
    model.forward = types.MethodType(lambda self, x: 100 * self.c(x) + x, model)
    with pytest.raises(TypeError, match=r"network_operator: Residual has a forward of its own "
                                        r"set on the instance, which torch.fx does not trace"):
        sct.network_operator(model, (2, 6, 6))
    outer = nn.Sequential(model, nn.Conv2d(2, 2, 1, dtype=torch.float64)).eval()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    np.testing.assert_allclose(sct.network_operator(outer, (2, 6, 6)).apply(x.numpy()),
                               outer(x).detach().numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fill, divides", [(float("inf"), False), (0.0, True)])
def test_a_product_by_a_constant_that_is_not_finite_is_refused(fill, divides):
    """A review: ``y * b`` by a buffer of ``inf`` gave an operator of inf and nan entries
    (as the model's output); a quotient by zeros the same."""

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1, dtype=torch.float64)
            self.register_buffer("b", torch.full((1, 1, 5, 5), fill, dtype=torch.float64))

        def forward(self, x):
            return self.conv(x) / self.b if divides else self.conv(x) * self.b

    with pytest.raises(TypeError, match=r"multiplies the signal by a constant with an entry "
                                        r"that is not finite"):
        sct.network_operator(Scaled().eval(), (1, 5, 5))


def test_a_network_operator_is_no_matrix_to_matmul():
    """A new user wrote ``net @ x`` and got numpy's "does not have enough dimensions" (of an
    object array): the map is affine, and ``@`` is refused by name, both ways."""
    net = sct.network_operator(nn.Sequential(nn.Conv1d(1, 2, 3)).double().eval(), (1, 6))
    for attempt in (lambda: net @ np.ones(6), lambda: np.ones(4) @ net, lambda: net @ net,
                    lambda: np.ones(4) + net):
        with pytest.raises(TypeError, match=r"an affine map, not a matrix: apply it with "
                                            r"net\(x\)"):
            attempt()
    assert np.allclose(net(np.ones(6)), net.operator @ np.ones(6) + net.offset)


def test_a_torchscript_model_is_refused_naming_the_eager_model():
    """A new user's trial: torch.fx's attempt on a ScriptModule said it "has a __dir__ of its
    own set on the instance"."""
    model = nn.Sequential(nn.Conv1d(1, 2, 3)).double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    for wrapped in (scripted, nn.DataParallel(scripted)):  # (a review: DataParallel's still
        # got the old message)
        with pytest.raises(TypeError, match="Sequential is a TorchScript module, "
                                            "which torch.fx cannot trace: pass the eager model"):
            sct.network_operator(wrapped, (1, 6))
