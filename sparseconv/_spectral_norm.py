"""The spectral norm of any convolution layer, with a certified interval.

The layer's matrix ``A`` has ``||A|| = sigma_max``. Three facts give a certified interval:

* **Lower bound.** Any Rayleigh quotient ``||A u|| / ||u||`` is at most ``||A||``. ARPACK's
  Lanczos iteration on ``A^H A`` (matrix-free, :class:`ConvOperator`) is started from the top
  singular vector of the periodic layer, restricted to the input and windowed, and the
  quotient of the vector it returns is evaluated explicitly.
* **Circulant embedding.** A zero-padded layer is the restriction ``P C Z`` of a strided
  circular layer ``C`` on any grid ``N`` with no wrap-around: ``N >= n + max(pad_lo, reach)``
  (left and right pads can share one gap of zeros), ``N > (m-1)*stride``, ``N`` a multiple of
  the stride. So ``||A|| <= ||C|| = max_xi sigma_max(H(xi))``, exact by FFT.
* **Exact sections.** Embedding all axes but one, ``e``, makes ``A`` block diagonal over the
  frequencies of the other axes: each block is a 1-D zero-padded multi-channel layer along
  ``e`` whose Gram matrix is banded. ``lambda_max(G) < mu`` holds exactly when ``mu I - G``
  has a Cholesky factorization, which certifies ``mu`` in ``O(len * band^2)``: the
  boundary of axis ``e`` is then treated exactly, not approximated by periodicity. Blocks
  are visited by decreasing circulant bound, and only while one could still raise the
  maximum.

A second, looser upper bound is the Toeplitz symbol's supremum (Araujo et al., AAAI 2021),
made rigorous between grid points by the symbol's Lipschitz constant. Every bound is
widened by a relative ``_SLACK`` for floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import LinAlgError, cholesky_banded

from ._geometry import ConvGeometry
from ._memory import check_memory
from ._operators import ConvOperator
from ._spectra import singular_values
from ._symbol import (
    conjugate_pairs,
    is_periodic,
    layer_geometry,
    per_frequency,
    periodic_padding,
    symbol_at,
    top_per_frequency,
)

__all__ = ["SpectralNorm", "spectral_norm"]

_SLACK = 1e-12  # relative allowance for rounding in every certified bound
#: ``method="auto"`` uses a dense SVD for matrices with at most this many rows or columns.
DENSE_LIMIT = 1024


@dataclass(frozen=True)
class SpectralNorm:
    """The spectral norm of a layer and a certified interval ``lower <= ||A|| <= upper``.

    Attributes
    ----------
    value : float
        The estimate: exact for ``method`` "fft" and "dense", else the lower bound (a
        Rayleigh quotient, accurate to the Lanczos tolerance).
    lower, upper : float
        Certified bounds (up to a relative ``1e-12`` allowance for rounding).
    method : str
        "fft", "dense" or "bounds".
    bounds : dict
        Every upper bound computed, by name, for comparison.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import spectral_norm
    >>> r = spectral_norm(np.ones((1, 1, 3)), (1, 16), padding="same", padding_mode="circular")
    >>> r.method, round(float(r), 12)            # periodic: exact by FFT, the kernel's sum
    ('fft', 3.0)
    >>> bool(r.lower <= 3.0 <= r.upper)
    True
    """

    value: float
    lower: float
    upper: float
    method: str
    bounds: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    @property
    def relative_width(self) -> float:
        """``(upper - lower) / upper``."""
        return (self.upper - self.lower) / self.upper


# ---------------------------------------------------------------------------------------------
# Upper bounds.
# ---------------------------------------------------------------------------------------------
def _embedding_grid(geom: ConvGeometry) -> list[int]:
    """The smallest periodic grid per axis into which the zero-padded layer embeds."""
    grid = []
    for a in geom.axes:
        total = a.dilation * (a.kernel_size - 1)  # the circular layer pads total - total//2
        # the input sits at 0..n-1: reads reach back to -pad_lo and forward to span-1-pad_lo
        need = max(a.size + a.pad[0], a.span - a.pad[0], (a.output_size - 1) * a.stride + 1,
                   total - total // 2)
        grid.append(-(-need // a.stride) * a.stride)
    return grid


def _periodic(weight_shape, geom: ConvGeometry, grid: Sequence[int]) -> ConvGeometry:
    """The circular layer with the same kernel, stride, dilation and groups on ``grid``."""
    return ConvGeometry.from_weight(
        weight_shape, (geom.in_channels, *grid), stride=geom.stride, dilation=geom.dilation,
        groups=geom.groups, padding=periodic_padding(geom.kernel_size, geom.dilation),
        padding_mode="circular",
    )


def _circulant_tops(weight, geom: ConvGeometry, grid) -> np.ndarray:
    """``sigma_max`` of the circulant embedding per frequency and group, ``(*grid/s, groups)``.

    For a real kernel only one frequency of each pair ``{xi, -xi}`` is computed:
    ``H(-xi) = conj(H(xi))``.
    """
    periodic = _periodic(weight.shape, geom, grid)
    full_grid = [n // s for n, s in zip(grid, geom.stride)]
    if weight.dtype.kind == "c":
        frequencies = np.indices(full_grid).reshape(len(full_grid), -1).T
    else:
        frequencies, _ = conjugate_pairs(full_grid)
    top = per_frequency(periodic, weight, frequencies, top_per_frequency)  # (F, groups)
    full = np.empty((*full_grid, top.shape[-1]))
    full[tuple(frequencies.T)] = top
    full[tuple(((-frequencies) % full_grid).T)] = top  # real kernel: sigma(-xi) = sigma(xi)
    return full


def _section_kernels(weight, geom: ConvGeometry, grid, axis: int, xi: tuple) -> list:
    """Kernels of the 1-D layers along ``axis`` at frequency ``xi`` of the other axes.

    Embedding every other axis periodically on ``grid`` makes the layer block diagonal over
    their frequencies; the block at ``xi`` is a 1-D layer along ``axis`` whose tap ``t`` is
    the symbol, over the other axes, of the weight's slice at ``t``. One ``(C_out/g,
    C_in/g * phases, k)`` kernel per group.
    """
    others = [d for d in range(geom.ndim) if d != axis]
    k, c_out, groups = geom.kernel_size[axis], geom.out_channels, geom.groups
    if not others:
        w = weight.reshape(groups, c_out // groups, *weight.shape[1:])
        return [w[g] for g in range(groups)]
    # taps along `axis` become output channels (o, t) of a layer over the other axes
    w = np.moveaxis(weight, 2 + axis, 1).reshape(c_out * k, weight.shape[1],
                                                 *[geom.kernel_size[d] for d in others])
    sub = ConvGeometry.from_weight(
        w.shape, (geom.in_channels, *[grid[d] for d in others]),
        stride=[geom.stride[d] for d in others], dilation=[geom.dilation[d] for d in others],
        groups=groups, padding_mode="circular",
        padding=periodic_padding([geom.kernel_size[d] for d in others],
                                 [geom.dilation[d] for d in others]),
    )
    h = symbol_at(sub, w, [xi])[0]  # (groups, C_out/g * k, C_in/g * phases)
    return [h[g].reshape(c_out // groups, k, -1).transpose(0, 2, 1) for g in range(groups)]


def _section_gram(kernel: np.ndarray, axis) -> sp.csr_array:
    """``T^H T`` of the 1-D layer ``T`` with ``kernel`` on ``axis``, in position-major order.

    Taps ``t`` and ``u`` of one output read input positions ``p`` and ``q`` (the axis's
    gather map): they add ``K_t^H K_u`` to block ``(p, q)``. Rows and columns are ordered
    ``p * channels + c``, so the matrix is banded.
    """
    taps = axis.tap_index()  # (outputs, k), -1 reads zero padding
    channels, k = kernel.shape[1], kernel.shape[2]
    products = np.einsum("oat,obu->tuab", np.conj(kernel), kernel)  # (k, k, C, C)
    pairs, blocks = [], []
    for t in range(k):
        for u in range(k):
            both = (taps[:, t] >= 0) & (taps[:, u] >= 0)
            pairs.append(np.stack([taps[both, t], taps[both, u]], axis=1))
            blocks.append(np.broadcast_to(products[t, u], (int(both.sum()), channels, channels)))
    pairs, blocks = np.concatenate(pairs), np.concatenate(blocks)
    ch = np.arange(channels)
    rows = pairs[:, 0, None, None] * channels + ch[None, :, None]
    cols = pairs[:, 1, None, None] * channels + ch[None, None, :]
    size = axis.size * channels
    # coo -> csr sums the contributions of all (t, u) pairs to one block
    return sp.coo_array((blocks.ravel(), (np.broadcast_to(rows, blocks.shape).ravel(),
                                          np.broadcast_to(cols, blocks.shape).ravel())),
                        shape=(size, size)).tocsr()


def _below(gram: sp.csr_array, mu: float) -> bool:
    """Whether ``lambda_max(gram) < mu``: ``mu I - gram`` has a Cholesky factorization."""
    lower = sp.tril(gram).tocoo()
    offset = lower.row - lower.col
    band = np.zeros((int(offset.max(initial=0)) + 1, gram.shape[0]), dtype=gram.dtype)
    band[offset, lower.col] = -lower.data
    band[0] += mu
    try:
        cholesky_banded(band, lower=True, check_finite=False)
    except LinAlgError:
        return False
    return True


def _top_eigenpair(gram: sp.csr_array) -> tuple[float, np.ndarray]:
    if gram.shape[0] <= 64:
        lam, vec = np.linalg.eigh(gram.toarray())
        return float(lam[-1]), vec[:, -1]
    # a fixed random start has a component along every eigenvector (ones may not)
    v0 = np.random.default_rng(0).standard_normal(gram.shape[0]).astype(gram.dtype)
    lam, vec = spla.eigsh(gram, k=1, which="LA", tol=1e-13, v0=v0)
    return float(lam[0]), vec[:, 0]


@dataclass
class _Witness:
    """The block that set a section bound: where it is and its top eigenvector."""

    value: float
    axis: int
    xi: tuple
    group: int
    vector: np.ndarray  # position-major: p * channels + c


def _section_bound(weight, geom: ConvGeometry, grid, rows: np.ndarray, axis: int,
                   beat: float) -> tuple[float, dict]:
    """Upper bound on ``||A||`` with ``axis`` exact and the other axes periodic on ``grid``.

    ``rows[xi]`` bounds the block at frequency ``xi`` of the other axes (its circulant
    bound). Blocks are visited by decreasing ``rows``: each one is proved below the current
    candidate ``mu`` by one Cholesky factorization, and a block that fails raises ``mu`` to
    its own certified top eigenvalue. The visit ends when no block left can exceed ``mu``,
    or early once ``mu`` passes ``beat`` (another bound, which then wins); the result bounds
    ``||A||`` either way. Also returns, per group, the block with the largest computed top
    eigenvalue (the witnesses, to start the lower bound from).
    """
    mu, witnesses = 0.0, {}
    order = np.argsort(rows, axis=None)[::-1]
    for flat in order:
        if rows.flat[flat] ** 2 <= mu:
            break  # this block and all later ones are below mu already
        if mu >= beat**2:
            return max(math.sqrt(mu), float(rows.flat[flat])), witnesses
        xi = tuple(int(i) for i in np.unravel_index(flat, rows.shape))
        for group, kernel in enumerate(_section_kernels(weight, geom, grid, axis, xi)):
            gram = _section_gram(kernel, geom.axes[axis])
            if mu > 0 and _below(gram, mu):
                continue
            lam, vector = _top_eigenpair(gram)
            for delta in (1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0):
                if _below(gram, max(lam, 1e-300) * (1 + delta)):
                    mu = max(mu, lam * (1 + delta))
                    break
            else:  # pragma: no cover - Lanczos does not miss by a factor of two
                return math.inf, witnesses
            if group not in witnesses or lam > witnesses[group].value:
                witnesses[group] = _Witness(lam, axis, xi, group, vector)
    xi = tuple(int(i) for i in np.unravel_index(order[0], rows.shape))
    for group, kernel in enumerate(_section_kernels(weight, geom, grid, axis, xi)):
        if group not in witnesses:  # every group needs a start: the layer is block diagonal
            lam, vector = _top_eigenpair(_section_gram(kernel, geom.axes[axis]))
            witnesses[group] = _Witness(lam, axis, xi, group, vector)
    return math.sqrt(mu) * (1 + _SLACK), witnesses


def _toeplitz_bound(weight, geom: ConvGeometry, grid, top: np.ndarray) -> float:
    """``sup_omega sigma_max(H(omega))`` of the stride-1 layer, rigorously from a grid.

    With taps centred, moving ``omega`` by ``h_d`` per axis changes the symbol by at most
    ``sum_t ||W_t|| sum_d |u_{t,d}| h_d``, and every ``omega`` is within ``pi / grid_d`` of
    the grid per axis. A strided layer subsamples the stride-1 one: same bound. ``top`` are
    the circulant maxima on ``grid``, the stride-1 symbol's samples when the stride is 1.
    """
    if any(s != 1 for s in geom.stride):
        stride_one = ConvGeometry.from_weight(
            weight.shape, (geom.in_channels, *grid), dilation=geom.dilation,
            groups=geom.groups, padding_mode="circular",
            padding=periodic_padding(geom.kernel_size, geom.dilation))
        top = top_per_frequency(symbol_at(stride_one, weight))
    taps = weight.reshape(weight.shape[0], weight.shape[1], -1)
    out_per_group = geom.out_channels // geom.groups
    reach = 0.0
    for t, tap in enumerate(np.ndindex(*geom.kernel_size)):
        norm = max(np.linalg.norm(taps[g * out_per_group:(g + 1) * out_per_group, :, t], 2)
                   for g in range(geom.groups))
        offsets = [abs(i - (a.kernel_size - 1) / 2) * a.dilation for i, a in zip(tap, geom.axes)]
        reach += norm * sum(u * math.pi / n for u, n in zip(offsets, grid))
    return float((top.max() + reach) * (1 + _SLACK))


# ---------------------------------------------------------------------------------------------
# Lower bound.
# ---------------------------------------------------------------------------------------------
def _start_vector(geom: ConvGeometry, grid, witnesses: dict) -> np.ndarray:
    """A near-optimal input from the witness blocks: in each group, exact along the witness's
    axis and a windowed wave at its frequency along the others (the block's input in the
    periodic embedding)."""
    c_in = geom.in_channels // geom.groups
    positions = np.indices(geom.input_size)
    x = np.zeros((geom.in_channels, *geom.input_size), dtype=complex)
    for witness in witnesses.values():
        others = [d for d in range(geom.ndim) if d != witness.axis]
        n_e = geom.input_size[witness.axis]
        profile = witness.vector.reshape(n_e, c_in, *[geom.stride[d] for d in others])
        wave = 1.0
        for d, xi in zip(others, witness.xi):
            a, m = geom.axes[d], grid[d] // geom.axes[d].stride
            wave = wave * np.exp(2j * np.pi * (positions[d] // a.stride) * xi / m)
            wave = wave * np.sin(np.pi * (positions[d] + 1) / (a.size + 1))
        # profile[p_e, c, phases of the other axes] at every input position
        index = (positions[witness.axis], slice(None),
                 *(positions[d] % geom.axes[d].stride for d in others))
        values = np.moveaxis(profile[index], -1, 0) * wave  # (c, *input_size)
        norm = np.linalg.norm(values)
        x[witness.group * c_in:(witness.group + 1) * c_in] = values / (norm if norm else 1.0)
    return x.ravel()


def _lanczos(op, start: np.ndarray, tol: float, maxiter: int) -> np.ndarray:
    """Top Ritz vector of ``A^H A`` by Lanczos with full reorthogonalization, from ``start``.

    Stops when the top Ritz value has moved less than ``tol`` (relative) over 10 steps, or
    at an invariant subspace, or after ``maxiter`` steps. No restarts: each step costs one
    product with ``A`` and one with ``A^H``, plus the reorthogonalization.
    """
    n = op.shape[1]
    basis = np.empty((maxiter + 1, n), dtype=np.result_type(op.dtype, start.dtype))
    check_memory(basis.nbytes, "the Lanczos basis of spectral_norm")
    basis[0] = start / np.linalg.norm(start)
    alpha, beta, history, ritz = [], [], [], np.ones(1)
    for j in range(maxiter):
        w = op.rmatvec(op.matvec(basis[j]))
        alpha.append(float(np.vdot(basis[j], w).real))
        for _ in range(2):  # classical Gram-Schmidt, twice, against the whole basis
            w = w - basis[:j + 1].T @ (basis[:j + 1].conj() @ w)
        tridiagonal = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        values, vectors = np.linalg.eigh(tridiagonal)
        history.append(values[-1])
        ritz = vectors[:, -1]
        norm = float(np.linalg.norm(w))
        if norm <= 1e-14 * abs(values[-1]) or (
                j >= 10 and history[-1] - history[-11] <= tol * history[-1]):
            break
        beta.append(norm)
        basis[j + 1] = w / norm
    return basis[:len(ritz)].T @ ritz


def _lower_bound(op: ConvOperator, start: np.ndarray, tol: float, maxiter: int = 150) -> float:
    """A Rayleigh quotient of ``A``: Lanczos from ``start``, evaluated exactly.

    Lanczos runs on the Gram matrix of the smaller side (``A^H A`` or ``A A^H``); tiny layers
    use the explicit Gram matrix. The quotient ``||A u|| / ||u||`` of each candidate ``u`` is a
    lower bound on ``||A||`` whatever its accuracy.
    """
    rows, cols = op.shape
    if rows < cols:  # the same singular values; iterate on outputs instead
        op, start = op.H, op.matvec(start)
        rows, cols = cols, rows
    v0 = start.real if op.dtype.kind != "c" else start
    if np.linalg.norm(v0) == 0:
        v0 = np.random.default_rng(0).standard_normal(cols)
    candidates = [v0]
    if cols <= 64:
        columns = op.matmat(np.eye(cols, dtype=op.dtype))
        candidates.append(np.linalg.eigh(np.conj(columns.T) @ columns)[1][:, -1])
    else:
        candidates.append(_lanczos(op, v0, tol, min(maxiter, cols)))
    return max(float(np.linalg.norm(op.matvec(u)) / np.linalg.norm(u)) for u in candidates
               if np.linalg.norm(u) > 0)


# ---------------------------------------------------------------------------------------------
# The public function.
# ---------------------------------------------------------------------------------------------
def _exact(value: float, method: str) -> SpectralNorm:
    return SpectralNorm(value, value * (1 - _SLACK), value * (1 + _SLACK), method)


def _zero_padded_bounds(weight, geom: ConvGeometry, op: ConvOperator, tol: float):
    grid = _embedding_grid(geom)
    top = _circulant_tops(weight, geom, grid)
    bounds = {"circulant": float(top.max()) * (1 + _SLACK),
              "toeplitz": _toeplitz_bound(weight, geom, grid, top)}
    per_frequency, best = top.max(axis=-1), {}
    for axis in range(geom.ndim):
        # 1-D: no other axis, the layer itself is the one block, proved exactly
        rows = per_frequency.max(axis=axis) if geom.ndim > 1 else np.array([math.inf])
        value, witnesses = _section_bound(weight, geom, grid, rows, axis, min(bounds.values()))
        bounds[f"exact axis {axis}"] = value
        if witnesses and value <= min(bounds.values()):
            best = witnesses
    start = _start_vector(geom, grid, best) if best else np.ones(op.shape[1])
    upper = min(bounds.values())
    return min(_lower_bound(op, start, tol), upper), upper, bounds


def spectral_norm(
    weight, input_shape: Sequence[int], *, stride=1, padding=0, dilation=1, groups: int = 1,
    padding_mode: str = "zeros", method: str = "auto", tol: float = 1e-7,
) -> SpectralNorm:
    """The largest singular value of a layer's matrix, with a certified interval.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    stride, padding, dilation, groups, padding_mode
        As :func:`sparseconv.conv_matrix` (``padding=None``: the periodic padding of
        :func:`sparseconv.singular_values`).
    method : {"auto", "fft", "dense", "bounds"}
        ``"fft"``: exact, for periodic circular layers. ``"dense"``: SVD of the explicit
        matrix. ``"bounds"``: a Lanczos lower bound and certified upper bounds (zero padding:
        tight; reflect, replicate and non-periodic circular padding: the padding's own norm
        times the bound of the unpadded layer, looser). ``"auto"``: ``"fft"`` when it applies,
        else ``"dense"`` up to ``DENSE_LIMIT`` rows or columns, else ``"bounds"``.
    tol : float
        The Lanczos iteration behind the lower bound stops when its estimate moves less than
        ``tol`` (relative) in 10 steps (at most 150 steps).

    Returns
    -------
    SpectralNorm
        ``value``, and ``lower <= ||A||_2 <= upper`` (``bounds`` lists each upper bound).

    Raises
    ------
    ValueError
        Invalid layer arguments or ``method``.

    See Also
    --------
    singular_values : all singular values, exactly, where that is affordable.

    Notes
    -----
    Costs, for ``N`` the embedding grid: the circulant bound is one FFT and
    ``prod(N/s)`` eigenvalue problems of size ``C/g``; each exact section is a banded Cholesky
    of size ``n_e * C_in/g * s^(d-1)`` and bandwidth ``C_in/g * s^(d-1) * (reach + 1)``; the
    lower bound costs a matvec and an rmatvec per Lanczos step.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import spectral_norm, conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3)) / 6
    >>> r = spectral_norm(w, (4, 16, 16), padding=1, method="bounds")
    >>> bool(r.lower <= r.upper) and r.relative_width < 1e-2
    True
    >>> dense = np.linalg.norm(conv_matrix(w, (4, 16, 16), padding=1).toarray(), 2)
    >>> bool(r.lower <= dense <= r.upper)
    True
    """
    if method not in ("auto", "fft", "dense", "bounds"):
        raise ValueError(f"method must be 'auto', 'fft', 'dense' or 'bounds', got {method!r}")
    weight, geom = layer_geometry(weight, input_shape, stride, padding, dilation, groups,
                                  padding_mode)
    if method == "fft" or (method == "auto" and is_periodic(geom)):
        values = singular_values(weight, input_shape, stride=stride, padding=geom.padding,
                                 dilation=dilation, groups=groups, padding_mode=padding_mode,
                                 method="fft")
        return _exact(float(values[0]), "fft")
    if method == "dense" or (method == "auto" and min(geom.shape) <= DENSE_LIMIT):
        values = singular_values(weight, input_shape, stride=stride, padding=geom.padding,
                                 dilation=dilation, groups=groups, padding_mode=padding_mode,
                                 method="dense")
        return _exact(float(values[0]), "dense")
    if geom.padding_mode != "zeros":
        return _padded_bounds(weight, geom, tol)
    op = ConvOperator(weight, input_shape, stride=stride, padding=geom.padding,
                      dilation=dilation, groups=groups)
    lower, upper, bounds = _zero_padded_bounds(weight, geom, op, tol)
    return SpectralNorm(lower, lower, max(upper, lower), "bounds", bounds)


def _padded_bounds(weight, geom: ConvGeometry, tol: float) -> SpectralNorm:
    """Reflect, replicate, circular: ``A = V P`` with ``P`` the padding and ``V`` unpadded.

    ``||P||^2`` is the largest number of copies of one input entry (``P^T P`` is diagonal),
    a product over axes; ``V`` is a zero-padding-free layer on the padded input.
    """
    copies = math.prod(int(np.bincount(a.pad_index()).max()) for a in geom.axes)
    padded = (geom.in_channels, *(a.padded_size for a in geom.axes))
    valid = ConvOperator(weight, padded, stride=geom.stride, dilation=geom.dilation,
                         groups=geom.groups)
    _, upper_valid, bounds = _zero_padded_bounds(weight, valid.geometry, valid, tol)
    op = ConvOperator(weight, geom.input_shape, stride=geom.stride, padding=geom.padding,
                      dilation=geom.dilation, groups=geom.groups, padding_mode=geom.padding_mode)
    lower = _lower_bound(op, np.ones(op.shape[1]), tol)
    upper = math.sqrt(copies) * upper_valid
    bounds = {f"padding x {name}": math.sqrt(copies) * value for name, value in bounds.items()}
    return SpectralNorm(lower, lower, max(upper, lower), "bounds", bounds)
