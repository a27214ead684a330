"""Regenerate every figure of the gallery (README) into figures/, one progress line each.

Thin on purpose: the pictures are drawn by the example scripts in examples/ (public API only),
which the documentation's sphinx-gallery also runs. Each figure's ``num`` there is its file
name; this script runs the scripts that make the requested files and saves those figures.
Deterministic: fixed seeds in the scripts, matplotlib's default style plus
examples/gallery.mplstyle (sparseconv.plot's print style: 8 pt fonts in figures 3.5 or 7 in
wide, 200 dpi), no dates or versions in the files; GIFs at least 600 pixels wide.

    python scripts/make_figures.py [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import math
import re
import runpy
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.animation import Animation, PillowWriter  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STYLE = EXAMPLES / "gallery.mplstyle"
# a script's files: the figure names it spells out, e.g. plt.subplots(num="im2col.png"), or
# passes to a helper that makes the figure: animate("arithmetic_dilation.gif", ...)
_NAME = re.compile(r"""(?:num=|\()\s*["']([\w-]+\.(?:png|gif))["']""")


def gallery() -> dict[str, Path]:
    """Every file name of the gallery and the example script that draws it, in script order."""
    names = {}
    for script in sorted(EXAMPLES.glob("plot_*.py")):
        for name in _NAME.findall(script.read_text()):
            names.setdefault(name, script)
    return names


GIF_WIDTH = 600  # pixels at least: the animations' titles stay legible


def _save(figure, name: str, animations: dict, path: Path) -> None:
    if name.endswith(".gif"):
        dpi = max(100, math.ceil(GIF_WIDTH / figure.get_figwidth()))
        animations[figure].save(path, writer=PillowWriter(fps=2), dpi=dpi)
    else:  # at the style's savefig.dpi
        figure.savefig(path, metadata={"Software": None})


def run_script(script: Path, names: list[str], out: Path) -> list[Path]:
    """Run one example script and save its figures named in ``names`` into ``out``."""
    plt.close("all")
    with plt.style.context(["default", STYLE]), warnings.catch_warnings():
        # the script's animations that are not requested are never drawn; matplotlib says so
        warnings.filterwarnings("ignore", "Animation was deleted", UserWarning)
        # what a script prints is for the documentation's page, not this script's progress
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                namespace = runpy.run_path(str(script), run_name="__main__")
            except ModuleNotFoundError as error:
                if error.name != "torch":
                    raise
                raise SystemExit(f"{script.name} draws {', '.join(names)} with the PyTorch "
                                 "adapter: pip install torch==2.13.0 (or pass --only with "
                                 "the other figures)") from None
        # an animation's figure, as sphinx-gallery's scraper finds it
        animations = {a._fig: a for a in namespace.values() if isinstance(a, Animation)}
        figures = {plt.figure(num).get_label(): plt.figure(num) for num in plt.get_fignums()}
        missing = sorted(set(names) - set(figures))
        if missing:
            raise RuntimeError(f"{script.name} names {missing} but draws no such figure")
        written = []
        for name in names:
            _save(figures[name], name, animations, out / name)
            written.append(out / name)
        plt.close("all")
        del namespace, animations, figures
        gc.collect()
    return written


def make_figures(out: Path, only: list[str] | None = None) -> list[Path]:
    """Write the requested files (all by default) into ``out``, one progress line each."""
    table = gallery()
    names = list(table) if only is None else list(only)
    out.mkdir(parents=True, exist_ok=True)
    by_script: dict[Path, list[str]] = {}
    for name in names:
        by_script.setdefault(table[name], []).append(name)
    written = []
    for script, wanted in by_script.items():
        start = time.perf_counter()
        paths = run_script(script, wanted, out)
        for path in paths:
            written.append(path)
            print(f"[{len(written):2d}/{len(names)}] {path}  ({script.name}, "
                  f"{time.perf_counter() - start:.2f} s)", flush=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES.parent / "figures",
                        help="output directory (default: the repository's figures/)")
    parser.add_argument("--only", nargs="+", choices=list(gallery()), metavar="NAME",
                        help="file names to make (default: all)")
    args = parser.parse_args()
    start = time.perf_counter()
    written = make_figures(args.out, args.only)
    print(f"{len(written)} figures in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
