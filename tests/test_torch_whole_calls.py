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
F = torch.nn.functional
sct = pytest.importorskip("sparseconv.torch")
F64 = torch.float64
SHAPE = (2, 6, 6)
_STATE: dict = {}


class _Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class _TanhOfSwish(nn.Module):
    """``tanh(x * sigmoid(x))``: the product inside, no rule's, is not the output."""

    def forward(self, x):
        return torch.tanh(x * torch.sigmoid(x))


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
    whole, the first counted with its constant, the second a constant; the nodes inside,
    a product of two signals among them, not bounded one by one."""
    torch.manual_seed(0)
    model = _Net({"act": _TanhOfSwish()}, lambda m, x: m.conv2(m.act(m.conv1(x)) * m.act(
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


def _local_ratio(model: nn.Module, shape: tuple, pairs: int = 200) -> float:
    """The largest ``||f(x + d) - f(x)|| / ||d||`` over random points and small steps ``d``:
    a lower bound of the Lipschitz constant where the slope is local (a counter's
    ``tanh(x) * k``)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = torch.randn((pairs, *shape), dtype=F64, generator=generator)
        d = 1e-3 * torch.randn((pairs, *shape), dtype=F64, generator=generator)
        ratio = (model(x + d) - model(x)).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
    return float(ratio.max())


class _IntoTheStore(nn.Module):
    """``x``, copied into another module's tensor attribute (no buffer) on the way."""

    def __init__(self, holder: nn.Module):
        super().__init__()
        self.holder = [holder]

    def forward(self, x):
        torch.narrow(self.holder[0].store, 0, 0, x.shape[0]).copy_(x)
        return x * 1.0


class _PlusTheStore(nn.Module):
    """``tanh(x) + 10 store``, the store cleared after."""

    def __init__(self):
        super().__init__()
        self.store = torch.zeros(512, *SHAPE, dtype=F64)

    def forward(self, x):
        out = torch.tanh(x) + 10 * torch.narrow(self.store, 0, 0, x.shape[0])
        self.store.zero_()
        return out


class _LeavesIt(nn.Module):
    def forward(self, x):
        _STATE["ctx"] = x
        return x * 1.0


class _PlusWhatIsLeft(nn.Module):
    """``tanh(x)``, plus ten times what ``_LeavesIt`` left where it is a tensor: a Proxy, no
    tensor, while torch.fx traces, so that the trace differs from the run."""

    def forward(self, x):
        out, left = torch.tanh(x), _STATE.get("ctx")
        if isinstance(left, torch.Tensor):
            out = out + 10 * left
        return out


@torch.fx.wrap
def _stash(x):
    _STATE["w"] = x
    return x


@torch.fx.wrap
def _stashed(x):
    return _STATE["w"]


class _Stashes(nn.Module):
    def forward(self, x):
        _stash(x)
        return x * 1.0


class _PlusTheStashed(nn.Module):
    def forward(self, x):
        return torch.tanh(x) + 10 * _stashed(x)


class _Counted(nn.Module):
    """``tanh(x) * k``, ``k`` counting its calls from the model's state (0): ``tanh`` at the
    first."""

    def __init__(self):
        super().__init__()
        self.k = 0

    def forward(self, x):
        self.k += 1
        return torch.tanh(x) * self.k


class _Resets(nn.Module):
    def __init__(self, other: nn.Module):
        super().__init__()
        self.other = [other]

    def forward(self, x):
        self.other[0].k = 0
        return x * 1.0


class _PlusItsBase(nn.Module):
    """``tanh(x)`` of a tensor that is no view; of a view, plus ten times a part of the
    tensor it views."""

    def forward(self, x):
        base = x._base
        return torch.tanh(x) + (10 * base[:, 1:2] if base is not None else 0)


def _third_review(case: str) -> tuple[nn.Module, dict]:
    """A third review's models, each given true constants (for the module as a map of its
    one argument, from the model's state), each bounded 3-12 times below its slopes by a
    version that ran a call taken whole as the module's forward rather than its traced
    nodes."""
    if case == "store":
        reader = _PlusTheStore()
        return _Net({"a": _IntoTheStore(reader), "b": reader}, lambda m, x: m.b(m.conv1(
            m.a(x)))), {"a": 1.0, "b": 1.0}
    if case == "isinstance":
        return _Net({"a": _LeavesIt(), "b": _PlusWhatIsLeft()}, lambda m, x: m.b(m.conv1(
            m.a(x)))), {"a": 1.0, "b": 1.0}
    if case == "wrapped":
        return _Net({"a": _Stashes(), "b": _PlusTheStashed()}, lambda m, x: m.b(m.conv1(
            m.a(x)))), {"a": 1.0, "b": 1.0}
    if case == "counter":
        counted = _Counted()
        return _Net({"act": counted, "reset": _Resets(counted)}, lambda m, x: m.reset(m.act(
            m.act(m.act(m.conv1(x)))))), {"act": 1.0, "reset": 1.0}
    return _Net({"act": _PlusItsBase()}, lambda m, x: m.act(m.conv1(x)[:, :1])), {"act": 1.0}


