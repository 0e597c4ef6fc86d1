"""An adapted network (spikingjelly, or any network of standard layers run by an adapter) as a NIR graph, when it
is a chain: each layer fed by the output of the one called before it. The chain is read by running the network
once (one step, one sample) with hooks on its layers, so a network written as a ``forward`` method with other
operations between its layers is refused rather than written wrong.

Layers with a NIR form: Conv2d and Linear (a BatchNorm right after them folded in), LIF / parametric LIF / IF neurons
with a hard reset (spikingjelly's ``LIFNode``, ``ParametricLIFNode``, ``IFNode``; snnlth's LIF), MaxPool2d of spikes
(written as a sum and a gate), AvgPool2d, AdaptiveAvgPool2d (a whole number of cells per output), Flatten,
spikingjelly's ``VotingLayer`` (a fixed linear map); Dropout and Identity are nothing in eval mode. Any other layer
is refused in one line that names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from snnlth.errors import ConfigError
from snnlth.interchange import nodes as N

SUPPORTED = ("Conv2d, Linear, BatchNorm after them, LIF/ParametricLIF/IF neurons with a hard reset, MaxPool2d of "
             "spikes, AvgPool2d, AdaptiveAvgPool2d, Flatten, VotingLayer, Dropout")
_NOTHING = (nn.Identity, nn.Dropout, nn.Dropout2d)


@dataclass
class Call:
    """One layer call of the traced step: its name, the layer, per-sample input and output shapes."""

    name: str
    layer: nn.Module
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]


def _layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of ``net``: its leaf modules and its neurons (a neuron may hold modules of its own, such as a
    surrogate function), nothing inside a neuron."""
    out: list[tuple[str, nn.Module]] = []
    for name, m in net.named_modules():
        inside = any(name.startswith(f"{n}.") for n, layer in out if _is_neuron(layer))
        if name and not inside and (_is_neuron(m) or not any(True for _ in m.children())):
            out.append((name, m))
    return out


def trace(adapted: nn.Module, shape: tuple[int, ...]) -> list[Call]:
    """The layers of ``adapted`` (an adapter) in the order one step calls them on a ``shape`` sample; a
    :class:`ConfigError` when one is not fed by the layer before it."""
    net = adapted.net
    lead = 2 if getattr(adapted, "step_mode", "s") == "m" else 1  # [T, B, ...] or [B, ...] per call
    calls, outputs, handles = [], [], []

    def hook(name):
        def record(layer, inputs, output):
            if outputs and inputs[0] is not outputs[-1]:
                before = calls[-1].name
                raise ConfigError(f"NIR export: layer {name} is not fed by {before}, the layer called before it (the "
                                  "network's forward does more than chain its layers); export a network that is a "
                                  "chain of layers")
            out = output[0] if isinstance(output, (tuple, list)) else output
            calls.append(Call(name, layer, tuple(inputs[0].shape[lead:]), tuple(out.shape[lead:])))
            outputs.append(out)
        return record

    for name, m in _layers(net):
        handles.append(m.register_forward_hook(hook(name)))
    modes = {m: m.training for m in net.modules()}  # put back as they were, module by module
    adapted.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the global random stream as it was
            param = next(net.parameters(), None)
            x = torch.rand(1, *shape).to(param.device if param is not None else "cpu")
            result = adapted(x, 1)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
        adapted.reset()  # no membrane of the probe left in the user's neurons
    if not calls or not torch.equal(result.reshape(-1), outputs[-1].reshape(-1)):
        raise ConfigError("NIR export: the network's output is not the output of its last layer; export a network "
                          "that is a chain of layers")
    return calls


def _neuron(nir: Any, call: Call, dt: float) -> Any:
    m, kind = call.layer, type(call.layer).__name__
    if getattr(m, "spiking_neuron", False) and hasattr(m, "params"):  # snnlth's own LIF
        return N.lif(nir, call.shape_out, dt, m.tau, m.v_threshold)
    if kind not in ("IFNode", "LIFNode", "ParametricLIFNode"):
        raise ConfigError(f"NIR export: neuron {call.name} ({kind}) has no NIR form here; supported: {SUPPORTED}")
    v_reset, v_th = getattr(m, "v_reset", None), getattr(m, "v_threshold", None)
    if v_reset is None or not isinstance(v_th, (int, float)):
        raise ConfigError(f"NIR export: neuron {call.name} ({kind}) has a soft reset (v_reset=None) or a learned "
                          "threshold, which NIR's neurons cannot express; use a hard reset (v_reset=0.)")
    if kind == "IFNode":
        return N.if_node(nir, call.shape_out, dt, v_th, v_reset)
    tau = float(m.tau) if kind == "LIFNode" else float(1.0 / m.w.detach().sigmoid())
    return N.lif(nir, call.shape_out, dt, tau, v_th, v_reset=float(v_reset), decay_input=bool(m.decay_input))


