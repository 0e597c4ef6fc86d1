"""``snnlth.count_ops``: synaptic operations per image as NeuroBench counts them, of a ticket, an snnlth model or a
user's network (:mod:`snnlth.engine.opcount`)."""

from __future__ import annotations

from typing import Any

import torch

from snnlth.adapters import wrap
from snnlth.engine.opcount import OpCounts, count_model_ops, uncountable_layers
from snnlth.errors import ConfigError


def count_ops(model: Any, images: torch.Tensor, timesteps: int | None = None) -> OpCounts:
    """Effective ACs (layers fed by spikes), effective MACs (layers fed by real values) and dense operations per
    image, with ``per_layer`` and ``per_timestep`` (operations at each step) breakdowns, of ``model`` on
    ``images: [B, ...]`` (raw, as the model takes them) over ``timesteps`` (default: the model's T).

    ``model``: a loaded ticket (:func:`snnlth.load_ticket`), an snnlth model, or a spikingjelly / snntorch / PyTorch
    network (adapted as :func:`snnlth.find_ticket` adapts it)."""
    net = getattr(model, "model", model) if hasattr(model, "masks") and hasattr(model, "metadata") else model
    adapted = net if hasattr(net, "prunable_names") else wrap(net, timesteps)
    t = timesteps if timesteps is not None else getattr(adapted, "timesteps", None)
    if t is None:
        raise ConfigError("count_ops needs timesteps=T for this network (it has no T of its own)")
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ConfigError("count_ops takes images as one tensor [B, ...], as the model takes them")
    recurrent = uncountable_layers(adapted)
    if recurrent:
        raise ConfigError(f"count_ops cannot count {', '.join(recurrent[:3])}: NeuroBench counts recurrent layers "
                          "(RNN, LSTM, GRU and their cells) by rules snnlth does not implement")
    param = next(adapted.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return count_model_ops(adapted, images.to(device).float(), int(t))
