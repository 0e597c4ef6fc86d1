"""``snnlth.count_ops`` counts synaptic operations as NeuroBench 2.3.0 does, on the same ticket and images."""

import pytest
import torch
from torch import nn

import snnlth
from tests.helpers import SummedOverT, sparse_ticket


def _ticket(name: str, sparsity: float = 0.5, seed: int = 0) -> nn.Module:
    return sparse_ticket(name, _images(), 3, sparsity, seed)


def _images(n: int = 32):
    train, _ = snnlth.load_dataset("fmnist", train_subset=100, test_subset=10)
    return train[0][:n]


def _neurobench(model: nn.Module, x: torch.Tensor, timesteps: int) -> dict:
    pytest.importorskip("neurobench")
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    nb = TorchModel(SummedOverT(model, timesteps))
    nb.register_hooks()
    with torch.no_grad():
        preds = nb(x)
    return SynapticOperations()(nb, preds, (x, torch.zeros(len(x), dtype=torch.long)))


@pytest.mark.parametrize("name", ["convnet", "lenet300"])
def test_the_counts_are_neurobenchs(name):
    model, x = _ticket(name), _images()
    ours = snnlth.count_ops(model, x, timesteps=3)
    theirs = _neurobench(model, x, 3)
    # NeuroBench sums each call in float32 (rounding at ~1e-7 of millions); snnlth counts exactly, in float64
    assert ours.effective_acs == pytest.approx(theirs["Effective_ACs"], rel=1e-6)
    assert ours.effective_macs == pytest.approx(theirs["Effective_MACs"], rel=1e-6)
    assert ours.dense == pytest.approx(theirs["Dense"], rel=1e-6)
    assert ours.effective_acs > 0 and ours.effective_macs > 0 and ours.effective_acs < ours.dense


def test_breakdowns_add_up_and_the_direct_coded_layer_runs_once():
    model, x = _ticket("convnet"), _images()
    ops = snnlth.count_ops(model, x, timesteps=3)
    assert ops.once_per_image == ["blocks.0.0"]  # the first conv feeds every step from one run
    assert set(ops.per_layer) == {"blocks.0.0", "blocks.1.0", "blocks.2.0", "classifier"}
    assert sum(r["effective_acs"] for r in ops.per_layer.values()) == pytest.approx(ops.effective_acs)
    assert sum(r["effective_acs"] for r in ops.per_timestep) == pytest.approx(ops.effective_acs)
    assert ops.per_timestep[0]["effective_macs"] == pytest.approx(ops.effective_macs)  # counted once, at step 1
    assert all(r["effective_macs"] == 0 for r in ops.per_timestep[1:])
    assert all(r["effective_acs"] > 0 for r in ops.per_timestep[1:])  # spikes at every later step too


def test_pruning_lowers_the_effective_count_not_the_dense_one():
    x = _images()
    sparse, denser = (snnlth.count_ops(_ticket("lenet300", s), x, timesteps=3) for s in (0.9, 0.1))
    assert sparse.dense == denser.dense and sparse.effective_macs < denser.effective_macs


def test_a_step_by_step_snntorch_network_is_split_per_step():
    pytest.importorskip("snntorch")
    from tests.adapters.nets import snntorch_net

    net, x = snntorch_net(), _images()
    ops = snnlth.count_ops(net, x, timesteps=4)
    assert len(ops.per_timestep) == 4 and ops.once_per_image == []
    assert sum(r["dense"] for r in ops.per_timestep) == pytest.approx(ops.dense)
    assert ops.per_timestep[0]["dense"] == pytest.approx(ops.dense / 4)  # the same layers at every step


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_spikingjelly_layers_in_both_step_modes(step_mode):
    pytest.importorskip("spikingjelly")
    from tests.adapters.nets import sj_net

    ops = snnlth.count_ops(sj_net(step_mode), _images(), timesteps=3)
    assert ops.dense > 0 and len(ops.per_timestep) == 3  # spikingjelly's Conv2d is a subclass of nn.Conv2d
    assert sum(r["dense"] for r in ops.per_timestep) == pytest.approx(ops.dense)


class _OddLayers(nn.Module):
    """Convolutions with stride, dilation, groups, reflect padding and a Conv1d, spikes between them; the first layer
    runs once (real input), the others at every step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(1, 4, 3, stride=2, padding=2, dilation=2)
        self.b = nn.Conv2d(4, 6, 3, padding=1, groups=2, padding_mode="reflect")
        self.c = nn.Conv1d(6, 3, 5, stride=3)
        self.fc = nn.Linear(3 * 64, 10)
        with torch.no_grad():
            for m in (self.a, self.b, self.c, self.fc):
                m.weight[torch.rand_like(m.weight) < 0.3] = 0

    def prunable_names(self) -> list[str]:
        return [f"{n}.weight" for n in ("a", "b", "c", "fc")]

    def forward(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        s = (self.a(x) > 0).float()  # [B, 4, 14, 14]
        out = []
        for t in range(timesteps):
            h = (self.b(s) > 0.1 * t).float().flatten(2)  # [B, 6, 196]
            out.append(self.fc((self.c(h) > 0).float().flatten(1)))
        return torch.stack(out)


def test_strides_dilation_groups_and_padding_modes_are_counted_as_neurobench_counts_them():
    model, x = _OddLayers().eval(), _images(8)
    ours, theirs = snnlth.count_ops(model, x, timesteps=3), _neurobench(model, x, 3)
    assert ours.effective_acs == pytest.approx(theirs["Effective_ACs"], rel=1e-6)
    assert ours.effective_macs == pytest.approx(theirs["Effective_MACs"], rel=1e-6)
    assert ours.dense == pytest.approx(theirs["Dense"], rel=1e-6)
    assert ours.once_per_image == ["a"] and ours.effective_acs > 0
