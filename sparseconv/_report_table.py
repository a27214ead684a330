"""The Lipschitz report as a result: its rows, its printed table, CSV and JSON.

:class:`LipschitzReport` is what :func:`sparseconv.torch.lipschitz_report` returns (computed in
:mod:`sparseconv._torch_report`); it holds plain values only (no tensors, no modules), so
that a report is printed, indexed and written without torch's objects. Printed intervals
are rounded outward (:func:`_rounded`), so a printed interval is certified too.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR
from typing import IO, overload

import numpy as np

from ._memory import format_bytes
from ._rounding import decimal_outward

__all__ = ["LipschitzReport"]

_COLUMNS = ("name", "type", "input_shape", "output_shape", "nnz", "memory", "lower", "upper",
            "method", "converged", "circular", "seconds")


def _rounded(value: float, rounding: str, digits: int = 6) -> str:
    """``value`` to ``digits`` significant digits, rounded outward (a printed interval stays
    valid): ``rounding`` is decimal's ROUND_FLOOR or ROUND_CEILING."""
    rounded = decimal_outward(value, rounding, digits)
    return str(float(value)) if rounded == 0 or not rounded.is_finite() else f"{rounded:g}"


#: The printed report's words before its activations (a new user's trial: "constants (1 unless
#: given): 2 (ReLU), 4 (ReLU)" read as the constants 2 and 4, where 2 and 4 are the names of
#: a Sequential's modules).
_ACTIVATIONS = "these activations, by name (type, and Lipschitz constant where not 1): "


def _listed(activations: tuple[str, ...]) -> str:
    """The activations for the printed report: each once, in the order of its first call,
    with ``xN`` for a module called ``N`` times."""
    counts = dict.fromkeys(activations, 0)
    for label in activations:
        counts[label] += 1
    return ", ".join(label + (f" x{n}" if n > 1 else "") for label, n in counts.items()) \
        or "none"


