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
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from snnlth.snn.neuron import _charges_pure, _input_grads_pure, allow_variants
from snnlth.snn.surrogate import SURROGATES


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``x: [T, B, C, H, W]`` as a 4-D view ``[T, B, C, HW]`` (channel dim 2) or, channels-last, ``[T, B, HW, C]``
    (channel dim 3); any other layout is copied to the first."""
    channel_dim = 3 if x[0].is_contiguous(memory_format=torch.channels_last) and not x[0].is_contiguous() else 2
    return _as_layout(x, channel_dim), channel_dim


def _bn_charges_pure(x4: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                     eps: float, momentum: float, channel_dim: int, decay: float, gain: float, v_threshold: float):
    """Forward: per-step statistics, normalise (+ residual), LIF charges and spikes over ``x4`` (see
    :func:`_layout`). Returns ``(h, spikes, mean [T, C], invstd [T, C], mean_update [C], var_update [C])``, the
    updates being ``sum_t m (1-m)^(T-1-t) stat_t`` (the biased variance: shapes stay symbolic for the compiler)."""
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


def _bn_input_grads_pure(x4: torch.Tensor, h: torch.Tensor, grad_s: torch.Tensor, mean: torch.Tensor,
                         invstd: torch.Tensor, weight: torch.Tensor, channel_dim: int, decay: float, gain: float,
                         v_threshold: float, grad_fn: Callable, alpha: float, detach_reset: bool):
    """Backward: ``(grad_x, grad_y, grad_weight, grad_bias)``, ``grad_y`` being the gradient at the LIF's input
    (the residual's gradient)."""
    gy = _input_grads_pure(h, grad_s, decay, gain, v_threshold, grad_fn, alpha, detach_reset)
    dims = (1, 2) if channel_dim == 3 else (1, 3)
    shape = (x4.shape[0], 1, 1, -1) if channel_dim == 3 else (x4.shape[0], 1, -1, 1)
    xhat = (x4.float() - mean.view(shape)) * invstd.view(shape)
    n = x4.numel() // (x4.shape[0] * mean.shape[1])
    sum_gy = gy.sum(dims, keepdim=True)
    sum_gy_xhat = (gy * xhat).sum(dims, keepdim=True)
    w = weight.float().view(1, 1, 1, -1) if channel_dim == 3 else weight.float().view(1, 1, -1, 1)
    grad_x = (w * invstd.view(shape)) * (gy - sum_gy / n - xhat * (sum_gy_xhat / n))
    return grad_x.to(x4.dtype), gy, sum_gy_xhat.flatten(1).sum(0), sum_gy.flatten(1).sum(0)


class _FusedKernels:
    """The two functions, plain (``eager``: tests, CPU) or ``torch.compile``d on first use (``compiled``)."""

    def __init__(self) -> None:
        self.compiled: tuple[Callable, Callable] | None = None

    def get(self, kernel: str) -> tuple[Callable, Callable]:
        if kernel != "compiled":
            return _bn_charges_pure, _bn_input_grads_pure
        if self.compiled is None:
            allow_variants()
            self.compiled = (torch.compile(_bn_charges_pure, dynamic=True),
                             torch.compile(_bn_input_grads_pure, dynamic=True))
        return self.compiled

    def run(self, kernel: str, which: int, *args):
        """The kernel's function ``which`` (0 forward, 1 backward); should compiling fail, the compiled kernels are
        given up for the process with one warning (:meth:`snnlth.snn.neuron._Kernels.fail`: from the next layer on
        BatchNorm and LIF run layer by layer) and this call runs the same function uncompiled."""
        from snnlth.snn import neuron

        try:
            return self.get(kernel)[which](*args)
        except Exception as exc:  # noqa: BLE001 - any compile failure falls back to the same maths
            if kernel != "compiled" or isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            if not neuron._KERNELS.failed:
                neuron._KERNELS.fail(exc)
            return (_bn_charges_pure, _bn_input_grads_pure)[which](*args)


_FUSED = _FusedKernels()


class _BNLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, bias, running_mean, running_var, momentum: float, eps: float, tau: float,
                v_threshold: float, grad_fn: Callable, alpha: float, detach_reset: bool,
                kernel: str):  # type: ignore[override]
        x4, channel_dim = _layout(x)
        r4 = _as_layout(residual, channel_dim) if residual is not None else None
        decay, gain = 1.0 - 1.0 / tau, 1.0 / tau
        h, spikes, mean, invstd, mean_up, var_up = _FUSED.run(kernel, 0,  # detached: one compile, not two
            x4.detach(), r4.detach() if r4 is not None else None, weight.detach(), bias.detach(), eps, momentum,
            channel_dim, decay, gain, v_threshold)
        keep = (1.0 - momentum) ** x.shape[0]
        running_mean.mul_(keep).add_(mean_up.to(running_mean.dtype))
        n = x4.numel() // (x4.shape[0] * mean.shape[1])  # values per channel and step
        running_var.mul_(keep).add_(var_up.to(running_var.dtype), alpha=n / max(n - 1, 1))
        ctx.save_for_backward(x4, h, mean, invstd, weight)
        ctx.cfg = (channel_dim, decay, gain, v_threshold, grad_fn, alpha, detach_reset, kernel, x.shape,
                   residual is not None)
        return _restore(spikes, x.shape, channel_dim)

    @staticmethod
    def backward(ctx, grad_s):  # type: ignore[override]
        x4, h, mean, invstd, weight = ctx.saved_tensors
        channel_dim, decay, gain, v_threshold, grad_fn, alpha, detach_reset, kernel, shape, has_res = ctx.cfg
        g4 = _as_layout(grad_s, channel_dim)
        grad_x, gy, grad_w, grad_b = _FUSED.run(kernel, 1, x4.detach(), h, g4, mean, invstd, weight.detach(),
                                                channel_dim, decay, gain, v_threshold, grad_fn, alpha, detach_reset)
        grad_r = _restore(gy, shape, channel_dim) if has_res else None
        return (_restore(grad_x, shape, channel_dim), grad_r, grad_w.to(weight.dtype), grad_b.to(weight.dtype),
                None, None, None, None, None, None, None, None, None, None)


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


