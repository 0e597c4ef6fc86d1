"""A spikingjelly 2.0 twin of snnlth's convnet, vgg16 and resnet19: the same layers, parameter names and init (our
state dict loads into it), with spikingjelly's LIFNode (tau 4/3, V_th 1, hard reset to 0, ATan α=2, detach_reset=True).

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


class _TwinBlock(nn.Module):
    """snnlth's ResNet19 BasicBlock in spikingjelly layers (same names)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        c1, c2 = block.conv1, block.conv2
        self.conv1 = layer.Conv2d(c1.in_channels, c1.out_channels, 3, c1.stride, 1, bias=False)
        self.bn1 = layer.BatchNorm2d(c1.out_channels)
        self.lif1 = _lif()
        self.conv2 = layer.Conv2d(c2.in_channels, c2.out_channels, 3, 1, 1, bias=False)
        self.bn2 = layer.BatchNorm2d(c2.out_channels)
        self.lif2 = _lif()
        self.shortcut = nn.Sequential()
        if len(block.shortcut):
            sc = block.shortcut[0]
            self.shortcut = nn.Sequential(layer.Conv2d(sc.in_channels, sc.out_channels, 1, sc.stride, bias=False),
                                          layer.BatchNorm2d(sc.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lif1(self.bn1(self.conv1(x)))
        return self.lif2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetTwin(nn.Module):
    """snnlth's ResNet19 in spikingjelly layers; ``step_mode`` as :class:`Twin` (the first conv+BN runs at every
    step, as in the paper's code)."""

    def __init__(self, ours: nn.Module, step_mode: str) -> None:
        super().__init__()
        self.conv1 = layer.Conv2d(ours.conv1.in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = layer.BatchNorm2d(64)
        self.lif_input = _lif()
        self.n_layers = ours.n_layers
        for i in range(1, ours.n_layers + 1):
            self.add_module(f"layer{i}", nn.Sequential(*(_TwinBlock(b) for b in getattr(ours, f"layer{i}"))))
        self.avgpool = layer.AdaptiveAvgPool2d(1)
        self.fc1 = layer.Linear(ours.fc1.in_features, ours.fc1.out_features)
        self.lif_fc = _lif()
        self.fc2 = layer.Linear(ours.fc2.in_features, ours.fc2.out_features)
        self.load_state_dict(ours.state_dict())
        functional.set_step_mode(self, step_mode)
        self.step_mode = step_mode

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lif_input(self.bn1(self.conv1(x)))
        for i in range(1, self.n_layers + 1):
            x = getattr(self, f"layer{i}")(x)
        x = self.avgpool(x).flatten(2 if self.step_mode == "m" else 1)
        return self.fc2(self.lif_fc(self.fc1(x)))

    forward = Twin.forward


def make_twin(ours: nn.Module, step_mode: str) -> nn.Module:
    """The spikingjelly twin of one of snnlth's models (convnet, vgg16, resnet19)."""
    return ResNetTwin(ours, step_mode) if hasattr(ours, "layer1") else Twin(ours, step_mode)
