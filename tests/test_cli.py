"""The command line, run as users run it: ``python -m sparseconv ...`` in a subprocess.

Outputs are checked against the library (``conv_matrix``, itself checked against PyTorch),
``numpy.linalg.svd``, and the files read back (``scipy.sparse.load_npz``, matplotlib).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import scipy.sparse as sp

from sparseconv import conv_matrix

LAYER = ["--in-shape", "3,8,8", "--out-channels", "4", "--kernel-size", "3", "--padding", "1"]


def run(*args, env=None, cwd=None):
    environ = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sparseconv", *map(str, args)],
                          capture_output=True, text=True, env=environ, cwd=cwd, timeout=120)


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr
    return result.stdout


def test_info_reports_shapes_nnz_memory_and_receptive_field():
    out = ok("info", "--in-shape", "3,32,32", "--out-channels", "16", "--kernel-size", "3",
             "--stride", "2", "--padding", "1")
    A = conv_matrix(np.ones((16, 3, 3, 3)), (3, 32, 32), stride=2, padding=1)
    assert "output shape     (16, 16, 16)" in out
    assert f"matrix           {A.shape[0]} x {A.shape[1]}, nnz {A.nnz} " in out
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
    assert matplotlib.image.imread(tmp_path / "big.png").shape[:2] == (96, 96)  # 12 per channel
    out = ok("spy", "-o", tmp_path / "fig.png", *LAYER, "--values")
    assert "wrote" in out
    picture = matplotlib.image.imread(tmp_path / "fig.png")
    assert picture.shape[:2] == (560, 640) and picture.std() > 0.05


def _printed_norm(out: str) -> tuple[float, float, float, str]:
    match = re.search(r"spectral norm  (\S+)  in \[(\S+), (\S+)\]  \((\w+)\)", out)
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
    assert matplotlib.image.imread(tmp_path / "c.png").shape[:2] == (420, 960)


@pytest.mark.parametrize("args, reason", [
    (["info", *LAYER, "--stride", "0"], "stride must be a positive integer"),
    (["info", *LAYER, "--padding-mode", "foo"], "argument --padding-mode: invalid choice"),
    (["info", "--in-shape", "3,x,8", "--out-channels", "4", "--kernel-size", "3"],
     "argument --in-shape: expected an integer"),
    (["info", *LAYER, "--groups", "2"], "--groups 2 must divide the input channels 3"),
    (["info", "--in-shape", "3,8,8"], "--out-channels and --kernel-size are required"),
    (["info", *LAYER, "--kernel-size", "11"], "larger than the padded input size"),
    (["info", *LAYER, "--padding-mode", "reflect", "--padding", "8"], "too large"),
    (["info", *LAYER, "--padding", "same", "--stride", "2"], "'same' is not supported"),
    (["info", *LAYER, "--weights", "missing.npy"], "cannot read --weights missing.npy"),
    (["export", *LAYER, "-o", "out.npz", "--in-shape", "64,200,200", "--out-channels", "64"],
     "memory limit"),
    (["spy", *LAYER, "-o", "no/such/dir/a.png"], "No such file or directory"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_options_are_argparse_errors_with_the_reason_first(args, reason, tmp_path):
    result = run(*args, env={"SPARSECONV_MEMORY_LIMIT": "64M"}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    first = result.stderr.splitlines()[0]
    assert re.match(r"sparseconv( \w+)?: error: ", first), result.stderr
    assert reason in first, result.stderr
    assert "Traceback" not in result.stderr and not result.stdout


def test_weights_that_contradict_the_options_are_rejected(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((4, 3, 3, 3)))
    result = run("info", "--in-shape", "3,8,8", "--weights", tmp_path / "w.npy",
                 "--out-channels", "5")
    assert result.returncode == 2 and "contradicts --weights of shape (4, 3, 3, 3)" in \
        result.stderr.splitlines()[0]


@pytest.mark.skipif(shutil.which("sparseconv") is None, reason="the package is not installed")
def test_console_script_runs_the_same_main():
    result = subprocess.run(["sparseconv", "info", *LAYER], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout == ok("info", *LAYER)
