"""The command line, run as users run it: ``python -m sparseconv ...``.

Outputs are checked against the library (``conv_matrix``, itself checked against PyTorch),
``numpy.linalg.svd``, and the files read back (``scipy.sparse.load_npz``, matplotlib).

:func:`run` calls ``main`` in this process as a fresh interpreter would run it (its own
environment, directory and warning filters; its output and exit status captured): a new
interpreter importing sparseconv costs half a second, and this file runs some three hundred
commands. :func:`run_process` runs one in a subprocess where the process itself is the subject:
resource limits, signals, a closed pipe, the console script, what the import does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
import zipfile

import matplotlib.image
import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv
from sparseconv import ConvGeometry, conv_matrix, load_layer, receptive_field_paths
from sparseconv._memory import DEFAULT_LIMIT, format_bytes

LAYER = ["--in-shape", "3,8,8", "--out-channels", "4", "--kernel-size", "3", "--padding", "1"]


def run_process(*args, env=None, cwd=None, preexec_fn=None):
    """``python -m sparseconv *args`` in a subprocess."""
    environ = {**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sparseconv", *map(str, args)],
                          capture_output=True, text=True, env=environ, cwd=cwd, timeout=120,
                          preexec_fn=preexec_fn)


def run(*args, env=None, cwd=None, preexec_fn=None):
    """``python -m sparseconv *args`` as :func:`run_process` gives it, run by ``main`` in this
    process (in a subprocess where ``preexec_fn`` limits it): the variables of ``env`` set,
    in ``cwd``, with a fresh interpreter's warning filters (pytest's turn warnings into
    errors) and memory limit (read from the environment when first needed), and matplotlib's
    settings restored afterwards; an exception the command lets out
    is printed with its traceback and exits with 1, as Python's would."""
    if preexec_fn is not None:
        return run_process(*args, env=env, cwd=cwd, preexec_fn=preexec_fn)
    import matplotlib
    import matplotlib.pyplot as plt

    from sparseconv import _memory
    from sparseconv.cli import main

    environ, here, limit = dict(os.environ), os.getcwd(), _memory._limit
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.update({"MPLBACKEND": "Agg", **(env or {})})
    _memory._limit = _memory._UNREAD  # (read from the environment when first needed)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                _as_a_fresh_interpreter(), matplotlib.rc_context():
            try:
                status = main([str(a) for a in args])
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else exc.code is not None
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - as Python reports an uncaught exception
                traceback.print_exc()
                status = 1
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
        _memory._limit = limit
        plt.close("all")
    return subprocess.CompletedProcess(args, int(status), stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def _as_a_fresh_interpreter():
    """Python's default warning filters, warnings printed to ``sys.stderr`` as it prints
    them."""
    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = show
        yield


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr
    return result.stdout


def fails(*args, **kwargs) -> str:
    """The one line on stderr of a command that must exit with argparse's status 2."""
    result = run(*args, **kwargs)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert re.match(r"sparseconv( \w+)?: error: ", result.stderr), result.stderr
    assert not result.stdout, result.stdout
    return result.stderr.strip()


@pytest.mark.parametrize("args", [
    ["info", *LAYER, "--stride", "2"],
    ["info", *LAYER, "--groups", "3"],  # (an argparse error: status 2, one line)
    ["spectrum", *LAYER, "--tol", "1e-30"],  # (a library warning, in the command's words)
    ["export", "--help"],
])
def test_a_command_run_in_this_process_is_the_one_python_runs(args, tmp_path):
    """:func:`run` (``main`` in this process) gives the output, warnings and exit status of
    ``python -m sparseconv`` (:func:`run_process`) for the same command."""
    here, there = run(*args, cwd=tmp_path), run_process(*args, cwd=tmp_path)
    assert (here.returncode, here.stdout, here.stderr) == (
        there.returncode, there.stdout, there.stderr)
    assert here.stdout or here.stderr


def test_info_reports_shapes_nnz_memory_and_receptive_field():
    out = ok("info", "--in-shape", "3,32,32", "--out-channels", "16", "--kernel-size", "3",
             "--stride", "2", "--padding", "1")
    A = conv_matrix(np.ones((16, 3, 3, 3)), (3, 32, 32), stride=2, padding=1)
    assert "output shape     (16, 16, 16)" in out
    assert f"matrix           {A.shape[0]} x {A.shape[1]}, nnz {A.nnz} " in out
    assert f"(density {100 * A.nnz / (A.shape[0] * A.shape[1]):.3g}%)" in out
    # (a new user's trial: a large layer's density printed as 0.000%)
    large = ok("info", "--in-shape", "64,4096,4096", "--out-channels", "64", "--kernel-size",
               "3", "--padding", "1")
    assert "(density 5.36e-05%)" in large
    csr_bytes = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
    reported = re.search(r"csr ([\d.]+) MiB", out).group(1)
    assert reported == f"{csr_bytes / 2**20:.1f}"
    assert "dense 96.0 MiB" in out
    assert "receptive field  3x3 (the center output reads 9 positions x 3 channel(s)" in out
    dilated = ok("info", "--in-shape", "1,64", "--out-channels", "1", "--kernel-size", "3",
                 "--dilation", "4", "--padding", "same")
    assert "receptive field  9 (the center output reads 3 positions" in dilated


def test_export_writes_the_matrix_of_the_given_weights(tmp_path):
    w = np.random.default_rng(0).standard_normal((6, 2, 3, 2))
    np.save(tmp_path / "w.npy", w)
    out = ok("export", "-o", tmp_path / "A.npz", "--weights", tmp_path / "w.npy", "--in-shape",
             "4,7,6", "--groups", "2", "--stride", "2,1", "--padding-mode", "reflect",
             "--padding", "1", "--format", "csc")
    assert "csc" in out
    A = sp.load_npz(tmp_path / "A.npz")
    expected = conv_matrix(w, (4, 7, 6), groups=2, stride=(2, 1), padding=1,
                           padding_mode="reflect")
    assert A.format == "csc" and A.shape == expected.shape
    assert abs(A - expected).max() == 0


def test_export_without_compression_writes_the_same_matrix(tmp_path):
    import zipfile
    for name, extra in (("packed", ()), ("plain", ("--no-compress",))):
        ok("export", "-o", tmp_path / f"{name}.npz", *LAYER, "--seed", 3, *extra)
    packed, plain = (sp.load_npz(tmp_path / f"{n}.npz") for n in ("packed", "plain"))
    assert (packed != plain).nnz == 0
    kinds = {name: {i.compress_type for i in zipfile.ZipFile(tmp_path / f"{name}.npz").infolist()}
             for name in ("packed", "plain")}
    assert kinds == {"packed": {zipfile.ZIP_DEFLATED}, "plain": {zipfile.ZIP_STORED}}
    matrix, layer = sparseconv.load_layer(tmp_path / "plain.npz")
    assert (matrix != plain).nnz == 0 and layer.operator().shape == plain.shape


def test_padding_per_side(tmp_path):
    """--padding with two sizes per spatial dimension: LO,HI for each axis in turn."""
    w = np.random.default_rng(4).standard_normal((4, 3, 3, 2))
    np.save(tmp_path / "w.npy", w)
    ok("export", "-o", tmp_path / "A.npz", "--weights", tmp_path / "w.npy", "--in-shape",
       "3,8,7", "--padding", "1,2,0,1")
    expected = conv_matrix(w, (3, 8, 7), padding=((1, 2), (0, 1)))
    A = sp.load_npz(tmp_path / "A.npz")
    assert A.shape == expected.shape and abs(A - expected).max() == 0


def test_random_weights_are_seeded(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        ok("export", "-o", tmp_path / f"{name}.npz", *LAYER, "--seed", seed, "--dtype", "float32")
    a, b, c = (sp.load_npz(tmp_path / f"{n}.npz") for n in "abc")
    assert a.dtype == np.float32 and (a != b).nnz == 0 and (a != c).nnz > 0


def test_spy_raw_pixels_are_the_pattern_and_figure_is_drawn(tmp_path):
    ok("spy", "-o", tmp_path / "raw.png", "--raw", *LAYER, "--padding-mode", "circular")
    pixels = matplotlib.image.imread(tmp_path / "raw.png")[..., :3]
    A = conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1, padding_mode="circular")
    np.testing.assert_array_equal((pixels < 1).any(axis=-1), A.toarray() != 0)
    ok("spy", "-o", tmp_path / "big.png", "--raw", "--in-shape", "8,40,40", "--out-channels",
       "8", "--kernel-size", "3", "--max-bins", "100")
    # 12 near-equal bins per output channel (1,444 = 4 x 19^2 has no divisor near 12), 10
    # equal bins of 160 per input channel
    assert matplotlib.image.imread(tmp_path / "big.png").shape[:2] == (96, 80)
    out = ok("spy", "-o", tmp_path / "fig.png", *LAYER, "--values")
    assert "wrote" in out
    picture = matplotlib.image.imread(tmp_path / "fig.png")
    assert picture.shape[:2] == (1050, 1050) and picture.std() > 0.05  # 3.5 in at 300 dpi
    # the values of a window of channel blocks: --max-bins's advice, followable here (a new
    # user's trial: it advised slicing the matrix)
    ok("spy", "-o", tmp_path / "window.png", "--raw", "--values", "--in-shape", "8,12,12",
       "--out-channels", "8", "--kernel-size", "3", "--zoom", "2:5,5:6")  # 8 x 8 blocks of
    assert matplotlib.image.imread(tmp_path / "window.png").shape[:2] == (300, 144)  # 100x144


def test_spy_values_beyond_max_bins_pools_and_a_matrix_too_large_is_refused(
        tmp_path, capsys, monkeypatch, memory_limit):
    """``spy --values`` of a layer longer than ``--max-bins`` draws each bin's entry of
    largest magnitude (it was refused, advising a ``--max-bins`` whose entries then faded into
    white); its image is sized before the matrix is built (a new user's trial: a 200,704-row
    matrix built for 5 s first), and the matrix beyond the memory limit is refused by name
    before it is built."""
    import matplotlib.image

    from sparseconv import _matrices, conv_matrix
    from sparseconv.plot import bin_edges, largest_entries

    def built(*args, **kwargs):
        raise AssertionError("the matrix was built")

    monkeypatch.setattr(_matrices, "conv_matrix", built)
    memory_limit("1M")  # (512 x 512 pixels of 40 bytes: 10 MB)
    line = _main_fails(["spy", "-o", tmp_path / "v.png", "--values", "--in-shape", "64,56,56",
                        "--out-channels", "64", "--kernel-size", "3", "--padding", "1"], capsys)
    assert line.endswith("the 512 x 512 image of --values (its values and running maxima, 40 "
                         "bytes a pixel) would need 10.0 MiB, more than the memory limit of "
                         "1.0 MiB; --max-bins fewer bins, or --zoom fewer channel blocks, or "
                         "raise the limit in the environment, e.g. "
                         "SPARSECONV_MEMORY_LIMIT=1G"), line  # (the least whole GiB that holds it)
    monkeypatch.undo()
    memory_limit("1G")
    line = _main_fails(["spy", "-o", tmp_path / "v.png", "--values", "--in-shape", "64,56,56",
                        "--out-channels", "64", "--kernel-size", "3", "--padding", "1"], capsys)
    assert "memory limit" in line and "200704 x 200704" in line, line
    assert line.endswith("; --zoom fewer channel blocks, or no --values (the pattern, from the "
                         "geometry alone), or raise the limit in the environment, e.g. "
                         "SPARSECONV_MEMORY_LIMIT=2G"), line  # (1.3 GiB needed: a new user's
    # trial was offered 16G for a matrix of 54 GiB)
    assert not (tmp_path / "v.png").exists()
    # a window is built alone (a new user's trial: the whole 1.4 GB for a 4 x 4 window)
    memory_limit("50M")
    window = ["spy", "-o", str(tmp_path / "w.png"), "--values", "--in-shape", "64,56,56",
              "--out-channels", "64", "--kernel-size", "3", "--padding", "1", "--zoom",
              "0:8,0:8"]
    from sparseconv.cli import main as cli_main

    assert cli_main(window) in (0, None) and (tmp_path / "w.png").exists()
    capsys.readouterr()
    memory_limit(None)
    w = np.random.default_rng(3).standard_normal((8, 4, 3, 3))
    np.save(tmp_path / "w.npy", w)
    from sparseconv.cli import main

    assert main(["spy", "-o", str(tmp_path / "raw.png"), "--values", "--raw", "--max-bins",
                 "96", "--in-shape", "4,12,12", "--weights", str(tmp_path / "w.npy"),
                 "--padding", "1"]) in (0, None)
    assert capsys.readouterr().err == ""
    pixels = matplotlib.image.imread(tmp_path / "raw.png")[..., :3]
    A = conv_matrix(w, (4, 12, 12), padding=1)  # 1152 x 576 entries in bins of 12 x 6
    edges = bin_edges(1152, 96, 8, 12), bin_edges(576, 96, 4, 12)
    pooled = largest_entries(A, *edges)
    assert pixels.shape[:2] == pooled.shape == (96, 96)
    np.testing.assert_array_equal((pixels < 1).any(axis=-1), ~np.isnan(pooled))  # white: none
    strong = np.abs(np.nan_to_num(pooled)) > 0.5 * np.abs(w).max()  # coolwarm: red > 0
    np.testing.assert_array_equal((pixels[..., 0] > pixels[..., 2])[strong], pooled[strong] > 0)
    # (its advice followed: 6,272 entries a side in about 620 pixels drew a white square)
    monkeypatch.undo()
    from sparseconv.cli import main

    for size, faded in (("32", True), ("16", False)):
        assert main(["spy", "-o", str(tmp_path / "v.png"), "--values", "--in-shape",
                     f"4,{size},{size}", "--out-channels", "4", "--kernel-size", "3",
                     "--zoom", "0:1,0:1", "--max-bins", "1024"]) in (0, None)
        err = capsys.readouterr().err
        assert ("900 x 1024 entries in a picture about 787 pixels wide" in err) == faded, err


def test_figures_a_column_wide_and_titles_broken_between_items(tmp_path, capsys, monkeypatch):
    """A new user's trial: ``spectrum --figsize 3.5,2.5`` (a paper's column) drew both panels,
    their titles off the figure, and titles broke inside "padding 1x1": one panel, said so,
    and titles broken after a comma only."""
    from sparseconv import _cli_commands
    from sparseconv.cli import main

    figures = []
    monkeypatch.setattr(_cli_commands, "_savefig", lambda fig, *args: figures.append(fig))
    layer = ["--in-shape", "3,16,16", "--out-channels", "8", "--kernel-size", "3",
             "--padding", "1"]
    for size, panels in (("3.5,2.5", 1), ("7,3", 2)):
        assert main(["spectrum", "-o", str(tmp_path / "s.png"), "--figsize", size,
                     *layer]) in (0, None)
        err = capsys.readouterr().err
        assert len(figures[-1].axes) == panels + (panels == 2)  # (the map's colorbar)
        assert ("no frequency map in a figure 3.5 in wide" in err) == (panels == 1), err
    for figure in figures:
        for line in figure._suptitle.get_text().splitlines()[:-1]:
            assert line.endswith(","), figure._suptitle.get_text()
    assert main(["spy", "-o", str(tmp_path / "p.png"), "--figsize", "2,2", *layer]) in (0, None)
    title = figures[-1].axes[0].get_title()
    assert len(title.splitlines()) > 2 and all(
        line.endswith(",") for line in title.splitlines()[:-1]), title
    # a zoomed picture's title says which channel blocks it draws
    assert main(["spy", "-o", str(tmp_path / "z.png"), "--zoom", "1:3,0:2", *layer]) in (0, None)
    title = " ".join(figures[-1].axes[0].get_title().split())
    assert title.endswith("zoom: output channels 1..2 x input channels 0..1"), title


def test_spy_raw_refuses_a_figsize_it_would_ignore(tmp_path, capsys):
    """(A new user's trial: ``--raw --figsize 2,2`` wrote the raster, the size ignored.)"""
    line = _main_fails(["spy", "-o", tmp_path / "raw.png", "--raw", "--figsize", "2,2",
                        *LAYER], capsys)
    assert line.endswith("error: --figsize does not apply to --raw, which writes one pixel "
                         "per entry or bin and no figure (--dpi sets its printed size): drop "
                         "one of them"), line
    assert not (tmp_path / "raw.png").exists()


def _printed_norm(out: str) -> tuple[float, float, float, str]:
    match = re.search(r"spectral norm  (\S+)  in \[(\S+), (\S+)\]  \((\w+)[;)]", out)
    assert match, out
    return (*(float(v) for v in match.groups()[:3]), match.group(4))


def test_spectrum_prints_the_spectral_norm_and_its_interval(tmp_path):
    out = ok("spectrum", "-o", tmp_path / "s.png", *LAYER, "--seed", "3")
    w = np.random.default_rng(3).standard_normal((4, 3, 3, 3)) / np.sqrt(27)
    dense = np.linalg.svd(conv_matrix(w, (3, 8, 8), padding=1).toarray(), compute_uv=False)
    value, lower, upper, method = _printed_norm(out)
    assert method == "dense" and abs(value - dense[0]) <= 1e-9 * dense[0]
    assert lower <= dense[0] <= upper
    circ = ok("spectrum", "-o", tmp_path / "c.png", *LAYER, "--seed", "3", "--padding-mode",
              "circular")
    A = conv_matrix(w, (3, 8, 8), padding=1, padding_mode="circular")
    top = np.linalg.svd(A.toarray(), compute_uv=False)[0]
    value, lower, upper, method = _printed_norm(circ)
    assert method == "fft" and abs(value - top) <= 1e-9 * top
    assert matplotlib.image.imread(tmp_path / "c.png").shape[:2] == (900, 2100)  # 7 x 3 in


def test_dtype_float32_rounds_the_matrices_not_the_certified_layer(tmp_path):
    """A new user's trial: ``spectrum --dtype float32`` certified the weights rounded to
    float32, an interval above the given layer's norm; --dtype is the matrices' (export's
    entries are float32), and the spectra are of the weights as given."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    np.save(tmp_path / "w.npy", w)
    layer = ["--in-shape", "3,8,8", "--kernel-size", "3", "--padding", "1",
             "--weights", tmp_path / "w.npy"]
    truth = np.linalg.norm(conv_matrix(w, (3, 8, 8), padding=1).toarray(), 2)
    rounded = np.linalg.norm(conv_matrix(w.astype(np.float32).astype(np.float64), (3, 8, 8),
                                         padding=1).toarray(), 2)
    assert abs(rounded - truth) > 1e-9 * truth  # (the layer tells them apart)
    for dtype in ("float64", "float32"):
        _, lower, upper, _ = _printed_norm(ok("spectrum", "-o", tmp_path / f"{dtype}.png",
                                              *layer, "--dtype", dtype))
        assert lower <= truth <= upper, (dtype, lower, truth, upper)
    ok("export", "-o", tmp_path / "a.npz", *layer, "--dtype", "float32")
    A, saved = load_layer(tmp_path / "a.npz")
    assert A.dtype == np.float32 and saved.weight.dtype == np.float32


def test_spectrum_every_size_bounds_the_layer_on_large_inputs(tmp_path):
    out = ok("spectrum", "-o", tmp_path / "s.png", *LAYER, "--seed", "3", "--every-size")
    match = re.search(r"every input size\s+(\S+)\s+in \[(\S+), (\S+)\]", out)
    assert match, out
    value, lower, upper = (float(v) for v in match.groups())
    assert lower <= value <= upper and upper - lower <= 1e-7 * upper
    w = np.random.default_rng(3).standard_normal((4, 3, 3, 3)) / np.sqrt(27)
    for n in (8, 24):  # every size and zero padding is below it; large ones come close
        top = np.linalg.norm(conv_matrix(w, (3, n, n), padding=1).toarray(), 2)
        assert top <= upper
    assert top >= 0.95 * lower
    assert "every input size" not in ok("spectrum", "-o", tmp_path / "t.png", *LAYER)
    assert "(the infinite grid)" in out  # zero padding: no caveat


def test_every_size_says_it_does_not_bound_a_reflect_padded_layer(tmp_path):
    """The reflect-padded layer's own norm is above the every-size bound (padding folds taps
    onto the input); the line said "every input size" without a word."""
    args = ["-o", tmp_path / "s.png", "--in-shape", "2,8,8", "--out-channels", "4",
            "--kernel-size", "3", "--padding", "1", "--seed", "0", "--every-size"]
    out = ok("spectrum", *args, "--padding-mode", "reflect")
    norm = float(re.search(r"spectral norm\s+\S+\s+in \[(\S+),", out).group(1))
    every = float(re.search(r"every input size\s+\S+\s+in \[\S+, (\S+)\]", out).group(1))
    assert norm > every, out  # a reflect-padded layer is not bounded by it
    assert ("(the infinite grid; it bounds the zero-padded and periodic layers only, not this "
            "reflect-padded one)") in out, out
    periodic = ok("spectrum", *args, "--padding-mode", "circular")  # 8 divisible by stride 1
    assert "(the infinite grid)" in periodic, periodic
    # a trial: unpadded, the padding mode reads nothing, and the bound holds (it said "not
    # this circular-padded one" of a layer whose norm 1.547 is below it, 1.719)
    args = [a for a in args if a not in ("--padding", "1")] + ["--stride", "2"]
    for mode in ("circular", "reflect"):
        result = run("spectrum", *args, "--padding-mode", mode)
        out = result.stdout
        assert result.returncode == 0 and "reads none, as PyTorch's" in result.stderr, result
        assert "(the infinite grid)" in out, out
        norm = float(re.search(r"spectral norm\s+\S+\s+in \[\S+, (\S+)\]", out).group(1))
        every = float(re.search(r"every input size\s+\S+\s+in \[(\S+),", out).group(1))
        assert norm <= every, out


def test_spectrum_exact_certifies_every_axis(tmp_path, capsys, monkeypatch):
    from sparseconv import _norm_bounds, _spectral_norm
    from sparseconv.cli import main

    # a layer that, without --exact, would get the exact sections (as large layers do)
    monkeypatch.setattr(_norm_bounds, "FULL_FLOPS", 0)
    monkeypatch.setattr(_spectral_norm, "dense_is_affordable", lambda *shape: False)
    args = ["--in-shape", "4,24,24", "--out-channels", "4", "--kernel-size", "3", "--padding",
            "1", "--seed", "5"]
    w = np.random.default_rng(5).standard_normal((4, 4, 3, 3)) / np.sqrt(36)
    top = np.linalg.norm(conv_matrix(w, (4, 24, 24), padding=1).toarray(), 2)
    widths = []
    for extra in ([], ["--exact"]):
        assert main(["spectrum", "-o", str(tmp_path / "e.png"), *args, *extra]) == 0
        value, lower, upper, method = _printed_norm(capsys.readouterr().out)
        assert lower <= top <= upper, (lower, top, upper, extra)
        widths.append((upper - lower) / upper)
    assert widths[1] <= 1e-6 < widths[0], widths
    # reflect padding too: its Gram is banded alike
    assert main(["spectrum", "-o", str(tmp_path / "r.png"), *args, "--padding-mode", "reflect",
                 "--exact"]) == 0
    value, lower, upper, method = _printed_norm(capsys.readouterr().out)
    reflect = conv_matrix(w, (4, 24, 24), padding=1, padding_mode="reflect").toarray()
    assert lower <= np.linalg.norm(reflect, 2) <= upper and method == "bounds"
    assert upper - lower <= 1e-6 * upper
    # circular padding that is not periodic has no whole-Gram proof (its reads wrap around):
    # it keeps the default route, as in report
    circular = [*args[:-3], "2", "--seed", "5", "--padding-mode", "circular"]
    assert main(["spectrum", "-o", str(tmp_path / "c.png"), *circular, "--exact"]) == 0
    value, lower, upper, method = _printed_norm(capsys.readouterr().out)
    wrapped = conv_matrix(w, (4, 24, 24), padding=2, padding_mode="circular").toarray()
    assert lower <= np.linalg.norm(wrapped, 2) <= upper and method == "bounds"


def test_spectrum_says_when_the_lower_bound_missed_tol(tmp_path, capsys, monkeypatch):
    import dataclasses

    from sparseconv import _spectral_norm
    from sparseconv.cli import main

    original = _spectral_norm.spectral_norm
    monkeypatch.setattr(_spectral_norm, "spectral_norm", lambda *args, **kwargs: (
        dataclasses.replace(original(*args, **kwargs), converged=False)))
    args = ["--in-shape", "4,12,12", "--out-channels", "4", "--kernel-size", "3"]
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *args]) == 0
    out = capsys.readouterr().out  # (a new user's trial: a dense route's rounding allowance
    method = _printed_norm(out)[3]  # over tol was blamed on the lower bound, and on --tol
    # where --relative-width had set it)
    assert method == "dense" and "; its rounding allowance is over tol 1e-07)" in out, out
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *args, "--relative-width",
                 "1e-7"]) == 0
    assert "; its rounding allowance is over tol 1.25e-08)" in capsys.readouterr().out
    monkeypatch.setattr(_spectral_norm, "spectral_norm", original)
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *args]) == 0
    assert "did not meet" not in capsys.readouterr().out


def test_upper_runs_no_arpack_for_the_plot(tmp_path, capsys, monkeypatch):
    """--upper is fast on a layer no exact method covers (a new user's trial: 64->64 on 64x64
    spent minutes in ARPACK's 32 largest singular values for the plot, before the bound): the
    plot shows the certified interval alone."""
    import scipy.sparse.linalg as spla

    from sparseconv import _spectra
    from sparseconv.cli import main

    def refused(*args, **kwargs):
        raise AssertionError("svds ran")

    monkeypatch.setattr(spla, "svds", refused)
    monkeypatch.setattr(_spectra, "DENSE_FLOPS", 10)  # no dense SVD: ARPACK's case
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *LAYER, "--upper"]) == 0
    assert _printed_norm(capsys.readouterr().out)[3] == "upper"
    with pytest.raises(AssertionError, match="svds ran"):  # without --upper, ARPACK's values
        main(["spectrum", "-o", str(tmp_path / "s.png"), *LAYER])


def test_upper_is_spectral_norms_method_upper_in_spectrum_and_report(tmp_path, capsys):
    """--upper is spectral_norm's method="upper" (an audit: the command line had no way to
    ask for it): the same certified upper bound, containing the dense norm, in both
    commands; the report's rows say no lower bound converged."""
    torch = pytest.importorskip("torch")
    import sparseconv.torch as sct
    from sparseconv.cli import main

    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *LAYER, "--seed", "3",
                 "--upper"]) == 0
    out = capsys.readouterr().out
    value, lower, upper, method = _printed_norm(out)
    w = np.random.default_rng(3).standard_normal((4, 3, 3, 3)) / np.sqrt(27)
    top = np.linalg.norm(conv_matrix(w, (3, 8, 8), padding=1).toarray(), 2)
    expected = sparseconv.spectral_norm(w, (3, 8, 8), padding=1, method="upper")
    assert method == "upper" and "the lower bound is one quotient" in out
    assert lower <= top <= upper and upper == pytest.approx(expected.upper, rel=1e-9)
    model = _tiny_model().eval()
    torch.save(model, tmp_path / "model.pt")
    assert main(["report", "--model", str(tmp_path / "model.pt"), "--input-shape", "3,8,8",
                 "--trust-pickle", "--upper", "--quiet"]) == 0
    out = capsys.readouterr().out
    expected_report = str(sct.lipschitz_report(model, (3, 8, 8), method="upper"))
    # the same table, but for the seconds (the last cell of a row)
    assert [line.split()[:-1] for line in out.splitlines()[2:-2]] == [
        line.split()[:-1] for line in expected_report.splitlines()[2:-2]]
    assert out.splitlines()[-2:] == expected_report.splitlines()[-2:]
    assert re.search(r"\n0 +Conv2d .* upper +no ", out), out


