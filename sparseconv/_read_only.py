"""Read-only arrays that stay read-only through ``pickle`` and ``copy.deepcopy``.

The operators keep private, read-only copies of what they are built from (a layer's weight,
an affine map's matrix and bias, a circular SVD's singular values), so that nothing written
later changes one side of an operator and not the other. numpy pickles an array without its
flags: an object back from ``pickle.loads`` or ``copy.deepcopy`` held writeable arrays (a
review wrote through an unpickled ``ConvOperator.weight``: its forward followed the write and
its adjoint did not, the dot test 159.4 against 134.8). :class:`ReadOnlyState` records, when
an object is pickled or copied, which of its arrays are read-only, and freezes them again
when it is restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["ReadOnlyState"]

#: Where a sparse array keeps its arrays, by format.
_SPARSE_ARRAYS = ("data", "indices", "indptr", "row", "col", "offsets")

#: A step from a container to what it holds: ``("item", key)`` or ``("attr", name)``.
_Step = tuple[str, Any]


def _read_only(value: Any, path: tuple[_Step, ...] = ()) -> Iterator[tuple[_Step, ...]]:
    """The paths from ``value`` to the read-only numpy arrays it holds: itself, the items of
    its dicts, lists and tuples, and a scipy.sparse array's own arrays (not into other
    objects: those that keep read-only arrays are :class:`ReadOnlyState` themselves)."""
    if isinstance(value, np.ndarray):
        if not value.flags.writeable:
            yield path
    elif sp.issparse(value):
        for name in _SPARSE_ARRAYS:
            array = getattr(value, name, None)
            if isinstance(array, np.ndarray) and not array.flags.writeable:
                yield (*path, ("attr", name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _read_only(item, (*path, ("item", key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _read_only(item, (*path, ("item", index)))


def _follow(value: Any, path: tuple[_Step, ...]) -> Any:
    for kind, key in path:
        value = value[key] if kind == "item" else getattr(value, key)
    return value


class ReadOnlyState:
    """Mixin: ``pickle`` and ``copy.deepcopy`` give back the read-only arrays read-only.

    The state is the instance's ``__dict__`` with the paths to its read-only arrays beside it.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        return {"state": state, "read_only": [path for key, value in state.items()
                                              for path in _read_only(value, (("item", key),))]}

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        state = pickled["state"]
        for path in pickled["read_only"]:
            _follow(state, path).flags.writeable = False
        self.__dict__.update(state)  # (as a frozen dataclass's fields are set: past __setattr__)
