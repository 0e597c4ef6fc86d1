"""Leaky integrate-and-fire neurons, multi-step over a leading time dimension.

Stateless by design: the membrane lives inside one call over the whole sequence ``x_seq: [T, B, ...]``, so no
state can leak from one batch into the next and no reset call can be forgotten.

Two implementations of the same equations: :func:`lif_reference` (plain autograd, easy to read) and the default
fused :class:`_LIFFunction`, whose forward builds no graph and whose backward is written by hand (about 3× faster
on CPU; a test checks both agree to float precision).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from snnlth.snn.surrogate import SURROGATES, spike


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


class _LIFFunction(torch.autograd.Function):
    """Fused multi-step LIF. Saves only the charges ``h_seq`` (fp32); spikes are recomputed from them.

    Forward, with ``decay = 1 - 1/tau``: ``H[0] = X[0]/tau`` and ``H[t] = X[t]/tau + decay·H[t-1]·(1 - S[t-1])``,
    one in-place ``addcmul_`` per step on a buffer that starts as ``X/tau``; the spikes ``S = H >= V_th`` in one
    pass at the end. Backward, with ``g = surrogate'(H[t] - V_th)`` and ``dV[t]`` the gradient reaching ``V[t]`` from
    step t+1 (``dV[t] = decay·dH[t+1]``): ``dH[t] = dS[t]·g + dV[t]·(1 - S[t])`` (minus ``dV[t]·H[t]·g`` when the
    reset is not detached), ``dX[t] = dH[t] / tau``: the per-step terms over the whole sequence at once, then one
    in-place ``addcmul_`` per step. Few passes over memory and no allocation per step (see bench/engine.py).
    """

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, tau: float, v_threshold: float, grad_fn: Callable, alpha: float,
                detach_reset: bool) -> torch.Tensor:  # type: ignore[override]
        decay, gain = 1.0 - 1.0 / tau, 1.0 / tau
        h_seq = torch.mul(x_seq.float(), gain)  # a fresh fp32 buffer whatever the input's dtype
        keep = torch.empty_like(h_seq[0])
        for t in range(1, x_seq.shape[0]):
            # comparisons write floats into a reused buffer: a bool result, its cast and fresh buffers cost ~3x more
            torch.lt(h_seq[t - 1], v_threshold, out=keep)  # 1 - S[t-1]
            h_seq[t].add_(keep.mul_(h_seq[t - 1]), alpha=decay)
        ctx.save_for_backward(h_seq)
        ctx.cfg = (tau, v_threshold, grad_fn, alpha, detach_reset, x_seq.dtype)
        return torch.ge(h_seq, v_threshold, out=torch.empty(h_seq.shape, dtype=x_seq.dtype, device=h_seq.device))

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):  # type: ignore[override]
        (h_seq,) = ctx.saved_tensors
        tau, v_threshold, grad_fn, alpha, detach_reset, dtype = ctx.cfg
        decay = 1.0 - 1.0 / tau
        centred = h_seq - v_threshold
        sg = grad_fn(centred, alpha)
        # what dH[t+1] contributes to dH[t]: decay·(1 - S[t]) (− decay·H[t]·g without a detached reset)
        carry = torch.lt(h_seq, v_threshold, out=centred).mul_(decay)  # reuses the buffer of ``centred``
        if not detach_reset:
            carry.addcmul_(h_seq, sg, value=-decay)
        grad_h = sg.mul_(grad_s)  # dS[t]·g, then the recurrence in place, last step first
        for t in range(h_seq.shape[0] - 2, -1, -1):
            grad_h[t].addcmul_(grad_h[t + 1], carry[t])
        return grad_h.mul_(1.0 / tau).to(dtype), None, None, None, None, None


def _charges(x_seq: torch.Tensor, decay: float, gain: float, v_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h_seq, spikes)`` of :class:`_LIFFunction`'s forward written without in-place updates of views, for ``torch.compile``:
    the compiler fuses the loop over T into one kernel (one read of ``x_seq``, one write of ``h_seq``)."""
    h = x_seq[0].float() * gain
    out = [h]
    for t in range(1, x_seq.shape[0]):
        h = x_seq[t].float() * gain + decay * torch.where(h < v_threshold, h, 0.0)
        out.append(h)
    h_seq = torch.stack(out)
    return h_seq, (h_seq >= v_threshold).to(x_seq.dtype)


def _input_grads(h_seq: torch.Tensor, grad_s: torch.Tensor, decay: float, gain: float, v_threshold: float,
                 grad_fn: Callable, alpha: float, detach_reset: bool) -> torch.Tensor:
    """The backward of :class:`_LIFFunction` in the same compiler-friendly form as :func:`_charges`."""
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


_COMPILED: dict[str, Callable] = {}  # torch.compile'd loops, built on first use (a per-process cache)


def _compiled(name: str) -> Callable:
    if name not in _COMPILED:
        fn = {"charges": _charges, "input_grads": _input_grads}[name]
        _COMPILED[name] = torch.compile(fn, dynamic=True)
    return _COMPILED[name]


class _CompiledLIF(torch.autograd.Function):
    """:class:`_LIFFunction` with both loops compiled by ``torch.compile`` (fused kernels: Triton on CUDA, C++ on
    CPU). Same equations; results equal up to float rounding."""

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, tau: float, v_threshold: float, grad_fn: Callable, alpha: float,
                detach_reset: bool) -> torch.Tensor:  # type: ignore[override]
        h_seq, spikes = _compiled("charges")(x_seq, 1.0 - 1.0 / tau, 1.0 / tau, v_threshold)
        ctx.save_for_backward(h_seq)
        ctx.cfg = (tau, v_threshold, grad_fn, alpha, detach_reset, x_seq.dtype)
        return spikes

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):  # type: ignore[override]
        (h_seq,) = ctx.saved_tensors
        tau, v_threshold, grad_fn, alpha, detach_reset, dtype = ctx.cfg
        grad_x = _compiled("input_grads")(h_seq, grad_s, 1.0 - 1.0 / tau, 1.0 / tau, v_threshold, grad_fn, alpha,
                                          detach_reset)
        return grad_x.to(dtype), None, None, None, None, None


LIF_KERNELS = {"eager": _LIFFunction, "compiled": _CompiledLIF}


def lif_multistep(x_seq: torch.Tensor, tau: float = 4.0 / 3.0, v_threshold: float = 1.0, surrogate: str = "atan",
                  alpha: float = 2.0, detach_reset: bool = True, kernel: str = "eager") -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of a LIF neuron driven by ``x_seq: [T, B, ...]`` (equations in :func:`lif_reference`).
    The membrane is fp32 even under autocast; spikes come back in the input's dtype. ``kernel``: ``eager``
    (hand-written loops, no start-up cost) or ``compiled`` (``torch.compile``d loops: fused, a one-off compile)."""
    return LIF_KERNELS[kernel].apply(x_seq, tau, v_threshold, SURROGATES.get(surrogate), alpha, detach_reset)


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
        self.tau, self.v_threshold, self.surrogate = tau, v_threshold, surrogate
        self.alpha, self.detach_reset = alpha, detach_reset
        self.kernel = "eager"  # see lif_multistep; the engine sets it per run (TrainConfig.lif_kernel)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return lif_multistep(x_seq, self.tau, self.v_threshold, self.surrogate, self.alpha, self.detach_reset,
                             self.kernel)

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