def fused_ok(norm, lif, x_seq: torch.Tensor, residual: torch.Tensor | None) -> bool:
    """Whether :func:`bn_lif` computes what ``lif(norm(x_seq) + residual)`` would: training, the compiled LIF kernel,
    ``norm`` a per-step :class:`~snnlth.snn.layers.SeqBatchNorm2d` with affine parameters and running statistics at
    a fixed momentum (no global-batch statistics), a 5-D sequence with more than one value per channel."""
    from snnlth.snn import neuron
    from snnlth.snn.layers import SeqBatchNorm2d

    return (lif.kernel == "compiled" and not neuron._KERNELS.failed and norm.training
            and type(norm) is SeqBatchNorm2d and norm.per_step and not norm.sync and norm.affine
            and norm.track_running_stats and norm.momentum is not None
            and norm.running_mean is not None and norm.num_batches_tracked is not None and x_seq.dim() == 5
            and x_seq[0].numel() > x_seq.shape[2]
            and (residual is None or residual.shape == x_seq.shape)
            and not norm._forward_hooks and not norm._forward_pre_hooks)  # hooks on the BN would not run


def bn_lif(norm, lif, x_seq: torch.Tensor, residual: torch.Tensor | None = None, kernel: str | None = None
           ) -> torch.Tensor:
    """``lif(norm(x_seq) + residual)`` fused (see the module's docstring; :func:`fused_ok` says when it applies).
    ``kernel``: ``compiled`` (default: the LIF's) or ``eager`` (the same functions uncompiled)."""
    with torch.autocast(x_seq.device.type, enabled=False):  # fp32 statistics and membrane, input dtype out
        out = _BNLIFFunction.apply(x_seq, residual, norm.weight, norm.bias, norm.running_mean, norm.running_var,
                                   norm.momentum, norm.eps, lif.tau, lif.v_threshold, SURROGATES.get(lif.surrogate),
                                   lif.alpha, lif.detach_reset, kernel or lif.kernel)
    norm.num_batches_tracked.add_(x_seq.shape[0])  # as T calls of nn.BatchNorm2d would
    return out


def fire(neuron, x_seq: torch.Tensor, norm=None, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``neuron(norm(x_seq) + residual)`` as a model writes it: snnlth's :class:`~snnlth.snn.neuron.LIF` takes
    ``norm`` and ``residual`` itself (fused where :func:`fused_ok`), any other neuron (the ANN twin's ReLU) gets
    the layers applied first."""
    from snnlth.snn.layers import seq_apply
    from snnlth.snn.neuron import LIF

    if isinstance(neuron, LIF):
        return neuron(x_seq, norm=norm, residual=residual)
    if norm is not None:
        x_seq = seq_apply(norm, x_seq)
    return neuron(x_seq if residual is None else x_seq + residual)
