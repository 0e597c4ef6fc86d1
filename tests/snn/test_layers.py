import contextlib

import pytest
import torch
from torch import nn

from snnlth.config import ModelConfig
from snnlth.models import create_model
from snnlth.snn import layers
from snnlth.snn.layers import SeqBatchNorm2d, seq_apply


def _pair(per_step: bool) -> tuple[SeqBatchNorm2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    seq, ref = SeqBatchNorm2d(3, per_step=per_step), nn.BatchNorm2d(3)
    with torch.no_grad():
        seq.weight.uniform_(0.5, 2)
        seq.bias.uniform_(-1, 1)
    ref.load_state_dict(seq.state_dict())
    return seq, ref


def test_per_step_bn_is_one_bn_layer_applied_at_every_timestep():
    """The paper's code: the same BN at each step, so batch statistics per step and the running statistics updated
    T times per batch (in step order)."""
    x_seq = torch.randn(4, 8, 3, 5, 5) * torch.arange(1, 5).view(4, 1, 1, 1, 1)  # each step its own scale
    seq, ref = _pair(per_step=True)
    out = seq(x_seq)
    expected = torch.stack([ref(x) for x in x_seq])
    assert torch.allclose(out, expected, atol=1e-6)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(seq, name).float(), getattr(ref, name).float()), name
    assert int(seq.num_batches_tracked) == 4
    step = out[2].transpose(0, 1).flatten(1)  # each step is normalised on its own: (out - bias) / weight ~ N(0, 1)
    z = (step - seq.bias.view(-1, 1)) / seq.weight.view(-1, 1)
    assert torch.allclose(z.mean(1), torch.zeros(3), atol=1e-5)


def test_per_step_bn_gradients_match_the_loop_over_one_bn_layer():
    """The CPU fast path (each step written into one output, no stack) has the loop's gradients for the input, the
    weight and the bias, on a non-contiguous input and gradient too."""
    x_seq = (torch.randn(8, 4, 3, 5, 5) * torch.arange(1, 5).view(1, 4, 1, 1, 1)).transpose(0, 1)
    grad = torch.randn(4, 8, 3, 5, 5).transpose(1, 2).contiguous().transpose(1, 2)
    seq, ref = _pair(per_step=True)
    x1, x2 = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
    with _counting_fast_path() as calls:
        seq(x1).backward(grad)
    assert calls == [1]
    torch.stack([ref(x) for x in x2]).backward(grad)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    assert torch.allclose(seq.weight.grad, ref.weight.grad, atol=1e-4)
    assert torch.allclose(seq.bias.grad, ref.bias.grad, atol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(seq, name).float(), getattr(ref, name).float()), name


def test_per_step_bn_falls_back_to_the_loop_where_the_fast_path_does_not_apply():
    seq, ref = _pair(per_step=True)
    seq, ref = seq.double(), ref.double()
    seq.momentum = ref.momentum = None  # cumulative average: depends on the count at each step
    x_seq = torch.randn(3, 8, 3, 5, 5, dtype=torch.float64)
    with _counting_fast_path() as calls:
        out = seq(x_seq)
    assert calls == [] and torch.allclose(out, torch.stack([ref(x) for x in x_seq]))
    assert torch.allclose(seq.running_mean, ref.running_mean) and int(seq.num_batches_tracked) == 3
    lone, _ = _pair(per_step=True)  # one value per channel and step: the loop's error, not NaN statistics
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        lone(torch.randn(2, 1, 3, 1, 1))


@contextlib.contextmanager
def _counting_fast_path():
    calls = []
    apply = layers._PerStepBatchNorm.apply

    def counted(*args):
        calls.append(1)
        return apply(*args)

    layers._PerStepBatchNorm.apply = counted
    try:
        yield calls
    finally:
        layers._PerStepBatchNorm.apply = apply


def test_pooled_bn_normalises_over_all_t_b_samples_and_eval_modes_agree():
    x_seq = torch.randn(4, 8, 3, 5, 5) * torch.arange(1, 5).view(4, 1, 1, 1, 1)
    seq, ref = _pair(per_step=False)
    assert torch.allclose(seq(x_seq), ref(x_seq.flatten(0, 1)).view_as(x_seq), atol=1e-6)
    assert int(seq.num_batches_tracked) == 1 and torch.allclose(seq.running_var, ref.running_var)
    per_step, _ = _pair(per_step=True)
    per_step.load_state_dict(seq.state_dict())
    seq.eval()
    per_step.eval()
    assert torch.equal(seq(x_seq), per_step(x_seq))  # eval: both use the running statistics


def test_seq_apply_folds_stateless_layers_and_passes_sequences_to_multistep_ones():
    block = nn.Sequential(nn.Conv2d(3, 4, 1), SeqBatchNorm2d(4))
    x_seq = torch.randn(3, 2, 3, 4, 4)
    out = seq_apply(block, x_seq)
    conv = block[0](x_seq.flatten(0, 1)).view(3, 2, 4, 4, 4)
    block2 = nn.BatchNorm2d(4)
    assert torch.allclose(out, torch.stack([block2(c) for c in conv]), atol=1e-5)


@pytest.mark.parametrize("mode,updates", [("per-step", 5), ("pooled", 1)])
def test_models_follow_bn_time(mode, updates):
    model = create_model(ModelConfig(model="convnet", bn_time=mode), 1, 28, 10)
    model(torch.randn(4, 1, 28, 28), 5).sum().backward()
    first, later = model.blocks[0][1], model.blocks[1][1]
    assert int(first.num_batches_tracked) == 1  # direct coding: the first conv+BN runs once per image
    assert int(later.num_batches_tracked) == updates
