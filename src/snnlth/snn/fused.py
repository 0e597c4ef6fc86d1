"""Per-step BatchNorm, an optional residual and the LIF neuron in one fused operation (training, the compiled kernel).

``spikes = LIF(BN_t(x[t]) + residual[t])`` where ``BN_t`` normalises step t with its own batch statistics (the
paper's per-step BatchNorm, :class:`snnlth.snn.layers.SeqBatchNorm2d`). Unfused, a GPU runs T BatchNorm kernels, a
stack, an add and the LIF loop per layer, each a pass over memory, and as many again backward; fused, the forward is
one reduction (the statistics) and one pointwise kernel (normalise, add, charge, fire over all T), the backward one
pointwise kernel (the LIF recurrence), one reduction and one pointwise kernel. Saved for backward: the input and the
fp32 charges, as the unfused layers save.

The running statistics are updated as T calls of ``nn.BatchNorm2d`` would (momentum m, unbiased variance):
``r <- (1-m)^T r + sum_t m (1-m)^(T-1-t) stat_t``. A test checks outputs, gradients and running statistics against
the unfused layers.

The functions are plain PyTorch; :data:`PURE` runs them as they are (tests, reference) and the engine compiles them
(its compiled kernel, which also runs the LIF's own loops). :func:`fire` is the one way a model applies a neuron
after BatchNorm (and a residual): fused where :func:`fused_ok`, layer by layer otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from snnlth.snn.layers import SeqBatchNorm2d, seq_apply
from snnlth.snn.neuron import LIF, LIFKernel, LIFParams, _charges_pure, _input_grads_pure

BNConstants = tuple[float, float]  # (eps, momentum)
Charge = tuple[float, float, float]  # the LIF's (decay, gain, v_threshold)
Surrogate = tuple[Callable, float, bool]  # (grad_fn, alpha, detach_reset)


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``x: [T, B, C, H, W]`` as a 4-D view ``[T, B, C, HW]`` (channel dim 2) or, channels-last, ``[T, B, HW, C]``
    (channel dim 3); any other layout is copied to the first."""
    channel_dim = 3 if x[0].is_contiguous(memory_format=torch.channels_last) and not x[0].is_contiguous() else 2
    return _as_layout(x, channel_dim), channel_dim


def _bn_charges_pure(x4: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                     bn: BNConstants, channel_dim: int, charge: Charge):
    """Forward: per-step statistics, normalise (+ residual), LIF charges and spikes over ``x4`` (see
    :func:`_layout`). Returns ``(h, spikes, mean [T, C], invstd [T, C], mean_update [C], var_update [C])``, the
    updates being ``sum_t m (1-m)^(T-1-t) stat_t`` (the biased variance: shapes stay symbolic for the compiler)."""
    (eps, momentum), (decay, gain, v_threshold) = bn, charge
    xf = x4.float()
    dims = (1, 2) if channel_dim == 3 else (1, 3)
    var, mean = torch.var_mean(xf, dim=dims, correction=0, keepdim=True)
    invstd = torch.rsqrt(var + eps)
    shape = (1, 1, 1, -1) if channel_dim == 3 else (1, 1, -1, 1)
    scale = invstd * weight.float().view(shape)
    y = (xf - mean) * scale + bias.float().view(shape)
    if residual is not None:
        y = y + residual.float()
    h, spikes = _charges_pure(y, decay, gain, v_threshold)
    steps = x4.shape[0]
    weights = [momentum * (1.0 - momentum) ** (steps - 1 - t) for t in range(steps)]
    mean_tc, var_tc = mean.flatten(1), var.flatten(1)
    mean_up = sum(w * mean_tc[t] for t, w in enumerate(weights))
    var_up = sum(w * var_tc[t] for t, w in enumerate(weights))  # biased: the caller scales by n / (n - 1)
    return h, spikes.to(x4.dtype), mean_tc, invstd.flatten(1), mean_up, var_up


