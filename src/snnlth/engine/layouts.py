"""The CPU layout of convolutions over sequences (fp32): channels-last on maps of at least
:data:`CPU_CHANNELS_LAST_MIN_SIDE` pixels a side, plain below, a "same" convolution's weight gradient on small maps
by per-tap matrix products, and a 1×1 map's convolution as a linear layer on its centre tap. The same numbers as the
plain convolutions, faster on CPU ([speed.md](../../docs/speed.md)). The engine hands :data:`CPU_LAYOUT` to the
models it trains on CPU (their ``conv_layout``); elsewhere models keep the plain one."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from snnlth.models.protocol import PLAIN_LAYOUT, ConvLayout

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


class CpuLayout:
    """The CPU policy as a model's ``conv_layout`` (see :class:`snnlth.models.protocol.ConvLayout`)."""

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return conv_layout(x)

    def seq(self, conv: nn.Conv2d, x_seq: torch.Tensor) -> torch.Tensor:
        return conv_seq(conv, x_seq)


CPU_LAYOUT = CpuLayout()


def set_conv_layout(model: nn.Module, device: torch.device) -> None:
    """Give every part of ``model`` that runs convolutions through a ``conv_layout`` the one for ``device``."""
    layout: ConvLayout = CPU_LAYOUT if device.type == "cpu" else PLAIN_LAYOUT
    for m in model.modules():
        if hasattr(m, "conv_layout"):
            m.conv_layout = layout
