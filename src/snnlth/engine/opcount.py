"""Synaptic operations as NeuroBench 2.3 counts them, from the actual inputs and the actual non-zero weights.

Per call of a Conv/Linear layer: the input and the weights binarised (non-zero -> 1), the layer run on them without
its bias, and the outputs summed: the number of connections that carry a non-zero input through a non-zero weight
(zero padding and pruned weights carry nothing). A call whose inputs are all 0 or ±1 is fed by spikes: its count
goes to ``effective_acs``, any other call's to ``effective_macs`` (the direct-coded first layer). ``dense``: the same
with all-ones inputs and weights. All per image.

How: the layer is linear in its input, so the sum of its binarised outputs is the sum, over the non-zero input
entries, of each entry's fan-out (the outputs it reaches through a non-zero weight, :func:`_fanout`, computed once per
layer and input shape): one masked sum over the input per call, not a second run of the layer. Every fan-out and
every per-sample count is an integer, exact in float32 below 2^24 (float64 above). The counts stay on the device until
read, so an evaluation counts every test batch without a host sync per batch.

Timesteps (:class:`StepTally`, for operations and neuron outputs alike): a layer that runs on a whole sequence at once
(``[T·B, ...]``) or once per step (T calls of ``[B, ...]``) is split per step; the first layer of a direct-coded
snnlth model runs once per image (its output feeds every step), so it is counted once, at step 1 (a NIR importer
runs it T times: :attr:`OpCounts.once_per_image` names such layers so that both conventions can be stated).

Recurrent layers (``nn.RNN``/``LSTM``/``GRU`` and their cells) NeuroBench counts by rules for stateful layers that
are not implemented here: :func:`uncountable_layers` names them, and no count of such a network claims exactness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
_KINDS = ("effective_acs", "effective_macs", "dense")
_FLOAT32_EXACT = 2 ** 24  # float32 holds every integer up to this

# what a hook makes of one call: per-sample values [N, K] on the device (float64), and one host number per sample
Measure = Callable[[str, nn.Module, tuple, object], tuple[torch.Tensor, float]]


@dataclass
class OpCounts:
    """Operations per image: totals (``effective_acs``, ``effective_macs``, ``dense``), ``per_layer[name][kind]``,
    ``per_timestep[t][kind]`` (the operations *at* step t + 1, t = 0..T-1: a level's ``per_timestep`` in
    summary.json sums them over steps 1..t instead), and the layers that run once per image (counted once)."""

    effective_acs: float
    effective_macs: float
    dense: float
    per_layer: dict[str, dict[str, float]]
    per_timestep: list[dict[str, float]]
    once_per_image: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"effective_acs": self.effective_acs, "effective_macs": self.effective_macs, "dense": self.dense,
                "per_layer": self.per_layer, "per_timestep": self.per_timestep, "once_per_image": self.once_per_image}


def uncountable_layers(model: nn.Module) -> list[str]:
    """The recurrent layers of ``model``, whose operations NeuroBench counts by rules not implemented here."""
    return [name for name, m in model.named_modules() if isinstance(m, _RECURRENT)]


def connection_sparsity(model: nn.Module) -> float | None:
    """NeuroBench's connection sparsity: the fraction of exactly-zero weights over all Conv/Linear weights (None
    without such layers)."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, _LAYERS)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else None


def _fanout(layer: nn.Module, shape: tuple[int, ...], weight: torch.Tensor) -> torch.Tensor:
    """``[*shape]`` (one sample's input): how many outputs each input entry reaches through a non-zero entry of
    ``weight`` in ``layer`` (bias left out, the layer's own stride, padding and groups): the gradient of the summed
    output, the operation being linear in its input; rounded to the integers it is (a GPU algorithm may land a hair
    off them). Summed over the non-zero entries of an input it is NeuroBench's count of that input."""
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(weight.device.type, enabled=False):
        x = torch.ones((1, *shape), device=weight.device, requires_grad=True)
        w = (weight.detach() != 0).float()
        if isinstance(layer, nn.Linear):
            out = torch.nn.functional.linear(x, w)
        else:  # subclasses too (spikingjelly's layer.Conv2d); the layer's own padding mode
            out = layer._conv_forward(x, w, None)
        (grad,) = torch.autograd.grad(out.sum(), x)
    return grad[0].round()