def test_a_model_saved_in_training_mode_is_said_by_the_layer_commands(tmp_path, capsys):
    """``spectrum --model`` switched a model saved in training mode to eval mode silently (an
    audit); it says so on stderr now, as ``report`` does."""
    torch = pytest.importorskip("torch")
    from sparseconv.cli import main

    model = _model_with_a_block().train()
    torch.save(model, tmp_path / "model.pt")
    args = ["--model", str(tmp_path / "model.pt"), "--trust-pickle", "--layer", "3.0",
            "--in-shape", "3,10,10"]
    assert main(["spectrum", *args, "-o", str(tmp_path / "s.png")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("sparseconv spectrum: note: the model was saved in training mode; "
                          "it is analysed in eval mode"), err
    torch.save(model.eval(), tmp_path / "model.pt")
    assert main(["info", *args]) == 0
    assert "training mode" not in capsys.readouterr().err


def test_tol_reaches_spectral_norm_and_is_checked_first(tmp_path, capsys, monkeypatch):
    """--tol is spectral_norm's tol, in spectrum and report; out of (0, 1) it is refused,
    named as the option, before a layer is built or a model loaded."""
    from sparseconv import _spectral_norm
    from sparseconv.cli import main

    seen = []
    original = _spectral_norm.spectral_norm

    def spy(*args, **kwargs):
        seen.append(kwargs["tol"])
        return original(*args, **kwargs)

    monkeypatch.setattr(_spectral_norm, "spectral_norm", spy)
    args = ["--in-shape", "4,12,12", "--out-channels", "4", "--kernel-size", "3", "--padding",
            "1"]
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *args, "--tol", "1e-5"]) == 0
    assert seen == [1e-5] and "spectral norm" in capsys.readouterr().out
    for bad in ("0", "1", "nan", "2"):
        line = _main_fails(["spectrum", "-o", tmp_path / "t.png", *args, "--tol", bad], capsys)
        assert line.startswith("sparseconv spectrum: error: --tol must be a finite number in "
                               "[1e-15, 1), got"), line
        assert not (tmp_path / "t.png").exists()
        line = _main_fails(["report", "--model", tmp_path / "missing.pt", "--input-shape",
                            "3,8,8", "--tol", bad], capsys)  # refused before the load
        assert line.startswith("sparseconv report: error: --tol must be"), line


