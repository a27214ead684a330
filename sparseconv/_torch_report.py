"""The Lipschitz report: certified spectral norms of every linear layer of a network.

:func:`lipschitz_report` traces the model (:func:`sparseconv._torch_trace.trace`), optionally
pairs each BatchNorm with the convolution whose output it normalizes, bounds every layer's norm
(:func:`sparseconv._torch_module._layer_norm`) and multiplies the bounds with the activations'
Lipschitz constants, rounded up (:mod:`sparseconv._torch_chain`: the network's bound).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import torch
from torch import nn

from sparseconv._caller import outside_level
from sparseconv._report_table import LipschitzReport
from sparseconv._spectral_norm import DEFAULT_TOL, checked_options, checked_relative_width
from sparseconv._torch_activations import (
    NORM_REASON,
    sample_norm_slope,
    slope_text,
    warn_below_measured,
    warn_below_slope,
)
from sparseconv._torch_chain import (
    _activation_constant,
    _chain_break,
    _check_constants_used,
    _given_constants,
    _is_sequential,
    _low_precision,
    _max_pool_constant,
    _mixes_samples,
    _not_sequential,
    _over_the_graph,
    _product_up,
    _state_changes,
    _torch_class,
    _unknown,
    _untrusted,
    _versions,
)
from sparseconv._torch_fold import _fold_padding
from sparseconv._torch_graph_rules import Given
from sparseconv._torch_kept import given_leaves
from sparseconv._torch_kinds import (
    _CONV,
    _CONV_T,
    _PADS,
    _RUNNING_NORMS,
    is_leaf,
    is_reshape,
    is_torch_class,
)
from sparseconv._torch_probe import (
    fx_trace,
    leaves_the_model,
    outside_inference_mode,
    probe_input,
    probe_like,
    version,
)
from sparseconv._torch_report_rows import _report_rows
from sparseconv._torch_script import _kind
from sparseconv._torch_sizes_tracer import SizesTracer
from sparseconv._torch_trace import (
    TraceRecord,
    _checked,
    _first_tensor,
    _script_trace,
    compiled_reason,
    padded_record,
    trace,
    unwrapped,
)
from sparseconv._validation import as_bool, workers_or_map


def _progress_callback(progress, total: int) -> tuple[Callable | None, Callable[[], None]]:
    """The per-layer callback ``(done, total, name)`` that ``progress`` asks for, and a closer."""
    if progress is False or progress is None:
        return None, lambda: None
    if callable(progress):
        return progress, lambda: None
    try:  # optional: by name, so that neither an import nor type stubs are required
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        def line(done, total, name):
            print(f"lipschitz_report: {done}/{total} {name}", file=sys.stderr, flush=True)
        return line, lambda: None
    bar = tqdm(total=total, desc="lipschitz_report", unit="layer", file=sys.stderr)

    def update(done, total, name):
        bar.total = total  # (grown by the linear functions the bound over the graph bounds)
        bar.set_postfix_str(name, refresh=False)
        bar.update(done - bar.n)
    return update, bar.close


class _Progress:
    """``progress(done, total, name)`` over the report's rows: the layers', then those of the
    linear functions the forward calls (``F.conv2d``, ``F.adaptive_avg_pool2d``), which the
    bound over the graph finds and bounds one by one, each growing ``total`` (a new user's
    trial: they were never counted). :meth:`close` ends a progress bar."""

    def __init__(self, progress, total: int) -> None:
        self.callback, self.close = _progress_callback(progress, total)
        self.done, self.total = 0, total

    def row(self, name: str, found: bool = False) -> None:
        """A row done: a layer's, or (``found``) one the graph's walk found."""
        self.done += 1
        self.total += found
        if self.callback is not None:
            self.callback(self.done, self.total, name)


@dataclasses.dataclass
class _Folds:
    """What :func:`_trace_with_folds` saw: per BatchNorm call, whether its input is the very
    tensor the last convolution returned (``batchnorms``); per convolution call, whether its
    input is the very tensor the last padding module returned (``paddings``); each
    unmodified and read by nothing else."""

    batchnorms: list[bool]
    paddings: list[bool]


def _trace_with_folds(model: nn.Module, input_shape: tuple[int, ...], chain: bool,
                      ) -> tuple[list[TraceRecord], _Folds]:
    """:func:`trace`, and which BatchNorms and paddings it may fold (:class:`_Folds`): those
    whose input is the very tensor the module before returned (a convolution, for a
    BatchNorm; a padding module, for a convolution), unmodified and read by nothing else (so
    that folding the two is exact, and hides no tensor the forward reads).

    The tensor's version counter rules out in-place operations in between (``ReLU(inplace=
    True)``, ``x.relu_()``), which return the same tensor object. In a model that is no
    ``chain``, the first module's output may be read elsewhere too (``bn(y) + y``): its
    torch.fx graph must show the second's input as the output of one call of the first that
    nothing else reads (:func:`_read_elsewhere`), as the bound over the graph requires. A
    TorchScript model answers from its graph (:func:`sparseconv._torch_script.script_calls`).
    """
    if isinstance(model, torch.jit.ScriptModule):
        records, (batchnorms, paddings) = _script_trace(
            model, _checked(model, input_shape, False), strict=not chain)
        return records, _Folds(batchnorms, paddings)
    last: list = [None, -1]  # the last convolution's output and its version
    padded: list = [None, -1]  # the last padding module's
    folds = _Folds([], [])
    names: dict[str, list[str]] = {"batchnorms": [], "paddings": []}  # each call's module

    def reads(inputs, made: list) -> bool:  # (an inference tensor's version: unknown)
        tensor = _first_tensor(inputs)
        return (tensor is not None and tensor is made[0] and made[1] is not None
                and version(tensor) == made[1])

    def after_pad(module, inputs, output):
        padded[:] = [output, version(output)]

    def after_conv(module, inputs, output, name=""):
        folds.paddings.append(reads(inputs, padded))
        names["paddings"].append(name)
        last[:] = [output, version(output)]

    def after_linear(module, inputs, output):  # (a BatchNorm1d folds into it on (N, F):
        last[:] = [output, version(output)]  # _layers_to_report, by its record's shape)

    def after_batchnorm(module, inputs, output, name=""):
        folds.batchnorms.append(reads(inputs, last))
        names["batchnorms"].append(name)

    handles = []
    for name, m in model.named_modules():
        if not is_leaf(m):
            # (leaves only: they alone are records, each consuming its flag; a BatchNorm
            # subclass with a child module passed its flag on to the next one, a review found)
            continue
        hook: Any = (functools.partial(after_conv, name=name) if isinstance(m, (*_CONV, *_CONV_T))
                     else functools.partial(after_batchnorm, name=name)
                     if isinstance(m, _RUNNING_NORMS) else after_pad
                     if isinstance(m, _PADS) else after_linear
                     if isinstance(m, nn.Linear) else None)
        if hook is not None:
            hook.sparseconv = True  # (its own hook: not the user's, see _untrusted)
            handles.append(m.register_forward_hook(hook))
    try:
        records = trace(model, input_shape)
    finally:
        for handle in handles:
            handle.remove()
    # the calls of the forward that ran to the end (trace runs it again on zeros where the
    # probe failed, a second set of calls)
    for key, kinds in (("batchnorms", _RUNNING_NORMS), ("paddings", (*_CONV, *_CONV_T))):
        ran = sum(isinstance(r.module, kinds) for r in records)
        flags, called = getattr(folds, key), names[key]
        flags[:], called[:] = flags[len(flags) - ran:], called[len(called) - ran:]
        if not chain and any(flags):
            shared = _read_elsewhere(model, input_shape, (*_CONV, *_CONV_T, nn.Linear)
                                     if key == "batchnorms" else _PADS)
            calls = [(name, called[:i].count(name)) for i, name in enumerate(called)]
            flags[:] = [flag and call not in shared for flag, call in zip(flags, calls)]
    return records, folds


def _read_elsewhere(model: nn.Module, shape: tuple[int, ...],
                    sources: tuple[type, ...]) -> set[tuple[str, int]]:
    """The module calls, as ``(module name, call index)``, whose input in ``model``'s torch.fx
    graph is not the output of a call of a module of ``sources`` (a convolution, before a
    BatchNorm; a padding module, before a convolution) that it alone reads, as the bound over
    the graph requires of a fold (a new user's trial: ``bn(y) + y`` was folded, the row of
    ``y``'s convolution was lost and the bound over the graph refused the fold). Traced as the
    bound over the graph traces it (a review: torch.fx's own tracer failed on a forward that
    reads a size, where the bound's succeeded, and refused the fold this approved). Empty
    where the model cannot be traced so (its records are all there is; it gets no bound over
    the graph)."""
    try:
        graph = fx_trace(model, SizesTracer(probe_input(model, shape, batch=2).clone))
    except Exception:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return set()
    counted: dict[str, int] = {}
    shared = set()
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        name = str(node.target)
        counted[name] = counted.get(name, 0) + 1
        source = node.args[0] if node.args else node.kwargs.get("input")
        # (a review: through an Identity or Dropout, `bn(id(y)) + y` was folded, the
        # Identity's output being read by the BatchNorm alone)
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module"
                and isinstance(model.get_submodule(str(source.target)), sources)
                and len(source.users) == 1):
            shared.add((name, counted[name] - 1))
    return shared


def _layers_to_report(records: list[TraceRecord], folds: _Folds, fold: bool,
                      fold_pads: bool = False,
                      ) -> list[tuple[TraceRecord, TraceRecord | None]]:
    """The linear records that get a row, each with the BatchNorm folded into it, if any
    (``fold``), and a convolution with the padding module before it as one record
    (``fold_pads``: a :class:`~sparseconv._torch_trace.PaddedRecord`, where
    :func:`~sparseconv.torch.fold_padding` can fold the two)."""
    todo: list[tuple[TraceRecord, TraceRecord | None]] = []
    calls, padded = iter(folds.batchnorms), iter(folds.paddings)
    # the rows of the last convolution's call and of the last padding module's, which the
    # hooks saw (None where that call has no row of its own: a subclass, a forward set on
    # the instance; a review: a convolution was folded with an earlier padding, and, behind
    # a padding folded into its convolution at that padding's row, a BatchNorm with the
    # last row of a convolution, which was not the last called)
    last_conv: int | None = None
    last_pad: int | None = None
    for record in records:  # (a layer called without the batch axis: refused by trace)
        # one flag per BatchNorm call, linear or not (a review: a BatchNorm without running
        # statistics, skipped unconsumed, passed its flag on, and the next BatchNorm was
        # folded into a convolution across a ChannelShuffle: a bound 100 times too small);
        # one per convolution call alike
        folds_here = next(calls) if isinstance(record.module, _RUNNING_NORMS) else False
        convolution = isinstance(record.module, (*_CONV, *_CONV_T))
        pads_here = next(padded) if convolution else False
        if not record.linear or is_reshape(record.module):
            if convolution:
                last_conv = None
            if isinstance(record.module, _PADS):
                last_pad = None
            continue
        if pads_here and fold_pads and last_pad is not None:
            # its input is the last padding module's output: that padding's row, with it
            pad = todo[last_pad][0]
            try:
                module = _fold_padding(pad.module, record.module)
            except (TypeError, ValueError):  # (a padding no convolution's: two rows)
                module = None
            if module is not None:
                todo[last_pad] = (padded_record(pad, record, module), None)
                last_conv, last_pad = last_pad, None
                continue
        if folds_here and fold and last_conv is not None and todo[last_conv][1] is None:
            # its input is the last convolution's output: that convolution's row, unpaired
            todo[last_conv] = (todo[last_conv][0], record)
            continue
        if isinstance(record.module, _PADS):
            last_pad = len(todo)
        if convolution or isinstance(record.module, nn.Linear) and len(
                record.output_shape) == 1:  # (a Linear on (N, F): a BatchNorm1d folds in)
            last_conv = len(todo)
        elif isinstance(record.module, nn.Linear):
            last_conv = None
        todo.append((record, None))
    return todo


_SPECTRAL_NORM_OPTIONS = ("method", "tol", "relative_width", "executor")


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@outside_inference_mode
@leaves_the_model
def lipschitz_report(model: nn.Module, input_shape: Sequence[int], *,
                     assume_chain: bool = False, fold_batchnorm: bool = False,
                     fold_padding: bool = False,
                     progress: bool | Callable[[int, int, str], object] = False,
                     lipschitz_constants: Mapping[str, float] | None = None,
                     workers: int | Callable | Executor | None = 1,
                     **kwargs: Any) -> LipschitzReport:
    """Certified spectral norms of every linear layer of a network, and their product.

    The model is traced (:func:`trace`, eval mode required); every linear layer that is not a
    reshape (``Flatten``, ``Unflatten``, ``Identity``, an empty ``Sequential``, ``Dropout``:
    norm 1) gets a row: shapes, the nnz and memory of its matrix (counted without building it
    for convolutions), the certified interval ``[lower, upper]`` of :func:`spectral_norm` with
    its method, the exact norm of the same kernel with circular padding beside it (None where a
    stride does not divide the input size: no periodic twin), and the time taken. A module
    called several times (an unrolled or recurrent network) has a row per call under its one
    name, its norms computed once per distinct input shape (the later calls' time: the check of
    their reading). In the bound over the graph (below), each linear function the forward calls
    with constant arguments gets a row too (its norm computed once per distinct weight and
    shapes, by value), among the modules' in the order the forward runs them (``F.conv2d`` by a
    weight the forward computes, as a weight-standardised convolution's; ``F.linear``,
    ``F.avg_pool2d``, ``F.interpolate``, ``F.pad``, ``F.batch_norm`` by running statistics, ``x
    @ W``, ``torch.einsum``): named by its torch.fx node, after the module whose forward makes
    the call (``"c1.conv2d"``, in a TorchScript model too), of type ``"F.conv2d"``
    (``"matmul"``, ``"einsum"``); the calls the walk reached, where it stops short of the
    output.

    Activations with a known Lipschitz constant (:mod:`sparseconv._torch_activations`):
    ``ReLU``, ``ReLU6``, ``Hardtanh``, ``Tanh``, ``Softsign``, ``CELU``, ``LogSigmoid``,
    ``Tanhshrink``, ``Softshrink`` (1), ``LeakyReLU``, ``ELU`` and ``PReLU`` (``max(1,
    |slope|)``), ``Sigmoid`` (1/4), ``Hardsigmoid`` (1/6), ``Hardswish`` (3/2), ``SELU``
    (1.7581), ``GELU`` (1.13), ``SiLU`` (1.1), ``Mish`` (1.089). Max pooling
    (``MaxPool1d/2d/3d``, ``AdaptiveMaxPool1d/2d/3d``, in a TorchScript model too;
    ``F.max_pool1d/2d/3d`` in the bound over the graph): ``sqrt(w)``,
    ``w`` the most pooling windows that read one input entry on the traced shapes (``w = 1``
    for windows that do not overlap, VGG's 2x2 stride 2: constant 1; ``w = 4`` for ResNet's
    3x3 stride 2 with padding 1: constant 2) -- its Lipschitz constant in the 2-norm,
    attained (each output moves by at most the largest change in its window). For a chain (a
    nested ``nn.Sequential``) the network bound multiplies the layers' upper bounds and these
    constants, rounded up. For any other model it follows the
    model's torch.fx graph (:mod:`sparseconv._torch_graph_bound`): each node's bound is its
    input's times the layer's or activation's, a residual sum ``x + f(x)`` adds its branches'
    bounds, a concatenation adds them in quadrature (as do several outputs: a tuple, list,
    dict or namedtuple of tensors is bounded as one map to all of them; a tuple cut by
    ``chunk``, ``split`` or ``unbind`` and returned whole counts as its tensor), a reshape,
    slice or multiplication by a number keeps or scales them, a linear function called with
    constant arguments (``F.avg_pool2d``, ``F.interpolate``, ..., ``x @ W`` by a constant
    matrix, and ``torch.einsum`` of the signal and a constant) multiplies them by its
    certified norm -- computed exactly and rounded up once, so
    ResNets and U-Nets get a certified Lipschitz bound too; a node no rule covers (a product
    of two signals, say) is named in ``reason`` instead.

    A TorchScript model (``torch.jit.script`` or ``torch.jit.trace``, as ``torch.jit.load``
    returns it) gets the rows of the eager model it was compiled from: :func:`trace` reads
    its layers from its graph, and BatchNorm folding asks the graph whether the BatchNorm's
    input is the convolution's output value, untouched by in-place operations. Its network
    bound is the product where its graph is the chain of its calls (a scripted
    ``nn.Sequential``, or a forward of its own in which each call reads the previous one's
    output, through reshapes, ReLU and tanh at most); otherwise the bound over its graph,
    rebuilt as a torch.fx graph of the rows' modules and the torch functions the forward runs
    between them (residual sums, concatenations, reshapes, ...), or ``reason`` names what it
    cannot follow (``runs aten::sin outside its layers``).

    Parameters
    ----------
    model : torch.nn.Module
        An eager module, or a ``torch.jit.ScriptModule``.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.
    assume_chain : bool, optional
        Give a model that is not a (nested) ``nn.Sequential`` the product of its layers'
        bounds, assuming its forward is the sequential chain of the traced layers (hooks do
        not see residual sums, concatenations or functional calls: for those the product is
        no bound), instead of the bound over its torch.fx graph. By default a
        ``nn.Sequential`` gets the product and any other model the bound over its graph (or
        none, with the reason). A ``RuntimeWarning`` names an operation the forward runs on
        the signal outside its layers, where its graph (torch.fx's, or a TorchScript
        model's) shows one: there the product is no bound.
    fold_batchnorm : bool, optional
        Fold each eval-mode BatchNorm into the convolution whose output tensor it normalizes
        (seen by forward hooks; :func:`fold_batchnorm`): one row ``"conv+bn"`` for the pair,
        whose norm can be much smaller than the product of the two; a ``BatchNorm1d`` into
        the ``Linear`` before it where that Linear is called on
        ``(N, features)`` (its output features normalized: ``"fc+bn"``, the norm of
        ``diag(s) W``; on ``(N, C, L)`` the BatchNorm normalizes ``C``, and the two keep
        their rows). Other BatchNorms keep their own rows, as does a pair whose first
        module's output the model reads elsewhere too (``relu(bn(y)) + y``, in its torch.fx
        graph).
    fold_padding : bool, optional
        Fold each padding module (``ReflectionPad2d``, ``ZeroPad2d``, ...) into the
        convolution that reads its output tensor (:func:`fold_padding`): one row
        ``"pad+conv"`` for the pair, the padded convolution, whose norm is below the
        product of the two rows' -- by a factor of up to 2 in 2-D (1.73-1.78 on CycleGAN's
        reflect-padded layers). Pairs :func:`fold_padding` refuses (a padding of the two sides
        of an axis by different amounts, a cropping, a convolution that pads too, but for
        zeros or replicate both) keep their rows, as does a padding whose output the model
        reads elsewhere too (in a TorchScript model, as its graph shows).
    progress : bool or callable, optional
        ``True``: a progress bar on stderr (tqdm if it is installed, else one line per
        layer). A callable is called after each layer as ``progress(done, total, name)``;
        then, where the bound is over the graph, after each linear function the forward
        calls (``F.conv2d``, ``F.adaptive_avg_pool2d``: rows found as the graph is walked,
        each adding one to ``total``).
    lipschitz_constants : mapping of str to float, optional
        The Lipschitz constants of other activations (or others for the known: one more than
        1% below the known constant, which is tight, is used and warned of), by
        module name (``"1"``, ``"layer1.0.act"``) or class name (``"Softplus"``; a name wins
        over a class), for example ``{"Softplus": 1.0}``. A module of your own class without
        submodules (a ``Swish`` computing ``x * torch.sigmoid(x)``) given its constant is
        called whole in the graph, an activation of that constant: in a scripted model; in
        an eager model where each call reads its one argument and constants alone, leaves
        nothing else to the rest of the forward and runs torch's own operations, the ones the
        module alone runs from the model's state (torch.fx shows it), else its forward is
        followed, its constant unused and warned of. In the bound over the graph, of a call
        ``forward`` makes on the signal too, one at a time, by its torch.fx node's name
        as ``reason`` names it (``"softplus"``, then ``"softplus_1"`` for the next call; a
        module's name or class wins), taken entry by entry (a broadcast signal counts its
        copies). Your constants, not certified here: the network bound is as good as they
        are (one given for a module more than 1% below its slope measured on a copy of it,
        the change of its output over that of its input along directions autograd finds,
        in the model's dtype, next to inputs of ones, zeros and values spread over [-8, 8],
        is warned of where the bound rests on it), and the report lists them, with the known
        constants of the functions the bound over the graph used (``sigmoid (sigmoid(),
        0.25)``). A key that names no traced
        non-linear module nor its class nor such a call (a typo, a linear layer, a call the
        bound has a rule for: a linear function's norm, a known activation, a sum) is
        refused.
    workers : int, map-like callable or concurrent.futures.Executor, optional
        Processes for the convolutions' norms, as :func:`sparseconv.spectral_norms` (a Dask
        client's ``get_executor()`` spreads them over a cluster): ``1``
        (the default, also for ``None``) bounds one layer after the other, each on every
        core; ``2`` gives two worker processes a layer at a time each, on one core, the
        costliest first (ResNet-18: about half the time on two cores); ``-1``: one per core.
        Rows keep the network's order; ``seconds`` is each row's own time, in its worker;
        ``progress`` is called as layers finish, so with several workers its ``name`` is the
        layer just finished, in no particular order.
    **kwargs
        Passed to :func:`sparseconv.spectral_norm` (``method``, ``tol``, ``relative_width``,
        ``executor``). ``relative_width=1e-3``: the whole-Gram certificate runs on the rows
        whose interval is wider, and on those only (far less than ``method="exact"`` on every
        row; a ``RuntimeWarning`` names a row still wider, and why). ``executor``: any
        ``concurrent.futures.Executor``, for example a Dask client's ``get_executor()``, runs
        each layer's per-frequency work.

    Returns
    -------
    LipschitzReport

    Raises
    ------
    ValueError
        A model in training mode; a ``method``, ``tol`` or ``relative_width`` that
        :func:`sparseconv.spectral_norm` refuses (checked before any layer, named as the
        argument, not as a layer's); a ``lipschitz_constants`` key that names no traced
        non-linear module nor its class; an ``input_shape`` on which the model's forward
        fails (the error is a RuntimeError too, as earlier versions raised it; its batch
        included, it says so).
    TypeError
        A ``model`` that is no ``torch.nn.Module`` (a state_dict, say); ``assume_chain``,
        ``fold_batchnorm`` or ``fold_padding`` not a bool; a TorchScript model whose graph
        hides a layer (see :func:`trace`); a keyword argument other than ``method``, ``tol``,
        ``relative_width`` and ``executor``; ``workers`` not an int, None, a callable or an
        ``Executor``; a ``tol`` that
        is not a real number; a linear module of a row (or a BatchNorm folded into it) with
        a forward hook or pre-hook, or a global one, which may change what it computes (the
        weight recomputations of ``weight_norm``, ``spectral_norm`` and pruning excepted); a
        hook on another module only withholds the network bound, saying why.
    KeyboardInterrupt
        Re-raised when the run is interrupted (Ctrl-C), with the rows finished so far as the
        exception's ``report`` attribute: a :class:`LipschitzReport` with ``complete=False``
        and no network bound. The layer running at the interrupt is left out.

    Warns
    -----
    UserWarning
        A constant of ``lipschitz_constants`` below the module's (or the call's) own: a
        normalization's slope at a sample of zero variance (modules, and ``F.layer_norm``,
        ``F.group_norm``, ``F.rms_norm``, ``F.instance_norm`` called in a forward), or a
        known activation's or max pooling's constant by more than 1% (the bound uses
        yours). A constant given for a module of your class in an eager model whose forward
        the bound over the graph follows (unused), and why (it reads a value another module
        left, it calls a normalization by each sample's statistics...).
    RuntimeWarning
        ``assume_chain=True`` on a model whose forward is no chain (the product is given,
        and may be no bound); a row wider than ``relative_width``, and why.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(2 * 6 * 6, 4)).eval()
    >>> report = sct.lipschitz_report(model, (1, 6, 6))
    >>> [row["name"] for row in report]
    ['0', '3']
    >>> bool(report.network_upper >= report.rows[0]["upper"] * report.rows[1]["upper"])
    True
    >>> report.activations
    ('1 (ReLU)',)
    """
    assume_chain = as_bool(assume_chain, "assume_chain")  # ("False" is true: a new user's
    fold_batchnorm = as_bool(fold_batchnorm, "fold_batchnorm")  # trial, a bound too low)
    fold_padding = as_bool(fold_padding, "fold_padding")
    workers = _checked_options(progress, workers, kwargs)
    given = _given_constants(lipschitz_constants)
    compiled = compiled_reason(model)  # (its layers are the model's: rows, and no bound)
    model = unwrapped(model)
    shape = _checked(model, input_shape, None)  # no allow_train here: a report needs eval
    kept = given_leaves(model, given)  # (the modules of the user's, called whole, given
    # their constants)
    versions = _versions(model)  # (its forward must not change them: _untrusted)
    if isinstance(model, torch.jit.ScriptModule):  # its graph decides, a Sequential's too (a
        # review: a forward hook compiled into a scripted Sequential's graph, 100 * out)
        broken = _chain_break(model)
        chain = broken is None
    else:
        chain = _is_sequential(model)
        broken = None if chain else _chain_break(model, shape)
    records, folds = _trace_with_folds(model, shape, chain)
    if _untrusted(model, versions, records):  # hooks, an instance's forward, weights changed
        # by the forward, a tensor subclass or a mode: the rows read the modules as they are,
        # and the network bound is withheld, saying why; their traced outputs are no check of
        # that reading
        records = [dataclasses.replace(r, sample=None) for r in records]
    todo = _layers_to_report(records, folds, fold_batchnorm, fold_padding)
    # (a key refused before a constant is warned of: a review found a warning raised first)
    functions = _check_constants_used(given, records, model)
    activations, constants, unknown, known, claims = _activation_constants(records, given)
    followed: dict[str, str] = {}  # (the modules given constants whose forward is followed)
    counter = _Progress(progress, len(todo))  # (a bar open until the graph's rows are done)
    try:
        rows = _all_rows(todo, workers, kwargs, counter, activations, chain)
        reason, bound = "", None
        untrusted = compiled or _untrusted(model, versions, records) or _low_precision(model)
        if untrusted:
            reason = (_unknown(unknown) + "; and " if unknown else "") + untrusted
        elif unknown or not (chain or assume_chain):
            reason = _unknown(unknown) if unknown else _no_chain(model, broken)
            assumed: list[str] = []
            ordered: list[dict] = []  # (with the rows of the linear functions it calls)
            bound, why = _over_the_graph(model, shape, records, todo, rows, known, kwargs,
                                         functions, assumed, ordered, kept, counter.row,
                                         followed)
            rows = ordered or rows
            if followed:  # (two reviews: called whole untraced, such modules read what
                # others left, bounds 1e4 below the truth; a new user's trial: listed, unused,
                # unsaid)
                labels = {name: f"{name} ({_kind(model.get_submodule(name))}" for name in followed}
                warnings.warn("lipschitz_constants gives " + "; ".join(
                    f"{labels[name]}), of a class of yours: its constant unused, as the bound "
                    f"over the graph follows its forward (torch.fx), which {why_}"
                    for name, why_ in followed.items()), UserWarning,
                    stacklevel=outside_level(torch))
                activations = [a for a in activations if not any(
                    a.startswith(f"{label},") for label in labels.values())]
            if bound is not None:
                reason = ""
                activations.extend(assumed)
                mixes = _mixes_samples(model, shape, "the bound over its graph")
                if mixes:  # (a constant given for a call or module that mixes the samples)
                    bound, reason = None, mixes
            else:
                reason += f"; nor is there a bound over its graph: {why}"
    finally:
        counter.close()
    over_graph = bound is not None
    warning = ""
    if bound is None and not reason:  # a chain's product, of the map of one sample only,
        # and of every call's
        reason = _mixes_samples(model, shape) or _state_changes(model, shape)
    if bound is None:
        bound = _product_up([row["upper"] for row in rows] + constants)
        if assume_chain and broken and not reason:  # (the product is the bound given; a new
            # user's trial: the warning alone left the report and its export without it)
            warning = (f"assume_chain=True: the product of the layers' bounds is given, but "
                       f"{_kind(model)}'s forward {broken}, so the product may be no bound of "
                       "it")
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
    if not reason:  # the constants given for modules of the user's classes that the bound
        # rests on, against their slopes measured (two reviews: measured also where the bound
        # was withheld, followed the module's forward, or read a traced module's operations,
        # the warning then a contradiction)
        measured: dict = {}
        dtype = probe_like(model)[0] or torch.get_default_dtype()
        for name, label, constant, module, module_shape in claims:
            if not over_graph or is_torch_class(module) or (
                    name in kept and name not in followed):
                warn_below_measured(label, constant, module, module_shape, dtype, measured)
    return LipschitzReport(tuple(rows), None if reason else bound, tuple(activations),
                           chain, reason, over_graph=over_graph, warning=warning)


def _checked_options(progress, workers, kwargs: dict) -> int | Callable:
    """:func:`lipschitz_report`'s ``progress``, ``workers`` (returned, as
    :func:`workers_or_map` reads it) and its options for ``spectral_norm``, checked before
    the model is traced, and not blamed on its first layer."""
    if not (isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable (done, total, name), got "
                        f"{progress!r}")
    workers = workers_or_map(workers)
    if workers != 1 and kwargs.get("executor") is not None:
        raise ValueError("pass executor= (each layer's per-frequency work) or workers= (whole "
                         f"layers on worker processes), not both; got workers={workers}")
    unknown_options = sorted(set(kwargs) - set(_SPECTRAL_NORM_OPTIONS))
    if unknown_options:
        raise TypeError(f"lipschitz_report() got an unexpected keyword argument "
                        f"{unknown_options[0]!r}; it passes {', '.join(_SPECTRAL_NORM_OPTIONS)} "
                        "to spectral_norm")
    method, _ = checked_options(kwargs.get("method", "auto"), kwargs.get("tol", DEFAULT_TOL))
    checked_relative_width(kwargs.get("relative_width"), method)
    return workers


def _weight_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of a module's weight, which its input shares (an ``RMSNorm(eps=None)``'s
    ``eps`` is that dtype's), or None."""
    weight = getattr(module, "weight", None)
    return weight.dtype if isinstance(weight, torch.Tensor) else None


