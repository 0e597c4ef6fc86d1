"""Layers over ``[T, B, ...]`` sequences: stateless layers fold time into the batch; BatchNorm over time is per step
(the paper's code) or pooled over T·B."""

from __future__ import annotations

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
    """Direct input coding: feed the same static current ``x: [B, ...]`` at every step -> ``[T, B, ...]`` (a view)."""
    return x.unsqueeze(0).expand(timesteps, *x.shape)


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
        self.sync = False  # data-parallel: batch statistics over all ranks (set by the engine for --sync-bn)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return sync_batch_norm(self, x) if self.sync and self.training else super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self._norm(x)
        if self.per_step and self.training:
            if _one_output_ok(self, x):
                self.num_batches_tracked.add_(x.shape[0])  # as T calls of nn.BatchNorm2d would
                return _PerStepBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                               self.momentum, self.eps)
            return torch.stack([self._norm(x_t) for x_t in x])
        return self._norm(x.flatten(0, 1)).view_as(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, per_step={self.per_step}"


def _one_output_ok(bn: SeqBatchNorm2d, x: torch.Tensor) -> bool:
    """Whether :class:`_PerStepBatchNorm` computes exactly what the per-step loop would: plain fp32 BatchNorm on
    CPU (affine, running statistics with a fixed momentum, no autocast, no global-batch statistics)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not bn.sync and bn.affine
            and bn.track_running_stats and bn.momentum is not None and bn.num_batches_tracked is not None
            and bn.running_mean is not None and x[0].numel() > x.shape[2]  # > 1 value per channel, or the loop's error
            and not torch.is_autocast_enabled("cpu"))


class _PerStepBatchNorm(torch.autograd.Function):
    """Per-step training BatchNorm of ``x: [T, B, C, H, W]``: PyTorch's own kernels step by step, each writing into
    its slice of one output (and, backward, of one input gradient), so the sequence is never copied into a stack
    (on CPU that copy is ~15 % of the layer's forward and backward). Running statistics are updated once per step,
    as the loop over ``nn.BatchNorm2d`` does."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):  # type: ignore[override]
        x = x.contiguous()
        out = torch.empty_like(x)
        means = x.new_empty(x.shape[0], x.shape[2])
        invstds = torch.empty_like(means)
        for t in range(x.shape[0]):
            torch.ops.aten.native_batch_norm.out(x[t], weight, bias, running_mean, running_var, True, momentum, eps,
                                                 out=out[t], save_mean=means[t], save_invstd=invstds[t])
        ctx.save_for_backward(x, weight, means, invstds)
        ctx.eps = eps
        return out

    @staticmethod
    @once_differentiable  # PyTorch's BN backward kernel: no second derivative (a clear error if one is asked for)
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, means, invstds = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x)
        grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(weight)
        step_w, step_b = torch.empty_like(weight), torch.empty_like(weight)
        for t in range(x.shape[0]):
            torch.ops.aten.native_batch_norm_backward.out(
                grad_out[t], x[t], weight, None, None, means[t], invstds[t], True, ctx.eps, [True, True, True],
                out0=grad_x[t], out1=step_w, out2=step_b)
            grad_w += step_w
            grad_b += step_b
        return grad_x, grad_w, grad_b, None, None, None, None


def sync_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm of ``x: [N, C, H, W]`` with the statistics of the whole global batch: per-channel sums
    of x and x² and the count, summed over all ranks (a differentiable all-reduce, so gradients flow through the
    global statistics as in one process), then the running statistics updated as ``nn.BatchNorm2d`` does. Works on
    CPU (gloo) and GPU (nccl), unlike ``nn.SyncBatchNorm`` (GPU only)."""
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    xf = x.float()
    local_count = torch.full((1,), x.numel() / c, device=x.device, dtype=torch.float32)
    sums = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), local_count]))  # one collective
    count = sums[2 * c:].detach()
    mean = sums[:c] / count
    var = (sums[c:2 * c] / count - mean * mean).clamp_min(0.0)
    if bn.track_running_stats:
        with torch.no_grad():
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked + 1)
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp_min(1.0), alpha=m)
            bn.num_batches_tracked.add_(1)
    shape = (1, c, 1, 1)
    y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.to(x.dtype)


def set_sync_bn(model: nn.Module, on: bool) -> int:
    """Switch the global-batch statistics of every :class:`SeqBatchNorm2d` of ``model``; returns how many there are.
    Other BatchNorm layers (a user's own network) cannot be switched: a :class:`ValueError` names the first."""
    other = next((n for n, m in model.named_modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, SeqBatchNorm2d)), None)
    if on and other is not None:
        raise ValueError(f"--sync-bn works with snnlth's own BatchNorm layers; {other} is a "
                         f"{type(model.get_submodule(other)).__name__}: drop --sync-bn for this network")
    found = [m for m in model.modules() if isinstance(m, SeqBatchNorm2d)]
    for m in found:
        m.sync = on
    return len(found)
