"""A training step — forward, loss and backward — captured once as a CUDA graph and replayed for every batch of the
same shape.

An SNN training step on a GPU is launch-bound: the loops over T (LIF, per-step BatchNorm) make hundreds of small
kernels, each costing the host more time to launch than the GPU to run. A replayed graph launches them all at once.
What stays outside the graph: the optimiser step, mask enforcement, the loss and accuracy sums (a few fused kernels).

Semantics are those of the eager step: the warm-up runs that capturing needs are undone (BatchNorm running statistics
restored), a batch of another shape (the ragged last one) runs eagerly, and a change of the parameters' storage, of
``requires_grad``, of T or of the train/eval mode captures anew.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from snnlth.engine.evaluate import seq_loss
from snnlth.engine.layouts import hooked
from snnlth.snn.neuron import LIF, is_spiking_neuron


def graph_blocker(model: nn.Module, device: torch.device, active_dist: bool) -> str | None:
    """Why this run cannot capture its step (``None`` when it can): CUDA only, one process (data-parallel gradient
    hooks), and neurons without state across calls (snnlth's LIF: a framework neuron keeps its membrane on the
    module between calls, which a replayed graph would not see)."""
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if active_dist:
        return "data-parallel runs are not captured"
    foreign = next((n for n, m in model.named_modules() if is_spiking_neuron(m) and not isinstance(m, LIF)), None)
    if foreign is not None:
        return f"{foreign} is a stateful neuron of another framework"
    return None


class GraphedStep:
    """Forward + ``loss`` (default :func:`seq_loss`, the run's ``--loss``) + backward of ``forward(x, T)`` as a replayed
    CUDA graph.

    ``step(x, y, T)`` returns ``(loss, logits_seq)`` with every trainable parameter's ``.grad`` set, as an eager
    ``zero_grad(set_to_none=True)``, forward, backward would leave them; or ``None`` when the caller must run the step
    eagerly (another batch shape than the captured one, or capturing failed — a warning says why, once). The returned
    tensors are overwritten by the next replay: read or accumulate them before the next ``step``.

    ``backend`` is the graph machinery (``torch.cuda`` by default); tests on CPU pass an emulation.
    """

    def __init__(self, model: nn.Module, forward: Callable[..., torch.Tensor], amp: bool, warmup: int = 2,
                 backend=None, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = seq_loss) -> None:
        self.model, self.forward, self.amp, self.warmup, self.loss = model, forward, amp, warmup, loss
        self.backend = backend if backend is not None else _CudaBackend()
        self.failed: str | None = None
        self.captures = 0  # how many times a graph was captured (tests, benchmarks)
        self._key: tuple | None = None
        self._graph = None

    def _fingerprint(self) -> tuple:
        return (self.model.training,
                tuple((p.data_ptr(), p.requires_grad) for p in self.model.parameters()),
                tuple(b.data_ptr() for b in self.model.buffers()))

    def _compute(self, timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
        # autocast's weight-cast cache must stay off while capturing: cached casts would be freed between replays
        with torch.autocast(self.backend.device_type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            logits = self.forward(self._x, timesteps)
        return self.loss(logits, self._y), logits

    def step(self, x: torch.Tensor, y: torch.Tensor, timesteps: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.failed is not None or _has_hooks(self.model):
            return None  # a module hook would not run on a replay: such a step runs eagerly
        key = (tuple(x.shape), x.dtype, x.stride(), tuple(y.shape), int(timesteps), self._fingerprint())
        if self._key is not None and key[:3] != self._key[:3]:
            return None  # a batch of another shape (the ragged last one): eager, the graph stays
        if key != self._key:
            try:
                self._capture(x, y, int(timesteps))
            except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: the same step, eagerly
                self._drop()
                self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                warnings.warn(f"this training step cannot be captured as a CUDA graph ({self.failed}); training "
                              "eagerly (--no-cuda-graph silences this)", RuntimeWarning, stacklevel=2)
                return None
            self._key = key
        self._x.copy_(x)
        self._y.copy_(y)
        self.backend.replay(self._graph)
        for p, g in zip(self._params, self._grads):
            p.grad = g
        return self._loss, self._logits

    def _drop(self) -> None:
        self._graph = self._key = None
        self._x = self._y = self._loss = self._logits = None  # the old graph's memory goes before a new capture
        self._params, self._grads = [], []
        for p in self.model.parameters():
            p.grad = None

    def _capture(self, x: torch.Tensor, y: torch.Tensor, timesteps: int) -> None:
        self._drop()
        self._x, self._y = x.detach().clone(), y.detach().clone()
        params = [p for p in self.model.parameters() if p.requires_grad]
        buffers = list(self.model.buffers())
        saved = [b.detach().clone() for b in buffers]
        try:
            with self.backend.side_stream():  # warm-up: lazy initialisations (kernels, compiles) happen here
                for _ in range(self.warmup):
                    for p in params:
                        p.grad = None
                    self._compute(timesteps)[0].backward()
            for p in params:
                p.grad = None

            def fn():
                loss, logits = self._compute(timesteps)
                loss.backward()
                return loss.detach(), logits.detach()

            graph, (loss, logits) = self.backend.capture(fn, params)
        finally:
            with torch.no_grad():  # the warm-up's BatchNorm updates never happened
                for b, s in zip(buffers, saved):
                    b.copy_(s)
        self._graph, self._loss, self._logits = graph, loss, logits
        # a trainable parameter the step does not reach keeps no gradient, as in the eager step
        self._params = [p for p in params if p.grad is not None]
        self._grads = [p.grad for p in self._params]
        self.captures += 1


def _has_hooks(model: nn.Module) -> bool:
    return any(hooked(m) for m in model.modules())


class _CudaBackend:
    """The real thing: ``torch.cuda`` graphs, warmed up on a side stream as PyTorch's documentation asks."""

    device_type = "cuda"

    def side_stream(self):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                yield
            torch.cuda.current_stream().wait_stream(stream)

        return ctx()

    def capture(self, fn: Callable, params: list[torch.Tensor]):
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA calls (a DataLoader's pin-memory thread) do not break the capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = fn()
        return graph, out

    def replay(self, graph) -> None:
        graph.replay()
