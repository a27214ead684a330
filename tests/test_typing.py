"""Every public function and method is annotated, and mypy accepts the package.

The annotations use the aliases of :mod:`sparseconv._typing`; this test keeps the rule "type
hints on public signatures" true as the API grows. This test is CI's mypy run: where the
test extras are required (``SPARSECONV_REQUIRE_TORCH=1``, as in CI), a missing mypy fails it.
"""

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sparseconv
import sparseconv.plot
import sparseconv.testing

from ._oracles import REQUIRE_TORCH

ROOT = Path(__file__).resolve().parents[1]


def _public_callables():
    """``(name, function)`` for every public function, and every public method of a public
    class (its own or inherited from sparseconv), of sparseconv, sparseconv.plot, .testing."""
    modules = [(sparseconv, sparseconv.__all__), (sparseconv.plot, sparseconv.plot.__all__),
               (sparseconv.testing, sparseconv.testing.__all__)]
    for module, names in modules:
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                yield from _methods(f"{module.__name__}.{name}", obj)
            else:
                yield f"{module.__name__}.{name}", obj


def _methods(prefix, cls):
    for klass in cls.__mro__:
        if not klass.__module__.startswith("sparseconv"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") and attr not in ("__init__", "__call__", "__matmul__"):
                continue
            if isinstance(value, (classmethod, staticmethod)):
                value = value.__func__
            elif isinstance(value, property):
                value = value.fget
            if inspect.isfunction(value):
                yield f"{prefix}.{attr}", value


PUBLIC = sorted(dict(_public_callables()).items())


def test_public_names_found():
    names = {name for name, _ in PUBLIC}
    assert "sparseconv.conv_matrix" in names
    assert "sparseconv.ConvOperator.tosparse" in names
    assert "sparseconv.plot.spy" in names
    assert "sparseconv.testing.dottest" in names


@pytest.mark.parametrize("name, function", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_signature_is_annotated(name, function):
    signature = inspect.signature(function)
    missing = [p.name for i, p in enumerate(signature.parameters.values())
               if p.annotation is inspect.Parameter.empty
               and not (i == 0 and p.name in ("self", "cls"))]
    assert not missing, f"{name}{signature}: parameters without annotations: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, (
        f"{name}{signature}: no return annotation")


def test_mypy_accepts_the_package():
    if importlib.util.find_spec("mypy") is None:
        if REQUIRE_TORCH:  # CI: the test extras are required
            pytest.fail("mypy is not installed; install the test extras: pip install -e '.[test]'")
        pytest.skip("mypy is not installed")
    env = {**os.environ, "MYPY_CACHE_DIR": os.devnull}  # no cache files in the tree
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
