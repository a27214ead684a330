"""The network's bound in a Lipschitz report: the product of the layers' bounds and the
activations' Lipschitz constants, over a sequential chain (:func:`_chain_break` says why a model
is not one) or over the model's torch.fx graph (:func:`_over_the_graph`); which activations it
assumes, and the constants the caller gives (:func:`_given_constants`)."""

from __future__ import annotations

import difflib
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

import sparseconv as sc
from sparseconv._caller import outside_level
from sparseconv._memory import MatrixTooLargeError
from sparseconv._pooling import _ceil_extra
from sparseconv._resampling_axes import _adaptive_axis
from sparseconv._torch_activations import module_constant
from sparseconv._torch_calls import MAX_POOL_F, by_keyword, function_name, linear_call_layer
from sparseconv._torch_graph import output_leaves
from sparseconv._torch_graph_bound import graph_bound
from sparseconv._torch_graph_rules import (
    Factor,
    FunctionalCall,
    Given,
    has_rule,
    signal_reads,
)
from sparseconv._torch_kinds import (
    instance_method_reason,
    is_leaf,
    is_torch_class,
    is_torch_module,
    model_hook_reason,
)
from sparseconv._torch_module_spectra import _layer_norm
from sparseconv._torch_patches import replaced_functions
from sparseconv._torch_probe import (
    UNTRACKED,
    UntraceableDefault,
    dispatched,
    error_line,
    fx_trace,
    matches,
    probe_input,
    probe_like,
    version,
)
from sparseconv._torch_report_rows import _call_row
from sparseconv._torch_script import _call_graph, _kind
from sparseconv._torch_script_chain import CHAIN_KEEPING, script_chain_break
from sparseconv._torch_script_graph import script_graph_module
from sparseconv._torch_sizes_tracer import SizesTracer
from sparseconv._torch_state import changes_own_state, restored_state
from sparseconv._torch_trace import TraceRecord, row_parts
from sparseconv._validation import int_tuple, real_number


def _product_up(factors: list[float]) -> float:
    """The product of non-negative numbers, rounded up to a float: in exact rational
    arithmetic, so that no partial product underflows (nine layers of norm 1e-40 multiply to
    1e-360, which float64 flushes to 0: no upper bound) nor overflows."""
    if any(f == 0 for f in factors):
        return 0.0  # a zero layer: the network is constant
    if any(math.isinf(f) for f in factors):
        return math.inf
    return _float_up(math.prod((Fraction(f) for f in factors), start=Fraction(1)))


def _float_up(exact: Fraction) -> float:
    """The smallest float at least ``exact`` (``inf`` beyond the largest)."""
    if exact > Fraction(sys.float_info.max):
        return math.inf
    nearest = float(exact)  # correctly rounded: at most one step below
    return nearest if nearest >= exact else math.nextafter(nearest, math.inf)


def _given_constants(constants: Mapping[str, float] | None) -> dict[str, float]:
    """``lipschitz_constants`` checked: names to finite non-negative floats."""
    if constants is None:
        return {}
    if not isinstance(constants, Mapping):
        raise TypeError(f"lipschitz_constants must be a mapping of module or class names to "
                        f"floats, got {type(constants).__name__}")
    checked = {}
    for name, value in constants.items():
        if not isinstance(name, str):
            raise TypeError(f"lipschitz_constants keys must be module or class names (str), "
                            f"got {name!r}")
        checked[name] = real_number(value, f"lipschitz_constants[{name!r}]", low=0.0)
    return checked


def _versions(model: nn.Module) -> list[int | None]:
    """The version counters of the model's parameters and buffers (None: an inference
    tensor's, which it has not)."""
    return [version(t) for t in (*model.parameters(), *model.buffers())]


