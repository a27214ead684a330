"""sparseconv.torch.lipschitz_report: every column against an independent value (the dense
Jacobian PyTorch's autograd builds, the CSR arrays' own sizes), the network bound against the
network itself, progress, interruption, and the exports."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import random
import re
import sys
import time
import types
import warnings
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from ._oracles import assert_exactly_contains, exact_gram, jacobian_matrix, torch

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import sparseconv as sc  # noqa: E402
import sparseconv.torch as sct  # noqa: E402
from sparseconv._report_table import LipschitzReport  # noqa: E402
from sparseconv._torch_activations import measured_slope  # noqa: E402

from . import _networks  # noqa: E402
from ._isolation import in_a_new_interpreter  # noqa: E402

F64 = torch.float64


def jacobian_norm(module, input_shape, **call) -> float:
    """``||J||_2`` of a linear module, J from torch.autograd (the bias does not enter J)."""
    x = torch.zeros((1, *input_shape), dtype=F64)
    j = torch.autograd.functional.jacobian(lambda v: module(v, **call), x)
    return float(np.linalg.norm(j.reshape(-1, x.numel()).numpy(), 2))


def small_chain(activation: nn.Module) -> nn.Sequential:
    return _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), activation,
        nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular"), nn.Tanh(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)), seed=1)


def test_rows_against_autograd_and_csr_sizes():
    model = small_chain(nn.ReLU())
    report = sct.lipschitz_report(model, (2, 8, 8))
    assert [row["name"] for row in report] == ["0", "1", "3", "5", "7"]
    for row in report:
        module = model.get_submodule(row["name"])
        norm = jacobian_norm(module, row["input_shape"])
        assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12), row
        a = sct.matrix(module, row["input_shape"])
        assert row["nnz"] == a.nnz, row
        assert row["memory"] == a.data.nbytes + a.indices.nbytes + a.indptr.nbytes, row
        assert row["seconds"] >= 0 and set(row) == set(report.columns)
    rows = {row["name"]: row for row in report}
    # no periodic twin for the Linear and BatchNorm rows; the pooling's has no padding
    assert rows["7"]["circular"] is None and rows["1"]["circular"] is None
    assert rows["5"]["circular"] == pytest.approx(rows["5"]["upper"], rel=1e-9)
    assert rows["3"]["circular"] == pytest.approx(jacobian_norm(model[3], (3, 8, 8)), rel=1e-9)


class _UpTo(nn.Module):
    """A transposed convolution called with ``output_size=``."""

    def __init__(self, conv: nn.Module, size: tuple[int, ...]) -> None:
        super().__init__()
        self.conv, self.size = conv, size

    def forward(self, x):
        return self.conv(x, output_size=self.size)


def test_converged_column_says_whether_the_lower_bound_met_tol():
    """A row's ``converged`` is its ``spectral_norm``'s (a review: the report dropped it, so a
    lower bound that stopped short of ``tol`` printed as a clean row). The oracle: the same
    layer through ``sct.spectral_norm`` with the same options."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 16 * 16, 4)).double().eval()
    for options in (dict(), dict(tol=1e-15, method="bounds"), dict(method="upper")):
        report = sct.lipschitz_report(model, (8, 16, 16), **options)
        alone = sct.spectral_norm(model[0], (8, 16, 16), **options)
        assert report[0]["converged"] is alone.converged, options
        assert report[0]["method"] == alone.method, options
        printed = str(report).splitlines()[2].split()
        assert printed[printed.index(alone.method) + 1] == ("yes" if alone.converged else "no")
        assert json.loads(report.to_json())["layers"][0]["converged"] is alone.converged
        assert next(csv.DictReader(io.StringIO(report.to_csv())))["converged"] == str(
            alone.converged)
    assert not alone.converged  # method="upper" computes no lower bound
    strict = sct.spectral_norm(model[0], (8, 16, 16), tol=1e-15, method="bounds")
    assert not strict.converged  # the case the column is for (tol below the rounding)


@pytest.mark.parametrize(("options", "size"), [
    (dict(stride=1, dilation=2, output_padding=1), None),  # output_padding < dilation only
    (dict(stride=3, dilation=1, output_padding=2), None),
    (dict(stride=2, dilation=3, output_padding=2), None),
    (dict(stride=3, dilation=1), (12,)),  # output_size at call time
])
def test_transposed_rows_take_the_modules_output_padding(options, size):
    """A review: the report passed every transposed convolution's traced output as
    ``output_size``, which PyTorch caps at ``stride - 1`` above the smallest: a module whose
    own ``output_padding`` is below its dilation only was refused."""
    conv = _networks.randomize(nn.ConvTranspose1d(2, 3, 2, **options), seed=2).double().eval()
    model = nn.Sequential(conv if size is None else _UpTo(conv, size)).eval()
    report = sct.lipschitz_report(model, (2, 4))
    (row,) = list(report)
    call = {} if size is None else {"output_size": size}
    norm = jacobian_norm(conv, (2, 4), **call)
    assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12), row
    assert row["output_shape"] == tuple(model(torch.zeros((1, 2, 4), dtype=F64)).shape[1:])


def test_circular_column_of_a_parametrized_convolution():
    """A convolution under torch.nn.utils.parametrizations (ParametrizedConv2d) keeps its
    periodic twin's norm (a review found the column lost by the class's name)."""
    from torch.nn.utils import parametrizations
    conv = parametrizations.weight_norm(nn.Conv2d(2, 3, 3, padding=1, dtype=F64))
    report = sct.lipschitz_report(nn.Sequential(conv).eval(), (2, 6, 6))
    periodic = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", dtype=F64)
    with torch.no_grad():
        periodic.weight.copy_(conv.weight)
    assert report[0]["circular"] == pytest.approx(jacobian_norm(periodic, (2, 6, 6)), rel=1e-10)


@pytest.mark.parametrize("stride, size, padding", [(1, 6, 1), (2, 8, 0), (2, 7, 1)])
def test_circular_column_is_the_periodic_layer(stride, size, padding):
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, dtype=F64)
    row = list(sct.lipschitz_report(nn.Sequential(conv).eval(), (2, size, size)))[0]
    if size % stride:
        assert row["circular"] is None  # no periodic layer on that size
        return
    periodic = nn.Conv2d(2, 3, 3, stride=stride, padding=1, padding_mode="circular", dtype=F64)
    periodic.load_state_dict(conv.state_dict())
    assert row["circular"] == pytest.approx(jacobian_norm(periodic, (2, size, size)), rel=1e-10)


@pytest.mark.parametrize("activation, constant", [
    (nn.ReLU(), 1.0), (nn.Sigmoid(), 0.25), (nn.LeakyReLU(0.2), 1.0), (nn.LeakyReLU(3.0), 3.0),
    (nn.ELU(2.0), 2.0)])
def test_network_bound_multiplies_the_activation_constants(activation, constant):
    model = small_chain(activation)
    report = sct.lipschitz_report(model, (2, 8, 8))
    # the exact product (a float product can round above it, and above its ceiling)
    product = math.prod(Fraction(row["upper"]) for row in report) * Fraction(constant)
    assert Fraction(report.network_upper) >= product
    assert report.network_upper == pytest.approx(float(product))
    name = type(activation).__name__
    expected = f"2 ({name})" if constant == 1 else f"2 ({name}, {constant:g})"
    assert report.activations == (expected, "4 (Tanh)")
    # the bound bounds the network: ||f(x) - f(y)|| <= L ||x - y|| on random pairs
    generator = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, 10.0):
        x = torch.randn((16, 2, 8, 8), dtype=F64, generator=generator)
        y = x + scale * torch.randn((16, 2, 8, 8), dtype=F64, generator=generator)
        with torch.no_grad():
            ratio = (model(x) - model(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
        assert float(ratio.max()) <= report.network_upper, (scale, float(ratio.max()))


@pytest.mark.parametrize("norms", [(1e-200, 1e-200, 1e200), (1e-40,) * 9, (1e300, 1e10),
                                   (3.0, 1e-320, 7.0)])
def test_network_bound_neither_underflows_nor_overflows(norms):
    """Layers of norm 1e-200, 1e-200 and 1e200 (a Lipschitz constant of 1e-200), or nine of
    1e-40: their float product flushed to 0, no upper bound of a nonzero network. The oracle:
    the exact rational product of the rows' upper bounds."""
    layers = []
    for norm in norms:
        layer = nn.Linear(1, 1, bias=False, dtype=F64)
        with torch.no_grad():
            layer.weight.fill_(norm)
        layers.append(layer)
    report = sct.lipschitz_report(nn.Sequential(*layers).eval(), (1,))
    exact = math.prod(Fraction(row["upper"]) for row in report)
    assert exact > 0, norms
    if exact > Fraction(sys.float_info.max):
        assert report.network_upper == math.inf
    else:  # the exact product rounded up: one step at most
        assert exact <= Fraction(report.network_upper), (report.network_upper, norms)
        assert report.network_upper <= math.nextafter(float(exact), math.inf)


def _most_windows(pool: nn.Module, shape: tuple) -> int | None:
    """PyTorch's own count of the windows that read the most-read input entry: pool every
    one-hot input (1 at one entry, 0 elsewhere); the outputs that become 1 are its windows.
    None where a window pools padding alone (its output is -inf)."""
    n = math.prod(shape[1:])
    with torch.no_grad():
        ones = pool(torch.eye(n, dtype=F64).reshape(n, 1, *shape[1:]))
    return int(ones.reshape(n, -1).sum(dim=1).max()) if bool(ones.isfinite().all()) else None


def _random_pools(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        d = int(rng.integers(1, 4))
        sizes = tuple(int(n) for n in rng.integers(1, 9, d))
        if rng.random() < 0.25:  # adaptive: any output size, windows overlapping or not
            outputs = tuple(int(m) for m in rng.integers(1, 11, d))
            yield getattr(nn, f"AdaptiveMaxPool{d}d")(outputs), (2, *sizes)
            continue
        kernel = tuple(int(k) for k in rng.integers(1, 5, d))
        dilation = tuple(int(k) for k in rng.integers(1, 3, d))
        stride = tuple(int(k) for k in rng.integers(1, 4, d))
        # PyTorch: padding at most half the kernel; the dilated window inside the padded input
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        sizes = tuple(max(n, (k - 1) * dl + 1 - 2 * p)
                      for n, k, dl, p in zip(sizes, kernel, dilation, padding))
        yield getattr(nn, f"MaxPool{d}d")(kernel, stride, padding, dilation,
                                          ceil_mode=bool(rng.random() < 0.5)), (2, *sizes)


@pytest.mark.parametrize("pool, shape", list(_random_pools(60, seed=3)) + [
    (nn.MaxPool2d(3, 2, 1), (64, 112, 112)),   # ResNet's: 2
    (nn.MaxPool2d(2), (64, 224, 224)),          # VGG's: 1
    (nn.MaxPool1d(3, 1), (1, 10))])             # sqrt(3), not a float: rounded up
def test_max_pooling_constant_is_the_square_root_of_the_most_windows(pool, shape):
    report = sct.lipschitz_report(nn.Sequential(pool).eval(), shape)
    small = (shape[0], *(min(n, 16) for n in shape[1:]))  # (the count does not need them all)
    windows = _most_windows(pool, shape if math.prod(shape[1:]) <= 4096 else small)
    if windows is None:  # -inf whatever the input: no constant, and the pooling is named
        assert report.network_upper is None and f"0 ({type(pool).__name__}" in report.reason
        return
    assert Fraction(report.network_upper) ** 2 >= windows
    assert report.network_upper <= math.nextafter(math.sqrt(windows), math.inf)
    name = type(pool).__name__
    assert report.activations == ((f"0 ({name})",) if windows == 1 else
                                   (f"0 ({name}, {report.network_upper:g})",))


def test_max_pooling_constant_is_attained_and_bounds_the_network():
    """A VGG-like chain: its bound holds on random pairs; and the pooling alone moves by its
    constant times the input's change, for a change at a most-read entry."""
    pool = nn.MaxPool2d(3, 2, 1)
    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)), seed=2)
    report = sct.lipschitz_report(model, (2, 8, 8))
    assert report.activations == ("1 (ReLU)", "2 (MaxPool2d, 2)", "4 (ReLU)", "5 (MaxPool2d)")
    product = math.prod(Fraction(row["upper"]) for row in report) * 2
    assert Fraction(report.network_upper) >= product
    assert report.network_upper == pytest.approx(float(product))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for scale in (1e-3, 1.0, 10.0):
            x = torch.randn((16, 2, 8, 8), dtype=F64, generator=generator)
            y = x + scale * torch.randn((16, 2, 8, 8), dtype=F64, generator=generator)
            ratio = (model(x) - model(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
            assert float(ratio.max()) <= report.network_upper
        x = torch.zeros((1, 1, 8, 8), dtype=F64)
        y = x.clone()
        y[0, 0, 3, 3] = 1e-3  # read by the windows at rows and columns 1 and 2: four
        assert float((pool(y) - pool(x)).norm() / (y - x).norm()) == pytest.approx(2.0)


def test_max_pooling_of_scripted_and_traced_models():
    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.AdaptiveMaxPool2d(3), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)), seed=4)
    eager = sct.lipschitz_report(model, (2, 8, 8))
    assert eager.activations == ("1 (ReLU)", "2 (MaxPool2d, 2)", "3 (AdaptiveMaxPool2d, 2)")
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled_models = (torch.jit.script(model),
                           torch.jit.trace(model, torch.zeros((1, 2, 8, 8), dtype=F64)))
    for compiled in compiled_models:
        report = sct.lipschitz_report(compiled, (2, 8, 8))
        assert report.activations == eager.activations
        assert report.network_upper == pytest.approx(eager.network_upper, rel=1e-12)


def test_an_activation_called_twice_counts_twice_and_prints_once():
    """ResNet's blocks call one ReLU module twice: the bound multiplies its constant in
    twice (0.5 twice here), the tuple has one entry per call, the table names it once."""

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
            self.act = nn.Tanh()

        def forward(self, x):
            return self.act(self.conv2(self.act(self.conv1(x))))

    model = _networks.randomize(Twice(), seed=5)
    with pytest.warns(UserWarning, match="below its Lipschitz constant, 1"):  # (yours, used)
        report = sct.lipschitz_report(model, (2, 6, 6), lipschitz_constants={"act": 0.5})
    assert report.activations == ("act (Tanh, 0.5 given)", "act (Tanh, 0.5 given)")
    text = str(report)
    assert text.count("act (Tanh, 0.5 given)") == 1 and "act (Tanh, 0.5 given) x2" in text
    product = math.prod(Fraction(row["upper"]) for row in report) / 4
    assert report.network_upper == pytest.approx(float(product), rel=1e-12)


def test_a_constant_given_below_a_module_s_measured_slope_is_warned_of():
    """A constant given for a module of the user's class is the user's, not certified here;
    one more than 1% below the slope measured on a copy of the module (secants of its
    forward at inputs of ones, zeros and values spread over [-8, 8]) is warned of (a scripted
    ``LayerNorm2d`` given 50 bounded a map whose slope reaches 316, without a word). Swish's
    constant is 1.0998393 (``sup |f'|``, at 2.3994); its slope measured on 192 values
    reaches 1.09 (secants 1e-4 wide in float64, 1e-2 in float32, the float32 model's). The
    constant is used all the same: the warning says what the bound then rests on. No
    warning at or above the slope, nor where none can be measured (a forward of two
    arguments, an empty input). The slope is a ratio of the forward's own changes, along
    directions autograd finds: a backward that scales the gradient by 100 (a gradient
    reversal layer's) does not make the identity's 1 measure 100."""
    model = small_chain(_networks.Swish())
    with pytest.warns(UserWarning, match=r"gives 2 \(Swish\) the constant 1.0, below its "
                      r"Lipschitz constant, which is at least 1\.0[4-9]\d*, its slope measured"):
        low = sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"Swish": 1.0})
    assert low.activations[0] == "2 (Swish, 1.0 given)" and low.network_upper is not None
    top = measured_slope(_networks.Swish(), (3, 8, 8))
    assert 1.09 < top <= 1.0998394  # (a lower bound of sup |f'|, within 1%)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        right = sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"Swish": 1.1})
    assert right.network_upper == pytest.approx(low.network_upper * 1.1, rel=1e-12)

    class Mixed(nn.Module):  # (two arguments: not measured, and no error)
        def forward(self, x, y):
            return x * torch.sigmoid(y)

    class Reversal(torch.autograd.Function):  # (a gradient reversal layer's, scaled by 100:
        @staticmethod  # the identity, whose backward autograd takes for its derivative)
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return -100 * grad

    class Reversed(nn.Module):
        def forward(self, x):
            return Reversal.apply(x)

    assert measured_slope(Reversed(), (3, 4, 4)) == pytest.approx(1.0, rel=1e-5)  # (less
    # the rounding float32 could leave)
    assert measured_slope(Mixed(), (3, 4, 4)) is None
    assert measured_slope(nn.Identity(), (0,)) is None  # (an empty input: no ratio)


class _ScaledLeaky(nn.Module):
    """``a x`` above 0, ``x / 10`` below: the constant ``a`` (a parameter of ``dtype``)."""

    def __init__(self, a: float, dtype: torch.dtype):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=dtype))

    def forward(self, x):
        return torch.where(x > 0, x * self.a, 0.1 * x)


class _TimesTanh(nn.Module):
    """``k tanh(x)``, its ``k`` an attribute named with an underscore."""

    def __init__(self, k: float):
        super().__init__()
        self._k = k

    def forward(self, x):
        return self._k * torch.tanh(x)


class _Peaked(nn.Module):
    """``x / (|x| + 1e-3)``: its slope 1000 at 0 alone."""

    def forward(self, x):
        return x / (x.abs() + 1e-3)


