"""Checks for research scripts: is my operator's adjoint right, is my layer PyTorch's?

* :func:`dottest` -- the dot test of PyLops (``pylops.utils.dottest``): for random ``x`` and
  ``y``, ``<A x, y> == <x, A^H y>``, which holds for every ``x``, ``y`` exactly when ``rmatvec``
  is the adjoint of ``matvec``.
* :func:`assert_layer_matches_torch` -- a :class:`~sparseconv.ConvOperator` or
  :class:`~sparseconv.ConvTransposeOperator` against PyTorch itself: the forward product
  against ``torch.nn.functional.conv{1,2,3}d`` / ``conv_transpose{1,2,3}d`` (padding modes by
  ``F.pad``, ``flip`` by flipping the kernel, per-side padding by padding or cropping), and the
  adjoint against PyTorch's vector-Jacobian product (``torch.autograd.grad``).

``import sparseconv.testing`` does not import PyTorch: :func:`assert_layer_matches_torch`
imports it when called.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._memory import check_memory
from ._typing import ArrayLike, RNGLike, ShapeLike
from ._validation import as_bool, is_int, positive_int, real_number

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

    from ._operators import ConvOperator, ConvTransposeOperator

__all__ = ["assert_layer_matches_torch", "dottest"]

_TORCH_PAD_MODE = {"zeros": "constant", "circular": "circular", "reflect": "reflect",
                   "replicate": "replicate"}


def _generator(rng) -> np.random.Generator:
    """``numpy.random.default_rng(rng)``, refusing what it refuses with a message that names
    ``rng`` (numpy's own speaks of a SeedSequence)."""
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError):
        raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got "
                        f"{rng!r}") from None


def _random(rng, shape, complex_: bool) -> np.ndarray:
    x = rng.standard_normal(shape)
    return x + 1j * rng.standard_normal(shape) if complex_ else x


def dottest(op: LinearOperator, *, nr: int | None = None, nc: int | None = None,
            rtol: float = 1e-10, complexflag: Literal[0, 1, 2, 3] | None = None,
            raiseerror: bool = True, rng: RNGLike = None) -> bool:
    """The dot test: ``<A x, y> == <x, A^H y>`` for random ``x`` and ``y``.

    Parameters
    ----------
    op : scipy.sparse.linalg.LinearOperator, sparse array or ndarray
        Anything with ``shape``, ``matvec`` and ``rmatvec``, or a 2-D matrix (through
        :func:`scipy.sparse.linalg.aslinearoperator`).
    nr, nc : int, optional
        Rows and columns expected (PyLops' names); by default ``op.shape``. A mismatch is a
        ``ValueError``.
    rtol : float, optional
        Tolerance relative to ``|A x| |y| + |x| |A^H y|`` (the size of the two terms); use
        about ``1e-5`` for float32 operators.
    complexflag : {0, 1, 2, 3}, optional
        As PyLops: real ``x`` and ``y`` (0), complex ``x`` (1), complex ``y`` (2), both
        complex (3). By default 3 for a complex operator and 0 otherwise.
    raiseerror : bool, optional
        Raise ``AssertionError`` on failure (default), or return ``False``.
    rng : numpy.random.Generator or int, optional
        The random vectors' source.

    Returns
    -------
    bool
        ``True`` when the test passes (``False`` on failure with ``raiseerror=False``).

    Raises
    ------
    AssertionError
        The test fails; the message gives both inner products and the relative error.
    ValueError
        ``nr``/``nc`` differ from ``op.shape``, a bad ``complexflag``, ``rtol`` not a
        positive finite number.
    TypeError
        ``op`` neither an operator nor a matrix; ``raiseerror`` not a bool, ``rng`` neither a
        generator, a seed nor None.

    See Also
    --------
    assert_layer_matches_torch : the forward product and the adjoint against PyTorch.

    Notes
    -----
    With ``a = vdot(y, A x)`` and ``b = vdot(A^H y, x)``, the test passes when
    ``|a - b| <= rtol * (|A x| |y| + |x| |A^H y|)``. The scale is the size of the terms, not
    of ``a + b`` (PyLops' choice), so that two nearly cancelling products do not fail a
    correct operator.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import ConvOperator
    >>> from sparseconv.testing import dottest
    >>> A = ConvOperator(np.ones((2, 1, 3, 3)), (1, 8, 8), padding=1, padding_mode="reflect")
    >>> dottest(A, rng=0)
    True
    >>> dottest(A, complexflag=3, rng=0)
    True
    """
    if not (hasattr(op, "matvec") and hasattr(op, "rmatvec")):  # a matrix (a new user's
        # trial: dottest(conv_matrix(...)) raised AttributeError: no attribute 'matvec')
        from scipy.sparse.linalg import aslinearoperator

        try:
            op = aslinearoperator(op)
        except (TypeError, ValueError):
            raise TypeError(f"op must be a LinearOperator or a 2-D matrix, got "
                            f"{type(op).__name__}") from None
    shape = tuple(op.shape)
    for name, given, actual in (("nr", nr, shape[0]), ("nc", nc, shape[1])):
        if given is not None and given != actual:
            raise ValueError(f"{name}={given} does not match op.shape={shape}")
    if complexflag is None:
        complexflag = 3 if np.dtype(op.dtype).kind == "c" else 0
    if not is_int(complexflag) or complexflag not in (0, 1, 2, 3):  # (not True: a new user's
        # trial found it taken as 1)
        raise ValueError(f"complexflag must be 0, 1, 2 or 3, got {complexflag!r}")
    # (a new user's trial: rtol=-1 failed every layer, as a failed dot test)
    rtol = real_number(rtol, "rtol", low=0.0, low_open=True)
    raiseerror = as_bool(raiseerror, "raiseerror")
    rng = _generator(rng)
    x = _random(rng, shape[1], complexflag in (1, 3))
    y = _random(rng, shape[0], complexflag in (2, 3))
    ax, ahy = np.asarray(op.matvec(x)).ravel(), np.asarray(op.rmatvec(y)).ravel()
    forward, adjoint = np.vdot(y, ax), np.vdot(ahy, x)
    scale = (np.linalg.norm(ax) * np.linalg.norm(y) + np.linalg.norm(ahy) * np.linalg.norm(x))
    error = abs(forward - adjoint)
    if error <= rtol * scale:
        return True
    if raiseerror:
        raise AssertionError(
            f"dot test failed: <A x, y> = {forward:.12g} but <x, A^H y> = {adjoint:.12g} "
            f"(relative error {error / scale if scale else math.inf:.3g} > rtol={rtol:g})")
    return False


