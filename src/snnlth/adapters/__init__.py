"""Adapters: a network from spikingjelly, snntorch or plain PyTorch, searched without editing it.

``spikingjelly(net, timesteps)``, ``snntorch(net, timesteps)``, ``stepwise(module, step_fn, reset_fn)`` and
``multistep(module, timesteps)`` wrap a network; :func:`wrap` picks one by looking at the network (what
:func:`snnlth.find_ticket` does when given a bare network). Every adapter takes T per call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from snnlth.adapters.base import Adapter, MultiStep, StepWise, direct, first_output
from snnlth.adapters.from_snntorch import SnnTorch, snntorch
from snnlth.adapters.from_spikingjelly import SpikingJelly, spikingjelly, step_modes
from snnlth.errors import ConfigError
from snnlth.models.protocol import TicketModel
from snnlth.snn.neuron import is_spiking_neuron


def stepwise(module: nn.Module, step_fn: Callable[[nn.Module, torch.Tensor], object],
             reset_fn: Callable[[nn.Module], None], *, timesteps: int | None = None, encode=None, readout=None,
             init=None) -> StepWise:
    """Adapt any network run step by step: ``reset_fn(module)`` clears its state, then ``step_fn(module, x_t)``
    gives the logits ``[B, classes]`` of each step."""
    return StepWise(module, step_fn, reset_fn, timesteps, encode=encode, readout=readout, init=init)


def multistep(module: nn.Module, timesteps: int | None = None, *, reset_fn: Callable[[nn.Module], None] | None = None,
              encode=None, readout=None, init=None) -> MultiStep:
    """Adapt a network that maps ``[T, B, ...]`` to ``[T, B, classes]`` in one call (``reset_fn`` if it keeps
    state between calls)."""
    return MultiStep(module, timesteps, reset_fn=reset_fn, encode=encode, readout=readout, init=init)


def framework_of(net: nn.Module) -> str:
    """``spikingjelly``, ``snntorch`` or ``torch``, by the neurons ``net`` holds."""
    for m in net.modules():
        if is_spiking_neuron(m):
            root = type(m).__module__.split(".")[0]
            if root in ("spikingjelly", "snntorch"):
                return root
    if step_modes(net):
        return "spikingjelly"
    return "torch"


def wrap(model: nn.Module, timesteps: int | None = None) -> TicketModel:
    """``model`` as a :class:`~snnlth.models.protocol.TicketModel`: an adapter or snnlth model as is, else the
    adapter of its framework (a plain PyTorch network must map ``[T, B, ...]`` to ``[T, B, classes]``)."""
    if isinstance(model, Adapter) or _is_ticket_model(model):
        return model
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model is a {type(model).__name__}, not a torch.nn.Module; pass the network itself")
    framework = framework_of(model)
    if framework == "spikingjelly":
        return spikingjelly(model, timesteps)
    if framework == "snntorch":
        return snntorch(model, timesteps)
    return multistep(model, timesteps)


def _is_ticket_model(model: object) -> bool:
    return isinstance(model, nn.Module) and all(callable(getattr(model, name, None)) for name in (
        "reset", "prunable_names", "reinitialize", "identity"))


__all__ = ["Adapter", "MultiStep", "SnnTorch", "SpikingJelly", "StepWise", "direct", "first_output", "framework_of",
           "multistep", "snntorch", "spikingjelly", "stepwise", "wrap"]