class _LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt ``LayerNorm2d``."""

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


class _CastSilu(nn.Module):
    """SiLU computed in float32, whatever the input's dtype (mixed precision's pattern)."""

    def forward(self, x):
        return F.silu(x.float()).type_as(x)


class _Offset(nn.Module):
    """``tanh`` of a per-channel scale, plus 1000: runs in float32 alone (its weight's)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return torch.tanh(F.conv2d(x, self.scale.view(-1, 1, 1, 1), groups=x.shape[1])) + 1000


class _OffsetInFloat32(nn.Module):
    """``tanh(x) + 1000`` computed in float32, returned in the input's dtype."""

    def forward(self, x):
        return (torch.tanh(x.float()) + 1000).to(x.dtype)


class _PlainWeight(nn.Module):
    """``tanh(10 x)`` by a weight kept as a plain (float32) tensor attribute."""

    def __init__(self):
        super().__init__()
        self.w = 10 * torch.eye(8)

    def forward(self, x):
        return torch.tanh(F.linear(x, self.w))


class _Float8Scaled(nn.Module):
    """A ReLU times a float8 buffer of ones."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(1, dtype=torch.float8_e4m3fn))

    def forward(self, x):
        return torch.relu(x.float()) * self.scale.float()


def test_the_measured_slopes_are_of_the_map_the_bound_rests_on():
    """A review of the measured slopes: a constant exactly right for a float16 or bfloat16
    parameter's ``a x`` in a float32 model was warned of (measured in the parameter's dtype,
    its rounding 1-3% above ``a``): measured in float64, the map in exact arithmetic. A
    second module of a class, given a constant by its name, was not compared (its slope
    cached, the comparison skipped), nor one whose attribute ``_k`` differs (left out of
    the cache's key); ``x / (|x| + 1e-3)`` given 1 was not warned of (its slope of 1000 is
    at 0 alone: zeros are measured too); a float8 buffer raised out of lipschitz_report;
    and a constant the bound does not rest on (a followed forward, a withheld bound) was
    measured and warned of. Python's and numpy's random states are kept."""
    for dtype in (torch.float16, torch.bfloat16):
        act = _ScaledLeaky(1.11, dtype)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act, nn.Conv2d(4, 2, 3, padding=1))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report = sct.lipschitz_report(model.eval(), (3, 4, 4),
                                          lipschitz_constants={"_ScaledLeaky": act.a.item()})
        assert report.network_upper is not None
    two = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), _networks.Swish(),
                        nn.Conv2d(2, 2, 3, padding=1), _networks.Swish()).double().eval()
    with pytest.warns(UserWarning, match=r"gives 3 \(Swish\) the constant 0.5, below"):
        sct.lipschitz_report(two, (2, 4, 4), lipschitz_constants={"1": 1.1, "3": 0.5})
    scaled = nn.Sequential(nn.Linear(3, 3), _TimesTanh(1.0), nn.Linear(3, 3), _TimesTanh(10.0))
    with pytest.warns(UserWarning, match=r"gives 3 \(_TimesTanh\) the constant 1.0, below its "
                      r"Lipschitz constant, which is at least 9\.99"):
        sct.lipschitz_report(scaled.double().eval(), (3,), lipschitz_constants={"_TimesTanh": 1.0})
    peaked = nn.Sequential(nn.Linear(3, 4), _Peaked()).double().eval()  # (four values
    # spread over [-8, 8]: none is 0)
    with pytest.warns(UserWarning, match=r"gives 1 \(_Peaked\) the constant 1.0, below its "
                      r"Lipschitz constant, which is at least \d{3}\.\d+"):
        sct.lipschitz_report(peaked, (3,), lipschitz_constants={"_Peaked": 1.0})
    # measured in the dtype the model runs them in, less float32's rounding (a second review:
    # a float32 SiLU in a model, given 1.1, measured 1.52; tanh + 1000 in float32, given 1,
    # measured 1.06; a plain float32 weight, not run in float64, not measured: tanh(10 x)
    # given 1 unwarned)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for act, constant in ((_CastSilu(), 1.1), (_Offset(2), 1.0)):
            model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), act).eval()
            report = sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={
                type(act).__name__: constant})
            assert report.network_upper is not None
        for dtype in (torch.float64, None):  # (a float64 model: its input cast to float64)
            assert measured_slope(_CastSilu(), (2, 8, 8), dtype) <= 1.0998394
        model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), _OffsetInFloat32()).double()
        report = sct.lipschitz_report(model.eval(), (2, 8, 8), lipschitz_constants={
            "_OffsetInFloat32": 1.0})  # (its float32 rounding, 6e-5 at 1000, left out)
        assert report.network_upper is not None
    plain = nn.Sequential(nn.Linear(4, 8), _PlainWeight()).eval()
    with pytest.warns(UserWarning, match=r"gives 1 \(_PlainWeight\) the constant 1.0, below "
                      r"its Lipschitz constant, which is at least 9\.\d+"):
        sct.lipschitz_report(plain, (4,), lipschitz_constants={"_PlainWeight": 1.0})
    followed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _LayerNorm2d(4, eps=1e-6),
                             nn.Conv2d(4, 2, 3, padding=1)).double().eval()
    with pytest.warns(UserWarning, match="its constant unused") as caught:  # (its forward
        report = sct.lipschitz_report(followed, (3, 4, 4), lipschitz_constants={  # followed)
            "_LayerNorm2d": 50.0, "layer_norm": 1000.0})
    assert report.network_upper is not None and len(caught) == 1, [str(w.message) for w in caught]
    eight = nn.Sequential(nn.Linear(3, 1), _Float8Scaled(), nn.Linear(1, 2)).eval()
    state = random.getstate(), np.random.get_state()  # noqa: NPY002 - the global one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = sct.lipschitz_report(eight, (3,), lipschitz_constants={"_Float8Scaled": 1.0})
    assert report.network_upper is not None
    assert random.getstate() == state[0]
    assert np.random.get_state()[1].tolist() == state[1][1].tolist()  # noqa: NPY002


def test_unknown_activation_gives_no_network_bound():
    report = sct.lipschitz_report(small_chain(nn.Softplus()), (2, 8, 8))
    assert report.network_upper is None and "2 (Softplus)" in report.reason
    assert "network bound: none" in str(report)


def test_the_constants_of_other_activations_can_be_given():
    """Given constants are said to be given, with their value as given (a given 1 had printed
    as a built-in 1-Lipschitz activation, and :g rounded 1.00000001 to 1)."""
    model = small_chain(nn.GELU())
    by_class = sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"GELU": 1.13})
    product = np.prod([row["upper"] for row in by_class]) * 1.13
    exact = math.prod(Fraction(row["upper"]) for row in by_class) * Fraction(1.13)
    # (>= the exact product, rounded up once; the float product may round above it)
    assert by_class.network_upper == pytest.approx(product) and by_class.network_upper >= exact
    assert by_class.activations == ("2 (GELU, 1.13 given)", "4 (Tanh)")
    # a module's name wins over its class; a known activation can be given a constant too
    with pytest.warns(UserWarning, match=r"4 \(Tanh\) the constant 0.5, below"):  # (used)
        by_name = sct.lipschitz_report(model, (2, 8, 8),
                                       lipschitz_constants={"GELU": 5.0, "2": 1.13, "Tanh": 0.5})
    assert by_name.activations == ("2 (GELU, 1.13 given)", "4 (Tanh, 0.5 given)")
    assert by_name.network_upper == pytest.approx(product * 0.5)
    # a key that names nothing non-linear is refused: a typo would leave a bound too small
    for bad, match in (({"gelu": 1.13}, r"names no traced.*\(did you mean 'GELU'\?\)"),
                       ({"act9": 2.0}, "names no traced non-linear module"),
                       ({"0": 2.0}, "names a linear layer")):
        with pytest.raises(ValueError, match=match):
            sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants=bad)
    with pytest.warns(UserWarning, match=r"2 \(GELU\) the constant 1.0, below its Lipschitz "
                      r"constant, 1.13"):  # (GELU's is 1.1289)
        ones = sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"GELU": 1,
                                                                          "Tanh": 1.00000001})
    assert ones.activations == ("2 (GELU, 1.0 given)", "4 (Tanh, 1.00000001 given)")
    for bad, error in (({"GELU": -1.0}, ValueError), ({"GELU": "1"}, TypeError),
                       ({1: 1.0}, TypeError), ([("GELU", 1.0)], TypeError),
                       ({"GELU": float("nan")}, ValueError)):
        with pytest.raises(error, match="lipschitz_constants"):
            sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants=bad)


def _printed(text: str, column: str) -> list[Decimal]:
    lines = text.splitlines()
    start = lines[0].index(column)
    return [Decimal(line[start:].split()[0]) for line in lines[2:] if line and
            not line.startswith(("network", " "))]


def test_table_rounds_the_interval_outward():
    report = sct.lipschitz_report(small_chain(nn.ReLU()), (2, 8, 8))
    text = str(report)
    lowers, uppers = _printed(text, "lower"), _printed(text, "upper")
    assert len(lowers) == len(report) == len(uppers)
    for row, lower, upper in zip(report, lowers, uppers):
        assert lower <= Decimal(repr(row["lower"])) and Decimal(repr(row["upper"])) <= upper
        assert len(str(upper).replace(".", "").lstrip("0")) <= 6
    bound = Decimal(re.search(r"upper bounds\): (\S+)", text).group(1))
    assert bound >= Decimal(repr(report.network_upper))
    assert "KiB" in text and "BatchNorm2d" in text


def test_progress_callable_and_stderr_lines(capsys, monkeypatch):
    model = small_chain(nn.ReLU())
    calls = []
    sct.lipschitz_report(model, (2, 8, 8), progress=lambda *a: calls.append(a))
    assert calls == [(1, 5, "0"), (2, 5, "1"), (3, 5, "3"), (4, 5, "5"), (5, 5, "7")]
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed: plain lines
    sct.lipschitz_report(model, (2, 8, 8), progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"lipschitz_report: {i}/5 {name}" for i, name in
                   enumerate(["0", "1", "3", "5", "7"], 1)]


def test_progress_bar_with_tqdm(capsys):
    import tqdm  # noqa: F401  (the test extra installs it: never a silent skip)
    sct.lipschitz_report(small_chain(nn.ReLU()), (2, 8, 8), progress=True)
    assert "5/5" in capsys.readouterr().err


def test_interrupt_reraises_with_the_partial_report():
    model = small_chain(nn.ReLU())
    full = sct.lipschitz_report(model, (2, 8, 8))

    def interrupt(done, total, name):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        sct.lipschitz_report(model, (2, 8, 8), progress=interrupt)
    partial = info.value.report
    assert not partial.complete and partial.network_upper is None
    assert "interrupted after 2 of 5 layers" in partial.reason
    assert [(r["name"], r["upper"]) for r in partial] == [(r["name"], r["upper"])
                                                          for r in list(full)[:2]]


def test_exports(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, dtype=F64), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8, 2, dtype=F64)).eval()
    report = sct.lipschitz_report(model, (1, 5, 5))
    assert report.rows[0]["circular"] is None  # 5 is not divisible by the stride
    report.to_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert rows[0]["circular"] == "" and rows[0]["input_shape"] == "1x5x5"
    assert float(rows[1]["upper"]) == report.rows[1]["upper"]  # repr round-trips
    report.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["complete"] and data["layers"][0]["circular"] is None
    assert data["layers"][1]["memory"] == report.rows[1]["memory"]
    assert data["network_upper"] == report.network_upper
    # as pandas: None returns the text, an open text file is written to
    assert report.to_csv() == (tmp_path / "r.csv").read_bytes().decode()
    assert report.to_json() == (tmp_path / "r.json").read_text()
    stream = io.StringIO()
    assert report.to_json(stream) is None and stream.getvalue() == report.to_json()


@pytest.mark.parametrize("export", ["to_csv", "to_json"])
def test_exports_refuse_what_is_no_file_name_or_text_file(export, tmp_path):
    # a review: an int was taken for a file descriptor (True for stdout), written to and
    # closed; a binary file got "a bytes-like object is required, not 'str'"
    report = sct.lipschitz_report(nn.Sequential(nn.Conv1d(1, 1, 3, dtype=F64)).eval(), (1, 8))
    fd = os.open(tmp_path / "victim.txt", os.O_RDWR | os.O_CREAT)
    try:
        for path in (fd, True, 2.5):
            with pytest.raises(TypeError, match=f"path must be a file name, .*got {path!r}"):
                getattr(report, export)(path)
        os.fstat(fd)  # still open
    finally:
        os.close(fd)
    assert (tmp_path / "victim.txt").read_bytes() == b""
    with pytest.raises(TypeError, match="got a binary file .*open it in text mode"):
        getattr(report, export)(io.BytesIO())
    with open(tmp_path / "b", "wb") as binary, pytest.raises(TypeError, match="binary file"):
        getattr(report, export)(binary)
    # tempfile's wrappers are no io classes: told by their mode (a review of the change)
    import tempfile

    with tempfile.NamedTemporaryFile("wb") as binary, pytest.raises(TypeError,
                                                                    match="binary file"):
        getattr(report, export)(binary)
    with tempfile.SpooledTemporaryFile(mode="w+b") as binary, pytest.raises(
            TypeError, match="binary file"):
        getattr(report, export)(binary)
    with tempfile.NamedTemporaryFile("w+", newline="") as text:
        getattr(report, export)(text)
        text.seek(0)
        assert text.read() == getattr(report, export)()
    # a bytes file name, as open() takes it (the change refused it; a review)
    getattr(report, export)(os.fsencode(tmp_path / "bytes.txt"))
    assert (tmp_path / "bytes.txt").read_bytes().decode() == getattr(report, export)()


def _csv_rows(report, **options):
    return _csv(report, **options)[1]


def test_csv_ends_with_the_network_bound():
    """The CSV had the layers only: the network bound, the report's last printed line and a
    key of the JSON, was nowhere in it (a closing note's gap since the fifth session)."""
    chain = sct.lipschitz_report(small_chain(nn.ReLU()), (2, 8, 8))
    rows = _csv_rows(chain)
    assert len(rows) == len(chain) + 1 and [r["name"] for r in rows[:-1]] == \
        [r["name"] for r in chain]
    last = rows[-1]
    assert (last["name"], last["type"], last["method"]) == ("(network)", "Network", "product")
    assert float(last["upper"]) == chain.network_upper  # repr round-trips
    assert all(last[k] == "" for k in chain.columns if k not in ("name", "type", "upper",
                                                                 "method"))
    assert _csv_rows(chain, network_row=False) == rows[:-1]
    graph = sct.lipschitz_report(_Residual().eval(), (2, 5, 5))
    assert graph.over_graph and _csv_rows(graph)[-1]["method"] == "graph"
    assert float(_csv_rows(graph)[-1]["upper"]) == graph.network_upper
    none = sct.lipschitz_report(small_chain(nn.Softplus()), (2, 8, 8))
    last = _csv_rows(none)[-1]
    assert last["upper"] == "" and last["method"] == f"none: {none.reason}"
    with pytest.warns(RuntimeWarning, match="may be no bound"):
        assumed = sct.lipschitz_report(nn.Sequential(_Residual()).eval(), (2, 5, 5),
                                       assume_chain=True)
    assert assumed.warning and _csv_rows(assumed)[-1]["method"] == \
        f"product (assumed a chain; warning: {assumed.warning})"


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=F64)

    def forward(self, x):
        return x + self.conv(x)


class _Product(_Residual):
    def forward(self, x):
        return x * self.conv(x)


def test_the_module_that_breaks_the_chain_is_named():
    """A Sequential holding a residual block got "Sequential is not a nn.Sequential". A
    residual sum gets its bound over the graph; a product of two signals none, its node named."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=F64),
                          nn.Sequential(nn.ReLU(), _Product())).eval()
    report = sct.lipschitz_report(model, (1, 6, 6))
    assert report.network_upper is None and not report.chain_checked
    assert report.reason.startswith("module '1.1' (_Product) is not a nn.Sequential"), \
        report.reason
    assert "nor is there a bound over its graph: node 'mul'" in report.reason
    alone = sct.lipschitz_report(_Product().eval(), (2, 6, 6))
    assert alone.reason.startswith("_Product is not a nn.Sequential"), alone.reason
    residual = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=F64),
                             nn.Sequential(nn.ReLU(), _Residual())).eval()
    report = sct.lipschitz_report(residual, (1, 6, 6))
    first, second = (Fraction(row["upper"]) for row in report)
    assert report.over_graph and Fraction(report.network_upper) >= first * (1 + second)
    assert report.network_upper == pytest.approx(float(first * (1 + second)), rel=1e-15)


def test_parametrized_layers_are_layers():
    """spectral_norm / weight_norm make a layer's weight a parametrization: its
    ``parametrizations`` child was traced as a non-linear leaf and the layer itself skipped,
    so the report of a spectrally normalised network was empty, with no network bound."""
    sn, wn = nn.utils.parametrizations.spectral_norm, nn.utils.parametrizations.weight_norm
    torch.manual_seed(0)
    model = nn.Sequential(sn(nn.Conv2d(2, 3, 3, padding=1, dtype=F64)), nn.ReLU(),
                          wn(nn.Conv2d(3, 3, 3, dtype=F64)), nn.Flatten(),
                          sn(nn.Linear(3 * 4 * 4, 5, dtype=F64)))
    model(torch.zeros(1, 2, 6, 6, dtype=F64))  # one power iteration, in training mode
    model.eval()
    assert [(r.name, r.linear) for r in sct.trace(model, (2, 6, 6))] == [
        ("0", True), ("1", False), ("2", True), ("3", True), ("4", True)]
    report = sct.lipschitz_report(model, (2, 6, 6))
    assert [row["name"] for row in report] == ["0", "2", "4"] and report.chain_checked
    for row in report:
        dense = np.linalg.norm(sct.matrix(model.get_submodule(row["name"]),
                                          row["input_shape"]).toarray(), 2)
        assert row["lower"] <= dense * (1 + 1e-12) and dense <= row["upper"] * (1 + 1e-12)
    assert report.network_upper == pytest.approx(np.prod([row["upper"] for row in report]))


def test_rows_by_position_and_by_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, dtype=F64), nn.ReLU(), nn.Flatten(),
                          nn.Linear(18, 2, dtype=F64)).eval()
    report = sct.lipschitz_report(model, (1, 5, 5))
    assert report[0] == report.rows[0] and report[-1]["name"] == "3"
    assert report["3"] == report.rows[1] and report[np.int64(1)] == report.rows[1]
    report[0]["upper"] = -1.0  # a copy, as iterating gives
    assert report.rows[0]["upper"] > 0
    with pytest.raises(KeyError, match=r"no row named '1'; the rows are \['0', '3'\]"):
        report["1"]
    with pytest.raises(IndexError):
        report[2]
    with pytest.raises(TypeError, match="indexed by a row's position"):
        report[0.5]
    # a module called twice gives two rows of one name: by name is ambiguous, and said so
    conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
    twice = sct.lipschitz_report(nn.Sequential(conv, nn.ReLU(), conv).eval(), (2, 5, 5))
    assert [row["name"] for row in twice] == ["0", "0"]
    with pytest.raises(KeyError, match=r"2 rows are named '0' .* at positions \[0, 1\]"):
        twice["0"]


def test_refusals():
    model = small_chain(nn.ReLU())
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        sct.lipschitz_report(model, (2, 8, 8), progress="yes")
    with pytest.raises(ValueError, match=r"model\.eval\(\) first$"):  # no allow_train here
        sct.lipschitz_report(model.train(), (2, 8, 8))
    # an option the report does not take is named as its own, before any work
    with pytest.raises(TypeError, match=r"^lipschitz_report\(\) got an unexpected keyword "
                                        r"argument 'allow_train'; it passes method, tol, "
                                        r"relative_width, executor to spectral_norm$"):
        sct.lipschitz_report(model.eval(), (2, 8, 8), allow_train=True)
    # spectral_norm's options are the network's arguments: refused as such, not as a layer's
    with pytest.raises(ValueError, match=r"^tol must be a finite number in \[1e-15, 1\), got 0"):
        sct.lipschitz_report(model, (2, 8, 8), tol=0)
    with pytest.raises(ValueError, match=r"^method must be one of"):
        sct.lipschitz_report(model, (2, 8, 8), method="svd")


def test_fold_batchnorm_rows_are_the_composition():
    from torch.nn import functional

    model = _networks.randomize(_networks.TinyResNet(), seed=3)
    report = sct.lipschitz_report(model, (3, 8, 8), fold_batchnorm=True)
    names = [row["name"] for row in report]
    # every BatchNorm here normalizes a convolution's output: none keeps a row of its own
    assert names == ["conv1+bn1", "layer1.0.conv1+layer1.0.bn1", "layer1.0.conv2+layer1.0.bn2",
                     "layer2.0.downsample.0+layer2.0.downsample.1",
                     "layer2.0.conv1+layer2.0.bn1", "layer2.0.conv2+layer2.0.bn2", "avgpool", "fc"]
    for row in list(report)[:-2]:
        conv_name, bn_name = row["name"].split("+")
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        shape = row["input_shape"]
        # the Jacobian of bn(conv(x)), both modules PyTorch's own
        x = torch.zeros((1, *shape), dtype=F64)
        j = torch.autograd.functional.jacobian(lambda v, c=conv, b=bn: b(c(v)), x)
        norm = float(np.linalg.norm(j.reshape(-1, x.numel()).numpy(), 2))
        assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12), row
        assert row["type"] == "Conv2d+BatchNorm2d" and row["output_shape"] == tuple(
            functional.batch_norm(conv(x), bn.running_mean, bn.running_var).shape[1:])
    unfolded = sct.lipschitz_report(model, (3, 8, 8))
    assert len(unfolded) == 14 and "bn1" in [row["name"] for row in unfolded]


def test_fold_batchnorm_only_where_the_tensor_flows():
    class InPlace(nn.Module):  # relu_ returns the convolution's output tensor itself
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x).relu_())

    for model in (_networks.randomize(_networks.Crossed()), _networks.randomize(InPlace())):
        report = sct.lipschitz_report(model, (2, 5, 5), fold_batchnorm=True)
        assert [row["name"] for row in report] == ["conv", "bn"], type(model).__name__
    in_place = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(2))
    report = sct.lipschitz_report(_networks.randomize(in_place), (1, 6, 6), fold_batchnorm=True)
    assert [row["name"] for row in report] == ["0", "2"]
    chain = _networks.randomize(nn.Sequential(nn.Conv2d(1, 2, 3, dtype=torch.float32),
                                              nn.BatchNorm2d(2)).float())
    row = list(sct.lipschitz_report(chain, (1, 6, 6), fold_batchnorm=True))[0]
    assert row["name"] == "0+1"


@pytest.mark.parametrize("kernel, stride, padding, dilation, output_padding, size", [
    (1, 1, 1, 2, 1, 2),   # without output_padding, the output would be empty
    (2, 1, 2, 3, 2, 3),
    (3, 2, 1, 1, 1, 5),
    (2, 1, 3, 4, 3, 4),
])
def test_a_transposed_row_whose_output_without_output_padding_is_empty(
        kernel, stride, padding, dilation, output_padding, size):
    """A review: ``ConvTranspose2d(2, 2, 1, padding=1, dilation=2, output_padding=1)`` on 2x2
    inputs (a 1x1 output, which PyTorch computes) raised "output size (0, 0) is empty" in
    the report's count of stored entries. Its row: the matrix's nnz, an interval that holds
    the dense norm."""
    torch.manual_seed(kernel + size)
    layer = nn.ConvTranspose2d(2, 3, kernel, stride=stride, padding=padding,
                               dilation=dilation, output_padding=output_padding).double()
    row = sct.lipschitz_report(nn.Sequential(layer).eval(), (2, size, size)).rows[0]
    matrix = sct.matrix(layer, (2, size, size))
    assert row["nnz"] == matrix.nnz
    norm = np.linalg.norm(matrix.toarray(), 2)
    assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12), row


class _FailsOnItsFirstProbe(nn.Module):
    """On nonzero values, ``bn`` reads no convolution's output and the forward fails; trace
    runs it again on zeros, where ``bn(conv(x))``."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x):
        y = self.conv(x)
        if bool(x.abs().sum() > 0):
            self.bn(2 * y)
            raise IndexError("nonzero input")
        return self.bn(y)