def test_relative_width_reaches_spectral_norm_and_warns_in_one_line(tmp_path, capsys,
                                                                   monkeypatch):
    """--relative-width is spectral_norm's relative_width (checked before any work); its
    warning is one line on stderr, led by the command."""
    from sparseconv import _norm_bounds, _spectral_norm
    from sparseconv.cli import main

    monkeypatch.setattr(_norm_bounds, "FULL_FLOPS", 0)
    monkeypatch.setattr(_spectral_norm, "dense_is_affordable", lambda *shape: False)
    args = ["--in-shape", "4,12,12", "--out-channels", "4", "--kernel-size", "3"]
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *args, "--padding", "1",
                 "--relative-width", "1e-5"]) == 0
    out, err = capsys.readouterr()
    lower, upper = (float(v) for v in re.search(r"in \[(\S+), (\S+)\]", out).groups())
    assert upper - lower <= 1e-5 * upper and err == "", (out, err)
    assert main(["spectrum", "-o", str(tmp_path / "s.png"), *args, "--padding", "2",
                 "--padding-mode", "circular", "--relative-width", "1e-5"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("sparseconv spectrum: warning: spectral_norm: the certified "
                          "interval's relative width") and err.count("\n") == 1, err
    for bad in ("0", "1", "nan"):
        line = _main_fails(["spectrum", "-o", tmp_path / "t.png", *args, "--relative-width",
                            bad], capsys)
        assert line.startswith("sparseconv spectrum: error: --relative-width must be a finite "
                               "number in [8e-15, 1), got"), line
        line = _main_fails(["report", "--model", tmp_path / "missing.pt", "--input-shape",
                            "3,8,8", "--relative-width", bad], capsys)  # before the load
        assert line.startswith("sparseconv report: error: --relative-width must be"), line


def test_figure_options_size_the_file_and_spectrum_draws_its_interval(tmp_path):
    ok("spy", "-o", tmp_path / "z.png", *LAYER, "--dpi", "100", "--figsize", "2.5,2",
       "--zoom", "1:3,0:2")
    assert matplotlib.image.imread(tmp_path / "z.png").shape[:2] == (200, 250)
    out = ok("spectrum", "-o", tmp_path / "s.svg", *LAYER, "--seed", "3", "--figsize", "7,3")
    _, lower, upper, _ = _printed_norm(out)
    svg = (tmp_path / "s.svg").read_text()  # fonts as text: the legend is readable here
    drawn = re.search(r"certified \|\|A\|\|.*? in.*?\[([\d.]+), ([\d.]+)\]", svg,
                      re.DOTALL)  # (on two lines: two texts)
    assert drawn, "no certified interval on the figure"
    assert float(drawn.group(1)) <= lower <= upper <= float(drawn.group(2))
    assert 'width="504pt" height="216pt"' in svg


@pytest.mark.parametrize("args, reason", [
    (["info", *LAYER, "--stride", "0"], "error: --stride must be a positive integer"),
    (["info", *LAYER, "--dilation", "0"], "error: --dilation must be a positive integer"),
    (["info", "--in-shape", "2,8,8", "--weights", "w.npy"],
     "error: --in-shape has 2 input channels, but --weights of shape (4, 3, 3, 3) with "
     "--groups 1 takes 3 x 1 = 3"),
    (["info", "--in-shape", "4,8,8", "--groups", "2", "--weights", "w.npy"],
     "error: --in-shape has 4 input channels, but --weights of shape (4, 3, 3, 3) with "
     "--groups 2 takes 3 x 2 = 6"),
    (["info", "--in-shape", "9,8,8", "--groups", "3", "--weights", "w.npy"],
     "error: --groups 3 must divide the output channels of --weights of shape (4, 3, 3, 3)"),
    (["info", *LAYER, "--padding", "none"],
     "argument --padding: expected an integer, comma-separated integers (one per spatial "
     "dimension) or one of valid, same, full, got 'none'"),
    (["info", *LAYER, "--padding-mode", "foo"], "argument --padding-mode: invalid choice"),
    (["info", "--in-shape", "3,x,8", "--out-channels", "4", "--kernel-size", "3"],
     "argument --in-shape/--input-shape: expected an integer"),
    (["info", *LAYER, "--groups", "2"], "--groups 2 must divide the input channels 3"),
    (["info", "--in-shape", "3,8,8"], "--out-channels and --kernel-size are required"),
    (["info", *LAYER, "--kernel-size", "11"], "larger than the padded input size"),
    (["info", *LAYER, "--padding-mode", "reflect", "--padding", "8"], "too large"),
    (["info", *LAYER, "--padding", "same", "--stride", "2"], "'same' is not supported"),
    (["info", *LAYER, "--weights", "missing.npy"], "cannot read --weights missing.npy"),
    (["export", *LAYER, "-o", "out.npz", "--in-shape", "64,200,200", "--out-channels", "64"],
     "memory limit"),
    (["spy", *LAYER, "-o", "no/such/dir/a.png"], "No such file or directory"),
    # (a memory audit: "out of memory (Unable to allocate 32.0 GiB ...); try a smaller layer")
    (["spy", *LAYER, "-o", "a.png", "--in-shape", "3,4096,4096", "--max-bins", "100000"],
     "the 65536 x 98304 bins of raster would need 96.0 GiB, more than the memory limit of "
     "64.0 MiB; use a smaller max_bins"),
    ([], "the following arguments are required: COMMAND"),
    (["info", *LAYER, "--seed", "-1"],
     "argument --seed: expected a non-negative integer, got '-1'"),
    (["info", *LAYER, "--seed", "x"], "argument --seed: expected a non-negative integer"),
    (["info", "--in-shape", "3,8,8", "--weights", "w.npz"],
     "--weights w.npz is an .npz archive; expected one array saved with np.save"),
    (["info", "--in-shape", "3,8,8", "--weights", "scalar.npy", "--out-channels", "4"],
     "--weights must hold an array of shape (C_out, C_in/groups, *kernel) with at least one "
     "spatial dimension, got shape ()"),
    (["info", "--in-shape", "3,8,8", "--weights", "vector.npy"], "got shape (4,)"),
    (["info", "--in-shape", "3,8,8", "--weights", "empty.npy"], "cannot read --weights empty.npy"),
    (["info", "--in-shape", "3,8,8", "--weights", "short.npy"], "cannot read --weights short.npy"),
    (["info", "--in-shape", "3,8,8", "--weights", "a_dir"], "cannot read --weights a_dir"),
    (["info", "--in-shape", "3,8,8", "--weights", "complex.npy"], "real numeric array"),
    (["info", "--in-shape", "3,8,8", "--weights", "hollow.npy"],
     "--weights must not have empty dimensions, got shape (0, 3, 3, 3)"),
    (["info", *LAYER, "--stride", "1,2,3"],
     "--stride has 3 values for 2 axes: it must be a positive integer or a tuple of 2"),
    (["info", *LAYER, "--padding", "1,2,3"],
     "--padding must give one size, 2 (one per spatial dimension) or 4 (LO,HI per dimension)"),
    (["info", "--in-shape", "3,8", "--out-channels", "4", "--kernel-size", "3,3"],
     "--kernel-size must be a positive integer (--in-shape 3,8 has one spatial dimension), "
     "got (3, 3)"),  # (a new user's trial: "a positive integer or 1 of them")
    (["info", *LAYER, "--kernel-size", "3,3,3"],
     "--kernel-size must be a positive integer or 2 of them (one per spatial dimension"),
    # a review: errors that named the library's weight_shape and (lo, hi) pairs
    (["info", "--in-shape", "3,8,8", "--out-channels", "3000000000000000000000",
      "--kernel-size", "3"], "--out-channels must be at most 2**60"),
    (["info", "--in-shape", "3,8,8", "--out-channels", "4", "--kernel-size",
      "3000000000000000000000"], "--kernel-size must be at most 2**60"),
    (["spy", *LAYER, "--raw", "-o", "x.xyz"], "cannot write a raw raster in format 'xyz' of x.xyz"),
    (["spy", *LAYER, "--raw", "-o", "x.tif"], "cannot write a raw raster in format 'tif'"),
    (["spy", *LAYER, "-o", "x.xyz"], "cannot write a figure in format 'xyz' of x.xyz; use one of"),
    (["spectrum", *LAYER, "-o", "x.xyz"], "cannot write a figure in format 'xyz'"),
    (["export", *LAYER, "-o", "a_dir"], "cannot write a_dir: Is a directory"),
    (["export", *LAYER, "-o", "b"], "cannot write b.npz: Is a directory"),  # -o b writes b.npz
    (["export", *LAYER, "-o", "/dev/full"], "/dev/full is a character device"),
    (["spy", *LAYER, "-o", "/dev/null"], "/dev/null is a character device"),
    (["export", *LAYER, "-o", ""], "expected a file name, got ''"),
    (["export", *LAYER, "-o", "a_dir/"], "expected a file name, got 'a_dir/'"),
    (["spy", *LAYER, "-o", "x.png", "--dpi", "5"], "argument --dpi: expected dots per inch"),
    (["spectrum", *LAYER, "-o", "x.png", "--figsize", "3"], "argument --figsize: expected"),
    (["spy", *LAYER, "-o", "x.png", "--figsize", "3,-1"], "argument --figsize: expected"),
    (["spy", *LAYER, "-o", "x.png", "--zoom", "0:4"], "argument --zoom: expected FIRST:STOP"),
    (["spy", *LAYER, "-o", "x.png", "--zoom", "0:5,0:1"],
     "error: --zoom 0:5,0:1: the output block range (0, 5)"),
    # (a new user's trial: argparse took -1:2 for an option, "expected one argument")
    (["spy", *LAYER, "-o", "x.png", "--zoom", "-1:2,0:1"],
     "error: --zoom -1:2,0:1: the output block range (-1, 2) must satisfy 0 <="),
    # (another: so for every option of comma values, "--in-shape -3,5,5" among them)
    (["info", "--in-shape", "-3,5,5", "--out-channels", "4", "--kernel-size", "3"],
     "error: --in-shape must be positive C,*spatial with at least one spatial size, got -3,5,5"),
    (["info", *LAYER, "--padding", "-1,2"], "error: --padding must be a non-negative int"),
    (["export", *LAYER, "-o", "x.npz", "--format", "bsr", "--blocksize", "-1,1"],
     "error: --blocksize must be a pair of positive integers (R, C), got (-1, 1)"),
    (["info", *LAYER, "--bogus", "1"], "sparseconv info: error: unrecognized arguments: --bogus 1"),
    (["report", "--model", "m.pt", "--input-shape", "3,8,8", "--maxiter", "10"],
     "sparseconv report: error: unrecognized arguments: --maxiter 10"),
    (["report", "--model", "m.pt", "--input-shape", "3,8,8", "--tol", "x"],
     "argument --tol: invalid float value: 'x'"),
    (["spectrum", *LAYER, "-o", "x.png", "--upper", "--exact"],
     "sparseconv spectrum: error: argument --exact: not allowed with argument --upper"),
    (["report", "--model", "m.pt", "--input-shape", "3,8,8", "--exact", "--upper"],
     "sparseconv report: error: argument --upper: not allowed with argument --exact"),
    (["spectrum", *LAYER, "-o", "x.png", "--upper", "--relative-width", "1e-3"],
     "error: --relative-width 0.001 needs a lower bound, and --upper computes none"),
    (["report", "--model", "m.pt", "--input-shape", "3,8,8", "--upper", "--relative-width",
      "1e-3"], "error: --relative-width 0.001 needs a lower bound, and --upper computes none"),
    # found by a trial of the command line's error paths
    (["spectrum", "--in-shape", "3,32,32", "--weights", "nan.npy", "-o", "s.png"],
     "--weights must have finite entries, got nan at index (0, 1, 2, 0)"),
    (["info", "--in-shape", "3,8,8", "--weights", "junk.npy"],
     "cannot read --weights junk.npy: not an array saved with np.save (.npy)"),
    # (a new user's trial: an array of Python objects was said to be no np.save file)
    (["info", "--in-shape", "3,8,8", "--weights", "objects.npy"],
     "cannot read --weights objects.npy: it holds an array of Python objects (dtype object)"),
    # a review: finite in float64, inf once cast to --dtype float32, and written so
    (["export", "--in-shape", "3,8,8", "--weights", "huge.npy", "--dtype", "float32", "-o",
      "h.npz"], "--weights must be finite in --dtype float32: 1e+300 at index (0, 0, 0, 0)"),
    (["info", *LAYER, "--groups", "3"], "--groups 3 must divide --out-channels 4"),
    (["info", "--in-shape", "3,8,8", "--weights", "w.npy", "--seed", "1"],
     "--seed 1 seeds random weights, and --weights w.npy gives them: pass one of the two"),
    (["report", "--model", "m.pt", "--input-shape", "3,8,8", "--plot", "no/dir/p.png"],
     "cannot write no/dir/p.png: No such file or directory"),
])
def test_bad_options_are_argparse_errors_with_the_reason_in_one_line(args, reason, tmp_path):
    np.savez(tmp_path / "w.npz", w=np.ones((4, 3, 3, 3)))
    np.save(tmp_path / "w.npy", np.ones((4, 3, 3, 3)))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "scalar.npy", np.float64(3))
    np.save(tmp_path / "vector.npy", np.ones(4))
    np.save(tmp_path / "complex.npy", np.ones((4, 3, 3, 3), complex))
    np.save(tmp_path / "hollow.npy", np.ones((0, 3, 3, 3)))
    np.save(tmp_path / "short.npy", np.ones((4, 3, 3, 3)))
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:200])
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "junk.npy").write_text("hello\n")
    np.save(tmp_path / "huge.npy", np.full((4, 3, 3, 3), 1e300))
    nan = np.ones((4, 3, 3, 3))
    nan[0, 1, 2, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "b.npz").mkdir()
    line = fails(*args, env={"SPARSECONV_MEMORY_LIMIT": "64M"}, cwd=tmp_path)
    assert reason in line, line


