"""``convnet``: a small CPU-sized SNN and ``lenet300``: the 784-300-100-10 fully connected SNN."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.models.protocol import NormFactory, Parts, SpikingNet, paper_vgg_init
from snnlth.snn.fused import fire
from snnlth.snn.layers import repeat_timesteps, seq_apply


def conv_bn(c_in: int, c_out: int, norm: NormFactory, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), norm(c_out))


class ConvNet(SpikingNet):
    """Three conv(3×3)+BN+LIF+maxpool(2) blocks at 32/64/128 channels, one linear readout.

    The first conv+BN runs once per image (direct coding); the rest runs on ``[T·B, ...]``.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, parts: Parts,
                 timesteps: int = 5, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__(parts, timesteps)
        widths = (in_channels, *channels)
        self.blocks = nn.ModuleList(conv_bn(a, b, parts.norm) for a, b in zip(widths[:-1], widths[1:]))
        self.neurons = nn.ModuleList(parts.neuron() for _ in channels)
        self.pool = nn.MaxPool2d(2)
        side = image_size // 2 ** len(channels)
        self.classifier = nn.Linear(channels[-1] * side * side, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        paper_vgg_init(self)

    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        return repeat_timesteps(self.blocks[0](self.conv_layout.image(x)), timesteps)  # [T, B, C, H, W]

    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        for i, (block, neuron) in enumerate(zip(self.blocks, self.neurons)):
            x_seq = fire(neuron, self.conv_layout.seq(block[0], x_seq), norm=block[1]) if i > 0 else neuron(x_seq)
            x_seq = seq_apply(self.pool, x_seq)
        return seq_apply(self.classifier, x_seq.flatten(2))  # [T, B, classes]


class LeNet300(SpikingNet):
    """Fully connected SNN ``in -> 300 -> 100 -> classes``; the first layer is computed once (direct coding)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, parts: Parts,
                 timesteps: int = 5) -> None:
        super().__init__(parts, timesteps)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 300)
        self.lif1 = parts.neuron()
        self.fc2 = nn.Linear(300, 100)
        self.lif2 = parts.neuron()
        self.fc3 = nn.Linear(100, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        for fc in (self.fc1, self.fc2, self.fc3):
            # kaiming (fan_in): PyTorch's default uniform init leaves the membranes far below threshold, no spikes
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
            nn.init.zeros_(fc.bias)

    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        return repeat_timesteps(self.fc1(x.flatten(1)), timesteps)  # [T, B, 300]

    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        x_seq = self.lif2(seq_apply(self.fc2, self.lif1(x_seq)))
        return seq_apply(self.fc3, x_seq)
