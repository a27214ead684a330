"""PLACEHOLDER, docs branch only: the real ``sparseconv.testing`` replaces this file on merge.

It exists so that the documentation's "Testing" section builds before the module is merged.
"""

from __future__ import annotations

__all__ = ["assert_layer_matches_torch", "dottest"]


def dottest(op, *, rtol: float = 1e-10) -> None:
    """Check an operator's adjoint with the dot test (placeholder).

    Parameters
    ----------
    op : scipy.sparse.linalg.LinearOperator
        The operator whose ``rmatvec`` is checked against its ``matvec``.
    rtol : float
        Relative tolerance of ``<A x, y> == <x, A^H y>``.

    Raises
    ------
    NotImplementedError
        Always: this is the docs branch's placeholder.
    """
    raise NotImplementedError("sparseconv.testing is a placeholder on the docs branch")


def assert_layer_matches_torch(weight, input_shape, **kwargs) -> None:
    """Check a layer's matrix against PyTorch's convolution (placeholder).

    Parameters
    ----------
    weight : array_like
        The layer's weight, in PyTorch's layout.
    input_shape : tuple of int
        ``(C_in, *spatial)``.
    **kwargs
        The layer's options, as for :func:`sparseconv.conv_matrix`.

    Raises
    ------
    NotImplementedError
        Always: this is the docs branch's placeholder.
    """
    raise NotImplementedError("sparseconv.testing is a placeholder on the docs branch")
