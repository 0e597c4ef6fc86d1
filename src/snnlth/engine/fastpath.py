"""Speed settings of a training run (TrainConfig ``lif_kernel``, ``compile``, ``channels_last``) applied to a model,
and the CPU memory policy. None of them changes what is computed beyond float rounding, so none is part of a run's
identity: a run may be resumed with other settings."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.engine.cpu_memory import keep_freed_memory
from snnlth.snn.neuron import LIF


def resolve_lif_kernel(name: str, device: torch.device) -> str:
    """``auto`` -> ``compiled`` on CUDA when Triton is importable, else ``eager`` (on CPU the one-off compile of
    ~30 s outweighs the gain in short runs; ask for ``compiled`` in long ones)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "eager"
        return "compiled"
    return "eager"


def set_lif_kernel(model: nn.Module, kernel: str) -> int:
    """Point every snnlth :class:`LIF` of ``model`` at ``kernel``; returns how many there are (foreign neurons of
    an adapter keep their own implementation)."""
    neurons = [m for m in model.modules() if isinstance(m, LIF)]
    for m in neurons:
        m.kernel = kernel
    return len(neurons)


def prepare(model: nn.Module, cfg: TrainConfig, device: torch.device,
            wrap: Callable[[nn.Module], nn.Module] | None = None) -> Callable[..., torch.Tensor]:
    """Apply the speed settings to ``model`` (in place) and return what the engine calls as ``forward(x, T)``:
    the model itself, ``wrap(model)`` (data-parallel), or their ``torch.compile`` wrapper (same parameters; state
    dicts stay the model's own)."""
    if device.type == "cpu":
        keep_freed_memory()
    set_lif_kernel(model, resolve_lif_kernel(cfg.lif_kernel, device))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        if hasattr(model, "memory_format"):
            model.memory_format = torch.channels_last
    runner = wrap(model) if wrap is not None else model
    return torch.compile(runner) if cfg.compile else runner