def test_fold_batchnorm_leaves_a_convolution_whose_output_is_read_elsewhere():
    """A new user's trial: with ``fold_batchnorm=True`` the convolution of ``relu(bn(y)) +
    y`` was folded into its BatchNorm, its own row lost, and the bound over the graph refused
    the fold (no network bound). Now that pair keeps its two rows, the next pair is folded,
    and the network bound holds."""
    for through in (None, nn.Identity(), nn.Dropout()):  # (a review: through an Identity
        # or a Dropout, whose output the BatchNorm alone reads, the pair was still folded)
        model = _networks.randomize(_networks.SkipAroundBatchNorm(through)).double().eval()
        report = sct.lipschitz_report(model, (4, 6, 6), fold_batchnorm=True)
        assert [row["name"] for row in report] == ["conv", "bn", "conv2+bn2"], through
        assert report.network_upper is not None, report.reason
        assert jacobian_norm(model, (4, 6, 6)) <= report.network_upper
        unfolded = sct.lipschitz_report(model, (4, 6, 6))
        assert report.network_upper <= unfolded.network_upper * (1 + 1e-12)
    # the flags of the forward that ran to the end, where trace ran it twice
    again = sct.lipschitz_report(_networks.randomize(_FailsOnItsFirstProbe()).double(),
                                 (2, 5, 5), fold_batchnorm=True)
    assert [row["name"] for row in again] == ["conv+bn"]


class _ResidualHead(nn.Module):
    """``x + relu(bn(fc(x)))`` on features, or, ``shared``, ``bn(fc(x)) + fc(x)`` (the
    Linear's output read twice: no fold)."""

    def __init__(self, shared: bool = False):
        super().__init__()
        self.fc, self.bn, self.shared = nn.Linear(12, 12), nn.BatchNorm1d(12), shared

    def forward(self, x):
        y = self.fc(x)
        return self.bn(y) + y if self.shared else x + torch.relu(self.bn(y))


def test_fold_batchnorm_folds_a_batchnorm1d_into_the_linear_before_it_on_features():
    """A new user's trial: an MLP head's ``Linear`` and ``BatchNorm1d`` stayed two rows with
    ``fold_batchnorm=True``. On ``(N, features)`` inputs the BatchNorm scales and shifts the
    Linear's output features: one row, the norm of ``diag(s) W``; on ``(N, C, L)`` it
    normalizes ``C`` (the Linear acting on ``L``), and the two stay apart; so do they where
    the Linear's output is read twice."""
    torch.manual_seed(0)
    head = _networks.randomize(nn.Sequential(nn.Flatten(), nn.Linear(48, 16),
                                             nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)))
    report = sct.lipschitz_report(head, (3, 4, 4), fold_batchnorm=True)
    assert [row["name"] for row in report] == ["1+2", "4"]
    bn = head[2]
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    norm = float(torch.linalg.matrix_norm(scale[:, None] * head[1].weight.detach(), 2))
    assert report[0]["lower"] <= norm <= report[0]["upper"] <= norm * (1 + 1e-9)
    unfolded = sct.lipschitz_report(head, (3, 4, 4))
    assert [row["name"] for row in unfolded] == ["1", "2", "4"]
    assert jacobian_norm(head, (3, 4, 4)) <= report.network_upper <= unfolded.network_upper
    channels = _networks.randomize(nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(4)))
    assert [row["name"] for row in sct.lipschitz_report(channels, (4, 8),
                                                         fold_batchnorm=True)] == ["0", "1"]
    residual = _networks.randomize(_ResidualHead())
    graph = sct.lipschitz_report(residual, (12,), fold_batchnorm=True)
    assert [row["name"] for row in graph] == ["fc+bn"] and graph.over_graph, graph.reason
    assert graph.network_upper >= jacobian_norm(residual, (12,))
    shared = sct.lipschitz_report(_networks.randomize(_ResidualHead(shared=True)), (12,),
                                  fold_batchnorm=True)
    assert [row["name"] for row in shared] == ["fc", "bn"]


def test_an_executor_runs_the_layers_spectral_work():
    from concurrent.futures import ThreadPoolExecutor

    class Counting(ThreadPoolExecutor):
        tasks = 0

        def submit(self, *args, **kwargs):
            Counting.tasks += 1
            return super().submit(*args, **kwargs)

    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1)), seed=1)
    serial = sct.lipschitz_report(model, (2, 40, 40), method="bounds")
    with Counting(2) as executor:
        mapped = sct.lipschitz_report(model, (2, 40, 40), method="bounds", executor=executor)
    assert Counting.tasks > 0
    for a, b in zip(serial, mapped):
        assert a["name"] == b["name"] and a["method"] == b["method"]
        assert abs(a["upper"] - b["upper"]) <= 1e-12 * a["upper"]
        assert abs(a["lower"] - b["lower"]) <= 1e-12 * a["upper"]


def _every_padding_mode(monkeypatch, seed: int) -> nn.Sequential:
    """Four convolutions, one per padding mode, with the cheap routes of the certificates
    switched off (as on large layers): the whole-Gram one runs only where asked for."""
    from sparseconv import _norm_bounds, _spectral_norm

    monkeypatch.setattr(_norm_bounds, "FULL_FLOPS", 0)
    monkeypatch.setattr(_spectral_norm, "dense_is_affordable", lambda *shape: False)
    return _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=2, padding_mode="circular")), seed=seed)


def test_method_exact_reaches_every_convolution_it_can(monkeypatch):
    """``method="exact"``: every convolution with zero, reflect or replicate padding gets the
    whole-Gram certificate (here, where "bounds" would not take it), a circular one that is
    not periodic the default route."""
    model = _every_padding_mode(monkeypatch, seed=2)
    report = sct.lipschitz_report(model, (2, 12, 12), method="exact")
    rows = {row["name"]: row for row in report}
    for name, c_in in (("0", 2), ("2", 3), ("4", 4)):
        assert rows[name]["upper"] - rows[name]["lower"] <= 1e-6 * rows[name]["upper"], rows[name]
        dense = sct.matrix(model[int(name)], (c_in, 12, 12)).toarray()
        assert rows[name]["lower"] <= np.linalg.norm(dense, 2) <= rows[name]["upper"]
    assert rows["6"]["method"] == "bounds"  # the padding's norm times the unpadded one's bound
    wrapped = np.linalg.norm(sct.matrix(model[6], (4, 12, 12)).toarray(), 2)
    assert rows["6"]["lower"] <= wrapped <= rows["6"]["upper"]
    assert rows["6"]["upper"] - rows["6"]["lower"] > 1e-3 * rows["6"]["upper"]


def test_relative_width_narrows_the_rows_that_miss_it(monkeypatch):
    """``relative_width``: the whole-Gram certificate on each convolution whose interval is
    wider (here all, the cheap routes switched off), the circular one that is not periodic
    warned of by name; the module function takes it too, and a bad value is refused first."""
    model = _every_padding_mode(monkeypatch, seed=3)
    default = {row["name"]: row for row in sct.lipschitz_report(model, (2, 12, 12))}
    with pytest.warns(RuntimeWarning, match=r"lipschitz_report: layer '6' \(Conv2d\): the "
                      r"certified interval's relative width .* is over relative_width=1e-05: "
                      "circular padding that is not periodic") as caught:
        report = sct.lipschitz_report(model, (2, 12, 12), relative_width=1e-5)
    assert len(caught) == 1
    rows = {row["name"]: row for row in report}
    for name, c_in in (("0", 2), ("2", 3), ("4", 4)):
        row, before = rows[name], default[name]
        assert before["upper"] - before["lower"] > 1e-5 * before["upper"], before
        assert row["upper"] - row["lower"] <= 1e-5 * row["upper"], row
        dense = sct.matrix(model[int(name)], (c_in, 12, 12)).toarray()
        assert row["lower"] <= np.linalg.norm(dense, 2) <= row["upper"]
    assert rows["6"]["upper"] == default["6"]["upper"]
    assert sct.spectral_norm(model[2], (3, 12, 12), relative_width=1e-5).relative_width <= 1e-5
    with pytest.raises(ValueError, match="relative_width must be a finite number in"):
        sct.lipschitz_report(model, (2, 12, 12), relative_width=2)


def test_workers_may_be_a_map_like_callable_or_an_executor():
    from concurrent.futures import ThreadPoolExecutor

    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)), seed=5)
    serial = sct.lipschitz_report(model, (3, 12, 12))
    with ThreadPoolExecutor(2) as pool:
        for workers in (map, pool):
            report = sct.lipschitz_report(model, (3, 12, 12), workers=workers)
            assert [row["name"] for row in report] == [row["name"] for row in serial]
            for ours, theirs in zip(report, serial):
                assert ours["upper"] == pytest.approx(theirs["upper"], rel=1e-10)
            assert report.network_upper == pytest.approx(serial.network_upper, rel=1e-10)
        with pytest.raises(ValueError, match="not both"):
            sct.lipschitz_report(model, (3, 12, 12), workers=pool, executor=pool)


def test_relative_width_missed_on_a_worker_is_warned_here():
    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(16, 16, 3, padding=2, padding_mode="circular")), seed=4)
    with pytest.warns(RuntimeWarning, match=r"lipschitz_report: layer '0' \(Conv2d\): the "
                      "certified interval's relative width .* circular padding that is not "
                      "periodic"):
        report = sct.lipschitz_report(model, (16, 24, 24), relative_width=1e-9, workers=2)
    assert report.rows[0]["method"] == "bounds"


def test_workers_give_the_serial_rows_in_order(monkeypatch):
    # the upsampling's norm (a dense SVD of one channel, milliseconds) made to take 0.3 s, so
    # that its row's time shows whether it counts the norm, not only the row's preparation
    module = sys.modules["sparseconv._torch_report_rows"]  # (where the rows are bounded)
    layer_norm = module._layer_norm

    def slow_norm(layer, **kwargs):
        if layer.conv is None:
            time.sleep(0.3)
        return layer_norm(layer, **kwargs)

    monkeypatch.setattr(module, "_layer_norm", slow_norm)
    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
        nn.Conv2d(6, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 24 * 24, 5)), seed=3)
    serial = sct.lipschitz_report(model, (2, 24, 24), fold_batchnorm=True)
    ticks = []
    parallel = sct.lipschitz_report(model, (2, 24, 24), fold_batchnorm=True, workers=2,
                                    progress=lambda done, total, name: ticks.append((done, name)))
    assert [done for done, _ in ticks] == [1, 2, 3, 4, 5]
    assert ticks[0][1] == "5"  # the upsampling (no convolution) here, while the workers run
    assert sorted(name for _, name in ticks) == sorted(r["name"] for r in serial)
    assert [r["name"] for r in parallel] == [r["name"] for r in serial] == [
        "0+1", "3", "5", "6", "9"]
    for a, b in zip(serial, parallel):
        assert a["method"] == b["method"]
        assert (a["circular"] is None) == (b["circular"] is None)
        assert a["circular"] is None or abs(a["circular"] - b["circular"]) <= 1e-12 * a["upper"]
        assert abs(a["upper"] - b["upper"]) <= 1e-10 * a["upper"], (a, b)
        assert abs(a["lower"] - b["lower"]) <= 1e-10 * a["upper"], (a, b)
        assert b["seconds"] > 0
    # the upsampling's own time counts (its norm, not only the row's preparation)
    assert parallel["5"]["seconds"] >= 0.3 and serial["5"]["seconds"] >= 0.3
    assert parallel.network_upper == pytest.approx(serial.network_upper, rel=1e-9)
    with pytest.raises(ValueError, match="not both"):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as executor:
            sct.lipschitz_report(model, (2, 24, 24), workers=2, executor=executor)
    with pytest.raises(TypeError, match="workers must be an int"):
        sct.lipschitz_report(model, (2, 24, 24), workers="2")


def test_an_interrupt_with_workers_keeps_the_finished_rows():
    model = small_chain(nn.ReLU())

    def interrupt(done, total, name):
        if done == 2:
            raise KeyboardInterrupt

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # joblib's warning about unread results, among others
        with pytest.raises(KeyboardInterrupt) as info:
            sct.lipschitz_report(model, (2, 8, 8), progress=interrupt, workers=2)
    partial = info.value.report
    assert not partial.complete and "interrupted after 2 of 5 layers" in partial.reason
    assert len(partial.rows) == 2
    # the pool is usable again after the interrupt
    assert len(sct.lipschitz_report(model, (2, 8, 8), workers=2).rows) == 5


def test_workers_with_method_exact_keep_a_non_periodic_circular_layer_on_auto():
    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(3, 3, 3, padding=2, padding_mode="circular")), seed=2)
    serial = sct.lipschitz_report(model, (2, 10, 10), method="exact")
    parallel = sct.lipschitz_report(model, (2, 10, 10), method="exact", workers=2)
    assert [r["method"] for r in parallel] == [r["method"] for r in serial]
    for a, b in zip(serial, parallel):
        assert abs(a["upper"] - b["upper"]) <= 1e-10 * a["upper"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_layer_is_named(workers):
    model = small_chain(nn.ReLU())
    old = sc.set_memory_limit(2000)
    try:
        with pytest.raises(sc.MatrixTooLargeError, match=r"^layer '[0-9+]+' \([A-Za-z0-9+]+\): "):
            sct.lipschitz_report(model, (2, 8, 8), workers=workers)
    finally:
        sc.set_memory_limit(old)


def _derivative_sup(d1, d2, lo: float = -30.0, hi: float = 30.0) -> float:
    """``sup |f'|`` over ``[lo, hi]`` in 30-digit arithmetic, from ``f'`` and ``f''``: ``|f'|``
    at both ends and at every root of ``f''`` (bracketed by its sign changes on a grid of
    1/20, then halved 60 times). Beyond 30 each ``f'`` here is within 1e-11 of 0 or 1."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    points = [mpmath.mpf(lo) + mpmath.mpf(i) / 20 for i in range(int((hi - lo) * 20) + 1)]
    values = [d2(x) for x in points]
    best = max(abs(d1(points[0])), abs(d1(points[-1])))
    for a, b, fa, fb in zip(points, points[1:], values, values[1:]):
        if fa == 0 or fa * fb < 0:
            for _ in range(60 if fa * fb < 0 else 0):
                middle = (a + b) / 2
                fm = d2(middle)
                a, b, fa = (middle, b, fm) if fa * fm > 0 else (a, middle, fa)
            best = max(best, abs(d1(a)), abs(d1(b)))
    return float(best)


def test_the_constants_of_smooth_activations_bound_their_derivatives():
    """GELU (exact and tanh), SiLU, Mish, SELU, Hardswish, Hardsigmoid, Softsign, CELU,
    LogSigmoid, Tanhshrink and PReLU have constants now (a trial found each refused): every
    one is at least sup |f'| (the roots of f'' in 30 digits), and the report multiplies by it
    (its float rounded up)."""
    mpmath = pytest.importorskip("mpmath")
    from sparseconv._torch_activations import module_constant

    def sigmoid(x):
        return 1 / (1 + mpmath.e ** (-x))

    c, a = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")

    def gelu_tanh(x):  # f = x (1 + t) / 2, t = tanh(u), u = c (x + a x^3)
        t, du = mpmath.tanh(c * (x + a * x ** 3)), c * (1 + 3 * a * x ** 2)
        d1 = (1 + t) / 2 + x / 2 * (1 - t * t) * du
        d2 = (1 - t * t) * du + x / 2 * (1 - t * t) * (6 * a * c * x - 2 * t * du * du)
        return d1, d2

    def mish(x):  # f = x t, t = tanh(log(1 + e^x)), t' = (1 - t^2) sigmoid(x)
        t, s = mpmath.tanh(mpmath.log1p(mpmath.e ** x)), sigmoid(x)
        return (t + x * (1 - t * t) * s,
                (1 - t * t) * s * (2 + x * ((1 - s) - 2 * t * s)))

    smooth = {  # the module: f' and f''
        nn.GELU(): (lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x),
                    lambda x: mpmath.npdf(x) * (2 - x * x)),
        nn.GELU(approximate="tanh"): (lambda x: gelu_tanh(x)[0], lambda x: gelu_tanh(x)[1]),
        nn.SiLU(): (lambda x: sigmoid(x) * (1 + x * (1 - sigmoid(x))),
                    lambda x: sigmoid(x) * (1 - sigmoid(x)) * (2 + x * (1 - 2 * sigmoid(x)))),
        nn.Mish(): (lambda x: mish(x)[0], lambda x: mish(x)[1]),
        nn.LogSigmoid(): (lambda x: sigmoid(-x), lambda x: -sigmoid(x) * sigmoid(-x)),
        nn.Tanhshrink(): (lambda x: mpmath.tanh(x) ** 2,
                          lambda x: 2 * mpmath.tanh(x) * (1 - mpmath.tanh(x) ** 2)),
    }
    scale, alpha = mpmath.mpf("1.0507009873554804934193349852946"), mpmath.mpf(
        "1.6732632423543772848170429916717")
    for module, (d1, d2) in smooth.items():
        constant, sup = module_constant(module), _derivative_sup(d1, d2)
        assert constant is not None and sup <= constant <= sup * 1.001, (module, sup)
    # piecewise: the largest slope of each piece, which is attained
    for module, slope in ((nn.Hardswish(), Fraction(3, 2)), (nn.Hardsigmoid(), Fraction(1, 6)),
                          (nn.CELU(0.5), Fraction(1)), (nn.Softshrink(), Fraction(1)),
                          (nn.Softsign(), Fraction(1))):  # (1 / (1 + |x|)^2, at 0)
        assert module_constant(module) == slope, module
    assert float(scale * alpha) <= module_constant(nn.SELU()) <= float(scale * alpha) * 1.00001
    prelu = nn.PReLU(3, init=0.25).double()
    with torch.no_grad():
        prelu.weight[1] = -2.5
    assert module_constant(prelu) == Fraction(5, 2)
    assert module_constant(nn.RReLU()) == 1 and module_constant(nn.RReLU(-3.0, 0.5)) == 3
    assert module_constant(nn.RReLU(-3.0, 0.5).eval()) == Fraction(5, 4)  # (their mean)
    assert module_constant(nn.RReLU(10.0, 30.0).eval()) == 20
    softmax, generator = nn.Softmax(dim=-1), torch.Generator().manual_seed(0)
    assert module_constant(softmax) == 1 == module_constant(nn.Softmax2d())
    for scale in (0.1, 1.0, 10.0):  # (the Jacobian's norm, max p at most, at random points)
        for z in scale * torch.randn(200, 5, dtype=torch.float64, generator=generator):
            jacobian = torch.autograd.functional.jacobian(softmax, z)
            assert torch.linalg.matrix_norm(jacobian, 2) <= 1 + 1e-12
    for module in (nn.Softplus(), nn.Hardshrink(), nn.Threshold(0.1, 20.0)):  # they jump
        assert module_constant(module) is None, module
    # sampled: no pair of inputs has a larger ratio
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    for module in (*smooth, nn.Hardswish(), nn.Hardsigmoid(), nn.SELU(), nn.CELU(0.5),
                   nn.Softsign(), prelu, nn.RReLU(-3.0, 0.5).eval(), nn.RReLU(0.1, 0.9).eval()):
        y = module(x[None, None, :].expand(1, 3, -1) if module is prelu else x)
        y = y[0, 1] if module is prelu else y
        ratio = ((y[1:] - y[:-1]).abs() / (x[1:] - x[:-1])).max().item()
        assert ratio <= module_constant(module) * (1 + 1e-9), module  # (rounded ratios)


def _around(a: nn.Module, function, b: nn.Module) -> nn.Module:
    """``b(function(a(x)))``, with ``function`` called in forward."""
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = a, b

        def forward(self, x):
            return self.b(function(self.a(x)))

    return Functional().eval()


@pytest.mark.parametrize("lower, upper, call", [
    (0.1, 3.0, lambda x: F.rrelu(x, 0.1, 3.0)),
    (-4.0, 3.0, lambda x: torch.rrelu(x, upper=3.0, lower=-4.0, training=False)),
    (1 / 8, 1 / 3, F.rrelu), (10.0, 30.0, lambda x: F.rrelu(x, 10.0, upper=30.0)),
    (0.5, 6.0, lambda x: torch.rrelu(x, 0.5, 6.0))])
def test_rrelu_as_a_function_has_its_modules_constant(lower, upper, call):
    """``F.rrelu``/``torch.rrelu`` outside training is a leaky ReLU of slope ``(lower + upper)
    / 2`` (torch's own, checked here): the graph bound equals the chain's with ``nn.RReLU``
    (a new user's trial: the function had no constant where the module had one)."""
    x = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(call(x), F.leaky_relu(x, (lower + upper) / 2), rtol=0, atol=0)
    chain = _networks.randomize(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1),
                                              nn.RReLU(lower, upper),
                                              nn.Conv2d(2, 2, 3, padding=1))).eval()
    by_module = sct.lipschitz_report(chain, (2, 6, 6))
    by_function = sct.lipschitz_report(_around(chain[0], call, chain[2]), (2, 6, 6))
    assert by_module.network_upper is not None and by_function.over_graph
    assert by_function.network_upper == pytest.approx(by_module.network_upper, rel=1e-12)
    slope = max(1.0, abs(lower + upper) / 2)
    layers = by_function[0]["upper"] * by_function[1]["upper"]
    assert by_function.network_upper == pytest.approx(slope * layers, rel=1e-12)


_SOFTMAXES = {"F.softmax": lambda h: F.softmax(h, dim=1), "method": lambda h: h.softmax(-1),
              "F.softmin": lambda h: F.softmin(h, 1), "special": lambda h: (
                  torch.special.softmax(h, 2)), "torch.softmax": lambda h: torch.softmax(h, 1)}
_SOFTMAX_REFUSED = {  # (dim=None takes axis 0 of a 3-D input: the batch's)
    "dim=0": (lambda h: F.softmax(h, dim=0), "does not act on each sample alone"),
    "dim=None": (lambda h: F.softmax(h), "does not act on each sample alone"),
    "dtype": (lambda h: F.softmax(h, 1, dtype=torch.float32).double(), "changes the signal's "
              "dtype")}


@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")
@pytest.mark.parametrize("name", [*_SOFTMAXES, *_SOFTMAX_REFUSED])
def test_softmax_as_a_function_has_the_modules_constant(name):
    """Softmax and softmin called in forward over an axis of each sample have ``nn.Softmax``'s
    constant, 1 (a new user's trial: the function had none where the module had one); over
    the batch axis, or rounded to another dtype, no bound. The modules' own constants:
    1 too, and ``nn.Softmax(dim=0)`` refused."""
    chain = _networks.randomize(nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.Softmax(1),
                                              nn.Conv1d(3, 2, 3)), seed=3).eval()
    by_module = sct.lipschitz_report(chain, (2, 9)).network_upper
    assert by_module == pytest.approx(chain_product := sct.lipschitz_report(
        nn.Sequential(chain[0], nn.Softmin(1), chain[2]).eval(), (2, 9)).network_upper)
    assert chain_product is not None
    assert sct.lipschitz_report(nn.Sequential(chain[0], nn.Softmax(0), chain[2]).eval(),
                                (2, 9)).network_upper is None
    function, refusal = _SOFTMAX_REFUSED.get(name, (_SOFTMAXES.get(name), None))
    report = sct.lipschitz_report(_around(chain[0], function, chain[2]), (2, 9))
    if refusal is None:
        assert report.network_upper == pytest.approx(by_module, rel=1e-12)
        assert report.over_graph and report.activations[0].endswith("())")
    else:
        assert report.network_upper is None and refusal in report.reason


