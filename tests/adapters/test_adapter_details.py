"""Adapter and find_ticket details: what an adapter refuses, what it keeps of the user's network, input coding at
random, numpy-style inputs, and what names a run (neuron constants and adapter functions included)."""

import pytest
import torch
from torch import nn

import snnlth
from snnlth import adapters
from snnlth.data.user import fingerprint
from tests.adapters import nets

SMALL = dict(epochs=1, rounds=1, timesteps=2, device="cpu", progress=False, batch_size=8)


def _data(n=16):
    torch.manual_seed(0)
    return torch.rand(n, 1, 28, 28), torch.arange(n) % 10


def test_random_input_coding_is_no_state_leak(tmp_path):
    rate = lambda x, t: (torch.rand((t, *x.shape), device=x.device) < x.clamp(0, 1)).float()  # noqa: E731
    result = snnlth.find_ticket(adapters.multistep(nets.SeqNet(), encode=rate), _data(), _data(),
                                out=tmp_path / "run", **SMALL)
    assert len(result.levels) == 2


def test_encoder_module_with_state_is_refused():
    with pytest.raises(snnlth.ConfigError, match="encode is a module with parameters"):
        adapters.multistep(nets.SeqNet(), encode=nn.Linear(2, 2))


def test_nothing_set_on_an_adapter_lands_in_the_network():
    net = nets.SeqNet()
    adapted = adapters.multistep(net, 2)
    with pytest.raises(AttributeError, match="set it on the network itself"):
        adapted.extra = nn.Linear(2, 2)
    assert "extra" not in dict(net.named_children())


def test_the_networks_own_train_override_runs():
    class FrozenBN(nets.SeqNet):
        def train(self, mode=True):
            super().train(mode)
            self.bn.eval()  # keeps BatchNorm statistics frozen
            return self

    net = FrozenBN()
    adapters.multistep(net, 2).train()
    assert net.training and not net.bn.training


def test_float64_inputs_are_taken_as_float32(tmp_path):
    x, y = _data()
    result = snnlth.find_ticket(nets.SeqNet(), (x.double(), y), (x.double(), y), out=tmp_path / "run", **SMALL)
    assert result.status == "searched"


def test_dataset_with_float_labels_is_refused_before_writing(tmp_path):
    x, y = _data()
    items = torch.utils.data.TensorDataset(x, y.float())
    with pytest.raises(snnlth.DataError, match="integer class indices"):
        snnlth.find_ticket(nets.SeqNet(), items, items, out=tmp_path / "run", **SMALL)
    assert not (tmp_path / "run").exists()


def test_neuron_constants_and_adapter_functions_name_the_run(tmp_path):
    """A rerun with another tau (not in the state dict) or another step function is another search."""
    from spikingjelly.activation_based import neuron

    def run(net, **kw):
        return snnlth.find_ticket(net, _data(), _data(), runs_root=tmp_path, **{**SMALL, **kw}).run_dir

    base = run(nets.sj_net("s"))
    other = nets.sj_net("s")
    other[2] = neuron.LIFNode(tau=8.0, detach_reset=True)
    assert run(other) != base
    assert run(nets.sj_net("s")) == base
    step = lambda m, x: m(x)  # noqa: E731
    a = run(adapters.stepwise(nets.HandNet(), nets.hand_step, nets.hand_reset))
    b = run(adapters.stepwise(nets.HandNet(), step, nets.hand_reset))
    assert a != b


def test_dataset_fingerprint_is_stable_under_random_transforms():
    class Jitter(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return torch.rand(1, 4, 4), i % 10  # a random transform

    assert fingerprint(Jitter(), Jitter()) == fingerprint(Jitter(), Jitter())


def test_load_ticket_keeps_device_as_second_argument(tmp_path):
    result = snnlth.find_ticket(nets.SeqNet(), _data(), _data(), out=tmp_path / "run", **SMALL)
    snnlth.export_ticket(result.run_dir, tmp_path / "t.safetensors")
    ticket = snnlth.load_ticket(tmp_path / "t.safetensors", "cpu", model=nets.SeqNet())
    assert not ticket.model.training