def _layer(layer):
    """An operator from an operator or a ``(weight, input_shape, kwargs)`` description."""
    from ._operators import ConvOperator, ConvTransposeOperator

    if isinstance(layer, (ConvOperator, ConvTransposeOperator)):
        return layer
    if isinstance(layer, tuple) and len(layer) == 3:
        weight, input_shape, kwargs = layer
        if not isinstance(kwargs, Mapping):  # (a review: "'NoneType' object is not iterable")
            raise TypeError(f"layer must be (weight, input_shape, kwargs) with kwargs a mapping "
                            f"of the layer's keyword arguments ({{}} for none), got kwargs="
                            f"{kwargs!r}")
        kwargs = dict(kwargs)
        # (a new user's trial: "False", a true string, built a transposed layer)
        transposed = as_bool(kwargs.pop("transposed", False), "transposed")
        cls = ConvTransposeOperator if transposed else ConvOperator
        return cls(weight, input_shape, **kwargs)
    raise TypeError("layer must be a ConvOperator, a ConvTransposeOperator or a (weight, "
                    f"input_shape, kwargs) tuple, got {type(layer).__name__}")


def _torch_layer(op, torch):
    """The layer as a function of a torch batch ``(n, C, *spatial)``, by PyTorch alone."""
    import torch.nn.functional as F

    from ._operators import ConvTransposeOperator

    geom = op.geometry
    ndim = geom.ndim
    wide = np.complex128 if np.dtype(op.dtype).kind == "c" else np.float64
    weight = torch.from_numpy(np.array(op.weight, dtype=wide, order="C", copy=True))
    module = _torch_module(op, weight, torch)
    if module is not None:
        return module
    if isinstance(op, ConvTransposeOperator):
        def apply(x):  # the full transposed convolution, then PyTorch's padding as a crop
            full = getattr(F, f"conv_transpose{ndim}d")(
                x, weight, stride=geom.stride, dilation=geom.dilation, groups=geom.groups)
            # positions past the full output (output_padding) receive no tap: zeros
            extra = [max(0, lo + n - m) for (lo, _), n, m in
                     zip(geom.padding, geom.input_size, full.shape[2:])]
            full = F.pad(full, [v for e in reversed(extra) for v in (0, e)])
            crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(geom.padding, geom.input_size))
            return full[(slice(None), slice(None), *crop)]
        return apply
    if geom.flip:
        weight = torch.flip(weight, dims=tuple(range(2, 2 + ndim)))

    def apply(x):
        pads = [v for pair in reversed(geom.padding) for v in pair]
        if any(pads):
            x = F.pad(x, pads, mode=_TORCH_PAD_MODE[geom.padding_mode])
        return getattr(F, f"conv{ndim}d")(x, weight, stride=geom.stride,
                                          dilation=geom.dilation, groups=geom.groups)
    return apply


