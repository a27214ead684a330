"""The command line's numbers and the report's table (``sparseconv._cli_commands``,
``_cli_layer``, ``cli``, ``_report_table``), from a mutation review: every number the command
line prints or a table exports, against an oracle that is not sparseconv's own arithmetic:
PyTorch's convolutions, dense numpy, exact rationals (``fractions.Fraction``), and the
readers of csv and json. The command line runs in-process (``sparseconv.cli.main``), as
tests/test_cli.py runs it where it needs speed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from decimal import ROUND_CEILING, ROUND_FLOOR
from fractions import Fraction

import matplotlib.image
import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc
import sparseconv.testing
from sparseconv.cli import main

from ._oracles import requires_torch, torch, torch_conv, torch_conv_transpose


def _run(capsys, *args) -> str:
    """``sparseconv ARGS`` in-process: its stdout (it must succeed)."""
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out


def _refused(capsys, *args) -> str:
    """The one-line error of a command that must exit with status 2."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    assert info.value.code == 2
    return capsys.readouterr().err


def _weights(tmp_path, shape, seed=0, name="w.npy") -> tuple[np.ndarray, str]:
    w = np.random.default_rng(seed).standard_normal(shape)
    path = tmp_path / name
    np.save(path, w)
    return w, str(path)


def _interval(out: str, label: str) -> tuple[str, str, str]:
    match = re.search(rf"{label}  (\S+)  in \[(\S+), (\S+)\]", out)
    assert match, out
    return match.groups()


def _exact(text) -> Fraction:
    return Fraction(text) if isinstance(text, str) else Fraction(float(text))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectrum_prints_spectral_norms_interval_rounded_outward(tmp_path, capsys, seed):
    """A mutant this catches: _cli_commands.py: _outward(norm.lower, ROUND_FLOOR) ->
    ROUND_CEILING (and the upper's ROUND_CEILING -> ROUND_FLOOR): the printed lower bound
    must not exceed spectral_norm's lower bound, nor the printed upper fall below its upper,
    compared exactly as rationals; both within 10 significant digits of them."""
    w, path = _weights(tmp_path, (3, 2, 3, 3), seed)
    out = _run(capsys, "spectrum", "--in-shape", "2,6,6", "--weights", path, "--padding", "1")
    norm = sc.spectral_norm(w, (2, 6, 6), padding=1)
    value, lower, upper = _interval(out, "spectral norm")
    assert float(value) == float(f"{norm.value:.10g}")
    assert _exact(lower) <= _exact(norm.lower) <= _exact(norm.upper) <= _exact(upper)
    assert _exact(norm.lower) - _exact(lower) <= Fraction(1, 10**9) * _exact(norm.lower)
    assert _exact(upper) - _exact(norm.upper) <= Fraction(1, 10**9) * _exact(norm.upper)
    # the dense oracle lies inside the printed interval
    sigma = np.linalg.svd(sc.conv_matrix(w, (2, 6, 6), padding=1).toarray(),
                          compute_uv=False)[0]
    assert _exact(lower) <= _exact(sigma) * (1 + Fraction(1, 10**12))
    assert _exact(sigma) * (1 - Fraction(1, 10**12)) <= _exact(upper)


def test_spectrum_every_size_prints_toeplitz_norms_interval_outward(tmp_path, capsys):
    """A mutant this catches: _cli_commands.py: _outward(every.lower, ROUND_FLOOR) ->
    ROUND_CEILING: the ``every input size`` line is toeplitz_norm's interval rounded
    outward."""
    w, path = _weights(tmp_path, (2, 2, 3, 3), 5)
    out = _run(capsys, "spectrum", "--in-shape", "2,6,6", "--weights", path, "--padding", "1",
               "--every-size")
    every = sc.toeplitz_norm(w)
    _, lower, upper = _interval(out, "every input size")
    assert _exact(lower) <= _exact(every.lower) <= _exact(every.upper) <= _exact(upper)
    assert _exact(every.lower) - _exact(lower) <= Fraction(1, 10**9) * _exact(every.lower)


