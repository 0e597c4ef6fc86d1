"""BatchNorm with the statistics of the whole global batch of a data-parallel run (``--sync-bn``), on CPU (gloo) and
GPU (nccl), plugged into snnlth's :class:`~snnlth.snn.layers.SeqBatchNorm2d` layers."""

from __future__ import annotations

import torch
from torch import nn

from snnlth.snn.layers import SeqBatchNorm2d


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
    """Switch the global-batch statistics (--sync-bn) of every :class:`SeqBatchNorm2d` of ``model``; returns how many
    there are. Other BatchNorm layers (a user's own network) cannot be switched: a :class:`ValueError` names the
    first."""
    other = next((n for n, m in model.named_modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, SeqBatchNorm2d)), None)
    if on and other is not None:
        raise ValueError(f"--sync-bn works with snnlth's own BatchNorm layers; {other} is a "
                         f"{type(model.get_submodule(other)).__name__}: drop --sync-bn for this network")
    found = [m for m in model.modules() if isinstance(m, SeqBatchNorm2d)]
    for m in found:
        m.batch_stats = sync_batch_norm if on else None
    return len(found)