@pytest.mark.parametrize("case", ["store", "isinstance", "wrapped", "counter", "base"])
def test_a_call_taken_whole_runs_its_traced_nodes_under_the_graph_s_checks(case):
    """A third review: a write into another module's tensor attribute, a forward that traces
    otherwise than it runs (``isinstance`` of a Proxy), a wrapped function reading a global,
    a counter changed by each call (``tanh(x) * k`` for k = 1, 2, 3), and ``x._base``: the
    graph runs the call's traced nodes, its checks see the write and the difference from
    the forward, a function torch.fx does not follow and an attribute past the tensor's
    metadata are refused, and calls that run other operations or constants are no one map.
    The bound, where there is one, is above the measured slopes."""
    torch.manual_seed(0)
    model, given = _third_review(case)
    report, said = _report(model.eval(), given)
    assert report.network_upper is None or report.network_upper >= _local_ratio(
        model, SHAPE), (report.network_upper, said)
    if case == "wrapped":
        assert any("calls _stash(), which is none of torch's operations" in s for s in said)
    if case == "counter":
        assert any("runs in its call 1 other operations, or on other constants, than the "
                   "module alone from the model's state" in s for s in said), said
    if case == "base":
        assert any("reads the attribute '_base'" in s for s in said), said


class _LoopsOverSizes(nn.Module):
    def forward(self, x):
        n = 1
        for s in x.size()[1:]:
            n *= s
        return x * torch.sigmoid(x)


class _BranchesOnItsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, dtype=F64))

    def forward(self, x):
        return x * torch.sigmoid(x) if self.w.shape[-1] % 2 else torch.tanh(x)


@pytest.mark.parametrize("case", ["loop", "branch", "constant", "keyword"])
def test_a_call_taken_whole_may_read_sizes_be_called_on_constants_or_by_keyword(case):
    """A third review: a module looping over its argument's sizes made the model untraceable
    once given its constant; one branching on its weight's shape raised torch's warnings of
    nodes erased twice; a call on a constant tensor beside a call on the signal, and a call
    by keyword (``act(x=y)``), had the module followed. Each is taken whole now."""
    torch.manual_seed(0)
    act = {"loop": _LoopsOverSizes(), "branch": _BranchesOnItsWeight()}.get(case, _Swish())
    body = {"constant": lambda m, x: m.conv2(m.act(m.conv1(x)) * m.act(torch.ones(
        (), dtype=F64))) + x,
            "keyword": lambda m, x: m.conv2(m.act(x=m.conv1(x))) + x}.get(
        case, lambda m, x: m.conv2(m.act(m.conv1(x))) + x)
    model = _Net({"act": act}, body).eval()
    report, said = _report(model, {"act": 1.1})
    assert not said and report.over_graph, (said, report.reason)
    scale = 1.0
    if case == "constant":
        with torch.no_grad():
            scale = abs(float(model.act(torch.ones((), dtype=F64))))
    expected = 1 + report["conv2"]["upper"] * scale * 1.1 * report["conv1"]["upper"]
    assert report.network_upper == pytest.approx(expected, rel=1e-12)
    assert report.network_upper >= _networks.largest_ratio(model, SHAPE)


_RECORDED: dict = {}


@torch.library.custom_op("sparseconv_tests::record", mutates_args=())
def _record(x: torch.Tensor) -> torch.Tensor:
    _RECORDED["x"] = x.clone()
    return x.clone()


@torch.library.custom_op("sparseconv_tests::recall", mutates_args=())
def _recall(x: torch.Tensor) -> torch.Tensor:
    kept = _RECORDED.pop("x", None)
    return kept if kept is not None and kept.shape == x.shape else torch.zeros_like(x)


class _Records(nn.Module):
    def forward(self, x):
        return torch.ops.sparseconv_tests.record(x)


