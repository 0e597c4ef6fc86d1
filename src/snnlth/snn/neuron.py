"""Leaky integrate-and-fire neurons, multi-step over a leading time dimension.

Stateless by design: the membrane lives inside one call over the whole sequence ``x_seq: [T, B, ...]``, so no
state can leak from one batch into the next and no reset call can be forgotten.

Two implementations of the same equations: :func:`lif_reference` (plain autograd, easy to read) and the default
fused :class:`_LIFFunction`, whose forward builds no graph and whose backward is written by hand (about 3× faster
on CPU; a test checks both agree to float precision). The loops over T that :class:`_LIFFunction` runs come from a
*kernel* the caller passes in (:class:`LIFKernel`): :data:`EAGER` here; the engine passes compiled ones. Nothing in
this module keeps state between calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from snnlth.snn.surrogate import SURROGATES, spike


@dataclass(frozen=True)
class LIFParams:
    """The constants of a LIF neuron: membrane time constant, threshold, surrogate gradient (name, sharpness) and
    whether the reset is detached from the graph (paper §3)."""

    tau: float = 4.0 / 3.0
    v_threshold: float = 1.0
    surrogate: str = "atan"
    alpha: float = 2.0
    detach_reset: bool = True

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau

    @property
    def gain(self) -> float:
        return 1.0 / self.tau

    @property
    def grad_fn(self) -> Callable:
        return SURROGATES.get(self.surrogate)


def lif_reference(x_seq: torch.Tensor, tau: float = 4.0 / 3.0, v_threshold: float = 1.0, surrogate: str = "atan",
                  alpha: float = 2.0, detach_reset: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF over ``x_seq: [T, B, ...]`` with autograd; returns ``(spikes, h_seq)``, both ``[T, B, ...]``.

    Charge ``H[t] = V[t-1] + (X[t] - V[t-1]) / tau`` (V[-1] = 0), spike ``S[t] = Θ(H[t] - V_th)``, hard reset to 0:
    ``V[t] = H[t] (1 - S[t])``. With ``detach_reset`` (paper §3) no gradient flows through the reset.
    ``h_seq`` is the membrane just before the reset, the value compared with the threshold.
    """
    v = torch.zeros_like(x_seq[0], dtype=torch.float32)
    spikes, charges = [], []
    for x in x_seq:
        h = v + (x.float() - v) / tau
        s = spike(h - v_threshold, surrogate, alpha)
        v = h * (1 - (s.detach() if detach_reset else s))
        spikes.append(s)
        charges.append(h)
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(charges)


def _charges_eager(x_seq: torch.Tensor, decay: float, gain: float, v_threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h_seq, spikes)``: ``H[0] = X[0]/tau``, ``H[t] = X[t]/tau + decay·H[t-1]·(1 - S[t-1])`` with
    ``decay = 1 - 1/tau``, one in-place ``addcmul_`` per step on a buffer that starts as ``X/tau``; ``S = H >= V_th``
    in one pass at the end. Comparisons write floats into one reused buffer: a bool result, its cast and fresh
    buffers cost 2-3x more on CPU."""
    # a fresh fp32 buffer whatever the input's dtype (fp64 for fp64 input: exact comparisons with other simulators)
    h_seq = torch.mul(x_seq if x_seq.dtype == torch.float64 else x_seq.float(), gain)
    keep = torch.empty_like(h_seq[0])
    for t in range(1, x_seq.shape[0]):
        torch.lt(h_seq[t - 1], v_threshold, out=keep)  # 1 - S[t-1]
        h_seq[t].addcmul_(keep, h_seq[t - 1], value=decay)
    spikes = torch.ge(h_seq, v_threshold, out=torch.empty_like(h_seq, dtype=x_seq.dtype))
    return h_seq, spikes


def _input_grads_eager(h_seq: torch.Tensor, grad_s: torch.Tensor, decay: float, gain: float, v_threshold: float,
                       grad_fn: Callable, alpha: float, detach_reset: bool) -> torch.Tensor:
    """``dX`` from ``dS``: with ``g = surrogate'(H[t] - V_th)`` and ``dV[t] = decay·dH[t+1]`` the gradient reaching
    ``V[t]`` from step t+1, ``dH[t] = dS[t]·g + dV[t]·(1 - S[t])`` (minus ``dV[t]·H[t]·g`` when the reset is not
    detached) and ``dX[t] = dH[t] / tau``. The recurrence is linear, so it runs on ``dX`` directly: the per-step
    terms ``dS·g/tau`` over the whole sequence in one surrogate call (shift, scale and ``dS`` folded in), then one
    in-place ``addcmul_`` per step, last step first."""
    if not detach_reset:
        sg = grad_fn(h_seq, alpha, shift=v_threshold)
        grad_x = torch.mul(sg, grad_s).mul_(gain)
        # what dH[t+1] contributes to dH[t]: decay·((1 - S[t]) − H[t]·g)
        carry = torch.lt(h_seq, v_threshold, out=torch.empty_like(h_seq)).addcmul_(h_seq, sg, value=-1.0)
        for t in range(h_seq.shape[0] - 2, -1, -1):
            grad_x[t].addcmul_(grad_x[t + 1], carry[t], value=decay)
        return grad_x
    grad_x = grad_fn(h_seq, alpha, scale=gain, shift=v_threshold, grad_out=grad_s)
    keep = torch.empty_like(h_seq[0])
    for t in range(h_seq.shape[0] - 2, -1, -1):
        torch.lt(h_seq[t], v_threshold, out=keep)  # 1 - S[t]
        grad_x[t].addcmul_(grad_x[t + 1], keep, value=decay)
    return grad_x


def _charges_pure(x_seq: torch.Tensor, decay: float, gain: float, v_threshold: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_charges_eager` without in-place updates of views, for ``torch.compile``, which fuses the loop over T
    into one kernel (one read of ``x_seq``, one write each of ``h_seq`` and the spikes)."""
    h = x_seq[0].float() * gain
    out = [h]
    for t in range(1, x_seq.shape[0]):
        h = x_seq[t].float() * gain + decay * torch.where(h < v_threshold, h, 0.0)
        out.append(h)
    h_seq = torch.stack(out)
    return h_seq, (h_seq >= v_threshold).to(x_seq.dtype)


