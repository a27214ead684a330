"""Where a warning points: the first caller outside sparseconv.

A warning raised deep in the package (a layer's reading, the import's environment) is about
the line of the caller's code that asked for it, however many of the package's frames lie
between; ``warnings`` itself skips importlib's frames.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

__all__ = ["outside_level"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def outside_level(*also: ModuleType) -> int:
    """The ``stacklevel``, for a ``warnings.warn`` in the function that calls this one, of
    the first frame outside this package and the packages ``also`` (torch's wrappers of the
    adapter's functions; importlib's frames are not counted)."""
    skipped = (_PACKAGE, *(os.path.dirname(os.path.abspath(str(m.__file__))) + os.sep
                           for m in also))
    frame, level = sys._getframe(1), 1  # (the caller of this function: level 1)
    while frame.f_back is not None:
        frame = frame.f_back
        if not frame.f_code.co_filename.startswith("<frozen importlib"):
            level += 1
            if not os.path.abspath(frame.f_code.co_filename).startswith(skipped):
                break
    return level