class _PlusTheRecalled(nn.Module):
    """``tanh(x)`` alone (nothing recorded); in the network, plus ten times what
    ``_Records`` recorded, through a custom operator."""

    def forward(self, x):
        return torch.tanh(x) + 10 * torch.ops.sparseconv_tests.recall(x)


class _Callback:
    """A callable torch.fx carries into the graph as a ``get_attr`` node (its documented
    ``__fx_create_arg__``)."""

    def __init__(self, name: str, function):
        self.name, self.function = name, function

    def __call__(self, value):
        return self.function(value)

    def __fx_create_arg__(self, tracer):
        setattr(tracer.root, self.name, self)
        return tracer.create_node("get_attr", self.name, (), {})


_SEEN: list = []
_NOTE = _Callback("_note", lambda v: (_SEEN.append(v), v)[1])
_ADD_NOTED = _Callback("_add_noted", lambda v: v + 10.0 * (_SEEN.pop(0) if _SEEN else 0.0))


class _Notes(nn.Module):
    def forward(self, x):
        return x.detach().clone().apply_(_NOTE) * 0 + x


class _PlusTheNoted(nn.Module):
    def forward(self, x):
        return x.detach().clone().apply_(_ADD_NOTED) - x.detach() + x


class _Scaled(nn.Module):
    """``tanh(x) * scale``, 1 in the model's state."""

    def __init__(self):
        super().__init__()
        self.scale = 1.0

    def forward(self, x):
        return torch.tanh(x) * self.scale


def _scaled_around_the_call(m, x):
    m.act.scale = 100.0
    y = m.act(m.conv1(x))
    m.act.scale = 1.0
    return y


class _ByOffset(nn.Module):
    """``tanh(x)``, a hundred times as much for a tensor that starts past its memory's
    first entry (a slice)."""

    def forward(self, x):
        return torch.tanh(x) * (1 + 99 * (x.storage_offset() > 0))


class _ByAutograd(nn.Module):
    def forward(self, x):
        return torch.tanh(x) * (1 + 99 * x.requires_grad)


def _fourth_review(case: str) -> tuple[nn.Module, dict]:
    """A fourth review's models, each given true constants (of the module as a map of its
    argument's values, from the model's state), each bounded 7 to 90 times below its
    slopes by a version that took their calls whole."""
    if case == "custom operator":
        return _Net({"a": _Records(), "b": _PlusTheRecalled()}, lambda m, x: m.b(torch.tanh(
            m.a(m.conv1(x))))), {"a": 1.0, "b": 1.0}
    if case == "apply_":
        return _Net({"a": _Notes(), "b": _PlusTheNoted()}, lambda m, x: m.b(torch.tanh(m.a(
            m.conv1(x))))), {"a": 1.0, "b": 1.0}
    if case == "state around the call":
        return _Net({"act": _Scaled()}, _scaled_around_the_call), {"act": 1.0}
    act = _ByOffset() if case == "storage_offset" else _ByAutograd()
    return _Net({"act": act}, lambda m, x: m.act(m.conv1(x)[:, 1:])), {"act": 1.0}


@pytest.mark.parametrize("case, said", [
    ("custom operator", "which calls record(), which is none of torch's operations"),
    ("apply_", "runs node '_add_noted', which holds an object that is no tensor"),
    ("state around the call", "which runs in its call 0 other operations, or on other "
                              "constants, than the module alone from the model's state"),
    ("storage_offset", "calls .storage_offset()"),
    ("requires_grad", "reads the attribute 'requires_grad'"),
])
def test_a_call_taken_whole_runs_torch_s_operations_alone_as_the_module_does(case, said):
    """A fourth review: a custom operator and ``Tensor.apply_`` with a callback of the
    user's carried values between two calls taken whole, a forward set the module's scale
    to 100 around its call (traced as ``100 tanh(x)``, bounded with ``tanh``'s constant),
    and modules scaled by their argument's ``storage_offset()`` or ``requires_grad``: bounds
    of 0.93-1.25 for slopes of 7-88. Each module is followed, and the bound, where there is
    one, is above the measured slopes."""
    torch.manual_seed(0)
    model, given = _fourth_review(case)
    report, warned = _report(model.eval(), given)
    assert any(said in text for text in warned), warned
    assert report.network_upper is None or report.network_upper >= _local_ratio(
        model, SHAPE), (report.network_upper, warned)


class _GroupSort(nn.Module):
    """Sorts each pair of channels (Anil et al.'s GroupSort, 1-Lipschitz), its shape
    starred."""

    def forward(self, x):
        s = x.shape
        return x.reshape(s[0], -1, 2, *s[2:]).sort(dim=2).values.reshape(s)


