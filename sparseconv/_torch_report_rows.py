"""The rows of :func:`sparseconv.torch.lipschitz_report`: one per linear layer traced.

Each row holds the layer's shapes, the nnz and memory of its matrix (counted without building
it for convolutions and ``nn.Linear``), its certified interval (:func:`_layer_norm`), the exact
norm of the same kernel made periodic, and the time; each layer's reading is checked against
its traced output first (:func:`_check_reading`). :func:`_report_rows` computes them in this
process or on worker processes, the costliest first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

import sparseconv as sc
from sparseconv._parallel import naming
from sparseconv._rounding import down, up
from sparseconv._shapes import unpadded_transpose_sizes
from sparseconv._spectral_norms import (
    _norm_and_circular_task,
    checked_layers,
    circular_norm,
    norms_as_done,
    warn_missed,
)
from sparseconv._torch_calls import function_name, module_path
from sparseconv._torch_fixed_layers import NEAREST_FLOAT64_HINT, nearest_in_float64
from sparseconv._torch_fold import _fold
from sparseconv._torch_graph_rules import FunctionalCall
from sparseconv._torch_kinds import (
    _CONV,
    _CONV_T,
    _POOL,
    hook_reason,
)
from sparseconv._torch_layer_base import _Layer
from sparseconv._torch_layers import _layer, called_output_size
from sparseconv._torch_module_spectra import _layer_norm, _layer_options
from sparseconv._torch_probe import magnitude, matches
from sparseconv._torch_script import _kind
from sparseconv._torch_trace import (
    TraceRecord,
    row_parts,
)

__all__: list[str] = []


def _untyped(module: nn.Module) -> Any:
    """``module`` for attribute reads that torch's stubs type more loosely than the module."""
    return module


def _nnz(module: nn.Module, layer: _Layer) -> int:
    """The layer matrix's stored entries, without building it where sparseconv allows."""
    if isinstance(module, _CONV):
        assert layer.conv is not None  # every convolution layer records its arguments
        weight, shape, kwargs = layer.conv
        return sc.ConvGeometry.from_weight(weight.shape, shape, **kwargs).nnz()
    if isinstance(module, _CONV_T):
        module = _untyped(module)  # torch's stubs type padding as str | tuple for every module
        # the output_padding the call's output size implies (its size without any may be
        # empty, which PyTorch allows where output_padding makes it up: a review)
        smallest = unpadded_transpose_sizes(layer.input_shape[1:], module.kernel_size,
                                            module.stride, module.dilation,
                                            [(p, p) for p in module.padding])
        output_padding = tuple(n - m for n, m in zip(layer.output_shape[1:], smallest))
        return sc.ConvGeometry.for_transpose(
            module.weight.shape, layer.input_shape, stride=module.stride, padding=module.padding,
            output_padding=output_padding, dilation=module.dilation, groups=module.groups).nnz()
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features * layer.repeat
    return int(layer.build("csr").nnz)


def _csr_bytes(nnz: int, rows: int, cols: int) -> int:
    """The memory of a float64 CSR array with ``nnz`` entries (scipy's index dtype rule)."""
    index = np.dtype(sp.get_index_dtype(maxval=max(nnz, rows, cols))).itemsize
    return nnz * (8 + index) + (rows + 1) * index


def _has_periodic_twin(module: nn.Module) -> bool:
    """Whether the report shows the norm of ``module``'s kernel with periodic padding: a
    convolution (parametrized too) or average pooling, not the 1x1 kernels that ``Linear``
    and ``BatchNorm`` are read as."""
    return isinstance(module, (*_CONV, *_CONV_T, *_POOL))


def _circular_norm(layer: _Layer, module: nn.Module) -> float | None:
    """The exact spectral norm of the same kernel with periodic padding, or None.

    The circular layer on the same input size (stride, dilation and groups kept), by FFT; None
    for a layer that is no convolution or average pooling (``Linear`` and ``BatchNorm``, 1x1
    kernels on the inside, would show their own norm), or whose input size its stride does
    not divide.
    """
    if layer.conv is None or not _has_periodic_twin(module):
        return None
    weight, shape, kwargs = layer.conv
    return circular_norm(dict(weight=weight, input_shape=shape, **kwargs))