@pytest.mark.parametrize("activation, function", [
    (nn.GELU(), F.gelu), (nn.SiLU(), F.silu), (nn.Mish(), F.mish), (nn.Hardswish(),
                                                                    F.hardswish),
    (nn.SELU(), F.selu), (nn.Softsign(), F.softsign)])
def test_activations_as_modules_and_as_functions_give_one_bound(activation, function):
    """A chain's product with the module, and the graph bound with the function called in
    forward: the same constant."""
    chain = _networks.randomize(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), activation,
                                              nn.Conv2d(2, 2, 3, padding=1)))
    by_module = sct.lipschitz_report(chain, (2, 6, 6))
    by_function = sct.lipschitz_report(_around(chain[0], function, chain[2]), (2, 6, 6))
    assert by_module.network_upper is not None and by_function.over_graph
    assert by_function.network_upper == pytest.approx(by_module.network_upper, rel=1e-12)


def test_wrapped_models_are_read_through_their_wrappers():
    """torch.compile's OptimizedModule named rows "_orig_mod.0" and got no bound ("a forward
    of its own set on the instance"); nn.DataParallel failed in torch.fx. Both are read
    through, with the model's own names; DataParallel computes its model's function, and has
    its bound and operator, but a compiled call may compute otherwise than the forward (a
    fifth review: a forward reading torch.compiler.is_compiling(), bounded by 2.01 for a
    compiled map of 112): no bound and no operator, the reason naming model._orig_mod. A lazy
    module not yet run is refused with what to do (it had been "changes its own parameters
    in place"). (In a new interpreter, for torch.compile: ``_isolation``.)"""
    in_a_new_interpreter(_wrapped_models_are_read_through_their_wrappers)


def _wrapped_models_are_read_through_their_wrappers():
    model = _networks.randomize(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                                              nn.Conv2d(2, 2, 3)))
    plain = sct.lipschitz_report(model, (2, 6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrappers = (torch.compile(model), nn.DataParallel(model))
    for wrapped in wrappers:
        report = sct.lipschitz_report(wrapped, (2, 6, 6))
        assert [row["name"] for row in report] == ["0", "2"], type(wrapped).__name__
        assert [row["upper"] for row in report] == [row["upper"] for row in plain]
        assert [r.name for r in sct.trace(wrapped, (2, 6, 6))] == ["0", "1", "2"]
    assert sct.lipschitz_report(wrappers[1], (2, 6, 6)).network_upper == plain.network_upper
    compiled = sct.lipschitz_report(wrappers[0], (2, 6, 6))
    assert compiled.network_upper is None and compiled.reason.startswith(
        "the model is wrapped by torch.compile") and "model._orig_mod" in compiled.reason
    net = sct.network_operator(nn.DataParallel(nn.Sequential(model[0]).eval()), (2, 6, 6))
    assert net.names == ("0",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linear = torch.compile(nn.Sequential(model[0]).eval())
    with pytest.raises(TypeError, match=r"network_operator: the model is wrapped by "
                                        r"torch.compile, .* pass model._orig_mod"):
        sct.network_operator(linear, (2, 6, 6))
    assert sct.network_operator(linear._orig_mod, (2, 6, 6)).names == ("0",)
    lazy = nn.Sequential(nn.LazyConv2d(3, 3)).eval()
    with pytest.raises(ValueError, match=r"module '0' \(LazyConv2d\) has parameters not yet "
                                         r"initialized .* run one forward pass first"):
        sct.lipschitz_report(lazy, (2, 6, 6))
    lazy(torch.zeros(1, 2, 6, 6))
    assert sct.lipschitz_report(lazy, (2, 6, 6)).network_upper is not None


def test_a_fresh_convolution_swapped_in_after_eval_is_reported_with_folds():
    """A Conv2d in training mode computes as in eval mode: with fold_batchnorm=True the
    report's own forward hooks on it must not count as hooks that read the mode."""
    model = _networks.randomize(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2),
                                              nn.ReLU()))
    model[0] = nn.Conv2d(2, 2, 3, padding=1).double()  # in training mode
    report = sct.lipschitz_report(model, (2, 5, 5), fold_batchnorm=True)
    assert [row["name"] for row in report] == ["0+1"] and report.network_upper is not None


def test_a_batchnorm_that_is_not_folded_keeps_its_own_fold_flag():
    """A review: a BatchNorm without running statistics (not linear: given its constant by
    name) skipped its fold flag, which the next BatchNorm took: folded into a convolution
    across a ChannelShuffle, the network bound was 316 for a Jacobian norm of 30,966."""
    conv1, conv2 = nn.Conv2d(4, 4, 1, bias=False), nn.Conv2d(4, 4, 1, bias=False)
    bn2 = nn.BatchNorm2d(4)
    with torch.no_grad():
        conv1.weight.copy_(torch.eye(4)[:, :, None, None])
        conv2.weight.copy_(torch.diag(torch.tensor([1.0, 10.0, 0.1, 1.0]))[:, :, None, None])
        bn2.weight.copy_(torch.tensor([1.0, 0.1, 10.0, 1.0]))
    free = nn.BatchNorm2d(4, track_running_stats=False)  # Lipschitz <= 1/sqrt(eps)
    model = nn.Sequential(conv1, free, conv2, nn.ChannelShuffle(2), bn2).double().eval()
    shape = (4, 3, 3)
    constant = 1 / free.eps**0.5 * (1 + 1e-9)
    x = 1e-3 * torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    jacobian = torch.autograd.functional.jacobian(
        lambda v: model(v.reshape(1, *shape)).reshape(-1), x.reshape(-1))
    lower = float(torch.linalg.matrix_norm(jacobian, 2))
    for fold in (True, False):
        report = sct.lipschitz_report(model, shape, fold_batchnorm=fold,
                                      lipschitz_constants={"1": constant})
        assert [row["name"] for row in report] == ["0", "2", "3", "4"], fold
        # a BatchNorm without running statistics normalizes by the batch's: it mixes the
        # samples, so no network bound (a later review); the rows' product with the
        # constant given bounds the map of one sample, the folds kept apart
        assert report.network_upper is None and "mixes the samples" in report.reason
        product = math.prod(row["upper"] for row in report) * constant
        assert product >= lower, (fold, product, lower)


class _BatchNormWithChild(nn.BatchNorm2d):
    """A BatchNorm subclass with a child module: no leaf, so no record."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.extra = nn.Identity()

    def forward(self, x):
        return self.extra(super().forward(x))


def test_a_batchnorm_that_is_no_leaf_passes_no_fold_flag():
    """A review: the fold flags came from every BatchNorm, records only from leaves; a
    BatchNorm subclass with a child passed its flag to the next BatchNorm, folded into the
    convolution across a ChannelShuffle (network bound 0.958, Jacobian norm 83.9)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([1.0, 1e-4, 1.0, 1.0]))
        conv.weight.mul_(torch.tensor([1.0, 1e-3, 1.0, 1.0]).view(4, 1, 1, 1))
    model = nn.Sequential(conv, _BatchNormWithChild(4), nn.ChannelShuffle(2), bn).double().eval()
    with pytest.warns(RuntimeWarning, match="cannot be checked to be the chain of its layers"):
        report = sct.lipschitz_report(model, (4, 6, 6), fold_batchnorm=True,
                                      assume_chain=True)
    assert "+" not in "".join(row["name"] for row in report)
    x = torch.randn(1, 4, 6, 6, dtype=F64)
    jacobian = torch.autograd.functional.jacobian(lambda v: model(v.view(1, 4, 6, 6)).flatten(),
                                                  x.flatten())
    assert report.network_upper >= float(torch.linalg.matrix_norm(jacobian, 2))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("offset", [1e3, 1e6, 1e7])
def test_the_reading_check_allows_for_cancellation_inside_a_layer(dtype, offset):
    """A review: the check of each row's reading against the traced output measured rounding
    against the output's size; a bias of 1e6 then a zero-sum kernel (outputs near 1, rounded
    at 1e6) and a BatchNorm of mean and bias 1e6 were refused."""
    first, second = nn.Conv1d(1, 1, 1), nn.Conv1d(1, 1, 3, bias=False)
    bn = nn.BatchNorm1d(1)
    with torch.no_grad():
        first.weight.fill_(1.0)
        first.bias.fill_(offset)
        second.weight.copy_(torch.tensor([[[0.3, -0.5, 0.2]]]))
        bn.running_mean.fill_(offset)
        bn.bias.fill_(offset)
    model = nn.Sequential(first, second, bn).eval().to(dtype)
    report = sct.lipschitz_report(model, (1, 64))
    assert [round(row["upper"], 4) for row in report][:2] == [1.0, 0.9994]


class _Tokens(nn.Module):
    """Indexes with its input: token ids stored as floats."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.lin = nn.Embedding(10, 4), nn.Linear(12, 2)

    def forward(self, ids):
        return self.lin(self.emb(ids.long()).flatten(1))


def test_a_model_indexing_with_its_input_is_traced_on_zeros():
    """A review: the trace's random probe made an Embedding of ``x.long()`` raise IndexError
    (negative ids); such a model is traced on zeros, as before."""
    report = sct.lipschitz_report(_Tokens().eval(), (3,))
    assert [row["name"] for row in report] == ["lin"]


def test_a_compiled_module_is_still_torchs_class():
    """A review: nn.Module.compile() sets _compiled_call_impl on the instance, which the check
    for methods replaced on an instance took for one. (In a new interpreter: ``_isolation``.)"""
    in_a_new_interpreter(_a_compiled_module_is_still_torchs_class)


def _a_compiled_module_is_still_torchs_class():
    conv = nn.Conv2d(2, 3, 3, padding=1).double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (torch.compile's own imports)
        conv.compile()
        assert sct.spectral_norm(conv, (2, 5, 5)).upper > 0


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.same = nn.Linear(4, 4, dtype=torch.float64), nn.Identity()

    def forward(self, x):
        return self.same(self.lin(x)) + x


@pytest.mark.parametrize("shape", ["chain", "graph"])
def test_a_call_replaced_on_the_instance_withholds_the_network_bound(shape):
    """A review: ``_compiled_call_impl``, which ``nn.Module.__call__`` runs instead of the
    module's own call where it is set (``nn.Module.compile()`` sets it), set by hand to 100
    times the module's output: a bound of 0.73 for a chain of constant 36.4, and of 1.69
    for a residual model of 69.2, and ``network_operator`` was off from a batch of four on
    where the change began there."""
    torch.manual_seed(0)
    model = (nn.Sequential(nn.Linear(3, 3, dtype=torch.float64), nn.ReLU()) if shape == "chain"
             else _Scaled()).eval()
    module = model[1] if shape == "chain" else model.same
    module._compiled_call_impl = lambda *a, **k: 100 * module._call_impl(*a, **k)
    report = sct.lipschitz_report(model, (3,) if shape == "chain" else (4,))
    assert report.network_upper is None
    assert "has a _compiled_call_impl of its own set on the instance" in report.reason
    if shape == "graph":
        with pytest.raises(TypeError, match="_compiled_call_impl of its own"):
            sct.network_operator(model, (4,))


def test_a_layer_too_large_for_its_sample_still_has_its_shape_checked(monkeypatch):
    """A review: above the sample size the reading went unchecked, its output shape too: a
    circular convolution with its padding set after construction read as 3 outputs fewer."""
    from sparseconv import _torch_kinds, _torch_trace

    monkeypatch.setattr(_torch_trace, "_SAMPLE_ENTRIES", 0)
    # (the layer now refuses a stale padding itself; without that check, the shape's is seen)
    monkeypatch.setattr(_torch_kinds, "_padding_torch_applies",
                        lambda module: [int(p) for p in module._reversed_padding_repeated_twice])
    conv = nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular", bias=False).double()
    conv.padding = (0,)
    with pytest.raises(ValueError, match="does not reproduce its output"):
        sct.lipschitz_report(nn.Sequential(conv).eval(), (1, 64))


class _Squeezed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)).squeeze())  # squeeze: the batch of 1 too


def test_a_layer_called_without_the_batch_axis_is_refused_with_the_cause():
    """A new user's trial: fc(y.squeeze()) on the probe's batch of 1 said only "input_shape
    must be a non-empty tuple of positive integers, got ()"."""
    with pytest.raises(ValueError, match=r"layer 'fc' \(Linear\) is called on a tensor "
                                         r"without the batch axis .*y.squeeze\(\)"):
        sct.lipschitz_report(_Squeezed().double().eval(), (3, 6, 6))
    # a review: a convolution on y[0], PyTorch's unbatched call, kept the old message
    unbatched = _networks.randomize(_Unbatched(), seed=1)
    with pytest.raises(ValueError, match=r"layer 'c2' \(Conv2d\) is called on a tensor "
                                         r"without the batch axis"):
        sct.lipschitz_report(unbatched, (2, 5, 5))


