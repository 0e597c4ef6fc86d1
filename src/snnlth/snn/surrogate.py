"""Surrogate gradients for the Heaviside spike function.

Each surrogate is a pure backward function ``grad(x, alpha)`` of the centred membrane ``x = V - V_th`` wrapped in an
``autograd.Function`` whose forward is the exact step ``H(x) = 1[x >= 0]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from snnlth.registry import Registry


def atan_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """ATan surrogate: ``dS/dx = (alpha / 2) / (1 + (pi/2 * alpha * x)^2)`` (the paper's, alpha = 2)."""
    return torch.mul(x, math.pi / 2 * alpha).square_().add_(1).reciprocal_().mul_(alpha / 2)  # one new buffer


def sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Sigmoid surrogate: ``dS/dx = alpha * s * (1 - s)`` with ``s = sigmoid(alpha * x)``."""
    s = torch.sigmoid(alpha * x)
    return s.sub_(s.square()).mul_(alpha)  # s - s² = s (1 - s)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, grad_fn: Callable) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha, ctx.grad_fn = alpha, grad_fn
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.grad_fn(x, ctx.alpha), None, None


SURROGATES: Registry[Callable[[torch.Tensor, float], torch.Tensor]] = Registry("surrogate")
SURROGATES.register("atan")(atan_grad)
SURROGATES.register("sigmoid")(sigmoid_grad)


def spike(x: torch.Tensor, surrogate: str = "atan", alpha: float = 2.0) -> torch.Tensor:
    """Heaviside step of ``x = V - V_th`` in the forward pass, the named surrogate's derivative in the backward."""
    return _Spike.apply(x, alpha, SURROGATES.get(surrogate))
