"""Surrogate gradients for the Heaviside spike function.

Each surrogate is a pure backward function ``grad(x, alpha, scale=1, shift=0, grad_out=None)``: the derivative at
the centred membrane ``x - shift`` (``shift = V_th`` when ``x`` is the membrane itself), times ``scale`` and the
incoming gradient ``grad_out`` when given, all into one new buffer (the LIF's backward folds its constants in
rather than spending a pass over memory on each). :func:`spike` wraps one in an ``autograd.Function`` whose
forward is the exact step ``H(x) = 1[x >= 0]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from snnlth.registry import Registry


def atan_grad(x: torch.Tensor, alpha: float, scale: float = 1.0, shift: float = 0.0,
              grad_out: torch.Tensor | None = None) -> torch.Tensor:
    """ATan surrogate: ``dS/dx = (alpha / 2) / (1 + (pi/2 * alpha * x)^2)`` (the paper's, alpha = 2), taken at
    ``x - shift``, times ``scale`` and ``grad_out`` when given: 4 passes into one new buffer, written as
    ``grad_out / (k (x - shift)^2 + m)`` with the constants folded into ``k`` and ``m``."""
    m = 2.0 / (alpha * scale)
    c = math.pi / 2 * alpha * math.sqrt(m)  # sqrt(k)
    denom = torch.add(torch.tensor(-c * shift, dtype=x.dtype), x, alpha=c).square_().add_(m)
    if grad_out is None:
        return denom.reciprocal_()
    if torch.is_grad_enabled():  # a double backward (create_graph=True) records this op: no out=
        return grad_out / denom
    return torch.div(grad_out, denom, out=denom)


def sigmoid_grad(x: torch.Tensor, alpha: float, scale: float = 1.0, shift: float = 0.0,
                 grad_out: torch.Tensor | None = None) -> torch.Tensor:
    """Sigmoid surrogate: ``dS/dx = alpha * s * (1 - s)`` with ``s = sigmoid(alpha * x)``, taken at ``x - shift``,
    times ``scale`` and ``grad_out`` when given."""
    s = torch.sub(x, shift).mul_(alpha).sigmoid_()
    s.sub_(s.square()).mul_(alpha * scale)  # s - s² = s (1 - s)
    return s if grad_out is None else s.mul_(grad_out)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, grad_fn: Callable) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha, ctx.grad_fn = alpha, grad_fn
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ctx.grad_fn(x, ctx.alpha, grad_out=grad_out), None, None


SURROGATES: Registry[Callable[..., torch.Tensor]] = Registry("surrogate")
SURROGATES.register("atan")(atan_grad)
SURROGATES.register("sigmoid")(sigmoid_grad)


def spike(x: torch.Tensor, surrogate: str = "atan", alpha: float = 2.0) -> torch.Tensor:
    """Heaviside step of ``x = V - V_th`` in the forward pass, the named surrogate's derivative in the backward."""
    return _Spike.apply(x, alpha, SURROGATES.get(surrogate))