def _bn_input_grads_pure(x4: torch.Tensor, h: torch.Tensor, grad_s: torch.Tensor, stats: tuple[torch.Tensor, ...],
                         channel_dim: int, charge: Charge, surrogate: Surrogate):
    """Backward: ``(grad_x, grad_y, grad_weight, grad_bias)``, ``grad_y`` being the gradient at the LIF's input
    (the residual's gradient); ``stats``: the forward's ``(mean, invstd)`` and the BN weight."""
    mean, invstd, weight = stats
    gy = _input_grads_pure(h, grad_s, *charge, *surrogate)
    dims = (1, 2) if channel_dim == 3 else (1, 3)
    shape = (x4.shape[0], 1, 1, -1) if channel_dim == 3 else (x4.shape[0], 1, -1, 1)
    xhat = (x4.float() - mean.view(shape)) * invstd.view(shape)
    n = x4.numel() // (x4.shape[0] * mean.shape[1])
    sum_gy = gy.sum(dims, keepdim=True)
    sum_gy_xhat = (gy * xhat).sum(dims, keepdim=True)
    w = weight.float().view(1, 1, 1, -1) if channel_dim == 3 else weight.float().view(1, 1, -1, 1)
    grad_x = (w * invstd.view(shape)) * (gy - sum_gy / n - xhat * (sum_gy_xhat / n))
    return grad_x.to(x4.dtype), gy, sum_gy_xhat.flatten(1).sum(0), sum_gy.flatten(1).sum(0)


@dataclass(frozen=True)
class PureKernel:
    """The compiler-friendly loops of :mod:`snnlth.snn.neuron` and the fused BatchNorm + LIF functions, run as they
    are (no compile): the reference the engine's compiled kernel is checked against."""

    name: str = "pure"
    flat: bool = True
    fuses: bool = True
    charges = staticmethod(_charges_pure)
    input_grads = staticmethod(_input_grads_pure)
    bn_charges = staticmethod(_bn_charges_pure)
    bn_input_grads = staticmethod(_bn_input_grads_pure)


PURE = PureKernel()


@dataclass(frozen=True)
class _Norm:
    """What the fused function needs of a BatchNorm besides its parameters: running statistics and constants."""

    running_mean: torch.Tensor
    running_var: torch.Tensor
    momentum: float
    eps: float


class _BNLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, bias, norm: _Norm, params: LIFParams, kernel):  # type: ignore[override]
        x4, channel_dim = _layout(x)
        r4 = _as_layout(residual, channel_dim) if residual is not None else None
        charge = (params.decay, params.gain, params.v_threshold)
        h, spikes, mean, invstd, mean_up, var_up = kernel.bn_charges(  # detached: one compile, not two
            x4.detach(), r4.detach() if r4 is not None else None, weight.detach(), bias.detach(),
            (norm.eps, norm.momentum), channel_dim, charge)
        keep = (1.0 - norm.momentum) ** x.shape[0]
        norm.running_mean.mul_(keep).add_(mean_up.to(norm.running_mean.dtype))
        n = x4.numel() // (x4.shape[0] * mean.shape[1])  # values per channel and step
        norm.running_var.mul_(keep).add_(var_up.to(norm.running_var.dtype), alpha=n / max(n - 1, 1))
        ctx.save_for_backward(x4, h, mean, invstd, weight)
        ctx.cfg = (channel_dim, charge, (params.grad_fn, params.alpha, params.detach_reset), kernel, x.shape,
                   residual is not None)
        return _restore(spikes, x.shape, channel_dim)

    @staticmethod
    def backward(ctx, grad_s):  # type: ignore[override]
        x4, h, mean, invstd, weight = ctx.saved_tensors
        channel_dim, charge, surrogate, kernel, shape, has_res = ctx.cfg
        g4 = _as_layout(grad_s, channel_dim)
        grad_x, gy, grad_w, grad_b = kernel.bn_input_grads(x4.detach(), h, g4, (mean, invstd, weight.detach()),
                                                           channel_dim, charge, surrogate)
        grad_r = _restore(gy, shape, channel_dim) if has_res else None
        return (_restore(grad_x, shape, channel_dim), grad_r, grad_w.to(weight.dtype), grad_b.to(weight.dtype),
                None, None, None)


