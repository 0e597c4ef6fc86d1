"""Neuron activity per timestep: the outputs of every spiking neuron layer (:func:`is_spiking_neuron`), split into
steps as :class:`~snnlth.engine.opcount.StepTally` splits operations (a multi-step neuron returns ``[T, B, ...]``, a
step-wise one is called T times with ``[B, ...]``)."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.engine.opcount import StepTally
from snnlth.snn.neuron import is_spiking_neuron


def neuron_output(output: object) -> torch.Tensor:
    """The spikes of what a neuron returned: the tensor, or the first element of snntorch's ``(spikes, membrane)``."""
    return output[0] if isinstance(output, (tuple, list)) else output


class ActivityTally(StepTally):
    """Per spiking neuron layer and step: values ``[N, 2]`` (non-zero outputs, their sum: the spikes), host: neurons
    per sample. Firing rate over steps 1..t = non-zero outputs / (neurons × steps); activation sparsity (NeuroBench)
    = 1 − non-zero / all outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, is_spiking_neuron, self._measure)

    def _measure(self, _name: str, _module: nn.Module, _inputs: tuple, output: object) -> tuple[torch.Tensor, float]:
        out = neuron_output(output).detach()
        timesteps, batch = self.shape
        rows = out.flatten(0, 1) if out.dim() > 2 and tuple(out.shape[:2]) == (timesteps, batch) else out  # [N, ...]
        dims = tuple(range(1, rows.dim()))
        # float32 counts and sums of up to 2^24 spikes per sample are exact (the "0-norm" counts the non-zero entries)
        nonzero = torch.linalg.vector_norm(rows.float(), 0, dims)
        values = torch.stack((nonzero.double(), rows.float().sum(dims).double()), 1)
        return values, float(rows[0].numel()) if len(rows) else 0.0

    def per_step(self) -> tuple[list[float], list[float], float]:
        """Per step: non-zero outputs and outputs (all layers, all images), and the spikes in all (one host sync)."""
        steps = self.shape[0]
        if not self.sums:
            return [0.0] * steps, [0.0] * steps, 0.0
        sums = torch.stack(list(self.sums.values())).sum(0).cpu()  # [T, 2]
        outputs = [sum(h[t] for h in self.host.values()) for t in range(steps)]
        return sums[:, 0].tolist(), outputs, float(sums[:, 1].sum())