def test_spectrum_every_size_is_drawn_where_it_bounds_the_layer(tmp_path, capsys,
                                                                monkeypatch):
    """``spectrum --every-size -o FILE`` draws the bound for every input size on the singular
    values (a new user's trial: printed, not drawn): toeplitz_norm's interval, for a
    zero-padded or periodic layer; not for a reflect-padded one, which it does not bound."""
    from sparseconv import plot

    drawn = []
    spectrum = plot.spectrum

    def spy_on(*args, **kwargs):
        drawn.append(kwargs.get("every_size"))
        return spectrum(*args, **kwargs)

    monkeypatch.setattr(plot, "spectrum", spy_on)
    w, path = _weights(tmp_path, (3, 2, 3, 3), 6)
    every = sc.toeplitz_norm(w)
    for mode, bounded in (("zeros", True), ("reflect", False), ("circular", True)):
        _run(capsys, "spectrum", "--in-shape", "2,6,6", "--weights", path, "--padding", "1",
             "--padding-mode", mode, "--every-size", "-o", tmp_path / f"{mode}.png")
        given = drawn.pop()
        if bounded:
            assert (given.lower, given.upper) == (every.lower, every.upper), mode
        else:
            assert given is None, mode
    _run(capsys, "spectrum", "--in-shape", "2,6,6", "--weights", path, "--padding", "1",
         "-o", tmp_path / "plain.png")
    assert drawn.pop() is None


def test_spectrum_of_a_zero_layer_on_a_log_scale_is_drawn_linear(tmp_path, capsys):
    """A new user's trial: ``spectrum --log`` of an all-zero layer exited with status 2
    ("interval's lower end 0.0 cannot be drawn on yscale='log'"): its 72 values, all zero,
    passed the check that only a lone interval's zero was looked for. Drawn on a linear
    scale, and said; with ``--every-size`` too."""
    path = tmp_path / "zeros.npy"
    np.save(path, np.zeros((2, 2, 3, 3)))
    for extra in ([], ["--every-size"]):
        out = _run(capsys, "spectrum", "--in-shape", "2,6,6", "--weights", path, "--padding",
                   "1", "--log", "-o", tmp_path / "z.png", *extra)
        assert "spectral norm  0  in [0, 0]  (zero)" in out, out
        assert (tmp_path / "z.png").exists()
    main(["spectrum", "--in-shape", "2,6,6", "--weights", str(path), "--padding", "1",
          "--log", "-o", str(tmp_path / "z.png")])
    assert capsys.readouterr().err == ("spectrum: no log scale: the interval's lower end is 0, "
                                       "which a log axis cannot draw\n")


def test_outward_rounding_helpers_never_round_inward():
    """Mutants this catches: _cli_commands.py: ``Decimal(repr(float(value)))`` ->
    ``Decimal(f"{value:.10g}")`` (rounded to nearest first, so an upper bound could be printed
    below itself), and the same in plot/_figure.py's round_outward and _report_table.py's
    _rounded: each result, read as an exact rational, is on the outer side of the float."""
    from sparseconv._cli_commands import _outward
    from sparseconv._report_table import _rounded
    from sparseconv.plot._figure import round_outward

    rng = np.random.default_rng(0)
    values = [1.00000000049, 1.0000000005, 2.99999999951, 0.12345678904999, 1.2345641,
              1.2345679, 7.0000004999, 123456.44999] + list(10.0 ** rng.uniform(-5, 5, 200))
    for value in values:
        exact = _exact(value)
        # (a float whose repr has at most `digits` digits: see the DEFECT test below)
        significant = len(repr(value).replace(".", "").lstrip("0").split("e")[0])
        for helper, digits in ((_outward, 10), (_rounded, 6), (round_outward, 4)):
            if significant <= digits:
                continue
            upper = (helper(value, ROUND_CEILING) if helper is not round_outward else
                     helper(value, ROUND_CEILING, digits))
            lower = (helper(value, ROUND_FLOOR) if helper is not round_outward else
                     helper(value, ROUND_FLOOR, digits))
            assert _exact(lower) <= exact <= _exact(upper), (helper, value, lower, upper)
            assert _exact(upper) - _exact(lower) <= exact * Fraction(10) ** (1 - digits)


def _info_lines(out: str) -> dict[str, str]:
    return {line[:16].strip(): line[17:] for line in out.splitlines()}


def test_info_memory_is_the_built_matrices_bytes(capsys):
    """A mutant this catches: _cli_commands.py: csr memory ``(rows + 1) * index`` ->
    ``(cols + 1) * index``: on a layer with 64 times more rows than columns the row pointer
    is a quarter of the CSR bytes; each printed size is the nbytes of scipy's own matrix."""
    from sparseconv._memory import format_bytes

    out = _run(capsys, "info", "--in-shape", "1,32,32", "--out-channels", "64",
               "--kernel-size", "1")
    lines = _info_lines(out)
    w = np.ones((64, 1, 1, 1))
    sizes = {}
    for fmt in ("csr", "csc", "coo"):
        A = sc.conv_matrix(w, (1, 32, 32), format=fmt)
        arrays = (A.data, A.coords[0], A.coords[1]) if fmt == "coo" else (A.data, A.indices,
                                                                         A.indptr)
        sizes[fmt] = sum(a.nbytes for a in arrays)
    for fmt, nbytes in sizes.items():
        assert f"{fmt} {format_bytes(nbytes)}" in lines["memory"], (fmt, lines["memory"])
    A = sc.conv_matrix(w, (1, 32, 32))
    assert lines["matrix"].startswith(f"{A.shape[0]} x {A.shape[1]}, nnz {A.nnz} ")