def _dispatch_reason(model: nn.Module, records: Sequence[TraceRecord]) -> str:
    """Why a mode, a tensor subclass or a replaced function may change what the model's
    modules compute (a review: a subclass whose ``relu`` was 50 times torch's got a bound of
    1.19 for a map of 14.3), or "": a mode active now, a public function of torch defined
    outside it, a parameter or buffer of a subclass, or a traced call that saw any of these
    (its record's ``dispatched``). Beyond reach: a kernel registered over torch's own with
    ``torch.library``, and a mode entered and left inside a forward around a function call."""
    why = dispatched() or replaced_functions()
    if why is None:  # (a scripted model's too: a review gave one a subclass weight)
        weight = dispatched((*model.parameters(), *model.buffers()))
        why = None if weight is None else f"a parameter or buffer of it is {weight}"
    if why is None:
        why = next((f"the call of module {r.name!r} ran where {r.dispatched}" for r in records
                    if r.dispatched is not None), None)
    return "" if why is None else (f"{why}, which may change what any torch function "
                                   "computes: no module's bound holds there")


def _untrusted(model: nn.Module, before: list[int | None],
               records: Sequence[TraceRecord] = ()) -> str:
    """Why no network bound can rest on the model's modules being what their classes say, or
    "": a forward hook or pre-hook (on a module, or global) can change any layer's output, a
    ``forward`` set on an instance replaces the class's, a forward that changed the
    model's own parameters or buffers in place (even if it restored them: their version
    counters, ``before`` the trace's forward, show it) runs other weights than the rows are
    computed from, and a tensor subclass or a mode (in a weight, or seen by a traced call's
    ``dispatched``) may change what any module computes."""
    if isinstance(model, torch.jit.ScriptModule):  # (its modules are read off its graph;
        # its operations meet a mode too). Its own compiled hooks run around its forward,
        # out of the graph read (a review: out * 100 in a hook, a bound of 0.65 for 45; a
        # pre-hook setting a flag the graph's if reads); a submodule's are in that graph
        script: Any = model
        hooks = [kind for kind, found in (("forward hook", script._c._get_forward_hooks()),
                                          ("forward pre-hook",
                                           script._c._get_forward_pre_hooks())) if found]
        if hooks:
            return (f"the TorchScript model has a {hooks[0]} of its own, which runs around "
                    "the graph its layers are read from and may change what it computes")
        return _dispatch_reason(model, records)
    why = model_hook_reason(model) or _dispatch_reason(model, records)
    if why:
        return why
    for name, module in model.named_modules():
        why = instance_method_reason(module, f"module {name!r}" if name else
                                     type(model).__name__)
        if why:
            return why
    if None in before:  # (a review: a forward that changed such weights in inference mode
        # got a bound of 1.9 for a map of constant 274.8)
        return (f"a parameter or buffer of it is {UNTRACKED}, so that its forward's changes "
                "to its own weights would not show (make the model outside "
                "torch.inference_mode())")
    if _versions(model) != before:
        return "its forward changes its own parameters or buffers in place"
    return ""


#: What the reason says of a traced module with no known constant (the CLI adds its option).
UNKNOWN = "of known constant"


def _low_precision(model: nn.Module) -> str:
    """Why a model that computes in fewer than 32 bits gets no network bound (a hunt: a
    float16 chain bounded by 1.02 changed its output by 23 times a change of one unit in the
    last place of one input), or ``""``: the rounding of float16 and bfloat16 (and float16's
    overflow beyond 65504) is bounded by no Lipschitz constant, as a cast down to them in the
    graph is refused (:func:`sparseconv._torch_graph_rules._cast`)."""
    dtype = probe_like(model)[0]
    if dtype is None or dtype.itemsize >= (8 if dtype.is_complex else 4):
        return ""
    return (f"the model computes in {dtype}, whose rounding (and float16's overflow beyond "
            "65504) no Lipschitz constant bounds; the rows bound its layers as given (pass "
            "model.float() for the network bound of the same layers in float32)")