def _as_layout(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``x: [T, B, C, H, W]`` in the 4-D view of :func:`_layout` with the given channel dim (copied if its strides
    do not allow a view)."""
    t, b, c, hh, ww = x.shape
    if channel_dim == 3:
        return x.permute(0, 1, 3, 4, 2).reshape(t, b, hh * ww, c)
    return x.reshape(t, b, c, hh * ww)


def _restore(y4: torch.Tensor, shape: torch.Size, channel_dim: int) -> torch.Tensor:
    """The inverse of :func:`_layout`: ``[T, B, C, H, W]`` with the strides of the input."""
    t, b, c, h, w = shape
    if channel_dim == 3:
        return y4.view(t, b, h, w, c).permute(0, 1, 4, 2, 3)
    return y4.view(shape)


def fused_ok(norm: nn.Module, lif: LIF, x_seq: torch.Tensor, residual: torch.Tensor | None) -> bool:
    """Whether :func:`bn_lif` computes what ``lif(norm(x_seq) + residual)`` would: training, a LIF kernel that fuses
    (the engine's compiled one), ``norm`` a per-step :class:`~snnlth.snn.layers.SeqBatchNorm2d` with affine
    parameters and running statistics at a fixed momentum (no global-batch statistics), a 5-D sequence with more
    than one value per channel."""
    return (getattr(lif.kernel, "fuses", False) and norm.training
            and type(norm) is SeqBatchNorm2d and norm.per_step and norm.batch_stats is None and norm.affine
            and norm.track_running_stats and norm.momentum is not None
            and norm.running_mean is not None and norm.num_batches_tracked is not None and x_seq.dim() == 5
            and x_seq[0].numel() > x_seq.shape[2]
            and (residual is None or residual.shape == x_seq.shape)
            and not norm._forward_hooks and not norm._forward_pre_hooks)  # hooks on the BN would not run


def bn_lif(norm: SeqBatchNorm2d, lif: LIF, x_seq: torch.Tensor, residual: torch.Tensor | None = None,
           kernel: LIFKernel | None = None) -> torch.Tensor:
    """``lif(norm(x_seq) + residual)`` fused (see the module's docstring; :func:`fused_ok` says when it applies).
    ``kernel``: a kernel that fuses (default: the LIF's; :data:`PURE` runs the functions uncompiled)."""
    with torch.autocast(x_seq.device.type, enabled=False):  # fp32 statistics and membrane, input dtype out
        stats = _Norm(norm.running_mean, norm.running_var, norm.momentum, norm.eps)
        out = _BNLIFFunction.apply(x_seq, residual, norm.weight, norm.bias, stats, lif.params, kernel or lif.kernel)
    norm.num_batches_tracked.add_(x_seq.shape[0])  # as T calls of nn.BatchNorm2d would
    return out


def fire(neuron: nn.Module, x_seq: torch.Tensor, norm: nn.Module | None = None,
         residual: torch.Tensor | None = None) -> torch.Tensor:
    """``neuron(norm(x_seq) + residual)`` as a model writes it: one fused operation where :func:`fused_ok` (snnlth's
    :class:`~snnlth.snn.neuron.LIF` with a kernel that fuses), else layer by layer (any other neuron, the ANN twin's
    ReLU included)."""
    if norm is not None and isinstance(neuron, LIF) and fused_ok(norm, neuron, x_seq, residual):
        return bn_lif(norm, neuron, x_seq, residual)
    if norm is not None:
        x_seq = seq_apply(norm, x_seq)
    return neuron(x_seq if residual is None else x_seq + residual)
