"""Speed settings of a training run (TrainConfig ``lif_kernel``, ``compile``, ``channels_last``) applied to a model,
and the CPU memory policy. None of them changes what is computed beyond float rounding, so none is part of a run's
identity: a run may be resumed with other settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.engine.cpu_memory import keep_freed_memory
from snnlth.snn.neuron import LIF

# LIF neuron-timesteps a training phase must cover for ``auto`` to compile the LIF kernel on CPU. Measured on a
# 2-core Xeon (torch 2.13.0): the compiled kernel saves ~1.2-2 ns per neuron-timestep (convnet, vgg16, resnet19) and
# compiling costs 7-25 s once per process, so it breaks even at ~10-15e9; at the threshold it already pays twice over.
CPU_COMPILE_MIN_WORK = 3e10


def resolve_lif_kernel(name: str, device: torch.device, work: float | None = None) -> str:
    """``auto`` -> ``compiled`` on CUDA when Triton is importable; on CPU when the phase trains at least
    :data:`CPU_COMPILE_MIN_WORK` neuron-timesteps (``work``, see :func:`lif_work`), else ``eager`` (a short run
    would not repay the one-off compile)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "eager"
        return "compiled"
    return "compiled" if work is not None and work >= CPU_COMPILE_MIN_WORK else "eager"


def lif_neurons(model: nn.Module, x: torch.Tensor, timesteps: int) -> int:
    """How many snnlth :class:`LIF` neurons one image of ``x`` (a batch of one) drives per timestep: one forward
    without gradients in evaluation mode (BatchNorm statistics untouched), neuron state reset after it."""
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _args, out: counts.append(out.numel()))
             for m in model.modules() if isinstance(m, LIF)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1], timesteps)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
        reset = getattr(model, "reset", None)
        if callable(reset):
            reset()
    return sum(counts) // timesteps


def lif_work(neurons: int, images: int, timesteps: Sequence[int]) -> float:
    """Neuron-timesteps of training ``images`` per epoch at each epoch's T in ``timesteps``."""
    return float(neurons) * images * sum(timesteps)


def set_lif_kernel(model: nn.Module, kernel: str) -> int:
    """Point every snnlth :class:`LIF` of ``model`` at ``kernel``; returns how many there are (foreign neurons of
    an adapter keep their own implementation)."""
    neurons = [m for m in model.modules() if isinstance(m, LIF)]
    for m in neurons:
        m.kernel = kernel
    return len(neurons)


def prepare(model: nn.Module, cfg: TrainConfig, device: torch.device,
            wrap: Callable[[nn.Module], nn.Module] | None = None,
            work: Callable[[], float] | None = None) -> Callable[..., torch.Tensor]:
    """Apply the speed settings to ``model`` (in place) and return what the engine calls as ``forward(x, T)``:
    the model itself, ``wrap(model)`` (data-parallel), or their ``torch.compile`` wrapper (same parameters; state
    dicts stay the model's own). ``work``: the phase's neuron-timesteps (see :func:`lif_work`), asked for only
    where ``auto`` needs it to choose the LIF kernel (CPU)."""
    if device.type == "cpu":
        keep_freed_memory()
    needs_work = cfg.lif_kernel == "auto" and device.type == "cpu" and work is not None
    needs_work = needs_work and any(isinstance(m, LIF) for m in model.modules())
    set_lif_kernel(model, resolve_lif_kernel(cfg.lif_kernel, device, work() if needs_work else None))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        if hasattr(model, "memory_format"):
            model.memory_format = torch.channels_last
    runner = wrap(model) if wrap is not None else model
    return torch.compile(runner) if cfg.compile else runner