def test_weights_that_contradict_the_options_are_rejected(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((4, 3, 3, 3)))
    result = run("info", "--in-shape", "3,8,8", "--weights", tmp_path / "w.npy",
                 "--out-channels", "5")
    assert result.returncode == 2 and "contradicts --weights of shape (4, 3, 3, 3)" in \
        result.stderr.splitlines()[0]


def test_spectrum_of_weights_whose_norm_is_no_float(tmp_path, capsys):
    """A new user's trial: weights of 1e308 gave numpy's ldexp warning and an error about an
    interval, naming no option; then two warnings of the same before the error. The error
    alone names --weights."""
    from sparseconv.cli import main

    np.save(tmp_path / "w.npy", np.full((4, 3, 3, 3), 1e308))
    with pytest.raises(SystemExit) as info:
        main(["spectrum", "-o", str(tmp_path / "s.png"), "--in-shape", "3,8,8", "--weights",
              str(tmp_path / "w.npy"), "--padding", "1"])
    lines = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and not (tmp_path / "s.png").exists()
    assert [line.split(": ")[1] for line in lines] == ["error"], lines  # (one line: the
    # warnings of the same, the figure's values' and the norm's, were two more)
    assert lines[-1] == (f"sparseconv spectrum: error: the spectral norm of --weights "
                         f"{tmp_path / 'w.npy'} is over the largest float64, 1.798e+308: scale "
                         "the weights down by a power of two (the norm scales with them)")


def test_version():
    assert ok("--version") == f"sparseconv {sparseconv.__version__}\n"


# ---------------------------------------------------------------------------------------------
# Files: the path reported is the path written; a failed write changes nothing.
# ---------------------------------------------------------------------------------------------
def test_the_reported_path_is_the_file_written(tmp_path):
    assert ok("export", "-o", "plain", *LAYER, cwd=tmp_path).startswith("wrote plain.npz: csr")
    assert ok("spy", "-o", "picture", *LAYER, cwd=tmp_path) == "wrote picture.png\n"
    assert ok("spy", "-o", "r.PDF", "--raw", *LAYER, cwd=tmp_path) == "wrote r.PDF\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picture.png", "plain.npz", "r.PDF"]
    assert sp.load_npz(tmp_path / "plain.npz").shape == (256, 192)
    assert (tmp_path / "picture.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "r.PDF").read_bytes().startswith(b"%PDF")


def test_a_symbolic_link_keeps_pointing_at_the_rewritten_file(tmp_path):
    (tmp_path / "real.npz").write_bytes(b"old")
    (tmp_path / "link.npz").symlink_to("real.npz")
    ok("export", "-o", "link.npz", *LAYER, cwd=tmp_path)
    assert (tmp_path / "link.npz").is_symlink()
    assert sp.load_npz(tmp_path / "real.npz").shape == (256, 192)


def file_size_limit(nbytes: int):
    """A ``preexec_fn``: writes beyond ``nbytes`` fail with EFBIG, as on a full disk (SIGXFSZ,
    which would kill the process instead, is ignored)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


WRITERS = {
    "export": (["export", *LAYER], "out.npz"),
    "spy --raw": (["spy", "--raw", *LAYER, "--in-shape", "3,16,16"], "out.png"),
    "spy --raw pdf": (["spy", "--raw", *LAYER], "out.pdf"),
    "spy": (["spy", *LAYER], "out.svg"),
    "spectrum": (["spectrum", *LAYER], "out.png"),
}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("existing", [b"", b"a good file\n" * 8], ids=["new", "existing"])
def test_a_full_disk_leaves_no_truncated_file_and_the_old_file_intact(writer, existing,
                                                                      tmp_path):
    args, name = WRITERS[writer]
    if existing:
        (tmp_path / name).write_bytes(existing)
    line = fails(*args, "-o", name, cwd=tmp_path, preexec_fn=file_size_limit(400))
    assert line.endswith(f": error: cannot write {name}: File too large"), line
    assert [p.name for p in tmp_path.iterdir()] == ([name] if existing else [])
    if existing:
        assert (tmp_path / name).read_bytes() == existing


@pytest.mark.parametrize("writer", WRITERS)
def test_an_unwritable_directory_is_one_line_naming_the_path(writer, tmp_path):
    (tmp_path / "file").write_text("a regular file, not a directory")
    args, name = WRITERS[writer]
    line = fails(*args, "-o", f"file/{name}", cwd=tmp_path)
    assert line.endswith(f": error: cannot write file/{name}: Not a directory"), line
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# ---------------------------------------------------------------------------------------------
# info: sizes without building anything.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [
    dict(in_shape=(2, 9, 7), kernel=(3, 2), stride=(2, 1), padding=1, dilation=(2, 1)),
    dict(in_shape=(1, 6, 6), kernel=(5, 5), padding=4, padding_mode="circular", dilation=1),
    dict(in_shape=(1, 6, 7), kernel=(3, 3), padding=2, padding_mode="reflect", stride=2),
    dict(in_shape=(1, 5, 5), kernel=(2, 2), padding=2, padding_mode="replicate", dilation=3),
    dict(in_shape=(1, 5), kernel=(2,), padding=2, dilation=3),  # center output reads only pads
])
def test_info_receptive_field_is_that_of_receptive_field_paths(layer):
    kwargs = {k: layer[k] for k in ("stride", "padding", "dilation", "padding_mode") if k in layer}
    g = ConvGeometry.from_weight((1, layer["in_shape"][0], *layer["kernel"]), layer["in_shape"],
                                 **kwargs)
    field = receptive_field_paths(g) > 0
    options = [f"--{k.replace('_', '-')}={','.join(map(str, np.atleast_1d(v)))}"
               for k, v in kwargs.items()]
    out = ok("info", "--in-shape", ",".join(map(str, layer["in_shape"])), "--out-channels", "1",
             "--kernel-size", ",".join(map(str, layer["kernel"])), *options)
    line = next(line for line in out.splitlines() if line.startswith("receptive field"))
    if not field.any():
        assert "empty" in line, line
        return
    extent = "x".join(str(ix.max() - ix.min() + 1) for ix in np.nonzero(field))
    assert line.split()[2] == extent and f"reads {field.sum()} positions" in line, (layer, line)


def address_space_limit(nbytes: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
    return limit


def test_info_counts_without_walking_an_axis_and_sizes_its_taps_first(tmp_path):
    """(A new user's trial: a billion inputs, or a padding of 10**8, were refused for the
    260 GiB and 104 GiB of a gather map the count never needed.)"""
    small = dict(env={"SPARSECONV_MEMORY_LIMIT": "1M"},
                 preexec_fn=address_space_limit(2 * 2**30))
    huge = ["info", "--in-shape", "1,1000000000", "--out-channels", "1", "--kernel-size", "3"]
    out = ok(*huge, **small)
    assert "nnz 2999999994 " in out and "receptive field  3 (the center output" in out, out
    padded = ok("info", "--in-shape", "3,32,32", "--out-channels", "1", "--kernel-size", "3",
                "--padding", "100000000", **small)
    g = ConvGeometry.from_weight((1, 3, 3, 3), (3, 32, 32), padding=10**8)
    assert f"nnz {g.nnz()} " in padded and "reads 9 positions x 3 channel(s)" in padded, padded
    # what is per tap is sized: a kernel of 10**6 taps, refused under the limit at once
    line = fails("info", "--in-shape", "1,2000000", "--out-channels", "1", "--kernel-size",
                 "1000000", **small)
    assert "more than the memory limit of 1.0 MiB" in line, line
    # the command line's remedy, not Python calls (a new user's trial)
    assert "in the environment, e.g. SPARSECONV_MEMORY_LIMIT=1G" in line, line
    assert "set_memory_limit" not in line and "ConvOperator" not in line, line
    # where the library advised the operator (a review: "...; or raise the limit")
    line = fails("export", *LAYER, "-o", "m.npz", env={"SPARSECONV_MEMORY_LIMIT": "4k"},
                 cwd=tmp_path)
    assert not (tmp_path / "m.npz").exists()
    assert "sparse matrix with 5808 nonzeros" in line, line
    assert "more than the memory limit of 4.0 KiB; raise the limit in the environment" in \
        line, line


def test_spectrum_sizes_arpacks_workspace_before_it_runs(tmp_path):
    """A review: ARPACK's Lanczos basis was allocated unchecked (31 GiB asked of numpy for a
    64-channel 1000 x 1000 layer, refused by the machine rather than by the limit)."""
    line = fails("spectrum", "-o", tmp_path / "s.png", "--in-shape", "4,300,300",
                 "--out-channels", "4", "--kernel-size", "3", "--padding", "1",
                 env={"SPARSECONV_MEMORY_LIMIT": "64M"})
    assert "ARPACK's workspace for the 32 largest singular values would need" in line, line


def test_the_input_shape_option_has_both_spellings():
    """report spells it --input-shape, the layer commands --in-shape: each takes both."""
    assert ok("info", "--input-shape", "3,8,8", *LAYER[2:]) == ok("info", *LAYER)
    line = fails("report", "--model", "missing.pt", "--in-shape", "3,8,8")
    assert "cannot read --model missing.pt" in line, line


@pytest.mark.parametrize("command", [
    ["report", "--input-shape", "3,8,8"],
    ["info", "--layer", "conv", "--in-shape", "3,8,8"]])
def test_a_model_file_that_cannot_be_read_is_said_before_torch_is_imported(command, tmp_path):
    """A new user's trial: ``report --model /nonexistent.pt`` spent 3 to 7 s and 330 MB
    importing torch before saying the file was missing; a file torch cannot load (a plain
    pickle, text) is said so first too. Run in a fresh process with ``-X importtime``: no
    module of torch's is imported. Mutant this catches: _cli_commands.py/_cli_layer.py:
    the file checked after the import."""
    (tmp_path / "text.pt").write_text("not a model")
    for path, said in ((tmp_path / "missing.pt", "cannot read --model"),
                       (tmp_path / "text.pt", "is not a file written by torch.save")):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "sparseconv", command[0], "--model",
             str(path), *command[1:]], capture_output=True, text=True, timeout=120,
            env={**os.environ, "MPLBACKEND": "Agg"})
        assert result.returncode == 2 and said in result.stderr, result.stderr[-500:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")]
        assert imported and not [m for m in imported if m.split(".")[0] == "torch"]


def test_info_tells_the_sizes_of_a_layer_whose_counts_exceed_int64():
    # 1e20 rows and ~9e25 nonzeros: no scipy.sparse array can hold it, but info can say so
    out = ok("info", "--in-shape", "100000,100000,100000", "--out-channels", "100000",
             "--kernel-size", "3", preexec_fn=address_space_limit(2 * 2**30))
    g = ConvGeometry.from_weight((100000, 100000, 3, 3), (100000, 100000, 100000))
    assert g.nnz() > np.iinfo(np.int64).max
    assert f"matrix           {g.shape[0]} x {g.shape[1]}, nnz {g.nnz()} " in out
    csr = g.nnz() * (8 + 8) + (g.shape[0] + 1) * 8  # float64 values, int64 indices
    assert f"csr {format_bytes(csr)}," in out, out
    # (a new user's trial: told as if it could be built)
    assert "(beyond int64 indices: no scipy.sparse matrix can hold it)" in out, out
    small = ok("info", "--in-shape", "3,8,8", "--out-channels", "4", "--kernel-size", "3")
    assert "beyond int64" not in small
    # (a new user's trial: the dense size of a 2^40-wide layer in 40 digits of EiB)
    wide = ok("info", "--in-shape", "1024,1099511627776,1099511627776", "--out-channels",
              "1024", "--kernel-size", "3", preexec_fn=address_space_limit(2 * 2**30))
    assert re.search(r"dense \d\.\d\de\+\d+ EiB,", wide), wide


def test_info_never_builds_the_product_of_the_axes_nor_the_weights():
    # 9e6 inputs x 9 taps, and 4096 x 4096 x 3 x 3 random weights (1.2 GiB): neither is needed
    out = ok("info", "--in-shape", "4096,3000,3000", "--out-channels", "4096", "--kernel-size",
             "3", preexec_fn=address_space_limit(2 * 2**30))
    assert "output shape     (4096, 2998, 2998)" in out
    assert "receptive field  3x3 (the center output reads 9 positions x 4096 channel(s)" in out


#: The console script pip installed beside this interpreter (a venv's bin/, whether or not it
#: is on PATH: the suite run as `.venv/bin/python -m pytest` skipped it before), else on PATH.
CONSOLE_SCRIPT = (shutil.which("sparseconv", path=os.path.dirname(sys.executable))
                  or shutil.which("sparseconv"))


@pytest.mark.skipif(CONSOLE_SCRIPT is None, reason="the package is not installed")
def test_console_script_runs_the_same_main():
    result = subprocess.run([CONSOLE_SCRIPT, "info", *LAYER], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout == ok("info", *LAYER)


def test_export_bsr_channels_last_with_the_layer(tmp_path):
    w = np.random.default_rng(1).standard_normal((4, 1, 3, 3))
    np.save(tmp_path / "w.npy", w)
    out = ok("export", "-o", tmp_path / "B", "--weights", tmp_path / "w.npy", "--in-shape",
             "2,6,5", "--groups", "2", "--padding", "1", "--padding-mode", "replicate",
             "--format", "bsr", "--layout", "channels_last", "--blocksize", "1,1")
    assert out.startswith(f"wrote {tmp_path / 'B.npz'}: bsr in 1x1 blocks, channels_last")
    expected = conv_matrix(w, (2, 6, 5), groups=2, padding=1, padding_mode="replicate",
                           format="bsr", layout="channels_last", blocksize=(1, 1))
    B = sp.load_npz(tmp_path / "B.npz")  # scipy reads the matrix, extra entries and all
    assert B.format == "bsr" and B.blocksize == (1, 1) and abs(B - expected).max() == 0
    A, layer = sparseconv.load_layer(tmp_path / "B.npz")
    assert np.array_equal(layer.weight, w) and layer.input_shape == (2, 6, 5)
    assert layer.options == dict(stride=1, padding=1, dilation=1, groups=2,
                                 padding_mode="replicate")
    assert layer.layout == "channels_last" and layer.blocksize == (1, 1)
    assert abs(layer.matrix() - A).max() == 0
    default = ok("export", "-o", tmp_path / "C.npz", *LAYER, "--format", "bsr",
                 "--layout", "channels_last")
    assert "bsr in 4x3 blocks, channels_last" in default  # the (C_out, C_in) channel block
    assert "--layout channels_last gives" not in default
    # (a new user's trial: channels_first's blocks, with no word of the other layout)
    first = ok("export", "-o", tmp_path / "D.npz", *LAYER, "--format", "bsr")
    assert "--layout channels_last gives C_out x C_in blocks" in first, first
    grouped = ok("export", "-o", tmp_path / "E.npz", "--in-shape", "4,6,6", "--out-channels",
                 "6", "--kernel-size", "3", "--groups", "2", "--format", "bsr")
    assert "gives C_out/groups x C_in/groups blocks" in grouped, grouped


@pytest.mark.parametrize("args, message", [
    (["--blocksize", "2,2"], "--blocksize (2, 2) applies to --format 'bsr' only"),
    (["--format", "bsr", "--layout", "channels_last", "--blocksize", "3,3"],
     "--blocksize (3, 3) must divide the (C_out/groups, C_in/groups) = (4, 3)"),
    (["--format", "bsr", "--blocksize", "2"], "--blocksize must be a pair of positive"),
    (["--layout", "NHWC"], "argument --layout: invalid choice: 'NHWC'"),
])
def test_export_refuses_bad_blocks_and_layouts(tmp_path, args, message):
    assert message in fails("export", "-o", tmp_path / "x.npz", *LAYER, *args)
    assert not (tmp_path / "x.npz").exists()


# ---------------------------------------------------------------------------------------------
# report: a PyTorch model (in-process through main() where no subprocess is needed: torch's
# import is paid once).
# ---------------------------------------------------------------------------------------------
def _tiny_model():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_report_plot_compares_bar_heights_unless_they_span_decades():
    """The bars were on a log axis with an arbitrary bottom, so a 0.87 bar looked tiny next
    to a 1.09 one: linear from 0 now, log only where the bounds span more than 100x."""
    torch = pytest.importorskip("torch")
    import sparseconv.torch as sct
    from sparseconv._cli_commands import _report_figure

    model = _tiny_model().eval()
    report = sct.lipschitz_report(model, (3, 8, 8))
    axes = _report_figure(report).axes[0]
    assert axes.get_yscale() == "linear" and axes.get_ylim()[0] == 0
    # the title's network bound is rounded up, so that it is still one (was .4g); text 8 pt+
    title = axes.get_title()
    assert float(title.split("network bound ")[1]) >= report.network_upper, title
    assert min(t.get_fontsize() for t in axes.get_xticklabels()) >= 8
    with torch.no_grad():
        model[5].weight.mul_(1e4)  # the classifier's bound 10^4 times the others
    axes = _report_figure(sct.lipschitz_report(model, (3, 8, 8))).axes[0]
    assert axes.get_yscale() == "log"


def test_report_plot_legend_covers_no_bar():
    """A new user's trial: the legend, inside the axes, covered a bar. It is above them."""
    pytest.importorskip("torch")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import sparseconv.torch as sct
    from sparseconv._cli_commands import _report_figure

    model = _tiny_model().eval()
    fig = _report_figure(sct.lipschitz_report(model, (3, 8, 8)))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    ax = fig.axes[0]
    assert len(ax.patches) >= 3 and not any(  # the bars and the title
        box.overlaps(a.get_window_extent(renderer)) for a in [*ax.patches, ax.title])
    for markers in ax.collections:  # (a scatter's own extent is empty: its points)
        points = markers.get_offset_transform().transform(markers.get_offsets())
        assert len(points) and not box.count_contains(points)
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8
    # the circular value a ring drawn under the lower bound's tick: both seen where they meet
    # (a new user's trial: a filled dot on top hid the tick on almost every bar)
    lower, circular = ax.collections
    assert lower.get_zorder() > circular.get_zorder()
    assert len(circular.get_facecolors()) == 0 or not circular.get_facecolors()[:, 3].any()


