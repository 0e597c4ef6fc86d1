"""Per-step BatchNorm + residual + LIF fused (snnlth.snn.fused) against the layers it replaces."""

from __future__ import annotations

import copy

import pytest
import torch

from snnlth.engine.kernels import CompiledKernel
from snnlth.snn.fused import PURE, bn_lif, fire, fused_ok
from snnlth.snn.layers import SeqBatchNorm2d
from snnlth.snn.neuron import EAGER, LIF


def _inputs(channels_last: bool, residual: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 6, 5, 3, 7, generator=gen) * 2 + 0.5
    if channels_last:  # each step channels-last, as a conv in that format leaves it
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    r = torch.randn(x.shape, generator=gen) if residual else None
    return x.requires_grad_(), (r.requires_grad_() if r is not None else None)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_fused_equals_batchnorm_then_lif(channels_last, residual, detach_reset):
    torch.manual_seed(0)
    bn = SeqBatchNorm2d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.running_var.fill_(2.0)
    lif = LIF(detach_reset=detach_reset)
    bn2, lif2 = copy.deepcopy(bn), copy.deepcopy(lif)
    x, r = _inputs(channels_last, residual)
    x2 = x.detach().clone().requires_grad_()
    r2 = r.detach().clone().requires_grad_() if r is not None else None

    want = lif(bn(x) + r if r is not None else bn(x))
    got = bn_lif(bn2, lif2, x2, r2, kernel=PURE)
    assert got.shape == want.shape and got.stride() == x.stride()  # the input's layout comes back
    assert 0.05 < want.mean() < 0.9  # a test with spikes to get right
    torch.testing.assert_close(got, want)
    g = torch.randn(want.shape, generator=torch.Generator().manual_seed(5))
    want.backward(g)
    got.backward(g)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-5)
    if r is not None:
        torch.testing.assert_close(r2.grad, r.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn2.weight.grad, bn.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn2.bias.grad, bn.bias.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn2.running_mean, bn.running_mean)
    torch.testing.assert_close(bn2.running_var, bn.running_var)
    assert int(bn2.num_batches_tracked) == int(bn.num_batches_tracked) == 4


def test_fire_takes_the_fused_path_only_where_it_computes_the_same(monkeypatch):
    import snnlth.snn.fused as fused

    calls = []
    real = fused.bn_lif
    monkeypatch.setattr(fused, "bn_lif", lambda *a, **k: calls.append(1) or real(*a, **k))
    bn, lif = SeqBatchNorm2d(5), LIF()
    x, _ = _inputs(False, False)
    fire(lif, x, norm=bn)
    assert calls == []  # the eager kernel (the LIF's default): layer by layer
    lif.kernel = PURE
    want = LIF()(copy.deepcopy(bn)(x))
    got = fire(lif, x, norm=bn)
    assert calls == [1]
    torch.testing.assert_close(got, want)
    assert not fused_ok(bn.eval(), lif, x, None)  # evaluation: running statistics, layer by layer
    assert not fused_ok(SeqBatchNorm2d(5, per_step=False), lif, x, None)
    assert not fused_ok(bn.train(), lif, x[:, :1, :, :1, :1], None)  # one value per channel: the loop's error
    synced = SeqBatchNorm2d(5)
    synced.batch_stats = lambda x: None  # global-batch statistics (the engine's --sync-bn): not fused
    assert not fused_ok(synced, lif, x, None)
    lif.kernel = EAGER
    bn.eval()
    torch.testing.assert_close(fire(lif, x, norm=bn), lif(bn(x)))


@pytest.mark.parametrize("name,channels,side", [("convnet", 1, 28), ("vgg16", 3, 32), ("resnet19", 3, 32)])
def test_models_train_the_same_fused(monkeypatch, name, channels, side):
    """A training step of each model with the fused path (its functions uncompiled here) equals the layer-by-layer
    step: loss, every gradient, BatchNorm running statistics."""
    import snnlth.snn.fused as fused
    from snnlth.config import ModelConfig
    from snnlth.engine.evaluate import seq_loss
    from snnlth.engine.fastpath import set_lif_kernel
    from snnlth.models import create_model

    calls = []
    real = fused._BNLIFFunction.apply
    monkeypatch.setattr(fused._BNLIFFunction, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    plain = create_model(ModelConfig(model=name), channels, side, 10)
    fast = copy.deepcopy(plain)
    set_lif_kernel(fast, PURE)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, channels, side, side, generator=gen), torch.randint(0, 10, (3,), generator=gen)
    losses = [seq_loss(m(x, 2), y) for m in (plain, fast)]
    assert len(calls) == {"convnet": 2, "vgg16": 12, "resnet19": 16}[name]  # every BN+LIF pair after the first
    torch.testing.assert_close(losses[1], losses[0])
    for loss in losses:
        loss.backward()
    for (n, a), b in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=n)
    for (n, a), b in zip(plain.named_buffers(), fast.buffers()):
        torch.testing.assert_close(b, a, msg=n)


def test_bf16_input_keeps_fp32_statistics_and_membrane():
    """Under bf16 autocast the conv output is bf16; the fused operation normalises and charges in fp32, so its
    spikes are those of the fp32 layers on the same input, while BatchNorm2d in bf16 rounds before the threshold."""
    torch.manual_seed(0)
    bn = SeqBatchNorm2d(16)
    xb = (torch.randn(4, 16, 16, 8, 8) * 0.7 + 0.3).to(torch.bfloat16)
    want = LIF()(copy.deepcopy(bn)(xb.float()))
    got = bn_lif(copy.deepcopy(bn), LIF(), xb, kernel=PURE)
    rounded = LIF()(copy.deepcopy(bn)(xb)).float()
    assert got.dtype == torch.bfloat16
    fused_off = int((got.float() != want).sum())
    assert fused_off <= 2 and int((rounded != want).sum()) > 5 * max(fused_off, 1)


def test_a_failing_compile_falls_back_to_the_same_maths_once():
    compiled_fused = []

    def compile_fn(fn):
        if fn.__name__.startswith("_bn_"):
            compiled_fused.append(fn.__name__)

            def broken(*args):
                raise RuntimeError("no C++ compiler found")
            return broken
        return fn

    bn, lif = SeqBatchNorm2d(5), LIF()
    lif.kernel = kernel = CompiledKernel(compile_fn)
    bn_ref = copy.deepcopy(bn)
    x, _ = _inputs(False, False)
    with pytest.warns(RuntimeWarning, match="compiled LIF kernel failed .RuntimeError: no C.. compiler found"):
        got = fire(lif, x, norm=bn)
    torch.testing.assert_close(got, LIF()(bn_ref(x)))
    assert int(bn.num_batches_tracked) == 4 and compiled_fused == ["_bn_charges_pure"]  # counted once
    assert kernel.failed and not fused_ok(bn, lif, x, None)  # from now on layer by layer, no second warning
    torch.testing.assert_close(fire(lif, x, norm=bn), LIF()(bn_ref(x)))


def test_hooks_on_the_batchnorm_keep_it_a_layer():
    bn, lif = SeqBatchNorm2d(5), LIF()
    lif.kernel = PURE
    x, _ = _inputs(False, False)
    assert fused_ok(bn, lif, x, None)
    bn.register_forward_hook(lambda *a: None)
    assert not fused_ok(bn, lif, x, None)


def test_compiled_kernels_keep_many_variants():
    import torch._dynamo

    from snnlth.engine.kernels import allow_variants

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    allow_variants(64)
    assert getattr(config, name) >= 64