def test_a_group_sort_with_a_starred_shape_is_taken_whole():
    """A new user's trial: GroupSort written with ``*s[2:]`` and ``sort(...).values`` had no
    bound, given its constant (torch.fx refused the starred shape's ``len()``, and then
    ``.values`` was read as an attribute past the tensor's metadata)."""
    torch.manual_seed(0)
    model = _Net({"act": _GroupSort()}, lambda m, x: m.conv2(m.act(m.conv1(x))) + x).eval()
    report, said = _report(model, {"act": 1.0})
    assert not said and report.over_graph, (said, report.reason)
    expected = 1 + report["conv2"]["upper"] * report["conv1"]["upper"]
    assert report.network_upper == pytest.approx(expected, rel=1e-12)
    assert report.network_upper >= _local_ratio(model, SHAPE)


class _SignedScale(nn.Module):
    """``tanh(x)`` for ``c = -0.0`` (its state), ``100 tanh(x)`` for ``c = 0.0``."""

    def __init__(self):
        super().__init__()
        self.c = -0.0

    def forward(self, x):
        return torch.tanh(x) * (1 + 99 * torch.relu(torch.copysign(torch.ones_like(x),
                                                                   self.c)))


def _signed_around_the_call(m, x):
    m.act.c = 0.0
    y = m.act(m.conv1(x))
    m.act.c = -0.0
    return m.conv2(y)


class _ByDimOrder(nn.Module):
    def forward(self, x):
        return torch.tanh(x) * (1 + 99 * (x.dim_order() != (0, 1, 2, 3)))


class _ByOverlap(nn.Module):
    def forward(self, x):
        return torch.tanh(x) * (1 + 99 * torch._debug_has_internal_overlap(x))


class _ByRawMemory(nn.Module):
    def forward(self, x):
        b, c, h, w = x.shape
        raw = torch.as_strided_copy(x, (b, c, h, w), (c * h * w, h * w, w, 1), 0)
        return torch.tanh(x) + 10 * (raw - x)


class _TimesALiteral(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x) * torch.tensor(0.5, dtype=F64)


@pytest.mark.parametrize("case, said", [
    ("signed zero", "which runs in its call 0 other operations, or on other constants"),
    ("dim_order", "calls .dim_order()"),
    ("overlap", "calls _debug_has_internal_overlap(), which may read its argument's memory"),
    ("as_strided_copy", "calls as_strided_copy(), which may read its argument's memory"),
])
def test_a_call_taken_whole_is_the_module_to_the_bit_and_reads_no_memory_layout(case, said):
    """A fifth review: the traced constants were compared with ``==`` (``-0.0 == 0.0``: a
    scale set around the call passed as the module's), and modules read the memory layout of
    a transposed or expanded argument through ``dim_order``, ``_debug_has_internal_overlap``
    and ``as_strided_copy`` (bounds 0.91-1.28 for slopes of 4.7-28). Each is followed."""
    torch.manual_seed(0)
    if case == "signed zero":
        model = _Net({"act": _SignedScale()}, _signed_around_the_call)
    else:
        act = {"dim_order": _ByDimOrder(), "overlap": _ByOverlap(),
               "as_strided_copy": _ByRawMemory()}[case]
        model = _Net({"act": act}, lambda m, x: m.conv2(m.act(
            m.conv1(x).transpose(2, 3) if case != "overlap" else
            m.conv1(x)[:, :1].expand(-1, 2, -1, -1))))
    report, warned = _report(model.eval(), {"act": 1.0})
    assert any(said in text for text in warned), warned
    assert report.network_upper is None or report.network_upper >= _local_ratio(
        model, SHAPE), (report.network_upper, warned)


def test_a_call_taken_whole_may_build_a_tensor_constant():
    """A fifth review: a module multiplying by ``torch.tensor(0.5)`` was always followed
    (each trace names its tensor constant anew, and they were compared as objects): they are
    compared by value."""
    torch.manual_seed(0)
    model = _Net({"act": _TimesALiteral()}, lambda m, x: m.conv2(m.act(m.conv1(x))) + x).eval()
    report, said = _report(model, {"act": 0.55})
    assert not said and report.over_graph, (said, report.reason)
    expected = 1 + report["conv2"]["upper"] * 0.55 * report["conv1"]["upper"]
    assert report.network_upper == pytest.approx(expected, rel=1e-12)


