"""The CPU layout policy of convolutions over sequences (snnlth.engine.layouts: conv_seq / conv_layout):
channels-last on large maps, plain on small ones, a linear layer on 1×1 maps; the same numbers as the plain
convolution, and the layout carried through BatchNorm, the LIF neuron, pooling and the direct-coding repeat."""

import pytest
import torch
from torch import nn

from snnlth.config import ModelConfig
from snnlth.engine import layouts
from snnlth.engine.layouts import conv_layout, conv_seq, set_conv_layout
from snnlth.models import create_model
from snnlth.models.protocol import default_parts
from snnlth.models.vgg import VGG
from snnlth.snn.layers import SeqBatchNorm2d, repeat_timesteps, seq_apply
from snnlth.snn.neuron import LIF

CL = torch.channels_last
CPU = torch.device("cpu")


def _steps_cl(x_seq: torch.Tensor) -> bool:
    return x_seq.flatten(0, 1).is_contiguous(memory_format=CL)


@pytest.mark.parametrize("side,channels_last", [(28, True), (7, True), (3, False)])
def test_conv_layout_picks_channels_last_on_large_maps_only(side, channels_last):
    x = torch.randn(2, 4, side, side)
    y = conv_layout(x)
    assert torch.equal(y, x)
    assert y.is_contiguous(memory_format=CL) == channels_last
    assert y.is_contiguous() == (not channels_last)
    assert conv_layout(x.contiguous(memory_format=CL)).is_contiguous() == (not channels_last)  # back to plain


def test_conv_layout_leaves_other_dtypes_alone_and_makes_one_channel_convolutions_channels_last():
    x = torch.randn(2, 4, 28, 28, dtype=torch.float64)
    assert conv_layout(x) is x
    one = conv_layout(torch.randn(2, 1, 28, 28))
    out = nn.Conv2d(1, 8, 3, padding=1)(one)
    assert out.is_contiguous(memory_format=CL) and not out.is_contiguous()


def _grads(conv: nn.Conv2d, x_seq: torch.Tensor, fn) -> tuple[torch.Tensor, ...]:
    conv.zero_grad()
    x = x_seq.clone().requires_grad_()
    y = fn(conv, x)
    y.backward(torch.linspace(-1, 1, y.numel()).view(y.shape))
    return y.detach(), x.grad, conv.weight.grad.clone(), *([conv.bias.grad.clone()] if conv.bias is not None else [])


@pytest.mark.parametrize("side,kernel,bias", [(28, 3, True), (3, 3, True), (4, 5, False), (6, 3, False), (1, 3, True),
                                            ((2, 5), (5, 3), True), ((2, 5), (7, 7), False), ((3, 1), (9, 1), True)])
def test_conv_seq_computes_what_the_convolution_does(side, kernel, bias, monkeypatch):
    """Output and gradients (input, weight, bias) equal the plain folded convolution's on every path: channels-last
    (28 px), the small-map weight gradient by taps (maps below 7 px, square or not, kernels wider than the map
    too), the centre tap as a linear layer (1 px; the other taps' weight gradients are zero)."""
    torch.manual_seed(0)
    h, w = (side, side) if isinstance(side, int) else side
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    conv = nn.Conv2d(6, 5, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
    x_seq = (torch.rand(3, 2, 6, h, w) < 0.3).float()
    taps = []
    real = layouts._tap_weight_grad
    monkeypatch.setattr(layouts, "_tap_weight_grad", lambda *a: taps.append(1) or real(*a))
    ours = _grads(conv, x_seq, conv_seq)
    assert bool(taps) == ((h, w) != (1, 1) and min(h, w) < layouts.CPU_CHANNELS_LAST_MIN_SIDE)
    ref = _grads(conv, x_seq, seq_apply)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if (h, w) == (1, 1):
        assert ours[2][:, :, 0].abs().sum() == 0  # only the centre tap sees data
        assert ours[2][:, :, 1, 1].abs().sum() > 0


def test_small_map_convolution_with_a_frozen_input_or_weight():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 3, padding=1)
    x_seq = torch.randn(2, 2, 4, 3, 3)
    conv_seq(conv, x_seq).sum().backward()  # input needs no gradient
    w_grad = conv.weight.grad.clone()
    conv.zero_grad()
    seq_apply(conv, x_seq).sum().backward()
    torch.testing.assert_close(w_grad, conv.weight.grad)
    conv.zero_grad(set_to_none=True)
    conv.weight.requires_grad_(False)
    x1, x2 = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
    conv_seq(conv, x1).square().sum().backward()  # frozen weight: the plain convolution
    seq_apply(conv, x2).square().sum().backward()
    assert conv.weight.grad is None
    torch.testing.assert_close(x1.grad, x2.grad)