def _check_reading(layer: _Layer, first: TraceRecord, last: TraceRecord | None = None) -> None:
    """Refuse a row's layer whose reading by sparseconv does not reproduce what its modules
    computed on the trace's probe: ``first``'s input to ``last``'s output (a convolution and
    the BatchNorm folded into it, whose input is that convolution's very output). A review:
    ``padding`` set after construction on a circular convolution, which still pads by its
    stale copy, gave a bound below the norm; a ``_conv_forward`` set on the instance scaled
    the output unseen."""
    last = first if last is None else last
    if tuple(layer.output_shape) != tuple(last.output_shape):
        matched = False
    elif first.sample is None or last.sample is None:  # (too large to keep: the shape alone)
        return
    else:
        x, y = first.sample[0], last.sample[1]
        flat = x.detach().cpu().to(torch.complex128 if x.is_complex() else torch.float64)
        ours = layer.operator() @ flat.numpy().ravel()
        if layer.offset is not None:
            ours = ours + layer.offset
        matched = matches(torch.from_numpy(np.asarray(ours)).reshape(y.shape), y,
                          max(magnitude(first.module, x), magnitude(last.module, x)))
    if not matched:  # (a review: a float64 nearest resampling was told of a changed
        # attribute)
        cause = NEAREST_FLOAT64_HINT if first.sample is not None and nearest_in_float64(
            first.module, first.sample[0].dtype) else (
            " (an attribute changed after construction, or a method replaced on the "
            "instance?)")
        raise ValueError("sparseconv's reading of its arguments does not reproduce its "
                         f"output on the trace's probe{cause}; no bound is given for what the "
                         "module computes")


def _prepared_row(record: TraceRecord, batchnorm: TraceRecord | None) -> tuple[dict, _Layer]:
    """A row's shapes, nnz and memory, and its layer (the norms still to come)."""
    module, out = record.module, record.output_shape
    name, kind = _row_name(record)
    for each in (*row_parts(record), *(() if batchnorm is None else (batchnorm,))):
        # a hook may change what the module returns (a pre-hook its input, which the probe's
        # check cannot see): the row would bound another map than the layer runs (a new
        # user's trial: a hook scaling a convolution's output by 10, its row 10x below)
        why = ("" if isinstance(each.module, torch.jit.ScriptModule) else
               hook_reason(each.module, f"module {each.name!r} ({_kind(each.module)})"))
        if why and "not yet initialized" not in why:
            raise TypeError(f"{why}: its row would bound what the module's class computes, "
                            "not what the hook makes of it; remove the hook first "
                            "(handle.remove(), on the handle its registration returned)")
    if batchnorm is not None:
        # in float64: a float32 module would round the folded weights; not by a float64
        # copy of the module (a new user's trial: the old-style spectral_norm's weight, made
        # by its hook in a forward with autograd on, refuses deepcopy)
        module = _fold(module, batchnorm.module, dtype=torch.float64,
                       features=len(record.output_shape) == 1).module
        name, kind = f"{name}+{batchnorm.name}", f"{kind}+{_kind(batchnorm.module)}"
        out = batchnorm.output_shape
    layer = _layer(module, record.input_shape,
                   called_output_size(module, record.input_shape, record.output_shape))
    _check_reading(layer, record, batchnorm)
    nnz = _nnz(module, layer)
    rows, cols = math.prod(layer.output_shape), math.prod(layer.input_shape)
    return dict(name=name, type=kind, input_shape=record.input_shape, output_shape=out,
                nnz=nnz, memory=_csr_bytes(nnz, rows, cols)), layer


def _finished_row(row: dict, layer: _Layer, bound: sc.SpectralNorm, circular: float | None,
                  seconds: float) -> dict:
    """``row`` with its interval, circular norm and time."""
    return dict(row, lower=float(bound.lower), upper=float(bound.upper), method=bound.method,
                converged=bool(bound.converged), circular=circular, seconds=seconds)


def _call_row(call: FunctionalCall, target: Any, module: nn.Module | None, layer: _Layer,
              bound: sc.SpectralNorm, seconds: float) -> dict:
    """The row of a linear function the forward calls, bounded over its graph by ``layer``'s
    norm (``module``'s; none for ``F.pad``): named by the call's torch.fx node, after the
    qualified name of the module whose forward makes it (``c1.conv2d``, the ``F.conv2d`` of
    a weight-standardised convolution ``c1``); of type ``F.conv2d`` (``matmul``, ``einsum``
    for those, which ``layer`` bounds as ``F.linear`` and a grouped 1x1 ``F.conv1d``); its
    shapes the call's, its interval the layer's times ``sqrt(call.summed)``, rounded
    outward."""
    node, signal, summed = call
    path = module_path(node)
    function = node.target is target
    shapes = [tuple(n.meta["tensor_meta"].shape[1:]) for n in (signal, node)]
    calls = math.prod(shapes[1]) // math.prod(layer.output_shape) * summed
    nnz = (_nnz(module, layer) if module is not None else int(layer.build("csr").nnz)) * calls
    scale = math.sqrt(summed)
    circular = (_circular_norm(layer, module) if function and module is not None else None)
    return dict(name=f"{path}.{node.name}" if path else node.name,
                type=f"F.{target.__name__}" if function else function_name(node.target),
                input_shape=shapes[0], output_shape=shapes[1], nnz=nnz,
                memory=_csr_bytes(nnz, math.prod(shapes[1]), math.prod(shapes[0])),
                lower=float(bound.lower) if summed == 1 else down(bound.lower * scale),
                upper=float(bound.upper) if summed == 1 else up(bound.upper * scale),
                method=bound.method, converged=bool(bound.converged), circular=circular,
                seconds=seconds)


