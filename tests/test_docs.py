"""The documentation: its examples run, its API reference lists every public name, and the
built API index links every one of them (checked in headless Chromium when a built site and
Chromium exist; CI builds the site and runs docs/check_api_index.py directly).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import re
import shutil
from pathlib import Path

import pytest

import sparseconv

from .test_readme import expected_output

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.rst")) + sorted((DOCS / "user_guide").glob("*.rst"))
BLOCKS = [(page, block) for page in PAGES for block in re.findall(
    r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", page.read_text(), flags=re.M)]


def load_checker():
    spec = importlib.util.spec_from_file_location("check_api_index",
                                                  DOCS / "check_api_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page, block", BLOCKS,
                         ids=[f"{page.name}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_docs_example_runs(page, block):
    code = "\n".join(line[3:] for line in block.splitlines())
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, f"{page.name} example", "exec"), {})
    printed = " ".join(buffer.getvalue().split())
    for expected in expected_output(code):
        assert " ".join(expected.split()) in printed, (page.name, expected, printed)


def test_the_docs_have_examples():
    assert len(BLOCKS) >= 8


def test_api_reference_lists_every_public_name():
    checker = load_checker()
    text = (DOCS / "api.rst").read_text()
    listed = {}
    for module, body in re.findall(
            r"\.\. (?:current)?module:: (\S+)\n(.*?)(?=\.\. (?:current)?module::|\Z)", text,
            flags=re.S):
        names = re.findall(r"^   (\w+)$", body, flags=re.M)
        listed.setdefault(module, []).extend(names)
    for module, names in checker.public_names().items():
        assert sorted(listed.get(module, [])) == sorted(names), module


def test_check_api_index_reports_a_missing_link():
    checker = load_checker()
    dom = ('<a href="generated/sparseconv.conv_matrix.html#x">conv_matrix</a>'
           '<a href="generated/sparseconv.plot.spy.html">sparseconv.plot.spy</a>')
    names = {"sparseconv": ["conv_matrix", "symbol"], "sparseconv.plot": ["spy"]}
    assert checker.missing_links(dom, names) == ["sparseconv.symbol", "sparseconv.plot.spy"]


@pytest.mark.skipif(not (DOCS / "_build" / "html" / "api.html").is_file()
                    or shutil.which("chromium") is None,
                    reason="needs a built site (docs/_build/html) and chromium")
def test_built_api_index_links_every_public_name_in_chromium():
    checker = load_checker()
    dom = checker.rendered_dom(DOCS / "_build" / "html" / "api.html")
    assert checker.missing_links(dom, checker.public_names()) == []


def load_conf():
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls, field", [("SpectralNorm", "bounds={}"),
                                        ("SavedLayer", "options={}")])
def test_signatures_show_a_default_factory_as_its_value(cls, field):
    obj = getattr(sparseconv, cls)
    autodoc = str(inspect.signature(obj))
    assert "<factory>" in autodoc  # what autodoc would render
    signature, _ = load_conf()._init_signature(None, "class", f"sparseconv.{cls}", obj, None,
                                               autodoc, None)
    assert "<factory>" not in signature and field in signature
