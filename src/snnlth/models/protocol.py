"""The model protocol every search strategy relies on (and that adapters for foreign SNNs will implement).

A :class:`SpikingNet` maps a batch of images ``x: [B, C, H, W]`` and a number of timesteps to per-step logits
``[T, B, classes]``. The number of timesteps is an argument of ``forward`` because Early-Time search changes it.
Prunable tensors are the weights of Conv and Linear layers, named as in ``named_parameters()``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import nn

from snnlth.config import ModelConfig
from snnlth.snn.neuron import LIF, SeqReLU

NeuronFactory = Callable[[], nn.Module]


def neuron_factory(cfg: ModelConfig) -> NeuronFactory:
    """A zero-argument constructor of the configured neuron (a fresh module per layer, never a shared instance)."""
    if cfg.neuron == "relu":
        return SeqReLU
    return lambda: LIF(cfg.tau, cfg.v_threshold, cfg.surrogate, cfg.alpha)


class SpikingNet(nn.Module, metaclass=abc.ABCMeta):
    """Base class: subclasses implement :meth:`forward_seq`; ``forward`` handles the ANN twin and the default T."""

    def __init__(self, neuron: NeuronFactory, timesteps: int = 5) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.is_ann = neuron is SeqReLU

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]`` for images ``x: [B, C, H, W]``.

        The ANN twin computes once and repeats its logits over T (identical steps, so the loss and the prediction
        equal those of a plain ANN).
        """
        t = self.timesteps if timesteps is None else int(timesteps)
        if t < 1:
            raise ValueError(f"timesteps must be >= 1, got {t}")
        if self.is_ann:
            return self.forward_seq(x, 1).expand(t, -1, -1)
        return self.forward_seq(x, t)

    @abc.abstractmethod
    def forward_seq(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]`` of images ``x: [B, C, H, W]`` over ``timesteps`` steps."""

    def reset(self) -> None:
        """No-op: neurons are stateless across calls. Kept so engines written for stateful SNNs can call it."""

    def prunable_names(self) -> list[str]:
        """Names of the prunable tensors: weights of every Conv and Linear layer, in definition order."""
        return [f"{name}.weight" if name else "weight" for name, m in self.named_modules()
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def paper_vgg_init(model: nn.Module) -> None:
    """The paper's VGG init: conv kaiming-normal (fan_out, relu), bias 0; BN 1/0; Linear N(0, 0.01), bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
