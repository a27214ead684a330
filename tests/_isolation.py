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

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def in_a_new_interpreter(body: Callable[[], None]) -> None:
    """Run ``body`` (a module-level function, so that the child can import it) in a new
    Python process; its exception, traceback included, is raised here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(body).result()
