"""A linear network as one matrix-free operator with its adjoint (:func:`network_operator`).

The graph's ops (:mod:`sparseconv._torch_graph`) run forward for the operator, and backwards,
as transposes summed where a signal was used twice, for its adjoint; the offset is the network
applied to zero.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

import sparseconv as sc
from sparseconv._memory import check_memory
from sparseconv._read_only import ReadOnlyState
from sparseconv._torch_fixed_layers import NEAREST_FLOAT64_HINT, nearest_in_float64
from sparseconv._torch_graph import _build_graph, output_leaves
from sparseconv._torch_graph_ops import _Op
from sparseconv._torch_kinds import instance_method_reason, model_hook_reason
from sparseconv._torch_probe import (
    forward_failed,
    inference_mode_change,
    leaves_the_model,
    matches,
    outside_inference_mode,
    probe_input,
)
from sparseconv._torch_script import _kind
from sparseconv._torch_state import changes_own_state, restored_state
from sparseconv._torch_trace import _checked, compiled_reason, unwrapped


def _run(ops: list[_Op], x: np.ndarray, affine: bool,
         seen: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """The graph's output on the batch ``x``, each op's value dropped after its last reader
    (a new user's trial: a 3-D U-Net's network_operator kept every value of its check's
    batch, 6.5 GB at 128^3, and numpy's MemoryError came out), each shown to ``seen``."""
    last = _last_readers(ops)
    values: list = [x] + [None] * (len(ops) - 1)
    for j, op in enumerate(ops[1:], 1):
        values[j] = op.forward([values[i] for i in op.inputs], affine)
        if seen is not None:
            seen(values[j])
        for i in op.inputs:
            if last[i] == j:
                values[i] = None
    return values[-1]


def _last_readers(ops: list[_Op]) -> dict[int, int]:
    """Each op's last reader, by index (the output, read by none, is kept)."""
    return {i: j for j, op in enumerate(ops) for i in op.inputs}


def _peak_entries(ops: list[_Op]) -> int:
    """The most entries of one sample :func:`_run` holds at once (its values' liveness)."""
    last, live, peak = _last_readers(ops), {0: math.prod(ops[0].shape)}, 0
    for j, op in enumerate(ops[1:], 1):
        live[j] = math.prod(op.shape)
        peak = max(peak, sum(live.values()))
        for i in op.inputs:
            if last[i] == j:
                live.pop(i, None)
    return max(peak, sum(live.values()))


def _check_against_the_model(model: nn.Module, ops: list[_Op], shape: tuple[int, ...],
                             least: torch.dtype) -> None:
    """The graph's reading, run on random batches of three and of one (the graph was read on
    a probe of two; one is the batch of the contract ``model(x[None])``), against the model's
    own forward: reviews and hunts found models it read wrong without a word (an in-place
    change through an alias, which torch.fx records as a new value; a value fixed at the
    probe's batch size; ``x.squeeze()``, which drops the batch axis of a batch of one).
    Their reading is refused instead. The comparison is at the precision of the least
    precise dtype the model holds or computes in (``least``, from the graph's values on its
    probe), relative to the largest value the graph computes (a difference of large values
    cancels)."""
    check_memory(8 * 3 * _peak_entries(ops), f"network_operator's check of the graph read "
                 f"off {_kind(model)} against its forward, on a batch of 3 (the float64 values "
                 "the graph holds at once)", "use a smaller input_shape")
    probe = probe_input(model, shape, batch=3)
    try:
        changed = changes_own_state(model, probe)
    except Exception:  # noqa: BLE001 - said by the forward's run on the batch, below
        changed = ""
    if changed:  # (each run starts from the state the model was given in; a later call
        # would start from another: self.n = self.n * 2 doubles the map on each call)
        raise TypeError(f"network_operator: {_kind(model)} {changed}")
    for batch in (probe, probe[:1]):
        _check_batch(model, ops, shape, least, batch)
    changed = inference_mode_change(model, probe)
    if changed:
        raise TypeError(f"network_operator: {_kind(model)} {changed}")


def _check_batch(model: nn.Module, ops: list[_Op], shape: tuple[int, ...], least: torch.dtype,
                 probe: torch.Tensor) -> None:
    """:func:`_check_against_the_model` on one batch."""
    count = len(probe)
    try:
        with torch.no_grad(), restored_state(model):
            theirs = model(probe.clone())
    except Exception as exc:  # noqa: BLE001 - a forward raises anything
        raise forward_failed(model, shape, exc, batch=count) from exc
    what = f"network_operator: the graph read off {_kind(model)}"
    if not isinstance(theirs, torch.Tensor):  # several outputs: flattened, concatenated
        parts = output_leaves(theirs) or []
        if parts and all(isinstance(t, torch.Tensor) and t.ndim and len(t) == count
                         for t in parts):
            theirs = torch.cat([t.reshape(count, -1) for t in parts], dim=1)  # (promoted)
    largest = [0.0]

    def seen(value: np.ndarray) -> None:
        if value.size:
            largest[0] = max(largest[0], float(np.abs(value).max()))

    try:
        out = _run(ops, probe.detach().cpu().to(torch.float64).numpy(), True, seen)
    except (ValueError, IndexError) as exc:  # shapes fixed at the probe's batch of two
        raise TypeError(f"{what} does not run on a batch of {count} ({exc}): a size read off "
                        "the batch (x.shape[0]) fixed in a value?") from exc
    floating = [t.dtype for t in (probe, *model.parameters(), *model.buffers())
                if t.is_floating_point()]  # (and ``least``: of the values on the probe)
    least = max([*floating, least], key=lambda d: torch.finfo(d).eps)
    magnitude = largest[0]
    ours = torch.from_numpy(np.ascontiguousarray(out))
    if isinstance(theirs, torch.Tensor) and (ours.shape != theirs.shape or tuple(
            theirs.shape) != (count, *ops[-1].shape)):
        raise TypeError(f"{what} gives shape {tuple(ours.shape)} on a random batch of {count} "
                        f"where its forward gives {tuple(theirs.shape)}: a size that depends on "
                        "the batch (x.squeeze(), which drops the batch axis of a batch of one: "
                        "squeeze(dim) keeps it; or a size read off x.shape[0], as a count of "
                        "x.repeat)")
    if not matches(ours.to(least), theirs, magnitude):
        difference = float((ours - theirs.detach().cpu().to(torch.float64)).abs().max()) \
            if ours.shape == theirs.shape else math.inf
        raise TypeError(f"{what} does not compute what its forward does on a random batch "
                        f"of {count} (largest difference {difference:.3g}, values up to "
                        f"{magnitude:.3g}): an operation read otherwise than PyTorch runs it"
                        f"{_nearest_hint(model, ops, least)}, or an in-place change seen "
                        "through another name or a view (y += z after kept = y), which "
                        "torch.fx records as a new value")


def _nearest_hint(model: nn.Module, ops: list[_Op], dtype: torch.dtype) -> str:
    """Where a float64 model resamples in a nearest mode, what may differ (a hunt: the
    message sent a user looking for an in-place change): the matrix reads the indices of
    PyTorch's float32 kernels, its float64 kernels other ones at some sizes."""
    nearest = any(nearest_in_float64(m, dtype) for m in model.modules()) or (
        dtype == torch.float64 and any(
            "interpolate" in op.name or "upsample" in op.name for op in ops))
    return NEAREST_FLOAT64_HINT if nearest else ""


def _run_adjoint(ops: list[_Op], g: np.ndarray) -> np.ndarray:
    grads: list = [None] * len(ops)
    grads[-1] = g
    for j in range(len(ops) - 1, 0, -1):
        if grads[j] is None:
            continue
        for i, gi in zip(ops[j].inputs, ops[j].backward(grads[j])):
            grads[i] = gi if grads[i] is None else grads[i] + gi
        grads[j] = None  # (read no more: its memory back)
    return np.zeros_like(g, shape=(g.shape[0], *ops[0].shape)) if grads[0] is None else grads[0]


class _GraphOperator(spla.LinearOperator):
    """The linear part of a traced network: forward through the graph, adjoint backwards."""

    def __init__(self, ops: list[_Op]):
        self.ops = ops
        self.input_shape, self.output_shape = ops[0].shape, ops[-1].shape
        super().__init__(np.float64, (math.prod(self.output_shape), math.prod(self.input_shape)))

    def _matmat(self, x):
        if np.iscomplexobj(x):  # a real map: the parts one after the other (cast to float64,
            # the imaginary part was dropped with only numpy's ComplexWarning; a hunt)
            return self._matmat(x.real) + 1j * self._matmat(x.imag)
        k, m = x.shape[1], self.shape[0]
        if not k:  # (no columns: the graph's ops need a batch; a review)
            return np.zeros((m, 0))
        y = _run(self.ops, np.asarray(x, np.float64).T.reshape(k, *self.input_shape), False)
        return y.reshape(k, m).T

    def _rmatmat(self, y):
        if np.iscomplexobj(y):
            return self._rmatmat(y.real) + 1j * self._rmatmat(y.imag)
        k, n = y.shape[1], self.shape[1]
        if not k:
            return np.zeros((n, 0))
        x = _run_adjoint(self.ops, np.asarray(y, np.float64).T.reshape(k, *self.output_shape))
        return x.reshape(k, n).T

    def _matvec(self, x):
        return self._matmat(x.reshape(-1, 1)).ravel()

    def _rmatvec(self, y):
        return self._rmatmat(y.reshape(-1, 1)).ravel()


@dataclass(frozen=True, eq=False)
class NetworkOperator(ReadOnlyState):
    """A linear network ``x -> operator @ x + offset``, from :func:`network_operator`.

    Attributes
    ----------
    names : tuple of str
        The graph's linear operations, first applied first: a module by its qualified name,
        a functional call (``add``, ``cat``, ``interpolate``, ...) by its torch.fx node name.
    input_shape, output_shape : tuple of int
    operator : scipy.sparse.linalg.LinearOperator
        The linear part, matrix-free where :func:`operator` is; its adjoint runs the graph
        backwards (the transposes of the operations, summed where a signal was used twice).
    offset : numpy.ndarray
        The network applied to zero: the biases (and added constants) carried to the output;
        read-only, as :class:`sparseconv.AffineMap`'s bias.

    Notes
    -----
    ``copy.deepcopy`` copies it, and ``pickle`` pickles it through cloudpickle (Dask installs
    it: ``pip install sparseconv[dask]``), as its graph's operations are closures over the
    traced model: a ``ProcessPoolExecutor``'s or a Dask worker's copy computes what it
    computes. Its pickle holds those closures' model and arrays by value (hundreds of MB for
    a ResNet-18's); building it again from the model in each process, or sending its
    explicit :meth:`affine` map, may be lighter.

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.AvgPool1d(2)).double().eval()
    >>> net = sct.network_operator(model, (1, 8))
    >>> net.names, net.input_shape, net.output_shape, net.operator.shape
    (('0', '1'), (1, 8), (2, 4), (8, 8))
    >>> x = np.random.default_rng(0).standard_normal(8)
    >>> y = model(torch.from_numpy(x).view(1, 1, 8)).detach().numpy().ravel()
    >>> bool(np.allclose(net(x), y)), bool(np.allclose(net.operator @ x + net.offset, y))
    (True, True)
    """

    names: tuple[str, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    operator: spla.LinearOperator
    offset: np.ndarray
    _ops: tuple = field(repr=False)

    def __reduce__(self) -> tuple[Callable[[bytes], NetworkOperator], tuple[bytes]]:
        try:
            import cloudpickle
        except ImportError as exc:  # (plain pickle: "Can't pickle local object", a lambda's)
            raise TypeError("a NetworkOperator pickles through cloudpickle (pip install "
                            "cloudpickle, or sparseconv[dask]): its graph's operations are "
                            "closures over the traced model") from exc
        return _unpickled, (cloudpickle.dumps(self.__getstate__()),)

    def __deepcopy__(self, memo: dict[int, Any]) -> NetworkOperator:
        copied = object.__new__(NetworkOperator)  # (as before there was a __reduce__: the
        copied.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # closures shared)
        return copied

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply to a flat input ``(n,)`` or to columns ``(n, k)``; :meth:`apply` takes
        arrays shaped as the model's input.

        Parameters
        ----------
        x : array_like, shape (n,) or (n, k)
            One flattened sample (C order of ``input_shape``), or ``k`` of them as columns.

        Returns
        -------
        numpy.ndarray, shape (m,) or (m, k)
            ``operator @ x + offset``: the model's output, flattened.

        Raises
        ------
        ValueError
            Any other shape; the message points to :meth:`apply`.

        Examples
        --------
        >>> import numpy as np, torch
        >>> import sparseconv.torch as sct
        >>> model = torch.nn.Conv1d(1, 1, 2, bias=False).double().eval()
        >>> with torch.no_grad():
        ...     _ = model.weight.fill_(1.0)
        >>> sct.network_operator(model, (1, 3))(np.array([1.0, 2.0, 3.0]))
        array([3., 5.])
        """
        x = np.asarray(x)
        n = self.operator.shape[1]
        if x.ndim not in (1, 2) or x.shape[0] != n:  # (a new user's trial: scipy printed
            # the whole array, or said "dimension mismatch")
            raise ValueError(
                f"net(x) takes one flat sample, x.ravel() of shape ({n},), or columns ({n}, k); "
                f"got shape {x.shape}: for an array shaped {self.input_shape} or (N, "
                f"{', '.join(map(str, self.input_shape))}) use net.apply(x)")
        return self.operator @ x + (self.offset if x.ndim == 1 else self.offset[:, None])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The network applied to an array shaped ``input_shape`` or ``(N, *input_shape)``
        (a batch, as the model takes it).

        Parameters
        ----------
        x : numpy.ndarray, shape input_shape or (N, *input_shape)
            One sample, or a batch of ``N``.

        Returns
        -------
        numpy.ndarray, shape output_shape or (N, *output_shape)
            The model's output, shaped as the model returns it.

        Raises
        ------
        ValueError
            An array of any other shape; the message names the shapes.

        Examples
        --------
        >>> import torch
        >>> import sparseconv.torch as sct
        >>> model = torch.nn.Conv2d(3, 4, 3, padding=1).double().eval()
        >>> net = sct.network_operator(model, (3, 8, 8))
        >>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        >>> bool(torch.allclose(torch.from_numpy(net.apply(x.numpy())), model(x)))
        True
        """
        y = sc.ConvOperator._shaped(x, self.input_shape, self.output_shape,
                                    self.operator.matmat, "apply")
        return y + self.offset.reshape(self.output_shape)

    def affine(self) -> sc.AffineMap:
        """The explicit :class:`sparseconv.AffineMap`.

        A chain is the product of its layers' matrices (:func:`sparseconv.compose`); a graph
        with sums or concatenations is the operator applied to the identity, a block of
        columns (or, when the output is smaller, of rows through the adjoint) at a time.

        Returns
        -------
        sparseconv.AffineMap
            ``x -> A @ x + b`` with ``A`` the operator as a CSR array and ``b`` the offset.

        Raises
        ------
        MatrixTooLargeError
            Its matrix, or the blocks it is computed by, over the memory limit.

        Examples
        --------
        >>> import numpy as np, torch
        >>> import sparseconv.torch as sct
        >>> model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(),
        ...                             torch.nn.Linear(8, 1)).double().eval()
        >>> net = sct.network_operator(model, (1, 6))
        >>> f = net.affine()
        >>> f.shape, bool(np.allclose(f(np.ones(6)), net(np.ones(6))))
        ((1, 6), True)
        """
        ops = self._ops
        if len(ops) == 1:  # a forward that returns its input (a review: compose of nothing)
            n = math.prod(ops[0].shape)
            return sc.AffineMap._fresh(sp.eye_array(n, format="csr"), self.offset.copy())
        if all(op.inputs == (i,) and op.layer is not None for i, op in enumerate(ops[1:])):
            return sc.compose(*(sc.AffineMap._fresh(op.layer.build("csr"),
                                                    op.layer.offset_in().copy())
                                for op in ops[1:]))
        m, n = self.operator.shape
        small = min(m, n)
        block = max(1, min(small, 2**22 // max(m, n)))
        check_memory(8 * block * max(m, n) * 3, "NetworkOperator.affine")
        if small == 0:  # (no columns to stack: an empty input or output, x.repeat(1, 0, ...)
            # or x[:, :0], a review)
            return sc.AffineMap._fresh(sp.csr_array((m, n)), self.offset.copy())
        columns = []
        for start in range(0, small, block):
            eye = np.zeros((small, min(block, small - start)))
            eye[start + np.arange(eye.shape[1]), np.arange(eye.shape[1])] = 1.0
            part = self.operator @ eye if n <= m else self.operator.H @ eye
            columns.append(sp.csc_array(part) if n <= m else sp.csr_array(part.T))
        matrix = sp.hstack(columns, format="csr") if n <= m else sp.vstack(columns, format="csr")
        return sc.AffineMap._fresh(matrix, self.offset.copy())

    def __matmul__(self, other: Any) -> Any:
        """``net @ x`` refused by name: the map is affine (numpy's "does not have enough
        dimensions", of an object array, named no operand)."""
        raise TypeError(_NOT_A_MATRIX)

    def __rmatmul__(self, other: Any) -> Any:
        raise TypeError(_NOT_A_MATRIX)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """``x @ net`` with a numpy array ``x``: refused as ``net @ x`` is; so is any other of
        numpy's operations (``x + net``: numpy's "returned NotImplemented" named none)."""
        raise TypeError(f"numpy's {ufunc.__name__} of a NetworkOperator: {_NOT_A_MATRIX}")


_NOT_A_MATRIX = ("a NetworkOperator is an affine map, not a matrix: apply it with net(x) "
                 "(operator @ x + offset) or net.apply(x), take its linear part as "
                 "net.operator (a LinearOperator: net.operator @ x, net.operator.H @ y), or its "
                 "explicit map as net.affine()")


def _unpickled(blob: bytes) -> NetworkOperator:
    """A :class:`NetworkOperator` from its state as :meth:`NetworkOperator.__reduce__` pickled
    it (cloudpickle's output, which ``pickle`` reads where cloudpickle is installed)."""
    made = object.__new__(NetworkOperator)
    made.__setstate__(pickle.loads(blob))
    return made


@torch.compiler.disable  # numpy and scipy by Python under torch.compile (see _torch_spectra)
@outside_inference_mode
@leaves_the_model
def network_operator(model: nn.Module, input_shape: Sequence[int]) -> NetworkOperator:
    """A network whose forward is linear (affine) as one matrix-free operator.

    The model is traced with ``torch.fx`` (``torch.fx.symbolic_trace``'s tracer, with every
    module :func:`matrix` supports kept whole), and each node of the graph becomes its linear
    map: modules through :func:`operator`; residual sums and differences (``x + f(x)``,
    ``torch.add``), products with constants, ``x @ W`` and ``W @ x`` by a constant matrix or
    vector (``torch.matmul``, ``torch.mm``), ``torch.einsum`` of the signal (once) and
    constant tensors, ``torch.where`` and ``masked_fill`` by a constant boolean mask,
    ``torch.cat`` (not along the batch),
    ``flatten``/``view``/``reshape``/``squeeze``/``unsqueeze``, ``permute`` and ``transpose``,
    ``x[:, ...]`` and ``x[..., a:b]`` indexing, ``sum``/``mean`` over non-batch axes, and the
    functional ``F.interpolate``, ``F.avg_pool*d``, ``F.adaptive_avg_pool*d``, ``F.pad``,
    ``F.pixel_(un)shuffle``, ``F.linear``, ``F.conv*d`` and ``F.conv_transpose*d`` (with
    constant weights), ``F.dropout`` (``training=False``) and torchvision's
    ``StochasticDepth`` outside training (the identity). Shapes (``x.size(0)``,
    ``x.shape``) are read from one probe forward pass on a batch of zeros. A model that
    returns several tensors (a tuple, list, dict or namedtuple of them, nested) is the map to
    all of them, each flattened and concatenated in order: ``output_shape`` is ``(total,)``
    and the last op is named ``"output"`` (the map whose norm :func:`lipschitz_report`'s
    network bound bounds).

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; any module whose forward torch.fx can trace.
    input_shape : tuple of int
        ``(C, *spatial)``, without the batch.

    Returns
    -------
    NetworkOperator
        ``net(x.ravel()) == model(x[None])[0].ravel()`` (several outputs: their flattened
        samples concatenated); ``net.operator`` is the matrix-free
        linear part (a ``LinearOperator`` with its adjoint), ``net.offset`` the biases'
        contribution, ``net.affine()`` the explicit :class:`sparseconv.AffineMap`.

    Raises
    ------
    TypeError
        A node that is not linear (``relu``, ``max_pool2d``, a product of two signals, a cast
        to an integer dtype) or not mapped, named with its torch.fx node; a model torch.fx
        cannot trace, with the reason; a graph that, run on a random batch, does not compute
        what the model does (an in-place change through an alias);
        a forward hook or pre-hook on any of its modules, or a global one (as
        :func:`matrix`); a ``forward`` set on the model's instance (torch.fx traces its
        class's); a tensor subclass in any node's value, or an active
        ``TorchFunctionMode`` or ``TorchDispatchMode`` (either may change what torch's
        functions compute); a ``model`` that is no ``torch.nn.Module``.
    ValueError
        A module in training mode whose forward may read its mode (BatchNorm, Dropout, a
        user's own module; torch's containers, layers and activations compute the same in
        both modes); shapes that do not fit (an ``input_shape`` on which the model's
        forward fails is also a RuntimeError, as before).

    Examples
    --------
    >>> import numpy as np, torch
    >>> import sparseconv.torch as sct
    >>> nn = torch.nn
    >>> class Residual(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(2, 2, 3, padding=1)
    ...     def forward(self, x):
    ...         return x + self.conv(x)
    >>> model = nn.Sequential(Residual(), nn.AvgPool2d(2), nn.Flatten(),
    ...                       nn.Linear(32, 3)).double().eval()
    >>> net = sct.network_operator(model, (2, 8, 8))
    >>> net.names
    ('0.conv', 'add', '1', '2', '3')
    >>> x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    >>> bool(np.allclose(net(x.numpy().ravel()), model(x).detach().numpy().ravel()))
    True
    >>> net.affine().shape
    (3, 128)
    """
    compiled = compiled_reason(model)
    if compiled:
        raise TypeError(f"network_operator: {compiled}")
    inner = unwrapped(model)
    if isinstance(inner, torch.jit.ScriptModule):  # (first: a new user's trial got "has a
        # __dir__ of its own set on the instance", of the check of instance methods; a
        # review, through DataParallel too)
        raise TypeError(f"network_operator: {_kind(inner)} is a TorchScript module, which "
                        "torch.fx cannot trace: pass the eager model (trace and "
                        "lipschitz_report take TorchScript models; the per-module functions "
                        "take a TorchScript module of one layer)")
    model = unwrapped(model)
    shape = _checked(model, input_shape, None)
    why = model_hook_reason(model)
    if why:
        raise TypeError(f"network_operator: {why} (the operator would not see it): remove it "
                        "first (handle.remove(), on the handle its registration returned)")
    why = instance_method_reason(model, type(model).__name__)
    if why:  # (torch.fx traces the class's forward: a new user's trial got "the graph read
        # off M does not compute what its forward does")
        raise TypeError(f"network_operator: {why}, which torch.fx does not trace (it traces "
                        "the class's forward): define the forward in a subclass instead")
    ops, least = _build_graph(model, shape)
    _check_against_the_model(model, ops, shape, least)
    operator_ = _GraphOperator(ops)
    offset = _run(ops, np.zeros((1, *shape)), True).ravel()
    offset.flags.writeable = False  # (as an AffineMap's bias; a new user's trial wrote it)
    return NetworkOperator(tuple(op.name for op in ops[1:]), shape, ops[-1].shape, operator_,
                           offset, tuple(ops))
