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


@pytest.mark.parametrize("name, shown", [("spectral_norm", "tol=1e-07"),
                                         ("spectral_norms", "tol=1e-07"),
                                         ("plot.density_counts", "chunk=4194304"),
                                         ("plot.largest_entries", "chunk=4194304")])
def test_signatures_show_a_constant_default_as_its_value(name, shown):
    """A new user's trial: the pages showed ``tol=DEFAULT_TOL`` and ``chunk=_CHUNK``, names a
    reader cannot look up; scipy's pages show the values."""
    import sparseconv.plot  # noqa: F401  (the plot names)

    obj = sparseconv
    for part in name.split("."):
        obj = getattr(obj, part)
    from sphinx.ext.autodoc.preserve_defaults import update_default_value

    source = inspect.getsource(obj).split(")", 1)[0]
    written = re.search(r"\b(tol|chunk)(: [^=]+)? = ([A-Z_]+)", source)
    assert written, source  # (the constant this test is about is still there)
    # what autodoc does first: defaults as written (autodoc_preserve_defaults), as
    # placeholders in the function's __signature__, then no annotations
    update_default_value(obj, False)
    try:
        bare = inspect.signature(obj)
        assert written[3] in str(bare), bare  # (the placeholders print as written)
        autodoc = str(bare.replace(parameters=[p.replace(annotation=p.empty)
                                               for p in bare.parameters.values()],
                                   return_annotation=bare.empty))
        signature, _ = load_conf()._init_signature(None, "function", f"sparseconv.{name}",
                                                   obj, None, autodoc, None)
    finally:
        del obj.__signature__
    assert shown in signature and written[3] not in signature, signature


def test_the_quoted_error_messages_are_the_librarys(capsys):
    """A new user's trial: the README and the guides quoted a message the library no longer
    printed (``... a tuple of 2 of them, got (1, 0)``)."""
    import numpy as np

    from sparseconv.cli import main

    with pytest.raises(ValueError) as info:
        sparseconv.conv_matrix(np.ones((2, 2, 3, 3)), (2, 8, 8), stride=(1, 0))
    message = f"ValueError: {info.value}"
    root = Path(__file__).parents[1]
    assert message in (root / "README.md").read_text()
    assert message in (root / "docs" / "user_guide" / "conventions.rst").read_text()
    with pytest.raises(SystemExit):
        main(["info", "--in-shape", "3,8,8", "--out-channels", "4", "--kernel-size", "3",
              "--stride", "0"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line in (root / "docs" / "user_guide" / "cli.rst").read_text(), line
