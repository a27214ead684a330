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

Both come from ``torch.linalg.svd`` of ``H`` (no Gram matrix is formed, so no square under-
or overflows), scaled by ``sigma`` so that the resolvent's coefficients are
``1 / ((1 - s_j)(1 + s_j))`` with ``s_j = sigma_j / sigma``.

They reach autograd as the second-order Taylor polynomial of ``sigma`` at ``H``, evaluated at
``H`` itself: ``sigma + Re <G, D> + Re <D, G'(D)> / 2`` with ``D = H - H.detach()``, zero in
value, whose derivatives are ``H``'s, and every coefficient computed without a graph (a
``detach`` is one for every level of ``torch.func``'s transforms). The value is ``sigma``,
the first derivative ``G``, the second ``G'``, in every mode and nesting: backward, double
backward, ``torch.autograd.forward_ad``, ``torch.func.jvp``, ``jacrev``, ``jacfwd``,
``hessian`` and ``jacfwd(jacfwd(f))``. (A custom autograd function with its own backward and
jvp did not do that: a review found ``jacfwd(jacfwd(f))`` zero, as torch does not record a
custom jvp for outer levels.) Where ``sigma`` is not differentiable the first derivative is
``u v^H`` of the SVD's choice, as ``svdvals``': at a zero matrix, where the second is zero
(``sigma(x V) = |x| sigma(V)`` is linear on each side of zero; so below float's normal
range, where ``1 / sigma`` overflows), and where the largest value repeats (an orthogonal or
Dirac-initialised layer; values closer than ``8 max(m, n) eps``, relative, which the SVD
does not resolve, count as repeated), where the second leaves the repeated pairs out of
``R``.

Third derivatives would be those of the polynomial, zero: they are refused instead where
reverse mode takes them (the coefficients pass through :class:`_Frozen`, whose backward
raises by name on a cotangent other than zero: triple backward; NaN under ``vmap``, which
cannot raise on values: ``jacrev`` of a Hessian), and are not computed, zero, where forward
mode takes the third (``jacfwd`` of ``jacfwd`` of ``jacfwd``), which cannot tell a third
derivative's tangent from a second's.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["largest_singular_value", "refused"]