def _row_name(record: TraceRecord) -> tuple[str, str]:
    """A row's name and type: its module's, or its modules' joined by ``+`` (a padding
    module and the convolution folded with it: ``"pad+conv"``, ``"ReflectionPad2d+Conv2d"``)."""
    parts = row_parts(record)
    return "+".join(p.name for p in parts), "+".join(_kind(p.module) for p in parts)


def _row_label(record: TraceRecord, batchnorm: TraceRecord | None) -> str:
    """A row's layer, for errors: ``layer '3' (Conv2d)``."""
    name, kind = _row_name(record)
    if batchnorm is not None:
        name, kind = f"{name}+{batchnorm.name}", f"{kind}+{_kind(batchnorm.module)}"
    return f"layer {name!r} ({kind})"


def _same_layer(record: TraceRecord, batchnorm: TraceRecord | None) -> tuple:
    """What makes two rows one layer: the same modules (a module called several times, as an
    unrolled or recurrent network does) on the same shapes; their bound is computed once."""
    parts = (*row_parts(record), *(() if batchnorm is None else (batchnorm,)))
    return (tuple(id(p.module) for p in parts), tuple(record.input_shape),
            tuple(parts[-1].output_shape))


def _report_rows(todo: list, workers: int | Callable, kwargs: dict,
                 ) -> Generator[tuple[int, dict], None, None]:
    """``(i, row)`` for every layer of ``todo``, as each finishes.

    One worker: in turn, each layer's work on every core. More: the convolutions' norms and
    circular norms on :func:`sparseconv.spectral_norms`' worker processes, the costliest
    first; meanwhile the other layers' (explicit sparse matrices, quick) here. A layer called
    again on the same shapes (:func:`_same_layer`) has its reading checked and its first
    call's norms, not computed twice.
    """
    first: dict[tuple, int] = {}  # each distinct layer's first row
    owner: list[int] = []  # each row's layer's first row
    again: dict[int, list[int]] = {}  # a first row's later calls
    for i, (record, batchnorm) in enumerate(todo):
        owner.append(first.setdefault(_same_layer(record, batchnorm), i))
        if owner[i] != i:
            again.setdefault(owner[i], []).append(i)
    if workers == 1:
        norms: dict[int, tuple[sc.SpectralNorm, float | None]] = {}
        for i, (record, batchnorm) in enumerate(todo):
            start = time.perf_counter()
            with naming(_row_label(record, batchnorm)):
                row, layer = _prepared_row(record, batchnorm)
                known = owner[i]
                if known == i:
                    norms[i] = (_layer_norm(layer, label=f"lipschitz_report: "
                                            f"{_row_label(record, batchnorm)}", **kwargs),
                                _circular_norm(layer, record.module))
            yield i, _finished_row(row, layer, *norms[known], time.perf_counter() - start)
        return
    prepared, convolutions, options, index = [], [], [], []
    for i, (record, batchnorm) in enumerate(todo):
        start = time.perf_counter()
        with naming(_row_label(record, batchnorm)):
            row, layer = _prepared_row(record, batchnorm)
        prepared.append((row, layer, time.perf_counter() - start))
        if layer.conv is not None and owner[i] == i:
            weight, shape, conv_kwargs = layer.conv
            convolutions.append(dict(weight=weight, input_shape=shape, **conv_kwargs))
            # method="exact" becomes "auto" where it does not apply, as in turn
            options.append({key: value for key, value in _layer_options(layer, kwargs).items()
                            if key != "executor"})
            index.append(i)

    def finished(i: int, bound: sc.SpectralNorm, circular: float | None,
                 seconds: float) -> Generator[tuple[int, dict], None, None]:
        for j in (i, *again.get(i, ())):  # the layer's first row, then its later calls'
            row, layer, took = prepared[j]
            yield j, _finished_row(row, layer, bound, circular, took + seconds * (j == i))

    layers, costs = checked_layers(convolutions, "auto", kwargs.get("method") == "exact" or
                                   kwargs.get("relative_width") is not None)
    runs = norms_as_done(_norm_and_circular_task, layers, costs, options, workers,
                         lambda j: _row_label(*todo[index[j]]))
    try:
        for i, (_, layer, _) in enumerate(prepared):  # the workers run meanwhile
            if layer.conv is None and owner[i] == i:
                start = time.perf_counter()
                with naming(_row_label(*todo[i])):
                    bound = _layer_norm(layer, label=f"lipschitz_report: "
                                        f"{_row_label(*todo[i])}", **kwargs)
                yield from finished(i, bound, _circular_norm(layer, todo[i][0].module),
                                    time.perf_counter() - start)
        for j, ((bound, missed), circular), seconds in runs:
            warn_missed(missed, f"lipschitz_report: {_row_label(*todo[index[j]])}")
            twin = _has_periodic_twin(todo[index[j]][0].module)  # (Linear: computed, unshown)
            yield from finished(index[j], bound, circular if twin else None, seconds)
    finally:
        runs.close()
