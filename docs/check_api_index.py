"""Check the built API index in headless Chromium: every public name must be a link there.

Opens the page with ``chromium --headless --dump-dom`` (the DOM after the browser has rendered
it, scripts included) and checks that each name in ``sparseconv.__all__``,
``sparseconv.plot.__all__`` and ``sparseconv.testing.__all__`` is the text of a link to its
own page, ``generated/<module>.<name>.html``. Exit status 1 lists the names that are not.

    python docs/check_api_index.py [docs/_build/html/api.html] [--chromium chromium]
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

MODULES = ("sparseconv", "sparseconv.plot", "sparseconv.testing", "sparseconv.torch",
           "sparseconv.dask")
DEFAULT_PAGE = Path(__file__).resolve().parent / "_build" / "html" / "api.html"


class _Links(HTMLParser):
    """Every ``<a href>`` of a page, with its text."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._open: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open.append([dict(attrs).get("href") or "", ""])

    def handle_data(self, data):
        for link in self._open:
            link[1] += data

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            href, text = self._open.pop()
            self.links.append((href, text.strip()))


def rendered_dom(page: Path, chromium: str = "chromium") -> str:
    """The page's DOM as headless Chromium renders it."""
    command = [chromium, "--headless", "--disable-gpu", "--dump-dom", page.resolve().as_uri()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def public_names() -> dict[str, list[str]]:
    return {module: list(importlib.import_module(module).__all__) for module in MODULES}


def missing_links(dom: str, names: dict[str, list[str]]) -> list[str]:
    """The ``module.name`` entries that are not a link with text ``name`` to their page."""
    parser = _Links()
    parser.feed(dom)
    found = {(href.split("#")[0].rsplit("/", 1)[-1], text) for href, text in parser.links}
    return [f"{module}.{name}" for module, members in names.items() for name in members
            if (f"{module}.{name}.html", name) not in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        parser.error(f"no built page {args.page}; build the docs first")
    dom = rendered_dom(args.page, args.chromium)
    names = public_names()
    if "API reference" not in dom:
        print(f"{args.page}: the rendered DOM is not the API index", file=sys.stderr)
        return 1
    missing = missing_links(dom, names)
    total = sum(map(len, names.values()))
    if missing:
        print(f"{len(missing)} of {total} public names are not linked from {args.page}:",
              file=sys.stderr)
        for name in missing:
            print(f"  {name}", file=sys.stderr)
        return 1
    print(f"{args.page}: all {total} public names are links to their pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