class _FarSignedScale(nn.Module):
    """``tanh(x)`` for ``c = -0.0`` (its state); for ``c = 0.0``, plus ``100 relu(x - 1e5)``,
    which no probe reaches: the traced constants alone tell the two apart."""

    def __init__(self):
        super().__init__()
        self.c = -0.0

    def forward(self, x):
        sign = torch.relu(torch.copysign(torch.ones_like(x), self.c))
        return torch.tanh(x) + 100 * sign * torch.relu(x - 1e5)


def test_a_scale_set_around_the_call_is_seen_in_the_traced_constants_alone():
    """A fifth review's signed zero, where the scale acts beyond any probe's values: the
    module run alone gives the call's output on the probe, and only its traced constants,
    compared by their bits (``-0.0`` is not ``0.0``), show the map is not the module's."""
    torch.manual_seed(0)
    model = _Net({"act": _FarSignedScale()}, _signed_around_the_call).eval()
    report, warned = _report(model, {"act": 1.0})
    assert any("which runs in its call 0 other operations, or on other constants" in text
               for text in warned), warned


class _ZeroedIfContiguous(nn.Module):
    """``tanh(x)`` on a contiguous argument (``contiguous()`` returns it, zeroed, then added);
    on another, ``contiguous()`` copies it, and the map is ``tanh(x) + 99 relu(|x| - 1e5)``,
    beyond any probe's values."""

    def forward(self, x):
        kept = x.clone()
        zeroed = x.contiguous().zero_()
        return torch.tanh(kept) + 99 * torch.relu(x.abs() - 1e5) + zeroed


class _DroppedBeyondTheProbes(nn.Module):
    def forward(self, x):
        return torch.tanh(x) + F.dropout(torch.relu(x.abs() - 1e5), 0.5, True)


@pytest.mark.parametrize("case, said", [
    ("contiguous", "calls zero_() in place, which writes into its argument or a copy"),
    ("dropout", "calls dropout(), which draws random numbers in training"),
])
def test_a_call_taken_whole_writes_nothing_in_place_and_draws_nothing(case, said):
    """A sixth review: ``x.contiguous().zero_()`` (or ``reshape``, ``flatten``) writes into
    the argument or into a copy as its layout decides, so the module is ``tanh`` on a
    contiguous argument and more on the transposed one the model passes (1.0 for 99, beyond
    the probes' values); and ``F.dropout(..., training=True)`` draws. Each is followed."""
    torch.manual_seed(0)
    act = _ZeroedIfContiguous() if case == "contiguous" else _DroppedBeyondTheProbes()
    model = _Net({"act": act}, lambda m, x: m.act(m.conv1(x).transpose(2, 3))).eval()
    report, warned = _report(model, {"act": 1.0})
    assert any(said in text for text in warned), warned


class _DropoutOutsideTraining(nn.Module):
    def forward(self, x):
        return torch.tanh(F.dropout(x, 0.5, False)) + F.dropout(x, p=0.1, training=False)


def test_a_call_taken_whole_may_call_a_dropout_outside_training():
    """``F.dropout(x, p, False)`` (in its place or by keyword) draws nothing: the call is
    taken whole."""
    torch.manual_seed(0)
    model = _Net({"act": _DropoutOutsideTraining()}, lambda m, x: m.act(m.conv1(x))).eval()
    report, said = _report(model, {"act": 2.0})
    assert not said and report.over_graph, (said, report.reason)
    assert report.network_upper == pytest.approx(2.0 * report["conv1"]["upper"], rel=1e-12)


class _BranchesOnValues(nn.Module):
    def forward(self, x):
        if (x.abs() > 1e9).any():
            return x
        return x * torch.sigmoid(x)


def test_a_module_torch_fx_cannot_follow_is_named():
    """A review: a module given its constant that branches on its input's values made the
    model untraceable, said as a bare TraceError: the reason names the module, and that its
    constant is used only where torch.fx follows its forward."""
    model = _Net({"act": _BranchesOnValues()}, lambda m, x: x + m.act(m.conv1(x))).eval()
    report, _ = _report(model, {"act": 1.1})
    assert report.network_upper is None
    assert ("torch.fx cannot trace _Net in module 'act' (_BranchesOnValues), whose constant "
            "given is used only where torch.fx follows its forward (TraceError") in \
        report.reason, report.reason
    assert "cannot trace _Net in module 'act' (_BranchesOnValues) (TraceError" in \
        sct.lipschitz_report(model, SHAPE).reason
