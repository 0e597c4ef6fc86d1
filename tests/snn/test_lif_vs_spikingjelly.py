"""Our LIF against spikingjelly's LIFNode with the paper's settings (tau 4/3, V_th 1, hard reset to 0, ATan α=2,
detach_reset): the same spikes and the same input gradients on random input, in its single- and multi-step modes.
spikingjelly is installed by `make setup`; without it the test is skipped with the reason."""

import pytest
import torch

from snnlth.snn.neuron import LIF

neuron = pytest.importorskip("spikingjelly.activation_based.neuron", reason="spikingjelly is not installed")
surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
functional = pytest.importorskip("spikingjelly.activation_based.functional")


def _twin(step_mode):
    return neuron.LIFNode(tau=4 / 3, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True,
                          surrogate_function=surrogate.ATan(alpha=2.0), step_mode=step_mode)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_same_spikes_and_input_gradients_as_spikingjelly(step_mode):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 16, 8, 6, 6, generator=gen) * 0.8 + 0.6).requires_grad_(True)
    upstream = torch.randn(x.shape, generator=gen)
    x_twin = x.detach().clone().requires_grad_(True)

    ours = LIF()(x)
    twin = _twin(step_mode)
    theirs = twin(x_twin) if step_mode == "m" else torch.stack([twin(x_twin[t]) for t in range(len(x_twin))])
    functional.reset_net(twin)

    assert 0.05 < ours.mean().item() < 0.95  # both spiking and silent entries are compared
    assert torch.equal(ours, theirs)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_twin.grad, rtol=1e-4, atol=1e-6)
