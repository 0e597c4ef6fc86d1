"""The model protocol: what the engine and every search strategy need from a network, written down in one place.

A model for snnlth (:class:`TicketModel`) is an ``nn.Module`` that

- maps a batch ``x: [B, ...]`` and a number of timesteps T to per-step logits ``[T, B, classes]``
  (``model(x, timesteps)``; Early-Time search changes T from call to call);
- resets any neuron state between batches (``reset()``; a no-op for stateless multi-step neurons);
- names its prunable tensors (``prunable_names()``: keys of ``named_parameters()``);
- can draw a fresh initialisation of itself in place from a seed (``reinitialize(seed)``; the reinit baseline);
- says what it is (``identity()``: a JSON-able dict, part of a run's identity).

snnlth's own architectures implement it natively by subclassing :class:`SpikingNet`; adapters wrap foreign SNNs.
:class:`SpikingNet` keeps input coding apart from the network body: ``encode(x, T) -> x_seq`` (direct coding: the
first layer runs once per image and its output is fed at every step) and ``body(x_seq) -> logits_seq``.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from snnlth.config import ModelConfig
from snnlth.snn.layers import SeqBatchNorm2d, seq_apply
from snnlth.snn.neuron import LIF, SeqReLU

NeuronFactory = Callable[[], nn.Module]
NormFactory = Callable[[int], nn.Module]


class ConvLayout(Protocol):
    """How a model runs its convolutions: ``image(x)`` is the image batch ``[B, C, H, W]`` before the first one,
    ``seq(conv, x_seq)`` a convolution over ``[T, B, C, H, W]``. Any layout computes the same numbers; the engine
    gives a faster one where it has one (:mod:`snnlth.engine.layouts` on CPU)."""

    def image(self, x: torch.Tensor) -> torch.Tensor: ...

    def seq(self, conv: nn.Conv2d, x_seq: torch.Tensor) -> torch.Tensor: ...


class PlainLayout:
    """Convolutions as they are: ``seq_apply`` over the sequence."""

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def seq(self, conv: nn.Conv2d, x_seq: torch.Tensor) -> torch.Tensor:
        return seq_apply(conv, x_seq)


PLAIN_LAYOUT = PlainLayout()


@runtime_checkable
class TicketModel(Protocol):
    """What snnlth needs of a model (see the module docstring); ``nn.Module`` supplies the rest."""

    def __call__(self, x: torch.Tensor, timesteps: int) -> torch.Tensor: ...

    def reset(self) -> None: ...

    def prunable_names(self) -> list[str]: ...

    def reinitialize(self, seed: int) -> None: ...

    def identity(self) -> dict: ...


@dataclass(frozen=True)
class Parts:
    """The layer choices a model config makes for every architecture: a fresh neuron per call (never a shared
    instance), a BatchNorm for ``c`` channels, and whether the network is the ANN twin."""

    neuron: NeuronFactory
    norm: NormFactory
    is_ann: bool = False


def parts_from(cfg: ModelConfig) -> Parts:
    per_step = cfg.bn_time == "per-step"
    norm = lambda c: SeqBatchNorm2d(c, per_step=per_step)  # noqa: E731
    if cfg.neuron == "relu":
        return Parts(SeqReLU, norm, is_ann=True)
    return Parts(lambda: LIF(cfg.tau, cfg.v_threshold, cfg.surrogate, cfg.alpha), norm)


def default_parts() -> Parts:
    return parts_from(ModelConfig())


class SpikingNet(nn.Module, metaclass=abc.ABCMeta):
    """Base class of snnlth's architectures: subclasses build their layers from :class:`Parts`, implement
    :meth:`encode` and :meth:`body`, and give their weight init in :meth:`init_weights`."""

    def __init__(self, parts: Parts, timesteps: int = 5) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.is_ann = parts.is_ann
        self.input_transform: nn.Module = nn.Identity()  # e.g. input normalisation inside an exported ticket
        self.memory_format = torch.contiguous_format  # of the input images (--channels-last)
        self.conv_layout: ConvLayout = PLAIN_LAYOUT  # set by the engine for the device it trains on

    def forward(self, x: torch.Tensor, timesteps: int | None = None) -> torch.Tensor:
        """Per-step logits ``[T, B, classes]`` for images ``x: [B, C, H, W]``.

        The ANN twin computes once and repeats its logits over T (identical steps, so the loss and the prediction
        equal those of a plain ANN).
        """
        t = self.timesteps if timesteps is None else int(timesteps)
        if t < 1:
            raise ValueError(f"timesteps must be >= 1, got {t}")
        x = self.input_transform(x)
        x = plain_layout(x) if self.memory_format == torch.contiguous_format else x.contiguous(
            memory_format=self.memory_format)
        if self.is_ann:
            return self.body(self.encode(x, 1)).expand(t, -1, -1)
        return self.body(self.encode(x, t))

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        """Input coding: images ``x: [B, C, H, W]`` -> the input sequence of the body ``[T, B, ...]``."""

    @abc.abstractmethod
    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The network after the input coding: ``x_seq: [T, B, ...]`` -> per-step logits ``[T, B, classes]``."""

    def init_weights(self) -> None:
        """The architecture's own initialisation, after every layer's default ``reset_parameters``."""

    def reset(self) -> None:
        """No-op: neurons are stateless across calls. Kept so engines written for stateful SNNs can call it."""

    def prunable_names(self) -> list[str]:
        """Names of the prunable tensors: weights of every Conv and Linear layer, in definition order."""
        return [f"{name}.weight" if name else "weight" for name, m in self.named_modules()
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]

    def reinitialize(self, seed: int) -> None:
        """A fresh initialisation in place, from ``seed`` alone (the global RNG is left as it was): every layer's
        ``reset_parameters`` in definition order, then :meth:`init_weights`, drawn on the CPU whatever the model's
        device, so the result is the same on CPU and GPU and equal to building the model anew on the CPU after
        ``torch.manual_seed(seed)``. BN running statistics are reset too."""
        fresh = copy.deepcopy(self).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in fresh.modules():
                if m is not fresh and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            fresh.init_weights()
        self.load_state_dict(fresh.state_dict())

    def identity(self) -> dict:
        return model_identity(self)