def _activation_constants(records: list[TraceRecord], given: Mapping[str, float],
                          ) -> tuple[list[str], list[float], list[str],
                                     dict[int, float | Given], list[tuple]]:
    """The traced modules that are no linear layer: ``(activations, constants, unknown,
    known)``, the labels of those with a Lipschitz constant (given by name or type, known,
    or max pooling's) and the constants, the labels of those without one, and each
    constant by ``id(record)`` (a :class:`~sparseconv._torch_graph_rules.Given` one where
    the caller gave it), and ``claims``: ``(name, label, constant, module, input_shape)`` of
    each module given a constant that nothing here knows (a module of the user's class),
    whose slope :func:`lipschitz_report` measures where its bound rests on it."""
    activations, constants, unknown = [], [], []
    known: dict[int, float | Given] = {}
    said: dict[tuple[str, str], str] = {}  # each normalization's reason and kind, by the
    # first module it names
    claims: list[tuple] = []  # the modules of the user's classes given constants
    for record in records:
        if record.linear:
            continue
        constant = given.get(record.name, given.get(_kind(record.module)))
        yours = constant is not None  # (said so in the label, with its value as given)
        if constant is None:
            constant = _activation_constant(record.module)
        if constant is None:
            constant = _max_pool_constant(record)
        label = f"{record.name or '(model)'} ({_kind(record.module)}"  # (a trial: " (ReLU)")
        slopes = sample_norm_slope(record.module, record.input_shape, _weight_dtype(record.module))
        # (a new user's trial: InstanceNorm2d)
        if constant is None:
            why = "" if slopes is None else f": {NORM_REASON}{slope_text(*slopes)}"
            if not why and "MaxPool" in (_torch_class(record.module) or ""):  # (a review:
                # a window of padding alone was refused without a word of why)
                why = (": a window of padding alone, whose output is -inf whatever the input, "
                       "or windows read otherwise than PyTorch ran them")
            # (a new user's trial: CycleGAN's nine InstanceNorms said it nine times, 3 KB;
            # by kind too, a review: a GroupNorm "as" a LayerNorm of the same slope)
            key = (_kind(record.module), why)
            if said.get(key) == record.name:  # (a module called twice: listed once)
                continue
            unknown.append(label + (f": as {said[key]!r})" if key in said else why + ")"))
            if why and key not in said:
                said[key] = record.name
        else:
            if yours:
                warn_below_slope(label + ")", constant, slopes)
            ours = _activation_constant(record.module) if yours else None
            ours = _max_pool_constant(record) if yours and ours is None else ours
            if yours and ours is None and slopes is None:  # (a module of the user's class:
                # its slope measured; a scripted LayerNorm2d given 50 bounded a map whose
                # slope reaches 316, without a word)
                claims.append((record.name, label + ")", constant, record.module,
                               record.input_shape))
            # (below by more than the rounding of the known constants, GELU's 1.13 for
            # 1.1289: a new user's trial gave ReLU 0.1, and got 0.126 for a model whose
            # ratios reach 0.270, without a word)
            if ours is not None and constant < ours * (1 - 1e-2):
                warnings.warn(
                    f"lipschitz_constants gives {label}) the constant {constant!r}, below its "
                    f"Lipschitz constant, {ours:.6g} (sparseconv's): the network bound holds "
                    "only if yours is one", UserWarning, stacklevel=outside_level(torch))
            known[id(record)] = Given(constant) if yours else constant
            constants.append(constant)
            activations.append(label + (f", {constant!r} given)" if yours else
                                        ")" if constant == 1 else f", {constant:g})"))
    return activations, constants, unknown, known, claims


