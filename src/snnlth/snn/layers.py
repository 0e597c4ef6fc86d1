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


# CPU, fp32: oneDNN runs a 3×3 convolution on maps of at least this side faster in channels-last (its nhwc kernels
# read and write the activations as they are; in the plain layout each call reorders its input, output and gradients
# to a blocked layout and back, ~10 ms each at [160, 64, 28, 28]); on smaller maps the plain layout is faster.
CPU_CHANNELS_LAST_MIN_SIDE = 7
_POLICY_DTYPES = (torch.float32,)  # what the numbers above were measured in


def conv_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch ``x: [N, C, H, W]`` in the layout a convolution runs fastest in: on CPU in fp32, channels-last for
    maps of at least :data:`CPU_CHANNELS_LAST_MIN_SIDE` pixels a side and plain below; elsewhere (CUDA, autocast,
    bf16) as it is. A copy only when the layout changes; the convolution's output keeps its input's layout, and so
    do BatchNorm, the LIF neuron and pooling after it."""
    if not _policy_applies(x):
        return x
    n, c, h, w = x.shape
    if min(h, w) < CPU_CHANNELS_LAST_MIN_SIDE:
        return x.contiguous()
    if c == 1:  # both layouts at once: these strides make the convolution (and its output) channels-last
        return x.contiguous().as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


def _policy_applies(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in _POLICY_DTYPES and x.dim() == 4
            and not torch.is_autocast_enabled("cpu"))


def conv_seq(conv: nn.Conv2d, x_seq: torch.Tensor) -> torch.Tensor:
    """``seq_apply(conv, x_seq)`` for a ``Conv2d`` over ``x_seq: [T, B, C, H, W]``, in the input layout of
    :func:`conv_layout`. On a 1×1 map a convolution with an odd kernel and "same" zero padding sees data only at its
    centre tap: on CPU in fp32 it runs as a linear layer on the centre weights, the same result and gradients (the
    other taps' are zero either way) at a fraction of the work; not when the layer or every module has hooks (they
    expect a convolution call)."""
    t, b = x_seq.shape[:2]
    x = x_seq.flatten(0, 1)
    cpu = _policy_applies(x)
    if cpu and _centre_tap_only(conv, x):
        kh, kw = conv.kernel_size
        y = nn.functional.linear(x.flatten(1), conv.weight[:, :, kh // 2, kw // 2], conv.bias)
        return y.view(t, b, -1, 1, 1)
    x = conv_layout(x)
    if cpu and _small_map(conv, x) and torch.is_grad_enabled() and conv.weight.requires_grad:
        y = _SmallMapConv.apply(x, conv.weight, conv.bias, conv.padding)
    else:
        y = conv(x)
    return y.view(t, b, *y.shape[1:])


def _small_map(conv: nn.Module, x: torch.Tensor) -> bool:
    """A stride-1 "same" convolution on a map below :data:`CPU_CHANNELS_LAST_MIN_SIDE` (no hooks; see
    :class:`_SmallMapConv`)."""
    return (min(x.shape[2:]) < CPU_CHANNELS_LAST_MIN_SIDE and conv.stride == (1, 1)
            and _same_padding(conv) and not hooked(conv))


def _same_padding(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.dilation == (1, 1) and not isinstance(conv.padding, str)
            and all(k % 2 == 1 and p == k // 2 for k, p in zip(conv.kernel_size, conv.padding)))


def hooked(module: nn.Module) -> bool:
    """Whether a call of ``module`` runs hooks: its own forward or backward hooks, or global ones of every module."""
    from torch.nn.modules import module as hooks

    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or hooks._global_forward_hooks or hooks._global_forward_pre_hooks
                or hooks._global_backward_hooks or hooks._global_backward_pre_hooks)


class _SmallMapConv(torch.autograd.Function):
    """A "same" convolution on a small map (CPU): forward and input gradient by PyTorch (oneDNN), the weight
    gradient as one matrix product per kernel tap over the positions where that tap sees data. On a 3×3 map a
    3×3 kernel sees padding at 32 of its 81 (position, tap) pairs, which oneDNN's weight-gradient kernel computes
    anyway and slowly (512 channels, T·B = 160: 51 ms; the products: 27 ms, the same sums)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return nn.functional.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], list(ctx.padding), [1, 1],
                                                         False, [0, 0], 1, [True, False, False])[0]
        grad_w = _tap_weight_grad(x, grad, weight.shape) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def _tap_weight_grad(x: torch.Tensor, grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """dW of a stride-1 "same" convolution: for each tap, ``grad[rows]ᵀ · x[rows shifted]`` over the output
    positions whose shifted input lies inside the map (channels-last views: one row per sample and position)."""
    out_c, in_c, kh, kw = shape
    xh = x.permute(0, 2, 3, 1).contiguous()  # [N, H, W, C]
    gh = grad.permute(0, 2, 3, 1).contiguous()  # [N, H, W, O]
    h, w = xh.shape[1:3]
    dw = x.new_empty(kh, kw, out_c, in_c)
    for dy in range(kh):
        oy, iy = _tap_rows(dy - kh // 2, h)
        for dx in range(kw):
            ox, ix = _tap_rows(dx - kw // 2, w)
            torch.mm(gh[:, oy, ox].reshape(-1, out_c).t(), xh[:, iy, ix].reshape(-1, in_c), out=dw[dy, dx])
    return dw.permute(2, 3, 0, 1)


def _tap_rows(shift: int, size: int) -> tuple[slice, slice]:
    """Output positions of a tap offset by ``shift`` that see the map, and the input positions they see (none when
    the kernel reaches past the whole map)."""
    if abs(shift) >= size:
        return slice(0, 0), slice(0, 0)
    lo, hi = max(0, -shift), min(size, size - shift)
    return slice(lo, hi), slice(lo + shift, hi + shift)


def _centre_tap_only(conv: nn.Module, x: torch.Tensor) -> bool:
    return x.shape[2:] == (1, 1) and _same_padding(conv) and not hooked(conv)


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
        self.sync = False  # data-parallel: batch statistics over all ranks (set by the engine for --sync-bn)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return sync_batch_norm(self, x) if self.sync and self.training else super().forward(x)

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
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not bn.sync and bn.affine
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
                _rows_forward(_rows(x[t]), weight, bias, running_mean, running_var, momentum, eps, _rows(out[t]),
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


def _rows_forward(x: torch.Tensor, weight, bias, running_mean, running_var, momentum: float, eps: float,
                  out: torch.Tensor, mean_out: torch.Tensor, invstd_out: torch.Tensor) -> None:
    """Training BatchNorm of the rows ``x: [M, C]`` into ``out``: mean, then the variance as the mean of squared
    deviations (two passes, PyTorch's cascaded sums), ``out = x·scale + shift`` in one pass; saves the mean and
    1/std, and updates the running statistics (unbiased variance) as ``nn.BatchNorm2d`` does."""
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