def plain_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` with plain row-major strides. An image batch with one channel can be contiguous in both layouts (strides
    ``(HW, 1, W, 1)``, as from a permute); the convolution then picks channels-last and the whole network runs in it,
    where BatchNorm's backward is ~10× slower on CPU. A copy only when the strides differ."""
    if x.dim() != 4:
        return x
    _, c, h, w = x.shape
    if x.stride() != (c * h * w, h * w, w, 1):
        return x.clone(memory_format=torch.contiguous_format)
    return x


class Normalize(nn.Module):
    """Raw images ``[B, C, H, W]`` in [0, 1] -> ``(x - mean) / std`` per channel, the input a run trained on; with
    ``size``, images of another side length are first resized (bilinear) to it, as ``--resize`` did at load (which
    also rounded the resized pixels to uint8: accuracies of resized tickets can differ in the last decimals).
    Buffers are not persistent: a state dict with or without this transform is the same."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], size: int | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}, size={self.size}"


def model_identity(model: nn.Module) -> dict:
    """Class and a digest of the parameter names and shapes: two models with equal identity have the same
    architecture as far as masks and state dicts are concerned."""
    shapes = [(n, list(p.shape)) for n, p in model.named_parameters()]
    digest = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:12]
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "parameters": digest,
            "num_parameters": sum(p.numel() for p in model.parameters())}


def paper_vgg_init(model: nn.Module) -> None:
    """The paper's VGG init: conv kaiming-normal (fan_out, relu), bias 0; BN 1/0; Linear N(0, 0.01), bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
