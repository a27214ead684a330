"""Every weighted layer of a network, bounded differentiably: a Lipschitz penalty for training.

:func:`lipschitz_bounds` traces the model once (:func:`sparseconv._torch_trace.trace`) for the
input shape each convolution, transposed convolution and ``nn.Linear`` is called on, and
translates each module once (:func:`sparseconv._torch_layers._layer`: the convolution the
spectra take, a transposed one's adjoint, a ``Linear``'s weight as a 1x1 convolution). The
object it returns recomputes, on each call, every layer's certified upper bound
(:func:`sparseconv._torch_spectra.spectral_norm_upper`) from the layer's *current* weight,
with autograd: the training loop's penalty, without re-tracing the model at every step.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from ._torch_calls import _CONV_F, _functional_module, by_keyword
from ._torch_kinds import _CONV, _CONV_T, check_module, hook_reason, parameter
from ._torch_layers import _layer, called_output_size
from ._torch_probe import leaves_the_model
from ._torch_spectra import spectral_norm_upper
from ._torch_trace import trace, unwrapped

__all__ = ["LipschitzBounds", "lipschitz_bounds"]

_WEIGHTED = (*_CONV, *_CONV_T, nn.Linear)


@dataclass(frozen=True)
class _Call:
    """One call of a weighted layer: the convolution ``spectral_norm_upper`` bounds."""

    input_shape: tuple[int, ...]
    size: tuple[int, ...]       # the convolution's spatial input size
    options: dict = field(hash=False)  # stride, padding, dilation, groups, padding_mode
    linear: bool                # nn.Linear: its weight is a 1x1 convolution's


class LipschitzBounds(Mapping):
    """The weighted layers of a network, each with a differentiable certified bound.

    Made by :func:`lipschitz_bounds`. A read-only mapping from each layer's qualified name to
    the input shapes it is called on; calling it computes the bounds.

    Attributes
    ----------
    names : tuple of str
        The layers' qualified names, in the order of their first call; then the parameters
        that functional calls in ``forward`` read (their qualified names), likewise.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(8 * 8 * 8, 10)).double()
    >>> bounds = sct.lipschitz_bounds(model, (3, 8, 8))
    >>> bounds.names, bounds["0"]
    (('0', '3'), ((3, 8, 8),))
    >>> values = bounds()                  # recomputed from the current weights
    >>> sorted(values), values["0"].requires_grad
    (['0', '3'], True)
    """

    def __init__(self, layers: dict[str, tuple[nn.Module | None, list[_Call]]],
                 model: nn.Module | None = None) -> None:
        self._layers, self._model = layers, model  # (the model: for functional calls' weights)
        self._settings = {name: _settings(module) for name, (module, _) in layers.items()
                          if module is not None}

    @property
    def names(self) -> tuple[str, ...]:
        """The layers' qualified names, in the order of their first call; then the parameters
        that functional calls in ``forward`` read, likewise (the mapping's keys)."""
        return tuple(self._layers)

    def __getitem__(self, name: str) -> tuple[tuple[int, ...], ...]:
        return tuple(call.input_shape for call in self._layers[name][1])

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        return f"LipschitzBounds({list(self.names)!r})"

    def _check_still(self, name: str, module: nn.Module) -> None:
        """Refuse a layer whose module the model no longer holds by its name (a new user's
        trial: ``model[0] = nn.Conv2d(...)`` kept the old module's bound under the name)."""
        if self._model is None:
            return
        try:
            now = self._model.get_submodule(name)
        except AttributeError:
            now = None
        if now is not module:
            raise ValueError(f"module {name!r} of the model is not the {type(module).__name__} "
                             "lipschitz_bounds traced (replaced or removed since): call "
                             "lipschitz_bounds again for the model as it is")
        changed = [f"{key}={now!r} (then {then!r})" for (key, then), (_, now) in zip(
            self._settings[name], _settings(module)) if now != then]
        if changed:  # (a review: a stride set to 1 after the trace kept the bound of stride 2)
            raise ValueError(f"module {name!r} ({type(module).__name__}) has "
                             f"{', '.join(changed)} since lipschitz_bounds traced it: call "
                             "lipschitz_bounds again for the model as it is")

    def __call__(self) -> dict[str, torch.Tensor]:
        """Every layer's certified upper bound on its spectral norm, from its current weight.

        Returns
        -------
        dict of str to torch.Tensor
            0-d float64 tensors on each weight's device, differentiable in the weights (as
            :func:`spectral_norm_upper`; a layer called on several input shapes gets the
            largest of its bounds, one for every call).
        """
        bounds = {}
        for name, (module, calls) in self._layers.items():
            try:
                if module is None:  # a parameter a functional call reads
                    assert self._model is not None  # (lipschitz_bounds passes its model)
                    weight = self._model.get_parameter(name)
                else:
                    self._check_still(name, module)
                    with _parametrizations_in_eval(module):
                        weight = parameter(module, "weight")
            except AttributeError:  # (deleted since the trace)
                weight = None
            if not isinstance(weight, torch.Tensor):
                raise ValueError(
                    f"parameter {name!r} is gone (it was there when lipschitz_bounds traced "
                    "the model)" if module is None else f"module {name!r} "
                    f"({type(module).__name__}) has no weight any more (it had one when "
                    "lipschitz_bounds traced the model)")
            distinct = {(call.size, tuple(call.options.items())): call for call in calls}
            values = [spectral_norm_upper(weight[:, :, None] if call.linear else weight,
                                          call.size, **call.options)
                      for call in distinct.values()]
            bounds[name] = values[0] if len(values) == 1 else torch.stack(values).max()
        return bounds


def _bounded_convolution(layer, module: nn.Module) -> tuple[tuple[int, ...], dict]:
    """The spatial input size and options of the convolution whose circulant bound bounds a
    weighted ``layer`` (of ``module``): its own, or for a transposed convolution the one it
    is the adjoint of. With ``output_padding`` not below the stride (dilation allows it), the
    layer is the adjoint of that convolution's first rows on each axis, ``R C``, and
    ``||(R C)^T|| <= ||C||`` (a hunt: such a layer was refused, where a bound exists)."""
    if layer.conv is not None:
        _, shape, options = layer.conv
        return tuple(shape[1:]), dict(options)
    return tuple(layer.output_shape[1:]), dict(
        stride=module.stride, padding=module.padding, dilation=module.dilation,
        groups=module.groups)


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@leaves_the_model
def lipschitz_bounds(model: nn.Module, input_shape: Sequence[int]) -> LipschitzBounds:
    """The differentiable certified spectral-norm bound of each weighted layer of a network.

    For a Lipschitz penalty during training. The model is traced once, with one forward pass
    on ``(1, *input_shape)`` (forward hooks; any ``forward``: residual blocks, branches, a
    layer called several times), for the input shape of every call of its ``nn.Conv1d/2d/3d``,
    ``nn.ConvTranspose1d/2d/3d`` (an ``output_size`` passed at call time included) and
    ``nn.Linear``. Calling the result computes each layer's bound from its current weight:
    :func:`spectral_norm_upper` (the circulant-embedding bound, certified in float64, of every
    padding mode; a transposed convolution through its adjoint; a ``Linear``'s weight's norm,
    rounded up), a torch function of the weight with autograd, so that
    ``loss + lam * sum(torch.relu(b - 1) for b in bounds().values())`` back-propagates into the
    weights. The trace is not repeated: input shapes must not change, weights may.

    The model may be in training mode (only the weighted layers are bounded, and their maps do
    not depend on the mode); its buffers (BatchNorm's statistics) are left as they were, and a
    weight's parametrization is read as in eval mode (``parametrizations.spectral_norm`` with
    its current vectors, its power iteration not advanced). Other linear modules (BatchNorm,
    pooling, padding, resampling) are not included: their norms do not follow the weights by
    gradient, or are fixed (:func:`lipschitz_report` bounds them all, and the whole network).
    A convolution, transposed convolution or ``F.linear`` that ``forward`` calls itself
    (``F.conv2d(x, self.w, padding=1)``, outside the weighted modules) is bounded too when its
    weight is a parameter of the model, under the parameter's qualified name (``"w"``, or
    ``"conv.weight"`` for a module's weight read outside its module), with that call's
    arguments. A weight that is no parameter of the model (computed in ``forward``, like
    ``self.w / self.w.norm()``, or a buffer) cannot be read again at each call: such a call is
    named in a warning and left out, as is ``F.linear`` by a 1-D weight. Other products
    (``x @ w``, ``torch.einsum``, the projections inside ``nn.MultiheadAttention``, recurrent
    and bilinear layers) are not bounded: a parameter of two or more axes that ``forward``
    passes to one is named in a warning.

    Parameters
    ----------
    model : torch.nn.Module
        An eager module (a TorchScript model's parameters are not the eager layers' that
        :func:`trace` rebuilds: refused).
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.

    Returns
    -------
    LipschitzBounds
        A mapping from each layer's qualified name to its input shapes; call it for the
        bounds.

    Warns
    -----
    UserWarning
        A weighted module with a forward hook or pre-hook (other than the weight
        recomputations of ``weight_norm``, ``spectral_norm`` and pruning), which may change
        its input or output: its bound is of what its class computes from its weight, named.
        A functional convolution or ``F.linear`` left out (its weight no parameter of the
        model, a 1-D weight of ``F.linear``, or the weight of a convolution whose padding mode
        pads its input first, called as ``module.forward(x)``, which runs no hooks), named
        with its reason. A parameter of two or more axes (or a view of one, ``W.T``) that no
        bound covers and that ``forward`` passes to a product it does not bound (``matmul``,
        ``einsum``, ``bilinear``, ``multi_head_attention_forward``, an LSTM's, GRU's or RNN's,
        ``torch.convolution`` and ``torch.ops.aten``'s convolutions and ``linear``), named
        with that function. A matrix ``forward`` computes from a parameter (``2 * W``,
        ``W.T.contiguous()``, a 1-D parameter viewed as a matrix) is not traced back to it:
        such a product is neither bounded nor named.

    Raises
    ------
    TypeError
        A TorchScript model; what :func:`trace` refuses.
    ValueError
        A bad ``input_shape``; a layer in training mode with an old-style
        ``torch.nn.utils.spectral_norm`` hook (whose every use runs its power iteration: use
        ``torch.nn.utils.parametrizations.spectral_norm``, or call ``.eval()``). When the
        result is called: a layer replaced since the trace, or whose ``stride``,
        ``padding``, ``dilation``, ``groups``, ``padding_mode`` or ``output_padding`` changed.

    See Also
    --------
    spectral_norm_upper : one weight's bound.
    lipschitz_report : certified intervals of every linear layer, and the network's bound.

    Examples
    --------
    >>> import torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> torch.manual_seed(0)                       # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
    ...                       nn.Conv2d(16, 16, 3, stride=2, padding=1))
    >>> bounds = sct.lipschitz_bounds(model, (3, 32, 32))
    >>> penalty = sum(torch.relu(b - 1.0) for b in bounds().values())
    >>> penalty.backward()                         # gradients on every conv weight
    >>> model[0].weight.grad.shape
    torch.Size([16, 3, 3, 3])
    """
    check_module(model, "model")
    inner = unwrapped(model)
    if isinstance(inner, torch.jit.ScriptModule):
        raise TypeError("lipschitz_bounds needs the eager model: a TorchScript model's "
                        "parameters are its own, not those of the eager layers a trace of it "
                        "rebuilds, so no gradient would reach them")
    layers: dict[str, tuple[nn.Module | None, list[_Call]]] = {}
    with _FunctionalCalls(inner) as functional:
        records = trace(model, input_shape, allow_train=True)
    hooked: list[str] = []
    for record in records:
        module = record.module
        if not isinstance(module, _WEIGHTED):
            continue
        why = hook_reason(module, f"module {record.name!r} ({type(module).__name__})")
        if why and why not in hooked:
            hooked.append(why)
        with _parametrizations_in_eval(module):
            layer = _layer(module, record.input_shape,  # (a call's output_size=)
                           called_output_size(module, record.input_shape, record.output_shape))
        shape, options = _bounded_convolution(layer, module)
        call = _Call(record.input_shape, shape, options, isinstance(module, nn.Linear))
        calls = layers.setdefault(record.name, (module, []))[1]
        # every distinct call: a transposed convolution called on one input shape with two
        # output_size's is two layers (a review: the second was dropped, its bound missed);
        # calls that are the same convolution (a Linear on other leading axes) are bounded once
        if call not in calls:
            calls.append(call)
    for name, target, shape, kwargs in functional.calls:
        module = _functional_module(target, dict(kwargs))
        assert module is not None  # (every target of _FUNCTIONAL has one)
        size, options = _bounded_convolution(_layer(module.eval(), shape), module)
        call = _Call(shape, size, options, target is F.linear)
        calls = layers.setdefault(name, (None, []))[1]
        if call not in calls:
            calls.append(call)
    if hooked:  # (a new user's trial: a hook scaling an output by 10 was not said)
        warnings.warn("lipschitz_bounds bounds each layer as its class computes it from its "
                      "weight, not what a hook makes of it: " + "; ".join(hooked),
                      stacklevel=2)
    bounded = {name for name, (module, _) in layers.items() if module is None} | {
        name for module_name, (module, _) in layers.items() if module is not None
        for name, _ in module.named_parameters(prefix=module_name)}
    unseen = {name: how for name, how in functional.unseen.items() if name not in bounded}
    if unseen:
        warnings.warn("lipschitz_bounds bounds no product by these parameters, which forward "
                      "multiplies by the signal in calls it does not bound (x @ W, einsum, "
                      "attention's projections, recurrent and bilinear layers): "
                      + ", ".join(f"{name} ({how})" for name, how in sorted(unseen.items())),
                      stacklevel=2)
    if functional.unbounded:
        warnings.warn("lipschitz_bounds leaves out these functional calls of forward (it "
                      "bounds those whose weight is a parameter of the model, read again at "
                      "each call): " + "; ".join(sorted(set(functional.unbounded))),
                      stacklevel=2)
    return LipschitzBounds(layers, inner)


#: The functional calls whose weight :func:`lipschitz_bounds` bounds.
_FUNCTIONAL = {*_CONV_F, F.linear}

#: The products by a matrix that :func:`lipschitz_bounds` does not bound, by the name of the
#: torch function (or Tensor method) that computes them: a parameter of two or more axes
#: passed to one outside the weighted modules is named in a warning.
_PRODUCTS = frozenset({
    "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "einsum", "bilinear",
    "tensordot", "addmm", "addbmm", "baddbmm", "addmv", "inner", "chain_matmul", "multi_dot",
    "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
    "rnn_relu_cell", "multi_head_attention_forward", "_native_multi_head_attention",
    # convolutions by other functions than F.conv*d (a review: torch.convolution and
    # torch.ops.aten.conv2d with a parameter were left out without a word)
    "convolution", "_convolution", "_convolution_mode", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv_tbc", "linear"})


class _FunctionalCalls(TorchFunctionMode):
    """The convolutions and ``F.linear`` that ``forward`` calls itself, outside the weighted
    modules (whose own calls their module bounds), each with its weight's parameter name and
    its input's shape (without the batch), recorded once the call has returned; ``unbounded``:
    those left out, each with its reason (a weight that is no parameter of the model, a 1-D
    weight of ``F.linear``). Both start again with each forward pass (:func:`trace` tries a
    second input after a failure)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = {id(p): name for name, p in model.named_parameters()}
        # a parameter of 2 or more axes by its memory, for its views (a review: x @ W.T, a
        # view of W, was left out without a word)
        self.memory = {_memory(p): name for name, p in model.named_parameters()
                       if p.ndim >= 2 and _memory(p) is not None}
        # the convolutions whose padding mode pads their input before F.conv*d, by weight: a
        # call of their forward skips the hooks and shows only that F.conv*d, on the padded
        # input (a review: module.forward(x) of a reflect-padded layer, bounded without its
        # padding, 1.25 for a layer of 1.55)
        self.padded = {id(m.weight): name for name, m in model.named_modules()
                       if isinstance(m, _CONV) and m.padding_mode != "zeros"
                       and isinstance(m.weight, torch.Tensor)}
        self.calls: list[tuple[str, object, tuple[int, ...], tuple]] = []
        self.unbounded: list[str] = []
        self.unseen: dict[str, str] = {}  # a parameter -> the product it went into, unbounded
        self.inside = 0
        self.hooks = [model.register_forward_pre_hook(self._restart)]
        for module in model.modules():
            if isinstance(module, _WEIGHTED):  # (always_call: also when the module raises)
                self.hooks += [module.register_forward_pre_hook(self._enter),
                               module.register_forward_hook(self._leave, always_call=True)]

    def _restart(self, *_) -> None:
        self.inside = 0
        self.calls.clear()
        self.unbounded.clear()
        self.unseen.clear()

    def _enter(self, *_) -> None:
        self.inside += 1

    def _leave(self, *_) -> None:
        self.inside -= 1

    def __exit__(self, *exc) -> None:
        for handle in self.hooks:
            handle.remove()
        super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)  # (a call that fails is not recorded)
        if func in _FUNCTIONAL and not self.inside:
            # by keyword, as the graph reads the same calls (torch.fx's normalize_function)
            rest, named = by_keyword(func, list(args), kwargs, lambda node: torch.Tensor)
            weight, data = named.get("weight"), named.get("input")
            if rest:  # (no schema matched the arguments)
                self.unbounded.append(f"{func.__name__}: its arguments match no signature")
            elif isinstance(weight, torch.Tensor) and isinstance(data, torch.Tensor):
                self._record(func, weight, data, named)
        elif not self.inside and getattr(func, "__name__", None) in _PRODUCTS:
            for value in pytree.tree_leaves((args, kwargs)):  # (a parameter of 2 or more
                # axes multiplying the signal: x @ W, attention's projections, a recurrent
                # layer's; a new user's trial: left out without a word, penalty 0)
                if isinstance(value, nn.Parameter) and value.ndim >= 2 and (
                        id(value) in self.names):
                    self.unseen.setdefault(self.names[id(value)], func.__name__)
                elif isinstance(value, torch.Tensor) and _memory(value) in self.memory:
                    self.unseen.setdefault(self.memory[_memory(value)],
                                           f"{func.__name__}, of a view of it")
        return result

    def _record(self, func, weight: torch.Tensor, data: torch.Tensor, named: dict) -> None:
        """One call that ran: its entry, or its reason to be left out."""
        if func is F.linear:  # any leading axes (none: an unbatched vector)
            shape = tuple(data.shape[1:]) if data.ndim > 1 else tuple(data.shape)
        else:  # (C, *spatial) unbatched, or with the batch in front
            shape = tuple(data.shape[data.ndim - weight.ndim + 1:])
        label = f"{func.__name__} on {shape}"
        if id(weight) in self.padded:
            self.unbounded.append(f"{label}: its weight is that of module "
                                  f"{self.padded[id(weight)]!r}, whose padding mode pads the "
                                  "input first, called otherwise than as the module (module."
                                  "forward(x) runs no hooks): call the module itself")
        elif not (isinstance(weight, nn.Parameter) and id(weight) in self.names):
            self.unbounded.append(f"{label}: its weight is no parameter of the model "
                                  "(computed in forward, a buffer, or another module's)")
        elif func is F.linear and weight.ndim != 2:
            self.unbounded.append(f"{label}: its weight has {weight.ndim} dimension(s), not 2")
        else:
            self.calls.append((self.names[id(weight)], func, shape,
                               tuple((k, v) for k, v in named.items() if k != "input")))


#: The arguments of a weighted module that its bound's convolution is read off at the trace.
_SETTINGS = ("stride", "padding", "dilation", "groups", "padding_mode", "output_padding",
             "in_features", "out_features")


def _settings(module: nn.Module) -> tuple[tuple[str, object], ...]:
    """``module``'s :data:`_SETTINGS`, as it holds them now."""
    return tuple((key, getattr(module, key, None)) for key in _SETTINGS)


def _memory(tensor: torch.Tensor) -> tuple[str, int] | None:
    """Where a tensor's memory lies (its device and storage's address), or None where it has
    none to read (the meta device, a sparse or other layout)."""
    try:
        address = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    return (str(tensor.device), address) if address else None


@contextlib.contextmanager
def _parametrizations_in_eval(module: nn.Module) -> Iterator[None]:
    """The module's weight read as its eval mode computes it: a parametrization with state
    (``parametrizations.spectral_norm``'s power iteration) advances it on every read in
    training mode, so a read for the bound would change the model (a review); in eval mode
    it uses the state as it is. Each parametrization's mode is restored afterwards."""
    found = getattr(module, "parametrizations", {})
    parts = [p for plist in found.values() for p in plist]
    modes = [p.training for p in parts]
    try:
        for p in parts:
            p.train(False)
        yield
    finally:
        for p, mode in zip(parts, modes):
            p.train(mode)
