"""Tests that must not share their process with the rest of the suite.

``torch.compile`` leaves a stale entry in TorchScript's table of builtins: importing
inductor re-registers some operators (``quantized_decomposed::dequantize_per_tensor`` in
PyTorch 2.13), and the table, keyed by ``id()``, keeps the id of the object that was freed.
A later object of the same size at that address, such as a convolution's 4-tuple
``_reversed_padding_repeated_twice`` (72 bytes, as a builtin function is), is then taken for
that builtin by ``torch.jit.script`` ("builtin cannot be used as a value"): a test that
scripts a network failed once in CI that way, on the worker where a compile test had run.
So a test that runs ``torch.compile`` runs its body here, in a new interpreter.
"""

from __future__ import annotations

import builtins
import multiprocessing
import pickle
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def in_a_new_interpreter(body: Callable[[], None]) -> None:
    """Run ``body`` (a module-level function, so that the child can import it) in a new
    Python process, under the suite's warnings policy (pytest's ``filterwarnings``, which
    the child does not inherit); its exception, traceback included, is raised here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_strictly, body).result()


def _strictly(body: Callable[[], None]) -> None:
    """``body`` with the ``filterwarnings`` entries of pyproject.toml applied, as pytest
    applies them: ``action[:message[:category]]``, the last one first."""
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10: the policy's first entry
        entries = ["error"]
    else:
        entries = tomllib.loads(PYPROJECT.read_text())["tool"]["pytest"]["ini_options"][
            "filterwarnings"]
    with warnings.catch_warnings():
        for entry in entries:
            action, message, category = (entry.split(":") + ["", ""])[:3]
            warnings.filterwarnings(action, message,  # type: ignore[arg-type]
                                    getattr(builtins, category) if category else Warning)
        try:
            body()
        except BaseException as exc:  # one that cannot be pickled back (Dynamo's hold code
            # objects) arrived as "cannot pickle 'cell' object": sent as its text instead
            try:
                pickle.dumps(exc)
            except Exception:
                raise RuntimeError("".join(traceback.format_exception(exc))) from None
            raise