class _Unbatched(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.c2 = nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.c2(self.c(x)[0])[None]  # c2 on the (C, H, W) tensor


class _PerSampleScalar(nn.Module):
    def __init__(self, tail):
        super().__init__()
        self.conv, self.tail = nn.Conv2d(3, 4, 3, padding=1), tail

    def forward(self, x):
        return self.tail(self.conv(x).mean((1, 2, 3)))  # one number a sample: (N,)


@pytest.mark.parametrize("tail", [nn.Identity(), nn.Dropout(0.3), nn.Sequential(),
                                  nn.Flatten(0)], ids=["identity", "dropout", "empty", "flatten"])
def test_an_elementwise_layer_of_one_number_a_sample_keeps_its_bound(tail):
    """A review of the refusal above: an Identity or Dropout on (N,) keeps the batch axis,
    and was refused though bounded before."""
    model = _networks.randomize(_PerSampleScalar(tail), seed=3)
    report = sct.lipschitz_report(model, (3, 6, 6))
    x = torch.zeros((1, 3, 6, 6), dtype=F64)
    jacobian = torch.autograd.functional.jacobian(model, x).reshape(-1, x.numel())
    assert report.network_upper is not None, report.reason
    assert np.linalg.norm(jacobian.numpy(), 2) <= report.network_upper


class _Pair(nn.Module):
    """Two 3x3 layers with small weights, in a forward of the kind ``kind`` names."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.side, self.main = (nn.Conv2d(2, 2, 3, padding=1, dtype=F64) for _ in range(2))
        self.head = nn.Linear(50, 3, dtype=F64)
        with torch.no_grad():
            self.side.weight.mul_(0.01)

    def forward(self, x):
        if self.kind == "side":  # a branch off the signal, not returned (not kept as an
            self.side(x)  # attribute, a change of state, refused whatever the chain)
            return self.main(x)
        if self.kind == "tuple":
            y = self.main(x)
            return y, y
        if self.kind == "untraceable":  # a residual torch.fx cannot trace
            if x.dim() != 4:
                raise ValueError("a batch of images")
            return x + self.side(x)
        y = torch.relu(self.main(self.side(x)))  # "chain": x.shape[0] is no signal
        return self.head(y.reshape(x.shape[0], -1))


def test_a_hooked_module_in_training_mode_is_named_with_its_hook():
    """A new user's trial: a hooked convolution in training mode was named as if the
    convolution's mode mattered; after eval(), its hook was refused. Both said at once."""
    conv = nn.Conv2d(1, 1, 3).double()
    conv.register_forward_hook(lambda module, inputs, output: 10 * output)
    with pytest.raises(ValueError, match=r"training mode \(module '0' \(Conv2d, whose hook "
                       r"may read the mode\)\): call model.eval\(\) first"):
        sct.lipschitz_report(nn.Sequential(conv), (1, 6, 6))
    with pytest.raises(TypeError, match=r"module '0' \(Conv2d\) has a forward hook"):
        sct.lipschitz_report(nn.Sequential(conv).eval(), (1, 6, 6))


@pytest.mark.parametrize("kind", ["side", "tuple", "untraceable", "chain"])
def test_assume_chain_warns_where_the_forward_is_no_chain(kind):
    """A review: a side branch, a tuple output and a residual torch.fx cannot trace got
    assume_chain=True's product without a word (0.01 where the Lipschitz constant is 1,
    1.0 against 1.41), their reasons suggesting it; x.reshape(x.shape[0], -1) in a chain
    drew a warning."""
    model = _Pair(kind).eval()
    shape = (2, 5, 5)
    report = sct.lipschitz_report(model, shape)
    assert "pass assume_chain=True" not in report.reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chained = sct.lipschitz_report(model, shape, assume_chain=True)
    said = [str(w.message) for w in caught if w.category is RuntimeWarning]
    if kind == "chain":
        assert not said and report.network_upper is not None
        assert chained.network_upper == pytest.approx(report.network_upper, rel=1e-12)
        assert chained.warning == "" and "warning" not in str(chained)
    else:
        assert len(said) == 1 and "so the product may be no bound of it" in said[0], said
        # kept with the report, its table and its export (a new user's trial: the warning
        # alone, the JSON's reason empty)
        assert chained.warning == said[0] and chained.network_upper is not None
        assert f"  warning: {said[0]}" in str(chained).splitlines()
        # its line says the product is assumed a bound (a new user's trial took it for one)
        assert "product of the upper bounds, a network bound only if the model is their " \
            "chain (assume_chain; see the warning): " in str(chained)
        assert "network bound (product" not in str(chained)
        assert json.loads(chained.to_json())["warning"] == said[0]
        assert {"side": "calls module 'main' on a value other than the previous call's",
                "tuple": "returns something other than its last layer's output",
                "untraceable": "cannot be checked to be the chain of its layers (torch.fx "
                               "cannot trace it"}[kind] in said[0]


class _InPlaceChain(nn.Module):
    """A chain whose activations change the signal in place, called as statements."""

    def __init__(self):
        super().__init__()
        self.a, self.b = (nn.Conv2d(2, 2, 3, padding=1, dtype=F64) for _ in range(2))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.a(x)
        self.act(y)  # y is the activation's output now
        y = self.b(y)
        F.relu(y, inplace=True)
        return y


def test_assume_chain_takes_activations_in_place_as_the_chain_they_are():
    """A review (left out before): an in-place ReLU called as a statement drew the warning
    that the forward is no chain. The product is checked against the Jacobian's norm."""
    model = _networks.randomize(_InPlaceChain(), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = sct.lipschitz_report(model, (2, 5, 5), assume_chain=True)
    assert report.network_upper == pytest.approx(report[0]["upper"] * report[1]["upper"],
                                                 rel=1e-12)
    for seed in range(5):
        x = torch.randn((1, 2, 5, 5), dtype=F64, generator=torch.Generator().manual_seed(seed))
        jacobian = torch.autograd.functional.jacobian(lambda t: model(t.clone()), x)
        assert np.linalg.norm(jacobian.reshape(50, 50).numpy(), 2) <= report.network_upper


def test_assume_chain_does_not_warn_where_the_bound_is_over_the_graph():
    """A review: with a module the report does not know, the bound is over the graph even
    under assume_chain=True, and the warning said the product was no bound."""

    class Scale(nn.Module):
        def forward(self, x):
            return 3.0 * x

    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, dtype=F64), Scale()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = sct.lipschitz_report(model, (2, 5, 5), assume_chain=True)
    assert report.over_graph and report.network_upper == pytest.approx(
        3 * report[0]["upper"], rel=1e-12)


class _Attending(nn.Module):
    """A convolution, then attention over its positions (unpacking its weights too)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 1)
        self.a = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.c(x).flatten(2).transpose(1, 2)
        y, _ = self.a(y, y, y)
        return self.fc(y.mean(1))


def test_attention_is_traced_and_named_where_it_stops_the_bound():
    """(A new user's trial: nn.MultiheadAttention, whose forward reads its out_proj's
    weights without calling it, left no record at all, and the reason spoke of a transpose
    and an unused getitem, never of attention.)"""
    model = _Attending().eval()
    records = sct.trace(model, (3, 4, 4))
    assert [(r.name, type(r.module).__name__, r.linear) for r in records] == [
        ("c", "Conv2d", True), ("a", "MultiheadAttention", False), ("fc", "Linear", True)]
    report = sct.lipschitz_report(model, (3, 4, 4))
    assert report.network_upper is None
    assert report.reason.startswith("module a (MultiheadAttention) is neither a layer "
                                    "sparseconv.torch reads nor an activation of known "
                                    "constant"), report.reason
    # a constant for it is taken, and still no bound: its tuple has no rule (sound)
    given = sct.lipschitz_report(model, (3, 4, 4), lipschitz_constants={"a": 1.0})
    assert given.network_upper is None and given.reason


def test_the_numpy_route_runs_by_python_inside_a_compiled_function():
    """(An audit: inside a function compiled by ``torch.compile``, Dynamo traced the numpy
    route of ``spectral_norm``, ``singular_values`` and the rest: a 16 -> 16 layer on 24x24
    crashed in Dynamo, "Expected np.nditer base", and a circular layer's singular values
    moved by 1.4e-15 -- other roundings under a certificate.) Each non-differentiable
    function of ``sparseconv.torch`` runs by Python there: the eager results, bit for bit."""
    in_a_new_interpreter(_numpy_route_inside_a_compiled_function)


def _numpy_route_inside_a_compiled_function():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False).double()
    circular = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular").double()
    chain = _networks.randomize(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                                              nn.Conv2d(3, 2, 3, stride=2))).eval()
    x = np.random.default_rng(0).standard_normal(16 * 24 * 24)
    calls = {  # (the call compiled, then what is compared, outside the compiled function)
        "spectral_norm": (lambda: sct.spectral_norm(conv, (16, 24, 24)),
                          lambda r: (r.lower, r.upper, r.value)),
        "singular_values": (lambda: sct.singular_values(circular, (4, 8, 8)), None),
        "symbol": (lambda: sct.symbol(circular, (4, 8, 8)), None),
        "matrix": (lambda: sct.matrix(circular, (4, 8, 8)), lambda m: m.toarray()),
        "affine": (lambda: sct.affine(circular, (4, 8, 8)), lambda a: a.bias),
        "operator": (lambda: sct.operator(conv, (16, 24, 24)), lambda op: op.matvec(x)),
        "network_operator": (lambda: sct.network_operator(circular, (4, 8, 8)),
                             lambda n: n.operator.matvec(x[:256])),
        "lipschitz_report": (lambda: sct.lipschitz_report(chain, (2, 9, 9)),
                             lambda report: [(row["lower"], row["upper"]) for row in report]),
        "lipschitz_bounds": (lambda: sct.lipschitz_bounds(chain, (2, 9, 9)),
                             lambda bounds: sorted((k, v.item()) for k, v in bounds().items())),
        "trace": (lambda: sct.trace(chain, (2, 9, 9)),
                  lambda records: [(r.name, r.input_shape) for r in records]),
    }
    for name, (call, value) in calls.items():
        value = value or (lambda result: result)
        torch._dynamo.reset()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (Dynamo's own, on graph breaks)
            compiled = value(torch.compile(call, backend="eager")())
        expected = value(call())
        np.testing.assert_array_equal(np.asarray(compiled, dtype=object),
                                      np.asarray(expected, dtype=object), err_msg=name)


def test_a_model_that_is_one_activation_is_named_so():
    """A new user's trial: the report of a bare nn.ReLU listed its activation as " (ReLU)"."""
    report = sct.lipschitz_report(nn.ReLU(), (3, 4))
    assert report.activations == ("(model) (ReLU)",) and report.network_upper == 1.0


def _batch_folding_chain() -> nn.Sequential:
    """A review's chain whose reshapes fold the batch axis into a spatial one: a circular
    convolution along it then mixes the samples (its product 2.0; a batch of two: 3.0)."""
    a = nn.Conv2d(1, 1, 1, bias=False, dtype=F64)
    b = nn.Conv2d(1, 1, (3, 1), padding=(1, 0), padding_mode="circular", bias=False,
                  dtype=F64)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.copy_(torch.tensor([1.0, -1.0, 1.0], dtype=F64).view(1, 1, 3, 1))
    return nn.Sequential(a, nn.Flatten(0, 2), nn.Unflatten(0, (1, 1, -1)), b,
                         nn.Flatten(0, 2), nn.Unflatten(0, (-1, 1, 3))).eval()


@pytest.mark.parametrize("how", ["eager", "script", "trace"])
def test_a_chain_that_mixes_the_samples_of_a_batch_gets_no_product(how):
    model = _batch_folding_chain()
    shape = (1, 3, 4)
    jacobian = torch.autograd.functional.jacobian(
        lambda z: model(z.view(2, *shape)).flatten(), torch.zeros(2 * 12, dtype=F64))
    assert np.linalg.norm(jacobian.numpy(), 2) == pytest.approx(3.0)  # above the product, 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        compiled = {"eager": model, "script": torch.jit.script(model) if how == "script"
                    else None, "trace": torch.jit.trace(model, torch.zeros((1, *shape),
                                                                          dtype=F64))
                    if how == "trace" else None}[how]
    report = sct.lipschitz_report(compiled, shape)
    assert report.network_upper is None and "mixes the samples of a batch" in report.reason
    assert len(report) == 2  # (the rows stay: each layer's bound on the shape it ran on)


def test_a_mixing_behind_a_gate_the_probe_leaves_shut_is_seen():
    """A review: a circular convolution over the folded batch axis behind a ReLU whose bias
    of -100 keeps it shut on the probe: a product of 0.086 for a map of 0.85 in a batch of
    two. The check runs the probe scaled by 1e3 either way too, where the gate opens."""
    lin = nn.Linear(4, 4, dtype=F64)
    conv = nn.Conv1d(1, 1, 5, padding=2, padding_mode="circular", bias=False, dtype=F64)
    with torch.no_grad():
        lin.bias.fill_(-100.0)
        conv.weight.copy_(torch.tensor([[[1.0, 0.0, 0.1, 0.0, -1.0]]]))
    model = nn.Sequential(lin, nn.ReLU(), nn.Flatten(0, 1), nn.Unflatten(0, (1, 1, -1)), conv,
                          nn.Flatten(0, 2), nn.Unflatten(0, (-1, 4))).eval()
    report = sct.lipschitz_report(model, (4,))
    assert report.network_upper is None and "mixes the samples of a batch" in report.reason


def test_a_constant_given_to_a_call_that_mixes_the_samples_gets_no_bound_over_the_graph():
    """A new user's trial: batch statistics (``F.batch_norm(..., training=True)``, a
    BatchNorm without running statistics) given the constant 1.0 in a model that is no chain:
    a bound of 1.13 for a map of one sample of norm 2.6, where the same in a Sequential was
    refused. The bound over the graph takes a constant given as given; the model's output
    for one sample, alone and in a batch, tells."""
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return F.batch_norm(self.c(x), None, None, training=True)

    class Module(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4, track_running_stats=False)

        def forward(self, x):
            return self.bn(self.c(x))

    for model, given in ((Functional(), {"batch_norm": 1.0}), (Module(), {"bn": 1.0})):
        report = sct.lipschitz_report(model.double().eval(), (3, 4, 4),
                                      lipschitz_constants=given)
        assert report.network_upper is None and not report.over_graph
        assert "mixes the samples of a batch" in report.reason, report.reason
        assert "so the bound over its graph is no bound" in report.reason, report.reason
        assert [row["name"] for row in report] == ["c"]  # (its rows stay)
    # (a review: a -inf channel beside them, a masked logit's, made the check compare shapes
    # alone: a bound of 0.956 for a map of norm 2.5)
    class Masked(Functional):
        def forward(self, x):
            y = super().forward(x)
            masked = torch.full((y.shape[0], 1, y.shape[2], y.shape[3]), -math.inf,
                                dtype=y.dtype)
            return torch.cat([y, masked], 1)

    report = sct.lipschitz_report(Masked().double().eval(), (3, 4, 4),
                                  lipschitz_constants={"batch_norm": 1.0})
    assert report.network_upper is None and "mixes the samples" in report.reason
    # a constant given for a call that acts on each sample alone keeps its bound
    class Soft(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return F.softplus(self.c(x)) + x.sum(1, keepdim=True)

    report = sct.lipschitz_report(Soft().double().eval(), (3, 4, 4),
                                  lipschitz_constants={"softplus": 1.0})
    assert report.network_upper is not None and report.over_graph, report.reason

    class Scaled(nn.Module):  # a constant returned beside the signal's output (CLIP's logit
        def __init__(self):  # scale): no batch axis, the same alone (a review found it
            super().__init__()  # refused as mixing the samples)
            self.c = nn.Conv2d(3, 4, 3, padding=1)
            self.t = nn.Parameter(torch.tensor(2.0))

        def forward(self, x):
            return self.c(x), self.t.exp()

    model = Scaled().double().eval()
    report = sct.lipschitz_report(model, (3, 4, 4))
    assert report.network_upper is not None, report.reason
    assert report.network_upper >= jacobian_norm(model.c, (3, 4, 4)) * (1 - 1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_model_in_fewer_than_32_bits_gets_its_rows_and_no_network_bound(dtype):
    """A review: a float16 chain got 1.02, where changing one input by one unit in the last
    place changed its output by 23 times as much."""
    chain = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3)).eval()
    expected = sct.lipschitz_report(chain, (2, 6, 6))
    report = sct.lipschitz_report(chain.to(dtype), (2, 6, 6))
    assert report.network_upper is None and f"computes in {dtype}" in report.reason
    assert len(report) == 2 and all(row["upper"] >= row["lower"] > 0 for row in report)
    assert expected.network_upper is not None


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_a_model_whose_first_parameter_is_complex_runs_on_a_real_probe(dtype):
    """A Fourier layer's complex weights, registered first, made the probe complex, and the
    forward's ``rfft2`` failed on it: the probe is the real dtype of the same precision."""
    class Fourier(nn.Module):
        def __init__(self):
            super().__init__()
            self.modes = nn.Parameter(torch.randn(2, 6, 4, dtype=dtype))
            self.conv = nn.Conv2d(2, 2, 3, padding=1).to(dtype.to_real())

        def forward(self, x):
            spectrum = torch.fft.rfft2(x, norm="ortho") * self.modes
            return self.conv(torch.fft.irfft2(spectrum, s=x.shape[-2:], norm="ortho"))

    model = Fourier().eval()
    report = sct.lipschitz_report(model, (2, 6, 6))
    (row,) = report
    norm = jacobian_norm(copy.deepcopy(model.conv).double(), (2, 6, 6))
    assert row["name"] == "conv" and row["lower"] <= norm * (1 + 1e-12) <= row["upper"] * (
        1 + 2e-12)


class _StandardizedConv(nn.Conv2d):
    """BiT's weight-standardised convolution: ``F.conv2d`` by a weight its forward computes."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / w.std(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class _Calls(nn.Module):
    """Linear functions called in ``forward``, each one a row, with the map of the call."""

    def __init__(self):
        super().__init__()
        self.c1 = _StandardizedConv(2, 3, 3, stride=2, padding=1)
        self.right = nn.Parameter(torch.randn(4, 5))
        self.left = nn.Parameter(torch.randn(3, 4))
        self.mix = nn.Parameter(torch.randn(2, 3))
        self.head = nn.Parameter(torch.randn(4, 2 * 5))

    def calls(self) -> dict:
        """Each call's name, type, input shape and map of one sample's batch."""
        return {
            "c1.conv2d": ("F.conv2d", (2, 8, 8), self.c1),
            "avg_pool2d": ("F.avg_pool2d", (3, 4, 4),
                           lambda v: F.avg_pool2d(v, 3, 1, padding=1, count_include_pad=False)),
            "matmul": ("matmul", (3, 4, 4), lambda v: v @ self.right),
            "matmul_1": ("matmul", (3, 4, 5), lambda v: self.left @ v),
            "einsum": ("einsum", (3, 3, 5), lambda v: torch.einsum("bchw,dc->bdw", v, self.mix)),
            "linear": ("F.linear", (2 * 5,), lambda v: F.linear(v, self.head)),
        }

    def forward(self, x):
        y = F.avg_pool2d(torch.relu(self.c1(x)), 3, 1, padding=1, count_include_pad=False)
        y = self.left @ (y @ self.right)
        y = torch.einsum("bchw,dc->bdw", y, self.mix)  # (h summed: 3 entries each)
        return F.linear(torch.tanh(y).flatten(1), self.head)


def test_linear_functions_called_in_forward_get_rows():
    """A weight-standardised convolution, a pooling, products by constant matrices on both
    sides, an einsum that sums a label and F.linear: each call a row after the modules', its
    shapes, nnz and certified interval those of its own Jacobian (a new user saw no row for
    the standardised convolution, whose norm the network bound had)."""
    torch.manual_seed(7)
    model = _Calls().double().eval()
    report = sct.lipschitz_report(model, (2, 8, 8))
    assert report.network_upper is not None
    rows = {row["name"]: row for row in report}
    assert list(rows) == list(model.calls())
    for name, (kind, shape, call) in model.calls().items():
        with torch.no_grad():
            out = call(torch.zeros((1, *shape), dtype=F64))
        j = jacobian_matrix(call, shape, torch.randn((1, *shape), dtype=F64))
        norm = np.linalg.norm(j, 2)
        row = rows[name]
        assert (row["type"], row["input_shape"], row["output_shape"]) == (
            kind, shape, tuple(out.shape[1:])), name
        assert row["nnz"] == np.count_nonzero(j), name
        assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12), name
        assert row["upper"] - row["lower"] <= 1e-6 * norm, name
        assert (row["circular"] is None) == (kind != "F.conv2d"), name


class _BlurPooled(nn.Module):
    """A convolution, an anti-aliased downsampling (a fixed binomial kernel by ``F.conv2d``
    after ``F.pad``, in a module of the user's), a convolution: the function rows between
    the modules', in the order the forward runs them."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, padding=1)
        self.blur = _Blur()
        self.c2 = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.c2(torch.relu(self.blur(torch.relu(self.c1(x)))))


class _Blur(nn.Module):
    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3))

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, stride=2, groups=3)


@pytest.mark.parametrize("fold", [False, True])
def test_function_rows_are_in_the_order_the_forward_runs(fold):
    """A new user's trial: a blur pool's rows came after the convolution that reads them."""
    model = _BlurPooled().eval()
    if fold:  # (a module called twice, a BatchNorm folded: rows by call, as the graph's)
        model.c1 = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)).eval()
    report = sct.lipschitz_report(model, (2, 8, 8), fold_batchnorm=fold)
    first = ["c1.0+c1.1"] if fold else ["c1"]
    assert [row["name"] for row in report] == [*first, "blur.pad", "blur.conv2d", "c2"]
    assert report.network_upper is not None, report.reason


