"""Many layers' spectral norms at once: :func:`spectral_norms`.

A network's layers are independent: they are validated first (errors name ``layers[i]``),
ordered by an estimate of their cost (:func:`_layer_cost`: the costliest first, so that no
core idles at the end on a large layer started last), and handed to worker processes or to a
map-like callable (:func:`sparseconv._parallel.map_layers`), each layer's
:func:`sparseconv._spectral_norm.spectral_norm` on one core. ``lipschitz_report`` runs its
convolutions through the same functions, with the exact circular norm beside each
(:func:`circular_norm`).
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ._geometry import ConvGeometry
from ._norm_bounds import exact_applies
from ._parallel import Results, map_layers
from ._spectral_norm import (
    DEFAULT_TOL,
    SpectralNorm,
    _checked_layer,
    _route,
    _spectral_norm,
    checked_options,
    checked_relative_width,
    spectral_norm,
)
from ._typing import ProgressLike, SpectralNormMethod
from ._validation import check_progress, workers_or_map
from ._whole_gram import full_bytes_and_flops

__all__ = ["spectral_norms"]


#: The arguments of :func:`spectral_norm` that describe a layer (the keys of ``layers``).
LAYER_KEYS = ("weight", "input_shape", "stride", "padding", "dilation", "groups",
              "padding_mode")
#: Their defaults, :func:`spectral_norm`'s own.
_LAYER_DEFAULTS = {key: parameter.default for key, parameter in
                   inspect.signature(spectral_norm).parameters.items() if key in LAYER_KEYS[2:]}


#: About how many products (Lanczos steps, forward and adjoint) a layer's bounds take: the
#: scale that puts the whole-Gram factorization's multiply-adds beside :func:`_layer_cost`'s.
_PRODUCTS = 400


def _layer_cost(geom: ConvGeometry, weight: np.ndarray, method: str,
                whole_gram: bool = False) -> float:
    """How long a layer's bounds take, roughly, to hand out the costliest first: the
    multiply-adds of one product (a Lanczos step: the matrix's nnz) times a growing function
    of the symbol's block side (the per-frequency factorizations). ``whole_gram`` (for
    ``method="exact"`` and ``relative_width``): plus that factorization's multiply-adds where
    it may run, so that a 56x56 layer's minutes start first, not last (a run with
    ``relative_width=1e-4`` on ResNet-18 left one core idle for its last 100 s)."""
    cost = geom.nnz() * (1.0 + max(geom.symbol_block) / 64)
    if whole_gram and exact_applies(geom) and _route(geom, method) == "bounds":
        cost += full_bytes_and_flops(geom, weight.dtype.kind == "c")[1] / _PRODUCTS
    return cost


def _norm_task(layer: dict, options: dict) -> tuple[SpectralNorm, str | None]:
    """One layer of :func:`spectral_norms` (module level: a worker process unpickles it), and
    why it missed ``relative_width`` (:func:`_spectral_norm`)."""
    return _spectral_norm(**layer, **options)


def warn_missed(missed: str | None, label: str) -> None:
    """The warning of a layer that missed the ``relative_width`` asked, in this process
    (a worker process's own would not reach the caller)."""
    if missed is not None:
        warnings.warn(f"{label}: {missed}", RuntimeWarning, stacklevel=3)


def circular_norm(layer: Mapping[str, Any]) -> float | None:
    """The exact norm of ``layer``'s kernel with periodic padding on the same input (stride,
    dilation and groups kept), by FFT; ``None`` where the stride does not divide the input."""
    periodic = {key: layer[key] for key in ("stride", "dilation", "groups") if key in layer}
    try:
        return float(spectral_norm(layer["weight"], layer["input_shape"], padding=None,
                                   padding_mode="circular", method="fft", **periodic))
    except ValueError:  # a stride that does not divide the input size: no periodic layer
        return None


def _norm_and_circular_task(layer: dict, options: dict,
                            ) -> tuple[tuple[SpectralNorm, str | None], float | None]:
    """:func:`_norm_task` and :func:`circular_norm`: ``lipschitz_report``'s two numbers per
    convolution, in one task."""
    return _norm_task(layer, options), circular_norm(layer)


def checked_layers(layers: Iterable[Mapping[str, Any]], method: str,
                   whole_gram: bool = False) -> tuple[list[dict], list[float]]:
    """``layers`` validated before any work (errors name ``layers[i]``), each with the
    validated ndarray as its weight, and their costs (:func:`_layer_cost`; ``whole_gram``:
    with the whole-Gram factorization's, for ``method="exact"`` or a ``relative_width``)."""
    if isinstance(layers, Mapping) or not isinstance(layers, Iterable) or isinstance(
            layers, (str, bytes)):
        what = "one mapping (wrap it in a list)" if isinstance(layers, Mapping) else repr(layers)
        raise TypeError(f"layers must be an iterable of mappings of spectral_norm's layer "
                        f"arguments, got {what}")
    given: list[dict] = []
    costs: list[float] = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            raise TypeError(f"layers[{i}] must be a mapping of spectral_norm's layer arguments "
                            f"{LAYER_KEYS}, got {type(layer).__name__}")
        unknown = sorted(set(layer) - set(LAYER_KEYS), key=str)
        missing = [key for key in LAYER_KEYS[:2] if key not in layer]
        if unknown or missing:
            close = difflib.get_close_matches(str(unknown[0]), LAYER_KEYS, n=1) if unknown else []
            raise TypeError(f"layers[{i}] " + (f"has no layer argument {unknown[0]!r}" if unknown
                            else f"misses {missing[0]!r}") + f"; the keys a layer takes are "
                            f"{LAYER_KEYS}" + (f"; did you mean {close[0]!r}?" if close else ""))
        args = {**_LAYER_DEFAULTS, **layer}
        try:
            weight, geom = _checked_layer(args["weight"], args["input_shape"], args["stride"],
                                          args["padding"], args["dilation"], args["groups"],
                                          args["padding_mode"], method)
        except (TypeError, ValueError) as error:
            raise type(error)(f"layers[{i}]: {error}") from error
        given.append({**layer, "weight": weight})  # arrays, not tensors, go to the workers
        costs.append(_layer_cost(geom, weight, method, whole_gram))
    return given, costs


def norms_as_done(task: Callable, layers: list[dict], costs: list[float],
                  options: list[dict], workers: int | Callable,
                  label: Callable[[int], str] = "layers[{}]".format) -> Results:
    """``(i, task(layers[i], options[i]), seconds)`` as each layer finishes, on ``workers``
    processes (:func:`sparseconv._parallel.map_layers`; an error names ``label(i)``); close
    it to stop the workers."""
    return map_layers(task, list(zip(layers, options)), workers=workers, costs=costs,
                      label=label)


def spectral_norms(
    layers: Iterable[Mapping[str, Any]], *, method: SpectralNormMethod = "auto",
    tol: float = DEFAULT_TOL, relative_width: float | None = None,
    workers: int | Callable | Executor | None = 1, progress: ProgressLike | None = None,
) -> list[SpectralNorm]:
    """:func:`spectral_norm` of many layers, several at once.

    A network's layers are independent: ``workers`` processes take one layer at a time each,
    the costliest first, each on one core (one BLAS thread, its per-frequency work in turn),
    which uses the cores better than one layer after the other with both: a layer's Lanczos
    iteration is a chain of products that more cores barely speed up.

    Parameters
    ----------
    layers : iterable of mappings
        Each the arguments of :func:`spectral_norm` that describe a layer: ``"weight"`` and
        ``"input_shape"``, and any of ``"stride"``, ``"padding"``, ``"dilation"``,
        ``"groups"``, ``"padding_mode"``. Every layer is validated before any work starts.
    method, tol, relative_width
        As :func:`spectral_norm`, for every layer: with ``relative_width``, the whole-Gram
        certificate runs on the layers whose interval is wider, and on those only (a
        ``RuntimeWarning`` names each layer still wider, and why).
    workers : int, map-like callable or concurrent.futures.Executor, optional
        Processes to use, scipy's convention (``scipy.fft``): ``1`` (the default, also for
        ``None``) runs the layers in this process in turn, each on every core as
        :func:`spectral_norm` does; a negative value counts back from the cores this
        process may use (its CPU affinity; ``-1``: every one). The
        workers are `joblib <https://joblib.readthedocs.io>`_'s reusable process pool (a
        script needs no ``if __name__ == "__main__"`` guard); each gets this process's
        memory limit (:func:`get_memory_limit`, a limit per matrix: the same bounds as one
        layer after the other, at up to ``workers`` layers' peak memory at once). Or, to
        go beyond one machine, scipy's other convention
        (``scipy.optimize.differential_evolution``): a map-like callable, such as
        ``multiprocessing.Pool.map`` or a Dask client's ``get_executor().map``, or an
        ``Executor`` (its ``map`` is used): one task per layer, the costliest first, each
        under this process's memory limit and on the threads its worker has.
    progress : callable, optional
        Called as ``progress(done, total)`` after each layer.

    Returns
    -------
    list of SpectralNorm
        In the order of ``layers``: :func:`spectral_norm`'s results, each certified; on
        worker processes they can differ from the in-process ones in the last bits (one BLAS
        thread sums some products in another order).

    Raises
    ------
    TypeError
        ``layers`` not an iterable of mappings (one mapping, say); a layer that is not a
        mapping, a key that describes no layer, a missing ``weight`` or ``input_shape``;
        ``workers`` neither an int, None, a callable nor an ``Executor``.
    ValueError
        A layer that :func:`spectral_norm` refuses (the message names the layer:
        ``layers[3]: ...``); ``method``, ``tol`` or ``workers`` out of range.

    An error in a layer's own work (a :class:`MatrixTooLargeError`, say) is raised with its
    type, its message led by ``layers[i]:``, with or without workers.

    Examples
    --------
    >>> import numpy as np
    >>> import sparseconv as sc
    >>> rng = np.random.default_rng(0)
    >>> layers = [dict(weight=rng.standard_normal((8, 4, 3, 3)), input_shape=(4, 12, 12),
    ...                padding=1),
    ...           dict(weight=rng.standard_normal((8, 8, 3, 3)), input_shape=(8, 12, 12),
    ...                stride=2, padding=1)]
    >>> results = sc.spectral_norms(layers, workers=2)
    >>> [r.method for r in results]
    ['dense', 'dense']
    >>> float(results[1]) == float(sc.spectral_norm(**layers[1]))
    True
    """
    method, tol = checked_options(method, tol)
    relative_width = checked_relative_width(relative_width, method)
    workers = workers_or_map(workers)
    progress = check_progress(progress)
    given, costs = checked_layers(layers, method,
                                  method == "exact" or relative_width is not None)
    results: list[SpectralNorm | None] = [None] * len(given)
    options = [dict(method=method, tol=tol, relative_width=relative_width)] * len(given)
    with contextlib.closing(norms_as_done(_norm_task, given, costs, options, workers)) as runs:
        for done, (i, (result, missed), _) in enumerate(runs, start=1):
            results[i] = result
            warn_missed(missed, f"spectral_norms: layers[{i}]")
            if progress is not None:
                progress(done, len(given))
    return results  # type: ignore[return-value]
