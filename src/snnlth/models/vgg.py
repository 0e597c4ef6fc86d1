"""The paper's VGG16-BN SNN (conv bias, one Linear(512, classes) readout), for 32×32 and 28×28 input."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.models.convnet import conv_bn
from snnlth.models.protocol import Parts, SpikingNet, paper_vgg_init
from snnlth.snn.fused import fire
from snnlth.snn.layers import repeat_timesteps, seq_apply

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(SpikingNet):
    """conv3×3(bias)+BN+LIF per cfg entry, max-pool on spikes at each ``"M"``.

    On 28×28 input the last pool would shrink a 1×1 map to nothing, so pools are skipped once the map is 1×1: both
    input sizes end in 512 features and have the same parameter count.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, parts: Parts,
                 timesteps: int = 5, cfg: tuple = VGG16_CFG) -> None:
        super().__init__(parts, timesteps)
        convs, pool_after, c, side = [], [], in_channels, image_size
        for item in cfg:
            if item == "M":
                if side >= 2:
                    pool_after[-1], side = True, side // 2
                continue
            convs.append(conv_bn(c, item, parts.norm, bias=True))
            pool_after.append(False)
            c = item
        self.features = nn.ModuleList(convs)
        self.neurons = nn.ModuleList(parts.neuron() for _ in convs)
        self.pool_after = tuple(pool_after)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(c * side * side, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        paper_vgg_init(self)

    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        return repeat_timesteps(self.features[0](self.conv_layout.image(x)), timesteps)  # [T, B, 64, H, W]

    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        for i, (conv, neuron) in enumerate(zip(self.features, self.neurons)):
            # conv, then BN and LIF as one operation where they can be fused (snnlth.snn.fused)
            x_seq = fire(neuron, self.conv_layout.seq(conv[0], x_seq), norm=conv[1]) if i > 0 else neuron(x_seq)
            if self.pool_after[i]:
                x_seq = seq_apply(self.pool, x_seq)
        return seq_apply(self.classifier, x_seq.flatten(2))
