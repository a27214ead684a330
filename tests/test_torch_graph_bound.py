"""The Lipschitz bound of a network that is not a chain, over its torch.fx graph
(``sparseconv._torch_graph_bound``, reported by ``lipschitz_report``): against the exact
Lipschitz constant of linear residual networks (the norm of their Jacobian, from autograd),
exact where the triangle inequality is, and refused, with the node named, where no rule
applies."""

from __future__ import annotations

import collections
import contextlib
import copy
import math
import re
import warnings
from fractions import Fraction

import numpy as np
import pytest

from ._oracles import jacobian_matrix, torch

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import sparseconv.torch as sct  # noqa: E402
from sparseconv._torch_calls import identity_in_eval  # noqa: E402

from . import _networks  # noqa: E402

F64 = torch.float64


def jacobian_norm(model: nn.Module, shape: tuple, at=None) -> float:
    """The spectral norm of ``model``'s Jacobian at zero (or at ``at``): :func:`jacobian_matrix`."""
    return float(np.linalg.norm(jacobian_matrix(model, shape, at), 2))


def without_relus(model: nn.Module) -> nn.Module:
    """The model with every ReLU an identity: linear, its Lipschitz constant ||J||."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.ReLU):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], nn.Identity())
    return model.eval()


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounds_the_jacobian_of_linear_residual_networks(fold, seed):
    """A ResNet with its ReLUs removed is linear: its Lipschitz constant is ||J||, and the
    graph bound (sums at the residual additions) is at least that, BatchNorm folded or not."""
    model = without_relus(_networks.randomize(_networks.TinyResNet(), seed))
    report = sct.lipschitz_report(model, (3, 8, 8), fold_batchnorm=fold)
    assert report.over_graph and report.reason == "" and not report.chain_checked
    true = jacobian_norm(model, (3, 8, 8))
    assert true <= report.network_upper, (true, report.network_upper)
    assert "over the model's graph" in str(report)


def test_exact_where_the_triangle_inequality_is():
    """x + a K x and cat(a x, b x), with K the identity kernel: L = 1 + a and sqrt(a^2 + b^2)
    exactly, and the bound is within the layers' certificates of them."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=F64)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[0, 0, 1, 1] = self.conv.weight[1, 1, 1, 1] = 0.75

        def forward(self, x):
            return x + self.conv(x)

    class Concatenation(nn.Module):  # (a module with no child would be one leaf layer)
        def __init__(self):
            super().__init__()
            self.keep = nn.Identity()

        def forward(self, x):
            return torch.cat([3.0 * self.keep(x), x / 0.25], dim=1)

    for model, exact in ((Residual(), 1.75), (Concatenation(), 5.0)):
        report = sct.lipschitz_report(model.eval(), (2, 5, 5))
        assert jacobian_norm(model, (2, 5, 5)) == pytest.approx(exact, rel=1e-14)
        assert exact <= report.network_upper <= exact * (1 + 1e-12), report.network_upper


def test_a_broadcast_operand_counts_once_per_copy():
    """x + 3 mean(x) over the positions: the mean, broadcast back to every position, moves
    each output; its bound counts sqrt(positions) copies (the exact constant 4 is attained)."""

    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool, self.keep = nn.AdaptiveAvgPool2d(1), nn.Identity()

        def forward(self, x):
            return self.keep(x) + 3.0 * self.pool(x)

    model = Broadcast().eval()
    report = sct.lipschitz_report(model, (2, 4, 4))
    true = jacobian_norm(model, (2, 4, 4))
    assert true == pytest.approx(4.0, rel=1e-14)
    assert true <= report.network_upper <= true * (1 + 1e-12), report.network_upper


class _Conv(nn.Module):
    def __init__(self, forward):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=F64)
        self.fc = nn.Linear(2 * 4 * 4, 3, dtype=F64)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.forward_ = forward

    def forward(self, x):
        return self.forward_(self, x)


@pytest.mark.parametrize("forward", [
    lambda m, x: (lambda y: (y.view(-1).mul_(10.0), y)[1])(m.conv(x)),  # through a view
    lambda m, x: (lambda y: (y[:, :1].mul_(10.0), y)[1])(m.conv(x)),   # through a slice
])
def test_a_value_read_after_an_in_place_change_is_refused(forward):
    """The graph's nodes are functional: a node that reads a tensor changed in place after it
    was made through a view or slice sharing its storage would be bounded by the value
    before the change. Refused, the reading node named (the exact constants are above what
    the nodes would give)."""
    model = _networks.randomize(_Conv(forward), 0)
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is None
    assert "reads a tensor changed in place after it was made" in report.reason


@pytest.mark.parametrize("forward", [
    lambda m, x: (lambda y: (y.chunk(2, dim=1), y.mul_(5.0), y)[::2])(m.conv(x)),
    lambda m, x: (lambda y: (y.unbind(1), y.mul_(5.0), y)[::2])(m.conv(x)),
    lambda m, x: (lambda y: (torch.tensor_split(y, 2, 1), y.mul_(5.0), y)[::2])(m.conv(x)),
    lambda m, x: (lambda y: (y.split(1, 1), y.add_(y), y)[::2])(m.conv(x)),
    lambda m, x: (lambda y: (y.chunk(2, dim=1), y.mul_(5.0), 0 * y.mean())[::2])(m.conv(x)),
])
def test_views_held_in_a_tuple_and_changed_in_place_are_refused(forward):
    """A review: the views ``y.chunk(2)`` returns sit in a tuple, whose version the probe did
    not record; with the read of ``y`` after ``y.mul_(5)`` redirected to the change, nothing
    read a stale tensor, and the tuple's views were bounded as before the change: 5.6 for a
    network of constant 7.8. Every tensor in a tuple value has its version checked now."""
    model = _networks.randomize(_Conv(forward), 0)
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is None
    assert "reads a tensor changed in place after it was made" in report.reason


@pytest.mark.parametrize("forward, constant", [
    (lambda m, x: (lambda y: y + y.mul_(3.0))(m.conv(x)), 6.0),  # both operands changed
    (lambda m, x: (lambda y: (F.leaky_relu(y, 5.0, inplace=True), y)[1])(m.conv(x)), 5.0),
    (lambda m, x: (lambda y: (y.mul_(2.0), y.add_(y), y)[2])(m.conv(x)), 4.0),
])
def test_a_value_read_after_an_in_place_call_is_that_calls_value(forward, constant):
    """Where the tensor itself is read after an in-place call changed it, the read is of that
    call's node (:func:`sparseconv._torch_graph.follow_in_place`; these were refused): the
    bound is the changed value's, at least the Jacobian's norm, and the layer's bound times
    the change's constant."""
    model = _networks.randomize(_Conv(forward), 0)
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is not None, report.reason
    assert jacobian_norm(model, (2, 4, 4)) <= report.network_upper
    assert report.network_upper == pytest.approx(constant * report.rows[0]["upper"], rel=1e-12)


def test_the_value_of_a_new_tensor_method_is_a_constant():
    """A new user's trial: ``y * y.new_tensor(3.0)`` was refused as mixing the batch axis
    into the sample; ``new_tensor``, ``new_ones``, ``new_zeros`` and ``new_full`` read only
    the dtype and device of ``y``. ``y * y.new_tensor(y)`` reads its values: refused (the
    signal read twice by ``new_tensor``, as ``self`` and as its data)."""
    for forward, constant in [(lambda m, x: m.conv(x) * m.conv(x).new_tensor(3.0), 3.0),
                              (lambda m, x: (lambda y: y * y.new_full((1, 2, 1, 1), -0.5)
                                             + y.new_zeros(4))(m.conv(x)), 0.5)]:
        model = _networks.randomize(_Conv(forward), 0)
        report = sct.lipschitz_report(model, (2, 4, 4))
        assert jacobian_norm(model, (2, 4, 4)) <= report.network_upper
        assert report.network_upper == pytest.approx(constant * report.rows[0]["upper"],
                                                      rel=1e-12)
        x = torch.randn(3, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
        np.testing.assert_allclose(sct.network_operator(model, (2, 4, 4)).apply(x.numpy()),
                                   model(x).detach().numpy(), rtol=0, atol=1e-12)
    model = _networks.randomize(_Conv(lambda m, x: (lambda y: y * y.new_tensor(y))(
        m.conv(x))), 0)
    with pytest.warns(UserWarning, match="new_tensor"):  # (torch's advice to clone instead)
        report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is None
    assert "takes the signal other than as its one input" in report.reason


class _Aliased(nn.Module):
    def __init__(self, keep: bool):
        super().__init__()
        self.one = nn.Linear(4, 4, bias=False, dtype=F64)
        self.two = nn.Linear(4, 4, bias=False, dtype=F64)
        self.keep = keep
        with torch.no_grad():
            self.two.weight.mul_(20.0)

    def forward(self, x):
        y = self.one(x)
        kept = y
        y += self.two(x)  # torch.fx records a new value; the model changes y in place
        return kept if self.keep else y


def test_an_in_place_sum_the_graph_shows_as_a_new_value():
    """`kept = y; y += z; return kept`: the graph returns y unchanged (a bound of ||one||),
    the model the sum (its constant near ||one + two||): refused, as the graph's output is not
    the model's. `y += z; return y`, torchvision's residual pattern, is bounded."""
    aliased = _Aliased(keep=True).eval()
    report = sct.lipschitz_report(aliased, (4,))
    assert report.network_upper is None
    assert "does not compute what its forward does" in report.reason
    plain = _Aliased(keep=False).eval()
    report = sct.lipschitz_report(plain, (4,))
    assert jacobian_norm(plain, (4,)) <= report.network_upper


class _ThroughData(nn.Module):
    def __init__(self, change):
        super().__init__()
        self.lin = nn.Linear(4, 4, dtype=F64)
        self.change = change

    def forward(self, x):
        y = self.lin(x)
        self.change(y)  # a value nothing reads, which changes y through .data
        return y


@pytest.mark.parametrize("change", [
    lambda y: y.data.mul_(10),
    lambda y: y.data.view(-1).mul_(10),
    lambda y: torch.mul(y.data, 10, out=y.data),
])
def test_an_unused_change_through_data_is_refused(change):
    """A review (of a change that skipped unused calls, reverted): y.data has a version
    counter of its own, so an in-place change through it is invisible to the stale-read
    check, and the graph, which runs it too, agrees with the forward; the bound was 10x below
    the Lipschitz constant. Any unused call stays refused, and a read of .data is refused by
    name."""
    model = _ThroughData(change).eval()
    report = sct.lipschitz_report(model, (4,))
    assert report.network_upper is None, report.network_upper
    assert re.search(r"reads \.data|computes a value nothing reads", report.reason), \
        report.reason


@torch.fx.wrap
def _scaled_through_data(t):
    t.data.mul_(5.0)
    return t.size(0)


@pytest.mark.parametrize("forward, constants, why", [
    (lambda m, x: (lambda y: (y.untyped_storage().copy_((5 * y).untyped_storage()).nbytes(),
                              y)[1])(m.conv(x)), None, r"calls \.untyped_storage\(\)"),
    (lambda m, x: (lambda y: (y.detach().numpy().__imul__(5).argmax().item(), y)[1])(
        m.conv(x)), None, r"calls \.numpy\(\)"),
    (lambda m, x: (lambda y: (torch.mul(y, 5, out=y.data).size(), y)[1])(m.conv(x)),
     {"getattr_1": 1.0}, "reads .data"),
    (lambda m, x: (lambda y: (_scaled_through_data(y), y)[1])(m.conv(x)), None,
     "turns the signal into a value that is no tensor"),
])
def test_writes_past_the_version_counters_are_refused(forward, constants, why):
    """A review: memory changed through a tensor's storage, a numpy array on it, ``out=`` on
    its ``.data`` or a wrapped helper returning a number left every version counter as it
    was, the graph doing the same write: bounds of 1.01 for networks of constant 5.05."""
    model = _networks.randomize(_Conv(forward), 0)
    report = sct.lipschitz_report(model, (2, 4, 4), lipschitz_constants=constants)
    assert report.network_upper is None
    assert re.search(why, report.reason), report.reason


def test_an_in_place_change_through_data_read_later_is_refused():
    """A review: ``z = y.data.mul_(5); return y + x + 0 * z`` with the (true) constant 1
    given for ``y.data``: the change to ``y``, invisible to its version counter, was bounded
    as if ``y`` were unchanged, 2.1 for a network of constant 6.0."""
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=F64)

        def forward(self, x):
            y = self.c1(x)
            z = y.data.mul_(5)
            return y + x + 0 * z

    model = _networks.randomize(Scaled(), 0)
    report = sct.lipschitz_report(model, (2, 6, 6), lipschitz_constants={"getattr_1": 1.0})
    assert report.network_upper is None
    assert "node 'getattr_1' (call_function getattr) reads .data" in report.reason
    with pytest.raises(TypeError, match="network_operator: node 'getattr_1' .* is not linear"):
        sct.network_operator(model, (2, 6, 6))


def test_in_place_relu_read_by_its_own_node_only_is_fine():
    """torchvision's blocks use ReLU(inplace=True): the changed tensor is read through the
    ReLU's node alone, so the bound stands, and holds on random pairs."""
    block = _networks.randomize(_networks.BasicBlock(2, 3, stride=2), 5)
    block.relu = nn.ReLU(inplace=True).eval()
    report = sct.lipschitz_report(block, (2, 6, 6))
    assert report.over_graph and report.network_upper is not None, report.reason
    assert _networks.largest_ratio(block, (2, 6, 6)) <= report.network_upper


def test_the_reviews_counterexamples_are_refused_or_bounded():
    """Each gave a network bound below the network's Lipschitz constant before its fix."""
    # a BatchNorm folded into a convolution whose output is read elsewhere too (refused
    # then; not folded now, so the bound stands)
    class FoldShared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=F64)
            self.bn = nn.BatchNorm2d(1, dtype=F64)
            with torch.no_grad():
                self.bn.weight.fill_(0.01)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = FoldShared().eval()
    folded = sct.lipschitz_report(model, (1, 6, 6), fold_batchnorm=True)
    assert [row["name"] for row in folded] == ["conv", "bn"]
    plain = sct.lipschitz_report(model, (1, 6, 6))
    assert jacobian_norm(model, (1, 6, 6)) <= plain.network_upper == folded.network_upper
    # a module called on a constant first: its calls keep their own rows
    class ConstantFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=F64)
            self.register_buffer("c", torch.zeros((1, 1, 1, 1), dtype=F64))

        def forward(self, x):
            return self.conv(x) + self.conv(self.c)

    model = _networks.randomize(ConstantFirst(), 1)
    report = sct.lipschitz_report(model, (1, 6, 6))
    assert jacobian_norm(model, (1, 6, 6)) <= report.network_upper
    # c / x, rounding division, a dtype view, an infinite factor: no rule, no bound
    for forward in (lambda m, x: 2 / m.conv(x),
                    lambda m, x: torch.div(m.conv(x), 0.5, rounding_mode="floor"),
                    lambda m, x: m.conv(x).view(torch.int64) * 1.0,
                    lambda m, x: m.conv(x) * float("inf")):
        report = sct.lipschitz_report(_networks.randomize(_Conv(forward), 0), (2, 4, 4))
        assert report.network_upper is None, report
    # a user's class named as torch's max pooling is no max pooling
    class AdaptiveMaxPool2d(nn.Module):
        def forward(self, x):
            return 10.0 * F.adaptive_max_pool2d(x, 2)

    report = sct.lipschitz_report(nn.Sequential(AdaptiveMaxPool2d()).eval(), (1, 4, 4))
    assert report.network_upper is None and "AdaptiveMaxPool2d" in report.reason
    # a subclass of a supported layer with its own forward is not read as that layer
    class MyConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 5

    with pytest.raises(TypeError, match="MyConv is a subclass of Conv2d"):
        sct.matrix(MyConv(1, 1, 3, padding=1), (1, 6, 6))
    model = nn.Sequential(MyConv(1, 1, 3, padding=1)).double().eval()
    report = sct.lipschitz_report(model, (1, 6, 6))
    # no row reads it as a Conv2d; over the graph its forward's calls are read, F.conv2d and
    # the product by 5 (before, F.conv2d's tuple arguments went unread and gave no bound),
    # F.conv2d's the one row
    (row,) = report.rows
    assert (row["name"], row["type"]) == ("0.conv2d", "F.conv2d") and report.over_graph
    norm = jacobian_norm(model, (1, 6, 6))
    assert row["lower"] <= norm / 5 * (1 + 1e-12) and norm / 5 <= row["upper"] * (1 + 1e-12)
    assert norm <= report.network_upper * (1 + 1e-12)
    # bounds far below float's range: the square root in integers, not a float loop
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3, bias=False, dtype=F64)
            with torch.no_grad():
                self.lin.weight.mul_(3e-161)

        def forward(self, x):
            return torch.cat([self.lin(x), self.lin(x) * 1.0], 1)

    report = sct.lipschitz_report(Tiny().eval(), (3,))
    assert 0 < report.network_upper < 1e-150