@pytest.mark.parametrize("seed", range(3))
def test_rows_hold_integer_layers_norms_in_exact_arithmetic(seed):
    """Each row's certified interval against its module's own Jacobian (autograd, integers
    for small-integer weights, so its Gram matrix is exact), decided in exact rationals: no
    allowance for a reference's rounding. A chain of every padding mode, a strided and a
    transposed convolution, a 1x1 shortcut-like layer and a Linear."""
    rng = np.random.default_rng([20261206, seed])
    layers = [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
              nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
              nn.Conv2d(3, 2, 2, stride=2, padding=1, padding_mode="replicate"),
              nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"),
              nn.ConvTranspose2d(2, 2, 2, stride=2), nn.Conv2d(2, 1, 1, stride=2),
              nn.Flatten(), nn.Linear(4, 3)]
    model = nn.Sequential(*layers).double().eval()
    with torch.no_grad():
        for module in model:
            if hasattr(module, "weight"):
                module.weight.copy_(torch.from_numpy(
                    rng.integers(-2, 3, module.weight.shape).astype(np.float64)))
                module.bias.zero_()
    shape = (2, 3, 3)
    report = sct.lipschitz_report(model, shape)
    weighted = [m for m in model if hasattr(m, "weight")]
    inputs: dict = {}

    def keep(module, args, output) -> None:  # (a hook that returns a value replaces the output)
        inputs[module] = args[0]

    handles = [m.register_forward_hook(keep) for m in weighted]
    with torch.no_grad():
        model(torch.zeros((1, *shape), dtype=F64))
    for handle in handles:
        handle.remove()
    checked = 0
    for row, module in zip(report, weighted, strict=True):
        jac = torch.autograd.functional.jacobian(module, inputs[module])
        jac = jac.reshape(-1, inputs[module].numel()).numpy()
        result = sc.SpectralNorm(row["lower"], row["lower"], row["upper"], row["method"], {})
        assert_exactly_contains(result, exact_gram(jac), (seed, row["name"]))
        checked += 1
    assert checked == 7


def _csr_bytes(a: np.ndarray) -> int:
    """The bytes of scipy's own CSR array of ``a``'s nonzeros."""
    c = sp.csr_array(a)
    return c.data.nbytes + c.indices.nbytes + c.indptr.nbytes


def test_linear_on_a_sequence_counts_every_copy_of_its_matrix():
    """A mutant this catches: _torch_report_rows.py: ``in_features * out_features *
    layer.repeat`` -> ``in_features * out_features``. nn.Linear on a (2, 4) input is applied
    to both rows: its matrix holds two copies of the 3 x 4 weight, 24 entries (autograd's
    Jacobian counts them), and its CSR memory is that of those 24."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, dtype=F64)
    report = sct.lipschitz_report(nn.Sequential(lin).eval(), (2, 4))
    (row,) = list(report)
    j = jacobian_matrix(lin, (2, 4))
    assert row["nnz"] == np.count_nonzero(j) == 24
    assert row["memory"] == _csr_bytes(j)
    norm = np.linalg.norm(j, 2)
    assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12)


def test_folded_float32_batchnorm_keeps_the_upper_bound_above_the_exact_norm():
    """A mutant this catches: _torch_report_rows.py: ``_fold(module, ..., dtype=
    torch.float64)`` -> ``_fold(module, ...)``: folding in float32 rounds the folded
    weight 1/sqrt(3) down to 0.57735026 and the row's upper bound falls below the norm. The
    oracle: a 1x1 convolution of weight 1 then a BatchNorm, whose map is scale * I with
    scale = gamma / sqrt(var + eps) from the module's stored float32 values, in float64, eps
    as PyTorch's float32 kernel adds it (rounded to float32)."""
    conv, bn = nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        bn.running_var.fill_(3.0 - 1e-5)
    model = nn.Sequential(conv, bn).eval()
    exact = 1.0 / np.sqrt(float(bn.running_var.double()) + float(np.float32(bn.eps)))
    (row,) = list(sct.lipschitz_report(model, (1, 4, 4), fold_batchnorm=True))
    assert row["name"] == "0+1"
    assert row["lower"] <= exact <= row["upper"]


def test_a_folded_convolution_under_the_old_spectral_norm_after_training_is_read():
    """A new user's trial (a PatchGAN discriminator): after one forward with autograd on, the
    old-style ``torch.nn.utils.spectral_norm``'s weight is no graph leaf, and the row of
    ``fold_batchnorm=True`` crashed in ``copy.deepcopy`` ("Only Tensors created explicitly by
    the user ... support the deepcopy protocol"). The oracle: the model's Jacobian."""
    torch.manual_seed(0)
    conv = torch.nn.utils.spectral_norm(nn.Conv2d(3, 4, 4, 2, 1, bias=False))
    model = nn.Sequential(conv, nn.BatchNorm2d(4))
    model(torch.randn(2, 3, 8, 8)).sum().backward()  # a training step's forward
    model.eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].running_mean.normal_()
    (row,) = list(sct.lipschitz_report(model, (3, 8, 8), fold_batchnorm=True))
    plain = nn.Conv2d(3, 4, 4, 2, 1, bias=False).double()  # the weight the hook computed
    with torch.no_grad():
        plain.weight.copy_(conv.weight.detach().double())
    bn = copy.deepcopy(model[1]).double()
    bn.eps = float(np.float32(bn.eps))  # (as the float32 kernel adds it)
    oracle = nn.Sequential(plain, bn).eval()
    exact = np.linalg.norm(jacobian_matrix(oracle, (3, 8, 8)), 2)
    assert row["name"] == "0+1" and row["lower"] <= exact <= row["upper"], (row, exact)


def test_folded_batchnorm_that_cancels_a_large_mean_is_read():
    """A mutant this catches: _torch_report_rows.py: ``max(magnitude(first.module, x),
    magnitude(last.module, x))`` -> ``magnitude(first.module, x)``. A float32 convolution
    then a BatchNorm of running mean and bias 1e7 (outputs near 50, rounded at 1e7 in
    float32): the folded row's reading must be accepted, its interval enclosing the norm of
    autograd's Jacobian of the float64 copy of the pair."""
    torch.manual_seed(0)
    conv, bn = nn.Conv1d(1, 1, 3, bias=False), nn.BatchNorm1d(1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[0.3, -0.5, 0.2]]]))
        bn.running_mean.fill_(1e7)
        bn.bias.fill_(1e7)
    model = nn.Sequential(conv, bn).eval()
    (row,) = list(sct.lipschitz_report(model, (1, 32), fold_batchnorm=True))
    norm = np.linalg.norm(jacobian_matrix(nn.Sequential(conv, bn).double().eval(), (1, 32)), 2)
    assert row["name"] == "0+1"
    assert row["lower"] <= norm * (1 + 1e-9) and norm <= row["upper"] * (1 + 1e-9)


def test_transposed_row_shows_its_periodic_twin():
    """A mutant this catches: _torch_report_rows.py: ``_has_periodic_twin``'s
    ``(*_CONV, *_CONV_T, *_POOL)`` -> ``(*_CONV, *_POOL)``. A ConvTranspose2d(2, 3, 3,
    padding=1) row's circular column is the norm of the same kernel made periodic: the
    circular Conv2d(3, 2, 3, padding=1) of the same weight (the transposed layer's
    adjoint), whose norm autograd's Jacobian gives."""
    torch.manual_seed(1)
    t = nn.ConvTranspose2d(2, 3, 3, padding=1, dtype=F64)
    (row,) = list(sct.lipschitz_report(nn.Sequential(t).eval(), (2, 6, 6)))
    periodic = nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular", bias=False, dtype=F64)
    with torch.no_grad():
        periodic.weight.copy_(t.weight)
    expected = np.linalg.norm(jacobian_matrix(periodic, (3, 6, 6)), 2)
    assert row["circular"] == pytest.approx(expected, rel=1e-9)
    norm = np.linalg.norm(jacobian_matrix(t, (2, 6, 6)), 2)
    assert row["lower"] <= norm * (1 + 1e-12) and norm <= row["upper"] * (1 + 1e-12)


class _TwoNormsOfOneOutput(nn.Module):
    """``bn1(y) + bn2(y)`` of one convolution's output, behind data-dependent control flow
    (torch.fx cannot trace it, so the report cannot see that ``y`` is read twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, dtype=F64)
        self.bn1, self.bn2 = nn.BatchNorm2d(2, dtype=F64), nn.BatchNorm2d(2, dtype=F64)

    def forward(self, x):
        y = self.conv(x)
        if float(x.sum()) > 1e9:
            return y
        return self.bn1(y) + self.bn2(y)


def test_a_second_batchnorm_of_a_folded_output_keeps_its_own_row():
    """A mutant this catches: _torch_report.py: ``if todo[i][1] is None:`` -> ``if True:``
    (the second BatchNorm replaced the first in the convolution's fold: bn1's row was
    lost). Every BatchNorm the forward calls (seen by torch's own forward hooks) must be
    in some row."""
    torch.manual_seed(0)
    model = _TwoNormsOfOneOutput().eval()
    called = []
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: called.append(n))
               for n, m in model.named_children()]
    with torch.no_grad():
        model(torch.zeros((1, 1, 5, 5), dtype=F64))
    for h in handles:
        h.remove()
    report = sct.lipschitz_report(model, (1, 5, 5), fold_batchnorm=True)
    in_rows = {part for row in report for part in row["name"].split("+")}
    assert set(called) == {"conv", "bn1", "bn2"} and set(called) <= in_rows


def test_batchnorm_of_a_tiny_signal_at_a_large_mean_is_read():
    """A mutant this catches: _torch_probe.py: ``largest * (1.0 + max|x|)`` -> ``largest *
    (0.0 + max|x|)``. A float32 BatchNorm of running mean and bias 1e7 reads the output of a
    convolution of weight 1e-6 (inputs near 1e-6, outputs near 50 rounded at 1e7): the
    mean and bias are summed whatever the input's size, so the row must be given, its
    interval enclosing the norm of autograd's Jacobian of the float64 copy."""
    conv, bn = nn.Conv1d(1, 1, 1, bias=False), nn.BatchNorm1d(1)
    with torch.no_grad():
        conv.weight.fill_(1e-6)
        bn.running_mean.fill_(1e7)
        bn.bias.fill_(1e7)
    model = nn.Sequential(conv, bn).eval()
    rows = {row["name"]: row for row in sct.lipschitz_report(model, (1, 16))}
    norm = np.linalg.norm(jacobian_matrix(nn.BatchNorm1d(1).double().eval(), (1, 16)), 2)
    assert rows["1"]["lower"] <= norm * (1 + 1e-9) and norm <= rows["1"]["upper"] * (1 + 1e-9)


def test_a_float16_layer_that_overflows_on_the_probe_keeps_its_row():
    """A mutant this catches: _torch_probe.py: ``matches`` returning False instead of True
    where an output is not finite (the docstring: a float16 model overflowing on the probe
    compares shapes alone). A float16 Conv1d of taps 3e4 overflows to inf on the seeded
    probe; its row must still be given, enclosing the norm of its float64 copy's Jacobian."""
    conv = nn.Conv1d(1, 1, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[3e4, 2e4, 3e4]]]))
    model = nn.Sequential(conv).half().eval()
    probe = torch.randn((1, 1, 16), generator=torch.Generator().manual_seed(0),
                        dtype=F64).half()
    with torch.no_grad():
        assert not bool(torch.isfinite(model(probe)).all())  # the case: an overflow
    (row,) = list(sct.lipschitz_report(model, (1, 16)))
    norm = np.linalg.norm(jacobian_matrix(nn.Sequential(conv).double(), (1, 16)), 2)
    assert row["lower"] <= norm * (1 + 1e-9) and norm <= row["upper"] * (1 + 1e-9)


# floats whose shortest repr needs 17 significant digits: a 15- or 12-digit export loses them
_LOWER = 0.1 + 0.2  # 0.30000000000000004


_UPPER = 1 / 3 + 1e-16


_CIRCULAR = 2 / 3


_NETWORK = 5 / 7  # 0.7142857142857143


def _rows() -> tuple[dict, ...]:
    return (
        dict(name="conv", type="Conv2d", input_shape=(1, 4, 4), output_shape=(2, 4, 4),
             nnz=288, memory=3600, lower=_LOWER, upper=_UPPER, method="dense",
             converged=True, circular=_CIRCULAR, seconds=0.125 + 1e-17),
        dict(name="fc", type="Linear", input_shape=(32,), output_shape=(3,), nnz=96,
             memory=1172, lower=_UPPER / 2, upper=_UPPER, method="bounds",
             converged=False, circular=None, seconds=1 / 7),
    )


def _report(**kwargs) -> LipschitzReport:
    fields = dict(rows=_rows(), network_upper=_NETWORK,
                  activations=("1 (ReLU)", "2 (Sigmoid, 0.25)"), chain_checked=False)
    return LipschitzReport(**{**fields, **kwargs})


def _csv_cell(value) -> str:
    """What the CSV must hold for a row's value, read back by ``csv``."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def _csv(report, **options) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(report.to_csv(**options), newline=""))
    return list(reader.fieldnames or []), list(reader)


def test_csv_holds_every_row_field_by_field_in_the_columns_order():
    """A mutant this catches: _report_table.py: ``writer.writeheader()`` -> ``pass``; also
    ``"x".join(map(str, v))`` -> ``",".join(...)``, ``fieldnames=self.columns`` ->
    ``sorted(self.columns)``, ``for row in self.rows:`` -> ``self.rows[:-1]``, a float written
    as ``f"{v:.15g}"``, an int as ``float(v)`` and a bool as ``int(v)``."""
    report = _report()
    header, rows = _csv(report, network_row=False)
    assert header == list(report.columns)
    assert len(rows) == len(report.rows)
    for got, row in zip(rows, report.rows):
        for key in report.columns:
            value = row[key]
            if isinstance(value, float):
                assert Fraction(float(got[key])) == Fraction(value), (key, got[key], value)
            else:
                assert got[key] == _csv_cell(value), (key, got[key], value)
        assert int(got["nnz"]) == row["nnz"] and got["nnz"].isdigit()


def test_csv_network_row_of_a_partial_report_says_none():
    """A mutant this catches: _report_table.py: ``if self.network_upper is None:`` ->
    ``if self.network_upper is None and self.complete:`` (an interrupted run's CSV ended with
    a "product" network line, empty bound, as if complete); also the network row's
    ``method = f"none: {self.reason}"`` -> ``"none"``."""
    reason = "interrupted after 1 of 2 layers"
    report = _report(rows=_rows()[:1], network_upper=None, reason=reason, complete=False)
    _, rows = _csv(report)
    assert [r["name"] for r in rows] == ["conv", "(network)"]
    last = rows[-1]
    assert (last["type"], last["upper"], last["method"]) == ("Network", "", f"none: {reason}")
    assert all(last[k] == "" for k in report.columns if k not in ("name", "type", "method"))


@pytest.mark.parametrize("bound", [0.0, _NETWORK, 1e308 * 1.5])
def test_csv_and_json_network_bound_is_the_float_itself(bound):
    """A mutant this catches: _report_table.py: the network row's ``"upper":
    self.network_upper`` -> ``self.network_upper or None`` (a zero bound, of a network whose
    weights are zero, exported as no bound) and -> ``round(self.network_upper, 6)``."""
    report = _report(network_upper=bound, over_graph=True)
    last = _csv(report)[1][-1]
    assert last["method"] == "graph" and last["upper"] != ""
    assert Fraction(float(last["upper"])) == Fraction(bound)
    data = json.loads(report.to_json())
    assert data["network_upper"] == bound and type(data["network_upper"]) is float


def test_json_holds_every_field_exactly():
    """A mutant this catches: _report_table.py: ``"reason": self.reason, `` -> `` `` (the key
    lost); also ``"warning"`` lost, ``"complete": self.complete`` -> ``True``,
    ``"chain_checked"`` -> ``True``, the activations joined into one string, the layers'
    shapes stringified as ``"1x4x4"``, a field (``seconds``) dropped, floats rounded to 12
    digits."""
    report = _report(complete=False, reason="interrupted after 2 of 2 layers",
                     network_upper=None, warning="assume_chain=True: the product ...")
    data = json.loads(report.to_json())
    assert set(data) == {"layers", "network_upper", "activations", "chain_checked", "reason",
                         "complete", "over_graph", "warning"}
    assert data["network_upper"] is None and data["complete"] is False
    assert data["chain_checked"] is False and data["over_graph"] is False
    assert data["reason"] == report.reason and data["warning"] == report.warning
    assert data["activations"] == list(report.activations)
    assert len(data["layers"]) == len(report.rows)
    for got, row in zip(data["layers"], report.rows):
        assert list(got) == list(row)  # every field, in the row's order
        for key, value in row.items():
            if isinstance(value, tuple):
                assert got[key] == list(value), key
            elif isinstance(value, float):
                assert type(got[key]) is float and Fraction(got[key]) == Fraction(value), key
            else:
                assert got[key] == value and type(got[key]) is type(value), key


def _chain():
    return _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(2 * 6 * 6, 3)), seed=5).eval()


class _FakeBar:
    """A stand-in for ``tqdm.auto.tqdm`` that records what the report does to it."""

    made: list[_FakeBar] = []

    def __init__(self, total=None, **options):
        self.total, self.options, self.n = total, options, 0
        self.updates, self.postfix, self.closed = [], [], 0
        _FakeBar.made.append(self)

    def set_postfix_str(self, text, refresh=True):
        self.postfix.append(text)

    def update(self, n=1):
        self.updates.append(n)
        self.n += n

    def close(self):
        self.closed += 1


@pytest.fixture
def fake_tqdm(monkeypatch):
    _FakeBar.made = []
    module = types.ModuleType("tqdm.auto")
    module.tqdm = _FakeBar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", module)
    return _FakeBar.made


def test_progress_bar_is_told_each_layer_and_closed(fake_tqdm):
    """A mutant this catches: _torch_report.py: ``return update, bar.close`` -> ``return
    update, lambda: None`` (the bar never closed); also the closer's call removed, the
    postfix's ``name`` replaced, the bar's ``total`` off by one, and a bar made for
    ``progress=False``."""
    report = sct.lipschitz_report(_chain(), (2, 6, 6), progress=True)
    assert len(fake_tqdm) == 1
    bar = fake_tqdm[0]
    assert bar.total == len(report) == 3 and bar.n == 3 and bar.closed == 1
    assert bar.postfix == [row["name"] for row in report] == ["0", "2", "5"]
    assert bar.options.get("file") is sys.stderr
    sct.lipschitz_report(_chain(), (2, 6, 6), progress=False)
    assert len(fake_tqdm) == 1  # no bar for progress=False


class _Functions(nn.Module):
    """Two linear functions the forward calls (torchvision's MobileNetV2 and DenseNet pool
    so), each a row of the bound over the graph."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 2)
        self.register_buffer("w", torch.ones(8, 8, 1, 1))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.conv(x), (1, 1))
        return self.fc(torch.flatten(F.conv2d(x, self.w), 1))


def test_progress_counts_the_rows_of_the_functions_the_forward_calls(fake_tqdm):
    """A new user's trial: ``progress`` was told of the layers only, never of the rows of the
    linear functions the bound over the graph bounds (``total`` 2 for 4 rows). They now grow
    ``total`` as they are found, and the bar is closed after them."""
    calls: list = []
    report = sct.lipschitz_report(_Functions().eval(), (3, 8, 8),
                                  progress=lambda *call: calls.append(call))
    names = [row["name"] for row in report]
    assert names == ["conv", "adaptive_avg_pool2d", "conv2d", "fc"]
    assert [done for done, _, _ in calls] == [1, 2, 3, 4] and calls[-1][:2] == (4, 4)
    assert sorted(name for _, _, name in calls) == sorted(names)
    sct.lipschitz_report(_Functions().eval(), (3, 8, 8), progress=True)
    bar = fake_tqdm[-1]
    assert bar.total == bar.n == 4 and bar.closed == 1 and len(bar.postfix) == 4


def test_progress_bar_is_closed_on_an_interrupt(fake_tqdm, monkeypatch):
    """A mutant this catches: _torch_report.py: ``counter.close()`` in ``lipschitz_report``'s
    ``finally`` -> ``pass`` (an interrupted run left its bar open on stderr)."""
    def interrupted(done, total, name):
        raise KeyboardInterrupt

    monkeypatch.setattr(_FakeBar, "update", lambda self, n=1: interrupted(0, 0, ""))
    with pytest.raises(KeyboardInterrupt) as info:
        sct.lipschitz_report(_chain(), (2, 6, 6), progress=True)
    assert fake_tqdm[0].closed == 1
    assert info.value.report.complete is False