def _mixes_samples(model: nn.Module, shape: tuple[int, ...],
                   bound: str = "the product of the layers' bounds") -> str:
    """Why ``bound`` (the product of a chain's bounds, or the bound over the graph) is no
    bound of the map of one sample, or ``""``: a forward whose output for one sample changes
    with another sample of its batch (a hunt: ``nn.Flatten(0, 2)`` and ``nn.Unflatten``
    folding the batch axis into a spatial one, a circular convolution over it: bound 2.0,
    the map of a batch of two 3.0), seen on a seeded batch of two against each sample alone.
    The bound over the graph refuses such reshapes node by node, but takes a constant given
    for a call or module as given (a new user's trial: ``F.batch_norm(x, None, None,
    training=True)``, batch statistics, given 1.0: a bound of 1.13 for a map of one sample
    of norm 2.6)."""
    probe = probe_input(model, shape, batch=2)
    same = True
    for scale in (1.0, 1e3, -1e3):  # (a review: a ReLU gate shut at the probe, bias -100,
        # hid a mixing behind it; scaled by 1e3 either way, about half of it opens)
        try:
            with torch.no_grad(), restored_state(model):
                both = output_leaves(model(probe * scale))
                alone = [output_leaves(model(probe[i:i + 1] * scale)) for i in range(2)]
        except Exception as exc:  # noqa: BLE001 - a forward raises anything
            return (f"its forward does not run on a batch of two ({type(exc).__name__}: "
                    f"{error_line(exc)}), so {bound} may be no bound of the map of one sample")
        same = same and both is not None and all(
            one is not None and len(one) == len(both) and all(
                _alone_as_in_the_batch(a, b, i) for a, b in zip(both, one))
            for i, one in enumerate(alone))
    if same:
        return ""
    return ("its forward mixes the samples of a batch (one sample's output changes with "
            "another's, or the batch is no leading axis of the output: a reshape that folds "
            f"the batch axis into a sample? batch statistics?), so {bound} is no bound of the "
            "map of one sample")


def _state_changes(model: nn.Module, shape: tuple[int, ...]) -> str:
    """Why the product of a chain's bounds is no bound of the model's next calls, or ``""``:
    a forward that changes its own state so that calls compute other maps
    (:func:`changes_own_state`; a review: a parametrization of a chain's convolution that
    doubled its factor on each read with autograd on, a bound of 1.91 for the next call's
    2.61). A forward that fails here is said elsewhere (:func:`_mixes_samples`)."""
    try:
        changed = changes_own_state(model, probe_input(model, shape, batch=2))
    except Exception:  # noqa: BLE001 - a forward raises anything; said by _mixes_samples
        return ""
    return f"{_kind(model)} {changed}" if changed else ""


def _alone_as_in_the_batch(whole: Any, alone: Any, i: int) -> bool:
    """Whether ``alone``, an output of sample ``i`` run alone, is what the batch of two gave
    it in ``whole``: its part along the batch axis (which the sample alone may have squeezed
    away: a forward's ``.squeeze()`` of ``(B, 1)`` gives ``(B,)`` and, alone, a number), or
    an output of no batch axis the same in both (a constant returned beside the signal's,
    CLIP's logit scale: a review found such models refused); non-finite entries where the
    other has the same (a review: a ``-inf`` channel made the values go unread)."""
    if not (isinstance(whole, torch.Tensor) and isinstance(alone, torch.Tensor)):
        return False
    if whole.shape[:1] == (2,) and alone.numel() == whole[i].numel():
        part = whole[i:i + 1]
        alone = alone.reshape(part.shape)
    elif whole.shape == alone.shape:
        part = whole
    else:
        return False
    if part.is_complex() and alone.is_complex():
        part, alone = torch.view_as_real(part), torch.view_as_real(alone)
    if not (part.is_floating_point() and alone.is_floating_point()):
        return matches(part, alone)
    finite = torch.isfinite(part)
    if not all(torch.equal(f(part), f(alone)) for f in (torch.isfinite, torch.isnan,
                                                         torch.isposinf)):
        return False
    return matches(part.where(finite, 0), alone.where(finite, 0))


def _unknown(modules: list[str]) -> str:
    """The reason for ``modules`` (``"1 (Softplus)"``), none a layer or a known activation."""
    if len(modules) == 1:
        return (f"module {modules[0]} is neither a layer sparseconv.torch reads nor an "
                f"activation {UNKNOWN}")
    return (f"modules {', '.join(modules)} are neither layers sparseconv.torch reads nor "
            f"activations {UNKNOWN}")


