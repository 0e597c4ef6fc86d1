"""Evaluation: loss and accuracy of per-step logits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from snnlth.data.source import DataSource
from snnlth.engine.activity import neuron_output
from snnlth.engine.counting import COUNT_KEYS, EvalCounts
from snnlth.parallel import SINGLE, Dist
from snnlth.snn.neuron import is_spiking_neuron


def seq_loss(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/T) Σ_t CE(logits_seq[t], y)`` for ``logits_seq: [T, B, C]`` (equal to one CE over all T·B rows)."""
    t = logits_seq.shape[0]
    return F.cross_entropy(logits_seq.flatten(0, 1).float(), y.repeat(t))


def rate_ce_loss(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``CE((1/T) Σ_t logits_seq[t], y)``: the cross-entropy of the output averaged over time."""
    return F.cross_entropy(logits_seq.float().mean(0), y)


def rate_mse_loss(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``MSE((1/T) Σ_t logits_seq[t], one_hot(y))`` (spikingjelly's tutorials: output firing rate against the
    one-hot label)."""
    rate = logits_seq.float().mean(0)
    return F.mse_loss(rate, F.one_hot(y, rate.shape[-1]).float())


LOSSES = {"ce": seq_loss, "ce-rate": rate_ce_loss, "mse-rate": rate_mse_loss}  # --loss


def seq_correct(logits_seq: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of right predictions, the prediction being ``argmax_c Σ_t logits_seq[t, :, c]``."""
    return (logits_seq.sum(0).argmax(-1) == y).sum()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast when enabled, a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class SpikeCounter:
    """Counts the spikes every spiking neuron (:func:`is_spiking_neuron`) emits while active (forward hooks, removed
    on exit).

    ``per_layer[name]`` sums spikes over timesteps and images; divide by the number of images for spikes per image.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.per_layer: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> SpikeCounter:
        for name, module in self.model.named_modules():
            if is_spiking_neuron(module):
                self.per_layer[name] = torch.zeros((), dtype=torch.float64, device=_device_of(self.model))
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            spikes = neuron_output(output).detach()  # snntorch neurons return (spikes, membrane, ...)
            self.per_layer[name] += spikes.sum(dtype=torch.float64)  # stays on the device: no sync

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def total(self) -> float:
        return float(sum(v.item() for v in self.per_layer.values()))


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSource, timesteps: int, batch_size: int = 256, amp: bool = False,
             count: bool = True, forward: Callable | None = None, dist: Dist = SINGLE) -> dict:
    """Accuracy (percent) and mean loss over the test set in eval mode (the model's previous mode restored); with
    ``count`` also the :data:`~snnlth.engine.counting.COUNT_KEYS` (:mod:`snnlth.engine.counting`: operations as
    NeuroBench counts them, energy, spikes, sparsities, and accuracy, firing and operations per timestep), else
    those keys are None (no hooks, no extra work). ``forward``: what runs the model (a compiled wrapper of it);
    counting always runs the model itself, since hooks and compiled graphs do not mix. With several ranks
    (``dist``), each evaluates its contiguous slice of every batch and the sums are added over the ranks: every
    rank gets the numbers of the whole split."""
    was_training = model.training
    model.eval()
    device = data.device
    run = model if count or forward is None else forward
    split_up = dist.active and batch_size >= dist.world_size  # every rank has images in the first batch
    sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss × images, right predictions, images
    with contextlib.ExitStack() as stack:
        counts = stack.enter_context(EvalCounts(model, timesteps)) if count else None
        for x, y in data.eval_batches(batch_size, "test"):
            if split_up:
                x, y = x.tensor_split(dist.world_size)[dist.rank], y.tensor_split(dist.world_size)[dist.rank]
                if not len(y):
                    continue
            if counts is not None:
                counts.begin(len(y))
            with autocast(device, amp):
                logits_seq = run(x, timesteps)
            sums += torch.stack((seq_loss(logits_seq, y).double() * len(y), seq_correct(logits_seq, y).double(),
                                 torch.tensor(float(len(y)), device=device, dtype=torch.float64)))
            if counts is not None:
                counts.add(logits_seq, y)
        if split_up:
            dist.all_reduce_sum(sums)
            if counts is not None:
                counts.all_reduce(dist)
    model.train(was_training)
    loss_sum, correct, n = sums.tolist()
    out = {"accuracy": 100.0 * int(correct) / max(int(n), 1), "loss": loss_sum / max(n, 1)}
    return {**out, **(counts.results(int(n)) if counts is not None else dict.fromkeys(COUNT_KEYS))}
