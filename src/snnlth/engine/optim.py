"""Optimiser, learning-rate schedule and device choice."""

from __future__ import annotations

import math

import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.engine.recipe import OptimizerFactory, make_custom_optimizer, need_named
from snnlth.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when visible, else CPU; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def make_optimizer(model: nn.Module, cfg: TrainConfig, factory: OptimizerFactory | None = None,
                   lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """The run's ``--optimizer``: SGD with momentum and *real* weight decay (the paper's), or Adam (weight decay as an
    L2 term) / AdamW (decoupled) with ``--betas``. ``--quirks official`` mirrors the official code, which passed the
    weight decay in SGD's ``dampening`` slot: no weight decay, momentum buffers damped by (1 - 5e-4).

    The update is PyTorch's fused kernel where every parameter allows it (floating point, on CPU or CUDA): the
    same update rule, one pass over all tensors (SGD, VGG16 on CPU: 6 ms a step instead of 16 ms).

    ``factory``: a Python recipe's ``optimizer(params)`` instead (its groups' learning rates times ``lr_scale``;
    ``cfg.lr`` already holds the phase's scale). Every group remembers its starting learning rate as
    ``initial_lr``, which the schedule scales."""
    params = list(model.parameters())
    if factory is not None:
        optimizer = make_custom_optimizer(factory, params, lr_scale)
    else:
        optimizer = _named_optimizer(params, cfg)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def _named_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    fused = fused_ok(params)
    if cfg.optimizer in ("adam", "adamw"):
        kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return kind(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused)
    need_named("optimizer", cfg.optimizer)
    if cfg.quirks == "official":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.weight_decay,
                                    weight_decay=0.0, fused=fused)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    fused=fused)
    if fused:
        optimizer.register_step_pre_hook(_fused_where_it_can)
    return optimizer


def _fused_where_it_can(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Before each step: PyTorch's fused SGD needs all or none of the stepped parameters to have a momentum buffer.
    A parameter that gets its first gradient later than the others (frozen, then trained; unused in some forward
    passes; missing from a checkpoint's state) would break it, so that step runs on the plain kernel, which starts
    the new buffer as SGD does; the fused kernel takes over again on the next step."""
    for group in optimizer.param_groups:
        if not group["momentum"]:
            group["fused"] = True
            continue
        stepped = [p for p in group["params"] if p.grad is not None]
        group["fused"] = len({optimizer.state.get(p, {}).get("momentum_buffer") is not None for p in stepped}) < 2


def fused_ok(params: list[torch.Tensor]) -> bool | None:
    """True when PyTorch's fused SGD takes all of ``params``; None (PyTorch's own choice) otherwise."""
    ok = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok else None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping this optimizer's choice of kernel: a checkpoint's param groups
    carry the ``fused``/``foreach`` flags of the process that wrote it (maybe another device, or a version of snnlth
    from before the fused kernel), which say nothing about the maths; and its ``initial_lr`` (a checkpoint of an
    older version has none, and its ``lr`` is the scheduled one)."""
    kernels = [{k: g.get(k) for k in ("fused", "foreach", "initial_lr")} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, kernels):
        group.update(flags)


def lr_at(cfg: TrainConfig, epoch: int, epochs: int, base: float | None = None) -> float:
    """The learning rate of ``epoch`` (0-based) of a phase of ``epochs`` under ``--schedule`` after
    ``--warmup-epochs`` W of linear warm-up (``lr·(e+1)/(W+1)``): cosine and linear then run over the remaining
    epochs; ``step`` is ×0.1 from epoch ⌊E/2⌋ and again from ⌊3E/4⌋ of the phase's E (the official code's
    milestones). A pure function of the epoch, so a resumed run needs no scheduler state. ``base``: the peak
    learning rate (default ``cfg.lr``; a param group's ``initial_lr``)."""
    lr = cfg.lr if base is None else base
    warm = min(cfg.warmup_epochs, epochs - 1)
    if epoch < warm:
        return lr * (epoch + 1) / (warm + 1)
    e, n = epoch - warm, epochs - warm
    if cfg.schedule == "cosine":
        return cosine_lr(lr, e, n)
    if cfg.schedule == "linear":
        return lr * (1 - e / n)
    if cfg.schedule == "step":
        return lr * 0.1 ** sum(epoch >= m for m in (int(0.5 * epochs), int(0.75 * epochs)))
    return lr


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base_lr`` at epoch 0 towards 0 at ``epochs``, stepped per epoch (as the paper's
    ``CosineAnnealingLR(T_max=epochs)``). A pure function of the epoch, so a resumed run needs no scheduler state."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / epochs))


def schedule_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int, epochs: int) -> float:
    """Set every param group's learning rate for ``epoch`` (:func:`lr_at` from the group's ``initial_lr``, or
    ``cfg.lr`` for an optimizer made elsewhere); returns the first group's."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(cfg, epoch, epochs, group.setdefault("initial_lr", cfg.lr))
    return optimizer.param_groups[0]["lr"]