def test_report_takes_constants_and_speaks_in_options(tmp_path, capsys, monkeypatch):
    """A Softplus got "network bound: none" with no next step (the CLI had no
    lipschitz_constants); a residual model's reason said "assume_chain=True", a keyword, where
    the option is --assume-chain."""
    torch = pytest.importorskip("torch")
    from sparseconv.cli import main

    nn = torch.nn
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Conv2d(2, 2, 3), nn.Softplus()), tmp_path / "soft.pt")
    monkeypatch.chdir(tmp_path)
    base = ["report", "--model", "soft.pt", "--input-shape", "2,6,6", "--trust-pickle", "--quiet"]
    assert main(base) in (0, None)
    out, err = capsys.readouterr()
    assert "network bound: none" in out and "--constant NAME=L" in err  # (hints: stderr)
    assert main([*base, "--constant", "Softplus=1"]) in (0, None)
    assert "network bound (product of the upper bounds)" in capsys.readouterr().out
    for bad, message in (("Softplus", "must be NAME=L"), ("=1", "must be NAME=L"),
                         ("Softplus=x", "must be NAME=L"),
                         # (as typed: a new user's trial read --constant['relu'])
                         ("softplus=1", "--constant 'softplus' names no traced")):
        with pytest.raises(SystemExit):
            main([*base, "--constant", bad])
        assert message in capsys.readouterr().err, bad

    # a new user's trial: the hint was given for nn.MultiheadAttention, whose tuple has no
    # bound whatever its constant (the report's reason says so; the hint is left out)
    import sparseconv.torch as sct

    real = sct.lipschitz_report

    def as_attention(model, *args, **kwargs):
        report = real(model, *args, **kwargs)
        return dataclasses.replace(report, network_upper=None, reason=(
            "module att (MultiheadAttention) is neither a layer sparseconv.torch reads nor an "
            "activation of known constant; nor is there a bound over its graph: node "
            "'getitem' (call_function getitem) reads 'att', the tuple module 'att' returns, "
            "for which the bound has no rule: a module of several outputs has none, even with "
            "its Lipschitz constant given"))

    monkeypatch.setattr(sct, "lipschitz_report", as_attention)
    assert main(base) in (0, None)
    out, err = capsys.readouterr()
    assert "even with its Lipschitz constant given" in out and "--constant" not in err
    monkeypatch.setattr(sct, "lipschitz_report", real)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    class Chain(Residual):
        def forward(self, x):
            return torch.flatten(self.conv(x), 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Residual()).save(str(tmp_path / "res.pt"))
        torch.jit.script(Chain()).save(str(tmp_path / "chain.pt"))
    assert main(["report", "--model", "chain.pt", "--input-shape", "2,6,6", "--quiet"]) in (
        0, None)
    out = capsys.readouterr().out  # (its graph is the chain of its calls: their product)
    assert "network bound (product of the upper bounds)" in out
    assert "assume-chain" not in out and "chain of these layers" not in out
    # (a new user's trial: the residual model was told to pass --assume-chain, and its
    # product is no bound; its graph, rebuilt from the TorchScript one, gives the bound now)
    assert main(["report", "--model", "res.pt", "--input-shape", "2,6,6", "--quiet"]) in (0,
                                                                                          None)
    out = capsys.readouterr().out
    assert "assume-chain" not in out and "network bound (over the model's graph" in out


def test_report_prints_the_table_and_writes_csv_json_and_plot(tmp_path, capsys, monkeypatch):
    import json

    import torch

    import sparseconv.torch as sct
    from sparseconv.cli import main

    model = _tiny_model()
    torch.save(model, tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--model", "model.pt", "--input-shape", "3,8,8", "--trust-pickle",
                 "--csv", "rows", "--json", "r.json", "--plot", "bounds.png"]) == 0
    out, err = capsys.readouterr()
    expected = sct.lipschitz_report(model.eval(), (3, 8, 8))
    # stdout is the report alone (a new user's trial: `> file` held the notes too)
    assert out.splitlines()[0] == str(expected).splitlines()[0]  # the table's header
    assert out.splitlines()[-1] == str(expected).splitlines()[-1]  # the bound's assumptions
    assert len(out.splitlines()) == len(str(expected).splitlines())
    assert err.splitlines() == ["sparseconv report: note: the model was saved in training "
                                "mode; it is analysed in eval mode (BatchNorm's running "
                                "statistics, no dropout)",
                                "wrote rows.csv", "wrote r.json", "wrote bounds.png"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert [row["upper"] for row in data["layers"]] == [row["upper"] for row in expected]
    assert data["network_upper"] == expected.network_upper
    assert (tmp_path / "rows.csv").read_text().startswith("name,type,input_shape")
    assert matplotlib.image.imread(tmp_path / "bounds.png").std() > 0.05
    main(["report", "--model", "model.pt", "--input-shape", "3,8,8", "--trust-pickle",
          "--fold-batchnorm"])
    assert re.search(r"\n0\+1 +Conv2d\+BatchNorm2d ", capsys.readouterr().out)


def test_report_folds_paddings_into_the_convolutions_that_read_them(tmp_path, capsys,
                                                                     monkeypatch):
    """``--fold-padding``: lipschitz_report's ``fold_padding=True``, one ``pad+conv`` row."""
    import torch

    import sparseconv.torch as sct
    from sparseconv.cli import main

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3), nn.ReLU(),
                          nn.ReflectionPad2d(1), nn.Conv2d(4, 2, 3)).eval()
    torch.save(model, tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--model", "model.pt", "--input-shape", "3,8,8", "--trust-pickle",
                 "--fold-padding", "--quiet"]) == 0
    out = capsys.readouterr().out
    expected = sct.lipschitz_report(model, (3, 8, 8), fold_padding=True)
    assert [row["name"] for row in expected] == ["0+1", "3+4"]
    table = [line.rsplit(None, 1)[0] for line in out.splitlines()[2:4]]  # (but the times)
    assert table == [line.rsplit(None, 1)[0] for line in str(expected).splitlines()[2:4]]
    assert out.splitlines()[4:] == str(expected).splitlines()[4:]  # the network bound
    assert re.search(r"\n0\+1 +ReflectionPad2d\+Conv2d ", out), out


