"""Layers over ``[T, B, ...]`` sequences: stateless layers fold time into the batch; BatchNorm over time is per step
(the paper's code) or pooled over T·B."""

from __future__ import annotations

import torch
from torch import nn


def seq_apply(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply ``module`` to a sequence ``x_seq: [T, B, ...]``.

    A stateless layer runs on all timesteps at once (``[T·B, ...]``); a module marked ``multistep`` (LIF neurons,
    :class:`SeqBatchNorm2d`) takes the sequence itself; an ``nn.Sequential`` is applied child by child.
    """
    if getattr(module, "multistep", False):
        return module(x_seq)
    if isinstance(module, nn.Sequential):
        for child in module:
            x_seq = seq_apply(child, x_seq)
        return x_seq
    t, b = x_seq.shape[:2]
    y = module(x_seq.flatten(0, 1))
    return y.view(t, b, *y.shape[1:])


def repeat_timesteps(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Direct input coding: feed the same static current ``x: [B, ...]`` at every step -> ``[T, B, ...]`` (a view)."""
    return x.unsqueeze(0).expand(timesteps, *x.shape)


class SeqBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d of a sequence ``[T, B, C, H, W]`` (a plain ``[B, C, H, W]`` batch works as usual).

    ``per_step=True`` (the paper's code, which applies one BN layer at every timestep): in training each timestep
    is normalised with its own batch statistics, and the running statistics are updated once per timestep, T times
    per batch. ``per_step=False``: statistics pooled over all T·B samples, one running update per batch. In eval
    mode both use the running statistics. Parameter and buffer names are those of ``nn.BatchNorm2d``.
    """

    multistep = True

    def __init__(self, num_features: int, per_step: bool = True) -> None:
        super().__init__(num_features)
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return super().forward(x)
        if self.per_step and self.training:
            return torch.stack([super(SeqBatchNorm2d, self).forward(x_t) for x_t in x])
        return super().forward(x.flatten(0, 1)).view_as(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, per_step={self.per_step}"
