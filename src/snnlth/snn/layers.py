"""Layers over ``[T, B, ...]`` sequences: stateless layers fold time into the batch; BatchNorm over time is per step
(the paper's code) or pooled over T·B. Layouts are kept: a channels-last sequence stays channels-last."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def seq_apply(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply ``module`` to a sequence ``x_seq: [T, B, ...]``.

    A stateless layer runs on all timesteps at once (``[T·B, ...]``); a module marked ``multistep`` (LIF neurons,
    :class:`SeqBatchNorm2d`) takes the sequence itself; an ``nn.Sequential`` is applied child by child.
    """
    if getattr(module, "multistep", False):
        return module(x_seq)
    if isinstance(module, nn.Sequential):
        for child in module:
            x_seq = seq_apply(child, x_seq)
        return x_seq
    t, b = x_seq.shape[:2]
    y = module(x_seq.flatten(0, 1))
    return y.view(t, b, *y.shape[1:])


def repeat_timesteps(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Direct input coding: feed the same static current ``x: [B, ...]`` at every step -> ``[T, B, ...]`` (a view).
    Its gradient, the sum over T, comes back in the layout of ``x`` (autograd's own sum is plain row-major, which a
    channels-last BatchNorm before it then runs ~10× slower on CPU)."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    return _Repeat.apply(x, timesteps)


class _Repeat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, timesteps: int) -> torch.Tensor:  # type: ignore[override]
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        ctx.like = (x.shape, x.stride() if dense else None, x.device)
        return x.unsqueeze(0).expand(timesteps, *x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        shape, stride, device = ctx.like
        if torch.is_grad_enabled():  # a double backward (create_graph=True) records this op: no out=
            return grad.sum(0), None
        out = torch.empty(shape, dtype=grad.dtype, device=device) if stride is None else torch.empty_strided(
            shape, stride, dtype=grad.dtype, device=device)
        return torch.sum(grad, 0, out=out), None


class SeqBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d of a sequence ``[T, B, C, H, W]`` (a plain ``[B, C, H, W]`` batch works as usual).

    ``per_step=True`` (the paper's code, which applies one BN layer at every timestep): in training each timestep
    is normalised with its own batch statistics, and the running statistics are updated once per timestep, T times
    per batch. ``per_step=False``: statistics pooled over all T·B samples, one running update per batch. In eval
    mode both use the running statistics. Parameter and buffer names are those of ``nn.BatchNorm2d``.
    """

    multistep = True

    def __init__(self, num_features: int, per_step: bool = True) -> None:
        super().__init__(num_features)
        self.per_step = per_step
        # training BatchNorm of one [N, C, H, W] batch with statistics from elsewhere: ``batch_stats(self, x)``
        # (the engine's global-batch statistics of a data-parallel run, --sync-bn); None: this batch's own
        self.batch_stats: Callable[[nn.BatchNorm2d, torch.Tensor], torch.Tensor] | None = None

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.batch_stats(self, x) if self.batch_stats is not None and self.training else super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and (x.dim() == 4 or not self.per_step):
            # statistics over the whole batch: one "step" of the per-step kernel, which is exact in channels-last
            # (PyTorch's channels-last BatchNorm on CPU sums naively in fp32: ~20x the rounding error)
            whole = (x if x.dim() == 4 else x.flatten(0, 1)).unsqueeze(0)
            if _steps_channels_last(whole) and _one_output_ok(self, whole):
                return self._per_step(whole).view_as(x)
        if x.dim() == 4:
            return self._norm(x)
        if self.per_step and self.training:
            if _one_output_ok(self, x):
                return self._per_step(x)
            return torch.stack([self._norm(x_t) for x_t in x])
        return self._norm(x.flatten(0, 1)).view_as(x)

    def _per_step(self, x: torch.Tensor) -> torch.Tensor:
        self.num_batches_tracked.add_(x.shape[0])  # as T calls of nn.BatchNorm2d would
        return _PerStepBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                       self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, per_step={self.per_step}"


def _one_output_ok(bn: SeqBatchNorm2d, x: torch.Tensor) -> bool:
    """Whether :class:`_PerStepBatchNorm` computes exactly what the per-step loop would: plain fp32 BatchNorm on
    CPU (affine, running statistics with a fixed momentum, no autocast, no global-batch statistics)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and bn.batch_stats is None and bn.affine
            and bn.track_running_stats and bn.momentum is not None and bn.num_batches_tracked is not None
            and bn.running_mean is not None and x[0].numel() > x.shape[2]  # > 1 value per channel, or the loop's error
            and not torch.is_autocast_enabled("cpu"))


class _PerStepBatchNorm(torch.autograd.Function):
    """Per-step training BatchNorm of ``x: [T, B, C, H, W]``, each step written into its slice of one output (and,
    backward, of one input gradient), so the sequence is never copied into a stack (on CPU that copy is ~15 % of
    the layer's forward and backward). Running statistics are updated once per step, as the loop over
    ``nn.BatchNorm2d`` does. Plain steps run PyTorch's own kernels; channels-last steps run :func:`_rows_forward`
    and :func:`_rows_backward`, whose sums are as exact as the plain kernels' (PyTorch's channels-last ones are not)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):  # type: ignore[override]
        x = _step_dense(x)
        out = torch.empty_like(x)
        means = x.new_empty(x.shape[0], x.shape[2])
        invstds = torch.empty_like(means)
        rows = _steps_channels_last(x)
        for t in range(x.shape[0]):
            if rows:
                _rows_forward(_rows(x[t]), (weight, bias, running_mean, running_var, momentum, eps), _rows(out[t]),
                              means[t], invstds[t])
                continue
            torch.ops.aten.native_batch_norm.out(x[t], weight, bias, running_mean, running_var, True, momentum, eps,
                                                 out=out[t], save_mean=means[t], save_invstd=invstds[t])
        ctx.save_for_backward(x, weight, means, invstds)
        ctx.eps = eps
        return out

    @staticmethod
    @once_differentiable  # PyTorch's BN backward kernel: no second derivative (a clear error if one is asked for)
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, means, invstds = ctx.saved_tensors
        grad_out = _like(grad_out, x)
        grad_x = torch.empty_like(x)
        grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(weight)
        step_w, step_b = torch.empty_like(weight), torch.empty_like(weight)
        rows = _steps_channels_last(x)
        for t in range(x.shape[0]):
            if rows:
                _rows_backward(_rows(grad_out[t]), _rows(x[t]), weight, means[t], invstds[t], _rows(grad_x[t]),
                               grad_w, grad_b)
                continue
            torch.ops.aten.native_batch_norm_backward.out(
                grad_out[t], x[t], weight, None, None, means[t], invstds[t], True, ctx.eps, [True, True, True],
                out0=grad_x[t], out1=step_w, out2=step_b)
            grad_w += step_w
            grad_b += step_b
        return grad_x, grad_w, grad_b, None, None, None, None


def _rows(x: torch.Tensor) -> torch.Tensor:
    """A channels-last batch ``[N, C, H, W]`` as the ``[N·H·W, C]`` matrix it is in memory (a view)."""
    return x.permute(0, 2, 3, 1).view(-1, x.shape[1])  # a view or an error, never a copy that writes would miss


def _rows_forward(x: torch.Tensor, bn: tuple, out: torch.Tensor, mean_out: torch.Tensor,
                  invstd_out: torch.Tensor) -> None:
    """Training BatchNorm of the rows ``x: [M, C]`` into ``out``: mean, then the variance as the mean of squared
    deviations (two passes, PyTorch's cascaded sums), ``out = x·scale + shift`` in one pass; saves the mean and
    1/std, and updates the running statistics (unbiased variance) as ``nn.BatchNorm2d`` does. ``bn``: ``(weight,
    bias, running_mean, running_var, momentum, eps)``."""
    weight, bias, running_mean, running_var, momentum, eps = bn
    n = x.shape[0]
    mean = torch.sum(x, 0, out=mean_out).div_(n)
    deviation = torch.sub(x, mean, out=out)  # out as scratch
    var = deviation.mul_(deviation).sum(0).div_(n)
    invstd = torch.add(var, eps, out=invstd_out).rsqrt_()
    scale = weight * invstd
    torch.addcmul(bias - mean * scale, x, scale, out=out)
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(var, alpha=momentum * n / (n - 1))


def _rows_backward(grad: torch.Tensor, x: torch.Tensor, weight, mean, invstd, grad_x: torch.Tensor,
                   grad_w: torch.Tensor, grad_b: torch.Tensor) -> None:
    """The gradients of :func:`_rows_forward` (``grad_x`` written, ``grad_w``/``grad_b`` accumulated):
    ``dx = w/σ · (g − mean(g) − x̂·mean(g·x̂))`` with ``x̂ = (x − μ)/σ``."""
    n = x.shape[0]
    xhat = torch.addcmul(-mean * invstd, x, invstd, out=grad_x)  # grad_x as scratch
    sum_g = grad.sum(0)
    sum_gx = (grad * xhat).sum(0)
    grad_w += sum_gx
    grad_b += sum_g
    k = weight * invstd
    xhat.mul_(k * sum_gx / -n).add_(k * sum_g / -n).addcmul_(grad, k)


def _steps_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x: [T, B, C, H, W]`` is T channels-last steps one after the other in memory (not also plain)."""
    return (x.dim() == 5 and x.stride(0) == x.shape[1] * x.stride(1) and not x[0].is_contiguous()
            and x[0].is_contiguous(memory_format=torch.channels_last))


def _step_dense(x: torch.Tensor) -> torch.Tensor:
    """``x: [T, B, C, H, W]`` as is when it is dense in the plain or the channels-last layout of its steps, else a
    plain copy."""
    return x if x.is_contiguous() or _steps_channels_last(x) else x.contiguous()


def _like(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``g`` in the layout of ``x`` (plain, or channels-last steps)."""
    if not _steps_channels_last(x):
        return g.contiguous()
    if _steps_channels_last(g):
        return g
    return g.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(g.shape)