def test_interrupt_with_workers_keeps_the_finished_rows_only():
    """A mutant this catches: _torch_report.py: the partial report's rows ``tuple(row for row in
    found if row is not None)`` -> ``tuple(found[:done])``: with workers, the upsampling's row
    (computed here before the workers' rows are read) comes first, so the partial report
    held ``None`` and lost the finished row; its CSV failed."""
    model = _networks.randomize(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Flatten(),
        nn.Linear(3 * 12 * 12, 2)), seed=7).eval()
    full = sct.lipschitz_report(model, (2, 6, 6))
    seen = []

    def interrupt(done, total, name):
        seen.append((done, total, name))
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        sct.lipschitz_report(model, (2, 6, 6), progress=interrupt, workers=map)
    partial = info.value.report
    assert seen == [(1, 3, "2")]  # the upsampling's row is the first done
    assert all(isinstance(row, dict) for row in partial.rows)
    assert [row["name"] for row in partial] == ["2"]
    assert partial["2"]["upper"] == full["2"]["upper"]
    rows = _csv(partial)[1]
    assert [r["name"] for r in rows] == ["2", "(network)"]
    assert rows[-1]["method"] == "none: interrupted after 1 of 3 layers"
    assert json.loads(partial.to_json())["complete"] is False


class _NotSequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _chain()

    def forward(self, x):
        return self.body(x)


def test_partial_report_keeps_chain_checked():
    """A mutant this catches: _torch_report.py: the partial report's ``chain`` ->
    ``True`` (an interrupted run of a model that is no nn.Sequential claimed a checked
    chain)."""
    model = _NotSequential().eval()
    full = sct.lipschitz_report(model, (2, 6, 6), assume_chain=True)

    def interrupt(done, total, name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        sct.lipschitz_report(model, (2, 6, 6), progress=interrupt)
    assert full.chain_checked is False
    assert info.value.report.chain_checked is False


def test_an_interrupt_stops_the_workers_at_once():
    """A mutant this catches: _torch_report.py: ``rows_found.close()  # stops the workers`` ->
    ``pass``: after an interrupt the workers' results were left open (a pool kept running
    its queued layers while the caller held the exception); here a map-like ``workers``
    whose results must be closed by the time the interrupt is caught."""
    closed = []

    def map_like(function, items):
        def results():
            try:
                for item in items:
                    yield function(item)
            finally:
                closed.append(True)
        return results()

    def interrupt(done, total, name):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        sct.lipschitz_report(_chain(), (2, 6, 6), progress=interrupt, workers=map_like)
    assert closed == [True]
    assert len(info.value.report.rows) == 1


# A refusal-deletion sweep of _torch_chain.py (2026-12-06): each test below fails on a mutant
# that deletes one refusal (its ``return "<reason>"`` made ``pass``) which every other test let
# pass.


def test_a_chain_that_does_not_run_on_a_batch_of_two_is_refused_not_raised():
    """A mutant this catches: _torch_chain.py: the samples check's refusal of a forward that
    raises on a batch of two, deleted: an ``UnboundLocalError`` out of lipschitz_report."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Unflatten(0, (1, 1))).double().eval()
    report = sct.lipschitz_report(model, (3,))
    assert report.network_upper is None
    assert report.reason.startswith("its forward does not run on a batch of two (RuntimeError"), (
        report.reason)


def test_two_unknown_modules_are_named_together():
    """A mutant this catches: _torch_chain.py: ``_unknown``'s reason for several modules,
    deleted (``None``): a ``TypeError`` out of lipschitz_report where the bound over the
    graph is refused too."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Softplus(), nn.Linear(3, 3), nn.Softplus())
    report = sct.lipschitz_report(model.double().eval(), (3,))
    assert report.network_upper is None
    assert report.reason.startswith("modules 1 (Softplus), 3 (Softplus) are neither layers "
                                    "sparseconv.torch reads nor activations"), report.reason


@pytest.mark.parametrize("norm, shape", [
    (lambda: nn.InstanceNorm2d(3, affine=True), (3, 4, 4)),
    (lambda: nn.InstanceNorm1d(3), (3, 5)),
    (lambda: nn.GroupNorm(2, 4), (4, 3, 3)),
    (lambda: nn.LayerNorm([3, 3]), (2, 3, 3)),
    (lambda: nn.LayerNorm(2, eps=1.0), (2,)),  # (a review: weights [1, 0], sqrt(1/2))
    (lambda: nn.LayerNorm(1), (3, 1)),  # (one entry a block: no slope at all)
    (lambda: nn.RMSNorm(5, eps=1e-4), (2, 5)),
])
def test_a_sample_normalization_s_lipschitz_constant_lies_between_its_bounds(norm, shape):
    """A new user's trial (CycleGAN's InstanceNorm2d): the constant 1 given for it bounded a
    map whose slope measured 319.6 at inputs of scale 1e-4. ``sample_norm_slope`` bounds
    the constant: no Jacobian exceeds ``upper = max|weight| / sqrt(eps)``, and the one at a
    constant input (zero variance) reaches ``lower``."""
    from sparseconv._torch_activations import sample_norm_slope

    torch.manual_seed(0)
    module = norm().double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-2.0, 2.0)
        if isinstance(module, nn.LayerNorm) and module.eps == 1.0:
            module.weight.copy_(torch.tensor([1.0, 0.0]))
    lower, upper = sample_norm_slope(module, shape)
    norms = []
    for scale in (0.0, 1e-6, 1e-3, 1.0):
        x = torch.randn(1, *shape, dtype=F64) * scale
        x = x + (0.7 if not isinstance(module, nn.RMSNorm) or scale == 0 else 0.0) * (scale > 0)
        norms.append(np.linalg.norm(jacobian_matrix(module, shape, at=x), 2))
    assert max(norms) <= upper * (1 + 1e-12), (norms, upper)
    assert norms[0] >= lower * (1 - 1e-12), (norms, lower)  # (at zero variance)


def test_a_sample_normalization_s_bounds_are_read_off_torchscript_too():
    """A review: a scripted or traced GroupNorm, LayerNorm or RMSNorm stays a ScriptModule,
    and its constant given as 1 was neither named nor warned of (a bound 150 times below an
    empirical estimate)."""
    from sparseconv._torch_activations import sample_norm_slope

    for norm in (nn.GroupNorm(2, 4), nn.LayerNorm([4, 3, 3]), nn.RMSNorm(3, eps=1e-6),
                 nn.InstanceNorm2d(4)):
        eager = sample_norm_slope(norm, (4, 3, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            scripted = getattr(torch.jit.script(nn.Sequential(norm)), "0")
            traced = getattr(torch.jit.trace(nn.Sequential(norm), torch.randn(1, 4, 3, 3)), "0")
        assert eager is not None and sample_norm_slope(scripted, (4, 3, 3)) == eager
        if not isinstance(norm, nn.InstanceNorm2d):  # (the report rebuilds that one eager)
            assert sample_norm_slope(traced, (4, 3, 3)) == eager, norm  # (off its graph)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.LayerNorm([2, 4, 4]),
                          nn.Conv2d(2, 2, 1)).eval()
    for how in ("script", "trace"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            compiled = (torch.jit.script(model) if how == "script" else
                        torch.jit.trace(model, torch.zeros(1, 2, 4, 4)))
        assert "its Lipschitz constant, which lipschitz_constants may give, is at most " \
            "316.2278" in sct.lipschitz_report(compiled, (2, 4, 4)).reason
        with pytest.warns(UserWarning, match=r"lipschitz_constants gives 1 \(LayerNorm\)"):
            sct.lipschitz_report(compiled, (2, 4, 4), lipschitz_constants={"1": 1.0})


class _Functional(nn.Module):
    """A normalization module's map, called as torch's function ``how`` of its arguments."""

    def __init__(self, norm: nn.Module, how):
        super().__init__()
        self.norm, self.how = norm, how

    def forward(self, x):
        m = self.norm
        if isinstance(m, nn.LayerNorm):
            return self.how(x, m.normalized_shape, m.weight, m.bias, m.eps)
        if isinstance(m, nn.GroupNorm):
            return self.how(x, m.num_groups, m.weight, m.bias, m.eps)
        if isinstance(m, nn.RMSNorm):
            return self.how(x, m.normalized_shape, m.weight, m.eps)
        return self.how(x, None, None, m.weight, m.bias, eps=m.eps)


@pytest.mark.parametrize("norm, how, shape", [
    (lambda: nn.LayerNorm([3, 3], eps=1e-3), F.layer_norm, (2, 3, 3)),
    (lambda: nn.LayerNorm(4, eps=1e-2), torch.layer_norm, (2, 4)),
    (lambda: nn.GroupNorm(2, 4, eps=1e-3), F.group_norm, (4, 3, 3)),
    (lambda: nn.GroupNorm(1, 2), torch.group_norm, (2, 5)),
    (lambda: nn.RMSNorm(5, eps=1e-4), F.rms_norm, (2, 5)),
    (lambda: nn.RMSNorm([2, 3]), torch.rms_norm, (2, 3)),  # (eps=None: the dtype's)
    (lambda: nn.InstanceNorm2d(3, affine=True, eps=1e-3), F.instance_norm, (3, 2, 2)),
])
def test_a_sample_normalization_called_as_a_function_has_the_module_s_bounds(norm, how, shape):
    """A new user's trial: torchvision's ConvNeXt ``LayerNorm2d`` calls ``F.layer_norm``, and
    ``RMSNorm``'s default ``eps=None`` is the input dtype's; given the constant 1 for slopes of
    1000 and 6.7e7, neither was warned of. The function's bounds are the module's, and hold
    against the Jacobian (at zero variance: the lower end)."""
    from sparseconv._torch_activations import function_norm_slope, sample_norm_slope

    torch.manual_seed(0)
    module = norm().double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-2.0, 2.0)
    call = _Functional(module, how)
    args = ((None, None, module.weight, module.bias) if how is F.instance_norm else
            (module.normalized_shape if hasattr(module, "normalized_shape") else
             module.num_groups, module.weight))
    kwargs = {"eps": module.eps} if how is F.instance_norm else {}
    if how is not F.instance_norm and not isinstance(module, nn.RMSNorm):
        args = (*args, module.bias, module.eps)
    elif isinstance(module, nn.RMSNorm):
        args = (*args, module.eps)
    found = function_norm_slope(how, (None, *args), kwargs, shape, F64)
    assert found is not None and found == sample_norm_slope(module, shape, F64)
    lower, upper = found
    if module.eps is None:
        assert function_norm_slope(how, (None, *args), kwargs, shape, None) is None
        assert lower == pytest.approx(float(module.weight.detach().abs().max())
                                      / torch.finfo(F64).eps ** 0.5)
    constant = 0.0 if isinstance(module, nn.RMSNorm) else 0.7  # (RMSNorm's steepest at 0)
    at_zero = np.linalg.norm(jacobian_matrix(call, shape, at=torch.full(
        (1, *shape), constant, dtype=F64)), 2)
    elsewhere = np.linalg.norm(jacobian_matrix(call, shape, at=torch.randn(1, *shape,
                                                                            dtype=F64)), 2)
    assert lower * (1 - 1e-12) <= at_zero <= upper * (1 + 1e-12), (lower, at_zero, upper)
    assert elsewhere <= upper * (1 + 1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, F64])
def test_rms_norm_s_default_eps_is_its_computing_type_s(dtype):
    """A review: ``RMSNorm(eps=None)`` in half precision was given float16's epsilon (a
    slope of 32, where torch computes in float32, 2896.3: measured 2896.8)."""
    from sparseconv._torch_activations import sample_norm_slope

    norm = nn.RMSNorm([3], dtype=dtype)
    lower, upper = sample_norm_slope(norm, (2, 3), dtype)
    eps = torch.finfo(torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype).eps
    assert lower == pytest.approx(eps ** -0.5, rel=1e-12)
    x = torch.zeros(1, 2, 3, dtype=dtype, requires_grad=True)
    slope = torch.autograd.grad(norm(x)[0, 0, 0], x)[0].abs().max().item()
    assert slope == pytest.approx(lower, rel=1e-2)


@pytest.mark.parametrize("case", ["layer_norm", "rms_norm_default_eps"])
def test_a_constant_below_a_functional_or_default_eps_normalization_s_slope_is_warned_of(case):
    """The trial's two cases in a network: the warning, with the slope, and the reason."""
    torch.manual_seed(0)
    norm = _LayerNorm2d(4, eps=1e-6) if case == "layer_norm" else nn.RMSNorm([4, 4, 4])
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), norm, nn.Conv2d(4, 2, 1)).eval()
    key, slope = ("layer_norm", "is at most 1000.001") if case == "layer_norm" else (
        "RMSNorm", "is 2896.310")  # (float32's eps, 2**-23)
    assert f"its Lipschitz constant, which lipschitz_constants may give, {slope}" in \
        sct.lipschitz_report(model, (2, 4, 4)).reason
    with pytest.warns(UserWarning, match=f"lipschitz_constants gives .* the constant 1.0, "
                      f"below its Lipschitz constant, which {slope}"):
        report = sct.lipschitz_report(model, (2, 4, 4), lipschitz_constants={key: 1.0})
    assert report.network_upper is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sct.lipschitz_report(model, (2, 4, 4), lipschitz_constants={key: 3000.0})
    if case == "layer_norm":  # (a review: given by its module, the subclass was kept whole,
        # its F.layer_norm unseen and unwarned, 0.99 for ratios of 8.9: it is followed)
        for module_key in ("1", "_LayerNorm2d"):
            with pytest.warns(UserWarning, match=r"its constant unused.*calls layer_norm\(\), "
                              "which normalizes each sample by its own statistics"):
                assert sct.lipschitz_report(model, (2, 4, 4), lipschitz_constants={
                    module_key: 1.0}).network_upper is None


def test_the_report_names_a_sample_normalization_s_constant_and_warns_of_a_smaller_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4), nn.ReLU()).eval()
    report = sct.lipschitz_report(model, (3, 8, 8))
    assert report.network_upper is None
    assert ("module 1 (InstanceNorm2d: it normalizes each sample by its own statistics; its "
            "Lipschitz constant, which lipschitz_constants may give, is 316.2278 ") \
        in report.reason, report.reason
    with pytest.warns(UserWarning, match=r"lipschitz_constants gives 1 \(InstanceNorm2d\) the "
                                         r"constant 1.0, below its Lipschitz constant, which is "
                                         r"316.2278") as caught:
        sct.lipschitz_report(model, (3, 8, 8), lipschitz_constants={"InstanceNorm2d": 1.0})
    assert caught[0].filename == __file__  # (the caller's line, not torch's wrapper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at or above the slope: no warning
        report = sct.lipschitz_report(model, (3, 8, 8), lipschitz_constants={"1": 316.3})
        # nor for the slope itself, nor for a LayerNorm's between its bounds (a review:
        # weights [1, 0] have the constant sqrt(1/2), and 0.75 was warned of)
        unit = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4, eps=1.0)).eval()
        sct.lipschitz_report(unit, (4,), lipschitz_constants={"LayerNorm": 1.0})
        half = nn.LayerNorm(2, eps=1.0)
        with torch.no_grad():
            half.weight.copy_(torch.tensor([1.0, 0.0]))
        sct.lipschitz_report(nn.Sequential(nn.Linear(2, 2), half).eval(), (2,),
                             lipschitz_constants={"1": 0.75})
    assert report.network_upper is not None
    # the constant printed rounded up, so that the advised number is no constant below the
    # slope (a review: 474.3416 advised for 474.341649...)
    wide = nn.LayerNorm([2, 4, 4])
    with torch.no_grad():
        wide.weight.fill_(1.5)
    reason = sct.lipschitz_report(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), wide).eval(),
                                  (2, 4, 4)).reason
    assert "is at most 474.3417 (max|weight|/sqrt(eps))" in reason, reason


def test_an_in_place_activation_after_a_call_given_its_constant_is_named_as_the_cause():
    """A new user's trial (pix2pix's ``nn.ReLU(True)`` after a call given its constant, in a
    residual block): the reason said a change in place followed, but not what makes one. (A
    leaf module given its constant may return its input's memory, as sparseconv reads it;
    torch's normalizations do not: below.)"""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.act = nn.Conv2d(2, 2, 3, padding=1), \
                nn.Softsign(), nn.ReLU(True)

        def forward(self, x):
            return x + self.act(self.norm(self.conv(x)))

    report = sct.lipschitz_report(Block().eval(), (2, 6, 6),
                                  lipschitz_constants={"Softsign": 1.0})
    assert report.network_upper is None
    assert "(by an activation with inplace=True after it, as nn.ReLU(True), say)" \
        in report.reason and "inplace=False" in report.reason, report.reason


@pytest.mark.parametrize("norm", [lambda: nn.InstanceNorm2d(2), lambda: nn.GroupNorm(1, 2),
                                  lambda: nn.LayerNorm([2, 6, 6])])
def test_an_in_place_activation_after_a_torch_normalization_given_its_constant(norm):
    """A new user's trial: CycleGAN's residual block, an InstanceNorm2d given its constant
    then ``nn.ReLU(True)``, got no bound (the call might return its input's memory); torch's
    normalizations return new memory, so the bound is the one of the same block with
    ``inplace=False``."""
    class Block(nn.Module):
        def __init__(self, inplace):
            super().__init__()
            self.conv, self.norm, self.act = nn.Conv2d(2, 2, 3, padding=1), norm(), \
                nn.ReLU(inplace)

        def forward(self, x):
            return x + self.act(self.norm(self.conv(x)))

    torch.manual_seed(0)
    in_place = Block(True).eval()
    out_of_place = Block(False).eval()
    out_of_place.load_state_dict(in_place.state_dict())
    kind = type(in_place.norm).__name__
    bounds = [sct.lipschitz_report(m, (2, 6, 6), lipschitz_constants={kind: 316.3})
              for m in (in_place, out_of_place)]
    assert bounds[0].network_upper is not None, bounds[0].reason
    assert bounds[0].network_upper == bounds[1].network_upper


def test_a_constant_given_below_a_known_one_is_warned_of():
    """A new user's trial: ``{"ReLU": 0.1}`` was taken without a word (a bound of 0.126 for
    ratios up to 0.270); a constant within the known ones' rounding (GELU's 1.13 for its
    1.1289) is not warned of."""
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3),
                          nn.GELU(), nn.MaxPool2d(3, 1)).eval()
    with pytest.warns(UserWarning, match=r"gives 1 \(ReLU\) the constant 0.1, below its "
                      r"Lipschitz constant, 1 \(sparseconv's\)"):
        sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"ReLU": 0.1})
    with pytest.warns(UserWarning, match=r"4 \(MaxPool2d\) the constant 1.0, below its "
                      r"Lipschitz constant, 3 "):
        sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"MaxPool2d": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sct.lipschitz_report(model, (2, 8, 8), lipschitz_constants={"GELU": 1.129, "ReLU": 1})


def test_a_normalizations_reason_is_said_once_for_the_modules_it_fits():
    """A new user's trial: CycleGAN's nine InstanceNorms repeated one sentence nine times
    (3 KB of reason); the later ones now point to the first, and another one keeps its own."""
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.InstanceNorm2d(2), nn.ReLU(),
                          nn.Conv2d(2, 2, 3, padding=1), nn.InstanceNorm2d(2),
                          nn.GroupNorm(1, 2)).eval()
    reason = sct.lipschitz_report(model, (2, 6, 6)).reason
    assert reason.count("it normalizes each sample by its own statistics") == 2, reason
    assert "4 (InstanceNorm2d: as '1')" in reason and "5 (GroupNorm: it normalizes" in reason
    # (a review: by kind too, a GroupNorm "as" a LayerNorm of the same slope; and a module
    # called twice listed once, not "as" itself)
    norm = nn.GroupNorm(1, 2)
    twice = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.LayerNorm([2, 6, 6]), norm,
                          nn.Conv2d(2, 2, 3, padding=1), norm).eval()
    reason = sct.lipschitz_report(twice, (2, 6, 6)).reason
    assert reason.count("it normalizes each sample by its own statistics") == 2, reason
    assert "as '" not in reason and reason.count("2 (GroupNorm") == 1, reason


