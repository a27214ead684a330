"""The result of :func:`sparseconv.spectral_norm`: a norm and its certified interval.

:class:`SpectralNorm` holds them; :func:`checked_result` refuses bounds that contradict each
other (a bug, never clamped away); :func:`scaled_result` takes a result computed on weights
scaled by a power of two back to the weights as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ._rounding import scaled

__all__ = ["SpectralNorm", "checked_result", "scaled_result"]


_RESULTS = ("fft", "dense", "bounds", "upper", "1x1", "torus", "zero")


@dataclass(frozen=True)
class SpectralNorm:
    """The spectral norm of a layer and a certified interval ``lower <= ||A|| <= upper``.

    Returned by :func:`spectral_norm`, :func:`spectral_norms`, :func:`toeplitz_norm` and
    :func:`sparseconv.torch.spectral_norm`.

    Parameters
    ----------
    value, lower, upper, method, bounds, converged
        The attributes below, as those functions fill them (an interval made by hand is
        certified by nobody).

    Attributes
    ----------
    value : float
        The estimate: LAPACK's or the FFT's ``sigma_max`` for ``method`` "fft" and "dense",
        else the lower bound (a Rayleigh quotient, accurate to the Lanczos tolerance).
    lower, upper : float
        Certified bounds on the norm of the layer as given, rounding included.
    method : str
        "fft", "dense", "bounds", "upper" (the upper bounds alone, ``lower`` a cheap
        quotient), "1x1" (a 1x1 kernel at any stride and padding: the weight matrix's norm
        times the square root of the most reads of one input, in closed form), "torus"
        (:func:`toeplitz_norm`: the norm on the infinite grid, a bound for every input size),
        or "zero" (an all-zero weight, or a layer whose every tap reads padding: the norm is
        0).
    bounds : dict
        Every certified upper bound computed, by name, for comparison.
    converged : bool
        Whether ``lower`` is within ``tol`` of the norm. Where the whole Gram's certificate runs
        (``"exact"`` among ``bounds``: small layers, ``method="exact"``, ``relative_width``), it
        decides: placed at ``(1 + tol)`` times ``lower``, it proves the claim or refutes it (and a
        Lanczos iteration refuted so is searched again off the vector it settled on); for a ``tol``
        below its resolution, about 5e-9, it proves ``lower`` within 5e-9 of the norm, and the claim
        beyond that is the Lanczos iteration's, as below (``converged`` was seen at
        ``tol=1e-10`` with ``lower`` 5.4e-10 short, the top two singular values 5.4e-10 apart).
        Elsewhere, as far as the Lanczos iteration can tell, which is no proof: its Ritz value
        within ``tol`` of an eigenvalue by its residual, taken for the top one, and ``lower``
        within ``tol`` of its quotient (the rounding allowance: taps that cancel can leave a
        norm below it), so about ``2 tol`` in all (a review saw 1.0e-12 to 1.2e-12 short at
        ``tol=1e-12``, 24 results in 28,005); and where the top two singular values lie within
        a few ``tol`` of each other (about 1e-5, relative, at the default ``tol``), Lanczos can
        settle on the second, whose residual passes, and claim ``tol`` up to their gap below
        the norm (seen at ``tol=1e-3``: 4.2e-3 short, the top two 4.2e-3 apart). For the exact
        methods, whether their interval is within ``tol`` (their rounding allowance, sized by the
        weight's taps that read an input, alone can exceed it where they cancel); False for
        ``"upper"``. ``lower`` and ``upper`` are certified either way.

    Examples
    --------
    >>> import numpy as np
    >>> from sparseconv import spectral_norm
    >>> r = spectral_norm(np.ones((1, 1, 3)), (1, 16), padding="same", padding_mode="circular")
    >>> r.method, round(float(r), 12)            # periodic: exact by FFT, the kernel's sum
    ('fft', 3.0)
    >>> bool(r.lower <= 3.0 <= r.upper)
    True
    >>> f"{r:.3f}"                               # a format spec formats the value
    '3.000'
    """

    value: float
    lower: float
    upper: float
    method: Literal["fft", "dense", "bounds", "upper", "1x1", "torus", "zero"]
    bounds: dict[str, float] = field(default_factory=dict, hash=False)  # (hashable: {r})
    converged: bool = True

    def __post_init__(self) -> None:
        for name in ("value", "lower", "upper"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
                    isinstance(value, complex | np.complexfloating):
                raise TypeError(f"{name} must be a real number, got {value!r}")
            if not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not self.lower <= self.upper:
            raise ValueError(f"lower must not exceed upper, got lower={self.lower!r}, "
                             f"upper={self.upper!r}")
        if self.method not in _RESULTS:
            raise ValueError(f"method must be one of {_RESULTS}, got {self.method!r}")

    def __float__(self) -> float:
        return float(self.value)

    def _ordered(self, other: object) -> bool:
        """``r < 1`` and the like: refused, naming what to compare (a review: Python's "'<'
        not supported between instances of 'SpectralNorm' and 'int'", where ``float(r)``
        works). Which end is meant is the caller's: the certified ``upper`` for a claim that
        the norm is below a constant, ``lower`` for one that it is above."""
        raise TypeError(f"a SpectralNorm is an interval [{self.lower!r}, {self.upper!r}]: "
                        f"compare its .upper (certified: the norm is at most upper) or .lower "
                        f"(certified: at least lower) with {other!r}, or float(r), the "
                        "estimate")

    __lt__ = __le__ = __gt__ = __ge__ = _ordered

    def __format__(self, format_spec: str) -> str:
        """``f"{r:.4f}"`` formats the value as a float would; ``f"{r}"`` is ``str(r)`` (a new
        user's trial: a format spec raised TypeError)."""
        return format(float(self.value), format_spec) if format_spec else str(self)

    @property
    def relative_width(self) -> float:
        """``(upper - lower) / upper`` (0 for a zero layer; 1 for an infinite ``upper`` above a
        finite ``lower``, its limit, where the quotient would be NaN and a filter such as
        ``width > 1e-3`` would skip the layer)."""
        if math.isinf(self.upper):
            return 0.0 if math.isinf(self.lower) else 1.0
        return (self.upper - self.lower) / self.upper if self.upper > 0 else 0.0


def checked_result(value, lower, upper, method, bounds, converged=True) -> SpectralNorm:
    """The result, unless its certified bounds contradict each other: that is a bug."""
    if lower > upper:
        raise RuntimeError(
            f"spectral_norm proved lower bound {lower!r} above upper bound {upper!r} ({method}, "
            f"bounds {bounds}): one certificate is wrong; this is a bug in sparseconv, please "
            "report it with the layer")
    return SpectralNorm(value, lower, upper, method, bounds, converged)


def scaled_result(result: SpectralNorm, exponent: int, tol: float) -> SpectralNorm:
    """``result`` for weights ``2**exponent`` times those it was computed for: exact, unless
    a bound leaves the normal range (then rounded outward, :func:`sparseconv._rounding.scaled`).
    A lower bound that loses more than ``tol / 8`` of itself so (a subnormal norm holds few
    bits) is no longer within ``tol`` as far as anything can tell: ``converged`` is False."""
    lower = scaled(result.lower, exponent, False)
    lost = result.lower > 0 and result.lower - scaled(lower, -exponent) > tol / 8 * result.lower
    upper = scaled(result.upper, exponent, True)  # inf past float64's range: no convergence
    return SpectralNorm(scaled(result.value, exponent), lower, upper, result.method,
                        {k: scaled(v, exponent, True) for k, v in result.bounds.items()},
                        result.converged and not lost and math.isfinite(upper))
