"""The calls of an eager model's modules of the user's classes, given their constants, made
whole in the bound over its graph (sparseconv._torch_whole_calls): where torch.fx shows that
a call reads its one argument and constants alone and leaves nothing else, and not where it
reads or leaves more (each such model's bound, if any, checked against the network's measured
slopes)."""

from __future__ import annotations

import re
import warnings

import pytest

from . import _networks
from ._oracles import torch

nn = torch.nn
sct = pytest.importorskip("sparseconv.torch")
F64 = torch.float64
SHAPE = (2, 6, 6)
_STATE: dict = {}


class _Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class _Stores(nn.Module):
    """The identity, leaving its input in a global dict."""

    def forward(self, x):
        _STATE["x"] = x
        return x


class _TimesTheStore(nn.Module):
    """``tanh(x)`` times what ``_Stores`` left: 1-Lipschitz in ``x`` for a fixed store, but
    ``tanh(x) * x`` in the network, where the store is ``x`` itself (a second review's
    model: the same tensor as the argument, so that two probes agreed; 1.0 for 2e4)."""

    def forward(self, x):
        return torch.tanh(x) * _STATE["x"]


class _Leaves(nn.Module):
    """``tanh(x)``, leaving ``10 x`` in a global dict that the next module adds."""

    def forward(self, x):
        _STATE["u"] = 10 * x
        return torch.tanh(x)


class _AddsTheLeft(nn.Module):
    def forward(self, x):
        return x + _STATE["u"]


class _CallsAnother(nn.Module):
    """``tanh`` of another module of the model, held in a list (no submodule)."""

    def __init__(self, other: nn.Module):
        super().__init__()
        self.other = [other]

    def forward(self, x):
        return torch.tanh(self.other[0](x))


class _Draws(nn.Module):
    def forward(self, x):
        return torch.tanh(x) * torch.rand_like(x)


class _Pair(nn.Module):
    def forward(self, x):
        return torch.tanh(x), x


class _ScalesItsInput(nn.Module):
    """``tanh(x)``, its input scaled by ten in place afterwards (read again by the model)."""

    def forward(self, x):
        y = torch.tanh(x)
        x.mul_(10)
        return y


class _Net(nn.Module):
    """``conv2(act(conv1(x))) + x``, or the forward ``body`` of the modules ``parts``."""

    def __init__(self, parts: dict, body=None):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
        with torch.no_grad():
            self.conv1.weight.mul_(5)
        for name, part in parts.items():
            setattr(self, name, part)
        self.body = body

    def forward(self, x):
        return self.body(self, x)


def _report(model: nn.Module, given: dict):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = sct.lipschitz_report(model, SHAPE, lipschitz_constants=given)
    return report, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_a_call_reading_its_argument_alone_is_an_activation_of_its_constant():
    """Called twice, on a value of the signal and on a parameter (a constant): both calls
    whole, the first counted with its constant, the second a constant."""
    torch.manual_seed(0)
    model = _Net({"act": _Swish()}, lambda m, x: m.conv2(m.act(m.conv1(x)) * m.act(
        m.conv1.weight.sum())) + x).eval()
    report, said = _report(model, {"act": 1.1})
    assert not said and report.over_graph, (said, report.reason)
    with torch.no_grad():
        scale = abs(float(model.act(model.conv1.weight.sum())))
    expected = 1 + report["conv2"]["upper"] * scale * 1.1 * report["conv1"]["upper"]
    assert report.network_upper == pytest.approx(expected, rel=1e-12)
    assert report.network_upper >= _networks.largest_ratio(model, SHAPE)


@pytest.mark.parametrize("case, why", [
    ("store", r"3 \(_TimesTheStore\), of a class of yours: its constant unused.*which reads "
              r"'conv1', a value computed from the input other than its argument"),
    ("leave", r"3 \(_Leaves\), of a class of yours: its constant unused.*which leaves 'mul', "
              r"a value computed from the input, to the rest of the forward"),
    ("calls", r"its constant unused.*which calls the model's module 'conv2'"),
    ("draws", r"its constant unused.*which makes node 'rand_like', which draws random"),
    ("pair", r"its constant unused.*which returns no single value it computes"),
    ("twice", r"its constant unused.*which is called with 2 arguments"),
])
def test_a_call_reading_or_leaving_more_than_its_argument_is_followed(case, why):
    """Made whole, each of these would take the constant given (true of the module as a map
    of its one argument) for a map that reads or leaves more: the store is the argument
    itself (``tanh(x) * x``), ``10 x`` left to the next module, a convolution called inside,
    a random draw, a second output, a second call with another argument (both calls of a
    module follow, or neither: the graph counts them as the trace does). Each is followed,
    and said so; the bound, where there is one, is above the measured slopes."""
    torch.manual_seed(0)
    parts = {"0": _Stores(), "3": _TimesTheStore(), "4": _Leaves(), "5": _AddsTheLeft()}
    model = {
        "store": _Net(parts, lambda m, x: m.conv2(getattr(m, "3")(getattr(m, "0")(
            m.conv1(x)))) + x),
        "leave": _Net({"3": _Leaves(), "5": _AddsTheLeft()}, lambda m, x: m.conv2(getattr(
            m, "5")(getattr(m, "3")(m.conv1(x)))) + x),
        "calls": _Net({}, lambda m, x: m.act(m.conv1(x)) + x),
        "draws": _Net({"act": _Draws()}, lambda m, x: m.conv2(m.act(m.conv1(x))) + x),
        "pair": _Net({"act": _Pair()}, lambda m, x: m.conv2(m.act(m.conv1(x))[0]) + x),
        "twice": _Net({"act": _TwoCalls()}, lambda m, x: m.conv2(m.act(m.act(m.conv1(x)),
                                                                          10.0)) + x),
    }[case]
    if case == "calls":
        model.act = _CallsAnother(model.conv2)
    report, said = _report(model.eval(), {"3" if case in ("store", "leave") else "act": 1.0})
    assert any(re.search(why, text) for text in said), said
    largest = _networks.largest_ratio(model, SHAPE)
    if case != "draws":
        assert report.network_upper is None or report.network_upper >= largest, report.reason


class _TwoCalls(nn.Module):
    """``tanh(x)``, times ``s`` where it is given."""

    def forward(self, x, s=None):
        return torch.tanh(x) if s is None else torch.tanh(x) * s


def test_a_call_changing_its_argument_in_place_gets_no_bound_below_the_slopes():
    """Made whole, a call that scales its input in place afterwards leaves the model reading
    the changed input (``x + act(x)`` is ``10 x + tanh(x)``): the graph's run sees the read
    of a changed tensor, and there is no bound."""
    torch.manual_seed(0)
    model = _Net({"act": _ScalesItsInput()}, lambda m, x: (lambda y: m.conv2(m.act(y)) + y)(
        m.conv1(x))).eval()
    report, _ = _report(model, {"act": 1.0})
    largest = _networks.largest_ratio(model, SHAPE)
    assert report.network_upper is None or report.network_upper >= largest, report.reason
