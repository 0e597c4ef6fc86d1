"""Speed settings of a training run (``[runtime]`` ``lif_kernel``, ``compile``, ``channels_last``) applied to a
model: the LIF kernel, the convolution layout of the device, and the CPU memory policy. None of them changes what is
computed beyond float rounding, so none is part of a run's identity: a run may be resumed with other settings."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from snnlth.config import RuntimeConfig
from snnlth.engine.cpu_memory import keep_freed_memory
from snnlth.engine.kernels import CompiledKernel
from snnlth.engine.layouts import set_conv_layout
from snnlth.rng import global_rng_kept
from snnlth.snn.neuron import EAGER, LIF, LIFKernel

# LIF neuron-timesteps of training after which ``auto`` compiles the LIF kernel on CPU (per run: CpuKernelChoice).
# Measured on a 2-core Xeon (torch 2.13.0): the compiled kernel saves ~1.2-2 ns per neuron-timestep (convnet, vgg16,
# resnet19 in training) and compiling costs 7-21 s once per process (lenet300 ... vgg16), so it breaks even at
# ~1-1.5e10; at 3e10 the time saved is about twice the compile.
CPU_COMPILE_MIN_WORK = 3e10


def resolve_lif_kernel(name: str, device: torch.device, work: float | None = None, seen: float = 0.0) -> str:
    """``auto`` -> ``compiled`` on CUDA when Triton is importable. On CPU ``compiled`` once the phase's ``work``
    (neuron-timesteps, see :func:`lif_work`) plus what the run trained before it in this process (``seen``) reaches
    :data:`CPU_COMPILE_MIN_WORK`; ``eager`` before (a short run would not repay the one-off compile) and when
    ``work`` is unknown."""
    if name != "auto":
        return name
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "eager"
        return "compiled"
    if work is None:
        return "eager"
    return "compiled" if seen + work >= CPU_COMPILE_MIN_WORK else "eager"


class KernelChoice:
    """The LIF kernels of one run (a train run, or a search: one instance for all its phases): its compiled kernel
    (made on first use, so a failed compile warns once per run) and ``auto``'s choice on CPU, which adds up the
    neuron-timesteps of the phases it chose for, so a search of many short rounds compiles once their sum reaches
    the threshold (the compile is paid once per process; a long phase keeps the later short ones compiled)."""

    def __init__(self) -> None:
        self.seen = 0.0
        self._compiled: CompiledKernel | None = None

    def kernel(self, name: str) -> LIFKernel:
        """The kernel for ``eager`` or ``compiled`` (the run's one compiled kernel)."""
        if name == "eager":
            return EAGER
        if name != "compiled":
            raise ValueError(f"unknown LIF kernel {name!r}; use eager or compiled")
        if self._compiled is None:
            self._compiled = CompiledKernel()
        return self._compiled

    def choose(self, work: Callable[[], float]) -> str:
        """The kernel for a phase of ``work()`` neuron-timesteps (run with the global random streams kept)."""
        try:
            with global_rng_kept():
                amount = work()
        except Exception as exc:  # noqa: BLE001 - a probe that fails (an odd model or dataset) must not stop training
            warnings.warn(f"--lif-kernel auto could not count the model's LIF neurons ({type(exc).__name__}: {exc}); "
                          "training with the eager LIF (--lif-kernel compiled or eager chooses)", RuntimeWarning,
                          stacklevel=2)
            return "eager"
        kernel = resolve_lif_kernel("auto", torch.device("cpu"), amount, self.seen)
        self.seen += amount
        return kernel


def lif_neurons(model: nn.Module, x: torch.Tensor, timesteps: int) -> int:
    """How many snnlth :class:`LIF` neurons one image of ``x`` (a batch of one) drives per timestep: one forward
    without gradients in evaluation mode (BatchNorm statistics untouched), neuron state reset after it."""
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _args, out: counts.append(out.numel() if torch.is_tensor(out) else 0))
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


def set_lif_kernel(model: nn.Module, kernel: LIFKernel) -> int:
    """Hand ``kernel`` to every snnlth :class:`LIF` of ``model``; returns how many there are (foreign neurons of an
    adapter keep their own implementation)."""
    neurons = [m for m in model.modules() if isinstance(m, LIF)]
    for m in neurons:
        m.kernel = kernel
    return len(neurons)


def prepare(model: nn.Module, cfg: RuntimeConfig, device: torch.device,
            wrap: Callable[[nn.Module], nn.Module] | None = None, work: Callable[[], float] | None = None,
            choice: KernelChoice | None = None) -> Callable[..., torch.Tensor]:
    """Apply the speed settings to ``model`` (in place) and return what the engine calls as ``forward(x, T)``:
    the model itself, ``wrap(model)`` (data-parallel), or their ``torch.compile`` wrapper (same parameters; state
    dicts stay the model's own). ``work``: the phase's neuron-timesteps (see :func:`lif_work`), asked for only
    where ``auto`` needs it to choose the LIF kernel (CPU); ``choice``: the run's kernels (default: this call's)."""
    if device.type == "cpu":
        keep_freed_memory()
    choice = choice or KernelChoice()
    probe = cfg.lif_kernel == "auto" and device.type == "cpu" and work is not None
    if probe and any(isinstance(m, LIF) for m in model.modules()):
        name = choice.choose(work)
    else:
        name = resolve_lif_kernel(cfg.lif_kernel, device)
    set_lif_kernel(model, choice.kernel(name))
    set_conv_layout(model, device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        if hasattr(model, "memory_format"):
            model.memory_format = torch.channels_last
    runner = wrap(model) if wrap is not None else model
    return torch.compile(runner) if cfg.compile else runner
