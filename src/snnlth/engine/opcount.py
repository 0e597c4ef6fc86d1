"""Synaptic operations as NeuroBench 2.3 counts them, from the actual inputs and the actual non-zero weights.

Per call of a Conv/Linear layer: the input and the weights binarised (non-zero -> 1), the layer run on them without
its bias, and the outputs summed: the number of connections that carry a non-zero input through a non-zero weight
(zero padding and pruned weights carry nothing). A call whose inputs are all 0 or ±1 is fed by spikes: its count
goes to ``effective_acs``, any other call's to ``effective_macs`` (the direct-coded first layer). ``dense``: the same
with all-ones inputs and weights. All per image.

Timesteps: a layer that runs on a whole sequence at once (``[T·B, ...]``) or once per step (T calls of ``[B, ...]``)
is split per step; the first layer of a direct-coded snnlth model runs once per image (its output feeds every step),
so it is counted once, at step 1 (a NIR importer runs it T times: :attr:`OpCounts.once_per_image` names such layers
so that both conventions can be stated).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_KINDS = ("effective_acs", "effective_macs", "dense")


@dataclass
class OpCounts:
    """Operations per image: totals (``effective_acs``, ``effective_macs``, ``dense``), ``per_layer[name][kind]``,
    ``per_timestep[t][kind]`` (t = 0..T-1), and the layers that run once per image (counted once)."""

    effective_acs: float
    effective_macs: float
    dense: float
    per_layer: dict[str, dict[str, float]]
    per_timestep: list[dict[str, float]]
    once_per_image: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"effective_acs": self.effective_acs, "effective_macs": self.effective_macs, "dense": self.dense,
                "per_layer": self.per_layer, "per_timestep": self.per_timestep, "once_per_image": self.once_per_image}


def _binary(t: torch.Tensor) -> torch.Tensor:
    return (t != 0).to(torch.float64)


def _run(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``layer``'s operation on ``x`` with ``weight`` and no bias, in float64 (exact counts); per-sample sums."""
    if isinstance(layer, nn.Linear):
        out = F.linear(x, weight)
    else:  # subclasses too (spikingjelly's layer.Conv2d)
        conv, dims = next((f, d) for cls, f, d in ((nn.Conv3d, F.conv3d, 3), (nn.Conv2d, F.conv2d, 2),
                                                    (nn.Conv1d, F.conv1d, 1)) if isinstance(layer, cls))
        x = x.reshape(-1, *x.shape[-(dims + 1):])  # a multi-step [T, B, C, ...] input as [T·B, C, ...]
        out = conv(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return out.flatten(1).sum(1)  # [N]


def layer_call_ops(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Per sample of one call (``x: [N, ...]``): the effective operations, the dense ones, and whether the input is
    spikes (every entry 0 or ±1)."""
    x = x.detach()
    spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
    w = layer.weight.detach()
    effective = _run(layer, _binary(x), _binary(w))
    dense = _run(layer, torch.ones_like(x, dtype=torch.float64), torch.ones_like(w, dtype=torch.float64))
    return effective, dense, spiking


class _Recorder:
    """Forward hooks on every Conv/Linear layer; per layer, the per-sample counts of each call."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor, bool]]] = defaultdict(list)
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in model.named_modules()
                        if isinstance(m, _LAYERS)]

    def _hook(self, name: str):
        def hook(layer, inputs, _output):
            x = inputs[0]
            if isinstance(layer, nn.Linear):
                x = x.reshape(-1, x.shape[-1])
            elif x.dim() > layer.weight.dim():  # multi-step [T, B, C, ...]: one sample per (t, b)
                x = x.reshape(-1, *x.shape[-(layer.weight.dim() - 1):])
            self.calls[name].append(layer_call_ops(layer, x))

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _per_step(calls: list, timesteps: int, batch: int) -> tuple[list[tuple[int, torch.Tensor, torch.Tensor, bool]],
                                                                  bool]:
    """(step, effective, dense, spiking) sums of one layer's calls in one forward; True if it ran once per image."""
    if len(calls) == timesteps and timesteps > 1:
        return [(t, e.sum(), d.sum(), s) for t, (e, d, s) in enumerate(calls)], False
    out, once = [], False
    for e, d, s in calls:
        if e.numel() == timesteps * batch and timesteps > 1:  # [T·B, ...], t-major
            out += [(t, e.view(timesteps, batch)[t].sum(), d.view(timesteps, batch)[t].sum(), s)
                    for t in range(timesteps)]
        else:
            out.append((0, e.sum(), d.sum(), s))
            once = True
    return out, once


@torch.no_grad()
def count_model_ops(model: nn.Module, images: torch.Tensor, timesteps: int) -> OpCounts:
    """Synaptic operations per image of ``model`` (called as ``model(images, timesteps)`` -> ``[T, B, C]``) on
    ``images: [B, ...]``, in eval mode (see the module docstring)."""
    was_training = model.training
    model.eval()
    recorder = _Recorder(model)
    try:
        model(images, timesteps)
    finally:
        recorder.remove()
        model.train(was_training)
    return _totals(recorder.calls, timesteps, len(images))


def _totals(calls: dict[str, list], timesteps: int, batch: int) -> OpCounts:
    per_layer: dict[str, dict[str, float]] = {}
    per_step = [dict.fromkeys(_KINDS, 0.0) for _ in range(timesteps)]
    once_per_image = []
    for name, layer_calls in calls.items():
        steps, once = _per_step(layer_calls, timesteps, batch)
        if once:
            once_per_image.append(name)
        row = dict.fromkeys(_KINDS, 0.0)
        for t, effective, dense, spiking in steps:
            kind = "effective_acs" if spiking else "effective_macs"
            for key, value in ((kind, float(effective) / batch), ("dense", float(dense) / batch)):
                row[key] += value
                per_step[t][key] += value
        per_layer[name] = row
    total = {k: sum(r[k] for r in per_layer.values()) for k in _KINDS}
    return OpCounts(total["effective_acs"], total["effective_macs"], total["dense"], per_layer, per_step,
                    once_per_image)
