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


def _charges_eager(x_seq: torch.Tensor, decay: float, gain: float, v_threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h_seq, spikes)``: ``H[0] = X[0]/tau``, ``H[t] = X[t]/tau + decay·H[t-1]·(1 - S[t-1])`` with
    ``decay = 1 - 1/tau``, one in-place ``addcmul_`` per step on a buffer that starts as ``X/tau``; ``S = H >= V_th``
    in one pass at the end. Comparisons write floats into one reused buffer: a bool result, its cast and fresh
    buffers cost 2-3x more on CPU."""
    h_seq = torch.mul(x_seq.float(), gain)  # a fresh fp32 buffer whatever the input's dtype
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


def allow_variants(limit: int = 64) -> None:
    """Let a compiled kernel keep more variants than torch's default of 8 (each T, layout and residual or not is
    one; Early-Time runs two Ts): past the limit torch would run the uncompiled loops, several times slower."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
    setattr(config, name, max(getattr(config, name), limit))


class _Kernels:
    """The LIF loops by kernel name: ``eager`` (hand-written, no start-up cost) or ``compiled`` (``torch.compile``
    of the pure loops, built on first use: Triton on CUDA, C++ on CPU). Should compiling fail (no compiler, an
    unsupported device), the compiled kernel warns once and runs the eager loops from then on."""

    def __init__(self) -> None:
        self.compiled: tuple[Callable, Callable] | None = None
        self.failed: str | None = None

    def get(self, kernel: str) -> tuple[Callable, Callable]:
        if kernel == "eager" or self.failed:
            return _charges_eager, _input_grads_eager
        if self.compiled is None:
            allow_variants()
            self.compiled = (torch.compile(_charges_pure, dynamic=True), torch.compile(_input_grads_pure, dynamic=True))
        return self.compiled

    def run(self, kernel: str, which: int, *args):
        try:
            return self.get(kernel)[which](*args)
        except Exception as exc:  # noqa: BLE001 - any compile failure falls back to the same maths, eagerly
            if kernel == "eager" or self.failed or isinstance(exc, torch.cuda.OutOfMemoryError):
                raise  # out of memory is not the kernel's fault: the eager loops would need more
            self.fail(exc)
            return self.get("eager")[which](*args)

    def fail(self, exc: Exception) -> None:
        """Give up the compiled kernels (the LIF's and the fused BN+LIF) for this process, with one warning."""
        import warnings

        self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        warnings.warn(f"the compiled LIF kernel failed ({self.failed}); using the eager one (--lif-kernel eager "
                      "silences this)", RuntimeWarning, stacklevel=3)


_KERNELS = _Kernels()  # per process: compiled functions are cached by torch anyway
LIF_KERNELS = ("eager", "compiled")


class _LIFFunction(torch.autograd.Function):
    """Fused multi-step LIF: no autograd graph inside; saves only the charges ``h_seq`` (fp32), from which the
    backward recomputes spikes and surrogate gradients (equations in :func:`_charges_eager` and
    :func:`_input_grads_eager`)."""

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, tau: float, v_threshold: float, grad_fn: Callable, alpha: float,
                detach_reset: bool, kernel: str) -> torch.Tensor:  # type: ignore[override]
        order = _time_major_order(x_seq) if kernel == "compiled" else None
        x_in = _flat(x_seq, order).detach() if order is not None else x_seq  # detached: one compile, not two
        h_seq, spikes = _KERNELS.run(kernel, 0, x_in, 1.0 - 1.0 / tau, 1.0 / tau, v_threshold)
        ctx.save_for_backward(h_seq)
        ctx.cfg = (tau, v_threshold, grad_fn, alpha, detach_reset, x_seq.dtype, kernel, order, x_seq.shape)
        return _unflat(spikes, x_seq.shape, order) if order is not None else spikes

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):  # type: ignore[override]
        (h_seq,) = ctx.saved_tensors
        tau, v_threshold, grad_fn, alpha, detach_reset, dtype, kernel, order, shape = ctx.cfg
        if order is not None:
            grad_s = _flat(grad_s, order)
        grad_x = _KERNELS.run(kernel, 1, h_seq, grad_s, 1.0 - 1.0 / tau, 1.0 / tau, v_threshold, grad_fn, alpha,
                              detach_reset)
        grad_x = grad_x.to(dtype)
        return (_unflat(grad_x, shape, order) if order is not None else grad_x), None, None, None, None, None, None


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


def lif_multistep(x_seq: torch.Tensor, tau: float = 4.0 / 3.0, v_threshold: float = 1.0, surrogate: str = "atan",
                  alpha: float = 2.0, detach_reset: bool = True, kernel: str = "eager") -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of a LIF neuron driven by ``x_seq: [T, B, ...]`` (equations in :func:`lif_reference`).
    The membrane is fp32 even under autocast; spikes come back in the input's dtype. ``kernel``: ``eager``
    (hand-written loops, no start-up cost) or ``compiled`` (``torch.compile``d loops: fused, a one-off compile)."""
    if kernel not in LIF_KERNELS:
        raise ValueError(f"unknown LIF kernel {kernel!r}; use one of {LIF_KERNELS}")
    return _LIFFunction.apply(x_seq, tau, v_threshold, SURROGATES.get(surrogate), alpha, detach_reset, kernel)


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
        self.tau, self.v_threshold, self.surrogate = tau, v_threshold, surrogate
        self.alpha, self.detach_reset = alpha, detach_reset
        self.kernel = "eager"  # see lif_multistep; the engine sets it per run (TrainConfig.lif_kernel)

    def forward(self, x_seq: torch.Tensor, norm: nn.Module | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """Spikes of ``x_seq``; with ``norm`` (and ``residual``), spikes of ``norm(x_seq) + residual``: in one fused
        operation when training with the compiled kernel and ``norm`` is a per-step
        :class:`~snnlth.snn.layers.SeqBatchNorm2d` (:mod:`snnlth.snn.fused`), else layer by layer."""
        if norm is not None:
            from snnlth.snn.fused import fused_ok

            if fused_ok(norm, self, x_seq, residual):
                from snnlth.snn.fused import bn_lif

                return bn_lif(norm, self, x_seq, residual)
            from snnlth.snn.layers import seq_apply

            x_seq = seq_apply(norm, x_seq)
            if residual is not None:
                x_seq = x_seq + residual
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
