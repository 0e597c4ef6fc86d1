"""The optimiser: PyTorch's fused SGD where it applies, with the update of the plain kernel."""

import copy

import pytest
import torch
from torch import nn

from snnlth.config import TrainConfig
from snnlth.engine.optim import load_optimizer_state, make_optimizer


def _pair(quirks: str):
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    b.load_state_dict(a.state_dict())
    cfg = TrainConfig(quirks=quirks, lr=0.1)
    extra = dict(dampening=cfg.weight_decay, weight_decay=0.0) if quirks == "official" else dict(
        weight_decay=cfg.weight_decay)
    plain = torch.optim.SGD(b.parameters(), lr=cfg.lr, momentum=cfg.momentum, foreach=False, **extra)
    return a, make_optimizer(a, cfg), b, plain


def _step(model, opt, x):
    opt.zero_grad()
    model(x).square().sum().backward()
    opt.step()


@pytest.mark.parametrize("quirks", ["paper", "official"])
def test_fused_sgd_takes_the_plain_kernels_steps(quirks):
    a, fused, b, plain = _pair(quirks)
    assert fused.param_groups[0]["fused"] is True
    for seed in range(5):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
        _step(a, fused, x)
        _step(b, plain, x)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_a_parameter_that_starts_training_later_steps_like_the_plain_kernel():
    """Fused SGD cannot mix parameters with and without momentum buffers: that step runs on the plain kernel."""
    a, fused, b, plain = _pair("paper")
    for frozen in (True, False, False):
        for model, opt in ((a, fused), (b, plain)):
            model[0].weight.requires_grad_(not frozen)
            _step(model, opt, torch.ones(3, 4))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert fused.param_groups[0]["fused"] is True  # back on the fused kernel once every buffer exists


def test_a_checkpoint_of_the_plain_kernel_resumes_on_the_fused_one():
    a, fused, b, plain = _pair("paper")
    _step(b, plain, torch.ones(3, 4))
    a.load_state_dict(b.state_dict())
    load_optimizer_state(fused, copy.deepcopy(plain.state_dict()))  # as read from a checkpoint: no shared buffers
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["foreach"] is None
    _step(a, fused, torch.ones(3, 4))
    _step(b, plain, torch.ones(3, 4))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