def _all_rows(todo: list, workers: int | Callable, kwargs: dict, progress: _Progress,
              activations: list[str], chain: bool) -> list[dict]:
    """Every row of ``todo``, in its order, ``progress`` told of each as it is done; an
    interrupt raised with the partial report on it (``interrupt.report``)."""
    found: list[dict | None] = [None] * len(todo)
    done = 0
    rows_found = _report_rows(todo, workers, kwargs)
    try:
        for i, row in rows_found:
            found[i], done = row, done + 1
            progress.row(row["name"])
    except KeyboardInterrupt as interrupt:
        interrupt.report = LipschitzReport(  # type: ignore[attr-defined]
            tuple(row for row in found if row is not None), None, tuple(activations), chain,
            f"interrupted after {done} of {len(todo)} layers", complete=False)
        raise
    finally:
        rows_found.close()  # stops the workers, if any, now
    return [row for row in found if row is not None]


def _no_chain(model: nn.Module, broken: str | None) -> str:
    """Why the product of the layers' bounds is no bound of a model that is no chain."""
    name, module = _not_sequential(model) or ("", model)
    what = f"module {name!r} ({_kind(module)})" if name else _kind(module)
    if isinstance(model, torch.jit.ScriptModule):  # (a Sequential's too)
        return (f"the TorchScript graph of {_kind(model)} is no chain of its layers (its "
                f"forward {broken}), so the product of the layers' bounds is no bound of it")
    # (a new user's trial: a scripted residual model was told to pass assume_chain, whose
    # product then left the identity branch out)
    return (f"{what} is not a nn.Sequential, so the product of the layers' bounds is no "
            "bound of its forward " + (f"(which {broken})" if broken else
                                       "(pass assume_chain=True if that forward is the chain "
                                       "of the traced layers)"))
