"""Optimiser, learning-rate schedule and device choice."""

from __future__ import annotations

import math

import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when visible, else CPU; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum and *real* weight decay. ``--quirks official`` mirrors the official code, which passed the
    weight decay in SGD's ``dampening`` slot: no weight decay, momentum buffers damped by (1 - 5e-4)."""
    if cfg.quirks == "official":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.weight_decay,
                               weight_decay=0.0)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base_lr`` at epoch 0 towards 0 at ``epochs``, stepped per epoch (as the paper's
    ``CosineAnnealingLR(T_max=epochs)``). A pure function of the epoch, so a resumed run needs no scheduler state."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / epochs))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