def _torch_module(op: Any, weight: Any, torch: Any) -> Any:
    """PyTorch's own module of the layer (``nn.Conv2d``, ``nn.ConvTranspose2d``, ...) where
    its padding is the same on both sides of every axis and the kernel is not flipped: the
    padding mode and the output size are then PyTorch's, not read back from the operator's
    geometry (a new user's trial: a mistake there would have been copied into the
    reference); None for a layer PyTorch's modules cannot express (per-side padding)."""
    from ._operators import ConvTransposeOperator
    from ._shapes import unpadded_transpose_sizes

    geom = op.geometry
    if geom.flip or any(lo != hi for lo, hi in geom.padding):
        return None
    transposed = isinstance(op, ConvTransposeOperator)
    kwargs: dict[str, Any] = dict(stride=geom.stride, padding=tuple(lo for lo, _ in geom.padding),
                                  dilation=geom.dilation, groups=geom.groups, bias=False,
                                  dtype=weight.dtype)
    if transposed:  # its output size through output_padding, which PyTorch checks
        natural = unpadded_transpose_sizes(geom.output_size, geom.kernel_size, geom.stride,
                                           geom.dilation, geom.padding)
        kwargs["output_padding"] = tuple(n - m for n, m in zip(geom.input_size, natural))
        if geom.padding_mode != "zeros":
            return None
        channels = (geom.out_channels, geom.in_channels)
    else:
        kwargs["padding_mode"] = geom.padding_mode
        channels = (geom.in_channels, geom.out_channels)
    kind = "ConvTranspose" if transposed else "Conv"
    module = getattr(torch.nn, f"{kind}{geom.ndim}d")(*channels, geom.kernel_size, **kwargs)
    with torch.no_grad():
        module.weight.copy_(weight)
    return module


