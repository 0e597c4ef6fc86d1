"""snnlth's own architectures as NIR graphs (convnet, lenet300, vgg16, resnet19, both input sizes), built from
:mod:`.nodes`. The first conv runs on the image at every step (direct coding); the readout (logits summed over T)
stays outside the graph."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from snnlth.errors import ConfigError
from snnlth.interchange import nodes as N
from snnlth.models.convnet import ConvNet, LeNet300
from snnlth.models.resnet import BasicBlock, ResNet19
from snnlth.models.vgg import VGG
from snnlth.snn.neuron import LIF

Shape = tuple[int, int, int]


def _lif(nir: Any, neuron: nn.Module, shape: tuple[int, ...], dt: float, where: str) -> Any:
    if not isinstance(neuron, LIF):
        raise ConfigError(f"NIR export: {where} is a {type(neuron).__name__}, which has no NIR form (the ANN twin's "
                          "ReLU cannot be written); export a spiking ticket")
    return N.lif(nir, shape, dt, neuron.tau, neuron.v_threshold)


def _start(nir: Any, model: nn.Module, shape: Shape) -> N.Graph:
    g = N.Graph(nir)
    g.add("input", nir.Input(input_type={"input": np.array(shape)}))
    N.normalize(nir, g, getattr(model, "input_transform", None), shape[0], shape[1:])
    return g


def _conv_stack(nir: Any, g: N.Graph, model: nn.Module, shape: Shape, dt: float) -> tuple[int, int, int]:
    """conv+BN → LIF (→ max-pool gate) per block of a convnet or VGG; the (C, H, W) at the end."""
    if isinstance(model, VGG):
        layers, neurons, pools = model.features, model.neurons, model.pool_after
    else:
        layers, neurons, pools = model.blocks, model.neurons, (True,) * len(model.blocks)
    c, hw = shape[0], shape[1:]
    for i, (block, neuron, pool) in enumerate(zip(layers, neurons, pools)):
        node, hw = N.conv(nir, block[0], hw, block[1])
        c = block[0].out_channels
        g.add(f"conv{i}", node)
        g.add(f"lif{i}", _lif(nir, neuron, (c, *hw), dt, f"neuron {i}"))
        if pool:
            hw = (hw[0] // 2, hw[1] // 2)
            N.pool_gate(nir, g, f"pool{i}", (c, *hw), dt)
    return (c, *hw)


def convnet(nir: Any, model: ConvNet | VGG, shape: Shape, dt: float) -> N.Graph:
    g = _start(nir, model, shape)
    out = _conv_stack(nir, g, model, shape, dt)
    g.add("flatten", N.flatten(nir, out))
    g.add("classifier", N.affine(nir, model.classifier))
    return g


def lenet(nir: Any, model: LeNet300, shape: Shape, dt: float) -> N.Graph:
    g = _start(nir, model, shape)
    g.add("flatten", N.flatten(nir, shape))
    for i, (fc, neuron) in enumerate(((model.fc1, model.lif1), (model.fc2, model.lif2)), start=1):
        g.add(f"fc{i}", N.affine(nir, fc))
        g.add(f"lif{i}", _lif(nir, neuron, (fc.out_features,), dt, f"lif{i}"))
    g.add("fc3", N.affine(nir, model.fc3))
    return g


def _block(nir: Any, g: N.Graph, block: BasicBlock, name: str, shape: Shape, dt: float) -> Shape:
    """``LIF(BN(conv1)) → BN(conv2) + shortcut → LIF``: the shortcut is a second edge into the last LIF (an
    identity shortcut an edge from the block's input spikes, a projection a folded 1×1 conv)."""
    entry = g.last
    node, hw = N.conv(nir, block.conv1, shape[1:], block.bn1)
    c = block.conv1.out_channels
    g.add(f"{name}_conv1", node)
    g.add(f"{name}_lif1", _lif(nir, block.lif1, (c, *hw), dt, f"{name}.lif1"))
    g.add(f"{name}_conv2", N.conv(nir, block.conv2, hw, block.bn2)[0])
    sources = (f"{name}_conv2", entry)
    if len(block.shortcut):
        g.add(f"{name}_shortcut", N.conv(nir, block.shortcut[0], shape[1:], block.shortcut[1])[0], sources=(entry,))
        sources = (f"{name}_conv2", f"{name}_shortcut")
    g.add(f"{name}_lif2", _lif(nir, block.lif2, (c, *hw), dt, f"{name}.lif2"), sources=sources)
    return (c, *hw)


def resnet(nir: Any, model: ResNet19, shape: Shape, dt: float) -> N.Graph:
    g = _start(nir, model, shape)
    node, hw = N.conv(nir, model.conv1, shape[1:], model.bn1)
    g.add("conv1", node)
    here: Shape = (model.conv1.out_channels, *hw)
    g.add("lif_input", _lif(nir, model.lif_input, here, dt, "lif_input"))
    for i in range(1, model.n_layers + 1):
        for j, block in enumerate(getattr(model, f"layer{i}")):
            here = _block(nir, g, block, f"layer{i}_{j}", here, dt)
    c, h, w = here
    # AdaptiveAvgPool2d(1): the mean over the whole map
    g.add("avgpool", nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0])))
    g.add("flatten", N.flatten(nir, (c, 1, 1)))
    g.add("fc1", N.affine(nir, model.fc1))
    g.add("lif_fc", _lif(nir, model.lif_fc, (model.fc1.out_features,), dt, "lif_fc"))
    g.add("fc2", N.affine(nir, model.fc2))
    return g


BUILDERS = {ConvNet: convnet, VGG: convnet, LeNet300: lenet, ResNet19: resnet}
