"""Helpers to run stateless layers over ``[T, B, ...]`` sequences by folding time into the batch."""

from __future__ import annotations

import torch
from torch import nn


def seq_apply(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply a stateless ``module`` to every timestep at once: ``[T, B, ...] -> [T·B, ...] -> [T, B, ...]``.

    BatchNorm then normalises over all T·B samples, as spikingjelly's multi-step ``SeqToANNContainer`` does.
    """
    t, b = x_seq.shape[:2]
    y = module(x_seq.flatten(0, 1))
    return y.view(t, b, *y.shape[1:])


def repeat_timesteps(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Direct input coding: feed the same static current ``x: [B, ...]`` at every step -> ``[T, B, ...]`` (a view)."""
    return x.unsqueeze(0).expand(timesteps, *x.shape)