def test_report_writes_csv_or_json_to_stdout_with_a_dash(tmp_path, capsys, monkeypatch):
    """A new user's trial: ``--json -`` wrote a file named ``-.json``. ``-`` is stdout, the
    table then on stderr, so that the data pipes alone."""
    import csv
    import io
    import json

    import torch

    import sparseconv.torch as sct
    from sparseconv.cli import main

    model = _tiny_model()
    torch.save(model, tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    expected = sct.lipschitz_report(model.eval(), (3, 8, 8))
    for option, read in (("--json", lambda text: json.loads(text)["layers"]),
                         ("--csv", lambda text: list(csv.DictReader(io.StringIO(text)))[:-1])):
        assert main(["report", "--model", "model.pt", "--input-shape", "3,8,8",
                     "--trust-pickle", option, "-"]) == 0
        out, err = capsys.readouterr()
        assert [float(row["upper"]) for row in read(out)] == [row["upper"] for row in expected]
        assert str(expected).splitlines()[0] in err and "wrote" not in err
        if option == "--csv":  # the network bound last
            assert float(out.splitlines()[-1].split(",")[7]) == expected.network_upper
        assert not list(tmp_path.glob("-*"))
    with pytest.raises(SystemExit):
        main(["report", "--model", "model.pt", "--input-shape", "3,8,8", "--trust-pickle",
              "--json", "-", "--csv", "-"])
    assert "only one of --csv and --json may be '-' (stdout)" in capsys.readouterr().err


def test_report_exact_certifies_the_convolutions_with_every_axis_exact(tmp_path, capsys,
                                                                       monkeypatch):
    import json

    import torch

    from sparseconv import _norm_bounds, _spectral_norm
    from sparseconv.cli import main

    monkeypatch.setattr(_norm_bounds, "FULL_FLOPS", 0)  # as for a large layer
    monkeypatch.setattr(_spectral_norm, "dense_is_affordable", lambda *shape: False)
    torch.save(_tiny_model().eval(), tmp_path / "model.pt")
    widths = []
    for extra in ([], ["--exact"]):
        assert main(["report", "--model", str(tmp_path / "model.pt"), "--input-shape", "3,8,8",
                     "--trust-pickle", "--json", str(tmp_path / "r.json"), *extra]) == 0
        capsys.readouterr()
        conv = json.loads((tmp_path / "r.json").read_text())["layers"][0]
        widths.append((conv["upper"] - conv["lower"]) / conv["upper"])
    assert widths[1] <= 1e-6 < widths[0], widths


def _main_fails(args, capsys) -> str:
    from sparseconv.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    assert info.value.code == 2 and not captured.out, captured
    assert len(captured.err.splitlines()) == 1, captured.err
    return captured.err.strip()


def test_report_refusals_are_one_line(tmp_path, capsys):
    import torch

    model = _tiny_model()
    torch.save(model, tmp_path / "model.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(branching()).save(str(tmp_path / "script.pt"))
    with zipfile.ZipFile(tmp_path / "script.pt") as archive, zipfile.ZipFile(
            tmp_path / "broken.pt", "w") as broken:  # TorchScript's directory, its code cut
        for name in archive.namelist():
            broken.writestr(name, b"" if name.endswith(".py") else archive.read(name))
    (tmp_path / "text.pt").write_text("not a model")
    shape = ["--input-shape", "3,8,8"]
    cases = {
        "model.pt": "is a pickled object (torch.save(model)); loading it runs code from the "
                    "file: pass --trust-pickle if you trust it",
        "state.pt": "holds a dict (a state_dict?), not a model",
        "script.pt": "TorchScript module 'conv' (Conv2d) is called inside control flow",
        "broken.pt": "cannot load the TorchScript file --model",
        "text.pt": "is not a file written by torch.save",
        "missing.pt": "cannot read --model",
    }
    for name, reason in cases.items():
        line = _main_fails(["report", "--model", tmp_path / name, *shape], capsys)
        assert line.startswith("sparseconv report: error: ") and reason in line, line
    line = _main_fails(["report", "--model", tmp_path / "model.pt", "--input-shape", "3,8",
                        "--trust-pickle"], capsys)
    assert "the model failed on input shape (3, 8)" in line
    line = _main_fails(["report", "--model", tmp_path / "model.pt", "--input-shape", "1,3,8,8",
                        "--trust-pickle"], capsys)  # the batch given: said once, plainly
    assert line == ("sparseconv report: error: --input-shape 1,3,8,8 includes the batch axis: "
                    "the model runs on 3,8,8 (C,H[,W,...], without the batch)"), line
    line = _main_fails(["report", "--model", tmp_path / "model.pt", *shape, "--trust-pickle",
                        "--plot", tmp_path / "x.xyz"], capsys)
    assert "cannot write a figure in format 'xyz'" in line
    line = _main_fails(["report", "--model", tmp_path / "model.pt", *shape, "--trust-pickle",
                        "--workers", "0"], capsys)
    assert "--workers must be a positive integer, or negative to count back" in line


def test_a_plain_pickle_is_told_apart_from_torch_save(tmp_path, capsys):
    """A new user's trial: a model saved with pickle.dump got torch's "Detected pickle protocol
    4" warning and the advice to pass --trust-pickle, then "Invalid magic number; corrupt
    file?" with it. torch's legacy format (a pickle too) still loads."""
    import pickle

    import torch

    from sparseconv.cli import main

    model = _tiny_model().eval()
    with open(tmp_path / "plain.pkl", "wb") as stream:
        pickle.dump(model, stream)
    with open(tmp_path / "dict.pkl", "wb") as stream:
        pickle.dump({"a": 1}, stream, protocol=2)
    for name in ("plain.pkl", "dict.pkl"):
        for trust in ([], ["--trust-pickle"]):
            line = _main_fails(["report", "--model", tmp_path / name, "--input-shape", "3,8,8",
                                *trust], capsys)
            assert line == (f"sparseconv report: error: --model {tmp_path / name} is a "
                            "Python pickle that torch.save did not write (pickle.dump?), which "
                            "torch.load cannot read: save the model with torch.save(model), or "
                            "torch.jit.script(model).save(path)"), line
    # a review: a 14-byte file whose opcode claims 2**62 bytes was "out of memory"
    (tmp_path / "huge.bin").write_bytes(b"\x80\x04\x8d" + (2**62).to_bytes(8, "little") + b"abc")
    line = _main_fails(["report", "--model", tmp_path / "huge.bin", "--input-shape", "3,8,8"],
                       capsys)
    assert "is not a file written by torch.save or torch.jit.save" in line, line
    from torch.serialization import MAGIC_NUMBER

    from sparseconv._cli_layer import _TORCH_MAGIC

    assert _TORCH_MAGIC == MAGIC_NUMBER
    for protocol in (1, 2, 4):  # (protocol 1 begins with no PROTO opcode: a review)
        torch.save(model, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False,
                   pickle_protocol=protocol)
        assert main(["report", "--model", str(tmp_path / "legacy.pt"), "--input-shape",
                     "3,8,8", "--trust-pickle"]) == 0
        assert "network bound" in capsys.readouterr().out


def test_a_torch_file_given_as_weights_is_named(tmp_path):
    """A new user's trial: a torch.save file given as --weights was called "an .npz
    archive"."""
    import torch

    torch.save(torch.ones(4, 3, 3, 3), tmp_path / "w.pt")
    torch.save(torch.ones(4, 3, 3, 3), tmp_path / "legacy.pt",
               _use_new_zipfile_serialization=False)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Conv2d(3, 4, 3)).save(str(tmp_path / "script.pt"))
    for name, what in (("w.pt", "a PyTorch file (torch.save)"),
                       ("legacy.pt", "a PyTorch file (torch.save)"),  # (a review)
                       ("script.pt", "a TorchScript file (torch.jit.save)")):
        result = run("info", "--in-shape", "3,8,8", "--weights", tmp_path / name)
        assert result.returncode == 2 and result.stderr.splitlines() == [
            f"sparseconv info: error: --weights {tmp_path / name} is {what}; expected one "
            "array saved with np.save (.npy): np.save(path, layer.weight.detach().numpy()), or "
            "--model for a saved model"], result.stderr


def test_report_names_the_layer_whose_work_failed(tmp_path, capsys, monkeypatch):
    """A layer's own RuntimeError is not blamed on the model's forward."""
    import torch

    from sparseconv import _torch_report_rows

    def fail(layer, **kwargs):
        raise RuntimeError("the certificate broke")

    monkeypatch.setattr(_torch_report_rows, "_layer_norm", fail)
    torch.save(_tiny_model().eval(), tmp_path / "model.pt")
    line = _main_fails(["report", "--model", tmp_path / "model.pt", "--input-shape", "3,8,8",
                        "--trust-pickle"], capsys)
    assert line == "sparseconv report: error: layer '0' (Conv2d): the certificate broke", line


def test_report_workers_give_the_same_table(tmp_path, capsys):
    import torch

    from sparseconv.cli import main

    torch.save(_tiny_model().eval(), tmp_path / "model.pt")
    tables = []
    for workers in ("1", "2"):
        assert main(["report", "--model", str(tmp_path / "model.pt"), "--input-shape", "3,8,8",
                     "--trust-pickle", "--workers", workers]) == 0
        out = capsys.readouterr().out
        tables.append([line.rsplit(None, 1)[0] for line in out.splitlines()])  # less seconds
    assert tables[0] == tables[1] and len(tables[0]) > 4


def test_a_pickle_whose_class_is_not_importable_says_what_to_do(tmp_path, capsys, monkeypatch):
    """The usual case: a model class defined in the training script. Unpickling names the
    missing class; the line now says why, and that TorchScript needs no class."""
    import types

    import torch

    module = types.ModuleType("sparseconv_trial_models")  # importable only while saving

    class Net(torch.nn.Sequential):
        pass

    Net.__module__, Net.__qualname__ = module.__name__, "Net"
    module.Net = Net
    monkeypatch.setitem(sys.modules, module.__name__, module)
    torch.save(Net(torch.nn.Conv2d(3, 2, 3)).eval(), tmp_path / "net.pt")
    monkeypatch.delitem(sys.modules, module.__name__)
    line = _main_fails(["report", "--model", tmp_path / "net.pt", "--input-shape", "3,8,8",
                        "--trust-pickle"], capsys)
    assert "ModuleNotFoundError: No module named 'sparseconv_trial_models'" in line, line
    assert ("make the class importable under that name here (one defined in the script that "
            "saved the model, '__main__', never is; the sparseconv command does not look in "
            "the current directory: run 'python -m sparseconv report ...' or 'PYTHONPATH=. "
            "sparseconv report ...' from the directory of the class's module), or save the "
            "model with torch.jit.script(model).save(path)") in line, line
    # (a review: the layer commands' line told to run `report`)
    line = _main_fails(["export", "--model", tmp_path / "net.pt", "--in-shape", "3,8,8",
                        "--trust-pickle", "--layer", "0", "-o", tmp_path / "x.npz"], capsys)
    assert "run 'python -m sparseconv export ...' or 'PYTHONPATH=. sparseconv export" in line


def branching():
    """A model whose convolution is called in an ``if``: hidden from a TorchScript graph."""
    import torch

    class Branching(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            if bool(x.sum() > 0):
                x = self.conv(x)
            return x

    return Branching().eval()


@pytest.mark.parametrize("how", ["script", "trace"])
def test_report_of_a_torchscript_file_is_the_eager_report(how, tmp_path, capsys):
    import torch

    import sparseconv.torch as sct
    from sparseconv.cli import main

    model = _tiny_model().eval()
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = (torch.jit.script(model) if how == "script" else
                    torch.jit.trace(model, torch.zeros(1, 3, 8, 8)))
        compiled.save(str(tmp_path / "model.pt"))
    # no --trust-pickle: torch.jit.load runs no Python code from the file
    assert main(["report", "--model", str(tmp_path / "model.pt"), "--input-shape", "3,8,8",
                 "--fold-batchnorm", "--json", str(tmp_path / "r.json")]) == 0
    out, err = capsys.readouterr()
    assert err == f"wrote {tmp_path / 'r.json'}\n", err  # (stdout: the report alone)
    expected = sct.lipschitz_report(model, (3, 8, 8), fold_batchnorm=True)
    table = [line.rsplit(None, 1)[0] for line in out.splitlines()[2:len(expected) + 2]]
    assert table == [line.rsplit(None, 1)[0] for line in str(expected).splitlines()[2:-2]]
    assert re.search(r"\n0\+1 +Conv2d\+BatchNorm2d ", out) and not out.startswith("note:")
    data = json.loads((tmp_path / "r.json").read_text())
    assert [row["upper"] for row in data["layers"]] == [row["upper"] for row in expected]
    assert data["network_upper"] == expected.network_upper


def _help_text(command: str, capsys) -> str:
    """``sparseconv COMMAND --help``'s text, its lines joined (it exits with 0)."""
    from sparseconv.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_report_help_warns_about_pickles(capsys):
    text = _help_text("report", capsys)
    assert "unpickling runs code from the file" in text
    assert "a TorchScript file (torch.jit.script(model).save(...) or torch.jit.trace(...).save(" \
           "...)) loads without a flag, with torch.jit.load, which runs no Python code" in text


def test_report_interrupted_prints_the_partial_table(tmp_path, capsys, monkeypatch):
    import torch

    import sparseconv.torch as sct
    from sparseconv.cli import main

    torch.save(_tiny_model(), tmp_path / "model.pt")
    real = sct.lipschitz_report

    def interrupted(*args, **kwargs):
        def stop(done, total, name):
            if done == 2:
                raise KeyboardInterrupt
        return real(*args, **{**kwargs, "progress": stop})

    monkeypatch.setattr(sct, "lipschitz_report", interrupted)
    with pytest.raises(SystemExit) as info:
        main(["report", "--model", str(tmp_path / "model.pt"), "--input-shape", "3,8,8",
              "--trust-pickle"])
    captured = capsys.readouterr()
    assert info.value.code == 130
    assert "network bound: none (interrupted after 2 of 4 layers)" in captured.out
    assert captured.err == "sparseconv report: interrupted (interrupted after 2 of 4 layers)\n"
    # with --json -, stdout is the JSON's: the partial table goes to stderr (a review)
    with pytest.raises(SystemExit):
        main(["report", "--model", str(tmp_path / "model.pt"), "--input-shape", "3,8,8",
              "--trust-pickle", "--json", "-"])
    captured = capsys.readouterr()
    assert captured.out == "" and "network bound: none (interrupted after 2" in captured.err


@pytest.mark.parametrize("command", ["export", "spectrum"])
def test_an_interrupted_command_says_so_in_one_line(tmp_path, capsys, monkeypatch, command):
    """A new user's trial: Ctrl-C in spectrum or export printed a traceback. One line, exit
    status 130 (128 + SIGINT), and no file written."""
    from sparseconv import _io, _spectral_norm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io, "_write", interrupted)  # amid the file's writing
    monkeypatch.setattr(_spectral_norm, "spectral_norm", interrupted)
    from sparseconv.cli import main

    output = tmp_path / ("m.npz" if command == "export" else "s.png")
    assert main([command, "-o", str(output), *LAYER]) == 130
    assert capsys.readouterr().err == f"sparseconv {command}: interrupted\n"
    assert not any(tmp_path.iterdir())  # nor its temporary file


def test_output_help_says_what_a_name_without_its_suffix_becomes(capsys, tmp_path):
    """A new user's trial: ``spy -o s`` wrote s.png and ``export -o e.txt`` e.txt.npz, which
    the help did not say."""
    for command, suffix in (("spy", ".png"), ("spectrum", ".png"), ("export", ".npz")):
        assert f"{suffix} is added" in " ".join(_help_text(command, capsys).split())
    assert ok("spy", "-o", tmp_path / "s", *LAYER) == f"wrote {tmp_path / 's.png'}\n"
    assert ok("export", "-o", tmp_path / "e.txt", *LAYER).startswith(
        f"wrote {tmp_path / 'e.txt.npz'}: csr")


def test_spectrum_help_says_what_it_draws_and_prints(capsys):
    text = _help_text("spectrum", capsys)
    assert "Draw the layer's singular values into FILE" in text
    assert "print the certified interval of its spectral norm" in text


# ---------------------------------------------------------------------------------------------
# info, spy, spectrum, export on a convolution of a PyTorch model (--model --layer).
# ---------------------------------------------------------------------------------------------
def _model_with_a_block():
    """A model whose block's convolution runs on what a strided stem made of the model's
    input: its shape is found by running the model, not given (torch's classes only, so that
    the pickle loads here)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4),
                         nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2,
                                                            padding_mode="reflect"))).eval()


def test_the_layer_commands_take_a_convolution_of_a_model(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import sparseconv.torch as sct
    from sparseconv.cli import main

    model = _model_with_a_block()
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(tmp_path / "script.pt"))
    torch.save(model, tmp_path / "pickle.pt")
    seen = {}  # the oracle: the block's convolution's own input and output in the model's run
    hook = model[3][0].register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    with torch.no_grad():
        model(torch.randn(1, 3, 10, 10, dtype=torch.float32))
    hook.remove()
    x, y = seen["x"][0].double(), (seen["y"][0] - model[3][0].bias[:, None, None]).double()
    assert x.shape == (4, 5, 5)
    model_args = ["--layer", "3.0", "--in-shape", "3,10,10"]
    for file, extra in (("script.pt", []), ("pickle.pt", ["--trust-pickle"])):
        out = tmp_path / f"{file}.npz"
        assert main(["export", "--model", str(tmp_path / file), *model_args, *extra, "-o",
                     str(out), "--format", "bsr", "--layout", "channels_last"]) == 0
        assert "bsr in 2x2 blocks, channels_last, 100 x 100" in capsys.readouterr().out
        a = sp.load_npz(out)
        last = np.moveaxis(x.numpy(), 0, -1).ravel()
        assert np.allclose(a @ last, np.moveaxis(y.detach().numpy(), 0, -1).ravel(),
                           rtol=1e-5, atol=1e-6)
        layer, saved = sparseconv.load_layer(out)
        assert saved.input_shape == (4, 5, 5) and saved.options["groups"] == 2
        assert saved.options["padding_mode"] == "reflect"
    assert main(["info", "--model", str(tmp_path / "script.pt"), *model_args]) == 0
    info = capsys.readouterr().out
    assert info.startswith("layer            3.0: conv2d 4 -> 4, kernel 3x3, stride 1x1")
    assert f"nnz {sct.matrix(model[3][0], (4, 5, 5)).nnz} " in info
    assert main(["spectrum", "--model", str(tmp_path / "script.pt"), *model_args, "-o",
                 str(tmp_path / "s.png")]) == 0
    value, lower, upper, _ = _printed_norm(capsys.readouterr().out)
    expected = sct.spectral_norm(model[3][0], (4, 5, 5))
    assert lower <= expected.value <= upper and abs(value - expected.value) <= 1e-9


def test_a_model_layer_that_the_commands_cannot_take_is_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    model = _model_with_a_block()
    torch.save(model, tmp_path / "model.pt")
    base = ["info", "--model", tmp_path / "model.pt", "--trust-pickle", "--in-shape", "3,10,10"]
    cases = {
        ("--layer", "1"): "--layer 1 is a BatchNorm2d: these commands take a convolution "
                          "(Conv1d/2d/3d or ConvTranspose1d/2d/3d; this model's: 0, 3.0)",
        ("--layer", "0", "--transposed"): "--transposed describes a layer",
        ("--layer", "2"): "--layer 2 is a ReLU: these commands take a convolution",
        ("--layer", "9"): "--layer 9 is not a module the model calls on --in-shape "
                          "3,10,10; its convolutions: 0, 3.0",
        ("--layer", "0", "--stride", "1"): "--stride describes a layer, and --model reads the "
                                           "layer from the model",
        ("--layer", "0", "--weights", "w.npy"): "--weights describes a layer",
        (): "--model needs --layer NAME",
    }
    for extra, reason in cases.items():
        line = _main_fails([*base, *extra], capsys)
        assert line.startswith("sparseconv info: error: ") and reason in line, line
    line = _main_fails(["info", "--model", tmp_path / "model.pt", "--layer", "0",
                        "--in-shape", "3,10,10"], capsys)
    assert "pass --trust-pickle if you trust it" in line
    line = _main_fails([*base[:4], "--in-shape", "1,3,10,10", "--layer", "0"], capsys)
    assert "--in-shape 1,3,10,10 includes the batch axis: the model runs on 3,10,10" in line
    line = _main_fails(["info", "--layer", "0", *LAYER], capsys)
    assert "--layer applies to a layer of --model FILE.pt only" in line


def test_a_model_s_transposed_layer_is_read_at_its_own_output_padding(tmp_path, capsys):
    """(A new user's trial: ``ConvTranspose2d(..., dilation=(1, 2), output_padding=(0, 1))``,
    legal in PyTorch up to ``dilation - 1``, was refused as an ``output_size`` the user never
    passed, "must lie between (5, 7) and (5, 7)".) The module's own output padding is read:
    where it reaches the stride the layer is no adjoint of one convolution, and that is said;
    below the stride, the layer is taken (its norm as sparseconv.torch gives it)."""
    torch = pytest.importorskip("torch")
    import sparseconv.torch as sct
    nn = torch.nn
    torch.manual_seed(0)
    beyond = nn.Sequential(nn.ConvTranspose2d(2, 4, 3, padding=1, dilation=(1, 2),
                                              output_padding=(0, 1), groups=2)).double().eval()
    below = nn.Sequential(nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, dilation=(1, 2),
                                             output_padding=(1, 1))).double().eval()
    for model, name in ((beyond, "beyond.pt"), (below, "below.pt")):
        torch.save(model, tmp_path / name)
    line = _main_fails(["info", "--model", tmp_path / "beyond.pt", "--trust-pickle", "--layer",
                        "0", "--in-shape", "2,5,5"], capsys)
    assert line == ("sparseconv info: error: --layer 0: its output padding is at least its "
                    "stride on an axis, so it is no adjoint of one convolution, which these "
                    "commands take (sparseconv.torch.matrix(module, input_shape) builds it)"), line
    from sparseconv.cli import main
    assert main(["spectrum", "--model", str(tmp_path / "below.pt"), "--trust-pickle", "--layer",
                 "0", "--in-shape", "2,5,5", "-o", str(tmp_path / "s.png")]) == 0
    value, lower, upper, _ = _printed_norm(capsys.readouterr().out)
    expected = sct.spectral_norm(below[0], (2, 5, 5))
    assert lower <= expected.value <= upper and abs(value - expected.value) <= 1e-9


# -- transposed convolutions (a new user's trial: the commands took direct ones only) ---------
TRANSPOSED = [
    dict(in_shape=(4, 5, 5), out=3, kernel=(3, 3), stride=(2, 2), padding=(1, 1),
         output_padding=(1, 1), dilation=(1, 1), groups=1),
    dict(in_shape=(4, 6, 5), out=6, kernel=(3, 2), stride=(2, 3), padding=(0, 1),
         output_padding=(1, 2), dilation=(1, 1), groups=2),
    dict(in_shape=(2, 7), out=2, kernel=(3,), stride=(3,), padding=(2,), output_padding=(1,),
         dilation=(2,), groups=1),
    dict(in_shape=(2, 3, 3, 2), out=4, kernel=(2, 2, 1), stride=(2, 1, 2), padding=(0, 0, 0),
         output_padding=(0, 0, 1), dilation=(1, 1, 1), groups=2),
]


def _transposed_options(layer, out_channels: bool = True) -> list[str]:
    options = ["--transposed", "--in-shape", ",".join(map(str, layer["in_shape"]))]
    options += ["--out-channels", str(layer["out"])] if out_channels else []
    for key in ("kernel", "stride", "padding", "output_padding", "dilation"):
        flag = "--kernel-size" if key == "kernel" else f"--{key.replace('_', '-')}"
        options += [flag, ",".join(map(str, layer[key]))]
    return [*options, "--groups", str(layer["groups"])]


@pytest.mark.parametrize("layer", TRANSPOSED)
def test_the_layer_commands_take_a_transposed_convolution(layer, tmp_path, capsys):
    """export is PyTorch's ConvTranspose (weights of its shape, given or random), info tells
    its shapes, nnz and receptive field, spectrum its norm (its convolution's), spy draws it."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from sparseconv.cli import main

    kwargs = {k: layer[k] for k in ("stride", "padding", "output_padding", "dilation",
                                    "groups")}
    c_in, groups = layer["in_shape"][0], layer["groups"]
    w = np.random.default_rng(0).standard_normal((c_in, layer["out"] // groups,
                                                  *layer["kernel"]))
    np.save(tmp_path / "w.npy", w)
    options = _transposed_options(layer)
    weights = _transposed_options(layer, out_channels=False)
    assert main(["export", "-o", str(tmp_path / "A.npz"), *weights, "--weights",
                 str(tmp_path / "w.npy")]) == 0
    capsys.readouterr()
    A = sp.load_npz(tmp_path / "A.npz")
    x = np.random.default_rng(1).standard_normal(layer["in_shape"])
    conv_transpose = getattr(F, f"conv_transpose{len(layer['kernel'])}d")
    y = conv_transpose(torch.from_numpy(x[None]), torch.from_numpy(w), **kwargs)[0].numpy()
    assert A.shape == (y.size, x.size)
    assert np.allclose(A @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-12)
    _, saved = sparseconv.load_layer(tmp_path / "A.npz")
    assert saved.transposed and saved.input_shape == tuple(layer["in_shape"])
    assert main(["info", *options]) == 0
    info = capsys.readouterr().out
    assert f"output shape     {y.shape}" in info and f"input shape      {x.shape}" in info
    assert f"matrix           {A.shape[0]} x {A.shape[1]}, nnz " in info
    assert info.startswith(f"layer            conv_transpose{len(layer['kernel'])}d "
                           f"{c_in} -> {layer['out']}")
    # the receptive field: the inputs the outputs from the center on read, over one stride
    # (the most of them: a new user's trial found the center one alone reading 1 of 2), from
    # the matrix
    random = sparseconv.conv_transpose_matrix(np.ones_like(w), layer["in_shape"], **kwargs)
    box = itertools.product(*(range(n // 2, min(n, n // 2 + s))
                              for n, s in zip(y.shape[1:], layer["stride"])))
    reads = max((np.unique(random.tocsr()[[np.ravel_multi_index(at, y.shape[1:])]].indices
                           % math.prod(layer["in_shape"][1:])) for at in box), key=len)
    line = next(line for line in info.splitlines() if line.startswith("receptive field"))
    if reads.size == 0:
        assert "empty" in line, line
    else:
        positions = np.unravel_index(reads, layer["in_shape"][1:])
        extent = "x".join(str(p.max() - p.min() + 1) for p in positions)
        plural = "s" if reads.size != 1 else ""  # (a new user's trial: "1 positions")
        assert line.split()[2] == extent and f" {reads.size} position{plural} x " \
            f"{c_in // groups} channel(s)" in line, line
    assert main(["spectrum", *weights, "--weights", str(tmp_path / "w.npy"), "-o",
                 str(tmp_path / "s.png")]) == 0
    value, lower, upper, _ = _printed_norm(capsys.readouterr().out)
    truth = np.linalg.norm(A.toarray(), 2)
    assert lower <= truth * (1 + 1e-12) and truth <= upper * (1 + 1e-12)
    for values in ([], ["--values"]):  # from its geometry, or from its matrix
        assert main(["spy", *options, *values, "-o", str(tmp_path / "spy.png"), "--raw",
                     "--max-bins", "2048"]) == 0
        pixels = matplotlib.image.imread(tmp_path / "spy.png")[..., :3]
        pattern = (pixels < 1).any(axis=-1) if not values else (pixels != pixels[0, 0]).any(-1)
        ones = sparseconv.conv_transpose_matrix(np.ones_like(w), layer["in_shape"], **kwargs)
        if not values:  # one pixel an entry: the transposed layer's pattern
            np.testing.assert_array_equal(pattern, ones.toarray() != 0)
        assert pixels.shape[:2] == A.shape


def test_transposed_options_are_refused_in_one_line(tmp_path, capsys):
    base = ["info", "--in-shape", "4,5,5", "--out-channels", "3", "--kernel-size", "3"]
    cases = {
        ("--output-padding", "1"): "--output-padding applies to a transposed convolution: "
                                   "add --transposed",
        ("--transposed", "--padding-mode", "reflect"): "a transposed convolution pads with "
                                                       "zeros only",
        ("--transposed", "--stride", "2", "--output-padding", "2"):
            "--output-padding (2, 2) must be smaller than max(stride, dilation)",
        ("--transposed", "--dilation", "3", "--output-padding", "1"):
            "--output-padding 1,1 is at least --stride on an axis",
        ("--transposed", "--padding", "same"): "padding",
    }
    np.save(tmp_path / "w.npy", np.ones((4, 2, 3, 3)))
    weights = ("--weights", str(tmp_path / "w.npy"))
    cases[("--transposed", "--groups", "2", *weights)] = \
        "--out-channels 6 contradicts --weights of shape (4, 2, 3, 3) with --transposed and " \
        "--groups 2"
    cases[("--transposed", "--groups", "3", *weights)] = "--groups 3 must divide the input " \
        "channels of --weights of shape (4, 2, 3, 3)"
    for extra, reason in cases.items():
        options = [*base, *extra]
        if "--weights" in extra:  # 2 x 3 output channels: only --groups 3 agrees with them
            options[options.index("--out-channels") + 1] = "6"
        line = _main_fails(options, capsys)
        assert line.startswith("sparseconv info: error: ") and reason in line, (extra, line)


def test_the_layer_commands_take_a_transposed_convolution_of_a_model(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import sparseconv.torch as sct
    from sparseconv.cli import main

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1,
                                             groups=2)).eval()
    torch.save(model, tmp_path / "model.pt")
    args = ["--model", str(tmp_path / "model.pt"), "--trust-pickle", "--layer", "2",
            "--in-shape", "3,10,10"]
    assert main(["export", *args, "-o", str(tmp_path / "A.npz")]) == 0
    capsys.readouterr()
    expected = sct.matrix(model[2], (4, 5, 5))
    A = sp.load_npz(tmp_path / "A.npz")
    assert A.shape == expected.shape == (200, 100) and abs(A - expected).max() < 1e-7
    assert main(["info", *args]) == 0
    info = capsys.readouterr().out
    assert info.startswith("layer            2: conv_transpose2d 4 -> 2, kernel 3x3, stride "
                           "2x2, padding 1x1, output_padding 1x1")
    assert "input shape      (4, 5, 5)" in info and "output shape     (2, 10, 10)" in info
    assert main(["spectrum", *args, "-o", str(tmp_path / "s.png")]) == 0
    value, lower, upper, _ = _printed_norm(capsys.readouterr().out)
    truth = np.linalg.norm(expected.toarray(), 2)
    assert lower <= truth * (1 + 1e-6) and truth <= upper * (1 + 1e-6)


def test_a_reader_that_stops_early_loses_no_file_and_sees_no_error(tmp_path):
    """(A new user's trial: `report ... --plot p.png | head -2` printed "error: [Errno 32]
    Broken pipe", exit 2, and p.png was never written.)"""
    torch = pytest.importorskip("torch")
    torch.save(_tiny_model().eval(), tmp_path / "model.pt")
    environ = {**os.environ, "MPLBACKEND": "Agg"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sparseconv", "report", "--model", str(tmp_path / "model.pt"),
         "--input-shape", "3,8,8", "--trust-pickle", "--upper", "--plot",
         str(tmp_path / "p.png"), "--csv", str(tmp_path / "r.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
    process.stdout.close()  # the reader is gone before the table comes
    with process.stderr:
        stderr = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "Broken pipe" not in stderr and "Traceback" not in stderr, stderr
    assert (tmp_path / "p.png").stat().st_size > 0 and (tmp_path / "r.csv").stat().st_size


@pytest.mark.parametrize("raw", [False, True])
def test_a_name_that_is_only_a_suffix_is_written_in_its_format(tmp_path, raw):
    """(A new user's trial: `-o .png` said "Format '0hwijnqc' is not supported", the
    temporary file's name.)"""
    ok("spy", *LAYER, "-o", ".png", *(["--raw"] if raw else []), cwd=tmp_path)
    assert (tmp_path / ".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wide_interval_is_said_to_be_wide_with_the_option_that_narrows_it(
        tmp_path, capsys, monkeypatch):
    """(A new user's trial: a reflect-padded 16-channel layer on 64x64 got an interval 44%
    wide, [2.214, 3.955], printed as any other; here a narrow one is widened the same way,
    the real layer taking minutes for the plot's ARPACK run.)"""
    import dataclasses

    import sparseconv._spectral_norm as module
    from sparseconv.cli import main

    real = module.spectral_norm
    monkeypatch.chdir(tmp_path)
    for factor, said in [(1.0, False), (0.56, True)]:
        monkeypatch.setattr(module, "spectral_norm", lambda *a, factor=factor, **k: (
            dataclasses.replace(real(*a, **k), lower=real(*a, **k).lower * factor)))
        assert main(["spectrum", *LAYER, "--padding-mode", "reflect", "-o", "s.png"]) == 0
        captured = capsys.readouterr()
        assert ("the interval is 0.44 wide (relative): --relative-width W certifies"
                in captured.err) == said, captured


def test_spy_of_a_layer_beyond_int64_is_one_line(tmp_path, capsys):
    """(A new user's trial: ``spy`` of a 3x4e9x4e9 input ended in a traceback, an
    OverflowError in the bins' arithmetic; export refused it in one line.) Refused as export
    refuses it, before any binning."""
    line = _main_fails(["spy", "-o", tmp_path / "big.png", "--in-shape", "3,4000000000,4000000000",
                        "--out-channels", "4", "--kernel-size", "3"], capsys)
    assert line.startswith("sparseconv spy: error: the 63999999936000000016 x "
                           "48000000000000000000 matrix") and "int64 indices" in line, line


def test_abbreviated_options_are_refused():
    """A trial: ``--stri 2`` was taken as ``--stride 2`` (argparse's default), which a new
    option starting the same way would make ambiguous in a user's script."""
    line = fails("info", *LAYER, "--stri", "2")
    assert line == "sparseconv info: error: unrecognized arguments: --stri 2", line
    ok("info", *LAYER, "--stride", "2")


def test_a_bad_memory_limit_in_the_environment_is_the_command_s_warning():
    """A trial: under ``python -m sparseconv`` a bad ``SPARSECONV_MEMORY_LIMIT`` printed
    Python's warning format (the file and line of runpy), the package being imported before
    the command could format anything. The variable is read when the limit is first needed,
    which the command does under its own warning format."""
    result = run("info", *LAYER, env={"SPARSECONV_MEMORY_LIMIT": "lots"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "sparseconv info: warning: ignoring SPARSECONV_MEMORY_LIMIT='lots': it must be a "
        "number of bytes with an optional k/M/G/T suffix (such as 8G) or 'none', got 'lots'; "
        f"the memory limit stays at the default {format_bytes(DEFAULT_LIMIT)}\n")


def test_a_padding_mode_without_padding_is_said_to_read_none(capsys):
    """A new user's trial: ``--padding-mode circular`` alone gave the unpadded layer (as
    PyTorch's ``padding_mode`` does without ``padding``), with no word, and its spectrum
    figure set that layer's values beside the periodic layer's symbol."""
    from sparseconv.cli import main

    shape = ["--in-shape", "3,8,8", "--out-channels", "4", "--kernel-size", "3"]
    main(["info", *shape, "--padding-mode", "circular"])
    captured = capsys.readouterr()
    assert "output shape     (4, 6, 6)" in captured.out
    assert captured.err == ("sparseconv info: note: --padding-mode circular with no padding "
                            "reads none, as PyTorch's: this is the unpadded layer (pass "
                            "--padding same, or the kernel's half, for the padded one)\n")
    main(["info", *shape, "--padding-mode", "circular", "--padding", "same"])
    assert capsys.readouterr().err == ""


def test_spectrum_without_output_prints_the_interval_and_draws_nothing(tmp_path, capsys,
                                                                         monkeypatch):
    """A new user's trial: the certified interval alone needed a figure file (-o); and
    --upper's line read as the norm itself."""
    from sparseconv.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["spectrum", *LAYER, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    value, lower, upper, method = _printed_norm(out)
    w = np.random.default_rng(3).standard_normal((4, 3, 3, 3)) / np.sqrt(27)
    top = np.linalg.norm(conv_matrix(w, (3, 8, 8), padding=1).toarray(), 2)
    assert lower <= top <= upper and "wrote" not in out and not list(tmp_path.iterdir())
    assert main(["spectrum", *LAYER, "--seed", "3", "--upper"]) == 0
    out = capsys.readouterr().out
    assert "the value is the certified upper bound" in out and _printed_norm(out)[2] >= top


def test_spectrum_draws_a_progress_bar_on_a_terminal(capsys, monkeypatch):
    """A new user's trial: ``spectrum --upper`` of a large layer ran for minutes without a
    sign. On a terminal, the certified norm's stages (and --every-size's) draw a tqdm bar on
    stderr; --quiet, or stderr no terminal, draws none; the interval is printed either way."""
    from sparseconv.cli import main

    args = ["spectrum", "--in-shape", "4,12,12", "--out-channels", "4", "--kernel-size", "3",
            "--padding", "1", "--every-size"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "spectral_norm" not in err and "in [" in out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "spectral_norm" in err and "toeplitz_norm" in err and "100%" in err, err
    assert "in [" in out
    assert main([*args, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "spectral_norm" not in err and "in [" in out


def test_spectrum_says_why_a_2d_layer_has_no_frequency_map(tmp_path):
    """A new user's trial: a strided transposed 2-D layer got no frequency map, the help
    promising one for a 2-D layer, and nothing said why."""
    run = subprocess.run([sys.executable, "-m", "sparseconv", "spectrum", "-o",
                          str(tmp_path / "t.png"), "--transposed", "--in-shape", "4,8,8",
                          "--out-channels", "2", "--kernel-size", "3", "--stride", "2"],
                         capture_output=True, text=True, check=True)
    assert "no frequency map: the layer's circular version needs its output size (its " \
        "convolution's input) (17, 17) divisible by the stride (2, 2)" in run.stderr, run.stderr
    run = subprocess.run([sys.executable, "-m", "sparseconv", "spectrum", "-o",
                          str(tmp_path / "c.png"), "--in-shape", "4,8,8", "--out-channels", "2",
                          "--kernel-size", "3", "--stride", "2", "--padding", "1"],
                         capture_output=True, text=True, check=True)
    assert "no frequency map" not in run.stderr, run.stderr


def test_spectrum_log_draws_the_values_on_a_log_scale(tmp_path, monkeypatch):
    """``spectrum --log``: the figure's singular values on a log scale (the figure the
    command draws, caught before it is saved)."""
    from sparseconv import _cli_commands
    from sparseconv.cli import main

    figures = []
    monkeypatch.setattr(_cli_commands, "_savefig", lambda fig, *args: figures.append(fig))
    layer = [str(a) for a in LAYER]
    for extra in (["--log"], []):
        assert main(["spectrum", "-o", str(tmp_path / "s.png"), *layer, "--seed", "3",
                     "--quiet", *extra]) in (0, None)
    assert [fig.axes[0].get_yscale() for fig in figures] == ["log", "linear"]


def test_a_wide_interval_is_not_told_to_narrow_where_it_cannot(capsys):
    """A new user's trial: circular padding that is not periodic (stride 2 on 24 with padding
    2) got a 12%-wide interval and the advice of --relative-width, which then warned that no
    whole-Gram proof exists and gave the same interval."""
    from sparseconv.cli import main

    assert main(["spectrum", "--in-shape", "16,24,24", "--out-channels", "16",
                 "--kernel-size", "3", "--stride", "2", "--padding", "2",
                 "--padding-mode", "circular"]) == 0
    err = capsys.readouterr().err
    assert ("wide (relative): circular padding that is not periodic has no whole-Gram proof, "
            "and --relative-width cannot narrow it") in err
    assert "--relative-width W certifies" not in err


def test_report_plot_takes_the_figure_options(tmp_path, capsys, monkeypatch):
    """A new user's trial: ``report --plot`` refused ``--dpi`` and ``--figsize``, which the
    README gives every figure."""
    import torch

    from sparseconv.cli import main

    torch.save(_tiny_model(), tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--model", "model.pt", "--input-shape", "3,8,8", "--trust-pickle",
                 "--plot", "b.png", "--dpi", "100", "--figsize", "3.5,2.5", "--quiet"]) == 0
    assert matplotlib.image.imread(tmp_path / "b.png").shape[:2] == (250, 350)
    capsys.readouterr()
    line = _main_fails(["report", "--model", "model.pt", "--input-shape", "3,8,8",
                        "--trust-pickle", "--dpi", "100"], capsys)
    assert "--dpi sets the figure of --plot, which is not given" in line