def _over_the_graph(model: nn.Module, shape: tuple[int, ...], records: list[TraceRecord],
                    todo: list[tuple[TraceRecord, TraceRecord | None]], rows: list[dict],
                    known: dict[int, float | Given], options: dict, given: Mapping[str, float],
                    assumed: list[str], ordered: list[dict], kept: frozenset[str] = frozenset(),
                    step: Callable[[str, bool], None] | None = None,
                    followed: dict[str, str] | None = None,
                    ) -> tuple[float | None, str]:
    """A Lipschitz bound of a model that is no chain, over its torch.fx graph
    (:func:`sparseconv._torch_graph_bound.graph_bound`), rounded up; or ``(None, why)``.
    A linear function called in ``forward`` (``F.conv2d`` by a weight it computes,
    ``F.avg_pool2d``, ``x @ W``, ...) gets its certified norm on the traced shape, with
    ``spectral_norm``'s ``options`` as the rows, and a row of its own
    (:func:`sparseconv._torch_report_rows._call_row`; those the walk reached, where it
    stops short): ``ordered`` receives the rows, the functions' among the modules' in the
    order the graph runs them (:func:`_in_forward_order`); an activation called as a
    function its known constant or the one ``given`` for its node or function name, each
    appended to ``assumed``. ``kept``: the modules of the user's classes given constants
    (:func:`sparseconv._torch_kept.given_leaves`), which a scripted model's graph calls whole,
    and an eager model's where what they read and leave allows; ``followed`` receives the
    others' names, each with why its forward is followed
    (:func:`sparseconv._torch_whole_calls.whole_units`).
    ``step(name, True)``: called as each linear function's row is done (the progress)."""
    whole = kept
    if isinstance(model, torch.jit.ScriptModule):  # its graph, rebuilt as a torch.fx one
        rebuilt = script_graph_module(model, [r.name for r in records],
                                      [r.module for r in records], shape, kept)
        if isinstance(rebuilt, str):
            return None, f"its TorchScript graph {rebuilt}"
        model, whole = rebuilt, frozenset()  # (called whole there, ScriptModules)
    # a constant the caller gave stays marked (Given): trusted only where what the module read
    # or returned is not changed in place afterwards
    factors: dict[int, Factor] = {id(r): c if isinstance(c, Given) else Fraction(c)
                                  for r, c in ((r, known[id(r)]) for r in records
                                               if id(r) in known)}
    for (record, batchnorm), row in zip(todo, rows):
        if not math.isfinite(row["upper"]):
            return None, f"layer {row['name']!r} has no finite upper bound"
        *padding, record = row_parts(record)  # (a padding folded into the convolution)
        factors[id(record)] = Fraction(row["upper"])
        if batchnorm is not None:
            factors[id(batchnorm)] = ("folded", record.name)
        if padding:
            factors[id(padding[0])] = ("padding", record.name)
    by_name: dict[str, list[TraceRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)

    def factor(name: str, k: int, call_shape: tuple) -> Factor:
        calls = by_name.get(name, [])
        if k >= len(calls) or tuple(calls[k].input_shape) != call_shape:
            return None  # (a call the trace did not see as this one: no bound)
        record = calls[k]
        if id(record) in factors:
            return factors[id(record)]
        return Fraction(1) if record.linear else None  # a reshape: Flatten, Identity, Dropout

    probe = probe_input(model, shape, batch=2)  # (two samples: one mixed into another shows)
    norms: dict[tuple, sc.SpectralNorm] = {}

    def functional(target, args: list, kwargs: dict, call_shape: tuple,
                   call: FunctionalCall) -> Fraction | str | None:
        if target in MAX_POOL_F:
            return _functional_max_pool(target, args, kwargs, call_shape)
        start = time.perf_counter()
        try:
            read = linear_call_layer(target, args, kwargs, call_shape)
            if read is None:
                return None
            module, layer = read
            key = layer.norm_key()  # (a function called again with the same weight: once)
            norm = norms.get(key) if key is not None else None
            if norm is None:
                norm = _layer_norm(layer, label=f"lipschitz_report: call "
                                   f"{call.node.name!r}", **options)
                if key is not None:
                    norms[key] = norm
        except MatrixTooLargeError as exc:
            return f"is linear, but its norm's memory is refused: {exc}"
        except (TypeError, ValueError) as exc:  # a mode or a shape the layers do not read
            return f"is linear, but not a call sparseconv.torch reads: {exc}"
        if not math.isfinite(norm.upper):
            return "has no finite upper bound"
        found.append((call.node, _call_row(call, target, module, layer, norm,
                                           time.perf_counter() - start)))
        if step is not None:
            step(found[-1][1]["name"], True)
        return Fraction(norm.upper)

    found: list[tuple[torch.fx.Node, dict]] = []
    exact, why = graph_bound(model, factor, probe, functional, given=given, assumed=assumed,
                             whole=whole, followed=followed)
    ordered.extend(_in_forward_order(records, todo, rows, found))
    return (None, why) if exact is None else (_float_up(exact), "")


def _in_forward_order(records: list[TraceRecord],
                      todo: list[tuple[TraceRecord, TraceRecord | None]], rows: list[dict],
                      found: list[tuple[torch.fx.Node, dict]]) -> list[dict]:
    """The modules' ``rows`` (``todo``'s, in the trace's order) and the function rows
    ``found`` (each with its call's torch.fx node) in the order the graph runs them (a new
    user's trial: a blur pool's ``F.pad`` and ``F.conv2d`` listed after the convolution that
    reads them): a module's row where the graph calls it (the ``k``-th call of its name, as
    the graph and the trace count them alike), a function's at its node."""
    if not found:
        return list(rows)
    at: dict[tuple[str, int], int] = {}
    index: dict[torch.fx.Node, int] = {}
    seen: dict[str, int] = {}
    for i, node in enumerate(found[0][0].graph.nodes):
        index[node] = i
        if node.op == "call_module":
            name = str(node.target)
            at[(name, seen.get(name, 0))] = i
            seen[name] = seen.get(name, 0) + 1
    calls: dict[int, int] = {}  # each record's call of its name: its k
    count: dict[str, int] = {}
    for record in records:
        calls[id(record)] = count.get(record.name, 0)
        count[record.name] = calls[id(record)] + 1
    keyed, last = [], -1
    for (record, _), row in zip(todo, rows):
        record = row_parts(record)[-1]  # (a padding folded into a convolution: at the latter)
        last = at.get((record.name, calls[id(record)]), last)  # (else after the row before)
        keyed.append((last, 0, row))
    keyed += [(index[node], 1, row) for node, row in found]
    return [row for _, _, row in sorted(keyed, key=lambda key: key[:2])]


def _functional_max_pool(target, args: list, kwargs: dict,
                         call_shape: tuple) -> Fraction | str:
    """The constant of ``F.max_pool*d(x, ...)`` (a review found it refused where the module
    ``nn.MaxPool*d`` is bounded): that module's, :func:`_max_pool_constant`, on the call's
    shape."""
    given = by_keyword(target, args, kwargs, lambda a: torch.Tensor)[1]
    given.pop("input", None)
    if given.pop("return_indices", False):
        return "returns the indices of the maxima too (return_indices=True)"
    try:
        module = MAX_POOL_F[target](**given)
        with torch.no_grad():
            out = module(torch.zeros((1, *call_shape), dtype=torch.float64))
    except (TypeError, ValueError, RuntimeError) as exc:
        return f"is a max pooling sparseconv.torch cannot read: {exc}"
    record = TraceRecord("", module, tuple(call_shape), tuple(out.shape[1:]), False)
    constant = _max_pool_constant(record)
    return "is a max pooling with no constant here" if constant is None else Fraction(constant)


def _functional_calls(model: nn.Module) -> tuple[set[str], dict[str, str]]:
    """The fx node names of the calls ``model``'s forward makes that ``lipschitz_constants``
    may name: functions and methods with no rule of their own in the bound over the graph
    (``softplus``, ``softplus_1``); and the other calls' nodes, each with its function's
    name (whose bound the report computes or knows). Empty for a model torch.fx cannot
    trace, or a TorchScript one."""
    if isinstance(model, torch.jit.ScriptModule):
        return set(), {}
    try:
        graph = fx_trace(model)
    except Exception:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return set(), {}
    calls = [n for n in graph.nodes if n.op in ("call_function", "call_method")]
    return ({n.name for n in calls if not has_rule(n.target)},
            {n.name: function_name(n.target) for n in calls if has_rule(n.target)})


def _check_constants_used(given: Mapping[str, float], records: list[TraceRecord],
                          model: nn.Module) -> dict[str, float]:
    """Every ``lipschitz_constants`` key names a traced non-linear module or its class (not
    both: a module's name that is also another's class is refused), or the graph node of a
    call with no rule of its own (:func:`_functional_calls`): a typo ("relu" for "ReLU")
    would otherwise leave the module's own constant in force, or no bound at all, without a
    word; a linear layer's or a linear call's norm is computed, not given. Returns the
    constants of the calls, by node (a module's name or class wins over a node's)."""
    names = {key for r in records if not r.linear for key in (r.name, _kind(r.module))}
    linear = {key for r in records if r.linear for key in (r.name, _kind(r.module))}
    calls, ruled = _functional_calls(model) if set(given) - names - linear else (set(), {})
    functions = {}
    for key in given:
        named = [r.name for r in records if r.name == key]
        kinds = [r.name for r in records if _kind(r.module) == key and r.name != key]
        if named and kinds:  # (a review: {"Tanh": 0.25} for a Sigmoid named "Tanh" was
            # applied to every nn.Tanh too)
            raise ValueError(f"lipschitz_constants[{key!r}] names module {key!r} and the class "
                             f"of modules {', '.join(map(repr, kinds[:3]))}: give those by "
                             "their own names")
        if key in names:
            continue
        if key in calls and key not in linear:
            functions[key] = given[key]
            continue
        if key in ruled and key not in linear:  # (a review: "interpolate" replaced its norm)
            raise ValueError(f"lipschitz_constants[{key!r}] names the call of {ruled[key]}, "
                             "which has a rule of its own in the bound (a linear function's "
                             "certified norm, a known activation's constant, a sum, a product "
                             "by a constant, a reshape; a product of two values of the signal "
                             "has none, nor may it be given one); constants are for the calls "
                             f"without a rule: {', '.join(sorted(calls)) or 'none'}")
        if key in linear:
            raise ValueError(f"lipschitz_constants[{key!r}] names a linear layer, whose norm "
                             "the report computes; constants are for the non-linear modules: "
                             f"{', '.join(sorted(names)) or 'none traced'}")
        idle = _idle_call(model, key)
        if idle is not None:  # (a fifth review: "names no traced module ...; they are:
            # none", where an eager model's constant is warned of as unused)
            warnings.warn(f"lipschitz_constants gives {key!r}: module {idle[0]!r} "
                          f"({_kind(idle[1])}) is called but runs no operation of its own in "
                          "the model's TorchScript graph (it returns its argument?), so its "
                          "constant is unused", UserWarning, stacklevel=outside_level(torch))
            continue
        lowered = {name.lower(): name for name in sorted(names | calls)}
        close = [lowered[c] for c in difflib.get_close_matches(key.lower(), lowered, n=1,
                                                                 cutoff=0.6)]
        raise ValueError(f"lipschitz_constants[{key!r}] names no traced non-linear module nor "
                         f"its class, nor a function the forward calls; they are: "
                         f"{', '.join(sorted(names | calls)) or 'none'}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    return functions


def _idle_call(model: nn.Module, key: str) -> tuple[str, nn.Module] | None:
    """The leaf module of a TorchScript ``model`` named ``key`` (or of class ``key``) that
    its code calls (:func:`sparseconv._torch_script._call_graph`) but whose call runs no
    operation, so that the trace has no record of it (a module that returns its argument),
    as ``(name, module)``; None otherwise (an eager model's trace records every call)."""
    if not isinstance(model, torch.jit.ScriptModule):
        return None
    called = set().union(*_call_graph(model).values())
    return next(((name, module) for name, module in model.named_modules()
                 if name in called and key in (name, _kind(module))
                 and not any(module.children())), None)


def _torch_class(module: nn.Module) -> str | None:
    """The name of the torch.nn class ``module`` is an instance of, exactly (a subclass may
    compute anything), or that a TorchScript module was compiled from; None otherwise."""
    if isinstance(module, torch.jit.ScriptModule):
        qualified = module._c._type().qualified_name()  # __torch__.torch.nn.modules....Name
        inside = qualified.startswith("__torch__.torch.nn.modules.")
        return qualified.rpartition(".")[2] if inside else None
    return type(module).__name__ if is_torch_class(module) else None


def _max_pool_constant(record: TraceRecord) -> float | None:
    """The Lipschitz constant, in the 2-norm, of a max pooling layer on its traced input:
    ``sqrt(w)``, ``w`` the most pooling windows that read one input entry (rounded up).

    Each output moves by at most the largest change in its window, ``|max_W x - max_W y| <=
    ||x_W - y_W||_2``, so ``||P(x) - P(y)||^2 <= sum_W ||x_W - y_W||^2 <= w ||x - y||^2``;
    ``x = 0, y = eps e_p`` at an entry read by ``w`` windows attains it. Windows are products
    of one window per axis, so ``w`` is the product of the per-axis maxima: read off the
    gather map of the same windows as a pooling geometry (kernel, stride, dilation, padding,
    and ``ceil_mode``'s extra zeros, as ``avg_pool_matrix`` adds them), checked against the
    traced output size; or off ``adaptive_avg_pool_matrix``'s windows. None for a module that
    is no max pooling of torch's, or with a window of ``-inf`` padding alone (its output is
    ``-inf`` whatever the input).
    """
    spatial, outputs = record.input_shape[1:], tuple(record.output_shape[1:])
    ndim = len(spatial)
    kind = _torch_class(record.module)  # torch's own class, not a user's of the same name
    if kind == f"AdaptiveMaxPool{ndim}d" and len(outputs) == ndim:
        reads = [_adaptive_axis(n, m).tocsc() for n, m in zip(spatial, outputs)]
        windows = math.prod(int(np.diff(a.indptr).max()) for a in reads)
    elif kind == f"MaxPool{ndim}d":
        module = record.module
        try:
            kernel = int_tuple(module.kernel_size, ndim, "kernel_size", 1, broadcast_one=True)
            stride = int_tuple(module.stride or kernel, ndim, "stride", 1, broadcast_one=True)
            padding = int_tuple(module.padding, ndim, "padding", 0, broadcast_one=True)
            dilation = int_tuple(module.dilation, ndim, "dilation", 1, broadcast_one=True)
            pads = [(p, p + (_ceil_extra(n, (k - 1) * d + 1, s, p, p) if module.ceil_mode
                             else 0))
                    for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation)]
            geom = sc.ConvGeometry.from_kernel_size((1, *spatial), kernel, stride=stride,
                                                    padding=pads, dilation=dilation)
        except (TypeError, ValueError):  # windows the geometry refuses: no constant
            return None
        if tuple(geom.output_size) != outputs:
            return None  # (not the windows PyTorch ran: no constant)
        taps = [a.tap_index() for a in geom.axes]  # -1: a padded position
        if any((t < 0).all(axis=1).any() for t in taps):
            return None
        windows = math.prod(int(np.bincount(t[t >= 0]).max()) for t in taps)
    else:
        return None
    root = math.isqrt(windows)
    return float(root) if root * root == windows else math.nextafter(math.sqrt(windows),
                                                                     math.inf)


def _activation_constant(module: nn.Module) -> float | None:
    """The Lipschitz constant of an activation of torch's own class, rounded up to a float
    (:func:`sparseconv._torch_activations.module_constant`), or None if unknown."""
    constant = module_constant(module)
    return None if constant is None else _float_up(constant)


def _not_sequential(model: nn.Module, name: str = "") -> tuple[str, nn.Module] | None:
    """The first module (qualified name, module) that is neither a ``nn.Sequential`` nor a
    leaf, so that the model may not be the chain of its leaves; None for a chain."""
    if _torch_class(model) == "Sequential":  # torch's own, its forward untouched (or scripted)
        for child_name, child in model.named_children():
            found = _not_sequential(child, f"{name}.{child_name}" if name else child_name)
            if found is not None:
                return found
        return None
    # (a user's module without submodules computes its forward's function calls: no chain)
    return None if is_leaf(model) and is_torch_module(model) else (name, model)


def _is_sequential(model: nn.Module) -> bool:
    return _not_sequential(model) is None


def _chain_break(model: nn.Module, shape: tuple[int, ...] | None = None) -> str | None:
    """Why ``model``'s forward is no chain of its layers, as a phrase after "its forward"
    (``"runs add (node 'add') on its signal outside its layers"``), or None for a chain: for
    a TorchScript model, its graph's answer
    (:func:`sparseconv._torch_script_chain.script_chain_break`); for an eager one, torch.fx's
    graph's, by the same rule (each module call reads the value the call before returned,
    through :data:`CHAIN_KEEPING` operations at most, and the last one's is the output).
    A model torch.fx cannot trace is said to be one sparseconv cannot check. Given the
    input's ``shape``, traced as the bound over the graph traces it (loops and branches over
    sizes, starred shapes: a review found the chain "cannot be traced" where the bound
    over the graph, in the same reason, had traced it)."""
    if isinstance(model, torch.jit.ScriptModule):
        return script_chain_break(model, sequential=_is_sequential(model))
    try:
        graph = fx_trace(model, None if shape is None else SizesTracer(
            probe_input(model, shape, batch=2).clone))  # (drawn before the trace: a draw
        # during it is refused as the forward's)
    except UntraceableDefault as exc:
        return (f"cannot be checked to be the chain of its layers (its argument {exc.name!r} "
                f"defaults to a {exc.default})")
    except Exception as exc:  # noqa: BLE001 - torch.fx raises anything for untraceable code
        return (f"cannot be checked to be the chain of its layers (torch.fx cannot trace it: "
                f"{type(exc).__name__})")
    current: set = set()  # the signal as it stands: one node, and in-place aliases
    signal: set = set()  # every node computed from the signal that holds a tensor
    for node in graph.nodes:
        if node.op == "placeholder":
            if current:
                return "takes more than one input"
            current, signal = {node}, {node}
            continue
        reads = {n for n in node.all_input_nodes if n in signal}
        if node.op == "output":
            result = node.args[0]
            if not (isinstance(result, torch.fx.Node) and result in current):
                return "returns something other than its last layer's output"
            continue
        if not reads:
            continue
        name = function_name(node.target)
        if node.op == "call_module":
            if reads - current:
                return (f"calls module {str(node.target)!r} on a value other than the "
                        "previous call's output (a residual or a branch, or a call whose "
                        "result is not used)")
            if len(signal_reads(node, signal)) > 1:  # (a review: cell(h, h), a constant
                # given for the cell as a map of one argument)
                return f"calls module {str(node.target)!r} with its signal as two arguments"
            module = model.get_submodule(str(node.target))
            # torch's activation with inplace=True changes its input into its output: both
            # names hold the signal (self.relu(x) as a statement; a review's true chain)
            in_place = is_torch_module(module) and getattr(module, "inplace", False) is True
            current = {node} | (current if in_place else set())
        elif name in ("size", "dim", "len") or name == "getattr" and len(node.args) > 1 and (
                node.args[1] in ("shape", "dtype", "device", "ndim")):
            continue  # (x.shape, x.size(0): integers, no signal; a review: x.T is one)
        elif name not in CHAIN_KEEPING or name == "getattr" or not (
                node.op == "call_method" or str(getattr(node.target, "__module__", "")
                                                  ).startswith("torch")) or any(
                isinstance(a, torch.dtype) for a in (*node.args, *node.kwargs.values())):
            # (a review: a function of the user's named relu; x.view(torch.float32))
            return f"runs {name} (node {node.name!r}) on its signal outside its layers"
        elif reads - current:
            return f"runs {name} (node {node.name!r}) on an older value of its signal"
        else:
            in_place = name.endswith("_") or node.kwargs.get("inplace") is True
            current = {node} | (current if in_place else set())
        signal.add(node)
    return None