def _input_grads_pure(h_seq: torch.Tensor, grad_s: torch.Tensor, decay: float, gain: float, v_threshold: float,
                      grad_fn: Callable, alpha: float, detach_reset: bool) -> torch.Tensor:
    """:func:`_input_grads_eager` in the compiler-friendly form of :func:`_charges_pure`."""
    out = []
    grad_h = None
    for t in range(h_seq.shape[0] - 1, -1, -1):
        centred = h_seq[t] - v_threshold
        sg = grad_fn(centred, alpha)
        grad_t = grad_s[t].float() * sg
        if grad_h is not None:
            carry = torch.where(centred < 0, decay, 0.0)
            if not detach_reset:
                carry = carry - decay * h_seq[t] * sg
            grad_t = grad_t + grad_h * carry
        grad_h = grad_t
        out.append(grad_t * gain)
    return torch.stack(out[::-1])


class LIFKernel(Protocol):
    """The loops over T of a LIF layer: ``charges(x_seq, decay, gain, v_threshold) -> (h_seq, spikes)`` forward and
    ``input_grads(h_seq, grad_s, decay, gain, v_threshold, grad_fn, alpha, detach_reset) -> grad_x`` backward, with
    the equations of :func:`_charges_eager` and :func:`_input_grads_eager`. ``flat``: the kernel wants every step as
    one flat run of memory (``[T, N]``, one compiled variant for all layers); ``fuses``: it also has the fused
    BatchNorm + LIF functions of :mod:`snnlth.snn.fused` (``bn_charges``, ``bn_input_grads``)."""

    name: str
    flat: bool
    fuses: bool

    def charges(self, x_seq: torch.Tensor, decay: float, gain: float, v_threshold: float
                ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def input_grads(self, h_seq: torch.Tensor, grad_s: torch.Tensor, decay: float, gain: float, v_threshold: float,
                    grad_fn: Callable, alpha: float, detach_reset: bool) -> torch.Tensor: ...


@dataclass(frozen=True)
class EagerKernel:
    """The hand-written loops: no start-up cost, no fusion."""

    name: str = "eager"
    flat: bool = False
    fuses: bool = False
    charges = staticmethod(_charges_eager)
    input_grads = staticmethod(_input_grads_eager)


EAGER = EagerKernel()


class _LIFFunction(torch.autograd.Function):
    """Fused multi-step LIF: no autograd graph inside; saves only the charges ``h_seq`` (fp32), from which the
    backward recomputes spikes and surrogate gradients (equations in :func:`_charges_eager` and
    :func:`_input_grads_eager`), with the loops of ``kernel``."""

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, params: LIFParams, kernel: LIFKernel) -> torch.Tensor:  # type: ignore[override]
        order = _time_major_order(x_seq) if kernel.flat else None
        x_in = _flat(x_seq, order).detach() if order is not None else x_seq  # detached: one compile, not two
        h_seq, spikes = kernel.charges(x_in, params.decay, params.gain, params.v_threshold)
        ctx.save_for_backward(h_seq)
        ctx.cfg = (params, kernel, x_seq.dtype, order, x_seq.shape)
        return _unflat(spikes, x_seq.shape, order) if order is not None else spikes

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):  # type: ignore[override]
        (h_seq,) = ctx.saved_tensors
        p, kernel, dtype, order, shape = ctx.cfg
        if order is not None:
            grad_s = _flat(grad_s, order)
        grad_x = kernel.input_grads(h_seq, grad_s, p.decay, p.gain, p.v_threshold, p.grad_fn, p.alpha,
                                    p.detach_reset).to(dtype)
        return (_unflat(grad_x, shape, order) if order is not None else grad_x), None, None


