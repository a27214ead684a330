"""The singular value decomposition of a periodic layer, as an object.

A periodic layer (circular padding, input sizes divisible by the stride, ``n / stride`` outputs
per axis: a total padding from ``dilation*(k-1) - stride + 1`` to ``dilation*(k-1)``) is ``A =
F_out^H blockdiag_xi(H(xi)) F_in P``: ``P`` splits the input into its ``prod(stride)`` polyphase
components, ``F`` is the unitary DFT over the ``n/stride`` grid and ``H(xi)`` the symbol
(:mod:`sparseconv._symbol`), one ``C_out x C_in*prod(stride)`` matrix per frequency, block
diagonal over the groups. An SVD ``H(xi) = U_xi S_xi V_xi^H`` per frequency and group is
therefore an SVD of ``A`` (Sedghi, Gupta & Long, ICLR 2019):

    A = (F_out^H U) diag(S) (V^H F_in P),

whose factors are applied matrix-free, at the cost of FFTs and one small matrix product per
frequency. Every function of the singular values -- the Tikhonov-damped least-squares solution,
the pseudo-inverse, the best rank-r approximation, the projection onto an operator-norm ball --
is then exact and costs the same.

The per-frequency factors come from :mod:`sparseconv._symbol_svd` (which frequencies are
stored, the SVD of each on the thread pool, and products with the stored factors); this module
is the public object built on them.

Invariants: the SVD is computed once per pair of frequencies ``{xi, -xi}`` of a real weight
(the symbol at ``-xi`` is the conjugate one, and so are its factors), so ``S`` is exactly equal
on such pairs and a function of ``S`` gives a real operator; the per-frequency factors are
those of the weight rescaled by a power of two (:func:`sparseconv._symbol.unit_scale`), and only
``S`` is scaled back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._memory import check_memory
from ._operator_base import ShapeNamedProducts
from ._symbol import layer_geometry, require_periodic
from ._symbol_svd import Frequencies, factor_bytes, factor_symbol, negative_frequencies
from ._typing import ArrayLike, IntOrTuple, PaddingLike, ShapeLike
from ._validation import as_weight, is_int, periodic_padding_mode, real_number

__all__ = ["CircularSVD", "circular_svd"]

class CircularSVD(ShapeNamedProducts, LinearOperator):
    """The SVD of a periodic convolution layer, ``A = U diag(S) V^H``, matrix-free.

    Itself the layer's operator (``svd @ x`` is ``conv_matrix(...) @ x``); the factors and
    every function of the singular values are exact, by FFT and one small SVD per frequency.
    Construct it with :func:`circular_svd` (same arguments).

    Parameters
    ----------
    weight, input_shape, stride, padding, dilation, groups, padding_mode
        As :func:`circular_svd`.

    Attributes
    ----------
    S : ndarray, shape (min(rows, cols),)
        The singular values, sorted descending (equal ones by frequency, those at ``xi`` and
        ``-xi`` adjacent; read-only): those of
        :func:`sparseconv.singular_values` of the periodic layer, to rounding (the two may
        factor a frequency's matrix by different routes).
    U : LinearOperator, complex, shape (rows, len(S))
        Left singular vectors as columns, in the order of ``S``; orthonormal columns.
    V : LinearOperator, complex, shape (cols, len(S))
        Right singular vectors as columns, in the order of ``S``.
    Vh : LinearOperator, complex, shape (len(S), cols)
        ``V.H``, as ``numpy.linalg.svd`` and ``scipy.sparse.linalg.svds`` name it.
    input_shape, output_shape : tuple of int
        ``(C_in, *n)`` and ``(C_out, *n/stride)``.
    geometry : ConvGeometry
        The validated periodic layer.

    See Also
    --------
    circular_svd, clip_singular_values, singular_values

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import circular_svd
    >>> w = np.random.default_rng(0).standard_normal((3, 3, 3, 3))
    >>> svd = circular_svd(w, (3, 8, 8))
    >>> b = np.random.default_rng(1).standard_normal(svd.shape[0])
    >>> x = svd.solve(b, damp=0.1)                 # argmin ||A x - b||^2 + 0.1^2 ||x||^2
    >>> A = svd @ np.eye(svd.shape[1])                   # the layer's matrix, dense
    >>> bool(np.allclose(x, np.linalg.solve(A.T @ A + 0.01 * np.eye(192), A.T @ b)))
    True
    >>> bool(np.isclose(svd.cond(), np.linalg.cond(A)))
    True
    """

    def __init__(self, weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
                 padding: PaddingLike | None = None, dilation: IntOrTuple = 1,
                 groups: int = 1, padding_mode: Literal["circular"] = "circular") -> None:
        periodic_padding_mode(padding_mode, "circular_svd")
        weight, geom = layer_geometry(weight, input_shape, stride, padding, dilation, groups,
                                      "circular")
        require_periodic(geom, "circular_svd")
        self.geometry = geom
        self.input_shape, self.output_shape = geom.input_shape, geom.output_shape
        self._real = weight.dtype.kind != "c"
        self._grid = geom.coarse_grid
        check_memory(factor_bytes(geom, self._real),
                     f"the circular SVD's factors (U, S, V at {math.prod(self._grid)} "
                     "frequencies)")
        self._frequencies = Frequencies.of(self._grid, self._real)
        self._u, s, self._vh = factor_symbol(geom, weight, self._frequencies)
        self._s = self._frequencies.everywhere(s)  # (F, groups, k) over the whole grid
        flat = self._s.ravel()
        # descending; equal values by pair of frequencies {xi, -xi} (the two adjacent: S is
        # exactly equal on a pair of a real weight, so a rank-r cut splits at most one pair,
        # which rank_r builds as a dense real triplet; a new user's trial: an orthogonal layer,
        # its values all tied, split hundreds of pairs in frequency order, 12 GiB asked)
        pair = np.minimum(np.arange(self._s.shape[0]),
                          negative_frequencies(self._grid))[:, None, None]
        position = np.arange(flat.size).reshape(self._s.shape)
        self._order = np.lexsort((position.ravel(), (pair * flat.size + position
                                                     % (flat.size // self._s.shape[0])).ravel(),
                                  -flat))
        self.S = flat[self._order]
        # read-only: dense_factors and cond read it, the products their own copies (a new
        # user's trial normalised svd.S in place, and the object contradicted itself)
        self.S.flags.writeable = False
        dtype = np.dtype(np.float64 if self._real else np.complex128)
        super().__init__(dtype, geom.shape)
        rows, cols = geom.shape
        self.U = _Factor(self, "U", (rows, self.S.size))
        self.V = _Factor(self, "V", (cols, self.S.size))

    # -- the transforms between space and frequency ----------------------------------------
    def _to_frequency(self, X: np.ndarray, side: str) -> np.ndarray:
        """``(prod(shape), b)`` -> ``(F, groups, rows or cols per group, b)``: polyphase+DFT."""
        g, d, b = self.geometry.groups, len(self._grid), X.shape[-1]
        if side == "out":  # every size spelled out: a batch b = 0 leaves -1 undetermined
            x = X.reshape(g, self._per_group("out"), *self._grid, b)
            x = np.moveaxis(x, tuple(range(2, 2 + d)), tuple(range(d)))  # (*grid, g, m, b)
        else:
            stride = self.geometry.stride
            split = [v for pair in zip(self._grid, stride) for v in pair]
            x = X.reshape(self.input_shape[0], *split, b)
            # (C_in, M1, s1, ..., Md, sd, b) -> (M1..Md, C_in, s1..sd, b): columns (c, r)
            order = [1 + 2 * i for i in range(d)] + [0] + [2 + 2 * i for i in range(d)]
            x = x.transpose(*order, 2 * d + 1)
        # (float32 inputs in double precision: numpy's FFT keeps float32 in complex64, which
        # a review found made solve and products of float32 arrays 3e-8 accurate)
        x = np.fft.fftn(x.astype(np.result_type(x.dtype, np.float64), copy=False),
                        axes=tuple(range(d)), norm="ortho")
        return x.reshape(math.prod(self._grid), g, self._per_group(side), b)

    def _from_frequency(self, Z: np.ndarray, side: str) -> np.ndarray:
        """The inverse of :meth:`_to_frequency`: ``(F, groups, per group, b)`` -> columns."""
        g, d, b = self.geometry.groups, len(self._grid), Z.shape[-1]
        z = np.fft.ifftn(Z.reshape(*self._grid, g, self._per_group(side), b),
                         axes=tuple(range(d)), norm="ortho")
        if side == "out":
            z = np.moveaxis(z, tuple(range(d)), tuple(range(2, 2 + d)))  # (g, m, *grid, b)
        else:
            stride = self.geometry.stride
            z = z.reshape(*self._grid, self.input_shape[0], *stride, b)
            order = [d] + [v for i in range(d) for v in (i, d + 1 + i)]
            z = z.transpose(*order, 2 * d + 1)  # (C_in, M1, s1, ..., Md, sd, b)
        return z.reshape(self.shape[0 if side == "out" else 1], b)

    def _per_group(self, side: str) -> int:
        """Rows (``"out"``: output channels) or polyphase columns (``"in"``: input channels
        times the stride's phases) of one group's matrix at one frequency."""
        geom = self.geometry
        if side == "out":
            return geom.out_channels // geom.groups
        return geom.in_channels * math.prod(geom.stride) // geom.groups

    def _apply(self, X: np.ndarray, f: np.ndarray, inverse: bool, real: bool,
               divisor: np.ndarray | None = None) -> np.ndarray:
        """``U f(S) V^H X`` (or ``V f(S) U^H X`` when ``inverse``), ``f`` on the factor grid,
        divided by ``divisor`` (an inverse's ``1 / s`` overflows for ``s`` below
        ``1 / max_float``, where ``c / s`` of a small coefficient ``c`` need not)."""
        X = np.asarray(X)
        real = real and X.dtype.kind != "c"
        check_memory(16 * 4 * X.shape[-1] * (self.shape[0] + self.shape[1]),
                     f"a product with {self!r} on a batch of {X.shape[-1]}")
        # U f V^H = (V^H, then f, then U); V f U^H = (U^H, then f, then V = (V^H)^H)
        first, first_adjoint = (self._u, True) if inverse else (self._vh, False)
        then, then_adjoint = (self._vh, True) if inverse else (self._u, False)
        X = self._to_frequency(X, "out" if inverse else "in")
        coefficients = f[..., None] * self._frequencies.product(first, X, first_adjoint)
        if divisor is not None:  # by parts: numpy's complex division by a subnormal
            coefficients.real /= divisor[..., None]  # overflows where the parts' do not
            coefficients.imag /= divisor[..., None]
        out = self._frequencies.product(then, coefficients, then_adjoint)
        out = self._from_frequency(out, "in" if inverse else "out")
        return out.real if real else out

    def _matmat(self, X):
        return self._apply(X, self._s, False, self._real)

    def _rmatmat(self, X):
        return self._apply(X, self._s, True, self._real)

    def _adjoint(self):
        return _SpectralFilter(self, self._s, None, True, self._real)

    def _symbol_of(self, f: np.ndarray) -> np.ndarray:
        """``U_xi diag(f) V_xi^H`` per frequency and group, ``(F, groups, m, M)``."""
        (groups, m, _), n = self._u.shape[1:], self._vh.shape[-1]
        check_memory(16 * 3 * self._s.shape[0] * groups * m * n,
                     "a symbol rebuilt from the circular SVD")
        return self._frequencies.rebuild(self._u, f, self._vh)

    # -- functions of the singular values ----------------------------------------------------
    def _inverse_filter(self, damp, rcond) -> tuple[np.ndarray, np.ndarray]:
        """``s / (s^2 + damp^2)`` (``1 / s`` above the cut-off, 0 below for ``damp = 0``) as
        a numerator in ``[0, 1]`` and a positive divisor, neither of which overflows."""
        damp = real_number(damp, "damp", low=0.0)
        top = float(self.S[0]) if self.S.size else 0.0
        given = rcond is not None  # with damp > 0, a cut only where asked for (lsqr has none)
        if rcond is None:
            rcond = np.finfo(np.float64).eps * max(self.shape)
        rcond = real_number(rcond, "rcond", low=0.0)
        s = self._s
        keep = s > rcond * top
        with np.errstate(divide="ignore", invalid="ignore"):
            if damp == 0.0:  # (a review: 1 / s overflowed for s = 1e-310, giving NaN)
                return keep.astype(np.float64), np.where(keep, s, 1.0)
            # s / (s^2 + damp^2) without a square or a ratio above 1 (s / damp overflows for
            # s = 1, damp = 1e-310): with r = min(s, damp) / max(s, damp) <= 1, it is
            # 1 / (s + damp r) where s >= damp and r / (damp + s r) where s < damp
            r = np.minimum(s, damp) / np.maximum(s, damp)
            numerator = np.where(s >= damp, 1.0, r)
            if given:  # truncated and damped (a new user's trial: rcond was ignored)
                numerator = np.where(keep, numerator, 0.0)
            return numerator, np.where(s >= damp, s + damp * r, damp + s * r)

    def solve(self, b: ArrayLike, damp: float = 0.0, rcond: float | None = None) -> np.ndarray:
        """The least-squares solution ``argmin ||A x - b||^2 + damp^2 ||x||^2`` of least norm.

        Exact (``V diag(S / (S^2 + damp^2)) U^H b``), by FFT: no iteration.

        Parameters
        ----------
        b : array_like
            Shape ``(rows,)``, ``output_shape``, or ``(rows, k)`` for ``k`` right-hand sides.
        damp : float, optional
            Tikhonov damping (``scipy.sparse.linalg.lsqr``'s ``damp``), ``>= 0``.
        rcond : float, optional
            Singular values at most ``rcond * S[0]`` count as zero (``numpy.linalg.lstsq``'s
            rule; default ``eps * max(rows, cols)``); ``rcond >= 1`` cuts them all, as
            ``numpy.linalg.pinv`` does (``lstsq``'s LAPACK driver takes ``rcond >= 1`` for
            ``eps``). With ``damp > 0`` they are cut only where ``rcond`` is given
            (truncated, then damped); by default none is, as ``scipy.sparse.linalg.lsqr``.

        Returns
        -------
        ndarray
            Shape ``(cols,)``, ``input_shape`` or ``(cols, k)``, as ``b`` is given: the
            solution alone, also as ``lstsq`` (not ``numpy.linalg.lstsq``'s tuple; the
            singular values are ``S``).

        Raises
        ------
        ValueError, TypeError
            ``b`` of another shape or with NaN or infinite entries, a negative or non-finite
            ``damp`` or ``rcond``.
        OverflowError
            The solution's entries exceed float64's range (a layer of subnormal weights,
            ``1e-310``, and ``b`` of order one: scale ``b`` down, or damp).

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import circular_svd, conv_matrix
        >>> w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
        >>> svd = circular_svd(w, (2, 8, 8))
        >>> b = np.random.default_rng(1).standard_normal((2, 8, 8))
        >>> x = svd.solve(b)
        >>> A = conv_matrix(w, (2, 8, 8), padding="same", padding_mode="circular")
        >>> bool(np.allclose(x.ravel(), np.linalg.lstsq(A.toarray(), b.ravel())[0]))
        True
        """
        f, divisor = self._inverse_filter(damp, rcond)
        columns, unshape = _as_columns(b, self.output_shape, self.input_shape, "b")
        with np.errstate(over="ignore", invalid="ignore"):  # (refused below, by name)
            x = self._apply(columns, f, True, self._real, divisor)
        if not np.isfinite(x).all():  # (b is finite: the solution overflowed, and inf * 0
            # in the last product made NaN of every entry, a new user's trial)
            kept = self.S[self.S > 0]
            raise OverflowError(
                "the solution's entries exceed float64's range (the smallest nonzero "
                f"singular value kept is about {kept[-1] if kept.size else 0.0:.3g}, b's "
                f"largest entry {np.abs(columns).max():.3g}): scale b down, or pass damp > 0")
        return unshape(x)

    lstsq = solve

    def pinv(self, damp: float = 0.0, rcond: float | None = None) -> LinearOperator:
        """The (damped) pseudo-inverse ``V diag(S / (S^2 + damp^2)) U^H`` as an operator.

        With ``damp=0`` it is ``numpy.linalg.pinv`` with the same ``rcond`` (whose own default
        is ``1e-15``; here ``eps * max(rows, cols)``, ``numpy.linalg.lstsq``'s and the array
        API's).

        Parameters
        ----------
        damp : float, optional
            Tikhonov damping, ``>= 0``, as :meth:`solve`.
        rcond : float, optional
            Singular values at most ``rcond * S[0]`` count as zero, as :meth:`solve` (with
            ``damp > 0``, only where given).

        Returns
        -------
        scipy.sparse.linalg.LinearOperator
            Shape ``(cols, rows)``, matrix-free (FFT and the per-frequency factors).

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import circular_svd
        >>> svd = circular_svd(np.random.default_rng(0).standard_normal((2, 2, 3)), (2, 6))
        >>> P = svd.pinv()
        >>> P.shape
        (12, 12)
        >>> bool(np.allclose(P @ (svd @ np.eye(12)), np.eye(12)))
        True
        """
        return _SpectralFilter(self, *self._inverse_filter(damp, rcond), True, self._real)

    @property
    def Vh(self) -> LinearOperator:
        """``V.H``: the right singular vectors as rows, ``(len(S), cols)``, as
        ``numpy.linalg.svd`` and ``scipy.sparse.linalg.svds`` return them.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import circular_svd
        >>> svd = circular_svd(np.array([[[1.0, 0.5]]]), (1, 8))
        >>> x = np.random.default_rng(0).standard_normal(8)
        >>> bool(np.allclose(svd.U @ (svd.S * (svd.Vh @ x)), svd @ x))
        True
        """
        return self.V.H

    def cond(self) -> float:
        """The condition number ``S[0] / S[-1]`` (``inf`` when ``S[-1] == 0``).

        Of the computed values, as :func:`numpy.linalg.cond`: each carries rounding of about
        ``eps * S[0]``, so a layer whose rank is exactly deficient may have a smallest value
        of that size, and a condition number of ``1 / eps`` or more rather than ``inf``
        (``6e31`` was seen), or an exact zero and ``inf`` where the symbol's zeros come out
        exact (an all-ones kernel of size 2 or 4 on a grid its size divides, whose zeros lie
        at frequencies the FFT's twiddles hold exactly; of size 3 or 5, about ``4e-16``, a
        new user's trial found). Compare ``S`` with
        ``S[0] * eps * max(A.shape)`` for a numerical rank, as ``numpy.linalg.matrix_rank``
        does.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import circular_svd
        >>> float(circular_svd(np.array([[[1.0, 0.5]]]), (1, 8)).cond())
        3.0
        """
        if self.S.size == 0 or self.S[-1] == 0:
            return math.inf
        return float(self.S[0] / self.S[-1])

    def rank_r(self, r: int) -> LinearOperator:
        """The best rank-``r`` approximation ``U[:, :r] diag(S[:r]) V[:, :r]^H``, matrix-free.

        By the Eckart-Young theorem, the closest rank-``r`` matrix in the spectral and the
        Frobenius norm. For a real weight it is real: a singular value at frequency ``xi``
        has an equal one at ``-xi`` with conjugate vectors ``conj(u)``, ``conj(v)``, so where
        ``r`` keeps one member of such a pair (as about every other ``r`` does), that member's
        term is the real singular triplet ``(s, sqrt(2) Re u, sqrt(2) Re v)`` of the same
        value, in the pair's span: a real best approximation, not the complex ``s u v^H``.

        Parameters
        ----------
        r : int
            The rank kept, ``0 <= r <= len(S)``.

        Returns
        -------
        scipy.sparse.linalg.LinearOperator
            Of the layer's shape.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import circular_svd
        >>> svd = circular_svd(np.random.default_rng(0).standard_normal((2, 2, 3)), (2, 6))
        >>> A2 = svd.rank_r(2) @ np.eye(12)
        >>> int(np.linalg.matrix_rank(A2))
        2
        >>> bool(np.isclose(np.linalg.norm(svd @ np.eye(12) - A2, 2), svd.S[2]))
        True
        """
        if not is_int(r):
            raise TypeError(f"r must be an integer in [0, {self.S.size}], got {r!r}")
        if not 0 <= r <= self.S.size:
            raise ValueError(f"r must be an integer in [0, {self.S.size}], got {r!r}")
        keep = np.zeros(self.S.size, dtype=bool)
        keep[self._order[:int(r)]] = True
        keep = keep.reshape(self._s.shape)
        if not self._real:
            return _SpectralFilter(self, np.where(keep, self._s, 0.0), None, False, False)
        split = keep & ~keep[negative_frequencies(self._grid)]  # kept at xi, not at -xi
        kept = _SpectralFilter(self, np.where(keep & ~split, self._s, 0.0), None, False, True)
        if not split.any():
            return kept
        rank = np.empty_like(self._order)
        rank[self._order] = np.arange(self._order.size)
        columns = rank[np.flatnonzero(split)]  # their places in S
        check_memory(16 * 4 * columns.size * (self.shape[0] + self.shape[1] + self.S.size),
                     f"the {columns.size} real singular vectors of a rank-{r} approximation")
        unit = np.zeros((self.S.size, columns.size), dtype=np.complex128)
        unit[columns, np.arange(columns.size)] = 1.0
        # u and conj(u) are orthonormal (two frequencies): sqrt(2) Re u is a unit vector, and
        # A (sqrt(2) Re v) = s sqrt(2) Re u, A being real
        left, right = (math.sqrt(2.0) * (factor @ unit).real for factor in (self.U, self.V))
        return kept + _RealTriplets(left, self.S[columns], right)

    def dense_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(U, S, Vh)`` as dense arrays (``A == U @ np.diag(S) @ Vh``), for small layers.

        As ``numpy.linalg.svd(A, full_matrices=False)`` returns them: ``U`` and ``Vh``
        complex, columns of ``U`` and rows of ``Vh`` in the order of ``S``.

        Sized against the memory limit (:func:`sparseconv.get_memory_limit`) first.

        Examples
        --------
        >>> import numpy as np
        >>> from sparseconv import circular_svd
        >>> U, S, Vh = circular_svd(np.ones((1, 1, 3)), (1, 4)).dense_factors()
        >>> U.shape, S.shape, Vh.shape
        ((4, 4), (4,), (4, 4))
        """
        (rows, cols), k = self.shape, self.S.size
        check_memory(16 * 3 * k * (rows + cols + k), f"the dense factors of {self!r}")
        eye = np.eye(k, dtype=np.complex128)
        return self.U @ eye, self.S.copy(), np.conj(self.V @ eye).T


class _SpectralFilter(ShapeNamedProducts, LinearOperator):
    """``U diag(f / divisor) V^H`` (or ``V ... U^H`` when ``inverse``), real on the factors:
    the adjoint, the pseudo-inverse and the best rank-r approximation, whose products name
    the shapes they take, as the layer's do."""

    def __init__(self, svd: CircularSVD, f: np.ndarray, divisor: np.ndarray | None,
                 inverse: bool, real: bool) -> None:
        self._svd, self._f, self._divisor = svd, f, divisor
        self._inverse, self._real = inverse, real
        self.input_shape, self.output_shape = (
            (svd.output_shape, svd.input_shape) if inverse else (svd.input_shape,
                                                                 svd.output_shape))
        shape = svd.shape[::-1] if inverse else svd.shape
        super().__init__(np.dtype(np.float64 if real else np.complex128), shape)

    def _matmat(self, X):
        return self._svd._apply(X, self._f, self._inverse, self._real, self._divisor)

    def _rmatmat(self, X):
        return self._svd._apply(X, self._f, not self._inverse, self._real, self._divisor)

    def _adjoint(self):
        return _SpectralFilter(self._svd, self._f, self._divisor, not self._inverse,
                               self._real)


class _RealTriplets(LinearOperator):
    """``left diag(s) right^T``: real singular triplets, as columns."""

    def __init__(self, left: np.ndarray, s: np.ndarray, right: np.ndarray) -> None:
        self._left, self._s, self._right = left, s, right
        super().__init__(np.dtype(np.float64), (left.shape[0], right.shape[0]))

    def _matmat(self, X):
        return self._left @ (self._s[:, None] * (self._right.T @ np.asarray(X)))

    def _rmatmat(self, X):
        return self._right @ (self._s[:, None] * (self._left.T @ np.asarray(X)))


class _Factor(ShapeNamedProducts, LinearOperator):
    """The singular vectors ``U`` or ``V`` as an operator from the coefficients (order of S),
    or its adjoint (``V.H``, ``Vh``): its products name the shapes they take, as the layer's
    do (a new user's trial: scipy's "dimension mismatch", or a dump of the whole array)."""

    def __init__(self, svd: CircularSVD, which: Literal["U", "V"], shape,
                 adjoint: bool = False) -> None:
        self._svd, self._which, self._adjointed, self._plain = svd, which, adjoint, shape
        vectors = svd.output_shape if which == "U" else svd.input_shape
        self.input_shape, self.output_shape = (
            (vectors, (svd.S.size,)) if adjoint else ((svd.S.size,), vectors))
        super().__init__(np.dtype(np.complex128), shape[::-1] if adjoint else shape)

    def _factor(self) -> tuple[np.ndarray, bool, str]:
        """The stored factor, whether the vectors are its adjoint's columns, and their side."""
        svd = self._svd
        return (svd._u, False, "out") if self._which == "U" else (svd._vh, True, "in")

    def _matmat(self, X):
        return self._vectors(X) if not self._adjointed else self._coefficients(X)

    def _rmatmat(self, X):
        return self._coefficients(X) if not self._adjointed else self._vectors(X)

    def _adjoint(self):
        return _Factor(self._svd, self._which, self._plain, not self._adjointed)

    def _vectors(self, X):
        """The combination of the vectors with coefficients ``X``."""
        svd, X = self._svd, np.asarray(X)
        factor, adjoint, side = self._factor()
        coefficients = np.zeros((svd.S.size, X.shape[-1]), dtype=np.complex128)
        coefficients[svd._order] = X
        columns = coefficients.reshape(*svd._s.shape, X.shape[-1])
        return svd._from_frequency(svd._frequencies.product(factor, columns, adjoint), side)

    def _coefficients(self, X):
        """The vectors' inner products with ``X``'s columns."""
        svd = self._svd
        factor, adjoint, side = self._factor()
        X = svd._to_frequency(np.asarray(X), side)
        coefficients = svd._frequencies.product(factor, X, not adjoint)
        return coefficients.reshape(svd.S.size, X.shape[-1])[svd._order]


def _as_columns(b, shape: tuple[int, ...], result_shape: tuple[int, ...],
                name: str) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``b`` as ``(prod(shape), k)`` columns, and how to shape a result like ``b`` was."""
    b = as_weight(b, name, finite=True)  # numpy.linalg.lstsq refuses NaN too (LinAlgError)
    size, result_size = math.prod(shape), math.prod(result_shape)
    if b.shape == shape:  # the output array (also for a 1-D layer, whose shape is 2-D)
        return b.reshape(size, 1), lambda x: x.reshape(result_shape)
    if b.shape == (size,):
        return b.reshape(size, 1), lambda x: x.reshape(result_size)
    if b.ndim == 2 and b.shape[0] == size:
        return b, lambda x: x
    raise ValueError(f"{name} must have shape ({size},), {shape} or ({size}, k), got shape "
                     f"{b.shape}")


def circular_svd(weight: ArrayLike, input_shape: ShapeLike, *, stride: IntOrTuple = 1,
                 padding: PaddingLike | None = None, dilation: IntOrTuple = 1,
                 groups: int = 1, padding_mode: Literal["circular"] = "circular") -> CircularSVD:
    """The singular value decomposition of a periodic (circular) convolution layer.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel_size)
        Finite entries; 1 to 3 spatial dimensions (any number works).
    input_shape : tuple of int
        ``(C_in, *n)``, each ``n`` divisible by its stride.
    stride
        As :func:`sparseconv.conv_matrix`.
    padding : None, or a periodic padding, optional
        ``None`` (default): the periodic padding, total ``dilation*(k-1)`` per axis split as
        PyTorch's "same" (:func:`sparseconv.symbol`'s rule); another split of the same total
        is the same layer shifted. ``padding_mode="circular"`` is implied.
    dilation, groups
        As :func:`sparseconv.conv_matrix`.
    padding_mode : "circular", optional
        The only value, accepted so that the spectra's periodic arguments
        (``padding=None, padding_mode="circular"``) pass unchanged.

    Returns
    -------
    CircularSVD
        ``A = U diag(S) V^H`` with ``A = conv_matrix(weight, input_shape, stride=stride,
        padding=<the periodic padding>, dilation=dilation, groups=groups,
        padding_mode="circular")``; ``S`` sorted descending; ``U``, ``V`` matrix-free
        operators with orthonormal columns; :meth:`~CircularSVD.solve`,
        :meth:`~CircularSVD.pinv`, :meth:`~CircularSVD.cond`, :meth:`~CircularSVD.rank_r`,
        :meth:`~CircularSVD.dense_factors`, and the layer's own products (``svd @ x``).

    Raises
    ------
    ValueError
        A layer that is not periodic (the message says how to ask for one), non-finite
        weights, invalid arguments (named), or factors beyond the memory limit.
    TypeError
        An argument of the wrong type.

    See Also
    --------
    clip_singular_values, singular_values, symbol

    Notes
    -----
    With ``P`` the polyphase split of the input, ``F`` the unitary DFT over the ``n/stride``
    grid and ``H(xi) = U_xi S_xi V_xi^H`` the SVD of the symbol at each frequency,
    ``U = F^H blockdiag(U_xi)`` and ``V = P^T F^H blockdiag(V_xi)``. Cost: one SVD of a
    ``C_out/g x C_in/g * prod(stride)`` matrix per frequency and group (half of them for a
    real weight, whose symbol at ``-xi`` is the conjugate of the one at ``xi``), on every
    core: LAPACK's ``gesdd``, or the eigendecomposition of the smaller Gram matrix where the
    matrix's condition number is at most 4 (as accurate there, and faster); the factors
    take ``16 * prod(n/stride) * g * k * (m + M)`` bytes, ``m <= M`` the block sizes and
    ``k = m``. Products cost FFTs and ``O(prod(n/stride) * g * m * M)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import circular_svd, conv_matrix, singular_values
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> svd = circular_svd(w, (4, 16, 16), stride=2)
    >>> svd.S.shape, svd.U.shape, svd.V.shape
    ((256,), (256, 256), (1024, 256))
    >>> A = conv_matrix(w, (4, 16, 16), stride=2, padding=((1, 1), (1, 1)),
    ...                 padding_mode="circular")
    >>> x = np.random.default_rng(1).standard_normal(1024)
    >>> bool(np.allclose(svd @ x, A @ x))
    True
    >>> y = svd.U @ (svd.S * (svd.V.H @ x))                   # U diag(S) V^H x
    >>> bool(np.allclose(y, A @ x))
    True
    """
    return CircularSVD(weight, input_shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, padding_mode=padding_mode)
