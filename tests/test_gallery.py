"""The gallery: examples/plot_*.py draw every file of figures/, through scripts/make_figures.py.

Oracles: the repository's own figures/ (the same file names), the files read back with
matplotlib and Pillow, a second run (the same bytes), and sparseconv.__all__ (the examples use
public names only).
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import matplotlib.image
import pytest
from PIL import Image

import sparseconv
import sparseconv.plot

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_figures.py"
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))


def make_figures(*args):
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def check_readable(path: Path) -> None:
    """Print resolution (200 dpi: 3.5 in is 700 pixels), GIFs 600 pixels wide, not empty."""
    if path.suffix == ".png":
        pixels = matplotlib.image.imread(path)
        assert min(pixels.shape[:2]) >= 400 and pixels.std() > 0.05, path.name
    else:
        with Image.open(path) as gif:
            assert gif.n_frames >= 4 and gif.width >= 600, path.name
            assert path.stat().st_size < 1_000_000, path.name


def test_make_figures_only_writes_the_named_files_deterministically(tmp_path):
    names = ["toeplitz_1d.png", "arithmetic_padding_strides.gif"]
    runs = [make_figures("--out", tmp_path / run, "--only", *names) for run in "ab"]
    for result in runs:
        assert result.returncode == 0 and not result.stderr, result.stderr
    lines = runs[0].stdout.strip().splitlines()
    assert len(lines) == 3 and all(name in line for name, line in zip(names, lines))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        check_readable(tmp_path / "a" / name)
    with Image.open(tmp_path / "a" / names[1]) as gif:
        assert gif.n_frames == 9  # one frame per output of the 5x5 -> 3x3 layer


def test_every_example_runs_and_every_file_of_figures_is_made(tmp_path):
    result = make_figures("--out", tmp_path)
    assert result.returncode == 0 and not result.stderr, result.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in (ROOT / "figures").iterdir())
    for name in made:
        check_readable(tmp_path / name)


def test_an_unknown_figure_is_an_argparse_error(tmp_path):
    result = make_figures("--out", tmp_path, "--only", "nope.png")
    assert result.returncode == 2 and "invalid choice: 'nope.png'" in result.stderr


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_examples_use_public_names_only(script):
    """Only ``sparseconv.<name in __all__>``, ``sparseconv.plot.<name in its __all__>`` and
    ``sparseconv.torch.<name in its __all__>``."""
    public = {"sparseconv": set(sparseconv.__all__) | {"plot", "torch"},
              "sparseconv.plot": set(sparseconv.plot.__all__)}
    try:  # (the PyTorch adapter's example: its public names too)
        adapter = importlib.import_module("sparseconv.torch")
    except ImportError:  # pragma: no cover - CI installs torch
        adapter = None
    if adapter is not None:
        public["sparseconv.torch"] = set(adapter.__all__)
    aliases = {}
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sparseconv"):
                    assert alias.name in public, (script.name, alias.name)
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparseconv"):
            assert node.module in public, (script.name, node.module)
            for alias in node.names:
                assert alias.name in public[node.module], (script.name, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module is not None:
                assert node.attr in public[module], (script.name, f"{module}.{node.attr}")
    assert aliases or any(isinstance(n, ast.ImportFrom) for n in tree.body), script.name


def test_every_public_plot_function_is_shown_in_an_example():
    """sphinx-gallery renders examples/: each name of sparseconv.plot is called there."""
    called = set()
    for script in EXAMPLES:
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called.add(func.attr if isinstance(func, ast.Attribute) else
                           getattr(func, "id", None))
    names = set(sparseconv.plot.__all__) - {"Raster"}  # a result type: raster() returns it
    assert names <= called, sorted(names - called)


def test_the_gallery_style_is_the_print_style():
    style = matplotlib.rc_params_from_file(ROOT / "examples" / "gallery.mplstyle",
                                           use_default_template=False)
    from sparseconv.plot._figure import STYLE

    expected = {key: value for key, value in STYLE.items() if key != "savefig.dpi"}
    assert {key: style[key] for key in expected} == {
        key: matplotlib.rcParamsDefault.validate[key](value) for key, value in expected.items()}
    assert style["savefig.dpi"] == 200  # files for the README and the docs; print: 300