def test_sizes_read_off_the_signal_are_no_signal():
    """x.view(x.size(0), -1): the size is read off the signal, and is no part of the bound;
    a tuple of outputs (values and indices) read as one tensor is refused."""
    model = _networks.randomize(_Conv(lambda m, x: m.fc(m.conv(x).view(x.size(0), -1))), 0)
    report = sct.lipschitz_report(model, (2, 4, 4))
    product = Fraction(report["conv"]["upper"]) * Fraction(report["fc"]["upper"])
    assert Fraction(report.network_upper) >= product
    assert report.network_upper <= math.nextafter(float(product), math.inf)
    assert jacobian_norm(model, (2, 4, 4)) <= report.network_upper
    tuple_read = _Conv(lambda m, x: m.pool(m.conv(x))[0])
    report = sct.lipschitz_report(tuple_read.eval(), (2, 4, 4))
    assert report.network_upper is None and "the tuple module 'pool' returns" in report.reason
    maximum = _Conv(lambda m, x: torch.max(m.conv(x), 1)[0])  # a function's tuple
    report = sct.lipschitz_report(maximum.eval(), (2, 4, 4))
    assert report.network_upper is None and "a tuple of values of the signal" in report.reason
    # a new user's trial: a module's tuple (nn.MultiheadAttention's output and weights) was
    # told to slice the signal, and the command line suggested --constant for it
    attention = _Conv(lambda m, x: m.att(*(m.conv(x).flatten(2).transpose(1, 2),) * 3)[0])
    attention.att = nn.MultiheadAttention(2, 1, batch_first=True, dtype=F64)
    for given in ({}, {"att": 1.0}):
        report = sct.lipschitz_report(attention.eval(), (2, 4, 4), lipschitz_constants=given)
        assert report.network_upper is None and ("reads 'att', the tuple module 'att' returns, "
                                                 "for which the bound has no rule: a module of "
                                                 "several outputs has none, even with its "
                                                 "Lipschitz constant given") in report.reason
    # a new user's trial: a random module was given a misleading reason
    noisy = _Conv(lambda m, x: m.conv(x) + torch.randn_like(x))
    report = sct.lipschitz_report(noisy.eval(), (2, 4, 4))
    assert report.network_upper is None and "draws random numbers" in report.reason


@pytest.mark.parametrize("cut", [
    lambda y: torch.chunk(y, 2, dim=1), lambda y: y.split(1, 1), lambda y: y.unbind(1),
    lambda y: torch.tensor_split(y, [1], dim=1)])
def test_the_pieces_of_a_partition_are_slices_of_the_signal(cut):
    """A new user's trial: ShuffleNetV2's ``x1, x2 = x.chunk(2, dim=1)`` got no bound ("a
    tuple of values of the signal"); each piece is a slice, bounded by the tensor's bound.
    A piece cut where the values say (tensor_split at a computed index) gets none."""
    model = _networks.randomize(_Conv(lambda m, x: (lambda c: c[0] - 3 * c[1])(cut(m.conv(x)))),
                                0)
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.over_graph, report.reason
    conv = Fraction(report["conv"]["upper"])
    assert Fraction(report.network_upper) >= 4 * conv
    assert report.network_upper <= math.nextafter(float(4 * conv), math.inf)
    assert jacobian_norm(model, (2, 4, 4)) <= report.network_upper
    computed = _Conv(lambda m, x: torch.tensor_split(
        m.conv(x), (m.conv(x) > 0).sum(dim=(1, 2, 3))[:1], dim=3)[0].flatten(1)).eval()
    report = sct.lipschitz_report(computed, (2, 4, 4))
    assert report.network_upper is None and "cut where values of the signal say" in report.reason


class _BatchCut(nn.Module):
    """A fourth review's: pieces cut where the batch size says (4 entries at batches of one
    to three, 2 from four on), their mean broadcast: 1.41 for a map of norm 2 at a batch of
    four, eager and scripted; and a piece cut along the batch axis."""

    def __init__(self, along_batch: bool = False):
        super().__init__()
        self.a = nn.Linear(8, 8, bias=False, dtype=F64)
        self.register_buffer("z", torch.zeros(8, dtype=F64))
        self.along_batch = along_batch

    def forward(self, x):
        h = self.a(x)
        if self.along_batch:
            return torch.chunk(h, 1, dim=0)[0] + self.z
        s = 4 - 2 * (x.shape[0] // 4)
        return torch.split(h, s, dim=1)[0].mean(1, keepdim=True) + self.z


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("along_batch", [False, True])
def test_a_piece_cut_where_the_batch_size_says_is_refused(along_batch):
    model = _BatchCut(along_batch).eval()
    for form in (model, torch.jit.script(model)):
        report = sct.lipschitz_report(form, (8,))
        assert report.network_upper is None
        assert ("cut where the batch size says" if not along_batch else
                "cut along the batch axis") in report.reason, report.reason


class _Overlapping(nn.Module):  # tensor_split at [3, 1]: x[:, :3] and x[:, 1:], which overlap
    def forward(self, x):
        return torch.tensor_split(x, [3, 1], dim=1)


def test_a_partition_returned_whole_counts_as_its_tensor_only_if_disjoint():
    """A review: a partition returned whole was bounded by its tensor's bound, the pieces
    taken for disjoint; ``tensor_split(x, [3, 1])``'s overlap (1 for a map of norm sqrt 2).
    Increasing indices, a number of sections, chunk and split keep the rule."""
    report = sct.lipschitz_report(_Overlapping().eval(), (4,))
    assert report.network_upper is None, report.network_upper
    for cut in ([1, 3], 2):
        model = _Conv(lambda m, x, cut=cut: torch.tensor_split(m.conv(x), cut, dim=1))
        report = sct.lipschitz_report(_networks.randomize(model, 0), (2, 4, 4))
        assert report.network_upper == pytest.approx(report["conv"]["upper"], rel=1e-12)


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4, dtype=F64)
        self.b = nn.Linear(4, 4, dtype=F64)

    def forward(self, x):
        return self.b(self.a(x)) + x


def _scaled_conv_class():
    class Scaled(nn.Conv2d):  # the same forward, another convolution underneath
        def _conv_forward(self, x, weight, bias):
            return 100 * super()._conv_forward(x, weight, bias)
    return Scaled


def test_a_second_reviews_counterexamples_get_no_bound():
    """Modules that are not what their class says, a forward that changes the model's own
    weights, and PyTorch's Softplus (a jump at its threshold): each gave a bound below the
    network's constant before; now none, the reason given."""
    def hooked(model):
        model.a.register_forward_hook(lambda module, inputs, output: 100 * output)
        return model

    def patched(model):
        model.a.forward = lambda x: 100 * F.linear(x, model.a.weight, model.a.bias)
        return model

    for make in (hooked, patched):
        plain = _networks.randomize(_Res(), 0)
        unhooked = sct.lipschitz_report(plain, (4,)).network_upper
        model = make(plain)
        if make is hooked:  # a hooked layer's row is refused too (a new user's trial: its
            # interval, 100 times below the layer as it runs, was given as certified)
            with pytest.raises(TypeError, match=r"module 'a' \(Linear\) has a forward hook "
                               r"\(<lambda>\), which may change its output: its row would "
                               "bound what the module's class computes"):
                sct.lipschitz_report(model, (4,))
        else:
            report = sct.lipschitz_report(model, (4,))
            assert report.network_upper is None, make.__name__
        assert jacobian_norm(model, (4,)) > unhooked  # the bound it would have given is wrong
    chain = nn.Sequential(nn.Linear(4, 4, dtype=F64), nn.Linear(4, 4, dtype=F64)).eval()
    chain[0].register_forward_pre_hook(lambda module, inputs: (100 * inputs[0],))
    with pytest.raises(TypeError, match="module '0' \\(Linear\\) has a forward pre-hook"):
        sct.lipschitz_report(chain, (4,))
    chain = nn.Sequential(nn.Linear(4, 4, dtype=F64), nn.ReLU(), nn.Linear(4, 4, dtype=F64))
    chain[1].register_forward_hook(lambda module, inputs, output: 100 * output)
    report = sct.lipschitz_report(chain.eval(), (4,))  # a hooked activation: rows, no bound
    assert len(report.rows) == 2 and report.network_upper is None
    assert "module '1' has a forward hook" in report.reason

    class Mutating(_Res):  # (through .data, which has no version counter, it is not seen)
        def forward(self, x):
            with torch.no_grad():
                self.a.weight.mul_(100)
            y = self.b(self.a(x)) + x
            with torch.no_grad():
                self.a.weight.div_(100)
            return y

    report = sct.lipschitz_report(Mutating().eval(), (4,))
    assert report.network_upper is None and "changes its own parameters" in report.reason
    # a subclass overriding what forward calls, parametrized (a torch.fx leaf) or not
    scaled = _scaled_conv_class()
    with pytest.raises(TypeError, match="is a subclass of Conv2d"):
        sct.matrix(scaled(1, 1, 3, padding=1), (1, 5, 5))
    for layer in (scaled(1, 1, 3, padding=1),
                  nn.utils.parametrizations.weight_norm(scaled(1, 1, 3, padding=1))):
        model = nn.Sequential(layer).double().eval()
        report = sct.lipschitz_report(model, (1, 5, 5))
        # no bound (the parametrized one, a torch.fx leaf), or the bound over the graph of
        # its forward's own calls, F.conv2d (its row) times 100: never the plain Conv2d's
        assert report.network_upper is None or (report.over_graph and [
            row["type"] for row in report] == ["F.conv2d"] and (
            jacobian_norm(model, (1, 5, 5)) <= report.network_upper * (1 + 1e-12)))
    # an activation subclass, and a Sequential subclass, are not torch's classes
    class Loud(nn.ReLU):
        def forward(self, x):
            return 50 * F.relu(x)

    class Skip(nn.Sequential):
        def forward(self, x):
            return x + 10 * super().forward(x)

    for model in (nn.Sequential(nn.Linear(4, 4, dtype=F64), Loud()),
                  Skip(nn.Linear(4, 4, dtype=F64))):
        report = sct.lipschitz_report(model.eval(), (4,))
        assert report.network_upper is None or report.network_upper >= _networks.largest_ratio(
            model, (4,)), (model, report.network_upper)
    # PyTorch's Softplus switches to the identity above its threshold: a jump, no constant
    report = sct.lipschitz_report(nn.Sequential(nn.Linear(1, 1, dtype=F64),
                                                nn.Softplus(threshold=0.0)).eval(), (1,))
    assert report.network_upper is None and "Softplus" in report.reason


def test_relu_resnet_bound_is_the_product_over_paths():
    """TinyResNet: the stem times each block's (shortcut + branch) times the head, by hand."""
    model = _networks.randomize(_networks.TinyResNet(), 3)
    report = sct.lipschitz_report(model, (3, 8, 8), fold_batchnorm=True)
    u = {row["name"]: Fraction(row["upper"]) for row in report}
    block1 = 1 + u["layer1.0.conv1+layer1.0.bn1"] * u["layer1.0.conv2+layer1.0.bn2"]
    block2 = u["layer2.0.downsample.0+layer2.0.downsample.1"] + (
        u["layer2.0.conv1+layer2.0.bn1"] * u["layer2.0.conv2+layer2.0.bn2"])
    expected = u["conv1+bn1"] * block1 * block2 * u["avgpool"] * u["fc"]
    assert Fraction(report.network_upper) >= expected
    assert report.network_upper <= math.nextafter(float(expected), math.inf)
    # and the ReLU network moves by no more than it on random pairs
    assert _networks.largest_ratio(model, (3, 8, 8)) <= report.network_upper


def _spatial(x):
    _, _, h, w = x.shape  # the batch's read unused, and not in the traced sizes
    return (h, w)


def _unpacked(y, x):
    b, c, h, w = x.shape  # w unused: a dead node of the graph, a size, not a signal
    return y.reshape(b, c * h, -1)


