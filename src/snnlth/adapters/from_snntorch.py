"""snntorch networks: called once per step on ``[B, ...]`` (hidden-state neurons, ``init_hidden=True``, keep their
membranes between the calls), every neuron's state cleared with its own ``reset_mem()`` before every batch."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.adapters.base import Adapter
from snnlth.errors import ConfigError
from snnlth.snn.neuron import is_spiking_neuron


class SnnTorch(Adapter):
    framework = "snntorch"

    def __init__(self, net: nn.Module, timesteps: int | None = None, **kw) -> None:
        super().__init__(net, timesteps, **kw)
        neurons = [m for m in net.modules() if is_spiking_neuron(m)]
        stateless = sorted({type(m).__name__ for m in neurons if not hasattr(m, "reset_mem")})
        if stateless:
            raise ConfigError(f"snntorch neurons without reset_mem() ({', '.join(stateless)}) cannot be reset between "
                              "batches; use snnlth.adapters.stepwise(net, step_fn, reset_fn)")

    def run(self, x_seq: torch.Tensor, timesteps: int) -> torch.Tensor:
        return torch.stack([self.readout(self.net(x_seq[t])) for t in range(timesteps)])

    def reset(self) -> None:
        for m in self.net.modules():
            if is_spiking_neuron(m):
                m.reset_mem()  # zeros of the last shape, outside any graph (a new batch size re-shapes them)


def snntorch(net: nn.Module, timesteps: int | None = None, *, encode=None, readout=None, init=None) -> SnnTorch:
    """Adapt an snntorch network whose ``forward(x_t)`` computes one step (neurons with ``init_hidden=True``); a
    step that returns ``(spikes, membrane)`` is read by ``readout`` (default: its first element). ``encode``,
    ``init``: see :class:`~snnlth.adapters.base.Adapter`."""
    return SnnTorch(net, timesteps, encode=encode, readout=readout, init=init)