class StepTally:
    """Forward hooks on the modules ``select`` picks; ``measure(name, module, inputs, output)`` turns a call into
    per-sample values ``[N, K]``. Between :meth:`begin` (T and B of the coming forward) and :meth:`fold`, the calls
    are kept; :meth:`fold` splits them into timesteps (see the module docstring) and adds them, per module and step,
    to ``sums[name]: [T, K]`` (on the device) and ``host[name]: [T]`` (the host number × samples)."""

    def __init__(self, model: nn.Module, select: Callable[[nn.Module], bool], measure: Measure) -> None:
        self.model, self.select, self.measure = model, select, measure
        self.sums: dict[str, torch.Tensor] = {}
        self.host: dict[str, list[float]] = {}
        self.once: list[str] = []
        self.images = 0
        self.shape = (1, 1)  # (T, B) of the forward being recorded
        self._calls: dict[str, list[tuple[torch.Tensor, float]]] = {}
        self._handles: list = []

    def __enter__(self) -> StepTally:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.model.named_modules()
                         if self.select(m)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self._calls.setdefault(name, []).append(self.measure(name, module, inputs, output))

        return hook

    def begin(self, timesteps: int, batch: int) -> None:
        self.shape = (timesteps, batch)

    def fold(self) -> None:
        """Add the calls of the last forward to the sums (no host sync)."""
        timesteps, batch = self.shape
        for name, calls in self._calls.items():
            sums = self.sums.setdefault(name, calls[0][0].new_zeros(timesteps, calls[0][0].shape[1]))
            host = self.host.setdefault(name, [0.0] * timesteps)
            stepwise = len(calls) == timesteps > 1
            for i, (values, per_sample) in enumerate(calls):
                if stepwise:  # called once per step
                    sums[i] += values.sum(0)
                    host[i] += per_sample * len(values)
                elif len(values) == timesteps * batch and timesteps > 1:  # [T·B, ...], t-major
                    sums += values.view(timesteps, batch, -1).sum(1)
                    host[:] = [h + per_sample * batch for h in host]
                else:  # once per image: counted at step 1
                    sums[0] += values.sum(0)
                    host[0] += per_sample * len(values)
                    if name not in self.once and timesteps > 1:  # at T = 1 every layer runs once
                        self.once.append(name)
        self._calls.clear()
        self.images += batch


def reduce_tally(tally: StepTally, dist) -> None:
    """Sum ``tally`` over the ranks of an evaluation split between them (``dist``: a
    :class:`~snnlth.parallel.Dist`); every rank must have folded at least one forward (the same layers, in order)."""
    if not dist.active:
        return
    names = sorted(tally.sums)
    for name in names:
        dist.all_reduce_sum(tally.sums[name])
    device = tally.sums[names[0]].device if names else torch.device("cpu")
    host = torch.tensor([[float(tally.images)] * tally.shape[0], *(tally.host[n] for n in names)],
                        dtype=torch.float64, device=device)
    dist.all_reduce_sum(host)
    tally.images = int(host[0, 0].item())
    for name, row in zip(names, host[1:].tolist()):
        tally.host[name] = row


class OpTally(StepTally):
    """A :class:`StepTally` of NeuroBench's operations on every Conv/Linear layer: values ``[N, 2]`` (effective
    operations of spike-fed calls, of the others), host: dense operations per sample. The fan-out of every input
    entry (:func:`_fanout`) is computed once per layer and input shape: the weights must not change while it is
    active."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, lambda m: isinstance(m, _LAYERS), self._measure)
        self._fanouts: dict[tuple, tuple[torch.Tensor, float]] = {}

    def _measure(self, name: str, layer: nn.Module, inputs: tuple, _output) -> tuple[torch.Tensor, float]:
        x = inputs[0].detach()
        if isinstance(layer, nn.Linear):
            x = x.reshape(-1, x.shape[-1])
        elif x.dim() > layer.weight.dim():  # multi-step [T, B, C, ...]: one sample per (t, b)
            x = x.reshape(-1, *x.shape[-(layer.weight.dim() - 1):])
        key = (name, tuple(x.shape[1:]))
        if key not in self._fanouts:
            dense = float(_fanout(layer, key[1], torch.ones_like(layer.weight)).double().sum())
            # integers up to 2^24 are exact in float32: sums of smaller counts need no float64 copy of the input
            dtype = torch.float32 if dense < _FLOAT32_EXACT else torch.float64
            self._fanouts[key] = (_fanout(layer, key[1], layer.weight).to(dtype), dense)
        fanout, dense = self._fanouts[key]
        effective = torch.where(x != 0, fanout, 0.0).sum(tuple(range(1, x.dim()))).double()  # [N]
        spiking = (x == 0).logical_or_(x == 1).logical_or_(x == -1).all()  # every entry 0 or ±1
        return torch.stack((torch.where(spiking, effective, 0.0), torch.where(spiking, 0.0, effective)), 1), dense

    def counts(self) -> OpCounts:
        """Operations per image over everything folded so far (one host sync)."""
        names = list(self.sums)
        images = max(self.images, 1)
        stacked = torch.stack([self.sums[n] for n in names]).cpu() if names else torch.zeros(0, self.shape[0], 2)
        sums = stacked / images  # [layers, T, 2]
        per_layer = {n: {"effective_acs": float(sums[i, :, 0].sum()), "effective_macs": float(sums[i, :, 1].sum()),
                         "dense": sum(self.host[n]) / images} for i, n in enumerate(names)}
        per_step = [{"effective_acs": float(sums[:, t, 0].sum()), "effective_macs": float(sums[:, t, 1].sum()),
                     "dense": sum(self.host[n][t] for n in names) / images} for t in range(self.shape[0])]
        total = {k: sum(r[k] for r in per_layer.values()) for k in _KINDS}
        return OpCounts(total["effective_acs"], total["effective_macs"], total["dense"], per_layer, per_step,
                        list(self.once))


@torch.no_grad()
def count_model_ops(model: nn.Module, images: torch.Tensor, timesteps: int) -> OpCounts:
    """Synaptic operations per image of ``model`` (called as ``model(images, timesteps)`` -> ``[T, B, C]``) on
    ``images: [B, ...]``, in eval mode (see the module docstring)."""
    was_training = model.training
    model.eval()
    try:
        with OpTally(model) as tally:
            tally.begin(timesteps, len(images))
            model(images, timesteps)
            tally.fold()
    finally:
        model.train(was_training)
    return tally.counts()