def test_the_centre_tap_shortcut_runs_only_where_it_is_exact(monkeypatch):
    torch.manual_seed(0)
    calls = []
    real_linear = nn.functional.linear
    monkeypatch.setattr(nn.functional, "linear", lambda *a: calls.append(1) or real_linear(*a))
    x_seq = torch.randn(2, 3, 4, 1, 1)
    conv_seq(nn.Conv2d(4, 5, 3, padding=1), x_seq)
    assert calls == [1]
    for other in (nn.Conv2d(4, 5, 3, padding=2), nn.Conv2d(4, 5, 2, padding=1),
                  nn.Conv2d(4, 5, 3, padding=2, dilation=2), nn.Conv2d(4, 4, 3, padding=1, groups=2),
                  nn.Conv2d(4, 5, 3, padding=1, padding_mode="circular")):
        y = conv_seq(other, x_seq)
        assert torch.allclose(y, seq_apply(other, x_seq), atol=1e-6)
    hooked = nn.Conv2d(4, 5, 3, padding=1)
    seen = []
    hooked.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    conv_seq(hooked, x_seq)
    assert calls == [1] and seen == [torch.Size([6, 5, 1, 1])]  # a hooked layer is called as a convolution


def test_per_step_bn_keeps_channels_last_and_matches_the_loop():
    torch.manual_seed(0)
    seq, ref = SeqBatchNorm2d(4), nn.BatchNorm2d(4)
    with torch.no_grad():
        seq.weight.uniform_(0.5, 2)
        seq.bias.uniform_(-1, 1)
    ref.load_state_dict(seq.state_dict())
    x_seq = (torch.randn(3, 5, 4, 8, 8) * torch.arange(1, 4).view(3, 1, 1, 1, 1))
    x1 = x_seq.flatten(0, 1).contiguous(memory_format=CL).view(x_seq.shape).requires_grad_()
    x2 = x_seq.clone().requires_grad_()
    out = seq(x1)
    assert _steps_cl(out)
    grad = torch.randn(x_seq.shape)  # a plain gradient into a channels-last layer
    out.backward(grad)
    expected = torch.stack([ref(x) for x in x2])
    expected.backward(grad)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seq.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(seq.running_var, ref.running_var)


@pytest.mark.parametrize("shape,per_step", [((3, 16, 32, 14, 14), True), ((3, 16, 32, 14, 14), False),
                                            ((16, 32, 14, 14), True)])
def test_channels_last_bn_is_as_exact_as_the_plain_kernel(shape, per_step):
    """Per-step, pooled and 4-D training BatchNorm on channels-last input, against float64: PyTorch's own
    channels-last CPU kernel sums naively in fp32 (weight gradient ~1e-4 off here); ours stays near 1e-6."""
    torch.manual_seed(0)
    x, g, w = torch.randn(*shape) * 3 + 5, torch.randn(*shape) + 0.5, torch.rand(32) + 0.5

    def run(dtype, channels_last):
        bn = SeqBatchNorm2d(32, per_step=per_step).to(dtype)
        with torch.no_grad():
            bn.weight.copy_(w)
        xx = x.to(dtype)
        if channels_last:
            xx = xx.reshape(-1, *shape[-3:]).contiguous(memory_format=CL).view(shape)
        xx = xx.detach().requires_grad_()
        y = bn(xx)
        y.backward(g.to(dtype))
        steps = y.reshape(-1, *shape[-3:])
        assert steps.is_contiguous(memory_format=CL) == channels_last
        return [t.detach().double() for t in (y, xx.grad, bn.weight.grad, bn.bias.grad, bn.running_mean,
                                                 bn.running_var)] + [int(bn.num_batches_tracked)]

    ref, ours = run(torch.float64, False), run(torch.float32, True)
    assert ours[-1] == ref[-1] == (shape[0] if per_step and len(shape) == 5 else 1)
    for name, a, b in zip(("out", "grad_x", "grad_w", "grad_b", "running_mean", "running_var"), ours, ref):
        assert (a - b).abs().max() / b.abs().max() < 2e-5, name


def test_lif_and_repeat_keep_the_layout_of_their_input():
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=CL).requires_grad_()
    x_seq = repeat_timesteps(x, 5)
    spikes = LIF()(x_seq * 4)
    assert _steps_cl(spikes)
    spikes.backward(torch.ones_like(spikes))
    assert x.grad.is_contiguous(memory_format=CL) and not x.grad.is_contiguous()
    plain = x.detach().contiguous().requires_grad_()
    LIF()(repeat_timesteps(plain, 5) * 4).backward(torch.ones(spikes.shape))
    torch.testing.assert_close(x.grad, plain.grad)