def test_a_padding_module_before_a_convolution_is_bounded_apart_and_tighter_as_one_layer():
    """What the README says of ``nn.ReflectionPad2d`` then ``nn.Conv2d`` (a new user's trial
    of CycleGAN's generators): two rows, the padding's of norm 2, whose product is 1.73-1.78
    times the padded convolution's norm; the same map as one reflect-padded convolution gets
    the tight bound."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3).double()
    apart = nn.Sequential(nn.ReflectionPad2d(1), conv).eval()
    one = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect").double().eval()
    with torch.no_grad():
        one.weight.copy_(conv.weight)
        one.bias.copy_(conv.bias)
    x = torch.randn(2, 8, 16, 16, dtype=F64)
    assert torch.allclose(apart(x), one(x), rtol=0, atol=1e-13)
    separate = sct.lipschitz_report(apart, (8, 16, 16))
    joint = sct.lipschitz_report(nn.Sequential(one).eval(), (8, 16, 16), relative_width=1e-3)
    assert 2.0 <= separate.rows[0]["upper"] <= 2.0 * (1 + 1e-9)  # (its exact norm: 2)
    exact = np.linalg.norm(jacobian_matrix(one, (8, 16, 16)), 2)
    assert joint.rows[0]["lower"] <= exact <= joint.network_upper
    assert 1.73 <= separate.network_upper / joint.network_upper <= 1.78


def test_fold_padding_gives_the_padded_convolutions_row():
    """``fold_padding=True``: the padding module and the convolution reading it are one row,
    the padded convolution's (the same interval as that layer's own report), against the
    Jacobian; a BatchNorm after it folds in too; the network bound is the folded rows'."""
    torch.manual_seed(0)
    model = _networks.randomize(nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(3, 6, 7), nn.BatchNorm2d(6), nn.ReLU(),
        nn.ReplicationPad2d(1), nn.Conv2d(6, 6, 3), nn.ReLU(),
        nn.ZeroPad2d(1), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.CircularPad2d((1, 0, 1, 0)), nn.Conv2d(6, 4, 2)).double(), seed=1)
    apart = sct.lipschitz_report(model, (3, 12, 12), fold_batchnorm=True)
    report = sct.lipschitz_report(model, (3, 12, 12), fold_batchnorm=True, fold_padding=True)
    assert [(row["name"], row["type"]) for row in report] == [
        ("0+1+2", "ReflectionPad2d+Conv2d+BatchNorm2d"), ("4+5", "ReplicationPad2d+Conv2d"),
        ("7+8", "ZeroPad2d+Conv2d"), ("10", "CircularPad2d"), ("11", "Conv2d")]  # (one side)
    for name, modules, shape in (("0+1+2", model[:3], (3, 12, 12)),
                                 ("4+5", model[4:6], (6, 12, 12)),
                                 ("7+8", model[7:9], (6, 12, 12))):
        row = report[name]
        dense = np.linalg.norm(jacobian_matrix(modules, shape), 2)
        assert row["lower"] <= dense * (1 + 1e-12) and dense <= row["upper"] * (1 + 1e-12)
        assert row["input_shape"] == shape and row["output_shape"] == modules(
            torch.zeros((1, *shape), dtype=F64)).shape[1:]
    one = nn.Conv2d(6, 6, 3, padding=1, padding_mode="replicate").double()
    with torch.no_grad():
        one.weight.copy_(model[5].weight)
        one.bias.copy_(model[5].bias)
    alone = sct.lipschitz_report(nn.Sequential(one).eval(), (6, 12, 12))
    assert (report["4+5"]["lower"], report["4+5"]["upper"]) == (alone.rows[0]["lower"],
                                                                alone.rows[0]["upper"])
    ratio = apart.network_upper / report.network_upper
    assert ratio > 2, ratio  # (two reflect/replicate paddings of norm 2 each, apart)
    assert report.network_upper == pytest.approx(math.prod(row["upper"] for row in report),
                                                 rel=1e-12)


class _PaddedBlock(nn.Module):
    """A residual block as CycleGAN's: reflect padding, convolution, ReLU, and the sum."""

    def __init__(self, channels=4, read=""):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(channels, channels, 3)
        self.read = read

    def forward(self, x):
        y = self.pad(x)
        if self.read == "inplace":
            y.mul_(3)  # (the convolution reads 3 pad(x): no fold may hide it)
        out = x + torch.relu(self.conv(y))
        if self.read == "twice":
            out = out + y[:, :, 1:-1, 1:-1]
        return out


@pytest.mark.parametrize("read", ["", "inplace", "twice"])
def test_fold_padding_over_the_graph_folds_only_a_padding_its_convolution_alone_reads(read):
    """In a model that is no chain, the bound over the graph: a padding whose output the
    convolution alone reads, untouched, is folded (a bound below the one apart, still above
    every ratio sampled); one changed in place or read elsewhere keeps its row."""
    torch.manual_seed(0)
    model = nn.Sequential(_PaddedBlock(read=read), _PaddedBlock(read=read)).double().eval()
    # (Sequential of blocks that are no chain: the bound over the graph)
    model = _networks.randomize(model, seed=2)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body(x)

    report = sct.lipschitz_report(Wrapped().eval(), (4, 8, 8), fold_padding=True)
    apart = sct.lipschitz_report(Wrapped().eval(), (4, 8, 8))
    assert report.over_graph and report.network_upper is not None, report.reason
    names = [row["name"] for row in report]
    if not read:
        assert names == ["body.0.pad+body.0.conv", "body.1.pad+body.1.conv"]
        assert report.network_upper < apart.network_upper
    else:
        assert names == [row["name"] for row in apart]
        assert report.network_upper == apart.network_upper
    generator = torch.Generator().manual_seed(5)
    for _ in range(20):
        x = torch.randn((1, 4, 8, 8), dtype=F64, generator=generator)
        h = 1e-3 * torch.randn((1, 4, 8, 8), dtype=F64, generator=generator)
        with torch.no_grad():
            ratio = (model(x + h) - model(x)).norm() / h.norm()
        assert ratio <= report.network_upper


def test_fold_padding_leaves_a_padding_changed_in_place_before_the_convolution():
    """In a chain: ``ZeroPad2d``, then ``Threshold(0.5, 2.0, inplace=True)``, which sets the
    padded zeros to 2 in the padding's own output tensor, then the convolution: the
    convolution reads that tensor, but not the padding's value (its version counter says
    so), so nothing is folded."""
    model = nn.Sequential(nn.ZeroPad2d(1), nn.Threshold(0.5, 2.0, inplace=True),
                          nn.Conv2d(2, 2, 3)).eval()
    report = sct.lipschitz_report(model, (2, 6, 6), fold_padding=True)
    assert [row["name"] for row in report] == ["0", "2"]


@pytest.mark.parametrize("fold", ["fold_padding", "fold_batchnorm"])
def test_the_bound_over_the_graph_refuses_a_fold_its_graph_does_not_show(fold, monkeypatch):
    """The second guard: where the trace's check were to miss a second reader (made to, here),
    the bound over the graph refuses the fold, saying which, instead of a bound that hides
    that reader."""
    from sparseconv import _torch_report

    monkeypatch.setattr(_torch_report, "_read_elsewhere", lambda model, shape, sources: set())

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad, self.conv, self.bn = nn.ZeroPad2d(1), nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.pad(x)
            z = self.conv(y)
            return self.bn(z) + z + y[:, :, 1:-1, 1:-1]

    report = sct.lipschitz_report(Twice().eval(), (2, 6, 6), **{fold: True})
    assert report.network_upper is None
    which = "a padding folded into 'conv', whose input" if fold == "fold_padding" else (
        "a BatchNorm folded into 'conv', whose output")
    assert which in report.reason and f"(pass {fold}=False)" in report.reason, report.reason


def test_a_batchnorm_folds_into_the_last_convolution_called_behind_a_folded_padding():
    """A review: ``s = shortcut(x); bn(conv(pad(x)))`` with both folds put the padded
    convolution at the padding's row, before the shortcut's, and the BatchNorm was folded
    into the shortcut (the row ``shortcut+bn``, 8.24, a map the model does not have). It
    folds into the padded convolution: the row against the Jacobian of ``bn(conv(pad(x)))``."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad, self.shortcut = nn.ReflectionPad2d(1), nn.Conv2d(2, 2, 1)
            self.conv, self.bn = nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            p = self.pad(x)
            s = self.shortcut(x)
            return s + self.bn(self.conv(p))

    torch.manual_seed(0)
    model = Block().double().eval()
    with torch.no_grad():
        model.bn.running_var.fill_(1e-2)  # (a BatchNorm that scales by 10)
    report = sct.lipschitz_report(model, (2, 6, 6), fold_batchnorm=True, fold_padding=True)
    assert [row["name"] for row in report] == ["pad+conv+bn", "shortcut"]
    dense = np.linalg.norm(jacobian_matrix(nn.Sequential(model.pad, model.conv, model.bn),
                                           (2, 6, 6)), 2)
    row = report["pad+conv+bn"]
    assert row["lower"] <= dense * (1 + 1e-12) and dense <= row["upper"] * (1 + 1e-12), row
    assert report.network_upper is not None


def test_a_padding_call_without_a_row_of_its_own_ends_the_padding_a_convolution_folds():
    """A review: a padding module with a forward set on the instance (a roll) has no row; the
    convolution reading its output was folded with the padding before it, the row ``0+3``
    of norm 0.1 for a map of norm 5. Nothing is folded there."""
    conv = nn.Conv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1], conv.weight[0, 0, 2, 2] = 0.1, 5.0
    shift = nn.ZeroPad2d(0)
    shift.forward = lambda x: torch.roll(x, shifts=(1, 1), dims=(-2, -1))
    model = nn.Sequential(nn.ZeroPad2d(1), nn.ReLU(), shift, conv).double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = sct.lipschitz_report(model, (1, 1, 1), fold_padding=True,
                                      lipschitz_constants={"2": 1.0})
    assert [row["name"] for row in report] == ["0", "3"]


def test_fold_padding_is_checked_on_the_graph_the_bound_over_it_traces():
    """A review: a forward that reads a size is traced by the bound over the graph's own
    tracer, not by torch.fx's; the fold's check used torch.fx's, which failed, approved a fold
    across a Dropout, and the bound over the graph refused it: no bound. Now both read the
    one graph: the padding keeps its row, and the bound is the unfolded model's."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Dropout(0.2), nn.Conv2d(2, 2, 3))

        def forward(self, x):
            y = self.body(x)
            h = min(x.shape[-1], y.shape[-1])  # (torch.fx's own tracer fails here)
            return x[..., :h] + y[..., :h]

    torch.manual_seed(0)
    model = Residual().eval()
    folded = sct.lipschitz_report(model, (2, 6, 6), fold_padding=True)
    apart = sct.lipschitz_report(model, (2, 6, 6))
    assert folded.network_upper is not None and folded.network_upper == apart.network_upper


@pytest.mark.parametrize("read", ["", "inplace", "twice"])
def test_fold_padding_in_a_torchscript_model_folds_what_the_eager_one_folds(read):
    """A new user's trial: a scripted or traced model's paddings kept their rows (2.28 for
    1.30 eagerly); its graph now answers as the eager hooks and torch.fx graph do, in a chain
    and over a residual block's graph, where an in-place change or a second reader keeps the
    padding's row."""
    torch.manual_seed(0)
    chain = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(2, 2, 3)).eval()
    block = _networks.randomize(nn.Sequential(_PaddedBlock(read=read), _PaddedBlock(read=read))
                                .double().eval(), seed=2)
    for model, shape in ((chain, (2, 6, 6)), (block, (4, 8, 8))):
        eager = sct.lipschitz_report(model, shape, fold_padding=True)
        x = torch.zeros((1, *shape), dtype=next(model.parameters()).dtype)
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            compiled = (torch.jit.script(model), torch.jit.trace(model, x))
        for each in compiled:
            report = sct.lipschitz_report(each, shape, fold_padding=True)
            assert [r["name"] for r in report] == [r["name"] for r in eager], type(each)
            assert report.network_upper == pytest.approx(eager.network_upper, rel=1e-12)
    assert [r["name"] for r in sct.lipschitz_report(chain, (2, 6, 6), fold_padding=True)] == [
        "0+1"]


class _ScaledThenPadded(nn.Module):
    """``conv(drop(pad(1.0 * x)))``: no chain in TorchScript either (the product is an
    operation of its own)."""

    def __init__(self):
        super().__init__()
        self.pad, self.drop, self.conv = nn.ReflectionPad2d(1), nn.Dropout(0.5), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.conv(self.drop(self.pad(x * 1.0)))


def test_a_torchscript_model_bounded_over_its_graph_folds_as_that_graph_checks():
    """A review: in a TorchScript model that is no chain, a padding folded through a Dropout,
    which the eager report's torch.fx check refuses, was then refused by the bound over the
    graph: no bound. It keeps its row, as eagerly. (A fold past a read of the padded size is
    left open: see ``_torch_script._pairs``.)"""
    torch.manual_seed(0)
    model = _ScaledThenPadded().double().eval()
    eager = sct.lipschitz_report(model, (2, 6, 6), fold_padding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        compiled = (torch.jit.script(model),
                    torch.jit.trace(model, torch.zeros((1, 2, 6, 6), dtype=F64)))
    for each in compiled:
        report = sct.lipschitz_report(each, (2, 6, 6), fold_padding=True)
        assert [r["name"] for r in report] == [r["name"] for r in eager] == ["pad", "conv"]
        assert report.network_upper is not None, report.reason
        assert report.network_upper == pytest.approx(eager.network_upper, rel=1e-12)


def test_fold_padding_must_be_a_bool():
    with pytest.raises(TypeError, match="fold_padding must be a bool"):
        sct.lipschitz_report(nn.Sequential(nn.Conv2d(2, 2, 3)).eval(), (2, 6, 6),
                             fold_padding="yes")


def test_a_traced_normalization_whose_arguments_are_not_constants_has_no_bounds(monkeypatch):
    """Where a traced GroupNorm's graph does not hold ``num_groups`` as a constant, no bounds
    (and so no warning), rather than an error inside the report."""
    import types as namespaces

    from sparseconv import _torch_activations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = getattr(torch.jit.trace(nn.Sequential(nn.GroupNorm(2, 4)),
                                         torch.randn(1, 4, 3, 3)), "0")
    assert _torch_activations.sample_norm_slope(traced, (4, 3, 3)) is not None
    monkeypatch.setattr(_torch_activations, "_traced_arguments", lambda module, kind:
                        namespaces.SimpleNamespace(eps=1e-5, weight=None, num_groups=None))
    assert _torch_activations.sample_norm_slope(traced, (4, 3, 3)) is None


class _Unrolled(nn.Module):
    """An unrolled network: one convolution called three times on 8x8, then on 4x4."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", dtype=F64)
        self.down = nn.AvgPool2d(2)

    def forward(self, x):
        for _ in range(3):
            x = torch.tanh(self.conv(x))
        return self.conv(self.down(x))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_module_called_again_on_the_same_shapes_is_bounded_once(workers, monkeypatch):
    """A layer called several times (an unrolled or recurrent network) had its norms computed
    once per call; now once per distinct input shape, each call keeping its row (and its
    reading checked), the 4x4 call bounded on its own (reflect padding: its norm differs)."""
    from sparseconv import _torch_report_rows

    torch.manual_seed(0)
    model = _Unrolled().eval()
    computed = []
    if workers == 1:
        layer_norm = _torch_report_rows._layer_norm
        monkeypatch.setattr(_torch_report_rows, "_layer_norm", lambda layer, **kwargs: (
            computed.append(layer.input_shape), layer_norm(layer, **kwargs))[1])
    else:
        checked = _torch_report_rows.checked_layers
        monkeypatch.setattr(_torch_report_rows, "checked_layers", lambda layers, *args: (
            computed.extend(each["input_shape"] for each in layers), checked(layers, *args))[1])
    report = sct.lipschitz_report(model, (2, 8, 8), workers=workers)
    rows = list(report)
    assert [row["name"] for row in rows] == ["conv"] * 3 + ["down", "conv"]
    # (conv on 8x8 once, down (an average pooling: a convolution), conv on 4x4)
    assert sorted(map(tuple, computed)) == [(2, 4, 4), (2, 8, 8), (2, 8, 8)]
    for row in rows:
        if row["type"] == "Conv2d":
            dense = np.linalg.norm(sct.matrix(model.conv, row["input_shape"]).toarray(), 2)
            assert row["lower"] <= dense <= row["upper"], row
    assert rows[0]["upper"] == rows[1]["upper"] == rows[2]["upper"] != rows[4]["upper"]


class _Standardised(nn.Conv2d):
    """A weight-standardised convolution: its forward computes the weight it convolves by."""

    def forward(self, x, scale=1.0):
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, scale * w, None, 1, 1)


class _UnrolledCalls(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = _Standardised(2, 2, 3, padding=1, bias=False, dtype=F64)

    def forward(self, x):
        for _ in range(3):
            x = torch.tanh(self.c(x))
        return self.c(x, scale=2.0)  # another weight: its own norm


def test_a_function_called_again_with_the_same_weight_is_bounded_once(monkeypatch):
    """The functions a forward calls (here ``F.conv2d`` by a weight computed afresh in each
    call) had their norms computed once per call; now once per distinct weight and shapes
    (by value), each call keeping its row, the call with a doubled weight bounded on its own."""
    from sparseconv import _torch_chain

    torch.manual_seed(0)
    model = _UnrolledCalls().eval()
    computed = []
    layer_norm = _torch_chain._layer_norm
    monkeypatch.setattr(_torch_chain, "_layer_norm", lambda layer, **kwargs: (
        computed.append(layer.conv[0].copy()), layer_norm(layer, **kwargs))[1])
    rows = list(sct.lipschitz_report(model, (2, 6, 6)))
    assert [row["type"] for row in rows] == ["F.conv2d"] * 4
    assert len(computed) == 2 and np.allclose(computed[1], 2 * computed[0])
    w = (model.c.weight - model.c.weight.mean(dim=(1, 2, 3), keepdim=True)).detach().numpy()
    for row, scale in zip(rows, (1, 1, 1, 2)):
        dense = np.linalg.norm(sc.conv_matrix(scale * w, (2, 6, 6), padding=1).toarray(), 2)
        assert row["lower"] <= dense <= row["upper"], row


def test_a_float64_nearest_resampling_that_reads_other_inputs_is_named_in_the_refusal():
    """A review: a float64 network of a 1x1 convolution and ``Upsample(scale_factor=2.3,
    mode="nearest-exact")`` on 18 inputs (output 34 reads input 15 in PyTorch's float64
    kernel, 14 in its float32 one, which the matrix reads) was refused as if an attribute had
    changed after construction; the refusal names the nearest resampling, as
    network_operator's does."""
    conv = nn.Conv1d(1, 1, 1, bias=False).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
    model = nn.Sequential(conv, nn.Upsample(scale_factor=2.3, mode="nearest-exact")).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (sct.matrix's, naming output 34)
        with pytest.raises(ValueError, match=r"nearest resampling in float64\?"):
            sct.lipschitz_report(model, (1, 18))
        with pytest.raises(TypeError, match=r"nearest resampling in float64\?"):
            sct.network_operator(model, (1, 18))


def test_a_max_pooling_with_a_window_of_padding_alone_says_why_it_has_no_constant():
    """A review: ``MaxPool2d((1, 2), 1, (0, 1), (1, 2))`` on a 3x1 input has windows of
    padding alone (its output there is -inf whatever the input), and the reason said only
    that it is "neither a layer sparseconv.torch reads nor an activation". The oracle:
    PyTorch's output, -inf at those windows."""
    pool = nn.MaxPool2d((1, 2), 1, (0, 1), (1, 2))
    with torch.no_grad():
        y = pool(torch.randn(1, 1, 3, 1))
    assert bool(torch.isneginf(y).any())
    report = sct.lipschitz_report(nn.Sequential(nn.Conv2d(1, 1, 1), pool).eval(), (1, 3, 1))
    assert report.network_upper is None
    assert "(MaxPool2d: a window of padding alone, whose output is -inf whatever the input" \
        in report.reason, report.reason
