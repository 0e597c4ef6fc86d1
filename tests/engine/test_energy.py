"""The uniform-activity estimate (the fallback of networks with recurrent layers) of single layers against counts
made by hand, and the exact count it is compared with."""

import pytest
import torch
from torch import nn

from snnlth.engine.energy import E_AC_PJ, E_MAC_PJ, OpCounter, energy_uj


def _linear(mask: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(mask.shape[1], mask.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(mask.shape).abs() + 0.1)
        layer.weight.mul_(mask)
    return layer


def test_linear_synops_equal_a_count_by_hand():
    torch.manual_seed(0)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, :3] = mask[2, 5] = mask[3, 1] = False  # a pruned layer: 19 of 24 weights survive
    layer = _linear(mask)
    # sample 0: inputs 0, 2, 5 spike; sample 1: input 4 spikes; sample 2: silent
    x = torch.zeros(3, 6)
    x[0, [0, 2, 5]] = 1
    x[1, 4] = 1
    with OpCounter(layer) as ops:
        layer(x)
    synops, macs = ops.totals()
    # the documented estimate, by hand: nnz(W) * samples * fraction of inputs that spiked (uniform activity)
    assert synops == pytest.approx(19 * 3 * (4 / 18))
    assert macs == 0.0
    # the exact count (what the evaluation reports, snnlth.engine.opcount): a spike on input j triggers one
    # accumulate per surviving weight in column j; the estimate, now the fallback, is within 3 % of it here
    exact = sum(int(mask[:, j].sum()) for j in (0, 2, 5)) + int(mask[:, 4].sum())
    assert exact == 13 and abs(synops - exact) / exact < 0.03
    full = _linear(torch.ones(4, 6, dtype=torch.bool))  # unpruned: the estimate is exact
    with OpCounter(full) as ops:
        full(x)
    assert ops.totals() == (pytest.approx(4 * 4), 0.0)


def test_conv_synops_and_real_input_macs_by_hand():
    conv = nn.Conv2d(2, 3, 1, bias=False)  # 1x1: no padding, every output position sees every input channel once
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0, 1] = 0.0  # 5 of 6 weights survive
    spikes = torch.zeros(1, 2, 4, 4)
    spikes[0, 0, :2, :] = 1  # 8 spikes in channel 0, none in channel 1
    with OpCounter(conv) as ops:
        conv(spikes)
    # by hand: each channel-0 spike reaches the 3 output channels (weights [*, 0] all survive): 8 * 3 = 24 ACs;
    # the estimate spreads activity uniformly: nnz 5 * 16 positions * 8/32 = 20
    assert ops.totals() == (pytest.approx(5 * 16 * 8 / 32), 0.0)
    real = torch.full((1, 2, 4, 4), 0.5)  # real-valued input (direct coding): multiply-accumulates
    with OpCounter(conv) as ops:
        conv(real)
    assert ops.totals() == (0.0, pytest.approx(5 * 16))
    assert energy_uj(20, 80) == pytest.approx((20 * E_AC_PJ + 80 * E_MAC_PJ) * 1e-6)


def test_the_exact_count_of_the_hand_counted_linear_layer():
    from snnlth.engine.opcount import OpTally

    torch.manual_seed(0)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, :3] = mask[2, 5] = mask[3, 1] = False
    layer = _linear(mask)
    x = torch.zeros(3, 6)
    x[0, [0, 2, 5]] = 1
    x[1, 4] = 1
    with OpTally(layer) as tally:
        tally.begin(1, 3)
        layer(x)
        tally.fold()
    counts = tally.counts()
    assert counts.effective_acs == pytest.approx(13 / 3) and counts.effective_macs == 0  # per image
    assert counts.dense == pytest.approx(24)
