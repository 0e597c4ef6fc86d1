"""The not-learning guard: a dense phase that stays at chance stops the run, before anything is pruned, with what was
seen and what to try (:class:`~snnlth.errors.NotLearningError`).

Checked as early as it can be known: after the first epoch, when no spike reached the output or the loss has not
moved off the loss of a constant output (``ln C`` for the cross-entropies); otherwise at the end of the phase, when
the training and the test accuracy are both at most 1.5 × chance (after a short phase, BatchNorm statistics that lag
behind the weights can alone hold the test accuracy at chance while the network learns, so both must be) and the
phase trained at least 20 batches. The rules after epoch 1 need an epoch of at least 100 batches. Shorter runs
cannot tell a slow start from a network that does not learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.data.source import DataSource
from snnlth.engine.evaluate import SpikeCounter, evaluate
from snnlth.errors import NotLearningError

CHANCE_FACTOR = 1.5  # accuracies at most this many times chance are "at chance"
MIN_STEPS = 20  # the end-of-phase rule needs this many training batches: fewer cannot tell a slow start from a network
# that does not learn
EARLY_STEPS = 100  # the rules after epoch 1 need an epoch of this many batches (ResNet19's last LIF layer is silent at
# init and first fires after 30-40 batches at the paper's lr 0.3, batch 128: measured on Fashion-MNIST at 32 px)
_LOSS_TOLERANCE = 0.01  # a loss within 1 % of a constant output's has "not moved"
_END_LOSS = 0.9  # the end-of-phase rule also needs the training loss at >= 90 % of a constant output's
_PROBE_IMAGES = 256


@dataclass(frozen=True)
class Probe:
    """One look at the network in eval mode on fixed training images: the run's loss there, the loss a constant
    output would have, the classes, the first spiking layer with no spike, and the spikes per image of the last
    spiking layer (what reaches the output; None in a network without spiking neurons)."""

    loss: float
    chance_loss: float
    num_classes: int
    silent: str | None
    output: tuple[str, float] | None


def constant_output_loss(loss_fn: Callable, num_classes: int, device: torch.device | str = "cpu") -> float:
    """The loss of an all-zero output over a balanced batch: ``ln C`` for the cross-entropies, ``1/C`` for MSE."""
    zeros = torch.zeros(1, num_classes, num_classes, device=device)
    return float(loss_fn(zeros, torch.arange(num_classes, device=device)))


@torch.no_grad()
def probe(model: nn.Module, data: DataSource, timesteps: int, loss_fn: Callable) -> Probe:
    """See :class:`Probe`. The forward runs in train mode, as training sees the network (in eval mode, BatchNorm's
    running statistics lag behind after a few steps and can silence a network that trains well); BatchNorm's
    statistics, the random number generators and the model's mode are left as they were."""
    was_training, buffers = model.training, {k: b.clone() for k, b in model.named_buffers()}
    device = data.device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), SpikeCounter(model) as spikes:
        x, y = next(iter(data.eval_batches(_PROBE_IMAGES, "train")))  # a DataLoader draws its seed: inside the fork
        model.train()
        out = model(x, timesteps)  # [T, B, C]
    model.train(was_training)
    _restore(model, buffers)
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    layers = {f"{name} ({kinds[name]})": float(count) / len(y) for name, count in spikes.per_layer.items()}
    silent = next((name for name, per_image in layers.items() if per_image == 0), None)
    output = (next(reversed(layers)), layers[next(reversed(layers))]) if layers else None
    classes = out.shape[-1]
    return Probe(float(loss_fn(out.float(), y)), constant_output_loss(loss_fn, classes, out.device), classes, silent,
                 output)


def _restore(model: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    """Buffers back in place (a captured CUDA graph holds their addresses); one whose shape changed with the batch
    (an snntorch membrane) is replaced."""
    for module_name, module in model.named_modules():
        for key, buffer in module._buffers.items():
            saved = buffers.get(f"{module_name}.{key}" if module_name else key)
            if saved is None or buffer is None:
                continue
            if buffer.shape == saved.shape:
                buffer.copy_(saved)
            else:
                module._buffers[key] = saved


class LearningGuard:
    """An epoch hook of a dense phase (see the module docstring); :meth:`check_end` after the phase."""

    def __init__(self, data: DataSource, cfg: TrainConfig, loss_fn: Callable, timesteps: Callable[[int], int]) -> None:
        self.data, self.cfg, self.loss_fn, self.timesteps = data, cfg, loss_fn, timesteps

    def after_epoch(self, model: nn.Module, state) -> bool:
        if state.epoch != 1:
            return False
        if self._batches(1) < EARLY_STEPS:
            return False
        row, seen = state.history[-1], probe(model, self.data, self.timesteps(0), self.loss_fn)
        dead = seen.output is not None and seen.output[1] == 0
        still = all(abs(loss - seen.chance_loss) <= _LOSS_TOLERANCE * seen.chance_loss
                    for loss in (row["train_loss"], seen.loss))
        if dead or still:
            test = evaluate(model, self.data, self.timesteps(0), count=False)["accuracy"]
            raise NotLearningError(message("after epoch 1", row, test, seen, self.cfg))
        return False

    def _batches(self, epochs: int) -> int:
        return epochs * -(-self.data.num_train // self.cfg.batch_size)

    def check_end(self, model: nn.Module, history: list[dict]) -> None:
        """Stop when the phase ended with training and test accuracy both at most 1.5 × chance, after at least
        :data:`MIN_STEPS` training batches."""
        row = history[-1]
        if self._batches(len(history)) < MIN_STEPS:
            return
        seen = probe(model, self.data, row["timesteps"], self.loss_fn)
        bar = CHANCE_FACTOR * 100.0 / seen.num_classes
        near = row["train_loss"] >= _END_LOSS * seen.chance_loss  # with 2 classes, 75 % can be a network that learns
        if row["train_accuracy"] <= bar and row["test_accuracy"] <= bar and near:
            raise NotLearningError(message(f"after its {len(history)} epochs", row, row["test_accuracy"], seen,
                                           self.cfg))


def message(when: str, row: dict, test_accuracy: float, seen: Probe, cfg: TrainConfig) -> str:
    """The one line of a network that does not learn: what was seen, and what to try."""
    c = seen.num_classes
    chance = f"ln {c} = {seen.chance_loss:.4f}" if math.isclose(seen.chance_loss, math.log(c), rel_tol=1e-6) else \
        f"{seen.chance_loss:.4f}"
    spikes = ""
    if seen.output is not None:
        layer, per_image = seen.output
        fired = f"no neuron of layer {seen.silent} fired" if seen.silent else "every spiking layer fired"
        spikes = f"; {fired}, and {per_image:g} spikes per image reached the output (layer {layer})"
    fix = {"sgd": "--optimizer adam --lr 1e-3", "adam": "another --lr (e.g. 1e-3 or 1e-2)",
           "adamw": "another --lr (e.g. 1e-3 or 1e-2)"}.get(cfg.optimizer, "another learning rate in your optimizer")
    return (f"the dense network is not learning: {when} its training loss is {row['train_loss']:.4f} (a constant "
            f"output's: {chance}), training accuracy {row['train_accuracy']:.2f} %, test accuracy "
            f"{test_accuracy:.2f} % (chance {100 / c:.2f} %){spikes}; try {fix}, or a lower firing threshold "
            "(--v-threshold); --allow-chance goes on anyway")