def largest_singular_value(h: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.svdvals(h)[..., 0]`` for ``h`` of shape ``(..., m, n)``, with first and
    second derivatives exact wherever the largest value is simple (module docstring)."""
    t = h if h.shape[-2] >= h.shape[-1] else h.mH  # (sigma(H) = sigma(H^H): tall)
    *parts, sigma = _Frozen.apply(t)
    direction = parts[3].detach()
    step = t - t.detach()  # (zero, with t's derivatives)
    return (sigma.detach() + _inner(direction, step)
            + _inner(step, _direction_change(step, *parts)) / 2)


def _direction_change(step: torch.Tensor, scaled: torch.Tensor, projector: torch.Tensor,
                      resolvent: torch.Tensor, direction: torch.Tensor,
                      inverse: torch.Tensor) -> torch.Tensor:
    """``G'(D)``: the derivative of ``G = u v^H`` of a tall matrix in the direction ``D``, from
    ``H / sigma``, ``P``, the scaled reduced resolvent, ``G`` and ``1 / sigma`` (module
    docstring): ``(D P + H~ (R~ A' P + P A' R~) - G Re <G, D>) / sigma``,
    ``A' = D^H H~ + H~^H D``."""
    gram = step.mH @ scaled + scaled.mH @ step
    return (step @ projector + scaled @ (resolvent @ gram @ projector
                                         + projector @ gram @ resolvent)
            - _inner(direction, step)[..., None, None] * direction) * inverse


def _inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Re <x, y> = Re sum(conj(x) * y)`` over the last two axes: torch's inner product for
    real-valued derivatives of complex tensors."""
    return (x.conj() * y).real.sum((-2, -1)) if x.is_complex() else (x * y).sum((-2, -1))


_THIRD = ("third derivatives of a largest singular value (of spectral_norm_upper, "
          "circular_spectral_norm, lipschitz_bounds) are not computed: first and second "
          "derivatives are")


class _Frozen(torch.autograd.Function):
    """The coefficients of the Hessian term, from the SVD of a tall ``t`` (no graph): ``t /
    sigma``, ``P = v v^H``, the reduced resolvent scaled by ``sigma^2`` (``sum_{j>1} v_j
    v_j^H / ((1 - s_j)(1 + s_j))``, no square formed), ``G = u v^H`` and ``1 / sigma``
    (``(..., 1, 1)``); and ``sigma`` itself (``(...)``, the value, used detached). Their own
    derivatives, which only a third derivative reads, are refused: a cotangent of zero (the
    second derivative's: they multiply ``D = 0``) is passed as zero, any other raises by
    name (NaN under ``vmap``: no raise on values there); forward mode gives them zero
    tangents (the second derivative's are multiplied by zero)."""

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None], t: torch.Tensor) -> tuple[Any, Any]:
        """Batched by torch.func.vmap (its generated rule failed in nested forward mode):
        every operation broadcasts over leading axes, so the batch axis leads."""
        (axis,) = in_dims
        outputs = _Frozen.apply(t if axis is None else t.movedim(axis, 0))
        return outputs, (None if axis is None else 0,) * len(outputs)

    @staticmethod
    def forward(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u, s, vh = torch.linalg.svd(t, full_matrices=False)
        # a zero matrix (a zero weight) has sigma = 0, where sigma is not differentiable:
        # the first derivative is u v^H of the SVD's choice, as svdvals', and the Hessian term
        # is dropped (1 / sigma taken as 0; sigma(x v) = |x| sigma(v) is linear on each side)
        # where its coefficients would be NaN, and with them the value (a review)
        # (and below float's normal range, where 1 / sigma overflows, a second derivative
        # of order 1 / sigma is none the float holds: dropped too, as the NaN of inf * 0
        # reached the value, a review)
        positive = (s[..., :1] > 0) & torch.isfinite(1 / s[..., :1])
        sigma = torch.where(positive, s[..., :1], 1)
        ratio = s[..., 1:] / sigma
        top, rest = vh[..., :1, :].mH, vh[..., 1:, :].mH
        # where the largest value repeats (an orthogonal or Dirac-initialised layer's), no
        # derivative exists: the first is the SVD's choice, as svdvals', and the second leaves
        # the repeated pairs out (1 / 0 would make the coefficients, and the value, NaN); so
        # it does with values apart by less than the SVD resolves, 8 max(m, n) eps relative
        # (a review: an orthogonal layer's values, 1 apart by an ulp, gave Hessians of 4e15)
        gaps = (1 - ratio) * (1 + ratio)
        resolved = 1 - ratio > 8 * max(t.shape[-2:]) * torch.finfo(s.dtype).eps
        resolvent = (rest * torch.where(resolved, 1 / gaps, 0)[..., None, :]) @ rest.mH
        inverse = torch.where(positive, 1 / sigma, 0)[..., None]
        # (s[..., 0] copied: a view of s, which forward mode's tangents must not be)
        return (t / sigma[..., None], top @ top.mH, resolvent, u[..., :, :1] @ top.mH,
                inverse, s[..., 0].clone())

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: Any) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        total = torch.stack([g.abs().sum() for g in grads]).sum()
        zero = torch.zeros_like(t)
        poisoned = zero + torch.where(total == 0, 0.0, torch.nan).to(zero.real.dtype)
        try:
            nonzero = bool(total)
        except RuntimeError:  # (batched by torch.func.vmap, or by the older vmap of
            return poisoned  # is_grads_batched and gradcheck's batched checks, a review)
        if nonzero and not bool(torch.isfinite(total)):  # (an inf or NaN from the loss,
            return poisoned  # carried as NaN: a first derivative, no third; a review)
        if nonzero:
            raise RuntimeError(_THIRD)
        return zero

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # (zeros made from the tangent: batched as it is under vmap, which refuses new ones)
        zero, square = tangent * 0, (tangent.mH @ tangent) * 0
        scalar = tangent.abs().sum((-2, -1)) * 0
        return zero, square, square, zero, scalar[..., None, None], scalar


def refused(x: torch.Tensor, message: str) -> torch.Tensor:
    """``x``, whose derivative raises ``RuntimeError(message)``: a value autograd may carry but
    must not differentiate (a scaling's cotangent out of range)."""
    return _Refused.apply(x, message)


class _Refused(torch.autograd.Function):
    """The identity, whose derivative raises the message it was given (:func:`refused`)."""

    generate_vmap_rule = True

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