@dataclass(frozen=True, eq=False)
class LipschitzReport:
    """Per-layer certified spectral norms of a network, from :func:`lipschitz_report`.

    Iterating gives the rows as dicts (the keys of ``columns``); ``report[i]``,
    ``report["name"]`` and ``report[i:j]`` index them by position, layer name or slice;
    ``str(report)`` is a table (intervals printed rounded outward, so a printed interval is
    certified too); :meth:`to_csv` and :meth:`to_json` write them.

    Attributes
    ----------
    rows : tuple of dict
        ``name``, ``type``, ``input_shape``, ``output_shape``; ``nnz`` and ``memory`` (bytes,
        float64 CSR) of the layer's matrix, counted without building it for convolutions,
        transposed convolutions and ``nn.Linear``; the certified interval ``lower <= ||A||_2
        <= upper`` and its ``method`` (:func:`sparseconv.spectral_norm`'s); ``converged``,
        whether the lower bound met ``tol`` (``SpectralNorm.converged``; printed ``no`` where
        it stopped short, and for ``method="upper"``, which computes none: the interval is
        certified either way); ``circular``, the exact norm of the same kernel with periodic
        padding on the same input size (None for a layer that is no convolution, or whose
        size its stride does not divide); the ``seconds`` the row took.
    network_upper : float or None
        The product of the layers' upper bounds and of the activations' Lipschitz constants,
        rounded up: a Lipschitz bound of the whole network (in the 2-norm) when it is the
        sequential chain of the traced layers, or the bound over its torch.fx graph for
        another model (``over_graph``); None when some traced module is neither linear nor a
        known activation, or neither applies (``reason`` says which).
    activations : tuple of str
        The activations and max pooling layers assumed, as ``"name (Type)"`` for a
        1-Lipschitz one and ``"name (Type, L)"`` otherwise (``Sigmoid``: 0.25; ResNet's 3x3
        stride-2 ``MaxPool2d``: 2), once per call in the order of the forward pass (a
        module called twice, as ResNet's blocks call their ReLU, is listed twice; the
        printed report names it once, with ``x2``); then, for the bound over the graph, the
        functions the forward calls on the signal, as ``"node (function(), L)"``
        (``"sigmoid (sigmoid(), 0.25)"``). A constant of ``lipschitz_constants`` says
        ``"L given"``.
    chain_checked : bool
        True when the model is a (nested) ``nn.Sequential``, or a TorchScript model whose
        graph is the chain of its calls, so it is a chain; False when the chain is an
        assumption (hooks do not see residual sums or functional calls).
    reason : str
        Why ``network_upper`` is None (empty otherwise).
    complete : bool
        False for the partial report of an interrupted run (see :func:`lipschitz_report`).
    over_graph : bool
        True when ``network_upper`` follows the model's torch.fx graph (a model that is no
        chain: residual sums add their branches' bounds, concatenations add them in
        quadrature; a TorchScript model's graph rebuilt as one), False for the product over a
        chain.
    columns : tuple of str
        The rows' keys in the table's order (the CSV's header).
    warning : str
        With ``assume_chain=True``, where the forward runs an operation on the signal outside
        its layers (a residual sum, a concatenation, ...), so that ``network_upper``, the
        product asked for, may be no bound: the ``RuntimeWarning``'s text, kept with the
        report (printed, and written by :meth:`to_json`); empty otherwise.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Sigmoid(), nn.Flatten(),
    ...                       nn.Linear(2 * 4 * 4, 3)).eval()
    >>> report = sct.lipschitz_report(model, (1, 4, 4))
    >>> len(report), report[0]["name"], report["3"]["type"], [r["name"] for r in report[:1]]
    (2, '0', 'Linear', ['0'])
    >>> report.activations
    ('1 (Sigmoid, 0.25)',)
    >>> bool(report[0]["lower"] <= report[0]["upper"])
    True
    >>> report.to_csv().splitlines()[0]
    'name,type,input_shape,output_shape,nnz,memory,lower,upper,method,converged,circular,seconds'
    """

    rows: tuple[dict, ...]
    network_upper: float | None
    activations: tuple[str, ...]
    chain_checked: bool
    reason: str = ""
    complete: bool = True
    over_graph: bool = False
    columns: tuple[str, ...] = _COLUMNS
    warning: str = ""

    def __iter__(self) -> Iterator[dict]:
        return (dict(row) for row in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, key: int | str) -> dict: ...

    @overload
    def __getitem__(self, key: slice) -> list[dict]: ...

    def __getitem__(self, key: int | str | slice) -> dict | list[dict]:
        """A row as a dict: by position (``report[0]``, ``report[-1]``) or by layer name
        (``report["0+1"]``); a list of rows for a slice (``report[1:3]``)."""
        if isinstance(key, str):
            found = [i for i, row in enumerate(self.rows) if row["name"] == key]
            if len(found) > 1:  # (a hunt: the first was returned without a word)
                raise KeyError(f"{len(found)} rows are named {key!r} (a module called more "
                               f"than once), at positions {found}: index the report by "
                               "position")
            if found:
                return dict(self.rows[found[0]])
            raise KeyError(f"no row named {key!r}; the rows are "
                           f"{[row['name'] for row in self.rows]}")
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return dict(self.rows[key])
        if isinstance(key, slice):  # (a new user's trial)
            return [dict(row) for row in self.rows[key]]
        raise TypeError(f"a report is indexed by a row's position (int), its layer's name "
                        f"(str) or a slice of positions, got {type(key).__name__}")

    def __str__(self) -> str:
        def cell(key, value):
            if value is None:
                return "-"
            if key == "name" and not value:
                return "(model)"  # the model is itself the one layer
            if key == "lower":
                return _rounded(value, ROUND_FLOOR)
            if key in ("upper", "circular"):
                return _rounded(value, ROUND_CEILING)
            if key == "memory":
                return format_bytes(value)
            if key == "seconds":
                return f"{value:.3f}"
            if key == "converged":
                return "yes" if value else "no"
            if isinstance(value, tuple):
                return "x".join(map(str, value))
            return str(value)

        table = [list(self.columns)] + [[cell(k, row[k]) for k in self.columns]
                                        for row in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.network_upper is None:
            lines.append(f"network bound: none ({self.reason})")
        elif self.over_graph:
            lines.append("network bound (over the model's graph: products along each path, "
                         "residual sums adding their branches, concatenations and several "
                         "outputs in quadrature): "
                         + _rounded(self.network_upper, ROUND_CEILING))
            lines.append(f"  assumes {_ACTIVATIONS}" + _listed(self.activations))
        else:  # (with a warning, the product is assumed a bound, not shown one: a new
            # user's trial took it for the residual model's bound, 44% below its graph's)
            lines.append(("network bound (product of the upper bounds): " if not self.warning
                          else "product of the upper bounds, a network bound only if the "
                          "model is their chain (assume_chain; see the warning): ")
                         + _rounded(self.network_upper, ROUND_CEILING))
            lines.append("  assumes " + ("" if self.chain_checked else
                                         "the model is the sequential chain of these layers and ")
                         + _ACTIVATIONS + _listed(self.activations))
        if self.warning:
            lines.append(f"  warning: {self.warning}")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike[str] | IO[str] | None = None, *,
               network_row: bool = True) -> str | None:
        """Write the rows as CSV (shapes as ``CxHxW``, a missing ``circular`` empty) to a
        file name or an open text file; ``None`` returns the text, as pandas does.

        The last line is the network's (``network_row=False`` leaves it out): ``name``
        ``(network)``, ``type`` ``Network``, ``upper`` the network bound (empty where there is
        none), ``method`` what it is (``product``, ``graph``, or, with ``assume_chain``'s
        warning, ``product (assumed a chain; warning: ...)`` and the warning's text, which says
        why the product may be no bound; ``"none: "`` and the reason where there is none), the
        other cells empty. A program that reads the layers only leaves out the ``type``
        ``Network``.

        Parameters
        ----------
        path : str, path-like or text file, optional
            Where to write; ``None``: return the text.
        network_row : bool, optional
            Whether to end with the network's line (default True).

        Returns
        -------
        str or None
            The CSV text where ``path`` is ``None``.

        Examples
        --------
        >>> import torch
        >>> import sparseconv.torch as sct
        >>> report = sct.lipschitz_report(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3)).eval(),
        ...                               (1, 8))
        >>> lines = report.to_csv().splitlines()
        >>> lines[0].split(",")[:3], lines[-1].split(",")[:2]
        (['name', 'type', 'input_shape'], ['(network)', 'Network'])
        """
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=self.columns)
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: "x".join(map(str, v)) if isinstance(v, tuple) else v
                             for k, v in row.items()})
        if network_row:
            writer.writerow(self._network_row())
        return _write(stream.getvalue(), path, newline="")

    def _network_row(self) -> dict:
        """The CSV's last line: the network bound where the table's last lines print it."""
        if self.network_upper is None:
            method = f"none: {self.reason}"
        elif self.over_graph:
            method = "graph"
        else:
            # (a review: "see the warning" pointed to what the CSV does not hold)
            method = "product" + (f" (assumed a chain; warning: {self.warning})"
                                  if self.warning else "")
        return {"name": "(network)", "type": "Network", "upper": self.network_upper,
                "method": method}

    def to_json(self, path: str | os.PathLike[str] | IO[str] | None = None) -> str | None:
        """Write the rows, the network bound and its assumptions as JSON to a file name or an
        open text file; ``None`` returns the text.

        Parameters
        ----------
        path : str, path-like or text file, optional
            Where to write; ``None``: return the text.

        Returns
        -------
        str or None
            The JSON text where ``path`` is ``None``: an object with ``"layers"`` (the rows),
            ``"network_upper"``, ``"activations"``, ``"chain_checked"``, ``"reason"``,
            ``"complete"``, ``"over_graph"`` and ``"warning"``.

        Examples
        --------
        >>> import json, torch
        >>> import sparseconv.torch as sct
        >>> report = sct.lipschitz_report(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3)).eval(),
        ...                               (1, 8))
        >>> data = json.loads(report.to_json())
        >>> len(data["layers"]), data["network_upper"] == report.network_upper
        (1, True)
        """
        data = {"layers": [dict(row) for row in self.rows], "network_upper": self.network_upper,
                "activations": list(self.activations), "chain_checked": self.chain_checked,
                "reason": self.reason, "complete": self.complete,
                "over_graph": self.over_graph, "warning": self.warning}
        return _write(json.dumps(data, indent=2), path)


def _write(text: str, path, newline: str | None = None) -> str | None:
    """``text`` to a file name or an open text file (``path.write``), or returned (None)."""
    if path is None:
        return text
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "w", newline=newline) as stream:
            stream.write(text)
    elif isinstance(path, (io.RawIOBase, io.BufferedIOBase)) \
            or "b" in str(getattr(path, "mode", "")):  # (tempfile's wrappers: by their mode)
        raise TypeError(f"path must be a file name or a text file, got a binary file "
                        f"{getattr(path, 'name', path)!r}: open it in text mode ('w')")
    elif hasattr(path, "write"):
        path.write(text)
    else:  # (a review: an int was taken for a file descriptor, written to and closed)
        raise TypeError(f"path must be a file name, a path-like object or a text file, got "
                        f"{path!r}")
    return None