def test_info_of_a_transposed_layer_gives_its_own_matrix_shape(capsys):
    """A mutant this catches: _cli_commands.py: ``rows, cols = g.shape[::-1] if
    layer.transposed else g.shape`` -> ``g.shape``: the shape printed is
    conv_transpose_matrix's, not the transposed convolution's."""
    out = _run(capsys, "info", "--transposed", "--in-shape", "4,3,5", "--out-channels", "2",
               "--kernel-size", "3", "--stride", "2")
    T = sc.conv_transpose_matrix(np.ones((4, 2, 3, 3)), (4, 3, 5), stride=2)
    assert T.shape[0] != T.shape[1]
    assert _info_lines(out)["matrix"].startswith(f"{T.shape[0]} x {T.shape[1]}, nnz {T.nnz} ")


def _field_oracle(M: np.ndarray, out_shape, in_shape, stride=None) -> str:
    """The receptive field of output channel 0 at the center position, from the matrix
    row: its nonzero columns (positive weights: nothing cancels). For a transposed layer of
    ``stride``, the row reading the most of the ``stride`` outputs from the center on, per
    axis (the center one alone may read fewer than its neighbours)."""
    starts = [n // 2 for n in out_shape[1:]]
    box = itertools.product(*(range(c, min(n, c + s)) for c, n, s in zip(
        starts, out_shape[1:], stride or [1] * len(starts))))
    rows = [np.ravel_multi_index((0, *at), out_shape) for at in box]
    columns = max((np.flatnonzero(M[row]) for row in rows),
                  key=lambda c: len({p[1:] for p in zip(*np.unravel_index(c, in_shape))}))
    if not columns.size:
        return "empty"
    channel, *positions = np.unravel_index(columns, in_shape)
    spatial = {tuple(int(p[i]) for p in positions) for i in range(columns.size)}
    extent = "x".join(str(int(p.max() - p.min()) + 1) for p in positions)
    n, c = len(spatial), len(set(channel.tolist()))
    who = ("the outputs at the center read up to" if stride and max(stride) > 1 else
           "the center output reads")
    return (f"{extent} ({who} {n} position{'s' if n != 1 else ''} x {c} "
            f"channel(s) = {n * c} inputs)")


@pytest.mark.parametrize("options", [
    ("--in-shape", "4,9,7", "--out-channels", "6", "--kernel-size", "3,2", "--stride", "2",
     "--padding", "2,0,1,1", "--dilation", "2,3", "--groups", "2"),
    ("--in-shape", "2,5,6", "--out-channels", "2", "--kernel-size", "3", "--padding", "1",
     "--padding-mode", "reflect"),
    ("--in-shape", "1,3", "--out-channels", "1", "--kernel-size", "3", "--padding", "0"),
])
def test_info_receptive_field_is_the_center_rows_nonzeros(capsys, options):
    """Mutants this catch: _cli_commands.py: the extent's ``+ 1`` dropped; ``// g.groups``
    dropped from the channels; ``taps >= 0`` -> ``taps > 0`` (input position 0 lost). The
    field is read off the dense matrix row of output channel 0 at the center position."""
    out = _run(capsys, "info", *options)
    opts = dict(zip(options[::2], options[1::2]))
    in_shape = tuple(int(v) for v in opts["--in-shape"].split(","))
    kernel = [int(v) for v in opts["--kernel-size"].split(",")] * (2 if len(in_shape) == 3
                                                                   and "," not in
                                                                   opts["--kernel-size"]
                                                                   else 1)
    groups = int(opts.get("--groups", 1))
    w = np.ones((int(opts["--out-channels"]), in_shape[0] // groups, *kernel[:len(in_shape) - 1]))
    pad = [int(v) for v in opts["--padding"].split(",")]
    padding = tuple(zip(pad[::2], pad[1::2])) if len(pad) == 2 * (len(in_shape) - 1) else pad[0]
    stride = tuple(int(v) for v in opts.get("--stride", "1").split(","))
    dilation = tuple(int(v) for v in opts.get("--dilation", "1").split(","))
    M = sc.conv_matrix(w, in_shape, stride=stride[0] if len(stride) == 1 else stride,
                       padding=padding, dilation=dilation[0] if len(dilation) == 1 else dilation,
                       groups=groups, padding_mode=opts.get("--padding-mode", "zeros"))
    out_shape = sc.ConvGeometry.from_weight(w.shape, in_shape, stride=stride if len(stride) > 1
                                            else stride[0], padding=padding,
                                            dilation=dilation if len(dilation) > 1
                                            else dilation[0], groups=groups).output_shape
    expected = _field_oracle(M.toarray(), out_shape, in_shape)
    line = _info_lines(out)["receptive field"]
    assert line == expected or (expected == "empty" and line.startswith("empty")), (line,
                                                                                      expected)


@pytest.mark.parametrize("stride,kernel,size,padding", [(2, 3, 3, 0), (3, 2, 4, 0),
                                                        (2, 4, 5, 1), (1, 3, 1, 1)])
def test_info_receptive_field_of_a_transposed_layer(capsys, stride, kernel, size,
                                                           padding):
    """A mutant this catches: _cli_commands.py: ``o < axis.output_size`` ->
    ``o <= axis.output_size`` in _center_readers. The field is read off the dense
    conv_transpose_matrix's rows of output channel 0 from the center of the transposed
    layer's output on, the one reading the most (a new user's trial: the center output of a
    stride-2 layer read 1 position, its neighbour 2)."""
    out = _run(capsys, "info", "--transposed", "--in-shape", f"2,{size}", "--out-channels",
               "3", "--kernel-size", kernel, "--stride", stride, "--padding", padding)
    T = sc.conv_transpose_matrix(np.ones((2, 3, kernel)), (2, size), stride=stride,
                                 padding=padding)
    expected = _field_oracle(T.toarray(), (3, T.shape[0] // 3), (2, size), [stride])
    line = _info_lines(out)["receptive field"]
    assert line == expected or (expected == "empty" and line.startswith("empty")), (line,
                                                                                      expected)


@requires_torch
def test_export_per_side_padding_is_lo_hi_per_axis(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``zip(padding[::2], padding[1::2])`` ->
    ``zip(padding[1::2], padding[::2])`` (LO and HI swapped): ``--padding 0,2,1,0`` pads the
    first axis by 0 before and 2 after, the second by 1 before and 0 after (torch's F.pad)."""
    w, path = _weights(tmp_path, (3, 2, 3, 2), 1)
    out = tmp_path / "m.npz"
    _run(capsys, "export", "--in-shape", "2,5,6", "--weights", path, "--padding", "0,2,1,0",
         "-o", out)
    A = sp.load_npz(out)
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 6))
    padded = np.pad(x, [(0, 0), (0, 0), (0, 2), (1, 0)])
    expected = torch_conv(padded, w)[0]
    assert A.shape == (expected.size, x.size)
    np.testing.assert_allclose(A @ x.ravel(), expected.ravel(), rtol=1e-12, atol=1e-12)


@requires_torch
def test_export_channels_last_layout(tmp_path, capsys):
    """A mutant this catches: _cli_commands.py: _export's ``layout=args.layout`` ->
    ``"channels_first"``: a channels-last BSR file multiplies (H, W, C)-flattened vectors."""
    w, path = _weights(tmp_path, (4, 2, 3, 3), 3)
    out = tmp_path / "m.npz"
    _run(capsys, "export", "--in-shape", "2,5,4", "--weights", path, "--padding", "1",
         "--layout", "channels_last", "--format", "bsr", "-o", out)
    A = sp.load_npz(out)
    x = np.random.default_rng(4).standard_normal((1, 2, 5, 4))
    y = torch_conv(x, w, padding=1)[0]
    np.testing.assert_allclose(A @ x[0].transpose(1, 2, 0).ravel(),
                               y.transpose(1, 2, 0).ravel(), rtol=1e-12, atol=1e-12)


@requires_torch
def test_export_transposed_layer_is_torchs_conv_transpose(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: _Layer.shapes not swapped for a transposed layer
    (the export then builds the layer on the wrong input shape)."""
    w, path = _weights(tmp_path, (4, 2, 3, 3), 6)
    out = tmp_path / "t.npz"
    _run(capsys, "export", "--transposed", "--in-shape", "4,3,2", "--weights", path,
         "--stride", "2", "--output-padding", "1", "-o", out)
    T = sp.load_npz(out)
    x = np.random.default_rng(7).standard_normal((1, 4, 3, 2))
    y = torch_conv_transpose(x, w, stride=2, output_padding=1)[0]
    assert T.shape == (y.size, x.size)
    np.testing.assert_allclose(T @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-12)


@requires_torch
def test_export_random_weights_have_the_given_kernel_and_dtype(tmp_path, capsys):
    """Mutants this catch: cli.py: ``values[0] if len(values) == 1`` -> ``>= 1``
    (``--kernel-size 3,2`` read as 3); _cli_layer.py: ``matrix_weight`` not cast to
    ``--dtype``. The file's weight has the kernel asked for; its matrix is float32 and is
    PyTorch's layer of the weight rounded to float32."""
    out = tmp_path / "r.npz"
    _run(capsys, "export", "--in-shape", "2,6,5", "--out-channels", "3", "--kernel-size",
         "3,2", "--padding", "1", "--dtype", "float32", "-o", out)
    with np.load(out) as entries:
        w = entries["sparseconv_weight"]
    assert w.shape == (3, 2, 3, 2)
    A = sp.load_npz(out)
    assert A.dtype == np.float32
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 5))
    y = torch_conv(x, w.astype(np.float32).astype(np.float64), padding=1)[0]
    np.testing.assert_allclose(A.astype(np.float64) @ x.ravel(), y.ravel(), rtol=1e-12,
                               atol=1e-12)


def test_spy_raw_zoom_is_output_blocks_then_input_blocks(tmp_path, capsys):
    """A mutant this catches: cli.py: _zoom returning ``(c0, c1), (r0, r1)``: ``--zoom
    0:1,0:2`` is output channel 0 against input channels 0 and 1, one pixel per entry."""
    out = tmp_path / "z.png"
    _run(capsys, "spy", "--in-shape", "3,4,4", "--out-channels", "2", "--kernel-size", "3",
         "--padding", "1", "--raw", "--zoom", "0:1,0:2", "-o", out)
    pixels = matplotlib.image.imread(out)
    A = sc.conv_matrix(np.ones((2, 3, 3, 3)), (3, 4, 4), padding=1).toarray()
    window = A[:16, :32] != 0
    assert pixels.shape[:2] == window.shape
    assert ((pixels[..., :3] < 1).any(axis=-1) == window).all()


_LOWER, _UPPER, _CIRCULAR, _NETWORK = 1.2345679, 1.2345741, 1.2345712, 2.0000001234


def _cells(text: str) -> dict[str, str]:
    """The printed table's first row by its header's columns (cells are left-aligned)."""
    header, _, row = text.splitlines()[:3]
    starts = [m.start() for m in re.finditer(r"\S+", header)] + [None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, starts[1:])}


def _report(**kwargs):
    from sparseconv._report_table import LipschitzReport

    row = dict(name="conv", type="Conv2d", input_shape=(1, 4, 4), output_shape=(2, 4, 4),
               nnz=288, memory=3600, lower=_LOWER, upper=_UPPER, method="dense",
               converged=True, circular=_CIRCULAR, seconds=0.25)
    fields = dict(rows=(row,), network_upper=_NETWORK, activations=("1 (ReLU)",),
                  chain_checked=True)
    return LipschitzReport(**{**fields, **kwargs})


@pytest.mark.parametrize("over_graph", [False, True])
def test_report_table_prints_every_bound_rounded_outward(over_graph):
    """Mutants this catch: _report_table.py: the network bound's ``ROUND_CEILING`` ->
    ``ROUND_FLOOR`` on the line of a bound over the graph (and on the product's line), and
    the rows' lower/upper/circular rounding flipped: each printed number, read as an exact
    rational, lies on the outer side of the float it prints, within 6 digits."""
    text = str(_report(over_graph=over_graph))
    cells = _cells(text)
    tight = Fraction(1, 10**5)
    assert _exact(_LOWER) * (1 - tight) <= _exact(cells["lower"]) <= _exact(_LOWER)
    assert _exact(_UPPER) <= _exact(cells["upper"]) <= _exact(_UPPER) * (1 + tight)
    assert _exact(_CIRCULAR) <= _exact(cells["circular"]) <= _exact(_CIRCULAR) * (1 + tight)
    assert cells["seconds"] == "0.250" and cells["memory"] == "3.5 KiB"  # (3 decimals)
    bound = re.search(r"network bound \(.*\): (\S+)$", text, re.M)
    assert bound, text
    assert _exact(_NETWORK) <= _exact(bound.group(1)) <= _exact(_NETWORK) * (1 + tight)


def test_report_csv_and_json_hold_the_floats_exactly():
    """Mutants this catch: _report_table.py: CSV cells written as ``f"{v:.6g}"`` (a certified
    bound rounded to nearest), the network row's ``upper`` put in the ``lower`` column, and
    the JSON's ``complete`` written as True for a partial report. Read back by csv and json,
    every bound is the float itself."""
    report = _report(complete=False, over_graph=True)
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["name"] for r in rows] == ["conv", "(network)"]
    assert float(rows[0]["lower"]) == _LOWER and float(rows[0]["upper"]) == _UPPER
    assert float(rows[0]["circular"]) == _CIRCULAR
    assert rows[0]["input_shape"] == "1x4x4" and rows[0]["output_shape"] == "2x4x4"
    assert rows[1]["type"] == "Network" and rows[1]["method"] == "graph"
    assert float(rows[1]["upper"]) == _NETWORK and rows[1]["lower"] == ""
    data = json.loads(report.to_json())
    assert data["layers"][0]["lower"] == _LOWER and data["layers"][0]["upper"] == _UPPER
    assert data["network_upper"] == _NETWORK
    assert data["complete"] is False and data["over_graph"] is True
    assert data["chain_checked"] is True and data["activations"] == ["1 (ReLU)"]


def test_a_float_above_its_short_repr_is_printed_above_itself():
    """A defect the review found: the table, the command line and the figures rounded
    ``Decimal(repr(x))``, the shortest decimal that reads back as ``x``, not ``x`` itself.
    The float 0.1 is 0.1000000000000000055511...; rounded "up" it printed as 0.1 (0.100000),
    below itself: a 1x1 convolution by the weight 0.1 had its ``circular`` column (the
    exact norm, the float 0.1) printed below the norm. Now every one rounds the float's
    exact value (``_rounding.decimal_outward``)."""
    from sparseconv._cli_commands import _outward
    from sparseconv._report_table import _rounded
    from sparseconv.plot._figure import round_outward

    row = dict(_report().rows[0], circular=0.1)
    assert _exact(_cells(str(_report(rows=(row,))))["circular"]) >= _exact(0.1)
    assert _exact(_rounded(0.1, ROUND_CEILING)) >= _exact(0.1)
    assert _exact(_outward(0.1, ROUND_CEILING)) >= _exact(0.1)
    assert _exact(round_outward(0.1, ROUND_CEILING, 6)) >= _exact(0.1)


_TRIPPED: list[str] = []


if torch is not None:
    class _Tripwire(torch.nn.Sequential):
        """A model whose unpickling leaves a mark: the code a pickle can run."""

        def __setstate__(self, state):
            _TRIPPED.append("unpickled")
            super().__setstate__(state)


@requires_torch
def test_a_pickled_model_loads_only_with_trust_pickle(tmp_path, capsys):
    """Mutants this catch: _cli_layer.py: ``if not trust_pickle`` -> ``if False`` and the
    first ``torch.load(..., weights_only=True)`` -> ``weights_only=False``: without
    --trust-pickle, report and the layer commands refuse a torch.save(model) file, naming
    the flag, and no code of the file runs; with it, the report's bounds enclose the dense
    SVD's norm of the layer."""
    torch.manual_seed(0)
    model = _Tripwire(torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)).double().eval()
    path = str(tmp_path / "model.pt")
    torch.save(model, path)
    _TRIPPED.clear()
    for command in (["report", "--model", path, "--input-shape", "1,5,5", "--quiet"],
                    ["info", "--model", path, "--layer", "0", "--in-shape", "1,5,5"],
                    ["spectrum", "--model", path, "--layer", "0", "--in-shape", "1,5,5"]):
        assert "--trust-pickle" in _refused(capsys, *command)
        assert _TRIPPED == [], command
    out = _run(capsys, "report", "--model", path, "--input-shape", "1,5,5", "--quiet",
               "--trust-pickle", "--csv", "-")
    assert _TRIPPED
    row = next(csv.DictReader(io.StringIO(out)))
    weight = model[0].weight.detach().numpy()
    sigma = np.linalg.svd(sc.conv_matrix(weight, (1, 5, 5), padding=1).toarray(),
                          compute_uv=False)[0]
    assert row["name"] == "0" and float(row["lower"]) <= sigma <= float(row["upper"])


@pytest.mark.parametrize("weight,option,dtype", [
    (np.ones((2, 1, 3)) * (1 + 1j), "real numeric", "float64"),       # complex
    (np.array([[[1.0, np.nan, 2.0]]]), "must have finite entries", "float64"),  # NaN
    (np.array([[[1, 2**53 + 1, 2]]], dtype=np.int64), "2\\*\\*53", "float64"),
    (np.array([[[1.0, 1e39, 2.0]]]), "finite in --dtype float32", "float32"),  # overflows
])
def test_export_refuses_weights_it_would_change(tmp_path, capsys, weight, option, dtype):
    """Mutants this catch: _cli_layer.py: ``kind not in "iuf"`` -> ``"iufc"`` (complex
    weights taken), the finite check dropped (a NaN matrix written), ``> 2**53`` -> ``>
    2**63`` (integers silently rounded to float64), the ``--dtype`` overflow check dropped
    (1e39 written as inf in float32): each is refused naming --weights, and no file is
    written."""
    path = tmp_path / "w.npy"
    np.save(path, weight)
    err = _refused(capsys, "export", "--in-shape", "1,5", "--weights", path, "--dtype", dtype,
                   "-o", tmp_path / "m.npz")
    assert "--weights" in err and re.search(option, err), err
    assert not (tmp_path / "m.npz").exists()


def test_transposed_layer_options_that_describe_another_layer_are_refused(tmp_path,
                                                                                capsys):
    """Mutants this catch: _cli_layer.py: the check that --output-padding is below --stride
    dropped (the layer built would not take --in-shape), and the check of --in-shape's
    channels against a transposed weight dropped; --trust-pickle without --model refused."""
    # (PyTorch takes output_padding 1 < dilation 2 at stride 1: an output one longer than the
    # convolution of the same weight reads, so no adjoint of it)
    err = _refused(capsys, "info", "--transposed", "--in-shape", "2,4", "--out-channels", "3",
                   "--kernel-size", "3", "--dilation", "2", "--output-padding", "1")
    assert "--output-padding 1 is at least --stride" in err
    _, path = _weights(tmp_path, (3, 2, 3))
    err = _refused(capsys, "info", "--transposed", "--in-shape", "2,4", "--weights", path)
    assert "--in-shape has 2 input channels" in err
    err = _refused(capsys, "info", "--in-shape", "2,4", "--out-channels", "3",
                   "--kernel-size", "3", "--trust-pickle")
    assert "--trust-pickle applies to a layer of --model" in err


@requires_torch
def test_export_grouped_transposed_random_layer_is_torchs(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: the random transposed weight's shape
    ``(C_in, C_out/groups, *k)`` -> ``(C_in/groups, C_out, *k)`` (the same when groups=1):
    with --groups 2 the file's weight is PyTorch's ConvTranspose layout and its matrix is
    torch's conv_transpose1d of it."""
    out = tmp_path / "t.npz"
    _run(capsys, "export", "--transposed", "--in-shape", "4,5", "--out-channels", "6",
         "--kernel-size", "3", "--stride", "2", "--groups", "2", "-o", out)
    with np.load(out) as entries:
        w = entries["sparseconv_weight"]
    assert w.shape == (4, 3, 3)
    x = np.random.default_rng(0).standard_normal((1, 4, 5))
    y = torch_conv_transpose(x, w, stride=2, groups=2)[0]
    T = sp.load_npz(out)
    np.testing.assert_allclose(T @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-12)


def test_info_index_size_follows_nnz_past_int32(capsys):
    """A mutant this catches: _cli_commands.py: the index size from ``max(nnz, *shape)`` ->
    ``max(*shape)``: a layer with fewer than 2**31 rows and columns but more nonzeros
    needs 64-bit indices (scipy's get_index_dtype), which the memory printed counts."""
    from sparseconv._memory import format_bytes

    out = _run(capsys, "info", "--in-shape", "64,2048,2048", "--out-channels", "64",
               "--kernel-size", "3", "--padding", "1")
    g = sc.ConvGeometry.from_weight((64, 64, 3, 3), (64, 2048, 2048), padding=1)
    rows, cols = g.shape
    nnz = g.nnz()
    assert max(rows, cols) < 2**31 < nnz
    index = np.dtype(sp.get_index_dtype(maxval=nnz)).itemsize
    assert index == 8
    assert f"csr {format_bytes(nnz * (8 + index) + (rows + 1) * index)}" in out
    assert f"coo {format_bytes(nnz * (8 + 2 * index))}" in out


def test_report_figure_title_rounds_the_network_bound_up():
    """A mutant this catches: _cli_commands.py: the --plot title's network bound rounded
    ``ROUND_CEILING`` -> ``ROUND_FLOOR``: the 4 digits printed are not below the bound."""
    from sparseconv._cli_commands import _report_figure

    title = _report_figure(_report()).axes[0].get_title()
    printed = re.search(r"network bound (\S+)$", title)
    assert printed, title
    assert _exact(_NETWORK) <= _exact(printed.group(1)) <= _exact(_NETWORK) * (1 + Fraction(
        1, 10**3))


def test_report_figure_puts_a_folded_rows_names_on_two_lines():
    """A new user's trial: ResNet's folded names (``layer4.0.downsample.0+layer4.0.
    downsample.1``), rotated, took 40% of the figure's height."""
    from sparseconv._cli_commands import _report_figure

    row = dict(_report().rows[0], name="layer1.0.conv1+layer1.0.bn1")
    labels = [t.get_text() for t in _report_figure(_report(rows=(row,))).axes[0]
              .get_xticklabels()]
    assert labels == ["layer1.0.conv1+\nlayer1.0.bn1"], labels


def test_a_repeated_constant_is_refused():
    """A mutant this catches: _cli_commands.py: the repeated-name check of --constant dropped
    (the last value silently won)."""
    from sparseconv._cli_commands import _constants

    def error(message):
        raise ValueError(message)

    assert _constants(["softplus=1.5", "Sigmoid=0.25"], error) == {"softplus": 1.5,
                                                                    "Sigmoid": 0.25}
    with pytest.raises(ValueError, match="once per name"):
        _constants(["softplus=1", "softplus=2"], error)


_SMALL = ("--in-shape", "2,6,6", "--out-channels", "3", "--kernel-size", "3")


@pytest.mark.parametrize("args,reason", [
    (("info", "--in-shape", "2,6,6", "--out-channels", "0", "--kernel-size", "3"),
     "argument --out-channels: expected a positive integer, got '0'"),
    (("spectrum", *_SMALL, "-o", "{tmp}/s.png", "--figsize", "3,0"),
     "argument --figsize: expected WIDTH,HEIGHT"),
    (("spy", *_SMALL, "-o", "{tmp}/s.png", "--zoom", "-1:2,0:1"),
     "--zoom -1:2,0:1: the output block range (-1, 2) must satisfy"),
    (("info", "--in-shape", "-3,5,5", "--out-channels", "1", "--kernel-size", "1"),
     "--in-shape must be positive"),
    (("spectrum", *_SMALL, "--upper", "--relative-width", "0.01"),
     "--relative-width 0.01 needs a lower bound, and --upper computes none"),
    (("spy", *_SMALL, "-o", "{tmp}/s.png", "--dpi", "3000"),
     "argument --dpi: expected dots per inch in [10, 2400], got '3000'"),
    (("report", "--model", "{tmp}/absent.pt", "--input-shape", "0,4"),
     "--input-shape must be positive integers"),
])
def test_bad_options_are_refused_by_name(tmp_path, capsys, args, reason):
    """Mutants this catch: cli.py: ``_at_least(1, ...)`` -> ``_at_least(0, ...)`` for
    --out-channels; --figsize's ``0 < height`` -> ``0 <= height``; the attached negative
    value's ``-\\d`` -> ``-\\d\\d`` (``--zoom -1:2`` then "expected one argument"); the
    --relative-width/--upper clash left to the library; --dpi's upper limit raised;
    _cli_commands.py: report's ``min(input_shape) < 1`` -> ``< 0``. Each is refused in one
    line that names the option."""
    err = _refused(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert reason in err and len(err.splitlines()) == 1, err


@requires_torch
def test_a_state_dict_is_refused_as_no_model(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: the state_dict check dropped: a file holding
    a dict is refused in one line saying so (not a traceback from dict.modules)."""
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Conv2d(1, 2, 3).state_dict(), path)
    err = _refused(capsys, "report", "--model", path, "--input-shape", "1,5,5")
    assert "holds a dict (a state_dict?), not a model" in err


@requires_torch
def test_a_checkpoint_holding_the_model_names_its_entry(tmp_path, capsys):
    """A new user's trial: ``torch.save({"model": m, "epoch": 3}, path)`` was refused as "a
    state_dict?"; the message names the entry that holds the model."""
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": torch.nn.Conv2d(1, 2, 3)}, path)
    err = _refused(capsys, "report", "--model", path, "--input-shape", "1,5,5", "--trust-pickle")
    assert ("holds a dict (a checkpoint?) whose entry 'model' is a model (Conv2d): save that "
            "module alone with torch.save(checkpoint['model'], path)") in err
    assert len(err.splitlines()) == 1, err


def test_a_printed_value_keeps_its_digits_as_the_interval_beside_it():
    """A new user's trial: ``spectrum`` printed 1.8173408, 1.97367885 and 2.420773927, each
    beside an interval of ten digits."""
    from decimal import ROUND_CEILING, ROUND_FLOOR

    from sparseconv._cli_commands import _digits, _outward

    assert _digits(1.8173408) == "1.817340800" and _digits(2.420773927) == "2.420773927"
    # in the interval's notation (a review: 7.408365065e-05 beside 0.00007408365064, and
    # 1.0000000000E-12, eleven digits, from a carry)
    assert _digits(0.0) == "0" and _digits(7.408365065e-05) == "0.00007408365065"
    assert _digits(1e-12) == _outward(1e-12, ROUND_CEILING) == "1.000000000E-12"
    assert _outward(1e-12, ROUND_FLOOR) == "9.999999999E-13"
