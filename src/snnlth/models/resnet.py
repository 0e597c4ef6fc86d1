"""The paper's ResNet19 SNN: BasicBlocks [3, 3, 2] at 128/256/512 channels (each stage starts with stride 2),
global average pool, fc 512→256 → LIF → fc 256→classes. Parameter names follow the paper's code."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.models.protocol import PLAIN_LAYOUT, ConvLayout, Parts, SpikingNet
from snnlth.snn.fused import fire
from snnlth.snn.layers import repeat_timesteps, seq_apply


class BasicBlock(nn.Module):
    """``LIF(BN(conv3×3)) -> BN(conv3×3) + shortcut -> LIF`` over ``[T, B, C, H, W]``."""

    def __init__(self, c_in: int, c_out: int, stride: int, parts: Parts) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = parts.norm(c_out)
        self.lif1 = parts.neuron()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = parts.norm(c_out)
        self.lif2 = parts.neuron()
        self.shortcut = nn.Sequential()
        self.conv_layout: ConvLayout = PLAIN_LAYOUT  # set by the engine, as the model's
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), parts.norm(c_out))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # BN, the residual add and LIF as one operation where they can be fused (snnlth.snn.fused)
        conv = self.conv_layout.seq
        out = fire(self.lif1, conv(self.conv1, x_seq), norm=self.bn1)
        shortcut = x_seq if len(self.shortcut) == 0 else seq_apply(self.shortcut[1], conv(self.shortcut[0], x_seq))
        return fire(self.lif2, conv(self.conv2, out), norm=self.bn2, residual=shortcut)


class ResNet19(SpikingNet):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, parts: Parts,
                 timesteps: int = 5, blocks: tuple[int, ...] = (3, 3, 2),
                 widths: tuple[int, ...] = (128, 256, 512)) -> None:
        super().__init__(parts, timesteps)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = parts.norm(64)
        self.lif_input = parts.neuron()
        c = 64
        for i, (n, w) in enumerate(zip(blocks, widths), start=1):
            layer = [BasicBlock(c if j == 0 else w, w, 2 if j == 0 else 1, parts) for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            c = w
        self.n_layers = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(c, 256)
        self.lif_fc = parts.neuron()
        self.fc2 = nn.Linear(256, num_classes)

    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        return repeat_timesteps(self.bn1(self.conv1(self.conv_layout.image(x))), timesteps)  # [T, B, 64, H, W]

    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        x_seq = self.lif_input(x_seq)
        for i in range(1, self.n_layers + 1):
            x_seq = getattr(self, f"layer{i}")(x_seq)
        feats = seq_apply(self.avgpool, x_seq).flatten(2)  # [T, B, 512]
        return seq_apply(self.fc2, self.lif_fc(seq_apply(self.fc1, feats)))