def _time_major_order(x_seq: torch.Tensor) -> tuple[int, ...] | None:
    """The order of the non-time dims of ``x_seq`` from the largest stride to the smallest when one step
    ``x_seq[t]`` is dense in that order (contiguous, channels-last, ...); else ``None`` (the caller copies)."""
    if x_seq.dim() < 2:
        return None
    step = x_seq[0]
    order = tuple(sorted(range(step.dim()), key=lambda d: -step.stride(d)))
    return order if step.permute(order).is_contiguous() else None


def _flat(x_seq: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """``[T, N]``: every step of ``x_seq`` as the flat run of memory it is, so the compiled kernel sees one shape
    and one layout whatever the layer (one compile for all of them; channels-last read in order). The time stride
    is kept (a repeated input, stride 0, is not copied)."""
    return x_seq.permute(0, *(d + 1 for d in order)).reshape(x_seq.shape[0], -1)


def _unflat(y: torch.Tensor, shape: torch.Size, order: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`_flat` for a contiguous ``y: [T, N]``: ``shape``, with the input step's strides."""
    permuted = y.view(shape[0], *(shape[d + 1] for d in order))
    inverse = [0] * len(order)
    for i, d in enumerate(order):
        inverse[d] = i + 1
    return permuted.permute(0, *inverse)


def lif_multistep(x_seq: torch.Tensor, params: LIFParams = LIFParams(), kernel: LIFKernel = EAGER) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of a LIF neuron with ``params`` driven by ``x_seq: [T, B, ...]`` (equations in
    :func:`lif_reference`). The membrane is fp32 even under autocast (fp64 for fp64 input on the eager kernel);
    spikes come back in the input's dtype.
    ``kernel``: the loops over T (:data:`EAGER`: hand-written, no start-up cost; the engine's compiled kernels fuse
    them, after a one-off compile)."""
    return _LIFFunction.apply(x_seq, params, kernel)


class LIF(nn.Module):
    """Multi-step LIF layer: ``[T, B, ...] -> [T, B, ...]`` spikes. See :func:`lif_reference` for the equations.

    Example:
        >>> lif = LIF()
        >>> lif(torch.full((3, 1), 1.5)).flatten().tolist()   # H = 1.125 >= 1 at every step: fire, reset, repeat
        [1.0, 1.0, 1.0]
    """

    multistep = True  # takes the whole sequence (see snnlth.snn.layers.seq_apply)
    spiking_neuron = True  # found by is_spiking_neuron for spike counts

    def __init__(self, tau: float = 4.0 / 3.0, v_threshold: float = 1.0, surrogate: str = "atan",
                 alpha: float = 2.0, detach_reset: bool = True) -> None:
        super().__init__()
        SURROGATES.get(surrogate)  # fail at build time on an unknown name
        if not alpha > 0:
            raise ValueError(f"surrogate sharpness alpha must be > 0, got {alpha}")
        self.params = LIFParams(tau, v_threshold, surrogate, alpha, detach_reset)
        self.kernel: LIFKernel = EAGER  # the loops over T; the engine passes its own per run (--lif-kernel)

    tau = property(lambda self: self.params.tau)
    v_threshold = property(lambda self: self.params.v_threshold)
    surrogate = property(lambda self: self.params.surrogate)
    alpha = property(lambda self: self.params.alpha)
    detach_reset = property(lambda self: self.params.detach_reset)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Spikes of ``x_seq: [T, B, ...]``."""
        return lif_multistep(x_seq, self.params, self.kernel)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g}, v_threshold={self.v_threshold}, surrogate={self.surrogate}, alpha={self.alpha}"


# Spiking-neuron base classes of other frameworks, by name (no import of those frameworks needed): spikingjelly's
# BaseNode and snntorch's SpikingNeuron.
_FOREIGN_NEURONS = frozenset({"BaseNode", "SpikingNeuron"})


def is_spiking_neuron(module: nn.Module) -> bool:
    """True for a module that emits spikes: one that says so (``spiking_neuron = True``, as :class:`LIF`) or a
    neuron of spikingjelly or snntorch. Spike counts and SynOps find neurons by this predicate, never by type."""
    flag = getattr(module, "spiking_neuron", None)
    if flag is not None:
        return bool(flag)
    return any(cls.__name__ in _FOREIGN_NEURONS for cls in type(module).__mro__)


class SeqReLU(nn.Module):
    """ReLU over a sequence: the neuron of the ANN twin (same place in the graph, same parameter names)."""

    multistep = True

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.relu(x_seq)
