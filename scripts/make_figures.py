"""Regenerate every figure of the gallery (README) into figures/, one progress line each.

Thin on purpose: the figures are built by sparseconv.figures, which `sparseconv figures` also
runs. Deterministic: fixed seeds, fixed rcParams, no dates in the files.

    python scripts/make_figures.py [--out DIR] [--only NAME ...]
"""

import argparse
import time
from pathlib import Path

from sparseconv.figures import FIGURES, make_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=Path(__file__).resolve().parents[1] / "figures",
                        help="output directory (default: the repository's figures/)")
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), metavar="NAME",
                        help="file names to make (default: all)")
    args = parser.parse_args()
    start = time.perf_counter()
    written = make_figures(args.out, args.only, progress=lambda line: print(line, flush=True))
    print(f"{len(written)} figures in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