def test_vgg_on_28px_trains_the_same_with_and_without_the_layout_policy(monkeypatch):
    """A small VGG over 28 → 14 → 7 → 3 → 1 px (all three paths): loss and every gradient as with plain
    convolutions everywhere. In float64 (the policy let in for it), so that no rounding difference can flip a spike
    and move the loss of a deep SNN; the fp32 BatchNorm kernel is checked on its own above."""
    cfg = (8, "M", 8, "M", 16, "M", 16, "M", 16)
    monkeypatch.setattr(layouts, "_POLICY_DTYPES", (torch.float64,))
    seen = []

    def run(policy):
        torch.manual_seed(0)
        model = VGG(1, 28, 10, default_parts(), cfg=cfg).double()
        if policy:
            set_conv_layout(model, CPU)
        model.features[1][0].register_forward_pre_hook(lambda m, inp: seen.append(_cl(inp[0])))
        x = torch.randn(6, 1, 28, 28, dtype=torch.float64) * 3
        loss = model(x, 3).logsumexp(-1).mean()
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    loss, grads = run(True)
    ref_loss, ref_grads = run(False)
    assert seen == [True, False]  # the policy ran, then it did not
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("features.4"))  # gradients reach the end
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("name", ["convnet", "resnet19", "vgg"])
def test_models_in_fp32_train_alike_with_and_without_the_layout_policy(name):
    """The fp32 path end to end (channels-last per-step BatchNorm, ResNet's shortcut and its stage changes of
    layout, VGG's 1×1 maps): loss and every gradient as with plain convolutions, up to the odd spike that float
    rounding may flip on another CPU (a flipped spike moves a gradient by far less than the 5 % allowed)."""
    def run(policy):
        torch.manual_seed(0)
        if name == "vgg":  # VGG16 itself is silent at init on random input; this one fires through 28 → 1 px
            model = VGG(1, 28, 10, default_parts(), cfg=(8, "M", 8, "M", 16, "M", 16, "M", 16))
        else:
            model = create_model(ModelConfig(model=name), 1, 28, 10)
        if policy:
            set_conv_layout(model, CPU)
        loss = model(torch.randn(8 if name == "convnet" else 2, 1, 28, 28) * 3, 3).logsumexp(-1).mean()
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    loss, grads = run(True)
    ref_loss, ref_grads = run(False)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-2, atol=0)
    assert sum(int(g.abs().sum() > 0) for g in grads.values()) > len(grads) // 2
    for n, g in grads.items():
        assert (g - ref_grads[n]).norm() <= 0.05 * ref_grads[n].norm() + 1e-6, n  # + conv biases before BN: ~0


def test_per_step_bn_on_sequences_that_are_not_channels_last_steps():
    """One channel (both layouts at once) and T, B swapped in memory: the plain kernels, the loop's numbers."""
    torch.manual_seed(0)
    seq, ref = SeqBatchNorm2d(1), nn.BatchNorm2d(1)
    base = torch.randn(4, 3, 1, 5, 5)
    for x_seq in (base.transpose(0, 1), base.transpose(0, 1).contiguous(), base.transpose(0, 1).transpose(3, 4)):
        x1, x2 = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
        x1.retain_grad()
        out = seq(x1)
        expected = torch.stack([ref(x) for x in x2])
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        out.backward(torch.ones_like(out).cumsum(1))
        expected.backward(torch.ones_like(out).cumsum(1))
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_repeat_timesteps_is_a_plain_view_without_grad_and_twice_differentiable():
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=CL)
    with torch.no_grad():
        assert repeat_timesteps(x.requires_grad_(), 4).grad_fn is None
    y = repeat_timesteps(x, 4)
    assert y.stride(0) == 0
    (g,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)  # dL/dx = 2·T·x
    torch.testing.assert_close(g, 8 * x)
    (gg,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(gg, torch.full_like(x, 8.0))


def test_vgg16_28px_runs_channels_last_where_the_maps_are_large():
    model = create_model(ModelConfig(model="vgg16"), 1, 28, 10)
    set_conv_layout(model, CPU)
    seen = {}
    for i, conv in enumerate(model.features):
        conv[0].register_forward_pre_hook(lambda m, inp, i=i: seen.update({i: (inp[0].shape[-1], _cl(inp[0]))}))
    model(torch.randn(2, 1, 28, 28), 2).sum().backward()
    assert seen[1] == (28, True) and seen[3] == (14, True) and seen[6] == (7, True)
    assert seen[7] == (3, False) and seen[10] == (1, False)


def _cl(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


def test_models_run_plain_convolutions_until_the_engine_sets_the_cpu_policy():
    model = create_model(ModelConfig(model="convnet"), 1, 28, 10)
    seen = []
    model.blocks[1][0].register_forward_pre_hook(lambda m, inp: seen.append(_cl(inp[0])))
    model(torch.randn(2, 1, 28, 28), 2)
    set_conv_layout(model, CPU)
    model(torch.randn(2, 1, 28, 28), 2)
    set_conv_layout(model, torch.device("cuda"))  # no policy off the CPU (nothing runs here: a setting only)
    model(torch.randn(2, 1, 28, 28), 2)
    assert seen == [False, True, False]
