"""A spikingjelly 2.0 twin of snnlth's convnet and vgg16: the same layers, parameter names and init (our state dict
loads into it), with spikingjelly's LIFNode (tau 4/3, V_th 1, hard reset to 0, ATan α=2, detach_reset=True).

``step_mode="s"`` runs it as the paper's code does (single-step neurons, the whole network looped over T, BatchNorm
per step, ``reset_net`` after each batch); ``"m"`` in spikingjelly's multi-step torch mode (BatchNorm over T·B).
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn


def _lif() -> nn.Module:
    return neuron.LIFNode(tau=4 / 3, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True,
                          surrogate_function=surrogate.ATan(alpha=2.0))


class Twin(nn.Module):
    def __init__(self, ours: nn.Module, step_mode: str) -> None:
        super().__init__()
        convs = ours.blocks if hasattr(ours, "blocks") else ours.features
        name = "blocks" if hasattr(ours, "blocks") else "features"
        twin_convs = nn.ModuleList()
        for block in convs:
            conv, bn = block[0], block[1]
            twin_convs.append(nn.Sequential(
                layer.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None),
                layer.BatchNorm2d(bn.num_features)))
        setattr(self, name, twin_convs)
        self.convs_name = name
        self.neurons = nn.ModuleList(_lif() for _ in convs)
        self.pool_after = getattr(ours, "pool_after", (True,) * len(convs))
        self.pool = layer.MaxPool2d(2)
        self.classifier = layer.Linear(ours.classifier.in_features, ours.classifier.out_features)
        self.load_state_dict(ours.state_dict())
        functional.set_step_mode(self, step_mode)
        self.step_mode = step_mode

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv, lif) in enumerate(zip(getattr(self, self.convs_name), self.neurons)):
            x = lif(conv(x))
            if self.pool_after[i]:
                x = self.pool(x)
        return self.classifier(x.flatten(2 if self.step_mode == "m" else 1))

    def forward(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]`` of images ``x``; neuron state cleared afterwards."""
        if self.step_mode == "m":
            out = self._net(x.unsqueeze(0).repeat(timesteps, *(1,) * x.dim()))
        else:
            out = torch.stack([self._net(x) for _ in range(timesteps)])
        functional.reset_net(self)
        return out