def _voting(nir: Any, call: Call) -> Any:
    """spikingjelly's ``VotingLayer`` (the mean of each group of ``voting_size`` outputs) as a fixed linear map."""
    size = int(call.layer.voting_size)
    weight = torch.zeros(call.shape_out[0], call.shape_in[0], dtype=torch.float64)
    for i in range(call.shape_out[0]):
        weight[i, i * size:(i + 1) * size] = 1.0 / size
    return nir.Linear(weight=N._np(weight))


def _is_neuron(layer: nn.Module) -> bool:
    from snnlth.snn.neuron import is_spiking_neuron

    return is_spiking_neuron(layer)


def _pool(nir: Any, g: N.Graph, call: Call, spiking: bool, dt: float) -> bool:
    """Pooling layers; returns whether their output is spikes."""
    m = call.layer
    ints = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if isinstance(m, nn.MaxPool2d):
        if not spiking or any(ints(m.padding)) or ints(m.dilation) != (1, 1) or m.ceil_mode:
            raise ConfigError(f"NIR export: max-pool {call.name} has a NIR form only on spikes with no padding, "
                              "dilation or ceil_mode (a sum and a gate); put it right after a spiking neuron")
        k, s = ints(m.kernel_size), ints(m.stride if m.stride is not None else m.kernel_size)
        if k[0] != k[1] or s[0] != s[1]:
            raise ConfigError(f"NIR export: max-pool {call.name} needs a square kernel and stride")
        N.pool_gate(nir, g, call.name.replace(".", "_"), call.shape_out, dt, k[0], s[0])
        return True
    if isinstance(m, nn.AdaptiveAvgPool2d):
        cells = [a // b if b and a % b == 0 else None for a, b in zip(call.shape_in[-2:], call.shape_out[-2:])]
        if None in cells:
            raise ConfigError(f"NIR export: adaptive pool {call.name} maps {call.shape_in} to {call.shape_out}, not a "
                              "whole number of cells per output; use AvgPool2d")
        k = s = np.array(cells)
        p = np.array([0, 0])
    else:
        k, s, p = (np.array(ints(v)) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding))
        if (p.any() and m.count_include_pad is False) or m.ceil_mode or m.divisor_override is not None:
            raise ConfigError(f"NIR export: avg-pool {call.name} uses ceil_mode, divisor_override or padding left "
                              "out of the count, which NIR's AvgPool2d cannot express; use a plain AvgPool2d")
    g.add(call.name.replace(".", "_"), nir.AvgPool2d(kernel_size=k, stride=s, padding=p))
    return False


def chain_graph(nir: Any, adapted: nn.Module, shape: tuple[int, ...], dt: float) -> N.Graph:
    """The NIR graph of ``adapted`` (see the module docstring) on samples of ``shape``."""
    g = N.Graph(nir)
    g.add("input", nir.Input(input_type={"input": np.array(shape)}))
    pending: list = []  # a conv/linear call waiting for a BatchNorm to fold in
    spiking = False

    def flush() -> None:
        if pending:
            call, bn = pending.pop(0), pending.pop(0) if pending else None
            name = call.name.replace(".", "_")
            if isinstance(call.layer, nn.Linear):
                g.add(name, N.affine(nir, call.layer, bn))
            else:
                g.add(name, N.conv(nir, call.layer, call.shape_in[-2:], bn)[0])

    calls = trace(adapted, shape)
    for call in calls:
        m = call.layer
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if len(pending) != 1:
                raise ConfigError(f"NIR export: BatchNorm {call.name} does not follow a conv or linear layer, and NIR "
                                  "has no BatchNorm node")
            pending.append(m)
            continue
        if isinstance(m, _NOTHING) or type(m).__name__ in ("Dropout", "Dropout2d"):
            continue
        flush()
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Conv2d) and (isinstance(m.padding, str) or m.padding_mode != "zeros"):
                raise ConfigError(f"NIR export: conv {call.name} pads with {m.padding_mode!r}/{m.padding!r}; give "
                                  "it numeric zero padding")
            pending.append(call)
            spiking = False
        elif _is_neuron(m):
            g.add(call.name.replace(".", "_"), _neuron(nir, call, dt))
            spiking = True
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            spiking = _pool(nir, g, call, spiking, dt)
        elif type(m).__name__ == "VotingLayer" and len(call.shape_in) == 1:
            g.add(call.name.replace(".", "_"), _voting(nir, call))
        elif isinstance(m, nn.Flatten) and call.shape_out == (math.prod(call.shape_in),):
            g.add(call.name.replace(".", "_"), N.flatten(nir, call.shape_in))
        else:
            raise ConfigError(f"NIR export: layer {call.name} ({type(m).__name__}) has no NIR form; supported: "
                              f"{SUPPORTED}")
    flush()
    g.out_shape = calls[-1].shape_out
    return g
