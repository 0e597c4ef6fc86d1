"""Mask enforcement during training: pruned weights get no gradient and are exactly 0 after every step."""

from __future__ import annotations

import torch
from torch import nn

from snnlth import masks as M


class MaskEnforcer:
    """Holds a model's masks on its device. ``grads_`` zeroes the gradient of pruned weights before the optimiser
    step (so momentum and weight decay see nothing); ``weights_`` multiplies by the mask after it (so a pruned
    weight is exactly 0 whatever the optimiser did). Enforcement is by mask, never by value."""

    def __init__(self, model: nn.Module, masks: M.Masks) -> None:
        params = dict(model.named_parameters())
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise ValueError(f"masks name tensors the model lacks: {unknown[:3]}")
        self.params = {n: params[n] for n in masks}
        self.masks = {n: m.to(device=params[n].device, dtype=params[n].dtype) for n, m in masks.items()}

    def grads_(self) -> None:
        pairs = [(p.grad, self.masks[n]) for n, p in self.params.items() if p.grad is not None]
        if pairs:
            torch._foreach_mul_(*map(list, zip(*pairs)))  # one fused call, not a kernel launch per tensor

    def weights_(self) -> None:
        with torch.no_grad():
            torch._foreach_mul_(list(self.params.values()), [self.masks[n] for n in self.params])

    def set_(self, masks: M.Masks) -> None:
        """Replace the masks in place (a CUDA graph or compiled step keeps reading the same tensors) and zero the
        newly pruned weights (gradual pruning changes the masks during a phase)."""
        for n, m in masks.items():
            self.masks[n].copy_(m.to(device=self.masks[n].device, dtype=self.masks[n].dtype))
        self.weights_()
