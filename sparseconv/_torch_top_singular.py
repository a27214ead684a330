"""The largest singular value of small matrices, with exact first and second derivatives.

``torch.linalg.svdvals`` differentiates every singular value; its second derivatives divide by
the differences of *every* pair of values, and are NaN or inf wherever two of them repeat,
zeros included, even where the largest value is simple (a review found NaN Hessian-vector
products for ResNet's 1x1 stride-2 shortcut, whose polyphase matrices hold zero singular
values, and for a layer with a pruned input channel). The largest value ``sigma`` of ``H``
needs only its own vectors and its gap to the others:

- first derivative: ``d sigma = Re <G, dH>`` with ``G = u v^H``;
- second: the derivative of ``G = H P / sigma``, where ``P = v v^H`` is the spectral projector
  of the Gram matrix ``A = H^H H`` on ``sigma^2``, by its first-order perturbation
  ``dP = R dA P + P dA R``, ``dA = dH^H H + H^H dH``, with the reduced resolvent
  ``R = sum_{j>1} v_j v_j^H / (sigma^2 - sigma_j^2)`` over a full set of right singular
  vectors (``H`` tall; a wide ``H`` is taken as its conjugate transpose). ``R`` is finite
  wherever ``sigma`` is simple, whatever the other values do.

Everything is computed from ``torch.linalg.svd`` of ``H`` (no Gram matrix is formed, so no
square under- or overflows), scaled by ``sigma`` so that the resolvent's coefficients are
``1 / ((1 - s_j)(1 + s_j))`` with ``s_j = sigma_j / sigma``. Backward and forward mode
(``torch.func.jvp``, ``hessian``) are both given; third derivatives are refused by name
(:func:`refused`), never returned as zeros.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["largest_singular_value", "refused"]


def largest_singular_value(h: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.svdvals(h)[..., 0]``, with first and second derivatives that are finite
    wherever the largest value is simple (module docstring)."""
    return _LargestSingularValue.apply(h)


def refused(x: torch.Tensor, message: str) -> torch.Tensor:
    """``x``, whose derivative raises ``RuntimeError(message)``: a value autograd may carry but
    must not differentiate (a third derivative, a scaling's cotangent out of range)."""
    return _Refused.apply(x, message)


def _inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Re <x, y> = Re sum(conj(x) * y)`` over the last two axes: torch's inner product for
    real-valued derivatives of complex tensors."""
    return (x.conj() * y).real.sum((-2, -1)) if x.is_complex() else (x * y).sum((-2, -1))


def _top_direction(h: torch.Tensor) -> torch.Tensor:
    """``G = u v^H`` of the largest singular value of ``h`` (``(..., m, n)``), differentiable
    once more (:class:`_TopDirection`, written for tall matrices)."""
    if h.shape[-2] >= h.shape[-1]:
        return _TopDirection.apply(h)
    return _TopDirection.apply(h.mH).mH


class _LargestSingularValue(torch.autograd.Function):
    """``svdvals(h)[..., 0]`` with gradient ``G = u v^H`` (:func:`_top_direction`)."""

    generate_vmap_rule = True  # (torch.func.hessian vmaps its jvp)

    @staticmethod
    def forward(h: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(h)[..., 0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (h,) = ctx.saved_tensors
        return grad[..., None, None] * _top_direction(h)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (h,) = ctx.saved_tensors
        return _inner(_top_direction(h), tangent)


class _TopDirection(torch.autograd.Function):
    """``G = u v^H`` of a tall ``h``, with its first derivative (module docstring); its second
    (a third derivative of ``sigma``) refused."""

    generate_vmap_rule = True  # (torch.func.hessian vmaps its jvp)

    @staticmethod
    def forward(h: torch.Tensor) -> torch.Tensor:
        u, _, vh = torch.linalg.svd(h, full_matrices=False)
        return u[..., :, :1] @ vh[..., :1, :]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        # (inputs only: torch.func's generated vmap rules batch what is saved, and an
        # intermediate saved here failed jacrev(jacrev(f)); _parts recomputes the rest)
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (h,) = ctx.saved_tensors
        scaled, projector, resolvent, direction, sigma = _parts(h.detach())
        # the adjoint of jvp's map below, term by term
        b = resolvent @ scaled.mH @ grad @ projector + projector @ scaled.mH @ grad @ resolvent
        result = (grad @ projector + scaled @ (b + b.mH)
                  - _inner(grad, direction)[..., None, None] * direction) / sigma
        if torch.is_grad_enabled():  # (create_graph=True: a third derivative could be asked)
            result = result + refused(h - h.detach(), _THIRD)
        return result

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        (h,) = ctx.saved_tensors
        scaled, projector, resolvent, direction, sigma = _parts(h.detach())
        gram = tangent.mH @ scaled + scaled.mH @ tangent
        return (tangent @ projector
                + scaled @ (resolvent @ gram @ projector + projector @ gram @ resolvent)
                - _inner(direction, tangent)[..., None, None] * direction) / sigma


def _parts(h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For a tall ``h`` (no graph): ``h / sigma``, the projector ``P = v v^H``, the reduced
    resolvent scaled by ``sigma^2`` (``sum_{j>1} v_j v_j^H / ((1 - s_j)(1 + s_j))``,
    ``s_j = sigma_j / sigma``: no square formed), ``G = u v^H`` and ``sigma``."""
    u, s, vh = torch.linalg.svd(h, full_matrices=False)
    sigma = s[..., :1, None]
    ratio = s[..., 1:] / s[..., :1]
    top, rest = vh[..., :1, :].mH, vh[..., 1:, :].mH
    resolvent = (rest * (1 / ((1 - ratio) * (1 + ratio)))[..., None, :]) @ rest.mH
    return h / sigma, top @ top.mH, resolvent, u[..., :, :1] @ top.mH, sigma


_THIRD = ("third derivatives of a largest singular value (of spectral_norm_upper, "
          "circular_spectral_norm, lipschitz_bounds) are not computed: first and second "
          "derivatives are")


class _Refused(torch.autograd.Function):
    """The identity, whose derivative raises the message it was given (:func:`refused`)."""

    generate_vmap_rule = True  # (torch.func.hessian vmaps its jvp)

    @staticmethod
    def forward(x: torch.Tensor, message: str) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, str], output: torch.Tensor) -> None:
        ctx.message = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        raise RuntimeError(ctx.message)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor, _: Any) -> torch.Tensor:
        raise RuntimeError(ctx.message)
