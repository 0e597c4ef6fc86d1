"""Synaptic operations and an energy estimate per image, counted during evaluation.

A Conv/Linear layer whose input is binary (spikes) performs accumulates (AC) only for inputs that spiked; a layer
with real-valued input (the direct-coding first layer, ResNet's fc after average pooling) performs multiply-
accumulates (MAC). Per call, the dense-equivalent operation count of a layer is ``nnz(W) · output positions ·
samples``; SynOps = that count × the fraction of input entries that are spikes (uniform-activity approximation).

Energy constants (45 nm CMOS, 32-bit floating point): MAC 4.6 pJ (mult 3.7 + add 0.9), AC 0.9 pJ — M. Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014; the values most SNN papers use.
"""

from __future__ import annotations

import torch
from torch import nn

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


def energy_uj(synops: float, macs: float) -> float:
    """Energy in microjoules of ``synops`` accumulates and ``macs`` multiply-accumulates."""
    return (synops * E_AC_PJ + macs * E_MAC_PJ) * 1e-6


class OpCounter:
    """Context manager: forward hooks on every Conv/Linear accumulate SynOps (binary input) and MACs (real input)
    on the device; nothing is synchronised until :meth:`totals` is read."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._handles: list = []
        self.synops: torch.Tensor | None = None
        self.macs: torch.Tensor | None = None

    def __enter__(self) -> OpCounter:
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        self.synops = torch.zeros((), dtype=torch.float64, device=device)
        self.macs = torch.zeros((), dtype=torch.float64, device=device)
        for module in self.model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nnz = (module.weight != 0).sum().double()
                outputs = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else module.out_features
                self._handles.append(module.register_forward_hook(self._hook(nnz, outputs)))
        return self

    def _hook(self, nnz: torch.Tensor, outputs: int):
        def hook(_module, inputs, output):
            x = inputs[0]
            # output entries / output channels = samples x positions, whatever the layout ([N, C, H, W] per step, or
            # spikingjelly's multi-step [T, B, C, H, W])
            ops = nnz * (output.numel() // outputs)
            binary = ((x == 0) | (x == 1)).all()
            activity = x.detach().double().mean()
            self.synops += torch.where(binary, ops * activity, torch.zeros_like(ops))
            self.macs += torch.where(binary, torch.zeros_like(ops), ops)

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def totals(self) -> tuple[float, float]:
        return float(self.synops.item()), float(self.macs.item())