def assert_layer_matches_torch(
    layer: ConvOperator | ConvTransposeOperator | tuple[ArrayLike, ShapeLike, Mapping[str, Any]],
    *, rtol: float = 1e-10, n_inputs: int = 3, rng: RNGLike = None,
) -> None:
    """Assert that an operator is PyTorch's layer: its forward product and its adjoint.

    Parameters
    ----------
    layer : ConvOperator, ConvTransposeOperator, or tuple
        The operator, or a description ``(weight, input_shape, kwargs)`` of a
        :class:`~sparseconv.ConvOperator` (of a :class:`~sparseconv.ConvTransposeOperator` when
        ``kwargs`` holds ``transposed=True``).
    rtol : float, optional
        Largest error allowed, relative to the largest entry of PyTorch's result (at least 1).
    n_inputs : int, optional
        Number of random inputs, checked as one batch (columns of ``matmat``).
    rng : numpy.random.Generator or int, optional

    Raises
    ------
    AssertionError
        The forward product differs from ``torch.nn.functional.conv{d}d`` /
        ``conv_transpose{d}d``, or the adjoint (``rmatmat``) from PyTorch's vector-Jacobian
        product; the message names the layer and the error.
    ImportError
        PyTorch is not installed (``pip install torch``).
    ValueError, TypeError
        A layer with more than 3 spatial dimensions (PyTorch has no ``conv4d``), ``rtol`` not
        a positive finite number, ``n_inputs`` not a positive integer, a bad ``rng``.

    See Also
    --------
    dottest : the adjoint against the forward product, without PyTorch.

    Notes
    -----
    PyTorch computes in float64 (complex128 for complex weights) on random inputs; the
    operator multiplies the same inputs, so float32 weights are compared exactly too. Where
    the padding is the same on both sides of every axis and the kernel is not flipped, the
    reference is PyTorch's own module (``torch.nn.Conv2d``, ``torch.nn.ConvTranspose2d``,
    ...), whose padding mode and output size are its own. Otherwise padding modes other
    than zeros are ``F.pad`` before the convolution, as ``torch.nn.Conv2d`` does;
    ``flip=True`` flips the kernel; a transposed layer's (per-side) padding crops PyTorch's
    full transposed convolution. The adjoint is checked against ``torch.autograd.grad`` with
    random output cotangents ``v``: for a linear map ``A``, the gradient is ``A^H v``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import ConvOperator
    >>> from sparseconv.testing import assert_layer_matches_torch
    >>> w = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    >>> assert_layer_matches_torch(ConvOperator(w, (2, 9, 9), stride=2, padding=1,
    ...                                         padding_mode="circular"))
    >>> assert_layer_matches_torch((w, (4, 5, 5), dict(stride=2, output_padding=1,
    ...                                                transposed=True)))
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without PyTorch
        raise ImportError("assert_layer_matches_torch needs PyTorch: pip install torch") from exc

    op = _layer(layer)
    if op.geometry.ndim > 3:  # (a new user's trial: AttributeError, no conv4d in torch)
        raise ValueError(f"assert_layer_matches_torch compares with PyTorch's conv1d, conv2d "
                         f"and conv3d; {op!r} has {op.geometry.ndim} spatial dimensions")
    rtol = real_number(rtol, "rtol", low=0.0, low_open=True)
    n_inputs = positive_int(n_inputs, "n_inputs")
    rng = _generator(rng)
    complex_ = np.dtype(op.dtype).kind == "c"
    _check_batch(op, n_inputs, complex_)
    apply = _torch_layer(op, torch)

    # PyTorch's arrays are (N, C, *spatial); a channels-last operator flattens (*spatial, C)
    last = getattr(op, "layout", "channels_first") == "channels_last"

    def columns(a):  # (N, C, *spatial) -> the operator's flat columns
        a = np.moveaxis(a, 1, -1) if last else a
        return np.ascontiguousarray(a).reshape(len(a), -1).T

    def arrays(cols, dims):  # the operator's flat columns -> (N, C, *spatial)
        a = cols.T.reshape(n_inputs, *dims)
        return np.moveaxis(a, -1, 1) if last else a

    x = _random(rng, (n_inputs, *op.input_shape), complex_)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = apply(xt)
    expected = yt.detach().numpy()
    got = arrays(op.matmat(columns(x)), op.dimsd)
    _assert_close(got, expected, rtol, f"the forward product of {op!r}")

    v = _random(rng, expected.shape, complex_)
    (grad,) = torch.autograd.grad(yt, xt, grad_outputs=torch.from_numpy(v))
    adjoint = arrays(op.rmatmat(columns(v)), op.dims)
    _assert_close(adjoint, grad.numpy(), rtol, f"the adjoint (rmatmat) of {op!r}")


def _check_batch(op, n_inputs: int, complex_: bool) -> None:
    """Refuse a batch of ``n_inputs`` whose arrays would not fit the memory limit, before any
    is made (a review: 20,000 inputs of a 2x64x64 layer took 5 GB and 39 s to fail in torch):
    the inputs, outputs, cotangents and gradients on each side, and PyTorch's unfolded input
    (``C_in/groups * prod(kernel)`` values per output position and group)."""
    geom = op.geometry  # (a transposed layer's: the convolution it transposes, as large)
    sides = sum(op.shape)  # one input and one output, flat
    unfolded = geom.in_channels * math.prod(geom.kernel_size) * math.prod(geom.output_size)
    itemsize = 16 if complex_ else 8
    check_memory(itemsize * n_inputs * (4 * sides + unfolded),
                 f"{n_inputs} random inputs of {op!r} with their products, here and in PyTorch",
                 "use a smaller n_inputs")


def _assert_close(got, expected, rtol, what):
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {got.shape}, PyTorch's {expected.shape}")
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    error = float(np.abs(got - expected).max(initial=0))
    if not error <= rtol * scale:
        raise AssertionError(f"{what} differs from PyTorch's by {error:.3g} (scale {scale:.3g},"
                             f" rtol={rtol:g})")
