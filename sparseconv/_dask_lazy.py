"""scipy's operator algebra kept lazy on Dask arrays, for :mod:`sparseconv.dask`'s layers.

``A.T``, ``2 * A``, ``A + B``, ``A.H @ A``, ``-A``, ``A / 2``, ``A ** k``: scipy's composites
call ``np.asarray`` on their input first, which would compute a whole Dask array on the
client. :class:`_LazyAlgebra` builds them as :class:`_LazyComposite`, whose products on a Dask
array call the composite's own ``_matvec`` / ``_rmatvec`` (and so the layers' lazy
products); on numpy arrays they go through scipy as before.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from scipy.sparse.linalg import LinearOperator

__all__ = ["_LazyAlgebra", "_LazyComposite", "_lazy"]


class _LazyAlgebra:
    """scipy's operator algebra (``A.T``, ``2 * A``, ``A + B``, ``A.H @ A``, ``-A``, ``A ** k``)
    with results that stay lazy on Dask arrays: scipy's composites would call ``np.asarray``
    on the input first, computing the whole array on the client."""

    def dot(self, x):
        if isinstance(x, LinearOperator) or np.isscalar(x):
            return _lazy(LinearOperator.dot(self, x))
        return self._dot_array(x)

    def __matmul__(self, x):
        if np.isscalar(x):  # as scipy's (a review: A @ 2.0 scaled the operator)
            raise ValueError("Scalar operands are not allowed, use '*' instead")
        return self.dot(x)

    def __mul__(self, x):
        return self.dot(x)

    def __rmul__(self, x):
        return _lazy(LinearOperator.__rmul__(self, x))

    def __rmatmul__(self, x):
        if isinstance(x, da.Array):  # x @ A = (A^T x^T)^T, lazily (a new user's trial: scipy's
            # np.asarray computed the whole array on the client)
            if x.ndim != 1:
                raise ValueError(f"x @ A takes a 1-D Dask array x (A.T @ x, lazily), got shape "
                                 f"{x.shape}; several rows at once: A.T.matvec of their batch")
            return self.T.matvec(x)
        return _lazy(LinearOperator.__rmatmul__(self, x))

    def __add__(self, x):
        return _lazy(LinearOperator.__add__(self, x))

    def __neg__(self):
        return _lazy(LinearOperator.__neg__(self))

    def __truediv__(self, x):  # (a new user's trial: A / 2 computed its input on the client)
        return _lazy(LinearOperator.__truediv__(self, x))

    def __sub__(self, x):
        return self.__add__(-x)

    def __pow__(self, p):
        LinearOperator.__pow__(self, p)  # scipy's checks (square, p a non-negative integer)
        return _LazyComposite(_Power(self, int(p)))


class _Power(LinearOperator):
    """``A ** p`` by ``p`` products (scipy's copies its input with ``np.array`` first)."""

    def __init__(self, A: LinearOperator, p: int) -> None:
        self.args = (A, p)
        LinearOperator.__init__(self, dtype=A.dtype, shape=A.shape)

    def _power(self, product, x):
        for _ in range(self.args[1]):
            x = product(x)
        return x

    def _matvec(self, x):
        return self._power(self.args[0].matvec, x)

    def _rmatvec(self, x):
        return self._power(self.args[0].rmatvec, x)

    def _adjoint(self):
        return _Power(self.args[0].H, self.args[1])


def _lazy(result):
    """A scipy composite wrapped so that its products take Dask arrays lazily."""
    return _LazyComposite(result) if isinstance(result, LinearOperator) else result


class _LazyComposite(_LazyAlgebra, LinearOperator):
    """A composite of chunked layers (and scalars, and other operators): on a Dask array each
    product calls the composite's own ``_matvec`` / ``_rmatvec``, which call the layers'
    lazy products; numpy arrays go through scipy as before. The layers check the shapes: a
    Dask array in any form they take (flat, one image, a batch) passes through."""

    def __init__(self, op: LinearOperator) -> None:
        self._op = op
        LinearOperator.__init__(self, dtype=op.dtype, shape=op.shape)

    def matvec(self, x):
        return self._lazily(self._op._matvec, x) if isinstance(x, da.Array) else \
            self._op.matvec(x)

    def rmatvec(self, x):
        return self._lazily(self._op._rmatvec, x, 0) if isinstance(x, da.Array) else \
            self._op.rmatvec(x)

    def matmat(self, X):
        return self._lazily(self._op._matvec, X) if isinstance(X, da.Array) else \
            self._op.matmat(X)

    def rmatmat(self, X):
        return self._lazily(self._op._rmatvec, X, 0) if isinstance(X, da.Array) else \
            self._op.rmatmat(X)

    def _lazily(self, product, x: da.Array, side: int = 1):
        """``product(x)``; scipy's own operators in the composite take flat vectors only (a
        new user's trial: ``A.H @ A + 0.5 * IdentityOperator(...)`` on an image met scipy's
        bare "dimension mismatch")."""
        try:
            return product(x)
        except ValueError as error:
            if x.ndim < 2 or "dimension mismatch" not in str(error):
                raise
            raise ValueError(f"{self!r} holds operators other than sparseconv.dask's: scipy's "
                             "take flat vectors only (and compute a Dask array on the client): "
                             f"pass x flat, x.reshape(-1) (shape ({self.shape[side]},)), got "
                             f"shape {x.shape}") from error

    def _dot_array(self, x):
        return self.matvec(x) if isinstance(x, da.Array) else self._op.dot(x)

    _matvec, _rmatvec, _matmat, _rmatmat = matvec, rmatvec, matmat, rmatmat

    def _adjoint(self):
        return _LazyComposite(self._op.H)

    def _transpose(self):
        return _LazyComposite(self._op.T)

    def __repr__(self) -> str:
        return f"<lazy {self._op!r}>"