class _Lambda(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
        self.function = function

    def forward(self, x):
        return self.function(self.conv(x), x)


@pytest.mark.parametrize("function, node", [
    (lambda y, x: y * x, "mul"),                       # a product of two signals
    (lambda y, x: y + x[:, [0, 0]], "getitem"),        # advanced indexing repeats entries
    (lambda y, x: y + F.softplus(x), "softplus"),      # no constant: PyTorch's jumps
    # linear, but a mode or an input the layers do not read (a review found them raising)
    # (antialias=True is read, but not where PyTorch's kernel leaves its own filter)
    (lambda y, x: y[..., :2, :1] + F.interpolate(x[..., :1], size=(2, 1), mode="bilinear",
                                                 antialias=True), "not a call "),
    (lambda y, x: y + F.avg_pool2d(x[0], 1)[None], "not a call sparseconv.torch reads"),
    # a review: the deprecated add(input, alpha, other) form, which PyTorch still runs, was
    # read as adding the constant 100 (bound 1.0 for a norm of 109); an alpha read off the
    # signal's shape raised TypeError
    pytest.param(lambda y, x: torch.add(x, 100, y), "deprecated add/sub(input, alpha, other)",
                 marks=pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")),
    pytest.param(lambda y, x: x.sub(100, y), "deprecated add/sub(input, alpha, other)",
                 marks=pytest.mark.filterwarnings("ignore:This overload of sub:UserWarning")),
    # a third review: a crop at the argmax, a reshape by a count of positive entries: maps
    # that jump with the input (no Lipschitz constant), bounded as a slice and a reshape
    (lambda y, x: y[:, :, y.argmax() % 2:y.argmax() % 2 + 2], "computed from the signal"),
    (lambda y, x: y.reshape(y.shape[0], (y > 0).sum() % 2 + 1, -1).transpose(1, 2),
     "computed from the signal"),
    # a review of the fix: shapes of value-dependent tensors (nonzero), and the batch size
    # used as a number, are no constants
    (lambda y, x: y[:, :, : torch.nonzero(y > 0).shape[0] % 2 + 1], "computed from the signal"),
    (lambda y, x: y / torch.nonzero(y > 0).shape[0], "truediv"),
    (lambda y, x: y / x.size(0), "truediv"),
    # linear, but its factor is computed from the signal's shape (a kernel size so computed
    # is a constant of the traced shape: test_sizes_read_off_bounded_shapes_are_constants...)
    (lambda y, x: torch.add(x, y, alpha=y.shape[1]), "alpha"),
    # sizes that follow the batch size: one sample's map would depend on the batch
    (lambda y, x: F.pad(y, [x.size(0)] * 4, mode="replicate"), "computed from the signal"),
    (lambda y, x: F.pad(y, [x.shape[0], 1, 1, 1], mode="replicate"), "computed from the"),
    (lambda y, x: F.pad(y, [x.numel() // 32] * 4, mode="replicate"), "computed from the"),
    # a review of that rule: the batch size read off another axis, and a shape sliced at a
    # computed position (which raised TypeError)
    (lambda y, x: F.interpolate(y, scale_factor=y.reshape(x.shape[0], x.shape[0], -1).shape[1]),
     "computed from the signal"),
    (lambda y, x: F.leaky_relu(y, x.shape[x.dim() - 1:][0] // 4), "computed from the signal"),
    # a second review: a size that agrees at batches two and three (not four), a literal
    # reshape to the probe's batch, a slice bounded by the batch size (the last two were
    # bounded before this session too, below the constant at other batch sizes)
    (lambda y, x: y.reshape(2, -1).sum(1, keepdim=True), "map depends on the batch size"),
    (lambda y, x: y[:, :, :x.shape[0]].sum((1, 2, 3)).unsqueeze(1), "computed from the signal"),
])
def test_no_rule_no_bound_and_the_node_is_named(function, node):
    report = sct.lipschitz_report(_Lambda(function).eval(), (2, 4, 4))
    assert report.network_upper is None
    assert "nor is there a bound over its graph" in report.reason and node in report.reason


def test_a_chain_keeps_its_product_and_a_scripted_model_gets_its_graphs():
    chain = _networks.randomize(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()))
    report = sct.lipschitz_report(chain, (2, 5, 5))
    assert not report.over_graph and report.chain_checked
    block = _networks.randomize(_networks.BasicBlock(2, 2))
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(block)
    report = sct.lipschitz_report(scripted, (2, 5, 5))  # its graph, rebuilt as torch.fx's
    assert report.over_graph and report.network_upper == pytest.approx(
        sct.lipschitz_report(block, (2, 5, 5)).network_upper, rel=1e-12)


class _Pooled(nn.Module):
    """conv, then a residual sum of average pooling and bilinear upsampling: by functions or
    by their modules."""

    def __init__(self, functional: bool):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, dtype=F64)
        self.functional = functional
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.squeeze = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        y = self.conv(x)
        if self.functional:
            z = F.interpolate(F.avg_pool2d(y, 3, 2, 1, count_include_pad=False),
                              scale_factor=2, mode="bilinear", align_corners=False)
            return y + z + F.adaptive_avg_pool2d(y, 1)
        return y + self.up(self.pool(y)) + self.squeeze(y)


def test_linear_functions_in_forward_get_their_modules_bound():
    """F.avg_pool2d, F.interpolate and F.adaptive_avg_pool2d called in forward: the bound is
    the one the same model with their modules gets (the same certified norms), and holds the
    linear model's exact constant."""
    reports = []
    conv = _networks.randomize(_Pooled(True), seed=3).conv
    for functional in (True, False):
        model = _Pooled(functional).eval()
        model.conv = conv
        report = sct.lipschitz_report(model, (2, 8, 8))
        assert report.over_graph and report.reason == "", report.reason
        assert jacobian_norm(model, (2, 8, 8)) <= report.network_upper
        reports.append(report)
    assert reports[0].network_upper == pytest.approx(reports[1].network_upper, rel=1e-12)


def test_an_empty_sequential_is_the_identity():
    """The shortcut of many ResNet definitions, ``self.shortcut = nn.Sequential()``: a linear
    leaf (the identity), so the network gets the bound it gets with ``nn.Identity()``."""
    assert np.array_equal(sct.matrix(nn.Sequential(), (2, 3, 3)).toarray(), np.eye(18))
    bounds = []
    built = _networks.randomize(_networks.BasicBlock(2, 2), seed=4)
    for shortcut in (nn.Sequential(), nn.Identity()):
        block = copy.deepcopy(built)
        block.downsample = shortcut  # (read as the shortcut when it is not None)
        records = sct.trace(block.eval(), (2, 5, 5))
        assert [r.linear for r in records if r.name == "downsample"] == [True]
        report = sct.lipschitz_report(block, (2, 5, 5))
        assert report.reason == "" and "downsample" not in [row["name"] for row in report]
        bounds.append(report.network_upper)
    assert bounds[0] == bounds[1]


def test_unfold_and_fold_called_as_functions():
    """F.unfold then F.fold (each overlap summed: multiplies by the read counts): the
    network's operator is the model, and the bound over the graph holds its norm."""

    class Patches(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)

        def forward(self, x):
            patches = F.unfold(self.conv(x), 3, padding=1, stride=2)
            return x + F.fold(patches, (7, 6), 3, padding=1, stride=2)

    model = _networks.randomize(Patches(), seed=6).eval()
    net = sct.network_operator(model, (2, 7, 6))
    x = torch.randn((1, 2, 7, 6), dtype=F64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy().ravel()
    np.testing.assert_allclose(net(x.numpy().ravel()), expected, rtol=1e-12, atol=1e-12)
    report = sct.lipschitz_report(model, (2, 7, 6))
    assert report.over_graph and report.reason == "", report.reason
    assert jacobian_norm(model, (2, 7, 6)) <= report.network_upper


class _Single(nn.Module):
    """One operation after a convolution, its bound the convolution's norm times the
    operation's: the rule alone is checked against the exact norm of the whole."""

    def __init__(self, function, channels: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(2, channels, 3, padding=1, dtype=F64)
        self.weight = nn.Parameter(torch.randn(2, channels, 3, 3, dtype=F64,
                                               generator=torch.Generator().manual_seed(1)) / 3)
        self.register_buffer("gain", torch.linspace(0.5, 2.0, channels,
                                                    dtype=F64).reshape(1, -1, 1, 1))
        generator = torch.Generator().manual_seed(2)
        self.right = nn.Parameter(torch.randn(5, 3, dtype=F64, generator=generator))
        self.left = nn.Parameter(torch.randn(6, 4, dtype=F64, generator=generator))
        self.vector = nn.Parameter(torch.randn(4, dtype=F64, generator=generator))
        self.function = function

    def forward(self, x):
        return self.function(self, self.conv(x))


@pytest.mark.parametrize("name, function, tight", [
    # functions network_operator maps, which the bound refused (a review's list)
    ("pad", lambda m, y: F.pad(y, (1, 2, 0, 1)), True),
    ("pad crop", lambda m, y: F.pad(y, (-1, 0, 1, -2)), True),
    ("pad reflect", lambda m, y: F.pad(y, (2, 1, 1, 0), mode="reflect"), True),
    ("pad value", lambda m, y: F.pad(y, (1, 1, 1, 1), value=3.0), True),
    ("mean", lambda m, y: y.mean(1, keepdim=True), True),
    ("mean of two axes", lambda m, y: y.mean((-1, 2)), True),
    ("sum", lambda m, y: y.sum(-1), True),
    ("centred", lambda m, y: y - y.mean(1, keepdim=True), False),
    ("dropout", lambda m, y: F.dropout(y, 0.5, training=False), True),
    ("conv by a parameter", lambda m, y: F.conv2d(y, m.weight, padding=1), True),
    ("times a buffer", lambda m, y: y * m.gain, True),
    ("buffer times", lambda m, y: m.gain * y, True),
    ("over a buffer", lambda m, y: y / m.gain, True),
    ("times a scalar tensor", lambda m, y: y * m.gain[0, 1, 0, 0], True),
    ("a broadcast signal times a buffer", lambda m, y: y.mean((2, 3), keepdim=True) *
     m.gain.expand(1, 2, 3, 3), False),
    ("crop", lambda m, y: y[..., 1:3, :], True),
    # products by a constant matrix or vector: refused before (x @ W was left out)
    ("x @ W", lambda m, y: y @ m.right, True),
    ("W @ x", lambda m, y: m.left @ y, True),
    ("x.matmul(w)", lambda m, y: y.transpose(2, 3).matmul(m.vector), True),
    ("torch.matmul(w, x)", lambda m, y: torch.matmul(m.vector, y), True),
    ("torch.mm", lambda m, y: torch.mm(y.flatten(1), m.right.repeat(8, 1)), True),
    # antialiased resampling: refused before
    ("antialias", lambda m, y: F.interpolate(y, size=(3, 2), mode="bilinear", antialias=True),
     True),
    ("lanczos", lambda m, y: F.interpolate(y, scale_factor=0.6, mode="lanczos",
                                           antialias=True), True),
    # casts between floating dtypes: refused before (the layers are read exactly in any)
    ("double", lambda m, y: y.float().double(), True),
    ("to", lambda m, y: y.to(torch.float32).to(dtype=F64), True),
])
def test_the_linear_calls_network_operator_maps_get_a_bound(name, function, tight):
    """F.pad, mean and sum over channels or space, F.dropout(training=False), F.conv2d by
    a parameter, products with a constant tensor, x[..., a:b]: each got no network bound
    ("not a call whose Lipschitz constant is known here") though network_operator maps it.
    Each bound holds the exact norm of the linear model (its matrix's largest singular
    value), and the operation's own norm is exact where it is (tight): the whole bound is
    then within rounding of the convolution's upper bound times it."""
    model = _networks.randomize(_Single(function)).eval()
    report = sct.lipschitz_report(model, (2, 4, 5))
    assert report.over_graph and report.reason == "", (name, report.reason)
    net = sct.network_operator(model, (2, 4, 5))
    exact = np.linalg.norm(net.affine().matrix.toarray(), 2)
    assert exact <= report.network_upper, name
    if tight:  # the convolution's bound times the operation's exact norm
        rest = np.linalg.norm(sct.network_operator(_Lambda2(function, model).eval(), (2, 4, 5))
                              .affine().matrix.toarray(), 2)
        assert report.network_upper == pytest.approx(report["conv"]["upper"] * rest,
                                                     rel=1e-9), name


class _Lambda2(nn.Module):
    """The operation of a _Single alone."""

    def __init__(self, function, owner):
        super().__init__()
        self.function, self.owner = function, owner

    def forward(self, y):
        return self.function(self.owner, y)


def test_calls_that_stay_refused_are_named():
    """What stays without a rule: a mean over the batch, a division of a constant by the
    signal, a product by a tensor computed from the signal, a product of two values of the
    signal or by a batch of matrices (its norm is the largest of theirs: not read here)."""
    for function, node in ((lambda m, y: y - y.mean(0, keepdim=True), "batch"),
                           (lambda m, y: m.gain / (y + 2), "divides"),
                           (lambda m, y: y * y.detach(), "mul"),
                           (lambda m, y: y @ y.transpose(2, 3), "two values of the signal"),
                           (lambda m, y: y @ m.right.expand(2, 5, 3), "3 dimensions"),
                           (lambda m, y: y.to(torch.int64).double(), "double")):
        report = sct.lipschitz_report(_Single(function).eval(), (2, 4, 5))
        assert report.network_upper is None and node in report.reason, report.reason


class _ClassToken(nn.Module):
    """ViT's class token, ``cls.expand(x.shape[0], -1, -1)``: a constant of the traced
    shape, concatenated to the patches."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(1, 5, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(1))


def test_a_constant_computed_from_sizes_is_a_constant():
    """A new user's trial: ViT's class token, a parameter expanded to the batch size, was
    refused ("takes the signal other than as its one input"): what reads no value of the
    signal, only constants and the sizes its traced shape fixes, is a constant; an index
    read off the signal's values is not."""
    torch.manual_seed(3)
    model = _ClassToken().double().eval()
    report = sct.lipschitz_report(model, (3, 8, 8))
    assert report.network_upper is not None, report.reason
    assert _networks.largest_ratio(model, (3, 8, 8)) <= report.network_upper * (1 + 1e-12)

    class Gathered(nn.Module):  # w[x.argmax(1)]: indices of the signal's values
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3, dtype=F64))

        def forward(self, x):
            return x + self.w[x.argmax(1)].sum(-1, keepdim=True)

    assert sct.lipschitz_report(Gathered().eval(), (4,)).network_upper is None

    class SizeAtAValue(nn.Module):  # (a review: x.size(k), k read off the values, a size
        def __init__(self):  # that jumps with them, was taken for a constant: bound 0.72)
            super().__init__()
            self.lin = nn.Linear(4, 4, dtype=F64)

        def forward(self, x):
            k = (x > 10).any().long() + 1
            return self.lin(x) + torch.ones(4, dtype=F64) * x.size(k)

    assert sct.lipschitz_report(SizeAtAValue().eval(), (3, 4)).network_upper is None

    class Scalar(nn.Module):  # (a review: a 0-dim parameter expanded to a batch of one has
        def __init__(self):  # a stride-0 axis, whose bytes could not be read: refused)
            super().__init__()
            self.lin = nn.Linear(4, 3, dtype=F64)
            self.t = nn.Parameter(torch.tensor(0.5, dtype=F64))

        def forward(self, x):
            return self.lin(x) + self.t.expand(x.shape[0]).view(-1, 1)

    class Unset(nn.Module):  # (a review: torch.empty sized by the signal, a "constant" whose
        def __init__(self):  # bytes were a freed im2col buffer's: the input's values)
            super().__init__()
            self.lin = nn.Linear(4, 4, dtype=F64)

        def forward(self, x):
            unset = torch.empty((x.shape[0], 4), dtype=x.dtype)
            return self.lin(x) + unset.new_zeros(unset.shape)

    report = sct.lipschitz_report(Unset().eval(), (4,))
    assert report.network_upper is None and "allocates a tensor whose values it does not set" in (
        report.reason), report.reason

    class AtenUnset(Unset):  # (a third review: the aten form passed a check by identity)
        def forward(self, x):
            unset = torch.ops.aten.empty.memory_format([x.shape[0], 4], dtype=x.dtype)
            return self.lin(x) + unset.new_zeros(unset.shape)

    report = sct.lipschitz_report(AtenUnset().eval(), (4,))
    assert report.network_upper is None and "allocates a tensor whose values it does not set" in (
        report.reason), report.reason

    class Named(nn.Module):  # (modules and buffers named as those calls are no such calls)
        def __init__(self):
            super().__init__()
            self.normal = nn.Linear(4, 4, dtype=F64)
            self.register_buffer("empty", torch.ones(4, dtype=F64))

        def forward(self, x):
            return self.normal(x) * self.empty

    named = Named().eval()
    norm = float(torch.linalg.matrix_norm(named.normal.weight.detach(), 2))
    assert norm <= sct.lipschitz_report(named, (4,)).network_upper <= norm * (1 + 1e-12)

    class Drawn(Unset):  # a random "constant" of the signal's shape: refused by name, not by
        def forward(self, x):  # the chance that two runs draw differently
            drawn = torch.randn((x.shape[0], 4), dtype=x.dtype)
            return self.lin(x) + drawn.new_zeros(drawn.shape)

    report = sct.lipschitz_report(Drawn().eval(), (4,))
    assert report.network_upper is None and "draws random numbers" in report.reason, (
        report.reason)

    scalar = Scalar().eval()
    norm = float(torch.linalg.matrix_norm(scalar.lin.weight.detach(), 2))
    assert norm <= sct.lipschitz_report(scalar, (4,)).network_upper <= norm * (1 + 1e-12)


@pytest.mark.parametrize("function", [torch.round, torch.sign, F.hardshrink,
                                      lambda x: F.threshold(x, 0.5, 0.0), lambda x: x // 0.5,
                                      lambda x: torch.remainder(x, 0.5)])
def test_a_function_that_jumps_is_named_so_not_offered_a_constant(function):
    """A new user's trial: round, sign, hardshrink and threshold were offered a constant of
    the user's (``lipschitz_constants={'round': L}``), which none of them has."""
    class Jump(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return function(self.c(x))

    report = sct.lipschitz_report(Jump().eval(), (2, 5, 5))
    assert report.network_upper is None and "which jumps: no Lipschitz constant holds for it" in (
        report.reason) and "lipschitz_constants" not in report.reason, report.reason


class _WaveNetBlock(nn.Module):
    """A WaveNet block, linear: a residual and a skip output; with ``inplace``, the skip
    through an in-place ReLU (the forward then changes a tensor in place)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.res = nn.Conv1d(2, 2, 1, dtype=F64)
        self.skip = nn.Conv1d(2, 2, 1, dtype=F64)
        self.act = nn.ReLU(inplace=True) if inplace else nn.Identity()

    def forward(self, x):
        return x + self.res(x), self.act(self.skip(x))


class _WaveNet(nn.Module):  # the last block's residual output is read by nothing
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList([_WaveNetBlock(inplace), _WaveNetBlock(inplace)])

    def forward(self, x):
        skips = 0
        for block in self.blocks:
            x, skip = block(x)
            skips = skips + skip
        return skips


def test_a_refused_node_inside_a_module_is_named_with_that_module():
    """A new user's trial: in a stack of blocks, "node 'add_2' computes a value nothing
    reads" did not say which block's sum (WaveNet's last residual output, unused; refused
    where the forward changes a tensor in place, here an in-place ReLU)."""
    torch.manual_seed(0)
    model = _WaveNet(inplace=True).eval()
    report = sct.lipschitz_report(model, (2, 6))
    assert "node 'add_2' in module 'blocks.1' computes a value nothing reads, and the " \
           "forward changes a tensor in place (aten.relu_.default)" in report.reason, (
               report.reason)
    with pytest.raises(TypeError, match=r"node 'add_2' \(call_function add\) in module "
                       r"'blocks.1' computes a value nothing reads, and the forward changes a "
                       r"tensor in place \(aten.relu_.default\)"):
        sct.network_operator(model, (2, 6))


def test_a_value_nothing_reads_in_a_forward_that_writes_nothing_in_place_is_dropped():
    """A new user's trial: a linear WaveNet stack, whose last block's residual sum nothing
    reads (as WaveNet's code has it), was refused by both as "an in-place change such as y
    += z" that it does not make. Now: the operator is the model's Jacobian, and the bound is
    above its norm. A mutant this catches: _torch_graph_bound.py: ``write = first_write(...)``
    replaced by a constant string (the refusal as before)."""
    torch.manual_seed(0)
    model = _WaveNet().eval()
    jacobian = jacobian_matrix(model, (2, 6))
    matrix = sct.network_operator(model, (2, 6)).affine().matrix.toarray()
    np.testing.assert_allclose(matrix, jacobian, rtol=0, atol=1e-12)
    report = sct.lipschitz_report(model, (2, 6))
    assert report.over_graph, report.reason
    exact = float(np.linalg.norm(jacobian, 2))
    assert exact <= report.network_upper <= 4 * exact


def test_a_model_without_submodules_is_its_forward_not_a_layer():
    """A model of the user's own with no child module was one non-linear leaf: no bound,
    and a reason with an empty name ("not linear and not a known activation:  (P)"); one
    with an unused child got its bound. Its forward's functions are now bounded."""
    class Pooled(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(F.relu(x), 2)

    class Scaled(nn.Module):  # no chain of traced layers: the empty product 1 is no bound
        def forward(self, x):
            return 3 * x

    report = sct.lipschitz_report(Pooled().eval(), (2, 4, 4))
    assert report.network_upper == pytest.approx(0.5) and report.network_upper >= 0.5
    assert [row["name"] for row in report] == ["avg_pool2d"]  # (its function's row)
    assert sct.trace(Pooled().eval(), (2, 4, 4)) == []
    assert sct.lipschitz_report(Scaled().eval(), (2, 4, 4)).network_upper >= 3
    assert [r.name for r in sct.trace(nn.Conv2d(2, 2, 3).eval(), (2, 5, 5))] == [""]


class _Scale(nn.Module):
    """A module of the user's own, linear: no layer the report reads, no known constant."""

    def forward(self, x):
        return x / 10


def test_a_users_module_in_a_chain_is_read_through_the_graph():
    """A trial: Sequential(conv, Scale()) with Scale's forward x / 10 had no bound ("not
    linear and not a known activation: 1 (Scale)", untrue), where conv(x) / 10 written in a
    forward had one. The graph reads its forward; a module whose forward it cannot bound is
    still named, with both reasons."""
    model = _networks.randomize(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), _Scale()))
    report = sct.lipschitz_report(model.eval(), (2, 5, 5))
    assert report.over_graph and report.reason == "", report.reason
    assert report.network_upper == pytest.approx(report["0"]["upper"] / 10, rel=1e-12)
    assert jacobian_norm(model, (2, 5, 5)) <= report.network_upper
    refused = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Softplus()).eval()
    reason = sct.lipschitz_report(refused, (2, 5, 5)).reason
    assert reason.startswith("module 1 (Softplus) is neither a layer sparseconv.torch reads "
                             "nor an activation of known constant; nor is there a bound over "
                             "its graph: node '_1' (call_module 1) has no certified bound"), reason


@pytest.mark.parametrize("kind", ["tuple", "dict", "nested list"])
def test_several_outputs_are_bounded_together(kind):
    """A tuple or dict of outputs had no bound ("does not return one tensor"). The map to all
    of them, in the norm of their concatenation: the outputs' bounds in quadrature. The
    oracle: the norm of PyTorch's Jacobian of the concatenated outputs (a linear model)."""
    model = _networks.randomize(_networks.SeveralOutputs(kind))
    report = sct.lipschitz_report(model, (3, 5, 5))
    a, b = (row["upper"] for row in report)
    assert report.network_upper >= math.sqrt(a * a * b * b + a * a)
    assert report.network_upper <= math.sqrt(a * a * b * b + a * a) * (1 + 1e-12)

    def flat(x):
        outputs = model(x)
        values = outputs.values() if isinstance(outputs, dict) else outputs
        leaves = [v for part in values for v in (part if isinstance(part, tuple) else (part,))]
        return torch.cat([v.reshape(-1) for v in leaves])

    with torch.no_grad():
        model.a.bias.zero_()
        model.b.bias.zero_()
    jac = torch.autograd.functional.jacobian(flat, torch.zeros((1, 3, 5, 5), dtype=F64))
    truth = np.linalg.svd(jac.reshape(jac.shape[0], -1).numpy(), compute_uv=False)[0]
    assert truth <= report.network_upper
    assert truth >= 0.5 * report.network_upper  # (the product of norms is not far above)


_Heads = collections.namedtuple("_Heads", "logits features")


class _Returns(nn.Module):
    """One convolution and then ``function(y)`` as the output."""

    def __init__(self, function, channels=(3, 4), bias=False):
        super().__init__()
        self.conv = nn.Conv2d(*channels, 3, padding=1, bias=bias)
        self.function = function

    def forward(self, x):
        return self.function(self.conv(x))


@pytest.mark.parametrize("function", [
    lambda y: _Heads(y, 2 * y),
    lambda y: y.chunk(2, 1),
    lambda y: torch.split(y, [1, 3], 1),
    lambda y: (y.unbind(1), y),
    lambda y: {"parts": y.tensor_split(3, 2), "all": [y]},
], ids=["namedtuple", "chunk", "split", "unbind and itself", "tensor_split in a dict"])
def test_outputs_built_by_torch_are_bounded_as_their_parts(function):
    """A review: a namedtuple (recorded by torch.fx as a call of its class) and a tuple cut by
    chunk, split or unbind got no bound ("does not return a tensor or a tuple ..."). A
    namedtuple is its fields; a partition returned whole is its tensor. The oracle: the norm
    of PyTorch's Jacobian of all outputs concatenated, which these bounds equal (the layer's
    bound, times sqrt(1 + 4) or sqrt(2) where the outputs repeat it)."""
    model = _Returns(function).double().eval()
    report = sct.lipschitz_report(model, (3, 5, 5))
    assert report.network_upper is not None, report.reason

    def flat(x):
        def leaves(value):
            if isinstance(value, dict):
                value = list(value.values())
            if isinstance(value, (tuple, list)):
                return [t for part in value for t in leaves(part)]
            return [value]
        return torch.cat([t.reshape(-1) for t in leaves(model(x))])

    jac = torch.autograd.functional.jacobian(flat, torch.zeros((1, 3, 5, 5), dtype=F64))
    truth = np.linalg.svd(jac.reshape(jac.shape[0], -1).numpy(), compute_uv=False)[0]
    assert truth <= report.network_upper <= truth * (1 + 1e-6), (truth, report.network_upper)


@pytest.mark.parametrize("function, named", [
    (lambda y: (y, y.argmax(1)), "argmax"),
    (lambda y: (y, y > 0), "gt"),
    (lambda y: y.max(1), "max"),
    (lambda y: (), None),
])
def test_outputs_that_are_no_floating_tensors_are_named(function, named):
    """A review: indices, a boolean tensor (which failed in the output check itself, "cannot
    trace"), max's tuple and an empty tuple were all "does not return a tensor or a tuple",
    the last "(it returns tuple)"."""
    report = sct.lipschitz_report(_Returns(function).double().eval(), (3, 5, 5))
    assert report.network_upper is None
    if named is None:
        assert "(it returns an empty tuple)" in report.reason, report.reason
    else:
        assert re.search(rf"returns '{named}\w*', which is no floating tensor", report.reason), \
            report.reason


def test_an_output_that_is_no_tensor_is_named_so():
    """A dict output (torchvision's segmentation models) was reported as "does not compute
    what its forward does (an in-place change ...?)"; it is bounded now, and an output with
    a value that is no tensor is named."""
    one = _networks.randomize(_networks.SeveralOutputs("one in a dict"))
    report = sct.lipschitz_report(one, (3, 4, 4))
    a, b = (row["upper"] for row in report)
    assert a * b <= report.network_upper <= a * b * (1 + 1e-12)
    numbered = _networks.randomize(_networks.SeveralOutputs("with a number"))
    report = sct.lipschitz_report(numbered, (3, 4, 4))
    assert report.network_upper is None
    assert "does not return a tensor or a tuple, list or dict of tensors (it returns int)" in \
        report.reason, report.reason


class _Forward(nn.Module):
    """A Linear (identity weight) and then ``function(self, y, x)``."""

    def __init__(self, function, buffer=None, parameter=None):
        super().__init__()
        self.lin = nn.Linear(3, 3, bias=False, dtype=F64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(3, dtype=F64))
        if buffer is not None:
            self.register_buffer("t", buffer)
        if parameter is not None:
            self.w = nn.Parameter(parameter)
        self.function = function

    def forward(self, x):
        return self.function(self, self.lin(x), x)


class _ComplexLinear(nn.Module):
    """F.linear by a complex parameter (the probe is complex, as the model's parameters)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, dtype=torch.complex128,
                                          generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return F.linear(x, self.w)


@pytest.mark.parametrize("name, model", [
    # CELU with a negative alpha (which PyTorch takes) is unbounded below 0: it had constant 1
    ("CELU(alpha=-1)", lambda: nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.CELU(-1.0))),
    ("F.celu(x, -1)", lambda: _Forward(lambda m, y, x: F.celu(y, -1.0))),
    # non-finite slopes had constant 1 (max(1, -1))
    ("LeakyReLU(inf)", lambda: nn.Sequential(nn.Linear(3, 3, dtype=F64),
                                             nn.LeakyReLU(float("inf")))),
    ("ELU(nan)", lambda: nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.ELU(float("nan")))),
    # a complex parameter in F.linear lost its imaginary part (bound 2.06, norm 2.94)
    ("complex F.linear", lambda: _ComplexLinear()),
    # abs(-2**63) overflows in int64: max |t| came out as 1
    ("int64 -2**63", lambda: _Forward(lambda m, y, x: y * m.t, buffer=torch.tensor(
        [-2 ** 63, 1, 1], dtype=torch.int64))),
    # crashed: a slope from the signal's shape (TypeError), a 1-D weight (IndexError)
    ("slope from a shape", lambda: _Forward(lambda m, y, x: F.leaky_relu(y, x.shape[-1] / 100))),
    ("1-D F.linear weight", lambda: _Forward(lambda m, y, x: F.linear(y, m.w),
                                             parameter=torch.ones(3, dtype=F64))),
    # samples mixed: the batch transposed away, or every axis reduced (dim=[])
    ("batch transposed", lambda: _Forward(lambda m, y, x: y.transpose(0, 1).sum(1))),
    ("sum(dim=[])", lambda: _Forward(lambda m, y, x: torch.sum(y, dim=[]))),
    ("batch moved", lambda: _Forward(lambda m, y, x: y.movedim(0, 1).mean(0))),
])
def test_a_third_reviews_counterexamples_get_no_bound_or_a_true_one(name, model):
    """Each either gets no bound (with a reason, never an exception) or one at least its
    largest observed ratio ``||f(x) - f(y)|| / ||x - y||`` over pairs of batches of two."""
    model = model().eval()
    report = sct.lipschitz_report(model, (3,))
    if report.network_upper is None:
        assert report.reason, name
        return
    generator = torch.Generator().manual_seed(1)
    dtype = next(model.parameters()).dtype
    for _ in range(16):
        x = 4 * torch.randn((2, 3), dtype=dtype, generator=generator)
        y = x + torch.randn((2, 3), dtype=dtype, generator=generator)
        with torch.no_grad():
            ratio = (model(x) - model(y)).abs().norm() / (x - y).norm()
        assert float(ratio) <= report.network_upper * (1 + 1e-9), (name, report.network_upper)


def test_products_by_any_numeric_tensor_and_big_integers():
    """An int32 buffer was refused as "neither floating nor integer"; int64's -2**63 gives a
    bound of its size."""
    for buffer, least in ((torch.tensor([2, 3, 1], dtype=torch.int32), 3),
                          (torch.tensor([-2 ** 63, 1, 1], dtype=torch.int64), 2.0 ** 63),
                          (torch.tensor([True, False, True]), 1)):
        report = sct.lipschitz_report(_Forward(lambda m, y, x: y * m.t, buffer=buffer).eval(),
                                      (3,))
        assert report.network_upper is not None and report.network_upper >= least, report.reason


@pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")
@pytest.mark.parametrize("function", [
    lambda y, x: y.reshape(x.size(0), x.shape[1], -1)[..., : x.size(-1)],
    lambda y, x: y[:, :, 1:y.shape[2] - 1] + x[:, :, : x.size(2) - 2],
    lambda y, x: x + y.view_as(x),
    # a new user's trial: the U-Net up-block's pad to its skip's size (milesial's Up.forward),
    # a pad to a multiple of 8 and its crop, and a shape unpacked with a name left unused
    lambda y, x: torch.cat([x, F.pad(y[:, :, :-1, :-2], [
        (x.size(3) - y.size(3) + 2) // 2, x.size(3) - y.size(3) + 2 - (x.size(3) - y.size(3)
                                                                       + 2) // 2,
        (x.size()[2] - y.size()[2] + 1) // 2, 1 - (x.size()[2] - y.size()[2] + 1) // 2])], 1),
    lambda y, x: F.pad(y, (0, (8 - y.shape[3] % 8) % 8, 0, (8 - y.shape[2] % 8) % 8),
                       mode="replicate")[:, :, : x.shape[2], : x.shape[3]] * 3,
    lambda y, x: _unpacked(y, x),
    lambda y, x: y + F.avg_pool2d(x, x.shape[-1] // 4),  # (refused before: a kernel size)
    lambda y, x: F.pad(y, [x.size()[-1] // 2, x.dim(), x.shape[2:][0] // 2, 1], "replicate"),
    lambda y, x: F.interpolate(y, size=_spatial(x)),  # (an unused batch read: a review)
])
def test_sizes_read_off_bounded_shapes_are_constants_of_the_traced_shape(function):
    """``x.shape``, ``x.size()`` of a tensor the bound accepted: fixed by the traced shape, in
    a reshape or a slice (a crop at the argmax, or at a count of positive entries, is
    refused: test_no_rule_no_bound_and_the_node_is_named)."""
    model = _networks.randomize(_Lambda(function), 0).eval()
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is not None, report.reason
    assert jacobian_norm(model, (2, 4, 4)) <= report.network_upper


@pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")
def test_network_operator_refuses_the_deprecated_alpha_form():
    """network_operator raised "float() argument must be ... not 'Node'" on it. (PyTorch
    warns once a process: this test alone saw the warning, as an error.)"""
    model = _Lambda(lambda y, x: torch.add(x, 100, y)).eval()
    with pytest.raises(TypeError, match=r"deprecated add/sub\(input, alpha, other\) form"):
        sct.network_operator(model, (2, 4, 4))


def _third_review_models():
    """A third review's false certificates: a circular convolution whose ``padding`` was set
    after construction (torch pads by its stale copy), a ``_conv_forward`` set on the
    instance, and TorchScript classes of the user's named ``Conv2d`` and ``ReLU`` computing
    100 times torch's."""
    import types

    stale = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular", bias=False, dtype=F64)
    stale.padding = (0, 0)
    patched = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
    patched._conv_forward = types.MethodType(
        lambda self, x, w, b: 20 * F.conv2d(x, w, b, 1, 1), patched)

    class Conv2d(nn.Module):  # a user's own class named as torch's
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(2, 2, 3, 3, dtype=F64) / 9)

        def forward(self, x):
            return 100 * F.conv2d(x, self.weight, None, 1, 1)

    class ReLU(nn.Module):
        def forward(self, x):
            return 100 * torch.relu(x)

    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = [torch.jit.script(nn.Sequential(Conv2d(), nn.ReLU()).eval()),
                    torch.jit.script(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, dtype=F64),
                                                   ReLU()).eval())]
    return [nn.Sequential(stale).eval(), nn.Sequential(patched, nn.ReLU()).eval(), *scripted]


@pytest.mark.parametrize("index", range(4))
def test_modules_that_do_not_compute_what_is_read_are_refused(index):
    """Refused with the reason, or reported without a network bound (the patched layer is
    not torch's class: no row), or bounded through the operations it runs (a TorchScript
    class of the user's); each had a bound 20 to 100 times too small."""
    model = _third_review_models()[index]
    try:
        report = sct.lipschitz_report(model, (2, 8, 8))
    except (TypeError, ValueError) as exc:
        assert re.search("does not reproduce its output|does not compute what a|"
                         r"\(its copy made at construction\)", str(exc))
    else:
        assert index in (1, 2, 3)
        if index == 1:
            assert report.network_upper is None and "Conv2d" in report.reason
            assert not report.rows
        else:  # (a TorchScript class of the user's is none of torch's, whatever its name:
            # no row of its own, its operations followed in the graph, the 100 counted)
            assert report.over_graph, report.reason
            assert report.network_upper >= _networks.largest_ratio(model, (2, 8, 8)) > 20


@pytest.mark.parametrize("function", [
    lambda y, x: -y + x,                                     # unary minus
    lambda y, x: y - torch.neg(x),
    lambda y, x: y + y.mean(axis=(2, 3), keepdim=True),      # numpy-style axis=
    lambda y, x: y + torch.sum(x, axis=1, keepdims=True),
])
def test_unary_minus_and_axis_aliases_are_bounded_and_mapped(function):
    """A review: ``-conv(x)`` had no rule, and ``mean(axis=...)`` (PyTorch's alias of dim)
    was read as reducing over the batch axis, in the bound and in network_operator."""
    model = _networks.randomize(_Lambda(function), 0).eval()
    report = sct.lipschitz_report(model, (2, 4, 4))
    assert report.network_upper is not None, report.reason
    assert jacobian_norm(model, (2, 4, 4)) <= report.network_upper
    op = sct.network_operator(model, (2, 4, 4))
    x = torch.randn((2, 4, 4), dtype=F64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x[None])[0].numpy().ravel()
    np.testing.assert_allclose(op.operator.matvec(x.numpy().ravel()) + op.offset, expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=2), dict(kernel_size=3, stride=1),
                                     dict(kernel_size=3, stride=2, ceil_mode=True),
                                     dict(kernel_size=2, stride=1, dilation=2)])
def test_functional_max_pooling_has_its_modules_constant(options):
    """A review: ``F.max_pool2d`` was refused where ``nn.MaxPool2d`` is bounded by
    ``sqrt(w)``; both give the same network bound now, above the model's largest ratio."""
    by_function = _networks.randomize(_Lambda(lambda y, x: F.max_pool2d(y, **options)), 0)
    by_module = nn.Sequential(by_function.conv, nn.MaxPool2d(**options))
    by_function.eval()
    by_module.eval()
    bounds = [sct.lipschitz_report(m, (2, 6, 6)).network_upper for m in (by_module, by_function)]
    assert bounds[1] is not None and bounds[0] == bounds[1]
    assert _networks.largest_ratio(by_function, (2, 6, 6)) <= bounds[1]
    with_indices = _Lambda(lambda y, x: F.max_pool2d(y, 2, return_indices=True)[0]).eval()
    report = sct.lipschitz_report(with_indices, (2, 6, 6))
    assert report.network_upper is None


def test_a_size_from_the_batch_that_agrees_at_two_batches_is_refused():
    """A second review: the batch size read off axis 1 of y.reshape(b, b, -1), // 2 + 1, is
    2 at the probe's batch of two and at three, and 3 at four, where the model's constant
    is larger than the bound was."""
    model = _networks.randomize(_Lambda(lambda y, x: F.interpolate(
        y, scale_factor=y.reshape(x.shape[0], x.shape[0], -1).shape[1] // 2 + 1)), 0).eval()
    report = sct.lipschitz_report(model, (2, 6, 6))
    assert report.network_upper is None
    assert "computed from the signal" in report.reason


class _Raw(nn.Module):
    """``function(self, x)`` on the input itself, with an optional buffer ``t``."""

    def __init__(self, function, buffer=None):
        super().__init__()
        if buffer is not None:
            self.register_buffer("t", buffer)
        self.function = function

    def forward(self, x):
        return self.function(self, x)


def _off_the_graph(m, x):  # code the tracer skips: int() of a Proxy raises under torch.fx
    y = x * 1.0
    try:
        if int(x.shape[-1]) > 2:
            y = y + 100 * F.relu(x - 10)
    except Exception:  # noqa: BLE001 - (the review's model)
        pass
    return y


def _scale_then_zero(m, x):
    t = m.t.clone()
    y = x * t
    return y + t.zero_()  # t changed after x * t read it


@pytest.mark.parametrize("function, shape, buffer", [
    # the signal broadcast by a bigger constant of an elementwise function: sqrt(4) copies
    (lambda m, x: torch.clamp(x, min=m.t), (1, 4, 4), torch.full((1, 4, 4, 4), -1e9)),
    # the batch axis met by coincidence of sizes (bounded at the probe's batch of two only)
    (lambda m, x: x + x[0], (2, 3, 3), None),
    (lambda m, x: x.squeeze().sum(1), (1, 2, 6), None),
    (lambda m, x: x * m.t, (2, 3, 3), torch.ones(2, 1, 1, 1)),
    (lambda m, x: x.reshape(x.shape[1], x.shape[0], -1).sum(1), (2, 3, 3), None),
    # a shape tuple as an index repeats entries (advanced indexing)
    (lambda m, x: x[:, x.shape[2:]] * 1.0, (4, 2, 2), None),
    # complex signals, where the real functions' constants do not hold
    (lambda m, x: torch.tanh(x.to(torch.complex128) * m.t), (1, 2, 2),
     torch.tensor([1j], dtype=torch.complex128)),
    (lambda m, x: nn.functional.silu(x.to(torch.complex128) * m.t), (1, 2, 2),
     torch.tensor([1j], dtype=torch.complex128)),
    # a constant changed in place after it was read; code off the traced graph
    (_scale_then_zero, (2, 3, 3), torch.full((1,), 10.0)),
    (_off_the_graph, (1, 2, 4), None),
], ids=["clamp-broadcast", "x+x[0]", "squeeze", "batch-2-buffer", "reshape-swap",
        "shape-index", "complex-tanh", "complex-silu", "mutated-constant", "off-the-graph"])
def test_a_fourth_hunts_models_are_refused_or_bounded(function, shape, buffer):
    """A hunt for bounds below the Lipschitz constant found each of these bounded below it
    (at the probe's batch, or at another): each is now refused, or bounded above it."""
    model = _Raw(function, None if buffer is None else buffer.to(
        torch.complex128 if buffer.is_complex() else F64)).eval()
    report = sct.lipschitz_report(model, shape)
    if report.network_upper is None:
        return
    for batch in (1, 2, 4):  # the constant at each batch size: one sample's map, or more
        x = torch.zeros((batch, *shape), dtype=F64)
        jacobian = torch.autograd.functional.jacobian(model, x).reshape(-1, x.numel())
        assert np.linalg.norm(jacobian.numpy(), 2) <= report.network_upper * (1 + 1e-12)


class _ScaleThenZero(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.full((1, 2, 1, 1), 10.0, dtype=F64))

    def forward(self, x):
        t = self.w.clone()
        y = x * t  # 10 x
        return y + t.zero_()  # t is 0 when the bound reads it


class _LinearThenZero(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(5 * torch.randn(7, 18, dtype=F64,
                                              generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        w = self.w.clone()
        return F.linear(x.flatten(1), w) + w.mul_(0.0).sum()


@pytest.mark.parametrize("make", [_ScaleThenZero, _LinearThenZero], ids=["scale", "linear"])
def test_a_constant_changed_in_place_after_its_use_is_refused(make):
    """A hunt: the bound read the constant's value after the whole probe run, changed to 0:
    bounds of 0 for constants of 10 and 32."""
    report = sct.lipschitz_report(make().eval(), (2, 3, 3))
    assert report.network_upper is None
    assert "is changed in place after it is made" in report.reason


@pytest.mark.parametrize("cast", [lambda x: x.half(), lambda x: x.to(torch.bfloat16)],
                         ids=["half", "bfloat16"])
def test_a_cast_down_to_half_precision_is_refused(cast):
    """A hunt: x.half().double() was bounded by 1, but two inputs 0.02 ulp apart around a
    rounding midpoint are 50 times farther apart after it, and 7e4 becomes inf."""
    report = sct.lipschitz_report(_Raw(lambda m, x: cast(x).double()).eval(), (2, 3, 3))
    assert report.network_upper is None and "casts the signal down to" in report.reason


def _deep(m, x):  # a chain of about 400 nodes, then a size read at its end
    for _ in range(200):
        x = x * 1.0 + x * 0.0
    return F.avg_pool2d(x, x.size()[3] // 2)


def _flatten_then_pool(m, x):
    y = x.view(x.size(0), x.size(1), -1)  # the batch read as the first size: a flatten
    return F.avg_pool1d(y, y.size(-1) // 2)


def _unet_pad(m, x):
    y = F.interpolate(x[:, :, 1:-1, 1:-1].reshape(x.shape[0], 2, 2, 2), scale_factor=2)
    dy = x.size(2) - y.size(2)
    return torch.cat([x, F.pad(y, [0, dy, 0, dy])], 1)


@pytest.mark.parametrize("function, shape", [
    (lambda m, x: (x.flatten(1) @ torch.ones(12, 1, dtype=F64)).squeeze(), (3, 2, 2)),
    (lambda m, x: (x.flatten(1) @ torch.ones(12, 3, dtype=F64)).squeeze(), (3, 2, 2)),
    (_deep, (2, 4, 4)),
    (_flatten_then_pool, (2, 4, 4)),
    (lambda m, x: x.view(x.size(0), -1)[:, : x.view(x.size(0), -1).size(1) // 2] * 2,
     (2, 2, 2)),
    (_unet_pad, (2, 4, 4)),
], ids=["squeeze-scalar", "squeeze-output", "deep", "flatten-pool", "flatten-slice", "unet"])
def test_a_third_reviews_valid_models_are_bounded(function, shape):
    """A third review of the batch checks: a squeezed (B, 1) output raised IndexError, a deep
    chain RecursionError, and a squeezed output or sizes read off a tensor flattened by the
    batch size were refused; each is bounded at or above its constant."""
    model = _Raw(function, torch.zeros(1, dtype=F64)).eval()  # (a float64 model)
    report = sct.lipschitz_report(model, shape)
    assert report.network_upper is not None, report.reason
    x = torch.zeros((2, *shape), dtype=F64)
    jacobian = torch.autograd.functional.jacobian(model, x).reshape(-1, x.numel())
    assert np.linalg.norm(jacobian.numpy(), 2) <= report.network_upper * (1 + 1e-12)


@pytest.mark.parametrize("function, shape", [
    (lambda m, x: x.reshape(x.shape[0], 1 + 3 * (x.shape[0] // 4), -1).mean(-1), (8,)),
    (lambda m, x: x.flatten(1 - x.shape[0] // 4).sum(-1, keepdim=True), (2, 2, 2)),
    (lambda m, x: x.to(torch.float8_e4m3fn).double(), (2, 3)),
], ids=["reshape", "flatten", "float8"])
def test_a_third_reviews_batch_sized_reshapes_and_float8_are_refused(function, shape):
    """A third review: a reshape or flatten by a size from the batch size, the same at
    batches one to three (not at four), and a cast to float8, were bounded below the
    constant."""
    report = sct.lipschitz_report(_Raw(function).eval(), shape)
    assert report.network_upper is None
    assert "computed from the signal" in report.reason or "casts the signal down" in (
        report.reason)


def _size_chain(m, x):
    b = x.shape[0]
    for _ in range(400):  # (a recursion over the chain crashed: a fourth review)
        b = b + 0
    return x.reshape(b, -1).sum(1, keepdim=True)


@pytest.mark.parametrize("function, shape", [
    (lambda m, x: x.reshape(x.shape[0] - x.shape[0] // 4, -1).sum(1), (6,)),
    (lambda m, x: x.reshape(x.shape[:1] + (x.shape[0] // 4 + 1, -1)).sum(1), (8,)),
    pytest.param(lambda m, x: x.to(torch.complex32).real.to(torch.float64), (4,),
                 marks=pytest.mark.filterwarnings("ignore:ComplexHalf support:UserWarning")),
    (_size_chain, (3,)),
], ids=["first-size-arithmetic", "first-size-tuple", "complex32", "size-chain"])
def test_a_fourth_reviews_models_are_refused(function, shape):
    """A fourth review: a reshape's first size computed from the batch size (b - b // 4, the
    batch at one to three), a whole shape tuple so computed, a cast to complex32 (float16
    parts) were bounded below the constant; a chain of 400 size operations raised
    RecursionError."""
    report = sct.lipschitz_report(_Raw(function, torch.zeros(1, dtype=F64)).eval(), shape)
    assert report.network_upper is None
    assert "computed from the signal" in report.reason or "casts the signal down" in (
        report.reason)


def test_a_reshape_keeping_the_batch_read_as_it_is_is_bounded():
    """What the fourth review's refusals keep: x.reshape(x.shape[0], ...), x.view(x.size(0),
    ...), and a whole shape."""
    for function in (lambda m, x: x.reshape(x.shape[0], 2, -1).sum(2),
                     lambda m, x: x.view(x.size(0), -1) * 2,
                     lambda m, x: (x * 3).reshape(x.shape)):
        model = _Raw(function, torch.zeros(1, dtype=F64)).eval()
        report = sct.lipschitz_report(model, (2, 3))
        assert report.network_upper is not None, report.reason
        x = torch.zeros((2, 2, 3), dtype=F64)
        jacobian = torch.autograd.functional.jacobian(model, x).reshape(-1, x.numel())
        assert np.linalg.norm(jacobian.numpy(), 2) <= report.network_upper * (1 + 1e-12)


@pytest.mark.parametrize("function, listed, constant", [
    (F.relu, "relu (relu())", 1.0),
    (torch.sigmoid, "sigmoid (sigmoid(), 0.25)", 0.25),
    (F.gelu, "gelu (gelu(), 1.13)", 1.13),
    (lambda y: F.leaky_relu(y, 5.0), "leaky_relu (leaky_relu(), 5)", 5.0),
    (lambda y: y.tanh(), "tanh (tanh())", 1.0),
    (lambda y: F.max_pool2d(y, 3, 1, 1), "max_pool2d (max_pool2d(), 3)", 3.0),
])
def test_the_report_lists_the_constants_of_the_functions_it_used(function, listed, constant):
    """A new user's trial: the bound over the graph used 0.25 for torch.sigmoid and 5 for
    F.leaky_relu(x, 5.0), and the report said it assumed no activation's constant."""
    model = _networks.randomize(_Lambda(lambda y, x: function(y)), 3)
    report = sct.lipschitz_report(model, (2, 6, 6))
    assert report.activations == (listed,)
    assert report.network_upper == pytest.approx(constant * report[0]["upper"], rel=1e-12)
    assert ("assumes these activations, by name (type, and Lipschitz constant where not 1): "
            f"{listed}") in str(report)


@pytest.mark.parametrize("key", ["act", "Swish"])
def test_a_module_of_the_user_s_given_its_constant_is_called_whole_in_an_eager_model(key):
    """A new user's trial: EfficientNet's ``Swish`` given 1.1 was listed as assumed, but the
    bound followed its forward into ``x * sigmoid(x)`` (a product of two signals: no rule),
    and there was no bound. torch.fx's graph shows that the call reads its argument alone
    and leaves nothing else: it is called whole, an activation of the constant given, as in
    the scripted model (tests/test_torch_script_graph.py); without the constant, the product
    of two signals is named."""
    torch.manual_seed(0)
    residual = _networks.SwishResidual().eval()
    shape = (3, 6, 6)
    alone = sct.lipschitz_report(residual, shape)
    assert alone.network_upper is None and "multiplies two values of the signal" in \
        alone.reason and "give one for a module of yours" in alone.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = sct.lipschitz_report(residual, shape, lipschitz_constants={key: 1.1})
    assert report.over_graph, report.reason
    assert report.network_upper == pytest.approx(1 + 1.1 * report[0]["upper"], rel=1e-12)
    assert report.network_upper >= _networks.largest_ratio(residual, shape)
    assert report.activations == ("act (Swish, 1.1 given)",)


_STORE: dict = {}


class _Stores(nn.Module):
    """The identity, leaving its input in a global dict (1-Lipschitz as a map of its input)."""

    def forward(self, x):
        _STORE["x"] = x
        return x


class _ReadsTheStore(nn.Module):
    """``tanh(x)`` plus ten times what ``_Stores`` left: 1-Lipschitz in ``x`` alone, for the
    network a map of slope about 10."""

    def forward(self, x):
        return torch.tanh(x) + 10 * _STORE["x"]


class _LeavesContext(nn.Module):
    """The identity, setting ten times its input on the next module, which deletes it."""

    def __init__(self, reader: nn.Module):
        super().__init__()
        self.reader = [reader]  # (no submodule: a list)

    def forward(self, x):
        self.reader[0].ctx = 10 * x
        return x


class _ReadsTheContext(nn.Module):
    def forward(self, x):
        out = torch.tanh(x) + self.ctx
        del self.ctx
        return out


class _ScaledIfAsked(nn.Module):
    def forward(self, x, s=None):
        return torch.tanh(x) if s is None else torch.tanh(x) * s


class _CalledWithTwo(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=F64)
        self.a1, self.a2 = _ScaledIfAsked(), _ScaledIfAsked()

    def forward(self, x):
        return self.a2(self.conv(self.a1(x)), 10.0)


def _side_channel(kind: str) -> nn.Module:
    if kind == "global":
        return nn.Sequential(_Stores(), nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=F64),
                             _ReadsTheStore())
    if kind == "attribute":
        reader = _ReadsTheContext()
        return nn.Sequential(_LeavesContext(reader),
                             nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=F64), reader)
    return _CalledWithTwo()


@pytest.mark.parametrize("kind", ["global", "attribute", "two arguments"])
def test_a_module_given_its_constant_reading_what_another_left_is_followed(kind):
    """A review: modules given true constants (1, as maps of their one input) were kept
    whole where one read what another left (a global dict, an attribute set in the forward)
    or was called with a second argument (``s=10``): bounds of 0.81 for networks whose
    ratios reach 8.0 to 10.7 (a second review, 1.0 for 2e4). torch.fx's graph shows what
    each call reads, its argument marked apart from the same tensor left elsewhere: the
    module is followed (a bound over the graph, or none), and why is said."""
    torch.manual_seed(0)
    model = _side_channel(kind).eval()
    shape = (1, 6, 6)
    given = {"a1": 1.0, "a2": 1.0} if kind == "two arguments" else {"0": 1.0, "2": 1.0}
    said = {"global": r"2 \(_ReadsTheStore\), .*: its constant unused.*which reads "
                      "'input_1', a value computed from the input other than its argument",
            "attribute": r"2 \(_ReadsTheContext\), .*: its constant unused.*which reads "
                         "'mul', a value computed",
            "two arguments": r"a2 \(_ScaledIfAsked\), .*: its constant unused.*which is "
                             "called with 2 arguments"}
    with pytest.warns(UserWarning, match=said[kind]):
        report = sct.lipschitz_report(model, shape, lipschitz_constants=given)
    largest = _networks.largest_ratio(model, shape)
    assert largest > 2.0  # (the bounds were 0.81)
    assert report.network_upper is None or report.network_upper >= largest, report.reason


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """timm.layers.padding.get_same_padding."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class _Conv2dSame(nn.Conv2d):
    """timm.layers.conv2d_same.Conv2dSame (TensorFlow's "SAME" padding, of the EfficientNets
    and MobileNets ported from it): its padding from the input's and the kernel's sizes, by
    math.ceil and max."""

    def forward(self, x):
        ih, iw = x.size()[-2:]
        kh, kw = self.weight.shape[-2:]
        pad_h = _same_padding(ih, kh, self.stride[0], self.dilation[0])
        pad_w = _same_padding(iw, kw, self.stride[1], self.dilation[1])
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation,
                        self.groups)


@pytest.mark.parametrize("size", [9, 10])
def test_a_padding_computed_from_sizes_by_ceil_and_max_is_a_constant_of_the_shape(size):
    """A new user's trial: timm's ``Conv2dSame`` had no bound over its graph and no
    ``network_operator`` (its ``max`` of sizes a TraceError; ``math.ceil`` of one, then its
    padding, "computed from the signal"; the kernel's size, a parameter's shape, no size of
    the traced shape)."""
    torch.manual_seed(0)
    model = nn.Sequential(_Conv2dSame(4, 4, 3, stride=2, groups=4, dtype=F64)).eval()
    shape = (4, size, size)
    report = sct.lipschitz_report(model, shape)
    assert report.over_graph and report.network_upper is not None, report.reason
    norm = np.linalg.norm(jacobian_matrix(model, shape), 2)
    assert norm <= report.network_upper <= norm * 1.1
    net = sct.network_operator(model, shape)
    x = torch.randn(1, *shape, dtype=F64)
    np.testing.assert_allclose(net(x.numpy().ravel()), model(x).detach().numpy().ravel(),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("reshape", [
    lambda h: h.view(*h.shape[:2], -1),
    lambda h: h.view(*h.shape),
    lambda h: h.reshape(*h.size()[:2], -1),
    lambda h: h.reshape(tuple(h.shape)),
    lambda h: h.flatten(2).reshape(list(h.shape[:2]) + [-1]),
    lambda h: h.view(*h.shape[:1], *h.shape[1:][::-1]).transpose(1, 4),
])
def test_a_starred_or_converted_shape_is_read_as_its_sizes(reshape):
    """A new user's trial: ``h.view(*h.shape[:2], -1)``, ``tuple(h.shape)`` and
    ``list(h.shape[2:])`` (the usual flattening of 1-D and 3-D maps) made torch.fx ask a
    shape's ``len()``, which it refuses: no bound over the graph and no
    ``network_operator``. Their sizes are read as the loops over sizes are."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(2, 4, 3, padding=1, dtype=F64)
            self.fc = nn.Linear(4 * 3 * 4 * 5, 3, dtype=F64)

        def forward(self, x):
            return self.fc(reshape(self.conv(x)).flatten(1))

    model, shape = Net().eval(), (2, 3, 4, 5)
    report = sct.lipschitz_report(model, shape)
    assert report.over_graph, report.reason
    norm = np.linalg.norm(jacobian_matrix(model, shape), 2)
    assert norm <= report.network_upper <= report["conv"]["upper"] * report["fc"]["upper"] * (
        1 + 1e-12)
    net = sct.network_operator(model, shape)
    x = torch.randn(1, *shape, dtype=F64)
    np.testing.assert_allclose(net(x.numpy().ravel()), model(x).detach().numpy().ravel(),
                               rtol=0, atol=1e-12)


def test_the_chain_check_traces_a_starred_shape_as_the_bound_does():
    """A review: with a starred shape, the reason said the forward "cannot be checked to be
    the chain of its layers (torch.fx cannot trace it)" while the bound over the graph, in
    the same sentence, had traced it: the chain check traces as the bound does."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)

        def forward(self, x):
            return torch.erf(self.conv(x).view(*x.shape[:2], -1))

    reason = sct.lipschitz_report(Net().eval(), (2, 6, 6)).reason
    assert "runs erf (node 'erf') on its signal outside its layers" in reason, reason
    assert "cannot be checked" not in reason


def stochastic_depth(x, p, mode, training=True):
    """A function of the user's named as torchvision's, wrapped as it is, and not it: three
    times its input."""
    return 3 * x


torch.fx.wrap("stochastic_depth")


class _NotTorchvisions(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, dtype=F64)

    def forward(self, x):
        return x + stochastic_depth(self.conv(x), 0.1, "row", self.training)


@pytest.mark.parametrize("mode, p", [("row", 0.1), ("batch", 0.5), ("row", 0.0)])
def test_torchvision_s_stochastic_depth_outside_training_is_the_identity(mode, p):
    """A new user's trial: torchvision's ConvNeXt and EfficientNet blocks drop their residual
    branch by ``StochasticDepth``, whose function torchvision wraps for torch.fx: the blocks
    in eval mode had no bound ("not a call whose Lipschitz constant is known") and no
    ``network_operator``, where it is the identity. A function of the same name that is not
    torchvision's is no identity."""
    torch.manual_seed(0)
    shape = (4, 6, 6)
    model = _networks.DroppedResidual(nn.GELU(), p, mode).eval()
    report = sct.lipschitz_report(model, shape)
    assert report.over_graph, report.reason
    assert report.network_upper == pytest.approx(1 + 1.13 * report["conv"]["upper"], rel=1e-12)
    assert report.network_upper >= _networks.largest_ratio(model, shape)
    linear = _networks.DroppedResidual(nn.Identity(), p, mode).eval()
    net = sct.network_operator(linear, shape)
    x = torch.randn(1, *shape, dtype=F64)
    np.testing.assert_allclose(net(x.numpy().ravel()), linear(x).detach().numpy().ravel(),
                               rtol=0, atol=1e-13)
    read = _networks.stochastic_depth  # (in training, with p > 0: random, no identity)
    assert not identity_in_eval(read, (None, 0.1, "row", True), {})
    assert not identity_in_eval(read, (None, 0.1, "row"), {})
    assert identity_in_eval(read, (None, 0.1, "row"), {"training": False})
    assert identity_in_eval(read, (None, 0.0, "batch", True), {})
    other = sct.lipschitz_report(_NotTorchvisions().eval(), shape)
    assert other.network_upper is None and "node 'stochastic_depth' (call_function " \
        "stochastic_depth) is not a call whose Lipschitz constant is known" in other.reason


@pytest.mark.parametrize("f, factor", [
    (lambda y: torch.rsub(y, 1.0, alpha=2.0), 2),  # 1 - 2y
    (lambda y: torch.rsub(y, 3 * y), 4),  # 3y - y, bounded as 3 + 1
    (lambda y: torch.true_divide(y, 0.5), 2),
    (lambda y: y.true_divide(0.25), 4),
    (lambda y: torch.subtract(y, 0.5, alpha=3.0), 1),
    (lambda y: torch.multiply(y, -3.0), 3),
    (lambda y: y.divide(4.0), 0.25),
    (lambda y: y + torch.ones_like(y), 1),
    (lambda y: torch.full_like(y, 2.0) - y + torch.zeros_like(y), 1),
    (lambda y: y + torch.ones_like(y).view_as(y), 1),  # (a review: a crash)
    (lambda y: y * torch.full_like(y[:, :1], 3.0).expand_as(y), 3),
    (lambda y: y - torch.zeros_like(y.flatten(1)).reshape_as(y), 1),
])
def test_torch_s_aliases_of_sums_and_products_have_their_rules(f, factor):
    """A new user's trial: ``torch.rsub(y, 1)``, ``torch.true_divide(y, 0.5)`` and ``y +
    torch.ones_like(y)`` were refused as calls of unknown constant (where ``1 - y`` and ``y /
    0.5`` were bounded), and ``network_operator`` refused them as not linear."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1, dtype=F64)

        def forward(self, x):
            return f(self.conv(x))

    torch.manual_seed(0)
    model, shape = Net().eval(), (2, 5, 5)
    report = sct.lipschitz_report(model, shape)
    assert report.network_upper == pytest.approx(factor * report[0]["upper"], rel=1e-12), \
        report.reason
    net = sct.network_operator(model, shape)
    x = torch.randn(3, *shape, dtype=F64)
    np.testing.assert_allclose(net.apply(x.numpy()), model(x).detach().numpy(), rtol=0,
                               atol=1e-13)
    u, v = np.random.default_rng(0).standard_normal((2, max(net.operator.shape)))
    u, v = u[:net.operator.shape[1]], v[:net.operator.shape[0]]
    assert np.dot(net.operator @ u, v) == pytest.approx(np.dot(u, net.operator.H @ v),
                                                        rel=1e-12)


class _Softplus(nn.Module):
    """Two functional calls with no known constant (F.softplus jumps by 2e-9 at its
    threshold), and a module named as the function."""

    def __init__(self, module: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
        self.softplus = nn.Softplus() if module else None

    def forward(self, x):
        y = self.conv(x)
        z = F.softplus(y) + 2 * F.softplus(y, beta=3.0)
        return z if self.softplus is None else z + self.softplus(y)


def test_constants_of_functions_by_node():
    """A new user's trial: the reason named node 'softplus', and lipschitz_constants refused
    every key that could give it a constant. A review: a function's name applied to every
    call of it (repeat(1, 1, 64) took the constant worked out for repeat(1, 1, 1)), a key
    could replace a linear call's certified norm, and a given constant dropped the count of
    a broadcast signal's copies; now a key names one node, with no rule of its own."""
    shape = (2, 5, 5)
    calls = _Softplus().eval()
    none = sct.lipschitz_report(calls, shape)
    assert none.network_upper is None
    assert "node 'softplus' (call_function softplus) is not a call whose" in none.reason
    assert "lipschitz_constants={'softplus': L} gives this node one, yours" in none.reason
    conv = none[0]["upper"]
    first = sct.lipschitz_report(calls, shape, lipschitz_constants={"softplus": 1.0})
    assert first.network_upper is None  # the other call, node softplus_1, has none
    assert "node 'softplus_1'" in first.reason
    both = sct.lipschitz_report(calls, shape, lipschitz_constants={"softplus": 1.0,
                                                                   "softplus_1": 3.0})
    assert both.activations == ("softplus (softplus(), 1.0 given)",
                                "softplus_1 (softplus(), 3.0 given)")
    assert both.network_upper == pytest.approx(7 * conv, rel=1e-12)
    assert both.network_upper >= _networks.largest_ratio(calls, shape)
    with pytest.raises(ValueError, match=r"lipschitz_constants\['F.softplus'\] names no traced "
                                         r".* nor a function the forward calls; they are: "
                                         r".*softplus_1.* \(did you mean 'softplus'\?\)"):
        sct.lipschitz_report(calls, shape, lipschitz_constants={"F.softplus": 1.0})
    for ruled in ("mul", "add"):  # (their rules: a product by a number, a sum)
        with pytest.raises(ValueError, match=rf"lipschitz_constants\['{ruled}'\] names the "
                                             rf"call of {ruled}, which has a rule of its own "
                                             r"in the bound"):
            sct.lipschitz_report(calls, shape, lipschitz_constants={ruled: 0.1})
    # a module's name wins: "softplus" is the module's constant, the functions stay unknown
    named = _Softplus(module=True).eval()
    report = sct.lipschitz_report(named, shape, lipschitz_constants={"softplus": 0.5})
    assert report.network_upper is None and "node 'softplus" in report.reason
    assert report.activations == ("softplus (Softplus, 0.5 given)",)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(calls)  # (no torch.fx graph: no function to name)
    with pytest.raises(ValueError, match="nor a function the forward calls; they are: none"):
        sct.lipschitz_report(scripted, shape, lipschitz_constants={"softplus": 1.0})


def test_a_given_constant_replaces_no_rule_and_counts_a_broadcasts_copies():
    """A review: lipschitz_constants={"interpolate": 1.0, "conv2d": 1.0} replaced the
    certified norms 2 and 5 (network bound 1.0, Lipschitz constant 10); a constant given to
    torch.maximum(y, t), t 64 times y's size, bounded it by 1.0 where it is 8."""
    weight = torch.nn.Parameter(torch.full((1, 2, 1, 1), 2.5, dtype=F64))

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
            self.weight = weight

        def forward(self, x):
            y = F.interpolate(self.conv(x), scale_factor=2)
            return F.conv2d(y, self.weight)

    model = Linear().eval()
    for key in ("interpolate", "conv2d"):
        with pytest.raises(ValueError, match=rf"names the call of {key}, which has a rule "):
            sct.lipschitz_report(model, (2, 4, 4), lipschitz_constants={key: 1.0})
    t = torch.zeros((1, 1, 64, 5, 5), dtype=F64)  # 64 copies of y's 2 x 5 x 5

    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)

        def forward(self, x):
            return torch.maximum(self.conv(x).unsqueeze(2), t).flatten(1)

    model = Broadcast().eval()
    shape = (2, 5, 5)
    unknown = sct.lipschitz_report(model, shape)
    node = re.search(r"node '(maximum\w*)'", unknown.reason)
    assert node is not None, unknown.reason
    report = sct.lipschitz_report(model, shape, lipschitz_constants={node.group(1): 1.0})
    assert report.network_upper == pytest.approx(8 * report[0]["upper"], rel=1e-12)


@pytest.mark.parametrize("f, moves", [
    (lambda y: y.permute(1, 0, 2, 3).sum(0), True),
    (lambda y: torch.permute(y, dims=(1, 0, 2, 3)).sum(0), True),
    (lambda y: torch.swapaxes(y, axis0=0, axis1=2).sum(0), True),
    (lambda y: y.movedim((0, 1), (1, 0)).sum(0), True),
    (lambda y: y.transpose(2, 3), False),
    (lambda y: torch.swapaxes(y, axis0=1, axis1=3), False),
    (lambda y: y.movedim(1, -1), False),
    (lambda y: torch.permute(y, dims=(0, 2, 1, 3)), False),
])
def test_transpositions_are_read_by_position_and_keyword(f, moves):
    """The bound reads a transposition as network_operator does (one reading of permute,
    transpose, swapaxes and movedim): one that moves the batch axis gets no bound; the others
    a bound at least the Jacobian's norm (swapaxes by its keywords axis0/axis1 was read as
    moving the batch)."""
    model = _Returns(f, (2, 2), bias=True).double().eval()
    report = sct.lipschitz_report(model, (2, 4, 5))
    if moves:
        assert report.network_upper is None and "batch axis" in report.reason
        return
    assert report.network_upper is not None, report.reason
    jacobian = torch.autograd.functional.jacobian(model, torch.zeros((1, 2, 4, 5), dtype=F64))
    assert np.linalg.norm(jacobian.reshape(40, 40).numpy(), 2) <= report.network_upper


# A mutation review of the network bound (2026-12-05): each test below failed on a
# change of the code that every other test let pass.


class _Call(nn.Module):
    """``function(linear(x))`` with an identity ``nn.Linear`` of ``n`` features (norm 1), so
    that the network bound is the function's constant (times 1), over the graph."""

    def __init__(self, function, n: int = 1):
        super().__init__()
        self.function = function
        self.linear = nn.Linear(n, n, bias=False, dtype=F64)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(n, dtype=F64))

    def forward(self, x):
        return self.function(self.linear(x))


def _largest_slope(function, low=-8.0, high=8.0, n=20001) -> float:
    x = torch.linspace(low, high, n, dtype=F64)
    y = function(x)
    return float(((y[1:] - y[:-1]).abs() / (x[1:] - x[:-1])).max())


@pytest.mark.parametrize("function", [
    F.hardsigmoid, torch.selu, F.selu, torch.sigmoid, F.sigmoid, F.hardswish, F.gelu,
    lambda y: F.gelu(y, approximate="tanh"), F.silu, F.mish, F.relu6, F.hardtanh, torch.tanh,
    F.softsign, F.logsigmoid, F.tanhshrink, F.softshrink, lambda y: F.elu(y, 2.0),
    lambda y: F.elu(y, alpha=-3.0), lambda y: F.leaky_relu(y, 5.0),
    lambda y: F.leaky_relu(y, negative_slope=-4.0), lambda y: F.celu(y, 0.5),
    lambda y: y.sigmoid(), lambda y: y.clamp(-1.0, 1.0)],
    ids=["hardsigmoid", "torch.selu", "F.selu", "torch.sigmoid", "F.sigmoid", "hardswish",
         "gelu", "gelu-tanh", "silu", "mish", "relu6", "hardtanh", "tanh", "softsign",
         "logsigmoid", "tanhshrink", "softshrink", "elu2", "elu-3", "leaky5",
         "leaky-4-keyword", "celu", "sigmoid-method", "clamp-method"])
def test_function_constants_bound_their_slopes(function):
    """Every activation called as a function in forward gets a constant at least its
    largest slope (sampled) and at most 1% above it, in the bound over the graph."""
    report = sct.lipschitz_report(_Call(function).eval(), (1,))
    assert report.over_graph and report.network_upper is not None, report.reason
    slope = _largest_slope(function)
    assert slope <= report.network_upper * (1 + 1e-9)
    assert report.network_upper <= slope * 1.01, (slope, report.network_upper)


@pytest.mark.parametrize("function, module", [
    (F.hardsigmoid, nn.Hardsigmoid()), (torch.selu, nn.SELU()), (F.selu, nn.SELU()),
    (torch.sigmoid, nn.Sigmoid()), (F.relu6, nn.ReLU6()), (F.logsigmoid, nn.LogSigmoid()),
    (F.tanhshrink, nn.Tanhshrink()), (F.softshrink, nn.Softshrink()),
    (lambda y: F.elu(y, 2.5), nn.ELU(2.5)), (lambda y: F.leaky_relu(y, 3.0), nn.LeakyReLU(3.0)),
    (lambda y: F.celu(y, 0.5), nn.CELU(0.5))],
    ids=["hardsigmoid", "torch.selu", "F.selu", "sigmoid", "relu6", "logsigmoid", "tanhshrink",
         "softshrink", "elu", "leaky_relu", "celu"])
def test_functions_and_modules_get_one_constant(function, module):
    """The function called in forward gets exactly the constant of its module in a chain
    (SELU's is scale * alpha = 1.75810 rounded up to 1.7581, which no sampled slope shows)."""
    by_function = sct.lipschitz_report(_Call(function).eval(), (1,))
    chain = _Call(lambda y: y)
    by_module = sct.lipschitz_report(nn.Sequential(chain.linear, module).eval(), (1,))
    assert by_function.over_graph and not by_module.over_graph
    assert by_function.network_upper == pytest.approx(by_module.network_upper, rel=1e-12)
    if isinstance(module, nn.SELU):
        assert by_function.network_upper >= 1.0507009873554804934 * 1.6732632423543772848


@pytest.mark.parametrize("module, constant", [
    (nn.LeakyReLU(-2.0), 2.0), (nn.ELU(-3.0), 3.0), (nn.LeakyReLU(0.1), 1.0)])
def test_negative_slopes_count_their_modulus(module, constant):
    """LeakyReLU and ELU with a negative slope or alpha (PyTorch takes them): max(1, |slope|),
    not max(1, slope); the gradient at a negative input is a lower bound of the constant."""
    model = nn.Sequential(_Call(lambda y: y).linear, module).eval()
    report = sct.lipschitz_report(model, (1,))
    assert report.network_upper == pytest.approx(constant, rel=1e-12)
    x = torch.full((1, 1), -1e-9, dtype=F64, requires_grad=True)
    (gradient,) = torch.autograd.grad(model(x).sum(), x)
    assert abs(float(gradient)) <= report.network_upper * (1 + 1e-9)


class _CatTiny(nn.Module):
    """``cat([x, c x])``, a linear map of norm exactly ``sqrt(1 + c^2)``, above 1 by
    ``c^2 / 2``, far below float64's spacing at 1: only a square root rounded up keeps the
    bound above 1."""

    def forward(self, x):
        return torch.cat([x, x * 2.0 ** -40], dim=1)


def test_square_roots_round_up():
    report = sct.lipschitz_report(_CatTiny().eval(), (3,))
    assert report.over_graph and report.network_upper is not None, report.reason
    assert Fraction(report.network_upper) ** 2 >= 1 + Fraction(1, 2 ** 80)
    from sparseconv._torch_graph_rules import _sqrt_up
    for value in (Fraction(2), Fraction(1, 3), 1 + Fraction(1, 2 ** 80), Fraction(10 ** 40 + 1),
                  Fraction(1, 10 ** 40 + 7)):
        assert _sqrt_up(value) ** 2 >= value


class _PReLUCall(nn.Module):
    """``F.prelu(linear(x), weight)`` by a parameter: torch.fx records ``(x, weight)``
    positionally."""

    def __init__(self, slope: float):
        super().__init__()
        self.linear = _Call(lambda y: y, 2).linear
        self.weight = nn.Parameter(torch.tensor([slope], dtype=F64))

    def forward(self, x):
        return F.prelu(self.linear(x), self.weight)


@pytest.mark.parametrize("slope", [-3.0, 0.25])
def test_functional_prelu_reads_its_weight(slope):
    report = sct.lipschitz_report(_PReLUCall(slope).eval(), (2,))
    assert report.over_graph and report.network_upper is not None, report.reason
    assert report.network_upper == pytest.approx(max(1.0, abs(slope)), rel=1e-12)


class _AddAlpha(nn.Module):
    """``x + alpha * linear(x)`` with a negative ``alpha`` and ``linear = -I``: the map
    ``(1 - alpha) I``, of norm ``1 + |alpha|`` (also ``torch.sub`` with ``alpha``)."""

    def __init__(self, alpha: float, sub: bool = False):
        super().__init__()
        self.alpha, self.sub = alpha, sub
        self.linear = _Call(lambda y: y, 3).linear
        with torch.no_grad():
            self.linear.weight.mul_(-1.0 if not sub else 1.0)

    def forward(self, x):
        if self.sub:
            return torch.sub(x, self.linear(x), alpha=self.alpha)
        return torch.add(x, self.linear(x), alpha=self.alpha)


@pytest.mark.parametrize("alpha, sub", [(-2.0, False), (-2.0, True), (-0.5, False)])
def test_sums_with_a_negative_alpha(alpha, sub):
    model = _AddAlpha(alpha, sub).eval()
    report = sct.lipschitz_report(model, (3,))
    assert report.over_graph and report.network_upper is not None, report.reason
    x = torch.zeros((1, 3), dtype=F64)
    jacobian = torch.autograd.functional.jacobian(model, x).reshape(3, 3)
    exact = float(np.linalg.norm(jacobian.numpy(), 2))
    assert exact == pytest.approx(1 + abs(alpha))
    assert exact <= report.network_upper * (1 + 1e-12)


def _exact_norm(model: nn.Module, n: int) -> float:
    """The norm of a linear model's Jacobian (its matrix) at 0, one sample of ``n`` features."""
    x = torch.zeros((1, n), dtype=F64)
    jacobian = torch.autograd.functional.jacobian(model, x)
    return float(np.linalg.norm(jacobian.reshape(-1, n).numpy(), 2))


@pytest.mark.parametrize("function, norm", [
    (lambda y: y * -3.0, 3.0), (lambda y: -2.5 * y, 2.5), (lambda y: torch.mul(y, -4.0), 4.0),
    (lambda y: y + (-2.0) * y, 1.0), (lambda y: y - y * -1.5, 2.5)],
    ids=["y*-3", "-2.5*y", "mul-4", "y-2y", "y+1.5y"])
def test_products_by_negative_numbers(function, norm):
    model = _Call(function, 3).eval()
    report = sct.lipschitz_report(model, (3,))
    assert report.over_graph and report.network_upper is not None, report.reason
    exact = _exact_norm(model, 3)
    assert exact == pytest.approx(norm)
    assert exact <= report.network_upper * (1 + 1e-12)


@pytest.mark.parametrize("function, norm", [
    (lambda y: y.repeat(1, 4), 2.0), (lambda y: torch.tile(y, (1, 2)), math.sqrt(2)),
    (lambda y: y[:, None, :].repeat(1, 3, 1), math.sqrt(3)),
    (lambda y: y.unsqueeze(1).expand(-1, 4, -1).reshape(y.shape[0], -1) + 0.0, 2.0)],
    ids=["repeat", "tile", "repeat-3d", "expand"])
def test_repeats_count_their_copies(function, norm):
    model = _Call(function, 3).eval()
    report = sct.lipschitz_report(model, (3,))
    exact = _exact_norm(model, 3)
    assert exact == pytest.approx(norm)
    if "expand" in report.reason:  # (no rule for expand: refused, by name)
        assert report.network_upper is None
        return
    assert report.network_upper is not None, report.reason
    assert exact <= report.network_upper * (1 + 1e-12)


class _SplitOverlapping(nn.Module):
    """``tensor_split(x, [-1, 2])`` on 4 features: ``x[:, :3]``, ``x[:, 3:2]`` (empty) and
    ``x[:, 2:]``, which overlap at feature 2 (a map of norm sqrt 2) although the indices
    increase: a negative index counts from the end."""

    def forward(self, x):
        return torch.tensor_split(x * 1.0, [-1, 2], dim=1)


def test_tensor_split_by_negative_indices_is_no_partition():
    model = _SplitOverlapping().eval()
    report = sct.lipschitz_report(model, (4,))
    with torch.no_grad():  # the linear map's matrix, column by column
        columns = [torch.cat([p.reshape(-1) for p in model(e[None])])
                   for e in torch.eye(4)]
    exact = float(np.linalg.norm(torch.stack(columns, 1).double().numpy(), 2))
    assert exact == pytest.approx(math.sqrt(2), rel=1e-6)
    assert report.network_upper is None or exact <= report.network_upper * (1 + 1e-12)


class _OtherSample(nn.Module):
    """``y + y[0:1]``: every sample's output reads the first sample's."""

    def __init__(self):
        super().__init__()
        self.linear = _Call(lambda y: y, 3).linear

    def forward(self, x):
        y = self.linear(x)
        return y + y[0:1]


def test_a_slice_of_the_batch_axis_is_refused():
    """The bound is of one sample's map; ``y[0:1]`` mixes the first sample into the others
    (on a batch of 10 the forward's Jacobian has norm above the 1 + sqrt 2 that a bound
    over the probe's batch of two would give)."""
    model = _OtherSample().eval()
    report = sct.lipschitz_report(model, (3,))
    assert report.network_upper is None
    assert "batch" in report.reason
    x = torch.zeros((10, 3), dtype=F64)  # the forward on a batch of 10, a linear map
    jacobian = torch.autograd.functional.jacobian(model, x).reshape(30, 30)
    assert np.linalg.norm(jacobian.numpy(), 2) > 1 + math.sqrt(2)


class _HalfSum(nn.Module):
    """``linear(x).sum(1, dtype=torch.float16)``: float16 overflows beyond 65504, a jump to
    infinity that no Lipschitz constant bounds."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(2))

    def forward(self, x):
        return self.linear(x).sum(1, keepdim=True, dtype=torch.float16)


def test_a_reduction_to_float16_is_refused():
    model = _HalfSum().eval()
    report = sct.lipschitz_report(model, (2,))
    with torch.no_grad():
        near, far = model(torch.tensor([[30000.0, 30000.0], [40000.0, 40000.0]]))
    assert math.isfinite(float(near)) and math.isinf(float(far))  # a jump to infinity
    assert report.network_upper is None, report.network_upper


class _TwoSignalsIntoOneModule(nn.Module):
    """``PairwiseDistance(y, 10 y)`` = 9 |y| (plus eps): a module read with two values of the
    signal; a constant given for the module cannot stand for the second input's scale."""

    def __init__(self):
        super().__init__()
        self.linear = _Call(lambda y: y, 3).linear
        self.dist = nn.PairwiseDistance()

    def forward(self, x):
        y = self.linear(x)
        return self.dist(y, 10.0 * y)[:, None]


def test_a_module_of_two_signal_inputs_is_refused():
    model = _TwoSignalsIntoOneModule().eval()
    report = sct.lipschitz_report(model, (3,), lipschitz_constants={"dist": 1.0})
    x = torch.tensor([[1.0, 2.0, 2.0]], dtype=F64)
    with torch.no_grad():
        ratio = float((model(x) - model(2 * x)).abs().max() / (x - 2 * x).norm())
    assert ratio == pytest.approx(9.0, rel=1e-4)
    assert report.network_upper is None or ratio <= report.network_upper


class _HugeResidual(nn.Module):
    """``x + linear(x)`` whose linear layer's norm overflows float64: its row's upper bound
    is infinite, and the bound over the graph is withheld (not an exception)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False, dtype=F64)
        with torch.no_grad():
            self.linear.weight.fill_(1.5e308)

    def forward(self, x):
        return x + self.linear(x)


def test_an_infinite_row_withholds_the_graph_bound():
    with pytest.warns(RuntimeWarning, match="over the largest float64"):
        report = sct.lipschitz_report(_HugeResidual().eval(), (2,))
    assert report.network_upper is None
    assert "no finite upper bound" in report.reason


class _RepeatByTheBatch(nn.Module):
    """A repeat whose count is computed from the batch size: no count written in the
    forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x).repeat(1, 1, x.shape[0] + 1)


def test_a_repeat_by_a_computed_count_is_refused_not_raised():
    """A mutant this catches (a refusal-deletion sweep): _torch_graph_rules.py: ``_repeated``'s
    ``return f"repeats by {exc}"`` deleted, which raised an ``UnboundLocalError`` out of
    ``lipschitz_report`` instead of refusing the bound."""
    report = sct.lipschitz_report(_RepeatByTheBatch().double().eval(), (1, 5))
    assert report.network_upper is None
    assert "repeats by counts (1, 1, add) that are no non-negative integers" in report.reason, (
        report.reason)


class _Reinterpreted(nn.Module):
    """A float64 signal's bits read as float32 (``view(dtype)``: twice the entries, no
    conversion), then cast back: no Lipschitz constant at all."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x).view(torch.float32).double()


def test_a_signal_reinterpreted_as_another_floating_dtype_has_no_bound():
    """A mutant this catches (a refusal-deletion sweep): _torch_graph_rules.py: ``_kept``'s
    ``return "changes the signal's dtype"`` deleted: a view of float64 entries as float32
    ones kept its input's bound, 0.86, for a map whose difference quotient at a 1e-12 step
    is above 1e15 (to int32 a later rule refuses the integer signal; to float32 none did)."""
    torch.manual_seed(0)
    model = _Reinterpreted().double().eval()
    report = sct.lipschitz_report(model, (1, 4))
    x = torch.randn(1, 1, 4, dtype=F64)
    step = torch.zeros_like(x)
    step[0, 0, 1] = 1e-12
    quotient = float((model(x + step) - model(x)).norm() / step.norm())
    assert quotient > 1e6
    assert report.network_upper is None or report.network_upper >= quotient, report
    assert "changes the signal's dtype" in report.reason, report.reason


# A refusal-deletion sweep of _torch_graph_rules.py (2026-12-06, a helper's): each test below
# fails on a mutant that deletes one refusal (``return "<reason>"`` made ``pass``, named by
# "Mutant:") which every other test let pass: a crash of lipschitz_report on a valid model
# (whose output is finite), or a network bound below a lower bound of the Lipschitz constant
# (an autograd Jacobian's norm, or a difference quotient across a jump).


class _CallWith(_Call):
    """``function(linear(x), t)``: :class:`_Call` with a buffer ``t`` passed on too."""

    def __init__(self, function, n: int, t: torch.Tensor | None = None):
        super().__init__(function, n)
        self.register_buffer("t", torch.zeros(1, dtype=F64) if t is None else t)

    def forward(self, x):
        return self.function(self.linear(x), self.t)


def _graph_report(model: nn.Module, n: int, **options):
    return sct.lipschitz_report(model.eval(), (n,), **options)


def _difference_quotient(model: nn.Module, a, b) -> float:
    """``|f(a) - f(b)| / |a - b|``: a lower bound of the Lipschitz constant."""
    a, b = (torch.tensor([v], dtype=F64) for v in (a, b))
    with torch.no_grad():
        return float((model(a) - model(b)).norm() / (a - b).norm())


def _assert_refused(report, text: str) -> None:
    assert report.network_upper is None and not report.over_graph
    assert text in report.reason, report.reason


def _assert_sound(report, true: float) -> None:
    assert report.network_upper is None or report.network_upper >= true * (1 - 1e-9), (
        report.network_upper, true)


# --- crashes: the mutant raises on a valid model whose output is finite ---


def test_a_sum_over_an_empty_axis_into_an_empty_tensor_is_refused():
    """Mutant: without ``return "reduces over axes whose sizes are
    not known"``: ``cat([y, y.reshape(-1, 3, 1)[:, :0].sum(2)])`` (that is ``y``, constant 1)
    crashed with ZeroDivisionError (0 // 0)."""
    model = _CallWith(lambda y, t: torch.cat([y, y.reshape(-1, 3, 1)[:, :0].sum(2)], 1), 3)
    report = _graph_report(model, 3)
    _assert_refused(report, "reduces over axes whose sizes are not known")
    _assert_sound(report, jacobian_norm(model, (3,)))


def test_a_product_by_an_infinite_entry_then_dropped_is_refused():
    """Mutant: without ``return "multiplies the signal by a tensor with non-finite
    entries"``: ``(y * [1, inf])[:, :1]`` (``y[:, 0]``, constant 1) crashed with
    OverflowError (Fraction of inf)."""
    model = _CallWith(lambda y, t: (y * t)[:, :1], 2, torch.tensor([1.0, math.inf], dtype=F64))
    report = _graph_report(model, 2)
    _assert_refused(report, "non-finite entries")
    # (the map is y[:, 0])
    assert _difference_quotient(model, [0.5, 1.0], [0.25, 1.0]) == pytest.approx(1.0)


def test_a_product_of_an_empty_slice_by_a_tensor_is_refused():
    """Mutant: without ``return "multiplies operands whose sizes are not known"``:
    ``cat([y, y[:, :0] * t])`` (``y``, constant 1) crashed with ZeroDivisionError."""
    model = _CallWith(lambda y, t: torch.cat([y, y[:, :0] * t], 1), 2,
                  torch.tensor([2.0], dtype=F64))
    report = _graph_report(model, 2)
    _assert_refused(report, "sizes are not known")
    _assert_sound(report, jacobian_norm(model, (2,)))


def test_a_quotient_by_a_zero_entry_then_dropped_is_refused():
    """Mutant: without ``return "divides the signal by a tensor with a zero entry"``:
    ``(y / [0, 0.5])[:, 1:]`` (``2 y[:, 1]``, constant 2) crashed with
    ZeroDivisionError (``Fraction(1, 0)``)."""
    model = _CallWith(lambda y, t: (y / t)[:, 1:], 2, torch.tensor([0.0, 0.5], dtype=F64))
    report = _graph_report(model, 2)
    _assert_refused(report, "zero entry")
    assert _difference_quotient(model, [0.0, 1.0], [0.0, 0.5]) == pytest.approx(2.0)


def test_a_product_by_a_matrix_without_a_finite_norm_then_dropped_is_refused():
    """Mutant: without ``return found or "is not a call whose Lipschitz constant is known
    here"`` (in ``_matmul``): ``(y @ [[1, inf], [0, 0]])[:, :1]`` (``y[:, 0]``) crashed
    with TypeError (the functional's reason, a str, times a Fraction)."""
    w = torch.tensor([[1.0, math.inf], [0.0, 0.0]], dtype=F64)
    model = _CallWith(lambda y, t: (y @ t)[:, :1], 2, w)
    report = _graph_report(model, 2)
    _assert_refused(report, "finite entries")
    assert _difference_quotient(model, [0.5, 0.0], [0.25, 0.0]) == pytest.approx(1.0)


def test_a_concatenation_of_a_computed_sequence_is_refused():
    """Mutant: without ``return "concatenates a sequence the graph computes (not a list of
    tensors)"``: ``cat(y.chunk(2, 1))`` (``y``, constant 1) crashed with TypeError
    ('Node' object is not iterable)."""
    model = _CallWith(lambda y, t: torch.cat(y.chunk(2, 1), 1), 4)
    report = _graph_report(model, 4)
    _assert_refused(report, "concatenates a sequence the graph computes")
    _assert_sound(report, jacobian_norm(model, (4,)))


def test_a_sum_of_empty_slices_is_refused():
    """Mutant: without ``return "adds operands whose sizes are not known"``:
    ``cat([y, y[:, :0] + y[:, :0]])`` (``y``) crashed with ZeroDivisionError."""
    model = _CallWith(lambda y, t: torch.cat([y, y[:, :0] + y[:, :0]], 1), 3)
    report = _graph_report(model, 3)
    _assert_refused(report, "adds operands whose sizes are not known")
    _assert_sound(report, jacobian_norm(model, (3,)))


def test_a_stack_of_values_of_the_signal_is_refused():
    """Mutant: without ``return "takes the signal other than as its one input"`` (in
    ``_elementwise``): ``torch.hstack([y, 2 y])`` (constant sqrt 5) crashed with
    AttributeError (the shape of a list's meta, None). (``torch.stack``, this test's call
    before, has the concatenation's rule now.)"""
    model = _CallWith(lambda y, t: torch.hstack([y, 2 * y]), 3)
    report = _graph_report(model, 3)
    _assert_refused(report, "takes the signal other than as its one input")
    _assert_sound(report, jacobian_norm(model, (3,)))


class _SignalTwice(nn.Module):
    """``cell(h, h)``: a torch module of two arguments given one value of the signal as both,
    ``h`` the input or a Linear's output (``chain``)."""

    def __init__(self, weight: torch.Tensor, chain: bool = False):
        super().__init__()
        self.cell = nn.RNNCell(4, 4, dtype=F64)
        with torch.no_grad():
            self.cell.weight_ih.copy_(weight)
            self.cell.weight_hh.copy_(weight)
        self.first = nn.Linear(4, 4, dtype=F64) if chain else None
        if chain:
            with torch.no_grad():
                self.first.weight.copy_(torch.eye(4, dtype=F64))
                self.first.bias.zero_()

    def forward(self, x):
        h = x if self.first is None else self.first(x)
        return self.cell(h, h)


@pytest.mark.parametrize("chain", [False, True])
def test_a_module_given_the_signal_as_two_arguments_is_refused(chain):
    """A review: ``cell(x, x)`` (an ``RNNCell``, ``tanh(W x + W h + b)``), given the cell's
    true constant as a map of its two arguments, ``||[W W]||``, was bounded by it: 1.74 for
    a map of ``2 ||W||`` = 2.46 (its Jacobian where the pre-activation is zero); torch.fx
    lists a node once among a call's inputs however often its arguments name it. Refused,
    over the graph and as a chain (with ``assume_chain``, a warning says why). Mutants:
    ``signal_reads`` counting each node once (the bound returns), the chain check's count
    dropped (no warning)."""
    generator = torch.Generator().manual_seed(13)
    weight = 0.5 * torch.randn(4, 4, generator=generator, dtype=F64)
    model = _SignalTwice(weight, chain).eval()
    joint = float(torch.linalg.matrix_norm(torch.cat([weight, weight], 1), 2))
    bias = (model.cell.bias_ih + model.cell.bias_hh).detach()
    zero = torch.linalg.solve(2 * weight, -bias).reshape(1, 4)  # (pre-activation 0: tanh' = 1)
    true = jacobian_norm(model, (4,), at=zero)
    assert true == pytest.approx(2 * float(torch.linalg.matrix_norm(weight, 2)), rel=1e-9)
    assert joint < true  # (the constant given would be a false bound)
    report = _graph_report(model, 4, lipschitz_constants={"RNNCell": joint})
    _assert_refused(report, "takes the signal other than as its one input")
    if chain:
        with pytest.warns(RuntimeWarning, match="calls module 'cell' with its signal as two "
                          "arguments"):
            sct.lipschitz_report(model, (4,), lipschitz_constants={"RNNCell": joint},
                                 assume_chain=True)


class _ExpandedParameter(nn.Module):
    """A module of two arguments, the second a parameter expanded to the batch."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4, dtype=F64)
        self.bil = nn.Bilinear(4, 3, 4, dtype=F64)
        self.z = nn.Parameter(torch.randn(1, 3, dtype=F64, generator=torch.Generator(
            ).manual_seed(2)))

    def forward(self, x):
        return self.bil(self.lin(x), self.z.expand(x.shape[0], -1))


def test_a_module_given_a_constant_takes_a_tensor_expanded_to_the_batch():
    """A second review: the check of a module call's other arguments (sizes the traced
    shape fixes) refused a tensor, ``z.expand(b, -1)``, each sample's the same, where the
    code before took the constant given; tensors are read as before. The map ``h ->
    bil(h, z)`` is linear in ``h`` (``z`` fixed): its norm times the Linear's bounds it, so
    that is the constant given. Mutant: tensors checked as sizes (no bound)."""
    model = _ExpandedParameter().eval()
    bil = model.bil
    part = torch.einsum("oij,j->oi", bil.weight, model.z[0]).detach()  # (h -> bil(h, z))
    given = float(torch.linalg.matrix_norm(part, 2))
    report = sct.lipschitz_report(model, (4,), lipschitz_constants={"bil": given})
    assert report.network_upper is not None, report.reason
    _assert_sound(report, jacobian_norm(model, (4,)))


def test_a_product_of_the_signal_by_itself_is_refused():
    """``y @ y`` (one node, both operands) crashed with AttributeError (``ndim`` of a torch.fx
    Node), then was refused as a product by a matrix that is no constant tensor; now as
    reading the signal twice (``signal_reads``)."""
    model = _CallWith(lambda y, t: y @ y, 3)
    report = sct.lipschitz_report(model.eval(), (3, 3))
    _assert_refused(report, "multiplies two values of the signal")
    _assert_sound(report, jacobian_norm(model, (3, 3), at=torch.ones(1, 3, 3, dtype=F64)))


# --- wrong results: the mutant's bound is below the true constant ---


def test_a_float32_quotient_by_a_big_integer_is_refused():
    """Mutant: without ``return "divides the signal by a tensor that is not real
    floating"``: ``(y.float() / (2**24 + 1)).double()``, the integer rounded by torch to
    float32's 2**24, has constant 2**-24 = 5.9604645e-08; the mutant gave 5.9604641e-08
    (``1 / (2**24 + 1)``, the integer read in float64)."""
    model = _CallWith(lambda y, t: (y.float() / t).double(), 2, torch.tensor([2 ** 24 + 1]))
    report = _graph_report(model, 2)
    true = jacobian_norm(model, (2,))
    assert true == 2.0 ** -24
    _assert_sound(report, true)
    _assert_refused(report, "not real floating")


def test_a_piece_chosen_by_the_signal_is_refused():
    """Mutant: without ``return "takes a piece of a partition by a computed index"``:
    ``y.chunk(2, 1)[k]``, ``k`` 1 where every sample sums above 0 and 0 else, jumps from
    ``y[:, :2]`` to ``y[:, 2:]``: no Lipschitz constant (a quotient of about 1400 across
    the jump); the mutant gave 1."""
    model = _CallWith(lambda y, t: y.chunk(2, 1)[(y.sum(1) > 0).all().long()], 4)
    report = _graph_report(model, 4)
    jump = _difference_quotient(model, [1.0, 1.0, -1.0, -1.001], [1.0, 1.0, -1.0, -0.999])
    assert jump > 1000
    _assert_sound(report, jump)
    _assert_refused(report, "by a computed index")


def test_a_given_constant_of_a_call_copying_entries_unevenly_is_refused():
    """Mutant: without ``return "broadcasts the signal to a shape that is no whole number of
    copies of it"``: ``take_along_dim(y, [[0, 1, 1]])`` (the second entry twice: constant
    sqrt 2), given 1, got 1 (``sqrt(3 // 2)`` copies). (``repeat_interleave``, this test's
    call before, has a rule of its own now, which counts its copies.)"""
    model = _CallWith(lambda y, t: torch.take_along_dim(y, torch.tensor([[0, 1, 1]]), dim=1),
                      2)
    report = _graph_report(model, 2, lipschitz_constants={"take_along_dim": 1.0})
    true = jacobian_norm(model, (2,))
    assert true == pytest.approx(math.sqrt(2))
    _assert_sound(report, true)
    _assert_refused(report, "no whole number of copies")


# The same sweep of _torch_graph_bound.py's refusals (15 mutants, 13 killed by the tests):
# the two the tests let pass.


class _AliasedAdd(nn.Module):
    """``t = y; t += 10 relu(y - 1e6); return y``: in place, so the model returns ``y + 10
    relu(y - 1e6)`` (constant 11 beyond 1e6), while torch.fx records ``t + ...`` as a new
    value that nothing reads and returns ``y`` itself; on the probes the two agree."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3, bias=False, dtype=F64)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3, dtype=F64))

    def forward(self, x):
        y = self.linear(x)
        t = y
        t += 10 * torch.relu(y - 1e6)
        return y


def test_an_in_place_change_the_graph_records_as_an_unread_value_is_refused():
    """A mutant this catches (a refusal-deletion sweep): _torch_graph_bound.py: the refusal
    of a node that computes a value nothing reads, deleted: the bound over the graph was 1.0
    for a model whose Jacobian at 2e6 has norm 11."""
    model = _AliasedAdd().eval()
    report = sct.lipschitz_report(model, (3,))
    true = jacobian_norm(model, (3,), at=torch.full((1, 3), 2e6, dtype=F64))
    assert true == pytest.approx(11.0)
    _assert_sound(report, true)
    _assert_refused(report, "computes a value nothing reads")


class _ImaginaryTanhModule(nn.Module):
    """``nn.Tanh()(i y)`` of a real ``y``: ``i tan(y)``, whose derivative at 1.5 is ``1 /
    cos(1.5)^2``, about 200, where the module's known constant (the real function's) is 1."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1, bias=False, dtype=F64)
        self.act = nn.Tanh()
        with torch.no_grad():
            self.linear.weight.fill_(1.0)
        self.register_buffer("i", torch.tensor([1j], dtype=torch.complex128))

    def forward(self, x):
        return self.act(self.linear(x).to(torch.complex128) * self.i)


def test_an_activation_module_on_a_complex_signal_returned_as_is_is_refused():
    """A mutant this catches (a refusal-deletion sweep): _torch_graph_bound.py:
    ``_signal_refusal``'s refusal of a complex signal into one of torch's activation modules,
    deleted: with the complex output returned as it is (no ``view_as_real``, whose own
    refusal hid it), the bound was 1.0 for a derivative of about 200."""
    model = _ImaginaryTanhModule().eval()
    report = sct.lipschitz_report(model, (1,))
    x = torch.tensor([[1.5]], dtype=F64)
    true = jacobian_norm(lambda v: torch.view_as_real(model(v)), (1,), at=x)
    assert true == pytest.approx(1 / math.cos(1.5) ** 2)
    _assert_sound(report, true)
    _assert_refused(report, "takes a complex signal")


class _FunctionalConv(nn.Module):
    """A convolution by a functional call, whose weight no module holds."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return F.conv2d(x, self.w, padding=1)


def test_a_functional_layer_whose_norm_the_memory_limit_refuses_is_said(memory_limit):
    """The bound over the graph of ``F.conv2d(x, w)`` under a memory limit that refuses the
    layer's norm (not the probe) says so; under 1 GiB it has one. A mutant this
    catches: _torch_chain.py: that refusal (``is linear, but its norm's memory is refused``)
    deleted: the report raised UnboundLocalError."""
    memory_limit(8192)
    report = sct.lipschitz_report(_FunctionalConv().eval(), (2, 8, 8))
    assert report.network_upper is None
    assert "node 'conv2d' (call_function conv2d) is linear, but its norm's memory is refused" in (
        report.reason)
    memory_limit(2**30)
    assert sct.lipschitz_report(_FunctionalConv().eval(), (2, 8, 8)).network_upper is not None


class _GlobalContext(nn.Module):
    """A global-context block, linear: the mean over the image, transformed, added back to
    every pixel by ``expand_as`` (``how``), by ``view_as`` after a flatten, or by
    broadcasting (the same map)."""

    def __init__(self, how: str):
        super().__init__()
        self.t = nn.Conv2d(3, 3, 1, dtype=F64)
        self.how = how

    def forward(self, x):
        g = self.t(x.mean((2, 3), keepdim=True))
        if self.how == "expand_as":
            return x + g.expand_as(x)
        if self.how == "view_as":
            return (x.flatten(1) + g.expand_as(x).flatten(1)).view_as(x)
        return x + g


@pytest.mark.parametrize("how", ["expand_as", "view_as"])
def test_expand_as_and_view_as_a_signal_read_its_shape_alone(how):
    """A new user's trial: ``x + t(x.mean(...)).expand_as(x)`` was refused by both as
    taking the signal twice, where the broadcast form was bounded. Now: the operator is the
    Jacobian, and the bound is the broadcast form's (each entry of the mean copied to every
    pixel, ``sqrt(64)`` times the transform's norm), above the exact norm."""
    torch.manual_seed(0)
    model, broadcast = _GlobalContext(how).eval(), _GlobalContext("broadcast").eval()
    broadcast.load_state_dict(model.state_dict())
    shape = (3, 8, 8)
    jacobian = jacobian_matrix(model, shape)
    np.testing.assert_allclose(sct.network_operator(model, shape).affine().matrix.toarray(),
                               jacobian, rtol=0, atol=1e-12)
    report = sct.lipschitz_report(model, shape)
    assert report.over_graph, report.reason
    assert report.network_upper == pytest.approx(
        sct.lipschitz_report(broadcast, shape).network_upper, rel=1e-12)
    assert float(np.linalg.norm(jacobian, 2)) <= report.network_upper


class _BufferDraw(nn.Module):  # a random draw on buffers alone, run once by torch.fx's tracer
    def __init__(self):
        super().__init__()
        self.register_buffer("n", torch.ones(3, dtype=F64))
        self.register_buffer("p", torch.full((3,), 0.01, dtype=F64))

    def forward(self, x):
        return x * (1 + 1000 * torch.binomial(self.n, self.p))


def test_a_random_draw_on_buffers_is_refused():
    """A review: ``torch.binomial(self.n, self.p)`` on buffers alone is computed by torch.fx
    when it traces (a buffer is a tensor to it, not a node), its draw baked into the graph:
    certified 1.0 where 27 calls in 2,000 had a quotient of 1001. A mutant this catches:
    _torch_probe.py: ``fx_trace``'s refusal of a draw it ran deleted."""
    report = sct.lipschitz_report(_BufferDraw().eval(), (3,))
    assert report.network_upper is None
    assert "draws random numbers (aten.binomial.default) from values of its own" in (
        report.reason), report.reason


class _GradModeWrite(nn.Module):  # kept is y: changed in place only with autograd on
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4, bias=False, dtype=F64)

    def forward(self, x):
        y = self.lin(x)
        kept = y
        if torch.is_grad_enabled():
            y += 5 * x
        return kept


def test_an_unread_value_is_kept_where_a_write_runs_with_autograd_on_alone():
    """A second review: torch.fx traces with autograd on, and records ``y += 5 x`` as a value
    nothing reads; the check for in-place writes ran under ``no_grad`` alone, saw none, and
    the bound was ``||lin||`` (0.69) for a map of 5.45 in normal use. A mutant this catches:
    _torch_probe.py: ``first_write``'s run with autograd on dropped."""
    torch.manual_seed(0)
    model = _GradModeWrite().eval()
    report = sct.lipschitz_report(model, (4,))
    assert report.network_upper is None
    assert "the forward changes a tensor in place (aten.add_.Tensor)" in report.reason, (
        report.reason)
    with pytest.raises(TypeError, match=r"changes a tensor in place \(aten.add_.Tensor\)"):
        sct.network_operator(model, (4,))


class _InferenceFastPath(nn.Module):  # another map under torch.inference_mode()
    def __init__(self, relu: bool = True, fast: bool = True, large: bool = False):
        super().__init__()
        self.c, self.relu, self.fast = nn.Conv1d(2, 2, 3, padding=1, dtype=F64), relu, fast
        self.large = large  # (only on inputs beyond 10: a review of the fix)

    def forward(self, x):
        y = self.c(x)
        if torch.is_inference_mode_enabled() and self.fast and (
                not self.large or x.abs().max() > 10):  # (a deployment's rescaling)
            y = y * 100.0
        return torch.relu(y) + y if self.relu else y


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("inside", [False, True])
def test_a_forward_that_reads_inference_mode_has_no_bound_nor_operator(inside, large):
    """A fifth review: the probes run outside ``torch.inference_mode()`` (also when called
    inside it); a forward branching on ``torch.is_inference_mode_enabled()`` was bounded by
    2.01 for a map of at least 133 there, and ``network_operator`` gave the other branch
    (112.6 apart). Refused, saying why, whether called in the mode or not; the same model
    without the branch keeps its bound. A mutant this catches: _torch_probe.py:
    ``inference_mode_change`` returning ``""``."""
    model = _networks.randomize(_InferenceFastPath(large=large), seed=2).eval()
    mode = torch.inference_mode() if inside else contextlib.nullcontext()
    with mode:
        report = sct.lipschitz_report(model, (2, 8))
    assert report.network_upper is None
    assert "_InferenceFastPath computes otherwise under torch.inference_mode() than outside " \
           "it (its forward reads the mode" in report.reason, report.reason
    with mode, pytest.raises(TypeError, match=r"network_operator: _InferenceFastPath computes "
                                              r"otherwise under torch.inference_mode\(\)"):
        sct.network_operator(_InferenceFastPath(relu=False, large=large).eval(), (2, 8))
    model.fast = False  # (the check passes the model without its branch)
    with mode:
        assert sct.lipschitz_report(model, (2, 8)).network_upper is not None
        sct.network_operator(_InferenceFastPath(relu=False, fast=False).eval(), (2, 8))


def test_random_draws_are_known_by_their_names():
    """A second review: a SobolEngine's ``aten::_sobol_engine_draw`` passed the names of
    random draws; deterministic functions whose names hold such a part are none."""
    from sparseconv._torch_probe import draws_random

    for name in ("randn", "aten::randint.low", "randperm", "aten::_sobol_engine_draw",
                 "aten::_standard_gamma", "binomial", "normal_", "aten::bernoulli_.float",
                 "multinomial", "aten::poisson"):
        assert draws_random(name), name
    for name in ("lgamma", "digamma", "batch_norm", "native_layer_norm", "narrow", "relu",
                 "aten::conv2d", "normalize", "aten::grid_sampler"):
        assert not draws_random(name), name
